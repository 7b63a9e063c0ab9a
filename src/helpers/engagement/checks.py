"""The engagement pipeline's checks: one per engagement entry of the failure catalogue.

Each check looks at the :class:`helpers.engagement.run.EngagementRun` the notebook just computed
(``context={"engagement": run}``) and returns evidence that names the rows, so it can be set
beside a fault's ground truth:

==================================  ========  =================================================
check id                            severity  fails when
==================================  ========  =================================================
engagement_aggregate.late_events     warning  events received after their day's window (a
                                              backfill is requested), or > 1 % of a window
                                              day's events arriving more than 24 h late
engagement_aggregate.kafka_outage    critical received volume of the run's day drops to
                                              <= 20 % of the same hours' baseline (median of the
                                              same weekday's hours over 4 weeks) for a stretch
                                              worth >= 30 expected events, or the day's delivery
                                              is overdue (2 h past its usual arrival)
engagement_aggregate.duplicate_events warning  more than 1 % extra copies of a window day's
                                              messages (counted once: the evidence says how many)
engagement_aggregate.data_skew_oom   warning  one account holds >= 25 % of a window day's events
                                              (days with >= 200 events); reports the top keys
engagement_aggregate.upstream_missing warning Profit or Growth not finished for a month the run
                                              writes (critical once the month is over): figures
                                              are written ``pending``, never NULL in a final row
engagement_aggregate.schema_change   warning  quarantined rows in the window's deliveries;
                                     critical an undeclared schema_version, or > 5 % quarantined
engagement_aggregate.landing_integrity critical a delivery read was left out whole: its file
                                              changed after arrival (sha256), is missing or
                                              unreadable, or lacks a contract column (outside
                                              the catalogue; figures are provisional)
==================================  ========  =================================================

None is blocking: the run still writes what it can, with its status (``pending`` and the month
not ``complete`` while a delivery is left out). :func:`stream_outcome`
is pure over hourly counts, so the same rule also runs between daily runs: :func:`evaluate_stream`
reads the landing zone's ``receivedAt`` per hour and records the same check for yesterday and
today; :func:`scheduler_hook` runs it at every scheduler tick, so with the Kafka consumer landing
continuously an outage pages within the hour instead of at the next daily run (04:00).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from helpers import checks
from helpers.checks import CheckContext, Outcome, fail, ok
from helpers.core import config as cfgmod
from helpers.core.catalogue import CATALOGUE
from helpers.core.timeutil import as_utc, naive_utc
from helpers.engagement.inputs import screen_delivery
from helpers.engagement.run import EngagementRun
from helpers.engagement.window import PIPELINE
from helpers.storage import landing

LATE_SHARE_WARN = 0.01
DUPLICATE_SHARE_WARN = 0.01
SKEW_SHARE_WARN = 0.25
SKEW_MIN_EVENTS = 200
OUTAGE_RATIO = 0.20
OUTAGE_MIN_EXPECTED = 30
OUTAGE_GRACE = dt.timedelta(hours=2)  # a delivery this much past its usual arrival is overdue
HOUR_SETTLE = dt.timedelta(minutes=30)  # an hour is judged once this long has passed after it
QUARANTINE_SHARE_CRITICAL = 0.05
EVIDENCE_IDS = 500  # message ids kept in evidence (counts are always complete)


def _run(ctx: CheckContext) -> EngagementRun:
    run = ctx.data.get("engagement")
    if not isinstance(run, EngagementRun):
        raise TypeError("engagement checks need context={'engagement': EngagementRun}")
    return run


def _ids(values: Sequence[str]) -> list[str]:
    return sorted(values)[:EVIDENCE_IDS]


# ---------------------------------------------------------------- late_events


@checks.check(f"{PIPELINE}.late_events", pipeline=PIPELINE, severity="warning", catalogue_id="late_events")
def late_events(ctx: CheckContext) -> Outcome:
    """Late arrivals: restated inside the window, or beyond it (a backfill is requested)."""
    run = _run(ctx)
    w = run.window
    late = run.late
    in_window = late[late["late"].astype(bool) & late["event_date"].isin(w.days)]
    beyond = late[late["beyond_window"].astype(bool)]
    day_events = run.metrics.set_index("date")["events"] if len(run.metrics) else pd.Series(dtype="int64")
    shares = {
        d.isoformat(): round(n / int(day_events.get(d, 0)), 4) if int(day_events.get(d, 0)) else 1.0
        for d, n in in_window.groupby("event_date").size().items()
    }
    worst = max(shares.values(), default=0.0)
    lateness = (
        (late["received_at"] - late["event_ts"]).dt.total_seconds() / 3600 if len(late) else pd.Series([0.0])
    )
    evidence = {
        "window": [w.start.isoformat(), w.run_date.isoformat()],
        "late_after_hours": 24,
        "late_in_window": int(len(in_window)),
        "late_by_event_day": {str(k): int(v) for k, v in in_window.groupby("event_date").size().items()},
        "late_share_by_event_day": shares,
        "late_in_window_ids": _ids(in_window["message_id"].tolist()),
        "late_beyond_window": int(len(beyond)),
        "beyond_window_by_event_day": {
            str(k): int(v) for k, v in beyond.groupby("event_date").size().items()
        },
        "beyond_window_by_received_day": {
            str(k): int(v) for k, v in beyond.groupby("received_date").size().items()
        },
        "beyond_window_ids": _ids(beyond["message_id"].tolist()),
        "max_lateness_hours": round(float(lateness.max()), 2),
        "backfill": [
            {**r, "from_date": str(r["from_date"]), "to_date": str(r["to_date"])} for r in run.backfill
        ],
    }
    if len(beyond):
        cmd = run.backfill[0]["command"] if run.backfill else ""
        return fail(
            f"{len(beyond)} event(s) received after their {w.window_days}-day window "
            f"(event days {min(beyond['event_date'])}..{max(beyond['event_date'])}); backfill requested: {cmd}",
            **evidence,
        )
    if worst > LATE_SHARE_WARN:
        return fail(
            f"{len(in_window)} late event(s) (> 24 h) restated inside the window; up to {worst:.1%} of a day",
            **evidence,
        )
    return ok(f"{len(in_window)} late event(s) in the window, none beyond it", **evidence)


# ---------------------------------------------------------------- kafka_outage


def stream_outcome(
    hourly: pd.DataFrame,
    day: dt.date,
    *,
    as_of: dt.datetime,
    arrivals: pd.DataFrame | None = None,
    weeks: int = 4,
    min_points: int = 2,
    ratio: float = OUTAGE_RATIO,
    min_expected: int = OUTAGE_MIN_EXPECTED,
) -> Outcome:
    """Judge ``day``'s received volume per hour against the same hours of the same weekday.

    ``hourly``: ``date``, ``hour``, ``received`` (rows received, duplicates and quarantined
    included: this is about the stream, not the figures). A stretch of consecutive hours, each
    at <= ``ratio`` of its baseline, that was expected to carry >= ``min_expected`` events is an
    outage. Hours are judged once they are over (``as_of``); a day not delivered at all is judged
    by ``arrivals`` (``partition``, ``arrived_at``): overdue once ``as_of`` is 2 h past the usual
    arrival delay.
    """
    as_of_naive = naive_utc(as_of)
    counts = hourly.pivot_table(index="date", columns="hour", values="received", aggfunc="sum").reindex(
        columns=range(24)
    )
    counts = counts.fillna(0)
    base_days = [day - dt.timedelta(days=7 * k) for k in range(1, weeks + 1)]
    base = counts.reindex([d for d in base_days if d in counts.index])
    evidence: dict[str, Any] = {"day": day.isoformat(), "baseline_days": [d.isoformat() for d in base.index]}
    if day not in counts.index:
        return _undelivered_outcome(day, base, arrivals, as_of_naive, min_points, evidence)
    if len(base) < min_points:
        return ok(f"{day}: fewer than {min_points} baseline weeks, no verdict", **evidence)
    judged = [
        h
        for h in range(24)
        if dt.datetime.combine(day, dt.time(h)) + dt.timedelta(hours=1) + HOUR_SETTLE <= as_of_naive
    ]
    expected = base.median()
    observed = counts.loc[day]
    outages = _outage_stretches(judged, expected, observed, ratio, min_expected)
    evidence["hours"] = [
        {"hour": h, "observed": int(observed[h]), "expected": round(float(expected[h]), 1)} for h in judged
    ]
    if not outages:
        return ok(
            f"{day}: received volume within range of its baseline ({int(observed[judged].sum())} vs "
            f"{float(expected[judged].sum()):.0f} expected over {len(judged)} hours)",
            **evidence,
        )
    return _outage_outcome(day, outages, expected, observed, evidence)


def _undelivered_outcome(
    day: dt.date,
    base: pd.DataFrame,
    arrivals: pd.DataFrame | None,
    as_of_naive: dt.datetime,
    min_points: int,
    evidence: dict[str, Any],
) -> Outcome:
    """A day with no delivery yet: critical once it is overdue (2 h past its usual arrival)."""
    usual = _usual_delay(arrivals, day)
    due = dt.datetime.combine(day, dt.time()) + usual + OUTAGE_GRACE if usual is not None else None
    evidence.update(delivered=False, due=due.isoformat() if due else None)
    if due is not None and as_of_naive > due and len(base) >= min_points:
        expected = float(base.median().sum())
        return fail(
            f"no events delivered for {day} (due by {due:%Y-%m-%d %H:%M} UTC; baseline {expected:.0f} events)",
            severity="critical",
            expected=round(expected, 1),
            **evidence,
        )
    return ok(f"events of {day} not delivered yet (due by {due or 'unknown'})", **evidence)


def _outage_stretches(
    judged: Sequence[int], expected: pd.Series, observed: pd.Series, ratio: float, min_expected: int
) -> list[list[int]]:
    """Runs of consecutive judged hours at <= ``ratio`` of their baseline, worth >= ``min_expected`` events."""
    low = [h for h in judged if expected[h] >= 1 and observed[h] <= ratio * expected[h]]
    stretches: list[list[int]] = []
    for h in low:
        if stretches and stretches[-1][-1] == h - 1:
            stretches[-1].append(h)
        else:
            stretches.append([h])
    return [
        s
        for s in stretches
        if expected[s].sum() >= min_expected and observed[s].sum() <= ratio * expected[s].sum()
    ]


def _outage_outcome(
    day: dt.date,
    outages: Sequence[list[int]],
    expected: pd.Series,
    observed: pd.Series,
    evidence: dict[str, Any],
) -> Outcome:
    """The critical failure naming the worst outage window (most events missing) and every outage."""
    worst = max(outages, key=lambda s: float(expected[s].sum() - observed[s].sum()))
    start = dt.datetime.combine(day, dt.time(worst[0]), dt.UTC)
    end = start + dt.timedelta(hours=len(worst))
    missing = float(expected[worst].sum() - observed[worst].sum())
    evidence.update(
        window_start=start.isoformat(),
        window_end=end.isoformat(),
        observed=int(observed[worst].sum()),
        expected=round(float(expected[worst].sum()), 1),
        missing_estimate=round(missing, 1),
        outages=[
            {
                "start": dt.datetime.combine(day, dt.time(s[0]), dt.UTC).isoformat(),
                "hours": len(s),
                "observed": int(observed[s].sum()),
                "expected": round(float(expected[s].sum()), 1),
            }
            for s in outages
        ],
    )
    return fail(
        f"event stream down {start:%Y-%m-%d %H:%M}-{end:%H:%M} UTC: {int(observed[worst].sum())} events received, "
        f"~{float(expected[worst].sum()):.0f} expected (~{missing:.0f} missing)",
        severity="critical",
        **evidence,
    )


def _usual_delay(arrivals: pd.DataFrame | None, day: dt.date) -> dt.timedelta | None:
    """Median delay from a partition's start to its first arrival, over the partitions before ``day``."""
    if arrivals is None or arrivals.empty:
        return None
    prior = arrivals[arrivals["partition"] < day]
    if prior.empty:
        return None
    delays = pd.to_datetime(prior["arrived_at"]) - pd.to_datetime(prior["partition"])
    return delays.median().to_pytimedelta()


@checks.check(f"{PIPELINE}.kafka_outage", pipeline=PIPELINE, severity="critical", catalogue_id="kafka_outage")
def kafka_outage(ctx: CheckContext) -> Outcome:
    """Event stream volume of the run's day against the same hours' baseline."""
    run = _run(ctx)
    mon = cfgmod.get().pipelines.monitors
    return stream_outcome(
        run.hourly,
        run.window.run_date,
        as_of=run.window.as_of,
        arrivals=run.arrivals,
        weeks=mon.baseline_weeks,
        min_points=mon.min_baseline_points,
    )


# ---------------------------------------------------------------- duplicate_events


@checks.check(
    f"{PIPELINE}.duplicate_events", pipeline=PIPELINE, severity="warning", catalogue_id="duplicate_events"
)
def duplicate_events(ctx: CheckContext) -> Outcome:
    """Messages delivered more than once (counted once; the share says whether the source misbehaves)."""
    run = _run(ctx)
    dup = run.duplicates
    day_events = run.top.groupby("date")["day_events"].first() if len(run.top) else pd.Series(dtype="int64")
    per_day: dict[str, dict[str, Any]] = {}
    for day, g in dup.groupby("date"):
        extra = int((g["copies"] - 1).sum())
        total = int(day_events.get(day, 0))
        per_day[str(day)] = {
            "messages": int(len(g)),
            "extra_rows": extra,
            "by_copies": {str(k): int(v) for k, v in g.groupby("copies").size().items()},
            "share": round(extra / total, 4) if total else 1.0,
        }
    evidence = {
        "window": [run.window.start.isoformat(), run.window.run_date.isoformat()],
        "by_event_day": per_day,
        "messages": int(len(dup)),
        "extra_rows": int((dup["copies"] - 1).sum()) if len(dup) else 0,
        "message_ids": _ids(dup["message_id"].tolist()),
    }
    bad = {d: v for d, v in per_day.items() if v["share"] > DUPLICATE_SHARE_WARN}
    if bad:
        d, v = max(bad.items(), key=lambda kv: kv[1]["share"])
        return fail(
            f"{evidence['messages']} message(s) delivered more than once ({evidence['extra_rows']} extra rows, "
            f"counted once); worst day {d}: {v['share']:.1%} extra",
            **evidence,
        )
    return ok(f"{evidence['extra_rows']} duplicate row(s) in the window, removed", **evidence)


# ---------------------------------------------------------------- data_skew_oom


@checks.check(
    f"{PIPELINE}.data_skew_oom", pipeline=PIPELINE, severity="warning", catalogue_id="data_skew_oom"
)
def data_skew_oom(ctx: CheckContext) -> Outcome:
    """One account holding a large share of a day's events (the key that makes a naive join spill)."""
    run = _run(ctx)
    top = run.top
    per_day = {
        str(day): [
            {"account_id": r.account_id, "events": int(r.events), "share": round(float(r.share), 4)}
            for r in g.sort_values("rank").itertuples()
        ]
        for day, g in top.groupby("date")
    }
    totals = top.groupby("date")["day_events"].first() if len(top) else pd.Series(dtype="int64")
    hot = [
        (str(day), g.sort_values("rank").iloc[0])
        for day, g in top.groupby("date")
        if int(totals[day]) >= SKEW_MIN_EVENTS and float(g["share"].max()) >= SKEW_SHARE_WARN
    ]
    evidence = {
        "engine": run.engine,
        "threshold": SKEW_SHARE_WARN,
        "top_accounts_by_day": per_day,
        "day_events": {str(k): int(v) for k, v in totals.items()},
        "strategy": "aggregate to the account grain before the account join; AQE skew-join splitting on Spark",
    }
    if hot:
        day, row = max(hot, key=lambda x: float(x[1]["share"]))
        evidence.update(account=row["account_id"], share=round(float(row["share"]), 4), day=day)
        return fail(
            f"account {row['account_id']} holds {float(row['share']):.1%} of {day}'s events "
            f"({int(row['events'])} of {int(row['day_events'])}): hot key, handled by pre-aggregation",
            **evidence,
        )
    share = float(top["share"].max()) if len(top) else 0.0
    return ok(f"largest account share of a day's events: {share:.1%}", **evidence)


# ---------------------------------------------------------------- upstream_missing


@checks.check(
    f"{PIPELINE}.upstream_missing", pipeline=PIPELINE, severity="warning", catalogue_id="upstream_missing"
)
def upstream_missing(ctx: CheckContext) -> Outcome:
    """Profit/Growth marts not finished for a month the run writes: its joined figures are pending."""
    run = _run(ctx)
    states = [
        {
            "pipeline": s.pipeline,
            "table": s.table,
            "period": s.period,
            "ready": s.ready,
            "reason": s.reason,
            "run_id": s.run_id,
            "rows": s.rows,
        }
        for s in run.upstreams
    ]
    missing = [s for s in states if not s["ready"]]
    if not missing:
        return ok(
            f"upstreams ready for {', '.join(sorted({s['period'] for s in states})) or 'no month'}",
            upstreams=states,
        )
    months = {m.period: m for m in run.window.months}
    closed = any(months[s["period"]].complete for s in missing if s["period"] in months)
    return fail(
        f"{'; '.join(s['period'] + ': ' + s['reason'] for s in missing)}: account figures marked pending",
        severity="critical" if closed else "warning",
        upstreams=states,
        pending_periods=sorted({s["period"] for s in missing}),
    )


# ---------------------------------------------------------------- schema_change


@checks.check(
    f"{PIPELINE}.schema_change", pipeline=PIPELINE, severity="warning", catalogue_id="schema_change"
)
def schema_change(ctx: CheckContext) -> Outcome:
    """Rows the schema contract could not accept, by version and reason."""
    run = _run(ctx)
    intake = run.intake
    by_version: dict[str, int] = {}
    for text in intake["by_version"]:
        for k, v in json.loads(text).items():
            by_version[str(k)] = by_version.get(str(k), 0) + int(v)
    q = run.quarantined
    received = int(intake["received"].sum())
    by_reason = {str(k): int(v) for k, v in q.groupby("reason").size().items()}
    unknown = {
        r: n
        for r, n in by_reason.items()
        if r.startswith("unknown schema_version") or r.startswith("unknown form")
    }
    evidence = {
        "window_received_days": [str(d) for d in intake["date"]],
        "contract_versions": run.contract_versions,
        "received": received,
        "quarantined": int(len(q)),
        "by_version": dict(sorted(by_version.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "quarantined_ids": dict(
            sorted(zip(q["message_id"].fillna("(none)"), q["reason"], strict=True))[:EVIDENCE_IDS]
        ),
    }
    if not len(q):
        return ok(
            f"{received} row(s) received in the window, all accepted (versions {', '.join(sorted(by_version))})",
            **evidence,
        )
    share = len(q) / received if received else 1.0
    summary = f"{len(q)} of {received} row(s) quarantined ({share:.1%}): " + ", ".join(
        f"{r}: {n}" for r, n in sorted(by_reason.items())
    )
    if unknown or share > QUARANTINE_SHARE_CRITICAL:
        hint = (
            " — the schema_change runbook's fix declares its reviewed mapping in config/event_contract.yml and replays the quarantined days"
            if unknown
            else ""
        )
        return fail(summary + hint, severity="critical", **evidence)
    return fail(summary, **evidence)


# ---------------------------------------------------------------- landing_integrity


@checks.check(
    f"{PIPELINE}.landing_integrity",
    pipeline=PIPELINE,
    severity="critical",
    runbook="notebooks/runbooks/incident_fix.ipynb",
)
def landing_integrity(ctx: CheckContext) -> Outcome:
    """Every delivery the run read hashes to its manifest's sha256 and holds its contract's columns.

    A delivery left out whole is critical (figures provisional); ``api_logs`` rows lacking a
    request id, account or time (not counted, quarantined with file and row) are a warning."""
    run = _run(ctx)
    report = run.landing
    api = run.api_quarantined
    evidence = {
        "rejected": [dict(r.row.raw, reason=r.reason, kind=r.kind) for r in report.rejected],
        "deliveries_read": dict(report.deliveries),
        "rows_in_deliveries": dict(report.received),
        "figures": "provisional" if report.rejected else "as landed",
        "api_rows_quarantined": api.head(EVIDENCE_IDS).to_dict("records") if len(api) else [],
    }
    if report.rejected:
        return fail(
            "; ".join(r.reason for r in report.rejected)
            + f" — {len(report.rejected)} delivery(ies) left out whole, figures provisional",
            **evidence,
        )
    if len(api):
        by_field = api.groupby("field").size()
        files = ", ".join(sorted(set(api["delivery_file"].dropna()))[:5])
        return fail(
            f"{len(api)} api_logs row(s) not counted: "
            + ", ".join(f"missing {k}: {int(v)}" for k, v in by_field.items())
            + f" (in {files})",
            severity="warning",
            **evidence,
        )
    n = sum(report.deliveries.values())
    return ok(f"all {n} deliveries read match their manifest and contract", **evidence)


CHECK_IDS: tuple[str, ...] = (
    *(f"{PIPELINE}.{name}" for name in CATALOGUE["engagement"]),
    f"{PIPELINE}.landing_integrity",
)


def run_domain_checks(run: EngagementRun, *, run_id: str | None = None) -> list[checks.CheckResult]:
    """Evaluate, record and alert the run's checks (one per catalogue id, and ``landing_integrity``)
    for its date (no built-in mart checks: those run after the write, see :func:`run_mart_checks`)."""
    chosen = [c for c in checks.registered(PIPELINE) if c.id in CHECK_IDS]
    return checks.run_checks(
        PIPELINE,
        run.window.run_date.isoformat(),
        as_of=run.window.as_of,
        run_id=run_id,
        context={"engagement": run},
        checks=chosen,
        builtin=False,
    )


def run_mart_checks(run: EngagementRun, *, run_id: str | None = None) -> list[checks.CheckResult]:
    """The built-in row-count and NULL checks of the partition just written."""
    return checks.run_checks(
        PIPELINE,
        run.window.run_date.isoformat(),
        as_of=run.window.as_of,
        run_id=run_id,
        checks=[],
        builtin=True,
    )


def results_frame(results: Sequence[checks.CheckResult]) -> pd.DataFrame:
    """Check results as a small table for the notebook."""
    return pd.DataFrame(
        [
            {"check": r.check_id, "status": r.status, "severity": r.severity, "summary": r.summary}
            for r in results
        ],
        columns=["check", "status", "severity", "summary"],
    )


def outcome_counts(results: Sequence[checks.CheckResult]) -> Mapping[str, int]:
    """How many results passed, failed or errored."""
    out = {"pass": 0, "fail": 0, "error": 0}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out


# ---------------------------------------------------------------- the stream monitor (between runs)


def stream_hourly(
    as_of: dt.datetime, *, weeks: int = 4, root: Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows received per hour and each partition's first arrival, from the landing zone as of ``as_of``.

    Reads only the ``receivedAt`` column of the ``events`` deliveries of the last ``weeks`` weeks
    (pyarrow, no engine): cheap enough for every scheduler tick. A delivery the run would leave out
    (:func:`helpers.engagement.inputs.screen_delivery`: changed after arrival, unreadable, lacking
    a column) is not read here either: counted as the run counts it, and no crash of the monitor.
    """
    first = (as_utc(as_of).date() - dt.timedelta(days=7 * weeks + 1)).isoformat()
    chosen = [d for d in landing.deliveries("events", root=root, as_of=as_of) if d.partition >= first]
    counts: dict[tuple[dt.date, int], int] = {}
    for d in chosen:
        if screen_delivery(d, root=root) is not None:
            continue
        col = pq.read_table(landing.source_dir("events", root) / d.file, columns=["receivedAt"]).column(0)
        hours = pc.floor_temporal(col.drop_null(), unit="hour").to_pylist()
        for h in hours:
            key = (h.date(), h.hour)
            counts[key] = counts.get(key, 0) + 1
    hourly = pd.DataFrame(
        [(d, h, n) for (d, h), n in sorted(counts.items())], columns=["date", "hour", "received"]
    )
    arrivals = pd.DataFrame(
        {
            "partition": [dt.date.fromisoformat(d.partition) for d in chosen],
            "arrived_at": [naive_utc(d.arrived) for d in chosen],
        },
        columns=["partition", "arrived_at"],
    )
    return hourly, arrivals.groupby("partition", as_index=False)["arrived_at"].min()


def evaluate_stream(
    as_of: dt.datetime, *, root: Path | None = None, config: cfgmod.WorkbookConfig | None = None
) -> list[checks.CheckResult]:
    """``kafka_outage`` for yesterday and today at ``as_of``, recorded and alerted like the run's.

    Same check id and partition (the day) as the daily run's check, so an outage seen by the
    monitor within the hour and later by the run is one alert. Hours are judged once they are
    over; a day not delivered yet is judged by its usual arrival time.
    """
    config = config or cfgmod.get()
    mon = config.pipelines.monitors
    hourly, arrivals = stream_hourly(as_of, weeks=mon.baseline_weeks, root=root)
    today = as_utc(as_of).date()
    results: list[checks.CheckResult] = []
    for day in (today - dt.timedelta(days=1), today):

        def fn(ctx: CheckContext, day: dt.date = day) -> Outcome:
            return stream_outcome(
                hourly,
                day,
                as_of=ctx.as_of,
                arrivals=arrivals,
                weeks=mon.baseline_weeks,
                min_points=mon.min_baseline_points,
            )

        check = checks.Check(
            id=f"{PIPELINE}.kafka_outage",
            pipeline=PIPELINE,
            fn=fn,
            severity="critical",
            catalogue_id="kafka_outage",
        )
        results += checks.run_checks(
            PIPELINE, day.isoformat(), as_of=as_of, checks=[check], builtin=False, config=config
        )
    return results


def scheduler_hook(
    *, as_of: dt.datetime, now: dt.datetime | None = None, pipelines: Sequence[str] | None = None, **_: Any
) -> None:
    """A scheduler tick hook (for ``scheduler.tick``'s ``hooks``): the stream monitor at every
    tick, so an outage pages within the hour instead of at the next daily run."""
    if pipelines is None or PIPELINE in pipelines:
        evaluate_stream(as_of)

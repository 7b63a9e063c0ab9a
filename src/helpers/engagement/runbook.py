"""Evidence, fixes and verification for the Engagement runbooks (``notebooks/runbooks/engagement/``).

One runbook per Engagement entry of the failure catalogue. Each reads the check the pipeline
recorded for the partition (:func:`check_state`), computes evidence for each of the plan's
"Why" causes from the landing zone and the warehouse, and fixes with the pipeline's own code:

================  ==========================================================================
runbook           fix (``apply_fix=True``)
================  ==========================================================================
late_events       perform the recorded backfill requests (``backfill --force --downstream``)
kafka_outage      replay the outage window from the topic's retained copy (``replay_from``: a
                  landing zone re-consumed from Kafka) as a new delivery, then re-run the days
duplicate_events  re-run the days (one copy per ``messageId``: the figures count each click once)
data_skew_oom     re-run the days (pre-aggregation to the account grain; AQE skew join on Spark)
upstream_missing  run the unfinished Profit/Growth upstreams for the month, then re-run
schema_change     re-run the days once the new version is declared in
                  ``helpers.engagement.event_contract.CONTRACT``; an undeclared one is refused with a draft
================  ==========================================================================

:func:`verify` re-checks after a fix: the re-run succeeded, its marts equal a fresh computation
from everything landed by ``as_of``, and the condition the runbook is about is gone (or, for
conditions of the source itself such as duplicates or one hot account, handled by the pipeline).
Nothing here reads the wall clock: everything works at ``ctx.as_of``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from helpers.checks.framework import CheckResult
from helpers.core.catalogue import CATALOGUE
from helpers.engagement import event_contract
from helpers.engagement import pipeline as engagement
from helpers.runbooks import kit
from helpers.runs import records as runs
from helpers.storage import landing, warehouse

PIPELINE = engagement.PIPELINE
RUNBOOK_IDS = CATALOGUE["engagement"]
OTHER_SOURCES = ("web_analytics", "mobile_analytics", "api_logs")  # beside the Kafka stream
MOBILE = ("ios", "android")


def check_id(cid: str) -> str:
    return f"{PIPELINE}.{cid}"


def _is_day(label: str | None) -> bool:
    try:
        dt.date.fromisoformat(str(label))
        return True
    except ValueError:
        return False


def _stored(cid: str, as_of: dt.datetime, partition: str | None = None) -> dict[str, Any] | None:
    """The latest stored result of the check (for ``partition`` if given) evaluated as of ``as_of``."""
    from helpers.checks import store

    for row in store.list_results(check_id=check_id(cid), limit=500):
        if row["as_of"] <= as_of and partition in (None, row["partition"]):
            return row
    return None


def partition_of(ctx: kit.RunbookContext, cid: str) -> str | None:
    """The day to look at: the alert's (a day), else the latest day the check was recorded for."""
    if _is_day(ctx.partition):
        return str(ctx.partition)
    row = _stored(cid, ctx.as_of)
    return row["partition"] if row else None


def check_state(ctx: kit.RunbookContext, cid: str) -> kit.Evidence:
    """Is the check failing for the partition, as the pipeline's latest run recorded it?"""
    day = partition_of(ctx, cid)
    row = _stored(cid, ctx.as_of, day) if day else None
    if row is None:
        what = f"for {day}" if day else "for any day"
        return kit.Evidence(False, f"{check_id(cid)}: no result recorded {what} by {kit._fmt(ctx.as_of)}")
    frame = pd.DataFrame(
        [{k: row[k] for k in ("partition", "status", "severity", "as_of", "run_id", "summary")}]
    )
    detail = f"{check_id(cid)} {row['partition']} [{row['status']}, {row['severity']}]: {row['summary']}"
    return kit.Evidence(
        row["status"] != "pass",
        kit._clip(detail, 400),
        frame,
        {"partition": row["partition"], "result": row["evidence"], "targets": [[PIPELINE, row["partition"]]]},
    )


# ---------------------------------------------------------------- reading the landing zone


def _events(
    as_of: dt.datetime, first: dt.date, last: dt.date, columns: Sequence[str], root: Path | None = None
) -> pd.DataFrame:
    """``events`` rows of received partitions [first, last] delivered by ``as_of`` (a few columns)."""
    files = engagement.landed_files("events", first, last, as_of=as_of, root=root)
    frames = [pq.read_table(f, columns=list(columns)).to_pandas() for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))


def _device(context: Any) -> str | None:
    try:
        return json.loads(context).get("device", {}).get("type") if isinstance(context, str) else None
    except (ValueError, AttributeError):
        return None


def _days(ids: dict[str, Any], key: str) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(str(d)) for d in ids.get(key, {}) or {})


# ---------------------------------------------------------------- late_events


def late_platforms(ctx: kit.RunbookContext, state: kit.Evidence) -> pd.DataFrame:
    """The late messages the check named, with their platform and lateness (from the landing zone)."""
    ev = state.data.get("result", {})
    ids = set(ev.get("beyond_window_ids", [])) | set(ev.get("late_in_window_ids", []))
    if not ids:
        return pd.DataFrame(columns=["message_id", "device", "platform", "lateness_hours", "copies"])
    received = _days(ev, "beyond_window_by_received_day") or [dt.date.fromisoformat(state.data["partition"])]
    event_days = _days(ev, "beyond_window_by_event_day") + _days(ev, "late_by_event_day")
    first = min(event_days) if event_days else min(received) - dt.timedelta(days=engagement.MAU_DAYS)
    rows = _events(
        ctx.as_of,
        first,  # a message is received on or after its event day: earlier copies are in between
        max(received),
        ["messageId", "timestamp", "receivedAt", "context"],
    )
    copies = rows.groupby("messageId").size()
    late = rows[rows["messageId"].isin(ids)].drop_duplicates("messageId", keep="last")
    out = pd.DataFrame(
        {
            "message_id": late["messageId"],
            "device": late["context"].map(_device),
            "lateness_hours": ((late["receivedAt"] - late["timestamp"]).dt.total_seconds() / 3600).round(1),
            "copies": late["messageId"].map(copies).astype("int64"),
        }
    )
    out["platform"] = out["device"].map(lambda d: "mobile" if d in MOBILE else "web")
    return out.reset_index(drop=True)


def late_cause(state: kit.Evidence, late: pd.DataFrame, platform: str) -> kit.Evidence:
    """Most late messages came from ``platform`` (mobile: offline devices syncing later; web: network)."""
    if not state.holds or late.empty:
        return kit.Evidence(False, f"no late {platform} events")
    mine = late[late["platform"] == platform]
    ev = state.data["result"]
    days = ", ".join(sorted(ev.get("late_by_event_day", {}) | ev.get("beyond_window_by_event_day", {})))
    detail = (
        f"{len(mine)} of {len(late)} late events from {platform} "
        f"({', '.join(sorted(set(mine['device'].dropna()))) or '-'}), event day(s) {days}, "
        f"up to {late['lateness_hours'].max():.0f} h late"
    )
    return kit.Evidence(len(mine) * 2 > len(late), detail, mine.head(20))


def retried(state: kit.Evidence, late: pd.DataFrame) -> kit.Evidence:
    """Late messages that had already been received once: a retry re-sent them days later."""
    again = late[late["copies"] > 1] if len(late) else late
    detail = f"{len(again)} late message(s) were re-sends of an earlier copy" if len(again) else "no re-sends"
    return kit.Evidence(state.holds and len(again) * 2 > max(len(late), 1), detail, again.head(20))


def backfill_targets(state: kit.Evidence) -> list[tuple[str, str]]:
    """The event days the check asked to restate (its backfill requests), else its own day."""
    ranges = state.data.get("result", {}).get("backfill", [])
    out: list[tuple[str, str]] = []
    for r in ranges:
        day, last = dt.date.fromisoformat(r["from_date"]), dt.date.fromisoformat(r["to_date"])
        while day <= last:
            out.append((PIPELINE, day.isoformat()))
            day += dt.timedelta(days=1)
    return out or state.data.get("targets", [])


def lateness_alert(ctx: kit.RunbookContext) -> kit.Evidence:
    """For a freshness or SLA alert routed here (the monitors call Engagement lateness
    ``late_events``): are the engagement marts or their sources late now?"""
    from helpers.checks import monitors

    if ctx.alert is None or ctx.alert.kind not in monitors.LATE_KINDS:
        return kit.Evidence(False, "no freshness alert: the late_events check is the symptom")
    marts, sources = kit.mart_freshness(ctx), kit.late_sources(ctx)
    late = [e for e in (marts, sources) if e.holds]
    detail = "; ".join(e.detail for e in late) or f"{marts.detail}; {sources.detail}"
    frame = sources.frame if sources.holds else marts.frame
    return kit.Evidence(bool(late), detail, frame, {"targets": kit.rerun_targets(marts)})


def late_targets(state: kit.Evidence, stale: kit.Evidence) -> list[tuple[str, str]]:
    """What to restate: the late days the check asked for, else the stale marts' partitions."""
    if state.holds:
        return backfill_targets(state)
    return kit.rerun_targets(stale)


def restate(ctx: kit.RunbookContext, state: kit.Evidence, stale: kit.Evidence) -> list[dict[str, Any]]:
    """:func:`perform_backfill` for late events; a re-run of the stale partitions for a late mart."""
    return perform_backfill(ctx, state) if state.holds else kit.rerun(ctx, late_targets(state, stale))


def pending_backfills() -> kit.Evidence:
    """Backfill requests the pipeline recorded and nobody has performed yet."""
    pending = engagement.pending_backfill_requests()
    cols = ["from_date", "to_date", "events", "requested_at", "command"]
    detail = "; ".join(f"{r.from_date}..{r.to_date} ({r.events} events)" for r in pending.itertuples())
    return kit.Evidence(bool(len(pending)), f"pending backfill requests: {detail or 'none'}", pending[cols])


def perform_backfill(ctx: kit.RunbookContext, state: kit.Evidence) -> list[dict[str, Any]]:
    """The recorded backfill requests (``backfill --force --downstream``), else re-run the day."""
    if not engagement.pending_backfill_requests().empty:
        return engagement.perform_backfill_requests(clock=kit.as_of_clock(ctx.as_of), as_of=ctx.as_of)
    return kit.rerun(ctx, backfill_targets(state))


# ---------------------------------------------------------------- kafka_outage


def stream_state(ctx: kit.RunbookContext, cid: str = "kafka_outage") -> kit.Evidence:
    """The stream monitor's verdict for the day, recomputed now from the landed ``receivedAt``."""
    from helpers.engagement import checks as engagement_checks

    day = partition_of(ctx, cid) or (ctx.as_of.date() - dt.timedelta(days=1)).isoformat()
    mon = ctx.config.pipelines.monitors
    hourly, arrivals = engagement_checks.stream_hourly(ctx.as_of, weeks=mon.baseline_weeks)
    out = engagement_checks.stream_outcome(
        hourly,
        dt.date.fromisoformat(day),
        as_of=ctx.as_of,
        arrivals=arrivals,
        weeks=mon.baseline_weeks,
        min_points=mon.min_baseline_points,
    )
    frame = pd.DataFrame(out.evidence.get("hours", []))
    data = {"partition": day, "result": dict(out.evidence), "targets": [[PIPELINE, day]]}
    return kit.Evidence(not out.passed, f"{PIPELINE} stream {day}: {out.summary}", frame, data)


def _window(state: kit.Evidence) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    ev = state.data.get("result", {})
    if not ev.get("window_start"):
        return None
    return pd.Timestamp(ev["window_start"]), pd.Timestamp(ev["window_end"])


def outage_span(state: kit.Evidence) -> str:
    """``2026-10-20 09:00-15:00 UTC`` (the worst outage window), or the day when none was found."""
    win = _window(state)
    if win is None:
        return str(state.data.get("partition") or "no window")
    return f"{win[0]:%Y-%m-%d %H:%M}-{win[1]:%H:%M} UTC"


def _hourly_rows(source: str, column: str, lo: pd.Timestamp, hi: pd.Timestamp, as_of: dt.datetime) -> int:
    days = {lo.date(), (hi - pd.Timedelta(seconds=1)).date()}
    n = 0
    for d in landing.deliveries(source, as_of=as_of):
        if dt.date.fromisoformat(d.partition) in days:
            col = pq.read_table(landing.source_dir(source) / d.file, columns=[column]).column(0)
            ts = pc.cast(col, "timestamp[us, tz=UTC]") if col.type.tz is None else col
            n += int(pc.sum(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))).as_py() or 0)
    return n


def other_sources(ctx: kit.RunbookContext, state: kit.Evidence) -> pd.DataFrame:
    """Rows of the other engagement sources in the outage window vs the same hours a week before."""
    win = _window(state)
    if win is None:
        return pd.DataFrame(columns=["source", "in_window", "week_before"])
    lo, hi = win
    week = pd.Timedelta(days=7)
    cols = {"web_analytics": "timestamp", "mobile_analytics": "started_at", "api_logs": "timestamp"}
    rows = [
        {
            "source": s,
            "in_window": _hourly_rows(s, c, lo, hi, ctx.as_of),
            "week_before": _hourly_rows(s, c, lo - week, hi - week, ctx.as_of),
        }
        for s, c in cols.items()
        if landing.deliveries(s, as_of=ctx.as_of)
    ]
    return pd.DataFrame(rows, columns=["source", "in_window", "week_before"])


def outage_cause(state: kit.Evidence, others: pd.DataFrame, which: str) -> kit.Evidence:
    """Which of the plan's causes the window's shape points to.

    ``network``: the other sources dropped too (the network, not Kafka); ``broker``: the stream
    received nothing at all while the other sources kept flowing; ``producer``: some events
    still arrived (only some producers could not connect).
    """
    if not state.holds or _window(state) is None:
        return kit.Evidence(False, f"no outage window ({which})")
    ev = state.data["result"]
    span = f"{ev['window_start'][:16]}..{ev['window_end'][11:16]} UTC"
    base = others[others["week_before"] > 0]
    dropped = base[base["in_window"] <= 0.2 * base["week_before"]]
    net_down = len(base) > 0 and len(dropped) * 2 > len(base)
    observed = int(ev.get("observed", 0))
    if which == "network":
        names = ", ".join(dropped["source"]) or "none"
        detail = f"other sources in {span}: dropped {names} of {len(base)} with a baseline"
        return kit.Evidence(net_down, detail, others)
    if which == "broker":
        detail = f"stream received {observed} events in {span} (~{ev['expected']:.0f} expected); other sources flowing"
        return kit.Evidence(not net_down and observed == 0, detail, others)
    detail = f"stream received {observed} of ~{ev['expected']:.0f} expected events in {span}"
    return kit.Evidence(not net_down and observed > 0, detail, others)


def replay_window(ctx: kit.RunbookContext, state: kit.Evidence, replay_from: str) -> dict[str, Any]:
    """Land the window's messages from a retained copy of the topic (``replay_from``: a landing zone
    re-consumed from Kafka) that the landing zone lacks, as new deliveries (landing partitions are
    immutable), then re-run the affected days with their dependants."""
    from helpers.demo.events import EVENTS_SCHEMA

    win = _window(state)
    if win is None:
        raise ValueError("no outage window to replay")
    if not replay_from:
        raise ValueError(
            "replay_from: empty; re-consume the window from the topic first (python -m helpers.storage.extract.kafka "
            "--group-id <a new group> ... into a scratch landing) and pass that landing zone"
        )
    lo, hi = win
    root = Path(replay_from)
    if not (root / "events").is_dir():
        raise ValueError(f"replay_from: {root} has no events/ landing folder")
    first, last = lo.date(), (hi - pd.Timedelta(seconds=1)).date()
    have = set(_events(ctx.as_of, first, last, ["messageId"])["messageId"].dropna())
    kept = landing.read_source("events", start=first, end=last, root=root)
    lost = kept[(kept["receivedAt"] >= lo) & (kept["receivedAt"] < hi) & ~kept["messageId"].isin(have)]
    written = []
    for day, rows in lost.groupby(lost["receivedAt"].dt.date):
        table = pa_table(rows, EVENTS_SCHEMA)
        d = landing.write_delivery("events", day, table, arrived_at=ctx.as_of)
        written.append({"partition": d.partition, "file": d.file, "rows": d.rows})
    days = sorted({str(d) for d in lost["timestamp"].dt.date} | {state.data["partition"]})
    return {
        "replayed": int(len(lost)),
        "deliveries": written,
        "reruns": kit.rerun(ctx, [(PIPELINE, d) for d in days]),
    }


def pa_table(frame: pd.DataFrame, schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame.reset_index(drop=True), schema=schema, preserve_index=False)


# ---------------------------------------------------------------- duplicate_events


def duplicate_copies(ctx: kit.RunbookContext, state: kit.Evidence) -> pd.DataFrame:
    """Each duplicated message's copies: when each was sent and received (from the landing zone)."""
    ev = state.data.get("result", {})
    ids = set(ev.get("message_ids", []))
    cols = ["message_id", "copies", "distinct_sent_at", "received_spread_s"]
    if not ids:
        return pd.DataFrame(columns=cols)
    days = _days(ev, "by_event_day")
    rows = _events(ctx.as_of, min(days) - dt.timedelta(days=1), max(days) + dt.timedelta(days=3),
                   ["messageId", "sentAt", "receivedAt"])  # fmt: skip
    rows = rows[rows["messageId"].isin(ids)]
    g = rows.groupby("messageId")
    out = pd.DataFrame(
        {
            "copies": g.size(),
            "distinct_sent_at": g["sentAt"].nunique(),
            "received_spread_s": (g["receivedAt"].max() - g["receivedAt"].min()).dt.total_seconds(),
        }
    )
    return out.reset_index(names="message_id")[cols]


def duplicate_cause(state: kit.Evidence, copies: pd.DataFrame, which: str) -> kit.Evidence:
    """``retry``: the client sent the same message again (copies with different ``sentAt``);
    ``network``: one send delivered several times (same ``sentAt``, later ``receivedAt``)."""
    if not state.holds or copies.empty:
        return kit.Evidence(False, f"no duplicated messages ({which})")
    resent = copies["distinct_sent_at"] > 1
    mine = copies[resent] if which == "retry" else copies[~resent]
    extra = int((copies["copies"] - 1).sum())
    what = "re-sent by the client (different sentAt)" if which == "retry" else "one send delivered again"
    days = ", ".join(d.isoformat() for d in _days(state.data.get("result", {}), "by_event_day"))
    detail = (
        f"{len(mine)} of {len(copies)} duplicated messages of {days or 'the window'} {what}; {extra} extra rows, "
        f"copies up to {int(copies['copies'].max())}, spread up to {copies['received_spread_s'].max():.0f} s"
    )
    return kit.Evidence(len(mine) * 2 > len(copies), detail, mine.head(20))


def dedup_missing(ctx: kit.RunbookContext, state: kit.Evidence) -> kit.Evidence:
    """Were the copies counted? The intake mart records the copies removed per received day; a
    day whose marts were written without that record was written without deduplication."""
    if not state.holds:
        return kit.Evidence(False, "no duplicated messages")
    intake = _mart(engagement.INTAKE_TABLE, "date")
    days = [d.isoformat() for d in _days(state.data["result"], "by_event_day")]
    rows = intake[intake["date"].isin(days)] if len(intake) else intake
    missing = [d for d in days if d not in set(rows.get("date", []))]
    detail = (
        f"marts of {', '.join(missing)} carry no intake record: written without deduplication"
        if missing
        else f"the pipeline keeps one copy per messageId: {int(rows['duplicates'].sum())} copies removed at intake"
    )
    return kit.Evidence(bool(missing), detail, rows)


def _mart(table: str, key: str) -> pd.DataFrame:
    try:
        frame = warehouse.read_table(table)
    except Exception:  # the table does not exist before the pipeline's first run
        return pd.DataFrame()
    if len(frame):
        frame[key] = frame[key].astype(str).str[:10]
    return frame


# ---------------------------------------------------------------- data_skew_oom


def hot_account(state: kit.Evidence) -> kit.Evidence:
    """One account holding a large share of a day's events (the key that spills a naive join)."""
    ev = state.data.get("result", {})
    if not state.holds or not ev.get("account"):
        share = max((r["share"] for d in ev.get("top_accounts_by_day", {}).values() for r in d), default=0.0)
        return kit.Evidence(False, f"largest account share of a day's events: {share:.1%}")
    top = pd.DataFrame(ev["top_accounts_by_day"].get(ev["day"], []))
    detail = f"account {ev['account']} holds {ev['share']:.1%} of {ev['day']}'s events ({ev['strategy']})"
    return kit.Evidence(True, detail, top, {"account": ev["account"], "day": ev["day"]})


def engagement_failures(ctx: kit.RunbookContext, state: kit.Evidence) -> kit.Evidence:
    """Engagement days whose latest run died of memory or time (the OOM the plan describes)."""
    pressure = kit.compute_pressure(ctx)
    frame = pressure.frame
    if len(frame):
        frame = frame[(frame["pipeline"] == PIPELINE) & (frame["status"] == "failed")]
        still = [runs.latest_run(PIPELINE, d) for d in frame["partition"]]
        frame = frame[[r is not None and r.status == "failed" for r in still]]
    detail = (
        "; ".join(f"{r.partition} ({r.run_id}): {r.why}" for r in frame.itertuples())
        if len(frame)
        else "no engagement run died of memory or time"
    )
    targets = [[PIPELINE, d] for d in dict.fromkeys(frame["partition"])] if len(frame) else []
    return kit.Evidence(bool(len(frame)), detail, frame, {"targets": targets})


# ---------------------------------------------------------------- upstream_missing


def upstream_months(ctx: kit.RunbookContext, day: str | None) -> list[str]:
    """The months a run of ``day`` writes (its window's months)."""
    if not day:
        return []
    d = dt.date.fromisoformat(day)
    first = d - dt.timedelta(days=engagement.DEFAULT_WINDOW_DAYS - 1)
    return sorted({first.strftime("%Y-%m"), d.strftime("%Y-%m")})


def upstream_states(ctx: kit.RunbookContext, day: str | None) -> kit.Evidence:
    """Profit and Growth readiness for each month the day's run writes, and pending account rows."""
    rows = []
    for period in upstream_months(ctx, day):
        for up in engagement.UPSTREAMS:
            state, _ = engagement.upstream_state(up, period)
            latest = runs.latest_run(up.pipeline, period)
            rows.append(
                {
                    "pipeline": up.pipeline,
                    "period": period,
                    "ready": state.ready,
                    "reason": state.reason,
                    "latest_status": latest.status if latest else None,
                }
            )
    frame = pd.DataFrame(rows, columns=["pipeline", "period", "ready", "reason", "latest_status"])
    accounts = _mart(engagement.ACCOUNTS_TABLE, "period")
    pending = accounts[accounts["status"] == "pending"] if len(accounts) else accounts
    bad = frame[~frame["ready"].astype(bool)] if len(frame) else frame
    detail = "; ".join(f"{r.period}: {r.reason}" for r in bad.itertuples()) or (
        f"Profit and Growth ready for {', '.join(sorted(set(frame['period'])))}"
        if len(frame)
        else f"no {PIPELINE} result recorded by {kit._fmt(ctx.as_of)}: nothing joined yet"
    )
    if len(pending):
        detail += f"; {len(pending)} account row(s) pending in {engagement.ACCOUNTS_TABLE}"
    targets = [[r.pipeline, r.period] for r in bad.itertuples()]
    return kit.Evidence(bool(len(bad)), detail, frame, {"targets": targets, "partition": day})


def upstream_running(ups: kit.Evidence) -> kit.Evidence:
    """An upstream still running (a backfill in progress): wait for it rather than start another."""
    frame = ups.frame
    busy = frame[frame["latest_status"].isin(["running", "queued"])] if len(frame) else frame
    detail = "; ".join(f"{r.pipeline} {r.period} is {r.latest_status}" for r in busy.itertuples())
    return kit.Evidence(bool(len(busy)), detail or "no upstream run in progress", busy)


def upstream_unfinished(ups: kit.Evidence, running: kit.Evidence) -> kit.Evidence:
    """Upstreams that have not finished (not run, or their latest run failed), not in progress."""
    frame = ups.frame
    bad = frame[~frame["ready"].astype(bool)] if len(frame) else frame
    if len(running.frame):
        bad = bad[~bad["latest_status"].isin(["running", "queued"])]
    detail = "; ".join(f"{r.pipeline} {r.period}: {r.reason}" for r in bad.itertuples())
    targets = [[r.pipeline, r.period] for r in bad.itertuples()]
    return kit.Evidence(bool(len(bad)), detail or "Profit and Growth finished", bad, {"targets": targets})


def finish_upstreams(ctx: kit.RunbookContext, unfinished: kit.Evidence, day: str) -> list[dict[str, Any]]:
    """Run the unfinished upstreams for their months (without their own dependants), then re-run
    the engagement day with its dependants so the join publishes final figures."""
    from helpers.runs.dag import Dag

    graph = Dag.from_config(ctx.config.pipelines)
    chain: list[tuple[str, str]] = []
    for pipeline, period in unfinished.data.get("targets", []):
        for p in [*graph.order(graph.ancestors(pipeline)), pipeline]:  # its own unfinished upstreams first
            latest = runs.latest_run(p, period)
            if (p, period) not in chain and (p == pipeline or latest is None or latest.status != "succeeded"):
                chain.append((p, period))
    out = kit.rerun(ctx, chain, downstream=False)
    failed = [o for o in out if o["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"upstream run(s) did not succeed: {failed}")
    return out + kit.rerun(ctx, [(PIPELINE, day)])


# ---------------------------------------------------------------- schema_change


def quarantine_reasons(state: kit.Evidence) -> pd.DataFrame:
    """The check's quarantined rows by reason, with whether the contract in force declares the version."""
    ev = state.data.get("result", {})
    known = event_contract.CONTRACT.known_versions
    rows = []
    for reason, n in (ev.get("by_reason") or {}).items():
        version = reason.split("'")[1] if reason.startswith("unknown schema_version '") else None
        rows.append(
            {
                "reason": reason,
                "rows": int(n),
                "version": version,
                "declared_now": version in known if version else None,
            }
        )
    return pd.DataFrame(rows, columns=["reason", "rows", "version", "declared_now"])


def new_format(state: kit.Evidence, reasons: pd.DataFrame) -> kit.Evidence:
    """Rows in a version the contract did not declare when the run read them."""
    unknown = reasons[reasons["version"].notna()] if len(reasons) else reasons
    if not state.holds or unknown.empty:
        return kit.Evidence(False, "no rows of an undeclared schema_version")
    parts = [
        f"{r.rows} row(s) of schema_version {r.version} "
        + ("(declared in the contract since: re-run)" if r.declared_now else "(not declared: map it)")
        for r in unknown.itertuples()
    ]
    return kit.Evidence(
        True,
        f"{state.data['partition']}: " + "; ".join(parts),
        unknown,
        {"undeclared": [r.version for r in unknown.itertuples() if not r.declared_now]},
    )


def broken_records(state: kit.Evidence, reasons: pd.DataFrame) -> kit.Evidence:
    """Rows of a declared version missing a required field (the frontend sent them incomplete)."""
    bad = reasons[reasons["version"].isna()] if len(reasons) else reasons
    ids = state.data.get("result", {}).get("quarantined_ids", {})
    detail = ", ".join(f"{r.reason}: {r.rows}" for r in bad.itertuples()) or "no incomplete records"
    sample = ", ".join(list(ids)[:3])
    return kit.Evidence(state.holds and len(bad) > 0, detail + (f" (e.g. {sample})" if len(bad) else ""), bad)


def format_after(ctx: kit.RunbookContext) -> kit.Evidence:
    """:func:`new_format` of the check's latest recorded result (after a fix's re-run)."""
    state = check_state(ctx, "schema_change")
    return new_format(state, quarantine_reasons(state))


def contract_versions() -> pd.DataFrame:
    """The contract in force: one row per version/form."""
    return pd.DataFrame(
        [
            {"version": v.version, "form": v.form, "description": v.description}
            for v in event_contract.CONTRACT.versions
        ]
    )


def received_days(state: kit.Evidence) -> list[tuple[str, str]]:
    """Run dates covering the received days the check saw (its window)."""
    days = state.data.get("result", {}).get("window_received_days") or [state.data.get("partition")]
    return [(PIPELINE, d) for d in sorted({str(x)[:10] for x in days if x})]


def redeclared_rerun(ctx: kit.RunbookContext, state: kit.Evidence, fmt: kit.Evidence) -> list[dict[str, Any]]:
    """Re-run the days once every quarantined version is declared; refuse (naming what to add) otherwise."""
    undeclared = fmt.data.get("undeclared", [])
    if undeclared:
        raise ValueError(
            f"schema_version {', '.join(undeclared)} is not declared: add a reviewed ContractVersion to "
            "helpers.engagement.event_contract.CONTRACT (CONTRACT.with_version(...)), then run this fix again"
        )
    return kit.rerun(ctx, [(PIPELINE, state.data["partition"])])


# ---------------------------------------------------------------- verifying


def _result(
    cid: str, day: str, ok: bool, summary: str, ctx: kit.RunbookContext, **evidence: Any
) -> CheckResult:
    return CheckResult(
        check_id=check_id(cid),
        pipeline=PIPELINE,
        partition=day,
        status="pass" if ok else "fail",
        severity="warning",
        summary=summary,
        evidence=evidence,
        as_of=ctx.as_of,
        evaluated_at=ctx.as_of,
        catalogue_id=cid,
        kind="domain",
    )


def marts_match(ctx: kit.RunbookContext, day: str) -> tuple[bool, str]:
    """The day's marts (``engagement_daily``, ``engagement_metrics_daily``) equal a fresh computation
    of the run's window from everything landed by ``as_of``."""
    from helpers.storage import engine as engines

    eng = engines.get_engine(None)
    window = engagement.run_window(day, ctx.as_of, engagement.DEFAULT_WINDOW_DAYS)
    run = engagement.compute(eng, engagement.load(eng, window), window)
    diffs = []
    for table, frame, cols in (
        (engagement.DAILY_TABLE, run.daily, list(engagement.DAILY_COLUMNS)),
        (engagement.METRICS_TABLE, run.metrics, ["date", "dau", "wau", "mau", "events"]),
    ):
        got = _mart(table, "date")
        want = frame.assign(date=frame["date"].astype(str))
        for d in sorted(set(want["date"])):
            a = got[got["date"] == d][cols].sort_values(cols[:2]).reset_index(drop=True) if len(got) else got
            b = want[want["date"] == d][cols].sort_values(cols[:2]).reset_index(drop=True)
            if len(a) != len(b) or not (a.astype(str).values == b.astype(str).values).all():
                diffs.append(f"{table} {d}")
    if diffs:
        return False, f"marts differ from a fresh computation: {', '.join(diffs)}"
    return (
        True,
        f"marts of {window.start}..{window.run_date} equal a fresh computation as of {kit._fmt(ctx.as_of)}",
    )


def reran(ctx: kit.RunbookContext, day: str) -> tuple[bool, str]:
    """The day's latest run succeeded at or after ``as_of`` (the fix's re-run)."""
    latest = runs.latest_run(PIPELINE, day)
    if latest is None:
        return False, f"{PIPELINE} {day} has no run"
    fresh = latest.as_of is not None and latest.as_of >= ctx.as_of
    ok = latest.status == "succeeded" and fresh
    return ok, f"{PIPELINE} {day}: latest run {latest.run_id} {latest.status}" + (
        "" if fresh else " (before the fix)"
    )


def verify_quarantined(
    ctx: kit.RunbookContext, diag: kit.Diagnosis, state: kit.Evidence, reasons: pd.DataFrame
) -> kit.Verification:
    """Verify when all that is quarantined is incomplete records of declared versions.

    Nothing can be re-extracted (the producer sent them so) and nothing is re-run: the rows stay
    quarantined with their reason and are counted. With ``apply_fix`` this passes when every
    quarantined row is such a record, every intake day balances (received = accepted +
    quarantined) and the day's marts equal a fresh computation; the check keeps failing (listed as
    ``handled``) and its alert stays open for the producer's owner (Frontend). Otherwise: the check
    as last recorded.
    """
    base = diag.verify()
    if not (ctx.apply_fix and diag.present) or base.passed:
        return base
    undeclared = reasons[reasons["version"].notna()] if len(reasons) else reasons
    if len(undeclared):  # a format to map first: not handled
        return base
    intake = _mart(engagement.INTAKE_TABLE, "date")
    unbalanced = (
        intake[intake["received"] != intake["accepted"] + intake["quarantined"]] if len(intake) else intake
    )
    same, detail = marts_match(ctx, str(state.data["partition"]))
    print(f"intake: {len(intake) - len(unbalanced)} of {len(intake)} received day(s) balance; {detail}")
    if len(unbalanced) or not same:
        return base
    handled = tuple(sorted({r.check_id for r in base.results if r.failed}))
    diag.verification = kit.HandledVerification(base.results, base.source, base.recorded, handled)
    print(repr(diag.verification))
    return diag.verification


def verify(
    ctx: kit.RunbookContext,
    diag: kit.Diagnosis,
    cid: str,
    days: Sequence[str],
    condition: kit.Evidence | None = None,
    *,
    compare: bool = False,
) -> kit.Verification:
    """Re-check after the fix, per day: the re-run succeeded after the fix started, ``condition``
    (the runbook's symptom, recomputed) no longer holds and, with ``compare``, the day's marts equal
    a fresh computation (one more pass over the window). Recorded (resolving the alert when all
    pass) only when fixes were applied. In diagnose mode: the failing check as last recorded."""
    from helpers.checks import store
    from helpers.oncall import alerts as alertsmod

    if not diag.present or not ctx.apply_fix or not days:  # nothing re-run: the check as last recorded
        return diag.verify()
    results = []
    for day in days:
        parts = [reran(ctx, day)] + ([marts_match(ctx, day)] if compare else [])
        if condition is not None:
            parts.append((not condition.holds, f"condition now: {condition.detail}"))
        ok = all(p[0] for p in parts)
        results.append(_result(cid, day, ok, "; ".join(p[1] for p in parts), ctx))
    if ctx.alert is not None and all(not r.failed for r in results):
        alert_day = ctx.alert.partition
        if alert_day not in days:  # the alert's own day: its figures were not the ones repaired
            results.append(_result(cid, alert_day, True, f"repaired {', '.join(days)}", ctx))
    store.record_results(results)
    alertsmod.sync(results, config=ctx.config)
    diag.verification = kit.Verification(tuple(results), "runbook", True)
    print(repr(diag.verification))
    return diag.verification

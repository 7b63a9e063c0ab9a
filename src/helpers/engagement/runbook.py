"""The Engagement runbooks' logic (``notebooks/runbooks/engagement/``): the family-runbook contract.

One runbook per Engagement entry of the failure catalogue. Each notebook calls the contract the
Profit and Growth runbook modules follow too:

- :func:`load_state` reads, once, what the runbook looks at for its catalogue id (:class:`State`:
  the check the pipeline recorded for the day, or the stream monitor recomputed now);
- :func:`check_now` is the symptom: the failing check as it stands;
- the notebook records the evidence for each of the plan's "Why" causes (``helpers.engagement.evidence``);
- :func:`apply_fix` works out the fix from the diagnosis and performs it, with the pipeline's own
  code, only when ``apply_fix=True``:

================  ==========================================================================
runbook           fix
================  ==========================================================================
late_events       perform the recorded backfill requests (``backfill --force --downstream``)
kafka_outage      replay the outage window from the topic's retained copy (``State.replay_from``:
                  a landing zone re-consumed from Kafka) as a new delivery, then re-run the days
duplicate_events  re-run the days (one copy per ``messageId``: the figures count each click once)
data_skew_oom     re-run the days (pre-aggregation to the account grain; AQE skew join on Spark)
upstream_missing  run the unfinished Profit/Growth upstreams for the month, then re-run
schema_change     declare the new version (its reviewed mapping, ``event_contract.REVIEWED``) as data
                  in the config folder's ``event_contract.yml`` (who: the engineer on call, when:
                  ``as_of``), then replay its quarantined rows: re-run every received day whose
                  intake quarantined them; a version without a reviewed mapping is refused with a draft
================  ==========================================================================

- :func:`verify` re-checks after a fix: the re-run succeeded, the condition the runbook is about
  is gone (or, for conditions of the source itself such as incomplete records, handled by the
  pipeline) and, where asked, its marts equal a fresh computation from everything landed by ``as_of``.
  ``schema_change`` verifies the complete state, not the days it re-ran: no intake day of the marts
  still quarantines a row of an undeclared version, and every such day's marts equal a fresh
  computation.

Nothing here reads the wall clock: everything works at ``ctx.as_of``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.checks.framework import CheckResult
from helpers.core.catalogue import CATALOGUE, SOURCE_GROUPS
from helpers.engagement import event_contract, evidence, store
from helpers.engagement.evidence import landed_events, mart_rows, outage_window
from helpers.engagement.inputs import load
from helpers.engagement.marts import DAILY_COLUMNS, DAILY_TABLE, INTAKE_TABLE, METRICS_TABLE
from helpers.engagement.run import compute
from helpers.engagement.window import DEFAULT_WINDOW_DAYS, PIPELINE, run_window
from helpers.runbooks import kit
from helpers.runbooks.formatting import clip, utc_text
from helpers.runs import records as runs
from helpers.storage import landing
from helpers.storage.contracts import EVENTS_SCHEMA

RUNBOOK_IDS = CATALOGUE["engagement"]
# (what the fix re-runs, what it does in a line, the action: None when there is nothing to do)
Plan = tuple[list[tuple[str, str]], str, Callable[[], Any] | None]


# ---------------------------------------------------------------- the check, as recorded


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
    from helpers.checks import store as check_store

    for row in check_store.list_results(check_id=check_id(cid), limit=500):
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
        return kit.Evidence(False, f"{check_id(cid)}: no result recorded {what} by {utc_text(ctx.as_of)}")
    frame = pd.DataFrame(
        [{k: row[k] for k in ("partition", "status", "severity", "as_of", "run_id", "summary")}]
    )
    detail = f"{check_id(cid)} {row['partition']} [{row['status']}, {row['severity']}]: {row['summary']}"
    return kit.Evidence(
        row["status"] != "pass",
        clip(detail, 400),
        frame,
        {"partition": row["partition"], "result": row["evidence"], "targets": [[PIPELINE, row["partition"]]]},
    )


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


# ---------------------------------------------------------------- the family-runbook contract


@dataclass
class State:
    """What an Engagement runbook reads once for its catalogue id, and what its fix planned.

    ``check``: the check as the pipeline's latest run recorded it for the day (``kafka_outage``:
    the stream monitor, recomputed now from the landed ``receivedAt``); ``upstreams``
    (``upstream_missing`` only): Profit and Growth readiness for the months that day's run writes.
    ``replay_from`` (``kafka_outage`` only, set by the notebook): a landing zone holding the window
    re-consumed from the topic. ``targets``: the ``(pipeline, day)`` pairs :func:`apply_fix`
    re-runs, which :func:`verify` checks.
    """

    catalogue_id: str
    check: kit.Evidence
    upstreams: kit.Evidence | None = None
    replay_from: str = ""
    targets: list[tuple[str, str]] = field(default_factory=list)

    @property
    def day(self) -> str | None:
        """The day the runbook looks at (None when the check was never recorded)."""
        return self.check.data.get("partition")


def stream_stopped(diag: kit.Diagnosis, ctx: kit.RunbookContext) -> kit.Evidence | None:
    """For an alert about the ``events`` source's freshness (routed to ``kafka_outage`` by its
    source): the stream stopped arriving, as the symptom and a finding. Otherwise nothing is
    recorded (None): the stream monitor is the symptom."""
    sources = SOURCE_GROUPS["kafka_outage"]
    if ctx.alert is None or kit.alerted_source(ctx) not in sources:
        return None
    stopped = diag.symptom(kit.sources_stopped(ctx, sources, what="event stream"))
    reason = "the event stream stopped arriving (broker down or producer cannot connect)"
    return diag.finding("kafka_outage", reason, stopped)


def load_state(ctx: kit.RunbookContext, catalogue_id: str) -> State:
    """Read, once, what the runbook for ``catalogue_id`` looks at (see :class:`State`)."""
    if catalogue_id not in RUNBOOK_IDS:
        raise ValueError(f"catalogue_id: expected one of {', '.join(RUNBOOK_IDS)}, got {catalogue_id!r}")
    if catalogue_id == "kafka_outage":
        return State(catalogue_id, stream_state(ctx, catalogue_id))
    state = State(catalogue_id, check_state(ctx, catalogue_id))
    if catalogue_id == "upstream_missing":
        state.upstreams = evidence.upstream_states(ctx, state.day)
    return state


def check_now(state: State) -> kit.Evidence:
    """The symptom: the failing check as it stands (``upstream_missing``: the upstreams' readiness)."""
    return state.upstreams if state.upstreams is not None else state.check


def apply_fix(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> kit.FixRecord | None:
    """Work out the fix from the diagnosis; perform it only when ``ctx.apply_fix`` (else a dry run
    that says what it would do, :func:`helpers.runbooks.kit.guarded_fix`).

    What the fix re-runs is kept on ``state.targets`` for :func:`verify`. None when there is
    nothing to do: no symptom, an upstream backfill still in progress (``upstream_missing``: run
    this again afterwards), or no rows of a new format (``schema_change``: incomplete records stay
    quarantined, counted).
    """
    targets, what, action = PLANS[state.catalogue_id](ctx, diag, state)
    state.targets = targets
    return kit.guarded_fix(ctx.apply_fix, action, what) if action is not None else None


def verify(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> kit.Verification:
    """Re-check after the fix: the days :func:`apply_fix` re-ran succeeded and the runbook's
    condition, recomputed now, is gone (:func:`verify_days`). ``schema_change`` without a new
    format: :func:`verify_quarantined`. In diagnose mode: the failing check as last recorded."""
    cid, days = state.catalogue_id, [d for _, d in state.targets]
    if cid == "schema_change" and not _new_format(state).holds:
        return verify_quarantined(ctx, diag, state.check, evidence.quarantine_reasons(state.check))
    if not diag.present or not ctx.apply_fix or not days:  # nothing re-run: the check as last recorded
        return diag.verify()
    if cid == "schema_change":  # the condition is judged on every intake day, not the days re-run
        return verify_days(ctx, diag, cid, days, condition_now(ctx, state), compare=True)
    # the whole outage as the streams show it now (read once: it scans the landed receivedAt)
    win = whole_outage(ctx, state.check) if cid == "kafka_outage" else None
    result = verify_days(ctx, diag, cid, days, condition_now(ctx, state), expected=expected_days(state, win))
    return outage_left(ctx, state, result, win) if cid == "kafka_outage" else result


def outage_left(
    ctx: kit.RunbookContext,
    state: State,
    result: kit.Verification,
    win: tuple[pd.Timestamp, pd.Timestamp] | None,
) -> kit.Verification:
    """A multi-day outage: Verify fails while the stream of another day it reached still shows it
    (the fix replays the whole outage; what it could not replay is named here)."""
    if win is None or not result.passed:
        return result
    span = pd.date_range(win[0].normalize(), (win[1] - pd.Timedelta(seconds=1)).normalize(), freq="D")
    left = [d.date().isoformat() for d in span if d.date().isoformat() != state.day]
    if not left:
        return result
    from helpers.checks import store as check_store

    why = f"the outage of {state.day} still reaches this day's stream: replay it too"
    extra = tuple(_result("kafka_outage", day, False, why, ctx) for day in left)
    check_store.record_results(extra)
    return kit.Verification((*result.results, *extra), result.source, result.recorded)


def condition_now(ctx: kit.RunbookContext, state: State) -> kit.Evidence | None:
    """The runbook's condition recomputed after its fix (None: the successful re-run is the check)."""
    cid, check = state.catalogue_id, state.check
    if cid == "late_events":  # a freshness alert routed here: the marts and sources are fresh
        return evidence.pending_backfills() if check.holds else evidence.lateness_alert(ctx)
    if cid == "kafka_outage":
        return stream_state(ctx)
    if cid == "duplicate_events":
        return evidence.dedup_missing(ctx, check)
    if cid == "upstream_missing":
        return evidence.upstream_states(ctx, state.day)
    if cid == "schema_change":
        return undeclared_anywhere()
    return None  # data_skew_oom: the re-run with the pre-aggregated join


# ---------------------------------------------------------------- fixing, per runbook


def _late_plan(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> Plan:
    """Restate the late days the check asked for (its backfill requests); for a freshness alert
    routed here, re-run the stale partitions the other symptoms name."""
    check = state.check
    if not diag.present:
        return [], "restate nothing", None
    targets = backfill_targets(check) if check.holds else kit.rerun_targets(*diag.symptoms)
    what = f"restate {kit.describe_targets(targets)} with their dependants (the recorded backfill requests)"
    return targets, what, lambda: perform_backfill(ctx, check) if check.holds else kit.rerun(ctx, targets)


def _outage_plan(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> Plan:
    """Replay the outage window from ``state.replay_from``, then re-run the days."""
    targets = [(PIPELINE, state.day)] if state.day else []
    source = state.replay_from or "(replay_from not set)"
    what = f"replay {outage_span(state.check)} from {source}, re-run the days"
    action = partial(replay_window, ctx, state.check, state.replay_from)
    return targets, what, action if diag.present else None


def _duplicates_plan(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> Plan:
    """Re-run the day: the pipeline keeps the first copy of each ``messageId``."""
    targets = diag.targets(*diag.symptoms)
    what = f"re-run {kit.describe_targets(targets)} with their dependants (one copy per messageId)"
    return targets, what, partial(kit.rerun, ctx, targets) if diag.present else None


def _skew_plan(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> Plan:
    """Re-run the days the check and the runs that died name, with the pre-aggregated join."""
    targets = diag.targets(*diag.symptoms)
    what = f"re-run {kit.describe_targets(targets)} with their dependants (pre-aggregated join)"
    return targets, what, partial(kit.rerun, ctx, targets) if diag.present else None


def _upstream_plan(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> Plan:
    """Run the unfinished upstreams, then the day; a backfill in progress is left to finish."""
    ups = check_now(state)
    running = evidence.upstream_running(ups)
    unfinished = evidence.upstream_unfinished(ups, running)
    day = state.day
    what = f"run {kit.describe_targets(unfinished.data.get('targets', []))}, then re-run {PIPELINE} {day}"
    action = partial(finish_upstreams, ctx, unfinished, day)
    return [(PIPELINE, day)] if day else [], what, action if diag.present and not running.holds else None


def _new_format(state: State) -> kit.Evidence:
    return evidence.new_format(state.check, evidence.quarantine_reasons(state.check))


def _schema_plan(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> Plan:
    """Declare the new format's versions (as data), then replay their quarantined rows: re-run every
    received day whose intake quarantined them (refused, with a draft, for a version without a
    reviewed mapping)."""
    check, fmt = state.check, _new_format(state)
    days = replay_days(state.day, new_versions(fmt)) if fmt.holds else []
    versions = ", ".join(new_versions(fmt)) or "-"
    path = event_contract.contract_path()
    what = f"declare schema_version {versions} in {path}, then re-run {PIPELINE} {', '.join(days) or '-'}"
    action = partial(redeclared_rerun, ctx, check, fmt, days)
    return [(PIPELINE, d) for d in days], what, action if diag.present and fmt.holds else None


PLANS: dict[str, Callable[[kit.RunbookContext, kit.Diagnosis, State], Plan]] = {
    "late_events": _late_plan,
    "kafka_outage": _outage_plan,
    "duplicate_events": _duplicates_plan,
    "data_skew_oom": _skew_plan,
    "upstream_missing": _upstream_plan,
    "schema_change": _schema_plan,
}


# ---------------------------------------------------------------- the fixes


def backfill_targets(check: kit.Evidence) -> list[tuple[str, str]]:
    """The event days the check asked to restate (its backfill requests), else its own day."""
    ranges = check.data.get("result", {}).get("backfill", [])
    out: list[tuple[str, str]] = []
    for r in ranges:
        day, last = dt.date.fromisoformat(r["from_date"]), dt.date.fromisoformat(r["to_date"])
        while day <= last:
            out.append((PIPELINE, day.isoformat()))
            day += dt.timedelta(days=1)
    return out or check.data.get("targets", [])


BACKFILL_ROUNDS = 3


def perform_backfill(ctx: kit.RunbookContext, check: kit.Evidence) -> list[dict[str, Any]]:
    """The recorded backfill requests (``backfill --force --downstream``), else re-run the day.

    With several late days, the backfill's own later runs record a request again for an earlier
    day they see beyond their window (a day the same backfill restated first): those are performed
    too, until none is pending (at most :data:`BACKFILL_ROUNDS` rounds; Verify says what is left).
    """
    if store.pending_backfill_requests().empty:
        return kit.rerun(ctx, backfill_targets(check))
    out: list[dict[str, Any]] = []
    for _ in range(BACKFILL_ROUNDS):
        if store.pending_backfill_requests().empty:
            break
        out += store.perform_backfill_requests(clock=ctx.clock, as_of=ctx.as_of)
    return out


def outage_span(check: kit.Evidence) -> str:
    """``2026-10-20 09:00-15:00 UTC`` (the worst outage window), or the day when none was found."""
    win = outage_window(check)
    if win is None:
        return str(check.data.get("partition") or "no window")
    return f"{win[0]:%Y-%m-%d %H:%M}-{win[1]:%H:%M} UTC"


def replay_window(ctx: kit.RunbookContext, check: kit.Evidence, replay_from: str) -> dict[str, Any]:
    """Land the window's messages from a retained copy of the topic (``replay_from``: a landing zone
    re-consumed from Kafka) that the landing zone lacks, as new deliveries (landing partitions are
    immutable), then re-run the affected days with their dependants."""
    win = whole_outage(ctx, check)
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
    have = set(landed_events(ctx.as_of, first, last, ["messageId"])["messageId"].dropna())
    kept = landing.read_source("events", start=first, end=last, root=root)
    lost = kept[(kept["receivedAt"] >= lo) & (kept["receivedAt"] < hi) & ~kept["messageId"].isin(have)]
    written = []
    for day, rows in lost.groupby(lost["receivedAt"].dt.date):
        table = pa_table(rows, EVENTS_SCHEMA)
        d = landing.write_delivery("events", day, table, arrived_at=ctx.as_of)
        written.append({"partition": d.partition, "file": d.file, "rows": d.rows})
    days = sorted({str(d) for d in lost["timestamp"].dt.date} | {check.data["partition"]})
    return {
        "replayed": int(len(lost)),
        "deliveries": written,
        "reruns": kit.rerun(ctx, [(PIPELINE, d) for d in days]),
    }


def whole_outage(ctx: kit.RunbookContext, check: kit.Evidence) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The check's outage window, widened across midnight while the neighbouring day's stream
    shows an outage that reaches it: one outage over several days is replayed (and verified) whole,
    whichever day's alert the runbook was opened for."""
    from helpers.engagement import checks as engagement_checks

    win = outage_window(check)
    if win is None:
        return None
    lo, hi = win
    mon = ctx.config.pipelines.monitors
    hourly, arrivals = engagement_checks.stream_hourly(ctx.as_of, weeks=mon.baseline_weeks)

    def window_of(day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        out = engagement_checks.stream_outcome(
            hourly, day, as_of=ctx.as_of, arrivals=arrivals, weeks=mon.baseline_weeks,
            min_points=mon.min_baseline_points,
        )  # fmt: skip
        ev = out.evidence
        return None if out.passed or not ev.get("window_start") else (
            pd.Timestamp(ev["window_start"]), pd.Timestamp(ev["window_end"])
        )  # fmt: skip

    for _ in range(7):  # backwards: the outage began on an earlier day
        if lo != lo.normalize() or (prev := window_of((lo - pd.Timedelta(days=1)).date())) is None:
            break
        if prev[1] != lo:
            break
        lo = prev[0]
    for _ in range(7):  # forwards: it went on past midnight
        if hi != hi.normalize() or (nxt := window_of(hi.date())) is None or nxt[0] != hi:
            break
        hi = nxt[1]
    return lo, hi


def pa_table(frame: pd.DataFrame, schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(frame.reset_index(drop=True), schema=schema, preserve_index=False)


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


def new_versions(fmt: kit.Evidence) -> list[str]:
    """The versions of the rows quarantined as an unknown schema_version (declared since or not)."""
    frame = fmt.frame
    return sorted({str(v) for v in frame["version"].dropna()}) if fmt.holds and len(frame) else []


def _unknown_reason(reason: str, versions: Sequence[str] | None = None) -> bool:
    """A reason of a row whose version (or form) the contract did not declare (``versions``: of these)."""
    if not (
        reason.startswith("unknown schema_version '") or reason.startswith("unknown form of schema_version '")
    ):
        return False
    return versions is None or reason.split("'")[1] in versions


def _intake_unknown(versions: Sequence[str] | None = None) -> list[tuple[str, str, int]]:
    """``(received day, reason, rows)`` of the intake mart's rows of an undeclared version."""
    intake = mart_rows(INTAKE_TABLE, "date")
    out = []
    for r in intake.itertuples() if len(intake) else ():
        reasons = json.loads(r.by_reason) if isinstance(r.by_reason, str) and r.by_reason else {}
        out += [
            (str(r.date), str(k), int(n)) for k, n in reasons.items() if _unknown_reason(str(k), versions)
        ]
    return out


def quarantined_days(versions: Sequence[str] | None = None) -> dict[str, int]:
    """Received days of the intake mart whose rows of an undeclared version (``versions``: of
    these) are quarantined, with how many rows: the complete state, whatever a fix re-ran."""
    out: dict[str, int] = {}
    for day, _, n in _intake_unknown(versions):
        out[day] = out.get(day, 0) + n
    return {d: n for d, n in sorted(out.items()) if n}


def unknown_reasons() -> dict[str, int]:
    """The intake mart's rows of an undeclared version by reason, over every received day."""
    out: dict[str, int] = {}
    for _, reason, n in _intake_unknown():
        out[reason] = out.get(reason, 0) + n
    return {r: n for r, n in sorted(out.items()) if n}


def replay_days(day: str | None, versions: Sequence[str]) -> list[str]:
    """The days to re-run so every quarantined row of ``versions`` is read again: each received
    day whose intake quarantined them, and the check's own day."""
    return sorted(set(quarantined_days(versions)) | ({day} if day else set()))


def on_call(ctx: kit.RunbookContext) -> str:
    """The engineer on call at ``ctx.as_of`` (who declares a version when applying the fix)."""
    from helpers.oncall import schedule as oncall

    return oncall.on_call_at(ctx.config, ctx.as_of).engineer


def redeclared_rerun(
    ctx: kit.RunbookContext, check: kit.Evidence, fmt: kit.Evidence, days: Sequence[str] = ()
) -> dict[str, Any]:
    """Declare each undeclared version's reviewed mapping in ``event_contract.yml`` (as the engineer
    on call, at ``as_of``), then re-run ``days`` (default: the check's day) with their dependants.

    A version without a reviewed mapping is refused before anything changes, with a draft entry
    to review and add to the file by hand."""
    undeclared = list(fmt.data.get("undeclared", []))
    missing = [v for v in undeclared if v not in event_contract.REVIEWED]
    path = event_contract.contract_path()
    if missing:
        raise ValueError(
            f"schema_version {', '.join(missing)} is not declared and has no reviewed mapping: review this "
            f"draft against a quarantined message, add it to {path}, then run this fix again:\n"
            + "".join(event_contract.draft(v) for v in missing)
        )
    counts = {r.version: int(r.rows) for r in fmt.frame.itertuples()} if len(fmt.frame) else {}
    declared = [
        event_contract.declare(
            event_contract.REVIEWED[v],
            by=on_call(ctx),
            at=ctx.as_of,
            reason=f"{check_id('schema_change')} {check.data.get('partition')}: "
            f"{counts.get(v, 0)} row(s) quarantined as unknown schema_version '{v}'",
            path=path,
        )
        for v in undeclared
    ]
    targets = [(PIPELINE, d) for d in (days or [check.data["partition"]])]
    return {
        "contract_file": str(path),
        "declared": [
            {"version": d.version.key, "declared_by": d.declared_by, "declared_at": d.declared_at}
            for d in declared
        ],
        "reruns": kit.rerun(ctx, targets),
    }


# ---------------------------------------------------------------- verifying


def _result(
    cid: str,
    day: str,
    ok: bool,
    summary: str,
    ctx: kit.RunbookContext,
    found: Mapping[str, Any] | None = None,
) -> CheckResult:
    """The runbook's verdict on ``day`` as a result of the check (recorded, it resolves the alert)."""
    return CheckResult(
        check_id=check_id(cid),
        pipeline=PIPELINE,
        partition=day,
        status="pass" if ok else "fail",
        severity="warning",
        summary=summary,
        evidence=dict(found or {}),
        as_of=ctx.as_of,
        evaluated_at=ctx.as_of,
        catalogue_id=cid,
        kind="domain",
    )


def marts_match(ctx: kit.RunbookContext, day: str, *, only: bool = False) -> tuple[bool, str]:
    """The day's marts (``engagement_daily``, ``engagement_metrics_daily``) equal a fresh computation
    of the run's window from everything landed by ``as_of`` (``only``: that day's rows alone)."""
    from helpers.storage import engine as engines

    eng = engines.get_engine(None)
    window = run_window(day, ctx.as_of, DEFAULT_WINDOW_DAYS)
    run = compute(eng, load(eng, window), window)
    diffs = []
    for table, frame, cols in (
        (DAILY_TABLE, run.daily, list(DAILY_COLUMNS)),
        (METRICS_TABLE, run.metrics, ["date", "dau", "wau", "mau", "events"]),
    ):
        got = mart_rows(table, "date")
        want = frame.assign(date=frame["date"].astype(str))
        for d in [day] if only else sorted(set(want["date"])):
            a = got[got["date"] == d][cols].sort_values(cols[:2]).reset_index(drop=True) if len(got) else got
            b = want[want["date"] == d][cols].sort_values(cols[:2]).reset_index(drop=True)
            if len(a) != len(b) or not (a.astype(str).values == b.astype(str).values).all():
                diffs.append(f"{table} {d}")
    if diffs:
        return False, f"marts differ from a fresh computation: {', '.join(diffs)}"
    span = day if only else f"{window.start}..{window.run_date}"
    return True, f"marts of {span} equal a fresh computation as of {utc_text(ctx.as_of)}"


def expected_days(state: State, outage: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> list[str]:
    """Every day the fault touched, as the check's evidence names them (never the fix's plan):
    after the fix each one's marts must equal a fresh computation from everything landed by
    ``as_of``, whether the fix re-ran it or not. ``outage``: a Kafka outage's whole window
    (:func:`whole_outage`), else the check's own."""
    ev = state.check.data.get("result", {}) or {}
    keys = {
        "late_events": ("late_by_event_day", "beyond_window_by_event_day"),
        "duplicate_events": ("by_event_day",),
    }.get(state.catalogue_id, ())
    days = {str(d) for k in keys for d in (ev.get(k) or {})}
    if state.catalogue_id == "data_skew_oom":  # every day whose largest account is over the threshold
        threshold = float(ev.get("threshold") or 0.0)
        days |= {
            str(d)
            for d, top in (ev.get("top_accounts_by_day") or {}).items()
            if top and max(float(a.get("share", 0.0)) for a in top) >= threshold
        }
    win = None
    if state.catalogue_id == "kafka_outage":  # the whole outage, over every day it reached
        win = outage or outage_window(state.check)
    if win is not None:
        days |= {win[0].date().isoformat(), (win[1] - pd.Timedelta(seconds=1)).date().isoformat()}
    return sorted(d for d in days if _is_day(d))


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


def undeclared_anywhere() -> kit.Evidence:
    """Rows of an undeclared version still quarantined on any received day of the intake mart
    (the complete state after a fix, whichever days it re-ran)."""
    days = quarantined_days()
    detail = (
        "rows of an undeclared schema_version still quarantined: "
        + ", ".join(f"{d} ({n})" for d, n in days.items())
        if days
        else "no intake day quarantines a row of an undeclared schema_version"
    )
    frame = pd.DataFrame({"date": list(days), "rows": list(days.values())})
    # worded as the check's evidence: a runbook run after a partial fix finds what is left to replay
    found = {"by_reason": unknown_reasons(), "by_received_day": days}
    return kit.Evidence(bool(days), detail, frame, {"result": found})


def format_after(ctx: kit.RunbookContext) -> kit.Evidence:
    """:func:`helpers.engagement.evidence.new_format` of the check's latest recorded result (after
    a fix's re-run)."""
    check = check_state(ctx, "schema_change")
    return evidence.new_format(check, evidence.quarantine_reasons(check))


def verify_quarantined(
    ctx: kit.RunbookContext, diag: kit.Diagnosis, check: kit.Evidence, reasons: pd.DataFrame
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
    if len(undeclared) or quarantined_days():  # a format to map first (on any intake day): not handled
        return base
    intake = mart_rows(INTAKE_TABLE, "date")
    unbalanced = (
        intake[intake["received"] != intake["accepted"] + intake["quarantined"]] if len(intake) else intake
    )
    same, detail = marts_match(ctx, str(check.data["partition"]))
    print(f"intake: {len(intake) - len(unbalanced)} of {len(intake)} received day(s) balance; {detail}")
    if len(unbalanced) or not same:
        return base
    handled = tuple(sorted({r.check_id for r in base.results if r.failed}))
    diag.verification = kit.HandledVerification(base.results, base.source, base.recorded, handled)
    print(repr(diag.verification))
    return diag.verification


def verify_days(
    ctx: kit.RunbookContext,
    diag: kit.Diagnosis,
    cid: str,
    days: Sequence[str],
    condition: kit.Evidence | None = None,
    *,
    compare: bool = False,
    expected: Sequence[str] = (),
) -> kit.Verification:
    """Re-check after the fix, per day: the re-run succeeded after the fix started, ``condition``
    (the runbook's symptom, recomputed) no longer holds and, with ``compare``, the day's marts equal
    a fresh computation (one more pass over the window). Recorded (resolving the alert when all
    pass) only when fixes were applied. In diagnose mode: the failing check as last recorded.

    ``expected``: every day the fault touched (:func:`expected_days`): each one's own marts must
    equal a fresh computation too, re-run or not, so a fix that repaired part passes nothing."""
    from helpers.checks import store as check_store
    from helpers.oncall import alerts as alertsmod

    if not diag.present or not ctx.apply_fix or not days:  # nothing re-run: the check as last recorded
        return diag.verify()
    results = []
    found = condition.data.get("result", {}) if condition is not None and condition.holds else {}
    for day in sorted(set(days) | set(expected)):
        parts = [reran(ctx, day)] if day in days else [(True, "not re-run by the fix")]
        if compare and day in days:
            parts.append(marts_match(ctx, day))
        elif day in expected:
            parts.append(marts_match(ctx, day, only=True))
        if condition is not None:
            parts.append((not condition.holds, f"condition now: {condition.detail}"))
        ok = all(p[0] for p in parts)
        results.append(_result(cid, day, ok, "; ".join(p[1] for p in parts), ctx, found if not ok else None))
    if ctx.alert is not None and all(not r.failed for r in results):
        alert_day = ctx.alert.partition
        if alert_day not in days:  # the alert's own day: its figures were not the ones repaired
            results.append(_result(cid, alert_day, True, f"repaired {', '.join(days)}", ctx))
    check_store.record_results(results)
    alertsmod.sync(results, config=ctx.config)
    diag.verification = kit.Verification(tuple(results), "runbook", True)
    print(repr(diag.verification))
    return diag.verification

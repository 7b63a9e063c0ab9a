"""Evidence from run records: marts' freshness, upstream pipelines, the scheduler, failed and slow runs.

Everything is read from the context's snapshot (``ctx.snapshot``: run records and mart writes as of
``ctx.as_of``); :func:`blocked_by_upstream` and :func:`notebook_errors` sort :func:`failed_runs`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import pandas as pd

from helpers.core.periods import period_days
from helpers.runbooks.context import RunbookContext
from helpers.runbooks.evidence import Evidence
from helpers.runbooks.formatting import hours, utc_or_none, utc_text
from helpers.runs.dag import partition_for

# Errors that mean the run ran out of memory or time rather than hitting a bug.
COMPUTE_ERRORS: tuple[str, ...] = (
    "kernel died",
    "exceeded the execution timeout",
    "memoryerror",
    "out of memory",
    "outofmemory",
    "java heap space",
    "killed",
)


def mart_freshness(ctx: RunbookContext, pipelines: Sequence[str] | None = None) -> Evidence:
    """Stale marts: each pipeline's (default: in scope) last update (mart write, else run
    ``as_of``) against its freshness SLA.

    A pipeline that has never written anything only counts when the alert is about it: a pipeline
    not yet deployed is not stale.
    """
    from helpers.checks.rules import freshness_outcome

    rows = []
    for pid in pipelines or ctx.scope:
        p = ctx.pipeline_config(pid)
        writes = ctx.snapshot.writes
        mine = writes[writes["table_name"].isin(ctx.pipeline_tables(pid))]
        last = utc_or_none(mine["written_at"].max()) if len(mine) else None
        if last is None:
            runs = ctx.snapshot.runs
            done = runs[(runs["pipeline"] == pid) & (runs["status"] == "succeeded") & runs["as_of"].notna()]
            done = done[done["as_of"] <= pd.Timestamp(ctx.as_of)]
            last = utc_or_none(done["as_of"].max()) if len(done) else None
        outcome = freshness_outcome(
            last,
            ctx.as_of,
            warn_hours=p.sla.freshness_warn_hours,
            critical_hours=p.sla.freshness_critical_hours,
            what=f"{pid} marts",
        )
        state = "never" if last is None else ("fresh" if outcome.passed else outcome.severity or "late")
        rows.append(
            dict(
                pipeline=pid,
                last_update=last,
                age_hours=hours(ctx.as_of - last) if last else None,
                warn_hours=p.sla.freshness_warn_hours,
                critical_hours=p.sla.freshness_critical_hours,
                state=state,
            )
        )
    frame = pd.DataFrame(
        rows, columns=["pipeline", "last_update", "age_hours", "warn_hours", "critical_hours", "state"]
    )
    alerted = ctx.alert.pipeline if ctx.alert else None
    stale = frame[
        frame["state"].isin(["warning", "critical"])
        | ((frame["state"] == "never") & (frame["pipeline"] == alerted))
    ]
    never = frame.loc[frame["state"] == "never", "pipeline"].tolist()
    if len(stale):
        detail = "; ".join(
            f"{r.pipeline} marts last updated {utc_text(utc_or_none(r.last_update))}"
            + (f" ({r.age_hours:g} h ago, SLA {r.critical_hours:g} h)" if r.age_hours is not None else "")
            for r in stale.itertuples()
        )
    else:
        fresh = frame.loc[frame["state"] == "fresh", "pipeline"].tolist()
        detail = f"fresh: {', '.join(fresh) or 'none'}" + (
            f"; never run here: {', '.join(never)}" if never else ""
        )
    data = {"stale": stale["pipeline"].tolist(), "never_run": never}
    return Evidence(
        bool(len(stale)), detail, frame, {**data, "targets": [[p, "current"] for p in data["stale"]]}
    )


def upstream_pipelines(ctx: RunbookContext, partition: str | None = None) -> Evidence:
    """Upstream pipelines late or incomplete: stale marts, or their partition not succeeded."""
    rows = []
    for pid in ctx.scope:
        p = ctx.pipeline_config(pid)
        label = partition or ctx.partition
        for up in p.depends_on if p else ():
            upc = ctx.pipeline_config(up)
            up_label = None
            if label and label != "current" and upc is not None:
                up_label = partition_for(
                    upc, min(period_days(label)[1], ctx.as_of.date() - dt.timedelta(days=1))
                )
            runs = ctx.pipeline_runs(up)
            runs = runs[runs["status"] != "skipped"]
            if up_label:
                runs = runs[runs["logical_date"] == up_label]
            latest = runs.iloc[-1] if len(runs) else None
            fresh = mart_freshness(ctx, [up])
            status = latest["status"] if latest is not None else None
            rows.append(
                dict(
                    pipeline=pid,
                    upstream=up,
                    partition=up_label,
                    latest_run=latest["run_id"] if latest is not None else None,
                    status=status or "no run",
                    error=latest["error_summary"] if latest is not None else None,
                    marts=fresh.frame["state"].iloc[0],
                    problem=(status != "succeeded") or fresh.holds or fresh.frame["state"].iloc[0] == "never",
                )
            )
    frame = pd.DataFrame(
        rows,
        columns=["pipeline", "upstream", "partition", "latest_run", "status", "error", "marts", "problem"],
    )
    bad = frame[frame["problem"].astype(bool)] if len(frame) else frame
    if not len(frame):
        return Evidence(False, "no upstream pipelines", frame)
    detail = (
        "; ".join(
            f"{r.upstream}{' ' + r.partition if r.partition else ''}: run {r.status}, marts {r.marts}"
            for r in bad.drop_duplicates(["upstream", "partition"]).itertuples()
        )
        if len(bad)
        else f"upstreams on time: {', '.join(frame['upstream'].unique())}"
    )
    targets = [
        [r.upstream, r.partition or "current"]
        for r in bad.drop_duplicates(["upstream", "partition"]).itertuples()
    ]
    return Evidence(
        bool(len(bad)), detail, frame, {"upstreams": bad["upstream"].unique().tolist(), "targets": targets}
    )


def scheduler_health(ctx: RunbookContext, *, grace_hours: float = 1.0) -> Evidence:
    """Scheduler failed: a pipeline's cron fired (more than ``grace_hours`` ago) with no run since.

    Runs are placed by their ``as_of``. With neither a scheduler tick nor any run recorded,
    nothing has been scheduled in this warehouse yet: reported, not counted.
    """
    from helpers.runs import scheduler

    last_tick = scheduler.last_completed_tick()
    rows = []
    for pid in ctx.scope:
        p = ctx.pipeline_config(pid)
        runs = ctx.pipeline_runs(pid)
        runs = runs[runs["as_of"].notna() & (runs["as_of"] <= pd.Timestamp(ctx.as_of))]
        last_run = utc_or_none(runs["as_of"].max()) if len(runs) else None
        window_start = ctx.as_of - dt.timedelta(days=2)
        fires = scheduler.fire_times(p.schedule, window_start, ctx.as_of - dt.timedelta(hours=grace_hours))
        missed = [f for f in fires if last_run is None or f > last_run + dt.timedelta(hours=grace_hours)]
        rows.append(
            dict(
                pipeline=pid,
                schedule=p.schedule,
                last_fire=fires[-1] if fires else None,
                last_run_as_of=last_run,
                missed_fires=len(missed) if (last_run is not None or last_tick is not None) else 0,
            )
        )
    frame = pd.DataFrame(
        rows, columns=["pipeline", "schedule", "last_fire", "last_run_as_of", "missed_fires"]
    )
    missed = frame[frame["missed_fires"] > 0]
    tick = f"last scheduler tick {utc_text(last_tick)}"
    if len(missed):
        detail = "; ".join(
            f"{r.pipeline}: cron fired {utc_text(utc_or_none(r.last_fire))}, latest run as of {utc_text(utc_or_none(r.last_run_as_of))}"
            for r in missed.itertuples()
        )
        return Evidence(True, f"{detail} ({tick})", frame, {"last_tick": last_tick})
    quiet = last_tick is None and frame["last_run_as_of"].isna().all()
    detail = (
        "nothing scheduled in this warehouse yet (no tick, no run)"
        if quiet
        else f"runs follow their schedules ({tick})"
    )
    return Evidence(False, detail, frame, {"last_tick": last_tick})


def never_run(ctx: RunbookContext) -> Evidence:
    """Never run: pipelines in scope with no run recorded by ``ctx.as_of`` (nothing scheduled or
    started them here; e.g. reports, which ``workbook close`` and their schedules render). Its
    ``targets`` are each one's partition for the day before ``as_of``."""
    rows = []
    for pid in ctx.scope:
        p = ctx.pipeline_config(pid)
        runs = ctx.pipeline_runs(pid)
        runs = runs[runs["as_of"].isna() | (runs["as_of"] <= pd.Timestamp(ctx.as_of))]
        if p is not None and not len(runs):
            label = partition_for(p, ctx.as_of.date() - dt.timedelta(days=1))
            rows.append(dict(pipeline=pid, partition=label, schedule=p.schedule))
    frame = pd.DataFrame(rows, columns=["pipeline", "partition", "schedule"])
    if not len(frame):
        return Evidence(False, f"every pipeline in scope has run ({', '.join(ctx.scope)})", frame)
    detail = "; ".join(
        f"{r.pipeline}: no run recorded by {utc_text(ctx.as_of)} (schedule {r.schedule}); "
        f"run it: workbook run {r.pipeline}"
        for r in frame.itertuples()
    )
    return Evidence(True, detail, frame, {"targets": frame[["pipeline", "partition"]].values.tolist()})


def _runs_frame(ctx: RunbookContext, pipelines: Sequence[str], lookback_days: int) -> pd.DataFrame:
    runs = ctx.snapshot.runs
    runs = runs[runs["pipeline"].isin(list(pipelines)) & (runs["status"] != "skipped")].copy()
    if not len(runs):
        return runs
    horizon = ctx.as_of.date() - dt.timedelta(days=lookback_days)
    last_days = runs["logical_date"].map(lambda label: period_days(str(label))[1])
    return runs[(last_days >= horizon) & (runs["as_of"].isna() | (runs["as_of"] <= pd.Timestamp(ctx.as_of)))]


def failed_runs(ctx: RunbookContext, *, lookback_days: int = 7) -> Evidence:
    """Partitions whose latest run failed or was blocked, in the last ``lookback_days`` days (the
    context's partition, when it has one, however old: an alert stays open past the lookback)."""
    label = ctx.partition if ctx.partition and ctx.partition != "current" else None
    runs = _runs_frame(ctx, ctx.scope, lookback_days if label is None else 100 * 366)
    if label is not None and len(runs):
        runs = runs[runs["logical_date"] == label]
    cols = ["pipeline", "partition", "run_id", "status", "error", "html"]
    if not len(runs):
        return Evidence(False, f"no runs in the last {lookback_days} days", pd.DataFrame(columns=cols))
    latest = runs.groupby(["pipeline", "logical_date"], sort=True).tail(1)
    bad = latest[latest["status"].isin(["failed", "blocked"])]
    from helpers.runs import records as runsmod

    rows = []
    for r in bad.itertuples():
        rec = runsmod.get_run(r.run_id)
        archive = rec.archive_path if rec else None
        rows.append(
            dict(
                pipeline=r.pipeline,
                partition=r.logical_date,
                run_id=r.run_id,
                status=r.status,
                error=r.error_summary,
                html=f"{archive}/notebook.html" if archive else None,
            )
        )
    frame = pd.DataFrame(rows, columns=cols)
    detail = (
        "; ".join(f"{r.pipeline} {r.partition} {r.status}: {r.error}" for r in frame.itertuples())
        if len(frame)
        else f"latest runs of {len(latest)} partition(s) succeeded"
    )
    return Evidence(
        bool(len(frame)), detail, frame, {"targets": frame[["pipeline", "partition"]].values.tolist()}
    )


def compute_pressure(ctx: RunbookContext, *, lookback_days: int = 7, slow_factor: float = 2.0) -> Evidence:
    """Not enough compute: runs killed (kernel died, timeout, out of memory) or much slower than usual."""
    runs = _runs_frame(ctx, ctx.scope, lookback_days)
    cols = ["pipeline", "partition", "run_id", "status", "duration_s", "usual_s", "why"]
    rows = []
    for pid in ctx.scope:
        mine = runs[runs["pipeline"] == pid] if len(runs) else runs
        if not len(mine):
            continue
        durations = (mine["finished_at"] - mine["started_at"]).dt.total_seconds()
        usual = durations[mine["status"] == "succeeded"].median()
        for r, secs in zip(mine.itertuples(), durations, strict=True):
            error = (r.error_summary or "").lower()
            why = next((k for k in COMPUTE_ERRORS if k in error), None)
            if (
                why is None
                and pd.notna(usual)
                and pd.notna(secs)
                and usual > 0
                and secs > slow_factor * usual
            ):
                why = f"{secs / usual:.1f}x slower than usual"
            if why:
                rows.append(
                    dict(
                        pipeline=pid,
                        partition=r.logical_date,
                        run_id=r.run_id,
                        status=r.status,
                        duration_s=None if pd.isna(secs) else round(float(secs), 1),
                        usual_s=None if pd.isna(usual) else round(float(usual), 1),
                        why=why,
                    )
                )
    frame = pd.DataFrame(rows, columns=cols)
    detail = (
        "; ".join(f"{r.pipeline} {r.partition} ({r.run_id}): {r.why}" for r in frame.itertuples())
        if len(frame)
        else "no run killed for memory or time, none unusually slow"
    )
    return Evidence(bool(len(frame)), detail, frame)


def _failed_where(failed: Evidence, keep: Callable[[pd.DataFrame], pd.Series], what: str) -> Evidence:
    frame = failed.frame
    rows = frame[keep(frame)] if len(frame) else frame
    detail = "; ".join(f"{r.pipeline} {r.partition}: {r.error}" for r in rows.itertuples()) or f"no {what}"
    targets = rows[["pipeline", "partition"]].values.tolist() if len(rows) else []
    return Evidence(bool(len(rows)), detail, rows, {"targets": targets})


def blocked_by_upstream(failed: Evidence) -> Evidence:
    """Of :func:`failed_runs`, the partitions blocked by an upstream."""
    return _failed_where(failed, lambda f: f["status"] == "blocked", "run blocked by an upstream")


def notebook_errors(failed: Evidence) -> Evidence:
    """Of :func:`failed_runs`, the failures that are errors in a cell (code or data), not compute."""

    def keep(f: pd.DataFrame) -> pd.Series:
        compute = f["error"].fillna("").str.lower().map(lambda e: any(k in e for k in COMPUTE_ERRORS))
        return (f["status"] == "failed") & ~compute.astype(bool)

    return _failed_where(failed, keep, "run failed with an error in a cell")

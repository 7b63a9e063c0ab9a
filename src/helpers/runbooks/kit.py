"""The small API runbook notebooks call, so that each runbook stays a thin, readable procedure.

A runbook (``notebooks/runbooks/...``, outline in STYLE.md) goes through these steps::

    ctx = kit.load_context("row_count_anomaly", alert_id=alert_id, pipeline=pipeline,
                           partition=partition, check_id=check_id, as_of=as_of,
                           apply_fix=apply_fix, run_id=run_id)          # Symptom
    kit.symptom(ctx)
    diag = kit.Diagnosis(ctx, default_cause="row_count_anomaly")        # Diagnose
    anomaly = diag.symptom(kit.row_count_anomalies(ctx))  # is the problem there now?
    diag.finding("stale_data", "partition built before its data arrived", kit.late_deliveries(ctx))
    diag.conclude()
    targets = diag.targets(anomaly)                     # what to re-run, if anything is wrong
    kit.guarded_fix(apply_fix, lambda: kit.rerun(ctx, targets), "re-run them")       # Fix
    diag.verify(kind="row_count")                       # Verify: the alert's check, re-run
    kit.escalate_to(ctx.pipeline, ctx.as_of, alert=ctx.alert, catalogue_id=diag.cause)  # Escalate
    diag.glue()                                         # record

- :class:`RunbookContext` (:func:`load_context`) is the parameters made usable: the alert (if any),
  the pipeline(s) in scope, the partition, the check, ``as_of``, and whether fixes may run.
- Evidence helpers (:func:`mart_freshness`, :func:`late_sources`, :func:`stale_partitions`, :func:`landing_arrivals`,
  :func:`row_count_anomalies`, :func:`null_columns`, :func:`failed_runs`, ...) read the warehouse and
  the landing zone *as of* ``ctx.as_of`` and return an :class:`Evidence`: does the condition hold,
  one line saying why, and a table to show.
- :class:`Diagnosis` collects the symptom and the candidate causes and concludes with one line and a
  ``cause``: a failure-catalogue id (docs/architecture.md), a generic condition id (:data:`GENERIC_CAUSES`) or
  ``no_problem_found``. :meth:`Diagnosis.glue` records ``diagnosis``, ``cause``, ``evidence``,
  ``findings``, ``fixes`` and ``verification`` scraps, which :mod:`helpers.runbooks.registry` reads back.
- :func:`guarded_fix` acts only when ``apply_fix`` is true and records what it did (or would do).
- :func:`verify` re-runs the failing check (recording the result, which resolves the alert, only
  when fixes were applied); :func:`escalate_to` says who to call now.

Nothing here reads the wall clock: every function works at ``ctx.as_of``. Fixes that start runs use
:func:`as_of_clock`, the ``as_of`` frame advanced by elapsed (monotonic) time.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.checks.framework import CheckResult, json_safe
from helpers.core import catalogue
from helpers.core import config as cfgmod
from helpers.core.periods import period_days
from helpers.core.timeutil import as_utc, parse_as_of
from helpers.oncall import alerts as alertsmod
from helpers.runs.dag import Dag, partition_for
from helpers.storage import landing
from helpers.storage.warehouse import get_engine

NO_PROBLEM = "no_problem_found"
# Causes outside the failure catalogue, named after the generic runbook that handles them.
GENERIC_CAUSES: tuple[str, ...] = (
    "row_count_anomaly",
    "null_critical_columns",
    "job_failure",
    "fix_deadline",
    "month_end_close",
)
# Config source names whose landing folders are not named after them (prefixes handle the rest).
SOURCE_ALIASES: Mapping[str, tuple[str, ...]] = {"operations": ("ops_expenses",)}
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
FAMILIES: tuple[str, ...] = ("profit", "growth", "engagement")
# The diagnosis line stays readable in a page or a chat message; the evidence scrap has the rest.
SYMPTOM_CHARS, DETAIL_CHARS = 240, 360

Clock = Callable[[], dt.datetime]


def as_of_clock(as_of: dt.datetime) -> Clock:
    """A clock that starts at ``as_of`` and advances with elapsed (monotonic) time.

    Runs started by a fix get start and finish times in the runbook's own time frame, in order,
    without reading the wall clock.
    """
    start, origin = as_utc(as_of), time.monotonic()
    return lambda: start + dt.timedelta(seconds=time.monotonic() - origin)


def _hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


def _ts(value: Any) -> dt.datetime | None:
    if value is None or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return as_utc(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(ts: dt.datetime | None) -> str:
    return f"{ts:%Y-%m-%d %H:%M}Z" if ts is not None else "never"


# ---------------------------------------------------------------- the context


@dataclass
class RunbookContext:
    """A runbook's parameters made usable. ``pipeline`` None: every pipeline in ``scope``."""

    runbook: str
    as_of: dt.datetime
    apply_fix: bool
    run_id: str
    config: cfgmod.WorkbookConfig
    alert: alertsmod.Alert | None = None
    pipeline: str | None = None
    partition: str | None = None
    check_id: str | None = None

    @property
    def family(self) -> str | None:
        """The runbook's pipeline family (``profit/stale_data`` -> ``profit``), if it has one."""
        head = self.runbook.split("/", 1)[0]
        return head if "/" in self.runbook and head in FAMILIES else None

    @property
    def scope(self) -> list[str]:
        """The pipelines this run looks at: the one named, else the family's, else all of them."""
        pipes = self.config.pipelines.pipelines
        if self.pipeline:
            return [self.pipeline]
        order = Dag.from_config(self.config.pipelines).order()
        if self.family:
            return [p for p in order if pipes[p].family == self.family]
        return order

    @property
    def catalogue_id(self) -> str | None:
        return self.alert.catalogue_id if self.alert else None

    def pipeline_config(self, pipeline: str | None = None) -> cfgmod.Pipeline | None:
        """The configuration of ``pipeline`` (default: the context's), None if not configured."""
        return self.config.pipelines.pipelines.get(pipeline or self.pipeline or "")

    @cached_property
    def snapshot(self) -> Any:
        """Run records and mart writes as of ``as_of`` (``checks.monitors.Snapshot``), read once."""
        from helpers.checks import monitors

        return monitors.load_snapshot(self.as_of)

    def describe(self) -> str:
        """One line: what this run is about."""
        mode = "FIX" if self.apply_fix else "diagnose"
        if self.alert:
            a = self.alert
            what = f"alert {a.alert_id} [{a.severity}, {a.status}] {a.check_id} {a.partition}: {a.summary}"
        else:
            what = f"no alert: checking {', '.join(self.scope) or 'nothing'}"
            if self.partition:
                what += f" partition {self.partition}"
        return f"{self.runbook} ({mode} mode) as of {_fmt(self.as_of)}: {what}"

    def as_json(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "as_of": self.as_of.isoformat(),
            "apply_fix": self.apply_fix,
            "run_id": self.run_id,
            "alert_id": self.alert.alert_id if self.alert else None,
            "pipeline": self.pipeline,
            "partition": self.partition,
            "check_id": self.check_id,
            "scope": self.scope,
        }


_FIXES: list[FixRecord] = []


def load_context(
    runbook: str,
    *,
    as_of: str | dt.datetime,
    alert_id: str | int = "",
    pipeline: str = "",
    partition: str = "",
    check_id: str = "",
    apply_fix: bool = False,
    run_id: str = "manual",
    config: cfgmod.WorkbookConfig | None = None,
) -> RunbookContext:
    """The context of one runbook run, from its parameters (empty strings mean "not given").

    With ``alert_id`` the alert supplies the pipeline, partition and check unless they are given.
    An unknown alert or pipeline is an error that says where to look.
    """
    config = config or cfgmod.get()
    when = parse_as_of(as_of) if isinstance(as_of, str) else as_utc(as_of)
    alert = None
    if str(alert_id).strip():
        try:
            number = int(str(alert_id).strip())
        except ValueError:
            raise ValueError(
                f"alert_id: expected a number as listed by `workbook alerts`, got {alert_id!r}"
            ) from None
        alert = alertsmod.get_alert(number)
        if alert is None:
            raise ValueError(f"alert_id: no alert {number}; `workbook alerts` lists them")
    pipeline = pipeline or (alert.pipeline if alert else "")
    if pipeline and pipeline not in config.pipelines.pipelines and not alert:
        raise ValueError(
            f"pipeline: {pipeline!r} is not in config; expected one of {', '.join(config.pipelines.pipelines)}"
        )
    if alert and pipeline not in config.pipelines.pipelines:
        pipeline = ""  # an alert about something outside config: look at everything
    _FIXES.clear()
    return RunbookContext(
        runbook=runbook,
        as_of=when,
        apply_fix=bool(apply_fix),
        run_id=run_id,
        config=config,
        alert=alert,
        pipeline=pipeline or None,
        partition=partition or (alert.partition if alert else None) or None,
        check_id=check_id or (alert.check_id if alert else None) or None,
    )


def symptom(ctx: RunbookContext) -> pd.DataFrame:
    """What was observed: the alert (or what the runbook will check), and the check's history."""
    print(ctx.describe())
    if ctx.alert is None:
        return pd.DataFrame([ctx.as_json()])
    a = ctx.alert
    print("evidence:", json.dumps(a.evidence, default=str)[:600])
    return check_history(ctx)


def check_history(ctx: RunbookContext, *, limit: int = 10) -> pd.DataFrame:
    """The latest results of the context's check (its partition first), from ``check_results``."""
    from helpers.checks import store

    cols = ["evaluated_at", "as_of", "check_id", "partition", "status", "severity", "run_id", "summary"]
    if not ctx.check_id:
        return pd.DataFrame(columns=cols)
    rows = store.list_results(check_id=ctx.check_id, limit=200)
    rows = [r for r in rows if ctx.partition in (None, r["partition"]) and r["as_of"] <= ctx.as_of]
    return pd.DataFrame(rows[:limit], columns=cols)


# ---------------------------------------------------------------- evidence


@dataclass
class Evidence:
    """Whether a condition holds, one line saying why, and the table behind it."""

    holds: bool
    detail: str
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self, *, max_rows: int = 20) -> dict[str, Any]:
        """The verdict, the line, the data and the table's first ``max_rows`` rows."""
        rows = self.frame.head(max_rows).to_dict("records") if not self.frame.empty else []
        return json_safe({"holds": self.holds, "detail": self.detail, **self.data, "rows": rows})

    def __repr__(self) -> str:
        head = f"[{'HOLDS' if self.holds else 'no'}] {self.detail}"
        return head if self.frame.empty else f"{head}\n{self.frame.to_string(max_rows=30)}"

    def _repr_html_(self) -> str:
        mark = "<b>HOLDS</b>" if self.holds else "no"
        table = "" if self.frame.empty else self.frame.to_html(max_rows=30, index=False)
        return f"<p>[{mark}] {html.escape(self.detail)}</p>{table}"


def landing_sources(configured: Iterable[str], *, root: Path | None = None) -> dict[str, list[str]]:
    """Landing folders of each configured source name: itself, an alias, or ``<name>_*`` folders.

    ``billing`` -> ``billing_customers``, ``billing_invoices``, ``billing_payments``; ``hr`` ->
    ``hr_payroll``; ``experiments`` -> ``experiment_assignments``; a name with no folder maps to [].
    """
    present = landing.sources(root)
    out: dict[str, list[str]] = {}
    for name in configured:
        if name in present:
            out[name] = [name]
        elif name in SOURCE_ALIASES:
            out[name] = [s for s in SOURCE_ALIASES[name] if s in present]
        else:
            stems = {f"{name}_", f"{name.rstrip('s')}_"}
            out[name] = [s for s in present if any(s.startswith(stem) for stem in stems)]
    return out


def _next_partition(last: dt.date, cadence_days: float) -> dt.date:
    if cadence_days >= 28:  # monthly deliveries: same day next month (clamped)
        y, m = last.year + (last.month == 12), last.month % 12 + 1
        for day in (last.day, 30, 29, 28):
            try:
                return dt.date(y, m, day)
            except ValueError:
                continue
    return last + dt.timedelta(days=max(1, round(cadence_days)))


def landing_arrivals(
    sources: Iterable[str] | None = None,
    *,
    as_of: dt.datetime,
    grace_hours: float = 6.0,
    root: Path | None = None,
    cadences: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per landing source, as of ``as_of``: the last partition and arrival, and whether it is late.

    A source's rhythm is learnt from its own manifest: the cadence (median gap between the last
    partitions, e.g. 1 day or a month) and the typical lag from a partition's date to its first
    arrival. The next delivery is expected at the next partition's date plus that lag; it is *late*
    when it has not arrived ``grace_hours`` (plus a tenth of the cadence) after that. So a monthly
    cloud bill 27 days old is on time, while a daily billing extract 2 days old is late.
    ``cadences`` (source -> ``daily``/``monthly``, config ``sources:``): a source declared monthly
    is judged monthly even when its few deliveries so far have no gap to learn from (one bill
    delivered in parts on consecutive days is not a daily source).
    """
    names = list(sources) if sources is not None else landing.sources(root)
    cols = [
        "source",
        "deliveries",
        "last_partition",
        "last_arrival",
        "age_hours",
        "cadence_days",
        "lag_hours",
        "next_expected",
        "overdue_hours",
        "late",
        "rows_last_partition",
    ]
    rows = []
    for source in names:
        arr = landing.arrivals(source, root=root, as_of=as_of)
        if not len(arr):
            rows.append(dict(source=source, deliveries=0, late=True, overdue_hours=None))
            continue
        first = arr.groupby("partition")["arrived_at"].min().sort_index()
        days = [dt.date.fromisoformat(p) for p in first.index]
        recent = list(zip(days, first.tolist(), strict=True))[-12:]
        gaps = [(b[0] - a[0]).days for a, b in zip(recent, recent[1:], strict=False)]
        cadence = float(pd.Series(gaps).median()) if gaps else 1.0
        if (cadences or {}).get(source) == "monthly":
            cadence = 30.0
        lags = [(at - pd.Timestamp(d, tz="UTC")).total_seconds() / 3600 for d, at in recent[1:] or recent]
        lag = float(pd.Series(lags).median())
        last_day = days[-1]
        expected = as_utc(
            dt.datetime.combine(_next_partition(last_day, cadence), dt.time()) + dt.timedelta(hours=lag)
        )
        overdue = _hours(as_utc(as_of) - expected)
        last_arrival = _ts(arr["arrived_at"].max())
        rows.append(
            dict(
                source=source,
                deliveries=len(arr),
                last_partition=last_day.isoformat(),
                last_arrival=last_arrival,
                age_hours=_hours(as_utc(as_of) - last_arrival) if last_arrival else None,
                cadence_days=cadence,
                lag_hours=round(lag, 1),
                next_expected=expected,
                overdue_hours=overdue,
                late=overdue > grace_hours + cadence * 2.4,
                rows_last_partition=int(arr.loc[arr["partition"] == last_day.isoformat(), "rows"].sum()),
            )
        )
    return pd.DataFrame(rows, columns=cols)


def _scope_sources(
    ctx: RunbookContext, pipelines: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Landing sources of the pipelines, and configured names with no landing folder."""
    configured: list[str] = []
    for pid in pipelines or ctx.scope:
        p = ctx.pipeline_config(pid)
        configured += [s for s in (p.sources if p else ()) if s not in configured]
    mapped = landing_sources(configured)
    found = sorted({s for names in mapped.values() for s in names})
    return found, [name for name, names in mapped.items() if not names]


def _cadences(ctx: RunbookContext) -> dict[str, str]:
    """Each configured source's declared cadence (config ``sources:``)."""
    return {name: spec.cadence for name, spec in ctx.config.pipelines.sources.items()}


def late_sources(ctx: RunbookContext, *, grace_hours: float = 6.0) -> Evidence:
    """Upstream delayed: sources of the pipelines in scope whose next delivery is overdue."""
    found, unmapped = _scope_sources(ctx)
    frame = landing_arrivals(found, as_of=ctx.as_of, grace_hours=grace_hours, cadences=_cadences(ctx))
    late = frame[frame["late"].fillna(False).astype(bool)]
    parts = [
        f"{r.source}: last partition {r.last_partition} arrived {_fmt(_ts(r.last_arrival))}, "
        f"next was due {_fmt(_ts(r.next_expected))} ({r.overdue_hours:g} h overdue)"
        if r.deliveries
        else f"{r.source}: nothing delivered"
        for r in late.itertuples()
    ]
    parts += [f"{name}: no landing folder" for name in unmapped]
    holds = bool(parts)
    detail = "; ".join(parts) if holds else f"all {len(frame)} source(s) on their usual rhythm"
    return Evidence(holds, detail, frame, {"late": late["source"].tolist(), "missing": unmapped})


def chase_note(sources: Evidence) -> str:
    """For a fix's description: the sources still late (a re-run cannot bring them), or ``""``."""
    late = [*sources.data.get("late", []), *sources.data.get("missing", [])]
    if not sources.holds or not late:
        return ""
    return (
        f"; still late: {', '.join(late)} - a re-run cannot bring that data: re-extract it or chase "
        "its owner (Escalate), then run this runbook again once it has arrived"
    )


def _tables_of(ctx: RunbookContext, pipeline: str) -> list[str]:
    from helpers.checks import monitors

    p = ctx.pipeline_config(pipeline)
    return monitors.pipeline_tables(p, ctx.snapshot.writes) if p else []


def mart_freshness(ctx: RunbookContext, pipelines: Sequence[str] | None = None) -> Evidence:
    """Stale marts: each pipeline's (default: in scope) last update (mart write, else run
    ``as_of``) against its freshness SLA.

    A pipeline that has never written anything only counts when the alert is about it: a pipeline
    not yet deployed is not stale.
    """
    from helpers.checks import monitors

    rows = []
    for pid in pipelines or ctx.scope:
        p = ctx.pipeline_config(pid)
        writes = ctx.snapshot.writes
        mine = writes[writes["table_name"].isin(_tables_of(ctx, pid))]
        last = _ts(mine["written_at"].max()) if len(mine) else None
        if last is None:
            runs = ctx.snapshot.runs
            done = runs[(runs["pipeline"] == pid) & (runs["status"] == "succeeded") & runs["as_of"].notna()]
            done = done[done["as_of"] <= pd.Timestamp(ctx.as_of)]
            last = _ts(done["as_of"].max()) if len(done) else None
        outcome = monitors.freshness_outcome(
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
                age_hours=_hours(ctx.as_of - last) if last else None,
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
            f"{r.pipeline} marts last updated {_fmt(_ts(r.last_update))}"
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


def stale_partitions(ctx: RunbookContext, *, grace_hours: float = 6.0) -> Evidence:
    """Late data has arrived since a partition was built: the partition is stale and must be re-run.

    For each pipeline in scope and each of its landing sources (as of ``ctx.as_of``): a delivery of
    day ``d`` that was due when the latest successful run of the partition holding ``d`` was built
    (``d`` plus the source's usual lag plus ``grace_hours`` is at or before that run's ``as_of``) but
    first arrived after it. Such a run read the landing zone without that day: its marts are fresh
    by age yet wrong. ``targets`` are those ``(pipeline, partition)`` pairs.
    """
    rows = []
    runs = ctx.snapshot.runs
    as_of = pd.Timestamp(as_utc(ctx.as_of))
    grace = pd.Timedelta(hours=grace_hours)
    for pid in ctx.scope:
        p = ctx.pipeline_config(pid)
        done = runs[(runs["pipeline"] == pid) & (runs["status"] == "succeeded") & runs["as_of"].notna()]
        done = done[done["as_of"] <= as_of]
        if p is None or not len(done):
            continue
        built = done.groupby("logical_date")["as_of"].max()
        found, _ = _scope_sources(ctx, [pid])
        for source in found:
            arr = landing.arrivals(source, as_of=ctx.as_of)
            if not len(arr):
                continue
            first = arr.groupby("partition")["arrived_at"].min()
            days = pd.to_datetime(first.index).tz_localize("UTC")
            lag = (pd.DatetimeIndex(first.to_list()) - days).median()
            for (day, arrived), start in zip(first.items(), days, strict=True):
                label = partition_for(p, dt.date.fromisoformat(day))
                at = built.get(label)
                if at is None or not (start + lag + grace <= at < arrived):
                    continue
                rows.append(
                    dict(pipeline=pid, partition=label, built_as_of=at, source=source, day=day, arrived_at=arrived)
                )  # fmt: skip
    cols = ["pipeline", "partition", "built_as_of", "source", "day", "arrived_at"]
    frame = pd.DataFrame(rows, columns=cols)
    if not len(frame):
        return Evidence(False, "no partition was built before data it was due to include arrived", frame)
    parts = []
    for (pid, label), g in frame.groupby(["pipeline", "partition"], sort=False):
        late = "; ".join(
            f"{src} {min(d['day'])}"
            + (f"..{max(d['day'])}" if d["day"].nunique() > 1 else "")
            + f" arrived {_fmt(_ts(d['arrived_at'].max()))}"
            for src, d in g.groupby("source", sort=True)
        )
        parts.append(
            f"{late}, after {pid} {label} was built (as of {_fmt(_ts(g['built_as_of'].iloc[0]))}): "
            f"the late data is in now and {pid} {label} is stale, re-run it"
        )
    targets = [list(t) for t in dict.fromkeys(zip(frame["pipeline"], frame["partition"], strict=True))]
    return Evidence(True, "; ".join(parts), frame, {"targets": targets})


def _latest_runs(ctx: RunbookContext, pipeline: str) -> pd.DataFrame:
    runs = ctx.snapshot.runs
    return runs[runs["pipeline"] == pipeline]


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
            runs = _latest_runs(ctx, up)
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
        runs = _latest_runs(ctx, pid)
        runs = runs[runs["as_of"].notna() & (runs["as_of"] <= pd.Timestamp(ctx.as_of))]
        last_run = _ts(runs["as_of"].max()) if len(runs) else None
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
    tick = f"last scheduler tick {_fmt(last_tick)}"
    if len(missed):
        detail = "; ".join(
            f"{r.pipeline}: cron fired {_fmt(_ts(r.last_fire))}, latest run as of {_fmt(_ts(r.last_run_as_of))}"
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


def _runs_frame(ctx: RunbookContext, pipelines: Sequence[str], lookback_days: int) -> pd.DataFrame:
    runs = ctx.snapshot.runs
    runs = runs[runs["pipeline"].isin(list(pipelines)) & (runs["status"] != "skipped")].copy()
    if not len(runs):
        return runs
    horizon = ctx.as_of.date() - dt.timedelta(days=lookback_days)
    last_days = runs["logical_date"].map(lambda label: period_days(str(label))[1])
    return runs[(last_days >= horizon) & (runs["as_of"].isna() | (runs["as_of"] <= pd.Timestamp(ctx.as_of)))]


def failed_runs(ctx: RunbookContext, *, lookback_days: int = 7) -> Evidence:
    """Partitions whose latest run failed or was blocked, in the last ``lookback_days`` days."""
    runs = _runs_frame(ctx, ctx.scope, lookback_days)
    if ctx.partition and ctx.partition != "current" and len(runs):
        runs = runs[runs["logical_date"] == ctx.partition]
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


def _latest_label(ctx: RunbookContext, table: str) -> str | None:
    writes = ctx.snapshot.writes
    mine = writes[(writes["table_name"] == table) & writes["label"].notna()]
    return str(mine.sort_values(["label", "written_at"]).iloc[-1]["label"]) if len(mine) else None


def partition_results(ctx: RunbookContext, kind: str) -> list[CheckResult]:
    """The built-in ``row_count`` or ``nulls`` checks of the context's partition (else each mart's
    latest partition) for the pipelines in scope, evaluated now; nothing is stored."""
    from helpers.checks import monitors

    out: list[CheckResult] = []
    for pid in ctx.scope:
        if ctx.partition and ctx.partition != "current":
            labels = {ctx.partition}
        else:
            labels = {label for t in _tables_of(ctx, pid) if (label := _latest_label(ctx, t))}
        for label in sorted(labels):
            found = monitors.partition_checks(pid, label, as_of=ctx.as_of, config=ctx.config)
            out += [r for r in found if r.kind == kind]
    if ctx.check_id and any(r.check_id == ctx.check_id for r in out):
        out = [r for r in out if r.check_id == ctx.check_id]
    return out


def results_frame(results: Sequence[CheckResult], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Check results as a table: check, partition, status, severity, ``extra`` evidence keys, summary."""
    rows = [
        dict(
            check_id=r.check_id,
            partition=r.partition,
            status=r.status,
            severity=r.severity,
            **{k: r.evidence.get(k) for k in extra},
            summary=r.summary,
        )
        for r in results
    ]
    return pd.DataFrame(rows, columns=["check_id", "partition", "status", "severity", *extra, "summary"])


def row_count_anomalies(ctx: RunbookContext) -> Evidence:
    """Row-count anomalies now: each mart partition in scope against its baseline (the monitor's rule)."""
    results = partition_results(ctx, "row_count")
    frame = results_frame(results, ("rows", "baseline", "variance", "direction"))
    bad = [r for r in results if r.failed]
    if bad:
        detail = "; ".join(r.summary for r in bad)
    elif results:
        detail = f"{len(results)} partition(s) within their baseline: " + "; ".join(
            r.summary for r in results[:3]
        )
    else:
        detail = "no mart partitions written yet"
    direction = bad[0].evidence.get("direction") if bad else None
    data = {"direction": direction, "failing": [r.check_id for r in bad]}
    return Evidence(bool(bad), detail, frame, {**data, "targets": [[r.pipeline, r.partition] for r in bad]})


def null_columns(ctx: RunbookContext) -> Evidence:
    """NULLs (or missing columns) in critical columns now, per mart partition in scope."""
    results = partition_results(ctx, "nulls")
    frame = results_frame(results, ("rows", "null_counts", "missing_columns"))
    bad = [r for r in results if r.failed]
    samples = {r.check_id: r.evidence.get("samples") for r in bad}
    missing = sorted({c for r in bad for c in r.evidence.get("missing_columns") or []})
    if bad:
        detail = "; ".join(r.summary for r in bad)
    else:
        detail = (
            f"no NULLs in {len(results)} partition(s)"
            if results
            else "no mart partitions with critical columns yet"
        )
    targets = [[r.pipeline, r.partition] for r in bad]
    return Evidence(
        bool(bad), detail, frame, {"samples": samples, "missing_columns": missing, "targets": targets}
    )


def missing_columns(ctx: RunbookContext, nulls: Evidence) -> Evidence:
    """Schema drift: a critical column is missing from the mart (renamed or dropped upstream)."""
    missing = nulls.data.get("missing_columns") or []
    detail = (
        f"missing critical column(s): {', '.join(missing)}" if missing else "every critical column exists"
    )
    return Evidence(bool(missing), detail)


def source_volume(ctx: RunbookContext, direction: str | None = None) -> Evidence:
    """Source volume: rows delivered for the partition's days vs the same baseline the row-count
    monitor uses (same weekday of previous weeks; previous months). Holds when a source moved
    beyond the variance threshold in ``direction`` (``drop``/``rise``; either when None)."""
    from helpers.checks import monitors

    label = ctx.partition if ctx.partition and ctx.partition != "current" else None
    mon = ctx.config.pipelines.monitors
    found, _unmapped = _scope_sources(ctx)
    rows = []
    for source in found if label else ():
        arr = landing.arrivals(source, as_of=ctx.as_of)
        if not len(arr):
            continue
        key = arr["partition"].str[:7] if len(label) == 7 else arr["partition"]
        counts = arr.groupby(key)["rows"].sum()
        base = [
            int(counts[b])
            for b in monitors.baseline_labels(label, weeks=mon.baseline_weeks, months=mon.baseline_months)
            if b in counts
        ]
        rows_now = int(counts.get(label, 0))
        median = float(pd.Series(base).median()) if base else None
        change = (rows_now - median) / median if median else None
        rows.append(
            dict(
                source=source,
                partition=label,
                rows=rows_now,
                baseline=median,
                variance=None if change is None else round(change, 4),
            )
        )
    frame = pd.DataFrame(rows, columns=["source", "partition", "rows", "baseline", "variance"])

    def moved(v: Any) -> bool:
        if v is None or pd.isna(v) or abs(v) <= mon.row_count_variance:
            return False
        return direction is None or (v < 0) == (direction == "drop")

    bad = frame[frame["variance"].map(moved)] if len(frame) else frame
    if not label:
        return Evidence(False, "no partition given: source volumes not compared", frame)
    detail = (
        "; ".join(
            f"{r.source} {r.partition}: {r.rows} rows vs baseline {r.baseline:g} ({r.variance:+.0%})"
            for r in bad.itertuples()
        )
        if len(bad)
        else f"{len(frame)} source(s) delivered their usual volume for {label}"
    )
    return Evidence(bool(len(bad)), detail, frame, {"sources": bad["source"].tolist()})


def late_deliveries(ctx: RunbookContext) -> Evidence:
    """Built before its data arrived: deliveries for a partition's days that arrived after the
    ``as_of`` of the partition's latest succeeded run (late data: re-run or backfill)."""
    cols = ["pipeline", "partition", "built_as_of", "source", "delivery_partition", "arrived_at", "rows"]
    rows = []
    for pid in ctx.scope:
        runs = _latest_runs(ctx, pid)
        done = runs[runs["status"] == "succeeded"]
        if ctx.partition and ctx.partition != "current":
            done = done[done["logical_date"] == ctx.partition]
        latest = done.groupby("logical_date").tail(1)
        found, _ = _scope_sources(ctx, [pid])
        arrivals = {s: landing.arrivals(s, as_of=ctx.as_of) for s in found}
        for run in latest.itertuples():
            built = _ts(run.as_of)
            if built is None:
                continue
            first, last = period_days(str(run.logical_date))
            for source, arr in arrivals.items():
                dates = arr["partition"].map(dt.date.fromisoformat) if len(arr) else arr["partition"]
                late = (
                    arr[(dates >= first) & (dates <= last) & (arr["arrived_at"] > pd.Timestamp(built))]
                    if len(arr)
                    else arr
                )
                rows += [
                    dict(
                        pipeline=pid,
                        partition=run.logical_date,
                        built_as_of=built,
                        source=source,
                        delivery_partition=d.partition,
                        arrived_at=_ts(d.arrived_at),
                        rows=int(d.rows),
                    )
                    for d in late.itertuples()
                ]
    frame = pd.DataFrame(rows, columns=cols)
    if not len(frame):
        return Evidence(False, "no delivery arrived after its partition was built", frame)
    parts = frame.groupby(["pipeline", "partition"]).agg(
        sources=("source", lambda s: ", ".join(sorted(set(s)))), rows=("rows", "sum")
    )
    detail = "; ".join(
        f"{p} {label} built before {rows} late row(s) of {r.sources} arrived"
        for (p, label), r, rows in zip(parts.index, parts.itertuples(), parts["rows"], strict=True)
    )
    return Evidence(True, detail, frame, {"targets": [list(k) for k in parts.index]})


def duplicate_rows(ctx: RunbookContext) -> Evidence:
    """Duplicates: identical rows within the anomalous mart partitions (join fan-out, re-delivery)."""
    rows = []
    engine = get_engine()
    for result in partition_results(ctx, "row_count"):
        table = result.check_id.rsplit(".row_count.", 1)[-1]
        writes = ctx.snapshot.writes
        keys = writes[(writes["table_name"] == table) & (writes["label"] == result.partition)][
            "partition_key"
        ]
        if not len(keys):
            continue
        where = json.loads(keys.iloc[-1])
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            cond = sa.and_(sa.true(), *(t.c[k] == v for k, v in where.items()))
            total = conn.execute(sa.select(sa.func.count()).select_from(t).where(cond)).scalar_one()
            distinct = conn.execute(
                sa.select(sa.func.count()).select_from(sa.select(t).where(cond).distinct().subquery())
            ).scalar_one()
        rows.append(
            dict(
                table=table,
                partition=result.partition,
                rows=int(total),
                distinct_rows=int(distinct),
                duplicates=int(total - distinct),
            )
        )
    frame = pd.DataFrame(rows, columns=["table", "partition", "rows", "distinct_rows", "duplicates"])
    bad = frame[frame["duplicates"] > 0] if len(frame) else frame
    detail = (
        "; ".join(
            f"{r.table} {r.partition}: {r.duplicates} duplicate row(s) of {r.rows}" for r in bad.itertuples()
        )
        if len(bad)
        else "no duplicate rows"
    )
    return Evidence(bool(len(bad)), detail, frame)


def freshness_cause(ctx: RunbookContext, pipeline: str | None = None) -> str:
    """What the freshness monitor calls lateness of this pipeline's family (stale_data for Profit)."""

    p = ctx.pipeline_config(pipeline or (ctx.scope[0] if ctx.scope else None))
    family = p.family if p else (ctx.family or "profit")
    return catalogue.FRESHNESS.get(family, "stale_data")


def family_cause(ctx: RunbookContext, table: Mapping[str, str], default: str) -> str:
    """``table[family]`` of the pipeline in scope (e.g. ``catalogue.ROW_DROP``), else ``default``."""
    p = ctx.pipeline_config(ctx.scope[0] if len(ctx.scope) == 1 else None)
    return table.get(p.family, default) if p else default


def row_count_cause(ctx: RunbookContext, anomaly: Evidence) -> str:
    """What the row-count monitor calls an anomaly in this family: a drop or a rise
    (``catalogue.ROW_DROP`` / ``catalogue.ROW_RISE``), else ``row_count_anomaly``."""

    rise = anomaly.data.get("direction") == "rise"
    table = catalogue.ROW_RISE if rise else catalogue.ROW_DROP
    return family_cause(ctx, table, "row_count_anomaly")


def null_cause(ctx: RunbookContext) -> str:
    """What the NULL monitor calls NULLs in this family (``math_errors`` for Profit), else
    ``null_critical_columns``."""

    return family_cause(ctx, catalogue.NULLS, "null_critical_columns")


def schema_cause(ctx: RunbookContext) -> str:
    """A missing column: ``schema_change`` for Engagement (events), else the family's NULL cause."""
    return family_cause(ctx, {"engagement": "schema_change"}, "") or null_cause(ctx)


def compute_cause(ctx: RunbookContext) -> str:
    """Running out of memory: ``data_skew_oom`` for Engagement, else the family's lateness."""
    return family_cause(ctx, {"engagement": "data_skew_oom"}, "") or freshness_cause(ctx)


def made_inside(nulls: Evidence, *others: Evidence) -> Evidence:
    """By elimination: NULLs are there and none of ``others`` (schema, upstream) explains them,
    so the pipeline made them (NULL handling, a join that finds no match, a wrong type)."""
    explained = [e.detail for e in others if e.holds]
    holds = nulls.holds and not explained
    if holds:
        detail = f"no upstream or schema cause: the pipeline's own step produced them ({nulls.detail})"
    else:
        detail = f"explained elsewhere: {'; '.join(explained)}" if explained else "no NULLs"
    return Evidence(holds, detail, data={"targets": nulls.data.get("targets", [])})


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


def describe_targets(targets: Sequence[tuple[str, str]], *, limit: int = 4) -> str:
    """``profit_aggregate 2026-10, engagement_aggregate 2026-10-01 … (+30 more)`` for messages."""
    shown = ", ".join(f"{p} {label}" for p, label in targets[:limit])
    more = f" … (+{len(targets) - limit} more)" if len(targets) > limit else ""
    return f"{shown}{more}" if targets else "nothing"


def rerun_targets(*evidence: Evidence) -> list[tuple[str, str]]:
    """The ``(pipeline, partition)`` pairs the holding evidence names, in order, without repeats."""
    out: list[tuple[str, str]] = []
    for e in evidence:
        for pipeline, partition in e.data.get("targets", []) if e.holds else []:
            if (pipeline, partition) not in out:
                out.append((pipeline, partition))
    return out


def date_range_targets(ctx: RunbookContext, start: str, end: str) -> list[tuple[str, str]]:
    """Every partition of the pipelines in scope touching ``[start, end]`` (dates; empty: none)."""
    from helpers.runs.dag import periods_between

    if not start:
        return []
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end or start)
    return [
        (pid, label)
        for pid in ctx.scope
        for label in periods_between(ctx.config.pipelines.get(pid), first, last)
    ]


# ---------------------------------------------------------------- the diagnosis


@dataclass(frozen=True)
class Finding:
    """One candidate cause: the cause id it implies, which "likely cause" it is, and its evidence."""

    cause: str
    reason: str
    holds: bool
    detail: str
    evidence: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "reason": self.reason, "holds": self.holds, "detail": self.detail}


class Diagnosis:
    """The symptom and the candidate causes of one runbook run, and the conclusion.

    :meth:`symptom` says whether the problem is there now; :meth:`finding` records each likely
    cause with its evidence, most specific first. :meth:`conclude`: no symptom -> ``no problem
    found`` (with the evidence that says so); a symptom and holding findings -> the first one's
    cause; a symptom and no holding finding -> ``default_cause``, saying no cause was confirmed.
    """

    def __init__(self, ctx: RunbookContext, *, default_cause: str) -> None:
        self.ctx = ctx
        self.default_cause = default_cause
        self.symptoms: list[Evidence] = []
        self.findings: list[Finding] = []
        self.notes: dict[str, Any] = {}
        self.verification: Verification | None = None
        self._concluded: tuple[str, str] | None = None

    def symptom(self, evidence: Evidence) -> Evidence:
        """Record whether the runbook's problem is present now (several calls: any of them)."""
        self.symptoms.append(evidence)
        self._concluded = None
        return evidence

    def finding(self, cause: str, reason: str, evidence: Evidence) -> Evidence:
        """Record one likely cause (``cause``: a catalogue id or a generic cause id)."""
        self.findings.append(Finding(cause, reason, evidence.holds, evidence.detail, evidence.as_json()))
        self._concluded = None
        return evidence

    def note(self, key: str, value: Any) -> None:
        """Extra evidence to record with the diagnosis."""
        self.notes[key] = json_safe(value)

    @property
    def present(self) -> bool:
        return any(e.holds for e in self.symptoms)

    def _conclusion(self) -> tuple[str, str]:
        if self._concluded is None:
            shown = "; ".join(e.detail for e in self.symptoms if e.holds) or "; ".join(
                e.detail for e in self.symptoms
            )
            shown = _clip(shown or "nothing to check", SYMPTOM_CHARS)
            holding = [f for f in self.findings if f.holds]
            if not self.present:
                checked = ", ".join(f.reason for f in self.findings)
                text = f"no problem found: {shown}" + (f" (also checked: {checked})" if checked else "")
                self._concluded = (NO_PROBLEM, text)
            elif holding:
                first = holding[0]
                also = ", ".join(f.reason for f in holding[1:])
                text = f"{first.cause}: {first.reason} - {_clip(first.detail, DETAIL_CHARS)}"
                text += f" (also: {also})" if also else ""
                self._concluded = (first.cause, f"{text} [symptom: {shown}]")
            else:
                text = f"{self.default_cause}: {shown}; no likely cause confirmed by the evidence"
                self._concluded = (self.default_cause, text)
        return self._concluded

    @property
    def cause(self) -> str:
        return self._conclusion()[0]

    @property
    def text(self) -> str:
        return self._conclusion()[1]

    @property
    def evidence(self) -> dict[str, Any]:
        """What the diagnosis rests on, JSON-able: the symptom, each finding, notes."""
        return json_safe(
            {
                "context": self.ctx.as_json(),
                "symptom": [e.as_json() for e in self.symptoms],
                "findings": [{**f.as_json(), "evidence": f.evidence} for f in self.findings],
                **self.notes,
            }
        )

    def targets(self, *evidence: Evidence) -> list[tuple[str, str]]:
        """:func:`rerun_targets` of ``evidence`` when the problem is present, else nothing to re-run."""
        return rerun_targets(*evidence) if self.present else []

    def verify(
        self, check_id: str | None = None, *, kind: str | None = None, match: str = ""
    ) -> Verification:
        """:func:`verify` (stored as ``self.verification``). Without an alert's check and with no
        problem found there is nothing to verify."""
        if not (check_id or self.ctx.check_id) and not self.present:
            self.verification = Verification((), "none", False)
            print("verify: nothing to verify (no problem found)")
        else:
            self.verification = verify(check_id, self.ctx, kind=kind, match=match)
        return self.verification

    def table(self) -> pd.DataFrame:
        """The findings as a table (cause, likely cause, holds, detail)."""
        return pd.DataFrame(
            [f.as_json() for f in self.findings], columns=["cause", "reason", "holds", "detail"]
        )

    def conclude(self) -> str:
        """Print and return the diagnosis line."""
        print("DIAGNOSIS:", self.text)
        return self.text

    def glue(self) -> dict[str, Any]:
        """Record the outcome as scraps: ``diagnosis`` (text), ``cause``, ``evidence``, ``findings``,
        ``fixes`` and ``verification``; returns them."""
        import scrapbook as sb

        scraps = {
            "diagnosis": self.text,
            "cause": self.cause,
            "evidence": self.evidence,
            "findings": [f.as_json() for f in self.findings],
            "fixes": [f.as_json() for f in _FIXES],
            "verification": self.verification.as_json() if self.verification else {},
        }
        for name, value in scraps.items():
            sb.glue(name, json_safe(value))
        return scraps


# ---------------------------------------------------------------- fixing


@dataclass(frozen=True)
class FixRecord:
    """What :func:`guarded_fix` did: ``applied`` False is a dry run; ``error`` if the action raised."""

    description: str
    applied: bool
    result: Any = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return json_safe(
            {
                "description": self.description,
                "applied": self.applied,
                "result": self.result,
                "error": self.error,
            }
        )


def guarded_fix(apply_fix: bool, action: Callable[[], Any], description: str) -> FixRecord:
    """Run ``action`` only when ``apply_fix`` is true; record what was done (or would be).

    A failing action is recorded with its error and printed, not raised: Verify then shows the
    check still failing, and the runbook still records its diagnosis.
    """
    if not apply_fix:
        record = FixRecord(description, False)
        print(f"DRY RUN (apply_fix=False): would {description}")
    else:
        print(f"FIX: {description}")
        try:
            record = FixRecord(description, True, json_safe(action()))
            print("done:", json.dumps(record.result, default=str)[:800])
        except Exception as e:
            record = FixRecord(description, True, None, f"{type(e).__name__}: {e}")
            print("FIX FAILED:", record.error)
            print("".join(traceback.format_exc(limit=4)))
    _FIXES.append(record)
    return record


def fixes() -> list[FixRecord]:
    """The fixes recorded in this run so far."""
    return list(_FIXES)


def rerun(
    ctx: RunbookContext,
    partitions: Iterable[tuple[str, str]] | None = None,
    *,
    downstream: bool = True,
) -> list[dict[str, Any]]:
    """Re-run ``(pipeline, partition)`` pairs (default: the context's) with ``backfill --force``
    (and ``--downstream``), at ``ctx.as_of``; returns each run's outcome.

    A ``current`` partition (a monitor about now) re-runs the partition holding the day before
    ``as_of``, as the scheduler would.
    """
    from helpers.runs import orchestrate

    pairs = (
        list(partitions) if partitions is not None else [(p, ctx.partition or "current") for p in ctx.scope]
    )
    if downstream:  # a dependant of another target is re-run by that target's --downstream
        graph = Dag.from_config(ctx.config.pipelines)
        ups = {p for p, _ in pairs}
        pairs = [(p, label) for p, label in pairs if not any(p in graph.descendants(u) for u in ups - {p})]
    clock = as_of_clock(ctx.as_of)
    out: list[dict[str, Any]] = []
    for pipeline, label in pairs:
        p = ctx.config.pipelines.get(pipeline)
        if label in ("", "current", None):
            label = partition_for(p, ctx.as_of.date() - dt.timedelta(days=1))
        first, last = period_days(label)
        outcomes = orchestrate.backfill(
            pipeline,
            first,
            last,
            clock=clock,
            as_of=ctx.as_of,
            force=True,
            downstream=downstream,
            config=ctx.config,
        )
        out += [o.as_json() for o in outcomes]
    return out


# ---------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Verification:
    """The re-run check(s): ``source`` monitor (evaluated now), stored (a run's latest result) or none."""

    results: tuple[CheckResult, ...]
    source: str
    recorded: bool

    @property
    def passed(self) -> bool | None:
        """All passed (None: nothing to verify)."""
        return None if not self.results else not any(r.failed for r in self.results)

    def frame(self) -> pd.DataFrame:
        return results_frame(self.results)

    def as_json(self) -> dict[str, Any]:
        return json_safe(
            {
                "passed": self.passed,
                "source": self.source,
                "recorded": self.recorded,
                "results": [
                    {
                        "check_id": r.check_id,
                        "partition": r.partition,
                        "status": r.status,
                        "summary": r.summary,
                    }
                    for r in self.results
                ],
            }
        )

    def __repr__(self) -> str:
        verdict = {True: "PASSED", False: "STILL FAILING", None: "nothing to verify"}[self.passed]
        body = "" if not self.results else "\n" + self.frame().to_string()
        return f"verify: {verdict} ({self.source}{', recorded' if self.recorded else ''}){body}"


@dataclass(frozen=True)
class HandledVerification(Verification):
    """A :class:`Verification` that also passes when all that still fails is ``handled``: a check
    that keeps listing rows the pipeline already deals with (the landing zone is immutable), e.g.
    records quarantined with their reason. The alert stays open for the source's owner."""

    handled: tuple[str, ...] = ()

    @property
    def passed(self) -> bool | None:
        if not self.results:
            return None
        return all(not r.failed or r.check_id in self.handled for r in self.results)

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "passed": self.passed, "handled": list(self.handled)}

    def __repr__(self) -> str:
        text = super().__repr__().replace("STILL FAILING", "PASSED" if self.passed else "STILL FAILING")
        return text + (
            f"\nhandled by the pipeline (listed, not wrong): {', '.join(self.handled)}"
            if self.handled
            else ""
        )


def _pipeline_of(check_id: str, config: cfgmod.WorkbookConfig) -> str | None:
    head = check_id.split(".", 1)[0]
    return head if head in config.pipelines.pipelines else None


def _monitor_results(
    ctx: RunbookContext, pipeline: str, check_id: str, partition: str | None
) -> list[CheckResult]:
    from helpers.checks import monitors

    if partition and partition != monitors.CURRENT and (".row_count." in check_id or ".nulls." in check_id):
        found = monitors.partition_checks(pipeline, partition, as_of=ctx.as_of, config=ctx.config)
    else:
        found = monitors.evaluate_monitors(ctx.as_of, pipelines=[pipeline], config=ctx.config)
    mine = [r for r in found if r.check_id == check_id]
    same = [r for r in mine if r.partition == partition]
    return same or mine


def _stored_result(check_id: str, partition: str | None) -> list[CheckResult]:
    from helpers.checks import store

    fields = CheckResult.__dataclass_fields__
    for row in store.list_results(check_id=check_id, limit=50):
        if partition in (None, row["partition"]):
            return [CheckResult(**{k: row[k] for k in fields if k in row})]
    return []


def verify(
    check_id: str | None,
    ctx: RunbookContext,
    *,
    partition: str | None = None,
    kind: str | None = None,
    match: str = "",
) -> Verification:
    """Re-run the failing check at ``ctx.as_of`` (default: the context's check and partition).

    Monitor checks (freshness, row counts, NULLs, run status, SLAs) are evaluated afresh; a
    pipeline's own domain checks only run inside its run, so their latest stored result (e.g. from
    the re-run a fix made) is shown. Without a check id, every ``kind`` check of the pipelines in
    scope is evaluated (``match``: only check ids containing it). Results are recorded, and alerts synced (a pass resolves the alert), only
    when fixes were applied: a diagnosis must not change what it observes.
    """
    from helpers.checks import monitors, store

    check_id = check_id or ctx.check_id
    partition = partition or ctx.partition
    results: list[CheckResult] = []
    source = "none"
    if check_id:
        pipeline = ctx.pipeline or _pipeline_of(check_id, ctx.config)
        if pipeline:
            results, source = _monitor_results(ctx, pipeline, check_id, partition), "monitor"
        if not results:
            results, source = _stored_result(check_id, partition), "stored"
    elif kind in ("row_count", "nulls"):
        results, source = partition_results(ctx, kind), "monitor"
    elif kind:
        found = (
            monitors.evaluate_monitors(ctx.as_of, pipelines=ctx.scope, config=ctx.config) if ctx.scope else []
        )
        mine = [r for r in found if r.kind == kind and r.pipeline in ctx.scope and match in r.check_id]
        results, source = mine, "monitor"
    recorded = bool(ctx.apply_fix and results and source == "monitor")
    if recorded:
        store.record_results(results)
        alertsmod.sync(results, config=ctx.config)
    outcome = Verification(tuple(results), source if results else "none", recorded)
    print(repr(outcome).splitlines()[0])
    return outcome


# ---------------------------------------------------------------- escalating


@dataclass(frozen=True)
class Escalation:
    """Who to call about a pipeline now, and who joins when (the plan's "When Things Go Wrong")."""

    pipeline: str | None
    as_of: dt.datetime
    steps: tuple[dict[str, Any], ...]

    @property
    def call_now(self) -> list[str]:
        """Everyone whose step is due at ``as_of`` (labels such as ``DE1 (Data Engineer 1)``)."""
        return list(dict.fromkeys(s["who"] for s in self.steps if s["due_now"]))

    @property
    def line(self) -> str:
        later = [f"{s['who']} ({s['step']}) at {s['at']}" for s in self.steps if not s["due_now"]]
        text = f"call now: {', '.join(self.call_now) or 'nobody yet'}"
        return text + (f"; later: {'; '.join(later)}" if later else "")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            list(self.steps), columns=["step", "who", "contact", "role", "at", "due_now", "why"]
        )

    def as_json(self) -> dict[str, Any]:
        return json_safe(
            {
                "pipeline": self.pipeline,
                "as_of": self.as_of,
                "call_now": self.call_now,
                "steps": list(self.steps),
            }
        )

    def __repr__(self) -> str:
        return f"{self.line}\n{self.frame().to_string(index=False)}"


def escalate_to(
    pipeline: str | None,
    as_of: dt.datetime,
    *,
    catalogue_id: str | None = None,
    alert: alertsmod.Alert | None = None,
    opened_at: dt.datetime | None = None,
    config: cfgmod.WorkbookConfig | None = None,
) -> Escalation:
    """Who to call now about ``pipeline`` (or, without one, whoever holds the pager).

    From the on-call schedule (swaps, holidays, month-end) and the escalation ladder, counted from
    the alert's opening (else from ``as_of``): the first responders, the secondary owner after
    ``secondary_after_minutes``, the team lead after ``lead_after_minutes``, and the cross-team
    contact for a cause outside the team (``escalation.cross_team``, by catalogue id: the
    diagnosed ``catalogue_id`` when it is one, else the alert's). ``opened_at`` overrides the
    alert's opening.
    """
    from helpers.oncall import routing
    from helpers.oncall import schedule as oncall

    config = config or cfgmod.get()
    as_of = as_utc(as_of)
    schedule = oncall.schedule_for(config)
    team, esc = config.team, config.team.escalation

    if catalogue_id not in catalogue.FAMILY:
        catalogue_id = alert.catalogue_id if alert else None
    opened = as_utc(opened_at) if opened_at else alert.opened_at if alert else as_of
    steps: list[dict[str, Any]] = []

    def add(step: str, person: Any, at: dt.datetime, why: str) -> None:
        contact = ", ".join(x for x in (person.email, person.slack) if x)
        steps.append(
            dict(
                step=step,
                who=person.label,
                contact=contact,
                role=person.role,
                at=f"{schedule.local(at):%a %Y-%m-%d %H:%M %Z}",
                due_now=at <= as_of,
                why=why,
            )
        )

    if not pipeline:
        state = schedule.on_call_at(as_of)
        add("on_call", routing.engineer(team, state.engineer, "on_call"), as_of, "holds the pager")
        add(
            "lead",
            routing.team_lead(team),
            as_of + dt.timedelta(minutes=esc.lead_after_minutes),
            "if it is still broken after the ladder's lead step",
        )
        return Escalation(None, as_of, tuple(steps))
    first = routing.route(schedule, pipeline, opened)
    for person in first.recipients:
        add("notify", person, first.notify_at, first.reason)
    clock = routing.watch_clock(schedule, pipeline)
    secondary_at = clock.advance(opened, esc.secondary_after_minutes)
    add(
        "secondary",
        routing.engineer(team, schedule.secondary_for(pipeline, secondary_at), "secondary"),
        secondary_at,
        f"still broken {esc.secondary_after_minutes} min after opening",
    )
    lead_at = clock.advance(opened, esc.lead_after_minutes)
    add("lead", routing.team_lead(team), lead_at, f"still broken {esc.lead_after_minutes} min after opening")
    contact_key = esc.cross_team.get(catalogue_id or "")
    if contact_key:
        add(
            "cross_team",
            routing.contact(team, contact_key),
            clock.advance(opened, esc.cross_team_after_minutes),
            f"cause outside the team ({catalogue_id}): {team.contacts[contact_key].team}",
        )
    return Escalation(pipeline, as_of, tuple(steps))


# ---------------------------------------------------------------- operational checklists


def close_checklist(ctx: RunbookContext, period: str | None = None) -> Evidence:
    """Month-end close: "everyone verifies investor reports look right", one computed item per row.

    For each investor pipeline (``feeds`` investors / investor report): its runs cover the whole
    month, the month's latest run succeeded, its row counts and critical columns pass, no alert
    of it is open, and the investor aggregate ran after its upstreams' latest successes.
    ``period`` (``YYYY-MM``) defaults to the close in progress at ``ctx.as_of``. ``data["targets"]``
    are the partitions to re-run for the items that a re-run can fix.
    """
    from helpers.checks import monitors
    from helpers.core import businesscal

    close = ctx.config.pipelines.close
    cal = businesscal.BusinessCalendar.from_team(ctx.config.team)
    current, _deadline, _ = businesscal.close_window(
        cal,
        ctx.as_of,
        report_final_business_days=close.report_final_business_days,
        heightened_from_days_before_month_end=close.heightened_from_days_before_month_end,
    )
    period = period or current
    deadline = cal.close_deadline(period, close.report_final_business_days)
    open_alerts = alertsmod.list_alerts(open_only=True, limit=10_000)
    rows: list[dict[str, Any]] = []
    targets: list[list[str]] = []

    def item(pipeline: str, what: str, ok: bool, detail: str) -> None:
        rows.append(dict(pipeline=pipeline, item=what, ok=bool(ok), detail=detail))

    first, need = period_days(period)
    finished: dict[str, dt.datetime | None] = {}
    for pid in investor_pipelines(ctx.config):
        p = ctx.config.pipelines.pipelines[pid]
        runs = _latest_runs(ctx, pid)
        through = monitors.covered_through(runs, monthly=p.partition == "month", as_of=ctx.as_of)
        covered = through is not None and through >= need
        item(pid, "covers the whole month", covered, f"covered through {through or 'nothing'} (need {need})")
        month_runs = runs[runs["logical_date"].astype(str).str[:7] == period]
        month_runs = month_runs[month_runs["status"] != "skipped"]
        latest = month_runs.iloc[-1] if len(month_runs) else None
        ok_run = latest is not None and latest["status"] == "succeeded"
        finished[pid] = _ts(latest["finished_at"]) if ok_run else None
        ran = f"{latest['run_id']}: {latest['status']}" if latest is not None else "no run for the month"
        item(pid, "latest run succeeded", ok_run, ran)
        label = period if p.partition == "month" else need.isoformat()
        checks = (
            monitors.partition_checks(pid, label, as_of=ctx.as_of, config=ctx.config)
            if _tables_of(ctx, pid)
            else []
        )
        failing = [r.summary for r in checks if r.failed]
        passed = f"{len(checks)} check(s) pass" if checks else "no partition written"
        item(
            pid,
            "row counts and critical columns pass",
            bool(checks) and not failing,
            "; ".join(failing) or passed,
        )
        mine = [a for a in open_alerts if a.pipeline == pid and a.opened_at <= ctx.as_of]
        item(
            pid,
            "no open alert",
            not mine,
            ", ".join(f"{a.alert_id} {a.check_id}" for a in mine) or "none open",
        )
        if not (covered and ok_run and checks and not failing):
            if p.partition == "month":
                targets.append([pid, period])
            else:
                start = max(first, (through or first - dt.timedelta(days=1)) + dt.timedelta(days=1))
                last = min(need, ctx.as_of.date() - dt.timedelta(days=1))
                days = pd.date_range(start, last, freq="D") if start <= last else []
                targets += [[pid, d.date().isoformat()] for d in days]
    for pid in investor_pipelines(ctx.config):
        ups = ctx.config.pipelines.pipelines[pid].depends_on
        if ups and finished.get(pid):
            late = [u for u in ups if finished.get(u) and finished[u] > finished[pid]]
            detail = f"upstream(s) re-ran after it: {', '.join(late)}" if late else "yes"
            item(pid, "ran after its upstreams", not late, detail)
            if late and [pid, period] not in targets:
                targets.append([pid, period])
    frame = pd.DataFrame(rows, columns=["pipeline", "item", "ok", "detail"])
    failing_rows = frame[~frame["ok"]] if len(frame) else frame
    left = _hours(deadline - ctx.as_of)
    at_risk = left <= ctx.config.pipelines.monitors.sla_at_risk_hours
    when = ("MISSED, " if left <= 0 else "at risk, " if at_risk else "in progress, ") + f"{left:g} h left"
    if len(failing_rows):
        missing = "; ".join(f"{r.pipeline} {r.item}" for r in failing_rows.itertuples())
        detail = f"close {period} ({when}, deadline {_fmt(deadline)}): {len(failing_rows)} of {len(frame)} item(s) not done: {missing}"
    else:
        detail = f"close {period}: all {len(frame)} item(s) done (deadline {_fmt(deadline)})"
    data = {
        "period": period,
        "deadline": deadline,
        "hours_left": left,
        "at_risk": at_risk,
        "targets": targets,
    }
    # Items still open days before the deadline are work in progress, not a problem (the monitor agrees).
    return Evidence(bool(len(failing_rows)) and at_risk, detail, frame, data)


def investor_pipelines(config: cfgmod.WorkbookConfig) -> list[str]:
    """The pipelines whose figures go to investors (``feeds`` investors or investor report)."""
    pipes = config.pipelines.pipelines
    order = Dag.from_config(config.pipelines).order()
    return [pid for pid in order if pipes[pid].feeds in ("investors", "investor report")]


def close_items(checklist: Evidence, item: str) -> Evidence:
    """The rows of :func:`close_checklist` for one item that are not done (a finding even before
    the close is at risk: the work left)."""
    frame = checklist.frame
    bad = frame[(frame["item"] == item) & ~frame["ok"]] if len(frame) else frame
    detail = "; ".join(f"{r.pipeline}: {r.detail}" for r in bad.itertuples()) or f"'{item}' done everywhere"
    targets = (
        [t for t in checklist.data.get("targets", []) if t[0] in set(bad["pipeline"])] if len(bad) else []
    )
    return Evidence(bool(len(bad)), detail, bad, {"targets": targets})


def verify_close(ctx: RunbookContext, period: str) -> Verification:
    """Re-run the month-end close SLA check of every investor pipeline for ``period``."""
    from helpers.checks import monitors, store

    pipelines = investor_pipelines(ctx.config)
    found = monitors.evaluate_monitors(ctx.as_of, pipelines=pipelines, config=ctx.config)
    results = [r for r in found if r.check_id.endswith(".sla.month_end_close") and r.partition == period]
    recorded = bool(ctx.apply_fix and results)
    if recorded:
        store.record_results(results)
        alertsmod.sync(results, config=ctx.config)
    outcome = Verification(tuple(results), "monitor" if results else "none", recorded)
    print(repr(outcome).splitlines()[0])
    return outcome


def underlying_alert(ctx: RunbookContext) -> alertsmod.Alert | None:
    """The alert a fix-deadline alert is about (its evidence's ``alert_id``), if any."""
    if ctx.alert is None:
        return None
    target = ctx.alert.evidence.get("alert_id")
    if target is None and ".sla.fix_deadline." in ctx.alert.check_id:
        target = ctx.alert.check_id.rsplit(".", 1)[-1]
    try:
        return alertsmod.get_alert(int(target)) if target is not None else None
    except ValueError:
        return None


def underlying_cause(ctx: RunbookContext, alert: alertsmod.Alert | None) -> str:
    """The cause of the problem behind a deadline: its latest diagnosis, else its catalogue id."""
    from helpers.runbooks import registry as runbooks

    if alert is None:
        return "fix_deadline"
    run = runbooks.latest_diagnosis(alert.alert_id)
    cause = run.cause if run is not None else None
    return cause if cause and cause != NO_PROBLEM else alert.catalogue_id or "fix_deadline"


def incident_state(ctx: RunbookContext) -> Evidence:
    """Open problems racing their fix deadline: the underlying alert (or every open one in scope)
    with its status, who acknowledged it, whether anyone was notified, and the hours left."""
    from helpers.oncall import escalation, incidents

    target = underlying_alert(ctx)
    if target is not None:
        items = [target]
    else:
        items = [
            a
            for a in alertsmod.list_alerts(open_only=True, limit=10_000)
            if a.pipeline in ctx.scope and a.fix_deadline and a.opened_at <= ctx.as_of
        ]
    rows = []
    for a in items:
        inc = incidents.get_incident(str(a.alert_id))
        deadline = inc.fix_deadline if inc else a.fix_deadline
        steps = {e.step for e in escalation.timeline(str(a.alert_id))}
        rows.append(
            dict(
                alert_id=a.alert_id,
                pipeline=a.pipeline,
                check_id=a.check_id,
                status=a.status,
                acknowledged_by=a.acknowledged_by,
                notified="notify" in steps,
                fix_deadline=deadline,
                hours_left=_hours(deadline - ctx.as_of) if deadline else None,
                catalogue_id=a.catalogue_id,
                summary=a.summary,
            )
        )
    cols = [
        "alert_id",
        "pipeline",
        "check_id",
        "status",
        "acknowledged_by",
        "notified",
        "fix_deadline",
        "hours_left",
        "catalogue_id",
        "summary",
    ]
    frame = pd.DataFrame(rows, columns=cols)
    within = ctx.config.pipelines.monitors.sla_at_risk_hours
    active = frame[frame["status"].isin(alertsmod.ACTIVE)] if len(frame) else frame
    near = active["hours_left"].map(lambda h: h is not None and h <= within) if len(active) else []
    risky = active[near] if len(active) else active
    if len(risky):
        detail = "; ".join(
            f"alert {r.alert_id} ({r.check_id}) {r.status}, {r.hours_left:g} h to its fix deadline"
            for r in risky.itertuples()
        )
    elif len(active):
        detail = f"{len(active)} open alert(s), none within {within:g} h of its fix deadline"
    else:
        detail = "no open alert with a fix deadline"
    return Evidence(
        bool(len(risky)),
        detail,
        risky if len(risky) else frame,
        {"alert_ids": risky["alert_id"].tolist() if len(risky) else []},
    )


def unacknowledged(racing: Evidence) -> Evidence:
    """Of :func:`incident_state`, alerts nobody acknowledged (the ladder is still climbing)."""
    frame = racing.frame
    bad = frame[frame["status"] == "open"] if len(frame) and racing.holds else frame.head(0)
    detail = ", ".join(f"alert {r.alert_id} not acknowledged" for r in bad.itertuples()) or "acknowledged"
    return Evidence(bool(len(bad)), detail, bad)


def fix_pending(racing: Evidence) -> Evidence:
    """Of :func:`incident_state`, alerts acknowledged whose fix is not done."""
    frame = racing.frame
    bad = frame[frame["status"] == "acknowledged"] if len(frame) and racing.holds else frame.head(0)
    detail = ", ".join(
        f"alert {r.alert_id} acknowledged by {r.acknowledged_by}, still open" for r in bad.itertuples()
    )
    return Evidence(bool(len(bad)), detail or "no acknowledged alert left open", bad)


def cross_team_wait(ctx: RunbookContext, cause: str) -> Evidence:
    """The cause lies with another team (``escalation.cross_team``): the fix waits on its contact."""
    key = ctx.config.team.escalation.cross_team.get(cause)
    if not key:
        return Evidence(False, f"{cause} is the data team's own")
    contact = ctx.config.team.contacts[key]
    return Evidence(True, f"{cause} needs {contact.team} ({contact.name}, {contact.email or contact.slack})")


def _sub_context(ctx: RunbookContext, alert: alertsmod.Alert, *, apply_fix: bool) -> RunbookContext:
    known = alert.pipeline in ctx.config.pipelines.pipelines
    return RunbookContext(
        ctx.runbook, ctx.as_of, apply_fix, ctx.run_id, ctx.config, alert,
        alert.pipeline if known else None, alert.partition, alert.check_id,
    )  # fmt: skip


def check_passes_now(ctx: RunbookContext, alert: alertsmod.Alert | None) -> Evidence:
    """Fixed but not closed: the underlying alert's check passes now while the alert is open."""
    if alert is None:
        return Evidence(False, "no underlying alert")
    result = verify(alert.check_id, _sub_context(ctx, alert, apply_fix=False))
    now = {True: "passes", False: "fails", None: "cannot be re-run"}[result.passed]
    holds = result.passed is True and alert.status in alertsmod.ACTIVE
    return Evidence(holds, f"check {alert.check_id} now {now} (alert {alert.status})", result.frame())


def fix_incident(ctx: RunbookContext, alert: alertsmod.Alert | None) -> dict[str, Any]:
    """Close the underlying alert if its check passes now; else run its runbook with fixes applied."""
    from helpers.runbooks import registry as runbooks

    if alert is None:
        return {"action": "none", "reason": "no underlying alert"}
    sub = _sub_context(ctx, alert, apply_fix=True)
    if check_passes_now(ctx, alert).holds:
        return {"action": "recorded the passing check", "verification": verify(alert.check_id, sub).as_json()}
    res = runbooks.resolve_alert(alert)
    if res.runbook is None:
        return {"action": "none", "reason": res.note}
    run = runbooks.run_runbook(
        res.runbook, clock=as_of_clock(ctx.as_of), as_of=ctx.as_of, alert_id=alert.alert_id,
        apply_fix=True, trigger="incident_fix", requested=res.requested, config=ctx.config,
    )  # fmt: skip
    return {"action": f"ran {run.runbook} with apply_fix=True", "run": run.as_json()}

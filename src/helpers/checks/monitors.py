"""The plan's automatic alerts, as checks over the warehouse and the landing zone.

Every monitor is a :class:`~helpers.checks.framework.Check` evaluated at an explicit ``as_of``
against a :class:`Snapshot` (run records, mart writes, landing arrivals and active alerts, read
once). The rules, thresholds from ``config/pipelines.yml`` (``sla`` per pipeline, ``monitors``):

- ``freshness``: a pipeline's marts are as old as their latest write (``partition_writes.written_at``;
  without writes, its latest succeeded run's ``as_of``). Older than ``freshness_warn_hours`` is a
  warning, older than ``freshness_critical_hours`` critical (18 h / 24 h; Engagement 36 h / 48 h).
- ``source_freshness``: the same thresholds on each source's latest landing arrival for daily
  sources; a monthly source (``sources.<name>.cadence: monthly`` in config) is judged on its latest
  *due* period instead: overdue by more than the thresholds past ``due_days_after_period`` after the
  period's end, it alerts (a cloud bill is not "stale" for the 30 days it is not expected).
- ``row_count``: a partition's rows against a trailing baseline of its own kind: for daily
  partitions the median of the same weekday in the previous ``baseline_weeks`` weeks (a Saturday is
  compared with Saturdays, so weekend dips are not anomalies); for monthly partitions the median of
  the previous ``baseline_months`` months, and only once the month is complete (its last write is
  after the month ended), so a month-to-date partition at a month start is not an anomaly. More
  than ``row_count_variance`` (20 %) either way alerts; a drop to zero is critical.
- ``nulls``: NULLs in a mart's ``critical_columns`` (latest partition); the evidence names each column,
  its NULL count and sample rows.
- ``run_status``: the latest run of each recent partition failed (critical) or was blocked (warning).
- ``sla_at_risk``: each deadline is "at risk" (warning) from ``sla_at_risk_hours`` (24 h) before it
  while not met, and "missed" (critical) after it. Deadlines: the freshness SLA (latest update +
  ``freshness_critical_hours``), Growth's end of week (``end_of_week_updates``: the marts cover every
  day before the week's last business day by the end of that day), the month-end close (investor
  pipelines cover the whole month by the end of the ``close.report_final_business_days``-th
  business day after month end), and each open alert's fix deadline. For the recurring deadlines
  (freshness, end of week) a deadline is not at risk while a rescue is on its way: a run is active,
  or the next scheduled run comes before the deadline and the latest run did not fail or block.
  The close has no such excuse: it needs people, not the next cron tick.
- ``upstream_at_risk``: a pipeline whose upstream is late (failing freshness, source freshness,
  run status, SLA or its own upstream checks) gets an alert too, naming the upstream.
- ``slots_dropped``: a partition whose scheduled runs the scheduler dropped (older than
  ``runner.catch_up_days``) until a run covers it (``checks.slots``; the scheduler's ticks evaluate
  it too).

Times: every rule compares ``as_of`` with times in the ``as_of`` frame (a write's ``written_at``, a
run's ``as_of``, a slot's fire time, deadlines) or durations with durations; a run's
``queued_at``/``started_at``/``finished_at`` (when it really ran) only order runs.

The rules themselves are pure functions in ``checks.rules``; what they read is loaded once into a
``checks.snapshot.Snapshot``. This module applies them per pipeline and turns each into a result.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.checks.framework import (
    CURRENT,
    Check,
    CheckContext,
    CheckResult,
    Outcome,
    Severity,
    evaluate,
    fail,
    ok,
)
from helpers.checks.rules import (
    covered_through,
    deadline_outcome,
    freshness_outcome,
    monthly_source_outcome,
    rescue_expected,
    row_count_outcome,
)
from helpers.checks.slots import slots_dropped_results
from helpers.checks.snapshot import FixDeadline, Snapshot, load_snapshot
from helpers.core import businesscal, catalogue
from helpers.core import config as cfgmod
from helpers.core.catalogue import GENERAL_RUNBOOKS, runbook_path
from helpers.core.periods import MONTH_LABEL, period_days, previous_month
from helpers.core.timeutil import UTC, as_utc
from helpers.runs.dag import Dag
from helpers.storage import warehouse
from helpers.storage.warehouse import get_engine

LATE_KINDS = ("freshness", "source_freshness", "run_status", "sla_at_risk", "upstream_at_risk")


@dataclass
class _Env:
    config: cfgmod.WorkbookConfig
    cal: businesscal.BusinessCalendar
    snap: Snapshot
    engine: Engine
    evaluated_at: dt.datetime

    @property
    def as_of(self) -> dt.datetime:
        return self.snap.as_of

    @property
    def mon(self) -> cfgmod.MonitorsConfig:
        return self.config.pipelines.monitors

    def runs_of(self, pipeline: str) -> pd.DataFrame:
        return self.snap.runs[self.snap.runs["pipeline"] == pipeline]

    def result(
        self,
        pipeline: cfgmod.Pipeline,
        check_id: str,
        kind: str,
        fn: Callable[[], Outcome],
        *,
        partition: str = CURRENT,
        severity: Severity = "critical",
        catalogue_id: str | None = None,
        runbook: str | None = None,
    ) -> CheckResult:
        check = Check(
            id=check_id,
            pipeline=pipeline.id,
            fn=lambda _ctx: fn(),
            severity=severity,
            catalogue_id=catalogue_id,
            runbook=runbook,
            kind=kind,
        )
        ctx = CheckContext(pipeline.id, partition, self.as_of)
        return evaluate(check, ctx, evaluated_at=self.evaluated_at)


def pipeline_tables(pipeline: cfgmod.Pipeline, writes: pd.DataFrame) -> list[str]:
    """The marts a pipeline owns: its ``critical_columns`` tables and any table its runs wrote."""
    written = writes.loc[writes["pipeline"] == pipeline.id, "table_name"]
    return sorted(set(pipeline.critical_columns) | set(written))


def mart_last_update(env: _Env, pipeline: cfgmod.Pipeline) -> dt.datetime | None:
    """When a pipeline's marts were last written (by ``as_of``), else its latest success's ``as_of``."""
    writes = env.snap.writes
    mine = writes[writes["table_name"].isin(pipeline_tables(pipeline, writes))]
    if len(mine):
        return as_utc(mine["written_at"].max().to_pydatetime())
    runs = env.runs_of(pipeline.id)
    done = runs[(runs["status"] == "succeeded") & runs["as_of"].notna()]
    done = done[done["as_of"] <= pd.Timestamp(env.as_of)]
    return as_utc(done["as_of"].max().to_pydatetime()) if len(done) else None


def freshness_checks(env: _Env, p: cfgmod.Pipeline) -> list[CheckResult]:
    """Mart freshness and the freshness of each of the pipeline's sources."""
    out = [
        env.result(
            p,
            f"{p.id}.freshness",
            "freshness",
            lambda: freshness_outcome(
                mart_last_update(env, p),
                env.as_of,
                warn_hours=p.sla.freshness_warn_hours,
                critical_hours=p.sla.freshness_critical_hours,
                what=f"{p.id} marts",
            ),
            catalogue_id=catalogue.FRESHNESS.get(p.family, "stale_data"),
        )
    ]
    for source in p.sources:

        def source_outcome(source: str = source) -> Outcome:
            arrived = env.snap.arrivals.get(source)
            cadence = env.config.pipelines.sources.get(source)
            if cadence is not None and cadence.cadence == "monthly":
                return monthly_source_outcome(
                    arrived,
                    env.as_of,
                    due_days=cadence.due_days_after_period,
                    warn_hours=p.sla.freshness_warn_hours,
                    critical_hours=p.sla.freshness_critical_hours,
                    what=f"source {source}",
                )
            last = None
            if arrived is not None and len(arrived):
                last = as_utc(arrived["arrived_at"].max().to_pydatetime())
            return freshness_outcome(
                last,
                env.as_of,
                warn_hours=p.sla.freshness_warn_hours,
                critical_hours=p.sla.freshness_critical_hours,
                what=f"source {source} (latest arrival)",
            )

        out.append(
            env.result(
                p,
                f"{p.id}.source_freshness.{source}",
                "source_freshness",
                source_outcome,
                catalogue_id=catalogue.SOURCE.get(source, catalogue.FRESHNESS.get(p.family, "stale_data")),
            )
        )
    return out


def _counts(writes: pd.DataFrame, table: str) -> dict[str, int]:
    mine = writes[(writes["table_name"] == table) & writes["label"].notna()]
    return {str(k): int(v) for k, v in mine.groupby("label")["row_count"].sum().items()}


def row_count_check(env: _Env, p: cfgmod.Pipeline, table: str, label: str) -> CheckResult:
    """Row count of one partition against its baseline; the catalogue id follows the direction."""
    writes = env.snap.writes

    def outcome() -> Outcome:
        counts = _counts(writes, table)
        if MONTH_LABEL.match(label):
            last_write = writes.loc[
                (writes["table_name"] == table) & (writes["label"] == label), "written_at"
            ].max()
            month_end = dt.datetime.combine(period_days(label)[1] + dt.timedelta(days=1), dt.time(), UTC)
            if as_utc(last_write.to_pydatetime()) < month_end:
                return ok(
                    f"{table} {label}: month in progress, not compared", partition=label, rows=counts[label]
                )
        result = row_count_outcome(
            counts,
            label,
            variance=env.mon.row_count_variance,
            weeks=env.mon.baseline_weeks,
            months=env.mon.baseline_months,
            min_points=env.mon.min_baseline_points,
            what=table,
        )
        return result

    result = env.result(
        p, f"{p.id}.row_count.{table}", "row_count", outcome, partition=label, severity="warning"
    )
    direction = result.evidence.get("direction")
    cause = (catalogue.ROW_DROP if direction == "drop" else catalogue.ROW_RISE).get(p.family)
    if result.failed and cause:
        result = replace(result, catalogue_id=cause, runbook=runbook_path(cause))
    return result


def null_outcome(
    engine: Engine,
    table: str,
    where: Mapping[str, Any],
    columns: Sequence[str],
    *,
    sample_rows: int,
    label: str,
) -> Outcome:
    """Count NULLs in ``columns`` of one partition of ``table``; evidence names columns and rows.

    Inside a runner's run, a partition the run staged is read from its staging table.
    """
    with engine.connect() as conn:
        t = sa.Table(warehouse.partition_table(conn, table, where), sa.MetaData(), autoload_with=conn)
        missing = [c for c in columns if c not in t.c]
        present = [c for c in columns if c in t.c]
        cond = sa.and_(sa.true(), *(t.c[k] == warehouse.partition_value(t.c[k], v) for k, v in where.items()))
        total, *non_null = conn.execute(
            sa.select(sa.func.count(), *(sa.func.count(t.c[c]) for c in present)).where(cond)
        ).one()
        nulls = {c: int(total) - int(n) for c, n in zip(present, non_null, strict=True)}
        samples = {
            c: [
                dict(r)
                for r in conn.execute(
                    sa.select(t).where(cond & t.c[c].is_(None)).limit(sample_rows)
                ).mappings()
            ]
            for c, n in nulls.items()
            if n
        }
    bad = {c: n for c, n in nulls.items() if n}
    evidence = dict(
        table=table,
        partition=label,
        rows=int(total),
        null_counts=nulls,
        missing_columns=missing,
        samples=samples,
    )
    if missing:
        return fail(
            f"{table} {label}: critical column(s) {', '.join(missing)} missing",
            severity="critical",
            **evidence,
        )
    if bad:
        parts = [f"{c} ({n} of {total} rows)" for c, n in bad.items()]
        first = next(iter(samples.values()))[0] if samples else {}
        example = ", ".join(f"{k}={v}" for k, v in list(first.items())[:4])
        return fail(
            f"NULLs in {table} {label}: {'; '.join(parts)}; e.g. row {example}",
            severity="critical",
            **evidence,
        )
    return ok(f"{table} {label}: no NULLs in {', '.join(present)} ({total} rows)", **evidence)


def null_check(env: _Env, p: cfgmod.Pipeline, table: str, label: str, partition_key: str) -> CheckResult:
    """NULLs in the critical columns of one partition."""
    return env.result(
        p,
        f"{p.id}.nulls.{table}",
        "nulls",
        lambda: null_outcome(
            env.engine,
            table,
            json.loads(partition_key),
            p.critical_columns.get(table, ()),
            sample_rows=env.mon.sample_rows,
            label=label,
        ),
        partition=label,
        catalogue_id=catalogue.NULLS.get(p.family),
    )


def _latest_key(writes: pd.DataFrame, table: str, label: str | None = None) -> tuple[str, str] | None:
    mine = writes[(writes["table_name"] == table) & writes["label"].notna()]
    if label is not None:
        mine = mine[mine["label"] == label]
    if not len(mine):
        return None
    row = mine.sort_values(["label", "written_at"]).iloc[-1]
    return str(row["label"]), str(row["partition_key"])


def partition_quality_checks(env: _Env, p: cfgmod.Pipeline, label: str | None = None) -> list[CheckResult]:
    """Row count and NULL checks of each of the pipeline's marts (its latest partition, or ``label``)."""
    out = []
    for table in pipeline_tables(p, env.snap.writes):
        found = _latest_key(env.snap.writes, table, label)
        if found is None:
            continue
        part, key = found
        out.append(row_count_check(env, p, table, part))
        if p.critical_columns.get(table):
            out.append(null_check(env, p, table, part, key))
    return out


def run_status_checks(env: _Env, p: cfgmod.Pipeline) -> list[CheckResult]:
    """The latest run of each recent partition: failed is critical, blocked a warning."""
    runs = env.runs_of(p.id)
    runs = runs[runs["status"] != "skipped"]
    today = env.as_of.date()
    horizon = today - dt.timedelta(days=env.mon.lookback_days)
    out = []
    for label, group in runs.groupby("logical_date", sort=True):
        first, last = period_days(str(label))
        if last < horizon or first > today:
            continue
        latest = group.iloc[-1]
        status = latest["status"]
        if status in ("running", "queued"):
            continue
        evidence = dict(run_id=latest["run_id"], status=status, error=latest["error_summary"])

        def outcome(status: str = status, label: str = str(label), evidence: dict = evidence) -> Outcome:
            if status == "failed":
                return fail(
                    f"{p.id} {label}: latest run failed: {evidence['error']}", severity="critical", **evidence
                )
            if status == "blocked":
                return fail(f"{p.id} {label}: blocked: {evidence['error']}", severity="warning", **evidence)
            return ok(f"{p.id} {label}: latest run {status}", **evidence)

        # The judged run's id is in the evidence; a result's run_id is for checks made inside a run.
        out.append(
            env.result(
                p,
                f"{p.id}.run_status",
                "run_status",
                outcome,
                partition=str(label),
                runbook=GENERAL_RUNBOOKS["run_status"],
            )
        )
    return out


def sla_checks(env: _Env, p: cfgmod.Pipeline) -> list[CheckResult]:
    """Every deadline of the pipeline: freshness SLA, end of week, month-end close, fix deadlines."""
    runs = env.runs_of(p.id)
    return [
        *freshness_sla_checks(env, p, runs),
        *end_of_week_checks(env, p, runs),
        *month_end_close_checks(env, p, runs),
        *fix_deadline_checks(env, p),
    ]


def freshness_sla_checks(env: _Env, p: cfgmod.Pipeline, runs: pd.DataFrame) -> list[CheckResult]:
    """The freshness SLA: the latest update plus ``freshness_critical_hours`` (none before any update)."""
    last = mart_last_update(env, p)
    if last is None:
        return []
    due = last + dt.timedelta(hours=p.sla.freshness_critical_hours)
    return [
        env.result(
            p,
            f"{p.id}.sla.freshness",
            "sla_at_risk",
            lambda: deadline_outcome(
                due,
                env.as_of,
                met=False,
                lead_hours=env.mon.sla_at_risk_hours,
                rescue_expected=rescue_expected(p, runs, env.as_of, due),
                what=f"{p.id} freshness SLA ({p.sla.freshness_critical_hours:g} h)",
                evidence=dict(deadline_kind="freshness", last_update=last),
            ),
            catalogue_id=catalogue.FRESHNESS.get(p.family, "stale_data"),
        )
    ]


def end_of_week_checks(env: _Env, p: cfgmod.Pipeline, runs: pd.DataFrame) -> list[CheckResult]:
    """Last week's and this week's end-of-week deadline (``end_of_week_updates`` pipelines only)."""
    if not p.sla.end_of_week_updates:
        return []
    monthly = p.partition == "month"
    out = []
    for deadline in (
        env.cal.week_deadline(env.as_of - dt.timedelta(days=7)),
        env.cal.week_deadline(env.as_of),
    ):
        day = env.cal.local_date(deadline - dt.timedelta(microseconds=1))
        need = day - dt.timedelta(days=1)
        past = deadline <= env.as_of

        def outcome(deadline: dt.datetime = deadline, need: dt.date = need, past: bool = past) -> Outcome:
            through = covered_through(runs, monthly=monthly, as_of=env.as_of)
            return deadline_outcome(
                deadline,
                env.as_of,
                met=through is not None and through >= need,
                lead_hours=env.mon.sla_at_risk_hours,
                rescue_expected=not past and rescue_expected(p, runs, env.as_of, deadline),
                what=f"{p.id} account statuses updated by end of week",
                evidence=dict(deadline_kind="end_of_week", required_through=need, covered_through=through),
            )

        out.append(
            env.result(
                p,
                f"{p.id}.sla.end_of_week",
                "sla_at_risk",
                outcome,
                partition=day.isoformat(),
                catalogue_id="late_account_updates",
            )
        )
    return out


def month_end_close_checks(env: _Env, p: cfgmod.Pipeline, runs: pd.DataFrame) -> list[CheckResult]:
    """The close of the month being closed, and of the month before while its deadline is past.

    Only for pipelines that feed the investors with ``month_end_heightened``.
    """
    if p.feeds not in ("investors", "investor report") or not p.sla.month_end_heightened:
        return []
    monthly = p.partition == "month"
    close = env.config.pipelines.close
    period, deadline, heightened = businesscal.close_window(
        env.cal,
        env.as_of,
        report_final_business_days=close.report_final_business_days,
        heightened_from_days_before_month_end=close.heightened_from_days_before_month_end,
    )
    closes = [(period, deadline)]
    previous = previous_month(period)
    prev_deadline = env.cal.close_deadline(previous, close.report_final_business_days)
    if prev_deadline <= env.as_of:
        closes.insert(0, (previous, prev_deadline))
    out = []
    for label, due in closes:

        def close_outcome(label: str = label, due: dt.datetime = due) -> Outcome:
            through = covered_through(runs, monthly=monthly, as_of=env.as_of)
            need = period_days(label)[1]
            return deadline_outcome(
                due,
                env.as_of,
                met=through is not None and through >= need,
                lead_hours=env.mon.sla_at_risk_hours,
                rescue_expected=False,
                what=f"{p.id} month-end close {label}",
                evidence=dict(
                    deadline_kind="month_end_close",
                    required_through=need,
                    covered_through=through,
                    heightened=heightened and label == period,
                ),
            )

        out.append(
            env.result(
                p,
                f"{p.id}.sla.month_end_close",
                "sla_at_risk",
                close_outcome,
                partition=label,
                runbook=GENERAL_RUNBOOKS["month_end_close"],
            )
        )
    return out


def fix_deadline_checks(env: _Env, p: cfgmod.Pipeline) -> list[CheckResult]:
    """Each open problem's fix deadline (alerts and their incidents, from the snapshot)."""
    out = []
    for item in env.snap.deadlines:
        if item.pipeline != p.id:
            continue

        def fix_outcome(item: FixDeadline = item) -> Outcome:
            resolved = item.resolved_at is not None and item.resolved_at <= env.as_of
            return deadline_outcome(
                item.fix_deadline,
                env.as_of,
                met=resolved,
                lead_hours=env.mon.sla_at_risk_hours,
                rescue_expected=False,
                what=f"fix of alert {item.alert_id} ({item.check_id} {item.partition})",
                evidence=dict(
                    deadline_kind="fix_deadline",
                    alert_id=int(item.alert_id) if item.alert_id.isdigit() else item.alert_id,
                    opened_at=item.opened_at,
                ),
            )

        out.append(
            env.result(
                p,
                f"{p.id}.sla.fix_deadline.{item.alert_id}",
                "sla_at_risk",
                fix_outcome,
                partition=item.partition,
                severity=item.severity,
                catalogue_id=item.catalogue_id,
                runbook=item.runbook or GENERAL_RUNBOOKS["fix_deadline"],
            )
        )
    return out


def upstream_checks(env: _Env, p: cfgmod.Pipeline, so_far: Sequence[CheckResult]) -> list[CheckResult]:
    """One check per upstream: late if any of its lateness checks in ``so_far`` failed."""
    out = []
    for up in p.depends_on:
        late = [
            r
            for r in so_far
            if r.pipeline == up
            and r.failed
            and r.kind in LATE_KINDS
            # an open problem's fix deadline is not the upstream's data being late
            and r.evidence.get("deadline_kind") != "fix_deadline"
        ]

        def outcome(up: str = up, late: list[CheckResult] = late) -> Outcome:
            if not late:
                return ok(f"upstream {up} is on time")
            severity: Severity = "critical" if any(r.severity == "critical" for r in late) else "warning"
            return fail(
                f"upstream {up} is late, putting {p.id}'s SLAs at risk: {late[0].summary}",
                severity=severity,
                upstream=up,
                upstream_checks=[
                    {"check_id": r.check_id, "partition": r.partition, "summary": r.summary} for r in late
                ],
            )

        out.append(
            env.result(
                p,
                f"{p.id}.upstream_at_risk.{up}",
                "upstream_at_risk",
                outcome,
                catalogue_id="upstream_missing",
            )
        )
    return out


# ---------------------------------------------------------------- entry points


def _env(
    as_of: dt.datetime,
    config: cfgmod.WorkbookConfig,
    engine: Engine,
    now: dt.datetime | None,
    pipelines: Iterable[str],
) -> _Env:
    sources = {s for pid in pipelines for s in config.pipelines.pipelines[pid].sources}
    snap = load_snapshot(as_of, sources=sources, engine=engine)
    cal = businesscal.BusinessCalendar.from_team(config.team)
    return _Env(config, cal, snap, engine, as_utc(now) if now else as_utc(as_of))


def evaluate_monitors(
    as_of: dt.datetime,
    *,
    pipelines: Sequence[str] | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    now: dt.datetime | None = None,
    engine: Engine | None = None,
) -> list[CheckResult]:
    """Evaluate every monitor for ``pipelines`` (default all) and their upstreams; nothing stored.

    Upstreams are evaluated too because "upstream at risk" needs their state.
    """
    config = config or cfgmod.get()
    engine = engine or get_engine()
    graph = Dag.from_config(config.pipelines)
    chosen = graph.order(pipelines) if pipelines else graph.order()
    with_ups = graph.order({a for p in chosen for a in graph.ancestors(p)} | set(chosen))
    env = _env(as_of, config, engine, now, with_ups)
    results: list[CheckResult] = []
    for pid in with_ups:
        p = config.pipelines.pipelines[pid]
        results += freshness_checks(env, p)
        results += partition_quality_checks(env, p)
        results += run_status_checks(env, p)
        results += sla_checks(env, p)
        results += upstream_checks(env, p, results)
    return results + slots_dropped_results(as_of, pipelines=with_ups, config=config, now=now, engine=engine)


def partition_checks(
    pipeline: str,
    partition: str,
    *,
    as_of: dt.datetime,
    config: cfgmod.WorkbookConfig | None = None,
    now: dt.datetime | None = None,
    engine: Engine | None = None,
) -> list[CheckResult]:
    """Row-count and NULL checks of one partition of a pipeline's marts (run by ``run_checks``)."""
    config = config or cfgmod.get()
    engine = engine or get_engine()
    env = _env(as_of, config, engine, now, ())
    return partition_quality_checks(env, config.pipelines.get(pipeline), partition)

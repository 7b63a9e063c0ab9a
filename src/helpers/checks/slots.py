"""The scheduler's dropped slots as checks: an alert per partition a catch-up left out, until a run covers it.

A tick after an outage longer than ``runner.catch_up_days`` records the slots it cannot catch up
as ``dropped`` in ``scheduled_slots`` (:mod:`helpers.runs.scheduler`). The check
``<pipeline>.slots_dropped``, per partition, fails (a warning) while no succeeded run of that
partition has an ``as_of`` at or after the dropped slot's fire time, naming the slots and the
``workbook backfill`` that repairs it; it passes, and the alert resolves, once such a run exists.
Drops recorded by ticks in the last ``monitors.lookback_days`` are evaluated.

The monitors (``monitors.evaluate_monitors``: every scheduler tick, ``workbook checks``,
``workbook tick``, the close, Verify) evaluate :func:`slots_dropped_results`, so the tick that drops a
slot also diagnoses and escalates its alert. :func:`evaluate_slots_dropped` evaluates these checks
alone (store and sync), for callers that want only them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from sqlalchemy.engine import Engine

from helpers.checks import store
from helpers.checks.framework import Check, CheckContext, CheckResult, Outcome, evaluate, fail, ok
from helpers.core import config as cfgmod
from helpers.core.catalogue import GENERAL_RUNBOOKS
from helpers.core.periods import period_days
from helpers.core.timeutil import as_utc
from helpers.runs import scheduler
from helpers.storage.warehouse import get_engine

KIND = "slots_dropped"


def backfill_command(pipeline: str, partition: str) -> str:
    """The command that runs a dropped partition."""
    first, last = period_days(partition)
    return f"workbook backfill {pipeline} --from {first} --to {last}"


def slot_outcome(
    pipeline: str, partition: str, rows: Sequence[Mapping[str, Any]], covered: str | None
) -> Outcome:
    """Pass when run ``covered`` ran the partition after its dropped slots fired; else a warning."""
    fired = [r["scheduled_for"] for r in rows]
    evidence = {
        "slots": [f"{t:%Y-%m-%dT%H:%MZ}" for t in fired],
        "reason": rows[-1]["reason"],
        "backfill": backfill_command(pipeline, partition),
    }
    if covered is not None:
        return ok(
            f"{pipeline} {partition}: dropped slot(s) covered by run {covered}", run_id=covered, **evidence
        )
    when = f"fired {fired[0]:%Y-%m-%d %H:%M}Z" + (
        f" .. {fired[-1]:%Y-%m-%d %H:%M}Z" if len(fired) > 1 else ""
    )
    return fail(
        f"{pipeline} {partition}: {len(fired)} scheduled run(s) dropped by the scheduler ({when}; "
        f"{rows[-1]['reason']}); nothing has run it since: {evidence['backfill']}",
        **evidence,
    )


def slots_dropped_results(
    as_of: dt.datetime,
    *,
    pipelines: Sequence[str] | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    now: dt.datetime | None = None,
    engine: Engine | None = None,
) -> list[CheckResult]:
    """One ``<pipeline>.slots_dropped`` result per pipeline partition with recent dropped slots."""
    config = config or cfgmod.get()
    engine = engine or get_engine()
    as_of = as_utc(as_of)
    since = as_of - dt.timedelta(days=config.pipelines.monitors.lookback_days)
    rows = scheduler.list_dropped(since=since, until=as_of, pipelines=pipelines, engine=engine)
    known = config.pipelines.pipelines
    out: list[CheckResult] = []
    by_key = sorted(
        (r for r in rows if r["pipeline"] in known), key=lambda r: (r["pipeline"], r["logical_date"])
    )
    for (pipeline, partition), group in groupby(by_key, key=lambda r: (r["pipeline"], r["logical_date"])):
        slots = sorted(group, key=lambda r: r["scheduled_for"])
        covered = scheduler.covering_run(pipeline, partition, slots[-1]["scheduled_for"], engine=engine)
        outcome = slot_outcome(pipeline, partition, slots, covered)
        check = Check(
            id=f"{pipeline}.{KIND}",
            pipeline=pipeline,
            fn=lambda _ctx, outcome=outcome: outcome,
            severity="warning",
            runbook=GENERAL_RUNBOOKS["run_status"],  # backfill: missing runs of a partition
            kind=KIND,
            description="scheduled runs the scheduler dropped (older than runner.catch_up_days)",
        )
        out.append(evaluate(check, CheckContext(pipeline, partition, as_of), evaluated_at=now or as_of))
    return out


def evaluate_slots_dropped(
    *,
    as_of: dt.datetime,
    now: dt.datetime | None = None,
    pipelines: Sequence[str] | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
) -> tuple[list[CheckResult], list[Any]]:
    """Evaluate the dropped-slot checks, store the results and open, update or resolve their alerts
    (a tick hook: ``hook(as_of=, now=, pipelines=, config=)``)."""
    from helpers.oncall import alerts as alertsmod  # above this package: imported where it is used

    results = slots_dropped_results(as_of, pipelines=pipelines, config=config, now=now, engine=engine)
    store.record_results(results, engine=engine)
    return results, alertsmod.sync(results, config=config, engine=engine)

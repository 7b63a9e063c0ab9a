"""The close's runs in waves: which to run, skip or re-run, for the month and its trailing months.

A close runs its pipelines in two waves (``helpers.investor.close``): *A* ``profit_aggregate``,
``growth_aggregate`` and ``profit_unit``; *B* ``engagement_aggregate`` (Engagement's per-account join
reads ``profit_unit_monthly`` and ``growth_accounts_monthly`` without declaring them in
``depends_on``, hence after A) and ``investor_aggregate``. :func:`run_wave` runs a wave's items through
``orchestrate.run_items`` and skips the rest:

- *the month's own items*: skipped when their partition's latest run succeeded at the same
  ``as_of`` and started after what it reads last succeeded (:func:`stale_reason`), so a second close
  at the same ``as_of`` only re-evaluates and re-renders and a close after a failure re-runs what
  failed and what depends on it;
- *the trailing months' items* (``history``): any ``as_of`` will do, so a month built once is never
  rebuilt, unless what it reads re-ran after it (:func:`build_history`, :mod:`helpers.investor.history`);
- an item on a locked (published) partition is always skipped (``helpers.runs.locks``).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from helpers.core import config as cfgmod
from helpers.core.timeutil import as_utc
from helpers.investor import history as trailing
from helpers.investor.inputs import latest_run
from helpers.investor.metrics import UPSTREAMS
from helpers.runs import locks
from helpers.runs import records as runs
from helpers.runs.dag import RunItem
from helpers.storage import warehouse

WAVE_A = ("profit_aggregate", "growth_aggregate", "profit_unit")
WAVE_B = ("engagement_aggregate", "investor_aggregate")
# Upstreams that gate a re-run ("stale" when one of them succeeded after the dependant started):
# the declared ones, plus Engagement's reads of profit_unit and growth_aggregate marts.
READS: dict[str, tuple[str, ...]] = {
    "profit_unit": ("profit_aggregate",),
    "engagement_aggregate": ("profit_unit", "growth_aggregate"),
    "investor_aggregate": UPSTREAMS,
}

Clock = Callable[[], dt.datetime]


def stale_reason(pipeline: str, partition: str, parts: Mapping[str, str], *,
                 engine: sa.Engine | None = None) -> str | None:  # fmt: skip
    """Why ``pipeline``'s latest success is older than what it reads (None: up to date)."""
    mine = runs.list_runs(
        pipeline=pipeline, logical_date=partition, status="succeeded", limit=1, engine=engine
    )
    if not mine or mine[0].started_at is None:
        return None
    later = []
    for up in READS.get(pipeline, ()):
        found = runs.list_runs(
            pipeline=up, logical_date=parts[up], status="succeeded", limit=1, engine=engine
        )
        if found and found[0].finished_at is not None and found[0].finished_at > mine[0].started_at:
            later.append(f"{up} {parts[up]} (run {found[0].run_id})")
    return f"upstream(s) re-ran after it: {', '.join(later)}" if later else None


def item_parts(item: RunItem) -> dict[str, str]:
    """The partitions of the month ``item`` belongs to (a trailing month: Engagement on its last day)."""
    return trailing.month_partitions(item.reference_day.strftime("%Y-%m"), (*WAVE_A, *WAVE_B))


def needs_run(item: RunItem, as_of: dt.datetime, parts: Mapping[str, str], *, history: bool,
              engine: sa.Engine) -> str | None:  # fmt: skip
    """Why ``item`` must run (None: its latest run is good enough, so the close skips it).

    ``history``: a trailing month's item; any ``as_of`` will do, but not a success older than what it reads.
    """
    run = latest_run(item.pipeline, item.partition, engine=engine)
    if not run.succeeded:
        return "no succeeded run" if run.status is None else f"latest run {run.status}"
    if history:
        return stale_reason(item.pipeline, item.partition, item_parts(item), engine=engine)
    if run.as_of is None or as_utc(run.as_of) != as_utc(as_of):
        return f"latest success was as of {run.as_of.isoformat() if run.as_of else '?'}"
    return stale_reason(item.pipeline, item.partition, parts, engine=engine) or changed_landing(
        item.pipeline, item.partition, as_of
    )


def changed_landing(pipeline: str, partition: str, as_of: dt.datetime) -> str | None:
    """Why a success can't be trusted because a landing file of its month changed after arrival
    (None: every delivery of the month it read still hashes to its manifest's SHA-256).

    The run's own read quarantines such a delivery and fails its ``landing_integrity`` check; a file
    changed *after* the run is caught here, so the close re-runs it instead of skipping it.
    """
    from helpers.investor.explain import READS
    from helpers.storage import landing

    month = partition[:7]
    for source in READS.get(pipeline, ()):
        for d in landing.deliveries(source, as_of=as_of):
            if d.partition[:7] == month and (why := landing.verify_delivery(d)):
                return why
    return None


def skip_outcome(item: RunItem, reason: str) -> Any:
    """The outcome reported for a run the close did not need (its latest success's id)."""
    from helpers.runs.orchestrate import Outcome

    found = runs.list_runs(pipeline=item.pipeline, logical_date=item.partition, status="succeeded", limit=1)
    return Outcome(item.pipeline, item.partition, "skipped", found[0].run_id if found else None, reason)


def run_wave(
    items: Sequence[RunItem],
    *,
    as_of: dt.datetime,
    parts: Mapping[str, str],
    history: bool,
    clock: Clock,
    config: cfgmod.WorkbookConfig,
    workers: int | None,
    on_update: Callable[[Any], None],
    stop: threading.Event | None,
) -> list[Any]:
    """Run the items that need it (:func:`needs_run`) through ``orchestrate.run_items``; skip the rest.

    An item that reads one of the wave's re-runs (of its own month) re-runs too (its run would be
    stale right after); an item on a locked partition is skipped (``helpers.runs.locks``).
    """
    from helpers.runs import orchestrate

    engine = warehouse.get_engine()
    todo: list[RunItem] = []
    done = []
    for it in items:
        lock = locks.find_lock(locks.PIPELINE, it.pipeline, it.partition, engine=engine)
        why = None if lock else needs_run(it, as_of, parts, history=history, engine=engine)
        mine = item_parts(it) if history else parts
        reads = {(up, mine[up]) for up in READS.get(it.pipeline, ())}
        if why is None and not lock and any((t.pipeline, t.partition) in reads for t in todo):
            why = "an upstream re-runs"
        if why is None:
            outcome = skip_outcome(it, lock.describe() if lock else "up to date")
            on_update(outcome)
            done.append(outcome)
        else:
            todo.append(it)
    if todo:
        done += orchestrate.run_items(todo, clock=clock, as_of=as_of, config=config, workers=workers,
                                      trigger="close", on_update=on_update, stop=stop)  # fmt: skip
    return done


def build_history(period: str, months: int, wave: Mapping[str, Any]) -> tuple[trailing.History, list[Any]]:
    """Build the missing investor figures of the ``months`` before ``period`` in waves A then B.

    ``wave``: :func:`run_wave`'s keyword arguments but ``parts`` and ``history``. Returns the
    trailing months as they stand after it (:func:`helpers.investor.history.settle`) and the outcomes.
    """
    config = wave["config"]
    plan = trailing.plan_history(period, months, wave["as_of"], pipelines=(*WAVE_A, *WAVE_B), config=config)
    outcomes: list[Any] = []
    for names in (WAVE_A, WAVE_B):
        items = trailing.items(plan, names, config)
        if items:
            outcomes += run_wave(items, parts={}, history=True, **wave)
    return trailing.settle(plan, outcomes), outcomes

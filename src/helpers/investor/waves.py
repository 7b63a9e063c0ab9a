"""The close's runs: which to run, skip or re-run, for the month and its trailing months, and in what order.

A close runs five pipelines per month (``helpers.investor.close``): ``profit_aggregate``,
``growth_aggregate`` and ``profit_unit`` (:data:`WAVE_A`), then ``engagement_aggregate`` (its
per-account join reads ``profit_unit_monthly`` and ``growth_accounts_monthly`` without declaring
them in ``depends_on``: :data:`READS`) and ``investor_aggregate`` (:data:`WAVE_B`).
:func:`build_waves` plans the month's own items and the trailing months' (:func:`plan_wave`) and
runs the ones that need it in one ``orchestrate.run_items`` call, Engagement after what it reads
and after the month before it (:func:`engagement_order`); it skips the rest:

- *the month's own items*: skipped when their partition's latest run succeeded at the same
  ``as_of`` and started after what it reads last succeeded (:func:`stale_reason`), so a second close
  at the same ``as_of`` only re-evaluates and re-renders and a close after a failure re-runs what
  failed and what depends on it;
- *the trailing months' items* (``history``): any ``as_of`` will do, so a month built once is never
  rebuilt, unless what it reads re-ran after it (:mod:`helpers.investor.history`);
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


def plan_wave(
    items: Sequence[RunItem],
    *,
    as_of: dt.datetime,
    parts: Mapping[str, str],
    history: bool,
    on_update: Callable[[Any], None],
    engine: sa.Engine,
) -> tuple[list[RunItem], list[Any]]:
    """The items that need a run (:func:`needs_run`), and the outcomes of those skipped.

    An item that reads one of the wave's re-runs (of its own month) re-runs too (its run would be
    stale right after); an item on a locked partition is skipped (``helpers.runs.locks``).
    """
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
    return todo, done


Group = tuple[Sequence[RunItem], Mapping[str, str], bool]  # items, their month's partitions, history


def run_waves(
    groups: Sequence[Group],
    *,
    as_of: dt.datetime,
    clock: Clock,
    config: cfgmod.WorkbookConfig,
    workers: int | None,
    on_update: Callable[[Any], None],
    stop: threading.Event | None,
    after: Mapping[tuple[str, str], Sequence[tuple[str, str]]] | None = None,
) -> list[list[Any]]:
    """Plan each group (:func:`plan_wave`: the month's own items, or the trailing months' with
    ``history``), then run what they need in one ``orchestrate.run_items`` call (``after``: its
    ordering edges), so the runs of both keep the workers busy; each group's outcomes, in its
    items' order."""
    from helpers.runs import orchestrate

    engine = warehouse.get_engine()
    planned = [plan_wave(items, as_of=as_of, parts=parts, history=history, on_update=on_update, engine=engine)
               for items, parts, history in groups]  # fmt: skip
    todo = [it for group_todo, _skipped in planned for it in group_todo]
    ran = {}
    if todo:
        got = orchestrate.run_items(todo, clock=clock, as_of=as_of, config=config, workers=workers,
                                    trigger="close", on_update=on_update, stop=stop, after=after)  # fmt: skip
        ran = {(o.pipeline, o.partition): o for o in got}
    out = []
    for (items, _parts, _history), (_todo, skipped) in zip(groups, planned, strict=True):
        by_key = {(o.pipeline, o.partition): o for o in skipped} | ran
        out.append([by_key[(it.pipeline, it.partition)] for it in items])
    return out


def run_wave(items: Sequence[RunItem], *, parts: Mapping[str, str], history: bool, **wave: Any) -> list[Any]:
    """:func:`run_waves` of one group: ``items`` (of the month ``parts``; or trailing months: ``history``)."""
    return run_waves([(items, parts, history)], **wave)[0]


ENGAGEMENT = "engagement_aggregate"


def engagement_order(groups: Sequence[Group]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The ordering edges of a close's runs: Engagement of a month after the marts it reads
    (:data:`READS`: unit Profit and Growth of its month), and every Engagement month after the
    oldest one. That one reads every ``events`` delivery since its window and keeps their spans
    (``helpers.engagement.spans``), so the later months read only their own deliveries; run side
    by side with it, another month would read them all too."""
    found = []
    for items, parts, history in groups:
        for it in items:
            if it.pipeline == ENGAGEMENT:
                mine = item_parts(it) if history else parts
                found.append((it.reference_day, it, [(up, mine[up]) for up in READS[ENGAGEMENT]]))
    found.sort(key=lambda f: (f[0], f[1].partition))
    order: dict[tuple[str, str], list[tuple[str, str]]] = {}
    first = (found[0][1].pipeline, found[0][1].partition) if found else None
    for _day, it, reads in found:
        key = (it.pipeline, it.partition)
        order[key] = reads + ([first] if first and first != key else [])
    return order


def build_waves(period: str, own: Sequence[RunItem], parts: Mapping[str, str], months: int,
                wave: Mapping[str, Any]) -> tuple[list[Any], trailing.History, list[Any]]:  # fmt: skip
    """The close's runs: the month's own items (``own``, of its partitions ``parts``) and those of
    the missing investor figures of the ``months`` before ``period``, in one call of ordering
    edges (:func:`engagement_order`) instead of wave A then wave B, so that no wave waits for the
    last run of the one before.

    ``wave``: :func:`run_waves`' keyword arguments. Returns the month's outcomes, the trailing
    months as they stand after it (:func:`helpers.investor.history.settle`) and their outcomes.
    """
    config = wave["config"]
    plan = trailing.plan_history(period, months, wave["as_of"], pipelines=(*WAVE_A, *WAVE_B), config=config)
    past = [*trailing.items(plan, WAVE_A, config), *trailing.items(plan, WAVE_B, config)]
    groups: list[Group] = [(own, parts, False), (past, {}, True)]
    mine, built = run_waves(groups, after=engagement_order(groups), **wave)
    return mine, trailing.settle(plan, built), built

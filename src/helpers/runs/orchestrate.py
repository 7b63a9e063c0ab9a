"""Run many pipelines in dependency order: ``run-all`` for a date, ``backfill`` over a range.

Gating (docs/architecture.md): a pipeline runs only if each upstream's latest run for the matching
partition succeeded; otherwise it is recorded ``blocked`` with the reason (``records.record_outcome``)
and not run, and its own dependants are then blocked in turn. ``skipped`` records are ignored
when looking for an upstream's latest run: they mean "nothing was done", not "it is broken".

Independent pipelines run in parallel on a thread pool (``runner.workers``): each run executes in
its own kernel process, so threads only wait on papermill. Progress is reported through an
``on_update`` callback, always called from the calling thread.

Backfill runs each partition in order and skips those whose latest run succeeded (unless
``force``), so an interrupted backfill resumes where it stopped: the run that was cut off is
either marked failed by the runner (SIGTERM/SIGINT) or detected as dead by the run lock (SIGKILL),
and is re-run. With ``downstream`` the dependants of the range are brought up to date: every
dependant partition that has no succeeded run, or whose latest run started before one of its
upstreams' latest success finished, is re-run. That covers "re-run the dependants of every date
that changed" and keeps an interrupted ``--downstream`` backfill resumable too.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from typing import Any

from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_BLOCKED, EXIT_CONFLICT, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, UsageError
from helpers.core.periods import period_days
from helpers.runs import dag as dagmod
from helpers.runs import locks, runner
from helpers.runs import records as runs
from helpers.runs.dag import Dag, RunItem, UpstreamState
from helpers.runs.records import RunRecord
from helpers.runs.runner import Clock
from helpers.storage.warehouse import get_engine

# States an item goes through; the last seven are final. "conflict": the same pipeline and
# partition was already running elsewhere (nothing recorded: that run is the record);
# "locked": the partition belongs to a published month and was refused before it started (nothing
# recorded: the published run stays the record); "cancelled": never started because the
# orchestrator was asked to stop.
PENDING, RUNNING = "pending", "running"
FINAL_STATES = ("succeeded", "failed", "blocked", "skipped", "conflict", "locked", "cancelled")


@dataclass(frozen=True)
class Outcome:
    """Where one item stands: its state, run id and reason (error or why blocked/skipped)."""

    pipeline: str
    partition: str
    status: str
    run_id: str | None = None
    reason: str | None = None
    archive: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


OnUpdate = Callable[[Outcome], None]


def _ignore(_outcome: Outcome) -> None:
    return None


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """1 if anything failed, else 5 if a published month refused a run, else 3 if anything was
    blocked, else 4 on a conflict, else 0."""
    statuses = {o.status for o in outcomes}
    if "failed" in statuses:
        return EXIT_FAILED
    if "locked" in statuses:
        return EXIT_LOCKED
    if "blocked" in statuses:
        return EXIT_BLOCKED
    if "conflict" in statuses:
        return EXIT_CONFLICT
    return EXIT_OK


# ---------------------------------------------------------------- run records


def latest_effective_run(pipeline: str, partition: str) -> RunRecord | None:
    """The latest run of a partition, ignoring ``skipped`` records."""
    for record in runs.list_runs(pipeline=pipeline, logical_date=partition, limit=20):
        if record.status != "skipped":
            return record
    return None


def latest_success(pipeline: str, partition: str) -> RunRecord | None:
    """The latest succeeded run of a partition."""
    found = runs.list_runs(pipeline=pipeline, logical_date=partition, status="succeeded", limit=1)
    return found[0] if found else None


def upstream_state(pipeline: str, partition: str) -> UpstreamState:
    """What gating needs to know about an upstream partition, from its latest effective run."""
    record = latest_effective_run(pipeline, partition)
    if record is None:
        return UpstreamState(pipeline, partition, None)
    return UpstreamState(pipeline, partition, record.status, record.run_id, record.error_summary)


# ---------------------------------------------------------------- one item


def _execute(
    item: RunItem,
    *,
    clock: Clock,
    as_of: dt.datetime | None,
    trigger: str,
    config: cfgmod.WorkbookConfig,
) -> Outcome:
    """Run one item; never raises for a failed notebook, a conflict, a locked month or a bad notebook path."""
    try:
        result = runner.run_pipeline(
            item.pipeline, item.partition, clock=clock, as_of=as_of, trigger=trigger, config=config
        )
    except runs.RunConflict as e:
        return Outcome(item.pipeline, item.partition, "conflict", e.existing.get("run_id"), str(e))
    except locks.PartitionLocked as e:
        return Outcome(item.pipeline, item.partition, "locked", None, str(e))
    except (UsageError, cfgmod.ConfigError) as e:
        # It never started (e.g. its notebook is missing): record it, so monitors and `runs` see it.
        reason = f"could not start: {e}"
        run_id = runs.record_outcome(
            item.pipeline, item.partition, status="failed", now=clock(), reason=reason, as_of=as_of,
            trigger=trigger,
        )  # fmt: skip
        return Outcome(item.pipeline, item.partition, "failed", run_id, reason)
    except Exception as e:  # the runner recorded the run as failed before re-raising
        return Outcome(item.pipeline, item.partition, "failed", None, f"{type(e).__name__}: {e}")
    return Outcome(
        item.pipeline,
        item.partition,
        result.status,
        result.run_id,
        result.error,
        str(result.archive) if result.archive else None,
    )


def _block(item: RunItem, reason: str, *, clock: Clock, as_of: dt.datetime | None, trigger: str) -> Outcome:
    run_id = runs.record_outcome(
        item.pipeline, item.partition, status="blocked", now=clock(), reason=reason, as_of=as_of,
        trigger=trigger,
    )  # fmt: skip
    return Outcome(item.pipeline, item.partition, "blocked", run_id, reason)


# ---------------------------------------------------------------- many items


def run_items(
    items: Sequence[RunItem],
    *,
    clock: Clock,
    as_of: dt.datetime | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    workers: int | None = None,
    trigger: str = "run-all",
    on_update: OnUpdate = _ignore,
    stop: threading.Event | None = None,
    after: Mapping[tuple[str, str], Sequence[tuple[str, str]]] | None = None,
) -> list[Outcome]:
    """Run ``items`` in dependency order, independent ones in parallel; returns final outcomes.

    A worker that frees up takes the first item that is ready, the critical path first
    (:func:`_in_order`). An item waits for the items of this call it depends on (same upstream pipeline, the upstream's
    partition of the item's reference day); upstreams outside the call are judged by their run
    records. ``after``: (pipeline, partition) -> more items of this call it starts after, for
    their order only (how they ended does not block it). Once ``stop`` is set no new item starts:
    running ones finish, the rest are ``cancelled``.
    """
    config = config or cfgmod.get()
    # Create the engine (and the tables) here, once: get_engine is not safe to race from threads.
    get_engine()
    graph = Dag.from_config(config.pipelines)
    pipes = config.pipelines.pipelines
    by_key = {(it.pipeline, it.partition): it for it in items}

    def upstream_keys(it: RunItem) -> list[tuple[str, str]]:
        return [(u, dagmod.partition_for(pipes[u], it.reference_day)) for u in graph.upstreams(it.pipeline)]

    waits = {k: [*upstream_keys(it), *(after or {}).get(k, ())] for k, it in by_key.items()}
    todo, listed = _in_order(list(by_key.values()), graph, waits)
    done: dict[tuple[str, str], Outcome] = {}
    for it in listed:
        on_update(Outcome(it.pipeline, it.partition, PENDING))
    pending = list(todo)
    running: dict[Future[Outcome], RunItem] = {}
    workers = workers or config.pipelines.runner.workers
    with runner.warm_kernels(len(todo), spares=workers), ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or running:
            progressed = False
            for it in list(pending):
                keys = upstream_keys(it)
                waits = [*keys, *(after or {}).get((it.pipeline, it.partition), ())]
                if any(k in by_key and k not in done for k in waits):
                    continue  # an upstream (or an item it runs after) of this call has not finished yet
                if len(running) >= workers and not (stop is not None and stop.is_set()):
                    break  # every worker busy: the next free one takes the first item ready then
                pending.remove(it)
                progressed = True
                if stop is not None and stop.is_set():
                    outcome = Outcome(it.pipeline, it.partition, "cancelled", reason="stopped before start")
                else:
                    states = [
                        _state_from(done[k]) if k in done else upstream_state(*k)
                        for k in keys  # fmt: skip
                    ]
                    reason = dagmod.blocked_reason(states)
                    if reason is None:
                        future = pool.submit(
                            _execute, it, clock=clock, as_of=as_of, trigger=trigger, config=config
                        )
                        running[future] = it
                        on_update(Outcome(it.pipeline, it.partition, RUNNING))
                        continue
                    outcome = _block(it, reason, clock=clock, as_of=as_of, trigger=trigger)
                done[(it.pipeline, it.partition)] = outcome
                on_update(outcome)
            if running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    it = running.pop(future)
                    outcome = future.result()
                    done[(it.pipeline, it.partition)] = outcome
                    on_update(outcome)
            elif pending and not progressed:  # cannot happen with an acyclic graph; never spin
                raise RuntimeError(f"run_items: no progress possible for {pending}")
    return [done[(it.pipeline, it.partition)] for it in listed]


def _in_order(
    items: list[RunItem], graph: Dag, waits: Mapping[tuple[str, str], Sequence[tuple[str, str]]]
) -> tuple[list[RunItem], list[RunItem]]:
    """``items`` in the order workers take them (:func:`run_items`) and in the order they are
    listed (reference day, then the DAG's order).

    Workers take those with the longest chain of items waiting on them first (``waits``: item ->
    what it waits for; in a close: all months' Profit before their unit Profit, Engagement and
    investor aggregates), then as listed. So the runs left at the end are the short ones at the
    chains' ends, which keep both workers busy, rather than a last month's whole chain run one
    after the other (a first close with its trailing months: about 2 s less of 60,
    ``benchmarks/bench_close.py``).
    """
    rank = {p: i for i, p in enumerate(graph.order())}
    chain = _chain_lengths({(it.pipeline, it.partition): it for it in items}, waits)
    listed = sorted(items, key=lambda it: (it.reference_day, rank[it.pipeline], it.partition))
    taken = sorted(listed, key=lambda it: -chain[(it.pipeline, it.partition)])  # stable: ties as listed
    return taken, listed


def _chain_lengths(
    items: Mapping[tuple[str, str], RunItem], waits: Mapping[tuple[str, str], Sequence[tuple[str, str]]]
) -> dict[tuple[str, str], int]:
    """Per item: how many items of the longest chain from it to the end (itself included), the
    chains following ``waits`` (item -> what it waits for) within ``items``."""
    after: dict[tuple[str, str], list[tuple[str, str]]] = {k: [] for k in items}
    for k, ws in waits.items():
        for w in ws:
            if w in after and w != k:
                after[w].append(k)
    length: dict[tuple[str, str], int] = {}
    for start in items:  # iteratively, in depth-first post-order (no recursion limit)
        stack = [(start, False)]
        while stack:
            k, expanded = stack.pop()
            if k in length:
                continue
            if expanded:
                length[k] = 1 + max((length.get(n, 0) for n in after[k]), default=0)
                continue
            stack.append((k, True))
            stack.extend((n, False) for n in after[k] if n not in length)
    return length


def _state_from(outcome: Outcome) -> UpstreamState:
    if outcome.status == "locked":  # refused, nothing ran: the published run still stands
        return upstream_state(outcome.pipeline, outcome.partition)
    # A conflict means another process is running that partition right now.
    status = "running" if outcome.status == "conflict" else outcome.status
    return UpstreamState(outcome.pipeline, outcome.partition, status, outcome.run_id, outcome.reason)


def run_all(
    day: dt.date,
    *,
    clock: Clock,
    as_of: dt.datetime | None = None,
    pipelines: Sequence[str] | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    workers: int | None = None,
    trigger: str = "run-all",
    on_update: OnUpdate = _ignore,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Every pipeline (or ``pipelines``) for the partition holding ``day``, in dependency order.

    Monthly pipelines run the month of ``day`` (month-to-date when ``day`` is mid-month). An
    ``as_of`` before a partition begins is refused (:class:`UsageError`) before anything runs.
    """
    config = config or cfgmod.get()
    chosen = _choose(config, pipelines)
    items = [dagmod.run_item(config.pipelines.pipelines[p], day) for p in chosen]
    _check_as_of(items, as_of)
    return run_items(
        items,
        clock=clock,
        as_of=as_of,
        config=config,
        workers=workers,
        trigger=trigger,
        on_update=on_update,
        stop=stop,
    )


def _check_as_of(items: Sequence[RunItem], as_of: dt.datetime | None) -> None:
    """Refuse (:class:`UsageError`) an ``as_of`` before a partition of ``items`` begins, before any run."""
    if as_of is not None:
        for it in items:
            runner.check_as_of(it.pipeline, it.partition, as_of)


def _choose(config: cfgmod.WorkbookConfig, pipelines: Sequence[str] | None) -> list[str]:
    if not pipelines:
        return Dag.from_config(config.pipelines).order()
    for p in pipelines:
        try:
            config.pipelines.get(p)
        except cfgmod.ConfigError as e:
            raise UsageError(str(e)) from None
    return Dag.from_config(config.pipelines).order(pipelines)


# ---------------------------------------------------------------- backfill


def backfill(
    pipeline: str,
    start: dt.date,
    end: dt.date,
    *,
    clock: Clock,
    as_of: dt.datetime | None = None,
    force: bool = False,
    downstream: bool = False,
    config: cfgmod.WorkbookConfig | None = None,
    on_update: OnUpdate = _ignore,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Run ``pipeline`` for each partition touching ``[start, end]`` in order (see module doc).

    Partitions whose latest run succeeded are ``skipped`` (reported, not recorded) unless
    ``force``. Each partition is gated on its upstreams like ``run-all``. An ``as_of`` before one
    of the partitions begins is refused (:class:`UsageError`) before anything runs.
    """
    config = config or cfgmod.get()
    try:
        target = config.pipelines.get(pipeline)
    except cfgmod.ConfigError as e:
        raise UsageError(str(e)) from None
    try:
        labels = dagmod.periods_between(target, start, end)
    except ValueError as e:
        raise UsageError(str(e)) from None
    items = [_clamped_item(target, label, end) for label in labels]
    _check_as_of(items, as_of)
    for it in items:
        on_update(Outcome(it.pipeline, it.partition, PENDING))
    outcomes = [
        _backfill_one(
            it, force=force, clock=clock, as_of=as_of, config=config, on_update=on_update, stop=stop
        )
        for it in items
    ]
    if downstream:
        graph = Dag.from_config(config.pipelines)
        pipes = config.pipelines.pipelines
        below = [
            _clamped_item(pipes[d], label, end)
            for d in graph.descendants(pipeline)
            for label in dagmod.periods_between(pipes[d], start, end)
        ]
        rank = {p: i for i, p in enumerate(graph.order())}
        below.sort(key=lambda it: (period_days(it.partition)[1], rank[it.pipeline]))
        for it in below:
            on_update(Outcome(it.pipeline, it.partition, PENDING))
        for it in below:
            stale = _stale_reason(it, graph, pipes)
            if stale is None:
                outcome = Outcome(
                    it.pipeline, it.partition, "skipped", reason="up to date with its upstreams"
                )
                on_update(outcome)
                outcomes.append(outcome)
                continue
            outcomes.append(
                _backfill_one(
                    it, force=True, clock=clock, as_of=as_of, config=config, on_update=on_update, stop=stop
                )
            )
    return outcomes


def _clamped_item(pipeline: cfgmod.Pipeline, label: str, end: dt.date) -> RunItem:
    # A month cut by --to is about the days up to --to (its upstreams' partitions of that day).
    item = dagmod.full_period_item(pipeline, label)
    return replace(item, reference_day=min(item.reference_day, end))


def _backfill_one(
    item: RunItem,
    *,
    force: bool,
    clock: Clock,
    as_of: dt.datetime | None,
    config: cfgmod.WorkbookConfig,
    on_update: OnUpdate,
    stop: threading.Event | None,
) -> Outcome:
    if stop is not None and stop.is_set():
        outcome = Outcome(item.pipeline, item.partition, "cancelled", reason="stopped before start")
        on_update(outcome)
        return outcome
    if not force:
        latest = latest_effective_run(item.pipeline, item.partition)
        if latest is not None and latest.status == "succeeded":
            outcome = Outcome(
                item.pipeline, item.partition, "skipped", latest.run_id, "already succeeded"
            )  # fmt: skip
            on_update(outcome)
            return outcome
    pipes = config.pipelines.pipelines
    states = [
        upstream_state(u, dagmod.partition_for(pipes[u], item.reference_day))
        for u in pipes[item.pipeline].depends_on
    ]
    reason = dagmod.blocked_reason(states)
    if reason is not None:
        outcome = _block(item, reason, clock=clock, as_of=as_of, trigger="backfill")
    else:
        on_update(Outcome(item.pipeline, item.partition, RUNNING))
        outcome = _execute(item, clock=clock, as_of=as_of, trigger="backfill", config=config)
    on_update(outcome)
    return outcome


def _stale_reason(item: RunItem, graph: Dag, pipes: Mapping[str, cfgmod.Pipeline]) -> str | None:
    """Why a dependant's partition must be re-run (None: it is newer than all its upstreams)."""
    mine = latest_effective_run(item.pipeline, item.partition)
    if mine is None or mine.status != "succeeded" or mine.started_at is None:
        return "no succeeded run"
    for u in graph.upstreams(item.pipeline):
        ups = latest_success(u, dagmod.partition_for(pipes[u], item.reference_day))
        if ups is not None and ups.finished_at is not None and ups.finished_at > mine.started_at:
            return f"upstream {u} changed after it ran"
    return None

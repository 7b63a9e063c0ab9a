"""The Fix step: act only when ``apply_fix`` is true, record what was done, and what to re-run.

:func:`guarded_fix` runs an action only in fix mode and records it (or what it would do) in the
context's fix log (:data:`helpers.runbooks.context.FIX_LOG`, read by :func:`fixes`). :func:`rerun`
re-runs partitions with ``backfill --force --downstream`` at ``ctx.as_of`` (their records' times on
``ctx.clock``: when they really ran), refusing up front a
partition of a published, locked month (:func:`refuse_locked`); :func:`rerun_targets`,
:func:`date_range_targets` and :func:`describe_targets` say which ones.
"""

from __future__ import annotations

import datetime as dt
import json
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from helpers.checks.framework import json_safe
from helpers.core.periods import period_days
from helpers.investor import signoff  # noqa: F401  (its publish listener voids sign-offs a re-run changes)
from helpers.runbooks.context import FIX_LOG, RunbookContext
from helpers.runbooks.evidence import Evidence
from helpers.runs.dag import Dag, partition_for


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
    FIX_LOG.append(record)
    return record


def fixes() -> list[FixRecord]:
    """The fixes recorded in this run so far."""
    return list(FIX_LOG)


def rerun(
    ctx: RunbookContext,
    partitions: Iterable[tuple[str, str]] | None = None,
    *,
    downstream: bool = True,
) -> list[dict[str, Any]]:
    """Re-run ``(pipeline, partition)`` pairs (default: the context's) with ``backfill --force``
    (and ``--downstream``), at ``ctx.as_of``; returns each run's outcome. The runs record their
    times on ``ctx.clock`` (the runbook's runner's clock: the wall clock in production), so they
    are the latest runs of their partitions whatever ``as_of`` the runs before them had.

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
    resolved = [
        (pipeline, partition_for(ctx.config.pipelines.get(pipeline), ctx.as_of.date() - dt.timedelta(days=1)))
        if label in ("", "current", None)
        else (pipeline, label)
        for pipeline, label in pairs
    ]
    refuse_locked(ctx, resolved)
    clock = ctx.clock
    out: list[dict[str, Any]] = []
    for pipeline, label in resolved:
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


def refuse_locked(ctx: RunbookContext, targets: Iterable[tuple[str, str]]) -> None:
    """Raise ``PartitionLocked`` before a re-run that would rewrite a partition of a published month.

    Every partition of each target (a month label covers its days for a daily pipeline) is looked
    up in ``helpers.runs.locks``; the error says who signed the month off and names
    ``workbook reopen``. The runner refuses such a run too; this says so before anything runs.
    """
    from helpers.runs import locks
    from helpers.runs.dag import periods_between

    for pipeline, label in targets:
        first, last = period_days(label)
        for partition in periods_between(ctx.config.pipelines.get(pipeline), first, last):
            lock = locks.find_lock(locks.PIPELINE, pipeline, partition)
            if lock is not None:
                raise locks.PartitionLocked(lock, f"{pipeline} {partition}")


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

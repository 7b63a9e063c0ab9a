"""The dependency graph of the pipelines (``depends_on`` in ``config/pipelines.yml``) and gating.

Pure functions: no I/O. ``orchestrate`` reads the run records and asks :func:`blocked_reason`
whether a pipeline may run.

Partitions of different granularity meet here. A run is identified by its pipeline, its
partition label (``YYYY-MM-DD`` or ``YYYY-MM``) and a *reference day*: the day whose data it is
about. A daily run's reference day is its date; a monthly run's is the day its month-to-date
reaches (``run-all --date 2026-11-12`` runs the November partition with reference day the 12th,
a backfill of a whole month uses the month's last day). An upstream's partition for a run is the
upstream's partition of the run's reference day: the November investor figures as of the 12th need
Engagement's partition of the 12th and Profit's November partition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from helpers.core.config import Pipeline, PipelinesConfig, topological_order
from helpers.core.periods import month_of, period_days

OK_STATUS = "succeeded"


@dataclass(frozen=True)
class RunItem:
    """One pipeline for one partition, with the day its data is about."""

    pipeline: str
    partition: str
    reference_day: dt.date


@dataclass(frozen=True)
class UpstreamState:
    """What the run records say about an upstream's partition (``status`` None: never run)."""

    pipeline: str
    partition: str
    status: str | None
    run_id: str | None = None
    error: str | None = None


class Dag:
    """Upstreams and dependants of each pipeline, and orders over subsets of them."""

    def __init__(self, deps: Mapping[str, Sequence[str]]) -> None:
        self.deps = {k: tuple(v) for k, v in deps.items()}
        self.children: dict[str, tuple[str, ...]] = {
            k: tuple(sorted(c for c, ups in self.deps.items() if k in ups)) for k in self.deps
        }
        order = topological_order(self.deps)
        if order is None:
            raise ValueError("depends_on forms a cycle")
        self._rank = {k: i for i, k in enumerate(order)}

    @classmethod
    def from_config(cls, pipelines: PipelinesConfig) -> Dag:
        """The graph of ``config/pipelines.yml``."""
        return cls({k: p.depends_on for k, p in pipelines.pipelines.items()})

    def upstreams(self, pipeline: str) -> tuple[str, ...]:
        """Direct upstreams (``depends_on``)."""
        return self.deps[pipeline]

    def dependants(self, pipeline: str) -> tuple[str, ...]:
        """Direct dependants."""
        return self.children[pipeline]

    def descendants(self, pipeline: str) -> list[str]:
        """Every pipeline downstream of ``pipeline`` (transitively), in dependency order."""
        seen: set[str] = set()
        stack = list(self.children[pipeline])
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                stack.extend(self.children[p])
        return self.order(seen)

    def ancestors(self, pipeline: str) -> list[str]:
        """Every pipeline upstream of ``pipeline`` (transitively), in dependency order."""
        seen: set[str] = set()
        stack = list(self.deps[pipeline])
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                stack.extend(self.deps[p])
        return self.order(seen)

    def order(self, pipelines: Iterable[str] | None = None) -> list[str]:
        """``pipelines`` (default: all) in dependency order, ties by name."""
        chosen = set(self.deps) if pipelines is None else set(pipelines)
        unknown = chosen - set(self.deps)
        if unknown:
            raise KeyError(f"unknown pipeline(s): {', '.join(sorted(unknown))}")
        return sorted(chosen, key=self._rank.__getitem__)


def partition_for(pipeline: Pipeline, day: dt.date) -> str:
    """The partition label of ``pipeline`` that holds ``day`` (a monthly pipeline: its month)."""
    return month_of(day) if pipeline.partition == "month" else day.isoformat()


def run_item(pipeline: Pipeline, day: dt.date) -> RunItem:
    """The run of ``pipeline`` for the partition holding ``day``, with ``day`` as reference day."""
    return RunItem(pipeline.id, partition_for(pipeline, day), day)


def full_period_item(pipeline: Pipeline, label: str) -> RunItem:
    """The run of a whole partition: its reference day is the partition's last day."""
    return RunItem(pipeline.id, label, period_days(label)[1])


def periods_between(pipeline: Pipeline, start: dt.date, end: dt.date) -> list[str]:
    """The partition labels of ``pipeline`` touching ``[start, end]``, in order."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    labels: list[str] = []
    day = start
    while day <= end:
        label = partition_for(pipeline, day)
        if not labels or labels[-1] != label:
            labels.append(label)
        day += dt.timedelta(days=1)
    return labels


def blocked_reason(upstreams: Sequence[UpstreamState]) -> str | None:
    """Why a run may not start (the first upstream that has not succeeded), or ``None``.

    The rule (docs/architecture.md): downstream work is gated on the run status of its upstreams for that
    period, not on whether rows happen to exist. The upstream's latest run must have succeeded.
    """
    for up in upstreams:
        if up.status == OK_STATUS:
            continue
        where = f"upstream {up.pipeline} {up.partition}"
        if up.status is None:
            return f"{where} has no succeeded run"
        detail = ""
        if up.run_id:
            detail = f" (run {up.run_id}: {up.error})" if up.error else f" (run {up.run_id})"
        if up.status in ("running", "queued"):
            return f"{where} is still {up.status}{detail}"
        return f"{where} {up.status}{detail}"
    return None

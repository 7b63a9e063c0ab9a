"""The close's trailing months: which earlier months get investor figures built, and which are missing.

The month-end report shows each figure over the trailing twelve months with month-over-month and
year-over-year changes, so a close of ``M`` first makes sure the ``N`` months before it (default 12:
``M-12 .. M-1``; ``M-12`` gives YoY) have investor figures (:func:`plan_history`). Each month is one of:

- ``locked``: published and locked; never re-run (it has its published figures);
- ``have``: its latest ``investor_aggregate`` run succeeded; skipped, so only the first close pays;
- ``no data``: it starts before the landing zone does (:func:`first_landed_day`: the latest first
  partition among the sources the close's pipelines read), so its figures cannot be computed;
- ``build``: the close runs what is missing (Profit, Growth, Engagement of its last day, then the
  investor aggregate) through the runner, in the close's waves.

After the build (:func:`settle`) a ``build`` month is ``built`` (its investor aggregate succeeded) or
``failed`` (the first run that did not succeed, quoted). :attr:`History.missing` names the trend
months without figures: the report shows those points empty, and the close says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from helpers.core import config as cfgmod
from helpers.core.periods import period_days, shift_period
from helpers.investor.inputs import latest_run
from helpers.runs import locks
from helpers.runs.dag import RunItem
from helpers.storage import landing

DEFAULT_MONTHS = 12
INVESTOR = "investor_aggregate"
ENGAGEMENT = "engagement_aggregate"
BUILD, HAVE, LOCKED, NO_DATA, BUILT, FAILED = "build", "have", "locked", "no data", "built", "failed"
OK_STATES = (HAVE, LOCKED, BUILT)  # the month has investor figures
OK_OUTCOMES = ("succeeded", "skipped")


@dataclass(frozen=True)
class HistoryMonth:
    """One trailing month: its state (see the module doc) and why."""

    period: str
    state: str
    detail: str

    @property
    def has_figures(self) -> bool:
        return self.state in OK_STATES

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "state": self.state, "detail": self.detail}


@dataclass(frozen=True)
class History:
    """The trailing months of a close, oldest first."""

    period: str
    requested: int
    months: tuple[HistoryMonth, ...]

    @property
    def to_build(self) -> list[str]:
        return [m.period for m in self.months if m.state == BUILD]

    @property
    def missing(self) -> list[HistoryMonth]:
        """The trend months without investor figures (no data, or their build failed)."""
        return [m for m in self.months if not m.has_figures]

    def summary(self) -> str:
        """One line: ``12 months before 2026-10: 12 with figures (3 built now)`` and what is missing."""
        if not self.requested:
            return f"trend months before {self.period}: none requested (--history 0)"
        have = sum(m.has_figures for m in self.months)
        built = sum(m.state == BUILT for m in self.months)
        line = f"trend months before {self.period}: {have} of {self.requested} with investor figures"
        line += f" ({built} built now)" if built else ""
        if self.missing:
            line += "; missing: " + ", ".join(f"{m.period} ({m.detail})" for m in self.missing[:4])
            line += f" and {len(self.missing) - 4} more" if len(self.missing) > 4 else ""
        return line

    def as_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "months": [m.as_json() for m in self.months],
                "missing": [m.period for m in self.missing]}  # fmt: skip


def months_before(period: str, n: int) -> list[str]:
    """The ``n`` months before ``period``, oldest first."""
    if n < 0:
        raise ValueError(f"history: expected 0 or more months, got {n}")
    return [shift_period(period, -k) for k in range(n, 0, -1)]


def plan(
    period: str,
    n: int,
    *,
    first_day: dt.date | None,
    first_why: str,
    have: Mapping[str, str | None],
    locked: Mapping[str, str],
) -> History:
    """Which of the ``n`` months before ``period`` to build (pure: the inputs are read by :func:`plan_history`).

    ``first_day``: the first day the landing zone holds for every source (None: nothing landed),
    ``first_why`` says which source decides it; ``have``: month -> the run id of its succeeded latest
    investor aggregate (None or absent: none); ``locked``: month -> why it is locked.
    """
    out = []
    for month in months_before(period, n):
        start = period_days(month)[0]
        if month in locked:
            out.append(HistoryMonth(month, LOCKED, locked[month]))
        elif have.get(month):
            out.append(HistoryMonth(month, HAVE, f"investor_aggregate run {have[month]}"))
        elif first_day is None or start < first_day:
            where = f"the landing zone starts {first_day} ({first_why})" if first_day else first_why
            out.append(HistoryMonth(month, NO_DATA, f"no data: {where}"))
        else:
            out.append(HistoryMonth(month, BUILD, "no succeeded investor_aggregate run"))
    return History(period, n, tuple(out))


def landing_sources(config: cfgmod.WorkbookConfig, pipelines: Iterable[str]) -> list[str]:
    """The landing sources ``pipelines`` read (their ``sources`` in config), sorted."""
    pipes = config.pipelines.pipelines
    return sorted({s for p in pipelines if p in pipes for s in pipes[p].sources})


def first_landed_day(
    sources: Sequence[str],
    *,
    as_of: dt.datetime,
    config: cfgmod.WorkbookConfig,
    root: Path | None = None,
) -> tuple[dt.date | None, str]:
    """The first day every landed source holds, as of ``as_of``, and which source decides it.

    A daily source holds from its first partition; a monthly one (config ``sources: cadence``) from
    the first day of its first partition's month. A source that never delivered constrains nothing
    (its absence is the runs' to report). ``(None, why)`` when none of them delivered anything.
    """
    firsts: dict[str, dt.date] = {}
    for source in sources:
        parts = [d.partition for d in landing.deliveries(source, root=root, as_of=as_of)]
        if not parts:
            continue
        day = dt.date.fromisoformat(min(parts))
        cadence = config.pipelines.sources.get(source)
        firsts[source] = day.replace(day=1) if cadence and cadence.cadence == "monthly" else day
    if not firsts:
        return None, f"nothing landed by {as_of:%Y-%m-%d %H:%M}Z from {', '.join(sources) or 'any source'}"
    decides = max(firsts, key=lambda s: (firsts[s], s))
    return firsts[decides], f"{decides} from {firsts[decides]}"


def plan_history(
    period: str,
    n: int,
    as_of: dt.datetime,
    *,
    pipelines: Sequence[str],
    config: cfgmod.WorkbookConfig,
    engine: sa.Engine | None = None,
    root: Path | None = None,
) -> History:
    """:func:`plan` from the run records, the locks and the landing zone (``pipelines``: what a month runs)."""
    months = months_before(period, n)
    if not months:
        return History(period, 0, ())
    locked = {m: lock.describe(m) for m in months if (lock := locks.month_lock(m, engine=engine)) is not None}
    have = {}
    for m in months:
        run = latest_run(INVESTOR, m, engine=engine)
        have[m] = run.run_id if run.succeeded else None
    first_day, why = first_landed_day(
        landing_sources(config, pipelines), as_of=as_of, config=config, root=root
    )
    return plan(period, n, first_day=first_day, first_why=why, have=have, locked=locked)


def month_partitions(month: str, pipelines: Iterable[str]) -> dict[str, str]:
    """Each pipeline's partition for ``month``'s figures: the month, or its last day for Engagement."""
    last = period_days(month)[1].isoformat()
    return {p: (last if p == ENGAGEMENT else month) for p in pipelines}


def items(history: History, pipelines: Sequence[str], config: cfgmod.WorkbookConfig) -> list[RunItem]:
    """The run items of the months to build, for ``pipelines`` (one wave), oldest month first."""
    pipes = config.pipelines.pipelines
    out = []
    for month in history.to_build:
        last = period_days(month)[1]
        parts = month_partitions(month, pipelines)
        out += [RunItem(p, parts[p], last) for p in pipelines if p in pipes]
    return out


def settle(history: History, outcomes: Sequence[Any]) -> History:
    """The months after the build: ``built`` when the month's investor aggregate succeeded, else
    ``failed`` with the first outcome of the month that did not succeed (``orchestrate.Outcome``)."""
    by_month: dict[str, list[Any]] = {}
    for o in outcomes:
        by_month.setdefault(str(o.partition)[:7], []).append(o)
    out = []
    for m in history.months:
        if m.state != BUILD:
            out.append(m)
            continue
        mine = by_month.get(m.period, [])
        investor = next((o for o in mine if o.pipeline == INVESTOR), None)
        if investor is not None and investor.status in OK_OUTCOMES:
            out.append(HistoryMonth(m.period, BUILT, f"investor_aggregate run {investor.run_id}"))
            continue
        bad = next((o for o in mine if o.status not in OK_OUTCOMES), None)
        why = f"{bad.pipeline} {bad.partition} {bad.status}: {bad.reason or '?'}" if bad else "not run"
        out.append(HistoryMonth(m.period, FAILED, why[:200]))
    return History(history.period, history.requested, tuple(out))

"""What the weekly metrics review needs before its figures mean anything, and the commands that provide it.

The review (:mod:`helpers.investor.weekly`) reads the daily marts of ``engagement_aggregate`` and
``growth_daily``, which a month-end close does not fill. For the weeks it covers, per pipeline:
the days without mart rows (:class:`Gap`), the partitions whose runs write them (Engagement's 3-day
window: a run writes the days before it too), the ``workbook backfill`` command over them
(``--force`` when a partition's latest run succeeded before its data landed), the days only a
published (locked) month's runs could write, and the days past what the landing zone holds; when the
week reaches past the landing data, what the review of the last day the sources cover needs
instead (:class:`Needs`). :func:`find_gap` and :func:`needs_from` are pure; :func:`review_needs`
reads the marts' dates, run records, locks and the landing manifests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

REVIEW = "weekly_metrics_review"
DEFAULT_WEEKS = 4  # the notebook's ``weeks`` parameter: trailing weeks compared with
DAILY_MARTS: dict[str, str] = {
    "engagement_aggregate": "engagement_metrics_daily",
    "growth_daily": "growth_daily",
}


def review_days(run_date: str | dt.date, weeks: int) -> list[dt.date]:
    """Every day the review covers: the week ending ``run_date`` and the ``weeks`` weeks before it."""
    last = dt.date.fromisoformat(str(run_date))
    return [last - dt.timedelta(days=k) for k in range(7 * (weeks + 1) - 1, -1, -1)]


def day_ranges(days: Iterable[dt.date]) -> str:
    """Days as runs of consecutive dates: ``2026-11-03 .. 2026-11-09, 2026-11-12``."""
    out: list[str] = []
    ordered = sorted(set(days))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == dt.timedelta(days=1):
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]} .. {ordered[j]}")
        i = j + 1
    return ", ".join(out)


def plural(n: int, what: str = "week") -> str:
    """``1 week``, ``2 weeks``."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


# ---------------------------------------------------------------- what the review needs


@dataclass(frozen=True)
class Gap:
    """One daily pipeline's days (of the review's weeks) without rows in its mart, and what fills them."""

    pipeline: str
    table: str
    days: int  # days the review covers
    missing: tuple[dt.date, ...]  # days without mart rows
    runs: tuple[dt.date, ...]  # partitions whose runs write the missing days that can be written
    locked: tuple[dt.date, ...]  # missing days only runs of a published (locked) month could write
    beyond: tuple[dt.date, ...]  # missing days past the last day the pipeline's sources cover
    force: bool = False  # a partition to run already succeeded (it ran before its data landed)
    horizon: dt.date | None = None  # the last day every daily source of the pipeline has delivered
    short: tuple[str, ...] = ()  # the sources that end there

    @property
    def command(self) -> str | None:
        """``workbook backfill <pipeline> --from A --to B`` (``--force`` when a partition already succeeded)."""
        if not self.runs:
            return None
        force = " --force" if self.force else ""
        return f"workbook backfill {self.pipeline} --from {min(self.runs)} --to {max(self.runs)}{force}"


def find_gap(
    pipeline: str,
    days: Sequence[dt.date],
    *,
    have: set[dt.date],
    horizon: dt.date | None,
    locked: set[dt.date] = frozenset(),
    succeeded: set[dt.date] = frozenset(),
    window: int = 1,
    short: tuple[str, ...] = (),
) -> Gap:
    """Which of ``days`` a pipeline still has to write, and which partitions to run for them (pure).

    A run of partition P writes the ``window`` days ending P (Engagement re-computes 3), up to the
    last day its sources cover (``horizon``). A missing day is written by the earliest partition of
    its window that is not locked (a published month's partitions are) and not past the horizon,
    preferring one whose latest run did not succeed (a backfill skips those unless ``--force``).
    """
    missing = tuple(d for d in days if d not in have)
    beyond = tuple(d for d in missing if horizon is None or d > horizon)
    runs: set[dt.date] = set()
    stuck: list[dt.date] = []
    force = False
    for d in missing:
        if d in beyond:
            continue
        cands = [
            p for p in (d + dt.timedelta(days=k) for k in range(window)) if p <= horizon and p not in locked
        ]  # fmt: skip
        if not cands:
            stuck.append(d)
            continue
        fresh = [p for p in cands if p not in succeeded]
        runs.add(fresh[0] if fresh else cands[0])
        force = force or not fresh
    table = DAILY_MARTS.get(pipeline, pipeline)
    return Gap(pipeline, table, len(days), missing, tuple(sorted(runs)), tuple(stuck), beyond, force,
               horizon, short)  # fmt: skip


@dataclass(frozen=True)
class Needs:
    """What the review needs: every daily pipeline's :class:`Gap` over the weeks it covers.

    When the week reaches past the landing data, ``instead`` is what the review of the last week
    the sources cover needs: that is the review to run, and its commands are the ones to run first.
    """

    run_date: dt.date
    first: dt.date
    gaps: tuple[Gap, ...]
    instead: Needs | None = None

    @property
    def complete(self) -> bool:
        return not any(g.missing for g in self.gaps)

    @property
    def commands(self) -> list[str]:
        """The backfills to run, in order (those of ``instead`` when there is one)."""
        if self.instead is not None:
            return self.instead.commands
        return [g.command for g in self.gaps if g.command]

    @property
    def data_through(self) -> dt.date | None:
        """The last day every daily source of the review's pipelines has delivered (None: one has nothing)."""
        ends = [g.horizon for g in self.gaps]
        return None if not ends or any(e is None for e in ends) else min(e for e in ends if e is not None)

    @property
    def suggested_run_date(self) -> dt.date | None:
        """The ``run_date`` to review instead, when the week reaches past the landing data."""
        if not any(g.beyond for g in self.gaps):
            return None
        through = self.data_through
        return through if through is not None and through < self.run_date else None

    def sentences(self) -> list[str]:
        """What is missing and what to do, in Markdown (commands in backticks)."""
        span = f"{self.first} .. {self.run_date}"
        if self.complete:
            names = " and ".join(f"`{g.table}`" for g in self.gaps)
            return [f"Every day of {span} is in {names}: nothing to run first."]
        if any(g.beyond for g in self.gaps):
            head = [self._beyond_sentence()]
            if self.instead is not None:
                return head + self.instead.sentences()
            return head + [s for g in self.gaps for s in _gap_sentences(g)]
        return [s for g in self.gaps for s in _gap_sentences(g)]

    def _beyond_sentence(self) -> str:
        past = sorted({d for g in self.gaps for d in g.beyond})
        ends = "; ".join(
            f"{g.pipeline}'s sources through {g.horizon}" + (f" ({', '.join(g.short)})" if g.short else "")
            if g.horizon else f"no delivery yet of {', '.join(g.short)} ({g.pipeline}'s sources)"
            for g in self.gaps if g.beyond
        )  # fmt: skip
        text = (
            f"The week ending {self.run_date} reaches past the landing data ({ends}): {day_ranges(past)} "
            "cannot be run yet, so the weeks with these days have no figures."
        )
        suggested = self.suggested_run_date
        if suggested is not None:
            text += (
                f" Review the week ending {suggested} instead, the last day the sources cover "
                "(what it needs below; the commands fill its days, the last line reviews it)."
            )
        return text

    def steps(self) -> list[str]:
        """The commands to run, in order, ending with the review to run again (empty: nothing to run)."""
        review_date = self.suggested_run_date or self.run_date
        commands = self.commands
        if not commands and self.suggested_run_date is None:
            return []
        weeks = ((self.run_date - self.first).days + 1) // 7 - 1
        extra = f" -p weeks={weeks}" if weeks != DEFAULT_WEEKS else ""
        return [*commands, f"workbook run {REVIEW} --date {review_date}{extra}"]

    def markdown(self) -> str:
        """:meth:`sentences` as a list, then :meth:`steps` as a shell block to copy."""
        lines = self.sentences()
        text = lines[0] if len(lines) == 1 else "\n".join(f"- {line}" for line in lines)
        steps = self.steps()
        if steps:
            text += "\n\nRun these, then read the review they end with:\n\n```\n" + "\n".join(steps) + "\n```"
        return text


def _gap_sentences(g: Gap) -> list[str]:
    have = g.days - len(g.missing)
    if not g.missing:
        return [f"{g.pipeline}: all {g.days} days are in `{g.table}`."]
    out = [f"{g.pipeline}: `{g.table}` has {have} of the {g.days} days; none for {day_ranges(g.missing)}."]
    if g.command:
        n = (max(g.runs) - min(g.runs)).days + 1
        again = "; `--force`: a run of these days succeeded before their data had landed" if g.force else ""
        runs = "1 run" if n == 1 else f"{n} runs, one per day"
        window = ""
        if min(g.runs) > min(d for d in g.missing if d not in g.beyond and d not in g.locked):
            window = f", whose windows write the days before {min(g.runs)} too"
        out.append(f"The `{g.pipeline}` backfill below fills them ({runs}{window}{again}).")
    if g.locked:
        out.append(
            f"{day_ranges(g.locked)} belong to a published month: its {g.pipeline} runs are locked "
            "(`workbook reopen` unlocks a month; not something to do for a weekly review), so the weeks "
            "with these days have no figures and are left out of the comparison."
        )
    return out


def _daily_horizon(sources: Iterable[str], root: Any = None) -> tuple[dt.date | None, tuple[str, ...]]:
    """The last day every one of ``sources`` has delivered (what the landing zone holds), and which end there.

    A source with no delivery at all: ``(None, those sources)``.
    """
    from helpers.storage import landing

    last: dict[str, dt.date | None] = {}
    for s in sources:
        parts = [d.partition for d in landing.deliveries(s, root=root)]
        last[s] = dt.date.fromisoformat(max(parts)) if parts else None
    if not last or any(v is None for v in last.values()):
        return None, tuple(s for s, v in last.items() if v is None)
    end = min(v for v in last.values() if v is not None)
    return end, tuple(s for s, v in last.items() if v == end)


def _latest_status(pipeline: str, engine: sa.Engine | None) -> dict[dt.date, str]:
    from helpers.runs import records

    latest: dict[dt.date, str] = {}
    for r in records.list_runs(pipeline=pipeline, limit=100_000, engine=engine):  # most recent first
        try:
            day = dt.date.fromisoformat(r.logical_date)
        except ValueError:
            continue
        latest.setdefault(day, r.status)
    return latest


def _locked_days(pipeline: str, engine: sa.Engine | None) -> set[dt.date]:
    from helpers.runs import locks

    out = set()
    for lock in locks.active_locks(engine=engine):
        if lock.kind == locks.PIPELINE and lock.target == pipeline and len(lock.partition) == 10:
            out.add(dt.date.fromisoformat(lock.partition))
    return out


def needs_from(
    run_date: str | dt.date, weeks: int, facts: Mapping[str, Mapping[str, Any]], *, instead: bool = True
) -> Needs:
    """:class:`Needs` from each pipeline's facts (pure): ``have``, ``horizon``, ``short``, ``locked``,
    ``succeeded``, ``window`` (the keywords of :func:`find_gap`); ``instead`` for a week past the data."""
    days = review_days(run_date, weeks)
    gaps = tuple(find_gap(pipeline, days, **kw) for pipeline, kw in facts.items())
    needs = Needs(days[-1], days[0], gaps)
    later = needs.suggested_run_date
    if instead and later is not None:
        needs = Needs(days[-1], days[0], gaps, needs_from(later, weeks, facts, instead=False))
    return needs


def review_needs(
    run_date: str,
    frames: Mapping[str, pd.DataFrame],
    *,
    weeks: int = 4,
    engine: sa.Engine | None = None,
    root: Any = None,
) -> Needs:
    """:class:`Needs` of the review for ``run_date``: per daily pipeline, from its mart (``frames``,
    :func:`daily_frames`), its run records and locks, and what its daily sources have delivered
    (the landing zone as it is now, like the marts: ``root`` defaults to the workbook's)."""
    from helpers.core import config
    from helpers.engagement.window import DEFAULT_WINDOW_DAYS

    cfg = config.get().pipelines
    facts: dict[str, dict[str, Any]] = {}
    for pipeline, table in DAILY_MARTS.items():
        frame = frames.get(table, pd.DataFrame())
        p = cfg.pipelines.get(pipeline)
        daily = [
            s for s in (p.sources if p else ()) if s not in cfg.sources or cfg.sources[s].cadence == "daily"
        ]
        horizon, short = _daily_horizon(daily, root)
        status = _latest_status(pipeline, engine)
        facts[pipeline] = {
            "have": set(frame["date"]) if "date" in frame else set(),
            "horizon": horizon,
            "short": short,
            "locked": _locked_days(pipeline, engine),
            "succeeded": {d for d, s in status.items() if s == "succeeded"},
            "window": DEFAULT_WINDOW_DAYS if pipeline == "engagement_aggregate" else 1,
        }
    return needs_from(run_date, weeks, facts)


def needs_table(needs: Needs) -> pd.DataFrame:
    """One row per daily pipeline: days without rows, what a backfill fills, and what it cannot
    (of the review to run ``instead`` when the week reaches past the landing data)."""
    rows = []
    for g in (needs.instead or needs).gaps:
        rows.append({
            "pipeline": g.pipeline,
            "mart": g.table,
            "days in the mart": f"{g.days - len(g.missing)} of {g.days}",
            "days without rows": day_ranges(g.missing) or "none",
            "runs that fill them": (
                f"{(max(g.runs) - min(g.runs)).days + 1} ({day_ranges(pd.date_range(min(g.runs), max(g.runs)).date)})" if g.runs
                else "none needed" if not g.missing else "no run can fill them"
            ),
            "cannot be filled": "; ".join(
                x for x in (
                    f"{day_ranges(g.locked)} (published month, locked)" if g.locked else "",
                    f"{day_ranges(g.beyond)} (past the landing data)" if g.beyond else "",
                ) if x
            ) or "none",
        })  # fmt: skip
    return pd.DataFrame(rows)

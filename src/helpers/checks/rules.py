"""The monitors' rules as pure functions of their inputs (no database, no clock).

Each returns an :class:`~helpers.checks.framework.Outcome` or the figure a rule needs; the
thresholds are passed in (``config/pipelines.yml``). ``checks.monitors`` applies them to a
:class:`~helpers.checks.snapshot.Snapshot`; runbooks and pipelines reuse them.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping
from typing import Any

import pandas as pd
from croniter import croniter

from helpers.checks.framework import Outcome, Severity, fail, ok
from helpers.core import config as cfgmod
from helpers.core.periods import MONTH_LABEL, month_of, period_days, previous_month
from helpers.core.timeutil import UTC, as_utc


def _hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def freshness_outcome(
    last_update: dt.datetime | None,
    as_of: dt.datetime,
    *,
    warn_hours: float,
    critical_hours: float,
    what: str,
) -> Outcome:
    """Older than ``warn_hours`` -> warning, older than ``critical_hours`` -> critical."""
    if last_update is None:
        return fail(f"{what}: no data yet", severity="critical", last_update=None)
    age = as_utc(as_of) - as_utc(last_update)
    evidence = dict(
        last_update=as_utc(last_update),
        age_hours=_hours(age),
        warn_hours=warn_hours,
        critical_hours=critical_hours,
    )
    if age > dt.timedelta(hours=critical_hours):
        return fail(
            f"{what} is {_hours(age):g} h old (> {critical_hours:g} h)", severity="critical", **evidence
        )
    if age > dt.timedelta(hours=warn_hours):
        return fail(f"{what} is {_hours(age):g} h old (> {warn_hours:g} h)", severity="warning", **evidence)
    return ok(f"{what} is {_hours(age):g} h old", **evidence)


def monthly_source_outcome(
    arrived: pd.DataFrame | None,
    as_of: dt.datetime,
    *,
    due_days: float,
    warn_hours: float,
    critical_hours: float,
    what: str,
) -> Outcome:
    """A monthly source is late when its latest due period has not arrived well past its due time."""
    as_of = as_utc(as_of)
    # the most recent period whose due time has passed
    label = previous_month(month_of(as_of.date()))
    while True:
        due = dt.datetime.combine(period_days(label)[1], dt.time(), UTC) + dt.timedelta(days=due_days)
        if due <= as_of:
            break
        label = previous_month(label)
    have = set()
    if arrived is not None and len(arrived):
        have = {str(p)[:7] for p in arrived["partition"]}
    evidence = dict(expected_period=label, due_at=due, warn_hours=warn_hours, critical_hours=critical_hours)
    if label in have:
        return ok(f"{what}: {label} delivered (due {due:%Y-%m-%d})", **evidence)
    overdue = as_of - due
    evidence["overdue_hours"] = _hours(overdue)
    if overdue > dt.timedelta(hours=critical_hours):
        return fail(
            f"{what}: {label} not delivered, {_hours(overdue):g} h past due", severity="critical", **evidence
        )
    if overdue > dt.timedelta(hours=warn_hours):
        return fail(
            f"{what}: {label} not delivered, {_hours(overdue):g} h past due", severity="warning", **evidence
        )
    return ok(f"{what}: {label} due {due:%Y-%m-%d}, not yet overdue", **evidence)


def baseline_labels(target: str, *, weeks: int, months: int) -> list[str]:
    """The partitions a target is compared with: same weekday of previous weeks, or previous months."""
    if MONTH_LABEL.match(target):
        out, period = [], target
        for _ in range(months):
            period = previous_month(period)
            out.append(period)
        return out
    day = dt.date.fromisoformat(target)
    return [(day - dt.timedelta(weeks=k)).isoformat() for k in range(1, weeks + 1)]


def row_count_outcome(
    counts: Mapping[str, int],
    target: str,
    *,
    variance: float,
    weeks: int,
    months: int,
    min_points: int,
    what: str,
) -> Outcome:
    """Compare ``counts[target]`` with the median of its baseline partitions (see module doc)."""
    rows = int(counts[target])
    labels = baseline_labels(target, weeks=weeks, months=months)
    points = {label: int(counts[label]) for label in labels if label in counts}
    evidence: dict[str, Any] = dict(partition=target, rows=rows, baseline_partitions=points)
    if len(points) < min_points:
        return ok(
            f"{what} {target}: {rows} rows; too little history for a baseline ({len(points)} points)",
            **evidence,
        )
    baseline = statistics.median(points.values())
    evidence["baseline"] = baseline
    if baseline == 0:
        change = 0.0 if rows == 0 else float("inf")
    else:
        change = (rows - baseline) / baseline
    evidence["variance"] = round(change, 4) if change != float("inf") else None
    evidence["direction"] = "drop" if change < 0 else "rise"
    text = f"{what} {target}: {rows} rows vs baseline {baseline:g} ({change:+.0%})"
    if abs(change) > variance:
        severity: Severity = "critical" if rows == 0 else "warning"
        return fail(f"{text}, beyond ±{variance:.0%}", severity=severity, **evidence)
    return ok(text, **evidence)


def deadline_outcome(
    deadline: dt.datetime,
    as_of: dt.datetime,
    *,
    met: bool,
    lead_hours: float,
    rescue_expected: bool,
    what: str,
    evidence: Mapping[str, Any] | None = None,
) -> Outcome:
    """Met -> pass; past the deadline -> missed (critical); within ``lead_hours`` -> at risk (warning)."""
    left = as_utc(deadline) - as_utc(as_of)
    details = dict(evidence or {}, deadline=as_utc(deadline), hours_left=_hours(left), met=met)
    if met:
        return ok(f"{what}: met (deadline {as_utc(deadline):%Y-%m-%d %H:%M}Z)", **details)
    if left <= dt.timedelta(0):
        return fail(
            f"{what}: MISSED (deadline was {as_utc(deadline):%Y-%m-%d %H:%M}Z)",
            severity="critical",
            **details,
        )
    if left <= dt.timedelta(hours=lead_hours) and not rescue_expected:
        return fail(
            f"{what}: at risk, deadline in {_hours(left):g} h ({as_utc(deadline):%Y-%m-%d %H:%M}Z)",
            severity="warning",
            **details,
        )
    return ok(f"{what}: deadline in {_hours(left):g} h", rescue_expected=rescue_expected, **details)


def covered_through(runs: pd.DataFrame, *, monthly: bool, as_of: dt.datetime) -> dt.date | None:
    """The last day a pipeline's succeeded runs (made with data up to ``as_of``) cover.

    A daily run covers its date. A monthly run covers its month up to the day before its own
    ``as_of`` (a run as of 5 Nov 06:00 has data through 4 Nov; one as of 1 Dec 00:00, all November).
    """
    done = runs[(runs["status"] == "succeeded")]
    best: dt.date | None = None
    for label, run_as_of in zip(done["logical_date"], done["as_of"], strict=True):
        first, last = period_days(label)
        if pd.isna(run_as_of):
            through = last
        else:
            run_as_of = as_utc(run_as_of.to_pydatetime())
            if run_as_of > as_utc(as_of):
                continue  # made later than the moment we are judging
            through = min(last, run_as_of.date() - dt.timedelta(days=1)) if monthly else last
        if through >= first and (best is None or through > best):
            best = through
    return best


def rescue_expected(
    pipeline: cfgmod.Pipeline, runs: pd.DataFrame, as_of: dt.datetime, deadline: dt.datetime
) -> bool:
    """Is a run on its way that can meet ``deadline``? (active now, or scheduled before it and the
    latest run did not fail or block)."""
    if runs["status"].isin(["running", "queued"]).any():
        return True
    effective = runs[runs["status"] != "skipped"]
    if len(effective) and effective["status"].iloc[-1] in ("failed", "blocked"):
        return False
    nxt = croniter(pipeline.schedule, as_utc(as_of)).get_next(dt.datetime)
    return as_utc(nxt) < as_utc(deadline)

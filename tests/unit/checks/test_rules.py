"""The monitors' pure rules: baselines, row counts and deadlines, from explicit inputs only."""

from __future__ import annotations

import datetime as dt

import pytest

from helpers.checks import rules

pytestmark = pytest.mark.unit
H = dt.timedelta(hours=1)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_weekend_dip_would_alarm_against_a_plain_trailing_average():
    # The same Saturday against the previous 7 days' mean is a 49 % drop: why the baseline is by weekday.
    counts = {f"2026-11-{d:02d}": (40 if d in (1, 7) else 100) for d in range(1, 8)}
    counts.update({f"2026-10-{d:02d}": (40 if d in (3, 10, 17, 24, 31) else 100) for d in range(3, 32)})
    outcome = rules.row_count_outcome(
        counts, "2026-11-07", variance=0.2, weeks=4, months=3, min_points=2, what="t"
    )
    assert outcome.passed and outcome.evidence["baseline"] == 40
    trailing = [counts[f"2026-10-{d}"] for d in (31,)] + [counts[f"2026-11-0{d}"] for d in range(1, 7)]
    assert abs(40 - sum(trailing) / 7) / (sum(trailing) / 7) > 0.2


def test_monthly_row_counts_compare_complete_months_only():
    counts = {"2026-08": 1000, "2026-09": 1000, "2026-10": 1000, "2026-11": 700}
    outcome = rules.row_count_outcome(
        counts, "2026-11", variance=0.2, weeks=4, months=3, min_points=2, what="m"
    )
    assert not outcome.passed and outcome.evidence["baseline_partitions"] == {
        "2026-10": 1000,
        "2026-09": 1000,
        "2026-08": 1000,
    }
    assert rules.baseline_labels("2026-01", weeks=4, months=3) == ["2025-12", "2025-11", "2025-10"]
    too_short = rules.row_count_outcome(
        {"2026-11": 5}, "2026-11", variance=0.2, weeks=4, months=3, min_points=2, what="m"
    )
    assert too_short.passed and "too little history" in too_short.summary


@pytest.mark.parametrize(
    ("hours_left", "met", "rescue", "status", "severity", "word"),
    [
        (23, False, False, "fail", "warning", "at risk"),
        (25, False, False, "pass", None, "deadline in 25 h"),
        (23, True, False, "pass", None, "met"),
        (23, False, True, "pass", None, "deadline in 23 h"),
        (-1, False, True, "fail", "critical", "MISSED"),
    ],
)
def test_deadline_rule(hours_left, met, rescue, status, severity, word):
    deadline = utc("2026-12-04T05:00:00")
    outcome = rules.deadline_outcome(
        deadline, deadline - hours_left * H, met=met, lead_hours=24, rescue_expected=rescue, what="close"
    )
    assert ("pass" if outcome.passed else "fail") == status and outcome.severity == severity
    assert word in outcome.summary

"""helpers.profit.aggregate: the profit_monthly row and its headline figures."""

from __future__ import annotations

import datetime as dt

import pytest

from helpers.profit.aggregate import headline, profit_row

pytestmark = pytest.mark.unit
UTC = dt.UTC


def test_profit_row_publishes_a_null_margin_with_its_reason_when_revenue_is_zero():
    row = profit_row(
        {"revenue": 0, "salaries": 100, "infrastructure": 50, "operations": 0},
        period="2024-09", reasons=["x"], customers=0, open_lines=0, written_off_cents=0, quarantined=0,
        reconciliation_status="pending", finance_difference_cents=None, as_of=dt.datetime(2024, 10, 1, tzinfo=UTC),
        run_id="r",
    )  # fmt: skip
    figures = headline(row)
    assert (
        figures["margin"] is None
        and row["margin_null_reason"].item() == "margin = profit / revenue: zero denominator"
    )
    assert figures["profit_usd_cents"] == -150 and figures["total_cost_usd_cents"] == 150
    assert figures["status"] == "provisional" and figures["provisional_reasons"] == ["x"]
    ok = headline(profit_row(
        {"revenue": 1000, "salaries": 600, "infrastructure": 100, "operations": 50}, period="2024-09", reasons=[],
        customers=1, open_lines=0, written_off_cents=0, quarantined=0, reconciliation_status="within_tolerance",
        finance_difference_cents=0, as_of=dt.datetime(2024, 10, 1, tzinfo=UTC), run_id="r",
    ))  # fmt: skip
    assert ok["margin"] == pytest.approx(0.25) and ok["status"] == "final"
    assert ok["costs_usd_cents"] == {"salaries": 600, "infrastructure": 100, "operations": 50}

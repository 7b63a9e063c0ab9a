"""helpers.profit.unit: pools allocated to accounts exactly, and the experiment arms' summaries."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.core.config import ProfitAllocation
from helpers.profit.inputs import JoinLog
from helpers.profit.readable import readable_arms
from helpers.profit.unit import arm_summaries, unit_profit

pytestmark = pytest.mark.unit


def test_unit_profit_allocates_pools_exactly_and_nulls_zero_denominators():
    revenue = pd.DataFrame({"account_id": ["A1", "A2"], "revenue_usd_cents": [10_000, 0]})
    usage = pd.DataFrame(
        {"account_id": ["A1", "A2", "A3"], "seat_seconds": [3, 1, 0], "active_seconds": [5, 5, 0]}
    )
    unit, notes = unit_profit(
        revenue,
        usage,
        infrastructure_cents=1_001,
        support_cents=301,
        days_in_month=30,
        allocation=ProfitAllocation(),
    )
    unit = unit.set_index("account_id")
    assert unit["infrastructure_usd_cents"].sum() == 1_001 and unit.loc["A3", "infrastructure_usd_cents"] == 0
    assert unit["support_usd_cents"].sum() == 301 and unit.loc["A3", "support_usd_cents"] == 0  # not in use
    assert (
        unit.loc["A1", "unit_profit_usd_cents"]
        == 10_000 - unit.loc["A1", ["infrastructure_usd_cents", "support_usd_cents"]].sum()
    )
    assert (
        pd.isna(unit.loc["A2", "unit_margin"])
        and unit.loc["A2", "unit_margin_null_reason"] == "no revenue: zero denominator"
    )
    assert pd.isna(unit.loc["A3", "revenue_per_seat_usd_cents"]) and notes == {}
    by_revenue = ProfitAllocation(infrastructure="revenue", support="revenue")
    nobody = revenue.assign(revenue_usd_cents=0)
    _, notes = unit_profit(
        nobody, usage, infrastructure_cents=5, support_cents=0, days_in_month=30, allocation=by_revenue
    )
    assert "not allocated" in notes["infrastructure"]


def test_arm_summaries_give_means_intervals_and_differences_from_control():
    unit = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(8)],
            "revenue_usd_cents": [100, 200, 300, 400, 500, 600, 700, 0],
            "infrastructure_usd_cents": 10, "support_usd_cents": 5,
            "unit_profit_usd_cents": [85, 185, 285, 385, 485, 585, 685, -15],
        }
    )  # fmt: skip
    arms = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(8)],
            "experiment": "pricing_v2",
            "arm": ["control"] * 4 + ["treatment"] * 3 + ["treatment"],
        }
    )
    out = arm_summaries(unit, arms, JoinLog(), confidence=0.95).set_index("arm")
    control = unit["unit_profit_usd_cents"][:4]
    half = 1.959964 * control.std() / 2
    assert out.loc["control", "mean_unit_profit_usd_cents"] == pytest.approx(control.mean())
    assert out.loc["control", "ci_low_usd_cents"] == pytest.approx(control.mean() - half, abs=0.01)
    assert out.loc["treatment", "accounts"] == 4 and out.loc["treatment", "paying_accounts"] == 3
    assert out.loc["treatment", "diff_vs_control_usd_cents"] == pytest.approx(
        unit["unit_profit_usd_cents"][4:].mean() - control.mean()
    )
    assert pd.isna(out.loc["control", "diff_vs_control_usd_cents"])
    solo = arm_summaries(unit.head(1), arms.head(1), JoinLog(), confidence=0.95)
    assert solo["note"].item() == "fewer than 2 accounts: no interval" and pd.isna(
        solo["ci_low_usd_cents"].item()
    )
    readable = readable_arms(out.reset_index())
    assert readable["mean unit profit"].iloc[0].startswith("$")

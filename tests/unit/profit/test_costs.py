"""helpers.profit.costs: the infrastructure breakdown and the expenses that land in the wrong month."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from helpers.core.config import ProfitConfig
from helpers.core.money import MICRO
from helpers.profit.completeness import CLOUD_BILL_COLUMNS
from helpers.profit.costs import expense_flags, infrastructure_breakdown, provider_key

pytestmark = pytest.mark.unit
UTC = dt.UTC
SETTINGS = ProfitConfig()


def test_infrastructure_breakdown_adds_up_to_each_providers_rounded_bill():
    rows = pd.DataFrame(
        {
            "period": "2024-09",
            "provider_key": ["aws", "aws", "aws", "oracle"],
            "ProviderName": ["AWS", "AWS", "AWS", "Oracle"],
            "ServiceName": ["EC2", "S3", "AWS Billing", "Compute"],
            "ChargeCategory": ["Usage", "Usage", "Credit", "Usage"],
            "Id": ["1", "2", "3", "4"],
            "cost": [Decimal("0.005"), Decimal("0.005"), Decimal("-0.001"), Decimal("2.675")],
        }
    )
    out = infrastructure_breakdown(rows, "2024-09")
    by_provider = out.groupby("provider_key")["cost_usd_cents"].sum().to_dict()
    assert by_provider == {"aws": 1, "oracle": 268}  # 0.009 -> 1 cent; 2.675 -> 268 (half-even of 267.5)
    assert out.loc[out["charge_category"] == "Credit", "cost_micros"].item() == -1_000  # credits kept
    assert provider_key("Microsoft") == "azure" and provider_key("Oracle Cloud") == "oracle_cloud"


def expense_rows(*rows: tuple) -> pd.DataFrame:
    """(id, category, incurred, submitted, amount USD cents)."""
    frame = pd.DataFrame(rows, columns=["expense_id", "category", "incurred", "submitted", "amount"])
    frame["incurred"] = pd.to_datetime(frame["incurred"])
    frame["submitted"] = pd.to_datetime(frame["submitted"])
    return frame.assign(
        submitted_at=frame["submitted"].dt.tz_localize("UTC") + pd.Timedelta(hours=15),
        currency="USD",
        usd_micro=frame["amount"] * MICRO,
        period=frame["incurred"].dt.strftime("%Y-%m"),
    )


def test_expense_flags_find_late_mistyped_and_outlier_expenses():
    ops = expense_rows(
        ("e1", "travel", "2026-08-20", "2026-10-05", 40_000),  # 46 days late, submitted in October
        ("e2", "travel", "2025-10-03", "2026-10-06", 40_000),  # the year mistyped
        ("e3", "travel", "2026-10-07", "2026-10-09", 4_000_000),  # 100x
        ("e4", "travel", "2026-10-01", "2026-10-03", 40_000),
        ("e5", "travel", "2026-09-12", "2026-09-15", 38_000),
        ("e6", "travel", "2026-10-12", "2026-10-30", 45_000),  # 18 days: ordinary
    )
    bills = pd.DataFrame(columns=list(CLOUD_BILL_COLUMNS))
    flags = expense_flags(ops, bills, "2026-10", dt.datetime(2026, 11, 20, tzinfo=UTC), SETTINGS)
    assert dict(zip(flags["id"], flags["kind"], strict=True)) == {
        "e1": "late_submission",
        "e2": "implausible_date",
        "e3": "outlier",
    }
    assert expense_flags(ops, bills, "2026-09", dt.datetime(2026, 11, 20, tzinfo=UTC), SETTINGS).empty

"""helpers.profit.completeness: daily deliveries, provisional reasons, staleness and cloud bills."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.core.config import ProfitConfig
from helpers.profit.completeness import cloud_bills, daily_deliveries, provisional_reasons, source_staleness

pytestmark = pytest.mark.unit
UTC = dt.UTC
SETTINGS = ProfitConfig()


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def arrivals(source: str, days: list[str], hour: float = 26.25) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": source,
            "partition": days,
            "rows": 1,
            "arrived_at": [ts(d) + pd.Timedelta(hours=hour) for d in days],
        }
    )


def september(*skip: int) -> list[str]:
    return [f"2026-09-{d:02d}" for d in range(1, 31) if d not in skip]


def test_daily_deliveries_and_reasons_name_the_missing_days():
    arr = {"billing_invoices": arrivals("billing_invoices", september(12, 13, 30))}
    d = daily_deliveries(arr, ["billing_invoices"], "2026-09", dt.datetime(2026, 10, 1, tzinfo=UTC))
    missing = d[~d["delivered"]]
    assert missing["day"].tolist() == ["2026-09-12", "2026-09-13", "2026-09-30"]
    assert missing["later_delivered"].tolist() == [True, True, False]
    assert missing["overdue"].tolist() == [True, True, False]  # Sep 30 is due on Oct 1 02:15
    reasons = provisional_reasons(
        "2026-09", dt.datetime(2026, 10, 1, tzinfo=UTC), deliveries=d, payroll_arrived=False,
        bills=pd.DataFrame(columns=["provider", "arrived", "due_at"]), cutoff=ts("2026-10-08"),
        open_lines=2, missing_renewals=0, quarantined=1,
    )  # fmt: skip
    assert (
        reasons[0]
        == "billing_invoices: 3 of 30 daily deliveries not arrived (2026-09-12..2026-09-13, 2026-09-30)"
    )
    assert "hr_payroll: payroll for 2026-09 not delivered" in reasons
    assert any("open until Finance's close (2026-10-07)" in r for r in reasons)
    assert any("2 invoice line(s)" in r for r in reasons) and any(
        "1 row(s) quarantined" in r for r in reasons
    )


def test_source_staleness_measures_from_the_last_delivery_the_period_needed():
    arr = {
        "billing_invoices": arrivals("billing_invoices", september(*range(26, 31))),  # stopped after the 25th
        "fx_rates": arrivals("fx_rates", september(12), hour=16.5),  # a hole, not staleness
    }
    late = dt.datetime(2026, 11, 20, tzinfo=UTC)
    s = source_staleness(arr, ["billing_invoices", "fx_rates"], "2026-09", late).set_index("source")
    assert s.loc["billing_invoices", "trailing_missing"] == [f"2026-09-{d}" for d in range(26, 31)]
    age = s.loc["billing_invoices", "reference_at"] - s.loc["billing_invoices", "last_arrival"]
    assert age == pd.Timedelta(days=5)  # judged at Oct 1 02:15, not at as_of
    assert s.loc["fx_rates", "trailing_missing"] == [] and s.loc["fx_rates", "last_partition"] == "2026-09-30"
    early = source_staleness(arr, ["fx_rates"], "2026-10", dt.datetime(2026, 10, 1, tzinfo=UTC))
    assert pd.isna(early["reference_at"].item())  # nothing of October due yet


def test_cloud_bills_are_expected_from_recent_providers_and_late_after_the_due_day():
    def bill(period: str, key: str, arrived: str, n: int = 2) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "period": period, "provider_key": key, "ProviderName": key.upper(),
                "Id": [f"{key}-{period}-{i}" for i in range(n)], "_arrived_at": ts(arrived),
            }
        )  # fmt: skip

    rows = pd.concat(
        [
            bill("2026-08", "aws", "2026-09-03"),
            bill("2026-08", "azure", "2026-09-05"),
            bill("2026-09", "aws", "2026-10-03"),
            bill("2026-09", "azure", "2026-10-26"),
        ]  # fmt: skip
    )
    bills = cloud_bills(rows, "2026-09", dt.datetime(2026, 10, 31, tzinfo=UTC), SETTINGS).set_index(
        "provider_key"
    )
    assert not bills.loc["aws", "late"] and bills.loc["azure", "late"]
    assert bills.loc["azure", "ids"] == ["azure-2026-09-0", "azure-2026-09-1"]
    not_yet = rows[~((rows["period"] == "2026-09") & (rows["provider_key"] == "azure"))]
    early = cloud_bills(not_yet, "2026-09", dt.datetime(2026, 10, 20, tzinfo=UTC), SETTINGS)
    assert early.set_index("provider_key").loc["azure", "overdue"]  # missing after its due day (Oct 8)

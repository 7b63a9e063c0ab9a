"""Monthly sources (cloud bills, payroll, Finance's ledger) are judged against their due date."""

import datetime as dt

import pandas as pd
import pytest

from helpers.checks.rules import monthly_source_outcome

pytestmark = pytest.mark.unit
UTC = dt.UTC


def arrived(*periods: str) -> pd.DataFrame:
    return pd.DataFrame({"partition": [f"{p}-01" for p in periods]})


@pytest.mark.parametrize(
    "as_of, have, status, severity",
    [
        ("2026-11-06T00:00", ("2026-09",), "pass", None),  # October's bill due 7 Nov (31 Oct + 7 days)
        ("2026-11-07T17:00", ("2026-09",), "pass", None),  # 17 h past due: inside the 18 h warning
        ("2026-11-07T19:00", ("2026-09",), "fail", "warning"),  # 19 h past due
        ("2026-11-08T01:00", ("2026-09",), "fail", "critical"),  # 25 h past due
        ("2026-11-20T00:00", ("2026-09", "2026-10"), "pass", None),  # delivered
    ],
)
def test_monthly_source_against_its_due_date(as_of, have, status, severity):
    out = monthly_source_outcome(
        arrived(*have), dt.datetime.fromisoformat(as_of).replace(tzinfo=UTC),
        due_days=7, warn_hours=18, critical_hours=24, what="source cloud_costs",
    )  # fmt: skip
    assert out.passed is (status == "pass")
    assert out.severity == severity
    assert out.evidence["expected_period"] == ("2026-10" if as_of >= "2026-11-07" else "2026-09")

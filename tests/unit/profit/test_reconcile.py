"""helpers.profit.reconcile on a hand-made month: every class of difference, exactly once, adding up."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from helpers.core.config import ProfitConfig
from helpers.core.money import MICRO
from helpers.profit import reconcile
from helpers.profit.costs import LINE_COLUMNS

pytestmark = pytest.mark.unit
SETTINGS = ProfitConfig()
CUTOFFS = {
    "2026-08": pd.Timestamp("2026-09-09", tz="UTC"),
    "2026-09": pd.Timestamp("2026-10-08", tz="UTC"),  # Finance closes September on Oct 7
    "2026-10": pd.Timestamp("2026-11-07", tz="UTC"),
}


def ours(*rows: tuple) -> pd.DataFrame:
    """Our lines: (period, category, subcategory, currency, local, usd cents)."""
    frame = pd.DataFrame(
        rows, columns=["period", "category", "subcategory", "currency", "amount_local", "usd_cents"]
    )
    return frame.assign(usd_micro=frame["usd_cents"] * MICRO, rows=1)[LINE_COLUMNS]


def ledger(*rows: tuple) -> pd.DataFrame:
    """Finance's lines: (period, category, subcategory, currency, local, rate, usd cents)."""
    frame = pd.DataFrame(
        rows, columns=["p", "category", "subcategory", "currency", "amount_local", "fx_rate", "amount_usd"]
    )
    return frame.assign(
        line_id=frame["p"] + "|" + frame["category"] + "|" + frame["subcategory"] + "|" + frame["currency"],
        period=pd.to_datetime(frame["p"] + "-01").dt.date,
        fx_rate=frame["fx_rate"].map(Decimal),
        booked_at=pd.Timestamp("2026-10-07 18:00", tz="UTC"),
        _partition=frame["p"] + "-01",
        _arrived_at=pd.Timestamp("2026-10-07 18:00", tz="UTC"),
    ).drop(columns="p")


def expenses(*rows: tuple) -> pd.DataFrame:
    """(id, category, incurred, submitted, amount USD cents)."""
    frame = pd.DataFrame(rows, columns=["expense_id", "category", "incurred", "submitted", "amount"])
    frame["submitted"] = pd.to_datetime(frame["submitted"])
    return frame.assign(
        period=pd.to_datetime(frame["incurred"]).dt.strftime("%Y-%m"),
        currency="USD",
        submitted_at=frame["submitted"].dt.tz_localize("UTC") + pd.Timedelta(hours=14),
        usd_micro=frame["amount"] * MICRO,
    )


def rates() -> pd.DataFrame:
    days = [pd.Timestamp("2026-08-31"), pd.Timestamp("2026-09-30"), pd.Timestamp("2026-10-31")]
    rows = [(d, "USD", 1_000_000) for d in days] + [
        (pd.Timestamp("2026-09-30"), "EUR", 1_080_000),
        (pd.Timestamp("2026-09-30"), "GBP", 1_270_000),
    ]
    frame = pd.DataFrame(rows, columns=["day", "currency", "rate_micros"])
    return frame.assign(rate_micros=frame["rate_micros"].astype("Int64"))


NO_OPEN = pd.DataFrame({"period": pd.Series(dtype=str), "currency": pd.Series(dtype=str),
                        "amount_local": pd.Series(dtype="int64"), "status": pd.Series(dtype=str)})  # fmt: skip


def run(our_lines, finance, ops, revenue_days=NO_OPEN):
    return reconcile.reconcile(our_lines, finance, ops, revenue_days, rates(), CUTOFFS, "2026-09", SETTINGS)


def component(evidence: pd.DataFrame, line_id: str, cls: str, cause: str | None = None) -> int:
    rows = evidence[(evidence["line_id"] == line_id) & (evidence["difference_class"] == cls)]
    if cause is not None:
        rows = rows[rows["cause"] == cause]
    return int(rows["component_usd_cents"].sum())


def test_every_class_of_difference_is_found_on_its_line_and_adds_up():
    our_lines = ours(
        ("2026-09", "revenue", "subscriptions", "EUR", 10_000, 10_850),  # daily rates gave more
        ("2026-09", "revenue", "subscriptions", "GBP", 20_000, 25_400),
        ("2026-09", "salaries", "Engineering", "USD", 100_000, 100_000),
        ("2026-09", "operations", "travel", "USD", 5_000, 5_000),
        ("2026-09", "operations", "contractors", "USD", 7_000, 7_000),
    )
    finance = ledger(
        ("2026-09", "revenue", "subscriptions", "EUR", 10_000, "1.080000", 10_800),
        ("2026-09", "revenue", "subscriptions", "GBP", 20_000, "1.300000", 26_000),  # not the month-end rate
        ("2026-09", "salaries", "Engineering", "USD", 100_500, "1", 100_500),
        ("2026-09", "operations", "legal_accounting", "USD", 3_000, "1", 3_000),  # we have none
        ("2026-10", "operations", "contractors", "USD", 7_000, "1", 7_000),  # booked a month late
        ("2026-10", "operations", "travel", "USD", 5_000, "1", 5_000),  # submitted after the close
    )
    ops = expenses(
        ("e1", "travel", "2026-09-28", "2026-10-20", 5_000),
        ("e2", "contractors", "2026-09-10", "2026-09-12", 7_000),
    )
    evidence, summary = run(our_lines, finance, ops)

    assert component(evidence, "2026-09|revenue|subscriptions|EUR", "fx", "rate_date") == 50
    assert component(evidence, "2026-09|revenue|subscriptions|GBP", "fx", "rate_source") == -600
    assert component(evidence, "2026-09|salaries|Engineering|USD", "unexplained") == -500
    assert component(evidence, "2026-09|operations|legal_accounting|USD", "missing_category") == -3_000
    assert component(evidence, "2026-09|operations|contractors|USD", "timing", "adjacent_month") == 7_000
    assert component(evidence, "2026-09|operations|travel|USD", "timing", "finance_close_rule") == 5_000
    travel = evidence[evidence["line_id"] == "2026-09|operations|travel|USD"]
    assert "e1 (submitted 2026-10-20 after the 2026-09 close) booked by Finance in 2026-10" in set(
        travel["detail"]
    )
    legal = evidence[
        (evidence["line_id"] == "2026-09|operations|legal_accounting|USD")
        & (evidence["component_usd_cents"] != 0)
    ]
    assert legal["cause"].tolist() == ["missing_in_ours"]

    # each line's components add up to its difference, and every line has every component
    sums = evidence.groupby("line_id").agg(
        parts=("component_usd_cents", "sum"), diff=("difference_usd_cents", "first")
    )
    assert (sums["parts"] == sums["diff"]).all()
    assert evidence.groupby("line_id").size().eq(len(reconcile.COMPONENTS)).all()

    unexpected = reconcile.unexpected_rows(evidence)
    assert set(unexpected["line_id"]) == {
        "2026-09|revenue|subscriptions|GBP",
        "2026-09|salaries|Engineering|USD",
        "2026-09|operations|legal_accounting|USD",
        "2026-09|operations|contractors|USD",
    }
    assert summary["status"] == "mismatch" and summary["unexpected_usd_cents"] == 600 + 500 + 3_000 + 7_000
    assert summary["tolerance_usd_cents"] == 100  # max(100 cents, 0.05% of 368.00 USD revenue)
    assert summary["by_class"]["fx/rate_date"] == 50


def test_expected_differences_alone_are_within_tolerance():
    our_lines = ours(
        ("2026-09", "revenue", "subscriptions", "EUR", 10_000, 10_850),
        ("2026-09", "operations", "travel", "USD", 5_000, 5_000),
    )
    finance = ledger(
        ("2026-09", "revenue", "subscriptions", "EUR", 10_000, "1.080000", 10_800),
        ("2026-10", "operations", "travel", "USD", 5_000, "1", 5_000),
    )
    ops = expenses(("e1", "travel", "2026-09-28", "2026-10-20", 5_000))
    evidence, summary = run(our_lines, finance, ops)
    assert summary["status"] == "within_tolerance" and summary["unexpected_usd_cents"] == 0
    assert reconcile.unexpected_rows(evidence).empty
    assert set(reconcile.nonzero(evidence)["cause"]) == {"rate_date", "finance_close_rule"}


def test_revenue_of_lines_in_dunning_explains_a_write_off_finance_already_made():
    our_lines = ours(("2026-09", "revenue", "subscriptions", "USD", 1_000, 1_000))
    finance = ledger(("2026-09", "revenue", "subscriptions", "USD", 700, "1", 700))
    open_lines = pd.DataFrame(
        {"period": ["2026-09"], "currency": ["USD"], "amount_local": [300], "status": ["open"]}
    )
    evidence, summary = run(our_lines, finance, expenses(), open_lines)
    assert component(evidence, "2026-09|revenue|subscriptions|USD", "timing", "dunning") == 300
    assert summary["status"] == "within_tolerance"


def test_a_timing_difference_needs_the_neighbours_ledger():
    our_lines = ours(("2026-09", "operations", "contractors", "USD", 7_000, 7_000))
    finance = ledger(
        ("2026-09", "revenue", "subscriptions", "USD", 0, "1", 0),
        ("2026-09", "operations", "contractors", "USD", 0, "1", 0),
    )
    evidence, summary = run(
        our_lines, finance, expenses(("e2", "contractors", "2026-09-10", "2026-09-12", 7_000))
    )
    assert component(evidence, "2026-09|operations|contractors|USD", "unexplained") == 7_000
    assert summary["status"] == "mismatch"


def test_without_finances_ledger_the_reconciliation_is_pending():
    evidence, summary = run(ours(("2026-09", "revenue", "subscriptions", "USD", 1, 1)), ledger(), expenses())
    assert summary["status"] == "pending" and evidence.empty
    assert "has not arrived" in summary["reason"]


def test_finance_period_follows_the_close_rule():
    ops = expenses(
        ("on_time", "travel", "2026-09-28", "2026-10-07", 1),  # submitted on the close day
        ("late", "travel", "2026-09-28", "2026-10-08", 1),
    )
    assert reconcile.finance_period(ops, CUTOFFS).tolist() == ["2026-09", "2026-10"]

"""The investor aggregate: periods, cross-pipeline validation, the long-form mart and its checks."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers import checks
from helpers.core.money import half_even
from helpers.core.periods import shift_period
from helpers.investor import aggregate as investor
from helpers.investor import cross_checks, metrics
from helpers.investor.inputs import Inputs, Source, SourceRun, reference_day, upstream_partitions
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
UTC = dt.UTC
P = "2026-09"
AS_OF = dt.datetime(2026, 10, 16, 12, tzinfo=UTC)


def profit_row(status: str = "final", reasons: str = "", margin: float | None = 0.35) -> dict:
    return {
        "period": P, "revenue_usd_cents": 10_000_000, "salaries_usd_cents": 5_000_000,
        "infrastructure_usd_cents": 1_000_000, "operations_usd_cents": 500_000, "total_cost_usd_cents": 6_500_000,
        "profit_usd_cents": 3_500_000, "margin": margin, "written_off_usd_cents": 10_000,
        "finance_difference_usd_cents": -1_234, "status": status, "provisional_reasons": reasons,
    }  # fmt: skip


def growth_row(status: str = "final") -> dict:
    return {
        "period": P, "starting_mrr_usd_cents": 9_800_000, "new_mrr_usd_cents": 300_000,
        "expansion_mrr_usd_cents": 100_000, "contraction_mrr_usd_cents": -50_000,
        "churn_voluntary_mrr_usd_cents": -40_000, "churn_involuntary_mrr_usd_cents": -10_000,
        "reactivation_mrr_usd_cents": 0, "ending_mrr_usd_cents": 10_100_000, "customers_start": 100,
        "new_customers": 5, "reactivated_customers": 0, "churned_customers": 3, "customers_end": 102,
        "nrr": 1.005, "grr": 0.99, "status": status,
    }  # fmt: skip


def engagement_row(through: str = "2026-09-30", complete: bool = True) -> dict:
    return {
        "period": P, "through_date": dt.date.fromisoformat(through), "complete": complete, "dau_avg": 41.5,
        "mau": 120, "stickiness": 0.3458, "active_accounts": 5, "events": 9_000, "api_requests": 700,
    }  # fmt: skip


GROWTH_ACCOUNTS = pd.DataFrame(
    {
        "account_id": ["A1", "A2", "A3", "A4"],
        "member_accounts": ["A1", "A2;A9", "A3", "A4"],
        "ending_mrr_usd_cents": [5_000_000, 3_000_000, 2_100_000, 0],
        "movement": ["flat", "expansion", "new", "churn_voluntary"],
    }
)
ENGAGEMENT_ACCOUNTS = pd.DataFrame(
    {"account_id": ["A1", "A9", "A3", "A4", "T1", "Z0"], "active_users": [4, 2, 1, 1, 3, 0]}
)


def source(
    pipeline: str, table: str, row: dict, *, final: bool = True, reasons: tuple = (), run: str = ""
) -> Source:
    rid = run or f"{pipeline}-{P}-20261016T120000-abcdef"
    part = "2026-09-30" if pipeline == metrics.ENGAGEMENT else P
    return Source(pipeline, table, part, SourceRun(pipeline, part, "succeeded", rid), pd.DataFrame([row]), rid,
                  final, reasons)  # fmt: skip


def inputs(*, profit_status: str = "final", engagement: bool = True, margin: float | None = 0.35) -> Inputs:
    runs_ = {p: SourceRun(p, P, "succeeded", f"{p}-run") for p in metrics.UPSTREAMS}
    reasons = ("hr_payroll: payroll for 2026-09 not delivered",) if profit_status != "final" else ()
    out = Inputs(P, AS_OF, dt.date(2026, 9, 30), runs_)
    out.profit = source(metrics.PROFIT, "profit_monthly", profit_row(profit_status, "; ".join(reasons), margin),
                        final=profit_status == "final", reasons=reasons)  # fmt: skip
    out.growth = source(metrics.GROWTH, "growth_mrr_monthly", growth_row())
    out.growth_accounts = GROWTH_ACCOUNTS
    if engagement:
        out.engagement = source(metrics.ENGAGEMENT, "engagement_monthly", engagement_row())
        out.engagement_accounts = ENGAGEMENT_ACCOUNTS
    else:
        out.runs[metrics.ENGAGEMENT] = SourceRun(
            metrics.ENGAGEMENT, "2026-09-30", "failed", "e-run", error="boom"
        )
        out.missing[metrics.ENGAGEMENT] = out.runs[metrics.ENGAGEMENT].describe()
    return out


# ---------------------------------------------------------------- periods


def test_reference_day_is_the_month_end_or_the_day_before_as_of():
    assert reference_day(P, AS_OF) == dt.date(2026, 9, 30)
    assert reference_day("2026-10", AS_OF) == dt.date(2026, 10, 15)
    assert upstream_partitions("2026-10", AS_OF)[metrics.ENGAGEMENT] == "2026-10-15"
    with pytest.raises(ValueError, match="nothing of the month"):
        reference_day("2026-11", AS_OF)
    assert shift_period("2026-01", -1) == "2025-12"
    assert shift_period("2026-09", -12) == "2025-09"
    assert shift_period("2025-12", 1) == "2026-01"


# ---------------------------------------------------------------- cross-pipeline validation


def test_revenue_vs_mrr_explains_the_difference_as_a_bridge():
    got = cross_checks.revenue_vs_mrr(10_000_000, 10_000, 9_800_000, 10_100_000)
    assert got.values == {
        "revenue_mrr_runrate_usd_cents": 9_950_000,
        "revenue_vs_mrr_difference_usd_cents": 50_000,
        "revenue_vs_mrr_unexplained_usd_cents": 60_000,
    }
    assert got.passed and "within ±3%" in got.summary
    # the bridge adds up: run-rate - written off + not itemised = revenue
    assert got.table["usd_cents"].iloc[:3].sum() == got.table["usd_cents"].iloc[3] == 10_000_000
    far = cross_checks.revenue_vs_mrr(9_000_000, 0, 9_800_000, 10_100_000, tolerance=0.03)
    assert not far.passed and "beyond ±3%" in far.summary and far.evidence["unexplained_share"] < -0.09
    assert cross_checks.revenue_vs_mrr(0, 0, 0, 0).passed  # no MRR and no revenue: nothing to explain
    assert half_even(5, 2) == 2 and half_even(7, 2) == 4


def test_revenue_vs_mrr_itemises_growths_bridge():
    # run-rate 9,950,000; timing -50,000; FX -300,000; unpaid dunning 20,000; credits -30,000
    bridge = cross_checks.MrrBridge(9_900_000, 9_600_000, 20_000, -30_000)
    assert bridge.implied_revenue == 9_550_000
    got = cross_checks.revenue_vs_mrr(9_500_000, 10_000, 9_800_000, 10_100_000, bridge=bridge)
    assert got.evidence["itemised"] == {
        "movement timing": -50_000, "FX": -300_000, "unpaid dunning": -20_000, "service credits": -30_000,
    }  # fmt: skip
    assert got.values["revenue_vs_mrr_unexplained_usd_cents"] == -50_000  # 9,500,000 - 9,550,000
    assert got.passed and got.evidence["unexplained_share"] == round(-50_000 / 9_950_000, 6)
    assert got.table["usd_cents"].iloc[:-1].sum() == got.table["usd_cents"].iloc[-1] == 9_500_000
    # the same figures without the bridge: FX and the rest look unexplained (-4.4 %) and fail
    assert not cross_checks.revenue_vs_mrr(9_500_000, 10_000, 9_800_000, 10_100_000).passed
    # a real mismatch is what the bridge does not explain
    short = cross_checks.revenue_vs_mrr(9_200_000, 10_000, 9_800_000, 10_100_000, bridge=bridge)
    assert not short.passed and "beyond ±3%" in short.summary
    assert short.evidence["unexplained_usd_cents"] == -350_000
    row = {**growth_row(), **dict(zip(cross_checks.MrrBridge.COLUMNS.values(), (1, 2, 3, 4), strict=True))}
    assert cross_checks.MrrBridge.from_row(row) == cross_checks.MrrBridge(1, 2, 3, 4)
    assert cross_checks.MrrBridge.from_row(growth_row()) is None  # a mart without the bridge
    assert cross_checks.MrrBridge.from_row(pd.Series({**row, "service_credits_usd_cents": None})) is None


def test_engaged_accounts_follow_companies_through_their_member_accounts():
    got = cross_checks.engaged_accounts(GROWTH_ACCOUNTS, ENGAGEMENT_ACCOUNTS)
    # A1 active; A2 through its member A9; A3 active. A4 churned, T1 a trial, Z0 has no active user.
    assert got.passed and got.values == {"paying_engaged_share": 1.0, "paying_not_engaged": 0}
    assert got.evidence["active_not_paying"] == {
        "churned in the month": 1,
        "not paying (trial, grace or never paid)": 1,
    }
    quiet = ENGAGEMENT_ACCOUNTS[ENGAGEMENT_ACCOUNTS["account_id"] != "A3"]
    low = cross_checks.engaged_accounts(GROWTH_ACCOUNTS, quiet, min_share=0.95)
    assert not low.passed and low.evidence["not_engaged"] == ["A3"] and "A3" in low.summary
    assert cross_checks.engaged_accounts(GROWTH_ACCOUNTS.iloc[0:0], ENGAGEMENT_ACCOUNTS).passed


def test_figures_consistent_names_a_broken_identity():
    pv = investor.profit_values(profit_row())
    gv = investor.growth_values(growth_row())
    assert cross_checks.figures_consistent(pv, gv).passed
    broken = cross_checks.figures_consistent({**pv, "profit_usd_cents": 1}, {**gv, "customers_end": 1})
    assert not broken.passed
    assert broken.evidence["broken"] == [
        "profit = revenue - total costs",
        "customers start + new + reactivated - churned = end",
    ]


# ---------------------------------------------------------------- the long-form mart


def test_build_writes_every_metric_with_status_and_provenance():
    fig = investor.build(inputs(profit_status="provisional"), run_id="investor-run")
    m = fig.monthly.set_index("metric")
    assert list(fig.monthly.columns) == list(metrics.COLUMNS)
    assert fig.monthly["value"].notna().all() and fig.monthly["metric"].is_unique
    assert (
        fig.value("revenue_usd_cents") == 10_000_000 and m.loc["revenue_usd_cents", "value_int"] == 10_000_000
    )
    assert fig.value("arr_usd_cents") == 12 * 10_100_000
    assert fig.value("arpa_usd_cents") == 99_020  # 10,100,000 / 102, half-even
    assert fig.value("logo_churn_rate") == pytest.approx(0.03)
    assert pd.isna(m.loc["margin", "value_int"]) and m.loc["margin", "value"] == 0.35
    assert m.loc["revenue_usd_cents", "status"] == "provisional"
    assert "payroll" in m.loc["revenue_usd_cents", "status_reason"]
    assert m.loc["ending_mrr_usd_cents", "status"] == "final" and m.loc["mau", "status"] == "final"
    assert m.loc["mau", "source_run_id"] == f"{metrics.ENGAGEMENT}-{P}-20261016T120000-abcdef"
    # a cross-pipeline figure names both runs and is provisional when one side is
    cross = m.loc["revenue_vs_mrr_unexplained_usd_cents"]
    assert cross["source_pipeline"] == metrics.PIPELINE and cross["status"] == "provisional"
    assert cross["source_run_id"].split(";") == [
        f"{metrics.PROFIT}-{P}-20261016T120000-abcdef",
        f"{metrics.GROWTH}-{P}-20261016T120000-abcdef",
    ]
    assert fig.status == "provisional"
    assert fig.provisional_reasons == [f"{metrics.PROFIT}: hr_payroll: payroll for 2026-09 not delivered"]
    assert set(fig.cross_checks) == {"figures_consistent", "revenue_vs_mrr", "engaged_accounts"}
    assert investor.build(inputs(), run_id="r").status == "final"


def test_build_itemises_with_the_bridge_growth_published():
    with_bridge = inputs()
    columns = cross_checks.MrrBridge.COLUMNS.values()
    row = {**growth_row(), **dict(zip(columns, (9_900_000, 9_950_000, 0, 0), strict=True))}
    with_bridge.growth = source(metrics.GROWTH, "growth_mrr_monthly", row)
    check = investor.build(with_bridge, run_id="r").cross_checks["revenue_vs_mrr"]
    assert check.evidence["itemised_by"] == "growth_mrr_monthly"
    assert check.values["revenue_vs_mrr_unexplained_usd_cents"] == 50_000  # 10,000,000 - 9,950,000
    plain = investor.build(inputs(), run_id="r").cross_checks["revenue_vs_mrr"]
    assert plain.evidence["itemised_by"] == "profit_monthly"


def test_ratios_are_stored_at_full_precision():
    values = investor.growth_values({**growth_row(), "customers_start": 7, "churned_customers": 1})
    assert values["logo_churn_rate"] == 1 / 7  # rounded only for display (format_value)
    assert metrics.format_value(values["logo_churn_rate"], "ratio") == "14.3%"


def test_a_missing_upstream_leaves_its_figures_out_never_null():
    fig = investor.build(inputs(engagement=False, margin=None), run_id="r")
    assert not fig.monthly["source_pipeline"].eq(metrics.ENGAGEMENT).any()
    assert "margin" not in set(fig.monthly["metric"])  # no revenue ratio without a margin: no row
    assert "engaged_accounts" not in fig.cross_checks
    assert fig.status == "provisional" and fig.provisional_reasons[0].startswith("engagement_aggregate: ")
    ctx = checks.CheckContext(metrics.PIPELINE, P, AS_OF, "r", {"figures": fig})
    [upstreams] = [c for c in checks.registered(metrics.PIPELINE) if c.id.endswith("upstreams_succeeded")]
    result = checks.evaluate(upstreams, ctx)
    assert result.status == "fail" and result.severity == "critical" and "failed" in result.summary
    assert result.evidence["upstream"] == metrics.ENGAGEMENT


def test_format_value_for_people():
    assert metrics.format_value(-123456, "usd_cents") == "-$1,234.56"
    assert metrics.format_value(0.2939, "ratio") == "29.4%"
    assert metrics.format_value(3820.23, "users") == "3,820.2"
    assert metrics.format_value(10829, "users") == "10,829"
    assert metrics.format_value(None, "count") == "n/a"


def test_write_is_idempotent_and_reads_back_wide(warehouse_url):
    """On SQLite and on PostgreSQL: the long form, exact integers and provenance survive both."""
    fig = investor.build(inputs(), run_id="investor-run")
    assert investor.write(fig) == len(fig.monthly)
    first = investor.read_monthly([P])
    investor.write(fig)
    again = investor.read_monthly([P])
    pd.testing.assert_frame_equal(first, again)
    assert int(first.set_index("metric").loc["profit_usd_cents", "value_int"]) == 3_500_000
    wide = investor.wide(first)
    assert list(wide["period"]) == [P] and wide.loc[0, "customers_end"] == 102
    written = warehouse.read_table("partition_writes", where={"table_name": metrics.TABLE})
    assert list(written["run_id"]) == ["investor-run"]
    assert investor.read_monthly(["2020-01"]).empty

"""The Profit checks on the demo company, as the notebook computes and evaluates them.

Each Profit fault is injected in turn (``demo_landing(..., faults=(...))``): the matching check must
fail with evidence naming exactly the injected rows of ``_faults.json``, and no Profit check may
fire on the months the fault does not touch (nor on any month of the clean company). Then a
genuine FOCUS 1.0 file landed as the cloud-cost source gives each provider's BilledCost total.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pandas as pd
import pytest

from conftest import FOCUS_SAMPLE, REPO, demo_landing
from helpers import checks  # noqa: F401  (registers the checks)
from helpers.core import businesscal  # noqa: F401  (registers the checks)
from helpers.core import config as cfgmod
from helpers.profit import checks as profit_checks  # noqa: F401  (registers the checks)
from helpers.profit.aggregate import Aggregate, build_aggregate
from helpers.profit.inputs import load_inputs
from helpers.storage import landing  # noqa: F401  (registers the checks)
from helpers.storage.extract import focus

pytestmark = pytest.mark.unit

DEMO = {"accounts": 200, "months": 4, "seed": 7, "end": "2026-10-31"}
AS_OF = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)  # every delivery of the history has landed
CONFIG = cfgmod.load(REPO / "config")
SETTINGS = CONFIG.pipelines.profit
CALENDAR = businesscal.BusinessCalendar.from_team(CONFIG.team)
SAMPLE = FOCUS_SAMPLE
CHECK_IDS = {c.catalogue_id: c.id for c in checks.registered("profit_aggregate")}


def evaluate(
    root: Path, period: str, as_of: dt.datetime = AS_OF
) -> tuple[Aggregate, dict[str, checks.CheckResult]]:
    """Build the month as the notebook does and evaluate every profit_aggregate check on it."""
    inputs = load_inputs(period, as_of, settings=SETTINGS, root=root)
    agg = build_aggregate(inputs, settings=SETTINGS, calendar=CALENDAR, run_id="test")
    ctx = checks.CheckContext("profit_aggregate", period, as_of, "test", {"aggregate": agg})
    return agg, {c.catalogue_id: checks.evaluate(c, ctx) for c in checks.registered("profit_aggregate")}


def truth(root: Path) -> list[dict]:
    return json.loads((root / "_faults.json").read_text())["faults"]


def assert_only(results: dict[str, checks.CheckResult], *failing: str) -> None:
    statuses = {k: r.status for k, r in results.items()}
    assert statuses == {k: "fail" if k in failing else "pass" for k in statuses}, {
        k: r.summary for k, r in results.items() if r.status != "pass"
    }


def test_all_five_catalogue_ids_have_a_check_with_its_runbook():
    assert set(CHECK_IDS) == {
        "finance_mismatch", "missing_subscription_data", "expenses_wrong_month", "math_errors", "stale_data",
    }  # fmt: skip
    for c in checks.registered("profit_aggregate"):
        assert c.runbook == f"notebooks/runbooks/profit/{c.catalogue_id}.ipynb" and not c.blocking
    assert {c.catalogue_id for c in checks.registered("profit_unit")} == {"math_errors", "stale_data"}


@pytest.mark.parametrize("period", ["2026-07", "2026-08", "2026-09", "2026-10"])
def test_clean_company_no_check_fires_and_every_month_reconciles(tmp_path_factory, period):
    agg, results = evaluate(demo_landing(tmp_path_factory, **DEMO), period)
    assert_only(results)
    assert agg.recon["status"] == "within_tolerance" and agg.recon["unexpected_usd_cents"] == 0
    assert agg.profit["status"].item() == "final" and agg.findings.empty


def test_finance_mismatch_names_the_injected_ledger_lines(tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO, faults=("finance_mismatch@2026-10-01",))
    gt = {r["description"].split(":")[0]: r for r in truth(root)}
    timing, fx, missing = gt["timing"], gt["FX"], gt["missing category"]
    sep, sep_results = evaluate(root, "2026-09")
    oct_, oct_results = evaluate(root, "2026-10")
    assert_only(sep_results, "finance_mismatch")
    assert_only(oct_results, "finance_mismatch")
    by_class = {**sep_results["finance_mismatch"].evidence["line_ids_by_class"]}
    assert by_class == {"timing": [timing["rows"][0]]}
    oct_classes = oct_results["finance_mismatch"].evidence["line_ids_by_class"]
    legal = f"{missing['details']['period']}|operations|{missing['details']['category']}|USD"
    assert oct_classes == {"timing": [timing["rows"][1]], "fx": fx["rows"], "missing_category": [legal]}
    rows = {
        (r["line_id"], r["difference_class"]): r for r in oct_results["finance_mismatch"].evidence["rows"]
    }
    assert rows[(legal, "missing_category")]["component_local"] == -missing["details"]["amount"]
    assert rows[(timing["rows"][1], "timing")]["component_local"] == -timing["details"]["amount"]
    assert rows[(fx["rows"][0], "fx")]["cause"] == "rate_source"
    assert sep.profit["reconciliation_status"].item() == "mismatch"
    assert_only(evaluate(root, "2026-08")[1])  # a month the fault does not touch


def lost_renewals(clean: Path, faulty: Path, lost_line_ids: list[str]) -> set[str]:
    """Subscriptions whose renewal invoice line was lost (not a first invoice, not re-delivered)."""
    inv = landing.read_source("billing_invoices", root=clean)
    first = inv.sort_values("period_start").groupby("subscription_id")["invoice_line_id"].first()
    still_there = set(landing.read_source("billing_invoices", root=faulty)["invoice_line_id"])
    lost = inv[inv["invoice_line_id"].isin(lost_line_ids) & ~inv["invoice_line_id"].isin(still_there)]
    lost = lost[(lost["line_type"] == "subscription") & ~lost["invoice_line_id"].isin(first)]
    return set(lost["subscription_id"])


def test_missing_subscription_data_names_the_lost_renewals_and_the_empty_days(tmp_path_factory):
    clean = demo_landing(tmp_path_factory, **DEMO)
    root = demo_landing(tmp_path_factory, **DEMO, faults=("missing_subscription_data@2026-10-12",))
    gt = {r["source"]: r for r in truth(root)}
    agg, results = evaluate(root, "2026-10")
    assert_only(results, "missing_subscription_data", "finance_mismatch")  # the lost revenue is real
    ev = results["missing_subscription_data"].evidence
    expected = lost_renewals(clean, root, gt["billing_invoices"]["rows"])
    assert expected and set(ev["missing_subscription_ids"]) == expected
    assert ev["empty_deliveries_with_renewals_due"] == gt["billing_invoices"]["details"]["partitions"]
    assert results["missing_subscription_data"].severity == "critical"
    assert agg.profit["status"].item() == "provisional"
    assert_only(evaluate(root, "2026-09")[1])


def test_expenses_wrong_month_names_the_late_mistyped_outlier_and_delayed_rows(tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO, faults=("expenses_wrong_month@2026-10-10",))
    gt = truth(root)
    injected_ops = {row for r in gt if r["source"] == "ops_expenses" for row in r["rows"]}
    injected_cloud = {row for r in gt if r["source"] == "cloud_costs" for row in r["rows"]}
    flagged: dict[str, set[str]] = {}
    for period in ("2026-09", "2026-10"):
        _, results = evaluate(root, period)
        ev = results["expenses_wrong_month"].evidence
        assert results["expenses_wrong_month"].status == "fail"
        for kind, ids in ev["ids_by_kind"].items():
            flagged.setdefault(kind, set()).update(ids)
    assert flagged["cloud_bill_late"] == injected_cloud
    ops_flagged = flagged["late_submission"] | flagged["implausible_date"] | flagged["outlier"]
    assert ops_flagged == injected_ops
    by_description = {r["description"].split(":")[0]: set(r["rows"]) for r in gt}
    assert flagged["outlier"] == by_description["fat-fingered amount"]
    assert flagged["implausible_date"] == by_description["fat-fingered incurred date"]
    assert flagged["late_submission"] == by_description["late ops submission"]
    # before the late bill arrives the month is provisional and the bill overdue
    early, early_results = evaluate(root, "2026-09", dt.datetime(2026, 10, 20, tzinfo=dt.UTC))
    assert early_results["expenses_wrong_month"].evidence["ids_by_kind"]["cloud_bill_overdue"] == [
        "azure:2026-09"
    ]
    assert any("Microsoft's bill for 2026-09 not arrived" in r for r in early.reasons)
    assert_only(evaluate(root, "2026-08")[1])


def test_math_errors_quarantines_and_names_exactly_the_injected_rows(tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO, faults=("math_errors@2026-10-15",))
    gt = {r["source"]: set(r["rows"]) for r in truth(root)}
    agg, results = evaluate(root, "2026-10")
    assert_only(results, "math_errors", "finance_mismatch")  # quarantined lines leave real revenue out
    ev = results["math_errors"].evidence
    assert {k: set(v) for k, v in ev["keys_by_source"].items()} == gt
    assert ev["counts"] == {"coerced": 1, "deduplicated": 1, "quarantined": 4}
    assert all(j["left_rows"] == j["result_rows"] for j in ev["joins"])  # no join fanned out
    assert results["math_errors"].severity == "critical"
    assert agg.profit["quarantined_rows"].item() == 4 and agg.profit["status"].item() == "provisional"
    assert agg.findings.loc[agg.findings["source"] == "ops_expenses", "action"].tolist() == ["coerced"]
    assert_only(evaluate(root, "2026-09")[1])


def test_stale_data_names_the_source_and_the_withheld_days(tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO, faults=("stale_data@2026-10-25",))
    (gt,) = truth(root)
    agg, results = evaluate(root, "2026-10")
    assert results["stale_data"].status == "fail" and results["stale_data"].severity == "critical"
    ev = results["stale_data"].evidence
    assert ev["stale_sources"] == [gt["source"]]
    (stale,) = [s for s in ev["sources"] if s["status"] == "fail"]
    assert stale["trailing_missing"] == gt["details"]["withheld_partitions"]
    assert stale["last_partition"] == gt["details"]["last_delivered_partition"]
    assert results["missing_subscription_data"].status == "pass"  # trailing days are staleness, not a gap
    assert_only(evaluate(root, "2026-09")[1])


# ---------------------------------------------------------------- a genuine FOCUS file


def csv_totals(path: Path, month: str) -> dict[str, Decimal]:
    """BilledCost per provider of one billing period, read with the csv module alone."""
    totals: dict[str, Decimal] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["BillingPeriodStart"].startswith(month):
                totals[row["ProviderName"]] = totals.get(row["ProviderName"], Decimal(0)) + Decimal(
                    row["BilledCost"]
                )
    return totals


def test_a_focus_file_as_the_cloud_source_gives_each_providers_billed_cost(tmp_path):
    root = tmp_path / "landing"
    focus.land_focus(SAMPLE, arrived_at=dt.datetime(2024, 10, 5, 8, tzinfo=dt.UTC), root=root)
    inputs = load_inputs("2024-09", dt.datetime(2024, 10, 20, tzinfo=dt.UTC), settings=SETTINGS, root=root)
    agg = build_aggregate(inputs, settings=SETTINGS, calendar=CALENDAR, run_id="focus")
    expected = csv_totals(SAMPLE, "2024-09")
    assert set(expected) == {"AWS", "Microsoft", "Oracle"}
    infra = agg.costs[agg.costs["category"] == "infrastructure"]
    cents = infra.groupby("provider")["cost_usd_cents"].sum().to_dict()
    assert cents == {p: int((t * 100).to_integral_value(ROUND_HALF_EVEN)) for p, t in expected.items()}
    micros = infra.groupby("provider")["cost_micros"].sum().to_dict()
    assert all(
        abs(micros[p] - t * 1_000_000) <= len(infra) for p, t in expected.items()
    )  # per-row rounding only
    assert agg.totals["infrastructure"] == sum(cents.values())
    assert set(infra["charge_category"]) == {"Usage", "Credit", "Adjustment"}  # credits and adjustments kept
    # nothing else has landed: revenue is zero, so the margin is a NULL with its reason, and the month provisional
    assert agg.totals["revenue"] == 0 and pd.isna(agg.profit["margin"].item())
    assert agg.profit["margin_null_reason"].item() == "margin = profit / revenue: zero denominator"
    assert agg.profit["status"].item() == "provisional" and agg.recon["status"] == "pending"
    october = build_aggregate(
        load_inputs("2024-10", dt.datetime(2024, 11, 20, tzinfo=dt.UTC), settings=SETTINGS, root=root),
        settings=SETTINGS, calendar=CALENDAR, run_id="focus",
    )  # fmt: skip
    assert october.totals["infrastructure"] == 24  # the one Oracle charge billed in October 2024 ($0.24)

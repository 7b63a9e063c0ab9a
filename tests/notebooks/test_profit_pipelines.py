"""The Profit pipelines end to end: real notebook runs through the CLI and the runner.

The figures are checked against a recomputation written independently and differently from the
landing files: manifests and Parquet files read directly, every invoice line expanded day by day
in plain Python with ``Decimal`` FX, costs summed row by row. Notebook runs cost several seconds
each, so the clean month's runs are shared by the assertions of one test.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing, home_with_demo, workbook
from helpers.checks import store
from helpers.profit.aggregate import build_aggregate
from helpers.profit.inputs import load_inputs
from helpers.runs import records as runs
from helpers.runs import runner
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks

DEMO = {"accounts": 200, "months": 4, "seed": 7, "end": "2026-10-31"}
AS_OF = "2026-10-20T00:00:00Z"  # September: Finance's ledger (Oct 7) and every bill have landed
MARTS = {
    "profit_aggregate": (
        "profit_monthly",
        "profit_costs_monthly",
        "finance_reconciliation",
        "profit_quarantine",
    ),
    "profit_unit": ("profit_unit_monthly", "profit_unit_arms", "profit_unit_quarantine"),
}


# ---------------------------------------------------------------- the independent recomputation


def landed(root: Path, source: str, as_of: dt.datetime) -> pd.DataFrame:
    """Every file of ``source`` that had arrived by ``as_of``, read straight from its manifest."""
    frames = []
    manifest = root / source / "_manifest.jsonl"
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        if dt.datetime.fromisoformat(entry["arrived_at"]) <= as_of:
            frames.append(pd.read_parquet(root / source / entry["file"]).assign(_arrived=entry["arrived_at"]))
    return pd.concat(frames, ignore_index=True)


def newest(frame: pd.DataFrame, key: str, order: str) -> list[dict]:
    rows: dict[str, dict] = {}
    for row in frame.sort_values([order, "_arrived"], kind="stable").to_dict("records"):
        rows[row[key]] = row
    return list(rows.values())


def independent(root: Path, period: str, as_of: dt.datetime) -> dict[str, Decimal]:
    """Revenue and costs of ``period`` in exact USD cents (Decimal, not rounded)."""
    first = dt.date.fromisoformat(period + "-01")
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    rate = {
        (r["date"], r["currency"]): Decimal(str(r["usd_per_unit"]))
        for r in newest(landed(root, "fx_rates", as_of).assign(k=lambda f: f["date"].astype(str) + f["currency"]), "k", "date")
    }  # fmt: skip
    rate.update({(first + dt.timedelta(days=i), "USD"): Decimal(1) for i in range(31)})
    out: dict[str, Decimal] = defaultdict(Decimal)
    for line in newest(landed(root, "billing_invoices", as_of), "invoice_line_id", "updated_at"):
        if line["status"] == "uncollectible":
            continue
        days = (line["period_end"] - line["period_start"]).days
        for k in range(days):  # one service day at a time, each at its own day's rate
            day = line["period_start"] + dt.timedelta(days=k)
            if first <= day < nxt:
                part = line["amount"] * (k + 1) // days - line["amount"] * k // days
                out["revenue"] += part * rate[(day, line["currency"])]
    for row in landed(root, "hr_payroll", as_of).to_dict("records"):
        if row["payroll_month"] == first:
            out["salaries"] += row["gross_pay"] + row["employer_taxes"] + row["benefits"]
    for row in newest(landed(root, "cloud_costs", as_of), "Id", "BillingPeriodStart"):
        if row["BillingPeriodStart"].date() == first:
            out[f"infrastructure:{row['ProviderName']}"] += row["BilledCost"] * 100
    for row in newest(landed(root, "ops_expenses", as_of), "expense_id", "submitted_at"):
        if first <= row["incurred_date"] < nxt:
            out["operations"] += int(row["amount"]) * rate[(row["incurred_date"], row["currency"])]
    providers = [k for k in out if k.startswith("infrastructure:")]
    out["infrastructure"] = sum(
        (Decimal(int(out[k].to_integral_value(ROUND_HALF_EVEN))) for k in providers), Decimal(0)
    )  # Finance and we round each provider's bill
    return dict(out)


@pytest.mark.parametrize("period", ["2026-07", "2026-08", "2026-09", "2026-10"])
def test_every_month_matches_the_independent_recomputation(tmp_path_factory, period):
    """The pipeline's functions (as the notebook calls them) on each month of the clean company."""
    from helpers.core import businesscal
    from helpers.core import config as cfgmod

    root = demo_landing(tmp_path_factory, **DEMO)
    as_of = pd.Timestamp(f"{period}-01", tz="UTC") + pd.offsets.MonthBegin(1) + pd.Timedelta(days=19)
    cfg = cfgmod.load(Path(__file__).resolve().parents[2] / "config")
    inputs = load_inputs(period, as_of.to_pydatetime(), settings=cfg.pipelines.profit, root=root)
    agg = build_aggregate(
        inputs,
        settings=cfg.pipelines.profit,
        calendar=businesscal.BusinessCalendar.from_team(cfg.team),
        run_id="t",
    )
    want = independent(root, period, as_of.to_pydatetime())
    got = agg.totals
    assert abs(got["revenue"] - want["revenue"]) <= 2  # four currency lines, each rounded once
    assert got["salaries"] == want["salaries"] and got["infrastructure"] == want["infrastructure"]
    assert abs(got["operations"] - want["operations"]) <= 6
    assert agg.recon["status"] == "within_tolerance"


# ---------------------------------------------------------------- real runs


def run_cli(*args: str) -> dict:
    proc = workbook(*args, "--json", "-q")
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def marts() -> dict[str, pd.DataFrame]:
    return {
        t: warehouse.read_table(t, where={"period": "2026-09"}) for tables in MARTS.values() for t in tables
    }


def test_clean_month_runs_through_the_cli_publishes_and_reruns_identically(home, tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO)
    home_with_demo(home, root)
    agg_run = run_cli("run", "profit_aggregate", "--date", "2026-09", "--as-of", AS_OF)
    assert agg_run["status"] == "succeeded", agg_run
    unit_run = run_cli("run", "profit_unit", "--date", "2026-09", "--as-of", AS_OF)
    assert unit_run["status"] == "succeeded", unit_run

    # headline scraps: the investor aggregate's contract, against the independent recomputation
    scraps = runs.get_scraps(agg_run["run_id"])
    want = independent(root, "2026-09", dt.datetime(2026, 10, 20, tzinfo=dt.UTC))
    assert abs(scraps["revenue_usd_cents"] - want["revenue"]) <= 2
    assert scraps["costs_usd_cents"]["salaries"] == want["salaries"]
    assert scraps["costs_usd_cents"]["infrastructure"] == want["infrastructure"]
    assert abs(scraps["costs_usd_cents"]["operations"] - want["operations"]) <= 6
    assert scraps["total_cost_usd_cents"] == sum(scraps["costs_usd_cents"].values())
    assert scraps["profit_usd_cents"] == scraps["revenue_usd_cents"] - scraps["total_cost_usd_cents"]
    assert scraps["margin"] == pytest.approx(scraps["profit_usd_cents"] / scraps["revenue_usd_cents"])
    assert (scraps["status"], scraps["provisional_reasons"]) == ("final", [])
    assert scraps["reconciliation_status"] == "within_tolerance" and scraps["quarantined_rows"] == 0
    assert set(scraps["check_statuses"].values()) == {"pass"}, scraps["check_statuses"]

    # the marts agree with the scraps and with each other
    first = marts()
    monthly = first["profit_monthly"].iloc[0]
    assert monthly["profit_usd_cents"] == scraps["profit_usd_cents"] and monthly["status"] == "final"
    costs = first["profit_costs_monthly"].groupby("category")["cost_usd_cents"].sum().to_dict()
    assert costs == scraps["costs_usd_cents"]
    recon = first["finance_reconciliation"]
    assert not len(recon[~recon["expected"] & (recon["component_usd_cents"] != 0)])
    stored = store.list_results(run_id=agg_run["run_id"], check_id="profit_aggregate.finance_mismatch")
    assert (
        stored[0]["status"] == "pass"
        and stored[0]["evidence"]["reconciliation"]["status"] == "within_tolerance"
    )

    # unit level: accounts add up to the aggregate's revenue and its allocated pools
    unit = first["profit_unit_monthly"]
    assert unit["revenue_usd_cents"].sum() == scraps["revenue_usd_cents"]
    assert unit["infrastructure_usd_cents"].sum() == scraps["costs_usd_cents"]["infrastructure"]
    unit_scraps = runs.get_scraps(unit_run["run_id"])
    assert unit_scraps["accounts"] == len(unit) and set(unit_scraps["check_statuses"].values()) == {"pass"}
    arms = first["profit_unit_arms"]
    assert set(arms["experiment"]) == {"pricing_v2", "onboarding_checklist"}
    assert (arms["ci_low_usd_cents"] <= arms["mean_unit_profit_usd_cents"]).all()
    assert arms["accounts"].sum() == unit["experiment_arms"].str.count("=").sum()

    # a re-run (both pipelines, gated in order) leaves identical marts, provenance aside
    again = run_cli(
        "run-all", "--date", "2026-09-30", "--as-of", AS_OF, "--pipelines", "profit_aggregate,profit_unit",
        "--no-checks",
    )  # fmt: skip
    assert {o["status"] for o in again["outcomes"]} == {"succeeded"}, again
    second = marts()
    for table, frame in first.items():
        pd.testing.assert_frame_equal(
            frame.drop(columns="run_id"), second[table].drop(columns="run_id"), obj=table
        )


def test_a_fault_fails_its_check_inside_the_run_and_quarantines_the_rows(home, tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO, faults=("math_errors@2026-10-15",))
    home_with_demo(home, root)
    result = runner.run_pipeline(
        "profit_aggregate",
        "2026-10",
        clock=lambda: dt.datetime.now(dt.UTC),
        as_of=dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
    )
    assert result.status == "succeeded"  # the checks alert; they do not block publishing
    (stored,) = store.list_results(run_id=result.run_id, check_id="profit_aggregate.math_errors")
    truth = {r["source"]: set(r["rows"]) for r in json.loads((root / "_faults.json").read_text())["faults"]}
    assert stored["status"] == "fail" and stored["runbook"] == "notebooks/runbooks/profit/math_errors.ipynb"
    assert {k: set(v) for k, v in stored["evidence"]["keys_by_source"].items()} == truth
    quarantine = warehouse.read_table("profit_quarantine", where={"period": "2026-10"})
    assert set(zip(quarantine["source"], quarantine["key_value"], strict=True)) == {
        (s, k) for s, keys in truth.items() for k in keys
    }
    scraps = runs.get_scraps(result.run_id)
    assert scraps["status"] == "provisional" and scraps["quarantined_rows"] == 4
    assert scraps["check_statuses"]["profit_aggregate.math_errors"] == "fail"
    alerts = workbook("alerts", "--open", "--pipeline", "profit_aggregate", "--json")
    assert any(a["check_id"] == "profit_aggregate.math_errors" for a in json.loads(alerts.stdout)), (
        alerts.stdout
    )

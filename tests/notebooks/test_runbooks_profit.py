"""The Profit runbooks end to end: fault -> pipeline run -> alert -> runbook (diagnose + fix + verify).

Each test copies a tiny demo company with one Profit fault into its own ``WORKBOOK_HOME`` (the fix
re-extracts into the landing zone, so the shared cache is never written), runs ``profit_aggregate``
for the month through the runner so the check fails and the alert opens, then runs the alert's
runbook once through ``helpers.runbooks.registry.run_runbook`` with ``apply_fix=True``: papermill executes
diagnose, fix and verify in one go. The assertions read what the runbook recorded (cause,
diagnosis, evidence, fixes, verification) against ``_faults.json``, and the repaired marts against
the same months computed in-process from the clean company: money figures must be equal to the
cent (tolerance 0).

The demo's source systems (what a re-extract reads) are the clean company of the same spec, which
the cached clean landing zone is, byte for byte; one test lets the runbook generate it, the others
link the cached one in to save the generation.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from functools import cache
from pathlib import Path

import pytest

from conftest import REPO, demo_landing, home_with_demo
from helpers.core import businesscal
from helpers.core import config as cfgmod
from helpers.demo import source_system as demo_source_system
from helpers.oncall import alerts
from helpers.profit import repair
from helpers.profit import runbook as rp
from helpers.profit.aggregate import build_aggregate
from helpers.profit.inputs import load_inputs
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks
from helpers.runs import runner
from helpers.storage import source_systems, warehouse

pytestmark = pytest.mark.notebooks

DEMO = {"accounts": 40, "months": 3, "seed": 7, "end": "2026-10-31"}
AS_OF = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)  # the pipeline run: every delivery has landed
RB_AS_OF = AS_OF + dt.timedelta(hours=1)  # the on-call engineer runs the runbook an hour later
PERIOD = "2026-10"
FAULTS = {
    "finance_mismatch": "finance_mismatch@2026-10-01",
    "missing_subscription_data": "missing_subscription_data@2026-10-12",
    "expenses_wrong_month": "expenses_wrong_month@2026-10-10",
    "math_errors": "math_errors@2026-10-15",
}
MONEY = [
    "revenue_usd_cents",
    "salaries_usd_cents",
    "infrastructure_usd_cents",
    "operations_usd_cents",
    "total_cost_usd_cents",
    "profit_usd_cents",
]
CONFIG = cfgmod.load(REPO / "config")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO)


@cache
def clean_figures(root: Path, period: str) -> dict[str, int]:
    """The month's money figures from the clean company, computed in-process at the runbook's as_of."""
    settings = CONFIG.pipelines.profit
    inputs = load_inputs(period, RB_AS_OF, settings=settings, root=root)
    calendar = businesscal.BusinessCalendar.from_team(CONFIG.team)
    agg = build_aggregate(inputs, settings=settings, calendar=calendar, run_id="clean")
    return {k: int(agg.profit[k].item()) for k in MONEY}


def truth(root: Path) -> list[dict]:
    return json.loads((root / "_faults.json").read_text())["faults"]


def faulty_home(home: Path, tmp_path_factory, cid: str, clean: Path, *, link_source_system: bool) -> Path:
    """``home`` with a private copy of the faulty landing zone (and the source system linked)."""
    root = demo_landing(tmp_path_factory, **DEMO, faults=(FAULTS[cid],))
    shutil.copytree(root, home / "data" / "landing", symlinks=False)
    if link_source_system:
        target = demo_source_system.source_system_dir(home / "data" / "landing")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(clean, target_is_directory=True)
    return root


def alert_for(cid: str) -> alerts.Alert:
    result = runner.run_pipeline("profit_aggregate", PERIOD, clock=kit.as_of_clock(AS_OF), as_of=AS_OF)
    assert result.status == "succeeded", result.error
    (alert,) = [
        a
        for a in alerts.list_alerts(open_only=True, limit=1000)
        if a.check_id == rp.CHECK_IDS[cid] and a.partition == PERIOD
    ]
    return alert


def fix_with_runbook(cid: str, alert: alerts.Alert) -> runbooks.RunbookRun:
    run = runbooks.run_runbook(
        f"profit/{cid}",
        clock=kit.as_of_clock(RB_AS_OF),
        as_of=RB_AS_OF,
        alert_id=alert.alert_id,
        apply_fix=True,
    )
    assert run.status == "succeeded", (run.error, run.archive)
    assert run.cause == cid, run.diagnosis
    (fixed,) = run.fixes
    assert fixed["applied"] and fixed["error"] is None, fixed
    assert run.verification["passed"] is True, run.verification
    return run


def repaired_months(run: runbooks.RunbookRun) -> list[str]:
    return sorted(run.evidence["plan"]["months"])


def assert_repaired(run: runbooks.RunbookRun, clean: Path) -> None:
    """Every month the fix re-ran now has the clean company's money figures, to the cent."""
    months = repaired_months(run)
    assert PERIOD in months
    for month in months:
        got = warehouse.read_table("profit_monthly", where={"period": month})
        assert len(got) == 1, month
        assert {k: int(got[k].item()) for k in MONEY} == clean_figures(clean, month), month
        assert got["as_of"].item() is not None


def finding(run: runbooks.RunbookRun, reason: str) -> dict:
    (found,) = [f for f in run.evidence["findings"] if f["reason"] == reason]
    return found


def test_finance_mismatch_names_the_lines_fixes_both_sides_and_reconciles(home, tmp_path_factory, clean):
    root = faulty_home(home, tmp_path_factory, "finance_mismatch", clean, link_source_system=False)
    gt = {r["description"].split(":")[0]: r for r in truth(root)}
    run = fix_with_runbook("finance_mismatch", alert_for("finance_mismatch"))
    timing = finding(run, "timing (booked in another month)")
    category = finding(run, "missing expense category")
    fx = finding(run, "currency conversion")
    assert timing["holds"] and category["holds"] and fx["holds"]
    assert set(gt["timing"]["rows"]) <= set(timing["evidence"]["line_ids"])  # both halves of the pair
    assert gt["missing category"]["details"]["category"] in category["detail"]
    assert fx["evidence"]["line_ids"] == gt["FX"]["rows"]
    assert gt["timing"]["rows"][1] in run.diagnosis  # the first cause, named in the one line
    assert repaired_months(run) == ["2026-09", "2026-10"]  # the timing pair spans two months
    assert_repaired(run, clean)
    for month in repaired_months(run):
        got = warehouse.read_table("profit_monthly", where={"period": month})
        assert got["reconciliation_status"].item() == "within_tolerance", month
    assert alerts.get_alert(run.alert_id).status == "resolved"
    # the month-end close's pipeline items see the reconciled month, and what is still missing
    ctx = kit.load_context("month_end_close", as_of=RB_AS_OF)
    items = rp.close_pipeline_items(ctx, PERIOD)
    ok = dict(zip(items.frame["item"], items.frame["ok"], strict=True))
    assert ok == dict.fromkeys(rp.CLOSE_ITEMS, False) | {rp.CLOSE_ITEMS[0]: True}, items.frame
    assert items.holds and items.data["report"] == "DRAFT"
    assert "within_tolerance" in items.frame.loc[items.frame["item"] == rp.CLOSE_ITEMS[0], "detail"].item()
    # the source system was generated from the landing zone's spec, as the clean company
    generated = demo_source_system.source_system_dir(home / "data" / "landing")
    assert (generated / "_demo.json").is_file() and not generated.is_symlink()


def test_missing_subscription_data_reextracts_the_empty_days(home, tmp_path_factory, clean):
    root = faulty_home(home, tmp_path_factory, "missing_subscription_data", clean, link_source_system=True)
    gt = {r["source"]: r for r in truth(root)}
    run = fix_with_runbook("missing_subscription_data", alert_for("missing_subscription_data"))
    api = finding(run, "billing API down")
    assert api["holds"]
    lost_days = {p for r in gt.values() if r["rows"] for p in r["details"]["partitions"]}
    days_with_rows = {
        d
        for s, r in gt.items()
        for d in r["details"]["partitions"]
        if r["rows"] and any(k.startswith(("evt_", "il_", "ch_")) for k in r["rows"])
    }
    assert days_with_rows <= set(api["evidence"]["days"]) and lost_days & set(api["evidence"]["days"])
    assert {"subscriptions", "billing_invoices", "billing_payments"} <= set(api["evidence"]["sources"])
    (fixed,) = run.fixes
    landed = {r["source"]: set(r["keys"]) for r in fixed["result"]["reextracted"]}
    for source, record in gt.items():  # exactly the lost rows came back, nothing else
        assert landed[source] == set(record["rows"]), source
    assert_repaired(run, clean)
    assert alerts.get_alert(run.alert_id).status == "resolved"


def test_expenses_wrong_month_corrects_the_entries_and_rebooks_the_late_ones(home, tmp_path_factory, clean):
    root = faulty_home(home, tmp_path_factory, "expenses_wrong_month", clean, link_source_system=True)
    gt = {r["description"].split(":")[0]: r for r in truth(root)}
    run = fix_with_runbook("expenses_wrong_month", alert_for("expenses_wrong_month"))
    typo = finding(run, "fat-fingered manual entry")
    late = finding(run, "operations submitted late")
    assert typo["holds"] and late["holds"]
    fat = set(gt["fat-fingered amount"]["rows"]) | set(gt["fat-fingered incurred date"]["rows"])
    assert set(typo["evidence"]["ids"]) == fat
    assert late["evidence"]["ids"] == gt["late ops submission"]["rows"]
    (fixed,) = run.fixes
    (ops,) = fixed["result"]["reextracted"]
    assert set(ops["keys"]) == fat  # the corrected entries, and only those
    incurred = gt["late ops submission"]["details"]["incurred_date"][:7]
    assert incurred in repaired_months(run)  # the late expense's own month was re-run
    assert_repaired(run, clean)
    # what still shows is the late arrival itself, now booked in its month
    assert run.verification["handled"] == [rp.CHECK_IDS["expenses_wrong_month"]]


def test_math_errors_reextracts_the_quarantined_rows(home, tmp_path_factory, clean):
    root = faulty_home(home, tmp_path_factory, "math_errors", clean, link_source_system=True)
    gt = {r["source"]: set(r["rows"]) for r in truth(root)}
    run = fix_with_runbook("math_errors", alert_for("math_errors"))
    nulls = finding(run, "bad NULL handling")
    assert nulls["holds"]
    named = {(r["source"], r["key_value"]) for r in nulls["evidence"]["rows"]}
    quarantined = {(s, k) for s in ("billing_invoices", "subscriptions") for k in gt[s]}
    assert named == quarantined
    assert finding(run, "joins creating duplicate rows")["holds"]
    assert gt["billing_customers"] <= {
        r["key_value"] for r in finding(run, "joins creating duplicate rows")["evidence"]["rows"]
    }
    assert finding(run, "wrong data types")["holds"]
    (fixed,) = run.fixes
    landed = {r["source"]: set(r["keys"]) for r in fixed["result"]["reextracted"]}
    assert landed == {s: gt[s] for s in ("billing_invoices", "subscriptions")}
    assert_repaired(run, clean)
    got = warehouse.read_table("profit_monthly", where={"period": PERIOD})
    assert int(got["quarantined_rows"].item()) == 0
    assert run.verification["handled"] == [rp.CHECK_IDS["math_errors"]]


def test_diagnose_on_clean_data_finds_no_problem(home, clean):
    home_with_demo(home, clean)
    run = runbooks.run_runbook(
        "profit/expenses_wrong_month",
        clock=kit.as_of_clock(RB_AS_OF),
        as_of=RB_AS_OF,
        params={"partition": PERIOD},
    )
    assert run.status == "succeeded", run.error
    assert run.cause == "no_problem_found", run.diagnosis
    assert run.diagnosis.startswith("no problem found") and PERIOD in run.diagnosis
    assert all(not f["holds"] for f in run.evidence["findings"]) and len(run.evidence["findings"]) == 3
    assert [f["applied"] for f in run.fixes] == [] and run.verification["passed"] is None


def test_reextract_lands_nothing_that_is_already_there_and_needs_a_source_system(home, clean):
    shutil.copytree(clean, home / "data" / "landing")
    target = demo_source_system.source_system_dir(home / "data" / "landing")
    target.parent.mkdir(parents=True)
    target.symlink_to(clean, target_is_directory=True)
    before = (home / "data" / "landing" / "billing_invoices" / "_manifest.jsonl").read_text()
    got = repair.reextract(
        {"source": "billing_invoices", "days": ["2026-10-01", "2026-10-02"], "why": "test"}, as_of=RB_AS_OF
    )
    assert got["asked"] > 0 and got["landed_rows"] == 0 and got["deliveries"] == []
    assert (home / "data" / "landing" / "billing_invoices" / "_manifest.jsonl").read_text() == before
    (home / "data" / "landing" / "_demo.json").unlink()
    with pytest.raises(source_systems.SourceSystemUnavailable, match="_demo.json"):
        repair.reextract({"source": "ops_expenses", "keys": ["EXP-0000001"], "why": "test"}, as_of=RB_AS_OF)

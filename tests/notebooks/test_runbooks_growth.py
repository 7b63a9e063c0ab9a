"""The Growth runbooks end to end: each fault's alert, its runbook with ``apply_fix=True``, the figures.

One small demo company carries all five Growth faults (in October, each on its own accounts; the
per-fault unit tests show each check fires only for its own fault). ``growth_aggregate`` runs
through the CLI so the five alerts exist, then each alert's runbook runs through
``helpers.runbooks.registry.run_runbook`` with ``apply_fix=True`` — one papermill execution
covering Diagnose, Fix and Verify — and must name its catalogue id and the injected records, verify, and leave the month's
figures equal to the clean company's (exactly: integer cents; NRR/GRR to 1e-12). The clean figures
are the same company without faults, computed by the pure functions, with the injected acquisition
merged (the duplicates bring no billing of their own, but an acquisition is one company).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from conftest import _reset_caches, demo_landing, home_with_demo, workbook, write_test_config
from helpers.core import config
from helpers.growth import entities
from helpers.growth import metrics as growth
from helpers.growth.month import build_month
from helpers.oncall import alerts
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.notebooks
UTC = dt.UTC
PERIOD = "2026-10"
# Seed 11 puts an involuntary-churn episode in October in a 60-account company (few dunning episodes).
DEMO = {"accounts": 60, "months": 3, "seed": 11, "end": "2026-10-31"}
FAULTS = (
    "skipped_stage@2026-10-01",
    "late_account_updates@2026-10-08",
    "duplicate_accounts@2026-10-08",
    "growth_revenue_mismatch@2026-10-01",
    "churn_misclassified",
)
RUN_AS_OF = "2026-11-06T06:00:00Z"  # everything of October has landed, late CRM entries included
AS_OF = dt.datetime(2026, 11, 6, 7, tzinfo=UTC)  # the on-call engineer opens the runbook an hour later
IDS = (
    "skipped_stage",
    "late_account_updates",
    "growth_revenue_mismatch",
    "churn_misclassified",
    "duplicate_accounts",
)
# What each check's evidence must name, from the ground truth (_faults.json): evidence key -> (source, field).
NAMED = {
    "skipped_stage": {
        "accounts": ("crm_stage_history", "accounts"),
        "stage_event_ids": ("crm_stage_history", "changed"),
    },
    "late_account_updates": {
        "stage_event_ids": ("crm_stage_history", "rows"),
        "accounts": ("crm_stage_history", "accounts"),
    },
    "duplicate_accounts": {"accounts": ("account_db", "rows")},
    # (with this seed the backdated upgrades fall in September: October's alert names the deals)
    "growth_revenue_mismatch": {"deal_ids": ("sales_records", "rows")},
    "churn_misclassified": {
        "event_ids": ("subscriptions", "rows"),
        "accounts": ("subscriptions", "accounts"),
    },
}


def _truth(root: Path, cid: str) -> dict[str, dict]:
    faults = json.loads((root / "_faults.json").read_text())["faults"]
    return {f["source"]: f for f in faults if f["fault"] == cid}


def _named(truth: dict[str, dict], source: str, field: str) -> set[str]:
    record = truth[source]
    value = record["rows"] if field == "rows" else record["details"][field]
    return set(value)


@pytest.fixture(scope="module")
def faulted(tmp_path_factory):
    """A home with the five faults landed and growth_aggregate run for October (so the alerts exist)."""
    base = tmp_path_factory.mktemp("growth_runbooks")
    home = base / "home"
    (home / "runs").mkdir(parents=True)
    (home / "data").mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("WORKBOOK_HOME", str(home))
    mp.setenv("WORKBOOK_CONFIG_DIR", str(write_test_config(base / "config")))
    mp.delenv("WORKBOOK_WAREHOUSE_URL", raising=False)
    _reset_caches()
    root = demo_landing(tmp_path_factory, **DEMO, faults=FAULTS)
    home_with_demo(home, root)
    proc = workbook("run", "growth_aggregate", "--date", PERIOD, "--as-of", RUN_AS_OF, "--json", "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # one day of growth_daily built the morning after a late CRM change, before the AE typed it
    late_ids = _truth(root, "late_account_updates")["crm_stage_history"]["rows"]
    stages = landing.read_source("crm_stage_history", root=root, with_arrival=True)
    row = stages[stages["stage_event_id"].isin(late_ids)].sort_values("effective_at").iloc[0]
    day = row["effective_at"].date()
    built = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(6, 15), UTC)
    assert built < row["_arrived_at"]
    proc = workbook(
        "run", "growth_daily", "--date", day.isoformat(), "--as-of", built.isoformat(), "--json", "-q"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    yield {"home": home, "root": root, "config": base / "config", "late_day": day.isoformat()}
    _reset_caches()
    mp.undo()
    _reset_caches()


@pytest.fixture(scope="module")
def clean_figures(tmp_path_factory, faulted):
    """October of the same company without faults, the injected acquisition merged (build_month)."""
    root = demo_landing(tmp_path_factory, **DEMO)
    acquisitions = _truth(faulted["root"], "duplicate_accounts")["account_db"]["details"]["acquisitions"]
    reviewed = entities.Reviewed(
        merges=tuple(
            {"account_id": a["product_acquired"], "into": a["product_acquirer"], "reason": "acquired"}
            for a in acquisitions
        )
    )
    october = build_month(PERIOD, AS_OF, settings=config.GrowthConfig(), root=root, reviewed=reviewed)
    return october.summary.iloc[0]


def _alert(cid: str) -> alerts.Alert:
    (found,) = [
        a
        for a in alerts.list_alerts(open_only=True, limit=1000)
        if a.check_id == f"growth_aggregate.{cid}" and a.partition == PERIOD
    ]
    return found


@pytest.mark.parametrize("cid", IDS)
def test_runbook_names_the_fault_fixes_and_verifies(faulted, clean_figures, cid):
    alert = _alert(cid)
    assert alert.runbook == f"notebooks/runbooks/growth/{cid}.ipynb"
    run = runbooks.run_runbook(
        f"growth/{cid}", clock=kit.as_of_clock(AS_OF), as_of=AS_OF, alert_id=alert.alert_id, apply_fix=True
    )
    assert run.status == "succeeded", run.error
    assert run.cause == cid, run.diagnosis
    # the diagnosis names the injected records: the symptom's evidence exactly, the line at least one of them
    truth = _truth(faulted["root"], cid)
    symptom = run.evidence["symptom"][0]
    assert symptom["holds"] is True
    for key, (source, field) in NAMED[cid].items():
        assert set(symptom[key]) == _named(truth, source, field), key
    names = set().union(*(_named(truth, s, f) for s, f in NAMED[cid].values()))
    assert any(name in run.diagnosis for name in names), run.diagnosis
    assert any(f["holds"] for f in run.evidence["findings"])
    # the fix ran (no error), re-ran the month, and Verify passes
    (fix,) = run.fixes
    assert fix["applied"] is True and fix["error"] is None, fix
    reruns = [(r["pipeline"], r["partition"], r["status"]) for r in fix["result"]["runs"]]
    if cid == "duplicate_accounts":  # the re-run records the reviewed check
        assert ("growth_aggregate", PERIOD, "succeeded") in reruns
    else:  # the month was built with the repairs: no re-run of it, and the fix says why
        assert not [r for r in reruns if r[0] == "growth_aggregate"]
        assert "equals the repaired figures" in fix["result"]["mart"]
    if cid == "late_account_updates":  # the daily partition built before the late entry landed is re-run
        assert ("growth_daily", faulted["late_day"], "succeeded") in reruns
    assert run.verification["passed"] is True, run.verification
    # the month's figures equal the clean company's
    mart = warehouse.read_table("growth_mrr_monthly", where={"period": PERIOD}).iloc[0]
    for name in (
        *growth.MONEY_COLUMNS,
        "customers_start",
        "customers_end",
        "new_customers",
        "churned_customers",
    ):
        assert int(mart[name]) == int(clean_figures[name]), name
    assert mart["nrr"] == pytest.approx(clean_figures["nrr"], abs=1e-12)
    assert mart["grr"] == pytest.approx(clean_figures["grr"], abs=1e-12)
    if cid == "duplicate_accounts":  # the reviewed mapping is written and the re-run's check clears the alert
        review = yaml.safe_load((faulted["config"] / "account_merges.yml").read_text())
        assert {m["account_id"] for m in review["merges"]} == _named(truth, "account_db", "rows")
        assert alerts.get_alert(alert.alert_id).status == "resolved"
    else:  # the source owner gets the records to correct; the alert stays open for them
        corrections = Path(fix["result"]["corrections"]["file"])
        assert corrections.exists() and fix["result"]["corrections"]["records"] > 0
        assert alerts.get_alert(alert.alert_id).status in alerts.ACTIVE


def test_diagnose_mode_on_clean_data_finds_no_problem(home, tmp_path_factory):
    home_with_demo(home, demo_landing(tmp_path_factory, **DEMO))
    run = runbooks.run_runbook(
        "growth/late_account_updates", clock=kit.as_of_clock(AS_OF), as_of=AS_OF, apply_fix=False
    )
    assert run.status == "succeeded", run.error
    assert run.cause == "no_problem_found", run.diagnosis
    assert run.diagnosis.startswith("no problem found") and PERIOD in run.diagnosis
    assert run.evidence["symptom"][0]["holds"] is False
    assert not any(f["holds"] for f in run.evidence["findings"])
    assert [f["applied"] for f in run.fixes] == [False]

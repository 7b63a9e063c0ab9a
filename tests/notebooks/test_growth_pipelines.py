"""The Growth notebooks run by ``workbook run`` on the demo company: scraps, marts, re-runs, alerts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing, home_with_demo, workbook
from helpers.core import config
from helpers.growth import entities
from helpers.growth import metrics as growth
from helpers.growth.month import build_month
from helpers.oncall import alerts
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks
DEMO = {"accounts": 120, "months": 3, "seed": 7, "end": "2026-10-31"}
MONTH_AS_OF = "2026-11-06T06:00:00Z"  # everything of October has landed
# What the investor aggregate reads: names and types are a contract.
HEADLINE = (
    "period",
    "status",
    *growth.MONEY_COLUMNS,
    "customers_start",
    "customers_end",
    "new_customers",
    "churned_customers",
    "nrr",
    "grr",
    "active_accounts",
    "checks_passed",
    "checks_failed",
    "checks_error",
)


def run(*args: str) -> dict:
    proc = workbook("run", *args, "--json", "-q")
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["status"] == "succeeded", result
    return result


def scraps_of(result: dict) -> dict:
    return json.loads((Path(result["archive"]) / "scraps.json").read_text())


def test_growth_aggregate_figures_marts_and_an_identical_rerun(home, tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO)
    home_with_demo(home, root)
    first = run("growth_aggregate", "--date", "2026-10", "--as-of", MONTH_AS_OF)
    scraps = scraps_of(first)
    assert set(HEADLINE) <= set(scraps)
    assert scraps["status"] == "final" and scraps["checks_failed"] == 0 and scraps["checks_error"] == 0

    as_of = dt.datetime(2026, 11, 6, 6, tzinfo=dt.UTC)
    settings = config.GrowthConfig()
    want = build_month(
        "2026-10", as_of, settings=settings, root=root, reviewed=entities.Reviewed()
    ).summary.iloc[0]
    for name in (
        *growth.MONEY_COLUMNS,
        "customers_start",
        "customers_end",
        "new_customers",
        "churned_customers",
    ):
        assert scraps[name] == want[name], name
    assert scraps["nrr"] == pytest.approx(want["nrr"]) and scraps["grr"] == pytest.approx(want["grr"])
    assert scraps["active_accounts"] == scraps["customers_end"] == len(scraps["active_account_ids"])

    monthly = warehouse.read_table("growth_mrr_monthly")
    accounts = warehouse.read_table("growth_accounts_monthly")
    assert (
        list(monthly["period"]) == ["2026-10"]
        and monthly.loc[0, "ending_mrr_usd_cents"] == want["ending_mrr_usd_cents"]
    )
    by_move = accounts.groupby("movement")["mrr_change_usd_cents"].sum()
    assert by_move.get("new", 0) == scraps["new_mrr_usd_cents"]  # the drill-down adds up to the headline
    assert accounts["ending_mrr_usd_cents"].sum() == scraps["ending_mrr_usd_cents"]

    second = run("growth_aggregate", "--date", "2026-10", "--as-of", MONTH_AS_OF)
    assert second["run_id"] != first["run_id"]
    pd.testing.assert_frame_equal(warehouse.read_table("growth_mrr_monthly"), monthly)
    pd.testing.assert_frame_equal(warehouse.read_table("growth_accounts_monthly"), accounts)
    assert scraps_of(second) == scraps


def test_growth_daily_by_arm(home, tmp_path_factory):
    home_with_demo(home, demo_landing(tmp_path_factory, **DEMO))
    result = run("growth_daily", "--date", "2026-10-15", "--as-of", "2026-10-20T06:15:00Z")
    scraps = scraps_of(result)
    rows = warehouse.read_table("growth_daily", where={"date": "2026-10-15"})
    assert (
        sorted(rows["experiment"].unique()) == scraps["experiments"] == ["onboarding_checklist", "pricing_v2"]
    )
    per_experiment = rows.drop(columns=["date", "arm", "status"]).groupby("experiment").sum()
    for column in ("customers_end", "new_accounts", "net_new_mrr_usd_cents"):
        assert (per_experiment[column] == scraps[column]).all(), column
    assert set(rows["status"]) == {scraps["status"]} and scraps["checks_failed"] == 0


def test_a_growth_fault_opens_its_alert_with_the_runbook(home, tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO, faults=("duplicate_accounts@2026-10-08",))
    home_with_demo(home, root)
    scraps = scraps_of(run("growth_aggregate", "--date", "2026-10", "--as-of", MONTH_AS_OF))
    assert scraps["check_statuses"]["growth_aggregate.duplicate_accounts"] == "fail"
    assert scraps["checks_failed"] == 1
    (alert,) = [
        a for a in alerts.list_alerts(open_only=True) if a.check_id == "growth_aggregate.duplicate_accounts"
    ]
    assert alert.partition == "2026-10" and alert.catalogue_id == "duplicate_accounts"
    assert alert.runbook == "notebooks/runbooks/growth/duplicate_accounts.ipynb" and alert.owner == "DE3"
    truth = next(
        t for t in json.loads((root / "_faults.json").read_text())["faults"] if t["source"] == "account_db"
    )
    assert set(alert.evidence["accounts"]) == set(truth["rows"])

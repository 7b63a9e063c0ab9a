"""Revenue vs MRR on the demo company: a clean company's difference is explained, a real mismatch is not.

Profit's month and Growth's month are built as their notebooks build them, and the investor check
compares them as ``investor_aggregate`` does. The clean company (40 accounts over 13 months, so
exchange rates have drifted since most prices were set) passes only with Growth's bridge; the same
company with subscriptions priced above what their invoices bill
(``growth_revenue_mismatch:repriced``) fails.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from conftest import REPO, demo_landing
from helpers.core import businesscal
from helpers.core import config as cfgmod
from helpers.growth import entities
from helpers.growth.month import build_month
from helpers.investor import cross_checks
from helpers.investor.cross_checks import CrossCheck, MrrBridge
from helpers.profit.aggregate import build_aggregate
from helpers.profit.inputs import load_inputs

pytestmark = pytest.mark.unit

DEMO = {"accounts": 40, "months": 13, "seed": 1, "end": "2026-10-31"}
P = "2026-09"
AS_OF = dt.datetime(2026, 10, 16, 12, tzinfo=dt.UTC)
MISMATCH = "growth_revenue_mismatch@2026-07-01:repriced=0.5"
CONFIG = cfgmod.load(REPO / "config")


def checks_of(root: Path) -> tuple[CrossCheck, CrossCheck]:
    """``revenue_vs_mrr`` of the month with Growth's bridge, and without it (the run-rate only)."""
    inputs = load_inputs(P, AS_OF, settings=CONFIG.pipelines.profit, root=root)
    calendar = businesscal.BusinessCalendar.from_team(CONFIG.team)
    profit = build_aggregate(inputs, settings=CONFIG.pipelines.profit, calendar=calendar, run_id="t").profit
    growth = build_month(P, AS_OF, settings=CONFIG.pipelines.growth, root=root, reviewed=entities.Reviewed())
    p, g = profit.iloc[0], growth.monthly.iloc[0]
    args = (
        int(p["revenue_usd_cents"]),
        int(p["written_off_usd_cents"]),
        int(g["starting_mrr_usd_cents"]),
        int(g["ending_mrr_usd_cents"]),
    )
    return cross_checks.revenue_vs_mrr(*args, bridge=MrrBridge.from_row(g)), cross_checks.revenue_vs_mrr(
        *args
    )


def test_a_clean_company_passes_once_the_known_differences_are_itemised(tmp_path_factory):
    itemised, runrate_only = checks_of(demo_landing(tmp_path_factory, **DEMO))
    assert itemised.passed, itemised.summary
    assert abs(itemised.evidence["unexplained_share"]) < 0.015
    assert not runrate_only.passed, runrate_only.summary  # what made the demo's close a DRAFT
    assert set(itemised.evidence["itemised"]) == {
        "movement timing",
        "FX",
        "unpaid dunning",
        "service credits",
    }
    assert itemised.evidence["itemised"]["unpaid dunning"] < 0  # this month has an involuntary churn


def test_a_real_mismatch_still_fails(tmp_path_factory):
    root = demo_landing(tmp_path_factory, **DEMO, faults=(MISMATCH,))
    itemised, _ = checks_of(root)
    assert not itemised.passed and "beyond ±3%" in itemised.summary
    assert itemised.evidence["unexplained_share"] < -0.03  # the MRR promises more than is billed
    [repriced] = [
        f for f in json.loads((root / "_faults.json").read_text())["faults"] if f["source"] == "subscriptions"
    ]
    assert repriced["details"]["subscriptions"]

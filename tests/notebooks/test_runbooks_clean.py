"""Every catalogue runbook, in diagnose mode on a clean closed month, says "no problem found".

Issue 10: a runbook run against clean data must conclude ``no_problem_found`` with its evidence,
rather than fail or point at a cause. The month is closed first (``workbook close``), so each
runbook has real marts, runs and check results to look at, not an empty warehouse.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conftest import demo_landing, home_with_demo, workbook
from helpers.core.catalogue import CATALOGUE
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks

pytestmark = pytest.mark.notebooks
AS_OF = dt.datetime(2026, 10, 16, 12, tzinfo=dt.UTC)  # September closes FINAL at this as_of


def test_every_catalogue_runbook_finds_no_problem_on_a_clean_closed_month(home, tmp_path_factory):
    landing = demo_landing(tmp_path_factory, accounts=60, months=3, seed=7, end="2026-10-31", events=True)
    home_with_demo(home, landing)
    proc = workbook(
        "close", "--month", "2026-09", "--as-of", AS_OF.isoformat(), "--json", "--history", "0", timeout=900
    )
    closed = json.loads(proc.stdout)
    assert proc.returncode == 0 and closed["status"] == "FINAL", closed["checklist"]["blockers"]

    outcomes = {}
    for family, ids in CATALOGUE.items():
        for cid in ids:
            run = runbooks.run_runbook(f"{family}/{cid}", clock=kit.as_of_clock(AS_OF), as_of=AS_OF)
            outcomes[cid] = (run.status, run.cause, run.diagnosis, run.evidence)
    wrong = {cid: o[:3] for cid, o in outcomes.items() if o[:2] != ("succeeded", "no_problem_found")}
    assert not wrong, json.dumps(wrong, indent=1, default=str)
    for cid, (_status, _cause, diagnosis, evidence) in outcomes.items():
        assert diagnosis.startswith("no problem found"), (cid, diagnosis)
        assert evidence.get("findings"), (cid, evidence)  # each cause was looked at, with its evidence

"""The Profit runbooks verify the complete expected state, never the part they repaired (issue 20).

Each test lands a tiny demo company with one Profit fault, runs ``profit_aggregate`` so the alert
opens, and reads the runbook's plan from a diagnose-only run. It then carries out only *part* of
that plan in-process (a gap day left out, one ledger line, one key, no re-extraction) and runs the
runbook module's Verify on what that left: it must fail. The runbook notebook with
``apply_fix=True`` then repairs the rest, Verify passes, and the month's money figures equal the
clean company's to the cent.

``missing_subscription_data`` is also run with an outage whose first days were partly delivered
(``partial=2``), and with the outage of the issue (two days on which ``billing_customers`` still
delivered a row each), which the gap detector used to miss while Verify passed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_runbooks_profit import (  # the same small company, clocks and clean figures
    DEMO,
    MONEY,
    PERIOD,
    RB_AS_OF,
    alert_for,
    clean_figures,
    truth,
)

from conftest import demo_landing
from helpers.demo import source_system as demo_source_system
from helpers.oncall import alerts
from helpers.profit import repair
from helpers.profit import runbook as rp
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks

FULL_AS_OF = RB_AS_OF + dt.timedelta(hours=1)  # the engineer runs the whole runbook after the partial repair


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO)


def faulty_home(home: Path, tmp_path_factory, fault: str, clean: Path) -> Path:
    """``home`` with a private copy of the faulty landing zone, the clean company as its source system."""
    root = demo_landing(tmp_path_factory, **DEMO, faults=(fault,))
    shutil.copytree(root, home / "data" / "landing", symlinks=False)
    target = demo_source_system.source_system_dir(home / "data" / "landing")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(clean, target_is_directory=True)
    return root


def planned(cid: str, alert: alerts.Alert) -> repair.Plan:
    """The plan a diagnose-only run of the runbook records."""
    run = runbooks.run_runbook(
        f"profit/{cid}", clock=kit.as_of_clock(RB_AS_OF), as_of=RB_AS_OF, alert_id=alert.alert_id
    )
    assert run.status == "succeeded", (run.error, run.archive)
    assert run.cause == cid, run.diagnosis
    plan = repair.Plan(**run.evidence["plan"])
    assert plan.reextract and PERIOD in plan.months, plan
    return plan


def verify_after(cid: str, alert: alerts.Alert, plan: repair.Plan) -> kit.Verification:
    """Carry out ``plan`` (a part of the runbook's) and run the runbook's Verify on what it left."""
    ctx = kit.load_context(
        f"profit/{cid}", as_of=RB_AS_OF, alert_id=alert.alert_id, apply_fix=True, run_id="partial-repair"
    )
    repair.apply_plan(ctx, plan)
    state = rp.load_state(ctx, cid)
    diag = kit.Diagnosis(ctx, default_cause=cid)
    diag.symptom(rp.check_now(state))
    return rp.verify(ctx, diag, state)


def full_repair(cid: str, alert: alerts.Alert, clean: Path) -> runbooks.RunbookRun:
    """The runbook with ``apply_fix=True``: Verify passes and the month equals the clean company's."""
    run = runbooks.run_runbook(
        f"profit/{cid}", clock=kit.as_of_clock(FULL_AS_OF), as_of=FULL_AS_OF, alert_id=alert.alert_id,
        apply_fix=True,
    )  # fmt: skip
    assert run.status == "succeeded", (run.error, run.archive)
    (fixed,) = run.fixes
    assert fixed["applied"] and fixed["error"] is None, fixed
    assert run.verification["passed"] is True, run.verification
    got = warehouse.read_table("profit_monthly", where={"period": PERIOD})
    assert {k: int(got[k].item()) for k in MONEY} == clean_figures(clean, PERIOD)
    return run


def partial_then_full(
    home, tmp_path_factory, clean, cid: str, fault: str, cut: Callable[[repair.Plan], repair.Plan]
) -> tuple[kit.Verification, runbooks.RunbookRun]:
    faulty_home(home, tmp_path_factory, fault, clean)
    alert = alert_for(cid)
    plan = planned(cid, alert)
    part = cut(plan)
    assert part != plan, "the cut must leave part of the plan out"
    partial = verify_after(cid, alert, part)
    assert partial.passed is False, partial
    return partial, full_repair(cid, alert, clean)


def _failing(v: kit.Verification) -> dict[str, str]:
    return {r.check_id: r.summary for r in v.results if r.failed}


# ---------------------------------------------------------------- missing_subscription_data


def test_missing_subscription_data_first_days_partly_delivered_is_repaired_in_full(
    home,
    tmp_path_factory,
    clean,
):
    root = faulty_home(home, tmp_path_factory, "missing_subscription_data@2026-10-01:days=5,partial=2", clean)
    gt = {r["source"]: r for r in truth(root)}
    assert all(r["details"]["partial_partitions"] == ["2026-10-01", "2026-10-02"] for r in gt.values())
    run = full_repair("missing_subscription_data", alert_for("missing_subscription_data"), clean)
    (fixed,) = run.fixes
    landed: dict[str, set[str]] = {}
    for r in fixed["result"]["reextracted"]:
        landed.setdefault(r["source"], set()).update(r["keys"])
    for source, record in gt.items():  # every lost row came back, the partly delivered days' too
        assert landed.get(source, set()) == set(record["rows"]), source
    results = {r["check_id"]: r for r in run.verification["results"]}
    complete = results[f"{rp.CHECK_IDS['missing_subscription_data']}.source_complete"]
    assert complete["status"] == "pass", complete


def test_missing_subscription_data_verify_fails_while_a_gap_day_is_left(home, tmp_path_factory, clean):
    # the outage: on its first two days billing_customers still delivered a row each
    fault = "missing_subscription_data@2026-10-05:days=5"
    first_days = ["2026-10-05", "2026-10-06"]

    def without_first_days(plan: repair.Plan) -> repair.Plan:
        # every gap day of every source that lost rows is in the plan: the per-source detection
        assert {"subscriptions", "billing_invoices", "billing_payments"} <= {
            r["source"] for r in plan.reextract
        }
        for source in ("subscriptions", "billing_invoices", "billing_payments"):
            days = {d for r in plan.reextract if r["source"] == source for d in r["days"]}
            assert set(first_days) <= days, source
        cut = [{**r, "days": [d for d in r["days"] if d not in first_days]} for r in plan.reextract]
        return dataclasses.replace(plan, reextract=cut)

    partial, run = partial_then_full(
        home, tmp_path_factory, clean, "missing_subscription_data", fault, without_first_days
    )
    failing = _failing(partial)
    complete = f"{rp.CHECK_IDS['missing_subscription_data']}.source_complete"
    assert complete in failing and "2026-10-05" in failing[complete], failing
    assert alerts.get_alert(run.alert_id).status == "resolved"


# ---------------------------------------------------------------- the faults without a day span


def test_finance_mismatch_verify_fails_while_a_ledger_line_is_left(home, tmp_path_factory, clean):
    def first_request_only(plan: repair.Plan) -> repair.Plan:
        return dataclasses.replace(plan, reextract=plan.reextract[:1])

    partial, _ = partial_then_full(
        home, tmp_path_factory, clean, "finance_mismatch", "finance_mismatch@2026-10-01", first_request_only
    )
    assert rp.CHECK_IDS["finance_mismatch"] in _failing(partial)


def test_expenses_wrong_month_verify_fails_while_an_entry_is_uncorrected(home, tmp_path_factory, clean):
    def reruns_only(plan: repair.Plan) -> repair.Plan:  # the months re-run, the typos not re-extracted
        return dataclasses.replace(plan, reextract=[])

    partial, run = partial_then_full(
        home, tmp_path_factory, clean, "expenses_wrong_month", "expenses_wrong_month@2026-10-10", reruns_only
    )
    assert rp.CHECK_IDS["expenses_wrong_month"] in _failing(partial)
    assert partial.handled == ()  # a typo left is not "handled": only late arrivals are
    assert run.verification["handled"] == [rp.CHECK_IDS["expenses_wrong_month"]]


def test_math_errors_verify_fails_while_a_key_is_left(home, tmp_path_factory, clean):
    def one_key_less(plan: repair.Plan) -> repair.Plan:
        cut = [dict(r) for r in plan.reextract]
        keyed = next(r for r in cut if r.get("keys"))
        keyed["keys"] = keyed["keys"][1:]
        return dataclasses.replace(plan, reextract=[r for r in cut if r.get("keys") or r.get("days")])

    partial, run = partial_then_full(
        home, tmp_path_factory, clean, "math_errors", "math_errors@2026-10-15", one_key_less
    )
    assert rp.CHECK_IDS["math_errors"] in _failing(partial) and partial.handled == ()
    got = warehouse.read_table("profit_monthly", where={"period": PERIOD})
    assert int(got["quarantined_rows"].item()) == 0

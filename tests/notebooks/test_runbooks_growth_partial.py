"""The Growth runbooks verify the complete expected state, never the part they repaired (issue 20).

The same small company as ``test_runbooks_growth`` (five Growth faults in October, alerts opened by
``growth_aggregate``). For each runbook, part of the repair is left undone — a duplicate left out of
the review file, a ``growth_daily`` day built before its late CRM entry not re-run, or the month's
mart set back on one figure after the fix — and the runbook module's Verify must fail; the runbook
notebook with ``apply_fix=True`` then repairs the rest, Verify passes and the month's figures equal the
clean company's.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import test_runbooks_growth as same  # the same company, faults and clocks

from helpers.growth import metrics as growth
from helpers.growth import runbook as gr
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks

AS_OF, PERIOD, _alert, _named, _truth = same.AS_OF, same.PERIOD, same._alert, same._named, same._truth
faulted, clean_figures = same.faulted, same.clean_figures  # the module's fixtures, built for this module

PARTIAL_AS_OF = AS_OF + dt.timedelta(minutes=30)  # the partial repair, then the whole runbook
FULL_AS_OF = AS_OF + dt.timedelta(hours=1)


def context(cid: str) -> kit.RunbookContext:
    return kit.load_context(
        f"growth/{cid}", as_of=PARTIAL_AS_OF, alert_id=_alert(cid).alert_id, apply_fix=True, run_id="partial"
    )


def verify_now(ctx: kit.RunbookContext, cid: str) -> kit.Verification:
    """The runbook module's Verify on what is there now."""
    state = gr.load_state(ctx, cid)
    diag = kit.Diagnosis(ctx, default_cause=cid)
    diag.symptom(gr.check_now(state))
    return gr.verify(ctx, diag, state)


def full_repair(cid: str, clean) -> runbooks.RunbookRun:
    """The runbook with ``apply_fix=True``: Verify passes and the month equals the clean company's."""
    run = runbooks.run_runbook(
        f"growth/{cid}", clock=kit.as_of_clock(FULL_AS_OF), as_of=FULL_AS_OF, alert_id=_alert(cid).alert_id,
        apply_fix=True,
    )  # fmt: skip
    assert run.status == "succeeded", run.error
    (fix,) = run.fixes
    assert fix["applied"] is True and fix["error"] is None, fix
    assert run.verification["passed"] is True, run.verification
    mart = warehouse.read_table("growth_mrr_monthly", where={"period": PERIOD}).iloc[0]
    for name in (
        *growth.MONEY_COLUMNS,
        "customers_start",
        "customers_end",
        "new_customers",
        "churned_customers",
    ):
        assert int(mart[name]) == int(clean[name]), name
    return run


def set_back(column: str, delta: int) -> None:
    """Undo part of a repair after the fix: the month's mart holds one figure as if one record were
    still unrepaired."""
    table = sa.Table("growth_mrr_monthly", sa.MetaData(), autoload_with=warehouse.get_engine())
    with warehouse.get_engine().begin() as conn:
        conn.execute(table.update().where(table.c.period == PERIOD).values({column: table.c[column] + delta}))


def test_duplicate_accounts_verify_fails_while_a_duplicate_is_unmerged(faulted, clean_figures):
    cid = "duplicate_accounts"
    ctx = context(cid)
    found = gr.merges(gr.load_state(ctx, cid))
    assert set(found["account_id"]) == _named(_truth(faulted["root"], cid), "account_db", "rows")
    gr.write_reviewed(ctx, found.iloc[1:], by="partial repair")  # one duplicate left out
    kit.rerun(ctx, [(gr.PIPELINE, PERIOD)])
    partial = verify_now(ctx, cid)
    assert partial.passed is False, partial
    assert found["account_id"].iloc[0] in str(partial.results[0].evidence), partial.results[0].summary
    full_repair(cid, clean_figures)


def test_late_account_updates_verify_fails_while_a_daily_partition_is_stale(faulted, clean_figures):
    cid = "late_account_updates"
    ctx = context(cid)
    state = gr.load_state(ctx, cid)
    targets = gr.fix_targets(ctx, state)
    assert (gr.DAILY, faulted["late_day"]) in targets
    kit.rerun(ctx, [t for t in targets if t[0] != gr.DAILY])  # the month, not the stale day
    partial = verify_now(ctx, cid)
    assert partial.passed is False, partial
    assert faulted["late_day"] in partial.results[0].summary
    full_repair(cid, clean_figures)


@pytest.mark.parametrize(
    ("cid", "column", "delta"),
    [
        ("skipped_stage", "new_customers", -1),
        ("growth_revenue_mismatch", "expansion_mrr_usd_cents", 1_00),
        ("churn_misclassified", "churned_customers", 1),
    ],
)
def test_verify_fails_while_the_mart_lacks_part_of_the_repair(faulted, clean_figures, cid, column, delta):
    assert column in gr.SUMMARY_COLUMNS
    full_repair(cid, clean_figures)
    set_back(column, delta)
    partial = verify_now(context(cid), cid)
    assert partial.passed is False, partial
    assert column in partial.results[0].summary
    full_repair(cid, clean_figures)

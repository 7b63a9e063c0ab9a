"""The runbook kit and runbook resolution: rhythms of sources, diagnoses, guarded fixes, who to call."""

from __future__ import annotations

import datetime as dt
import json
import time

import pandas as pd
import pytest

from helpers.core.errors import UsageError
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks
from helpers.storage import landing

pytestmark = pytest.mark.unit
UTC = dt.UTC
AS_OF = dt.datetime(2026, 11, 18, 12, tzinfo=UTC)


def _deliver(root, source: str, days: list[dt.date], *, at: dt.time = dt.time(2), lag_days: int = 1) -> None:
    for day in days:
        arrived = dt.datetime.combine(day + dt.timedelta(days=lag_days), at, UTC)
        landing.write_delivery(
            source, day, pd.DataFrame({"k": [1]}), arrived_at=arrived, root=root, durable=False
        )


def test_landing_arrivals_learn_each_sources_rhythm(tmp_path):
    daily = [AS_OF.date() - dt.timedelta(days=k) for k in range(20, 0, -1)]
    _deliver(tmp_path, "billing_invoices", daily)  # yesterday's partition arrived at 02:00: on time
    _deliver(tmp_path, "fx_rates", daily[:-3])  # stopped three days ago: late
    months = [dt.date(2026, m, 1) for m in (6, 7, 8, 9, 10)]
    _deliver(tmp_path, "cloud_costs", months, lag_days=34, at=dt.time(8))  # October's bill comes in December
    frame = kit.landing_arrivals(as_of=AS_OF, root=tmp_path).set_index("source")
    assert frame.loc["billing_invoices", "late"] == False  # noqa: E712 (numpy bool)
    assert frame.loc["fx_rates", "late"] == True  # noqa: E712
    assert frame.loc["fx_rates", "overdue_hours"] == pytest.approx(72 - 2 + 12 - 24, abs=0.1)
    assert frame.loc["cloud_costs", "cadence_days"] >= 28 and frame.loc["cloud_costs", "late"] == False  # noqa: E712
    assert frame.loc["cloud_costs", "age_hours"] > 24 * 10  # two weeks old, yet on its monthly rhythm
    missing = kit.landing_arrivals(["never_delivered"], as_of=AS_OF, root=tmp_path)
    assert bool(missing.loc[0, "late"]) and missing.loc[0, "deliveries"] == 0


def test_config_source_names_map_to_landing_folders(tmp_path):
    for source in (
        "billing_customers",
        "billing_invoices",
        "hr_payroll",
        "ops_expenses",
        "experiment_assignments",
        "fx_rates",
    ):
        _deliver(tmp_path, source, [dt.date(2026, 11, 1)])
    mapped = kit.landing_sources(
        ["billing", "hr", "operations", "experiments", "fx_rates", "crm"], root=tmp_path
    )
    assert mapped == {
        "billing": ["billing_customers", "billing_invoices"],
        "hr": ["hr_payroll"],
        "operations": ["ops_expenses"],
        "experiments": ["experiment_assignments"],
        "fx_rates": ["fx_rates"],
        "crm": [],
    }


def _ctx(home) -> kit.RunbookContext:
    return kit.load_context("row_count_anomaly", as_of="2026-11-18T12:00:00Z")


def test_diagnosis_concludes_no_problem_a_cause_or_the_default(home):
    quiet = kit.Diagnosis(_ctx(home), default_cause="row_count_anomaly")
    quiet.symptom(kit.Evidence(False, "3 partition(s) within their baseline"))
    quiet.finding("upstream_missing", "upstream pipeline incomplete", kit.Evidence(True, "smoke: no run"))
    assert quiet.cause == kit.NO_PROBLEM
    assert quiet.text.startswith("no problem found: 3 partition(s) within their baseline")
    assert "upstream pipeline incomplete" in quiet.text

    found = kit.Diagnosis(_ctx(home), default_cause="row_count_anomaly")
    found.symptom(kit.Evidence(True, "chain_table 2026-11-15: 30 rows vs baseline 40 (-25%)"))
    found.finding("upstream_missing", "upstream pipeline incomplete", kit.Evidence(False, "on time"))
    found.finding("late_events", "built before its data arrived", kit.Evidence(True, "events arrived late"))
    found.finding("kafka_outage", "sources delivered less", kit.Evidence(True, "events -80%"))
    assert found.cause == "late_events"
    assert found.text.startswith("late_events: built before its data arrived - events arrived late")
    assert "(also: sources delivered less)" in found.text and "[symptom: chain_table" in found.text
    assert found.table()["holds"].tolist() == [False, True, True]
    json.dumps(found.evidence)  # JSON-able as it is glued

    unexplained = kit.Diagnosis(_ctx(home), default_cause="math_errors")
    unexplained.symptom(kit.Evidence(True, "NULLs in profit_monthly"))
    assert unexplained.cause == "math_errors" and "no likely cause confirmed" in unexplained.text
    assert unexplained.targets(kit.Evidence(True, "x", data={"targets": [["p", "2026-10"]]})) == [
        ("p", "2026-10")
    ]
    assert quiet.targets(kit.Evidence(True, "x", data={"targets": [["p", "2026-10"]]})) == []


def test_guarded_fix_acts_only_when_asked_and_records_everything(home):
    _ctx(home)  # a new context starts a new fix log
    calls = []
    dry = kit.guarded_fix(False, lambda: calls.append("x"), "re-run profit_aggregate 2026-10")
    assert (dry.applied, calls) == (False, [])
    done = kit.guarded_fix(True, lambda: calls.append("x") or {"runs": 1}, "re-run it")
    assert (done.applied, done.result, calls) == (True, {"runs": 1}, ["x"])

    def broken() -> None:
        raise RuntimeError("warehouse is read-only")

    failed = kit.guarded_fix(True, broken, "re-run it again")
    assert failed.applied and failed.error == "RuntimeError: warehouse is read-only"
    assert [f.description for f in kit.fixes()] == [
        "re-run profit_aggregate 2026-10",
        "re-run it",
        "re-run it again",
    ]
    _ctx(home)
    assert kit.fixes() == []


def test_context_from_parameters_and_errors(home):
    ctx = kit.load_context("profit/stale_data", as_of="2026-11-18T12:00:00Z", apply_fix=True)
    assert ctx.family == "profit" and ctx.scope == ["profit_aggregate", "profit_unit"] and ctx.apply_fix
    assert kit.load_context("backfill", as_of="2026-11-18", pipeline="smoke").scope == ["smoke"]
    with pytest.raises(ValueError, match="no alert 42"):
        kit.load_context("backfill", as_of="2026-11-18", alert_id="42")
    with pytest.raises(ValueError, match="not in config"):
        kit.load_context("backfill", as_of="2026-11-18", pipeline="nope")


def test_escalate_to_names_who_to_call_now_and_who_joins_later(home):
    opened = dt.datetime(2026, 11, 11, 15, tzinfo=UTC)  # Wednesday 10:00 New York, DE1's week
    now = kit.escalate_to("profit_aggregate", opened, catalogue_id="finance_mismatch", opened_at=opened)
    assert now.call_now == ["DE1 (Data Engineer 1)", "contact:finance (Finance controller, Finance)"]
    later = {s["step"]: s for s in now.steps if not s["due_now"]}
    assert set(later) == {"secondary", "lead"} and later["secondary"]["who"] == "DE2 (Data Engineer 2)"
    assert later["secondary"]["at"] == "Wed 2026-11-11 12:00 EST"
    after_3h = kit.escalate_to("profit_aggregate", opened + dt.timedelta(hours=3), opened_at=opened)
    assert after_3h.call_now == ["DE1 (Data Engineer 1)", "DE2 (Data Engineer 2)"]
    assert after_3h.line.startswith("call now: DE1 (Data Engineer 1), DE2 (Data Engineer 2); later: lead")
    assert kit.escalate_to(None, opened).call_now == ["DE1 (Data Engineer 1)"]


def test_as_of_clock_starts_at_as_of_and_moves_forward():
    clock = kit.as_of_clock(AS_OF)
    first = clock()
    time.sleep(0.01)
    assert AS_OF <= first < clock() < AS_OF + dt.timedelta(seconds=5)


def test_resolve_prefers_the_alerts_own_runbook_else_the_generic_one():
    own = runbooks.resolve(runbook="notebooks/runbooks/profit/stale_data.ipynb", kind="freshness")
    assert (own.runbook.name, own.requested, own.note) == ("profit/stale_data", None, "")
    fallback = runbooks.resolve(
        runbook="notebooks/runbooks/engagement/kafka_outage.ipynb",
        kind="row_count",
        catalogue_id="kafka_outage",
    )
    if not runbooks.Runbook("engagement/kafka_outage").exists:  # until the Engagement runbooks exist
        assert fallback.runbook.name == "row_count_anomaly"
        assert fallback.requested == "notebooks/runbooks/engagement/kafka_outage.ipynb"
        assert "not written yet" in fallback.note
    assert runbooks.resolve(runbook=None, kind="nulls").runbook.name == "null_critical_columns"
    assert runbooks.resolve(kind="run_status").runbook.name == "backfill"
    deadline = {
        "p.sla.month_end_close": "month_end_close",
        "p.sla.fix_deadline.7": "incident_fix",
        "p.sla.freshness": "profit/stale_data",
        "p.sla.end_of_week": "backfill",
    }
    for check_id, name in deadline.items():
        assert runbooks.resolve(kind="sla_at_risk", check_id=check_id).runbook.name == name


def test_find_accepts_names_catalogue_ids_and_paths():
    assert runbooks.find("row_count_anomaly").name == "row_count_anomaly"
    assert runbooks.find("stale_data").name == "profit/stale_data"
    assert runbooks.find("notebooks/runbooks/backfill.ipynb").name == "backfill"
    with pytest.raises(UsageError, match="available: .*row_count_anomaly"):
        runbooks.find("no_such_runbook")


def test_every_generic_runbook_the_checks_point_at_exists():
    rows = runbooks.referenced()
    general = [r for r in rows if not r["for"].startswith("catalogue id")]
    assert general and all(r["exists"] for r in general), general
    assert {r["runbook"] for r in rows if r["exists"]} >= {"notebooks/runbooks/profit/stale_data.ipynb"}
    for name in runbooks.GENERIC_RUNBOOKS:
        assert runbooks.Runbook(name).exists, name
    for name in {*runbooks.GENERIC_BY_KIND.values(), *runbooks.GENERIC_BY_DEADLINE.values()}:
        assert runbooks.Runbook(name).exists, name


def test_stale_partitions_name_a_month_built_before_its_late_data_arrived(home):
    from helpers.runs import records as runs

    hour = dt.timedelta(hours=1)
    built = dt.datetime(2026, 10, 1, 16, 45, tzinfo=UTC)
    days = [dt.date(2026, 9, d) for d in range(1, 31)]
    _deliver(None, "billing_invoices", days[:24])  # on time: the next day 02:00
    run_id = runs.start_run(
        "profit_aggregate", "2026-09", now=built, as_of=built, parameters={}, code_version=None
    )
    runs.finish_run(run_id, status="succeeded", now=built)
    late = built + dt.timedelta(minutes=15)
    for day in days[24:]:  # the re-extract lands after the month was built
        landing.write_delivery(
            "billing_invoices", day, pd.DataFrame({"k": [1]}), arrived_at=late, durable=False
        )
    before = kit.stale_partitions(kit.load_context("profit/stale_data", as_of=built.isoformat()))
    assert not before.holds
    after = kit.stale_partitions(kit.load_context("profit/stale_data", as_of=(late + hour).isoformat()))
    assert after.holds and after.data["targets"] == [["profit_aggregate", "2026-09"]]
    assert "billing_invoices 2026-09-25..2026-09-30" in after.detail

"""Which runbook diagnoses a check: one mapping (``catalogue.runbook_for``), by source or upstream first.

Every check id the product can emit (the monitors' registry ``catalogue.monitor_check_ids`` over the
real config, and every registered domain check) routes to a runbook that exists; the routes follow
the failing source or upstream, whichever pipeline raised the alert.
"""

from __future__ import annotations

import datetime as dt

import pytest

from helpers import checks
from helpers.checks.framework import CheckResult
from helpers.core import catalogue, paths
from helpers.core import config as cfgmod
from helpers.oncall import alerts
from helpers.runbooks import kit
from helpers.runbooks import registry as runbooks

pytestmark = pytest.mark.unit
UTC = dt.UTC


@pytest.fixture(scope="module")
def pipes():
    cfgmod._cached.cache_clear()
    return cfgmod.get().pipelines.pipelines


def registered_domain_checks() -> list[checks.Check]:
    """Every domain check the families register (importing their modules registers them)."""
    import helpers.engagement.checks
    import helpers.growth.checks
    import helpers.investor.aggregate
    import helpers.profit.checks  # noqa: F401

    return [c for c in checks.registered() if c.pipeline in cfgmod.get().pipelines.pipelines]


def route(check_id: str, pipes, **kw):
    return catalogue.runbook_for(check_id, check_id.split(".", 1)[0], pipelines=pipes, **kw)


def test_every_check_the_product_can_emit_routes_to_a_runbook_that_exists(pipes):
    monitor_ids = catalogue.monitor_check_ids(pipes)
    domain = registered_domain_checks()
    assert len(domain) >= 16 and len(monitor_ids) > 60
    seen = set()
    for check_id in monitor_ids:
        ref = catalogue.parse_check_id(check_id)
        assert ref.kind in catalogue.MONITOR_SEGMENTS.values(), check_id
        for direction in ("drop", "rise", None):
            r = route(check_id, pipes, evidence={"direction": direction} if direction else None)
            assert paths.notebook_path(r.runbook).is_file(), (check_id, r)
            seen.add(r.name)
    for c in domain:
        r = catalogue.runbook_for(
            c.id, c.pipeline, pipelines=pipes, catalogue_id=c.catalogue_id, runbook=c.runbook
        )
        assert paths.notebook_path(r.runbook).is_file(), (c.id, r)
        if c.catalogue_id and c.catalogue_id != "upstream_missing":
            assert r.catalogue_id == c.catalogue_id, c.id  # a domain check keeps its own catalogue runbook
        seen.add(r.name)
    # every catalogue runbook is reached by some check
    assert {e.runbook for e in catalogue.ENTRIES} <= {f"{catalogue.RUNBOOKS_DIR}/{n}.ipynb" for n in seen}


def test_a_late_source_routes_by_what_the_source_is_whichever_pipeline_reads_it(pipes):
    expected = {
        "missing_subscription_data": "profit/missing_subscription_data",  # billing
        "late_account_updates": "growth/late_account_updates",  # CRM
        "kafka_outage": "engagement/kafka_outage",  # the event stream
        "late_events": "engagement/late_events",  # the other event sources
        "expenses_wrong_month": "profit/expenses_wrong_month",  # costs
        "finance_mismatch": "profit/finance_mismatch",
        "stale_data": "profit/stale_data",
    }
    declared = {s for p in pipes.values() for s in p.sources}
    assert declared <= set(catalogue.SOURCE), declared - set(catalogue.SOURCE)  # every source is mapped
    for pid, p in pipes.items():
        for source in p.sources:
            r = route(f"{pid}.source_freshness.{source}", pipes)
            assert r.name == expected[catalogue.SOURCE[source]], (pid, source, r)
            assert r.catalogue_id == catalogue.SOURCE[source]
    # the storm's example: subscriptions on a Growth pipeline goes to the Profit billing runbook
    assert (
        route("growth_daily.source_freshness.subscriptions", pipes).name == "profit/missing_subscription_data"
    )
    assert (
        route("growth_aggregate.source_freshness.crm_accounts", pipes).name == "growth/late_account_updates"
    )


def test_freshness_and_partition_checks_follow_the_family_and_never_cross_into_another_family(pipes):
    assert route("growth_aggregate.freshness", pipes).name == "growth/late_account_updates"
    assert route("growth_daily.sla.freshness", pipes).name == "growth/late_account_updates"
    assert route("engagement_aggregate.freshness", pipes).name == "engagement/late_events"
    assert route("profit_unit.freshness", pipes).name == "profit/stale_data"
    drop = {"direction": "drop"}
    assert route("profit_unit.row_count.profit_unit_monthly", pipes, evidence=drop).name == (
        "profit/missing_subscription_data"
    )
    # investor and report pipelines have no runbooks of their own: the general ones, not Engagement's
    assert (
        route("investor_aggregate.row_count.investor_monthly", pipes, evidence=drop).name
        == "row_count_anomaly"
    )
    assert route("investor_aggregate.nulls.investor_monthly", pipes).name == "null_critical_columns"
    assert route("growth_daily.nulls.growth_daily", pipes).name == "null_critical_columns"
    assert route("profit_aggregate.nulls.profit_monthly", pipes).name == "profit/math_errors"
    for pid, p in pipes.items():
        if p.family in ("growth", "profit"):
            for check_id in (f"{pid}.freshness", f"{pid}.sla.freshness"):
                assert route(check_id, pipes).name.startswith(p.family + "/"), check_id


def test_an_upstream_alert_goes_to_the_upstreams_own_runbook_looking_at_the_upstream(pipes):
    evidence = {
        "upstream": "profit_aggregate",
        "upstream_checks": [
            {"check_id": "profit_aggregate.source_freshness.billing_invoices", "partition": "current"}
        ],
    }
    for pid in ("profit_unit", "investor_aggregate"):
        r = route(f"{pid}.upstream_at_risk.profit_aggregate", pipes, evidence=evidence)
        assert r.name == "profit/missing_subscription_data", r
        assert (r.pipeline, r.check_id, r.partition) == (
            "profit_aggregate",
            "profit_aggregate.source_freshness.billing_invoices",
            "current",
        )
        bare = route(f"{pid}.upstream_at_risk.profit_aggregate", pipes)  # no evidence: its freshness runbook
        assert (bare.name, bare.pipeline) == ("profit/stale_data", "profit_aggregate")
    growth = route("investor_aggregate.upstream_at_risk.growth_aggregate", pipes)
    assert (growth.name, growth.pipeline) == ("growth/late_account_updates", "growth_aggregate")
    missing = route(
        "investor_aggregate.upstreams_succeeded",
        pipes,
        catalogue_id="upstream_missing",
        evidence={"upstream": "growth_aggregate"},
    )
    assert (missing.name, missing.pipeline) == ("growth/late_account_updates", "growth_aggregate")
    # Engagement's own check of its upstreams stays with the Engagement runbook that handles it
    own = route("engagement_aggregate.upstream_missing", pipes, catalogue_id="upstream_missing")
    assert own.name == "engagement/upstream_missing"


def test_runs_deadlines_and_declared_runbooks(pipes):
    assert route("growth_daily.run_status", pipes, evidence={"status": "failed"}).name == "backfill"
    assert route("growth_aggregate.sla.end_of_week", pipes).name == "growth/late_account_updates"
    assert route("investor_aggregate.sla.month_end_close", pipes).name == "month_end_close"
    stale = "notebooks/runbooks/profit/stale_data.ipynb"
    fix = route("profit_aggregate.sla.fix_deadline.12", pipes, runbook=stale, catalogue_id="stale_data")
    assert (fix.name, fix.catalogue_id) == ("profit/stale_data", "stale_data")  # the problem being fixed
    assert route("profit_aggregate.sla.fix_deadline.12", pipes).name == "incident_fix"
    engaged = route(
        "investor_aggregate.engaged_accounts", pipes, runbook="notebooks/runbooks/month_end_close.ipynb"
    )
    assert engaged.name == "month_end_close"
    assert route("profit_aggregate.custom_rule", pipes).name == "backfill"  # nothing declared: the procedure


def test_parse_check_id_takes_monitor_ids_apart():
    ref = catalogue.parse_check_id("growth_aggregate.sla.fix_deadline.12")
    assert (ref.pipeline, ref.kind, ref.subject) == ("growth_aggregate", "sla_at_risk", "fix_deadline.12")
    ref = catalogue.parse_check_id("profit_unit.source_freshness.fx_rates", "profit_unit")
    assert (ref.kind, ref.subject) == ("source_freshness", "fx_rates")
    assert catalogue.parse_check_id("profit_aggregate.math_errors").kind == "domain"


def _alert(check_id: str, pipeline: str, *, at: dt.datetime, evidence=None) -> alerts.Alert:
    result = CheckResult(
        check_id=check_id, pipeline=pipeline, partition="current", status="fail", severity="critical",
        summary="late", evidence=evidence or {}, as_of=at, evaluated_at=at, kind=check_id.split(".")[1],
    )  # fmt: skip
    alerts.sync([result])
    (found,) = [a for a in alerts.list_alerts(open_only=True) if a.check_id == check_id]
    return found


def test_an_alerts_runbook_looks_at_the_upstream_its_route_names(home):
    at = dt.datetime(2026, 11, 12, 12, tzinfo=UTC)
    evidence = {"upstream_checks": [{"check_id": "profit_aggregate.freshness", "partition": "current"}]}
    alert = _alert(
        "investor_aggregate.upstream_at_risk.profit_aggregate", "investor_aggregate", at=at, evidence=evidence
    )
    res = runbooks.resolve_alert(alert)
    assert res.runbook.name == "profit/stale_data" and res.route.pipeline == "profit_aggregate"
    params = runbooks.parameters_for(res.runbook, as_of=at, run_id="r1", alert=alert)
    assert params["alert_id"] == str(alert.alert_id)
    assert (params["pipeline"], params["check_id"]) == ("profit_aggregate", "profit_aggregate.freshness")
    # run by hand with another runbook, the alert's own pipeline and check stay
    other = runbooks.parameters_for(runbooks.Runbook("backfill"), as_of=at, run_id="r2", alert=alert)
    assert (other["pipeline"], other["check_id"]) == (alert.pipeline, alert.check_id)


def test_a_runbook_given_an_alert_defaults_to_the_alerts_last_evaluation(home):
    seen = dt.datetime(2026, 11, 12, 12, tzinfo=UTC)
    alert = _alert("profit_aggregate.source_freshness.subscriptions", "profit_aggregate", at=seen)
    now = seen + dt.timedelta(days=30)
    ctx = kit.load_context(
        "profit/missing_subscription_data", as_of="", now=now, alert_id=str(alert.alert_id)
    )
    assert ctx.as_of == seen  # what the alert saw, not a date in the past nor a month later
    assert kit.load_context("profit/stale_data", as_of="", now=now).as_of == now.replace(microsecond=0)
    given = kit.load_context("profit/stale_data", as_of="2026-11-13T00:00Z", alert_id=str(alert.alert_id))
    assert given.as_of == dt.datetime(2026, 11, 13, tzinfo=UTC)
    assert kit.freshness_cause(ctx) == "missing_subscription_data"  # the source's cause, not the family's


def test_a_fix_deadline_alerts_runbook_looks_at_the_problem_being_fixed(home):
    at = dt.datetime(2026, 11, 12, 12, tzinfo=UTC)
    late = _alert("profit_aggregate.source_freshness.ops_expenses", "profit_aggregate", at=at)
    deadline = _alert(
        f"profit_aggregate.sla.fix_deadline.{late.alert_id}",
        "profit_aggregate",
        at=at,
        evidence={"deadline_kind": "fix_deadline", "alert_id": late.alert_id},
    )
    book = runbooks.Runbook("profit/expenses_wrong_month")
    route = catalogue.Route(book.relpath, "expenses_wrong_month", "fix deadline")
    params = runbooks.route_parameters(deadline, book, route)
    assert (params["pipeline"], params["check_id"]) == ("profit_aggregate", late.check_id)

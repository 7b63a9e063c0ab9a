"""Alerts into incidents, one per cause: the causes (pure), and the tick that groups and pages."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from test_escalation import Recorder  # the recording channel (tests/unit/oncall is on sys.path)

from helpers.core import config as cfgmod
from helpers.oncall import causes, escalation, incidents
from helpers.oncall.notify import Notifier
from helpers.oncall.timeline import timeline
from helpers.storage.warehouse import get_engine

pytestmark = pytest.mark.unit
NY = ZoneInfo("America/New_York")
T = dt.datetime(2026, 11, 10, 3, tzinfo=NY)


def a(
    alert_id, pipeline, check, *, kind="domain", severity="critical", at=T, evidence=None, partition="current"
):
    record = escalation.AlertRecord(str(alert_id), pipeline, f"{pipeline}.{check}", severity, at, f"{check} fails",
                                    kind=kind)  # fmt: skip
    object.__setattr__(record, "evidence", evidence or {})
    object.__setattr__(record, "partition", partition)
    return record


@pytest.fixture(scope="module")
def pipes():
    return cfgmod.load(cfgmod.paths.config_dir()).pipelines


def keys(alerts, pipes, **kw):
    return {
        str(x.alert_id): c.key for c, members in causes.group(alerts, pipes, **kw).values() for x in members
    }


# ---------------------------------------------------------------- the causes


def test_a_late_source_explains_every_pipeline_reading_it_and_what_is_downstream(pipes):
    alerts = [
        a(1, "profit_aggregate", "source_freshness.subscriptions", kind="source_freshness"),
        a(2, "growth_aggregate", "source_freshness.subscriptions", kind="source_freshness"),
        a(3, "growth_aggregate", "freshness", kind="freshness"),  # its mart is stale: because of the source
        a(4, "investor_aggregate", "upstream_at_risk.growth_aggregate", kind="upstream_at_risk",
          evidence={"upstream": "growth_aggregate"}),
        a(5, "investor_aggregate", "freshness", kind="freshness"),  # downstream, through depends_on
    ]  # fmt: skip
    assert set(keys(alerts, pipes).values()) == {"source:subscriptions"}


def test_a_failed_run_is_its_own_cause_and_its_dependants_blocked_runs_join_it(pipes):
    alerts = [
        a(1, "profit_aggregate", "run_status", kind="run_status", evidence={"status": "failed"}, partition="2026-11"),
        a(2, "profit_unit", "run_status", kind="run_status", evidence={"status": "blocked"}, partition="2026-11"),
        a(3, "engagement_aggregate", "freshness", kind="freshness"),  # reads profit_unit (`reads`), no gating
        a(4, "growth_daily", "nulls.growth_daily", kind="nulls", partition="2026-11-09"),  # unrelated
    ]  # fmt: skip
    got = keys(alerts, pipes)
    assert got["1"] == got["2"] == got["3"] == "run:profit_aggregate"
    assert got["4"] == "check:growth_daily.nulls.growth_daily:2026-11-09"


def test_a_failed_run_is_not_blamed_on_a_late_source_and_deadline_alerts_follow_their_incident(pipes):
    alerts = [
        a(1, "profit_aggregate", "run_status", kind="run_status", evidence={"status": "failed"}),
        a(2, "growth_aggregate", "source_freshness.billing_invoices", kind="source_freshness"),
        a(3, "growth_daily", "sla.fix_deadline.9", kind="sla_at_risk",
          evidence={"deadline_kind": "fix_deadline", "alert_id": 9}),
    ]  # fmt: skip
    got = keys(alerts, pipes, incident_causes={"9": "check:growth_daily.nulls.x:2026-11"})
    assert (got["1"], got["2"]) == ("run:profit_aggregate", "source:billing_invoices")  # its error says why
    assert got["3"] == "check:growth_daily.nulls.x:2026-11"  # the watched incident's cause
    assert (
        causes.is_watcher(alerts[2]) and causes.is_deadline(alerts[2]) and not causes.is_deadline(alerts[0])
    )


def test_what_a_cause_puts_at_risk_is_the_investor_pipelines_down_its_lineage(pipes):
    reach = causes.at_risk(causes.source_cause("crm_accounts"), [], pipes)
    assert reach == ["growth_aggregate", "engagement_aggregate", "investor_aggregate", "month_end_report"]
    assert causes.at_risk(causes.pipeline_cause("growth_daily"), [], pipes) == []  # feeds experiments only


# ---------------------------------------------------------------- the tick


@pytest.fixture
def env(home):
    channel = Recorder()
    return cfgmod.get(), Notifier([channel], sleep=lambda s: None, engine=get_engine()), channel


def test_one_incident_pages_once_a_symptom_joins_quietly_and_everyone_paged_hears_it_resolve(env):
    cfg, notifier, channel = env
    store = escalation.MemoryAlerts().add(
        a(1, "profit_aggregate", "source_freshness.fx_rates", kind="source_freshness"),
        a(2, "growth_aggregate", "source_freshness.fx_rates", kind="source_freshness"),
    )
    escalation.escalate(cfg, store, T, notifier=notifier)
    [inc] = incidents.list_incidents()
    assert (inc.cause_key, inc.alert_id, inc.severity) == ("source:fx_rates", "1", "critical")
    assert incidents.members(inc.incident_id) == [("1", "lead"), ("2", "symptom")]
    pages = [s for s in channel.sent if s[0] == "trigger"]
    assert pages == [("trigger", "notify", "DE1")]  # one page for the cause (Profit's on-call week)
    later = T + dt.timedelta(minutes=10)
    store.add(a(3, "profit_unit", "freshness", kind="freshness", at=later))
    escalation.escalate(cfg, store, later, notifier=notifier)
    assert [s for s in channel.sent if s[0] == "trigger"] == pages  # the new symptom paged nobody
    assert ("symptom", "") in [(e.step, e.who) for e in timeline("1")]
    assert [e.step for e in timeline("3")] == ["incident"]  # "joined incident 1"
    # acknowledging a symptom acknowledges the incident: its ladder stops
    escalation.acknowledge(cfg, store, "3", at=later, by="DE1", notifier=notifier)
    assert incidents.get_incident_by_id(inc.incident_id).acknowledged_by == "DE1"
    assert store.get("1").status == store.get("2").status == "acknowledged"
    assert escalation.escalate(cfg, store, T + dt.timedelta(hours=5), notifier=notifier) == []
    # the checks pass: the incident resolves once, and whoever was paged hears it once
    done = T + dt.timedelta(hours=6)
    for i in ("1", "2", "3"):
        store.resolve(i, at=done, note="check passed")
    escalation.escalate(cfg, store, done, notifier=notifier)
    escalation.escalate(cfg, store, done + dt.timedelta(minutes=5), notifier=notifier)
    assert incidents.get_incident_by_id(inc.incident_id).status == "resolved"
    assert [s for s in channel.sent if s[0] == "resolve"] == [("resolve", "resolve", "DE1")]


def test_a_cause_failing_again_soon_after_reopens_its_incident_and_later_opens_a_new_one(env):
    cfg, notifier, channel = env
    store = escalation.MemoryAlerts().add(a(1, "profit_aggregate", "reconciles", partition="2026-10"))
    escalation.escalate(cfg, store, T, notifier=notifier)
    store.resolve("1", at=T + dt.timedelta(minutes=20), note="check passed")
    escalation.escalate(cfg, store, T + dt.timedelta(minutes=20), notifier=notifier)
    [inc] = incidents.list_incidents()
    assert inc.status == "resolved"
    store.add(a(2, "profit_aggregate", "reconciles", partition="2026-10", at=T + dt.timedelta(minutes=50)))
    escalation.escalate(cfg, store, T + dt.timedelta(minutes=50), notifier=notifier)  # within 2 h: a flap
    [again] = incidents.list_incidents()
    assert again.incident_id == inc.incident_id and again.status == "open"
    assert incidents.members(inc.incident_id) == [("1", "lead"), ("2", "symptom")]
    assert "reopened" in [e.step for e in timeline("1")]
    assert len([s for s in channel.sent if s[0] == "trigger"]) == 1  # re-opening pages nobody anew
    store.resolve("2", at=T + dt.timedelta(hours=1), note="check passed")
    escalation.escalate(cfg, store, T + dt.timedelta(hours=1), notifier=notifier)
    late = T + dt.timedelta(hours=5)
    store.add(a(3, "profit_aggregate", "reconciles", partition="2026-10", at=late))
    escalation.escalate(cfg, store, late, notifier=notifier)  # long after: a new incident, a new page
    statuses = sorted((i.incident_id, i.status) for i in incidents.list_incidents())
    assert statuses == [(inc.incident_id, "resolved"), (inc.incident_id + 1, "open")]
    assert len([s for s in channel.sent if s[0] == "trigger"]) == 2

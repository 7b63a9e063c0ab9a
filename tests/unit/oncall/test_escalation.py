"""The escalation ladder, driven tick by tick at explicit times, with ack, resolve and the timeline."""

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pytest

from helpers.core import config as cfgmod
from helpers.oncall import escalation, handoff, incidents
from helpers.oncall.notify import BaseChannel, DeliveryError, Message, Notifier, Recipient, list_notifications
from helpers.storage.warehouse import get_engine

pytestmark = pytest.mark.unit
NY = ZoneInfo("America/New_York")


def ny(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NY)


class Recorder(BaseChannel):
    """A channel that remembers what it sent (optionally failing every time)."""

    name = "recorder"

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, str]] = []
        self.fail = fail

    def send(self, message: Message, recipients: Sequence[Recipient]) -> str:
        if self.fail:
            raise DeliveryError("HTTP 503 Service Unavailable")
        self.sent.extend((message.event, message.step, r.key) for r in recipients)
        return "ok"


@pytest.fixture
def env(home):
    """Config, a recording notifier that never sleeps, and an empty in-memory alert store."""
    channel = Recorder()
    notifier = Notifier([channel], sleep=lambda s: None, engine=get_engine())
    return cfgmod.get(), notifier, channel, escalation.MemoryAlerts()


def alert(alert_id: str, pipeline: str, opened: str, **kw) -> escalation.AlertRecord:
    return escalation.AlertRecord(
        alert_id=alert_id,
        pipeline=pipeline,
        check_id=f"{pipeline}.freshness",
        severity=kw.pop("severity", "critical"),
        opened_at=ny(opened),
        summary=kw.pop("summary", "data is 25 h old"),
        **kw,
    )


def tick(cfg, store, notifier, at: str) -> list[tuple[str, str]]:
    """The ladder steps one tick wrote (the incident entry is asserted on its own)."""
    entries = escalation.escalate(cfg, store, ny(at), notifier=notifier)
    return [(e.step, e.who) for e in entries if e.step != "incident"]


def test_profit_alert_at_3am_climbs_the_ladder_when_nobody_acknowledges(env):
    cfg, notifier, channel, store = env
    store.add(alert("1", "profit_aggregate", "2026-11-10T03:00"))  # week of Nov 9: DE1 on call
    ladder = [
        ("2026-11-10T02:59", []),
        ("2026-11-10T03:00", [("opened", ""), ("notify", "DE1")]),
        ("2026-11-10T03:00", []),  # idempotent for the same as_of
        ("2026-11-10T03:29", []),
        ("2026-11-10T03:30", [("renotify", "DE1")]),
        ("2026-11-10T04:45", [("renotify", "DE1")]),  # late tick: one reminder, not two
        ("2026-11-10T04:59", []),
        ("2026-11-10T05:00", [("secondary", "DE2"), ("renotify", "DE1")]),
        ("2026-11-10T06:59", [("renotify", "DE1"), ("renotify", "DE2")]),
        ("2026-11-10T07:00", [("lead", "lead"), ("renotify", "DE1"), ("renotify", "DE2")]),
        ("2026-11-10T07:00", []),
    ]
    for at, expected in ladder:
        assert tick(cfg, store, notifier, at) == expected, at

    sent = [(event, who) for event, _step, who in channel.sent]
    assert sent[0] == ("trigger", "DE1")
    assert ("escalate", "DE2") in sent and ("escalate", "lead") in sent
    steps = [(e.step, e.who, e.due_at) for e in escalation.timeline("1")]
    assert ("notify", "DE1", ny("2026-11-10T03:00")) in steps
    assert ("secondary", "DE2", ny("2026-11-10T05:00")) in steps
    assert ("lead", "lead", ny("2026-11-10T07:00")) in steps
    # a critical alert that was notified is an incident with Profit's 3-business-day deadline
    (incident,) = incidents.open_incidents(ny("2026-11-10T07:00"))
    assert incident.alert_id == "1" and incident.reason == "cause"
    assert incident.fix_deadline == ny("2026-11-17T00:00")  # Veterans Day (Nov 11) does not count


def test_ack_stops_the_ladder(env):
    cfg, notifier, channel, store = env
    store.add(alert("2", "profit_aggregate", "2026-11-10T03:00", severity="warning"))
    assert tick(cfg, store, notifier, "2026-11-10T03:00") == [("opened", ""), ("notify", "DE1")]
    entry = escalation.acknowledge(cfg, store, "2", at=ny("2026-11-10T03:20"), notifier=notifier)
    assert (entry.step, entry.who) == ("ack", "DE1")  # --by defaults to the engineer paged
    assert store.get("2").status == "acknowledged"
    for at in ("2026-11-10T03:30", "2026-11-10T05:00", "2026-11-10T07:00", "2026-11-11T07:00"):
        assert tick(cfg, store, notifier, at) == [], at
    assert [e for e, _s, _w in channel.sent] == ["trigger", "acknowledge"]
    # the alert's incident (every cause is one) is acknowledged with it
    inc = incidents.get_incident("2")
    assert (inc.acknowledged_by, inc.acknowledged_at) == ("DE1", ny("2026-11-10T03:20"))
    again = escalation.acknowledge(cfg, store, "2", at=ny("2026-11-10T04:00"), by="DE2", notifier=notifier)
    assert (again.who, again.at) == ("DE1", ny("2026-11-10T03:20"))


def test_ack_before_the_first_tick_sends_nothing(env):
    cfg, notifier, channel, store = env
    store.add(alert("3", "profit_unit", "2026-11-10T03:00"))
    escalation.acknowledge(cfg, store, "3", at=ny("2026-11-10T03:05"), by="DE2", notifier=notifier)
    assert tick(cfg, store, notifier, "2026-11-10T06:00") == [("opened", "")]
    assert channel.sent == []
    with pytest.raises(ValueError, match="unknown person 'DE7'"):
        escalation.acknowledge(cfg, store.add(alert("4", "profit_unit", "2026-11-10T03:00")), "4",
                               at=ny("2026-11-10T03:05"), by="DE7", notifier=notifier)  # fmt: skip


def test_growth_alert_on_saturday_waits_for_monday_business_hours(env):
    cfg, notifier, channel, store = env
    store.add(alert("5", "growth_aggregate", "2026-11-14T10:00"))
    ladder = [
        ("2026-11-14T10:00", [("opened", ""), ("deferred", "")]),
        ("2026-11-15T20:00", []),
        ("2026-11-16T08:59", []),
        ("2026-11-16T09:00", [("notify", "DE3")]),
        ("2026-11-16T09:30", [("renotify", "DE3")]),
        ("2026-11-16T11:00", [("secondary", "DE4"), ("renotify", "DE3")]),
        ("2026-11-16T13:00", [("lead", "lead"), ("renotify", "DE3"), ("renotify", "DE4")]),
    ]
    for at, expected in ladder:
        assert tick(cfg, store, notifier, at) == expected, at
    assert channel.sent[0] == ("trigger", "notify", "DE3")
    deferred = next(e for e in escalation.timeline("5") if e.step == "deferred")
    assert "first notification at Mon 2026-11-16 09:00 EST" in deferred.detail


def test_growth_ladder_runs_in_business_time_across_the_weekend(env):
    cfg, notifier, _channel, store = env
    store.add(alert("6", "growth_daily", "2026-11-13T16:00"))  # Friday, one business hour left
    assert tick(cfg, store, notifier, "2026-11-13T16:00") == [("opened", ""), ("notify", "DE4")]
    assert tick(cfg, store, notifier, "2026-11-14T16:00") == [("renotify", "DE4")]  # the 16:30 reminder
    # Friday 16:30 + 30 business minutes is Monday's opening: one reminder then, not two
    assert tick(cfg, store, notifier, "2026-11-16T09:59") == [("renotify", "DE4")]
    assert tick(cfg, store, notifier, "2026-11-16T10:00")[0] == ("secondary", "DE3")  # 2 business hours


def test_growth_alert_on_a_month_end_saturday_notifies_both_owners_at_once(env):
    cfg, notifier, channel, store = env
    store.add(alert("7", "growth_aggregate", "2026-10-31T03:00"))
    assert tick(cfg, store, notifier, "2026-10-31T03:00") == [
        ("opened", ""),
        ("notify", "DE3"),
        ("notify", "DE4"),
    ]
    assert {who for _e, _s, who in channel.sent} == {"DE3", "DE4"}
    assert tick(cfg, store, notifier, "2026-10-31T05:00")[0] == ("secondary", "DE4")  # real time in month-end


@pytest.mark.parametrize(
    "catalogue_id, contact",
    [
        ("finance_mismatch", "contact:finance"),
        ("missing_subscription_data", "contact:engineering"),
        ("kafka_outage", "contact:engineering"),
        ("schema_change", "contact:frontend"),
        ("duplicate_accounts", "contact:accounts"),
        ("math_errors", None),
    ],
)
def test_cross_team_cause_loops_in_that_teams_contact(env, catalogue_id, contact):
    cfg, notifier, channel, store = env
    pipeline = "growth_aggregate" if catalogue_id == "duplicate_accounts" else "profit_aggregate"
    store.add(alert("8", pipeline, "2026-11-10T10:00", catalogue_id=catalogue_id))
    steps = tick(cfg, store, notifier, "2026-11-10T10:00")
    cross = [who for step, who in steps if step == "cross_team"]
    assert cross == ([contact] if contact else [])
    if contact:
        assert ("cross_team", f"cross_team:{contact.split(':')[1]}", contact) in channel.sent


def test_a_failed_delivery_is_recorded_and_the_alert_still_escalates(home):
    cfg = cfgmod.get()
    sleeps: list[float] = []
    notifier = Notifier(
        [Recorder(fail=True)], sleep=sleeps.append, engine=get_engine(), policy=cfg.team.notify.retry
    )
    store = escalation.MemoryAlerts().add(alert("9", "profit_aggregate", "2026-11-10T03:00"))
    tick(cfg, store, notifier, "2026-11-10T03:00")
    assert sleeps == [2.0, 4.0, 8.0]
    assert tick(cfg, store, notifier, "2026-11-10T05:00")[0] == ("secondary", "DE2")
    assert tick(cfg, store, notifier, "2026-11-10T07:00")[0] == ("lead", "lead")
    rows = list_notifications(alert_id="9")
    notify_rows = sorted((r["round"], r["attempt"], r["status"]) for r in rows if r["step"] == "notify")
    # 4 attempts on the first tick, then one more round on each later tick
    assert notify_rows[:4] == [(1, 1, "retry"), (1, 2, "retry"), (1, 3, "retry"), (1, 4, "failed")]
    assert (2, 4, "failed") in notify_rows and (3, 4, "failed") in notify_rows
    assert all(r["error"] == "HTTP 503 Service Unavailable" for r in rows)


def test_resolve_closes_alert_incident_and_ladder(env):
    cfg, notifier, channel, store = env
    store.add(alert("10", "engagement_aggregate", "2026-12-21T10:00"))
    tick(cfg, store, notifier, "2026-12-21T10:00")
    with pytest.raises(ValueError, match="--note is required"):
        escalation.resolve(cfg, store, "10", note=" ", at=ny("2026-12-21T11:00"), notifier=notifier)
    entry = escalation.resolve(
        cfg,
        store,
        "10",
        note="Kafka broker restarted; backfilled",
        at=ny("2026-12-21T11:00"),
        by="DE3",
        notifier=notifier,
    )
    assert (entry.step, entry.who, entry.detail) == ("resolve", "DE3", "Kafka broker restarted; backfilled")
    assert store.get("10").status == "resolved"
    inc = incidents.get_incident("10")
    assert (inc.status, inc.resolved_at) == ("resolved", ny("2026-12-21T11:00"))
    assert incidents.open_incidents(ny("2026-12-21T10:30"))[0].alert_id == "10"  # seen from before
    assert incidents.open_incidents(ny("2026-12-21T12:00")) == []
    assert tick(cfg, store, notifier, "2026-12-21T15:00") == []
    assert channel.sent[-1][0] == "resolve"
    # Christmas week: DE3 is on call and Engagement's secondary at once: the other owner backs up
    assert [(e.step, e.who) for e in escalation.timeline("10")] == [
        ("opened", ""),
        ("notify", "DE3"),
        ("notify", "DE1"),
        ("incident", ""),
        ("resolve", "DE3"),
    ]


def test_unknown_alert_is_a_lookup_error(env):
    cfg, notifier, _channel, store = env
    with pytest.raises(LookupError, match="no alert 99"):
        escalation.acknowledge(cfg, store, "99", at=ny("2026-11-10T03:00"), notifier=notifier)


def test_wired_to_the_alerts_table(home, capsys, monkeypatch):
    """A failing check opens an alert (``alerts`` table); the CLI escalates, acks and resolves it."""
    from helpers.checks.framework import CheckResult
    from helpers.cli.main import main
    from helpers.oncall import alerts

    for name in ("WORKBOOK_SLACK_WEBHOOK_URL", "WORKBOOK_SMTP_URL", "WORKBOOK_PAGERDUTY_ROUTING_KEY"):
        monkeypatch.delenv(name, raising=False)  # console and warehouse only: never page anyone real

    as_of = ny("2026-11-10T03:00")
    result = CheckResult(
        check_id="profit_aggregate.freshness",
        pipeline="profit_aggregate",
        partition="2026-11",
        status="fail",
        severity="critical",
        summary="profit_monthly is 25 h old",
        evidence={},
        as_of=as_of,
        evaluated_at=as_of,
        catalogue_id="stale_data",
        runbook="notebooks/runbooks/profit/stale_data.ipynb",
    )
    (change,) = alerts.sync([result])
    alert_id = str(change.alert_id)
    assert main(["escalate", "--as-of", "2026-11-10T08:00:00Z", "--json"]) == 0
    assert '"who": "DE1"' in capsys.readouterr().out
    assert main(["ack", alert_id, "--by", "DE1", "--as-of", "2026-11-10T08:10:00Z"]) == 0
    got = alerts.get_alert(int(alert_id))
    assert (got.status, got.acknowledged_by) == ("acknowledged", "DE1")
    assert main(["escalate", "--as-of", "2026-11-10T12:00:00Z", "--json"]) == 0
    assert capsys.readouterr().out.count('"step"') == 0
    assert (
        main(["resolve", alert_id, "--note", "scheduler restarted", "--as-of", "2026-11-10T09:00:00Z"]) == 0
    )
    assert alerts.get_alert(int(alert_id)).status == "resolved"
    assert main(["timeline", alert_id, "--json"]) == 0
    assert main(["ack", "12345"]) == 2
    assert main(["ack", "abc"]) == 2


def test_handoff_brief_lists_whats_open_at_risk_and_changed(env):
    cfg, notifier, _channel, store = env
    store.add(
        alert("20", "profit_aggregate", "2026-11-12T03:00"),  # Thu: due end of Tue 17 Nov
        alert("21", "growth_daily", "2026-11-13T11:00", severity="warning"),
        alert("22", "engagement_aggregate", "2026-11-16T13:00"),  # after the brief's as_of: not in it
    )
    tick(cfg, store, notifier, "2026-11-13T12:00")
    escalation.acknowledge(cfg, store, "21", at=ny("2026-11-13T12:10"), by="DE4", notifier=notifier)
    brief = handoff.handoff_brief(cfg, ny("2026-11-16T12:00"), store=store)
    assert (brief.outgoing, brief.incoming, brief.handoff_at) == ("DE1", "DE2", ny("2026-11-16T09:00"))
    assert [a["alert_id"] for a in brief.open_alerts] == ["20", "21"]
    # Growth's fix deadline is 2 business days of business hours: Tue 17 Nov 11:00, 23 h away
    assert [(i["alert_id"], i["hours_left"], i["at_risk"]) for i in brief.incidents] == [
        ("21", 23.0, True),
        ("20", 36.0, False),  # Profit: end of Tue 17 Nov (3rd business day after Thu 12)
    ]
    assert [r["what"] for r in brief.at_risk] == ["incident 2 (alert 21)"]
    assert {e["step"] for e in brief.this_week} >= {"opened", "notify", "ack", "incident"}
    summary = brief.summary()
    assert (summary["open_alerts"], summary["open_incidents"], summary["at_risk"]) == (2, 2, 1)
    # on a Friday the brief is about the coming Monday's handoff
    assert handoff.handoff_brief(cfg, ny("2026-11-20T15:00"), store=store).incoming == "DE3"


def test_scheduler_hook_escalates_the_alerts_table(home, monkeypatch):
    from helpers.checks.framework import CheckResult
    from helpers.oncall import alerts

    for name in ("WORKBOOK_SLACK_WEBHOOK_URL", "WORKBOOK_SMTP_URL", "WORKBOOK_PAGERDUTY_ROUTING_KEY"):
        monkeypatch.delenv(name, raising=False)
    at = ny("2026-11-14T10:00")  # a Saturday: the Growth alert waits
    result = CheckResult(
        check_id="growth_aggregate.nulls",
        pipeline="growth_aggregate",
        partition="2026-11",
        status="fail",
        severity="critical",
        summary="NULL ending_mrr_usd_cents in 3 rows",
        evidence={},
        as_of=at,
        evaluated_at=at,
    )
    (change,) = alerts.sync([result])
    cfg = cfgmod.get()
    escalation.scheduler_hook(as_of=at, now=at, pipelines=["growth_aggregate"], config=cfg)
    escalation.scheduler_hook(as_of=ny("2026-11-16T09:01"), now=at, pipelines=[], config=cfg)
    steps = [(e.step, e.who) for e in escalation.timeline(str(change.alert_id))]
    assert steps[:4] == [("opened", ""), ("deferred", ""), ("incident", ""), ("notify", "DE3")]


def test_an_alert_resolved_by_a_passing_check_closes_the_loop(env):
    cfg, notifier, channel, store = env
    store.add(alert("30", "profit_aggregate", "2026-11-10T03:00"))
    tick(cfg, store, notifier, "2026-11-10T03:00")
    store.resolve("30", at=ny("2026-11-10T03:40"), note="check passed: profit_monthly is 1 h old")
    assert tick(cfg, store, notifier, "2026-11-10T04:00") == [("resolve", "")]
    assert tick(cfg, store, notifier, "2026-11-10T04:00") == []
    assert channel.sent[-1] == ("resolve", "resolve", "DE1")
    last = escalation.timeline("30")[-1]
    assert (last.step, last.at, last.detail) == (
        "resolve",
        ny("2026-11-10T03:40"),
        "check passed: profit_monthly is 1 h old",
    )
    assert incidents.get_incident("30").status == "resolved"
    assert tick(cfg, store, notifier, "2026-11-10T09:00") == []  # no more reminders


def test_an_alert_of_an_unconfigured_pipeline_still_reaches_the_on_call(env):
    cfg, notifier, _channel, store = env
    store.add(alert("31", "legacy_export", "2026-11-14T03:00"))  # not in config/pipelines.yml
    assert tick(cfg, store, notifier, "2026-11-14T03:00") == [("opened", ""), ("notify", "DE1")]
    assert tick(cfg, store, notifier, "2026-11-14T05:00")[0] == ("secondary", "DE4")  # who handed over
    assert incidents.get_incident("31") is None


def test_a_stored_alerts_pages_carry_the_callers_annotation(env):
    """The runbooks sit above on-call: the caller passes their diagnosis lines in."""
    from dataclasses import replace

    from helpers.oncall.ladder import Step
    from helpers.oncall.schedule import schedule_for

    cfg, *_ = env
    stored = alert("7", "profit_aggregate", "2026-11-10T03:00")
    step = Step("notify", "notify", stored.opened_at)

    def annotate(alert_id):
        return [f"diagnosis: stale_data ({alert_id})"]

    page = escalation.message_for(schedule_for(cfg), stored, step, annotate=annotate)
    assert "diagnosis: stale_data (7)" in page.body.splitlines()
    in_memory = replace(stored, alert_id="drill-7")  # not an id of the alerts table: nothing to add
    assert (
        "diagnosis" not in escalation.message_for(schedule_for(cfg), in_memory, step, annotate=annotate).body
    )
    assert "diagnosis" not in escalation.message_for(schedule_for(cfg), stored, step).body

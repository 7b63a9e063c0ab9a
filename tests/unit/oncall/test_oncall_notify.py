"""Notification delivery without a network: retries, backoff, records, redelivery, secrets, config."""

import datetime as dt
from collections.abc import Sequence

import pytest

from helpers.core.config import NotifyConfig, RetryPolicy
from helpers.oncall.notify import (
    BaseChannel,
    DeliveryError,
    EmailChannel,
    Message,
    Notifier,
    PagerDutyChannel,
    Recipient,
    backoff_seconds,
    channels_from_env,
    deliver,
    list_notifications,
)
from helpers.storage.warehouse import get_engine

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 11, 10, 8, 0, tzinfo=dt.UTC)
MSG = Message(
    alert_id="7", event="trigger", subject="[critical] profit_aggregate: stale", body="b", step="notify"
)
DE1 = Recipient("DE1", "Data Engineer 1", "de1@example.com", "@de1", "on_call")
DE2 = Recipient("DE2", "Data Engineer 2", "de2@example.com", "@de2", "backup")


class Flaky(BaseChannel):
    """Fails with the given errors in turn, then succeeds."""

    name = "flaky"

    def __init__(self, *errors: DeliveryError, secrets: Sequence[str] = ()) -> None:
        super().__init__(secrets=secrets)
        self.errors = list(errors)
        self.calls = 0

    def send(self, message, recipients):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_backoff_is_exponential_and_capped():
    policy = RetryPolicy(attempts=6, base_seconds=2, factor=3, max_seconds=30)
    assert [backoff_seconds(policy, n) for n in range(1, 6)] == [2, 6, 18, 30, 30]


def test_retries_until_success_with_logical_attempt_times():
    sleeps: list[float] = []
    ch = Flaky(DeliveryError("HTTP 500"), DeliveryError("HTTP 502"))
    d = deliver(ch, MSG, [DE1], policy=RetryPolicy(), at=T0, sleep=sleeps.append)
    assert d.delivered and ch.calls == 3 and sleeps == [2.0, 4.0]
    assert [(a.number, a.status, a.at - T0) for a in d.attempts] == [
        (1, "retry", dt.timedelta(0)),
        (2, "retry", dt.timedelta(seconds=2)),
        (3, "sent", dt.timedelta(seconds=6)),
    ]


def test_permanent_error_is_not_retried():
    sleeps: list[float] = []
    d = deliver(
        Flaky(DeliveryError("HTTP 404", retryable=False)),
        MSG,
        [DE1],
        policy=RetryPolicy(),
        at=T0,
        sleep=sleeps.append,
    )
    assert [a.status for a in d.attempts] == ["gave_up"] and sleeps == []


def test_errors_never_carry_the_channels_secret():
    ch = Flaky(DeliveryError("POST https://hooks.example/T0/s3cr3t-token failed"), secrets=["s3cr3t-token"])
    d = deliver(ch, MSG, [DE1], policy=RetryPolicy(attempts=1), at=T0, sleep=lambda s: None)
    assert "s3cr3t-token" not in (d.attempts[0].error or "")
    assert "***REDACTED***" in (d.attempts[0].error or "")


def test_failed_delivery_is_recorded_and_redelivered_on_later_ticks_only(home):
    engine = get_engine()
    ch = Flaky(*[DeliveryError("HTTP 503")] * 5)
    n = Notifier([ch], policy=RetryPolicy(attempts=2, redeliver_ticks=2), sleep=lambda s: None, engine=engine)
    (d,) = n.send(MSG, [DE1], at=T0)
    assert d.status == "failed"
    assert n.redeliver(at=T0) == []  # same tick: nothing again (escalate is idempotent per as_of)
    (d2,) = n.redeliver(at=T0 + dt.timedelta(minutes=1))
    assert (d2.round, d2.status) == (2, "failed")
    (d3,) = n.redeliver(at=T0 + dt.timedelta(minutes=2))
    assert (d3.round, d3.status) == (3, "sent")  # the 6th call succeeds
    assert n.redeliver(at=T0 + dt.timedelta(minutes=3)) == []
    rows = sorted((r["round"], r["attempt"], r["status"]) for r in list_notifications(alert_id="7"))
    assert rows == [
        (1, 1, "retry"),
        (1, 2, "failed"),
        (2, 1, "retry"),
        (2, 2, "failed"),
        (3, 1, "retry"),
        (3, 2, "sent"),
    ]


def test_gives_up_after_the_last_round_but_keeps_the_message(home):
    n = Notifier(
        [Flaky(*[DeliveryError("HTTP 503")] * 9)],
        policy=RetryPolicy(attempts=1, redeliver_ticks=1),
        sleep=lambda s: None,
    )
    n.send(MSG, [DE1, DE2], at=T0)  # per recipient: two deliveries
    final = n.redeliver(at=T0 + dt.timedelta(minutes=5))
    assert [d.status for d in final] == ["gave_up", "gave_up"]
    assert n.redeliver(at=T0 + dt.timedelta(minutes=10)) == []
    failed = list_notifications(failed_only=True)
    assert {r["recipient"] for r in failed} == {"DE1", "DE2"}


def test_broadcast_channels_send_once_and_email_only_to_addresses(home):
    class Broadcast(Flaky):
        name = "bcast"
        broadcast = True

    b, per = Broadcast(), Flaky()
    no_mail = Recipient("contact:x", "X", None, None, "cross_team")
    n = Notifier([b, per], sleep=lambda s: None)
    n.send(MSG, [DE1, DE2, no_mail], at=T0)
    assert (b.calls, per.calls) == (1, 3)
    mail = EmailChannel("smtp://relay.local", sender="wb@example.com")
    assert mail.reaches(DE1) and not mail.reaches(no_mail)


def test_channels_come_from_config_and_environment_only():
    cfg = NotifyConfig()
    assert [c.name for c in channels_from_env(cfg, {})] == ["console", "warehouse"]
    env = {
        "WORKBOOK_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "WORKBOOK_SMTP_URL": "smtp://user:pw@127.0.0.1:2525?starttls=true&from=oncall@example.com",
        "WORKBOOK_PAGERDUTY_ROUTING_KEY": "R0UTINGKEY",
        "WORKBOOK_PAGERDUTY_URL": "http://127.0.0.1:9/v2/enqueue",
    }
    chans = {c.name: c for c in channels_from_env(cfg, env)}
    assert list(chans) == ["console", "warehouse", "slack", "email", "pagerduty"]
    email = chans["email"]
    assert (email.host, email.port, email.user, email.password, email.starttls, email.sender) == (
        "127.0.0.1",
        2525,
        "user",
        "pw",
        True,
        "oncall@example.com",
    )
    assert chans["pagerduty"].url == "http://127.0.0.1:9/v2/enqueue"
    only = channels_from_env(NotifyConfig(channels=("warehouse", "slack")), env)
    assert [c.name for c in only] == ["warehouse", "slack"]
    with pytest.raises(ValueError, match="expected smtp://"):
        EmailChannel("http://mail.example", sender="x@example.com")


def test_pagerduty_events_v2_payloads():
    pd = PagerDutyChannel("KEY", url="http://127.0.0.1:9")
    trigger = pd.payload(MSG, [DE1])
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "7"
    assert trigger["payload"]["severity"] == "warning" and trigger["payload"]["source"]
    assert trigger["payload"]["custom_details"]["notify"] == ["DE1 (Data Engineer 1)"]
    ack = pd.payload(Message(alert_id="7", event="acknowledge", subject="s", body=""), [DE1])
    assert ack == {"routing_key": "KEY", "event_action": "acknowledge", "dedup_key": "7"}
    assert not pd.wants(Message(alert_id="7", event="cross_team", subject="s", body=""))

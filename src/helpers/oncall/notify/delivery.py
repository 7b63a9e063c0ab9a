"""Delivering a message on every channel: retries with backoff, and the ``notifications`` record.

Each delivery (one channel, one recipient group) is tried up to ``retry.attempts`` times, sleeping
``base * factor**(n-1)`` seconds (capped at ``max_seconds``) between tries through an injectable
``sleep``. Every attempt is a row of ``notifications`` (alert, channel, recipient, attempt, status,
error, at) holding the message, so nothing is lost: a delivery that still fails is left ``failed``
and the next ``workbook escalate`` tick tries it again (``retry.redeliver_ticks`` times) before it
is marked ``gave_up``; a permanent error (HTTP 4xx, SMTP 5xx) gives up at once. A failed delivery
never stops the escalation ladder.

Attempt times are logical: the round's ``at`` (the escalate tick's ``as_of``) plus the backoff slept
so far, so records do not depend on the wall clock.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core.config import RetryPolicy
from helpers.core.timeutil import as_utc, naive_utc
from helpers.oncall.notify.base import Channel, DeliveryError, Message, Recipient
from helpers.storage.warehouse import get_engine, metadata, register_tables

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("notification_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(255), nullable=False),  # alert|step|channel|recipients
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("recipient", sa.String(255), nullable=False),  # recipient keys, comma-separated
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("round", sa.Integer, nullable=False, default=1),
    sa.Column("status", sa.String(8), nullable=False),  # sent | retry | failed | gave_up
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("receipt", sa.Text, nullable=True),
    sa.Column("at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("round_at", sa.DateTime(), nullable=False),
    sa.Column("message", sa.Text, nullable=False),  # JSON of the Message
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list of Recipient
    sa.Index("ix_notifications_alert", "alert_id"),
    sa.Index("ix_notifications_delivery", "delivery_id"),
)

register_tables(notifications)

FINAL_STATUSES = ("sent", "failed", "gave_up")


@dataclass(frozen=True)
class Attempt:
    number: int
    status: str  # sent | retry | failed | gave_up
    at: dt.datetime
    error: str | None = None
    receipt: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One channel's delivery of one message to one recipient group, with every attempt."""

    channel: str
    message: Message
    recipients: tuple[Recipient, ...]
    attempts: tuple[Attempt, ...]
    round: int = 1

    @property
    def status(self) -> str:
        return self.attempts[-1].status

    @property
    def delivered(self) -> bool:
        return self.status == "sent"

    @property
    def delivery_id(self) -> str:
        keys = ",".join(r.key for r in self.recipients)
        return f"{self.message.alert_id}|{self.message.step}|{self.channel}|{keys}"[:255]


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """The pause after failed attempt ``attempt`` (1-based)."""
    return min(policy.base_seconds * policy.factor ** (attempt - 1), policy.max_seconds)


def deliver(
    channel: Channel,
    message: Message,
    recipients: Sequence[Recipient],
    *,
    policy: RetryPolicy,
    at: dt.datetime,
    sleep: Callable[[float], None] = time.sleep,
    last_round: bool = True,
    round: int = 1,
) -> Delivery:
    """Send with retries; the final failed attempt is ``gave_up`` on the last round or a permanent error."""
    attempts: list[Attempt] = []
    t = as_utc(at)
    for n in range(1, policy.attempts + 1):
        try:
            receipt = channel.send(message, recipients)
        except DeliveryError as e:
            error, retryable = channel.scrub(str(e)), e.retryable
        except Exception as e:  # a bug in a channel must not stop the ladder either
            error, retryable = channel.scrub(f"{type(e).__name__}: {e}"), False
        else:
            attempts.append(Attempt(n, "sent", t, receipt=channel.scrub(receipt)))
            break
        if not retryable or n == policy.attempts:
            status = "gave_up" if (last_round or not retryable) else "failed"
            attempts.append(Attempt(n, status, t, error=error))
            break
        attempts.append(Attempt(n, "retry", t, error=error))
        pause = backoff_seconds(policy, n)
        sleep(pause)
        t += dt.timedelta(seconds=pause)
    return Delivery(channel.name, message, tuple(recipients), tuple(attempts), round)


def _recipients_json(recipients: Sequence[Recipient]) -> str:
    return json.dumps([r.__dict__ for r in recipients])


class Notifier:
    """Sends messages on its channels with retries and records every attempt.

    ``sleep`` is injectable so tests do not sleep; ``engine=None`` records in the default warehouse,
    ``record=False`` records nothing (dry runs).
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        engine: Engine | None = None,
        record: bool = True,
    ) -> None:
        self.channels = list(channels)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self._engine = engine
        self.record = record

    @property
    def engine(self) -> Engine:
        return self._engine or get_engine()

    def channel_names(self, message: Message, recipients: Sequence[Recipient]) -> list[str]:
        """The channels that would carry ``message`` to ``recipients``."""
        return [c.name for c in self.channels if c.wants(message) and any(c.reaches(r) for r in recipients)]

    def send(self, message: Message, recipients: Sequence[Recipient], *, at: dt.datetime) -> list[Delivery]:
        """Deliver on every channel that wants the message; failures are recorded, not raised."""
        out = []
        last_round = self.policy.redeliver_ticks == 0
        for channel in self.channels:
            if not channel.wants(message):
                continue
            reach = [r for r in recipients if channel.reaches(r)]
            if not reach:
                continue
            for group in [reach] if channel.broadcast else [[r] for r in reach]:
                d = deliver(
                    channel,
                    message,
                    group,
                    policy=self.policy,
                    at=at,
                    sleep=self.sleep,
                    last_round=last_round,
                )
                self._record(d, round_at=at)
                out.append(d)
        return out

    def redeliver(self, *, at: dt.datetime) -> list[Delivery]:
        """Try again every delivery left ``failed`` by an earlier tick (not one at this ``at``)."""
        if not self.record:
            return []
        latest = (
            sa.select(sa.func.max(notifications.c.notification_id))
            .group_by(notifications.c.delivery_id)
            .scalar_subquery()
        )
        q = sa.select(notifications).where(
            notifications.c.notification_id.in_(latest),
            notifications.c.status == "failed",
            notifications.c.round_at < naive_utc(at),
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(notifications.c.notification_id)).mappings().all()
        by_name = {c.name: c for c in self.channels}
        out = []
        for row in rows:
            channel = by_name.get(row["channel"])
            if channel is None:  # no longer configured: leave it failed and visible
                continue
            message = Message.from_json(json.loads(row["message"]))
            recipients = tuple(Recipient(**r) for r in json.loads(row["recipients"]))
            round_ = row["round"] + 1
            d = deliver(
                channel,
                message,
                recipients,
                policy=self.policy,
                at=at,
                sleep=self.sleep,
                last_round=round_ > self.policy.redeliver_ticks,
                round=round_,
            )
            self._record(d, round_at=at)
            out.append(d)
        return out

    def _record(self, d: Delivery, *, round_at: dt.datetime) -> None:
        if not self.record:
            return
        rows = [
            dict(
                delivery_id=d.delivery_id,
                alert_id=d.message.alert_id,
                step=d.message.step,
                event=d.message.event,
                channel=d.channel,
                recipient=",".join(r.key for r in d.recipients),
                attempt=a.number,
                round=d.round,
                status=a.status,
                error=a.error,
                receipt=a.receipt,
                at=naive_utc(a.at),
                round_at=naive_utc(round_at),
                message=json.dumps(d.message.as_json()),
                recipients=_recipients_json(d.recipients),
            )
            for a in d.attempts
        ]
        with self.engine.begin() as conn:
            conn.execute(notifications.insert(), rows)


def list_notifications(
    *,
    alert_id: str | None = None,
    failed_only: bool = False,
    limit: int = 500,
    engine: Engine | None = None,
) -> list[dict[str, object]]:
    """Recorded attempts, newest first (``failed_only``: attempts that did not get through)."""
    q = sa.select(
        notifications.c.notification_id,
        notifications.c.alert_id,
        notifications.c.step,
        notifications.c.event,
        notifications.c.channel,
        notifications.c.recipient,
        notifications.c.attempt,
        notifications.c.round,
        notifications.c.status,
        notifications.c.error,
        notifications.c.at,
    )
    if alert_id is not None:
        q = q.where(notifications.c.alert_id == str(alert_id))
    if failed_only:
        q = q.where(notifications.c.status.in_(("retry", "failed", "gave_up")))
    q = q.order_by(notifications.c.notification_id.desc()).limit(limit)
    with (engine or get_engine()).connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings().all()]
    for r in rows:
        r["at"] = as_utc(r["at"])
    return rows

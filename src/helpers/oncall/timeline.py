"""The timeline of each alert: every step of its escalation, its acknowledgement and resolution.

An incident's ladder is recorded on the timeline of its lead alert (``oncall.incidents``); each
symptom's timeline says which incident it joined. Entries are unique per alert, step key and
person (:func:`claim`), so two ticks never record, nor send, the same step twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpers.core.timeutil import as_utc, naive_utc
from helpers.storage.warehouse import get_engine, metadata, register_tables

alert_timeline = sa.Table(
    "alert_timeline",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(), nullable=False),  # naive UTC: when it happened (the tick's as_of)
    sa.Column(
        "step", sa.String(24), nullable=False
    ),  # opened|deferred|notify|renotify|secondary|lead|cross_team|ack|resolve|incident
    sa.Column("who", sa.String(64), nullable=False, default=""),
    sa.Column("channel", sa.String(120), nullable=False, default=""),  # channels used, comma-separated
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("step_key", sa.String(64), nullable=False),  # e.g. notify, renotify:3
    sa.Column("due_at", sa.DateTime(), nullable=True),  # when the ladder made it due
    sa.UniqueConstraint("alert_id", "step_key", "who", name="ux_alert_timeline_step"),
    sa.Index("ix_alert_timeline_alert", "alert_id"),
)

register_tables(alert_timeline)


@dataclass(frozen=True)
class TimelineEntry:
    alert_id: str
    at: dt.datetime
    step: str
    who: str
    channel: str
    detail: str
    step_key: str
    due_at: dt.datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.__dict__.items()}


def timeline(alert_id: str, *, engine: Engine | None = None) -> list[TimelineEntry]:
    """The alert's timeline in order."""
    q = (
        sa.select(alert_timeline)
        .where(alert_timeline.c.alert_id == str(alert_id))
        .order_by(alert_timeline.c.at, alert_timeline.c.entry_id)
    )
    with (engine or get_engine()).connect() as conn:
        rows = conn.execute(q).mappings().all()
    return [
        TimelineEntry(
            alert_id=r["alert_id"],
            at=as_utc(r["at"]),
            step=r["step"],
            who=r["who"],
            channel=r["channel"],
            detail=r["detail"],
            step_key=r["step_key"],
            due_at=as_utc(r["due_at"]) if r["due_at"] is not None else None,
        )
        for r in rows
    ]


def claim(entries: Sequence[TimelineEntry], engine: Engine) -> bool:
    """Insert the entries of one step atomically; False when another tick already recorded it."""
    try:
        with engine.begin() as conn:
            conn.execute(
                alert_timeline.insert(),
                [
                    dict(
                        alert_id=e.alert_id,
                        at=naive_utc(e.at),
                        step=e.step,
                        who=e.who,
                        channel=e.channel,
                        detail=e.detail,
                        step_key=e.step_key,
                        due_at=naive_utc(e.due_at),
                    )
                    for e in entries
                ],
            )
        return True
    except IntegrityError:
        return False

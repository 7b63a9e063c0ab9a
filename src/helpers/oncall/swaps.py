"""Swaps as recorded: their tables, each swap's history (recorded, emergency cover, cancelled) and status.

``workbook oncall swap`` stores a swap in ``oncall_swaps`` (the week, the two engineers, the
request time) and what happened to it in ``oncall_swap_events``:

- ``recorded``: a swap with the notice the plan asks for, and who recorded it;
- ``emergency``: a cover inside the notice period, with everyone who agreed (both engineers
  and the team lead must);
- ``cancelled``: who cancelled it, when and why.

Nothing is deleted: a cancelled swap stays listed, and recording the same swap again reinstates
it with the new request time. A swap stored before events existed counts as ``recorded``.
Swaps in ``config/team.yml`` are listed too, as ``team.yml#N``. The rules (notice, who is on
call, a started week) are checked in :mod:`helpers.oncall.schedule`, which applies the swaps in
effect; this module only stores and reads them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core.config import Swap, TeamConfig
from helpers.core.timeutil import as_utc, naive_utc
from helpers.storage.warehouse import get_engine, metadata, register_tables

LEAD = "lead"  # the team lead, as ``--by`` / ``--approved-by`` name them
REQUEST_EVENTS = ("recorded", "emergency")


class SwapRefused(ValueError):
    """A swap request or cancellation breaks a rule (notice, who is on call, unknown person or id)."""


oncall_swaps = sa.Table(
    "oncall_swaps",
    metadata,
    sa.Column("swap_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("week_of", sa.String(10), nullable=False),  # local date of the week's handoff
    sa.Column("a", sa.String(32), nullable=False),
    sa.Column("b", sa.String(32), nullable=False),
    sa.Column("requested_at", sa.DateTime(), nullable=False),  # naive UTC; the latest request
    sa.UniqueConstraint("week_of", "a", "b", name="ux_oncall_swaps_week_pair"),
)

oncall_swap_events = sa.Table(
    "oncall_swap_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("swap_id", sa.Integer, nullable=False, index=True),
    sa.Column("event", sa.String(16), nullable=False),  # recorded | emergency | cancelled
    sa.Column("by", sa.String(32)),
    sa.Column("at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("approved_by", sa.String(200)),  # comma-separated: who agreed to an emergency cover
    sa.Column("reason", sa.Text),
)

register_tables(oncall_swaps, oncall_swap_events)


@dataclass(frozen=True)
class SwapEvent:
    """One step of a swap's history: recorded, emergency (with who agreed) or cancelled."""

    event: str
    by: str | None
    at: dt.datetime
    approved_by: tuple[str, ...] = ()
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "by": self.by,
            "at": self.at.isoformat(),
            "approved_by": list(self.approved_by),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class SwapRecord:
    """A swap and its history; ``ref`` is its id (``3``) or its place in team.yml (``team.yml#1``)."""

    ref: str
    swap: Swap
    events: tuple[SwapEvent, ...]
    swap_id: int | None = None

    @property
    def cancelled(self) -> bool:
        return bool(self.events) and self.events[-1].event == "cancelled"

    @property
    def request(self) -> SwapEvent:
        """The latest request (a legacy row without events: its request time, by nobody known)."""
        requests = [e for e in self.events if e.event in REQUEST_EVENTS]
        return requests[-1] if requests else SwapEvent("recorded", None, as_utc(self.swap.requested_at))

    @property
    def kind(self) -> str:
        """``emergency`` for a cover inside the notice period, else ``swap``."""
        return "emergency" if self.request.event == "emergency" else "swap"

    @property
    def cancellation(self) -> SwapEvent | None:
        return self.events[-1] if self.cancelled else None

    def status(self, start: dt.datetime, end: dt.datetime, as_of: dt.datetime) -> str:
        """``cancelled``, or where its week (``start`` .. ``end``) stands at ``as_of``."""
        if self.cancelled:
            return "cancelled"
        as_of = as_utc(as_of)
        return "upcoming" if as_of < start else "in effect" if as_of < end else "past"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.ref,
            "week_of": self.swap.week_of.isoformat(),
            "a": self.swap.a,
            "b": self.swap.b,
            "kind": self.kind,
            "requested_at": as_utc(self.swap.requested_at).isoformat(),
            "recorded_by": self.request.by,
            "approved_by": list(self.request.approved_by),
            "reason": self.request.reason,
            "cancelled": self.cancelled,
            "cancelled_by": self.cancellation.by if self.cancellation else None,
            "cancelled_at": self.cancellation.at.isoformat() if self.cancellation else None,
            "cancel_reason": self.cancellation.reason if self.cancellation else None,
            "events": [e.as_json() for e in self.events],
        }


# ---------------------------------------------------------------- people and agreement


def person(team: TeamConfig, key: str, role: str) -> str:
    """``key`` as an engineer key or ``lead``; anything else is refused naming ``role``."""
    if key in team.engineers:
        return key
    if key.strip().lower() in (LEAD, "team_lead", team.team_lead.email.lower()):
        return LEAD
    raise SwapRefused(
        f"{role}: unknown person {key!r}; expected one of {', '.join(team.engineers)} or {LEAD}"
    )


def missing_agreement(a: str, b: str, agreed: Iterable[str]) -> list[str]:
    """Who still has to agree to an emergency cover of ``a`` and ``b``: both of them and the lead."""
    have = set(agreed)
    return [who for who in (a, b, LEAD) if who not in have]


def request_event(
    team: TeamConfig,
    a: str,
    b: str,
    at: dt.datetime,
    *,
    by: str | None = None,
    emergency: bool = False,
    approved_by: Iterable[str] = (),
    reason: str | None = None,
) -> SwapEvent:
    """The request of a swap of ``a`` and ``b`` at ``at``, its people checked.

    ``by`` (default ``a``) is one of the two engineers or the lead. An emergency cover needs
    ``a``, ``b`` and the lead to agree (``by`` plus ``approved_by``); approvals on a swap with
    notice are refused, so an approval is never recorded where it means nothing.
    """
    for who in (a, b):
        if who not in team.engineers:
            raise SwapRefused(
                f"swap refused: {who!r} is not an engineer; expected one of {', '.join(team.engineers)}"
            )
    by = person(team, by or a, "recorded by")
    if by not in (a, b, LEAD):
        raise SwapRefused(f"swap refused: recorded by {by}; expected {a}, {b} or {LEAD}")
    approvals = tuple(dict.fromkeys(person(team, p, "approved by") for p in approved_by))
    if approvals and not emergency:
        raise SwapRefused("swap refused: approvals are for an emergency cover; a swap with notice needs none")
    missing = missing_agreement(a, b, [by, *approvals]) if emergency else []
    if missing:
        raise SwapRefused(
            f"emergency cover refused: {a} <-> {b} needs the agreement of both engineers and the team "
            f"lead; missing: {', '.join(missing)} (agreed: {', '.join(dict.fromkeys([by, *approvals]))})"
        )
    return SwapEvent("emergency" if emergency else "recorded", by, as_utc(at), approvals, reason)


# ---------------------------------------------------------------- reading


def _events(conn: sa.Connection) -> dict[int, list[SwapEvent]]:
    rows = conn.execute(sa.select(oncall_swap_events).order_by(oncall_swap_events.c.event_id)).mappings()
    out: dict[int, list[SwapEvent]] = {}
    for r in rows:
        approved = tuple(x for x in (r["approved_by"] or "").split(",") if x)
        out.setdefault(r["swap_id"], []).append(
            SwapEvent(r["event"], r["by"], as_utc(r["at"]), approved, r["reason"])
        )
    return out


def swap_records(*, engine: Engine | None = None) -> list[SwapRecord]:
    """Every swap ``workbook oncall swap`` recorded, cancelled ones included, by id."""
    with (engine or get_engine()).connect() as conn:
        rows = conn.execute(sa.select(oncall_swaps).order_by(oncall_swaps.c.swap_id)).mappings().all()
        events = _events(conn)
    return [
        SwapRecord(
            ref=str(r["swap_id"]),
            swap=Swap(
                week_of=dt.date.fromisoformat(r["week_of"]),
                a=r["a"],
                b=r["b"],
                requested_at=as_utc(r["requested_at"]),
            ),
            events=tuple(events.get(r["swap_id"], ())),
            swap_id=r["swap_id"],
        )
        for r in rows
    ]


def config_records(team: TeamConfig) -> list[SwapRecord]:
    """The swaps planned in ``config/team.yml``, as records ``team.yml#N`` (N from 1)."""
    return [
        SwapRecord(
            ref=f"team.yml#{i}",
            swap=s,
            events=(SwapEvent("recorded", "team.yml", as_utc(s.requested_at)),),
        )
        for i, s in enumerate(team.swaps, start=1)
    ]


def stored_swaps(*, engine: Engine | None = None) -> list[Swap]:
    """The recorded swaps in effect (not cancelled), by request time."""
    records = [r for r in swap_records(engine=engine) if not r.cancelled]
    return [r.swap for r in sorted(records, key=lambda r: as_utc(r.swap.requested_at))]


# ---------------------------------------------------------------- writing


def store_swap(swap: Swap, event: SwapEvent, *, engine: Engine | None = None) -> int:
    """Store ``swap`` with its request ``event``; a cancelled identical swap is reinstated. Its id."""
    engine = engine or get_engine()
    key = (
        (oncall_swaps.c.week_of == swap.week_of.isoformat())
        & (oncall_swaps.c.a == swap.a)
        & (oncall_swaps.c.b == swap.b)
    )
    with engine.begin() as conn:
        swap_id = conn.execute(sa.select(oncall_swaps.c.swap_id).where(key)).scalar()
        if swap_id is None:
            swap_id = conn.execute(
                oncall_swaps.insert().values(
                    week_of=swap.week_of.isoformat(),
                    a=swap.a,
                    b=swap.b,
                    requested_at=naive_utc(swap.requested_at),
                )
            ).inserted_primary_key[0]
        else:
            conn.execute(oncall_swaps.update().where(key).values(requested_at=naive_utc(swap.requested_at)))
        _insert_event(conn, swap_id, event)
    return int(swap_id)


def add_swap_event(swap_id: int, event: SwapEvent, *, engine: Engine | None = None) -> None:
    """Append ``event`` (a cancellation) to the history of swap ``swap_id``."""
    with (engine or get_engine()).begin() as conn:
        _insert_event(conn, swap_id, event)


def _insert_event(conn: sa.Connection, swap_id: int, event: SwapEvent) -> None:
    conn.execute(
        oncall_swap_events.insert().values(
            swap_id=swap_id,
            event=event.event,
            by=event.by,
            at=naive_utc(event.at),
            approved_by=",".join(event.approved_by) or None,
            reason=event.reason,
        )
    )

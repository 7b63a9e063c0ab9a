"""Sign-offs of a month's investor figures, voided when a figure changes, and the close's audit log.

``workbook signoff --month M --by DE2`` records, in ``close_signoffs``, that an engineer checked the
month's investor figures: the sign-off is bound to the exact figures (every ``investor_monthly`` value
of the month) and the runs that produced them (the investor aggregate's run and the upstream runs it
read). ``close.required_signoffs`` (config; default: every engineer in the rotation) must each hold a
valid sign-off before ``workbook close --final`` publishes (:func:`missing`).

A sign-off stays valid while the figures it covered stay the same. :func:`refresh` compares every
valid sign-off of a month with the figures now in the warehouse; one whose figures changed is marked
``void`` with the run that wrote the new figures and what changed, and its engineer is told (a
notification through ``helpers.oncall.notify``: chat, email and the warehouse inbox, never a page).
Every run that publishes a month's investor figures refreshes that month as it publishes
(:func:`void_on_publish`, a publish listener of the warehouse), whichever command ran it;
``workbook close``, ``signoff`` and ``audit`` refresh again before they answer. A second sign-off
by the same engineer supersedes the first.

Every event of a month's close (close, sign-off, void, refused publication, publish, reopen) is a row
of ``close_audit`` with who, when and what (:func:`log_event`, :func:`audit_events`).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from helpers.core import config as cfgmod
from helpers.core.errors import UsageError
from helpers.core.timeutil import as_utc, naive_utc
from helpers.investor.aggregate import read_monthly
from helpers.investor.metrics import BY_NAME, PIPELINE, TABLE, format_value
from helpers.runs import locks
from helpers.runs import records as runs
from helpers.storage import warehouse
from helpers.storage.warehouse import metadata, register_tables

VALID, VOID, SUPERSEDED = "valid", "void", "superseded"
EVENTS = ("close", "signoff", "void", "refused", "publish", "reopen")

close_signoffs = sa.Table(
    "close_signoffs",
    metadata,
    sa.Column("signoff_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("engineer", sa.String(64), nullable=False),
    sa.Column("signed_at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("runs", sa.Text, nullable=False),  # JSON {pipeline: run id} behind the figures
    sa.Column("figures", sa.Text, nullable=False),  # JSON {metric: value} as signed
    sa.Column("status", sa.String(12), nullable=False),  # valid | void | superseded
    sa.Column("voided_at", sa.DateTime(), nullable=True),
    sa.Column("voided_by_run", sa.String(80), nullable=True),  # the run that wrote the changed figures
    sa.Column("void_detail", sa.Text, nullable=True),  # JSON {metric: {old, new, source_run}}
    sa.Index("ix_close_signoffs_period", "period"),
)

close_audit = sa.Table(
    "close_audit",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),  # one of EVENTS
    sa.Column("who", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("what", sa.Text, nullable=False),  # one line for people
    sa.Column("detail", sa.Text, nullable=False, default="{}"),  # JSON for machines
    sa.Index("ix_close_audit_period", "period"),
)

register_tables(close_signoffs, close_audit)


# ---------------------------------------------------------------- the figures a sign-off covers


def _plain(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def figures_of(frame: pd.DataFrame) -> dict[str, Any]:
    """``investor_monthly`` rows of one month as ``{metric: value}`` (ints exact, ratios as floats)."""
    out: dict[str, Any] = {}
    for r in frame.itertuples():
        out[str(r.metric)] = int(r.value_int) if pd.notna(r.value_int) else _plain(float(r.value))
    return dict(sorted(out.items()))


def runs_of(frame: pd.DataFrame, *, engine: Engine | None = None) -> dict[str, str]:
    """``{pipeline: run id}`` behind the month's figures: the investor aggregate's run and its sources."""
    ids = {str(x) for x in frame["run_id"].dropna()}
    for source in frame["source_run_id"].dropna():
        ids.update(x for x in str(source).split(";") if x and x != "None")
    out: dict[str, list[str]] = {}
    for rid in sorted(ids):
        rec = runs.get_run(rid, engine=engine)
        out.setdefault(rec.pipeline if rec else "?", []).append(rid)
    return {p: ",".join(v) for p, v in sorted(out.items())}


def month_figures(period: str, *, engine: Engine | None = None) -> pd.DataFrame:
    """The month's ``investor_monthly`` rows (empty when the investor aggregate has not written it)."""
    frame = read_monthly([period], engine=engine)
    return frame.sort_values("metric").reset_index(drop=True)


def changed_figures(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The metrics whose value differs (one side missing counts as a change), in metric order."""
    return sorted(m for m in set(old) | set(new) if old.get(m) != new.get(m))


# ---------------------------------------------------------------- sign-offs


@dataclass(frozen=True)
class SignOff:
    """One engineer's sign-off of a month: what it covered and whether it still holds."""

    signoff_id: int
    period: str
    engineer: str
    signed_at: dt.datetime
    note: str | None
    runs: dict[str, str]
    figures: dict[str, Any]
    status: str
    voided_at: dt.datetime | None = None
    voided_by_run: str | None = None
    void_detail: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Any) -> SignOff:
        return cls(
            row["signoff_id"], row["period"], row["engineer"], as_utc(row["signed_at"]), row["note"],
            json.loads(row["runs"]), json.loads(row["figures"]), row["status"],
            as_utc(row["voided_at"]) if row["voided_at"] else None, row["voided_by_run"],
            json.loads(row["void_detail"]) if row["void_detail"] else None,
        )  # fmt: skip

    @property
    def valid(self) -> bool:
        return self.status == VALID

    def describe(self) -> str:
        """``valid``, or ``VOID since ...: run R changed revenue_usd_cents, ...``."""
        if self.status != VOID:
            return self.status
        changed = ", ".join(self.void_detail or {}) or "figures"
        when = f"{self.voided_at:%Y-%m-%d %H:%M} UTC" if self.voided_at else "?"
        return f"VOID since {when}: run {self.voided_by_run} changed {changed}"

    def as_json(self) -> dict[str, Any]:
        return {
            "signoff_id": self.signoff_id,
            "period": self.period,
            "engineer": self.engineer,
            "signed_at": self.signed_at.isoformat(),
            "note": self.note,
            "status": self.status,
            "runs": self.runs,
            "figures": self.figures,
            "voided_at": self.voided_at.isoformat() if self.voided_at else None,
            "voided_by_run": self.voided_by_run,
            "void_detail": self.void_detail,
        }


def list_signoffs(period: str, *, engine: Engine | None = None) -> list[SignOff]:
    """Every sign-off of ``period`` (valid, void and superseded), oldest first."""
    q = (
        sa.select(close_signoffs)
        .where(close_signoffs.c.period == period)
        .order_by(close_signoffs.c.signoff_id)
    )
    with (engine or warehouse.get_engine()).connect() as conn:
        return [SignOff.from_row(r) for r in conn.execute(q).mappings().all()]


def valid_signoffs(period: str, *, engine: Engine | None = None) -> list[SignOff]:
    return [s for s in list_signoffs(period, engine=engine) if s.valid]


def missing(period: str, config: cfgmod.WorkbookConfig, *, engine: Engine | None = None) -> list[str]:
    """The required engineers (``close.required_signoffs``) without a valid sign-off of ``period``."""
    signed = {s.engineer for s in valid_signoffs(period, engine=engine)}
    return [who for who in config.required_signoffs if who not in signed]


def sign(
    period: str,
    engineer: str,
    *,
    now: dt.datetime,
    note: str | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
) -> SignOff:
    """Record ``engineer``'s sign-off of the month's figures as they are now.

    Raises :class:`UsageError` for someone who is not an engineer of team.yml or a month without
    investor figures, and :class:`locks.PartitionLocked` for a published month (reopen it first).
    """
    config = config or cfgmod.get()
    engine = engine or warehouse.get_engine()
    if engineer not in config.team.engineers:
        raise UsageError(f"--by: expected one of {', '.join(config.team.engineers)}, got {engineer!r}")
    lock = locks.month_lock(period, engine=engine)
    if lock is not None:
        raise locks.PartitionLocked(lock, period)
    refresh(period, now=now, config=config, engine=engine)
    frame = month_figures(period, engine=engine)
    if frame.empty:
        raise UsageError(
            f"{period}: no investor figures to sign off; run `workbook close --month {period}` first"
        )
    values = dict(period=period, engineer=engineer, signed_at=naive_utc(now), note=note,
                  runs=json.dumps(runs_of(frame, engine=engine)), figures=json.dumps(figures_of(frame)),
                  status=VALID)  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            close_signoffs.update()
            .where((close_signoffs.c.period == period) & (close_signoffs.c.engineer == engineer)
                   & (close_signoffs.c.status == VALID))
            .values(status=SUPERSEDED)
        )  # fmt: skip
        new_id = conn.execute(close_signoffs.insert().values(**values)).inserted_primary_key[0]
        what = f"{engineer} signed off {len(figures_of(frame))} figures" + (f": {note}" if note else "")
        log_event(period, "signoff", engineer, now, what, {"signoff_id": new_id, "runs": json.loads(values["runs"])},
                  conn=conn)  # fmt: skip
    return next(s for s in list_signoffs(period, engine=engine) if s.signoff_id == new_id)


def _void_detail(signed: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    now = figures_of(frame)
    source = dict(zip(frame["metric"], frame["source_run_id"], strict=True))
    return {
        m: {"old": signed.get(m), "new": now.get(m), "source_run": _plain(source.get(m))}
        for m in changed_figures(signed, now)
    }


def refresh(
    period: str,
    *,
    now: dt.datetime,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
    notify: bool = True,
) -> list[SignOff]:
    """Void every valid sign-off of ``period`` whose figures changed; tell each engineer. Returns them."""
    engine = engine or warehouse.get_engine()
    valid = valid_signoffs(period, engine=engine)
    if not valid:
        return []
    frame = month_figures(period, engine=engine)
    current = figures_of(frame)
    changed = [s for s in valid if changed_figures(s.figures, current)]
    if not changed:
        return []
    by_run = str(frame["run_id"].dropna().iloc[0]) if len(frame) else None
    with engine.begin() as conn:
        for s in changed:
            detail = _void_detail(s.figures, frame)
            conn.execute(
                close_signoffs.update()
                .where((close_signoffs.c.signoff_id == s.signoff_id) & (close_signoffs.c.status == VALID))
                .values(status=VOID, voided_at=naive_utc(now), voided_by_run=by_run, void_detail=json.dumps(detail))
            )  # fmt: skip
            what = (f"{s.engineer}'s sign-off #{s.signoff_id} void: run {by_run} changed {len(detail)} "
                    f"figure(s): {', '.join(detail)}")  # fmt: skip
            log_event(period, "void", s.engineer, now, what, {"signoff_id": s.signoff_id, "run": by_run,
                                                               "changed": detail}, conn=conn)  # fmt: skip
    voided = [
        v for v in list_signoffs(period, engine=engine) if v.signoff_id in {s.signoff_id for s in changed}
    ]
    if notify:
        config = config or cfgmod.get()
        for v in voided:
            notify_people(config, [v.engineer], subject=f"Your sign-off of {period} is void: figures changed",
                          body=_void_body(v), ref=f"signoff:{period}:{v.signoff_id}", at=now, engine=engine)  # fmt: skip
    return voided


def _void_body(s: SignOff) -> str:
    lines = [f"Run {s.voided_by_run} changed figures you signed off on {s.signed_at:%Y-%m-%d %H:%M} UTC:"]
    for metric, d in (s.void_detail or {}).items():
        unit = BY_NAME[metric].unit if metric in BY_NAME else "count"
        lines.append(f"  {metric}: {format_value(d['old'], unit)} -> {format_value(d['new'], unit)}")
    lines.append(f"Check the new figures, then: workbook signoff --month {s.period} --by {s.engineer}")
    return "\n".join(lines)


def refresh_all(*, now: dt.datetime, config: cfgmod.WorkbookConfig | None = None,
                engine: Engine | None = None) -> list[SignOff]:  # fmt: skip
    """:func:`refresh` every month that has a valid sign-off (after a run that may have changed figures)."""
    engine = engine or warehouse.get_engine()
    q = sa.select(close_signoffs.c.period).where(close_signoffs.c.status == VALID).distinct()
    with engine.connect() as conn:
        periods = sorted(r[0] for r in conn.execute(q).all())
    return [v for p in periods for v in refresh(p, now=now, config=config, engine=engine)]


def void_on_publish(run_id: str, published: Sequence[warehouse.StagedPartition], now: dt.datetime,
                    engine: Engine) -> None:  # fmt: skip
    """A publish listener (``warehouse.register_publish_listener``): as soon as a run publishes a
    month of ``investor_monthly`` (from ``workbook run``, ``run-all``, ``backfill``, the scheduler or
    a runbook's re-run), :func:`refresh` that month, so a sign-off whose figures changed is void and
    its engineer told at once, not at the next ``close``."""
    periods = sorted(
        {item.partition.get("period") for item in published if item.table_name == TABLE} - {None}
    )
    for period in periods:
        refresh(period, now=as_utc(now), engine=engine)


warehouse.register_publish_listener(void_on_publish)


# ---------------------------------------------------------------- telling people


def notify_people(
    config: cfgmod.WorkbookConfig,
    keys: Sequence[str],
    *,
    subject: str,
    body: str,
    ref: str,
    at: dt.datetime,
    engine: Engine | None = None,
) -> list[Any]:
    """Send a close notice to engineers (``DE1``) or the team lead (``lead``) on the configured channels.

    It travels like a cross-team message: chat, email and the warehouse inbox (``notifications``,
    under ``ref``), never a page. Failed deliveries are recorded, not raised.
    """
    from helpers.oncall.notify import Message, Notifier, Recipient, channels_from_env

    people = {**config.team.engineers, "lead": config.team.team_lead}
    recipients = [
        Recipient(k, people[k].name, people[k].email, people[k].slack, role="close")
        for k in keys
        if k in people
    ]
    message = Message(alert_id=ref[:64], event="cross_team", subject=subject, body=body, pipeline=PIPELINE,
                      severity="info", step=ref.split(":")[0])  # fmt: skip
    notifier = Notifier(channels_from_env(config.team.notify), policy=config.team.notify.retry,
                        sleep=time.sleep, engine=engine)  # fmt: skip
    return notifier.send(message, recipients, at=at)


# ---------------------------------------------------------------- the audit log


@dataclass(frozen=True)
class AuditEvent:
    """One event of a month's close: what happened, who did it, when."""

    event_id: int
    period: str
    event: str
    who: str
    at: dt.datetime
    what: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


def log_event(period: str, event: str, who: str, at: dt.datetime, what: str,
              detail: Mapping[str, Any] | None = None, *, conn: Connection | None = None) -> None:  # fmt: skip
    """Append one event to ``close_audit`` (in ``conn``'s transaction when given)."""
    if event not in EVENTS:
        raise ValueError(f"audit event: expected one of {', '.join(EVENTS)}, got {event!r}")
    stmt = close_audit.insert().values(period=period, event=event, who=who or "?", at=naive_utc(at), what=what,
                                       detail=json.dumps(dict(detail or {}), default=str, sort_keys=True))  # fmt: skip
    if conn is not None:
        conn.execute(stmt)
        return
    with warehouse.get_engine().begin() as c:
        c.execute(stmt)


def audit_events(period: str, *, engine: Engine | None = None) -> list[AuditEvent]:
    """Every event of ``period``'s close, in the order it happened."""
    q = sa.select(close_audit).where(close_audit.c.period == period).order_by(close_audit.c.event_id)
    with (engine or warehouse.get_engine()).connect() as conn:
        rows = conn.execute(q).mappings().all()
    return [AuditEvent(r["event_id"], r["period"], r["event"], r["who"], as_utc(r["at"]), r["what"],
                       json.loads(r["detail"] or "{}")) for r in rows]  # fmt: skip

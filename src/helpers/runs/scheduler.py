"""The built-in scheduler: runs each pipeline on its cron schedule (UTC), one tick a minute.

A tick at ``as_of`` finds every *slot* ``(pipeline, scheduled_for)`` whose cron fired in
``(window_start, as_of]`` and runs the ones not already claimed, through ``orchestrate.run_items``
(dependency order, parallel, upstream gating). ``window_start`` is the ``as_of`` of the last
*completed* tick, bounded by ``runner.catch_up_days``: so the first tick after an outage catches up
the missed slots, oldest reference day first. With no tick recorded at all the window is the last
minute: a brand-new scheduler does not replay history (use ``backfill`` for that).

Nothing is lost without a trace. A slot that fired after the last completed tick but more than
``catch_up_days`` before ``as_of`` is recorded ``dropped`` in ``scheduled_slots``, with its reason
(the tick's output says so, and the ``<pipeline>.slots_dropped`` check of
:mod:`helpers.checks.slots` keeps an alert open until a run covers its partition), unless a slot
in the window runs the same partition anyway: then it is folded into that run. Slots of one
``(pipeline, partition)``, e.g. seven missed daily ticks of a month-to-date partition, *coalesce*:
one run, for the latest slot, the earlier ones recorded ``coalesced`` with that run's id.

Idempotence: a slot is claimed by inserting it into ``scheduled_slots``, whose primary key is
``(pipeline, scheduled_for)``; a second tick (another process, or the same ``as_of`` twice) cannot
claim it again. A slot whose claiming process died before its run finished is taken over; slots
claimed but never started because the scheduler was asked to stop are released for the next tick.
Every tick is recorded in ``scheduler_ticks``.

Logical dates: a daily pipeline fired at T runs the day before T (UTC): yesterday's data. A monthly
pipeline runs the month of that day (month-to-date), except during the first
``close.report_final_business_days`` business days of a month, when it runs the *previous* month, so
late data lands in the figures being closed (on the 1st both rules give the previous month).

After the runs, each tick calls the hooks its caller passes in, in order (the ``workbook scheduler``
command passes the production ones: evaluate the monitors, diagnose the new alerts, escalate);
a failing hook is recorded on the tick, never fatal (:func:`run_hooks`, which ``workbook tick``
calls on its own: a tick without runs, not recorded in ``scheduler_ticks``). The hooks live in the
packages above this one, which is why they are passed in rather than imported here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpers.core import businesscal, paths
from helpers.core import config as cfgmod
from helpers.core.periods import month_of, previous_month
from helpers.core.timeutil import as_utc, naive_utc
from helpers.runs import dag as dagmod
from helpers.runs.dag import Dag, RunItem
from helpers.storage.warehouse import get_engine, metadata, pipeline_runs, register_tables

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
TICK = dt.timedelta(minutes=1)
# Called after each tick's runs as hook(as_of=, now=, pipelines=, config=); errors are recorded by name.
TickHook = Callable[..., Any]

scheduler_ticks = sa.Table(
    "scheduler_ticks",
    metadata,
    sa.Column("tick_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("as_of", sa.DateTime(), nullable=False),
    sa.Column("window_start", sa.DateTime(), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # once | loop
    sa.Column("status", sa.String(16), nullable=False),  # running | completed | interrupted
    sa.Column("started_at", sa.DateTime(), nullable=False),  # wall clock
    sa.Column("finished_at", sa.DateTime(), nullable=True),
    sa.Column("slots_due", sa.Integer, nullable=False, default=0),
    sa.Column("runs_started", sa.Integer, nullable=False, default=0),
    sa.Column("summary", sa.Text, nullable=False, default="{}"),  # JSON: outcomes, hook errors
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Index("ix_scheduler_ticks_as_of", "as_of"),
)

scheduled_slots = sa.Table(
    "scheduled_slots",
    metadata,
    sa.Column("pipeline", sa.String(64), primary_key=True),
    sa.Column("scheduled_for", sa.DateTime(), primary_key=True),
    sa.Column("logical_date", sa.String(10), nullable=False),
    sa.Column("tick_id", sa.Integer, nullable=True),
    sa.Column("claimed_at", sa.DateTime(), nullable=False),  # wall clock
    # claimed, then the run's final state; dropped (never run: older than catch_up_days) or
    # coalesced (its partition ran once, as the latest slot's run: run_id)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(80), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),  # why dropped or coalesced
)

register_tables(scheduler_ticks, scheduled_slots)


# ---------------------------------------------------------------- pure: what is due


@dataclass(frozen=True)
class Slot:
    """One firing of one pipeline's schedule and the run it stands for."""

    pipeline: str
    scheduled_for: dt.datetime
    item: RunItem


def fire_times(schedule: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every time the cron ``schedule`` (UTC) fires in ``(start, end]``."""
    it = croniter(schedule, as_utc(start))
    out: list[dt.datetime] = []
    while True:
        nxt = as_utc(it.get_next(dt.datetime))
        if nxt > as_utc(end):
            return out
        out.append(nxt)


def scheduled_item(
    pipeline: cfgmod.Pipeline,
    fired_at: dt.datetime,
    *,
    cal: businesscal.BusinessCalendar,
    report_final_business_days: int,
) -> RunItem:
    """The run a firing stands for (see the module doc for the rule)."""
    fire_day = as_utc(fired_at).date()
    yesterday = fire_day - dt.timedelta(days=1)
    if pipeline.partition == "day":
        return dagmod.run_item(pipeline, yesterday)
    prev_month = previous_month(month_of(fire_day))
    y, m = (int(x) for x in prev_month.split("-"))
    if fire_day <= cal.nth_business_day_after_month_end(y, m, report_final_business_days):
        return dagmod.full_period_item(pipeline, prev_month)
    return dagmod.run_item(pipeline, yesterday)


def due_slots(
    pipelines: Mapping[str, cfgmod.Pipeline],
    start: dt.datetime,
    end: dt.datetime,
    *,
    cal: businesscal.BusinessCalendar,
    report_final_business_days: int,
) -> list[Slot]:
    """Every slot of ``pipelines`` fired in ``(start, end]``, by time then pipeline."""
    slots = [
        Slot(
            p.id,
            fired,
            scheduled_item(p, fired, cal=cal, report_final_business_days=report_final_business_days),
        )
        for p in pipelines.values()
        for fired in fire_times(p.schedule, start, end)
    ]
    return sorted(slots, key=lambda s: (s.scheduled_for, s.pipeline))


def coalesce(slots: Sequence[Slot]) -> tuple[list[Slot], dict[Slot, Slot]]:
    """One run per ``(pipeline, partition)``: the slots to run (the latest of each, by fire time)
    and, for every earlier slot of the same partition, the slot whose run stands for it."""
    latest: dict[tuple[str, str], Slot] = {}
    for s in sorted(slots, key=lambda s: s.scheduled_for):
        latest[(s.item.pipeline, s.item.partition)] = s
    keepers = sorted(latest.values(), key=lambda s: (s.scheduled_for, s.pipeline))
    into = {s: latest[(s.item.pipeline, s.item.partition)] for s in slots}
    return keepers, {s: k for s, k in into.items() if k != s}


def window_start(last_tick: dt.datetime | None, as_of: dt.datetime, *, catch_up_days: int) -> dt.datetime:
    """Where a tick's window opens: the last completed tick, at most ``catch_up_days`` back."""
    as_of = as_utc(as_of)
    if last_tick is None:
        return as_of - TICK
    return max(as_utc(last_tick), as_of - dt.timedelta(days=catch_up_days))


# ---------------------------------------------------------------- the tick


@dataclass
class TickResult:
    """What one tick did."""

    tick_id: int
    as_of: dt.datetime
    window_start: dt.datetime
    status: str
    slots: list[Slot] = field(default_factory=list)  # claimed by this tick
    outcomes: list[Any] = field(default_factory=list)  # orchestrate.Outcome, in run order
    hook_errors: dict[str, str] = field(default_factory=dict)
    catch_up_days: int = 0
    dropped: list[Slot] = field(default_factory=list)  # recorded dropped by this tick
    coalesced: dict[Slot, Slot] = field(default_factory=dict)  # slot -> the slot whose run stands for it
    hook_outcomes: list[HookOutcome] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "tick_id": self.tick_id,
            "as_of": self.as_of.isoformat(),
            "window_start": self.window_start.isoformat(),
            "status": self.status,
            "catch_up_days": self.catch_up_days,
            "slots": [_slot_json(s) for s in self.slots],
            "dropped": [_slot_json(s) for s in self.dropped],
            "coalesced": [
                {**_slot_json(s), "into": k.scheduled_for.isoformat()}
                for s, k in sorted_slots(self.coalesced)
            ],
            "runs": [o.as_json() for o in self.outcomes],
            "hook_errors": self.hook_errors,
        }


def _slot_json(s: Slot) -> dict[str, Any]:
    return {
        "pipeline": s.pipeline,
        "scheduled_for": s.scheduled_for.isoformat(),
        "partition": s.item.partition,
    }


def sorted_slots(into: Mapping[Slot, Slot]) -> list[tuple[Slot, Slot]]:
    """``(slot, keeper)`` pairs by fire time, then pipeline."""
    return sorted(into.items(), key=lambda kv: (kv[0].scheduled_for, kv[0].pipeline))


def last_completed_tick(*, engine: Engine | None = None) -> dt.datetime | None:
    """The ``as_of`` of the latest completed tick (interrupted ticks do not count)."""
    with (engine or get_engine()).connect() as conn:
        value = conn.execute(
            sa.select(sa.func.max(scheduler_ticks.c.as_of)).where(scheduler_ticks.c.status == "completed")
        ).scalar()
    return as_utc(value) if value is not None else None


def list_ticks(*, limit: int = 50, engine: Engine | None = None) -> list[dict[str, Any]]:
    """Recorded ticks, newest first."""
    q = sa.select(scheduler_ticks).order_by(scheduler_ticks.c.tick_id.desc()).limit(limit)
    with (engine or get_engine()).connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def list_slots(*, engine: Engine | None = None) -> list[dict[str, Any]]:
    """Claimed slots, by fire time."""
    q = sa.select(scheduled_slots).order_by(scheduled_slots.c.scheduled_for, scheduled_slots.c.pipeline)
    with (engine or get_engine()).connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def list_dropped(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    pipelines: Sequence[str] | None = None,
    engine: Engine | None = None,
) -> list[dict[str, Any]]:
    """Slots recorded ``dropped`` by ticks at ``as_of`` in ``[since, until]``, by fire time; each row
    with ``dropped_at``, the ``as_of`` of the tick that dropped it."""
    c, t = scheduled_slots.c, scheduler_ticks.c
    q = (
        sa.select(scheduled_slots, t.as_of.label("dropped_at"))
        .join(scheduler_ticks, t.tick_id == c.tick_id)
        .where(c.status == "dropped")
    )
    if since is not None:
        q = q.where(t.as_of >= naive_utc(since))
    if until is not None:
        q = q.where(t.as_of <= naive_utc(until))
    if pipelines is not None:
        q = q.where(c.pipeline.in_(list(pipelines)))
    with (engine or get_engine()).connect() as conn:
        rows = conn.execute(q.order_by(c.scheduled_for, c.pipeline)).mappings().all()
    return [
        {**r, "scheduled_for": as_utc(r["scheduled_for"]), "dropped_at": as_utc(r["dropped_at"])}
        for r in rows
    ]


def covering_run(
    pipeline: str, partition: str, fired_at: dt.datetime, *, engine: Engine | None = None
) -> str | None:
    """The id of a succeeded run of ``pipeline`` ``partition`` at an ``as_of`` no earlier than
    ``fired_at`` (what the dropped slot would have run), else None."""
    c = pipeline_runs.c
    q = (
        sa.select(c.run_id)
        .where(
            (c.pipeline == pipeline)
            & (c.logical_date == partition)
            & (c.status == "succeeded")
            & (c.as_of >= naive_utc(fired_at))
        )
        .order_by(c.as_of.desc())
        .limit(1)
    )
    with (engine or get_engine()).connect() as conn:
        return conn.execute(q).scalar()


def _alive(host: str | None, pid: int | None) -> bool:
    # Another machine's claim is trusted; on this one a vanished pid means the claimer died.
    if host != socket.gethostname() or pid is None:
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _slot_row(slot: Slot, tick_id: int, now: dt.datetime, status: str, reason: str | None) -> dict[str, Any]:
    return dict(
        pipeline=slot.pipeline,
        scheduled_for=naive_utc(slot.scheduled_for),
        logical_date=slot.item.partition,
        tick_id=tick_id,
        claimed_at=naive_utc(now),
        status=status,
        host=socket.gethostname(),
        pid=os.getpid(),
        reason=reason,
    )


def _drop(slot: Slot, tick_id: int, now: dt.datetime, reason: str, engine: Engine) -> bool:
    """Record a slot the catch-up window left out as ``dropped``; False if it already has a row."""
    try:
        with engine.begin() as conn:
            conn.execute(scheduled_slots.insert().values(**_slot_row(slot, tick_id, now, "dropped", reason)))
        return True
    except IntegrityError:
        return False


def _claim(slot: Slot, tick_id: int, now: dt.datetime, engine: Engine) -> bool:
    """Claim a slot for this process; False if it is (or was) someone else's."""
    values = _slot_row(slot, tick_id, now, "claimed", None)
    try:
        with engine.begin() as conn:
            conn.execute(scheduled_slots.insert().values(**values))
        return True
    except IntegrityError:
        pass
    key = (scheduled_slots.c.pipeline == slot.pipeline) & (
        scheduled_slots.c.scheduled_for == naive_utc(slot.scheduled_for)
    )
    with engine.begin() as conn:
        row = conn.execute(sa.select(scheduled_slots).where(key)).mappings().first()
        if row is None or row["status"] != "claimed" or _alive(row["host"], row["pid"]):
            return False
        # The claimer died mid-run: take the slot over (guarded, so two takers cannot both win).
        taken = conn.execute(
            scheduled_slots.update()
            .where(key & (scheduled_slots.c.pid == row["pid"]) & (scheduled_slots.c.status == "claimed"))
            .values(**values)
        )
        return taken.rowcount == 1


def _settle(
    slots: Sequence[Slot],
    outcomes: Mapping[tuple[str, str], Any],
    engine: Engine,
    into: Mapping[Slot, Slot] | None = None,
) -> None:
    """Record each slot's run outcome (``coalesced`` for a slot in ``into``: its keeper's run), or
    release it for the next tick when its run never started."""
    with engine.begin() as conn:
        for slot in slots:
            key = (scheduled_slots.c.pipeline == slot.pipeline) & (
                scheduled_slots.c.scheduled_for == naive_utc(slot.scheduled_for)
            )
            outcome = outcomes.get((slot.item.pipeline, slot.item.partition))
            keeper = (into or {}).get(slot)
            if outcome is None or outcome.status == "cancelled":
                conn.execute(scheduled_slots.delete().where(key))  # released for the next tick
            elif keeper is not None:
                reason = (
                    f"coalesced: {slot.item.pipeline} {slot.item.partition} ran once, as the run of the "
                    f"slot fired {keeper.scheduled_for:%Y-%m-%d %H:%M}Z ({outcome.status})"
                )
                conn.execute(
                    scheduled_slots.update()
                    .where(key)
                    .values(status="coalesced", run_id=outcome.run_id, reason=reason)
                )
            else:
                conn.execute(
                    scheduled_slots.update().where(key).values(status=outcome.status, run_id=outcome.run_id)
                )


def tick(
    as_of: dt.datetime,
    *,
    clock: Clock,
    config: cfgmod.WorkbookConfig | None = None,
    pipelines: Sequence[str] | None = None,
    mode: str = "once",
    stop: threading.Event | None = None,
    on_update: Callable[[Any], None] | None = None,
    hooks: Sequence[TickHook] = (),
    engine: Engine | None = None,
) -> TickResult:
    """One scheduler tick at ``as_of``: record the slots too old to catch up, claim and run the due
    ones (one run per partition), call the hooks, record it."""
    config = config or cfgmod.get()
    engine = engine or get_engine()
    as_of = as_utc(as_of)
    graph = Dag.from_config(config.pipelines)
    chosen = graph.order(pipelines) if pipelines else graph.order()
    catch_up = config.pipelines.runner.catch_up_days
    last = last_completed_tick(engine=engine)
    start = window_start(last, as_of, catch_up_days=catch_up)
    result = TickResult(_record_tick_start(as_of, start, mode, clock(), engine), as_of, start, "running")
    result.catch_up_days = catch_up
    chosen_pipes = {p: config.pipelines.pipelines[p] for p in chosen}
    cal = businesscal.BusinessCalendar.from_team(config.team)
    final_days = config.pipelines.close.report_final_business_days
    due = due_slots(chosen_pipes, start, as_of, cal=cal, report_final_business_days=final_days)
    missed = []  # fired since the last completed tick, but before the catch-up window
    if last is not None and last < start:
        missed = due_slots(chosen_pipes, last, start, cal=cal, report_final_business_days=final_days)
    running = {(s.item.pipeline, s.item.partition) for s in due}
    folded = [s for s in missed if (s.item.pipeline, s.item.partition) in running]  # run anyway
    try:
        why = (
            f"older than catch_up_days={catch_up}: the tick at {as_of:%Y-%m-%d %H:%M}Z caught up from "
            f"{start:%Y-%m-%d %H:%M}Z only (last completed tick {last or start:%Y-%m-%d %H:%M}Z)"
        )
        result.dropped = [
            s for s in missed if s not in folded and _drop(s, result.tick_id, clock(), why, engine)
        ]
        result.slots = [s for s in folded + due if _claim(s, result.tick_id, clock(), engine)]
        _run_slots(result, as_of, clock, config, stop, on_update, engine)
        outcomes = run_hooks(hooks, as_of=as_of, clock=clock, pipelines=chosen, config=config)
        result.hook_outcomes = outcomes
        result.hook_errors = {o.name: o.error for o in outcomes if o.error is not None}
        result.status = "interrupted" if stop is not None and stop.is_set() else "completed"
    except BaseException:
        result.status = "interrupted"
        raise
    finally:
        _record_tick_end(result, len(due), clock(), engine)
    return result


@dataclass(frozen=True)
class HookOutcome:
    """What one tick hook returned, or the error it raised (``module:function: Type: message``)."""

    name: str
    value: Any = None
    error: str | None = None


def run_hooks(
    hooks: Sequence[TickHook],
    *,
    as_of: dt.datetime,
    clock: Clock,
    pipelines: Sequence[str],
    config: cfgmod.WorkbookConfig,
) -> list[HookOutcome]:
    """Call each hook in order as ``hook(as_of=, now=clock(), pipelines=, config=)``.

    A failing hook is logged and recorded in its outcome; the hooks after it still run (a broken
    monitor must not stop paging). What every tick does after its runs, and all ``workbook tick`` does.
    """
    outcomes: list[HookOutcome] = []
    for hook in hooks:
        name = hook_name(hook)
        try:
            value = hook(as_of=as_utc(as_of), now=clock(), pipelines=list(pipelines), config=config)
        except Exception as e:
            log.exception("tick hook %s failed", name)
            outcomes.append(HookOutcome(name, error=f"{type(e).__name__}: {e}"))
        else:
            outcomes.append(HookOutcome(name, value=value))
    return outcomes


def hook_name(hook: TickHook) -> str:
    """``module:function`` of a hook (of the function a ``functools.partial`` wraps): how errors name it."""
    fn = getattr(hook, "func", hook)
    return f"{fn.__module__}:{fn.__qualname__}"


def _record_tick_start(
    as_of: dt.datetime, start: dt.datetime, mode: str, now: dt.datetime, engine: Engine
) -> int:
    """Insert the tick's row (``running``); returns its id."""
    with engine.begin() as conn:
        tick_id = conn.execute(
            scheduler_ticks.insert().values(
                as_of=naive_utc(as_of),
                window_start=naive_utc(start),
                mode=mode,
                status="running",
                started_at=naive_utc(now),
                host=socket.gethostname(),
                pid=os.getpid(),
            )
        ).inserted_primary_key[0]
    return int(tick_id)


def _run_slots(
    result: TickResult,
    as_of: dt.datetime,
    clock: Clock,
    config: cfgmod.WorkbookConfig,
    stop: threading.Event | None,
    on_update: Callable[[Any], None] | None,
    engine: Engine,
) -> None:
    """Run the tick's claimed slots one reference day at a time, oldest first, adding the outcomes
    to ``result`` as each day ends and settling its slots. Slots of one partition coalesce into
    the run of the latest (:func:`coalesce`). Once ``stop`` is set, the remaining days' slots are
    released unstarted."""
    from helpers.runs import orchestrate  # the runner (papermill) is only needed when a tick runs

    keepers, result.coalesced = coalesce(result.slots)
    by_day = sorted(keepers, key=lambda s: (s.item.reference_day, s.scheduled_for))
    for _day, group in groupby(by_day, key=lambda s: s.item.reference_day):
        group_slots = list(group)
        followers = [s for s, k in result.coalesced.items() if k in group_slots]
        if stop is not None and stop.is_set():
            _settle(group_slots + followers, {}, engine)
            for s in followers:  # released with their keeper: coalesced by the next tick
                del result.coalesced[s]
            continue
        day_outcomes = orchestrate.run_items(
            [s.item for s in group_slots],
            clock=clock,
            as_of=as_of,
            config=config,
            trigger="scheduler",
            on_update=on_update or (lambda _o: None),
            stop=stop,
        )
        result.outcomes += day_outcomes
        by_key = {(o.pipeline, o.partition): o for o in day_outcomes}
        _settle(group_slots, by_key, engine)
        _settle(followers, by_key, engine, result.coalesced)


def _record_tick_end(result: TickResult, slots_due: int, now: dt.datetime, engine: Engine) -> None:
    """Record the tick's final status, counts and summary (runs by outcome, hook errors)."""
    summary = {
        "runs": {o.pipeline + " " + o.partition: o.status for o in result.outcomes},
        "hook_errors": result.hook_errors,
        "dropped": [
            f"{s.pipeline} {s.item.partition} {s.scheduled_for:%Y-%m-%dT%H:%MZ}" for s in result.dropped
        ],
        "coalesced": len(result.coalesced),
    }
    with engine.begin() as conn:
        conn.execute(
            scheduler_ticks.update()
            .where(scheduler_ticks.c.tick_id == result.tick_id)
            .values(
                status=result.status,
                finished_at=naive_utc(now),
                slots_due=slots_due,
                runs_started=sum(
                    o.status not in ("cancelled", "blocked", "conflict", "locked") for o in result.outcomes
                ),
                summary=json.dumps(summary, sort_keys=True),
            )
        )


def serve(
    *,
    clock: Clock,
    stop: threading.Event,
    config: cfgmod.WorkbookConfig | None = None,
    pipelines: Sequence[str] | None = None,
    on_tick: Callable[[TickResult], None] | None = None,
    on_update: Callable[[Any], None] | None = None,
    hooks: Sequence[TickHook] = (),
) -> int:
    """Tick at once (catching up), then at every minute boundary until ``stop`` is set.

    Every tick calls ``hooks`` (see :func:`tick`). Returns the number of ticks. ``stop`` set during a tick lets running notebooks finish and
    starts nothing new (the tick is recorded ``interrupted`` and its unstarted slots released).
    """
    ticks = 0
    while not stop.is_set():
        result = tick(
            clock(),
            clock=clock,
            config=config,
            pipelines=pipelines,
            mode="loop",
            stop=stop,
            on_update=on_update,
            hooks=hooks,
        )
        ticks += 1
        if on_tick is not None:
            on_tick(result)
        now = clock()
        stop.wait(TICK.total_seconds() - (now.timestamp() % TICK.total_seconds()))
    return ticks


# ---------------------------------------------------------------- crontab


def crontab_lines(
    config: cfgmod.WorkbookConfig,
    *,
    repo: Path | None = None,
    env: Mapping[str, str] | None = None,
    workbook: Path | None = None,
) -> list[str]:
    """Crontab lines equivalent to the scheduler (see docs/operations.md, "The scheduler and cron").

    One line per pipeline on its own schedule: ``run-all`` for just that pipeline (so it is gated on
    its upstreams) for yesterday's date, then ``workbook tick`` whatever the run's outcome (a failed
    run is exactly what must page); and ``workbook tick`` every 15 minutes, so monitors, diagnoses
    and escalation keep going between runs. The one-line alternative, ``scheduler --once`` every
    minute (runs and tick with catch-up and the close-window rule), is printed commented out. Logs
    go to ``<WORKBOOK_HOME>/runs/cron.log`` (the checkout's ``runs/`` without one), absolute paths.
    """
    repo = (repo or paths.repo_root()).resolve()
    env = os.environ if env is None else env
    home = Path(env["WORKBOOK_HOME"]).resolve() if env.get("WORKBOOK_HOME") else repo
    wb = _cron_quote(str(workbook or default_workbook_script(repo)))
    log_file = _cron_quote(str(home / "runs" / "cron.log"))
    cd = f"cd {_cron_quote(str(repo))} &&"
    tick_cmd = f"{wb} tick -q >> {log_file} 2>&1"
    lines = [
        "# Pipeline Maintenance Workbook: generated by `workbook scheduler --crontab`.",
        "# Schedules are UTC: CRON_TZ needs cronie (most distributions); elsewhere run cron in UTC.",
        "# WORKBOOK_WAREHOUSE_URL (a secret) must come from the environment, not from this file.",
        "CRON_TZ=UTC",
        "SHELL=/bin/bash",
    ]
    for var in ("WORKBOOK_HOME", "WORKBOOK_CONFIG_DIR"):
        if env.get(var):
            lines.append(f"{var}={env[var]}")
    lines += [
        "",
        "# Everything the built-in scheduler does (catch-up, close-window rule, the tick), one line:",
        f"# * * * * * {cd} {wb} scheduler --once -q >> {log_file} 2>&1",
        "",
        "# Or one line per pipeline (yesterday's data; monthly pipelines run its month-to-date), each",
        "# followed by a tick (monitors, diagnosis of new alerts, escalation), even when the run failed:",
    ]
    graph = Dag.from_config(config.pipelines)
    for pid in graph.order():
        p = config.pipelines.pipelines[pid]
        lines.append(
            f"{p.schedule} {cd} {wb} run-all --pipelines {pid} --date "
            f'"$(date -u -d yesterday +\\%F)" --no-checks -q >> {log_file} 2>&1; {tick_cmd}'
        )
    lines += ["", "# The tick between runs: alerts open, get diagnosed and page within 15 minutes:"]
    lines.append(f"*/15 * * * * {cd} {tick_cmd}")
    return lines


def default_workbook_script(repo: Path) -> Path:
    """The ``workbook`` script of the running interpreter's environment, else ``<repo>/.venv/bin/workbook``."""
    beside = Path(sys.executable).parent / "workbook"
    return beside if beside.is_file() else repo / ".venv" / "bin" / "workbook"


def _cron_quote(text: str) -> str:
    """Shell-quoted, with ``%`` escaped (cron turns a bare ``%`` into a newline)."""
    return shlex.quote(text).replace("%", "\\%")

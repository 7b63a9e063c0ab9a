"""The status board's data: every section collected at an explicit ``as_of``, nothing written.

One :class:`Board` holds what the team otherwise combines by hand from ``workbook runs``,
``checks``, ``alerts``, ``incidents`` and ``oncall now``:

- ``grid``: per pipeline (``config/pipelines.yml`` order) the latest run of each of its recent
  partitions (the last :data:`GRID_COLUMNS` days, or months for a monthly pipeline, up to
  ``as_of``), linked to its archived ``notebook.html``;
- ``freshness`` and ``lineage``: :mod:`helpers.board.health`, from the monitors' verdicts
  (``checks.monitors.evaluate_monitors``: evaluated, not stored, so no alert changes);
- ``oncall``: who holds the pager now and next, the hand-over, each pipeline's first responder and
  backup (the holiday backup in a holiday week);
- ``incidents``: the open incidents with owner, severity, age, fix deadline and runbook;
- ``close``: the month being closed (``investor.close.close_in_progress``) and the month before it:
  DRAFT/final, blockers, sign-offs, business days to the report deadline, the published version.

Everything is read at ``as_of`` (``now`` is only when the board was made). A section that cannot be
collected is left empty with the error in :attr:`Board.errors`, so one broken part never hides the
others. Links are relative to the board's page, ``runs/status/index.html``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.board import health
from helpers.board.health import Freshness, Lineage, format_age
from helpers.core import businesscal, catalogue, paths
from helpers.core import config as cfgmod
from helpers.core.periods import month_of, previous_month, shift_period
from helpers.core.timeutil import as_utc
from helpers.runs.records import RunRecord
from helpers.storage.warehouse import get_engine, pipeline_runs

GRID_COLUMNS = 14  # partitions shown per pipeline
NO_RUN = "no run"
SECTIONS = ("grid", "freshness", "oncall", "incidents", "close", "lineage")
PAGE_DIR = "status"  # runs/status/index.html
T = TypeVar("T")


def page_path(runs_root: Path | None = None) -> Path:
    """Where the board is written: ``$WORKBOOK_HOME/runs/status/index.html``."""
    return (runs_root or paths.runs_dir()) / PAGE_DIR / "index.html"


def relative_href(target: Path | str | None, runs_root: Path) -> str | None:
    """``target`` as a link from the board's page, when it is a file under ``runs_root``; else None."""
    if not target:
        return None
    path = Path(target)
    try:
        inside = path.resolve().is_relative_to(runs_root.resolve())
    except OSError:
        return None
    if not inside or not path.is_file():
        return None
    return Path(os.path.relpath(path.resolve(), (runs_root / PAGE_DIR).resolve())).as_posix()


# ---------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Cell:
    """The latest run of one partition (``status`` ``no run`` when there is none)."""

    pipeline: str
    partition: str
    status: str
    run_id: str | None = None
    href: str | None = None  # ../<pipeline>/<partition>/<run_id>/notebook.html when archived
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GridRow:
    pipeline: str
    title: str
    partition: str  # day | month
    cells: tuple[Cell, ...]
    newest: Cell | None = None  # the latest run of its newest partition run so far (however old)

    def as_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "title": self.title,
            "partition": self.partition,
            "cells": [c.as_json() for c in self.cells],
            "newest": self.newest.as_json() if self.newest else None,
        }


@dataclass(frozen=True)
class Grid:
    days: tuple[str, ...]
    months: tuple[str, ...]
    rows: tuple[GridRow, ...]

    def cell(self, pipeline: str, partition: str) -> Cell:
        for row in self.rows:
            for c in row.cells:
                if (c.pipeline, c.partition) == (pipeline, partition):
                    return c
        raise KeyError((pipeline, partition))

    def as_json(self) -> dict[str, Any]:
        return {
            "days": list(self.days),
            "months": list(self.months),
            "rows": [r.as_json() for r in self.rows],
        }


def window(as_of: dt.datetime, partition: str, columns: int = GRID_COLUMNS) -> tuple[str, ...]:
    """The last ``columns`` days (or months) up to and including ``as_of``'s, oldest first."""
    day = as_utc(as_of).date()
    if partition == "month":
        return tuple(shift_period(month_of(day), -i) for i in range(columns - 1, -1, -1))
    return tuple((day - dt.timedelta(days=i)).isoformat() for i in range(columns - 1, -1, -1))


def archive_href(record: RunRecord, runs_root: Path) -> str | None:
    """``../<pipeline>/<partition>/<run_id>/notebook.html`` when that archive exists under ``runs_root``."""
    page = runs_root / record.pipeline / record.logical_date / record.run_id / "notebook.html"
    if not page.is_file():
        return None
    return f"../{record.pipeline}/{record.logical_date}/{record.run_id}/notebook.html"


def _cell(record: RunRecord | None, pipeline: str, partition: str, runs_root: Path) -> Cell:
    if record is None:
        return Cell(pipeline, partition, NO_RUN)
    if record.status in ("failed", "blocked", "skipped"):
        detail = record.error_summary or record.status
    elif record.finished_at:
        detail = f"finished {record.finished_at:%Y-%m-%d %H:%M} UTC"
    else:
        detail = record.status
    return Cell(pipeline, record.logical_date, record.status, record.run_id,
                archive_href(record, runs_root), detail)  # fmt: skip


def _effective(records: Sequence[RunRecord]) -> RunRecord | None:
    """The latest record, ``skipped`` ones aside unless there is nothing else (oldest first in)."""
    done = [r for r in records if r.status != "skipped"]
    return (done or list(records) or [None])[-1]


def latest_runs(
    pipelines: Sequence[str], labels: Sequence[str], *, engine: Engine
) -> dict[tuple[str, str], RunRecord]:
    """The latest effective run of each (pipeline, partition) among ``labels``."""
    q = (
        sa.select(pipeline_runs)
        .where(pipeline_runs.c.pipeline.in_(list(pipelines)) & pipeline_runs.c.logical_date.in_(list(labels)))
        .order_by(pipeline_runs.c.queued_at, pipeline_runs.c.run_id)
    )
    found: dict[tuple[str, str], list[RunRecord]] = {}
    with engine.connect() as conn:
        for row in conn.execute(q).mappings():
            rec = RunRecord.from_row(row)
            found.setdefault((rec.pipeline, rec.logical_date), []).append(rec)
    return {k: r for k, v in found.items() if (r := _effective(v)) is not None}


def newest_run(pipeline: str, up_to: str, *, engine: Engine) -> RunRecord | None:
    """The latest effective run of the pipeline's newest partition up to ``up_to`` (any age)."""
    q = (
        sa.select(pipeline_runs.c.logical_date)
        .where((pipeline_runs.c.pipeline == pipeline) & (pipeline_runs.c.logical_date <= up_to))
        .order_by(pipeline_runs.c.logical_date.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        label = conn.execute(q).scalar()
    return latest_runs([pipeline], [label], engine=engine).get((pipeline, label)) if label else None


def collect_grid(
    config: cfgmod.WorkbookConfig, as_of: dt.datetime, *, engine: Engine, runs_root: Path
) -> Grid:
    """Every pipeline's recent partitions, in ``config/pipelines.yml`` order."""
    pipes = config.pipelines.pipelines
    days, months = window(as_of, "day"), window(as_of, "month")
    found = latest_runs(list(pipes), [*days, *months], engine=engine)
    rows = []
    for pid, p in pipes.items():
        labels = months if p.partition == "month" else days
        cells = tuple(_cell(found.get((pid, label)), pid, label, runs_root) for label in labels)
        newest = newest_run(pid, labels[-1], engine=engine)
        rows.append(GridRow(pid, p.title, p.partition, cells,
                            _cell(newest, pid, newest.logical_date, runs_root) if newest else None))  # fmt: skip
    return Grid(days, months, tuple(rows))


# ---------------------------------------------------------------- on call


@dataclass(frozen=True)
class Responder:
    """Who an alert of a pipeline reaches first now, and who backs that person up (and why)."""

    pipeline: str
    first: str
    backup: str
    reason: str
    holiday_backup: bool  # a holiday week: the backup stands in for the pipeline

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class OnCallNow:
    """The pager now and next, the hand-over between them, holidays and month-end."""

    at: dt.datetime
    engineer: str
    name: str
    since: dt.datetime  # this week's handoff
    handover: dt.datetime  # the next handoff
    next_engineer: str
    next_name: str
    local: Mapping[str, str]  # since / handover / next_until in the team's time zone, for people
    swapped_from: str | None = None
    holidays: tuple[str, ...] = ()  # "Thanksgiving (Thu 26 Nov)" of this rotation week
    next_holidays: tuple[str, ...] = ()
    month_end: bool = False
    on_deck: tuple[str, ...] = ()
    responders: tuple[Responder, ...] = ()

    @property
    def holiday_week(self) -> bool:
        return bool(self.holidays)

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "responders"}
        for k in ("at", "since", "handover"):
            out[k] = out[k].isoformat()
        out["local"] = dict(self.local)
        out["holiday_week"] = self.holiday_week
        out["responders"] = [r.as_json() for r in self.responders]
        return out


def person_name(config: cfgmod.WorkbookConfig, who: str) -> str:
    """An engineer's (or the team lead's, ``lead``) name from ``team.yml``."""
    team = config.team
    if who in team.engineers:
        return team.engineers[who].name
    return team.team_lead.name if who == "lead" else who


def collect_oncall(config: cfgmod.WorkbookConfig, as_of: dt.datetime, *, engine: Engine) -> OnCallNow:
    from helpers.oncall import schedule as oncall

    schedule = oncall.schedule_for(config, engine=engine)
    state = schedule.on_call_at(as_of)
    week = state.week
    nxt = schedule.week(week.index + 1)

    def local(ts: dt.datetime) -> str:
        return f"{schedule.local(ts):%a %d %b %H:%M %Z}"

    def holidays(w: Any) -> tuple[str, ...]:
        return tuple(f"{h.name} ({h.date:%a %d %b})" for h in w.holidays)

    responders = []
    for pid in config.pipelines.pipelines:
        b = schedule.backup_for(pid, as_of)
        responders.append(
            Responder(pid, schedule.first_responder(pid, as_of), b.who, b.reason, week.holiday_week)
        )
    return OnCallNow(
        at=as_utc(as_of), engineer=state.engineer, name=person_name(config, state.engineer), since=week.start,
        handover=week.end, next_engineer=nxt.engineer, next_name=person_name(config, nxt.engineer),
        local={"since": local(week.start), "handover": local(week.end), "next_until": local(nxt.end)},
        swapped_from=week.scheduled if week.swaps else None, holidays=holidays(week),
        next_holidays=holidays(nxt), month_end=state.month_end, on_deck=tuple(state.on_deck),
        responders=tuple(responders),
    )  # fmt: skip


# ---------------------------------------------------------------- incidents


@dataclass(frozen=True)
class IncidentRow:
    """One open incident as the board shows it."""

    incident_id: int
    severity: str
    state: str  # open | acknowledged
    cause: str
    pipeline: str
    owner: str  # the lead pipeline's owners (DE1/DE2), or team
    responder: str | None  # who it reaches first now
    opened_at: dt.datetime
    fix_deadline: dt.datetime
    runbook: str | None
    runbook_name: str | None
    figures_at_risk: tuple[str, ...] = ()
    acknowledged_by: str | None = None
    alerts: int = 1
    diagnosis: str | None = None
    diagnosis_href: str | None = None

    def left(self, as_of: dt.datetime) -> dt.timedelta:
        return self.fix_deadline - as_utc(as_of)

    def deadline_text(self, as_of: dt.datetime) -> str:
        left = self.left(as_of)
        if left.total_seconds() < 0:
            return f"{format_age(-left)} overdue"
        return f"{format_age(left)} left"

    def deadline_band(self, as_of: dt.datetime) -> str:
        """``breached`` past the fix deadline, ``late`` within 24 h of it (the plan's "at risk"), else ``ok``."""
        left = self.left(as_of)
        if left.total_seconds() < 0:
            return "breached"
        return "late" if left <= dt.timedelta(hours=24) else "ok"

    def as_json(self, as_of: dt.datetime) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("opened_at", "fix_deadline"):
            out[k] = out[k].isoformat()
        out["figures_at_risk"] = list(self.figures_at_risk)
        out["age"] = format_age(as_utc(as_of) - self.opened_at)
        out["deadline"] = self.deadline_text(as_of)
        out["hours_left"] = round(self.left(as_of).total_seconds() / 3600, 1)
        return out


def incident_owner(pipeline: str, config: cfgmod.WorkbookConfig) -> str:
    """The owners of an incident's lead pipeline (``DE1/DE2``), or ``team``."""
    p = config.pipelines.pipelines.get(pipeline)
    if p is None or p.owners.team:
        return "team"
    return "/".join(dict.fromkeys(o for o in (p.owners.primary, p.owners.secondary) if o))


def _incident_row(inc: Any, config: cfgmod.WorkbookConfig, schedule: Any, *, as_of: dt.datetime,
                  engine: Engine, runs_root: Path) -> IncidentRow:  # fmt: skip
    from helpers.oncall import alerts as alertsmod
    from helpers.oncall import incidents
    from helpers.runbooks import registry

    lead = alertsmod.get_alert(int(inc.alert_id), engine=engine) if str(inc.alert_id).isdigit() else None
    route = catalogue.runbook_for(
        inc.check_id or (lead.check_id if lead else f"{inc.pipeline}.run_status"), inc.pipeline,
        pipelines=config.pipelines.pipelines, evidence=lead.evidence if lead else None,
        catalogue_id=inc.catalogue_id, runbook=lead.runbook if lead else None,
    )  # fmt: skip
    diag = registry.latest_diagnosis(inc.alert_id, engine=engine)
    responder = None
    if schedule is not None and inc.pipeline in config.pipelines.pipelines:
        responder = schedule.first_responder(inc.pipeline, as_of)
    return IncidentRow(
        incident_id=inc.incident_id, severity=inc.severity,
        state="acknowledged" if inc.acknowledged_at else "open", cause=inc.cause or inc.summary,
        pipeline=inc.pipeline, owner=incident_owner(inc.pipeline, config), responder=responder,
        opened_at=inc.opened_at, fix_deadline=inc.fix_deadline, runbook=route.runbook, runbook_name=route.name,
        figures_at_risk=tuple(inc.at_risk), acknowledged_by=inc.acknowledged_by,
        alerts=len(incidents.members(inc.incident_id, engine=engine)) or 1,
        diagnosis=(diag.diagnosis or diag.cause) if diag else None,
        diagnosis_href=relative_href(diag.html, runs_root) if diag else None,
    )  # fmt: skip


def collect_incidents(
    config: cfgmod.WorkbookConfig, as_of: dt.datetime, *, engine: Engine, runs_root: Path
) -> tuple[list[Any], list[IncidentRow]]:
    """The incidents open at ``as_of`` (as stored, and as board rows), soonest deadline first."""
    from helpers.oncall import incidents
    from helpers.oncall import schedule as oncall

    found = incidents.open_incidents(as_of, engine=engine)
    try:
        schedule = oncall.schedule_for(config, engine=engine)
    except cfgmod.ConfigError:
        schedule = None  # the on-call section says why
    rows = [
        _incident_row(i, config, schedule, as_of=as_of, engine=engine, runs_root=runs_root) for i in found
    ]
    return found, rows


# ---------------------------------------------------------------- the close


@dataclass(frozen=True)
class CloseProgress:
    """Where the close of one month stands at ``as_of``."""

    period: str
    role: str  # being closed | previous month
    state: str  # not started | draft | final | published
    deadline: dt.datetime  # the report is final by then (end of its business day)
    deadline_day: dt.date
    business_days_left: int  # business days from as_of's day to the deadline's (negative: overdue)
    blockers: int = 0
    first_blocker: str | None = None
    checks_passed: int = 0
    checks_total: int = 0
    signed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    published_version: int | None = None
    published_at: dt.datetime | None = None
    published_href: str | None = None
    report_href: str | None = None  # the latest month_end_report run's notebook.html

    def deadline_text(self) -> str:
        n = self.business_days_left
        due = f"due {self.deadline_day:%a %d %b}"
        if self.state == "published":
            return f"published (was {due})"
        if n > 0:
            return f"{due}: {n} business day{'s' if n != 1 else ''} left"
        return f"{due}: today" if n == 0 else f"{due}: {-n} business day{'s' if n != -1 else ''} overdue"

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["deadline"] = self.deadline.isoformat()
        out["deadline_day"] = self.deadline_day.isoformat()
        out["published_at"] = self.published_at.isoformat() if self.published_at else None
        out["signed"], out["missing"] = list(self.signed), list(self.missing)
        out["deadline_text"] = self.deadline_text()
        return out


def _close_started(period: str, report: RunRecord | None, engine: Engine) -> bool:
    from helpers.investor import signoff

    if report is not None:
        return True
    return any(e.event == "close" for e in signoff.audit_events(period, engine=engine))


def close_progress(period: str, role: str, config: cfgmod.WorkbookConfig, as_of: dt.datetime, *,
                   engine: Engine, runs_root: Path) -> CloseProgress:  # fmt: skip
    """The close of ``period``: its state, blockers, sign-offs, deadline and publication."""
    from helpers.investor import close, publication, signoff

    cal = businesscal.BusinessCalendar.from_team(config.team)
    n = config.pipelines.close.report_final_business_days
    y, m = (int(x) for x in period.split("-"))
    day = cal.nth_business_day_after_month_end(y, m, n)
    report = latest_runs([close.REPORT], [period], engine=engine).get((close.REPORT, period))
    base = dict(
        period=period, role=role, deadline=cal.close_deadline(period, n), deadline_day=day,
        business_days_left=cal.business_days_between(cal.local_date(as_of), day),
        signed=tuple(s.engineer for s in signoff.valid_signoffs(period, engine=engine)),
        missing=tuple(signoff.missing(period, config, engine=engine)),
        report_href=archive_href(report, runs_root) if report else None,
    )  # fmt: skip
    pub = publication.current(period, engine=engine)
    if pub is not None:
        path = publication.published_dir(period) / Path(pub.path).name
        return CloseProgress(**base, state="published", published_version=pub.version,
                             published_at=pub.published_at, published_href=relative_href(path, runs_root))  # fmt: skip
    status = close.close_status(period, as_of, config=config, engine=engine)
    checks = [i for i in status.items if i.section == "checks"]
    started = _close_started(period, report, engine)
    state = "final" if status.final else ("draft" if started else "not started")
    return CloseProgress(**base, state=state, blockers=len(status.blockers),
                         first_blocker=(status.blocker_lines(1) or [None])[0],
                         checks_passed=sum(i.ok for i in checks), checks_total=len(checks))  # fmt: skip


def collect_close(
    config: cfgmod.WorkbookConfig, as_of: dt.datetime, *, engine: Engine, runs_root: Path
) -> list[CloseProgress]:
    """The month being closed, then the month before it when its close was run or published."""
    from helpers.investor import close, publication

    period = close.close_in_progress(as_of, config)
    out = [close_progress(period, "being closed", config, as_of, engine=engine, runs_root=runs_root)]
    before = previous_month(period)
    seen = latest_runs([close.REPORT], [before], engine=engine) or publication.publications(
        before, engine=engine
    )
    if seen:
        out.append(
            close_progress(before, "previous month", config, as_of, engine=engine, runs_root=runs_root)
        )
    return out


# ---------------------------------------------------------------- the board


@dataclass(frozen=True)
class Board:
    """Every section of the status board at ``as_of`` (``generated_at``: when it was made)."""

    as_of: dt.datetime
    generated_at: dt.datetime
    grid: Grid | None = None
    freshness: tuple[Freshness, ...] = ()
    oncall: OnCallNow | None = None
    incidents: tuple[IncidentRow, ...] = ()
    close: tuple[CloseProgress, ...] = ()
    lineage: Lineage | None = None
    errors: Mapping[str, str] = field(default_factory=dict)  # section -> why it is empty

    def failed_cells(self) -> list[Cell]:
        rows = self.grid.rows if self.grid else ()
        return [c for r in rows for c in r.cells if c.status == "failed"]

    def headline(self) -> list[tuple[str, str]]:
        """``(status, text)`` badges summing the board up, worst news first."""
        failed = len(self.failed_cells())
        late = [f for f in self.freshness if f.band != health.FRESH]
        at_risk = self.lineage.at_risk() if self.lineage else []
        out = [
            ("failed" if failed else "ok", f"{failed} failed run{'s' if failed != 1 else ''} in view"),
            ("critical" if any(i.severity == "critical" for i in self.incidents) else
             "warn" if self.incidents else "ok", f"{len(self.incidents)} open incident{'s' if len(self.incidents) != 1 else ''}"),
            ("breached" if any(f.band == health.BREACHED for f in late) else "late" if late else "fresh",
             f"{len(late)} of {len(self.freshness)} marts/sources late"),
            ("at risk" if at_risk else "ok", f"{len(at_risk)} pipelines/figures at risk"),
        ]  # fmt: skip
        if self.close:
            c = self.close[0]
            state = {"published": "final", "final": "final", "draft": "provisional"}.get(c.state, "pending")
            out.append((state, f"close {c.period}: {c.state}, {c.deadline_text()}"))
        if self.errors:
            out.insert(0, ("error", f"{len(self.errors)} section(s) could not be read"))
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "generated_at": self.generated_at.isoformat(),
            "headline": [{"status": s, "text": t} for s, t in self.headline()],
            "grid": self.grid.as_json() if self.grid else None,
            "freshness": [f.as_json(self.as_of) for f in self.freshness],
            "oncall": self.oncall.as_json() if self.oncall else None,
            "incidents": [i.as_json(self.as_of) for i in self.incidents],
            "close": [c.as_json() for c in self.close],
            "lineage": self.lineage.as_json() if self.lineage else None,
            "errors": dict(self.errors),
        }


def _guard(errors: dict[str, str], name: str, fn: Callable[[], T], default: T) -> T:
    """``fn()``; on any error, ``default`` with the error kept under ``name`` (shown on the board)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
        errors[name] = f"{type(e).__name__}: {e}"
        return default


def _monitor_inputs(config: cfgmod.WorkbookConfig, as_of: dt.datetime, now: dt.datetime,
                    engine: Engine) -> tuple[list[Any], dict[str, Any], dict[str, list[str]]]:  # fmt: skip
    """The monitors' results (evaluated, not stored), each source's latest arrival, each pipeline's marts."""
    from helpers.checks import monitors
    from helpers.checks.snapshot import load_snapshot

    results = monitors.evaluate_monitors(as_of, config=config, now=now, engine=engine)
    pipes = config.pipelines.pipelines
    snap = load_snapshot(as_of, sources={s for p in pipes.values() for s in p.sources}, engine=engine)
    arrivals = {
        s: (as_utc(a["arrived_at"].max().to_pydatetime()) if len(a) else None)
        for s, a in snap.arrivals.items()
    }
    tables = {pid: monitors.pipeline_tables(p, snap.writes) for pid, p in pipes.items()}
    return results, arrivals, tables


def collect(
    as_of: dt.datetime,
    *,
    now: dt.datetime,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
    runs_root: Path | None = None,
) -> Board:
    """The whole board at ``as_of``; nothing is written (the monitors are evaluated, not recorded)."""
    config = config or cfgmod.get()
    engine = engine or get_engine()
    runs_root = runs_root or paths.runs_dir()
    as_of = as_utc(as_of)
    errors: dict[str, str] = {}
    grid = _guard(
        errors, "grid", lambda: collect_grid(config, as_of, engine=engine, runs_root=runs_root), None
    )
    results, arrivals, tables = _guard(errors, "freshness",
                                       lambda: _monitor_inputs(config, as_of, now, engine), ([], {}, {}))  # fmt: skip
    fresh = _guard(errors, "freshness",
                   lambda: health.freshness_rows(results, config, last_arrivals=arrivals, mart_tables=tables), [])  # fmt: skip
    oncall = _guard(errors, "oncall", lambda: collect_oncall(config, as_of, engine=engine), None)
    open_incidents, incident_rows = _guard(
        errors,
        "incidents",
        lambda: collect_incidents(config, as_of, engine=engine, runs_root=runs_root),
        ([], []),
    )
    close = _guard(
        errors, "close", lambda: collect_close(config, as_of, engine=engine, runs_root=runs_root), []
    )
    lineage = _guard(errors, "lineage", lambda: health.lineage(config, results, open_incidents, fresh), None)
    return Board(as_of, as_utc(now), grid, tuple(fresh), oncall, tuple(incident_rows), tuple(close), lineage,
                 errors)  # fmt: skip

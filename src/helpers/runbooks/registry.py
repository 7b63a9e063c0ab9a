"""Runbooks: find the one for an alert, run it through the runner, and record its diagnosis.

A runbook is a notebook under ``notebooks/runbooks/`` (outline in docs/runbooks.md; the API it calls is
:mod:`helpers.runbooks.kit`). Its name is its path there without ``.ipynb``: ``row_count_anomaly``,
``profit/stale_data``.

- :func:`resolve_alert` picks the runbook of an alert: its route
  (:func:`helpers.core.catalogue.runbook_for`, the one place that maps a check to the runbook that
  diagnoses it: by the failing source or upstream, else by the pipeline's family), and where that
  notebook is missing the generic runbook for the check's kind (:func:`resolve`,
  :data:`GENERIC_BY_KIND`). A route that points at an upstream also names the pipeline, check and
  partition the runbook looks at (:func:`parameters_for`). :func:`find` resolves a name, catalogue
  id or path typed by a person.
- :func:`run_runbook` executes it with :func:`helpers.runs.runner.execute_notebook` into
  ``runs/incidents/<alert_id>/<run_id>/`` (without an alert ``runs/runbooks/<name>/<run_id>/``),
  reads back the ``diagnosis``, ``cause`` and ``evidence`` scraps and records the run in the
  ``runbook_runs`` table: the alert's diagnosis line and the link to the rendered HTML.
- :func:`diagnose_new_alerts` is a scheduler tick hook (``runbooks.tick.scheduler_hooks`` passes it to
  ``scheduler.tick``, before escalation): every active alert without a diagnosis gets
  its runbook run in diagnose mode, at most :data:`HOOK_MAX_PER_TICK` per tick, claimed through a
  unique index so two schedulers never run the same one twice.
- :func:`latest_diagnoses` / :func:`notification_lines` are what listings and notifications use
  to show the diagnosis of an alert.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpers.core import config as cfgmod
from helpers.core import paths
from helpers.core.catalogue import (
    FAMILY,
    GENERAL_RUNBOOKS,
    RUNBOOKS_DIR,
    Route,
    parse_check_id,
    runbook_for,
    runbook_path,
)
from helpers.core.errors import UsageError
from helpers.core.timeutil import as_utc, naive_utc
from helpers.oncall import alerts as alertsmod
from helpers.oncall import escalation, incidents
from helpers.runbooks.context import Clock, as_of_clock
from helpers.storage.warehouse import get_engine, metadata, register_tables

log = logging.getLogger(__name__)

# The generic runbook for a check kind, when the alert's own runbook is not written (yet).
GENERIC_BY_KIND: Mapping[str, str] = {
    "freshness": "profit/stale_data",
    "source_freshness": "profit/stale_data",
    "upstream_at_risk": "profit/stale_data",
    "row_count": "row_count_anomaly",
    "nulls": "null_critical_columns",
    "run_status": "backfill",
    "domain": "backfill",
}
# sla_at_risk alerts, by the deadline in their check id.
GENERIC_BY_DEADLINE: Mapping[str, str] = {
    ".sla.freshness": "profit/stale_data",
    ".sla.end_of_week": "backfill",
    ".sla.month_end_close": "month_end_close",
    ".sla.fix_deadline.": "incident_fix",
}
# The runbooks of this infrastructure; the rest of the catalogue comes with the pipelines.
GENERIC_RUNBOOKS: tuple[str, ...] = (
    "row_count_anomaly",
    "null_critical_columns",
    "backfill",
    "incident_fix",
    "month_end_close",
    "profit/stale_data",
)
RUNBOOK_PARAMETERS = ("alert_id", "pipeline", "partition", "check_id", "as_of", "apply_fix", "run_id")
HOOK_MAX_PER_TICK = 6  # a storm of new alerts is diagnosed over several ticks, critical ones first
HOOK_BUDGET_S = 90.0  # the hook starts no new runbook after this long (escalation comes next)
DIAGNOSE_TIMEOUT_S = 300  # per cell; diagnosis only reads
FIX_TIMEOUT_S = 3 * 3600  # per cell; a fix may backfill

runbook_runs = sa.Table(
    "runbook_runs",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(120), nullable=False, unique=True),
    sa.Column("alert_id", sa.Integer, nullable=True),
    sa.Column("runbook", sa.String(120), nullable=False),  # e.g. row_count_anomaly, profit/stale_data
    sa.Column("requested", sa.String(200), nullable=True),  # the alert's own runbook when a fallback ran
    sa.Column("mode", sa.String(10), nullable=False),  # diagnose | fix
    sa.Column("trigger", sa.String(16), nullable=False),  # hook | manual | drill ...
    sa.Column("status", sa.String(12), nullable=False),  # running | succeeded | failed | skipped
    sa.Column("cause", sa.String(60), nullable=True),
    sa.Column("diagnosis", sa.Text, nullable=True),
    sa.Column("evidence", sa.Text, nullable=False, default="{}"),
    sa.Column("archive", sa.Text, nullable=True),
    sa.Column("html", sa.Text, nullable=True),
    sa.Column("as_of", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("started_at", sa.DateTime(), nullable=False),
    sa.Column("finished_at", sa.DateTime(), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Index("ix_runbook_runs_alert", "alert_id"),
    # One automatic diagnosis per alert: the claim two schedulers race for.
    sa.Index(
        "ux_runbook_runs_hook",
        "alert_id",
        unique=True,
        sqlite_where=sa.text("\"trigger\" = 'hook'"),
        postgresql_where=sa.text("\"trigger\" = 'hook'"),
    ),
)

register_tables(runbook_runs)

_created: set[int] = set()


def _engine(engine: Engine | None = None) -> Engine:
    """The warehouse engine with ``runbook_runs`` created (also registered: ``warehouse.register_tables``)."""
    engine = engine or get_engine()
    if id(engine) not in _created:
        runbook_runs.create(engine, checkfirst=True)
        _created.add(id(engine))
    return engine


# ---------------------------------------------------------------- finding a runbook


@dataclass(frozen=True)
class Runbook:
    """A runbook notebook: its name (``row_count_anomaly``, ``profit/stale_data``) and path."""

    name: str

    @property
    def relpath(self) -> str:
        return f"{RUNBOOKS_DIR}/{self.name}.ipynb"

    @property
    def path(self) -> Path:
        return paths.notebook_path(self.relpath)

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    @classmethod
    def from_path(cls, relpath: str) -> Runbook:
        """``notebooks/runbooks/profit/stale_data.ipynb`` -> ``Runbook("profit/stale_data")``."""
        text = str(relpath).replace("\\", "/")
        if text.startswith(str(paths.repo_root()) + "/"):
            text = text[len(str(paths.repo_root())) + 1 :]
        text = text.removeprefix(f"{RUNBOOKS_DIR}/").removesuffix(".ipynb")
        return cls(text)


@dataclass(frozen=True)
class Resolution:
    """Which runbook runs for an alert, and, when it is a fallback, which one was asked for."""

    runbook: Runbook | None
    requested: str | None = None
    note: str = ""
    route: Route | None = None


def generic_for(kind: str, check_id: str) -> str:
    """The generic runbook for a check of ``kind`` (``sla_at_risk``: by the deadline in its id)."""
    if kind == "sla_at_risk":
        return next((name for key, name in GENERIC_BY_DEADLINE.items() if key in check_id), "backfill")
    return GENERIC_BY_KIND.get(kind, "backfill")


def resolve(
    *,
    runbook: str | None = None,
    kind: str = "domain",
    check_id: str = "",
    catalogue_id: str | None = None,
) -> Resolution:
    """The runbook to run for an alert's ``runbook`` path, check kind and catalogue id.

    The alert's own path (else the catalogue id's) when that notebook exists; otherwise the
    generic runbook of the check's kind, with a note naming the missing one.
    """
    wanted = runbook
    if wanted is None and catalogue_id in FAMILY:
        wanted = runbook_path(catalogue_id)
    if wanted:
        own = Runbook.from_path(wanted)
        if own.exists:
            return Resolution(own, None, "")
    generic = Runbook(generic_for(kind, check_id))
    if not generic.exists:
        return Resolution(
            None, wanted, f"no runbook: {wanted or 'none set'} and generic {generic.relpath} are missing"
        )
    note = f"{wanted} is not written yet: ran the generic {generic.name}" if wanted else ""
    return Resolution(generic, wanted, note)


def route_alert(alert: alertsmod.Alert, config: cfgmod.WorkbookConfig | None = None) -> Route:
    """The alert's route (:func:`helpers.core.catalogue.runbook_for`) under the current config."""
    config = config or cfgmod.get()
    return runbook_for(
        alert.check_id,
        alert.pipeline,
        pipelines=config.pipelines.pipelines,
        evidence=alert.evidence,
        catalogue_id=alert.catalogue_id,
        runbook=alert.runbook,
    )


def resolve_alert(alert: alertsmod.Alert, config: cfgmod.WorkbookConfig | None = None) -> Resolution:
    """The runbook of an alert: its route's (:func:`route_alert`); where that notebook is missing,
    :func:`resolve`'s generic runbook for its kind, with the route's recorded as requested."""
    route = route_alert(alert, config)
    found = resolve(runbook=route.runbook, kind=alert.kind, check_id=alert.check_id)
    return Resolution(found.runbook, found.requested, found.note, route)


def route_parameters(alert: alertsmod.Alert, runbook: Runbook, route: Route | None = None) -> dict[str, str]:
    """What an alert's runbook looks at: the alert's pipeline, partition and check, or, when its
    route points at an upstream and ``runbook`` is the route's, the upstream's."""
    out = {"pipeline": alert.pipeline, "partition": alert.partition, "check_id": alert.check_id}
    route = route or route_alert(alert)
    if route.name != runbook.name:
        return out
    for key in out:
        value = getattr(route, key)
        if value:
            out[key] = value
    watched = _deadline_of(alert)
    if watched is not None and route_alert(watched).runbook == route.runbook:  # the problem whose fix is late
        out.update(pipeline=watched.pipeline, partition=watched.partition, check_id=watched.check_id)
    return out


def _deadline_of(alert: alertsmod.Alert) -> alertsmod.Alert | None:
    """The alert whose fix deadline a ``<pipeline>.sla.fix_deadline.<id>`` alert watches, if any."""
    ref = parse_check_id(alert.check_id, alert.pipeline)
    if ref.kind != "sla_at_risk" or not ref.subject.startswith("fix_deadline."):
        return None
    watched = alert.evidence.get("alert_id") or ref.subject.removeprefix("fix_deadline.")
    try:
        return alertsmod.get_alert(int(watched))
    except (TypeError, ValueError):
        return None


def find(name: str) -> Runbook:
    """A runbook named by a person: ``row_count_anomaly``, ``profit/stale_data``, a catalogue id
    (``stale_data``), or a path (``notebooks/runbooks/backfill.ipynb``). Raises :class:`UsageError`."""
    text = name.strip()
    if text in FAMILY:
        candidate = Runbook(f"{FAMILY[text]}/{text}")
    elif text.endswith(".ipynb") or "/" in text and text.startswith(("notebooks", "/")):
        candidate = Runbook.from_path(text)
    else:
        candidate = Runbook(text)
    if not candidate.exists:
        known = ", ".join(r.name for r in available())
        raise UsageError(f"runbook {name!r}: {candidate.relpath} does not exist; available: {known}")
    return candidate


def available() -> list[Runbook]:
    """Every runbook notebook in the repository, by name."""
    root = paths.notebook_path(RUNBOOKS_DIR)
    found = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.ipynb"))
    return [Runbook(n) for n in found if ".ipynb_checkpoints" not in n]


def referenced() -> list[dict[str, Any]]:
    """Every runbook the checks can point at (the catalogue's and the general ones), and whether
    it exists yet: what ``workbook runbook --list`` prints (docs/runbooks.md, "Which runbook runs")."""
    rows = [
        {
            "runbook": path,
            "for": f"catalogue id {cid} ({family})",
            "exists": paths.notebook_path(path).is_file(),
        }
        for cid, family in FAMILY.items()
        for path in (f"{RUNBOOKS_DIR}/{family}/{cid}.ipynb",)
    ]
    for kind, path in GENERAL_RUNBOOKS.items():
        rows.append({"runbook": path, "for": f"{kind} checks", "exists": paths.notebook_path(path).is_file()})
    return rows


# ---------------------------------------------------------------- running one


@dataclass(frozen=True)
class RunbookRun:
    """One execution of a runbook: where it is archived and what it concluded."""

    run_id: str
    runbook: str
    alert_id: int | None
    mode: str
    trigger: str
    status: str  # succeeded | failed | skipped (no runbook)
    cause: str | None
    diagnosis: str | None
    evidence: dict[str, Any]
    archive: Path | None
    as_of: dt.datetime
    started_at: dt.datetime
    finished_at: dt.datetime | None
    requested: str | None = None
    error: str | None = None
    fixes: tuple[dict[str, Any], ...] = ()
    verification: dict[str, Any] | None = None

    @property
    def html(self) -> Path | None:
        return self.archive / "notebook.html" if self.archive else None

    @property
    def link(self) -> str | None:
        """The rendered runbook as a ``file://`` URL."""
        return self.html.resolve().as_uri() if self.html else None

    @property
    def line(self) -> str:
        """``<diagnosis> (runbook <name>: <link>)``: what listings and notifications show."""
        text = self.diagnosis or (
            f"runbook {self.status}: {self.error}" if self.error else f"runbook {self.status}"
        )
        return f"{text} (runbook {self.runbook}: {self.link})" if self.link else text

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.isoformat() if isinstance(v, dt.datetime) else str(v) if isinstance(v, Path) else v
        out["html"] = str(self.html) if self.html else None
        out["link"] = self.link
        out["line"] = self.line
        return out


def new_run_id(runbook: str, now: dt.datetime) -> str:
    """``rb-<runbook>-<UTC start>-<random>`` (slashes become dots)."""
    return f"rb-{runbook.replace('/', '.')}-{as_utc(now):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def archive_for(runbook: str, alert_id: int | None, run_id: str) -> Path:
    """``runs/incidents/<alert_id>/<run_id>`` for an alert, else ``runs/runbooks/<name>/<run_id>``."""
    if alert_id is not None:
        return paths.runs_dir() / "incidents" / str(alert_id) / run_id
    return paths.runs_dir() / "runbooks" / runbook.replace("/", ".") / run_id


def parameters_for(
    runbook: Runbook,
    *,
    as_of: dt.datetime,
    run_id: str,
    alert: alertsmod.Alert | None = None,
    apply_fix: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters to inject: the standard ones the notebook declares (an alert's: its id, and
    the pipeline, partition and check its route looks at), then ``extra`` (checked: declared, never
    a secret)."""
    from helpers.runs import runner

    extra = dict(extra or {})
    declared = runner.check_parameters(runbook.path, extra, label=runbook.relpath)
    base: dict[str, Any] = {
        "as_of": as_utc(as_of).isoformat(),
        "apply_fix": bool(apply_fix),
        "run_id": run_id,
    }
    if alert is not None:
        base.update(alert_id=str(alert.alert_id), **route_parameters(alert, runbook))
    params = {k: v for k, v in base.items() if k in declared}
    params.update(extra)
    return params


def run_runbook(
    runbook: Runbook | str,
    *,
    clock: Clock,
    as_of: dt.datetime,
    alert_id: int | None = None,
    params: Mapping[str, Any] | None = None,
    apply_fix: bool = False,
    trigger: str = "manual",
    requested: str | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
    claim_id: int | None = None,
) -> RunbookRun:
    """Execute a runbook (diagnose mode unless ``apply_fix``), archive it, record its diagnosis.

    Raises :class:`UsageError` for an unknown runbook, alert or parameter. A runbook that fails
    is archived and recorded (``status`` failed, the error as its diagnosis line), not raised.
    """
    config = config or cfgmod.get()
    engine = _engine(engine)
    book = runbook if isinstance(runbook, Runbook) else find(runbook)
    alert = None
    if alert_id is not None:
        alert = alertsmod.get_alert(int(alert_id), engine=engine)
        if alert is None:
            raise UsageError(f"--alert: no alert {alert_id}; `workbook alerts` lists them")
    as_of = as_utc(as_of)
    started = clock()
    run_id = new_run_id(book.name, started)
    parameters = parameters_for(
        book, as_of=as_of, run_id=run_id, alert=alert, apply_fix=apply_fix, extra=params
    )
    mode = "fix" if apply_fix else "diagnose"
    row = dict(
        run_id=run_id,
        alert_id=alert.alert_id if alert else None,
        runbook=book.name,
        requested=requested,
        mode=mode,
        trigger=trigger,
        status="running",
        evidence="{}",
        as_of=naive_utc(as_of),
        started_at=naive_utc(started),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    _write_row(row, claim_id, engine)
    try:
        result = _execute(
            book, row, parameters, alert_id=alert_id, as_of=as_of, started=started, clock=clock, config=config
        )
    except BaseException as exc:
        with engine.begin() as conn:
            conn.execute(
                runbook_runs.update()
                .where(runbook_runs.c.run_id == run_id)
                .values(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=naive_utc(clock()))
            )
        raise
    run = _run_from_result(result, row, as_of=as_of, started=started)
    _write_finish(run, engine)
    return run


def _write_row(row: Mapping[str, Any], claim_id: int | None, engine: Engine) -> None:
    """Insert a ``runbook_runs`` row, or fill the hook's claim row (``claim_id``) with it."""
    with engine.begin() as conn:
        if claim_id is not None:
            conn.execute(runbook_runs.update().where(runbook_runs.c.entry_id == claim_id).values(**row))
        else:
            conn.execute(runbook_runs.insert().values(**row))


def _execute(
    book: Runbook,
    row: Mapping[str, Any],
    parameters: dict[str, Any],
    *,
    alert_id: int | None,
    as_of: dt.datetime,
    started: dt.datetime,
    clock: Clock,
    config: cfgmod.WorkbookConfig,
) -> Any:
    """Execute the notebook into its archive (``runner.ExecutionResult``); ``row`` is the started run."""
    from helpers.runs import runner

    run_id, mode = row["run_id"], row["mode"]
    return runner.execute_notebook(
        book.path,
        archive_for(book.name, row["alert_id"], run_id),
        parameters,
        clock=clock,
        kernel_name=config.pipelines.runner.kernel_name,
        timeout_s=FIX_TIMEOUT_S if mode == "fix" else DIAGNOSE_TIMEOUT_S,
        hide_code=False,
        log_header=f"runbook {run_id}: {book.name} ({mode}) alert={alert_id} as_of={as_of.isoformat()}",
        record={
            "run_id": run_id,
            "runbook": book.name,
            "alert_id": alert_id,
            "mode": mode,
            "as_of": as_of.isoformat(),
            "trigger": row["trigger"],
        },
        started=started,
    )


def _run_from_result(
    result: Any, row: Mapping[str, Any], *, as_of: dt.datetime, started: dt.datetime
) -> RunbookRun:
    """The :class:`RunbookRun` of an executed runbook, from its scraps (``row``: the started run)."""
    evidence = result.scrap("evidence", {}) or {}
    diagnosis = result.scrap("diagnosis")
    if result.status != "succeeded" and diagnosis is None:
        diagnosis = f"runbook failed before concluding: {result.error}"
    return RunbookRun(
        run_id=row["run_id"],
        runbook=row["runbook"],
        alert_id=row["alert_id"],
        mode=row["mode"],
        trigger=row["trigger"],
        status=result.status,
        cause=result.scrap("cause"),
        diagnosis=diagnosis,
        evidence=evidence if isinstance(evidence, dict) else {"value": evidence},
        archive=result.archive,
        as_of=as_of,
        started_at=as_utc(started),
        finished_at=as_utc(result.finished_at),
        requested=row["requested"],
        error=result.error,
        fixes=tuple(result.scrap("fixes", []) or []),
        verification=result.scrap("verification"),
    )


def _write_finish(run: RunbookRun, engine: Engine) -> None:
    """Record a finished run's outcome, diagnosis and archive on its ``runbook_runs`` row."""
    with engine.begin() as conn:
        conn.execute(
            runbook_runs.update()
            .where(runbook_runs.c.run_id == run.run_id)
            .values(
                status=run.status,
                cause=run.cause,
                diagnosis=run.diagnosis,
                evidence=json.dumps(run.evidence, default=str, sort_keys=True),
                archive=str(run.archive),
                html=str(run.html),
                finished_at=naive_utc(run.finished_at),
                error=run.error,
            )
        )


def diagnose_alert(
    alert: alertsmod.Alert,
    *,
    clock: Clock,
    as_of: dt.datetime,
    trigger: str = "manual",
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
    claim_id: int | None = None,
) -> RunbookRun:
    """Run the alert's runbook (:func:`resolve_alert`) in diagnose mode and record it on the alert.

    An alert with no runbook at all is recorded ``skipped`` with the reason as its diagnosis.
    """
    engine = _engine(engine)
    res = resolve_alert(alert)
    if res.runbook is None:
        now = clock()
        run = RunbookRun(
            new_run_id("none", now), "none", alert.alert_id, "diagnose", trigger, "skipped", None,
            res.note, {}, None, as_utc(as_of), as_utc(now), as_utc(now), res.requested,
        )  # fmt: skip
        values = dict(
            run_id=run.run_id, alert_id=alert.alert_id, runbook="none", requested=res.requested, mode="diagnose",
            trigger=trigger, status="skipped", diagnosis=res.note, evidence="{}", as_of=naive_utc(as_of),
            started_at=naive_utc(now), finished_at=naive_utc(now), host=socket.gethostname(), pid=os.getpid(),
        )  # fmt: skip
        _write_row(values, claim_id, engine)
        return run
    return run_runbook(
        res.runbook,
        clock=clock,
        as_of=as_of,
        alert_id=alert.alert_id,
        trigger=trigger,
        requested=res.requested,
        config=config,
        engine=engine,
        claim_id=claim_id,
    )


# ---------------------------------------------------------------- the tick hook


def _alive(host: str | None, pid: int | None) -> bool:
    if host != socket.gethostname() or pid is None:
        return True  # another machine's claim: trust it
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _claim(alert_id: int, as_of: dt.datetime, now: dt.datetime, engine: Engine) -> int | None:
    """Claim the automatic diagnosis of an alert; the claim row's id, or None if someone has it.

    A claim left ``running`` by a process that died is taken over.
    """
    values = dict(
        run_id=f"claim-{alert_id}-{uuid.uuid4().hex[:8]}", alert_id=alert_id, runbook="?", mode="diagnose",
        trigger="hook", status="running", evidence="{}", as_of=naive_utc(as_of), started_at=naive_utc(now),
        host=socket.gethostname(), pid=os.getpid(),
    )  # fmt: skip
    for _attempt in range(2):
        try:
            with engine.begin() as conn:
                return int(conn.execute(runbook_runs.insert().values(**values)).inserted_primary_key[0])
        except IntegrityError:
            with engine.begin() as conn:
                held = (
                    conn.execute(
                        sa.select(runbook_runs).where(
                            (runbook_runs.c.alert_id == alert_id) & (runbook_runs.c.trigger == "hook")
                        )
                    )
                    .mappings()
                    .first()
                )
                if held is None or held["status"] != "running" or _alive(held["host"], held["pid"]):
                    return None
                conn.execute(runbook_runs.delete().where(runbook_runs.c.entry_id == held["entry_id"]))
    return None


def undiagnosed(as_of: dt.datetime, *, engine: Engine | None = None) -> list[alertsmod.Alert]:
    """Active alerts opened by ``as_of`` with no runbook run recorded, critical first, then oldest:
    the lead of each incident and the alerts in none (a symptom is its incident's cause's to
    explain: its lead's diagnosis covers it)."""
    engine = _engine(engine)
    symptoms = {a for inc in incidents.list_incidents(open_only=True, engine=engine)
                for a, role in incidents.members(inc.incident_id, engine=engine) if role == "symptom"}  # fmt: skip
    with engine.connect() as conn:
        done = {
            r
            for (r,) in conn.execute(
                sa.select(runbook_runs.c.alert_id).where(runbook_runs.c.alert_id.isnot(None))
            )
        }
    waiting = [
        a
        for a in alertsmod.list_alerts(open_only=True, limit=10_000, engine=engine)
        if a.alert_id not in done and str(a.alert_id) not in symptoms and a.opened_at <= as_utc(as_of)
    ]
    return sorted(waiting, key=lambda a: (a.severity != "critical", a.opened_at, a.alert_id))


def diagnose_new_alerts(
    *,
    as_of: dt.datetime,
    now: dt.datetime,
    pipelines: Sequence[str] = (),
    config: cfgmod.WorkbookConfig | None = None,
    limit: int = HOOK_MAX_PER_TICK,
    workers: int | None = None,
    budget_s: float = HOOK_BUDGET_S,
    engine: Engine | None = None,
) -> list[RunbookRun]:
    """A scheduler tick hook (``runbooks.tick.scheduler_hooks``): alerts arrive diagnosed.

    The active alerts are grouped into incidents first (without paging: ``escalation.group``);
    then the lead of each new incident, and each alert in none, gets its runbook run in diagnose
    mode at ``as_of`` (``runner.workers`` at a time, at most ``limit`` per tick; the rest next
    tick). The hook runs before escalation, so the first notification carries the diagnosis; to
    keep paging prompt, no new runbook starts once ``budget_s`` seconds have passed (the claim is
    released for the next tick). ``pipelines`` is ignored: like escalation, every alert is served
    whichever pipelines this scheduler runs. One runbook failing does not stop the others.
    """
    config = config or cfgmod.get()
    engine = _engine(engine)
    clock = as_of_clock(now)  # the tick's clock reading (the wall clock in production), advanced
    origin = time.monotonic()
    claimed: list[tuple[alertsmod.Alert, int]] = []
    escalation.group(config, escalation.WarehouseAlerts(engine=engine), as_of, engine=engine)
    for alert in undiagnosed(as_of, engine=engine):
        if len(claimed) >= limit:
            break
        claim = _claim(alert.alert_id, as_of, now, engine)
        if claim is not None:
            claimed.append((alert, claim))

    def one(item: tuple[alertsmod.Alert, int]) -> RunbookRun | None:
        alert, claim = item
        if time.monotonic() - origin > budget_s:  # out of time: leave it to the next tick
            with engine.begin() as conn:
                conn.execute(runbook_runs.delete().where(runbook_runs.c.entry_id == claim))
            return None
        try:
            return diagnose_alert(
                alert, clock=clock, as_of=as_of, trigger="hook", config=config, engine=engine, claim_id=claim
            )
        except Exception:
            log.exception("diagnosing alert %s failed", alert.alert_id)
            with engine.begin() as conn:
                conn.execute(
                    runbook_runs.update()
                    .where(runbook_runs.c.entry_id == claim)
                    .values(status="failed", finished_at=naive_utc(clock()))
                )
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers or config.pipelines.runner.workers)) as pool:
        done = list(pool.map(one, claimed))
    return [r for r in done if r is not None]


# ---------------------------------------------------------------- reading diagnoses


def _run_from_row(row: Mapping[str, Any]) -> RunbookRun:
    return RunbookRun(
        run_id=row["run_id"],
        runbook=row["runbook"],
        alert_id=row["alert_id"],
        mode=row["mode"],
        trigger=row["trigger"],
        status=row["status"],
        cause=row["cause"],
        diagnosis=row["diagnosis"],
        evidence=json.loads(row["evidence"] or "{}"),
        archive=Path(row["archive"]) if row["archive"] else None,
        as_of=as_utc(row["as_of"]),
        started_at=as_utc(row["started_at"]),
        finished_at=as_utc(row["finished_at"]) if row["finished_at"] else None,
        requested=row["requested"],
        error=row["error"],
    )


def list_runs(
    *, alert_id: int | None = None, limit: int = 50, engine: Engine | None = None
) -> list[RunbookRun]:
    """Recorded runbook runs (of one alert), newest first."""
    q = sa.select(runbook_runs).where(runbook_runs.c.status != "running")
    if alert_id is not None:
        q = q.where(runbook_runs.c.alert_id == int(alert_id))
    q = q.order_by(runbook_runs.c.entry_id.desc()).limit(limit)
    with _engine(engine).connect() as conn:
        return [_run_from_row(r) for r in conn.execute(q).mappings().all()]


def latest_diagnoses(alert_ids: Iterable[int], *, engine: Engine | None = None) -> dict[int, RunbookRun]:
    """The latest finished runbook run of each alert (by alert id; alerts without one are absent)."""
    ids = sorted({int(a) for a in alert_ids})
    if not ids:
        return {}
    q = (
        sa.select(runbook_runs)
        .where(runbook_runs.c.alert_id.in_(ids) & (runbook_runs.c.status != "running"))
        .order_by(runbook_runs.c.entry_id)
    )
    with _engine(engine).connect() as conn:
        return {r["alert_id"]: _run_from_row(r) for r in conn.execute(q).mappings().all()}


def latest_diagnosis(alert_id: int | str, *, engine: Engine | None = None) -> RunbookRun | None:
    """The latest finished runbook run of one alert, if any."""
    try:
        number = int(alert_id)
    except (TypeError, ValueError):
        return None  # an id from another store (a drill's in-memory alerts)
    return latest_diagnoses([number], engine=engine).get(number)


def notification_lines(alert_id: int | str, *, engine: Engine | None = None) -> list[str]:
    """Lines a notification about the alert adds: the diagnosis and the rendered runbook's link."""
    run = latest_diagnosis(alert_id, engine=engine)
    if run is None:
        return []
    lines = [f"diagnosis: {run.diagnosis or run.status}"]
    if run.link:
        lines.append(f"diagnosed by runbook {run.runbook}: {run.link}")
    return lines

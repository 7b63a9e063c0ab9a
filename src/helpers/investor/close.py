"""The month-end close: run the month's DAG, evaluate its checks, render the report, decide DRAFT/final.

"Month-end close is sacred" (the plan, docs/plan.md). ``workbook close --month M`` runs
:func:`run_close`:

1. *Wave A*: ``profit_aggregate``, ``growth_aggregate`` and ``profit_unit`` for M (``profit_unit``
   because Engagement's per-account join reads ``profit_unit_monthly`` and ``growth_accounts_monthly``
   without declaring them in ``depends_on``; its ``upstream_missing`` check fails without them).
2. *Wave B*: ``engagement_aggregate`` for the month's reference day (its last day, or the day before
   ``as_of`` mid-month), then ``investor_aggregate`` for M, gated on its upstreams like ``run-all``.
3. *The trailing months* (``history``, default 12: :mod:`helpers.investor.history`): each of the
   months before M that the landing zone covers and that has no succeeded investor aggregate gets
   its figures built in the same two waves (Engagement of its last day), so the report's trends have
   their points and MoM/YoY; published months are never re-run, and a failure there is an outcome
   (exit 1) that leaves M's own figures alone. :attr:`CloseResult.history` names what is missing.

   Steps 1-3 are one set of runs (:func:`helpers.investor.waves.build_waves`): a run starts once
   what it reads is done, the critical path first (a free worker takes the ready run with the
   longest chain of runs waiting on it, then the oldest month's: ``orchestrate.run_items``), and
   every Engagement month after the oldest one, which keeps the spans of the ``events``
   deliveries so that the others read only their own.
4. The monitors of those pipelines at ``as_of`` (``checks.evaluate_monitors``), so run failures and
   the close SLA are alerts.
5. The reports, through the runner (archived, validated like any run): ``month_end_report`` for M
   and ``finance_reconciliation_report`` (the Finance meeting's pack for M, partition: the
   ``as_of`` day). They render in every state: a DRAFT that names its blockers is the point when
   something upstream failed. The pack failing fails the close (exit 1) but does not block the
   investor report, whose own rendering is a checklist item.
6. The checklist (:func:`close_status`) and, with ``final=True``, publication (a copy of the final
   report under ``runs/published/``, printed to PDF beside it when Chromium is installed) or a
   refusal naming the blockers or the missing sign-offs.

**Sign-off, lock, version.** ``--final`` publishes only when every engineer of
``close.required_signoffs`` holds a valid sign-off of the month's figures
(:mod:`helpers.investor.signoff`; the close voids first any whose figures its runs changed). Publishing
records the version and locks the month (:func:`lock_targets`, :mod:`helpers.investor.publication`):
afterwards a close of the month runs nothing, and ``--final`` is refused with exit code 5 until
``workbook reopen``; the next ``--final`` publishes the next version. Every close is an event of the
month's audit log.

This module is the one place the close checklist is computed. The ``month_end_close`` runbook reads
it too (:mod:`helpers.investor.runbook`), with two sections of its own that are not part of the
DRAFT/final decision (:func:`readiness_items`): whether each investor pipeline's runs cover the whole
month (what the ``*.sla.month_end_close`` monitor watches) and whether an alert of it is still open.

**Idempotent and resumable.** A run is skipped when its partition's latest run succeeded at the
same ``as_of`` and (for a dependant) started after its upstreams' latest successes finished; so a
second close at the same ``as_of`` only re-evaluates and re-renders, and a close after a failure
re-runs what failed and what depends on it; a trailing month built once is not rebuilt (which runs,
skips and re-runs: :mod:`helpers.investor.waves`). The report is re-rendered every time (it is cheap
and reflects the checks as they are now).

**DRAFT or final.** The report is final only when every close check passes and every source for
the month is final (:class:`CloseStatus`): each pipeline's latest run for its partition succeeded,
every check recorded with those runs passes (domain checks, row counts, NULLs, the investor
aggregate's cross-pipeline validations), the monitors about the month (run status, the close SLA)
pass, the investor aggregate ran after its upstreams' latest successes, Profit, Growth and
Engagement are ``final`` for the month, and no critical incident about the month is open (the
close groups the alerts its checks opened into incidents, without paging: the next tick pages;
every open incident touching the close is listed with its owner, those about now included). Anything else is a blocker,
listed with its owner.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core import businesscal
from helpers.core import config as cfgmod
from helpers.core.errors import EXIT_FAILED, EXIT_LOCKED, EXIT_OK
from helpers.core.periods import period_days
from helpers.core.timeutil import as_utc, naive_utc
from helpers.engagement.window import DEFAULT_WINDOW_DAYS
from helpers.engagement.window import PIPELINE as ENGAGEMENT
from helpers.investor import history as trailing
from helpers.investor import publication, signoff, waves
from helpers.investor.inputs import SourceRun, latest_run, load_inputs, reference_day
from helpers.investor.metrics import UPSTREAMS
from helpers.investor.publication import published_dir  # noqa: F401  (where a close publishes)
from helpers.investor.waves import WAVE_A, WAVE_B, stale_reason
from helpers.oncall import escalation
from helpers.runs import locks, runner
from helpers.runs import records as runs
from helpers.runs.dag import Dag, RunItem
from helpers.storage import warehouse

REPORT = "month_end_report"
FINANCE_PACK = "finance_reconciliation_report"
MONITOR_KINDS = ("run_status", "sla_at_risk")  # monitors about the month (not about "now")

Clock = Callable[[], dt.datetime]


# ---------------------------------------------------------------- the checklist


@dataclass(frozen=True)
class CloseItem:
    """One line of the close checklist: what, of which pipeline, done or not, and who owns it."""

    section: str  # runs | checks | monitors | sources | report
    pipeline: str
    item: str
    ok: bool
    detail: str
    owner: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CloseStatus:
    """Where the close of ``period`` stands at ``as_of``: the checklist and the DRAFT/final decision."""

    period: str
    as_of: dt.datetime
    reference_day: dt.date
    deadline: dt.datetime
    items: tuple[CloseItem, ...]
    sources: Mapping[str, str] = field(default_factory=dict)  # pipeline -> final | provisional | missing

    @property
    def blockers(self) -> list[CloseItem]:
        """Every item not done: any one keeps the report a DRAFT."""
        return [i for i in self.items if not i.ok]

    @property
    def final(self) -> bool:
        return bool(self.items) and not self.blockers

    @property
    def label(self) -> str:
        return "FINAL" if self.final else "DRAFT"

    def blocker_lines(self, limit: int | None = None) -> list[str]:
        """``pipeline: item: detail (owner)`` per blocker."""
        lines = [f"{b.pipeline}: {b.item}: {b.detail} (owner {b.owner})" for b in self.blockers]
        return lines[:limit] if limit else lines

    def checklist(self) -> pd.DataFrame:
        """The checklist as a table (``status`` ok / BLOCKER)."""
        return pd.DataFrame(
            [
                {
                    "section": i.section,
                    "pipeline": i.pipeline,
                    "item": i.item,
                    "status": "ok" if i.ok else "BLOCKER",
                    "owner": i.owner,
                    "detail": i.detail,
                }
                for i in self.items
            ],
            columns=["section", "pipeline", "item", "status", "owner", "detail"],
        )

    def with_items(self, extra: Sequence[CloseItem]) -> CloseStatus:
        return CloseStatus(self.period, self.as_of, self.reference_day, self.deadline,
                           (*self.items, *extra), dict(self.sources))  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "as_of": self.as_of.isoformat(),
            "reference_day": self.reference_day.isoformat(),
            "deadline": self.deadline.isoformat(),
            "status": self.label,
            "final": self.final,
            "sources": dict(self.sources),
            "blockers": [b.as_json() for b in self.blockers],
            "items": [i.as_json() for i in self.items],
        }


def owner_label(pipeline: str, config: cfgmod.WorkbookConfig, on_call: str | None) -> str:
    """``DE1/DE2`` (primary/secondary), or ``team (on call: DE3)`` for a team-owned pipeline."""
    p = config.pipelines.pipelines.get(pipeline)
    if p is None:
        return "?"
    if p.owners.team:
        return f"team (on call: {on_call})" if on_call else "team"
    return f"{p.owners.primary}/{p.owners.secondary}"


def on_call_engineer(
    config: cfgmod.WorkbookConfig, as_of: dt.datetime, engine: sa.Engine | None = None
) -> str | None:
    """Who holds the pager at ``as_of`` (stored swaps included); None if the schedule cannot say."""
    from helpers.oncall import schedule as oncall

    try:
        return oncall.schedule_for(config, engine=engine).on_call_at(as_of).engineer
    except (cfgmod.ConfigError, ValueError, KeyError):
        return None


def close_partitions(period: str, as_of: dt.datetime) -> dict[str, str]:
    """The partition of each pipeline the close of ``period`` runs (Engagement: the reference day)."""
    day = reference_day(period, as_of).isoformat()
    return {p: (day if p == "engagement_aggregate" else period) for p in (*WAVE_A, *WAVE_B)}


def _check_rows(run_ids: Sequence[str], engine: sa.Engine) -> pd.DataFrame:
    """Check results recorded with these runs, the latest per (run, check)."""
    from helpers.checks.store import check_results as cr

    if not run_ids:
        return pd.DataFrame(
            columns=["result_id", "run_id", "check_id", "pipeline", "status", "severity", "summary"]
        )
    with engine.connect() as conn:
        frame = pd.read_sql(
            sa.select(cr.c.result_id, cr.c.run_id, cr.c.check_id, cr.c.pipeline, cr.c.status, cr.c.severity,
                      cr.c.summary).where(cr.c.run_id.in_(list(run_ids))),
            conn,
        )  # fmt: skip
    frame = frame.sort_values("result_id").drop_duplicates(["run_id", "check_id"], keep="last")
    return frame.sort_values(["pipeline", "check_id"]).reset_index(drop=True)


def _monitor_rows(pipelines: Sequence[str], partitions: Sequence[str], as_of: dt.datetime,
                  engine: sa.Engine) -> pd.DataFrame:  # fmt: skip
    """The latest stored monitor results (no run id) about these partitions, evaluated by ``as_of``."""
    from helpers.checks.store import check_results as cr

    with engine.connect() as conn:
        frame = pd.read_sql(
            sa.select(cr.c.result_id, cr.c.check_id, cr.c.pipeline, cr.c.partition, cr.c.kind, cr.c.status,
                      cr.c.severity, cr.c.summary).where(
                cr.c.run_id.is_(None)
                & cr.c.pipeline.in_(list(pipelines))
                & cr.c.partition.in_(list(partitions))
                & cr.c.kind.in_(MONITOR_KINDS)
                & (cr.c.as_of <= naive_utc(as_of))
            ),
            conn,
        )  # fmt: skip
    frame = frame[(frame["kind"] != "sla_at_risk") | frame["check_id"].str.endswith(".sla.month_end_close")]
    frame = frame.sort_values("result_id").drop_duplicates(["check_id", "partition"], keep="last")
    return frame.sort_values(["pipeline", "check_id"]).reset_index(drop=True)


def close_status(
    period: str,
    as_of: dt.datetime,
    *,
    config: cfgmod.WorkbookConfig | None = None,
    engine: sa.Engine | None = None,
) -> CloseStatus:
    """The close checklist of ``period`` at ``as_of`` from the run records and stored check results.

    Pure reading: the report notebook calls it to decide DRAFT/final, the CLI to print the checklist.
    """
    config = config or cfgmod.get()
    engine = engine or warehouse.get_engine()
    as_of = as_utc(as_of)
    parts = close_partitions(period, as_of)
    cal = businesscal.BusinessCalendar.from_team(config.team)
    deadline = cal.close_deadline(period, config.pipelines.close.report_final_business_days)
    who = on_call_engineer(config, as_of, engine)
    items: list[CloseItem] = []

    def add(section: str, pipeline: str, item: str, ok: bool, detail: str) -> None:
        items.append(CloseItem(section, pipeline, item, bool(ok), detail, owner_label(pipeline, config, who)))

    latest: dict[str, SourceRun] = {}
    for pid, part in parts.items():
        run = latest_run(pid, part, engine=engine)
        latest[pid] = run
        add("runs", pid, f"latest run of {part} succeeded", run.succeeded, run.describe())
    stale = stale_reason("investor_aggregate", period, parts, engine=engine)
    if latest["investor_aggregate"].succeeded:
        add("runs", "investor_aggregate", "ran after its upstreams' latest successes", stale is None,
            stale or "yes")  # fmt: skip
    ok_runs = [r.run_id for r in latest.values() if r.succeeded and r.run_id]
    for row in _check_rows(ok_runs, engine).itertuples():
        add(
            "checks",
            row.pipeline,
            row.check_id,
            row.status == "pass",
            f"{row.status} ({row.severity}): {row.summary}",
        )
    monitors = _monitor_rows(list(parts), sorted(set(parts.values())), as_of, engine)
    for row in monitors.itertuples():
        add("monitors", row.pipeline, f"{row.check_id} {row.partition}", row.status == "pass",
            f"{row.status} ({row.severity}): {row.summary}")  # fmt: skip
    items += incident_items(period, parts, as_of, config=config, engine=engine, who=who)
    inputs = load_inputs(period, as_of, engine=engine)
    sources: dict[str, str] = {}
    for pid in UPSTREAMS:
        src = {s.pipeline: s for s in inputs.sources()}.get(pid)
        sources[pid] = src.status if src else "missing"
        if src is None:
            add(
                "sources",
                pid,
                f"figures for {period} are final",
                False,
                f"missing: {inputs.missing.get(pid, '')}",
            )
        else:
            why = "; ".join(src.reasons) or "every source delivered"
            add("sources", pid, f"figures for {period} are final", src.final, f"{src.status}: {why}")
    return CloseStatus(period, as_of, inputs.reference_day, deadline, tuple(items), sources)


def open_incidents_of(
    pipelines: Sequence[str], as_of: dt.datetime, *, config: cfgmod.WorkbookConfig, engine: sa.Engine
) -> list[Any]:
    """The incidents open at ``as_of`` that touch the close: about one of ``pipelines`` or reaching a
    pipeline that feeds investors."""
    from helpers.oncall import incidents

    feeds = set(pipelines)
    return [
        inc
        for inc in incidents.open_incidents(as_of, engine=engine)
        if inc.pipeline in feeds or set(inc.at_risk) & feeds
    ]


def incident_partitions(incident_id: int, *, engine: sa.Engine) -> set[str]:
    """The partitions its active alerts are about (``current`` for a monitor about now)."""
    from helpers.oncall import alerts, incidents

    found = (alerts.get_alert(int(a), engine=engine) for a, _r in incidents.members(incident_id, engine=engine)
             if a.isdigit())  # fmt: skip
    return {a.partition for a in found if a is not None and a.status in alerts.ACTIVE}


def incident_items(period: str, parts: Mapping[str, str], as_of: dt.datetime, *, config: cfgmod.WorkbookConfig,
                   engine: sa.Engine, who: str | None) -> list[CloseItem]:  # fmt: skip
    """One item per open incident touching the close, with its owner. An incident whose alerts are
    about the month (a partition of it, or one the close builds) blocks it when critical; one about
    now (a source late today, a pipeline behind this week) is listed, and does not."""
    items = []
    for inc in open_incidents_of(list(parts), as_of, config=config, engine=engine):
        owner = owner_label(inc.pipeline, config, who)
        about = {p for p in incident_partitions(inc.incident_id, engine=engine)
                 if p.startswith(period) or p in parts.values()}  # fmt: skip
        blocking = inc.severity == "critical" and bool(about)
        scope = f"about {', '.join(sorted(about))}" if about else f"about now, not {period}'s figures"
        detail = (f"{inc.severity}, {scope}, fix by {inc.fix_deadline:%Y-%m-%d %H:%M} UTC"
                  + (f"; reaches {', '.join(inc.at_risk)}" if inc.at_risk else ""))  # fmt: skip
        items.append(CloseItem("incidents", inc.pipeline, f"incident {inc.incident_id}: {inc.cause or inc.summary}",
                               not blocking, detail, owner))  # fmt: skip
    return items


# ---------------------------------------------------------------- what the close runbook adds


def investor_pipelines(config: cfgmod.WorkbookConfig) -> list[str]:
    """The pipelines whose figures go to investors (``feeds`` investors or investor report), in DAG order."""
    pipes = config.pipelines.pipelines
    order = Dag.from_config(config.pipelines).order()
    return [pid for pid in order if pipes[pid].feeds in ("investors", "investor report")]


def close_in_progress(as_of: dt.datetime, config: cfgmod.WorkbookConfig) -> str:
    """The month whose close is in progress at ``as_of`` (``businesscal.close_window``)."""
    close = config.pipelines.close
    period, _deadline, _heightened = businesscal.close_window(
        businesscal.BusinessCalendar.from_team(config.team),
        as_of,
        report_final_business_days=close.report_final_business_days,
        heightened_from_days_before_month_end=close.heightened_from_days_before_month_end,
    )
    return period


def month_coverage(
    period: str, as_of: dt.datetime, runs: pd.DataFrame | None, config: cfgmod.WorkbookConfig
) -> dict[str, dt.date | None]:
    """The last day of ``period`` each investor pipeline's succeeded runs cover, as of ``as_of``.

    ``runs``: run records as ``checks.snapshot.load_snapshot`` reads them (default: read them now).
    The rule is the month-end close monitor's (``checks.rules.covered_through``).
    """
    from helpers.checks.rules import covered_through
    from helpers.checks.snapshot import load_snapshot

    if runs is None:
        runs = load_snapshot(as_of).runs
    pipes = config.pipelines.pipelines
    return {
        pid: covered_through(
            runs[runs["pipeline"] == pid], monthly=pipes[pid].partition == "month", as_of=as_of
        )
        for pid in investor_pipelines(config)
    }


def readiness_items(
    period: str,
    as_of: dt.datetime,
    coverage: Mapping[str, dt.date | None],
    *,
    config: cfgmod.WorkbookConfig,
    engine: sa.Engine | None = None,
) -> list[CloseItem]:
    """The ``month_end_close`` runbook's own items, per investor pipeline (not part of DRAFT/final).

    ``coverage``: its runs cover the whole month (:func:`month_coverage`); ``alerts``: no alert of
    it opened by ``as_of`` is still open.
    """
    from helpers.oncall import alerts as alertsmod

    need = period_days(period)[1]
    who = on_call_engineer(config, as_of, engine)
    open_alerts = alertsmod.list_alerts(open_only=True, limit=10_000, engine=engine)
    items: list[CloseItem] = []
    for pid, through in coverage.items():
        owner = owner_label(pid, config, who)
        covered = through is not None and through >= need
        detail = f"covered through {through or 'nothing'} (need {need})"
        items.append(CloseItem("coverage", pid, "covers the whole month", covered, detail, owner))
        mine = [a for a in open_alerts if a.pipeline == pid and a.opened_at <= as_of]
        listed = ", ".join(f"{a.alert_id} {a.check_id}" for a in mine) or "none open"
        items.append(CloseItem("alerts", pid, "no open alert", not mine, listed, owner))
    return items


# ---------------------------------------------------------------- running the close


@dataclass(frozen=True)
class CloseResult:
    """What :func:`run_close` did: every run's outcome, the checklist, the report and publication."""

    period: str
    as_of: dt.datetime
    outcomes: tuple[Any, ...]  # orchestrate.Outcome, in the order they finished their wave
    status: CloseStatus
    report: Any | None  # orchestrate.Outcome of the month-end report
    report_html: Path | None
    finance_pack_html: Path | None
    published: Path | None
    refused: str | None
    exit_code: int
    version: int | None = None  # the version published (or standing published, when locked)
    locked: str | None = None  # why nothing ran: the month is published and locked
    signoffs: tuple[signoff.SignOff, ...] = ()  # the month's sign-offs (valid, void, superseded)
    missing_signoffs: tuple[str, ...] = ()  # required engineers without a valid sign-off
    history: trailing.History | None = None  # the trailing months (None: a locked close ran nothing)
    pdf: Path | None = None  # the published report printed to PDF
    pdf_note: str | None = None  # why a published report has no PDF

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "as_of": self.as_of.isoformat(),
            "status": self.status.label,
            "final": self.status.final,
            "report": str(self.report_html) if self.report_html else None,
            "finance_pack": str(self.finance_pack_html) if self.finance_pack_html else None,
            "published": str(self.published) if self.published else None,
            "pdf": str(self.pdf) if self.pdf else None,
            "pdf_note": self.pdf_note,
            "refused": self.refused,
            "exit_code": self.exit_code,
            "version": self.version,
            "locked": self.locked,
            "signoffs": [s.as_json() for s in self.signoffs],
            "missing_signoffs": list(self.missing_signoffs),
            "runs": [o.as_json() for o in self.outcomes],
            "history": self.history.as_json() if self.history else None,
            "checklist": self.status.as_json(),
        }


def _render(pipeline: str, date: str, params: Mapping[str, Any], *, as_of: dt.datetime, clock: Clock,
            config: cfgmod.WorkbookConfig) -> Any:  # fmt: skip
    """Render one report through the runner; failures become outcomes, never exceptions."""
    from helpers.runs import runner
    from helpers.runs.orchestrate import Outcome

    try:
        result = runner.run_pipeline(pipeline, date, clock=clock, as_of=as_of, params=dict(params),
                                     trigger="close", config=config)  # fmt: skip
    except runs.RunConflict as e:
        return Outcome(pipeline, date, "conflict", e.existing.get("run_id"), str(e))
    except Exception as e:  # UsageError (missing notebook) and the like: recorded by the runner or here
        return Outcome(pipeline, date, "failed", None, f"{type(e).__name__}: {e}")
    return Outcome(pipeline, result.logical_date, result.status, result.run_id, result.error,
                   str(result.archive) if result.archive else None)  # fmt: skip


def publish(status: CloseStatus, report: Any, *, now: dt.datetime, version: int = 1) -> Path:
    """Copy the final report's HTML to :func:`published_dir` with a ``publication.json`` beside it.

    Raises ``ValueError`` naming the first blocker when the close is not final. Recording the
    version and locking the month is :func:`helpers.investor.publication.record`'s; the PDF,
    :func:`helpers.investor.publication.print_pdf`'s once that succeeded.
    """
    if not status.final:
        raise ValueError(f"refused to publish {status.period}: " + "; ".join(status.blocker_lines(3)))
    if report is None or report.status != "succeeded" or not report.archive:
        raise ValueError(f"refused to publish {status.period}: the report did not render")
    meta = {"period": status.period, "version": version, "status": publication.PUBLISHED,
            "as_of": status.as_of.isoformat(), "report_run_id": report.run_id,
            "published_at": as_utc(now).isoformat(), "sources": dict(status.sources)}  # fmt: skip
    return publication.write_files(status.period, Path(report.archive) / "notebook.html", meta)


def _ignore(_outcome: Any) -> None:
    """The default progress callback: nothing."""
    return None


def run_close(
    period: str,
    *,
    as_of: dt.datetime,
    clock: Clock,
    final: bool = False,
    history: int = trailing.DEFAULT_MONTHS,
    config: cfgmod.WorkbookConfig | None = None,
    workers: int | None = None,
    on_update: Callable[[Any], None] = _ignore,
    stop: threading.Event | None = None,
    by: str = "?",
) -> CloseResult:
    """Close ``period`` at ``as_of`` (see the module doc); never raises for a failed run.

    ``by``: who runs it, for the audit log; ``history``: how many months before ``period`` get their
    missing investor figures built (0: none). A locked (published) month runs nothing
    (:func:`_locked_close`).
    """
    config = config or cfgmod.get()
    as_of = as_utc(as_of)
    close_partitions(period, as_of)  # raises ValueError for a month that has not started
    engine = warehouse.get_engine()
    lock = locks.month_lock(period, engine=engine)
    if lock is not None:
        return _locked_close(period, as_of, lock, final=final, now=clock(), by=by, config=config)
    # the waves add their runs; the two reports are known now: warm kernels for them all
    with runner.warm_kernels(len((REPORT, FINANCE_PACK)), spares=workers or config.pipelines.runner.workers):
        return _unlocked_close(period, as_of=as_of, clock=clock, final=final, history=history, config=config,
                               workers=workers, on_update=on_update, stop=stop, by=by)  # fmt: skip


def _unlocked_close(period: str, *, as_of: dt.datetime, clock: Clock, final: bool, history: int,
                    config: cfgmod.WorkbookConfig, workers: int | None, on_update: Callable[[Any], None],
                    stop: threading.Event | None, by: str) -> CloseResult:  # fmt: skip
    from helpers import checks
    from helpers.runs.orchestrate import exit_code

    parts = close_partitions(period, as_of)
    engine = warehouse.get_engine()
    pipes = config.pipelines.pipelines
    wave = dict(as_of=as_of, clock=clock, config=config, workers=workers, on_update=on_update, stop=stop)
    outcomes: list[Any] = []
    day = reference_day(period, as_of)
    own = [RunItem(p, parts[p], day) for p in (*WAVE_A, *WAVE_B) if p in pipes]
    mine, trend, built = waves.build_waves(period, own, parts, history, wave)
    outcomes += mine + built
    checks.evaluate_monitors(as_of, pipelines=[p for p in parts if p in pipes], now=clock(), config=config)
    escalation.group(config, escalation.WarehouseAlerts(), as_of, engine=engine)  # the incidents it lists
    signoff.refresh(period, now=clock(), config=config, engine=engine)  # the runs may have changed figures
    rendered = _render_reports(period, as_of, final=final, clock=clock, config=config, workers=workers,
                               on_update=on_update, stop=stop)  # fmt: skip
    outcomes += rendered
    report = next((o for o in rendered if o.pipeline == REPORT), None)
    pack = next((o for o in rendered if o.pipeline == FINANCE_PACK), None)
    status = close_status(period, as_of, config=config)
    who = on_call_engineer(config, as_of)
    status = status.with_items([_report_item(o, config, who) for o in rendered if o.pipeline == REPORT])
    code = exit_code(outcomes)
    signoff.log_event(period, "close", by, clock(), f"close as of {as_of:%Y-%m-%d %H:%M}Z: {status.label}"
                      + ("" if status.final else f" ({len(status.blockers)} blocker(s))"),
                      {"as_of": as_of.isoformat(), "final": final, "blockers": status.blocker_lines(5)})  # fmt: skip
    published, refused, version, pdf, pdf_note = None, None, None, None, None
    if final:
        published, refused, version = _publish_final(status, report, now=clock(), by=by, config=config)
        code = EXIT_FAILED if refused else code
        if published is not None:
            pdf, pdf_note = publication.print_pdf(published)
    return CloseResult(period, as_of, tuple(outcomes), status, report, _html(report), _html(pack), published,
                       refused, code, version, None, tuple(signoff.list_signoffs(period)),
                       tuple(signoff.missing(period, config)), trend, pdf, pdf_note or None)  # fmt: skip


def _render_reports(period: str, as_of: dt.datetime, *, final: bool, clock: Clock, config: cfgmod.WorkbookConfig,
                    workers: int | None, on_update: Callable[[Any], None],
                    stop: threading.Event | None) -> list[Any]:  # fmt: skip
    """Render the month-end report and the Finance pack in parallel through the runner."""
    pipes = config.pipelines.pipelines
    renders = [
        (REPORT, period, {"final": final}),
        (FINANCE_PACK, as_of.date().isoformat(), {"period": period}),
    ]
    renders = [r for r in renders if r[0] in pipes and not (stop is not None and stop.is_set())]
    for name, date, _params in renders:
        on_update(_pending(name, date))
    with ThreadPoolExecutor(max_workers=workers or config.pipelines.runner.workers) as pool:
        futures = [
            pool.submit(_render, n, d, p, as_of=as_of, clock=clock, config=config) for n, d, p in renders
        ]
        rendered = [f.result() for f in futures]
    for o in rendered:
        on_update(o)
    return rendered


def _publish_final(status: CloseStatus, report: Any, *, now: dt.datetime, by: str,
                   config: cfgmod.WorkbookConfig) -> tuple[Path | None, str | None, int | None]:  # fmt: skip
    """Publish the next version and lock the month, or the refusal: blockers first, then sign-offs."""
    period = status.period
    try:
        lacking = signoff.missing(period, config)
        if status.final and lacking:
            raise ValueError(
                f"refused to publish {period}: no valid sign-off from {', '.join(lacking)} "
                f"(close.required_signoffs: {', '.join(config.required_signoffs)}); after checking the "
                f"figures: workbook signoff --month {period} --by NAME"
            )
        version = publication.next_version(period)
        path = publish(status, report, now=now, version=version)
    except ValueError as e:
        signoff.log_event(period, "refused", by, now, str(e))
        return None, str(e), None
    publication.record(period, version=version, path=path, as_of=status.as_of, report_run_id=report.run_id,
                       targets=lock_targets(period, config), signed=signoff.valid_signoffs(period), now=now,
                       by=by)  # fmt: skip
    return path, None, version


def _locked_close(period: str, as_of: dt.datetime, lock: locks.Lock, *, final: bool, now: dt.datetime,
                  by: str, config: cfgmod.WorkbookConfig) -> CloseResult:  # fmt: skip
    """The close of a published month: nothing runs; ``--final`` is refused with exit code 5."""
    status = close_status(period, as_of, config=config)
    pub = publication.current(period)
    why = lock.describe(period)
    refused = f"refused to publish {period} again: {why}" if final else None
    signoff.log_event(period, "refused" if final else "close", by, now,
                      refused or f"close as of {as_of:%Y-%m-%d %H:%M}Z: locked, nothing run")  # fmt: skip
    return CloseResult(period, as_of, (), status, None, None, None, pub.html if pub else None, refused,
                       EXIT_LOCKED if final else EXIT_OK, pub.version if pub else lock.version, why,
                       tuple(signoff.list_signoffs(period)), (), None, pub.pdf if pub else None)  # fmt: skip


def lock_targets(
    period: str, config: cfgmod.WorkbookConfig, *, engine: sa.Engine | None = None
) -> list[locks.Target]:
    """What ``--final`` locks: every partition of ``period`` of the pipelines that feed investors.

    Their pipeline partitions (a daily pipeline: each day of the month, and Engagement's first days
    of the next month, whose trailing window rewrites the month's last days) and the table
    partitions of the month their runs wrote (``locks.month_tables``).
    """
    pipes = investor_pipelines(config)
    first, last = period_days(period)
    out: list[locks.Target] = []
    for pid in pipes:
        if config.pipelines.pipelines[pid].partition == "month":
            out.append(locks.Target(locks.PIPELINE, pid, period))
            continue
        days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
        out += [locks.Target(locks.PIPELINE, pid, d.isoformat()) for d in days]
        if pid == ENGAGEMENT:
            spill = [last + dt.timedelta(days=k) for k in range(1, DEFAULT_WINDOW_DAYS)]
            why = f"its {DEFAULT_WINDOW_DAYS}-day window rewrites the last days of {period}"
            out += [locks.Target(locks.PIPELINE, pid, d.isoformat(), why) for d in spill]
    return out + locks.month_tables(period, pipes, engine=engine)


def _pending(pipeline: str, partition: str) -> Any:
    """A ``pending`` outcome, for the progress display."""
    from helpers.runs.orchestrate import PENDING, Outcome

    return Outcome(pipeline, partition, PENDING)


def _html(outcome: Any) -> Path | None:
    """The rendered HTML of a report run, if it was archived."""
    if outcome is None or not outcome.archive:
        return None
    html = Path(outcome.archive) / "notebook.html"
    return html if html.exists() else None


def _report_item(outcome: Any, config: cfgmod.WorkbookConfig, who: str | None) -> CloseItem:
    """The checklist item "the investor report rendered"."""
    ok = outcome.status == "succeeded"
    detail = f"run {outcome.run_id}" if ok else f"{outcome.status}: {outcome.reason}"
    return CloseItem("report", outcome.pipeline, f"rendered ({outcome.partition})", ok, detail,
                     owner_label(outcome.pipeline, config, who))  # fmt: skip

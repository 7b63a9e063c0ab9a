"""Fault drills: inject one failure-catalogue fault into a sandboxed demo company and grade the response.

``run_drill(id, workdir=...)`` builds a sandbox (its own ``WORKBOOK_HOME``, landing zone and SQLite
warehouse), generates a tiny demo company with the fault (``drill_specs.SPECS``), runs the affected
pipelines through the orchestrator at the spec's ``as_of``, then one scheduler tick with the
production hooks (monitors, "alerts arrive diagnosed", escalation), and grades:

- **detected**: the checks that failed, and whether an alert with ``catalogue_id == id`` opened;
- **routed**: the notifications the escalation hook sent for that alert's incident (recipient, channel, at)
  against ``routing.route`` (who the on-call schedule says, and when);
- **diagnosed**: the cause and diagnosis the hook's runbook recorded (must name the fault's id);
- **repaired**: after the outside world recovers where the fault is a delivery that never came
  (``heal``: the missing deliveries arrive, as after a re-extract) and the runbook ran with
  ``apply_fix=True``, the spec's figures against a clean run of the same company (no fault) at the
  same ``as_of``, within the spec's tolerance;
- **rows lost**: keys of the compared marts present in the clean run and absent after the fix,
  plus, where the pipeline keeps intake accounting (Engagement), received − accepted − quarantined.

The clean baseline is built once per process for everything that determines it (the demo shape,
the runs, the fix time and the seed runs: :func:`baseline_key`) and reused. Nothing
reads the wall clock: every time is the spec's, advanced by elapsed time (``as_of_clock``).
Notification channels that reach people (Slack, email, PagerDuty) are switched off in a drill, and
the sandbox has its own copy of the configuration (a fix may write reviewed account merges).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core import config as cfgmod
from helpers.core.timeutil import as_utc
from helpers.demo.drill_specs import SPECS, DemoShape, DrillSpec, Figure, drill_month, spec_for  # noqa: F401 (SPECS re-exported)
from helpers.storage import warehouse

# Channels that would reach real people: a drill never pages anyone.
_QUIET_ENV = (
    "WORKBOOK_SLACK_WEBHOOK_URL",
    "WORKBOOK_SMTP_URL",
    "WORKBOOK_PAGERDUTY_ROUTING_KEY",
    "WORKBOOK_PAGERDUTY_URL",
)
_SANDBOX_ENV = ("WORKBOOK_HOME", "WORKBOOK_WAREHOUSE_URL", "WORKBOOK_CONFIG_DIR", *_QUIET_ENV)


# ---------------------------------------------------------------- results


@dataclass
class Detected:
    checks: list[str]  # ids of the checks that failed or errored
    alert_id: int | None  # the alert of the injected fault (catalogue_id == id)
    check_id: str | None
    ok: bool

    def line(self) -> str:
        return self.check_id or ("none" if not self.checks else "not " + self.checks[0])


@dataclass
class Routed:
    notifications: list[dict[str, Any]]  # recipient, channel, at
    expected: list[str]  # who the schedule says, at expected_at
    expected_at: str | None
    reason: str
    ok: bool

    def line(self) -> str:
        who = sorted({n["recipient"] for n in self.notifications})
        at = min((n["at"] for n in self.notifications), default=None)
        return f"{','.join(who) or 'nobody'} @ {at[11:16] if at else '-'}"


@dataclass
class Diagnosed:
    runbook: str | None
    cause: str | None
    diagnosis: str | None
    requested: str | None  # the alert's own runbook when it did not exist yet (the generic one ran)
    ok: bool


@dataclass
class Repaired:
    runbook_status: str | None
    verification: Any
    diffs: list[dict[str, Any]]  # table, column, clean, repaired, relative
    ok: bool
    error: str | None = None


@dataclass
class DrillResult:
    id: str
    family: str
    fault: str
    detected: Detected
    routed: Routed
    diagnosed: Diagnosed
    repaired: Repaired
    rows_lost: int
    seconds: float
    sandbox: str | None = None
    error: str | None = None
    month: str | None = None  # the month the drill happened in (YYYY-MM)
    accounts: int | None = None  # the demo company's size
    seed: int | None = None  # the demo company's seed

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.detected.ok
            and self.routed.ok
            and self.diagnosed.ok
            and self.repaired.ok
            and self.rows_lost == 0
        )

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out

    def row(self) -> dict[str, Any]:
        """The table row of ``workbook drill``."""
        return {
            "id": self.id,
            "fault": self.fault,
            "month": self.month or "-",
            "accounts": self.accounts if self.accounts is not None else "-",
            "detected": self.detected.line(),
            "routed": self.routed.line(),
            "diagnosed": self.diagnosed.cause or "-",
            "repaired": "yes" if self.repaired.ok else "no",
            "rows_lost": self.rows_lost,
            "result": "PASS" if self.passed else "FAIL",
            "seconds": round(self.seconds, 1),
        }


# ---------------------------------------------------------------- grading (pure)


def compare_figures(
    clean: Mapping[str, pd.DataFrame],
    repaired: Mapping[str, pd.DataFrame],
    figures: Sequence[Figure],
    tolerance: float,
) -> tuple[list[dict[str, Any]], int, bool]:
    """Per figure column: the clean and repaired sums and their relative difference; rows lost; ok.

    A figure with no clean rows is a broken baseline, never a pass.
    """
    diffs: list[dict[str, Any]] = []
    lost, ok = 0, True
    for f in figures:
        name = _figure_name(f)
        c, r = clean.get(name, pd.DataFrame()), repaired.get(name, pd.DataFrame())
        if c.empty:
            diffs.append({"figure": name, "column": None, "clean": None, "repaired": None, "relative": None})
            ok = False
            continue
        for col in f.columns:
            cv = _total(c, col)
            rv = _total(r, col) if col in r.columns else None
            rel = None if rv is None else (0.0 if cv == rv else abs(rv - cv) / max(abs(cv), 1))
            good = rel is not None and rel <= tolerance
            ok &= good
            diffs.append(
                {"figure": name, "column": col, "clean": cv, "repaired": rv, "relative": rel, "ok": good}
            )
        if f.key:
            keys_c = set(map(tuple, c[list(f.key)].astype(str).to_numpy()))
            keys_r = set(map(tuple, r[list(f.key)].astype(str).to_numpy())) if not r.empty else set()
            if f.members and not r.empty and f.members in r.columns:
                keys_r |= {(m,) for v in r[f.members].dropna() for m in str(v).split(";") if m}
            lost += len(keys_c - keys_r)
    return diffs, lost, ok


def _total(frame: pd.DataFrame, column: str) -> float:
    return float(pd.to_numeric(frame[column], errors="coerce").fillna(0).sum())


def _figure_name(f: Figure) -> str:
    return f.table + "[" + ",".join(f"{k}={v}" for k, v in sorted(f.where.items())) + "]"


def grade_routing(
    notifications: Sequence[Mapping[str, Any]], expected: Sequence[str], expected_at: dt.datetime | None
) -> bool:
    """Every scheduled responder got the alert's first notification, at the time the schedule says."""
    if expected_at is None or not expected:
        return False
    first = [n for n in notifications if n.get("status") == "sent"]
    got = {n["recipient"] for n in first}
    times = [as_utc(dt.datetime.fromisoformat(n["at"])) for n in first]
    return set(expected) <= got and bool(times) and min(times) >= expected_at - dt.timedelta(minutes=1)


# ---------------------------------------------------------------- the sandbox


@contextlib.contextmanager
def sandbox(home: Path) -> Iterator[Path]:
    """Point the process (and the kernels it starts) at ``home`` with its own SQLite warehouse."""
    from helpers.core import paths

    saved = {k: os.environ.get(k) for k in _SANDBOX_ENV}
    (home / "runs").mkdir(parents=True, exist_ok=True)
    (home / "data").mkdir(parents=True, exist_ok=True)
    # A copy of the configuration: a fix may write a reviewed mapping (account merges) into it,
    # and that must stay in the sandbox, never reach the repository's config/.
    config = home / "config"
    if not config.exists():
        shutil.copytree(paths.config_dir(), config)
    os.environ["WORKBOOK_CONFIG_DIR"] = str(config)
    for k in _QUIET_ENV:
        os.environ.pop(k, None)
    os.environ["WORKBOOK_HOME"] = str(home)
    os.environ["WORKBOOK_WAREHOUSE_URL"] = f"sqlite:///{home / 'runs' / 'warehouse.sqlite'}"
    _reset()
    try:
        yield home
    finally:
        _reset()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reset()


def _reset() -> None:
    warehouse.dispose_engines()
    cfgmod._cached.cache_clear()


def _generate(shape: DemoShape, fault: str | None, landing: Path) -> None:
    from helpers.demo.generate import generate
    from helpers.demo.spec import DemoSpec, FaultSpec

    spec = DemoSpec(
        accounts=shape.accounts,
        months=shape.months,
        seed=shape.seed,
        end=dt.date.fromisoformat(shape.end),
        events_per_user_day=shape.events_per_user_day,
        faults=(FaultSpec.parse(fault),) if fault else (),
    )
    generate(spec, landing, events=shape.events, force=True)


def _run(items: Sequence[tuple[str, str]], as_of: dt.datetime) -> list[Any]:
    from helpers.runbooks.kit import as_of_clock
    from helpers.runs import dag, orchestrate

    config = cfgmod.get()
    outcomes = []
    for pipeline, day in items:  # one at a time: the order of the spec, each gated as in production
        item = dag.run_item(config.pipelines.get(pipeline), dt.date.fromisoformat(day))
        outcomes += orchestrate.run_items(
            [item], clock=as_of_clock(as_of), as_of=as_of, config=config, trigger="drill"
        )
    return outcomes


def _read_figures(figures: Sequence[Figure]) -> dict[str, pd.DataFrame]:
    out = {}
    engine = warehouse.get_engine()
    for f in figures:
        if not sa.inspect(engine).has_table(f.table):
            out[_figure_name(f)] = pd.DataFrame()
            continue
        out[_figure_name(f)] = warehouse.read_table(f.table, where=dict(f.where))
    return out


def _ok(outcomes: Sequence[Any], what: str) -> None:
    failed = [o for o in outcomes if o.status != "succeeded"]
    if failed:
        o = failed[0]
        raise RuntimeError(f"{what} run failed: {o.pipeline} {o.partition}: {o.status}: {o.reason}")


# Tables a seeded warehouse is emptied of: the sandbox starts with runs and marts, no incidents.
_SEED_CLEARED = ("alerts", "check_results", "notifications", "alert_timeline", "runbook_runs", "incidents",
                 "incident_alerts")  # fmt: skip


def _digest(*parts: Any) -> str:
    """A short hash of the canonical repr of ``parts`` (frozen dataclasses, tuples, ISO times)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def seed_key(spec: DrillSpec) -> str | None:
    """What determines the seeded warehouse: the shape, the seed runs and their as_of (None: no seed)."""
    if not spec.seed_runs:
        return None
    return _digest("seed", spec.shape, spec.seed_runs, spec.as_of.isoformat())


def baseline_key(spec: DrillSpec) -> str:
    """Everything that determines a clean baseline's warehouse: the demo shape (every field, seed and
    end included), the baseline runs, the fix time (their as_of) and the seeded warehouse."""
    return _digest("baseline", spec.shape, spec.all_baseline_runs, spec.fix_at.isoformat(), seed_key(spec))


class Baselines:
    """Clean companies, their warehouses and figures, built once per :func:`baseline_key` and reused;
    the figures are read per spec from the cached warehouse (any figures, any spec)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._landing: dict[DemoShape, Path] = {}
        self._homes: dict[str, Path] = {}
        self._figures: dict[tuple[str, str], dict[str, pd.DataFrame]] = {}
        self._seeds: dict[str, Path] = {}

    def seed(self, spec: DrillSpec) -> Path | None:
        """A SQLite warehouse holding the clean company's ``seed_runs`` (built once), or None."""
        key = seed_key(spec)
        if key is None:
            return None
        if key not in self._seeds:
            home = self.workdir / f"seed-{spec.family}-{key}"
            if home.exists():
                shutil.rmtree(home)
            with sandbox(home):
                (home / "data" / "landing").symlink_to(self.landing(spec.shape), target_is_directory=True)
                _ok(_run(spec.seed_runs, spec.as_of), "seed")
                engine = warehouse.get_engine()
                with engine.begin() as conn:
                    present = set(sa.inspect(conn).get_table_names())
                    for table in _SEED_CLEARED:
                        if table in present:
                            conn.execute(sa.text(f'DELETE FROM "{table}"'))
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            self._seeds[key] = home / "runs" / "warehouse.sqlite"
        return self._seeds[key]

    def landing(self, shape: DemoShape) -> Path:
        if shape not in self._landing:
            kind = "events" if shape.events else "business"
            root = self.workdir / f"clean-{kind}-{shape.accounts}-{_digest(shape)}" / "landing"
            if root.exists():
                shutil.rmtree(root)
            _generate(shape, None, root)
            self._landing[shape] = root
        return self._landing[shape]

    def home(self, spec: DrillSpec) -> Path:
        """The clean company's sandbox after the spec's baseline runs at ``fix_at`` (built once)."""
        key = baseline_key(spec)
        if key not in self._homes:
            landing = self.landing(spec.shape)
            home = self.workdir / f"baseline-{spec.family}-{key}"
            if home.exists():
                shutil.rmtree(home)
            seed = self.seed(spec)
            with sandbox(home):
                (home / "data" / "landing").symlink_to(landing, target_is_directory=True)
                if seed is not None:
                    shutil.copy(seed, home / "runs" / "warehouse.sqlite")
                _ok(_run(spec.all_baseline_runs, spec.fix_at), "clean baseline")
            self._homes[key] = home
        return self._homes[key]

    def figures(self, spec: DrillSpec) -> dict[str, pd.DataFrame]:
        """The spec's figures on its clean baseline."""
        key = (baseline_key(spec), _digest(spec.figures))
        if key not in self._figures:
            home = self.home(spec)
            with sandbox(home):
                self._figures[key] = _read_figures(spec.figures)
        return self._figures[key]


# ---------------------------------------------------------------- one drill


def _heal(spec: DrillSpec, clean_landing: Path, at: dt.datetime) -> int:
    """The missing deliveries arrive (a re-extract after the source recovered); returns rows landed."""
    from helpers.storage import landing

    rows = 0
    for r in spec.heal:
        for day in r.days:
            frames = [
                pd.read_parquet(clean_landing / r.source / d.file)
                for d in landing.deliveries(r.source, root=clean_landing)
                if d.partition == day
            ]
            if frames:
                frame = pd.concat(frames, ignore_index=True)
                landing.write_delivery(r.source, day, frame, arrived_at=at)
                rows += len(frame)
    return rows


def _detected(spec: DrillSpec) -> Detected:
    from helpers.oncall import alerts

    with warehouse.get_engine().connect() as conn:
        failing = sorted(
            set(
                conn.execute(
                    sa.text("SELECT check_id FROM check_results WHERE status IN ('fail', 'error')")
                ).scalars()
            )
        )
    target = [a for a in alerts.list_alerts() if a.catalogue_id == spec.id]
    target.sort(key=lambda a: (a.severity != "critical", a.alert_id))
    alert = target[0] if target else None
    return Detected(
        failing, alert.alert_id if alert else None, alert.check_id if alert else None, alert is not None
    )


def _routed(spec: DrillSpec, alert_id: int | None) -> Routed:
    from helpers.oncall import alerts, incidents, routing
    from helpers.oncall import schedule as oncall

    if alert_id is None:
        return Routed([], [], None, "no alert of the injected fault", False)
    alert = alerts.get_alert(alert_id)
    config = cfgmod.get()
    schedule = oncall.schedule_for(config)
    inc = incidents.incident_of(str(alert_id))  # only incidents page: on their lead alert
    pipeline, opened_at = (inc.pipeline, inc.opened_at) if inc else (alert.pipeline, alert.opened_at)
    paged = inc.alert_id if inc else str(alert_id)
    route = routing.route(schedule, pipeline, opened_at)
    expected = [r.key for r in route.recipients]
    with warehouse.get_engine().connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT recipient, channel, at, status, step FROM notifications "
                "WHERE alert_id = :a AND step = (SELECT step FROM notifications WHERE alert_id = :a "
                "ORDER BY notification_id LIMIT 1) ORDER BY notification_id"
            ),
            {"a": paged},
        ).mappings()
        sent = []
        for r in rows:
            for who in str(r["recipient"]).split(","):
                sent.append(
                    {
                        "recipient": who.strip(),
                        "channel": r["channel"],
                        "at": as_utc(dt.datetime.fromisoformat(str(r["at"]))).isoformat(),
                        "status": r["status"],
                        "step": r["step"],
                    }
                )
    ok = grade_routing(sent, expected, route.notify_at)
    return Routed(sent, expected, route.notify_at.isoformat(), route.reason, ok)


def _diagnosed(spec: DrillSpec, alert_id: int | None) -> Diagnosed:
    from helpers.oncall import incidents
    from helpers.runbooks import registry as runbooks

    if alert_id is None:
        return Diagnosed(None, None, "no alert to diagnose", None, False)
    inc = incidents.incident_of(str(alert_id))  # a symptom is diagnosed through its incident's lead
    lead = int(inc.alert_id) if inc is not None and inc.alert_id.isdigit() else alert_id
    found = runbooks.latest_diagnoses([alert_id, lead])
    run = found.get(alert_id) or found.get(lead)
    if run is None:
        return Diagnosed(None, None, "the tick's hook recorded no diagnosis", None, False)
    ok = run.status == "succeeded" and run.cause == spec.id
    return Diagnosed(run.runbook, run.cause, run.diagnosis, run.requested, ok)


def _intake_lost(spec: DrillSpec) -> int:
    """Engagement's intake accounting: rows received that were neither accepted nor quarantined."""
    from helpers.engagement.marts import INTAKE_TABLE

    if spec.family != "engagement" or not sa.inspect(warehouse.get_engine()).has_table(INTAKE_TABLE):
        return 0
    intake = warehouse.read_table(INTAKE_TABLE)
    if intake.empty:
        return 0
    gap = intake["received"].astype(int) - intake["accepted"].astype(int) - intake["quarantined"].astype(int)
    return int(gap.clip(lower=0).sum())


def _repaired(
    spec: DrillSpec, baselines: Baselines, clean: dict[str, pd.DataFrame], alert_id: int
) -> tuple[Repaired, int]:
    """Heal the outside world, run the alert's runbook with ``apply_fix=True`` and compare the
    figures with the clean run: the repair's grade and the rows lost."""
    from helpers.oncall import alerts
    from helpers.runbooks import registry as runbooks
    from helpers.runbooks.kit import as_of_clock

    _heal(spec, baselines.landing(spec.shape), spec.fix_at - dt.timedelta(minutes=30))
    book = spec.runbook or runbooks.resolve_alert(alerts.get_alert(alert_id)).runbook
    fix = runbooks.run_runbook(
        book,
        clock=as_of_clock(spec.fix_at),
        as_of=spec.fix_at,
        alert_id=alert_id,
        apply_fix=True,
        trigger="drill",
        params={k: v.format(clean_landing=baselines.landing(spec.shape)) for k, v in spec.fix_params},
    )
    diffs, lost, same = compare_figures(clean, _read_figures(spec.figures), spec.figures, spec.tolerance)
    verified = isinstance(fix.verification, Mapping) and bool(fix.verification.get("passed"))
    ok = fix.status == "succeeded" and verified and same
    return Repaired(fix.status, fix.verification, diffs, ok, fix.error), lost


def run_drill(
    drill_id: str,
    *,
    workdir: Path,
    baselines: Baselines | None = None,
    spec: DrillSpec | None = None,
    keep: bool = False,
) -> DrillResult:
    """Run one drill in a fresh sandbox under ``workdir`` (see the module docstring)."""
    from helpers.runbooks.kit import as_of_clock
    from helpers.runbooks.tick import scheduler_hooks
    from helpers.runs import scheduler

    spec = spec or spec_for(drill_id)
    baselines = baselines or Baselines(workdir)
    started = time.monotonic()
    home = workdir / f"drill-{spec.id}"
    if home.exists():
        shutil.rmtree(home)
    detected = Detected([], None, None, False)
    routed = Routed([], [], None, "not reached", False)
    diagnosed = Diagnosed(None, None, None, None, False)
    repaired = Repaired(None, None, [], False)
    lost, error = 0, None
    try:
        clean = baselines.figures(spec)
        seed = baselines.seed(spec)
        with sandbox(home):
            _generate(spec.shape, spec.fault, home / "data" / "landing")
            if seed is not None:
                shutil.copy(seed, home / "runs" / "warehouse.sqlite")
            _run(spec.runs, spec.as_of)
            scheduler.tick(
                spec.tick_at,
                clock=as_of_clock(spec.tick_at),
                pipelines=[p for p, _ in spec.runs],
                hooks=scheduler_hooks(),
            )
            detected = _detected(spec)
            routed = _routed(spec, detected.alert_id)
            diagnosed = _diagnosed(spec, detected.alert_id)
            if detected.alert_id is not None:
                repaired, lost = _repaired(spec, baselines, clean, detected.alert_id)
            lost += _intake_lost(spec)
    except Exception as e:  # a drill that cannot run is a failed drill, with the reason
        error = f"{type(e).__name__}: {e}"
    finally:
        if not keep and home.exists():
            shutil.rmtree(home, ignore_errors=True)
    return DrillResult(
        spec.id,
        spec.family,
        spec.fault,
        detected,
        routed,
        diagnosed,
        repaired,
        lost,
        time.monotonic() - started,
        str(home) if keep else None,
        error,
        drill_month(spec),
        spec.shape.accounts,
        spec.shape.seed,
    )


def run_drills(
    ids: Sequence[str | DrillSpec],
    *,
    workdir: Path,
    keep: bool = False,
    progress: Callable[[DrillResult], None] | None = None,
) -> list[DrillResult]:
    """Run ``ids`` (catalogue ids, or specs: e.g. ``drill_specs.at(spec, month)``) in order, sharing
    the clean baselines; ``progress`` after each."""
    baselines = Baselines(workdir)
    out = []
    for item in ids:
        spec = item if isinstance(item, DrillSpec) else spec_for(item)
        result = run_drill(spec.id, workdir=workdir, baselines=baselines, spec=spec, keep=keep)
        out.append(result)
        if progress is not None:
            progress(result)
    return out

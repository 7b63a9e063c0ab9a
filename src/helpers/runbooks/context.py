"""A runbook's parameters made usable: the context every kit function works in, and the Symptom step.

:func:`load_context` turns the notebook's parameters into a :class:`RunbookContext` (the alert, the
pipelines in scope, the partition, the check, ``as_of``, whether fixes may run) and starts a new fix
log (:data:`FIX_LOG`, written by :func:`helpers.runbooks.fixes.guarded_fix`). :func:`symptom` shows
what was observed. Nothing here reads the wall clock: runs started by a fix record their times on
:attr:`RunbookContext.clock`, the clock handed down by whoever launched the runbook (the runner's:
the wall clock from the CLI and the scheduler, a fake in tests and drills; see :func:`record_clock`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from helpers.core import config as cfgmod
from helpers.core.timeutil import as_utc, elapsed_clock, handed_clock, parse_as_of
from helpers.oncall import alerts as alertsmod
from helpers.runbooks.formatting import utc_text
from helpers.runs.dag import Dag
from helpers.runs.session import effective_as_of

FAMILIES: tuple[str, ...] = ("profit", "growth", "engagement")

Clock = Callable[[], dt.datetime]

# The fixes recorded since the last load_context (a runbook is one process working one context).
FIX_LOG: list[Any] = []


def as_of_clock(as_of: dt.datetime) -> Clock:
    """A clock that starts at ``as_of`` and advances with elapsed (monotonic) time.

    For a caller whose one time is ``as_of`` (tests, drills: a fake clock in the as_of frame), or
    ``now`` read once by the CLI or a notebook (then it is the wall clock, without reading it again).
    """
    return elapsed_clock(as_of)


def record_clock(
    as_of: dt.datetime, now: dt.datetime | None = None, environ: Mapping[str, str] | None = None
) -> Clock:
    """The clock a runbook's fix records the runs it starts on (their ``queued_at``/``started_at``/
    ``finished_at``: when they really happened, whatever their ``as_of``).

    The clock its runner handed down (``timeutil.CLOCK_ENV`` in ``environ``: the CLI's and the
    scheduler's wall clock, a test's or drill's fake); else, for a notebook run by hand, ``now``
    (its session cell's one wall-clock read) advanced by elapsed time; else ``as_of`` so advanced.
    """
    handed = handed_clock(os.environ if environ is None else environ)
    if handed is not None:
        return handed
    return as_of_clock(now if now is not None else as_of)


@dataclass
class RunbookContext:
    """A runbook's parameters made usable. ``pipeline`` None: every pipeline in ``scope``."""

    runbook: str
    as_of: dt.datetime
    apply_fix: bool
    run_id: str
    config: cfgmod.WorkbookConfig
    alert: alertsmod.Alert | None = None
    pipeline: str | None = None
    partition: str | None = None
    check_id: str | None = None
    # what the runs a fix starts record their times on (default: ``as_of`` advanced by elapsed time)
    clock: Clock = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.clock is None:
            self.clock = as_of_clock(self.as_of)

    @property
    def family(self) -> str | None:
        """The runbook's pipeline family (``profit/stale_data`` -> ``profit``), if it has one."""
        head = self.runbook.split("/", 1)[0]
        return head if "/" in self.runbook and head in FAMILIES else None

    @property
    def scope(self) -> list[str]:
        """The pipelines this run looks at: the one named, else the family's, else all of them."""
        pipes = self.config.pipelines.pipelines
        if self.pipeline:
            return [self.pipeline]
        order = Dag.from_config(self.config.pipelines).order()
        if self.family:
            return [p for p in order if pipes[p].family == self.family]
        return order

    @property
    def month(self) -> str | None:
        """The month the context is about: its partition when that is a month (``YYYY-MM``)."""
        part = self.partition or ""
        return part if len(part) == 7 and part[4:5] == "-" else None

    @property
    def catalogue_id(self) -> str | None:
        return self.alert.catalogue_id if self.alert else None

    def pipeline_config(self, pipeline: str | None = None) -> cfgmod.Pipeline | None:
        """The configuration of ``pipeline`` (default: the context's), None if not configured."""
        return self.config.pipelines.pipelines.get(pipeline or self.pipeline or "")

    @cached_property
    def snapshot(self) -> Any:
        """Run records and mart writes as of ``as_of`` (``checks.snapshot.Snapshot``), read once."""
        from helpers.checks.snapshot import load_snapshot

        return load_snapshot(self.as_of)

    def pipeline_runs(self, pipeline: str) -> pd.DataFrame:
        """The run records of ``pipeline`` in :attr:`snapshot` (oldest first)."""
        runs = self.snapshot.runs
        return runs[runs["pipeline"] == pipeline]

    def pipeline_tables(self, pipeline: str) -> list[str]:
        """The mart tables ``pipeline`` writes (none when it is not configured)."""
        from helpers.checks import monitors

        p = self.pipeline_config(pipeline)
        return monitors.pipeline_tables(p, self.snapshot.writes) if p else []

    def describe(self) -> str:
        """One line: what this run is about."""
        mode = "FIX" if self.apply_fix else "diagnose"
        if self.alert:
            a = self.alert
            what = f"alert {a.alert_id} [{a.severity}, {a.status}] {a.check_id} {a.partition}: {a.summary}"
        else:
            what = f"no alert: checking {', '.join(self.scope) or 'nothing'}"
            if self.partition:
                what += f" partition {self.partition}"
        return f"{self.runbook} ({mode} mode) as of {utc_text(self.as_of)}: {what}"

    def as_json(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "as_of": self.as_of.isoformat(),
            "apply_fix": self.apply_fix,
            "run_id": self.run_id,
            "alert_id": self.alert.alert_id if self.alert else None,
            "pipeline": self.pipeline,
            "partition": self.partition,
            "check_id": self.check_id,
            "scope": self.scope,
        }


def _alert(alert_id: str | int) -> alertsmod.Alert | None:
    """The alert a runbook is given (None for an empty id); an unknown one says where to look."""
    if not str(alert_id).strip():
        return None
    try:
        number = int(str(alert_id).strip())
    except ValueError:
        raise ValueError(
            f"alert_id: expected a number as listed by `workbook alerts`, got {alert_id!r}"
        ) from None
    alert = alertsmod.get_alert(number)
    if alert is None:
        raise ValueError(f"alert_id: no alert {number}; `workbook alerts` lists them")
    return alert


def load_context(
    runbook: str,
    *,
    as_of: str | dt.datetime,
    now: dt.datetime | None = None,
    alert_id: str | int = "",
    pipeline: str = "",
    partition: str = "",
    check_id: str = "",
    apply_fix: bool = False,
    run_id: str = "manual",
    config: cfgmod.WorkbookConfig | None = None,
) -> RunbookContext:
    """The context of one runbook run, from its parameters (empty strings mean "not given").

    An empty ``as_of`` means the alert's last evaluation (``last_seen_at``: the runbook sees what
    the alert saw) when ``alert_id`` is given, else ``now``: the runbook notebook's one clock read,
    handed in (the runner always injects ``as_of``). With ``alert_id`` the alert supplies the
    pipeline, partition and check unless they are given. An unknown alert or pipeline is an error
    that says where to look. The runs its fixes start record times on :func:`record_clock`.
    Starts a new fix log.
    """
    config = config or cfgmod.get()
    alert = _alert(alert_id)
    if isinstance(as_of, dt.datetime):
        when = as_utc(as_of)
    elif as_of.strip():
        when = parse_as_of(as_of)
    elif alert is not None:
        when = as_utc(alert.last_seen_at)
    elif now is None:
        raise ValueError("as_of: empty, and no `now` to default to; give an ISO timestamp (UTC)")
    else:
        when = effective_as_of(as_of, now)
    pipeline = pipeline or (alert.pipeline if alert else "")
    if pipeline and pipeline not in config.pipelines.pipelines and not alert:
        raise ValueError(
            f"pipeline: {pipeline!r} is not in config; expected one of {', '.join(config.pipelines.pipelines)}"
        )
    if alert and pipeline not in config.pipelines.pipelines:
        pipeline = ""  # an alert about something outside config: look at everything
    FIX_LOG.clear()
    return RunbookContext(
        runbook=runbook,
        as_of=when,
        apply_fix=bool(apply_fix),
        run_id=run_id,
        config=config,
        alert=alert,
        pipeline=pipeline or None,
        partition=partition or (alert.partition if alert else None) or None,
        check_id=check_id or (alert.check_id if alert else None) or None,
        clock=record_clock(when, now),
    )


def symptom(ctx: RunbookContext) -> pd.DataFrame:
    """What was observed: the alert (or what the runbook will check), and the check's history."""
    print(ctx.describe())
    if ctx.alert is None:
        return pd.DataFrame([ctx.as_json()])
    a = ctx.alert
    print("evidence:", json.dumps(a.evidence, default=str)[:600])
    return check_history(ctx)


def check_history(ctx: RunbookContext, *, limit: int = 10) -> pd.DataFrame:
    """The latest results of the context's check (its partition first), from ``check_results``."""
    from helpers.checks import store

    cols = ["evaluated_at", "as_of", "check_id", "partition", "status", "severity", "run_id", "summary"]
    if not ctx.check_id:
        return pd.DataFrame(columns=cols)
    rows = store.list_results(check_id=ctx.check_id, limit=200)
    rows = [r for r in rows if ctx.partition in (None, r["partition"]) and r["as_of"] <= ctx.as_of]
    return pd.DataFrame(rows[:limit], columns=cols)

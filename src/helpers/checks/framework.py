"""What a check is, what it returns, and the registry pipelines add their domain checks to.

A :class:`Check` guards one pipeline. It has an id (unique across the workbook: alerts are
deduplicated by check id and partition), a severity, the failure-catalogue id it detects where it
has one (``helpers.core.catalogue``), the runbook it points to, and whether it is *blocking* (a failure stops the
pipeline's run). Its function takes a :class:`CheckContext` and returns an :class:`Outcome`;
:func:`evaluate` turns that into a :class:`CheckResult`, and a check that raises becomes an
``error`` result instead of crashing the caller.

This module is pure: storing results and opening alerts live in ``checks.store`` and ``alerts``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

from helpers.core.catalogue import FAMILY, runbook_path

Severity = Literal["warning", "critical"]
Status = Literal["pass", "fail", "error"]
SEVERITIES: tuple[str, ...] = ("warning", "critical")
CURRENT = "current"  # the partition of checks about "now" rather than one partition (the monitors')


@dataclass(frozen=True)
class Outcome:
    """What a check function returns. ``severity`` overrides the check's own (freshness: 18 h is a
    warning, 24 h critical); ``evidence`` holds numbers and sample rows, JSON-able."""

    passed: bool
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity | None = None


def ok(summary: str, **evidence: Any) -> Outcome:
    """A passing outcome."""
    return Outcome(True, summary, evidence)


def fail(summary: str, *, severity: Severity | None = None, **evidence: Any) -> Outcome:
    """A failing outcome (``severity`` overrides the check's own)."""
    return Outcome(False, summary, evidence, severity)


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at: the pipeline, partition, ``as_of``, run id and the run's data."""

    pipeline: str
    partition: str
    as_of: dt.datetime
    run_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


CheckFn = Callable[[CheckContext], Outcome]


@dataclass(frozen=True)
class Check:
    """A named rule guarding one pipeline (see the module doc)."""

    id: str
    pipeline: str
    fn: CheckFn
    severity: Severity = "warning"
    catalogue_id: str | None = None
    runbook: str | None = None
    blocking: bool = False
    kind: str = "domain"
    description: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"check {self.id}: severity must be warning or critical, got {self.severity!r}")
        if self.runbook is None:
            object.__setattr__(self, "runbook", runbook_path(self.catalogue_id, fallback=self.kind))
        elif self.catalogue_id is not None and self.catalogue_id not in FAMILY:
            runbook_path(self.catalogue_id)  # raises with the list of ids


@dataclass(frozen=True)
class CheckResult:
    """One evaluation of one check for one partition, as stored in ``check_results``."""

    check_id: str
    pipeline: str
    partition: str
    status: Status
    severity: Severity
    summary: str
    evidence: Mapping[str, Any]
    as_of: dt.datetime
    evaluated_at: dt.datetime
    run_id: str | None = None
    catalogue_id: str | None = None
    runbook: str | None = None
    blocking: bool = False
    kind: str = "domain"

    @property
    def failed(self) -> bool:
        return self.status != "pass"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["evidence"] = json_safe(self.evidence)
        for k in ("as_of", "evaluated_at"):
            out[k] = out[k].isoformat()
        return out


def evaluate(check: Check, ctx: CheckContext, *, evaluated_at: dt.datetime | None = None) -> CheckResult:
    """Run one check; an exception becomes an ``error`` result carrying the traceback's tail."""
    try:
        outcome = check.fn(ctx)
        if not isinstance(outcome, Outcome):
            raise TypeError(f"check {check.id} returned {type(outcome).__name__}, expected checks.Outcome")
        status: Status = "pass" if outcome.passed else "fail"
        summary, evidence = outcome.summary, dict(outcome.evidence)
        severity = outcome.severity or check.severity
    except Exception as e:
        status, severity = "error", check.severity
        summary = f"check raised {type(e).__name__}: {e}"
        evidence = {"traceback": traceback.format_exc(limit=6).splitlines()[-12:]}
    return CheckResult(
        check_id=check.id,
        pipeline=check.pipeline,
        partition=ctx.partition,
        status=status,
        severity=severity,
        summary=summary,
        evidence=json_safe(evidence),
        as_of=ctx.as_of,
        evaluated_at=evaluated_at or ctx.as_of,
        run_id=ctx.run_id,
        catalogue_id=check.catalogue_id,
        runbook=check.runbook,
        blocking=check.blocking,
        kind=check.kind,
    )


def json_safe(value: Any) -> Any:
    """Evidence as plain JSON types (numpy/pandas scalars, dates, Decimals, NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        if value != value:  # pandas NA/NaT
            return None
    except (TypeError, ValueError):
        return None
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------- registry

_REGISTRY: dict[str, Check] = {}


def register(check: Check) -> Check:
    """Add (or replace: re-running a notebook cell must not duplicate) a check by its id."""
    _REGISTRY[check.id] = check
    return check


def check(
    id: str,
    *,
    pipeline: str,
    severity: Severity = "warning",
    catalogue_id: str | None = None,
    runbook: str | None = None,
    blocking: bool = False,
    description: str = "",
) -> Callable[[CheckFn], CheckFn]:
    """Decorator form of :func:`register` for a helpers module's domain checks::

    @check("profit_aggregate.profit_sign", pipeline="profit_aggregate", severity="critical",
           catalogue_id="math_errors")
    def profit_sign(ctx): ...
    """

    def deco(fn: CheckFn) -> CheckFn:
        register(
            Check(
                id=id,
                pipeline=pipeline,
                fn=fn,
                severity=severity,
                catalogue_id=catalogue_id,
                runbook=runbook,
                blocking=blocking,
                description=description or next(iter((fn.__doc__ or "").strip().splitlines()), ""),
            )
        )
        return fn

    return deco


def registered(pipeline: str | None = None) -> list[Check]:
    """The registered checks (of ``pipeline``), by id."""
    return sorted((c for c in _REGISTRY.values() if pipeline in (None, c.pipeline)), key=lambda c: c.id)


def unregister(check_id: str) -> None:
    """Remove a check from the registry (tests, notebooks being edited)."""
    _REGISTRY.pop(check_id, None)

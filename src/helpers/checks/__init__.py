"""Data checks: the API a pipeline notebook calls, and the monitors the scheduler evaluates.

A pipeline registers its domain checks (in its family's ``checks`` module, e.g.
``helpers.profit.checks``, with :func:`check` or :func:`register`) and runs them right after the
step they guard, in one call::

    from helpers import checks
    results = checks.run_checks("profit_aggregate", period, run_id=run_id, as_of=parse_as_of(as_of),
                                context={"profit": frame})

``run_checks`` evaluates the pipeline's registered checks plus the built-in row-count and NULL
checks of the partition it just wrote, stores every result in ``check_results`` with the run id,
opens/updates/resolves alerts, and returns the results. It raises :class:`BlockingCheckFailed` only
when a *blocking* check fails or errors; any other failure is recorded and the run goes on.

``evaluate_monitors`` runs the plan's automatic alerts (``checks.monitors``) the same way, outside
any run: ``workbook checks`` and every scheduler tick call it.

Modules: ``framework`` (what a check is, its result, the registry), ``monitors`` (the plan's
automatic alerts; their pure rules in ``rules``, what they read in ``snapshot``) and ``store``
(the ``check_results`` table).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Engine

from helpers.checks import monitors, store
from helpers.checks.framework import (
    CURRENT,
    Check,
    CheckContext,
    CheckResult,
    Outcome,
    Severity,
    check,
    evaluate,
    fail,
    ok,
    register,
    registered,
    unregister,
)
from helpers.core import config as cfgmod
from helpers.core.catalogue import runbook_path
from helpers.core.timeutil import as_utc
from helpers.oncall import alerts as alertsmod

__all__ = [
    "BlockingCheckFailed",
    "Check",
    "CheckContext",
    "CheckResult",
    "Outcome",
    "Severity",
    "check",
    "evaluate",
    "evaluate_monitors",
    "fail",
    "ok",
    "register",
    "registered",
    "run_checks",
    "runbook_path",
    "unregister",
]


class BlockingCheckFailed(RuntimeError):
    """A blocking check failed (or raised): the run must stop. Carries every result."""

    def __init__(self, failed: Sequence[CheckResult], results: Sequence[CheckResult]):
        self.failed = list(failed)
        self.results = list(results)
        names = "; ".join(f"{r.check_id}: {r.summary}" for r in failed)
        super().__init__(f"blocking check(s) failed: {names}")


def run_checks(
    pipeline: str,
    partition: str,
    *,
    as_of: dt.datetime,
    run_id: str | None = None,
    context: Mapping[str, Any] | None = None,
    checks: Sequence[Check] | None = None,
    builtin: bool = True,
    now: dt.datetime | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
) -> list[CheckResult]:
    """Evaluate, record and alert a pipeline's checks for one partition (see the module doc).

    ``checks`` defaults to the checks registered for ``pipeline``; ``context`` is handed to each
    check as ``ctx.data`` (the frames the notebook just built). ``builtin`` adds the row-count and
    NULL checks of the partition's marts. ``now`` (default ``as_of``) is stored as
    ``evaluated_at``: notebooks only know their ``as_of``.
    """
    config = config or cfgmod.get()
    as_of = as_utc(as_of)
    ctx = CheckContext(pipeline, partition, as_of, run_id, dict(context or {}))
    chosen = list(checks) if checks is not None else registered(pipeline)
    results = [evaluate(c, ctx, evaluated_at=now or as_of) for c in chosen]
    if builtin:
        results += [
            replace(r, run_id=run_id)
            for r in monitors.partition_checks(
                pipeline, partition, as_of=as_of, config=config, now=now, engine=engine
            )
        ]
    store.record_results(results, engine=engine)
    alertsmod.sync(results, config=config, engine=engine)
    blocking = [r for r in results if r.blocking and r.failed]
    if blocking:
        raise BlockingCheckFailed(blocking, results)
    return results


def evaluate_monitors(
    as_of: dt.datetime,
    *,
    pipelines: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
) -> tuple[list[CheckResult], list[alertsmod.AlertChange]]:
    """Evaluate the monitors at ``as_of``, store the results and sync the alerts."""
    config = config or cfgmod.get()
    results = monitors.evaluate_monitors(as_of, pipelines=pipelines, config=config, now=now, engine=engine)
    store.record_results(results, engine=engine)
    changes = alertsmod.sync(results, config=config, engine=engine)
    changes += alertsmod.resolve_absent(
        {r.pipeline for r in results},
        {r.check_id for r in results if r.partition == CURRENT},
        as_of=as_of,
        partition=CURRENT,
        engine=engine,
    )
    return results, changes

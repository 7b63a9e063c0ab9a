"""What every scheduler tick does after its runs: evaluate, diagnose, escalate.

``runs.scheduler.tick`` calls the hooks it is given; the scheduler (``workbook scheduler``) and the
fault drills hand it :func:`scheduler_hooks`. They live here, above the packages they call, so the
scheduler itself depends on none of them.
"""

from __future__ import annotations

import functools

from helpers import checks
from helpers.investor import signoff  # noqa: F401  (its publish listener voids sign-offs a run changes)
from helpers.oncall import escalation
from helpers.runbooks import registry
from helpers.runs.scheduler import TickHook


def scheduler_hooks() -> tuple[TickHook, ...]:
    """The tick's hooks in order: evaluate the monitors (storing results, syncing alerts), diagnose
    the new alerts with their runbooks, then escalate: the diagnosis runs first so that the first
    page carries it."""
    return (
        checks.evaluate_monitors,
        registry.diagnose_new_alerts,
        functools.partial(escalation.scheduler_hook, annotate=registry.notification_lines),
    )

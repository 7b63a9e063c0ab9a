"""The scheduler's wiring: the hooks every tick calls after its runs, in order."""

from __future__ import annotations

import pytest

from helpers import checks
from helpers.oncall import escalation
from helpers.runbooks import registry, tick

pytestmark = pytest.mark.unit


def test_every_tick_evaluates_then_diagnoses_then_escalates():
    hooks = [getattr(h, "func", h) for h in tick.scheduler_hooks()]
    assert hooks == [checks.evaluate_monitors, registry.diagnose_new_alerts, escalation.scheduler_hook]


def test_escalation_pages_carry_the_runbook_diagnosis():
    *_, escalate = tick.scheduler_hooks()
    assert escalate.keywords == {"annotate": registry.notification_lines}

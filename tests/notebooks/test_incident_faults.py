"""Three independent faults at once: three incidents, each routed to its owner, each diagnosed.

A 40-account demo company (with product events) carries a Profit, a Growth and an Engagement fault
from the failure catalogue; the pipelines run, then one scheduler tick evaluates the monitors,
groups the alerts, diagnoses each new incident with its runbook and pages.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from helpers.core import config as cfgmod
from helpers.demo import drill
from helpers.demo.drill_specs import RUN_AT, TICK_AT
from helpers.demo.generate import generate
from helpers.demo.spec import DemoSpec, FaultSpec
from helpers.oncall import incidents, routing
from helpers.oncall import schedule as oncall
from helpers.oncall.timeline import timeline
from helpers.runbooks import registry
from helpers.runbooks.kit import as_of_clock
from helpers.runbooks.tick import scheduler_hooks
from helpers.runs import scheduler

pytestmark = pytest.mark.notebooks
FAULTS = {  # catalogue id -> (fault, the pipeline that detects it)
    "missing_subscription_data": ("missing_subscription_data@2026-09-12", "profit_aggregate"),
    "late_account_updates": ("late_account_updates@2026-09-15", "growth_aggregate"),
    "duplicate_events": ("duplicate_events@2026-09-29", "engagement_aggregate"),
}
RUNS = (
    ("profit_aggregate", "2026-09-30"),
    ("profit_unit", "2026-09-30"),
    ("growth_aggregate", "2026-09-30"),
    ("engagement_aggregate", "2026-09-29"),
)


def test_three_independent_faults_are_three_incidents_each_routed_and_diagnosed(tmp_path: Path):
    home = tmp_path / "company"
    with drill.sandbox(home):
        spec = DemoSpec(accounts=40, months=3, seed=7, end=dt.date(2026, 10, 1), events_per_user_day=0.4,
                        faults=tuple(FaultSpec.parse(f) for f, _p in FAULTS.values()))  # fmt: skip
        generate(spec, home / "data" / "landing", events=True, force=True)
        assert [o.status for o in drill._run(RUNS, RUN_AT)] == ["succeeded"] * len(RUNS)
        result = scheduler.tick(TICK_AT, clock=as_of_clock(TICK_AT), pipelines=[p for p, _ in RUNS],
                                hooks=scheduler_hooks())  # fmt: skip
        assert not result.hook_errors, result.hook_errors

        found = incidents.list_incidents()
        assert len(found) == len(FAULTS), [(i.incident_id, i.cause_key) for i in found]
        schedule = oncall.schedule_for(cfgmod.get())
        diagnoses = {r.alert_id: r for r in registry.list_runs()}
        for catalogue_id, (_fault, pipeline) in FAULTS.items():
            inc = next(i for i in found if i.catalogue_id == catalogue_id)
            assert inc.pipeline == pipeline and inc.status == "open"
            # routed to whoever the plan says for that pipeline at that moment, and only them first
            expected = {r.key for r in routing.route(schedule, pipeline, inc.opened_at).recipients}
            first = {e.who for e in timeline(inc.alert_id) if e.step == "notify"}
            assert first == expected, (catalogue_id, first, expected)
            # its own runbook, run on its lead alert, names its cause
            run = diagnoses[int(inc.alert_id)]
            assert run.runbook.endswith(catalogue_id) and run.cause == catalogue_id, run.diagnosis
            assert "no likely cause" not in run.diagnosis

"""`workbook tick`: the scheduler's hooks in order at --as-of; a failing step exits 1, the rest still run."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from helpers.cli.main import main
from helpers.oncall.alerts import AlertChange
from helpers.runbooks import tick

pytestmark = pytest.mark.unit


def test_tick_calls_the_scheduler_hooks_in_order_and_summarises(home, monkeypatch, capsys):
    calls: list[tuple[str, dt.datetime]] = []

    def monitors(*, as_of, now, pipelines, config):
        calls.append(("monitors", as_of))
        failing = SimpleNamespace(failed=True, severity="critical")
        changes = [
            AlertChange(10, "opened", "a.freshness", "2026-11", "critical"),
            AlertChange(9, "opened", "b.freshness", "2026-11", "critical"),
            AlertChange(3, "resolved", "c.freshness", "2026-11", "warning"),
        ]
        return [failing, SimpleNamespace(failed=False, severity="warning")], changes

    def broken(**kwargs):
        calls.append(("broken", kwargs["as_of"]))
        raise RuntimeError("runbook store down")

    def diagnose(*, as_of, now, pipelines, config):
        calls.append(("diagnose", as_of))
        return [
            SimpleNamespace(alert_id=9, runbook="profit/stale_data", status="succeeded", cause="source late")
        ]

    monkeypatch.setattr(tick, "scheduler_hooks", lambda: (monitors, broken, diagnose))
    assert main(["tick", "--as-of", "2026-11-05T12:00:00Z", "--json"]) == 1  # a step failed
    captured = capsys.readouterr()
    at = dt.datetime(2026, 11, 5, 12, tzinfo=dt.UTC)
    assert calls == [("monitors", at), ("broken", at), ("diagnose", at)]  # the others still ran
    out = json.loads(captured.out)
    assert out["exit_code"] == 1 and out["checks"] == {"evaluated": 2, "failing": 1, "critical": 1}
    assert out["alerts"]["opened"] == [9, 10] and out["alerts"]["resolved"] == [3]
    assert out["diagnoses"] == [
        {"alert_id": 9, "runbook": "profit/stale_data", "status": "succeeded", "cause": "source late"}
    ]
    assert [s["ok"] for s in out["steps"]] == [True, False, True]
    assert "broken failed: RuntimeError: runbook store down" in captured.err

    assert main(["tick", "--as-of", "2026-11-05T12:00:00Z"]) == 1
    text = capsys.readouterr().out
    assert "tick at 2026-11-05 12:00Z" in text and "2 opened" in text and "(opened: 9, 10)" in text
    assert "alert 9: profit/stale_data: source late" in text


def test_tick_quiet_and_ok(home, monkeypatch, capsys):
    monkeypatch.setattr(tick, "scheduler_hooks", lambda: (lambda **kw: None,))
    assert main(["tick", "-q", "--as-of", "2026-11-05T12:00:00Z"]) == 0
    assert capsys.readouterr().out == ""


def test_the_tick_is_the_scheduler_hooks():
    from helpers import checks
    from helpers.runbooks import registry
    from helpers.runs.scheduler import hook_name

    names = [hook_name(h) for h in tick.scheduler_hooks()]
    assert names[0] == hook_name(checks.evaluate_monitors)
    assert hook_name(registry.diagnose_new_alerts) in names

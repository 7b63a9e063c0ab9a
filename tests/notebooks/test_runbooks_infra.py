"""Runbooks end to end: alerts arrive diagnosed, `workbook runbook` diagnoses and fixes, defaults run clean.

Real monitors open real alerts at explicit ``as_of`` values; the scheduler's tick runs the
"alerts arrive diagnosed" hook, which executes each alert's runbook through the runner.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import demo_landing, home_with_demo, workbook
from helpers import checks
from helpers.cli import main as cli
from helpers.core import catalogue
from helpers.core import config as cfgmod
from helpers.oncall import alerts, escalation
from helpers.runbooks import kit, tick
from helpers.runbooks import registry as runbooks
from helpers.runs import records as runs
from helpers.runs import runner, scheduler
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.notebooks
UTC = dt.UTC
H = dt.timedelta(hours=1)
AS_OF = dt.datetime(2026, 11, 18, 12, tzinfo=UTC)  # a Wednesday, mid-month: no close deadline near


def _land(source: str, cfg: cfgmod.WorkbookConfig, *, stop_days_before: int = 0) -> None:
    """Deliveries on the source's declared cadence: daily (the next day 02:00) for two weeks up to
    ``stop_days_before`` days before AS_OF's day, or monthly (before each month's due time)."""
    spec = cfg.pipelines.sources.get(source)
    frame = pd.DataFrame({"k": [1, 2]})
    if spec is not None and spec.cadence == "monthly":
        for month in (8, 9, 10):
            first = dt.date(2026, month, 1)
            last = dt.date(2026, month + 1, 1) - dt.timedelta(days=1)
            due = dt.datetime.combine(last, dt.time(), UTC) + dt.timedelta(days=spec.due_days_after_period)
            landing.write_delivery(source, first, frame, arrived_at=due - 4 * H, durable=False)
        return
    for k in range(14, stop_days_before, -1):
        day = AS_OF.date() - dt.timedelta(days=k)
        arrived = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(2), UTC)
        landing.write_delivery(source, day, frame, arrived_at=arrived, durable=False)


def _chain(day: dt.date, rows: int, written_at: dt.datetime) -> None:
    frame = pd.DataFrame({"run_date": day.isoformat(), "k": range(rows), "amount_cents": range(1, rows + 1)})
    warehouse.replace_partition("chain_table", frame, {"run_date": day.isoformat()}, written_at=written_at)


def _succeeded(pipeline: str, label: str, *, as_of: dt.datetime) -> None:
    run_id = runs.start_run(pipeline, label, now=as_of, as_of=as_of, parameters={}, code_version=None)
    runs.finish_run(run_id, status="succeeded", now=as_of)


def _family(pipeline: str, family: str) -> None:
    """Give a test pipeline another family in the test config (so its alerts take other runbooks)."""
    path = Path(os.environ["WORKBOOK_CONFIG_DIR"]) / "pipelines.yml"
    data = yaml.safe_load(path.read_text())
    data["pipelines"][pipeline]["family"] = family
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfgmod._cached.cache_clear()


def test_new_alerts_arrive_diagnosed_with_evidence_and_a_link(home):
    # t_down as a report: no catalogue entry for its row counts, so the generic runbook runs
    _family("t_down", "report")
    cfg = cfgmod.get()
    profit = cfg.pipelines.get("profit_aggregate")
    # 1. a stale landing source (its daily deliveries stopped four days ago) -> stale_data
    daily = [
        s
        for s in profit.sources
        if s not in cfg.pipelines.sources or cfg.pipelines.sources[s].cadence == "daily"
    ]
    stale = next(s for s in daily if catalogue.SOURCE.get(s, "stale_data") == "stale_data")
    for source in profit.sources:
        _land(source, cfg, stop_days_before=4 if source == stale else 0)
    # 2. a NULL in a critical column of Profit's mart -> math_errors
    columns = profit.critical_columns["profit_monthly"]
    frame = pd.DataFrame({"period": "2026-10", **{c: [100, 200, 300] for c in columns}})
    frame.loc[1, columns[-1]] = None
    warehouse.replace_partition("profit_monthly", frame, {"period": "2026-10"}, written_at=AS_OF - 2 * H)
    _succeeded("profit_aggregate", "2026-10", as_of=dt.datetime(2026, 11, 1, tzinfo=UTC))  # the close is met
    # 3. a row-count drop (30 rows vs 40 on the previous Sundays), built while its upstream never ran
    last = dt.date(2026, 11, 15)
    for k in range(35, 0, -1):
        day = last - dt.timedelta(days=k)
        _chain(
            day,
            40 if day.weekday() >= 5 else 100,
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(6), UTC),
        )
    _chain(last, 30, AS_OF - H)
    _succeeded("smoke", "2026-11-17", as_of=AS_OF - H)  # the upstream is fresh, but never ran for the 15th

    hooks = (checks.evaluate_monitors, runbooks.diagnose_new_alerts)
    production = [getattr(h, "func", h) for h in tick.scheduler_hooks()]
    assert production.index(hooks[1]) < production.index(escalation.scheduler_hook)
    scheduler.tick(AS_OF, clock=lambda: AS_OF, pipelines=["profit_aggregate", "t_down"], hooks=hooks)

    opened = {a.check_id: a for a in alerts.list_alerts(open_only=True)}
    expected = {
        f"profit_aggregate.source_freshness.{stale}": ("profit/stale_data", "stale_data", stale),
        "profit_aggregate.nulls.profit_monthly": ("profit/math_errors", "math_errors", columns[-1]),
        "t_down.row_count.chain_table": ("row_count_anomaly", "upstream_missing", "smoke 2026-11-15"),
    }
    assert set(expected) <= set(opened), {k: a.summary for k, a in opened.items()}
    found = runbooks.latest_diagnoses([a.alert_id for a in opened.values()])
    assert set(found) == {a.alert_id for a in opened.values()}  # every new alert was diagnosed
    for check_id, (book, cause, named) in expected.items():
        alert = opened[check_id]
        run = found[alert.alert_id]
        assert (run.runbook, run.status, run.trigger, run.mode) == (book, "succeeded", "hook", "diagnose")
        assert run.cause == cause, run.diagnosis
        assert named in run.diagnosis and run.diagnosis.startswith(cause), run.diagnosis
        assert run.evidence["symptom"] and run.evidence["context"]["alert_id"] == alert.alert_id
        assert run.archive.parent == warehouse.paths.runs_dir() / "incidents" / str(alert.alert_id)
        assert run.html.is_file() and run.diagnosis.split(" - ")[0] in run.html.read_text()
        lines = runbooks.notification_lines(alert.alert_id)
        assert lines[0] == f"diagnosis: {run.diagnosis}" and run.html.resolve().as_uri() in lines[1]
    assert found[opened["t_down.row_count.chain_table"].alert_id].requested is None  # generic by design
    # the next tick diagnoses nothing twice
    assert runbooks.diagnose_new_alerts(as_of=AS_OF + H, now=AS_OF + H, config=cfg) == []
    assert len(runbooks.list_runs()) == len(opened)


def test_cli_runbook_diagnoses_then_applies_the_fix_and_verifies(home, capsys):
    day, as_of = "2026-11-08", dt.datetime(2026, 11, 9, 6, tzinfo=UTC)
    runner.run_pipeline("smoke", day, clock=kit.as_of_clock(as_of), as_of=as_of, params={"rows": 4})
    bad = runner.run_pipeline(
        "t_down", day, clock=kit.as_of_clock(as_of), as_of=as_of, params={"null_amounts": True}
    )
    assert bad.status == "succeeded"
    [alert] = [a for a in alerts.list_alerts(open_only=True) if a.check_id == "t_down.nulls.chain_table"]

    proc = workbook("runbook", "--alert", str(alert.alert_id), "--as-of", (as_of + H).isoformat(), "--json")
    assert proc.returncode == 0, proc.stderr
    diagnosed = json.loads(proc.stdout)
    assert (diagnosed["runbook"], diagnosed["mode"], diagnosed["cause"]) == (
        "null_critical_columns",
        "diagnose",
        "null_critical_columns",  # Growth has no catalogue id for NULLs; upstream and schema are fine
    )
    assert "amount_cents" in diagnosed["diagnosis"] and "made inside the pipeline" in diagnosed["diagnosis"]
    assert Path(diagnosed["archive"]).parent == home / "runs" / "incidents" / str(alert.alert_id)
    assert [f["applied"] for f in diagnosed["fixes"]] == [False]
    assert diagnosed["verification"]["passed"] is False and not diagnosed["verification"]["recorded"]
    assert alerts.get_alert(alert.alert_id).status == "open"  # diagnosing changed nothing

    fixed = workbook(
        "runbook", "null_critical_columns", "--alert", str(alert.alert_id), "--apply-fix",
        "--as-of", (as_of + 2 * H).isoformat(), "--json",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    result = json.loads(fixed.stdout)
    assert result["mode"] == "fix" and [f["applied"] for f in result["fixes"]] == [True]
    assert [(o["pipeline"], o["partition"], o["status"]) for o in result["fixes"][0]["result"]] == [
        ("t_down", day, "succeeded")
    ]
    assert result["verification"] == {
        "passed": True,
        "source": "monitor",
        "recorded": True,
        "results": [result["verification"]["results"][0]],
    }
    assert alerts.get_alert(alert.alert_id).status == "resolved"
    assert warehouse.read_table("chain_table")["amount_cents"].notna().all()

    # the listing verbs, in process (the two runs above went through the real console script)
    assert cli.main(["diagnoses", "--alert", str(alert.alert_id)]) == 0
    listed = capsys.readouterr().out
    assert "null_critical_columns" in listed and "fix" in listed and "made inside" in listed
    assert cli.main(["runbook", "--list", "--json"]) == 0
    books = json.loads(capsys.readouterr().out)
    missing = {b["runbook"] for b in books if not b["exists"]}
    assert "notebooks/runbooks/profit/stale_data.ipynb" not in missing
    assert missing == set()  # every runbook a check points at is written
    assert cli.main(["runbook", "nope"]) == 2
    assert cli.main(["runbook", "backfill", "-p", "colour=blue"]) == 2
    assert "no parameter(s) colour" in capsys.readouterr().err


def test_generic_runbooks_say_no_problem_found_with_their_default_parameters(home, tmp_path_factory):
    home_with_demo(home, demo_landing(tmp_path_factory, accounts=60, months=3, seed=7))

    def run(book: runbooks.Runbook) -> runner.ExecutionResult:
        archive = home / "runs" / "defaults" / book.name.replace("/", ".")
        # the defaults at a fixed as_of: an empty as_of means now, and tests never depend on today
        at = {"as_of": "2026-11-01T06:00:00+00:00"}
        return runner.execute_notebook(book.path, archive, at, clock=lambda: AS_OF, timeout_s=300)

    books = [runbooks.Runbook(name) for name in runbooks.GENERIC_RUNBOOKS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip([b.name for b in books], pool.map(run, books), strict=True))
    for name, result in results.items():
        assert result.status == "succeeded", (name, result.error)
        assert result.scrap("cause") == kit.NO_PROBLEM, (name, result.scrap("diagnosis"))
        assert result.scrap("diagnosis").startswith("no problem found: "), name
        assert result.scrap("evidence")["symptom"], name
        assert [f["applied"] for f in result.scrap("fixes")] in ([False], []), name


@pytest.mark.integration
def test_diagnosis_claims_are_exclusive_on_each_backend(warehouse_url):
    from helpers.checks.framework import CheckResult

    failing = CheckResult("smoke.x", "smoke", "2026-11-08", "fail", "warning", "bad", {}, AS_OF, AS_OF)
    [change] = alerts.sync([failing])
    engine = runbooks._engine()
    assert [a.alert_id for a in runbooks.undiagnosed(AS_OF)] == [change.alert_id]
    assert runbooks._claim(change.alert_id, AS_OF, AS_OF, engine) is not None
    assert runbooks._claim(change.alert_id, AS_OF, AS_OF, engine) is None  # a second scheduler backs off
    assert runbooks.undiagnosed(AS_OF) == [] and runbooks.latest_diagnoses([change.alert_id]) == {}

"""Fault drills: ``workbook drill --all`` passes every catalogue id; the grading can fail.

The full run goes through the real console script once (a subprocess: each drill builds its own
sandbox, runs notebooks, ticks the scheduler and applies a runbook's fix). The grading functions
are tested on hand-made figures, and a drill whose runbook is missing must be reported failed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pandas as pd
import pytest

from conftest import workbook
from helpers.core import catalogue
from helpers.demo import drill
from helpers.demo.spec import FaultSpec


def catalogue_ids() -> list[str]:
    """The failure catalogue's ids, from the product's own catalogue module."""
    return [e.id for e in catalogue.ENTRIES]


# ---------------------------------------------------------------- specs (fast)


@pytest.mark.unit
def test_one_spec_per_catalogue_id_with_a_parseable_fault_of_that_id():
    ids = catalogue_ids()
    assert len(ids) == 16 and set(drill.SPECS) == set(ids)
    for spec in drill.SPECS.values():
        fault = FaultSpec.parse(spec.fault)
        assert fault.id == spec.id and fault.date is not None, spec.id  # never "the last month" of today
        family = catalogue.entry(spec.id).family
        assert spec.family == family, spec.id
        assert spec.runs and all(p.startswith(family) for p, _ in spec.runs), spec.id
        assert spec.as_of < spec.tick_at < spec.fix_at and spec.as_of.tzinfo is not None, spec.id
        assert spec.figures and all(f.columns for f in spec.figures), spec.id
        assert spec.shape.events == (family == "engagement"), spec.id


@pytest.mark.unit
def test_compare_figures_passes_equal_figures_and_fails_differences_lost_rows_and_no_baseline():
    f = drill.Figure("t", {"period": "2026-09"}, ("amount",), ("k",))
    name = "t[period=2026-09]"
    clean = {name: pd.DataFrame({"k": [1, 2, 3], "amount": [100, 200, 300]})}
    same = {name: pd.DataFrame({"k": [3, 2, 1], "amount": [300, 200, 100]})}
    diffs, lost, ok = drill.compare_figures(clean, same, [f], 0.0)
    assert ok and lost == 0 and diffs[0]["clean"] == diffs[0]["repaired"] == 600

    off = {name: pd.DataFrame({"k": [1, 2, 3], "amount": [100, 200, 306]})}
    assert drill.compare_figures(clean, off, [f], 0.0)[2] is False
    assert drill.compare_figures(clean, off, [f], 0.01)[2] is True  # 1 % of 600 allowed

    short = {name: pd.DataFrame({"k": [1, 2], "amount": [100, 500]})}  # same total, one row gone
    diffs, lost, ok = drill.compare_figures(clean, short, [f], 0.0)
    assert ok and lost == 1

    merged = drill.Figure("t", {"period": "2026-09"}, ("amount",), ("k",), "members")
    into = {name: pd.DataFrame({"k": [1, 3], "members": ["1;2", "3"], "amount": [300, 300]})}
    assert drill.compare_figures(clean, into, [merged], 0.0)[1:] == (0, True)  # merged, not lost
    assert drill.compare_figures(clean, into, [f], 0.0)[1:] == (1, True)

    assert drill.compare_figures({}, same, [f], 1.0)[2] is False  # an empty baseline never passes
    assert drill.compare_figures(clean, {}, [f], 1.0)[1:] == (3, False)


@pytest.mark.unit
def test_routing_grade_needs_every_scheduled_responder_no_earlier_than_the_schedule_says():
    at = dt.datetime(2026, 10, 1, 17, tzinfo=dt.UTC)

    def sent(who: str, when: dt.datetime, status: str = "sent") -> dict:
        return {"recipient": who, "channel": "warehouse", "at": when.isoformat(), "status": status}

    assert drill.grade_routing([sent("DE3", at)], ["DE3"], at)
    assert not drill.grade_routing([sent("DE1", at)], ["DE3"], at)  # the wrong engineer
    assert not drill.grade_routing([sent("DE3", at)], ["DE3", "DE4"], at)  # a responder missing
    assert not drill.grade_routing([sent("DE3", at, "failed")], ["DE3"], at)
    assert not drill.grade_routing(
        [sent("DE3", at - dt.timedelta(hours=2))], ["DE3"], at
    )  # before business hours
    assert not drill.grade_routing([], ["DE3"], at) and not drill.grade_routing([sent("DE3", at)], [], at)


@pytest.mark.unit
def test_a_result_passes_only_when_every_part_passes():
    ok = drill.DrillResult(
        "stale_data", "profit", "stale_data@2026-09-24",
        drill.Detected(["c"], 1, "c", True),
        drill.Routed([], ["DE3"], None, "", True),
        drill.Diagnosed("profit/stale_data", "stale_data", "stale_data: ...", None, True),
        drill.Repaired("succeeded", {"passed": True}, [], True),
        0, 1.0,
    )  # fmt: skip
    assert ok.passed and ok.row()["result"] == "PASS"
    for part, bad in (
        ("detected", drill.Detected([], None, None, False)),
        ("routed", dataclasses.replace(ok.routed, ok=False)),
        ("diagnosed", drill.Diagnosed("backfill", "job_failure", "...", "profit/x", False)),
        ("repaired", dataclasses.replace(ok.repaired, ok=False)),
        ("rows_lost", 2),
        ("error", "RuntimeError: boom"),
    ):
        failed = dataclasses.replace(ok, **{part: bad})
        assert not failed.passed and failed.row()["result"] == "FAIL", part
        assert json.loads(json.dumps(failed.as_json(), default=str))["passed"] is False


@pytest.mark.unit
def test_cli_refuses_an_unknown_drill_and_a_missing_argument():
    assert workbook("drill", "no_such_fault").returncode == 2
    assert workbook("drill").returncode == 2


# ---------------------------------------------------------------- real drills (slow)


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.timeout(3600)
def test_drill_all_passes_all_sixteen_and_reports_every_field(tmp_path):
    proc = workbook("drill", "--all", "--json", "--workdir", str(tmp_path), timeout=3600)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    results = {r["id"]: r for r in json.loads(proc.stdout)}
    assert set(results) == set(catalogue_ids())
    progress = [line for line in proc.stderr.splitlines() if line.startswith("drill ")]
    assert len(progress) == 16  # one progress line per drill
    failed = {
        i: (r["error"], r["diagnosed"], r["repaired"]["diffs"]) for i, r in results.items() if not r["passed"]
    }
    assert not failed, json.dumps(failed, default=str, indent=1)[:6000]
    for i, r in results.items():
        assert r["detected"]["check_id"] and r["detected"]["alert_id"], i
        assert r["routed"]["notifications"] and set(r["routed"]["expected"]) <= {
            n["recipient"] for n in r["routed"]["notifications"]
        }, i
        assert r["diagnosed"]["cause"] == i and r["diagnosed"]["diagnosis"], i
        assert r["repaired"]["diffs"] and all(d["ok"] for d in r["repaired"]["diffs"]), i
        assert r["repaired"]["verification"]["passed"] is True, i
        assert r["rows_lost"] == 0 and r["seconds"] > 0, i
    assert proc.returncode == 0

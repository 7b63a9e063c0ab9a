"""The checks framework, the notebook-facing ``run_checks`` call, and the alert life cycle."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from helpers import checks
from helpers.checks import store
from helpers.checks.framework import CheckResult, json_safe
from helpers.core import catalogue
from helpers.oncall import alerts
from helpers.storage import warehouse

pytestmark = pytest.mark.unit


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


AS_OF = utc("2026-11-10T07:00:00")  # a Tuesday, outside the month-end window


@pytest.fixture
def clean_registry():
    before = {c.id for c in checks.registered()}
    yield
    for c in checks.registered():
        if c.id not in before:
            checks.unregister(c.id)


def test_check_metadata_runbook_and_catalogue():
    c = checks.Check(id="x.sign", pipeline="x", fn=lambda ctx: checks.ok("fine"), catalogue_id="math_errors")
    assert c.runbook == "notebooks/runbooks/profit/math_errors.ipynb"
    assert checks.runbook_path("kafka_outage") == "notebooks/runbooks/engagement/kafka_outage.ipynb"
    assert (
        checks.runbook_path("late_account_updates") == "notebooks/runbooks/growth/late_account_updates.ipynb"
    )
    assert set(catalogue.FAMILY) >= {"stale_data", "skipped_stage", "schema_change"}
    with pytest.raises(ValueError, match="unknown failure-catalogue id 'nope'"):
        checks.Check(id="x.y", pipeline="x", fn=lambda ctx: checks.ok(""), catalogue_id="nope")
    with pytest.raises(ValueError, match="severity"):
        checks.Check(id="x.y", pipeline="x", fn=lambda ctx: checks.ok(""), severity="fatal")  # type: ignore[arg-type]


def test_a_check_that_raises_is_an_error_result_not_a_crash():
    def broken(ctx: checks.CheckContext) -> checks.Outcome:
        return ctx.data["missing"]

    c = checks.Check(id="x.broken", pipeline="x", fn=broken, severity="critical")
    result = checks.evaluate(c, checks.CheckContext("x", "2026-11-09", AS_OF))
    assert result.status == "error" and result.failed
    assert "KeyError" in result.summary and result.evidence["traceback"]
    wrong_type = checks.Check(id="x.wrong", pipeline="x", fn=lambda ctx: True)  # type: ignore[arg-type,return-value]
    assert checks.evaluate(wrong_type, checks.CheckContext("x", "p", AS_OF)).status == "error"


def test_evidence_is_made_json_safe():
    value = {
        "n": np.int64(3),
        "x": np.float64(1.5),
        "nan": float("nan"),
        "ts": pd.Timestamp("2026-11-01T00:00:00Z"),
        "na": pd.NA,
        "rows": [{"d": dt.date(2026, 11, 1)}],
    }
    out = json_safe(value)
    assert out == {
        "n": 3,
        "x": 1.5,
        "nan": None,
        "ts": "2026-11-01T00:00:00+00:00",
        "na": None,
        "rows": [{"d": "2026-11-01"}],
    }
    assert not any(isinstance(v, float) and math.isnan(v) for v in out.values())


def test_run_checks_records_results_opens_alerts_and_only_blocking_failures_raise(home, clean_registry):
    @checks.check("smoke.positive", pipeline="smoke", severity="critical", catalogue_id="math_errors")
    def positive(ctx: checks.CheckContext) -> checks.Outcome:
        bad = ctx.data["frame"].query("amount_cents <= 0")
        if len(bad):
            return checks.fail(f"{len(bad)} non-positive amounts", rows=bad.to_dict("records"))
        return checks.ok("all amounts positive")

    checks.register(
        checks.Check(id="smoke.explodes", pipeline="smoke", fn=lambda ctx: 1 / 0, severity="warning")  # type: ignore[arg-type,return-value]
    )
    frame = pd.DataFrame({"k": [1, 2], "amount_cents": [100, -5]})
    results = checks.run_checks(
        "smoke", "2026-11-09", as_of=AS_OF, run_id="run-1", context={"frame": frame}, builtin=False
    )
    by_id = {r.check_id: r for r in results}
    assert by_id["smoke.positive"].status == "fail"
    assert by_id["smoke.positive"].evidence["rows"] == [{"k": 2, "amount_cents": -5}]
    assert by_id["smoke.explodes"].status == "error"

    stored = store.list_results(run_id="run-1")
    assert {r["check_id"]: r["status"] for r in stored} == {
        "smoke.positive": "fail",
        "smoke.explodes": "error",
    }
    assert stored[0]["as_of"] == AS_OF and stored[0]["evidence"]

    opened = {a.check_id: a for a in alerts.list_alerts(open_only=True)}
    assert set(opened) == {"smoke.positive", "smoke.explodes"}
    a = opened["smoke.positive"]
    assert (a.severity, a.catalogue_id, a.runbook) == (
        "critical",
        "math_errors",
        "notebooks/runbooks/profit/math_errors.ipynb",
    )
    assert a.owner == "DE4" and a.owners == ["DE4", "DE3"]  # the test pipelines copy growth_daily
    # Growth fixes within 2 business days: opened Tue 10 Nov; Wed 11 Nov is Veterans Day in the US
    # calendar, so Thu 12 and Fri 13 count: end of Fri 13 Nov in New York
    # Growth-like pipelines fix within 2 business days of business hours (incidents.fix_deadline):
    # opened before Tuesday's business hours, Wed 11 Nov is Veterans Day -> Thu 12 Nov 17:00 ET.
    assert a.fix_deadline == utc("2026-11-12T22:00:00")
    assert a.run_id == "run-1" and a.opened_at == AS_OF and a.heightened is False
    assert opened["smoke.explodes"].summary.startswith("check error:")

    checks.register(
        checks.Check(
            id="smoke.must_have_rows",
            pipeline="smoke",
            fn=lambda ctx: checks.fail("no rows"),
            blocking=True,
            severity="critical",
        )
    )
    with pytest.raises(checks.BlockingCheckFailed, match="smoke.must_have_rows: no rows") as info:
        checks.run_checks(
            "smoke", "2026-11-09", as_of=AS_OF, run_id="run-2", context={"frame": frame}, builtin=False
        )
    assert len(info.value.results) == 3
    assert len(store.list_results(run_id="run-2")) == 3  # recorded before raising


def test_builtin_partition_checks_run_with_the_run(home):
    frame = pd.DataFrame({"run_date": "2026-11-09", "k": [0, 1, 2], "amount_cents": [1, None, 3]})
    warehouse.replace_partition(
        "chain_table", frame, {"run_date": "2026-11-09"}, written_at=AS_OF, run_id="r"
    )
    results = checks.run_checks("t_down", "2026-11-09", as_of=AS_OF, run_id="r", checks=[])
    by_id = {r.check_id: r for r in results}
    assert by_id["t_down.nulls.chain_table"].status == "fail"
    assert by_id["t_down.nulls.chain_table"].run_id == "r"
    assert by_id["t_down.row_count.chain_table"].status == "pass"  # no history: no verdict


def _result(
    status: str, as_of: dt.datetime, severity: str = "warning", partition: str = "2026-11-09"
) -> CheckResult:
    return CheckResult(
        check_id="smoke.example",
        pipeline="smoke",
        partition=partition,
        status=status,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        summary=f"{status} at {as_of:%H:%M}",
        evidence={"n": 1},
        as_of=as_of,
        evaluated_at=as_of,
        kind="row_count",
    )


def test_alert_life_cycle_dedup_escalate_resolve_reopen(home):
    t0 = AS_OF
    [c1] = alerts.sync([_result("fail", t0)])
    assert c1.action == "opened"
    [c2] = alerts.sync([_result("fail", t0 + dt.timedelta(hours=1), severity="critical")])
    assert (c2.action, c2.alert_id, c2.severity) == ("updated", c1.alert_id, "critical")
    [c3] = alerts.sync([_result("fail", t0 + dt.timedelta(hours=2), severity="warning")])
    assert c3.severity == "critical"  # never de-escalates while open
    a = alerts.get_alert(c1.alert_id)
    assert (a.count, a.status, a.last_seen_at, a.opened_at) == (3, "open", t0 + dt.timedelta(hours=2), t0)
    # another partition is another alert
    [other] = alerts.sync([_result("fail", t0, partition="2026-11-08")])
    assert other.action == "opened" and other.alert_id != c1.alert_id
    # a pass from an older evaluation cannot close a newer failure
    assert alerts.sync([_result("pass", t0 + dt.timedelta(minutes=30))]) == []
    [c4] = alerts.sync([_result("pass", t0 + dt.timedelta(hours=3))])
    assert c4.action == "resolved"
    a = alerts.get_alert(c1.alert_id)
    assert a.status == "resolved" and a.resolved_at == t0 + dt.timedelta(hours=3)
    assert a.age(t0 + dt.timedelta(days=5)) == dt.timedelta(hours=3)
    [c5] = alerts.sync([_result("fail", t0 + dt.timedelta(hours=4))])
    assert c5.action == "opened" and c5.alert_id not in (c1.alert_id, other.alert_id)
    assert [x.alert_id for x in alerts.list_alerts(open_only=True)] == [c5.alert_id, other.alert_id]

    alerts.acknowledge(c5.alert_id, by="DE4", at=t0 + dt.timedelta(hours=5))
    [c6] = alerts.sync([_result("fail", t0 + dt.timedelta(hours=6))])
    assert c6.alert_id == c5.alert_id and alerts.get_alert(c5.alert_id).status == "acknowledged"
    alerts.resolve(c5.alert_id, at=t0 + dt.timedelta(hours=7), note="fixed the join")
    assert alerts.get_alert(c5.alert_id).resolution == "fixed the join"


def test_heightened_flag_in_the_last_week_of_the_month(home):
    [c] = alerts.sync([_result("fail", utc("2026-11-27T15:00:00"))])
    alert = alerts.get_alert(c.alert_id)
    assert alert.heightened is True
    # opened on Black Friday: Growth's 2 business days are Mon 30 Nov and Tue 1 Dec
    # 16 business hours from Fri 27 Nov 10:00 ET (7 h Fri + 8 h Mon + 1 h Tue) -> Tue 1 Dec 10:00 ET
    assert alert.fix_deadline == utc("2026-12-01T15:00:00")
    assert alert.as_json(utc("2026-11-27T18:30:00"))["age_hours"] == 3.5

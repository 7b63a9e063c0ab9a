"""The plan's automatic alerts, each driven by explicit ``as_of`` values (no wall clock)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers import checks
from helpers.checks.framework import CURRENT, CheckResult
from helpers.oncall import alerts
from helpers.runs import records as runs
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.unit
H = dt.timedelta(hours=1)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


T = utc("2026-11-09T06:30:00")  # Monday, outside the month-end window


def write_chain(day: str, rows: int, *, written_at: dt.datetime, nulls: int = 0) -> None:
    """A ``chain_table`` partition (t_down's mart) of ``rows`` rows, the first ``nulls`` NULL."""
    amounts = [None] * nulls + list(range(1, rows - nulls + 1))
    frame = pd.DataFrame({"run_date": day, "k": range(rows), "amount_cents": amounts})
    warehouse.replace_partition("chain_table", frame, {"run_date": day}, written_at=written_at)


def record_run(
    pipeline: str, label: str, status: str, *, at: dt.datetime, as_of: dt.datetime | None = None
) -> str:
    """A finished run record; ``at`` orders runs (it is the runner's queued/started time)."""
    if status == "blocked":
        return runs.record_outcome(pipeline, label, status="blocked", now=at, reason="upstream x failed")
    run_id = runs.start_run(pipeline, label, now=at, as_of=as_of or at, parameters={}, code_version=None)
    runs.finish_run(
        run_id, status=status, now=at + H / 6, error_summary="boom" if status == "failed" else None
    )
    return run_id


def evaluate(as_of: dt.datetime, *pipelines: str) -> dict[tuple[str, str], CheckResult]:
    results, _changes = checks.evaluate_monitors(as_of, pipelines=list(pipelines) or None)
    return {(r.check_id, r.partition): r for r in results}


def open_alert(check_id: str, partition: str = CURRENT) -> alerts.Alert | None:
    found = [
        a for a in alerts.list_alerts(open_only=True) if (a.check_id, a.partition) == (check_id, partition)
    ]
    return found[0] if found else None


# ---------------------------------------------------------------- freshness


@pytest.mark.parametrize(("hours", "severity"), [(17, None), (19, "warning"), (25, "critical")])
def test_mart_freshness_thresholds(home, hours, severity):
    write_chain("2026-11-08", 3, written_at=T)
    got = evaluate(T + hours * H, "t_down")[("t_down.freshness", "current")]
    assert got.evidence["age_hours"] == hours
    if severity is None:
        assert got.status == "pass" and open_alert("t_down.freshness") is None
    else:
        assert (got.status, got.severity) == ("fail", severity)
        alert = open_alert("t_down.freshness")
        assert alert.severity == severity and alert.owner == "DE4"
        assert alert.runbook == "notebooks/runbooks/growth/late_account_updates.ipynb"


def test_freshness_alert_escalates_then_resolves_on_a_new_write(home):
    write_chain("2026-11-08", 3, written_at=T)
    evaluate(T + 19 * H, "t_down")
    evaluate(T + 25 * H, "t_down")
    alert = open_alert("t_down.freshness")
    assert (alert.severity, alert.count, alert.opened_at) == ("critical", 2, T + 19 * H)
    write_chain("2026-11-09", 3, written_at=T + 26 * H)
    evaluate(T + 27 * H, "t_down")
    assert open_alert("t_down.freshness") is None
    assert alerts.get_alert(alert.alert_id).resolved_at == T + 27 * H


@pytest.mark.parametrize(
    ("hours", "status", "severity"), [(17, "pass", None), (19, "fail", "warning"), (25, "fail", "critical")]
)
def test_source_freshness_from_landing_arrivals(home, hours, status, severity):
    frame = pd.DataFrame({"account_id": [1, 2]})
    landing.write_delivery("crm_stage_history", "2026-11-07", frame, arrived_at=T - 30 * H)
    landing.write_delivery("crm_stage_history", "2026-11-08", frame, arrived_at=T)
    landing.write_delivery(
        "crm_stage_history", "2026-11-09", frame, arrived_at=T + 40 * H
    )  # not arrived yet as of then
    got = evaluate(T + hours * H, "growth_daily")[
        ("growth_daily.source_freshness.crm_stage_history", "current")
    ]
    assert got.status == status and (severity is None or got.severity == severity)
    assert got.evidence["last_update"] == T.isoformat()
    missing = evaluate(T + hours * H, "growth_daily")[
        ("growth_daily.source_freshness.experiment_assignments", "current")
    ]
    assert (missing.status, missing.severity) == ("fail", "critical") and "no data yet" in missing.summary


# ---------------------------------------------------------------- row counts


def write_history(
    last: dt.date, target_rows: int, *, weekday_rows: int = 100, weekend_rows: int = 40
) -> None:
    """Five weeks of daily partitions ending at ``last`` (weekends lower), the last one ``target_rows``."""
    day = last - dt.timedelta(days=34)
    while day < last:
        rows = weekend_rows if day.weekday() >= 5 else weekday_rows
        write_chain(day.isoformat(), rows, written_at=T)
        day += dt.timedelta(days=1)
    write_chain(last.isoformat(), target_rows, written_at=T)


@pytest.mark.parametrize(
    ("last", "rows", "status", "why"),
    [
        (dt.date(2026, 11, 9), 75, "fail", "a 25 % drop on a Monday"),
        (dt.date(2026, 11, 9), 85, "pass", "a 15 % drop is within 20 %"),
        (dt.date(2026, 11, 9), 125, "fail", "a 25 % rise (duplicates)"),
        (dt.date(2026, 11, 7), 40, "pass", "a Saturday like the previous Saturdays"),
        (dt.date(2026, 11, 8), 38, "pass", "a Sunday 5 % under the previous Sundays"),
    ],
)
def test_row_count_anomaly_against_the_same_weekday(home, last, rows, status, why):
    write_history(last, rows)
    got = evaluate(T + H, "t_down")[("t_down.row_count.chain_table", last.isoformat())]
    assert got.status == status, why
    assert got.evidence["baseline"] in (100, 40)
    assert len(got.evidence["baseline_partitions"]) == 4
    if status == "fail":
        alert = open_alert("t_down.row_count.chain_table", last.isoformat())
        assert alert is not None and alert.severity == "warning"
        assert alert.catalogue_id == ("late_account_updates" if rows < 100 else "duplicate_accounts")


def test_month_to_date_partition_is_not_an_anomaly(home):
    def write_month(period: str, rows: int, written_at: dt.datetime) -> None:
        frame = pd.DataFrame({"period": period, "metric": [f"m{i}" for i in range(rows)], "value": 1})
        warehouse.replace_partition("investor_monthly", frame, {"period": period}, written_at=written_at)

    for period in ("2026-08", "2026-09", "2026-10"):
        write_month(period, 100, utc(f"{period}-28T00:00:00") + 5 * 24 * H)
    write_month("2026-11", 10, utc("2026-11-02T08:00:00"))  # two days into the month
    got = evaluate(utc("2026-11-02T09:00:00"), "investor_aggregate")
    result = got[("investor_aggregate.row_count.investor_monthly", "2026-11")]
    assert result.status == "pass" and "month in progress" in result.summary


# ---------------------------------------------------------------- NULLs


def test_null_in_a_critical_column_names_the_column_and_rows(home):
    write_chain("2026-11-08", 4, written_at=T, nulls=1)
    got = evaluate(T + H, "t_down")[("t_down.nulls.chain_table", "2026-11-08")]
    assert (got.status, got.severity) == ("fail", "critical")
    assert "amount_cents (1 of 4 rows)" in got.summary and "k=0" in got.summary
    assert got.evidence["null_counts"] == {"amount_cents": 1}
    assert got.evidence["samples"]["amount_cents"] == [
        {"run_date": "2026-11-08", "k": 0, "amount_cents": None}
    ]
    alert = open_alert("t_down.nulls.chain_table", "2026-11-08")
    assert alert.evidence["samples"]["amount_cents"][0]["k"] == 0
    write_chain("2026-11-08", 4, written_at=T + 2 * H)  # fixed and re-run
    assert evaluate(T + 3 * H, "t_down")[("t_down.nulls.chain_table", "2026-11-08")].status == "pass"
    assert open_alert("t_down.nulls.chain_table", "2026-11-08") is None


def test_missing_critical_column_is_critical(home):
    frame = pd.DataFrame({"run_date": "2026-11-08", "k": [1]})
    warehouse.replace_partition("chain_table", frame, {"run_date": "2026-11-08"}, written_at=T)
    got = evaluate(T + H, "t_down")[("t_down.nulls.chain_table", "2026-11-08")]
    assert got.severity == "critical" and "amount_cents missing" in got.summary


# ---------------------------------------------------------------- job failures


def test_failed_and_blocked_runs_alert_and_a_later_success_resolves(home):
    record_run("smoke_fail", "2026-11-08", "failed", at=T)
    record_run("t_after_fail", "2026-11-08", "blocked", at=T + H / 2)
    got = evaluate(T + H, "t_after_fail")
    failed = got[("smoke_fail.run_status", "2026-11-08")]
    blocked = got[("t_after_fail.run_status", "2026-11-08")]
    assert (failed.status, failed.severity) == ("fail", "critical") and "boom" in failed.summary
    assert (blocked.status, blocked.severity) == ("fail", "warning")
    upstream = got[("t_after_fail.upstream_at_risk.smoke_fail", "current")]
    assert upstream.status == "fail" and upstream.evidence["upstream"] == "smoke_fail"
    assert open_alert("smoke_fail.run_status", "2026-11-08").runbook == "notebooks/runbooks/backfill.ipynb"
    assert open_alert("t_after_fail.upstream_at_risk.smoke_fail").catalogue_id == "upstream_missing"

    record_run("smoke_fail", "2026-11-08", "succeeded", at=T + 2 * H)
    assert evaluate(T + 3 * H, "smoke_fail")[("smoke_fail.run_status", "2026-11-08")].status == "pass"
    assert open_alert("smoke_fail.run_status", "2026-11-08") is None
    # partitions older than the lookback are not re-judged
    record_run("smoke_fail", "2026-10-01", "failed", at=T + 4 * H)
    assert ("smoke_fail.run_status", "2026-10-01") not in evaluate(T + 5 * H, "smoke_fail")


# ---------------------------------------------------------------- SLAs about to be missed


def test_growth_end_of_week_at_risk_23_hours_before(home):
    # Week of Mon 2 Nov 2026: statuses due by the end of Fri 6 Nov in New York = 7 Nov 05:00 UTC.
    deadline = utc("2026-11-07T05:00:00")
    for i, day in enumerate(("2026-11-03", "2026-11-04")):
        record_run(
            "growth_daily", day, "succeeded", at=T - (10 - i) * 24 * H, as_of=utc(day + "T06:15:00") + 24 * H
        )
    record_run("growth_daily", "2026-11-05", "failed", at=T - 7 * 24 * H)
    key = ("growth_daily.sla.end_of_week", "2026-11-06")
    early = evaluate(deadline - 25 * H, "growth_daily")[key]
    assert early.status == "pass"
    at_risk = evaluate(deadline - 23 * H, "growth_daily")[key]
    assert (at_risk.status, at_risk.severity) == ("fail", "warning") and "at risk" in at_risk.summary
    assert at_risk.evidence["required_through"] == "2026-11-05"
    assert at_risk.evidence["covered_through"] == "2026-11-04"
    alert = open_alert(*key)
    assert alert.kind == "sla_at_risk" and alert.fix_deadline is None and alert.owner == "DE4"
    record_run("growth_daily", "2026-11-05", "succeeded", at=T - 6 * 24 * H, as_of=utc("2026-11-06T06:15:00"))
    assert evaluate(deadline - 22 * H, "growth_daily")[key].status == "pass"
    assert open_alert(*key) is None


def test_month_end_close_at_risk_then_met_or_missed(home):
    as_of = utc("2026-12-03T06:00:00")  # close of November due end of Thu 3 Dec (NY) = 4 Dec 05:00Z
    got = evaluate(as_of, "profit_aggregate")[("profit_aggregate.sla.month_end_close", "2026-11")]
    assert (got.status, got.severity) == ("fail", "warning") and "23 h" in got.summary
    assert got.evidence["heightened"] is True
    alert = open_alert("profit_aggregate.sla.month_end_close", "2026-11")
    assert alert.runbook == "notebooks/runbooks/month_end_close.ipynb" and alert.heightened is True
    # a month-to-date run as of 20 Nov covers November only through the 19th: not closed yet
    record_run("profit_aggregate", "2026-11", "succeeded", at=T, as_of=utc("2026-11-20T06:00:00"))
    assert evaluate(as_of + H, "profit_aggregate")[("profit_aggregate.sla.month_end_close", "2026-11")].failed
    record_run("profit_aggregate", "2026-11", "succeeded", at=T + H, as_of=utc("2026-12-01T05:00:00"))
    assert not evaluate(as_of + 2 * H, "profit_aggregate")[
        ("profit_aggregate.sla.month_end_close", "2026-11")
    ].failed
    assert open_alert("profit_aggregate.sla.month_end_close", "2026-11") is None
    # Growth's aggregate never closed November: missed once the deadline has passed
    missed = evaluate(utc("2026-12-04T06:00:00"), "growth_aggregate")
    result = missed[("growth_aggregate.sla.month_end_close", "2026-11")]
    assert (result.status, result.severity) == ("fail", "critical") and "MISSED" in result.summary


def test_fix_deadline_of_an_open_alert_at_risk(home):
    failing = CheckResult(
        check_id="smoke.domain_rule",
        pipeline="smoke",
        partition="2026-11-09",
        status="fail",
        severity="critical",
        summary="bad",
        evidence={},
        as_of=utc("2026-11-10T07:00:00"),
        evaluated_at=utc("2026-11-10T07:00:00"),
    )
    [opened] = alerts.sync([failing])
    deadline = alerts.get_alert(opened.alert_id).fix_deadline
    # 2 business days of business hours, Veterans Day (Wed 11 Nov) skipped -> Thu 12 Nov 17:00 ET
    assert deadline == utc("2026-11-12T22:00:00")
    key = (f"smoke.sla.fix_deadline.{opened.alert_id}", "2026-11-09")
    assert evaluate(deadline - 25 * H, "smoke")[key].status == "pass"
    at_risk = evaluate(deadline - 23 * H, "smoke")[key]
    assert at_risk.status == "fail" and "at risk" in at_risk.summary
    assert at_risk.evidence["alert_id"] == opened.alert_id
    alerts.resolve(opened.alert_id, at=deadline - 22 * H, note="fixed")
    assert evaluate(deadline - 21 * H, "smoke")[key].status == "pass"
    assert open_alert(*key) is None


def test_freshness_sla_at_risk_only_when_no_run_will_rescue_it(home):
    # Engagement: 48 h SLA, runs daily at 04:00 UTC
    frame = pd.DataFrame({"account_id": [1], "date": ["2026-11-08"], "events": [3]})
    warehouse.replace_partition("engagement_daily", frame, {"date": "2026-11-08"}, written_at=T)
    key = ("engagement_aggregate.sla.freshness", "current")
    as_of = T + 25 * H  # deadline T + 48 h is 23 h away; the 04:00 run comes before it
    assert evaluate(as_of, "engagement_aggregate")[key].evidence["rescue_expected"] is True
    record_run("engagement_aggregate", "2026-11-09", "failed", at=T + 22 * H)
    got = evaluate(as_of, "engagement_aggregate")[key]
    assert (got.status, got.severity) == ("fail", "warning") and "at risk" in got.summary


# ---------------------------------------------------------------- upstream at risk and housekeeping


def test_late_upstream_puts_its_dependants_at_risk(home):
    record_run("smoke", "2026-11-08", "succeeded", at=T, as_of=T)
    write_chain("2026-11-08", 3, written_at=T)
    fine = evaluate(T + 10 * H, "t_down")[("t_down.upstream_at_risk.smoke", "current")]
    assert fine.status == "pass"
    late = evaluate(T + 25 * H, "t_down")
    assert late[("smoke.freshness", "current")].severity == "critical"
    result = late[("t_down.upstream_at_risk.smoke", "current")]
    assert (result.status, result.severity) == ("fail", "critical")
    assert "upstream smoke is late" in result.summary
    assert {c["check_id"] for c in result.evidence["upstream_checks"]} >= {"smoke.freshness"}
    assert open_alert("t_down.upstream_at_risk.smoke").owner == "DE4"


def test_alerts_of_checks_that_no_longer_exist_are_resolved(home):
    write_chain("2026-11-08", 3, written_at=T)
    stale = CheckResult(
        check_id="t_down.source_freshness.retired_source",
        pipeline="t_down",
        partition="current",
        status="fail",
        severity="warning",
        summary="old",
        evidence={},
        as_of=T,
        evaluated_at=T,
        kind="source_freshness",
    )
    [opened] = alerts.sync([stale])
    _results, changes = checks.evaluate_monitors(T + H, pipelines=["t_down"])
    assert any(c.alert_id == opened.alert_id and c.action == "resolved" for c in changes)
    assert "no longer monitored" in alerts.get_alert(opened.alert_id).resolution


def test_results_are_stored_per_evaluation(home):
    from helpers.checks import store

    write_chain("2026-11-08", 3, written_at=T)
    evaluate(T + H, "t_down")
    evaluate(T + 2 * H, "t_down")
    rows = store.list_results(check_id="t_down.freshness")
    assert [r["as_of"] for r in rows] == [T + 2 * H, T + H] and all(r["run_id"] is None for r in rows)


def test_an_incident_deadline_replaces_the_alerts_default(home, monkeypatch):
    import types

    from helpers.oncall import incidents

    failing = CheckResult(
        check_id="smoke.domain_rule",
        pipeline="smoke",
        partition="2026-11-09",
        status="fail",
        severity="critical",
        summary="bad",
        evidence={},
        as_of=utc("2026-11-10T07:00:00"),
        evaluated_at=utc("2026-11-10T07:00:00"),
    )
    [opened] = alerts.sync([failing])
    incident_due = utc("2026-11-12T15:00:00")  # e.g. business hours from the opening (Growth routing)

    def open_incidents(*, as_of: dt.datetime, engine: object) -> list[types.SimpleNamespace]:
        return [
            types.SimpleNamespace(
                alert_id=str(opened.alert_id),
                pipeline="smoke",
                opened_at=utc("2026-11-10T07:00:00"),
                fix_deadline=incident_due,
                resolved_at=None,
            )
        ]

    monkeypatch.setattr(incidents, "open_incidents", open_incidents)
    key = (f"smoke.sla.fix_deadline.{opened.alert_id}", "2026-11-09")
    got = evaluate(incident_due - 23 * H, "smoke")[key]
    assert got.status == "fail" and got.evidence["deadline"] == incident_due.isoformat()

"""The dependency graph, upstream gating, and what the scheduler considers due (pure functions)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from helpers.core import config as cfgmod
from helpers.core import periods
from helpers.core.businesscal import BusinessCalendar
from helpers.core.errors import EXIT_BLOCKED, EXIT_CONFLICT, EXIT_FAILED, EXIT_OK
from helpers.runs import dag, orchestrate, scheduler
from helpers.runs.dag import Dag, RunItem, UpstreamState

pytestmark = pytest.mark.unit
D = dt.date


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cfg() -> cfgmod.WorkbookConfig:
    return cfgmod.load()


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar("US", timezone="America/New_York")


def test_order_dependants_and_ancestors_of_the_real_pipelines(cfg):
    graph = Dag.from_config(cfg.pipelines)
    order = graph.order()
    assert set(order) == set(cfgmod.PIPELINE_IDS)
    for up in ("profit_aggregate", "growth_aggregate", "engagement_aggregate"):
        assert order.index(up) < order.index("investor_aggregate")
    assert order.index("profit_aggregate") < order.index("profit_unit")
    assert graph.descendants("profit_aggregate") == ["investor_aggregate", "profit_unit"]
    assert graph.dependants("growth_daily") == ()
    assert graph.ancestors("investor_aggregate") == [
        "engagement_aggregate",
        "growth_aggregate",
        "profit_aggregate",
    ]
    assert graph.order(["investor_aggregate", "engagement_aggregate"]) == [
        "engagement_aggregate",
        "investor_aggregate",
    ]
    with pytest.raises(KeyError):
        graph.order(["nope"])
    with pytest.raises(ValueError, match="cycle"):
        Dag({"a": ("b",), "b": ("a",)})


def test_partitions_of_daily_and_monthly_pipelines(cfg):
    monthly = cfg.pipelines.get("profit_aggregate")
    daily = cfg.pipelines.get("engagement_aggregate")
    assert dag.partition_for(monthly, D(2026, 11, 12)) == "2026-11"
    assert dag.partition_for(daily, D(2026, 11, 12)) == "2026-11-12"
    assert dag.run_item(monthly, D(2026, 11, 12)) == RunItem("profit_aggregate", "2026-11", D(2026, 11, 12))
    assert dag.full_period_item(monthly, "2026-02").reference_day == D(2026, 2, 28)
    assert dag.periods_between(monthly, D(2026, 10, 30), D(2026, 12, 1)) == ["2026-10", "2026-11", "2026-12"]
    assert dag.periods_between(daily, D(2026, 10, 30), D(2026, 11, 1)) == [
        "2026-10-30",
        "2026-10-31",
        "2026-11-01",
    ]
    assert periods.period_days("2026-12") == (D(2026, 12, 1), D(2026, 12, 31))
    with pytest.raises(ValueError):
        dag.periods_between(daily, D(2026, 11, 2), D(2026, 11, 1))


def test_blocked_reason_names_the_first_upstream_that_did_not_succeed():
    ok = UpstreamState("profit_aggregate", "2026-11", "succeeded", "r1")
    assert dag.blocked_reason([ok]) is None
    assert dag.blocked_reason([]) is None
    failed = UpstreamState("growth_aggregate", "2026-11", "failed", "r2", "cell 3: KeyError")
    assert (
        dag.blocked_reason([ok, failed])
        == "upstream growth_aggregate 2026-11 failed (run r2: cell 3: KeyError)"
    )
    missing = UpstreamState("engagement_aggregate", "2026-11-30", None)
    assert dag.blocked_reason([missing]) == "upstream engagement_aggregate 2026-11-30 has no succeeded run"
    running = UpstreamState("engagement_aggregate", "2026-11-30", "running", "r3")
    assert "is still running (run r3)" in dag.blocked_reason([running])
    blocked = UpstreamState("profit_unit", "2026-11", "blocked", "r4", "upstream x failed")
    assert dag.blocked_reason([blocked]).startswith("upstream profit_unit 2026-11 blocked")


def test_exit_code_precedence():
    def o(status: str) -> orchestrate.Outcome:
        return orchestrate.Outcome("p", "2026-11-01", status)

    assert orchestrate.exit_code([o("succeeded"), o("skipped")]) == EXIT_OK
    assert orchestrate.exit_code([o("succeeded"), o("blocked")]) == EXIT_BLOCKED
    assert orchestrate.exit_code([o("blocked"), o("failed")]) == EXIT_FAILED
    assert orchestrate.exit_code([o("conflict")]) == EXIT_CONFLICT
    assert orchestrate.exit_code([]) == EXIT_OK


# ---------------------------------------------------------------- scheduling


def test_fire_times_are_utc_and_half_open():
    fired = scheduler.fire_times("15 6 * * *", utc("2026-11-02T06:15:00"), utc("2026-11-04T06:15:00"))
    assert fired == [utc("2026-11-03T06:15:00"), utc("2026-11-04T06:15:00")]
    assert scheduler.fire_times("15 6 * * *", utc("2026-11-02T06:16:00"), utc("2026-11-02T06:20:00")) == []


@pytest.mark.parametrize(
    ("pipeline", "fired", "partition", "reference_day"),
    [
        ("engagement_aggregate", "2026-11-12T04:00:00", "2026-11-11", D(2026, 11, 11)),
        ("engagement_aggregate", "2026-12-01T04:00:00", "2026-11-30", D(2026, 11, 30)),
        ("profit_aggregate", "2026-11-12T05:00:00", "2026-11", D(2026, 11, 11)),  # month-to-date
        ("profit_aggregate", "2026-12-01T05:00:00", "2026-11", D(2026, 11, 30)),
        ("profit_aggregate", "2026-12-03T05:00:00", "2026-11", D(2026, 11, 30)),  # 3rd business day: close
        ("profit_aggregate", "2026-12-04T05:00:00", "2026-12", D(2026, 12, 3)),
        ("profit_aggregate", "2027-01-06T05:00:00", "2026-12", D(2026, 12, 31)),  # 1 Jan is a holiday
        ("profit_aggregate", "2027-01-07T05:00:00", "2027-01", D(2027, 1, 6)),
    ],
)
def test_logical_date_of_a_scheduled_run(cfg, cal, pipeline, fired, partition, reference_day):
    item = scheduler.scheduled_item(
        cfg.pipelines.get(pipeline), utc(fired), cal=cal, report_final_business_days=3
    )
    assert (item.partition, item.reference_day) == (partition, reference_day)


def test_window_start_is_bounded_by_catch_up_days():
    as_of = utc("2026-11-05T07:00:00")
    assert scheduler.window_start(None, as_of, catch_up_days=7) == utc("2026-11-05T06:59:00")
    last = utc("2026-11-02T06:20:00")
    assert scheduler.window_start(last, as_of, catch_up_days=7) == last
    assert scheduler.window_start(last, as_of, catch_up_days=1) == utc("2026-11-04T07:00:00")


def test_due_slots_after_an_outage_are_in_time_order(cfg, cal):
    pipes = {p: cfg.pipelines.get(p) for p in ("engagement_aggregate", "growth_daily", "investor_aggregate")}
    slots = scheduler.due_slots(
        pipes, utc("2026-11-02T06:20:00"), utc("2026-11-05T07:00:00"), cal=cal, report_final_business_days=3
    )
    got = [(s.scheduled_for.isoformat(), s.pipeline, s.item.partition) for s in slots]
    # 2-4 Nov are the first three business days of November: the investor figures close October.
    assert got == [
        ("2026-11-02T08:00:00+00:00", "investor_aggregate", "2026-10"),
        ("2026-11-03T04:00:00+00:00", "engagement_aggregate", "2026-11-02"),
        ("2026-11-03T06:15:00+00:00", "growth_daily", "2026-11-02"),
        ("2026-11-03T08:00:00+00:00", "investor_aggregate", "2026-10"),
        ("2026-11-04T04:00:00+00:00", "engagement_aggregate", "2026-11-03"),
        ("2026-11-04T06:15:00+00:00", "growth_daily", "2026-11-03"),
        ("2026-11-04T08:00:00+00:00", "investor_aggregate", "2026-10"),
        ("2026-11-05T04:00:00+00:00", "engagement_aggregate", "2026-11-04"),
        ("2026-11-05T06:15:00+00:00", "growth_daily", "2026-11-04"),
    ]


def test_crontab_lines_cover_every_pipeline(cfg, tmp_path):
    lines = scheduler.crontab_lines(cfg, repo=tmp_path, env={"WORKBOOK_HOME": "/srv/wb"})
    text = "\n".join(lines)
    assert "CRON_TZ=UTC" in lines and "WORKBOOK_HOME=/srv/wb" in lines
    assert "WORKBOOK_WAREHOUSE_URL=" not in text  # a secret: never written into a crontab
    wb = "/opt/wb/bin/workbook"
    lines = scheduler.crontab_lines(cfg, repo=tmp_path, env={"WORKBOOK_HOME": "/srv/wb"}, workbook=Path(wb))
    for pid, p in cfg.pipelines.pipelines.items():
        line = next(ln for ln in lines if f"--pipelines {pid} " in ln)
        assert line.startswith(p.schedule + f" cd {tmp_path} && {wb} run-all")
        assert r"$(date -u -d yesterday +\%F)" in line  # % escaped for cron
        assert line.endswith(
            f"; {wb} tick -q >> /srv/wb/runs/cron.log 2>&1"
        )  # a tick even after a failed run
    assert any("scheduler --once" in ln for ln in lines)
    assert any(
        ln.endswith(f"{wb} tick -q >> /srv/wb/runs/cron.log 2>&1") for ln in lines if ln.startswith("*/15")
    )
    assert not any(" checks " in ln for ln in lines if not ln.startswith("#"))

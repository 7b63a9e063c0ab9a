"""The close's trailing months without notebooks: which months are built, from what coverage, and
how a wave of several months decides what runs (``helpers.investor.history``, ``helpers.investor.waves``).

tests/notebooks/test_close_history.py runs the real thing on a small demo company.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.core import config as cfgmod
from helpers.investor import close, history, waves
from helpers.runs import locks
from helpers.runs import records as runs
from helpers.runs.dag import RunItem
from helpers.runs.orchestrate import Outcome
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.unit
UTC = dt.UTC
P = "2026-10"
AS_OF = dt.datetime(2026, 11, 16, 12, tzinfo=UTC)
T0 = dt.datetime(2026, 12, 1, 9, tzinfo=UTC)
TWELVE = [f"2025-{m:02d}" for m in (10, 11, 12)] + [f"2026-{m:02d}" for m in range(1, 10)]


def run(pipeline: str, part: str, at: dt.datetime, *, status: str = "succeeded") -> str:
    rid = runs.start_run(pipeline, part, now=at, as_of=AS_OF, parameters={}, code_version="test")
    runs.finish_run(rid, status=status, now=at + dt.timedelta(minutes=1),
                    error_summary=None if status == "succeeded" else "cell 2: boom")  # fmt: skip
    return rid


def deliver(root, source: str, days: list[str], arrived: dt.datetime = AS_OF - dt.timedelta(days=1)) -> None:
    for day in days:
        landing.write_delivery(
            source, day, pd.DataFrame({"x": [1]}), arrived_at=arrived, root=root, durable=False
        )


# ---------------------------------------------------------------- which months (pure)


def test_the_twelve_months_before_oldest_first_and_all_built_when_the_data_covers_them():
    plan = history.plan(P, 12, first_day=dt.date(2024, 11, 1), first_why="billing from 2024-11-01", have={},
                        locked={})  # fmt: skip
    assert [m.period for m in plan.months] == TWELVE and plan.to_build == TWELVE
    assert history.plan(P, 0, first_day=dt.date(2024, 11, 1), first_why="", have={}, locked={}).months == ()
    with pytest.raises(ValueError, match="0 or more"):
        history.months_before(P, -1)


def test_fewer_months_covered_builds_only_those_and_names_the_rest_as_no_data():
    plan = history.plan(P, 12, first_day=dt.date(2026, 8, 1), first_why="events from 2026-08-01", have={},
                        locked={})  # fmt: skip
    assert plan.to_build == ["2026-08", "2026-09"]
    missing = {m.period: m.detail for m in plan.missing if m.state == history.NO_DATA}
    assert sorted(missing) == TWELVE[:10] and len(plan.missing) == 12  # until they are built
    assert missing["2026-07"] == "no data: the landing zone starts 2026-08-01 (events from 2026-08-01)"
    # a month that starts mid-month in the landing zone is not covered
    mid = history.plan(P, 3, first_day=dt.date(2026, 8, 2), first_why="x", have={}, locked={})
    assert mid.to_build == ["2026-09"]
    nothing = history.plan(P, 2, first_day=None, first_why="nothing landed", have={}, locked={})
    assert nothing.to_build == [] and [m.detail for m in nothing.missing] == ["no data: nothing landed"] * 2


def test_months_with_figures_are_skipped_and_locked_months_never_run():
    plan = history.plan(
        P, 4, first_day=dt.date(2024, 11, 1), first_why="",
        have={"2026-07": "investor_aggregate-2026-07-a", "2026-08": None, "2026-06": "investor_aggregate-2026-06-b"},
        locked={"2026-06": "locked: published FINAL (version 1)", "2026-09": "locked: published FINAL (version 2)"},
    )  # fmt: skip
    states = {m.period: m.state for m in plan.months}
    assert states == {"2026-06": "locked", "2026-07": "have", "2026-08": "build", "2026-09": "locked"}
    assert plan.to_build == ["2026-08"] and plan.missing[0].period == "2026-08"


def test_settle_names_built_months_and_the_first_failure_of_the_others():
    plan = history.plan(P, 3, first_day=dt.date(2024, 11, 1), first_why="", have={"2026-07": "r7"}, locked={})
    outcomes = [
        Outcome("profit_aggregate", "2026-08", "succeeded", "p8"),
        Outcome("profit_aggregate", "2026-09", "failed", "p9", "cell 4: KeyError: 'amount'"),
        Outcome("engagement_aggregate", "2026-08-31", "skipped", "e8", "up to date"),
        Outcome("investor_aggregate", "2026-08", "succeeded", "i8"),
        Outcome("investor_aggregate", "2026-09", "blocked", None, "upstream profit_aggregate failed"),
    ]
    done = history.settle(plan, outcomes)
    states = {m.period: (m.state, m.detail) for m in done.months}
    assert states["2026-07"] == ("have", "investor_aggregate run r7")
    assert states["2026-08"] == ("built", "investor_aggregate run i8")
    assert states["2026-09"] == ("failed", "profit_aggregate 2026-09 failed: cell 4: KeyError: 'amount'")
    assert [m.period for m in done.missing] == ["2026-09"]
    line = done.summary()
    assert line.startswith(
        "trend months before 2026-10: 2 of 3 with investor figures (1 built now); missing: 2026-09"
    )


# ---------------------------------------------------------------- what the landing zone covers


def test_the_first_landed_day_is_the_latest_first_partition_of_the_sources(home):
    config = cfgmod.get()
    root = home / "data" / "landing"
    deliver(root, "subscriptions", ["2025-03-02", "2025-03-03"])
    deliver(
        root, "billing_invoices", ["2025-03-04", "2025-03-01"]
    )  # a backfill: manifest order is not day order
    deliver(root, "cloud_costs", ["2025-04-01"])  # monthly: holds its whole month
    deliver(root, "events", ["2025-01-01"], arrived=AS_OF + dt.timedelta(days=1))  # not arrived by as_of
    sources = ["billing_invoices", "cloud_costs", "events", "subscriptions", "fx_rates"]
    day, why = history.first_landed_day(sources, as_of=AS_OF, config=config, root=root)
    assert (day, why) == (dt.date(2025, 4, 1), "cloud_costs from 2025-04-01")
    day, why = history.first_landed_day(
        ["subscriptions", "billing_invoices"], as_of=AS_OF, config=config, root=root
    )
    assert (day, why) == (dt.date(2025, 3, 2), "subscriptions from 2025-03-02")
    day, why = history.first_landed_day(["events", "fx_rates"], as_of=AS_OF, config=config, root=root)
    assert day is None and why.startswith("nothing landed by 2026-11-16 12:00Z from events, fx_rates")


def test_plan_history_reads_runs_locks_and_the_landing_zone(home):
    config = cfgmod.get()
    root = home / "data" / "landing"
    for source in history.landing_sources(config, (*close.WAVE_A, *close.WAVE_B)):
        deliver(root, source, ["2026-05-01"])
    run("investor_aggregate", "2026-06", T0)  # has figures
    run("investor_aggregate", "2026-07", T0, status="failed")  # its latest run failed: built again
    run("investor_aggregate", "2026-08", T0)
    with warehouse.get_engine().begin() as conn:
        locks.lock_month("2026-08", [locks.Target(locks.PIPELINE, "investor_aggregate", "2026-08")], version=1,
                         locked_at=T0, signed_off=[], conn=conn)  # fmt: skip
    plan = history.plan_history(P, 7, AS_OF, pipelines=(*close.WAVE_A, *close.WAVE_B), config=config)
    states = {m.period: m.state for m in plan.months}
    assert states == {"2026-03": "no data", "2026-04": "no data", "2026-05": "build", "2026-06": "have",
                      "2026-07": "build", "2026-08": "locked", "2026-09": "build"}  # fmt: skip
    items = history.items(plan, close.WAVE_B, config)
    assert [(i.pipeline, i.partition, i.reference_day.isoformat()) for i in items[:2]] == [
        ("engagement_aggregate", "2026-05-31", "2026-05-31"),
        ("investor_aggregate", "2026-05", "2026-05-31"),
    ]
    assert len(items) == 6


# ---------------------------------------------------------------- a wave over several months


def test_a_history_wave_reruns_by_month_and_after_a_newer_upstream(home, monkeypatch):
    from helpers.runs import orchestrate

    run("profit_aggregate", "2026-08", T0)
    run("profit_unit", "2026-08", T0 + dt.timedelta(minutes=2))  # up to date for August
    run("profit_aggregate", "2026-09", T0 + dt.timedelta(minutes=5), status="failed")  # September re-runs
    run("profit_unit", "2026-09", T0 + dt.timedelta(minutes=2))
    run("profit_unit", "2026-07", T0)
    run("profit_aggregate", "2026-07", T0 + dt.timedelta(minutes=5))  # finished after July's profit_unit ran
    ran: list[tuple[str, str]] = []

    def fake_run_items(items, **_kw):
        ran.extend((i.pipeline, i.partition) for i in items)
        return [Outcome(i.pipeline, i.partition, "succeeded", "r") for i in items]

    monkeypatch.setattr(orchestrate, "run_items", fake_run_items)
    items = [RunItem(p, m, dt.date.fromisoformat(last)) for m, last in
             (("2026-07", "2026-07-31"), ("2026-08", "2026-08-31"), ("2026-09", "2026-09-30"))
             for p in ("profit_aggregate", "profit_unit")]  # fmt: skip
    done = waves.run_wave(items, as_of=AS_OF + dt.timedelta(days=3), parts={}, history=True, clock=lambda: T0,
                          config=cfgmod.get(), workers=1, on_update=lambda o: None, stop=None)  # fmt: skip
    # another as_of is fine for a trailing month; August is skipped though September's profit_aggregate re-runs
    assert ran == [("profit_unit", "2026-07"), ("profit_aggregate", "2026-09"), ("profit_unit", "2026-09")]
    skipped = {(o.pipeline, o.partition): o.reason for o in done if o.status == "skipped"}
    assert skipped == {("profit_aggregate", "2026-07"): "up to date", ("profit_aggregate", "2026-08"): "up to date",
                       ("profit_unit", "2026-08"): "up to date"}  # fmt: skip


def test_the_cli_takes_history_and_compare_as_its_deprecated_alias(home, capsys):
    from helpers.cli import main as cli

    assert cli.main(["close", "--month", P, "--history", "-1"]) == 2
    assert "--history: expected how many months" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["close", "--month", P, "--compare"])
    from helpers.cli.close import history_arg

    assert history_arg(args) == 12 and "--compare is deprecated" in capsys.readouterr().err
    assert history_arg(cli.build_parser().parse_args(["close", "--month", P, "--history", "0"])) == 0


def _recording_execute(monkeypatch, started: list[tuple[str, str]]):
    from helpers.runs import orchestrate

    def execute(item, **_kw):
        started.append((item.pipeline, item.partition))
        return Outcome(item.pipeline, item.partition, "succeeded", f"run-{item.pipeline}-{item.partition}")

    monkeypatch.setenv("WORKBOOK_WARM_KERNELS", "0")
    monkeypatch.setattr(orchestrate, "_execute", execute)


def test_a_free_worker_takes_the_ready_item_with_the_longest_chain_after_it_first(home, monkeypatch):
    """The critical path first: every month's Profit before the unit Profit waiting on it, then
    the oldest month first among equals (and the DAG's order); the outcomes are listed by month."""
    from helpers.runs import orchestrate

    started: list[tuple[str, str]] = []
    _recording_execute(monkeypatch, started)
    pipelines = ("profit_aggregate", "profit_unit", "growth_aggregate")
    items = [RunItem(p, m, dt.date.fromisoformat(last)) for m, last in
             (("2026-07", "2026-07-31"), ("2026-08", "2026-08-31")) for p in pipelines]  # fmt: skip
    done = orchestrate.run_items(items, clock=lambda: T0, as_of=AS_OF, workers=1)
    assert started == [
        ("profit_aggregate", "2026-07"), ("profit_aggregate", "2026-08"),  # a run waits on them
        ("growth_aggregate", "2026-07"), ("profit_unit", "2026-07"),  # none waits on these
        ("growth_aggregate", "2026-08"), ("profit_unit", "2026-08"),
    ]  # fmt: skip
    assert [(o.pipeline, o.partition) for o in done] == [
        ("growth_aggregate", "2026-07"), ("profit_aggregate", "2026-07"), ("profit_unit", "2026-07"),
        ("growth_aggregate", "2026-08"), ("profit_aggregate", "2026-08"), ("profit_unit", "2026-08"),
    ]  # fmt: skip


def test_ordering_edges_hold_back_an_item_but_never_block_it(home, monkeypatch):
    from helpers.runs import orchestrate

    started: list[tuple[str, str]] = []
    _recording_execute(monkeypatch, started)
    items = [RunItem("growth_aggregate", "2026-07", dt.date(2026, 7, 31)),
             RunItem("profit_aggregate", "2026-08", dt.date(2026, 8, 31))]  # fmt: skip
    after = {("growth_aggregate", "2026-07"): [("profit_aggregate", "2026-08")]}
    done = orchestrate.run_items(items, clock=lambda: T0, as_of=AS_OF, workers=1, after=after)
    assert started == [("profit_aggregate", "2026-08"), ("growth_aggregate", "2026-07")]
    assert [o.status for o in done] == ["succeeded", "succeeded"]


def test_engagement_waits_for_what_it_reads_and_for_the_oldest_engagement_month():
    own = [RunItem("engagement_aggregate", "2026-09-30", dt.date(2026, 9, 30))]
    parts = close.close_partitions("2026-09", dt.datetime(2026, 10, 10, 12, tzinfo=dt.UTC))
    past = [
        RunItem("engagement_aggregate", f"2026-0{m}-{d}", dt.date(2026, m, int(d)))
        for m, d in ((8, "31"), (7, "31"))
    ]
    order = waves.engagement_order([(own, parts, False), (past, {}, True)])
    oldest = ("engagement_aggregate", "2026-07-31")
    assert order[oldest] == [("profit_unit", "2026-07"), ("growth_aggregate", "2026-07")]
    assert order[("engagement_aggregate", "2026-08-31")] == [
        ("profit_unit", "2026-08"),
        ("growth_aggregate", "2026-08"),
        oldest,
    ]
    assert order[("engagement_aggregate", "2026-09-30")] == [
        ("profit_unit", parts["profit_unit"]), ("growth_aggregate", parts["growth_aggregate"]), oldest]  # fmt: skip

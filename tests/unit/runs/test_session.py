"""A notebook's session: today's defaults, runner or by hand, and the scratch warehouse of a run by hand."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers.core import paths
from helpers.runs import locks, scratch, session
from helpers.runs.session import open_session
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 12, 6, 7, 19, 28, 123456, tzinfo=dt.UTC)
ENV = (session.RUNNER_ENV, scratch.PUBLISHED_ENV, scratch.WAREHOUSE_ENV, scratch.QUARANTINE_ENV)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def by_hand(home, monkeypatch):
    """A home whose environment a session may redirect: restored afterwards, no runner marker."""
    for name in ENV:  # set, then delete: monkeypatch then removes what a session sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield home
    warehouse.dispose_engines()


def publish(rows: dict[str, int], *, engine: sa.Engine | None = None) -> None:
    """``m`` partitions (period -> value) written as a runner run would, in the published warehouse."""
    for period, value in rows.items():
        frame = pd.DataFrame({"period": [period], "value": [value]})
        warehouse.replace_partition(
            "m", frame, {"period": period}, written_at=utc("2026-11-01T00:00"), run_id="r-1", engine=engine
        )


# ---------------------------------------------------------------- defaults for today


@pytest.mark.parametrize(
    "now, month, day",
    [
        ("2026-12-06T07:19:28+00:00", "2026-11", "2026-12-05"),
        ("2026-01-01T00:00:00+00:00", "2025-12", "2025-12-31"),
        ("2026-03-31T23:59:59+00:00", "2026-02", "2026-03-30"),
        ("2024-03-01T12:00:00+00:00", "2024-02", "2024-02-29"),
        ("2026-12-01T00:30:00+02:00", "2026-10", "2026-11-29"),  # 2026-11-30T22:30Z: still November
        ("2026-11-30T23:30:00-05:00", "2026-11", "2026-11-30"),  # 2026-12-01T04:30Z: December
    ],
)
def test_last_complete_month_and_day_are_in_utc(now, month, day):
    when = dt.datetime.fromisoformat(now)
    assert session.last_complete_month(when) == month
    assert session.last_complete_day(when) == day


def test_a_naive_now_is_utc():
    assert session.last_complete_month(dt.datetime(2026, 1, 1, 0, 0)) == "2025-12"


def test_empty_as_of_is_now_to_the_second_and_a_given_one_is_parsed():
    assert session.effective_as_of("", NOW) == utc("2026-12-06T07:19:28")
    assert session.effective_as_of("  ", NOW) == utc("2026-12-06T07:19:28")
    assert session.effective_as_of("2026-10-02T06:00:00Z", NOW) == utc("2026-10-02T06:00")
    assert session.effective_as_of("2026-10-02T08:00:00+02:00", NOW) == utc("2026-10-02T06:00")
    with pytest.raises(ValueError, match="ISO timestamp"):
        session.effective_as_of("yesterday", NOW)


def test_a_given_partition_is_validated_and_an_empty_one_is_the_last_complete():
    assert session.effective_partition("", "month", NOW) == "2026-11"
    assert session.effective_partition("", "day", NOW) == "2026-12-05"
    assert session.effective_partition("2026-10", "month", NOW) == "2026-10"
    assert session.effective_partition("2026-10-15", "month", NOW) == "2026-10"
    assert session.effective_partition("2026-10-15", "day", NOW) == "2026-10-15"
    with pytest.raises(ValueError, match="YYYY-MM"):
        session.effective_partition("2026-13", "month", NOW)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        session.effective_partition("2026-10", "day", NOW)


# ---------------------------------------------------------------- runner or by hand


def test_only_the_runners_marker_makes_a_runner_run(monkeypatch):
    monkeypatch.delenv(session.RUNNER_ENV, raising=False)
    assert session.runner_run_id("manual") is None
    assert session.runner_run_id("") is None
    assert session.runner_run_id("profit_aggregate-2026-10-20261206T071928-abcdef") is None  # typed in
    monkeypatch.setenv(session.RUNNER_ENV, "run-1")
    assert session.runner_run_id("run-1") == "run-1"
    assert session.runner_run_id("manual") == "run-1"
    with pytest.raises(ValueError, match="executes the runner's run 'run-1'"):
        session.runner_run_id("fake")


def test_a_run_id_typed_in_by_hand_still_writes_the_scratch(by_hand):
    publish({"2026-10": 2})
    got = open_session("profit_aggregate", period="2026-10", as_of="", run_id="fake", now=NOW)
    assert got.interactive and got.claimed == "fake" and got.run_id == "manual"
    assert "run_id 'fake' is not the runner's run of this kernel: nothing is published." in " ".join(
        repr(got).split()
    )
    assert os.environ[scratch.WAREHOUSE_ENV].endswith("/runs/scratch/profit_aggregate.sqlite")


def test_a_runner_run_keeps_its_parameters_and_the_warehouse(by_hand, monkeypatch, capsys):
    monkeypatch.setenv(session.RUNNER_ENV, "run-1")
    got = open_session(
        "profit_aggregate", period="2026-10", as_of="2026-11-01T00:00Z", run_id="run-1", now=NOW
    )
    assert (got.interactive, got.run_id, got.period, got.as_of) == (
        False,
        "run-1",
        "2026-10",
        utc("2026-11-01"),
    )
    assert got.defaulted == () and got.scratch is None
    assert os.environ.get(scratch.WAREHOUSE_ENV) is None  # nothing redirected
    assert not paths.scratch_dir().exists()
    assert repr(got).startswith("Runner run run-1: profit_aggregate 2026-10 as of 2026-11-01T00:00:00+00:00.")
    got._ipython_display_()  # as a cell's result: nothing in a runner run (a report shows no warehouse)
    assert capsys.readouterr().out == ""


def test_open_session_needs_exactly_one_partition_parameter(by_hand):
    with pytest.raises(ValueError, match="exactly one of period"):
        open_session("profit_aggregate", as_of="", run_id="manual", now=NOW)
    with pytest.raises(ValueError, match="exactly one of period"):
        open_session("growth_daily", period="", run_date="", as_of="", run_id="manual", now=NOW)


# ---------------------------------------------------------------- the scratch warehouse


def test_scratch_location_is_per_pipeline_under_runs(by_hand):
    assert paths.scratch_dir() == by_hand / "runs" / "scratch"
    assert (
        paths.scratch_warehouse_path("profit_aggregate")
        == by_hand / "runs" / "scratch" / "profit_aggregate.sqlite"
    )
    assert (
        paths.scratch_quarantine_dir("growth_daily")
        == by_hand / "runs" / "scratch" / "growth_daily.quarantine"
    )
    for bad in ("", "../warehouse", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="pipeline id"):
            paths.scratch_warehouse_path(bad)


def test_by_hand_reads_the_published_marts_and_writes_only_the_scratch(by_hand, capsys):
    publish({"2026-09": 1, "2026-10": 2})
    warehouse.dispose_engines()
    published = by_hand / "runs" / "warehouse.sqlite"
    before = sha256(published)

    got = open_session("profit_aggregate", period="", as_of="", run_id="manual", now=NOW)
    target = by_hand / "runs" / "scratch" / "profit_aggregate.sqlite"
    assert got.interactive and got.scratch == target and got.run_id == "manual"
    assert (got.period, got.as_of_text) == ("2026-11", "2026-12-06T07:19:28+00:00")
    assert got.defaulted == ("period", "as_of")
    assert os.environ[scratch.WAREHOUSE_ENV] == f"sqlite:///{target}"
    assert os.environ[scratch.QUARANTINE_ENV] == str(target.with_suffix(".quarantine"))
    assert paths.quarantine_root() == target.with_suffix(".quarantine")
    assert warehouse.read_table("m")["value"].tolist() == [1, 2]  # the published marts, read through the copy

    publish({"2026-10": 20, "2026-11": 30})  # what the notebook writes
    assert warehouse.read_table("m")["value"].tolist() == [1, 20, 30]
    warehouse.dispose_engines()
    assert sha256(published) == before
    with sa.create_engine(f"sqlite:///{published}").connect() as conn:
        assert conn.execute(sa.text("SELECT period, value FROM m ORDER BY period")).all() == [
            ("2026-09", 1),
            ("2026-10", 2),
        ]

    assert all(len(line) <= 100 or " " not in line.strip() for line in repr(got).splitlines())
    text = " ".join(repr(got).split())
    assert (
        "Interactive run (outside the runner): profit_aggregate 2026-11 as of 2026-12-06T07:19:28+00:00"
        in text
    )
    assert "(period empty: the last complete month; as_of empty: now)" in text
    assert f"Writes only to the scratch warehouse {target}" in text
    assert f"The published warehouse sqlite:///{published} is untouched." in text
    assert "To publish: workbook run profit_aggregate --date 2026-11 --as-of 2026-12-06T07:19:28Z" in text
    got._ipython_display_()
    assert capsys.readouterr().out == repr(got) + "\n"


def test_opening_again_copies_the_published_warehouse_again(by_hand):
    publish({"2026-10": 2})
    first = open_session("profit_aggregate", period="2026-10", as_of="", run_id="manual", now=NOW)
    publish({"2026-10": 99})
    assert warehouse.read_table("m")["value"].tolist() == [99]
    (paths.quarantine_root() / "events").mkdir(parents=True)

    second = open_session("profit_aggregate", period="2026-10", as_of="", run_id="manual", now=NOW)
    assert second.scratch == first.scratch
    assert os.environ[scratch.PUBLISHED_ENV].endswith("/runs/warehouse.sqlite")
    assert warehouse.read_table("m")["value"].tolist() == [2]  # the scratch's earlier write is gone
    assert not paths.quarantine_root().exists()


def test_a_notebook_by_hand_starts_from_an_empty_scratch_when_nothing_is_published(by_hand):
    got = open_session("growth_daily", run_date="", as_of="2026-12-01T06:00Z", run_id="manual", now=NOW)
    assert (got.run_date, got.period, got.defaulted) == ("2026-12-05", "2026-12", ("run_date",))
    assert not (by_hand / "runs" / "warehouse.sqlite").exists()
    with warehouse.get_engine().connect() as conn:
        assert sa.inspect(conn).has_table("pipeline_runs")
    monthly = open_session("profit_aggregate", period="2026-10", as_of="", run_id="manual", now=NOW)
    with pytest.raises(AttributeError, match="monthly"):
        getattr(monthly, "run_date")  # noqa: B009


def test_a_locked_month_is_recomputed_in_the_scratch_and_the_session_names_reopen(by_hand):
    publish({"2026-10": 2})
    engine = warehouse.get_engine()
    key = warehouse.partition_key({"period": "2026-10"})
    with engine.begin() as conn:
        locks.lock_month(
            "2026-10",
            [
                locks.Target(locks.PIPELINE, "profit_aggregate", "2026-10"),
                locks.Target(locks.TABLE, "m", key),
            ],
            version=1,
            locked_at=utc("2026-11-05T12:00"),
            signed_off=[("DE1", utc("2026-11-05T11:00"))],
            conn=conn,
        )
    warehouse.dispose_engines()
    published = by_hand / "runs" / "warehouse.sqlite"
    before = sha256(published)

    got = open_session("profit_aggregate", period="2026-10", as_of="", run_id="manual", now=NOW)
    assert got.lock is not None and "signed off by DE1" in got.lock
    text = " ".join(repr(got).split())
    assert "Publishing is refused (exit 5) while locked: profit_aggregate 2026-10" in text
    assert "workbook reopen --month 2026-10" in text
    publish({"2026-10": 3})  # the scratch's copy of the lock is released: the write lands there
    assert warehouse.read_table("m")["value"].tolist() == [3]
    released = warehouse.read_table("partition_locks")
    assert set(released["released_by"]) == {"scratch"}
    warehouse.dispose_engines()
    assert sha256(published) == before
    assert locks.month_lock("2026-10", engine=warehouse.get_engine(f"sqlite:///{published}")) is not None


def test_a_postgresql_warehouse_is_copied_row_by_row_and_never_written(by_hand, pg_url, monkeypatch):
    monkeypatch.setenv(scratch.WAREHOUSE_ENV, pg_url)
    pg = warehouse.get_engine(pg_url)
    publish({"2026-09": 1, "2026-10": 2}, engine=pg)
    with pg.connect() as conn:
        runs_before = conn.execute(sa.text("SELECT count(*) FROM partition_writes")).scalar_one()

    got = open_session("investor_aggregate", period="2026-10", as_of="", run_id="manual", now=NOW)
    assert got.published == warehouse.redacted_url(pg_url) and got.scratch is not None
    assert warehouse.read_table("m")["value"].tolist() == [1, 2]
    assert len(warehouse.read_table("partition_writes")) == runs_before
    publish({"2026-10": 5})
    assert warehouse.read_table("m")["value"].tolist() == [1, 5]
    assert warehouse.read_table("m", engine=pg)["value"].tolist() == [1, 2]
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM partition_writes")).scalar_one() == runs_before


def test_the_environment_a_session_set_is_gone_after_each_test():
    assert not any(name in os.environ for name in ENV)

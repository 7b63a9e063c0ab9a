"""A run's built-in partition checks judge the partition it staged, not the published one."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers import checks
from helpers.checks import monitors
from helpers.runs import records as runs
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
DAY = "2026-10-31"
AS_OF = dt.datetime(2026, 11, 1, 6, tzinfo=dt.UTC)


def chain(n: int, *, nulls: bool = False) -> pd.DataFrame:
    amounts = [None] * n if nulls else [100.0 * (i + 1) for i in range(n)]
    return pd.DataFrame({"run_date": DAY, "k": range(n), "amount_cents": amounts})


def by_kind(results: list[checks.CheckResult]) -> dict[str, checks.CheckResult]:
    return {r.kind: r for r in results}


def test_row_count_and_null_checks_inside_a_run_see_its_staged_partition(home, monkeypatch):
    # published: 3 clean rows, written by an earlier run
    warehouse.replace_partition(
        "chain_table", chain(3), {"run_date": DAY}, written_at=AS_OF, run_id="earlier"
    )
    published = by_kind(monitors.partition_checks("t_down", DAY, as_of=AS_OF))
    assert published["row_count"].evidence["rows"] == 3 and published["nulls"].status == "pass"

    rid = runs.start_run("t_down", DAY, now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid)
    warehouse.replace_partition(
        "chain_table", chain(5, nulls=True), {"run_date": DAY}, written_at=AS_OF, run_id=rid
    )
    staged = by_kind(checks.run_checks("t_down", DAY, run_id=rid, as_of=AS_OF, checks=[]))
    assert staged["row_count"].evidence["rows"] == 5
    assert staged["nulls"].status == "fail" and staged["nulls"].evidence["null_counts"] == {"amount_cents": 5}
    assert staged["nulls"].evidence["rows"] == 5 and staged["nulls"].run_id == rid

    # anybody else (no run marker) still sees the published partition
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    outside = by_kind(monitors.partition_checks("t_down", DAY, as_of=AS_OF))
    assert outside["row_count"].evidence["rows"] == 3 and outside["nulls"].status == "pass"
    runs.finish_run(rid, status="failed", now=AS_OF)
    assert len(warehouse.read_table("chain_table")) == 3


def test_a_mart_the_run_creates_is_checked_before_it_exists(home, monkeypatch):
    rid = runs.start_run("t_down", DAY, now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid)
    warehouse.replace_partition(
        "chain_table", chain(2, nulls=True), {"run_date": DAY}, written_at=AS_OF, run_id=rid
    )
    found = by_kind(monitors.partition_checks("t_down", DAY, as_of=AS_OF))
    assert found["row_count"].evidence["rows"] == 2
    assert found["nulls"].status == "fail" and found["nulls"].evidence["null_counts"] == {"amount_cents": 2}

"""A run publishes all or nothing, the runner owns its parameters, and None is a figure.

Real notebook runs (real kernels). ``staged.ipynb`` runs as the test pipeline ``t_down`` (its
config: daily, critical column ``chain_table.amount_cents``): it writes ``chain_table`` and two
partitions of ``chain_days``, reads its own partition back, runs the built-in checks, glues values
scrapbook alone cannot encode, and optionally raises at the end.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from conftest import FIXTURE_NOTEBOOKS, demo_landing, home_with_demo, workbook
from helpers.runs import records as runs
from helpers.runs import runner
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks
DAY = "2026-10-31"
AS_OF = dt.datetime(2026, 11, 1, 6, tzinfo=dt.UTC)
STAGED = FIXTURE_NOTEBOOKS / "staged.ipynb"


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table but the staging ones, as stored (byte-level values, sorted)."""
    engine = warehouse.get_engine()
    with engine.connect() as conn:
        names = sorted(t for t in sa.inspect(conn).get_table_names() if not t.startswith("staging_"))
        return {t: sorted(tuple(r) for r in conn.execute(sa.text(f'SELECT * FROM "{t}"'))) for t in names}


def staged_run(**params) -> runner.RunResult:
    return runner.run_pipeline(
        "t_down", DAY, clock=lambda: AS_OF, as_of=AS_OF, params=params, notebook_override=STAGED
    )


def test_a_run_that_fails_after_writing_leaves_every_partition_byte_identical(home):
    first = staged_run(rows=3)
    assert first.status == "succeeded", first.error
    before = snapshot()
    assert [r[2] for r in before["chain_table"]] == [100.0, 200.0, 300.0]
    assert {(r[0], r[4]) for r in before["partition_writes"]} == {
        ("chain_table", first.run_id),
        ("chain_days", first.run_id),
    }
    scraps = runs.get_scraps(first.run_id)  # glued through helpers.runs.scraps, read back by the runner
    assert scraps["margin"] is None and scraps["np_int"] == 7 and scraps["decimal"] == 1.25
    assert scraps["nested"] == {"nrr": None, "grr": None, "n": None, "k": 2}
    assert json.loads((first.archive / "scraps.json").read_text())["margin"] is None

    failed = staged_run(rows=5, null_amounts=True, fail_after_write=True)
    assert failed.status == "failed" and "failed after writing" in failed.error
    after = snapshot()
    for table in ("chain_table", "chain_days", "partition_writes"):
        assert after[table] == before[table], table
    assert after["staged_partitions"] == []
    assert not [t for t in sa.inspect(warehouse.get_engine()).get_table_names() if t.startswith("staging_")]

    # inside the failed run, its reads and its built-in checks saw what it had staged
    seen = runs.get_scraps(failed.run_id)
    assert seen["read_back"] == [None] * 5
    assert set(seen["days_seen"].values()) == {f"written by {failed.run_id}"}
    assert seen["checks"]["t_down.row_count.chain_table"]["rows"] == 5
    assert seen["checks"]["t_down.nulls.chain_table"] == {"status": "fail", "rows": 5}
    assert runs.get_run(failed.run_id).status == "failed"


def _runs_and_marts() -> dict[str, list[tuple]]:
    state = snapshot()
    return {t: rows for t, rows in state.items() if t not in ("check_results", "alerts")}


def test_runner_owned_parameters_and_an_as_of_before_the_period_are_refused(home, tmp_path_factory):
    home_with_demo(home, demo_landing(tmp_path_factory, accounts=30, months=2, seed=7, end="2026-10-31"))
    ok = workbook("run", "profit_aggregate", "--date", "2026-10", "--as-of", "2026-11-20T00:00:00Z", "-q")
    assert ok.returncode == 0, ok.stderr[-2000:]
    before = _runs_and_marts()
    archives = sorted((home / "runs" / "profit_aggregate").rglob("run.json"))
    assert before["profit_monthly"] and len(before["pipeline_runs"]) == 1

    early = workbook("run", "profit_aggregate", "--date", "2026-10", "--as-of", "2026-09-15T00:00:00Z")
    assert early.returncode == 2, early.stderr[-2000:]
    assert (
        "--as-of 2026-09-15T00:00:00Z is before profit_aggregate 2026-10 begins (2026-10-01T00:00:00Z)"
        in early.stderr
    )
    assert "Traceback" not in early.stderr
    refused = {
        "run_id": ("profit_aggregate", "2026-10", "run_id=fake"),
        "period": ("profit_aggregate", "2026-10", "period=2026-09"),
        "as_of": ("profit_aggregate", "2026-10", "as_of=2026-10-20T00:00:00Z"),
        "run_date": ("growth_daily", "2026-10-15", "run_date=2026-10-14"),
    }
    for name, (pipeline, date, pair) in refused.items():
        proc = workbook("run", pipeline, "--date", date, "-p", pair)
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert f"{name} is set by the runner" in proc.stderr, proc.stderr
    backfill = workbook(
        "backfill",
        "profit_aggregate",
        "--from",
        "2026-09-01",
        "--to",
        "2026-10-31",
        "--as-of",
        "2026-09-15T00:00:00Z",
    )
    assert backfill.returncode == 2 and "is before profit_aggregate 2026-10 begins" in backfill.stderr

    assert _runs_and_marts() == before  # nothing written, nothing recorded
    assert sorted((home / "runs" / "profit_aggregate").rglob("run.json")) == archives


def test_a_month_without_revenue_succeeds_with_a_null_margin(home, tmp_path_factory):
    home_with_demo(home, demo_landing(tmp_path_factory, accounts=30, months=2, seed=7, end="2026-10-31"))
    proc = workbook(
        "run", "profit_aggregate", "--date", "2026-06", "--as-of", "2026-11-20T00:00:00Z", "-q", "--json"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["status"] == "succeeded"
    scraps = json.loads((Path(result["archive"]) / "scraps.json").read_text())
    assert scraps["revenue_usd_cents"] == 0 and scraps["margin"] is None
    assert runs.get_scraps(result["run_id"])["margin"] is None
    row = warehouse.read_table("profit_monthly", where={"period": "2026-06"}).iloc[0]
    assert row["revenue_usd_cents"] == 0 and pd.isna(row["margin"])  # stored NULL
    assert row["run_id"] == result["run_id"]

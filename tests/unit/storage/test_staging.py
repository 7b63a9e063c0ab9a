"""Stage, then publish: a runner's run writes marts that become visible only with its success."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers.runs import records as runs
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
AS_OF = dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC)
DAY1, DAY2 = "2026-11-01", "2026-11-02"


def frame(day: str, n: int, scale: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": day,
            "account_id": [f"acc_{i:03d}" for i in range(n)],
            "amount_cents": [scale * i for i in range(n)],
        }
    )


def raw(table: str) -> list[tuple]:
    """Every row of ``table`` as stored (no run's view), sorted."""
    with warehouse.get_engine().connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"')))


def tables() -> set[str]:
    return set(sa.inspect(warehouse.get_engine()).get_table_names())


def start(day: str = DAY1) -> str:
    return runs.start_run("smoke", day, now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")


@pytest.fixture
def published(home) -> dict[str, list[tuple]]:
    """Two published partitions of ``mart`` (written outside any run), as stored."""
    warehouse.replace_partition("mart", frame(DAY1, 5), {"day": DAY1}, written_at=AS_OF, run_id="before")
    warehouse.replace_partition("mart", frame(DAY2, 3), {"day": DAY2}, written_at=AS_OF, run_id="before")
    return {"mart": raw("mart"), "partition_writes": raw("partition_writes")}


def in_run(monkeypatch, run_id: str) -> None:
    """Make this process the kernel of ``run_id``, as the runner does."""
    monkeypatch.setenv(warehouse.RUNNER_ENV, run_id)


def test_a_run_stages_its_writes_reads_them_and_publishes_them_at_once(published, monkeypatch):
    rid = start()
    in_run(monkeypatch, rid)
    later = AS_OF + dt.timedelta(hours=1)
    warehouse.replace_partition("mart", frame(DAY1, 2, scale=7), {"day": DAY1}, written_at=later, run_id=rid)
    warehouse.replace_partition("new_mart", frame(DAY1, 4), {"day": DAY1}, written_at=later, run_id=rid)

    # nothing published yet: the live tables and partition_writes are as before
    assert raw("mart") == published["mart"] and raw("partition_writes") == published["partition_writes"]
    assert "new_mart" not in tables()
    # the run itself reads what it staged
    mine = warehouse.read_table("mart")
    assert mine[mine.day == DAY1].amount_cents.tolist() == [0, 7]
    assert mine[mine.day == DAY2].amount_cents.tolist() == [0, 1, 2]
    assert warehouse.read_table("mart", where={"day": DAY1}).amount_cents.tolist() == [0, 7]
    assert len(warehouse.read_table("new_mart")) == 4
    with warehouse.get_engine().connect() as conn:
        staged = warehouse.staged_writes(conn=conn)
        assert warehouse.partition_table(conn, "mart", {"day": DAY1}).startswith("staging_")
        assert warehouse.partition_table(conn, "mart", {"day": DAY2}) == "mart"
    assert {(s["table_name"], s["row_count"], s["pipeline"]) for s in staged} == {
        ("mart", 2, "smoke"),
        ("new_mart", 4, "smoke"),
    }

    runs.finish_run(rid, status="succeeded", now=later)
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    assert runs.get_run(rid).status == "succeeded"
    after = warehouse.read_table("mart")
    assert after[after.day == DAY1].amount_cents.tolist() == [0, 7]
    assert after[after.day == DAY2].amount_cents.tolist() == [0, 1, 2]
    assert len(warehouse.read_table("new_mart")) == 4
    writes = warehouse.read_table("partition_writes").set_index(["table_name", "partition_key"])
    assert writes.loc[("mart", '{"day": "2026-11-01"}'), "run_id"] == rid
    assert writes.loc[("mart", '{"day": "2026-11-01"}'), "row_count"] == 2
    assert writes.loc[("mart", '{"day": "2026-11-02"}'), "run_id"] == "before"
    assert writes.loc[("new_mart", '{"day": "2026-11-01"}'), "row_count"] == 4
    assert not [t for t in tables() if t.startswith("staging_")]
    assert raw("staged_partitions") == []


def test_a_failed_run_leaves_every_partition_as_it_was(published, monkeypatch):
    rid = start()
    in_run(monkeypatch, rid)
    warehouse.replace_partition("mart", frame(DAY1, 9, scale=3), {"day": DAY1}, written_at=AS_OF, run_id=rid)
    warehouse.replace_partition("mart", frame(DAY2, 0), {"day": DAY2}, written_at=AS_OF, run_id=rid)
    warehouse.replace_partition("new_mart", frame(DAY1, 4), {"day": DAY1}, written_at=AS_OF, run_id=rid)
    runs.finish_run(rid, status="failed", now=AS_OF, error_summary="cell 9: ValueError")
    assert raw("mart") == published["mart"]
    assert raw("partition_writes") == published["partition_writes"]
    assert "new_mart" not in tables() and not [t for t in tables() if t.startswith("staging_")]
    assert warehouse.staged_for(rid) == []


def test_a_kernel_writes_only_for_its_own_running_run(published, monkeypatch):
    rid = start()
    in_run(monkeypatch, rid)
    with pytest.raises(ValueError, match="is not the run this kernel executes"):
        warehouse.replace_partition("mart", frame(DAY1, 1), {"day": DAY1}, written_at=AS_OF, run_id="fake")
    runs.finish_run(rid, status="failed", now=AS_OF)
    with pytest.raises(RuntimeError, match=f"run {rid} is failed; nothing was written"):
        warehouse.replace_partition("mart", frame(DAY1, 1), {"day": DAY1}, written_at=AS_OF, run_id=rid)
    in_run(monkeypatch, "no-such-run")
    with pytest.raises(RuntimeError, match="has no run record"):
        warehouse.replace_partition("mart", frame(DAY1, 1), {"day": DAY1}, written_at=AS_OF)
    assert raw("mart") == published["mart"] and raw("partition_writes") == published["partition_writes"]
    assert raw("staged_partitions") == []


def test_a_dead_runs_staging_is_discarded_by_the_next_run_of_its_partition(published, monkeypatch):
    dead = start()
    in_run(monkeypatch, dead)
    warehouse.replace_partition("mart", frame(DAY1, 2, scale=5), {"day": DAY1}, written_at=AS_OF, run_id=dead)
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    with warehouse.get_engine().begin() as c:  # its runner was SIGKILLed: a pid that no longer exists
        c.execute(
            warehouse.pipeline_runs.update()
            .where(warehouse.pipeline_runs.c.run_id == dead)
            .values(pid=2**22 + 7)
        )
    assert len(warehouse.staged_for(dead)) == 1
    start()
    assert runs.get_run(dead).status == "failed"
    assert warehouse.staged_for(dead) == [] and not [t for t in tables() if t.startswith("staging_")]
    assert raw("mart") == published["mart"]


def test_a_refusing_write_check_refuses_the_whole_publish(published, monkeypatch):
    monkeypatch.setattr(warehouse, "_write_checks", [])

    def refuse_new_mart(conn, table, key):
        if table == "new_mart":
            raise PermissionError(f"{table} {key} is locked")

    warehouse.register_write_check(refuse_new_mart)
    warehouse.register_write_check(refuse_new_mart)
    assert warehouse._write_checks == [refuse_new_mart]
    rid = start()
    in_run(monkeypatch, rid)
    warehouse.replace_partition("mart", frame(DAY1, 2, scale=7), {"day": DAY1}, written_at=AS_OF, run_id=rid)
    warehouse.replace_partition("new_mart", frame(DAY1, 4), {"day": DAY1}, written_at=AS_OF, run_id=rid)
    with pytest.raises(PermissionError, match="new_mart"):
        runs.finish_run(rid, status="succeeded", now=AS_OF)
    # nothing of the run was published, and it is not succeeded: mart's swap was rolled back too
    assert runs.get_run(rid).status == "running"
    assert raw("mart") == published["mart"] and raw("partition_writes") == published["partition_writes"]
    runs.finish_run(rid, status="failed", now=AS_OF, error_summary="refused")
    assert warehouse.staged_for(rid) == []
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    # a direct write (outside any run) is checked too
    with pytest.raises(PermissionError):
        warehouse.replace_partition("new_mart", frame(DAY1, 1), {"day": DAY1}, written_at=AS_OF)
    assert "new_mart" not in tables()


def test_staging_refuses_what_a_direct_write_refuses(published, monkeypatch):
    rid = start()
    in_run(monkeypatch, rid)
    bad = frame(DAY1, 2)
    bad["not_a_column"] = 1
    with pytest.raises(ValueError, match="not in the table"):
        warehouse.replace_partition("mart", bad, {"day": DAY1}, written_at=AS_OF, run_id=rid)
    with pytest.raises(ValueError, match=r"1 row\(s\) have day != '2026-11-01'"):
        warehouse.replace_partition(
            "mart", pd.concat([frame(DAY1, 1), frame(DAY2, 1)]), {"day": DAY1}, written_at=AS_OF, run_id=rid
        )
    assert warehouse.staged_for(rid) == []


def test_staging_the_same_partition_twice_keeps_the_last(published, monkeypatch):
    rid = start()
    in_run(monkeypatch, rid)
    warehouse.replace_partition("mart", frame(DAY1, 4, scale=2), {"day": DAY1}, written_at=AS_OF, run_id=rid)
    warehouse.replace_partition("mart", frame(DAY1, 1, scale=9), {"day": DAY1}, written_at=AS_OF, run_id=rid)
    assert warehouse.read_table("mart", where={"day": DAY1}).amount_cents.tolist() == [0]
    runs.finish_run(rid, status="succeeded", now=AS_OF)
    assert [r[2] for r in raw("mart") if r[0] == DAY1] == [0]
    assert [r for r in raw("partition_writes") if r[1] == '{"day": "2026-11-01"}'][0][2] == 1


def test_a_process_outside_a_run_writes_directly(published):
    warehouse.replace_partition("mart", frame(DAY1, 1, scale=3), {"day": DAY1}, written_at=AS_OF)
    assert [r for r in raw("mart") if r[0] == DAY1] == [(DAY1, "acc_000", 0)]
    assert raw("staged_partitions") == []

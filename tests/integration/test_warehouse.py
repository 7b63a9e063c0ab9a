"""The atomic, idempotent partition write and the ops tables, on SQLite and PostgreSQL."""

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers.runs import records as runs
from helpers.storage import warehouse

pytestmark = pytest.mark.integration
AS_OF = dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC)


def frame(day: str, n: int, scale: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": day,
            "account_id": [f"acc_{i:03d}" for i in range(n)],
            "amount_cents": [scale * 100 * i for i in range(n)],
        }
    )


def test_replace_partition_twice_gives_identical_table(warehouse_url):
    warehouse.replace_partition("mart", frame("2026-11-01", 5), {"day": "2026-11-01"}, written_at=AS_OF)
    warehouse.replace_partition("mart", frame("2026-11-02", 3), {"day": "2026-11-02"}, written_at=AS_OF)
    first = warehouse.read_table("mart")
    warehouse.replace_partition("mart", frame("2026-11-01", 5), {"day": "2026-11-01"}, written_at=AS_OF)
    second = warehouse.read_table("mart")
    pd.testing.assert_frame_equal(first, second)
    assert len(second) == 8
    # a changed partition replaces only itself
    warehouse.replace_partition(
        "mart", frame("2026-11-01", 2, scale=7), {"day": "2026-11-01"}, written_at=AS_OF
    )
    after = warehouse.read_table("mart")
    assert len(after) == 5
    assert after[after.day == "2026-11-01"].amount_cents.tolist() == [0, 700]
    assert after[after.day == "2026-11-02"].amount_cents.tolist() == [0, 100, 200]
    writes = warehouse.read_table("partition_writes")
    assert writes.set_index("partition_key").row_count.to_dict() == {
        '{"day": "2026-11-01"}': 2,
        '{"day": "2026-11-02"}': 3,
    }


def test_failed_replace_leaves_the_old_partition(warehouse_url):
    warehouse.replace_partition("mart", frame("2026-11-01", 4), {"day": "2026-11-01"}, written_at=AS_OF)
    bad = frame("2026-11-01", 2)
    bad["not_a_column"] = 1
    with pytest.raises(ValueError, match="not in the table"):
        warehouse.replace_partition("mart", bad, {"day": "2026-11-01"}, written_at=AS_OF)
    # a failure inside the transaction (a NULL in a NOT NULL column) rolls back the delete too
    eng = warehouse.get_engine()
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE strict_mart (day VARCHAR(10) NOT NULL, v INTEGER NOT NULL)"))
    warehouse.replace_partition(
        "strict_mart", pd.DataFrame({"day": ["d1"], "v": [1]}), {"day": "d1"}, written_at=AS_OF
    )
    with pytest.raises(sa.exc.IntegrityError):
        warehouse.replace_partition(
            "strict_mart",
            pd.DataFrame({"day": ["d1", "d1"], "v": [2, None]}),
            {"day": "d1"},
            written_at=AS_OF,
        )
    assert warehouse.read_table("strict_mart").v.tolist() == [1]
    assert len(warehouse.read_table("mart")) == 4


def test_rows_outside_the_partition_are_refused(warehouse_url):
    with pytest.raises(ValueError, match=r"1 row\(s\) have day != '2026-11-01'"):
        warehouse.replace_partition(
            "mart",
            pd.concat([frame("2026-11-01", 2), frame("2026-11-02", 1)]),
            {"day": "2026-11-01"},
            written_at=AS_OF,
        )


def test_run_lock_is_enforced_by_the_database(warehouse_url):
    rid = runs.start_run("smoke", "2026-11-01", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    with pytest.raises(runs.RunConflict, match=rid):
        runs.start_run("smoke", "2026-11-01", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    other = runs.start_run("smoke", "2026-11-02", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    runs.finish_run(rid, status="succeeded", now=AS_OF + dt.timedelta(minutes=1))
    again = runs.start_run("smoke", "2026-11-01", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    assert len({rid, other, again}) == 3
    rec = runs.get_run(rid)
    assert rec.status == "succeeded" and rec.duration_s == 60 and rec.started_at.tzinfo is not None


def test_a_dead_runner_does_not_hold_the_lock(warehouse_url):
    rid = runs.start_run("smoke", "2026-11-01", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    with warehouse.get_engine().begin() as c:  # simulate a SIGKILLed runner: pid that no longer exists
        c.execute(
            warehouse.pipeline_runs.update()
            .where(warehouse.pipeline_runs.c.run_id == rid)
            .values(pid=2**22 + 7)
        )
    new = runs.start_run("smoke", "2026-11-01", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    assert runs.get_run(rid).status == "failed"
    assert "died without recording an end" in runs.get_run(rid).error_summary
    assert runs.get_run(new).status == "running"

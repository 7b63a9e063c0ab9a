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
    assert "runner died" in runs.get_run(rid).error_summary
    assert runs.get_run(new).status == "running"


def typed(day: str, n: int) -> pd.DataFrame:
    """A frame of every kind of column the marts hold, NULLs included."""
    return pd.DataFrame(
        {
            "day": day,
            "booked": [dt.date.fromisoformat(day)] * n,
            "account_id": [f"acc_{i:03d}" for i in range(n)],
            "amount_cents": [100 * i for i in range(n)],
            "ratio": [None if i == 1 else i / 3 for i in range(n)],
            "flag": [i % 2 == 0 for i in range(n)],
            "at": [pd.Timestamp("2026-11-01 06:00") + pd.Timedelta(minutes=i) for i in range(n)],
            "note": [None if i == 2 else f"n{i}" for i in range(n)],
        }
    )


DTYPE = {
    "day": sa.String(10),
    "booked": sa.Date(),
    "amount_cents": sa.BigInteger(),
    "ratio": sa.Float(),
    "note": sa.Text(),
}


def stored(table: str) -> tuple[list[tuple], list[tuple]]:
    """``table``'s rows as stored and its column types as declared."""
    with warehouse.get_engine().connect() as conn:
        rows = sorted(tuple(r) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"')))
        columns = [(c["name"], str(c["type"]), c["nullable"]) for c in sa.inspect(conn).get_columns(table)]
    return rows, columns


def test_a_published_partition_is_stored_as_a_direct_write_would_store_it(warehouse_url, monkeypatch):
    """Staged, read back by its run and published: the same rows and column types as a direct write."""
    for day in ("2026-11-01", "2026-11-02"):
        warehouse.replace_partition("direct", typed(day, 4), {"day": day}, written_at=AS_OF, dtype=DTYPE)
    rid = runs.start_run("smoke", "2026-11-01", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid)
    for day in ("2026-11-01", "2026-11-02"):  # a new mart: created at the publish
        warehouse.replace_partition(
            "via_run", typed(day, 4), {"day": day}, written_at=AS_OF, run_id=rid, dtype=DTYPE
        )
    assert not sa.inspect(warehouse.get_engine()).has_table("via_run")
    pd.testing.assert_frame_equal(
        warehouse.read_table("via_run", where={"day": "2026-11-02"}),
        warehouse.read_table("direct", where={"day": "2026-11-02"}),
    )
    runs.finish_run(rid, status="succeeded", now=AS_OF)
    assert stored("via_run") == stored("direct")

    # the next run replaces one partition of the existing mart; its reads see it among the others
    rid2 = runs.start_run("smoke", "2026-11-02", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid2)
    smaller = typed("2026-11-02", 2)
    warehouse.replace_partition("via_run", smaller, {"day": "2026-11-02"}, written_at=AS_OF, run_id=rid2)
    seen = warehouse.read_table("via_run")
    assert seen.groupby("day").size().to_dict() == {"2026-11-01": 4, "2026-11-02": 2}
    runs.finish_run(rid2, status="succeeded", now=AS_OF)
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    warehouse.replace_partition("direct", smaller, {"day": "2026-11-02"}, written_at=AS_OF)
    assert stored("via_run") == stored("direct")


def test_a_failed_run_leaves_the_warehouse_as_it_was(warehouse_url, monkeypatch):
    warehouse.replace_partition("mart", frame("2026-11-01", 4), {"day": "2026-11-01"}, written_at=AS_OF)
    before = stored("mart"), stored("partition_writes")
    rid = runs.start_run("smoke", "2026-11-01", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid)
    warehouse.replace_partition(
        "mart", frame("2026-11-01", 9, 3), {"day": "2026-11-01"}, written_at=AS_OF, run_id=rid
    )
    warehouse.replace_partition(
        "mart", frame("2026-11-03", 2), {"day": "2026-11-03"}, written_at=AS_OF, run_id=rid
    )
    warehouse.replace_partition(
        "other", frame("2026-11-01", 2), {"day": "2026-11-01"}, written_at=AS_OF, run_id=rid
    )
    assert len(warehouse.read_table("mart")) == 11
    runs.finish_run(rid, status="failed", now=AS_OF, error_summary="cell 7: ValueError")
    assert (stored("mart"), stored("partition_writes")) == before
    names = sa.inspect(warehouse.get_engine()).get_table_names()
    assert "other" not in names and not [t for t in names if t.startswith("staging_")]


def test_an_older_mart_gains_the_columns_a_newer_version_declares_at_its_next_write(
    warehouse_url, monkeypatch
):
    warehouse.replace_partition("mart", frame("2026-11-01", 3), {"day": "2026-11-01"}, written_at=AS_OF)
    newer = frame("2026-11-02", 2).assign(bridge_cents=[5, 7], note="x")
    with pytest.raises(ValueError, match=r"columns \['bridge_cents', 'note'\] are not in the table"):
        warehouse.replace_partition("mart", newer, {"day": "2026-11-02"}, written_at=AS_OF)
    monkeypatch.setitem(warehouse._added_columns, "mart", {"bridge_cents": sa.BigInteger()})
    with pytest.raises(
        ValueError, match=r"columns \['note'\] are not in the table"
    ):  # undeclared: still refused
        warehouse.replace_partition("mart", newer, {"day": "2026-11-02"}, written_at=AS_OF)
    assert "bridge_cents" not in warehouse.read_table("mart").columns  # the refusal rolled the ALTER back
    rid = runs.start_run("smoke", "2026-11-02", now=AS_OF, as_of=AS_OF, parameters={}, code_version="t")
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid)
    warehouse.replace_partition("mart", newer.drop(columns="note"), {"day": "2026-11-02"}, written_at=AS_OF,
                                run_id=rid)  # fmt: skip
    runs.finish_run(rid, status="succeeded", now=AS_OF)
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    table = warehouse.read_table("mart").sort_values(["day", "account_id"])
    assert table["bridge_cents"].isna().tolist() == [True, True, True, False, False]
    assert table["bridge_cents"].dropna().astype(int).tolist() == [5, 7]
    [change] = warehouse.read_table("schema_changes").to_dict("records")
    assert (change["table_name"], change["column_name"], change["run_id"]) == ("mart", "bridge_cents", rid)
    assert change["column_type"] == "BIGINT"

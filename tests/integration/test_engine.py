"""The engine factory: the same PySpark-API code gives identical results on DuckDB and Spark."""

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def events_parquet(tmp_path) -> str:
    ts = pd.Timestamp("2026-10-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "messageId": ["m1", "m1", "m2", "m3", "m3", "m3", "m4"],
            "account_id": ["a", "a", "a", "b", "b", "b", "b"],
            "timestamp": [ts, ts, ts + pd.Timedelta(hours=30), ts, ts, ts, ts + pd.Timedelta(hours=1)],
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, coerce_timestamps="us")
    return str(path)


def dedup_daily(eng, path: str):
    """Written once against the PySpark API: dedup by messageId, count per account and day."""
    F, W = eng.F, eng.Window
    df = eng.read_parquet([path])
    first = df.withColumn("rn", F.row_number().over(W.partitionBy("messageId").orderBy(F.col("timestamp"))))
    deduped = first.where(F.col("rn") == 1).drop("rn")
    return deduped.groupBy("account_id", F.to_date("timestamp").alias("date")).agg(
        F.count("*").alias("events")
    )


def test_both_engines_give_identical_results(engines, events_parquet):
    results = {e.name: e.to_pandas(dedup_daily(e, events_parquet), ["account_id", "date"]) for e in engines}
    expected = pd.DataFrame(
        {
            "account_id": ["a", "a", "b"],
            "date": [dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 1)],
            "events": [1, 1, 2],
        }
    )
    for name, got in results.items():
        got["date"] = pd.to_datetime(got["date"]).dt.date
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=name)


def test_write_parquet_replaces_the_folder_with_the_whole_result_on_both_engines(
    engines, events_parquet, tmp_path
):
    for eng in engines:
        out = tmp_path / f"daily-{eng.name}"
        out.mkdir()
        (out / "stale.parquet").write_bytes(b"left by an earlier run")  # replaced, not mixed in
        rows = eng.write_parquet(dedup_daily(eng, events_parquet), out)
        got = pq.read_table(out).to_pandas().sort_values(["account_id", "date"]).reset_index(drop=True)
        assert rows == len(got) == 3, eng.name
        assert not (out / "stale.parquet").exists()
        got["date"] = pd.to_datetime(got["date"]).dt.date
        want = eng.to_pandas(dedup_daily(eng, events_parquet), ["account_id", "date"])
        want["date"] = pd.to_datetime(want["date"]).dt.date
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=eng.name)


def test_unknown_engine_is_a_clear_error(monkeypatch):
    from helpers.storage import engine

    monkeypatch.setenv("WORKBOOK_ENGINE", "flink")
    with pytest.raises(ValueError, match="WORKBOOK_ENGINE: expected one of duckdb, spark, got 'flink'"):
        engine.get_engine()

"""The DuckDB engine's cheaper plan building gives the rows SQLFrame's own path gives."""

from __future__ import annotations

import pandas as pd


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["w2026-10-31", "m2026-10-31", "p2026-10"],
            "n": [7, 30, 31],
            "lo": pd.to_datetime(["2026-10-25", "2026-10-02", "2026-10-01"]),
        }
    )


def _shape(eng, df):
    F = eng.F
    return df.select(
        F.col("label").alias("label"),
        (F.col("n") + F.lit(1)).cast("long").alias("n1"),
        F.to_date(F.col("lo")).alias("lo"),
    )


def test_create_dataframe_as_a_table_gives_the_literal_rows(duckdb_engine):
    eng = duckdb_engine
    frame = _frame()
    table = eng.to_pandas(_shape(eng, eng.create_dataframe(frame)), ["label"])
    literal = eng.to_pandas(_shape(eng, eng.session.createDataFrame(frame)), ["label"])
    assert table.to_dict("records") == literal.to_dict("records")
    assert table["n1"].tolist() == [31, 32, 8]  # sorted by label: m, p, w


def test_create_dataframe_with_missing_text_keeps_sqlframes_rows(duckdb_engine):
    eng = duckdb_engine
    frame = pd.DataFrame({"account_id": ["A1", None], "value": [1, 2]})
    out = eng.to_pandas(eng.create_dataframe(frame), ["value"])
    assert out["account_id"].tolist() == ["A1", None]
    assert out["value"].tolist() == [1, 2]


def test_checkpoint_gives_the_same_rows_as_the_dataframe(duckdb_engine):
    eng = duckdb_engine
    df = _shape(eng, eng.create_dataframe(_frame()))
    kept = eng.checkpoint(df, "test_checkpoint")
    F = eng.F
    assert eng.to_pandas(kept.where(F.col("n1") > 8), ["label"]).to_dict("records") == eng.to_pandas(
        df.where(F.col("n1") > 8), ["label"]
    ).to_dict("records")

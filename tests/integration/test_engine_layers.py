"""Projections written as one view (``Engine.materialize_layers``) and the first-copy window give
the rows the DataFrame API's own path gives, on both engines."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.engagement import transforms

pytestmark = pytest.mark.integration


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "messageId": ["m1", "m2", "m3", "m4"],
            "Context": ['{"groupId": "a"}', '{"groupId": ""}', None, '{"x": 1}'],
            "n": [1, 2, 3, 4],
        }
    )


def _layers(eng):
    F = eng.F
    first = [
        F.col("messageId").alias("message_id"),
        F.col("Context").alias("context"),
        (F.col("n") * F.lit(10)).alias("n"),  # a name reused by the next layer
    ]
    second = [
        F.col("message_id").alias("message_id"),
        F.nullif(eng.json_string(F.col("context"), "$.groupId"), F.lit("")).alias("account_id"),
        (F.col("n") + F.lit(1)).cast("long").alias("n"),
    ]
    third = [*[F.col(c).alias(c) for c in ("message_id", "account_id", "n")], (F.col("n") > 20).alias("big")]
    return [first, second, third]


def test_materialize_layers_gives_the_rows_of_the_selects(duckdb_engine):
    eng = duckdb_engine
    source = eng.create_dataframe(_frame())
    kept = eng.materialize_layers(source, _layers(eng), "test_layers")
    selected = source
    for columns in _layers(eng):
        selected = selected.select(*columns)
    got = eng.to_pandas(kept, ["message_id"])
    assert got.to_dict("records") == eng.to_pandas(selected, ["message_id"]).to_dict("records")
    assert got["account_id"].tolist() == ["a", None, None, None]  # "" is NULL, as an absent path
    assert got["n"].tolist() == [11, 21, 31, 41]
    assert got["big"].tolist() == [False, True, True, True]
    eng.release(kept, "test_layers")
    assert "test_layers" not in {r[0] for r in eng.session._conn.execute("SHOW TABLES").fetchall()}


def _copies() -> pd.DataFrame:
    t = pd.Timestamp("2026-10-01 10:00")
    rows = [
        # m1: the earliest copy is quarantined; the first accepted copy (t+1h) is kept, 2 accepted copies
        ("m1", t, "bad"),
        ("m1", t + pd.Timedelta(hours=1), None),
        ("m1", t + pd.Timedelta(hours=2), None),
        # m2: every copy quarantined: no event
        ("m2", t, "bad"),
        ("m2", t + pd.Timedelta(hours=1), "bad"),
        # m3: one copy
        ("m3", t + pd.Timedelta(hours=30), None),
    ]
    frame = pd.DataFrame(rows, columns=["message_id", "received_at", "reason"])
    frame["event_ts"] = t - pd.Timedelta(minutes=5)
    frame["account_id"] = "a"
    frame["user_id"] = "u"
    frame["platform"] = "web"
    frame["session_id"] = "s"
    return frame


def test_first_copies_keeps_the_earliest_accepted_copy_on_both_engines(engines):
    results = {}
    for eng in engines:
        rows = eng.create_dataframe(_copies())
        events = transforms.first_copies(eng, rows)
        results[eng.name] = eng.to_pandas(events, ["message_id"])
        eng.release(events, "engagement_events")
    duck = results["duckdb"]
    assert duck["message_id"].tolist() == ["m1", "m3"]
    assert duck["copies"].tolist() == [2, 1]
    assert duck["received_at"].tolist() == [
        pd.Timestamp("2026-10-01 11:00"),
        pd.Timestamp("2026-10-02 16:00"),
    ]
    assert duck["late"].tolist() == [False, True]
    assert duck["received_date"].tolist() == [dt.date(2026, 10, 1), dt.date(2026, 10, 2)]
    pd.testing.assert_frame_equal(duck, results["spark"], check_dtype=False)

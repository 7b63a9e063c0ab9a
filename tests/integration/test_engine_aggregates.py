"""Aggregations written as one table (``Engine.materialize_aggregates``) give the rows of the
chained ``groupBy``/``agg`` on both engines, and the top accounts ranked from the per account-day
counts (``transforms.account_days``) are the same accounts, in the same order, on both engines."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.engagement import transforms

pytestmark = pytest.mark.integration

D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def _events() -> pd.DataFrame:
    rows = [
        # account, day, user, platform, session
        ("a", D1, "u1", "web", "s1"),
        ("a", D1, "u1", "web", "s1"),
        ("a", D1, "u1", "mobile", "s2"),
        ("a", D1, "u2", "web", None),  # no session: an event, not a session
        ("a", D1, None, "web", "s3"),  # no user (v2): counted as an event, not as a user
        ("b", D1, "u3", "mobile", "s4"),
        ("b", D1, "u3", "mobile", "s4"),
        ("b", D1, "u3", "mobile", "s4"),
        ("c", D1, "u4", "web", "s5"),
        ("c", D1, "u4", "web", "s6"),
        ("c", D1, "u4", "web", "s6"),  # c ties b on D1 (3 events): b ranks first (account order)
        ("a", D2, "u1", "web", "s7"),
        ("c", D2, "u4", "mobile", "s8"),
        ("c", D2, "u4", "mobile", "s8"),
        ("b", dt.date(2026, 10, 3), "u3", "web", "s9"),  # a day not asked for
    ]
    frame = pd.DataFrame(rows, columns=["account_id", "event_date", "user_id", "platform", "session_id"])
    frame["event_date"] = pd.to_datetime(frame["event_date"])
    return frame


def _source(eng):
    F = eng.F
    df = eng.create_dataframe(_events())
    return df.select(
        *[F.col(c).alias(c) for c in ("account_id", "user_id", "platform", "session_id")],
        F.to_date(F.col("event_date")).alias("event_date"),
    )


def _steps(eng):
    F = eng.F
    first = (
        F.col("event_date") <= F.lit(D2),
        [
            F.col("account_id").alias("account_id"),
            F.col("event_date").alias("date"),
            F.col("user_id").alias("user_id"),
        ],
        [F.count(F.lit(1)).alias("events"), F.count(F.col("session_id")).alias("with_session")],
    )
    second = (
        F.col("user_id").isNotNull(),
        [F.col("date").alias("date")],
        [
            F.count(F.col("user_id")).cast("long").alias("users"),
            F.sum(F.col("events")).cast("long").alias("events"),
        ],
    )
    return [first, second]


def test_materialize_aggregates_gives_the_rows_of_the_chained_aggregations(engines):
    results = {}
    for eng in engines:
        source = _source(eng)
        kept = eng.materialize_aggregates(source, _steps(eng), "test_aggregates")
        chained = source
        for cond, keys, aggregates in _steps(eng):
            chained = chained.where(cond).groupBy(*keys).agg(*aggregates)
        got = eng.to_pandas(kept, ["date"])
        assert got.to_dict("records") == eng.to_pandas(chained, ["date"]).to_dict("records")
        results[eng.name] = got
        eng.release(kept, "test_aggregates")
    duck = results["duckdb"]
    assert duck["date"].tolist() == [D1, D2]
    assert duck["users"].tolist() == [4, 2]  # u1 u2 u3 u4; u1 u4 (the user-less event is filtered)
    assert duck["events"].tolist() == [10, 3]
    pd.testing.assert_frame_equal(duck, results["spark"], check_dtype=False)
    tables = {r[0] for r in engines[0].session._conn.execute("SHOW TABLES").fetchall()}
    assert "test_aggregates" not in tables


def test_top_accounts_are_ranked_from_the_account_day_counts_on_both_engines(engines):
    results = {}
    for eng in engines:
        counts = transforms.account_days(eng, _source(eng), [D1, D2])
        daily = eng.to_pandas(counts, ["date", "account_id"])
        top = eng.to_pandas(transforms.top_accounts(eng, counts, n=2), ["date", "rank"])
        eng.release(counts, "engagement_account_days")
        results[eng.name] = (daily, top)
    daily, top = results["duckdb"]
    a1 = daily[(daily["date"] == D1) & (daily["account_id"] == "a")].iloc[0]
    assert (a1["active_users"], a1["events"], a1["sessions"]) == (2, 5, 3)  # s1 s2 s3; u1 u2
    assert (a1["web_users"], a1["web_events"], a1["mobile_users"], a1["mobile_events"]) == (2, 4, 1, 1)
    assert sorted(daily["date"].unique()) == [D1, D2]  # the day not asked for is not counted
    assert top[["date", "account_id", "events", "day_events", "rank"]].values.tolist() == [
        [D1, "a", 5, 11, 1],
        [D1, "b", 3, 11, 2],  # ties c on 3 events: the account order decides
        [D2, "c", 2, 3, 1],
        [D2, "a", 1, 3, 2],
    ]
    for name, frame in zip(("daily", "top"), results["spark"], strict=True):
        pd.testing.assert_frame_equal(
            results["duckdb"][0 if name == "daily" else 1], frame, check_dtype=False, obj=name
        )

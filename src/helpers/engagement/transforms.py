"""The Engagement transformations, engine side: written once against the PySpark DataFrame API.

They run on the engine ``helpers.storage.engine`` gives (SQLFrame on DuckDB by default, Apache
Spark by configuration) and return engine DataFrames; nothing here collects rows.

- :func:`conformed`: the landed rows in the schema contract's shape (``helpers.engagement.event_contract``),
  each accepted or quarantined with a reason;
- :func:`first_copies`: one copy per ``messageId`` (the earliest received): exactly-once counting
  over the at-least-once extract; an event is *late* when it was received more than 24 hours
  after its event time (clean mobile syncs land within 20 h);
- :func:`account_days` (kept), :func:`daily_per_account`, :func:`user_days`,
  :func:`daily_actives`, :func:`range_actives`, :func:`monthly_per_account`: the roll-ups, by
  event time (``timestamp``);
- :func:`top_accounts`: the top keys' shares of a day's events, from :func:`account_days`.

**Skew** (``data_skew_oom``): events are aggregated to the account grain (hash aggregation with
map-side combine on both engines) before any account-level join, so one account holding 30 % of
the events never puts 30 % of the rows into one join partition; the Spark session also runs with
AQE skew-join splitting. :func:`top_accounts` reports the top keys' shares on either engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from helpers.engagement import event_contract, json_fields
from helpers.engagement.event_contract import CONTRACT, EventContract
from helpers.engagement.marts import DAILY_COLUMNS
from helpers.engagement.window import Month
from helpers.storage.engine import Engine

LATE_AFTER_HOURS = 24
TOP_KEYS = 5
PLATFORMS = ("web", "mobile")


def conformed(
    engine: Engine, events: Any, contract: EventContract = CONTRACT, *, name: str = "engagement_conformed"
) -> Any:
    """Contract-conformed rows with ``received_date`` and ``received_hour``.

    Kept on Spark (re-parsing JSON in the JVM is the slow part); re-scanned on DuckDB, through a
    view written once from the contract's projections
    (:meth:`helpers.storage.engine.Engine.materialize_layers`). ``events``: the landed rows (the
    contract reads :data:`helpers.engagement.event_contract.LANDED_COLUMNS` and, when read, the
    provenance columns). ``name``: what the engine keeps them under (:meth:`Engine.release` drops it).
    """
    F = engine.F
    layers = event_contract.conform_layers(engine, events.columns, contract)
    received = [
        *[F.col(c).alias(c) for c in event_contract.CONFORMED],
        F.to_date(F.col("received_at")).alias("received_date"),
        F.hour(F.col("received_at")).alias("received_hour"),
    ]
    return engine.materialize_layers(events, [*layers, received], name)


FIRST_COPY_ORDER = ("received_at", "event_ts", "account_id", "user_id", "platform", "session_id")


def first_copies(engine: Engine, rows: Any) -> Any:
    """One row per accepted ``message_id``: its earliest-received copy, and how many copies arrived.

    ``row_number`` over the message's copies ordered by ``received_at`` and then every other
    kept field picks the same copy whatever order the copies were read in (the hand-written
    ``QUALIFY row_number() = 1``; measured faster on DuckDB than ``min`` over a struct).

    The window ranks every copy, accepted ones first, and counts the accepted ones; the
    ``reason IS NULL`` filter comes after it. A filter before the window is pushed by DuckDB
    through the contract's projection, which then computes the contract's fields (JSON
    extraction included) twice per row, once for the filter and once for the columns (1M
    events: 2.3 -> 1.6 CPU seconds). The first copy of a message with an accepted copy is the
    same either way; a message without one ranks a quarantined copy first and is dropped.
    """
    F, W = engine.F, engine.Window
    accepted = F.col("reason").isNull()
    copy = W.partitionBy("message_id")
    order = copy.orderBy(accepted.desc(), *[F.col(c).asc_nulls_last() for c in FIRST_COPY_ORDER])
    ranked = rows.select(
        *[F.col(c).alias(c) for c in ("message_id", *FIRST_COPY_ORDER)],
        accepted.alias("_accepted"),
        F.row_number().over(order).alias("_copy"),
        F.count(F.when(accepted, F.lit(1))).over(copy).alias("_copies"),
    )
    late = F.timestamp_add("HOUR", F.lit(LATE_AFTER_HOURS), F.col("event_ts"))
    out = ranked.where(F.col("_accepted") & (F.col("_copy") == 1)).select(
        *[F.col(c).alias(c) for c in ("message_id", *FIRST_COPY_ORDER)],
        F.col("_copies").cast("long").alias("copies"),
        F.to_date(F.col("event_ts")).alias("event_date"),
        F.to_date(F.col("received_at")).alias("received_date"),
        (F.col("received_at") > late).alias("late"),
    )
    return engine.materialize(out, "engagement_events")


def in_days(engine: Engine, col: str, days: Sequence[dt.date]) -> Any:
    """The condition ``col`` is one of ``days`` (false for no days)."""
    F = engine.F
    if not days:
        return F.lit(False)
    return F.col(col).isin(*[F.lit(d) for d in days])


def between(engine: Engine, col: str, lo: dt.date, hi: dt.date) -> Any:
    """The condition ``lo <= col <= hi``."""
    F = engine.F
    return (F.col(col) >= F.lit(lo)) & (F.col(col) <= F.lit(hi))


def full_join(engine: Engine, left: Any, right: Any, keys: Sequence[str]) -> Any:
    """Full outer join on ``keys``, each key coalesced from both sides.

    Not ``join(on=[...], how="full")``: Spark coalesces USING keys of a full join, SQLFrame on
    DuckDB keeps the left side's (NULL for rows only on the right), so the keys are explicit.
    """
    F = engine.F
    r = right.select(*[F.col(c).alias(f"_r_{c}" if c in keys else c) for c in right.columns])
    cond = None
    for k in keys:
        c = left[k] == r[f"_r_{k}"]
        cond = c if cond is None else cond & c
    joined = left.join(r, on=cond, how="full")
    rest = [c for c in (*left.columns, *right.columns) if c not in keys]
    return joined.select(
        *[F.coalesce(F.col(k), F.col(f"_r_{k}")).alias(k) for k in keys],
        *[F.col(c).alias(c) for c in dict.fromkeys(rest)],
    )


def account_days(engine: Engine, events: Any, days: Sequence[dt.date]) -> Any:
    """Per account and event day of ``days``: the event counts of ``engagement_daily`` (users,
    events and sessions, in total and per platform), computed once and kept
    (:meth:`helpers.storage.engine.Engine.materialize_aggregates`, released as
    ``engagement_account_days``) for :func:`daily_per_account` and :func:`top_accounts`: the
    top accounts are ranked from these counts, not from a second pass over the events.

    Three plain aggregations and no distinct count: per user, platform and session (events),
    per user (events, sessions, platforms used), per account. Spark expands a multi-distinct
    aggregate into one copy of the rows per distinct column (7x in one aggregation); DuckDB
    plans even one ``count(DISTINCT)`` as two more aggregations and a join (the session stage
    instead: 1.6 -> 1.2 CPU seconds at 1M events). A user's sessions are the distinct
    (platform, session) pairs of the first stage, the same as summing its distinct sessions per
    platform; a session belongs to one user on one platform, so each is counted once.
    """
    F = engine.F

    def on(platform: str) -> Any:
        return F.col("platform") == platform

    def named(*cols: str) -> list[Any]:
        return [F.col(c).alias(c) for c in cols]

    per_session = (
        in_days(engine, "event_date", days),
        [
            *named("account_id"),
            F.col("event_date").alias("date"),
            *named("user_id", "platform", "session_id"),
        ],
        [F.count(F.lit(1)).alias("events")],
    )
    per_user = (
        None,
        named("account_id", "date", "user_id"),
        [
            F.sum(F.col("events")).alias("events"),
            F.count(F.col("session_id")).alias("sessions"),  # NULL (no session) is not counted
            *[
                x
                for p in PLATFORMS
                for x in (
                    F.max(F.when(on(p), F.lit(1)).otherwise(F.lit(0))).alias(f"{p}_users"),
                    F.sum(F.when(on(p), F.col("events")).otherwise(F.lit(0))).alias(f"{p}_events"),
                    F.count(F.when(on(p), F.col("session_id"))).alias(f"{p}_sessions"),
                )
            ],
        ],
    )
    known = F.col("user_id").isNotNull()  # v2 does not require a user: its events count, not as a user
    per_account = (
        None,
        named("account_id", "date"),
        [
            F.count(F.col("user_id")).cast("long").alias("active_users"),
            F.sum(F.col("events")).cast("long").alias("events"),
            F.sum(F.col("sessions")).cast("long").alias("sessions"),
            *[
                F.sum(
                    F.when(known, F.col(f"{p}_{k}")).otherwise(F.lit(0))
                    if k == "users"
                    else F.col(f"{p}_{k}")
                )
                .cast("long")
                .alias(f"{p}_{k}")
                for p in PLATFORMS
                for k in ("users", "events", "sessions")
            ],
        ],
    )
    return engine.materialize_aggregates(
        events, [per_session, per_user, per_account], "engagement_account_days"
    )


def daily_per_account(engine: Engine, per_day: Any, api: Any, days: Sequence[dt.date]) -> Any:
    """``engagement_daily`` rows (:data:`DAILY_COLUMNS`) for ``days``: per account and event day,
    the event counts of :func:`account_days` (``per_day``) joined with the API requests."""
    F = engine.F
    ap = engine.checkpoint(api_daily(engine, api, days), "engagement_daily_api")
    joined = full_join(engine, per_day.where(in_days(engine, "date", days)), ap, ["account_id", "date"])
    counts = [c for c in DAILY_COLUMNS if c not in ("date", "account_id")]
    return joined.select(
        F.col("date").alias("date"),
        F.col("account_id").alias("account_id"),
        *[F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c) for c in counts],
    )


API_REQUIRED = ("request_id", "account_id", "timestamp")


def api_unusable(engine: Engine, api: Any) -> Any:
    """``api_logs`` rows lacking a value the counts need (``reason``: ``missing <column>``,
    ``field``), with the delivery file and row they were landed in (:func:`api_requests` skips them)."""
    F = engine.F
    reason = F.when(F.col(API_REQUIRED[0]).isNull(), F.lit(API_REQUIRED[0]))
    for c in API_REQUIRED[1:]:
        reason = reason.when(F.col(c).isNull(), F.lit(c))
    return api.select(
        F.col("request_id").alias("request_id"),
        F.col("account_id").alias("account_id"),
        reason.alias("field"),
        *json_fields.delivery_columns(engine),
    ).where(F.col("field").isNotNull())


def api_requests(engine: Engine, api: Any) -> Any:
    """``api_logs`` deduplicated by ``request_id`` (a re-delivered file repeats its rows); rows
    lacking a request id, account or time are not counted (:func:`api_unusable` lists them)."""
    F = engine.F
    usable = F.col(API_REQUIRED[0]).isNotNull()
    for c in API_REQUIRED[1:]:
        usable = usable & F.col(c).isNotNull()
    api = api.where(usable)
    first = F.min(
        F.struct(
            F.col("timestamp").alias("timestamp"),
            F.col("account_id").alias("account_id"),
            F.col("api_key_id").alias("api_key_id"),
        )
    ).alias("first")
    return (
        api.groupBy("request_id")
        .agg(first)
        .select(
            F.col("first.account_id").alias("account_id"),
            F.col("first.api_key_id").alias("api_key_id"),
            F.to_date(F.col("first.timestamp")).alias("date"),
        )
    )


def api_daily(engine: Engine, api: Any, days: Sequence[dt.date]) -> Any:
    """Per account and day of ``days``: API requests and distinct keys."""
    F = engine.F
    return (
        api.where(in_days(engine, "date", days))
        .groupBy(F.col("account_id").alias("account_id"), F.col("date").alias("date"))
        .agg(
            F.count(F.lit(1)).cast("long").alias("api_requests"),
            F.countDistinct(F.col("api_key_id")).cast("long").alias("api_keys"),
        )
    )


def user_days(engine: Engine, events: Any, first: dt.date, last: dt.date) -> Any:
    """Distinct (event day, account, user) of accepted events in [first, last]."""
    F = engine.F
    return (
        events.where(between(engine, "event_date", first, last) & F.col("user_id").isNotNull())
        .select(
            F.col("event_date").alias("date"),
            F.col("account_id").alias("account_id"),
            F.col("user_id").alias("user_id"),
        )
        .distinct()
    )


def daily_actives(engine: Engine, ud: Any) -> Any:
    """Per day: DAU and daily active accounts."""
    F = engine.F
    return ud.groupBy(F.col("date").alias("date")).agg(
        F.countDistinct(F.col("user_id")).cast("long").alias("dau"),
        F.countDistinct(F.col("account_id")).cast("long").alias("daily_active_accounts"),
    )


def _ranges_frame(engine: Engine, rows: Sequence[tuple[str, dt.date, dt.date]]) -> Any:
    """A small frame of (label, lo, hi) date ranges to join event days against."""
    frame = pd.DataFrame(rows, columns=["label", "lo", "hi"])
    frame["lo"] = pd.to_datetime(frame["lo"])
    frame["hi"] = pd.to_datetime(frame["hi"])
    F = engine.F
    df = engine.create_dataframe(frame)
    return df.select(
        F.col("label").alias("label"),
        F.to_date(F.col("lo")).alias("lo"),
        F.to_date(F.col("hi")).alias("hi"),
    )


def range_actives(engine: Engine, ud: Any, ranges: Sequence[tuple[str, dt.date, dt.date]]) -> Any:
    """Per labelled date range: distinct active users and accounts (WAU, MAU, month to date)."""
    F = engine.F
    r = _ranges_frame(engine, ranges)
    joined = ud.join(r, on=(ud["date"] >= r["lo"]) & (ud["date"] <= r["hi"]), how="inner")
    return joined.groupBy(F.col("label").alias("label")).agg(
        F.countDistinct(F.col("user_id")).cast("long").alias("users"),
        F.countDistinct(F.col("account_id")).cast("long").alias("accounts"),
    )


def monthly_per_account(engine: Engine, events: Any, api: Any, months: Sequence[Month]) -> Any:
    """Per month (to date) and account: active users and days, events, sessions, API requests."""
    F = engine.F
    ranges = [(m.period, m.start, m.through) for m in months]
    r = _ranges_frame(engine, ranges)
    ev = events.join(r, on=(events["event_date"] >= r["lo"]) & (events["event_date"] <= r["hi"]), how="inner")
    ev = ev.groupBy(F.col("label").alias("period"), F.col("account_id").alias("account_id")).agg(
        F.countDistinct(F.col("user_id")).cast("long").alias("active_users"),
        F.countDistinct(F.col("event_date")).cast("long").alias("active_days"),
        F.count(F.lit(1)).cast("long").alias("events"),
        F.countDistinct(F.col("session_id")).cast("long").alias("sessions"),
    )
    r2 = _ranges_frame(engine, ranges)
    ap = api.join(r2, on=(api["date"] >= r2["lo"]) & (api["date"] <= r2["hi"]), how="inner")
    ap = ap.groupBy(F.col("label").alias("period"), F.col("account_id").alias("account_id")).agg(
        F.count(F.lit(1)).cast("long").alias("api_requests")
    )
    joined = full_join(engine, ev, ap, ["period", "account_id"])
    return joined.select(
        F.col("period").alias("period"),
        F.col("account_id").alias("account_id"),
        *[
            F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c)
            for c in ("active_users", "active_days", "events", "sessions", "api_requests")
        ],
    )


def top_accounts(engine: Engine, per_day: Any, n: int = TOP_KEYS) -> Any:
    """Per event day: the ``n`` accounts with most events, with the day's total (shares =
    events/total), ranked from the per account-day counts of :func:`account_days`."""
    F, W = engine.F, engine.Window
    ranked = per_day.select(
        F.col("date").alias("date"),
        F.col("account_id").alias("account_id"),
        F.col("events").alias("events"),
        F.sum(F.col("events")).over(W.partitionBy("date")).cast("long").alias("day_events"),
        F.row_number()
        .over(W.partitionBy("date").orderBy(F.col("events").desc(), F.col("account_id").asc()))
        .alias("rank"),
    )
    return ranked.where(F.col("rank") <= n)

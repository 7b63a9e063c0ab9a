"""Engagement: product usage per account and day, period roll-ups, and the join with revenue and growth.

Written once against the PySpark DataFrame API and run on the engine ``helpers.storage.engine`` gives
(SQLFrame on DuckDB by default, Apache Spark by configuration); heavy work stays on the engine,
only small results (per account, per day, per hour) come back as pandas frames.

**A run** for ``run_date`` R at ``as_of`` (:class:`RunWindow`):

- reads the ``events`` deliveries that had arrived by ``as_of`` for received partitions from the
  roll-up start (30 days before the window, or the first month the window touches) to ``as_of``'s
  date, and the ``api_logs`` deliveries of the months it touches;
- conforms them to the schema contract (``helpers.engagement.event_contract``): every row is accepted or
  quarantined with a reason, accepted + quarantined = received;
- keeps one copy per ``messageId`` over everything read (the earliest received; copies are the
  same message, so which copy is kept changes no figure): exactly-once counting over the
  at-least-once extract;
- buckets events by event time (``timestamp``) and re-computes the **trailing window**
  [R - window_days + 1, R] (default 3 days, inside the 48 h SLA), so late arrivals land in the
  right day; an event received on day d for an event day before d's own window
  (``late_beyond_window``) can no longer be re-counted by the daily runs and is recorded as a
  backfill request (``engagement_backfill_requests``) of the affected days, which
  ``workbook backfill engagement_aggregate --from D --to E --force --downstream`` performs
  (:func:`perform_backfill_requests` runs the recorded ones);
- writes, per day of the window up to the data horizon (the latest received partition that has
  arrived: a day whose events have not been delivered is not written, the next run's window
  covers it): ``engagement_daily``, ``engagement_metrics_daily``, ``engagement_intake_daily``; per
  month the window touches (month to date, through the horizon): ``engagement_monthly`` and
  ``engagement_accounts_monthly`` (engagement joined with revenue and growth per account).

**Definitions.** An *active user* sent at least one accepted event that day (``user_id``:
``userId``, else ``anonymousId``); user ids are account-scoped. DAU(d) = active users on d;
WAU(d) = distinct active users in the 7 days ending d; MAU(d) = in the 30 days ending d;
stickiness(d) = the mean DAU over the 30 days ending d / MAU(d) (0 when MAU is 0). Monthly
figures use the month to date instead of the trailing 30 days. An *active account* has at
least one active user in the period. *Platform*: ``context.device.type`` ios/android is mobile,
anything else web; *api* counts ``api_logs`` requests (deduplicated by ``request_id``) and keys.
*Sessions* are distinct ``properties.session_id`` per user and platform (a session belongs to
one user on one platform; identify events have none). An event is
*late* when it was received more than 24 hours after its event time (clean mobile syncs land
within 20 h).

**Skew** (``data_skew_oom``): events are aggregated to the account grain (hash aggregation with
map-side combine on both engines) before any account-level join, so one account holding 30 % of
the events never puts 30 % of the rows into one join partition; the Spark session also runs with
AQE skew-join splitting. :func:`top_accounts` reports the top keys' shares on either engine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from helpers.core.timeutil import as_utc, naive_utc, parse_as_of
from helpers.engagement import event_contract
from helpers.engagement.event_contract import CONTRACT, EventContract, IntakeCounts
from helpers.runs import records as runs
from helpers.storage import landing, warehouse
from helpers.storage.engine import Engine

PIPELINE = "engagement_aggregate"
DEFAULT_WINDOW_DAYS = 3
LATE_AFTER_HOURS = 24
WAU_DAYS, MAU_DAYS = 7, 30
TOP_KEYS = 5
SKEW_SLACK_DAYS = 1  # received partitions read before the roll-up start: client clocks ahead of Segment's
PLATFORMS = ("web", "mobile")

DAILY_TABLE = "engagement_daily"
METRICS_TABLE = "engagement_metrics_daily"
INTAKE_TABLE = "engagement_intake_daily"
MONTHLY_TABLE = "engagement_monthly"
ACCOUNTS_TABLE = "engagement_accounts_monthly"
BACKFILL_TABLE = "engagement_backfill_requests"

DAILY_COLUMNS = (
    "date",
    "account_id",
    "active_users",
    "events",
    "sessions",
    "web_users",
    "web_events",
    "web_sessions",
    "mobile_users",
    "mobile_events",
    "mobile_sessions",
    "api_requests",
    "api_keys",
)


# ---------------------------------------------------------------- the run's window


@dataclass(frozen=True)
class Month:
    """A month the run writes: ``period`` YYYY-MM, from its first day through ``through``."""

    period: str
    start: dt.date
    through: dt.date
    complete: bool  # through is the month's last day


@dataclass(frozen=True)
class RunWindow:
    """What one run re-computes: the trailing window of event days, its months, what it reads."""

    run_date: dt.date
    as_of: dt.datetime
    window_days: int
    horizon: dt.date | None  # latest received partition of ``events`` delivered by as_of

    def __post_init__(self) -> None:
        if self.window_days < 1:
            raise ValueError(f"window_days: expected a whole number of days >= 1, got {self.window_days}")

    @property
    def start(self) -> dt.date:
        return self.run_date - dt.timedelta(days=self.window_days - 1)

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.window_days)]

    @property
    def written_days(self) -> list[dt.date]:
        """Window days whose events had been delivered (a later day is left to the next run)."""
        return [d for d in self.days if self.horizon is not None and d <= self.horizon]

    @property
    def months(self) -> list[Month]:
        out: list[Month] = []
        if self.horizon is None:
            return out
        for first in sorted({d.replace(day=1) for d in self.days}):
            last = _month_end(first)
            through = min(last, self.horizon)
            if through >= first:
                out.append(Month(first.strftime("%Y-%m"), first, through, through == last))
        return out

    @property
    def rollup_start(self) -> dt.date:
        """First event day the roll-ups need: MAU of the first window day, or a month's first day."""
        first_month = min(d.replace(day=1) for d in self.days)
        return min(self.start - dt.timedelta(days=MAU_DAYS - 1), first_month)

    @property
    def rollup_end(self) -> dt.date:
        ends = [m.through for m in self.months] + [d for d in self.written_days]
        return max(ends) if ends else self.run_date

    @property
    def read_from(self) -> dt.date:
        return self.rollup_start - dt.timedelta(days=SKEW_SLACK_DAYS)

    def beyond_window(self, received: dt.date) -> dt.date:
        """Events received on ``received`` for a day before this are beyond that day's window."""
        return received - dt.timedelta(days=self.window_days - 1)


def _month_end(first: dt.date) -> dt.date:
    nxt = dt.date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def resolve_as_of(run_date: str | dt.date, as_of: str | dt.datetime | None) -> dt.datetime:
    """``as_of`` as aware UTC; empty means the scheduled run's time, 04:00 UTC the next day."""
    if isinstance(as_of, dt.datetime):
        return as_utc(as_of)
    if as_of:
        return parse_as_of(str(as_of))
    day = dt.date.fromisoformat(str(run_date))
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(4), dt.UTC)


def run_window(
    run_date: str | dt.date,
    as_of: str | dt.datetime | None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    *,
    root: Path | None = None,
) -> RunWindow:
    """The window of a run, with its data horizon read from the ``events`` manifest."""
    day = dt.date.fromisoformat(str(run_date))
    when = resolve_as_of(day, as_of)
    delivered = [d.partition for d in landing.deliveries("events", root=root, as_of=when)]
    horizon = dt.date.fromisoformat(max(delivered)) if delivered else None
    return RunWindow(day, when, int(window_days), horizon)


# ---------------------------------------------------------------- loading


@dataclass
class Inputs:
    """The landed rows a run reads (engine DataFrames) and which files they came from."""

    events: Any
    api: Any
    event_files: list[str]
    api_files: list[str]
    arrivals: pd.DataFrame  # events partitions read: partition (date), first arrived_at (naive UTC)


_EMPTY: dict[str, Path] = {}


def empty_parquet(source: str) -> str:
    """A zero-row file with the source's landed schema (so an empty read has the right columns)."""
    from helpers.demo.events import SCHEMAS

    if source not in _EMPTY:
        path = Path(tempfile.gettempdir()) / f"workbook-empty-{source}-{os.getpid()}.parquet"
        pq.write_table(SCHEMAS[source].empty_table(), path)
        _EMPTY[source] = path
    return str(_EMPTY[source])


def landed_files(
    source: str, first: dt.date, last: dt.date, *, as_of: dt.datetime, root: Path | None = None
) -> list[str]:
    """Paths of the deliveries of ``source`` for partitions in [first, last] arrived by ``as_of``."""
    lo, hi = first.isoformat(), last.isoformat()
    base = landing.source_dir(source, root)
    return [
        str(base / d.file)
        for d in landing.deliveries(source, root=root, as_of=as_of)
        if lo <= d.partition <= hi
    ]


def load(engine: Engine, window: RunWindow, *, root: Path | None = None) -> Inputs:
    """Read the run's ``events`` and ``api_logs`` deliveries (see the module doc for the ranges)."""
    ev_files = landed_files("events", window.read_from, window.as_of.date(), as_of=window.as_of, root=root)
    api_from = min(window.start, *(m.start for m in window.months)) if window.months else window.start
    api_files = landed_files("api_logs", api_from, window.rollup_end, as_of=window.as_of, root=root)
    events = engine.read_parquet(ev_files or [empty_parquet("events")], name="engagement_events_src")
    api = engine.read_parquet(api_files or [empty_parquet("api_logs")], name="engagement_api_src")
    read = [
        d
        for d in landing.deliveries("events", root=root, as_of=window.as_of)
        if window.read_from.isoformat() <= d.partition
    ]
    arrivals = pd.DataFrame(
        {
            "partition": [dt.date.fromisoformat(d.partition) for d in read],
            "arrived_at": [naive_utc(d.arrived) for d in read],
        },
        columns=["partition", "arrived_at"],
    )
    arrivals = arrivals.groupby("partition", as_index=False)["arrived_at"].min()
    return Inputs(events, api, ev_files, api_files, arrivals)


# ---------------------------------------------------------------- transformations (engine side)


def conformed(engine: Engine, events: Any, contract: EventContract = CONTRACT) -> Any:
    """Contract-conformed rows with ``received_date`` and ``received_hour``.

    Kept on Spark (re-parsing JSON in the JVM is the slow part); re-scanned on DuckDB (see
    :meth:`helpers.storage.engine.Engine.materialize`).
    """
    F = engine.F
    df = event_contract.conform(engine, events.select(*event_contract.LANDED_COLUMNS), contract)
    df = df.select(
        *[F.col(c).alias(c) for c in (*event_contract.CANONICAL, "reason", "raw_text")],
        F.to_date(F.col("received_at")).alias("received_date"),
        F.hour(F.col("received_at")).alias("received_hour"),
    )
    return engine.materialize(df, "engagement_conformed", scan=True)


FIRST_COPY_ORDER = ("received_at", "event_ts", "account_id", "user_id", "platform", "session_id")


def first_copies(engine: Engine, rows: Any) -> Any:
    """One row per accepted ``message_id``: its earliest-received copy, and how many copies arrived.

    ``row_number`` over the message's copies ordered by ``received_at`` and then every other
    kept field picks the same copy whatever order the copies were read in (the hand-written
    ``QUALIFY row_number() = 1``; measured faster on DuckDB than ``min`` over a struct).
    """
    F, W = engine.F, engine.Window
    accepted = rows.where(F.col("reason").isNull())
    copy = W.partitionBy("message_id")
    order = copy.orderBy(*[F.col(c).asc_nulls_last() for c in FIRST_COPY_ORDER])
    ranked = accepted.select(
        *[F.col(c).alias(c) for c in ("message_id", *FIRST_COPY_ORDER)],
        F.row_number().over(order).alias("_copy"),
        F.count(F.lit(1)).over(copy).alias("_copies"),
    )
    late = F.timestamp_add("HOUR", F.lit(LATE_AFTER_HOURS), F.col("event_ts"))
    out = ranked.where(F.col("_copy") == 1).select(
        *[F.col(c).alias(c) for c in ("message_id", *FIRST_COPY_ORDER)],
        F.col("_copies").cast("long").alias("copies"),
        F.to_date(F.col("event_ts")).alias("event_date"),
        F.to_date(F.col("received_at")).alias("received_date"),
        (F.col("received_at") > late).alias("late"),
    )
    return engine.materialize(out, "engagement_events")


def _in_days(engine: Engine, col: str, days: Sequence[dt.date]) -> Any:
    F = engine.F
    if not days:
        return F.lit(False)
    return F.col(col).isin(*[F.lit(d) for d in days])


def _between(engine: Engine, col: str, lo: dt.date, hi: dt.date) -> Any:
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


def daily_per_account(engine: Engine, events: Any, api: Any, days: Sequence[dt.date]) -> Any:
    """``engagement_daily`` rows (:data:`DAILY_COLUMNS`) for ``days``: per account and event day.

    Three plain aggregations instead of seven distinct counts in one: per user and platform
    (events, distinct sessions), per user (platforms used), per account. Spark expands a
    multi-distinct aggregate into one copy of the rows per distinct column (7x here); the
    staged form has one single-column distinct and runs about twice as fast on Spark, a little
    faster on DuckDB. A session belongs to one user on one platform, so summing per-user
    distinct sessions counts each session once.
    """
    F = engine.F
    per_user_platform = (
        events.where(_in_days(engine, "event_date", days))
        .groupBy(
            F.col("account_id").alias("account_id"),
            F.col("event_date").alias("date"),
            F.col("user_id").alias("user_id"),
            F.col("platform").alias("platform"),
        )
        .agg(F.count(F.lit(1)).alias("events"), F.countDistinct(F.col("session_id")).alias("sessions"))
    )

    def on(platform: str, col: str) -> Any:
        return F.sum(F.when(F.col("platform") == platform, F.col(col)).otherwise(F.lit(0)))

    per_user = per_user_platform.groupBy("account_id", "date", "user_id").agg(
        F.sum(F.col("events")).alias("events"),
        F.sum(F.col("sessions")).alias("sessions"),
        *[
            x
            for p in PLATFORMS
            for x in (
                F.max(F.when(F.col("platform") == p, F.lit(1)).otherwise(F.lit(0))).alias(f"{p}_users"),
                on(p, "events").alias(f"{p}_events"),
                on(p, "sessions").alias(f"{p}_sessions"),
            )
        ],
    )
    known = F.col("user_id").isNotNull()  # v2 does not require a user: its events count, not as a user
    ev = per_user.groupBy(F.col("account_id").alias("account_id"), F.col("date").alias("date")).agg(
        F.count(F.col("user_id")).cast("long").alias("active_users"),
        F.sum(F.col("events")).cast("long").alias("events"),
        F.sum(F.col("sessions")).cast("long").alias("sessions"),
        *[
            F.sum(F.when(known, F.col(f"{p}_{k}")).otherwise(F.lit(0)) if k == "users" else F.col(f"{p}_{k}"))
            .cast("long")
            .alias(f"{p}_{k}")
            for p in PLATFORMS
            for k in ("users", "events", "sessions")
        ],
    )
    ap = api_daily(engine, api, days)
    joined = full_join(engine, ev, ap, ["account_id", "date"])
    counts = [c for c in DAILY_COLUMNS if c not in ("date", "account_id")]
    return joined.select(
        F.col("date").alias("date"),
        F.col("account_id").alias("account_id"),
        *[F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c) for c in counts],
    )


def api_requests(engine: Engine, api: Any) -> Any:
    """``api_logs`` deduplicated by ``request_id`` (a re-delivered file repeats its rows)."""
    F = engine.F
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
    F = engine.F
    return (
        api.where(_in_days(engine, "date", days))
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
        events.where(_between(engine, "event_date", first, last) & F.col("user_id").isNotNull())
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


def top_accounts(engine: Engine, events: Any, days: Sequence[dt.date], n: int = TOP_KEYS) -> Any:
    """Per event day: the ``n`` accounts with most events, with the day's total (shares = events/total)."""
    F, W = engine.F, engine.Window
    per = (
        events.where(_in_days(engine, "event_date", days))
        .groupBy(F.col("event_date").alias("date"), F.col("account_id").alias("account_id"))
        .agg(F.count(F.lit(1)).cast("long").alias("events"))
    )
    ranked = per.select(
        F.col("date").alias("date"),
        F.col("account_id").alias("account_id"),
        F.col("events").alias("events"),
        F.sum(F.col("events")).over(W.partitionBy("date")).cast("long").alias("day_events"),
        F.row_number()
        .over(W.partitionBy("date").orderBy(F.col("events").desc(), F.col("account_id").asc()))
        .alias("rank"),
    )
    return ranked.where(F.col("rank") <= n)


# ---------------------------------------------------------------- upstream marts (Profit, Growth)


@dataclass(frozen=True)
class Upstream:
    """A mart the account join reads, the pipeline whose run must have finished for the period."""

    pipeline: str
    table: str
    value_columns: tuple[str, ...]  # first present one is used


UPSTREAMS: tuple[Upstream, ...] = (
    Upstream("profit_unit", "profit_unit_monthly", ("revenue_usd_cents",)),
    Upstream("growth_aggregate", "growth_accounts_monthly", ("movement", "status", "stage")),
)


@dataclass(frozen=True)
class UpstreamState:
    """Whether an upstream mart is ready for a period, and why not."""

    pipeline: str
    table: str
    period: str
    ready: bool
    reason: str
    run_id: str | None = None
    rows: int = 0


def upstream_state(
    up: Upstream, period: str, *, engine: sa.Engine | None = None
) -> tuple[UpstreamState, pd.DataFrame]:
    """The upstream's readiness for ``period`` (its latest run succeeded and its mart has the
    period) and its rows for the period (``account_id`` and the value column) when ready."""
    engine = engine or warehouse.get_engine()
    latest = next(
        (
            r
            for r in runs.list_runs(pipeline=up.pipeline, logical_date=period, limit=20, engine=engine)
            if r.status != "skipped"
        ),
        None,
    )
    empty = pd.DataFrame(columns=["account_id", "value"])
    if latest is None:
        return UpstreamState(
            up.pipeline, up.table, period, False, f"{up.pipeline} has not run for {period}"
        ), empty
    if latest.status != "succeeded":
        return (
            UpstreamState(
                up.pipeline,
                up.table,
                period,
                False,
                f"{up.pipeline} {period}: latest run {latest.status}",
                latest.run_id,
            ),
            empty,
        )
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(up.table):
            return UpstreamState(
                up.pipeline, up.table, period, False, f"{up.table} does not exist", latest.run_id
            ), empty
        cols = {c["name"] for c in inspector.get_columns(up.table)}
        value = next((c for c in up.value_columns if c in cols), None)
        if "period" not in cols or "account_id" not in cols or value is None:
            need = f"period, account_id and one of {', '.join(up.value_columns)}"
            return UpstreamState(
                up.pipeline,
                up.table,
                period,
                False,
                f"{up.table} lacks columns: expected {need}",
                latest.run_id,
            ), empty
        t = sa.Table(up.table, sa.MetaData(), autoload_with=conn)
        rows = pd.read_sql(
            sa.select(t.c["account_id"], t.c[value].label("value")).where(t.c["period"] == period), conn
        )
    if rows.empty:
        return UpstreamState(
            up.pipeline, up.table, period, False, f"{up.table} has no rows for {period}", latest.run_id
        ), empty
    return UpstreamState(up.pipeline, up.table, period, True, "ready", latest.run_id, len(rows)), rows


def accounts_with_revenue(
    engine: Engine, per_account: Any, month: Month, states: Sequence[tuple[UpstreamState, pd.DataFrame]]
) -> Any:
    """Engagement per account joined with the upstreams' values (a 1:1 join at the account grain).

    When an upstream is not ready the month's rows are marked ``pending`` and its columns stay
    NULL: nothing is published from them. When ready, accounts missing on one side get 0 revenue
    (an account without revenue in a finished Profit run earned none) or status ``none``.
    """
    F = engine.F
    mine = per_account.where(F.col("period") == month.period)
    ready = all(s.ready for s, _rows in states)
    reasons = "; ".join(s.reason for s, _rows in states if not s.ready)
    if not ready:
        return mine.select(
            *[F.col(c).alias(c) for c in ACCOUNT_COLUMNS[: ACCOUNT_COLUMNS.index("revenue_usd_cents")]],
            F.lit(None).cast("long").alias("revenue_usd_cents"),
            F.lit(None).cast("string").alias("growth_status"),
            F.lit("pending").alias("status"),
            F.lit(reasons).alias("pending_reason"),
        )
    (_profit, revenue), (_growth, growth) = states
    rev = revenue.assign(value=pd.to_numeric(revenue["value"], errors="coerce").fillna(0).astype("int64"))
    rev = (
        rev.groupby("account_id", as_index=False)["value"]
        .sum()
        .rename(columns={"value": "revenue_usd_cents"})
    )
    gro = (
        growth.assign(value=growth["value"].astype(str))
        .drop_duplicates("account_id")
        .rename(columns={"value": "growth_status"})
    )
    up = rev.merge(gro, on="account_id", how="outer")
    up["account_id"] = up["account_id"].astype(str)
    up["revenue_usd_cents"] = up["revenue_usd_cents"].fillna(0).astype("int64")
    up["growth_status"] = up["growth_status"].fillna("none").astype(str)
    upd = engine.create_dataframe(up)
    joined = full_join(engine, mine, upd, ["account_id"])
    return joined.select(
        F.lit(month.period).alias("period"),
        F.col("account_id").alias("account_id"),
        *[
            F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c)
            for c in ("active_users", "active_days", "events", "sessions", "api_requests")
        ],
        F.coalesce(F.col("revenue_usd_cents"), F.lit(0)).cast("long").alias("revenue_usd_cents"),
        F.coalesce(F.col("growth_status"), F.lit("none")).alias("growth_status"),
        F.lit("final").alias("status"),
        F.lit("").alias("pending_reason"),
    )


# ---------------------------------------------------------------- one run, end to end


@dataclass
class EngagementRun:
    """Everything a run computed (pandas), what the checks look at and what gets written."""

    window: RunWindow
    engine: str
    daily: pd.DataFrame
    metrics: pd.DataFrame
    intake: pd.DataFrame
    monthly: pd.DataFrame
    accounts: pd.DataFrame
    quarantined: pd.DataFrame
    late: pd.DataFrame
    duplicates: pd.DataFrame
    top: pd.DataFrame
    hourly: pd.DataFrame
    arrivals: pd.DataFrame
    upstreams: list[UpstreamState]
    contract_versions: list[str]
    backfill: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_intake(self) -> IntakeCounts:
        """Intake of the run's own received partition (``run_date``)."""
        row = self.intake[self.intake["date"] == self.window.run_date]
        if row.empty:
            return IntakeCounts(0, 0, 0)
        r = row.iloc[0]
        return IntakeCounts(
            int(r["received"]),
            int(r["accepted"]),
            int(r["quarantined"]),
            json.loads(r["by_version"]),
            json.loads(r["by_reason"]),
        )

    @property
    def status(self) -> str:
        """``ok``, or ``pending`` when a figure waits for data or an upstream (never NULLs instead)."""
        return "ok" if not self.pending_reasons else "pending"

    @property
    def pending_reasons(self) -> list[str]:
        out = []
        if self.window.run_date not in self.window.written_days:
            out.append(f"events of {self.window.run_date} not delivered by {self.window.as_of.isoformat()}")
        out += [f"{s.period}: {s.reason}" for s in self.upstreams if not s.ready]
        return out

    def metrics_for(self, day: dt.date) -> dict[str, Any]:
        row = self.metrics[self.metrics["date"] == day]
        if row.empty:
            return {"dau": 0, "wau": 0, "mau": 0, "stickiness": 0.0, "monthly_active_accounts": 0}
        return row.iloc[0].to_dict()

    @property
    def top_account_share(self) -> float:
        """The largest share of one account in one window day's events (0 without events)."""
        if self.top.empty:
            return 0.0
        return float(self.top["share"].max())

    def headline(self) -> dict[str, Any]:
        """The scrapbook figures of the run (names are the glue names)."""
        m = self.metrics_for(self.window.run_date)
        intake = self.run_intake
        today = self.intake[self.intake["date"] == self.window.run_date]
        first = today.iloc[0] if len(today) else None
        return {
            "run_date": self.window.run_date.isoformat(),
            "status": self.status,
            "dau": int(m["dau"]),
            "wau": int(m["wau"]),
            "mau": int(m["mau"]),
            "stickiness": float(m["stickiness"]),
            "active_accounts": int(m["monthly_active_accounts"]),
            "received": intake.received,
            "accepted": intake.accepted,
            "quarantined": intake.quarantined,
            "duplicates": int(first["duplicates"]) if first is not None else 0,
            "late_beyond_window": int(first["late_beyond_window"]) if first is not None else 0,
            "engine": self.engine,
            "top_account_share": round(self.top_account_share, 4),
        }


def compute(
    engine: Engine,
    inputs: Inputs,
    window: RunWindow,
    *,
    contract: EventContract = CONTRACT,
    upstream_reader: Callable[[Upstream, str], tuple[UpstreamState, pd.DataFrame]] | None = None,
) -> EngagementRun:
    """Run the transformations of one window on ``engine`` and bring back the small results."""
    F = engine.F
    read = upstream_reader or (lambda up, period: upstream_state(up, period))
    rows = conformed(engine, inputs.events, contract)
    events = first_copies(engine, rows)
    api = engine.materialize(api_requests(engine, inputs.api), "engagement_api")
    days, written = window.days, window.written_days

    intake_days = [d for d in days if window.horizon is not None and d <= window.horizon]
    # one pass over the rows read for the intake counts and the hourly volume (kafka_outage)
    volume = engine.to_pandas(
        rows.groupBy(
            F.col("received_date").alias("date"),
            F.col("received_hour").alias("hour"),
            F.col("schema_version").alias("schema_version"),
            F.col("reason").alias("reason"),
        ).agg(F.count(F.lit(1)).cast("long").alias("rows")),
        ["date", "hour", "schema_version", "reason"],
    )
    stats = (
        volume[volume["date"].isin(intake_days)]
        .groupby(["date", "schema_version", "reason"], dropna=False, as_index=False)["rows"]
        .sum()
    )
    hourly = (
        volume.groupby(["date", "hour"], as_index=False)["rows"].sum().rename(columns={"rows": "received"})
    )
    quarantined = engine.to_pandas(
        rows.where(_in_days(engine, "received_date", intake_days) & F.col("reason").isNotNull()).select(
            F.col("message_id").alias("message_id"),
            F.col("schema_version").alias("schema_version"),
            F.col("received_at").alias("received_at"),
            F.col("reason").alias("reason"),
            F.col("raw_text").alias("raw_text"),
        ),
        ["received_at", "raw_text"],
    )
    firsts = engine.to_pandas(
        events.where(_in_days(engine, "received_date", intake_days))
        .groupBy(F.col("received_date").alias("date"))
        .agg(F.count(F.lit(1)).cast("long").alias("firsts")),
        ["date"],
    )
    beyond_cond = F.lit(False)
    for d in intake_days:
        beyond_cond = beyond_cond | (
            (F.col("received_date") == F.lit(d)) & (F.col("event_date") < F.lit(window.beyond_window(d)))
        )
    late = engine.to_pandas(
        events.where(
            (
                F.col("late")
                & (_in_days(engine, "event_date", days) | _in_days(engine, "received_date", intake_days))
            )
            | beyond_cond
        ).select(
            F.col("message_id").alias("message_id"),
            F.col("account_id").alias("account_id"),
            F.col("event_date").alias("event_date"),
            F.col("received_date").alias("received_date"),
            F.col("event_ts").alias("event_ts"),
            F.col("received_at").alias("received_at"),
            F.col("late").alias("late"),
            beyond_cond.alias("beyond_window"),
        ),
        ["received_at", "message_id"],
    )
    duplicates = engine.to_pandas(
        events.where(_in_days(engine, "event_date", days) & (F.col("copies") > 1)).select(
            F.col("event_date").alias("date"),
            F.col("message_id").alias("message_id"),
            F.col("copies").alias("copies"),
        ),
        ["date", "message_id"],
    )
    daily = engine.to_pandas(daily_per_account(engine, events, api, written), ["date", "account_id"])
    top = engine.to_pandas(top_accounts(engine, events, days), ["date", "rank"])
    top["share"] = (top["events"] / top["day_events"].where(top["day_events"] > 0)).fillna(0.0).round(6)

    ud = engine.materialize(
        user_days(engine, events, window.rollup_start, window.rollup_end), "engagement_user_days"
    )
    per_day = engine.to_pandas(daily_actives(engine, ud), ["date"])
    ranges = [(f"w{d.isoformat()}", d - dt.timedelta(days=WAU_DAYS - 1), d) for d in written]
    ranges += [(f"m{d.isoformat()}", d - dt.timedelta(days=MAU_DAYS - 1), d) for d in written]
    ranges += [(f"p{m.period}", m.start, m.through) for m in window.months]
    actives = (
        engine.to_pandas(range_actives(engine, ud, ranges), ["label"])
        if ranges
        else pd.DataFrame(columns=["label", "users", "accounts"])
    )
    metrics = _metrics(window, per_day, actives, daily)
    intake = _intake(window, intake_days, stats, firsts, late)

    per_account = (
        engine.materialize(monthly_per_account(engine, events, api, window.months), "engagement_accounts")
        if window.months
        else None
    )
    monthly_rows, account_frames, upstates = [], [], []
    for month in window.months:
        states = [read(up, month.period) for up in UPSTREAMS]
        upstates += [s for s, _rows in states]
        acc = engine.to_pandas(accounts_with_revenue(engine, per_account, month, states), ["account_id"])
        # NULL while pending: None from DuckDB, NaN from Spark; one nullable integer type for both
        acc["revenue_usd_cents"] = acc["revenue_usd_cents"].astype("Int64")
        account_frames.append(acc)
        monthly_rows.append(_monthly_row(month, per_day, actives, acc))
    accounts = pd.concat(account_frames, ignore_index=True) if account_frames else _empty_accounts()
    monthly = pd.DataFrame(monthly_rows) if monthly_rows else pd.DataFrame(columns=MONTHLY_COLUMNS)
    run = EngagementRun(
        window=window,
        engine=engine.name,
        daily=daily,
        metrics=metrics,
        intake=intake,
        monthly=monthly,
        accounts=accounts,
        quarantined=quarantined,
        late=late,
        duplicates=duplicates,
        top=top,
        hourly=hourly,
        arrivals=inputs.arrivals,
        upstreams=upstates,
        contract_versions=[v.key for v in contract.versions],
    )
    run.backfill = backfill_requests(run)
    for name, df in (
        ("engagement_conformed", rows),
        ("engagement_events", events),
        ("engagement_api", api),
        ("engagement_user_days", ud),
    ):
        engine.release(df, name)
    if per_account is not None:
        engine.release(per_account, "engagement_accounts")
    return run


METRICS_COLUMNS = (
    "date",
    "dau",
    "wau",
    "mau",
    "stickiness",
    "daily_active_accounts",
    "monthly_active_accounts",
    "events",
    "sessions",
    "web_users",
    "mobile_users",
    "api_requests",
)
MONTHLY_COLUMNS = (
    "period",
    "through_date",
    "complete",
    "days",
    "dau_avg",
    "mau",
    "stickiness",
    "active_accounts",
    "events",
    "sessions",
    "api_requests",
    "revenue_usd_cents",
    "revenue_status",
)
ACCOUNT_COLUMNS = (
    "period",
    "account_id",
    "active_users",
    "active_days",
    "events",
    "sessions",
    "api_requests",
    "revenue_usd_cents",
    "growth_status",
    "status",
    "pending_reason",
)


_I, _T, _D, _F, _B = sa.BigInteger(), sa.Text(), sa.Date(), sa.Float(), sa.Boolean()
# Column types of the marts, given on every write so that a first write full of NULLs (a pending
# month) does not fix a column's type as text.
MART_TYPES: dict[str, dict[str, Any]] = {
    DAILY_TABLE: {"date": _D, "account_id": _T, **{c: _I for c in DAILY_COLUMNS[2:]}},
    METRICS_TABLE: {
        "date": _D,
        "stickiness": _F,
        **{c: _I for c in METRICS_COLUMNS if c not in ("date", "stickiness")},
    },
    INTAKE_TABLE: {
        "date": _D,
        **{
            c: _I for c in ("received", "accepted", "quarantined", "duplicates", "late", "late_beyond_window")
        },
        "by_version": _T,
        "by_reason": _T,
    },
    MONTHLY_TABLE: {
        "period": _T,
        "through_date": _D,
        "complete": _B,
        "dau_avg": _F,
        "stickiness": _F,
        "revenue_status": _T,
        **{
            c: _I
            for c in (
                "days",
                "mau",
                "active_accounts",
                "events",
                "sessions",
                "api_requests",
                "revenue_usd_cents",
            )
        },
    },
    ACCOUNTS_TABLE: {
        "period": _T,
        "account_id": _T,
        "growth_status": _T,
        "status": _T,
        "pending_reason": _T,
        **{
            c: _I
            for c in (
                "active_users",
                "active_days",
                "events",
                "sessions",
                "api_requests",
                "revenue_usd_cents",
            )
        },
    },
}


def _empty_accounts() -> pd.DataFrame:
    return pd.DataFrame(columns=ACCOUNT_COLUMNS)


def _dau_series(per_day: pd.DataFrame, first: dt.date, last: dt.date) -> pd.Series:
    """DAU for every day in [first, last] (a day without events has DAU 0, not a gap)."""
    idx = pd.Index([first + dt.timedelta(days=i) for i in range((last - first).days + 1)], name="date")
    s = per_day.set_index("date")["dau"] if len(per_day) else pd.Series(dtype="int64")
    return s.reindex(idx).fillna(0).astype("int64")


def _ratio(num: float, den: float) -> float:
    """num/den rounded to 4 places; 0 when den is 0 (no active users: nothing to be sticky about)."""
    return round(float(num) / float(den), 4) if den else 0.0


def _metrics(
    window: RunWindow, per_day: pd.DataFrame, actives: pd.DataFrame, daily: pd.DataFrame
) -> pd.DataFrame:
    look = actives.set_index("label") if len(actives) else pd.DataFrame(columns=["users", "accounts"])
    rows = []
    for d in window.written_days:
        dau = _dau_series(per_day, d - dt.timedelta(days=MAU_DAYS - 1), d)
        mau = int(look["users"].get(f"m{d.isoformat()}", 0))
        day = daily[daily["date"] == d]
        rows.append(
            {
                "date": d,
                "dau": int(dau.iloc[-1]),
                "wau": int(look["users"].get(f"w{d.isoformat()}", 0)),
                "mau": mau,
                "stickiness": _ratio(dau.mean(), mau),
                "daily_active_accounts": int((day["active_users"] > 0).sum()),
                "monthly_active_accounts": int(look["accounts"].get(f"m{d.isoformat()}", 0)),
                "events": int(day["events"].sum()),
                "sessions": int(day["sessions"].sum()),
                "web_users": int(day["web_users"].sum()),
                "mobile_users": int(day["mobile_users"].sum()),
                "api_requests": int(day["api_requests"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(METRICS_COLUMNS))


def _monthly_row(
    month: Month, per_day: pd.DataFrame, actives: pd.DataFrame, accounts: pd.DataFrame
) -> dict[str, Any]:
    look = actives.set_index("label") if len(actives) else pd.DataFrame(columns=["users", "accounts"])
    dau = _dau_series(per_day, month.start, month.through)
    mau = int(look["users"].get(f"p{month.period}", 0))
    final = bool(len(accounts)) and (accounts["status"] == "final").all()
    return {
        "period": month.period,
        "through_date": month.through,
        "complete": month.complete,
        "days": len(dau),
        "dau_avg": round(float(dau.mean()), 2) if len(dau) else 0.0,
        "mau": mau,
        "stickiness": _ratio(dau.mean(), mau),
        "active_accounts": int(look["accounts"].get(f"p{month.period}", 0)),
        "events": int(accounts["events"].sum()) if len(accounts) else 0,
        "sessions": int(accounts["sessions"].sum()) if len(accounts) else 0,
        "api_requests": int(accounts["api_requests"].sum()) if len(accounts) else 0,
        # revenue is published only when every upstream finished: 0 with status pending otherwise
        "revenue_usd_cents": int(accounts["revenue_usd_cents"].fillna(0).sum()) if final else 0,
        "revenue_status": "final" if final else "pending",
    }


def _intake(
    window: RunWindow, days: Sequence[dt.date], stats: pd.DataFrame, firsts: pd.DataFrame, late: pd.DataFrame
) -> pd.DataFrame:
    rows = []
    for d in days:
        mine = stats[stats["date"] == d]
        counts = event_contract.intake_counts(mine[["schema_version", "reason", "rows"]])
        first = firsts.loc[firsts["date"] == d, "firsts"]
        got = late[late["received_date"] == d]
        rows.append(
            {
                "date": d,
                "received": counts.received,
                "accepted": counts.accepted,
                "quarantined": counts.quarantined,
                # accepted rows received that day that repeat a message already received
                "duplicates": counts.accepted - (int(first.iloc[0]) if len(first) else 0),
                "late": int(got["late"].sum()),
                "late_beyond_window": int(got["beyond_window"].sum()),
                "by_version": json.dumps(dict(sorted(counts.by_version.items())), sort_keys=True),
                "by_reason": json.dumps(dict(sorted(counts.by_reason.items())), sort_keys=True),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "date",
            "received",
            "accepted",
            "quarantined",
            "duplicates",
            "late",
            "late_beyond_window",
            "by_version",
            "by_reason",
        ],
    )


# ---------------------------------------------------------------- backfill requests


def backfill_requests(run: EngagementRun) -> list[dict[str, Any]]:
    """The backfills a run needs: late arrivals for days before their window.

    A late event of day d affects d's rows and the rolling figures (WAU/MAU) of the 29 days after
    it; this run's window was just re-computed with it, so the range to restate is d to the day
    before the window, at most 30 days. Overlapping ranges are merged: one request per range.
    """
    w = run.window
    beyond = run.late[run.late["beyond_window"].astype(bool)] if len(run.late) else run.late
    if beyond.empty:
        return []
    last_day = w.start - dt.timedelta(days=1)
    ranges: list[list[dt.date]] = []
    for d in sorted(set(beyond["event_date"])):
        hi = max(d, min(d + dt.timedelta(days=MAU_DAYS - 1), last_day))
        if ranges and d <= ranges[-1][1] + dt.timedelta(days=1):
            ranges[-1][1] = max(ranges[-1][1], hi)
        else:
            ranges.append([d, hi])
    out = []
    for first, last in ranges:
        mine = beyond[(beyond["event_date"] >= first) & (beyond["event_date"] <= last)]
        out.append(
            {
                "pipeline": PIPELINE,
                "from_date": first,
                "to_date": last,
                "events": int(len(mine)),
                "reason": (
                    f"{len(mine)} event(s) of {min(mine['event_date'])}..{max(mine['event_date'])} received "
                    f"after their {w.window_days}-day window (latest received {max(mine['received_date'])})"
                ),
                "command": backfill_command(first, last, w.as_of),
            }
        )
    return out


def backfill_command(first: dt.date, last: dt.date, as_of: dt.datetime) -> str:
    """The CLI that restates days ``first``..``last`` and their dependants."""
    return (
        f"workbook backfill {PIPELINE} --from {first.isoformat()} --to {last.isoformat()} "
        f"--force --downstream --as-of {as_of.isoformat()}"
    )


# ---------------------------------------------------------------- writing


backfill_requests_table = sa.Table(
    BACKFILL_TABLE,
    sa.MetaData(),
    sa.Column("request_id", sa.String(120), primary_key=True),  # pipeline|from|to|as_of: one per run moment
    sa.Column("pipeline", sa.String(64), nullable=False),
    sa.Column("from_date", sa.Date, nullable=False),
    sa.Column("to_date", sa.Date, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("requested_at", sa.DateTime, nullable=False),  # the requesting run's as_of
    sa.Column("requested_by", sa.String(80), nullable=True),  # run id
    sa.Column("status", sa.String(16), nullable=False),  # requested | done | failed
    sa.Column("done_at", sa.DateTime, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),
)


def write(
    run: EngagementRun, *, run_id: str | None = None, engine: sa.Engine | None = None
) -> dict[str, int]:
    """Write the run's marts (one atomic replace per table and partition), quarantine and requests.

    Returns the rows written per table. Days past the data horizon are not written (see
    :attr:`RunWindow.written_days`); months are written month to date.
    """
    engine = engine or warehouse.get_engine()
    at = run.window.as_of
    out: dict[str, int] = {}

    def put(table: str, frame: pd.DataFrame, partition: Mapping[str, Any]) -> None:
        out[table] = out.get(table, 0) + warehouse.replace_partition(
            table,
            frame,
            partition,
            written_at=naive_utc(at),
            run_id=run_id,
            engine=engine,
            dtype=MART_TYPES[table],
        )

    for d in run.window.written_days:
        put(
            DAILY_TABLE,
            run.daily[run.daily["date"] == d][list(DAILY_COLUMNS)].reset_index(drop=True),
            {"date": d},
        )
        put(METRICS_TABLE, run.metrics[run.metrics["date"] == d].reset_index(drop=True), {"date": d})
    for d in run.intake["date"]:
        put(INTAKE_TABLE, run.intake[run.intake["date"] == d].reset_index(drop=True), {"date": d})
    for m in run.window.months:
        put(
            MONTHLY_TABLE,
            run.monthly[run.monthly["period"] == m.period].reset_index(drop=True),
            {"period": m.period},
        )
        acc = run.accounts[run.accounts["period"] == m.period][list(ACCOUNT_COLUMNS)].reset_index(drop=True)
        acc["revenue_usd_cents"] = acc["revenue_usd_cents"].astype("Int64")  # NULL while pending
        put(ACCOUNTS_TABLE, acc, {"period": m.period})
    if len(run.quarantined):
        from helpers.storage.quarantine import write_quarantine

        write_quarantine(
            "events", event_contract.quarantine_records(run.quarantined), name="engagement_contract"
        )
    out[BACKFILL_TABLE] = record_backfill_requests(
        run.backfill, requested_at=at, run_id=run_id, engine=engine
    )
    return out


def record_backfill_requests(
    requests: Sequence[Mapping[str, Any]],
    *,
    requested_at: dt.datetime,
    run_id: str | None,
    engine: sa.Engine | None = None,
) -> int:
    """Record backfill requests (idempotent per pipeline, range and ``requested_at``)."""
    if not requests:
        return 0
    engine = engine or warehouse.get_engine()
    backfill_requests_table.create(engine, checkfirst=True)
    n = 0
    with engine.begin() as conn:
        for r in requests:
            rid = f"{r['pipeline']}|{r['from_date']}|{r['to_date']}|{as_utc(requested_at).isoformat()}"
            exists = conn.execute(
                sa.select(backfill_requests_table.c.request_id).where(
                    backfill_requests_table.c.request_id == rid
                )
            ).first()
            if exists:
                continue
            conn.execute(
                backfill_requests_table.insert().values(
                    request_id=rid,
                    pipeline=r["pipeline"],
                    from_date=r["from_date"],
                    to_date=r["to_date"],
                    events=int(r["events"]),
                    reason=r["reason"],
                    command=r["command"],
                    requested_at=naive_utc(requested_at),
                    requested_by=run_id,
                    status="requested",
                )
            )
            n += 1
    return n


def pending_backfill_requests(*, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Recorded backfill requests not yet performed, oldest first."""
    engine = engine or warehouse.get_engine()
    backfill_requests_table.create(engine, checkfirst=True)
    t = backfill_requests_table
    with engine.connect() as conn:
        return pd.read_sql(
            sa.select(t).where(t.c.status == "requested").order_by(t.c.requested_at, t.c.from_date), conn
        )


def perform_backfill_requests(
    *, clock: Callable[[], dt.datetime], as_of: dt.datetime | None = None, engine: sa.Engine | None = None
) -> list[dict[str, Any]]:
    """Run each pending request through ``orchestrate.backfill(force=True, downstream=True)``.

    Requests for overlapping ranges are merged into one backfill. Each request is marked ``done``
    (or ``failed`` with the outcomes) afterwards; re-running this after an interruption repeats
    what did not finish, as ``workbook backfill`` itself does.
    """
    from helpers.runs import orchestrate

    engine = engine or warehouse.get_engine()
    pending = pending_backfill_requests(engine=engine)
    if pending.empty:
        return []
    first = min(pd.to_datetime(pending["from_date"]).dt.date)
    last = max(pd.to_datetime(pending["to_date"]).dt.date)
    outcomes = orchestrate.backfill(
        PIPELINE, first, last, clock=clock, as_of=as_of, force=True, downstream=True
    )
    ok = all(o.status in ("succeeded", "skipped") for o in outcomes)
    t = backfill_requests_table
    with engine.begin() as conn:
        conn.execute(
            t.update()
            .where(t.c.request_id.in_(list(pending["request_id"])))
            .values(
                status="done" if ok else "failed",
                done_at=naive_utc(clock()),
                outcome=json.dumps([o.as_json() for o in outcomes], sort_keys=True, default=str),
            )
        )
    return [o.as_json() for o in outcomes]

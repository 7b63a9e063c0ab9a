"""One Engagement run end to end: :func:`compute` over a window, and its pure roll-ups.

Written once against the PySpark DataFrame API and run on the engine ``helpers.storage.engine`` gives
(SQLFrame on DuckDB by default, Apache Spark by configuration); heavy work stays on the engine
(``helpers.engagement.transforms``), only small results (per account, per day, per hour) come back
as pandas frames, in an :class:`EngagementRun`.

**A run** for ``run_date`` R at ``as_of`` (:class:`helpers.engagement.window.RunWindow`):

- reads the ``events`` deliveries that had arrived by ``as_of`` for received partitions from the
  roll-up start (30 days before the window, or the first month the window touches) to ``as_of``'s
  date, and the ``api_logs`` deliveries of the months it touches (``helpers.engagement.inputs``);
  a delivery whose file changed after arrival (sha256), is unreadable or lacks a contract column
  is left out whole: its rows count as received and quarantined, the run is ``pending`` and the
  months it writes are not ``complete`` (provisional for investors) until a run reads it whole;
- conforms them to the schema contract (``helpers.engagement.event_contract``): every row is accepted or
  quarantined with a reason, accepted + quarantined = received;
- keeps one copy per ``messageId`` over everything read (the earliest received; copies are the
  same message, so which copy is kept changes no figure): exactly-once counting over the
  at-least-once extract;
- buckets events by event time (``timestamp``) and re-computes the **trailing window**
  [R - window_days + 1, R] (default 3 days, inside the 48 h SLA), so late arrivals land in the
  right day; an event received on day d for an event day before d's own window
  (``late_beyond_window``) can no longer be re-counted by the daily runs and is recorded as a
  backfill request (:func:`backfill_requests`) of the affected days, which
  ``workbook backfill engagement_aggregate --from D --to E --force --downstream`` performs
  (``helpers.engagement.store.perform_backfill_requests`` runs the recorded ones);
- writes (``helpers.engagement.store.write``), per day of the window up to the data horizon (the
  latest received partition that has arrived: a day whose events have not been delivered is not
  written, the next run's window covers it): ``engagement_daily``, ``engagement_metrics_daily``,
  ``engagement_intake_daily``; per month the window touches (month to date, through the horizon):
  ``engagement_monthly`` and ``engagement_accounts_monthly`` (engagement joined with revenue and
  growth per account, ``helpers.engagement.upstream``).

**Definitions.** An *active user* sent at least one accepted event that day (``user_id``:
``userId``, else ``anonymousId``); user ids are account-scoped. DAU(d) = active users on d;
WAU(d) = distinct active users in the 7 days ending d; MAU(d) = in the 30 days ending d;
stickiness(d) = the mean DAU over the 30 days ending d / MAU(d) (0 when MAU is 0). Monthly
figures use the month to date instead of the trailing 30 days. Ratios and averages (stickiness,
``dau_avg``) are stored at full precision (doubles); they are rounded only where shown. An *active account* has at
least one active user in the period. *Platform*: ``context.device.type`` ios/android is mobile,
anything else web; *api* counts ``api_logs`` requests (deduplicated by ``request_id``) and keys.
*Sessions* are distinct ``properties.session_id`` per user and platform (a session belongs to
one user on one platform; identify events have none). An event is
*late* when it was received more than 24 hours after its event time (clean mobile syncs land
within 20 h).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from helpers.engagement import event_contract
from helpers.engagement.event_contract import CONTRACT, EventContract, IntakeCounts
from helpers.engagement.inputs import KIND_LABELS, Inputs
from helpers.engagement.marts import ACCOUNT_COLUMNS, INTAKE_COLUMNS, METRICS_COLUMNS, MONTHLY_COLUMNS
from helpers.engagement.transforms import (
    account_days,
    api_requests,
    api_unusable,
    conformed,
    daily_actives,
    daily_per_account,
    first_copies,
    in_days,
    monthly_per_account,
    range_actives,
    top_accounts,
    user_days,
)
from helpers.engagement.upstream import (
    UPSTREAMS,
    Upstream,
    UpstreamState,
    accounts_with_revenue,
    upstream_state,
)
from helpers.engagement.window import MAU_DAYS, PIPELINE, WAU_DAYS, Month, RunWindow
from helpers.storage.engine import Engine
from helpers.storage.verified import LandingReport

UpstreamReader = Callable[[Upstream, str], tuple[UpstreamState, pd.DataFrame]]


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
    landing: LandingReport = field(default_factory=LandingReport)  # deliveries left out whole
    # api_logs rows not counted (request_id, account_id, field, delivery_file, delivery_row)
    api_quarantined: pd.DataFrame = field(default_factory=pd.DataFrame)

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
        out += [f"delivery left out (figures provisional): {r.reason}" for r in self.landing.rejected]
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
    upstream_reader: UpstreamReader | None = None,
) -> EngagementRun:
    """Run the transformations of one window on ``engine`` and bring back the small results.

    ``upstream_reader`` (default :func:`helpers.engagement.upstream.upstream_state`) says whether
    Profit and Growth are ready for a month. The frames materialized on the engine are released
    before returning.
    """
    read = upstream_reader or (lambda up, period: upstream_state(up, period))
    rows = conformed(engine, inputs.events, contract)
    inputs.keep_spans(engine, rows, contract)
    events = first_copies(engine, rows)
    api = engine.materialize(api_requests(engine, inputs.api), "engagement_api")
    days, written = window.days, window.written_days
    intake_days = written  # received days whose intake is counted: the window days delivered
    stats, hourly, quarantined = _received(engine, rows, intake_days, window.run_date)
    firsts = _first_copies_per_day(engine, events, intake_days)
    late = _late_rows(engine, events, window, intake_days)
    duplicates = _duplicate_rows(engine, events, days)
    counts = account_days(engine, events, days)  # counted once: the daily rows and the top accounts
    daily = engine.to_pandas(daily_per_account(engine, counts, api, written), ["date", "account_id"])
    top = _top_shares(engine, counts)
    engine.release(counts, "engagement_account_days")
    ud = engine.materialize(
        user_days(engine, events, window.rollup_start, window.rollup_end), "engagement_user_days"
    )
    per_day, actives = _actives(engine, ud, window)
    metrics = _metrics(window, per_day, actives, daily)
    intake = _intake(window, intake_days, stats, firsts, late, inputs.landing)
    monthly, accounts, upstates = _months(engine, events, api, window, per_day, actives, read)
    if inputs.landing.rejected:  # data left out: no month it touches is complete (investors: provisional)
        monthly["complete"] = False
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
        landing=inputs.landing,
        api_quarantined=engine.to_pandas(api_unusable(engine, inputs.api), ["delivery_file", "delivery_row"]),
    )
    run.backfill = backfill_requests(run)
    for name, df in (
        ("engagement_conformed", rows),
        ("engagement_events", events),
        ("engagement_api", api),
        ("engagement_user_days", ud),
    ):
        engine.release(df, name)
    return run


# ---------------------------------------------------------------- what compute brings back


_DETAIL = (
    "message_id",
    "schema_version",
    "received_at",
    "reason",
    "raw_text",
    "delivery_file",
    "delivery_row",
)


def _received(
    engine: Engine, rows: Any, intake_days: Sequence[dt.date], run_date: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rows received per day, ``schema_version`` and ``reason`` (intake days); per day and hour
    through ``run_date`` (the days the stream check judges: the run's day and its baselines); and
    the rows of the intake days the contract quarantined, with their reason and landed text.

    One pass over the rows read (each pass re-reads and re-parses the deliveries): they are counted
    per day, hour, version and reason, and a quarantined row of an intake day is a group of its
    own, keyed by its details too (NULL for every other row). Days received later are left out of
    the hourly volume: what of them a run reads depends on which deliveries it had to read
    (:mod:`helpers.engagement.spans`).
    """
    F = engine.F
    shown = in_days(engine, "received_date", intake_days) & F.col("reason").isNotNull()
    keys = ["date", "hour", "schema_version", "reason"]
    grouped = engine.to_pandas(
        rows.groupBy(
            F.col("received_date").alias("date"),
            F.col("received_hour").alias("hour"),
            F.col("schema_version").alias("schema_version"),
            F.col("reason").alias("reason"),
            *[F.when(shown, F.col(c)).alias(f"q_{c}") for c in _DETAIL],
        ).agg(F.count(F.lit(1)).cast("long").alias("rows")),
    )
    volume = grouped.groupby(keys, dropna=False, as_index=False, sort=True)["rows"].sum()
    stats = (
        volume[volume["date"].isin(intake_days)]
        .groupby(["date", "schema_version", "reason"], dropna=False, as_index=False)["rows"]
        .sum()
    )
    hourly = (
        volume[volume["date"] <= run_date]
        .groupby(["date", "hour"], as_index=False)["rows"]
        .sum()
        .rename(columns={"rows": "received"})
    )
    picked = grouped[grouped["q_delivery_file"].notna()]
    quarantined = pd.DataFrame({c: picked[f"q_{c}"] for c in _DETAIL}).astype({"delivery_row": "int64"})
    order = ["received_at", "raw_text", "delivery_file", "delivery_row"]
    return stats, hourly, quarantined.sort_values(order, kind="mergesort").reset_index(drop=True)


def _first_copies_per_day(engine: Engine, events: Any, intake_days: Sequence[dt.date]) -> pd.DataFrame:
    """Per received day: how many first copies of a message it brought (``date``, ``firsts``)."""
    F = engine.F
    return engine.to_pandas(
        events.where(in_days(engine, "received_date", intake_days))
        .groupBy(F.col("received_date").alias("date"))
        .agg(F.count(F.lit(1)).cast("long").alias("firsts")),
        ["date"],
    )


def _late_rows(
    engine: Engine, events: Any, window: RunWindow, intake_days: Sequence[dt.date]
) -> pd.DataFrame:
    """Late events of the window (by event or received day), and those received beyond their
    day's window (``beyond_window``)."""
    F = engine.F
    beyond_cond = F.lit(False)
    for d in intake_days:
        beyond_cond = beyond_cond | (
            (F.col("received_date") == F.lit(d)) & (F.col("event_date") < F.lit(window.beyond_window(d)))
        )
    in_window = in_days(engine, "event_date", window.days) | in_days(engine, "received_date", intake_days)
    return engine.to_pandas(
        events.where((F.col("late") & in_window) | beyond_cond).select(
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


def _duplicate_rows(engine: Engine, events: Any, days: Sequence[dt.date]) -> pd.DataFrame:
    """Messages of the window's event days that arrived more than once, with their copies."""
    F = engine.F
    return engine.to_pandas(
        events.where(in_days(engine, "event_date", days) & (F.col("copies") > 1)).select(
            F.col("event_date").alias("date"),
            F.col("message_id").alias("message_id"),
            F.col("copies").alias("copies"),
        ),
        ["date", "message_id"],
    )


def _top_shares(engine: Engine, per_day: Any) -> pd.DataFrame:
    """:func:`helpers.engagement.transforms.top_accounts` per day, with each account's ``share``
    (``per_day``: :func:`helpers.engagement.transforms.account_days` of the window's days)."""
    top = engine.to_pandas(top_accounts(engine, per_day), ["date", "rank"])
    top["share"] = (top["events"] / top["day_events"].where(top["day_events"] > 0)).fillna(0.0).round(6)
    return top


def _actives(engine: Engine, ud: Any, window: RunWindow) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DAU per day, and active users and accounts per labelled range: ``w<day>`` (WAU),
    ``m<day>`` (MAU) for the days written, ``p<period>`` for each month to date."""
    written = window.written_days
    per_day = engine.to_pandas(daily_actives(engine, ud), ["date"])
    ranges = [(f"w{d.isoformat()}", d - dt.timedelta(days=WAU_DAYS - 1), d) for d in written]
    ranges += [(f"m{d.isoformat()}", d - dt.timedelta(days=MAU_DAYS - 1), d) for d in written]
    ranges += [(f"p{m.period}", m.start, m.through) for m in window.months]
    actives = (
        engine.to_pandas(range_actives(engine, ud, ranges), ["label"])
        if ranges
        else pd.DataFrame(columns=["label", "users", "accounts"])
    )
    return per_day, actives


def _months(
    engine: Engine,
    events: Any,
    api: Any,
    window: RunWindow,
    per_day: pd.DataFrame,
    actives: pd.DataFrame,
    read: UpstreamReader,
) -> tuple[pd.DataFrame, pd.DataFrame, list[UpstreamState]]:
    """Per month the window touches: the ``engagement_monthly`` row, the account rows joined with
    the upstreams (``read``), and the upstreams' states."""
    if not window.months:
        return pd.DataFrame(columns=MONTHLY_COLUMNS), _empty_accounts(), []
    per_account = engine.materialize(
        monthly_per_account(engine, events, api, window.months), "engagement_accounts"
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
    engine.release(per_account, "engagement_accounts")
    return pd.DataFrame(monthly_rows), pd.concat(account_frames, ignore_index=True), upstates


# ---------------------------------------------------------------- the pure roll-ups


def _empty_accounts() -> pd.DataFrame:
    """No ``engagement_accounts_monthly`` rows (a window without a month to write)."""
    return pd.DataFrame(columns=ACCOUNT_COLUMNS)


def _dau_series(per_day: pd.DataFrame, first: dt.date, last: dt.date) -> pd.Series:
    """DAU for every day in [first, last] (a day without events has DAU 0, not a gap)."""
    idx = pd.Index([first + dt.timedelta(days=i) for i in range((last - first).days + 1)], name="date")
    s = per_day.set_index("date")["dau"] if len(per_day) else pd.Series(dtype="int64")
    return s.reindex(idx).fillna(0).astype("int64")


def _ratio(num: float, den: float) -> float:
    """num/den at full precision; 0 when den is 0 (no active users: nothing to be sticky about)."""
    return float(num) / float(den) if den else 0.0


def _metrics(
    window: RunWindow, per_day: pd.DataFrame, actives: pd.DataFrame, daily: pd.DataFrame
) -> pd.DataFrame:
    """``engagement_metrics_daily``: one row per day written (DAU/WAU/MAU, stickiness, totals)."""
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
    """The ``engagement_monthly`` row of ``month`` to date (revenue only once every upstream finished)."""
    look = actives.set_index("label") if len(actives) else pd.DataFrame(columns=["users", "accounts"])
    dau = _dau_series(per_day, month.start, month.through)
    mau = int(look["users"].get(f"p{month.period}", 0))
    final = bool(len(accounts)) and (accounts["status"] == "final").all()
    return {
        "period": month.period,
        "through_date": month.through,
        "complete": month.complete,
        "days": len(dau),
        "dau_avg": float(dau.mean()) if len(dau) else 0.0,
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


def _left_out(landing: LandingReport) -> pd.DataFrame:
    """``events`` rows of deliveries left out whole, as intake stats (``date``: the partition)."""
    rows = [
        {
            "date": dt.date.fromisoformat(r.delivery.partition),
            "schema_version": None,
            "reason": f"delivery left out: {KIND_LABELS.get(r.kind, r.kind)}",
            "rows": int(r.delivery.rows),
        }
        for r in landing.rejected
        if r.delivery.source == "events" and r.delivery.rows
    ]
    return pd.DataFrame(rows, columns=["date", "schema_version", "reason", "rows"])


def _intake(
    window: RunWindow,
    days: Sequence[dt.date],
    stats: pd.DataFrame,
    firsts: pd.DataFrame,
    late: pd.DataFrame,
    landing: LandingReport | None = None,
) -> pd.DataFrame:
    """``engagement_intake_daily``: per received day, the contract's intake, copies and late events.

    The rows of an ``events`` delivery left out whole count as received and quarantined on its
    partition's day (its manifest row count): nothing read or not is lost from the intake."""
    left = _left_out(landing or LandingReport())
    if len(left):
        stats = pd.concat([stats, left[left["date"].isin(days)]], ignore_index=True)
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
    return pd.DataFrame(rows, columns=list(INTAKE_COLUMNS))


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

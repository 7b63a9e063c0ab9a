"""The marts the Engagement account join reads (Profit's revenue, Growth's status), and the join.

Engagement per account and month is joined 1:1 with ``profit_unit_monthly`` (revenue) and
``growth_accounts_monthly`` (status) once both pipelines have finished for the month
(:func:`upstream_state`); until then the month's account rows are written ``pending`` and
nothing is published from the upstreams' columns (never a NULL in a final row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.engagement.marts import ACCOUNT_COLUMNS
from helpers.engagement.transforms import full_join
from helpers.engagement.window import Month
from helpers.runs import records as runs
from helpers.storage import warehouse
from helpers.storage.engine import Engine


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

"""The Engagement marts: table names, columns and column types.

- ``engagement_daily``: per event day and account (partition ``date``);
- ``engagement_metrics_daily``: per event day, DAU/WAU/MAU and stickiness (``date``);
- ``engagement_intake_daily``: per received day, the schema contract's intake (``date``);
- ``engagement_monthly``: per month to date (``period``);
- ``engagement_accounts_monthly``: per month and account, with revenue and growth (``period``);
- ``engagement_backfill_requests``: the backfills runs requested (``helpers.engagement.store``).

Column types are given on every write (:func:`mart_types`), so that a first write full of NULLs
(a pending month) does not fix a column's type as text. Counts are integers; the ratio and the
average (``stickiness``, ``dau_avg``) are doubles at full precision, rounded only where shown.
"""

from __future__ import annotations

from functools import cache
from typing import Any

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
INTAKE_COLUMNS = (
    "date",
    "received",
    "accepted",
    "quarantined",
    "duplicates",
    "late",
    "late_beyond_window",
    "by_version",
    "by_reason",
)
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


@cache
def mart_types() -> dict[str, dict[str, Any]]:
    """Column types of the marts (SQLAlchemy), given on every write so that a first write full of
    NULLs (a pending month) does not fix a column's type as text. Built on first use: importing
    SQLAlchemy costs a pipeline that only computes (``helpers.engagement.transforms``) 0.1-0.3 s."""
    import sqlalchemy as sa

    _I, _T, _D, _F, _B = sa.BigInteger(), sa.Text(), sa.Date(), sa.Float(), sa.Boolean()
    return {
        DAILY_TABLE: {"date": _D, "account_id": _T, **{c: _I for c in DAILY_COLUMNS[2:]}},
        METRICS_TABLE: {
            "date": _D,
            "stickiness": _F,
            **{c: _I for c in METRICS_COLUMNS if c not in ("date", "stickiness")},
        },
        INTAKE_TABLE: {
            "date": _D,
            **{
                c: _I
                for c in ("received", "accepted", "quarantined", "duplicates", "late", "late_beyond_window")
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

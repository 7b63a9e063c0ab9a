"""The investor metrics and the mart that holds them: names, labels, units, sources, and how a value reads.

``investor_monthly`` is long form (:data:`COLUMNS`): one row per metric (:data:`METRICS`) with its
value, unit, status and provenance. The upstream pipelines' marts feed the metrics through the column
lists here (:data:`PROFIT_COLUMNS`, :data:`GROWTH_COLUMNS`, :data:`ENGAGEMENT_COLUMNS`);
:func:`format_value` is how every report shows a value to people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.money import usd

PIPELINE = "investor_aggregate"
TABLE = "investor_monthly"
PROFIT, GROWTH, ENGAGEMENT = "profit_aggregate", "growth_aggregate", "engagement_aggregate"
UPSTREAMS = (PROFIT, GROWTH, ENGAGEMENT)

COLUMNS = (
    "period",
    "metric",
    "value",
    "value_int",
    "unit",
    "status",
    "status_reason",
    "source_pipeline",
    "source_table",
    "source_run_id",
    "run_id",
    "as_of",
)
_I, _F, _T, _TS = sa.BigInteger(), sa.Float(), sa.Text(), sa.DateTime()
MART_TYPES: dict[str, Any] = {
    "period": _T,
    "metric": _T,
    "value": _F,  # every metric; integer metrics are exact in a double below 2**53
    "value_int": _I,  # money (USD cents) and counts exactly; NULL for ratios and averages
    "unit": _T,
    "status": _T,
    "status_reason": _T,
    "source_pipeline": _T,
    "source_table": _T,
    "source_run_id": _T,
    "run_id": _T,
    "as_of": _TS,
}


# ---------------------------------------------------------------- the metrics


@dataclass(frozen=True)
class Metric:
    """One investor metric: its name (``investor_monthly.metric``), label, unit and source."""

    name: str
    label: str
    unit: str  # usd_cents | count | ratio | users
    source: str  # pipeline id (investor_aggregate for cross-pipeline figures)
    table: str
    higher_is_better: bool | None = True


_P, _G, _E, _X = "profit_monthly", "growth_mrr_monthly", "engagement_monthly", "(cross-pipeline)"
METRICS: tuple[Metric, ...] = (
    Metric("revenue_usd_cents", "Revenue (recognised)", "usd_cents", PROFIT, _P),
    Metric("salaries_usd_cents", "Salaries", "usd_cents", PROFIT, _P, False),
    Metric("infrastructure_usd_cents", "Infrastructure", "usd_cents", PROFIT, _P, False),
    Metric("operations_usd_cents", "Operations", "usd_cents", PROFIT, _P, False),
    Metric("total_cost_usd_cents", "Total costs", "usd_cents", PROFIT, _P, False),
    Metric("profit_usd_cents", "Profit", "usd_cents", PROFIT, _P),
    Metric("margin", "Margin", "ratio", PROFIT, _P),
    Metric("written_off_usd_cents", "Revenue written off (dunning)", "usd_cents", PROFIT, _P, False),
    Metric("finance_difference_usd_cents", "Profit minus Finance's ledger", "usd_cents", PROFIT, _P, None),
    Metric("starting_mrr_usd_cents", "Starting MRR", "usd_cents", GROWTH, _G),
    Metric("new_mrr_usd_cents", "New MRR", "usd_cents", GROWTH, _G),
    Metric("expansion_mrr_usd_cents", "Expansion MRR", "usd_cents", GROWTH, _G),
    Metric("contraction_mrr_usd_cents", "Contraction MRR", "usd_cents", GROWTH, _G),
    Metric("churn_voluntary_mrr_usd_cents", "Churned MRR (voluntary)", "usd_cents", GROWTH, _G),
    Metric("churn_involuntary_mrr_usd_cents", "Churned MRR (involuntary)", "usd_cents", GROWTH, _G),
    Metric("reactivation_mrr_usd_cents", "Reactivation MRR", "usd_cents", GROWTH, _G),
    Metric("ending_mrr_usd_cents", "Ending MRR", "usd_cents", GROWTH, _G),
    Metric("arr_usd_cents", "ARR (12 x ending MRR)", "usd_cents", GROWTH, _G),
    Metric("customers_start", "Customers at start", "count", GROWTH, _G),
    Metric("new_customers", "New customers", "count", GROWTH, _G),
    Metric("reactivated_customers", "Reactivated customers", "count", GROWTH, _G),
    Metric("churned_customers", "Churned customers", "count", GROWTH, _G, False),
    Metric("customers_end", "Customers", "count", GROWTH, _G),
    Metric("logo_churn_rate", "Logo churn (churned / customers at start)", "ratio", GROWTH, _G, False),
    Metric("arpa_usd_cents", "ARPA (ending MRR per customer)", "usd_cents", GROWTH, _G),
    Metric("nrr", "Net revenue retention (monthly)", "ratio", GROWTH, _G),
    Metric("grr", "Gross revenue retention (monthly)", "ratio", GROWTH, _G),
    Metric("dau_avg", "Daily active users (average)", "users", ENGAGEMENT, _E),
    Metric("mau", "Monthly active users", "users", ENGAGEMENT, _E),
    Metric("stickiness", "Stickiness (DAU / MAU)", "ratio", ENGAGEMENT, _E),
    Metric("engaged_accounts", "Accounts with activity", "count", ENGAGEMENT, _E),
    Metric("events", "Product events", "count", ENGAGEMENT, _E),
    Metric("api_requests", "API requests", "count", ENGAGEMENT, _E),
    Metric("revenue_mrr_runrate_usd_cents", "MRR run-rate (mean of start and end)", "usd_cents", PIPELINE, _X),
    Metric("revenue_vs_mrr_difference_usd_cents", "Revenue minus MRR run-rate", "usd_cents", PIPELINE, _X, None),
    Metric("revenue_vs_mrr_unexplained_usd_cents", "... of which not itemised", "usd_cents", PIPELINE, _X, None),
    Metric("paying_engaged_share", "Paying companies with activity", "ratio", PIPELINE, _X),
    Metric("paying_not_engaged", "Paying companies without activity", "count", PIPELINE, _X, False),
)  # fmt: skip
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
PROFIT_COLUMNS = (
    "revenue_usd_cents",
    "salaries_usd_cents",
    "infrastructure_usd_cents",
    "operations_usd_cents",
    "total_cost_usd_cents",
    "profit_usd_cents",
    "margin",
    "written_off_usd_cents",
    "finance_difference_usd_cents",
)
MOVEMENT_COLUMNS = (
    "new_mrr_usd_cents",
    "expansion_mrr_usd_cents",
    "contraction_mrr_usd_cents",
    "churn_voluntary_mrr_usd_cents",
    "churn_involuntary_mrr_usd_cents",
    "reactivation_mrr_usd_cents",
)
GROWTH_COLUMNS = (
    "starting_mrr_usd_cents",
    *MOVEMENT_COLUMNS,
    "ending_mrr_usd_cents",
    "customers_start",
    "new_customers",
    "reactivated_customers",
    "churned_customers",
    "customers_end",
    "nrr",
    "grr",
)
ENGAGEMENT_COLUMNS = {
    "dau_avg": "dau_avg",
    "mau": "mau",
    "stickiness": "stickiness",
    "engaged_accounts": "active_accounts",
    "events": "events",
    "api_requests": "api_requests",
}


# ---------------------------------------------------------------- how a value reads


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """``investor_monthly`` rows for reading: label, formatted value, status and provenance."""
    return pd.DataFrame(
        {
            "metric": frame["metric"].map(lambda m: BY_NAME[m].label if m in BY_NAME else m),
            "value": [format_value(v, u) for v, u in zip(frame["value"], frame["unit"], strict=True)],
            "status": frame["status"],
            "source": frame["source_pipeline"],
            "source run": frame["source_run_id"],
        }
    )


def format_value(value: Any, unit: str) -> str:
    """A metric's value for people: ``$1,234.56``, ``1,234``, ``29.4%``; ``n/a`` when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "n/a"
    if unit == "usd_cents":
        return usd(int(round(float(value))))
    if unit == "ratio":
        return f"{float(value):.1%}"
    if unit == "users" and float(value) != int(float(value)):
        return f"{float(value):,.1f}"
    return f"{int(round(float(value))):,}"

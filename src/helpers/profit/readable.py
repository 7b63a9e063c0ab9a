"""Profit figures made readable for notebooks: dollars, the headline row, the experiment arms and
the waterfall's steps."""

from __future__ import annotations

from typing import Any

import pandas as pd

from helpers.core.money import usd
from helpers.profit.costs import CATEGORIES


def waterfall_steps(profit: pd.DataFrame) -> list[tuple[str, float]]:
    """Revenue, each cost category (negative) and profit in dollars, for ``charts.waterfall``."""
    row = profit.iloc[0]
    costs = [(c, -row[f"{c}_usd_cents"] / 100) for c in CATEGORIES]
    return [("revenue", row["revenue_usd_cents"] / 100), *costs, ("profit", row["profit_usd_cents"] / 100)]


def dollars(cents: Any) -> str:
    """``$1,234.56`` (``-$12.00``) for integer cents; ``NULL`` for a missing value."""
    if cents is None or pd.isna(cents):
        return "NULL"
    return usd(int(cents))


def readable_profit(profit: pd.DataFrame) -> pd.Series:
    """The headline figures of a ``profit_monthly`` row, in dollars, for reading."""
    row = profit.iloc[0]
    margin = (
        "NULL (" + str(row["margin_null_reason"]) + ")" if pd.isna(row["margin"]) else f"{row['margin']:.1%}"
    )
    return pd.Series(
        {
            "revenue": dollars(row["revenue_usd_cents"]),
            **{c: dollars(row[f"{c}_usd_cents"]) for c in CATEGORIES},
            "total cost": dollars(row["total_cost_usd_cents"]),
            "profit": dollars(row["profit_usd_cents"]),
            "margin": margin,
            "status": row["status"],
            "reconciliation": row["reconciliation_status"],
        },
        name=str(row["period"]),
    )


def readable_arms(arms: pd.DataFrame) -> pd.DataFrame:
    """Per-arm summaries in dollars with their intervals, for an experiment owner."""
    if not len(arms):
        return pd.DataFrame(
            columns=["experiment", "arm", "accounts", "mean unit profit", "vs control", "margin"]
        )

    def interval(mean: Any, lo: Any, hi: Any) -> str:
        if pd.isna(mean):
            return ""
        bounds = "" if pd.isna(lo) else f" [{dollars(round(lo))}, {dollars(round(hi))}]"
        return dollars(round(mean)) + bounds

    return pd.DataFrame(
        {
            "experiment": arms["experiment"],
            "arm": arms["arm"],
            "accounts": arms["accounts"],
            "paying": arms["paying_accounts"],
            "mean unit profit": [
                interval(m, lo, hi)
                for m, lo, hi in zip(
                    arms["mean_unit_profit_usd_cents"],
                    arms["ci_low_usd_cents"],
                    arms["ci_high_usd_cents"],
                    strict=True,
                )
            ],
            "vs control": [
                interval(m, lo, hi)
                for m, lo, hi in zip(
                    arms["diff_vs_control_usd_cents"],
                    arms["diff_ci_low_usd_cents"],
                    arms["diff_ci_high_usd_cents"],
                    strict=True,
                )
            ],
            "margin": [("" if pd.isna(m) else f"{m:.1%}") for m in arms["margin"]],
            "note": arms["note"],
        }
    )

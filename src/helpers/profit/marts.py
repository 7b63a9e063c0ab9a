"""The Profit marts (the I/O edge): their column types, rows stamped with partition and
provenance, written per partition; and the aggregate read back by ``profit_unit``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.timeutil import as_utc, naive_utc
from helpers.profit.inputs import FINDING_COLUMNS

_I, _F, _T, _B, _TS = sa.BigInteger, sa.Float, sa.Text, sa.Boolean, sa.DateTime
_PROVENANCE = {"as_of": _TS, "run_id": _T}
_FINDINGS = {c: _T for c in FINDING_COLUMNS}
# Column types of every Profit mart, so a first write of an empty partition still creates them right.
MART_TYPES: dict[str, dict[str, Any]] = {
    "profit_monthly": {
        "period": _T, "revenue_usd_cents": _I, "salaries_usd_cents": _I, "infrastructure_usd_cents": _I,
        "operations_usd_cents": _I, "total_cost_usd_cents": _I, "profit_usd_cents": _I, "margin": _F,
        "margin_null_reason": _T, "status": _T, "provisional_reasons": _T, "customers": _I, "open_lines": _I,
        "written_off_usd_cents": _I, "quarantined_rows": _I, "reconciliation_status": _T,
        "finance_difference_usd_cents": _I, **_PROVENANCE,
    },
    "profit_costs_monthly": {
        "period": _T, "category": _T, "subcategory": _T, "provider": _T, "service": _T, "charge_category": _T,
        "cost_usd_cents": _I, "cost_micros": _I, "rows": _I, **_PROVENANCE,
    },
    "finance_reconciliation": {
        "period": _T, "line_id": _T, "category": _T, "subcategory": _T, "currency": _T, "our_local": _I,
        "our_usd_cents": _I, "finance_local": _I, "finance_usd_cents": _I, "difference_usd_cents": _I,
        "difference_class": _T, "cause": _T, "expected": _B, "component_local": _I, "component_usd_cents": _I,
        "detail": _T, **_PROVENANCE,
    },
    "profit_quarantine": {"period": _T, **_FINDINGS, **_PROVENANCE},
    "profit_unit_monthly": {
        "period": _T, "account_id": _T, "revenue_usd_cents": _I, "seat_seconds": _I, "active_seconds": _I,
        "avg_seats": _F, "infrastructure_usd_cents": _I, "support_usd_cents": _I, "unit_profit_usd_cents": _I,
        "unit_margin": _F, "unit_margin_null_reason": _T, "revenue_per_seat_usd_cents": _F,
        "revenue_per_seat_null_reason": _T, "experiment_arms": _T, **_PROVENANCE,
    },
    "profit_unit_arms": {
        "period": _T, "experiment": _T, "arm": _T, "accounts": _I, "paying_accounts": _I, "revenue_usd_cents": _I,
        "infrastructure_usd_cents": _I, "support_usd_cents": _I, "unit_profit_usd_cents": _I, "margin": _F,
        "mean_unit_profit_usd_cents": _F, "ci_low_usd_cents": _F, "ci_high_usd_cents": _F,
        "diff_vs_control_usd_cents": _F, "diff_ci_low_usd_cents": _F, "diff_ci_high_usd_cents": _F,
        "confidence": _F, "ci_method": _T, "note": _T, **_PROVENANCE,
    },
    "profit_unit_quarantine": {"period": _T, **_FINDINGS, **_PROVENANCE},
}  # fmt: skip


# ---------------------------------------------------------------- rows of a mart


def stamp(frame: pd.DataFrame, *, period: str, as_of: dt.datetime, run_id: str) -> pd.DataFrame:
    """``frame`` with the partition column first and provenance (``as_of``, ``run_id``) last."""
    out = frame.drop(columns=[c for c in ("period", "as_of", "run_id") if c in frame.columns])
    out.insert(0, "period", period)
    out["as_of"] = pd.Timestamp(naive_utc(as_of))
    out["run_id"] = run_id
    return out.reset_index(drop=True)


def mart_frame(
    table: str, frame: pd.DataFrame, *, period: str, as_of: dt.datetime, run_id: str
) -> pd.DataFrame:
    """``frame`` as rows of ``table``: its columns in order, partition and provenance stamped."""
    out = stamp(frame, period=period, as_of=as_of, run_id=run_id)
    missing = [c for c in MART_TYPES[table] if c not in out.columns]
    if missing:
        raise ValueError(f"{table}: frame lacks column(s) {missing}")
    return out[list(MART_TYPES[table])]


def write_marts(
    frames: Mapping[str, pd.DataFrame], *, period: str, as_of: dt.datetime, run_id: str
) -> dict[str, int]:
    """Replace ``period``'s partition of each mart (atomic per table, idempotent); rows written."""
    from helpers.storage import warehouse

    written = {}
    for table, frame in frames.items():
        rows = mart_frame(table, frame, period=period, as_of=as_of, run_id=run_id)
        written[table] = warehouse.replace_partition(
            table, rows, {"period": period}, written_at=as_utc(as_of), run_id=run_id, dtype=MART_TYPES[table]
        )
    return written


def read_aggregate(period: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``profit_monthly`` and ``profit_costs_monthly`` of ``period`` (the unit pipeline's upstream)."""
    from helpers.storage import warehouse

    try:
        return (
            warehouse.read_table("profit_monthly", where={"period": period}),
            warehouse.read_table("profit_costs_monthly", where={"period": period}),
        )
    except sa.exc.NoSuchTableError:
        raise ValueError(
            f"no profit_monthly in the warehouse: run profit_aggregate for {period} first"
        ) from None

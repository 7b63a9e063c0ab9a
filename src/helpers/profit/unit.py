"""The ``profit_unit`` run: profit per account (revenue minus its share of the infrastructure and
support pools) and per experiment arm, with confidence intervals.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.money import MICRO, to_cents
from helpers.core.periods import month_bounds
from helpers.profit.completeness import source_staleness
from helpers.profit.fx import daily_rates
from helpers.profit.inputs import (
    KEYS,
    UNIT_SOURCES,
    JoinLog,
    ProfitInputs,
    concat_findings,
    latest,
    relevant_findings,
    require_complete,
)
from helpers.profit.readable import dollars
from helpers.profit.revenue import (
    ACTIVE_STATUSES,
    account_of,
    customers_dimension,
    elapsed,
    invoice_lines,
    revenue_days,
    subscription_events,
)

# ---------------------------------------------------------------- allocation


def seat_seconds(events: pd.DataFrame, start: pd.Timestamp, stop: pd.Timestamp) -> pd.DataFrame:
    """Seat-seconds and in-use seconds of each subscription inside ``[start, stop)`` (UTC).

    Each event starts a state that lasts until the subscription's next event; a state in use
    (trialing, active, past_due) contributes ``seats x its overlap with the window``.
    """
    cols = ["subscription_id", "customer_id", "seat_seconds", "active_seconds"]
    if not len(events):
        return pd.DataFrame(columns=cols)
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(stop, tz="UTC")
    ev = events.assign(until=events.groupby("subscription_id")["event_at"].shift(-1).fillna(hi))
    s = ev["event_at"].clip(lower=lo, upper=hi)
    e = ev["until"].clip(lower=lo, upper=hi)
    seconds = ((e - s).dt.total_seconds()).clip(lower=0).astype("int64")
    in_use = ev["status"].isin(ACTIVE_STATUSES)
    ev = ev.assign(
        active_seconds=seconds.where(in_use, 0),
        seat_seconds=(seconds * ev["item_quantity"].astype("int64")).where(in_use, 0),
    )
    out = (
        ev.groupby(["subscription_id", "customer_id"], sort=True)[["seat_seconds", "active_seconds"]]
        .sum()
        .reset_index()
    )
    return out[cols]


def account_revenue(days: pd.DataFrame, period: str, total_cents: int) -> pd.DataFrame:
    """Recognised revenue of ``period`` per account; cents split by largest remainder so the
    accounts add up to the published revenue ``total_cents`` exactly."""
    rev = days[(days["period"] == period) & (days["status"] != "uncollectible")]
    require_complete(rev, ["usd_micro"], what="account revenue")
    by = rev.groupby("account_id", sort=True)["usd_micro"].sum()
    cents = split_exact(by.to_numpy(dtype=np.int64), MICRO, total_cents) if len(by) else np.zeros(0, np.int64)
    return pd.DataFrame({"account_id": by.index.astype(str), "revenue_usd_cents": cents})


def split_exact(numerators: np.ndarray, denominator: int, total: int) -> np.ndarray:
    """:func:`helpers.core.money.largest_remainder` of the fractions ``numerators / denominator``
    (``denominator > 0``; int64, or Python ints in an object array) in integer arithmetic: the
    floors, then one unit more to the largest remainders (ties: first part first)."""
    floors = numerators // denominator
    remainders = numerators - floors * denominator
    missing = int(total) - int(floors.sum())
    if missing < 0 or missing > len(floors):
        raise ValueError(f"largest_remainder: total {total} is not the rounded sum of the parts")
    if remainders.dtype == object:  # Python ints: exact comparisons
        order = np.asarray(
            sorted(range(len(floors)), key=lambda i: (-remainders[i], i))[:missing], dtype=np.int64
        )
    else:
        order = np.argsort(-remainders, kind="stable")[:missing]
    out = floors.astype(np.int64)
    out[order] += 1
    return out


def allocate_exact(pool: int, weights: pd.Series) -> pd.Series:
    """:func:`helpers.core.money.allocate` (largest remainder, exact) without a ``Fraction`` per
    account: numpy int64 when ``pool x weight`` cannot overflow, Python ints otherwise."""
    w = weights.to_numpy(dtype=np.int64)
    if (w < 0).any():
        raise ValueError("allocate: weights must be non-negative")
    total = int(w.sum(dtype=object)) if len(w) else 0
    if total == 0:
        return pd.Series(0, index=weights.index, dtype="int64")
    if abs(int(pool)) * int(w.max()) < 2**62:
        numerators = int(pool) * w
    else:
        numerators = np.array([int(pool) * int(x) for x in w], dtype=object)
    return pd.Series(split_exact(numerators, total, int(pool)), index=weights.index, dtype="int64")


def unit_profit(
    revenue: pd.DataFrame,
    usage: pd.DataFrame,
    *,
    infrastructure_cents: int,
    support_cents: int,
    days_in_month: int,
    allocation: Any,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Profit per account: revenue minus its share of infrastructure and support cost.

    Allocation keys (``allocation`` in config): ``seats`` = seat-seconds in use during the month,
    ``accounts`` = one equal share per account in use, ``revenue`` = positive revenue. Each pool is
    split by largest remainder, so the accounts add up to the pool; a pool with no positive key
    is left unallocated and the returned notes say so. ``unit_margin`` and
    ``revenue_per_seat_usd_cents`` are NULL with a reason when their denominator is zero.
    """
    frame = revenue.merge(usage, on="account_id", how="outer")
    frame["revenue_usd_cents"] = frame["revenue_usd_cents"].fillna(0).astype("int64")
    frame["seat_seconds"] = frame["seat_seconds"].fillna(0).astype("int64")
    frame["active_seconds"] = frame["active_seconds"].fillna(0).astype("int64")
    keys = {
        "seats": frame["seat_seconds"],
        "accounts": (frame["active_seconds"] > 0).astype("int64"),
        "revenue": frame["revenue_usd_cents"].clip(lower=0),
    }
    notes: dict[str, str] = {}
    for pool, cents, rule in (
        ("infrastructure", infrastructure_cents, allocation.infrastructure),
        ("support", support_cents, allocation.support),
    ):
        frame[f"{pool}_usd_cents"] = allocate_exact(int(cents), keys[rule])
        if cents and not int(keys[rule].sum()):
            notes[pool] = f"{pool} pool of {cents} cents not allocated: no account has a positive {rule} key"
    frame["unit_profit_usd_cents"] = (
        frame["revenue_usd_cents"] - frame["infrastructure_usd_cents"] - frame["support_usd_cents"]
    )
    frame["avg_seats"] = frame["seat_seconds"] / (days_in_month * 86_400)
    rev = frame["revenue_usd_cents"]
    frame["unit_margin"] = (frame["unit_profit_usd_cents"] / rev.where(rev > 0)).astype("float64")
    frame["unit_margin_null_reason"] = np.where(
        rev > 0, None, np.where(rev == 0, "no revenue: zero denominator", "negative revenue (credits)")
    )
    seats = frame["avg_seats"]
    frame["revenue_per_seat_usd_cents"] = (rev / seats.where(seats > 0)).round(2).astype("float64")
    frame["revenue_per_seat_null_reason"] = np.where(seats > 0, None, "no seats in use: zero denominator")
    return frame.sort_values("account_id").reset_index(drop=True), notes


# ---------------------------------------------------------------- experiment arms


def assignments_of(assignments: pd.DataFrame, before: pd.Timestamp) -> pd.DataFrame:
    """Each account's arm per experiment (latest assignment made before ``before``)."""
    a = latest(assignments, KEYS["experiment_assignments"], ["assigned_at"])
    a = a[pd.to_datetime(a["assigned_at"], utc=True) < pd.Timestamp(before, tz="UTC")]
    return a[["account_id", "experiment", "arm"]].reset_index(drop=True)


def arms_label(unit: pd.DataFrame, arms: pd.DataFrame) -> pd.Series:
    """``experiment=arm; ...`` per account of ``unit`` (empty text when in no experiment)."""
    labels: dict[Any, list[str]] = {}
    for account, label in zip(arms["account_id"], arms["experiment"] + "=" + arms["arm"], strict=True):
        if not pd.isna(account):  # as groupby: a NULL account is in no group
            labels.setdefault(account, []).append(label)
    text = pd.Series({a: "; ".join(sorted(v)) for a, v in labels.items()}, dtype=object)
    return unit["account_id"].map(text).fillna("")


def arm_summaries(
    unit: pd.DataFrame, arms: pd.DataFrame, joins: JoinLog, *, confidence: float
) -> pd.DataFrame:
    """Per experiment and arm: accounts, totals, mean unit profit per account with a normal-approx
    confidence interval, and each arm's difference from ``control`` (Welch's standard error).

    An arm with fewer than two accounts has NULL intervals and a ``note`` saying why.
    """
    cols = ["experiment", "arm", "accounts", "paying_accounts", "revenue_usd_cents", "infrastructure_usd_cents",
            "support_usd_cents", "unit_profit_usd_cents", "margin", "mean_unit_profit_usd_cents",
            "ci_low_usd_cents", "ci_high_usd_cents", "diff_vs_control_usd_cents", "diff_ci_low_usd_cents",
            "diff_ci_high_usd_cents", "confidence", "ci_method", "note"]  # fmt: skip
    if not len(arms) or not len(unit):
        return pd.DataFrame(columns=cols)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    long = joins.merge(arms, unit, on="account_id", name="assignments x unit profit (one row per assignment)")
    long = long[long["unit_profit_usd_cents"].notna()]
    g = long.groupby(["experiment", "arm"], sort=True)
    out = g.agg(
        accounts=("account_id", "nunique"),
        paying_accounts=("revenue_usd_cents", lambda s: int((s > 0).sum())),
        revenue_usd_cents=("revenue_usd_cents", "sum"),
        infrastructure_usd_cents=("infrastructure_usd_cents", "sum"),
        support_usd_cents=("support_usd_cents", "sum"),
        unit_profit_usd_cents=("unit_profit_usd_cents", "sum"),
        mean=("unit_profit_usd_cents", "mean"),
        sd=("unit_profit_usd_cents", "std"),
    ).reset_index()
    se = out["sd"] / np.sqrt(out["accounts"])
    out["mean_unit_profit_usd_cents"] = out["mean"].round(2)
    out["ci_low_usd_cents"] = (out["mean"] - z * se).round(2)
    out["ci_high_usd_cents"] = (out["mean"] + z * se).round(2)
    control = out[out["arm"] == "control"].set_index("experiment")
    c_mean = out["experiment"].map(control["mean"])
    c_var = out["experiment"].map(control["sd"] ** 2 / control["accounts"])
    diff_se = np.sqrt(se**2 + c_var)
    is_control = out["arm"] == "control"
    out["diff_vs_control_usd_cents"] = (out["mean"] - c_mean).where(~is_control).round(2)
    out["diff_ci_low_usd_cents"] = (out["mean"] - c_mean - z * diff_se).where(~is_control).round(2)
    out["diff_ci_high_usd_cents"] = (out["mean"] - c_mean + z * diff_se).where(~is_control).round(2)
    rev = out["revenue_usd_cents"]
    out["margin"] = (out["unit_profit_usd_cents"] / rev.where(rev > 0)).astype("float64")
    out["confidence"] = confidence
    out["ci_method"] = "normal approximation (Welch for differences)"
    small = out["accounts"] < 2
    no_control = c_mean.isna() & ~is_control
    out["note"] = np.where(
        small, "fewer than 2 accounts: no interval", np.where(no_control, "no control arm: no difference", "")
    )
    for col in ("ci_low_usd_cents", "ci_high_usd_cents", "diff_ci_low_usd_cents", "diff_ci_high_usd_cents"):
        out[col] = out[col].where(~small)
    for col in (
        "accounts",
        "paying_accounts",
        "revenue_usd_cents",
        "infrastructure_usd_cents",
        "support_usd_cents",
        "unit_profit_usd_cents",
    ):
        out[col] = out[col].astype("int64")
    return out[cols]


def support_pool(costs: pd.DataFrame, allocation: Any) -> int:
    """Support cost of the month (cents) from ``profit_costs_monthly``: the configured salary
    departments and operations categories."""
    pick = ((costs["category"] == "salaries") & costs["subcategory"].isin(allocation.support_departments)) | (
        (costs["category"] == "operations") & costs["subcategory"].isin(allocation.support_operations)
    )
    return int(costs.loc[pick, "cost_usd_cents"].sum())


# ---------------------------------------------------------------- one run, assembled


@dataclass
class Unit:
    """Everything one ``profit_unit`` run computes for its period (see ``build_unit``)."""

    period: str
    unit: pd.DataFrame
    arms: pd.DataFrame
    findings: pd.DataFrame
    joins: JoinLog
    staleness: pd.DataFrame
    pools: dict[str, int]
    notes: dict[str, str]
    revenue_total_cents: int
    aggregate_revenue_cents: int

    def allocated(self) -> dict[str, int]:
        """Cents allocated to accounts per pool (equal to ``pools`` unless a note says otherwise)."""
        return {pool: int(self.unit[f"{pool}_usd_cents"].sum()) for pool in self.pools}

    def pools_view(self) -> pd.Series:
        """The pools in dollars, with any note on what could not be allocated."""
        return pd.Series({**{k: dollars(v) for k, v in self.pools.items()}, **self.notes}, name="cost pools")


def build_unit(inputs: ProfitInputs, aggregate: pd.DataFrame, costs: pd.DataFrame, *, settings: Any) -> Unit:
    """Profit per account of ``inputs.period`` from billing, seats and the aggregate's cost pools.

    ``aggregate`` is the period's ``profit_monthly`` row and ``costs`` its ``profit_costs_monthly``
    rows (written by ``profit_aggregate``, the upstream): the pools allocated here are the ones
    published there, so the accounts add up to the aggregate's infrastructure and support cost.
    """
    if len(aggregate) != 1:
        raise ValueError(
            f"profit_monthly has {len(aggregate)} row(s) for {inputs.period}; run profit_aggregate for it first"
        )
    period = inputs.period
    first, stop = month_bounds(period)
    joins = JoinLog()
    rates = daily_rates(inputs["fx_rates"], first, stop, max_gap_days=settings.fx_max_gap_days)
    lines, f_lines = invoice_lines(inputs["billing_invoices"])
    days, f_rev = revenue_days(lines, rates, joins, first, elapsed(stop, inputs.as_of), report=period)
    dim, f_cust = customers_dimension(inputs["billing_customers"])
    days, f_unmapped = account_of(days, dim, joins, name="revenue days x billing_customers", counts="days")
    recognised = days[days["status"] != "uncollectible"]
    by_currency = recognised.groupby("currency")["usd_micro"].sum()
    total = int(to_cents(by_currency.to_numpy()).sum()) if len(by_currency) else 0
    revenue = account_revenue(days, period, total)
    events, f_subs = subscription_events(inputs["subscriptions"])
    seats, f_seat_acc = account_of(
        seat_seconds(events, first, stop), dim, joins, name="seat seconds x billing_customers"
    )
    usage = seats.groupby("account_id", sort=True)[["seat_seconds", "active_seconds"]].sum().reset_index()
    row = aggregate.iloc[0]
    pools = {
        "infrastructure": int(row["infrastructure_usd_cents"]),
        "support": support_pool(costs, settings.allocation),
    }
    unit, notes = unit_profit(
        revenue, usage, infrastructure_cents=pools["infrastructure"], support_cents=pools["support"],
        days_in_month=(stop - first).days, allocation=settings.allocation,
    )  # fmt: skip
    arms = assignments_of(inputs["experiment_assignments"], stop)
    unit["experiment_arms"] = arms_label(unit, arms)
    found = relevant_findings(
        concat_findings([f_lines, f_rev, f_cust, f_unmapped, f_subs, f_seat_acc]), inputs
    )
    return Unit(
        period, unit, arm_summaries(unit, arms, joins, confidence=settings.confidence), found, joins,
        source_staleness(inputs.arrivals, [s for s in UNIT_SOURCES if s in inputs.arrivals], period, inputs.as_of),
        pools, notes, total, int(row["revenue_usd_cents"]),
    )  # fmt: skip

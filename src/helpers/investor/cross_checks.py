"""The investor aggregate's cross-pipeline validations: the upstreams' figures checked against each other.

Pure functions of the upstreams' values, each returning a :class:`CrossCheck` (passed, a one-line
summary, evidence, a table to show and the metrics it contributes); ``helpers.investor.aggregate``
records them as checks of ``investor_aggregate``, run right after the write:

- ``revenue_vs_mrr``: recognised revenue (Profit) against the MRR run-rate (Growth) — the mean
  of starting and ending MRR, i.e. movements assumed mid-month. The difference is explained as a
  bridge of the items Growth measures (:mod:`helpers.growth.runrate`, in ``growth_mrr_monthly``):
  the movements on their actual days, FX (revenue converts at each service day's rate, MRR at the
  rate of the day its amount was set), MRR of dunning episodes that ended in involuntary churn (in
  MRR while past due, never paid) and service credits (credit notes: revenue, not MRR). What is
  left is not itemised (28-31-day service periods, proration rounding; a real mismatch shows
  here); the check fails when it exceeds :data:`REVENUE_MRR_TOLERANCE` of the run-rate. Against
  a Growth mart without those items the bridge is the run-rate, Profit's write-offs in dunning
  and the rest (:class:`MrrBridge`).
- ``engaged_accounts``: companies paying at month end (Growth) that had any active user in the
  month (Engagement, through each company's member accounts). Fails below
  :data:`ENGAGED_PAYING_MIN_SHARE`; the evidence names the paying companies without activity and
  counts engaged accounts that do not pay (trials, churned in the month, never paid).
- ``figures_consistent``: the identities the report relies on (profit = revenue - costs, costs =
  the categories, starting MRR + movements = ending MRR, customers start + new + reactivated -
  churned = end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from helpers.core.money import half_even, usd
from helpers.investor.metrics import MOVEMENT_COLUMNS

REVENUE_MRR_TOLERANCE = 0.03  # unexplained revenue vs MRR run-rate, share of the run-rate
ENGAGED_PAYING_MIN_SHARE = 0.95  # paying companies with any active user in the month
SAMPLE = 10  # ids kept in evidence


@dataclass(frozen=True)
class CrossCheck:
    """One cross-pipeline validation: passed, a one-line summary, evidence and a table to show."""

    name: str
    passed: bool
    summary: str
    evidence: Mapping[str, Any]
    table: pd.DataFrame
    values: Mapping[str, Any] = field(default_factory=dict)  # metrics it contributes


@dataclass(frozen=True)
class MrrBridge:
    """Growth's revenue bridge of a month (``growth_mrr_monthly``, :mod:`helpers.growth.runrate`), USD cents."""

    daily_average: int  # day-end MRR averaged over the month's days, at MRR's rates
    daily_average_fx: int  # the same at each day's rate
    unpaid_dunning: int  # ... of which from dunning episodes that ended in involuntary churn
    service_credits: int  # credit notes recognised in the month (negative)

    COLUMNS = {
        "daily_average": "mrr_daily_average_usd_cents",
        "daily_average_fx": "mrr_daily_average_fx_usd_cents",
        "unpaid_dunning": "mrr_unpaid_dunning_usd_cents",
        "service_credits": "service_credits_usd_cents",
    }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MrrBridge | None:
        """The bridge of a ``growth_mrr_monthly`` row; None when the row does not carry it."""
        values = {k: row.get(c) for k, c in cls.COLUMNS.items()}
        if any(v is None or pd.isna(v) for v in values.values()):
            return None
        return cls(**{k: int(v) for k, v in values.items()})

    @property
    def implied_revenue(self) -> int:
        """The revenue the MRR implies: daily MRR at the days' rates, unpaid dunning out, credits in."""
        return self.daily_average_fx - self.unpaid_dunning + self.service_credits


def _itemised(runrate: int, written_off: int, bridge: MrrBridge | None) -> list[tuple[str, str, int, str]]:
    """The bridge's explained items: (short name, step, USD cents, what it is)."""
    if bridge is None:
        return [("written off in dunning", "written off in dunning", -written_off,
                 "in MRR while past due; never recognised (Profit)")]  # fmt: skip
    return [
        ("movement timing", "movements on their days, not at mid-month", bridge.daily_average - runrate,
         "Growth: each day's closing MRR, averaged over the month's days"),
        ("FX", "FX: each day's rate, not the rate MRR was set at", bridge.daily_average_fx - bridge.daily_average,
         "revenue converts at each service day's rate; MRR at the rate of the day its amount was set"),
        ("unpaid dunning", "in MRR while in dunning, never paid", -bridge.unpaid_dunning,
         "dunning episodes that ended in involuntary churn (Profit writes their invoices off)"),
        ("service credits", "service credits", bridge.service_credits,
         "credit notes over their service days: revenue, not MRR"),
    ]  # fmt: skip


def revenue_vs_mrr(
    revenue: int,
    written_off: int,
    starting_mrr: int,
    ending_mrr: int,
    *,
    bridge: MrrBridge | None = None,
    tolerance: float = REVENUE_MRR_TOLERANCE,
) -> CrossCheck:
    """Recognised revenue against the MRR run-rate, with the difference explained (module doc).

    ``bridge``: Growth's items of the month; without it only Profit's ``written_off`` (revenue
    written off in dunning) is itemised. The bridge table's rows but the last add up to it.
    """
    runrate = half_even(starting_mrr + ending_mrr, 2)
    difference = revenue - runrate
    items = _itemised(runrate, written_off, bridge)
    unexplained = revenue - runrate - sum(cents for _, _, cents, _ in items)
    share = unexplained / runrate if runrate else None
    table = pd.DataFrame(
        [
            ("MRR run-rate: (starting + ending MRR) / 2", runrate, "Growth: movements assumed mid-month"),
            *((step, cents, what) for _, step, cents, what in items),
            ("not itemised", unexplained, _NOT_ITEMISED[bridge is None]),
            ("recognised revenue", revenue, "Profit: invoice lines over their service days"),
        ],
        columns=["step", "usd_cents", "what"],
    )
    values = {
        "revenue_mrr_runrate_usd_cents": runrate,
        "revenue_vs_mrr_difference_usd_cents": difference,
        "revenue_vs_mrr_unexplained_usd_cents": unexplained,
    }
    evidence = dict(
        revenue_usd_cents=revenue,
        runrate_usd_cents=runrate,
        difference_usd_cents=difference,
        written_off_usd_cents=written_off,
        itemised={short: cents for short, _, cents, _ in items},
        itemised_by="growth_mrr_monthly" if bridge else "profit_monthly",
        unexplained_usd_cents=unexplained,
        unexplained_share=None if share is None else round(share, 6),
        tolerance_share=tolerance,
        bridge=table.to_dict("records"),
    )
    if share is None:
        return CrossCheck(
            "revenue_vs_mrr", revenue == 0, "no MRR: revenue cannot be compared", evidence, table
        )
    text = (
        f"revenue {usd(revenue)} vs MRR run-rate {usd(runrate)}: difference {usd(difference)}; "
        + ", ".join(f"{usd(cents)} {short}" for short, _, cents, _ in items)
        + f"; {usd(unexplained)} ({share:+.2%}) not itemised"
    )
    passed = abs(share) <= tolerance
    summary = text + (f" (within ±{tolerance:.0%})" if passed else f", beyond ±{tolerance:.0%}")
    return CrossCheck("revenue_vs_mrr", passed, summary, evidence, table, values)


_NOT_ITEMISED = {
    False: "28-31-day service periods, proration rounding",
    True: "proration lines, service credits, daily vs transaction-date FX, 28-31-day service periods, "
    "movements away from mid-month",
}  # by whether Growth's bridge is missing


def _members(accounts: pd.DataFrame) -> pd.Series:
    """Company id -> its member product accounts (``member_accounts`` is ``;``-joined)."""
    members = accounts.get("member_accounts", accounts["account_id"]).fillna(accounts["account_id"])
    return pd.Series(
        [set(str(m).split(";")) | {str(a)} for m, a in zip(members, accounts["account_id"], strict=True)],
        index=accounts["account_id"].astype(str),
    )


def engaged_accounts(
    growth_accounts: pd.DataFrame,
    engagement_accounts: pd.DataFrame,
    *,
    min_share: float = ENGAGED_PAYING_MIN_SHARE,
) -> CrossCheck:
    """Paying companies (Growth, ending MRR > 0) against accounts with activity (Engagement)."""
    if growth_accounts.empty:
        paying = growth_accounts.assign(members=[])
    else:
        paying = growth_accounts[growth_accounts["ending_mrr_usd_cents"] > 0].copy()
        paying["members"] = _members(paying).to_numpy() if len(paying) else []
    active: set[str] = set()
    if not engagement_accounts.empty:
        act = engagement_accounts[engagement_accounts["active_users"].fillna(0) > 0]
        active = set(act["account_id"].astype(str))
    engaged = paying["members"].map(lambda m: bool(m & active)) if len(paying) else pd.Series(dtype=bool)
    not_engaged = sorted(paying.loc[~engaged, "account_id"].astype(str)) if len(paying) else []
    paying_members = set().union(*paying["members"]) if len(paying) else set()
    churned = set()
    if not growth_accounts.empty:
        gone = growth_accounts[growth_accounts["movement"].astype(str).str.startswith("churn")]
        churned = set().union(*_members(gone)) if len(gone) else set()
    extra = active - paying_members
    breakdown = {
        "churned in the month": len(extra & churned),
        "not paying (trial, grace or never paid)": len(extra - churned),
    }
    n = len(paying)
    share = (n - len(not_engaged)) / n if n else None
    table = pd.DataFrame(
        [
            ("paying companies at month end (Growth)", n),
            ("... with activity in the month (Engagement)", n - len(not_engaged)),
            ("... without activity", len(not_engaged)),
            ("accounts with activity (Engagement)", len(active)),
            *((f"... not paying: {k}", v) for k, v in breakdown.items()),
        ],
        columns=["accounts", "count"],
    )
    evidence = dict(
        paying=n,
        engaged_paying=n - len(not_engaged),
        share=None if share is None else round(share, 6),
        min_share=min_share,
        not_engaged=not_engaged[:SAMPLE],
        not_engaged_count=len(not_engaged),
        active_accounts=len(active),
        active_not_paying=breakdown,
    )
    values = {"paying_engaged_share": share, "paying_not_engaged": len(not_engaged)}
    if share is None:
        return CrossCheck("engaged_accounts", True, "no paying companies to compare", evidence, table, values)
    text = f"{n - len(not_engaged)} of {n} paying companies ({share:.1%}) had active users in the month"
    if share >= min_share:
        return CrossCheck("engaged_accounts", True, text, evidence, table, values)
    sample = ", ".join(not_engaged[:5])
    return CrossCheck(
        "engaged_accounts",
        False,
        f"{text}, below {min_share:.0%}; without activity: {sample}{' ...' if len(not_engaged) > 5 else ''}",
        evidence,
        table,
        values,
    )


def figures_consistent(profit: Mapping[str, Any] | None, growth: Mapping[str, Any] | None) -> CrossCheck:
    """The identities between the figures the report shows (module doc)."""
    problems: list[str] = []
    rows: list[tuple[str, bool]] = []
    if profit is not None:
        costs = sum(profit[f"{c}_usd_cents"] for c in ("salaries", "infrastructure", "operations"))
        for what, ok in (
            ("total costs = salaries + infrastructure + operations", costs == profit["total_cost_usd_cents"]),
            (
                "profit = revenue - total costs",
                profit["revenue_usd_cents"] - profit["total_cost_usd_cents"] == profit["profit_usd_cents"],
            ),
        ):
            rows.append((what, ok))
    if growth is not None:
        moved = growth["starting_mrr_usd_cents"] + sum(growth[c] for c in MOVEMENT_COLUMNS)
        customers = (
            growth["customers_start"]
            + growth["new_customers"]
            + growth["reactivated_customers"]
            - growth["churned_customers"]
        )
        rows.append(("starting MRR + movements = ending MRR", moved == growth["ending_mrr_usd_cents"]))
        rows.append(
            ("customers start + new + reactivated - churned = end", customers == growth["customers_end"])
        )
    problems = [what for what, ok in rows if not ok]
    table = pd.DataFrame(rows, columns=["identity", "holds"])
    if problems:
        return CrossCheck(
            "figures_consistent", False, "broken: " + "; ".join(problems), {"broken": problems}, table
        )
    return CrossCheck(
        "figures_consistent", True, f"{len(rows)} identities hold", {"identities": len(rows)}, table
    )

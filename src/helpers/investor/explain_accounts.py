"""The customer-level rows behind an MRR movement or a customer count, adding up to the figure exactly.

``workbook explain --month M METRIC --accounts`` lists the rows of ``growth_accounts_monthly`` (one
per company, written by the Growth run that computed the figure) that make up the investor figure:
each company's plan (tier and seats) and MRR before and after the month, and its amount. The
definitions are Growth's (``helpers.growth.metrics.movement_summary``): a movement is the sum of
``mrr_change_usd_cents`` over the companies with that movement, starting and ending MRR are the
sums of each company's MRR at the month's boundaries, a customer count is a number of companies.
So a money figure equals the sum of the amounts to the cent, and a count the number of rows.

The plan *before* is the company's plan at the end of the month before, from that month's
partition of the same mart; when that month was never built it is unknown (and said so). A
company that paid nothing at the start had no plan before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.errors import UsageError
from helpers.core.periods import shift_period
from helpers.growth.metrics import MOVEMENTS
from helpers.investor.explain import MartPartition, figure_row, mart_partition, metric_named, value_of
from helpers.investor.inputs import read_partition
from helpers.investor.metrics import Metric
from helpers.storage import warehouse

ACCOUNTS_TABLE = "growth_accounts_monthly"
CHANGE, START, END = "mrr_change_usd_cents", "starting_mrr_usd_cents", "ending_mrr_usd_cents"


@dataclass(frozen=True)
class Rule:
    """Which companies make up a figure, and what each contributes."""

    movements: tuple[str, ...] | None  # None: every company with a non-zero ``amount`` column
    amount: str  # the column holding each company's amount
    count: bool = False  # the figure counts companies
    factor: int = 1  # ARR is 12 x MRR

    def select(self, accounts: pd.DataFrame) -> pd.DataFrame:
        if self.movements is None:
            return accounts[accounts[self.amount] > 0]
        return accounts[accounts["movement"].isin(self.movements)]


CHURN = ("churn_voluntary", "churn_involuntary")
RULES: dict[str, Rule] = {
    **{f"{m}_mrr_usd_cents": Rule((m,), CHANGE) for m in MOVEMENTS},
    "starting_mrr_usd_cents": Rule(None, START),
    "ending_mrr_usd_cents": Rule(None, END),
    "arr_usd_cents": Rule(None, END, factor=12),
    "customers_start": Rule(None, START, count=True),
    "customers_end": Rule(None, END, count=True),
    "new_customers": Rule(("new",), CHANGE, count=True),
    "reactivated_customers": Rule(("reactivation",), CHANGE, count=True),
    "churned_customers": Rule(CHURN, CHANGE, count=True),
}
COLUMNS = (
    "account_id",
    "crm_account_id",
    "member_accounts",
    "currency",
    "movement",
    "tier_before",
    "seats_before",
    "mrr_before_usd_cents",
    "tier_after",
    "seats_after",
    "mrr_after_usd_cents",
    "amount_usd_cents",
)


@dataclass(frozen=True)
class AccountRows:
    """The companies behind one figure, their amounts, and whether they add up to it."""

    period: str
    metric: Metric
    rule: Rule
    figure: int
    figure_run_id: str | None  # the Growth run the investor figure came from
    rows: pd.DataFrame  # :data:`COLUMNS`
    source: MartPartition  # the month's growth_accounts_monthly partition
    before: MartPartition  # the month before's (rows None: never built, plans before unknown)

    @property
    def total(self) -> int:
        """What the rows add up to: the number of companies, or the sum of their amounts."""
        if self.rule.count:
            return len(self.rows)
        return int(self.rows["amount_usd_cents"].sum()) if len(self.rows) else 0

    @property
    def matches(self) -> bool:
        return self.total == self.figure

    def as_json(self) -> dict[str, Any]:
        rows = [{k: _plain(v) for k, v in r.items()} for r in self.rows.to_dict("records")]
        return {
            "period": self.period,
            "metric": self.metric.name,
            "label": self.metric.label,
            "unit": self.metric.unit,
            "figure": self.figure,
            "figure_run_id": self.figure_run_id,
            "counts_accounts": self.rule.count,
            "total": self.total,
            "matches": self.matches,
            "source": self.source.as_json(),
            "plans_before_from": self.before.as_json(),
            "accounts": rows,
        }


def _plain(v: Any) -> Any:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return int(v) if hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu" else v


def rule_for(metric: str) -> Rule:
    """The :class:`Rule` of ``metric``; a usage error naming the metrics ``--accounts`` explains."""
    meta = metric_named(metric)
    if meta.name not in RULES:
        raise UsageError(
            f"--accounts lists the companies behind an MRR movement or a customer count, not {meta.name}; "
            f"it explains: {', '.join(RULES)}"
        )
    return RULES[meta.name]


def with_plans_before(rows: pd.DataFrame, before: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the tier and seats each company ended the month before with (pure).

    A company without MRR at the start had no plan before; one that had MRR but is not in
    ``before`` (the month before was never built) has an unknown plan (``None``).
    """
    prev = before.set_index("account_id") if len(before) else pd.DataFrame(columns=["tier_end", "seats_end"])
    paid = rows[START] > 0
    tier = rows["account_id"].map(prev["tier_end"]) if len(prev) else pd.Series(None, index=rows.index)
    seats = rows["account_id"].map(prev["seats_end"]) if len(prev) else pd.Series(None, index=rows.index)
    return rows.assign(
        tier_before=tier.where(paid, None).astype(object),
        seats_before=seats.where(paid, None).astype("Int64"),
    )


def account_rows(accounts: pd.DataFrame, before: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """The companies of ``accounts`` (one month's mart rows) behind a figure, largest amounts first."""
    mine = with_plans_before(rule.select(accounts).reset_index(drop=True), before)
    amount = mine[rule.amount].astype("int64") * rule.factor
    out = pd.DataFrame(
        {
            "account_id": mine["account_id"],
            "crm_account_id": mine["crm_account_id"],
            "member_accounts": mine["member_accounts"],
            "currency": mine["currency"],
            "movement": mine["movement"],
            "tier_before": mine["tier_before"],
            "seats_before": mine["seats_before"],
            "mrr_before_usd_cents": mine[START].astype("int64"),
            "tier_after": mine["tier_end"].where(mine[END] > 0, None),
            "seats_after": mine["seats_end"].astype("Int64").where(mine[END] > 0, pd.NA),
            "mrr_after_usd_cents": mine[END].astype("int64"),
            "amount_usd_cents": amount,
        },
        columns=list(COLUMNS),
    )
    order = out["amount_usd_cents"].abs().sort_values(ascending=False, kind="stable").index
    return out.loc[order].reset_index(drop=True)


def explain_accounts(period: str, metric: str, *, engine: sa.Engine | None = None) -> AccountRows:
    """The companies behind one investor figure of ``period`` (see the module doc)."""
    engine = engine or warehouse.get_engine()
    rule = rule_for(metric)
    meta = metric_named(metric)
    row = figure_row(period, meta.name, engine=engine)
    run = str(row["source_run_id"]) if pd.notna(row["source_run_id"]) else None
    source = mart_partition(ACCOUNTS_TABLE, {"period": period}, run, engine=engine)
    accounts = read_partition(ACCOUNTS_TABLE, {"period": period}, engine=engine)
    if accounts.empty and source.rows is None:
        raise UsageError(f"{period}: {ACCOUNTS_TABLE} has no partition for the month: no accounts to list")
    prev = shift_period(period, -1)
    before = read_partition(ACCOUNTS_TABLE, {"period": prev}, engine=engine)
    before_part = mart_partition(ACCOUNTS_TABLE, {"period": prev}, None, engine=engine)
    rows = account_rows(accounts, before, rule)
    return AccountRows(period, meta, rule, int(value_of(row)), run, rows, source, before_part)

"""The investor aggregate: the month's investor figures from Profit, Growth and Engagement.

``investor_aggregate`` (monthly, team-owned) reads what its three upstreams published for the
month, validates them against each other and writes ``investor_monthly`` in long form: one row per
metric with its value, unit, status (``final``/``provisional`` and why) and provenance (the source
pipeline, table and the run id that wrote the source partition), so every number in the investor
report can be traced to the run that produced it.

**Which upstream run counts.** Gating is on run status (docs/architecture.md): for each upstream the latest
run (``skipped`` records aside) of its partition for the month must have succeeded. Profit and
Growth are monthly (partition ``YYYY-MM``); Engagement is daily, and "succeeded for the month"
means its run for the month's *reference day*: the month's last day, or the day before ``as_of``
while the month is in progress (:func:`reference_day`). Figures are read from the marts
(``profit_monthly``, ``growth_mrr_monthly``, ``growth_accounts_monthly``, ``engagement_monthly``,
``engagement_accounts_monthly``); their provenance comes from ``partition_writes`` (the run that
wrote the partition), which for ``engagement_monthly`` can be a later daily run whose window
still touched the month.

**Status.** A Profit figure is ``final`` when ``profit_monthly.status`` is (every source of the
month delivered, nothing in dunning, Finance's close passed); a Growth figure when billing has
delivered every day of the month; an Engagement figure when ``engagement_monthly.complete`` (its
roll-up reaches the month's last day). A cross-pipeline figure is final when both sides are.

**Cross-pipeline validation** (checks of ``investor_aggregate``, run right after the write):

- ``revenue_vs_mrr``: recognised revenue (Profit) against the MRR run-rate (Growth) — the mean
  of starting and ending MRR, i.e. movements assumed mid-month. The difference is explained as a
  bridge: revenue written off in dunning (``profit_monthly.written_off_usd_cents``: in MRR while
  past due, never recognised) and a residual that the marts do not itemise (proration lines,
  service credits, daily vs transaction-date FX, 28-31-day service periods, movements away from
  mid-month). The check fails when the residual exceeds :data:`REVENUE_MRR_TOLERANCE` of the
  run-rate.
- ``engaged_accounts``: companies paying at month end (Growth) that had any active user in the
  month (Engagement, through each company's member accounts). Fails below
  :data:`ENGAGED_PAYING_MIN_SHARE`; the evidence names the paying companies without activity and
  counts engaged accounts that do not pay (trials, churned in the month, never paid).
- ``figures_consistent``: the identities the report relies on (profit = revenue - costs, costs =
  the categories, starting MRR + movements = ending MRR, customers start + new + reactivated -
  churned = end).
- ``upstreams_succeeded`` (critical): every upstream's run for the month succeeded; without one,
  its figures are absent from ``investor_monthly`` (never stale rows of an older run).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers import checks
from helpers.core.periods import period_days
from helpers.core.timeutil import as_utc
from helpers.runs import records as runs
from helpers.storage import warehouse

PIPELINE = "investor_aggregate"
TABLE = "investor_monthly"
PROFIT, GROWTH, ENGAGEMENT = "profit_aggregate", "growth_aggregate", "engagement_aggregate"
UPSTREAMS = (PROFIT, GROWTH, ENGAGEMENT)
REVENUE_MRR_TOLERANCE = 0.03  # unexplained revenue vs MRR run-rate, share of the run-rate
ENGAGED_PAYING_MIN_SHARE = 0.95  # paying companies with any active user in the month
SAMPLE = 10  # ids kept in evidence

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


# ---------------------------------------------------------------- periods


def reference_day(period: str, as_of: dt.datetime) -> dt.date:
    """The day the month's figures reach: its last day, or the day before ``as_of`` mid-month.

    Raises ``ValueError`` when nothing of ``period`` has happened by ``as_of``.
    """
    first, last = period_days(period)
    day = min(last, as_utc(as_of).date() - dt.timedelta(days=1))
    if day < first:
        raise ValueError(f"{period}: nothing of the month has happened by as_of {as_utc(as_of).isoformat()}")
    return day


def upstream_partitions(period: str, as_of: dt.datetime) -> dict[str, str]:
    """The partition of each upstream that the month's figures come from."""
    return {PROFIT: period, GROWTH: period, ENGAGEMENT: reference_day(period, as_of).isoformat()}


def shift_period(period: str, months: int) -> str:
    """``YYYY-MM`` moved by ``months`` (negative: earlier)."""
    y, m = (int(x) for x in period.split("-"))
    k = y * 12 + (m - 1) + months
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


# ---------------------------------------------------------------- reading the upstreams (I/O edge)


@dataclass(frozen=True)
class SourceRun:
    """The latest effective run of an upstream partition (``status`` None: never run)."""

    pipeline: str
    partition: str
    status: str | None
    run_id: str | None = None
    as_of: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def describe(self) -> str:
        """``profit_aggregate 2026-10: failed (run …: cell 4 …)`` for messages."""
        where = f"{self.pipeline} {self.partition}"
        if self.status is None:
            return f"{where}: no run yet"
        detail = f": {self.error}" if self.error else ""
        return f"{where}: {self.status} (run {self.run_id}{detail})"


def latest_run(pipeline: str, partition: str, *, engine: sa.Engine | None = None) -> SourceRun:
    """The latest run of a partition, ``skipped`` records aside (they mean "nothing was done")."""
    for r in runs.list_runs(pipeline=pipeline, logical_date=partition, limit=20, engine=engine):
        if r.status != "skipped":
            return SourceRun(pipeline, partition, r.status, r.run_id, r.as_of, r.finished_at, r.error_summary)
    return SourceRun(pipeline, partition, None)


def partition_writer(
    table: str, partition: Mapping[str, Any], *, engine: sa.Engine | None = None
) -> tuple[str | None, dt.datetime | None] | None:
    """``(run_id, written_at)`` of the last write of a mart partition (None: never written)."""
    engine = engine or warehouse.get_engine()
    pw = warehouse.partition_writes
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(pw.c.run_id, pw.c.written_at).where(
                (pw.c.table_name == table) & (pw.c.partition_key == warehouse.partition_key(partition))
            )
        ).first()
    if row is None:
        return None
    return row[0], as_utc(row[1]) if row[1] is not None else None


def read_partition(table: str, where: Mapping[str, Any], *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Rows of one mart partition; an empty frame when the table does not exist yet."""
    try:
        return warehouse.read_table(table, where=where, engine=engine)
    except sa.exc.NoSuchTableError:
        return pd.DataFrame()


@dataclass(frozen=True)
class Source:
    """What one upstream published for the month, with the run that wrote it."""

    pipeline: str
    table: str
    partition: str
    run: SourceRun
    frame: pd.DataFrame
    written_by: str | None
    final: bool
    reasons: tuple[str, ...] = ()

    @property
    def row(self) -> pd.Series:
        return self.frame.iloc[0]

    @property
    def status(self) -> str:
        return "final" if self.final else "provisional"


@dataclass
class Inputs:
    """The upstreams of one month: usable sources, and why any other is missing."""

    period: str
    as_of: dt.datetime
    reference_day: dt.date
    runs: dict[str, SourceRun]
    profit: Source | None = None
    growth: Source | None = None
    engagement: Source | None = None
    growth_accounts: pd.DataFrame = field(default_factory=pd.DataFrame)
    engagement_accounts: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing: dict[str, str] = field(default_factory=dict)  # pipeline -> why it is not usable

    def sources(self) -> list[Source]:
        return [s for s in (self.profit, self.growth, self.engagement) if s is not None]

    def summary(self) -> pd.DataFrame:
        """One row per upstream: partition, latest run, status, who wrote the mart, usable or why not."""
        rows = []
        for pid in UPSTREAMS:
            run = self.runs[pid]
            src = {s.pipeline: s for s in self.sources()}.get(pid)
            rows.append(
                {
                    "pipeline": pid,
                    "partition": run.partition,
                    "latest run": run.run_id or "",
                    "run status": run.status or "never run",
                    "mart written by": src.written_by if src else "",
                    "figures": src.status if src else "missing",
                    "why": "; ".join(src.reasons) if src else self.missing.get(pid, ""),
                }
            )
        return pd.DataFrame(rows)


def _source(
    pipeline: str, table: str, partition: str, run: SourceRun, where: Mapping[str, Any], engine: sa.Engine
) -> tuple[pd.DataFrame, str | None, str | None]:
    """The partition's rows and writer, or a reason why it cannot be used."""
    if not run.succeeded:
        return pd.DataFrame(), None, run.describe()
    frame = read_partition(table, where, engine=engine)
    writer = partition_writer(table, where, engine=engine)
    if frame.empty or writer is None:
        return frame, None, f"{table} has no rows for {where} although run {run.run_id} succeeded"
    return frame, writer[0], None


def load_inputs(period: str, as_of: dt.datetime, *, engine: sa.Engine | None = None) -> Inputs:
    """Read the upstreams' run records and marts for ``period`` as the investor aggregate sees them."""
    engine = engine or warehouse.get_engine()
    as_of = as_utc(as_of)
    parts = upstream_partitions(period, as_of)
    latest = {pid: latest_run(pid, part, engine=engine) for pid, part in parts.items()}
    out = Inputs(period, as_of, reference_day(period, as_of), latest)
    where = {"period": period}

    frame, writer, why = _source(PROFIT, "profit_monthly", period, latest[PROFIT], where, engine)
    if why:
        out.missing[PROFIT] = why
    else:
        row = frame.iloc[0]
        reasons = tuple(r for r in str(row.get("provisional_reasons") or "").split("; ") if r)
        out.profit = Source(
            PROFIT, "profit_monthly", period, latest[PROFIT], frame, writer, row["status"] == "final", reasons
        )

    frame, writer, why = _source(GROWTH, "growth_mrr_monthly", period, latest[GROWTH], where, engine)
    if why:
        out.missing[GROWTH] = why
    else:
        final = frame.iloc[0]["status"] == "final"
        reasons = () if final else ("billing has not delivered every day of the month (Growth status)",)
        out.growth = Source(
            GROWTH, "growth_mrr_monthly", period, latest[GROWTH], frame, writer, final, reasons
        )
        out.growth_accounts = read_partition("growth_accounts_monthly", where, engine=engine)

    frame, writer, why = _source(ENGAGEMENT, "engagement_monthly", period, latest[ENGAGEMENT], where, engine)
    if why:
        out.missing[ENGAGEMENT] = why
    else:
        row = frame.iloc[0]
        through = pd.Timestamp(row["through_date"]).date()
        final = bool(row["complete"]) and through == period_days(period)[1]
        reasons = () if final else (f"engagement month to date through {through}",)
        out.engagement = Source(
            ENGAGEMENT,
            "engagement_monthly",
            parts[ENGAGEMENT],
            latest[ENGAGEMENT],
            frame,
            writer,
            final,
            reasons,
        )
        out.engagement_accounts = read_partition("engagement_accounts_monthly", where, engine=engine)
    return out


# ---------------------------------------------------------------- pure figures


def half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half to even (integer money)."""
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _num(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def profit_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """Profit's metrics from a ``profit_monthly`` row (``None`` where the mart has none)."""
    out = {c: _num(row.get(c)) for c in PROFIT_COLUMNS}
    for c in PROFIT_COLUMNS:
        if c != "margin" and out[c] is not None:
            out[c] = int(out[c])
    if out["margin"] is not None:
        out["margin"] = float(out["margin"])
    return out


def growth_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """Growth's metrics from a ``growth_mrr_monthly`` row, with ARR, ARPA and logo churn derived."""
    out: dict[str, Any] = {}
    for c in GROWTH_COLUMNS:
        v = _num(row.get(c))
        out[c] = None if v is None else (float(v) if c in ("nrr", "grr") else int(v))
    ending, customers, start = out["ending_mrr_usd_cents"], out["customers_end"], out["customers_start"]
    out["arr_usd_cents"] = 12 * ending
    out["arpa_usd_cents"] = half_even(ending, customers) if customers else None
    out["logo_churn_rate"] = round(out["churned_customers"] / start, 6) if start else None
    return out


def engagement_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """Engagement's metrics from an ``engagement_monthly`` row."""
    out: dict[str, Any] = {}
    for metric, col in ENGAGEMENT_COLUMNS.items():
        v = _num(row.get(col))
        out[metric] = None if v is None else (float(v) if metric in ("dau_avg", "stickiness") else int(v))
    return out


@dataclass(frozen=True)
class CrossCheck:
    """One cross-pipeline validation: passed, a one-line summary, evidence and a table to show."""

    name: str
    passed: bool
    summary: str
    evidence: Mapping[str, Any]
    table: pd.DataFrame
    values: Mapping[str, Any] = field(default_factory=dict)  # metrics it contributes


def revenue_vs_mrr(
    revenue: int,
    written_off: int,
    starting_mrr: int,
    ending_mrr: int,
    *,
    tolerance: float = REVENUE_MRR_TOLERANCE,
) -> CrossCheck:
    """Recognised revenue against the MRR run-rate, with the difference explained (module doc)."""
    runrate = half_even(starting_mrr + ending_mrr, 2)
    difference = revenue - runrate
    unexplained = difference + written_off  # written-off revenue is in MRR but never recognised
    share = unexplained / runrate if runrate else None
    bridge = pd.DataFrame(
        [
            ("MRR run-rate: (starting + ending MRR) / 2", runrate, "Growth: movements assumed mid-month"),
            ("written off in dunning", -written_off, "in MRR while past due; never recognised (Profit)"),
            (
                "not itemised by the marts",
                unexplained,
                "proration lines, service credits, daily vs transaction-date FX, 28-31-day service "
                "periods, movements away from mid-month",
            ),
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
        unexplained_usd_cents=unexplained,
        unexplained_share=None if share is None else round(share, 6),
        tolerance_share=tolerance,
        bridge=bridge.to_dict("records"),
    )
    if share is None:
        return CrossCheck(
            "revenue_vs_mrr", revenue == 0, "no MRR: revenue cannot be compared", evidence, bridge
        )
    text = (
        f"revenue {_usd(revenue)} vs MRR run-rate {_usd(runrate)}: difference {_usd(difference)}, "
        f"{_usd(-written_off)} written off in dunning, {_usd(unexplained)} ({share:+.2%}) not itemised"
    )
    passed = abs(share) <= tolerance
    summary = text + (f" (within ±{tolerance:.0%})" if passed else f", beyond ±{tolerance:.0%}")
    return CrossCheck("revenue_vs_mrr", passed, summary, evidence, bridge, values)


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


@dataclass
class Figures:
    """The month's investor figures: the long-form mart rows and the cross-pipeline validations."""

    period: str
    as_of: dt.datetime
    run_id: str
    monthly: pd.DataFrame
    cross_checks: dict[str, CrossCheck]
    missing: dict[str, str]
    source_runs: dict[str, SourceRun]

    @property
    def status(self) -> str:
        """``final`` when every upstream is present and final, else ``provisional``."""
        if self.missing or self.monthly.empty:
            return "provisional"
        return "final" if (self.monthly["status"] == "final").all() else "provisional"

    @property
    def provisional_reasons(self) -> list[str]:
        """Why the month is provisional: missing upstreams first, then each source's reasons."""
        out = [f"{pid}: {why}" for pid, why in self.missing.items()]
        if not self.monthly.empty:
            prov = self.monthly[self.monthly["status"] != "final"]
            for (pipeline, reason), _g in prov.groupby(["source_pipeline", "status_reason"], sort=True):
                if pipeline != PIPELINE:
                    out += [f"{pipeline}: {r}" for r in str(reason).split("; ") if r]
        return list(dict.fromkeys(out))

    def value(self, metric: str) -> Any:
        """The value of one metric (``None`` if not written)."""
        row = self.monthly[self.monthly["metric"] == metric]
        if row.empty:
            return None
        r = row.iloc[0]
        return int(r["value_int"]) if pd.notna(r["value_int"]) else float(r["value"])

    def checks_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(c.name, "pass" if c.passed else "fail", c.summary) for c in self.cross_checks.values()],
            columns=["validation", "status", "summary"],
        )


def _rows(
    values: Mapping[str, Any], source: Source | None, *, pipeline: str, table: str, status: str, reason: str
) -> list[dict[str, Any]]:
    out = []
    for metric, value in values.items():
        if value is None:  # no value (e.g. margin without revenue): no row, never a NULL value
            continue
        unit = BY_NAME[metric].unit
        exact = unit in ("usd_cents", "count") or (unit == "users" and metric == "mau")
        out.append(
            {
                "metric": metric,
                "value": float(value),
                "value_int": int(value) if exact else None,
                "unit": unit,
                "status": status,
                "status_reason": reason,
                "source_pipeline": pipeline,
                "source_table": table,
                "source_run_id": source.written_by if source else None,
            }
        )
    return out


def build(inputs: Inputs, *, run_id: str, tolerance: float = REVENUE_MRR_TOLERANCE,
          min_engaged_share: float = ENGAGED_PAYING_MIN_SHARE) -> Figures:  # fmt: skip
    """The month's long-form figures and cross-pipeline validations from :class:`Inputs` (pure)."""
    rows: list[dict[str, Any]] = []
    pv = gv = None
    for src, values_of in (
        (inputs.profit, profit_values),
        (inputs.growth, growth_values),
        (inputs.engagement, engagement_values),
    ):
        if src is None:
            continue
        values = values_of(src.row)
        rows += _rows(values, src, pipeline=src.pipeline, table=src.table, status=src.status,
                      reason="; ".join(src.reasons))  # fmt: skip
        if src.pipeline == PROFIT:
            pv = values
        elif src.pipeline == GROWTH:
            gv = values
    cross: dict[str, CrossCheck] = {"figures_consistent": figures_consistent(pv, gv)}
    if inputs.profit is not None and inputs.growth is not None:
        assert pv is not None and gv is not None
        cross["revenue_vs_mrr"] = revenue_vs_mrr(
            pv["revenue_usd_cents"],
            pv["written_off_usd_cents"] or 0,
            gv["starting_mrr_usd_cents"],
            gv["ending_mrr_usd_cents"],
            tolerance=tolerance,
        )
    if inputs.growth is not None and inputs.engagement is not None:
        cross["engaged_accounts"] = engaged_accounts(
            inputs.growth_accounts, inputs.engagement_accounts, min_share=min_engaged_share
        )
    pairs = {
        "revenue_vs_mrr": (inputs.profit, inputs.growth),
        "engaged_accounts": (inputs.growth, inputs.engagement),
    }
    for name, check in cross.items():
        if not check.values:
            continue
        a, b = pairs[name]
        assert a is not None and b is not None
        final = a.final and b.final
        reason = "; ".join(r for s in (a, b) if not s.final for r in s.reasons)
        rows += [
            {**r, "source_run_id": f"{a.written_by};{b.written_by}", "source_table": f"{a.table} + {b.table}"}
            for r in _rows(check.values, None, pipeline=PIPELINE, table="", status="final" if final else "provisional",
                           reason=reason)
        ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("period", "run_id", "as_of")])
    order = {m.name: i for i, m in enumerate(METRICS)}
    frame = frame.sort_values("metric", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    frame.insert(0, "period", inputs.period)
    frame["value_int"] = frame["value_int"].astype("Int64")
    frame["run_id"] = run_id
    frame["as_of"] = pd.Timestamp(inputs.as_of).tz_convert(None)
    return Figures(inputs.period, inputs.as_of, run_id, frame[list(COLUMNS)], cross, dict(inputs.missing),
                   dict(inputs.runs))  # fmt: skip


def write(figures: Figures, *, engine: sa.Engine | None = None) -> int:
    """Replace the month's partition of ``investor_monthly`` (atomic, idempotent); rows written."""
    return warehouse.replace_partition(
        TABLE,
        figures.monthly,
        {"period": figures.period},
        written_at=as_utc(figures.as_of).replace(tzinfo=None),
        run_id=figures.run_id,
        engine=engine,
        dtype=MART_TYPES,
    )


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
        return _usd(int(round(float(value))))
    if unit == "ratio":
        return f"{float(value):.1%}"
    if unit == "users" and float(value) != int(float(value)):
        return f"{float(value):,.1f}"
    return f"{int(round(float(value))):,}"


def _usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(int(cents)) / 100:,.2f}"


# ---------------------------------------------------------------- checks (run right after the write)


def _figures(ctx: checks.CheckContext) -> Figures:
    found = ctx.data.get("figures")
    if not isinstance(found, Figures):
        raise TypeError("investor checks need context={'figures': investor.Figures}")
    return found


@checks.check(f"{PIPELINE}.upstreams_succeeded", pipeline=PIPELINE, severity="critical",
              catalogue_id="upstream_missing")  # fmt: skip
def upstreams_succeeded(ctx: checks.CheckContext) -> checks.Outcome:
    """Every upstream's run for the month succeeded and published its partition."""
    fig = _figures(ctx)
    runs_ = {p: r.describe() for p, r in fig.source_runs.items()}
    if fig.missing:
        text = "; ".join(f"{p}: {why}" for p, why in fig.missing.items())
        return checks.fail(f"{fig.period}: figures missing: {text}", missing=fig.missing, runs=runs_,
                           upstream=next(iter(fig.missing)))  # fmt: skip
    return checks.ok(f"{fig.period}: Profit, Growth and Engagement published the month", runs=runs_)


def _cross(name: str) -> Any:
    def fn(ctx: checks.CheckContext) -> checks.Outcome:
        fig = _figures(ctx)
        found = fig.cross_checks.get(name)
        if found is None:
            return checks.ok(f"{fig.period}: not evaluated (an upstream is missing; see upstreams_succeeded)")
        outcome = checks.ok if found.passed else checks.fail
        return outcome(f"{fig.period}: {found.summary}", **found.evidence)

    return fn


checks.register(checks.Check(f"{PIPELINE}.revenue_vs_mrr", PIPELINE, _cross("revenue_vs_mrr"),
                             catalogue_id="growth_revenue_mismatch",
                             description="Recognised revenue (Profit) against the MRR run-rate (Growth)"))  # fmt: skip
checks.register(checks.Check(f"{PIPELINE}.engaged_accounts", PIPELINE, _cross("engaged_accounts"),
                             runbook="notebooks/runbooks/month_end_close.ipynb",
                             description="Paying companies (Growth) with activity (Engagement)"))  # fmt: skip
checks.register(checks.Check(f"{PIPELINE}.figures_consistent", PIPELINE, _cross("figures_consistent"),
                             severity="critical", catalogue_id="math_errors",
                             description="The identities between the investor figures hold"))  # fmt: skip


def headline_scraps(figures: Figures, results: Sequence[checks.CheckResult]) -> dict[str, Any]:
    """What the notebook glues: status and why, every metric's value, sources and check outcomes."""
    values = {m: figures.value(m) for m in figures.monthly["metric"]}
    return {
        "period": figures.period,
        "status": figures.status,
        "provisional_reasons": figures.provisional_reasons,
        "missing_sources": dict(figures.missing),
        "metrics": values,
        "source_runs": {p: r.run_id for p, r in figures.source_runs.items()},
        "cross_checks": {k: ("pass" if c.passed else "fail") for k, c in figures.cross_checks.items()},
        "check_statuses": {r.check_id: r.status for r in results},
        "rows_written": int(len(figures.monthly)),
    }


def read_monthly(periods: Sequence[str] | None = None, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """``investor_monthly`` rows (of ``periods``); empty with the mart's columns when absent."""
    try:
        frame = warehouse.read_table(TABLE, engine=engine)
    except sa.exc.NoSuchTableError:
        return pd.DataFrame(columns=list(COLUMNS))
    if periods is not None:
        frame = frame[frame["period"].isin(list(periods))]
    return frame.reset_index(drop=True)


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Long-form rows as one row per period and one column per metric (values as floats)."""
    if frame.empty:
        return pd.DataFrame(columns=["period"])
    out = frame.pivot_table(index="period", columns="metric", values="value", aggfunc="first")
    return out.reset_index().sort_values("period").reset_index(drop=True)

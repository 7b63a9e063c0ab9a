"""The eleven Profit and Growth faults of the failure catalogue (plus ``upstream_missing``).

Each injector changes the in-memory extracts of one batch (see :mod:`helpers.demo.faults`) and
returns ground-truth records naming every row it changed, added or removed by the source's key.
Dates default to the last complete month of the history (``LAST`` below); every fault draws
from its own random stream, so the rest of the data stays byte-identical to the clean run.

=========================  ===========================================================================
fault (default date)       params (defaults) -> what changes
=========================  ===========================================================================
finance_mismatch (LAST 1)  parts=timing+missing_category+fx, category=legal_accounting, currency=EUR,
                           fx_shift=0.03 -> the ledger books the largest expense of the month before in
                           DATE's month; our ops extract lacks one category for DATE's month; the ledger
                           converts one currency's revenue at a rate from another source
missing_subscription_data  days=3, sources=subscriptions+billing_invoices+billing_payments -> those
 (LAST 12)                 extracts have no rows for [DATE, DATE+days) (never delivered)
expenses_wrong_month       parts=late_submission+cloud_delay+amount+date, provider=azure, delay_days=21,
 (LAST 10)                 factor=100 -> an expense incurred 35-60 days earlier submitted on DATE; the
                           provider's bill for the month before arrives delay_days late; one amount x100;
                           one incurred date typed in the previous year
math_errors (LAST 15)      nulls=3, zero_seats=1, duplicates=1 -> NULL invoice-line amounts, a zero-seat
                           subscription event, a billing customer delivered twice, and one ops delivery
                           with the amount as text
stale_data (END-6)         source=billing_invoices -> no delivery after DATE
skipped_stage (LAST 1)     count=2 (per variant) -> lead->customer (trial missing in CRM, billing has it)
                           and trial->churned (customer missing)
late_account_updates       days=7, share=0.5, min_lag=7, max_lag=10 -> AE entries for changes effective
 (LAST 8)                  in [DATE, DATE+days) typed 7-10 days late
duplicate_accounts (LAST 8) variants=2, acquisitions=1 -> a second CRM + product account of an existing
                           customer under a name variant; an acquired customer kept separate (parent set)
growth_revenue_mismatch    contracts=2, upgrades=2, gap_days=60 -> sales contract start ~gap_days before
 (LAST 1)                  billing starts; CRM upgrades backdated 10-20 days before billing's proration
churn_misclassified        count=4, cancel_after_days=2 -> dunning accounts cancelled (payment_failed)
 (LAST 1, 14 days before)  after 2 days while they keep using the product; half of them then pay
upstream_missing (END-10)  source=subscriptions, days=3, delay_days=5 -> deliveries of [DATE, DATE+days)
                           arrive delay_days after the window instead of the next morning
=========================  ===========================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from helpers.demo import company as co
from helpers.demo.extracts import ARRIVAL, DAY, PARTITION, SCHEDULE, SOURCES, at, day_of
from helpers.demo.faults import FaultContext, Injected, injector
from helpers.demo.sources_billing import subscription_ids
from helpers.demo.sources_crm import INTEGRATION_USER
from helpers.demo.sources_finance import OPS_CATEGORIES, close_days, complete_months, month_end_rates, to_usd
from helpers.demo.spec import FaultSpec

# operations categories entered one by one (not a monthly invoice): where typos happen
VARIABLE_CATEGORIES = [c.name for c in OPS_CATEGORIES if not c.recurring]
BUSINESS_FAULT_IDS = (
    "finance_mismatch",
    "missing_subscription_data",
    "expenses_wrong_month",
    "math_errors",
    "stale_data",
    "skipped_stage",
    "late_account_updates",
    "duplicate_accounts",
    "growth_revenue_mismatch",
    "churn_misclassified",
    "upstream_missing",
)

# ------------------------------------------------------------------ helpers


def _param(
    fault: FaultSpec, name: str, default: Any, kind: type, lo: float | None = None, hi: float | None = None
) -> Any:
    raw = fault.params.get(name, default)
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"--fault {fault.as_text()}: {name}={raw!r}: expected a {kind.__name__}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"--fault {fault.as_text()}: {name}={raw!r}: expected a value in [{lo}, {hi}]")
    return value


def _choices(
    fault: FaultSpec, name: str, default: tuple[str, ...], allowed: tuple[str, ...]
) -> tuple[str, ...]:
    raw = fault.params.get(name)
    values = default if raw is None else tuple(v.strip() for v in str(raw).split("+") if v.strip())
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(
            f"--fault {fault.as_text()}: {name}={raw!r}: expected '+'-separated values of {', '.join(allowed)}"
        )
    return values


PARAMS: dict[str, tuple[str, ...]] = {
    "finance_mismatch": ("parts", "category", "currency", "fx_shift"),
    "missing_subscription_data": ("days", "sources"),
    "expenses_wrong_month": ("parts", "provider", "delay_days", "factor"),
    "math_errors": ("nulls", "zero_seats", "duplicates"),
    "stale_data": ("source",),
    "skipped_stage": ("count",),
    "late_account_updates": ("days", "share", "min_lag", "max_lag"),
    "duplicate_accounts": ("variants", "acquisitions"),
    "growth_revenue_mismatch": ("contracts", "upgrades", "gap_days"),
    "churn_misclassified": ("count", "cancel_after_days"),
    "upstream_missing": ("source", "days", "delay_days"),
}


def validate(fault: FaultSpec, world: co.World) -> None:
    """Reject unknown parameters and dates outside the history before anything is generated."""
    allowed = PARAMS[fault.id]
    unknown = sorted(set(fault.params) - set(allowed))
    if unknown:
        raise ValueError(
            f"--fault {fault.as_text()}: unknown parameter(s) {unknown}; expected {list(allowed)}"
        )
    if fault.date is not None and not world.spec.start <= fault.date <= world.spec.end:
        raise ValueError(
            f"--fault {fault.as_text()}: date {fault.date} is outside the generated history "
            f"{world.spec.start}..{world.spec.end}"
        )
    for name in ("source",):
        if name in fault.params and str(fault.params[name]) not in SOURCES:
            raise ValueError(
                f"--fault {fault.as_text()}: source={fault.params[name]!r}: expected one of {sorted(SOURCES)}"
            )


def last_month(world: co.World) -> int:
    """First epoch day of the last complete month (the end's month when the end is a month end)."""
    closed = complete_months(world)
    m = int(closed[-1]) if len(closed) else int(world.months[-1])
    return int(co.month_start(m))


def fault_day(fault: FaultSpec, world: co.World, default: int) -> int:
    """The fault's DATE as an epoch day, or ``default`` clipped into the history."""
    if fault.date is not None:
        return co.epoch_day(fault.date)
    return int(min(max(default, world.start), world.end))


def _iso(day: int) -> str:
    return co.to_date(int(day)).isoformat()


def _record(
    fault: FaultSpec, source: str, day: int, description: str, key: str, rows: Any, **details: Any
) -> Injected:
    values = sorted({str(r) for r in rows if r is not None and not (isinstance(r, float) and np.isnan(r))})
    return Injected(fault.id, source, _iso(day), dict(fault.params), description, key, values, details)


def _move(frame: pd.DataFrame, mask: np.ndarray, new_partition: np.ndarray) -> None:
    """Move rows to another partition, keeping the source's arrival rule (same offset from it)."""
    offset = frame.loc[mask, ARRIVAL].to_numpy() - frame.loc[mask, PARTITION].to_numpy() * DAY
    frame.loc[mask, PARTITION] = new_partition
    frame.loc[mask, ARRIVAL] = np.asarray(new_partition) * DAY + offset


def _pick(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``candidates`` (positions), chosen at random, in their original order."""
    if len(candidates) <= n:
        return np.sort(candidates)
    return np.sort(rng.choice(candidates, size=n, replace=False))


def _prefer_from(rng: np.random.Generator, days: np.ndarray, since: int, n: int) -> np.ndarray:
    """Positions of ``n`` rows, preferring days on/after ``since``, then the latest before it."""
    after = np.flatnonzero(days >= since)
    chosen = _pick(rng, after, n)
    if len(chosen) < n:
        before = np.flatnonzero(days < since)
        before = before[np.argsort(-days[before], kind="stable")][: n - len(chosen)]
        chosen = np.sort(np.concatenate([chosen, before]))
    return chosen


# ------------------------------------------------------------------ Profit faults


@injector("missing_subscription_data")
def missing_subscription_data(
    fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext
) -> list[Injected]:
    """A billing API gap: the listed billing extracts have no rows for ``days`` days from DATE."""
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 11)
    days = _param(fault, "days", 3, int, 1, 366)
    sources = _choices(
        fault,
        "sources",
        ("subscriptions", "billing_invoices", "billing_payments"),
        ("subscriptions", "billing_invoices", "billing_payments", "billing_customers"),
    )
    out = []
    for src in sources:
        if src not in ex:
            continue
        f = ex[src]
        gone = (f[PARTITION] >= day) & (f[PARTITION] < day + days)
        key = SOURCES[src].key
        out.append(
            _record(
                fault,
                src,
                day,
                f"billing API gap: no {src} rows for {days} day(s) from {_iso(day)} (never delivered)",
                key,
                f.loc[gone, key],
                days=days,
                dropped=int(gone.sum()),
                partitions=[_iso(d) for d in range(day, day + days)],
            )
        )
        ex[src] = f[~gone]
    return out


@injector("stale_data")
def stale_data(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """A Profit source stops arriving: every delivery for a partition after DATE is withheld."""
    w = ctx.world
    day = fault_day(fault, w, w.end - 6)
    src = str(fault.params.get("source", "billing_invoices"))
    if src not in ex:
        return []
    f = ex[src]
    gone = f[PARTITION] > day
    key = SOURCES[src].key
    parts = {int(d) for d in f.loc[gone, PARTITION]}
    if SCHEDULE in ex:
        sched = ex[SCHEDULE]
        late = (sched["source"] == src) & (sched[PARTITION] > day)
        parts |= {int(d) for d in sched.loc[late, PARTITION]}
        ex[SCHEDULE] = sched[~late]
    ex[src] = f[~gone]
    if not parts:
        return []
    return [
        _record(
            fault,
            src,
            day + 1,
            f"{src} stopped arriving: no delivery after the partition of {_iso(day)}",
            key,
            f.loc[gone, key],
            last_delivered_partition=_iso(day),
            withheld_partitions=[_iso(d) for d in sorted(parts)],
            withheld_rows=int(gone.sum()),
        )
    ]


@injector("upstream_missing")
def upstream_missing(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """An upstream source's deliveries for ``days`` days from DATE arrive only ``delay_days`` after the window."""
    w = ctx.world
    day = fault_day(fault, w, w.end - 9)
    src = str(fault.params.get("source", "subscriptions"))
    days = _param(fault, "days", 3, int, 1, 366)
    delay = _param(fault, "delay_days", 5, int, 1, 366)
    if src not in ex:
        return []

    def held(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
        """Deliveries of the window arrive after it (same time of day); returns the moved arrivals."""
        part = frame.loc[mask, PARTITION].to_numpy()
        before = frame.loc[mask, ARRIVAL].to_numpy()
        late = at(day + days + delay) + (before - at(part)) % DAY
        frame.loc[mask, ARRIVAL] = np.maximum(late, before)
        return pd.DataFrame({"p": part, "before": before, "after": frame.loc[mask, ARRIVAL].to_numpy()})

    f = ex[src].copy()
    hit = ((f[PARTITION] >= day) & (f[PARTITION] < day + days)).to_numpy()
    moved = [held(f, hit)]
    ex[src] = f
    if SCHEDULE in ex:
        sched = ex[SCHEDULE].copy()
        mask = (
            (sched["source"] == src) & (sched[PARTITION] >= day) & (sched[PARTITION] < day + days)
        ).to_numpy()
        moved.append(held(sched, mask))
        ex[SCHEDULE] = sched
    arrivals = pd.concat(moved, ignore_index=True).drop_duplicates("p")
    if arrivals.empty:
        return []
    return [
        _record(
            fault,
            src,
            day,
            f"{src} deliveries for {days} day(s) from {_iso(day)} held back upstream, backfilled {delay} day(s) after",
            SOURCES[src].key,
            f.loc[hit, SOURCES[src].key],
            partitions=[_iso(p) for p in sorted(arrivals["p"])],
            arrived_at={
                _iso(p): {
                    "expected": pd.Timestamp(int(b), unit="s", tz="UTC").isoformat(),
                    "actual": pd.Timestamp(int(a), unit="s", tz="UTC").isoformat(),
                }
                for p, b, a in arrivals.sort_values("p").itertuples(index=False)
            },
        )
    ]


@injector("expenses_wrong_month")
def expenses_wrong_month(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """Late ops submission, a delayed cloud bill, a x100 amount and an incurred date in the wrong year."""
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 9)
    parts = _choices(
        fault,
        "parts",
        ("late_submission", "cloud_delay", "amount", "date"),
        ("late_submission", "cloud_delay", "amount", "date"),
    )
    factor = _param(fault, "factor", 100, int, 2, 10_000)
    out: list[Injected] = []
    rng = ctx.rng
    if "ops_expenses" in ex:
        f = ex["ops_expenses"].copy()
        inc = f["incurred_date"].to_numpy()
        sub = day_of(f["submitted_at"].to_numpy())
        used: set[int] = set()
        if "late_submission" in parts:
            cands = np.flatnonzero((inc >= day - 60) & (inc <= day - 35) & (sub < day))
            pick = _pick(rng, cands, 1)
            if len(pick):
                i = f.index[pick]
                old = int(f.loc[i[0], "submitted_at"])
                f.loc[i, "submitted_at"] = at(day, 14.0) + int(rng.integers(0, 3 * 3600))
                _move(f, f.index.isin(i), np.array([day]))
                used.update(pick.tolist())
                out.append(
                    _record(
                        fault,
                        "ops_expenses",
                        day,
                        "late ops submission: an expense incurred 35-60 days earlier submitted on DATE (after its month closed)",
                        "expense_id",
                        f.loc[i, "expense_id"],
                        incurred_date=_iso(int(inc[pick[0]])),
                        submitted_before=pd.Timestamp(old, unit="s", tz="UTC").isoformat(),
                    )
                )
        month_lo, month_hi = int(co.month_start(co.month_of(day))), int(co.month_start(co.month_of(day) + 1))
        in_month = (
            (inc >= month_lo) & (inc < month_hi) & np.isin(f["category"].to_numpy(), VARIABLE_CATEGORIES)
        )
        if "amount" in parts:  # a typical entry: USD, the currency most entries of a category are in
            usd = f["currency"].to_numpy() == "USD"
            cands = np.array([p for p in np.flatnonzero(in_month & usd) if p not in used], dtype=np.int64)
            pick = _pick(rng, cands, 1)
            if len(pick):
                i = f.index[pick]
                before = int(f.loc[i[0], "amount"])
                f.loc[i, "amount"] = f.loc[i, "amount"] * factor
                used.update(pick.tolist())
                out.append(
                    _record(
                        fault,
                        "ops_expenses",
                        day,
                        f"fat-fingered amount: x{factor}",
                        "expense_id",
                        f.loc[i, "expense_id"],
                        amount_before=before,
                        amount_after=before * factor,
                        factor=factor,
                    )
                )
        if "date" in parts:
            cands = np.array([p for p in np.flatnonzero(in_month) if p not in used], dtype=np.int64)
            pick = _pick(rng, cands, 1)
            if len(pick):
                i = f.index[pick]
                before = int(f.loc[i[0], "incurred_date"])
                typed = co.to_date(before)
                typed = (
                    typed.replace(year=typed.year - 1)
                    if not (typed.month == 2 and typed.day == 29)
                    else typed.replace(year=typed.year - 1, day=28)
                )
                f.loc[i, "incurred_date"] = co.epoch_day(typed)
                out.append(
                    _record(
                        fault,
                        "ops_expenses",
                        day,
                        "fat-fingered incurred date: the previous year typed",
                        "expense_id",
                        f.loc[i, "expense_id"],
                        incurred_date_before=_iso(before),
                        incurred_date_after=typed.isoformat(),
                    )
                )
        ex["ops_expenses"] = f
    if "cloud_delay" in parts and "cloud_costs" in ex:
        provider = str(fault.params.get("provider", "azure")).lower()
        names = {"aws": "AWS", "azure": "Microsoft", "gcp": "Google Cloud"}
        if provider not in names:
            raise ValueError(
                f"--fault {fault.as_text()}: provider={provider!r}: expected one of aws, azure, gcp"
            )
        delay = _param(fault, "delay_days", 21, int, 1, 365)
        f = ex["cloud_costs"].copy()
        period = int(co.month_start(co.month_of(day) - 1))
        hit = ((f[PARTITION] == period) & (f["ProviderName"] == names[provider])).to_numpy()
        if hit.any():
            before = int(f.loc[hit, ARRIVAL].iloc[0])
            f.loc[hit, ARRIVAL] = f.loc[hit, ARRIVAL] + delay * DAY
            ex["cloud_costs"] = f
            out.append(
                _record(
                    fault,
                    "cloud_costs",
                    period,
                    f"delayed cloud bill: {names[provider]}'s bill for {_iso(period)[:7]} arrives {delay} days late",
                    "Id",
                    f.loc[hit, "Id"],
                    provider=names[provider],
                    billing_period=_iso(period)[:7],
                    expected_arrival=pd.Timestamp(before, unit="s", tz="UTC").isoformat(),
                    actual_arrival=pd.Timestamp(before + delay * DAY, unit="s", tz="UTC").isoformat(),
                )
            )
    return out


@injector("math_errors")
def math_errors(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """NULL amounts, a zero-seat row, a duplicated dimension row and an amount typed as text."""
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 14)
    rng = ctx.rng
    out: list[Injected] = []
    if ctx.first_chunk:
        n_null = _param(fault, "nulls", 3, int, 0, 1000)
        f = ex["billing_invoices"]
        subs = np.flatnonzero(
            (f["line_type"] == "subscription").to_numpy() & (f[PARTITION] >= day).to_numpy()
        )
        if len(subs):
            sub_parts = f[PARTITION].to_numpy()[subs]
            counts = pd.Series(sub_parts).value_counts().sort_index()
            full = counts[counts >= n_null]
            first = int(full.index[0]) if len(full) else int(counts.index[0])  # one delivery with n lines
            pick = _pick(rng, subs[sub_parts == first], n_null)
            f = f.copy()
            f["amount"] = f["amount"].astype("Int64")
            f.iloc[pick, f.columns.get_loc("amount")] = pd.NA
            ex["billing_invoices"] = f
            out.append(
                _record(
                    fault,
                    "billing_invoices",
                    int(first),
                    "NULL amounts on invoice lines",
                    "invoice_line_id",
                    f.iloc[pick]["invoice_line_id"],
                    partition=_iso(int(first)),
                )
            )
        n_zero = _param(fault, "zero_seats", 1, int, 0, 1000)
        f = ex["subscriptions"]
        cands = np.flatnonzero(
            (f["status"] == "active").to_numpy()
            & (f["event_type"] == "customer.subscription.updated").to_numpy()
            & (f[PARTITION] >= day).to_numpy()
        )
        pick = _pick(rng, cands, n_zero) if n_zero else cands[:0]
        if len(pick):
            f = f.copy()
            f.iloc[pick, f.columns.get_loc("item_quantity")] = 0
            ex["subscriptions"] = f
            out.append(
                _record(
                    fault,
                    "subscriptions",
                    int(f.iloc[pick][PARTITION].min()),
                    "zero seats (item_quantity = 0) on an active subscription: a zero denominator",
                    "event_id",
                    f.iloc[pick]["event_id"],
                )
            )
        n_dup = _param(fault, "duplicates", 1, int, 0, 1000)
        f = ex["billing_customers"]
        cands = np.flatnonzero((f[PARTITION] < day).to_numpy())
        pick = _pick(rng, cands, n_dup) if n_dup else cands[:0]
        if len(pick):
            dup = f.iloc[pick].copy()
            _move(dup, np.ones(len(dup), bool), np.full(len(dup), day))
            ex["billing_customers"] = pd.concat([f, dup], ignore_index=True)
            out.append(
                _record(
                    fault,
                    "billing_customers",
                    day,
                    "billing customer delivered twice (a re-sync): the dimension row fans out joins",
                    "customer_id",
                    dup["customer_id"],
                )
            )
    if ctx.batch is None and "ops_expenses" in ex:
        f = ex["ops_expenses"]
        parts = np.sort(f.loc[f[PARTITION] >= day, PARTITION].unique())
        if len(parts):
            part = int(parts[0])
            f = f.copy()
            f["amount"] = f["amount"].astype(object)
            hit = (f[PARTITION] == part).to_numpy()
            f.loc[hit, "amount"] = f.loc[hit, "amount"].map(lambda v: str(int(v)))
            ex["ops_expenses"] = f
            out.append(
                _record(
                    fault,
                    "ops_expenses",
                    part,
                    "amount typed as text in one delivery (a string column)",
                    "expense_id",
                    f.loc[hit, "expense_id"],
                    partition=_iso(part),
                )
            )
    return out


@injector("finance_mismatch")
def finance_mismatch(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """Differences against Finance's ledger: timing, a category missing from our sources, FX."""
    if ctx.batch is not None or "finance_ledger" not in ex:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w))
    parts = _choices(
        fault, "parts", ("timing", "missing_category", "fx"), ("timing", "missing_category", "fx")
    )
    m = int(co.month_of(day))
    ms = int(co.month_start(m))
    prev = int(co.month_start(m - 1))
    closed = set(complete_months(w).tolist())
    if m not in closed:
        raise ValueError(
            f"--fault {fault.as_text()}: {_iso(ms)[:7]} is not a closed month, so Finance has no ledger for it"
        )
    led = ex["finance_ledger"].copy()
    ops = ex["ops_expenses"]
    out: list[Injected] = []
    rates = month_end_rates(w)
    mcol = {int(x): i for i, x in enumerate(w.months)}

    def line_id(period: int, category: str, sub: str, cur: str) -> str:
        return f"{_iso(period)[:7]}|{category}|{sub}|{cur}"

    def set_amount(lid: str, period: int, sub: str, cur: str, local: int) -> None:
        nonlocal led
        ci = co.CURRENCIES.index(cur)
        rate = int(rates[mcol[int(co.month_of(period))], ci])
        if lid in set(led["line_id"]):
            i = led.index[led["line_id"] == lid]
            led.loc[i, "amount_local"] = local
            led.loc[i, "amount_usd"] = to_usd(np.array([local]), np.array([rate]))[0]
        else:
            row = led[led[PARTITION] == period].iloc[0].copy()
            row["line_id"], row["category"], row["subcategory"], row["currency"] = lid, "operations", sub, cur
            row["amount_local"], row["fx_rate"] = local, rate
            row["amount_usd"] = to_usd(np.array([local]), np.array([rate]))[0]
            led = pd.concat([led, row.to_frame().T.astype(led.dtypes.to_dict())], ignore_index=True)

    moved_category = None
    if "timing" in parts and (m - 1) in closed:
        inc = ops["incurred_date"].to_numpy()
        # an expense Finance booked in its own month: submitted by the close of that month
        on_time = day_of(ops["submitted_at"].to_numpy()) <= close_days(np.array([m - 1]))[0]
        # (not the category removed by missing_category, so the two differences stay apart)
        skip = ["office_rent"] + (
            [str(fault.params.get("category", "legal_accounting"))] if "missing_category" in parts else []
        )
        cands = ops[(inc >= prev) & (inc < ms) & ~ops["category"].isin(skip).to_numpy() & on_time]
        booked = set(led["line_id"])
        keep = [
            line_id(prev, "operations", c, cur) in booked
            for c, cur in zip(cands["category"], cands["currency"], strict=True)
        ]
        cands = cands[np.asarray(keep, dtype=bool)]
        if len(cands):
            e = cands.sort_values(["amount", "expense_id"], ascending=[False, True], kind="stable").iloc[0]
            moved_category = e["category"]
            amount = int(e["amount"])
            src_lid = line_id(prev, "operations", e["category"], e["currency"])
            dst_lid = line_id(ms, "operations", e["category"], e["currency"])
            src_local = int(led.loc[led["line_id"] == src_lid, "amount_local"].iloc[0])
            set_amount(src_lid, prev, e["category"], e["currency"], src_local - amount)
            dst_now = led.loc[led["line_id"] == dst_lid, "amount_local"]
            set_amount(
                dst_lid,
                ms,
                e["category"],
                e["currency"],
                (int(dst_now.iloc[0]) if len(dst_now) else 0) + amount,
            )
            out.append(
                _record(
                    fault,
                    "finance_ledger",
                    prev,
                    "timing: Finance booked an expense in the month after it was incurred (submitted before close)",
                    "line_id",
                    [src_lid, dst_lid],
                    expense_id=e["expense_id"],
                    amount=amount,
                    currency=e["currency"],
                    booked_in=_iso(ms)[:7],
                    incurred_in=_iso(prev)[:7],
                )
            )
    if "missing_category" in parts:
        # the expenses of one category that Finance booked in DATE's month (incurred in it and
        # submitted by its close); another category if that one had none this month
        wanted = str(fault.params.get("category", "legal_accounting"))
        inc = ops["incurred_date"].to_numpy()
        booked = (
            (inc >= ms)
            & (inc < int(co.month_start(m + 1)))
            & (day_of(ops["submitted_at"].to_numpy()) <= close_days(np.array([m]))[0])
        )
        order = [wanted] + [c.name for c in OPS_CATEGORIES if c.name not in (wanted, moved_category)]
        cat, gone = wanted, booked & False
        for cat in order:
            gone = booked & (ops["category"] == cat).to_numpy()
            if gone.any():
                break
        if gone.any():
            out.append(
                _record(
                    fault,
                    "ops_expenses",
                    ms,
                    f"missing category: our operations extract has no {cat} expenses for {_iso(ms)[:7]} (Finance's ledger has them)",
                    "expense_id",
                    ops.loc[gone, "expense_id"],
                    category=cat,
                    period=_iso(ms)[:7],
                    amount=int(ops.loc[gone, "amount"].astype(np.int64).sum()),
                )
            )
            ex["ops_expenses"] = ops[~gone]
    if "fx" in parts:
        cur = str(fault.params.get("currency", "EUR")).upper()
        if cur not in co.CURRENCIES[1:]:
            raise ValueError(
                f"--fault {fault.as_text()}: currency={cur!r}: expected one of {co.CURRENCIES[1:]}"
            )
        shift = _param(fault, "fx_shift", 0.03, float, -0.5, 0.5)
        lid = line_id(ms, "revenue", "subscriptions", cur)
        hit = led["line_id"] == lid
        if hit.any():
            i = led.index[hit][0]
            before = int(led.loc[i, "fx_rate"])
            after = int(round(before * (1 + shift)))
            led.loc[i, "fx_rate"] = after
            led.loc[i, "amount_usd"] = to_usd(np.array([int(led.loc[i, "amount_local"])]), np.array([after]))[
                0
            ]
            out.append(
                _record(
                    fault,
                    "finance_ledger",
                    ms,
                    f"FX: Finance converted {cur} revenue at another source's rate ({shift:+.1%})",
                    "line_id",
                    [lid],
                    currency=cur,
                    rate_expected=f"{before / 1e6:.6f}",
                    rate_used=f"{after / 1e6:.6f}",
                )
            )
    led["amount_local"] = led["amount_local"].astype(np.int64)
    led["amount_usd"] = led["amount_usd"].astype(np.int64)
    led["fx_rate"] = led["fx_rate"].astype(np.int64)
    ex["finance_ledger"] = led.sort_values("line_id", kind="stable").reset_index(drop=True)
    return out


# ------------------------------------------------------------------ Growth faults


def _stage_chains(f: pd.DataFrame) -> pd.DataFrame:
    """Stage rows ordered per account by effective time, with each row's position."""
    g = f.sort_values(["account_id", "effective_at", "stage_event_id"], kind="stable")
    return g.assign(pos=g.groupby("account_id").cumcount())


@injector("skipped_stage")
def skipped_stage(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """A->C transitions in the CRM: lead->customer without the trial, trial->churned without the customer."""
    if not ctx.first_chunk:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w))
    n = _param(fault, "count", 2, int, 0, 10_000)
    f = ex["crm_stage_history"].copy()
    g = _stage_chains(f)
    path = g.groupby("account_id")["to_stage"].agg(tuple)
    last_eff = g.groupby("account_id")["effective_at"].max()
    last_day = pd.Series(day_of(last_eff.to_numpy()), index=last_eff.index)
    rng = ctx.rng
    accounts: dict[str, str] = {}
    drop_ids: list[str] = []
    changed_ids: list[str] = []
    # lead -> customer: accounts that converted and did nothing else in the CRM since
    conv = path[path == ("lead", "trial", "customer")].index.to_numpy()
    conv_day = last_day.reindex(conv).to_numpy()
    for acct in conv[_prefer_from(rng, conv_day, day, n)]:
        rows = g[g["account_id"] == acct]
        trial = rows[rows["to_stage"] == "trial"]["stage_event_id"].iloc[0]
        cust = rows[rows["to_stage"] == "customer"]["stage_event_id"].iloc[0]
        drop_ids.append(trial)
        changed_ids.append(cust)
        f.loc[f["stage_event_id"] == cust, "from_stage"] = "lead"
        accounts[acct] = "lead->customer (trial missing; billing has the trialing subscription)"
    # trial -> churned: customers who churned without any other CRM change
    churn = path[path == ("lead", "trial", "customer", "churned")].index.to_numpy()
    churn_day = last_day.reindex(churn).to_numpy()
    for acct in churn[_prefer_from(rng, churn_day, day, n)]:
        rows = g[g["account_id"] == acct]
        cust = rows[rows["to_stage"] == "customer"]["stage_event_id"].iloc[0]
        ch = rows[rows["to_stage"] == "churned"]["stage_event_id"].iloc[0]
        drop_ids.append(cust)
        changed_ids.append(ch)
        f.loc[f["stage_event_id"] == ch, "from_stage"] = "trial"
        accounts[acct] = "trial->churned (customer missing; billing has paid invoices)"
    ex["crm_stage_history"] = f[~f["stage_event_id"].isin(drop_ids)]
    if not accounts:
        return []
    return [
        _record(
            fault,
            "crm_stage_history",
            day,
            "skipped stage: a transition's middle stage is missing from the CRM (removed rows and the re-pointed ones)",
            "stage_event_id",
            drop_ids + changed_ids,
            accounts=dict(sorted(accounts.items())),
            removed=sorted(drop_ids),
            changed=sorted(changed_ids),
        )
    ]


@injector("late_account_updates")
def late_account_updates(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """AE-typed CRM changes effective in [DATE, DATE+days) entered 7-10 days after they happened."""
    if not ctx.first_chunk:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 7)
    days = _param(fault, "days", 7, int, 1, 366)
    share = _param(fault, "share", 0.5, float, 0.0, 1.0)
    lo_lag = _param(fault, "min_lag", 7, int, 1, 365)
    hi_lag = _param(fault, "max_lag", 10, int, lo_lag, 365)
    f = ex["crm_stage_history"].copy()
    eff_day = day_of(f["effective_at"].to_numpy())
    cands = np.flatnonzero(
        (eff_day >= day) & (eff_day < day + days) & (f["entered_by"] != INTEGRATION_USER).to_numpy()
    )
    rng = ctx.rng
    n = max(1, int(round(len(cands) * share))) if len(cands) else 0
    pick = _pick(rng, cands, n)
    if not len(pick):
        return []
    lag = rng.integers(lo_lag * DAY, hi_lag * DAY + 1, len(pick))
    idx = f.index[pick]
    f.loc[idx, "entered_at"] = f.loc[idx, "effective_at"].to_numpy() + lag
    _move(f, f.index.isin(idx), day_of(f.loc[idx, "entered_at"].to_numpy()))
    ex["crm_stage_history"] = f
    return [
        _record(
            fault,
            "crm_stage_history",
            day,
            f"late account updates: AE entries typed {lo_lag}-{hi_lag} days after the change",
            "stage_event_id",
            f.loc[idx, "stage_event_id"],
            accounts=sorted(set(f.loc[idx, "account_id"])),
            window=[_iso(day), _iso(day + days - 1)],
        )
    ]


def _name_variant(name: str, k: int) -> str:
    """A plausible hand-typed variant of a company name ("Acme Analytics Inc" -> "ACME ANALYTICS, Inc.")."""
    parts = name.rsplit(" ", 1)
    stem, suffix = (parts[0], parts[1]) if len(parts) == 2 else (name, "")
    variants = (
        f"{stem.upper()}, {suffix}.",
        f"{stem} {suffix}.".replace("..", "."),
        f"{stem} Incorporated" if suffix == "Inc" else f"{stem} {suffix} (EMEA)",
        f"The {stem} Company",
    )
    return variants[k % len(variants)]


@injector("duplicate_accounts")
def duplicate_accounts(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """The same company twice: a second CRM + product account under a name variant; an acquired
    customer kept as its own account (parent set, domain moved to the acquirer's)."""
    if not ctx.first_chunk or ctx.company is None:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 7)
    n_var = _param(fault, "variants", 2, int, 0, 1000)
    n_acq = _param(fault, "acquisitions", 1, int, 0, 1000)
    rng = ctx.rng
    comp = ctx.company
    a = comp.accounts
    iv = comp.intervals
    active = np.unique(
        iv.loc[(iv["start"] <= day) & (iv["end"] >= day) & (iv["state"] == co.CUSTOMER), "acc"].to_numpy()
    )
    pick = _pick(rng, active, n_var + 2 * n_acq)
    pick = rng.permutation(pick)
    variants, acq = pick[:n_var], pick[n_var:]
    crm, stages, adb = ex["crm_accounts"], ex["crm_stage_history"], ex["account_db"]
    aes = w.aes
    new_crm, new_stage, new_db, pairs = [], [], [], []
    for k, acc in enumerate(variants):
        row = a.iloc[acc]
        gid = w.spec.accounts + int(row["gidx"]) + 1  # an id beyond every real account
        crm_id = f"001{gid:012d}"
        prod_id = f"A{gid:07d}"
        name = _name_variant(row["name"], k)
        domain = row["domain"] if k % 2 == 0 else "www." + row["domain"]
        owner = (int(row["ae"]) + 1 + k) % len(aes)
        t0 = at(day, 10.0) + int(rng.integers(0, 6 * 3600))
        known = comp.changes[(comp.changes["acc"] == acc) & (comp.changes["day"] <= day)]
        tier_i, seats = (
            (int(known["tier"].iloc[-1]), int(known["seats"].iloc[-1]))
            if len(known)
            else (int(row["tier0"]), int(row["seats0"]))
        )
        tier = co.TIERS[tier_i]
        new_crm.append(
            {
                "account_id": crm_id,
                "name": name,
                "domain": domain,
                "industry": row["industry"],
                "owner_id": aes["ae_id"].iloc[owner],
                "owner_name": aes["ae_name"].iloc[owner],
                "parent_account_id": None,
                "product_account_id": prod_id,
                "billing_country": row["country"],
                "created_at": t0,
                "updated_at": t0,
            }
        )
        conv = day + co.TRIAL_DAYS
        steps = [(None, "lead", 0, INTEGRATION_USER), ("lead", "trial", 300, INTEGRATION_USER)]
        if conv <= w.end:
            steps.append(("trial", "customer", co.TRIAL_DAYS * DAY, aes["ae_id"].iloc[owner]))
        for j, (frm, to, off, who) in enumerate(steps):
            new_stage.append(
                {
                    "stage_event_id": co.stripe_ids(
                        "0Hs", co.object_key(w.spec.seed, 19, np.array([gid]), j), length=12
                    )[0],
                    "account_id": crm_id,
                    "from_stage": frm,
                    "to_stage": to,
                    "tier": tier if to == "customer" else None,
                    "seats": seats if to == "customer" else pd.NA,
                    "effective_at": t0 + off,
                    "entered_at": t0 + off + 600,
                    "entered_by": who,
                }
            )
        db_steps = [("trialing", 0, 1)] + ([("active", co.TRIAL_DAYS * DAY, seats)] if conv <= w.end else [])
        for status, off, s in db_steps:
            new_db.append(
                {
                    "account_id": prod_id,
                    "company_name": name,
                    "domain": domain,
                    "billing_customer_id": row["customer_id"],
                    "status": status,
                    "plan": tier,
                    "seats": s,
                    "created_at": t0,
                    "updated_at": t0 + off + 30,
                }
            )
        pairs.append(
            {
                "duplicate": crm_id,
                "original": row["crm_id"],
                "name": name,
                "original_name": row["name"],
                "product_duplicate": prod_id,
                "product_original": row["account_id"],
            }
        )
    acquisitions = []
    for j in range(len(acq) // 2):
        buyer, target = a.iloc[acq[2 * j]], a.iloc[acq[2 * j + 1]]
        t0 = at(day, 15.0) + int(rng.integers(0, 3 * 3600))
        last = (
            crm[crm["account_id"] == target["crm_id"]]
            .sort_values("updated_at")
            .iloc[-1]
            .drop([PARTITION, ARRIVAL])
            .to_dict()
        )
        last.update(parent_account_id=buyer["crm_id"], updated_at=t0)
        new_crm.append(last)
        last_db = (
            adb[(adb["account_id"] == target["account_id"]) & (adb["updated_at"] <= t0)]
            .sort_values("updated_at")
            .iloc[-1]
        )
        db = last_db.drop([PARTITION, ARRIVAL]).to_dict()
        db.update(domain=buyer["domain"], updated_at=t0 + 60)
        new_db.append(db)
        acquisitions.append(
            {
                "acquired": target["crm_id"],
                "acquirer": buyer["crm_id"],
                "product_acquired": target["account_id"],
                "product_acquirer": buyer["account_id"],
                "date": _iso(day),
            }
        )

    def append(frame: pd.DataFrame, rows: list[dict], ts: str, hour_offset: float) -> pd.DataFrame:
        if not rows:
            return frame
        add = pd.DataFrame(rows)
        add[PARTITION] = day_of(add[ts].to_numpy())
        add[ARRIVAL] = at(add[PARTITION].to_numpy() + 1, hour_offset)
        out = pd.concat([frame, add[frame.columns]], ignore_index=True)
        for c in frame.columns:
            if str(frame[c].dtype) in ("int64", "Int64"):
                out[c] = out[c].astype(frame[c].dtype)
        return out

    ex["crm_accounts"] = append(crm, new_crm, "updated_at", _hour(crm))
    ex["crm_stage_history"] = append(stages, new_stage, "entered_at", _hour(stages))
    ex["account_db"] = append(adb, new_db, "updated_at", _hour(adb))
    details = {"duplicates": pairs, "acquisitions": acquisitions}
    out = []
    if new_crm:
        out.append(
            _record(
                fault,
                "crm_accounts",
                day,
                "duplicate accounts: name variants of an existing customer, and an acquired customer kept separate",
                "account_id",
                [r["account_id"] for r in new_crm],
                **details,
            )
        )
    if new_stage:
        out.append(
            _record(
                fault,
                "crm_stage_history",
                day,
                "duplicate accounts: stage history of the duplicate CRM accounts",
                "stage_event_id",
                [r["stage_event_id"] for r in new_stage],
                **details,
            )
        )
    if new_db:
        out.append(
            _record(
                fault,
                "account_db",
                day,
                "duplicate accounts: product accounts of the duplicates, and the acquired account moved to its acquirer's domain",
                "account_id",
                [r["account_id"] for r in new_db],
                **details,
            )
        )
    return out


def _hour(frame: pd.DataFrame) -> float:
    """The next-morning arrival hour of a daily extract (from its own rows)."""
    if frame.empty:
        return 4.0
    return float((int(frame[ARRIVAL].iloc[0]) - (int(frame[PARTITION].iloc[0]) + 1) * DAY) / 3600)


@injector("growth_revenue_mismatch")
def growth_revenue_mismatch(
    fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext
) -> list[Injected]:
    """Contract start far before the first payment; upgrades backdated in the CRM before billing's proration."""
    if not ctx.first_chunk:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w))
    n_con = _param(fault, "contracts", 2, int, 0, 1000)
    n_up = _param(fault, "upgrades", 2, int, 0, 1000)
    gap = _param(fault, "gap_days", 60, int, 20, 720)
    rng = ctx.rng
    out = []
    sr = ex["sales_records"].copy()
    in_history = np.flatnonzero(sr["contract_start"].to_numpy() >= w.start)  # billing landed from its start
    pick = (
        in_history[_prefer_from(rng, sr["contract_start"].to_numpy()[in_history], day, n_con)]
        if n_con and len(in_history)
        else np.array([], np.int64)
    )
    if len(pick):
        idx = sr.index[pick]
        shift = gap + rng.integers(-10, 11, len(pick))
        old_start = sr.loc[idx, "contract_start"].to_numpy()
        new_start = old_start - shift
        sr.loc[idx, "contract_start"] = new_start
        sr.loc[idx, "signed_at"] = at(new_start - rng.integers(1, 8, len(pick)), 11.0)
        _move(sr, sr.index.isin(idx), np.maximum(day_of(sr.loc[idx, "signed_at"].to_numpy()), w.start))
        ex["sales_records"] = sr
        out.append(
            _record(
                fault,
                "sales_records",
                int(new_start.min()),
                f"contract start ~{gap} days before billing's first invoice and payment",
                "deal_id",
                sr.loc[idx, "deal_id"],
                deals={
                    d: {"account_id": acc, "contract_start": _iso(s), "first_payment": _iso(o)}
                    for d, acc, s, o in zip(
                        sr.loc[idx, "deal_id"], sr.loc[idx, "account_id"], new_start, old_start, strict=True
                    )
                },
            )
        )
    if n_up:
        f = ex["crm_stage_history"].copy()
        g = _stage_chains(f)
        prev_tier = g.groupby("account_id")["tier"].shift()
        prev_seats = g.groupby("account_id")["seats"].shift()
        rank = {t: i for i, t in enumerate(co.TIERS)}
        up = (
            (g["from_stage"] == "customer")
            & (g["to_stage"] == "customer")
            & (
                (g["tier"].map(rank) > prev_tier.map(rank))
                | ((g["tier"] == prev_tier) & (g["seats"].astype("float") > prev_seats.astype("float")))
            )
        ).to_numpy()
        # room to backdate by up to 20 days without passing the account's previous stage row
        room = (g["effective_at"] - g.groupby("account_id")["effective_at"].shift()).to_numpy()
        cands = np.flatnonzero(up & (room > 21 * DAY))
        eff_day = day_of(g["effective_at"].to_numpy())
        chosen = cands[_prefer_from(rng, eff_day[cands], day, n_up)] if len(cands) else cands
        if len(chosen):
            ids = g.iloc[chosen]["stage_event_id"].to_numpy()
            back = rng.integers(10, 21, len(chosen)) * DAY
            m = f["stage_event_id"].isin(ids).to_numpy()
            order = pd.Series(back, index=ids).reindex(f.loc[m, "stage_event_id"]).to_numpy()
            f.loc[m, "effective_at"] = f.loc[m, "effective_at"].to_numpy() - order
            f.loc[m, "entered_at"] = f.loc[m, "entered_at"].to_numpy() - order
            _move(f, m, np.maximum(day_of(f.loc[m, "entered_at"].to_numpy()), w.start))
            ex["crm_stage_history"] = f
            out.append(
                _record(
                    fault,
                    "crm_stage_history",
                    int(day_of(f.loc[m, "effective_at"].to_numpy()).min()),
                    "upgrade backdated in the CRM: expansion counted 10-20 days before billing prorates it",
                    "stage_event_id",
                    ids,
                    accounts=sorted(set(f.loc[m, "account_id"])),
                    backdated_days={i: int(b // DAY) for i, b in zip(ids, back, strict=True)},
                )
            )
    return out


@injector("churn_misclassified")
def churn_misclassified(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """Dunning accounts cancelled (payment_failed) early while they keep using the product; some pay later."""
    if not ctx.first_chunk or ctx.company is None:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w) - co.GRACE_DAYS)
    n = _param(fault, "count", 4, int, 0, 1000)
    after = _param(fault, "cancel_after_days", 2, int, 1, co.DUNNING_RETRY_DAYS[0] - 1)
    rng = ctx.rng
    comp = ctx.company
    ch = comp.changes
    pd_rows = ch[ch["kind"] == co.K_PAST_DUE]
    nxt = ch.groupby("acc")["kind"].shift(-1).reindex(pd_rows.index)
    nxt_day = ch.groupby("acc")["day"].shift(-1).reindex(pd_rows.index)
    ep = pd_rows.assign(outcome=nxt.to_numpy(), resolved=nxt_day.to_numpy())
    ep = ep[ep["outcome"].isin([co.K_RECOVER, co.K_CANCEL_INVOL])]
    lapsed = ep[ep["outcome"] == co.K_CANCEL_INVOL]
    recovered = ep[ep["outcome"] == co.K_RECOVER]
    half = (n + 1) // 2
    take_l = lapsed.iloc[_prefer_from(rng, lapsed["day"].to_numpy(), day, half)] if len(lapsed) else lapsed
    take_r = (
        recovered.iloc[_prefer_from(rng, recovered["day"].to_numpy(), day, n - len(take_l))]
        if len(recovered)
        else recovered
    )
    if len(take_l) + len(take_r) < n and len(lapsed) > len(take_l):
        take_l = lapsed.iloc[_prefer_from(rng, lapsed["day"].to_numpy(), day, n - len(take_r))]
    subs = ex["subscriptions"].copy()
    a = comp.accounts
    changed: list[str] = []
    episodes = []
    added = []
    for kind, rows in (("lapsed", take_l), ("recovered", take_r)):
        for r in rows.itertuples():
            acc = int(r.acc)
            sub_id = subscription_ids(comp, np.array([acc]), np.array([r.sub_seq]))[0]
            tod = int(a["tod"].iloc[acc])
            cancel_at = co.at_seconds(r.day + after, tod) + 3600
            ev = subs[(subs["subscription_id"] == sub_id)]
            if kind == "lapsed":
                hit = ev.index[
                    (ev["status"] == "canceled") & (ev["cancellation_details_reason"] == "payment_failed")
                ]
                subs.loc[hit, "event_at"] = cancel_at
                subs.loc[hit, "canceled_at"] = cancel_at
                _move(subs, subs.index.isin(hit), np.array([day_of(cancel_at)]))
                changed += subs.loc[hit, "event_id"].tolist()
            else:
                base = ev[ev["status"] == "past_due"].sort_values("event_at").iloc[-1].copy()
                gid = int(a["gidx"].iloc[acc])
                base["event_id"] = co.stripe_ids(
                    "evt_", co.object_key(w.spec.seed, 3, np.array([gid]), 100_000 + int(r.day))
                )[0]
                base["event_type"] = "customer.subscription.deleted"
                base["status"] = "canceled"
                base["canceled_at"] = cancel_at
                base["event_at"] = cancel_at
                base["cancellation_details_reason"] = "payment_failed"
                base[PARTITION] = day_of(cancel_at)
                base[ARRIVAL] = base[PARTITION] * DAY + (
                    int(ev[ARRIVAL].iloc[0]) - int(ev[PARTITION].iloc[0]) * DAY
                )
                added.append(base)
                changed.append(base["event_id"])
            episodes.append(
                {
                    "account_id": a["account_id"].iloc[acc],
                    "customer_id": a["customer_id"].iloc[acc],
                    "subscription_id": sub_id,
                    "kind": kind,
                    "payment_failed_on": _iso(int(r.day)),
                    "canceled_at": pd.Timestamp(int(cancel_at), unit="s", tz="UTC").isoformat(),
                    "usage_until": _iso(int(r.resolved) - 1) if kind == "lapsed" else None,
                    "paid_on": _iso(int(r.resolved)) if kind == "recovered" else None,
                }
            )
    if added:
        subs = pd.concat([subs, pd.DataFrame(added)[subs.columns]], ignore_index=True)
        for c in ex["subscriptions"].columns:
            if str(ex["subscriptions"][c].dtype) == "int64":
                subs[c] = subs[c].astype(np.int64)
    ex["subscriptions"] = subs
    if not episodes:
        return []
    return [
        _record(
            fault,
            "subscriptions",
            min(co.epoch_day(pd.Timestamp(e["canceled_at"]).date()) for e in episodes),
            f"involuntary churn misclassified: cancelled (payment_failed) {after} day(s) into dunning while still "
            "using the product; 'recovered' ones pay later",
            "event_id",
            changed,
            accounts=sorted(e["account_id"] for e in episodes),
            episodes=sorted(episodes, key=lambda e: e["account_id"]),
        )
    ]

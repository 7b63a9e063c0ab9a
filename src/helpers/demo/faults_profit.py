"""The five Profit faults of the failure catalogue, injected into the in-memory extracts.

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
missing_subscription_data  days=3, sources=subscriptions+billing_invoices+billing_payments, partial=0 ->
 (LAST 12)                 those extracts have no rows for [DATE, DATE+days) (never delivered), except
                           on the first ``partial`` days, which deliver every other row of each source
                           (the outage began during the day)
expenses_wrong_month       parts=late_submission+cloud_delay+amount+date, provider=azure, delay_days=21,
 (LAST 10)                 factor=100 -> an expense incurred 35-60 days earlier submitted on DATE; the
                           provider's bill for the month before arrives delay_days late; one amount x100;
                           one incurred date typed in the previous year
math_errors (LAST 15)      nulls=3, zero_seats=1, duplicates=1 -> NULL invoice-line amounts, a zero-seat
                           subscription event, a billing customer delivered twice, and one ops delivery
                           with the amount as text
stale_data (END-6)         source=billing_invoices -> no delivery after DATE
=========================  ===========================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.core.money import convert_cents
from helpers.demo import company as co
from helpers.demo.extracts import ARRIVAL, DAY, PARTITION, SCHEDULE, at, day_of
from helpers.demo.faults import (
    FaultContext,
    Injected,
    fault_day,
    injector,
    iso_day,
    last_month,
    move_rows,
    param,
    record,
    sample_positions,
)
from helpers.demo.sources_finance import OPS_CATEGORIES, close_days, complete_months, month_end_rates
from helpers.demo.spec import FaultSpec
from helpers.storage.contracts import SOURCES

# The parameters each injector of this module takes (checked before anything is generated).
PARAMS: dict[str, tuple[str, ...]] = {
    "finance_mismatch": ("parts", "category", "currency", "fx_shift"),
    "missing_subscription_data": ("days", "sources", "partial"),
    "expenses_wrong_month": ("parts", "provider", "delay_days", "factor"),
    "math_errors": ("nulls", "zero_seats", "duplicates"),
    "stale_data": ("source",),
}


VARIABLE_CATEGORIES = [c.name for c in OPS_CATEGORIES if not c.recurring]


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


@injector("missing_subscription_data")
def missing_subscription_data(
    fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext
) -> list[Injected]:
    """A billing API gap: the listed billing extracts have no rows for ``days`` days from DATE."""
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 11)
    days = param(fault, "days", 3, int, 1, 366)
    sources = _choices(
        fault,
        "sources",
        ("subscriptions", "billing_invoices", "billing_payments"),
        ("subscriptions", "billing_invoices", "billing_payments", "billing_customers"),
    )
    partial = param(fault, "partial", 0, int, 0, days)
    out = []
    for src in sources:
        if src not in ex:
            continue
        f = ex[src]
        gone = (f[PARTITION] >= day) & (f[PARTITION] < day + days)
        if partial:  # the first days deliver every other row of the day (in the extract's order)
            nth = f.groupby(PARTITION).cumcount()
            gone &= ~((f[PARTITION] < day + partial) & (nth % 2 == 0))
        key = SOURCES[src].key
        what = f" ({partial} first day(s) partly delivered)" if partial else ""
        out.append(
            record(
                fault,
                src,
                day,
                f"billing API gap: no {src} rows for {days} day(s) from {iso_day(day)} (never delivered){what}",
                key,
                f.loc[gone, key],
                days=days,
                dropped=int(gone.sum()),
                partitions=[iso_day(d) for d in range(day, day + days)],
                **(
                    {"partial_partitions": [iso_day(d) for d in range(day, day + partial)]} if partial else {}
                ),
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
        record(
            fault,
            src,
            day + 1,
            f"{src} stopped arriving: no delivery after the partition of {iso_day(day)}",
            key,
            f.loc[gone, key],
            last_delivered_partition=iso_day(day),
            withheld_partitions=[iso_day(d) for d in sorted(parts)],
            withheld_rows=int(gone.sum()),
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
    factor = param(fault, "factor", 100, int, 2, 10_000)
    out: list[Injected] = []
    rng = ctx.rng
    if "ops_expenses" in ex:
        f = ex["ops_expenses"].copy()
        inc = f["incurred_date"].to_numpy()
        sub = day_of(f["submitted_at"].to_numpy())
        used: set[int] = set()
        if "late_submission" in parts:
            cands = np.flatnonzero((inc >= day - 60) & (inc <= day - 35) & (sub < day))
            pick = sample_positions(rng, cands, 1)
            if len(pick):
                i = f.index[pick]
                old = int(f.loc[i[0], "submitted_at"])
                f.loc[i, "submitted_at"] = at(day, 14.0) + int(rng.integers(0, 3 * 3600))
                move_rows(f, f.index.isin(i), np.array([day]))
                used.update(pick.tolist())
                out.append(
                    record(
                        fault,
                        "ops_expenses",
                        day,
                        "late ops submission: an expense incurred 35-60 days earlier submitted on DATE (after its month closed)",
                        "expense_id",
                        f.loc[i, "expense_id"],
                        incurred_date=iso_day(int(inc[pick[0]])),
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
            pick = sample_positions(rng, cands, 1)
            if len(pick):
                i = f.index[pick]
                before = int(f.loc[i[0], "amount"])
                f.loc[i, "amount"] = f.loc[i, "amount"] * factor
                used.update(pick.tolist())
                out.append(
                    record(
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
            pick = sample_positions(rng, cands, 1)
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
                    record(
                        fault,
                        "ops_expenses",
                        day,
                        "fat-fingered incurred date: the previous year typed",
                        "expense_id",
                        f.loc[i, "expense_id"],
                        incurred_date_before=iso_day(before),
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
        delay = param(fault, "delay_days", 21, int, 1, 365)
        f = ex["cloud_costs"].copy()
        period = int(co.month_start(co.month_of(day) - 1))
        hit = ((f[PARTITION] == period) & (f["ProviderName"] == names[provider])).to_numpy()
        if hit.any():
            before = int(f.loc[hit, ARRIVAL].iloc[0])
            f.loc[hit, ARRIVAL] = f.loc[hit, ARRIVAL] + delay * DAY
            ex["cloud_costs"] = f
            out.append(
                record(
                    fault,
                    "cloud_costs",
                    period,
                    f"delayed cloud bill: {names[provider]}'s bill for {iso_day(period)[:7]} arrives {delay} days late",
                    "Id",
                    f.loc[hit, "Id"],
                    provider=names[provider],
                    billing_period=iso_day(period)[:7],
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
        n_null = param(fault, "nulls", 3, int, 0, 1000)
        f = ex["billing_invoices"]
        subs = np.flatnonzero(
            (f["line_type"] == "subscription").to_numpy() & (f[PARTITION] >= day).to_numpy()
        )
        if len(subs):
            sub_parts = f[PARTITION].to_numpy()[subs]
            counts = pd.Series(sub_parts).value_counts().sort_index()
            full = counts[counts >= n_null]
            first = int(full.index[0]) if len(full) else int(counts.index[0])  # one delivery with n lines
            pick = sample_positions(rng, subs[sub_parts == first], n_null)
            f = f.copy()
            f["amount"] = f["amount"].astype("Int64")
            f.iloc[pick, f.columns.get_loc("amount")] = pd.NA
            ex["billing_invoices"] = f
            out.append(
                record(
                    fault,
                    "billing_invoices",
                    int(first),
                    "NULL amounts on invoice lines",
                    "invoice_line_id",
                    f.iloc[pick]["invoice_line_id"],
                    partition=iso_day(int(first)),
                )
            )
        n_zero = param(fault, "zero_seats", 1, int, 0, 1000)
        f = ex["subscriptions"]
        cands = np.flatnonzero(
            (f["status"] == "active").to_numpy()
            & (f["event_type"] == "customer.subscription.updated").to_numpy()
            & (f[PARTITION] >= day).to_numpy()
        )
        pick = sample_positions(rng, cands, n_zero) if n_zero else cands[:0]
        if len(pick):
            f = f.copy()
            f.iloc[pick, f.columns.get_loc("item_quantity")] = 0
            ex["subscriptions"] = f
            out.append(
                record(
                    fault,
                    "subscriptions",
                    int(f.iloc[pick][PARTITION].min()),
                    "zero seats (item_quantity = 0) on an active subscription: a zero denominator",
                    "event_id",
                    f.iloc[pick]["event_id"],
                )
            )
        n_dup = param(fault, "duplicates", 1, int, 0, 1000)
        f = ex["billing_customers"]
        cands = np.flatnonzero((f[PARTITION] < day).to_numpy())
        pick = sample_positions(rng, cands, n_dup) if n_dup else cands[:0]
        if len(pick):
            dup = f.iloc[pick].copy()
            move_rows(dup, np.ones(len(dup), bool), np.full(len(dup), day))
            ex["billing_customers"] = pd.concat([f, dup], ignore_index=True)
            out.append(
                record(
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
                record(
                    fault,
                    "ops_expenses",
                    part,
                    "amount typed as text in one delivery (a string column)",
                    "expense_id",
                    f.loc[hit, "expense_id"],
                    partition=iso_day(part),
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
            f"--fault {fault.as_text()}: {iso_day(ms)[:7]} is not a closed month, so Finance has no ledger for it"
        )
    led = ex["finance_ledger"].copy()
    ops = ex["ops_expenses"]
    out: list[Injected] = []
    rates = month_end_rates(w)
    mcol = {int(x): i for i, x in enumerate(w.months)}

    def line_id(period: int, category: str, sub: str, cur: str) -> str:
        return f"{iso_day(period)[:7]}|{category}|{sub}|{cur}"

    def set_amount(lid: str, period: int, sub: str, cur: str, local: int) -> None:
        nonlocal led
        ci = co.CURRENCIES.index(cur)
        rate = int(rates[mcol[int(co.month_of(period))], ci])
        if lid in set(led["line_id"]):
            i = led.index[led["line_id"] == lid]
            led.loc[i, "amount_local"] = local
            led.loc[i, "amount_usd"] = convert_cents(np.array([local]), np.array([rate]))[0]
        else:
            row = led[led[PARTITION] == period].iloc[0].copy()
            row["line_id"], row["category"], row["subcategory"], row["currency"] = lid, "operations", sub, cur
            row["amount_local"], row["fx_rate"] = local, rate
            row["amount_usd"] = convert_cents(np.array([local]), np.array([rate]))[0]
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
                record(
                    fault,
                    "finance_ledger",
                    prev,
                    "timing: Finance booked an expense in the month after it was incurred (submitted before close)",
                    "line_id",
                    [src_lid, dst_lid],
                    expense_id=e["expense_id"],
                    amount=amount,
                    currency=e["currency"],
                    booked_in=iso_day(ms)[:7],
                    incurred_in=iso_day(prev)[:7],
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
                record(
                    fault,
                    "ops_expenses",
                    ms,
                    f"missing category: our operations extract has no {cat} expenses for {iso_day(ms)[:7]} (Finance's ledger has them)",
                    "expense_id",
                    ops.loc[gone, "expense_id"],
                    category=cat,
                    period=iso_day(ms)[:7],
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
        shift = param(fault, "fx_shift", 0.03, float, -0.5, 0.5)
        lid = line_id(ms, "revenue", "subscriptions", cur)
        hit = led["line_id"] == lid
        if hit.any():
            i = led.index[hit][0]
            before = int(led.loc[i, "fx_rate"])
            after = int(round(before * (1 + shift)))
            led.loc[i, "fx_rate"] = after
            led.loc[i, "amount_usd"] = convert_cents(
                np.array([int(led.loc[i, "amount_local"])]), np.array([after])
            )[0]
            out.append(
                record(
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

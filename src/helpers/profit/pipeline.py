"""Profit: revenue recognition, FX, cost assembly, profit and margin, completeness, unit allocation.

Pure functions over DataFrames (the only I/O is :func:`load_inputs`, which reads the landing zone
as of a moment), used by ``notebooks/pipelines/profit_aggregate.ipynb`` and ``profit_unit.ipynb``.

Conventions that hold in every function here:

- Money is integer minor units (``int64``) until presentation. A conversion multiplies minor
  units by a rate in millionths (*micro-cents*) and rounds half-even to cents once per published
  figure (per month and ledger line, as Finance does); allocations use the largest-remainder
  method so parts always add up to their total. Currencies are assumed to have two decimals
  (USD, EUR, GBP, CAD: every currency the billing system sells in).
- A row that cannot be used is never dropped silently: screening returns it as a *finding*
  (source, key, reason, action ``quarantined`` / ``coerced`` / ``deduplicated``), which the
  notebook writes to a quarantine mart and counts.
- Every join asserts its row count (:class:`JoinLog`): a dimension with a duplicated key would
  otherwise fan the fact rows out and double the money.
- A ratio with a zero denominator is a NULL with a recorded reason (:func:`ratio`), never an
  exception or an infinity; a sum never silently skips a NULL (:func:`require_complete`).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from helpers.core.timeutil import as_utc
from helpers.storage import landing

# Daily extracts: one delivery per day, an empty file on a quiet day (a missing day is missing data).
BILLING_SOURCES = ("billing_customers", "subscriptions", "billing_invoices", "billing_payments")
DAILY_SOURCES = (*BILLING_SOURCES, "fx_rates", "ops_expenses")
AGGREGATE_SOURCES = (*DAILY_SOURCES, "hr_payroll", "cloud_costs", "finance_ledger")
UNIT_SOURCES = (
    "billing_customers",
    "subscriptions",
    "billing_invoices",
    "fx_rates",
    "experiment_assignments",
)
META = ("_partition", "_arrived_at")
ACTIVE_STATUSES = ("trialing", "active", "past_due")  # the subscription is in use (seats count)
PAYING_STATUSES = ("active", "past_due")  # a renewal is due at the period end
MICRO = 1_000_000
CATEGORIES = ("salaries", "infrastructure", "operations")
# FOCUS ProviderName -> the provider key Finance's ledger uses as subcategory (else a slug of the name)
PROVIDER_KEYS = {"AWS": "aws", "Amazon Web Services": "aws", "Microsoft": "azure", "Google Cloud": "gcp"}

FINDING_COLUMNS = ["source", "key_column", "key_value", "delivery_partition", "reason", "action", "raw"]
KEYS: dict[str, tuple[str, ...]] = {
    "billing_invoices": ("invoice_line_id",),
    "billing_customers": ("customer_id",),
    "subscriptions": ("event_id",),
    "ops_expenses": ("expense_id",),
    "cloud_costs": ("Id",),
    "hr_payroll": ("payroll_month", "employee_id"),
    "fx_rates": ("date", "currency"),
    "finance_ledger": ("line_id",),
    "experiment_assignments": ("account_id", "experiment"),
}
# Columns each reader needs; an absent source (nothing delivered yet) is an empty frame of these.
COLUMNS: dict[str, tuple[str, ...]] = {
    "billing_invoices": (
        "invoice_id", "invoice_line_id", "customer_id", "subscription_id", "line_type", "amount",
        "currency", "period_start", "period_end", "status", "created", "updated_at",
    ),
    "billing_customers": ("customer_id", "currency", "account_id", "created"),
    "subscriptions": (
        "event_id", "event_type", "subscription_id", "customer_id", "status", "item_tier",
        "item_quantity", "item_unit_amount", "currency", "current_period_start", "current_period_end",
        "cancel_at", "canceled_at", "event_at",
    ),
    "fx_rates": ("date", "currency", "usd_per_unit"),
    "hr_payroll": (
        "payroll_month", "pay_date", "employee_id", "department", "gross_pay", "employer_taxes",
        "benefits", "currency",
    ),
    "cloud_costs": (
        "Id", "BilledCost", "BillingCurrency", "BillingPeriodStart", "ChargeCategory",
        "ChargePeriodStart", "ProviderName", "ServiceName",
    ),
    "ops_expenses": (
        "expense_id", "incurred_date", "submitted_at", "category", "vendor", "amount", "currency",
    ),
    "finance_ledger": (
        "line_id", "period", "category", "subcategory", "currency", "amount_local", "fx_rate",
        "amount_usd", "booked_at",
    ),
    "experiment_assignments": ("account_id", "experiment", "arm", "assigned_at"),
    "billing_payments": ("payment_id",),
}  # fmt: skip


class JoinFanOut(AssertionError):
    """A join changed the number of fact rows: the other side has duplicate keys."""


# ---------------------------------------------------------------- periods and arithmetic


def month_bounds(period: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[first day, first day of the next month)`` of ``YYYY-MM`` as naive midnight timestamps."""
    first = pd.Timestamp(f"{period}-01")
    return first, first + pd.offsets.MonthBegin(1)


def shift_period(period: str, months: int) -> str:
    """``YYYY-MM`` ``months`` later (earlier when negative)."""
    return (pd.Period(period, "M") + months).strftime("%Y-%m")


def periods_around(period: str) -> list[str]:
    """The month before, the month itself and the month after (reconciliation looks at neighbours)."""
    return [shift_period(period, -1), period, shift_period(period, 1)]


def period_of(days: pd.Series) -> pd.Series:
    """``YYYY-MM`` of each (naive) datetime."""
    return days.dt.strftime("%Y-%m")


def utc_day(values: pd.Series) -> pd.Series:
    """Dates, or timestamps (aware or naive UTC), as naive midnight datetimes (NaT stays NaT)."""
    out = pd.to_datetime(values, errors="coerce", utc=True)
    return out.dt.tz_convert(None).dt.normalize()


def half_even(numerator: Any, denominator: int) -> np.ndarray:
    """Integer division rounded half to even (``numerator`` int64 or Python-int object array)."""
    n = np.asarray(numerator)
    q, r = np.divmod(n, denominator)  # floor division: r in [0, denominator) also for negatives
    up = (2 * r > denominator) | ((2 * r == denominator) & (q % 2 == 1))
    return (q + up).astype(np.int64)


def to_cents(micro_cents: Any) -> np.ndarray:
    """Micro-cents (minor units x rate in millionths) to cents, half-even."""
    return half_even(micro_cents, MICRO)


def largest_remainder(exact: Sequence[Any], total: int) -> np.ndarray:
    """Integers close to ``exact`` (Decimals, Fractions or floats) that add up to ``total``.

    Each part is floored, then the units still missing go to the parts with the largest
    remainders (ties: first part first), so ``sum(result) == total`` always.
    """
    if not len(exact):
        if total:
            raise ValueError(f"largest_remainder: nothing to carry a total of {total}")
        return np.zeros(0, np.int64)
    floors = [int(math.floor(x)) for x in exact]
    missing = int(total) - sum(floors)
    if missing < 0 or missing > len(floors):
        raise ValueError(f"largest_remainder: total {total} is not the rounded sum of the parts")
    order = sorted(range(len(floors)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return np.asarray(floors, dtype=np.int64)


def allocate(pool: int, weights: pd.Series) -> pd.Series:
    """Split integer ``pool`` in proportion to non-negative integer ``weights`` (largest remainder).

    Exact integer arithmetic (Python ints), so it holds at any scale. All-zero weights allocate
    nothing: the caller must record the unallocated pool with its reason.
    """
    w = [int(x) for x in weights]
    if any(x < 0 for x in w):
        raise ValueError("allocate: weights must be non-negative")
    total = sum(w)
    if total == 0:
        return pd.Series(0, index=weights.index, dtype="int64")

    parts = largest_remainder([Fraction(pool * x, total) for x in w], pool)
    return pd.Series(parts, index=weights.index, dtype="int64")


def ratio(
    numerator: float | int | None, denominator: float | int | None, *, what: str
) -> tuple[float | None, str | None]:
    """``numerator / denominator`` or ``(None, reason)`` for a NULL input or a zero denominator."""
    if numerator is None or denominator is None or pd.isna(numerator) or pd.isna(denominator):
        return None, f"{what}: an input is NULL"
    if denominator == 0:
        return None, f"{what}: zero denominator"
    return float(numerator) / float(denominator), None


def require_complete(frame: pd.DataFrame, columns: Iterable[str], *, what: str) -> None:
    """Raise if a money column holds a NULL: sums must never skip one silently."""
    for col in columns:
        n = int(frame[col].isna().sum())
        if n:
            raise ValueError(f"{what}: {n} NULL value(s) in {col} reached a sum (screening missed them)")


# ---------------------------------------------------------------- findings and screening


def findings(
    frame: pd.DataFrame,
    *,
    source: str,
    key: str,
    reason: str | pd.Series,
    action: str,
    raw: str | None = None,
) -> pd.DataFrame:
    """Finding rows (see the module doc) for every row of ``frame``."""
    if not len(frame):
        return empty_findings()
    out = pd.DataFrame(
        {
            "source": source,
            "key_column": key,
            "key_value": frame[key].astype(str).to_numpy(),
            "delivery_partition": frame["_partition"].astype(str).to_numpy() if "_partition" in frame else "",
            "reason": reason.to_numpy() if isinstance(reason, pd.Series) else reason,
            "action": action,
            "raw": frame[raw]
            .map(lambda v: "NULL" if v is None or v is pd.NA or v != v else str(v))
            .to_numpy()
            if raw
            else "",
        }
    )
    return out[FINDING_COLUMNS]


def empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in FINDING_COLUMNS})


def concat_findings(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """All findings, one row each, in a stable order."""
    frames = [p for p in parts if len(p)]
    if not frames:
        return empty_findings()
    out = pd.concat(frames, ignore_index=True).drop_duplicates()
    return out.sort_values(["source", "key_value", "reason"], kind="stable").reset_index(drop=True)


def ensure_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``frame`` with every column :data:`COLUMNS` lists for ``source`` (absent ones all-NULL)."""
    cols = [*COLUMNS.get(source, ()), *META]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        frame = frame.assign(**{c: pd.Series(None, index=frame.index, dtype="object") for c in missing})
    return frame


def dedupe_exact(
    frame: pd.DataFrame, *, source: str, key: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop rows delivered again unchanged (a re-sync), keeping the first delivery; report them.

    A changed row (a new version) is data, not a duplicate: readers take the latest version per
    key. An unchanged copy is what fans joins out, so each copy is reported as ``deduplicated``.
    """
    key = key or KEYS[source][0]
    data_cols = [c for c in frame.columns if c not in META]
    if not len(frame):
        return frame, empty_findings()
    ordered = frame.sort_values(list(META), kind="stable")
    dup = ordered[data_cols].astype(str).duplicated(keep="first")
    copies = ordered[dup]
    reason = "delivered again unchanged (a re-sync); a duplicated key fans joins out"
    found = findings(copies, source=source, key=key, reason=reason, action="deduplicated")
    return ordered[~dup].sort_index(), found


def latest(frame: pd.DataFrame, keys: Sequence[str], order: Sequence[str] = ()) -> pd.DataFrame:
    """The latest version of each key: by ``order`` columns, then delivery partition and arrival."""
    by = [*order, *[m for m in META if m in frame.columns]]
    ordered = frame.sort_values(by, kind="stable") if by else frame
    return ordered.drop_duplicates(list(keys), keep="last").sort_index()


_INTEGER_TEXT = r"\s*[+-]?\d+\s*"


def screen_integers(
    frame: pd.DataFrame, column: str, *, source: str, key: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Make ``column`` int64 (minor units): integer text is coerced, unusable values quarantined.

    Returns the usable rows and the findings: ``coerced`` for whole numbers delivered as text
    (type drift: the value is kept), ``quarantined`` for NULL, non-numeric or fractional values.
    """
    s = frame[column]
    if not len(frame):
        return frame.assign(**{column: s.astype("int64")}), empty_findings()
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return frame.assign(**{column: s.astype("int64")}), empty_findings()
    is_text = s.map(lambda v: isinstance(v, str)).astype(bool)
    values = pd.to_numeric(s.where(~is_text), errors="coerce")
    text_ok = is_text & s.where(is_text, "").astype(str).str.fullmatch(_INTEGER_TEXT)
    values = values.where(~text_ok, pd.to_numeric(s.where(text_ok), errors="coerce"))
    whole = values.notna() & (values == np.floor(values))
    reason = pd.Series(f"{column} is not a whole number of minor units", index=frame.index)
    reason = reason.mask(s.isna(), f"{column} is NULL")
    reason = reason.mask(is_text & ~text_ok, f"{column} is text that is not a number")
    bad = frame[~whole]
    found = [
        findings(bad, source=source, key=key, reason=reason[~whole], action="quarantined", raw=column),
        findings(
            frame[text_ok & whole],
            source=source,
            key=key,
            reason=f"{column} delivered as text (type drift); whole number kept",
            action="coerced",
            raw=column,
        ),
    ]
    good = frame[whole].assign(**{column: values[whole].astype("int64")})
    return good, concat_findings(found)


# ---------------------------------------------------------------- joins


@dataclass
class JoinLog:
    """Left joins that assert the fact table keeps its row count, with a record of each join."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def merge(
        self, left: pd.DataFrame, right: pd.DataFrame, *, on: str | list[str], name: str
    ) -> pd.DataFrame:
        """``left`` LEFT JOIN ``right``; raises :class:`JoinFanOut` if the row count changes."""
        keys = [on] if isinstance(on, str) else list(on)
        duplicated = right[right.duplicated(keys, keep=False)][keys].drop_duplicates()
        result = left.merge(right, on=keys, how="left")
        self.rows.append(
            dict(
                join=name,
                left_rows=len(left),
                right_rows=len(right),
                result_rows=len(result),
                right_duplicate_keys=len(duplicated),
            )
        )
        if len(result) != len(left):
            sample = duplicated.head(5).to_dict("records")
            raise JoinFanOut(
                f"join {name}: {len(left)} rows became {len(result)}; duplicate keys on the right, e.g. {sample}"
            )
        return result

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.rows, columns=["join", "left_rows", "right_rows", "result_rows", "right_duplicate_keys"]
        )


# ---------------------------------------------------------------- loading


@dataclass
class ProfitInputs:
    """What a Profit run read: each source's rows as of ``as_of`` and every source's arrivals."""

    period: str
    as_of: dt.datetime
    frames: dict[str, pd.DataFrame]
    arrivals: dict[str, pd.DataFrame]

    def __getitem__(self, source: str) -> pd.DataFrame:
        return self.frames[source]

    def summary(self) -> pd.DataFrame:
        """Rows and deliveries read per source (for the notebook)."""
        return pd.DataFrame(
            [
                dict(
                    source=s,
                    rows=len(self.frames.get(s, ())),
                    deliveries=len(self.arrivals.get(s, ())),
                    latest_arrival=self.arrivals[s]["arrived_at"].max()
                    if len(self.arrivals.get(s, ()))
                    else None,
                )
                for s in sorted(set(self.frames) | set(self.arrivals))
            ]
        )


def read_windows(period: str, settings: Any) -> dict[str, str | None]:
    """First landing partition each source is read from (``None``: all of it).

    Billing lines and subscription events cover at most a month, so a lookback of
    ``billing_lookback_days`` before the previous month reaches every row that touches the
    three months reconciliation compares; dimensions (customers, assignments) are read whole.
    """
    prev_first, _ = month_bounds(shift_period(period, -1))
    billing = (prev_first - pd.Timedelta(days=settings.billing_lookback_days)).date().isoformat()
    lookback = month_bounds(shift_period(period, -settings.outlier_lookback_months - 1))[0].date().isoformat()
    return {
        "billing_invoices": billing,
        "subscriptions": billing,
        "billing_customers": None,
        "experiment_assignments": None,
        "fx_rates": lookback,
        "ops_expenses": lookback,
        "hr_payroll": prev_first.date().isoformat(),
        "cloud_costs": month_bounds(shift_period(period, -settings.cloud_history_months))[0]
        .date()
        .isoformat(),
        "finance_ledger": prev_first.date().isoformat(),
    }


def load_inputs(
    period: str,
    as_of: dt.datetime,
    *,
    settings: Any,
    sources: Sequence[str] = AGGREGATE_SOURCES,
    root: Path | None = None,
) -> ProfitInputs:
    """Read what had arrived by ``as_of`` (rows and manifests) for a run of ``period``.

    ``billing_payments`` is read only as a manifest: payments are cash, not revenue (refunds are
    booked through their credit-note lines), but its daily deliveries count for completeness.
    """
    as_of = as_utc(as_of)
    windows = read_windows(period, settings)
    frames = {}
    for source in sources:
        if source == "billing_payments":
            continue
        raw = landing.read_source(
            source, as_of=as_of, start=windows.get(source), root=root, with_arrival=True
        )
        frames[source] = ensure_columns(raw, source)
    arrivals = {s: landing.arrivals(s, root=root, as_of=as_of) for s in sources}
    return ProfitInputs(period, as_of, frames, arrivals)


# ---------------------------------------------------------------- FX


def rate_micros(values: pd.Series) -> pd.Series:
    """Rates (Decimal, text or float) in millionths, rounded half-even; NULL stays NA."""

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return pd.NA
        return int((Decimal(str(v)) * MICRO).to_integral_value(ROUND_HALF_EVEN))

    return values.map(one).astype("Int64")


def daily_rates(
    fx: pd.DataFrame, start: pd.Timestamp, stop: pd.Timestamp, *, max_gap_days: int
) -> pd.DataFrame:
    """USD per unit (millionths) for every day of ``[start, stop)`` and currency.

    The latest delivery of each (date, currency) wins. A day without its own rate takes the last
    earlier rate up to ``max_gap_days`` old (``rate_date`` says which); beyond that it is NA and
    amounts needing it are quarantined. USD is 1 by definition.
    """
    fx = latest(fx, KEYS["fx_rates"]).assign(day=lambda f: utc_day(f["date"]))
    fx = fx.assign(rate_micros=rate_micros(fx["usd_per_unit"])).dropna(subset=["day", "rate_micros"])
    days = pd.date_range(start, stop - pd.Timedelta(days=1), freq="D")
    currencies = sorted(set(fx["currency"].dropna()) - {"USD"})
    grid = pd.DataFrame([(d, c) for c in currencies for d in days], columns=["day", "currency"])
    out = [pd.DataFrame({"day": days, "currency": "USD", "rate_micros": MICRO, "rate_date": days})]
    if len(grid):
        known = fx[["day", "currency", "rate_micros"]].assign(rate_date=fx["day"]).sort_values("day")
        filled = pd.merge_asof(
            grid.sort_values("day"),
            known,
            on="day",
            by="currency",
            direction="backward",
            tolerance=pd.Timedelta(days=max_gap_days),
        )
        out.append(filled)
    rates = pd.concat(out, ignore_index=True)
    rates["rate_micros"] = rates["rate_micros"].astype("Int64")
    return rates.sort_values(["currency", "day"], kind="stable").reset_index(drop=True)


def month_end_rates(rates: pd.DataFrame, periods: Sequence[str]) -> pd.DataFrame:
    """The rate of each month's last day per currency (Finance converts at these)."""
    last = {p: month_bounds(p)[1] - pd.Timedelta(days=1) for p in periods}
    frame = pd.DataFrame({"period": list(last), "day": list(last.values())})
    return frame.merge(rates[["day", "currency", "rate_micros"]], on="day", how="inner").drop(columns="day")


def convert(
    frame: pd.DataFrame,
    rates: pd.DataFrame,
    joins: JoinLog,
    *,
    day: str,
    amount: str,
    source: str,
    key: str,
    name: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``usd_micro`` (``amount`` x the rate of ``day``); rows without a rate are quarantined."""
    if not len(frame):
        return frame.assign(
            rate_micros=pd.Series(dtype="Int64"), usd_micro=pd.Series(dtype="int64")
        ), empty_findings()
    merged = joins.merge(
        frame,
        rates[["day", "currency", "rate_micros"]].rename(columns={"day": day}),
        on=[day, "currency"],
        name=name,
    )
    missing = merged["rate_micros"].isna()
    reason = (
        "no FX rate for "
        + merged.loc[missing, "currency"].astype(str)
        + " on "
        + merged.loc[missing, day].dt.strftime("%Y-%m-%d")
    )
    found = findings(merged[missing], source=source, key=key, reason=reason, action="quarantined", raw=amount)
    good = merged[~missing].copy()
    good["usd_micro"] = good[amount].astype("int64") * good["rate_micros"].astype("int64")
    return good, found


# ---------------------------------------------------------------- revenue


def invoice_lines(invoices: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest version of every invoice line with a usable amount and service period.

    A changed line (``open`` -> ``paid``/``uncollectible``) is a new row in a later delivery;
    the latest ``updated_at`` wins. ``period_end`` is exclusive (the next period's start).
    """
    invoices, dup = dedupe_exact(invoices, source="billing_invoices")
    lines = latest(invoices, ["invoice_line_id"], ["updated_at"])
    lines, bad_amount = screen_integers(lines, "amount", source="billing_invoices", key="invoice_line_id")
    lines = lines.assign(period_start=utc_day(lines["period_start"]), period_end=utc_day(lines["period_end"]))
    bad = (
        lines["period_start"].isna()
        | lines["period_end"].isna()
        | (lines["period_end"] <= lines["period_start"])
    )
    bad_period = findings(
        lines[bad],
        source="billing_invoices",
        key="invoice_line_id",
        reason="service period missing or empty (period_end must be after period_start)",
        action="quarantined",
        raw="period_start",
    )
    cols = ["invoice_line_id", "invoice_id", "customer_id", "subscription_id", "line_type", "amount",
            "currency", "period_start", "period_end", "status", "_partition"]  # fmt: skip
    return lines.loc[~bad, cols].reset_index(drop=True), concat_findings([dup, bad_amount, bad_period])


def service_days(lines: pd.DataFrame, start: pd.Timestamp, stop: pd.Timestamp) -> pd.DataFrame:
    """Each line's amount spread over its service days inside ``[start, stop)``: one row per day.

    Day ``d`` (0-based) of a line of ``a`` minor units over ``T`` days gets
    ``floor(a*(d+1)/T) - floor(a*d/T)``: whole minor units whose sum over any run of days
    telescopes, so a full line adds up to its amount and a month gets exactly Finance's split.
    """
    ps = lines["period_start"].to_numpy("datetime64[D]").astype(np.int64)
    pe = lines["period_end"].to_numpy("datetime64[D]").astype(np.int64)
    total = pe - ps
    w0, w1 = (np.datetime64(t.date(), "D").astype(np.int64) for t in (start, stop))
    lo = np.clip(w0 - ps, 0, total)
    hi = np.clip(w1 - ps, 0, total)
    n = np.maximum(hi - lo, 0)
    idx = np.repeat(np.arange(len(lines)), n)
    offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    a = lines["amount"].to_numpy(np.int64)[idx]
    t = total[idx]
    part = (a * (offset + 1)) // t - (a * offset) // t
    out = lines.iloc[idx][["invoice_line_id", "customer_id", "subscription_id", "currency", "status"]]
    out = out.reset_index(drop=True)
    out["day"] = (ps[idx] + offset).astype("datetime64[D]").astype("datetime64[ns]")
    out["amount_local"] = part.astype(np.int64)
    return out


def elapsed(stop: pd.Timestamp, as_of: dt.datetime) -> pd.Timestamp:
    """``stop`` or, if earlier, the start of ``as_of``'s day: revenue is recognised for days that
    have begun (a month-to-date run recognises the month so far; later days have no rate yet)."""
    return min(stop, pd.Timestamp(as_utc(as_of)).tz_convert(None).normalize())


def revenue_days(
    lines: pd.DataFrame,
    rates: pd.DataFrame,
    joins: JoinLog,
    start: pd.Timestamp,
    stop: pd.Timestamp,
    *,
    report: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Service days of every line in ``[start, stop)`` converted at each day's rate (``usd_micro``).

    All statuses are kept (``status`` tells them apart): recognised revenue is every line that is
    not ``uncollectible`` (written off); ``open`` lines (in dunning) are recognised and make the
    month provisional until they resolve. A day without a rate is left out and, when it falls in
    the ``report`` month (the one being published), its line is quarantined; neighbouring months
    are read only to explain timing differences.
    """
    days = service_days(lines, start, stop)
    converted, missing = convert(
        days, rates, joins, day="day", amount="amount_local", source="billing_invoices",
        key="invoice_line_id", name="invoice line days x fx_rates",
    )  # fmt: skip
    if report is not None and len(missing):
        first, month_stop = month_bounds(report)
        lost = days.loc[
            days.merge(rates, on=["day", "currency"], how="left")["rate_micros"].isna().to_numpy()
        ]
        keep = set(
            lost.loc[(lost["day"] >= first) & (lost["day"] < month_stop), "invoice_line_id"].astype(str)
        )
        missing = missing[missing["key_value"].isin(keep)]
    missing = missing.drop_duplicates(["key_value"]) if len(missing) else missing  # one finding per line
    converted["period"] = period_of(converted["day"])
    return converted, missing


# ---------------------------------------------------------------- costs


def payroll_costs(
    payroll: pd.DataFrame, rates: pd.DataFrame, joins: JoinLog
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Employer cost per employee and payroll month: gross pay + employer taxes + benefits."""
    payroll = payroll.assign(
        payroll_key=payroll["payroll_month"].astype(str) + "|" + payroll["employee_id"].astype(str)
    )
    payroll, dup = dedupe_exact(payroll, source="hr_payroll", key="payroll_key")
    rows = latest(payroll, KEYS["hr_payroll"])
    found = [dup]
    for col in ("gross_pay", "employer_taxes", "benefits"):
        rows, bad = screen_integers(rows, col, source="hr_payroll", key="payroll_key")
        found.append(bad)
    rows = rows.assign(
        cost_local=rows["gross_pay"] + rows["employer_taxes"] + rows["benefits"],
        day=utc_day(rows["pay_date"]),
        period=period_of(utc_day(rows["payroll_month"])),
    )
    converted, missing = convert(
        rows, rates, joins, day="day", amount="cost_local", source="hr_payroll", key="payroll_key",
        name="payroll x fx_rates",
    )  # fmt: skip
    return converted, concat_findings([*found, missing])


def provider_key(name: str) -> str:
    """Finance's subcategory for a FOCUS ``ProviderName`` (aws, azure, gcp, else a slug)."""
    slug = "".join(ch if ch.isalnum() else "_" for ch in str(name).lower()).strip("_")
    return PROVIDER_KEYS.get(name, slug)


def cloud_rows(cloud: pd.DataFrame, rates: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FOCUS charges with their billing period, provider key and exact USD cost (``cost``, Decimal).

    Every ``ChargeCategory`` is kept (Usage, Purchase, Tax, Credit, Adjustment): credits are
    negative and adjustments signed, as billed. A re-delivered bill replaces rows by ``Id``. A
    non-USD bill is converted at the rate of each charge's day.
    """
    if not len(cloud):
        empty = cloud.assign(
            period=pd.Series(dtype=object), provider_key=pd.Series(dtype=object), cost=pd.Series(dtype=object)
        )
        return empty, empty_findings()
    rows = latest(cloud, ["Id"])
    usable = rows["BilledCost"].map(
        lambda v: isinstance(v, Decimal) or (isinstance(v, (int, float)) and not pd.isna(v))
    )
    bad = findings(rows[~usable], source="cloud_costs", key="Id", reason="BilledCost is NULL or not a number",
                   action="quarantined", raw="BilledCost")  # fmt: skip
    rows = rows[usable].copy()
    rows["period"] = period_of(utc_day(rows["BillingPeriodStart"]))
    rows["provider_key"] = rows["ProviderName"].map(provider_key)
    rows["day"] = utc_day(rows["ChargePeriodStart"])
    foreign = rows["BillingCurrency"].fillna("USD") != "USD"
    rows["cost"] = rows["BilledCost"].map(lambda v: Decimal(str(v)))
    found = [bad]
    if foreign.any():
        rated = rows[foreign].merge(
            rates[["day", "currency", "rate_micros"]].rename(columns={"currency": "BillingCurrency"}),
            on=["day", "BillingCurrency"],
            how="left",
        )
        rated.index = rows.index[foreign]
        no_rate = rated["rate_micros"].isna()
        found.append(findings(rated[no_rate], source="cloud_costs", key="Id", action="quarantined",
                              reason="no FX rate for the billing currency on the charge day", raw="BilledCost"))  # fmt: skip
        rows.loc[rated.index[~no_rate], "cost"] = [
            c * Decimal(int(r)) / MICRO
            for c, r in zip(rated.loc[~no_rate, "cost"], rated.loc[~no_rate, "rate_micros"], strict=True)
        ]
        rows = rows.drop(index=rated.index[no_rate])
    return rows, concat_findings(found)


def _decimal_sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal(0))


def infrastructure_breakdown(rows: pd.DataFrame, period: str) -> pd.DataFrame:
    """Cost of ``period`` by provider, service and charge category, in cents and micro-dollars.

    Each provider's cents are its exact ``BilledCost`` total rounded half-even (Finance's line);
    the service rows split those cents by largest remainder, so they add up to it exactly.
    """
    cols = ["provider_key", "provider", "service", "charge_category", "cost_usd_cents", "cost_micros", "rows"]
    mine = rows[rows["period"] == period]
    if not len(mine):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    grouped = (
        mine.assign(service=mine["ServiceName"].fillna(""), charge_category=mine["ChargeCategory"].fillna(""))
        .groupby(["provider_key", "ProviderName", "service", "charge_category"], sort=True)
        .agg(cost=("cost", _decimal_sum), rows=("Id", "size"))
        .reset_index()
        .rename(columns={"ProviderName": "provider"})
    )
    cents = []
    for _, g in grouped.groupby("provider_key", sort=False):
        exact = [c * 100 for c in g["cost"]]
        total = int(_decimal_sum(exact).to_integral_value(ROUND_HALF_EVEN))
        cents.append(pd.Series(largest_remainder(exact, total), index=g.index))
    grouped["cost_usd_cents"] = pd.concat(cents).astype("int64")
    grouped["cost_micros"] = [int((c * MICRO).to_integral_value(ROUND_HALF_EVEN)) for c in grouped["cost"]]
    grouped["rows"] = grouped["rows"].astype("int64")
    return grouped[cols]


def expenses(ops: pd.DataFrame, rates: pd.DataFrame, joins: JoinLog) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Operations expenses (latest version each) attributed to the month incurred, in USD.

    Rows incurred outside the rate window (e.g. a date typed in the wrong year) keep
    ``usd_micro`` NA: they belong to no month this run computes and are reported by
    ``expense_flags``, not quarantined.
    """
    ops, dup = dedupe_exact(ops, source="ops_expenses")
    rows = latest(ops, ["expense_id"])
    rows, bad = screen_integers(rows, "amount", source="ops_expenses", key="expense_id")
    rows = rows.assign(
        incurred=utc_day(rows["incurred_date"]),
        submitted_at=pd.to_datetime(rows["submitted_at"], utc=True),
    )
    no_date = rows["incurred"].isna() | rows["submitted_at"].isna()
    bad_date = findings(rows[no_date], source="ops_expenses", key="expense_id", action="quarantined",
                        reason="incurred_date or submitted_at is NULL", raw="incurred_date")  # fmt: skip
    rows = rows[~no_date].assign(submitted=lambda f: utc_day(f["submitted_at"]))
    rows["period"] = period_of(rows["incurred"])
    in_window = (
        rows["incurred"].between(rates["day"].min(), rates["day"].max())
        if len(rates)
        else rows["incurred"].isna()
    )
    converted, missing = convert(
        rows[in_window].rename(columns={"incurred": "day"}), rates, joins, day="day", amount="amount",
        source="ops_expenses", key="expense_id", name="ops_expenses x fx_rates",
    )  # fmt: skip
    converted = converted.rename(columns={"day": "incurred"})
    outside = rows[~in_window]
    if len(outside):
        converted = pd.concat(
            [converted, outside.assign(rate_micros=pd.Series(pd.NA, index=outside.index, dtype="Int64"),
                                       usd_micro=pd.Series(pd.NA, index=outside.index, dtype="Int64"))],
            ignore_index=True,
        )  # fmt: skip
    return converted.reset_index(drop=True), concat_findings([dup, bad, bad_date, missing])


# ---------------------------------------------------------------- our ledger lines


LINE_COLUMNS = [
    "period",
    "category",
    "subcategory",
    "currency",
    "amount_local",
    "usd_micro",
    "usd_cents",
    "rows",
]


def ledger_lines(
    revenue: pd.DataFrame,
    payroll: pd.DataFrame,
    cloud: pd.DataFrame,
    ops: pd.DataFrame,
    periods: Sequence[str],
) -> pd.DataFrame:
    """Our P&L of ``periods`` at Finance's grain: (period, category, subcategory, currency).

    Revenue: recognised service days (not written off) per currency. Salaries: employer cost per
    department. Infrastructure: each provider's bill in its billing period. Operations: each
    category in the month incurred (whenever submitted). ``usd_cents`` is the line's micro-cents
    rounded half-even once, so category totals are sums of line cents, like Finance's.
    """
    parts = []
    rev = revenue[(revenue["status"] != "uncollectible") & revenue["period"].isin(periods)]
    require_complete(rev, ["amount_local", "usd_micro"], what="revenue")
    parts.append(
        rev.groupby(["period", "currency"], sort=True)
        .agg(
            amount_local=("amount_local", "sum"),
            usd_micro=("usd_micro", "sum"),
            rows=("invoice_line_id", "nunique"),
        )
        .reset_index()
        .assign(category="revenue", subcategory="subscriptions")
    )
    pay = payroll[payroll["period"].isin(periods)]
    require_complete(pay, ["cost_local", "usd_micro"], what="salaries")
    parts.append(
        pay.groupby(["period", "department", "currency"], sort=True)
        .agg(amount_local=("cost_local", "sum"), usd_micro=("usd_micro", "sum"), rows=("employee_id", "size"))
        .reset_index()
        .rename(columns={"department": "subcategory"})
        .assign(category="salaries")
    )
    infra = cloud[cloud["period"].isin(periods)]
    if len(infra):
        by_provider = (
            infra.groupby(["period", "provider_key"], sort=True)
            .agg(cost=("cost", _decimal_sum), rows=("Id", "size"))
            .reset_index()
        )
        cents = [int((c * 100).to_integral_value(ROUND_HALF_EVEN)) for c in by_provider["cost"]]
        parts.append(
            by_provider.assign(
                category="infrastructure",
                subcategory=by_provider["provider_key"],
                currency="USD",
                amount_local=cents,
                usd_micro=[c * MICRO for c in cents],
            ).drop(columns=["provider_key", "cost"])
        )
    # expenses dated outside the rate window (a mistyped year) have no USD; expense_flags reports them
    spent = ops[ops["period"].isin(periods) & ops["usd_micro"].notna()]
    require_complete(spent, ["amount", "usd_micro"], what="operations")
    parts.append(
        spent.groupby(["period", "category", "currency"], sort=True)
        .agg(amount_local=("amount", "sum"), usd_micro=("usd_micro", "sum"), rows=("expense_id", "size"))
        .reset_index()
        .rename(columns={"category": "subcategory"})
        .assign(category="operations")
    )
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LINE_COLUMNS})
    lines = pd.concat(frames, ignore_index=True)
    lines["amount_local"] = lines["amount_local"].astype("int64")
    lines["usd_micro"] = lines["usd_micro"].astype("int64")
    lines["usd_cents"] = to_cents(lines["usd_micro"].to_numpy())
    lines["rows"] = lines["rows"].astype("int64")
    return (
        lines[LINE_COLUMNS]
        .sort_values(["period", "category", "subcategory", "currency"])
        .reset_index(drop=True)
    )


def category_totals(lines: pd.DataFrame, period: str) -> dict[str, int]:
    """USD cents of ``period`` per category (revenue and every cost category, zeros included)."""
    mine = lines[lines["period"] == period]
    sums = mine.groupby("category")["usd_cents"].sum()
    return {c: int(sums.get(c, 0)) for c in ("revenue", *CATEGORIES)}


def cost_breakdown(lines: pd.DataFrame, infra: pd.DataFrame, period: str) -> pd.DataFrame:
    """``profit_costs_monthly`` rows: salaries by department, infrastructure by provider/service/
    charge category, operations by expense category (empty text where a level does not apply).

    Rows of a category add up to its total in ``profit_monthly`` exactly.
    """
    cols = [
        "category",
        "subcategory",
        "provider",
        "service",
        "charge_category",
        "cost_usd_cents",
        "cost_micros",
        "rows",
    ]
    mine = lines[(lines["period"] == period) & lines["category"].isin(["salaries", "operations"])]
    flat = (
        mine.groupby(["category", "subcategory"], sort=True)
        .agg(cost_usd_cents=("usd_cents", "sum"), rows=("rows", "sum"))
        .reset_index()
        .assign(provider="", service="", charge_category="")
    )
    flat["cost_micros"] = flat["cost_usd_cents"] * 10_000  # cents -> millionths of a dollar
    cloud = infra.rename(columns={"provider_key": "subcategory"}).assign(category="infrastructure")
    parts = [f[cols] for f in (flat, cloud) if len(f)]
    out = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    )
    for col in ("cost_usd_cents", "cost_micros", "rows"):
        out[col] = out[col].astype("int64")
    out.insert(0, "period", period)
    return out.sort_values(["category", "subcategory", "service", "charge_category"]).reset_index(drop=True)


# ---------------------------------------------------------------- completeness


def arrival_offsets(arrivals: Mapping[str, pd.DataFrame]) -> dict[str, pd.Timedelta]:
    """Each source's usual delay from partition day (midnight UTC) to arrival: the median."""
    out = {}
    for source, frame in arrivals.items():
        if len(frame):
            day = pd.to_datetime(frame["partition"]).dt.tz_localize("UTC")
            out[source] = (frame["arrived_at"] - day).median()
    return out


def daily_deliveries(
    arrivals: Mapping[str, pd.DataFrame], sources: Sequence[str], period: str, as_of: dt.datetime
) -> pd.DataFrame:
    """One row per daily source and day of ``period``: delivered by ``as_of``? rows, when, due when.

    ``due_at`` is the day plus the source's usual delay (its median); a day not delivered is
    *overdue* once ``as_of`` passes ``due_at``, *not yet due* before.
    """
    first, stop = month_bounds(period)
    days = pd.date_range(first, stop - pd.Timedelta(days=1), freq="D")
    offsets = arrival_offsets(arrivals)
    rows = []
    for source in sources:
        frame = arrivals.get(source, pd.DataFrame(columns=["partition", "rows", "arrived_at"]))
        got = frame.groupby("partition").agg(rows=("rows", "sum"), arrived_at=("arrived_at", "min"))
        later = frame["partition"].max() if len(frame) else None
        for day in days:
            label = day.date().isoformat()
            offset = offsets.get(source, pd.Timedelta(days=1))
            hit = label in got.index
            rows.append(
                dict(
                    source=source,
                    day=label,
                    delivered=hit,
                    rows=int(got.loc[label, "rows"]) if hit else 0,
                    arrived_at=got.loc[label, "arrived_at"] if hit else pd.NaT,
                    due_at=day.tz_localize("UTC") + offset,
                    later_delivered=bool(later is not None and later > label),
                )
            )
    out = pd.DataFrame(rows)
    if len(out):
        out["overdue"] = ~out["delivered"] & (out["due_at"] <= pd.Timestamp(as_utc(as_of)))
    return out


def ops_cutoff(period: str, calendar: Any, business_days: int) -> pd.Timestamp:
    """When a month's operations expenses are complete: the end (UTC) of Finance's close day, the
    ``business_days``-th business day of the next month. Later submissions are late."""
    y, m = (int(x) for x in period.split("-"))
    day = calendar.nth_business_day_after_month_end(y, m, business_days)
    return pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")


CLOUD_BILL_COLUMNS = (
    "provider_key",
    "provider",
    "arrived",
    "arrived_at",
    "due_at",
    "late",
    "overdue",
    "rows",
    "ids",
)


def cloud_bills(rows: pd.DataFrame, period: str, as_of: dt.datetime, settings: Any) -> pd.DataFrame:
    """The month's bill of every expected provider: arrived? when, due when, late, overdue, its Ids.

    Expected providers are ``cloud_providers`` from config, else every provider billed in the
    previous ``cloud_history_months`` months or in this one. A bill is due ``cloud_bill_due_days``
    after the month ends (00:00 UTC); one arriving after that is late, one missing then overdue.
    """
    first, stop = month_bounds(period)
    history = [shift_period(period, -k) for k in range(settings.cloud_history_months, -1, -1)]
    seen = rows[rows["period"].isin(history)]
    expected = list(settings.cloud_providers) or sorted(set(seen["provider_key"]))
    names = seen.groupby("provider_key")["ProviderName"].first().to_dict()
    due = pd.Timestamp(stop, tz="UTC") + pd.Timedelta(days=settings.cloud_bill_due_days)
    mine = rows[rows["period"] == period]
    out = []
    for key in expected:
        bill = mine[mine["provider_key"] == key]
        arrived = bill["_arrived_at"].max() if len(bill) else pd.NaT
        out.append(
            dict(
                provider_key=key,
                provider=names.get(key, key),
                arrived=bool(len(bill)),
                arrived_at=arrived,
                due_at=due,
                late=bool(len(bill)) and arrived > due,
                overdue=not len(bill) and pd.Timestamp(as_utc(as_of)) > due,
                rows=len(bill),
                ids=sorted(bill.loc[bill["_arrived_at"] > due, "Id"].astype(str)) if len(bill) else [],
            )
        )
    return pd.DataFrame(out, columns=list(CLOUD_BILL_COLUMNS))


def _day_ranges(days: Sequence[str]) -> str:
    """``2026-09-28..2026-09-30, 2026-10-02`` from sorted ISO days."""
    out: list[list[dt.date]] = []
    for text in sorted(days):
        d = dt.date.fromisoformat(text)
        if out and (d - out[-1][-1]).days == 1:
            out[-1].append(d)
        else:
            out.append([d])
    return ", ".join(r[0].isoformat() if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in out)


def provisional_reasons(
    period: str,
    as_of: dt.datetime,
    *,
    deliveries: pd.DataFrame,
    payroll_arrived: bool,
    bills: pd.DataFrame,
    cutoff: pd.Timestamp,
    open_lines: int,
    missing_renewals: int,
    quarantined: int,
) -> list[str]:
    """Why ``period`` is not final yet (empty list: final). One plain sentence per reason."""
    first, stop = month_bounds(period)
    as_of_ts = pd.Timestamp(as_utc(as_of))
    reasons = []
    if as_of_ts < pd.Timestamp(stop, tz="UTC"):
        reasons.append(f"month in progress: as_of {as_of_ts:%Y-%m-%d %H:%M}Z is before the month ends")
    for source, g in deliveries.groupby("source", sort=True) if len(deliveries) else ():
        missing = g.loc[~g["delivered"], "day"].tolist()
        if missing:
            reasons.append(
                f"{source}: {len(missing)} of {len(g)} daily deliveries not arrived ({_day_ranges(missing)})"
            )
    if not payroll_arrived:
        reasons.append(f"hr_payroll: payroll for {period} not delivered")
    for bill in bills.itertuples():
        if not bill.arrived:
            reasons.append(
                f"cloud_costs: {bill.provider}'s bill for {period} not arrived (due {bill.due_at:%Y-%m-%d})"
            )
    if as_of_ts < cutoff:
        reasons.append(
            f"ops_expenses: submissions for {period} open until Finance's close ({cutoff - pd.Timedelta(days=1):%Y-%m-%d})"
        )
    if open_lines:
        reasons.append(
            f"billing_invoices: {open_lines} invoice line(s) with service in {period} still in dunning (open)"
        )
    if missing_renewals:
        reasons.append(
            f"billing: {missing_renewals} expected renewal(s) have no invoice line (missing_subscription_data)"
        )
    if quarantined:
        reasons.append(f"{quarantined} row(s) quarantined: the figures exclude them (math_errors)")
    return reasons


# ---------------------------------------------------------------- billing gaps


def subscription_events(subs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Usable subscription events (latest delivery of each ``event_id``), in time order.

    An in-use event (trialing/active/past_due) with no seats is quarantined: seats are the
    denominator of per-seat figures and the infrastructure allocation (the previous state of the
    subscription carries on in its place).
    """
    subs, dup = dedupe_exact(subs, source="subscriptions")
    events = latest(subs, ["event_id"])
    events, bad_qty = screen_integers(events, "item_quantity", source="subscriptions", key="event_id")
    zero = events["status"].isin(ACTIVE_STATUSES) & (events["item_quantity"] <= 0)
    bad_zero = findings(events[zero], source="subscriptions", key="event_id", action="quarantined",
                        reason="subscription in use with 0 seats (a zero denominator)", raw="item_quantity")  # fmt: skip
    events = events[~zero].assign(
        event_at=pd.to_datetime(events.loc[~zero, "event_at"], utc=True),
        current_period_end=pd.to_datetime(events.loc[~zero, "current_period_end"], utc=True),
        current_period_start=pd.to_datetime(events.loc[~zero, "current_period_start"], utc=True),
        cancel_at=pd.to_datetime(events.loc[~zero, "cancel_at"], utc=True),
    )
    events = events.sort_values(["subscription_id", "event_at", "_partition"], kind="stable").reset_index(
        drop=True
    )
    return events, concat_findings([dup, bad_qty, bad_zero])


def expected_renewals(
    events: pd.DataFrame, lines: pd.DataFrame, deliveries: pd.DataFrame, period: str
) -> pd.DataFrame:
    """Renewals due on each delivered day of ``period`` and whether billing shows them.

    A renewal is expected on day D when a subscription's latest known state before D is paying
    (active/past_due), its current period ends on D and it is not set to cancel by then. It is
    *invoiced* when an invoice line of that subscription starts on D, *renewed* when an event
    starts the next period on D. Only days whose ``billing_invoices`` delivery arrived are judged
    (an undelivered day is a delivery problem, reported as such).
    """
    cols = ["day", "subscription_id", "customer_id", "currency", "expected_amount", "invoiced", "renewed"]
    if not len(events):
        return pd.DataFrame(columns=cols)
    first, stop = month_bounds(period)
    ev = events.assign(next_event_at=events.groupby("subscription_id")["event_at"].shift(-1))
    end_day = ev["current_period_end"].dt.tz_convert(None).dt.normalize()
    due_start = end_day.dt.tz_localize("UTC")
    state_before = ev["next_event_at"].isna() | (ev["next_event_at"] >= due_start)
    cancelling = ev["cancel_at"].notna() & (ev["cancel_at"] <= ev["current_period_end"])
    mask = (
        ev["status"].isin(PAYING_STATUSES) & ~cancelling & state_before & (end_day >= first) & (end_day < stop)
        & (ev["event_at"] < due_start)
    )  # fmt: skip
    due = ev[mask].assign(day=end_day[mask])
    delivered = set(
        deliveries.loc[(deliveries["source"] == "billing_invoices") & deliveries["delivered"], "day"]
    )
    due = due[due["day"].dt.strftime("%Y-%m-%d").isin(delivered)]
    starts = set(zip(lines["subscription_id"], lines["period_start"], strict=True))
    renew_days = events["current_period_start"].dt.tz_convert(None).dt.normalize()
    renewed = set(zip(events["subscription_id"], renew_days, strict=True))
    out = due.assign(
        expected_amount=due["item_quantity"].astype("int64")
        * pd.to_numeric(due["item_unit_amount"], errors="coerce").fillna(0).astype("int64"),
        invoiced=[(s, d) in starts for s, d in zip(due["subscription_id"], due["day"], strict=True)],
        renewed=[(s, d) in renewed for s, d in zip(due["subscription_id"], due["day"], strict=True)],
    )
    out["day"] = out["day"].dt.strftime("%Y-%m-%d")
    return out[cols].sort_values(["day", "subscription_id"]).reset_index(drop=True)


# ---------------------------------------------------------------- expenses in the wrong month


FLAG_COLUMNS = [
    "kind",
    "id",
    "provider_or_category",
    "incurred_date",
    "submitted_at",
    "amount",
    "currency",
    "detail",
]


def expense_flags(
    ops: pd.DataFrame, bills: pd.DataFrame, period: str, as_of: dt.datetime, settings: Any
) -> pd.DataFrame:
    """Costs that land in (or leave) the wrong month, for ``period``:

    - ``late_submission``: incurred in the month, or submitted in it, more than
      ``late_submission_days`` after being incurred (it changes a month already closed);
    - ``implausible_date``: incurred after it was submitted, or more than ``implausible_lag_days``
      before (a date typed wrong: the cost lands in a month nobody is looking at);
    - ``outlier``: an amount (USD) more than ``outlier_factor`` times above or below the median of
      its category over the month and the ``outlier_lookback_months`` before (a fat finger);
    - ``cloud_bill_late`` / ``cloud_bill_overdue``: a provider's bill arrived after its due day,
      or is still missing after it (one row per late charge ``Id``, or per missing bill).
    """
    first, stop = month_bounds(period)
    lag = (ops["submitted"] - ops["incurred"]).dt.days
    mine = (ops["incurred"] >= first) & (ops["incurred"] < stop)
    submitted_here = (ops["submitted"] >= first) & (ops["submitted"] < stop)
    relevant = mine | submitted_here
    implausible = relevant & ((lag < 0) | (lag > settings.implausible_lag_days))
    late = relevant & ~implausible & (lag > settings.late_submission_days)
    lookback = month_bounds(shift_period(period, -settings.outlier_lookback_months))[0]
    base = ops[(ops["incurred"] >= lookback) & (ops["incurred"] < stop) & ops["usd_micro"].notna()]
    base = base.assign(usd=base["usd_micro"].astype(float) / MICRO / 100)
    medians = base.groupby("category")["usd"].agg(["median", "size"])
    cand = base[(base["incurred"] >= first) & (base["incurred"] < stop)].join(medians, on="category")
    cand = cand[(cand["size"] >= settings.outlier_min_rows) & (cand["median"] > 0)]
    factor = cand["usd"] / cand["median"]
    outliers = cand[(factor > settings.outlier_factor) | (factor < 1 / settings.outlier_factor)]

    def rows(frame: pd.DataFrame, kind: str, detail: pd.Series) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "kind": kind,
                "id": frame["expense_id"].astype(str),
                "provider_or_category": frame["category"].astype(str),
                "incurred_date": frame["incurred"].dt.strftime("%Y-%m-%d"),
                "submitted_at": frame["submitted_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "amount": frame["amount"].astype("int64"),
                "currency": frame["currency"].astype(str),
                "detail": detail.astype(str),
            }
        )

    parts = [
        rows(ops[late], "late_submission", "submitted " + lag[late].astype(str) + f" days after incurred (> {settings.late_submission_days})"),
        rows(ops[implausible], "implausible_date", "incurred date is " + lag[implausible].astype(str) + " days from its submission: likely mistyped"),
        rows(outliers, "outlier", (factor[outliers.index]).round(1).astype(str) + "x the category median of $" + cand.loc[outliers.index, "median"].round(2).astype(str)),
    ]  # fmt: skip
    for bill in bills.itertuples():
        if bill.late:
            parts.append(pd.DataFrame({
                "kind": "cloud_bill_late", "id": bill.ids, "provider_or_category": bill.provider,
                "incurred_date": period, "submitted_at": f"{bill.arrived_at:%Y-%m-%dT%H:%M:%SZ}", "amount": None,
                "currency": "USD", "detail": f"bill arrived {bill.arrived_at:%Y-%m-%d}, due {bill.due_at:%Y-%m-%d}",
            }))  # fmt: skip
        elif bill.overdue:
            parts.append(pd.DataFrame([{
                "kind": "cloud_bill_overdue", "id": f"{bill.provider_key}:{period}", "provider_or_category": bill.provider,
                "incurred_date": period, "submitted_at": None, "amount": None, "currency": "USD",
                "detail": f"bill not arrived as of {pd.Timestamp(as_utc(as_of)):%Y-%m-%d}, due {bill.due_at:%Y-%m-%d}",
            }]))  # fmt: skip
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    return (
        pd.concat(frames, ignore_index=True)[FLAG_COLUMNS].sort_values(["kind", "id"]).reset_index(drop=True)
    )


# ---------------------------------------------------------------- staleness


def source_staleness(
    arrivals: Mapping[str, pd.DataFrame], sources: Sequence[str], period: str, as_of: dt.datetime
) -> pd.DataFrame:
    """How stale each daily source is *for this period*.

    ``due_day`` is the period's last day whose delivery was due by ``as_of`` (its day plus the
    source's usual delay, the median); ``reference_at`` is that delivery's due time. The source's
    ``last_arrival`` is its latest delivery of a day up to ``due_day``. The age ``reference_at -
    last_arrival`` is ~0 for a source that delivered everything due and grows from the moment
    it stopped (judged by ``monitors.freshness_outcome``); ``trailing_missing`` lists the days
    after its last delivery. A gap followed by later deliveries is not staleness (it is a
    missing delivery), and a source that stopped after the period is not stale for it.
    """
    first, stop = month_bounds(period)
    first_utc = pd.Timestamp(first, tz="UTC")
    offsets = arrival_offsets(arrivals)
    as_of_ts = pd.Timestamp(as_utc(as_of))
    rows = []
    for source in sources:
        frame = arrivals.get(source)
        offset = offsets.get(source)
        row: dict[str, Any] = dict(
            source=source, due_day=None, last_partition=None, last_arrival=pd.NaT, reference_at=pd.NaT,
            trailing_missing=[],
        )  # fmt: skip
        if frame is None or offset is None:
            rows.append(row)
            continue
        due_day = min(pd.Timestamp(stop - pd.Timedelta(days=1), tz="UTC"), (as_of_ts - offset).floor("D"))
        if due_day < first_utc:
            rows.append(row)  # nothing of the period was due yet
            continue
        label = due_day.date().isoformat()
        upto = frame[frame["partition"] <= label]
        last = upto["partition"].max() if len(upto) else None
        start = pd.Timestamp(last, tz="UTC") + pd.Timedelta(days=1) if last else first_utc
        row.update(
            due_day=label,
            last_partition=last,
            last_arrival=upto["arrived_at"].max() if len(upto) else pd.NaT,
            reference_at=due_day + offset,
            trailing_missing=[
                d.date().isoformat() for d in pd.date_range(max(start, first_utc), due_day, freq="D")
            ],
        )
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the aggregate row


def profit_row(
    totals: Mapping[str, int],
    *,
    period: str,
    reasons: Sequence[str],
    customers: int,
    open_lines: int,
    written_off_cents: int,
    quarantined: int,
    reconciliation_status: str,
    finance_difference_cents: int | None,
    as_of: dt.datetime,
    run_id: str,
) -> pd.DataFrame:
    """The ``profit_monthly`` row of ``period``: revenue, costs by category, profit and margin.

    ``margin`` is profit / revenue; with no (or negative) revenue it is NULL and
    ``margin_null_reason`` says why.
    """
    revenue = int(totals["revenue"])
    costs = {c: int(totals[c]) for c in CATEGORIES}
    total_cost = sum(costs.values())
    profit = revenue - total_cost
    margin, why = ratio(profit, revenue, what="margin = profit / revenue") if revenue > 0 else (
        None, "margin = profit / revenue: zero denominator" if revenue == 0 else "margin = profit / revenue: revenue is negative"
    )  # fmt: skip
    row = {
        "period": period,
        "revenue_usd_cents": revenue,
        **{f"{c}_usd_cents": v for c, v in costs.items()},
        "total_cost_usd_cents": total_cost,
        "profit_usd_cents": profit,
        "margin": margin,
        "margin_null_reason": why,
        "status": "provisional" if reasons else "final",
        "provisional_reasons": "; ".join(reasons),
        "customers": int(customers),
        "open_lines": int(open_lines),
        "written_off_usd_cents": int(written_off_cents),
        "quarantined_rows": int(quarantined),
        "reconciliation_status": reconciliation_status,
        "finance_difference_usd_cents": finance_difference_cents,
        "as_of": pd.Timestamp(as_utc(as_of)).tz_convert(None),
        "run_id": run_id,
    }
    frame = pd.DataFrame([row])
    frame["margin"] = frame["margin"].astype("float64")
    frame["finance_difference_usd_cents"] = frame["finance_difference_usd_cents"].astype("Int64")
    return frame


def headline(profit: pd.DataFrame) -> dict[str, Any]:
    """The figures the notebook glues (names the investor aggregate reads: keep them)."""
    row = profit.iloc[0]
    margin = row["margin"]
    return {
        "period": str(row["period"]),
        "status": str(row["status"]),
        "provisional_reasons": [r for r in str(row["provisional_reasons"]).split("; ") if r],
        "revenue_usd_cents": int(row["revenue_usd_cents"]),
        "costs_usd_cents": {c: int(row[f"{c}_usd_cents"]) for c in CATEGORIES},
        "total_cost_usd_cents": int(row["total_cost_usd_cents"]),
        "profit_usd_cents": int(row["profit_usd_cents"]),
        "margin": None if pd.isna(margin) else float(margin),
        "reconciliation_status": str(row["reconciliation_status"]),
        "quarantined_rows": int(row["quarantined_rows"]),
    }


def stamp(frame: pd.DataFrame, *, period: str, as_of: dt.datetime, run_id: str) -> pd.DataFrame:
    """``frame`` with the partition column first and provenance (``as_of``, ``run_id``) last."""
    out = frame.drop(columns=[c for c in ("period", "as_of", "run_id") if c in frame.columns])
    out.insert(0, "period", period)
    out["as_of"] = pd.Timestamp(as_utc(as_of)).tz_convert(None)
    out["run_id"] = run_id
    return out.reset_index(drop=True)


# ---------------------------------------------------------------- unit level


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


def customers_dimension(customers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per billing customer (latest version) with its product ``account_id``."""
    customers, dup = dedupe_exact(customers, source="billing_customers")
    dim = latest(customers, ["customer_id"])[["customer_id", "account_id"]]
    return dim.reset_index(drop=True), dup


def account_of(
    frame: pd.DataFrame, dim: pd.DataFrame, joins: JoinLog, *, name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` with the ``account_id`` of its ``customer_id``; an unknown customer keeps its
    money under ``unmapped:<customer_id>`` (reported, never dropped)."""
    out = joins.merge(frame, dim, on="customer_id", name=name)
    unmapped = out["account_id"].isna()
    found = findings(
        out[unmapped].drop_duplicates("customer_id").assign(_partition=""),
        source="billing_customers",
        key="customer_id",
        reason="customer has no billing_customers row (no product account): kept as unmapped",
        action="coerced",
    )
    out.loc[unmapped, "account_id"] = "unmapped:" + out.loc[unmapped, "customer_id"].astype(str)
    return out, found


def account_revenue(days: pd.DataFrame, period: str, total_cents: int) -> pd.DataFrame:
    """Recognised revenue of ``period`` per account; cents split by largest remainder so the
    accounts add up to the published revenue ``total_cents`` exactly."""
    rev = days[(days["period"] == period) & (days["status"] != "uncollectible")]
    require_complete(rev, ["usd_micro"], what="account revenue")
    by = rev.groupby("account_id", sort=True)["usd_micro"].sum()

    cents = (
        largest_remainder([Fraction(int(v), MICRO) for v in by], total_cents)
        if len(by)
        else np.zeros(0, np.int64)
    )
    return pd.DataFrame({"account_id": by.index.astype(str), "revenue_usd_cents": cents})


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
        frame[f"{pool}_usd_cents"] = allocate(int(cents), keys[rule])
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


def assignments_of(assignments: pd.DataFrame, before: pd.Timestamp) -> pd.DataFrame:
    """Each account's arm per experiment (latest assignment made before ``before``)."""
    a = latest(assignments, KEYS["experiment_assignments"], ["assigned_at"])
    a = a[pd.to_datetime(a["assigned_at"], utc=True) < pd.Timestamp(before, tz="UTC")]
    return a[["account_id", "experiment", "arm"]].reset_index(drop=True)


def arms_label(unit: pd.DataFrame, arms: pd.DataFrame) -> pd.Series:
    """``experiment=arm; ...`` per account of ``unit`` (empty text when in no experiment)."""
    text = (
        (arms["experiment"] + "=" + arms["arm"])
        .groupby(arms["account_id"])
        .agg(lambda s: "; ".join(sorted(s)))
    )
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


def relevant_findings(found: pd.DataFrame, inputs: ProfitInputs) -> pd.DataFrame:
    """The findings that concern ``inputs.period``: delivered in the month, or (an invoice line)
    serving it, or (an expense) incurred in it. A run reads neighbouring months too; their
    problems belong to their own runs."""
    if not len(found):
        return found
    first, stop = month_bounds(inputs.period)
    in_month = pd.to_datetime(found["delivery_partition"], errors="coerce").between(
        first, stop - pd.Timedelta(days=1)
    )
    inv = inputs.frames.get("billing_invoices")
    serving: set[str] = set()
    if inv is not None and len(inv):
        ps, pe = utc_day(inv["period_start"]), utc_day(inv["period_end"])
        serving = set(inv.loc[(ps < stop) & (pe > first), "invoice_line_id"].astype(str))
    ops = inputs.frames.get("ops_expenses")
    incurred: set[str] = set()
    if ops is not None and len(ops):
        day = utc_day(ops["incurred_date"])
        incurred = set(ops.loc[(day >= first) & (day < stop), "expense_id"].astype(str))
    keyed = ((found["source"] == "billing_invoices") & found["key_value"].isin(serving)) | (
        (found["source"] == "ops_expenses") & found["key_value"].isin(incurred)
    )
    return found[in_month | keyed].reset_index(drop=True)


@dataclass
class Aggregate:
    """Everything one ``profit_aggregate`` run computes for its period (see ``build_aggregate``)."""

    period: str
    rates: pd.DataFrame
    revenue: pd.DataFrame  # service days of every invoice line, converted
    lines: pd.DataFrame  # our P&L lines of the period and its neighbours
    payroll: pd.DataFrame
    cloud: pd.DataFrame
    ops: pd.DataFrame
    events: pd.DataFrame
    deliveries: pd.DataFrame
    bills: pd.DataFrame
    renewals: pd.DataFrame
    flags: pd.DataFrame
    staleness: pd.DataFrame
    findings: pd.DataFrame
    joins: JoinLog
    reasons: list[str]
    totals: dict[str, int]
    costs: pd.DataFrame
    reconciliation: pd.DataFrame
    recon: dict[str, Any]
    profit: pd.DataFrame


def build_aggregate(inputs: ProfitInputs, *, settings: Any, calendar: Any, run_id: str) -> Aggregate:
    """Revenue, costs, profit, completeness and the Finance reconciliation of ``inputs.period``."""
    from helpers.profit import reconcile  # it builds on this module

    period, as_of = inputs.period, inputs.as_of
    periods = periods_around(period)
    window = (month_bounds(periods[0])[0], month_bounds(periods[-1])[1])
    rate_start = month_bounds(shift_period(period, -settings.outlier_lookback_months - 1))[0]
    joins = JoinLog()
    rates = daily_rates(inputs["fx_rates"], rate_start, window[1], max_gap_days=settings.fx_max_gap_days)
    lines, f_lines = invoice_lines(inputs["billing_invoices"])
    revenue, f_rev = revenue_days(lines, rates, joins, window[0], elapsed(window[1], as_of), report=period)
    payroll, f_pay = payroll_costs(inputs["hr_payroll"], rates, joins)
    cloud, f_cloud = cloud_rows(inputs["cloud_costs"], rates)
    ops, f_ops = expenses(inputs["ops_expenses"], rates, joins)
    events, f_subs = subscription_events(inputs["subscriptions"])
    dim, f_cust = customers_dimension(inputs["billing_customers"])
    this_month = revenue[(revenue["period"] == period) & (revenue["status"] != "uncollectible")]
    with_accounts, f_unmapped = account_of(this_month, dim, joins, name="revenue days x billing_customers")
    ours = ledger_lines(revenue, payroll, cloud, ops, periods)
    totals = category_totals(ours, period)
    costs = cost_breakdown(ours, infrastructure_breakdown(cloud, period), period)
    deliveries = daily_deliveries(inputs.arrivals, DAILY_SOURCES, period, as_of)
    bills = cloud_bills(cloud, period, as_of, settings)
    # a line that exists but was quarantined (say, a NULL amount) still shows the renewal was billed
    billed = inputs["billing_invoices"].assign(
        period_start=utc_day(inputs["billing_invoices"]["period_start"])
    )
    renewals = expected_renewals(events, billed, deliveries, period)
    cutoffs = {
        p: ops_cutoff(p, calendar, settings.ops_cutoff_business_days)
        for p in (shift_period(period, k) for k in range(-3, 2))
    }
    found = relevant_findings(
        concat_findings([f_lines, f_rev, f_pay, f_cloud, f_ops, f_subs, f_cust, f_unmapped]), inputs
    )
    month = revenue[revenue["period"] == period]
    open_lines = int(month.loc[month["status"] == "open", "invoice_line_id"].nunique())
    written_off = int(to_cents(int(month.loc[month["status"] == "uncollectible", "usd_micro"].sum())))
    reasons = provisional_reasons(
        period, as_of, deliveries=deliveries,
        payroll_arrived=bool((period_of(utc_day(inputs["hr_payroll"]["payroll_month"])) == period).any()),
        bills=bills, cutoff=cutoffs[period], open_lines=open_lines,
        missing_renewals=int((~renewals["invoiced"]).sum()) if len(renewals) else 0,
        quarantined=int((found["action"] == "quarantined").sum()),
    )  # fmt: skip
    evidence, recon = reconcile.reconcile(
        ours, inputs["finance_ledger"], ops, revenue, rates, cutoffs, period, settings
    )
    row = profit_row(
        totals, period=period, reasons=reasons, customers=int(with_accounts["account_id"].nunique()),
        open_lines=open_lines, written_off_cents=written_off, quarantined=int((found["action"] == "quarantined").sum()),
        reconciliation_status=recon["status"], finance_difference_cents=recon.get("finance_profit_difference_usd_cents"),
        as_of=as_of, run_id=run_id,
    )  # fmt: skip
    return Aggregate(
        period, rates, revenue, ours, payroll, cloud, ops, events, deliveries, bills, renewals,
        expense_flags(ops, bills, period, as_of, settings), source_staleness(inputs.arrivals, DAILY_SOURCES, period, as_of),
        found, joins, reasons, totals, costs, evidence, recon, row,
    )  # fmt: skip


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
    days, f_unmapped = account_of(days, dim, joins, name="revenue days x billing_customers")
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


# ---------------------------------------------------------------- marts (the I/O edge)

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


def waterfall_steps(profit: pd.DataFrame) -> list[tuple[str, float]]:
    """Revenue, each cost category (negative) and profit in dollars, for ``charts.waterfall``."""
    row = profit.iloc[0]
    costs = [(c, -row[f"{c}_usd_cents"] / 100) for c in CATEGORIES]
    return [("revenue", row["revenue_usd_cents"] / 100), *costs, ("profit", row["profit_usd_cents"] / 100)]


def dollars(cents: Any) -> str:
    """``$1,234.56`` (``-$12.00``) for integer cents; ``NULL`` for a missing value."""
    if cents is None or pd.isna(cents):
        return "NULL"
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(int(cents)) / 100:,.2f}"


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

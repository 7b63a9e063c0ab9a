"""What a Profit run reads, and what it cannot use: sources, screening, findings and joins.

:func:`load_inputs` is the only I/O of the Profit computation: it reads the landing zone as of a
moment. A row that cannot be used is never dropped silently: screening returns it as a *finding*
(source, key, reason, action ``quarantined`` / ``coerced`` / ``deduplicated``), which the notebook
writes to a quarantine mart and counts. Every join asserts its row count (:class:`JoinLog`): a
dimension with a duplicated key would otherwise fan the fact rows out and double the money. A
ratio with a zero denominator is a NULL with a recorded reason (:func:`ratio`), never an exception
or an infinity; a sum never silently skips a NULL (:func:`require_complete`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.periods import month_bounds, shift_period
from helpers.core.timeutil import as_utc
from helpers.storage import contracts, landing
from helpers.storage.bulkread import read_verified_bulk
from helpers.storage.quarantine import QuarantinedRow
from helpers.storage.verified import LandingReport

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


# ---------------------------------------------------------------- days, ratios and NULL guards


def utc_day(values: pd.Series) -> pd.Series:
    """Dates, or timestamps (aware or naive UTC), as naive midnight datetimes (NaT stays NaT)."""
    out = pd.to_datetime(values, errors="coerce", utc=True)
    return out.dt.tz_convert(None).dt.normalize()


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
    # an unchanged copy repeats its key: only rows whose key's text repeats are compared whole
    # (as text, column by column), which finds the same copies as comparing every row
    flags = np.zeros(len(ordered), dtype=bool)
    maybe = ordered[key].astype(str).duplicated(keep=False).to_numpy() if key in data_cols else ~flags
    if maybe.any():
        flags[maybe] = ordered[maybe][data_cols].astype(str).duplicated(keep="first").to_numpy()
    dup = pd.Series(flags, index=ordered.index)
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
        self,
        left: pd.DataFrame,
        right: pd.DataFrame,
        *,
        on: str | list[str],
        name: str,
        counts: str | None = None,
    ) -> pd.DataFrame:
        """``left`` LEFT JOIN ``right``; raises :class:`JoinFanOut` if the row count changes.

        ``counts`` names a column of ``left`` holding how many fact rows each row stands for (a
        fact table summed to a coarser grain): the record counts those rows, as the join of the
        fine-grained table would."""
        keys = [on] if isinstance(on, str) else list(on)
        duplicated = right[right.duplicated(keys, keep=False)][keys].drop_duplicates()
        result = left.merge(right, on=keys, how="left")
        self.record(
            name,
            left_rows=int(left[counts].sum()) if counts else len(left),
            right_rows=len(right),
            result_rows=int(result[counts].sum()) if counts else len(result),
            right_duplicate_keys=len(duplicated),
        )
        if len(result) != len(left):
            sample = duplicated.head(5).to_dict("records")
            raise JoinFanOut(
                f"join {name}: {len(left)} rows became {len(result)}; duplicate keys on the right, e.g. {sample}"
            )
        return result

    def record(
        self, name: str, *, left_rows: int, right_rows: int, result_rows: int, right_duplicate_keys: int
    ) -> None:
        """Log a join done elsewhere (in pieces, say) with its totals."""
        self.rows.append(
            dict(
                join=name,
                left_rows=left_rows,
                right_rows=right_rows,
                result_rows=result_rows,
                right_duplicate_keys=right_duplicate_keys,
            )
        )

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
    landing: LandingReport = field(default_factory=LandingReport)  # what verified reads left out

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
    quarantine_root: Path | None = None,
) -> ProfitInputs:
    """Read what had arrived by ``as_of`` (rows and manifests) for a run of ``period``.

    Every delivery is verified on read (:func:`helpers.storage.verified.read_verified`, in one
    DuckDB scan of a source's files where they share a schema: :mod:`helpers.storage.bulkread`): a file
    changed after arrival or lacking a contract column is left out whole, a value that is not of
    its contract type leaves its row out; ``ProfitInputs.landing`` lists them, and they are
    appended to the quarantine zone (``quarantine_root``; the workbook's when reading the
    workbook's landing zone, nowhere for another ``root`` without one).

    ``billing_payments`` is verified and screened but its rows are not used: payments are cash, not
    revenue (refunds are booked through their credit-note lines); its daily deliveries count for
    completeness.
    """
    as_of = as_utc(as_of)
    windows = read_windows(period, settings)
    frames, report = {}, LandingReport()
    for source in sources:
        start = windows.get(source, windows["billing_invoices"] if source == "billing_payments" else None)
        got = read_verified_bulk(source, as_of=as_of, start=start, root=root)
        report.extend(got.report)
        frames[source] = ensure_columns(got.frame, source)
    if root is None or quarantine_root is not None:
        report.write(quarantine_root)
    arrivals = {s: landing.arrivals(s, root=root, as_of=as_of) for s in sources}
    return ProfitInputs(period, as_of, frames, arrivals, report)


def landing_findings(report: LandingReport) -> pd.DataFrame:
    """The rows verified reads quarantined (a value not of its contract type), as findings naming
    the file, the row and the field."""
    rows = [_finding(q) for q in report.quarantined]
    return pd.DataFrame(rows, columns=FINDING_COLUMNS) if rows else empty_findings()


def _finding(q: QuarantinedRow) -> dict[str, Any]:
    spec = contracts.SOURCES.get(q.source)
    key = KEYS[q.source][0] if q.source in KEYS else spec.key if spec is not None else "row"
    raw = q.raw if isinstance(q.raw, dict) else {}
    return dict(
        source=q.source,
        key_column=key,
        key_value=str(raw.get(key, q.line)),
        delivery_partition=Path(q.file).parent.name.removeprefix("dt="),
        reason=f"{q.file} {q.reason} (field {q.field})",
        action="quarantined",
        raw="NULL" if raw.get(q.field) is None else str(raw.get(q.field)),
    )


# ---------------------------------------------------------------- the findings of a month


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

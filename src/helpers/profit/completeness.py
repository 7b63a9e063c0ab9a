"""Completeness: which deliveries and cloud bills a month still lacks, how stale each source is for
it, and why the month is provisional.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from helpers.core.periods import month_bounds, shift_period
from helpers.core.timeutil import as_utc

# ---------------------------------------------------------------- deliveries and bills


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
    landing: Sequence[str] = (),
) -> list[str]:
    """Why ``period`` is not final yet (empty list: final). One plain sentence per reason.

    ``landing``: the deliveries the verified read left out whole (a file changed after arrival, a
    contract column missing), one reason each (``LandingReport.rejected``).
    """
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
    reasons += [f"delivery quarantined, the figures exclude it: {r}" for r in landing]
    return reasons


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

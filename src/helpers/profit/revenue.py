"""Revenue: invoice lines recognised over their service days, subscriptions, expected renewals
(the billing gaps) and the customers' product accounts.

Money is integer minor units; a line's amount is spread over its service days so that any run of
days adds up exactly (Finance's split).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from helpers.core.periods import month_bounds, period_of
from helpers.core.timeutil import naive_utc
from helpers.profit.fx import convert
from helpers.profit.inputs import (
    JoinLog,
    concat_findings,
    dedupe_exact,
    findings,
    latest,
    screen_integers,
    utc_day,
)

ACTIVE_STATUSES = ("trialing", "active", "past_due")  # the subscription is in use (seats count)
PAYING_STATUSES = ("active", "past_due")  # a renewal is due at the period end


# ---------------------------------------------------------------- recognition


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
    return _expand(lines, start, stop)[0]


def _expand(lines: pd.DataFrame, start: pd.Timestamp, stop: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`service_days` and, per day row, the position of its line in ``lines``."""
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
    out = lines[["invoice_line_id", "customer_id", "subscription_id", "currency", "status"]].iloc[idx]
    out = out.reset_index(drop=True)
    out["day"] = (ps[idx] + offset).astype("datetime64[D]").astype("datetime64[ns]")
    out["amount_local"] = part.astype(np.int64)
    return out, idx


def elapsed(stop: pd.Timestamp, as_of: dt.datetime) -> pd.Timestamp:
    """``stop`` or, if earlier, the start of ``as_of``'s day: revenue is recognised for days that
    have begun (a month-to-date run recognises the month so far; later days have no rate yet)."""
    return min(stop, pd.Timestamp(naive_utc(as_of)).normalize())


LINES_PER_CHUNK = 20_000  # invoice lines expanded to service days at a time (~1.9M day rows at most)
GRAIN = ["invoice_line_id", "customer_id", "subscription_id", "currency", "status", "period"]


def revenue_days(
    lines: pd.DataFrame,
    rates: pd.DataFrame,
    joins: JoinLog,
    start: pd.Timestamp,
    stop: pd.Timestamp,
    *,
    report: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Service days of every line in ``[start, stop)`` converted at each day's rate, summed per
    line and month: ``amount_local``, ``usd_micro`` and ``days`` (the service days it sums).

    All statuses are kept (``status`` tells them apart): recognised revenue is every line that is
    not ``uncollectible`` (written off); ``open`` lines (in dunning) are recognised and make the
    month provisional until they resolve. A day without a rate is left out and, when it falls in
    the ``report`` month (the one being published), its line is quarantined; neighbouring months
    are read only to explain timing differences.

    The days are expanded :data:`LINES_PER_CHUNK` lines at a time and summed at once, so memory
    stays bounded however many accounts there are; the join log records the day rows joined
    with the rates, as one join of every day would.
    """
    parts, lost, log = [], [], JoinLog()
    for at in range(0, len(lines), LINES_PER_CHUNK):
        part, missing = _month_sums(lines.iloc[at : at + LINES_PER_CHUNK], rates, log, start, stop, report)
        parts.append(part)
        lost.append(missing)
    if log.rows:  # as convert: no join is logged when there is no service day at all
        joins.record(
            "invoice line days x fx_rates",
            left_rows=sum(r["left_rows"] for r in log.rows),
            right_rows=log.rows[0]["right_rows"],
            result_rows=sum(r["result_rows"] for r in log.rows),
            right_duplicate_keys=log.rows[0]["right_duplicate_keys"],
        )
    if not parts:
        return _month_sums(lines, rates, JoinLog(), start, stop, report)
    missing = pd.concat(lost) if any(len(m) for m in lost) else lost[0]
    missing = missing.drop_duplicates(["key_value"]) if len(missing) else missing  # one finding per line
    return pd.concat(parts, ignore_index=True), missing


def _month_sums(
    lines: pd.DataFrame,
    rates: pd.DataFrame,
    joins: JoinLog,
    start: pd.Timestamp,
    stop: pd.Timestamp,
    report: str | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`revenue_days` of a few lines: their service days converted, then summed per month."""
    days, line = _expand(lines, start, stop)
    days["_line"] = line
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
    return _sums(converted), missing


def _sums(converted: pd.DataFrame) -> pd.DataFrame:
    """Converted service days summed per line and month. A line's days are consecutive rows in
    day order, so each (line, month) is a run of rows: summed with ``np.add.reduceat``."""
    months = converted["day"].to_numpy(dtype="datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    key = converted["_line"].to_numpy(np.int64) * 1_000_000 + (
        months - months.min() if len(months) else months
    )
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
    out = converted.iloc[starts][["invoice_line_id", "customer_id", "subscription_id", "currency", "status"]]
    out = out.reset_index(drop=True)
    out["period"] = month_labels(converted["day"].iloc[starts].reset_index(drop=True))
    for col in ("amount_local", "usd_micro"):
        values = converted[col].to_numpy(np.int64)
        out[col] = np.add.reduceat(values, starts) if len(starts) else values[:0]
    out["days"] = np.diff(np.r_[starts, len(key)]).astype(np.int64)
    return out[[*GRAIN, "amount_local", "usd_micro", "days"]]


def month_labels(days: pd.Series) -> pd.Series:
    """:func:`helpers.core.periods.period_of` (``YYYY-MM`` of each naive datetime), formatted once
    per distinct month instead of once per row (a service day per row runs to millions)."""
    if days.isna().any():
        return period_of(days)
    months = days.to_numpy(dtype="datetime64[ns]").astype("datetime64[M]")
    distinct, which = np.unique(months, return_inverse=True)
    labels = np.array([str(m) for m in distinct], dtype=object)
    return pd.Series(labels[which.reshape(-1)], index=days.index, dtype=object)


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
    renew_days = events["current_period_start"].dt.tz_convert(None).dt.normalize()
    out = due.assign(
        expected_amount=due["item_quantity"].astype("int64")
        * pd.to_numeric(due["item_unit_amount"], errors="coerce").fillna(0).astype("int64"),
        invoiced=pairs_in(
            due["subscription_id"], due["day"], lines["subscription_id"], lines["period_start"]
        ),
        renewed=pairs_in(due["subscription_id"], due["day"], events["subscription_id"], renew_days),
    )
    out["day"] = out["day"].dt.strftime("%Y-%m-%d")
    return out[cols].sort_values(["day", "subscription_id"]).reset_index(drop=True)


def pairs_in(ids: pd.Series, days: pd.Series, other_ids: pd.Series, other_days: pd.Series) -> list[bool]:
    """Whether each ``(id, day)`` pair is one of the ``(other_id, other_day)`` pairs (days compared
    as instants, whatever their unit), with a hash join instead of a Python set of tuples."""
    if ids.isna().any() or not len(other_ids):  # NULL ids: Python's tuple equality, as before
        have = set(zip(other_ids, other_days, strict=True))
        return [(s, d) in have for s, d in zip(ids, days, strict=True)]

    def index(i: pd.Series, d: pd.Series) -> pd.MultiIndex:
        ns = pd.to_datetime(d).astype("datetime64[ns]").to_numpy().view("i8")
        return pd.MultiIndex.from_arrays([i.to_numpy(dtype=object), ns])

    return index(ids, days).isin(index(other_ids, other_days)).tolist()


# ---------------------------------------------------------------- customers and their accounts


def customers_dimension(customers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per billing customer (latest version) with its product ``account_id``."""
    customers, dup = dedupe_exact(customers, source="billing_customers")
    dim = latest(customers, ["customer_id"])[["customer_id", "account_id"]]
    return dim.reset_index(drop=True), dup


def account_of(
    frame: pd.DataFrame, dim: pd.DataFrame, joins: JoinLog, *, name: str, counts: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` with the ``account_id`` of its ``customer_id``; an unknown customer keeps its
    money under ``unmapped:<customer_id>`` (reported, never dropped). ``counts``: see
    :meth:`JoinLog.merge`."""
    out = joins.merge(frame, dim, on="customer_id", name=name, counts=counts)
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

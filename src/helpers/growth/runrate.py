"""The revenue a month's MRR implies: Growth's side of the investor check ``revenue_vs_mrr``.

Recognised revenue (Profit) and the MRR run-rate (the mean of starting and ending MRR) differ for
known reasons. :func:`revenue_bridge` measures each of them from Growth's own data, in USD cents, and
``growth_aggregate`` publishes them in ``growth_mrr_monthly`` (:data:`BRIDGE_COLUMNS`, declared to the
warehouse as added columns, so an older warehouse gains them at its next write):

- ``mrr_daily_average_usd_cents``: each subscription's MRR at the end of each day of the month
  (after that day's changes, as revenue counts whole service days), averaged over the month's days,
  at the rates MRR uses (the day each amount was set). Minus the run-rate: the movements happened
  on their days, not all at mid-month.
- ``mrr_daily_average_fx_usd_cents``: the same converted at each day's ``fx_rates`` rate, as revenue
  is. Minus the previous: the exchange-rate change between the day an amount was set and the days
  it served.
- ``mrr_unpaid_dunning_usd_cents``: the part of the previous from days a subscription spent in a
  dunning episode that ended in involuntary churn (from its ``past_due_at`` to the churn's
  ``effective_at``): in MRR while past due, never paid, so never recognised.
- ``service_credits_usd_cents``: billing's credit notes recognised in the month (negative): revenue,
  not MRR.

So the revenue the MRR implies is ``mrr_daily_average_fx - mrr_unpaid_dunning + service_credits``;
what is left against recognised revenue (28-31-day service periods, proration rounding) is not
itemised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from helpers.core.money import convert_cents, half_even
from helpers.growth.lifecycle import group_starts, sorted_by
from helpers.growth.metrics import fx_table_cache, rates_on, recognised_revenue
from helpers.storage import warehouse

BRIDGE_COLUMNS = (
    "mrr_daily_average_usd_cents",
    "mrr_daily_average_fx_usd_cents",
    "mrr_unpaid_dunning_usd_cents",
    "service_credits_usd_cents",
)
# A warehouse built before the bridge existed gains these columns at its next Growth write.
warehouse.register_added_columns("growth_mrr_monthly", dict.fromkeys(BRIDGE_COLUMNS, sa.BigInteger()))
DAY = pd.Timedelta(days=1)


def daily_mrr(timeline: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """One row per subscription and day of ``[start, end)`` on which it has MRR at the day's end.

    The MRR at the end of day *d* is the last event before midnight (``at < d + 1``), as
    :func:`helpers.growth.metrics.mrr_snapshot` takes it. Columns: ``subscription_id``,
    ``currency``, ``mrr_local``, ``mrr_usd_cents``, ``day`` (naive UTC midnight).
    """
    days = int((end - start) / DAY)
    tl = timeline.sort_values(["subscription_id", "at", "event_id"], kind="stable").reset_index(drop=True)
    following = tl.groupby("subscription_id")["at"].shift(-1)
    # event i holds for the days whose end falls in (at_i, at_next]
    lo = np.floor((tl["at"] - start) / DAY).clip(0, days).to_numpy(np.int64)
    hi = np.floor((following - start) / DAY).fillna(days).clip(0, days).to_numpy(np.int64)
    n = np.maximum(hi - lo, 0) * (tl["mrr_local"].to_numpy(np.int64) > 0)
    idx = np.repeat(np.arange(len(tl)), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    out = tl.iloc[idx][["subscription_id", "currency", "mrr_local", "mrr_usd_cents"]].reset_index(drop=True)
    out["day"] = pd.DatetimeIndex(start.tz_convert("UTC").tz_localize(None) + k * DAY)
    return out


def _unpaid_dunning(rows: pd.DataFrame, cancellations: pd.DataFrame) -> pd.Series:
    """Which ``rows`` fall in a dunning episode that ended in involuntary churn."""
    if cancellations.empty:
        return pd.Series(False, index=rows.index)
    lost = cancellations[cancellations["classification"] == "involuntary"]
    lost = lost.dropna(subset=["past_due_at", "effective_at"])
    episodes = pd.DataFrame(
        {
            "subscription_id": lost["subscription_id"].to_numpy(),
            "past_due_at": pd.to_datetime(lost["past_due_at"], utc=True).dt.tz_localize(None).to_numpy(),
            "effective_at": pd.to_datetime(lost["effective_at"], utc=True).dt.tz_localize(None).to_numpy(),
        }
    )
    m = rows[["subscription_id", "day"]].reset_index().merge(episodes, on="subscription_id")
    day_end = m["day"] + DAY
    inside = (day_end > m["past_due_at"]) & (day_end <= m["effective_at"])
    hit = set(m.loc[inside, "index"])
    return pd.Series(rows.index.isin(list(hit)), index=rows.index)


def revenue_bridge(
    timeline: pd.DataFrame,
    fx: pd.DataFrame,
    cancellations: pd.DataFrame,
    invoices: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> dict[str, int]:
    """The month ``[start, end)``'s :data:`BRIDGE_COLUMNS`, in USD cents (module doc).

    ``timeline``: :func:`helpers.growth.metrics.mrr_timeline`; ``cancellations``:
    :func:`helpers.growth.metrics.classify_cancellations`; ``invoices``: billing's invoice lines
    (latest status). Averages are rounded half to even once, from the days' cents.
    """
    days = int((end - start) / DAY)
    mrr_rates, day_rates, dunning = (
        _daily_sums(timeline, fx, cancellations, start, end) if len(timeline) else (0, 0, 0)
    )
    credits = invoices[invoices["line_type"] == "credit_note"] if len(invoices) else invoices
    credit_cents = int(recognised_revenue(credits, start, end, fx).sum()) if len(credits) else 0
    return {
        "mrr_daily_average_usd_cents": int(half_even(mrr_rates, days)),
        "mrr_daily_average_fx_usd_cents": int(half_even(day_rates, days)),
        "mrr_unpaid_dunning_usd_cents": int(half_even(dunning, days)),
        "service_credits_usd_cents": credit_cents,
    }


def _held_days(
    timeline: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The timeline in (subscription, at, event) order and, per event, the first and past-the-last
    day index of ``[start, end)`` whose end it holds the MRR at (:func:`daily_mrr`'s rows, uncounted)."""
    days = int((end - start) / DAY)
    order = ["subscription_id", "at", "event_id"]
    tl = timeline if _in_order(timeline, order) else sorted_by(timeline, order)  # mrr_timeline's order
    following = tl["at"].shift(-1).mask(group_starts(tl["subscription_id"]).shift(-1, fill_value=True))
    lo = np.floor((tl["at"] - start) / DAY).clip(0, days).to_numpy(np.int64)
    hi = np.floor((following - start) / DAY).fillna(days).clip(0, days).to_numpy(np.int64)
    n = np.maximum(hi - lo, 0) * (tl["mrr_local"].to_numpy(np.int64) > 0)
    return tl, lo, lo + n


def _in_order(frame: pd.DataFrame, columns: list[str]) -> bool:
    """Whether ``frame`` (with a plain index, no key missing) is already in ``sorted_by(frame,
    columns)``'s order: then it is used as it is, not copied whole in that order."""
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        return False
    undecided = np.ones(max(len(frame) - 1, 0), dtype=bool)  # equal on every key so far
    for column in columns:
        values = frame[column]
        if values.isna().any():
            return False
        dated = isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype)
        a = values.to_numpy(dtype="datetime64[ns]") if dated else values.to_numpy()
        try:
            if ((a[:-1] > a[1:]) & undecided).any():
                return False
            undecided &= a[:-1] == a[1:]
        except TypeError:  # values of types that do not compare: sort them as sort_codes does
            return False
    return True


def _daily_sums(
    timeline: pd.DataFrame,
    fx: pd.DataFrame,
    cancellations: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> tuple[int, int, int]:
    """Over :func:`daily_mrr`'s rows (never built: one integer per subscription-day, expanded
    :data:`CHUNK_DAYS` at a time), the sums of ``mrr_usd_cents``, of the MRR at each day's rate, and
    of the latter on unpaid dunning days."""
    tl, lo, hi = _held_days(timeline, start, end)
    n = hi - lo
    mrr_rates = int((tl["mrr_usd_cents"].to_numpy(np.int64) * n).sum())
    if not n.any():
        return mrr_rates, 0, 0
    cur_event, currencies = pd.factorize(tl["currency"].to_numpy(), use_na_sentinel=False)
    local = tl["mrr_local"].to_numpy(np.int64)
    base = start.tz_convert("UTC").tz_localize(None)
    dunning = _dunning_rows(tl, cancellations)
    day_rates = unpaid_rates = 0
    for a, b in _row_chunks(n, CHUNK_DAYS):
        m = n[a:b]
        idx = np.repeat(np.arange(a, b), m)
        k = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m) + np.repeat(lo[a:b], m)
        pair = pd.Series(k * len(currencies) + cur_event[idx])
        uniq = pd.Series(pair.unique())
        day_of = pd.Series(pd.DatetimeIndex(base + (uniq // len(currencies)).to_numpy() * DAY))
        micros = rates_on(
            day_of, pd.Series(currencies[(uniq % len(currencies)).to_numpy()]), fx_table_cache(fx)
        )
        per_row = pd.Series(micros.to_numpy(), index=uniq.to_numpy()).reindex(pair.to_numpy()).to_numpy()
        at_day = convert_cents(local[idx], per_row)
        unpaid = _unpaid_days(tl, idx, k, base, cancellations, dunning)
        day_rates += int(at_day.sum())
        unpaid_rates += int(at_day[unpaid].sum())
    return mrr_rates, day_rates, unpaid_rates


# Subscription-days expanded at a time by :func:`_daily_sums`: about 100 bytes each in flight, so
# some 200 MB at most, where a million accounts hold about 30 million in a month.
CHUNK_DAYS = 2_000_000


def _row_chunks(n: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[a, b)`` whose ``n`` sum to about ``size`` each (one row's ``n`` over)."""
    total = np.cumsum(n)
    if not len(n) or total[-1] <= size:
        return [(0, len(n))]
    cuts = np.searchsorted(total, np.arange(size, total[-1], size), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [len(n)]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _dunning_rows(tl: pd.DataFrame, cancellations: pd.DataFrame) -> np.ndarray | None:
    """Per row of ``tl``, whether its subscription has an involuntary churn with a dunning episode
    (None without cancellations)."""
    if cancellations.empty:
        return None
    lost = cancellations[cancellations["classification"] == "involuntary"]
    lost = lost.dropna(subset=["past_due_at", "effective_at"])
    return tl["subscription_id"].isin(set(lost["subscription_id"])).to_numpy()


def _unpaid_days(tl: pd.DataFrame, idx: np.ndarray, k: np.ndarray, base: pd.Timestamp,
                 cancellations: pd.DataFrame, dunning: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """:func:`_unpaid_dunning` of the rows (event ``idx`` of ``tl``, day index ``k``): only the rows
    of subscriptions with an involuntary churn (``dunning``: :func:`_dunning_rows`) are looked at."""
    if dunning is None:
        return np.zeros(len(idx), dtype=bool)
    hit = np.flatnonzero(dunning[idx])
    subs = tl["subscription_id"].to_numpy()[idx[hit]]
    rows = pd.DataFrame({"subscription_id": subs, "day": pd.DatetimeIndex(base + k[hit] * DAY)}, index=hit)
    found = _unpaid_dunning(rows, cancellations)
    out = np.zeros(len(idx), dtype=bool)
    out[hit[found.to_numpy()]] = True
    return out

"""Growth figures: MRR movements, customers, retention, churn classification, daily growth by arm.

Definitions (docs/pipelines.md, "Growth"; ChartMogul/Baremetrics conventions, differences said there):

- **MRR** of a subscription: ``item_quantity × item_unit_amount`` (monthly plans) while its
  status is ``active`` or ``past_due`` (a customer in dunning still counts until the churn is
  final); 0 while trialing or cancelled. Discounts and one-off credits are not MRR.
- **USD**: each subscription's MRR is converted at the ``fx_rates`` rate of the UTC day on which
  its current amount was set (first paid activation, plan change), exactly (Decimal rates as
  integer millionths, half-even to the cent), like ChartMogul's transaction-date conversion: MRR
  does not drift with exchange rates between changes, so a month's starting MRR is the previous
  month's ending MRR. A day before the first landed rate takes the first rate.
- **Company**: MRR is summed per entity (:mod:`helpers.growth.entities`), so a duplicate account or an
  acquired subsidiary is one customer.
- **Movements** over a window [start, end) compare each entity's MRR just before ``start`` with
  its MRR just before ``end`` (net per entity: a churn and a come-back inside the window is a
  plan change, not two movements): ``new`` (0 -> >0, never paid before), ``reactivation``
  (0 -> >0, paid before), ``expansion`` / ``contraction`` (both >0), ``churn_voluntary`` /
  ``churn_involuntary`` (>0 -> 0, by the reason of the cancellation that ended it).
  Contraction and churn are negative numbers, so ``start + sum(movements) = end`` (asserted).
- **Churn classification**: a ``payment_failed`` cancellation counts from the end of the grace
  period (first failed charge + ``grace_period_days``) and not at all if the customer paid (or
  billing re-activated the subscription) inside it; see :func:`classify_cancellations`.
- **NRR** = (start + expansion + contraction + churn) / start and **GRR** = (start + contraction
  + churn) / start, over the entities paying at the start (new and reactivation excluded).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.money import convert_cents
from helpers.core.periods import day_bounds, month_bounds
from helpers.growth import lifecycle
from helpers.growth.lifecycle import TIER_RANK, GrowthSources
from helpers.runs.scraps import glue_all
from helpers.storage import landing

PAYING = ("active", "past_due")
MOVEMENTS = ("new", "expansion", "contraction", "churn_voluntary", "churn_involuntary", "reactivation")
MONEY_COLUMNS = ("starting_mrr_usd_cents", *(f"{m}_mrr_usd_cents" for m in MOVEMENTS), "ending_mrr_usd_cents")
ARMS = ("control", "treatment", "unassigned")


class GrowthIdentityError(AssertionError):
    """start + movements != end (or the customer counts do not add up): a bug, never data."""


# ---------------------------------------------------------------- periods


def period_status(period: str, as_of: dt.datetime, *, root: Path | None = None) -> str:
    """``final`` when billing (``subscriptions``) has delivered every day of the period by ``as_of``.

    Otherwise ``provisional``: a month-to-date run, or the month's last deliveries not landed yet
    (the first run after month end, at 00:00, never sees the last day's billing).
    """
    start, end = month_bounds(period, tz="UTC")
    days = set(pd.date_range(start, end - pd.Timedelta(days=1), freq="D").strftime("%Y-%m-%d"))
    arrived = set(landing.arrivals("subscriptions", root=root, as_of=as_of)["partition"])
    return "final" if days <= arrived else "provisional"


def day_status(
    day: str | dt.date, as_of: dt.datetime, *, pending_crm_updates: int, root: Path | None = None
) -> str:
    """``complete`` when billing and the CRM delivered the day by ``as_of`` and the CRM has every
    conversion, reactivation and churn billing shows for it; else ``provisional``."""
    label = str(pd.Timestamp(str(day)).date())
    delivered = all(
        label in set(landing.arrivals(source, root=root, as_of=as_of)["partition"])
        for source in ("subscriptions", "crm_stage_history")
    )
    return "complete" if delivered and not pending_crm_updates else "provisional"


def usage_window(period: str, as_of: dt.datetime, grace_days: int) -> tuple[dt.date, dt.date]:
    """The days of product usage the month's churn evidence needs: the month and its grace tail."""
    start, end = month_bounds(period, tz="UTC")
    last = min((end + pd.Timedelta(days=grace_days + 7)).date(), as_of.date())
    return start.date(), max(last, start.date())


# ---------------------------------------------------------------- FX


def fx_table(fx: pd.DataFrame) -> pd.DataFrame:
    """``fx_rates`` as (``date``, ``currency``, ``micros``): USD per unit in exact integer millionths."""
    if fx.empty:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "currency": [], "micros": []})
    micros = [int((Decimal(str(r)) * 1_000_000).to_integral_value()) for r in fx["usd_per_unit"]]
    out = pd.DataFrame(
        {
            "date": pd.to_datetime(fx["date"]),
            "currency": fx["currency"],
            "micros": np.asarray(micros, dtype=np.int64),
        }
    )
    return out.sort_values(["date", "currency"], kind="stable").reset_index(drop=True)


def rates_on(days: pd.Series, currencies: pd.Series, table: pd.DataFrame) -> pd.Series:
    """USD micros per unit for each (day, currency): that day's rate, else the latest before, else the first.

    Looked up once per distinct (day, currency).
    """
    date = pd.to_datetime(days).dt.tz_localize(None).reset_index(drop=True)
    cur = np.asarray(currencies.to_numpy(), dtype=object)
    day_code, _ = pd.factorize(date, use_na_sentinel=False)
    cur_code, cur_values = pd.factorize(cur, use_na_sentinel=False)
    key = day_code.astype(np.int64) * (len(cur_values) + 1) + cur_code
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    got = _rates_of(date.iloc[first].reset_index(drop=True), cur[first], table)
    return pd.Series(got[inverse.reshape(-1)], index=days.index, dtype=np.int64)


def _rates_of(date: pd.Series, currencies: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """:func:`rates_on` for rows of naive days (a RangeIndex) and currencies."""
    want = pd.DataFrame({"date": date, "currency": currencies}).reset_index(names="_pos")
    usd = want["currency"] == "USD"
    out = pd.Series(np.where(usd, 1_000_000, -1), index=want["_pos"], dtype=np.int64)
    rest = want[~usd & want["date"].notna()].sort_values("date", kind="stable")
    if len(rest) and len(table):
        back = pd.merge_asof(rest, table, on="date", by="currency", direction="backward")
        fwd = pd.merge_asof(rest, table, on="date", by="currency", direction="forward")
        got = back["micros"].fillna(fwd["micros"])
        missing = got.isna()
        if missing.any():
            raise ValueError(
                f"fx_rates: no rate at all for currency {sorted(set(rest.loc[missing.to_numpy(), 'currency']))}"
            )
        out.loc[rest["_pos"].to_numpy()] = got.astype(np.int64).to_numpy()
    return out.to_numpy()


# ---------------------------------------------------------------- churn classification


CANCELLATION_COLUMNS = (
    "event_id",
    "subscription_id",
    "customer_id",
    "account_id",
    "reason",
    "canceled_at",
    "past_due_at",
    "grace_end",
    "recovered_at",
    "retries_after",
    "used_until",
    "classification",
    "effective_at",
    "premature",
    "misclassified",
    "evidence",
)


# What classify_cancellations reads of the subscription events (and subscription_states needs):
# its sorted copy of them holds these columns only.
_STATE_COLUMNS = ["event_id", "subscription_id", "customer_id", "status", "item_tier", "item_quantity"]
_STATE_COLUMNS += ["cancellation_details_reason", "event_at"]


def classify_cancellations(src: GrowthSources, *, grace_days: int) -> pd.DataFrame:
    """Every cancellation with a reason, classified (the ``churn_misclassified`` rules).

    One row per cancellation event (:data:`CANCELLATION_COLUMNS`): ``event_id``, ``subscription_id``,
    ``customer_id``, ``account_id`` (product), ``reason``, ``canceled_at``, ``past_due_at`` (start of
    the dunning episode it ended), ``grace_end`` (= past_due_at + grace), ``recovered_at`` (a later
    active event of the same subscription or a successful charge of its invoices, inside the grace
    period), ``retries_after`` (charge attempts after the cancellation), ``used_until`` (last day
    of product usage after the cancellation day, before any new subscription), and:

    - ``classification``: ``voluntary``; ``involuntary``; ``recovered`` (payment failed, paid
      inside the grace period: not churn);
    - ``effective_at``: when the churn counts (voluntary: the cancellation; involuntary: the later
      of the cancellation and the grace end; recovered: NaT);
    - ``misclassified`` and ``evidence``: cancelled before the grace period ended, still used
      afterwards, paid afterwards, or dunning retries still running.
    """
    subs = src.subscriptions
    s = lifecycle.subscription_states(subs[[c for c in _STATE_COLUMNS if c in subs.columns]])
    c = _cancellation_events(s, src.customers)
    if c.empty:
        return pd.DataFrame(columns=list(CANCELLATION_COLUMNS))
    c = _with_dunning_episode(c, s, pd.Timedelta(days=grace_days))
    c = _with_reactivation(c, s)
    c = _with_charges_after(c, src)
    recovery = c[["active_at", "paid_at"]].min(axis=1)
    involuntary = c["reason"] == "payment_failed"
    in_grace = (
        involuntary
        & recovery.notna()
        & (recovery <= c["grace_end"].fillna(c["canceled_at"]) + pd.Timedelta(days=1))
    )
    c["recovered_at"] = recovery.where(in_grace)
    c["used_until"] = _usage_after(c, src)
    c["premature"] = (
        involuntary & c["grace_end"].notna() & (c["canceled_at"] < c["grace_end"] - pd.Timedelta(hours=1))
    )
    c["classification"] = np.where(in_grace, "recovered", np.where(involuntary, "involuntary", "voluntary"))
    eff = c["canceled_at"].where(~involuntary, c[["canceled_at", "grace_end"]].max(axis=1))
    c["effective_at"] = eff.where(~in_grace)
    used = c["used_until"].notna()
    paid = c["paid_at"].notna() | c["active_at"].notna()
    c["misclassified"] = c["premature"] | used | paid
    c["evidence"] = _contradictions(c, recovery)
    out = c[list(CANCELLATION_COLUMNS)]
    return out.sort_values(["canceled_at", "event_id"], kind="stable").reset_index(drop=True)


def _cancellation_events(states: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """The cancellation events that carry a reason, with the product account, in time order."""
    c = states[(states["status"] == "canceled") & states["cancellation_details_reason"].notna()]
    if c.empty:
        return c
    c = c[["event_id", "subscription_id", "customer_id", "cancellation_details_reason", "event_at"]]
    c = c.rename(columns={"cancellation_details_reason": "reason", "event_at": "canceled_at"})
    acct = customers.set_index("customer_id")["account_id"] if len(customers) else pd.Series(dtype=object)
    c = c.assign(account_id=c["customer_id"].map(acct))
    return c.sort_values("canceled_at", kind="stable")


def _with_dunning_episode(c: pd.DataFrame, states: pd.DataFrame, grace: pd.Timedelta) -> pd.DataFrame:
    """Adds ``past_due_at`` (the subscription's last past_due event before the cancellation) and ``grace_end``."""
    pdue = states[states["status"] == "past_due"][["subscription_id", "event_at"]].rename(
        columns={"event_at": "past_due_at"}
    )
    c = pd.merge_asof(
        c,
        pdue.sort_values("past_due_at"),
        left_on="canceled_at",
        right_on="past_due_at",
        by="subscription_id",
        direction="backward",
    )
    c["grace_end"] = c["past_due_at"] + grace
    return c


def _with_reactivation(c: pd.DataFrame, states: pd.DataFrame) -> pd.DataFrame:
    """Adds ``active_at``: billing re-activated the same subscription after cancelling it (else NaT)."""
    act = states[states["status"] == "active"][["subscription_id", "event_at"]].rename(
        columns={"event_at": "active_at"}
    )
    act = act.assign(probe=act["active_at"] - pd.Timedelta(microseconds=1)).sort_values("probe")
    c = pd.merge_asof(
        c, act[["subscription_id", "probe", "active_at"]], left_on="canceled_at", right_on="probe",
        by="subscription_id", direction="forward",
    ).drop(columns="probe")  # fmt: skip
    c["active_at"] = c["active_at"].where(c["active_at"] > c["canceled_at"])
    return c


def _with_charges_after(c: pd.DataFrame, src: GrowthSources) -> pd.DataFrame:
    """Adds ``retries_after`` (charges of the subscription's invoices after the cancellation) and
    ``paid_at`` (the first of them that succeeded)."""
    charges = _subscription_charges(src)
    after = charges.merge(c[["event_id", "subscription_id", "canceled_at"]], on="subscription_id")
    after = after[after["created"] > after["canceled_at"]]
    c["retries_after"] = c["event_id"].map(after.groupby("event_id").size()).fillna(0).astype(int)
    c["paid_at"] = c["event_id"].map(
        after[after["status"] == "succeeded"].groupby("event_id")["created"].min()
    )
    return c


def _contradictions(c: pd.DataFrame, recovery: pd.Series) -> list[str]:
    """Per cancellation, what contradicts it, ``; ``-joined (empty: nothing)."""
    return [
        "; ".join(
            x
            for x in (
                f"cancelled {(g - t).days} day(s) before the grace period ended" if pre else "",
                f"used the product until {u}" if isinstance(u, dt.date) else "",
                f"paid/re-activated on {r.date()}" if pd.notna(r) else "",
                f"{n} dunning retr{'y' if n == 1 else 'ies'} after the cancellation" if n else "",
            )
            if x
        )
        for pre, g, t, u, r, n in zip(
            c["premature"],
            c["grace_end"],
            c["canceled_at"],
            c["used_until"],
            recovery,
            c["retries_after"],
            strict=True,
        )
    ]


def _subscription_charges(src: GrowthSources) -> pd.DataFrame:
    """Charge attempts with the subscription their invoice bills."""
    if src.payments.empty or src.invoices.empty:
        return pd.DataFrame(columns=["subscription_id", "created", "status"])
    inv_sub = src.invoices.drop_duplicates("invoice_id").set_index("invoice_id")["subscription_id"]
    ch = src.payments[src.payments["type"] == "charge"]
    return pd.DataFrame(
        {"subscription_id": ch["invoice_id"].map(inv_sub), "created": ch["created"], "status": ch["status"]}
    ).dropna(subset=["subscription_id"])


def _usage_after(c: pd.DataFrame, src: GrowthSources) -> pd.Series:
    """Last usage day after each cancellation's day and before the customer's next subscription."""
    if src.usage.empty:
        return pd.Series(None, index=c.index, dtype=object)
    starts = src.subscriptions[src.subscriptions["event_type"] == "customer.subscription.created"]
    starts = starts[["customer_id", "event_at"]].rename(columns={"event_at": "next_start"})
    starts = starts.assign(probe=starts["next_start"]).sort_values("probe")
    nxt = pd.merge_asof(
        c[["customer_id", "canceled_at"]].reset_index().sort_values("canceled_at"),
        starts[["customer_id", "probe", "next_start"]],
        left_on="canceled_at",
        right_on="probe",
        by="customer_id",
        direction="forward",
        allow_exact_matches=False,
    ).set_index("index")
    use = src.usage.merge(c[["account_id"]].reset_index(), on="account_id")
    use = use.assign(canceled=use["index"].map(c["canceled_at"]), nxt=use["index"].map(nxt["next_start"]))
    day = pd.to_datetime(use["day"]).dt.tz_localize("UTC")
    keep = (day >= use["canceled"].dt.normalize() + pd.Timedelta(days=1)) & (
        use["nxt"].isna() | (day < use["nxt"].dt.normalize())
    )
    last = use[keep].groupby("index")["day"].max()
    return last.reindex(c.index).astype(object).where(last.reindex(c.index).notna(), None)


def unusable_events(subscriptions: pd.DataFrame) -> pd.DataFrame:
    """Subscription events MRR cannot use, with a ``reason``: a paying status without a positive
    seat count or a price (``math_errors``: a zero-seat or NULL row). They are left out of the
    MRR timeline (the subscription keeps its previous amount) and shown by the notebooks, not dropped silently."""
    if subscriptions.empty:
        return subscriptions.assign(reason=pd.Series(dtype=object))
    qty = pd.to_numeric(subscriptions["item_quantity"], errors="coerce")
    unit = pd.to_numeric(subscriptions["item_unit_amount"], errors="coerce")
    paying = subscriptions["status"].isin(PAYING)
    bad = paying & (qty.isna() | (qty <= 0) | unit.isna() | (unit < 0))
    reason = np.where(
        qty.isna() | (qty <= 0),
        "paying status without a positive seat count",
        "paying status without a price",
    )
    return subscriptions[bad].assign(reason=reason[bad.to_numpy()])


def effective_events(subscriptions: pd.DataFrame, cancellations: pd.DataFrame) -> pd.DataFrame:
    """Subscription events with churn counted per the classification (the repair of ``churn_misclassified``).

    A cancellation recovered inside the grace period is dropped; an involuntary one counts at
    its ``effective_at``; :func:`unusable_events` are left out. Adds ``at`` (the effective time;
    ``event_at`` is kept as recorded).
    """
    ids = subscriptions["event_id"]
    keep = ~ids.isin(unusable_events(subscriptions)["event_id"])
    c = cancellations.set_index("event_id") if not cancellations.empty else None
    if c is not None:
        keep &= ~ids.isin(c.index[c["classification"] == "recovered"])
    ev = subscriptions.take(np.flatnonzero(keep.to_numpy()))  # the rows kept, copied once
    ev["at"] = ev["event_at"]
    if c is None:
        return ev
    moved = ev["event_id"].isin(c.index[c["classification"] == "involuntary"])
    ev.loc[moved, "at"] = ev.loc[moved, "event_id"].map(c["effective_at"])
    return ev


# ---------------------------------------------------------------- MRR


def mrr_timeline(events: pd.DataFrame, fx: pd.DataFrame) -> pd.DataFrame:
    """Each subscription event with the subscription's MRR from then on, in local currency and USD cents.

    ``events`` need ``at`` (:func:`effective_events`). Columns: ``subscription_id``,
    ``customer_id``, ``event_id``, ``at``, ``status``, ``reason``, ``tier``, ``seats``,
    ``currency``, ``mrr_local``, ``rate_day`` (the day the amount was set), ``micros``,
    ``mrr_usd_cents``.
    """
    cols = [
        "subscription_id",
        "customer_id",
        "event_id",
        "at",
        "status",
        "reason",
        "tier",
        "seats",
        "currency",
    ]
    cols += ["mrr_local", "rate_day", "micros", "mrr_usd_cents"]
    if events.empty:
        return pd.DataFrame(columns=cols)
    # only the columns it shows (in their order) and the price: no copy of every event column
    renamed = {"cancellation_details_reason": "reason", "item_tier": "tier", "item_quantity": "seats"}
    source = [{v: k for k, v in renamed.items()}.get(c, c) for c in cols[:9]]
    e = lifecycle.sorted_by(events[[*source, "item_unit_amount"]], ["subscription_id", "at", "event_id"])
    unit = e.pop("item_unit_amount")
    paying = e["status"].isin(PAYING)
    local = np.where(paying, e["item_quantity"].astype(np.int64) * unit.astype(np.int64), 0)
    e["mrr_local"] = local.astype(np.int64)
    first = lifecycle.group_starts(e["subscription_id"])
    prev = e["mrr_local"].shift().mask(first)
    sets = (e["mrr_local"] > 0) & (e["mrr_local"] != prev)
    rate_day = e["at"].dt.tz_convert("UTC").dt.normalize().dt.tz_localize(None).where(sets)
    group = first.cumsum().where(e["subscription_id"].notna())  # one integer per subscription run
    e["rate_day"] = rate_day.groupby(group).ffill().where(e["mrr_local"] > 0)
    e["micros"] = rates_on(e["rate_day"], e["currency"], fx_table_cache(fx)).where(e["mrr_local"] > 0, 0)
    e["mrr_usd_cents"] = convert_cents(e["mrr_local"], e["micros"])
    e.columns = [renamed.get(c, c) for c in e.columns]  # in place: e is this function's own
    return e if list(e.columns) == cols else e[cols]


def fx_table_cache(fx: pd.DataFrame) -> pd.DataFrame:
    """``fx`` as :func:`fx_table` unless it already is one."""
    return fx if "micros" in fx.columns else fx_table(fx)


def _joined(values: pd.Series, sep: str) -> pd.Series:
    """Per index label, its distinct values sorted and ``sep``-joined (the label order sorted).

    ``values.groupby(level=0).agg(lambda s: sep.join(sorted(set(s))))`` with the Python join only
    for the labels holding more than one distinct value.
    """
    pairs = pd.DataFrame({"k": values.index, "v": values.to_numpy()}).drop_duplicates()
    many = pairs["k"].duplicated(keep=False).to_numpy()
    single = pairs[~many].set_index("k")["v"]
    multi = pairs[many].groupby("k")["v"].agg(lambda s: sep.join(sorted(s)))
    out = pd.concat([single, multi]) if len(multi) else single
    return out.sort_index()


def mrr_snapshot(timeline: pd.DataFrame, at: pd.Timestamp, customer_entity: pd.Series) -> pd.DataFrame:
    """Each entity's MRR just before ``at``: ``mrr_usd_cents``, ``tier`` (highest), ``seats`` (sum), ``currency``."""
    # the last row of each subscription before ``at``, picked by position: no copy of the timeline
    rows = lifecycle.last_before(timeline, "subscription_id", "at", at)
    rows = rows[timeline["mrr_usd_cents"].to_numpy()[rows] > 0]
    last = timeline.iloc[rows][["customer_id", "mrr_usd_cents", "tier", "seats", "currency"]]
    last = last.assign(entity_id=lambda f: f["customer_id"].map(customer_entity))
    last = last.assign(
        entity_id=last["entity_id"].fillna(last["customer_id"]), rank=last["tier"].map(TIER_RANK)
    )
    g = last.groupby("entity_id")
    out = pd.DataFrame(
        {
            "mrr_usd_cents": g["mrr_usd_cents"].sum(),
            "rank": g["rank"].max(),
            "seats": g["seats"].sum(),
            "currency": _joined(last.set_index("entity_id")["currency"], "+"),
        }
    )
    names = {v: k for k, v in TIER_RANK.items()}
    out["tier"] = out["rank"].map(names)
    return out.drop(columns="rank")


def account_movements(
    timeline: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, customer_entity: pd.Series
) -> pd.DataFrame:
    """Per entity paying at ``start`` or ``end``: start/end MRR and the movement between (see module doc).

    Columns: ``account_id`` (the entity), ``starting_mrr_usd_cents``, ``ending_mrr_usd_cents``,
    ``mrr_change_usd_cents``, ``movement`` (one of :data:`MOVEMENTS` or ``flat``),
    ``tier_end``, ``seats_end``, ``currency``.
    """
    s0 = mrr_snapshot(timeline, start, customer_entity)
    s1 = mrr_snapshot(timeline, end, customer_entity)
    ids = s0.index.union(s1.index)
    a = pd.DataFrame(index=pd.Index(ids, name="account_id"))
    a["starting_mrr_usd_cents"] = s0["mrr_usd_cents"].reindex(ids).fillna(0).astype(np.int64)
    a["ending_mrr_usd_cents"] = s1["mrr_usd_cents"].reindex(ids).fillna(0).astype(np.int64)
    a["mrr_change_usd_cents"] = a["ending_mrr_usd_cents"] - a["starting_mrr_usd_cents"]
    ent = timeline["customer_id"].map(customer_entity).fillna(timeline["customer_id"])
    paid_before = set(ent[(timeline["at"] < start) & (timeline["mrr_usd_cents"] > 0)])
    churn_type = _churn_types(timeline, start, end, ent)
    was, now = a["starting_mrr_usd_cents"] > 0, a["ending_mrr_usd_cents"] > 0
    move = np.select(
        [
            ~was & now & ~a.index.isin(list(paid_before)),
            ~was & now,
            was & ~now & (churn_type.reindex(ids) == "involuntary"),
            was & ~now,
            was & now & (a["mrr_change_usd_cents"] > 0),
            was & now & (a["mrr_change_usd_cents"] < 0),
        ],
        ["new", "reactivation", "churn_involuntary", "churn_voluntary", "expansion", "contraction"],
        default="flat",
    )
    a["movement"] = move
    a["tier_end"] = s1["tier"].reindex(ids)
    a["seats_end"] = s1["seats"].reindex(ids).astype("Int64")
    a["currency"] = s1["currency"].reindex(ids).fillna(s0["currency"].reindex(ids))
    return a.reset_index()


def _churn_types(
    timeline: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, entity: pd.Series
) -> pd.Series:
    """Per entity, the reason of its last effective cancellation in [start, end)."""
    w = timeline[(timeline["at"] >= start) & (timeline["at"] < end) & timeline["reason"].notna()]
    w = w.sort_values("at", kind="stable")
    last = w.assign(entity_id=entity.loc[w.index]).drop_duplicates("entity_id", keep="last")
    kind = np.where(last["reason"] == "payment_failed", "involuntary", "voluntary")
    return pd.Series(kind, index=last["entity_id"].to_numpy())


def movement_summary(accounts: pd.DataFrame, label: str) -> pd.DataFrame:
    """One row of headline figures from :func:`account_movements` (identities asserted).

    Columns: ``period`` (= ``label``), :data:`MONEY_COLUMNS` (movements signed), ``customers_start``,
    ``customers_end``, ``new_customers``, ``reactivated_customers``, ``churned_customers``,
    ``churned_voluntary_customers``, ``churned_involuntary_customers``, ``nrr``, ``grr``.
    """
    by = accounts.groupby("movement")["mrr_change_usd_cents"]
    sums, counts = by.sum(), by.size()
    row: dict[str, object] = {"period": label}
    row["starting_mrr_usd_cents"] = int(accounts["starting_mrr_usd_cents"].sum())
    for m in MOVEMENTS:
        row[f"{m}_mrr_usd_cents"] = int(sums.get(m, 0))
    row["ending_mrr_usd_cents"] = int(accounts["ending_mrr_usd_cents"].sum())
    row["customers_start"] = int((accounts["starting_mrr_usd_cents"] > 0).sum())
    row["customers_end"] = int((accounts["ending_mrr_usd_cents"] > 0).sum())
    row["new_customers"] = int(counts.get("new", 0))
    row["reactivated_customers"] = int(counts.get("reactivation", 0))
    row["churned_voluntary_customers"] = int(counts.get("churn_voluntary", 0))
    row["churned_involuntary_customers"] = int(counts.get("churn_involuntary", 0))
    row["churned_customers"] = row["churned_voluntary_customers"] + row["churned_involuntary_customers"]
    start = row["starting_mrr_usd_cents"]
    churn = row["churn_voluntary_mrr_usd_cents"] + row["churn_involuntary_mrr_usd_cents"]
    kept = start + row["contraction_mrr_usd_cents"] + churn
    row["nrr"] = (kept + row["expansion_mrr_usd_cents"]) / start if start else None
    row["grr"] = kept / start if start else None
    out = pd.DataFrame([row])
    assert_identities(out)
    return out


def assert_identities(summary: pd.DataFrame) -> None:
    """start + movements = end (MRR) and start + new + reactivated − churned = end (customers), per row."""
    for r in summary.itertuples(index=False):
        moved = sum(getattr(r, f"{m}_mrr_usd_cents") for m in MOVEMENTS)
        if r.starting_mrr_usd_cents + moved != r.ending_mrr_usd_cents:
            raise GrowthIdentityError(
                f"{r.period}: starting MRR {r.starting_mrr_usd_cents} + movements {moved} "
                f"!= ending MRR {r.ending_mrr_usd_cents} (USD cents)"
            )
        flow = r.customers_start + r.new_customers + r.reactivated_customers - r.churned_customers
        if flow != r.customers_end:
            raise GrowthIdentityError(
                f"{r.period}: customers {r.customers_start} + {r.new_customers} new + {r.reactivated_customers} "
                f"reactivated - {r.churned_customers} churned != {r.customers_end}"
            )


def waterfall_steps(summary: pd.DataFrame) -> list[tuple[str, float]]:
    """The MRR bridge of one summary row for ``charts.waterfall``, in dollars."""
    r = summary.iloc[0]
    names = {
        "new": "New",
        "expansion": "Expansion",
        "reactivation": "Reactivation",
        "contraction": "Contraction",
        "churn_voluntary": "Churn (voluntary)",
        "churn_involuntary": "Churn (involuntary)",
    }
    steps = [("Starting MRR", r["starting_mrr_usd_cents"] / 100)]
    steps += [(label, r[f"{m}_mrr_usd_cents"] / 100) for m, label in names.items()]
    return [*steps, ("Ending MRR", r["ending_mrr_usd_cents"] / 100)]


# ---------------------------------------------------------------- marts and scraps

MONTHLY_COLUMNS = (
    "period",
    *MONEY_COLUMNS,
    "customers_start",
    "customers_end",
    "new_customers",
    "reactivated_customers",
    "churned_customers",
    "churned_voluntary_customers",
    "churned_involuntary_customers",
    "nrr",
    "grr",
    "crm_customers_end",
    "mrr_daily_average_usd_cents",  # the revenue bridge (helpers.growth.runrate.BRIDGE_COLUMNS)
    "mrr_daily_average_fx_usd_cents",
    "mrr_unpaid_dunning_usd_cents",
    "service_credits_usd_cents",
    "status",
)
ACCOUNT_COLUMNS = (
    "period",
    "account_id",
    "crm_account_id",
    "member_accounts",
    "currency",
    "starting_mrr_usd_cents",
    "ending_mrr_usd_cents",
    "mrr_change_usd_cents",
    "movement",
    "tier_end",
    "seats_end",
)


def crm_customers(entity_hist: pd.DataFrame, at: pd.Timestamp) -> int:
    """Companies the lifecycle (CRM, repaired) has as customers (or in dunning) just before ``at``."""
    rows = lifecycle.last_before(entity_hist, "entity_id", "effective_at", at)
    return int(np.isin(entity_hist["entity_to"].to_numpy()[rows], ["customer", "past_due"]).sum())


def monthly_mart(summary: pd.DataFrame, *, status: str, crm_customers_end: int) -> pd.DataFrame:
    """The ``growth_mrr_monthly`` row: the summary (with the revenue bridge of
    :mod:`helpers.growth.runrate`) plus ``status`` and the CRM's own customer count."""
    out = summary.assign(status=status, crm_customers_end=crm_customers_end)
    return out[list(MONTHLY_COLUMNS)]


def accounts_mart(accounts: pd.DataFrame, entity_of: pd.Series, crm_of_product: pd.Series) -> pd.DataFrame:
    """``growth_accounts_monthly``: the movements per company with its CRM id and member accounts."""
    members = _joined(pd.Series(entity_of.index, index=entity_of.to_numpy()), ";")
    out = accounts.assign(
        crm_account_id=accounts["account_id"].map(crm_of_product),
        member_accounts=accounts["account_id"].map(members).fillna(accounts["account_id"]),
    )
    return out[list(ACCOUNT_COLUMNS)].sort_values("account_id", kind="stable").reset_index(drop=True)


def headline_scraps(monthly: pd.DataFrame, accounts: pd.DataFrame, results: list[Any]) -> dict[str, Any]:
    """The figures ``growth_aggregate`` glues (names the investor aggregate reads), as plain JSON values."""
    row = monthly.iloc[0]
    out: dict[str, Any] = {"period": str(row["period"]), "status": str(row["status"])}
    for c in MONEY_COLUMNS:
        out[c] = int(row[c])
    for c in (
        "customers_start",
        "customers_end",
        "new_customers",
        "reactivated_customers",
        "churned_customers",
    ):
        out[c] = int(row[c])
    out["nrr"] = None if pd.isna(row["nrr"]) else float(row["nrr"])
    out["grr"] = None if pd.isna(row["grr"]) else float(row["grr"])
    out["crm_customers_end"] = int(row["crm_customers_end"])
    paying = accounts[accounts["ending_mrr_usd_cents"] > 0]
    out["active_accounts"] = int(len(paying))
    out["active_account_ids"] = sorted(paying["account_id"].astype(str))
    out.update(check_outcomes(results))
    return out


def check_outcomes(results: list[Any]) -> dict[str, Any]:
    """``checks_passed`` / ``checks_failed`` / ``checks_error`` counts and ``check_statuses`` {id: status}."""
    statuses = {r.check_id: r.status for r in results}
    return {
        "checks_passed": sum(s == "pass" for s in statuses.values()),
        "checks_failed": sum(s == "fail" for s in statuses.values()),
        "checks_error": sum(s == "error" for s in statuses.values()),
        "check_statuses": dict(sorted(statuses.items())),
    }


def glue(scraps: dict[str, Any]) -> None:
    """Glue every scrap (the notebooks' record cell); a NULL ``nrr`` or ``grr`` is glued as None."""
    glue_all(scraps)


# ---------------------------------------------------------------- recognised revenue


def recognised_revenue(
    invoices: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, fx: pd.DataFrame
) -> pd.Series:
    """Per billing customer, invoice revenue recognised in [start, end), USD cents.

    Lines not written off (``uncollectible``), spread over their service days ``[period_start,
    period_end)`` with cumulative floor rounding (Finance's rule, so the parts of a line add up to
    it), converted at the rate of the line's creation day. A small helper of our own: the Profit
    pipeline owns revenue; this is only the evidence for ``growth_revenue_mismatch``.
    """
    if invoices.empty:
        return pd.Series(dtype=np.int64)
    kept = (invoices["status"] != "uncollectible").to_numpy()
    ps = pd.to_datetime(invoices["period_start"]).dt.tz_localize("UTC")
    pe = pd.to_datetime(invoices["period_end"]).dt.tz_localize("UTC")
    # only the lines serving days of the window are copied; the others' customers get 0 (below)
    rows = np.flatnonzero(kept & (pe > start).to_numpy() & (ps < end).to_numpy())
    li = invoices.iloc[rows][["amount", "created", "currency", "customer_id"]]
    ps, pe = ps.iloc[rows], pe.iloc[rows]
    length = (pe - ps).dt.days.clip(lower=1).to_numpy()
    # clip + fillna: np.maximum/np.minimum's values (a missing day gives the bound), without
    # comparing timestamp objects one by one
    lo = ((ps.clip(lower=start).fillna(start) - ps).dt.days).clip(lower=0, upper=length).to_numpy()
    hi = ((pe.clip(upper=end).fillna(end) - ps).dt.days).clip(lower=0, upper=length).to_numpy()
    amount = (
        pd.to_numeric(li["amount"], errors="coerce").fillna(0).astype(np.int64).to_numpy()
    )  # NULL: not revenue
    part = np.floor_divide(amount * hi, length) - np.floor_divide(amount * lo, length)
    micros = rates_on(li["created"].dt.normalize().dt.tz_localize(None), li["currency"], fx_table_cache(fx))
    cents = convert_cents(np.where(hi > lo, part, 0), micros.to_numpy())
    out = pd.Series(cents, index=li["customer_id"].to_numpy(), dtype=np.int64).groupby(level=0).sum()
    every = pd.Index(invoices["customer_id"].to_numpy()[kept]).dropna().unique().sort_values()
    return out.reindex(every, fill_value=0)


# ---------------------------------------------------------------- daily growth by arm


def entity_arms(assignments: pd.DataFrame, entity_of: pd.Series) -> pd.DataFrame:
    """Per (entity, experiment) the arm: the surviving account's own arm, else any member's."""
    if assignments.empty:
        return pd.DataFrame(columns=["entity_id", "experiment", "arm"])
    a = assignments.assign(
        entity_id=assignments["account_id"].map(entity_of).fillna(assignments["account_id"])
    )
    a = a.assign(own=a["account_id"] == a["entity_id"]).sort_values(["entity_id", "experiment", "own"])
    return a.drop_duplicates(["entity_id", "experiment"], keep="last")[["entity_id", "experiment", "arm"]]


def daily_growth(
    day: str | dt.date,
    *,
    timeline: pd.DataFrame,
    customer_entity: pd.Series,
    entity_hist: pd.DataFrame,
    arms: pd.DataFrame,
) -> pd.DataFrame:
    """One day's growth by experiment arm: ``growth_daily`` rows.

    For each experiment, three rows (control, treatment, unassigned = every other company), so
    each experiment's rows add up to the day's totals. Counts come from the lifecycle
    (:func:`helpers.growth.lifecycle.transition_counts`, CRM as repaired), MRR from billing
    (:func:`account_movements` over the day); ``customers_end`` = companies paying at the day's end.
    """
    start, end = day_bounds(day)
    mov = account_movements(timeline, start, end, customer_entity).set_index("account_id")
    counts = lifecycle.transition_counts(entity_hist, start, end)
    per = pd.DataFrame(index=mov.index.union(counts.index))
    per["customers_end"] = (mov["ending_mrr_usd_cents"] > 0).reindex(per.index, fill_value=False).astype(int)
    for col in lifecycle.COUNTED_KINDS.values():
        per[col] = counts[col].reindex(per.index, fill_value=0) if col in counts else 0
    change = mov["mrr_change_usd_cents"]
    for m, col in (
        ("new", "new_mrr_usd_cents"),
        ("expansion", "expansion_mrr_usd_cents"),
        ("contraction", "contraction_mrr_usd_cents"),
        ("churn", "churn_mrr_usd_cents"),
        ("reactivation", "reactivation_mrr_usd_cents"),
    ):
        hit = mov["movement"].str.startswith(m)
        per[col] = change.where(hit, 0).reindex(per.index, fill_value=0).astype(np.int64)
    per["net_new_mrr_usd_cents"] = change.reindex(per.index, fill_value=0).astype(np.int64)
    experiments = sorted(arms["experiment"].unique()) if len(arms) else []
    value_cols = list(per.columns)
    frames = []
    for exp in experiments or ["none"]:
        arm = arms[arms["experiment"] == exp].set_index("entity_id")["arm"]
        label = per.index.map(arm).fillna("unassigned" if experiments else "all")
        g = per.groupby(label.to_numpy())[value_cols].sum()
        g = g.reindex(list(ARMS) if experiments else ["all"], fill_value=0)
        frames.append(g.rename_axis("arm").reset_index().assign(experiment=exp))
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "date", pd.Timestamp(str(day)).date().isoformat())
    out = out[["date", "experiment", "arm", *value_cols]]
    for c in value_cols:
        out[c] = out[c].astype(np.int64)
    return out


def assert_arms_add_up(daily: pd.DataFrame) -> pd.Series:
    """Each experiment's arms add up to the same totals; returns those day totals."""
    values = daily.drop(columns=["date", "experiment", "arm", "status"], errors="ignore")
    per = values.groupby(daily["experiment"]).sum()
    if len(per) > 1 and not (per == per.iloc[0]).all().all():
        raise GrowthIdentityError(f"experiments' arms add up to different day totals:\n{per}")
    return per.iloc[0] if len(per) else values.sum()


def daily_scraps(
    daily: pd.DataFrame, totals: pd.Series, results: list[Any], *, pending_crm_updates: int
) -> dict[str, Any]:
    """The figures ``growth_daily`` glues: the day's totals, its status and the check outcomes."""
    out: dict[str, Any] = {"date": str(daily["date"].iloc[0]), "status": str(daily["status"].iloc[0])}
    out.update({k: int(v) for k, v in totals.items()})
    out["pending_crm_updates"] = int(pending_crm_updates)
    out["experiments"] = sorted(daily["experiment"].unique().tolist())
    out.update(check_outcomes(results))
    return out

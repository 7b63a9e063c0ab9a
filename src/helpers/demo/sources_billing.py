"""Billing sources shaped like Stripe objects, plus daily FX rates.

``billing_customers``, ``subscriptions`` (change events), ``billing_invoices`` (one row per
invoice line *version*: an invoice whose first payment failed lands as ``open`` and again when
it is paid or written off) and ``billing_payments`` (charges with dunning retries, refunds)
are daily extracts: partition = the day of the row's ``created``/``event_at``/``updated_at``,
arriving the next morning (UTC). ``fx_rates`` lands every day at 16:30 UTC. Their columns,
keys and schedules are their contracts (``helpers.storage.contracts``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from helpers.demo import company as co
from helpers.demo import ids
from helpers.demo.company import Company, World
from helpers.demo.extracts import ARRIVAL, PARTITION, arrival_hour, at, day_of, deliver
from helpers.demo.names import pseudonymise_email
from helpers.storage.contracts import SOURCES

ARRIVAL_HOUR = {
    name: arrival_hour(name)
    for name in ("billing_customers", "subscriptions", "billing_invoices", "billing_payments")
}
FX_HOUR = SOURCES["fx_rates"].schedule_hours
FX_BASE = {"EUR": 1.08, "GBP": 1.27, "CAD": 0.74}
FX_DAILY_SIGMA = 0.0045
FAILURE_CODES = np.array(
    ["card_declined"] * 5 + ["insufficient_funds"] * 3 + ["expired_card"] * 2, dtype=object
)

_STATUS = {
    co.K_TRIAL: ("customer.subscription.created", "trialing", None),
    co.K_CONVERT: ("customer.subscription.updated", "active", None),
    co.K_LOST: ("customer.subscription.deleted", "canceled", None),
    co.K_RENEW: ("customer.subscription.updated", "active", None),
    co.K_PAST_DUE: ("customer.subscription.updated", "past_due", None),
    co.K_RECOVER: ("customer.subscription.updated", "active", None),
    co.K_CANCEL_REQUEST: ("customer.subscription.updated", "active", None),
    co.K_CANCEL_VOL: ("customer.subscription.deleted", "canceled", "cancellation_requested"),
    co.K_CANCEL_INVOL: ("customer.subscription.deleted", "canceled", "payment_failed"),
    co.K_UPGRADE: ("customer.subscription.updated", "active", None),
    co.K_DOWNGRADE: ("customer.subscription.updated", "active", None),
    co.K_REACTIVATE: ("customer.subscription.created", "active", None),
}


def _lookup(codes: np.ndarray, table: dict[int, tuple], pos: int) -> np.ndarray:
    out = np.empty(max(table) + 1, dtype=object)
    for k, v in table.items():
        out[k] = v[pos]
    return out[codes]


def currency_codes(company: Company) -> np.ndarray:
    """ISO currency code of each account of ``company``."""
    return np.asarray(co.CURRENCIES, dtype=object)[company.accounts["currency"].to_numpy()]


def subscription_ids(company: Company, acc: np.ndarray, sub_seq: np.ndarray) -> np.ndarray:
    """Stripe-like ``sub_`` ids of (account position, subscription sequence) pairs."""
    gidx = company.accounts["gidx"].to_numpy()[acc]
    return ids.stripe_ids("sub_", ids.object_key(company.spec.seed, 2, gidx, sub_seq))


def price_ids(tier: np.ndarray, currency: np.ndarray, treatment: np.ndarray) -> np.ndarray:
    """Stripe price ids (``price_growth_eur``; ``_v2`` for the pricing experiment's treatment)."""
    names = np.asarray(co.TIERS, dtype=object)[tier]
    cur = np.asarray([c.lower() for c in co.CURRENCIES], dtype=object)[currency]
    return "price_" + names + "_" + cur + np.where(treatment & (tier < 2), "_v2", "").astype(object)


def billing_customers(company: Company) -> pd.DataFrame:
    """One customer per account, created at signup; the email only as a salted sha256."""
    a = company.accounts
    created = co.at_seconds(a["trial_start"].to_numpy(), a["tod"].to_numpy())
    frame = pd.DataFrame(
        {
            "customer_id": a["customer_id"].to_numpy(),
            "email_sha256": [pseudonymise_email(e) for e in a["email"].tolist()],
            "name": a["name"].to_numpy(),
            "currency": currency_codes(company),
            "country": a["country"].to_numpy(),
            "account_id": a["account_id"].to_numpy(),
            "created": created,
        }
    )
    return deliver(frame, day_of(created), company.world.start, ARRIVAL_HOUR["billing_customers"])


def lifecycle(company: Company) -> pd.DataFrame:
    """The company's changes plus each subscription's trial start (and the installed base's
    conversion, which happened before the history), ordered per account in time."""
    a = company.accounts
    ch = company.changes
    n = len(a)
    price0 = co.list_price(a["tier0"].to_numpy(), a["currency"].to_numpy(), a["pricing_arm"].to_numpy() == 1)
    trial = pd.DataFrame(
        {
            "acc": a["acc"].to_numpy(),
            "day": a["trial_start"].to_numpy(),
            "sec": a["tod"].to_numpy(),
            "kind": np.full(n, co.K_TRIAL, np.int8),
            "sub_seq": np.zeros(n, np.int16),
            "tier": a["tier0"].to_numpy(),
            "seats": a["seats0"].to_numpy(),
            "price": price0,
            "period_start": a["trial_start"].to_numpy(),
            "period_end": a["trial_end"].to_numpy(),
            "cancel_at": np.full(n, -1),
        }
    )
    b = a[a["base"]]
    anchor = np.where(b["sales_led"], 1, co.day_of_month(b["trial_end"].to_numpy()))
    base_conv = pd.DataFrame(
        {
            "acc": b["acc"].to_numpy(),
            "day": b["trial_end"].to_numpy(),
            "sec": b["tod"].to_numpy(),
            "kind": np.full(len(b), co.K_CONVERT, np.int8),
            "sub_seq": np.zeros(len(b), np.int16),
            "tier": b["tier0"].to_numpy(),
            "seats": b["seats0"].to_numpy(),
            "price": price0[b.index.to_numpy()],
            "period_start": b["trial_end"].to_numpy(),
            "period_end": co.renewal_day(co.month_of(b["trial_end"].to_numpy()) + 1, anchor),
            "cancel_at": np.full(len(b), -1),
        }
    )
    out = pd.concat([trial, base_conv, ch], ignore_index=True)
    out["kind"] = out["kind"].astype(np.int8)
    out = out.sort_values(["acc", "day", "sec", "kind"], kind="stable").reset_index(drop=True)
    out["seq"] = out.groupby("acc").cumcount().to_numpy()
    return out


def subscriptions(company: Company, life: pd.DataFrame | None = None) -> pd.DataFrame:
    """Subscription change events (created, trial conversion, renewals, dunning, plan changes, cancellation)."""
    life = lifecycle(company) if life is None else life
    a = company.accounts
    acc = life["acc"].to_numpy()
    kind = life["kind"].to_numpy()
    gidx = a["gidx"].to_numpy()[acc]
    tod = a["tod"].to_numpy()[acc]
    event_at = co.at_seconds(life["day"].to_numpy(), life["sec"].to_numpy())
    # periods carry forward within a subscription (a deleted subscription keeps its last period)
    per = life[["acc", "sub_seq", "period_start", "period_end"]].replace(
        {"period_start": {-1: np.nan}, "period_end": {-1: np.nan}}
    )
    per = per.groupby(["acc", "sub_seq"])[["period_start", "period_end"]].ffill()
    ps = per["period_start"].fillna(-1).to_numpy().astype(np.int64)
    pe = per["period_end"].fillna(-1).to_numpy().astype(np.int64)
    first_sub = life["sub_seq"].to_numpy() == 0
    deleted = np.isin(kind, [co.K_LOST, co.K_CANCEL_VOL, co.K_CANCEL_INVOL])
    cancel_at = life["cancel_at"].to_numpy()
    currency = a["currency"].to_numpy()[acc]
    frame = pd.DataFrame(
        {
            "event_id": ids.stripe_ids(
                "evt_", ids.object_key(company.spec.seed, 3, gidx, life["seq"].to_numpy())
            ),
            "event_type": _lookup(kind, _STATUS, 0),
            "subscription_id": subscription_ids(company, acc, life["sub_seq"].to_numpy()),
            "customer_id": a["customer_id"].to_numpy()[acc],
            "status": _lookup(kind, _STATUS, 1),
            "item_price_id": price_ids(
                life["tier"].to_numpy(), currency, a["pricing_arm"].to_numpy()[acc] == 1
            ),
            "item_tier": np.asarray(co.TIERS, dtype=object)[life["tier"].to_numpy()],
            "item_quantity": life["seats"].to_numpy().astype(np.int64),
            "item_unit_amount": life["price"].to_numpy().astype(np.int64),
            "currency": np.asarray(co.CURRENCIES, dtype=object)[currency],
            "trial_start": np.where(first_sub, co.at_seconds(a["trial_start"].to_numpy()[acc], tod), -1),
            "trial_end": np.where(first_sub, co.at_seconds(a["trial_end"].to_numpy()[acc], tod), -1),
            "current_period_start": np.where(ps >= 0, co.at_seconds(ps, tod), -1),
            "current_period_end": np.where(pe >= 0, co.at_seconds(pe, tod), -1),
            "cancel_at": np.where(cancel_at >= 0, co.at_seconds(cancel_at, tod), -1),
            "canceled_at": np.where(deleted, event_at, -1),
            "cancellation_details_reason": _lookup(kind, _STATUS, 2),
            "event_at": event_at,
        }
    )
    return deliver(frame, day_of(event_at), company.world.start, ARRIVAL_HOUR["subscriptions"])


def _invoice_lines(company: Company) -> pd.DataFrame:
    inv = company.invoices.rename(columns={"day": "inv_day", "sec": "inv_sec", "amount": "inv_amount"})
    return company.lines.merge(
        inv[["acc", "inv_seq", "sub_seq", "inv_day", "inv_sec", "failures", "status", "resolved_day"]],
        on=["acc", "inv_seq"],
        how="left",
        validate="many_to_one",
    )


def invoice_ids(company: Company, acc: np.ndarray, inv_seq: np.ndarray) -> np.ndarray:
    """Stripe-like ``in_`` ids of (account position, invoice sequence) pairs."""
    gidx = company.accounts["gidx"].to_numpy()[acc]
    return ids.stripe_ids("in_", ids.object_key(company.spec.seed, 4, gidx, inv_seq))


def billing_invoices(company: Company) -> pd.DataFrame:
    """Invoice lines, one row per status version (an ``open`` line is re-delivered ``paid``/``uncollectible``)."""
    a = company.accounts
    ln = _invoice_lines(company)
    acc = ln["acc"].to_numpy()
    gidx = a["gidx"].to_numpy()[acc]
    lt = ln["line_type"].to_numpy()
    seq = ln["inv_seq"].to_numpy()
    credit = lt == 2
    created = np.where(
        credit,
        co.at_seconds(ln["day"].to_numpy(), ln["sec"].to_numpy()),
        co.at_seconds(ln["inv_day"].to_numpy(), ln["inv_sec"].to_numpy()),
    )
    failures = ln["failures"].to_numpy()
    final = ln["status"].to_numpy()
    resolved = ln["resolved_day"].to_numpy()
    tier_name = np.asarray([t.capitalize() for t in co.TIERS], dtype=object)[ln["tier"].to_numpy()]
    qty = ln["seats"].to_numpy()
    what = qty.astype(str).astype(object) + " × " + tier_name + " seat"
    line_no = ln["line_no"].to_numpy()
    description = np.where(
        credit,
        "Service credit",
        np.where(lt == 1, np.where(line_no == 0, "Unused time on ", "Remaining time on ") + what, what),
    )
    base = pd.DataFrame(
        {
            "invoice_id": invoice_ids(company, acc, seq),
            "invoice_line_id": ids.stripe_ids(
                "il_", ids.object_key(company.spec.seed, 5, gidx, seq * 16 + lt * 4 + line_no)
            ),
            "customer_id": a["customer_id"].to_numpy()[acc],
            "subscription_id": subscription_ids(company, acc, ln["sub_seq"].to_numpy()),
            "line_type": np.asarray(["subscription", "proration", "credit_note"], dtype=object)[lt],
            "description": description,
            "tier": np.asarray(co.TIERS, dtype=object)[ln["tier"].to_numpy()],
            "quantity": qty.astype(np.int64),
            "unit_amount": ln["price"].to_numpy().astype(np.int64),
            "amount": ln["amount"].to_numpy().astype(np.int64),
            "currency": currency_codes(company)[acc],
            "period_start": ln["period_start"].to_numpy(),
            "period_end": ln["period_end"].to_numpy(),
            "proration": ln["proration"].to_numpy().astype(bool),
            "status": np.where(credit | (failures == 0), "paid", "open").astype(object),
            "credit_note_id": np.where(
                credit, ids.stripe_ids("cn_", ids.object_key(company.spec.seed, 6, gidx, seq)), None
            ),
            "created": created,
            "updated_at": np.where(credit, created, created + 3600),
        }
    )
    # the second version of a line whose first payment failed: paid after a retry, or written off
    again = (~credit) & (failures > 0) & (resolved >= 0)
    v2 = base[again].copy()
    v2["status"] = np.asarray(co.INVOICE_STATUSES, dtype=object)[final[again]]
    v2["updated_at"] = co.at_seconds(resolved[again], ln["inv_sec"].to_numpy()[again]) + 3600
    frame = pd.concat([base, v2], ignore_index=True)
    return deliver(
        frame, day_of(frame["updated_at"].to_numpy()), company.world.start, ARRIVAL_HOUR["billing_invoices"]
    )


def billing_payments(company: Company) -> pd.DataFrame:
    """Every charge attempt (dunning retries on days +3, +7, +12) and a refund per credit note."""
    a = company.accounts
    inv = company.invoices
    inv = inv[inv["amount"] > 0]
    paid = inv["status"].to_numpy() == co.ST_PAID
    failures = inv["failures"].to_numpy().astype(np.int64)
    attempts = failures + paid
    rows = np.repeat(np.arange(len(inv)), attempts)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(attempts) - attempts, attempts) + 1
    acc = inv["acc"].to_numpy()[rows]
    seq = inv["inv_seq"].to_numpy()[rows]
    gidx = a["gidx"].to_numpy()[acc]
    offset = np.array([0, *co.DUNNING_RETRY_DAYS])[k - 1]
    created = co.at_seconds(inv["day"].to_numpy()[rows] + offset, inv["sec"].to_numpy()[rows]) + 3600
    failed = k <= failures[rows]
    key = ids.object_key(company.spec.seed, 7, gidx, seq * 8 + k)
    charges = pd.DataFrame(
        {
            "payment_id": ids.stripe_ids("ch_", key),
            "type": "charge",
            "invoice_id": invoice_ids(company, acc, seq),
            "customer_id": a["customer_id"].to_numpy()[acc],
            "amount": inv["amount"].to_numpy()[rows].astype(np.int64),
            "currency": currency_codes(company)[acc],
            "status": np.where(failed, "failed", "succeeded").astype(object),
            "failure_code": np.where(failed, FAILURE_CODES[(key % np.uint64(10)).astype(np.int64)], None),
            "attempt": k.astype(np.int64),
            "created": created,
        }
    )
    cn = company.lines[company.lines["line_type"] == 2]
    cacc, cseq = cn["acc"].to_numpy(), cn["inv_seq"].to_numpy()
    cgidx = a["gidx"].to_numpy()[cacc]
    refunds = pd.DataFrame(
        {
            "payment_id": ids.stripe_ids("re_", ids.object_key(company.spec.seed, 8, cgidx, cseq)),
            "type": "refund",
            "invoice_id": invoice_ids(company, cacc, cseq),
            "customer_id": a["customer_id"].to_numpy()[cacc],
            "amount": cn["amount"].to_numpy().astype(np.int64),
            "currency": currency_codes(company)[cacc],
            "status": "succeeded",
            "failure_code": None,
            "attempt": np.ones(len(cn), np.int64),
            "created": co.at_seconds(cn["day"].to_numpy(), cn["sec"].to_numpy()) + 600,
        }
    )
    frame = pd.concat([charges, refunds], ignore_index=True)
    return deliver(
        frame, day_of(frame["created"].to_numpy()), company.world.start, ARRIVAL_HOUR["billing_payments"]
    )


# ---------------------------------------------------------------------------------------------
# FX


def fx_micros(world: World) -> tuple[np.ndarray, np.ndarray]:
    """``(days, rates)``: rates[c, i] = USD per unit of CURRENCIES[c] on days[i], in millionths.

    A random walk on weekdays (weekends repeat Friday's rate), one per currency.
    """
    return _fx(world.spec.seed, world.start, world.end)


@lru_cache(maxsize=8)
def _fx(seed: int, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, co.S_FX])
    days = np.arange(start, end + 1)
    weekday = co.weekday(days) < 5
    rates = np.empty((len(co.CURRENCIES), len(days)), dtype=np.int64)
    rates[0] = 1_000_000
    for c, cur in enumerate(co.CURRENCIES[1:], start=1):
        steps = rng.normal(0.0, FX_DAILY_SIGMA, len(days)) * weekday
        rates[c] = np.rint(FX_BASE[cur] * np.exp(np.cumsum(steps)) * 1_000_000).astype(np.int64)
    days.flags.writeable = False
    rates.flags.writeable = False
    return days, rates


def fx_rates(world: World) -> pd.DataFrame:
    """Daily USD-per-unit rates of every currency (USD = 1), delivered the same afternoon."""
    days, rates = fx_micros(world)
    n, k = len(days), len(co.CURRENCIES)
    frame = pd.DataFrame(
        {
            "date": np.tile(days, k),
            "currency": np.repeat(np.asarray(co.CURRENCIES, dtype=object), n),
            "usd_per_unit": rates.ravel(),
        }
    )
    frame[PARTITION] = frame["date"].to_numpy()
    frame[ARRIVAL] = at(frame["date"].to_numpy(), FX_HOUR)
    return frame

"""The demo company's business: accounts, trials, subscriptions, renewals, dunning and churn.

A B2B SaaS company selling per-seat plans (starter / growth / enterprise) in USD, EUR, GBP and
CAD. The simulation is vectorised over accounts and steps one calendar month at a time; it
produces plain tables (days are epoch-day integers) that the ``sources_*`` modules turn into
the landing extracts:

- ``accounts``: one row per account (ids from ``ids``, names from ``names``, currency, owner AE,
  experiment arms, trial);
- ``changes``: lifecycle events (trial start, conversion, renewal, past due, recovery,
  cancellation requested, voluntary/involuntary cancellation, upgrade, downgrade, reactivation);
- ``invoices`` / ``lines``: what billing invoiced, with each invoice's payment outcome;
- ``intervals``: contiguous usage periods (trial / customer / grace), see :func:`usage_periods`.

Accounts are simulated in chunks of :data:`CHUNK_ACCOUNTS` (each chunk seeded on its own, so
memory stays bounded at any scale and chunk *k* is the same whatever the total). Within a chunk
accounts are ordered by signup, so product ids increase with time inside a chunk.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from helpers.demo import names
from helpers.demo.ids import numbered_ids, object_key, stripe_ids
from helpers.demo.spec import DemoSpec

CHUNK_ACCOUNTS = 50_000
EPOCH = dt.date(1970, 1, 1)

TIERS = ("starter", "growth", "enterprise")
CURRENCIES = ("USD", "EUR", "GBP", "CAD")
CURRENCY_P = (0.65, 0.17, 0.10, 0.08)
# List price per seat per month in minor units, [tier, currency].
PRICES = np.array(
    [
        [2500, 2300, 2000, 3400],
        [4900, 4500, 3900, 6700],
        [9900, 9200, 7900, 13500],
    ],
    dtype=np.int64,
)
PRICING_TREATMENT_UPLIFT = 110  # percent of list price for starter/growth in the pricing treatment arm
MIN_SEATS = np.array([1, 5, 20])
MAX_SEATS = np.array([10, 80, 500])
STATES = ("trial", "customer", "grace")
TRIAL, CUSTOMER, GRACE, NONE = 0, 1, 2, -1

BASE_SHARE = 0.30  # share of accounts that are already customers when the history starts
SIGNUP_GROWTH = 0.04  # monthly growth of new signups
WEEKDAY_WEIGHT = np.array([1.10, 1.05, 1.05, 1.00, 0.85, 0.35, 0.30])  # Mon..Sun
MONTH_WEIGHT = np.array([1.05, 1.0, 1.05, 1.0, 1.0, 0.95, 0.90, 0.85, 1.10, 1.05, 1.0, 0.80])  # Jan..Dec
TRIAL_DAYS = 14
GRACE_DAYS = 14
DUNNING_RETRY_DAYS = (3, 7, 12)  # retries after the failed renewal attempt; cancelled on day GRACE_DAYS
DUNNING_OUTCOME_P = (0.35, 0.20, 0.10, 0.35)  # recovered at retry 1, 2, 3; cancelled (payment_failed)
P_PAYMENT_FAIL = 0.03  # per renewal
P_VOLUNTARY = np.array([0.016, 0.010, 0.005])  # cancellation requested per cycle, by tier
P_UPGRADE = 0.030
P_DOWNGRADE = 0.012
P_REACTIVATE = 0.012  # per month for churned accounts
P_CREDIT_NOTE = 0.004  # per paid subscription invoice
P_CONVERT = 0.42
PRICING_WINDOW_DAYS = 270  # pricing experiment: accounts whose trial starts in the last 270 days
ONBOARDING_WINDOW_DAYS = 180
EXPERIMENTS = ("pricing_v2", "onboarding_checklist")

# Change kinds (``changes.kind``).
K_LEAD, K_TRIAL, K_CONVERT, K_LOST, K_RENEW, K_PAST_DUE, K_RECOVER = 0, 1, 2, 3, 4, 5, 6
K_CANCEL_REQUEST, K_CANCEL_VOL, K_CANCEL_INVOL, K_UPGRADE, K_DOWNGRADE, K_REACTIVATE = 7, 8, 9, 10, 11, 12
KINDS = (
    "lead",
    "trial_started",
    "converted",
    "trial_lost",
    "renewed",
    "past_due",
    "recovered",
    "cancel_requested",
    "canceled_voluntary",
    "canceled_involuntary",
    "upgraded",
    "downgraded",
    "reactivated",
)
# Invoice kinds and final statuses.
INV_SUBSCRIPTION, INV_PRORATION = 0, 1
ST_PAID, ST_OPEN, ST_UNCOLLECTIBLE = 0, 1, 2
INVOICE_STATUSES = ("paid", "open", "uncollectible")

# Stream tags for numpy SeedSequence: (seed, tag, ...) — one independent stream per purpose.
S_ACCOUNTS, S_FX, S_HR, S_CLOUD, S_OPS, S_CREDIT, S_CRM, S_FAULT = 11, 12, 13, 14, 15, 16, 17, 99


# ---------------------------------------------------------------------------------------------
# calendar helpers (days are epoch-day integers)


def epoch_day(day: dt.date) -> int:
    """Days since 1970-01-01 of a date."""
    return (day - EPOCH).days


def to_date(day: int) -> dt.date:
    """The date of an epoch day."""
    return EPOCH + dt.timedelta(days=int(day))


def month_of(days: np.ndarray | int) -> np.ndarray:
    """Month index (months since 1970-01) of epoch days."""
    return np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def month_start(months: np.ndarray | int) -> np.ndarray:
    """First epoch day of month indices."""
    return np.asarray(months, dtype=np.int64).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def day_of_month(days: np.ndarray) -> np.ndarray:
    """Day of month (1-31) of epoch days."""
    return np.asarray(days, dtype=np.int64) - month_start(month_of(days)) + 1


def renewal_day(months: np.ndarray | int, anchor: np.ndarray) -> np.ndarray:
    """The billing anchor's day in each month (clipped to the month's length, as Stripe does)."""
    ms = month_start(months)
    dim = month_start(np.asarray(months) + 1) - ms
    return ms + np.minimum(anchor, dim) - 1


def at_seconds(day: np.ndarray | int, sec: np.ndarray | int) -> np.ndarray:
    """Epoch seconds of second-of-day ``sec`` on epoch ``day``."""
    return np.asarray(day, dtype=np.int64) * 86_400 + np.asarray(sec, dtype=np.int64)


def weekday(days: np.ndarray) -> np.ndarray:
    """Monday = 0 (1970-01-01 was a Thursday)."""
    return (np.asarray(days, dtype=np.int64) + 3) % 7


def categorical(rng: np.random.Generator, n: int, p: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """``n`` draws of category indices with probabilities (or weights) ``p``."""
    cum = np.cumsum(np.asarray(p, dtype=float))
    cum /= cum[-1]
    return np.searchsorted(cum, rng.random(n), side="right").clip(0, len(cum) - 1)


# ---------------------------------------------------------------------------------------------
# the world: what every chunk shares


@dataclass(frozen=True)
class World:
    """Company-wide facts every chunk shares: the calendar, signup curve and the sales team."""

    spec: DemoSpec

    def rng(self, *stream: int) -> np.random.Generator:
        """An independent generator for ``stream`` (e.g. ``(S_ACCOUNTS, chunk)``) under the seed."""
        return np.random.default_rng([self.spec.seed, *stream])

    @cached_property
    def start(self) -> int:
        return epoch_day(self.spec.start)

    @cached_property
    def end(self) -> int:
        return epoch_day(self.spec.end)

    @cached_property
    def months(self) -> np.ndarray:
        """Month indices of the history, first to last."""
        return np.arange(int(month_of(self.start)), int(month_of(self.end)) + 1)

    @cached_property
    def n_chunks(self) -> int:
        return max(1, -(-self.spec.accounts // CHUNK_ACCOUNTS))

    @cached_property
    def signup_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Signup days and their probabilities: growth, weekday dips and seasonality."""
        days = np.arange(self.start, self.end + 1)
        months_in = (days - self.start) / 30.44
        month_no = (month_of(days) % 12).astype(int)
        w = (1 + SIGNUP_GROWTH) ** months_in * WEEKDAY_WEIGHT[weekday(days)] * MONTH_WEIGHT[month_no]
        return days, w / w.sum()

    @cached_property
    def aes(self) -> pd.DataFrame:
        """The account executives: ``ae_id`` (Salesforce user id) and ``ae_name``."""
        n = int(np.clip(round(self.spec.accounts / 150), 4, 400))
        return pd.DataFrame(
            {"ae_id": numbered_ids("0055g", np.arange(n) + 1, 10), "ae_name": names.ae_names(n)}
        )


# ---------------------------------------------------------------------------------------------
# one chunk of accounts


@dataclass
class Company:
    """One chunk of simulated accounts (all of them at the default scale)."""

    world: World
    chunk: int
    offset: int  # global index of the first account
    accounts: pd.DataFrame
    changes: pd.DataFrame
    invoices: pd.DataFrame
    lines: pd.DataFrame
    intervals: pd.DataFrame
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def spec(self) -> DemoSpec:
        return self.world.spec


def account_ids(company: Company) -> list[str]:
    """The product account ids of ``company`` (``A0000001`` ...), in account order."""
    return company.accounts["account_id"].tolist()


def usage_periods(company: Company) -> pd.DataFrame:
    """One row per contiguous period an account uses the product, for the events generator.

    Columns ``account_id`` (str), ``start``, ``end`` (dates, ``end`` inclusive), ``seats`` (int),
    ``tier`` (str) and ``state``: ``trial``; ``customer``; ``grace`` = payment failed and the
    account is in dunning (billing status past_due, or cancelled for non-payment by a faulty
    billing run, see ``churn_misclassified``) but still uses the product. Periods start no
    earlier than the history's start and end no later than its end; a new row starts whenever
    the state, tier or seats change.
    """
    iv = company.intervals
    acct = company.accounts["account_id"].to_numpy()
    out = pd.DataFrame(
        {
            "account_id": acct[iv["acc"].to_numpy()],
            "start": iv["start"].to_numpy().astype("datetime64[D]"),
            "end": iv["end"].to_numpy().astype("datetime64[D]"),
            "seats": iv["seats"].to_numpy().astype(np.int64),
            "tier": np.asarray(TIERS, dtype=object)[iv["tier"].to_numpy()],
            "state": np.asarray(STATES, dtype=object)[iv["state"].to_numpy()],
        }
    )
    out["start"] = out["start"].dt.date
    out["end"] = out["end"].dt.date
    return out.sort_values(["account_id", "start"], kind="stable").reset_index(drop=True)


class _Log:
    """Column lists appended per step and concatenated once (no per-row Python work)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, **cols: np.ndarray | int) -> None:
        n = max((len(v) for v in cols.values() if isinstance(v, np.ndarray)), default=0)
        if n == 0:
            return
        self.parts.append({k: (v if isinstance(v, np.ndarray) else np.full(n, v)) for k, v in cols.items()})

    def frame(self, columns: dict[str, str]) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({c: np.array([], dtype=t) for c, t in columns.items()})
        return pd.DataFrame(
            {c: np.concatenate([p[c] for p in self.parts]).astype(t) for c, t in columns.items()}
        )


_CHANGE_COLS = {
    "acc": "int64",
    "day": "int64",
    "sec": "int64",
    "kind": "int8",
    "sub_seq": "int16",
    "tier": "int8",
    "seats": "int64",
    "price": "int64",
    "period_start": "int64",
    "period_end": "int64",
    "cancel_at": "int64",
}
_INVOICE_COLS = {
    "acc": "int64",
    "sub_seq": "int16",
    "inv_seq": "int64",
    "inv_kind": "int8",
    "day": "int64",
    "sec": "int64",
    "amount": "int64",
    "failures": "int8",
    "status": "int8",
    "resolved_day": "int64",
}
_LINE_COLS = {
    "acc": "int64",
    "inv_seq": "int64",
    "line_no": "int8",
    "line_type": "int8",  # 0 subscription, 1 proration, 2 credit note
    "period_start": "int64",
    "period_end": "int64",
    "tier": "int8",
    "seats": "int64",
    "price": "int64",
    "amount": "int64",
    "proration": "bool",
    "day": "int64",  # created
    "sec": "int64",
}
_INTERVAL_COLS = {
    "acc": "int64",
    "start": "int64",
    "end": "int64",
    "state": "int8",
    "tier": "int8",
    "seats": "int64",
}


def _seats(rng: np.random.Generator, tier: np.ndarray) -> np.ndarray:
    n = len(tier)
    starter = np.clip(1 + rng.poisson(2.5, n), 1, 10)
    growth = np.clip(np.rint(np.exp(rng.normal(np.log(12), 0.5, n))), 5, 80)
    enterprise = np.clip(np.rint(np.exp(rng.normal(np.log(60), 0.6, n))), 20, 500)
    return np.choose(tier, [starter, growth, enterprise]).astype(np.int64)


def list_price(tier: np.ndarray, currency: np.ndarray, pricing_treatment: np.ndarray) -> np.ndarray:
    """Price per seat-month in minor units (the pricing experiment's treatment pays 10% more)."""
    base = PRICES[tier, currency]
    uplift = pricing_treatment & (tier < 2)
    return np.where(uplift, (base * PRICING_TREATMENT_UPLIFT) // 100, base)


def _prorate(amount: np.ndarray, used: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``amount * used / total`` rounded half up, in integers."""
    return (2 * amount * used + total) // (2 * total)


def simulate_chunk(world: World, chunk: int) -> Company:
    """Simulate accounts ``[chunk * CHUNK_ACCOUNTS, ...)``: their whole lifecycle in the history."""
    spec = world.spec
    lo = chunk * CHUNK_ACCOUNTS
    n = min(spec.accounts, lo + CHUNK_ACCOUNTS) - lo
    rng = world.rng(S_ACCOUNTS, chunk)
    start, end = world.start, world.end

    # --- who: installed base (customers before the history starts) and new signups
    base = rng.random(n) < BASE_SHARE
    days, p = world.signup_curve
    trial_start = rng.choice(days, size=n, p=p).astype(np.int64)
    since = start - rng.integers(1, 3 * 365, size=n)  # installed base: customer since
    trial_start = np.where(base, since - TRIAL_DAYS, trial_start)
    order = np.lexsort((~base, trial_start))
    base, trial_start = base[order], trial_start[order]
    trial_end = trial_start + TRIAL_DAYS
    gidx = lo + np.arange(n)

    tier = np.where(base, categorical(rng, n, (0.45, 0.40, 0.15)), categorical(rng, n, (0.55, 0.35, 0.10)))
    seats = _seats(rng, tier)
    trial_seats = np.minimum(seats, 1 + rng.poisson(2.0, n))
    currency = categorical(rng, n, CURRENCY_P)
    countries = names.country_codes(CURRENCIES)
    n_countries = np.array([len(names.COUNTRIES[c]) for c in CURRENCIES])
    first_country = np.concatenate([[0], np.cumsum(n_countries)[:-1]])
    country = first_country[currency] + rng.integers(0, 60, n) % n_countries[currency]
    sales_led = (tier == 2) | ((tier == 1) & (rng.random(n) < 0.30))
    in_pricing = ~base & (trial_start > end - PRICING_WINDOW_DAYS)
    in_onboarding = ~base & (trial_start > end - ONBOARDING_WINDOW_DAYS)
    pricing_t = in_pricing & (rng.random(n) < 0.5)
    onboarding_t = in_onboarding & (rng.random(n) < 0.5)
    p_conv = P_CONVERT + 0.12 * (tier == 2) - 0.04 * pricing_t + 0.07 * onboarding_t
    converted = base | (rng.random(n) < p_conv)
    tod = np.clip(rng.normal(15 * 3600, 3 * 3600, n), 0, 86_399).astype(np.int64)  # time of day of signup
    lead_lag = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 31, n))
    lead_tod = np.clip(tod - rng.integers(600, 7200, n), 0, 86_399)
    ae = rng.integers(0, len(world.aes), n)
    industry = rng.integers(0, len(names.INDUSTRIES), n)
    contact = (rng.integers(0, len(names.PEOPLE_FIRST), n), rng.integers(0, len(names.PEOPLE_LAST), n))
    name, domain = names.company_names(gidx, country, spec.seed, CURRENCIES)
    price = list_price(tier, currency, pricing_t)

    accounts = pd.DataFrame(
        {
            "acc": np.arange(n),
            "gidx": gidx,
            "account_id": numbered_ids("A", gidx + 1, 7),
            "crm_id": numbered_ids("001", gidx + 1, 12),
            "customer_id": stripe_ids("cus_", object_key(spec.seed, 1, gidx)),
            "name": name,
            "domain": domain,
            "email": np.asarray(names.PEOPLE_FIRST, dtype=object)[contact[0]]
            + "."
            + np.asarray(names.PEOPLE_LAST, dtype=object)[contact[1]]
            + "@"
            + domain,
            "industry": np.asarray(names.INDUSTRIES, dtype=object)[industry],
            "country": np.asarray(countries, dtype=object)[country],
            "currency": currency.astype(np.int8),
            "ae": ae,
            "base": base,
            "lead_day": trial_start - lead_lag,
            "lead_sec": lead_tod,
            "trial_start": trial_start,
            "trial_end": trial_end,
            "tod": tod,
            "converted": converted,
            "tier0": tier.astype(np.int8),
            "seats0": seats,
            "trial_seats": trial_seats,
            "sales_led": sales_led,
            "pricing_arm": np.where(in_pricing, np.where(pricing_t, 1, 0), -1).astype(np.int8),
            "onboarding_arm": np.where(in_onboarding, np.where(onboarding_t, 1, 0), -1).astype(np.int8),
        }
    )

    changes, invoices, lines, intervals = _Log(), _Log(), _Log(), _Log()

    # --- state
    status = np.where(base, 1, 0).astype(np.int8)  # 0 trial/prospect, 1 customer, 2 churned, 3 lost trial
    cur_tier, cur_seats, cur_price = tier.copy(), seats.copy(), price.copy()
    anchor = np.where(sales_led, 1, day_of_month(trial_end)).astype(np.int64)
    sub_seq = np.zeros(n, np.int64)
    inv_count = np.zeros(n, np.int64)
    pending = np.zeros(n, np.int8)  # 1 cancel at next renewal, 2 downgrade at next renewal
    pend_tier, pend_seats = tier.copy(), seats.copy()
    churn_day = np.full(n, np.iinfo(np.int64).max)
    open_start = np.where(base, start, trial_start).astype(np.int64)
    open_state = np.where(base, CUSTOMER, TRIAL).astype(np.int8)
    open_tier, open_seats = tier.copy(), np.where(base, seats, trial_seats)
    all_idx = np.arange(n)

    def split(mask: np.ndarray, day: np.ndarray, state: int | np.ndarray) -> None:
        """Close the open usage interval of ``mask`` accounts at ``day - 1``; open a new one (state >= 0)."""
        idx = all_idx[mask]
        if not len(idx):
            return
        d = np.broadcast_to(day, (n,))[idx]
        st = np.broadcast_to(state, (n,))[idx]
        has = open_start[idx] >= 0
        keep = has & (d - 1 >= open_start[idx])
        k = idx[keep]
        intervals.add(
            acc=k,
            start=open_start[k],
            end=(d - 1)[keep],
            state=open_state[k],
            tier=open_tier[k],
            seats=open_seats[k],
        )
        open_start[idx] = np.where(st >= 0, d, -1)
        open_state[idx] = np.where(st >= 0, st, 0)
        open_tier[idx] = cur_tier[idx]
        open_seats[idx] = cur_seats[idx]

    def log_change(mask: np.ndarray, kind: int, day: np.ndarray, **over: np.ndarray) -> None:
        idx = all_idx[mask]
        if not len(idx):
            return

        def col(name: str, default: np.ndarray) -> np.ndarray:
            return np.broadcast_to(over.get(name, default), (n,))[idx]

        changes.add(
            acc=idx,
            day=np.broadcast_to(day, (n,))[idx],
            sec=col("sec", tod),
            kind=np.full(len(idx), kind),
            sub_seq=sub_seq[idx],
            tier=cur_tier[idx],
            seats=cur_seats[idx],
            price=cur_price[idx],
            period_start=col("period_start", np.full(n, -1)),
            period_end=col("period_end", np.full(n, -1)),
            cancel_at=col("cancel_at", np.full(n, -1)),
        )

    def invoice(
        mask: np.ndarray,
        day: np.ndarray,
        period_start: np.ndarray,
        period_end: np.ndarray,
        amount: np.ndarray,
        proration: np.ndarray | bool,
        failures: np.ndarray | int = 0,
        status: np.ndarray | int = ST_PAID,
        resolved: np.ndarray | None = None,
    ) -> None:
        """A subscription invoice with one line for ``mask`` accounts."""
        idx = all_idx[mask]
        if not len(idx):
            return
        inv_count[idx] += 1
        seq = inv_count[idx]
        b = lambda v: np.broadcast_to(v, (n,))[idx]  # noqa: E731
        res = b(resolved if resolved is not None else day)
        invoices.add(
            acc=idx,
            sub_seq=sub_seq[idx],
            inv_seq=seq,
            inv_kind=INV_SUBSCRIPTION,
            day=b(day),
            sec=tod[idx],
            amount=b(amount),
            failures=b(failures),
            status=b(status),
            resolved_day=res,
        )
        lines.add(
            acc=idx,
            inv_seq=seq,
            line_no=0,
            line_type=0,
            period_start=b(period_start),
            period_end=b(period_end),
            tier=cur_tier[idx],
            seats=cur_seats[idx],
            price=cur_price[idx],
            amount=b(amount),
            proration=b(proration),
            day=b(day),
            sec=tod[idx],
        )

    # --- opening invoices of the installed base: the cycle running when the history starts
    m0 = int(world.months[0])
    first_renewal = renewal_day(m0, anchor)
    opening = base & (first_renewal > start)
    prev = renewal_day(m0 - 1, anchor)
    invoice(opening, prev, prev, first_renewal, cur_seats * cur_price, False)

    for mi in world.months:
        ms, me = int(month_start(mi)), int(month_start(mi + 1))
        dim = me - ms

        # 1. trials ending this month: convert or lose
        ending = (status == 0) & ~base & (trial_end >= ms) & (trial_end < me) & (trial_end <= end)
        lost = ending & ~converted
        status[lost] = 3
        log_change(lost, K_LOST, trial_end)
        split(lost, trial_end, NONE)
        conv = ending & converted

        # 2. reactivations of accounts churned before this month
        u_react = rng.random(n)
        react_day = ms + rng.integers(0, dim, n)
        react = (status == 2) & (churn_day < ms) & (u_react < P_REACTIVATE) & (react_day <= end)
        sub_seq[react] += 1

        starters = conv | react
        sday = np.where(conv, trial_end, react_day)
        status[starters] = 1
        anchor[starters] = np.where(sales_led, 1, day_of_month(sday))[starters]
        nxt_start = renewal_day(mi + 1, anchor)
        log_change(conv, K_CONVERT, sday, sec=tod, period_start=sday, period_end=nxt_start)
        log_change(react, K_REACTIVATE, sday, sec=tod, period_start=sday, period_end=nxt_start)
        split(starters, sday, CUSTOMER)
        first_prorated = sales_led & (sday != ms)
        full = cur_seats * cur_price
        first_amount = np.where(first_prorated, _prorate(full, nxt_start - sday, np.full(n, dim)), full)
        invoice(starters, sday, sday, nxt_start, first_amount, first_prorated)

        # 3. renewals of customers whose cycle started before this month
        rm, rn = renewal_day(mi, anchor), renewal_day(mi + 1, anchor)
        ren = (status == 1) & ~starters & (rm <= end) & (rm >= start)
        vc = ren & (pending == 1)
        status[vc] = 2
        churn_day[vc] = rm[vc]
        log_change(vc, K_CANCEL_VOL, rm, cancel_at=rm)
        split(vc, rm, NONE)
        pending[vc] = 0
        ren &= ~vc
        dg = ren & (pending == 2)
        cur_tier[dg], cur_seats[dg] = pend_tier[dg], pend_seats[dg]
        cur_price[dg] = list_price(cur_tier, currency, pricing_t)[dg]
        log_change(dg, K_DOWNGRADE, rm, sec=np.maximum(tod - 1, 0), period_start=rm, period_end=rn)
        split(dg, rm, CUSTOMER)
        pending[dg] = 0
        log_change(ren, K_RENEW, rm, period_start=rm, period_end=rn)

        fail = ren & (rng.random(n) < P_PAYMENT_FAIL)
        outcome = categorical(rng, n, DUNNING_OUTCOME_P)
        resolve = rm + np.array([*DUNNING_RETRY_DAYS, GRACE_DAYS])[outcome]
        in_history = resolve <= end
        recovered = fail & (outcome < 3) & in_history
        cancelled = fail & (outcome == 3) & in_history
        # failures seen by the end of the history: attempts on days rm, rm+3, rm+7, rm+12
        attempt_days = rm[:, None] + np.array([0, *DUNNING_RETRY_DAYS])[None, :]
        seen_failures = np.minimum(outcome + 1, 4)
        seen_failures = np.minimum(seen_failures, (attempt_days <= end).sum(axis=1))
        inv_status = np.where(recovered, ST_PAID, np.where(cancelled, ST_UNCOLLECTIBLE, ST_OPEN))
        inv_status = np.where(fail, inv_status, ST_PAID)
        invoice(
            ren,
            rm,
            rm,
            rn,
            cur_seats * cur_price,
            False,
            failures=np.where(fail, seen_failures, 0),
            status=inv_status,
            resolved=np.where(fail & in_history, resolve, np.where(fail, -1, rm)),
        )
        log_change(fail, K_PAST_DUE, rm, sec=tod + 3600, period_start=rm, period_end=rn)
        split(fail, rm, GRACE)
        log_change(recovered, K_RECOVER, resolve, sec=tod + 3600, period_start=rm, period_end=rn)
        split(recovered, resolve, CUSTOMER)
        status[cancelled] = 2
        churn_day[cancelled] = resolve[cancelled]
        log_change(cancelled, K_CANCEL_INVOL, resolve, sec=tod + 3600, period_start=rm, period_end=rn)
        split(cancelled, resolve, NONE)

        # 4. mid-cycle events in cycles that started this month without a payment problem
        cs = np.where(starters, sday, rm)
        nx = np.where(starters, nxt_start, rn)
        mid = (starters | (ren & ~fail)) & (nx - cs >= 2)
        u = rng.random(n)
        d = cs + 1 + np.floor(rng.random(n) * np.maximum(nx - cs - 1, 1)).astype(np.int64)
        d_sec = rng.integers(8 * 3600, 20 * 3600, n)
        tier_move = rng.random(n) < 0.3
        seat_factor = rng.uniform(1.2, 1.6, n)
        down_factor = rng.uniform(0.6, 0.85, n)
        p_vol = P_VOLUNTARY[cur_tier] * np.where(onboarding_t, 0.85, 1.0)
        mid &= d <= end
        up = mid & (u < P_UPGRADE)
        vol = mid & (u >= P_UPGRADE) & (u < P_UPGRADE + p_vol)
        down = mid & (u >= P_UPGRADE + p_vol) & (u < P_UPGRADE + p_vol + P_DOWNGRADE)

        old_tier, old_seats, old_price = cur_tier.copy(), cur_seats.copy(), cur_price.copy()
        old_amount = old_seats * old_price
        to_tier = up & tier_move & (cur_tier < 2)
        cur_tier[to_tier] += 1
        more = up & ~to_tier
        cur_seats[more] = np.maximum(cur_seats + 1, np.ceil(cur_seats * seat_factor).astype(np.int64))[more]
        cur_seats[to_tier] = np.maximum(cur_seats, MIN_SEATS[cur_tier])[to_tier]
        cur_price[up] = list_price(cur_tier, currency, pricing_t)[up]
        new_amount = cur_seats * cur_price
        used, total = nx - d, nx - cs
        credit = -_prorate(old_amount, used, total)
        charge = _prorate(new_amount, used, total)
        idx = all_idx[up]
        if len(idx):
            inv_count[idx] += 1
            seq = inv_count[idx]
            invoices.add(
                acc=idx,
                sub_seq=sub_seq[idx],
                inv_seq=seq,
                inv_kind=INV_PRORATION,
                day=d[idx],
                sec=d_sec[idx],
                amount=(credit + charge)[idx],
                failures=0,
                status=ST_PAID,
                resolved_day=d[idx],
            )
            for line_no, (t, s, pr, amt) in enumerate(
                (
                    (old_tier, old_seats, old_price, credit),
                    (cur_tier, cur_seats, cur_price, charge),
                )
            ):
                lines.add(
                    acc=idx,
                    inv_seq=seq,
                    line_no=line_no,
                    line_type=1,
                    period_start=d[idx],
                    period_end=nx[idx],
                    tier=t[idx],
                    seats=s[idx],
                    price=pr[idx],
                    amount=amt[idx],
                    proration=True,
                    day=d[idx],
                    sec=d_sec[idx],
                )
        log_change(up, K_UPGRADE, d, sec=d_sec, period_start=cs, period_end=nx)
        split(up, d, CUSTOMER)
        pending[vol] = 1
        log_change(vol, K_CANCEL_REQUEST, d, sec=d_sec, period_start=cs, period_end=nx, cancel_at=nx)
        pending[down] = 2
        pend_tier[down] = np.where(tier_move & (cur_tier > 0), cur_tier - 1, cur_tier)[down]
        pend_seats[down] = np.maximum(1, np.floor(cur_seats * down_factor).astype(np.int64))[down]
        pend_seats[down] = np.clip(pend_seats, MIN_SEATS[pend_tier], MAX_SEATS[pend_tier])[down]

    # close what is still open at the end of the history
    still = open_start >= 0
    intervals.add(
        acc=all_idx[still],
        start=open_start[still],
        end=np.full(int(still.sum()), end),
        state=open_state[still],
        tier=open_tier[still],
        seats=open_seats[still],
    )

    inv = invoices.frame(_INVOICE_COLS)
    ln = lines.frame(_LINE_COLS)
    ln = _credit_notes(world, chunk, inv, ln)
    return Company(
        world=world,
        chunk=chunk,
        offset=lo,
        accounts=accounts,
        changes=changes.frame(_CHANGE_COLS).sort_values(["acc", "day", "sec", "kind"], kind="stable"),
        invoices=inv.sort_values(["acc", "inv_seq"], kind="stable").reset_index(drop=True),
        lines=ln.sort_values(["acc", "inv_seq", "line_type", "line_no"], kind="stable").reset_index(
            drop=True
        ),
        intervals=intervals.frame(_INTERVAL_COLS)
        .sort_values(["acc", "start"], kind="stable")
        .reset_index(drop=True),
    )


def _credit_notes(world: World, chunk: int, inv: pd.DataFrame, ln: pd.DataFrame) -> pd.DataFrame:
    """Service credits: a few paid subscription invoices get a negative credit-note line.

    The credit covers the rest of the line's service period (``[credit day, period_end)``), so
    it is recognised over the same days as what it credits.
    """
    rng = world.rng(S_CREDIT, chunk)
    sub = ln[ln["line_type"] == 0]
    status = inv.set_index(["acc", "inv_seq"])["status"]
    st = status.reindex(pd.MultiIndex.from_frame(sub[["acc", "inv_seq"]])).to_numpy()
    n = len(sub)
    u, off, pct = rng.random(n), rng.integers(3, 11, n), rng.integers(10, 51, n)
    day = sub["day"].to_numpy() + off
    pend = sub["period_end"].to_numpy()
    ok = (
        (u < P_CREDIT_NOTE)
        & (st == ST_PAID)
        & (pend - sub["period_start"].to_numpy() >= 14)
        & (day >= world.start)
        & (day <= world.end)
        & (day < pend)
    )
    if not ok.any():
        return ln
    cn = sub[ok].copy()
    cn["line_type"] = 2
    cn["line_no"] = 0
    cn["day"] = day[ok]
    cn["period_start"] = day[ok]
    cn["amount"] = -(sub["amount"].to_numpy()[ok] * pct[ok] // 100)
    cn["proration"] = False
    return pd.concat([ln, cn], ignore_index=True)


def simulate(spec: DemoSpec) -> list[Company]:
    """Every chunk of the company (convenient at small scale; ``generate`` streams chunks)."""
    world = World(spec)
    return [simulate_chunk(world, c) for c in range(world.n_chunks)]

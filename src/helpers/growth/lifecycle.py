"""Account lifecycle: one history per company from the CRM, checked and repaired against billing.

The Growth sources (docs/demo.md, "Sources and columns") are loaded here once per run
(:func:`load_sources`, the latest version of every row that had *arrived* by ``as_of``) and the
lifecycle is built from them:

- the CRM's stage history (``crm_stage_history``) is the system of record for stages: lead,
  trial, customer (on a tier and a number of seats), churned, lost;
- billing (``subscriptions``) adds the dunning episodes the CRM does not track (``past_due``
  and the recovery from it), and is the evidence used to repair the CRM;
- ``crm_accounts`` maps CRM accounts to product accounts (the key of billing, the account
  database and the experiments); ``sales_records`` annotate sales-led conversions.

The states and the transitions allowed between them are declared once, in :data:`TRANSITIONS`.
A CRM transition that is not allowed (``lead -> customer``: the trial is missing) is a *skipped
stage*; where billing shows the missing middle state (the trialing subscription, the first
paid activation) the row is inferred with billing's date and marked ``inferred=True``.
CRM plan changes dated away from billing's proration are re-dated the same way (the
``growth_revenue_mismatch`` repair). Nothing here edits a source: repairs are extra or
re-dated rows in the derived history, each saying where it came from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers.core import paths
from helpers.core.timeutil import as_utc
from helpers.storage import landing
from helpers.storage.bulkread import read_verified_bulk, read_verified_table, release_memory, share_values
from helpers.storage.verified import LandingReport

# ---------------------------------------------------------------- states and transitions

STATES: tuple[str, ...] = ("lead", "trial", "customer", "past_due", "churned", "lost")
CRM_STAGES: tuple[str, ...] = ("lead", "trial", "customer", "churned", "lost")  # what AEs record
TIER_RANK: dict[str, int] = {"starter": 0, "growth": 1, "enterprise": 2}

# Every allowed transition and the kind of movement it is. ``None`` is "no history yet".
TRANSITIONS: dict[tuple[str | None, str], str] = {
    (None, "lead"): "lead_created",
    ("lead", "trial"): "trial_started",
    ("lead", "lost"): "lead_lost",
    ("trial", "customer"): "converted",
    ("trial", "lost"): "trial_lost",
    ("customer", "customer"): "plan_change",  # refined to upgrade / downgrade by tier and seats
    ("customer", "past_due"): "payment_failed",  # billing only: the CRM does not track dunning
    ("past_due", "customer"): "recovered",
    ("past_due", "churned"): "churned",
    ("customer", "churned"): "churned",
    ("churned", "customer"): "reactivated",
}
# The kinds growth_daily counts, by its column names.
COUNTED_KINDS: dict[str, str] = {
    "trial_started": "trials_started",
    "converted": "new_accounts",
    "trial_lost": "trials_lost",
    "upgrade": "upgrades",
    "downgrade": "downgrades",
    "churned": "churned",
    "reactivated": "reactivations",
}
# When two accounts of one company disagree, the company is in the highest-ranked state.
_ENTITY_RANK: dict[str, int] = {"lost": 0, "churned": 1, "lead": 2, "trial": 3, "past_due": 4, "customer": 5}


def allowed(from_state: str | None, to_state: str) -> bool:
    """True if ``from_state -> to_state`` is a declared transition."""
    return (from_state, to_state) in TRANSITIONS


def missing_between(from_state: str | None, to_state: str) -> str | None:
    """The one CRM stage B with ``from -> B -> to`` allowed (the stage a skip jumped over), else None."""
    found = [b for b in CRM_STAGES if allowed(from_state, b) and allowed(b, to_state)]
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------- sources


def latest_version(frame: pd.DataFrame, key: str | list[str]) -> pd.DataFrame:
    """The latest delivered version of each ``key``: a changed row is a new row in a later delivery.

    Order: arrival time, then the landing partition, then the row's position (later wins).
    """
    if frame.empty:
        return frame.copy()
    plain = isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1
    out = frame if plain else frame.reset_index(drop=True)  # no copy of a frame as read
    by = [sort_codes(out[c]) for c in ("_partition", "_arrived_at") if c in out.columns]
    order = np.lexsort([np.arange(len(out)), *by])  # stable: arrival, then partition, then row
    keys = [key] if isinstance(key, str) else list(key)
    # the last row of each key in that order, kept in row order (drop_duplicates + sort_index)
    later = out[keys].iloc[order].duplicated(keep="last").to_numpy()
    kept = np.zeros(len(out), dtype=bool)
    kept[order[~later]] = True
    if kept.all():
        return out.copy(deep=False) if out is frame else out
    return out[kept].reset_index(drop=True)


def sort_codes(values: pd.Series) -> np.ndarray:
    """Integers that sort as ``values`` do in ``sort_values`` (missing values last), for ``np.lexsort``."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        ints = values.to_numpy(dtype="datetime64[ns]").view(np.int64).copy()
        ints[values.isna().to_numpy()] = np.iinfo(np.int64).max
        return ints
    codes, _ = pd.factorize(values, sort=True)
    return np.where(codes < 0, len(codes) + 1, codes)


def read_landed(
    source: str,
    *,
    as_of: dt.datetime,
    root: Path | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    columns: list[str] | None = None,
    report: LandingReport | None = None,
    keep: list[str] | None = None,
) -> pd.DataFrame:
    """The usable rows of ``source`` as of ``as_of``, with ``_partition`` and ``_arrived_at``, each
    delivery verified on read (:func:`helpers.storage.verified.read_verified`: its sha256 against the
    manifest, its contract columns and types).

    What the verified read left out (whole deliveries, single rows) is added to ``report``. The
    ``keep``: screen every column, return only these (see ``read_verified_bulk``). The
    Growth pipelines read every daily partition of the history on each run (thousands of small
    files at the default size), where one file at a time costs seconds per source: the files are
    read in one DuckDB scan when they share one schema (:func:`helpers.storage.bulkread.read_verified_bulk`,
    the same rows and report as ``read_verified``).
    """
    got = read_verified_bulk(
        source,
        as_of=as_of,
        start=start,
        end=end,
        columns=columns,
        root=root or paths.landing_dir(),
        keep=keep,
    )
    if report is not None:
        report.extend(got.report)
    return got.frame


# The columns Growth reads of its two largest sources it does not show whole (every column is
# still verified and screened on read: the same deliveries and rows are left out). Others: all.
SOURCE_COLUMNS: dict[str, list[str]] = {
    "billing_invoices": ["invoice_id", "invoice_line_id", "customer_id", "subscription_id", "line_type",
                         "amount", "currency", "period_start", "period_end", "status", "created"],
    "billing_payments": ["payment_id", "type", "invoice_id", "status", "created"],
}  # fmt: skip


# The ids that one source's rows share with another's or repeat in its own: each value is held once.
SHARED_IDS = ["account_id", "product_account_id", "billing_customer_id", "customer_id", "subscription_id",
              "invoice_id"]  # fmt: skip


@dataclass(frozen=True)
class GrowthSources:
    """Everything the Growth pipelines read, as it had arrived by ``as_of`` (latest versions)."""

    as_of: pd.Timestamp
    crm_accounts: pd.DataFrame  # every version (account_id, updated_at)
    crm_stages: pd.DataFrame  # one row per stage_event_id
    account_db: pd.DataFrame  # every version (account_id, updated_at)
    sales: pd.DataFrame  # one row per deal_id
    customers: pd.DataFrame  # one row per customer_id
    subscriptions: pd.DataFrame  # one row per event_id
    invoices: pd.DataFrame  # one row per invoice_line_id (its latest status)
    payments: pd.DataFrame  # one row per payment_id
    fx: pd.DataFrame  # one row per (date, currency)
    assignments: pd.DataFrame  # one row per (account_id, experiment)
    usage: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["account_id", "day"]))
    landing: LandingReport = field(default_factory=LandingReport)  # what the verified reads left out

    def rows(self) -> dict[str, int]:
        """Row counts per source, for the notebook's Load section."""
        return {
            name: len(getattr(self, name))
            for name in (
                "crm_accounts",
                "crm_stages",
                "account_db",
                "sales",
                "customers",
                "subscriptions",
                "invoices",
                "payments",
                "fx",
                "assignments",
                "usage",
            )
        }


# An event's account: ``"groupId": "<id>"`` in its ``context`` JSON text, the first one. RE2 (Arrow's
# regular expressions) reads ``\s`` as ASCII whitespace only; the class below is Python's ``\s``
# (every character ``str.isspace`` accepts), so the account found is the one ``re`` would find.
_SPACE = r"[\t-\r\x1c- \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
GROUP_ID_PATTERN = '"groupId":' + _SPACE + '*"(?P<account_id>[^"]+)"'


def product_usage(
    *,
    as_of: dt.datetime,
    start: dt.date,
    end: dt.date,
    root: Path | None = None,
    report: LandingReport | None = None,
) -> pd.DataFrame:
    """Distinct (product ``account_id``, UTC ``day``) with product usage in [start, end].

    From the ``events`` stream (``context.groupId``) and ``api_logs`` (``account_id``), bucketed by
    the event's own timestamp. Empty when neither source has landed (the usage evidence of
    ``churn_misclassified`` is then billing-only). The events are partitioned by receive date, so
    a few days after ``end`` are read too (offline devices sync late).

    The rows stay Arrow until they are distinct pairs: a month of events is about 175,000 rows of
    JSON text and 27,000 pairs (0.38 CPU-s a run through pandas strings, 0.18 this way).
    """
    parts = []
    reads = (
        ("events", ["context", "timestamp"], end + dt.timedelta(days=3)),
        ("api_logs", ["account_id", "timestamp"], end),
    )
    for source, columns, last in reads:
        if source not in landing.sources(root):
            continue
        table, got = read_verified_table(
            source, columns=columns, as_of=as_of, start=start, end=last, root=root
        )
        if report is not None:
            report.extend(got)
        if not table.num_rows:
            continue
        if source == "events":
            account = pc.struct_field(
                pc.extract_regex(table["context"].cast(pa.string()), GROUP_ID_PATTERN), [0]
            )
        else:
            account = table["account_id"].cast(pa.string())
        ts = table["timestamp"]
        if not pa.types.is_timestamp(ts.type):  # landed as text: parsed as pandas parses it
            ts = pa.array(pd.to_datetime(ts.to_pandas(), utc=True))
        day = ts.cast(pa.timestamp(ts.type.unit, tz="UTC")).cast(pa.date32())  # naive: taken as UTC
        parts.append(pa.table({"account_id": account, "day": day}))
    if not parts:
        return pd.DataFrame({"account_id": pd.Series(dtype=object), "day": pd.Series(dtype=object)})
    use = pa.concat_tables(parts)
    keep = pc.and_(
        pc.and_(pc.is_valid(use["account_id"]), pc.is_valid(use["day"])),
        pc.and_(pc.greater_equal(use["day"], pa.scalar(start)), pc.less_equal(use["day"], pa.scalar(end))),
    )
    pairs = use.filter(keep).group_by(["account_id", "day"]).aggregate([])
    out = pairs.to_pandas()[["account_id", "day"]]  # day: datetime.date objects, as .dt.date gives
    return out.sort_values(["account_id", "day"]).reset_index(drop=True)


def load_sources(
    as_of: dt.datetime,
    *,
    root: Path | None = None,
    usage_window: tuple[dt.date, dt.date] | None = None,
    quarantine_root: Path | None = None,
) -> GrowthSources:
    """Read the Growth sources as they had arrived by ``as_of``; each deduplicated to its latest version.

    ``usage_window`` (first, last day) also reads product usage for that window (see
    :func:`product_usage`); without it ``usage`` is empty. Every delivery is verified on read
    (:func:`read_landed`); what was left out is ``GrowthSources.landing``, appended to the
    quarantine zone (``quarantine_root``; the workbook's when reading the workbook's landing zone).
    """
    report = LandingReport()
    pool: dict[object, object] = {}  # one object per id across the sources (share_values)

    def read(source: str) -> pd.DataFrame:
        frame = read_landed(source, as_of=as_of, root=root, report=report, keep=SOURCE_COLUMNS.get(source))
        # one time unit everywhere: merge_asof refuses to compare microseconds with nanoseconds
        for c in frame.select_dtypes(include=["datetimetz"]).columns:
            frame[c] = frame[c].astype("datetime64[ns, UTC]")  # column by column: no copy of the rest
        return share_values(frame, SHARED_IDS, pool)

    def latest(source: str, key: str | list[str]) -> pd.DataFrame:
        frame = latest_version(read(source), key)
        release_memory()  # the read's and the deduplication's garbage (millions of rows at scale)
        return frame

    subs = latest("subscriptions", "event_id")
    usage = (
        share_values(
            product_usage(as_of=as_of, start=usage_window[0], end=usage_window[1], root=root, report=report),
            ["account_id", "day"],
            pool,
        )
        if usage_window
        else pd.DataFrame({"account_id": pd.Series(dtype=object), "day": pd.Series(dtype=object)})
    )
    frames = dict(
        crm_accounts=latest("crm_accounts", ["account_id", "updated_at"]),
        crm_stages=latest("crm_stage_history", "stage_event_id"),
        account_db=latest("account_db", ["account_id", "updated_at"]),
        sales=latest("sales_records", "deal_id"),
        customers=latest("billing_customers", "customer_id"),
        invoices=latest("billing_invoices", "invoice_line_id"),
        payments=latest("billing_payments", "payment_id"),
        fx=latest("fx_rates", ["date", "currency"]),
        assignments=latest("experiment_assignments", ["account_id", "experiment"]),
    )
    if root is None or quarantine_root is not None:
        report.write(quarantine_root)
    return GrowthSources(
        as_of=pd.Timestamp(as_utc(as_of)), subscriptions=subs, usage=usage, landing=report, **frames
    )


def crm_product_map(crm_accounts: pd.DataFrame) -> pd.Series:
    """CRM ``account_id`` -> product ``account_id`` (from each CRM account's latest version)."""
    if crm_accounts.empty:
        return pd.Series(dtype=object)
    last = crm_accounts.sort_values(["account_id", "updated_at"], kind="stable").drop_duplicates(
        "account_id", keep="last"
    )
    return last.set_index("account_id")["product_account_id"]


def crm_of_product(crm_accounts: pd.DataFrame) -> pd.Series:
    """Product ``account_id`` -> CRM ``account_id`` (the inverse of :func:`crm_product_map`)."""
    m = crm_product_map(crm_accounts).dropna()
    return pd.Series(m.index, index=m.to_numpy()).groupby(level=0).first()


# ---------------------------------------------------------------- the CRM chain and its skips


def crm_chain(stages: pd.DataFrame) -> pd.DataFrame:
    """CRM stage rows in effective order per account, with the state each row actually left.

    ``prev_stage`` is the previous row's ``to_stage`` (``None`` for the first): a row whose
    ``from_stage`` disagrees with it, or whose ``prev_stage -> to_stage`` is not allowed, is a
    skip however the AE filled in ``from_stage``.
    """
    cols = ["stage_event_id", "account_id", "from_stage", "to_stage", "tier", "seats", "effective_at"]
    cols += ["entered_at", "entered_by"]
    if stages.empty:
        return pd.DataFrame(columns=[*cols, "prev_stage", "prev_effective_at", "allowed"])
    g = stages[cols].sort_values(
        ["account_id", "effective_at", "entered_at", "stage_event_id"], kind="stable"
    )
    g = g.reset_index(drop=True)
    by = g.groupby("account_id", sort=False)
    g["prev_stage"] = by["to_stage"].shift().astype(object)
    g["prev_effective_at"] = by["effective_at"].shift()
    g["prev_stage"] = g["prev_stage"].where(g["prev_stage"].notna(), None)
    pairs = list(zip(g["prev_stage"], g["to_stage"], strict=True))
    g["allowed"] = [p in TRANSITIONS for p in pairs]
    return g


def skipped_stages(chain: pd.DataFrame) -> pd.DataFrame:
    """CRM rows whose transition is not allowed, with the stage they jumped over (where unique)."""
    bad = chain[~chain["allowed"]].copy()
    bad["missing_stage"] = [
        missing_between(a, c) for a, c in zip(bad["prev_stage"], bad["to_stage"], strict=True)
    ]
    bad["reason"] = [
        f"{a or '(none)'} -> {c} skips {m}" if m else f"{a or '(none)'} -> {c} is not an allowed transition"
        for a, c, m in zip(bad["prev_stage"], bad["to_stage"], bad["missing_stage"], strict=True)
    ]
    return bad.reset_index(drop=True)


# ---------------------------------------------------------------- billing milestones


def subscription_states(subscriptions: pd.DataFrame) -> pd.DataFrame:
    """Subscription events in order per subscription, with the previous event's status, tier and seats."""
    if subscriptions.empty:
        return subscriptions.assign(prev_status=None, prev_tier=None, prev_quantity=np.nan)
    when = "at" if "at" in subscriptions.columns else "event_at"  # effective time once churn is classified
    s = sorted_by(subscriptions, ["subscription_id", when, "event_id"])
    first = group_starts(s["subscription_id"])
    s["prev_status"] = s["status"].shift().mask(first)
    s["prev_tier"] = s["item_tier"].shift().mask(first)
    s["prev_quantity"] = s["item_quantity"].shift().mask(first)
    return s


def sorted_by(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame.sort_values(columns, kind="stable").reset_index(drop=True)``, sorting integer codes."""
    order = np.lexsort([sort_codes(frame[c]) for c in reversed(columns)])
    out = frame.take(order)  # one copy, not a second by reset_index (millions of rows at scale)
    out.index = pd.RangeIndex(len(out))
    return out


def last_before(frame: pd.DataFrame, key: str, time: str, at: pd.Timestamp) -> np.ndarray:
    """The positions of each ``key``'s last row with ``time`` before ``at``, in row order: what
    ``frame[frame[time] < at].drop_duplicates(key, keep="last")`` keeps, without copying the frame."""
    rows = np.flatnonzero((frame[time] < at).to_numpy())
    return rows[~pd.Index(frame[key].to_numpy()[rows]).duplicated(keep="last")]


def group_starts(keys: pd.Series) -> pd.Series:
    """True on each row that starts a run of equal ``keys`` (rows sorted by them) or has no key."""
    same = (keys == keys.shift()).fillna(False).astype(bool)
    return ~same | keys.isna()  # a missing key has no group (as groupby drops it): nothing before it


def billing_milestones(subscriptions: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """What billing says happened to each product account, as lifecycle rows.

    ``to_stage``: ``trial`` (a trialing subscription created), ``customer`` (a subscription's
    first paid activation: conversion or reactivation; and ``recovered`` after dunning),
    ``past_due``, ``churned`` (cancelled with a reason), ``lost`` (a trial cancelled without
    one), and ``customer`` plan changes (``kind`` ``plan_change``: tier or seats changed while
    active). Columns: product ``account_id``, ``to_stage``, ``kind``, ``at``, ``tier``, ``seats``,
    ``event_id``, ``subscription_id``.
    """
    out_cols = ["account_id", "to_stage", "kind", "at", "tier", "seats", "event_id", "subscription_id"]
    if subscriptions.empty:
        return pd.DataFrame(columns=out_cols)
    s = subscription_states(subscriptions)
    paying = s["status"].isin(["active", "past_due"])
    was_paying = s["prev_status"].isin(["active", "past_due"])
    kind = pd.Series(None, index=s.index, dtype=object)
    kind[(s["status"] == "trialing") & s["prev_status"].isna()] = "trial_started"
    kind[(s["status"] == "active") & ~was_paying] = "activated"
    kind[(s["status"] == "past_due") & (s["prev_status"] == "active")] = "payment_failed"
    kind[(s["status"] == "active") & (s["prev_status"] == "past_due")] = "recovered"
    changed = (s["item_tier"] != s["prev_tier"]) | (s["item_quantity"] != s["prev_quantity"])
    kind[paying & was_paying & changed & (s["status"] == "active")] = "plan_change"
    cancelled = s["status"] == "canceled"
    kind[cancelled & s["cancellation_details_reason"].notna()] = "churned"
    kind[cancelled & s["cancellation_details_reason"].isna()] = "trial_lost"
    stage = kind.map(
        {
            "trial_started": "trial",
            "activated": "customer",
            "payment_failed": "past_due",
            "recovered": "customer",
            "plan_change": "customer",
            "churned": "churned",
            "trial_lost": "lost",
        }
    )
    acct = customers.set_index("customer_id")["account_id"] if len(customers) else pd.Series(dtype=object)
    out = pd.DataFrame(
        {
            "account_id": s["customer_id"].map(acct),
            "to_stage": stage,
            "kind": kind,
            "at": s["at"] if "at" in s.columns else s["event_at"],
            "tier": s["item_tier"],
            "seats": s["item_quantity"].astype("float"),
            "event_id": s["event_id"],
            "subscription_id": s["subscription_id"],
        }
    )
    return (
        out[out["kind"].notna()]
        .sort_values(["account_id", "at", "event_id"], kind="stable")
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------- repairs


def repair_skipped(
    skipped: pd.DataFrame, milestones: pd.DataFrame, crm_to_product: pd.Series, *, slack: dt.timedelta
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Infer the missing middle stage of each skip from billing: ``(inferred rows, unrepaired skips)``.

    The middle stage must have happened between the skip's two CRM rows (``slack`` either side,
    for CRM/billing clock differences); the billing milestone closest to the skip's row wins.
    Inferred rows carry billing's time, tier and seats, ``inferred=True`` and the billing event
    they came from, and an id ``inferred:<skip row id>``.
    """
    inferred_cols = [
        "stage_event_id",
        "account_id",
        "from_stage",
        "to_stage",
        "tier",
        "seats",
        "effective_at",
        "inferred_from",
    ]
    if skipped.empty:
        return pd.DataFrame(columns=inferred_cols), skipped.copy()
    sk = skipped[skipped["missing_stage"].notna()].copy()
    sk["product_account_id"] = sk["account_id"].map(crm_to_product)
    m = milestones.rename(columns={"account_id": "product_account_id", "to_stage": "missing_stage"})
    cand = sk.merge(m[m["kind"] != "plan_change"], on=["product_account_id", "missing_stage"], how="inner")
    lo = cand["prev_effective_at"].fillna(pd.Timestamp("1970-01-01", tz="UTC")) - slack
    cand = cand[(cand["at"] >= lo) & (cand["at"] <= cand["effective_at"] + slack)]
    cand = cand.assign(gap=(cand["effective_at"] - cand["at"]).abs())
    best = cand.sort_values(["stage_event_id", "gap", "event_id"], kind="stable").drop_duplicates(
        "stage_event_id"
    )
    inferred = pd.DataFrame(
        {
            "stage_event_id": "inferred:" + best["stage_event_id"],
            "account_id": best["account_id"],
            "from_stage": best["prev_stage"],
            "to_stage": best["missing_stage"],
            "tier": best["tier_y"].where(best["missing_stage"] == "customer", None),
            "seats": best["seats_y"].where(best["missing_stage"] == "customer", np.nan),
            "effective_at": best["at"],
            "inferred_from": "subscriptions:" + best["event_id"],
        }
    ).reset_index(drop=True)
    unrepaired = skipped[~skipped["stage_event_id"].isin(best["stage_event_id"])].reset_index(drop=True)
    return inferred, unrepaired


def plan_change_gaps(
    chain: pd.DataFrame,
    milestones: pd.DataFrame,
    crm_to_product: pd.Series,
    *,
    tolerance: dt.timedelta,
    window: dt.timedelta = dt.timedelta(days=35),
) -> pd.DataFrame:
    """CRM plan changes (customer -> customer) against billing's plan change nearest in time.

    Each CRM plan change gets ``billing_at`` (billing's nearest plan change of the same product
    account within ``window``, NaT if none) and ``gap_days`` (CRM minus billing); ``mismatch``
    is a gap beyond ``tolerance``: the CRM dates the expansion away from when billing prorated it.
    """
    cols = ["stage_event_id", "account_id", "product_account_id", "effective_at", "tier", "seats"]
    plan = chain[(chain["prev_stage"] == "customer") & (chain["to_stage"] == "customer")].copy()
    plan["product_account_id"] = plan["account_id"].map(crm_to_product)
    plan = plan[cols].dropna(subset=["product_account_id"])
    bill = milestones[milestones["kind"] == "plan_change"][["account_id", "at", "event_id"]]
    bill = bill.rename(columns={"account_id": "product_account_id", "event_id": "billing_event_id"})
    if plan.empty:
        return plan.assign(
            billing_at=pd.Series(pd.NaT, index=plan.index, dtype="datetime64[ns, UTC]"),
            billing_event_id=None,
            gap_days=np.nan,
            mismatch=False,
        )
    plan = plan.sort_values("effective_at", kind="stable")
    bill = bill.assign(billing_at=bill["at"]).sort_values("at", kind="stable")
    matched = pd.merge_asof(
        plan,
        bill[["product_account_id", "at", "billing_at", "billing_event_id"]],
        left_on="effective_at",
        right_on="at",
        by="product_account_id",
        direction="nearest",
        tolerance=pd.Timedelta(window),
    ).drop(columns="at")
    matched["gap_days"] = (matched["effective_at"] - matched["billing_at"]).dt.total_seconds() / 86_400
    matched["mismatch"] = matched["gap_days"].abs() > tolerance.total_seconds() / 86_400
    return matched.sort_values(["account_id", "effective_at"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- the history


@dataclass(frozen=True)
class Lifecycle:
    """The lifecycle of every account and how it was repaired (see the module doc)."""

    chain: pd.DataFrame  # the CRM as recorded, with prev_stage / allowed
    skipped: pd.DataFrame  # CRM rows that skip a stage
    inferred: pd.DataFrame  # rows inferred from billing for the skips
    unrepaired: pd.DataFrame  # skips billing could not explain
    plan_gaps: pd.DataFrame  # CRM plan changes vs billing's (mismatch = re-dated in history)
    history: pd.DataFrame  # the repaired history: one row per transition, in order per account
    # billing_milestones(*milestones_of), computed once per history (see :func:`milestones_for`)
    milestones: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    milestones_of: tuple[pd.DataFrame, pd.DataFrame] | None = field(default=None, repr=False, compare=False)


def milestones_for(life: Lifecycle, events: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """:func:`billing_milestones` of ``events`` and ``customers``: the lifecycle's own when it was
    built from these very frames (the same objects), else computed now. Callers must not modify it."""
    basis = life.milestones_of
    if life.milestones is not None and basis is not None and basis[0] is events and basis[1] is customers:
        return life.milestones
    return billing_milestones(events, customers)


def build(
    src: GrowthSources,
    *,
    events: pd.DataFrame | None = None,
    tolerance: dt.timedelta = dt.timedelta(days=3),
    repair: bool = True,
) -> Lifecycle:
    """The repaired lifecycle history of every account (``repair=False``: the CRM as recorded).

    ``history`` columns: ``account_id`` (CRM), ``product_account_id``, ``stage_event_id``,
    ``from_stage`` (the state before, recomputed in order), ``to_stage``, ``kind`` (from
    :data:`TRANSITIONS`, plan changes split into ``upgrade``/``downgrade``; ``skip`` for an
    unrepaired skip), ``tier``, ``seats``, ``effective_at``, ``entered_at``, ``source``
    (``crm``/``subscriptions``), ``inferred``, ``inferred_from``, ``crm_effective_at`` (the
    CRM's own date when re-dated), and ``deal_id``/``contract_start`` for sales-led conversions.

    ``events``: the subscription events to read billing from, normally
    :func:`helpers.growth.metrics.effective_events` (churn as classified); default ``src.subscriptions``.
    """
    to_product = crm_product_map(src.crm_accounts)
    chain = crm_chain(src.crm_stages)
    skipped = skipped_stages(chain)
    basis = (src.subscriptions if events is None else events, src.customers)
    milestones = billing_milestones(*basis)
    inferred, unrepaired = repair_skipped(skipped, milestones, to_product, slack=dt.timedelta(days=1))
    gaps = plan_change_gaps(chain, milestones, to_product, tolerance=tolerance)
    crm = chain.drop(columns=["prev_stage", "prev_effective_at", "allowed"]).assign(
        source="crm", inferred=False, inferred_from=None
    )
    crm["crm_effective_at"] = crm["effective_at"].where(pd.Series(False, index=crm.index))
    redate = gaps[gaps["mismatch"] & gaps["billing_at"].notna()].set_index("stage_event_id")
    hit = crm["stage_event_id"].isin(redate.index) if repair else pd.Series(False, index=crm.index)
    if hit.any():
        ids = crm.loc[hit, "stage_event_id"]
        crm.loc[hit, "crm_effective_at"] = crm.loc[hit, "effective_at"]
        crm.loc[hit, "effective_at"] = ids.map(redate["billing_at"])
        crm.loc[hit, "inferred"] = True
        crm.loc[hit, "inferred_from"] = "subscriptions:" + ids.map(redate["billing_event_id"]).astype(str)
    extra = inferred.assign(source="subscriptions", inferred=True, entered_at=pd.NaT, entered_by=None)
    extra = extra if repair else extra.iloc[0:0]
    dunning = milestones[milestones["kind"].isin(["payment_failed", "recovered"])]
    product_to_crm = crm_of_product(src.crm_accounts)
    dunning = pd.DataFrame(
        {
            "stage_event_id": "billing:" + dunning["event_id"],
            "account_id": dunning["account_id"].map(product_to_crm),
            "to_stage": dunning["to_stage"],
            "tier": None,
            "seats": np.nan,
            "effective_at": dunning["at"],
            "entered_at": pd.NaT,
            "entered_by": None,
            "source": "subscriptions",
            "inferred": False,
            "inferred_from": None,
        }
    ).dropna(subset=["account_id"])
    # all-empty columns (no tier on a dunning row) must not decide the combined dtypes
    frames = [f.dropna(axis=1, how="all") for f in (crm, extra, dunning) if len(f)]
    hist = pd.concat(frames, ignore_index=True).reindex(columns=crm.columns) if frames else crm
    hist["crm_effective_at"] = pd.to_datetime(hist["crm_effective_at"], utc=True)
    hist = hist.drop(columns=["from_stage"], errors="ignore")
    hist["product_account_id"] = hist["account_id"].map(to_product)
    hist = _classify(hist)
    hist = _annotate_deals(hist, src.sales)
    return Lifecycle(chain, skipped, inferred, unrepaired, gaps, hist, milestones, basis)


def _classify(hist: pd.DataFrame) -> pd.DataFrame:
    """Order each account's rows, recompute ``from_stage`` and name each transition's ``kind``."""
    h = hist.sort_values(["account_id", "effective_at", "stage_event_id"], kind="stable", ignore_index=True)
    by = h.groupby("account_id", sort=False)
    h["from_stage"] = by["to_stage"].shift().astype(object)
    h["from_stage"] = h["from_stage"].where(h["from_stage"].notna(), None)
    kind = pd.Series(
        [TRANSITIONS.get((a, b), "skip") for a, b in zip(h["from_stage"], h["to_stage"], strict=True)],
        index=h.index,
        dtype=object,
    )
    # the plan before a plan change: the last customer row's tier and seats
    is_plan_row = h["to_stage"] == "customer"
    rank = h["tier"].map(TIER_RANK).where(is_plan_row)
    seats = pd.to_numeric(h["seats"], errors="coerce").where(is_plan_row)
    acct = h["account_id"]
    prev_rank = rank.groupby(acct).ffill().groupby(acct).shift()
    prev_seats = seats.groupby(acct).ffill().groupby(acct).shift()
    plan = kind == "plan_change"
    up = plan & ((rank > prev_rank) | ((rank == prev_rank) & (seats > prev_seats)))
    down = plan & ((rank < prev_rank) | ((rank == prev_rank) & (seats < prev_seats)))
    kind[up] = "upgrade"
    kind[down] = "downgrade"
    h["kind"] = kind
    h["seq"] = h.groupby("account_id").cumcount()
    cols = [
        "account_id",
        "product_account_id",
        "seq",
        "stage_event_id",
        "from_stage",
        "to_stage",
        "kind",
        "tier",
        "seats",
        "effective_at",
        "entered_at",
        "source",
        "inferred",
        "inferred_from",
        "crm_effective_at",
    ]
    return h[cols]


def _annotate_deals(hist: pd.DataFrame, sales: pd.DataFrame) -> pd.DataFrame:
    """Sales-led conversions get their closed-won deal (``deal_id``, ``contract_start``): the columns
    are added to ``hist`` itself (:func:`build`'s own frame: no copy of a history of millions of rows)."""
    out = hist
    out["deal_id"] = None
    out["contract_start"] = None
    if sales.empty:
        return out
    deals = sales.sort_values(["account_id", "signed_at"], kind="stable").drop_duplicates(
        "account_id", keep="first"
    )
    deals = deals.set_index("account_id")
    conv = out["kind"] == "converted"
    out.loc[conv, "deal_id"] = out.loc[conv, "account_id"].map(deals["deal_id"])
    out.loc[conv, "contract_start"] = out.loc[conv, "account_id"].map(deals["contract_start"])
    return out


def account_history(history: pd.DataFrame, account: str) -> pd.DataFrame:
    """One account's history (CRM or product account id), for drill-down and runbooks."""
    mask = (history["account_id"] == account) | (history["product_account_id"] == account)
    return history[mask].sort_values("seq").reset_index(drop=True)


# ---------------------------------------------------------------- companies (entities)


def entity_history(history: pd.DataFrame, entity_of: pd.Series) -> pd.DataFrame:
    """The history per company: each account's rows under its entity, keeping only real changes.

    ``entity_of`` maps product account -> entity id (:func:`helpers.growth.entities.resolve`). A company
    with one account keeps its history as is. For a company with several accounts (a duplicate,
    an acquisition) the company's state is the highest-ranked state of its accounts (customer >
    past_due > trial > lead > churned > lost); a row counts only if it changes that state, or is
    a plan change of an account that was already a customer. So a duplicate account's own
    lead -> trial -> customer while the company is a customer is not a new customer.
    """
    # at a million accounts the history is some 3.5 million rows: each whole copy is about 0.5 GB,
    # so the rows are copied once per part and the parts are let go before the sort
    entity = history["product_account_id"].map(entity_of).fillna(history["product_account_id"])
    members = pd.DataFrame({"e": entity, "a": history["account_id"]}).groupby("e")["a"].nunique()
    in_multi = entity.isin(members.index[members > 1]).to_numpy()
    single = history.take(np.flatnonzero(~in_multi))  # a copy of its own (take): columns added in place
    single["entity_id"] = entity.to_numpy()[~in_multi]
    single["entity_from"], single["entity_to"] = single["from_stage"], single["to_stage"]
    if not in_multi.any():
        single.index = pd.RangeIndex(len(single))
        return single
    m = history[in_multi].assign(entity_id=entity[in_multi])
    m = m.sort_values(["entity_id", "effective_at", "stage_event_id"], kind="stable", ignore_index=True)
    ranks = m.pivot_table(index=m.index, columns="account_id", values="to_stage", aggfunc="first").reindex(
        m.index
    )
    ranks = ranks.apply(lambda col: col.map(_ENTITY_RANK)).groupby(m["entity_id"]).ffill()
    best = ranks.max(axis=1)
    names = {v: k for k, v in _ENTITY_RANK.items()}
    m["entity_to"] = best.map(names)
    m["entity_from"] = m.groupby("entity_id")["entity_to"].shift().astype(object)
    m["entity_from"] = m["entity_from"].where(m["entity_from"].notna(), None)
    changes = m["entity_to"] != m["entity_from"]
    plan = m["kind"].isin(["upgrade", "downgrade", "plan_change"]) & (m["entity_to"] == "customer")
    kept = m[changes | plan].copy()
    kept["kind"] = [
        k if k in ("upgrade", "downgrade", "plan_change") else TRANSITIONS.get((a, b), "skip")
        for k, a, b in zip(kept["kind"], kept["entity_from"], kept["entity_to"], strict=True)
    ]
    out = pd.concat([single, kept], ignore_index=True)
    del single, kept, m, ranks
    return out.sort_values(["entity_id", "effective_at", "stage_event_id"], kind="stable", ignore_index=True)


def transition_counts(entity_hist: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Per entity, the counted transitions effective in [start, end) (columns of :data:`COUNTED_KINDS`)."""
    w = entity_hist[(entity_hist["effective_at"] >= start) & (entity_hist["effective_at"] < end)]
    w = w[w["kind"].isin(list(COUNTED_KINDS))]
    counts = pd.crosstab(w["entity_id"], w["kind"].map(COUNTED_KINDS))
    return counts.reindex(columns=list(COUNTED_KINDS.values()), fill_value=0)

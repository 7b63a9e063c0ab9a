"""The five Growth faults of the failure catalogue, injected into the in-memory extracts.

Each injector changes the in-memory extracts of one batch (see :mod:`helpers.demo.faults`) and
returns ground-truth records naming every row it changed, added or removed by the source's key.
Dates default to the last complete month of the history (``LAST`` below); every fault draws
from its own random stream, so the rest of the data stays byte-identical to the clean run.

=========================  ===========================================================================
fault (default date)       params (defaults) -> what changes
=========================  ===========================================================================
skipped_stage (LAST 1)     count=2 (per variant) -> lead->customer (trial missing in CRM, billing has it)
                           and trial->churned (customer missing)
late_account_updates       days=7, share=0.5, min_lag=7, max_lag=10 -> AE entries for changes effective
 (LAST 8)                  in [DATE, DATE+days) typed 7-10 days late
duplicate_accounts (LAST 8) variants=2, acquisitions=1 -> a second CRM + product account of an existing
                           customer under a name variant; an acquired customer kept separate (parent set)
growth_revenue_mismatch    contracts=2, upgrades=2, gap_days=60 -> sales contract start ~gap_days before
 (LAST 1)                  billing starts; CRM upgrades backdated 10-20 days before billing's proration;
                           repriced=0 (share), price_pct=20 -> subscriptions priced above their invoices
churn_misclassified        count=4, cancel_after_days=2 -> dunning accounts cancelled (payment_failed)
 (LAST 1, 14 days before)  after 2 days while they keep using the product; half of them then pay
=========================  ===========================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.demo import company as co
from helpers.demo.extracts import ARRIVAL, DAY, PARTITION, at, day_of
from helpers.demo.faults import (
    FaultContext,
    Injected,
    fault_day,
    injector,
    iso_day,
    last_month,
    move_rows,
    param,
    prefer_from,
    record,
    sample_positions,
)
from helpers.demo.ids import object_key, stripe_ids
from helpers.demo.sources_billing import subscription_ids
from helpers.demo.sources_crm import INTEGRATION_USER
from helpers.demo.spec import FaultSpec

# The parameters each injector of this module takes (checked before anything is generated).
PARAMS: dict[str, tuple[str, ...]] = {
    "skipped_stage": ("count",),
    "late_account_updates": ("days", "share", "min_lag", "max_lag"),
    "duplicate_accounts": ("variants", "acquisitions"),
    "growth_revenue_mismatch": ("contracts", "upgrades", "gap_days", "repriced", "price_pct"),
    "churn_misclassified": ("count", "cancel_after_days"),
}


def _stage_chains(f: pd.DataFrame) -> pd.DataFrame:
    """Stage rows ordered per account by effective time, with each row's position."""
    g = f.sort_values(["account_id", "effective_at", "stage_event_id"], kind="stable")
    return g.assign(pos=g.groupby("account_id").cumcount())


@injector("skipped_stage")
def skipped_stage(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """A->C transitions in the CRM: lead->customer without the trial, trial->churned without the customer."""
    if not ctx.first_chunk:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w))
    n = param(fault, "count", 2, int, 0, 10_000)
    f = ex["crm_stage_history"].copy()
    g = _stage_chains(f)
    path = g.groupby("account_id")["to_stage"].agg(tuple)
    last_eff = g.groupby("account_id")["effective_at"].max()
    last_day = pd.Series(day_of(last_eff.to_numpy()), index=last_eff.index)
    rng = ctx.rng
    accounts: dict[str, str] = {}
    drop_ids: list[str] = []
    changed_ids: list[str] = []
    # lead -> customer: accounts that converted and did nothing else in the CRM since
    conv = path[path == ("lead", "trial", "customer")].index.to_numpy()
    conv_day = last_day.reindex(conv).to_numpy()
    for acct in conv[prefer_from(rng, conv_day, day, n)]:
        rows = g[g["account_id"] == acct]
        trial = rows[rows["to_stage"] == "trial"]["stage_event_id"].iloc[0]
        cust = rows[rows["to_stage"] == "customer"]["stage_event_id"].iloc[0]
        drop_ids.append(trial)
        changed_ids.append(cust)
        f.loc[f["stage_event_id"] == cust, "from_stage"] = "lead"
        accounts[acct] = "lead->customer (trial missing; billing has the trialing subscription)"
    # trial -> churned: customers who churned without any other CRM change
    churn = path[path == ("lead", "trial", "customer", "churned")].index.to_numpy()
    churn_day = last_day.reindex(churn).to_numpy()
    for acct in churn[prefer_from(rng, churn_day, day, n)]:
        rows = g[g["account_id"] == acct]
        cust = rows[rows["to_stage"] == "customer"]["stage_event_id"].iloc[0]
        ch = rows[rows["to_stage"] == "churned"]["stage_event_id"].iloc[0]
        drop_ids.append(cust)
        changed_ids.append(ch)
        f.loc[f["stage_event_id"] == ch, "from_stage"] = "trial"
        accounts[acct] = "trial->churned (customer missing; billing has paid invoices)"
    ex["crm_stage_history"] = f[~f["stage_event_id"].isin(drop_ids)]
    if not accounts:
        return []
    return [
        record(
            fault,
            "crm_stage_history",
            day,
            "skipped stage: a transition's middle stage is missing from the CRM (removed rows and the re-pointed ones)",
            "stage_event_id",
            drop_ids + changed_ids,
            accounts=dict(sorted(accounts.items())),
            removed=sorted(drop_ids),
            changed=sorted(changed_ids),
        )
    ]


@injector("late_account_updates")
def late_account_updates(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """AE-typed CRM changes effective in [DATE, DATE+days) entered 7-10 days after they happened."""
    if not ctx.first_chunk:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 7)
    days = param(fault, "days", 7, int, 1, 366)
    share = param(fault, "share", 0.5, float, 0.0, 1.0)
    lo_lag = param(fault, "min_lag", 7, int, 1, 365)
    hi_lag = param(fault, "max_lag", 10, int, lo_lag, 365)
    f = ex["crm_stage_history"].copy()
    eff_day = day_of(f["effective_at"].to_numpy())
    cands = np.flatnonzero(
        (eff_day >= day) & (eff_day < day + days) & (f["entered_by"] != INTEGRATION_USER).to_numpy()
    )
    rng = ctx.rng
    n = max(1, int(round(len(cands) * share))) if len(cands) else 0
    pick = sample_positions(rng, cands, n)
    if not len(pick):
        return []
    lag = rng.integers(lo_lag * DAY, hi_lag * DAY + 1, len(pick))
    idx = f.index[pick]
    f.loc[idx, "entered_at"] = f.loc[idx, "effective_at"].to_numpy() + lag
    move_rows(f, f.index.isin(idx), day_of(f.loc[idx, "entered_at"].to_numpy()))
    ex["crm_stage_history"] = f
    return [
        record(
            fault,
            "crm_stage_history",
            day,
            f"late account updates: AE entries typed {lo_lag}-{hi_lag} days after the change",
            "stage_event_id",
            f.loc[idx, "stage_event_id"],
            accounts=sorted(set(f.loc[idx, "account_id"])),
            window=[iso_day(day), iso_day(day + days - 1)],
        )
    ]


def _name_variant(name: str, k: int) -> str:
    """A plausible hand-typed variant of a company name ("Acme Analytics Inc" -> "ACME ANALYTICS, Inc.")."""
    parts = name.rsplit(" ", 1)
    stem, suffix = (parts[0], parts[1]) if len(parts) == 2 else (name, "")
    variants = (
        f"{stem.upper()}, {suffix}.",
        f"{stem} {suffix}.".replace("..", "."),
        f"{stem} Incorporated" if suffix == "Inc" else f"{stem} {suffix} (EMEA)",
        f"The {stem} Company",
    )
    return variants[k % len(variants)]


@injector("duplicate_accounts")
def duplicate_accounts(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """The same company twice: a second CRM + product account under a name variant; an acquired
    customer kept as its own account (parent set, domain moved to the acquirer's)."""
    if not ctx.first_chunk or ctx.company is None:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w) + 7)
    n_var = param(fault, "variants", 2, int, 0, 1000)
    n_acq = param(fault, "acquisitions", 1, int, 0, 1000)
    rng = ctx.rng
    comp = ctx.company
    a = comp.accounts
    iv = comp.intervals
    active = np.unique(
        iv.loc[(iv["start"] <= day) & (iv["end"] >= day) & (iv["state"] == co.CUSTOMER), "acc"].to_numpy()
    )
    pick = sample_positions(rng, active, n_var + 2 * n_acq)
    pick = rng.permutation(pick)
    variants, acq = pick[:n_var], pick[n_var:]
    crm, stages, adb = ex["crm_accounts"], ex["crm_stage_history"], ex["account_db"]
    aes = w.aes
    new_crm, new_stage, new_db, pairs = [], [], [], []
    for k, acc in enumerate(variants):
        row = a.iloc[acc]
        gid = w.spec.accounts + int(row["gidx"]) + 1  # an id beyond every real account
        crm_id = f"001{gid:012d}"
        prod_id = f"A{gid:07d}"
        name = _name_variant(row["name"], k)
        domain = row["domain"] if k % 2 == 0 else "www." + row["domain"]
        owner = (int(row["ae"]) + 1 + k) % len(aes)
        t0 = at(day, 10.0) + int(rng.integers(0, 6 * 3600))
        known = comp.changes[(comp.changes["acc"] == acc) & (comp.changes["day"] <= day)]
        tier_i, seats = (
            (int(known["tier"].iloc[-1]), int(known["seats"].iloc[-1]))
            if len(known)
            else (int(row["tier0"]), int(row["seats0"]))
        )
        tier = co.TIERS[tier_i]
        new_crm.append(
            {
                "account_id": crm_id,
                "name": name,
                "domain": domain,
                "industry": row["industry"],
                "owner_id": aes["ae_id"].iloc[owner],
                "owner_name": aes["ae_name"].iloc[owner],
                "parent_account_id": None,
                "product_account_id": prod_id,
                "billing_country": row["country"],
                "created_at": t0,
                "updated_at": t0,
            }
        )
        conv = day + co.TRIAL_DAYS
        steps = [(None, "lead", 0, INTEGRATION_USER), ("lead", "trial", 300, INTEGRATION_USER)]
        if conv <= w.end:
            steps.append(("trial", "customer", co.TRIAL_DAYS * DAY, aes["ae_id"].iloc[owner]))
        for j, (frm, to, off, who) in enumerate(steps):
            new_stage.append(
                {
                    "stage_event_id": stripe_ids(
                        "0Hs", object_key(w.spec.seed, 19, np.array([gid]), j), length=12
                    )[0],
                    "account_id": crm_id,
                    "from_stage": frm,
                    "to_stage": to,
                    "tier": tier if to == "customer" else None,
                    "seats": seats if to == "customer" else pd.NA,
                    "effective_at": t0 + off,
                    "entered_at": t0 + off + 600,
                    "entered_by": who,
                }
            )
        db_steps = [("trialing", 0, 1)] + ([("active", co.TRIAL_DAYS * DAY, seats)] if conv <= w.end else [])
        for status, off, s in db_steps:
            new_db.append(
                {
                    "account_id": prod_id,
                    "company_name": name,
                    "domain": domain,
                    "billing_customer_id": row["customer_id"],
                    "status": status,
                    "plan": tier,
                    "seats": s,
                    "created_at": t0,
                    "updated_at": t0 + off + 30,
                }
            )
        pairs.append(
            {
                "duplicate": crm_id,
                "original": row["crm_id"],
                "name": name,
                "original_name": row["name"],
                "product_duplicate": prod_id,
                "product_original": row["account_id"],
            }
        )
    acquisitions = []
    for j in range(len(acq) // 2):
        buyer, target = a.iloc[acq[2 * j]], a.iloc[acq[2 * j + 1]]
        t0 = at(day, 15.0) + int(rng.integers(0, 3 * 3600))
        last = (
            crm[crm["account_id"] == target["crm_id"]]
            .sort_values("updated_at")
            .iloc[-1]
            .drop([PARTITION, ARRIVAL])
            .to_dict()
        )
        last.update(parent_account_id=buyer["crm_id"], updated_at=t0)
        new_crm.append(last)
        last_db = (
            adb[(adb["account_id"] == target["account_id"]) & (adb["updated_at"] <= t0)]
            .sort_values("updated_at")
            .iloc[-1]
        )
        db = last_db.drop([PARTITION, ARRIVAL]).to_dict()
        db.update(domain=buyer["domain"], updated_at=t0 + 60)
        new_db.append(db)
        acquisitions.append(
            {
                "acquired": target["crm_id"],
                "acquirer": buyer["crm_id"],
                "product_acquired": target["account_id"],
                "product_acquirer": buyer["account_id"],
                "date": iso_day(day),
            }
        )

    def append(frame: pd.DataFrame, rows: list[dict], ts: str, hour_offset: float) -> pd.DataFrame:
        if not rows:
            return frame
        add = pd.DataFrame(rows)
        add[PARTITION] = day_of(add[ts].to_numpy())
        add[ARRIVAL] = at(add[PARTITION].to_numpy() + 1, hour_offset)
        out = pd.concat([frame, add[frame.columns]], ignore_index=True)
        for c in frame.columns:
            if str(frame[c].dtype) in ("int64", "Int64"):
                out[c] = out[c].astype(frame[c].dtype)
        return out

    ex["crm_accounts"] = append(crm, new_crm, "updated_at", _hour(crm))
    ex["crm_stage_history"] = append(stages, new_stage, "entered_at", _hour(stages))
    ex["account_db"] = append(adb, new_db, "updated_at", _hour(adb))
    details = {"duplicates": pairs, "acquisitions": acquisitions}
    out = []
    if new_crm:
        out.append(
            record(
                fault,
                "crm_accounts",
                day,
                "duplicate accounts: name variants of an existing customer, and an acquired customer kept separate",
                "account_id",
                [r["account_id"] for r in new_crm],
                **details,
            )
        )
    if new_stage:
        out.append(
            record(
                fault,
                "crm_stage_history",
                day,
                "duplicate accounts: stage history of the duplicate CRM accounts",
                "stage_event_id",
                [r["stage_event_id"] for r in new_stage],
                **details,
            )
        )
    if new_db:
        out.append(
            record(
                fault,
                "account_db",
                day,
                "duplicate accounts: product accounts of the duplicates, and the acquired account moved to its acquirer's domain",
                "account_id",
                [r["account_id"] for r in new_db],
                **details,
            )
        )
    return out


def _hour(frame: pd.DataFrame) -> float:
    """The next-morning arrival hour of a daily extract (from its own rows)."""
    if frame.empty:
        return 4.0
    return float((int(frame[ARRIVAL].iloc[0]) - (int(frame[PARTITION].iloc[0]) + 1) * DAY) / 3600)


def _repriced_subscriptions(
    fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext, day: int
) -> list[Injected]:
    """A real Growth-vs-revenue mismatch (off by default): a ``repriced`` share of the subscriptions
    paying on or after DATE record a price ``price_pct`` % above what their invoices bill (a coupon
    or a grandfathered price that billing's subscription objects do not carry), from DATE on. MRR
    follows the subscriptions, revenue the invoices, so the investor check ``revenue_vs_mrr`` sees
    the gap; the invoices, payments and Finance's ledger stay as billed."""
    share = param(fault, "repriced", 0.0, float, 0.0, 1.0)
    pct = param(fault, "price_pct", 20, int, 1, 500)
    if share == 0 or "subscriptions" not in ex:
        return []
    rng = np.random.default_rng([ctx.spec.seed, co.S_FAULT, 17, (ctx.batch or 0) + 1])  # own stream
    subs = ex["subscriptions"].copy()
    from_day = day_of(subs["event_at"].to_numpy()) >= day
    paying = subs.loc[from_day & (subs["status"] == "active").to_numpy(), "subscription_id"].unique()
    chosen = np.sort(paying)[rng.random(len(paying)) < share]
    hit = from_day & subs["subscription_id"].isin(chosen).to_numpy()
    if not hit.any():
        return []
    price = subs.loc[hit, "item_unit_amount"].to_numpy(np.int64)
    subs.loc[hit, "item_unit_amount"] = (price * (100 + pct) + 50) // 100
    ex["subscriptions"] = subs
    return [
        record(
            fault,
            "subscriptions",
            int(day_of(subs.loc[hit, "event_at"].to_numpy()).min()),
            f"subscriptions record a price {pct}% above what their invoices bill: MRR above revenue",
            "event_id",
            subs.loc[hit, "event_id"],
            subscriptions=sorted(str(c) for c in chosen),
        )
    ]


@injector("growth_revenue_mismatch")
def growth_revenue_mismatch(
    fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext
) -> list[Injected]:
    """Contract start far before the first payment; upgrades backdated in the CRM before billing's
    proration; with ``repriced`` > 0, subscriptions whose price is not what their invoices bill."""
    w = ctx.world
    day = fault_day(fault, w, last_month(w))
    repriced = _repriced_subscriptions(fault, ex, ctx, day)  # every account batch
    if not ctx.first_chunk:
        return repriced
    n_con = param(fault, "contracts", 2, int, 0, 1000)
    n_up = param(fault, "upgrades", 2, int, 0, 1000)
    gap = param(fault, "gap_days", 60, int, 20, 720)
    rng = ctx.rng
    out = []
    sr = ex["sales_records"].copy()
    in_history = np.flatnonzero(sr["contract_start"].to_numpy() >= w.start)  # billing landed from its start
    pick = (
        in_history[prefer_from(rng, sr["contract_start"].to_numpy()[in_history], day, n_con)]
        if n_con and len(in_history)
        else np.array([], np.int64)
    )
    if len(pick):
        idx = sr.index[pick]
        shift = gap + rng.integers(-10, 11, len(pick))
        old_start = sr.loc[idx, "contract_start"].to_numpy()
        new_start = old_start - shift
        sr.loc[idx, "contract_start"] = new_start
        sr.loc[idx, "signed_at"] = at(new_start - rng.integers(1, 8, len(pick)), 11.0)
        move_rows(sr, sr.index.isin(idx), np.maximum(day_of(sr.loc[idx, "signed_at"].to_numpy()), w.start))
        ex["sales_records"] = sr
        out.append(
            record(
                fault,
                "sales_records",
                int(new_start.min()),
                f"contract start ~{gap} days before billing's first invoice and payment",
                "deal_id",
                sr.loc[idx, "deal_id"],
                deals={
                    d: {"account_id": acc, "contract_start": iso_day(s), "first_payment": iso_day(o)}
                    for d, acc, s, o in zip(
                        sr.loc[idx, "deal_id"], sr.loc[idx, "account_id"], new_start, old_start, strict=True
                    )
                },
            )
        )
    if n_up:
        f = ex["crm_stage_history"].copy()
        g = _stage_chains(f)
        prev_tier = g.groupby("account_id")["tier"].shift()
        prev_seats = g.groupby("account_id")["seats"].shift()
        rank = {t: i for i, t in enumerate(co.TIERS)}
        up = (
            (g["from_stage"] == "customer")
            & (g["to_stage"] == "customer")
            & (
                (g["tier"].map(rank) > prev_tier.map(rank))
                | ((g["tier"] == prev_tier) & (g["seats"].astype("float") > prev_seats.astype("float")))
            )
        ).to_numpy()
        # room to backdate by up to 20 days without passing the account's previous stage row
        room = (g["effective_at"] - g.groupby("account_id")["effective_at"].shift()).to_numpy()
        cands = np.flatnonzero(up & (room > 21 * DAY))
        eff_day = day_of(g["effective_at"].to_numpy())
        chosen = cands[prefer_from(rng, eff_day[cands], day, n_up)] if len(cands) else cands
        if len(chosen):
            ids = g.iloc[chosen]["stage_event_id"].to_numpy()
            back = rng.integers(10, 21, len(chosen)) * DAY
            m = f["stage_event_id"].isin(ids).to_numpy()
            order = pd.Series(back, index=ids).reindex(f.loc[m, "stage_event_id"]).to_numpy()
            f.loc[m, "effective_at"] = f.loc[m, "effective_at"].to_numpy() - order
            f.loc[m, "entered_at"] = f.loc[m, "entered_at"].to_numpy() - order
            move_rows(f, m, np.maximum(day_of(f.loc[m, "entered_at"].to_numpy()), w.start))
            ex["crm_stage_history"] = f
            out.append(
                record(
                    fault,
                    "crm_stage_history",
                    int(day_of(f.loc[m, "effective_at"].to_numpy()).min()),
                    "upgrade backdated in the CRM: expansion counted 10-20 days before billing prorates it",
                    "stage_event_id",
                    ids,
                    accounts=sorted(set(f.loc[m, "account_id"])),
                    backdated_days={i: int(b // DAY) for i, b in zip(ids, back, strict=True)},
                )
            )
    return out + repriced


@injector("churn_misclassified")
def churn_misclassified(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """Dunning accounts cancelled (payment_failed) early while they keep using the product; some pay later."""
    if not ctx.first_chunk or ctx.company is None:
        return []
    w = ctx.world
    day = fault_day(fault, w, last_month(w) - co.GRACE_DAYS)
    n = param(fault, "count", 4, int, 0, 1000)
    after = param(fault, "cancel_after_days", 2, int, 1, co.DUNNING_RETRY_DAYS[0] - 1)
    rng = ctx.rng
    comp = ctx.company
    ch = comp.changes
    pd_rows = ch[ch["kind"] == co.K_PAST_DUE]
    nxt = ch.groupby("acc")["kind"].shift(-1).reindex(pd_rows.index)
    nxt_day = ch.groupby("acc")["day"].shift(-1).reindex(pd_rows.index)
    ep = pd_rows.assign(outcome=nxt.to_numpy(), resolved=nxt_day.to_numpy())
    ep = ep[ep["outcome"].isin([co.K_RECOVER, co.K_CANCEL_INVOL])]
    lapsed = ep[ep["outcome"] == co.K_CANCEL_INVOL]
    recovered = ep[ep["outcome"] == co.K_RECOVER]
    half = (n + 1) // 2
    take_l = lapsed.iloc[prefer_from(rng, lapsed["day"].to_numpy(), day, half)] if len(lapsed) else lapsed
    take_r = (
        recovered.iloc[prefer_from(rng, recovered["day"].to_numpy(), day, n - len(take_l))]
        if len(recovered)
        else recovered
    )
    if len(take_l) + len(take_r) < n and len(lapsed) > len(take_l):
        take_l = lapsed.iloc[prefer_from(rng, lapsed["day"].to_numpy(), day, n - len(take_r))]
    subs = ex["subscriptions"].copy()
    a = comp.accounts
    changed: list[str] = []
    episodes = []
    added = []
    for kind, rows in (("lapsed", take_l), ("recovered", take_r)):
        for r in rows.itertuples():
            acc = int(r.acc)
            sub_id = subscription_ids(comp, np.array([acc]), np.array([r.sub_seq]))[0]
            tod = int(a["tod"].iloc[acc])
            cancel_at = co.at_seconds(r.day + after, tod) + 3600
            ev = subs[(subs["subscription_id"] == sub_id)]
            if kind == "lapsed":
                hit = ev.index[
                    (ev["status"] == "canceled") & (ev["cancellation_details_reason"] == "payment_failed")
                ]
                subs.loc[hit, "event_at"] = cancel_at
                subs.loc[hit, "canceled_at"] = cancel_at
                move_rows(subs, subs.index.isin(hit), np.array([day_of(cancel_at)]))
                changed += subs.loc[hit, "event_id"].tolist()
            else:
                base = ev[ev["status"] == "past_due"].sort_values("event_at").iloc[-1].copy()
                gid = int(a["gidx"].iloc[acc])
                base["event_id"] = stripe_ids(
                    "evt_", object_key(w.spec.seed, 3, np.array([gid]), 100_000 + int(r.day))
                )[0]
                base["event_type"] = "customer.subscription.deleted"
                base["status"] = "canceled"
                base["canceled_at"] = cancel_at
                base["event_at"] = cancel_at
                base["cancellation_details_reason"] = "payment_failed"
                base[PARTITION] = day_of(cancel_at)
                base[ARRIVAL] = base[PARTITION] * DAY + (
                    int(ev[ARRIVAL].iloc[0]) - int(ev[PARTITION].iloc[0]) * DAY
                )
                added.append(base)
                changed.append(base["event_id"])
            episodes.append(
                {
                    "account_id": a["account_id"].iloc[acc],
                    "customer_id": a["customer_id"].iloc[acc],
                    "subscription_id": sub_id,
                    "kind": kind,
                    "payment_failed_on": iso_day(int(r.day)),
                    "canceled_at": pd.Timestamp(int(cancel_at), unit="s", tz="UTC").isoformat(),
                    "usage_until": iso_day(int(r.resolved) - 1) if kind == "lapsed" else None,
                    "paid_on": iso_day(int(r.resolved)) if kind == "recovered" else None,
                }
            )
    if added:
        subs = pd.concat([subs, pd.DataFrame(added)[subs.columns]], ignore_index=True)
        for c in ex["subscriptions"].columns:
            if str(ex["subscriptions"][c].dtype) == "int64":
                subs[c] = subs[c].astype(np.int64)
    ex["subscriptions"] = subs
    if not episodes:
        return []
    return [
        record(
            fault,
            "subscriptions",
            min(co.epoch_day(pd.Timestamp(e["canceled_at"]).date()) for e in episodes),
            f"involuntary churn misclassified: cancelled (payment_failed) {after} day(s) into dunning while still "
            "using the product; 'recovered' ones pay later",
            "event_id",
            changed,
            accounts=sorted(e["account_id"] for e in episodes),
            episodes=sorted(episodes, key=lambda e: e["account_id"]),
        )
    ]

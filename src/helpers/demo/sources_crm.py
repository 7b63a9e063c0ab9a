"""Growth-side sources: the CRM (Salesforce-like), the product's account database, the sales
team's closed-won deals and the experiment assignments.

All are daily extracts: partition = the day of the row's own timestamp (``created_at``,
``entered_at`` — when the AE typed it, not when it happened —, ``updated_at``, ``signed_at``,
``assigned_at``), arriving the next morning (UTC) at the hour their contract schedules
(``helpers.storage.contracts``). Rows dated before the history are in the initial load (the
first partition).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.demo import company as co
from helpers.demo import ids
from helpers.demo.company import Company
from helpers.demo.extracts import arrival_hour, day_of, deliver, nullable_int
from helpers.demo.sources_billing import lifecycle

ARRIVAL_HOUR = {
    name: arrival_hour(name)
    for name in ("crm_accounts", "crm_stage_history", "account_db", "sales_records", "experiment_assignments")
}
INTEGRATION_USER = "0055g0000000000"  # the CRM's product-sync integration user (automated rows)
# How long after a change the AE types it into the CRM (clean data: at most ~3 days).
AE_ENTRY_LAG_P = (0.60, 0.30, 0.10)
AE_ENTRY_LAG_S = ((1_800, 8 * 3600), (16 * 3600, 30 * 3600), (40 * 3600, 80 * 3600))
CLEAN_MAX_ENTRY_LAG_S = 80 * 3600

# lifecycle kind -> (from_stage, to_stage, typed by an AE)
_STAGE = {
    co.K_TRIAL: ("lead", "trial", False),
    co.K_CONVERT: ("trial", "customer", True),
    co.K_LOST: ("trial", "lost", True),
    co.K_UPGRADE: ("customer", "customer", True),
    co.K_DOWNGRADE: ("customer", "customer", True),
    co.K_CANCEL_VOL: ("customer", "churned", True),
    co.K_CANCEL_INVOL: ("customer", "churned", True),
    co.K_REACTIVATE: ("churned", "customer", True),
}
# lifecycle kind -> account_db status
_DB_STATUS = {
    co.K_TRIAL: "trialing",
    co.K_CONVERT: "active",
    co.K_LOST: "trial_expired",
    co.K_PAST_DUE: "past_due",
    co.K_RECOVER: "active",
    co.K_CANCEL_VOL: "canceled",
    co.K_CANCEL_INVOL: "canceled",
    co.K_UPGRADE: "active",
    co.K_DOWNGRADE: "active",
    co.K_REACTIVATE: "active",
}


def crm_accounts(company: Company) -> pd.DataFrame:
    """One Salesforce account per company, created with the lead (no parent, owned by an AE)."""
    a = company.accounts
    aes = company.world.aes
    created = co.at_seconds(a["lead_day"].to_numpy(), a["lead_sec"].to_numpy())
    frame = pd.DataFrame(
        {
            "account_id": a["crm_id"].to_numpy(),
            "name": a["name"].to_numpy(),
            "domain": a["domain"].to_numpy(),
            "industry": a["industry"].to_numpy(),
            "owner_id": aes["ae_id"].to_numpy()[a["ae"].to_numpy()],
            "owner_name": aes["ae_name"].to_numpy()[a["ae"].to_numpy()],
            "parent_account_id": np.full(len(a), None, dtype=object),
            "product_account_id": a["account_id"].to_numpy(),
            "billing_country": a["country"].to_numpy(),
            "created_at": created,
            "updated_at": created,
        }
    )
    return deliver(frame, day_of(created), company.world.start, ARRIVAL_HOUR["crm_accounts"])


def _entry_lag(rng: np.random.Generator, n: int, by_ae: np.ndarray) -> np.ndarray:
    """Seconds between a change and its CRM entry: minutes for the integration, hours to ~3 days for AEs."""
    band = co.categorical(rng, n, AE_ENTRY_LAG_P)
    lo = np.array([b[0] for b in AE_ENTRY_LAG_S])[band]
    hi = np.array([b[1] for b in AE_ENTRY_LAG_S])[band]
    ae_lag = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    auto_lag = rng.integers(60, 1_800, n)
    return np.where(by_ae, ae_lag, auto_lag)


def crm_stage_history(company: Company, life: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stage transitions with when they happened (effective) and when they were typed (entered)."""
    life = lifecycle(company) if life is None else life
    a = company.accounts
    rng = company.world.rng(co.S_CRM, company.chunk)
    life = life[life["kind"].isin(list(_STAGE))]
    n_acc = len(a)
    kinds = life["kind"].to_numpy()
    acc = np.concatenate([a["acc"].to_numpy(), life["acc"].to_numpy()])
    seq = np.concatenate([np.zeros(n_acc, np.int64), life["seq"].to_numpy() + 1])
    eff = np.concatenate(
        [
            co.at_seconds(a["lead_day"].to_numpy(), a["lead_sec"].to_numpy()),
            co.at_seconds(life["day"].to_numpy(), life["sec"].to_numpy()),
        ]
    )

    def stage(pos: int) -> np.ndarray:
        table = np.empty(max(_STAGE) + 1, dtype=object)
        for k, v in _STAGE.items():
            table[k] = v[pos]
        return table[kinds]

    from_stage = np.concatenate([np.full(n_acc, None, dtype=object), stage(0)])
    to_stage = np.concatenate([np.full(n_acc, "lead", dtype=object), stage(1)])
    by_ae = np.concatenate([np.zeros(n_acc, bool), stage(2).astype(bool)])
    is_customer = to_stage == "customer"
    tier = np.concatenate([np.zeros(n_acc, np.int64), life["tier"].to_numpy()])
    seats = np.concatenate([np.zeros(n_acc, np.int64), life["seats"].to_numpy()])
    order = np.lexsort((seq, acc))
    acc, seq, eff, from_stage, to_stage, by_ae, is_customer, tier, seats = (
        x[order] for x in (acc, seq, eff, from_stage, to_stage, by_ae, is_customer, tier, seats)
    )
    lag = _entry_lag(rng, len(acc), by_ae)
    gidx = a["gidx"].to_numpy()[acc]
    owner = company.world.aes["ae_id"].to_numpy()[a["ae"].to_numpy()[acc]]
    frame = pd.DataFrame(
        {
            "stage_event_id": ids.stripe_ids(
                "0Hs", ids.object_key(company.spec.seed, 9, gidx, seq), length=12
            ),
            "account_id": a["crm_id"].to_numpy()[acc],
            "from_stage": from_stage,
            "to_stage": to_stage,
            "tier": np.where(is_customer, np.asarray(co.TIERS, dtype=object)[tier], None),
            "seats": nullable_int(seats, is_customer),
            "effective_at": eff,
            "entered_at": eff + lag,
            "entered_by": np.where(by_ae, owner, INTEGRATION_USER).astype(object),
        }
    )
    return deliver(
        frame, day_of(frame["entered_at"].to_numpy()), company.world.start, ARRIVAL_HOUR["crm_stage_history"]
    )


def account_db(company: Company, life: pd.DataFrame | None = None) -> pd.DataFrame:
    """The product database's account rows, one per status or plan change (incremental by updated_at)."""
    life = lifecycle(company) if life is None else life
    a = company.accounts
    life = life[life["kind"].isin(list(_DB_STATUS))]
    acc = life["acc"].to_numpy()
    kinds = life["kind"].to_numpy()
    status = np.empty(max(_DB_STATUS) + 1, dtype=object)
    for k, v in _DB_STATUS.items():
        status[k] = v
    trialing = kinds == co.K_TRIAL
    seats = np.where(trialing, a["trial_seats"].to_numpy()[acc], life["seats"].to_numpy())
    updated = co.at_seconds(life["day"].to_numpy(), life["sec"].to_numpy()) + 30
    frame = pd.DataFrame(
        {
            "account_id": a["account_id"].to_numpy()[acc],
            "company_name": a["name"].to_numpy()[acc],
            "domain": a["domain"].to_numpy()[acc],
            "billing_customer_id": a["customer_id"].to_numpy()[acc],
            "status": status[kinds],
            "plan": np.asarray(co.TIERS, dtype=object)[life["tier"].to_numpy()],
            "seats": seats.astype(np.int64),
            "created_at": co.at_seconds(a["trial_start"].to_numpy()[acc], a["tod"].to_numpy()[acc]),
            "updated_at": updated,
        }
    )
    return deliver(frame, day_of(updated), company.world.start, ARRIVAL_HOUR["account_db"])


def sales_records(company: Company, life: pd.DataFrame | None = None) -> pd.DataFrame:
    """Closed-won deals of sales-led conversions (contract start = billing start in clean data)."""
    life = lifecycle(company) if life is None else life
    a = company.accounts
    rng = company.world.rng(co.S_CRM, company.chunk, 1)
    n = len(a)
    sign_days = rng.integers(1, 11, n)
    sign_sec = rng.integers(9 * 3600, 18 * 3600, n)
    conv = life[(life["kind"] == co.K_CONVERT) & a["sales_led"].to_numpy()[life["acc"].to_numpy()]]
    acc = conv["acc"].to_numpy()
    day = conv["day"].to_numpy()
    tier = conv["tier"].to_numpy()
    term = np.where(tier == 2, 12, 1)
    signed = co.at_seconds(day - sign_days[acc], sign_sec[acc])
    frame = pd.DataFrame(
        {
            "deal_id": ids.stripe_ids(
                "006", ids.object_key(company.spec.seed, 10, a["gidx"].to_numpy()[acc], 0), length=12
            ),
            "account_id": a["crm_id"].to_numpy()[acc],
            "contract_start": day,
            "signed_at": signed,
            "first_payment_expected": day,
            "term_months": term.astype(np.int64),
            "contract_value": (conv["seats"].to_numpy() * conv["price"].to_numpy() * term).astype(np.int64),
            "currency": np.asarray(co.CURRENCIES, dtype=object)[a["currency"].to_numpy()[acc]],
            "tier": np.asarray(co.TIERS, dtype=object)[tier],
            "seats": conv["seats"].to_numpy().astype(np.int64),
            "ae_id": company.world.aes["ae_id"].to_numpy()[a["ae"].to_numpy()[acc]],
        }
    )
    return deliver(frame, day_of(signed), company.world.start, ARRIVAL_HOUR["sales_records"])


def experiment_assignments(company: Company) -> pd.DataFrame:
    """Experiment arms of the accounts that signed up inside each experiment's window."""
    a = company.accounts
    parts = []
    for name, col in zip(co.EXPERIMENTS, ("pricing_arm", "onboarding_arm"), strict=True):
        sel = a[a[col] >= 0]
        parts.append(
            pd.DataFrame(
                {
                    "account_id": sel["account_id"].to_numpy(),
                    "experiment": name,
                    "arm": np.where(sel[col].to_numpy() == 1, "treatment", "control").astype(object),
                    "assigned_at": co.at_seconds(sel["trial_start"].to_numpy(), sel["tod"].to_numpy()),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    return deliver(
        frame,
        day_of(frame["assigned_at"].to_numpy()),
        company.world.start,
        ARRIVAL_HOUR["experiment_assignments"],
    )

"""The account lifecycle: declared transitions, skipped stages and their repair from billing."""

import datetime as dt

import pandas as pd
import pytest

from helpers.growth import lifecycle
from helpers.growth.lifecycle import GrowthSources

pytestmark = pytest.mark.unit


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def stage(sid, account, frm, to, at, *, tier=None, seats=None, lag_hours=1.0):
    eff = ts(at)
    return {
        "stage_event_id": sid,
        "account_id": account,
        "from_stage": frm,
        "to_stage": to,
        "tier": tier,
        "seats": seats,
        "effective_at": eff,
        "entered_at": eff + pd.Timedelta(hours=lag_hours),
        "entered_by": "ae",
    }


def event(eid, sub, status, at, *, tier="starter", qty=2, unit=2500, reason=None, created=False):
    return {
        "event_id": eid,
        "event_type": "customer.subscription.created" if created else "customer.subscription.updated",
        "subscription_id": sub,
        "customer_id": "cus_1",
        "status": status,
        "item_tier": tier,
        "item_quantity": qty,
        "item_unit_amount": unit,
        "currency": "USD",
        "cancellation_details_reason": reason,
        "event_at": ts(at),
    }


def sources(stages, events, *, sales=None) -> GrowthSources:
    crm = pd.DataFrame(
        [
            {"account_id": "001A", "product_account_id": "A1", "updated_at": ts("2026-01-01")},
            {"account_id": "001B", "product_account_id": "A2", "updated_at": ts("2026-01-01")},
        ]
    )
    customers = pd.DataFrame(
        [{"customer_id": "cus_1", "account_id": "A1"}, {"customer_id": "cus_2", "account_id": "A2"}]
    )
    empty = pd.DataFrame()
    return GrowthSources(
        as_of=ts("2026-12-01"),
        crm_accounts=crm,
        crm_stages=pd.DataFrame(stages),
        account_db=empty,
        sales=sales if sales is not None else pd.DataFrame(),
        customers=customers,
        subscriptions=pd.DataFrame(events),
        invoices=empty,
        payments=empty,
        fx=empty,
        assignments=empty,
    )


# a clean trial that converts, upgrades and churns; billing agrees
CLEAN_STAGES = [
    stage("s0", "001A", None, "lead", "2026-03-01 10:00"),
    stage("s1", "001A", "lead", "trial", "2026-03-02 10:00"),
    stage("s2", "001A", "trial", "customer", "2026-03-16 10:00", tier="starter", seats=2),
    stage("s3", "001A", "customer", "customer", "2026-05-10 12:00", tier="growth", seats=5),
    stage("s4", "001A", "customer", "churned", "2026-08-16 10:00"),
]
CLEAN_EVENTS = [
    event("e1", "sub_1", "trialing", "2026-03-02 10:00", created=True),
    event("e2", "sub_1", "active", "2026-03-16 10:00"),
    event("e3", "sub_1", "active", "2026-05-10 12:00", tier="growth", qty=5, unit=4900),
    event("e4", "sub_1", "past_due", "2026-07-16 11:00", tier="growth", qty=5, unit=4900),
    event(
        "e5",
        "sub_1",
        "canceled",
        "2026-08-16 10:00",
        tier="growth",
        qty=5,
        unit=4900,
        reason="payment_failed",
    ),
]


def test_transitions_are_declared_once_and_skips_name_the_missing_stage():
    assert lifecycle.allowed("trial", "customer") and lifecycle.allowed("churned", "customer")
    assert not lifecycle.allowed("lead", "customer") and not lifecycle.allowed("trial", "churned")
    assert lifecycle.missing_between("lead", "customer") == "trial"
    assert lifecycle.missing_between("trial", "churned") == "customer"
    assert lifecycle.missing_between("lead", "churned") is None  # two stages missing: not inferable
    assert set(lifecycle.STATES) >= {a for a, _ in lifecycle.TRANSITIONS if a} | {
        b for _, b in lifecycle.TRANSITIONS
    }


def test_clean_history_has_no_skips_and_classifies_every_transition():
    life = lifecycle.build(sources(CLEAN_STAGES, CLEAN_EVENTS))
    assert life.skipped.empty and life.inferred.empty and not life.plan_gaps["mismatch"].any()
    h = life.history
    assert list(h["kind"]) == [
        "lead_created",
        "trial_started",
        "converted",
        "upgrade",
        "payment_failed",  # billing's dunning episode, which the CRM does not track
        "churned",
    ]
    assert list(h["from_stage"].fillna("-")) == ["-", "lead", "trial", "customer", "customer", "past_due"]
    assert h["product_account_id"].eq("A1").all() and not h["inferred"].any()


@pytest.mark.parametrize(
    ("drop", "repoint", "missing", "inferred_at"),
    [
        (
            "s1",
            ("s2", "lead"),
            "trial",
            "2026-03-02 10:00",
        ),  # lead -> customer: trial from the trialing subscription
        (
            "s1",
            ("s2", "trial"),
            "trial",
            "2026-03-02 10:00",
        ),  # from_stage says trial, but the CRM never had one
    ],
)
def test_skipped_stage_is_flagged_and_repaired_from_billing(drop, repoint, missing, inferred_at):
    rows = [dict(r) for r in CLEAN_STAGES if r["stage_event_id"] != drop]
    for r in rows:
        if r["stage_event_id"] == repoint[0]:
            r["from_stage"] = repoint[1]
    life = lifecycle.build(sources(rows, CLEAN_EVENTS))
    assert list(life.skipped["stage_event_id"]) == [repoint[0]]
    assert life.skipped["missing_stage"].iloc[0] == missing
    inf = life.inferred.iloc[0]
    assert (inf["to_stage"], inf["effective_at"]) == (missing, ts(inferred_at))
    assert inf["inferred_from"].startswith("subscriptions:e")
    assert life.unrepaired.empty
    repaired = life.history[life.history["inferred"]]
    assert list(repaired["stage_event_id"]) == [f"inferred:{repoint[0]}"]
    clean = lifecycle.build(sources(CLEAN_STAGES, CLEAN_EVENTS)).history
    assert list(life.history["to_stage"]) == list(clean["to_stage"])  # the repair restores the clean path


def test_trial_to_churned_gets_the_customer_stage_with_billings_plan():
    rows = [r for r in CLEAN_STAGES if r["stage_event_id"] not in ("s2", "s3")]
    rows = [dict(r, from_stage="trial") if r["stage_event_id"] == "s4" else r for r in rows]
    life = lifecycle.build(sources(rows, CLEAN_EVENTS))
    inf = life.inferred.iloc[0]
    assert (inf["to_stage"], inf["tier"], inf["seats"]) == ("customer", "starter", 2)
    assert inf["effective_at"] == ts("2026-03-16 10:00")  # the first paid activation, not the plan change
    assert "trial_started" in set(life.history["kind"]) and "converted" in set(life.history["kind"])


def test_a_skip_billing_cannot_explain_stays_unrepaired():
    rows = [dict(r) for r in CLEAN_STAGES if r["stage_event_id"] != "s1"]
    rows[1]["from_stage"] = "lead"
    no_trial = [e for e in CLEAN_EVENTS if e["status"] != "trialing"]
    life = lifecycle.build(sources(rows, no_trial))
    assert life.inferred.empty and list(life.unrepaired["stage_event_id"]) == ["s2"]
    assert "skip" in set(life.history["kind"])  # visible in the history, not hidden


def test_backdated_crm_upgrade_is_redated_to_billings_proration():
    rows = [dict(r) for r in CLEAN_STAGES]
    rows[3]["effective_at"] = ts("2026-04-24 12:00")  # 16 days before billing prorated it
    life = lifecycle.build(sources(rows, CLEAN_EVENTS), tolerance=dt.timedelta(days=3))
    gap = life.plan_gaps.set_index("stage_event_id").loc["s3"]
    assert gap["mismatch"] and round(gap["gap_days"]) == -16
    row = life.history.set_index("stage_event_id").loc["s3"]
    assert row["effective_at"] == ts("2026-05-10 12:00") and row["crm_effective_at"] == ts("2026-04-24 12:00")
    assert row["inferred"] and row["inferred_from"] == "subscriptions:e3"
    raw = lifecycle.build(sources(rows, CLEAN_EVENTS), repair=False).history.set_index("stage_event_id")
    assert raw.loc["s3", "effective_at"] == ts("2026-04-24 12:00")


def test_sales_led_conversions_carry_their_deal():
    sales = pd.DataFrame(
        [
            {
                "deal_id": "006X",
                "account_id": "001A",
                "contract_start": dt.date(2026, 3, 16),
                "signed_at": ts("2026-03-10"),
            }
        ]
    )
    h = lifecycle.build(sources(CLEAN_STAGES, CLEAN_EVENTS, sales=sales)).history.set_index("kind")
    assert h.loc["converted", "deal_id"] == "006X"


def test_entity_history_keeps_only_what_changes_the_company():
    dup = [
        stage("d0", "001B", None, "lead", "2026-06-01 10:00"),
        stage("d1", "001B", "lead", "trial", "2026-06-01 10:05"),
        stage("d2", "001B", "trial", "customer", "2026-06-15 10:00", tier="starter", seats=1),
    ]
    life = lifecycle.build(sources(CLEAN_STAGES + dup, CLEAN_EVENTS))
    alone = lifecycle.entity_history(life.history, pd.Series({"A1": "A1", "A2": "A2"}))
    merged = lifecycle.entity_history(life.history, pd.Series({"A1": "A1", "A2": "A1"}))
    day = (ts("2026-06-01"), ts("2026-06-30"))
    assert lifecycle.transition_counts(alone, *day).sum().to_dict()["new_accounts"] == 1
    counts = lifecycle.transition_counts(merged, *day)
    assert counts.empty or counts.sum().sum() == 0  # the duplicate's own trial and conversion are not growth
    # the company churns only when its last paying account does
    after = merged[merged["effective_at"] >= ts("2026-08-16")]
    assert "churned" not in set(after["kind"])  # A2 is still a customer when A1 churns


def test_latest_version_keeps_the_last_delivery():
    f = pd.DataFrame(
        {
            "k": ["a", "a", "b"],
            "v": [1, 2, 3],
            "_arrived_at": [ts("2026-01-02"), ts("2026-01-03"), ts("2026-01-01")],
            "_partition": ["2026-01-01"] * 3,
        }
    )
    assert lifecycle.latest_version(f, "k").set_index("k")["v"].to_dict() == {"a": 2, "b": 3}

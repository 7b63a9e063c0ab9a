"""MRR, FX, movements, churn classification and daily growth on small hand-made data."""

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pandas as pd
import pytest

from helpers.core.periods import month_bounds
from helpers.growth import checks as growth_checks
from helpers.growth import lifecycle
from helpers.growth import metrics as growth
from helpers.growth import runbook as runbooks_growth
from helpers.growth.lifecycle import GrowthSources
from helpers.storage import landing

pytestmark = pytest.mark.unit


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def ev(
    eid,
    sub,
    status,
    at,
    *,
    cus="cus_1",
    qty=2,
    unit=1000,
    cur="USD",
    tier="starter",
    reason=None,
    created=False,
):
    return {
        "event_id": eid,
        "event_type": "customer.subscription.created" if created else "customer.subscription.updated",
        "subscription_id": sub,
        "customer_id": cus,
        "status": status,
        "item_tier": tier,
        "item_quantity": qty,
        "item_unit_amount": unit,
        "currency": cur,
        "cancellation_details_reason": reason,
        "event_at": ts(at),
    }


def fx_rows(start="2026-01-01", days=200, eur=Decimal("1.080000"), step=Decimal("0.001000")):
    rows = []
    for i, day in enumerate(pd.date_range(start, periods=days, freq="D")):
        rows.append({"date": day.date(), "currency": "EUR", "usd_per_unit": eur + step * i})
        rows.append({"date": day.date(), "currency": "USD", "usd_per_unit": Decimal("1.000000")})
    return pd.DataFrame(rows)


def src_of(events, *, payments=(), invoices=(), usage=(), customers=None) -> GrowthSources:
    customers = customers if customers is not None else pd.DataFrame(
        {"customer_id": ["cus_1", "cus_2", "cus_3"], "account_id": ["A1", "A2", "A3"]}
    )  # fmt: skip
    return GrowthSources(
        as_of=ts("2026-12-01"),
        crm_accounts=pd.DataFrame(),
        crm_stages=pd.DataFrame(),
        account_db=pd.DataFrame(),
        sales=pd.DataFrame(),
        customers=customers,
        subscriptions=pd.DataFrame(events),
        invoices=pd.DataFrame(list(invoices)),
        payments=pd.DataFrame(list(payments)),
        fx=fx_rows(),
        assignments=pd.DataFrame(),
        usage=pd.DataFrame(list(usage), columns=["account_id", "day"]),
    )


IDENTITY = pd.Series({"cus_1": "A1", "cus_2": "A2", "cus_3": "A3"})


def test_rates_on_uses_the_day_then_earlier_then_the_first():
    table = growth.fx_table(fx_rows(start="2026-03-01", days=3))
    days = pd.Series(pd.to_datetime(["2026-03-02", "2026-03-10", "2026-01-01", "2026-03-02"]))
    got = growth.rates_on(days, pd.Series(["EUR", "EUR", "EUR", "USD"]), table)
    assert got.tolist() == [1_081_000, 1_082_000, 1_080_000, 1_000_000]


def test_mrr_is_converted_on_the_day_its_amount_was_set():
    events = [
        ev("e1", "s1", "trialing", "2026-01-01 09:00", cur="EUR", created=True),
        ev("e2", "s1", "active", "2026-01-15 09:00", cur="EUR"),  # converts at Jan 15's rate
        ev("e3", "s1", "active", "2026-02-15 09:00", cur="EUR"),  # renewal: same amount, same rate
        ev("e4", "s1", "active", "2026-03-20 09:00", cur="EUR", qty=3),  # upgrade: re-rated
    ]
    tl = growth.mrr_timeline(growth.effective_events(pd.DataFrame(events), pd.DataFrame()), fx_rows())
    by = tl.set_index("event_id")
    assert by.loc["e1", "mrr_usd_cents"] == 0
    assert by.loc["e2", "micros"] == by.loc["e3", "micros"] == 1_094_000  # day 14 after Jan 1
    assert by.loc["e2", "mrr_usd_cents"] == by.loc["e3", "mrr_usd_cents"] == 2188
    assert by.loc["e4", "micros"] == 1_158_000 and by.loc["e4", "mrr_usd_cents"] == 3474
    feb = growth.account_movements(tl, ts("2026-02-01"), ts("2026-03-01"), IDENTITY)
    mar = growth.account_movements(tl, ts("2026-03-01"), ts("2026-04-01"), IDENTITY)
    assert feb["ending_mrr_usd_cents"].sum() == mar["starting_mrr_usd_cents"].sum() == 2188
    assert mar.set_index("account_id").loc["A1", "movement"] == "expansion"


def movements(events, start="2026-03-01", end="2026-04-01", **kw):
    src = src_of(events, **kw)
    cancels = growth.classify_cancellations(src, grace_days=14)
    tl = growth.mrr_timeline(growth.effective_events(src.subscriptions, cancels), src.fx)
    return growth.account_movements(tl, ts(start), ts(end), IDENTITY).set_index("account_id")


def test_movements_classify_each_company_once_net_over_the_window():
    events = [
        # A1: new in March
        ev("a1", "s1", "trialing", "2026-02-20", created=True),
        ev("a2", "s1", "active", "2026-03-06"),
        # A2: paid in January, churned, back in March: reactivation
        ev("b1", "s2", "active", "2026-01-05", cus="cus_2", created=True),
        ev("b2", "s2", "canceled", "2026-02-05", cus="cus_2", reason="cancellation_requested"),
        ev("b3", "s3", "active", "2026-03-09", cus="cus_2", created=True, qty=4),
        # A3: pays, cancels voluntarily in March and comes back the same month: net contraction
        ev("c1", "s4", "active", "2026-01-05", cus="cus_3", created=True, qty=5),
        ev("c2", "s4", "canceled", "2026-03-05", cus="cus_3", reason="cancellation_requested", qty=5),
        ev("c3", "s5", "active", "2026-03-25", cus="cus_3", created=True, qty=3),
    ]
    m = movements(events)
    assert m["movement"].to_dict() == {"A1": "new", "A2": "reactivation", "A3": "contraction"}
    assert m.loc["A3", "mrr_change_usd_cents"] == -2000
    summary = growth.movement_summary(m.reset_index(), "2026-03")
    assert summary.loc[0, "customers_start"] == 1 and summary.loc[0, "customers_end"] == 3
    assert (summary.loc[0, "new_customers"], summary.loc[0, "reactivated_customers"]) == (1, 1)


def test_churn_type_follows_the_cancellation_reason():
    events = [
        ev("a1", "s1", "active", "2026-01-05", created=True),
        ev("a2", "s1", "canceled", "2026-03-05", reason="cancellation_requested"),
        ev("b1", "s2", "active", "2026-01-05", cus="cus_2", created=True),
        ev("b2", "s2", "past_due", "2026-03-05 10:00", cus="cus_2"),
        ev("b3", "s2", "canceled", "2026-03-19 10:00", cus="cus_2", reason="payment_failed"),
    ]
    m = movements(events)
    assert m["movement"].to_dict() == {"A1": "churn_voluntary", "A2": "churn_involuntary"}
    s = growth.movement_summary(m.reset_index(), "2026-03").iloc[0]
    assert s["churn_voluntary_mrr_usd_cents"] == s["churn_involuntary_mrr_usd_cents"] == -2000
    assert (s["nrr"], s["grr"]) == (0.0, 0.0)


def test_identity_violation_is_an_error_not_a_figure():
    m = pd.DataFrame(
        {
            "account_id": ["A1"],
            "starting_mrr_usd_cents": [100],
            "ending_mrr_usd_cents": [150],
            "mrr_change_usd_cents": [40],  # a bug: 100 + 40 != 150
            "movement": ["expansion"],
        }
    )
    with pytest.raises(
        growth.GrowthIdentityError, match="starting MRR 100 \\+ movements 40 != ending MRR 150"
    ):
        growth.movement_summary(m, "2026-03")


DUNNING = [
    ev("a1", "s1", "active", "2026-01-10 08:00", created=True),
    ev("a2", "s1", "past_due", "2026-03-10 09:00"),
]
INVOICE = {"invoice_id": "in_1", "subscription_id": "s1", "customer_id": "cus_1"}


def charge(pid, at, status):
    return {"payment_id": pid, "type": "charge", "invoice_id": "in_1", "created": ts(at), "status": status}


def test_clean_involuntary_churn_at_the_grace_end_is_not_flagged():
    events = [*DUNNING, ev("a3", "s1", "canceled", "2026-03-24 09:00", reason="payment_failed")]
    payments = [charge(f"ch{i}", f"2026-03-{d} 09:00", "failed") for i, d in enumerate((10, 13, 17, 22))]
    c = growth.classify_cancellations(
        src_of(events, payments=payments, invoices=[INVOICE]), grace_days=14
    ).iloc[0]
    assert (c["classification"], c["misclassified"], c["effective_at"]) == (
        "involuntary",
        False,
        ts("2026-03-24 09:00"),
    )


def test_early_cancellation_in_dunning_counts_from_the_grace_end():
    events = [*DUNNING, ev("a3", "s1", "canceled", "2026-03-12 10:00", reason="payment_failed")]
    payments = [charge(f"ch{i}", f"2026-03-{d} 09:00", "failed") for i, d in enumerate((10, 13, 17, 22))]
    usage = [("A1", dt.date(2026, 3, d)) for d in range(10, 24)]
    src = src_of(events, payments=payments, invoices=[INVOICE], usage=usage)
    c = growth.classify_cancellations(src, grace_days=14).iloc[0]
    assert c["classification"] == "involuntary" and c["misclassified"] and c["premature"]
    assert c["effective_at"] == ts("2026-03-24 09:00") and c["retries_after"] == 3
    assert c["used_until"] == dt.date(2026, 3, 23)
    assert "before the grace period ended" in c["evidence"] and "used the product" in c["evidence"]
    m = movements(events, start="2026-03-01", end="2026-03-20", payments=payments, invoices=[INVOICE])
    assert m.loc["A1", "movement"] == "flat"  # still paying (in dunning) on the 20th


def test_cancellation_recovered_inside_the_grace_period_is_not_churn():
    events = [
        *DUNNING,
        ev("a3", "s1", "canceled", "2026-03-12 10:00", reason="payment_failed"),
        ev("a4", "s1", "active", "2026-03-17 09:00"),
    ]
    payments = [charge("ch1", "2026-03-10 09:00", "failed"), charge("ch2", "2026-03-17 09:00", "succeeded")]
    src = src_of(events, payments=payments, invoices=[INVOICE])
    c = growth.classify_cancellations(src, grace_days=14).iloc[0]
    assert c["classification"] == "recovered" and pd.isna(c["effective_at"]) and c["misclassified"]
    assert c["recovered_at"] == ts("2026-03-17 09:00")
    m = movements(events, payments=payments, invoices=[INVOICE])
    assert m.loc["A1", "movement"] == "flat"
    assert growth.effective_events(src.subscriptions, growth.classify_cancellations(src, grace_days=14))[
        "event_id"
    ].tolist() == ["a1", "a2", "a4"]


def test_voluntary_cancellation_with_usage_afterwards_is_flagged_unless_they_came_back():
    events = [
        ev("a1", "s1", "active", "2026-01-10", created=True),
        ev("a2", "s1", "canceled", "2026-03-10 10:00", reason="cancellation_requested"),
        ev("b1", "s2", "active", "2026-01-10", cus="cus_2", created=True),
        ev("b2", "s2", "canceled", "2026-03-10 10:00", cus="cus_2", reason="cancellation_requested"),
        ev("b3", "s3", "active", "2026-03-12 10:00", cus="cus_2", created=True),  # a new subscription
    ]
    usage = [("A1", dt.date(2026, 3, 14)), ("A2", dt.date(2026, 3, 14))]
    c = growth.classify_cancellations(src_of(events, usage=usage), grace_days=14).set_index("account_id")
    assert c.loc["A1", "misclassified"] and c.loc["A1", "used_until"] == dt.date(2026, 3, 14)
    assert not c.loc["A2", "misclassified"]  # usage on its new subscription


def test_recognised_revenue_spreads_lines_over_their_days():
    lines = pd.DataFrame(
        [
            {"customer_id": "cus_1", "amount": 3100, "currency": "USD", "status": "paid", "created": ts("2026-03-20"),
             "period_start": dt.date(2026, 3, 20), "period_end": dt.date(2026, 4, 20)},
            {"customer_id": "cus_1", "amount": 999, "currency": "USD", "status": "uncollectible",
             "created": ts("2026-03-20"), "period_start": dt.date(2026, 3, 20), "period_end": dt.date(2026, 4, 20)},
        ]
    )  # fmt: skip
    fx = fx_rows()
    march = growth.recognised_revenue(lines, ts("2026-03-01"), ts("2026-04-01"), fx)
    april = growth.recognised_revenue(lines, ts("2026-04-01"), ts("2026-05-01"), fx)
    assert march["cus_1"] == 1200 and march["cus_1"] + april["cus_1"] == 3100


def test_recognised_revenue_lists_every_customer_with_a_line_even_outside_the_month():
    """Only the lines serving days of the month are computed; the others' customers show 0."""

    def line(cus, start, end, status="paid", amount=3000):
        return {"customer_id": cus, "amount": amount, "currency": "USD", "status": status,
                "created": ts(f"{start}"), "period_start": dt.date.fromisoformat(start),
                "period_end": dt.date.fromisoformat(end)}  # fmt: skip

    lines = pd.DataFrame(
        [
            line("cus_b", "2026-03-01", "2026-04-01"),
            line("cus_a", "2026-01-01", "2026-02-01"),  # before the month: 0
            line("cus_c", "2026-04-01", "2026-05-01"),  # from the month's end: 0
            line("cus_d", "2026-03-05", "2026-03-05"),  # no service day
            line("cus_e", "2026-03-01", "2026-04-01", status="uncollectible"),  # written off: not listed
            line(None, "2026-03-01", "2026-04-01"),  # no customer: not listed
        ]
    )
    got = growth.recognised_revenue(lines, ts("2026-03-01"), ts("2026-04-01"), fx_rows())
    assert got.to_dict() == {"cus_a": 0, "cus_b": 3000, "cus_c": 0, "cus_d": 0}
    assert list(got.index) == ["cus_a", "cus_b", "cus_c", "cus_d"] and got.dtype == "int64"


def test_daily_growth_rows_add_up_per_experiment():
    events = [
        ev("a1", "s1", "active", "2026-03-10 10:00", created=True),
        ev("b1", "s2", "active", "2026-03-10 11:00", cus="cus_2", created=True, qty=3),
    ]
    tl = growth.mrr_timeline(growth.effective_events(pd.DataFrame(events), pd.DataFrame()), fx_rows())
    hist = pd.DataFrame(
        {
            "entity_id": ["A1", "A2"],
            "effective_at": [ts("2026-03-10 10:00"), ts("2026-03-10 11:00")],
            "kind": ["converted", "converted"],
        }
    )
    arms = pd.DataFrame({"entity_id": ["A1"], "experiment": ["pricing_v2"], "arm": ["treatment"]})
    day = growth.daily_growth(
        "2026-03-10", timeline=tl, customer_entity=IDENTITY, entity_hist=hist, arms=arms
    )
    assert list(day["arm"]) == ["control", "treatment", "unassigned"]
    assert day.set_index("arm")["new_accounts"].to_dict() == {"control": 0, "treatment": 1, "unassigned": 1}
    assert day.set_index("arm")["new_mrr_usd_cents"].to_dict() == {
        "control": 0,
        "treatment": 2000,
        "unassigned": 3000,
    }
    totals = growth.assert_arms_add_up(day)
    assert totals["net_new_mrr_usd_cents"] == 5000 and totals["customers_end"] == 2
    broken = pd.concat([day, day.assign(experiment="other", new_accounts=0)])
    with pytest.raises(growth.GrowthIdentityError):
        growth.assert_arms_add_up(broken)


def test_period_is_final_once_billing_delivered_every_day(tmp_path):
    frame = pd.DataFrame({"event_id": ["x"]})
    for day in pd.date_range("2026-02-01", "2026-02-28"):
        landing.write_delivery(
            "subscriptions",
            day.date(),
            frame,
            arrived_at=day + pd.Timedelta(hours=26),
            root=tmp_path,
            durable=False,
        )
    early = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert growth.period_status("2026-02", early, root=tmp_path) == "provisional"
    assert growth.period_status("2026-02", early + dt.timedelta(hours=3), root=tmp_path) == "final"


def test_day_is_complete_once_billing_and_crm_delivered_it_and_nothing_is_pending(tmp_path):
    frame = pd.DataFrame({"event_id": ["x"]})
    arrived = dt.datetime(2026, 3, 11, 4, tzinfo=dt.UTC)
    for source in ("subscriptions", "crm_stage_history"):
        landing.write_delivery(source, "2026-03-10", frame, arrived_at=arrived, root=tmp_path, durable=False)
    before = arrived - dt.timedelta(hours=1)
    assert growth.day_status("2026-03-10", before, pending_crm_updates=0, root=tmp_path) == "provisional"
    assert growth.day_status("2026-03-10", arrived, pending_crm_updates=0, root=tmp_path) == "complete"
    assert growth.day_status("2026-03-10", arrived, pending_crm_updates=2, root=tmp_path) == "provisional"


def test_paying_events_without_seats_or_price_are_left_out_of_mrr_and_listed():
    events = [
        ev("a1", "s1", "active", "2026-01-10", created=True),
        ev("a2", "s1", "active", "2026-02-10", qty=0),  # a zero-seat renewal (math_errors)
        ev("a3", "s1", "canceled", "2026-03-10", qty=0, reason="cancellation_requested"),  # no seats needed
    ]
    bad = growth.unusable_events(pd.DataFrame(events))
    assert list(bad["event_id"]) == ["a2"] and bad["reason"].iloc[0].startswith(
        "paying status without a positive"
    )
    m = movements(events, start="2026-02-01", end="2026-03-01")
    assert m.loc["A1", "movement"] == "flat" and m.loc["A1", "ending_mrr_usd_cents"] == 2000


def no_plan_change_gaps() -> pd.DataFrame:
    """``plan_gaps`` of a company whose CRM has no plan change (customer -> customer), as the lifecycle
    builds it: empty, ``effective_at`` UTC but ``billing_at`` tz-naive (the clean 40-account demo)."""
    chain = pd.DataFrame(
        {
            "stage_event_id": ["s1", "s2"],
            "account_id": ["C1", "C1"],
            "prev_stage": [None, "trial"],
            "to_stage": ["trial", "customer"],
            "effective_at": [ts("2026-08-20"), ts("2026-09-03")],
            "tier": ["starter", "starter"],
            "seats": [2.0, 2.0],
        }
    )
    milestones = pd.DataFrame(
        {"account_id": ["A1"], "kind": ["activated"], "at": [ts("2026-09-03")], "event_id": ["e1"]}
    )
    return lifecycle.plan_change_gaps(
        chain, milestones, pd.Series({"C1": "A1"}), tolerance=dt.timedelta(days=3)
    )


def test_plan_change_findings_compare_a_naive_billing_date_as_utc():
    start, end = month_bounds("2026-09", tz="UTC")
    assert growth_checks.plan_change_findings(no_plan_change_gaps(), start, end).empty
    # a naive billing date is UTC: billed on 30 September, CRM-dated in October -> in September's findings
    gaps = pd.DataFrame(
        {
            "stage_event_id": ["s3", "s4"],
            "account_id": ["C1", "C2"],
            "effective_at": [ts("2026-10-20"), ts("2026-10-20")],
            "billing_at": pd.to_datetime(["2026-09-30 23:00", "2026-10-01 00:00"]),
            "gap_days": [20.0, 19.0],
            "mismatch": [True, True],
        }
    )
    found = growth_checks.plan_change_findings(gaps, start, end)
    assert list(found["stage_event_id"]) == ["s3"]
    assert found["billing_at"].iloc[0] == ts("2026-09-30 23:00")


def test_revenue_mismatch_repairs_hold_when_the_crm_has_no_plan_change():
    life = lifecycle.Lifecycle(*[pd.DataFrame()] * 4, plan_gaps=no_plan_change_gaps(), history=pd.DataFrame())
    state = SimpleNamespace(
        catalogue_id="growth_revenue_mismatch",
        window=month_bounds("2026-09", tz="UTC"),
        month=SimpleNamespace(life=life),
    )
    ok, how = runbooks_growth.repaired(None, state)
    assert ok and how.startswith("0 CRM plan change(s)")

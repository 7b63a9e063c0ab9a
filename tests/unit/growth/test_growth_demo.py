"""Acceptance on the demo company: figures vs an independent replay, and each Growth fault end to end.

The pipeline's figures (``helpers.growth.month``, as the notebooks call it) are compared with a
recomputation written differently: subscription events replayed day by day in plain Python with
``Decimal`` FX, and CRM stage rows counted directly. Then each Growth fault is injected in turn:
the matching check must fire with evidence naming exactly the injected accounts and rows
(``_faults.json``) and nothing else may fire; with the documented repairs the figures must equal
the clean run's (and without them they must not, or the test would prove nothing).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing
from helpers import checks  # noqa: F401
from helpers.core import config  # noqa: F401
from helpers.core.periods import month_bounds
from helpers.growth import checks as growth_checks  # noqa: F401
from helpers.growth import (
    entities,  # noqa: F401
    lifecycle,  # noqa: F401
)
from helpers.growth import metrics as growth  # noqa: F401
from helpers.growth.month import build_history, month_from
from helpers.storage import landing  # noqa: F401

pytestmark = pytest.mark.unit

DEMO = {"accounts": 200, "months": 4, "seed": 7, "end": "2026-10-31"}
PERIODS = ("2026-07", "2026-08", "2026-09", "2026-10")
AS_OF = dt.datetime(2026, 11, 6, tzinfo=dt.UTC)  # every delivery (late CRM entries included) has landed
SETTINGS = config.GrowthConfig()
FAULTS = {
    "skipped_stage": "skipped_stage@2026-10-01",
    "late_account_updates": "late_account_updates@2026-10-08",
    "duplicate_accounts": "duplicate_accounts@2026-10-08",
    "growth_revenue_mismatch": "growth_revenue_mismatch@2026-10-01",
    "churn_misclassified": "churn_misclassified",
}


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO)


# ---------------------------------------------------------------- the pipeline, as the notebooks run it


@dataclass
class Run:
    monthly: dict[str, pd.Series]
    daily: pd.DataFrame  # counted transitions per day (growth_daily's counts, all arms)
    results: dict[str, list[checks.CheckResult]]


def run(
    root: Path,
    *,
    as_of: dt.datetime = AS_OF,
    repair: bool = True,
    reviewed: entities.Reviewed | None = None,
) -> Run:
    history = build_history(
        as_of, settings=SETTINGS, root=root, reviewed=reviewed or entities.Reviewed(), apply_repairs=repair
    )
    hist = history.entity_hist
    counted = hist[hist["kind"].isin(list(lifecycle.COUNTED_KINDS))]
    daily = pd.crosstab(counted["effective_at"].dt.date, counted["kind"].map(lifecycle.COUNTED_KINDS))
    monthly, results = {}, {}
    for period in PERIODS:
        month = month_from(history, period, root=root)
        monthly[period] = month.summary.iloc[0]
        results[period] = list(month.evaluate_checks().values())
    return Run(monthly, daily, results)


def fired(r: Run) -> dict[str, list[checks.CheckResult]]:
    out = defaultdict(list)
    for period_results in r.results.values():
        for result in period_results:
            if result.status != "pass":
                out[result.check_id.split(".", 1)[1]].append(result)
    return dict(out)


def union(results: list[checks.CheckResult], key: str) -> set[str]:
    return {v for r in results for v in r.evidence.get(key, [])}


def ground_truth(root: Path) -> list[dict]:
    return json.loads((root / "_faults.json").read_text())["faults"]


# ---------------------------------------------------------------- the independent recomputation


def replay(root: Path, as_of: dt.datetime = AS_OF) -> dict[str, dict[str, float]]:
    """Monthly MRR figures from the subscription events, replayed day by day (clean data: no reclassification)."""
    subs = landing.read_source("subscriptions", root=root, as_of=as_of, with_arrival=True)
    subs = (
        subs.sort_values("_arrived_at")
        .drop_duplicates("event_id", keep="last")
        .sort_values(["event_at", "event_id"])
    )
    owner = dict(
        landing.read_source("billing_customers", root=root, as_of=as_of)[["customer_id", "account_id"]].values
    )
    rates = {
        (str(r.date), r.currency): Decimal(str(r.usd_per_unit))
        for r in landing.read_source("fx_rates", root=root).itertuples()
    }
    first_day = min(d for d, _ in rates)

    def usd(amount: int, currency: str, day: str) -> int:
        rate = Decimal(1) if currency == "USD" else rates[(max(day, first_day), currency)]
        return int((Decimal(amount) * rate).quantize(Decimal(1), ROUND_HALF_EVEN))

    state: dict[str, dict] = {}  # subscription -> status, amount, currency, account, rate day
    paid_ever: set[str] = set()
    last_reason: dict[str, str] = {}
    snapshots: dict[str, tuple[dict[str, int], set[str], dict[str, str]]] = {}
    boundaries = [month_bounds(p)[0].date() for p in PERIODS] + [month_bounds(PERIODS[-1])[1].date()]
    days = iter(sorted(subs.groupby(subs["event_at"].dt.date)))
    day, todays = next(days)
    for boundary in boundaries:
        while day is not None and day < boundary:
            for e in todays.itertuples():
                s = state.setdefault(e.subscription_id, {"amount": 0})
                amount = e.item_quantity * e.item_unit_amount if e.status in ("active", "past_due") else 0
                if amount and amount != s["amount"]:
                    s["rate_day"] = str(day)
                s.update(amount=amount, currency=e.currency, account=owner[e.customer_id])
                if amount:
                    paid_ever.add(s["account"])
                if e.status == "canceled" and isinstance(e.cancellation_details_reason, str):
                    last_reason[s["account"]] = e.cancellation_details_reason
            day, todays = next(days, (None, None))
        mrr: dict[str, int] = defaultdict(int)
        for s in state.values():
            if s["amount"]:
                mrr[s["account"]] += usd(s["amount"], s["currency"], s["rate_day"])
        snapshots[str(boundary)] = (dict(mrr), set(paid_ever), dict(last_reason))
    out = {}
    for period, lo, hi in zip(PERIODS, boundaries, boundaries[1:], strict=False):
        (m0, paid0, _), (m1, _, reasons) = snapshots[str(lo)], snapshots[str(hi)]
        f = defaultdict(int)
        for acct in set(m0) | set(m1):
            a, b = m0.get(acct, 0), m1.get(acct, 0)
            kind = (
                ("reactivation" if acct in paid0 else "new") if not a
                else ("churn_involuntary" if reasons.get(acct) == "payment_failed" else "churn_voluntary") if not b
                else "expansion" if b > a else "contraction" if b < a else None
            )  # fmt: skip
            if kind:
                f[f"{kind}_mrr_usd_cents"] += b - a
                f[f"{kind}_count"] += 1
        churn = f["churn_voluntary_mrr_usd_cents"] + f["churn_involuntary_mrr_usd_cents"]
        start = sum(m0.values())
        out[period] = {
            "starting_mrr_usd_cents": start,
            "ending_mrr_usd_cents": sum(m1.values()),
            **{f"{k}_mrr_usd_cents": f[f"{k}_mrr_usd_cents"] for k in growth.MOVEMENTS},
            "customers_start": len(m0),
            "customers_end": len(m1),
            "new_customers": f["new_count"],
            "reactivated_customers": f["reactivation_count"],
            "churned_customers": f["churn_voluntary_count"] + f["churn_involuntary_count"],
            "nrr": (start + f["expansion_mrr_usd_cents"] + f["contraction_mrr_usd_cents"] + churn) / start,
            "grr": (start + f["contraction_mrr_usd_cents"] + churn) / start,
        }
    return out


def crm_counts(root: Path, as_of: dt.datetime = AS_OF) -> pd.DataFrame:
    """growth_daily's counts straight from the CRM rows (clean data: nothing to repair or merge)."""
    rows = landing.read_source("crm_stage_history", root=root, as_of=as_of)
    rows = rows.sort_values(["account_id", "effective_at"])
    rank = rows["tier"].map({"starter": 0, "growth": 1, "enterprise": 2})
    prev_rank = rank.groupby(rows["account_id"]).ffill().groupby(rows["account_id"]).shift()
    prev_seats = rows["seats"].groupby(rows["account_id"]).ffill().groupby(rows["account_id"]).shift()
    plan = (rows["from_stage"] == "customer") & (rows["to_stage"] == "customer")
    up = plan & ((rank > prev_rank) | ((rank == prev_rank) & (rows["seats"] > prev_seats)))
    kind = pd.Series(None, index=rows.index, dtype=object)
    kind[(rows["from_stage"] == "lead") & (rows["to_stage"] == "trial")] = "trials_started"
    kind[(rows["from_stage"] == "trial") & (rows["to_stage"] == "customer")] = "new_accounts"
    kind[(rows["from_stage"] == "trial") & (rows["to_stage"] == "lost")] = "trials_lost"
    kind[up] = "upgrades"
    kind[plan & ~up] = "downgrades"
    kind[rows["to_stage"] == "churned"] = "churned"
    kind[(rows["from_stage"] == "churned") & (rows["to_stage"] == "customer")] = "reactivations"
    return pd.crosstab(rows["effective_at"].dt.date, kind.dropna())


# ---------------------------------------------------------------- clean data


@pytest.fixture(scope="module")
def clean(clean_root) -> Run:
    return run(clean_root)


def test_clean_figures_match_an_independent_replay(clean, clean_root):
    expected = replay(clean_root)
    for period in PERIODS:
        got = clean.monthly[period]
        for name, want in expected[period].items():
            assert got[name] == pytest.approx(want, abs=1e-12), f"{period} {name}"
        moved = sum(got[f"{m}_mrr_usd_cents"] for m in growth.MOVEMENTS)
        assert got["starting_mrr_usd_cents"] + moved == got["ending_mrr_usd_cents"]
    for before, after in zip(PERIODS, PERIODS[1:], strict=False):  # a month starts where the last one ended
        assert clean.monthly[after]["starting_mrr_usd_cents"] == clean.monthly[before]["ending_mrr_usd_cents"]


def test_clean_daily_counts_match_the_crm(clean, clean_root):
    want = crm_counts(clean_root)
    got = clean.daily.reindex(columns=want.columns, fill_value=0)
    pd.testing.assert_frame_equal(got.loc[want.index], want, check_names=False)
    assert len(got) == len(want)


def test_daily_growth_by_arm_adds_up_to_the_day(clean, clean_root):
    history = build_history(AS_OF, settings=SETTINGS, root=clean_root, reviewed=entities.Reviewed())
    arms = growth.entity_arms(history.src.assignments, history.resolution.entity_of)
    net = 0
    for day in pd.date_range("2026-10-01", "2026-10-31").date:
        rows = growth.daily_growth(
            day,
            timeline=history.timeline,
            customer_entity=history.customer_entity,
            entity_hist=history.entity_hist,
            arms=arms,
        )
        totals = growth.assert_arms_add_up(rows)
        expect = clean.daily.reindex([day]).fillna(0).iloc[0]
        assert all(totals[c] == expect.get(c, 0) for c in lifecycle.COUNTED_KINDS.values()), day
        assert set(rows["arm"]) == {"control", "treatment", "unassigned"}
        net += totals["net_new_mrr_usd_cents"]
    october = clean.monthly["2026-10"]
    assert net == october["ending_mrr_usd_cents"] - october["starting_mrr_usd_cents"]


@pytest.mark.parametrize("as_of", ["2026-09-01", "2026-10-16T06:15", "2026-11-01"])
def test_no_growth_check_fires_on_clean_data(clean, clean_root, as_of):
    assert fired(clean) == {}
    early = run(clean_root, as_of=dt.datetime.fromisoformat(as_of).replace(tzinfo=dt.UTC))
    assert {k: [r.summary for r in v] for k, v in fired(early).items()} == {}


# ---------------------------------------------------------------- each fault


@pytest.fixture(scope="module")
def faulted(tmp_path_factory):
    cache: dict[str, tuple[Path, Run]] = {}

    def get(fault: str) -> tuple[Path, Run]:
        if fault not in cache:
            root = demo_landing(tmp_path_factory, **DEMO, faults=(FAULTS[fault],))
            cache[fault] = (root, run(root))
        return cache[fault]

    return get


def assert_same_figures(a: Run, b: Run) -> None:
    for period in PERIODS:
        pd.testing.assert_series_equal(a.monthly[period], b.monthly[period], check_names=False)
    pd.testing.assert_frame_equal(a.daily, b.daily)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_only_the_matching_check_fires(faulted, fault):
    _root, r = faulted(fault)
    assert set(fired(r)) == {fault}


def test_skipped_stage_names_the_accounts_and_billing_restores_the_stages(faulted, clean):
    root, r = faulted("skipped_stage")
    (truth,) = ground_truth(root)
    results = fired(r)["skipped_stage"]
    assert union(results, "accounts") == set(truth["details"]["accounts"])
    assert union(results, "stage_event_ids") == set(truth["details"]["changed"])
    assert all(row["repaired"] for res in results for row in res.evidence["rows"])
    assert_same_figures(r, clean)
    assert not run(root, repair=False).daily.equals(clean.daily)


def test_late_updates_name_the_rows_and_a_rerun_after_they_land_restores_the_counts(
    faulted, clean, clean_root
):
    root, r = faulted("late_account_updates")
    (truth,) = ground_truth(root)
    results = fired(r)["late_account_updates"]
    assert union(results, "stage_event_ids") == set(truth["rows"])
    assert union(results, "accounts") == set(truth["details"]["accounts"])
    assert_same_figures(r, clean)
    early = dt.datetime(2026, 10, 16, 6, 15, tzinfo=dt.UTC)  # some late entries have not landed yet
    assert not run(root, as_of=early).daily.equals(run(clean_root, as_of=early).daily)


def test_duplicates_are_merged_and_listed_until_reviewed(faulted, clean_root, tmp_path):
    root, r = faulted("duplicate_accounts")
    truth = {t["source"]: t for t in ground_truth(root)}
    (result,) = fired(r)["duplicate_accounts"]
    assert set(result.evidence["accounts"]) == set(truth["account_db"]["rows"])
    assert set(result.evidence["crm_accounts"]) == set(truth["crm_accounts"]["rows"])
    # the correct figures: the clean company with the acquisition merged (the duplicates bring no billing)
    details = truth["account_db"]["details"]
    acquisitions = "".join(
        f"  - {{account_id: {a['product_acquired']}, into: {a['product_acquirer']}, reason: acquired}}\n"
        for a in details["acquisitions"]
    )
    merged = tmp_path / "acquisitions.yml"
    merged.write_text("merges:\n" + acquisitions)
    assert_same_figures(r, run(clean_root, reviewed=entities.load_reviewed(merged)))
    assert not run(root, repair=False).daily.equals(run(clean_root).daily)
    # reviewing the proposed merges clears the check and changes nothing else
    review = tmp_path / "account_merges.yml"
    entries = [
        {"account_id": m["account_id"], "into": m["into"], "reason": m["reasons"]}
        for m in result.evidence["merges"]
    ]
    review.write_text("merges:\n" + "".join(f"  - {json.dumps(e)}\n" for e in entries))
    reviewed = run(root, reviewed=entities.load_reviewed(review))
    assert "duplicate_accounts" not in fired(reviewed)
    assert_same_figures(reviewed, r)


def test_revenue_mismatch_names_deals_and_upgrades_and_the_redating_restores_the_counts(faulted, clean):
    root, r = faulted("growth_revenue_mismatch")
    truth = {t["source"]: t for t in ground_truth(root)}
    results = fired(r)["growth_revenue_mismatch"]
    assert union(results, "deal_ids") == set(truth["sales_records"]["rows"])
    assert union(results, "stage_event_ids") == set(truth["crm_stage_history"]["rows"])
    deal_accounts = {d["account_id"] for d in truth["sales_records"]["details"]["deals"].values()}
    assert union(results, "accounts") == deal_accounts | set(
        truth["crm_stage_history"]["details"]["accounts"]
    )
    gaps = [d["gap_days"] for res in results for d in res.evidence["deals"]]
    assert all(45 <= g <= 75 for g in gaps)  # ~60 days between contract start and billing
    assert all("reconciliation" in res.evidence for res in results)
    assert_same_figures(r, clean)
    assert not run(root, repair=False).daily.equals(clean.daily)


def test_misclassified_churn_names_the_episodes_and_the_grace_rule_restores_mrr(faulted, clean):
    root, r = faulted("churn_misclassified")
    (truth,) = ground_truth(root)
    results = fired(r)["churn_misclassified"]
    assert union(results, "event_ids") == set(truth["rows"])
    assert union(results, "accounts") == set(truth["details"]["accounts"])
    kinds = {e["account_id"]: e["kind"] for e in truth["details"]["episodes"]}
    got = {row["account_id"]: row["classification"] for res in results for row in res.evidence["episodes"]}
    assert got == {a: ("recovered" if k == "recovered" else "involuntary") for a, k in kinds.items()}
    assert_same_figures(r, clean)
    raw = run(root, repair=False)
    assert any(not raw.monthly[p].equals(clean.monthly[p]) for p in PERIODS)

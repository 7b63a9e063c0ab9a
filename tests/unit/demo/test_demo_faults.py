"""Each business fault: ``_faults.json`` names exactly the rows it changed, and the clean data has
none of its symptoms (the detectors here are deliberately simple evidence, not the pipelines' checks)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from helpers.demo import company as co
from helpers.demo.generate import ACCOUNT_SOURCES, BATCH_FAULT_IDS, COMPANY_SOURCES, FAULTS_FILE, generate
from helpers.demo.spec import DemoSpec, FaultSpec
from helpers.storage import landing
from helpers.storage.contracts import SOURCES

pytestmark = pytest.mark.unit

SPEC = DemoSpec(accounts=150, months=4, seed=42, end=dt.date(2026, 10, 31))
BUSINESS_SOURCES = ACCOUNT_SOURCES + COMPANY_SOURCES
UTC = dt.UTC


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean") / "landing"
    generate(SPEC, root, events=False)
    return root


_FAULTED: dict[str, tuple[Path, list[dict]]] = {}


@pytest.fixture(scope="module")
def faulted(tmp_path_factory: pytest.TempPathFactory):
    """fault text -> (landing root, ground-truth records), generated once per module."""

    def get(text: str) -> tuple[Path, list[dict]]:
        if text not in _FAULTED:
            root = tmp_path_factory.mktemp(re.sub(r"\W", "_", text)) / "landing"
            spec = DemoSpec(**{**SPEC.__dict__, "faults": (FaultSpec.parse(text),)})
            generate(spec, root, events=False)
            _FAULTED[text] = (root, json.loads((root / FAULTS_FILE).read_text())["faults"])
        return _FAULTED[text]

    return get


@functools.lru_cache(maxsize=256)
def rows(root: Path, source: str) -> Counter:
    """(key, signature) of every landed row: values with their types, partition and arrival."""
    key = SOURCES[source].key
    out: Counter = Counter()
    for d in landing.deliveries(source, root=root):
        for row in pq.read_table(root / source / d.file).to_pylist():
            out[(str(row[key]), repr(sorted(row.items())) + d.partition + d.arrived_at)] += 1
    return out


def changed_keys(clean: Path, faulty: Path, source: str) -> set[str]:
    a, b = rows(clean, source), rows(faulty, source)
    return {k for k, _ in (a - b) + (b - a)}


def deliveries(root: Path, source: str) -> set[tuple[str, str]]:
    return {(d.partition, d.arrived_at) for d in landing.deliveries(source, root=root)}


def read(root: Path, source: str) -> pd.DataFrame:
    return _read(root, source).copy()


@functools.lru_cache(maxsize=256)
def _read(root: Path, source: str) -> pd.DataFrame:
    return landing.read_source(source, root=root, with_arrival=True)


def truth(records: list[dict], source: str | None = None, fault: str | None = None) -> set[str]:
    return {
        r
        for rec in records
        if source in (None, rec["source"])
        if fault in (None, rec["fault"])
        for r in rec["rows"]
    }


# ----------------------------------------------------------------------------- ground truth == diff


@pytest.mark.parametrize("fault_id", BATCH_FAULT_IDS)
def test_ground_truth_names_exactly_the_changed_rows(clean: Path, faulted, fault_id: str) -> None:
    root, records = faulted(fault_id)
    assert records, f"{fault_id}: nothing injected"
    assert {r["fault"] for r in records} == {fault_id}
    for source in BUSINESS_SOURCES:
        expected = truth(records, source)
        if expected:
            assert changed_keys(clean, root, source) == expected, source
        else:  # untouched: the very same files (sha256), partitions and arrival times
            assert landing.deliveries(source, root=root) == landing.deliveries(source, root=clean), source
    for rec in records:
        assert rec["rows"] == sorted(rec["rows"]) and rec["date"] and rec["description"]


def test_clean_ground_truth_is_empty(clean: Path) -> None:
    payload = json.loads((clean / FAULTS_FILE).read_text())
    assert payload["faults"] == [] and payload["spec"]["seed"] == SPEC.seed


def test_bad_fault_parameters_and_dates_are_refused(tmp_path: Path) -> None:
    for text, match in (
        ("stale_data:sauce=billing_invoices", "unknown parameter"),
        ("stale_data:source=nope", "source="),
        ("missing_subscription_data@2020-01-01", "outside the generated history"),
        ("late_account_updates:share=2", r"expected a value in"),
    ):
        spec = DemoSpec(**{**SPEC.__dict__, "faults": (FaultSpec.parse(text),)})
        with pytest.raises(ValueError, match=match):
            generate(spec, tmp_path / "landing", events=False)
        assert not (tmp_path / "landing").exists()


# ----------------------------------------------------------------------------- Profit symptoms


def _close_day(month_first: dt.date) -> dt.date:
    import holidays

    d = (month_first + dt.timedelta(days=32)).replace(day=1)
    n = 0
    while True:
        if d.weekday() < 5 and d not in holidays.country_holidays("US", years=d.year, observed=True):
            n += 1
            if n == 5:
                return d
        d += dt.timedelta(days=1)


def recompute_ledger(root: Path) -> pd.DataFrame:
    """Finance's ledger recomputed from the landing files with Finance's documented rules."""
    fx = read(root, "fx_rates")
    fx["date"] = pd.to_datetime(fx["date"]).dt.date
    rate = {(r.date, r.currency): int(r.usd_per_unit * 1_000_000) for r in fx.itertuples()}
    last_day = max(fx["date"])
    out: dict[tuple[str, str, str, str], int] = {}

    def add(month: dt.date, cat: str, sub: str, cur: str, amount: int) -> None:
        k = (month.strftime("%Y-%m"), cat, sub, cur)
        out[k] = out.get(k, 0) + int(amount)

    inv = read(root, "billing_invoices").sort_values(["invoice_line_id", "updated_at"])
    inv = inv.groupby("invoice_line_id").tail(1)
    inv = inv[inv["status"] != "uncollectible"]
    for r in inv.itertuples():
        ps, pe = pd.Timestamp(r.period_start).date(), pd.Timestamp(r.period_end).date()
        total, done, day = (pe - ps).days, 0, ps
        while day < pe:
            nxt = min(pe, (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1))
            cum = done + (nxt - day).days
            add(
                day.replace(day=1),
                "revenue",
                "subscriptions",
                r.currency,
                r.amount * cum // total - r.amount * done // total,
            )
            done, day = cum, nxt
    pay = read(root, "hr_payroll")
    for r in pay.itertuples():
        add(
            pd.Timestamp(r.payroll_month).date(),
            "salaries",
            r.department,
            "USD",
            r.gross_pay + r.employer_taxes + r.benefits,
        )
    cloud = read(root, "cloud_costs")
    names = {"AWS": "aws", "Microsoft": "azure", "Google Cloud": "gcp"}
    for (period, prov), g in cloud.groupby([cloud["BillingPeriodStart"].dt.date, "ProviderName"]):
        micros = sum(int(v) for v in g["BilledCostMicros"])
        q, rem = divmod(micros, 10_000)
        add(
            period,
            "infrastructure",
            names[prov],
            "USD",
            q + (2 * rem > 10_000 or (2 * rem == 10_000 and q % 2)),
        )
    ops = read(root, "ops_expenses")
    for r in ops.itertuples():
        inc = pd.Timestamp(r.incurred_date).date().replace(day=1)
        sub = r.submitted_at.date()
        book = inc if sub <= _close_day(inc) else sub.replace(day=1)
        add(book, "operations", r.category, r.currency, int(r.amount))
    rows_ = []
    for (ym, cat, sub, cur), local in out.items():
        first = dt.date.fromisoformat(ym + "-01")
        last = min((first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1), last_day)
        if last < (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1):
            continue  # an incomplete month is not closed
        r_ = rate.get((last, cur))
        if r_ is None:
            continue
        n = local * r_
        q, rem = divmod(n, 1_000_000)
        usd = q + (2 * rem > 1_000_000 or (2 * rem == 1_000_000 and q % 2))
        rows_.append({"line_id": f"{ym}|{cat}|{sub}|{cur}", "amount_local": local, "amount_usd": usd})
    return pd.DataFrame(rows_)


def ledger_differences(root: Path) -> set[str]:
    led = read(root, "finance_ledger")
    mine = recompute_ledger(root)
    m = led.merge(mine, on="line_id", how="outer", suffixes=("_finance", "_ours"))
    m = m[m["line_id"].str[:7] >= led["line_id"].str[:7].min()]
    m = m[
        ~(
            (m["line_id"].str.contains("|revenue|"))
            & (m["amount_local_finance"].isna())
            & (m["amount_local_ours"] == 0)
        )
    ]
    diff = (m["amount_local_finance"].fillna(0) != m["amount_local_ours"].fillna(0)) | (
        m["amount_usd_finance"].fillna(0) != m["amount_usd_ours"].fillna(0)
    )
    return set(m.loc[diff, "line_id"])


def test_finance_mismatch(clean: Path, faulted) -> None:
    assert ledger_differences(clean) == set(), "the clean ledger reconciles exactly with Finance's rules"
    root, records = faulted("finance_mismatch")
    missing = next(r for r in records if r["source"] == "ops_expenses")
    cat, period = missing["details"]["category"], missing["details"]["period"]
    missing_lines = {lid for lid in ledger_differences(root) if lid.startswith(f"{period}|operations|{cat}|")}
    assert missing_lines, "the removed category shows up as a ledger difference"
    assert ledger_differences(root) == truth(records, "finance_ledger") | missing_lines


def billing_rows_per_day(root: Path) -> pd.Series:
    parts = [read(root, s)["_partition"] for s in ("subscriptions", "billing_invoices", "billing_payments")]
    days = pd.concat(parts).value_counts()
    every = pd.date_range(SPEC.start, SPEC.end).strftime("%Y-%m-%d")
    return days.reindex(every, fill_value=0)


def billing_gaps(root: Path, days: int = 3) -> set[str]:
    """Days inside runs of at least ``days`` consecutive days without any billing row."""
    per_day = billing_rows_per_day(root)
    zero = (per_day == 0).to_numpy()
    run_id = np.cumsum(~zero)
    runs = pd.Series(zero).groupby(run_id).transform("sum").to_numpy()
    return set(per_day.index[zero & (runs >= days)])


def test_missing_subscription_data(clean: Path, faulted) -> None:
    assert billing_gaps(clean) == set()
    root, records = faulted("missing_subscription_data")
    window = set(records[0]["details"]["partitions"])
    assert (billing_rows_per_day(clean)[sorted(window)] > 0).all()
    assert billing_gaps(root) == window
    for s in ("subscriptions", "billing_invoices", "billing_payments"):
        assert {p for p, _ in deliveries(root, s)} == {p for p, _ in deliveries(clean, s)}, (
            "the empty days are delivered"
        )


def ops_symptoms(root: Path) -> dict[str, set[str]]:
    ops = read(root, "ops_expenses")
    amount = pd.to_numeric(ops["amount"])
    lag = (ops["submitted_at"].dt.tz_localize(None) - pd.to_datetime(ops["incurred_date"])).dt.days
    usd = amount * ops["currency"].map({"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.74})
    median = usd.groupby(ops["category"]).transform("median")
    return {
        "late": set(ops.loc[(lag > 31) & (lag < 300), "expense_id"]),
        "date": set(ops.loc[(lag < 0) | (lag >= 300), "expense_id"]),
        "amount": set(ops.loc[usd > 20 * median, "expense_id"]),
    }


def late_bills(root: Path) -> set[str]:
    cloud = read(root, "cloud_costs")
    month_end = cloud["BillingPeriodEnd"]
    return set(cloud.loc[cloud["_arrived_at"] > month_end + pd.Timedelta(days=10), "Id"])


def test_expenses_wrong_month(clean: Path, faulted) -> None:
    assert all(not v for v in ops_symptoms(clean).values()) and not late_bills(clean)
    root, records = faulted("expenses_wrong_month")
    found = ops_symptoms(root)
    by_part = {r["description"].split(":")[0]: set(r["rows"]) for r in records}
    assert found["late"] == by_part["late ops submission"]
    assert found["date"] == by_part["fat-fingered incurred date"]
    assert found["amount"] == by_part["fat-fingered amount"]
    assert late_bills(root) == by_part["delayed cloud bill"]


def math_symptoms(root: Path) -> dict[str, set[str]]:
    inv, subs, cust = (
        read(root, "billing_invoices"),
        read(root, "subscriptions"),
        read(root, "billing_customers"),
    )
    text = set()
    for d in landing.deliveries("ops_expenses", root=root):
        t = pq.read_table(root / "ops_expenses" / d.file)
        if str(t.schema.field("amount").type) != "int64":
            text |= set(t.column("expense_id").to_pylist())
    counts = cust["customer_id"].value_counts()
    return {
        "billing_invoices": set(inv.loc[inv["amount"].isna(), "invoice_line_id"]),
        "subscriptions": set(subs.loc[subs["item_quantity"] == 0, "event_id"]),
        "billing_customers": set(counts[counts > 1].index),
        "ops_expenses": text,
    }


def test_math_errors(clean: Path, faulted) -> None:
    assert all(not v for v in math_symptoms(clean).values())
    root, records = faulted("math_errors")
    found = math_symptoms(root)
    for source, keys in found.items():
        assert keys == truth(records, source), source


def test_stale_data(clean: Path, faulted) -> None:
    every = {d.isoformat() for d in pd.date_range(SPEC.start, SPEC.end).date}
    assert {p for p, _ in deliveries(clean, "billing_invoices")} == every
    root, records = faulted("stale_data")
    got = {p for p, _ in deliveries(root, "billing_invoices")}
    assert every - got == set(records[0]["details"]["withheld_partitions"])
    assert max(got) == records[0]["details"]["last_delivered_partition"]


def test_upstream_missing(clean: Path, faulted) -> None:
    def late(root: Path, source: str) -> set[str]:
        return {
            p
            for p, a in deliveries(root, source)
            if dt.datetime.fromisoformat(a) - dt.datetime.fromisoformat(p).replace(tzinfo=UTC)
            > dt.timedelta(hours=30)
        }

    for s in BUSINESS_SOURCES:
        if SOURCES[s].schedule_hours is not None:
            assert not late(clean, s), s
    root, records = faulted("upstream_missing")
    rec = records[0]
    assert late(root, rec["source"]) == set(rec["details"]["partitions"])
    frame = read(root, rec["source"])
    assert set(
        frame.loc[frame["_partition"].isin(rec["details"]["partitions"]), SOURCES[rec["source"]].key]
    ) == set(rec["rows"])


# ----------------------------------------------------------------------------- Growth symptoms

ALLOWED = {
    (None, "lead"),
    ("lead", "trial"),
    ("trial", "customer"),
    ("trial", "lost"),
    ("customer", "customer"),
    ("customer", "churned"),
    ("churned", "customer"),
}


def skipped(root: Path) -> set[str]:
    st = read(root, "crm_stage_history").sort_values(["account_id", "effective_at"])
    prev = st.groupby("account_id")["to_stage"].shift()
    bad = (st["from_stage"].fillna("") != prev.fillna("")) | ~pd.Series(
        [
            (f if isinstance(f, str) else None, t) in ALLOWED
            for f, t in zip(st["from_stage"], st["to_stage"], strict=True)
        ],
        index=st.index,
    )
    return set(st.loc[bad, "account_id"])


def test_skipped_stage(clean: Path, faulted) -> None:
    assert skipped(clean) == set()
    root, records = faulted("skipped_stage")
    assert skipped(root) == set(records[0]["details"]["accounts"])


def late_entries(root: Path) -> set[str]:
    st = read(root, "crm_stage_history")
    return set(st.loc[st["entered_at"] - st["effective_at"] > pd.Timedelta(days=4), "stage_event_id"])


def test_late_account_updates(clean: Path, faulted) -> None:
    assert late_entries(clean) == set()
    root, records = faulted("late_account_updates")
    assert late_entries(root) == truth(records)
    st = read(root, "crm_stage_history")
    lag = (st["entered_at"] - st["effective_at"])[st["stage_event_id"].isin(truth(records))]
    assert lag.min() >= pd.Timedelta(days=7) and lag.max() <= pd.Timedelta(days=10)


def _norm(name: str) -> str:
    n = re.sub(r"[^a-z0-9 ]", "", name.lower())
    n = re.sub(r"\b(the|company|incorporated|inc|ltd|gmbh|sas|bv|sl|emea)\b", "", n)
    return re.sub(r"\s+", "", n)


def duplicates(root: Path) -> set[str]:
    crm = read(root, "crm_accounts").sort_values("updated_at").groupby("account_id").tail(1)
    dom = crm["domain"].str.removeprefix("www.")
    key = crm["name"].map(_norm)
    dup = dom.duplicated(keep=False) | key.duplicated(keep=False) | crm["parent_account_id"].notna()
    return set(crm.loc[dup, "account_id"])


def test_duplicate_accounts(clean: Path, faulted) -> None:
    assert duplicates(clean) == set()
    root, records = faulted("duplicate_accounts")
    rec = next(r for r in records if r["source"] == "crm_accounts")
    pairs = rec["details"]["duplicates"]
    expected = {p["duplicate"] for p in pairs} | {p["original"] for p in pairs}
    expected |= {a["acquired"] for a in rec["details"]["acquisitions"]}
    assert duplicates(root) == expected
    db = read(root, "account_db").sort_values("updated_at").groupby("account_id").tail(1)
    shared = db[db["domain"].str.removeprefix("www.").duplicated(keep=False)]
    assert set(shared["account_id"]) >= {a["product_acquired"] for a in rec["details"]["acquisitions"]}


def _billing_of_crm(root: Path) -> pd.DataFrame:
    crm = read(root, "crm_accounts").groupby("account_id").tail(1)[["account_id", "product_account_id"]]
    cust = read(root, "billing_customers").drop_duplicates("customer_id")[["customer_id", "account_id"]]
    return crm.merge(cust.rename(columns={"account_id": "product_account_id"}), on="product_account_id")


def contract_gaps(root: Path) -> set[str]:
    sales = read(root, "sales_records").merge(_billing_of_crm(root), on="account_id")
    sales = sales[sales["first_payment_expected"] >= SPEC.start]  # billing before the history is not landed
    inv = read(root, "billing_invoices")
    first = inv[inv["line_type"] == "subscription"].groupby("customer_id")["period_start"].min()
    first_pay = pd.to_datetime(sales["customer_id"].map(first))
    gap = (first_pay - pd.to_datetime(sales["contract_start"])).dt.days
    return set(sales.loc[gap > 14, "deal_id"])


def backdated_upgrades(root: Path) -> set[str]:
    st = read(root, "crm_stage_history")
    st = st[(st["from_stage"] == "customer") & (st["to_stage"] == "customer")].merge(
        _billing_of_crm(root), on="account_id"
    )
    subs = read(root, "subscriptions")
    seen = set(zip(subs["customer_id"], subs["event_at"], strict=True))
    return {
        e
        for e, c, t in zip(st["stage_event_id"], st["customer_id"], st["effective_at"], strict=True)
        if (c, t) not in seen
    }


def test_growth_revenue_mismatch(clean: Path, faulted) -> None:
    assert contract_gaps(clean) == set() and backdated_upgrades(clean) == set()
    root, records = faulted("growth_revenue_mismatch")
    assert contract_gaps(root) == truth(records, "sales_records")
    assert backdated_upgrades(root) == truth(records, "crm_stage_history")


def test_growth_revenue_mismatch_repriced_is_a_real_mismatch(clean: Path, faulted) -> None:
    """The opt-in knob: subscriptions paying from DATE priced 20 % above their invoices; billing's
    invoices, payments and Finance's ledger stay as billed."""
    root, records = faulted("growth_revenue_mismatch@2026-08-01:repriced=0.3,contracts=0,upgrades=0")
    assert [r["source"] for r in records] == ["subscriptions"]
    changed = changed_keys(clean, root, "subscriptions")
    assert changed == truth(records, "subscriptions") and changed
    for source in ("billing_invoices", "billing_payments", "finance_ledger"):
        assert landing.deliveries(source, root=root) == landing.deliveries(source, root=clean), source
    before, after = (
        read(r, "subscriptions").set_index("event_id").loc[sorted(changed)] for r in (clean, root)
    )
    assert (after["item_unit_amount"] == (before["item_unit_amount"] * 120 + 50) // 100).all()
    assert (after["event_at"] >= pd.Timestamp("2026-08-01", tz="UTC")).all()
    assert set(after["subscription_id"]) == set(records[0]["details"]["subscriptions"])


@functools.lru_cache(maxsize=1)
def _usage() -> pd.DataFrame:
    return co.usage_periods(co.simulate(SPEC)[0])


def misclassified(root: Path) -> set[str]:
    """Accounts whose subscription was cancelled for non-payment but that still paid that
    subscription or used the product afterwards (before any later subscription: reactivations
    are legitimate)."""
    subs = read(root, "subscriptions")
    cust = (
        read(root, "billing_customers").drop_duplicates("customer_id").set_index("customer_id")["account_id"]
    )
    cancel = subs[(subs["status"] == "canceled") & (subs["cancellation_details_reason"] == "payment_failed")]
    created = subs[subs["event_type"] == "customer.subscription.created"]
    lines = read(root, "billing_invoices")[["invoice_id", "subscription_id"]].drop_duplicates()
    pays = read(root, "billing_payments").merge(lines, on="invoice_id")
    pays = pays[(pays["status"] == "succeeded") & (pays["type"] == "charge")]
    usage = _usage()
    out = set()
    for sub, c, when in zip(
        cancel["subscription_id"], cancel["customer_id"], cancel["canceled_at"], strict=True
    ):
        acct = cust[c]
        later = created.loc[(created["customer_id"] == c) & (created["event_at"] > when), "event_at"]
        until = later.min().date() if len(later) else dt.date.max
        paid_after = ((pays["subscription_id"] == sub) & (pays["created"] > when)).any()
        mine = usage[usage["account_id"] == acct]
        used_after = ((mine["end"] > when.date()) & (mine["start"] < until)).any()
        if paid_after or used_after:
            out.add(acct)
    return out


def test_churn_misclassified(clean: Path, faulted) -> None:
    assert misclassified(clean) == set()
    root, records = faulted("churn_misclassified")
    assert misclassified(root) == set(records[0]["details"]["accounts"])
    kinds = {e["kind"] for e in records[0]["details"]["episodes"]}
    assert kinds and kinds <= {"lapsed", "recovered"}


def test_fault_defaults_fall_in_the_last_complete_month(faulted) -> None:
    last = SPEC.end.replace(day=1)
    for fid in ("missing_subscription_data", "math_errors", "late_account_updates", "stale_data"):
        _, records = faulted(fid)
        assert all(dt.date.fromisoformat(r["date"]) >= last - dt.timedelta(days=31) for r in records), fid
    assert np.all([r["params"] == {} for r in faulted("stale_data")[1]])

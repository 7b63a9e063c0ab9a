"""Landing files verified on read: sha256 against the manifest, contract columns and types.

A small demo company is generated once; each test copies its landing zone and damages one
delivered file the way the fault trials did (doubled invoice amounts, a dropped ``amount``
column, '12,50 EUR' in a payment amount), then reads it as Profit and Growth do. What the read
leaves out must be named (file, row, field), counted, fail a critical check, keep the month
provisional, and be appended to the quarantine zone; a clean company must read exactly as before.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import REPO, demo_landing
from helpers import checks
from helpers.core import businesscal
from helpers.core import config as cfgmod
from helpers.growth import checks as growth_checks  # noqa: F401  (registers the checks)
from helpers.growth import entities
from helpers.growth.month import build_month
from helpers.profit import checks as profit_checks  # noqa: F401  (registers the checks)
from helpers.profit.aggregate import build_aggregate
from helpers.profit.inputs import AGGREGATE_SOURCES, ensure_columns, load_inputs, read_windows
from helpers.storage import landing, verified
from helpers.storage.quarantine import read_quarantine

pytestmark = pytest.mark.unit

DEMO = {"accounts": 60, "months": 3, "seed": 11, "end": "2026-10-31"}
PERIOD = "2026-10"
AS_OF = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)  # every delivery of the history has landed
CONFIG = cfgmod.load(REPO / "config")
SETTINGS = CONFIG.pipelines.profit
CALENDAR = businesscal.BusinessCalendar.from_team(CONFIG.team)
GROWTH = cfgmod.GrowthConfig()


@pytest.fixture
def company(tmp_path_factory, tmp_path) -> Path:
    """A writable copy of the small demo company's landing zone."""
    root = tmp_path / "landing"
    shutil.copytree(demo_landing(tmp_path_factory, **DEMO), root)
    return root


def biggest(root: Path, source: str, period: str = PERIOD) -> landing.Delivery:
    """The delivery of ``source`` in ``period`` with the most rows."""
    found = [d for d in landing.deliveries(source, root=root) if d.partition.startswith(period)]
    return max(found, key=lambda d: (d.rows, d.partition))


def rewrite(root: Path, d: landing.Delivery, change) -> Path:
    """Rewrite the delivered file in place (its manifest line unchanged), as a tamperer would."""
    path = landing.source_dir(d.source, root) / d.file
    pq.write_table(change(pq.read_table(path)), path)
    return path


def delivered_as(root: Path, d: landing.Delivery, change) -> Path:
    """The file as the source delivered it: rewritten, and its manifest line recording that file."""
    path = rewrite(root, d, change)
    manifest = landing.source_dir(d.source, root) / landing.MANIFEST
    lines = [json.loads(ln) for ln in manifest.read_text().splitlines() if ln.strip()]
    for rec in lines:
        if rec["file"] == d.file:
            rec["sha256"] = landing.file_sha256(path)
    manifest.write_text("".join(json.dumps(rec, sort_keys=True) + "\n" for rec in lines))
    return path


def doubled(table: pa.Table) -> pa.Table:
    """The invoice amounts doubled: the tampering the fault trials did."""
    i = table.schema.get_field_index("amount")
    return table.set_column(i, "amount", pc.multiply(table["amount"], 2))


def profit(root: Path, quarantine: Path | None = None):
    inputs = load_inputs(PERIOD, AS_OF, settings=SETTINGS, root=root, quarantine_root=quarantine)
    agg = build_aggregate(inputs, settings=SETTINGS, calendar=CALENDAR, run_id="test")
    ctx = checks.CheckContext("profit_aggregate", PERIOD, AS_OF, "test", {"aggregate": agg})
    return agg, {c.id: checks.evaluate(c, ctx) for c in checks.registered("profit_aggregate")}


def growth(root: Path):
    month = build_month(PERIOD, AS_OF, settings=GROWTH, root=root, reviewed=entities.Reviewed())
    return month, month.evaluate_checks()


def revenue(agg) -> int:
    return int(agg.profit["revenue_usd_cents"].item())


# ---------------------------------------------------------------- verify_delivery


def test_verify_delivery_names_a_changed_or_missing_file_and_rehashes_on_a_stat_change(company):
    d = biggest(company, "billing_invoices")
    path = landing.source_dir(d.source, company) / d.file
    assert landing.verify_delivery(d, root=company) is None
    assert landing.verify_delivery(d, root=company) is None  # cached: same stat, same answer
    rewrite(company, d, doubled)
    reason = landing.verify_delivery(d, root=company)
    actual = landing.file_sha256(path)
    assert reason == (
        f"landing file changed after arrival: {path} (sha256 {actual[:12]} ≠ manifest {d.sha256[:12]})"
    )
    os.unlink(path)
    assert landing.verify_delivery(d, root=company) == f"landing file missing: {path}"


# ---------------------------------------------------------------- a clean company


def test_a_clean_company_reads_exactly_as_the_unverified_reader_did(company):
    agg, results = profit(company)
    assert agg.landing.ok and agg.landing.deliveries["billing_invoices"] > 0
    assert results["profit_aggregate.landing_integrity"].status == "pass"
    inputs = load_inputs(PERIOD, AS_OF, settings=SETTINGS, root=company)
    windows = read_windows(PERIOD, SETTINGS)
    windows["billing_payments"] = windows["billing_invoices"]
    for source in AGGREGATE_SOURCES:
        old = landing.read_source(
            source, as_of=AS_OF, start=windows.get(source), root=company, with_arrival=True
        )
        old = ensure_columns(old, source)
        pd.testing.assert_frame_equal(inputs[source].reset_index(drop=True), old, check_dtype=True)
    month, found = growth(company)
    assert month.src.landing.ok and found["growth_aggregate.landing_integrity"].status == "pass"
    assert month.status == "final"


# ---------------------------------------------------------------- a tampered file


def test_a_tampered_invoice_file_is_quarantined_whole_and_keeps_the_month_provisional(company, tmp_path):
    clean_agg, _ = profit(company)
    d = biggest(company, "billing_invoices")
    # the revenue the month has without that delivery: the figure the tampered run must give
    without = tmp_path / "without"
    shutil.copytree(company, without)
    manifest = landing.source_dir(d.source, without) / landing.MANIFEST
    lines = [ln for ln in manifest.read_text().splitlines() if json.loads(ln)["file"] != d.file]
    manifest.write_text("\n".join(lines) + "\n")
    expected_revenue = revenue(profit(without)[0])
    assert expected_revenue < revenue(clean_agg)  # the delivery carries revenue of the month

    path = rewrite(company, d, doubled)
    quarantine = tmp_path / "quarantine"
    agg, results = profit(company, quarantine)
    check = results["profit_aggregate.landing_integrity"]
    assert check.status == "fail" and check.severity == "critical"
    assert f"landing file changed after arrival: {path}" in check.summary
    assert revenue(agg) == expected_revenue  # the doubled amounts never reach revenue
    assert agg.profit["status"].item() == "provisional"
    assert any(f"landing file changed after arrival: {path}" in r for r in agg.reasons)
    [row] = read_quarantine(quarantine / "billing_invoices" / f"{d.partition}_part-00000.jsonl")
    assert row["line"] is None and row["field"] is None and row["reason"].startswith("landing file changed")
    assert row["raw"]["expected_sha256"] == d.sha256 and row["raw"]["actual_sha256"] == landing.file_sha256(
        path
    )
    assert row["raw"]["partition"] == d.partition and row["raw"]["file"] == d.file

    month, found = growth(company)
    g = found["growth_aggregate.landing_integrity"]
    assert g.status == "fail" and g.severity == "critical" and str(path) in g.summary
    assert month.status == "provisional" and month.monthly["status"].item() == "provisional"


# ---------------------------------------------------------------- a missing column


def test_an_invoice_file_without_its_amount_column_is_quarantined_with_the_named_message(company):
    d = biggest(company, "billing_invoices")
    path = delivered_as(company, d, lambda t: t.drop(["amount"]))
    agg, results = profit(company)
    check = results["profit_aggregate.landing_integrity"]
    assert check.status == "fail" and check.severity == "critical"
    assert f"column amount missing in {path}" in check.summary
    assert agg.profit["status"].item() == "provisional"
    assert any(f"column amount missing in {path}" in r for r in agg.reasons)
    # none of its lines reached revenue as a NULL amount
    assert not (agg.findings["reason"] == "amount is NULL").any()
    [rej] = agg.landing.rejected
    assert rej.kind == "columns" and rej.row.field == "amount" and rej.row.line is None
    month, found = growth(company)
    assert f"column amount missing in {path}" in found["growth_aggregate.landing_integrity"].summary
    assert month.status == "provisional"


# ---------------------------------------------------------------- values not of their contract type


def with_text(table: pa.Table, column: str, row: int, bad: str) -> pa.Table:
    values = [None if v is None else str(v) for v in table[column].to_pylist()]
    values[row] = bad
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.string()))


def test_a_payment_amount_of_12_50_eur_is_quarantined_with_file_row_and_field(company, tmp_path):
    d = biggest(company, "billing_payments")
    path = delivered_as(company, d, lambda t: with_text(t, "amount", 1, "12,50 EUR"))
    quarantine = tmp_path / "quarantine"
    agg, results = profit(company, quarantine)
    [q] = agg.landing.quarantined
    assert (q.file, q.line, q.field) == (str(path), 2, "amount") and "'12,50 EUR'" in q.reason
    mine = agg.findings[agg.findings["source"] == "billing_payments"]
    assert len(mine) == 1 and mine["action"].item() == "quarantined" and mine["raw"].item() == "12,50 EUR"
    assert str(path) in mine["reason"].item() and "row 2" in mine["reason"].item()
    assert agg.profit["quarantined_rows"].item() == 1 and agg.profit["status"].item() == "provisional"
    assert results["profit_aggregate.math_errors"].status == "fail"
    assert results["profit_aggregate.landing_integrity"].status == "pass"  # no delivery left out whole
    [row] = read_quarantine(quarantine / "billing_payments" / f"{d.partition}_part-00000.jsonl")
    assert (row["file"], row["line"], row["field"]) == (str(path), 2, "amount")

    month, found = growth(company)
    payments = month.src.payments
    assert len(payments) == len(set(payments["payment_id"]))
    bad_id = pq.read_table(path)["payment_id"][1].as_py()
    assert bad_id not in set(payments["payment_id"])  # left out, not read as NULL
    g = found["growth_aggregate.landing_integrity"]
    assert g.status == "fail" and g.severity == "warning" and "billing_payments" in g.summary
    assert g.evidence["rows_quarantined"][0]["line"] == 2 and month.status == "provisional"


def test_a_bad_value_in_an_invoice_file_is_quarantined_and_integer_text_still_coerced(company):
    d = biggest(company, "billing_invoices")

    def damage(t: pa.Table) -> pa.Table:
        t = with_text(t, "amount", 0, "12,50 EUR")
        return with_text(t, "quantity", 2, "ten")

    path = delivered_as(company, d, damage)
    agg, results = profit(company)
    got = sorted((q.file, q.line, q.field) for q in agg.landing.quarantined)
    assert got == [(str(path), 1, "amount"), (str(path), 3, "quantity")]
    reasons = agg.findings.loc[agg.findings["source"] == "billing_invoices", "reason"]
    assert reasons.str.contains(str(path)).sum() == 2
    # the other amounts of that file were delivered as integer text: kept, recorded as type drift
    coerced = agg.findings[
        (agg.findings["source"] == "billing_invoices") & (agg.findings["action"] == "coerced")
    ]
    assert len(coerced) > 0 and coerced["reason"].str.contains("type drift").all()
    assert results["profit_aggregate.math_errors"].status == "fail"
    assert results["profit_aggregate.math_errors"].severity == "critical"
    assert agg.profit["status"].item() == "provisional"


def test_read_verified_counts_every_row_received(company):
    d = biggest(company, "billing_payments")
    delivered_as(company, d, lambda t: with_text(t, "amount", 0, "n/a"))
    got = verified.read_verified("billing_payments", as_of=AS_OF, root=company)
    total = sum(x.rows for x in landing.deliveries("billing_payments", root=company, as_of=AS_OF))
    assert got.report.received["billing_payments"] == total == len(got.frame) + len(got.report.quarantined)

"""The bulk verified read (one DuckDB scan) returns exactly what ``read_verified`` returns.

A small demo company is generated once; each test copies its landing zone, damages it the way the
landing-verification tests do (a tampered file, a missing file, a dropped contract column, a value
not of its contract type, an integer column delivered as text) and compares the two readers: the
same frame (values, dtypes, order, ``_partition``/``_arrived_at``) and the same report (deliveries,
rows received, every delivery and row left out with its reason).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import demo_landing
from helpers.storage import bulkread, chunks, landing, verified

pytestmark = pytest.mark.unit

DEMO = {"accounts": 60, "months": 3, "seed": 11, "end": "2026-10-31"}
AS_OF = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
SOURCES = ("subscriptions", "crm_stage_history", "billing_invoices", "billing_payments", "fx_rates")


@pytest.fixture
def company(tmp_path_factory, tmp_path) -> Path:
    root = tmp_path / "landing"
    shutil.copytree(demo_landing(tmp_path_factory, **DEMO), root)
    return root


def same_read(root: Path, source: str, **kw) -> verified.VerifiedRead:
    """Both readers on ``source``; asserts they agree and returns the bulk read."""
    want = verified.read_verified(source, as_of=AS_OF, root=root, combine="arrow", **kw)
    got = bulkread.read_verified_bulk(source, as_of=AS_OF, root=root, **kw)
    pd.testing.assert_frame_equal(got.frame, want.frame, check_exact=True)
    assert got.report.deliveries == want.report.deliveries
    assert got.report.received == want.report.received
    assert got.report.reasons() == want.report.reasons()
    pd.testing.assert_frame_equal(got.report.frame(), want.report.frame())
    same_table(root, source, **kw)
    return got


def same_table(root: Path, source: str, **kw) -> None:
    """``read_verified_table`` gives ``read_verified``'s rows of the columns asked, and its report."""
    kw.pop("keep", None)
    columns = kw.pop("columns", None) or list(
        verified.read_verified(source, as_of=AS_OF, root=root).frame.columns[:-2]
    )
    want = verified.read_verified(source, as_of=AS_OF, root=root, combine="arrow", columns=columns, **kw)
    table, report = bulkread.read_verified_table(source, columns=columns, as_of=AS_OF, root=root, **kw)
    assert table.column_names == columns
    expected = want.frame[columns].copy()
    for c in columns:  # values of more than one type (drift read file by file) come as text
        if expected[c].dtype == object and expected[c].dropna().map(type).nunique() > 1:
            expected[c] = expected[c].astype("string").astype(object).where(expected[c].notna(), None)
    pd.testing.assert_frame_equal(table.to_pandas(), expected, check_exact=True)
    assert (report.deliveries, report.received) == (want.report.deliveries, want.report.received)
    pd.testing.assert_frame_equal(report.frame(), want.report.frame())


def busiest(root: Path, source: str) -> landing.Delivery:
    return max(landing.deliveries(source, root=root), key=lambda d: (d.rows, d.partition))


def rewrite(root: Path, d: landing.Delivery, change) -> Path:
    path = landing.source_dir(d.source, root) / d.file
    pq.write_table(change(pq.read_table(path)), path)
    return path


def test_a_clean_company_reads_the_same_rows_in_one_scan(company, monkeypatch):
    calls = []
    monkeypatch.setattr(
        verified, "read_verified", lambda *a, **k: calls.append(a) or pytest.fail("fell back")
    )
    for source in SOURCES:
        got = bulkread.read_verified_bulk(source, as_of=AS_OF, root=company)
        assert len(got.frame) == sum(d.rows for d in landing.deliveries(source, root=company, as_of=AS_OF))
    monkeypatch.undo()
    for source in SOURCES:
        same_read(company, source)
    got = same_read(
        company, "subscriptions", start="2026-10-01", end="2026-10-15", columns=["event_id", "event_at"]
    )
    assert set(got.frame.columns) == {"event_id", "event_at", "_partition", "_arrived_at"}
    assert got.frame["_partition"].between("2026-10-01", "2026-10-15").all()


def test_a_tampered_and_a_missing_file_are_rejected_whole_as_read_verified_does(company):
    d1 = busiest(company, "billing_invoices")
    rewrite(
        company,
        d1,
        lambda t: t.set_column(t.schema.get_field_index("amount"), "amount", pc.multiply(t["amount"], 2)),
    )
    others = [d for d in landing.deliveries("billing_invoices", root=company) if d.file != d1.file and d.rows]
    (landing.source_dir("billing_invoices", company) / others[0].file).unlink()
    got = same_read(company, "billing_invoices")
    assert sorted(r.kind for r in got.report.rejected) == ["changed", "missing"]


def test_schema_drift_falls_back_and_quarantines_the_same_rows(company):
    d = busiest(company, "billing_payments")

    def as_text(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index("amount")
        text = pc.cast(t["amount"], pa.string()).to_pylist()
        text[0] = "12,50 EUR"
        return t.set_column(i, "amount", pa.array(text, pa.string()))

    path = rewrite(company, d, as_text)
    manifest = landing.source_dir(d.source, company) / landing.MANIFEST
    lines = manifest.read_text().replace(d.sha256, landing.file_sha256(path))
    manifest.write_text(lines)
    got = same_read(company, "billing_payments")
    assert len(got.report.quarantined) == 1


def test_a_delivery_without_a_contract_column_is_rejected_as_read_verified_does(company):
    d = busiest(company, "billing_invoices")
    path = rewrite(company, d, lambda t: t.drop_columns(["amount"]))
    manifest = landing.source_dir(d.source, company) / landing.MANIFEST
    manifest.write_text(manifest.read_text().replace(d.sha256, landing.file_sha256(path)))
    got = same_read(company, "billing_invoices")
    assert [r.kind for r in got.report.rejected] == ["columns"]


class SpyConnection:
    """A DuckDB cursor that records the SQL it is asked to execute about landing files (a chunk's
    own signature, read once when the chunk is written, is not a landing file's)."""

    def __init__(self, con, asked: list[str]):
        self.con, self.asked = con, asked

    def execute(self, sql, *args, **kwargs):
        files = args[0][0] if sql == bulkread._SIGNATURE_SQL and args else []
        if not (files and all(chunks.CHUNK_DIR in Path(f).parts for f in files)):
            self.asked.append(sql)
        return self.con.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.con, name)


def spy_on_duckdb(monkeypatch) -> list[str]:
    asked: list[str] = []
    real = bulkread._connect
    monkeypatch.setattr(bulkread, "_connect", lambda: SpyConnection(real(), asked))
    return asked


def test_file_signatures_are_read_once_per_file_content(company, monkeypatch):
    bulkread._SIGNATURES.clear()
    asked = spy_on_duckdb(monkeypatch)
    same_read(company, "billing_payments")
    assert asked.count(bulkread._SIGNATURE_SQL) == 1
    cache = company.parent / "cache" / bulkread.SIGNATURES_FILE
    digests = {d.sha256 for d in landing.deliveries("billing_payments", root=company, as_of=AS_OF)}
    assert digests <= set(json.loads(cache.read_text())), "kept by each file's sha256"
    bulkread._SIGNATURES.clear()  # as a new process: read from the file
    asked.clear()
    same_read(company, "billing_payments")
    assert bulkread._SIGNATURE_SQL not in asked, "every file's signature came from the cache"


def test_a_changed_delivery_is_judged_by_its_own_signature_not_a_cached_one(company, monkeypatch):
    bulkread._SIGNATURES.clear()
    same_read(company, "billing_payments")  # every signature cached
    asked = spy_on_duckdb(monkeypatch)
    test_schema_drift_falls_back_and_quarantines_the_same_rows(company)  # a re-delivery, other schema
    assert asked.count(bulkread._SIGNATURE_SQL) == 1, "only the changed file's signature was read"


def test_an_unreadable_cache_is_ignored(company):
    bulkread._SIGNATURES.clear()
    cache = company.parent / "cache" / bulkread.SIGNATURES_FILE
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    same_read(company, "billing_payments")
    assert json.loads(cache.read_text()), "rewritten with the signatures read"


def test_shared_values_are_one_object_per_value_across_frames_and_nothing_else_changes():
    import datetime as dt

    def fresh(text: str) -> str:  # a string object of its own, as a read makes one per row
        return "".join(list(text))

    invoices = pd.DataFrame({"invoice_id": [fresh("in_1"), fresh("in_2"), fresh("in_1")], "n": [1, 2, 3]})
    payments = pd.DataFrame(
        {
            "invoice_id": [fresh("in_2"), None, fresh("in_1"), float("nan")],
            "mixed": [1, True, 1.0, fresh("1")],
            "day": [dt.date(2026, 10, 1), dt.date(2026, 10, 1), dt.date(2026, 10, 2), None],
        }
    )
    before = payments.copy()
    pool: dict = {}
    bulkread.share_values(invoices, ["invoice_id", "absent"], pool)
    bulkread.share_values(payments, ["invoice_id", "mixed", "day"], pool)
    assert invoices["invoice_id"].tolist() == ["in_1", "in_2", "in_1"] and invoices["n"].tolist() == [1, 2, 3]
    assert invoices["invoice_id"][0] is invoices["invoice_id"][2], "one object within a frame"
    assert payments["invoice_id"][0] is invoices["invoice_id"][1], "and across frames"
    assert payments["invoice_id"][2] is invoices["invoice_id"][0]
    assert payments["invoice_id"][1] is None and payments["invoice_id"][3] != payments["invoice_id"][3]
    assert [type(v) for v in payments["mixed"]] == [int, bool, float, str], "1, True and 1.0 stay apart"
    assert payments["day"][0] is payments["day"][1] and payments["day"][3] is None
    pd.testing.assert_frame_equal(payments, before)


RELEASE_PROBE = """
import json, os, sys
from helpers.storage import bulkread

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def freed(n):  # n blocks of 4 kB, one in 64 kept: the heap stays as high as it grew
    blocks = [bytes(4000) + bytes([i % 256]) for i in range(n)]
    keep = blocks[::64]
    del blocks
    return keep

out = []
for n in (5_000, 75_000):  # about 20 MB, then about 300 MB freed
    keep = freed(n)
    before = rss()
    bulkread.release_memory()
    out.append((before - rss()) >> 20)
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap")
def test_release_memory_gives_back_a_large_freed_heap_and_leaves_a_small_one():
    out = subprocess.run([sys.executable, "-c", RELEASE_PROBE], capture_output=True, text=True, check=True)
    small, large = json.loads(out.stdout.strip().splitlines()[-1])
    assert large > 200, f"about 300 MB freed: {large} MiB given back"
    assert small < 5, f"about 20 MB freed stays for the next step to reuse: {small} MiB given back"

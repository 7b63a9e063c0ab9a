"""Chunks: a bulk read writes the rows of settled daily deliveries into one file and later reads
scan it in their place, with exactly the rows and report ``read_verified`` gives, whatever happens
to the deliveries or the chunk afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import demo_landing
from helpers.storage import bulkread, chunks, landing, verified

pytestmark = pytest.mark.unit

DEMO = {"accounts": 60, "months": 3, "seed": 11, "end": "2026-10-31"}
AS_OF = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
SOURCE = "billing_invoices"


@pytest.fixture
def company(tmp_path_factory, tmp_path) -> Path:
    root = tmp_path / "landing"
    shutil.copytree(demo_landing(tmp_path_factory, **DEMO), root)
    return root


def same_read(root: Path, as_of: dt.datetime = AS_OF) -> verified.VerifiedRead:
    """The bulk read of ``SOURCE``; asserts it is exactly ``read_verified``'s."""
    want = verified.read_verified(SOURCE, as_of=as_of, root=root, combine="arrow")
    got = bulkread.read_verified_bulk(SOURCE, as_of=as_of, root=root)
    pd.testing.assert_frame_equal(got.frame, want.frame, check_exact=True)
    assert got.report.received == want.report.received
    assert got.report.reasons() == want.report.reasons()
    return got


def written(root: Path) -> list[chunks.Chunk]:
    return [c for found in chunks.chunks_of(SOURCE, root).values() for c in found]


def scanned(root: Path, as_of: dt.datetime = AS_OF) -> list[chunks.Segment]:
    """What a read at ``as_of`` would scan (every delivery verified)."""
    used = landing.deliveries(SOURCE, root=root, as_of=as_of)
    paths = [str(landing.source_dir(SOURCE, root) / d.file) for d in used]
    return chunks.plan(SOURCE, used, paths, written(root)[0].signature, root=root)


def test_a_read_writes_the_settled_deliveries_into_a_chunk_and_the_next_read_scans_it(company):
    same_read(company)
    (chunk,) = written(company)
    settled = [d for d in landing.deliveries(SOURCE, root=company, as_of=AS_OF)
               if d.arrived <= AS_OF - chunks.SETTLE]  # fmt: skip
    assert len(settled) >= chunks.MIN_DELIVERIES
    assert list(chunk.files) == [d.file for d in settled], "every settled delivery, in manifest order"
    assert list(chunk.rows) == [pq.read_metadata(landing.source_dir(SOURCE, company) / f).num_rows
                                for f in chunk.files]  # fmt: skip
    segments = scanned(company)
    assert segments[0].path == str(chunk.path) and segments[0].count == len(settled)
    assert all(s.rows is None for s in segments[1:]), "the deliveries after it: their daily files"
    same_read(company)
    assert written(company) == [chunk], "nothing new to write"


def test_a_changed_chunk_is_not_read(company):
    same_read(company)
    (chunk,) = written(company)
    table = pq.read_table(chunk.path)
    pq.write_table(table.set_column(table.schema.get_field_index("amount"), "amount",
                                    pc.add(table["amount"], 1)), chunk.path)  # fmt: skip
    assert all(s.rows is None for s in scanned(company))
    same_read(company)


def test_a_delivery_changed_after_its_chunk_was_written_is_rejected_whole(company):
    same_read(company)
    (chunk,) = written(company)
    path = landing.source_dir(SOURCE, company) / chunk.files[3]
    table = pq.read_table(path)
    pq.write_table(table.slice(0, max(table.num_rows - 1, 0)), path)
    got = same_read(company)
    assert [r.kind for r in got.report.rejected] == ["changed"]


def test_a_read_as_of_before_a_chunk_s_last_delivery_reads_what_had_arrived_then(company):
    same_read(company)
    (chunk,) = written(company)
    last = next(d for d in landing.deliveries(SOURCE, root=company) if d.file == chunk.files[-1])
    earlier = last.arrived - dt.timedelta(days=3)
    arrived = [d for d in landing.deliveries(SOURCE, root=company, as_of=earlier) if d.file in chunk.files]
    first = scanned(company, earlier)[0]
    assert (first.path, first.count) == (str(chunk.path), len(arrived)), "the chunk, for what had arrived"
    assert first.skip == 0 and first.total == sum(chunk.rows) > sum(first.rows or ())
    same_read(company, earlier)


def scanned_from(root: Path, start: str) -> list[chunks.Segment]:
    used = [d for d in landing.deliveries(SOURCE, root=root, as_of=AS_OF) if d.partition >= start]
    paths = [str(landing.source_dir(SOURCE, root) / d.file) for d in used]
    return chunks.plan(SOURCE, used, paths, written(root)[0].signature, root=root)


def test_a_read_from_a_partition_inside_a_chunk_scans_the_chunk_for_its_deliveries(company):
    same_read(company)
    (chunk,) = written(company)
    at = 20
    start = landing.deliveries(SOURCE, root=company, as_of=AS_OF)[at].partition
    first = scanned_from(company, start)[0]
    assert (first.path, first.skip, first.count) == (
        str(chunk.path),
        sum(chunk.rows[:at]),
        len(chunk.files) - at,
    )
    want = verified.read_verified(SOURCE, as_of=AS_OF, root=company, start=start, combine="arrow")
    got = bulkread.read_verified_bulk(SOURCE, as_of=AS_OF, root=company, start=start)
    pd.testing.assert_frame_equal(got.frame, want.frame, check_exact=True)
    assert got.report.received == want.report.received
    late = landing.deliveries(SOURCE, root=company, as_of=AS_OF)[len(chunk.files) - 10].partition
    assert all(s.rows is None for s in scanned_from(company, late)), "a few of its deliveries: their files"


def test_a_chunk_whose_rows_disagree_with_its_sidecar_is_not_trusted(company):
    same_read(company)
    (chunk,) = written(company)
    sidecar = chunk.path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["rows"][0] += 1
    sidecar.write_text(json.dumps(data))
    same_read(company)


def test_too_few_settled_deliveries_write_no_chunk(company):
    first = min(d.arrived for d in landing.deliveries(SOURCE, root=company))
    same_read(company, first + chunks.SETTLE + dt.timedelta(days=chunks.MIN_DELIVERIES - 10))
    assert written(company) == []


def test_a_cache_that_cannot_be_written_is_no_failure(company):
    (company.parent / "cache").write_text("not a folder")
    same_read(company)
    assert written(company) == []


def test_a_read_of_part_of_the_history_writes_no_chunk(company):
    start = landing.deliveries(SOURCE, root=company, as_of=AS_OF)[20].partition
    want = verified.read_verified(SOURCE, as_of=AS_OF, root=company, start=start, combine="arrow")
    got = bulkread.read_verified_bulk(SOURCE, as_of=AS_OF, root=company, start=start)
    pd.testing.assert_frame_equal(got.frame, want.frame, check_exact=True)
    assert written(company) == [], "a chunk starting mid-history would line up with no other read"

"""The digest store: a landing file is hashed again whenever it may have changed since its digest
was stored, and only then."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.storage import digests, landing

pytestmark = pytest.mark.unit

SOURCE = "billing_payments"


@pytest.fixture
def files(tmp_path) -> list[Path]:
    base = tmp_path / "landing" / SOURCE
    out = []
    for day in range(1, 6):
        path = base / f"dt=2026-10-0{day}" / "part-00000.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"payment_id": [f"p{day}"], "amount": [day * 100]}), path)
        out.append(path)
    return out


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The files hashed from now on (nothing kept by this process either)."""
    seen: list[str] = []
    real = landing.file_sha256
    monkeypatch.setattr(landing, "_DIGESTS", {})
    monkeypatch.setattr(landing, "file_sha256", lambda p: seen.append(Path(p).parent.name) or real(p))
    return seen


def store_of(files: list[Path]) -> digests.DigestStore:
    return digests.DigestStore(SOURCE, files[0].parents[2])


def age_the_store(store: digests.DigestStore, seconds: int = 60) -> None:
    """As if the store had been written ``seconds`` after the files last changed."""
    later = os.stat(store.path).st_mtime_ns + seconds * 1_000_000_000
    os.utime(store.path, ns=(later, later))


def test_a_stored_digest_is_used_while_the_file_is_unchanged(files, hashed):
    first = store_of(files)
    want = [first.sha256(p) for p in files]
    first.save()
    age_the_store(first)
    landing._DIGESTS.clear()  # a new process
    hashed.clear()
    assert [store_of(files).sha256(p) for p in files] == want == [landing.file_sha256(p) for p in files]
    assert len(hashed) == len(files), "only the check above hashed them"


def test_a_file_changed_after_its_digest_was_stored_is_hashed_again(files, hashed):
    first = store_of(files)
    old = first.sha256(files[2])
    first.save()
    age_the_store(first)
    pq.write_table(pa.table({"payment_id": ["tampered"], "amount": [1]}), files[2])
    landing._DIGESTS.clear()
    hashed.clear()
    new = store_of(files).sha256(files[2])
    assert hashed == ["dt=2026-10-03"], "the changed file only"
    assert new != old and new == landing.file_sha256(files[2])


def test_a_file_changed_just_before_the_store_was_written_is_not_trusted(files, hashed):
    first = store_of(files)
    [first.sha256(p) for p in files]
    first.save()  # within a second of the files' writing: their change times are too close
    landing._DIGESTS.clear()
    hashed.clear()
    [store_of(files).sha256(p) for p in files]
    assert len(hashed) == len(files)


def test_a_store_that_cannot_be_read_or_written_only_costs_hashing(files, hashed):
    store = store_of(files)
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    assert store_of(files).sha256(files[0]) == landing.file_sha256(files[0])
    store.path.unlink()
    store.path.parent.rmdir()
    store.path.parent.parent.joinpath(digests.DIGESTS_DIR).write_text("a file where the folder goes")
    blocked = store_of(files)
    blocked.sha256(files[1])
    blocked.save()  # no error
    assert not blocked.path.exists()

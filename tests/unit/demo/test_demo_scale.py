"""The generator at scale: chunks merged into one file per delivery, and event densities below
one tracked seat per account (a share of the accounts is tracked)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers.demo import company as co
from helpers.demo import events as ev
from helpers.demo import generate as gen
from helpers.demo.spec import DemoSpec
from helpers.storage import landing
from helpers.storage.contracts import SOURCES

pytestmark = pytest.mark.unit

END = dt.date(2026, 10, 31)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_chunks_without_faults_are_merged_into_one_file_per_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(co, "CHUNK_ACCOUNTS", 60)
    spec = DemoSpec(accounts=150, months=2, seed=42, end=END)
    world = co.World(spec)
    assert world.n_chunks == 3
    summary = gen.generate(spec, tmp_path / "a", events=False)
    root = tmp_path / "a"
    assert not (root / ".spill").exists()
    chunks = [gen.account_extracts(co.simulate_chunk(world, k)) for k in range(world.n_chunks)]
    for name in gen.ACCOUNT_SOURCES:
        key = SOURCES[name].key
        got = landing.read_source(name, root=root)
        expected = [v for ex in chunks for v in ex[name][key].tolist()]
        assert len(got) == len(expected) == summary.sources[name]["rows"], name
        assert sorted(got[key].astype(str)) == sorted(map(str, expected)), name
        files = sorted((root / name).glob("dt=*/*.parquet"))
        assert [f.name for f in files] == ["part-00000.parquet"] * len(files), f"{name}: one file a day"
        assert summary.sources[name]["files"] == len(files) == len(landing.deliveries(name, root=root))
        for f in files:  # every chunk's rows of the day, sorted by key
            keys = pq.read_table(f, columns=[key])[key].to_pylist()
            assert keys == sorted(keys), f
    # the company-level sources are computed from every chunk, as before
    assert summary.sources["finance_ledger"]["rows"] > 0
    gen.generate(spec, tmp_path / "b", events=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def _periods(spec: DemoSpec):
    return co.usage_periods(co.simulate(spec)[0])


def test_below_the_floor_a_share_of_accounts_is_tracked() -> None:
    """Below ACCOUNT_THINNING_KNOB the knob picks accounts (the same ones every day) and volumes
    keep scaling with it; at the floor every account still sends events."""
    base = DemoSpec(accounts=400, months=1, seed=5, end=END)
    periods = _periods(base)
    days = range(ev.epoch_day(dt.date(2026, 10, 12)), ev.epoch_day(dt.date(2026, 10, 24)))

    def events(knob: float) -> tuple[int, set[int], set[int]]:
        model = ev.EventModel(periods, DemoSpec(**{**base.__dict__, "events_per_user_day": knob}))
        rows = [model.day(d).events for d in days]
        tracked = set(map(int, model.tracked_account.nonzero()[0]))
        return sum(ev.batch_len(r) for r in rows), {int(a) for r in rows for a in r["acct"]}, tracked

    floor, floor_accounts, _ = events(ev.ACCOUNT_THINNING_KNOB)
    half, half_accounts, half_tracked = events(ev.ACCOUNT_THINNING_KNOB / 2)
    tenth, tenth_accounts, tenth_tracked = events(ev.ACCOUNT_THINNING_KNOB / 10)
    model = ev.EventModel(periods, base)
    covering = {int(model.p_acct[i]) for d in days for i in model.covering(d)}
    assert len(floor_accounts) >= 0.9 * len(covering)
    assert 0.35 < half / floor < 0.65 and 0.35 < len(half_accounts) / len(floor_accounts) < 0.65
    assert 0.03 < tenth / floor < 0.2
    assert tenth_accounts <= tenth_tracked and half_accounts <= half_tracked
    assert tenth_tracked < half_tracked, "the same accounts every day, fewer at a lower density"


def test_the_default_density_tracks_every_account() -> None:
    model = ev.EventModel(_periods(DemoSpec(accounts=50, months=1, end=END)), DemoSpec(accounts=50))
    assert model.tracked_account.all()

"""Drill baselines are cached by everything that determines them (``drill.baseline_key``): two specs
sharing a demo shape but not their runs, fix time, seed or figures never share a wrong baseline.

The company generation and the pipeline runs are replaced by recorders (the cache is what is tested);
the sandboxes, their folders and the cache are the real ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pytest

from helpers.demo import drill, drill_specs

pytestmark = pytest.mark.unit


@pytest.fixture
def recorded(monkeypatch):
    """The runs each baseline made, by sandbox; figures read back name the sandbox they came from."""
    runs: list[tuple[str, tuple, dt.datetime]] = []

    def generate(shape, fault, landing: Path) -> None:
        landing.mkdir(parents=True)
        (landing / "shape.txt").write_text(repr(shape))

    def run(items, as_of):
        runs.append((os.environ["WORKBOOK_HOME"], tuple(items), as_of))
        return []

    def read(figures):
        where = os.environ["WORKBOOK_HOME"]
        return {drill._figure_name(f): pd.DataFrame({"home": [where]}) for f in figures}

    monkeypatch.setattr(drill, "_generate", generate)
    monkeypatch.setattr(drill, "_run", run)
    monkeypatch.setattr(drill, "_read_figures", read)
    return runs


def test_specs_sharing_a_shape_but_not_runs_fix_time_seed_or_figures_get_their_own_baseline(
    home, tmp_path, recorded
):
    base = drill.SPECS["stale_data"]
    variants = {
        "base": base,
        "runs": dataclasses.replace(base, runs=(("profit_aggregate", "2026-09-29"),)),
        "baseline_runs": dataclasses.replace(base, baseline_runs=(("profit_aggregate", "2026-09-15"),)),
        "fix_at": dataclasses.replace(base, fix_at=base.fix_at + dt.timedelta(hours=1)),
        "seed": drill_specs.with_params(base, {}, seed=8),
        "accounts": drill_specs.with_params(base, {"accounts": "80"}),
        "month": drill_specs.at(base, "2026-06"),
    }
    cache = drill.Baselines(tmp_path / "work")
    homes = {name: cache.home(spec) for name, spec in variants.items()}
    assert len(set(homes.values())) == len(variants)  # one warehouse each
    assert len(recorded) == len(variants)  # each built once ...
    assert {(h, items) for h, items, _ in recorded} == {
        (str(homes[n]), s.all_baseline_runs) for n, s in variants.items()
    }  # ... with its own runs, at its own fix time
    assert (str(homes["fix_at"]), variants["fix_at"].fix_at) in {(h, at) for h, _, at in recorded}

    # every shape keeps its own clean landing zone (a second shape never overwrites the first's)
    landings = {cache.landing(s.shape) for s in variants.values()}
    assert len(landings) == 4  # base, seed, accounts, month (end); runs, fix_at ... share base's shape
    for s in variants.values():
        assert (cache.landing(s.shape) / "shape.txt").read_text() == repr(s.shape)

    # the same figures of another spec are read from that spec's warehouse, never the cached first
    again = dataclasses.replace(variants["runs"], figures=base.figures)
    assert cache.figures(again)["profit_monthly[period=2026-09]"]["home"][0] == str(homes["runs"])
    assert cache.figures(base)["profit_monthly[period=2026-09]"]["home"][0] == str(homes["base"])
    assert len(recorded) == len(variants)  # nothing rebuilt


def test_specs_differing_only_in_figures_share_the_warehouse_but_read_their_own_figures(
    home, tmp_path, recorded
):
    base = drill.SPECS["stale_data"]
    august = dataclasses.replace(base, figures=drill_specs._profit_monthly("2026-08"))
    cache = drill.Baselines(tmp_path / "work")
    assert list(cache.figures(base)) == ["profit_monthly[period=2026-09]"]
    assert list(cache.figures(august)) == ["profit_monthly[period=2026-08]"]
    assert cache.home(base) == cache.home(august) and len(recorded) == 1


def test_the_cache_key_covers_every_field_of_the_shape_and_the_seed_runs():
    spec = drill.SPECS["duplicate_events"]  # an engagement drill: seeded with Profit's and Growth's marts
    key = drill.baseline_key(spec)
    assert drill.baseline_key(dataclasses.replace(spec)) == key  # a canonical repr: equal specs, one key
    for field in ("accounts", "months", "seed", "end", "events", "events_per_user_day"):
        value = getattr(spec.shape, field)
        other = "2026-11-01" if field == "end" else (not value if field == "events" else value + 1)
        changed = dataclasses.replace(spec, shape=dataclasses.replace(spec.shape, **{field: other}))
        assert drill.baseline_key(changed) != key, field
    fewer = dataclasses.replace(spec, seed_runs=spec.seed_runs[:1])
    assert drill.seed_key(fewer) != drill.seed_key(spec) and drill.baseline_key(fewer) != key
    earlier = dataclasses.replace(spec, as_of=spec.as_of - dt.timedelta(minutes=5))
    assert drill.seed_key(earlier) != drill.seed_key(spec)  # the seed runs' as_of
    assert drill.seed_key(drill.SPECS["stale_data"]) is None  # no seed runs, no seed

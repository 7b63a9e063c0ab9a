"""The fault registry and its ground truth, ``data/landing/_faults.json``.

Each failure-catalogue id has one injector, registered with :func:`injector`. An injector runs
after the clean extracts are built in memory and before they are written; it changes the
extracts it targets and returns :class:`Injected` records saying exactly what it did and which
rows it affected (by the source's own keys: ``messageId``, ``invoice_line_id``, ``expense_id``,
``account_id`` ...). ``_faults.json`` is the list of those records: the truth that tests,
checks and drills are compared against.

The injector signature is ``(fault, extracts, ctx) -> list[Injected]``:

- ``fault``: the parsed ``--fault`` (:class:`~helpers.demo.spec.FaultSpec`);
- ``extracts``: ``{source: DataFrame}`` of one *batch* (see :mod:`helpers.demo.extracts` for the
  frame layout: internal column types plus ``_dt``/``_arrival`` delivery columns). The
  generator calls every injector once per batch: once per chunk of accounts (the account-level
  sources) and once for the company-level sources. An injector changes the sources present in
  the batch (mutating or replacing entries) and ignores the others; faults that pick a few
  target accounts pick them in the first chunk only (``ctx.batch == 0``);
- ``ctx``: a :class:`FaultContext` (the spec, the shared world, the chunk's simulation or the
  company totals, and a numpy Generator seeded from the spec, the fault and the batch, so a
  fault never disturbs the clean data's random streams).

Records of the same fault, source and description coming from several batches are merged
(:func:`merge_records`). An injector with ``streaming = True`` (the engagement faults but
``upstream_missing``) is not called here: it does its work inside the events day loop.

The injectors live by family in ``faults_profit``, ``faults_growth`` and ``faults_engagement``;
what they share is here: :func:`param` and :func:`validate` (parameters), :func:`fault_day` and
:func:`last_month` (dates), :func:`record` (ground truth), :func:`move_rows`,
:func:`sample_positions` and :func:`prefer_from` (editing extracts).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.demo import company as co
from helpers.demo.company import Company, World
from helpers.demo.extracts import ARRIVAL, DAY, PARTITION
from helpers.demo.sources_finance import Totals, complete_months
from helpers.demo.spec import DemoSpec, FaultSpec
from helpers.storage.contracts import SOURCES


@dataclass
class Injected:
    """What one fault did: where, when, how much, and the affected rows by key."""

    fault: str  # catalogue id
    source: str  # landing source changed (one record per source touched)
    date: str | None  # first affected date (YYYY-MM-DD)
    params: dict[str, Any]
    description: str
    key: str  # the column naming affected rows in ``rows``
    rows: list[Any] = field(default_factory=list)  # affected keys, sorted
    details: dict[str, Any] = field(default_factory=dict)  # e.g. {"window_hours": 6, "dropped": 1234}


@dataclass
class FaultContext:
    """What an injector may read besides the extracts of its batch."""

    spec: DemoSpec
    world: World
    batch: int | None  # chunk index of an account batch; None for the company-level batch
    rng: np.random.Generator
    company: Company | None = None  # the chunk's simulation (account batches)
    totals: Totals | None = None  # company-wide totals of the clean business (company batch)

    @property
    def first_chunk(self) -> bool:
        return self.batch == 0


# An injector changes the extracts of one batch and returns what it injected.
Injector = Callable[[FaultSpec, dict[str, pd.DataFrame], FaultContext], list[Injected]]
_REGISTRY: dict[str, Injector] = {}


def injector(fault_id: str) -> Callable[[Injector], Injector]:
    """Register the decorated function as the injector of ``fault_id``."""

    def register(fn: Injector) -> Injector:
        if fault_id in _REGISTRY:
            raise ValueError(f"fault {fault_id!r} registered twice")
        _REGISTRY[fault_id] = fn
        return fn

    return register


def registry() -> dict[str, Injector]:
    """Every registered injector by fault id (business and engagement faults)."""
    return dict(_REGISTRY)


def is_streaming(fn: Injector) -> bool:
    """True for injectors that work inside the events generator instead (see module docstring)."""
    return bool(getattr(fn, "streaming", False))


def _merge_details(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, bool) or isinstance(out[k], bool):
            out[k] = out[k] or v
        elif isinstance(v, int | float) and isinstance(out[k], int | float):
            out[k] = out[k] + v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = {**v, **out[k]}
        elif isinstance(v, list) and isinstance(out[k], list):
            merged = out[k] + [x for x in v if x not in out[k]]
            try:
                out[k] = sorted(merged)
            except TypeError:
                out[k] = merged
    return out


def merge_records(records: list[Injected]) -> list[Injected]:
    """One record per (fault, source, description, key): rows united and sorted, counts added."""
    merged: dict[tuple[str, str, str, str], Injected] = {}
    for r in records:
        k = (r.fault, r.source, r.description, r.key)
        if k not in merged:
            merged[k] = Injected(
                r.fault, r.source, r.date, dict(r.params), r.description, r.key, list(r.rows), dict(r.details)
            )
            continue
        m = merged[k]
        m.rows = sorted(set(m.rows) | set(r.rows))
        m.date = min(d for d in (m.date, r.date) if d) if (m.date or r.date) else None
        m.details = _merge_details(m.details, r.details)
    return [Injected(**{**asdict(r), "rows": sorted(r.rows)}) for r in merged.values()]


# ------------------------------------------------------------------ the injectors' toolkit


def param(
    fault: FaultSpec, name: str, default: Any, kind: type, lo: float | None = None, hi: float | None = None
) -> Any:
    """Parameter ``name`` of ``fault`` as a ``kind`` in ``[lo, hi]`` (``default`` when not given; a
    ``None`` default stays ``None``); ValueError naming the fault otherwise."""
    raw = fault.params.get(name, default)
    if raw is None and default is None:
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"--fault {fault.as_text()}: {name}={raw!r}: expected a {kind.__name__}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"--fault {fault.as_text()}: {name}={raw!r}: expected a value in [{lo}, {hi}]")
    return value


def validate(fault: FaultSpec, world: World, allowed: tuple[str, ...]) -> None:
    """Reject parameters not in ``allowed``, dates outside the history and unknown sources before
    anything is generated."""
    unknown = sorted(set(fault.params) - set(allowed))
    if unknown:
        raise ValueError(
            f"--fault {fault.as_text()}: unknown parameter(s) {unknown}; expected {list(allowed)}"
        )
    if fault.date is not None and not world.spec.start <= fault.date <= world.spec.end:
        raise ValueError(
            f"--fault {fault.as_text()}: date {fault.date} is outside the generated history "
            f"{world.spec.start}..{world.spec.end}"
        )
    for name in ("source",):
        if name in fault.params and str(fault.params[name]) not in SOURCES:
            raise ValueError(
                f"--fault {fault.as_text()}: source={fault.params[name]!r}: expected one of {sorted(SOURCES)}"
            )


def last_month(world: World) -> int:
    """First epoch day of the last complete month (the end's month when the end is a month end)."""
    closed = complete_months(world)
    m = int(closed[-1]) if len(closed) else int(world.months[-1])
    return int(co.month_start(m))


def fault_day(fault: FaultSpec, world: World, default: int) -> int:
    """The fault's DATE as an epoch day, or ``default`` clipped into the history."""
    if fault.date is not None:
        return co.epoch_day(fault.date)
    return int(min(max(default, world.start), world.end))


def iso_day(day: int) -> str:
    """``YYYY-MM-DD`` of an epoch day."""
    return co.to_date(int(day)).isoformat()


def record(
    fault: FaultSpec, source: str, day: int, description: str, key: str, rows: Any, **details: Any
) -> Injected:
    """The ground truth of ``fault`` on ``source`` from ``day``: the affected ``rows`` by ``key``
    (distinct, as text, sorted; missing values dropped) and the ``details``."""
    values = sorted({str(r) for r in rows if r is not None and not (isinstance(r, float) and np.isnan(r))})
    return Injected(fault.id, source, iso_day(day), dict(fault.params), description, key, values, details)


def move_rows(frame: pd.DataFrame, mask: np.ndarray, new_partition: np.ndarray) -> None:
    """Move rows to another partition, keeping the source's arrival rule (same offset from it)."""
    offset = frame.loc[mask, ARRIVAL].to_numpy() - frame.loc[mask, PARTITION].to_numpy() * DAY
    frame.loc[mask, PARTITION] = new_partition
    frame.loc[mask, ARRIVAL] = np.asarray(new_partition) * DAY + offset


def sample_positions(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``candidates`` (positions), chosen at random, in their original order."""
    if len(candidates) <= n:
        return np.sort(candidates)
    return np.sort(rng.choice(candidates, size=n, replace=False))


def prefer_from(rng: np.random.Generator, days: np.ndarray, since: int, n: int) -> np.ndarray:
    """Positions of ``n`` rows, preferring days on/after ``since``, then the latest before it."""
    after = np.flatnonzero(days >= since)
    chosen = sample_positions(rng, after, n)
    if len(chosen) < n:
        before = np.flatnonzero(days < since)
        before = before[np.argsort(-days[before], kind="stable")][: n - len(chosen)]
        chosen = np.sort(np.concatenate([chosen, before]))
    return chosen


# ------------------------------------------------------------------ ground truth


def write_ground_truth(path: Path, spec_text: dict[str, Any], records: list[Injected]) -> None:
    """Write ``_faults.json``: the spec and every injected record (sorted keys, stable bytes)."""
    payload = {"spec": spec_text, "faults": [asdict(r) for r in records]}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_ground_truth(path: Path) -> dict[str, Any]:
    """Read ``_faults.json``."""
    return json.loads(path.read_text())

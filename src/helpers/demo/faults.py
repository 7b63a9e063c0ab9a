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
(:func:`merge_records`). An injector with ``streaming = True`` (the engagement faults) is not
called here: it does its work inside the events generator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from helpers.demo.spec import DemoSpec, FaultSpec

if TYPE_CHECKING:
    from helpers.demo.company import Company, World
    from helpers.demo.sources_finance import Totals


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


def write_ground_truth(path: Path, spec_text: dict[str, Any], records: list[Injected]) -> None:
    """Write ``_faults.json``: the spec and every injected record (sorted keys, stable bytes)."""
    payload = {"spec": spec_text, "faults": [asdict(r) for r in records]}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_ground_truth(path: Path) -> dict[str, Any]:
    """Read ``_faults.json``."""
    return json.loads(path.read_text())

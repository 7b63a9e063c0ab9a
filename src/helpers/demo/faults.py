"""The fault registry and its ground truth, ``data/landing/_faults.json``.

Each failure-catalogue id has one injector, registered with :func:`injector`. An injector runs
after the clean extracts are built in memory and before they are written; it changes the
extracts it targets and returns :class:`Injected` records saying exactly what it did and which
rows it affected (by the source's own keys: ``messageId``, ``invoice_line_id``, ``expense_id``,
``account_id`` ...). ``_faults.json`` is the list of those records: the truth that tests,
checks and drills are compared against.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from helpers.demo.spec import FaultSpec


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


# An injector takes the spec, the in-memory extracts {source: DataFrame} (mutating or replacing
# entries) and a numpy Generator, and returns what it injected.
Injector = Callable[[FaultSpec, dict, Any, Any], list[Injected]]
_REGISTRY: dict[str, Injector] = {}


def injector(fault_id: str) -> Callable[[Injector], Injector]:
    def register(fn: Injector) -> Injector:
        if fault_id in _REGISTRY:
            raise ValueError(f"fault {fault_id!r} registered twice")
        _REGISTRY[fault_id] = fn
        return fn

    return register


def registry() -> dict[str, Injector]:
    return dict(_REGISTRY)


def write_ground_truth(path: Path, spec_text: dict[str, Any], records: list[Injected]) -> None:
    payload = {"spec": spec_text, "faults": [asdict(r) for r in records]}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_ground_truth(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())

"""Quarantine: rows that cannot be used, kept with where they came from and why, and counted.

Every extract screens its input into accepted rows and :class:`QuarantinedRow` records; nothing
is dropped silently. Quarantined rows are appended as JSON lines to
``data/quarantine/<source>/<name>.jsonl``, one object per row with sorted keys and no
timestamps, so the same input always gives the same lines. Appending is idempotent: a line
already in the file is not written again, so re-reading a file (or replaying a Kafka batch)
does not double the quarantine.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core import paths


@dataclass(frozen=True)
class QuarantinedRow:
    """One unusable input row: its origin, the reason, and its raw content.

    ``line`` is the 1-based line in ``file`` where the row starts (the header is line 1);
    ``field`` names the offending field when there is one. Kafka messages have no file line:
    they carry ``topic``/``partition``/``offset`` instead, and ``file`` is ``"<topic>/<partition>"``.
    """

    source: str
    file: str
    line: int | None
    reason: str
    raw: str | Mapping[str, Any]
    field: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def as_json(self) -> str:
        """The row as one deterministic JSON line (sorted keys, non-JSON values as text)."""
        return json.dumps(asdict(self), sort_keys=True, default=str, ensure_ascii=False)


@dataclass(frozen=True)
class ScreenedRows:
    """The outcome of screening an input: accepted rows, quarantined rows, and their counts.

    ``received`` always equals ``accepted_count + quarantined_count`` (checked on creation).
    """

    accepted: pd.DataFrame
    quarantined: tuple[QuarantinedRow, ...]
    received: int

    def __post_init__(self) -> None:
        if self.received != len(self.accepted) + len(self.quarantined):
            raise ValueError(
                f"received ({self.received}) != accepted ({len(self.accepted)}) "
                f"+ quarantined ({len(self.quarantined)})"
            )

    @property
    def accepted_count(self) -> int:
        return len(self.accepted)

    @property
    def quarantined_count(self) -> int:
        return len(self.quarantined)


def quarantine_dir(source: str, root: Path | None = None) -> Path:
    """``data/quarantine/<source>`` (``root``, else :func:`helpers.core.paths.quarantine_root`)."""
    return (root or paths.quarantine_root()) / source


_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def quarantine_name(file: str) -> str:
    """A file-system-safe quarantine file stem for an input name (``a/b.csv`` -> ``b.csv``)."""
    stem = _UNSAFE.sub("_", Path(file).name).strip("._")
    return stem or "input"


def write_quarantine(
    source: str, rows: Iterable[QuarantinedRow], *, name: str | None = None, root: Path | None = None
) -> Path:
    """Append ``rows`` to ``<quarantine>/<source>/<name>.jsonl`` and return that path.

    ``name`` defaults to the (single) input file the rows came from; rows from several files need
    an explicit name. Lines already present are skipped, so the call is idempotent. The file is
    fsynced before returning. With no rows nothing is written (the returned path may not exist).
    """
    rows = list(rows)
    if name is None:
        files = {r.file for r in rows}
        if len(files) > 1:
            raise ValueError(f"write_quarantine({source!r}): rows come from {len(files)} files; pass name=")
        name = quarantine_name(files.pop()) if files else "input"
    target = quarantine_dir(source, root) / f"{quarantine_name(name)}.jsonl"
    if not rows:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    if target.exists():
        seen = set(target.read_text(encoding="utf-8").splitlines())
    new = []
    for row in rows:
        line = row.as_json()
        if line not in seen:
            seen.add(line)
            new.append(line + "\n")
    if new:
        with open(target, "a", encoding="utf-8") as fh:
            fh.writelines(new)
            fh.flush()
            os.fsync(fh.fileno())
    return target


def read_quarantine(path: Path) -> list[dict[str, Any]]:
    """The quarantined rows of one quarantine file, as dicts, in file order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

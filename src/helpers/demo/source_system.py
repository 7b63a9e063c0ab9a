"""The demo company's source systems: the clean world of a landing zone the demo generator wrote.

The generator writes a landing zone from a spec (``_demo.json``), faults included; the same spec
without faults is what the billing API, the expense system and Finance's ledger hold. That clean
world, generated once (business sources only) into :func:`source_system_dir`, is what a fix
re-extracts from. :func:`source_system` is registered as the ``demo`` provider of the entry-point
group ``workbook.source_systems`` (``pyproject.toml``; see ``helpers.storage.source_systems``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from helpers.core import paths
from helpers.demo.generate import DEMO_FILE, generate
from helpers.demo.spec import DemoSpec
from helpers.storage.source_systems import SourceSystemUnavailable

SOURCE_SYSTEMS = "source_systems"  # under data/: the demo's source systems, one per spec


def _demo_spec(root: Path) -> dict[str, Any]:
    """The spec the landing zone ``root`` was generated from, without its faults."""
    meta = root / DEMO_FILE
    if not meta.is_file():
        raise SourceSystemUnavailable(f"no {DEMO_FILE} in it: not the demo company's landing zone")
    spec = dict(json.loads(meta.read_text())["spec"])
    spec.pop("faults", None)
    return spec


def source_system_dir(root: Path | None = None) -> Path:
    """Where :func:`source_system` keeps the source systems of the landing zone ``root``:
    ``data/source_systems/<hash of its spec without faults>``."""
    spec = _demo_spec((root or paths.landing_dir()).resolve())
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return paths.data_dir() / SOURCE_SYSTEMS / key


def source_system(root: Path) -> Path:
    """The demo company's source systems for the landing zone ``root``: the clean world of its spec,
    generated on first use. Raises :class:`SourceSystemUnavailable` for a landing zone the demo
    generator did not write."""
    root = root.resolve()
    spec, target = _demo_spec(root), source_system_dir(root)
    if not (target / DEMO_FILE).is_file():
        clean = DemoSpec(accounts=int(spec["accounts"]), months=int(spec["months"]), seed=int(spec["seed"]),
                         end=dt.date.fromisoformat(spec["end"]), events_per_user_day=float(spec["events_per_user_day"]))  # fmt: skip
        generate(clean, target, events=False, force=True)
    return target

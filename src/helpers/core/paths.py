"""Where things are: the one module that knows the repository's and the workbook's paths (and
writes a file into place atomically, :func:`write_atomic`).

No side effects at import; every function reads the environment when called, so tests can
point ``WORKBOOK_HOME`` at a sandbox.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATES_DIR = (
    Path(__file__).resolve().parents[1] / "templates"
)  # nbconvert templates shipped with the package


def repo_root() -> Path:
    """The repository checkout holding ``notebooks/`` and ``config/``."""
    return REPO_ROOT


def workbook_home() -> Path:
    """Root of ``data/`` and ``runs/``: ``WORKBOOK_HOME`` or the repository root."""
    home = os.environ.get("WORKBOOK_HOME")
    return Path(home).resolve() if home else REPO_ROOT


def config_dir() -> Path:
    """``WORKBOOK_CONFIG_DIR`` or ``<repo>/config``."""
    cfg = os.environ.get("WORKBOOK_CONFIG_DIR")
    return Path(cfg).resolve() if cfg else REPO_ROOT / "config"


def data_dir() -> Path:
    return workbook_home() / "data"


def landing_dir() -> Path:
    return data_dir() / "landing"


def runs_dir() -> Path:
    return workbook_home() / "runs"


def default_warehouse_path() -> Path:
    return runs_dir() / "warehouse.sqlite"


def quarantine_root() -> Path:
    """``WORKBOOK_QUARANTINE_DIR`` or ``data/quarantine`` (an interactive session points it at its scratch)."""
    root = os.environ.get("WORKBOOK_QUARANTINE_DIR")
    return Path(root).resolve() if root else data_dir() / "quarantine"


def scratch_dir() -> Path:
    """``runs/scratch``: the scratch warehouses of notebooks executed outside the runner."""
    return runs_dir() / "scratch"


def scratch_warehouse_path(pipeline: str) -> Path:
    """``runs/scratch/<pipeline>.sqlite``: where a notebook of ``pipeline`` run by hand writes."""
    if not pipeline or "/" in pipeline or "\\" in pipeline or pipeline.startswith("."):
        raise ValueError(
            f"scratch warehouse: expected a pipeline id such as profit_aggregate, got {pipeline!r}"
        )
    return scratch_dir() / f"{pipeline}.sqlite"


def scratch_quarantine_dir(pipeline: str) -> Path:
    """``runs/scratch/<pipeline>.quarantine``: the quarantine files of that notebook run by hand."""
    return scratch_warehouse_path(pipeline).with_suffix(".quarantine")


def notebook_path(relative: str | os.PathLike[str]) -> Path:
    """A notebook path from config, resolved against the repository (absolute paths pass through)."""
    p = Path(relative)
    return p if p.is_absolute() else REPO_ROOT / p


def merge_json(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """Add ``new`` to the JSON object in ``path`` (what another process wrote there is kept; a file
    that is missing or not a JSON object counts as empty) and replace the file in one step
    (:func:`write_atomic`); the merged object. A cache's file: raises ``OSError`` if it cannot be written."""
    try:
        on_disk = json.loads(path.read_text())
    except (OSError, ValueError):
        on_disk = {}
    merged = {**(on_disk if isinstance(on_disk, dict) else {}), **new}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(merged, separators=(",", ":")))
    return merged


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` under a unique temporary name beside ``path``, then rename it into place: a
    reader sees the old file or the new one, and two writers (processes or threads) never share
    a temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

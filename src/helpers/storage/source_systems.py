"""Source systems: where a fix re-extracts from, for a landing zone.

A *source system* is a landing-zone-shaped folder (one folder per source, each with its manifest)
holding what the source itself holds now: the rows it has, corrections included. A runbook's fix
reads the rows it needs from there and lands those that differ as a new delivery
(``helpers.profit.repair.reextract``).

Which folder serves a landing root is up to *providers*, registered through the Python entry-point
group ``workbook.source_systems`` (``[project.entry-points."workbook.source_systems"]`` in a
package's ``pyproject.toml``). A provider is a callable ``(landing_root: Path) -> Path | None``: the
source system of a landing root it knows, else None; one that can say why it does not know a root
raises :class:`SourceSystemUnavailable` with the reason, and the next provider is asked. The demo
company's provider (``helpers.demo.source_system:source_system``) is registered by this package; a
deployment with real sources registers its own (one that runs each source's extractor into a
folder, docs/extract.md, "Source systems for re-extraction").
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from helpers.core import paths

GROUP = "workbook.source_systems"

Provider = Callable[[Path], Path | None]


class SourceSystemUnavailable(RuntimeError):
    """No source system to re-extract from: no registered provider knows the landing root."""


def providers() -> dict[str, Provider]:
    """The registered providers by entry-point name, in name order."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    return {ep.name: ep.load() for ep in found}


def source_system(root: Path | None = None) -> Path:
    """The source system of the landing zone ``root`` (default: this workbook's), from the first
    registered provider that knows it; :class:`SourceSystemUnavailable` when none does."""
    root = (root or paths.landing_dir()).resolve()
    reasons = []
    for name, provider in providers().items():
        try:
            found = provider(root)
        except SourceSystemUnavailable as e:
            reasons.append(f"{name}: {e}")
            continue
        if found is not None:
            return Path(found)
        reasons.append(f"{name}: not a landing zone it knows")
    asked = "; ".join(reasons) or "no provider is registered"
    raise SourceSystemUnavailable(
        f"no source system for the landing zone {root} ({asked}). Re-extract with the source's own "
        f"extractor (docs/extract.md), or register a provider for it under the entry-point "
        f"group {GROUP!r}; then re-run this runbook with apply_fix=True"
    )

"""No notebook defaults to a fixed date: the parameters cell keeps empty placeholders and the
notebook computes "now" (or the alert's last evaluation) itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
# a date or a timestamp inside a string or number literal assigned in the parameters cell
DATE_LITERAL = re.compile(r"=\s*(?:[rbuf]?[\"'])?\s*\d{4}-\d{2}(?:-\d{2})?(?:[T ]\d{2}:\d{2}[^\"']*)?[\"']")


def parameters_cells() -> list[tuple[Path, str]]:
    found = []
    notebooks = [*(REPO / "notebooks").rglob("*.ipynb"), *(REPO / "tests" / "fixtures").rglob("*.ipynb")]
    for path in sorted(notebooks):
        if ".ipynb_checkpoints" in path.parts:
            continue
        for cell in json.loads(path.read_text())["cells"]:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                found.append((path, "".join(cell["source"])))
    return found


def date_defaults(source: str) -> list[str]:
    """The parameters' lines whose default value is a date or time literal (comments ignored)."""
    bad = []
    for line in source.splitlines():
        code = line.split("#", 1)[0]
        if DATE_LITERAL.search(code):
            bad.append(line.strip())
    return bad


def test_the_grep_catches_date_defaults_and_leaves_placeholders_alone():
    assert date_defaults('as_of: str = "2026-11-01T06:00Z"  # when') == [
        'as_of: str = "2026-11-01T06:00Z"  # when'
    ]
    assert date_defaults("period = '2026-10'") == ["period = '2026-10'"]
    assert date_defaults('as_of: str = ""  # e.g. 2026-11-01T06:00Z; empty: now') == []
    assert date_defaults("as_of = None") == []


def test_no_notebook_parameters_cell_has_a_hard_coded_date_default():
    cells = parameters_cells()
    runbooks = [p for p, _ in cells if "runbooks" in p.parts]
    assert len(runbooks) >= 20  # every runbook notebook is looked at
    offenders = {str(p.relative_to(REPO)): bad for p, src in cells if (bad := date_defaults(src))}
    assert offenders == {}

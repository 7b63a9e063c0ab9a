"""The default demo, built as ``make demo`` builds it, seen in a browser with the network cut off.

``scripts/demo.sh`` (the README's ``make demo`` after setup) generates the default demo company and
closes its last closable month, building the trailing twelve months' investor figures on the way.
What it leaves is checked as a user would look at it, with the browser checks of the report, the
status board and the run history (each defined beside its own smaller test):

- the investor report has at least 12 points on each monthly trend, no index column, a page title,
  and prints to at most 8 A4 pages with nothing wider than the page;
- the status board the close wrote shows every section, and a grid cell opens its run's notebook;
- the run history lists the close's runs, filters them, and a row opens its run's notebook.

It takes several minutes (the first close of the demo runs about 65 notebooks), so it is one module
with one demo, built once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_report_browser import check_investor_report
from test_runs_index_browser import check_runs_index
from test_status_board_browser import check_status_board

from conftest import REPO, _reset_caches

pytestmark = pytest.mark.integration
WORKBOOK = REPO / ".venv" / "bin" / "workbook"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A WORKBOOK_HOME after ``scripts/demo.sh``: the default demo company, its last closable month closed."""
    if not WORKBOOK.exists():
        pytest.skip(f"{WORKBOOK} is missing: the demo script runs the project's venv (make setup)")
    home = tmp_path_factory.mktemp("default-demo") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOK_")}
    env["WORKBOOK_HOME"] = str(home)
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3000)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    assert "status: FINAL" in proc.stdout, proc.stdout[-4000:]
    return home


@pytest.fixture
def in_demo(demo, monkeypatch) -> Path:
    """The demo's home as this process's WORKBOOK_HOME (the checks read its warehouse)."""
    for key in [k for k in os.environ if k.startswith("WORKBOOK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WORKBOOK_HOME", str(demo))
    _reset_caches()
    yield demo
    _reset_caches()


def _latest_report(home: Path) -> Path:
    """The newest archived ``month_end_report`` run's HTML."""
    runs = sorted((home / "runs" / "month_end_report").glob("*/*/notebook.html"), key=lambda p: p.parent.name)
    assert runs, "the demo rendered no month-end report"
    return runs[-1]


def test_the_demo_report_has_a_year_of_trends_and_prints_to_eight_pages(in_demo, trap, tmp_path):
    page = check_investor_report(_latest_report(in_demo), trap, tmp_path, min_points=12)
    assert page is not None


def test_the_demo_status_board_and_run_history_open_their_runs(in_demo, trap, tmp_path):
    board = in_demo / "runs" / "status" / "index.html"
    assert board.is_file(), "the close did not write the status board"
    check_status_board(board, trap, tmp_path / "board")
    check_runs_index(in_demo / "runs" / "index.html", trap, tmp_path / "index")

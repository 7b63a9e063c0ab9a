"""The status board in a real browser with the network cut off, its grid links, and `workbook serve`.

Real runs (the fixture notebooks ``smoke``, which succeeds, and ``smoke_fail``, which fails) are
archived by the runner; the board is written for them and opened in headless Chromium (every
request goes to a local trap). :func:`check_status_board` is the reusable check: every section is
there, the page fetched nothing, and a grid cell's link, resolved against the page, opens that run's
archived notebook. ``workbook serve`` is then started as a process, serves the page over HTTP and
stops on SIGINT with exit code 0.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from chromium import browse, screenshot

from helpers.board import html, status
from helpers.runs import runner

pytestmark = pytest.mark.integration
UTC = dt.UTC
DAY = "2026-11-08"
AS_OF = dt.datetime(2026, 11, 9, 6, tzinfo=UTC)


class BoardDom(HTMLParser):
    """The sections (id -> has an ``<h2>``) and the grid cells (their data attributes and link)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: dict[str, bool] = {}
        self.cells: list[dict[str, str | None]] = []
        self._section: str | None = None
        self._cell: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id") or ""
            self.sections[self._section] = False
        elif tag == "h2" and self._section is not None:
            self.sections[self._section] = True
        elif tag == "td" and "sb-cell" in (a.get("class") or ""):
            self._cell = {**a, "href": None}
            self.cells.append(self._cell)
        elif tag == "a" and self._cell is not None:
            self._cell["href"] = a.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "section":
            self._section = None


def check_status_board(page: Path, trap, tmp_path: Path) -> str:
    """Open the board ``page`` in Chromium and check it; its DOM.

    Every section of ``status.SECTIONS`` is there with a heading, the page asked the network for
    nothing, and the link of a grid cell (a failed run's when there is one), resolved against the
    page's path, is that run's archived notebook: Chromium opens it and it is the run's.
    """
    dom = browse(page, trap, tmp_path / "profile-board", "--dump-dom").stdout
    board = BoardDom(dom)
    assert board.sections == {s: True for s in status.SECTIONS}, board.sections
    linked = [c for c in board.cells if c["href"]]
    assert linked, "no grid cell links to a run"
    cell = next((c for c in linked if c["data-status"] == "failed"), linked[0])
    target = (page.parent / str(cell["href"])).resolve()
    runs_root = page.parent.parent.resolve()
    assert (
        target
        == runs_root
        / str(cell["data-pipeline"])
        / str(cell["data-partition"])
        / str(cell["data-run-id"])
        / "notebook.html"
    )
    run_dom = browse(target, trap, tmp_path / "profile-run", "--dump-dom").stdout
    assert "jp-Notebook" in run_dom  # the archived notebook, rendered
    assert str(cell["data-run-id"]) in run_dom or str(cell["data-partition"]) in run_dom
    assert trap.page_hits == [], trap.page_hits  # neither page fetched anything
    return dom


@pytest.fixture
def two_runs(home) -> dict[str, str]:
    """A succeeded and a failed run, archived by the runner."""
    out = {}
    for pipeline in ("smoke", "smoke_fail"):
        result = runner.run_pipeline(pipeline, DAY, clock=lambda: AS_OF, as_of=AS_OF, trigger="test")
        out[pipeline] = result.run_id
    assert runner_status(out["smoke"]) == "succeeded" and runner_status(out["smoke_fail"]) == "failed"
    return out


def runner_status(run_id: str) -> str:
    from helpers.runs import records

    return records.get_run(run_id).status


def test_the_board_in_a_browser_links_each_cell_to_its_run(home, two_runs, trap, tmp_path):
    board, page = html.write_board(AS_OF + dt.timedelta(hours=1), now=AS_OF + dt.timedelta(hours=1))
    assert board.errors == {}
    dom = check_status_board(page, trap, tmp_path)
    cells = {(c["data-pipeline"], c["data-partition"]): c for c in BoardDom(dom).cells}
    failed, ok = cells[("smoke_fail", DAY)], cells[("smoke", DAY)]
    assert (failed["data-status"], failed["data-run-id"]) == ("failed", two_runs["smoke_fail"])
    assert (ok["data-status"], ok["data-run-id"]) == ("succeeded", two_runs["smoke"])
    for cell in (ok, failed):  # each link opens that run's own notebook, its run id in the parameters
        target = page.parent / str(cell["href"])
        shown = browse(target, trap, tmp_path / f"profile-{cell['data-pipeline']}", "--dump-dom").stdout
        assert str(cell["data-run-id"]) in shown
    assert (
        "missing column"
        in browse(page.parent / str(failed["href"]), trap, tmp_path / "p3", "--dump-dom").stdout
    )
    assert (
        cells[("smoke", "2026-11-07")]["data-status"] == status.NO_RUN
        and cells[("smoke", "2026-11-07")]["href"] is None
    )
    assert 'data-node="t_after_fail" data-state="at risk"' in dom
    shot = screenshot(page, trap, tmp_path / "profile-shot", "status_board", height=4600)
    assert shot.stat().st_size > 10_000
    assert trap.page_hits == [], trap.page_hits


class Lines:
    """A process's stdout lines, read by a thread (no buffering races with ``select``)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            self.seen.append(line.rstrip("\n"))
            self.queue.put(line)

    def first(self, prefix: str, timeout: float = 120) -> str:
        """The first line starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line.strip()
        self.proc.kill()
        raise AssertionError(f"no {prefix!r} line; stderr: {self.proc.stderr.read()[-2000:]}")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - a local test server
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def test_serve_serves_the_board_and_stops_on_sigint(home, two_runs):
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.cli.main", "serve", "--port", "0", "--as-of", "2026-11-09T07:00:00Z"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )  # fmt: skip
    lines = Lines(proc)
    try:
        url = lines.first("status board: ").split(" ", 2)[2]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/status/index.html")
        code, text = _get(url)
        assert code == 200 and "<title>Status board, as of 2026-11-09 07:00 UTC</title>" in text
        assert all(f'<section id="{s}">' in text for s in status.SECTIONS)
        base = url.removesuffix("/status/index.html")
        href = f"{DAY}/{two_runs['smoke_fail']}/notebook.html"
        code, run_page = _get(f"{base}/smoke_fail/{href}")
        assert code == 200 and two_runs["smoke_fail"] in run_page
        assert _get(f"{base}/warehouse.sqlite")[0] == 404  # the warehouse is never served
        assert _get(f"{base}/")[1] == text  # / leads to the board
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        lines.thread.join(timeout=10)
    assert proc.returncode == 0, proc.stderr.read()
    assert lines.seen[-1] == "stopped"

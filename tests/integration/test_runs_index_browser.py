"""The run history page (``runs/index.html``) in headless Chromium, with the network cut off.

Real runner runs (one succeeded, one failed) and an archive with a broken ``run.json`` are listed;
Chromium runs the page's filter script (the filters appear, a ``?status=`` query filters the
rows), the page asks the network for nothing (the ``trap`` fixture), and a row's notebook link
opens that run's archived ``notebook.html``. :func:`check_runs_index` holds the browser checks,
so a test on another home (the default demo, say) can call it too.
"""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from chromium import browse, screenshot

from helpers.runs import history, runner

pytestmark = pytest.mark.integration
AS_OF = dt.datetime(2026, 11, 1, 6, tzinfo=dt.UTC)


class Dom(HTMLParser):
    """What the checks read from a dumped DOM: the filter form, the rows, their notebook links."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.form: dict | None = None
        self.count = ""
        self.rows: list[dict] = []
        self.options: list[str] = []
        self._in: str | None = None
        self._row: dict | None = None
        self._link: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == "wb-filters":
            self.form = a
        if a.get("id") == "f-count":
            self._in = "count"
        if tag == "select" and a.get("id") == "f-pipeline":
            self._in = "pipeline"
        if tag == "option" and self._in == "pipeline":
            self.options.append(a.get("value") or "")
        if tag == "tr" and "data-run-id" in a:
            self._row = {**a, "links": {}}
            self.rows.append(self._row)
        if tag == "a" and self._row is not None:
            self._link = a.get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("span", "select"):
            self._in = None
        if tag == "tr":
            self._row = None
        if tag == "a":
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._in == "count":
            self.count += data
        if self._row is not None and self._link is not None:
            self._row["links"][data.strip()] = self._link


def resolve(page: Path, href: str) -> Path:
    parts = urlsplit(href)
    assert not parts.scheme and not parts.netloc, f"{href}: expected a relative link"
    return (page.parent / unquote(parts.path)).resolve()


def check_runs_index(page: Path, trap, tmp_path: Path) -> Dom:
    """Open ``page`` (a ``runs/index.html``) in Chromium and check it; returns its parsed DOM.

    The filters render (the script ran) over every row, nothing was fetched, a ``?status=``
    query hides the other rows, and a row's notebook link opens that run's archived notebook.
    Keeps the screenshot ``test-artifacts/runs_index.png``.
    """
    dom = Dom(browse(page, trap, tmp_path / "profile-index", "--dump-dom").stdout)
    assert dom.form is not None and "hidden" not in dom.form, "the filter script did not run"
    assert dom.rows, "no run row rendered"
    assert dom.count.strip() == f"showing {len(dom.rows)} of {len(dom.rows)}"
    assert all("hidden" not in r for r in dom.rows)
    assert {r["data-pipeline"] for r in dom.rows} <= set(dom.options)
    for row in dom.rows:
        assert row["data-status"] and row["data-pipeline"] and "data-date" in row

    status = dom.rows[-1]["data-status"]
    url = page.resolve().as_uri() + f"?status={status}"
    filtered = Dom(browse(url, trap, tmp_path / "profile-filter", "--dump-dom").stdout)
    shown = [r["data-run-id"] for r in filtered.rows if "hidden" not in r]
    assert shown == [r["data-run-id"] for r in dom.rows if r["data-status"] == status]
    assert filtered.count.strip() == f"showing {len(shown)} of {len(dom.rows)}"

    row = next((r for r in dom.rows if r["data-kind"] == "pipeline" and "notebook" in r["links"]), None)
    row = row or next(r for r in dom.rows if "notebook" in r["links"])
    notebook = resolve(page, row["links"]["notebook"])
    assert notebook.is_file() and notebook.name == "notebook.html", notebook
    shown_nb = browse(notebook, trap, tmp_path / "profile-notebook", "--dump-dom").stdout
    # a notebook shows its injected run id; a report hides its code, but names its partition
    expected = row["data-partition"] if row["data-kind"] == "report" else row["data-run-id"]
    assert expected in shown_nb, (notebook, expected)

    screenshot(page, trap, tmp_path / "profile-shot", "runs_index", width=1280, height=900)
    assert trap.page_hits == []
    return dom


def test_run_history_page_in_a_browser(home, trap, tmp_path):
    def clock_from(start: dt.datetime):
        state = {"t": start}

        def clock() -> dt.datetime:
            state["t"] += dt.timedelta(seconds=2)
            return state["t"]

        return clock

    ok = runner.run_pipeline("smoke", "2026-10-31", clock=clock_from(AS_OF), as_of=AS_OF)
    bad = runner.run_pipeline("smoke_fail", "2026-10-31", clock=clock_from(AS_OF + dt.timedelta(hours=1)),
                              as_of=AS_OF)  # fmt: skip
    broken = home / "runs" / "smoke" / "2026-10-30" / "smoke-2026-10-30-20261101T050000-0b0b0b"
    broken.mkdir(parents=True)
    (broken / "notebook.ipynb").write_text("{}")
    (broken / "run.json").write_text('{"status": "succ')
    page = history.refresh(home / "runs", now=AS_OF + dt.timedelta(hours=2))

    dom = check_runs_index(page, trap, tmp_path)
    assert [r["data-run-id"] for r in dom.rows] == [bad.run_id, ok.run_id, broken.name]
    assert [r["data-status"] for r in dom.rows] == ["failed", "succeeded", "unknown"]
    assert set(dom.rows[0]["links"]) == {"notebook", "parameters", "scraps", "log", "run.json"}
    assert list(dom.rows[2]["links"]) == ["run.json"]  # the broken record is linked, to be read

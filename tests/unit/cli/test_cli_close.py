"""`workbook close` says what it built and what it published: the trailing months, the HTML and its PDF
(or how to get one); `workbook publications` lists every version with its PDF.

The close itself is stubbed here (its result is what is printed); tests/notebooks/test_close_history.py
and tests/integration/test_close_signoff.py run the real one.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from helpers.cli.main import main
from helpers.core import browser
from helpers.investor import close, history, publication, signoff
from helpers.runs.orchestrate import Outcome

pytestmark = pytest.mark.unit
P = "2026-10"
AS_OF = dt.datetime(2026, 11, 16, 12, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 11, 17, 9, tzinfo=dt.UTC)


def result(
    published: Path | None, pdf: Path | None, note: str | None, trend: history.History
) -> close.CloseResult:
    item = close.CloseItem(
        "runs", "investor_aggregate", "latest run of 2026-10 succeeded", True, "ok", "DE1/DE2"
    )
    status = close.CloseStatus(P, AS_OF, dt.date(2026, 10, 31), AS_OF, (item,), {})
    failed = Outcome("profit_aggregate", "2026-02", "failed", "r1", "cell 3: boom")
    return close.CloseResult(P, AS_OF, (failed,), status, None, None, None, published, None, 1, 1 if published else None,
                             None, (), (), trend, pdf, note)  # fmt: skip


def test_the_close_prints_the_trailing_months_and_the_published_pdf(home, monkeypatch, capsys, tmp_path):
    trend = history.settle(
        history.plan(P, 3, first_day=dt.date(2026, 8, 1), first_why="events from 2026-08-01", have={}, locked={}),
        [Outcome("investor_aggregate", "2026-08", "succeeded", "i8"),
         Outcome("profit_aggregate", "2026-09", "failed", "p9", "cell 3: boom"),
         Outcome("investor_aggregate", "2026-09", "blocked", None, "upstream failed")],
    )  # fmt: skip
    html, pdf = tmp_path / "investor_report_2026-10.html", tmp_path / "investor_report_2026-10.pdf"
    seen = {}

    def fake_close(period, **kw):
        seen.update(kw)
        return result(html, pdf, None, trend)

    monkeypatch.setattr(close, "run_close", fake_close)
    assert main(["close", "--month", P, "--as-of", AS_OF.isoformat(), "-q", "--final"]) == 1
    out, err = capsys.readouterr()
    assert seen["history"] == 12 and seen["final"] is True
    assert (
        "trend months before 2026-10: 1 of 3 with investor figures (1 built now); missing: 2026-07 (no data: "
        "the landing zone starts 2026-08-01 (events from 2026-08-01)), 2026-09 (profit_aggregate 2026-09 failed: "
        "cell 3: boom)\n"
    ) in out
    assert f"published (version 1): {html}\npdf: {pdf}\n" in out and "profit_aggregate 2026-02: failed" in err

    note = f"no PDF: headless Chromium was not found ({browser.INSTALL_HINT}); the HTML is published"
    monkeypatch.setattr(close, "run_close", lambda period, **kw: result(html, None, note, trend))
    main(["close", "--month", P, "--as-of", AS_OF.isoformat(), "-q", "--final", "--history", "3"])
    out, err = capsys.readouterr()
    assert "pdf:" not in out and err.count(browser.INSTALL_HINT) == 1 and f"warning: {note}\n" in err


def test_print_pdf_without_chromium_says_why_in_publication_json(home, monkeypatch):
    target = publication.published_dir(P)
    html = publication.write_files(P, _page(home), {"period": P, "version": 1})
    assert html == target / "investor_report_2026-10.html" and html.read_text() == "<html>report</html>"
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    pdf, note = publication.print_pdf(html)
    assert pdf is None and browser.INSTALL_HINT in note and note.endswith("the HTML is published")
    meta = (target / "publication.json").read_text()
    assert '"pdf": null' in meta and "apt-get install chromium" in meta

    def crash(*_a, **_kw):
        raise RuntimeError("Chromium exited 133 on file:///x: SIGTRAP")

    monkeypatch.setattr(browser, "run", crash)
    monkeypatch.setattr(browser, "find_chromium", lambda: Path("/usr/bin/chromium"))
    pdf, note = publication.print_pdf(html)
    assert pdf is None and note.startswith("no PDF: Chromium failed (RuntimeError: Chromium exited 133")
    assert not list(target.glob("*.pdf*"))  # nothing half-written left behind


def test_publications_lists_each_version_with_its_pdf(home, capsys):
    for version in (1, 2):
        html = publication.write_files(P, _page(home), {"period": P, "version": version})
        if version == 2:
            publication.pdf_of(html).write_bytes(b"%PDF-1.4 test")
        publication.record(P, version=version, path=html, as_of=AS_OF, report_run_id=f"r{version}", targets=[],
                           signed=[], now=NOW, by="DE1")  # fmt: skip
        if version == 1:
            publication.reopen(P, by="DE1", reason="late expense", now=NOW)
    assert main(["publications", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(p["version"], p["status"], p["pdf"]) for p in listed] == [
        (1, "withdrawn", None),
        (2, "published", str(publication.published_dir(P) / "investor_report_2026-10.pdf")),
    ]
    assert main(["publications", "--month", "2026-09"]) == 0
    assert "nothing published yet" in capsys.readouterr().out
    assert signoff.audit_events(P)[-1].event == "publish"


def _page(home: Path) -> Path:
    page = home / "notebook.html"
    page.write_text("<html>report</html>")
    return page

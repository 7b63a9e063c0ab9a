"""The run history page ``runs/index.html``: every archive listed once, links that exist, written whole."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from helpers.runbooks import registry as runbooks
from helpers.runs import history, runner

UTC = dt.UTC
AS_OF = dt.datetime(2026, 11, 1, 6, tzinfo=UTC)


class Index(HTMLParser):
    """The rows of ``#runs`` (their ``data-*`` attributes, hrefs and text) and every href of the page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.hrefs: list[str] = []
        self.form_attrs: dict = {}
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None
        self._row: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == "wb-filters":
            self.form_attrs = a
        if tag == "select":
            self._select = a.get("id")
            self.options[self._select or ""] = []
        if tag == "option" and self._select:
            self.options[self._select].append(a.get("value") or "")
        if tag == "tr" and "data-run-id" in a:
            self._row = {**a, "hrefs": [], "text": ""}
            self.rows.append(self._row)
        if tag == "a":
            self.hrefs.append(a["href"] or "")
            if self._row is not None:
                self._row["hrefs"].append(a["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        if tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row["text"] += data


def resolve(page: Path, href: str) -> Path:
    """``href`` (relative, URL-quoted) as a file beside ``page``."""
    parts = urlsplit(href)
    assert not parts.scheme and not parts.netloc, f"{href}: expected a relative link"
    return (page.parent / unquote(parts.path)).resolve()


def clock_from(start: dt.datetime):
    state = {"t": start}

    def clock() -> dt.datetime:
        state["t"] += dt.timedelta(seconds=1)
        return state["t"]

    return clock


def fake_archive(root: Path, folder: str, record: dict | str | None, files=("notebook.html",)) -> Path:
    """An archive folder: ``record`` as run.json (a str is written as is; None: no run.json)."""
    d = root / folder
    d.mkdir(parents=True)
    for name in files:
        (d / name).write_text(f"<p>{name} of {d.name}</p>")
    if record is not None:
        (d / "run.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return d


def record(
    run_id: str, pipeline: str, date: str, status: str, start: str, seconds: float = 3.0, **extra
) -> dict:
    started = dt.datetime.fromisoformat(start).replace(tzinfo=UTC)
    return {"run_id": run_id, "pipeline": pipeline, "logical_date": date, "status": status,
            "started_at": started.isoformat(), "finished_at": (started + dt.timedelta(seconds=seconds)).isoformat(),
            "error_summary": None, "failed_cell": None, "trigger": "manual", **extra}  # fmt: skip


@pytest.mark.notebooks
def test_runner_runs_of_each_kind_are_listed_once_with_status_and_links_that_exist(home):
    ok = runner.run_pipeline("smoke", "2026-10-31", clock=clock_from(AS_OF), as_of=AS_OF)
    bad = runner.run_pipeline("smoke_fail", "2026-10-31", clock=clock_from(AS_OF + dt.timedelta(hours=1)),
                              as_of=AS_OF)  # fmt: skip
    book = runbooks.run_runbook(
        "oncall_handoff", clock=clock_from(AS_OF + dt.timedelta(hours=2)), as_of=AS_OF
    )
    assert (ok.status, bad.status) == ("succeeded", "failed")

    page = home / "runs" / "index.html"  # written by the runner after each run: no refresh called here
    parsed = Index(page.read_text(encoding="utf-8"))
    by_id = {r["data-run-id"]: r for r in parsed.rows}
    assert sorted(by_id) == sorted([ok.run_id, bad.run_id, book.run_id]) and len(parsed.rows) == 3
    assert [r["data-run-id"] for r in parsed.rows] == [book.run_id, bad.run_id, ok.run_id]  # newest first
    assert (by_id[ok.run_id]["data-status"], by_id[bad.run_id]["data-status"]) == ("succeeded", "failed")
    assert by_id[book.run_id]["data-status"] == book.status and by_id[book.run_id]["data-kind"] == "runbook"
    assert by_id[book.run_id]["data-pipeline"] == "oncall_handoff"
    assert by_id[ok.run_id]["data-pipeline"] == "smoke" and by_id[ok.run_id]["data-kind"] == "pipeline"
    assert (
        by_id[ok.run_id]["data-date"] == json.loads((ok.archive / "run.json").read_text())["started_at"][:10]
    )
    assert bad.error and bad.error[:40] in by_id[bad.run_id]["text"]  # the failure says why
    assert "2026-10-31" in by_id[ok.run_id]["text"]

    for run, archive in ((ok, ok.archive), (bad, bad.archive), (book, book.archive)):
        row = by_id[run.run_id]
        targets = {resolve(page, h) for h in row["hrefs"]}
        expected = {archive.resolve() / f for f in ("notebook.html", "parameters.json", "scraps.json",
                                                    "run.log", "run.json")}  # fmt: skip
        assert targets == expected, run.run_id
    for href in parsed.hrefs:  # every link of the page, the header's included, points at a file
        assert resolve(page, href).is_file(), href
    assert sorted(parsed.options["f-status"]) == sorted({"", "failed", "succeeded", book.status})
    assert {"smoke", "smoke_fail", "oncall_handoff"} <= set(parsed.options["f-pipeline"])
    assert not list((home / "runs").glob(".index.html.*"))  # no temporary file left behind


@pytest.mark.unit
def test_a_broken_or_missing_run_json_is_listed_from_its_folder_with_a_note(tmp_path):
    root = tmp_path / "runs"
    fake_archive(root, "smoke/2026-10-30/smoke-2026-10-30-20261101T050000-aaaaaa",
                 record("smoke-2026-10-30-20261101T050000-aaaaaa", "smoke", "2026-10-30", "succeeded",
                        "2026-11-01T05:00:00"))  # fmt: skip
    fake_archive(root, "smoke/2026-10-31/smoke-2026-10-31-20261101T070000-bbbbbb", '{"run_id": "smoke-2026-')
    fake_archive(root, "profit_aggregate/2026-10/profit_aggregate-2026-10-20261101T060000-cccccc", "[1, 2]")
    fake_archive(root, "growth_daily/2026-10-29/growth_daily-2026-10-29-20261101T040000-dddddd", None,
                 files=("notebook.ipynb", "run.log"))  # fmt: skip
    (
        root / "smoke" / "2026-10-31" / ".smoke-2026-10-31-20261101T080000-eeeeee.partial"
    ).mkdir()  # being written
    (root / "smoke" / "2026-10-31" / "not-an-archive").mkdir()  # no run.json, no notebook
    fake_archive(
        root, "scratch/x/y", record("scratch-run", "smoke", "2026-10-30", "succeeded", "2026-11-01T09:00:00")
    )

    page = history.refresh(root)
    parsed = Index(page.read_text(encoding="utf-8"))
    rows = {r["data-run-id"]: r for r in parsed.rows}
    assert list(rows) == [  # newest first: a broken record's start comes from its run id
        "smoke-2026-10-31-20261101T070000-bbbbbb",
        "profit_aggregate-2026-10-20261101T060000-cccccc",
        "smoke-2026-10-30-20261101T050000-aaaaaa",
        "growth_daily-2026-10-29-20261101T040000-dddddd",
    ]
    broken = rows["smoke-2026-10-31-20261101T070000-bbbbbb"]
    assert broken["data-status"] == "unknown" and broken["data-pipeline"] == "smoke"
    assert broken["data-date"] == "2026-11-01" and "2026-10-31" in broken["text"]
    assert (
        "run.json unreadable (JSONDecodeError" in broken["text"]
        and "listed from its folder" in broken["text"]
    )
    assert "run.json unreadable (expected an object, got list)" in rows[
        "profit_aggregate-2026-10-20261101T060000-cccccc"]["text"]  # fmt: skip
    missing = rows["growth_daily-2026-10-29-20261101T040000-dddddd"]
    assert "no run.json" in missing["text"] and [h.rsplit("/", 1)[1] for h in missing["hrefs"]] == ["run.log"]
    assert rows["smoke-2026-10-30-20261101T050000-aaaaaa"]["data-status"] == "succeeded"
    for href in parsed.hrefs:
        assert resolve(page, href).is_file(), href
    text = page.read_text(encoding="utf-8")
    assert "3 without a readable run.json" in text and "<b id=wb-total>4</b> runs" in text


@pytest.mark.unit
def test_kinds_partitions_and_durations_come_from_the_folders_and_run_json(tmp_path):
    root = tmp_path / "runs"
    fake_archive(root, "month_end_report/2026-10/r1",
                 record("r1", "month_end_report", "2026-10", "succeeded", "2026-11-16T12:00:00", 185))  # fmt: skip
    fake_archive(root, "incidents/12/rb-profit.stale_data-20261116T130000-aaaaaa",
                 {"run_id": "rb-profit.stale_data-20261116T130000-aaaaaa", "runbook": "profit/stale_data",
                  "alert_id": 12, "mode": "fix", "status": "failed", "started_at": "2026-11-16T13:00:00+00:00",
                  "finished_at": "2026-11-16T15:07:00+00:00", "error_summary": "cell 4: boom", "trigger": "hook"})  # fmt: skip
    fake_archive(root, "runbooks/growth.skipped_stage/rb-growth.skipped_stage-20261116T140000-bbbbbb", "oops")

    runs = history.scan(root, families={"month_end_report": "report"})
    assert [(r.kind, r.name, r.partition, r.status) for r in runs] == [
        ("runbook", "growth/skipped_stage", "", "unknown"),
        ("runbook", "profit/stale_data", "alert 12", "failed"),
        ("report", "month_end_report", "2026-10", "succeeded"),
    ]
    assert [history.duration_text(r.duration) for r in runs] == ["–", "2 h 07 min", "3 min 05 s"]
    assert runs[1].error == "cell 4: boom" and runs[1].mode == "fix" and runs[1].trigger == "hook"
    assert history.scan(root, families={})[2].kind == "pipeline"  # no configuration: a pipeline
    assert history.duration_text(dt.timedelta(seconds=4.24)) == "4.2 s"


@pytest.mark.unit
def test_published_reports_have_their_section_and_mark_their_run(tmp_path):
    root = tmp_path / "runs"
    fake_archive(root, "month_end_report/2026-10/run-v2",
                 record("run-v2", "month_end_report", "2026-10", "succeeded", "2026-11-18T12:00:00"))  # fmt: skip
    base = root / "published" / "month_end_report" / "2026-10"
    (base / "withdrawn" / "v1").mkdir(parents=True)
    (base / "investor_report_2026-10.html").write_text("<p>v2</p>")
    (base / "publication.json").write_text(json.dumps(
        {"period": "2026-10", "version": 2, "status": "published", "report_run_id": "run-v2",
         "published_at": "2026-11-18T12:05:00+00:00"}))  # fmt: skip
    (base / "withdrawn" / "v1" / "investor_report_2026-10.html").write_text("<p>v1</p>")
    (base / "withdrawn" / "v1" / "WITHDRAWN.txt").write_text("withdrawn by DE1")
    (base / "withdrawn" / "v1" / "publication.json").write_text(json.dumps(
        {"period": "2026-10", "version": 1, "status": "withdrawn", "report_run_id": "run-v1-gone",
         "published_at": "2026-11-16T12:05:00+00:00"}))  # fmt: skip

    published = history.scan_published(root)
    assert [(p.version, p.status) for p in published] == [(2, "published"), (1, "withdrawn")]
    page = history.refresh(root)
    text = page.read_text(encoding="utf-8")
    parsed = Index(text)
    assert [r["data-run-id"] for r in parsed.rows] == ["run-v2"]  # published copies are not runs
    assert "published v2" in parsed.rows[0]["text"]
    section = text[text.index('<section id="published">') :]
    assert "run-v1-gone" in section and "WITHDRAWN.txt" in section and ">withdrawn<" in section
    for href in parsed.hrefs:
        assert resolve(page, href).is_file(), href
    assert "published/month_end_report/2026-10/withdrawn/v1/WITHDRAWN.txt" in parsed.hrefs


@pytest.mark.unit
def test_the_page_works_without_javascript_and_fetches_nothing(tmp_path):
    root = tmp_path / "runs"
    fake_archive(
        root,
        "smoke/2026-10-31/a b#c",
        record("a b#c", "smoke", "2026-10-31", "failed", "2026-11-01T05:00:00"),
    )
    (root / "status").mkdir()
    (root / "status" / "index.html").write_text("<p>board</p>")
    text = history.refresh(root, now=AS_OF).read_text(encoding="utf-8")
    parsed = Index(text)
    assert "hidden" in parsed.form_attrs  # the filters appear only when the script runs
    assert all("hidden" not in r for r in parsed.rows)  # every row shows without it
    assert parsed.rows[0]["data-date"] == "2026-11-01" and parsed.rows[0]["data-status"] == "failed"
    assert "smoke/2026-10-31/a%20b%23c/notebook.html" in parsed.hrefs  # quoted, resolves to the file
    assert history.BOARD in parsed.hrefs and "written 2026-11-01 06:00:00" in text
    assert 'class="wb-badge wb-bad" data-status="failed"' in text and "1 failed" in text
    for marker in ("http://", "https://", "src=", "@import", "url("):
        assert marker not in text, marker


@pytest.mark.unit
def test_concurrent_refreshes_and_a_failed_write_never_show_a_partial_page(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    for i in range(60):
        fake_archive(root, f"smoke/2026-10-{i % 28 + 1:02d}/run-{i:03d}",
                     record(f"run-{i:03d}", "smoke", "2026-10-01", "succeeded", f"2026-11-01T05:{i:02d}:00"))  # fmt: skip
    history.refresh(root)
    whole = (root / "index.html").read_text(encoding="utf-8")
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append((root / "index.html").read_text(encoding="utf-8"))

    def write() -> None:
        for _ in range(5):
            history.refresh(root)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write) for _ in range(4)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert seen and all(s == whole for s in seen)  # every read saw the whole page
    assert len(Index(seen[-1]).rows) == 60
    assert sorted(p.name for p in root.iterdir()) == [".index.lock", "index.html", "smoke"]

    def broken_write(self: Path, text: str, **kw) -> int:
        with open(self, "w", encoding="utf-8") as f:
            f.write(text[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", broken_write)
    with pytest.raises(OSError, match="No space left"):
        history.refresh(root)
    monkeypatch.undo()
    assert (root / "index.html").read_text(encoding="utf-8") == whole  # the old page stands, whole
    assert sorted(p.name for p in root.iterdir()) == [".index.lock", "index.html", "smoke"]


@pytest.mark.unit
def test_a_failed_refresh_is_a_warning_and_archives_outside_runs_are_left_out(
    home, monkeypatch, caplog, tmp_path
):
    archive = fake_archive(home / "runs", "smoke/2026-10-31/r1",
                           record("r1", "smoke", "2026-10-31", "succeeded", "2026-11-01T05:00:00"))  # fmt: skip
    elsewhere = fake_archive(tmp_path, "elsewhere/r2", record("r2", "smoke", "2026-10-31", "succeeded",
                                                              "2026-11-01T05:00:00"))  # fmt: skip
    runner.refresh_history(elsewhere, now=AS_OF)
    assert not (home / "runs" / "index.html").exists() and not (tmp_path / "index.html").exists()
    runner.refresh_history(archive, now=AS_OF)
    assert Index((home / "runs" / "index.html").read_text())
    assert [r["data-run-id"] for r in Index((home / "runs" / "index.html").read_text()).rows] == ["r1"]

    def fail(*_a, **_k):
        raise PermissionError(13, "Permission denied", str(home / "runs" / "index.html"))

    monkeypatch.setattr(history, "refresh", fail)
    with caplog.at_level(logging.WARNING, logger="helpers.runs.runner"):
        runner.refresh_history(archive, now=AS_OF)  # does not raise
    assert "run history page" in caplog.text and "Permission denied" in caplog.text

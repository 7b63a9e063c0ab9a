"""The run history page: ``runs/index.html`` lists every archived run, newest first, with filters.

The archive folders are the truth of what ran, so the page is built from them alone (each folder's
``run.json``, and which of its files exist), never from the warehouse: it works as well for a
``runs/`` folder copied elsewhere. Three kinds of archive are listed, all three folders below
``runs/``:

- ``<pipeline>/<partition>/<run_id>/``  a pipeline run, or a *report* (a pipeline of family
  ``report`` in ``config/pipelines.yml``),
- ``runbooks/<runbook>/<run_id>/``       a runbook run without an alert,
- ``incidents/<alert_id>/<run_id>/``     a runbook run for an alert.

A folder whose ``run.json`` is missing or unreadable is listed from its folder names, with a note
saying so. The reports published by a final close (``published/<report>/<period>/``, and their
withdrawn versions) have a section of their own.

:func:`refresh` rewrites the page; ``helpers.runs.runner.execute_notebook`` calls it once a run's
archive is in place. The page is written under a unique temporary name and renamed (readers see
the old page or the new one, never a part), and refreshes are serialised by a lock file
(``runs/.index.lock``), so the last refresh has seen every archive renamed before it started.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from helpers.core import config as cfgmod
from helpers.core import paths
from helpers.core.page import badge, document, esc, link, table
from helpers.core.timeutil import UTC, as_utc

INDEX = "index.html"
LOCK = ".index.lock"
BOARD = "status/index.html"  # the status board (helpers.board), linked when it exists
PUBLISHED = "published"
# Top-level folders of runs/ that hold no run archives: published reports, scratch warehouses, the board.
NOT_RUNS = frozenset({PUBLISHED, "scratch", "status"})
RUNBOOK_ROOTS = {"runbooks": "runbook", "incidents": "incident"}
KINDS = ("pipeline", "report", "runbook")
# The files of an archive the page links (runner.ARCHIVE_FILES but the .ipynb), with their labels.
FILE_LABELS = (
    ("notebook.html", "notebook"),
    ("parameters.json", "parameters"),
    ("scraps.json", "scraps"),
    ("run.log", "log"),
    ("run.json", "run.json"),
)
ARCHIVE_FILES = ("notebook.ipynb", *(f for f, _label in FILE_LABELS))
_STAMP = re.compile(r"(\d{8}T\d{6})")  # the UTC start inside every run id


@dataclass(frozen=True)
class ArchivedRun:
    """One archive folder as the page shows it."""

    folder: str  # relative to runs/, with "/"
    kind: str  # pipeline | report | runbook
    name: str  # the pipeline, or the runbook
    partition: str  # the partition label; for a runbook "alert <id>" or ""
    run_id: str
    status: str  # from run.json; "unknown" when it cannot be read
    started: dt.datetime | None
    finished: dt.datetime | None
    trigger: str
    mode: str  # a runbook's mode (diagnose | fix), else ""
    error: str | None
    files: tuple[str, ...]  # the archive files present
    note: str | None = None  # why the row comes from the folder names

    @property
    def date(self) -> str:
        """The UTC day the run started (``YYYY-MM-DD``), or ``""``."""
        return self.started.date().isoformat() if self.started else ""

    @property
    def duration(self) -> dt.timedelta | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True)
class PublishedReport:
    """One published (or withdrawn) version of a report under ``runs/published/``."""

    folder: str  # relative to runs/
    report: str
    period: str
    version: int | None
    status: str  # published | withdrawn | unknown
    published_at: dt.datetime | None
    report_run_id: str | None
    files: tuple[str, ...]  # the folder's files (html, pdf, publication.json, WITHDRAWN.txt)
    note: str | None = None


# ---------------------------------------------------------------- reading the archive


def _dirs(path: Path) -> Iterator[os.DirEntry[str]]:
    """The sub-folders of ``path`` that are not hidden (a run being assembled is ``.<id>.partial``)."""
    try:
        with os.scandir(path) as entries:
            found = [e for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return iter(())
    return iter(sorted(found, key=lambda e: e.name))


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _stamp(run_id: str) -> dt.datetime | None:
    """The start time inside a run id (``...-20261206T121459-898922``)."""
    found = _STAMP.search(run_id)
    return dt.datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC) if found else None


def _read_record(folder: Path, files: tuple[str, ...]) -> tuple[dict[str, Any] | None, str | None]:
    """``(run.json's object, None)``, or ``(None, why it cannot be used)``."""
    if "run.json" not in files:
        return None, "no run.json"
    try:
        data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"run.json unreadable ({type(exc).__name__}: {str(exc)[:80]})"
    if not isinstance(data, dict):
        return None, f"run.json unreadable (expected an object, got {type(data).__name__})"
    return data, None


def _kind_of(name: str, families: Mapping[str, str]) -> str:
    return "report" if families.get(name) == "report" else "pipeline"


def _archived_run(
    folder: Path, top: str, middle: str, files: tuple[str, ...], families: Mapping[str, str]
) -> ArchivedRun:
    """The row of one archive folder (``runs/<top>/<middle>/<folder.name>``)."""
    record, note = _read_record(folder, files)
    data = record or {}
    run_id = str(data.get("run_id") or folder.name)
    runbook_root = RUNBOOK_ROOTS.get(top)
    if runbook_root or "runbook" in data:
        kind = "runbook"
        name = str(data.get("runbook") or (middle.replace(".", "/") if runbook_root == "runbook" else "?"))
        alert = data.get("alert_id", middle if runbook_root == "incident" else None)
        partition = f"alert {alert}" if alert is not None else ""
    else:
        name = str(data.get("pipeline") or top)
        kind = _kind_of(name, families)
        partition = str(data.get("logical_date") or middle)
    started = _time(data.get("started_at")) or _stamp(run_id)
    return ArchivedRun(
        folder=f"{top}/{middle}/{folder.name}",
        kind=kind,
        name=name,
        partition=partition,
        run_id=run_id,
        status=str(data.get("status") or "unknown"),
        started=started,
        finished=_time(data.get("finished_at")),
        trigger=str(data.get("trigger") or ""),
        mode=str(data.get("mode") or ""),
        error=str(data.get("error_summary") or data.get("error") or "") or None,
        files=files,
        note=note,
    )


def _pipeline_families() -> dict[str, str]:
    """Each configured pipeline's family; empty when the configuration cannot be read."""
    try:
        return {pid: p.family for pid, p in cfgmod.get().pipelines.pipelines.items()}
    except Exception:  # a copied runs/ folder without our configuration: every run is a pipeline's
        return {}


def scan(runs_root: Path, *, families: Mapping[str, str] | None = None) -> list[ArchivedRun]:
    """Every run archive three folders below ``runs_root``, newest first.

    A folder is an archive when it holds ``run.json`` or ``notebook.ipynb``; only ``run.json``
    is read. ``families``: pipeline -> family (default: the configuration's).
    """
    families = _pipeline_families() if families is None else families
    found: list[ArchivedRun] = []
    for top in _dirs(runs_root):
        if top.name in NOT_RUNS:
            continue
        for middle in _dirs(Path(top.path)):
            for leaf in _dirs(Path(middle.path)):
                try:
                    with os.scandir(leaf.path) as entries:
                        names = {e.name for e in entries}
                except OSError:
                    continue
                if "run.json" not in names and "notebook.ipynb" not in names:
                    continue
                files = tuple(f for f in ARCHIVE_FILES if f in names)
                found.append(_archived_run(Path(leaf.path), top.name, middle.name, files, families))
    return sorted(found, key=_newest_first)


def _newest_first(run: ArchivedRun) -> tuple[int, float, str]:
    return (run.started is None, -(run.started.timestamp() if run.started else 0.0), run.run_id)


def _published_version(folder: Path, rel: str, report: str, period: str) -> PublishedReport | None:
    try:
        with os.scandir(folder) as entries:
            files = tuple(sorted(e.name for e in entries if e.is_file() and not e.name.startswith(".")))
    except OSError:
        return None
    if not files:
        return None
    data: dict[str, Any] = {}
    note = None
    try:
        loaded = json.loads((folder / "publication.json").read_text(encoding="utf-8"))
        data = loaded if isinstance(loaded, dict) else {}
        note = None if data else "publication.json is not an object"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        note = f"publication.json unreadable ({type(exc).__name__})"
    version = data.get("version")
    return PublishedReport(
        folder=rel,
        report=report,
        period=str(data.get("period") or period),
        version=version if isinstance(version, int) else None,
        status=str(data.get("status") or ("withdrawn" if "/withdrawn/" in f"/{rel}/" else "unknown")),
        published_at=_time(data.get("published_at")),
        report_run_id=data.get("report_run_id"),
        files=files,
        note=note,
    )


def scan_published(runs_root: Path) -> list[PublishedReport]:
    """Every published report (``published/<report>/<period>/``) and its withdrawn versions, newest first."""
    out: list[PublishedReport] = []
    for report in _dirs(runs_root / PUBLISHED):
        for period in _dirs(Path(report.path)):
            base = f"{PUBLISHED}/{report.name}/{period.name}"
            folders = [(Path(period.path), base)]
            folders += [
                (Path(v.path), f"{base}/withdrawn/{v.name}") for v in _dirs(Path(period.path) / "withdrawn")
            ]
            for folder, rel in folders:
                found = _published_version(folder, rel, report.name, period.name)
                if found is not None:
                    out.append(found)
    return sorted(out, key=lambda p: (p.period, p.version or 0, p.published_at or dt.datetime.min.replace(tzinfo=UTC)),
                  reverse=True)  # fmt: skip


# ---------------------------------------------------------------- rendering


def _href(folder: str, name: str) -> str:
    """A link relative to ``runs/index.html`` (each path segment URL-quoted)."""
    return "/".join(quote(part) for part in f"{folder}/{name}".split("/"))


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "–"


def duration_text(delta: dt.timedelta | None) -> str:
    """``4.2 s``, ``3 min 05 s``, ``2 h 07 min``; ``–`` when unknown."""
    if delta is None:
        return "–"
    seconds = delta.total_seconds()
    if seconds < 0:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _row(run: ArchivedRun, published: str | None) -> str:
    tags = [run.kind] if run.kind != "pipeline" else []
    tags += [run.mode] if run.mode else []
    tag = "".join(f" <span class=wb-kind>{esc(t)}</span>" for t in tags)
    if published:
        tag += f" {badge('final', published)}"
    what = f"<b>{esc(run.name)}</b>{tag}<div class=wb-id>{esc(run.run_id)}</div>"
    if run.error:
        text = run.error if len(run.error) <= 160 else run.error[:159] + "…"
        what += f'<div class=wb-err title="{esc(run.error)}">{esc(text)}</div>'
    if run.note:
        what += f"<div class=wb-note>{esc(run.note)}: listed from its folder</div>"
    status = badge(run.status, title=run.error)
    links = " ".join(link(_href(run.folder, f), label) for f, label in FILE_LABELS if f in run.files)
    cells = [
        f"<td class=wb-when>{esc(_when(run.started))}</td>",
        f"<td>{what}</td>",
        f"<td class=wb-nowrap>{esc(run.partition) or '–'}</td>",
        f"<td>{status}</td>",
        f"<td class=num>{esc(duration_text(run.duration))}</td>",
        f"<td>{esc(run.trigger) or '–'}</td>",
        f"<td class=wb-files>{links or '–'}</td>",
    ]
    attrs = (
        f'data-pipeline="{esc(run.name)}" data-kind="{esc(run.kind)}" data-status="{esc(run.status)}" '
        f'data-date="{esc(run.date)}" data-partition="{esc(run.partition)}" data-run-id="{esc(run.run_id)}"'
    )
    return f"<tr {attrs}>{''.join(cells)}</tr>"


def _runs_table(runs: list[ArchivedRun], published: Mapping[str, str]) -> str:
    heads = ["Started (UTC)", "Pipeline, report or runbook · run id", "Partition", "Status", "Duration",
             "Trigger", "Files"]  # fmt: skip
    cls = {"Duration": " class=num", "Files": " class=wb-files"}
    head = "".join(f"<th{cls.get(h, '')}>{esc(h)}</th>" for h in heads)
    body = "".join(_row(r, published.get(r.run_id)) for r in runs)
    if not runs:
        body = f'<tr><td colspan="{len(heads)}" class=wb-muted>No archived run yet.</td></tr>'
    return f'<table id="runs" class="wb-runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _options(values: Iterable[str]) -> str:
    return "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)


def _filters(runs: list[ArchivedRun]) -> str:
    """The filter controls: hidden until the script runs (without it every row shows)."""
    groups = ""
    for kind in KINDS:
        names = sorted({r.name for r in runs if r.kind == kind})
        if names:
            groups += f'<optgroup label="{esc(kind.capitalize())}s">{_options(names)}</optgroup>'
    statuses = sorted({r.status for r in runs})
    dates = sorted(r.date for r in runs if r.date)
    span = f' min="{dates[0]}" max="{dates[-1]}"' if dates else ""
    return (
        '<form id="wb-filters" class="wb-filters" hidden onsubmit="return false">'
        '<label>Pipeline / runbook <select id="f-pipeline"><option value="">all</option>'
        f"{groups}</select></label>"
        f'<label>Status <select id="f-status"><option value="">all</option>{_options(statuses)}</select></label>'
        f'<label>Started from <input type="date" id="f-from"{span}></label>'
        f'<label>to <input type="date" id="f-to"{span}></label>'
        '<button type="reset" id="f-reset">Show all</button>'
        '<span id="f-count" class="wb-muted" aria-live="polite"></span>'
        "</form>"
    )


def _header(runs: list[ArchivedRun], board: bool, now: dt.datetime | None) -> str:
    kinds = Counter(r.kind for r in runs)
    failed = sum(r.status == "failed" for r in runs)
    unreadable = sum(r.note is not None for r in runs)
    per_kind = ", ".join(f"{k}s {kinds[k]}" for k in KINDS if kinds[k])
    failed_html = (
        f'<a href="{INDEX}?status=failed" class=wb-plain>{badge("failed", f"{failed} failed")}</a>'
        if failed
        else badge("succeeded", "none failed")
    )
    parts = [
        f"<b id=wb-total>{len(runs)}</b> runs" + (f" ({esc(per_kind)})" if per_kind else ""),
        failed_html,
    ]
    if unreadable:
        parts.append(badge("warn", f"{unreadable} without a readable run.json"))
    board_html = (
        link(BOARD, "Status board")
        if board
        else '<span class="wb-muted">Status board: not written yet (<code>workbook status</code>)</span>'
    )
    written = f" · written {esc(_when(now))} UTC" if now else ""
    return (
        f'<header><h1>Run history</h1><p class="wb-sub">Every run archived under <code>runs/</code>, '
        f"newest first; times in UTC{written}.</p>"
        f'<p class="wb-summary">{" · ".join(parts)} · {board_html}</p></header>'
    )


def _published_section(published: list[PublishedReport], runs: list[ArchivedRun]) -> str:
    if not published:
        return (
            '<section id="published"><h2>Published reports</h2><p class="wb-muted">None yet: '
            "<code>workbook close --final</code> publishes the month-end report.</p></section>"
        )
    archived = {r.run_id: r for r in runs}
    rows = []
    for pub in published:
        status = badge("final", "published") if pub.status == "published" else badge(pub.status)
        run = archived.get(pub.report_run_id or "")
        run_html = (
            link(_href(run.folder, "notebook.html"), pub.report_run_id or "")
            if run
            else esc(pub.report_run_id or "–")
        )
        files = " ".join(link(_href(pub.folder, f), f) for f in pub.files)
        version = "–" if pub.version is None else f"v{pub.version}"
        note = f"<div class=wb-note>{esc(pub.note)}</div>" if pub.note else ""
        rows.append([esc(pub.report), esc(pub.period), esc(version), status + note,
                     esc(_when(pub.published_at)), f"<span class=wb-id>{run_html}</span>", files])  # fmt: skip
    heads = ["Report", "Period", "Version", "Status", "Published (UTC)", "Report run", "Files"]
    return f'<section id="published"><h2>Published reports</h2>{table(heads, rows, cls="wb-pub")}</section>'


def _published_runs(published: list[PublishedReport]) -> dict[str, str]:
    """Report run id -> "published v<N>" for the versions that stand published."""
    return {
        p.report_run_id: f"published v{p.version}" if p.version is not None else "published"
        for p in published
        if p.report_run_id and p.status == "published"
    }


CSS = """
.wb-summary{margin:0 0 8px}.wb-summary .wb-badge{margin:0 2px}
.wb-filters{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;margin:12px 0 6px;padding:8px 10px;
 background:#f6f8fa;border:1px solid var(--line);border-radius:6px}
.wb-filters label{font-weight:600}.wb-filters select,.wb-filters input{margin-left:4px;font:inherit}
.wb-filters[hidden]{display:none}
table.wb-runs{width:100%}
.wb-runs th,.wb-runs td{padding:4px 8px}.wb-runs td{font-size:13px}.wb-when,.wb-nowrap{white-space:nowrap}
.wb-kind{font-size:11px;color:var(--muted);border:1px solid var(--line);border-radius:4px;padding:0 4px}
.wb-id{color:var(--muted);font-size:11px;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 overflow-wrap:anywhere}
.wb-err{color:var(--bad);font-size:12px;max-width:46em}
.wb-note{color:var(--warn);font-size:12px;font-weight:600}
.wb-files{white-space:nowrap}.wb-files a{margin-right:6px}
#wb-none{margin:8px 0}a.wb-plain{text-decoration:none}.wb-pub td{white-space:nowrap}.wb-pub td:last-child{white-space:normal}
@media print{.wb-filters,#wb-none{display:none}.wb-runs td{font-size:10.5px}.wb-files{display:none}
 th,td{padding:2px 5px}}
"""

# Filters rows by data-pipeline, data-status and data-date; a query (?status=failed&pipeline=x) presets them.
SCRIPT = """
(function(){
var form=document.getElementById('wb-filters');if(!form)return;form.hidden=false;
var p=document.getElementById('f-pipeline'),s=document.getElementById('f-status'),
 from=document.getElementById('f-from'),to=document.getElementById('f-to'),
 count=document.getElementById('f-count'),none=document.getElementById('wb-none');
var rows=[].slice.call(document.querySelectorAll('#runs tbody tr[data-status]'));
var q=new URLSearchParams(location.search);
[[p,'pipeline'],[s,'status'],[from,'from'],[to,'to']].forEach(function(x){if(q.get(x[1]))x[0].value=q.get(x[1]);});
function apply(){var n=0;rows.forEach(function(r){var d=r.dataset;
 var ok=(!p.value||d.pipeline===p.value)&&(!s.value||d.status===s.value)
  &&(!from.value||(d.date&&d.date>=from.value))&&(!to.value||(d.date&&d.date<=to.value));
 r.hidden=!ok;if(ok)n++;});
 count.textContent='showing '+n+' of '+rows.length;if(none)none.hidden=n>0||!rows.length;}
[p,s,from,to].forEach(function(e){e.addEventListener('change',apply);e.addEventListener('input',apply);});
form.addEventListener('reset',function(){setTimeout(apply,0);});
apply();
})();
"""


def render(runs: list[ArchivedRun], published: list[PublishedReport], *, board: bool = False,
           now: dt.datetime | None = None) -> str:  # fmt: skip
    """The whole page (``board``: link the status board; ``now``: when it was written)."""
    body = (
        _header(runs, board, now)
        + _filters(runs)
        + '<p id="wb-none" class="wb-muted" hidden>No run matches these filters.</p>'
        + _runs_table(runs, _published_runs(published))
        + _published_section(published, runs)
    )
    return document("Run history", body, extra_css=CSS, script=SCRIPT)


# ---------------------------------------------------------------- writing


@contextmanager
def _serialised(runs_root: Path) -> Iterator[None]:
    """One refresh at a time across threads and processes (``flock`` on ``runs/.index.lock``)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still keeps the page whole
        yield
        return
    with open(runs_root / LOCK, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def links_board(runs_root: Path) -> bool:
    """Whether ``runs/index.html`` already links the status board (it is rebuilt once the board exists)."""
    try:
        return f'href="{BOARD}"' in (runs_root / INDEX).read_text(encoding="utf-8")
    except OSError:
        return False


def refresh(runs_root: Path | None = None, *, now: dt.datetime | None = None) -> Path:
    """Rebuild ``runs/index.html`` from the archive folders; returns its path.

    ``runs_root`` defaults to ``paths.runs_dir()``; ``now`` (shown as the time it was written) is
    left out when not given. Raises ``OSError`` when the page cannot be written.
    """
    root = Path(runs_root) if runs_root is not None else paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _serialised(root):
        runs = scan(root)
        page = render(runs, scan_published(root), board=(root / BOARD).is_file(), now=now)
        return paths.write_atomic(root / INDEX, page)

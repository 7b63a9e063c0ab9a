"""The status board as one self-contained HTML page, written atomically to ``runs/status/index.html``.

:func:`render` turns a :class:`~helpers.board.status.Board` into a page (``helpers.core.page``:
one style block, nothing fetched, every status a colour and a word, reloading itself every
:data:`REFRESH_SECONDS`); :func:`write` puts it in place with a temporary file and a rename, so a
browser or ``workbook serve`` never reads half a page; :func:`write_board` collects and writes.
Each section is a ``<section id="...">`` with an ``<h2>``: ``grid``, ``freshness``, ``oncall``,
``incidents``, ``close``, ``lineage``. Links are relative to the page (``../<pipeline>/...``), so
the folder can be opened from disk or served.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import Engine

from helpers.board import health
from helpers.board.health import Freshness, Node, format_age
from helpers.board.status import NO_RUN, Board, Cell, GridRow, collect, page_path
from helpers.core import config as cfgmod
from helpers.core import page, paths
from helpers.core.page import badge, esc, link

REFRESH_SECONDS = 60
HISTORY_HREF = "../index.html"  # the run history page, runs/index.html
# Grid cells are narrow: a succeeded run reads "ok" (its title says "succeeded" and when).
SHORT = {"succeeded": "ok", NO_RUN: "no run"}
SHOWN_REASONS = 3

CSS = """
.sb-head{display:flex;flex-wrap:wrap;gap:6px 10px;align-items:center;margin:8px 0 4px}
.sb-nav a{margin-right:12px}
.sb-grid td,.sb-grid th{padding:3px 2px;text-align:center;white-space:nowrap}
.sb-grid td.sb-pipe,.sb-grid th.sb-pipe{text-align:left;padding-right:8px;white-space:normal;width:230px}
.sb-grid th small,.sb-pipe small{display:block;font-weight:400;color:var(--muted);font-size:11px}
.sb-grid a{text-decoration:none}
.sb-grid .wb-badge{min-width:48px;padding:1px 5px;font-size:11px}
.sb-pipe .wb-badge{min-width:0}
.sb-fresh td:nth-child(-n+5){white-space:nowrap}
.sb-fresh td:last-child{color:var(--muted);font-size:12px}
.sb-note{color:var(--muted);font-size:12px;margin:2px 0 10px}
.sb-error{border-left:4px solid var(--bad);padding:4px 10px;background:#fff5f5}
.sb-cols{display:grid;grid-template-columns:1fr 1.5fr 1.3fr;gap:14px;align-items:start}
.sb-cols h3{font-size:14px;margin:0 0 6px}
.sb-node{border:1px solid var(--line);border-left:5px solid var(--ok);border-radius:6px;padding:5px 8px;
 margin:0 0 6px;background:#fff}
.sb-node.sb-risk{border-left-color:var(--warn);background:#fffbea}
.sb-node.sb-bad{border-left-color:var(--bad);background:#fff5f5}
.sb-node ul{margin:3px 0 0;padding-left:16px;font-size:12px}
.sb-node .sb-in{color:var(--muted);font-size:12px}
.sb-sources{display:flex;flex-wrap:wrap;gap:4px}
.sb-sources .sb-node{margin:0;padding:3px 6px;font-size:12px}
.sb-who{font-size:15px;margin:4px 0}
@media (max-width:900px){.sb-cols{grid-template-columns:1fr}}
"""


def _time(ts: dt.datetime | None) -> str:
    return f"{ts:%Y-%m-%d %H:%M} UTC" if ts else ""


def _section(board: Board, sid: str, title: str, body: str, *, note: str = "") -> str:
    error = board.errors.get(sid)
    if error:
        body = f'<p class="sb-error">{badge("error")} this section could not be read: {esc(error)}</p>' + body
    sub = f'<p class="sb-note">{note}</p>' if note else ""
    return f'<section id="{sid}"><h2>{esc(title)}</h2>{sub}{body}</section>'


def _clip(text: str, limit: int = 110) -> str:
    """``text`` on one line, at most ``limit`` characters (cut at a space, with an ellipsis)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def _reasons(reasons: Sequence[str]) -> str:
    shown = [f"<li>{esc(r)}</li>" for r in reasons[:SHOWN_REASONS]]
    if len(reasons) > SHOWN_REASONS:
        shown.append(f"<li>and {len(reasons) - SHOWN_REASONS} more</li>")
    return f"<ul>{''.join(shown)}</ul>" if shown else ""


# ---------------------------------------------------------------- grid


def _cell_html(c: Cell) -> str:
    status = "none" if c.status == NO_RUN else c.status
    tip = (
        NO_RUN
        if c.status == NO_RUN
        else f"{c.status}: {c.detail}" + (f" (run {c.run_id})" if c.run_id else "")
    )
    mark = badge(status, SHORT.get(c.status, c.status), title=tip)
    body = f'<a href="{esc(c.href)}" title="{esc(tip)}">{mark}</a>' if c.href else mark
    return (f'<td class="sb-cell" data-pipeline="{esc(c.pipeline)}" data-partition="{esc(c.partition)}" '
            f'data-status="{esc(c.status)}" data-run-id="{esc(c.run_id)}">{body}</td>')  # fmt: skip


def _label(partition: str) -> str:
    if len(partition) == 7:
        return f"{dt.date.fromisoformat(partition + '-01'):%b}<small>{partition[:4]}</small>"
    day = dt.date.fromisoformat(partition)
    return f"{day:%a}<small>{day:%m-%d}</small>"


def _newest(c: Cell | None) -> str:
    if c is None:
        return "newest run: none"
    mark = badge("none" if c.status == NO_RUN else c.status, f"{c.partition} {SHORT.get(c.status, c.status)}",
                 title=c.detail)  # fmt: skip
    return "newest run: " + (f'<a href="{esc(c.href)}">{mark}</a>' if c.href else mark)


def _grid_table(rows: Sequence[GridRow], labels: Sequence[str], what: str) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{_label(p)}</th>" for p in labels)
    body = [
        f'<tr><td class="sb-pipe"><b>{esc(r.pipeline)}</b><small>{esc(r.title)}</small><small>{_newest(r.newest)}</small></td>'
        + "".join(_cell_html(c) for c in r.cells)
        + "</tr>"
        for r in rows
    ]
    return (f'<table class="sb-grid" data-partitions="{esc(what)}"><thead><tr><th class="sb-pipe">{esc(what)}</th>'
            f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")  # fmt: skip


def render_grid(board: Board) -> str:
    grid = board.grid
    if grid is None:
        return _section(board, "grid", "Runs", "")
    daily = [r for r in grid.rows if r.partition == "day"]
    monthly = [r for r in grid.rows if r.partition == "month"]
    note = ("The latest run of each partition, linked to its archived notebook; <b>ok</b> = succeeded. "
            "Hover a cell for when it finished or why it failed.")  # fmt: skip
    body = _grid_table(monthly, grid.months, "monthly pipelines") + _grid_table(
        daily, grid.days, "daily pipelines"
    )
    return _section(board, "grid", "Runs", body, note=note)


# ---------------------------------------------------------------- freshness


def _freshness_table(rows: Sequence[Freshness], as_of: dt.datetime, what: str) -> str:
    ordered = sorted(rows, key=lambda f: -health.BAND_RANK[f.band])  # worst first, stable
    body = []
    for f in ordered:
        who = ", ".join(f.tables) if f.kind == "mart" else ", ".join(f.readers)
        body.append([f"<b>{esc(f.name)}</b>", badge(f.band), esc(f.updated(as_of).removeprefix("updated ")),
                     f"{f.warn_hours:g} h / {f.critical_hours:g} h", esc(f.cadence),
                     f'<span class="wb-muted">{esc(who)}</span>', esc(f.detail())])  # fmt: skip
    headers = [what, "band", "updated", "late / breached after", "cadence",
               "tables" if what == "mart" else "read by", "detail"]  # fmt: skip
    return page.table(headers, body, cls="sb-fresh")


def render_freshness(board: Board) -> str:
    marts = [f for f in board.freshness if f.kind == "mart"]
    sources = [f for f in board.freshness if f.kind == "source"]
    body = _freshness_table(marts, board.as_of, "mart") + _freshness_table(sources, board.as_of, "source")
    note = ("Each pipeline's marts (latest write) and each landing source (latest arrival) against its "
            "pipeline's SLA bands; a monthly source is judged on its latest due month. Worst first.")  # fmt: skip
    return _section(board, "freshness", "Freshness", body if board.freshness else "", note=note)


# ---------------------------------------------------------------- on call


def render_oncall(board: Board) -> str:
    o = board.oncall
    if o is None:
        return _section(board, "oncall", "On call", "")
    until = format_age(o.handover - board.as_of)
    swapped = f" (swapped with {esc(o.swapped_from)})" if o.swapped_from else ""
    lines = [
        f'<p class="sb-who">Now: <b>{esc(o.engineer)}</b> ({esc(o.name)}){swapped}, since {esc(o.local["since"])}</p>',
        f'<p class="sb-who">Next: <b>{esc(o.next_engineer)}</b> ({esc(o.next_name)}), hand-over '
        f'{esc(o.local["handover"])} (in {esc(until)}), until {esc(o.local["next_until"])}</p>',
    ]  # fmt: skip
    if o.holidays:
        lines.append(f"<p>{badge('warn', 'holiday week')} {esc(', '.join(o.holidays))}: the backups below "
                     "stand in for their pipelines (never the one paged first).</p>")  # fmt: skip
    if o.next_holidays:
        lines.append(f"<p>{badge('info', 'next: holiday week')} {esc(', '.join(o.next_holidays))}</p>")
    if o.month_end:
        lines.append(f"<p>{badge('warn', 'month-end')} everyone on deck: {esc(', '.join(o.on_deck))}</p>")
    rows = [
        [f"<b>{esc(r.pipeline)}</b>", esc(r.first),
         (badge("warn", f"holiday backup {r.backup}") if r.holiday_backup else esc(r.backup)), esc(r.reason)]
        for r in o.responders
    ]  # fmt: skip
    table = page.table(["pipeline", "paged first", "backup", "why that backup"], rows)
    return _section(board, "oncall", "On call", "".join(lines) + table)


# ---------------------------------------------------------------- incidents


def render_incidents(board: Board) -> str:
    if not board.incidents:
        body = "" if "incidents" in board.errors else f"<p>{badge('ok', 'none open')} no open incidents</p>"
        return _section(board, "incidents", "Open incidents", body)
    rows = []
    for i in board.incidents:
        band = i.deadline_band(board.as_of)
        deadline = f"{esc(_time(i.fix_deadline))}<br>{badge(band, i.deadline_text(board.as_of))}"
        runbook = esc(i.runbook_name or "")
        if i.diagnosis:
            said = f"diagnosis: {_clip(i.diagnosis)}"
            shown = f'<a href="{esc(i.diagnosis_href)}">{esc(said)}</a>' if i.diagnosis_href else esc(said)
            runbook += f'<br><small class="wb-muted" title="{esc(i.diagnosis)}">{shown}</small>'
        who = esc(i.owner) + (f"<br><small>paged first: {esc(i.responder)}</small>" if i.responder else "")
        state = badge("info" if i.state == "acknowledged" else "warn", i.state,
                      title=f"acknowledged by {i.acknowledged_by}" if i.acknowledged_by else None)  # fmt: skip
        severity = badge("warn" if i.severity == "warning" else i.severity, i.severity)
        rows.append([str(i.incident_id), severity, state, f"<b>{esc(i.pipeline)}</b><br>{esc(i.cause)}",
                     who, esc(format_age(board.as_of - i.opened_at)), deadline, runbook,
                     esc(", ".join(i.figures_at_risk) or "no investor figures")])  # fmt: skip
    headers = ["#", "severity", "state", "cause", "owner", "age", "fix deadline", "runbook", "reaches"]
    note = "Run a runbook with <code>workbook runbook --alert ID</code>; <code>workbook incidents</code> lists the alerts."
    return _section(board, "incidents", "Open incidents", page.table(headers, rows, numeric=(0,)), note=note)


# ---------------------------------------------------------------- close


def render_close(board: Board) -> str:
    rows = []
    for c in board.close:
        state = {"published": "final", "final": "final", "draft": "provisional"}.get(c.state, "pending")
        text = f"published v{c.published_version}" if c.state == "published" else c.state
        signed = f"{len(c.signed)} of {len(c.signed) + len(c.missing)}"
        signed += f"; missing {', '.join(c.missing)}" if c.missing else ""
        blockers = "" if c.state == "published" else f"{c.blockers}"
        if c.first_blocker:
            blockers += f'<br><small class="wb-muted">first: {esc(c.first_blocker)}</small>'
        checks = f"{c.checks_passed} of {c.checks_total}" if c.checks_total else ""
        band = "ok" if c.state == "published" or c.business_days_left > 1 else (
            "late" if c.business_days_left >= 0 else "breached")  # fmt: skip
        links = " ".join(x for x in (link(c.report_href, "latest report") if c.report_href else "",
                                     link(c.published_href, "published report") if c.published_href else "") if x)  # fmt: skip
        rows.append([f"<b>{esc(c.period)}</b><br><small>{esc(c.role)}</small>", badge(state, text),
                     badge(band, c.deadline_text()), blockers, checks, esc(signed), links])  # fmt: skip
    headers = ["month", "state", "report deadline", "blockers", "checks passing", "sign-offs", "reports"]
    note = "<code>workbook close --month M</code> prints the checklist; <code>--final</code> publishes once nothing blocks it."
    return _section(board, "close", "Month-end close", page.table(headers, rows) if rows else "", note=note)


# ---------------------------------------------------------------- lineage


def _node(n: Node) -> str:
    cls = (
        ""
        if n.state in (health.OK, health.FRESH)
        else (" sb-bad" if n.state == health.BREACHED else " sb-risk")
    )
    mark = badge(n.state)
    if n.kind == "source":
        return f'<div class="sb-node{cls}" data-node="{esc(n.name)}" data-state="{esc(n.state)}">{esc(n.name)} {mark}</div>'
    inputs = f'<div class="sb-in">reads {esc(", ".join(n.inputs))}</div>' if n.inputs else ""
    title, sub = (n.label.split(": ", 1) + [""])[:2] if n.kind == "figures" else (n.name, n.label)
    return (f'<div class="sb-node{cls}" data-node="{esc(n.name)}" data-state="{esc(n.state)}"><b>{esc(title)}</b> '
            f"{mark}<div>{esc(sub)}</div>{inputs}{_reasons(n.reasons())}</div>")  # fmt: skip


def render_lineage(board: Board) -> str:
    lin = board.lineage
    if lin is None:
        return _section(board, "lineage", "Lineage", "")
    body = (
        '<div class="sb-cols">'
        f'<div><h3>Sources &rarr;</h3><div class="sb-sources">{"".join(_node(n) for n in lin.sources)}</div></div>'
        f"<div><h3>Pipelines &rarr;</h3>{''.join(_node(n) for n in lin.pipelines)}</div>"
        f"<div><h3>Investor figures</h3>{''.join(_node(n) for n in lin.figures)}</div>"
        "</div>"
    )
    note = ("A late or missing source, stale marts, a failed or blocked run or an open incident puts its "
            "pipeline and everything downstream of it (<code>depends_on</code> and <code>reads</code>) "
            "at risk; each says why.")  # fmt: skip
    return _section(board, "lineage", "Lineage: sources, pipelines, investor figures", body, note=note)


# ---------------------------------------------------------------- the page


def render(board: Board) -> str:
    """The whole page (see the module doc)."""
    head = "".join(badge(s, t) for s, t in board.headline())
    nav = " ".join(
        f'<a href="#{s}">{s}</a>' for s in ("grid", "freshness", "oncall", "incidents", "close", "lineage")
    )
    header = (
        "<header><h1>Status board</h1>"
        f'<p class="wb-sub">As of {esc(_time(board.as_of))} &middot; made {esc(_time(board.generated_at))} '
        f"&middot; reloads every {REFRESH_SECONDS} s &middot; {link(HISTORY_HREF, 'Run history')}</p>"
        f'<div class="sb-head" id="headline">{head}</div><p class="sb-nav">{nav}</p></header>'
    )  # fmt: skip
    body = header + "".join(
        (render_grid(board), render_freshness(board), render_oncall(board), render_incidents(board),
         render_close(board), render_lineage(board))
    )  # fmt: skip
    return page.document(
        f"Status board, as of {board.as_of:%Y-%m-%d %H:%M} UTC",
        body,
        refresh_seconds=REFRESH_SECONDS,
        extra_css=CSS,
    )


def write(board: Board, path: Path | None = None) -> Path:
    """Write the page atomically (a temporary file beside it, then a rename); its path."""
    path = path or page_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return paths.write_atomic(path, render(board))


def write_board(
    as_of: dt.datetime,
    *,
    now: dt.datetime,
    config: cfgmod.WorkbookConfig | None = None,
    engine: Engine | None = None,
    runs_root: Path | None = None,
) -> tuple[Board, Path]:
    """Collect the board at ``as_of`` and write its page under ``runs_root``; the board and the page's path."""
    from helpers.runs import history

    board = collect(as_of, now=now, config=config, engine=engine, runs_root=runs_root)
    page = write(board, page_path(runs_root))
    if not (page.parent.parent / history.INDEX).is_file() or not history.links_board(page.parent.parent):
        history.refresh(page.parent.parent, now=now)  # the run history links the board once it exists
    return board, page

"""`workbook status` and `workbook serve`: the status board in the terminal, as a page, and served.

``status`` prints every section of the board (``helpers.board``) one after another, fitting 100
columns (``--json``: one object with every section) and writes the page
``$WORKBOOK_HOME/runs/status/index.html`` (``--no-html`` skips it). ``serve`` serves ``runs/`` on
127.0.0.1 with the standard library's ``http.server`` (another address only with ``--public``),
writes the board once and prints its URL; Ctrl-C (or SIGTERM) stops it with exit code 0.
:func:`refresh_status_page` is what ``workbook tick`` and ``workbook close`` call at their end.
The wall clock is read once per command; everything below gets ``as_of`` and ``now``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import ipaddress
import socket
import sys
import textwrap
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from helpers.cli import console
from helpers.cli.common import as_of_arg, interrupt_on_sigterm, wall_clock
from helpers.cli.console import LAST, NEVER, Column
from helpers.core import paths
from helpers.core.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from helpers.board.status import Board

WIDTH = 100  # the board's tables fit 100 columns, whatever the terminal
DEFAULT_PORT = 8787
STRIP = {"succeeded": "s", "failed": "F", "blocked": "B", "running": "R", "queued": "Q", "skipped": "k"}
LEGEND = "s succeeded, F failed, B blocked, R running, Q queued, k skipped, . no run (oldest first)"
# Never served, even from runs/: the warehouse file, scratch copies, partial (hidden) archives.
PRIVATE_SUFFIXES = (".sqlite", ".sqlite-journal", ".sqlite-wal", ".sqlite-shm", ".db")


def refresh_status_page(as_of: dt.datetime, now: dt.datetime) -> Path | None:
    """Rewrite the status board after ``tick`` or ``close``; a failure is a warning, not theirs."""
    try:
        from helpers.board import html

        return html.write_board(as_of, now=now)[1]
    except Exception as e:  # noqa: BLE001 - the board must never fail the command that refreshes it
        sys.stderr.write(f"warning: status board not written: {type(e).__name__}: {e}\n")
        return None


# ---------------------------------------------------------------- workbook status


def _table(rows: list[dict[str, Any]], columns: tuple[Column, ...], title: str, empty: str) -> None:
    print()
    if not rows:  # the section still has its title
        print(console.ellipsize(f"{title}: {empty}", WIDTH))
        return
    console.print_table(rows, columns, title=title, width=min(console.output_width(), WIDTH))


GRID_COLUMNS = (
    Column("pipeline", shrink=NEVER),
    Column("kind", shrink=NEVER),
    Column("recent", shrink=NEVER),
    Column("failed", shrink=NEVER),
    Column("newest", "newest partition", shrink=LAST, min_width=20),
)


def print_grid(board: Board) -> None:
    if board.grid is None:
        return
    g = board.grid
    rows = [
        {
            "pipeline": r.pipeline,
            "kind": "monthly" if r.partition == "month" else "daily",
            "recent": "".join(STRIP.get(c.status, ".") for c in r.cells),
            "failed": sum(c.status == "failed" for c in r.cells) or "",
            "newest": f"{r.newest.partition} {r.newest.status}" if r.newest else "none",
        }
        for r in g.rows
    ]
    title = f"Runs: months {g.months[0]}..{g.months[-1]}, days {g.days[0]}..{g.days[-1]}"
    _table(rows, GRID_COLUMNS, title, "no pipelines configured")
    print(LEGEND)
    for c in board.failed_cells():
        print("  " + console.ellipsize(f"failed: {c.pipeline} {c.partition}: {c.detail}", WIDTH - 2))


FRESH_COLUMNS = (
    Column("name", shrink=LAST, min_width=18),
    Column("kind", shrink=NEVER),
    Column("band", shrink=NEVER),
    Column("updated", shrink=NEVER),
    Column("sla", "late/breached", shrink=NEVER),
    Column("detail", min_width=20),
)


def print_freshness(board: Board, *, everything: bool) -> None:
    shown = [f for f in board.freshness if everything or f.band != "fresh"]
    rows = [
        {"name": f.name, "kind": f.kind, "band": f.band, "updated": f.updated(board.as_of).removeprefix("updated "),
         "sla": f"{f.warn_hours:g}/{f.critical_hours:g} h", "detail": f.detail()}
        for f in sorted(shown, key=lambda f: f.band == "fresh")
    ]  # fmt: skip
    fresh = sum(f.band == "fresh" for f in board.freshness)
    title = f"Freshness: {fresh} of {len(board.freshness)} fresh" + (
        "" if everything else " (--all lists them)"
    )
    _table(rows, FRESH_COLUMNS, title, "every mart and source is fresh")


BACKUP_COLUMNS = (Column("pipeline", shrink=NEVER), Column("first", "paged first", shrink=NEVER),
                  Column("backup", shrink=NEVER), Column("reason", "why that backup"))  # fmt: skip


def print_oncall(board: Board) -> None:
    o = board.oncall
    if o is None:
        return
    until = console.format_age(o.handover - board.as_of)
    swapped = f", swapped with {o.swapped_from}" if o.swapped_from else ""
    print(f"\nOn call now: {o.engineer} ({o.name}{swapped}) since {o.local['since']}")
    print(f"  next: {o.next_engineer} ({o.next_name}) from {o.local['handover']} (in {until})")
    if o.next_holidays:
        print(f"  next week is a holiday week: {', '.join(o.next_holidays)}")
    if o.month_end:
        print(f"  month-end: everyone on deck ({', '.join(o.on_deck)})")
    if o.holidays:
        print(f"  holiday week: {', '.join(o.holidays)}; these backups stand in (never the one paged first)")
        rows = [r.as_json() for r in o.responders]
        _table(rows, BACKUP_COLUMNS, "Holiday-week backups", "no pipelines")


INCIDENT_COLUMNS = (
    Column("incident_id", "#", shrink=NEVER),
    Column("severity", shrink=NEVER),
    Column("pipeline", shrink=LAST, min_width=12),
    Column("owner", shrink=NEVER),
    Column("state", shrink=NEVER, drop=1),
    Column("age", shrink=NEVER),
    Column("deadline", "fix deadline", shrink=NEVER),
    Column("runbook_name", "runbook", shrink=LAST, min_width=20),
)


def print_incidents(board: Board) -> None:
    rows = [i.as_json(board.as_of) for i in board.incidents]
    _table(rows, INCIDENT_COLUMNS, "Open incidents", "no open incidents")
    for i in board.incidents:
        reaches = ", ".join(i.figures_at_risk) or "no investor figures"
        print("  " + console.ellipsize(f"#{i.incident_id} {i.cause}; reaches {reaches}", WIDTH - 2))


CLOSE_COLUMNS = (
    Column("period", "month", shrink=NEVER),
    Column("state", shrink=NEVER),
    Column("deadline_text", "report deadline", shrink=LAST, min_width=20),
    Column("blockers", shrink=NEVER),
    Column("signoffs", "sign-offs", min_width=12),
)


def print_close(board: Board) -> None:
    rows = []
    for c in board.close:
        state = f"published v{c.published_version}" if c.state == "published" else c.state
        missing = f"; missing {', '.join(c.missing)}" if c.missing else ""
        rows.append({"period": c.period, "state": state, "deadline_text": c.deadline_text(),
                     "blockers": "" if c.state == "published" else c.blockers,
                     "signoffs": f"{len(c.signed)} of {len(c.signed) + len(c.missing)}{missing}"})  # fmt: skip
    _table(rows, CLOSE_COLUMNS, "Month-end close", "no close in progress")
    first = next((c.first_blocker for c in board.close if c.first_blocker), None)
    if first:
        print("  " + console.ellipsize(f"first blocker: {first}", WIDTH - 2))


RISK_COLUMNS = (
    Column("name", shrink=LAST, min_width=18),
    Column("state", shrink=NEVER),
    Column("why", min_width=30),
)


def print_lineage(board: Board) -> None:
    lin = board.lineage
    if lin is None:
        return
    rows = []
    for n in (*lin.pipelines, *lin.figures):
        if n.state == "at risk":
            reasons = n.reasons()
            more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
            rows.append({"name": n.label.split(":")[0] if n.kind == "figures" else n.name, "state": n.state,
                         "why": reasons[0] + more})  # fmt: skip
    _table(rows, RISK_COLUMNS, "Lineage: at risk", "nothing at risk")


def cmd_status(args: argparse.Namespace) -> int:
    """``workbook status``: the board at ``--as-of`` in the terminal (or ``--json``), and its page."""
    from helpers.board import html, status

    now = wall_clock()
    as_of = as_of_arg(args.as_of) or now
    board = status.collect(as_of, now=now)
    page = None if args.no_html else html.write(board, status.page_path())
    if args.json:
        console.print_json({**board.as_json(), "page": str(page) if page else None})
        return EXIT_OK
    print(f"Status as of {board.as_of:%Y-%m-%d %H:%M}Z (made {board.generated_at:%Y-%m-%d %H:%M}Z)")
    print(textwrap.fill(" | ".join(text for _s, text in board.headline()), WIDTH, subsequent_indent="  "))
    for section, error in board.errors.items():
        console.error(f"status board: {section} could not be read: {error}")
    print_grid(board)
    print_freshness(board, everything=args.all)
    print_oncall(board)
    print_incidents(board)
    print_close(board)
    print_lineage(board)
    print()
    print(f"status board: {page}" if page else "status board: not written (--no-html)")
    return EXIT_OK


# ---------------------------------------------------------------- workbook serve


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RunsHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` on ``runs/``: ``/`` is the status board; hidden paths, scratch
    warehouses and the warehouse file are never served (404)."""

    def send_head(self) -> Any:
        path = unquote(urlsplit(self.path).path)
        if path in ("", "/"):
            self.send_response(302)
            self.send_header("Location", "/status/index.html")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        parts = [p for p in path.split("/") if p]
        if (
            any(p.startswith(".") for p in parts)
            or parts[:1] == ["scratch"]
            or path.endswith(PRIVATE_SUFFIXES)
        ):
            self.send_error(404, "not served")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _server(bind: str, port: int, root: Path) -> ThreadingHTTPServer:
    handler = functools.partial(RunsHandler, directory=str(root))
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    server_class = type(
        "RunsServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True}
    )
    try:
        return server_class((bind, port), handler)
    except OSError as e:
        raise UsageError(f"--bind {bind} --port {port}: cannot listen there: {e.strerror or e}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """``workbook serve``: ``runs/`` over HTTP until Ctrl-C; exit 0."""
    if not is_loopback(args.bind) and not args.public:
        raise UsageError(
            f"--bind {args.bind}: not a loopback address; the run archive would be reachable from the "
            "network. Add --public to allow it"
        )
    root = paths.runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    now = wall_clock()
    page = refresh_status_page(as_of_arg(args.as_of) or now, now)
    server = _server(args.bind, args.port, root)
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    base = f"http://{host}:{server.server_address[1]}"
    print(f"serving {root} at {base}/ (Ctrl-C stops)", flush=True)
    print(
        f"status board: {base}/status/index.html" + ("" if page else " (not written: see the warning)"),
        flush=True,
    )
    try:
        with interrupt_on_sigterm():
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", flush=True)
    return EXIT_OK


# ---------------------------------------------------------------- parser


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``status`` and ``serve`` to the ``workbook`` parser."""
    p = sub.add_parser(
        "status",
        help="the status board: runs, freshness, on call, incidents, the close, lineage (and its page)",
        description="Every section of the status board, one after another (100 columns), and the page "
        "$WORKBOOK_HOME/runs/status/index.html (reloads itself; `workbook tick` and `close` rewrite it). "
        "Reads only: the monitors are evaluated, not recorded. Exit 0.",
    )
    p.add_argument("--as-of", help="the board's time (ISO, UTC); default: now")
    p.add_argument("--all", action="store_true", help="list fresh marts and sources too")
    p.add_argument("--no-html", action="store_true", help="do not write the page")
    p.add_argument("--json", action="store_true", help="one JSON object with every section")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "serve",
        help="serve runs/ (the status board, the run history, every archive) on 127.0.0.1",
        description="Serve $WORKBOOK_HOME/runs/ over HTTP with Python's http.server, write the status "
        "board once and print its URL. Ctrl-C stops it (exit 0).",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)"
    )
    p.add_argument("--bind", default="127.0.0.1", help="address (default 127.0.0.1; others need --public)")
    p.add_argument(
        "--public", action="store_true", help="allow a non-loopback --bind (the archive is then public)"
    )
    p.add_argument("--as-of", help="the board's time (ISO, UTC); default: now")
    p.set_defaults(func=cmd_serve)

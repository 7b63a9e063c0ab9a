"""Output for people and programs: readable tables, or JSON with ``--json``."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

STATUS_STYLE = {
    "succeeded": "green",
    "passed": "green",
    "failed": "bold red",
    "critical": "bold red",
    "blocked": "yellow",
    "warning": "yellow",
    "running": "cyan",
    "queued": "cyan",
    "skipped": "dim",
}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


def print_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    stream: Any = None,
    empty: str = "nothing to show",
) -> None:
    rows = list(rows)
    console = Console(
        file=stream or sys.stdout, soft_wrap=False, width=200 if not sys.stdout.isatty() else None
    )
    if not rows:
        console.print(f"[dim]{empty}[/dim]")
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c.replace("_", " "), overflow="fold")
    for r in rows:
        table.add_row(*(_styled(c, r.get(c)) for c in columns))
    console.print(table)


def _styled(column: str, v: Any) -> str:
    text = _cell(v).replace("[", r"\[")
    style = (
        STATUS_STYLE.get(text)
        if column in ("status", "severity", "validation", "validation_status")
        else None
    )
    return f"[{style}]{text}[/{style}]" if style else text


def print_json(value: Any, stream: Any = None) -> None:
    json.dump(value, stream or sys.stdout, indent=2, default=_json_default, sort_keys=False)
    (stream or sys.stdout).write("\n")


def _json_default(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v)


def error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")

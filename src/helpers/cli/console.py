"""Output for people and programs: tables that fit the terminal, or JSON with ``--json``.

Tables fit the width of the output: the terminal's, ``COLUMNS`` when it is set, else
:data:`PIPE_WIDTH` when the output is not a terminal. Each row stays on one line: the widest
columns shrink first, their cells cut with an ellipsis at a word boundary where there is one; a
column that still does not fit is left out and a note under the table says which and that
``--wide`` shows everything. Ages and durations have one format, :func:`format_age`; ids sort as
numbers (:func:`id_key`). Live displays and progress bars only draw on a terminal
(:func:`is_terminal`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from helpers.core.timeutil import format_age  # noqa: F401  (re-exported: the CLI formats ages from here)

# Width of a table written to a pipe or a file when COLUMNS is not set.
PIPE_WIDTH = 100
# Characters between two table columns (SIMPLE_HEAD box without its edge, one space of padding).
GAP = 2
# A shrinking column keeps at least this many characters (or its header's, or all of its text).
MIN_WIDTH = 10
# The least a shrinking column gets when the terminal is too narrow for every column's minimum.
SQUEEZED = 4
# A cut prefers the last word boundary in the last this-fraction of the room.
WORD_CUT_SLACK = 0.4
# Where text may be cut: whitespace first, then the separators of identifiers and paths.
_SPACES = " \t"
_SEPARATORS = "/_.-,;:"

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
STYLED_COLUMNS = ("status", "severity", "validation", "validation_status")


# How a column gives way (``Column.shrink``): never, only once the text columns are at their least
# (names and ids), or first (free text: summaries, details, errors).
NEVER, LAST, FIRST = 0, 1, 2


@dataclass(frozen=True)
class Column:
    """A table column: the row key, its header, and how it gives way when the table is too wide.

    ``shrink``: :data:`FIRST` (free text), :data:`LAST` (names, cut only once the free text is at
    its least) or :data:`NEVER`; a shrinking column is cut with an ellipsis down to ``min_width``.
    ``drop``: 0 never left out; higher numbers are left out first when shrinking is not enough
    (``--wide`` shows them all).
    """

    key: str
    header: str | None = None
    shrink: int = FIRST
    drop: int = 0
    min_width: int | None = None  # the least a shrinking column gets; default MIN_WIDTH

    def floor(self, natural: int, *, level: int = LAST) -> int:
        """The narrowest this column may be at shrink ``level``, given the width its content needs."""
        if self.shrink == NEVER or self.shrink < level:
            return natural
        return min(natural, max(self.min_width or MIN_WIDTH, len(self.title)))

    @property
    def title(self) -> str:
        return self.header if self.header is not None else self.key.replace("_", " ")


# ---------------------------------------------------------------- text


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default stdout) is an interactive terminal."""
    stream = stream if stream is not None else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


def output_width(stream: Any = None) -> int:
    """The width tables fit: ``COLUMNS``, else the terminal's, else :data:`PIPE_WIDTH`."""
    stream = stream if stream is not None else sys.stdout
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if is_terminal(stream):
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            pass
    return PIPE_WIDTH


def ellipsis_for(stream: Any = None) -> str:
    """``…`` when the stream's encoding can write it, else ``...``."""
    encoding = getattr(stream if stream is not None else sys.stdout, "encoding", None) or "utf-8"
    try:
        "…".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "..."
    return "…"


def ellipsize(text: str, width: int, *, mark: str = "…") -> str:
    """``text`` on one line in at most ``width`` characters.

    A longer text is cut at the last word boundary that keeps most of the room (whitespace first,
    else a separator such as ``/`` or ``_``), and ends with ``mark``; only a text without a boundary
    near the cut is cut inside a word.
    """
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    if width <= len(mark):
        return mark[:width]
    room = width - len(mark)
    floor = int(room * (1 - WORD_CUT_SLACK))
    head = text[: room + 1]  # one more: a space right after the room is a boundary too
    for boundaries in (_SPACES, _SEPARATORS):
        cut = max(head.rfind(ch) for ch in boundaries)
        if cut >= max(floor, 1):
            keep = head[:cut] if boundaries == _SPACES else head[: min(cut + 1, room)]
            return keep.rstrip(" ,;:") + mark
    return text[:room] + mark


def format_left(delta: dt.timedelta) -> str:
    """Time left to a deadline: ``1 d 2 h``, or ``3 h 5 min overdue`` once it passed."""
    if delta.total_seconds() < 0:
        return f"{format_age(-delta)} overdue"
    return format_age(delta)


def id_key(value: Any) -> tuple[int, int | float, str]:
    """Sort key for ids: numbers by value (``9`` before ``10``), then anything else as text."""
    text = str(value)
    return (0, int(text), "") if text.isdigit() else (1, float("inf"), text)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


# ---------------------------------------------------------------- tables


def fit_columns(
    natural: Sequence[int], floors: Sequence[int], width: int, *, gap: int = GAP
) -> list[int] | None:
    """Column widths that fit ``width``: the widest shrink first, none below its floor.

    ``natural`` is what each column needs, ``floors`` the least it may get (its natural width for a
    column that may not shrink). Returns ``None`` when even the floors do not fit.
    """
    room = width - gap * max(len(natural) - 1, 0)
    if sum(natural) <= room:
        return list(natural)
    if sum(min(n, f) for n, f in zip(natural, floors, strict=True)) > room:
        return None
    lo, hi = 0, max(natural)  # the largest cap with sum(min(natural, max(cap, floor))) <= room
    while lo < hi:
        cap = (lo + hi + 1) // 2
        if sum(min(n, max(cap, f)) for n, f in zip(natural, floors, strict=True)) <= room:
            lo = cap
        else:
            hi = cap - 1
    widths = [min(n, max(lo, f)) for n, f in zip(natural, floors, strict=True)]
    spare = room - sum(widths)  # hand out what the integer cap left, widest-need first
    for i in sorted(range(len(widths)), key=lambda i: natural[i] - widths[i], reverse=True):
        if spare <= 0:
            break
        extra = min(spare, natural[i] - widths[i])
        widths[i] += extra
        spare -= extra
    return widths


def layout(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], width: int
) -> tuple[list[Column], list[int]]:
    """The columns shown and their widths, fitting ``width``.

    In order, until the table fits: free text shrinks to its least; columns are left out by
    ``drop`` (highest first); names shrink to their least; every shrinking column is squeezed.
    """
    shown = list(columns)
    while True:
        natural = [
            max([len(c.title)] + [len(" ".join(_cell(r.get(c.key)).split())) for r in rows]) for c in shown
        ]
        widths = fit_columns(
            natural, [c.floor(n, level=FIRST) for c, n in zip(shown, natural, strict=True)], width
        )
        droppable = [c for c in shown if c.drop > 0]
        if widths is not None:
            return shown, widths
        if droppable:
            shown.remove(max(droppable, key=lambda c: (c.drop, shown.index(c))))
            continue
        floors = [c.floor(n, level=LAST) for c, n in zip(shown, natural, strict=True)]
        squeezed = [n if c.shrink == NEVER else min(n, SQUEEZED) for c, n in zip(shown, natural, strict=True)]
        for candidate in (floors, squeezed):
            widths = fit_columns(natural, candidate, width)
            if widths is not None:
                return shown, widths
        return shown, squeezed


def _as_columns(columns: Sequence[str | Column]) -> list[Column]:
    return [c if isinstance(c, Column) else Column(c) for c in columns]


def print_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str | Column],
    *,
    title: str | None = None,
    stream: Any = None,
    empty: str = "nothing to show",
    wide: bool = False,
    width: int | None = None,
) -> None:
    """Print ``rows`` as a table of ``columns``, one line per row, fitting the output's width.

    ``wide``: every column, every character (rows may then be wider than the terminal). Columns
    given as plain names (not :class:`Column`) keep the folding layout: long cells wrap inside
    their column, 200 characters wide into a pipe.
    """
    rows = list(rows)
    out = stream or sys.stdout
    if not any(isinstance(c, Column) for c in columns):
        _print_folded(rows, [str(c) for c in columns], title=title, stream=out, empty=empty)
        return
    cols = _as_columns(columns)
    width = width or output_width(out)
    if not rows:
        Console(file=out, width=width, soft_wrap=True).print(Text(empty, style="dim"))
        return
    if wide:
        shown, widths = cols, [0] * len(cols)
        natural = [max([len(c.title)] + [len(_cell(r.get(c.key))) for r in rows]) for c in cols]
        width = max(width, sum(natural) + GAP * (len(cols) - 1))
    else:
        shown, widths = layout(rows, cols, width)
    mark = ellipsis_for(out)
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),  # with the box's blank divider: GAP characters between columns
        header_style="bold",
    )
    for c, w in zip(shown, widths, strict=True):
        if wide:
            table.add_column(c.title, overflow="fold")
        else:
            table.add_column(c.title, no_wrap=True, overflow="ellipsis", min_width=w, max_width=w)
    for r in rows:
        cells = []
        for c, w in zip(shown, widths, strict=True):
            text = _cell(r.get(c.key))
            cells.append(_styled(c.key, text if wide else ellipsize(text, w, mark=mark)))
        table.add_row(*cells)
    console = Console(file=out, width=width, soft_wrap=False)
    console.print(table)
    hidden = [c.title for c in cols if c not in shown]
    if hidden:
        console.print(Text(f"not shown at this width: {', '.join(hidden)} (--wide shows them)", style="dim"))


def _print_folded(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str | None, stream: Any, empty: str
) -> None:
    """The folding layout of tables whose columns are plain names: cells wrap, nothing is cut."""
    out = Console(file=stream, soft_wrap=False, width=None if is_terminal(stream) else 200)
    if not rows:
        out.print(Text(empty, style="dim"))
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c.replace("_", " "), overflow="fold")
    for r in rows:
        table.add_row(*(_styled(c, _cell(r.get(c))) for c in columns))
    out.print(table)


def _styled(column: str, text: str) -> Text:
    style = STATUS_STYLE.get(text) if column in STYLED_COLUMNS else None
    return Text(text, style=style or "")


# ---------------------------------------------------------------- JSON and messages


def print_json(value: Any, stream: Any = None) -> None:
    json.dump(value, stream or sys.stdout, indent=2, default=_json_default, sort_keys=False)
    (stream or sys.stdout).write("\n")


def _json_default(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v)


def error(message: str) -> None:
    """``error: message`` on stderr, with every secret (in any encoding) redacted."""
    from helpers.core import secrets

    sys.stderr.write(f"error: {secrets.redact(message, secrets.secret_values())[0]}\n")

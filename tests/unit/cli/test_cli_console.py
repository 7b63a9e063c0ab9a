"""Tables that fit the terminal, cut at word boundaries; one age format; ids sorted as numbers."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from helpers.cli import console
from helpers.cli.console import LAST, NEVER, Column

pytestmark = pytest.mark.unit

SUMMARY = (
    "profit_monthly is 852 h old: the last write was 2026-10-31 06:00Z, expected within 26 h; "
    "sources subscriptions, invoices and payments stopped arriving"
)


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (0, "0 min"),
        (40, "40 min"),
        (5 * 60 + 12, "5 h 12 min"),
        (3 * 1440 + 4 * 60 + 59, "3 d 4 h"),
        (-5, "0 min"),
    ],
)
def test_ages_read_as_days_hours_minutes(minutes, text):
    assert console.format_age(dt.timedelta(minutes=minutes)) == text


def test_time_left_says_overdue_once_the_deadline_passed():
    assert console.format_left(dt.timedelta(hours=26)) == "1 d 2 h"
    assert console.format_left(dt.timedelta(minutes=-95)) == "1 h 35 min overdue"


def test_ids_sort_as_numbers():
    assert sorted(["10", "9", "100", "x", 2], key=console.id_key) == [2, "9", "10", "100", "x"]


def test_ellipsis_cuts_at_a_word_boundary():
    cut = console.ellipsize(SUMMARY, 40)
    assert len(cut) <= 40 and cut.endswith("…")
    assert SUMMARY.startswith(cut[:-1]) and SUMMARY[len(cut) - 1] == " "  # the cut is at a space
    assert console.ellipsize("short", 40) == "short"
    assert console.ellipsize("line one\nline two", 40) == "line one line two"  # one line per row


def test_ellipsis_of_an_identifier_cuts_at_a_separator_else_inside():
    assert (
        console.ellipsize("notebooks/runbooks/engagement/upstream_missing", 32)
        == "notebooks/runbooks/engagement/…"
    )
    assert console.ellipsize("x" * 50, 10) == "x" * 9 + "…"
    assert console.ellipsize(SUMMARY, 40, mark="...").endswith("...")


def test_columns_shrink_the_widest_first_and_never_below_their_floor():
    assert console.fit_columns([5, 50, 80], [5, 10, 10], 100, gap=2) == [5, 45, 46]
    assert console.fit_columns([5, 6], [5, 6], 100) == [5, 6]  # fits as it is
    assert console.fit_columns([30, 30, 30], [30, 30, 30], 50) is None


def _table(rows, columns, width, **kw) -> list[str]:
    out = io.StringIO()
    console.print_table(rows, columns, stream=out, width=width, **kw)
    return out.getvalue().splitlines()


ROWS = [
    {
        "id": n,
        "pipeline": "engagement_aggregate",
        "owner": "DE1/DE3",
        "check": f"engagement_aggregate.c{n}",
        "summary": SUMMARY,
        "diagnosis": "cause: the events source stopped on 2026-10-31 " * 3,
    }
    for n in (9, 10, 11)
]
COLUMNS = (
    Column("id", shrink=NEVER),
    Column("pipeline", shrink=LAST, min_width=12),
    Column("owner", shrink=NEVER),
    Column("check", shrink=LAST, drop=2),
    Column("summary", min_width=24),
    Column("diagnosis", drop=1, min_width=30),
)


def test_a_table_fits_100_columns_one_line_per_row_and_says_what_it_left_out():
    lines = _table(ROWS, COLUMNS, 100, title="Alerts")
    assert max(len(ln) for ln in lines) <= 100
    body = [ln for ln in lines if ln.startswith(("9 ", "10 ", "11 "))]
    assert len(body) == 3  # one line per row
    assert all("engagement_aggregate" in ln and "…" in ln for ln in body)  # names whole, text cut
    assert "check" not in lines[1]  # left out first, then
    assert lines[-1].startswith("not shown at this width: check") and "--wide" in lines[-1]


def test_wide_shows_every_column_and_every_character():
    lines = _table(ROWS, COLUMNS, 100, wide=True)
    text = "\n".join(lines)
    assert SUMMARY in text and "engagement_aggregate.c10" in text and "…" not in text
    assert "not shown" not in text


def test_piped_output_is_cut_to_columns_or_the_default_width(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert console.output_width(io.StringIO()) == console.PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    console.print_table(ROWS, COLUMNS, stream=out)
    assert max(len(ln) for ln in out.getvalue().splitlines()) <= 100


def test_only_a_terminal_is_interactive():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert console.is_terminal(Tty()) and not console.is_terminal(io.StringIO())


def test_tables_of_plain_column_names_fold_long_cells_instead_of_cutting():
    out = io.StringIO()
    console.print_table([{"note": SUMMARY}], ["note"], stream=out)
    assert "…" not in out.getvalue()
    assert (
        "".join(ln.strip(" │┃") for ln in out.getvalue().splitlines())
        .replace(" ", "")
        .find(SUMMARY.replace(" ", ""))
        >= 0
    )

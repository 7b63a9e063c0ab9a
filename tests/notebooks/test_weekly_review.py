"""The weekly metrics review through ``workbook run`` on a small demo company.

Nothing has run: the review names the week past the landing data, the ``run_date`` to use and the
exact ``workbook backfill`` commands; those commands run as named; the review of that date then
reads (no NaN/None in any table cell) and flags each figure against the weeks before.

:func:`run_review` is the reusable part: it runs the review for any company in ``WORKBOOK_HOME``
(the default demo too) and checks its archived HTML and scraps.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from chromium import screenshot

from conftest import demo_landing, home_with_demo, workbook
from helpers.investor import weekly

pytestmark = pytest.mark.notebooks
BAD_CELL = re.compile(r"\b(nan|NaN|None|NaT)\b|<NA>")


def _history_end(today: dt.date) -> dt.date:
    """The last day of the month before last: every delivery of the history has arrived by now, so
    the backfills the review names (``as_of`` now, their default) see all of it."""
    first = today.replace(day=1)
    return (first - dt.timedelta(days=1)).replace(day=1) - dt.timedelta(days=1)


END = _history_end(dt.datetime.now(dt.UTC).date())
DEMO = {"accounts": 40, "months": 3, "seed": 7, "end": END.isoformat(), "events": True}
WEEKS = 2  # the week and 2 weeks before: 21 days, the fewest that give a verdict (2 earlier weeks)


class Tables(HTMLParser):
    """Every table of a page as rows of cell texts, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@dataclass
class Review:
    archive: Path
    scraps: dict
    tables: list[list[list[str]]]  # the HTML's tables: rows of cell texts (header row first)
    text: str  # the page's text, whitespace collapsed

    def table(self, first_header: str, second_header: str) -> list[list[str]]:
        """The table whose header row starts with these two columns."""
        found = [t for t in self.tables if t and t[0][:2] == [first_header, second_header]]
        assert len(found) == 1, [t[0] for t in self.tables if t]
        return found[0]


def run_review(date: str, as_of: str, *params: str) -> Review:
    """Run the weekly review through the runner for ``date``, read its archived HTML and scraps.

    Fails when the run fails or when any table cell of the HTML reads NaN, None, nan, NaT or <NA>.
    Works for any company in ``WORKBOOK_HOME`` (``params``: ``-p key=value`` pairs, e.g. ``weeks=2``).
    """
    args = [x for p in params for x in ("-p", p)]
    proc = workbook("run", "weekly_metrics_review", "--date", date, "--as-of", as_of, *args, "--json", "-q")
    assert proc.stdout.strip(), proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["status"] == "succeeded", result
    archive = Path(result["archive"])
    page = Tables()
    page.feed((archive / "notebook.html").read_text(encoding="utf-8"))
    cells = [c for t in page.tables for row in t for c in row]
    assert cells, "the review shows no table"
    assert not [c for c in cells if BAD_CELL.search(c)], [c for c in cells if BAD_CELL.search(c)]
    scraps = json.loads((archive / "scraps.json").read_text())
    return Review(archive, scraps, page.tables, " ".join("".join(page.text).split()))


def test_the_review_names_what_it_needs_then_reads_once_that_has_run(home, tmp_path, tmp_path_factory, trap):
    home_with_demo(home, demo_landing(tmp_path_factory, **DEMO))
    late = END + dt.timedelta(days=3)  # "yesterday" is past the history
    first = run_review(late.isoformat(), f"{late + dt.timedelta(days=1)}T13:00:00Z", f"weeks={WEEKS}")
    start = END - dt.timedelta(days=7 * (WEEKS + 1) - 1)
    commands = [
        f"workbook backfill engagement_aggregate --from {start} --to {END}",
        f"workbook backfill growth_daily --from {start} --to {END}",
    ]
    s = first.scraps
    assert (s["needs_complete"], s["data_through"], s["suggested_run_date"]) == (False, str(END), str(END))
    assert s["commands"] == commands and s["anomalies"] == []
    assert f"The week ending {late} reaches past the landing data" in first.text
    steps = " ".join([*commands, f"workbook run weekly_metrics_review --date {END} -p weeks={WEEKS}"])
    assert f"Run these, then read the review they end with: {steps}" in first.text  # the block to copy
    figures = first.table("figure", f"to {late - dt.timedelta(days=14)}")
    assert all(c.startswith("no data (") for row in figures[1:] for c in row[1:])
    assert all(f.endswith("see section 1)") for f in s["flags"])

    for command in s["commands"]:
        proc = workbook(*shlex.split(command)[1:], "-q", timeout=1800)
        assert proc.returncode == 0, (command, proc.stdout[-3000:], proc.stderr[-3000:])

    second = run_review(END.isoformat(), f"{END + dt.timedelta(days=6)}T13:00:00Z", f"weeks={WEEKS}")
    s = second.scraps
    assert (s["needs_complete"], s["commands"], s["suggested_run_date"]) == (True, [], None)
    assert f"Every day of {start} .. {END} is in" in second.text
    figures = second.table("figure", f"to {END - dt.timedelta(days=14)}")
    assert figures[0][-1] == f"this week, to {END}" and len(figures) == 11  # header + 10 figures
    assert not [c for row in figures[1:] for c in row if c.startswith("no data")]
    stickiness = next(row for row in figures if row[0] == "stickiness (week end)")
    assert all(re.fullmatch(r"\d+\.\d %", c) for c in stickiness[1:]), stickiness
    mrr = next(row for row in figures if row[0] == "net new MRR")
    assert all(re.fullmatch(r"-?\$[\d,]+\.\d\d", c) for c in mrr[1:]), mrr
    events = next(f for f in s["flags"] if f.startswith("events "))
    assert re.fullmatch(
        r"events [\d,]+ this week: [+-][\d,]+\.\d % against the median of the 2 weeks before \([\d,]+(\.5)?\); "
        r"(more than the 20 % the row-count monitor allows|ok: within 20 %)",
        events,
    ), events
    verdicts = second.table("figure", "this week")
    names = [f.name for f in weekly.FIGURES]
    assert [r[0] for r in verdicts[1:]] == names and len(s["flags"]) == len(names)
    assert all(flag.startswith(name + " ") for flag, name in zip(s["flags"], names, strict=True))
    assert {r[-1].split(":")[0] for r in verdicts[1:]} <= {"ANOMALY", "ok", "no verdict"}
    assert s["anomalies"] == [r[0] for r in verdicts[1:] if r[-1].startswith("ANOMALY")]
    shot = screenshot(
        second.archive / "notebook.html", trap, tmp_path / "profile", "weekly_review", height=2400
    )
    assert shot.stat().st_size > 0 and trap.page_hits == []  # the archived review fetches nothing
    assert "Alerts opened in the week" in second.text
    assert (
        f"No run of the week's partitions ({END - dt.timedelta(days=6)} .. {END} and their months) failed"
        in second.text
    )

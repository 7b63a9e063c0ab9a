"""The rendered investor report in a real browser, with the network cut off.

Headless Chromium opens the archived ``notebook.html`` of a ``month_end_report`` run. DNS is disabled
(``--host-resolver-rules``) and every http(s) request is sent to a local trap posing as the proxy,
so nothing can leave the machine and whatever the page asks for is recorded.

:func:`check_investor_report` is what makes a report one a CFO would send, reusable on any rendered
report (a test on the default demo can call it): the page fetched nothing; every monthly trend chart
has at least twelve points (the template writes each chart's ``data-axis`` and ``data-points``); no
table has an index column (every header cell names its column, no row starts with a bare number);
the ``<title>`` names the company and the month; printed to PDF it is at most 8 A4 pages; and at the
printable width of an A4 page (:data:`A4_WIDTH_PX`, where the report applies its print rules on
screen too) no element reaches past the right edge (a probe script records any in ``data-overflow``).
It saves full-page screenshots at 1280 pixels and at A4 width under ``test-artifacts/``.

The test builds thirteen months of investor figures by hand, renders the report through the runner
and checks, beyond that: the KPI cells in the DOM are exactly the warehouse's ``investor_monthly``
values (and read as formatted), the banner agrees with the close checklist, and a control page with
an external image and stylesheet *is* caught by the trap.
"""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from chromium import browse, screenshot

from helpers.core import browser
from helpers.core import config as cfgmod
from helpers.core.periods import shift_period
from helpers.investor import aggregate as investor
from helpers.investor import close, report
from helpers.investor.inputs import Inputs, Source, SourceRun
from helpers.investor.metrics import ENGAGEMENT, GROWTH, PROFIT, format_value
from helpers.runs import runner

pytestmark = pytest.mark.integration
UTC = dt.UTC
P = "2026-09"
AS_OF = dt.datetime(2026, 10, 16, 12, tzinfo=UTC)
A4_WIDTH_PX = round((210 - 2 * 14) / 25.4 * 96)  # 688: A4 less the report's 14 mm margins, at 96 px per inch
MAX_PAGES = 8
TRENDS = (
    "arr",
    "mrr_movements",
    "customers",
    "retention",
    "revenue_costs",
    "margin",
    "active_users",
    "stickiness",
)
OVERFLOW_PROBE = """<script>
window.addEventListener("load", () => {
  const width = document.documentElement.clientWidth, wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > width + 0.5) {
      wide.push(`${el.tagName.toLowerCase()}.${el.className}#${el.id} right=${Math.round(box.right)}`);
    }
  }
  document.body.setAttribute("data-overflow", wide.join(" | "));
  document.body.setAttribute("data-page-height", String(document.documentElement.scrollHeight));
});
</script>"""


class ReportPage(HTMLParser):
    """What a test reads from the report's DOM.

    ``values``: the KPI cells (``td.wb-value``: metric -> exact value, shown text); ``status``: the
    banner's; ``title``; ``charts``: ``(name, axis, points)`` per chart image; ``tables``: per table,
    its header row's cells and the text of every ``th`` in its body rows.
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.values: dict[str, tuple[str, str]] = {}
        self.status: str | None = None
        self.title = ""
        self.charts: list[tuple[str, str, int]] = []
        self.tables: list[dict[str, list[str]]] = []
        self._cell: tuple[str, str] | None = None
        self._in_title = False
        self._rows = 0  # rows seen in the current table: the first is its header row
        self._text: list[str] | None = None  # the text of the current th/td
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "report-status":
            self.status = a.get("data-status")
        if tag == "title":
            self._in_title = True
        elif tag == "img" and a.get("data-points"):
            self.charts.append(
                (a.get("data-chart") or "", a.get("data-axis") or "", int(a["data-points"] or 0))
            )
        elif tag == "table":
            self.tables.append({"header": [], "body_th": []})
            self._rows = 0
        elif tag == "tr":
            self._rows += 1
        elif tag in ("th", "td"):
            self._text = []
        if tag == "td" and "wb-value" in (a.get("class") or ""):
            self._cell = (a.get("data-metric") or "", a.get("data-value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in ("th", "td") and self._text is not None and self.tables:
            text = "".join(self._text).strip()
            if self._rows == 1:
                self.tables[-1]["header"].append(text)
            elif tag == "th":
                self.tables[-1]["body_th"].append(text)
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._text is not None:
            self._text.append(data)
        if self._cell is not None:
            self.values[self._cell[0]] = (self._cell[1], data)
            self._cell = None


def check_investor_report(
    html: Path, trap, tmp_path: Path, *, min_points: int = 12, max_pages: int = MAX_PAGES
) -> ReportPage:
    """Check a rendered investor report (its ``notebook.html``) is one a CFO would send; returns its DOM.

    The page is opened with the network trapped; ``min_points``: points each monthly trend must have.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    proxy = f"--proxy-server=http://127.0.0.1:{trap.server_address[1]}"
    page = ReportPage(browse(html, trap, tmp_path / "profile-dom", "--dump-dom").stdout)
    period = re.search(r'data-period="(\d{4}-\d{2})"', html.read_text())
    assert period, "the report has no header naming its month"
    month = report.month_name(period.group(1))

    company = cfgmod.get().team.company.name
    assert company in page.title and month in page.title, page.title
    trends = [c for c in page.charts if c[1] == "month"]
    assert {c[0] for c in trends} >= set(TRENDS), page.charts  # the cost chart too when Profit has costs
    assert all(points >= min_points for _name, _axis, points in trends), trends
    for table in page.tables:
        assert table["header"] and all(table["header"]), table  # a header row that names every column
        assert not [t for t in table["body_th"] if t == "" or t.isdigit()], table  # no index column

    pdf = browser.print_pdf(html, tmp_path / "report.pdf", extra=(proxy,))
    assert pdf.read_bytes()[:5] == b"%PDF-"
    pages = browser.pdf_pages(pdf)
    assert 1 <= pages <= max_pages, pages

    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text().replace("</body>", OVERFLOW_PROBE + "</body>"))
    heights = {}
    for width in (A4_WIDTH_PX, 1280):
        dom = browse(
            probe, trap, tmp_path / f"profile-{width}", "--dump-dom", f"--window-size={width},1000"
        ).stdout
        found = re.search(r'data-overflow="([^"]*)"', dom)
        assert found and found.group(1) == "", (
            width,
            found and found.group(1),
        )  # nothing wider than the page
        heights[width] = int(re.search(r'data-page-height="(\d+)"', dom).group(1))
    name = f"month_end_report_{period.group(1)}"
    for width, suffix in ((1280, ""), (A4_WIDTH_PX, "_a4")):
        shot = screenshot(html, trap, tmp_path / f"profile-shot{width}", name + suffix, width=width,
                          height=heights[width])  # fmt: skip
        assert shot.stat().st_size > 20_000
    assert trap.page_hits == [], trap.page_hits  # nothing the page asked for, not even to the trap
    return page


def month_inputs(period: str, scale: float) -> Inputs:
    """Hand-made upstream figures for one month (``scale`` varies them between months)."""

    def c(v: float) -> int:
        return int(round(v * scale))

    profit = {"revenue_usd_cents": c(10_000_000), "salaries_usd_cents": c(5_000_000),
              "infrastructure_usd_cents": c(1_000_000), "operations_usd_cents": c(500_000),
              "written_off_usd_cents": 10_000, "finance_difference_usd_cents": -1_234,
              "status": "final", "provisional_reasons": ""}  # fmt: skip
    profit["total_cost_usd_cents"] = sum(
        profit[f"{k}_usd_cents"] for k in ("salaries", "infrastructure", "operations")
    )
    profit["profit_usd_cents"] = profit["revenue_usd_cents"] - profit["total_cost_usd_cents"]
    profit["margin"] = profit["profit_usd_cents"] / profit["revenue_usd_cents"]
    growth = {"starting_mrr_usd_cents": c(9_800_000), "new_mrr_usd_cents": 300_000, "expansion_mrr_usd_cents": 100_000,
              "contraction_mrr_usd_cents": -50_000, "churn_voluntary_mrr_usd_cents": -40_000,
              "churn_involuntary_mrr_usd_cents": -10_000, "reactivation_mrr_usd_cents": 0,
              "customers_start": 100, "new_customers": 5, "reactivated_customers": 0, "churned_customers": 3,
              "customers_end": 102, "nrr": 1.005, "grr": 0.99, "status": "final"}  # fmt: skip
    growth["ending_mrr_usd_cents"] = growth["starting_mrr_usd_cents"] + 300_000 + 100_000 - 100_000
    engagement = {"through_date": dt.date.fromisoformat(f"{period}-28"), "complete": True, "dau_avg": 41.5 * scale,
                  "mau": c(120), "stickiness": 0.3458, "active_accounts": 5, "events": c(9_000), "api_requests": 700}  # fmt: skip
    accounts = pd.DataFrame({"account_id": ["A1", "A2"], "member_accounts": ["A1", "A2"],
                             "ending_mrr_usd_cents": [1, 2], "movement": ["flat", "new"]})  # fmt: skip
    active = pd.DataFrame({"account_id": ["A1", "A2"], "active_users": [3, 1]})
    out = Inputs(period, AS_OF, dt.date(2026, 9, 30), {})
    for pid, table, row in ((PROFIT, "profit_monthly", profit), (GROWTH, "growth_mrr_monthly", growth),
                            (ENGAGEMENT, "engagement_monthly", engagement)):  # fmt: skip
        rid = f"{pid}-{period}-20261016T120000-a1b2c3"
        src = Source(
            pid, table, period, SourceRun(pid, period, "succeeded", rid), pd.DataFrame([row]), rid, True
        )
        out.runs[pid] = src.run
        setattr(out, {"profit_aggregate": "profit", "growth_aggregate": "growth"}.get(pid, "engagement"), src)
    out.growth_accounts, out.engagement_accounts = accounts, active
    return out


def scale_of(months_back: int) -> float:
    """Thirteen months of growth: 0.7 a year ago, 0.95 the month before, 1.0 the month itself."""
    return {0: 1.0, 1: 0.95}.get(months_back, 0.7 + 0.25 * (12 - months_back) / 11)


def test_the_report_shows_the_warehouse_figures_and_fetches_nothing(home, trap, tmp_path):
    for k in range(report.TREND_MONTHS):
        period = shift_period(P, -k)
        investor.write(
            investor.build(month_inputs(period, scale_of(k)), run_id=f"investor_aggregate-{period}-test")
        )
    result = runner.run_pipeline(close.REPORT, P, clock=lambda: AS_OF, as_of=AS_OF, trigger="test")
    assert result.status == "succeeded", result.error
    html = result.archive / "notebook.html"

    page = check_investor_report(html, trap, tmp_path / "check")
    assert "Acme Analytics — Investor update, September 2026 (Draft)" == page.title
    assert {points for _c, axis, points in page.charts if axis == "month"} == {
        13
    }  # the month and the 12 before

    warehouse = investor.read_monthly([P]).set_index("metric")
    assert set(page.values) == set(report.HEADLINE)
    for metric, (raw, text) in page.values.items():
        row = warehouse.loc[metric]
        exact = int(row["value_int"]) if pd.notna(row["value_int"]) else float(row["value"])
        assert raw == str(exact), metric
        assert text == format_value(exact, row["unit"]), metric
    assert page.status == close.close_status(P, AS_OF).label == "DRAFT"  # no upstream runs were recorded
    text = html.read_text()
    kpis = report.headline(P).set_index("metric")
    assert (
        kpis.loc["revenue_usd_cents", "mom"] == "+5.3%" and kpis.loc["revenue_usd_cents", "yoy"] == "+42.9%"
    )
    assert ">+5.3%<" in text and ">+42.9%<" in text and ">MoM<" in text
    net_new = 12 * 300_000  # every month's ending MRR is its starting MRR + $3,000.00
    assert f'data-derived="net_new_arr_usd_cents" data-value="{net_new}"' in text
    assert 'data-derived="quick_ratio" data-value="4.0"' in text  # (3,000 + 1,000) / |-500 - 400 - 100|
    for engineering in ("investor_monthly", "workbook close", 'id="Record"', "too little history"):
        assert engineering not in text, engineering

    # the control: the same page with an external image and stylesheet is caught by the trap
    control = tmp_path / "control.html"
    control.write_text(text.replace(
        "</body>", '<img src="http://report-cdn.example/logo.png"><link rel="stylesheet" '
                   'href="https://fonts.example.org/a.css"></body>'))  # fmt: skip
    browse(control, trap, tmp_path / "profile-control", "--dump-dom")
    caught = " ".join(trap.page_hits)
    assert "report-cdn.example/logo.png" in caught and "fonts.example.org:443" in caught

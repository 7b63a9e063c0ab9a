"""The rendered investor report in a real browser, with the network cut off.

Headless Chromium opens the archived ``notebook.html`` of a ``month_end_report`` run. DNS is disabled
(``--host-resolver-rules``) and every http(s) request is sent to a local trap posing as the proxy,
so nothing can leave the machine and whatever the page asks for is recorded. The test asserts that
the page asked for nothing (Chromium's own background services aside, which also only reached the
trap), that a control page with an external image and stylesheet *is* caught (the trap works), that
the headline figures in the DOM are exactly the warehouse's ``investor_monthly`` values (and read as
formatted), that the banner agrees with the close checklist, and saves a screenshot under
``test-artifacts/``.
"""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import pandas as pd
import pytest
from chromium import browse, screenshot

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


class Page(HTMLParser):
    """The headline cells (``td.wb-value``: metric -> exact value, shown text) and the banner status."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.values: dict[str, tuple[str, str]] = {}
        self.status: str | None = None
        self._cell: tuple[str, str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "report-status":
            self.status = a.get("data-status")
        if tag == "td" and "wb-value" in (a.get("class") or ""):
            self._cell = (a.get("data-metric") or "", a.get("data-value") or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.values[self._cell[0]] = (self._cell[1], data)
            self._cell = None


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


def test_the_report_shows_the_warehouse_figures_and_fetches_nothing(home, trap, tmp_path):
    for period, scale in (
        (P, 1.0),
        (shift_period(P, -1), 0.95),
        (shift_period(P, -12), 0.7),
    ):
        investor.write(
            investor.build(month_inputs(period, scale), run_id=f"investor_aggregate-{period}-test")
        )
    result = runner.run_pipeline(close.REPORT, P, clock=lambda: AS_OF, as_of=AS_OF, trigger="test")
    assert result.status == "succeeded", result.error
    html = result.archive / "notebook.html"

    dom = browse(html, trap, tmp_path / "profile-dom", "--dump-dom").stdout
    shot = screenshot(html, trap, tmp_path / "profile-shot", f"month_end_report_{P}", height=5200)
    assert trap.page_hits == [], trap.page_hits  # nothing the page asked for, not even to the trap

    page = Page(dom)
    warehouse = investor.read_monthly([P]).set_index("metric")
    assert set(page.values) == set(report.HEADLINE)
    for metric, (raw, text) in page.values.items():
        row = warehouse.loc[metric]
        exact = int(row["value_int"]) if pd.notna(row["value_int"]) else float(row["value"])
        assert raw == str(exact), metric
        assert text == format_value(exact, row["unit"]), metric
    assert page.status == close.close_status(P, AS_OF).label == "DRAFT"  # no upstream runs were recorded
    kpis = report.headline(P).set_index("metric")
    assert (
        "MoM" in dom
        and kpis.loc["revenue_usd_cents", "mom"] == "+5.3%"
        and kpis.loc["revenue_usd_cents", "mom"] in dom
    )
    assert kpis.loc["revenue_usd_cents", "yoy"] == "+42.9%" and kpis.loc["revenue_usd_cents", "yoy"] in dom
    assert shot.stat().st_size > 20_000

    # the control: the same page with an external image and stylesheet is caught by the trap
    control = tmp_path / "control.html"
    control.write_text(html.read_text().replace(
        "</body>", '<img src="http://report-cdn.example/logo.png"><link rel="stylesheet" '
                   'href="https://fonts.example.org/a.css"></body>'))  # fmt: skip
    browse(control, trap, tmp_path / "profile-control", "--dump-dom")
    caught = " ".join(trap.page_hits)
    assert "report-cdn.example/logo.png" in caught and "fonts.example.org:443" in caught

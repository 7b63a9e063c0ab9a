"""The investor report's KPIs and formats: derived KPIs, changes, how values read, charts that say what
they plot, the KPI table's HTML and the template's title, hidden cells and chart attributes."""

from __future__ import annotations

import datetime as dt
import re

import nbformat
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter

from helpers.investor import charts, kpis, report
from helpers.investor.close import CloseItem, CloseStatus

pytestmark = pytest.mark.unit
P = "2026-09"


def rows(period: str, values: dict[str, float], status: str = "final") -> list[dict]:
    """``investor_monthly`` rows of one month (integers exact in ``value_int``)."""
    out = []
    for metric, v in values.items():
        exact = isinstance(v, int)
        out.append({"period": period, "metric": metric, "value": float(v), "value_int": v if exact else None,
                    "unit": "usd_cents" if metric.endswith("_usd_cents") else "ratio", "status": status,
                    "status_reason": "" if status == "final" else "cloud bill missing",
                    "source_pipeline": "growth_aggregate", "source_run_id": "g1", "run_id": "i1",
                    "as_of": pd.Timestamp("2026-10-16 12:00")})  # fmt: skip
    return out


MONTH = {
    "starting_mrr_usd_cents": 146_916_184,
    "ending_mrr_usd_cents": 151_650_422,
    "new_mrr_usd_cents": 3_652_496,
    "expansion_mrr_usd_cents": 1_759_203,
    "reactivation_mrr_usd_cents": 131_057,
    "contraction_mrr_usd_cents": -481_800,
    "churn_voluntary_mrr_usd_cents": -123_750,
    "churn_involuntary_mrr_usd_cents": -202_968,
    "arr_usd_cents": 1_819_805_064,
    "revenue_usd_cents": 10_000_000,
    "margin": 0.35,
}


def frame(**months: dict) -> pd.DataFrame:
    return pd.DataFrame([r for p, values in months.items() for r in rows(p.replace("_", "-"), values)])


# ---------------------------------------------------------------- derived KPIs and changes


def test_net_new_arr_and_the_quick_ratio_derive_from_the_mrr_movements():
    d = kpis.derived(MONTH)
    assert d["net_new_arr_usd_cents"] == 12 * (151_650_422 - 146_916_184) == 56_810_856  # exact cents
    won, lost = 3_652_496 + 1_759_203 + 131_057, 481_800 + 123_750 + 202_968
    assert d["quick_ratio"] == pytest.approx(won / lost) and round(d["quick_ratio"], 2) == 6.86
    no_losses = {**MONTH, **dict.fromkeys(kpis.LOSSES, 0)}
    assert kpis.derived(no_losses)["quick_ratio"] is None  # nothing lost: no ratio, not infinity
    missing = {k: v for k, v in MONTH.items() if k != "starting_mrr_usd_cents"}
    assert kpis.derived(missing) == {"net_new_arr_usd_cents": None, "quick_ratio": pytest.approx(won / lost)}


def test_changes_are_relative_in_points_for_rates_and_compare_amounts_lost():
    assert kpis.change(105, 100, "usd_cents") == "+5.0%" and kpis.change(0.35, 0.30, "ratio") == "+5.0 pp"
    assert kpis.change(2_695, 100, "count") == "+2,595.0%"  # thousands separated
    assert kpis.change(None, 1, "count") == kpis.change(1, 0, "count") == "n/a"
    # churn from -$1,000 to -$250: the amount lost fell by 75 %, not "+75 %"
    assert kpis.kpi_change("churn_voluntary_mrr_usd_cents", -25_000, -100_000, "usd_cents") == "-75.0%"
    assert kpis.kpi_change("new_mrr_usd_cents", -25_000, -100_000, "usd_cents") == "+75.0%"


def test_values_read_the_same_everywhere():
    assert [charts.money(v) for v in (1_480_000, 312_000, 31_234, 3_300, 950, -4_818)] == [
        "$1.48M", "$312k", "$31.2k", "$3.3k", "$950", "-$4.8k",
    ]  # fmt: skip
    assert (
        charts.money(999_999) == "$1.00M"
        and charts.money(99_960) == "$100k"
        and charts.money(999.6) == "$1.0k"
    )
    assert charts.money(36_500, signed=True) == "+$36.5k" and charts.money(0, signed=True) == "$0"
    assert kpis.value_text(6.861, "multiple") == "6.9x" and kpis.value_text(0.2569, "ratio") == "25.7%"
    assert kpis.short(1_819_805_064, "usd_cents") == "$18.20M" and kpis.short(3725.8, "users") == "3,726"
    assert kpis.month_name(P) == "September 2026" and charts.month_label(P) == "Sep 2026"
    assert charts.month_ticks(["2025-12", "2026-01", "2026-02"]) == ["Dec\n2025", "Jan\n2026", "Feb"]


def test_axis_ticks_share_one_unit_and_the_decimals_their_step_needs():
    money, pct = charts.AxisTicks("money"), charts.AxisTicks("percent")
    assert money.format_ticks([13e6, 14e6, 15e6]) == ["$13M", "$14M", "$15M"]
    assert money.format_ticks([1.42e6, 1.44e6]) == ["$1.42M", "$1.44M"]
    assert money.format_ticks([-50e3, 0, 50e3, 100e3]) == ["-$50k", "$0", "$50k", "$100k"]
    assert money.format_ticks([0.25e6, 0.5e6, 1e6]) == ["$0.25M", "$0.50M", "$1.00M"]
    assert pct.format_ticks([94, 96, 98]) == ["94%", "96%", "98%"] and pct.format_ticks([32.5, 35]) == [
        "32.5%",
        "35.0%",
    ]


# ---------------------------------------------------------------- the KPI table


def test_the_kpi_table_compares_months_and_marks_derived_and_provisional_figures():
    f = frame(**{"2026_09": MONTH, "2026_08": {**MONTH, "arr_usd_cents": 1_700_000_000, "margin": 0.30}})
    table = kpis.table(P, f)
    by = table.set_index("metric")
    assert list(table["metric"]) == list(kpis.KPIS)  # every KPI, in the groups' order
    assert by.loc["arr_usd_cents", "value"] == 1_819_805_064 and isinstance(
        by.loc["arr_usd_cents", "value"], int
    )
    assert by.loc["arr_usd_cents", "mom"] == "+7.0%" and by.loc["arr_usd_cents", "yoy"] == "n/a"
    assert by.loc["margin", "mom"] == "+5.0 pp" and by.loc["net_new_arr_usd_cents", "derived"]
    assert (
        by.loc["net_new_arr_usd_cents", "value"] == 56_810_856
        and by.loc["customers_end", "status"] == "missing"
    )
    scrap = kpis.scrap(table)
    assert "net_new_arr_usd_cents" not in scrap and scrap["arr_usd_cents"] == 1_819_805_064

    page = report.headline_html(table, P)
    assert 'data-metric="arr_usd_cents" data-value="1819805064" data-unit="usd_cents">$18,198,050.64<' in page
    assert 'data-derived="net_new_arr_usd_cents" data-value="56810856"' in page
    assert page.count('class="wb-value') == len(kpis.HEADLINE) and 'class="wb-group"' in page
    assert (
        "<th>Sep 2026</th><th>Aug 2026</th><th>MoM</th><th>Sep 2025</th><th>YoY</th><th>Status</th>" in page
    )

    final = table.assign(status="final")
    assert "<th>Status</th>" not in report.headline_html(
        final, P
    )  # a Status column only when one is not final


def test_the_summary_says_what_the_month_was():
    f = frame(**{"2026_09": {**MONTH, "customers_end": 864, "new_customers": 43, "churned_customers": 9,
                             "nrr": 1.0066, "grr": 0.9945},
                 "2026_08": {**MONTH, "arr_usd_cents": 1_700_000_000}})  # fmt: skip
    text = report.summary(kpis.table(P, f), P)
    assert text.startswith("ARR was $18.20M at the end of September 2026 (up 7.0% on August)")
    assert "$568k net new ARR" in text and "864 customers (43 new, 9 churned)" in text
    assert "net revenue retention 100.7%, gross 99.5%" in text
    assert "Revenue was $100k (unchanged on August) at a 35.0% margin." in text
    assert report.summary(kpis.table(P, frame()), P) == "No investor figures for September 2026 yet."


def test_a_draft_says_why_in_plain_words_and_lists_the_open_items():
    items = (CloseItem("sources", "profit_aggregate", "figures final", False, "provisional: aws bill", "DE1/DE2"),
             CloseItem("checks", "growth_aggregate", "checks pass", False, "math_errors failed", "DE3/DE4"))  # fmt: skip
    when = dt.datetime(2026, 10, 16, 12, tzinfo=dt.UTC)
    status = CloseStatus(P, when, dt.date(2026, 10, 5), when, items, {"profit_aggregate": "provisional",
                         "growth_aggregate": "final", "engagement_aggregate": "final"})  # fmt: skip
    reasons = report.draft_reasons(status)
    assert reasons == ["Revenue, costs, profit and margin: provisional, the month's source data is not complete yet.",
                       "The month-end close has 1 open check (listed below)."]  # fmt: skip
    page = report.banner_html(status)
    assert 'data-status="DRAFT"' in page and "Not for distribution" in page and "math_errors failed" in page
    head = report.header(P, status, company="Acme & Co", version=2)
    title = head.metadata["workbook"]["page_title"]
    assert title == "Acme & Co — Investor update, September 2026 (Draft)"
    assert "Acme &amp; Co" in head.text and "Draft of version 2, not yet published" in head.text


# ---------------------------------------------------------------- charts


def test_a_trend_says_what_it_plots_and_keeps_small_moves_small():
    data = pd.DataFrame(
        {"period": [f"2026-{m:02d}" for m in range(1, 7)], "margin": [25.0, 25.4, 25.2, 25.9, 26.1, 25.7]}
    )
    fig = charts.trend(
        data, x="period", series=["margin"], title="Margin", percent=True, min_span=10.0, name="m"
    )
    assert fig.wb_meta == {"chart": "m", "axis": "month", "points": 6, "labels": list(data["period"])}
    assert fig.wb_alt.startswith("Margin: 6 points, Jan 2026 to Jun 2026")
    low, high = fig.axes[0].get_ylim()
    assert high - low >= 10.0  # a one-point wobble does not fill the axis
    png, md = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and md["workbook"]["points"] == 6 and md["alt"] == fig.wb_alt
    bundle, meta = DisplayFormatter().format(fig)
    assert "image/png" in bundle and meta["image/png"]["workbook"]["axis"] == "month"


def test_the_mrr_bridge_starts_near_the_starting_mrr_and_says_so():
    steps = [
        ("Starting MRR", 1_469_162.0),
        ("New", 36_525.0),
        ("Churn", -12_000.0),
        ("Ending MRR", 1_493_687.0),
    ]
    fig = charts.waterfall(steps, title="MRR bridge", start_label="Starting MRR", end_label="Ending MRR",
                           baseline="auto")  # fmt: skip
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 1_300_000 <= low < 1_469_162 and low % 10_000 == 0  # a round number below the smallest total
    assert high > 1_505_687  # room above the highest bar's label, under the title
    assert (
        ax.patches[0].get_y() == low and ax.patches[1].get_y() == 1_469_162
    )  # totals stand on the axis floor
    assert f"Axis starts at {charts.money(low)}, not at zero" in [t.get_text() for t in ax.texts]
    assert fig.wb_meta["axis"] == "steps" and fig.wb_meta["points"] == 4


def test_a_report_trend_needs_two_months():
    one = frame(**{"2026_09": MONTH})
    shown = report.arr_chart(P, one)
    assert not isinstance(shown, charts.Chart)
    assert (
        shown.data
        == "*ARR at month end: a trend needs two months of figures; so far only September 2026 has them.*"
    )
    assert "no figures up to September 2026 yet" in report.arr_chart(P, frame()).data
    two = frame(**{"2026_09": MONTH, "2026_08": MONTH})
    fig = report.arr_chart(P, two)
    assert (
        isinstance(fig, charts.Chart) and fig.wb_meta["points"] == 2 and fig.wb_width == report.CHART_WIDTH_PX
    )


def test_tables_have_a_header_row_and_no_index_column():
    shown = report.html_table(pd.DataFrame({"Month": ["Sep 2026"], "Customers": ["864"]}), text=["Month"])
    assert shown.data.startswith(
        '<table class="wb-table"><thead><tr><th class="wb-text">Month</th><th>Customers</th>'
    )
    assert "<th>0</th>" not in shown.data and '<td class="wb-text">Sep 2026</td><td>864</td>' in shown.data
    assert len(report.definitions_table()) == len(kpis.KPIS) + 1  # every KPI defined, and MoM/YoY


# ---------------------------------------------------------------- the template


def test_the_template_titles_the_page_hides_tagged_cells_and_describes_charts(tmp_path):
    from helpers.runs import runner

    data = pd.DataFrame({"period": ["2026-08", "2026-09"], "arr": [1.0, 2.0]})
    chart = charts.trend(data, x="period", series=["arr"], title="ARR", name="arr")
    png, md = chart._repr_png_()
    head = report.Fragment("<h1>Hello</h1>", {"workbook": {"page_title": "Acme — Investor update <Draft>"}})
    data_out, meta_out = head._repr_mimebundle_()
    cells = [
        nbformat.v4.new_markdown_cell("notes for whoever edits the notebook", metadata={"tags": ["report-hide"]}),
        nbformat.v4.new_code_cell("head", outputs=[nbformat.v4.new_output("display_data", data_out, metadata=meta_out)]),
        nbformat.v4.new_code_cell("chart", outputs=[nbformat.v4.new_output(
            "display_data", {"image/png": __import__("base64").b64encode(png).decode()}, metadata={"image/png": md})]),
    ]  # fmt: skip
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"language_info": {"name": "python"}})
    (tmp_path / "report.ipynb").write_text(nbformat.writes(nb))
    runner.render_html(tmp_path / "report.ipynb", tmp_path / "report.html", hide_code=True)
    page = (tmp_path / "report.html").read_text()
    assert re.findall(r"<title>(.*?)</title>", page) == ["Acme — Investor update &lt;Draft&gt;"]
    assert "notes for whoever edits" not in page and "<h1>Hello</h1>" in page
    img = re.search(r"<img [^>]*data-points[^>]*>", page).group(0)
    assert 'data-chart="arr"' in img and 'data-axis="month"' in img and 'data-points="2"' in img
    assert 'alt="ARR: 2 points, Aug 2026 to Sep 2026' in img

    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Plain")])
    (tmp_path / "plain.ipynb").write_text(nbformat.writes(plain))
    runner.render_html(tmp_path / "plain.ipynb", tmp_path / "plain.html")
    assert "<title>plain</title>" in (tmp_path / "plain.html").read_text()  # other notebooks: their name

"""The month-end close on a small demo company, end to end through the real CLI.

A close with Profit broken renders a DRAFT naming the failed run and ``--final`` refuses (exit 1);
after the fix the same command resumes (what succeeded at this ``as_of`` is skipped, what failed or
went stale re-runs) and publishes a FINAL report whose figures are the warehouse's, and the
archived report run passes ``workbook validate``.
"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from conftest import demo_landing, home_with_demo, workbook
from helpers.checks import store
from helpers.investor import aggregate as investor
from helpers.investor.metrics import UPSTREAMS, format_value
from helpers.runs import records as runs
from helpers.runs.notebooks import from_percent, write_notebook

pytestmark = pytest.mark.notebooks
P = "2026-09"
AS_OF = "2026-10-16T12:00:00+00:00"  # Finance's close for September has passed; dunning has resolved

BROKEN = """# %% [markdown]
# # Broken Profit (test)
# %% tags=["parameters"]
period: str = "2026-09"  # month
as_of: str = ""  # as of
run_id: str = "manual"  # run id
# %%
raise RuntimeError(f"billing extract for {period} is unreadable")
"""


class Figures(HTMLParser):
    """The headline cells (``td.wb-value``: metric, exact value, text) and the DRAFT/FINAL banner."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, tuple[str, str]] = {}
        self.status: str | None = None
        self._cell: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "report-status":
            self.status = a.get("data-status")
        if tag == "td" and "wb-value" in (a.get("class") or ""):
            self._cell = (a["data-metric"] or "", a.get("data-value") or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self.values[self._cell[0]] = (self._cell[1], data)
            self._cell = None


def figures_of(page: str) -> Figures:
    parser = Figures()
    parser.feed(page)
    return parser


def set_profit_notebook(path: str) -> None:
    cfg = Path(os.environ["WORKBOOK_CONFIG_DIR"]) / "pipelines.yml"
    data = yaml.safe_load(cfg.read_text())
    data["pipelines"]["profit_aggregate"]["notebook"] = path
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))


def close(*extra: str) -> tuple[int, dict]:
    proc = workbook("close", "--month", P, "--as-of", AS_OF, "--json", "--history", "0", *extra, timeout=900)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def company(home, tmp_path_factory):
    landing = demo_landing(tmp_path_factory, accounts=60, months=3, seed=7, end="2026-10-31", events=True)
    cfg = Path(os.environ["WORKBOOK_CONFIG_DIR"]) / "pipelines.yml"
    data = yaml.safe_load(cfg.read_text())
    # this test is about blockers; sign-offs, locks and versions: tests/integration/test_close_signoff.py
    data["close"]["required_signoffs"] = []
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return home_with_demo(home, landing)


def test_a_failed_upstream_keeps_the_report_draft_until_the_fix_and_a_rerun(company, tmp_path):
    original = yaml.safe_load((Path(os.environ["WORKBOOK_CONFIG_DIR"]) / "pipelines.yml").read_text())
    broken = tmp_path / "broken_profit.ipynb"
    write_notebook(from_percent(BROKEN), broken)
    set_profit_notebook(str(broken))

    code, first = close("--final")
    assert code == 1 and first["status"] == "DRAFT" and first["published"] is None
    assert "refused to publish 2026-09: profit_aggregate: latest run of 2026-09 succeeded" in first["refused"]
    states = {o["pipeline"]: o["status"] for o in first["runs"]}
    assert states["profit_aggregate"] == "failed" and states["investor_aggregate"] == "blocked"
    assert states["profit_unit"] == "blocked" and states["month_end_report"] == "succeeded"
    blockers = {(b["section"], b["pipeline"]) for b in first["checklist"]["blockers"]}
    assert {
        ("runs", "profit_aggregate"),
        ("runs", "investor_aggregate"),
        ("sources", "profit_aggregate"),
    } <= blockers
    draft = Path(first["report"]).read_text()
    assert figures_of(draft).status == "DRAFT" and "billing extract for 2026-09 is unreadable" in draft

    set_profit_notebook(original["pipelines"]["profit_aggregate"]["notebook"])  # the fix
    code, second = close("--final")
    assert code == 0, second["checklist"]["blockers"]
    assert second["status"] == "FINAL" and second["refused"] is None
    states = {o["pipeline"]: (o["status"], o["reason"]) for o in second["runs"]}
    assert states["growth_aggregate"] == (
        "skipped",
        "up to date",
    )  # succeeded at this as_of: resumed, not redone
    assert states["profit_aggregate"][0] == states["investor_aggregate"][0] == "succeeded"
    assert states["engagement_aggregate"][0] == "succeeded"  # re-ran: profit_unit finished after it
    assert {b: "final" for b in UPSTREAMS} == second["checklist"]["sources"]

    published = Path(second["published"])
    page = published.read_text()
    shown = figures_of(page)
    assert shown.status == "FINAL" and 'class="wb-watermark"' not in page
    assert page == Path(second["report"]).read_text()
    report_run = next(o["run_id"] for o in second["runs"] if o["pipeline"] == "month_end_report")
    scraps = runs.get_scraps(report_run)
    assert scraps["status"] == "FINAL" and scraps["blockers"] == []
    warehouse_values = investor.read_monthly([P]).set_index("metric")
    # the clean company's revenue vs MRR passes with Growth's bridge itemised, not by a wider tolerance
    investor_run = next(o["run_id"] for o in second["runs"] if o["pipeline"] == "investor_aggregate")
    [bridge] = store.list_results(run_id=investor_run, check_id="investor_aggregate.revenue_vs_mrr")
    assert bridge["status"] == "pass" and bridge["evidence"]["itemised_by"] == "growth_mrr_monthly"
    assert abs(bridge["evidence"]["unexplained_share"]) <= bridge["evidence"]["tolerance_share"] == 0.03
    assert set(shown.values) == set(scraps["headline"])
    for metric, value in scraps["headline"].items():
        row = warehouse_values.loc[metric]
        expected = int(row["value_int"]) if row["value_int"] == row["value_int"] else float(row["value"])
        assert value == expected and shown.values[metric][0] == str(expected), metric
        assert shown.values[metric][1] == format_value(expected, row["unit"]), metric

    proc = workbook("validate", report_run, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"], proc.stdout + proc.stderr

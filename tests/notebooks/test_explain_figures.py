"""``workbook explain`` on a closed demo month, through the real CLI: every level of the chain is real.

One close of September on a small demo company (as in test_close.py), then: ending MRR, profit and
average DAU each explained down to landing files whose checksums are the files' own; the companies
behind new MRR adding up to it exactly; the report linking each headline figure to the archived run
that computed it; and the refusals (an unknown metric, a month not closed).
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import demo_landing, home_with_demo, workbook, write_test_config
from helpers.core import config as cfgmod
from helpers.core import paths
from helpers.core.periods import period_days
from helpers.investor import aggregate as investor
from helpers.investor import explain
from helpers.runs import records as runs
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.notebooks
P = "2026-09"
AS_OF = "2026-10-16T12:00:00+00:00"


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    """A demo company whose September was closed (not published): the workbook home."""
    base = tmp_path_factory.mktemp("explain")
    home = base / "home"
    (home / "runs").mkdir(parents=True)
    (home / "data").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBOOK_HOME", str(home))
        mp.setenv("WORKBOOK_CONFIG_DIR", str(write_test_config(base / "config")))
        mp.delenv("WORKBOOK_WAREHOUSE_URL", raising=False)
        warehouse.dispose_engines()
        cfgmod._cached.cache_clear()
        landing_root = demo_landing(
            tmp_path_factory, accounts=60, months=3, seed=7, end="2026-10-31", events=True
        )
        home_with_demo(home, landing_root)
        proc = workbook("close", "--month", P, "--as-of", AS_OF, "--json", "--history", "0", timeout=900)
        assert proc.stdout.strip(), proc.stderr[-3000:]
        result = json.loads(proc.stdout)
        assert {o["pipeline"]: o["status"] for o in result["runs"]}["investor_aggregate"] == "succeeded", (
            result
        )
        yield home
        warehouse.dispose_engines()
        cfgmod._cached.cache_clear()


def explain_json(*args: str) -> dict:
    proc = workbook("explain", "--month", P, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def figure(metric: str) -> dict:
    row = investor.read_monthly([P]).set_index("metric").loc[metric]
    return {"value": explain.value_of(row), "run_id": row["run_id"], "source_run_id": row["source_run_id"]}


def assert_chain_reaches_landing_files(chain: dict, metric: str, pipeline: str) -> None:
    """Each level is present and real: run records, archives, partition_writes, manifest checksums."""
    fig = figure(metric)
    assert chain["value"] == fig["value"]
    inv = chain["investor_run"]
    assert inv["run_id"] == fig["run_id"] and inv["pipeline"] == "investor_aggregate"
    assert (
        inv["status"] == "succeeded"
        and inv["code_version"]
        and Path(inv["archive"], "notebook.html").is_file()
    )
    (up,) = chain["upstream_runs"]
    record = runs.get_run(up["run_id"])
    assert up["run_id"] == fig["source_run_id"] and up["pipeline"] == pipeline == record.pipeline
    assert up["partition"] == record.logical_date and up["code_version"] == record.code_version
    assert Path(up["archive"], "notebook.html").is_file() and up["archive"] == record.archive_path
    marts = {m["table"]: m for m in chain["mart_partitions"]}
    pw = warehouse.partition_writes
    with warehouse.get_engine().connect() as conn:
        writes = {(r.table_name, r.partition_key): r for r in conn.execute(pw.select())}
    for table, m in marts.items():
        w = writes[(table, warehouse.partition_key({"period": P}))]
        assert (m["rows"], m["run_id"]) == (w.row_count, w.run_id) and m["current"], table
    assert marts["investor_monthly"]["run_id"] == inv["run_id"]
    (read,) = chain["landing"]
    assert read["run_id"] == up["run_id"] and read["sources"], chain
    first, last = (d.isoformat() for d in period_days(P))
    for source in read["sources"]:
        manifest = {d.file: d for d in landing.deliveries(source["source"])}
        assert source["deliveries"], source["source"]
        for d in source["deliveries"]:
            on_disk = hashlib.sha256(Path(d["path"]).read_bytes()).hexdigest()
            assert d["sha256"] == manifest[d["file"]].sha256 == on_disk
            assert first <= d["partition"] <= last and d["arrived_at"] <= up["as_of"]
    assert chain["problems"] == []


@pytest.mark.parametrize(
    ("metric", "pipeline", "table"),
    [
        ("ending_mrr_usd_cents", "growth_aggregate", "growth_mrr_monthly"),
        ("profit_usd_cents", "profit_aggregate", "profit_monthly"),
        ("dau_avg", "engagement_aggregate", "engagement_monthly"),
    ],
)
def test_explain_prints_the_chain_down_to_landing_files(closed, metric, pipeline, table):
    chain = explain_json(metric)
    assert_chain_reaches_landing_files(chain, metric, pipeline)
    assert table in {m["table"] for m in chain["mart_partitions"]}
    assert {s["source"] for s in chain["landing"][0]["sources"]} == set(explain.READS[pipeline])

    proc = workbook("explain", "--month", P, metric, "--verify")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert max(len(line) for line in text.splitlines()) <= 100
    sections = ["1 Investor run", "2 Upstream runs", "3 Mart partitions", "4 Landing deliveries"]
    assert [text.index(s) for s in sections] == sorted(text.index(s) for s in sections)
    flat = re.sub(r"\n +", "", text)  # lines broken at 100 columns, joined again
    up = chain["upstream_runs"][0]
    for needle in (chain["investor_run"]["run_id"], up["run_id"], up["code_version"],
                   explain.display_path(up["archive"]), f"{table} period={P}: "):  # fmt: skip
        assert needle in flat, needle
    for source in chain["landing"][0]["sources"]:
        latest = max(source["deliveries"], key=lambda d: (d["arrived_at"], d["file"]))
        assert f"{source['source']}: {len(source['deliveries'])} of the month" in text
        assert f"{latest['file']}  " in text and f"sha256 {latest['sha256']}" in text
    assert "checksum ok" in text and "Problems: none" in text


def test_accounts_behind_new_mrr_add_up_to_it_exactly(closed):
    found = explain_json("new_mrr_usd_cents", "--accounts")
    fig = figure("new_mrr_usd_cents")
    amounts = [a["amount_usd_cents"] for a in found["accounts"]]
    assert found["figure"] == fig["value"] > 0 and len(amounts) > 0
    assert sum(amounts) == fig["value"] and found["matches"]
    assert found["figure_run_id"] == found["source"]["run_id"] == fig["source_run_id"]
    mart = warehouse.read_table("growth_accounts_monthly", where={"period": P})
    new = mart[mart["movement"] == "new"]
    assert sorted(a["account_id"] for a in found["accounts"]) == sorted(new["account_id"])
    for a in found["accounts"]:
        assert a["mrr_before_usd_cents"] == 0 and a["tier_before"] is None and a["tier_after"]
        assert a["mrr_after_usd_cents"] == a["amount_usd_cents"] > 0

    proc = workbook("explain", "--month", P, "new_mrr_usd_cents", "--accounts")
    assert proc.returncode == 0, proc.stderr
    assert "= the sum of the amounts below (exact)" in proc.stdout
    assert f"total: {len(amounts)} compan" in proc.stdout
    assert all(a["account_id"] in proc.stdout for a in found["accounts"])
    assert max(len(line) for line in proc.stdout.splitlines()) <= 100


class Links(HTMLParser):
    """The headline value cells: metric -> (data-run, href of the link inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, tuple[str | None, str | None]] = {}
        self._metric: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and "wb-value" in (a.get("class") or ""):
            self._metric = a.get("data-metric")
            self.cells[self._metric or ""] = (a.get("data-run"), None)
        elif tag == "a" and self._metric:
            self.cells[self._metric] = (self.cells[self._metric][0], a.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._metric = None


def test_the_report_links_each_headline_figure_to_the_run_that_computed_it(closed):
    report_run = runs.list_runs(pipeline="month_end_report", logical_date=P, limit=1)[0]
    page = Path(report_run.archive_path, "notebook.html")
    parser = Links()
    parser.feed(page.read_text())
    monthly = investor.read_monthly([P]).set_index("metric")
    assert parser.cells and "<script" not in page.read_text()
    published = paths.runs_dir() / "published" / "month_end_report" / P  # where --final copies the page
    for metric, (run_id, href) in parser.cells.items():
        row = monthly.loc[metric]
        want = row["run_id"] if row["source_pipeline"] == "investor_aggregate" else row["source_run_id"]
        assert run_id == want and href and not href.startswith(("/", "file:")), metric
        target = (page.parent / href).resolve()
        assert target == Path(runs.get_run(run_id).archive_path, "notebook.html").resolve(), metric
        assert target.is_file() and (published / href).resolve() == target, metric


def test_an_unknown_metric_and_a_month_not_closed_exit_2(closed):
    proc = workbook("explain", "--month", P, "dau")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "unknown metric 'dau' (did you mean dau_avg?)" in proc.stderr
    assert "ending_mrr_usd_cents" in proc.stderr and "stickiness" in proc.stderr
    proc = workbook("explain", "--month", "2026-08", "ending_mrr_usd_cents")
    assert proc.returncode == 2
    assert "2026-08: no investor figures: the month has not been closed" in proc.stderr

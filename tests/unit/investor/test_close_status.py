"""The month-end close without notebooks: the checklist, DRAFT/final, skipping, publication, report helpers.

A month is seeded straight into the warehouse (run records, marts with their writers, check results)
the way the pipelines leave it; tests/notebooks/test_close.py runs the real thing.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import test_investor as rows  # the same hand-made rows as the investor tests (tests/unit is on sys.path)

from helpers import checks
from helpers.checks.framework import CheckResult
from helpers.checks.store import record_results
from helpers.investor import aggregate as investor
from helpers.investor import close, pack, report, waves
from helpers.investor.inputs import load_inputs
from helpers.investor.metrics import PIPELINE, UPSTREAMS
from helpers.runs import records as runs
from helpers.runs.dag import RunItem
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
UTC = dt.UTC
P, DAY = "2026-09", "2026-09-30"
AS_OF = dt.datetime(2026, 10, 16, 12, tzinfo=UTC)
T0 = dt.datetime(2026, 11, 26, 9, tzinfo=UTC)  # the runner's wall clock: only orders runs


def run(
    pipeline: str, part: str, at: dt.datetime, *, status: str = "succeeded", as_of: dt.datetime = AS_OF
) -> str:
    rid = runs.start_run(pipeline, part, now=at, as_of=as_of, parameters={}, code_version="test")
    runs.finish_run(rid, status=status, now=at + dt.timedelta(minutes=1), error_summary=None if status == "succeeded"
                    else "cell 3: ValueError: boom")  # fmt: skip
    return rid


def result(pipeline: str, check_id: str, run_id: str | None, *, status: str = "pass", partition: str = P,
           kind: str = "domain") -> CheckResult:  # fmt: skip
    return CheckResult(check_id, pipeline, partition, status, "critical", f"{check_id}: {status}", {}, AS_OF, AS_OF,
                       run_id=run_id, kind=kind)  # fmt: skip


def put(table: str, rows: list[dict], rid: str, partition: dict) -> None:
    warehouse.replace_partition(table, pd.DataFrame(rows), partition, written_at=AS_OF.replace(tzinfo=None),
                                run_id=rid)  # fmt: skip


def seed_month(*, profit_status: str = "final", failing_check: bool = False) -> dict[str, str]:
    """A closed September: every upstream run, its marts and checks, then the investor aggregate."""
    ids = {
        "profit_aggregate": run("profit_aggregate", P, T0),
        "growth_aggregate": run("growth_aggregate", P, T0),
        "profit_unit": run("profit_unit", P, T0 + dt.timedelta(minutes=2)),
        "engagement_aggregate": run("engagement_aggregate", DAY, T0 + dt.timedelta(minutes=4)),
    }
    reasons = "hr_payroll: payroll for 2026-09 not delivered" if profit_status != "final" else ""
    put("profit_monthly", [rows.profit_row(profit_status, reasons)], ids["profit_aggregate"], {"period": P})
    put("growth_mrr_monthly", [rows.growth_row()], ids["growth_aggregate"], {"period": P})
    put("growth_accounts_monthly", rows.GROWTH_ACCOUNTS.assign(period=P).to_dict("records"),
        ids["growth_aggregate"], {"period": P})  # fmt: skip
    put("engagement_monthly", [rows.engagement_row()], ids["engagement_aggregate"], {"period": P})
    put("engagement_accounts_monthly", rows.ENGAGEMENT_ACCOUNTS.assign(period=P).to_dict("records"),
        ids["engagement_aggregate"], {"period": P})  # fmt: skip
    record_results(
        [
            result("profit_aggregate", "profit_aggregate.math_errors", ids["profit_aggregate"],
                   status="fail" if failing_check else "pass"),
            result("growth_aggregate", "growth_aggregate.skipped_stage", ids["growth_aggregate"]),
            result("engagement_aggregate", "engagement_aggregate.upstream_missing", ids["engagement_aggregate"],
                   partition=DAY),
        ]
    )  # fmt: skip
    ids["investor_aggregate"] = run("investor_aggregate", P, T0 + dt.timedelta(minutes=6))
    fig = investor.build(load_inputs(P, AS_OF), run_id=ids["investor_aggregate"])
    investor.write(fig)
    checks.run_checks(PIPELINE, P, as_of=AS_OF, run_id=ids["investor_aggregate"], context={"figures": fig})
    return ids


# ---------------------------------------------------------------- the checklist


def test_a_clean_month_is_final_with_every_item_owned(home):
    seed_month()
    status = close.close_status(P, AS_OF)
    assert status.final and status.label == "FINAL" and status.blockers == []
    table = status.checklist()
    assert set(table["section"]) == {"runs", "checks", "sources"}
    owners = dict(zip(table["pipeline"], table["owner"], strict=False))
    assert owners["profit_aggregate"] == "DE1/DE2" and owners["growth_aggregate"] == "DE3/DE4"
    assert owners["investor_aggregate"].startswith("team (on call: DE")
    assert {"investor_aggregate.revenue_vs_mrr", "investor_aggregate.engaged_accounts"} <= set(table["item"])
    assert status.sources == {p: "final" for p in UPSTREAMS}
    assert status.deadline == dt.datetime(2026, 10, 6, 4, tzinfo=UTC)  # 3rd business day, 23:59:59 New York


def test_a_failing_check_a_failed_run_and_a_provisional_source_block_the_close(home):
    ids = seed_month(profit_status="provisional", failing_check=True)
    status = close.close_status(P, AS_OF)
    assert not status.final and status.label == "DRAFT"
    items = {(b.section, b.pipeline): b for b in status.blockers}
    assert set(items) == {("checks", "profit_aggregate"), ("sources", "profit_aggregate")}
    assert items[("checks", "profit_aggregate")].item == "profit_aggregate.math_errors"
    assert items[("checks", "profit_aggregate")].owner == "DE1/DE2"
    assert "payroll" in items[("sources", "profit_aggregate")].detail
    # growth re-runs and fails: its run blocks, its figures are missing, the investor run is stale
    run("growth_aggregate", P, T0 + dt.timedelta(minutes=10), status="failed")
    status = close.close_status(P, AS_OF)
    lines = status.blocker_lines()
    assert any(line.startswith("growth_aggregate: latest run of 2026-09 succeeded: growth_aggregate 2026-09: failed")
               and "boom" in line for line in lines)  # fmt: skip
    assert any(line.startswith("growth_aggregate: figures for 2026-09 are final: missing") for line in lines)
    # a success after the investor run: the investor figures are older than what they read
    run("growth_aggregate", P, T0 + dt.timedelta(minutes=12))
    stale = [b for b in close.close_status(P, AS_OF).blockers if b.item.startswith("ran after")]
    assert stale and "growth_aggregate 2026-09" in stale[0].detail
    assert ids["investor_aggregate"]


def test_monitor_results_about_the_month_count_and_those_about_now_do_not(home):
    seed_month()
    record_results(
        [
            result("investor_aggregate", "investor_aggregate.sla.month_end_close", None, status="fail",
                   kind="sla_at_risk"),
            result("profit_aggregate", "profit_aggregate.freshness", None, status="fail", partition="current",
                   kind="freshness"),
        ]
    )  # fmt: skip
    [blocker] = close.close_status(P, AS_OF).blockers
    assert (blocker.section, blocker.item) == ("monitors", "investor_aggregate.sla.month_end_close 2026-09")


def test_a_critical_incident_about_the_month_blocks_and_one_about_now_is_listed(home):
    from helpers.core import config as cfgmod
    from helpers.oncall import alerts, escalation

    seed_month()
    about_month = result("profit_aggregate", "profit_aggregate.reconciles", None, status="fail")  # 2026-09
    about_now = result("growth_aggregate", "growth_aggregate.source_freshness.crm_accounts", None, status="fail",
                       partition="current", kind="source_freshness")  # fmt: skip
    alerts.sync([about_month, about_now])
    escalation.group(cfgmod.get(), escalation.WarehouseAlerts(), AS_OF)  # as the close does, paging no one
    status = close.close_status(P, AS_OF)
    listed = {i.item: i for i in status.items if i.section == "incidents"}
    assert len(listed) == 2 and not status.final
    blocking = [i for i in listed.values() if not i.ok]
    assert [i.pipeline for i in blocking] == ["profit_aggregate"] and blocking[0].owner == "DE1/DE2"
    assert "about 2026-09" in blocking[0].detail
    [now] = [i for i in listed.values() if i.ok]
    assert now.item.endswith("source crm_accounts is late or missing") and "about now" in now.detail
    assert [b.section for b in status.blockers] == ["incidents"]


# ---------------------------------------------------------------- idempotent and resumable


def test_a_run_is_skipped_only_when_it_succeeded_at_the_same_as_of_and_is_not_stale(home):
    engine = warehouse.get_engine()
    parts = close.close_partitions(P, AS_OF)
    item = RunItem("profit_unit", P, dt.date(2026, 9, 30))
    assert waves.needs_run(item, AS_OF, parts, history=False, engine=engine) == "no succeeded run"
    run("profit_unit", P, T0, status="failed")
    assert waves.needs_run(item, AS_OF, parts, history=False, engine=engine) == "latest run failed"
    run("profit_unit", P, T0 + dt.timedelta(minutes=2))
    assert waves.needs_run(item, AS_OF, parts, history=False, engine=engine) is None
    later = AS_OF + dt.timedelta(days=1)
    assert "latest success was as of" in waves.needs_run(item, later, parts, history=False, engine=engine)
    assert waves.needs_run(item, later, parts, history=True, engine=engine) is None  # comparison months
    run("profit_aggregate", P, T0 + dt.timedelta(minutes=5))  # its upstream succeeded after it started
    assert "profit_aggregate 2026-09" in waves.needs_run(item, AS_OF, parts, history=False, engine=engine)


def test_publish_refuses_a_draft_and_copies_a_final_report(home, tmp_path):
    from helpers.runs.orchestrate import Outcome

    seed_month(failing_check=True)
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "notebook.html").write_text("<html>FINAL</html>")
    rendered = Outcome(close.REPORT, P, "succeeded", "month_end_report-2026-09-x", None, str(archive))
    draft = close.close_status(P, AS_OF)
    with pytest.raises(
        ValueError, match="refused to publish 2026-09: profit_aggregate: profit_aggregate.math_errors"
    ):
        close.publish(draft, rendered, now=T0)
    final = close.CloseStatus(P, AS_OF, draft.reference_day, draft.deadline,
                              tuple(i for i in draft.items if i.ok), {})  # fmt: skip
    path = close.publish(final, rendered, now=T0)
    assert path == close.published_dir(P) / "investor_report_2026-09.html"
    assert path.read_text() == "<html>FINAL</html>"
    assert '"report_run_id": "month_end_report-2026-09-x"' in (path.parent / "publication.json").read_text()


# ---------------------------------------------------------------- report helpers


def test_headline_compares_with_the_month_before_and_a_year_before(home):
    seed_month()
    figures = investor.read_monthly()
    prev = figures.assign(period="2026-08")
    prev.loc[prev["metric"] == "revenue_usd_cents", ["value", "value_int"]] = [8_000_000.0, 8_000_000]
    prev.loc[prev["metric"] == "margin", "value"] = 0.30
    frame = pd.concat([figures, prev], ignore_index=True)
    kpis = report.headline(P, frame).set_index("metric")
    assert kpis.loc["revenue_usd_cents", "value"] == 10_000_000
    assert isinstance(kpis.loc["revenue_usd_cents", "value"], int)
    assert kpis.loc["revenue_usd_cents", "mom"] == "+25.0%" and kpis.loc["revenue_usd_cents", "yoy"] == "n/a"
    assert kpis.loc["margin", "mom"] == "+5.0 pp" and kpis.loc["margin", "text"] == "35.0%"
    html = report.headline_html(kpis.reset_index(), P)
    assert 'data-metric="revenue_usd_cents" data-value="10000000"' in html and "$100,000.00" in html
    assert report.change(None, 1, "usd_cents") == "n/a" and report.change(5, 0, "count") == "n/a"


def test_banner_says_draft_with_its_blockers_or_final(home):
    seed_month(failing_check=True)
    draft = close.close_status(P, AS_OF)
    html = report.banner_html(draft)
    assert 'data-status="DRAFT"' in html and "Not for distribution" in html and "math_errors" in html
    final = close.CloseStatus(P, AS_OF, draft.reference_day, draft.deadline, (draft.items[0],), {})
    assert 'data-status="FINAL"' in report.banner_html(
        final, published=True
    ) and "published" in report.banner_html(final, published=True)


def test_the_pack_period_is_the_last_closed_month_unless_named():
    assert (
        pack.pack_period("2026-11-10") == "2026-10" and pack.pack_period("2026-11-10", "2026-09") == "2026-09"
    )


# ---------------------------------------------------------------- the CLI's input checks


def test_cli_rejects_a_bad_month_and_a_month_that_has_not_started(home, capsys):
    from helpers.cli import main as cli

    assert cli.main(["close", "--month", "2026-13"]) == 2
    assert "--month: expected a month as YYYY-MM" in capsys.readouterr().err
    assert cli.main(["close", "--month", "2026-11", "--as-of", "2026-11-01T00:00:00Z"]) == 2
    assert "nothing of the month has happened" in capsys.readouterr().err

"""The status board's data on a small real warehouse: runs, freshness bands, on call, incidents, lineage."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers import checks
from helpers.board import health, html, status
from helpers.core import config as cfgmod
from helpers.oncall import escalation
from helpers.runs import records as runs
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.unit
UTC = dt.UTC
H = dt.timedelta(hours=1)
T = dt.datetime(2026, 11, 9, 6, 30, tzinfo=UTC)  # Monday, outside the month-end window
DAY = "2026-11-08"


def record_run(pipeline: str, label: str, status_: str, *, at: dt.datetime, error: str | None = None) -> str:
    """A finished run record, as the runner leaves it."""
    run_id = runs.start_run(pipeline, label, now=at, as_of=at, parameters={}, code_version=None)
    runs.finish_run(run_id, status=status_, now=at + H / 6, error_summary=error)
    return run_id


def archive(home, pipeline: str, label: str, run_id: str) -> None:
    folder = home / "runs" / pipeline / label / run_id
    folder.mkdir(parents=True)
    (folder / "notebook.html").write_text(f"<html><body>{run_id}</body></html>")


def test_a_failed_run_is_failed_in_its_cell_and_puts_its_downstream_at_risk(home):
    ok = record_run("smoke", DAY, "succeeded", at=T)
    bad = record_run("smoke_fail", DAY, "failed", at=T, error="source file is missing column 'amount'")
    archive(home, "smoke", DAY, ok)
    archive(home, "smoke_fail", DAY, bad)
    record_run("smoke_fail", "2026-11-05", "succeeded", at=T + H / 2)  # an older day, re-run later

    board = status.collect(T + H, now=T + 2 * H)
    assert board.errors == {}
    cell = board.grid.cell("smoke_fail", DAY)
    assert (cell.status, cell.run_id) == ("failed", bad)
    assert cell.href == f"../smoke_fail/{DAY}/{bad}/notebook.html"
    assert "missing column 'amount'" in cell.detail
    assert board.grid.cell("smoke", DAY).status == "succeeded"
    assert board.grid.cell("smoke", "2026-11-07").status == status.NO_RUN  # the day before: nothing ran
    assert [c.run_id for c in board.failed_cells()] == [bad]
    row = next(r for r in board.grid.rows if r.pipeline == "smoke_fail")
    assert len(row.cells) == status.GRID_COLUMNS and row.cells[-1].partition == "2026-11-09"
    assert (row.newest.partition, row.newest.run_id) == (DAY, bad)  # the newest partition, not the last run

    lineage = board.lineage
    assert lineage.node("smoke_fail").state == health.AT_RISK
    assert any("failed run of 2026-11-08" in r for r in lineage.node("smoke_fail").reasons())
    downstream = lineage.node("t_after_fail")
    assert downstream.state == health.AT_RISK
    assert any(r.startswith("upstream smoke_fail: failed run of 2026-11-08") for r in downstream.reasons())
    assert not any("smoke_fail" in r for r in lineage.node("smoke").reasons())  # not its downstream
    assert not any("smoke_fail" in r for r in lineage.node("t_down").reasons())


def test_the_board_only_reads(home):
    record_run("smoke_fail", DAY, "failed", at=T, error="boom")
    tables = ("check_results", "alerts", "incidents", "pipeline_runs")

    def counts() -> dict[str, int]:
        with warehouse.get_engine().connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}

    before = counts()
    status.collect(T + H, now=T + H)
    assert counts() == before  # the monitors were evaluated, nothing recorded, no alert opened


def write_smoke(day: str, written_at: dt.datetime, run_id: str) -> None:
    frame = pd.DataFrame({"run_date": day, "k": range(3), "amount_cents": [100, 200, 300]})
    warehouse.replace_partition("smoke_table", frame, {"run_date": day}, written_at=written_at, run_id=run_id)


@pytest.mark.parametrize(("hours", "band"), [(17, "fresh"), (19, "late"), (25, "breached")])
def test_freshness_bands_of_a_mart_and_a_source(home, hours, band):
    write_smoke(DAY, T, record_run("smoke", DAY, "succeeded", at=T - 5 * H))  # the write counts, not the run
    landing.write_delivery("fx_rates", DAY, pd.DataFrame({"rate": [1.0]}), arrived_at=T)

    board = status.collect(T + hours * H, now=T + hours * H)
    by = {(f.kind, f.name): f for f in board.freshness}
    mart, source = by[("mart", "smoke")], by[("source", "fx_rates")]
    assert (mart.band, source.band) == (band, band)
    assert mart.updated(board.as_of) == f"updated {health.format_age(hours * H)} ago"
    assert mart.last_update == T and "smoke_table" in mart.tables
    assert set(source.readers) == {"profit_aggregate", "profit_unit"}
    assert (source.warn_hours, source.critical_hours) == (18, 24)
    fx_risk = any("fx_rates" in r for r in board.lineage.node("profit_aggregate").reasons())
    assert fx_risk == (band != "fresh")
    assert board.lineage.node("fx_rates").state == band
    never = by[("mart", "weekly_metrics_review")]
    assert (never.band, never.updated(board.as_of)) == ("breached", "no data yet")


def test_on_call_now_and_next_with_the_holiday_backup(home):
    thanksgiving_week = dt.datetime(2026, 11, 24, 15, tzinfo=UTC)  # Tue 10:00 New York
    o = status.collect(thanksgiving_week, now=thanksgiving_week).oncall
    assert (o.engineer, o.next_engineer) == ("DE3", "DE4")  # week 46 of the rotation DE1..DE4
    assert o.handover == dt.datetime(2026, 11, 30, 14, tzinfo=UTC)  # Monday 09:00 EST
    assert o.local["handover"] == "Mon 30 Nov 09:00 EST" and o.name == "Data Engineer 3"
    assert o.holiday_week and any(h.startswith("Thanksgiving") for h in o.holidays)
    by = {r.pipeline: r for r in o.responders}
    assert (by["profit_aggregate"].first, by["profit_aggregate"].backup) == ("DE3", "DE2")
    engagement = by["engagement_aggregate"]  # DE1/DE3: its secondary is on call
    assert (engagement.first, engagement.backup) == ("DE3", "DE1") and "DE3 is on call" in engagement.reason
    assert all(r.holiday_backup and r.backup != r.first for r in o.responders)

    plain = status.collect(T, now=T).oncall
    assert not plain.holiday_week and not any(r.holiday_backup for r in plain.responders)
    assert plain.engineer != plain.next_engineer and plain.handover > T >= plain.since


def test_open_incidents_with_owner_deadline_and_runbook(home):
    record_run("smoke_fail", DAY, "failed", at=T, error="boom")
    checks.evaluate_monitors(T + H, pipelines=["smoke_fail"])
    escalation.group(cfgmod.get(), escalation.WarehouseAlerts(), T + H)

    board = status.collect(T + 3 * H, now=T + 3 * H)
    found = [i for i in board.incidents if i.pipeline == "smoke_fail"]
    assert len(found) == 1
    inc = found[0]
    assert inc.severity == "critical" and inc.owner == "DE4/DE3"  # the growth_daily template's owners
    assert inc.runbook == "notebooks/runbooks/backfill.ipynb" and inc.runbook_name == "backfill"
    assert inc.fix_deadline > board.as_of and inc.deadline_text(board.as_of).endswith("left")
    assert inc.as_json(board.as_of)["age"] == "2 h 0 min"
    reasons = board.lineage.node("t_after_fail").reasons()
    assert any(f"incident {inc.incident_id} open (critical)" in r for r in reasons)


def test_the_close_section_names_the_month_being_closed_and_its_deadline(home):
    as_of = dt.datetime(2026, 11, 2, 15, tzinfo=UTC)  # Monday: October's close is on (final by Wed 4th)
    close = status.collect(as_of, now=as_of).close
    assert [c.period for c in close] == ["2026-10"]  # September was never closed: no second row
    c = close[0]
    assert (c.state, c.role) == ("not started", "being closed")
    assert c.deadline_day == dt.date(2026, 11, 4) and c.business_days_left == 2
    assert c.deadline_text() == "due Wed 04 Nov: 2 business days left"
    assert c.missing == ("DE1", "DE2", "DE3", "DE4") and c.blockers > 0


class Sections(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.cells: dict[tuple[str, str], dict[str, str | None]] = {}
        self.links: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.ids.append(a.get("id") or "")
        if tag == "td" and "sb-cell" in (a.get("class") or ""):
            self.cells[(a["data-pipeline"] or "", a["data-partition"] or "")] = a
        if tag == "a":
            self.links.append(a.get("href") or "")


def test_the_page_has_every_section_and_links_the_failed_run(home):
    bad = record_run("smoke_fail", DAY, "failed", at=T, error="boom")
    archive(home, "smoke_fail", DAY, bad)
    board, path = html.write_board(T + H, now=T + H)
    assert path == home / "runs" / "status" / "index.html"
    text = path.read_text()
    page = Sections(text)
    assert page.ids == list(status.SECTIONS)
    assert page.cells[("smoke_fail", DAY)]["data-status"] == "failed"
    assert f"../smoke_fail/{DAY}/{bad}/notebook.html" in page.links and "../index.html" in page.links
    assert '<meta http-equiv="refresh" content="60">' in text
    assert "http://" not in text and "https://" not in text  # nothing fetched from anywhere
    assert not list(path.parent.glob(".*partial"))  # written under a temporary name, renamed
    index = (home / "runs" / "index.html").read_text()  # the run history links the board from now on
    assert 'href="status/index.html"' in index and "not written yet" not in index


def test_a_section_that_cannot_be_read_says_so_and_the_others_still_show(home, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("schedule store down")

    monkeypatch.setattr(status, "collect_oncall", broken)
    board = status.collect(T, now=T)
    assert board.errors == {"oncall": "RuntimeError: schedule store down"}
    assert board.grid is not None and board.lineage is not None
    assert "this section could not be read: RuntimeError: schedule store down" in html.render(board)

"""A closed month is signed off, locked, reopened and restated: the whole story through the real CLI,
on SQLite and on PostgreSQL, on a small demo company.

close -> sign-offs (one missing: --final refused, naming who) -> --final publishes version 1, its PDF
beside it, and locks the month -> a run on it is refused with exit code 5 -> reopen withdraws the
report and its PDF (kept) -> a late expense re-runs Profit and the investor aggregate: every sign-off
is void and its engineer told -> new sign-offs -> --final, with Chromium hidden, publishes version 2
(no PDF: the close says how to install Chromium), opening with a Restated table.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing, need_service
from helpers.cli.main import main
from helpers.core import browser
from helpers.investor import aggregate as investor
from helpers.oncall.notify import list_notifications
from helpers.runs import records as runs
from helpers.storage import landing

pytestmark = [pytest.mark.integration, pytest.mark.notebooks]
P = "2026-09"
AS_OF = "2026-10-16T12:00:00+00:00"
TEAM = ["DE1", "DE2", "DE3", "DE4"]
LINE = "2026-09|operations|recruiting|USD"
CORRECTION = 1_234_500  # cents: a recruiting expense that arrived after the first close


class Report(HTMLParser):
    """The banner's status, and the Restated rows (metric -> old, new, the runs' cell) in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.status: str | None = None
        self.order: list[str] = []  # ids of the sections, in page order
        self.restated: dict[str, dict[str, str]] = {}
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "report-status":
            self.status = a.get("data-status")
        if a.get("id") in ("report-status", "restated", "headline"):
            self.order.append(str(a["id"]))
        if tag == "tr" and "data-old" in a:
            self._row = str(a["data-metric"])
            self.restated[self._row] = {"old": a["data-old"] or "", "new": a["data-new"] or "", "cells": "",
                                        "runs": a.get("data-runs") or ""}  # fmt: skip

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self.restated[self._row]["cells"] += data + "|"

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None


def report_of(path: str | Path) -> Report:
    parser = Report()
    parser.feed(Path(path).read_text())
    return parser


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code, out, err = cli(capsys, *argv, "--json")
    assert out.strip(), err[-3000:]
    return code, json.loads(out)


def close(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    return cli_json(
        capsys, "close", "--month", P, "--as-of", AS_OF, "--by", "DE1", "-q", "--history", "0", *extra
    )


def late_expense(root: Path) -> None:
    """A September recruiting expense arrives late, and Finance re-delivers its ledger booking it.

    Both deliveries arrived before ``AS_OF`` (so a run at ``AS_OF`` sees them) but after the first close.
    """
    arrived = dt.datetime(2026, 10, 16, 11, tzinfo=dt.UTC)
    sample = pd.concat(
        [pd.read_parquet(f) for f in sorted((root / "ops_expenses").glob("dt=2026-09-*/part-*.parquet"))]
    )
    expense = sample[sample["currency"] == "USD"].head(1).assign(
        expense_id="EXP-LATE-0001", incurred_date=dt.date(2026, 9, 20), category="recruiting",
        submitted_at=pd.Timestamp("2026-09-21T10:00:00Z"), amount=CORRECTION,
    )  # fmt: skip
    landing.write_delivery("ops_expenses", "2026-09-21", expense, root=root, arrived_at=arrived)
    ledger = pd.read_parquet(root / "finance_ledger" / "dt=2026-09-01" / "part-00000.parquet")
    ledger.loc[ledger["line_id"] == LINE, ["amount_local", "amount_usd"]] += CORRECTION
    ledger["booked_at"] = pd.Timestamp("2026-10-16T10:00:00Z")
    landing.write_delivery("finance_ledger", "2026-09-01", ledger, root=root, arrived_at=arrived)


def figure(metric: str) -> int:
    row = investor.read_monthly([P]).set_index("metric").loc[metric]
    return int(row["value_int"])


@pytest.fixture
def company(warehouse_url, home, tmp_path_factory) -> Path:
    """A writable copy of a small demo company's landing zone in ``home`` (the story re-delivers a file)."""
    cached = demo_landing(tmp_path_factory, accounts=60, months=3, seed=7, end="2026-10-31", events=True)
    root = home / "data" / "landing"
    shutil.copytree(cached, root)
    return root


def test_sign_off_lock_reopen_and_restate_a_month(company, capsys):
    # 1. the close: FINAL-able, nobody has signed off
    code, first = close(capsys)
    assert code == 0 and first["status"] == "FINAL", [b["detail"] for b in first["checklist"]["blockers"]]
    assert first["signoffs"] == [] and first["missing_signoffs"] == TEAM
    investor_run = next(o["run_id"] for o in first["runs"] if o["pipeline"] == "investor_aggregate")

    # 2. three sign-offs, bound to the runs and figures; --final refuses, naming who is missing
    for who in TEAM[:3]:
        code, signed = cli_json(capsys, "signoff", "--month", P, "--by", who, "--note", "checked vs Finance")
        assert code == 0 and signed["recorded"]["runs"]["investor_aggregate"] == investor_run
    assert len(signed["recorded"]["figures"]) == len(investor.read_monthly([P])) and signed["missing"] == [
        "DE4"
    ]
    code, refused = close(capsys, "--final")
    assert code == 1 and refused["published"] is None and refused["version"] is None
    assert refused["refused"].startswith("refused to publish 2026-09: no valid sign-off from DE4")

    # 3. the last sign-off: --final publishes version 1 and locks the month
    assert cli_json(capsys, "signoff", "--month", P, "--by", "DE4")[0] == 0
    code, v1 = close(capsys, "--final")
    assert code == 0 and v1["status"] == "FINAL" and v1["version"] == 1 and v1["refused"] is None
    published = Path(v1["published"])
    v1_page = published.read_text()
    assert report_of(published).status == "FINAL" and "restated" not in report_of(published).order
    assert {s["engineer"]: s["status"] for s in v1["signoffs"]} == dict.fromkeys(TEAM, "valid")
    chromium = browser.find_chromium() is not None
    pdf = published.with_name(f"investor_report_{P}.pdf")
    meta = json.loads((published.parent / "publication.json").read_text())
    if chromium:  # the published report, printed beside it
        assert v1["pdf"] == str(pdf) and v1["pdf_note"] is None and meta["pdf"] == pdf.name
        assert pdf.read_bytes()[:5] == b"%PDF-" and browser.pdf_pages(pdf) >= 1
    else:
        assert v1["pdf"] is None and browser.INSTALL_HINT in v1["pdf_note"] and meta["pdf"] is None
    code, listed = cli_json(capsys, "publications", "--month", P)
    assert [(p["version"], p["status"], p["pdf"]) for p in listed] == [
        (1, "published", str(pdf) if chromium else None)
    ]

    # 4. a run on the locked month is refused before it starts (exit 5), naming who signed off and when
    before = len(runs.list_runs(pipeline="profit_aggregate"))
    for pipeline, date in (("profit_aggregate", P), ("engagement_aggregate", "2026-09-15")):
        code, _out, err = cli(capsys, "run", pipeline, "--date", date, "--as-of", AS_OF)
        assert code == 5, err
        assert f"locked: {pipeline} {date} belongs to 2026-09, published FINAL (version 1)" in err
        assert all(f"{who} at " in err for who in TEAM) and "workbook reopen --month 2026-09" in err
    assert len(runs.list_runs(pipeline="profit_aggregate")) == before
    code, again = close(capsys, "--final")
    assert (
        code == 5 and again["runs"] == [] and "refused to publish 2026-09 again: locked" in again["refused"]
    )

    # 5. reopen: unlocked, the report withdrawn (kept, byte-identical), the team told
    code, reopened = cli_json(capsys, "reopen", "--month", P, "--by", "DE1", "--reason", "late expense")
    assert code == 0 and reopened["withdrawn_version"] == 1 and reopened["unlocked"] > 35
    kept = Path(reopened["withdrawn_to"])
    assert not published.exists() and kept.read_text() == v1_page
    assert json.loads((kept.parent / "publication.json").read_text())["status"] == "withdrawn"
    assert not pdf.exists() and kept.with_suffix(".pdf").exists() == chromium  # the PDF is withdrawn with it
    told = {n["recipient"] for n in list_notifications() if n["alert_id"] == f"reopen:{P}:1"}
    assert set(TEAM) | {"lead"} <= told

    # 6. a late expense (and Finance's ledger booking it): Profit and the investor aggregate re-run;
    #    the figures change, every sign-off is void with the run that changed it, each engineer told
    late_expense(company)
    old_operations = figure("operations_usd_cents")
    code, profit = cli_json(capsys, "run", "profit_aggregate", "--date", P, "--as-of", AS_OF, "-q")
    assert code == 0, profit
    code, changed = cli_json(capsys, "run", "investor_aggregate", "--date", P, "--as-of", AS_OF, "-q")
    assert code == 0 and figure("operations_usd_cents") == old_operations + CORRECTION
    code, listing = cli_json(capsys, "signoff", "--month", P)
    assert [(s["status"], s["voided_by_run"]) for s in listing["signoffs"]] == [
        ("void", changed["run_id"])
    ] * 4
    assert listing["signoffs"][0]["void_detail"]["operations_usd_cents"] == {
        "old": old_operations, "new": old_operations + CORRECTION, "source_run": profit["run_id"]
    }  # fmt: skip
    told = {n["recipient"] for n in list_notifications() if n["alert_id"].startswith(f"signoff:{P}:")}
    assert told == set(TEAM)

    # 7. the close catches up (what read Profit re-runs); new sign-offs; --final publishes version 2
    code, third = close(capsys)
    assert code == 0 and third["status"] == "FINAL", third["checklist"]["blockers"]
    for who in TEAM:
        assert cli_json(capsys, "signoff", "--month", P, "--by", who)[0] == 0
    # no Chromium: the close still publishes, and says how to get PDFs
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(browser, "find_chromium", lambda: None)
        code, out, err = cli(capsys, "close", "--month", P, "--as-of", AS_OF, "--by", "DE1", "-q", "--history",
                             "0", "--final")  # fmt: skip
    assert code == 0 and f"published (version 2): {published}\n" in out and "pdf: " not in out
    assert err.count(browser.INSTALL_HINT) == 1 and "the HTML is published" in err
    assert json.loads((published.parent / "publication.json").read_text())["pdf"] is None and not pdf.exists()
    code, listed = cli_json(capsys, "publications", "--month", P)
    assert [(p["version"], p["status"], p["pdf"] is None) for p in listed] == [
        (1, "withdrawn", not chromium),
        (2, "published", True),
    ]
    v2 = {"version": 2, "published": str(published)}
    page = report_of(v2["published"])
    assert page.status == "FINAL" and page.order[:3] == ["report-status", "restated", "headline"]
    row = page.restated["operations_usd_cents"]
    assert (int(row["old"]), int(row["new"])) == (old_operations, old_operations + CORRECTION)
    assert profit["run_id"] in row["runs"] and "Profit figures recomputed" in row["cells"]
    assert {"total_cost_usd_cents", "profit_usd_cents"} <= set(page.restated)
    assert "revenue_usd_cents" not in page.restated  # unchanged figures are not restated

    # 8. the audit log has every event of the month, in order, with who
    code, events = cli_json(capsys, "audit", "--month", P)
    assert code == 0
    assert [e["event"] for e in events] == [
        "close", "signoff", "signoff", "signoff", "close", "refused", "signoff", "close", "publish",
        "refused", "reopen", "void", "void", "void", "void", "close", "signoff", "signoff", "signoff",
        "signoff", "close", "publish",
    ]  # fmt: skip
    assert [e["who"] for e in events if e["event"] in ("void", "reopen")] == ["DE1", *TEAM]
    assert "published FINAL version 2" in events[-1]["what"]
    if not chromium:
        need_service(f"headless Chromium for the published PDF ({browser.INSTALL_HINT})")

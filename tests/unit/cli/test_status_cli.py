"""`workbook status` (100 columns, --json, the page), `serve`'s address rule, and the page after a tick."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from helpers.board import status
from helpers.cli import board as cli_board
from helpers.cli.main import main
from helpers.runbooks import tick
from helpers.runs import records as runs

pytestmark = pytest.mark.unit
T = dt.datetime(2026, 11, 9, 6, 30, tzinfo=dt.UTC)
AS_OF = "2026-11-09T08:00:00Z"
LONG_ERROR = (
    "ValueError: source file for 2026-11-08 is missing column 'amount' " + "and much more context " * 8
)


@pytest.fixture
def failed_run(home) -> str:
    run_id = runs.start_run("smoke_fail", "2026-11-08", now=T, as_of=T, parameters={}, code_version=None)
    runs.finish_run(run_id, status="failed", now=T + dt.timedelta(minutes=5), error_summary=LONG_ERROR)
    return run_id


def test_status_fits_100_columns_and_writes_the_page(home, failed_run, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "240")  # a wide terminal: the board still keeps to 100 columns
    assert main(["status", "--as-of", AS_OF]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    text = [line for line in lines if not line.startswith("status board: /")]  # a path is as long as it is
    assert max(len(line) for line in text) <= 100, max(text, key=len)
    for title in (
        "Runs:",
        "Freshness:",
        "On call now:",
        "Open incidents",
        "Month-end close",
        "Lineage: at risk",
    ):
        assert any(title in line for line in lines), title
    row = next(line for line in lines if line.startswith("smoke_fail "))
    assert "..............F" not in row and row.split()[2].endswith("F.")  # 11-08 failed, 11-09 no run yet
    assert any(line.startswith("  failed: smoke_fail 2026-11-08: ValueError") for line in lines)
    page = home / "runs" / "status" / "index.html"
    assert lines[-1] == f"status board: {page}" and failed_run in page.read_text()


def test_status_json_has_every_section(home, failed_run, capsys):
    assert main(["status", "--as-of", AS_OF, "--json", "--no-html"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(status.SECTIONS) <= set(data) and data["page"] is None and data["errors"] == {}
    assert data["as_of"] == "2026-11-09T08:00:00+00:00"
    cells = {(c["pipeline"], c["partition"]): c for r in data["grid"]["rows"] for c in r["cells"]}
    assert cells[("smoke_fail", "2026-11-08")]["status"] == "failed"
    assert data["oncall"]["engineer"] in ("DE1", "DE2", "DE3", "DE4")
    assert "t_after_fail" in data["lineage"]["at_risk"]
    assert not (home / "runs" / "status" / "index.html").exists()  # --no-html


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.3.4.5", True), ("localhost", True),
                                                ("::1", True), ("0.0.0.0", False), ("192.168.1.10", False),
                                                ("example.org", False)])  # fmt: skip
def test_loopback_addresses(host, loopback):
    assert cli_board.is_loopback(host) is loopback


def test_serve_refuses_a_public_address_without_public(home, capsys):
    assert main(["serve", "--bind", "0.0.0.0", "--port", "0"]) == 2
    assert "--public" in capsys.readouterr().err
    assert not (home / "runs" / "status").exists()  # refused before anything was written


def test_tick_rewrites_the_page_and_a_broken_board_is_only_a_warning(home, monkeypatch, capsys):
    monkeypatch.setattr(tick, "scheduler_hooks", lambda: ())
    assert main(["tick", "--as-of", AS_OF, "-q"]) == 0
    page = home / "runs" / "status" / "index.html"
    assert "As of 2026-11-09 08:00 UTC" in page.read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(status, "collect", broken)
    monkeypatch.setattr("helpers.board.html.collect", broken)
    assert main(["tick", "--as-of", AS_OF, "-q"]) == 0  # the tick itself is fine
    assert "warning: status board not written: RuntimeError: disk full" in capsys.readouterr().err
    assert "As of 2026-11-09 08:00 UTC" in page.read_text()  # the previous page stays whole

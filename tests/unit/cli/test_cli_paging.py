"""ack / resolve / timeline / alerts at the command line: several ids, refusals, exit codes, 100 columns."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from helpers.checks import store as checkstore
from helpers.checks.framework import CheckResult
from helpers.cli import oncall as cli_oncall
from helpers.cli.main import main
from helpers.oncall import alerts

pytestmark = pytest.mark.unit
AS_OF = dt.datetime(2026, 11, 10, 8, 0, tzinfo=dt.UTC)
LONG = "profit_monthly is 852 h old: the last write was 2026-10-31 06:00Z, expected within 26 h " * 2


def result(n: int, status: str = "fail", at: dt.datetime = AS_OF) -> CheckResult:
    return CheckResult(
        check_id=f"profit_aggregate.freshness_{n}",
        pipeline="profit_aggregate",
        partition="2026-11",
        status=status,
        severity="critical",
        summary=LONG if status == "fail" else "fresh",
        evidence={},
        as_of=at,
        evaluated_at=at,
        catalogue_id="stale_data",
        runbook="notebooks/runbooks/profit/stale_data.ipynb",
    )


@pytest.fixture
def opened(home, monkeypatch):
    """Twelve open alerts (ids 1..12) whose checks fail in the stored results; no real channel."""
    for name in ("WORKBOOK_SLACK_WEBHOOK_URL", "WORKBOOK_SMTP_URL", "WORKBOOK_PAGERDUTY_ROUTING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    failing = [result(n) for n in range(12)]
    checkstore.record_results(failing)
    changes = alerts.sync(failing)
    return [str(c.alert_id) for c in changes]


def test_ack_takes_several_ids_with_a_note(opened, capsys):
    assert (
        main(
            ["ack", opened[0], opened[1], "--by", "DE1", "--note", "on it", "--as-of", "2026-11-10T08:10:00Z"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"alert {opened[0]}: acknowledged by DE1" in out and "(on it)" in out
    assert {alerts.get_alert(int(i)).status for i in opened[:2]} == {"acknowledged"}
    assert alerts.get_alert(int(opened[2])).status == "open"


def test_unknown_ids_exit_2_naming_them_and_change_nothing(opened, capsys):
    assert main(["ack", opened[0], "999", "--by", "DE1"]) == 2
    err = capsys.readouterr().err
    assert "no alert 999" in err and "`workbook alerts` lists them" in err
    assert alerts.get_alert(int(opened[0])).status == "open"  # nothing was changed
    assert main(["resolve", "999", "--note", "x"]) == 2
    assert main(["timeline", "999"]) == 2
    assert "no alert 999" in capsys.readouterr().err
    assert main(["ack", "abc"]) == 2


def test_resolve_is_refused_while_the_check_still_fails_unless_forced(opened, capsys):
    first, second = opened[0], opened[1]
    assert main(["resolve", first, second, "--note", "restarted", "--as-of", "2026-11-10T09:00:00Z"]) == 2
    err = capsys.readouterr().err
    assert f"alert {first}: its check profit_aggregate.freshness_0 (2026-11) still fails" in err
    assert f"alert {second}: its check profit_aggregate.freshness_1" in err and "--force" in err
    assert alerts.get_alert(int(first)).status == "open"
    checkstore.record_results([result(0, "pass", AS_OF + dt.timedelta(hours=1))])  # data resumed for one
    assert main(["resolve", first, "--note", "restarted", "--as-of", "2026-11-10T09:00:00Z"]) == 0
    assert alerts.get_alert(int(first)).status == "resolved"
    capsys.readouterr()
    assert (
        main(
            ["resolve", second, "--force", "--note", "known gap", "--as-of", "2026-11-10T09:00:00Z", "--json"]
        )
        == 0
    )
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["alert_id"] == second and "forced while its check still failed" in entry["detail"]
    assert alerts.get_alert(int(second)).status == "resolved"


def test_timeline_takes_json(opened, capsys):
    assert main(["ack", opened[3], "--by", "DE2", "--as-of", "2026-11-10T08:10:00Z"]) == 0
    capsys.readouterr()
    assert main(["timeline", opened[3], "--json"]) == 0
    steps = [e["step"] for e in json.loads(capsys.readouterr().out)]
    assert "ack" in steps


def test_alerts_fit_100_columns_ids_as_numbers_ages_readable(opened, capsys):
    assert main(["alerts", "--as-of", "2026-11-13T12:30:00Z"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(ln) for ln in lines) <= 100
    ids = [ln.split()[0] for ln in lines if ln.split() and ln.split()[0].isdigit()]
    assert ids == sorted(ids, key=int) and len(ids) == 12  # one line each, 9 before 10
    assert all("3 d 4 h" in ln for ln in lines if ln.split() and ln.split()[0].isdigit())
    assert all(ln.rstrip().endswith("…") for ln in lines if ln.split() and ln.split()[0].isdigit())
    assert main(["alerts", "--wide", "--as-of", "2026-11-13T12:30:00Z"]) == 0
    assert LONG.strip() in capsys.readouterr().out  # --wide: everything
    assert main(["alerts", "--json", "--as-of", "2026-11-13T12:30:00Z"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [a["alert_id"] for a in data] == sorted(int(i) for i in opened) and data[0]["age"] == "3 d 4 h"


def test_escalation_rows_sort_alert_ids_as_numbers():
    at = AS_OF
    entries = [
        SimpleNamespace(alert_id=i, at=at, step="notify", who="DE1", channel="console", detail="d")
        for i in ("10", "9", "100")
    ]
    assert [r["alert_id"] for r in cli_oncall._entry_rows(entries)] == ["9", "10", "100"]

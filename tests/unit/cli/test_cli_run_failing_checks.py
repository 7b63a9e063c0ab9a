"""`workbook run` says which checks a succeeded run left failing (a quarantined delivery, say)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json

import pytest
import sqlalchemy as sa

from helpers.checks import store
from helpers.runs import runner
from helpers.storage.warehouse import get_engine

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 16, 12)
CHANGED = "landing file changed after arrival: /x/billing_invoices/dt=2026-10-10/part-00000.parquet"


def _record(run_id: str, check_id: str, status: str, severity: str, summary: str) -> None:
    with get_engine().begin() as conn:
        conn.execute(
            sa.insert(store.check_results).values(
                check_id=check_id, pipeline="profit_aggregate", partition="2026-10", run_id=run_id,
                evaluated_at=NOW, as_of=NOW, status=status, severity=severity, kind="landing",
                blocking=False, summary=summary, evidence="{}",
            )
        )  # fmt: skip


@pytest.fixture
def fake_run(home, monkeypatch):
    def run_pipeline(pipeline, date, **_kw):
        _record("r1", "profit_aggregate.landing_integrity", "fail", "critical", CHANGED)
        _record("r1", "profit_aggregate.nulls", "fail", "warning", "2 NULL amounts")
        _record("r1", "profit_aggregate.row_count", "pass", "warning", "ok")
        _record("r0", "profit_aggregate.landing_integrity", "fail", "critical", "another run's")
        return runner.RunResult("r1", pipeline, date, "succeeded", None)

    monkeypatch.setattr(runner, "run_pipeline", run_pipeline)


def _main(*argv: str) -> tuple[int, str, str]:
    from helpers.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_a_succeeded_run_names_its_failing_checks_critical_first(fake_run):
    code, out, err = _main("run", "profit_aggregate", "--date", "2026-10")
    assert code == 0 and "profit_aggregate 2026-10: succeeded  run r1" in out
    lines = err.splitlines()
    assert lines[0] == f"  critical check failing: profit_aggregate.landing_integrity: {CHANGED}"
    assert lines[1] == "  warning check failing: profit_aggregate.nulls: 2 NULL amounts"
    assert "another run's" not in err and "row_count" not in err


def test_json_lists_the_failing_checks(fake_run):
    code, out, _ = _main("run", "profit_aggregate", "--date", "2026-10", "--json")
    failing = json.loads(out)["failing_checks"]
    assert [c["check_id"] for c in failing] == [
        "profit_aggregate.landing_integrity",
        "profit_aggregate.nulls",
    ]
    assert failing[0]["summary"] == CHANGED

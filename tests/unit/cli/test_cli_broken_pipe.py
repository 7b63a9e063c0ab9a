"""A reader that goes away (`workbook alerts --json | head -1`) ends the command quietly, exit 1."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from helpers.checks.framework import CheckResult
from helpers.oncall import alerts

pytestmark = pytest.mark.unit
AS_OF = dt.datetime(2026, 11, 10, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def many_alerts(home):
    """Enough alerts that their JSON (about 1.5 MB) is far more than a pipe holds."""
    alerts.sync(
        [
            CheckResult(
                check_id=f"profit_aggregate.check_{n}",
                pipeline="profit_aggregate",
                partition="2026-11",
                status="fail",
                severity="warning",
                summary=f"check {n} failed",
                evidence={"sample": "x" * 3000},
                as_of=AS_OF,
                evaluated_at=AS_OF,
            )
            for n in range(500)
        ]
    )
    return home


def test_alerts_json_into_head_ends_quietly_with_exit_1(many_alerts):
    workbook = [sys.executable, "-m", "helpers.cli.main"]
    cmd = " ".join(workbook) + ' alerts --json | head -1 >/dev/null; echo "rc=${PIPESTATUS[0]}" >&2'
    proc = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "rc=1"


def test_a_reader_that_closes_at_once_gives_no_traceback(many_alerts):
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.cli.main", "alerts", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    proc.stdout.close()  # the reader is gone before the first byte
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert err == ""

"""A notebook run through the runner prints no "running over TCP without encryption" warning."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from helpers.runs import runner

pytestmark = pytest.mark.notebooks
REPO = Path(__file__).resolve().parents[2]


def test_a_notebook_run_prints_no_tcp_warning(home, capfd):
    result = runner.execute_notebook(
        REPO / "tests" / "fixtures" / "notebooks" / "smoke.ipynb",
        home / "runs" / "smoke-run",
        {},
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    assert result.status == "succeeded"
    assert "without encryption" not in capfd.readouterr().err

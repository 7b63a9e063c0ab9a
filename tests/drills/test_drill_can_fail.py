"""A drill must be able to fail: one whose runbook is missing is reported failed, with the reason.

Apart from ``test_drills.py`` so that pytest-xdist (``--dist loadfile``) can run it beside the
long ``drill --all`` test.
"""

from __future__ import annotations

import dataclasses

import pytest

from helpers.demo import drill


@pytest.mark.slow
@pytest.mark.notebooks
def test_a_drill_whose_runbook_is_missing_is_reported_failed(tmp_path):
    spec = dataclasses.replace(drill.SPECS["stale_data"], runbook="profit/no_such_runbook_for_drills")
    result = drill.run_drill("stale_data", workdir=tmp_path, spec=spec)
    assert result.detected.ok, result.detected  # the fault was injected and seen ...
    assert not result.passed and not result.repaired.ok  # ... but nothing could repair it
    assert "no_such_runbook_for_drills" in (result.error or ""), result.error

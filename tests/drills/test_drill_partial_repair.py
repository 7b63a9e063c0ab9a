"""``stale_data`` verifies the complete expected state (issue 20): when the source recovers for only
part of the days it withheld, the runbook's Verify fails (a delivery due is still missing) although the
re-delivered days make the source look fresh; once every day arrives, the drill passes.
"""

from __future__ import annotations

import dataclasses

import pytest

from helpers.demo import drill
from helpers.demo.drill_specs import Redelivery


@pytest.mark.slow
@pytest.mark.notebooks
def test_stale_data_verify_fails_until_every_withheld_day_arrived(tmp_path):
    spec = drill.SPECS["stale_data"]
    (heal,) = spec.heal
    baselines = drill.Baselines(tmp_path)
    first_days = Redelivery(heal.source, heal.days[:3])  # the source recovers for three of six days
    partial = drill.run_drill("stale_data", workdir=tmp_path, baselines=baselines,
                              spec=dataclasses.replace(spec, heal=(first_days,)))  # fmt: skip
    assert partial.detected.ok and partial.diagnosed.ok, (partial.detected, partial.diagnosed)
    assert partial.repaired.diffs and not all(d["ok"] for d in partial.repaired.diffs)  # revenue short
    verification = partial.repaired.verification
    assert verification["passed"] is False, verification
    (missing,) = [r for r in verification["results"] if r["check_id"].endswith(".deliveries_complete")]
    assert missing["status"] == "fail" and all(d in missing["summary"] for d in heal.days[3:]), missing
    full = drill.run_drill("stale_data", workdir=tmp_path, baselines=baselines, spec=spec)
    assert full.passed, (full.repaired, full.error)
    (complete,) = [
        r for r in full.repaired.verification["results"] if r["check_id"].endswith(".deliveries_complete")
    ]
    assert complete["status"] == "pass", complete

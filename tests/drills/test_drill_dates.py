"""A drill passes at another month and size than the catalogue's (``workbook drill ID --date --param``),
and its JSON names the fault actually injected, the month and the size.

Apart from ``test_drills.py`` so that pytest-xdist (``--dist loadfile``) can run it beside the long
``drill --all`` test.
"""

from __future__ import annotations

import json

import pytest

from conftest import workbook


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_a_profit_drill_in_june_with_a_longer_gap_and_more_accounts_passes(tmp_path):
    proc = workbook(
        "drill", "missing_subscription_data", "--date", "2026-06", "--param", "days=4",
        "--param", "accounts=60", "--json", "--workdir", str(tmp_path), timeout=900,
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert (r["fault"], r["month"], r["accounts"], r["seed"]) == (
        "missing_subscription_data@2026-06-12:days=4",
        "2026-06",
        60,
        7,
    )
    assert r["passed"] is True, json.dumps(r, default=str)[:4000]
    assert r["diagnosed"]["cause"] == "missing_subscription_data"
    assert {d["figure"] for d in r["repaired"]["diffs"]} == {"profit_monthly[period=2026-06]"}
    assert all(d["ok"] and d["clean"] for d in r["repaired"]["diffs"])  # June's figures, not empty ones
    assert r["routed"]["notifications"][0]["at"].startswith("2026-07-01T17:00")
    assert proc.returncode == 0

"""The close builds the trailing months' investor figures, once, on a small demo company (real CLI).

The landing zone starts 2026-07-01, so of the twelve months before September only July and August
can have figures: the first close builds them (Profit, Growth, Engagement of the last day, the
investor aggregate), says the ten earlier ones have no data, and ``investor_monthly`` then holds
every covered month; the second close runs nothing for them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import demo_landing, home_with_demo, workbook
from helpers.investor import aggregate as investor
from helpers.runs import records as runs

pytestmark = pytest.mark.notebooks
P = "2026-09"
AS_OF = "2026-10-16T12:00:00+00:00"
BUILT = ["2026-07", "2026-08"]
PIPELINES = (
    "profit_aggregate",
    "growth_aggregate",
    "profit_unit",
    "engagement_aggregate",
    "investor_aggregate",
)


@pytest.fixture
def company(home, tmp_path_factory):
    landing = demo_landing(tmp_path_factory, accounts=40, months=4, seed=7, end="2026-10-31", events=True)
    cfg = Path(os.environ["WORKBOOK_CONFIG_DIR"]) / "pipelines.yml"
    data = yaml.safe_load(cfg.read_text())
    data["close"]["required_signoffs"] = []
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return home_with_demo(home, landing)


def pipeline_runs() -> list[tuple[str, str, str]]:
    """Every recorded run of the close's pipelines: (pipeline, partition, run id)."""
    return sorted(
        (r.pipeline, r.logical_date, r.run_id)
        for p in PIPELINES
        for r in runs.list_runs(pipeline=p, limit=1000)
    )


def test_the_close_builds_the_covered_trailing_months_once(company):
    proc = workbook("close", "--month", P, "--as-of", AS_OF, "--json", timeout=1500)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    first = json.loads(proc.stdout)
    assert proc.returncode == 0, [o for o in first["runs"] if o["status"] not in ("succeeded", "skipped")]
    months = {m["period"]: m for m in first["history"]["months"]}
    assert first["history"]["requested"] == 12 and len(months) == 12
    assert [p for p, m in months.items() if m["state"] == "built"] == BUILT
    no_data = [p for p, m in months.items() if m["state"] == "no data"]
    assert no_data == sorted(months)[:10] and first["history"]["missing"] == no_data
    assert months["2026-06"]["detail"].startswith("no data: the landing zone starts 2026-07-01")
    ran = {(o["pipeline"], o["partition"]): o["status"] for o in first["runs"]}
    for month, last in (("2026-07", "2026-07-31"), ("2026-08", "2026-08-31")):
        for pid in PIPELINES:
            part = last if pid == "engagement_aggregate" else month
            assert ran[(pid, part)] == "succeeded", (pid, part)
    # Engagement ran after what it reads, so its per-account join found them
    engagement = runs.list_runs(pipeline="engagement_aggregate", logical_date="2026-07-31", limit=1)[0]
    assert all(r["status"] == "pass" for r in runs_checks(engagement.run_id, "upstream_missing"))
    assert sorted(set(investor.read_monthly([*BUILT, P])["period"])) == [*BUILT, P]

    before = pipeline_runs()
    proc = workbook("close", "--month", P, "--as-of", AS_OF, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        pipeline_runs() == before
    )  # nothing re-ran: the month's runs are up to date, the trailing ones built
    assert (
        "trend months before 2026-09: 2 of 12 with investor figures; missing: 2025-09 (no data:"
        in proc.stdout
    )


def runs_checks(run_id: str, name: str) -> list[dict]:
    from helpers.checks import store

    found = [r for r in store.list_results(run_id=run_id) if r["check_id"].endswith(name)]
    assert found, f"no {name} check recorded with run {run_id}"
    return found

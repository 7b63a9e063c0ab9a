"""One cause, one incident, one ladder: a demo company whose sources all stop at a month end.

The close of the month, then one tick three days later, then the data resumes: every source that
stopped is one incident (its pipelines' freshness, SLA and upstream alerts join it as symptoms),
each incident climbs one ladder, and everyone paged hears that it is resolved.
"""

from __future__ import annotations

import json
import shutil

import pytest
import sqlalchemy as sa

from conftest import REPO, demo_landing, home_with_demo, workbook
from helpers.core import config as cfgmod
from helpers.oncall import alerts as alertsmod
from helpers.oncall import incidents
from helpers.oncall.notify import list_notifications
from helpers.oncall.timeline import alert_timeline
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks
LADDER_STEPS = ("notify", "secondary", "lead", "cross_team", "renotify")  # one renotify per tick at most


def ladder_steps() -> dict[str, set[str]]:
    """The ladder steps taken, per timeline (an incident's is its lead alert's)."""
    q = sa.select(alert_timeline.c.alert_id, alert_timeline.c.step_key, alert_timeline.c.step)
    with warehouse.get_engine().connect() as conn:
        rows = conn.execute(q).all()
    out: dict[str, set[str]] = {}
    for alert_id, key, step in rows:
        if step in LADDER_STEPS:
            out.setdefault(alert_id, set()).add(key)
    return out


def test_sources_stopping_at_a_month_end_page_once_per_source_and_resolve_when_data_resumes(
    home, tmp_path, tmp_path_factory, monkeypatch
):
    shutil.copytree(REPO / "config", tmp_path / "product-config")  # the product's pipelines only
    monkeypatch.setenv("WORKBOOK_CONFIG_DIR", str(tmp_path / "product-config"))
    cfgmod._cached.cache_clear()
    home_with_demo(
        home, demo_landing(tmp_path_factory, accounts=40, months=3, seed=11, end="2026-10-31", events=True)
    )

    proc = workbook(
        "close",
        "--month",
        "2026-10",
        "--as-of",
        "2026-11-20T12:00:00Z",
        "--json",
        "--history",
        "0",
        timeout=900,
    )
    closed = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = [b for b in closed["checklist"]["items"] if b["section"] == "incidents"]
    assert len(listed) >= 10  # the close names the incidents its checks opened, with their owners
    assert all(b["owner"] and "about now" in b["detail"] for b in listed)  # October itself is complete

    proc = workbook("tick", "--as-of", "2026-11-23T09:00:00Z", "--json", timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    opened = incidents.list_incidents()
    causes = [i.cause_key for i in opened]
    assert len(causes) == len(set(causes)), causes  # one incident per cause
    marker = ".source_freshness."
    late = {a.check_id.split(marker)[1] for a in alertsmod.list_alerts(limit=10_000) if marker in a.check_id}
    assert len(late) >= 10 and set(causes) == {f"source:{s}" for s in late}  # each stopped source is one
    members = incidents.memberships()
    active = alertsmod.list_alerts(open_only=True, limit=10_000)
    assert active and {str(a.alert_id) for a in active} <= set(members)  # every alert is in one incident
    steps = ladder_steps()
    paged = {i.alert_id for i in opened}
    assert set(steps) == paged  # only incidents page: one ladder each, on its lead alert
    pages = sum(len(keys) for keys in steps.values())
    assert pages <= len(causes) * len(LADDER_STEPS), pages

    # the data resumes: the sources deliver again, the pipelines run, the next tick resolves
    home_with_demo(
        home, demo_landing(tmp_path_factory, accounts=40, months=4, seed=11, end="2026-11-24", events=True)
    )
    proc = workbook("run-all", "--date", "2026-11-24", "--as-of", "2026-11-25T06:00:00Z", "--no-checks", "-q",
                    timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = workbook("tick", "--as-of", "2026-11-25T07:00:00Z", "--json", timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    by_cause = {i.cause_key: i for i in incidents.list_incidents()}
    for source in late:
        inc = by_cause[f"source:{source}"]
        assert inc.status == "resolved", (source, inc)
        inbox = [
            n for n in list_notifications(alert_id=inc.alert_id) if n["channel"] == "warehouse"
        ]  # per person
        told = {n["recipient"] for n in inbox if n["event"] == "resolve"}
        paged_people = {
            n["recipient"] for n in inbox if n["event"] in ("trigger", "renotify", "escalate", "cross_team")
        }
        assert paged_people and told == paged_people, (source, told, paged_people)

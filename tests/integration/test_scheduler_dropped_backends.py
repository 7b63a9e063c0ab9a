"""Dropped and coalesced scheduler slots, and their alert, on SQLite and PostgreSQL.

The runs are faked (``orchestrate.run_items``): this is about what the tick records on each backend.
"""

from __future__ import annotations

import datetime as dt

import pytest

from helpers.checks import slots
from helpers.oncall import alerts
from helpers.runs import orchestrate, records, scheduler

pytestmark = pytest.mark.integration


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_dropped_and_coalesced_slots_on_each_backend(warehouse_url, monkeypatch):
    ran: list[tuple[str, str]] = []

    def run_items(items, **_kwargs):
        ran.extend((it.pipeline, it.partition) for it in items)
        return [
            orchestrate.Outcome(it.pipeline, it.partition, "succeeded", run_id=f"r-{it.partition}")
            for it in items
        ]

    monkeypatch.setattr(orchestrate, "run_items", run_items)

    def tick(as_of: str) -> scheduler.TickResult:
        t = at(as_of)
        return scheduler.tick(
            t, clock=lambda: t, pipelines=["smoke", "profit_aggregate"], hooks=[slots.evaluate_slots_dropped]
        )

    tick("2026-11-12T06:20")
    result = tick("2026-11-22T06:20")  # ten days later; catch_up_days 7
    # smoke (daily): the three oldest days are lost; profit_aggregate (month to date): one run
    assert [(s.pipeline, s.item.partition) for s in result.dropped] == [
        ("smoke", "2026-11-12"),
        ("smoke", "2026-11-13"),
        ("smoke", "2026-11-14"),
    ]
    assert ran.count(("profit_aggregate", "2026-11")) == 1 and len(ran) == 8
    by_status: dict[str, int] = {}
    for row in scheduler.list_slots():
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    assert by_status == {"dropped": 3, "succeeded": 8, "coalesced": 9}  # 10 profit slots, one ran
    opened = {a.partition for a in alerts.list_alerts(open_only=True) if a.check_id == "smoke.slots_dropped"}
    assert opened == {"2026-11-12", "2026-11-13", "2026-11-14"}

    run_id = records.start_run(
        "smoke", "2026-11-13", now=at("2026-11-22T07:00"), as_of=at("2026-11-22T07:00"),
        parameters={}, code_version=None, trigger="backfill",
    )  # fmt: skip
    records.finish_run(run_id, status="succeeded", now=at("2026-11-22T07:01"))
    results, changes = slots.evaluate_slots_dropped(as_of=at("2026-11-22T07:05"))
    assert sorted((c.partition, c.action) for c in changes) == [
        ("2026-11-12", "updated"),  # still dropped: seen again
        ("2026-11-13", "resolved"),  # covered by the backfill
        ("2026-11-14", "updated"),
    ]
    assert {r.partition: r.failed for r in results} == {
        "2026-11-12": True,
        "2026-11-13": False,
        "2026-11-14": True,
    }

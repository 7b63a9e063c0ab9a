"""A runbook stepped through by hand: its empty ``as_of`` is now, and a fix on a locked month stops first."""

from __future__ import annotations

import datetime as dt

import pytest

from helpers.runbooks import kit
from helpers.runbooks.fixes import refuse_locked
from helpers.runs import locks, orchestrate
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 12, 6, 7, 19, 28, 654321, tzinfo=dt.UTC)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_an_empty_as_of_is_the_now_handed_in(home):
    ctx = kit.load_context("profit/stale_data", as_of="", now=NOW)
    assert ctx.as_of == utc("2026-12-06T07:19:28")
    given = kit.load_context("profit/stale_data", as_of="2026-11-18T12:00:00Z", now=NOW)
    assert given.as_of == utc("2026-11-18T12:00")  # a given as_of wins over now
    with pytest.raises(ValueError, match="as_of: empty, and no `now`"):
        kit.load_context("profit/stale_data", as_of="")


def lock_october(engine) -> None:
    with engine.begin() as conn:
        locks.lock_month(
            "2026-10",
            [
                locks.Target(locks.PIPELINE, "profit_aggregate", "2026-10"),
                locks.Target(locks.PIPELINE, "smoke", "2026-10-17"),
            ],
            version=1,
            locked_at=utc("2026-11-05T12:00"),
            signed_off=[("DE2", utc("2026-11-05T11:00"))],
            conn=conn,
        )


def test_a_fix_that_would_rerun_a_locked_month_says_so_names_reopen_and_runs_nothing(home, monkeypatch):
    lock_october(warehouse.get_engine())
    ran = []
    monkeypatch.setattr(orchestrate, "backfill", lambda *a, **k: ran.append((a, k)) or [])
    ctx = kit.load_context("backfill", as_of="2026-11-18T12:00:00Z", apply_fix=True)

    with pytest.raises(locks.PartitionLocked, match="profit_aggregate 2026-10") as err:
        kit.rerun(ctx, [("growth_aggregate", "2026-10"), ("profit_aggregate", "2026-10")], downstream=False)
    assert "signed off by DE2" in str(err.value)
    assert "workbook reopen --month 2026-10" in str(err.value)
    assert ran == []  # refused before the first re-run, not half way

    with pytest.raises(
        locks.PartitionLocked, match="smoke 2026-10-17"
    ):  # a day of the month, in a month label
        refuse_locked(ctx, [("smoke", "2026-10")])
    refuse_locked(ctx, [("smoke", "2026-11"), ("profit_aggregate", "2026-09")])  # not locked: nothing raised

    record = kit.guarded_fix(
        True, lambda: kit.rerun(ctx, [("profit_aggregate", "2026-10")]), "re-run October"
    )
    assert record.error is not None and "workbook reopen --month 2026-10" in record.error

    kit.rerun(ctx, [("profit_aggregate", "2026-11")], downstream=False)
    assert [a[:1] for a, _ in ran] == [("profit_aggregate",)]

"""The scheduler's tick calls the hooks it is given, in order, and records a failing one."""

from __future__ import annotations

import datetime as dt
import functools

import pytest

from helpers.runs import scheduler

pytestmark = pytest.mark.unit
AS_OF = dt.datetime(2026, 11, 2, 6, 20, tzinfo=dt.UTC)  # smoke fires at 06:15: nothing is due


def broken_hook(**_: object) -> None:
    raise RuntimeError("monitor down")


def test_hooks_run_in_order_and_a_failing_one_is_recorded_not_raised(home):
    calls = []

    def record(tag: str, **kwargs: object) -> None:
        calls.append((tag, sorted(kwargs)))

    hooks = [functools.partial(record, "first"), broken_hook, functools.partial(record, "last")]
    result = scheduler.tick(AS_OF, clock=lambda: AS_OF, pipelines=["smoke"], hooks=hooks)
    assert result.status == "completed" and result.slots == []
    assert [tag for tag, _ in calls] == ["first", "last"]
    assert calls[0][1] == ["as_of", "config", "now", "pipelines"]
    name = f"{__name__}:broken_hook"
    assert result.hook_errors == {name: "RuntimeError: monitor down"}
    [recorded] = scheduler.list_ticks()
    assert recorded["status"] == "completed" and name in recorded["summary"]


def test_a_hook_is_named_by_its_function():
    assert scheduler.hook_name(broken_hook) == f"{__name__}:broken_hook"
    assert scheduler.hook_name(functools.partial(broken_hook, x=1)) == f"{__name__}:broken_hook"

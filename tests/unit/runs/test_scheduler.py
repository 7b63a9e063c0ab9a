"""The scheduler's tick calls the hooks it is given, in order, and records a failing one."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import re

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


def test_run_hooks_returns_each_value_and_error_in_order(home):
    from helpers.core import config as cfgmod

    def value_hook(**kwargs: object) -> str:
        return f"saw {kwargs['as_of']:%H:%M}"

    outcomes = scheduler.run_hooks(
        [broken_hook, value_hook], as_of=AS_OF, clock=lambda: AS_OF, pipelines=["smoke"], config=cfgmod.get()
    )
    assert [(o.name.rsplit(":", 1)[1], o.value, o.error) for o in outcomes] == [
        ("broken_hook", None, "RuntimeError: monitor down"),
        ("test_run_hooks_returns_each_value_and_error_in_order.<locals>.value_hook", "saw 06:20", None),
    ]


def _cron_entries(lines: list[str]) -> list[tuple[str, str]]:
    """(schedule, command) of each job line of a crontab: comments, blanks and variables skipped."""
    entries = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", text):
            continue
        fields = text.split(None, 5)
        assert len(fields) == 6, f"not a crontab job line: {line!r}"
        entries.append((" ".join(fields[:5]), fields[5]))
    return entries


def test_crontab_output_is_a_valid_crontab_whose_every_job_ticks_or_runs(home, tmp_path, monkeypatch):
    """`scheduler --crontab`, installed as a crontab file: croniter parses every schedule, every
    job calls `workbook tick` or a run, and the logs are absolute paths under WORKBOOK_HOME."""
    from croniter import croniter

    from helpers.cli.main import main

    monkeypatch.setenv("COLUMNS", "100")
    out = tmp_path / "crontab.txt"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["scheduler", "--crontab"]) == 0
    out.write_text(buffer.getvalue())
    lines = out.read_text().splitlines()
    entries = _cron_entries(lines)
    assert len(entries) >= 2
    log = f"{home}/runs/cron.log"
    for schedule, command in entries:
        assert croniter.is_valid(schedule), schedule
        croniter(schedule, AS_OF).get_next(dt.datetime)  # and it fires
        steps = [part.strip() for part in command.split(";")]
        calls = [re.search(r"workbook (tick|run-all|run|scheduler --once)\b", s) for s in steps]
        assert all(calls), command
        assert any(c.group(1) == "tick" for c in calls), f"no tick after: {command}"
        assert all(f">> {log} 2>&1" in s for s in steps), command
        assert "%" not in command.replace("\\%", "")  # cron would turn a bare % into a newline
    assert any(
        command.startswith("cd ") and "tick" in command for s, command in entries if s == "*/15 * * * *"
    )
    assert f"WORKBOOK_HOME={home}" in lines
    assert str(paths_repo()) not in log  # the log is not in the checkout when WORKBOOK_HOME is set


def paths_repo():
    from helpers.core import paths

    return paths.repo_root()

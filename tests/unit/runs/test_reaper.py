"""Dead runs (their runner process gone) are found, closed failed and archived (``runs.reaper``)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import psutil
import pytest
import sqlalchemy as sa

from helpers import checks
from helpers.oncall import alerts
from helpers.runs import history, reaper
from helpers.runs import records as runs
from helpers.storage import warehouse

pytestmark = pytest.mark.unit
AS_OF = dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC)
NOW = AS_OF + dt.timedelta(hours=1)
DAY = "2026-11-01"
GONE_PID = 2**22 + 7  # above Linux's largest pid_max: no process ever has it
SECRET = "s3cr3t-T0ken-for-the-reaper"


def start(pipeline: str = "smoke", day: str = DAY) -> str:
    return runs.start_run(pipeline, day, now=AS_OF, as_of=AS_OF, parameters={"rows": 3}, code_version="t")


def set_runner(run_id: str, **values) -> None:
    """Rewrite the runner a run recorded (a killed runner, a reused pid, another machine)."""
    with warehouse.get_engine().begin() as c:
        c.execute(
            warehouse.pipeline_runs.update()
            .where(warehouse.pipeline_runs.c.run_id == run_id)
            .values(**values)
        )


def staging_of(run_id: str, home: Path, pipeline: str = "smoke", day: str = DAY) -> Path:
    """The hidden folder the runner assembles a run's archive in, with a log and parameters."""
    staging = home / "runs" / pipeline / day / f".{run_id}.partial"
    staging.mkdir(parents=True)
    (staging / "run.log").write_text(f"run {run_id}: started\nconnecting with token {SECRET}\n")
    (staging / "parameters.json").write_text(json.dumps({"run_date": day, "rows": 3}))
    (staging / "notebook.ipynb").write_text("{}")  # half-written: not kept
    return staging


@pytest.fixture
def sleeper():
    """A live process that is not a runner (its pid is alive, with its own start time)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_runner_alive_judges_pid_start_time_and_host(sleeper):
    here = socket.gethostname()
    created = psutil.Process(sleeper.pid).create_time()
    assert runs.runner_alive(here, sleeper.pid, created)
    assert runs.runner_alive(here, sleeper.pid, None)  # a run recorded before start times were
    assert not runs.runner_alive(here, sleeper.pid, created - 3600)  # the pid was reused
    assert not runs.runner_alive(here, GONE_PID, created)
    assert runs.runner_alive("another-host", GONE_PID, created)  # not ours to judge
    assert runs.runner_alive(here, None, None)


def test_a_run_records_its_runner_process_and_a_live_runner_is_left_alone(home):
    rid = start()
    with warehouse.get_engine().connect() as c:
        row = c.execute(
            sa.select(warehouse.pipeline_runs).where(warehouse.pipeline_runs.c.run_id == rid)
        ).one()
    assert row.host == socket.gethostname()
    assert (row.pid, row.process_created) == (psutil.Process().pid, psutil.Process().create_time())
    assert reaper.reap_dead_runs(NOW) == []
    assert runs.get_run(rid).status == "running"


def test_a_dead_runner_is_failed_its_staging_discarded_and_archived_scrubbed(home, monkeypatch):
    monkeypatch.setenv("REAPER_TEST_TOKEN", SECRET)
    rid = start()
    monkeypatch.setenv(warehouse.RUNNER_ENV, rid)  # the run's kernel stages a partition
    frame = pd.DataFrame({"day": [DAY], "amount_cents": [100]})
    warehouse.replace_partition("mart", frame, {"day": DAY}, written_at=AS_OF, run_id=rid)
    monkeypatch.delenv(warehouse.RUNNER_ENV)
    assert len(warehouse.staged_for(rid)) == 1
    staging = staging_of(rid, home)
    set_runner(rid, pid=GONE_PID)

    reaped = reaper.reap_dead_runs(NOW)

    died = f"runner died (pid {GONE_PID} on {socket.gethostname()}, no longer running)"
    archive = home / "runs" / "smoke" / DAY / rid
    assert [(r.run_id, r.error, r.archive) for r in reaped] == [(rid, died, archive)]
    record = runs.get_run(rid)
    assert (record.status, record.error_summary, record.finished_at) == ("failed", died, NOW)
    assert record.archive_path == str(archive)
    assert (
        warehouse.staged_for(rid) == [] and "mart" not in sa.inspect(warehouse.get_engine()).get_table_names()
    )
    assert not staging.exists()
    assert sorted(p.name for p in archive.iterdir()) == ["parameters.json", "run.json", "run.log"]
    log = (archive / "run.log").read_text()
    assert "connecting with token" in log and SECRET not in log  # the log as far as it got, scrubbed
    meta = json.loads((archive / "run.json").read_text())
    assert (meta["run_id"], meta["status"], meta["error_summary"]) == (rid, "failed", died)
    assert (meta["started_at"], meta["finished_at"]) == (AS_OF.isoformat(), NOW.isoformat())
    assert meta["runner"] == {"host": socket.gethostname(), "pid": GONE_PID}
    listed = {r.run_id: r for r in history.scan(home / "runs")}  # the run history page lists it
    assert (listed[rid].status, listed[rid].error) == ("failed", died)
    assert rid in (home / "runs" / "index.html").read_text()

    assert reaper.reap_dead_runs(NOW + dt.timedelta(minutes=5)) == []  # idempotent
    assert runs.get_run(rid).finished_at == NOW


def test_a_reused_pid_does_not_keep_a_dead_run_alive(home, sleeper):
    rid = start()
    set_runner(rid, pid=sleeper.pid)  # the pid is alive, but its process started after our record
    [reaped] = reaper.reap_dead_runs(NOW)
    assert reaped.run_id == rid and f"pid {sleeper.pid}" in runs.get_run(rid).error_summary
    assert sleeper.poll() is None  # the process that reused the pid is not touched


def test_a_run_of_another_host_is_left_alone(home):
    rid = start()
    set_runner(rid, host="worker-7.internal", pid=GONE_PID)
    assert reaper.reap_dead_runs(NOW) == []
    assert runs.get_run(rid).status == "running"


def test_two_commands_reaping_at_once_close_a_dead_run_once(home):
    rids = [start(day=f"2026-11-0{d}") for d in (1, 2, 3)]
    for rid in rids:
        set_runner(rid, pid=GONE_PID)
    results: list[list[reaper.ReapedRun]] = []
    barrier = threading.Barrier(2)

    def reap() -> None:
        barrier.wait()
        results.append(reaper.reap_dead_runs(NOW))

    threads = [threading.Thread(target=reap) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.run_id for found in results for r in found) == sorted(rids)  # each exactly once
    assert {runs.get_run(r).status for r in rids} == {"failed"}


def test_a_dead_run_closed_by_the_next_run_leaves_no_staging_folder(home):
    dead = start()
    staging = staging_of(dead, home)
    set_runner(dead, pid=GONE_PID)
    new = start()  # the next run of the partition closes the dead one (records.start_run)
    assert runs.get_run(dead).status == "failed" and runs.get_run(new).status == "running"
    assert staging.is_dir()
    assert reaper.reap_dead_runs(NOW) == []  # nothing left to close, but its folder is archived
    assert not staging.exists()
    archive = home / "runs" / "smoke" / DAY / dead
    assert json.loads((archive / "run.json").read_text())["status"] == "failed"
    assert runs.get_run(dead).archive_path == str(archive)


def test_an_archive_renamed_before_the_runner_died_says_it_failed(home):
    rid = start()
    archive = home / "runs" / "smoke" / DAY / rid
    archive.mkdir(parents=True)
    (archive / "run.json").write_text(
        json.dumps({"run_id": rid, "status": "succeeded", "error_summary": None})
    )
    set_runner(rid, pid=GONE_PID)
    [reaped] = reaper.reap_dead_runs(NOW)
    meta = json.loads((archive / "run.json").read_text())
    assert meta["status"] == "failed" and meta["error_summary"] == reaped.error
    assert "runner died" in meta["error_summary"]


def test_the_archive_path_is_the_runners():
    from helpers.runs import runner

    row = {"pipeline": "smoke", "logical_date": DAY, "run_id": "smoke-x"}
    assert reaper.archive_dir(row) == runner.archive_dir("smoke", DAY, "smoke-x")


def test_the_run_status_monitor_alerts_on_a_dead_run(home):
    rid = runs.start_run("smoke_fail", DAY, now=AS_OF, as_of=AS_OF, parameters={}, code_version=None)
    set_runner(rid, pid=GONE_PID)
    results, _changes = checks.evaluate_monitors(AS_OF, pipelines=["smoke_fail"], now=AS_OF)
    assert ("smoke_fail.run_status", DAY) not in {(r.check_id, r.partition) for r in results}  # "running"
    reaper.reap_dead_runs(NOW)
    results, _changes = checks.evaluate_monitors(NOW, pipelines=["smoke_fail"], now=NOW)
    [status] = [r for r in results if (r.check_id, r.partition) == ("smoke_fail.run_status", DAY)]
    assert (status.status, status.severity) == ("fail", "critical") and "runner died" in status.summary
    opened = [a for a in alerts.list_alerts(open_only=True) if a.check_id == "smoke_fail.run_status"]
    assert [a.partition for a in opened] == [DAY]

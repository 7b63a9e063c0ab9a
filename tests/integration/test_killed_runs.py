"""A SIGKILLed ``workbook run`` is seen dead by the next command that reads runs (issue 20, item 1).

The real CLI runs the sleeping fixture pipeline in its own process group; once its kernel is
executing, the whole group is SIGKILLed (a crash, an OOM kill). ``workbook runs`` then shows the
run ``failed`` with "runner died", its hidden staging folder is gone, its archive holds the log
as far as it got (scrubbed) and a ``run.json`` saying what happened, and ``workbook checks``
opens the run-status alert for it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from conftest import workbook
from helpers.runs import history
from helpers.runs import records as runs

pytestmark = pytest.mark.notebooks
DAY, AS_OF = "2026-11-01", "2026-11-02T06:00:00+00:00"
SECRET = "killed-run-T0ken-9f3a"


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the runner and everything it started (its kernel too)."""
    kids = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for kid in kids:
        try:
            kid.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(kids, timeout=30)


@pytest.mark.timeout(600)
def test_a_killed_run_is_failed_its_staging_archived_and_alerted(home, tmp_path, monkeypatch):
    monkeypatch.setenv("KILLED_RUN_API_TOKEN", SECRET)  # a secret in the runner's environment
    kernel_pid = tmp_path / "kernel.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.cli.main", "run", "smoke_sleep", "--date", DAY, "--as-of", AS_OF]
        + ["-p", "seconds=300", "-p", f"pid_file={kernel_pid}", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the kernel with it
    )
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
        while not kernel_pid.is_file() or not kernel_pid.read_text():
            assert proc.poll() is None, f"the run ended before it could be killed (exit {proc.returncode})"
            assert time.monotonic() < deadline, "the run's kernel never started"
            time.sleep(0.2)
        [running] = runs.list_runs(pipeline="smoke_sleep")
        assert running.status == "running"
        staging = home / "runs" / "smoke_sleep" / DAY / f".{running.run_id}.partial"
        assert (staging / "run.log").is_file()
        with (staging / "run.log").open("a") as log:  # what a notebook printed before the kill
            log.write(f"connecting with {SECRET}\n")
    finally:
        _kill_group(proc)
    assert runs.get_run(running.run_id).status == "running"  # nothing recorded its end

    listed = workbook("runs", "--pipeline", "smoke_sleep", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    [record] = json.loads(listed.stdout)
    died = f"runner died (pid {proc.pid} on {socket.gethostname()}, no longer running)"
    assert (record["run_id"], record["status"], record["error_summary"]) == (running.run_id, "failed", died)
    assert not list((home / "runs").rglob("*.partial")), "a staging folder was left behind"
    archive = home / "runs" / "smoke_sleep" / DAY / running.run_id
    assert record["archive_path"] == str(archive)
    assert {"run.log", "run.json", "parameters.json"} <= {p.name for p in archive.iterdir()}
    log = (archive / "run.log").read_text()
    assert f"run {running.run_id}" in log and "connecting with" in log and SECRET not in log
    meta = json.loads((archive / "run.json").read_text())
    assert (meta["status"], meta["error_summary"], meta["runner"]["pid"]) == ("failed", died, proc.pid)
    assert {r.run_id: r.status for r in history.scan(home / "runs")} == {running.run_id: "failed"}

    checked = workbook("checks", "--pipeline", "smoke_sleep", "--as-of", AS_OF, "--json")
    report = json.loads(checked.stdout)
    [status] = [r for r in report["results"] if r["check_id"] == "smoke_sleep.run_status"]
    assert (status["partition"], status["severity"]) == (DAY, "critical") and "runner died" in status[
        "summary"
    ]
    opened = [a for a in report["alerts"] if a["check_id"] == "smoke_sleep.run_status"]
    assert [(a["action"], a["partition"]) for a in opened] == [("opened", DAY)]
    assert checked.returncode == 1  # a critical check failed

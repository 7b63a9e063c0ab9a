"""Runs whose runner died: found and closed by every command that reads runs.

A run records its runner's host, pid and process start time (``records.start_run``). A run still
``queued`` or ``running`` whose host is this machine and whose process is gone (no such pid, a
zombie, or the pid reused by a process started at another time) died without recording its end
(``kill -9``, the OOM killer, a container stopped). :func:`reap_dead_runs` marks each one
``failed`` with "runner died (pid N on HOST, no longer running)" (``records.mark_dead``: what it
staged is discarded, the live tables never saw it) and turns its hidden staging folder
``runs/<pipeline>/<partition>/.<run_id>.partial/`` into a small failed-run archive at the run's
archive path: the log as far as it got (``run.log``, scrubbed of secrets), its ``parameters.json``
and a ``run.json`` saying what happened, so the run history page lists it.

Runs of another host are left alone: their processes cannot be seen from here; that host's own
commands close them. The CLI calls :func:`reap_dead_runs` before every verb that reads runs
(``helpers.cli.main``), with the wall clock as ``now``.

Idempotent and safe under concurrency: the run is claimed by a conditional UPDATE, so of two
commands reaping at once one closes it and archives it; the other skips it. A staging folder left
by a run that is no longer active (a reaper killed after its claim, a run closed by
``records.start_run``) is archived by the next call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from helpers.core import paths, secrets
from helpers.core.timeutil import as_utc
from helpers.runs import history, records
from helpers.storage.warehouse import get_engine, pipeline_runs

log = logging.getLogger(__name__)

PARTIAL = ".partial"  # runner.execute_notebook assembles an archive in ``.<run_id>.partial``
KEPT_FILES = ("run.log", "parameters.json")  # what a dead run's staging folder leaves in its archive
NOTE = (
    "The runner process died before recording the end of this run (killed, out of memory, or its "
    "machine stopped). A later command found it gone, marked the run failed and discarded what it "
    "had staged; run.log is the log as far as the run got."
)


@dataclass(frozen=True)
class ReapedRun:
    """A dead run closed by :func:`reap_dead_runs`."""

    run_id: str
    pipeline: str
    logical_date: str
    host: str | None
    pid: int | None
    error: str
    archive: Path | None


def reap_dead_runs(now: dt.datetime, *, engine: Engine | None = None) -> list[ReapedRun]:
    """Mark every active run of this host whose runner process is gone ``failed``; returns them.

    Also archives the staging folders of failed runs that have none yet. Rewrites the run history
    page when it archived anything. ``now`` is the reaping command's wall clock.
    """
    engine = engine or get_engine()
    reaped: list[ReapedRun] = []
    for row in records.active_runs(engine=engine):
        if records.runner_alive(row["host"], row["pid"], row.get("process_created")):
            continue
        if not records.mark_dead(row["run_id"], pid=row["pid"], host=row["host"], now=now, engine=engine):
            continue  # another command closed it meanwhile
        error = records.died_message(row["pid"], row["host"])
        archive = _archive(row, error, now, engine)
        reaped.append(
            ReapedRun(
                row["run_id"], row["pipeline"], row["logical_date"], row["host"], row["pid"], error, archive
            )
        )
    swept = _sweep_orphans(now, engine)
    if reaped or swept:
        _refresh_history(now)
    return reaped


def archive_dir(row: dict[str, Any]) -> Path:
    """The archive folder of the run ``row``: ``runner.archive_dir`` (a test checks they agree),
    without importing the runner (papermill) into every command that reads runs."""
    return paths.runs_dir() / row["pipeline"] / row["logical_date"] / row["run_id"]


def _sweep_orphans(now: dt.datetime, engine: Engine) -> int:
    """Archive the staging folders left by failed runs without an archive; how many.

    Only a runner that died leaves one: a run that fails while its runner lives removes it or
    renames it into place. A folder without a pipeline run (a runbook's, a tool's) is not looked at.
    """
    q = sa.select(pipeline_runs).where(
        (pipeline_runs.c.status == "failed") & pipeline_runs.c.archive_path.is_(None)
    )
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings().all()]
    swept = 0
    for row in rows:
        final = archive_dir(row)
        if (final.parent / f".{final.name}{PARTIAL}").is_dir():
            error = row["error_summary"] or records.died_message(row["pid"], row["host"])
            _archive(row, error, as_utc(row["finished_at"]) if row["finished_at"] else now, engine)
            swept += 1
    return swept


def _archive(row: dict[str, Any], error: str, now: dt.datetime, engine: Engine) -> Path | None:
    """Move a dead run's staging folder into a failed-run archive at its archive path; that path.

    An archive already in place (the runner died after renaming it, before recording the end)
    is kept and its ``run.json`` says the run failed. A failure here is logged, never raised: the
    run is already closed, and the next call retries the folder.
    """
    final = archive_dir(row)
    staging = final.parent / f".{final.name}{PARTIAL}"
    try:
        if final.is_dir():
            _mark_failed(final / "run.json", error)
        else:
            _assemble(final, staging, _run_json(row, error, now))
        shutil.rmtree(staging, ignore_errors=True)
    except (OSError, ValueError) as exc:  # ValueError: an unreadable run.json
        log.warning("the staging folder %s of dead run %s was not archived: %s", staging, row["run_id"], exc)
        return None
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.update()
            .where((pipeline_runs.c.run_id == row["run_id"]) & pipeline_runs.c.archive_path.is_(None))
            .values(archive_path=str(final))
        )
    return final


def _assemble(final: Path, staging: Path, record: dict[str, Any]) -> None:
    """Write the archive under a unique hidden name, scrub it, rename it to ``final`` in one step."""
    tmp = final.parent / f".{final.name}.reaped-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for name in KEPT_FILES:
            if (staging / name).is_file():
                shutil.copyfile(staging / name, tmp / name)
        (tmp / "run.json").write_text(json.dumps(record, indent=2))
        secrets.scrub_tree(tmp, secrets.secret_values())
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():  # else another command archived it first
            raise


def _run_json(row: dict[str, Any], error: str, now: dt.datetime) -> dict[str, Any]:
    """The ``run.json`` of a dead run (the fields the runner writes, and how it ended)."""

    def iso(value: Any) -> str | None:
        return as_utc(value).isoformat() if value is not None else None

    return {
        "run_id": row["run_id"],
        "pipeline": row["pipeline"],
        "logical_date": row["logical_date"],
        "as_of": iso(row["as_of"]),
        "status": "failed",
        "started_at": iso(row["started_at"] or row["queued_at"]),
        "finished_at": iso(now),
        "error_summary": error,
        "failed_cell": None,
        "runner": {"host": row["host"], "pid": row["pid"]},
        "note": NOTE,
        "code_version": row["code_version"],
        "trigger": row["trigger"],
    }


def _mark_failed(record: Path, error: str) -> None:
    """An archive renamed into place before its runner died says the run failed, and why."""
    data = json.loads(record.read_text()) if record.is_file() else {}
    data.update(status="failed", error_summary=error, note=NOTE)
    record.write_text(json.dumps(data, indent=2))


def _refresh_history(now: dt.datetime) -> None:
    """Rewrite ``runs/index.html``; a failure is a warning (the runs are closed either way)."""
    root = paths.runs_dir()
    try:
        history.refresh(root, now=now)
    except Exception as exc:
        log.warning("the run history page %s was not written: %s", root / history.INDEX, exc)

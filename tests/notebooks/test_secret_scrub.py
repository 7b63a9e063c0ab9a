"""Secrets in every encoding are kept out of the archive, the log, the warehouse and stderr (issue 20,
item 2), with the probe notebook ``tests/fixtures/notebooks/leak.ipynb`` (pipeline ``leak``): it prints
its ``LEAK_PROBE_*`` secrets raw, JSON-, HTML- and URL-encoded and as a repr, to stdout and stderr,
shows them as rich outputs, glues them as a scrap and fails with them in its error message.

Every secret starts with :data:`MARK`, which no encoding changes: besides every form
``secrets.variants`` knows, the test looks for the mark itself, so a form nobody thought of is
caught too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import wait_for_file, workbook
from helpers.core import secrets
from helpers.runs import runner
from helpers.storage.warehouse import get_engine, pipeline_runs, run_scraps

pytestmark = pytest.mark.notebooks
MARK = "Zq7Xk9"
ENV = {
    "LEAK_PROBE_PASSWORD": f"{MARK}pw\"a'b\\c<d>&e",
    "LEAK_PROBE_WEBHOOK_URL": f"https://hooks.example.invalid/services/{MARK}wh/B1?name=a b&c=d+e/f",
    "LEAK_PROBE_TOKEN": f"{MARK}tok-3f9a8b7c",
    "LEAK_PROBE_DB_URL": f"postgresql://probe:{MARK}db%40p%3Ass@db.invalid/x",  # password {MARK}db@p:ss
}
FORMS = [f.encode() for f in secrets.all_variants(secrets.secret_values(ENV))]
DATE = "2026-10-31"


def leaks(data: bytes) -> list[bytes]:
    """The forms of the probe's secrets found in ``data`` (the mark included)."""
    return [f for f in [*FORMS, MARK.encode()] if f in data]


def files_with_secrets(root: Path) -> dict[str, list[bytes]]:
    found = {str(p.relative_to(root)): leaks(p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    return {name: forms for name, forms in found.items() if forms}


def text_columns(table: sa.Table) -> list[str]:
    """Every text value of ``table`` (the warehouse's own copy, read back)."""
    cols = [c for c in table.c if isinstance(c.type, sa.String)]
    with get_engine().connect() as conn:
        rows = conn.execute(sa.select(*cols)).all()
    return [str(v) for row in rows for v in row if v is not None]


def test_forms_cover_the_encodings_the_probe_prints():
    assert len(FORMS) > 4 * len(ENV)  # the password and the URLs really have many forms
    assert secrets.secret_values(ENV).count(f"{MARK}db@p:ss") == 1  # the URL's decoded password


def test_a_failing_probe_leaves_no_secret_in_archive_log_warehouse_or_stderr(home):
    proc = workbook("run", "leak", "--date", DATE, "-q", env=ENV)
    assert proc.returncode == 1, proc.stderr
    assert "RuntimeError: login failed with" in proc.stderr and secrets.REDACTED in proc.stderr
    assert leaks((proc.stdout + proc.stderr).encode()) == []

    archives = [p for p in (home / "runs" / "leak" / DATE).iterdir()]
    assert len(archives) == 1 and not archives[0].name.startswith(".")
    archive = archives[0]
    # the probe did print, glue and raise its secrets: each file shows where they were scrubbed
    for name in ("notebook.ipynb", "notebook.html", "run.log", "scraps.json", "run.json"):
        assert secrets.REDACTED in (archive / name).read_text(), name
    assert "LEAK_PROBE_PASSWORD stderr:" in (archive / "run.log").read_text()
    # every file under runs/ (the SQLite warehouse and the run history page included), as bytes
    assert any(p.name.startswith("warehouse.sqlite") for p in (home / "runs").iterdir())
    assert files_with_secrets(home / "runs") == {}

    run_texts, scrap_texts = text_columns(pipeline_runs), text_columns(run_scraps)
    assert any(secrets.REDACTED in t for t in run_texts)  # error_summary
    assert any(secrets.REDACTED in t for t in scrap_texts)  # the glued scrap
    assert [t for t in run_texts + scrap_texts if leaks(t.encode())] == []

    listing = workbook("runs", "--json", "--pipeline", "leak", env=ENV)
    assert listing.returncode == 0 and json.loads(listing.stdout)[0]["status"] == "failed"
    assert leaks(listing.stdout.encode()) == []


@pytest.mark.parametrize(
    "form",
    [
        ENV["LEAK_PROBE_TOKEN"],  # raw
        ENV["LEAK_PROBE_PASSWORD"],  # raw, with " ' \\ < > &
        "Zq7Xk9pw&quot;a&#x27;b\\c&lt;d&gt;&amp;e",  # HTML-escaped
        "https%3A%2F%2Fhooks.example.invalid%2Fservices%2FZq7Xk9wh%2FB1%3Fname%3Da%20b%26c%3Dd%2Be%2Ff",
    ],
    ids=["token", "password", "html-password", "url-encoded-webhook"],
)
def test_a_parameter_containing_a_secret_is_refused(home, form):
    proc = workbook("run", "leak", "--date", DATE, "-q", "-p", f"note=prefix-{form}-suffix", env=ENV)
    assert proc.returncode == 2, proc.stderr
    assert "-p note: secrets are never notebook parameters" in proc.stderr
    assert leaks(proc.stderr.encode()) == []
    assert not (home / "runs" / "leak").exists()  # refused before anything ran
    assert text_columns(pipeline_runs) == []


def test_a_cli_parameter_without_value_does_not_echo_a_secret(home):
    proc = workbook("run", "leak", "--date", DATE, "-q", "-p", ENV["LEAK_PROBE_TOKEN"], env=ENV)
    assert proc.returncode == 2 and "expected key=value" in proc.stderr
    assert leaks(proc.stderr.encode()) == []


def test_file_log_scrubs_each_line_as_it_is_written(tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    pw = ENV["LEAK_PROBE_PASSWORD"]
    path = tmp_path / "run.log"
    with runner._FileLog(path) as flog:
        flog.write(f"header {pw}")
        logging.getLogger("papermill").info("cell output %s %s", json.dumps(pw), repr(pw))
        logging.getLogger("papermill").warning(f"stderr {ENV['LEAK_PROBE_WEBHOOK_URL']}")
        written = path.read_bytes()  # before the log is closed: what a killed run leaves
    assert written.count(secrets.REDACTED.encode()) == 4
    assert leaks(written) == []


def test_a_killed_run_leaves_no_plain_secret_in_its_staging_log(home, tmp_path):
    hold = tmp_path / "hold.pid"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helpers.cli.main",
            "run",
            "leak",
            "--date",
            DATE,
            "-q",
            "-p",
            f"hold_file={hold}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **ENV},
    )
    try:
        wait_for_file(hold, proc)  # the probe printed every secret and now waits
        logs = list((home / "runs" / "leak" / DATE).glob(".*.partial/run.log"))
        assert len(logs) == 1
        while_running = logs[0].read_bytes()
        assert b"LEAK_PROBE_PASSWORD raw: " + secrets.REDACTED.encode() in while_running
        assert leaks(while_running) == []
        proc.send_signal(signal.SIGKILL)  # the runner dies: its staging folder stays behind
        proc.communicate(timeout=60)
        os.kill(int(hold.read_text()), signal.SIGKILL)  # and its kernel
    finally:
        if proc.poll() is None:
            proc.kill()
        hold.unlink(missing_ok=True)
    if logs[0].exists():  # unless a reader already cleared the dead run's staging folder
        assert leaks(logs[0].read_bytes()) == []

"""Re-execute an archived run with nbval (strict) against its own outputs.

The archive is never modified: the notebook is copied to a scratch folder and nbval runs
there, in a separate pytest process, with the repository's sanitize file
(``config/nbval_sanitize.cfg``: run ids, timestamps, durations, addresses). The outcome is
recorded on the run (``validation_status``, ``validation_summary``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.core import paths
from helpers.runs import records as runs


@dataclass(frozen=True)
class ValidationResult:
    run_id: str
    passed: bool
    summary: str
    output: str


def sanitize_file() -> Path:
    return paths.config_dir() / "nbval_sanitize.cfg"


def _summary(output: str, returncode: int) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    closing = next((ln.strip("= ") for ln in reversed(lines) if " passed" in ln or " failed" in ln), "")
    mismatches = [ln.strip() for ln in lines if ln.startswith("E ") or "mismatch" in ln.lower()]
    head = closing or f"pytest exited {returncode}"
    return head + (("; " + " | ".join(mismatches[:3])) if mismatches and returncode else "")


def validate_run(run_id: str, *, now: dt.datetime, cell_timeout_s: int = 1800) -> ValidationResult:
    """Validate one archived run; raises ``LookupError`` if the run or its archive is missing."""
    record = runs.get_run(run_id)
    if record is None:
        raise LookupError(f"no run {run_id!r} in the warehouse")
    if not record.archive_path or not (Path(record.archive_path) / "notebook.ipynb").exists():
        raise LookupError(f"run {run_id} has no archived notebook (archive: {record.archive_path})")
    with tempfile.TemporaryDirectory(prefix="workbook-validate-") as tmp:
        nb = Path(tmp) / f"{run_id}.ipynb"
        shutil.copyfile(Path(record.archive_path) / "notebook.ipynb", nb)
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\naddopts =\n")
        cmd = [
            sys.executable, "-m", "pytest", str(nb),
            "--nbval", "--nbval-sanitize-with", str(sanitize_file()),
            "--nbval-cell-timeout", str(cell_timeout_s),
            "-c", str(ini), "--rootdir", tmp, "-p", "no:cacheprovider", "-q", "--no-header",
        ]  # fmt: skip
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env)
    output = proc.stdout + proc.stderr
    passed = proc.returncode == 0
    summary = _summary(output, proc.returncode)
    runs.set_validation(run_id, status="passed" if passed else "failed", summary=summary, now=now)
    return ValidationResult(run_id, passed, summary, output)

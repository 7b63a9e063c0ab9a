"""``workbook run / runs / validate`` end to end, in real processes with real kernels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import wait_for_file, workbook
from helpers.core import secrets
from helpers.runs import runner

pytestmark = pytest.mark.notebooks
AS_OF = "2026-11-01T06:00:00Z"


def run_json(*args: str, **kw) -> tuple[int, dict]:
    proc = workbook("run", *args, "--json", "-q", **kw)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_run_archives_everything_and_lists_and_validates(home):
    code, result = run_json("smoke", "--date", "2026-10-31", "--as-of", AS_OF, "-p", "rows=4")
    assert code == 0, result
    archive = Path(result["archive"])
    assert archive.parent == home / "runs" / "smoke" / "2026-10-31"
    assert sorted(p.name for p in archive.iterdir()) == sorted(runner.ARCHIVE_FILES)
    params = json.loads((archive / "parameters.json").read_text())
    assert params == {
        "run_date": "2026-10-31",
        "as_of": "2026-11-01T06:00:00+00:00",
        "run_id": result["run_id"],
        "rows": 4,
    }
    scraps = json.loads((archive / "scraps.json").read_text())
    assert scraps["row_count"] == 4 and scraps["total_cents"] == 1000
    assert scraps["frame"]["columns"] == ["run_date", "k", "amount_cents"]
    html = (archive / "notebook.html").read_text()
    assert "wrote 4 rows to smoke_table" in html
    for cdn in ("cdnjs", "unpkg", "mathjax", "require.js", "require.min.js", "<script src="):
        assert cdn not in html.lower(), cdn
    assert "wrote 4 rows" in (archive / "run.log").read_text()
    assert not list(archive.parent.glob(".*partial"))

    listing = workbook("runs", "--json", "--pipeline", "smoke")
    runs_listed = json.loads(listing.stdout)
    assert [r["run_id"] for r in runs_listed] == [result["run_id"]]
    assert runs_listed[0]["status"] == "succeeded" and runs_listed[0]["code_version"]
    human = workbook("runs")
    assert result["run_id"] in human.stdout and "succeeded" in human.stdout

    ok = workbook("validate", result["run_id"], "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["passed"] is True
    assert json.loads(workbook("runs", "--json").stdout)[0]["validation_status"] == "passed"

    # edit an archived output: validation must now fail, and say so on the run
    nb = nbformat.read(archive / "notebook.ipynb", as_version=4)
    cell = next(
        c
        for c in nb.cells
        if c.cell_type == "code" and any("wrote 4 rows" in o.get("text", "") for o in c.outputs)
    )
    out = next(o for o in cell.outputs if "wrote 4 rows" in o.get("text", ""))
    out["text"] = out["text"].replace("wrote 4 rows", "wrote 5 rows")
    nbformat.write(nb, archive / "notebook.ipynb")
    bad = workbook("validate", result["run_id"])
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAILED" in bad.stdout
    assert json.loads(workbook("runs", "--json").stdout)[0]["validation_status"] == "failed"


def test_failing_notebook_exit_1_archived_with_error(home):
    code, result = run_json("smoke_fail", "--date", "2026-10-31")
    assert code == 1
    assert result["status"] == "failed"
    assert "ValueError: source file for 2026-10-31 is missing column 'amount'" in result["error"]
    assert result["failed_cell"] == 5  # the sixth cell (0-based index, markdown and the defaults counted)
    archive = Path(result["archive"])
    assert (archive / "notebook.ipynb").exists() and (archive / "notebook.html").exists()
    assert json.loads((archive / "scraps.json").read_text()) == {"started": True}
    listed = json.loads(workbook("runs", "--json", "--status", "failed").stdout)
    assert listed[0]["run_id"] == result["run_id"]
    assert "missing column 'amount'" in listed[0]["error_summary"]
    human = workbook("run", "smoke_fail", "--date", "2026-10-30", "-q")
    assert human.returncode == 1 and "missing column 'amount'" in human.stderr


def test_usage_errors_exit_2(home):
    assert workbook("run", "nope", "--date", "2026-10-31").returncode == 2
    bad_date = workbook("run", "smoke", "--date", "31/10/2026")
    assert bad_date.returncode == 2 and "expected a date as YYYY-MM-DD" in bad_date.stderr
    unknown = workbook("run", "smoke", "--date", "2026-10-31", "-p", "colour=blue")
    assert unknown.returncode == 2 and "no parameter(s) colour" in unknown.stderr
    bad_as_of = workbook("run", "smoke", "--date", "2026-10-31", "--as-of", "yesterday")
    assert bad_as_of.returncode == 2 and "--as-of" in bad_as_of.stderr


def test_second_concurrent_run_is_refused_with_exit_4(home, tmp_path):
    pid_file = tmp_path / "kernel.pid"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helpers.cli.main",
            "run",
            "smoke_sleep",
            "--date",
            "2026-10-31",
            "-q",
            "-p",
            "seconds=30",
            "-p",
            f"pid_file={pid_file}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(pid_file, first)
        second = workbook("run", "smoke_sleep", "--date", "2026-10-31", "-q", "-p", "seconds=0")
        assert second.returncode == 4, second.stderr
        assert (
            "refused" in second.stderr
            and "smoke_sleep-2026-10-31-" in second.stderr
            and "already running" in second.stderr
        )
        other_day = workbook("run", "smoke_sleep", "--date", "2026-10-30", "-q", "-p", "seconds=0")
        assert other_day.returncode == 0, other_day.stderr
    finally:
        first.kill()
        first.wait()


def test_killed_kernel_is_a_failed_run_not_a_hang(home, tmp_path):
    pid_file = tmp_path / "kernel.pid"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helpers.cli.main",
            "run",
            "smoke_sleep",
            "--date",
            "2026-10-31",
            "-q",
            "--json",
            "-p",
            "seconds=600",
            "-p",
            f"pid_file={pid_file}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_file(pid_file, proc)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    out, err = proc.communicate(timeout=180)  # a hang would blow this guard, not a timing assertion
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert result["status"] == "failed" and "kernel died" in result["error"]
    assert (Path(result["archive"]) / "notebook.ipynb").exists()
    # the lock is released: the next run of the same partition goes ahead
    assert workbook("run", "smoke_sleep", "--date", "2026-10-31", "-q", "-p", "seconds=0").returncode == 0


def test_secret_in_warehouse_url_never_reaches_the_archive(home, pg_url, monkeypatch):
    password = pg_url.split(":")[2].split("@")[0]
    assert len(password) > 8
    code, result = run_json(
        "smoke",
        "--date",
        "2026-10-31",
        "-p",
        "echo_warehouse_url=true",
        env={"WORKBOOK_WAREHOUSE_URL": pg_url},
    )
    assert code == 0, result
    archive = Path(result["archive"])
    assert secrets.find_secrets(archive, [password]) == []
    assert secrets.REDACTED in (archive / "notebook.ipynb").read_text()  # the echo happened, and was scrubbed
    assert "workbook:***@127.0.0.1" in (archive / "notebook.html").read_text()  # SQLAlchemy's own masking
    # and a secret can't be smuggled in as a parameter
    refused = workbook(
        "run",
        "smoke",
        "--date",
        "2026-10-30",
        "-p",
        f"run_id={password}",
        env={"WORKBOOK_WAREHOUSE_URL": pg_url},
    )
    assert refused.returncode == 2 and "never notebook parameters" in refused.stderr


def _write_counter(monkeypatch) -> list[str]:
    import papermill.engines

    written: list[str] = []
    real = papermill.engines.write_ipynb

    def counting(nb, path):
        written.append(path)
        return real(nb, path)

    monkeypatch.setattr(papermill.engines, "write_ipynb", counting)
    return written


def _cells_notebook(path: Path, sources: list[str]) -> Path:
    cells = [nbformat.v4.new_markdown_cell("# many cells")]
    cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_output_notebook_is_written_at_start_and_end_not_per_cell(tmp_path, monkeypatch):
    import datetime as dt

    written = _write_counter(monkeypatch)
    clock = lambda: dt.datetime(2026, 11, 1, 6, tzinfo=dt.UTC)  # noqa: E731
    book = _cells_notebook(tmp_path / "many.ipynb", [f"x{i} = {i}\nprint(x{i} * 2)" for i in range(12)])
    result = runner.execute_notebook(book, tmp_path / "ok", {}, clock=clock, timeout_s=120)
    assert result.status == "succeeded"
    assert len(written) <= 3, written  # papermill's own manager writes 2 x 13 cells + 2 = 28 times
    nb = nbformat.read(result.archive / "notebook.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.outputs[0]["text"] for c in code] == [f"{i * 2}\n" for i in range(12)]
    assert all(c.metadata.papermill["status"] == "completed" for c in nb.cells)
    assert nb.metadata.papermill["end_time"]

    # a failure mid-way still leaves the complete notebook, the failed cell marked
    written.clear()
    book = _cells_notebook(tmp_path / "fails.ipynb", ["a = 1", "print('before')", "1 / 0", "print('never')"])
    result = runner.execute_notebook(book, tmp_path / "failed", {}, clock=clock, timeout_s=120)
    assert result.status == "failed" and "ZeroDivisionError" in (result.error or "")
    assert 1 <= len(written) <= 4, written
    nb = nbformat.read(result.archive / "notebook.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[1].outputs[0]["text"] == "before\n"
    assert code[2].metadata.papermill["status"] == "failed" and not code[3].outputs

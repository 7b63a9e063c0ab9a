"""Warm kernels: a run takes a kernel started (and importing) while the previous run computed, gets its
own id, clock and working directory in it, and never shares a kernel with another run."""

from __future__ import annotations

import datetime as dt
import json

import nbformat
import psutil
import pytest

from helpers.core import kernels
from helpers.core.timeutil import CLOCK_ENV
from helpers.runs import runner
from helpers.storage.warehouse import RUNNER_ENV

pytestmark = pytest.mark.notebooks

PROBE = (
    "import json, os\n"
    'print("PROBE " + json.dumps({'
    f'"run_id": os.environ.get({RUNNER_ENV!r}), "clock": os.environ.get({CLOCK_ENV!r}), '
    '"cwd": os.getcwd(), "pid": os.getpid(), "pandas_before_cell": _pandas_before, '
    '"probe_var": os.environ.get("WARM_PROBE_VAR")}))'
)


def probe_notebook(folder):
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    # the first cell looks at sys.modules before anything in the notebook imported pandas
    nb.cells = [
        nbformat.v4.new_code_cell("import sys\n_pandas_before = 'pandas' in sys.modules"),
        nbformat.v4.new_code_cell(PROBE),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def run_probe(notebook, archive, run_id, clock):
    result = runner.execute_notebook(notebook, archive, {}, clock=clock, run_id=run_id)
    assert result.status == "succeeded", result.error
    out = nbformat.read(archive / "notebook.ipynb", as_version=4).cells[1].outputs[0]["text"]
    return json.loads(out.split("PROBE ", 1)[1])


def kernel_children():
    """Live kernels below this one: ipykernel processes, and the fork server and the kernels forked
    from it (which keep its command line). An exited child another test has not reaped (a zombie)
    has no command line left and is not a kernel that outlived its block."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            if proc.status() != psutil.STATUS_ZOMBIE and (
                "ipykernel" in cmd or "helpers.core.forkserver" in cmd
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_runs_take_warm_kernels_with_their_own_identity(home, tmp_path):
    notebook = probe_notebook(tmp_path / "nbs")
    clock = lambda: dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC)  # noqa: E731
    with runner.warm_kernels(3):
        seen = [run_probe(notebook, home / "runs" / f"probe-{i}", f"run-{i}", clock) for i in range(3)]
    assert [s["run_id"] for s in seen] == ["run-0", "run-1", "run-2"]
    assert all(s["clock"] and "2026-11-10" in s["clock"] for s in seen)
    assert {s["cwd"] for s in seen} == {str(notebook.parent)}
    assert all(s["pandas_before_cell"] for s in seen), "each kernel was warm: pandas imported before cell 1"
    assert len({s["pid"] for s in seen}) == 3, "one fresh kernel per run"
    assert kernel_children() == [], "no spare kernel outlives the block"


def test_without_a_block_the_kernel_starts_cold(home, tmp_path):
    notebook = probe_notebook(tmp_path / "nbs")
    seen = run_probe(notebook, home / "runs" / "cold", "run-cold", lambda: dt.datetime.now(dt.UTC))
    assert seen["run_id"] == "run-cold" and not seen["pandas_before_cell"]


def test_a_spare_started_with_another_environment_is_not_used(home, tmp_path, monkeypatch):
    notebook = probe_notebook(tmp_path / "nbs")
    clock = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    monkeypatch.setenv("WARM_PROBE_VAR", "before")
    with runner.warm_kernels(2):
        first = run_probe(notebook, home / "runs" / "env-0", "run-0", clock)
        monkeypatch.setenv("WARM_PROBE_VAR", "after")  # the spare for the next run was started before
        second = run_probe(notebook, home / "runs" / "env-1", "run-1", clock)
    assert first["probe_var"] == "before" and first["pandas_before_cell"]
    assert second["probe_var"] == "after", "the run saw its own environment, not the spare's"
    assert not second["pandas_before_cell"], "the stale spare was shut down and a kernel started cold"
    assert kernel_children() == []


def test_off_switch(home, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_WARM_KERNELS", "0")
    with runner.warm_kernels(2) as pool:
        assert pool is None and kernels.take(("python3", (), ())) is None

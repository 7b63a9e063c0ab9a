"""Warm kernels forked from the fork server (``helpers.core.forkserver``): each is a fresh kernel of
its own (pid, session, environment, working directory), the imports already done, reaped when shut
down; a command or environment the server was not started for starts a kernel as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.core import forkserver, kernels

pytestmark = pytest.mark.unit

PROBE = (
    "import json, os, random, sys\n"
    "print(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'pgid': os.getpgid(0), 'cwd': os.getcwd(),"
    " 'mark': os.environ.get('WB_FORK_TEST'), 'pandas': 'pandas' in sys.modules, 'random': random.random(),"
    " 'history': get_ipython().history_manager.enabled,"
    " 'late': sorted(m for m in set(sys.modules) - set(getattr(sys.modules.get('helpers.core.forkserver'),"
    " 'IMPORTED', ())) if m.split('.')[0] in ('IPython', 'ipykernel', 'debugpy', '_pydevd_bundle'))}))"
)


def probe(warm: kernels.WarmKernel) -> dict:
    client = warm.km.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        out: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = client.execute_interactive(PROBE, output_hook=hook, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        return json.loads("".join(out))
    finally:
        client.stop_channels()


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie of ours (a kernel started as a process) counts as gone once reaped
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture
def marked_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WB_FORK_TEST", "forked")
    monkeypatch.delenv("WORKBOOK_FORK_KERNELS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.skipif(not forkserver.enabled(), reason="kernels are forked on POSIX only")
def test_two_forked_kernels_are_fresh_processes_of_their_own_with_the_imports_done(marked_env):
    with kernels.warm_kernels(2, kernels.starter(), spares=2) as pool:
        key = kernels.kernel_key("python3", os.environ, kernels.KERNEL_ARGUMENTS, kernels.RUN_KEYS)
        first, second = pool.take(key), pool.take(key)
        assert first is not None and second is not None
        server = kernels._SERVER
        assert server is not None
        a, b = probe(first), probe(second)
        for got, warm in ((a, first), (b, second)):
            assert type(warm.km.provisioner).__name__ == "ForkProvisioner"
            assert isinstance(warm.km.client(), kernels.client_class()), "its flush of IOPub ends sooner"
            assert got["pid"] == warm.km.provisioner.pid
            assert got["ppid"] == server._proc.pid, "forked by the server, not started by this process"
            assert got["pgid"] == got["pid"], "a session of its own: interrupting it reaches it alone"
            assert got["mark"] == "forked" and got["cwd"] == str(marked_env)
            assert got["pandas"], "the server imported pandas before forking"
            assert got["late"] == [], "the kernel's own modules (IPython, ipykernel, debugpy) too"
            assert got["history"] is False, "a run's kernel writes no IPython history"
        assert a["pid"] != b["pid"] and a["random"] != b["random"], "each child reseeds random"
        first.shutdown()
        assert first.km.provisioner.process is None, "shut down and reaped (its exit status reported)"
        assert gone(a["pid"])
        server_pid = server._proc.pid
    assert gone(b["pid"]), "a kernel still running when the block ends is shut down"
    assert gone(server_pid) and kernels._SERVER is None, "the server stops with the block"


@pytest.mark.skipif(not forkserver.enabled(), reason="kernels are forked on POSIX only")
def test_the_server_accepts_only_its_interpreter_and_environment():
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/nowhere"}
    server = forkserver.ForkServer((), env)
    try:
        cmd = [server.executable, "-m", "ipykernel_launcher", "-f", "kernel.json"]
        assert server.accepts(cmd, {**env, "JPY_PARENT_PID": "1"}), (
            "jupyter_client's own variables may differ"
        )
        assert not server.accepts(cmd, {**env, "MPLBACKEND": "Agg"}), (
            "another environment: started as a process"
        )
        assert not server.accepts(["/usr/bin/python3", *cmd[1:]], env), "another interpreter"
        assert not server.accepts([server.executable, "-m", "other_kernel", "-f", "k.json"], env)
    finally:
        server.close()


@pytest.mark.skipif(not forkserver.enabled(), reason="kernels are forked on POSIX only")
def test_a_kernel_dies_with_its_server(marked_env):
    with kernels.warm_kernels(1, kernels.starter(), spares=1) as pool:
        key = kernels.kernel_key("python3", os.environ, kernels.KERNEL_ARGUMENTS, kernels.RUN_KEYS)
        warm = pool.take(key)
        assert warm is not None
        pid = probe(warm)["pid"]
        os.kill(kernels._SERVER._proc.pid, signal.SIGKILL)  # a CLI killed with kill -9 takes it along
        assert gone(pid), "the kernel left no orphan behind"
        assert warm.km.provisioner.process.poll() is not None
        warm.shutdown()


def test_kernels_are_started_as_processes_with_forking_off(marked_env, monkeypatch):
    monkeypatch.setenv("WORKBOOK_FORK_KERNELS", "0")
    with kernels.warm_kernels(1, kernels.starter(), spares=1) as pool:
        key = kernels.kernel_key("python3", os.environ, kernels.KERNEL_ARGUMENTS, kernels.RUN_KEYS)
        warm = pool.take(key)
        assert warm is not None
        assert kernels._SERVER is None
        got = probe(warm)
        assert got["ppid"] == os.getpid() and got["mark"] == "forked"
        warm.shutdown()


def test_the_fork_server_imports_every_module_a_pipeline_or_report_notebook_imports():
    """A module a notebook imports that the server did not is imported again by every kernel."""
    import ast
    import importlib.util

    from helpers.core import paths

    wanted: set[str] = set()
    for folder in ("pipelines", "reports"):
        for path in sorted((paths.REPO_ROOT / "notebooks" / folder).glob("*.ipynb")):
            cells = json.loads(path.read_text())["cells"]
            source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
            for node in ast.walk(ast.parse("\n".join(lines))):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers"):
                    for alias in node.names:
                        sub = f"{node.module}.{alias.name}"
                        wanted.add(sub if importlib.util.find_spec(node.module).submodule_search_locations
                                   and importlib.util.find_spec(sub) else node.module)  # fmt: skip
                elif isinstance(node, ast.Import):
                    wanted |= {a.name for a in node.names if a.name.startswith("helpers")}
    assert wanted, "the notebooks import the workbook's modules"
    probe = (
        "import importlib, json, sys\n"
        f"for m in {kernels.FORK_IMPORTS!r}:\n    importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in {sorted(wanted)!r} if m not in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    missing = json.loads(out.stdout.strip().splitlines()[-1])
    assert not missing, f"add to kernels.FORK_IMPORTS: {missing}"


FIRST_USE = """
import datetime as dt
import pandas as pd
from helpers.core import businesscal, config
from helpers.investor import charts
from helpers.storage import engine as engines
businesscal.BusinessCalendar.from_team(config.get().team).is_business_day(dt.date(2026, 7, 3))
e = engines.get_engine("duckdb")
frame = e.session.createDataFrame(pd.DataFrame({"x": [1], "y": ["a"]}))
e.to_pandas(frame.groupBy("y").agg(e.F.count(e.F.lit(1)).alias("n")))
charts.waterfall([("a", 1.0), ("b", 2.0), ("c", 3.0)], title="t", start_label="a", end_label="c")._repr_png_()
pd.DataFrame({"a": [1.5], "b": ["x"]})._repr_html_()
"""


def test_what_the_notebooks_load_on_first_use_the_fork_server_loaded_before_forking():
    """A holiday lookup, a query on the DuckDB engine, a chart's PNG and a table's HTML import
    nothing after the server's imports and warm-up: a module loaded on first use (every country's
    holidays, every sqlglot dialect) would be loaded again by every kernel."""
    probe = (
        "import importlib, json, os, sys\n"
        "os.environ['MPLBACKEND'] = 'Agg'\n"
        "from helpers.core import kernels\n"
        "for m in kernels.FORK_IMPORTS:\n    importlib.import_module(m)\n"
        "for line in kernels.FORK_WARMUP:\n    exec(line, {})\n"
        "before = set(sys.modules)\n"
        f"exec({FIRST_USE!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    late = json.loads(out.stdout.strip().splitlines()[-1])
    assert late == [], f"add to kernels.FORK_IMPORTS (or FORK_WARMUP): {late}"

"""The runner's kernels listen on Unix sockets in a folder of the process's own (``kernels.manager_class``):
no TCP port is chosen by the manager and bound later by the kernel, so nothing else on the machine can
take one in between; the folder is private, each kernel's sockets are its own, and the folder goes with
the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers.core import kernels

pytestmark = pytest.mark.unit

# Two kernels at once, each asked to compute; what their managers wrote in the connection files.
SCRIPT = r"""
import json, os, stat
from helpers.core import kernels

out = {}
with kernels.warm_kernels(2, kernels.starter(), spares=2) as pool:
    key = kernels.kernel_key("python3", os.environ, kernels.KERNEL_ARGUMENTS, kernels.RUN_KEYS)
    warm = [pool.take(key), pool.take(key)]
    out["kernels"] = []
    for w in warm:
        client = w.km.blocking_client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive("6 * 7", timeout=60, output_hook=lambda msg: None)
        client.stop_channels()
        info = w.km.get_connection_info()
        sockets = [f"{info['ip']}-{info[name]}" for name in
                   ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
        out["kernels"].append({"status": reply["content"]["status"], "transport": info["transport"],
                               "sockets": sockets, "exist": all(stat.S_ISSOCK(os.stat(s).st_mode) for s in sockets)})
        w.shutdown()
    folder = kernels.ipc_dir()
    out["folder"], out["mode"] = folder, stat.S_IMODE(os.stat(folder).st_mode)
print(json.dumps(out))
"""


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets")
def test_kernels_listen_on_private_unix_sockets_that_go_with_the_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    first, second = got["kernels"]
    assert first["status"] == second["status"] == "ok"
    assert first["transport"] == second["transport"] == "ipc"
    assert first["exist"] and second["exist"], "each kernel bound the sockets its manager named"
    assert not set(first["sockets"]) & set(second["sockets"]), "two kernels share no socket"
    assert all(os.path.dirname(s) == got["folder"] for s in first["sockets"] + second["sockets"])
    assert got["mode"] == 0o700, "only the user can reach the kernels"
    assert not os.path.exists(got["folder"]), "the folder is removed when the process exits"


def test_a_temporary_folder_too_long_for_a_socket_path_falls_back_to_tcp(monkeypatch, tmp_path):
    deep = tmp_path / ("d" * (kernels.IPC_PATH_MAX - len(str(tmp_path))))
    deep.mkdir()
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(kernels, "_IPC_DIR", None)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    assert kernels.ipc_dir() is None
    assert list(deep.iterdir()) == [], "the folder it tried is removed"
    km = kernels.manager_class()(kernel_name="python3")
    assert km.transport == "tcp" and km.ip == "127.0.0.1"


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets")
def test_the_folders_of_processes_that_are_gone_are_swept(monkeypatch, tmp_path):
    import tempfile

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"{kernels.IPC_PREFIX}{int(dead.stdout)}-abc"  # killed: its exit hook never ran
    live = tmp_path / f"{kernels.IPC_PREFIX}{os.getppid()}-def"
    other = tmp_path / "workbook-kernels-notes"
    for folder in (stale, live, other):
        folder.mkdir()
        (folder / "k-1").write_text("")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(kernels, "_IPC_DIR", None)
    kernels.ipc_dir()
    assert not stale.exists(), "the folder of a process that is gone is removed"
    assert live.exists() and other.exists(), "a running process's folder, and what is not one, stay"


def test_a_shutting_down_kernel_is_polled_every_few_milliseconds_not_every_tenth_of_a_second(monkeypatch):
    """jupyter_client polls a kernel it asked to shut down every 0.1 s: a run waited up to that
    long after its kernel had exited. The runner's manager polls every ``SHUTDOWN_POLL``."""
    import asyncio

    km = kernels.manager_class()()
    alive = iter([True, True, True, False])
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def is_alive() -> bool:
        return next(alive)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(km, "_async_is_alive", is_alive)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(km._async_wait())  # as _async_finish_shutdown calls it: pollinterval 0.1
    assert slept == [kernels.SHUTDOWN_POLL] * 3 and kernels.SHUTDOWN_POLL <= 0.02

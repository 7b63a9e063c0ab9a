"""Kernels forked from a process that has already imported what notebooks import.

A kernel's imports (pandas, pyarrow, SQLAlchemy, matplotlib, scrapbook, the workbook's modules:
:data:`helpers.core.kernels.WARM_IMPORTS`; and ipykernel's own, IPython and the debugger's debugpy:
:data:`helpers.core.kernels.KERNEL_IMPORTS`) cost about 1.6 CPU seconds, every kernel again. A close
that builds its trailing months starts 67 kernels, so on two cores the imports alone took about
45 s of its wall time. A *fork server* imports them once; each warm kernel is then a fork of it.

A forked kernel is still a kernel of its own, as fresh as one started by ``python -m
ipykernel_launcher``: a new process with its own pid and session (so its process group can be
interrupted and killed as jupyter_client does), the environment, working directory and standard
streams of the request, and nothing run in it but the imports. The server runs no thread and
creates no socket, event loop or ZeroMQ context before it forks; Python's own at-fork hooks reseed
``random`` in each child.

The protocol is one ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair (a message per packet): the client
sends a request (JSON: the ``ipykernel_launcher`` arguments, environment, working directory) with
the child's stdin, stdout and stderr as passed file descriptors; the server forks, waits until the
child has its own session, and answers with its pid. The server reaps its children and reports
each exit status; it exits when the client closes the socket, killing the kernels left (a CLI
killed with ``kill -9`` leaves none behind). :class:`ForkProvisioner` is the jupyter_client
provisioner that launches through it, and falls back to an ordinary ``Popen`` launch for any command
or environment the server was not started for.

POSIX only; ``WORKBOOK_FORK_KERNELS=0`` turns it off (warm kernels are then started as processes).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LAUNCHER = ("-m", "ipykernel_launcher")  # what a kernel command runs after the interpreter
# Variables jupyter_client sets per kernel: they may differ from the server's environment.
PER_KERNEL = frozenset({"JPY_PARENT_PID", "JPY_SESSION_NAME"})
MAX_MESSAGE = 1 << 20
# In the server and the kernels forked from it: the modules the server had imported when ready.
IMPORTED: frozenset[str] = frozenset()


class Unavailable(RuntimeError):
    """The fork server is not running (it failed to start, or has exited)."""


# ---------------------------------------------------------------- the server process


def _send(sock: socket.socket, message: Mapping[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _child(sock: socket.socket, wake: tuple[int, int], request: Mapping[str, Any], fds: Sequence[int],
           ready_w: int) -> None:  # fmt: skip
    """In the forked child: become the kernel of ``request``; never returns."""
    code = 1
    try:
        os.setsid()
        os.write(ready_w, b"x")
        os.close(ready_w)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.close()
        for fd in wake:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("cwd"):
            os.chdir(request["cwd"])
        import ipykernel_launcher  # noqa: F401  (its path only: its body runs under __main__)
        from ipykernel import kernelapp

        args = list(request["args"])
        if request["env"].get("JPY_PARENT_PID"):  # read by ipykernel at import: in the server's environment
            args.append(f"--IPKernelApp.parent_handle={request['env']['JPY_PARENT_PID']}")
        sys.argv = [ipykernel_launcher.__file__, *args]
        kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001  (a kernel that cannot start says why on its stderr)
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _fork(sock: socket.socket, wake: tuple[int, int], request: Mapping[str, Any], fds: Sequence[int]) -> int:
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _child(sock, wake, request, fds, ready_w)
    os.close(ready_w)
    for fd in fds:
        os.close(fd)
    os.read(ready_r, 1)  # the child has its own session: its process group is its pid
    os.close(ready_r)
    return pid


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def serve(fd: int, modules: Sequence[str], preamble: Sequence[str] = (), warmup: Sequence[str] = ()) -> None:
    """The server's loop on the socket ``fd``: run the kernels' ``preamble`` statements (their
    ``exec_lines``), import ``modules``, run the ``warmup`` statements (what a module loads lazily
    on first use), then fork a kernel per request."""
    import gc
    import importlib

    sock = socket.socket(fileno=fd)
    for line in preamble:
        exec(line, {})  # noqa: S102  (the kernels' own start lines, from helpers.core.kernels)
    # debugpy (ipykernel's debugger) warns on stderr at import that this interpreter uses frozen
    # modules (a kernel started as a process imports it after ipykernel has taken over stderr)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    gc.disable()
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  (the kernel imports it again, and says why)
                pass
        for line in warmup:
            try:
                exec(line, {})  # noqa: S102  (helpers.core.kernels.FORK_WARMUP)
            except Exception:  # noqa: BLE001  (the kernel does it again on first use)
                pass
    finally:
        gc.enable()
        gc.freeze()
    global IMPORTED
    IMPORTED = frozenset(sys.modules)
    if threading.active_count() > 1:  # forking a threaded process is not safe: decline
        _send(sock, {"error": f"{threading.active_count()} threads after the imports"})
        return
    wake = os.pipe()
    for end in wake:
        os.set_blocking(end, False)
    signal.set_wakeup_fd(wake[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    _send(sock, {"ready": os.getpid()})
    try:
        while True:
            readable, _w, _x = select.select([sock, wake[0]], [], [])
            if wake[0] in readable:
                while True:
                    try:
                        if not os.read(wake[0], 512):
                            break
                    except BlockingIOError:
                        break
            _reap(sock, children)
            if sock not in readable:
                continue
            message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 3)
            if not message:
                break  # the client is gone
            request = json.loads(message)
            try:
                pid = _fork(sock, wake, request, fds)
            except OSError as exc:
                _send(sock, {"id": request["id"], "error": str(exc)})
                continue
            children.add(pid)
            _send(sock, {"id": request["id"], "pid": pid})
    finally:
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------- the client


class ForkedProcess:
    """A forked kernel as ``subprocess.Popen`` shows a process (what jupyter_client's provisioner uses)."""

    stdin = stdout = stderr = None

    def __init__(self, server: ForkServer, pid: int):
        self._server = server
        self.pid = pid
        self.args = ["<forked kernel>"]

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        return self._server.exit_code(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        code = self._server.wait_exit(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """A server process that ran ``preamble``, imported ``modules`` and ran ``warmup`` under ``env``,
    and forks kernels on request."""

    def __init__(
        self,
        modules: Sequence[str],
        env: Mapping[str, str],
        *,
        preamble: Sequence[str] = (),
        warmup: Sequence[str] = (),
    ):
        self.env = dict(env)
        self.executable = sys.executable
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (
            "from helpers.core.forkserver import serve; "
            f"serve({theirs.fileno()}, {tuple(modules)!r}, {tuple(preamble)!r}, {tuple(warmup)!r})"
        )
        self._proc = subprocess.Popen(
            [self.executable, "-c", code], env=self.env, pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        theirs.close()
        self._sock = ours
        self._lock = threading.Condition()
        self._send_lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}
        self._state = "starting"  # ready | failed: <why> | closed
        self._next = 0
        threading.Thread(target=self._read, name="fork-server", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            with self._lock:
                if not data:
                    if self._state in ("starting", "ready"):
                        self._state = "failed: the fork server exited"
                    self._lock.notify_all()
                    return
                message = json.loads(data)
                if "ready" in message:
                    self._state = "ready"
                elif "exit" in message:
                    self._exits[int(message["exit"])] = int(message["code"])
                elif "id" in message:
                    self._replies[int(message["id"])] = message
                elif "error" in message:
                    self._state = f"failed: {message['error']}"
                self._lock.notify_all()

    @property
    def pid(self) -> int:
        """The server process's pid: the parent of every kernel it forks."""
        return self._proc.pid

    def ready(self, timeout: float = 60.0) -> bool:
        """Whether the server is up, waiting up to ``timeout`` s for its imports."""
        with self._lock:
            self._lock.wait_for(lambda: self._state != "starting", timeout=timeout)
            return self._state == "ready"

    def accepts(self, cmd: Sequence[str], env: Mapping[str, str] | None) -> bool:
        """Whether ``cmd`` (with ``env``) is a kernel this server can fork: the same interpreter,
        ``-m ipykernel_launcher``, the server's environment but for jupyter_client's own variables."""
        if len(cmd) < 3 or cmd[0] != self.executable or tuple(cmd[1:3]) != LAUNCHER:
            return False
        given = {k: v for k, v in (env if env is not None else os.environ).items() if k not in PER_KERNEL}
        return given == {k: v for k, v in self.env.items() if k not in PER_KERNEL}

    def spawn(self, cmd: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None,
              stdout: int | None = None, stderr: int | None = None) -> ForkedProcess:  # fmt: skip
        """Fork the kernel ``cmd`` (see :meth:`accepts`); raises :class:`Unavailable` when it can't."""
        if not self.ready():
            raise Unavailable(self._state)
        with self._lock:
            self._next += 1
            ident = self._next
        request = {"id": ident, "args": list(cmd[3:]), "env": dict(env), "cwd": cwd or os.getcwd()}
        with open(os.devnull, "rb") as null:
            fds = [null.fileno(), sys.stdout.fileno() if stdout is None else stdout,
                   sys.stderr.fileno() if stderr is None else stderr]  # fmt: skip
            try:
                with self._send_lock:
                    socket.send_fds(self._sock, [json.dumps(request).encode()], fds)
            except OSError as exc:
                raise Unavailable(f"the fork server cannot be reached: {exc}") from exc
        with self._lock:
            self._lock.wait_for(lambda: ident in self._replies or self._state != "ready", timeout=30)
            reply = self._replies.pop(ident, None)
        if reply is None or "pid" not in reply:
            raise Unavailable((reply or {}).get("error") or self._state)
        return ForkedProcess(self, int(reply["pid"]))

    def exit_code(self, pid: int) -> int | None:
        """A child's exit code once it has exited (-9 when the server went first), else None."""
        with self._lock:
            if pid in self._exits:
                return self._exits[pid]
            if self._state == "ready":
                return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return -signal.SIGKILL
        except PermissionError:
            pass
        return None

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self.exit_code(pid)
            left = None if deadline is None else deadline - time.monotonic()
            if code is not None or (left is not None and left <= 0):
                return code
            with self._lock:
                self._lock.wait(timeout=0.1 if left is None else min(0.1, left))

    def close(self) -> None:
        """Stop the server (it kills the kernels it still has)."""
        with self._lock:
            self._state = "closed"
            self._lock.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def enabled() -> bool:
    return (
        os.name == "posix"
        and hasattr(socket, "send_fds")
        and os.environ.get("WORKBOOK_FORK_KERNELS", "1") != "0"
    )


def provisioner(km: Any, server: ForkServer) -> Any:
    """A :class:`ForkProvisioner` for the kernel manager ``km`` (before its kernel starts)."""
    import uuid

    km.kernel_id = km.kernel_id or str(uuid.uuid4())
    return _provisioner_class()(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km, server=server)


_CLASS: Any = None


def _provisioner_class() -> Any:
    """:class:`ForkProvisioner`, defined on first use (jupyter_client is not imported at module level)."""
    global _CLASS
    if _CLASS is None:
        from jupyter_client.provisioning import LocalProvisioner

        class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
            """jupyter_client's local provisioner, launching through a :class:`ForkServer`."""

            def __init__(self, *, server: ForkServer, **kwargs: Any):
                super().__init__(**kwargs)
                self.fork_server = server

            async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
                env = kwargs.get("env")
                if env is None or not self.fork_server.accepts(cmd, env):
                    return await super().launch_kernel(cmd, **kwargs)
                env = {**env, "JPY_PARENT_PID": str(self.fork_server.pid)}  # the kernel's parent
                try:
                    proc = self.fork_server.spawn(cmd, env, cwd=kwargs.get("cwd"), stdout=kwargs.get("stdout"),
                                                  stderr=kwargs.get("stderr"))  # fmt: skip
                except Unavailable as exc:
                    log.info("forking a kernel: %s; starting it as a process", exc)
                    return await super().launch_kernel(cmd, **kwargs)
                self.process, self.pid, self.pgid = proc, proc.pid, proc.pid
                self.cwd = kwargs.get("cwd", Path.cwd())
                return self.connection_info

        _CLASS = ForkProvisioner
    return _CLASS

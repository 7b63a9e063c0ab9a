"""Warm kernels: the next run's kernel starts, and imports what notebooks import, while a run computes.

A kernel takes 0.5-0.7 s to start and a pipeline notebook's imports 1-2 s more (pandas, pyarrow,
SQLAlchemy, matplotlib, scrapbook, the workbook's own modules). In a close most of its notebooks run
one after the other (Profit, unit Profit, Engagement, the investor aggregate, the reports), so that
time sits on the close's critical path while the other core is idle. Inside :func:`warm_kernels`
the runner takes a kernel that is already up (:func:`take`), and a replacement starts in the
background for the next run. Each run still gets a fresh kernel of its own, shut down when the run
ends: a warm kernel has run nothing but :data:`WARM_IMPORTS`.

A warm kernel is started with this process's environment less the run's own variables (the run id,
the clock); the run's are set in the kernel, with its working directory, by one silent statement
before the first cell (:meth:`WarmKernel.prepare`). A spare whose environment, kernel name or
arguments no longer match the run's is shut down and the run starts its kernel as before; so is
every spare left when the block ends. Nothing here reads the clock: start times are monotonic.

The first kernels of a command can start before the command has imported anything heavy
(:func:`early`, called by the ``workbook`` entry point for ``workbook close``): the block it opens
pre-pays runs, which the blocks opened later by the close take from instead of adding their own. So
the close's first runs find kernels that started while the CLI itself was importing.

This module imports nothing of the workbook's above ``helpers.core`` and nothing heavy at module level.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from helpers.core import envnames, forkserver

log = logging.getLogger(__name__)

# Run by each kernel before the first cell (IPKernelApp.exec_lines): jsonschema's optional
# rfc3987_syntax builds a Lark grammar at import (see the note in helpers.runs.runner).
KERNEL_EXEC_LINES = ("import sys; sys.modules.setdefault('rfc3987_syntax', None)",)
# A run's kernel keeps no IPython history: its code is the notebook, archived with the run. With
# history on, each kernel opened the profile's SQLite history and a thread wrote every cell to it:
# about 0.1 CPU second a run, 67 runs in a first close (benchmarks/bench_close.py).
KERNEL_ARGUMENTS = (
    *(f"--IPKernelApp.exec_lines={line}" for line in KERNEL_EXEC_LINES),
    "--HistoryManager.enabled=False",
)
RUN_KEYS = (envnames.RUN_ID, envnames.CLOCK)  # a kernel's own variables: set in a warm kernel by the run

# ipykernel (7+) logs this at every start of a kernel whose TCP transport has no CurveZMQ keys. The
# runner's kernels listen on Unix sockets (:func:`manager_class`); where they fall back to TCP, they
# listen on localhost only and get CurveZMQ keys when their kernelspec supports it (jupyter_client's
# ``transport_encryption="auto"``); for a kernelspec that does not, this one line is dropped from the
# kernel's stderr (everything else passes through).
KERNEL_TCP_WARNING = b"Kernel is running over TCP without encryption"
# The verbs whose first kernels the entry point starts before the CLI's imports, and how many.
EARLY_VERBS = {"close": 2}

# What a warm kernel imports before it is handed out (names that fail to import are skipped).
WARM_IMPORTS = (
    "pandas",
    "pyarrow.parquet",
    "sqlalchemy",
    "scrapbook",
    "matplotlib.pyplot",
    "helpers.runs.session",
    "helpers.runs.scraps",
    "helpers.checks",
    "helpers.oncall.incidents",  # what a run's checks import when they run (icalendar's schedules)
    "helpers.investor.charts",
    "helpers.storage.warehouse",
)
# What a kernel imports as it starts, before its first cell: ipykernel, its debugger's debugpy
# (pydevd), and what IPython's shell imports as it starts; about 0.25 CPU second a kernel when
# imported after the fork (tests/unit/core/test_forkserver.py: a forked kernel imports none of them).
KERNEL_IMPORTS = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
)
# What the fork server imports besides (helpers.core.forkserver): paid once per command there, so
# it also takes the modules the pipeline and report notebooks import (tests/unit/core: each one is).
FORK_IMPORTS = (
    *KERNEL_IMPORTS,
    *WARM_IMPORTS,
    "duckdb",
    "sqlframe.duckdb",
    "helpers.storage.engine",
    "helpers.storage.bulkread",
    "helpers.profit.aggregate",
    "helpers.profit.checks",
    "helpers.profit.inputs",
    "helpers.profit.marts",
    "helpers.profit.readable",
    "helpers.profit.reconcile",
    "helpers.profit.unit",
    "helpers.growth.metrics",
    "helpers.growth.month",
    "helpers.engagement.checks",
    "helpers.engagement.event_contract",
    "helpers.engagement.inputs",
    "helpers.engagement.run",
    "helpers.engagement.store",
    "helpers.engagement.window",
    "helpers.investor.aggregate",
    "helpers.investor.close",
    "helpers.investor.explain",
    "helpers.investor.inputs",
    "helpers.investor.metrics",
    "helpers.investor.pack",
    "helpers.investor.publication",
    "helpers.investor.report",
    "helpers.investor.weekly",
    "helpers.investor.weekly_needs",
    # what the notebooks' code imports on first use (tests/unit/core/test_forkserver.py): every
    # country's holidays (businesscal), matplotlib's PNG writer (charts), pandas' HTML tables and
    # dict conversion, Arrow's pandas conversion, SQLFrame's DuckDB functions
    "holidays.countries",
    "matplotlib.backends.backend_agg",
    "pandas.io.formats.html",
    "pandas.core.methods.to_dict",
    "numpy.rec",
    "pyarrow.pandas_compat",
    "pyarrow.vendored.version",
    "sqlframe.duckdb.functions",
)
# Run by the fork server after its imports, what modules load on first use: SQLFrame's first
# column reads sqlglot's ``Dialect.classes``, which imports every dialect (about 100 modules, 0.08
# CPU second a kernel); Pillow's first image loads its common format plugins.
FORK_WARMUP = (
    "from sqlglot.dialects.dialect import Dialect; Dialect.classes",
    "from PIL import Image; Image.preinit()",
)


def warm_line(modules: Sequence[str] = WARM_IMPORTS) -> str:
    """The kernel start line that imports ``modules`` (an ``IPKernelApp.exec_lines`` entry).

    The cyclic garbage collector is off while they import (they allocate millions of objects that
    live as long as the kernel, and collecting them over and over is a third of the imports' CPU),
    then on again, with what they made frozen out of later collections (``gc.freeze``).
    """
    return (
        "import gc as _g, importlib as _i\n"
        "_m = None\n_g.disable()\n"
        "try:\n"
        f"    for _m in {tuple(modules)!r}:\n"
        "        try:\n            _i.import_module(_m)\n        except Exception:\n            pass\n"
        "finally:\n    _g.enable()\n    _g.freeze()\n"
        "del _g, _i, _m"
    )


@dataclass
class WarmKernel:
    """A started kernel waiting for a run; ``key`` is what it was started with."""

    km: Any  # jupyter_client.AsyncKernelManager
    key: tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]]
    run_env: dict[str, str | None] = field(default_factory=dict)
    cwd: str | None = None

    def prepare(self, client: Any) -> None:
        """Give the kernel the run's variables and working directory (one silent statement)."""
        code = (
            "import os as _o\n"
            f"for _k, _v in {self.run_env!r}.items():\n"
            "    _o.environ.pop(_k, None) if _v is None else _o.environ.__setitem__(_k, _v)\n"
            + (f"_o.chdir({self.cwd!r})\n" if self.cwd else "")
            + "del _o, _k, _v"
        )
        reply = client.wait_for_reply(client.kc.execute(code, silent=True, store_history=False))
        if reply is None or reply["content"].get("status") != "ok":
            raise RuntimeError(f"could not prepare the warm kernel: {reply and reply['content']}")

    def alive(self) -> bool:
        from jupyter_core.utils import run_sync

        try:
            return bool(run_sync(self.km.is_alive)())
        except Exception:
            return False

    def shutdown(self) -> None:
        from jupyter_core.utils import run_sync

        try:
            run_sync(self.km.shutdown_kernel)(now=True)
        except Exception as exc:  # already gone
            log.debug("warm kernel shutdown: %s", exc)


def kernel_key(kernel_name: str, env: Mapping[str, str], arguments: Sequence[str],
               run_keys: Sequence[str]) -> tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]]:  # fmt: skip
    """What must match for a warm kernel to serve a run: its name, environment (less the run's own
    variables ``run_keys``) and start arguments."""
    base = tuple(sorted((k, v) for k, v in env.items() if k not in run_keys))
    return kernel_name, base, tuple(arguments)


class KernelPool:
    """Up to ``spares`` warm kernels, started in the background while ``budget`` runs remain."""

    def __init__(self, starter: Callable[[], WarmKernel], *, budget: int, spares: int = 1, prepaid: int = 0):
        self._starter = starter
        self._budget = budget + prepaid
        self._prepaid = prepaid  # runs counted ahead (:func:`early`): later blocks' runs use them up first
        self._spares = spares
        self._ready: list[WarmKernel] = []
        self._starting = 0
        self._closed = False
        self._lock = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._fill()

    def add_budget(self, runs: int, spares: int | None = None) -> None:
        """``runs`` more runs (less those pre-paid), with up to ``spares`` kernels warm at a time."""
        with self._lock:
            paid = min(self._prepaid, runs)
            self._prepaid -= paid
            self._budget += runs - paid
            if spares is not None:
                self._spares = max(self._spares, spares)
        self._fill()

    def _fill(self) -> None:
        with self._lock:
            want = min(self._spares, self._budget) - len(self._ready) - self._starting
            if self._closed or want <= 0:
                return
            self._starting += want
        for _ in range(want):
            t = threading.Thread(target=self._start_one, name="warm-kernel", daemon=True)
            self._threads.append(t)
            t.start()

    def _start_one(self) -> None:
        kernel = None
        try:
            kernel = self._starter()
        except Exception as exc:  # the run will start its own kernel
            log.warning("a warm kernel did not start: %s", exc)
        with self._lock:
            self._starting -= 1
            if kernel is not None and self._closed:
                kernel.shutdown()
            elif kernel is not None:
                self._ready.append(kernel)
            self._lock.notify_all()

    def take(self, key: tuple[Any, ...]) -> WarmKernel | None:
        """A warm kernel started with ``key`` (waiting for one being started), or None."""
        with self._lock:
            if self._closed:
                return None
            self._budget = max(0, self._budget - 1)
            while not self._ready and self._starting:
                self._lock.wait(timeout=60)
            kernel = self._ready.pop(0) if self._ready else None
        self._fill()
        if kernel is None:
            return None
        if kernel.key != key or not kernel.alive():
            kernel.shutdown()
            return None
        return kernel

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spares, self._ready = self._ready, []
        for kernel in spares:
            kernel.shutdown()
        for t in self._threads:
            t.join(timeout=60)


_POOL: KernelPool | None = None
_POOL_LOCK = threading.Lock()


_SERVER: forkserver.ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def fork_server(env: Mapping[str, str]) -> forkserver.ForkServer | None:
    """The fork server warm kernels are forked from (:mod:`helpers.core.forkserver`), started with
    ``env`` on first use and kept until the outermost :func:`warm_kernels` block ends; None where
    kernels are not forked, or when the running server was started with another environment."""
    global _SERVER
    if not forkserver.enabled():
        return None
    with _SERVER_LOCK:
        if _SERVER is None:
            _SERVER = forkserver.ForkServer(FORK_IMPORTS, env, preamble=KERNEL_EXEC_LINES, warmup=FORK_WARMUP)
        server = _SERVER
    return server if server.env == dict(env) else None


def stop_fork_server() -> None:
    global _SERVER
    with _SERVER_LOCK:
        server, _SERVER = _SERVER, None
    if server is not None:
        server.close()


IPC_PATH_MAX = 100  # bytes of a kernel socket's path, suffix included (a Unix socket's holds 107)

_MANAGER: Any = None
_IPC_DIR: str | None = None
_IPC_LOCK = threading.Lock()


IPC_PREFIX = "workbook-kernels-"


def _sweep_ipc_dirs(parent: str) -> None:
    """Remove the socket folders of this user's processes that are gone (killed, or a forked kernel
    that ended with ``os._exit``, whose exit hooks did not run)."""
    import shutil

    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(IPC_PREFIX) :].split("-", 1)[0]
        if not (entry.name.startswith(IPC_PREFIX) and pid.isdigit()):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid() or not entry.is_dir(
                follow_symlinks=False
            ):
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:  # another user's process, or the entry went meanwhile
            continue


def ipc_dir() -> str | None:
    """This process's private folder (mode 0700) for its kernels' Unix sockets, made on first use and
    removed when the process exits (or, killed, by the next one that makes its own); None where there
    are no Unix sockets or the temporary folder's path leaves no room for a socket's name."""
    global _IPC_DIR
    if os.name != "posix":
        return None
    with _IPC_LOCK:
        if _IPC_DIR is None:
            import atexit
            import shutil
            import tempfile

            _sweep_ipc_dirs(tempfile.gettempdir())
            folder = tempfile.mkdtemp(prefix=f"{IPC_PREFIX}{os.getpid()}-")
            if len(os.fsencode(folder)) + 24 > IPC_PATH_MAX:  # "/" + 12 hex + "-" + a number
                os.rmdir(folder)
                _IPC_DIR = ""  # decided once: TCP for every kernel of this process
                return None
            owner = os.getpid()  # a forked child inherits the hook: only the maker removes the folder
            atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
            _IPC_DIR = folder
        return _IPC_DIR or None


def manager_class() -> Any:
    """The kernel manager of the runner's kernels: jupyter_client's ``AsyncKernelManager`` on the
    ``ipc`` transport, each kernel's five sockets named after it in :func:`ipc_dir` (TCP where that
    is None).

    On TCP the manager finds five free ports, closes them and writes them to the connection file, and
    the kernel binds them once it runs: seconds later for a kernel forked from a fork server that is
    still importing. Any connection opened on the machine meanwhile may take one of them as its own
    port, and the kernel dies at its start (``Address already in use``). A socket's path in a private
    folder is this process's alone.
    """
    global _MANAGER
    if _MANAGER is None:
        import uuid

        from jupyter_client.manager import AsyncKernelManager
        from traitlets import default

        class WorkbookKernelManager(AsyncKernelManager):  # type: ignore[misc]
            async def _async_wait(self, pollinterval: float = 0.1) -> None:
                # jupyter_client polls a shutting-down kernel every 0.1 s: each run waited that
                # long after its kernel had exited, with its worker idle
                while await self._async_is_alive():
                    await asyncio.sleep(min(pollinterval, SHUTDOWN_POLL))

            @default("transport")
            def _transport_default(self) -> str:
                return "ipc" if ipc_dir() is not None else "tcp"

            @default("ip")
            def _ip_default(self) -> str:
                folder = ipc_dir() if self.transport == "ipc" else None
                return os.path.join(folder, uuid.uuid4().hex[:12]) if folder else super()._ip_default()

        _MANAGER = WorkbookKernelManager
    return _MANAGER


SHUTDOWN_POLL = 0.01  # s: how often a run's kernel is polled while it shuts down
IOPUB_QUIET = 0.02  # s: the IOPub flush of a warm kernel's wait_for_ready ends after this much silence

_CLIENT: Any = None


def client_class() -> Any:
    """The kernel client of a warm kernel: jupyter_client's ``AsyncKernelClient``, whose
    ``wait_for_ready`` ends its IOPub flush after :data:`IOPUB_QUIET` of silence instead of 0.2 s.

    The flush drops the status messages of the ``kernel_info`` requests; the notebook client reads
    only the IOPub messages of its own requests (by parent message id), so one that arrives later is
    skipped there all the same. 0.2 s per run was a tenth of a short run, with the worker idle.
    """
    global _CLIENT
    if _CLIENT is None:
        from queue import Empty

        from jupyter_client.asynchronous import AsyncKernelClient

        class WarmKernelClient(AsyncKernelClient):  # type: ignore[misc]
            async def wait_for_ready(self, timeout: float | None = None) -> None:
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:  # a kernel_info reply, and IOPub connected (the request's status arrives)
                    self.kernel_info()
                    try:
                        msg = await self.shell_channel.get_msg(timeout=1)
                    except Empty:
                        msg = None
                    if msg is not None and msg["msg_type"] == "kernel_info_reply":
                        try:
                            await self.iopub_channel.get_msg(timeout=0.2)
                        except Empty:
                            pass
                        else:
                            self._handle_kernel_info_reply(msg)
                            break
                    if not await self._async_is_alive():
                        raise RuntimeError("Kernel died before replying to kernel_info")
                    if deadline is not None and time.monotonic() > deadline:
                        raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
                while True:
                    try:
                        await self.iopub_channel.get_msg(timeout=IOPUB_QUIET)
                    except Empty:
                        break

        _CLIENT = WarmKernelClient
    return _CLIENT


def start_kernel(kernel_name: str, env: Mapping[str, str], arguments: Sequence[str], run_keys: Sequence[str],
                 start_kwargs: Callable[[], AbstractContextManager[dict[str, Any]]]) -> WarmKernel:  # fmt: skip
    """Start a kernel now that also imports :data:`WARM_IMPORTS` (blocking until its process is
    launched, not until it is ready); its key is ``arguments``' without the warm imports."""
    base = {k: v for k, v in env.items() if k not in run_keys}
    km = manager_class()(kernel_name=kernel_name)
    km.client_factory = client_class()
    server = fork_server(base)
    if server is not None:
        km.provisioner = forkserver.provisioner(km, server)
    warm = [*arguments, f"--IPKernelApp.exec_lines={warm_line()}"]
    with start_kwargs() as extra:
        asyncio.run(km.start_kernel(env=base, extra_arguments=warm, **extra))
    return WarmKernel(km, kernel_key(kernel_name, env, arguments, run_keys))


@contextmanager
def warm_kernels(
    runs: int, starter: Callable[[], WarmKernel], *, spares: int = 1, prepaid: bool = False
) -> Iterator[KernelPool | None]:
    """Within the block, up to ``runs`` runs of this process take warm kernels (see the module doc).

    Nested blocks add their runs to the outer pool; ``prepaid``: the nested blocks' first ``runs``
    runs are these ones (:func:`early`). ``WORKBOOK_WARM_KERNELS=0`` turns it off.
    """
    global _POOL
    if runs <= 0 or os.environ.get("WORKBOOK_WARM_KERNELS", "1") == "0":
        yield None
        return
    with _POOL_LOCK:
        outer = _POOL
        if outer is None:
            budget = (0, runs) if prepaid else (runs, 0)
            _POOL = KernelPool(starter, budget=budget[0], prepaid=budget[1], spares=spares)
    if outer is not None:
        outer.add_budget(runs, spares)
        yield outer
        return
    try:
        yield _POOL
    finally:
        with _POOL_LOCK:
            pool, _POOL = _POOL, None
        if pool is not None:
            pool.close()
        stop_fork_server()


def take(key: tuple[Any, ...]) -> WarmKernel | None:
    """A warm kernel for a run whose kernel would be started with ``key`` (None outside a block)."""
    pool = _POOL
    return pool.take(key) if pool is not None else None


def encryption_option() -> dict[str, str]:
    """``transport_encryption="auto"`` where this jupyter_client knows it (8.10+), else nothing."""
    from jupyter_client.manager import KernelManager

    return (
        {"transport_encryption": "auto"} if KernelManager.class_traits().get("transport_encryption") else {}
    )


@contextmanager
def kernel_stderr(target: Any = None) -> Iterator[int]:
    """A file descriptor for a kernel's stderr: lines go on to ``target`` (default: this process's
    stderr) as they come, secrets redacted, except ipykernel's :data:`KERNEL_TCP_WARNING`.

    A daemon thread copies the lines until the last writer (the kernel, its children) closes the pipe.
    """
    read_fd, write_fd = os.pipe()

    def pump() -> None:
        from helpers.core import secrets  # SQLAlchemy's URL parser: not on the entry point's path

        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                if KERNEL_TCP_WARNING in line:
                    continue
                out = target if target is not None else sys.stderr
                try:
                    out.write(
                        secrets.redact(line.decode("utf-8", errors="replace"), secrets.secret_values())[0]
                    )
                    out.flush()
                except (OSError, ValueError):  # our stderr is gone: keep draining the pipe
                    pass

    threading.Thread(target=pump, name="kernel-stderr", daemon=True).start()
    try:
        yield write_fd
    finally:
        os.close(write_fd)  # the kernel holds its own copy until it exits


def starter(kernel_name: str = "python3") -> Callable[[], WarmKernel]:
    """What starts one warm kernel as the runner starts its kernels: this process's environment
    (less :data:`RUN_KEYS`), :data:`KERNEL_ARGUMENTS`, stderr passed on, transport encryption."""

    @contextmanager
    def start_kwargs() -> Iterator[dict[str, Any]]:
        with kernel_stderr() as stderr_fd:
            yield {"stderr": stderr_fd, **encryption_option()}

    def start() -> WarmKernel:
        return start_kernel(kernel_name, dict(os.environ), KERNEL_ARGUMENTS, RUN_KEYS, start_kwargs)

    return start


def early(argv: Sequence[str]) -> AbstractContextManager[KernelPool | None]:
    """The block the ``workbook`` entry point runs a command in: for a verb of :data:`EARLY_VERBS`
    (not asking for help), its first kernels start now, pre-paid for the runs the command will make."""
    verb = argv[0] if argv else ""
    runs = EARLY_VERBS.get(verb, 0)
    if runs and not {"-h", "--help"} & set(argv):
        return warm_kernels(runs, starter(), spares=runs, prepaid=True)
    return nullcontext(None)

"""What every benchmark shares: the machine's description, a memory-limited child process whose
whole process tree's peak RSS is sampled, medians and table printing.

Every measurement runs in a child process (``run_limited``) so each one starts cold and one that
runs out of memory cannot take the harness (or the machine) down:

- the parent samples the resident memory of the child's whole process tree (kernels, the Spark JVM
  included) every 50 ms with psutil and keeps the peak;
- ``mem_limit``: when the tree's RSS exceeds it, the tree is killed and the result says
  ``out of memory at <limit>`` (a valid result: pandas is expected to die at large sizes). Children
  that are not JVMs also get ``RLIMIT_AS`` (address space) at ``as_limit`` as a backstop the kernel
  enforces by itself; the JVM reserves far more address space than it uses, so Spark runs rely on
  the sampler and Spark's own ``spark.driver.memory``.

The figures are taken on whatever machine runs them; ``machine()`` says which, and the load
average is recorded next to each figure because the development machine is shared.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
GiB = 2**30
DEFAULT_LIMIT = 8 * GiB  # never more than ~10 GB on the shared 24 GB machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def load() -> str:
    """The 1-minute load average, as text (``n/a`` where the OS has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def machine() -> str:
    """One line: OS, CPU, cores, RAM, Python, load average now (and whether others were running)."""
    mem = psutil.virtual_memory().total / GiB
    now = load()
    busy = now != "n/a" and float(now) > 0.5 * (os.cpu_count() or 1)
    return (
        f"{platform.system()} {platform.release()}, {cpu_model()}, {os.cpu_count()} CPUs, {mem:.1f} GiB RAM, "
        f"Python {platform.python_version()}; load average {now}"
        + (" (busy: other processes are running, figures are upper bounds)" if busy else "")
    )


def header(name: str, what: str) -> None:
    print(f"\n=== {name}: {what}")
    print(f"machine: {machine()}")
    print(f"started: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC", flush=True)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / 2**20:.0f} MiB"


def median(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else float("nan")


def spread(values: Sequence[float]) -> str:
    """``median (min–max, n)``."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.median(vals):.2f} ({min(vals):.2f}–{max(vals):.2f}, n={len(vals)})"


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A plain-text table (also pasteable as markdown)."""
    if title:
        print(f"\n{title}")
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


@dataclass
class ChildResult:
    """What one limited child did."""

    cmd: list[str]
    returncode: int | None
    wall: float
    peak_rss: int
    stdout: str
    stderr: str
    load_before: str
    load_after: str
    status: str  # ok | failed | oom | timeout
    limit: int
    extra: dict[str, Any] = field(default_factory=dict)

    def result_json(self, marker: str = "RESULT ") -> dict[str, Any] | None:
        """The JSON the child printed on a line starting with ``marker`` (the last one)."""
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith(marker)]
        return json.loads(lines[-1][len(marker) :]) if lines else None

    @property
    def error(self) -> str:
        if self.status == "oom":
            if self.extra.get("oom_line"):  # the child's own allocator gave up (a JVM heap, RLIMIT_AS)
                return f"out of memory: {self.extra['oom_line'][:200]}"
            return f"out of memory at {fmt_bytes(self.limit)}"
        if self.status == "timeout":
            return "timed out"
        if self.status == "failed":
            tail = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
            return tail[-1][:200] if tail else f"exit {self.returncode}"
        return ""


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _kill_tree(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the child leads its own process group
    except (ProcessLookupError, PermissionError):
        pass


def run_limited(
    cmd: Sequence[str],
    *,
    mem_limit: int = DEFAULT_LIMIT,
    as_limit: int | None = None,
    timeout: float = 3600,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    interval: float = 0.05,
    echo: bool = False,
) -> ChildResult:
    """Run ``cmd`` in its own process group under a memory limit; sample its tree's peak RSS.

    ``mem_limit`` bounds the tree's RSS (sampled; the tree is killed above it). ``as_limit``
    sets ``RLIMIT_AS`` on the child (inherited by its children); None leaves it unlimited (JVMs).
    """

    def preexec() -> None:
        os.setsid()
        if as_limit:
            resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    load_before = load()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=str(cwd or REPO),
        preexec_fn=preexec,
    )
    peak = 0
    oom = threading.Event()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                rss = tree_rss(root)
            except psutil.NoSuchProcess:
                break
            peak = max(peak, rss)
            if rss > mem_limit:
                oom.set()
                _kill_tree(proc.pid)
                break
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out_lines.append(line)
            if echo:
                sys.stdout.write("    | " + line)
                sys.stdout.flush()

    err_lines: list[str] = []

    def pump_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)

    readers = [threading.Thread(target=f, daemon=True) for f in (pump, pump_err)]
    for r in readers:
        r.start()
    status = "ok"
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        proc.wait()
        status = "timeout"
    for r in readers:
        r.join(timeout=5)
    err = "".join(err_lines)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join(timeout=5)
    _kill_tree(proc.pid)  # whatever the child left behind (a JVM, a kernel)
    extra: dict[str, Any] = {}
    if oom.is_set():
        status = "oom"
    elif status == "ok" and proc.returncode != 0:
        marks = ("outofmemoryerror", "out of memory", "memoryerror", "cannot allocate")
        hit = next((ln.strip() for ln in err_lines if any(m in ln.lower() for m in marks)), None)
        status = "oom" if hit else "failed"
        if hit:
            extra["oom_line"] = hit
    return ChildResult(list(cmd), proc.returncode, wall, peak, "".join(out_lines), err, load_before, load(),
                       status, as_limit if status == "oom" and as_limit and not oom.is_set() else mem_limit,
                       extra)  # fmt: skip


def write_json(path: Path | None, payload: Any) -> None:
    if path:
        path.write_text(json.dumps(payload, indent=2, default=str))
        print(f"raw figures: {path}")

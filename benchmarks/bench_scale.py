"""Scale: the demo company at 10k-1M accounts and its month's close, wall and peak memory per pipeline.

    .venv/bin/python benchmarks/bench_scale.py [--accounts 10000 ...] [--json F]
    .venv/bin/python benchmarks/bench_scale.py --full           # 10k, 100k and 1M accounts
    .venv/bin/python benchmarks/bench_scale.py --accounts 1000000 --generate-only --nice 10

For each size: the company (``workbook demo-data``, ``--months`` months ending ``--end``, product
events at ``--events-per-user-day``, the same density at every size) is generated once into a
cache folder keyed by those arguments (``--cache``, default ``<tmp>/scale``) and reused when it is
already there (delete the folder after changing the generator); then ``workbook close --month <the last month> --as-of <10 days after it> --history
N`` runs in a new process in a fresh ``WORKBOOK_HOME`` (empty warehouse and run archive; the cached
landing zone is linked in read-only). ``--history`` defaults to 0: the month's own runs (Growth,
Profit, unit Profit, Engagement, the investor aggregate, the two reports); the trailing months
the investor report shows (``--history 12``, a first close's default) are the same runs for
each earlier month, about N times the cost.

Memory: every 50 ms the harness reads the resident memory of every process of the close's tree.
Each kernel (a process running ``ipykernel``, or forked by the fork server) with its children is
one run's: named by the ``WORKBOOK_RUN_ID`` in its environment when it was started for its run,
else (a warm kernel, started before its run and told its id later) matched afterwards to the run
whose first cell it was alive for and whose notebook ended nearest its last sample (one fresh
kernel per run). Per run: the peak of its kernel's tree; per close: the peak of the whole tree, and
of what is not in a kernel (the ``workbook`` process, the fork server, report rendering). A forked
kernel's resident memory includes the pages it shares with the fork server, so the sums count them
more than once: upper bounds. The whole tree is killed above
``--mem-limit`` (GiB, default 12) and reported as out of memory. Durations come from the run
records (``run.json``) and the executed notebooks' papermill metadata (the cells' own time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

WORKBOOK = str(Path(sys.executable).with_name("workbook"))
SHORT = [10_000]
FULL = [10_000, 100_000, 1_000_000]
ONE_AT_A_TIME = (
    1_000_000  # accounts from which the close runs one notebook at a time (--workers 1) by default
)
DENSITY = 0.004  # events per active user-day: ~40M events at 1M accounts x 13 months
RUN_ENV = "WORKBOOK_RUN_ID"  # helpers.storage.warehouse.RUNNER_ENV: the run a kernel belongs to
CLI = "workbook (not kernels)"
FORK_SERVER = "helpers.core.forkserver"  # in the fork server's command line; its children are kernels


# ---------------------------------------------------------------- the company, generated once


def cache_dir(base: Path, args: argparse.Namespace, accounts: int) -> Path:
    key = f"a{accounts}-m{args.months}-e{args.end}-k{args.events_per_user_day:g}-s{args.seed}"
    return base / key


def company(args: argparse.Namespace, accounts: int, limit: int) -> dict[str, Any]:
    """The cached company of this size (generated now if missing): where and how it was generated."""
    folder = cache_dir(args.cache, args, accounts)
    done = folder / "generation.json"
    if done.exists() and (folder / "home" / "data" / "landing" / "_demo.json").exists():
        gen = json.loads(done.read_text())
        print(f"  company: cached in {folder} (generated in {gen['wall']:.0f} s, peak "
              f"{C.fmt_bytes(gen['peak_rss'])})", flush=True)  # fmt: skip
        return {**gen, "cached": True}
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished generation
    (folder / "home").mkdir(parents=True)
    cmd = [WORKBOOK, "demo-data", "--accounts", str(accounts), "--months", str(args.months),
           "--end", args.end.isoformat(), "--seed", str(args.seed),
           "--events-per-user-day", f"{args.events_per_user_day:g}", "--json"]  # fmt: skip
    if args.nice:
        cmd = ["nice", "-n", str(args.nice), *cmd]
    print(f"  company: generating {accounts:,} accounts into {folder} ...", flush=True)
    r = C.run_limited(cmd, env={"WORKBOOK_HOME": str(folder / "home")}, mem_limit=limit,
                      as_limit=limit + 4 * C.GiB, timeout=4 * 3600)  # fmt: skip
    if r.status != "ok":
        raise SystemExit(f"demo-data --accounts {accounts} failed: {r.error}\n{r.stderr[-2000:]}")
    summary = json.loads(r.stdout[r.stdout.index("{") :])
    rows = {name: int(s["rows"]) for name, s in summary["sources"].items()}
    gen = {
        "accounts": accounts,
        "folder": str(folder),
        "wall": r.wall,
        "peak_rss": r.peak_rss,
        "load": f"{r.load_before}/{r.load_after}",
        "nice": args.nice,
        "rows": sum(rows.values()),
        "events": rows.get("events", 0),
        "rows_per_source": rows,
    }
    done.write_text(json.dumps(gen, indent=2) + "\n")
    print(f"  company: {gen['rows']:,} rows ({gen['events']:,} events) in {r.wall:.0f} s, "
          f"{gen['rows'] / r.wall:,.0f} rows/s, peak {C.fmt_bytes(r.peak_rss)}, load {gen['load']}",
          flush=True)  # fmt: skip
    return {**gen, "cached": False}


# ---------------------------------------------------------------- the close, sampled per run


class RunSampler:
    """Samples a process tree every ``interval`` s: the whole tree's RSS and each kernel's tree's.

    A kernel is a process of the tree running ``ipykernel``; its tree is it and its descendants.
    Each kernel is named by its run's id when its environment has one (a kernel started for its
    run); a kernel started ahead of its run (a warm kernel gets the run's id later, which
    ``/proc/<pid>/environ`` does not show) is matched to its run afterwards by time, see
    :func:`match_kernels`. Everything outside the kernels' trees is the ``workbook`` process's.
    """

    def __init__(self, pid: int, mem_limit: int, interval: float = 0.05) -> None:
        self.pid, self.mem_limit, self.interval = pid, mem_limit, interval
        self.peak = 0
        self.cli_peak = 0
        self.kernels: dict[tuple[int, float], dict[str, Any]] = {}
        self.oom = False
        self._kind: dict[tuple[int, float], bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _is_kernel(self, p: psutil.Process, key: tuple[int, float]) -> bool:
        """A process running ``ipykernel``, or a kernel forked from the fork server (its child)."""
        if key not in self._kind:
            cmd = " ".join(p.cmdline())
            if not cmd:
                return False  # not exec'd yet: ask again at the next sample
            parent = p.parent()
            forked = parent is not None and FORK_SERVER in " ".join(parent.cmdline())
            self._kind[key] = "ipykernel" in cmd or forked
        return self._kind[key]

    def sample(self, root: psutil.Process) -> int:
        now, total, in_kernels = time.time(), 0, 0
        for p in root.children(recursive=True):
            try:
                key = (p.pid, p.create_time())
                if not self._is_kernel(p, key):
                    continue
                rss = p.memory_info().rss
                for c in p.children(recursive=True):
                    rss += _rss(c)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            k = self.kernels.get(key)
            if k is None:
                k = self.kernels[key] = {"pid": p.pid, "first": now, "peak": 0, "run": _env_run(p)}
            k["last"] = now
            k["peak"] = max(k["peak"], rss)
            in_kernels += rss
        total = _rss(root) + sum(_rss(p) for p in root.children(recursive=True))
        self.peak = max(self.peak, total)
        self.cli_peak = max(self.cli_peak, total - in_kernels)
        return total

    def _loop(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                total = self.sample(root)
            except psutil.NoSuchProcess:
                return
            if total > self.mem_limit:
                self.oom = True
                C._kill_tree(self.pid)
                return
            time.sleep(self.interval)


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def _env_run(p: psutil.Process) -> str | None:
    try:
        return p.environ().get(RUN_ENV) or None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def match_kernels(runs: list[dict[str, Any]], kernels: list[dict[str, Any]]) -> None:
    """Set each run's ``peak_rss`` from its kernel: by run id where the kernel's environment had
    it, else the kernel alive when the run's first cell started whose last sample is nearest the
    end of the run's notebook (the kernel is shut down as the notebook ends; one kernel per run)."""
    free = [k for k in kernels if not k["run"]]
    by_id = {k["run"]: k for k in kernels if k["run"]}
    pairs = []
    for i, r in enumerate(runs):
        if r.get("run_id") in by_id:
            k = by_id[r["run_id"]]
            r["peak_rss"], r["kernel"], r["kernel_pid"] = k["peak"], "by run id", k["pid"]
        elif r.get("first_cell") and r.get("notebook_end"):
            for j, k in enumerate(free):
                if k["first"] <= r["first_cell"] + 0.2 and k["last"] >= r["first_cell"]:
                    pairs.append((abs(k["last"] - r["notebook_end"]), i, j))
    used_runs: set[int] = set()
    used_kernels: set[int] = set()
    for _gap, i, j in sorted(pairs):
        if i in used_runs or j in used_kernels:
            continue
        used_runs.add(i), used_kernels.add(j)
        runs[i].update(peak_rss=free[j]["peak"], kernel="by time", kernel_pid=free[j]["pid"])


def run_close(
    landing: Path,
    month: str,
    as_of: str,
    history: int,
    limit: int,
    keep: Path | None,
    workers: int | None = None,
) -> dict[str, Any]:
    """``workbook close`` in a fresh home linked to ``landing``, sampled per run (``workers``: its --workers)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="close-", dir=keep or landing.parents[2]))
    home = base / "home"
    (home / "data").mkdir(parents=True)
    (home / "runs").mkdir()
    (home / "data" / "landing").symlink_to(landing)
    env = {k: v for k, v in os.environ.items() if k != RUN_ENV}
    env.update(WORKBOOK_HOME=str(home), PYTHONUNBUFFERED="1")
    cmd = [WORKBOOK, "close", "--month", month, "--as-of", as_of, "--history", str(history), "--json", "-q"]
    if workers:
        cmd += ["--workers", str(workers)]
    load_before, t0 = C.load(), time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=str(C.REPO),
                                start_new_session=True, text=True)  # fmt: skip
        sampler = RunSampler(proc.pid, limit)
        sampler.start()
        try:
            proc.wait(timeout=4 * 3600)
        except subprocess.TimeoutExpired:
            C._kill_tree(proc.pid)
            proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop()
        C._kill_tree(proc.pid)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    result = {"wall": wall, "peak_rss": sampler.peak, "load": f"{load_before}/{C.load()}",
              "returncode": proc.returncode, "home": str(home)}  # fmt: skip
    try:
        got = json.loads(stdout[stdout.index("{") :])
    except ValueError:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        why = "out of memory" if sampler.oom else (tail[-1][:200] if tail else f"exit {proc.returncode}")
        result.update(status="oom" if sampler.oom else "failed", error=why)
        got = {"runs": archived_runs(home / "runs")}
    else:
        result.update(status=got.get("status"), exit_code=got.get("exit_code"))
    result["runs"] = [_run_figures(o) for o in got.get("runs", [])]
    match_kernels(result["runs"], list(sampler.kernels.values()))
    result["cli_peak_rss"] = sampler.cli_peak
    result["kernels"] = len(sampler.kernels)
    used = {r.get("kernel_pid") for r in result["runs"]}
    last = max((k["last"] for k in sampler.kernels.values()), default=0.0)
    result["unmatched_kernel_peaks"] = sorted(
        (k["peak"] for k in sampler.kernels.values() if k["pid"] not in used and k["last"] >= last - 1),
        reverse=True,
    )  # kernels alive at the end of a failed close: the runs it was killed in
    return _cleanup(base, keep, result)


def archived_runs(runs: Path) -> list[dict[str, Any]]:
    """The runs of a close that did not finish, from its run archive: finished ones (``run.json``)
    and the ones in progress when it ended (a staging folder ``.<run id>.partial``)."""
    out = []
    for folder in sorted(runs.glob("*/*/*")):
        if folder.name.endswith(".partial"):
            run_id = folder.name[1 : -len(".partial")]
            out.append({"pipeline": folder.parents[1].name, "partition": folder.parent.name,
                        "status": "in progress", "run_id": run_id})  # fmt: skip
        elif (folder / "run.json").exists():
            record = json.loads((folder / "run.json").read_text())
            out.append({**{k: record.get(k) for k in ("pipeline", "status", "run_id")},
                        "partition": record.get("logical_date"), "archive": str(folder)})  # fmt: skip
    return out


def _cleanup(base: Path, keep: Path | None, result: dict[str, Any]) -> dict[str, Any]:
    if keep is None:
        shutil.rmtree(base, ignore_errors=True)
    return result


def _run_figures(outcome: dict[str, Any]) -> dict[str, Any]:
    """One run of the close: status, duration (run record), cells' time (papermill metadata)."""
    fig = {k: outcome.get(k) for k in ("pipeline", "partition", "status", "run_id", "reason")}
    fig["peak_rss"] = None
    archive = Path(outcome["archive"]) if outcome.get("archive") else None
    if archive is None or not (archive / "run.json").exists():
        return fig
    import bench_close  # the per-notebook breakdown from run records and papermill metadata

    nb = bench_close.notebook_breakdown(archive)
    fig.update(seconds=nb["total"], cells=nb["cells"], kernel_start=nb["kernel_start"])
    if nb["started"] and nb["before_papermill"] is not None and nb["kernel_start"] is not None:
        fig["first_cell"] = nb["started"] + nb["before_papermill"] + nb["kernel_start"]
    if nb["finished"] and nb["after_papermill"] is not None:
        fig["notebook_end"] = nb["finished"] - nb["after_papermill"]
    return fig


# ---------------------------------------------------------------- report


def per_pipeline(close: dict[str, Any]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for r in close.get("runs", []):
        row = rows.setdefault(r["pipeline"], {"pipeline": r["pipeline"], "runs": 0, "seconds": 0.0,
                                              "longest": 0.0, "cells": 0.0, "peak": 0, "failed": 0})  # fmt: skip
        row["runs"] += 1
        row["failed"] += r.get("status") not in ("succeeded", "skipped")
        row["seconds"] += r.get("seconds") or 0.0
        row["longest"] = max(row["longest"], r.get("seconds") or 0.0)
        row["cells"] += r.get("cells") or 0.0
        row["peak"] = max(row["peak"], r.get("peak_rss") or 0)
    return list(rows.values())


def report(sizes: list[dict[str, Any]]) -> None:
    from helpers.cli.console import NEVER, Column, print_table

    num = dict(shrink=NEVER)
    for s in sizes:
        close = s["close"]
        if close is None:
            continue
        rows = [{**r, **{k: f"{r[k]:.1f}" if r[k] else "" for k in ("seconds", "longest", "cells")},
                 "peak": C.fmt_bytes(r["peak"]) if r["peak"] else "", "failed": r["failed"] or ""}
                for r in per_pipeline(close)]  # fmt: skip
        rows.append({"pipeline": CLI, "peak": C.fmt_bytes(close.get("cli_peak_rss"))})
        print_table(
            rows,
            [
                Column("pipeline"),
                Column("runs", **num),
                Column("seconds", "run s (sum)", **num),
                Column("longest", "longest run s", **num),
                Column("cells", "cells s", **num),
                Column("peak", "peak kernel tree", **num),
                Column("failed", "not ok", **num),
            ],  # fmt: skip
            title=f"{s['accounts']:,} accounts: workbook close {s['month']} per pipeline",
            width=100,
        )
        if close.get("error"):
            going = [
                f"{r['pipeline']} {r['partition']}" for r in close["runs"] if r["status"] == "in progress"
            ]
            peaks = ", ".join(C.fmt_bytes(b) for b in close.get("unmatched_kernel_peaks", []))
            print(textwrap.fill(f"the close ended ({close['error']}) during: {', '.join(going) or 'no run'}; "
                                f"the kernel trees alive then peaked at: {peaks or 'none'}", 100))  # fmt: skip
    print_table(
        [
            {
                "accounts": f"{s['accounts']:,}",
                "events": f"{s['generation']['events']:,}",
                "gen s": f"{s['generation']['wall']:.0f}",
                "gen peak": C.fmt_bytes(s["generation"]["peak_rss"]),
                "close s": f"{s['close']['wall']:.1f}" if s["close"] else "",
                "close peak": C.fmt_bytes(s["close"]["peak_rss"]) if s["close"] else "",
                "result": _result(s["close"]),
                "load": s["close"]["load"] if s["close"] else "",
            }
            for s in sizes
        ],
        [
            Column(k, shrink=NEVER)
            for k in ("accounts", "events", "gen s", "gen peak", "close s", "close peak", "result")
        ]
        + [Column("load")],  # fmt: skip
        title="per size: generation and close, peaks of the whole process tree",
        width=100,
    )


def _result(close: dict[str, Any] | None) -> str:
    if close is None:
        return "not run"
    if close.get("error"):
        return f"{close['status']}: {close['error']}"
    return f"{close.get('status')} exit {close.get('exit_code')}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, nargs="+", help="sizes (default 10000; --full: 10k 100k 1M)")
    p.add_argument("--full", action="store_true", help="10,000, 100,000 and 1,000,000 accounts")
    p.add_argument("--months", type=int, default=13, help="months of history (default 13)")
    p.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2026, 10, 31),
                   help="last day of the history, a month end (default 2026-10-31)")  # fmt: skip
    p.add_argument("--events-per-user-day", type=float, default=DENSITY,
                   help=f"product event density, the same at every size (default {DENSITY:g})")  # fmt: skip
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--history", type=int, default=0,
                   help="the close's --history: trailing months also built (default 0: the month alone)")  # fmt: skip
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "scale",
                   help="where generated companies are kept and reused (default <tmp>/scale)")  # fmt: skip
    p.add_argument("--mem-limit", type=float, default=12, help="GiB for each process tree (default 12)")
    p.add_argument("--workers", type=int, help="the close's --workers (default: runner.workers in config; "
                   f"1 from {ONE_AT_A_TIME:,} accounts)")  # fmt: skip
    p.add_argument("--nice", type=int, default=0, help="run the generator under nice -n N")
    p.add_argument("--generate-only", action="store_true", help="generate (or reuse) the companies, no close")
    p.add_argument("--keep", type=Path, help="keep each close's home under this folder")
    p.add_argument("--json", type=Path, help="write the raw figures here")
    args = p.parse_args()
    sizes = args.accounts or (FULL if args.full else SHORT)
    limit = int(args.mem_limit * C.GiB)
    month = f"{args.end:%Y-%m}"
    as_of = f"{args.end + dt.timedelta(days=10):%Y-%m-%d}T12:00:00Z"
    C.header("bench_scale", f"demo company at {', '.join(f'{n:,}' for n in sizes)} accounts x "
             f"{args.months} months, then workbook close {month} (as of {as_of})")  # fmt: skip
    print(f"close: --history {args.history}, --workers {args.workers or 'from config'}; event density: {args.events_per_user_day:g} events per active user-day; memory limit "
          f"{C.fmt_bytes(limit)} per process tree; cache {args.cache}", flush=True)  # fmt: skip
    out = []
    for n in sizes:
        print(f"\n{n:,} accounts", flush=True)
        gen = company(args, n, limit)
        close = None
        if not args.generate_only:
            landing = Path(gen["folder"]) / "home" / "data" / "landing"
            workers = args.workers or (1 if n >= ONE_AT_A_TIME else None)
            if workers != args.workers:
                print(f"  close: --workers {workers} (Growth and Profit side by side do not fit in "
                      f"{C.fmt_bytes(limit)} at this size)", flush=True)  # fmt: skip
            close = run_close(landing, month, as_of, args.history, limit, args.keep, workers)
            close["workers"] = workers
            print(f"  close: {close['wall']:.1f} s, peak {C.fmt_bytes(close['peak_rss'])}, "
                  f"{_result(close)}, load {close['load']}", flush=True)  # fmt: skip
        out.append({"accounts": n, "month": month, "as_of": as_of, "generation": gen, "close": close})
    report(out)
    C.write_json(args.json, {"machine": C.machine(), "months": args.months, "end": args.end, "history": args.history, "workers": args.workers,
                             "events_per_user_day": args.events_per_user_day, "sizes": out})  # fmt: skip


if __name__ == "__main__":
    main()

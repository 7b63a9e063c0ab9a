"""Close latency: ``workbook close`` of one month of the demo company, cold, broken down per stage.

    .venv/bin/python benchmarks/bench_close.py [--accounts 2000] [--months 25] [--runs 3] [--json F]

Builds the demo company once (``workbook demo-data``, default size: the default demo company), then:

- **the first close**: of an empty warehouse (new warehouse and run archive; the landing zone is
  shared read-only through a symlink), of 2026-09 as of 2026-10-10 12:00 UTC: the month and the
  twelve months before it that its report's trends show, every pipeline of every month;
- **the usual close**, per repetition: a copy of that home (the months before closed) closes its last
  month, 2026-10 as of 2026-11-10 12:00 UTC, as ``make demo`` does, in a new ``workbook close``
  process: every run is cold (new processes, new kernels).

The breakdown comes from the run records and the executed notebooks' papermill metadata (per-cell
start and end):

- per close: CLI start (process start to the first run), wave A (Profit, Growth, unit Profit in
  parallel), wave B (Engagement, then the investor aggregate), checks (the monitors, between the last
  pipeline and the first report), reports (both rendered in parallel), the checklist (to process end);
- per notebook: runner before papermill (parameters, run record), kernel start (papermill start to
  the first cell), imports (the first code cell), engine start (the cell that calls ``get_engine``),
  the other cells, after papermill (scraps, HTML rendering, scrubbing, archive, run record).

``layer overhead`` = a notebook's run time minus its cells' own time (kernel start, papermill,
scraps, HTML rendering, scrubbing, archive), measured inside the same run. ``direct``: after the
first close (``--direct-runs``), each notebook's code cells run again with the same parameters in a
new plain Python process of their own (no papermill, kernel, HTML or archive; the writes are
idempotent), one after another, as a reference. Every child runs under a memory limit
(``--mem-limit``, GiB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MONTH = "2026-10"
END = "2026-10-31"
AS_OF = "2026-11-10T12:00:00Z"
# the first close, of an empty warehouse: the month before, which also builds its trailing twelve months
FIRST_MONTH, FIRST_AS_OF = "2026-09", "2026-10-10T12:00:00Z"
USUAL_TARGET, FIRST_TARGET = 15.0, 60.0
WORKBOOK = str(Path(sys.executable).with_name("workbook"))


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


# ---------------------------------------------------------------- per-notebook breakdown


def notebook_breakdown(archive: Path) -> dict[str, Any]:
    """Stages of one archived run from ``run.json`` and the notebook's papermill metadata."""
    import nbformat

    record = json.loads((archive / "run.json").read_text())
    nb = nbformat.read(archive / "notebook.ipynb", as_version=4)
    meta = nb.metadata.get("papermill", {})
    started, finished = _ts(record["started_at"]), _ts(record["finished_at"])
    nb_start, nb_end = _ts(meta.get("start_time")), _ts(meta.get("end_time"))
    code = [
        c for c in nb.cells if c.cell_type == "code" and c.metadata.get("papermill", {}).get("start_time")
    ]
    first = _ts(code[0].metadata.papermill["start_time"]) if code else None

    def dur(c: Any) -> float:
        return float(c.metadata.papermill.get("duration") or 0.0)

    tags = [set(c.metadata.get("tags", [])) for c in code]
    body = [c for c, t in zip(code, tags, strict=True) if not t & {"parameters", "injected-parameters"}]
    imports = dur(body[0]) if body else 0.0
    engine = sum(dur(c) for c in body if "get_engine(" in c.source)
    cells = sum(dur(c) for c in body)
    slowest = max(body[1:], key=dur, default=None)
    return {
        "pipeline": record.get("pipeline"),
        "partition": record.get("logical_date"),
        "status": record.get("status"),
        "started": started,
        "finished": finished,
        "total": (finished - started) if started and finished else None,
        "before_papermill": (nb_start - started) if nb_start and started else None,
        "kernel_start": (first - nb_start) if first and nb_start else None,
        "imports": imports,
        "engine_start": engine,
        "other_cells": cells - imports - engine,
        "cells": cells,
        "layer_overhead": (finished - started - cells) if started and finished else None,
        "after_papermill": (finished - nb_end) if finished and nb_end else None,
        "slowest_cell": f"{body.index(slowest)}: {dur(slowest):.1f}s" if slowest is not None else "",
        "archive": str(archive),
    }


# ---------------------------------------------------------------- direct (no notebooks) child


def direct_child(listing: Path, index: int) -> None:
    """Execute one archived run's notebook code in this (new) process; print seconds and status."""
    import matplotlib

    matplotlib.use("Agg")
    import nbformat

    r = json.loads(listing.read_text())[index]
    archive = Path(r["archive"])
    nb = nbformat.read(archive / "notebook.ipynb", as_version=4)
    params = json.loads((archive / "parameters.json").read_text())
    params["run_id"] = params.get("run_id", "direct") + "-direct"
    ns: dict[str, Any] = {"__name__": "__direct__"}
    notebook_dir = Path(nb.metadata.get("papermill", {}).get("input_path", "")).parent
    t = time.perf_counter()
    status = "ok"
    try:
        if notebook_dir.is_dir():
            os.chdir(notebook_dir)
        with redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                tags = set(cell.metadata.get("tags", []))
                if cell.cell_type != "code" or "injected-parameters" in tags:
                    continue
                exec(compile(cell.source, r["pipeline"], "exec"), ns)  # noqa: S102
                if "parameters" in tags:
                    ns.update(params)
    except Exception as e:
        status = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    print(
        "RESULT "
        + json.dumps({"pipeline": r["pipeline"], "seconds": time.perf_counter() - t, "status": status})
    )


# ---------------------------------------------------------------- harness


def build_demo(root: Path, accounts: int, months: int, limit: int) -> float:
    env = {"WORKBOOK_HOME": str(root)}
    cmd = [
        WORKBOOK,
        "demo-data",
        "--accounts",
        str(accounts),
        "--months",
        str(months),
        "--end",
        END,
        "--quiet",
    ]
    r = C.run_limited(cmd, env=env, mem_limit=limit, as_limit=limit + 4 * C.GiB)
    if r.status != "ok":
        raise SystemExit(f"demo-data failed: {r.error}\n{r.stderr[-2000:]}")
    print(f"demo company: {accounts:,} accounts x {months} months in {r.wall:.1f} s "
          f"(peak {C.fmt_bytes(r.peak_rss)}, load {r.load_before})", flush=True)  # fmt: skip
    return r.wall


def fresh_home(base: Path, landing: Path, i: int | str) -> Path:
    home = base / f"close-{i}"
    (home / "data").mkdir(parents=True)
    (home / "runs").mkdir()
    (home / "data" / "landing").symlink_to(landing)
    return home


def usual_home(base: Path, template: Path, i: int) -> Path:
    """A copy of ``template`` (its warehouse and run archive: the months before closed), landing shared."""
    home = base / f"close-{i}"
    shutil.copytree(template, home, symlinks=True)
    return home


def first_close(home: Path, limit: int, engine: str | None) -> dict[str, Any]:
    """The first close of an empty warehouse (``FIRST_MONTH``): the month and its trailing months."""
    got = one_close(home, limit, engine, month=FIRST_MONTH, as_of=FIRST_AS_OF)
    runs = [n for n in got.get("notebooks", [])]
    got["runs"] = len(runs)
    got["failed_runs"] = [f"{n['pipeline']} {n['partition']}" for n in runs if n["status"] != "succeeded"]
    return got


def one_close(home: Path, limit: int, engine: str | None, *, month: str = MONTH,
              as_of: str = AS_OF) -> dict[str, Any]:  # fmt: skip
    env = {"WORKBOOK_HOME": str(home)}
    if engine:
        env["WORKBOOK_ENGINE"] = engine
    t0 = time.time()
    cmd = [WORKBOOK, "close", "--month", month, "--as-of", as_of, "--json", "-q"]
    r = C.run_limited(cmd, env=env, mem_limit=limit)
    t1 = t0 + r.wall
    try:
        result = json.loads(r.stdout[r.stdout.index("{") :])
    except ValueError:
        return {"status": r.status, "error": r.error or r.stderr[-500:], "wall": r.wall}
    nbs = [notebook_breakdown(Path(o["archive"])) for o in result["runs"] if o.get("archive")]
    by = {n["pipeline"]: n for n in nbs}

    def span(names: tuple[str, ...]) -> tuple[float | None, float | None]:
        got = [by[n] for n in names if n in by]
        if not got:
            return None, None
        return min(n["started"] for n in got), max(n["finished"] for n in got)

    a0, a1 = span(("profit_aggregate", "growth_aggregate", "profit_unit"))
    b0, b1 = span(("engagement_aggregate", "investor_aggregate"))
    r0, r1 = span(("month_end_report", "finance_reconciliation_report"))
    stages = {
        "cli_start": (a0 - t0) if a0 else None,
        "wave_a": (a1 - a0) if a0 else None,
        "wave_b": (b1 - b0) if b0 else None,
        "checks": (r0 - b1) if r0 and b1 else None,
        "reports": (r1 - r0) if r0 else None,
        "checklist": (t1 - r1) if r1 else None,
    }
    return {
        "status": r.status
        if r.status != "ok" or result.get("exit_code") in (0, None)
        else f"exit {result['exit_code']}",
        "label": result.get("status"),
        "exit_code": result.get("exit_code"),
        "wall": r.wall,
        "peak_rss": r.peak_rss,
        "load": f"{r.load_before}/{r.load_after}",
        "stages": stages,
        "notebooks": nbs,
        "error": r.error,
    }


def direct(home: Path, nbs: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Each notebook's code cells in a new process of its own, one after another (cold, like a kernel)."""
    listing = home / "direct.json"
    listing.write_text(json.dumps(nbs))
    env = {"WORKBOOK_HOME": str(home), "MPLBACKEND": "Agg"}
    out, problems = [], []
    t = time.perf_counter()
    for i, nb in enumerate(nbs):
        r = C.run_limited(
            [sys.executable, __file__, "--_direct", str(listing), str(i)], env=env, mem_limit=limit
        )
        got = r.result_json()
        if got is None:
            got = {"pipeline": nb["pipeline"], "seconds": None, "status": r.error or "failed"}
        # the process's wall time: interpreter start and imports included, as a kernel's
        got["process_seconds"] = r.wall
        got["load"] = r.load_before
        out.append(got)
        if got["status"] != "ok":
            problems.append(f"{got['pipeline']}: {got['status']}")
    return {"wall": time.perf_counter() - t, "notebooks": out, "status": "ok" if not problems else "failed",
            "error": "; ".join(problems)}  # fmt: skip


def report(closes: list[dict[str, Any]], directs: list[dict[str, Any]], engine: str) -> None:
    ok = [c for c in closes if "stages" in c]
    C.print_table(
        [
            {
                "run": i + 1,
                "wall s": c["wall"],
                "result": f"{c.get('label')} exit {c.get('exit_code')}",
                "peak RSS": C.fmt_bytes(c.get("peak_rss")),
                "load 1m before/after": c.get("load"),
                **{k: v for k, v in c.get("stages", {}).items()},
            }  # fmt: skip
            for i, c in enumerate(closes)
        ],
        [
            "run",
            "wall s",
            "result",
            "peak RSS",
            "load 1m before/after",
            "cli_start",
            "wave_a",
            "wave_b",
            "checks",
            "reports",
            "checklist",
        ],  # fmt: skip
        title=f"workbook close --month {MONTH} (engine {engine}), cold, seconds per stage",
    )
    if ok:
        med = {k: C.median([c["stages"][k] for c in ok]) for k in ok[0]["stages"]}
        wall = C.median([c["wall"] for c in ok])
        print(
            f"median over {len(ok)}: wall {wall:.1f} s; " + ", ".join(f"{k} {v:.1f}" for k, v in med.items())
        )
        target = "met" if wall <= USUAL_TARGET else "NOT met"
        print(f"target: the usual close (the months before closed) in {USUAL_TARGET:.0f} s or less, median "
              f"of {len(ok)}: {target} ({wall:.1f} s)")  # fmt: skip
    names = [n["pipeline"] for n in ok[0]["notebooks"]] if ok else []
    rows = []
    for name in names:
        per = [n for c in ok for n in c["notebooks"] if n["pipeline"] == name]
        d = [
            x
            for dr in directs
            for x in dr.get("notebooks", [])
            if x["pipeline"] == name and x["status"] == "ok"
        ]
        total = C.median([p["total"] for p in per])
        dproc = C.median([x["process_seconds"] for x in d]) if d else None
        rows.append({
            "notebook": name,
            "runner total": total,
            "cells": C.median([p["cells"] for p in per]),
            "layer overhead": C.median([p["layer_overhead"] for p in per]),
            "kernel start": C.median([p["kernel_start"] for p in per]),
            "after pm": C.median([p["after_papermill"] for p in per]),
            "imports": C.median([p["imports"] for p in per]),
            "engine start": C.median([p["engine_start"] for p in per]),
            "direct process": dproc,
            "direct code": C.median([x["seconds"] for x in d]) if d else None,
            "total - direct": (total - dproc) if dproc is not None else None,
            "slowest cell (last run)": per[-1]["slowest_cell"],
        })  # fmt: skip
    C.print_table(
        rows,
        [
            "notebook",
            "runner total",
            "cells",
            "layer overhead",
            "kernel start",
            "after pm",
            "imports",
            "engine start",
            "direct process",
            "direct code",
            "total - direct",
            "slowest cell (last run)",
        ],  # fmt: skip
        title="per notebook, medians, seconds. layer overhead = runner total - the cells' own time (kernel start,"
        " papermill, scraps, HTML, archive); direct = the same code cells in a new plain Python process"
        " (process = with interpreter start and imports), run one after another, not two at a time as in the close",
    )
    over = [r["layer overhead"] for r in rows if r["layer overhead"] is not None]
    if over:
        worst = max(rows, key=lambda r: r["layer overhead"] if r["layer overhead"] is not None else -1)
        print(
            f"notebook-layer overhead: median {C.median(over):.2f} s per notebook, largest "
            f"{worst['layer overhead']:.2f} s ({worst['notebook']}); target under 1.5 s per notebook: "
            f"{'met' if worst['layer overhead'] < 1.5 else 'NOT met'}"
        )
    for dr in directs:
        bad = [x for x in dr.get("notebooks", []) if x["status"] != "ok"]
        if dr["status"] != "ok" or bad:
            print(f"direct run problems: {dr['error']} {bad}")


def report_first(first: dict[str, Any]) -> None:
    """The first close: its wall, runs and the time per pipeline summed over its months."""
    per: dict[str, list[float]] = {}
    for n in first.get("notebooks", []):
        per.setdefault(n["pipeline"], []).append(n["total"] or 0.0)
    C.print_table(
        [
            {"notebook": k, "runs": len(v), "seconds (sum)": sum(v), "median": C.median(v)}
            for k, v in per.items()
        ],
        ["notebook", "runs", "seconds (sum)", "median"],
        title=f"first close of an empty warehouse ({FIRST_MONTH} and its trailing months), per notebook",
    )
    wall = first["wall"]
    bad = f"; failed: {', '.join(first['failed_runs'])}" if first.get("failed_runs") else ""
    target = "met" if wall <= FIRST_TARGET and not bad else "NOT met"
    print(f"target: the first close of an empty warehouse in {FIRST_TARGET:.0f} s or less: {target} "
          f"({wall:.1f} s, {first.get('runs')} runs, peak {C.fmt_bytes(first.get('peak_rss'))}){bad}")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_direct":
        direct_child(Path(sys.argv[2]), int(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=2000)
    p.add_argument("--months", type=int, default=25)
    p.add_argument("--runs", type=int, default=3, help="cold closes (median reported)")
    p.add_argument(
        "--full", action="store_true", help="5 cold closes, each followed by the direct comparison"
    )
    p.add_argument("--engine", choices=["duckdb", "spark"], default=None, help="default: the configured one")
    p.add_argument(
        "--direct-runs", type=int, default=1, help="closes followed by the no-notebook comparison (0: none)"
    )
    p.add_argument("--landing", type=Path, help="reuse a landing zone built by demo-data (skips generation)")
    p.add_argument("--mem-limit", type=float, default=8, help="GiB per child process tree (default 8)")
    p.add_argument("--keep", type=Path, help="keep the homes under this folder")
    p.add_argument("--json", type=Path, help="write the raw figures here")
    args = p.parse_args()
    if args.full:
        args.runs, args.direct_runs = 5, 5
    limit = int(args.mem_limit * C.GiB)
    C.header("bench_close", f"workbook close {MONTH}, {args.accounts:,} accounts x {args.months} months")
    tmp = tempfile.TemporaryDirectory(prefix="bench-close-", dir=args.keep) if not args.keep else None
    base = Path(tmp.name) if tmp else args.keep
    base.mkdir(parents=True, exist_ok=True)
    try:
        if args.landing:
            landing = args.landing.resolve()
        else:
            build_demo(base / "demo", args.accounts, args.months, limit)
            landing = base / "demo" / "data" / "landing"
        template = fresh_home(base, landing, "first")
        first = first_close(template, limit, args.engine)
        print(f"  first close ({FIRST_MONTH}, empty warehouse): {first['wall']:.1f} s, {first['runs']} runs, "
              f"{first.get('label')} (exit {first.get('exit_code')}), peak {C.fmt_bytes(first.get('peak_rss'))}, "
              f"load {first.get('load')} {first.get('error') or ''}", flush=True)  # fmt: skip
        closes, directs = [], []
        for i in range(args.runs):
            home = usual_home(base, template, i)
            c = one_close(home, limit, args.engine)
            closes.append(c)
            print(f"  close {i + 1}: {c['wall']:.1f} s, {c.get('label')} (exit {c.get('exit_code')}), "
                  f"load {c.get('load')} {c.get('error') or ''}", flush=True)  # fmt: skip
            if i < args.direct_runs and c.get("notebooks"):
                d = direct(home, c["notebooks"], limit)
                directs.append(d)
                print(f"  direct {i + 1}: {d['wall']:.1f} s {d['error']}", flush=True)
        report(closes, directs, args.engine or "default")
        report_first(first)
        C.write_json(args.json, {"first": first, "closes": closes, "directs": directs})
    finally:
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    main()

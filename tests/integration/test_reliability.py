"""Reliability beside the drills: crashes, repeated closes, malformed sources.

(a) A real pipeline run (``workbook run smoke``, a subprocess with its kernel), a landing writer
    and a run's final publish (two large staged partitions) are SIGKILLed at random points (fixed
    seed, 10 trials each): no partial partition is ever visible (a publish leaves the old
    partitions or the new ones, with a run record to match), no half-written file is read, a dead
    run does not stay ``running`` (the next run finds its process gone, marks it failed and
    discards what it staged) and the next run succeeds with an unkilled run's figures.
(b) The same ``workbook close`` three times leaves identical marts (row checksums).
(c) Malformed files of every source in ``config/pipelines.yml`` ``sources:`` get an error naming the
    file and row or field, and quarantined rows are counted (accepted + quarantined = received).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from conftest import FOCUS_SAMPLE, REPO, demo_landing, home_with_demo, workbook
from helpers.storage import landing, quarantine, warehouse
from helpers.storage.extract import focus

SEED = 20261126
TRIALS = 10


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "helpers.cli", *args],  # the entry point, as `workbook` runs it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process and everything it started (its kernel too): a crash of the whole job."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    with _ignore_gone():
        os.killpg(proc.pid, signal.SIGKILL)
    for k in kids:
        with _ignore_gone():
            k.kill()
    proc.wait(timeout=60)
    psutil.wait_procs(kids, timeout=30)


class _ignore_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, *_exc) -> bool:
        return kind is not None and issubclass(kind, (ProcessLookupError, psutil.NoSuchProcess))


# ---------------------------------------------------------------- (a) SIGKILL


def _amounts(rows: int) -> list[int]:
    return [100 * (i + 1) for i in range(rows)]


@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_sigkill_at_random_points_never_exposes_a_partial_partition_and_the_next_run_succeeds(home):
    rng = random.Random(SEED)
    day, as_of = "2026-10-31", "2026-11-01T06:00:00+00:00"
    started = time.monotonic()
    first = workbook("run", "smoke", "--date", day, "--as-of", as_of, "-p", "rows=3", "-q")
    full = time.monotonic() - started
    assert first.returncode == 0, first.stderr[-2000:]
    complete = {3: _amounts(3), 7: _amounts(7)}  # the only partitions a reader may ever see
    killed = 0
    for trial in range(TRIALS):
        rows = 7 if trial % 2 == 0 else 3
        proc = _spawn("run", "smoke", "--date", day, "--as-of", as_of, "-p", f"rows={rows}", "-q")
        try:
            code = proc.wait(timeout=rng.uniform(0.1, full))
            assert code == 0, f"trial {trial}: an unkilled run after a kill must succeed, got exit {code}"
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            killed += 1
        table = warehouse.read_table("smoke_table", where={"run_date": day})
        seen = sorted(int(v) for v in table["amount_cents"])
        assert seen in complete.values(), f"trial {trial}: partial partition visible: {seen}"
        folder = home / "runs" / "smoke" / day
        for archive in folder.iterdir():
            if not archive.name.startswith("."):  # assembled under a hidden name, renamed when complete
                assert (archive / "run.json").is_file(), f"trial {trial}: incomplete archive {archive}"
    assert killed >= 1, "no run was killed: the trials tested nothing"

    last = workbook("run", "smoke", "--date", day, "--as-of", as_of, "-p", "rows=7", "-q", "--json")
    assert last.returncode == 0, last.stderr[-2000:]
    result = json.loads(last.stdout)
    assert (
        sorted(int(v) for v in warehouse.read_table("smoke_table", where={"run_date": day})["amount_cents"])
        == (complete[7])
    )
    scraps = json.loads((Path(result["archive"]) / "scraps.json").read_text())
    assert scraps["total_cents"] == sum(complete[7]) and scraps["row_count"] == 7  # an unkilled run's figures
    with warehouse.get_engine().connect() as conn:
        statuses = conn.execute(
            sa.text("SELECT status, error_summary FROM pipeline_runs WHERE pipeline = 'smoke'")
        ).all()
    assert not [s for s in statuses if s[0] in ("running", "queued")], statuses  # nobody stuck running
    died = [s for s in statuses if s[0] == "failed"]
    assert died and all("died" in (s[1] or "") for s in died), died
    assert len(statuses) >= 2 + TRIALS - killed


WRITER = """
import datetime as dt, sys
import pandas as pd
from helpers.storage import landing
root, n = sys.argv[1], int(sys.argv[2])
frame = pd.DataFrame({"k": range(n), "v": [f"row-{i}" * 8 for i in range(n)]})
print("ready", flush=True)
k = 0
while True:
    day = dt.date(2026, 10, 1) + dt.timedelta(days=k % 5)
    landing.write_delivery("sink", day, frame, arrived_at=dt.datetime(2026, 10, 6, tzinfo=dt.UTC), root=__import__("pathlib").Path(root))
    k += 1
"""


@pytest.mark.unit
def test_sigkill_of_a_landing_writer_leaves_only_complete_recorded_files(tmp_path):
    rng = random.Random(SEED)
    root = tmp_path / "landing"
    rows = 20_000
    for trial in range(TRIALS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(rows)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()[-2000:]
        try:  # the kill point: anywhere in the write loop (imports excluded)
            proc.wait(timeout=rng.uniform(0.0, 1.5))
            pytest.fail(f"the writer stopped on its own: {proc.stderr.read().decode()[-2000:]}")
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
        recorded = landing.deliveries("sink", root=root)
        for d in recorded:  # every recorded file is complete: its rows and checksum as recorded
            path = landing.source_dir("sink", root) / d.file
            assert pq.read_metadata(path).num_rows == d.rows == rows, (trial, d)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == d.sha256, (trial, d)
        frame = landing.read_source("sink", root=root)  # a reader never meets a partial file
        assert len(frame) == rows * len(recorded)
    assert recorded, "nothing was ever written: the trials tested nothing"


PUBLISHER = """
import datetime as dt, os, sys
import pandas as pd
import sqlalchemy as sa
from helpers.runs import records as runs
from helpers.storage import warehouse
doublings, value = int(sys.argv[1]), int(sys.argv[2])
at = dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC)
run_id = runs.start_run("smoke", "2026-11-01", now=at, as_of=at, parameters={}, code_version="t")
os.environ[warehouse.RUNNER_ENV] = run_id  # this process plays the run's kernel, then its runner
for day in ("2026-11-01", "2026-11-02"):
    frame = pd.DataFrame({"day": [day], "k": [0], "v": [value]})
    warehouse.replace_partition("big", frame, {"day": day}, written_at=at, run_id=run_id)
staging = warehouse.staged_for(run_id)[0].staging_table  # grown in SQL: large partitions, fast
with warehouse.get_engine().begin() as conn:
    for i in range(doublings):
        conn.execute(sa.text(f'INSERT INTO "{staging}" (day, k, v) SELECT day, k + :n, v FROM "{staging}"'),
                     {"n": 2**i})
    conn.execute(warehouse.staged_partitions.update().where(warehouse.staged_partitions.c.run_id == run_id)
                 .values(row_count=2**doublings))
print(run_id, flush=True)
runs.finish_run(run_id, status="succeeded", now=at)  # the publish
print("published", flush=True)
"""


def _big_state() -> tuple[list[tuple], list[tuple]]:
    """``big``'s partitions (day, rows, min v, max v) and their ``partition_writes`` rows."""
    with warehouse.get_engine().connect() as conn:
        big = conn.execute(sa.text("SELECT day, COUNT(*), MIN(v), MAX(v) FROM big GROUP BY day ORDER BY day"))
        writes = conn.execute(
            sa.text(
                "SELECT partition_key, row_count, run_id FROM partition_writes "
                "WHERE table_name = 'big' ORDER BY partition_key"
            )
        )
        return [tuple(r) for r in big], [tuple(r) for r in writes]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_sigkill_during_a_runs_publish_leaves_the_old_or_the_new_partitions_never_a_mix(warehouse_url):
    from helpers.runs import records as runs

    rng = random.Random(SEED)
    doublings = 19
    rows = 2**doublings  # per partition: two of them

    def spawn(value: int) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(doublings), str(value)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        run_id = proc.stdout.readline().strip()  # staged: the publish starts now
        assert run_id, proc.stderr.read()[-2000:]
        return proc, run_id

    proc, published_by = spawn(1)
    assert proc.stdout.readline().strip() == "published", proc.stderr.read()[-2000:]
    proc.wait(timeout=60)
    proc, published_by = spawn(2)  # an unkilled publish, timed
    started = time.monotonic()
    assert proc.stdout.readline().strip() == "published", proc.stderr.read()[-2000:]
    publish_s = time.monotonic() - started
    proc.wait(timeout=60)
    current, killed, seen = 2, 0, set()
    for trial in range(TRIALS):
        value = trial + 3
        proc, run_id = spawn(value)
        try:
            proc.wait(timeout=rng.uniform(0.0, 1.5 * publish_s))
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            killed += 1
        big, writes = _big_state()
        assert [(day, n) for day, n, _lo, _hi in big] == [("2026-11-01", rows), ("2026-11-02", rows)], big
        values = {(lo, hi) for _day, _n, lo, hi in big}
        assert values in ({(current, current)}, {(value, value)}), f"trial {trial}: a mix: {big}"
        new = values == {(value, value)}
        # never a succeeded run with unpublished data, nor published data of a run not succeeded
        assert runs.get_run(run_id).status == ("succeeded" if new else "running"), trial
        owner = run_id if new else published_by
        assert writes == [(f'{{"day": "{d}"}}', rows, owner) for d in ("2026-11-01", "2026-11-02")], trial
        seen.add("new" if new else "old")
        if new:
            current, published_by = value, run_id
    assert killed >= 1, "no publish was killed: the trials tested nothing"
    assert seen == {"old", "new"} or killed == TRIALS, seen
    proc, run_id = spawn(99)  # the next run discards what a killed one left staged, and publishes
    assert proc.stdout.readline().strip() == "published", proc.stderr.read()[-2000:]
    proc.wait(timeout=60)
    assert {(lo, hi) for _d, _n, lo, hi in _big_state()[0]} == {(99, 99)}
    tables = sa.inspect(warehouse.get_engine()).get_table_names()
    assert [t for t in tables if t.startswith("staging_")] == [] and warehouse.staged_for(run_id) == []


# ---------------------------------------------------------------- (b) the same close three times

# Columns that legitimately change between closes: the run that wrote a row and when it wrote it.
VOLATILE = {"run_id", "source_run_id", "written_at"}


def _mart_checksums() -> dict[str, str]:
    engine = warehouse.get_engine()
    with engine.connect() as conn:
        marts = sorted(
            r[0] for r in conn.execute(sa.text("SELECT DISTINCT table_name FROM partition_writes"))
        )
    out = {}
    for table in marts:
        frame = warehouse.read_table(table)
        frame = frame[[c for c in sorted(frame.columns) if c not in VOLATILE]]
        lines = sorted(json.dumps(r, sort_keys=True, default=str) for r in frame.to_dict("records"))
        out[table] = hashlib.sha256("\n".join(lines).encode()).hexdigest() + f":{len(lines)}"
    return out


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.timeout(1500)
def test_the_same_close_three_times_leaves_identical_marts(home, tmp_path_factory):
    home_with_demo(
        home, demo_landing(tmp_path_factory, accounts=40, months=3, seed=7, end="2026-10-31", events=True)
    )
    sums = []
    for attempt in range(3):
        proc = workbook(
            "close",
            "--month",
            "2026-10",
            "--as-of",
            "2026-11-10T12:00:00Z",
            "-q",
            "--json",
            "--history",
            "0",
            timeout=1200,
        )
        assert proc.returncode in (0, 1), proc.stderr[-3000:]  # a DRAFT is a result, not an error
        sums.append(_mart_checksums())
        assert sums[-1], f"close {attempt + 1} wrote no marts"
    assert {"profit_monthly", "growth_mrr_monthly", "investor_monthly"} <= set(sums[0])
    assert sums[0] == sums[1] == sums[2]


# ---------------------------------------------------------------- (c) malformed sources


def _sources() -> list[str]:
    return list(yaml.safe_load((REPO / "config" / "pipelines.yml").read_text())["sources"])


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    """For every configured source, one file of its largest deliveries of a tiny demo company."""
    root = demo_landing(tmp_path_factory, accounts=30, months=2, seed=7, end="2026-10-31", events=True)
    folder = tmp_path_factory.mktemp("samples")
    out = {}
    for source in _sources():
        largest = sorted(landing.deliveries(source, root=root), key=lambda d: -d.rows)[:5]
        table = pa.concat_tables([pq.read_table(landing.source_dir(source, root) / d.file) for d in largest])
        assert table.num_rows >= 2, source
        out[source] = folder / f"{source}.parquet"
        pq.write_table(table, out[source])
    return out


def _land_raw(root: Path, source: str, data: bytes, rows: int) -> Path:
    """Record a file as a delivery the way a writer would (manifest line), whatever its bytes."""
    folder = landing.source_dir(source, root) / "dt=2026-10-01"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{len(list(folder.glob('part-*'))):05d}.parquet"
    path.write_bytes(data)
    d = landing.Delivery(source, "2026-10-01", str(path.relative_to(landing.source_dir(source, root))), rows,
                         hashlib.sha256(data).hexdigest(), "2026-10-02T00:00:00+00:00")  # fmt: skip
    with open(landing.source_dir(source, root) / landing.MANIFEST, "a") as fh:
        fh.write(json.dumps(d.__dict__, sort_keys=True) + "\n")
    return path


def _typed_column(schema: pa.Schema) -> str:
    """A column whose values text cannot stand in for (a number, a date or a timestamp)."""
    return next(f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_temporal(f.type)
                or pa.types.is_decimal(f.type) or pa.types.is_floating(f.type))  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize("source", _sources())
def test_malformed_files_of_every_source_are_named_and_bad_rows_counted(source, sample_files, tmp_path):
    good = sample_files[source]
    schema = landing.source_schema(source)
    table = pq.read_table(good)
    root = tmp_path / "landing"

    # garbage bytes and a truncated file: the error names the file, for readers and the screen
    for _kind, data in (
        ("garbage", b"\x00garbage, not parquet\xff" * 40),
        ("truncated", good.read_bytes()[: good.stat().st_size // 2]),
    ):
        path = _land_raw(root, source, data, table.num_rows)
        with pytest.raises(ValueError, match=str(path).replace(".", r"\.")):
            landing.read_source(source, root=root)
        with pytest.raises(ValueError, match=str(path).replace(".", r"\.")):
            landing.screen_file(source, path)
        path.unlink()
        (landing.source_dir(source, root) / landing.MANIFEST).unlink()

    # a required column missing: named with the file
    dropped = schema.names[0]
    path = tmp_path / f"{source}-missing.parquet"
    pq.write_table(table.drop_columns([dropped]), path)
    with pytest.raises(ValueError, match=rf"{path.name}.*lacks required column\(s\) {dropped}"):
        landing.screen_file(source, path)

    # a wrong type in one row: that row is quarantined with its row number and field, the rest kept
    column = _typed_column(schema)
    bad_row = 1
    text = [None if v is None else str(v) for v in table.column(column).to_pylist()]
    text[bad_row] = "not-a-value"
    path = tmp_path / f"{source}-type.parquet"
    pq.write_table(
        table.set_column(table.schema.get_field_index(column), column, pa.array(text, pa.string())), path
    )
    screened = landing.screen_file(source, path)
    assert screened.received == table.num_rows == screened.accepted_count + screened.quarantined_count
    [row] = screened.quarantined
    assert (row.file, row.line, row.field) == (str(path), bad_row + 1, column)
    assert f"row {bad_row + 1}" in row.reason and "not-a-value" in row.reason
    written = quarantine.write_quarantine(source, screened.quarantined, root=tmp_path / "quarantine")
    assert len(quarantine.read_quarantine(written)) == screened.quarantined_count  # counted and kept

    if source == "events":  # an event object that is not JSON is quarantined, naming the field
        frame = table.to_pandas()
        frame.loc[0, "context"] = '{"groupId": "A1", '
        path = tmp_path / "events-json.parquet"
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)
        screened = landing.screen_file(source, path)
        assert [(q.line, q.field) for q in screened.quarantined] == [(1, "context")]
        assert screened.accepted_count == table.num_rows - 1


@pytest.mark.unit
def test_a_truncated_focus_csv_names_the_file_and_line_and_counts_the_cut_row(tmp_path):
    sample = FOCUS_SAMPLE
    text = sample.read_text(encoding="utf-8-sig")
    lines = text.splitlines(keepends=True)
    cut = tmp_path / "focus_truncated.csv"
    cut.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 3], encoding="utf-8")
    whole = focus.read_focus(sample)
    result = focus.read_focus(cut)
    assert result.received == whole.received == result.accepted_count + result.quarantined_count
    [row] = result.quarantined
    assert row.file == cut.name and row.line == len(lines)  # the cut record's own line
    with pytest.raises(focus.FocusFormatError, match=r"focus_header\.csv.*lacks required"):
        bad = tmp_path / "focus_header.csv"
        bad.write_text("BilledCost,Nonsense\n1,2\n")
        focus.read_focus(bad)


@pytest.mark.unit
def test_landing_reader_names_the_file_of_an_unreadable_delivery(tmp_path):
    root = tmp_path / "landing"
    landing.write_delivery(
        "s",
        "2026-10-01",
        pd.DataFrame({"a": [1]}),
        arrived_at=dt.datetime(2026, 10, 2, tzinfo=dt.UTC),
        root=root,
    )
    with pytest.raises(ValueError, match=r"dt=2026-10-01/part-00000\.parquet.*lacks required column\(s\) b"):
        landing.read_source("s", root=root, columns=["a", "b"])

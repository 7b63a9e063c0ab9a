"""A pipeline notebook run by hand (a plain kernel, as JupyterLab runs it) cannot touch the published warehouse.

The reproduction of the issue: October is published (a mid-month run) and locked; someone opens
``profit_aggregate.ipynb``, sets ``period = "2026-10"`` (and an ``as_of``, so that the test does not
depend on today) and presses Run All. The notebook writes
its own scratch warehouse, says so in its first output, and the published warehouse file is
byte-identical afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import sqlalchemy as sa
from nbclient import NotebookClient

from conftest import REPO, demo_landing, home_with_demo, workbook
from helpers.core import config as cfgmod
from helpers.core.businesscal import BusinessCalendar
from helpers.core.timeutil import parse_as_of
from helpers.profit.aggregate import build_aggregate
from helpers.profit.inputs import load_inputs
from helpers.runs import locks, scratch, session
from helpers.storage import warehouse

pytestmark = pytest.mark.notebooks

NOTEBOOK = REPO / "notebooks" / "pipelines" / "profit_aggregate.ipynb"
DEMO = {"accounts": 40, "months": 3, "seed": 7, "end": "2026-10-31"}
PERIOD = "2026-10"
PUBLISHED_AS_OF = "2026-10-20T00:00:00Z"  # mid-month: the published October is the half-month figure
BY_HAND_AS_OF = "2026-11-10T00:00:00+00:00"  # typed in too, so that the test does not depend on today


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(url: str, query: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query)).all()]
    finally:
        engine.dispose()


def lock_october(url: str) -> None:
    """Lock October as a FINAL close does: the pipeline partition and its table partitions."""
    engine = warehouse.get_engine(url)
    tables = locks.month_tables(PERIOD, ["profit_aggregate"], engine=engine)
    signed = [("DE1", dt.datetime(2026, 11, 5, 11, tzinfo=dt.UTC))]
    with engine.begin() as conn:
        locks.lock_month(
            PERIOD,
            [locks.Target(locks.PIPELINE, "profit_aggregate", PERIOD), *tables],
            version=1,
            locked_at=dt.datetime(2026, 11, 5, 12, tzinfo=dt.UTC),
            signed_off=signed,
            conn=conn,
        )
    warehouse.dispose_engines()


def run_all_by_hand(period: str, as_of: str) -> nbformat.NotebookNode:
    """Edit the parameters cell as a person would, then execute every cell in a plain kernel."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'period: str = ""' in params.source and 'as_of: str = ""' in params.source
    assert 'run_id: str = "manual"' in params.source
    params.source = params.source.replace('period: str = ""', f'period: str = "{period}"')
    params.source = params.source.replace('as_of: str = ""', f'as_of: str = "{as_of}"')
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    return nb


def expected_revenue(period: str, as_of: str) -> int:
    """The month's revenue as the notebook computes it, computed here in-process."""
    cfg = cfgmod.get()
    inputs = load_inputs(period, parse_as_of(as_of), settings=cfg.pipelines.profit)
    calendar = BusinessCalendar.from_team(cfg.team)
    agg = build_aggregate(inputs, settings=cfg.pipelines.profit, calendar=calendar, run_id="here")
    return int(agg.profit["revenue_usd_cents"].iloc[0])


def output_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_run_all_by_hand_on_a_locked_month_leaves_the_published_warehouse_byte_identical(
    home, tmp_path_factory, monkeypatch
):
    home_with_demo(home, demo_landing(tmp_path_factory, **DEMO))
    for name in (session.RUNNER_ENV, scratch.PUBLISHED_ENV, scratch.QUARANTINE_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)  # the kernel inherits no runner marker and no scratch
    published = home / "runs" / "warehouse.sqlite"
    url = f"sqlite:///{published}"
    proc = workbook("run", "profit_aggregate", "--date", PERIOD, "--as-of", PUBLISHED_AS_OF, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    lock_october(url)
    assert not Path(f"{published}-wal").exists() or Path(f"{published}-wal").stat().st_size == 0
    before = sha256(published)
    old = rows(url, f"SELECT revenue_usd_cents, run_id FROM profit_monthly WHERE period = '{PERIOD}'")
    assert old and old[0][1] == run_id

    nb = run_all_by_hand(PERIOD, BY_HAND_AS_OF)

    assert sha256(published) == before
    assert rows(url, f"SELECT revenue_usd_cents, run_id FROM profit_monthly WHERE period = '{PERIOD}'") == old
    first = nb.cells[2]  # the cell after the parameters: the session
    assert first.source.startswith("import datetime as dt") and first.outputs
    said = " ".join(output_text(first).split())
    target = home / "runs" / "scratch" / "profit_aggregate.sqlite"
    assert f"Writes only to the scratch warehouse {target}" in said
    assert f"The published warehouse {url} is untouched." in said
    assert f"To publish: workbook run profit_aggregate --date {PERIOD} --as-of 2026-11-10T00:00:00Z" in said
    assert "workbook reopen --month 2026-10" in said and "signed off by DE1" in said
    first_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]
    assert first_outputs[0] == 2

    scratch_url = f"sqlite:///{target}"
    new = rows(scratch_url, f"SELECT revenue_usd_cents, run_id FROM profit_monthly WHERE period = '{PERIOD}'")
    assert len(new) == 1 and new[0][1] == "manual"
    assert new[0][0] == expected_revenue(PERIOD, BY_HAND_AS_OF) > old[0][0]  # the whole month, in the scratch
    written = rows(
        scratch_url,
        "SELECT run_id FROM partition_writes WHERE table_name = 'profit_monthly' "
        f"AND partition_key = '{warehouse.partition_key({'period': PERIOD})}'",
    )
    assert written == [("manual",)]
    results = pd.DataFrame(
        rows(scratch_url, "SELECT run_id, check_id FROM check_results"), columns=["run_id", "check_id"]
    )
    assert "manual" in set(results["run_id"])  # the checks recorded in the scratch
    assert rows(url, "SELECT count(*) FROM check_results WHERE run_id = 'manual'") == [(0,)]

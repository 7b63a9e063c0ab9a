"""Shared fixtures: a sandboxed workbook home, a test configuration, and real services.

A test that needs a service that is not there skips with the reason, except under CI
(``CI=true``), where it fails: CI must start what the tests need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from helpers.core import config as cfgmod
from helpers.storage import warehouse

REPO = Path(__file__).resolve().parents[1]
# A genuine FOCUS 1.0 cloud billing export (FinOps Foundation, CC BY 4.0: see its README).
FOCUS_SAMPLE = REPO / "tests" / "fixtures" / "focus" / "focus_1_0_sample.csv"
FIXTURE_NOTEBOOKS = REPO / "tests" / "fixtures" / "notebooks"

# Test pipelines added beside the real ones (all notebook paths listed once, here).
TEST_PIPELINES = {
    "smoke": {"notebook": FIXTURE_NOTEBOOKS / "smoke.ipynb", "timeout_minutes": 5},
    "smoke_fail": {"notebook": FIXTURE_NOTEBOOKS / "fail.ipynb", "timeout_minutes": 5},
    "smoke_sleep": {"notebook": FIXTURE_NOTEBOOKS / "sleep.ipynb", "timeout_minutes": 5},
    "leak": {"notebook": FIXTURE_NOTEBOOKS / "leak.ipynb", "timeout_minutes": 5},  # secret scrub probe
    # A dependency chain for the orchestration tests: t_down doubles smoke's partition into
    # chain_table and runs its checks; t_after_fail depends on the pipeline that always fails.
    "t_down": {
        "notebook": FIXTURE_NOTEBOOKS / "chain.ipynb",
        "timeout_minutes": 5,
        "depends_on": ["smoke"],
        "critical_columns": {"chain_table": ["amount_cents"]},
    },
    "t_after_fail": {
        "notebook": FIXTURE_NOTEBOOKS / "chain.ipynb",
        "timeout_minutes": 5,
        "depends_on": ["smoke_fail"],
    },
}


def need_service(reason: str) -> None:
    """Skip locally, fail under CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and a required service is missing: {reason}")
    pytest.skip(reason)


def write_test_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "team.yml", directory / "team.yml")
    shutil.copy(REPO / "config" / "nbval_sanitize.cfg", directory / "nbval_sanitize.cfg")
    data = yaml.safe_load((REPO / "config" / "pipelines.yml").read_text())
    template = data["pipelines"]["growth_daily"]
    for pid, over in TEST_PIPELINES.items():
        data["pipelines"][pid] = {
            **template,
            "title": f"test pipeline {pid}",
            "family": "growth",
            "feeds": "experiments",
            "notebook": str(over["notebook"]),
            "timeout_minutes": over["timeout_minutes"],
            "critical_columns": over.get("critical_columns", {}),
            "depends_on": over.get("depends_on", []),
            "partition": over.get("partition", template["partition"]),
            "schedule": over.get("schedule", template["schedule"]),
            "sources": over.get("sources", []),
            "sla": {**template["sla"], "end_of_week_updates": False, **over.get("sla", {})},
        }
    (directory / "pipelines.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


def _reset_caches() -> None:
    warehouse.dispose_engines()
    cfgmod._cached.cache_clear()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh WORKBOOK_HOME with the test config and a SQLite warehouse of its own."""
    h = tmp_path / "home"
    (h / "runs").mkdir(parents=True)
    (h / "data").mkdir()
    monkeypatch.setenv("WORKBOOK_HOME", str(h))
    monkeypatch.setenv("WORKBOOK_CONFIG_DIR", str(write_test_config(tmp_path / "config")))
    monkeypatch.delenv("WORKBOOK_WAREHOUSE_URL", raising=False)
    _reset_caches()
    yield h
    _reset_caches()


def workbook(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a new process (exit codes, concurrency and kills are process-level)."""
    return subprocess.run(
        [sys.executable, "-m", "helpers.cli", *args],  # the entry point, as `workbook` runs it
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server: WORKBOOK_TEST_PG_URL if CI started one, else a throwaway cluster."""
    url = os.environ.get("WORKBOOK_TEST_PG_URL")
    if url:
        yield url
        return
    sys.path.insert(0, str(REPO / "tests"))
    from services import start_postgres

    try:
        pg = start_postgres()
    except (RuntimeError, OSError) as e:
        need_service(f"PostgreSQL unavailable: {e}")
    yield pg.url
    pg.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database on the test server, dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    yield url
    warehouse.dispose_engines()
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, home, monkeypatch) -> str:
    """Each warehouse test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'runs' / 'warehouse.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("WORKBOOK_WAREHOUSE_URL", url)
    warehouse.dispose_engines()
    return url


@pytest.fixture(scope="session")
def spark_engine():
    """One Spark session for the whole test session (a session costs ~7 s to start)."""
    from helpers.storage import engine, javaenv

    if javaenv.find_java() is None:
        need_service(f"Spark needs Java: {javaenv.HOW_TO_FIX}")
    eng = engine.get_engine("spark")
    yield eng
    engine.stop_engines()


@pytest.fixture(scope="session")
def duckdb_engine():
    from helpers.storage import engine

    return engine.get_engine("duckdb")


@pytest.fixture(scope="session")
def engines(duckdb_engine, spark_engine):
    """Both engines, for tests that require identical results on each."""
    return [duckdb_engine, spark_engine]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> str:
    """A Tansu Kafka-protocol broker (memory storage) on 127.0.0.1: its bootstrap address."""
    sys.path.insert(0, str(REPO / "tests"))
    from services import ServiceUnavailable, start_tansu

    try:
        proc, address = start_tansu(tmp_path_factory.mktemp("tansu"))
    except ServiceUnavailable as exc:
        need_service(str(exc))
    yield address
    proc.kill()
    proc.wait(timeout=10)


# ---------------------------------------------------------------- the demo company, cached

_DEMO_CACHE: dict[tuple, Path] = {}


def demo_landing(
    tmp_path_factory,
    *,
    accounts: int = 200,
    months: int = 4,
    seed: int = 7,
    end: str = "2026-10-31",
    faults: tuple[str, ...] = (),
    events: bool = False,
) -> Path:
    """A generated landing zone for these arguments, built once per test session and shared.

    Landing zones are immutable, so tests read the cached one through a symlink (see
    :func:`home_with_demo`) and never write into it.
    """
    import datetime as dt

    from helpers.demo.generate import generate
    from helpers.demo.spec import DemoSpec, FaultSpec

    key = (accounts, months, seed, end, tuple(sorted(faults)), events)
    if key not in _DEMO_CACHE:
        spec = DemoSpec(
            accounts=accounts,
            months=months,
            seed=seed,
            end=dt.date.fromisoformat(end),
            faults=tuple(FaultSpec.parse(f) for f in faults),
        )
        root = tmp_path_factory.mktemp("demo") / "landing"
        generate(spec, root, events=events, force=True)
        _DEMO_CACHE[key] = root
    return _DEMO_CACHE[key]


def home_with_demo(home: Path, landing: Path) -> Path:
    """Point ``home``'s ``data/landing`` at a cached demo landing zone (read-only use)."""
    target = home / "data" / "landing"
    if target.is_symlink() or target.exists():
        target.unlink() if target.is_symlink() else shutil.rmtree(target)
    target.symlink_to(landing, target_is_directory=True)
    return home


@pytest.fixture
def trap():
    """A local trap posing as the browser's proxy: every request a page makes is recorded (tests/chromium.py)."""
    import threading

    from chromium import Trap

    server = Trap()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until ``path`` has content (a run's pid file, say); fail if ``proc`` exits first.

    ``timeout`` guards against a hang; it is not a timing assertion.
    """
    import time

    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if proc.poll() is not None:
            raise AssertionError(f"runner exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.2)

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

from helpers import config as cfgmod
from helpers import warehouse

REPO = Path(__file__).resolve().parents[1]
FIXTURE_NOTEBOOKS = REPO / "tests" / "fixtures" / "notebooks"

# Test pipelines added beside the real ones (all notebook paths listed once, here).
TEST_PIPELINES = {
    "smoke": {"notebook": FIXTURE_NOTEBOOKS / "smoke.ipynb", "timeout_minutes": 5},
    "smoke_fail": {"notebook": FIXTURE_NOTEBOOKS / "fail.ipynb", "timeout_minutes": 5},
    "smoke_sleep": {"notebook": FIXTURE_NOTEBOOKS / "sleep.ipynb", "timeout_minutes": 5},
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
            "critical_columns": {},
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
        [sys.executable, "-m", "helpers.cli", *args],
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
    from helpers import engine, javaenv

    if javaenv.find_java() is None:
        need_service(f"Spark needs Java: {javaenv.HOW_TO_FIX}")
    eng = engine.get_engine("spark")
    yield eng
    engine.stop_engines()


@pytest.fixture(scope="session")
def duckdb_engine():
    from helpers import engine

    return engine.get_engine("duckdb")


@pytest.fixture(scope="session")
def engines(duckdb_engine, spark_engine):
    """Both engines, for tests that require identical results on each."""
    return [duckdb_engine, spark_engine]

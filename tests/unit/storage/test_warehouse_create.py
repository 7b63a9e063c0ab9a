"""Opening a new warehouse while another process creates the same tables."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from helpers.storage import warehouse


def _raiser(message: str, fail_times: int, real):
    calls = {"n": 0}

    def create_all(engine, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= fail_times:
            raise sa.exc.OperationalError("CREATE TABLE run_scraps", {}, sqlite3.OperationalError(message))
        return real(engine, *args, **kwargs)

    return create_all, calls


def test_a_table_created_by_another_process_meanwhile_is_not_an_error(tmp_path, monkeypatch):
    create_all, calls = _raiser("table run_scraps already exists", 1, warehouse.metadata.create_all)
    monkeypatch.setattr(warehouse.metadata, "create_all", create_all)
    engine = warehouse.get_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    try:
        assert calls["n"] == 2
        assert "run_scraps" in sa.inspect(engine).get_table_names()
    finally:
        warehouse.dispose_engines()


def test_any_other_database_error_still_fails(tmp_path, monkeypatch):
    create_all, calls = _raiser("disk I/O error", 1, warehouse.metadata.create_all)
    monkeypatch.setattr(warehouse.metadata, "create_all", create_all)
    with pytest.raises(sa.exc.OperationalError, match="disk I/O error"):
        warehouse.get_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    assert calls["n"] == 1
    warehouse.dispose_engines()

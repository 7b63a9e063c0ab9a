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


@pytest.fixture
def owned_table():
    """A table an owner package defines on the warehouse's metadata (removed afterwards)."""
    table = sa.Table("t_owned", warehouse.metadata, sa.Column("k", sa.Integer, primary_key=True))
    yield table
    warehouse.metadata.remove(table)
    warehouse.dispose_engines()


def test_a_table_registered_after_the_engine_opened_is_created_on_it(tmp_path, owned_table):
    engine = warehouse.get_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    warehouse.register_tables(owned_table)
    assert "t_owned" in sa.inspect(engine).get_table_names()


def test_a_registered_table_is_created_on_every_new_engine(tmp_path, owned_table):
    warehouse.register_tables(owned_table)
    for name in ("a", "b"):
        engine = warehouse.get_engine(f"sqlite:///{tmp_path / name}.sqlite")
        assert "t_owned" in sa.inspect(engine).get_table_names()


def test_only_tables_of_the_warehouse_metadata_register():
    stray = sa.Table("t_stray", sa.MetaData(), sa.Column("k", sa.Integer, primary_key=True))
    with pytest.raises(ValueError, match="t_stray"):
        warehouse.register_tables(stray)


def test_the_owners_tables_exist_whichever_came_first(tmp_path):
    """storage imports no owner: an owner imported after the engine opened still finds its tables."""
    import subprocess
    import sys

    code = (
        "import sqlalchemy as sa\n"
        "from helpers.storage import warehouse\n"
        f"engine = warehouse.get_engine('sqlite:///{tmp_path / 'w.sqlite'}')\n"
        "assert 'alerts' not in sa.inspect(engine).get_table_names()\n"
        "from helpers.oncall import alerts\n"
        "assert alerts.list_alerts(engine=engine) == []\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_older_warehouse_gains_the_nullable_columns_of_its_ops_tables_when_opened(tmp_path):
    from helpers.oncall import incidents  # defines the incidents table on the metadata

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the incidents table as an earlier version created it
        db.execute(
            "CREATE TABLE incidents (incident_id INTEGER PRIMARY KEY, alert_id VARCHAR(64) NOT NULL UNIQUE, "
            "pipeline VARCHAR(64) NOT NULL, check_id VARCHAR(160), catalogue_id VARCHAR(40), "
            "severity VARCHAR(8) NOT NULL, summary TEXT NOT NULL, reason VARCHAR(32) NOT NULL, "
            "opened_at DATETIME NOT NULL, fix_deadline DATETIME NOT NULL, status VARCHAR(10) NOT NULL, "
            "resolved_at DATETIME, resolution TEXT)"
        )
        db.execute(
            "INSERT INTO incidents VALUES (1, '7', 'profit_aggregate', NULL, NULL, 'critical', 's', 'critical', "
            "'2026-11-01 00:00:00', '2026-11-04 00:00:00', 'open', NULL, NULL)"
        )
    try:
        engine = warehouse.get_engine(f"sqlite:///{path}")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("incidents")}
        assert {"cause_key", "cause", "acknowledged_at", "acknowledged_by", "at_risk"} <= columns
        [old] = incidents.list_incidents(engine=engine)  # the old row reads, its new fields empty
        assert (old.alert_id, old.cause_key, old.at_risk) == ("7", None, ())
        added = warehouse.read_table("schema_changes", engine=engine)
        assert set(added.loc[added["table_name"] == "incidents", "column_name"]) >= {"cause_key", "at_risk"}
    finally:
        warehouse.dispose_engines()

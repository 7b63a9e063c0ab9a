"""The account-database extract through SQLAlchemy, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers.storage import landing
from helpers.storage.extract.sql import SqlTable, extract_sql
from helpers.storage.quarantine import read_quarantine

pytestmark = pytest.mark.integration
URL_ENV = "WORKBOOK_TEST_ACCOUNT_DB_URL"
DAY1 = dt.datetime(2026, 11, 2, 6, tzinfo=dt.UTC)
DAY2 = DAY1 + dt.timedelta(days=1)
DAY3 = DAY1 + dt.timedelta(days=2)

accounts = sa.Table(
    "accounts",
    sa.MetaData(),
    sa.Column("account_id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(80), nullable=False),
    sa.Column("plan", sa.String(16)),
    sa.Column("mrr", sa.Numeric(12, 2)),  # the account DB stores dollars and cents as NUMERIC
    sa.Column("seats", sa.Integer),
    sa.Column("updated_at", sa.DateTime()),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def account_db(request, home, monkeypatch) -> sa.Engine:
    """A source database holding ``accounts``; its URL only in the environment."""
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'accounts.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    monkeypatch.setenv(URL_ENV, url)
    engine = sa.create_engine(url)
    accounts.metadata.create_all(engine)
    yield engine
    engine.dispose()


def at(day: dt.datetime, hours: float) -> dt.datetime:
    """A naive UTC timestamp ``hours`` before ``day`` (the source column is naive)."""
    return (day - dt.timedelta(hours=hours)).replace(tzinfo=None)


def upsert(engine: sa.Engine, *rows: dict) -> None:
    with engine.begin() as conn:
        for row in rows:
            conn.execute(accounts.delete().where(accounts.c.account_id == row["account_id"]))
            conn.execute(accounts.insert().values(**row))


def account(i: int, updated_at: dt.datetime | None, mrr: str = "99.90", plan: str = "team") -> dict:
    return {
        "account_id": f"acc_{i:03d}",
        "name": f"Company {i}",
        "plan": plan,
        "mrr": Decimal(mrr),
        "seats": i,
        "updated_at": updated_at,
    }


def test_snapshot_lands_one_delivery_per_as_of_and_reruns_are_noops(account_db, home):
    upsert(account_db, *(account(i, at(DAY1, 30 - i), mrr=f"{i}.05") for i in range(5)))
    first = extract_sql("account_db", as_of=DAY1, table="accounts", url_env=URL_ENV)

    assert (first.received, first.landed, first.quarantined, first.files_written) == (5, 5, 0, 1)
    assert first.deliveries[0].partition == "2026-11-02"
    landed = landing.read_source("account_db")
    assert landed["account_id"].tolist() == [f"acc_{i:03d}" for i in range(5)]
    assert landed["mrr"].tolist() == [Decimal(f"{i}.05") for i in range(5)]  # Decimal, not float
    manifest = (home / "data" / "landing" / "account_db" / "_manifest.jsonl").read_text()

    again = extract_sql("account_db", as_of=DAY1 + dt.timedelta(hours=5), table="accounts", url_env=URL_ENV)
    assert (again.received, again.files_written) == (0, 0)
    assert "already extracted for 2026-11-02" in again.note
    assert (home / "data" / "landing" / "account_db" / "_manifest.jsonl").read_text() == manifest

    upsert(account_db, account(9, at(DAY2, 1)))
    nxt = SqlTable(table="accounts", url_env=URL_ENV).extract(DAY2)
    assert (nxt.landed, nxt.deliveries[0].partition) == (6, "2026-11-03")


def test_incremental_takes_rows_past_the_landed_watermark_up_to_as_of(account_db, home):
    upsert(
        account_db,
        account(1, at(DAY1, 20)),
        account(2, at(DAY1, 10)),
        account(3, at(DAY1, -3)),  # changed after DAY1's as_of: not visible to that run
        account(4, None),  # no watermark: can never be picked up incrementally
    )
    extractor = SqlTable(table="accounts", watermark="updated_at", url_env=URL_ENV)
    first = extractor.extract(DAY1)
    assert (first.received, first.landed, first.quarantined) == (3, 2, 1)
    assert landing.read_source("account_db")["account_id"].tolist() == ["acc_001", "acc_002"]
    quarantined = read_quarantine(first.quarantine_file)
    assert [(q["raw"]["account_id"], q["field"]) for q in quarantined] == [("acc_004", "updated_at")]
    assert "NULL" in quarantined[0]["reason"]

    upsert(account_db, account(2, at(DAY2, 5), plan="business", mrr="499.00"), account(5, at(DAY2, 2)))
    second = extractor.extract(DAY2)
    assert (second.landed, second.quarantined) == (3, 1)
    day2 = landing.read_source("account_db", start="2026-11-03", end="2026-11-03")
    assert day2["account_id"].tolist() == ["acc_003", "acc_002", "acc_005"]  # by updated_at
    assert day2.loc[day2["account_id"] == "acc_002", "mrr"].item() == Decimal("499.00")
    assert len(read_quarantine(second.quarantine_file)) == 1  # counted again, written once

    assert extractor.extract(DAY2 + dt.timedelta(hours=1)).note.startswith("already extracted")
    third = extractor.extract(DAY3)  # nothing changed: an empty delivery records that the extract ran
    assert (third.landed, third.files_written, third.deliveries[0].rows) == (0, 1, 0)
    arrivals = landing.arrivals("account_db")
    assert arrivals["partition"].tolist() == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert arrivals["arrived_at"].tolist() == [pd.Timestamp(d) for d in (DAY1, DAY2, DAY3)]


def test_source_url_comes_from_the_named_env_var_only(home, monkeypatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    with pytest.raises(ValueError, match=f"{URL_ENV} is not set"):
        extract_sql("account_db", as_of=DAY1, table="accounts", url_env=URL_ENV)


def test_unknown_table_error_hides_the_password(home, monkeypatch, pg_url):
    monkeypatch.setenv(URL_ENV, pg_url)
    password = sa.engine.make_url(pg_url).password
    with pytest.raises(ValueError, match="table 'nope' not found") as err:
        extract_sql("account_db", as_of=DAY1, table="nope", url_env=URL_ENV)
    assert password and password not in str(err.value)


def test_incremental_needs_a_timestamp_watermark(account_db, home):
    with pytest.raises(ValueError, match="expected a timestamp column"):
        extract_sql("account_db", as_of=DAY1, table="accounts", watermark="seats", url_env=URL_ENV)


def test_a_row_committed_after_the_extract_with_an_earlier_stamp_is_landed_once(account_db, home):
    """updated_at is stamped at transaction start; the commit can come after the extract that ran."""
    upsert(account_db, account(1, at(DAY1, 3)), account(2, at(DAY1, 1)))
    extractor = SqlTable(table="accounts", watermark="updated_at", url_env=URL_ENV)
    assert extractor.extract(DAY1).landed == 2  # watermark: DAY1 - 1 h

    # committed after DAY1's extract, stamped 10 minutes before the watermark and at it exactly
    upsert(account_db, account(3, at(DAY1, 1 + 10 / 60)), account(4, at(DAY1, 1)))
    second = extractor.extract(DAY2)
    assert (second.received, second.landed) == (2, 2)  # acc_002, already landed, is not re-landed
    landed = landing.read_source("account_db")
    assert sorted(landed["account_id"]) == ["acc_001", "acc_002", "acc_003", "acc_004"]

    # outside the lookback it is a late commit the extract cannot see (documented bound)
    upsert(account_db, account(5, at(DAY1, 2)))
    assert extractor.extract(DAY3).landed == 0

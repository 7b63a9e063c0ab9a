"""Product usage: the distinct (account, UTC day) pairs with events or API calls in a window."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from helpers.growth import lifecycle
from helpers.storage import bulkread, contracts, landing

pytestmark = pytest.mark.unit

START, END = dt.date(2026, 4, 1), dt.date(2026, 4, 10)
AS_OF = dt.datetime(2026, 4, 30, tzinfo=dt.UTC)


def test_the_account_pattern_finds_what_python_re_finds():
    """Arrow's RE2 reads ``\\s`` as ASCII only; the pattern spells out Python's ``\\s``."""
    python = re.compile(r'"groupId":\s*"([^"]+)"')
    spaces = [chr(i) for i in range(0x3001) if chr(i).isspace()]
    texts = [f'{{"groupId":{s}"A{ord(s)}"}}' for s in spaces]
    texts += [
        '{"library": {}, "groupId": "A1", "x": {"groupId": "A2"}}',  # the first one
        '{"groupId":"A3"}',
        '{"groupId": ""}',  # an empty id is no id
        '{"groupId": 7}',
        '{"groupid": "A4"}',
        '{"groupId":\u200b"A5"}',  # a zero-width space is not a space
        '{"groupId": "line\nbreak"}',
        "not json",
        None,
    ]
    found = pc.struct_field(pc.extract_regex(pa.array(texts, pa.string()), lifecycle.GROUP_ID_PATTERN), [0])
    expected = [None if t is None or not python.search(t) else python.search(t).group(1) for t in texts]
    assert found.to_pylist() == expected
    assert sum(x is not None for x in expected) == len(spaces) + 3


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def _events(rows: list[tuple[str | None, dt.datetime]]) -> pa.Table:
    schema = contracts.EVENTS_SCHEMA
    n = len(rows)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols["messageId"] = pa.array([f"m{i}-{t.isoformat()}" for i, (_a, t) in enumerate(rows)])
    cols["type"] = pa.array(["track"] * n)
    cols["event"] = pa.array(["Opened"] * n)
    cols["userId"] = pa.array(["u1"] * n)
    cols["schema_version"] = pa.array(["1"] * n)
    cols["timestamp"] = pa.array([t for _a, t in rows], schema.field("timestamp").type)
    cols["context"] = pa.array(
        ['{"library": {}}' if a is None else f'{{"groupId": "{a}"}}' for a, _t in rows]
    )
    return pa.table(cols, schema=schema)


def _api(rows: list[tuple[str, dt.datetime]]) -> pa.Table:
    schema = contracts.schema("api_logs")
    n = len(rows)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols["request_id"] = pa.array([f"r{i}-{t.isoformat()}" for i, (_a, t) in enumerate(rows)])
    cols["account_id"] = pa.array([a for a, _t in rows])
    cols["timestamp"] = pa.array([t for _a, t in rows], schema.field("timestamp").type)
    return pa.table(cols, schema=schema)


@pytest.fixture
def root(tmp_path):
    """Events received each day from 31 March to 15 April (partitions by receive day); API calls."""
    root = tmp_path / "landing"
    for k in range(16):
        day = dt.date(2026, 3, 31) + dt.timedelta(days=k)
        rows = [("A1", _at(day, 9)), ("A1", _at(day, 17)), (None, _at(day, 10))]
        if day == dt.date(2026, 4, 12):  # a device synced late: its event is of the window's last day
            rows.append(("B2", _at(END, 23)))
        if day == dt.date(2026, 4, 14):  # received 4 days after the window: not read
            rows.append(("C3", _at(END, 8)))
        landing.write_delivery(
            "events", day, _events(rows), arrived_at=_at(day, 23), root=root, durable=False
        )
    for day in (dt.date(2026, 4, 2), dt.date(2026, 4, 11)):
        api = _api([("D4", _at(day, 1)), ("D4", _at(day, 2))])
        landing.write_delivery("api_logs", day, api, arrived_at=_at(day, 23), root=root, durable=False)
    return root


def _pairs(frame) -> list[tuple[str, dt.date]]:
    assert list(frame.columns) == ["account_id", "day"]
    return list(frame.itertuples(index=False, name=None))


def test_usage_is_each_account_day_once_by_the_events_own_time(root):
    report = lifecycle.LandingReport()
    got = lifecycle.product_usage(as_of=AS_OF, start=START, end=END, root=root, report=report)
    days = [START + dt.timedelta(days=k) for k in range(10)]
    assert _pairs(got) == [("A1", d) for d in days] + [("B2", END), ("D4", dt.date(2026, 4, 2))]
    assert all(type(d) is dt.date for d in got["day"]) and got["account_id"].dtype == object
    assert report.deliveries == {"events": 13, "api_logs": 1}  # 1-13 April read; the API's in the window
    assert report.received["events"] == 13 * 3 + 1


def test_few_deliveries_read_file_by_file_give_the_same_usage(root, monkeypatch):
    fast = lifecycle.product_usage(as_of=AS_OF, start=START, end=END, root=root)
    monkeypatch.setattr(bulkread, "MIN_FILES", 100)  # every read below takes the file-by-file path
    assert _pairs(lifecycle.product_usage(as_of=AS_OF, start=START, end=END, root=root)) == _pairs(fast)


def test_no_usage_source_landed_is_no_usage(tmp_path):
    got = lifecycle.product_usage(as_of=AS_OF, start=START, end=END, root=tmp_path / "landing")
    assert got.empty and list(got.columns) == ["account_id", "day"]

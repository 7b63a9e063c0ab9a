"""Bad input to the engagement run: quarantined with where and why, never the run (issue 20, items 3-4).

One event with malformed, empty or non-object JSON in any JSON field is quarantined with its
messageId, the field, the reason, the delivery file and row; the intake still balances and the
figures equal the run without those events, on DuckDB and on Spark. A delivery whose file changed
after arrival (or lacks a contract column) is not read: it is quarantined whole, the critical
``landing_integrity`` check names the file and the figures are provisional.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import demo_landing
from helpers import checks
from helpers.engagement import event_contract
from helpers.engagement.checks import stream_hourly
from helpers.engagement.inputs import load
from helpers.engagement.run import EngagementRun, compute
from helpers.engagement.upstream import Upstream, UpstreamState
from helpers.engagement.window import PIPELINE, run_window
from helpers.storage import landing
from helpers.storage.contracts import EVENTS_SCHEMA

pytestmark = pytest.mark.integration

DEMO = {"accounts": 40, "months": 2, "seed": 7, "end": "2026-10-31", "events": True}
DAY = "2026-10-31"
AS_OF = "2026-11-01T12:00:00+00:00"
ARRIVED = dt.datetime(2026, 11, 1, 1, tzinfo=dt.UTC)
# messageId -> (field named, reason)
EXPECTED = {
    "bad-context": ("context", "malformed JSON in context"),
    "bad-empty": ("context", "empty context"),
    "bad-traits": ("traits", "traits is not a JSON object"),
    "bad-properties": ("properties", "malformed JSON in properties"),
    "bad-array": ("context", "context is not a JSON object"),
    "raw-traits": ("traits", "traits is not a JSON object"),
}
RAW_MALFORMED = '{"messageId": "raw-cut", "type": "track", "context": {"groupId": '


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO)


def copy_of(clean: Path, tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    shutil.copytree(clean, root, symlinks=False)
    return root


def not_ready(up: Upstream, period: str) -> tuple[UpstreamState, pd.DataFrame]:
    state = UpstreamState(up.pipeline, up.table, period, False, f"{up.pipeline} not run (test)")
    return state, pd.DataFrame(columns=["account_id", "value"])


def run(eng, root: Path) -> EngagementRun:
    window = run_window(DAY, AS_OF, 3, root=root)
    return compute(eng, load(eng, window, root=root), window, upstream_reader=not_ready)


def evaluate(result: EngagementRun, name: str) -> checks.CheckResult:
    from helpers.engagement import checks as engagement_checks  # noqa: F401  (registers the checks)

    check = next(c for c in checks.registered(PIPELINE) if c.id == f"{PIPELINE}.{name}")
    ctx = checks.CheckContext(PIPELINE, DAY, result.window.as_of, None, {"engagement": result})
    return checks.evaluate(check, ctx)


def first_delivery(root: Path, source: str, partition: str) -> landing.Delivery:
    return next(d for d in landing.deliveries(source, root=root) if d.partition == partition)


def land_bad_events(root: Path) -> landing.Delivery:
    """A new delivery for DAY: copies of real events, each with one bad JSON field (new ids)."""
    rows = pq.read_table(landing.source_dir("events", root) / first_delivery(root, "events", DAY).file)
    good = [r for r in rows.to_pylist() if r["_raw_json"] is None][:6]
    assert len(good) == 6
    edits = {
        "bad-context": {"context": '{"groupId": '},
        "bad-empty": {"context": ""},
        "bad-traits": {"traits": '"garbage"'},
        "bad-properties": {"properties": '{"session_id": "s1",'},
        "bad-array": {"context": "[1, 2]"},
    }
    out = [{**r, "messageId": mid, **edit} for r, (mid, edit) in zip(good, edits.items(), strict=False)]
    src = good[5]
    message = {
        "messageId": "raw-traits",
        "type": src["type"],
        "event": src["event"],
        "userId": src["userId"],
        "timestamp": src["timestamp"].isoformat(),
        "context": json.loads(src["context"]),
        "properties": json.loads(src["properties"] or "{}"),
        "traits": "garbage",
        "schema_version": "1",
    }
    bare = dict.fromkeys(EVENTS_SCHEMA.names)
    out.append(
        {**bare, "receivedAt": src["receivedAt"], "schema_version": "1", "_raw_json": json.dumps(message)}
    )
    out.append({**bare, "receivedAt": src["receivedAt"], "schema_version": "1", "_raw_json": RAW_MALFORMED})
    table = pa.Table.from_pylist(out, schema=EVENTS_SCHEMA)
    return landing.write_delivery("events", DAY, table, arrived_at=ARRIVED, root=root)


def intake_of(result: EngagementRun, day: str) -> dict:
    return result.intake[result.intake["date"] == dt.date.fromisoformat(day)].iloc[0].to_dict()


# ---------------------------------------------------------------- malformed JSON: the event, never the run


def test_malformed_json_quarantines_the_event_with_its_id_field_file_and_row(duckdb_engine, clean, tmp_path):
    root = copy_of(clean, tmp_path)
    before = run(duckdb_engine, root)
    delivery = land_bad_events(root)
    after = run(duckdb_engine, root)  # DuckDB used to fail here: "Malformed JSON at byte 21"

    q = after.quarantined
    mine = q[q["delivery_file"] == delivery.file]
    assert len(mine) == len(EXPECTED) + 1
    by_id = {r.message_id: r for r in mine.itertuples() if r.message_id is not None}
    assert set(by_id) == set(EXPECTED)
    for mid, (fld, reason) in EXPECTED.items():
        assert by_id[mid].reason == reason, mid
        assert event_contract.reason_field(reason) == fld
    cut = mine[mine["message_id"].isna()].iloc[
        0
    ]  # no id can be read from a cut message: file and row say where
    assert cut["reason"] == "malformed JSON in _raw_json" and cut["raw_text"] == RAW_MALFORMED
    assert sorted(mine["delivery_row"]) == list(range(1, len(EXPECTED) + 2))
    landed = json.loads(by_id["bad-context"].raw_text)
    assert landed["message_id"] == "bad-context" and landed["landed"] == '{"groupId": '

    rec = next(r for r in event_contract.quarantine_records(mine) if "bad-traits" in str(r.raw))
    assert (rec.file, rec.field) == (delivery.file, "traits") and rec.line is not None

    b, a = intake_of(before, DAY), intake_of(after, DAY)
    assert a["received"] == b["received"] + len(EXPECTED) + 1
    assert a["accepted"] == b["accepted"]
    assert a["quarantined"] == b["quarantined"] + len(EXPECTED) + 1
    assert a["received"] == a["accepted"] + a["quarantined"]
    reasons = json.loads(a["by_reason"])
    assert reasons["malformed JSON in context"] == 1 and reasons["traits is not a JSON object"] == 2
    for name in ("metrics", "daily", "monthly"):  # the bad copies changed no figure
        pd.testing.assert_frame_equal(getattr(after, name), getattr(before, name), obj=name)
    result = evaluate(after, "schema_change")
    assert result.status == "fail" and "malformed JSON in context: 1" in result.summary


def test_malformed_json_is_judged_the_same_on_both_engines(engines, clean, tmp_path):
    root = copy_of(clean, tmp_path)
    land_bad_events(root)
    duck, spark = (run(eng, root) for eng in engines)
    for name in ("quarantined", "intake", "metrics", "daily", "monthly"):
        pd.testing.assert_frame_equal(
            getattr(duck, name).reset_index(drop=True),
            getattr(spark, name).reset_index(drop=True),
            obj=name,
            check_dtype=False,
        )


def test_engines_agree_on_which_json_text_is_valid(engines):
    cases = {
        '{"a": 1}': (True, True),
        ' {"a": {"b": [1, 2]}} ': (True, True),
        '{"groupId": ': (False, None),
        "": (False, None),
        '"garbage"': (True, False),
        "[1, 2]": (True, False),
        "{'a': 1}": (False, None),
        "{a: 1}": (False, None),
        '{"a": 1} junk': (False, None),
        '{"a": "\x01"}': (False, None),
    }
    frame = pd.DataFrame({"i": range(len(cases)), "c": list(cases)})
    for eng in engines:
        F = eng.F
        df = eng.create_dataframe(frame)
        valid = eng.json_valid(F.col("c"))
        wrapped = F.when(valid, F.concat(F.lit('{"x": '), F.col("c"), F.lit("}")))
        got = eng.to_pandas(
            df.select(
                F.col("i").alias("i"),
                valid.alias("valid"),
                eng.json_is_object(wrapped, "$.x").alias("object"),
            ),
            ["i"],
        )
        for (text, (ok, obj)), row in zip(cases.items(), got.itertuples(), strict=True):
            assert bool(row.valid) is ok, (eng.name, text)
            if ok:
                assert bool(row.object) is obj, (eng.name, text)


# ---------------------------------------------------------------- a delivery changed after arrival


def test_a_run_hashes_only_the_files_changed_since_a_run_stored_their_digests(
    duckdb_engine, clean, tmp_path, monkeypatch
):
    import os

    from helpers.storage import digests

    root = copy_of(clean, tmp_path)
    before = run(duckdb_engine, root)
    for source in ("events", "api_logs"):  # as if stored well after the files were written
        path = digests.DigestStore(source, root).path
        later = os.stat(path).st_mtime_ns + 60 * 1_000_000_000
        os.utime(path, ns=(later, later))
    d = first_delivery(root, "events", "2026-10-30")
    path = landing.source_dir("events", root) / d.file
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows // 2), path)
    hashed: list[str] = []
    real = landing.file_sha256
    monkeypatch.setattr(landing, "_DIGESTS", {})  # a new process
    monkeypatch.setattr(landing, "file_sha256", lambda p: hashed.append(str(p)) or real(p))

    after = run(duckdb_engine, root)
    assert hashed == [str(path)], "the other deliveries' digests were kept by the run before"
    assert not before.landing.rejected
    [rejected] = after.landing.rejected
    assert rejected.kind == "changed" and rejected.delivery.file == d.file


def test_a_tampered_events_file_is_quarantined_whole_and_the_run_is_provisional(
    home, duckdb_engine, clean, tmp_path
):
    from helpers.engagement import checks as engagement_checks
    from helpers.engagement.store import write
    from helpers.oncall import alerts
    from helpers.storage.quarantine import read_quarantine

    root = copy_of(clean, tmp_path)
    before = run(duckdb_engine, root)
    part = "2026-10-30"
    d = first_delivery(root, "events", part)
    path = landing.source_dir("events", root) / d.file
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows // 2), path)  # rows taken out behind the manifest's back

    after = run(duckdb_engine, root)
    [rejected] = after.landing.rejected
    assert rejected.kind == "changed" and rejected.delivery.file == d.file
    assert str(path) not in load(duckdb_engine, after.window, root=root).event_files
    assert after.status == "pending"
    assert any(f"landing file changed after arrival: {path}" in r for r in after.pending_reasons)
    assert not after.monthly["complete"].any() and before.monthly["complete"].all()
    b, a = intake_of(before, part), intake_of(after, part)
    assert a["received"] == b["received"] == d.rows  # the manifest's rows, none read
    assert (a["accepted"], a["quarantined"]) == (0, d.rows)
    assert json.loads(a["by_reason"]) == {"delivery left out: landing file changed after arrival": d.rows}

    result = evaluate(after, "landing_integrity")
    assert (result.status, result.severity) == ("fail", "critical")
    assert f"landing file changed after arrival: {path}" in result.summary
    assert evaluate(before, "landing_integrity").status == "pass"

    write(after, run_id="r1")
    [qfile] = (home / "data" / "quarantine" / "events").glob(f"{part}_*.jsonl")
    [line] = read_quarantine(qfile)
    assert line["line"] is None and line["reason"].startswith("landing file changed after arrival")
    assert line["raw"]["expected_sha256"] == d.sha256 != line["raw"]["actual_sha256"]
    recorded = engagement_checks.run_domain_checks(after, run_id="r1")
    assert {r.check_id: r.status for r in recorded}[f"{PIPELINE}.landing_integrity"] == "fail"
    opened = [a for a in alerts.list_alerts(open_only=True) if a.check_id == f"{PIPELINE}.landing_integrity"]
    assert opened and opened[0].severity == "critical"


def test_a_delivery_without_a_contract_column_is_left_out_naming_the_column(duckdb_engine, clean, tmp_path):
    root = copy_of(clean, tmp_path)
    rows = pq.read_table(landing.source_dir("events", root) / first_delivery(root, "events", DAY).file)
    d = landing.write_delivery("events", DAY, rows.drop_columns(["context"]), arrived_at=ARRIVED, root=root)
    api = first_delivery(root, "api_logs", "2026-10-29")
    api_path = landing.source_dir("api_logs", root) / api.file
    t = pq.read_table(api_path)
    pq.write_table(
        t.set_column(t.schema.get_field_index("account_id"), "account_id", t["api_key_id"]), api_path
    )

    junk = landing.source_dir("events", root) / f"dt={DAY}" / "part-00009.parquet"
    junk.write_bytes(b"not parquet at all")  # delivered broken: its manifest line records these bytes
    line = {"source": "events", "partition": DAY, "file": f"dt={DAY}/part-00009.parquet", "rows": 3}
    line |= {"sha256": landing.file_sha256(junk), "arrived_at": ARRIVED.isoformat()}
    with open(landing.source_dir("events", root) / landing.MANIFEST, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")

    result = run(duckdb_engine, root)
    by_file = {r.delivery.file: r for r in result.landing.rejected}
    path = landing.source_dir("events", root) / d.file
    assert by_file[line["file"]].kind == "unreadable"
    assert by_file[line["file"]].reason.startswith(f"not readable Parquet: {junk}")
    hourly, _ = stream_hourly(result.window.as_of, root=root)  # the stream monitor skips it, no crash
    assert hourly["received"].sum() > 0
    assert by_file[d.file].reason == f"column context missing in {path}"
    assert by_file[d.file].row.field == "context"
    assert by_file[api.file].kind == "changed" and by_file[api.file].delivery.source == "api_logs"
    check = evaluate(result, "landing_integrity")
    assert check.status == "fail" and f"column context missing in {path}" in check.summary
    assert f"landing file changed after arrival: {api_path}" in check.summary
    day = intake_of(result, DAY)
    assert day["received"] == day["accepted"] + day["quarantined"]


def test_api_rows_without_an_id_account_or_time_are_quarantined_not_counted(duckdb_engine, clean, tmp_path):
    from helpers.engagement.store import api_quarantine_records

    root = copy_of(clean, tmp_path)
    before = run(duckdb_engine, root)
    part = "2026-10-29"
    src = pq.read_table(landing.source_dir("api_logs", root) / first_delivery(root, "api_logs", part).file)
    rows = src.to_pylist()[:3]
    rows[0].update(request_id="req-new-ok")  # a new, complete request: counted
    rows[1].update(request_id=None)
    rows[2].update(request_id="req-no-account", account_id=None)
    d = landing.write_delivery(
        "api_logs", part, pa.Table.from_pylist(rows, schema=src.schema), arrived_at=ARRIVED, root=root
    )

    after = run(duckdb_engine, root)
    q = after.api_quarantined
    assert sorted(zip(q["field"], q["delivery_row"], strict=True)) == [("account_id", 3), ("request_id", 2)]
    assert set(q["delivery_file"]) == {d.file}
    assert after.metrics["api_requests"].sum() == before.metrics["api_requests"].sum() + 1
    [rec] = [r for r in api_quarantine_records(q) if r.field == "account_id"]
    assert (rec.file, rec.line, rec.reason) == (d.file, 3, "missing account_id")
    check = evaluate(after, "landing_integrity")
    assert (check.status, check.severity) == ("fail", "warning")
    assert "missing account_id: 1" in check.summary and d.file in check.summary

"""The engagement pipeline against the demo company: exact figures on both engines, and each fault.

Figures are checked against an independent recomputation in plain pandas over the landing files
(:func:`recompute`); every engagement fault is injected into one landing zone on its own date,
its check must fire with the evidence of ``_faults.json``, and after the documented fix
(backfill, replay, contract version) the figures must equal the clean run's.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import demo_landing
from helpers import checks
from helpers.engagement import event_contract, spans
from helpers.engagement.inputs import load
from helpers.engagement.marts import (
    ACCOUNTS_TABLE,
    BACKFILL_TABLE,
    DAILY_COLUMNS,
    DAILY_TABLE,
    INTAKE_TABLE,
    METRICS_TABLE,
    MONTHLY_TABLE,
)
from helpers.engagement.run import EngagementRun, backfill_command, backfill_requests, compute
from helpers.engagement.store import (
    pending_backfill_requests,
    perform_backfill_requests,
    record_backfill_requests,
    write,
)
from helpers.engagement.upstream import Upstream, UpstreamState, upstream_state
from helpers.engagement.window import PIPELINE, RunWindow, resolve_as_of, run_window
from helpers.storage import landing

pytestmark = pytest.mark.integration

DEMO = {"accounts": 200, "months": 3, "seed": 7, "end": "2026-10-31", "events": True}
FAULTS = (
    "data_skew_oom@2026-10-06",
    "duplicate_events@2026-10-09",
    "late_events@2026-10-13",
    "kafka_outage@2026-10-20",
    "schema_change@2026-10-24:days=2,broken=0.02",  # 2 % of the v2 messages miss a required field
)
V2_DECLARED = event_contract.BUILT_IN.with_version(event_contract.V2)  # as the schema_change fix declares it
FRAMES = (
    "daily",
    "metrics",
    "intake",
    "monthly",
    "accounts",
    "quarantined",
    "late",
    "duplicates",
    "top",
    "hourly",
)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> Path:
    return demo_landing(tmp_path_factory, **DEMO, faults=FAULTS)


def truth(root: Path, fault: str, source: str = "events") -> dict:
    return next(
        f
        for f in json.loads((root / "_faults.json").read_text())["faults"]
        if f["fault"] == fault and f["source"] == source
    )


def not_ready(up: Upstream, period: str) -> tuple[UpstreamState, pd.DataFrame]:
    return UpstreamState(up.pipeline, up.table, period, False, f"{up.pipeline} not run (test)"), pd.DataFrame(
        columns=["account_id", "value"]
    )


def run(eng, root: Path, day: str, as_of: str = "", contract=V2_DECLARED, reader=not_ready):
    window = run_window(day, as_of, 3, root=root)
    return compute(
        eng,
        load(eng, window, root=root, contract=contract),
        window,
        contract=contract,
        upstream_reader=reader,
    )


def evaluate(result: EngagementRun, name: str) -> checks.CheckResult:
    from helpers.engagement import checks as engagement_checks  # noqa: F401  (registers the checks)

    check = next(c for c in checks.registered(PIPELINE) if c.id == f"{PIPELINE}.{name}")
    ctx = checks.CheckContext(
        PIPELINE,
        result.window.run_date.isoformat(),
        result.window.as_of,
        None,
        {"engagement": result},
    )
    return checks.evaluate(check, ctx)


# ---------------------------------------------------------------- the independent recomputation


def recompute(
    root: Path, day: str, *, as_of: str = "", exclude: frozenset[str] = frozenset()
) -> dict[str, pd.DataFrame]:
    """Plain pandas over the landing files, written from the definitions, not from the pipeline."""
    run_date = dt.date.fromisoformat(day)
    as_of_ts = (
        pd.Timestamp(as_of)
        if as_of
        else pd.Timestamp(run_date + dt.timedelta(days=1)).tz_localize("UTC") + pd.Timedelta(hours=4)
    )
    arrived = [d for d in landing.deliveries("events", root=root) if pd.Timestamp(d.arrived_at) <= as_of_ts]
    horizon = max(dt.date.fromisoformat(d.partition) for d in arrived)
    days = [run_date - dt.timedelta(days=k) for k in (2, 1, 0)]
    written = [d for d in days if d <= horizon]
    month_start = run_date.replace(day=1)
    first = min(days[0] - dt.timedelta(days=29), days[0].replace(day=1))
    ev = landing.read_source(
        "events", as_of=as_of_ts.to_pydatetime(), start=first - dt.timedelta(days=1), root=root
    )
    v1, v2 = ev[ev["_raw_json"].isna()], ev[ev["_raw_json"].notna()]
    assert (v1["schema_version"] == "1").all() and (v2["schema_version"] == "2").all()
    ctx = v1["context"].map(json.loads)
    v1 = v1.assign(
        account_id=ctx.map(lambda c: c.get("groupId")),
        device=ctx.map(lambda c: c.get("device", {}).get("type")),
        session_id=v1["properties"].map(
            lambda p: json.loads(p).get("session_id") if isinstance(p, str) else None
        ),
        user_id=v1["userId"].fillna(v1["anonymousId"]),
    )
    raw = [json.loads(t) for t in v2["_raw_json"]]  # the v2 format as V2_FORMAT documents it
    v2 = v2.assign(
        messageId=[r.get("message_id") for r in raw],
        account_id=[r.get("account", {}).get("id") for r in raw],
        device=[r.get("context", {}).get("device", {}).get("type") for r in raw],
        session_id=[r.get("properties", {}).get("session_id") for r in raw],
        user_id=[r.get("user_id") or r.get("anonymous_id") for r in raw],
        timestamp=pd.to_datetime([r.get("timestamp") for r in raw], unit="ms", utc=True),
        ok=[
            all(r.get(k) for k in ("message_id", "type", "event_name", "timestamp"))
            and bool(r.get("account"))
            for r in raw
        ],
    )
    v2 = v2[v2.pop("ok").astype(bool)]
    ev = pd.concat([v1, v2], ignore_index=True)
    ev["timestamp"] = pd.to_datetime(ev["timestamp"], utc=True)
    ev = ev[~ev["messageId"].isin(exclude)]
    ev["platform"] = ev["device"].map(lambda d: "mobile" if d in ("ios", "android") else "web")
    ev = ev.sort_values(["receivedAt", "messageId"]).drop_duplicates("messageId")
    ev["date"] = ev["timestamp"].dt.tz_convert("UTC").dt.date
    api = landing.read_source(
        "api_logs", as_of=as_of_ts.to_pydatetime(), start=min(days[0], days[0].replace(day=1)), root=root
    )
    api = api.drop_duplicates("request_id").assign(date=lambda f: f["timestamp"].dt.tz_convert("UTC").dt.date)

    def per_account(frame: pd.DataFrame) -> pd.DataFrame:
        out = {"active_users": frame.groupby("account_id")["user_id"].nunique(), "events": frame.groupby("account_id").size(),
               "sessions": frame.groupby("account_id")["session_id"].nunique()}  # fmt: skip
        for p in ("web", "mobile"):
            f = frame[frame["platform"] == p]
            out[f"{p}_users"] = f.groupby("account_id")["user_id"].nunique()
            out[f"{p}_events"] = f.groupby("account_id").size()
            out[f"{p}_sessions"] = f.groupby("account_id")["session_id"].nunique()
        return pd.DataFrame(out)

    rows = []
    for d in written:
        a = api[api["date"] == d]
        apis = pd.DataFrame(
            {
                "api_requests": a.groupby("account_id").size(),
                "api_keys": a.groupby("account_id")["api_key_id"].nunique(),
            }
        )
        both = per_account(ev[ev["date"] == d]).join(apis, how="outer").fillna(0).astype("int64")
        rows.append(both.reset_index().rename(columns={"index": "account_id"}).assign(date=d))
    daily = (
        pd.concat(rows, ignore_index=True)[list(DAILY_COLUMNS)]
        .sort_values(["date", "account_id"])
        .reset_index(drop=True)
    )

    def users(lo: dt.date, hi: dt.date) -> pd.DataFrame:
        return ev[(ev["date"] >= lo) & (ev["date"] <= hi)]

    metrics = []
    for d in written:
        month30 = users(d - dt.timedelta(days=29), d)
        dau = [users(x, x)["user_id"].nunique() for x in (d - dt.timedelta(days=k) for k in range(30))]
        day = daily[daily["date"] == d]
        mau = month30["user_id"].nunique()
        metrics.append(
            {"date": d, "dau": dau[0], "wau": users(d - dt.timedelta(days=6), d)["user_id"].nunique(), "mau": mau,
             "stickiness": round(sum(dau) / 30 / mau, 4), "daily_active_accounts": users(d, d)["account_id"].nunique(),
             "monthly_active_accounts": month30["account_id"].nunique(), "events": int(day["events"].sum()),
             "sessions": int(day["sessions"].sum()), "web_users": int(day["web_users"].sum()),
             "mobile_users": int(day["mobile_users"].sum()), "api_requests": int(day["api_requests"].sum())}
        )  # fmt: skip
    through = min(horizon, (month_start + pd.offsets.MonthEnd(0)).date())
    m = users(month_start, through)
    ma = api[(api["date"] >= month_start) & (api["date"] <= through)]
    acc = pd.DataFrame(
        {"active_users": m.groupby("account_id")["user_id"].nunique(), "active_days": m.groupby("account_id")["date"].nunique(),
         "events": m.groupby("account_id").size(), "sessions": m.groupby("account_id")["session_id"].nunique(),
         "api_requests": ma.groupby("account_id").size()}
    ).fillna(0).astype("int64")  # fmt: skip
    n_days = (through - month_start).days + 1
    dau_month = [
        users(x, x)["user_id"].nunique() for x in (month_start + dt.timedelta(days=k) for k in range(n_days))
    ]
    monthly = {
        "period": month_start.strftime("%Y-%m"), "through_date": through, "days": n_days,
        "dau_avg": round(sum(dau_month) / n_days, 2), "mau": m["user_id"].nunique(),
        "stickiness": round(sum(dau_month) / n_days / m["user_id"].nunique(), 4),
        "active_accounts": m["account_id"].nunique(), "events": len(m), "sessions": int(acc["sessions"].sum()),
        "api_requests": len(ma),
    }  # fmt: skip
    exact = {  # what the marts store: ratios and averages at full precision
        "stickiness": [sum(users(x, x)["user_id"].nunique() for x in (d - dt.timedelta(days=k) for k in range(30)))
                       / 30 / users(d - dt.timedelta(days=29), d)["user_id"].nunique() for d in written],
        "monthly": {"dau_avg": sum(dau_month) / n_days, "stickiness": sum(dau_month) / n_days / monthly["mau"]},
    }  # fmt: skip
    return {
        "daily": daily,
        "metrics": pd.DataFrame(metrics),
        "monthly": monthly,
        "accounts": acc.sort_index(),
        "exact": exact,
    }


SHOWN = {"stickiness": 4, "dau_avg": 2}  # decimals the expectations are written at (the published precision)


def shown(column: str, value: object) -> object:
    """A stored value as the expectations state it: rounded to :data:`SHOWN` places."""
    return round(float(value), SHOWN[column]) if column in SHOWN else value


def assert_matches(result: EngagementRun, expected: dict) -> None:
    pd.testing.assert_frame_equal(result.daily.reset_index(drop=True), expected["daily"], check_dtype=False)
    metrics = result.metrics.reset_index(drop=True)
    pd.testing.assert_frame_equal(
        metrics.assign(stickiness=metrics["stickiness"].map(lambda v: shown("stickiness", v))),
        expected["metrics"],
        check_dtype=False,
    )
    row = result.monthly.iloc[0]
    assert {k: shown(k, row[k]) for k in expected["monthly"]} == expected["monthly"]
    # stored at full precision, not rounded
    assert list(metrics["stickiness"]) == pytest.approx(expected["exact"]["stickiness"], rel=1e-12, abs=0)
    assert {k: row[k] for k in SHOWN} == pytest.approx(expected["exact"]["monthly"], rel=1e-12, abs=0)
    acc = result.accounts.set_index("account_id")[list(expected["accounts"].columns)].sort_index()
    pd.testing.assert_frame_equal(acc, expected["accounts"], check_dtype=False, check_names=False)


def assert_same_figures(a: EngagementRun, b: EngagementRun, frames=("daily", "metrics")) -> None:
    for name in frames:
        pd.testing.assert_frame_equal(
            getattr(a, name).reset_index(drop=True),
            getattr(b, name).reset_index(drop=True),
            check_dtype=False,
            obj=name,
        )


# ---------------------------------------------------------------- clean data, both engines


def test_clean_figures_match_a_pandas_recomputation_on_both_engines(engines, clean):
    expected = recompute(clean, "2026-10-16")
    results = [run(eng, clean, "2026-10-16") for eng in engines]
    for result in results:
        assert_matches(result, expected)
        assert result.intake["quarantined"].sum() == 0 and result.intake["duplicates"].sum() == 0
        assert result.headline()["engine"] == result.engine
    duck, spark = results
    for name in FRAMES:  # every frame the run produced, not only the published ones
        pd.testing.assert_frame_equal(
            getattr(duck, name).reset_index(drop=True),
            getattr(spark, name).reset_index(drop=True),
            check_dtype=False,
            obj=name,
        )
    head = duck.headline()
    assert {k: v for k, v in head.items() if k != "engine"} == {
        k: v for k, v in spark.headline().items() if k != "engine"
    }
    assert head["status"] == "pending"  # the upstreams of the test reader never finish
    assert (head["dau"], head["received"]) == (int(expected["metrics"]["dau"].iloc[-1]), head["accepted"])


def test_a_faulty_window_is_identical_on_both_engines(engines, faulty):
    """v2 rows, quarantined rows and late rows go through the same code on both engines."""
    duck, spark = (run(eng, faulty, "2026-10-26") for eng in engines)
    assert len(duck.quarantined) == 3
    for name in FRAMES:
        pd.testing.assert_frame_equal(
            getattr(duck, name).reset_index(drop=True),
            getattr(spark, name).reset_index(drop=True),
            check_dtype=False,
            obj=name,
        )


# ---------------------------------------------------------------- one test per fault (default engine)


def test_duplicate_events_are_counted_once(duckdb_engine, clean, faulty):
    gt = truth(faulty, "duplicate_events")
    result = run(duckdb_engine, faulty, "2026-10-10")
    outcome = evaluate(result, "duplicate_events")
    assert outcome.status == "fail"
    day = outcome.evidence["by_event_day"][gt["date"]]
    assert (day["messages"], day["extra_rows"], day["by_copies"]) == (
        gt["details"]["messages"],
        gt["details"]["extra_rows"],
        gt["details"]["by_copies"],
    )
    assert sorted(outcome.evidence["message_ids"]) == sorted(gt["rows"])
    assert_same_figures(result, run(duckdb_engine, clean, "2026-10-10"))  # dedup is the fix: nothing to do
    assert result.intake["duplicates"].sum() == gt["details"]["extra_rows"]


def test_data_skew_reports_the_hot_account(duckdb_engine, clean, faulty):
    gt = truth(faulty, "data_skew_oom")
    result = run(duckdb_engine, faulty, "2026-10-07")
    outcome = evaluate(result, "data_skew_oom")
    assert outcome.status == "fail" and outcome.evidence["account"] == gt["details"]["account"]
    assert outcome.evidence["share"] == gt["details"]["by_day"][gt["date"]]["share"]
    assert result.top_account_share == pytest.approx(gt["details"]["by_day"][gt["date"]]["share"], abs=1e-4)
    # the automation's events are real traffic: counted, on the right account, nothing else moves
    base = run(duckdb_engine, clean, "2026-10-07").daily.set_index(["date", "account_id"])
    skew = result.daily.set_index(["date", "account_id"])
    hot = (dt.date.fromisoformat(gt["date"]), gt["details"]["account"])
    assert skew.loc[hot, "events"] - base.loc[hot, "events"] == gt["details"]["extra_events"]
    pd.testing.assert_frame_equal(skew.drop(index=hot), base.drop(index=hot))
    assert evaluate(run(duckdb_engine, clean, "2026-10-07"), "data_skew_oom").status == "pass"


def test_late_events_restated_in_the_window_and_backfilled_beyond_it(duckdb_engine, clean, faulty):
    gt = truth(faulty, "late_events")
    runs = {d: run(duckdb_engine, faulty, d) for d in ("2026-10-15", "2026-10-16")}
    seen = set()
    for day, result in runs.items():
        outcome = evaluate(result, "late_events")
        # the 15th restates the 13th with its 1-2 day delays (5 events); the 16th gets 7 past the window
        assert outcome.status == "fail", day
        seen |= set(outcome.evidence["late_in_window_ids"]) | set(outcome.evidence["beyond_window_ids"])
    assert seen == set(gt["rows"])  # every delayed message was noticed, nothing else
    last = evaluate(runs["2026-10-16"], "late_events").evidence
    assert (
        last["late_beyond_window"] == gt["details"]["by_delay_days"]["3"]
    )  # 3 days late: past the 3-day window
    assert runs["2026-10-16"].headline()["late_beyond_window"] == last["late_beyond_window"]
    (request,) = runs["2026-10-16"].backfill
    assert (request["from_date"], request["to_date"]) == (dt.date(2026, 10, 13), dt.date(2026, 10, 13))
    assert request["command"].startswith(
        "workbook backfill engagement_aggregate --from 2026-10-13 --to 2026-10-13 --force --downstream"
    )
    # within the window the late events were restated: day 13 in the run of the 15th has the 1-2 day delays
    # the fix, a backfill of the 13th run later, gives the clean run's figures
    later = "2026-10-17T04:00:00+00:00"
    assert_same_figures(
        run(duckdb_engine, faulty, "2026-10-13", later), run(duckdb_engine, clean, "2026-10-13", later)
    )


def test_kafka_outage_is_critical_and_a_replay_restores_the_figures(duckdb_engine, clean, faulty, tmp_path):
    gt = truth(faulty, "kafka_outage")
    result = run(duckdb_engine, faulty, "2026-10-20")
    outcome = evaluate(result, "kafka_outage")
    assert (outcome.status, outcome.severity) == ("fail", "critical")
    assert (outcome.evidence["window_start"], outcome.evidence["window_end"]) == (
        gt["details"]["window_start"],
        gt["details"]["window_end"],
    )
    assert outcome.evidence["observed"] == 0
    # the documented fix: re-consume the window from the topic's retention (a new delivery), re-run
    root = tmp_path / "landing"
    shutil.copytree(faulty, root, symlinks=True)
    lost = landing.read_source("events", root=clean, start=gt["date"], end=gt["date"])
    lost = lost[lost["messageId"].isin(gt["rows"])]
    assert len(lost) == gt["details"]["lost_rows"]
    import pyarrow as pa

    from helpers.storage.contracts import EVENTS_SCHEMA

    table = pa.Table.from_pandas(lost.reset_index(drop=True), schema=EVENTS_SCHEMA, preserve_index=False)
    landing.write_delivery(
        "events", gt["date"], table, arrived_at=dt.datetime(2026, 10, 21, 2, tzinfo=dt.UTC), root=root
    )
    fixed = run(duckdb_engine, root, "2026-10-20")
    assert evaluate(fixed, "kafka_outage").status == "pass"
    assert_same_figures(fixed, run(duckdb_engine, clean, "2026-10-20"))


def test_schema_change_is_critical_until_the_version_is_declared(duckdb_engine, clean, faulty):
    gt = truth(faulty, "schema_change")
    v1_only = event_contract.EventContract(versions=(event_contract.V1, event_contract.V1_RAW))
    before = evaluate(run(duckdb_engine, faulty, "2026-10-26", contract=v1_only), "schema_change")
    assert (before.status, before.severity) == ("fail", "critical")
    assert before.evidence["by_reason"] == {"unknown schema_version '2'": gt["details"]["v2"]}
    # the fix: v2 declared in the contract (V2_DECLARED); only the broken records stay out
    result = run(duckdb_engine, faulty, "2026-10-26")
    after = evaluate(result, "schema_change")
    assert (after.status, after.severity) == ("fail", "warning")
    assert after.evidence["quarantined_ids"] == gt["details"]["unparseable_ids"]
    assert after.evidence["by_version"]["2"] == gt["details"]["v2"]
    counts = result.run_intake
    assert counts.received == counts.accepted + counts.quarantined
    # the window's days equal the clean run's but for the records that cannot be used
    clean_days = recompute(clean, "2026-10-26", exclude=frozenset(gt["details"]["unparseable_ids"]))["daily"]
    pd.testing.assert_frame_equal(result.daily.reset_index(drop=True), clean_days, check_dtype=False)
    assert_matches(result, recompute(faulty, "2026-10-26"))  # every figure, the other faults' days included


# ---------------------------------------------------------------- upstreams, writing


def test_upstream_missing_marks_pending_then_joins_revenue_and_growth(home, duckdb_engine, clean):
    from helpers.runs import records as runs
    from helpers.storage import warehouse

    result = run(duckdb_engine, clean, "2026-10-16", reader=upstream_state)
    outcome = evaluate(result, "upstream_missing")
    assert (outcome.status, outcome.severity) == ("fail", "warning")
    assert result.status == "pending" and (result.accounts["status"] == "pending").all()
    assert result.accounts["revenue_usd_cents"].isna().all()  # not published: NULL with status pending
    assert (
        result.monthly.iloc[0]["revenue_status"] == "pending"
        and result.monthly.iloc[0]["revenue_usd_cents"] == 0
    )
    # Profit and Growth finish the month: the join publishes final figures, no NULLs anywhere
    now = dt.datetime(2026, 10, 17, 3, tzinfo=dt.UTC)
    accounts = sorted(result.accounts["account_id"])
    profit = pd.DataFrame(
        {"period": "2026-10", "account_id": accounts[:50] + ["A9999999"], "revenue_usd_cents": 1000}
    )
    growth = pd.DataFrame({"period": "2026-10", "account_id": accounts[:60], "movement": "retained"})
    for pipeline, table, frame in (
        ("profit_unit", "profit_unit_monthly", profit),
        ("growth_aggregate", "growth_accounts_monthly", growth),
    ):
        runs.record_outcome(pipeline, "2026-10", status="succeeded", now=now, reason="test")
        warehouse.replace_partition(table, frame, {"period": "2026-10"}, written_at=now)
    final = run(duckdb_engine, clean, "2026-10-16", reader=upstream_state)
    assert evaluate(final, "upstream_missing").status == "pass" and final.status == "ok"
    acc = final.accounts
    assert (acc["status"] == "final").all() and not acc.drop(columns="pending_reason").isna().any().any()
    assert (
        int(acc["revenue_usd_cents"].sum()) == 51_000 and final.monthly.iloc[0]["revenue_status"] == "final"
    )
    assert acc.set_index("account_id").loc["A9999999", "events"] == 0  # revenue without usage is kept
    assert (acc.set_index("account_id").loc[accounts[70:], "growth_status"] == "none").all()


def test_writing_is_atomic_per_partition_and_idempotent(home, duckdb_engine, faulty):
    from helpers.storage import warehouse
    from helpers.storage.quarantine import read_quarantine

    result = run(duckdb_engine, faulty, "2026-10-26")
    first = write(result, run_id="r1")
    tables = {
        t: warehouse.read_table(t)
        for t in (
            DAILY_TABLE,
            METRICS_TABLE,
            INTAKE_TABLE,
            MONTHLY_TABLE,
            ACCOUNTS_TABLE,
        )
    }
    assert write(result, run_id="r2") == {**first, BACKFILL_TABLE: 0}
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(warehouse.read_table(name), frame, obj=name)
    assert len(tables[DAILY_TABLE]) == len(result.daily)
    lines = read_quarantine(home / "data" / "quarantine" / "events" / "engagement_contract.jsonl")
    assert sorted(q["reason"] for q in lines) == sorted(result.quarantined["reason"])  # once, not twice


# ---------------------------------------------------------------- pure parts


@pytest.mark.unit
def test_window_writes_only_delivered_days_and_touches_both_months():
    as_of = dt.datetime(2026, 11, 2, 0, tzinfo=dt.UTC)
    w = RunWindow(dt.date(2026, 11, 2), as_of, 3, horizon=dt.date(2026, 11, 1))
    assert w.days == [dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
    assert w.written_days == w.days[:2]  # the 2nd's events have not been delivered: the next run writes it
    assert [(m.period, m.through, m.complete) for m in w.months] == [
        ("2026-10", dt.date(2026, 10, 31), True),
        ("2026-11", dt.date(2026, 11, 1), False),
    ]
    assert w.rollup_start == dt.date(2026, 10, 1) and w.beyond_window(dt.date(2026, 11, 2)) == dt.date(
        2026, 10, 31
    )
    assert resolve_as_of("2026-11-02", "") == dt.datetime(2026, 11, 3, 4, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="window_days"):
        RunWindow(dt.date(2026, 11, 2), as_of, 0, None)


@pytest.mark.unit
def test_stream_outcome_needs_a_real_drop_not_a_quiet_night():
    from helpers.engagement.checks import stream_outcome

    day = dt.date(2026, 10, 20)
    profile = [0, 0, 0, 1, 1, 2, 4, 8, 12, 15, 15, 14, 12, 10, 8, 6, 4, 3, 2, 1, 1, 0, 0, 0]
    rows = [(day - dt.timedelta(days=7 * k), h, n) for k in range(1, 5) for h, n in enumerate(profile)]
    base = pd.DataFrame(rows, columns=["date", "hour", "received"])
    as_of = dt.datetime(2026, 10, 21, 4, tzinfo=dt.UTC)
    quiet_night = pd.concat(
        [base, pd.DataFrame([(day, h, n) for h, n in enumerate(profile) if n > 2], columns=base.columns)]
    )
    assert stream_outcome(quiet_night, day, as_of=as_of).passed
    outage = [(day, h, 0 if 9 <= h < 13 else n) for h, n in enumerate(profile)]
    out = stream_outcome(pd.concat([base, pd.DataFrame(outage, columns=base.columns)]), day, as_of=as_of)
    assert (out.passed, out.severity, out.evidence["window_start"]) == (
        False,
        "critical",
        "2026-10-20T09:00:00+00:00",
    )
    arrivals = pd.DataFrame({"partition": [day - dt.timedelta(days=k) for k in range(1, 8)]})
    arrivals["arrived_at"] = pd.to_datetime(arrivals["partition"]) + pd.Timedelta(hours=24, minutes=20)
    early = stream_outcome(base, day, as_of=dt.datetime(2026, 10, 21, 1, tzinfo=dt.UTC), arrivals=arrivals)
    assert early.passed  # not delivered yet, and not due yet
    overdue = stream_outcome(base, day, as_of=as_of, arrivals=arrivals)
    assert (overdue.passed, overdue.severity) == (False, "critical")  # 2 h past the usual 00:20 arrival


@pytest.mark.unit
def test_contract_versions_are_data():
    assert event_contract.BUILT_IN.known_versions == ("1",)  # v2 is in force once declared (as data)
    with pytest.raises(ValueError, match="declared twice"):
        V2_DECLARED.with_version(event_contract.V2)
    v3 = event_contract.ContractVersion(
        "3", "raw_json", {**event_contract.V2.fields}, description="v2 renamed, say"
    )
    assert V2_DECLARED.with_version(v3).known_versions == ("1", "2", "3")
    with pytest.raises(ValueError, match="account_id must be mapped"):
        event_contract.ContractVersion(
            "4", "raw_json", {k: v for k, v in event_contract.V2.fields.items() if k != "account_id"}
        )
    assert event_contract.reason_field("missing account") == "account"
    assert event_contract.reason_field("unknown schema_version '3'") is None
    with pytest.raises(ValueError, match="received"):
        event_contract.IntakeCounts(received=3, accepted=1, quarantined=1)


def test_the_stream_monitor_pages_within_the_hour(home, faulty, tmp_path):
    """With the consumer landing hour by hour, the monitor sees the outage the same afternoon."""
    from helpers.engagement import checks as engagement_checks
    from helpers.oncall import alerts

    gt = truth(faulty, "kafka_outage")
    root = tmp_path / "landing"
    day = dt.date.fromisoformat(gt["date"])
    for d in landing.deliveries("events", root=faulty):
        part = dt.date.fromisoformat(d.partition)
        if day - dt.timedelta(days=29) <= part < day:
            table = pd.read_parquet(landing.source_dir("events", faulty) / d.file)
            landing.write_delivery("events", part, table, arrived_at=d.arrived, root=root, durable=False)
        elif part == day:  # today's rows as the consumer lands them: each hour a minute after it ends
            table = pd.read_parquet(landing.source_dir("events", faulty) / d.file)
            for hour, rows in table.groupby(table["receivedAt"].dt.hour):
                at = dt.datetime.combine(day, dt.time(hour), dt.UTC) + dt.timedelta(hours=1, minutes=1)
                landing.write_delivery("events", part, rows, arrived_at=at, root=root, durable=False)
    as_of = dt.datetime.combine(day, dt.time(16, 5), dt.UTC)
    hourly, _arrivals = engagement_checks.stream_hourly(as_of, root=root)
    results = engagement_checks.evaluate_stream(as_of, root=root)
    today = next(r for r in results if r.partition == gt["date"])
    assert (today.status, today.severity) == ("fail", "critical")
    assert (today.evidence["window_start"], today.evidence["window_end"]) == (
        gt["details"]["window_start"],
        gt["details"]["window_end"],
    )
    assert hourly[hourly["date"] == day]["hour"].max() == 15  # 15:00-16:00 landed, not judged before 16:30
    opened = [
        a for a in alerts.list_alerts(open_only=True) if a.check_id == "engagement_aggregate.kafka_outage"
    ]
    assert [a.partition for a in opened] == [gt["date"]]


def test_recorded_backfill_requests_are_merged_performed_and_marked(home, monkeypatch):
    from helpers.runs import orchestrate

    at = dt.datetime(2026, 10, 17, 4, tzinfo=dt.UTC)
    reqs = [
        {"pipeline": PIPELINE, "from_date": dt.date(2026, 10, 11), "to_date": dt.date(2026, 10, 12),
         "events": 3, "reason": "r", "command": backfill_command(dt.date(2026, 10, 11), dt.date(2026, 10, 12), at)},
        {"pipeline": PIPELINE, "from_date": dt.date(2026, 10, 13), "to_date": dt.date(2026, 10, 13),
         "events": 7, "reason": "r", "command": "c"},
    ]  # fmt: skip
    assert record_backfill_requests(reqs, requested_at=at, run_id="r1") == 2
    assert record_backfill_requests(reqs, requested_at=at, run_id="r1") == 0  # idempotent
    calls = []

    def fake_backfill(pipeline, start, end, **kwargs):
        calls.append((pipeline, start, end, kwargs["force"], kwargs["downstream"]))
        return [orchestrate.Outcome(pipeline, str(start), "succeeded")]

    monkeypatch.setattr(orchestrate, "backfill", fake_backfill)
    perform_backfill_requests(clock=lambda: at)
    assert calls == [(PIPELINE, dt.date(2026, 10, 11), dt.date(2026, 10, 13), True, True)]
    assert pending_backfill_requests().empty


@pytest.mark.unit
def test_backfill_ranges_cover_the_late_days_and_their_rolling_figures_only():
    as_of = dt.datetime(2026, 10, 31, 4, tzinfo=dt.UTC)
    window = RunWindow(dt.date(2026, 10, 30), as_of, 3, horizon=dt.date(2026, 10, 30))
    late = pd.DataFrame(
        {
            "event_date": [dt.date(2026, 4, 1), dt.date(2026, 10, 20), dt.date(2026, 10, 22)],
            "received_date": [dt.date(2026, 10, 30)] * 3,
            "beyond_window": [True, True, True],
        }
    )
    result = EngagementRun.__new__(EngagementRun)
    result.window, result.late = window, late
    ranges = [(r["from_date"], r["to_date"], r["events"]) for r in backfill_requests(result)]
    assert ranges == [
        (dt.date(2026, 4, 1), dt.date(2026, 4, 30), 1),  # an ancient replay: its 30 days, not 7 months
        (dt.date(2026, 10, 20), dt.date(2026, 10, 27), 2),  # up to the day before the window
    ]


def test_deliveries_left_unread_change_no_figure_and_are_still_counted(
    duckdb_engine, faulty, tmp_path, monkeypatch
):
    """A run leaves unread the events deliveries whose rows are all of later days (their spans,
    measured before the read, or by the run that read them): every figure, quarantine and count
    stays the same."""
    from helpers.engagement import inputs as engagement_inputs

    root = tmp_path / "landing"
    shutil.copytree(faulty, root)
    cache = tmp_path / "cache" / spans.SPANS_DIR
    as_of = "2026-11-02T06:00:00Z"
    # clean days (later months' deliveries left unread), late events beyond the window, v2 events
    for day, unread in (
        ("2026-08-20", True),
        ("2026-09-20", True),
        ("2026-10-13", False),
        ("2026-10-24", False),
    ):
        shutil.rmtree(cache, ignore_errors=True)
        window = run_window(day, as_of, 3, root=root)
        with monkeypatch.context() as m:  # no span measured before the read: every delivery is read
            m.setattr(engagement_inputs, "measure_new", lambda *args, **kwargs: 0)
            every = load(duckdb_engine, window, root=root, contract=V2_DECLARED)
        assert every.events_unread == 0 and every.unmeasured, "no span yet: every delivery is read"
        base = compute(duckdb_engine, every, window, contract=V2_DECLARED, upstream_reader=not_ready)
        assert any(cache.glob("*.json")), "the spans of what it read are kept"
        fewer = load(duckdb_engine, window, root=root, contract=V2_DECLARED)
        assert (fewer.events_unread > 0) == unread and not fewer.unmeasured
        assert len(fewer.event_files) + fewer.events_unread == len(every.event_files)
        again = compute(duckdb_engine, fewer, window, contract=V2_DECLARED, upstream_reader=not_ready)
        for name in (*FRAMES, "api_quarantined"):
            pd.testing.assert_frame_equal(getattr(again, name), getattr(base, name), obj=f"{day} {name}")
        assert (again.landing.deliveries, again.landing.received) == (
            base.landing.deliveries,
            base.landing.received,
        )
        assert again.backfill == base.backfill
        shutil.rmtree(cache)
        first = load(duckdb_engine, window, root=root, contract=V2_DECLARED)
        assert not first.unmeasured and first.event_files == fewer.event_files, (
            "no span yet: measured before the read, the same deliveries are left unread"
        )


def test_inputs_left_unread_under_one_contract_are_not_computed_under_another(duckdb_engine, clean, tmp_path):
    root = tmp_path / "landing"
    shutil.copytree(clean, root)
    window = run_window("2026-09-10", "2026-11-02T06:00:00Z", 3, root=root)
    compute(duckdb_engine, load(duckdb_engine, window, root=root), window, upstream_reader=not_ready)
    inputs = load(duckdb_engine, window, root=root)
    assert inputs.events_unread > 0
    with pytest.raises(ValueError, match="another event contract"):
        compute(duckdb_engine, inputs, window, contract=V2_DECLARED, upstream_reader=not_ready)

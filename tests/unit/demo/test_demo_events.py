"""The demo company's product events: determinism, shape, and the five engagement faults.

Each fault test generates the same small company (40 accounts, one month) with one fault and
compares it with the clean run of the same seed: the rows that differ are exactly the rows the
ground truth names, and the clean run has none of the fault's symptoms.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.demo import events as ev
from helpers.demo import faults_engagement
from helpers.demo.faults import registry
from helpers.demo.generate import generate_events
from helpers.demo.spec import DemoSpec, FaultSpec
from helpers.storage import landing

pytestmark = pytest.mark.unit

END = dt.date(2026, 10, 31)
SPEC = DemoSpec(accounts=40, months=1, seed=11, end=END, events_per_user_day=4.0)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HOUR = pd.Timedelta(hours=1)


def small_periods(accounts: int = 40, seed: int = 5) -> pd.DataFrame:
    """Usage periods of a small company over October 2026: trials converting, late starters."""
    rng = np.random.default_rng(seed)
    start = dt.date(2026, 10, 1)
    rows = []
    for i in range(accounts):
        aid = f"acct_{i:04d}"
        begin = start + dt.timedelta(days=int(rng.integers(0, 10))) if i % 4 == 0 else start
        seats = int(rng.integers(15, 45))
        tier = "enterprise" if i % 10 == 3 else ("starter", "pro")[i % 2]
        if i % 5 == 0:
            trial_end = begin + dt.timedelta(days=13)
            rows.append((aid, begin, trial_end, min(seats, 5), tier, "trial"))
            rows.append((aid, trial_end + dt.timedelta(days=1), END, seats, tier, "customer"))
        elif i % 7 == 0:
            rows.append((aid, begin, dt.date(2026, 10, 20), seats, tier, "customer"))
            rows.append((aid, dt.date(2026, 10, 21), END, seats, tier, "grace"))
        else:
            rows.append((aid, begin, END, seats, tier, "customer"))
    return pd.DataFrame(rows, columns=["account_id", "start", "end", "seats", "tier", "state"])


PERIODS = small_periods()


class Run:
    """One generated landing zone, read back lazily."""

    def __init__(self, root: Path, counts: dict[str, int], records: list) -> None:
        self.root, self.counts, self.records = root, counts, records
        self._frames: dict[str, pd.DataFrame] = {}

    def read(self, source: str) -> pd.DataFrame:
        if source not in self._frames:
            self._frames[source] = landing.read_source(source, root=self.root, with_arrival=True)
        return self._frames[source]

    def record(self, fault: str, source: str = "events"):
        (rec,) = [r for r in self.records if r.fault == fault and r.source == source]
        return rec

    def file_hashes(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


def generate(root: Path, spec: DemoSpec = SPEC, periods: pd.DataFrame = PERIODS) -> Run:
    counts, records = generate_events(periods, spec, root=root)
    return Run(root, counts, records)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Run:
    return generate(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    cache: dict[str, Run] = {}

    def run(text: str) -> Run:
        if text not in cache:
            spec = DemoSpec(**{**SPEC.__dict__, "faults": (FaultSpec.parse(text),)})
            cache[text] = generate(tmp_path_factory.mktemp("faulty"), spec)
        return cache[text]

    return run


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("messageId", verify_integrity=True).sort_index()


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_bytes(clean, tmp_path):
    again = generate(tmp_path / "again")
    assert again.file_hashes() == clean.file_hashes()
    assert again.counts == clean.counts
    other = generate(tmp_path / "other", DemoSpec(**{**SPEC.__dict__, "seed": 12}))
    assert other.read("events")["messageId"].iloc[0] != clean.read("events")["messageId"].iloc[0]


def test_a_day_regenerates_alone(clean):
    day = dt.date(2026, 10, 14)
    alone = ev.generate_day(PERIODS, SPEC, day)
    events = clean.read("events")
    of_day = events[events["timestamp"].dt.date == day]
    assert sorted(alone["events"].column("messageId").to_pylist()) == sorted(of_day["messageId"])
    web = clean.read("web_analytics")
    assert (
        alone["web_analytics"]
        .to_pandas()
        .equals(
            web[web["_partition"] == day.isoformat()]
            .drop(columns=["_partition", "_arrived_at"])
            .reset_index(drop=True)
        )
    )


# ---------------------------------------------------------------------------------------------
# shape of the clean data


def test_volumes_and_files(clean):
    assert all(clean.counts[s] > 1000 for s in ev.SOURCES)
    for source in ev.SOURCES:
        arrivals = landing.arrivals(source, root=clean.root)
        assert set(arrivals["partition"]) >= {f"2026-10-{d:02d}" for d in range(1, 32)}
        assert arrivals["rows"].sum() == clean.counts[source]
        # each day's delivery arrives shortly after the day ends
        lag = arrivals["arrived_at"] - pd.to_datetime(arrivals["partition"]).dt.tz_localize("UTC")
        assert lag.between(pd.Timedelta(hours=24), pd.Timedelta(hours=28)).all()


def test_segment_fields_and_types(clean):
    events = clean.read("events")
    assert list(events.columns[:-2]) == ev.EVENTS_SCHEMA.names
    assert events["messageId"].is_unique and events["messageId"].str.match(UUID).all()
    assert events["anonymousId"].str.match(UUID).all()
    assert set(events["type"]) == {"track", "page", "identify"}
    assert (events["schema_version"] == "1").all() and events["_raw_json"].isna().all()
    for col in ("timestamp", "sentAt", "receivedAt"):
        assert str(events[col].dtype) == "datetime64[us, UTC]"
    track, page, ident = (events["type"] == t for t in ("track", "page", "identify"))
    assert events["event"].notna().eq(track).all() and events["name"].notna().eq(page).all()
    assert events["traits"].notna().eq(ident).all() and events["properties"].isna().eq(ident).all()
    assert set(events.loc[track, "event"]) <= set(ev.TRACK_EVENTS)
    # JSON text with sorted keys, as the Kafka extract encodes it
    for col in ("context", "properties", "traits"):
        for text in events[col].dropna():
            assert json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False) == text
    context = events["context"].map(json.loads)
    group = context.map(lambda c: c["groupId"])
    assert (events["userId"].str.rsplit("-u", n=1).str[0] == group).all()
    device = context.map(lambda c: c["device"]["type"])
    assert set(device) == {"web", "ios", "android"}
    assert (context[device != "web"].map(lambda c: c["app"]["version"]).str.match(r"^3\.\d+\.\d$")).all()
    assert not context.map(lambda c: "ip" in c).any()
    assert ((device == "web") == (context.map(lambda c: c["library"]["name"]) == "analytics.js")).all()


def test_emails_are_pseudonymised(clean):
    events = clean.read("events")
    ident = events[events["type"] == "identify"]
    assert len(ident) > 50
    traits = ident["traits"].map(json.loads)
    expected = [
        ev.pseudonymise_email(ev.user_email(uid.rsplit("-u", 1)[0], int(uid.rsplit("-u", 1)[1])))
        for uid in ident["userId"]
    ]
    assert list(traits.map(lambda t: t["email_sha256"])) == expected
    assert ev.pseudonymise_email(" User0001@X.Example.com ") == ev.pseudonymise_email(
        "user0001@x.example.com"
    )
    for source in ev.SOURCES:
        frame = clean.read(source)
        text = frame.select_dtypes(include="object").astype(str)
        assert not text.apply(lambda c: c.str.contains("@", regex=False)).any().any(), source


def test_every_row_belongs_to_a_covering_period(clean):
    periods = PERIODS.assign(start=pd.to_datetime(PERIODS["start"]), end=pd.to_datetime(PERIODS["end"]))

    def covered(accounts: pd.Series, times: pd.Series) -> bool:
        rows = pd.DataFrame(
            {"account_id": accounts.to_numpy(), "day": times.dt.tz_localize(None).dt.normalize()}
        )
        rows = rows.drop_duplicates().reset_index(drop=True)
        merged = rows.merge(periods, on="account_id")
        ok = merged[(merged["start"] <= merged["day"]) & (merged["day"] <= merged["end"])]
        return len(ok.drop_duplicates(["account_id", "day"])) == len(rows)

    events = clean.read("events")
    assert covered(events["context"].map(lambda c: json.loads(c)["groupId"]), events["timestamp"])
    web, mobile, api = (clean.read(s) for s in ("web_analytics", "mobile_analytics", "api_logs"))
    assert covered(web["account_id"], web["timestamp"])
    assert covered(mobile["account_id"], mobile["started_at"])
    assert covered(api["account_id"], api["timestamp"])


def test_received_after_the_event_and_inside_the_sla(clean):
    events = clean.read("events")
    assert (events["sentAt"] >= events["timestamp"]).all() and (events["receivedAt"] > events["sentAt"]).all()
    lateness = events["receivedAt"] - events["timestamp"]
    assert lateness.max() < pd.Timedelta(hours=48)
    # partitioned by the received date; offline mobile devices make some events land a day later
    assert (events["_partition"] == events["receivedAt"].dt.strftime("%Y-%m-%d")).all()
    later = events["receivedAt"].dt.date != events["timestamp"].dt.date
    assert later.any()
    mobile_share_late = (
        lateness[events["context"].str.contains('"type": "ios"|"type": "android"')] > HOUR
    ).mean()
    assert 0.005 < mobile_share_late < 0.15
    mobile = clean.read("mobile_analytics")
    assert (mobile["_partition"] == mobile["synced_at"].dt.strftime("%Y-%m-%d")).all()
    assert (mobile["synced_at"] >= mobile["ended_at"]).all() and (
        mobile["ended_at"] >= mobile["started_at"]
    ).all()
    assert (mobile["synced_at"] - mobile["ended_at"]).max() < pd.Timedelta(hours=48)


def test_daily_actives_dip_at_weekends(clean):
    events = clean.read("events")
    day = events["timestamp"].dt.tz_localize(None).dt.normalize()
    dau = events.groupby(day)["userId"].nunique()
    seats = pd.Series(
        {
            d: PERIODS[(pd.to_datetime(PERIODS["start"]) <= d) & (pd.to_datetime(PERIODS["end"]) >= d)][
                "seats"
            ].sum()
            for d in dau.index
        }
    )
    share = dau / seats
    weekend = share.index.dayofweek >= 5
    assert 0.3 < share[~weekend].mean() < 0.65
    assert 0.08 < share[weekend].mean() < 0.3
    assert share[weekend].max() < share[~weekend].min()


def test_web_mobile_and_api_sources(clean):
    events = clean.read("events")
    props = events["properties"].dropna().map(json.loads)
    web_pages = events[(events["type"] == "page") & events["context"].str.contains('"type": "web"')]
    web = clean.read("web_analytics")
    assert len(web) == len(web_pages) and web["hit_id"].is_unique
    assert set(web["session_id"]) <= set(props.map(lambda p: p["session_id"]))
    assert set(web["referrer"]) <= set(ev.REFERRERS) | {"(internal)"}
    assert (web["duration_s"] >= 0).all()
    mobile = clean.read("mobile_analytics")
    assert mobile["session_id"].is_unique and set(mobile["platform"]) == {"ios", "android"}
    mobile_events = events[events["context"].str.contains('"type": "ios"|"type": "android"')]
    per_session = (
        mobile_events["properties"].dropna().map(lambda p: json.loads(p)["session_id"]).value_counts()
    )
    assert set(per_session.index) <= set(mobile["session_id"])
    api = clean.read("api_logs")
    assert api["request_id"].is_unique and api["request_id"].str.match(UUID).all()
    assert api["api_key_id"].str.match(r"^key_[0-9a-f]{16}$").all()
    assert api.groupby("account_id")["api_key_id"].nunique().max() <= 3
    assert (api["status_code"] == 200).mean() > 0.85 and (api["latency_ms"] > 0).all()
    assert set(api["method"]) == {"GET", "POST"}


def test_clean_data_has_no_fault_symptoms(clean):
    events = clean.read("events")
    assert events["messageId"].is_unique  # duplicate_events
    received = events["receivedAt"].dt.floor("h").value_counts()
    hours = pd.date_range("2026-10-01", "2026-11-01", freq="h", inclusive="left", tz="UTC")
    assert received.reindex(hours, fill_value=0).min() > 0  # kafka_outage
    day = events["timestamp"].dt.date
    group = events["context"].map(lambda c: json.loads(c)["groupId"])
    share = group.groupby(day).value_counts(normalize=True)
    assert share.max() < 0.2  # data_skew_oom (a fair share is 1/40; the fault gives one account 30%)
    assert set(events["schema_version"]) == {"1"}  # schema_change
    assert (events["receivedAt"] - events["timestamp"]).max() < pd.Timedelta(hours=48)  # late_events
    assert clean.records == []


# ---------------------------------------------------------------------------------------------
# faults


def test_event_faults_are_registered_as_streaming():
    reg = registry()
    for fid in faults_engagement.EVENT_FAULT_IDS:
        assert getattr(reg[fid], "streaming", False), fid
        assert reg[fid](FaultSpec(fid), {}, None, None) == []


def test_late_events(clean, faulty):
    run = faulty("late_events@2026-10-13:share=0.5")
    rec = run.record("late_events")
    a, b = by_id(clean.read("events")), by_id(run.read("events"))
    assert list(a.index) == list(b.index)
    changed = a.index[(a["receivedAt"] != b["receivedAt"]) | (a["_partition"] != b["_partition"])]
    assert sorted(changed) == rec.rows and len(rec.rows) == rec.details["events"] > 10
    moved = b.loc[changed]
    assert (moved["timestamp"] == a.loc[changed, "timestamp"]).all()
    assert (moved["timestamp"].dt.date == dt.date(2026, 10, 13)).all()
    assert moved["context"].str.contains('"type": "ios"|"type": "android"').all()
    days_late = (pd.to_datetime(moved["_partition"]) - pd.to_datetime(a.loc[changed, "_partition"])).dt.days
    assert days_late.between(1, 3).all() and days_late.nunique() > 1
    assert (
        (moved["receivedAt"] - a.loc[changed, "receivedAt"])
        .isin([pd.Timedelta(days=d) for d in (1, 2, 3)])
        .all()
    )
    assert (moved["receivedAt"] - moved["timestamp"]).max() > pd.Timedelta(hours=48)
    assert sum(rec.details["by_delay_days"].values()) == len(rec.rows)
    assert sorted(set(moved["_partition"])) == rec.details["received_partitions"]
    same = a.index.difference(changed)
    assert a.loc[same].drop(columns="_arrived_at").equals(b.loc[same].drop(columns="_arrived_at"))
    # the app sessions of those events synced late too
    ma, mb = (r.read("mobile_analytics").set_index("session_id").sort_index() for r in (clean, run))
    shifted = ma.index[ma["synced_at"] != mb["synced_at"]]
    assert sorted(shifted) == run.record("late_events", "mobile_analytics").rows
    assert set(moved["properties"].dropna().map(lambda p: json.loads(p)["session_id"])) == set(shifted)
    for source in ("web_analytics", "api_logs"):
        assert {k: v for k, v in run.file_hashes().items() if k.startswith(source)} == {
            k: v for k, v in clean.file_hashes().items() if k.startswith(source)
        }


def test_kafka_outage(clean, faulty):
    run = faulty("kafka_outage@2026-10-13:hours=6,start_hour=8")
    rec = run.record("kafka_outage")
    a, b = clean.read("events"), run.read("events")
    lost = sorted(set(a["messageId"]) - set(b["messageId"]))
    assert lost == rec.rows and rec.details["lost"] == len(lost) > 50
    assert set(b["messageId"]) <= set(a["messageId"])
    start, end = pd.Timestamp("2026-10-13T08:00Z"), pd.Timestamp("2026-10-13T14:00Z")
    in_window = a[(a["receivedAt"] >= start) & (a["receivedAt"] < end)]
    assert sorted(in_window["messageId"]) == lost
    assert not ((b["receivedAt"] >= start) & (b["receivedAt"] < end)).any()
    per_hour = b["receivedAt"].dt.floor("h").value_counts()
    assert all(per_hour.get(start + i * HOUR, 0) == 0 for i in range(6))
    assert sum(rec.details["lost_by_received_hour"].values()) == len(lost)
    assert rec.details["window_start"] == "2026-10-13T08:00:00+00:00"


def test_duplicate_events(clean, faulty):
    run = faulty("duplicate_events@2026-10-14:share=0.1")
    rec = run.record("duplicate_events")
    a, b = clean.read("events"), run.read("events")
    counts = b["messageId"].value_counts()
    assert sorted(counts.index[counts > 1]) == rec.rows and len(rec.rows) > 20
    assert counts.max() <= 3 and len(b) - len(a) == rec.details["extra_rows"]
    assert (
        sum(int(c) * n for c, n in rec.details["by_copies"].items())
        == len(rec.rows) + rec.details["extra_rows"]
    )
    payload = [c for c in ev.EVENTS_SCHEMA.names if c != "receivedAt"]
    dup = b[b["messageId"].isin(rec.rows)]
    assert (dup.groupby("messageId")[payload].nunique(dropna=False) == 1).all().all()
    original = a.set_index("messageId").loc[rec.rows]
    first = dup.sort_values("receivedAt").groupby("messageId").first()
    assert (first["receivedAt"] == original["receivedAt"]).all()
    assert (dup.groupby("messageId")["receivedAt"].nunique() == dup.groupby("messageId").size()).all()
    assert set(b["messageId"]) == set(a["messageId"])


def test_data_skew_oom(clean, faulty):
    run = faulty("data_skew_oom@2026-10-15")
    rec = run.record("data_skew_oom")
    a, b = clean.read("events"), run.read("events")
    added = sorted(set(b["messageId"]) - set(a["messageId"]))
    assert added == rec.rows and set(a["messageId"]) <= set(b["messageId"])
    account = rec.details["account"]
    on_day = b[b["timestamp"].dt.date == dt.date(2026, 10, 15)]
    share = (on_day["context"].map(lambda c: json.loads(c)["groupId"]) == account).mean()
    assert 0.3 <= share < 0.31
    assert rec.details["by_day"]["2026-10-15"]["share"] == pytest.approx(share, abs=1e-4)
    extra = b[b["messageId"].isin(added)]
    assert (extra["userId"].str.startswith(account + "-u")).all() and (extra["type"] == "track").all()
    assert (extra["timestamp"].dt.date == dt.date(2026, 10, 15)).all()


def test_schema_change(clean, faulty):
    run = faulty("schema_change@2026-10-20:broken=0.05")
    rec = run.record("schema_change")
    a, b = clean.read("events"), run.read("events")
    v2 = b[b["schema_version"] == "2"]
    raw = v2["_raw_json"].map(json.loads)
    assert sorted(raw.map(lambda m: m["message_id"])) == rec.rows and rec.details["v2"] == len(v2) > 100
    assert (
        v2.drop(columns=["receivedAt", "schema_version", "_raw_json", "_partition", "_arrived_at"])
        .isna()
        .all()
        .all()
    )
    required = ("event_name", "account", "timestamp")
    broken = raw[raw.map(lambda m: any(k not in m for k in required))]
    assert sorted(broken.map(lambda m: m["message_id"])) == sorted(rec.details["unparseable_ids"])
    assert rec.details["unparseable"] == len(broken) > 0
    for m in broken:
        missing = [k for k in required if k not in m]
        assert (
            len(missing) == 1 and rec.details["unparseable_ids"][m["message_id"]] == f"missing {missing[0]}"
        )
    whole = raw[raw.map(lambda m: all(k in m for k in required))]
    assert whole.map(lambda m: isinstance(m["timestamp"], int) and m["account"]["id"] and m["user_id"]).all()
    # the v2 messages are exactly the clean run's web events from the date on, same ids and times
    clean_by_id = a.set_index("messageId")
    ids = whole.map(lambda m: m["message_id"])
    ts = pd.to_datetime(whole.map(lambda m: m["timestamp"]), unit="ms", utc=True)
    assert (ts.to_numpy() == clean_by_id.loc[ids, "timestamp"].to_numpy()).all()
    expected = a[
        (a["timestamp"] >= pd.Timestamp("2026-10-20T00:00Z")) & a["context"].str.contains('"type": "web"')
    ]
    assert sorted(expected["messageId"]) == rec.rows
    v1 = b[b["schema_version"] == "1"]
    assert (
        v1.drop(columns="_arrived_at")
        .reset_index(drop=True)
        .equals(a[~a["messageId"].isin(rec.rows)].drop(columns="_arrived_at").reset_index(drop=True))
    )


def test_fault_parameters_are_validated():
    model = ev.EventModel(PERIODS, SPEC)

    def activate(text: str) -> None:
        faults_engagement.activate(DemoSpec(**{**SPEC.__dict__, "faults": (FaultSpec.parse(text),)}), model)

    with pytest.raises(ValueError, match="outside the generated history"):
        activate("kafka_outage@2025-01-01")
    with pytest.raises(ValueError, match="share='lots'"):
        activate("late_events@2026-10-10:share=lots")
    with pytest.raises(ValueError, match="platform='tv'"):
        activate("late_events@2026-10-10:platform=tv")
    with pytest.raises(ValueError, match="no such account"):
        activate("data_skew_oom@2026-10-10:account=nobody")
    with pytest.raises(ValueError, match="only version 2"):
        activate("schema_change@2026-10-10:version=3")
    with pytest.raises(ValueError, match="unknown parameter.*hour.*expected: hours, start_hour"):
        activate("kafka_outage@2026-10-10:hour=3")
    # the same checks without the usage periods, before anything is generated
    with pytest.raises(ValueError, match="max_days=0"):
        faults_engagement.validate(FaultSpec.parse("late_events@2026-10-10:max_days=0"), SPEC)
    faults_engagement.validate(FaultSpec.parse("data_skew_oom@2026-10-10:account=A1"), SPEC)
    # no date: 14 days before the end of the history
    (fault,) = faults_engagement.activate(
        DemoSpec(**{**SPEC.__dict__, "faults": (FaultSpec("kafka_outage"),)}), model
    )
    assert fault.date == END - dt.timedelta(days=14)


def test_density_below_one_thins_users_not_days():
    """Below one event per active user-day the same few seats per account send one event each."""
    spec = DemoSpec(**{**SPEC.__dict__, "events_per_user_day": 0.25})
    model = ev.EventModel(PERIODS, spec)
    days = range(ev.epoch_day(dt.date(2026, 10, 12)), ev.epoch_day(dt.date(2026, 10, 17)))
    rows = [model.day(d) for d in days]
    full = [ev.EventModel(PERIODS, SPEC).day(d) for d in days]
    for thin, dense in zip(rows, full, strict=True):
        e = thin.events
        users = pd.DataFrame({"acct": e["acct"], "seat": e["seat"]})
        assert not users.duplicated().any()  # one event per user
        assert 0.1 < len(users) / ev.batch_len(dense.events) * 4.0 < 0.5
    seen = pd.concat([pd.DataFrame({"acct": r.events["acct"], "seat": r.events["seat"]}) for r in rows])
    seats = PERIODS.groupby("account_id")["seats"].max().to_numpy()
    most = seen.groupby("acct")["seat"].max()
    assert (most.to_numpy() < np.maximum(1, np.ceil(seats[most.index] * 0.25 * 1.6 * 1.25) + 1)).all()
    assert seen["acct"].nunique() >= 0.9 * PERIODS["account_id"].nunique()  # every account still shows up


def test_bad_periods_are_refused():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['tier'\]"):
        ev.EventModel(PERIODS.drop(columns="tier"), SPEC)
    with pytest.raises(ValueError, match="unknown value"):
        ev.EventModel(PERIODS.assign(state="paused"), SPEC)


def test_days_without_users_still_deliver_empty_partitions(tmp_path):
    late = (
        PERIODS[PERIODS["end"] == END]
        .drop_duplicates("account_id", keep="last")
        .assign(start=dt.date(2026, 10, 25))
    )
    run = generate(tmp_path, periods=late)
    arrivals = landing.arrivals("events", root=tmp_path)
    empty = arrivals[arrivals["partition"] < "2026-10-25"]
    assert len(empty) == 24 and (empty["rows"] == 0).all()
    assert list(run.read("events").columns[:-2]) == ev.EVENTS_SCHEMA.names

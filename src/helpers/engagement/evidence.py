"""What the Engagement runbooks look at: per catalogue id, the symptom's details and each likely cause.

Each function reads the landing zone (what had arrived by ``ctx.as_of``) or the warehouse and returns
a :class:`helpers.runbooks.kit.Evidence` (does the condition hold, one line saying why, the table
behind it) or the table itself. ``check`` is the check as the pipeline recorded it
(:func:`helpers.engagement.runbook.check_now`). The runbooks' fixes and verification are in
:mod:`helpers.engagement.runbook`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from helpers.core.periods import month_of
from helpers.engagement import event_contract, store
from helpers.engagement.inputs import landed_files
from helpers.engagement.marts import ACCOUNTS_TABLE, INTAKE_TABLE
from helpers.engagement.upstream import UPSTREAMS, upstream_state
from helpers.engagement.window import DEFAULT_WINDOW_DAYS, MAU_DAYS, PIPELINE
from helpers.runbooks import kit
from helpers.runbooks.formatting import utc_text
from helpers.runs import records as runs
from helpers.storage import landing, warehouse

MOBILE = ("ios", "android")


# ---------------------------------------------------------------- reading the landing zone and the marts


def landed_events(
    as_of: dt.datetime, first: dt.date, last: dt.date, columns: Sequence[str], root: Path | None = None
) -> pd.DataFrame:
    """``events`` rows of received partitions [first, last] delivered by ``as_of`` (a few columns)."""
    files = landed_files("events", first, last, as_of=as_of, root=root)
    frames = [pq.read_table(f, columns=list(columns)).to_pandas() for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))


def _device(context: Any) -> str | None:
    try:
        return json.loads(context).get("device", {}).get("type") if isinstance(context, str) else None
    except (ValueError, AttributeError):
        return None


def _days(ids: dict[str, Any], key: str) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(str(d)) for d in ids.get(key, {}) or {})


def mart_rows(table: str, key: str) -> pd.DataFrame:
    """A mart's rows with ``key`` (a date or month) as text; empty before the pipeline's first run."""
    try:
        frame = warehouse.read_table(table)
    except Exception:  # the table does not exist before the pipeline's first run
        return pd.DataFrame()
    if len(frame):
        frame[key] = frame[key].astype(str).str[:10]
    return frame


# ---------------------------------------------------------------- late_events


def late_platforms(ctx: kit.RunbookContext, check: kit.Evidence) -> pd.DataFrame:
    """The late messages the check named, with their platform and lateness (from the landing zone)."""
    ev = check.data.get("result", {})
    ids = set(ev.get("beyond_window_ids", [])) | set(ev.get("late_in_window_ids", []))
    if not ids:
        return pd.DataFrame(columns=["message_id", "device", "platform", "lateness_hours", "copies"])
    received = _days(ev, "beyond_window_by_received_day") or [dt.date.fromisoformat(check.data["partition"])]
    event_days = _days(ev, "beyond_window_by_event_day") + _days(ev, "late_by_event_day")
    first = min(event_days) if event_days else min(received) - dt.timedelta(days=MAU_DAYS)
    rows = landed_events(
        ctx.as_of,
        first,  # a message is received on or after its event day: earlier copies are in between
        max(received),
        ["messageId", "timestamp", "receivedAt", "context"],
    )
    copies = rows.groupby("messageId").size()
    late = rows[rows["messageId"].isin(ids)].drop_duplicates("messageId", keep="last")
    out = pd.DataFrame(
        {
            "message_id": late["messageId"],
            "device": late["context"].map(_device),
            "lateness_hours": ((late["receivedAt"] - late["timestamp"]).dt.total_seconds() / 3600).round(1),
            "copies": late["messageId"].map(copies).astype("int64"),
        }
    )
    out["platform"] = out["device"].map(lambda d: "mobile" if d in MOBILE else "web")
    return out.reset_index(drop=True)


def late_cause(check: kit.Evidence, late: pd.DataFrame, platform: str) -> kit.Evidence:
    """Most late messages came from ``platform`` (mobile: offline devices syncing later; web: network)."""
    if not check.holds or late.empty:
        return kit.Evidence(False, f"no late {platform} events")
    mine = late[late["platform"] == platform]
    ev = check.data["result"]
    days = ", ".join(sorted(ev.get("late_by_event_day", {}) | ev.get("beyond_window_by_event_day", {})))
    detail = (
        f"{len(mine)} of {len(late)} late events from {platform} "
        f"({', '.join(sorted(set(mine['device'].dropna()))) or '-'}), event day(s) {days}, "
        f"up to {late['lateness_hours'].max():.0f} h late"
    )
    return kit.Evidence(len(mine) * 2 > len(late), detail, mine.head(20))


def retried(check: kit.Evidence, late: pd.DataFrame) -> kit.Evidence:
    """Late messages that had already been received once: a retry re-sent them days later."""
    again = late[late["copies"] > 1] if len(late) else late
    detail = f"{len(again)} late message(s) were re-sends of an earlier copy" if len(again) else "no re-sends"
    return kit.Evidence(check.holds and len(again) * 2 > max(len(late), 1), detail, again.head(20))


def lateness_alert(ctx: kit.RunbookContext) -> kit.Evidence:
    """For a freshness or SLA alert routed here (the monitors call Engagement lateness
    ``late_events``): are the engagement marts or their sources late now?"""
    from helpers.checks import monitors

    if ctx.alert is None or ctx.alert.kind not in monitors.LATE_KINDS:
        return kit.Evidence(False, "no freshness alert: the late_events check is the symptom")
    marts, sources = kit.mart_freshness(ctx), kit.late_sources(ctx)
    late = [e for e in (marts, sources) if e.holds]
    detail = "; ".join(e.detail for e in late) or f"{marts.detail}; {sources.detail}"
    frame = sources.frame if sources.holds else marts.frame
    return kit.Evidence(bool(late), detail, frame, {"targets": kit.rerun_targets(marts)})


def pending_backfills() -> kit.Evidence:
    """Backfill requests the pipeline recorded and nobody has performed yet."""
    pending = store.pending_backfill_requests()
    cols = ["from_date", "to_date", "events", "requested_at", "command"]
    detail = "; ".join(f"{r.from_date}..{r.to_date} ({r.events} events)" for r in pending.itertuples())
    return kit.Evidence(bool(len(pending)), f"pending backfill requests: {detail or 'none'}", pending[cols])


# ---------------------------------------------------------------- kafka_outage


def outage_window(check: kit.Evidence) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The worst outage window the stream check found, as ``[start, end)``; None without one."""
    ev = check.data.get("result", {})
    if not ev.get("window_start"):
        return None
    return pd.Timestamp(ev["window_start"]), pd.Timestamp(ev["window_end"])


def _hourly_rows(source: str, column: str, lo: pd.Timestamp, hi: pd.Timestamp, as_of: dt.datetime) -> int:
    """Rows of ``source`` whose ``column`` falls in ``[lo, hi)``, over the deliveries of those days."""
    days = {lo.date(), (hi - pd.Timedelta(seconds=1)).date()}
    n = 0
    for d in landing.deliveries(source, as_of=as_of):
        if dt.date.fromisoformat(d.partition) in days:
            col = pq.read_table(landing.source_dir(source) / d.file, columns=[column]).column(0)
            ts = pc.cast(col, "timestamp[us, tz=UTC]") if col.type.tz is None else col
            n += int(pc.sum(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))).as_py() or 0)
    return n


def other_sources(ctx: kit.RunbookContext, check: kit.Evidence) -> pd.DataFrame:
    """Rows of the other engagement sources in the outage window vs the same hours a week before."""
    win = outage_window(check)
    if win is None:
        return pd.DataFrame(columns=["source", "in_window", "week_before"])
    lo, hi = win
    week = pd.Timedelta(days=7)
    cols = {"web_analytics": "timestamp", "mobile_analytics": "started_at", "api_logs": "timestamp"}
    rows = [
        {
            "source": s,
            "in_window": _hourly_rows(s, c, lo, hi, ctx.as_of),
            "week_before": _hourly_rows(s, c, lo - week, hi - week, ctx.as_of),
        }
        for s, c in cols.items()
        if landing.deliveries(s, as_of=ctx.as_of)
    ]
    return pd.DataFrame(rows, columns=["source", "in_window", "week_before"])


def outage_cause(check: kit.Evidence, others: pd.DataFrame, which: str) -> kit.Evidence:
    """Which of the plan's causes the window's shape points to.

    ``network``: the other sources dropped too (the network, not Kafka); ``broker``: the stream
    received nothing at all while the other sources kept flowing; ``producer``: some events
    still arrived (only some producers could not connect).
    """
    if not check.holds or outage_window(check) is None:
        return kit.Evidence(False, f"no outage window ({which})")
    ev = check.data["result"]
    span = f"{ev['window_start'][:16]}..{ev['window_end'][11:16]} UTC"
    base = others[others["week_before"] > 0]
    dropped = base[base["in_window"] <= 0.2 * base["week_before"]]
    net_down = len(base) > 0 and len(dropped) * 2 > len(base)
    observed = int(ev.get("observed", 0))
    if which == "network":
        names = ", ".join(dropped["source"]) or "none"
        detail = f"other sources in {span}: dropped {names} of {len(base)} with a baseline"
        return kit.Evidence(net_down, detail, others)
    if which == "broker":
        detail = f"stream received {observed} events in {span} (~{ev['expected']:.0f} expected); other sources flowing"
        return kit.Evidence(not net_down and observed == 0, detail, others)
    detail = f"stream received {observed} of ~{ev['expected']:.0f} expected events in {span}"
    return kit.Evidence(not net_down and observed > 0, detail, others)


# ---------------------------------------------------------------- duplicate_events


def duplicate_copies(ctx: kit.RunbookContext, check: kit.Evidence) -> pd.DataFrame:
    """Each duplicated message's copies: when each was sent and received (from the landing zone)."""
    ev = check.data.get("result", {})
    ids = set(ev.get("message_ids", []))
    cols = ["message_id", "copies", "distinct_sent_at", "received_spread_s"]
    if not ids:
        return pd.DataFrame(columns=cols)
    days = _days(ev, "by_event_day")
    first, last = min(days) - dt.timedelta(days=1), max(days) + dt.timedelta(days=3)
    rows = landed_events(ctx.as_of, first, last, ["messageId", "sentAt", "receivedAt"])
    rows = rows[rows["messageId"].isin(ids)]
    g = rows.groupby("messageId")
    out = pd.DataFrame(
        {
            "copies": g.size(),
            "distinct_sent_at": g["sentAt"].nunique(),
            "received_spread_s": (g["receivedAt"].max() - g["receivedAt"].min()).dt.total_seconds(),
        }
    )
    return out.reset_index(names="message_id")[cols]


def duplicate_cause(check: kit.Evidence, copies: pd.DataFrame, which: str) -> kit.Evidence:
    """``retry``: the client sent the same message again (copies with different ``sentAt``);
    ``network``: one send delivered several times (same ``sentAt``, later ``receivedAt``)."""
    if not check.holds or copies.empty:
        return kit.Evidence(False, f"no duplicated messages ({which})")
    resent = copies["distinct_sent_at"] > 1
    mine = copies[resent] if which == "retry" else copies[~resent]
    extra = int((copies["copies"] - 1).sum())
    what = "re-sent by the client (different sentAt)" if which == "retry" else "one send delivered again"
    days = ", ".join(d.isoformat() for d in _days(check.data.get("result", {}), "by_event_day"))
    detail = (
        f"{len(mine)} of {len(copies)} duplicated messages of {days or 'the window'} {what}; {extra} extra rows, "
        f"copies up to {int(copies['copies'].max())}, spread up to {copies['received_spread_s'].max():.0f} s"
    )
    return kit.Evidence(len(mine) * 2 > len(copies), detail, mine.head(20))


def dedup_missing(ctx: kit.RunbookContext, check: kit.Evidence) -> kit.Evidence:
    """Were the copies counted? The intake mart records the copies removed per received day; a
    day whose marts were written without that record was written without deduplication."""
    if not check.holds:
        return kit.Evidence(False, "no duplicated messages")
    intake = mart_rows(INTAKE_TABLE, "date")
    days = [d.isoformat() for d in _days(check.data["result"], "by_event_day")]
    rows = intake[intake["date"].isin(days)] if len(intake) else intake
    missing = [d for d in days if d not in set(rows.get("date", []))]
    detail = (
        f"marts of {', '.join(missing)} carry no intake record: written without deduplication"
        if missing
        else f"the pipeline keeps one copy per messageId: {int(rows['duplicates'].sum())} copies removed at intake"
    )
    return kit.Evidence(bool(missing), detail, rows)


# ---------------------------------------------------------------- data_skew_oom


def hot_account(check: kit.Evidence) -> kit.Evidence:
    """One account holding a large share of a day's events (the key that spills a naive join)."""
    ev = check.data.get("result", {})
    if not check.holds or not ev.get("account"):
        share = max((r["share"] for d in ev.get("top_accounts_by_day", {}).values() for r in d), default=0.0)
        return kit.Evidence(False, f"largest account share of a day's events: {share:.1%}")
    top = pd.DataFrame(ev["top_accounts_by_day"].get(ev["day"], []))
    detail = f"account {ev['account']} holds {ev['share']:.1%} of {ev['day']}'s events ({ev['strategy']})"
    return kit.Evidence(True, detail, top, {"account": ev["account"], "day": ev["day"]})


def engagement_failures(ctx: kit.RunbookContext, check: kit.Evidence) -> kit.Evidence:
    """Engagement days whose latest run died of memory or time (the OOM the plan describes)."""
    pressure = kit.compute_pressure(ctx)
    frame = pressure.frame
    if len(frame):
        frame = frame[(frame["pipeline"] == PIPELINE) & (frame["status"] == "failed")]
        still = [runs.latest_run(PIPELINE, d) for d in frame["partition"]]
        frame = frame[[r is not None and r.status == "failed" for r in still]]
    detail = (
        "; ".join(f"{r.partition} ({r.run_id}): {r.why}" for r in frame.itertuples())
        if len(frame)
        else "no engagement run died of memory or time"
    )
    targets = [[PIPELINE, d] for d in dict.fromkeys(frame["partition"])] if len(frame) else []
    return kit.Evidence(bool(len(frame)), detail, frame, {"targets": targets})


# ---------------------------------------------------------------- upstream_missing


def upstream_months(ctx: kit.RunbookContext, day: str | None) -> list[str]:
    """The months a run of ``day`` writes (its window's months)."""
    if not day:
        return []
    d = dt.date.fromisoformat(day)
    first = d - dt.timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    return sorted({month_of(first), month_of(d)})


def upstream_states(ctx: kit.RunbookContext, day: str | None) -> kit.Evidence:
    """Profit and Growth readiness for each month the day's run writes, and pending account rows."""
    rows = []
    for period in upstream_months(ctx, day):
        for up in UPSTREAMS:
            readiness, _ = upstream_state(up, period)
            latest = runs.latest_run(up.pipeline, period)
            rows.append(
                {
                    "pipeline": up.pipeline,
                    "period": period,
                    "ready": readiness.ready,
                    "reason": readiness.reason,
                    "latest_status": latest.status if latest else None,
                }
            )
    frame = pd.DataFrame(rows, columns=["pipeline", "period", "ready", "reason", "latest_status"])
    accounts = mart_rows(ACCOUNTS_TABLE, "period")
    pending = accounts[accounts["status"] == "pending"] if len(accounts) else accounts
    bad = frame[~frame["ready"].astype(bool)] if len(frame) else frame
    detail = "; ".join(f"{r.period}: {r.reason}" for r in bad.itertuples()) or (
        f"Profit and Growth ready for {', '.join(sorted(set(frame['period'])))}"
        if len(frame)
        else f"no {PIPELINE} result recorded by {utc_text(ctx.as_of)}: nothing joined yet"
    )
    if len(pending):
        detail += f"; {len(pending)} account row(s) pending in {ACCOUNTS_TABLE}"
    targets = [[r.pipeline, r.period] for r in bad.itertuples()]
    return kit.Evidence(bool(len(bad)), detail, frame, {"targets": targets, "partition": day})


def upstream_running(ups: kit.Evidence) -> kit.Evidence:
    """An upstream still running (a backfill in progress): wait for it rather than start another."""
    frame = ups.frame
    busy = frame[frame["latest_status"].isin(["running", "queued"])] if len(frame) else frame
    detail = "; ".join(f"{r.pipeline} {r.period} is {r.latest_status}" for r in busy.itertuples())
    return kit.Evidence(bool(len(busy)), detail or "no upstream run in progress", busy)


def upstream_unfinished(ups: kit.Evidence, running: kit.Evidence) -> kit.Evidence:
    """Upstreams that have not finished (not run, or their latest run failed), not in progress."""
    frame = ups.frame
    bad = frame[~frame["ready"].astype(bool)] if len(frame) else frame
    if len(running.frame):
        bad = bad[~bad["latest_status"].isin(["running", "queued"])]
    detail = "; ".join(f"{r.pipeline} {r.period}: {r.reason}" for r in bad.itertuples())
    targets = [[r.pipeline, r.period] for r in bad.itertuples()]
    return kit.Evidence(bool(len(bad)), detail or "Profit and Growth finished", bad, {"targets": targets})


# ---------------------------------------------------------------- schema_change


def quarantine_reasons(check: kit.Evidence) -> pd.DataFrame:
    """The check's quarantined rows by reason, with whether the contract in force declares the version."""
    ev = check.data.get("result", {})
    known = event_contract.CONTRACT.known_versions
    rows = []
    for reason, n in (ev.get("by_reason") or {}).items():
        version = reason.split("'")[1] if reason.startswith("unknown schema_version '") else None
        rows.append(
            {
                "reason": reason,
                "rows": int(n),
                "version": version,
                "declared_now": version in known if version else None,
            }
        )
    return pd.DataFrame(rows, columns=["reason", "rows", "version", "declared_now"])


def new_format(check: kit.Evidence, reasons: pd.DataFrame) -> kit.Evidence:
    """Rows in a version the contract did not declare when the run read them."""
    unknown = reasons[reasons["version"].notna()] if len(reasons) else reasons
    if not check.holds or unknown.empty:
        return kit.Evidence(False, "no rows of an undeclared schema_version")

    def state(r: Any) -> str:
        if r.declared_now:
            return "(declared in the contract since: re-run)"
        if r.version in event_contract.REVIEWED:
            return "(not declared: the fix declares its reviewed mapping)"
        return "(not declared, no reviewed mapping: write one)"

    parts = [f"{r.rows} row(s) of schema_version {r.version} {state(r)}" for r in unknown.itertuples()]
    return kit.Evidence(
        True,
        f"{check.data['partition']}: " + "; ".join(parts),
        unknown,
        {"undeclared": [r.version for r in unknown.itertuples() if not r.declared_now]},
    )


def broken_records(check: kit.Evidence, reasons: pd.DataFrame) -> kit.Evidence:
    """Rows of a declared version missing a required field (the frontend sent them incomplete)."""
    bad = reasons[reasons["version"].isna()] if len(reasons) else reasons
    ids = check.data.get("result", {}).get("quarantined_ids", {})
    detail = ", ".join(f"{r.reason}: {r.rows}" for r in bad.itertuples()) or "no incomplete records"
    sample = ", ".join(list(ids)[:3])
    return kit.Evidence(check.holds and len(bad) > 0, detail + (f" (e.g. {sample})" if len(bad) else ""), bad)


def contract_versions() -> pd.DataFrame:
    """The contract in force: one row per version/form."""
    return pd.DataFrame(
        [
            {"version": v.version, "form": v.form, "description": v.description}
            for v in event_contract.CONTRACT.versions
        ]
    )

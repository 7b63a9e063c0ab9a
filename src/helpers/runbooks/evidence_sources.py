"""Evidence from the landing zone: each source's rhythm, late sources, volumes, late deliveries.

A source's rhythm is learnt from its own manifest (:func:`landing_arrivals`), so a monthly cloud bill
27 days old is on time while a daily extract 2 days old is late. Config source names map to landing
folders through :func:`landing_sources`. Everything is read *as of* ``ctx.as_of``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core.periods import first_of_next_month, last_day_of_month, period_days
from helpers.core.timeutil import as_utc
from helpers.runbooks.context import RunbookContext
from helpers.runbooks.evidence import Evidence
from helpers.runbooks.formatting import hours, utc_or_none, utc_text
from helpers.runs.dag import partition_for
from helpers.storage import landing

# Config source names whose landing folders are not named after them (prefixes handle the rest).
SOURCE_ALIASES: Mapping[str, tuple[str, ...]] = {"operations": ("ops_expenses",)}


def landing_sources(configured: Iterable[str], *, root: Path | None = None) -> dict[str, list[str]]:
    """Landing folders of each configured source name: itself, an alias, or ``<name>_*`` folders.

    ``billing`` -> ``billing_customers``, ``billing_invoices``, ``billing_payments``; ``hr`` ->
    ``hr_payroll``; ``experiments`` -> ``experiment_assignments``; a name with no folder maps to [].
    """
    present = landing.sources(root)
    out: dict[str, list[str]] = {}
    for name in configured:
        if name in present:
            out[name] = [name]
        elif name in SOURCE_ALIASES:
            out[name] = [s for s in SOURCE_ALIASES[name] if s in present]
        else:
            stems = {f"{name}_", f"{name.rstrip('s')}_"}
            out[name] = [s for s in present if any(s.startswith(stem) for stem in stems)]
    return out


def _next_partition(last: dt.date, cadence_days: float) -> dt.date:
    if cadence_days >= 28:  # monthly deliveries: same day next month (clamped to its length)
        nxt = first_of_next_month(last)
        return nxt.replace(day=min(last.day, last_day_of_month(nxt.year, nxt.month).day))
    return last + dt.timedelta(days=max(1, round(cadence_days)))


def landing_arrivals(
    sources: Iterable[str] | None = None,
    *,
    as_of: dt.datetime,
    grace_hours: float = 6.0,
    root: Path | None = None,
    cadences: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per landing source, as of ``as_of``: the last partition and arrival, and whether it is late.

    A source's rhythm is learnt from its own manifest: the cadence (median gap between the last
    partitions, e.g. 1 day or a month) and the typical lag from a partition's date to its first
    arrival. The next delivery is expected at the next partition's date plus that lag; it is *late*
    when it has not arrived ``grace_hours`` (plus a tenth of the cadence) after that. So a monthly
    cloud bill 27 days old is on time, while a daily billing extract 2 days old is late.
    ``cadences`` (source -> ``daily``/``monthly``, config ``sources:``): a source declared monthly
    is judged monthly even when its few deliveries so far have no gap to learn from (one bill
    delivered in parts on consecutive days is not a daily source).
    """
    names = list(sources) if sources is not None else landing.sources(root)
    cols = [
        "source",
        "deliveries",
        "last_partition",
        "last_arrival",
        "age_hours",
        "cadence_days",
        "lag_hours",
        "next_expected",
        "overdue_hours",
        "late",
        "rows_last_partition",
    ]
    rows = []
    for source in names:
        arr = landing.arrivals(source, root=root, as_of=as_of)
        if not len(arr):
            rows.append(dict(source=source, deliveries=0, late=True, overdue_hours=None))
            continue
        first = arr.groupby("partition")["arrived_at"].min().sort_index()
        days = [dt.date.fromisoformat(p) for p in first.index]
        recent = list(zip(days, first.tolist(), strict=True))[-12:]
        gaps = [(b[0] - a[0]).days for a, b in zip(recent, recent[1:], strict=False)]
        cadence = float(pd.Series(gaps).median()) if gaps else 1.0
        if (cadences or {}).get(source) == "monthly":
            cadence = 30.0
        lags = [(at - pd.Timestamp(d, tz="UTC")).total_seconds() / 3600 for d, at in recent[1:] or recent]
        lag = float(pd.Series(lags).median())
        last_day = days[-1]
        expected = as_utc(
            dt.datetime.combine(_next_partition(last_day, cadence), dt.time()) + dt.timedelta(hours=lag)
        )
        overdue = hours(as_utc(as_of) - expected)
        last_arrival = utc_or_none(arr["arrived_at"].max())
        rows.append(
            dict(
                source=source,
                deliveries=len(arr),
                last_partition=last_day.isoformat(),
                last_arrival=last_arrival,
                age_hours=hours(as_utc(as_of) - last_arrival) if last_arrival else None,
                cadence_days=cadence,
                lag_hours=round(lag, 1),
                next_expected=expected,
                overdue_hours=overdue,
                late=overdue > grace_hours + cadence * 2.4,
                rows_last_partition=int(arr.loc[arr["partition"] == last_day.isoformat(), "rows"].sum()),
            )
        )
    return pd.DataFrame(rows, columns=cols)


def _scope_sources(
    ctx: RunbookContext, pipelines: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Landing sources of the pipelines, and configured names with no landing folder."""
    configured: list[str] = []
    for pid in pipelines or ctx.scope:
        p = ctx.pipeline_config(pid)
        configured += [s for s in (p.sources if p else ()) if s not in configured]
    mapped = landing_sources(configured)
    found = sorted({s for names in mapped.values() for s in names})
    return found, [name for name, names in mapped.items() if not names]


def _cadences(ctx: RunbookContext) -> dict[str, str]:
    """Each configured source's declared cadence (config ``sources:``)."""
    return {name: spec.cadence for name, spec in ctx.config.pipelines.sources.items()}


def late_sources(ctx: RunbookContext, *, grace_hours: float = 6.0) -> Evidence:
    """Upstream delayed: sources of the pipelines in scope whose next delivery is overdue."""
    found, unmapped = _scope_sources(ctx)
    frame = landing_arrivals(found, as_of=ctx.as_of, grace_hours=grace_hours, cadences=_cadences(ctx))
    late = frame[frame["late"].fillna(False).astype(bool)]
    parts = [
        f"{r.source}: last partition {r.last_partition} arrived {utc_text(utc_or_none(r.last_arrival))}, "
        f"next was due {utc_text(utc_or_none(r.next_expected))} ({r.overdue_hours:g} h overdue)"
        if r.deliveries
        else f"{r.source}: nothing delivered"
        for r in late.itertuples()
    ]
    parts += [f"{name}: no landing folder" for name in unmapped]
    holds = bool(parts)
    detail = "; ".join(parts) if holds else f"all {len(frame)} source(s) on their usual rhythm"
    return Evidence(holds, detail, frame, {"late": late["source"].tolist(), "missing": unmapped})


def chase_note(sources: Evidence) -> str:
    """For a fix's description: the sources still late (a re-run cannot bring them), or ``""``."""
    late = [*sources.data.get("late", []), *sources.data.get("missing", [])]
    if not sources.holds or not late:
        return ""
    return (
        f"; still late: {', '.join(late)} - a re-run cannot bring that data: re-extract it or chase "
        "its owner (Escalate), then run this runbook again once it has arrived"
    )


def stale_partitions(ctx: RunbookContext, *, grace_hours: float = 6.0) -> Evidence:
    """Late data has arrived since a partition was built: the partition is stale and must be re-run.

    For each pipeline in scope and each of its landing sources (as of ``ctx.as_of``): a delivery of
    day ``d`` that was due when the latest successful run of the partition holding ``d`` was built
    (``d`` plus the source's usual lag plus ``grace_hours`` is at or before that run's ``as_of``) but
    first arrived after it. Such a run read the landing zone without that day: its marts are fresh
    by age yet wrong. ``targets`` are those ``(pipeline, partition)`` pairs.
    """
    rows = []
    runs = ctx.snapshot.runs
    as_of = pd.Timestamp(as_utc(ctx.as_of))
    grace = pd.Timedelta(hours=grace_hours)
    for pid in ctx.scope:
        p = ctx.pipeline_config(pid)
        done = runs[(runs["pipeline"] == pid) & (runs["status"] == "succeeded") & runs["as_of"].notna()]
        done = done[done["as_of"] <= as_of]
        if p is None or not len(done):
            continue
        built = done.groupby("logical_date")["as_of"].max()
        found, _ = _scope_sources(ctx, [pid])
        for source in found:
            arr = landing.arrivals(source, as_of=ctx.as_of)
            if not len(arr):
                continue
            first = arr.groupby("partition")["arrived_at"].min()
            days = pd.to_datetime(first.index).tz_localize("UTC")
            lag = (pd.DatetimeIndex(first.to_list()) - days).median()
            for (day, arrived), start in zip(first.items(), days, strict=True):
                label = partition_for(p, dt.date.fromisoformat(day))
                at = built.get(label)
                if at is None or not (start + lag + grace <= at < arrived):
                    continue
                rows.append(
                    dict(pipeline=pid, partition=label, built_as_of=at, source=source, day=day, arrived_at=arrived)
                )  # fmt: skip
    cols = ["pipeline", "partition", "built_as_of", "source", "day", "arrived_at"]
    frame = pd.DataFrame(rows, columns=cols)
    if not len(frame):
        return Evidence(False, "no partition was built before data it was due to include arrived", frame)
    parts = []
    for (pid, label), g in frame.groupby(["pipeline", "partition"], sort=False):
        late = "; ".join(
            f"{src} {min(d['day'])}"
            + (f"..{max(d['day'])}" if d["day"].nunique() > 1 else "")
            + f" arrived {utc_text(utc_or_none(d['arrived_at'].max()))}"
            for src, d in g.groupby("source", sort=True)
        )
        parts.append(
            f"{late}, after {pid} {label} was built (as of {utc_text(utc_or_none(g['built_as_of'].iloc[0]))}): "
            f"the late data is in now and {pid} {label} is stale, re-run it"
        )
    targets = [list(t) for t in dict.fromkeys(zip(frame["pipeline"], frame["partition"], strict=True))]
    return Evidence(True, "; ".join(parts), frame, {"targets": targets})


def source_volume(ctx: RunbookContext, direction: str | None = None) -> Evidence:
    """Source volume: rows delivered for the partition's days vs the same baseline the row-count
    monitor uses (same weekday of previous weeks; previous months). Holds when a source moved
    beyond the variance threshold in ``direction`` (``drop``/``rise``; either when None)."""
    from helpers.checks.rules import baseline_labels

    label = ctx.partition if ctx.partition and ctx.partition != "current" else None
    mon = ctx.config.pipelines.monitors
    found, _unmapped = _scope_sources(ctx)
    rows = []
    for source in found if label else ():
        arr = landing.arrivals(source, as_of=ctx.as_of)
        if not len(arr):
            continue
        key = arr["partition"].str[:7] if len(label) == 7 else arr["partition"]
        counts = arr.groupby(key)["rows"].sum()
        base = [
            int(counts[b])
            for b in baseline_labels(label, weeks=mon.baseline_weeks, months=mon.baseline_months)
            if b in counts
        ]
        rows_now = int(counts.get(label, 0))
        median = float(pd.Series(base).median()) if base else None
        change = (rows_now - median) / median if median else None
        rows.append(
            dict(
                source=source,
                partition=label,
                rows=rows_now,
                baseline=median,
                variance=None if change is None else round(change, 4),
            )
        )
    frame = pd.DataFrame(rows, columns=["source", "partition", "rows", "baseline", "variance"])

    def moved(v: Any) -> bool:
        if v is None or pd.isna(v) or abs(v) <= mon.row_count_variance:
            return False
        return direction is None or (v < 0) == (direction == "drop")

    bad = frame[frame["variance"].map(moved)] if len(frame) else frame
    if not label:
        return Evidence(False, "no partition given: source volumes not compared", frame)
    detail = (
        "; ".join(
            f"{r.source} {r.partition}: {r.rows} rows vs baseline {r.baseline:g} ({r.variance:+.0%})"
            for r in bad.itertuples()
        )
        if len(bad)
        else f"{len(frame)} source(s) delivered their usual volume for {label}"
    )
    return Evidence(bool(len(bad)), detail, frame, {"sources": bad["source"].tolist()})


def late_deliveries(ctx: RunbookContext) -> Evidence:
    """Built before its data arrived: deliveries for a partition's days that arrived after the
    ``as_of`` of the partition's latest succeeded run (late data: re-run or backfill)."""
    cols = ["pipeline", "partition", "built_as_of", "source", "delivery_partition", "arrived_at", "rows"]
    rows = []
    for pid in ctx.scope:
        runs = ctx.pipeline_runs(pid)
        done = runs[runs["status"] == "succeeded"]
        if ctx.partition and ctx.partition != "current":
            done = done[done["logical_date"] == ctx.partition]
        latest = done.groupby("logical_date").tail(1)
        found, _ = _scope_sources(ctx, [pid])
        arrivals = {s: landing.arrivals(s, as_of=ctx.as_of) for s in found}
        for run in latest.itertuples():
            built = utc_or_none(run.as_of)
            if built is None:
                continue
            first, last = period_days(str(run.logical_date))
            for source, arr in arrivals.items():
                dates = arr["partition"].map(dt.date.fromisoformat) if len(arr) else arr["partition"]
                late = (
                    arr[(dates >= first) & (dates <= last) & (arr["arrived_at"] > pd.Timestamp(built))]
                    if len(arr)
                    else arr
                )
                rows += [
                    dict(
                        pipeline=pid,
                        partition=run.logical_date,
                        built_as_of=built,
                        source=source,
                        delivery_partition=d.partition,
                        arrived_at=utc_or_none(d.arrived_at),
                        rows=int(d.rows),
                    )
                    for d in late.itertuples()
                ]
    frame = pd.DataFrame(rows, columns=cols)
    if not len(frame):
        return Evidence(False, "no delivery arrived after its partition was built", frame)
    parts = frame.groupby(["pipeline", "partition"]).agg(
        sources=("source", lambda s: ", ".join(sorted(set(s)))), rows=("rows", "sum")
    )
    detail = "; ".join(
        f"{p} {label} built before {rows} late row(s) of {r.sources} arrived"
        for (p, label), r, rows in zip(parts.index, parts.itertuples(), parts["rows"], strict=True)
    )
    return Evidence(True, detail, frame, {"targets": [list(k) for k in parts.index]})


def alerted_source(ctx: RunbookContext) -> str | None:
    """The source whose freshness check the context is about (``*.source_freshness.<source>``)."""
    from helpers.core.catalogue import parse_check_id

    if not ctx.check_id:
        return None
    ref = parse_check_id(ctx.check_id, ctx.pipeline)
    return ref.subject if ref.kind == "source_freshness" else None


def sources_stopped(ctx: RunbookContext, sources: Sequence[str], *, what: str = "source") -> Evidence:
    """Sources that stopped delivering: the source-freshness monitors of ``sources`` (those the
    config's pipelines read), evaluated at ``ctx.as_of`` as the scheduler evaluates them, and for
    each failing one its last delivery and the partitions missing since (``data["missing"]``:
    source -> partitions, daily sources' days up to the day before ``as_of``).

    The same verdict as the alert's (monthly sources judged against their due day), so a source
    the monitors call late is never "on its usual rhythm" here.
    """
    from helpers.checks import monitors

    pipes = ctx.config.pipelines.pipelines
    readers = sorted({pid for pid, p in pipes.items() if set(p.sources) & set(sources)})
    cols = ["source", "pipelines", "status", "severity", "summary", "last_partition", "last_arrival"]
    if not readers:
        return Evidence(False, f"no pipeline reads {', '.join(sources)}", pd.DataFrame(columns=cols))
    results = monitors.evaluate_monitors(ctx.as_of, pipelines=readers, config=ctx.config)
    arrivals = landing_arrivals(sources, as_of=ctx.as_of, cadences=_cadences(ctx)).set_index("source")
    rows, missing = [], {}
    for source in sources:
        mine = [r for r in results if r.kind == "source_freshness" and r.check_id.endswith(f".{source}")]
        if not mine:
            continue
        worst = next((r for r in mine if r.failed), mine[0])
        last = arrivals["last_partition"].get(source) if source in arrivals.index else None
        last = None if last is None or pd.isna(last) else str(last)
        rows.append(dict(source=source, pipelines=", ".join(sorted({r.pipeline for r in mine})),
                         status=worst.status, severity=worst.severity, summary=worst.summary,
                         last_partition=last,
                         last_arrival=arrivals["last_arrival"].get(source) if source in arrivals.index else None))  # fmt: skip
        if worst.failed:
            missing[source] = _missing_partitions(ctx, source, last)
    frame = pd.DataFrame(rows, columns=cols)
    late = frame[frame["status"] != "pass"] if len(frame) else frame
    if not len(late):
        return Evidence(False, f"every {what} delivered on time ({', '.join(frame['source'])})", frame)
    parts = [
        f"{r.source} stopped: {r.summary}"
        + (f"; last partition delivered {r.last_partition}" if r.last_partition else "; nothing delivered")
        for r in late.itertuples()
    ]
    return Evidence(True, "; ".join(parts), frame, {"late": late["source"].tolist(), "missing": missing})


def _missing_partitions(ctx: RunbookContext, source: str, last: str | None) -> list[str]:
    """The daily partitions a stopped source owes, from the one after ``last`` to the day before
    ``as_of`` (a monthly source: the month after ``last``)."""
    spec = ctx.config.pipelines.sources.get(source)
    if last is None:
        return []
    day = dt.date.fromisoformat(last)
    if spec is not None and spec.cadence == "monthly":
        return [first_of_next_month(day).isoformat()]
    end = ctx.as_of.date() - dt.timedelta(days=1)
    return [(day + dt.timedelta(days=k)).isoformat() for k in range(1, (end - day).days + 1)]

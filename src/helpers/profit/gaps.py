"""Billing gaps for the ``missing_subscription_data`` runbook: the days each billing source
delivered nothing (:func:`gap_days`, per source), and the rows the billing system holds for a month
that never landed (:func:`unlanded`), which is the complete expected state its Verify asserts
(:func:`source_complete`), whatever the fix's plan named.

The comparison reads the source system a fix re-extracts from (``helpers.storage.source_systems``);
where none knows the landing zone it says why instead. Nothing here reads the wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from helpers.checks.framework import CheckResult
from helpers.core.periods import period_days
from helpers.profit.checks import AGGREGATE
from helpers.profit.inputs import BILLING_SOURCES
from helpers.profit.repair import KEYS
from helpers.storage import landing
from helpers.storage.source_systems import SourceSystemUnavailable, source_system

COLUMNS = ["source", "day", "rows", "keys"]


def billing_days(deliveries: pd.DataFrame) -> pd.DataFrame:
    """Rows delivered per day (``day``) and billing source (one column each) of a month's deliveries."""
    if not len(deliveries):
        return pd.DataFrame(columns=["day", *BILLING_SOURCES])
    d = deliveries[deliveries["source"].isin(BILLING_SOURCES)]
    rows = d.pivot_table(index="day", columns="source", values="rows", aggfunc="sum", fill_value=0)
    return rows.reset_index()


def gap_days(per_day: pd.DataFrame, days: Sequence[str], source: str) -> list[str]:
    """``days`` widened to the neighbouring days on which ``source`` delivered nothing (an outage
    rarely starts on the first day a renewal was due). Per source: another billing source that
    delivered a row on a day does not end this one's gap."""
    empty = per_day.set_index("day")[source].eq(0).to_dict() if source in per_day.columns else {}
    out = set(days)
    for d in days:
        for step in (-1, 1):
            cur = dt.date.fromisoformat(d)
            while empty.get((cur := cur + dt.timedelta(days=step)).isoformat()):
                out.add(cur.isoformat())
    return sorted(out)


def unlanded(
    sources: Sequence[str],
    period: str,
    *,
    as_of: dt.datetime,
    system: Path | Callable[[], Path] = source_system,
) -> pd.DataFrame | str:
    """Rows the source system holds for ``period``'s partitions of ``sources`` (arrived there by
    ``as_of``) whose key never landed in any partition: one row per source and day with ``rows`` and
    up to 20 ``keys``. A text (why) instead when no source system knows the landing zone.

    Only missing keys count (a row landed with other values is another fault's business), so a
    re-extraction that brought every lost row back leaves this empty, whatever the plan named."""
    try:
        root = system() if callable(system) else system
    except SourceSystemUnavailable as e:
        return str(e)
    first, last = period_days(period)
    out = []
    for source in sources:
        key = KEYS[source][0]
        truth = landing.read_source(source, as_of=as_of, start=first, end=last, root=root, with_arrival=True)
        if not len(truth):
            continue
        have = landing.read_source(source, as_of=as_of, columns=[key])
        landed_keys = set(have[key].astype(str)) if len(have) else set()
        lost = truth[~truth[key].astype(str).isin(landed_keys)]
        for day, rows in lost.groupby("_partition", sort=True):
            keys = sorted(rows[key].astype(str))
            out.append({"source": source, "day": str(day), "rows": len(keys), "keys": keys[:20]})
    return pd.DataFrame(out, columns=COLUMNS)


def describe(lost: pd.DataFrame | str) -> str:
    """What :func:`unlanded` found, in one line."""
    if not isinstance(lost, pd.DataFrame):
        return f"not compared with the source system ({lost})"
    if not len(lost):
        return "every row the source system holds has landed"
    n = int(lost["rows"].sum())
    return f"{n} row(s) the source system holds never landed: " + ", ".join(
        f"{r.source} {r.day} ({r.rows})" for r in lost.itertuples()
    )


def source_complete(
    lost: pd.DataFrame | str, *, check_id: str, period: str, as_of: dt.datetime, run_id: str
) -> CheckResult | None:
    """A Verify's completeness assertion from :func:`unlanded`: fails while the month lacks a row the
    source system holds, naming source and day. None when it could not be compared (said)."""
    if not isinstance(lost, pd.DataFrame):
        print(f"completeness not checked: {describe(lost)}")
        return None
    return CheckResult(
        check_id=f"{check_id}.source_complete",
        pipeline=AGGREGATE,
        partition=period,
        status="fail" if len(lost) else "pass",
        severity="critical",
        summary=f"{period}: {describe(lost)}",
        evidence={"unlanded": lost.to_dict("records")},
        as_of=as_of,
        evaluated_at=as_of,
        run_id=run_id,
        catalogue_id=check_id.split(".", 1)[-1],
    )


def deliveries_complete(
    deliveries: pd.DataFrame, *, check_id: str, period: str, as_of: dt.datetime, run_id: str
) -> CheckResult:
    """A Verify's completeness assertion from a month's daily deliveries (``Aggregate.deliveries``):
    fails while a delivery due by ``as_of`` has not arrived, naming source and days. A source's age
    alone cannot say so: a late re-delivery of part of the days makes it look fresh."""
    overdue = deliveries[deliveries["overdue"]] if len(deliveries) else deliveries
    parts = (
        [f"{s} {', '.join(sorted(g['day']))}" for s, g in overdue.groupby("source")] if len(overdue) else []
    )
    return CheckResult(
        check_id=f"{check_id}.deliveries_complete",
        pipeline=AGGREGATE,
        partition=period,
        status="fail" if parts else "pass",
        severity="critical",
        summary=f"{period}: "
        + (
            "deliveries due by as_of still missing: " + "; ".join(parts)
            if parts
            else "every delivery due has arrived"
        ),
        evidence={"overdue": overdue[["source", "day"]].to_dict("records") if len(overdue) else []},
        as_of=as_of,
        evaluated_at=as_of,
        run_id=run_id,
        catalogue_id=check_id.split(".", 1)[-1],
    )

"""Reading the investor aggregate's upstreams: which run of each counts, and what it published for the month.

**Which upstream run counts.** Gating is on run status (docs/architecture.md): for each upstream the latest
run (``skipped`` records aside) of its partition for the month must have succeeded. Profit and
Growth are monthly (partition ``YYYY-MM``); Engagement is daily, and "succeeded for the month"
means its run for the month's *reference day*: the month's last day, or the day before ``as_of``
while the month is in progress (:func:`reference_day`). Figures are read from the marts
(``profit_monthly``, ``growth_mrr_monthly``, ``growth_accounts_monthly``, ``engagement_monthly``,
``engagement_accounts_monthly``); their provenance comes from ``partition_writes`` (the run that
wrote the partition), which for ``engagement_monthly`` can be a later daily run whose window
still touched the month.

**Status.** A Profit figure is ``final`` when ``profit_monthly.status`` is (every source of the
month delivered, nothing in dunning, Finance's close passed); a Growth figure when billing has
delivered every day of the month; an Engagement figure when ``engagement_monthly.complete`` (its
roll-up reaches the month's last day).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core.periods import period_days
from helpers.core.timeutil import as_utc
from helpers.investor.metrics import ENGAGEMENT, GROWTH, PROFIT, UPSTREAMS
from helpers.runs import records as runs
from helpers.storage import warehouse

# ---------------------------------------------------------------- periods


def reference_day(period: str, as_of: dt.datetime) -> dt.date:
    """The day the month's figures reach: its last day, or the day before ``as_of`` mid-month.

    Raises ``ValueError`` when nothing of ``period`` has happened by ``as_of``.
    """
    first, last = period_days(period)
    day = min(last, as_utc(as_of).date() - dt.timedelta(days=1))
    if day < first:
        raise ValueError(f"{period}: nothing of the month has happened by as_of {as_utc(as_of).isoformat()}")
    return day


def upstream_partitions(period: str, as_of: dt.datetime) -> dict[str, str]:
    """The partition of each upstream that the month's figures come from."""
    return {PROFIT: period, GROWTH: period, ENGAGEMENT: reference_day(period, as_of).isoformat()}


# ---------------------------------------------------------------- reading the upstreams (I/O edge)


@dataclass(frozen=True)
class SourceRun:
    """The latest effective run of an upstream partition (``status`` None: never run)."""

    pipeline: str
    partition: str
    status: str | None
    run_id: str | None = None
    as_of: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def describe(self) -> str:
        """``profit_aggregate 2026-10: failed (run …: cell 4 …)`` for messages."""
        where = f"{self.pipeline} {self.partition}"
        if self.status is None:
            return f"{where}: no run yet"
        detail = f": {self.error}" if self.error else ""
        return f"{where}: {self.status} (run {self.run_id}{detail})"


def latest_run(pipeline: str, partition: str, *, engine: sa.Engine | None = None) -> SourceRun:
    """The latest run of a partition, ``skipped`` records aside (they mean "nothing was done")."""
    for r in runs.list_runs(pipeline=pipeline, logical_date=partition, limit=20, engine=engine):
        if r.status != "skipped":
            return SourceRun(pipeline, partition, r.status, r.run_id, r.as_of, r.finished_at, r.error_summary)
    return SourceRun(pipeline, partition, None)


def partition_writer(
    table: str, partition: Mapping[str, Any], *, engine: sa.Engine | None = None
) -> tuple[str | None, dt.datetime | None] | None:
    """``(run_id, written_at)`` of the last write of a mart partition (None: never written)."""
    engine = engine or warehouse.get_engine()
    pw = warehouse.partition_writes
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(pw.c.run_id, pw.c.written_at).where(
                (pw.c.table_name == table) & (pw.c.partition_key == warehouse.partition_key(partition))
            )
        ).first()
    if row is None:
        return None
    return row[0], as_utc(row[1]) if row[1] is not None else None


def read_partition(table: str, where: Mapping[str, Any], *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """Rows of one mart partition; an empty frame when the table does not exist yet."""
    try:
        return warehouse.read_table(table, where=where, engine=engine)
    except sa.exc.NoSuchTableError:
        return pd.DataFrame()


@dataclass(frozen=True)
class Source:
    """What one upstream published for the month, with the run that wrote it."""

    pipeline: str
    table: str
    partition: str
    run: SourceRun
    frame: pd.DataFrame
    written_by: str | None
    final: bool
    reasons: tuple[str, ...] = ()

    @property
    def row(self) -> pd.Series:
        return self.frame.iloc[0]

    @property
    def status(self) -> str:
        return "final" if self.final else "provisional"


@dataclass
class Inputs:
    """The upstreams of one month: usable sources, and why any other is missing."""

    period: str
    as_of: dt.datetime
    reference_day: dt.date
    runs: dict[str, SourceRun]
    profit: Source | None = None
    growth: Source | None = None
    engagement: Source | None = None
    growth_accounts: pd.DataFrame = field(default_factory=pd.DataFrame)
    engagement_accounts: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing: dict[str, str] = field(default_factory=dict)  # pipeline -> why it is not usable

    def sources(self) -> list[Source]:
        return [s for s in (self.profit, self.growth, self.engagement) if s is not None]

    def summary(self) -> pd.DataFrame:
        """One row per upstream: partition, latest run, status, who wrote the mart, usable or why not."""
        rows = []
        for pid in UPSTREAMS:
            run = self.runs[pid]
            src = {s.pipeline: s for s in self.sources()}.get(pid)
            rows.append(
                {
                    "pipeline": pid,
                    "partition": run.partition,
                    "latest run": run.run_id or "",
                    "run status": run.status or "never run",
                    "mart written by": src.written_by if src else "",
                    "figures": src.status if src else "missing",
                    "why": "; ".join(src.reasons) if src else self.missing.get(pid, ""),
                }
            )
        return pd.DataFrame(rows)


def _source(
    pipeline: str, table: str, partition: str, run: SourceRun, where: Mapping[str, Any], engine: sa.Engine
) -> tuple[pd.DataFrame, str | None, str | None]:
    """The partition's rows and writer, or a reason why it cannot be used."""
    if not run.succeeded:
        return pd.DataFrame(), None, run.describe()
    frame = read_partition(table, where, engine=engine)
    writer = partition_writer(table, where, engine=engine)
    if frame.empty or writer is None:
        return frame, None, f"{table} has no rows for {where} although run {run.run_id} succeeded"
    return frame, writer[0], None


def load_inputs(period: str, as_of: dt.datetime, *, engine: sa.Engine | None = None) -> Inputs:
    """Read the upstreams' run records and marts for ``period`` as the investor aggregate sees them."""
    engine = engine or warehouse.get_engine()
    as_of = as_utc(as_of)
    parts = upstream_partitions(period, as_of)
    latest = {pid: latest_run(pid, part, engine=engine) for pid, part in parts.items()}
    out = Inputs(period, as_of, reference_day(period, as_of), latest)
    where = {"period": period}

    frame, writer, why = _source(PROFIT, "profit_monthly", period, latest[PROFIT], where, engine)
    if why:
        out.missing[PROFIT] = why
    else:
        row = frame.iloc[0]
        reasons = tuple(r for r in str(row.get("provisional_reasons") or "").split("; ") if r)
        out.profit = Source(
            PROFIT, "profit_monthly", period, latest[PROFIT], frame, writer, row["status"] == "final", reasons
        )

    frame, writer, why = _source(GROWTH, "growth_mrr_monthly", period, latest[GROWTH], where, engine)
    if why:
        out.missing[GROWTH] = why
    else:
        final = frame.iloc[0]["status"] == "final"
        reasons = () if final else ("billing has not delivered every day of the month (Growth status)",)
        out.growth = Source(
            GROWTH, "growth_mrr_monthly", period, latest[GROWTH], frame, writer, final, reasons
        )
        out.growth_accounts = read_partition("growth_accounts_monthly", where, engine=engine)

    frame, writer, why = _source(ENGAGEMENT, "engagement_monthly", period, latest[ENGAGEMENT], where, engine)
    if why:
        out.missing[ENGAGEMENT] = why
    else:
        row = frame.iloc[0]
        through = pd.Timestamp(row["through_date"]).date()
        final = bool(row["complete"]) and through == period_days(period)[1]
        reasons = () if final else (f"engagement month to date through {through}",)
        out.engagement = Source(
            ENGAGEMENT,
            "engagement_monthly",
            parts[ENGAGEMENT],
            latest[ENGAGEMENT],
            frame,
            writer,
            final,
            reasons,
        )
        out.engagement_accounts = read_partition("engagement_accounts_monthly", where, engine=engine)
    return out

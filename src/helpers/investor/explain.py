"""Every investor figure explains itself: the chain from a figure down to the landing files it came from.

:func:`explain` follows one figure of ``investor_monthly`` (``workbook explain --month M METRIC``):

1. the investor run that wrote it (``investor_monthly.run_id``) and whether the month's report is
   published;
2. the upstream runs it read: ``investor_monthly.source_run_id``, the run that wrote the source
   partition (two for a cross-pipeline figure), with its status, ``as_of``, code version and archive;
3. the mart partitions behind it, from ``partition_writes`` (rows, written_at, run id); a partition
   rewritten by another run since the figure was computed is flagged;
4. the landing deliveries each upstream run read (:data:`READS`): every delivery of those sources
   whose partition lies in the month and that had arrived by the run's ``as_of``, with file,
   arrival time and SHA-256 from the landing manifest; how many other deliveries (outside the
   month) the run could see; and the month's deliveries that arrived after it (not in the figure).

:func:`report_links` links each headline figure of the month-end report to the archived run that
computed it. The customer-level rows behind an MRR movement or a customer count are in
:mod:`helpers.investor.explain_accounts`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers.core import config as cfgmod
from helpers.core import paths
from helpers.core.errors import UsageError
from helpers.core.periods import period_days
from helpers.core.timeutil import as_utc
from helpers.investor import aggregate as investor
from helpers.investor import publication as publications
from helpers.investor.metrics import BY_NAME, ENGAGEMENT, GROWTH, METRICS, PIPELINE, PROFIT, TABLE, Metric
from helpers.profit.inputs import AGGREGATE_SOURCES
from helpers.runs import records as runs
from helpers.storage import landing, warehouse

# The landing sources each investor upstream reads (rows or manifests), as its run reads them;
# tests/unit/investor/test_explain.py checks this against what the pipelines' own code reads.
READS: dict[str, tuple[str, ...]] = {
    PROFIT: AGGREGATE_SOURCES,
    GROWTH: (
        "account_db",
        "api_logs",
        "billing_customers",
        "billing_invoices",
        "billing_payments",
        "crm_accounts",
        "crm_stage_history",
        "events",
        "experiment_assignments",
        "fx_rates",
        "sales_records",
        "subscriptions",
    ),
    ENGAGEMENT: ("events", "api_logs"),
}
# Beside a figure's own mart, the partitions that hold its detail (per account, per cost line).
DETAIL_TABLES: dict[str, tuple[str, ...]] = {
    "profit_monthly": ("profit_costs_monthly", "finance_reconciliation"),
    "growth_mrr_monthly": ("growth_accounts_monthly",),
    "engagement_monthly": ("engagement_accounts_monthly",),
}
REPORT_DEPTH = 3  # runs/<pipeline>/<date>/<run_id>/ and runs/published/<report>/<period>/ alike


class NotClosed(UsageError):
    """The month has no investor figures (or not the one asked for): nothing to explain."""


def metric_named(name: str) -> Metric:
    """The investor metric called ``name``; an unknown name is a usage error listing the valid ones."""
    if name in BY_NAME:
        return BY_NAME[name]
    like = [m for m in BY_NAME if name and name.lower() in m] or difflib.get_close_matches(
        name, list(BY_NAME)
    )
    hint = f" (did you mean {' or '.join(like[:3])}?)" if like else ""
    valid = ", ".join(m.name for m in METRICS)
    raise UsageError(f"unknown metric {name!r}{hint}; the investor metrics are: {valid}")


# ---------------------------------------------------------------- the levels of the chain


@dataclass(frozen=True)
class RunInfo:
    """A run as its record has it (``status`` None: no record of that run id)."""

    run_id: str
    pipeline: str | None
    partition: str | None
    status: str | None
    as_of: dt.datetime | None
    code_version: str | None
    archive: str | None

    @property
    def archive_exists(self) -> bool:
        return bool(self.archive) and Path(str(self.archive)).is_dir()

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "partition": self.partition,
            "status": self.status,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "code_version": self.code_version,
            "archive": self.archive,
            "archive_exists": self.archive_exists,
        }


def run_info(run_id: str, *, engine: sa.Engine | None = None) -> RunInfo:
    """The record of ``run_id`` (a :class:`RunInfo` with ``status`` None when there is none)."""
    rec = runs.get_run(run_id, engine=engine)
    if rec is None:
        return RunInfo(run_id, None, None, None, None, None, None)
    return RunInfo(
        rec.run_id, rec.pipeline, rec.logical_date, rec.status, rec.as_of, rec.code_version, rec.archive_path
    )


@dataclass(frozen=True)
class MartPartition:
    """One mart partition as ``partition_writes`` has it, and the run the figure expects there."""

    table: str
    partition: dict[str, Any]
    rows: int | None  # None: never written
    written_at: dt.datetime | None
    run_id: str | None
    expected_run_id: str | None

    @property
    def current(self) -> bool:
        """Still the partition the figure was computed from (same writer)."""
        return self.rows is not None and (self.expected_run_id is None or self.run_id == self.expected_run_id)

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.partition.items())

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "partition": self.partition,
            "rows": self.rows,
            "written_at": self.written_at.isoformat() if self.written_at else None,
            "run_id": self.run_id,
            "expected_run_id": self.expected_run_id,
            "current": self.current,
        }


def mart_partition(
    table: str, partition: dict[str, Any], expected_run_id: str | None, *, engine: sa.Engine | None = None
) -> MartPartition:
    """``partition_writes`` of one partition (rows None when it was never written)."""
    engine = engine or warehouse.get_engine()
    pw = warehouse.partition_writes
    key = warehouse.partition_key(partition)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(pw.c.row_count, pw.c.written_at, pw.c.run_id).where(
                (pw.c.table_name == table) & (pw.c.partition_key == key)
            )
        ).first()
    if row is None:
        return MartPartition(table, dict(partition), None, None, None, expected_run_id)
    written = as_utc(row[1]) if row[1] is not None else None
    return MartPartition(table, dict(partition), int(row[0]), written, row[2], expected_run_id)


@dataclass(frozen=True)
class SourceDeliveries:
    """One source as a run saw it: the month's deliveries it read, and what else there was."""

    source: str
    read: tuple[landing.Delivery, ...]  # partitions in the month, arrived by the run's as_of
    visible_elsewhere: int  # deliveries of other partitions arrived by as_of
    arrived_after: tuple[landing.Delivery, ...]  # the month's deliveries that arrived after as_of
    verified: dict[str, bool] = field(default_factory=dict)  # file -> checksum matches (verify=True)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.read)

    def as_json(self, root: Path) -> dict[str, Any]:
        def one(d: landing.Delivery) -> dict[str, Any]:
            out = {
                "partition": d.partition,
                "file": d.file,
                "path": str(landing.source_dir(self.source, root) / d.file),
                "rows": d.rows,
                "arrived_at": d.arrived_at,
                "sha256": d.sha256,
            }
            if d.file in self.verified:
                out["checksum_ok"] = self.verified[d.file]
            return out

        return {
            "source": self.source,
            "deliveries": [one(d) for d in self.read],
            "rows": self.rows,
            "visible_elsewhere": self.visible_elsewhere,
            "arrived_after": [one(d) for d in self.arrived_after],
        }


@dataclass(frozen=True)
class RunLanding:
    """The landing deliveries one upstream run read for the month."""

    run: RunInfo
    first: dt.date
    last: dt.date
    sources: tuple[SourceDeliveries, ...]

    def as_json(self, root: Path) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "pipeline": self.run.pipeline,
            "as_of": self.run.as_of.isoformat() if self.run.as_of else None,
            "partitions": [self.first.isoformat(), self.last.isoformat()],
            "sources": [s.as_json(root) for s in self.sources],
        }


def source_deliveries(
    source: str, period: str, as_of: dt.datetime | None, *, root: Path, verify: bool = False
) -> SourceDeliveries:
    """The deliveries of ``source`` for the month's partitions that had arrived by ``as_of``."""
    first, last = (d.isoformat() for d in period_days(period))
    cut = as_utc(as_of) if as_of is not None else None
    every = landing.deliveries(source, root=root)
    seen = [d for d in every if cut is None or d.arrived <= cut]
    read = tuple(d for d in seen if first <= d.partition <= last)
    after = tuple(d for d in every if first <= d.partition <= last and cut is not None and d.arrived > cut)
    checked = {}
    if verify:
        base = landing.source_dir(source, root)
        checked = {
            d.file: (base / d.file).is_file() and landing.file_sha256(base / d.file) == d.sha256 for d in read
        }
    return SourceDeliveries(source, read, len(seen) - len(read), after, checked)


def run_landing(run: RunInfo, period: str, *, root: Path, verify: bool = False) -> RunLanding:
    """What ``run`` read of the landing zone for ``period`` (its pipeline's :data:`READS`)."""
    sources = READS.get(run.pipeline or "")
    if sources is None and run.pipeline:
        sources = tuple(cfgmod.get().pipelines.get(run.pipeline).sources)
    first, last = period_days(period)
    found = tuple(
        source_deliveries(s, period, run.as_of, root=root, verify=verify) for s in sorted(sources or ())
    )
    return RunLanding(run, first, last, found)


# ---------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Chain:
    """One investor figure and everything behind it, from the investor run down to landing files."""

    period: str
    metric: Metric
    value: int | float
    status: str
    status_reason: str
    investor_run: RunInfo
    upstream_runs: tuple[RunInfo, ...]
    marts: tuple[MartPartition, ...]
    landing: tuple[RunLanding, ...]
    publication: dict[str, Any]
    landing_root: Path

    @property
    def problems(self) -> list[str]:
        """What does not hold together: missing records or archives, rewritten partitions, bad files."""
        out = []
        for r in (self.investor_run, *self.upstream_runs):
            if r.status is None:
                out.append(f"run {r.run_id}: no run record")
            elif not r.archive_exists:
                out.append(f"run {r.run_id}: archive missing ({r.archive})")
        for m in self.marts:
            if not m.current:
                now = "never written" if m.rows is None else f"now written by {m.run_id}"
                out.append(f"{m.table} {m.label()}: {now}, the figure came from {m.expected_run_id}")
        for rl in self.landing:
            for s in rl.sources:
                bad = [f for f, ok in s.verified.items() if not ok]
                out += [f"{s.source}/{f}: SHA-256 differs from the manifest" for f in bad]
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "metric": self.metric.name,
            "label": self.metric.label,
            "unit": self.metric.unit,
            "value": self.value,
            "status": self.status,
            "status_reason": self.status_reason,
            "publication": self.publication,
            "investor_run": self.investor_run.as_json(),
            "upstream_runs": [r.as_json() for r in self.upstream_runs],
            "mart_partitions": [m.as_json() for m in self.marts],
            "landing_root": str(self.landing_root),
            "landing": [rl.as_json(self.landing_root) for rl in self.landing],
            "problems": self.problems,
        }


def figure_row(period: str, metric: str, *, engine: sa.Engine | None = None) -> pd.Series:
    """The ``investor_monthly`` row of one figure; :class:`NotClosed` when the month or figure is absent."""
    meta = metric_named(metric)
    frame = investor.read_monthly([period], engine=engine)
    if frame.empty:
        raise NotClosed(
            f"{period}: no investor figures: the month has not been closed "
            f"(workbook close --month {period} computes them)"
        )
    row = frame[frame["metric"] == meta.name]
    if row.empty:
        reasons = frame["status_reason"].dropna().astype(str)
        why = next((r for r in reasons if r), "")
        raise NotClosed(
            f"{period}: investor_monthly has no value of {meta.name} (its source {meta.source} published "
            f"none for the month{': ' + why if why else ''})"
        )
    return row.iloc[0]


def value_of(row: pd.Series) -> int | float:
    """A figure's exact value: ``value_int`` for money and counts, ``value`` otherwise."""
    return int(row["value_int"]) if pd.notna(row["value_int"]) else float(row["value"])


def publication_of(period: str, metric: str, *, engine: sa.Engine | None = None) -> dict[str, Any]:
    """Whether the month's report is published (version, the figure as published), and its latest render."""
    current = publications.current(period, engine=engine)
    out: dict[str, Any] = {"published": current is not None}
    if current is not None:
        shown = current.figures.get(metric, {})
        out.update(
            version=current.version,
            path=current.path,
            published_at=current.published_at.isoformat(),
            published_by=current.published_by,
            report_run_id=current.report_run_id,
            published_value=shown.get("value"),
            published_run_id=shown.get("run_id"),
        )
    latest = runs.list_runs(pipeline=publications.REPORT, logical_date=period, limit=1, engine=engine)
    if latest:
        scraps = runs.get_scraps(latest[0].run_id, engine=engine) if latest[0].status == "succeeded" else {}
        out["latest_report"] = {
            "run_id": latest[0].run_id,
            "status": latest[0].status,
            "label": scraps.get("status"),
            "archive": latest[0].archive_path,
        }
    return out


def source_tables(meta: Metric, row: pd.Series) -> list[str]:
    """The marts a figure is read from (``a + b`` for a cross-pipeline figure)."""
    named = row.get("source_table")
    return [t.strip() for t in str(named if _text(named) else meta.table).split("+") if t.strip()]


def _text(value: Any) -> str:
    """A text column's value, ``""`` for NULL."""
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def explain(
    period: str,
    metric: str,
    *,
    engine: sa.Engine | None = None,
    landing_root: Path | None = None,
    verify: bool = False,
) -> Chain:
    """The chain behind one investor figure of ``period`` (see the module doc for the levels)."""
    engine = engine or warehouse.get_engine()
    root = landing_root or paths.landing_dir()
    meta = metric_named(metric)
    row = figure_row(period, meta.name, engine=engine)
    inv = run_info(str(row["run_id"]), engine=engine)
    ids = [r for r in _text(row.get("source_run_id")).split(";") if r and r != "None"]
    upstream = tuple(run_info(r, engine=engine) for r in dict.fromkeys(ids))
    by_pipeline = {r.pipeline: r.run_id for r in upstream}
    part = {"period": period}
    marts = []
    for table in source_tables(meta, row):
        writer = by_pipeline.get(_pipeline_of(table, upstream), None)
        marts.append(mart_partition(table, part, writer, engine=engine))
        marts += [mart_partition(t, part, writer, engine=engine) for t in DETAIL_TABLES.get(table, ())]
    marts.append(mart_partition(TABLE, part, inv.run_id, engine=engine))
    found = tuple(run_landing(r, period, root=root, verify=verify) for r in upstream if r.status is not None)
    reason = _text(row.get("status_reason"))
    return Chain(period, meta, value_of(row), str(row["status"]), reason, inv, upstream, tuple(marts), found,
                 publication_of(period, meta.name, engine=engine), root)  # fmt: skip


_TABLE_PIPELINE = {m.table: m.source for m in METRICS if m.source != PIPELINE}


def _pipeline_of(table: str, upstream: tuple[RunInfo, ...]) -> str | None:
    """The upstream pipeline that writes ``table`` (the only upstream when there is one)."""
    if table in _TABLE_PIPELINE:
        return _TABLE_PIPELINE[table]
    return upstream[0].pipeline if len(upstream) == 1 else None


# ---------------------------------------------------------------- links from the report


@dataclass(frozen=True)
class RunLink:
    """Where a report figure links to: the archived run that computed it."""

    metric: str
    run_id: str
    pipeline: str
    href: str | None  # None: the run has no archive


def archive_href(
    archive: str | None, *, runs_root: Path | None = None, depth: int = REPORT_DEPTH
) -> str | None:
    """A link to an archived run's ``notebook.html`` from a report ``depth`` folders below ``runs/``.

    Relative when the archive is under ``runs/`` (the archive and the published copy of a report
    sit at the same depth, so the same link works from both, and from a copy of the whole folder);
    a ``file:`` URI otherwise.
    """
    if not archive:
        return None
    target = Path(archive) / "notebook.html"
    base = (runs_root or paths.runs_dir()).resolve()
    try:
        rel = target.resolve().relative_to(base)
    except ValueError:
        return target.resolve().as_uri()
    return "/".join([".."] * depth + list(rel.parts))


def report_links(
    period: str, frame: pd.DataFrame | None = None, *, engine: sa.Engine | None = None
) -> dict[str, RunLink]:
    """For each figure of ``period``: the archived run that computed it.

    An upstream's figure links to the upstream run that wrote it (``source_run_id``); a
    cross-pipeline figure to the investor run that computed it from both.
    """
    frame = investor.read_monthly([period], engine=engine) if frame is None else frame
    mine = frame[frame["period"] == period]
    records: dict[str, RunInfo] = {}
    out = {}
    for r in mine.itertuples(index=False):
        single = str(r.source_run_id or "")
        rid = single if r.source_pipeline != PIPELINE and single and ";" not in single else str(r.run_id)
        if rid not in records:
            records[rid] = run_info(rid, engine=engine)
        info = records[rid]
        pipeline = info.pipeline or str(r.source_pipeline)
        out[str(r.metric)] = RunLink(str(r.metric), rid, pipeline, archive_href(info.archive))
    return out


def display_path(path: str | os.PathLike[str] | None) -> str:
    """A path for people: relative to the workbook home when under it."""
    if not path:
        return ""
    p, home = Path(path), paths.workbook_home()
    for candidate in (p, p.resolve()):
        try:
            return str(candidate.relative_to(home))
        except ValueError:
            continue
    return str(p)

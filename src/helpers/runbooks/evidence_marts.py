"""Evidence from the mart partitions: row-count anomalies, NULLs and missing columns, duplicate rows.

The row-count and NULL checks are the monitors' own (``checks.monitors.partition_checks``), evaluated
now on the context's partition (else each mart's latest) and never stored: :func:`partition_results`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from helpers.checks.framework import CheckResult
from helpers.runbooks.context import RunbookContext
from helpers.runbooks.evidence import Evidence
from helpers.storage import warehouse
from helpers.storage.warehouse import get_engine


def _latest_label(ctx: RunbookContext, table: str) -> str | None:
    writes = ctx.snapshot.writes
    mine = writes[(writes["table_name"] == table) & writes["label"].notna()]
    return str(mine.sort_values(["label", "written_at"]).iloc[-1]["label"]) if len(mine) else None


def partition_results(ctx: RunbookContext, kind: str) -> list[CheckResult]:
    """The built-in ``row_count`` or ``nulls`` checks of the context's partition (else each mart's
    latest partition) for the pipelines in scope, evaluated now; nothing is stored."""
    from helpers.checks import monitors

    out: list[CheckResult] = []
    for pid in ctx.scope:
        if ctx.partition and ctx.partition != "current":
            labels = {ctx.partition}
        else:
            labels = {label for t in ctx.pipeline_tables(pid) if (label := _latest_label(ctx, t))}
        for label in sorted(labels):
            found = monitors.partition_checks(pid, label, as_of=ctx.as_of, config=ctx.config)
            out += [r for r in found if r.kind == kind]
    if ctx.check_id and any(r.check_id == ctx.check_id for r in out):
        out = [r for r in out if r.check_id == ctx.check_id]
    return out


def results_frame(results: Sequence[CheckResult], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Check results as a table: check, partition, status, severity, ``extra`` evidence keys, summary."""
    rows = [
        dict(
            check_id=r.check_id,
            partition=r.partition,
            status=r.status,
            severity=r.severity,
            **{k: r.evidence.get(k) for k in extra},
            summary=r.summary,
        )
        for r in results
    ]
    return pd.DataFrame(rows, columns=["check_id", "partition", "status", "severity", *extra, "summary"])


def row_count_anomalies(ctx: RunbookContext) -> Evidence:
    """Row-count anomalies now: each mart partition in scope against its baseline (the monitor's rule)."""
    results = partition_results(ctx, "row_count")
    frame = results_frame(results, ("rows", "baseline", "variance", "direction"))
    bad = [r for r in results if r.failed]
    if bad:
        detail = "; ".join(r.summary for r in bad)
    elif results:
        detail = f"{len(results)} partition(s) within their baseline: " + "; ".join(
            r.summary for r in results[:3]
        )
    else:
        detail = "no mart partitions written yet"
    direction = bad[0].evidence.get("direction") if bad else None
    data = {"direction": direction, "failing": [r.check_id for r in bad]}
    return Evidence(bool(bad), detail, frame, {**data, "targets": [[r.pipeline, r.partition] for r in bad]})


def null_columns(ctx: RunbookContext) -> Evidence:
    """NULLs (or missing columns) in critical columns now, per mart partition in scope."""
    results = partition_results(ctx, "nulls")
    frame = results_frame(results, ("rows", "null_counts", "missing_columns"))
    bad = [r for r in results if r.failed]
    samples = {r.check_id: r.evidence.get("samples") for r in bad}
    missing = sorted({c for r in bad for c in r.evidence.get("missing_columns") or []})
    if bad:
        detail = "; ".join(r.summary for r in bad)
    else:
        detail = (
            f"no NULLs in {len(results)} partition(s)"
            if results
            else "no mart partitions with critical columns yet"
        )
    targets = [[r.pipeline, r.partition] for r in bad]
    return Evidence(
        bool(bad), detail, frame, {"samples": samples, "missing_columns": missing, "targets": targets}
    )


def missing_columns(ctx: RunbookContext, nulls: Evidence) -> Evidence:
    """Schema drift: a critical column is missing from the mart (renamed or dropped upstream)."""
    missing = nulls.data.get("missing_columns") or []
    detail = (
        f"missing critical column(s): {', '.join(missing)}" if missing else "every critical column exists"
    )
    return Evidence(bool(missing), detail)


def made_inside(nulls: Evidence, *others: Evidence) -> Evidence:
    """By elimination: NULLs are there and none of ``others`` (schema, upstream) explains them,
    so the pipeline made them (NULL handling, a join that finds no match, a wrong type)."""
    explained = [e.detail for e in others if e.holds]
    holds = nulls.holds and not explained
    if holds:
        detail = f"no upstream or schema cause: the pipeline's own step produced them ({nulls.detail})"
    else:
        detail = f"explained elsewhere: {'; '.join(explained)}" if explained else "no NULLs"
    return Evidence(holds, detail, data={"targets": nulls.data.get("targets", [])})


def duplicate_rows(ctx: RunbookContext) -> Evidence:
    """Duplicates: identical rows within the anomalous mart partitions (join fan-out, re-delivery)."""
    rows = []
    engine = get_engine()
    for result in partition_results(ctx, "row_count"):
        table = result.check_id.rsplit(".row_count.", 1)[-1]
        writes = ctx.snapshot.writes
        keys = writes[(writes["table_name"] == table) & (writes["label"] == result.partition)][
            "partition_key"
        ]
        if not len(keys):
            continue
        where = json.loads(keys.iloc[-1])
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            cond = sa.and_(
                sa.true(), *(t.c[k] == warehouse.partition_value(t.c[k], v) for k, v in where.items())
            )
            total = conn.execute(sa.select(sa.func.count()).select_from(t).where(cond)).scalar_one()
            distinct = conn.execute(
                sa.select(sa.func.count()).select_from(sa.select(t).where(cond).distinct().subquery())
            ).scalar_one()
        rows.append(
            dict(
                table=table,
                partition=result.partition,
                rows=int(total),
                distinct_rows=int(distinct),
                duplicates=int(total - distinct),
            )
        )
    frame = pd.DataFrame(rows, columns=["table", "partition", "rows", "distinct_rows", "duplicates"])
    bad = frame[frame["duplicates"] > 0] if len(frame) else frame
    detail = (
        "; ".join(
            f"{r.table} {r.partition}: {r.duplicates} duplicate row(s) of {r.rows}" for r in bad.itertuples()
        )
        if len(bad)
        else "no duplicate rows"
    )
    return Evidence(bool(len(bad)), detail, frame)

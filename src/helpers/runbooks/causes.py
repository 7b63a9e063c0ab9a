"""Which cause a condition is in each family: the failure-catalogue id the monitors use, else a generic one.

The tables are the catalogue's (``helpers.core.catalogue``: FRESHNESS, ROW_DROP, ROW_RISE, NULLS); a
pipeline outside them gets the generic cause named after the runbook that handles it.
"""

from __future__ import annotations

from collections.abc import Mapping

from helpers.core import catalogue
from helpers.runbooks.context import RunbookContext
from helpers.runbooks.evidence import Evidence


def freshness_cause(ctx: RunbookContext, pipeline: str | None = None) -> str:
    """What the freshness monitor calls lateness of this pipeline's family (stale_data for Profit);
    for the context's own source-freshness check, the source's cause (``catalogue.SOURCE``)."""

    if pipeline is None and ctx.check_id:
        ref = catalogue.parse_check_id(ctx.check_id, ctx.pipeline)
        if ref.kind == "source_freshness" and ref.subject in catalogue.SOURCE:
            return catalogue.SOURCE[ref.subject]
    p = ctx.pipeline_config(pipeline or (ctx.scope[0] if ctx.scope else None))
    family = p.family if p else (ctx.family or "profit")
    return catalogue.FRESHNESS.get(family, "stale_data")


def family_cause(ctx: RunbookContext, table: Mapping[str, str], default: str) -> str:
    """``table[family]`` of the pipeline in scope (e.g. ``catalogue.ROW_DROP``), else ``default``."""
    p = ctx.pipeline_config(ctx.scope[0] if len(ctx.scope) == 1 else None)
    return table.get(p.family, default) if p else default


def row_count_cause(ctx: RunbookContext, anomaly: Evidence) -> str:
    """What the row-count monitor calls an anomaly in this family: a drop or a rise
    (``catalogue.ROW_DROP`` / ``catalogue.ROW_RISE``), else ``row_count_anomaly``."""

    rise = anomaly.data.get("direction") == "rise"
    table = catalogue.ROW_RISE if rise else catalogue.ROW_DROP
    return family_cause(ctx, table, "row_count_anomaly")


def null_cause(ctx: RunbookContext) -> str:
    """What the NULL monitor calls NULLs in this family (``math_errors`` for Profit), else
    ``null_critical_columns``."""

    return family_cause(ctx, catalogue.NULLS, "null_critical_columns")


def schema_cause(ctx: RunbookContext) -> str:
    """A missing column: ``schema_change`` for Engagement (events), else the family's NULL cause."""
    return family_cause(ctx, {"engagement": "schema_change"}, "") or null_cause(ctx)


def compute_cause(ctx: RunbookContext) -> str:
    """Running out of memory: ``data_skew_oom`` for Engagement, else the family's lateness."""
    return family_cause(ctx, {"engagement": "data_skew_oom"}, "") or freshness_cause(ctx)

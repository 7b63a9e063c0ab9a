"""Evidence and verification of the ``month_end_close`` runbook (``notebooks/runbooks/month_end_close.ipynb``).

The runbook's checklist is the close's own (:func:`helpers.investor.close.close_status`: runs,
checks, monitors, sources) plus the runbook's two sections (:func:`helpers.investor.close.readiness_items`:
each investor pipeline covers the month, no alert of it is open), as a :class:`~helpers.runbooks.kit.Evidence`
the diagnosis can hold. The symptom holds only when items are left *and* the close is at risk (its
deadline within ``monitors.sla_at_risk_hours``): items still open days before the deadline are work
in progress, as the monitor agrees. ``data["targets"]`` are the partitions a re-run can fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from helpers.core import config as cfgmod
from helpers.core.periods import period_days
from helpers.investor import close
from helpers.runbooks import kit

CHECKLIST_COLUMNS = ["section", "pipeline", "item", "ok", "detail", "owner"]


def close_checklist(ctx: kit.RunbookContext, period: str | None = None) -> kit.Evidence:
    """The close checklist of ``period`` (default: the close in progress at ``ctx.as_of``), one row per item.

    ``data``: ``period``, ``deadline``, ``hours_left``, ``at_risk`` and ``targets``.
    """
    period = period or close.close_in_progress(ctx.as_of, ctx.config)
    status = close.close_status(period, ctx.as_of, config=ctx.config)
    coverage = close.month_coverage(period, ctx.as_of, ctx.snapshot.runs, ctx.config)
    items = [*status.items, *close.readiness_items(period, ctx.as_of, coverage, config=ctx.config)]
    frame = pd.DataFrame([i.as_json() for i in items], columns=CHECKLIST_COLUMNS)
    left = kit.hours(status.deadline - ctx.as_of)
    at_risk = left <= ctx.config.pipelines.monitors.sla_at_risk_hours
    data = {
        "period": period,
        "deadline": status.deadline,
        "hours_left": left,
        "at_risk": at_risk,
        "targets": rerun_targets(items, coverage, period, ctx.as_of, ctx.config),
    }
    not_done = frame[~frame["ok"]] if len(frame) else frame
    return kit.Evidence(bool(len(not_done)) and at_risk, _checklist_line(frame, data), frame, data)


def _checklist_line(frame: pd.DataFrame, data: Mapping[str, Any]) -> str:
    """``close 2026-10 (at risk, 20 h left, deadline …): 2 of 31 item(s) not done: …``."""
    period, left, deadline = data["period"], data["hours_left"], kit.utc_text(data["deadline"])
    not_done = frame[~frame["ok"]] if len(frame) else frame
    if not len(not_done):
        return f"close {period}: all {len(frame)} item(s) done (deadline {deadline})"
    when = (
        "MISSED, " if left <= 0 else "at risk, " if data["at_risk"] else "in progress, "
    ) + f"{left:g} h left"
    missing = "; ".join(f"{r.pipeline} {r.item}" for r in not_done.itertuples())
    return f"close {period} ({when}, deadline {deadline}): {len(not_done)} of {len(frame)} item(s) not done: {missing}"


def rerun_targets(
    items: Sequence[close.CloseItem],
    coverage: Mapping[str, dt.date | None],
    period: str,
    as_of: dt.datetime,
    config: cfgmod.WorkbookConfig,
) -> list[list[str]]:
    """``[pipeline, partition]`` pairs a re-run can fix, for the items not done.

    A failed or missing run or a failing check: the pipeline's close partition. The investor
    aggregate older than its upstreams: its month. A month not covered: the month (monthly
    pipelines), else the days after the last covered one, up to the day before ``as_of``.
    """
    parts = close.close_partitions(period, as_of)
    first, need = period_days(period)
    out: list[list[str]] = []
    for i in items:
        if i.ok:
            continue
        if i.section == "runs" and i.item.startswith("ran after"):
            pairs = [[i.pipeline, period]]
        elif i.section in ("runs", "checks"):
            pairs = [[i.pipeline, parts.get(i.pipeline, period)]]
        elif i.section == "coverage" and config.pipelines.pipelines[i.pipeline].partition == "month":
            pairs = [[i.pipeline, period]]
        elif i.section == "coverage":
            through = coverage.get(i.pipeline)
            start = max(first, (through or first - dt.timedelta(days=1)) + dt.timedelta(days=1))
            last = min(need, as_of.date() - dt.timedelta(days=1))
            days = pd.date_range(start, last, freq="D") if start <= last else []
            pairs = [[i.pipeline, d.date().isoformat()] for d in days]
        else:
            pairs = []
        out += [p for p in pairs if p not in out]
    return out


def close_items(checklist: kit.Evidence, item: str = "", *, section: str = "") -> kit.Evidence:
    """The rows of a checklist not done whose item starts with ``item`` (and, given, of ``section``):
    a finding even before the close is at risk (the work left), with those pipelines' targets.

    Also reads the pipeline items of ``helpers.profit.runbook.close_pipeline_items`` (by item name).
    """
    frame = checklist.frame
    if len(frame):
        keep = ~frame["ok"].astype(bool) & frame["item"].str.startswith(item)
        if section:
            keep &= frame["section"] == section
        bad = frame[keep]
    else:
        bad = frame
    what = item or section
    detail = "; ".join(f"{r.pipeline}: {r.detail}" for r in bad.itertuples()) or f"'{what}' done everywhere"
    pipelines = set(bad["pipeline"]) if len(bad) else set()
    targets = [t for t in checklist.data.get("targets", []) if t[0] in pipelines]
    return kit.Evidence(bool(len(bad)), detail, bad, {"targets": targets})


def verify_close(ctx: kit.RunbookContext, period: str) -> kit.Verification:
    """Re-run the month-end close SLA check of every investor pipeline for ``period``."""
    from helpers.checks import monitors

    pipelines = close.investor_pipelines(ctx.config)
    found = monitors.evaluate_monitors(ctx.as_of, pipelines=pipelines, config=ctx.config)
    results = [r for r in found if r.check_id.endswith(".sla.month_end_close") and r.partition == period]
    return kit.recorded_verification(ctx, results, "monitor")

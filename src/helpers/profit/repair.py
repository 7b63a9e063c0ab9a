"""What a Profit runbook's fix does: re-extract rows from the source system, re-run months.

- *re-extract* (:func:`reextract`): ask the source again for the rows involved and land what it
  now holds differently (rows it had lost, corrected values) as a new delivery, arrived at
  ``as_of``; the pipeline reads the latest version of every key, so the correction wins. The source
  system comes from ``helpers.storage.source_systems`` (on the demo company, the generator's clean
  world for the same spec); where no provider knows the landing zone, the source's own extractor
  must do it (docs/extract.md) and the fix says so;
- *re-run* (:func:`rerun_months`): ``backfill --force`` of the months involved, then the dependants
  that had been built from them (``profit_unit``, ``investor_aggregate``), in order, on one clock.

A :class:`Plan` names both; :func:`apply_plan` carries one out. Nothing here reads the wall clock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core.periods import month_bounds, period_days
from helpers.profit import inputs
from helpers.profit.checks import AGGREGATE
from helpers.profit.inputs import META, utc_day
from helpers.runbooks import kit
from helpers.runs.dag import Dag
from helpers.storage import landing
from helpers.storage.source_systems import source_system

KEYS = {**inputs.KEYS, "billing_payments": ("payment_id",)}  # payments are read as a manifest only
DAYS_ONLY = {"source", "days", "why"}  # a request for every row of some days (merged by source)


@dataclass
class Plan:
    """What would repair the findings: rows to re-extract, months to re-run."""

    reextract: list[dict[str, Any]] = field(default_factory=list)
    months: list[str] = field(default_factory=list)

    def add(self, other: Plan) -> None:
        """Merge ``other`` in: one re-extraction per source for requests by days only (their days
        united), other requests once each."""
        for r in other.reextract:
            by_days = [
                x for x in self.reextract if x["source"] == r["source"] and set(x) == set(r) == DAYS_ONLY
            ]
            if by_days:
                by_days[0]["days"] = sorted(set(by_days[0]["days"]) | set(r["days"]))
            elif r not in self.reextract:
                self.reextract.append(dict(r))
        self.months = sorted(set(self.months) | set(other.months))

    def describe(self) -> str:
        parts = [_describe_request(r) for r in self.reextract]
        if self.months:
            parts.append(f"re-run profit_aggregate {', '.join(self.months)} and the dependants built from it")
        return "; then ".join(parts) if parts else "nothing to do"

    def as_json(self) -> dict[str, Any]:
        return {"reextract": self.reextract, "months": self.months}


def _describe_request(r: dict[str, Any]) -> str:
    what = r["source"]
    if r.get("keys"):
        what += f" {len(r['keys'])} row(s) ({', '.join(map(str, r['keys'][:4]))}{' …' if len(r['keys']) > 4 else ''})"
    if r.get("days"):
        what += f" for {', '.join(r['days'])}"
    if r.get("category"):
        what += f" category {r['category']} incurred in {r['month']}"
    return f"re-extract {what} ({r['why']})"


def _select(frame: pd.DataFrame, source: str, request: dict[str, Any]) -> pd.DataFrame:
    if request.get("keys"):
        key = KEYS[source][0]
        frame = frame[frame[key].astype(str).isin({str(k) for k in request["keys"]})]
    if request.get("days"):
        frame = frame[frame["_partition"].isin(request["days"])]
    if request.get("category"):
        first, stop = month_bounds(request["month"])
        day = utc_day(frame["incurred_date"])
        frame = frame[(frame["category"] == request["category"]) & (day >= first) & (day < stop)]
    return frame


def reextract(
    request: dict[str, Any], *, as_of: dt.datetime, system: Path | Callable[[], Path] = source_system
) -> dict[str, Any]:
    """Re-extract the rows ``request`` names (``source`` with ``keys``, ``days`` or ``category`` +
    ``month``) and land those the source holds differently from every landed version.

    Rows are compared on their data columns as text, as the pipeline's re-sync detection does, so
    an unchanged row is never delivered again (it would count as a duplicate). New rows land as one
    delivery per original partition, arrived at ``as_of``. Returns what was landed.
    """
    source = request["source"]
    root = system() if callable(system) else system
    truth = _select(landing.read_source(source, as_of=as_of, root=root, with_arrival=True), source, request)
    have = landing.read_source(source, as_of=as_of)
    data_cols = [c for c in truth.columns if c not in META]
    seen = (
        set(have.reindex(columns=data_cols).astype(str).itertuples(index=False, name=None))
        if len(have)
        else set()
    )
    fresh = [tuple(r) not in seen for r in truth[data_cols].astype(str).itertuples(index=False, name=None)]
    new = truth[pd.Series(fresh, index=truth.index, dtype=bool)]
    landed = []
    for part, rows in new.groupby("_partition", sort=True):
        d = landing.write_delivery(
            source, str(part), rows[data_cols].reset_index(drop=True), arrived_at=as_of
        )
        landed.append({"partition": d.partition, "file": d.file, "rows": d.rows})
    key = KEYS[source][0]
    return {"source": source, "asked": len(truth), "landed_rows": int(len(new)),
            "keys": sorted(new[key].astype(str))[:50] if key in new else [], "deliveries": landed}  # fmt: skip


def rerun_months(ctx: kit.RunbookContext, months: Sequence[str]) -> list[dict[str, Any]]:
    """``backfill --force`` of ``profit_aggregate`` for ``months``, then of each dependant partition
    of those months that had been built (it was built from the bad figures), in DAG order, on one
    clock (so every re-run starts after what it reads)."""
    from helpers.runs import orchestrate

    clock = ctx.clock
    graph = Dag.from_config(ctx.config.pipelines)
    runs = ctx.snapshot.runs
    built = set(
        zip(
            runs.loc[runs["status"] == "succeeded", "pipeline"],
            runs.loc[runs["status"] == "succeeded", "logical_date"].astype(str),
            strict=True,
        )
    )
    order = [AGGREGATE] + [p for p in graph.order() if p in graph.descendants(AGGREGATE)]
    out: list[dict[str, Any]] = []
    for pipeline in order:
        for month in months:
            if pipeline != AGGREGATE and (pipeline, month) not in built:
                continue
            first, last = period_days(month)
            outcomes = orchestrate.backfill(pipeline, first, last, clock=clock, as_of=ctx.as_of, force=True,
                                            downstream=False, config=ctx.config)  # fmt: skip
            out += [o.as_json() for o in outcomes]
    return out


def apply_plan(ctx: kit.RunbookContext, plan: Plan) -> dict[str, Any]:
    """Carry out ``plan``: every re-extraction, then the re-runs."""
    extracted = [reextract(r, as_of=ctx.as_of) for r in plan.reextract]
    ran = rerun_months(ctx, plan.months) if plan.months else []
    failed = [r for r in ran if r.get("status") not in ("succeeded", "skipped")]
    if failed:
        raise RuntimeError(f"re-run did not succeed: {json.dumps(failed, default=str)[:600]}")
    return {"reextracted": extracted, "reruns": ran}

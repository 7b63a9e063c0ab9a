"""The investor aggregate: the month's investor figures from Profit, Growth and Engagement.

``investor_aggregate`` (monthly, team-owned) reads what its three upstreams published for the
month (:mod:`helpers.investor.inputs`: which upstream run counts, and each figure's status),
validates them against each other (:mod:`helpers.investor.cross_checks`) and writes
``investor_monthly`` in long form (:mod:`helpers.investor.metrics`): one row per metric with its
value, unit, status (``final``/``provisional`` and why) and provenance (the source pipeline, table
and the run id that wrote the source partition), so every number in the investor report can be
traced to the run that produced it. A cross-pipeline figure is final when both sides are.

The checks of ``investor_aggregate``, run right after the write, are the cross-pipeline
validations and ``upstreams_succeeded`` (critical): every upstream's run for the month succeeded;
without one, its figures are absent from ``investor_monthly`` (never stale rows of an older run).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from helpers import checks
from helpers.core.money import half_even
from helpers.core.timeutil import naive_utc
from helpers.investor.cross_checks import (
    ENGAGED_PAYING_MIN_SHARE,
    REVENUE_MRR_TOLERANCE,
    CrossCheck,
    MrrBridge,
    engaged_accounts,
    figures_consistent,
    revenue_vs_mrr,
)
from helpers.investor.inputs import Inputs, Source, SourceRun
from helpers.investor.metrics import (
    BY_NAME,
    COLUMNS,
    ENGAGEMENT_COLUMNS,
    GROWTH,
    GROWTH_COLUMNS,
    MART_TYPES,
    METRICS,
    PIPELINE,
    PROFIT,
    PROFIT_COLUMNS,
    TABLE,
)
from helpers.storage import warehouse

# ---------------------------------------------------------------- the figures (pure)


def _num(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def profit_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """Profit's metrics from a ``profit_monthly`` row (``None`` where the mart has none)."""
    out = {c: _num(row.get(c)) for c in PROFIT_COLUMNS}
    for c in PROFIT_COLUMNS:
        if c != "margin" and out[c] is not None:
            out[c] = int(out[c])
    if out["margin"] is not None:
        out["margin"] = float(out["margin"])
    return out


def growth_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """Growth's metrics from a ``growth_mrr_monthly`` row, with ARR, ARPA and logo churn derived."""
    out: dict[str, Any] = {}
    for c in GROWTH_COLUMNS:
        v = _num(row.get(c))
        out[c] = None if v is None else (float(v) if c in ("nrr", "grr") else int(v))
    ending, customers, start = out["ending_mrr_usd_cents"], out["customers_end"], out["customers_start"]
    out["arr_usd_cents"] = 12 * ending
    out["arpa_usd_cents"] = half_even(ending, customers) if customers else None
    out["logo_churn_rate"] = out["churned_customers"] / start if start else None  # full precision
    return out


def engagement_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """Engagement's metrics from an ``engagement_monthly`` row."""
    out: dict[str, Any] = {}
    for metric, col in ENGAGEMENT_COLUMNS.items():
        v = _num(row.get(col))
        out[metric] = None if v is None else (float(v) if metric in ("dau_avg", "stickiness") else int(v))
    return out


@dataclass
class Figures:
    """The month's investor figures: the long-form mart rows and the cross-pipeline validations."""

    period: str
    as_of: dt.datetime
    run_id: str
    monthly: pd.DataFrame
    cross_checks: dict[str, CrossCheck]
    missing: dict[str, str]
    source_runs: dict[str, SourceRun]

    @property
    def status(self) -> str:
        """``final`` when every upstream is present and final, else ``provisional``."""
        if self.missing or self.monthly.empty:
            return "provisional"
        return "final" if (self.monthly["status"] == "final").all() else "provisional"

    @property
    def provisional_reasons(self) -> list[str]:
        """Why the month is provisional: missing upstreams first, then each source's reasons."""
        out = [f"{pid}: {why}" for pid, why in self.missing.items()]
        if not self.monthly.empty:
            prov = self.monthly[self.monthly["status"] != "final"]
            for (pipeline, reason), _g in prov.groupby(["source_pipeline", "status_reason"], sort=True):
                if pipeline != PIPELINE:
                    out += [f"{pipeline}: {r}" for r in str(reason).split("; ") if r]
        return list(dict.fromkeys(out))

    def value(self, metric: str) -> Any:
        """The value of one metric (``None`` if not written)."""
        row = self.monthly[self.monthly["metric"] == metric]
        if row.empty:
            return None
        r = row.iloc[0]
        return int(r["value_int"]) if pd.notna(r["value_int"]) else float(r["value"])

    def checks_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(c.name, "pass" if c.passed else "fail", c.summary) for c in self.cross_checks.values()],
            columns=["validation", "status", "summary"],
        )


def _rows(
    values: Mapping[str, Any], source: Source | None, *, pipeline: str, table: str, status: str, reason: str
) -> list[dict[str, Any]]:
    out = []
    for metric, value in values.items():
        if value is None:  # no value (e.g. margin without revenue): no row, never a NULL value
            continue
        unit = BY_NAME[metric].unit
        exact = unit in ("usd_cents", "count") or (unit == "users" and metric == "mau")
        out.append(
            {
                "metric": metric,
                "value": float(value),
                "value_int": int(value) if exact else None,
                "unit": unit,
                "status": status,
                "status_reason": reason,
                "source_pipeline": pipeline,
                "source_table": table,
                "source_run_id": source.written_by if source else None,
            }
        )
    return out


def build(inputs: Inputs, *, run_id: str, tolerance: float = REVENUE_MRR_TOLERANCE,
          min_engaged_share: float = ENGAGED_PAYING_MIN_SHARE) -> Figures:  # fmt: skip
    """The month's long-form figures and cross-pipeline validations from :class:`Inputs` (pure)."""
    rows: list[dict[str, Any]] = []
    pv = gv = None
    for src, values_of in (
        (inputs.profit, profit_values),
        (inputs.growth, growth_values),
        (inputs.engagement, engagement_values),
    ):
        if src is None:
            continue
        values = values_of(src.row)
        rows += _rows(values, src, pipeline=src.pipeline, table=src.table, status=src.status,
                      reason="; ".join(src.reasons))  # fmt: skip
        if src.pipeline == PROFIT:
            pv = values
        elif src.pipeline == GROWTH:
            gv = values
    cross: dict[str, CrossCheck] = {"figures_consistent": figures_consistent(pv, gv)}
    if inputs.profit is not None and inputs.growth is not None:
        assert pv is not None and gv is not None
        cross["revenue_vs_mrr"] = revenue_vs_mrr(
            pv["revenue_usd_cents"],
            pv["written_off_usd_cents"] or 0,
            gv["starting_mrr_usd_cents"],
            gv["ending_mrr_usd_cents"],
            bridge=MrrBridge.from_row(inputs.growth.row),
            tolerance=tolerance,
        )
    if inputs.growth is not None and inputs.engagement is not None:
        cross["engaged_accounts"] = engaged_accounts(
            inputs.growth_accounts, inputs.engagement_accounts, min_share=min_engaged_share
        )
    pairs = {
        "revenue_vs_mrr": (inputs.profit, inputs.growth),
        "engaged_accounts": (inputs.growth, inputs.engagement),
    }
    for name, check in cross.items():
        if not check.values:
            continue
        a, b = pairs[name]
        assert a is not None and b is not None
        final = a.final and b.final
        reason = "; ".join(r for s in (a, b) if not s.final for r in s.reasons)
        rows += [
            {**r, "source_run_id": f"{a.written_by};{b.written_by}", "source_table": f"{a.table} + {b.table}"}
            for r in _rows(check.values, None, pipeline=PIPELINE, table="", status="final" if final else "provisional",
                           reason=reason)
        ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("period", "run_id", "as_of")])
    order = {m.name: i for i, m in enumerate(METRICS)}
    frame = frame.sort_values("metric", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    frame.insert(0, "period", inputs.period)
    frame["value_int"] = frame["value_int"].astype("Int64")
    frame["run_id"] = run_id
    frame["as_of"] = pd.Timestamp(inputs.as_of).tz_convert(None)
    return Figures(inputs.period, inputs.as_of, run_id, frame[list(COLUMNS)], cross, dict(inputs.missing),
                   dict(inputs.runs))  # fmt: skip


def write(figures: Figures, *, engine: sa.Engine | None = None) -> int:
    """Replace the month's partition of ``investor_monthly`` (atomic, idempotent); rows written."""
    return warehouse.replace_partition(
        TABLE,
        figures.monthly,
        {"period": figures.period},
        written_at=naive_utc(figures.as_of),
        run_id=figures.run_id,
        engine=engine,
        dtype=MART_TYPES,
    )


# ---------------------------------------------------------------- checks (run right after the write)


def _figures(ctx: checks.CheckContext) -> Figures:
    found = ctx.data.get("figures")
    if not isinstance(found, Figures):
        raise TypeError("investor checks need context={'figures': investor.Figures}")
    return found


@checks.check(f"{PIPELINE}.upstreams_succeeded", pipeline=PIPELINE, severity="critical",
              catalogue_id="upstream_missing")  # fmt: skip
def upstreams_succeeded(ctx: checks.CheckContext) -> checks.Outcome:
    """Every upstream's run for the month succeeded and published its partition."""
    fig = _figures(ctx)
    runs_ = {p: r.describe() for p, r in fig.source_runs.items()}
    if fig.missing:
        text = "; ".join(f"{p}: {why}" for p, why in fig.missing.items())
        return checks.fail(f"{fig.period}: figures missing: {text}", missing=fig.missing, runs=runs_,
                           upstream=next(iter(fig.missing)))  # fmt: skip
    return checks.ok(f"{fig.period}: Profit, Growth and Engagement published the month", runs=runs_)


def _cross(name: str) -> Any:
    def fn(ctx: checks.CheckContext) -> checks.Outcome:
        fig = _figures(ctx)
        found = fig.cross_checks.get(name)
        if found is None:
            return checks.ok(f"{fig.period}: not evaluated (an upstream is missing; see upstreams_succeeded)")
        outcome = checks.ok if found.passed else checks.fail
        return outcome(f"{fig.period}: {found.summary}", **found.evidence)

    return fn


checks.register(checks.Check(f"{PIPELINE}.revenue_vs_mrr", PIPELINE, _cross("revenue_vs_mrr"),
                             catalogue_id="growth_revenue_mismatch",
                             description="Recognised revenue (Profit) against the MRR run-rate (Growth)"))  # fmt: skip
checks.register(checks.Check(f"{PIPELINE}.engaged_accounts", PIPELINE, _cross("engaged_accounts"),
                             runbook="notebooks/runbooks/month_end_close.ipynb",
                             description="Paying companies (Growth) with activity (Engagement)"))  # fmt: skip
checks.register(checks.Check(f"{PIPELINE}.figures_consistent", PIPELINE, _cross("figures_consistent"),
                             severity="critical", catalogue_id="math_errors",
                             description="The identities between the investor figures hold"))  # fmt: skip


def headline_scraps(figures: Figures, results: Sequence[checks.CheckResult]) -> dict[str, Any]:
    """What the notebook glues: status and why, every metric's value, sources and check outcomes."""
    values = {m: figures.value(m) for m in figures.monthly["metric"]}
    return {
        "period": figures.period,
        "status": figures.status,
        "provisional_reasons": figures.provisional_reasons,
        "missing_sources": dict(figures.missing),
        "metrics": values,
        "source_runs": {p: r.run_id for p, r in figures.source_runs.items()},
        "cross_checks": {k: ("pass" if c.passed else "fail") for k, c in figures.cross_checks.items()},
        "check_statuses": {r.check_id: r.status for r in results},
        "rows_written": int(len(figures.monthly)),
    }


def read_monthly(periods: Sequence[str] | None = None, *, engine: sa.Engine | None = None) -> pd.DataFrame:
    """``investor_monthly`` rows (of ``periods``); empty with the mart's columns when absent."""
    try:
        frame = warehouse.read_table(TABLE, engine=engine)
    except sa.exc.NoSuchTableError:
        return pd.DataFrame(columns=list(COLUMNS))
    if periods is not None:
        frame = frame[frame["period"].isin(list(periods))]
    return frame.reset_index(drop=True)


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Long-form rows as one row per period and one column per metric (values as floats)."""
    if frame.empty:
        return pd.DataFrame(columns=["period"])
    out = frame.pivot_table(index="period", columns="metric", values="value", aggfunc="first")
    return out.reset_index().sort_values("period").reset_index(drop=True)

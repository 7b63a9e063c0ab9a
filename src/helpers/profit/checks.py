"""The Profit checks: one per failure-catalogue id of the plan's Profit section.

Importing this module registers them (``helpers.checks`` registry). Each reads what its run
computed, handed over by the notebook as ``ctx.data`` — ``aggregate`` (a
:class:`helpers.profit.aggregate.Aggregate`) for ``profit_aggregate``, ``unit`` (a
:class:`helpers.profit.unit.Unit`) for ``profit_unit`` — and names the rows involved in its evidence
(ids, days, ledger lines), so the runbook starts from them.

- ``profit_aggregate.missing_subscription_data`` (critical): a renewal due on a delivered day has
  no invoice line, or a billing delivery is missing while later ones arrived.
- ``profit_aggregate.expenses_wrong_month`` (warning; critical with an outlier amount): late
  submissions, mistyped dates, outlier amounts, late or overdue cloud bills.
- ``profit_aggregate.math_errors`` / ``profit_unit.math_errors`` (critical; warning when rows were
  only coerced or deduplicated): quarantined rows, a NULL published figure, pools not allocated,
  unit revenue that does not add up to the aggregate's.
- ``profit_aggregate.stale_data`` / ``profit_unit.stale_data`` (18 h warning, 24 h critical, the
  freshness monitors' rule): a daily source stopped delivering what the period needs.
- ``profit_aggregate.finance_mismatch`` (critical): unexpected differences against Finance's ledger
  beyond the tolerance.
- ``profit_aggregate.landing_integrity`` (critical; catalogue ``math_errors``, data left out): a
  delivery read for the month was left out whole (its file changed after arrival, or it lacks a
  contract column: see ``helpers.storage.verified``); rows left out one by one are ``math_errors``
  findings.

None is blocking: a failing check alerts the owner and the month stays ``provisional`` or is
flagged, but the figures (with their quarantine) are still published for investigation.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from helpers import checks
from helpers.checks.rules import freshness_outcome
from helpers.core import config as cfgmod
from helpers.profit import reconcile
from helpers.profit.aggregate import Aggregate
from helpers.profit.inputs import BILLING_SOURCES
from helpers.profit.unit import Unit

AGGREGATE, UNIT = "profit_aggregate", "profit_unit"
MAX_ROWS = 1000  # evidence lists every row up to this many (counts are always complete)


def records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Evidence rows (JSON-able dicts), at most :data:`MAX_ROWS`."""
    part = frame[columns] if columns else frame
    return part.head(MAX_ROWS).astype(object).where(part.head(MAX_ROWS).notna(), None).to_dict("records")


def table(results: list[checks.CheckResult]) -> pd.DataFrame:
    """Check results as a table for the notebook: check, status, severity, summary."""
    return pd.DataFrame(
        [(r.check_id, r.status, r.severity, r.summary) for r in results],
        columns=["check", "status", "severity", "summary"],
    )


def statuses(results: list[checks.CheckResult]) -> dict[str, str]:
    """``check id -> pass/fail/error`` (glued with the run)."""
    return {r.check_id: r.status for r in results}


def _aggregate(ctx: checks.CheckContext) -> Aggregate:
    return ctx.data["aggregate"]


# ---------------------------------------------------------------- missing_subscription_data


@checks.check(
    "profit_aggregate.missing_subscription_data",
    pipeline=AGGREGATE,
    severity="critical",
    catalogue_id="missing_subscription_data",
)
def missing_subscription_data(ctx: checks.CheckContext) -> checks.Outcome:
    """Revenue or subscriber gaps: expected renewals without invoices, missing billing deliveries."""
    agg = _aggregate(ctx)
    d = agg.deliveries
    billing = d[d["source"].isin(BILLING_SOURCES)] if len(d) else d
    holes = billing[~billing["delivered"] & billing["later_delivered"]] if len(billing) else billing
    r = agg.renewals
    missing = r[~r["invoiced"]] if len(r) else r
    per_day = (
        r.groupby("day").agg(expected=("subscription_id", "size"), invoiced=("invoiced", "sum")).reset_index()
        if len(r)
        else pd.DataFrame(columns=["day", "expected", "invoiced"])
    )
    inv = billing[billing["source"] == "billing_invoices"] if len(billing) else billing
    empty = inv[inv["delivered"] & (inv["rows"] == 0)]["day"] if len(inv) else pd.Series(dtype=object)
    short_days = set(per_day.loc[per_day["invoiced"] < per_day["expected"], "day"])
    empty_with_due = sorted(set(empty) & short_days)
    evidence = dict(
        missing_renewals=records(missing),
        missing_subscription_ids=sorted(missing["subscription_id"]) if len(missing) else [],
        expected_renewals=len(r),
        renewals_by_day=records(per_day.assign(invoiced=per_day["invoiced"].astype(int))),
        empty_deliveries_with_renewals_due=empty_with_due,
        missing_deliveries=records(holes, ["source", "day", "due_at"]) if len(holes) else [],
        revenue_at_risk_local=(
            {str(k): int(v) for k, v in missing.groupby("currency")["expected_amount"].sum().items()}
            if len(missing)
            else {}
        ),
    )
    if len(missing) or len(holes):
        parts = []
        if len(missing):
            days = ", ".join(sorted(set(missing["day"])))
            parts.append(f"{len(missing)} of {len(r)} expected renewals have no invoice line (days {days})")
        if len(holes):
            parts.append(
                f"{len(holes)} billing deliveries missing before later ones: "
                + ", ".join(f"{s} {day}" for s, day in zip(holes["source"], holes["day"], strict=True))
            )
        return checks.fail(f"{agg.period}: " + "; ".join(parts), **evidence)
    return checks.ok(
        f"{agg.period}: all {len(r)} expected renewals invoiced; no billing delivery missing", **evidence
    )


# ---------------------------------------------------------------- expenses_wrong_month


@checks.check(
    "profit_aggregate.expenses_wrong_month",
    pipeline=AGGREGATE,
    severity="warning",
    catalogue_id="expenses_wrong_month",
)
def expenses_wrong_month(ctx: checks.CheckContext) -> checks.Outcome:
    """Costs in the wrong month: late submissions, mistyped dates, outlier amounts, late cloud bills."""
    agg = _aggregate(ctx)
    flags = agg.flags
    evidence = dict(
        rows=records(flags),
        ids_by_kind={k: sorted(g["id"]) for k, g in flags.groupby("kind")} if len(flags) else {},
        cloud_bills=records(agg.bills.drop(columns=["ids"])) if len(agg.bills) else [],
    )
    if not len(flags):
        return checks.ok(f"{agg.period}: no late, mistyped or outlier costs; cloud bills on time", **evidence)
    counts = flags.groupby("kind").size()
    text = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
    # an outlier is a published cost off by a factor: worse than a cost in the wrong month
    severity = "critical" if "outlier" in counts.index else "warning"
    return checks.fail(f"{agg.period}: {text}", severity=severity, **evidence)


# ---------------------------------------------------------------- math_errors


def _math_outcome(
    period: str, found: pd.DataFrame, joins: pd.DataFrame, problems: list[str]
) -> checks.Outcome:
    by_action = found.groupby("action").size().to_dict() if len(found) else {}
    evidence = dict(
        rows=records(found),
        counts=dict(by_action),
        keys_by_source={s: sorted(g["key_value"]) for s, g in found.groupby("source")} if len(found) else {},
        joins=records(joins),
        problems=problems,
    )
    if not len(found) and not problems:
        return checks.ok(f"{period}: no unusable rows, every join kept its row count", **evidence)
    parts = [f"{n} {a}" for a, n in sorted(by_action.items())] + problems
    severity = "critical" if by_action.get("quarantined") or problems else "warning"
    return checks.fail(f"{period}: " + "; ".join(parts), severity=severity, **evidence)


@checks.check(
    "profit_aggregate.math_errors", pipeline=AGGREGATE, severity="critical", catalogue_id="math_errors"
)
def aggregate_math_errors(ctx: checks.CheckContext) -> checks.Outcome:
    """Unusable rows (NULL or non-numeric amounts, zero seats), duplicate keys, NULL published figures."""
    agg = _aggregate(ctx)
    row = agg.profit.iloc[0]
    problems = []
    if pd.isna(row["margin"]):
        problems.append(f"margin is NULL: {row['margin_null_reason']}")
    return _math_outcome(agg.period, agg.findings, agg.joins.frame(), problems)


@checks.check("profit_unit.math_errors", pipeline=UNIT, severity="critical", catalogue_id="math_errors")
def unit_math_errors(ctx: checks.CheckContext) -> checks.Outcome:
    """Unusable rows, join fan-out, allocations that do not add up, revenue that disagrees with the aggregate."""
    u: Unit = ctx.data["unit"]
    problems = list(u.notes.values())
    for pool, cents in u.pools.items():
        got = int(u.unit[f"{pool}_usd_cents"].sum())
        if got != cents and pool not in u.notes:
            problems.append(f"{pool} allocated {got} cents of a {cents}-cent pool")
    if u.revenue_total_cents != u.aggregate_revenue_cents:
        problems.append(
            f"revenue per account adds up to {u.revenue_total_cents} cents, profit_monthly says "
            f"{u.aggregate_revenue_cents} (were they run with different as_of?)"
        )
    return _math_outcome(u.period, u.findings, u.joins.frame(), problems)


# ---------------------------------------------------------------- stale_data


def _stale_outcome(ctx: checks.CheckContext, staleness: pd.DataFrame, period: str) -> checks.Outcome:
    """The freshness monitors' rule (``checks.rules.freshness_outcome``, the pipeline's SLA thresholds)
    applied to each source at the moment the period's last delivery was due."""
    sla = cfgmod.get().pipelines.get(ctx.pipeline).sla
    per_source, failed = [], []
    for row in staleness.itertuples(index=False):
        if pd.isna(row.reference_at):
            per_source.append(dict(source=row.source, status="pass", summary="nothing of the period due yet"))
            continue
        last = None if pd.isna(row.last_arrival) else row.last_arrival.to_pydatetime()
        outcome = freshness_outcome(
            last,
            row.reference_at.to_pydatetime(),
            warn_hours=sla.freshness_warn_hours,
            critical_hours=sla.freshness_critical_hours,
            what=f"source {row.source} for {period}",
        )
        item = dict(
            source=row.source,
            status="pass" if outcome.passed else "fail",
            severity=outcome.severity,
            summary=outcome.summary,
            last_partition=row.last_partition,
            last_arrival=row.last_arrival,
            due_through=row.due_day,
            reference_at=row.reference_at,
            trailing_missing=list(row.trailing_missing),
            **{k: v for k, v in outcome.evidence.items() if k in ("age_hours",)},
        )
        per_source.append(item)
        if not outcome.passed:
            failed.append(item)
    evidence = dict(sources=per_source, stale_sources=[f["source"] for f in failed])
    if failed:
        severity = "critical" if any(f["severity"] == "critical" for f in failed) else "warning"
        text = "; ".join(
            f"{f['source']} last delivered {f['last_partition']} ({len(f['trailing_missing'])} day(s) missing)"
            for f in failed
        )
        return checks.fail(f"{period}: stale source(s): {text}", severity=severity, **evidence)
    return checks.ok(f"{period}: every daily source delivered what the period needs", **evidence)


@checks.check(
    "profit_aggregate.stale_data", pipeline=AGGREGATE, severity="warning", catalogue_id="stale_data"
)
def aggregate_stale_data(ctx: checks.CheckContext) -> checks.Outcome:
    """A daily source stopped delivering (upstream delayed, extract job not run)."""
    agg = _aggregate(ctx)
    return _stale_outcome(ctx, agg.staleness, agg.period)


@checks.check("profit_unit.stale_data", pipeline=UNIT, severity="warning", catalogue_id="stale_data")
def unit_stale_data(ctx: checks.CheckContext) -> checks.Outcome:
    """A daily source of the unit pipeline stopped delivering."""
    u: Unit = ctx.data["unit"]
    return _stale_outcome(ctx, u.staleness, u.period)


# ---------------------------------------------------------------- finance_mismatch


@checks.check(
    "profit_aggregate.finance_mismatch",
    pipeline=AGGREGATE,
    severity="critical",
    catalogue_id="finance_mismatch",
)
def finance_mismatch(ctx: checks.CheckContext) -> checks.Outcome:
    """Our P&L against Finance's ledger, line by line, within the configured tolerance."""
    agg = _aggregate(ctx)
    recon = agg.recon
    if recon["status"] == "pending":
        return checks.ok(f"{agg.period}: {recon['reason']}; reconciliation pending", reconciliation=recon)
    bad = reconcile.unexpected_rows(agg.reconciliation)
    evidence = dict(
        reconciliation=recon,
        rows=records(bad),
        line_ids=sorted(set(bad["line_id"])),
        line_ids_by_class={c: sorted(set(g["line_id"])) for c, g in bad.groupby("difference_class")},
    )
    text = (
        f"{agg.period}: unexpected differences of {recon['unexpected_usd_cents'] / 100:,.2f} USD "
        f"(tolerance {recon['tolerance_usd_cents'] / 100:,.2f})"
    )
    if recon["status"] == "mismatch":
        detail = "; ".join(
            f"{line} {cls}" for line, cls in zip(bad["line_id"], bad["difference_class"], strict=True)
        )
        return checks.fail(f"{text}: {detail}", **evidence)
    return checks.ok(f"{text}: within tolerance", **evidence)


# ---------------------------------------------------------------- landing_integrity


def landing_outcome(period: str, report: Any) -> checks.Outcome:
    """The deliveries a verified read left out whole (``LandingReport.rejected``) fail the check;
    rows left out one by one are counted in the evidence (``math_errors`` / the month's status
    carry them)."""
    left = report.frame()
    evidence = dict(
        rejected=[dict(r.row.raw, reason=r.reason, kind=r.kind) for r in report.rejected][:MAX_ROWS],
        rows_quarantined=records(left[left["line"].notna()]) if len(left) else [],
        deliveries_read=dict(report.deliveries),
        rows_received=dict(report.received),
    )
    if report.rejected:
        return checks.fail(f"{period}: " + "; ".join(r.reason for r in report.rejected), **evidence)
    n = sum(report.deliveries.values())
    return checks.ok(f"{period}: all {n} deliveries read still match their manifest and contract", **evidence)


@checks.check(
    "profit_aggregate.landing_integrity", pipeline=AGGREGATE, severity="critical", catalogue_id="math_errors"
)
def landing_integrity(ctx: checks.CheckContext) -> checks.Outcome:
    """Every delivery read hashes to its manifest's sha256 and holds its contract's columns."""
    agg = _aggregate(ctx)
    return landing_outcome(agg.period, agg.landing)

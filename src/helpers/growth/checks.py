"""The Growth checks: one per Growth failure-catalogue id, run by ``growth_aggregate`` for its month.

Each check has a pure *findings* function (a DataFrame of what is wrong, one row per record
involved) and a registered check that turns the findings into an outcome whose evidence names
exactly the accounts and rows involved (``accounts``: the ids of the system that holds the wrong
record — CRM ids for CRM problems, product account ids for billing ones — plus the record keys).
The checks read the month as :func:`helpers.growth.month.build_month` computed it, from ``ctx.data``
(:meth:`helpers.growth.month.GrowthMonth.check_data`):

=================  ==============================================================
key                what
=================  ==============================================================
``sources``        :class:`helpers.growth.lifecycle.GrowthSources`
``lifecycle``      :class:`helpers.growth.lifecycle.Lifecycle`
``resolution``     :class:`helpers.growth.entities.Resolution`
``cancellations``  :func:`helpers.growth.metrics.classify_cancellations`
``events``         :func:`helpers.growth.metrics.effective_events` (churn as classified)
``timeline``       :func:`helpers.growth.metrics.mrr_timeline` of those events
``accounts``       the month's MRR movements per company (``GrowthMonth.movements``)
``settings``       ``config.pipelines.growth`` (:class:`helpers.core.config.GrowthConfig`)
=================  ==============================================================

A record is in a month's findings when its date (effective, entered, contract start, billing
start, cancellation) falls in that month, so each month's alert names its own records. All five
are warnings and never block the run: the figures are computed with the repairs applied (see
docs/pipelines.md, "Growth checks"); the alert is for fixing the source records.

``growth_aggregate.landing_integrity`` (critical, outside the catalogue) reports what the verified
reads of the landing zone left out (``GrowthSources.landing``): a delivery whose file changed after
arrival or lacks a contract column, rows whose values are not of their contract type.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from helpers import checks
from helpers.checks import CheckContext, Outcome
from helpers.core.periods import month_bounds
from helpers.growth import metrics as growth
from helpers.growth.lifecycle import Lifecycle, billing_milestones, crm_product_map, milestones_for

PIPELINE = "growth_aggregate"
# A CRM row entered by day N lands by about day N+1 04:00: allow two days before calling it missing.
CRM_DELIVERY_ALLOWANCE = pd.Timedelta(days=2)


def _window(ctx_or_period: CheckContext | str) -> tuple[pd.Timestamp, pd.Timestamp]:
    period = ctx_or_period if isinstance(ctx_or_period, str) else ctx_or_period.partition
    return month_bounds(period, tz="UTC")


def utc_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` as aware UTC timestamps (a naive value is UTC, as everywhere here).

    The boundary where a check takes a frame whose timestamp columns may not all be aware: a
    date string (a sales contract start), or a column an upstream step typed naive (the lifecycle's
    ``plan_gaps`` has a naive all-NaT ``billing_at`` when the CRM holds no plan change at all).
    Compared with the UTC month window as they are, those raise ``TypeError``.
    """
    return frame.assign(**{c: pd.to_datetime(frame[c], utc=True) for c in columns})


def _in(series: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    return (series >= start) & (series < end)


def _records(frame: pd.DataFrame, columns: list[str], limit: int = 50) -> list[dict[str, Any]]:
    """Evidence rows (JSON-safe via the framework), at most ``limit``."""
    return frame[columns].head(limit).to_dict("records")


# ---------------------------------------------------------------- skipped_stage


def skipped_stage_findings(life: Lifecycle, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """CRM transitions effective in the window that skip a stage, with their repair (if any)."""
    sk = life.skipped[_in(life.skipped["effective_at"], start, end)].copy()
    inf = life.inferred.assign(stage_event_id=life.inferred["stage_event_id"].str.removeprefix("inferred:"))
    inf = inf.set_index("stage_event_id")
    sk["transition"] = sk["prev_stage"].fillna("(none)") + " -> " + sk["to_stage"]
    sk["repaired"] = sk["stage_event_id"].isin(inf.index)
    sk["inferred_at"] = sk["stage_event_id"].map(inf["effective_at"])
    sk["inferred_from"] = sk["stage_event_id"].map(inf["inferred_from"])
    return sk.reset_index(drop=True)


@checks.check(
    "growth_aggregate.skipped_stage",
    pipeline=PIPELINE,
    severity="warning",
    catalogue_id="skipped_stage",
)
def skipped_stage(ctx: CheckContext) -> Outcome:
    """CRM stage transitions that skip a stage (A -> C without B), repaired from billing where it can."""
    start, end = _window(ctx)
    f = skipped_stage_findings(ctx.data["lifecycle"], start, end)
    if f.empty:
        return checks.ok(f"no CRM transition skips a stage in {ctx.partition}")
    rows = _records(
        f,
        ["stage_event_id", "account_id", "transition", "missing_stage", "effective_at", "repaired"]
        + ["inferred_at", "inferred_from"],
    )
    unrepaired = int((~f["repaired"]).sum())
    return checks.fail(
        f"{len(f)} CRM transition(s) in {ctx.partition} skip a stage "
        f"({', '.join(sorted(set(f['transition'])))}) on {f['account_id'].nunique()} account(s); "
        f"{len(f) - unrepaired} repaired from billing, {unrepaired} not inferable",
        accounts=sorted(set(f["account_id"])),
        stage_event_ids=sorted(f["stage_event_id"]),
        repaired=len(f) - unrepaired,
        unrepaired=unrepaired,
        rows=rows,
    )


# ---------------------------------------------------------------- late_account_updates


def late_entries(
    life: Lifecycle, start: pd.Timestamp, end: pd.Timestamp, *, late_days: float
) -> pd.DataFrame:
    """CRM rows typed more than ``late_days`` after they took effect, effective or entered in the window."""
    c = life.chain  # the rows found are copied, not the chain
    lag = (c["entered_at"] - c["effective_at"]).dt.total_seconds() / 86_400
    scope = (_in(c["effective_at"], start, end) | _in(c["entered_at"], start, end)) & (lag > late_days)
    return c[scope].assign(lag_days=lag[scope]).reset_index(drop=True)


def pending_entries(
    life: Lifecycle,
    cancellations: pd.DataFrame,
    events: pd.DataFrame,
    customers: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    as_of: pd.Timestamp,
    late_days: float,
    tolerance_days: float,
    allowance: pd.Timedelta = CRM_DELIVERY_ALLOWANCE,
) -> pd.DataFrame:
    """Billing conversions, reactivations and churns in the window the CRM still lacks.

    Only those older than ``late_days`` plus the CRM extract's delivery ``allowance`` are pending
    (a younger one may simply not have landed yet; ``late_days=0, allowance=0`` lists every one
    not in the CRM yet). Churn is taken as classified (a cancellation recovered inside the grace
    period is no churn to record).
    """
    ms = milestones_for(life, events, customers)
    act = ms[ms["kind"] == "activated"][["account_id", "at", "event_id"]].assign(to_stage="customer")
    churn = cancellations[cancellations["classification"] != "recovered"]
    churn = pd.DataFrame(
        {"account_id": churn["account_id"], "at": churn["effective_at"], "event_id": churn["event_id"]}
    ).assign(to_stage="churned")
    parts = [f for f in (act, churn) if len(f)]
    bill = pd.concat(parts, ignore_index=True) if parts else act
    cutoff = as_of - pd.Timedelta(days=late_days) - allowance
    bill = bill[_in(bill["at"], start, end) & (bill["at"] < cutoff)]
    hist = life.history[["product_account_id", "account_id", "to_stage", "effective_at"]]
    pair = bill.merge(
        hist, left_on=["account_id", "to_stage"], right_on=["product_account_id", "to_stage"], how="left"
    )
    pair["near"] = (pair["effective_at"] - pair["at"]).abs() <= pd.Timedelta(days=tolerance_days)
    found = pair[pair["near"]].drop_duplicates("event_id")["event_id"]
    pending = bill[~bill["event_id"].isin(found)].copy()
    crm_of = life.history[["product_account_id", "account_id"]].dropna(subset=["product_account_id"])
    crm_of = crm_of.drop_duplicates("product_account_id")
    pending["crm_account_id"] = pending["account_id"].map(
        crm_of.set_index("product_account_id")["account_id"]
    )
    pending["days_pending"] = (as_of - pending["at"]).dt.total_seconds() / 86_400
    return pending.rename(columns={"account_id": "product_account_id"}).reset_index(drop=True)


@checks.check(
    "growth_aggregate.late_account_updates",
    pipeline=PIPELINE,
    severity="warning",
    catalogue_id="late_account_updates",
)
def late_account_updates(ctx: CheckContext) -> Outcome:
    """CRM changes entered long after they took effect, or still missing though billing has them."""
    start, end = _window(ctx)
    s = ctx.data["settings"]
    life: Lifecycle = ctx.data["lifecycle"]
    late = late_entries(life, start, end, late_days=s.late_update_days)
    pending = pending_entries(
        life,
        ctx.data["cancellations"],
        ctx.data["events"],
        ctx.data["sources"].customers,
        start,
        end,
        as_of=pd.Timestamp(ctx.as_of),
        late_days=s.late_update_days,
        tolerance_days=s.date_tolerance_days,
    )
    if late.empty and pending.empty:
        return checks.ok(
            f"every CRM change of {ctx.partition} was entered within {s.late_update_days:g} days"
        )
    accounts = sorted(set(late["account_id"]) | set(pending["crm_account_id"].dropna()))
    return checks.fail(
        f"{len(late)} CRM change(s) of {ctx.partition} entered more than {s.late_update_days:g} days after "
        f"they took effect (up to {late['lag_days'].max() if len(late) else 0:.1f} days), "
        f"{len(pending)} billing change(s) not in the CRM yet; {len(accounts)} account(s)",
        accounts=accounts,
        stage_event_ids=sorted(late["stage_event_id"]),
        late=_records(
            late, ["stage_event_id", "account_id", "to_stage", "effective_at", "entered_at"] + ["lag_days"]
        ),
        pending=_records(
            pending, ["event_id", "product_account_id", "crm_account_id", "to_stage", "at", "days_pending"]
        ),
        late_update_days=s.late_update_days,
    )


# ---------------------------------------------------------------- duplicate_accounts


@checks.check(
    "growth_aggregate.duplicate_accounts",
    pipeline=PIPELINE,
    severity="warning",
    catalogue_id="duplicate_accounts",
)
def duplicate_accounts(ctx: CheckContext) -> Outcome:
    """Accounts resolved into another company that nobody has reviewed yet (config/account_merges.yml)."""
    _start, end = _window(ctx)
    res = ctx.data["resolution"]
    found = res.proposed(seen_before=end)
    look_alikes = res.candidates()
    if found.empty:
        reviewed = int((res.merges["status"] != "proposed").sum()) if len(res.merges) else 0
        return checks.ok(
            f"no unreviewed duplicate accounts ({reviewed} reviewed merge(s) applied; "
            f"{len(look_alikes)} look-alike name pair(s) not merged)",
            look_alikes=_records(look_alikes, ["a", "b", "score"]),
        )
    return checks.fail(
        f"{len(found)} account(s) look like another company's duplicate and are merged pending review: "
        + "; ".join(f"{r.name} -> {r.into_name} ({r.reasons})" for r in found.head(5).itertuples()),
        accounts=sorted(found["account_id"]),
        into=sorted(set(found["into"])),
        crm_accounts=sorted(found["crm_account_id"].dropna()),
        merges=_records(found, ["account_id", "into", "reasons", "score", "name", "into_name", "seen_at"]),
        review_file=str(ctx.data["settings"].merges_file),
        look_alikes=_records(look_alikes, ["a", "b", "score"]),
    )


# ---------------------------------------------------------------- growth_revenue_mismatch


def contract_gaps(
    sales: pd.DataFrame,
    events: pd.DataFrame,
    customers: pd.DataFrame,
    crm_to_product: pd.Series,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    as_of: pd.Timestamp,
    tolerance_days: float,
    milestones: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Deals whose contract start is more than ``tolerance_days`` from billing's first paid activation.

    In scope when the contract start or the billing start falls in the window. A contract that
    started longer ago than the tolerance with no billing yet is a gap too (``billing_start`` NaT).
    """
    if sales.empty:
        return pd.DataFrame(
            columns=["deal_id", "account_id", "product_account_id", "contract_start", "billing_start"]
        )
    d = sales[["deal_id", "account_id", "contract_start", "signed_at", "contract_value", "currency"]].copy()
    d["product_account_id"] = d["account_id"].map(crm_to_product)
    d = utc_columns(d, ["contract_start"])
    ms = billing_milestones(events, customers) if milestones is None else milestones
    act = ms[ms["kind"] == "activated"][["account_id", "at"]].rename(
        columns={"account_id": "product_account_id", "at": "billing_start"}
    )
    d = d.assign(probe=d["contract_start"] - pd.Timedelta(days=tolerance_days)).sort_values("probe")
    d = pd.merge_asof(
        d,
        act.sort_values("billing_start"),
        left_on="probe",
        right_on="billing_start",
        by="product_account_id",
        direction="forward",
    )
    gap = (d["billing_start"] - d["contract_start"]).dt.total_seconds() / 86_400
    open_gap = (as_of - d["contract_start"]).dt.total_seconds() / 86_400
    d["gap_days"] = gap.fillna(open_gap.where(d["contract_start"] < as_of))
    scope = _in(d["contract_start"], start, end) | _in(d["billing_start"], start, end)
    return d[scope & (d["gap_days"].abs() > tolerance_days)].drop(columns="probe").reset_index(drop=True)


def plan_change_findings(plan_gaps: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """CRM plan changes dated away from billing's proration (``Lifecycle.plan_gaps`` mismatches),
    effective or billed in the window; ``effective_at`` and ``billing_at`` as UTC."""
    g = utc_columns(plan_gaps, ["effective_at", "billing_at"])
    scope = _in(g["effective_at"], start, end) | _in(g["billing_at"], start, end)
    return g[g["mismatch"] & scope].reset_index(drop=True)


def _per_entity(per_customer: pd.Series, customer_entity: pd.Series) -> pd.Series:
    keys = pd.Series(per_customer.index, index=per_customer.index)
    return per_customer.groupby(keys.map(customer_entity).fillna(keys).to_numpy()).sum()


def revenue_reconciliation(
    accounts: pd.DataFrame, timeline: pd.DataFrame, src_invoices: pd.DataFrame, fx: pd.DataFrame,
    customer_entity: pd.Series, start: pd.Timestamp, end: pd.Timestamp,
) -> dict[str, Any]:  # fmt: skip
    """New + expansion MRR against the recognised revenue it brought this month, with proration explained.

    A change on day d of a month of n days brings only (n - d)/n of its MRR into the month's
    recognised revenue (billing prorates); ``not_yet_recognised`` is that share, and what is left
    (``unexplained``) is timing the dates do not account for.
    """
    grew = accounts[accounts["movement"].isin(["new", "expansion"])]
    if grew.empty:
        return {"accounts": 0}
    ent = timeline["customer_id"].map(customer_entity).fillna(timeline["customer_id"])
    w = timeline[_in(timeline["at"], start, end) & ent.isin(grew["account_id"])]
    first = w.assign(entity_id=ent.loc[w.index]).sort_values("at").groupby("entity_id")["at"].last()
    share = (
        ((end - first).dt.total_seconds() / (end - start).total_seconds())
        .reindex(grew["account_id"])
        .fillna(1)
    )
    moved = grew.set_index("account_id")["mrr_change_usd_cents"]
    prev_start = start - pd.offsets.MonthBegin(1)
    now = growth.recognised_revenue(src_invoices, start, end, fx)
    before = growth.recognised_revenue(src_invoices, prev_start, start, fx)
    delta = _per_entity(now, customer_entity).sub(_per_entity(before, customer_entity), fill_value=0)
    delta = delta.reindex(moved.index).fillna(0)
    expected = (moved * share).round()
    return {
        "accounts": len(moved),
        "new_and_expansion_mrr_usd_cents": int(moved.sum()),
        "recognised_revenue_change_usd_cents": int(delta.sum()),
        "not_yet_recognised_proration_usd_cents": int((moved - expected).sum()),
        "unexplained_usd_cents": int((delta - expected).sum()),
    }


@checks.check(
    "growth_aggregate.growth_revenue_mismatch",
    pipeline=PIPELINE,
    severity="warning",
    catalogue_id="growth_revenue_mismatch",
)
def growth_revenue_mismatch(ctx: CheckContext) -> Outcome:
    """Sales contract starts and CRM plan changes dated away from billing's (what new/expansion MRR follows)."""
    start, end = _window(ctx)
    s, src, life = ctx.data["settings"], ctx.data["sources"], ctx.data["lifecycle"]
    to_product = crm_product_map(src.crm_accounts)
    deals = contract_gaps(
        src.sales,
        ctx.data["events"],
        src.customers,
        to_product,
        start,
        end,
        as_of=pd.Timestamp(ctx.as_of),
        tolerance_days=s.date_tolerance_days,
        milestones=milestones_for(life, ctx.data["events"], src.customers),
    )
    plans = plan_change_findings(life.plan_gaps, start, end)
    recon = revenue_reconciliation(
        ctx.data["accounts"],
        ctx.data["timeline"],
        src.invoices,
        src.fx,
        ctx.data["resolution"].customer_entity(src.customers),
        start,
        end,
    )
    if deals.empty and plans.empty:
        return checks.ok(
            f"{ctx.partition}: contract starts and CRM plan changes agree with billing within "
            f"{s.date_tolerance_days:g} days",
            reconciliation=recon,
        )
    parts = []
    if len(deals):
        parts.append(
            f"{len(deals)} deal(s) whose contract start is up to {deals['gap_days'].abs().max():.0f} days "
            "from billing's first payment"
        )
    if len(plans):
        parts.append(
            f"{len(plans)} CRM plan change(s) dated up to {plans['gap_days'].abs().max():.0f} days from "
            "billing's proration"
        )
    return checks.fail(
        f"{ctx.partition}: " + "; ".join(parts) + " (new/expansion MRR follows billing's dates)",
        accounts=sorted(set(deals["account_id"]) | set(plans["account_id"])),
        deal_ids=sorted(deals["deal_id"]),
        stage_event_ids=sorted(plans["stage_event_id"]),
        deals=_records(
            deals,
            ["deal_id", "account_id", "product_account_id", "contract_start", "billing_start", "gap_days"],
        ),
        plan_changes=_records(
            plans, ["stage_event_id", "account_id", "effective_at", "billing_at", "gap_days"]
        ),
        reconciliation=recon,
    )


# ---------------------------------------------------------------- churn_misclassified


def churn_findings(cancellations: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Cancellations recorded in the window that the evidence contradicts."""
    c = cancellations
    return c[c["misclassified"] & _in(c["canceled_at"], start, end)].reset_index(drop=True)


@checks.check(
    "growth_aggregate.churn_misclassified",
    pipeline=PIPELINE,
    severity="warning",
    catalogue_id="churn_misclassified",
)
def churn_misclassified(ctx: CheckContext) -> Outcome:
    """Accounts marked cancelled while still in their grace period, still using the product or paying."""
    start, end = _window(ctx)
    f = churn_findings(ctx.data["cancellations"], start, end)
    if f.empty:
        return checks.ok(f"every cancellation of {ctx.partition} agrees with payments and usage")
    recovered = int((f["classification"] == "recovered").sum())
    return checks.fail(
        f"{len(f)} cancellation(s) of {ctx.partition} contradicted by payments or usage: {recovered} paid inside "
        f"the grace period (not churn), {len(f) - recovered} counted from the end of the grace period instead",
        accounts=sorted(set(f["account_id"].dropna())),
        customer_ids=sorted(set(f["customer_id"])),
        event_ids=sorted(f["event_id"]),
        episodes=_records(
            f,
            [
                "event_id",
                "account_id",
                "subscription_id",
                "reason",
                "canceled_at",
                "grace_end",
                "classification",
            ]
            + ["effective_at", "recovered_at", "used_until", "retries_after", "evidence"],
        ),
    )


# ---------------------------------------------------------------- landing_integrity


@checks.check(
    "growth_aggregate.landing_integrity",
    pipeline=PIPELINE,
    severity="critical",
    runbook="notebooks/runbooks/incident_fix.ipynb",
)
def landing_integrity(ctx: CheckContext) -> Outcome:
    """Every delivery read hashes to its manifest's sha256 and holds its contract's columns and types.

    A delivery left out whole (its file changed after arrival, a contract column missing) is
    critical; rows left out one by one (a value not of its contract type) are a warning. Either
    keeps the month ``provisional`` (:func:`helpers.growth.month.month_from`).
    """
    report = ctx.data["sources"].landing
    left = report.frame()
    evidence = dict(
        rejected=[dict(r.row.raw, reason=r.reason, kind=r.kind) for r in report.rejected],
        rows_quarantined=_records(left[left["line"].notna()], list(left.columns), limit=1000),
        deliveries_read=dict(report.deliveries),
        rows_received=dict(report.received),
    )
    if report.rejected:
        return checks.fail(f"{ctx.partition}: " + "; ".join(r.reason for r in report.rejected), **evidence)
    if report.quarantined:
        return checks.fail(f"{ctx.partition}: " + "; ".join(report.reasons()), severity="warning", **evidence)
    n = sum(report.deliveries.values())
    return checks.ok(
        f"{ctx.partition}: all {n} deliveries read match their manifest and contract", **evidence
    )

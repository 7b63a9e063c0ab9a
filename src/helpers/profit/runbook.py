"""The Profit runbooks' logic (``notebooks/runbooks/profit/<catalogue id>.ipynb``): the family contract,
the evidence of each likely cause, and the month-end close's pipeline items.

The contract every family runbook module follows (Growth and Engagement too)::

    state = load_state(ctx, catalogue_id)   # what the runbook reads once (a mutable State)
    diag.symptom(check_now(state))          # the failing check as it stands now
    ...                                      # diag.finding(...) of each likely cause's evidence
    apply_fix(ctx, diag, state)             # what the diagnosis calls for; performed only when ctx.apply_fix
    verify(ctx, diag, state)                # the check re-run

:func:`load_state` rebuilds the month the alert is about exactly as ``profit_aggregate`` does
(:func:`helpers.profit.inputs.load_inputs` + :func:`helpers.profit.aggregate.build_aggregate`, at the
runbook's ``as_of``) and evaluates the pipeline's own check on it: the symptom is that check failing
*now*. The evidence functions (:func:`billing_api_down`, :func:`finance_timing`, ...) then test each of
the plan's "Why" causes against that rebuilt month and the landing zone, and name what is involved
(sources, days, ledger lines, expense ids, keys) with what would repair it, as a
:class:`helpers.profit.repair.Plan` (re-extract rows, re-run months). :func:`apply_fix` merges the
plans of the findings that hold and carries the plan out (``helpers.profit.repair``).

:func:`verify` re-runs the check: the result recorded by the re-run the fix made. Two checks also
report what the pipeline already handled (``math_errors``: values kept from text, unchanged
re-sync copies dropped; ``expenses_wrong_month``: costs that arrived late, once their month has been
re-run after they arrived). Those rows stay in the immutable landing zone, so the check keeps
listing them as a warning; Verify passes when nothing else remains, and says which rows those are.
``missing_subscription_data`` also verifies the complete expected state: every row the billing
system holds for the month has landed (``helpers.profit.gaps``), whatever the plan re-extracted.

``stale_data`` (:data:`FRESHNESS`) is about age, not about one month's figures: its state rebuilds
nothing, its symptom is the marts' freshness (``kit.mart_freshness``), its evidence is the kit's
generic freshness evidence, its fix re-runs what that evidence names and its verify re-runs the
freshness checks.

Nothing here reads the wall clock: everything works at ``ctx.as_of``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from helpers import checks
from helpers.checks import store
from helpers.checks.framework import CheckResult
from helpers.core import catalogue
from helpers.core.periods import shift_period
from helpers.profit import gaps, reconcile
from helpers.profit.aggregate import Aggregate, build_aggregate
from helpers.profit.checks import AGGREGATE
from helpers.profit.costs import FLAG_COLUMNS
from helpers.profit.inputs import BILLING_SOURCES, empty_findings, load_inputs
from helpers.profit.repair import Plan, apply_plan
from helpers.runbooks import kit
from helpers.storage import landing

CHECK_IDS = {
    "finance_mismatch": "profit_aggregate.finance_mismatch",
    "missing_subscription_data": "profit_aggregate.missing_subscription_data",
    "expenses_wrong_month": "profit_aggregate.expenses_wrong_month",
    "math_errors": "profit_aggregate.math_errors",
    "stale_data": "profit_aggregate.stale_data",
}
FRESHNESS = "stale_data"  # the runbook on age (see the module doc)
# What each check reports that the pipeline has already handled (see the module doc).
HANDLED_ACTIONS = ("coerced", "deduplicated")  # math_errors
LATE_KINDS = ("late_submission", "cloud_bill_late")  # expenses_wrong_month


# ---------------------------------------------------------------- the month, rebuilt


@dataclass
class State:
    """What a Profit runbook reads once: the month it works on, rebuilt at ``as_of``, its check
    evaluated on it, and (after :func:`apply_fix`) the plan the fix carried out."""

    ctx: kit.RunbookContext
    catalogue_id: str
    period: str | None
    aggregate: Aggregate | None = None
    result: CheckResult | None = None
    note: str = ""
    plan: Plan = field(default_factory=Plan)
    lost: pd.DataFrame | str | None = None  # missing_subscription_data: see ``_lost``

    @property
    def check_id(self) -> str:
        return CHECK_IDS[self.catalogue_id]


def months_written(ctx: kit.RunbookContext) -> list[str]:
    """Months ``profit_aggregate`` has written (``profit_monthly``) as of ``ctx.as_of``."""
    writes = ctx.snapshot.writes
    mine = writes[(writes["table_name"] == "profit_monthly") & writes["label"].notna()]
    return sorted(set(mine["label"].astype(str)))


def period_for(ctx: kit.RunbookContext) -> str | None:
    """The month to examine: the alert's (or ``partition``), else the latest month written, else the
    month before ``as_of``'s when the landing zone has billing data, else None."""
    if ctx.partition and len(ctx.partition) >= 7 and ctx.partition != "current":
        return ctx.partition[:7]
    written = [m for m in months_written(ctx) if m <= f"{ctx.as_of:%Y-%m}"]
    if written:
        return written[-1]
    if "billing_invoices" in landing.sources():
        return shift_period(f"{ctx.as_of:%Y-%m}", -1)
    return None


def rebuild(ctx: kit.RunbookContext, period: str) -> Aggregate:
    """``period`` computed as ``profit_aggregate`` computes it, from what had arrived by ``as_of``."""
    from helpers.core import businesscal

    settings = ctx.config.pipelines.profit
    calendar = businesscal.BusinessCalendar.from_team(ctx.config.team)
    inputs = load_inputs(period, ctx.as_of, settings=settings)
    return build_aggregate(inputs, settings=settings, calendar=calendar, run_id=ctx.run_id)


def evaluate(ctx: kit.RunbookContext, aggregate: Aggregate, catalogue_id: str) -> CheckResult:
    """The pipeline's own check for ``catalogue_id`` on ``aggregate`` (evaluated, not stored)."""
    (check,) = [c for c in checks.registered(AGGREGATE) if c.id == CHECK_IDS[catalogue_id]]
    cctx = checks.CheckContext(AGGREGATE, aggregate.period, ctx.as_of, ctx.run_id, {"aggregate": aggregate})
    return checks.evaluate(check, cctx)


def load_state(ctx: kit.RunbookContext, catalogue_id: str) -> State:
    """Rebuild the runbook's month and evaluate its check (prints what it looked at); the freshness
    runbook rebuilds nothing."""
    if catalogue_id == FRESHNESS:
        return State(ctx, catalogue_id, None, note="freshness: the marts' and sources' age at as_of")
    period = period_for(ctx)
    if period is None:
        state = State(ctx, catalogue_id, None, note="no Profit data: no month written, no billing landed")
    else:
        agg = rebuild(ctx, period)
        state = State(ctx, catalogue_id, period, agg, evaluate(ctx, agg, catalogue_id))
        state.note = f"{period} rebuilt as of {ctx.as_of:%Y-%m-%d %H:%M}Z: {state.result.summary}"
    print(state.note)
    return state


def check_now(state: State) -> kit.Evidence:
    """The symptom: the check fails on the month as it stands now (freshness: the marts are older
    than their SLA)."""
    if state.catalogue_id == FRESHNESS:
        return kit.mart_freshness(state.ctx)
    r = state.result
    if r is None:
        return kit.Evidence(False, state.note)
    frame, text = kit.results_frame([r]), f"{r.check_id} {r.partition}: {r.status} - {r.summary}"
    if state.catalogue_id == "missing_subscription_data" and not r.failed and len(_lost(state)):
        # the check sees renewals and deliveries, not a lost row of a day without a renewal due
        return kit.Evidence(True, f"{text}; but {gaps.describe(state.lost)}", frame,
                            {"period": state.period, "severity": r.severity})  # fmt: skip
    return kit.Evidence(r.failed, text, frame, {"period": state.period, "severity": r.severity})


def _other_alert(ctx: kit.RunbookContext, check_id: str) -> bool:
    """The alert is another check's that points at this runbook: a monitor's (a Profit row-count drop
    or rise, NULLs, a billing source's freshness) or ``profit_unit``'s own."""
    return bool(ctx.alert and ctx.check_id and ctx.check_id != check_id)


def stored_results(check_id: str, partition: str | None) -> tuple[CheckResult, ...]:
    """The latest recorded result of a domain check for ``partition`` (checks run inside their run)."""
    rows = [r for r in store.list_results(check_id=check_id, limit=50) if r["partition"] == partition]
    fields = CheckResult.__dataclass_fields__
    return tuple(CheckResult(**{k: r[k] for k in fields if k in r}) for r in rows[:1])


def alert_check_now(diag: kit.Diagnosis, state: State) -> kit.Evidence | None:
    """When another check's alert led here, that check is a symptom too: a monitor evaluated now
    (not stored), a domain check (``profit_unit.math_errors``) as its latest run recorded it.
    None when the alert is the runbook's own check."""
    from helpers.checks import monitors

    ctx = state.ctx
    if not _other_alert(ctx, state.check_id):
        return None
    pipeline = ctx.pipeline or AGGREGATE
    if ctx.alert.kind == "domain":
        found: Sequence[CheckResult] = stored_results(ctx.check_id, ctx.partition)
    elif ctx.partition and ctx.partition != monitors.CURRENT and ctx.alert.kind in ("row_count", "nulls"):
        found = monitors.partition_checks(pipeline, ctx.partition, as_of=ctx.as_of, config=ctx.config)
    else:
        found = monitors.evaluate_monitors(ctx.as_of, pipelines=[pipeline], config=ctx.config)
    mine = [r for r in found if r.check_id == ctx.check_id and r.partition == ctx.partition] or [
        r for r in found if r.check_id == ctx.check_id
    ]
    if not mine:
        return diag.symptom(kit.Evidence(False, f"{ctx.check_id}: no result now"))
    r = mine[0]
    return diag.symptom(kit.Evidence(r.failed, f"{r.check_id} {r.partition}: {r.status} - {r.summary}"))


def figures(state: State) -> pd.DataFrame:
    """The month's headline figures as rebuilt (cents), for the notebook."""
    if state.aggregate is None:
        return pd.DataFrame()
    cols = ["period", "revenue_usd_cents", "total_cost_usd_cents", "profit_usd_cents", "status",
            "reconciliation_status", "quarantined_rows", "provisional_reasons"]  # fmt: skip
    return state.aggregate.profit[[c for c in cols if c in state.aggregate.profit.columns]]


# ---------------------------------------------------------------- plans: what a fix does


def plan_of(diag: kit.Diagnosis) -> Plan:
    """The plans of the diagnosis's findings that hold, merged (nothing when no problem is present)."""
    out = Plan()
    for f in diag.findings if diag.present else ():
        plan = f.evidence.get("plan")
        if f.holds and isinstance(plan, dict):
            out.add(Plan(list(plan["reextract"]), list(plan["months"])))
    return out


def _months_in_history(state: State, months: Iterable[str]) -> list[str]:
    """Months a ``profit_aggregate`` run can compute: from the landing zone's first billing month
    to ``as_of``'s month."""
    arr = landing.arrivals("billing_invoices", as_of=state.ctx.as_of)
    first = str(arr["partition"].min())[:7] if len(arr) else "0000-00"
    last = f"{state.ctx.as_of:%Y-%m}"
    return sorted({m for m in months if m and first <= m <= last})


# ---------------------------------------------------------------- sources that stopped

# The sources each Profit runbook diagnoses when they stop delivering (a source-freshness alert routes
# here by its source: ``helpers.core.catalogue.SOURCE_GROUPS``).
STOPPED_SOURCES: dict[str, tuple[str, ...]] = {
    cid: catalogue.SOURCE_GROUPS[cid]
    for cid in ("missing_subscription_data", "expenses_wrong_month", "finance_mismatch")
}
STOPPED_REASONS: dict[str, str] = {
    "missing_subscription_data": "database not syncing: a billing source stopped delivering",
    "expenses_wrong_month": "a cost source stopped delivering (cloud bill, operations, payroll)",
    "finance_mismatch": "Finance's ledger not delivered",
}


def routed_by_source(state: State) -> bool:
    """The alert is about the freshness of one of the runbook's sources (:data:`STOPPED_SOURCES`):
    a source-freshness alert, an upstream's routed here, a fix deadline of one."""
    return (
        state.ctx.alert is not None and kit.alerted_source(state.ctx) in STOPPED_SOURCES[state.catalogue_id]
    )


def sources_stopped(state: State) -> kit.Evidence:
    """The runbook's sources that stopped delivering (:data:`STOPPED_SOURCES`), as the
    source-freshness monitors judge them now; the plan re-extracts the partitions they owe and
    re-runs the months those fall in (the source system may hold them by now)."""
    ev = kit.sources_stopped(state.ctx, STOPPED_SOURCES[state.catalogue_id])
    if not ev.holds:
        return ev
    missing: dict[str, list[str]] = ev.data.get("missing") or {}
    months = {d[:7] for days in missing.values() for d in days}
    plan = Plan(
        [
            {"source": s, "days": days, "why": "deliveries that never arrived"}
            for s, days in missing.items()
            if days
        ],
        _months_in_history(state, months),
    )
    ev.data["plan"] = plan.as_json()
    return ev


def stopped_finding(diag: kit.Diagnosis, state: State) -> kit.Evidence | None:
    """For an alert routed here by its source (:func:`routed_by_source`): :func:`sources_stopped` as
    the symptom (the runbook's own check may pass: the month built is complete) and as a finding of
    the runbook's cause. Otherwise nothing is recorded (None): the runbook's check is the symptom."""
    if not routed_by_source(state):
        return None
    stopped = diag.symptom(sources_stopped(state))
    return diag.finding(state.catalogue_id, STOPPED_REASONS[state.catalogue_id], stopped)


# ---------------------------------------------------------------- finance_mismatch


def _unexpected(state: State) -> pd.DataFrame:
    if state.aggregate is None or state.result is None or not state.result.failed:
        return pd.DataFrame(columns=["line_id", "difference_class", "cause", "component_usd_cents", "detail"])
    return reconcile.unexpected_rows(state.aggregate.reconciliation)


def _recon_view(rows: pd.DataFrame) -> pd.DataFrame:
    cols = ["line_id", "difference_class", "cause", "component_local", "component_usd_cents", "detail"]
    return rows[[c for c in cols if c in rows.columns]].reset_index(drop=True)


def _line_period(line_id: str) -> str:
    return str(line_id).split("|", 1)[0]


def _ledger_lines(rows: pd.DataFrame) -> tuple[list[str], str]:
    """The ledger lines of reconciliation differences, with the other half of each offset pair
    (a difference booked in a neighbouring month sits on the same line there), and their detail."""
    offsets = rows["detail"].astype(str).str.extract(r"offset on (\S+)")[0].dropna().tolist()
    lines = sorted(set(rows["line_id"]) | set(offsets))
    detail = "; ".join(
        f"{r.line_id}: {r.component_usd_cents / 100:+,.2f} USD ({r.cause}; {r.detail})"
        for r in rows.itertuples()
    )
    return lines, detail


def _ledger_class(state: State, difference_class: str, none: str, found: str, why: str) -> kit.Evidence:
    """Evidence for one class of Finance ledger lines: the lines, and a plan to re-extract them."""
    rows = _unexpected(state)
    rows = rows[rows["difference_class"] == difference_class]
    if not len(rows):
        return kit.Evidence(False, none)
    lines, detail = _ledger_lines(rows)
    plan = Plan([{"source": "finance_ledger", "keys": lines, "why": why}],
                _months_in_history(state, [state.period, *map(_line_period, lines)]))  # fmt: skip
    return kit.Evidence(True, f"{found}: {detail}", _recon_view(rows),
                        {"line_ids": lines, "plan": plan.as_json()})  # fmt: skip


def finance_timing(state: State) -> kit.Evidence:
    """Timing: an amount Finance booked in the month before or after ours (``timing``/``adjacent_month``)."""
    return _ledger_class(state, "timing", "no amount booked by Finance in another month than ours",
                         "Finance booked in another month", "Finance's corrected booking month")  # fmt: skip


def finance_missing_category(state: State) -> kit.Evidence:
    """Missing expense category: one side has no rows for a category in a month."""
    rows = _unexpected(state)
    rows = rows[rows["difference_class"] == "missing_category"]
    if not len(rows):
        return kit.Evidence(False, "no category missing on either side")
    plan, parts = Plan(), []
    for r in rows.itertuples():
        month, category, sub = str(r.line_id).split("|")[:3]
        side = "ours" if r.cause == "missing_in_ours" else "Finance's"
        parts.append(f"{r.line_id}: missing in {side} ({r.component_usd_cents / 100:+,.2f} USD)")
        if r.cause == "missing_in_ours" and category == "operations":
            plan.reextract.append({"source": "ops_expenses", "category": sub, "month": month,
                                   "why": f"our operations extract has no {sub} for {month}"})  # fmt: skip
        elif r.cause != "missing_in_ours":
            plan.reextract.append({"source": "finance_ledger", "keys": [str(r.line_id)],
                                   "why": "a line Finance's ledger lacks"})  # fmt: skip
        plan.months = _months_in_history(state, [*plan.months, month, state.period])
    return kit.Evidence(True, "; ".join(parts), _recon_view(rows), {"plan": plan.as_json()})


def finance_fx(state: State) -> kit.Evidence:
    """Currency conversion: Finance converted at a rate that is not the published month-end rate."""
    return _ledger_class(state, "fx", "every ledger line converted at the published month-end rate",
                         "Finance's rate differs", "Finance's line at the month-end rate")  # fmt: skip


def finance_unexplained(state: State) -> kit.Evidence:
    """What no class explains (to take to the Finance meeting line by line)."""
    rows = _unexpected(state)
    rows = rows[rows["difference_class"] == "unexplained"]
    if not len(rows):
        return kit.Evidence(False, "no unexplained difference")
    lines = sorted(set(rows["line_id"]))
    plan = Plan([{"source": "finance_ledger", "keys": lines, "why": "Finance's current ledger lines"}],
                _months_in_history(state, [state.period]))  # fmt: skip
    total = int(rows["component_usd_cents"].sum())
    return kit.Evidence(True, f"{len(lines)} line(s) differ by {total / 100:+,.2f} USD unexplained: {', '.join(lines[:5])}",
                        _recon_view(rows), {"line_ids": lines, "plan": plan.as_json()})  # fmt: skip


# ---------------------------------------------------------------- missing_subscription_data


def _lost(state: State) -> pd.DataFrame:
    """The month's billing rows the billing system holds that never landed (``gaps.unlanded``, read
    once: ``state.lost``, a text when it cannot be asked; then no rows)."""
    if state.lost is None:
        state.lost = gaps.unlanded(BILLING_SOURCES, state.period, as_of=state.ctx.as_of) if state.period else "no month"  # fmt: skip
    return state.lost if isinstance(state.lost, pd.DataFrame) else pd.DataFrame(columns=gaps.COLUMNS)


def billing_api_down(state: State) -> kit.Evidence:
    """Billing API down: days whose invoice delivery arrived empty while renewals were due, or rows of
    several billing sources that never landed. Each source empty on those days is re-extracted over
    its own gap (``gaps.gap_days``), with every day of rows it lost (a partly delivered first day)."""
    ev = state.result.evidence if state.result is not None else {}
    due = (
        list(ev.get("empty_deliveries_with_renewals_due") or [])
        if state.result and state.result.failed
        else []
    )
    lost = _lost(state)
    if not due and lost["source"].nunique() < 2:  # a late invoice is one source; an outage loses several
        return kit.Evidence(False, "no empty billing delivery on a day with renewals due, no rows of "
                            "several billing sources missing from the landing zone")  # fmt: skip
    all_days = gaps.billing_days(state.aggregate.deliveries)
    flagged = all_days[all_days["day"].isin(due)]
    empty = {s: gaps.gap_days(all_days, due, s) for s in ("subscriptions", "billing_invoices", "billing_payments",
             "billing_customers") if len(flagged) and s in flagged.columns and (flagged[s] == 0).all()}  # fmt: skip
    by_source = {s: sorted(set(empty.get(s, [])) | set(lost.loc[lost["source"] == s, "day"]))
                 for s in (*empty, *[s for s in dict.fromkeys(lost["source"]) if s not in empty])}  # fmt: skip
    days = sorted({d for ds in by_source.values() for d in ds})
    missing = [r for r in ev.get("missing_renewals") or [] if r.get("day") in due]
    plan = Plan([{"source": s, "days": d, "why": "deliveries that arrived empty or partly"} for s, d in by_source.items()],
                _months_in_history(state, [state.period]))  # fmt: skip
    detail = "; ".join(f"{s} delivered 0 rows on {', '.join(d)}" for s, d in empty.items()) or "no empty day"
    if due:
        subs = ", ".join(str(r["subscription_id"]) for r in missing[:5])
        detail += f"; on {', '.join(due)} {len(missing)} renewal(s) were due without an invoice line ({subs})"
    detail += f"; {gaps.describe(state.lost)}"
    return kit.Evidence(True, detail, all_days[all_days["day"].isin(days)], {"days": days, "sources": list(by_source),
                        "days_by_source": by_source, "unlanded": lost.to_dict("records"), "plan": plan.as_json()})  # fmt: skip


def billing_not_syncing(state: State) -> kit.Evidence:
    """Database not syncing: a billing delivery missing while later ones arrived, a billing source
    that stopped delivering what the month needs, or rows the billing system holds that never landed."""
    lost = _lost(state)
    if state.aggregate is None or state.result is None or not (state.result.failed or len(lost)):
        return kit.Evidence(False, "no billing delivery missing")
    holes = list(state.result.evidence.get("missing_deliveries") or [])
    st = state.aggregate.staleness
    stopped = (
        st[st["source"].isin(BILLING_SOURCES) & st["trailing_missing"].map(len).gt(0)] if len(st) else st
    )
    if not holes and not len(stopped) and not len(lost):
        return kit.Evidence(False, "every billing source delivered each day, in order")
    by_source: dict[str, list[str]] = {}
    for h in holes:
        by_source.setdefault(h["source"], []).append(h["day"])
    for r in stopped.itertuples():
        by_source.setdefault(r.source, []).extend(r.trailing_missing)
    for r in lost.itertuples():
        by_source.setdefault(r.source, []).append(r.day)
    plan = Plan([{"source": s, "days": sorted(set(days)), "why": "deliveries that never arrived"}
                 for s, days in sorted(by_source.items())], _months_in_history(state, [state.period]))  # fmt: skip
    detail = "; ".join(
        f"{s}: no delivery for {', '.join(sorted(set(d)))}" for s, d in sorted(by_source.items())
        if any(h["source"] == s for h in holes) or s in set(stopped["source"] if len(stopped) else ())
    )  # fmt: skip
    detail = "; ".join(x for x in (detail, gaps.describe(lost) if len(lost) else "") if x)
    return kit.Evidence(True, detail, pd.DataFrame(holes), {"plan": plan.as_json()})


def payment_delays(state: State) -> kit.Evidence:
    """Payment processing delays: renewals due on a day whose invoice delivery had rows, but not theirs."""
    ev = state.result.evidence if state.result is not None and state.result.failed else {}
    empty = set(ev.get("empty_deliveries_with_renewals_due") or [])
    rows = [r for r in ev.get("missing_renewals") or [] if r.get("day") not in empty]
    if not rows:
        return kit.Evidence(False, "no renewal missing from a delivery that had rows")
    days = sorted({r["day"] for r in rows})
    frame = pd.DataFrame(rows)
    plan = Plan([{"source": "billing_invoices", "days": days, "why": "invoice lines billing created late"}],
                _months_in_history(state, [state.period]))  # fmt: skip
    detail = f"{len(rows)} renewal(s) not invoiced on {', '.join(days)}: " + ", ".join(
        f"{r['subscription_id']} ({r['currency']} {r['expected_amount'] / 100:,.2f})" for r in rows[:5]
    )
    return kit.Evidence(True, detail, frame, {"plan": plan.as_json()})


# ---------------------------------------------------------------- expenses_wrong_month


def _flags(state: State, kinds: Sequence[str]) -> pd.DataFrame:
    if state.aggregate is None:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    f = state.aggregate.flags
    return f[f["kind"].isin(kinds)].reset_index(drop=True)


def late_submissions(state: State) -> kit.Evidence:
    """Operations submitted late: booked in the month incurred, so a closed month changed."""
    rows = _flags(state, ["late_submission"])
    if not len(rows):
        return kit.Evidence(False, "no expense submitted late")
    months = sorted({str(d)[:7] for d in rows["incurred_date"]})
    detail = "; ".join(
        f"{r.id} ({r.provider_or_category}) incurred {r.incurred_date}, {r.detail}" for r in rows.itertuples()
    )
    plan = Plan([], _months_in_history(state, [state.period, *months]))
    return kit.Evidence(True, detail, rows, {"ids": rows["id"].tolist(), "plan": plan.as_json()})


def cloud_delay(state: State) -> kit.Evidence:
    """Cloud billing delay: a provider's bill arrived after its due day, or has not arrived."""
    rows = _flags(state, ["cloud_bill_late", "cloud_bill_overdue"])
    if not len(rows):
        return kit.Evidence(False, "every expected cloud bill arrived by its due day")
    bills = rows.groupby(["kind", "provider_or_category", "incurred_date"]).agg(
        charges=("id", "size"), detail=("detail", "first")).reset_index()  # fmt: skip
    detail = "; ".join(f"{b.provider_or_category} {b.incurred_date}: {b.detail}" for b in bills.itertuples())
    arrived = bills.loc[bills["kind"] == "cloud_bill_late", "incurred_date"].astype(str).tolist()
    plan = Plan([], _months_in_history(state, [state.period, *arrived]))
    return kit.Evidence(True, detail, bills, {"overdue": bills.loc[bills["kind"] == "cloud_bill_overdue", "provider_or_category"].tolist(),
                                              "plan": plan.as_json()})  # fmt: skip


def fat_fingers(state: State) -> kit.Evidence:
    """A fat-fingered manual entry: an amount far off its category, or an implausible incurred date."""
    rows = _flags(state, ["outlier", "implausible_date"])
    if not len(rows):
        return kit.Evidence(False, "no outlier amount, no implausible date")
    ids = sorted(set(rows["id"]))
    detail = "; ".join(
        f"{r.id} {r.kind}: {r.detail} ({r.provider_or_category}, incurred {r.incurred_date})"
        for r in rows.itertuples()
    )
    plan = Plan([{"source": "ops_expenses", "keys": ids, "why": "entries corrected by Operations"}],
                _months_in_history(state, [state.period, *[str(d)[:7] for d in rows["incurred_date"]]]))  # fmt: skip
    return kit.Evidence(True, detail, rows, {"ids": ids, "plan": plan.as_json()})


# ---------------------------------------------------------------- math_errors


def _findings(state: State) -> pd.DataFrame:
    if state.aggregate is None:
        return empty_findings()
    return state.aggregate.findings


def _keys_plan(state: State, rows: pd.DataFrame, why: str) -> Plan:
    reqs = [{"source": s, "keys": sorted(set(g["key_value"].astype(str))), "why": why}
            for s, g in rows.groupby("source")]  # fmt: skip
    return Plan(reqs, _months_in_history(state, [state.period]))


def null_handling(state: State) -> kit.Evidence:
    """Bad NULL handling: NULL amounts, zero denominators, a NULL published figure."""
    f = _findings(state)
    rows = f[(f["action"] == "quarantined") & f["reason"].str.contains("NULL|0 seats|zero", regex=True)]
    problems = list(state.result.evidence.get("problems") or []) if state.result is not None else []
    if not len(rows) and not problems:
        return kit.Evidence(False, "no NULL or zero denominator reached the figures")
    parts = [
        f"{r.source} {r.key_column}={r.key_value} (delivery {r.delivery_partition}): {r.reason}"
        for r in rows.itertuples()
    ]
    plan = _keys_plan(state, rows, "rows delivered with NULL or zero values")
    return kit.Evidence(
        True, "; ".join(parts + problems), rows.reset_index(drop=True), {"plan": plan.as_json()}
    )


def join_duplicates(state: State) -> kit.Evidence:
    """Joins creating duplicate rows: a row delivered again unchanged (it would fan joins out)."""
    f = _findings(state)
    rows = f[f["action"] == "deduplicated"]
    joins = state.aggregate.joins.frame() if state.aggregate is not None else pd.DataFrame()
    fanned = joins[joins["result_rows"] != joins["left_rows"]] if len(joins) else joins
    if not len(rows) and not len(fanned):
        return kit.Evidence(False, f"every join kept its row count ({len(joins)} join(s))")
    parts = [
        f"{r.source} {r.key_column}={r.key_value} delivered again on {r.delivery_partition} (copy dropped)"
        for r in rows.itertuples()
    ]
    parts += [f"join {r.join}: {r.left_rows} -> {r.result_rows} rows" for r in fanned.itertuples()]
    return kit.Evidence(True, "; ".join(parts), rows.reset_index(drop=True), {"handled": not len(fanned)})


def wrong_types(state: State) -> kit.Evidence:
    """Wrong data types: amounts delivered as text (coerced) or not numbers at all (quarantined)."""
    f = _findings(state)
    coerced = f[f["action"] == "coerced"]
    broken = f[(f["action"] == "quarantined") & f["reason"].str.contains("text|whole number", regex=True)]
    if not len(coerced) and not len(broken):
        return kit.Evidence(False, "every amount arrived as a whole number")
    parts = []
    for (source, part), g in coerced.groupby(["source", "delivery_partition"]):
        parts.append(
            f"{source} delivery {part}: {len(g)} amount(s) as text, kept ({', '.join(g['key_value'][:3])}…)"
        )
    parts += [f"{r.source} {r.key_value}: {r.reason}" for r in broken.itertuples()]
    plan = _keys_plan(state, broken, "values that are not numbers") if len(broken) else Plan()
    return kit.Evidence(True, "; ".join(parts), pd.concat([coerced, broken]).reset_index(drop=True),
                        {"plan": plan.as_json(), "handled": not len(broken)})  # fmt: skip


# ---------------------------------------------------------------- fixing


def apply_fix(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> kit.FixRecord | None:
    """What the diagnosis calls for (:func:`plan_of`, kept as ``state.plan``), through
    ``kit.guarded_fix`` (a dry run unless ``ctx.apply_fix``); with an empty plan there is nothing
    to fix. Freshness: re-run what its evidence names (:func:`rerun_stale`)."""
    if state.catalogue_id == FRESHNESS:
        return rerun_stale(ctx, diag)
    plan = state.plan = plan_of(diag)
    if not plan.reextract and not plan.months:
        print("nothing to fix")
        return None
    return kit.guarded_fix(ctx.apply_fix, lambda: apply_plan(ctx, plan), plan.describe())


# The freshness runbook's findings: the notebook records each with one of these reasons, and its fix
# re-runs the targets of these (in this order, then the symptoms': stale marts, partitions built
# before their data arrived). Sources still late: a re-run cannot bring their data.
UPSTREAM_DATA_DELAYED = "upstream data delayed"
LATE_DATA_AFTER_BUILD = "late data arrived after the month was built"
UPSTREAM_PIPELINE_LATE = "upstream pipeline late"
NOT_ENOUGH_COMPUTE = "not enough compute"
JOB_FAILED = "job failed"
SCHEDULER_FAILED = "job scheduler failed"
NEVER_RUN = "never run"
FRESHNESS_RERUNS = (JOB_FAILED, NOT_ENOUGH_COMPUTE, UPSTREAM_PIPELINE_LATE, NEVER_RUN)
FRESHNESS_SOURCES = UPSTREAM_DATA_DELAYED


def rerun_stale(ctx: kit.RunbookContext, diag: kit.Diagnosis) -> kit.FixRecord:
    """The freshness runbook's fix: re-run (``backfill --force --downstream``) the failed partitions,
    the late upstreams, the stale marts' current partition and every partition built before late
    data for it arrived, saying which sources are still late."""
    found = {f.reason: kit.Evidence(f.holds, f.detail, data=f.evidence) for f in diag.findings}
    ordered = [found[r] for r in FRESHNESS_RERUNS if r in found]
    targets = diag.targets(*ordered, *diag.symptoms)
    sources = found.get(FRESHNESS_SOURCES, kit.Evidence(False, ""))
    what = f"re-run {kit.describe_targets(targets)} with their dependants{kit.chase_note(sources)}"
    return kit.guarded_fix(ctx.apply_fix, lambda: kit.rerun(ctx, targets), what)


# ---------------------------------------------------------------- verifying


Verification = kit.HandledVerification  # passes when all that still fails is handled


def _only_handled(ctx: kit.RunbookContext, result: CheckResult) -> str | None:
    """Why what ``result`` still reports is already handled, else None."""
    ev = result.evidence
    if result.check_id.endswith(".math_errors"):
        counts = dict(ev.get("counts") or {})
        if not ev.get("problems") and counts and set(counts) <= set(HANDLED_ACTIONS):
            return ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    if result.check_id.endswith(".expenses_wrong_month"):
        rows = list(ev.get("rows") or [])
        if rows and all(r["kind"] in LATE_KINDS and _rebuilt_after(ctx, r) for r in rows):
            return ", ".join(sorted({f"{r['kind']} {r['id']}" for r in rows}))
    return None


def _rebuilt_after(ctx: kit.RunbookContext, flag: dict[str, Any]) -> bool:
    """A late cost is in its month once that month's latest run saw it (``as_of`` after it arrived)."""
    from helpers.runs import records as runsmod

    month = str(flag["incurred_date"])[:7]
    arrived = pd.Timestamp(flag["submitted_at"]) if flag.get("submitted_at") else None
    done = [r for r in runsmod.list_runs(pipeline=AGGREGATE, logical_date=month) if r.status == "succeeded"]
    if not done or arrived is None or done[0].as_of is None:
        return False
    return pd.Timestamp(done[0].as_of) >= arrived


def verify(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> kit.Verification:
    """Re-run the alert's check (the result the fix's re-run recorded), accepting what the
    pipeline already handles (see the module doc). Freshness: the freshness checks, re-run."""
    if state.catalogue_id == FRESHNESS:
        out, period = diag.verify(kind="freshness"), period_for(ctx)
        if out.results and period:  # and the month's deliveries due by now have all arrived
            done = gaps.deliveries_complete(rebuild(ctx, period).deliveries, check_id=state.check_id,
                                            period=period, as_of=ctx.as_of, run_id=ctx.run_id)  # fmt: skip
            print(f"{done.check_id}: {done.status} - {done.summary}")
            out = diag.verification = kit.Verification((*out.results, done), out.source, out.recorded)
        return out
    if ctx.check_id or diag.present:
        # a domain check runs inside its pipeline's run: its latest stored result for the month
        # (the fix's re-run recorded one) is the re-run check
        base = kit.Verification(stored_results(state.check_id, state.period), "stored", False)
        print(repr(base).splitlines()[0])
        if _other_alert(ctx, state.check_id):  # the check that raised the alert, re-run too
            alert = ctx.alert
            also = (
                kit.Verification(stored_results(alert.check_id, alert.partition), "stored", False)
                if alert.kind == "domain"
                else kit.verify(alert.check_id, ctx)
            )
            base = kit.Verification((*base.results, *also.results), base.source, also.recorded)
        complete = None
        if state.catalogue_id == "missing_subscription_data" and state.period:
            lost = gaps.unlanded(BILLING_SOURCES, state.period, as_of=ctx.as_of)  # now, after the fix
            complete = gaps.source_complete(lost, check_id=state.check_id, period=state.period, as_of=ctx.as_of,
                                            run_id=ctx.run_id)  # fmt: skip
        if complete is not None:  # the complete expected state, not the part repaired
            base = kit.Verification((*base.results, complete), base.source, base.recorded)
    else:
        base = diag.verify()  # no alert, no problem: nothing to verify
    handled = []
    for r in base.results:
        why = _only_handled(ctx, r) if r.failed else None
        if why:
            handled.append(r.check_id)
            print(f"{r.check_id}: what it still lists is handled: {why}")
    out = Verification(base.results, base.source, base.recorded, tuple(handled))
    diag.verification = out
    return out


# ---------------------------------------------------------------- the month-end close: pipeline items

CLOSE_ITEMS = (
    "Profit reconciled with Finance",
    "Growth MRR identity holds",
    "Engagement complete for the month",
    "investor_monthly cross-checks pass",
    "report is final",
)


def close_pipeline_items(ctx: kit.RunbookContext, period: str) -> kit.Evidence:
    """The plan's "everyone verifies investor reports look right", item by item, for ``period``:

    Profit reconciled with Finance (``profit_monthly.reconciliation_status``); the Growth MRR identity
    (starting MRR + movements = ending MRR, customers too: ``cross_checks.figures_consistent``);
    Engagement complete for the month (``engagement_monthly`` through the last day); the investor
    aggregate's cross-checks as recorded with its latest run; and the report's FINAL/DRAFT verdict
    with its blockers (``close.close_status``). Read-only.
    """
    from helpers.investor import close
    from helpers.investor.aggregate import growth_values
    from helpers.investor.cross_checks import figures_consistent
    from helpers.investor.inputs import latest_run, load_inputs
    from helpers.investor.metrics import ENGAGEMENT, GROWTH, PIPELINE, PROFIT

    rows: list[dict[str, Any]] = []

    def item(pipeline: str, what: str, ok: bool, detail: str) -> None:
        rows.append(dict(pipeline=pipeline, item=what, ok=bool(ok), detail=detail))

    inputs = load_inputs(period, ctx.as_of)
    if inputs.profit is None:
        item(
            PROFIT,
            CLOSE_ITEMS[0],
            False,
            f"no Profit figures: {inputs.missing.get(PROFIT)}",
        )
    else:
        row = inputs.profit.row
        status = str(row.get("reconciliation_status"))
        diff = row.get("finance_difference_usd_cents")
        detail = f"{status}" + (
            f" (our profit - Finance's: {int(diff) / 100:+,.2f} USD)" if pd.notna(diff) else ""
        )
        item(PROFIT, CLOSE_ITEMS[0], status == "within_tolerance", detail)
    if inputs.growth is None:
        item(
            GROWTH,
            CLOSE_ITEMS[1],
            False,
            f"no Growth figures: {inputs.missing.get(GROWTH)}",
        )
    else:
        cross = figures_consistent(None, growth_values(inputs.growth.row))
        item(GROWTH, CLOSE_ITEMS[1], cross.passed, cross.summary)
    if inputs.engagement is None:
        why = inputs.missing.get(ENGAGEMENT)
        item(ENGAGEMENT, CLOSE_ITEMS[2], False, f"no Engagement figures: {why}")
    else:
        src = inputs.engagement
        item(
            ENGAGEMENT,
            CLOSE_ITEMS[2],
            src.final,
            "; ".join(src.reasons) or "complete through the month's last day",
        )
    status = close.close_status(period, ctx.as_of, config=ctx.config)
    mine = [i for i in status.items if i.pipeline == PIPELINE and i.section == "checks"]
    failing = [f"{i.item}: {i.detail}" for i in mine if not i.ok]
    run = latest_run(PIPELINE, period)
    detail = "; ".join(failing) or (f"{len(mine)} cross-check(s) pass" if mine else run.describe())
    item(PIPELINE, CLOSE_ITEMS[3], bool(mine) and not failing, detail)
    blockers = status.blocker_lines(limit=5)
    more = f" (+{len(status.blockers) - 5} more)" if len(status.blockers) > 5 else ""
    item(
        "month_end_report",
        CLOSE_ITEMS[4],
        status.final,
        status.label + (": " + "; ".join(blockers) + more if blockers else ""),
    )
    frame = pd.DataFrame(rows, columns=["pipeline", "item", "ok", "detail"])
    bad = frame[~frame["ok"]]
    detail = (f"{period}: {len(bad)} of {len(frame)} pipeline item(s) not done: " + "; ".join(bad["item"])
              if len(bad) else f"{period}: every pipeline item done; the report is FINAL")  # fmt: skip
    return kit.Evidence(bool(len(bad)), detail, frame, {"report": status.label, "period": period})

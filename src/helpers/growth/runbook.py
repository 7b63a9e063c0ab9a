"""Evidence, fixes and verification for the Growth runbooks (``notebooks/runbooks/growth/<id>.ipynb``).

The family-runbook contract (the Profit and Engagement runbook modules follow it too):
:class:`State` is what a runbook reads once, :func:`load_state` builds it (the month as
``growth_aggregate`` computes it now, :func:`helpers.growth.month.build_month`, with the five
checks evaluated on it), :func:`check_now` is the symptom (the runbook's check as it stands),
:func:`apply_fix` performs the fix only when ``ctx.apply_fix`` and :func:`verify` re-runs the check.
Between them, one evidence function per likely cause looks at the alert's check through the
plan's "Why" list.

The Growth checks are about *source records* (docs/pipelines.md, "Growth checks"): the figures are computed with the
repairs applied, so a fix here does what the data team can do — re-run the month (and, for late
CRM entries, the ``growth_daily`` days built before they landed) with ``backfill --force
--downstream``, write a reviewed mapping (duplicates), and hand the source owner the list of
records to correct (``runs/corrections/growth/``). Verify therefore asks two questions:

- ``duplicate_accounts``: the re-run's own check (a reviewed merge is no longer listed);
- the others: every record the check names is repaired in the figures (a skip inferred from
  billing, a late entry included by a re-run, a plan change re-dated to billing, a cancellation
  counted from its grace end), and the warehouse's month equals the recomputed figures. The check
  itself keeps failing until the source owner corrects the records, so the alert stays open for
  them (it is not resolved here).

Nothing reads the wall clock: everything is as of ``ctx.as_of``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from helpers.checks import CheckResult
from helpers.core import paths
from helpers.core.config import GrowthConfig
from helpers.core.periods import month_bounds
from helpers.growth import checks as growth_checks
from helpers.growth import entities
from helpers.growth import metrics as growth
from helpers.growth.month import GrowthMonth, build_month
from helpers.runbooks import kit
from helpers.storage import landing, warehouse

PIPELINE = growth_checks.PIPELINE
DAILY = "growth_daily"
IDS = (
    "skipped_stage",
    "late_account_updates",
    "duplicate_accounts",
    "growth_revenue_mismatch",
    "churn_misclassified",
)
# The sources a runbook cannot work without (the CRM and billing).
REQUIRED_SOURCES = ("crm_stage_history", "subscriptions", "billing_customers")
# Who corrects the source records of each check (docs/pipelines.md, "Growth checks": the repair column).
SOURCE_OWNER = {
    "skipped_stage": "Accounts (add the missing stage in the CRM)",
    "late_account_updates": "Accounts (AEs enter the pending changes)",
    "duplicate_accounts": "Accounts (merge the CRM records)",
    "growth_revenue_mismatch": "Sales (correct the contract start) and Accounts (re-date the plan change)",
    "churn_misclassified": "Billing/Accounts (correct the subscription's cancellation)",
}
SUMMARY_COLUMNS = (
    *growth.MONEY_COLUMNS,
    "customers_start",
    "customers_end",
    "new_customers",
    "reactivated_customers",
    "churned_customers",
)


def check_id(cid: str) -> str:
    return f"{PIPELINE}.{cid}"


def period_of(ctx: kit.RunbookContext) -> str:
    """The month to look at: the context's partition (a day's month), else the month before ``as_of``'s."""
    if ctx.partition and ctx.partition != "current":
        return ctx.partition[:7]
    first = ctx.as_of.date().replace(day=1)
    return (first - dt.timedelta(days=1)).strftime("%Y-%m")


# ---------------------------------------------------------------- the state: the month, as growth_aggregate computes it


@dataclass
class State:
    """What a Growth runbook reads once: its month recomputed at ``as_of``, with the checks on it."""

    catalogue_id: str
    period: str
    as_of: dt.datetime
    settings: GrowthConfig
    month: GrowthMonth | None = None  # None: the CRM or billing has not landed at all
    results: dict[str, CheckResult] = field(default_factory=dict)  # by check id

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return month_bounds(self.period, tz="UTC")

    def result(self, cid: str | None = None) -> CheckResult:
        """The month's result of check ``cid`` (default: the runbook's own)."""
        return self.results[check_id(cid or self.catalogue_id)]


def missing_sources(root: Path | None = None) -> list[str]:
    present = set(landing.sources(root))
    return [s for s in REQUIRED_SOURCES if s not in present]


def load_state(ctx: kit.RunbookContext, catalogue_id: str) -> State:
    """The month in scope (:func:`period_of`) recomputed from the landing zone as of ``ctx.as_of``
    with the reviewed merges in config (``build_month``), and every Growth check evaluated on it.

    Without the CRM or billing landed at all there is no month (``State.month`` None).
    """
    if catalogue_id not in IDS:
        raise ValueError(f"catalogue_id: expected one of {', '.join(IDS)}, got {catalogue_id!r}")
    period, settings = period_of(ctx), ctx.config.pipelines.growth
    if missing_sources():
        return State(catalogue_id, period, ctx.as_of, settings)
    month = build_month(period, ctx.as_of, settings=settings)
    results = month.evaluate_checks(run_id=ctx.run_id, evaluated_at=ctx.as_of)
    return State(catalogue_id, period, ctx.as_of, settings, month, results)


def _no_data(cid: str) -> kit.Evidence:
    missing = ", ".join(missing_sources())
    return kit.Evidence(False, f"nothing to check for {cid}: no Growth sources landed yet ({missing})")


def _frame(records: Any) -> pd.DataFrame:
    return pd.DataFrame(list(records or []))


def check_now(state: State) -> kit.Evidence:
    """The symptom: the month's check of the runbook recomputed now, with the records it names."""
    cid = state.catalogue_id
    if state.month is None:
        return _no_data(cid)
    r = state.result()
    ev = dict(r.evidence)
    tables = {
        "skipped_stage": ("rows",),
        "late_account_updates": ("late", "pending"),
        "duplicate_accounts": ("merges",),
        "growth_revenue_mismatch": ("deals", "plan_changes"),
        "churn_misclassified": ("episodes",),
    }[cid]
    parts = [_frame(ev.get(k)).assign(kind=k) for k in tables if ev.get(k)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    keep = {k: ev[k] for k in ("accounts", "stage_event_ids", "deal_ids", "event_ids", "into") if k in ev}
    detail = r.summary if state.period in r.summary else f"{state.period}: {r.summary}"
    return kit.Evidence(r.failed, detail, frame, {"check_id": r.check_id, "period": state.period, **keep})


def _evidence(
    frame: pd.DataFrame, holds_detail: Callable[[pd.DataFrame], str], empty: str, **data: Any
) -> kit.Evidence:
    holds = bool(len(frame))
    return kit.Evidence(holds, holds_detail(frame) if holds else empty, frame.reset_index(drop=True), data)


def is_monitor_alert(ctx: kit.RunbookContext) -> bool:
    """The alert came from a monitor (freshness, row count, NULLs) routed to this runbook, not a Growth check."""
    return ctx.alert is not None and ctx.alert.kind != "domain"


def monitor_symptom(ctx: kit.RunbookContext) -> kit.Evidence:
    """A monitor's alert routed here (Growth lateness -> late_account_updates, a row rise ->
    duplicate_accounts): the monitor's condition now, with the partitions to re-run."""
    if not is_monitor_alert(ctx):
        return kit.Evidence(False, "no monitor alert: the Growth check is the symptom")
    kind = ctx.alert.kind
    if kind == "row_count":
        return kit.row_count_anomalies(ctx)
    if kind == "nulls":
        return kit.null_columns(ctx)
    marts, sources = kit.mart_freshness(ctx), kit.late_sources(ctx)
    return kit.Evidence(
        marts.holds or sources.holds,
        f"{marts.detail}; {sources.detail}",
        marts.frame,
        {"targets": marts.data["targets"]},
    )


# ---------------------------------------------------------------- skipped_stage


def automation_users(chain: pd.DataFrame) -> set[str]:
    """Who enters the CRM's automated rows: the users behind most ``lead`` rows (the product sync)."""
    leads = chain[chain["to_stage"] == "lead"]["entered_by"].dropna()
    if leads.empty:
        return set()
    share = leads.value_counts(normalize=True)
    return set(share[share >= 0.5].index)


def _who_enters(chain: pd.DataFrame, stage: str, robots: set[str]) -> str:
    rows = chain[chain["to_stage"] == stage]["entered_by"].dropna()
    if rows.empty:
        return "unknown"
    return "automation" if rows.isin(robots).mean() >= 0.5 else "people"


def skips(state: State) -> pd.DataFrame:
    """The month's skipped transitions with who normally enters the missing stage and the typed ``from_stage``."""
    if state.month is None:
        return pd.DataFrame()
    start, end = state.window
    f = growth_checks.skipped_stage_findings(state.month.life, start, end)
    if f.empty:
        return f
    chain = state.month.life.chain
    robots = automation_users(chain)
    f["missing_entered_by"] = [_who_enters(chain, s, robots) if s else "unknown" for s in f["missing_stage"]]
    typed = chain.set_index("stage_event_id")["from_stage"]
    f["typed_from_stage"] = f["stage_event_id"].map(typed)
    cols = ["stage_event_id", "account_id", "transition", "missing_stage", "missing_entered_by"]
    return f[
        [*cols, "typed_from_stage", "prev_stage", "effective_at", "repaired", "inferred_at", "inferred_from"]
    ]


def _skip_line(f: pd.DataFrame) -> str:
    return "; ".join(
        f"{r.account_id}: {r.transition} (no {r.missing_stage}"
        + (
            f", billing shows it at {r.inferred_at:%Y-%m-%d} from {r.inferred_from})"
            if r.repaired
            else ", not in billing)"
        )
        for r in f.head(6).itertuples()
    )


def skips_forgotten(f: pd.DataFrame) -> kit.Evidence:
    """AEs forgot Salesforce: the missing stage is one people type (conversion, churn), billing has it."""
    rows = f[(f["missing_entered_by"] == "people") & f["repaired"]] if len(f) else f
    return _evidence(
        rows,
        lambda r: f"stage typed by AEs never entered: {_skip_line(r)}",
        "no stage typed by AEs is missing",
    )


def skips_mistyped(f: pd.DataFrame) -> kit.Evidence:
    """Manual entry mistake: the typed ``from_stage`` disagrees with the CRM's previous stage, or billing
    cannot explain the jump (a stage picked wrongly)."""
    if not len(f):
        return _evidence(f, str, "no mistyped stage row")
    wrong = f["typed_from_stage"].fillna("(none)") != f["prev_stage"].fillna("(none)")
    rows = f[wrong | ~f["repaired"]]
    return _evidence(
        rows,
        lambda r: (
            "typed from_stage disagrees or billing cannot explain: "
            + "; ".join(
                f"{x.account_id} {x.transition} (typed from {x.typed_from_stage})"
                for x in r.head(6).itertuples()
            )
        ),
        "every skipped row's from_stage matches the CRM's previous stage and billing explains the jump",
    )


def skips_automation(f: pd.DataFrame) -> kit.Evidence:
    """Automation broke: the missing stage is one the CRM's product sync writes (e.g. the trial)."""
    rows = f[f["missing_entered_by"] == "automation"] if len(f) else f
    return _evidence(
        rows,
        lambda r: f"stage written by the product sync is missing: {_skip_line(r)}",
        "no stage the product sync writes is missing",
    )


# ---------------------------------------------------------------- late_account_updates


def late_rows(state: State) -> pd.DataFrame:
    """CRM rows of the month typed more than ``late_update_days`` late, with who typed them and when they landed."""
    if state.month is None:
        return pd.DataFrame()
    start, end = state.window
    life = state.month.life
    late = growth_checks.late_entries(life, start, end, late_days=state.settings.late_update_days)
    if late.empty:
        return late
    arrived = state.month.src.crm_stages.set_index("stage_event_id")["_arrived_at"]
    robots = automation_users(life.chain)
    late["arrived_at"] = late["stage_event_id"].map(arrived)
    late["typed_by"] = late["entered_by"].map(lambda u: "automation" if u in robots else "people")
    cols = ["stage_event_id", "account_id", "to_stage", "effective_at", "entered_at", "entered_by"]
    return late[[*cols, "typed_by", "lag_days", "arrived_at"]]


def pending_rows(state: State) -> pd.DataFrame:
    """Billing changes of the month the CRM still lacks (the check's ``pending``)."""
    if state.month is None:
        return pd.DataFrame()
    start, end = state.window
    s, m = state.settings, state.month
    return growth_checks.pending_entries(
        m.life, m.cancellations, m.events, m.src.customers, start, end,
        as_of=pd.Timestamp(state.as_of), late_days=s.late_update_days, tolerance_days=s.date_tolerance_days,
    )  # fmt: skip


def late_by_people(late: pd.DataFrame) -> kit.Evidence:
    """AE team swamped: changes typed by people days after they happened, per AE."""
    rows = late[late["typed_by"] == "people"] if len(late) else late
    if not len(rows):
        return _evidence(rows, str, "no change typed late by an AE")
    per = rows.groupby("entered_by").agg(
        changes=("stage_event_id", "count"), max_lag_days=("lag_days", "max")
    )
    per = per.reset_index()
    return _evidence(
        per,
        lambda p: (
            "; ".join(
                f"{r.entered_by}: {r.changes} change(s) up to {r.max_lag_days:.1f} days late"
                for r in p.itertuples()
            )
            + " (accounts "
            + ", ".join(sorted(set(rows["account_id"]))[:8])
            + ")"
        ),
        "",
        accounts=sorted(set(rows["account_id"])),
        stage_event_ids=sorted(rows["stage_event_id"]),
    )


def still_pending(pending: pd.DataFrame) -> kit.Evidence:
    """Manual updates take forever: billing shows changes the CRM still lacks."""
    cols = ["event_id", "product_account_id", "crm_account_id", "to_stage", "at", "days_pending"]
    rows = pending[cols] if len(pending) else pd.DataFrame(columns=cols)
    return _evidence(
        rows,
        lambda r: "; ".join(
            f"{x.crm_account_id or x.product_account_id}: {x.to_stage} on {x.at:%Y-%m-%d} ({x.days_pending:.1f} days)"
            for x in r.head(6).itertuples()
        ),
        "nothing billing shows is missing from the CRM",
    )


def crm_deliveries(ctx: kit.RunbookContext, period: str) -> pd.DataFrame:
    """Each CRM extract's days of the month: missing, or first delivered a day later than its usual lag."""
    first, last = month_bounds(period, tz="UTC")
    last_day = min((last - pd.Timedelta(days=1)).date(), ctx.as_of.date() - dt.timedelta(days=2))
    days = (
        pd.date_range(first.date(), last_day, freq="D").strftime("%Y-%m-%d")
        if last_day >= first.date()
        else []
    )
    cols = ["source", "partition", "arrived_at", "lag_hours", "usual_lag_hours", "problem"]
    rows = []
    for source in [s for s in landing.sources() if s.startswith("crm_")]:
        arr = landing.arrivals(source, as_of=ctx.as_of)
        if not len(arr):
            continue
        got = arr.groupby("partition")["arrived_at"].min()
        lag = (got - pd.to_datetime(got.index, utc=True)).dt.total_seconds() / 3600
        usual = float(lag.median())
        for day in days:
            if day not in got.index:
                rows.append(
                    dict(
                        source=source,
                        partition=day,
                        arrived_at=None,
                        lag_hours=None,
                        usual_lag_hours=usual,
                        problem="missing",
                    )
                )
            elif lag[day] > usual + 24:
                rows.append(dict(source=source, partition=day, arrived_at=got[day], lag_hours=round(lag[day], 1),
                                 usual_lag_hours=round(usual, 1), problem="late"))  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def sync_failed(ctx: kit.RunbookContext, state: State, late: pd.DataFrame) -> kit.Evidence:
    """Sync failed: the month's CRM extracts missing or delivered late, or product-sync rows entered late."""
    if state.month is None:
        return _no_data("late_account_updates")
    frame = crm_deliveries(ctx, state.period)
    robots = late[late["typed_by"] == "automation"] if len(late) else late
    parts = [f"{r.source} {r.partition} {r.problem}" for r in frame.head(6).itertuples()]
    if len(frame) > 6:
        parts.append(f"(+{len(frame) - 6} more)")
    if len(robots):
        parts.append(f"{len(robots)} row(s) of the product sync entered late")
    detail = "; ".join(parts) or f"every CRM extract of {state.period} delivered on its usual lag"
    return kit.Evidence(bool(parts), detail, frame)


def stale_daily(ctx: kit.RunbookContext, late: pd.DataFrame) -> pd.DataFrame:
    """``growth_daily`` days whose latest succeeded run saw the CRM before a late row of that day landed."""
    from helpers.checks.snapshot import load_snapshot

    cols = ["date", "run_id", "built_as_of", "late_rows", "landed_at"]
    if not len(late):
        return pd.DataFrame(columns=cols)
    runs = load_snapshot(ctx.as_of).runs
    runs = runs[(runs["pipeline"] == DAILY) & (runs["status"] == "succeeded") & runs["as_of"].notna()]
    # the day's newest view of the sources (runs started by a fix carry as_of-frame times, a manual
    # run the wall clock's, so start times do not order them; the view they saw does)
    latest = runs.sort_values("as_of").groupby("logical_date").tail(1).set_index("logical_date")
    day = late["effective_at"].dt.strftime("%Y-%m-%d")
    rows = []
    for label, group in late.groupby(day):
        if label not in latest.index:
            continue
        built = pd.Timestamp(latest.loc[label, "as_of"])
        built = built.tz_localize("UTC") if built.tzinfo is None else built
        landed = group["arrived_at"].max()
        if built < landed:
            rows.append(dict(date=label, run_id=latest.loc[label, "run_id"], built_as_of=built,
                             late_rows=len(group), landed_at=landed))  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------- duplicate_accounts


def merges(state: State) -> pd.DataFrame:
    """Automatic merges not reviewed yet (evidence seen before the month's end), with their kind."""
    if state.month is None:
        return pd.DataFrame()
    found = state.month.resolution.proposed(seen_before=state.window[1])
    if found.empty:
        return found
    reasons = found["reasons"].astype(str)
    kind = reasons.map(
        lambda r: "acquisition" if "parent" in r else "name variant" if "name" in r else "same billing/domain"
    )
    return found.assign(kind=kind)[
        ["account_id", "into", "kind", "reasons", "score", "name", "into_name", "seen_at"]
    ]


def merges_of(found: pd.DataFrame, kind: str, what: str) -> kit.Evidence:
    rows = found[found["kind"] == kind] if len(found) else found
    return _evidence(
        rows,
        lambda r: "; ".join(
            f"{x.name} ({x.account_id}) is {x.into_name} ({x.into}): {x.reasons}"
            for x in r.head(6).itertuples()
        ),
        f"no {what}",
        accounts=sorted(rows["account_id"]) if len(rows) else [],
    )


def on_call(ctx: kit.RunbookContext) -> str:
    """The engineer on call at ``ctx.as_of`` (swaps and holidays applied)."""
    from helpers.oncall import schedule as oncall

    return oncall.on_call_at(ctx.config, ctx.as_of).engineer


def write_reviewed(ctx: kit.RunbookContext, found: pd.DataFrame, *, by: str) -> dict[str, Any]:
    """Add the proposed merges to the review file (``entities.reviewed_entries``), keeping what is there."""
    path = entities.merges_path(filename=ctx.config.pipelines.growth.merges_file)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    data = yaml.safe_load(text) or {}
    current = list(data.get("merges") or [])
    known = {(m.get("account_id"), m.get("into")) for m in current}
    add = [
        e
        for e in entities.reviewed_entries(found, by=by, on=ctx.as_of.date())
        if (e["account_id"], e["into"]) not in known
    ]
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    body = {"merges": current + add, "keep_separate": list(data.get("keep_separate") or [])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yml.tmp")
    tmp.write_text(header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
    return {"review_file": str(path), "added": add}


# ---------------------------------------------------------------- growth_revenue_mismatch


def deal_gaps(state: State) -> kit.Evidence:
    """Contract start vs when payment came through: deals dated away from billing's first payment."""
    if state.month is None:
        return _no_data("growth_revenue_mismatch")
    rows = _frame(state.result("growth_revenue_mismatch").evidence.get("deals"))
    return _evidence(
        rows,
        lambda r: "; ".join(
            f"deal {x.deal_id} ({x.account_id}) starts {pd.Timestamp(x.contract_start):%Y-%m-%d}, billing "
            + (f"{pd.Timestamp(x.billing_start):%Y-%m-%d}" if pd.notna(x.billing_start) else "not yet")
            + f" ({x.gap_days:+.0f} days)"
            for x in r.head(6).itertuples()
        ),
        "every deal's contract start agrees with billing's first payment",
        deal_ids=sorted(rows["deal_id"]) if len(rows) else [],
    )


def proration_gaps(state: State) -> kit.Evidence:
    """Pro-rating: CRM plan changes dated away from billing's proration; the share of new/expansion MRR
    billing prorates into later months (the check's ``reconciliation``)."""
    if state.month is None:
        return _no_data("growth_revenue_mismatch")
    ev = state.result("growth_revenue_mismatch").evidence
    rows = _frame(ev.get("plan_changes"))
    recon = ev.get("reconciliation") or {}
    prorated = recon.get("not_yet_recognised_proration_usd_cents")
    tail = (
        f"; billing prorates {prorated / 100:,.2f} USD of the month's new/expansion MRR into later months"
        if prorated
        else ""
    )
    return _evidence(
        rows,
        lambda r: (
            "; ".join(
                f"{x.account_id} plan change {x.stage_event_id} dated {pd.Timestamp(x.effective_at):%Y-%m-%d}, billing "
                f"{pd.Timestamp(x.billing_at):%Y-%m-%d} ({x.gap_days:+.0f} days)"
                for x in r.head(6).itertuples()
            )
            + tail
        ),
        "every CRM plan change agrees with billing's proration" + tail,
        reconciliation=recon,
        stage_event_ids=sorted(rows["stage_event_id"]) if len(rows) else [],
    )


# ---------------------------------------------------------------- churn_misclassified


def episodes(state: State) -> pd.DataFrame:
    """The month's contradicted cancellations with each contradiction as a column."""
    if state.month is None:
        return pd.DataFrame()
    start, end = state.window
    f = growth_checks.churn_findings(state.month.cancellations, start, end)
    cols = ["event_id", "account_id", "customer_id", "reason", "canceled_at", "grace_end", "classification"]
    return f[[*cols, "effective_at", "recovered_at", "used_until", "retries_after", "premature", "evidence"]]


def _episode_line(r: pd.DataFrame) -> str:
    return "; ".join(f"{x.account_id} ({x.event_id}): {x.evidence}" for x in r.head(6).itertuples())


def churn_payment_failed(f: pd.DataFrame) -> kit.Evidence:
    """Payment failed, not intentional churn: a payment_failed cancellation later paid or re-activated."""
    rows = (
        f[
            (f["reason"] == "payment_failed")
            & (f["recovered_at"].notna() | (f["classification"] == "recovered"))
        ]
        if len(f)
        else f
    )
    return _evidence(
        rows,
        lambda r: f"paid after all (not churn): {_episode_line(r)}",
        "no cancelled account paid afterwards",
    )


def churn_in_grace(f: pd.DataFrame) -> kit.Evidence:
    """Grace period: cancelled before the dunning grace period ended (and still used the product)."""
    rows = f[f["premature"].astype(bool)] if len(f) else f
    return _evidence(
        rows,
        lambda r: f"cancelled inside the grace period: {_episode_line(r)}",
        "no cancellation inside the grace period",
    )


def churn_delayed(f: pd.DataFrame) -> kit.Evidence:
    """Delayed processing: dunning retries still ran after the cancellation."""
    rows = f[f["retries_after"].fillna(0) > 0] if len(f) else f
    return _evidence(
        rows,
        lambda r: f"dunning still retrying after the cancellation: {_episode_line(r)}",
        "no retry after a cancellation",
    )


# ---------------------------------------------------------------- fix


def _corrections_file(ctx: kit.RunbookContext, cid: str, period: str) -> Path:
    folder = paths.runs_dir() / "corrections" / "growth"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{cid}-{period}-{ctx.run_id}.csv"


def fix_targets(ctx: kit.RunbookContext, state: State) -> list[tuple[str, str]]:
    """What to re-run: a routed monitor's partitions; the month when its mart does not hold the repaired
    figures (always for duplicates: the re-run records the reviewed check); for late CRM entries the
    ``growth_daily`` days built before they landed. A month whose mart already holds them is not re-run."""
    targets = kit.rerun_targets(monitor_symptom(ctx))
    if state.month is None:
        return targets
    cid = state.catalogue_id
    if cid == "duplicate_accounts" or not mart_matches(state)[0]:
        targets.append((PIPELINE, state.period))
    if cid == "late_account_updates":
        targets += [(DAILY, d) for d in stale_daily(ctx, late_rows(state))["date"]]
    return targets


def describe_fix(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> str:
    """What :func:`apply` does (or would do): the review file or the correction list, and the re-runs."""
    if not diag.present:
        return "nothing: no problem found"
    cid = state.catalogue_id
    targets = fix_targets(ctx, state)
    rerun = f"re-run {kit.describe_targets(targets)} with their dependants" if targets else ""
    if state.month is None:
        return rerun or "nothing to re-run"
    if not any(p == PIPELINE for p, _ in targets):
        rerun = (rerun + "; " if rerun else "") + mart_matches(state)[1] + ": no re-run of the month needed"
    head = (
        "add the proposed merges to the review file"
        if cid == "duplicate_accounts"
        else (f"list the records for {SOURCE_OWNER[cid]}")
    )
    return f"{head}; {rerun}"


def apply(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State, *, by: str = "") -> dict[str, Any]:
    """The fix: the review file (duplicates) or the correction list for the source owner, then the re-runs.

    Reviewed merges are recorded as reviewed by ``by`` (default: the engineer on call at ``as_of``,
    who chose to apply the fix after reading the diagnosis).
    """
    if not diag.present:
        return {"action": "none"}
    out: dict[str, Any] = {}
    cid = state.catalogue_id
    found = check_now(state)
    if state.month is None:
        pass
    elif cid == "duplicate_accounts":
        out.update(write_reviewed(ctx, merges(state), by=by or on_call(ctx)))
    elif len(found.frame):
        path = _corrections_file(ctx, cid, state.period)
        found.frame.to_csv(path, index=False)
        out["corrections"] = {"file": str(path), "owner": SOURCE_OWNER[cid], "records": len(found.frame)}
    targets = fix_targets(ctx, state)
    if state.month is not None and not any(p == PIPELINE for p, _ in targets):
        out["mart"] = mart_matches(state)[1]
    out["runs"] = kit.rerun(ctx, targets) if targets else []
    failed = [r for r in out["runs"] if r.get("status") not in ("succeeded", "skipped", "blocked")]
    if failed:
        raise RuntimeError(f"re-run failed: {failed[0]}")
    return out


def apply_fix(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> kit.FixRecord | None:
    """The Fix section: :func:`apply` through ``kit.guarded_fix``, so it acts only when ``ctx.apply_fix``
    (otherwise a dry run that records what it would do, :func:`describe_fix`)."""
    return kit.guarded_fix(ctx.apply_fix, lambda: apply(ctx, diag, state), describe_fix(ctx, diag, state))


# ---------------------------------------------------------------- verify


def mart_matches(state: State) -> tuple[bool, str]:
    """Does the warehouse's ``growth_mrr_monthly`` for the month equal the figures recomputed now?"""
    try:
        mart = warehouse.read_table("growth_mrr_monthly", where={"period": state.period})
    except Exception as e:  # no table yet
        return False, f"growth_mrr_monthly {state.period} not readable ({type(e).__name__})"
    if mart.empty:
        return False, f"growth_mrr_monthly {state.period} not built"
    want = state.month.summary.iloc[0]
    diffs = [c for c in SUMMARY_COLUMNS if int(mart.iloc[0][c]) != int(want[c])]
    if diffs:
        return (
            False,
            f"growth_mrr_monthly {state.period} differs from the repaired figures in {', '.join(diffs)}",
        )
    return (
        True,
        f"growth_mrr_monthly {state.period} equals the repaired figures (ending MRR {int(want['ending_mrr_usd_cents'])} cents)",
    )


def repaired(ctx: kit.RunbookContext, state: State) -> tuple[bool, str]:
    """Is every record the runbook's check names repaired in the figures?"""
    cid = state.catalogue_id
    if cid == "skipped_stage":
        f = skips(state)
        bad = f[~f["repaired"]] if len(f) else f
        return not len(bad), f"{len(f) - len(bad)} of {len(f)} skip(s) inferred from billing"
    if cid == "late_account_updates":
        stale = stale_daily(ctx, late_rows(state))
        pend = pending_rows(state)
        ok = not len(stale) and not len(pend)
        return ok, (
            f"{len(pend)} billing change(s) still missing from the CRM; "
            f"{len(stale)} growth_daily day(s) built before their late entries landed"
            + (f" ({', '.join(stale['date'])})" if len(stale) else "")
        )
    if cid == "growth_revenue_mismatch":
        plans = growth_checks.plan_change_findings(state.month.life.plan_gaps, *state.window)
        ok = plans["billing_at"].notna().all() if len(plans) else True
        return (
            bool(ok),
            f"{len(plans)} CRM plan change(s) re-dated to billing's; figures follow billing's dates, not the contract's",
        )
    if cid == "churn_misclassified":
        f = episodes(state)
        good = (
            (f["classification"] == "recovered") | (f["effective_at"] >= f["grace_end"])
            if len(f)
            else pd.Series(dtype=bool)
        )
        return (
            bool(good.all()) if len(f) else True,
            f"{int(good.sum()) if len(f) else 0} of {len(f)} cancellation(s) reclassified (recovered: not churn; else counted from the grace end)",
        )
    raise ValueError(f"cid: expected one of {', '.join(IDS)}, got {cid!r}")


def verify(ctx: kit.RunbookContext, diag: kit.Diagnosis, state: State) -> kit.Verification:
    """Re-run the check. ``duplicate_accounts``: the re-run's stored result. The others: the check
    recomputed now (a fresh :func:`load_state`: the fix changed what it reads), passing when every
    record it names is repaired and the month's mart has the repaired figures (the source still
    needs its owner's correction; the alert is left open)."""
    cid, period = state.catalogue_id, period_of(ctx)
    if is_monitor_alert(ctx):
        return diag.verify()
    if cid == "duplicate_accounts":
        if not (diag.present or ctx.check_id):
            diag.verification = kit.Verification((), "none", False)
        else:
            diag.verification = kit.verify(check_id(cid), ctx, partition=period)
        return diag.verification
    if not diag.present and not ctx.check_id:
        print("verify: nothing to verify (no problem found)")
        diag.verification = kit.Verification((), "none", False)
        return diag.verification
    now = load_state(ctx, cid)
    if now.month is None:
        diag.verification = kit.Verification((), "none", False)
        return diag.verification
    raw = now.result()
    fixed, how = repaired(ctx, now)
    mart_ok, mart = mart_matches(now)
    if not raw.failed:
        status, summary = "pass", f"{raw.summary}; {mart}"
    else:
        status = "pass" if fixed and mart_ok else "fail"
        summary = f"repairs: {how}; {mart}; the source still holds the records until {SOURCE_OWNER[cid]} corrects them"
    result = CheckResult(
        check_id=check_id(cid), pipeline=PIPELINE, partition=period, status=status, severity="warning",
        summary=summary, evidence={"check": raw.summary, "repaired": fixed, "mart": mart, "check_status": raw.status},
        as_of=ctx.as_of, evaluated_at=ctx.as_of, run_id=ctx.run_id, catalogue_id=cid, kind="domain",
    )  # fmt: skip
    diag.verification = kit.Verification((result,), "recomputed", False)
    print(repr(diag.verification).splitlines()[0], "-", summary)
    return diag.verification

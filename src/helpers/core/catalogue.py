"""The failure catalogue: one id per "common issue" of the team's plan, and everything keyed by it.

The same id names the injectable fault of the demo company, the check that detects it
(``catalogue_id=`` on a check), the runbook that fixes it
(``notebooks/runbooks/<family>/<id>.ipynb``), the team outside data engineering that is looped in
when the cause lies with them, and the fault drill that rehearses it (``workbook drill <id>``).
This module is the only definition; every other table is derived from :data:`ENTRIES`.

It also holds the one mapping from a check to the runbook that diagnoses it, :func:`runbook_for`:
by the failing source or upstream where the check names one, else by the pipeline's family
(docs/runbooks.md, "Which runbook runs").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RUNBOOKS_DIR = "notebooks/runbooks"


@dataclass(frozen=True)
class Entry:
    """One common issue of the plan."""

    id: str
    family: str  # profit | growth | engagement: the plan section, and the runbook folder
    issue: str  # the plan's heading for it
    what_goes_wrong: str
    cross_team: str | None = None  # contacts key (config/team.yml ``contacts``) of the team to loop in

    @property
    def runbook(self) -> str:
        return f"{RUNBOOKS_DIR}/{self.family}/{self.id}.ipynb"

    @property
    def drill(self) -> str:
        """The ``workbook drill`` argument that rehearses it."""
        return self.id


ENTRIES: tuple[Entry, ...] = (
    Entry("finance_mismatch", "profit", "Numbers don't match accounting",
          "our profit differs from Finance's ledger: timing, a missing expense category, currency conversion",
          "finance"),
    Entry("missing_subscription_data", "profit", "Missing subscription data",
          "revenue or subscriber counts missing: billing API down, payment delays, DB not syncing",
          "engineering"),
    Entry("expenses_wrong_month", "profit", "Expenses in the wrong month",
          "costs in the wrong period: late ops submissions, cloud billing delay, fat-fingered manual entry"),
    Entry("math_errors", "profit", "Math errors",
          "NULLs, division by zero, negative profit that should be positive: NULL handling, join fan-out, "
          "wrong types"),
    Entry("stale_data", "profit", "Old data",
          "the dashboard shows last week: upstream delayed, scheduler failed, not enough compute"),
    Entry("skipped_stage", "growth", "Accounts skip steps", "an account goes A -> C without B", "accounts"),
    Entry("late_account_updates", "growth", "Updates are late",
          "this week's account changes are not in the system yet", "accounts"),
    Entry("duplicate_accounts", "growth", "Duplicate accounts",
          "the same company counted twice: acquisitions, name variants", "accounts"),
    Entry("growth_revenue_mismatch", "growth", "Growth and revenue don't line up",
          "new accounts up, revenue barely: contract start vs payment date, proration"),
    Entry("churn_misclassified", "growth", "Wrong churn classification",
          "marked cancelled but still using: failed payment, grace period, delayed processing", "accounts"),
    Entry("late_events", "engagement", "Data shows up late",
          "yesterday's events arrive today: offline mobile sync, network, retries"),
    Entry("kafka_outage", "engagement", "Kafka goes down",
          "the event stream drops to zero: broker down, producer can't connect", "engineering"),
    Entry("duplicate_events", "engagement", "Duplicate events",
          "the same click recorded 3 times: client retries, no deduplication"),
    Entry("data_skew_oom", "engagement", "Spark jobs crash with OOM",
          "the aggregation dies out of memory: one account has far more data than others"),
    Entry("upstream_missing", "engagement", "Missing data from other pipelines",
          "NULLs, divide by zero: Profit or Growth not finished, backfill running"),
    Entry("schema_change", "engagement", "Schema changes break everything",
          "events can't be parsed: a new event format deployed without notice", "frontend"),
)  # fmt: skip

BY_ID: dict[str, Entry] = {e.id: e for e in ENTRIES}
FAMILIES: tuple[str, ...] = ("profit", "growth", "engagement")
# id -> family, and family -> its ids in plan order.
FAMILY: dict[str, str] = {e.id: e.family for e in ENTRIES}
CATALOGUE: dict[str, tuple[str, ...]] = {f: tuple(e.id for e in ENTRIES if e.family == f) for f in FAMILIES}
FAULT_IDS: tuple[str, ...] = tuple(FAMILY)
CROSS_TEAM: dict[str, str] = {e.id: e.cross_team for e in ENTRIES if e.cross_team}

# Runbooks for conditions outside the catalogue (the plan's close/backfill procedures).
GENERAL_RUNBOOKS: dict[str, str] = {
    "run_status": f"{RUNBOOKS_DIR}/backfill.ipynb",
    "nulls": f"{RUNBOOKS_DIR}/null_critical_columns.ipynb",
    "row_count": f"{RUNBOOKS_DIR}/row_count_anomaly.ipynb",
    "month_end_close": f"{RUNBOOKS_DIR}/month_end_close.ipynb",
    "fix_deadline": f"{RUNBOOKS_DIR}/incident_fix.ipynb",
}

# Which entry a generic monitor's failure points to, by the pipeline family it watches.
FRESHNESS: dict[str, str] = {
    "profit": "stale_data",
    "growth": "late_account_updates",
    "engagement": "late_events",
}
NULLS: dict[str, str] = {
    "profit": "math_errors",
    "engagement": "upstream_missing",
    "investor": "upstream_missing",
}
ROW_DROP: dict[str, str] = {
    "profit": "missing_subscription_data",
    "growth": "late_account_updates",
    "engagement": "kafka_outage",
    "investor": "upstream_missing",
}
ROW_RISE: dict[str, str] = {
    "profit": "math_errors",
    "growth": "duplicate_accounts",
    "engagement": "duplicate_events",
}
# ... and by the landing source a source monitor watches: every source a pipeline can declare, by
# what it is. Billing -> the Profit billing runbook, CRM -> the Growth late-updates runbook, the
# event stream -> the Kafka outage runbook, the other event sources -> late events, costs -> the
# Profit cost runbook, Finance's ledger -> the reconciliation runbook, reference data -> stale data.
SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "missing_subscription_data": (
        "billing_customers",
        "billing_invoices",
        "billing_payments",
        "subscriptions",
    ),
    "late_account_updates": ("crm_accounts", "crm_stage_history", "account_db", "sales_records"),
    "kafka_outage": ("events",),
    "late_events": ("web_analytics", "mobile_analytics", "api_logs"),
    "expenses_wrong_month": ("cloud_costs", "ops_expenses", "hr_payroll"),
    "finance_mismatch": ("finance_ledger",),
    "stale_data": ("fx_rates", "experiment_assignments"),
}
SOURCE: dict[str, str] = {source: cid for cid, sources in SOURCE_GROUPS.items() for source in sources}


def entry(catalogue_id: str) -> Entry:
    """The entry of an id, or ``ValueError`` naming the ids there are."""
    try:
        return BY_ID[catalogue_id]
    except KeyError:
        raise ValueError(
            f"unknown failure-catalogue id {catalogue_id!r}; expected one of {', '.join(BY_ID)}"
        ) from None


def runbook_path(catalogue_id: str | None, *, fallback: str | None = None) -> str | None:
    """``notebooks/runbooks/<family>/<id>.ipynb`` for a catalogue id, else the general runbook."""
    if catalogue_id is not None:
        return entry(catalogue_id).runbook
    return GENERAL_RUNBOOKS.get(fallback or "") if fallback else None


# ---------------------------------------------------------------- which runbook diagnoses a check

# The kinds of check the monitors emit, by the segment after the pipeline id in their check id
# (``<pipeline>.<segment>[.<subject>]``); any other segment is a pipeline's own (domain) check.
MONITOR_SEGMENTS: dict[str, str] = {
    "freshness": "freshness",
    "source_freshness": "source_freshness",
    "row_count": "row_count",
    "nulls": "nulls",
    "run_status": "run_status",
    "sla": "sla_at_risk",
    "upstream_at_risk": "upstream_at_risk",
    "slots_dropped": "slots_dropped",
}
# The deadlines of ``<pipeline>.sla.<deadline>[.<alert id>]``.
SLA_DEADLINES: tuple[str, ...] = ("freshness", "end_of_week", "month_end_close", "fix_deadline")
# Families with runbooks of their own (``notebooks/runbooks/<family>/``); investor and report
# pipelines are diagnosed by the general runbooks and by their upstreams' runbooks.
_OWN_RUNBOOKS = ("profit", "growth", "engagement")


@dataclass(frozen=True)
class CheckRef:
    """A check id taken apart: its pipeline, its kind and what it is about."""

    pipeline: str
    kind: str  # a monitor kind (MONITOR_SEGMENTS' values) or "domain"
    subject: str  # the source, table, upstream, deadline or domain check name; "" when none


def parse_check_id(check_id: str, pipeline: str | None = None) -> CheckRef:
    """``profit_unit.source_freshness.subscriptions`` -> ``CheckRef("profit_unit", "source_freshness",
    "subscriptions")``; ``growth_aggregate.sla.fix_deadline.12`` -> kind ``sla_at_risk``, subject
    ``fix_deadline.12``. ``pipeline`` (the check's own) is needed only when a pipeline id has dots."""
    if pipeline and check_id.startswith(pipeline + "."):
        rest = check_id[len(pipeline) + 1 :]
    else:
        pipeline, _, rest = check_id.partition(".")
    segment, _, subject = rest.partition(".")
    if segment in MONITOR_SEGMENTS:
        return CheckRef(pipeline or "", MONITOR_SEGMENTS[segment], subject)
    return CheckRef(pipeline or "", "domain", rest)


@dataclass(frozen=True)
class Route:
    """Which runbook diagnoses a check, and what it should look at.

    ``catalogue_id`` is the failure-catalogue id the alert is about (None for a condition outside
    the catalogue: failed runs, the close, a generic anomaly). ``pipeline``, ``check_id`` and
    ``partition`` are set when the runbook must look somewhere else than the alert's own (an
    upstream's failing check); None means the alert's own.
    """

    runbook: str  # notebooks/runbooks/<name>.ipynb
    catalogue_id: str | None
    reason: str  # one line, e.g. "billing source subscriptions: the Profit billing runbook"
    pipeline: str | None = None
    check_id: str | None = None
    partition: str | None = None

    @property
    def name(self) -> str:
        """The runbook's name: its path under ``notebooks/runbooks/`` without ``.ipynb``."""
        return self.runbook.removeprefix(f"{RUNBOOKS_DIR}/").removesuffix(".ipynb")


def _catalogue_route(catalogue_id: str, reason: str, **where: str | None) -> Route:
    return Route(entry(catalogue_id).runbook, catalogue_id, reason, **where)


def _general_route(kind: str, reason: str) -> Route:
    return Route(GENERAL_RUNBOOKS[kind], None, reason)


def _family(pipelines: Mapping[str, Any], pipeline: str) -> str | None:
    p = pipelines.get(pipeline)
    return getattr(p, "family", None) if p is not None else None


def _freshness_route(pipelines: Mapping[str, Any], of: str, what: str, **where: str | None) -> Route:
    family = _family(pipelines, of)
    cid = FRESHNESS.get(family or "", "stale_data")
    return _catalogue_route(cid, f"{what}: the {family or 'pipeline'} freshness runbook", **where)


def _upstream_route(
    pipelines: Mapping[str, Any], ref: CheckRef, up: str, evidence: Mapping[str, Any]
) -> Route:
    """The upstream's own runbook for the upstream's failure: the route of its first late check
    (named in the evidence), looking at the upstream; else the upstream's freshness runbook."""
    late = [c for c in evidence.get("upstream_checks") or () if isinstance(c, Mapping) and c.get("check_id")]
    if up and late:
        first = late[0]
        inner = runbook_for(str(first["check_id"]), up, pipelines=pipelines)
        return Route(
            inner.runbook,
            inner.catalogue_id,
            f"upstream {up} ({first['check_id']}): {inner.reason}",
            pipeline=inner.pipeline or up,
            check_id=inner.check_id or str(first["check_id"]),
            partition=inner.partition or (str(first["partition"]) if first.get("partition") else None),
        )
    if up in pipelines:
        return _freshness_route(pipelines, up, f"upstream {up} of {ref.pipeline}", pipeline=up)
    return _general_route("run_status", f"upstream {up or '?'} of {ref.pipeline}: failed or missing runs")


def _partition_route(ref: CheckRef, family: str | None, evidence: Mapping[str, Any]) -> Route:
    """Row counts and NULLs: the family's runbook of the condition, else the general one."""
    if ref.kind == "row_count":
        direction = evidence.get("direction")
        table = ROW_RISE if direction == "rise" else ROW_DROP if direction == "drop" else {}
        cid = table.get(family or "") if family in _OWN_RUNBOOKS else None
        if cid:
            return _catalogue_route(cid, f"row-count {direction} in {ref.subject} ({family})")
        return _general_route("row_count", f"row count of {ref.subject}")
    cid = NULLS.get(family or "") if family in _OWN_RUNBOOKS else None
    if cid:
        return _catalogue_route(cid, f"NULLs in {ref.subject} ({family})")
    return _general_route("nulls", f"NULLs or missing columns in {ref.subject}")


def _sla_route(
    pipelines: Mapping[str, Any], ref: CheckRef, catalogue_id: str | None, runbook: str | None
) -> Route:
    deadline = ref.subject.split(".", 1)[0]
    if deadline == "freshness":
        return _freshness_route(pipelines, ref.pipeline, f"freshness SLA of {ref.pipeline}")
    if deadline == "end_of_week":
        return _catalogue_route("late_account_updates", f"end-of-week account updates of {ref.pipeline}")
    if deadline == "month_end_close":
        return _general_route("month_end_close", f"month-end close of {ref.pipeline}")
    # a fix deadline: the runbook of the problem being fixed, which says why it is not fixed yet
    if runbook and runbook != GENERAL_RUNBOOKS["fix_deadline"]:
        return Route(runbook, catalogue_id, f"fix deadline of {ref.subject.removeprefix('fix_deadline.')}")
    return _general_route("fix_deadline", f"fix deadline of {ref.subject.removeprefix('fix_deadline.')}")


def runbook_for(
    check_id: str,
    pipeline: str,
    *,
    pipelines: Mapping[str, Any],
    evidence: Mapping[str, Any] | None = None,
    catalogue_id: str | None = None,
    runbook: str | None = None,
) -> Route:
    """The runbook that diagnoses a failing check: the one place this is decided.

    ``pipelines`` is ``config.pipelines.pipelines`` (each with ``family``); ``evidence`` the
    result's (a row count's ``direction``, an upstream check's late ``upstream_checks``, a domain
    check's missing ``upstream``); ``catalogue_id`` and ``runbook`` what a domain check declares
    (a fix deadline's: its alert's). By kind:

    - a source's freshness: by the source (:data:`SOURCE_GROUPS`), whichever pipeline reads it;
    - a pipeline's freshness and freshness SLA: its family's freshness runbook (:data:`FRESHNESS`);
    - "upstream at risk" and a domain check naming a missing upstream: the upstream's own runbook
      for the upstream's failure, pointed at the upstream and its failing check;
    - row counts and NULLs: the family's runbook of the condition, else the general one;
    - a failed or blocked run, and scheduled runs the scheduler dropped: ``backfill`` (failed
      runs, blocking upstreams, compute, late data);
    - the end-of-week SLA: Growth's late updates; the close: ``month_end_close``; a fix deadline:
      the runbook of the problem being fixed, else ``incident_fix``;
    - any other domain check: its catalogue id's runbook, else the runbook it declares.
    """
    ref = parse_check_id(check_id, pipeline)
    family = _family(pipelines, ref.pipeline)
    ev = evidence or {}
    if ref.kind == "source_freshness":
        cid = SOURCE.get(ref.subject) or FRESHNESS.get(family or "", "stale_data")
        group = next((g for g, members in SOURCE_GROUPS.items() if ref.subject in members), None)
        what = f"source {ref.subject}" if group else f"source {ref.subject} (not in the source map)"
        return _catalogue_route(cid, f"{what}: the {entry(cid).family} runbook {cid}")
    if ref.kind == "freshness":
        return _freshness_route(pipelines, ref.pipeline, f"marts of {ref.pipeline} stale")
    if ref.kind == "upstream_at_risk":
        return _upstream_route(pipelines, ref, ref.subject or str(ev.get("upstream") or ""), ev)
    if ref.kind in ("row_count", "nulls"):
        return _partition_route(ref, family, ev)
    if ref.kind == "run_status":
        return _general_route(
            "run_status", f"{ev.get('status') or 'failed or blocked'} run of {ref.pipeline}"
        )
    if ref.kind == "slots_dropped":
        return _general_route("run_status", f"scheduled runs of {ref.pipeline} dropped by the scheduler")
    if ref.kind == "sla_at_risk":
        return _sla_route(pipelines, ref, catalogue_id, runbook)
    upstream = ev.get("upstream")
    if catalogue_id == "upstream_missing" and family != "engagement" and isinstance(upstream, str):
        return _upstream_route(pipelines, ref, upstream, {})
    if catalogue_id in BY_ID:
        return _catalogue_route(catalogue_id, f"{check_id}: the runbook of {catalogue_id}")
    if runbook:
        return Route(runbook, None, f"{check_id}: the runbook it declares")
    return _general_route("run_status", f"{check_id}: no runbook declared, the backfill procedure")


def monitor_check_ids(
    pipelines: Mapping[str, Any], *, fix_deadline_ids: tuple[str, ...] = ("1",)
) -> list[str]:
    """Every check id the monitors (``helpers.checks.monitors``) can emit for ``pipelines``
    (``config.pipelines.pipelines``): what :func:`runbook_for` must route. Row counts and NULLs of
    each declared critical table; a fix deadline per open alert (``fix_deadline_ids`` stand for them)."""
    out: list[str] = []
    for pid, p in pipelines.items():
        sla = p.sla
        out += [f"{pid}.freshness", f"{pid}.run_status", f"{pid}.sla.freshness", f"{pid}.slots_dropped"]
        out += [f"{pid}.source_freshness.{s}" for s in p.sources]
        for table in p.critical_columns:
            out += [f"{pid}.row_count.{table}", f"{pid}.nulls.{table}"]
        if sla.end_of_week_updates:
            out.append(f"{pid}.sla.end_of_week")
        if p.feeds in ("investors", "investor report") and sla.month_end_heightened:
            out.append(f"{pid}.sla.month_end_close")
        out += [f"{pid}.sla.fix_deadline.{n}" for n in fix_deadline_ids]
        out += [f"{pid}.upstream_at_risk.{up}" for up in p.depends_on]
    return out

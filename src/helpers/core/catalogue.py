"""The failure catalogue: one id per "common issue" of the team's plan, and everything keyed by it.

The same id names the injectable fault of the demo company, the check that detects it
(``catalogue_id=`` on a check), the runbook that fixes it
(``notebooks/runbooks/<family>/<id>.ipynb``), the team outside data engineering that is looped in
when the cause lies with them, and the fault drill that rehearses it (``workbook drill <id>``).
This module is the only definition; every other table is derived from :data:`ENTRIES`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# ... and by the landing source a source monitor watches.
SOURCE: dict[str, str] = {
    "billing_customers": "missing_subscription_data",
    "billing_invoices": "missing_subscription_data",
    "billing_payments": "missing_subscription_data",
    "subscriptions": "missing_subscription_data",
    "crm_accounts": "late_account_updates",
    "crm_stage_history": "late_account_updates",
    "account_db": "late_account_updates",
    "sales_records": "late_account_updates",
    "cloud_costs": "expenses_wrong_month",
    "ops_expenses": "expenses_wrong_month",
    "finance_ledger": "finance_mismatch",
    "events": "kafka_outage",
    "web_analytics": "late_events",
    "mobile_analytics": "late_events",
    "api_logs": "late_events",
}


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

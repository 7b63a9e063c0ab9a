"""The failure catalogue of DESIGN.md: one id per common issue of the plan, by pipeline family.

The same id names the injectable fault (``helpers.demo``), the check that detects it
(``catalogue_id=``) and the runbook that fixes it (``notebooks/runbooks/<family>/<id>.ipynb``).
"""

from __future__ import annotations

CATALOGUE: dict[str, tuple[str, ...]] = {
    "profit": (
        "finance_mismatch",
        "missing_subscription_data",
        "expenses_wrong_month",
        "math_errors",
        "stale_data",
    ),
    "growth": (
        "skipped_stage",
        "late_account_updates",
        "duplicate_accounts",
        "growth_revenue_mismatch",
        "churn_misclassified",
    ),
    "engagement": (
        "late_events",
        "kafka_outage",
        "duplicate_events",
        "data_skew_oom",
        "upstream_missing",
        "schema_change",
    ),
}
FAULT_IDS: tuple[str, ...] = tuple(fid for ids in CATALOGUE.values() for fid in ids)

"""The one import a runbook needs: ``from helpers.runbooks import kit``, then ``kit.<name>``.

This module only re-exports the runbook API from the modules that hold it, so that each runbook
stays a thin, readable procedure. A runbook (``notebooks/runbooks/...``, outline in docs/runbooks.md) goes
through these steps::

    ctx = kit.load_context("row_count_anomaly", alert_id=alert_id, pipeline=pipeline,
                           partition=partition, check_id=check_id, as_of=as_of,
                           apply_fix=apply_fix, run_id=run_id)          # Symptom
    kit.symptom(ctx)
    diag = kit.Diagnosis(ctx, default_cause="row_count_anomaly")        # Diagnose
    anomaly = diag.symptom(kit.row_count_anomalies(ctx))  # is the problem there now?
    diag.finding("stale_data", "partition built before its data arrived", kit.late_deliveries(ctx))
    diag.conclude()
    targets = diag.targets(anomaly)                     # what to re-run, if anything is wrong
    kit.guarded_fix(apply_fix, lambda: kit.rerun(ctx, targets), "re-run them")       # Fix
    diag.verify(kind="row_count")                       # Verify: the alert's check, re-run
    kit.escalate_to(ctx.pipeline, ctx.as_of, alert=ctx.alert, catalogue_id=diag.cause)  # Escalate
    diag.glue()                                         # record

Where each part lives:

- :mod:`helpers.runbooks.context`: :class:`RunbookContext` (:func:`load_context`), the parameters
  made usable, :func:`symptom`, :func:`check_history`, :func:`as_of_clock`.
- :mod:`helpers.runbooks.evidence` (:class:`Evidence`) and the evidence functions, which read the
  warehouse and the landing zone *as of* ``ctx.as_of``: :mod:`~helpers.runbooks.evidence_sources`
  (:func:`landing_arrivals`, :func:`late_sources`, :func:`sources_stopped`, :func:`stale_partitions`, :func:`source_volume`,
  :func:`late_deliveries`), :mod:`~helpers.runbooks.evidence_runs` (:func:`mart_freshness`,
  :func:`upstream_pipelines`, :func:`scheduler_health`, :func:`never_run`, :func:`failed_runs`, :func:`compute_pressure`),
  :mod:`~helpers.runbooks.evidence_marts` (:func:`row_count_anomalies`, :func:`null_columns`,
  :func:`duplicate_rows`); :mod:`helpers.runbooks.causes` names a condition's cause per family.
- :mod:`helpers.runbooks.diagnosis`: :class:`Diagnosis` concludes with one line and a ``cause`` (a
  failure-catalogue id, a generic condition id from :data:`GENERIC_CAUSES`, or ``no_problem_found``)
  and glues the scraps :mod:`helpers.runbooks.registry` reads back.
- :mod:`helpers.runbooks.fixes`: :func:`guarded_fix` acts only when ``apply_fix`` is true and records
  what it did (or would do); :func:`rerun` and the re-run targets.
- :mod:`helpers.runbooks.verification`: :func:`verify` re-runs the failing check.
- :mod:`helpers.runbooks.escalation`: :func:`escalate_to` says who to call now.
- :mod:`helpers.runbooks.incident`: the ``incident_fix`` runbook's evidence and fix.

The month-end close runbook's checklist is the investor close's: :mod:`helpers.investor.runbook`.
Nothing here reads the wall clock: every function works at ``ctx.as_of``.
"""

from __future__ import annotations

from helpers.runbooks.causes import (
    compute_cause,
    family_cause,
    freshness_cause,
    null_cause,
    row_count_cause,
    schema_cause,
)
from helpers.runbooks.context import (
    FAMILIES,
    Clock,
    RunbookContext,
    as_of_clock,
    check_history,
    load_context,
    symptom,
)
from helpers.runbooks.diagnosis import GENERIC_CAUSES, NO_PROBLEM, Diagnosis, Finding
from helpers.runbooks.escalation import Escalation, escalate_to
from helpers.runbooks.evidence import Evidence
from helpers.runbooks.evidence_marts import (
    duplicate_rows,
    made_inside,
    missing_columns,
    null_columns,
    partition_results,
    results_frame,
    row_count_anomalies,
)
from helpers.runbooks.evidence_runs import (
    COMPUTE_ERRORS,
    blocked_by_upstream,
    compute_pressure,
    failed_runs,
    mart_freshness,
    never_run,
    notebook_errors,
    scheduler_health,
    upstream_pipelines,
)
from helpers.runbooks.evidence_sources import (
    SOURCE_ALIASES,
    alerted_source,
    chase_note,
    landing_arrivals,
    landing_sources,
    late_deliveries,
    late_sources,
    source_volume,
    sources_stopped,
    stale_partitions,
)
from helpers.runbooks.fixes import (
    FixRecord,
    date_range_targets,
    describe_targets,
    fixes,
    guarded_fix,
    rerun,
    rerun_targets,
)
from helpers.runbooks.formatting import clip, hours, utc_or_none, utc_text
from helpers.runbooks.incident import (
    check_passes_now,
    cross_team_wait,
    fix_incident,
    fix_pending,
    incident_state,
    unacknowledged,
    underlying_alert,
    underlying_cause,
)
from helpers.runbooks.verification import HandledVerification, Verification, recorded_verification, verify

__all__ = [
    "COMPUTE_ERRORS",
    "FAMILIES",
    "GENERIC_CAUSES",
    "NO_PROBLEM",
    "SOURCE_ALIASES",
    "Clock",
    "Diagnosis",
    "Escalation",
    "Evidence",
    "Finding",
    "FixRecord",
    "HandledVerification",
    "RunbookContext",
    "Verification",
    "as_of_clock",
    "blocked_by_upstream",
    "chase_note",
    "check_history",
    "check_passes_now",
    "clip",
    "compute_cause",
    "compute_pressure",
    "cross_team_wait",
    "date_range_targets",
    "describe_targets",
    "duplicate_rows",
    "escalate_to",
    "failed_runs",
    "family_cause",
    "fix_incident",
    "fix_pending",
    "fixes",
    "freshness_cause",
    "guarded_fix",
    "hours",
    "incident_state",
    "landing_arrivals",
    "landing_sources",
    "late_deliveries",
    "late_sources",
    "sources_stopped",
    "alerted_source",
    "load_context",
    "made_inside",
    "mart_freshness",
    "never_run",
    "missing_columns",
    "notebook_errors",
    "null_cause",
    "null_columns",
    "partition_results",
    "recorded_verification",
    "rerun",
    "rerun_targets",
    "results_frame",
    "row_count_anomalies",
    "row_count_cause",
    "scheduler_health",
    "schema_cause",
    "source_volume",
    "stale_partitions",
    "symptom",
    "unacknowledged",
    "underlying_alert",
    "underlying_cause",
    "upstream_pipelines",
    "utc_or_none",
    "utc_text",
    "verify",
]

"""Runbooks: the kit runbook notebooks call (``kit`` re-exports context, evidence_*, causes, diagnosis,
fixes, verification, escalation, incident and formatting), the registry that finds, runs and records
the runbook for an alert (``registry``), and the hooks every scheduler tick runs (``tick``)."""

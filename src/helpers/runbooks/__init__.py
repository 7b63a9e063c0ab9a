"""Runbooks: the kit runbook notebooks call (context, evidence, diagnosis, fixes, verification,
escalation) and the registry that finds, runs and records the runbook for an alert."""

"""People and paging: the on-call schedule, routing, alerts, incidents, the escalation ladder and the
notification channels."""

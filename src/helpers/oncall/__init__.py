"""People and paging: the on-call schedule, routing, alerts, incidents, the escalation ladder and its
driving, the handoff brief, and the notification channels."""

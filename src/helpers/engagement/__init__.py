"""Engagement: the event contract, the pipeline written once against the PySpark DataFrame API, its
checks and the Engagement runbooks' logic."""

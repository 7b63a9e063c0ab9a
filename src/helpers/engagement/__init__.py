"""Engagement: product usage per account and day, period roll-ups, and the join with revenue and growth.

``window`` (what a run re-computes), ``inputs`` (what it reads), ``event_contract`` (the schema
contract of product events), ``transforms`` (the engine-side DataFrame transformations),
``upstream`` (the Profit and Growth marts the account join reads), ``run`` (:func:`run.compute`,
one run end to end, and its pure roll-ups), ``marts`` and ``store`` (the mart tables, writing
them, backfill requests), ``checks`` (one per failure mode), ``runbook`` and ``evidence`` (the
Engagement runbooks' logic).
"""

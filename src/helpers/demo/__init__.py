"""The demo company: a deterministic SaaS business whose raw source extracts look and misbehave
like the real thing, with every failure-catalogue id injectable as a fault.

Modules: ``spec`` (parameters and the fault specification), ``faults`` (registry and ground
truth), ``company`` (the business simulation), ``sources_*`` (one module per source family,
turning the simulation into extracts), ``events`` (Segment-shaped product events), ``generate``
(orchestration and the ``workbook demo-data`` verb).
"""

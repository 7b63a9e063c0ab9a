"""The demo company: a deterministic SaaS business whose raw source extracts look and misbehave
like the real thing, with every failure-catalogue id injectable as a fault.

Only ``helpers.cli`` and the tests import it; production code never does.

Modules:

- ``spec``: what to generate (the company's parameters, the ``--fault`` specification);
- ``company``: the business simulation, with ``names`` and ``ids``;
- ``sources_billing``, ``sources_crm``, ``sources_finance``: the simulation turned into in-memory
  extracts in the source contracts of ``helpers.storage.contracts``; ``extracts``: the extracts'
  layout and how they become landing deliveries;
- ``events`` (with ``columns``): the product events, one day at a time;
- ``faults``: the fault registry, what the injectors share, and the ground truth ``_faults.json``;
  ``faults_profit``, ``faults_growth``, ``faults_engagement``: the injectors by family;
- ``generate``: simulate, build the extracts, inject the faults and write the landing zone (what
  ``workbook demo-data``, in ``helpers.cli.demo``, calls);
- ``source_system``: the demo company's source-system provider (the clean world a fix re-extracts
  from);
- ``drill_specs`` and ``drill``: the fault drills and their grading.
"""

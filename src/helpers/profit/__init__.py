"""Profit: revenue recognition, FX, costs, profit and margin, unit-level allocation, the reconciliation
with Finance, the Profit checks and the Profit runbooks' logic.

Modules, in the order a run uses them: ``inputs`` (what a run reads: loading, screening, findings,
joins), ``fx`` (rates and conversion), ``revenue`` (recognition, subscriptions, billing gaps,
customers' accounts), ``costs`` (payroll, cloud, expenses, our ledger lines, breakdowns, expenses in
the wrong month), ``completeness`` (deliveries, cloud bills, provisional reasons, staleness),
``reconcile`` (Finance's ledger, line by line), ``aggregate`` (the ``profit_aggregate`` run),
``unit`` (the ``profit_unit`` run), ``marts`` (what is written), ``readable`` (figures for reading);
then ``checks`` (the Profit checks), ``runbook`` (the runbooks' logic) and ``repair`` (what their
fixes do: re-extract, re-run).

Conventions that hold in every computation here:

- Money is integer minor units (``int64``) until presentation (``helpers.core.money``). A
  conversion multiplies minor units by a rate in millionths (*micro-cents*) and rounds half-even to
  cents once per published figure (per month and ledger line, as Finance does); allocations use the
  largest-remainder method so parts always add up to their total. Currencies are assumed to have two
  decimals (USD, EUR, GBP, CAD: every currency the billing system sells in).
- A row that cannot be used is never dropped silently: screening returns it as a *finding*, which
  the notebook writes to a quarantine mart and counts; every join asserts its row count.
- A ratio with a zero denominator is a NULL with a recorded reason, never an exception or an
  infinity; a sum never silently skips a NULL.
"""

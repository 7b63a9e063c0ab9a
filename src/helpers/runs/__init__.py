"""Running notebooks: the papermill runner and its archive, run records and locks, validation, the
pipelines' dependency graph, orchestration (run-all, backfill), the scheduler, a notebook's session
(the runner's run, or by hand on a scratch warehouse: ``session``, ``scratch``), and notebook
authoring and hygiene (``notebooks``).

Importing the package registers the guard of published months with the warehouse (``locks``), so
that any process that runs or checks a pipeline refuses to rewrite a locked partition.
"""

from helpers.runs import locks as locks  # noqa: F401  (registers locks.refuse_locked_write)

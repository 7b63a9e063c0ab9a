"""Running notebooks: the papermill runner and its archive, run records and locks, validation, the
pipelines' dependency graph, orchestration (run-all, backfill), the scheduler, and notebook
authoring and hygiene (``notebooks``)."""

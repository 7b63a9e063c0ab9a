"""Running notebooks: the papermill runner and its archive, run records and locks, validation, the
pipelines' dependency graph, orchestration (run-all, backfill) and the scheduler."""

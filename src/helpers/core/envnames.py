"""The environment variables the runner hands a notebook kernel of its own: defined once here, light
to import (the CLI's entry point reads them before it imports anything heavy)."""

# the run's id (``helpers.storage.warehouse.RUNNER_ENV``): with it, replace_partition stages its writes
RUN_ID = "WORKBOOK_RUN_ID"
# the runner's clock, ``<ISO reading>@<monotonic>`` (``helpers.core.timeutil.CLOCK_ENV``)
CLOCK = "WORKBOOK_CLOCK"

"""The close re-runs a pipeline whose month's landing file changed after its successful run."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.investor import waves
from helpers.runs import records
from helpers.runs.dag import RunItem
from helpers.storage import landing, warehouse

pytestmark = pytest.mark.unit

AS_OF = dt.datetime(2026, 11, 16, 12, tzinfo=dt.UTC)


def _deliver(day: str, amount: int) -> landing.Delivery:
    frame = pd.DataFrame({"invoice_line_id": ["il_1"], "amount": [amount]})
    arrived = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    return landing.write_delivery("billing_invoices", day, frame, arrived_at=arrived)


def _succeeded(pipeline: str, partition: str) -> None:
    run_id = records.start_run(pipeline, partition, now=AS_OF, as_of=AS_OF, parameters={}, code_version=None)
    records.finish_run(run_id, status="succeeded", now=AS_OF + dt.timedelta(minutes=1))


def test_a_landing_file_changed_after_the_run_makes_the_close_run_it_again(home):
    delivered = _deliver("2026-10-12", 1250)
    _deliver("2026-09-30", 990)  # another month's file: not this run's concern
    _succeeded("profit_aggregate", "2026-10")
    item = RunItem("profit_aggregate", "2026-10", dt.date(2026, 10, 31))
    engine = warehouse.get_engine()
    assert waves.needs_run(item, AS_OF, {}, history=False, engine=engine) is None

    path = landing.source_dir("billing_invoices") / delivered.file
    pd.DataFrame({"invoice_line_id": ["il_1"], "amount": [2500]}).to_parquet(path)
    why = waves.needs_run(item, AS_OF, {}, history=False, engine=engine)
    assert why is not None and why.startswith("landing file changed after arrival: ")
    assert str(path) in why

    # Engagement reads events and api_logs, not invoices: only the sources a pipeline reads count.
    assert waves.changed_landing("engagement_aggregate", "2026-10-31", AS_OF) is None

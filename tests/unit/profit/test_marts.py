"""helpers.profit.marts: mart rows have the declared columns, in order."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from helpers.profit.marts import MART_TYPES, mart_frame

pytestmark = pytest.mark.unit
UTC = dt.UTC


def test_mart_frames_have_the_declared_columns_in_order():
    costs = pd.DataFrame(
        {"category": ["salaries"], "subcategory": ["G&A"], "provider": [""], "service": [""], "charge_category": [""],
         "cost_usd_cents": [5], "cost_micros": [50_000], "rows": [1]}
    )  # fmt: skip
    out = mart_frame(
        "profit_costs_monthly",
        costs,
        period="2026-09",
        as_of=dt.datetime(2026, 10, 1, tzinfo=UTC),
        run_id="r",
    )
    assert list(out.columns) == list(MART_TYPES["profit_costs_monthly"])
    assert out["as_of"].item() == pd.Timestamp("2026-10-01") and out["period"].item() == "2026-09"
    with pytest.raises(ValueError, match="lacks column"):
        mart_frame(
            "profit_monthly", costs, period="2026-09", as_of=dt.datetime(2026, 10, 1, tzinfo=UTC), run_id="r"
        )

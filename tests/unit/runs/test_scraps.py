"""Scraps: every value a notebook glues becomes plain JSON; None is a value, not a crash."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import nbformat
import numpy as np
import pandas as pd
import pytest

from helpers.runs import scraps

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "value, plain",
    [
        (None, None),
        (np.int64(3), 3),
        (np.float64("nan"), None),
        (float("inf"), None),
        (np.float32(1.5), 1.5),
        (np.bool_(True), True),
        (Decimal("12"), 12),
        (Decimal("1.25"), 1.25),
        (Decimal("NaN"), None),
        (pd.NA, None),
        (pd.NaT, None),
        (np.datetime64("NaT"), None),
        (pd.Timestamp("2026-10-01 06:00"), "2026-10-01T06:00:00"),
        (dt.date(2026, 10, 1), "2026-10-01"),
        (
            {"nrr": None, "grr": np.float64("nan"), 1: np.int32(2), "n": pd.NA},
            {"nrr": None, "grr": None, "1": 2, "n": None},
        ),
        ([np.int8(1), None, (2, Decimal("0.5"))], [1, None, [2, 0.5]]),
        (np.array([1, 2]), [1, 2]),
        (pd.Series({"a": 1.0, "b": np.nan}), {"a": 1.0, "b": None}),
        ("2026-10", "2026-10"),
        (7, 7),
    ],
)
def test_scrap_values_are_plain_json(value, plain):
    out = scraps.scrap_value(value)
    assert out == plain
    assert json.loads(json.dumps(out, allow_nan=False)) == plain  # strict JSON: no NaN, no numpy


def test_a_none_scrap_reads_back_as_none(tmp_path):
    """What the kernel writes for a None scrap (the null encoder) is read back as None."""
    sb = scraps._scrapbook()
    from scrapbook.api import _prepare_ipy_data_format
    from scrapbook.encoders import registry
    from scrapbook.scraps import Scrap, scrap_to_payload

    outputs = []
    for name, value, encoder in (("margin", None, scraps.NULL_ENCODER), ("nrr", 1.02, "json")):
        data, metadata = _prepare_ipy_data_format(
            name, scrap_to_payload(registry.encode(Scrap(name, value, encoder))), encoder
        )
        outputs.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("glued", outputs=outputs)])
    path = tmp_path / "glued.ipynb"
    nbformat.write(nb, path)
    assert scraps.read_scraps(path) == {"margin": (scraps.NULL_ENCODER, None), "nrr": ("json", 1.02)}
    assert sb.read_notebook(str(path)).scraps["margin"].data is None

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


def _glued_notebook(path, scraps_in, extra_outputs=()):
    """A notebook whose outputs are what ``scrapbook.glue`` displays for each (name, value, encoder)."""
    from scrapbook.api import _prepare_ipy_data_format
    from scrapbook.encoders import registry
    from scrapbook.scraps import Scrap, scrap_to_payload

    scraps._scrapbook()
    outputs = [*extra_outputs]
    for name, value, encoder in scraps_in:
        data, metadata = _prepare_ipy_data_format(
            name, scrap_to_payload(registry.encode(Scrap(name, value, encoder))), encoder
        )
        outputs.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("glued", outputs=outputs)])
    nbformat.write(nb, path)
    return path


def test_scraps_read_as_scrapbook_reads_them(tmp_path):
    """Every encoder the runs use, a name glued twice (the last value wins, at its first place)."""
    frame = pd.DataFrame({"period": ["2026-09"], "mrr": [1250.5]})
    path = _glued_notebook(
        tmp_path / "glued.ipynb",
        [
            ("status", "final", "text"),
            ("arr", 1.5, "json"),
            ("table", frame, "pandas"),
            ("margin", None, scraps.NULL_ENCODER),
            ("arr", 2.5, "json"),
        ],  # fmt: skip
        extra_outputs=[nbformat.v4.new_output("stream", text="a printed line\n")],
    )
    got = scraps.read_scraps(path)
    assert list(got) == ["status", "arr", "table", "margin"]
    assert got["arr"] == ("json", 2.5)
    assert got["table"] == (
        "pandas",
        {"columns": ["period", "mrr"], "index": [0], "data": [["2026-09", 1250.5]]},
    )
    sb = scraps._scrapbook()
    expected = {name: s.data for name, s in sb.read_notebook(str(path)).scraps.items()}
    assert list(expected) == list(got)
    assert {k: v for k, (_enc, v) in got.items() if k != "table"} == {
        k: v for k, v in expected.items() if k != "table"
    }


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({"name": "arr", "data": 1.5, "encoder": "json"}, "version None"),
        ({"name": "arr", "data": 1.5, "encoder": "json", "version": 9}, "version 9"),
        ({"name": "arr", "encoder": "json", "version": 1}, "'data' is a required property"),
        ({"name": "arr", "data": 1.5, "encoder": "yaml", "version": 1}, "no registered encoder 'yaml'"),
    ],
)
def test_a_scrap_that_does_not_conform_is_named(tmp_path, payload, problem):
    out = nbformat.v4.new_output("display_data", data={"application/scrapbook.scrap.json+json": payload})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("glued", outputs=[out])])
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(nb))  # as written, unvalidated
    with pytest.raises(ValueError, match=r"bad\.ipynb: scrap 'arr'") as err:
        scraps.read_scraps(path)
    assert problem in str(err.value)

import pandas as pd
import pytest

from helpers.investor import charts

pytestmark = pytest.mark.unit


def test_waterfall_bars_bridge_start_to_end(tmp_path):
    steps = [
        ("Starting MRR", 100_000),
        ("New", 12_000),
        ("Expansion", 5_000),
        ("Churn", -8_000),
        ("Ending MRR", 109_000),
    ]
    fig = charts.waterfall(steps, title="MRR", start_label="Starting MRR", end_label="Ending MRR")
    bars = fig.axes[0].patches
    assert len(bars) == 5
    # each movement starts where the previous one ended; the churn bar is hatched (readable without colour)
    assert bars[1].get_y() == 100_000 and bars[2].get_y() == 112_000
    assert bars[3].get_y() == 109_000 and bars[3].get_height() == 8_000 and bars[3].get_hatch() == "///"
    assert [t.get_text() for t in fig.axes[0].texts] == ["$100k", "+$12.0k", "+$5.0k", "-$8.0k", "$109k"]
    fig.savefig(tmp_path / "w.png")


def test_trend_distinguishes_series_without_colour(tmp_path):
    frame = pd.DataFrame(
        {
            "month": pd.period_range("2026-01", periods=4, freq="M").to_timestamp(),
            "revenue": [1.0, 2.0, 3.0, 4.0],
            "costs": [1.0, 1.5, 1.7, 2.0],
        }
    )
    fig = charts.trend(frame, x="month", series=["revenue", "costs"], title="t", money=True)
    lines = fig.axes[0].lines
    assert {ln.get_linestyle() for ln in lines} == {"-", "--"}
    assert {ln.get_marker() for ln in lines} == {"o", "s"}
    assert any("revenue: $4" in t.get_text() for t in fig.axes[0].texts)


def test_freshness_marks_status_by_threshold():
    frame = pd.DataFrame(
        {"source": ["a", "b", "c"], "age": [5.0, 20.0, 30.0], "warn": [18] * 3, "crit": [24] * 3}
    )
    fig = charts.freshness(frame, name="source", age_hours="age", warn="warn", critical="crit", title="f")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [" 5 h (ok)", " 20 h (warning)", " 30 h (critical)"]

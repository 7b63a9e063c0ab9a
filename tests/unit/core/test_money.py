"""helpers.core.money: half-even rounding, conversion and splits that never lose a cent."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from helpers.core import money
from helpers.core.money import allocate, convert_cents, half_even, largest_remainder, to_cents

pytestmark = pytest.mark.unit


def test_half_even_rounds_ties_to_even_for_positive_and_negative_values():
    values = np.array([15, 25, 14, 16, -15, -25, -14, 0])
    assert half_even(values, 10).tolist() == [2, 2, 1, 2, -2, -2, -1, 0]
    assert to_cents(np.array([1_500_000, 2_500_000, 2_500_001])).tolist() == [2, 2, 3]


def test_largest_remainder_keeps_the_total_and_stays_close():
    parts = largest_remainder([Decimal("1.4"), Decimal("1.4"), Decimal("1.2")], 4)
    assert parts.tolist() == [2, 1, 1] and parts.sum() == 4
    negative = largest_remainder([Decimal("-0.5"), Decimal("-0.5")], -1)
    assert negative.sum() == -1
    with pytest.raises(ValueError, match="not the rounded sum"):
        largest_remainder([Decimal(1)], 5)


def test_allocate_splits_an_integer_pool_exactly_and_reports_zero_weights():
    weights = pd.Series([1, 1, 1], index=["a", "b", "c"])
    out = allocate(100, weights)
    assert out.sum() == 100 and sorted(out.tolist()) == [33, 33, 34]
    huge = allocate(10**12, pd.Series([10**12, 3 * 10**12]))  # exact at any scale
    assert huge.tolist() == [250_000_000_000, 750_000_000_000]
    assert allocate(100, pd.Series([0, 0])).tolist() == [0, 0]  # nothing to allocate by
    with pytest.raises(ValueError):
        allocate(10, pd.Series([-1, 2]))


def test_fraction_weights_are_exact():
    assert largest_remainder([Fraction(1, 3)] * 3, 1).tolist() == [1, 0, 0]


def test_convert_cents_rounds_half_even_as_finance_converts():
    assert convert_cents(25, 1_100_000) == 28 and convert_cents(5, 1_100_000) == 6  # 27.5 -> 28, 5.5 -> 6
    assert convert_cents(15, 1_100_000) == 16 and convert_cents(-5, 1_100_000) == -6


def test_convert_cents_of_arrays_rounds_half_to_even_like_decimal():
    rng = np.random.default_rng(3)
    amounts = rng.integers(-5_000_000, 5_000_000, 2000)
    micros = rng.integers(500_000, 1_600_000, 2000)
    amounts[:4], micros[:4] = [1, 3, -1, -3], [500_000] * 4  # exact halves
    want = [
        int((Decimal(int(a)) * Decimal(int(m)) / Decimal(1_000_000)).quantize(Decimal(1), ROUND_HALF_EVEN))
        for a, m in zip(amounts, micros, strict=True)
    ]
    assert convert_cents(amounts, micros).tolist() == want
    assert convert_cents(amounts[:4], micros[:4]).tolist() == [0, 2, 0, -2]


def test_decimals_round_half_even_to_ints_and_micros():
    assert money.round_half_even(Decimal("2.5")) == 2 and money.round_half_even(Decimal("3.5")) == 4
    assert money.round_half_even(Decimal("-2.5")) == -2
    assert money.to_micros(Decimal("0.0000025")) == 2 and money.to_micros("1.0000035") == 1_000_004
    assert money.to_micros(0.1) == 100_000 and money.to_micros(7) == 7_000_000

"""Money: integer minor units (cents) and micro-cents, rounded half to even, split without losing a cent.

Amounts stay integers (or ``Decimal``) until the presentation layer; these are the only roundings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

MICRO = 1_000_000  # rates and micro-cents are stored in millionths


def half_even(numerator: Any, denominator: int) -> Any:
    """Integer division rounded half to even.

    Python ints give a Python int (exact at any size); arrays (int64 or Python-int object arrays)
    give an int64 array.
    """
    if isinstance(numerator, int) and isinstance(denominator, int):
        q, r = divmod(numerator, denominator)
        return q + int(2 * r > denominator or (2 * r == denominator and q % 2 == 1))
    n = np.asarray(numerator)
    q, r = np.divmod(n, denominator)  # floor division: r in [0, denominator) also for negatives
    up = (2 * r > denominator) | ((2 * r == denominator) & (q % 2 == 1))
    return (q + up).astype(np.int64)


def to_cents(micro_cents: Any) -> Any:
    """Micro-cents (minor units x rate in millionths) to cents, half-even."""
    return half_even(micro_cents, MICRO)


def largest_remainder(exact: Sequence[Any], total: int) -> np.ndarray:
    """Integers close to ``exact`` (Decimals, Fractions or floats) that add up to ``total``.

    Each part is floored, then the units still missing go to the parts with the largest
    remainders (ties: first part first), so ``sum(result) == total`` always.
    """
    if not len(exact):
        if total:
            raise ValueError(f"largest_remainder: nothing to carry a total of {total}")
        return np.zeros(0, np.int64)
    floors = [int(math.floor(x)) for x in exact]
    missing = int(total) - sum(floors)
    if missing < 0 or missing > len(floors):
        raise ValueError(f"largest_remainder: total {total} is not the rounded sum of the parts")
    order = sorted(range(len(floors)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return np.asarray(floors, dtype=np.int64)


def allocate(pool: int, weights: pd.Series) -> pd.Series:
    """Split integer ``pool`` in proportion to non-negative integer ``weights`` (largest remainder).

    Exact integer arithmetic (Python ints), so it holds at any scale. All-zero weights allocate
    nothing: the caller must record the unallocated pool with its reason.
    """
    w = [int(x) for x in weights]
    if any(x < 0 for x in w):
        raise ValueError("allocate: weights must be non-negative")
    total = sum(w)
    if total == 0:
        return pd.Series(0, index=weights.index, dtype="int64")
    parts = largest_remainder([Fraction(pool * x, total) for x in w], pool)
    return pd.Series(parts, index=weights.index, dtype="int64")


def usd(cents: int) -> str:
    """``$1,234.56`` (negative: ``-$1,234.56``)."""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def convert_cents(amount_minor: Any, rate_micros: Any) -> Any:
    """Minor units x a rate in millionths -> cents, half-even (ints give an int, arrays an array)."""
    if isinstance(amount_minor, int) and isinstance(rate_micros, int):
        return half_even(amount_minor * rate_micros, MICRO)
    num = np.asarray(amount_minor, dtype=np.int64) * np.asarray(rate_micros, dtype=np.int64)
    return half_even(num, MICRO)


def round_half_even(value: Decimal) -> int:
    """An exact ``Decimal`` rounded half to even, as an int."""
    return int(value.to_integral_value(ROUND_HALF_EVEN))


def to_micros(value: Decimal | str | float | int) -> int:
    """An amount or rate (Decimal, text, float or int) in millionths, rounded half-even.

    A float goes through its shortest text (``str``), so ``0.1`` is 100000, not 100000.0000000000055.
    """
    exact = value if isinstance(value, Decimal) else Decimal(str(value))
    return round_half_even(exact * MICRO)

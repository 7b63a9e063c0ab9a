"""Columns of the generated product events: Arrow string and timestamp columns, and row batches.

The events generator keeps a day's rows as a :data:`Batch` (column name -> numpy array: numbers
and codes only) and turns a batch into Arrow columns when it is written: :func:`take` maps codes
to strings, :func:`join` concatenates strings element-wise, :func:`vocab` formats each distinct
code once, :func:`scatter` assembles a column from disjoint parts, :func:`timestamps` converts
epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from helpers.storage.contracts import KINDS

Batch = dict[str, np.ndarray]


def take_rows(batch: Batch, idx: np.ndarray) -> Batch:
    """The rows ``idx`` (positions or a boolean mask) of a column batch."""
    return {k: v[idx] for k, v in batch.items()}


def concat_rows(batches: list[Batch]) -> Batch:
    """The rows of ``batches`` one after the other (empty batches skipped)."""
    batches = [b for b in batches if b]
    if not batches:
        return {}
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def batch_len(batch: Batch) -> int:
    """The number of rows of a column batch."""
    return len(next(iter(batch.values()))) if batch else 0


def within(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each group of size c, concatenated (the position of each row inside its group)."""
    counts = counts.astype(np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def take(values: pa.Array | list | tuple, idx: np.ndarray) -> pa.Array:
    """``values[idx]`` as an Arrow array (a list or tuple of strings becomes a string array)."""
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    return pc.take(arr, pa.array(idx.astype(np.int32), pa.int32()))


def timestamps(ms: np.ndarray) -> pa.Array:
    """Epoch milliseconds as a UTC timestamp (microsecond) array."""
    return pa.array(ms.astype(np.int64) * 1000, pa.int64()).cast(KINDS["ts"])


def int_strings(values: np.ndarray) -> pa.Array:
    """Integers as decimal strings."""
    return pc.cast(pa.array(values.astype(np.int64)), pa.string())


def join(*parts: Any) -> pa.Array:
    """Concatenate string arrays and literals element-wise."""
    return pc.binary_join_element_wise(*parts, "")


def vocab(codes: np.ndarray, make: Callable[[int], str]) -> pa.Array:
    """``make(code)`` for each code, formatting each distinct code once."""
    uniq, inv = np.unique(codes, return_inverse=True)
    return pc.take(pa.array([make(int(c)) for c in uniq], pa.string()), pa.array(inv.astype(np.int32)))


def scatter(n: int, parts: list[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """A length-n array with ``values`` at positions ``idx`` for each (idx, values), null elsewhere."""
    pos = np.full(n, -1, np.int64)
    start = 0
    for idx, _values in parts:
        pos[idx] = np.arange(start, start + len(idx))
        start += len(idx)
    values = pa.concat_arrays([v for _i, v in parts]) if parts else pa.nulls(0, pa.string())
    return pc.take(values, pa.array(pos, mask=pos < 0))

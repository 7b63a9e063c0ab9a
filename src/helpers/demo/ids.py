"""Ids of the demo company's objects: keyed hashes, so every id depends only on the seed and what it is.

:func:`mix64` (splitmix64) spreads uint64 values; :func:`object_key` keys an object by seed, kind
and position; :func:`stripe_ids` and :func:`numbered_ids` give business ids (``cus_...``,
``001...``, ``A0000001``); :func:`hex16`, :func:`uuid_strings` and :func:`uuid4_words` give the
product events' hex and UUID ids as Arrow strings, built from byte matrices without Python loops.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_U64 = np.uint64
GOLDEN = _U64(0x9E3779B97F4A7C15)  # splitmix64's increment (2^64 / golden ratio)
_ALPHA = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over uint64 (vectorised; wraps on overflow by design)."""
    x = np.asarray(x).astype(_U64)
    with np.errstate(over="ignore"):
        x = x + GOLDEN
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def unit_floats(x: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats in [0, 1)."""
    return (x >> _U64(11)).astype(np.float64) / float(1 << 53)


def object_key(seed: int, kind: int, a: np.ndarray, b: np.ndarray | int = 0) -> np.ndarray:
    """A 64-bit key for object ``(kind, a, b)`` under ``seed`` (a: account index, b: a sequence)."""
    a = np.asarray(a).astype(_U64)
    b = np.asarray(b).astype(_U64)
    with np.errstate(over="ignore"):
        return mix64(mix64(a * _U64(1_000_003) + b) ^ mix64(_U64(seed) * _U64(131) + _U64(kind)))


def stripe_ids(prefix: str, keys: np.ndarray, length: int = 14) -> np.ndarray:
    """Stripe-looking ids (``cus_NffrFeUfNV2Hib``): ``prefix`` + base62 of two hashes of ``keys``."""
    x1, x2 = mix64(keys), mix64(keys ^ _U64(0x5DEECE66D))
    digits = np.empty((len(x1), length), dtype=np.int64)
    for i in range(length):
        src = x1 if i < 10 else x2
        digits[:, i] = (src % _U64(62)).astype(np.int64)
        if i < 10:
            x1 = x1 // _U64(62)
        else:
            x2 = x2 // _U64(62)
    chars = np.ascontiguousarray(_ALPHA[digits])
    body = chars.view(f"<U{length}").ravel()
    return np.char.add(prefix, body).astype(object)


def numbered_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """``prefix`` + zero-padded numbers (Salesforce-like ``001...`` ids, product ids)."""
    return np.char.add(prefix, np.char.zfill(np.asarray(numbers).astype(str), width)).astype(object)


def _fixed_strings(chars: np.ndarray) -> pa.Array:
    """A string array from an (n, width) uint8 matrix of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


def _hex_chars(*words: np.ndarray) -> np.ndarray:
    """Lowercase hex digits of big-endian uint64 words, as an (n, 16 * len(words)) uint8 matrix."""
    n = len(words[0])
    raw = np.empty((n, 8 * len(words)), dtype=np.uint8)
    for i, w in enumerate(words):
        raw[:, 8 * i : 8 * i + 8] = w.astype(">u8").view(np.uint8).reshape(n, 8)
    out = np.empty((n, raw.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


def hex16(words: np.ndarray) -> pa.Array:
    """16 hex digits per uint64 (session ids, key pseudonyms)."""
    return _fixed_strings(_hex_chars(words))


def uuid_strings(hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    """Canonical 8-4-4-4-12 UUID strings of 128-bit values given as two uint64 halves."""
    h = _hex_chars(hi, lo)
    out = np.full((len(hi), 36), ord("-"), dtype=np.uint8)
    out[:, 0:8], out[:, 9:13], out[:, 14:18] = h[:, 0:8], h[:, 8:12], h[:, 12:16]
    out[:, 19:23], out[:, 24:36] = h[:, 16:20], h[:, 20:32]
    return _fixed_strings(out)


def uuid4_words(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n random version-4 UUIDs as (hi, lo) uint64 halves."""
    raw = rng.bit_generator.random_raw(2 * n).astype(_U64).reshape(n, 2) if n else np.zeros((0, 2), _U64)
    hi = (raw[:, 0] & _U64(0xFFFFFFFFFFFF0FFF)) | _U64(0x4000)
    lo = (raw[:, 1] & _U64(0x3FFFFFFFFFFFFFFF)) | _U64(0x8000000000000000)
    return hi, lo

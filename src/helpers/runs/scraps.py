"""Scraps: the figures a notebook records for its run (with scrapbook), None included.

A notebook glues its figures with :func:`glue` (or :func:`glue_all`), never ``scrapbook.glue``
directly: scrapbook 0.5 has no encoder for ``None`` (its schema forbids a null payload) nor for
numpy integers, ``Decimal`` or pandas' missing values, and a NULL margin, NRR or GRR is a figure,
not a crash. :func:`glue` makes every value plain JSON first (:func:`scrap_value`) and records
``None`` under the :data:`NULL_ENCODER` encoder, registered here with scrapbook in the kernel that
glues and in the runner that reads (:func:`read_scraps`), which gives it back as ``None``.

A DataFrame is glued with scrapbook's ``pandas`` encoder and read back in pandas' ``split`` JSON.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

NULL_ENCODER = "null"  # a scrap whose value is None: stored as {} (scrapbook's schema), read as None


class _NullEncoder:
    """scrapbook encoder of ``None``: an empty object in the notebook, ``None`` when read back."""

    def name(self) -> str:
        return NULL_ENCODER

    def encodable(self, data: Any) -> bool:
        return data is None

    def encode(self, scrap: Any, **_kwargs: Any) -> Any:
        return scrap._replace(data={})

    def decode(self, scrap: Any, **_kwargs: Any) -> Any:
        return scrap._replace(data=None)


def _scrapbook() -> Any:
    """scrapbook (imported on first use: slow), with :class:`_NullEncoder` registered."""
    import scrapbook as sb
    from scrapbook.encoders import registry

    if NULL_ENCODER not in registry:
        registry.register(_NullEncoder())
    return sb


def scrap_value(value: Any) -> Any:
    """``value`` as plain JSON: missing values (``None``, NaN, ``pd.NA``, ``NaT``) become ``None``.

    numpy and ``Decimal`` numbers become ``int`` (when integral) or ``float``, infinities ``None``;
    dates and times their ISO text; mappings (keys as text), sequences, arrays and Series are
    converted item by item. Anything else is its text.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (Mapping, pd.Series)):
        return {str(k): scrap_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Index)):
        return [scrap_value(v) for v in value]
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):  # numpy's float64 too
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else str(pd.Timedelta(value))
    if isinstance(value, np.generic):  # numpy integers, floats, booleans
        return scrap_value(value.item())
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (dt.date, dt.datetime)):  # pd.Timestamp too
        return None if value is pd.NaT else value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def glue(name: str, value: Any) -> None:
    """Record ``value`` as the scrap ``name`` of this notebook (see the module doc)."""
    sb = _scrapbook()
    if isinstance(value, pd.DataFrame):
        sb.glue(name, value, encoder="pandas")
        return
    plain = scrap_value(value)
    encoder = NULL_ENCODER if plain is None else "text" if isinstance(plain, str) else "json"
    sb.glue(name, plain, encoder=encoder)


def glue_all(scraps: Mapping[str, Any]) -> None:
    """:func:`glue` every ``name -> value`` of ``scraps``, in order."""
    for name, value in scraps.items():
        glue(name, value)


@functools.cache
def _payload_validator(version: int) -> Any:
    """scrapbook's schema of a scrap payload of ``version``, compiled once (``jsonschema.validate``
    checks the schema itself again on every call: most of the time a run's scraps took to read)."""
    from jsonschema.validators import validator_for
    from scrapbook.schemas import scrap_schema

    schema = scrap_schema(version)
    return validator_for(schema)(schema)


def read_scraps(nb_path: Path) -> dict[str, tuple[str, Any]]:
    """``name -> (encoder, JSON-able value)`` of the scraps glued in an executed notebook.

    What ``scrapbook.read_notebook(nb_path).scraps`` gives (the last scrap of a name wins, in the
    order of first appearance), each payload validated against scrapbook's schema and decoded by
    its registered encoder; a payload that does not conform raises, naming the notebook and scrap.
    """
    _scrapbook()
    from jsonschema import ValidationError
    from scrapbook.encoders import registry
    from scrapbook.schemas import GLUE_PAYLOAD_PREFIX, LATEST_SCRAP_VERSION
    from scrapbook.scraps import Scrap

    nb = orjson.loads(Path(nb_path).read_bytes())
    out: dict[str, tuple[str, Any]] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            for sig, payload in (output.get("data") or {}).items():
                if not sig.startswith(GLUE_PAYLOAD_PREFIX):
                    continue
                name = payload.get("name") if isinstance(payload, dict) else None
                version = payload.get("version") if isinstance(payload, dict) else None
                try:
                    if not isinstance(version, int) or version > LATEST_SCRAP_VERSION:
                        raise ValidationError(f"version {version!r}: expected 1..{LATEST_SCRAP_VERSION}")
                    _payload_validator(version).validate(payload)
                except ValidationError as e:
                    raise ValueError(
                        f"{nb_path}: scrap {name!r} does not conform to scrapbook's schema: {e.message}"
                    ) from e
                encoder = payload["encoder"]
                if encoder not in registry:
                    raise ValueError(f"{nb_path}: scrap {name!r} has no registered encoder {encoder!r}")
                data = registry[encoder].decode(Scrap(name, payload["data"], encoder)).data
                if encoder == "pandas" or hasattr(data, "to_json"):
                    data = json.loads(data.to_json(orient="split", date_format="iso"))
                out[name] = (encoder or "json", data)
    return out

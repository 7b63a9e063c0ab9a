"""Malformed JSON in an event: each JSON field screened before anything is read from it.

An ``events`` row carries Segment's objects as JSON text (``context``, ``properties``, ``traits``;
a message in an unknown format lands whole in ``_raw_json``). One bad value must quarantine that
event, never fail the run, on either engine: DuckDB's JSON functions raise on malformed text
(``Malformed JSON at byte 21``) where Spark's return NULL, so :func:`screen` first asks the engine
whether each field parses (:meth:`helpers.storage.engine.Engine.json_valid`) and the contract reads
paths only from :func:`safe` text. :func:`problems` says, per field, and :func:`problem`, per row,
why a row's JSON is unusable:

- ``empty context``: an empty (or blank) string;
- ``malformed JSON in context``: text that does not parse;
- ``traits is not a JSON object``: valid JSON that is not an object (``"garbage"``, ``[1]``), also
  for the ``context``/``properties``/``traits`` inside a raw message.

NULL is not a problem here (an absent object; a field the contract requires is reported as
``missing``). :func:`screen` also keeps where each row came from (``_file``, ``_row`` when the
engine read them), which :func:`delivery_columns` turns into the delivery file and 1-based row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from helpers.storage.engine import Engine

JSON_FIELDS: tuple[str, ...] = ("context", "properties", "traits", "_raw_json")
# Objects inside a raw message (``_raw_json``) that must be objects when present.
NESTED_OBJECTS: tuple[str, ...] = ("context", "properties", "traits")
PROVENANCE: tuple[str, ...] = ("_file", "_row")
# The landed file relative to its source folder, from a path or a Spark ``file:`` URI.
DELIVERY_FILE = r"(dt=[^/]+/[^/]+)$"
REASON_SUFFIX = " is not a JSON object"


def _valid(name: str) -> str:
    return f"_v{name}" if name.startswith("_") else f"_v_{name}"


def screen(engine: Engine, raw_columns: Sequence[str], columns: tuple[str, ...]) -> list[Any]:
    """Stage 0, the columns to select from the landed rows (whose columns are ``raw_columns``):
    ``columns``, whether each JSON field parses, and the provenance columns (NULL when the rows
    were read without them)."""
    F = engine.F
    have = {c.lower() for c in raw_columns}
    return [
        *[F.col(c).alias(c) for c in columns],
        *[engine.json_valid(F.col(j)).alias(_valid(j)) for j in JSON_FIELDS],
        *[
            (F.col(p) if p in have else F.lit(None).cast("string" if p == "_file" else "long")).alias(p)
            for p in PROVENANCE
        ],
    ]


def screened(columns: tuple[str, ...]) -> list[str]:
    """The names of :func:`screen`'s columns, in its order."""
    return [*columns, *[_valid(j) for j in JSON_FIELDS], *PROVENANCE]


def safe(engine: Engine, column: str, rows: Any = None) -> Any:
    """The column for JSON paths: the text when it parses, else NULL (a JSON field), as is
    otherwise; only for the ``rows`` (a condition) when given, NULL for the others."""
    F = engine.F
    if column not in JSON_FIELDS:
        return F.col(column) if rows is None else F.when(rows, F.col(column))
    valid = F.col(_valid(column))
    return F.when(valid if rows is None else rows & valid, F.col(column))


def _field_problem(engine: Engine, name: str) -> Any:
    """Why the field's text is unusable, NULL when it is absent or a valid object.

    The first branch is the usual case, text that parses and starts with ``{``: it answers
    without a regular expression (four per row were a fifth of the contract's cost on DuckDB).
    Such text is neither empty nor malformed nor anything but an object, so the branches after
    it, in their order, decide exactly what they decided alone.
    """
    F = engine.F
    c = F.col(name)
    valid = F.col(_valid(name))
    return (
        F.when(c.isNull() | (valid & c.startswith("{")), F.lit(None).cast("string"))
        .when(~c.rlike(r"\S"), F.lit(f"empty {name}"))
        .when(~valid, F.lit(f"malformed JSON in {name}"))
        .when(~c.rlike(r"^\s*\{"), F.lit(f"{name}{REASON_SUFFIX}"))
    )


def _problem(name: str) -> str:
    return f"_p{name}" if name.startswith("_") else f"_p_{name}"


def problems(engine: Engine) -> list[Any]:
    """Over :func:`screen`'s columns: why each JSON field's text is unusable (NULL when it is
    absent or a valid object), and each object inside a raw message that is not one, as columns
    (computed once per row: :func:`problem` reads each of them twice)."""
    F = engine.F
    raw = safe(engine, "_raw_json")
    return [
        *[_field_problem(engine, j).alias(_problem(j)) for j in JSON_FIELDS],
        *[
            F.when(engine.json_is_object(raw, f"$.{n}") == F.lit(False), F.lit(f"{n}{REASON_SUFFIX}")).alias(
                _problem(f"_raw_{n}")
            )
            for n in NESTED_OBJECTS
        ],
    ]


def problem(engine: Engine) -> tuple[Any, Any]:
    """Over :func:`problems`' columns: why the row's JSON is unusable (NULL when it is fine), and
    the landed text of the first field at fault (what the quarantine keeps of it)."""
    F = engine.F
    checks = [(F.col(_problem(j)), F.col(j)) for j in JSON_FIELDS]
    checks += [(F.col(_problem(f"_raw_{n}")), safe(engine, "_raw_json")) for n in NESTED_OBJECTS]
    text = F.coalesce(*[F.when(r.isNotNull(), t) for r, t in checks])
    return F.coalesce(*[r for r, _ in checks]), text


def delivery_columns(engine: Engine) -> list[Any]:
    """``delivery_file`` (``dt=YYYY-MM-DD/part-NNNNN.parquet``) and ``delivery_row`` (1-based)."""
    F = engine.F
    file = F.when(F.col("_file").isNotNull(), F.regexp_extract(F.col("_file"), DELIVERY_FILE, 1))
    return [file.alias("delivery_file"), (F.col("_row") + F.lit(1)).cast("long").alias("delivery_row")]


def reason_field(reason: str) -> str | None:
    """The field a JSON reason names (``malformed JSON in context`` -> ``context``), else None."""
    for prefix in ("malformed JSON in ", "empty "):
        if reason.startswith(prefix):
            return reason[len(prefix) :]
    if reason.endswith(REASON_SUFFIX):
        return reason[: -len(REASON_SUFFIX)]
    return None

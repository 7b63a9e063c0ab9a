"""The declared schema contract of product events: versions side by side, validation, quarantine.

Every landed ``events`` row carries a ``schema_version``. A row in a format the extract knows is
landed in columns (``messageId``, ``type``, ``timestamp``, ``context`` ...); a row in any other
format is landed unparsed in ``_raw_json`` (see ``helpers.storage.contracts.EVENTS_SCHEMA`` and
``helpers.storage.extract.kafka``). The contract maps each (version, form) to one canonical shape:

==============  =============================================================================
canonical       meaning
==============  =============================================================================
message_id      the message id (dedup key)
schema_version  the landed version
event_type      track / page / identify / screen / group / alias
event_name      track event or page name (``Identify`` for identify in v2)
user_id         the user (v1: ``userId``, else ``anonymousId``)
account_id      the account (v1: ``context.groupId``; v2: ``account.id``)
event_ts        event time, UTC (v1: ISO timestamp; v2: epoch milliseconds)
received_at     when Segment received it (``receivedAt``, always landed)
device          ``context.device.type`` (web, ios, android, ...)
platform        ``mobile`` for the devices in :attr:`EventContract.mobile_devices`, else ``web``
session_id      ``properties.session_id``
reason          NULL for an accepted row; otherwise why it was quarantined
==============  =============================================================================

Versions are data, not code paths: :data:`V1` (columns, as the extract lands a Segment event),
:data:`V1_RAW` (a v1 JSON message the extract could not parse, landed raw: the same field names
inside ``_raw_json``) and :data:`V2` (the frontend's v2 format, ``helpers.storage.contracts.V2_FORMAT``).
A new format that can be mapped is supported by adding a :class:`ContractVersion` to
:data:`CONTRACT`; :func:`conform` is generic over the versions it is given. A row whose version
the contract does not declare is quarantined (``unknown schema_version '3'``); a row of a known
version lacking a required field is quarantined as ``missing <field>`` (the field named as that
version names it), or ``unparseable <field>`` when it is there but does not convert.

Every row read is either accepted or quarantined (:func:`conform` adds a ``reason``), so
accepted + quarantined = received holds by construction; :func:`quarantine_records` turns the
quarantined rows into :class:`helpers.storage.quarantine.QuarantinedRow` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pandas as pd

from helpers.storage.engine import Engine
from helpers.storage.quarantine import QuarantinedRow

Form = Literal["columns", "raw_json"]
Kind = Literal["text", "timestamp", "iso8601", "epoch_ms"]

CANONICAL: tuple[str, ...] = (
    "message_id",
    "schema_version",
    "event_type",
    "event_name",
    "user_id",
    "account_id",
    "event_ts",
    "received_at",
    "device",
    "platform",
    "session_id",
)
MAPPED: tuple[str, ...] = (
    "message_id",
    "event_type",
    "event_name",
    "user_id",
    "account_id",
    "event_ts",
    "device",
    "session_id",
)
SEGMENT_TYPES: tuple[str, ...] = ("track", "page", "screen", "identify", "group", "alias")
# ISO 8601 date first: Spark would read a bare time ("12:00") as today's, i.e. from the wall clock.
ISO_PREFIX = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
# The landed columns the contract reads (the rest of EVENTS_SCHEMA is not needed downstream).
LANDED_COLUMNS: tuple[str, ...] = (
    "messageId",
    "type",
    "event",
    "name",
    "userId",
    "anonymousId",
    "timestamp",
    "receivedAt",
    "context",
    "properties",
    "schema_version",
    "_raw_json",
)


@dataclass(frozen=True)
class Source:
    """Where a canonical field is read from: a landed column, or a JSON path inside one."""

    column: str
    path: str | None = None  # "$.a.b" inside a JSON-text column
    kind: Kind = "text"


@dataclass(frozen=True)
class Field:
    """One canonical field in one version: sources tried in order (first non-empty wins)."""

    sources: tuple[Source, ...]
    label: str  # how this version names the field, for reasons ("missing account")
    required: bool = False


@dataclass(frozen=True)
class ContractVersion:
    """One declared format: which rows it covers and how each canonical field is read from them."""

    version: str
    form: Form
    fields: Mapping[str, Field]
    description: str = ""
    event_types: tuple[str, ...] = SEGMENT_TYPES

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fields) - set(MAPPED))
        if unknown:
            raise ValueError(f"contract version {self.version}: unknown canonical field(s) {unknown}")
        for name in ("message_id", "event_ts", "account_id"):
            if name not in self.fields or not self.fields[name].required:
                raise ValueError(f"contract version {self.version}: {name} must be mapped and required")

    @property
    def key(self) -> str:
        return f"{self.version}/{self.form}"


def _col(column: str, kind: Kind = "text") -> tuple[Source, ...]:
    return (Source(column, None, kind),)


def _json(column: str, path: str, kind: Kind = "text") -> tuple[Source, ...]:
    return (Source(column, path, kind),)


V1 = ContractVersion(
    version="1",
    form="columns",
    description="Segment spec as the Kafka extract lands it: fields in columns, objects as JSON text",
    fields={
        "message_id": Field(_col("messageId"), "messageId", required=True),
        "event_type": Field(_col("type"), "type", required=True),
        "event_name": Field(_col("event") + _col("name"), "event"),
        "user_id": Field(_col("userId") + _col("anonymousId"), "userId", required=True),
        "account_id": Field(_json("context", "$.groupId"), "context.groupId", required=True),
        "event_ts": Field(_col("timestamp", "timestamp"), "timestamp", required=True),
        "device": Field(_json("context", "$.device.type"), "context.device.type"),
        "session_id": Field(_json("properties", "$.session_id"), "properties.session_id"),
    },
)

V1_RAW = ContractVersion(
    version="1",
    form="raw_json",
    description="a v1 message the extract could not parse, landed raw: Segment names inside _raw_json",
    fields={
        "message_id": Field(_json("_raw_json", "$.messageId"), "messageId", required=True),
        "event_type": Field(_json("_raw_json", "$.type"), "type", required=True),
        "event_name": Field(_json("_raw_json", "$.event") + _json("_raw_json", "$.name"), "event"),
        "user_id": Field(
            _json("_raw_json", "$.userId") + _json("_raw_json", "$.anonymousId"), "userId", required=True
        ),
        "account_id": Field(_json("_raw_json", "$.context.groupId"), "context.groupId", required=True),
        "event_ts": Field(_json("_raw_json", "$.timestamp", "iso8601"), "timestamp", required=True),
        "device": Field(_json("_raw_json", "$.context.device.type"), "context.device.type"),
        "session_id": Field(_json("_raw_json", "$.properties.session_id"), "properties.session_id"),
    },
)

V2 = ContractVersion(
    version="2",
    form="raw_json",
    description=(
        "frontend v2 (helpers.storage.contracts.V2_FORMAT): renamed/nested fields, epoch-ms timestamps"
    ),
    fields={
        "message_id": Field(_json("_raw_json", "$.message_id"), "message_id", required=True),
        "event_type": Field(_json("_raw_json", "$.type"), "type", required=True),
        "event_name": Field(_json("_raw_json", "$.event_name"), "event_name", required=True),
        "user_id": Field(_json("_raw_json", "$.user_id") + _json("_raw_json", "$.anonymous_id"), "user_id"),
        "account_id": Field(_json("_raw_json", "$.account.id"), "account", required=True),
        "event_ts": Field(_json("_raw_json", "$.timestamp", "epoch_ms"), "timestamp", required=True),
        "device": Field(_json("_raw_json", "$.context.device.type"), "context.device.type"),
        "session_id": Field(_json("_raw_json", "$.properties.session_id"), "properties.session_id"),
    },
)


@dataclass(frozen=True)
class EventContract:
    """The versions in force, side by side, and the device -> platform mapping."""

    versions: tuple[ContractVersion, ...]
    mobile_devices: tuple[str, ...] = ("ios", "android")
    name: str = "events"

    def __post_init__(self) -> None:
        keys = [v.key for v in self.versions]
        if len(set(keys)) != len(keys):
            raise ValueError(f"contract {self.name}: a version/form is declared twice: {keys}")

    @property
    def known_versions(self) -> tuple[str, ...]:
        return tuple(sorted({v.version for v in self.versions}))

    def with_version(self, version: ContractVersion) -> EventContract:
        """This contract plus ``version`` (how a newly announced format is supported)."""
        return replace(self, versions=(*self.versions, version))

    def describe(self) -> pd.DataFrame:
        """One row per version/form and canonical field: source, label, required (for notebooks)."""
        rows = []
        for v in self.versions:
            for name, f in v.fields.items():
                rows.append(
                    {
                        "version": v.version,
                        "form": v.form,
                        "field": name,
                        "source": " | ".join(
                            s.column
                            + (s.path[1:] if s.path else "")
                            + ("" if s.kind == "text" else f" ({s.kind})")
                            for s in f.sources
                        ),
                        "label": f.label,
                        "required": f.required,
                    }
                )
        return pd.DataFrame(rows)


# The contract in force. v2 is declared because the frontend announced it (the schema_change
# runbook: map the new format by adding a version here, then re-run the affected window).
CONTRACT = EventContract(versions=(V1, V1_RAW, V2))


# ---------------------------------------------------------------- conforming on an engine


def _source_expr(engine: Engine, src: Source) -> Any:
    F = engine.F
    base = F.col(src.column)
    text = engine.json_string(base, src.path) if src.path else base
    if src.kind == "timestamp":
        return text
    if src.kind == "iso8601":
        return F.when(text.rlike(ISO_PREFIX), engine.try_cast(text, "timestamp"))
    if src.kind == "epoch_ms":
        # integer milliseconds added to the epoch: exact on both engines (a double division is not)
        epoch = F.to_timestamp(F.lit("1970-01-01 00:00:00"))
        return F.timestamp_add("MILLISECOND", engine.try_cast(text, "long"), epoch)
    return F.when(F.length(text) > 0, text)  # "" is as missing as absent


def _present_expr(engine: Engine, src: Source) -> Any:
    """Whether the source has a value at all (to tell "missing" from "unparseable")."""
    F = engine.F
    base = F.col(src.column)
    text = engine.json_string(base, src.path) if src.path else base
    return text.isNotNull()


def _field_expr(engine: Engine, f: Field) -> Any:
    exprs = [_source_expr(engine, s) for s in f.sources]
    return exprs[0] if len(exprs) == 1 else engine.F.coalesce(*exprs)


def _chain(engine: Engine, branches: Sequence[tuple[Any, Any]]) -> Any:
    """CASE WHEN c1 THEN e1 WHEN c2 THEN e2 ... END (NULL otherwise)."""
    F = engine.F
    expr = F.when(branches[0][0], branches[0][1])
    for cond, value in branches[1:]:
        expr = expr.when(cond, value)
    return expr


def _form(v: ContractVersion) -> str:
    return "raw" if v.form == "raw_json" else "columns"


def _selector(engine: Engine, v: ContractVersion, *, parsed: bool = False) -> Any:
    """The rows version ``v`` covers (``parsed``: in terms of the stage-1 columns)."""
    F = engine.F
    if parsed:
        return (F.col("schema_version") == v.version) & (F.col("_form") == _form(v))
    raw = F.col("_raw_json")
    return (F.col("schema_version") == v.version) & (raw.isNull() if v.form == "columns" else raw.isNotNull())


def _needs_presence(f: Field) -> bool:
    return any(s.kind != "text" for s in f.sources)


def _reason_expr(engine: Engine, v: ContractVersion) -> Any:
    """Why a row of version ``v`` is quarantined (NULL when accepted), over the stage-1 columns."""
    F = engine.F
    branches = []
    for name, f in v.fields.items():
        if not f.required:
            continue
        value = F.col(name)
        if _needs_presence(f):
            branches.append((value.isNull() & ~F.col(f"_has_{name}"), F.lit(f"missing {f.label}")))
            branches.append((value.isNull(), F.lit(f"unparseable {f.label}")))
        else:
            branches.append((value.isNull(), F.lit(f"missing {f.label}")))
    if "event_type" in v.fields:
        kind = F.col("event_type")
        label = v.fields["event_type"].label
        branches.append((~kind.isin(*v.event_types), F.concat(F.lit(f"unknown {label} '"), kind, F.lit("'"))))
    return _chain(engine, branches)


def conform(engine: Engine, raw: Any, contract: EventContract = CONTRACT) -> Any:
    """The landed rows in the canonical shape (:data:`CANONICAL`) plus ``reason`` and ``raw_text``.

    No unions: stage 1 reads every canonical field as a CASE over the contract's versions (one
    JSON extraction per field and version); stage 2 judges the parsed columns per version. Rows of
    an undeclared version get ``reason = "unknown schema_version '<v>'"``; ``received_at`` is kept
    for every row (the extract always lands it), so quarantined rows are counted per received day.
    ``raw_text`` (quarantined rows only) is what the quarantine file keeps: the landed JSON of a
    raw row, the parsed fields of a v1 row (its message id and received day find it in the landing).
    """
    F = engine.F
    stage = raw.select(
        *_stage_columns(engine, contract.versions),
        F.col("schema_version").alias("schema_version"),
        F.when(F.col("_raw_json").isNull(), F.lit("columns")).otherwise(F.lit("raw")).alias("_form"),
        F.col("receivedAt").alias("received_at"),
        F.col("_raw_json").alias("_raw_json"),
    )
    reason = _row_reason(engine, contract)
    mobile = F.lower(F.col("device")).isin(*contract.mobile_devices)
    return stage.select(
        *[
            F.col(c).alias(c)
            for c in (
                "message_id",
                "schema_version",
                "event_type",
                "event_name",
                "user_id",
                "account_id",
                "event_ts",
                "received_at",
                "device",
            )
        ],
        F.when(mobile, F.lit("mobile")).otherwise(F.lit("web")).alias("platform"),
        F.col("session_id").alias("session_id"),
        reason.alias("reason"),
        F.when(reason.isNotNull(), F.coalesce(F.col("_raw_json"), _parsed_text(engine))).alias("raw_text"),
    )


def _stage_columns(engine: Engine, versions: Sequence[ContractVersion]) -> list[Any]:
    """Stage 1: each mapped field as a CASE over the versions, and ``_has_<field>`` where a
    missing value must be told from an unparseable one."""
    F = engine.F
    cols = []
    for name in MAPPED:
        branches = [
            (_selector(engine, v), _field_expr(engine, v.fields[name])) for v in versions if name in v.fields
        ]
        cols.append((_chain(engine, branches) if branches else F.lit(None).cast("string")).alias(name))
        presence = [
            (_selector(engine, v), _present_expr(engine, v.fields[name].sources[0]))
            for v in versions
            if name in v.fields and _needs_presence(v.fields[name])
        ]
        if presence:
            cols.append(F.coalesce(_chain(engine, presence), F.lit(False)).alias(f"_has_{name}"))
    return cols


def _row_reason(engine: Engine, contract: EventContract) -> Any:
    """Stage 2: why a row is quarantined (NULL when accepted), over the stage-1 columns."""
    F = engine.F
    versions = contract.versions
    known = F.col("schema_version").isin(*contract.known_versions)
    covered = _selector(engine, versions[0], parsed=True)
    for v in versions[1:]:
        covered = covered | _selector(engine, v, parsed=True)
    return (
        F.when(F.col("schema_version").isNull(), F.lit("missing schema_version"))
        .when(~known, F.concat(F.lit("unknown schema_version '"), F.col("schema_version"), F.lit("'")))
        # a declared version in a form the contract does not declare (e.g. v2 landed in columns)
        .when(
            ~covered, F.concat(F.lit("unknown form of schema_version '"), F.col("schema_version"), F.lit("'"))
        )
        .otherwise(
            _chain(engine, [(_selector(engine, v, parsed=True), _reason_expr(engine, v)) for v in versions])
        )
    )


def _parsed_text(engine: Engine) -> Any:
    """The parsed fields of a row as JSON text (what the quarantine keeps of a v1 row)."""
    F = engine.F
    return F.to_json(
        F.struct(
            *[
                F.col(c).alias(c)
                for c in (
                    "message_id",
                    "event_type",
                    "event_name",
                    "user_id",
                    "account_id",
                    "device",
                    "session_id",
                )
            ]
        ),
        {"ignoreNullFields": "false"},  # DuckDB always keeps NULL fields; Spark only with this option
    )


# ---------------------------------------------------------------- quarantine records


@dataclass(frozen=True)
class IntakeCounts:
    """Received, accepted and quarantined rows of one scope; the identity is checked on creation."""

    received: int
    accepted: int
    quarantined: int
    by_version: Mapping[str, int] = field(default_factory=dict)
    by_reason: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.received != self.accepted + self.quarantined:
            raise ValueError(
                f"events contract: received ({self.received}) != accepted ({self.accepted}) "
                f"+ quarantined ({self.quarantined})"
            )


def intake_counts(stats: pd.DataFrame) -> IntakeCounts:
    """Totals of a ``(schema_version, reason, rows)`` frame as :class:`IntakeCounts`."""
    if stats.empty:
        return IntakeCounts(0, 0, 0)
    rows = stats["rows"].astype("int64")
    bad = stats["reason"].notna()
    by_version = stats.assign(v=stats["schema_version"].fillna("(none)")).groupby("v")["rows"].sum()
    by_reason = stats[bad].groupby("reason")["rows"].sum()
    return IntakeCounts(
        received=int(rows.sum()),
        accepted=int(rows[~bad].sum()),
        quarantined=int(rows[bad].sum()),
        by_version={str(k): int(v) for k, v in by_version.items()},
        by_reason={str(k): int(v) for k, v in by_reason.items()},
    )


def reason_field(reason: str) -> str | None:
    """The field a reason names (``missing account`` -> ``account``), None for version reasons."""
    for prefix in ("missing ", "unparseable ", "unknown "):
        if reason.startswith(prefix):
            rest = reason[len(prefix) :]
            return (
                None if rest.startswith("schema_version") or rest.startswith("form") else rest.split(" ")[0]
            )
    return None


def quarantine_records(rows: pd.DataFrame, *, source: str = "events") -> list[QuarantinedRow]:
    """Quarantined rows (``message_id``, ``schema_version``, ``received_at``, ``reason``, ``raw_text``)
    as quarantine records: ``file`` is the received partition (``dt=YYYY-MM-DD``), ``raw`` the
    landed JSON (v1 rows: their columns as JSON). Deterministic, so rewriting them is a no-op."""
    out = []
    for r in rows.itertuples(index=False):
        received = pd.Timestamp(r.received_at) if pd.notna(r.received_at) else None
        part = f"dt={received.date().isoformat()}" if received is not None else "dt=unknown"
        out.append(
            QuarantinedRow(
                source,
                part,
                None,
                str(r.reason),
                str(r.raw_text),
                reason_field(str(r.reason)),
            )
        )
    return out

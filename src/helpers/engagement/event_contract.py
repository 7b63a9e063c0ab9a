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
V1 and V1_RAW are built in (:data:`BUILT_IN`); any other version is in force only once declared
as data in the config folder's ``event_contract.yml`` (:func:`declare`: the mapping, who and
when), which :data:`CONTRACT` reads each time it is used. V2 is a reviewed mapping
(:data:`REVIEWED`) the schema_change runbook's fix declares when v2 rows turn up; a version
without one is declared by a reviewed entry written into the file (:func:`draft` gives one).
:func:`conform_layers` is generic over the versions it is given. A row whose version
the contract does not declare is quarantined (``unknown schema_version '3'``); a row of a known
version lacking a required field is quarantined as ``missing <field>`` (the field named as that
version names it), or ``unparseable <field>`` when it is there but does not convert.

Every row read is either accepted or quarantined (:func:`conform_layers` adds a ``reason``), so
accepted + quarantined = received holds by construction; :func:`quarantine_records` turns the
quarantined rows into :class:`helpers.storage.quarantine.QuarantinedRow` records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from helpers.core import config as cfgmod
from helpers.core import paths
from helpers.engagement import json_fields
from helpers.storage.engine import Engine, Layers
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
# What the conformed rows carry: the canonical fields, the verdict and where each row was landed.
CONFORMED: tuple[str, ...] = (*CANONICAL, "reason", "raw_text", "delivery_file", "delivery_row")
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
    "traits",  # not read, but screened: garbage traits quarantine the event
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


# ---------------------------------------------------------------- the contract in force: declared versions

# Built into the code: v1 as the Kafka extract lands it, in columns or raw. Every other version is
# in force only once declared in the config folder's ``event_contract.yml`` (data, with who and
# when): the schema_change runbook's fix writes the declaration, nobody edits code at repair time.
BUILT_IN = EventContract(versions=(V1, V1_RAW))
# Mappings reviewed ahead of a rollout (the frontend's published formats): what the schema_change
# fix declares when it finds rows of that version. A version without one needs a reviewed entry
# written into the file by hand (the fix refuses with a draft of it).
REVIEWED: dict[str, ContractVersion] = {"2": V2}
CONTRACT_FILE = "event_contract.yml"
KINDS: tuple[str, ...] = ("text", "timestamp", "iso8601", "epoch_ms")
FILE_HEADER = """\
# Declared versions of the product events contract (helpers.engagement.event_contract; docs/pipelines.md).
#
# v1 is built in. A version listed here is accepted by every engagement run from then on; the
# schema_change runbook's fix adds an entry (declared_by: the engineer on call, declared_at: the
# fix's as_of), then re-runs the days whose rows of that version were quarantined. An entry maps
# each canonical field to its sources (column, JSON path, kind: text|timestamp|iso8601|epoch_ms).
"""


@dataclass(frozen=True)
class Declaration:
    """A version declared in ``event_contract.yml``: the mapping, who declared it, when and why."""

    version: ContractVersion
    declared_by: str
    declared_at: str
    reason: str = ""


def contract_path(directory: Path | None = None) -> Path:
    """Where the declared versions live: the config folder (``WORKBOOK_CONFIG_DIR``)."""
    return (directory or paths.config_dir()) / CONTRACT_FILE


def version_data(v: ContractVersion) -> dict[str, Any]:
    """A version as the file keeps it (plain YAML: strings, lists, booleans)."""
    return {
        "version": v.version,
        "form": v.form,
        "description": v.description,
        "event_types": list(v.event_types),
        "fields": {
            name: {
                "sources": [
                    {"column": s.column, **({"path": s.path} if s.path else {}), "kind": s.kind}
                    for s in f.sources
                ],
                "label": f.label,
                "required": f.required,
            }
            for name, f in v.fields.items()
        },
    }


def _source(data: Any, where: str) -> Source:
    if not isinstance(data, dict) or not isinstance(data.get("column"), str):
        raise ValueError(
            f"{where}: expected {{column: <landed column>, path: $.a.b, kind: text}}, got {data!r}"
        )
    path, kind = data.get("path"), data.get("kind", "text")
    if path is not None and not (isinstance(path, str) and path.startswith("$")):
        raise ValueError(f"{where}.path: expected a JSON path like $.account.id, got {path!r}")
    if kind not in KINDS:
        raise ValueError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return Source(data["column"], path, kind)


def version_from_data(data: Any, where: str) -> ContractVersion:
    """A version read from the file; ``ValueError`` names ``where`` (file and entry) and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise ValueError(f"{where}: expected a mapping with version, form and fields")
    version, form = str(data.get("version") or ""), data.get("form")
    if not version:
        raise ValueError(f"{where}.version: expected a schema_version such as '2'")
    if form not in ("columns", "raw_json"):
        raise ValueError(f"{where}.form: expected columns or raw_json, got {form!r}")
    fields: dict[str, Field] = {}
    for name, f in data["fields"].items():
        at = f"{where}.fields.{name}"
        if not isinstance(f, dict) or not isinstance(f.get("sources"), list) or not f["sources"]:
            raise ValueError(f"{at}: expected {{sources: [...], label: ..., required: true|false}}")
        sources = tuple(_source(s, f"{at}.sources[{i}]") for i, s in enumerate(f["sources"]))
        fields[str(name)] = Field(sources, str(f.get("label") or name), bool(f.get("required", False)))
    types = tuple(data.get("event_types") or SEGMENT_TYPES)
    try:
        return ContractVersion(version, form, fields, str(data.get("description") or ""), types)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


_read_cache: dict[Path, tuple[tuple[int, int], tuple[Declaration, ...]]] = {}


def declared(path: Path | None = None) -> tuple[Declaration, ...]:
    """The versions declared in ``event_contract.yml`` (none when the file is absent), validated."""
    path = path or contract_path()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ()
    key = (stat.st_mtime_ns, stat.st_size)
    hit = _read_cache.get(path)
    if hit and hit[0] == key:
        return hit[1]
    data = cfgmod.load_yaml(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("declared") or [], list):
        raise ValueError(f"{path}: expected a mapping with a 'declared' list")
    out = []
    for i, entry in enumerate(data.get("declared") or []):
        where = f"{path}: declared[{i}]"
        v = version_from_data(entry, where)
        if not entry.get("declared_by") or not entry.get("declared_at"):
            raise ValueError(f"{where}: expected declared_by and declared_at (who declared it, when)")
        by, at, why = str(entry["declared_by"]), str(entry["declared_at"]), str(entry.get("reason") or "")
        out.append(Declaration(v, by, at, why))
    found = tuple(out)
    EventContract(versions=(*BUILT_IN.versions, *(d.version for d in found)))  # a version/form twice raises
    _read_cache[path] = (key, found)
    return found


def in_force(path: Path | None = None) -> EventContract:
    """The contract in force now: :data:`BUILT_IN` plus the declared versions."""
    return EventContract(versions=(*BUILT_IN.versions, *(d.version for d in declared(path))))


def declare(
    version: ContractVersion, *, by: str, at: dt.datetime, reason: str, path: Path | None = None
) -> Declaration:
    """Declare ``version`` in the file (kept comments, atomic write); the same mapping declared
    again returns the existing entry, a different mapping of a declared version/form raises."""
    path = path or contract_path()
    for d in declared(path):
        if d.version.key == version.key:
            if version_data(d.version) != version_data(version):
                raise ValueError(f"{path}: schema_version {version.key} is declared with another mapping")
            return d
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    data = yaml.safe_load(text) or {}
    entry = {**version_data(version), "declared_by": by, "declared_at": at.isoformat(), "reason": reason}
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#")) or FILE_HEADER
    body = {"declared": [*(data.get("declared") or []), entry]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yml.tmp")
    tmp.write_text(header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
    return next(d for d in declared(path) if d.version.key == version.key)


def draft(version: str) -> str:
    """A draft entry for an undeclared ``version`` without a reviewed mapping (YAML to review and
    add to the file): the latest declared raw mapping (else v2's), renamed. Every source must be checked
    against a sample of the quarantined messages before it is declared."""
    base = next((d.version for d in reversed(declared()) if d.version.form == "raw_json"), V2)
    entry = {
        **version_data(replace(base, version=version)),
        "declared_by": "<you>",
        "declared_at": "<now, UTC>",
    }
    entry["description"] = f"DRAFT from v{base.version}: check every source against a quarantined message"
    return yaml.safe_dump({"declared": [entry]}, sort_keys=False)


class DeclaredContract(EventContract):
    """The contract in force (:func:`in_force`), read from the config folder each time it is used:
    a version the schema_change fix declares is accepted by the next run, without a code change."""

    def __init__(self) -> None:  # no fields of its own: ``versions`` is read when used
        object.__setattr__(self, "mobile_devices", BUILT_IN.mobile_devices)
        object.__setattr__(self, "name", BUILT_IN.name)

    @property
    def versions(self) -> tuple[ContractVersion, ...]:  # type: ignore[override]
        return in_force().versions

    def with_version(self, version: ContractVersion) -> EventContract:
        return in_force().with_version(version)


# The contract in force: the built-in versions plus those declared in ``event_contract.yml``.
CONTRACT: EventContract = DeclaredContract()


# ---------------------------------------------------------------- conforming on an engine


def _text_column(vi: int, name: str, si: int) -> str:
    """The read-stage column with the text of source ``si`` of field ``name`` in version ``vi``."""
    return f"_s{vi}_{name}_{si}"


def _read_columns(engine: Engine, versions: Sequence[ContractVersion]) -> list[Any]:
    """The read stage: the text of every source of every version, each once; a JSON path only
    for the rows of its version (NULL for the others: a row's JSON is parsed only for the paths
    of its own version), a column as it is (stage 1 picks the version's sources).

    The stage after it only picks and converts these columns: an extraction inside a CASE or
    ``nullif`` is evaluated once per use on DuckDB (no common subexpressions inside a CASE), and
    ``nullif(x, '')`` uses ``x`` twice.
    """
    F = engine.F
    cols = []
    for vi, v in enumerate(versions):
        rows = _selector(engine, v)
        for name, f in v.fields.items():
            for si, src in enumerate(f.sources):
                text = (
                    engine.json_string(json_fields.safe(engine, src.column, rows), src.path)
                    if src.path
                    else F.col(src.column)
                )
                cols.append(text.alias(_text_column(vi, name, si)))
    return cols


def _source_expr(engine: Engine, src: Source, column: str) -> Any:
    """The value of source ``src`` from its text (the read-stage ``column``), by its kind."""
    F = engine.F
    text = F.col(column)
    if src.kind == "timestamp":
        return text
    if src.kind == "iso8601":
        return F.when(text.rlike(ISO_PREFIX), engine.try_cast(text, "timestamp"))
    if src.kind == "epoch_ms":
        # integer milliseconds added to the epoch: exact on both engines (a double division is not)
        epoch = F.to_timestamp(F.lit("1970-01-01 00:00:00"))
        return F.timestamp_add("MILLISECOND", engine.try_cast(text, "long"), epoch)
    return F.nullif(text, F.lit(""))  # "" is as missing as absent


def _field_expr(engine: Engine, vi: int, name: str, f: Field) -> Any:
    exprs = [_source_expr(engine, s, _text_column(vi, name, si)) for si, s in enumerate(f.sources)]
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


def conform_layers(engine: Engine, raw_columns: Sequence[str], contract: EventContract = CONTRACT) -> Layers:
    """The projections (selects, each over the one before) that give the landed rows (whose
    columns are ``raw_columns``) in the canonical shape (:data:`CANONICAL`) plus ``reason``,
    ``raw_text``, ``delivery_file`` and ``delivery_row`` (:data:`CONFORMED`); run them with
    :meth:`helpers.storage.engine.Engine.materialize_layers`.

    No unions: the read stage extracts the text of every source of every version, once, for that
    version's rows only (:func:`_read_columns`); stage 1 makes every canonical field a CASE over
    the versions of those texts; stage 2 judges the parsed columns per version. Rows of
    an undeclared version get ``reason = "unknown schema_version '<v>'"``; ``received_at`` is kept
    for every row (the extract always lands it), so quarantined rows are counted per received day.
    ``raw_text`` (quarantined rows only) is what the quarantine file keeps: the landed JSON of a
    raw row, the parsed fields of a v1 row (its message id and received day find it in the landing)
    and, for unusable JSON, the landed text of the field (``landed``).

    JSON is screened first (:mod:`helpers.engagement.json_fields`): paths are read only from text
    that parses, and a row whose JSON field is malformed, empty or not an object is quarantined
    with that reason (after the version reasons). ``delivery_file`` and ``delivery_row`` say where
    a row was landed when the rows were read with the engine's provenance columns (else NULL).

    Each expression is built and evaluated once: ``reason`` is a column of stage 2 that
    ``raw_text`` reads in the last projection (the contract is read once, :func:`snapshot`).
    """
    F = engine.F
    contract = snapshot(contract)
    read = [
        *[_keep(engine, c) for c in json_fields.screened(LANDED_COLUMNS)],
        *json_fields.problems(engine),
        *_read_columns(engine, contract.versions),
    ]
    json_reason, json_text = json_fields.problem(engine)
    stage = [
        *_stage_columns(engine, contract.versions),
        _keep(engine, "schema_version"),
        F.when(F.col("_raw_json").isNull(), F.lit("columns")).otherwise(F.lit("raw")).alias("_form"),
        F.col("receivedAt").alias("received_at"),
        _keep(engine, "_raw_json"),
        json_reason.alias("_json_reason"),
        json_text.alias("_json_text"),
        *json_fields.delivery_columns(engine),
    ]
    mobile = F.lower(F.col("device")).isin(*contract.mobile_devices)
    judged = [
        *[_keep(engine, c) for c in (*MAPPED, "schema_version", "received_at")],
        F.when(mobile, F.lit("mobile")).otherwise(F.lit("web")).alias("platform"),
        _row_reason(engine, contract).alias("reason"),
        *[
            _keep(engine, c)
            for c in ("_raw_json", "_json_reason", "_json_text", "delivery_file", "delivery_row")
        ],
    ]
    bad = F.col("reason").isNotNull()
    final = [
        *[_keep(engine, c) for c in CANONICAL],
        _keep(engine, "reason"),
        F.when(bad, F.coalesce(F.col("_raw_json"), _parsed_text(engine))).alias("raw_text"),
        _keep(engine, "delivery_file"),
        _keep(engine, "delivery_row"),
    ]
    return [json_fields.screen(engine, raw_columns, LANDED_COLUMNS), read, stage, judged, final]


def snapshot(contract: EventContract) -> EventContract:
    """``contract`` with its versions read once (:data:`CONTRACT` reads the file at each use)."""
    return EventContract(contract.versions, contract.mobile_devices, contract.name)


def _keep(engine: Engine, name: str) -> Any:
    """A column passed through a projection unchanged."""
    return engine.F.col(name).alias(name)


def _stage_columns(engine: Engine, versions: Sequence[ContractVersion]) -> list[Any]:
    """Stage 1: each mapped field as a CASE over the versions, and ``_has_<field>`` where a
    missing value must be told from an unparseable one (over the read stage's columns)."""
    F = engine.F
    cols = []
    for name in MAPPED:
        branches = [
            (_selector(engine, v), _field_expr(engine, vi, name, v.fields[name]))
            for vi, v in enumerate(versions)
            if name in v.fields
        ]
        cols.append((_chain(engine, branches) if branches else F.lit(None).cast("string")).alias(name))
        presence = [
            (_selector(engine, v), F.col(_text_column(vi, name, 0)).isNotNull())
            for vi, v in enumerate(versions)
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
        .when(F.col("_json_reason").isNotNull(), F.col("_json_reason"))
        .otherwise(
            _chain(engine, [(_selector(engine, v, parsed=True), _reason_expr(engine, v)) for v in versions])
        )
    )


def _parsed_text(engine: Engine) -> Any:
    """The parsed fields of a row as JSON text (what the quarantine keeps of a v1 row); with the
    landed text of its unusable JSON field (``landed``) when that is why it was quarantined."""
    F = engine.F
    bad = F.col("_json_reason").isNotNull()
    return F.when(bad, _fields_json(engine, landed=True)).otherwise(_fields_json(engine, landed=False))


def _fields_json(engine: Engine, *, landed: bool) -> Any:
    F = engine.F
    extra = [F.col("_json_text").alias("landed")] if landed else []
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
            ],
            *extra,
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
    """The field a reason names (``missing account`` -> ``account``, ``malformed JSON in context``
    -> ``context``), None for version reasons."""
    named = json_fields.reason_field(reason)
    if named is not None:
        return named
    for prefix in ("missing ", "unparseable ", "unknown "):
        if reason.startswith(prefix):
            rest = reason[len(prefix) :]
            return (
                None if rest.startswith("schema_version") or rest.startswith("form") else rest.split(" ")[0]
            )
    return None


def quarantine_records(rows: pd.DataFrame, *, source: str = "events") -> list[QuarantinedRow]:
    """Quarantined rows (``message_id``, ``schema_version``, ``received_at``, ``reason``, ``raw_text``,
    optionally ``delivery_file`` and ``delivery_row``) as quarantine records: ``file`` is the
    delivery file (``dt=YYYY-MM-DD/part-NNNNN.parquet``) and ``line`` the row in it where known,
    else the received partition (``dt=YYYY-MM-DD``); ``raw`` the landed JSON (v1 rows: their
    columns as JSON). Deterministic, so rewriting them is a no-op."""
    out = []
    for r in rows.itertuples(index=False):
        received = pd.Timestamp(r.received_at) if pd.notna(r.received_at) else None
        part = f"dt={received.date().isoformat()}" if received is not None else "dt=unknown"
        file, line = getattr(r, "delivery_file", None), getattr(r, "delivery_row", None)
        out.append(
            QuarantinedRow(
                source,
                str(file) if isinstance(file, str) and file else part,
                int(line) if file and pd.notna(line) else None,
                str(r.reason),
                str(r.raw_text),
                reason_field(str(r.reason)),
            )
        )
    return out

"""FOCUS 1.0 cloud billing files (AWS, Azure, GCP, OCI exports): read, screen, land.

Real FOCUS exports are CSV with quoted fields, ``NULL`` written as the bare text ``NULL``, a
JSON ``Tags`` column, ``BilledCost`` (what the invoice says) beside ``EffectiveCost`` (amortised,
after commitment discounts), and hourly charge periods inside a monthly billing period. The
reader uses the :mod:`csv` module directly so every row keeps its exact line number.

Types of the accepted rows:

- cost and quantity columns are :class:`~decimal.Decimal` (never float); two derived integer
  columns, ``BilledCostMicros`` and ``EffectiveCostMicros``, hold the cost in **millionths of
  the billing currency** (micro-USD for USD), rounded half-even per row. Sum the Decimal columns
  for exact totals: per-row rounding makes the micros sum differ in its last digits. Landed
  Parquet stores the Decimal columns as ``decimal128(38, 18)``;
- the four period columns are UTC timestamps (a value without an offset is taken as UTC, as
  the specification requires UTC);
- ``Tags`` is kept verbatim as text, after checking it is a JSON object of scalar values;
- every other column is text, with ``NULL`` as a missing value (the csv module cannot tell a
  quoted ``"NULL"`` from a bare one; both mean missing). An empty field stays an empty string.

Each accepted row also carries ``_file`` (the file name) and ``_line`` (its first line in the
file). A row that cannot be used is quarantined with its line and every problem found in it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, TextIO

import pandas as pd
import pyarrow as pa

from helpers.core.money import to_micros
from helpers.core.timeutil import as_utc
from helpers.storage import landing
from helpers.storage.contracts import FOCUS_DECIMALS, FOCUS_MICROS, FOCUS_TIMESTAMPS, KINDS
from helpers.storage.extract.base import ExtractResult, Kind, quarantine_root
from helpers.storage.quarantine import QuarantinedRow, ScreenedRows, write_quarantine

NULL = "NULL"
CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
# Columns a row cannot be used without: the money, its currency, its periods and its category.
NOT_NULL = (
    "BilledCost",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "EffectiveCost",
    "ProviderName",
)
REQUIRED_COLUMNS = tuple(sorted({*NOT_NULL, "BillingAccountId", "ServiceCategory", "ServiceName"}))
LINEAGE_COLUMNS = ("_file", "_line")

# Landed decimals: 20 integer and 18 fractional digits hold any real bill at full precision.
DECIMAL_TYPE = KINDS["dec38_18"]
DECIMAL_SCALE = DECIMAL_TYPE.scale
_CURRENCY = re.compile(r"[A-Z]{3}")
# Plain decimal notation with an optional exponent: no spaces, underscores, NaN or Infinity.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class FocusFormatError(ValueError):
    """A FOCUS file that cannot be read at all (no header, missing columns, not UTF-8)."""


@dataclass(frozen=True)
class FocusResult(ScreenedRows):
    """Screened rows of one FOCUS file: ``accepted`` (typed frame), ``quarantined``, counts."""

    path: Path
    columns: tuple[str, ...]  # the file's header, in order


class _CapturedLines:
    """Iterate a text file's lines for the csv module, remembering the text of the current record."""

    def __init__(self, fh: TextIO) -> None:
        self._fh = fh
        self._lines: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._fh)
        self._lines.append(line)
        return line

    def take(self) -> str:
        """The raw text of the record just parsed (without its final line break)."""
        text = "".join(self._lines)
        self._lines.clear()
        return text.rstrip("\r\n")


def parse_decimal(text: str) -> Decimal:
    """A finite decimal that fits ``decimal128(38, 18)``; ValueError otherwise."""
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{text!r} is not a decimal number")
    value = Decimal(text)
    if -int(value.as_tuple().exponent) > DECIMAL_SCALE:
        raise ValueError(f"{text!r} has more than {DECIMAL_SCALE} decimal places")
    if value.adjusted() >= 38 - DECIMAL_SCALE:
        raise ValueError(f"{text!r} is too large (at most {38 - DECIMAL_SCALE} integer digits)")
    return value


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 timestamp as aware UTC (no offset means UTC); ValueError otherwise."""
    try:
        return as_utc(dt.datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a timestamp (expected ISO 8601 such as 2024-09-01 00:00:00 or 2024-09-01T00:00:00Z)"
        ) from None


def check_tags(text: str) -> None:
    """Raise ValueError unless ``text`` is a JSON object whose values are scalars."""
    try:
        tags = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(tags, dict):
        raise ValueError(f"expected a JSON object, got {type(tags).__name__}")
    nested = sorted(k for k, v in tags.items() if isinstance(v, (dict, list)))
    if nested:
        raise ValueError(f"expected scalar tag values, key(s) {nested} hold objects or arrays")


def micros(value: Decimal) -> int:
    """``value`` in millionths of its currency unit, rounded half-even."""
    return to_micros(value)


def parse_row(header: Sequence[str], fields: Sequence[str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """One record as typed values, plus the problems found as ``(field, message)`` pairs."""
    row: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, text in zip(header, fields, strict=True):
        if text == NULL:
            row[name] = None
            if name in NOT_NULL:
                problems.append((name, "is NULL; expected a value"))
            continue
        try:
            if name in FOCUS_DECIMALS:
                row[name] = parse_decimal(text)
            elif name in FOCUS_TIMESTAMPS:
                row[name] = parse_timestamp(text)
            else:
                if name in NOT_NULL and text == "":
                    raise ValueError("is empty; expected a value")
                if name == "ChargeCategory" and text not in CHARGE_CATEGORIES:
                    raise ValueError(f"{text!r} is not one of {', '.join(CHARGE_CATEGORIES)}")
                if name == "BillingCurrency" and not _CURRENCY.fullmatch(text):
                    raise ValueError(f"{text!r} is not a 3-letter ISO 4217 currency code")
                if name == "Tags":
                    check_tags(text)
                row[name] = text
        except ValueError as e:
            row[name] = None
            problems.append((name, str(e)))
    for start, end in (("BillingPeriodStart", "BillingPeriodEnd"), ("ChargePeriodStart", "ChargePeriodEnd")):
        if row.get(start) is not None and row.get(end) is not None and row[start] > row[end]:
            problems.append((start, f"{start} {row[start]:%Y-%m-%d %H:%M:%S} is after {end}"))
    return row, problems


def read_focus(path: str | Path, *, source: str = "cloud_costs") -> FocusResult:
    """Read one FOCUS 1.0 CSV file into typed accepted rows and quarantined rows.

    Raises :class:`FocusFormatError` naming the file when it cannot be read at all: empty, a
    header lacking required columns (all of them named) or repeating one, or text that is not
    UTF-8. Any single bad row is quarantined instead, with its line and reasons.
    """
    path = Path(path)
    records: list[dict[str, Any]] = []
    quarantined: list[QuarantinedRow] = []
    received = 0
    with open(path, encoding="utf-8-sig", newline="") as fh:
        lines = _CapturedLines(fh)
        reader = csv.reader(lines)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise FocusFormatError(f"{path}: empty file; expected a FOCUS header on line 1") from None
        except UnicodeDecodeError as e:
            raise FocusFormatError(f"{path}: line 1: not UTF-8 text ({e.reason})") from None
        lines.take()
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise FocusFormatError(
                f"{path}: header (line 1) lacks required FOCUS column(s): {', '.join(missing)}"
            )
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise FocusFormatError(f"{path}: header (line 1) repeats column(s): {', '.join(repeated)}")

        def reject(line: int, reason: str, raw: str, field: str | None = None) -> None:
            quarantined.append(QuarantinedRow(source, path.name, line, reason, raw, field))

        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as e:
                raise FocusFormatError(f"{path}: line {line}: not UTF-8 text ({e.reason})") from None
            except csv.Error as e:
                received += 1
                reject(line, f"not a CSV record: {e}", lines.take())
                continue
            raw = lines.take()
            if not fields:  # a blank line holds no record
                continue
            received += 1
            if len(fields) != len(header):
                reject(line, f"expected {len(header)} fields as in the header, found {len(fields)}", raw)
                continue
            row, problems = parse_row(header, fields)
            if problems:
                reason = "; ".join(f"{name}: {message}" for name, message in problems)
                reject(line, reason, raw, problems[0][0])
                continue
            for column, derived in FOCUS_MICROS.items():
                row[derived] = micros(row[column])
            row["_file"] = path.name
            row["_line"] = line
            records.append(row)
    columns = [*header, *FOCUS_MICROS.values(), *LINEAGE_COLUMNS]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in FOCUS_TIMESTAMPS:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in (*FOCUS_MICROS.values(), "_line"):
        frame[column] = frame[column].astype("int64")
    return FocusResult(frame, tuple(quarantined), received, path, tuple(header))


def focus_schema(columns: Sequence[str]) -> pa.Schema:
    """The Parquet schema of landed FOCUS rows with these columns (decimals, UTC timestamps, text)."""

    def arrow_type(name: str) -> pa.DataType:
        if name in FOCUS_DECIMALS:
            return DECIMAL_TYPE
        if name in FOCUS_TIMESTAMPS:
            return KINDS["ts"]
        if name in (*FOCUS_MICROS.values(), "_line"):
            return pa.int64()
        return pa.string()

    return pa.schema([pa.field(name, arrow_type(name)) for name in columns])


def focus_table(frame: pd.DataFrame) -> pa.Table:
    """Accepted FOCUS rows as an Arrow table with :func:`focus_schema` (no pandas metadata)."""
    table = pa.Table.from_pandas(frame, schema=focus_schema(list(frame.columns)), preserve_index=False)
    return table.replace_schema_metadata(None)


def cost_totals(
    frame: pd.DataFrame, *, by: str = "ProviderName", column: str = "BilledCost"
) -> dict[str, Decimal]:
    """Exact Decimal totals of ``column`` per value of ``by`` (e.g. BilledCost per provider)."""
    totals: dict[str, Decimal] = {}
    for key, value in zip(frame[by], frame[column], strict=True):
        totals[key] = totals.get(key, Decimal(0)) + value
    return dict(sorted(totals.items()))


def land_focus(
    path: str | Path,
    *,
    arrived_at: dt.datetime,
    source: str = "cloud_costs",
    root: Path | None = None,
) -> ExtractResult:
    """Read a FOCUS file and land its accepted rows, one delivery per billing period start date.

    Quarantined rows go to ``data/quarantine/<source>/<file name>.jsonl``. Landing the same file
    again is a re-delivery (new files, new manifest lines), as for any source: readers dedupe on
    the source's keys. ``root`` is the landing folder (default ``data/landing``); quarantine
    goes beside it.
    """
    result = read_focus(path, source=source)
    qfile = None
    if result.quarantined:
        qfile = write_quarantine(
            source, result.quarantined, name=result.path.name, root=quarantine_root(root)
        )
    frame = result.accepted
    delivered = []
    if len(frame):
        period = frame["BillingPeriodStart"].dt.date
        for day in sorted(period.unique()):
            part = frame[period == day].reset_index(drop=True)
            delivered.append(
                landing.write_delivery(source, day, focus_table(part), arrived_at=arrived_at, root=root)
            )
    return ExtractResult(
        source,
        received=result.received,
        landed=result.accepted_count,
        quarantined=result.quarantined_count,
        deliveries=tuple(delivered),
        quarantine_file=qfile,
    )


@dataclass(frozen=True)
class FocusFiles:
    """The ``files`` adapter for FOCUS exports: lands each file with arrival time ``as_of``."""

    kind: ClassVar[Kind] = "files"
    files: tuple[Path, ...]
    source: str = "cloud_costs"
    root: Path | None = None

    def extract(self, as_of: dt.datetime) -> ExtractResult:
        """Land every file; the counts and deliveries are summed over the files, in order."""
        results = [land_focus(p, arrived_at=as_of, source=self.source, root=self.root) for p in self.files]
        qfiles = sorted({r.quarantine_file for r in results if r.quarantine_file is not None})
        return ExtractResult(
            self.source,
            received=sum(r.received for r in results),
            landed=sum(r.landed for r in results),
            quarantined=sum(r.quarantined for r in results),
            deliveries=tuple(d for r in results for d in r.deliveries),
            quarantine_file=qfiles[0] if len(qfiles) == 1 else None,
            note=f"quarantine in {len(qfiles)} files: {', '.join(map(str, qfiles))}"
            if len(qfiles) > 1
            else "",
        )

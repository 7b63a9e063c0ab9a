"""FOCUS 1.0 cloud billing files: the real sample reads exactly, bad rows are quarantined by line."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from conftest import FOCUS_SAMPLE
from helpers.storage import landing
from helpers.storage.extract.focus import FocusFormatError, cost_totals, land_focus, parse_decimal, read_focus
from helpers.storage.quarantine import read_quarantine

pytestmark = pytest.mark.unit
ARRIVED = dt.datetime(2024, 10, 4, 6, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def sample() -> Path:
    return FOCUS_SAMPLE


def independent_totals(path: Path) -> tuple[dict[str, Decimal], Counter]:
    """BilledCost per provider and rows per provider, straight from the csv module."""
    totals: dict[str, Decimal] = {}
    counts: Counter = Counter()
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            provider = row["ProviderName"]
            totals[provider] = totals.get(provider, Decimal(0)) + Decimal(row["BilledCost"])
            counts[provider] += 1
    return totals, counts


def test_sample_gives_its_rows_and_billed_cost_per_provider(sample):
    result = read_focus(sample)
    expected, counts = independent_totals(sample)

    assert (result.received, result.accepted_count, result.quarantined_count) == (1000, 1000, 0)
    assert dict(counts) == {"AWS": 942, "Microsoft": 51, "Oracle": 7}  # as the data README says
    assert Counter(result.accepted["ProviderName"]) == counts
    assert cost_totals(result.accepted) == expected
    assert all(isinstance(v, Decimal) for v in result.accepted["BilledCost"])
    assert str(result.accepted["ChargePeriodStart"].dt.tz) == "UTC"
    assert result.accepted["_line"].tolist() == list(range(2, 1002))


def test_sample_types_nulls_tags_and_micros(sample):
    frame = read_focus(sample).accepted
    first = frame.iloc[0]
    assert first["AvailabilityZone"] is None  # the text NULL
    assert first["Tags"] is None
    assert first["BilledCost"] == Decimal("0.00000080000")
    assert first["BilledCostMicros"] == 1  # 0.8 micro-USD, rounded half-even per row
    assert first["ChargePeriodStart"] == pd.Timestamp("2024-09-18 22:00", tz="UTC")
    assert frame.iloc[1]["Tags"] == (
        '{"application": "BrightLensMatrix", "environment": "dev", "business_unit": "ViennaAI"}'
    )
    assert set(frame["ChargeCategory"]) == {"Usage", "Credit", "Adjustment"}
    assert (frame["EffectiveCost"] != frame["BilledCost"]).any()  # amortised differs from invoiced
    assert frame["BilledCostMicros"].dtype == "int64"


def _line(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(fields)
    return out.getvalue()


def corrupted_copy(sample: Path, target: Path) -> tuple[dict[int, tuple[str, str, str]], int]:
    """The sample with a valid two-line record and six bad records injected.

    Returns {line number: (field or "", reason fragment, the record's original Id)} of the bad
    records, and the number of records written.
    """
    text = sample.read_text(encoding="utf-8")
    header_line, *data_lines = text.splitlines(keepends=True)
    header = next(csv.reader([header_line]))
    col = header.index

    def edit(line: str, **changes: str) -> str:
        fields = next(csv.reader([line]))
        for name, value in changes.items():
            fields[col(name)] = value
        return _line(fields)

    faults = {
        10: ("BilledCost", "is not a decimal number", lambda line: edit(line, BilledCost="1.2.3")),
        20: ("Tags", "not valid JSON", lambda line: edit(line, Tags='{"application": "x", "env"')),
        30: ("", "expected 44 fields", lambda line: _line(next(csv.reader([line]))[:20])),
        40: (
            "ChargePeriodStart",
            "is not a timestamp",
            lambda line: edit(line, ChargePeriodStart="2024-09-31 25:00:00"),
        ),
        50: ("ChargeCategory", "is not one of", lambda line: edit(line, ChargeCategory="Refund")),
        60: ("BillingCurrency", "3-letter", lambda line: edit(line, BillingCurrency="usd")),
    }
    out = [header_line]
    bad: dict[int, tuple[str, str, str]] = {}
    line_no = 2
    for i, line in enumerate(data_lines):
        if i == 2:  # a valid record whose description holds a line break: it spans two lines
            line = edit(line, ChargeDescription="first part\nsecond part")
        elif i in faults:
            field, fragment, corrupt = faults[i]
            bad[line_no] = (field, fragment, next(csv.reader([line]))[col("Id")])
            line = corrupt(line)
        out.append(line)
        line_no += line.count("\n")
    target.write_text("".join(out), encoding="utf-8")
    return bad, len(data_lines)


def test_malformed_rows_are_quarantined_with_line_and_reason(sample, tmp_path):
    bad_file = tmp_path / "focus_bad.csv"
    bad, records = corrupted_copy(sample, bad_file)
    physical = bad_file.read_text().splitlines()
    result = read_focus(bad_file)

    assert result.received == records == 1000
    assert result.quarantined_count == len(bad) == 6
    assert result.accepted_count == records - len(bad)
    got = {q.line: q for q in result.quarantined}
    assert sorted(got) == sorted(bad)
    assert min(got) > 5  # after the two-line record: numbering follows physical lines, not records
    for line, (field, fragment, _) in bad.items():
        q = got[line]
        assert fragment in q.reason, (line, q.reason)
        assert (q.field or "") == field
        assert q.file == "focus_bad.csv"
        assert q.raw == physical[line - 1]  # the raw text is the file's own line
    ids = set(pd.read_csv(sample, dtype=str, keep_default_na=False)["Id"])
    bad_ids = {original_id for _, _, original_id in bad.values()}
    assert set(result.accepted["Id"]) == ids - bad_ids  # every other row kept
    two_line = result.accepted[result.accepted["ChargeDescription"] == "first part\nsecond part"]
    assert two_line["_line"].tolist() == [4]


def test_land_focus_partitions_by_billing_period_and_quarantines(sample, tmp_path, home):
    bad_file = tmp_path / "focus_bad.csv"
    bad, _ = corrupted_copy(sample, bad_file)
    result = land_focus(bad_file, arrived_at=ARRIVED)

    assert (result.received, result.landed, result.quarantined) == (1000, 994, 6)
    assert sorted(d.partition for d in result.deliveries) == ["2024-09-01", "2024-10-01"]
    assert result.quarantine_file == home / "data" / "quarantine" / "cloud_costs" / "focus_bad.csv.jsonl"
    lines = read_quarantine(result.quarantine_file)
    assert [row["line"] for row in lines] == sorted(bad)

    landed = landing.read_source("cloud_costs")
    accepted = read_focus(bad_file).accepted
    assert len(landed) == 994
    assert cost_totals(landed) == cost_totals(accepted)  # Decimal survives the Parquet round trip
    assert landing.arrivals("cloud_costs")["arrived_at"].unique().tolist() == [pd.Timestamp(ARRIVED)]

    land_focus(bad_file, arrived_at=ARRIVED)  # a re-delivery: new files, same quarantine
    assert len(read_quarantine(result.quarantine_file)) == 6
    assert len(landing.deliveries("cloud_costs")) == 4


def test_missing_required_column_names_file_and_columns(sample, tmp_path):
    frame = pd.read_csv(sample, dtype=str, keep_default_na=False, nrows=3)
    broken = tmp_path / "no_cost.csv"
    frame.drop(columns=["BilledCost", "ChargeCategory"]).to_csv(broken, index=False)
    with pytest.raises(FocusFormatError) as err:
        read_focus(broken)
    message = str(err.value)
    assert str(broken) in message
    assert "BilledCost" in message and "ChargeCategory" in message
    assert "EffectiveCost" not in message


def test_empty_file_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FocusFormatError, match="empty.csv: empty file"):
        read_focus(empty)


@pytest.mark.parametrize("text", ["1.5", "-0.01288992000", "1e-7", ".5", "12"])
def test_parse_decimal_accepts_plain_numbers(text):
    assert parse_decimal(text) == Decimal(text)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1_000", " 1", "1,5", "", "0." + "1" * 19])
def test_parse_decimal_rejects_what_decimal_would_bend(text):
    with pytest.raises(ValueError):
        parse_decimal(text)

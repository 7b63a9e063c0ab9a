"""The scalable paths of Profit give exactly what the per-row paths they replace gave.

Revenue is expanded to service days a chunk of lines at a time and summed per line and month;
allocations use integer largest remainder instead of a ``Fraction`` per account; unchanged copies
are looked for among rows whose key repeats; renewals are matched with a hash join; verified
landing reads convert the files of one schema in one go and parse each manifest once. Each is
compared here with the reference computation (the old code path or :mod:`helpers.core.money`).
"""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from helpers.core.money import MICRO, allocate, largest_remainder
from helpers.core.periods import month_bounds, period_of
from helpers.profit import revenue as rev
from helpers.profit.fx import convert
from helpers.profit.inputs import JoinLog, dedupe_exact, findings
from helpers.profit.unit import allocate_exact, split_exact
from helpers.storage import landing, verified

pytestmark = pytest.mark.unit


def outcome(fn, *args):
    """``fn(*args)`` or the text of the ValueError it raised."""
    try:
        return fn(*args)
    except ValueError as e:
        return f"ValueError: {e}"


def test_integer_allocation_matches_fractions_including_ties_negative_pools_and_overflow():
    rng = np.random.default_rng(7)
    wide = 0
    for trial in range(600):
        n = int(rng.integers(1, 40))
        scale = rng.choice([1, 10 ** int(rng.integers(0, 13))], n)
        weights = pd.Series(rng.integers(0, 4, n) * scale, index=rng.permutation(n) + 100)
        pool = int(rng.integers(-(10**6), 10**9)) * (1000 if trial % 5 == 0 else 1)
        wide += bool(weights.max()) and abs(pool) * int(weights.max()) >= 2**62
        want, got = outcome(allocate, pool, weights), outcome(allocate_exact, pool, weights)
        if isinstance(want, str):
            assert got == want
        else:
            pd.testing.assert_series_equal(got, want)
    assert wide > 50  # the Python-int path was exercised too
    with pytest.raises(ValueError, match="non-negative"):
        allocate_exact(10, pd.Series([1, -1]))
    pd.testing.assert_series_equal(allocate_exact(10, pd.Series([0, 0])), allocate(10, pd.Series([0, 0])))


def test_integer_largest_remainder_matches_fractions_and_rejects_the_same_totals():
    rng = np.random.default_rng(8)
    for _ in range(400):
        n = int(rng.integers(1, 50))
        micro = rng.integers(-(10**10), 10**10, n)
        micro[: n // 2] = micro[0]  # equal remainders: ties go to the first part
        total = round(sum(Fraction(int(v), MICRO) for v in micro)) + int(rng.integers(-2, 3))
        want = outcome(largest_remainder, [Fraction(int(v), MICRO) for v in micro], total)
        got = outcome(split_exact, micro, MICRO, total)
        if isinstance(want, str):
            assert got == want
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_month_labels_are_period_of():
    days = pd.Series(
        pd.to_datetime(["2026-10-31", "2025-01-01 13:00", "1999-12-31", "2026-10-01"], format="mixed")
    )
    for s in (days, days[:0], pd.concat([days, pd.Series([pd.NaT])], ignore_index=True), days[2:]):
        pd.testing.assert_series_equal(rev.month_labels(s), period_of(s))


def test_pairs_in_is_tuple_membership_whatever_the_time_unit_and_with_nulls():
    ids = pd.Series(["a", "b", "c", "a", "b"])
    days = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-05", "2026-01-03"]))
    other_ids = pd.Series(["a", "b", "x", None])
    other = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-03", "2026-01-03", "2026-01-05"])).astype(
        "datetime64[us]"
    )
    have = set(zip(other_ids, other, strict=True))
    want = [(s, d) in have for s, d in zip(ids, days, strict=True)]
    assert rev.pairs_in(ids, days, other_ids, other) == want == [True, False, False, False, True]
    with_null = pd.Series(["a", None, "b", "a", "b"])
    want = [(s, d) in have for s, d in zip(with_null, days, strict=True)]
    assert rev.pairs_in(with_null, days, other_ids, other) == want
    assert rev.pairs_in(ids, days, other_ids[:0], other[:0]) == [False] * 5


def test_exact_copies_are_found_among_repeated_keys_as_a_whole_row_text_comparison_would():
    frame = pd.DataFrame(
        {
            "invoice_line_id": ["l1", "l1", "l2", "l2", "l3", "l1", None, None],
            "amount": [100, "100", 5, 6, 7, 100, 1, 1],  # 100 and '100' are the same text
            "status": ["paid", "paid", "open", "open", "paid", "open", "open", "open"],
            "_partition": ["2026-10-02", "2026-10-01", "2026-10-01", "2026-10-03", "2026-10-01", "2026-10-04"]
            + ["2026-10-01", "2026-10-02"],
            "_arrived_at": pd.Timestamp("2026-10-05", tz="UTC"),
        }
    )
    kept, found = dedupe_exact(frame, source="billing_invoices")
    ordered = frame.sort_values(["_partition", "_arrived_at"], kind="stable")
    dup = ordered.drop(columns=["_partition", "_arrived_at"]).astype(str).duplicated(keep="first")
    pd.testing.assert_frame_equal(kept, ordered[~dup].sort_index())
    assert (
        sorted(found["key_value"])
        == sorted(ordered.loc[dup, "invoice_line_id"].astype(str))
        == ["None", "l1"]
    )


def old_revenue_days(lines, rates, joins, start, stop, report):
    """The per-day computation (the code before chunking), for comparison."""
    days = rev.service_days(lines, start, stop)
    converted, missing = convert(
        days, rates, joins, day="day", amount="amount_local", source="billing_invoices",
        key="invoice_line_id", name="invoice line days x fx_rates",
    )  # fmt: skip
    if report is not None and len(missing):
        lost = days.loc[
            days.merge(rates, on=["day", "currency"], how="left")["rate_micros"].isna().to_numpy()
        ]
        first, stop = month_bounds(report)
        keep = set(lost.loc[(lost["day"] >= first) & (lost["day"] < stop), "invoice_line_id"].astype(str))
        missing = missing[missing["key_value"].isin(keep)]
    missing = missing.drop_duplicates(["key_value"]) if len(missing) else missing
    converted["period"] = period_of(converted["day"])
    return converted, missing


def test_revenue_summed_per_line_and_month_in_chunks_matches_the_service_days(monkeypatch):
    rng = np.random.default_rng(9)
    n = 57
    start_day = pd.Timestamp("2026-08-20") + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
    lines = pd.DataFrame(
        {
            "invoice_line_id": [f"il_{i:03d}" for i in range(n)],
            "customer_id": [f"cus_{i % 9}" for i in range(n)],
            "subscription_id": [f"sub_{i % 13}" for i in range(n)],
            "amount": rng.integers(-5_000, 90_000, n),
            "currency": rng.choice(["USD", "EUR", "GBP"], n),
            "period_start": start_day,
            "period_end": start_day + pd.to_timedelta(rng.integers(1, 45, n), unit="D"),
            "status": rng.choice(["paid", "open", "uncollectible"], n),
        }
    )
    grid = pd.MultiIndex.from_product(
        [pd.date_range("2026-08-01", "2026-11-30"), ["USD", "EUR", "GBP"]], names=["day", "currency"]
    ).to_frame(index=False)
    grid["rate_micros"] = pd.array(rng.integers(700_000, 1_400_000, len(grid)), dtype="Int64")
    grid.loc[(grid["currency"] == "GBP") & (grid["day"].dt.day.isin([3, 17])), "rate_micros"] = pd.NA
    rates = grid.dropna(subset=["rate_micros"]).reset_index(drop=True)
    window = (pd.Timestamp("2026-09-01"), pd.Timestamp("2026-11-15"))
    old_joins = JoinLog()
    days, old_missing = old_revenue_days(lines, rates, old_joins, *window, "2026-10")
    monkeypatch.setattr(rev, "LINES_PER_CHUNK", 10)  # six chunks
    joins = JoinLog()
    sums, missing = rev.revenue_days(lines, rates, joins, *window, report="2026-10")
    want = (
        days.groupby(["invoice_line_id", "period"])
        .agg(amount_local=("amount_local", "sum"), usd_micro=("usd_micro", "sum"), days=("day", "size"))
        .reset_index()
    )
    got = sums.sort_values(["invoice_line_id", "period"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns.tolist()], want, check_dtype=False)
    attrs = days.drop_duplicates("invoice_line_id").set_index("invoice_line_id")
    for col in ("customer_id", "subscription_id", "currency", "status"):
        assert got[col].tolist() == attrs.loc[got["invoice_line_id"], col].tolist()
    assert len(missing) and missing.reset_index(drop=True).equals(old_missing.reset_index(drop=True))
    assert joins.frame().equals(old_joins.frame())
    assert int(sums["days"].sum()) == len(days)  # the converted days; the join saw every day
    assert joins.rows[0]["left_rows"] == len(rev.service_days(lines, *window)) > len(days)


def test_an_account_join_of_monthly_sums_logs_the_day_rows():
    sums = pd.DataFrame({"customer_id": ["c1", "c2", "c9"], "days": [30, 12, 5]})
    dim = pd.DataFrame({"customer_id": ["c1", "c2"], "account_id": ["a1", "a2"]})
    joins = JoinLog()
    out, found = rev.account_of(sums, dim, joins, name="revenue days x billing_customers", counts="days")
    assert joins.rows[0] == dict(
        join="revenue days x billing_customers",
        left_rows=47,
        right_rows=2,
        result_rows=47,
        right_duplicate_keys=0,
    )
    assert out["account_id"].tolist() == ["a1", "a2", "unmapped:c9"] and found["key_value"].tolist() == ["c9"]
    assert findings(
        sums[:0], source="billing_customers", key="customer_id", reason="x", action="coerced"
    ).empty


def write(root: Path, partition: str, table: pa.Table, hour: int) -> None:
    arrived = dt.datetime.fromisoformat(partition).replace(tzinfo=dt.UTC) + dt.timedelta(hours=hour)
    landing.write_delivery("fx_rates", partition, table, arrived_at=arrived, root=root)


def test_one_conversion_of_same_schema_files_equals_converting_each_file(tmp_path, monkeypatch):
    schema = pa.schema([("date", pa.date32()), ("currency", pa.string()), ("usd_per_unit", pa.float64())])
    extra = pa.schema([*schema, ("n", pa.int64()), ("flag", pa.bool_())])
    for i, day in enumerate(["2026-10-01", "2026-10-02", "2026-10-03"]):
        rows = {
            "date": [dt.date.fromisoformat(day)] * 2,
            "currency": ["EUR", None],
            "usd_per_unit": [1.1, None],
            "n": [i, None if i == 1 else i],  # a NULL in one file: float64 either way
            "flag": [True, False],
        }
        write(tmp_path, day, pa.table(rows, schema=extra), hour=i)
    write(tmp_path, "2026-10-04", pa.table({"date": [], "currency": [], "usd_per_unit": [], "n": [], "flag": []}, schema=extra), 1)  # fmt: skip
    fast = verified.read_verified("fx_rates", root=tmp_path)
    monkeypatch.setattr(verified, "_uniform", lambda tables: False)
    slow = verified.read_verified("fx_rates", root=tmp_path)
    pd.testing.assert_frame_equal(fast.frame, slow.frame, check_exact=True)
    assert (
        str(fast.frame["_arrived_at"].dtype) == "datetime64[us, UTC]" and fast.frame["n"].dtype == "float64"
    )
    assert [type(v) for v in fast.frame["date"]] == [type(v) for v in slow.frame["date"]]
    # a file whose schema drifted (a rate as text) is converted on its own, as before
    write(tmp_path, "2026-10-05", pa.table({"date": [dt.date(2026, 10, 5)], "currency": ["EUR"], "usd_per_unit": ["1.2"]}), 2)  # fmt: skip
    assert not verified._uniform([pa.table({"a": [1]}), pa.table({"a": ["1"]})])
    monkeypatch.undo()
    drifted = verified.read_verified("fx_rates", root=tmp_path).frame
    assert drifted["usd_per_unit"].tolist()[-1] == "1.2" and drifted["usd_per_unit"].tolist()[0] == 1.1


def test_a_manifest_read_once_still_sees_a_delivery_appended_later(tmp_path):
    table = pa.table({"date": [dt.date(2026, 10, 1)], "currency": ["EUR"], "usd_per_unit": [1.1]})
    write(tmp_path, "2026-10-01", table, hour=1)
    first = landing.deliveries("fx_rates", root=tmp_path)
    write(tmp_path, "2026-10-02", table, hour=1)
    assert [d.partition for d in landing.deliveries("fx_rates", root=tmp_path)] == [
        "2026-10-01",
        "2026-10-02",
    ]
    assert (
        landing.deliveries("fx_rates", root=tmp_path, as_of=dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC))
        == first
    )
    manifest = tmp_path / "fx_rates" / landing.MANIFEST
    manifest.write_text(manifest.read_text() + json.dumps({"bad": 1}) + "\n")
    with pytest.raises(ValueError, match="line 3: not a manifest record"):
        landing.deliveries("fx_rates", root=tmp_path)

"""Drills at another month and size: ``drill_specs.shift``/``at`` move a spec by whole months and
``with_params`` sets the fault's parameters, the company's size and its seed (pure functions)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from helpers.demo import drill_specs as ds
from helpers.demo.spec import FaultSpec

pytestmark = pytest.mark.unit
D = dt.date


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2026, 9, 30), 5, D(2027, 2, 28)),  # the last day stays the last day (February)
        (D(2026, 9, 29), 5, D(2027, 2, 27)),  # the last but one stays the last but one
        (D(2026, 9, 30), -7, D(2026, 2, 28)),
        (D(2026, 9, 30), -19, D(2025, 2, 28)),
        (D(2026, 9, 30), -31, D(2024, 2, 29)),  # leap year
        (D(2026, 9, 30), 3, D(2026, 12, 31)),  # 31-day month
        (D(2026, 9, 29), 1, D(2026, 10, 30)),
        (D(2026, 9, 1), 4, D(2027, 1, 1)),  # the 1st stays the 1st, across the year boundary
        (D(2026, 9, 15), 5, D(2027, 2, 15)),  # day <= 15: its day of month
        (D(2026, 9, 12), -9, D(2025, 12, 12)),
        (D(2026, 9, 21), 5, D(2027, 2, 19)),  # 9 days before the end
        (D(2026, 8, 18), -7, D(2026, 1, 18)),  # Aug 31 - 13 -> Jan 31 - 13
        (D(2026, 9, 24), 0, D(2026, 9, 24)),
    ],
)
def test_shift_day_keeps_early_days_and_the_distance_of_late_days_from_the_month_end(day, months, expected):
    assert ds.shift_day(day, months) == expected


def test_month_arithmetic_and_date_parsing():
    assert ds.months_between("2026-09") == 0
    assert ds.months_between("2027-02") == 5 and ds.months_between("2026-06-17") == -3  # a day: its month
    assert ds.months_between("2025-12") == -9
    assert ds.shift_month("2026-09", 4) == "2027-01" and ds.shift_month("2026-01", -1) == "2025-12"
    for bad in ("2026-13", "2026/06", "June", "2026-6", ""):
        with pytest.raises(ValueError, match="expected YYYY-MM"):
            ds.months_between(bad)


def test_a_shift_of_zero_months_is_the_catalogue_spec():
    for spec in ds.SPECS.values():
        assert ds.shift(spec, 0) is spec and ds.at(spec, "2026-09") is spec
        assert ds.drill_month(spec) == "2026-09"


def test_at_moves_every_date_of_a_spec_and_nothing_else():
    spec = ds.SPECS["late_events"]
    moved = ds.at(spec, "2027-02")  # 30-day September -> 28-day February, across a year boundary
    assert moved is not spec and spec.fault == "late_events@2026-09-27:share=1.0,min_days=3,max_days=3"
    assert moved.fault == "late_events@2027-02-25:share=1.0,min_days=3,max_days=3"
    assert moved.runs == (("engagement_aggregate", "2027-02-28"),)
    assert moved.baseline_runs == (("engagement_aggregate", "2027-02-25"),)
    assert moved.seed_runs == (
        ("profit_aggregate", "2027-02-28"),
        ("profit_unit", "2027-02-28"),
        ("growth_aggregate", "2027-02-28"),
    )
    assert [f.where for f in moved.figures] == [{"date": D(2027, 2, 25)}, {"date": D(2027, 2, 28)}]
    assert moved.as_of == dt.datetime(2027, 3, 1, 16, 45, tzinfo=dt.UTC)
    assert moved.tick_at == dt.datetime(2027, 3, 1, 17, 0, tzinfo=dt.UTC)
    assert moved.fix_at == dt.datetime(2027, 3, 1, 17, 30, tzinfo=dt.UTC)
    assert moved.shape == dataclasses.replace(spec.shape, end="2027-03-01")
    same = ("id", "family", "tolerance", "runbook", "fix_params")
    assert all(getattr(moved, k) == getattr(spec, k) for k in same)
    assert ds.drill_month(moved) == "2027-02"


def test_at_moves_periods_heal_days_and_a_fault_in_the_previous_month():
    stale = ds.at(ds.SPECS["stale_data"], "2026-12")  # 31-day December
    assert stale.fault == "stale_data@2026-12-25"
    assert stale.heal[0].days == tuple(f"2026-12-{d}" for d in range(26, 32))  # still up to the last day
    assert [f.where for f in stale.figures] == [{"period": "2026-12"}]
    assert stale.tick_at.date() == D(2027, 1, 1) and stale.shape.end == "2027-01-01"

    finance = ds.at(ds.SPECS["finance_mismatch"], "2026-03")  # August's ledger -> February's
    assert finance.fault == "finance_mismatch@2026-03-01"
    assert finance.runs == (("profit_aggregate", "2026-02-28"),)
    assert [f.where for f in finance.figures] == [{"period": "2026-02"}]

    churn = ds.at(ds.SPECS["churn_misclassified"], "2027-03")  # 18 August: 13 days before the end
    assert churn.fault == "churn_misclassified@2027-02-15"


def test_every_shifted_spec_keeps_its_order_of_events_and_a_parseable_fault():
    for month in ("2024-02", "2026-02", "2026-03", "2026-06", "2026-12", "2027-01"):
        for spec in ds.SPECS.values():
            moved = ds.at(spec, month)
            fault = FaultSpec.parse(moved.fault)
            assert fault.id == spec.id and fault.date is not None, (month, spec.id)
            assert fault.date < moved.tick_at.date() and moved.runs[0][1] < moved.tick_at.date().isoformat()
            assert moved.as_of < moved.tick_at < moved.fix_at and moved.tick_at.day == 1
            assert ds.drill_month(moved) == month
            days = [d for r in moved.heal for d in r.days]
            assert days == sorted(days) and len(set(days)) == len(days), (month, spec.id)


def test_with_params_overrides_and_extends_the_fault_and_sets_the_size_and_seed():
    spec = ds.SPECS["late_events"]
    out = ds.with_params(spec, {"share": "0.5", "days": "2", "accounts": "80"}, seed=11)
    assert out.fault == "late_events@2026-09-27:share=0.5,min_days=3,max_days=3,days=2"
    assert out.shape == dataclasses.replace(spec.shape, accounts=80, seed=11)
    assert FaultSpec.parse(out.fault).params == {"share": 0.5, "min_days": 3, "max_days": 3, "days": 2}

    plain = ds.with_params(ds.SPECS["stale_data"], {"months": "4", "events_per_user_day": "0.8"})
    assert plain.fault == "stale_data@2026-09-24" and (
        plain.shape.months,
        plain.shape.events_per_user_day,
    ) == (
        4,
        0.8,
    )
    assert ds.with_params(ds.SPECS["stale_data"], {"source": "billing_payments"}).fault == (
        "stale_data@2026-09-24:source=billing_payments"
    )


def test_with_params_names_an_unknown_key_and_the_faults_own_keys():
    with pytest.raises(ValueError) as e:
        ds.with_params(ds.SPECS["missing_subscription_data"], {"dayz": "5"})
    known = ", ".join(ds.fault_param_keys("missing_subscription_data"))  # the injector's PARAMS
    assert "--param dayz" in str(e.value) and known in str(e.value) and "accounts" in str(e.value)
    assert {"days", "sources"} <= set(ds.fault_param_keys("missing_subscription_data"))
    with pytest.raises(ValueError, match="expected a int"):
        ds.with_params(ds.SPECS["stale_data"], {"accounts": "many"})
    with pytest.raises(ValueError, match="above 0"):
        ds.with_params(ds.SPECS["stale_data"], {"accounts": "0"})
    for bad in (["days"], ["=3"], ["days="], ["sources=a,b"]):
        with pytest.raises(ValueError, match="expected key=value"):
            ds.parse_params(bad)
    assert ds.parse_params(["days=5", "days=6", "accounts=80"]) == {"days": "6", "accounts": "80"}


def test_every_drill_knows_the_parameters_its_fault_declares():
    for spec in ds.SPECS.values():
        keys = ds.fault_param_keys(spec.id)
        assert keys, spec.id
        assert set(FaultSpec.parse(spec.fault).params) <= set(keys), spec.id

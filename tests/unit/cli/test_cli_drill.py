"""``workbook drill ID [--date D] [--param k=v ...] [--seed S]``: parsing, validation (exit 2 with the
key and what is expected) and the specs the options build; the output names fault, month and size."""

from __future__ import annotations

import io

import pytest

from conftest import workbook
from helpers.cli import console
from helpers.cli import drill as cli
from helpers.core.errors import UsageError
from helpers.demo import drill, drill_specs

pytestmark = pytest.mark.unit


def specs(ids, date=None, params=(), seed=None, every=False):
    return cli.drill_specs_for(list(ids), date=date, params=list(params), seed=seed, every=every)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["drill", "stale_data", "--date", "2026-13"], "--date '2026-13': expected YYYY-MM"),
        (["drill", "stale_data", "--param", "sauce=1"], "--param sauce: stale_data takes source;"),
        (
            ["drill", "missing_subscription_data", "--param", "dayz=5"],
            f"takes {', '.join(drill_specs.fault_param_keys('missing_subscription_data'))}; "
            "the company's size: accounts, months, events_per_user_day",
        ),
        (["drill", "stale_data", "--param", "accounts"], "--param 'accounts': expected key=value"),
        (["drill", "stale_data", "--param", "accounts=lots"], "--param accounts='lots': expected a int"),
        (["drill", "--all", "--param", "days=5"], "with --all only the company's size may be set"),
        (["drill", "stale_data", "--seed", "x"], "invalid int value"),
    ],
)
def test_a_bad_date_or_parameter_exits_2_naming_it_before_any_drill_runs(args, message):
    proc = workbook(*args, "--workdir", "/nonexistent/never-created", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "drill " not in proc.stdout


def test_date_params_and_seed_build_the_shifted_sized_spec():
    [spec] = specs(["late_events"], date="2026-12", params=["share=0.5", "accounts=80"], seed=3)
    assert spec == drill_specs.with_params(drill_specs.at(drill.SPECS["late_events"], "2026-12"), {
        "share": "0.5", "accounts": "80"
    }, seed=3)  # fmt: skip
    assert spec.fault == "late_events@2026-12-28:share=0.5,min_days=3,max_days=3"
    assert (spec.shape.accounts, spec.shape.seed, spec.shape.end) == (80, 3, "2027-01-01")
    assert specs(["stale_data"]) == [drill.SPECS["stale_data"]]  # no option: the catalogue's spec

    every = specs(list(drill.SPECS), date="2026-03", params=["accounts=60"], every=True)
    assert [s.id for s in every] == list(drill.SPECS)
    assert {s.shape.accounts for s in every} == {60} and {drill_specs.drill_month(s) for s in every} == {
        "2026-03"
    }


def test_a_day_is_taken_as_its_month_and_a_tick_off_business_days_is_announced(home, capsys):
    [spec] = specs(["stale_data"], date="2026-06-17")
    assert drill_specs.drill_month(spec) == "2026-06"
    assert (
        "--date 2026-06-17: a drill moves by whole months; it happens in 2026-06" in capsys.readouterr().err
    )
    specs(["skipped_stage"], date="2026-07")  # the tick: Saturday 1 August 2026
    assert "the tick falls on Saturday 2026-08-01, not a business day (weekend)" in capsys.readouterr().err
    specs(["stale_data"], date="2026-12")  # Friday 1 January 2027: New Year's Day
    assert "the tick falls on Friday 2027-01-01, not a business day (New Year" in capsys.readouterr().err
    specs(["skipped_stage"], date="2026-06")  # Wednesday 1 July
    assert capsys.readouterr().err == ""
    with pytest.raises(UsageError, match="drill skipped_stage: --param days"):
        specs(["skipped_stage"], params=["days=1"])  # skipped_stage takes count only


def _result(spec: drill_specs.DrillSpec) -> drill.DrillResult:
    return drill.DrillResult(
        spec.id, spec.family, spec.fault,
        drill.Detected(["c"], 1, f"{spec.family}_aggregate.{spec.id}", True),
        drill.Routed([{"recipient": "DE1", "at": spec.tick_at.isoformat()}], ["DE1"], None, "", True),
        drill.Diagnosed("x", spec.id, "...", None, True),
        drill.Repaired("succeeded", {"passed": True}, [], True),
        0, 12.5, None, None, drill_specs.drill_month(spec), spec.shape.accounts, spec.shape.seed,
    )  # fmt: skip


def test_the_table_and_json_name_the_injected_fault_the_month_and_the_size():
    [spec] = specs(["late_events"], date="2026-03", params=["accounts=80"])
    r = _result(spec)
    row, js = cli.table_row(r), r.as_json()
    assert row["fault"] == "@2026-03-28:share=1.0,min_days=3,max_days=3" and row["accounts"] == 80
    assert (js["fault"], js["month"], js["accounts"], js["seed"]) == (spec.fault, "2026-03", 80, 7)
    out = io.StringIO()
    console.print_table([row], cli.COLUMNS, stream=out, width=100)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 100 for line in lines) and any(
        "late_events" in line and "80" in line for line in lines
    )
    wide = io.StringIO()
    console.print_table([row], cli.COLUMNS, stream=wide, wide=True)
    assert "@2026-03-28:share=1.0,min_days=3,max_days=3" in wide.getvalue()

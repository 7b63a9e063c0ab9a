import contextlib
import io
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from helpers.core import config as cfgmod

pytestmark = pytest.mark.unit


@pytest.fixture
def cfgdir(tmp_path) -> Path:
    shutil.copy(REPO / "config" / "pipelines.yml", tmp_path / "pipelines.yml")
    shutil.copy(REPO / "config" / "team.yml", tmp_path / "team.yml")
    return tmp_path


def edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_repository_config_is_valid_and_matches_the_plan():
    cfg = cfgmod.load(REPO / "config")
    p = cfg.pipelines.pipelines
    assert set(p) == set(cfgmod.PIPELINE_IDS)
    owners = {k: (v.owners.primary, v.owners.secondary) for k, v in p.items() if not v.owners.team}
    assert owners == {
        "profit_aggregate": ("DE1", "DE2"),
        "profit_unit": ("DE2", "DE1"),
        "growth_aggregate": ("DE3", "DE4"),
        "growth_daily": ("DE4", "DE3"),
        "engagement_aggregate": ("DE1", "DE3"),
    }
    assert set(p["investor_aggregate"].depends_on) == {
        "profit_aggregate",
        "growth_aggregate",
        "engagement_aggregate",
    }
    assert cfg.pipelines.order()[-1] in ("investor_aggregate", "profit_unit")
    assert cfg.pipelines.order().index("investor_aggregate") > cfg.pipelines.order().index(
        "engagement_aggregate"
    )
    assert p["profit_aggregate"].sla.freshness_critical_hours == 24
    assert p["engagement_aggregate"].sla.freshness_critical_hours == 48
    assert p["growth_aggregate"].sla.oncall_mode == "business_hours"
    assert [
        p[k].sla.fix_business_days for k in ("profit_aggregate", "growth_aggregate", "engagement_aggregate")
    ] == [3, 2, 5]
    assert cfg.team.rotation.order == ("DE1", "DE2", "DE3", "DE4")
    assert set(cfg.team.contacts) >= {"finance", "accounts", "engineering", "frontend"}


def test_invalid_value_names_file_key_and_expectation(cfgdir):
    edit(
        cfgdir / "pipelines.yml",
        lambda d: d["pipelines"]["profit_aggregate"]["sla"].update(freshness_warn_hours="soon"),
    )
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(cfgdir)
    msg = str(e.value)
    assert "pipelines.yml" in msg
    assert "pipelines.profit_aggregate.sla.freshness_warn_hours" in msg
    assert "'soon'" in msg and "number" in msg


def test_missing_and_unknown_keys_are_named(cfgdir):
    def change(d):
        del d["pipelines"]["growth_daily"]["schedule"]
        d["pipelines"]["growth_daily"]["shedule"] = "0 1 * * *"

    edit(cfgdir / "pipelines.yml", change)
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(cfgdir)
    assert "pipelines.growth_daily.schedule: required key is missing" in str(e.value)
    assert "pipelines.growth_daily.shedule: unknown key" in str(e.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["pipelines"]["profit_unit"].update(depends_on=["nope"]), "unknown pipeline 'nope'"),
        (lambda d: d["pipelines"]["profit_aggregate"].update(depends_on=["profit_unit"]), "cycle"),
        (lambda d: d["pipelines"]["growth_daily"].update(schedule="every day"), "cron"),
        (
            lambda d: d["pipelines"]["growth_daily"]["owners"].update(secondary="DE4"),
            "different from its primary",
        ),
        (lambda d: d["pipelines"]["growth_daily"]["sla"].update(oncall_mode="always"), "oncall_mode"),
        (
            lambda d: d["pipelines"]["growth_daily"]["owners"].update(primary="DE9"),
            "owners.primary: expected one of",
        ),
    ],
)
def test_rules_are_enforced(cfgdir, change, expected):
    edit(cfgdir / "pipelines.yml", change)
    with pytest.raises(cfgmod.ConfigError, match=expected):
        cfgmod.load(cfgdir)


def test_every_engineer_must_own_an_investor_pipeline(cfgdir):
    edit(
        cfgdir / "pipelines.yml",
        lambda d: d["pipelines"]["growth_aggregate"]["owners"].update(secondary="DE3", primary="DE1"),
    )
    with pytest.raises(cfgmod.ConfigError, match="DE4 own none"):
        cfgmod.load(cfgdir)


def test_team_rules(cfgdir):
    edit(cfgdir / "team.yml", lambda d: d["rotation"].update(order=["DE1", "DE5"]))
    with pytest.raises(cfgmod.ConfigError, match="rotation.order"):
        cfgmod.load(cfgdir)


def test_team_timezone_and_naive_rotation_start_are_rejected(cfgdir):
    edit(
        cfgdir / "team.yml",
        lambda d: (
            d["calendar"].update(timezone="Mars/Olympus"),
            d["rotation"].update(start="2026-01-05T09:00:00"),
        ),
    )
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(cfgdir)
    assert "calendar.timezone" in str(e.value) and "rotation.start" in str(e.value)


def test_unreadable_files_are_named(cfgdir):
    (cfgdir / "team.yml").write_text("engineers: [unclosed\n")
    with pytest.raises(cfgmod.ConfigError, match=r"team.yml: line \d+"):
        cfgmod.load(cfgdir)
    (cfgdir / "team.yml").unlink()
    with pytest.raises(cfgmod.ConfigError, match="team.yml: file not found"):
        cfgmod.load(cfgdir)


# ---------------------------------------------------------------- messages: cron, notebooks, backfill


def load_error(cfgdir: Path) -> str:
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load(cfgdir)
    return str(e.value)


@pytest.mark.parametrize("schedule", ["61 5 * * *", "0 5 * *", "0 5 * * * 0"])
def test_a_bad_cron_schedule_is_one_message_naming_pipeline_field_and_value(cfgdir, schedule):
    edit(cfgdir / "pipelines.yml", lambda d: d["pipelines"]["growth_daily"].update(schedule=schedule))
    msg = load_error(cfgdir)
    assert msg == (
        f"{cfgdir / 'pipelines.yml'}: pipelines.growth_daily.schedule: expected a 5-field cron "
        f"expression in UTC (minute hour day-of-month month day-of-week), got {schedule!r}"
    )
    assert msg.count("expected") == 1 and msg.count("got") == 1


def test_a_validator_message_that_says_expected_is_not_doubled(cfgdir):
    edit(cfgdir / "team.yml", lambda d: d["calendar"].update(timezone="Mars/Olympus"))
    msg = load_error(cfgdir)
    assert "calendar.timezone: expected an IANA time zone" in msg
    assert "expected expected" not in msg and msg.count("got") == 1 and "'Mars/Olympus'" in msg


def test_a_notebook_that_does_not_exist_is_refused_naming_pipeline_and_path(cfgdir):
    edit(
        cfgdir / "pipelines.yml",
        lambda d: d["pipelines"]["profit_unit"].update(notebook="notebooks/pipelines/profit_unti.ipynb"),
    )
    msg = load_error(cfgdir)
    resolved = REPO / "notebooks/pipelines/profit_unti.ipynb"  # relative: against the repository
    assert msg == (
        f"{cfgdir / 'pipelines.yml'}: pipelines.profit_unit.notebook: expected an existing notebook file, "
        f"got 'notebooks/pipelines/profit_unti.ipynb' (resolved to {resolved}): no such file"
    )


def test_notebook_paths_resolve_like_the_runner_relative_and_absolute(cfgdir, tmp_path):
    own = tmp_path / "mine.ipynb"
    own.write_text("{}")
    edit(cfgdir / "pipelines.yml", lambda d: d["pipelines"]["profit_unit"].update(notebook=str(own)))
    cfg = cfgmod.load(cfgdir)  # absolute and existing: accepted; the others are relative to the repo
    assert cfg.pipelines.pipelines["profit_unit"].notebook_path == own
    own.unlink()
    assert f"pipelines.profit_unit.notebook: expected an existing notebook file, got '{own}': no such" in (
        load_error(cfgdir)
    )


def test_workbook_config_refuses_a_missing_notebook_with_exit_2(home, monkeypatch):
    import os

    from helpers.cli.main import main

    path = Path(os.environ["WORKBOOK_CONFIG_DIR"]) / "pipelines.yml"
    edit(path, lambda d: d["pipelines"]["smoke"].update(notebook="tests/fixtures/nope.ipynb"))
    cfgmod._cached.cache_clear()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["config"]) == 2
    assert "pipelines.smoke.notebook" in err.getvalue() and "tests/fixtures/nope.ipynb" in err.getvalue()


def test_backfill_with_from_after_to_exits_2_before_drawing_anything(home, monkeypatch):
    from helpers.cli import ops
    from helpers.cli.main import main

    drawn = []
    monkeypatch.setattr(ops.ProgressBoard, "__enter__", lambda self: drawn.append(self.title) or self)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["backfill", "smoke", "--from", "2026-11-10", "--to", "2026-11-01"])
    assert code == 2 and drawn == [] and out.getvalue() == ""
    assert "--from 2026-11-10 is after --to 2026-11-01" in err.getvalue()


def test_backfill_of_an_unknown_pipeline_exits_2_naming_it(home):
    from helpers.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["backfill", "nope", "--from", "2026-11-01", "--to", "2026-11-02"]) == 2
    assert "backfill: unknown pipeline 'nope'; expected one of:" in err.getvalue()

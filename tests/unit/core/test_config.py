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

"""Load and validate ``config/pipelines.yml`` and ``config/team.yml``.

Both files are validated once with pydantic; any problem raises :class:`ConfigError` naming
the file, the key and what was expected, e.g.
``config/pipelines.yml: pipelines.profit_aggregate.sla.freshness_warn_hours: expected a number, got 'soon'``.
Cross-file rules of the maintenance plan (owners exist, every engineer owns an investor
pipeline, the dependency graph has no cycle) are checked here too.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from helpers import paths

PIPELINE_IDS = (
    "profit_aggregate",
    "profit_unit",
    "growth_aggregate",
    "growth_daily",
    "engagement_aggregate",
    "investor_aggregate",
)


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- pipelines.yml


class Owners(_Strict):
    primary: str
    secondary: str | None = None
    team: bool = False  # owned by the whole team (the investor aggregate)

    @model_validator(mode="after")
    def _distinct(self) -> Owners:
        if not self.team and (self.secondary is None or self.secondary == self.primary):
            raise ValueError("a pipeline needs a secondary owner different from its primary owner")
        return self


class SLA(_Strict):
    freshness_warn_hours: float = Field(gt=0)
    freshness_critical_hours: float = Field(gt=0)
    fix_business_days: int = Field(ge=1)
    oncall_mode: Literal["weekly_rotation", "business_hours"]
    month_end_heightened: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> SLA:
        if self.freshness_warn_hours >= self.freshness_critical_hours:
            raise ValueError("freshness_warn_hours must be below freshness_critical_hours")
        return self


class Pipeline(_Strict):
    id: str
    title: str
    notebook: str
    family: Literal["profit", "growth", "engagement", "investor", "report"]
    feeds: Literal["investors", "experiments", "investor report"]
    partition: Literal["day", "month"]
    owners: Owners
    depends_on: tuple[str, ...] = ()
    schedule: str
    sla: SLA
    timeout_minutes: float = Field(default=30, gt=0)
    sources: tuple[str, ...] = ()
    critical_columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError(f"expected a 5-field cron expression, got {v!r}")
        return v

    @property
    def notebook_path(self) -> Path:
        return paths.notebook_path(self.notebook)


class CloseConfig(_Strict):
    report_final_business_days: int = Field(default=3, ge=1)
    heightened_from_days_before_month_end: int = Field(default=7, ge=0)


class RunnerConfig(_Strict):
    workers: int = Field(default=2, ge=1)
    catch_up_days: int = Field(default=7, ge=0)
    kernel_name: str = "python3"


class SparkConfig(_Strict):
    master: str = "local[*]"  # overridden by WORKBOOK_SPARK_MASTER
    driver_memory: str = "2g"
    executor_memory: str = "2g"
    shuffle_partitions: int = Field(default=8, ge=1)
    adaptive: bool = True  # AQE, including skew-join splitting
    arrow: bool = True


class DuckDBConfig(_Strict):
    memory_limit: str = "4GB"
    threads: int = Field(default=2, ge=1)


class EngineConfig(_Strict):
    default: Literal["duckdb", "spark"] = "duckdb"  # overridden by WORKBOOK_ENGINE
    spark: SparkConfig = SparkConfig()
    duckdb: DuckDBConfig = DuckDBConfig()


class PipelinesConfig(_Strict):
    runner: RunnerConfig = RunnerConfig()
    engine: EngineConfig = EngineConfig()
    close: CloseConfig = CloseConfig()
    pipelines: dict[str, Pipeline]

    @model_validator(mode="before")
    @classmethod
    def _inject_ids(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("pipelines"), dict):
            data = dict(data)
            data["pipelines"] = {
                k: ({"id": k, **v} if isinstance(v, dict) else v) for k, v in data["pipelines"].items()
            }
        return data

    @model_validator(mode="after")
    def _graph(self) -> PipelinesConfig:
        for pid, p in self.pipelines.items():
            for up in p.depends_on:
                if up not in self.pipelines:
                    raise ValueError(f"pipelines.{pid}.depends_on: unknown pipeline {up!r}")
        order = topological_order({k: v.depends_on for k, v in self.pipelines.items()})
        if order is None:
            raise ValueError("pipelines: depends_on forms a cycle")
        return self

    def get(self, pipeline_id: str) -> Pipeline:
        try:
            return self.pipelines[pipeline_id]
        except KeyError:
            known = ", ".join(sorted(self.pipelines))
            raise ConfigError(f"unknown pipeline {pipeline_id!r}; expected one of: {known}") from None

    def order(self) -> list[str]:
        order = topological_order({k: v.depends_on for k, v in self.pipelines.items()})
        assert order is not None  # checked at load
        return order


def topological_order(deps: dict[str, tuple[str, ...]]) -> list[str] | None:
    """Kahn's order of ``deps`` (node -> upstreams), ties by name; ``None`` on a cycle."""
    remaining = {k: set(v) for k, v in deps.items()}
    out: list[str] = []
    while remaining:
        ready = sorted(k for k, ups in remaining.items() if not ups)
        if not ready:
            return None
        for k in ready:
            out.append(k)
            del remaining[k]
        for ups in remaining.values():
            ups.difference_update(ready)
    return out


# ---------------------------------------------------------------- team.yml


class Person(_Strict):
    name: str
    email: str
    slack: str | None = None
    phone: str | None = None


class Contact(Person):
    team: str


class Rotation(_Strict):
    order: tuple[str, ...]
    start: dt.datetime  # first handoff; the rotation repeats weekly from here
    handoff_meeting_minutes: int = Field(default=30, ge=0)

    @field_validator("start")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("expected a timestamp with a UTC offset, e.g. 2026-01-05T09:00:00-05:00")
        return v


class Swap(_Strict):
    week_of: dt.date
    a: str
    b: str
    requested_at: dt.datetime


class BusinessHours(_Strict):
    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(17, 0)


class Calendar(_Strict):
    timezone: str = "America/New_York"
    country: str = "US"
    subdivision: str | None = None
    major_holidays: tuple[str, ...] = ("New Year's Day", "Thanksgiving", "Christmas Day")
    business_hours: BusinessHours = BusinessHours()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as America/New_York, got {v!r}") from None
        return v


class Escalation(_Strict):
    ack_minutes: int = 30
    secondary_after_minutes: int = 120
    lead_after_minutes: int = 240
    renotify_minutes: int = 30


class TeamConfig(_Strict):
    calendar: Calendar = Calendar()
    engineers: dict[str, Person]
    team_lead: Person
    contacts: dict[str, Contact]
    rotation: Rotation
    swaps: tuple[Swap, ...] = ()
    escalation: Escalation = Escalation()

    @model_validator(mode="after")
    def _rotation_members(self) -> TeamConfig:
        for who in self.rotation.order:
            if who not in self.engineers:
                raise ValueError(
                    f"rotation.order: {who!r} is not one of engineers ({', '.join(self.engineers)})"
                )
        for i, s in enumerate(self.swaps):
            for who in (s.a, s.b):
                if who not in self.engineers:
                    raise ValueError(f"swaps.{i}: {who!r} is not one of engineers")
        for needed in ("finance", "accounts", "engineering", "frontend"):
            if needed not in self.contacts:
                raise ValueError(f"contacts: expected a contact for {needed!r}")
        return self


class WorkbookConfig(BaseModel):
    model_config = ConfigDict(frozen=True)
    pipelines: PipelinesConfig
    team: TeamConfig
    directory: Path


# ---------------------------------------------------------------- loading


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_errors(file: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            lines.append(f"{file}: {loc}: required key is missing")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{file}: {loc}: unknown key")
        else:
            got = (
                f", got {_describe(e.get('input'))}"
                if "input" in e and not isinstance(e["input"], dict)
                else ""
            )
            lines.append(
                f"{file}: {loc}: expected {msg[0].lower() + msg[1:] if msg else 'a valid value'}{got}"
            )
    return "\n".join(lines)


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}:{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level")
    return data


def load_pipelines(file: Path) -> PipelinesConfig:
    try:
        return PipelinesConfig.model_validate(_read_yaml(file))
    except ValidationError as e:
        raise ConfigError(_format_errors(file, e)) from None


def load_team(file: Path) -> TeamConfig:
    try:
        return TeamConfig.model_validate(_read_yaml(file))
    except ValidationError as e:
        raise ConfigError(_format_errors(file, e)) from None


def check_ownership(pipelines: PipelinesConfig, team: TeamConfig, file: Path) -> None:
    """The plan's ownership rules: owners are engineers; each engineer owns an investor pipeline."""
    investor_owned: set[str] = set()
    for pid, p in pipelines.pipelines.items():
        if p.owners.team:
            continue
        for role, who in (("primary", p.owners.primary), ("secondary", p.owners.secondary)):
            if who not in team.engineers:
                raise ConfigError(
                    f"{file}: pipelines.{pid}.owners.{role}: expected one of {', '.join(team.engineers)}, got {who!r}"
                )
        if p.feeds == "investors":
            investor_owned.update({p.owners.primary, p.owners.secondary or ""})
    missing = [e for e in team.engineers if e not in investor_owned]
    if missing:
        raise ConfigError(
            f"{file}: pipelines: every engineer must own (primary or secondary) an investor pipeline; "
            f"{', '.join(missing)} own none"
        )


def load(directory: Path | None = None) -> WorkbookConfig:
    """Load and cross-check both files from ``directory`` (default: ``paths.config_dir()``)."""
    directory = Path(directory) if directory else paths.config_dir()
    pipelines = load_pipelines(directory / "pipelines.yml")
    team = load_team(directory / "team.yml")
    check_ownership(pipelines, team, directory / "pipelines.yml")
    return WorkbookConfig(pipelines=pipelines, team=team, directory=directory)


@lru_cache(maxsize=8)
def _cached(directory: str) -> WorkbookConfig:
    return load(Path(directory))


def get(directory: Path | None = None) -> WorkbookConfig:
    """Loaded once per directory per process."""
    return _cached(str(Path(directory) if directory else paths.config_dir()))

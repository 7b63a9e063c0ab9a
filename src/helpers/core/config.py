"""Load and validate ``config/pipelines.yml`` and ``config/team.yml``.

Both files are validated once with pydantic; any problem raises :class:`ConfigError` naming
the file, the key and what was expected, e.g.
``config/pipelines.yml: pipelines.profit_aggregate.sla.freshness_warn_hours: expected a number, got 'soon'``.
Cross-file rules of the maintenance plan (owners exist, every engineer owns an investor
pipeline, the dependency graph has no cycle) are checked here too, and every pipeline's notebook
must exist.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from helpers.core import catalogue, paths

PIPELINE_IDS = (
    "profit_aggregate",
    "profit_unit",
    "growth_aggregate",
    "growth_daily",
    "engagement_aggregate",
    "investor_aggregate",
    # reports (family "report"): rendered through the runner like any run (docs/pipelines.md, "Reports")
    "month_end_report",
    "finance_reconciliation_report",
    "weekly_metrics_review",
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
    # Growth: "all account statuses updated by end of week" (deadline: end of the week's last business day)
    end_of_week_updates: bool = False

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
    # reports name their readers: the investors' update, the Finance meeting, the team's weekly review
    feeds: Literal["investors", "experiments", "investor report", "investor update", "finance", "team"]
    partition: Literal["day", "month"]
    owners: Owners
    depends_on: tuple[str, ...] = ()
    # pipelines whose marts it reads without waiting for them (no gating): lineage for incidents
    reads: tuple[str, ...] = ()
    schedule: str
    sla: SLA
    timeout_minutes: float = Field(default=30, gt=0)
    sources: tuple[str, ...] = ()
    critical_columns: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        # _format_errors adds "expected " before and ", got <value>" after this message
        if len(v.split()) != 5 or not croniter.is_valid(v):
            raise ValueError("a 5-field cron expression in UTC (minute hour day-of-month month day-of-week)")
        return v

    @property
    def notebook_path(self) -> Path:
        return paths.notebook_path(self.notebook)

    @property
    def lineage(self) -> tuple[str, ...]:
        """Every pipeline whose marts it reads: ``depends_on`` (gated) then ``reads`` (not gated)."""
        return tuple(dict.fromkeys((*self.depends_on, *self.reads)))


class CloseConfig(_Strict):
    report_final_business_days: int = Field(default=3, ge=1)
    heightened_from_days_before_month_end: int = Field(default=7, ge=0)
    # who must sign off before `workbook close --final` publishes; None: every engineer in the rotation
    required_signoffs: tuple[str, ...] | None = None


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


class MonitorsConfig(_Strict):
    """Thresholds of the automatic alerts (the plan's "Monitoring Setup", docs/plan.md)."""

    row_count_variance: float = Field(default=0.20, gt=0)  # |rows - baseline| / baseline above this alerts
    baseline_weeks: int = Field(default=4, ge=1)  # daily partitions: median of this many same weekdays
    baseline_months: int = Field(default=3, ge=1)  # monthly partitions: median of this many months
    min_baseline_points: int = Field(default=2, ge=1)  # fewer points: no verdict
    sla_at_risk_hours: float = Field(default=24, gt=0)  # "SLA about to be missed: 24 hours before"
    lookback_days: int = Field(default=7, ge=1)  # run failures of partitions this recent are alerted
    sample_rows: int = Field(default=5, ge=1)  # sample rows kept as evidence


class GrowthConfig(_Strict):
    """Settings of the Growth pipelines (``helpers.growth.lifecycle``, ``helpers.growth.entities``, ``helpers.growth.metrics``)."""

    grace_period_days: int = Field(default=14, ge=0)  # dunning grace: involuntary churn counts from its end
    late_update_days: float = Field(
        default=5, gt=0
    )  # a CRM change typed later than this after it took effect is late
    fuzzy_name_threshold: float = Field(
        default=95, ge=50, le=100
    )  # rapidfuzz score (0-100) on normalised names
    merges_file: str = (
        "account_merges.yml"  # reviewed entity-resolution decisions, relative to the config folder
    )
    date_tolerance_days: float = Field(
        default=3, ge=0
    )  # CRM/sales vs billing dates further apart are a mismatch


class ProfitAllocation(_Strict):
    """How unit-level Profit spreads shared costs over accounts (``helpers.profit.unit.unit_profit``)."""

    infrastructure: Literal["seats", "accounts", "revenue"] = "seats"  # seat-seconds in use
    support: Literal["seats", "accounts", "revenue"] = "accounts"  # one equal share per account in use
    support_departments: tuple[str, ...] = ("Customer Success",)  # salaries that are support cost
    support_operations: tuple[str, ...] = ("customer_support_tools",)  # ops categories that are support cost


class ProfitConfig(_Strict):
    """Settings of the Profit pipelines (``helpers.profit``: its run modules, ``reconcile`` and ``checks``)."""

    reconciliation_tolerance_usd_cents: int = Field(default=100, ge=0)  # unexplained difference allowed
    reconciliation_tolerance_share: float = Field(
        default=0.0005, ge=0
    )  # ... or this share of Finance's revenue
    ops_cutoff_business_days: int = Field(
        default=5, ge=1
    )  # a month's expenses are complete at Finance's close
    cloud_bill_due_days: int = Field(
        default=7, ge=0
    )  # a cloud bill is late after this many days past month end
    cloud_providers: tuple[
        str, ...
    ] = ()  # expected providers (aws, azure, gcp); empty: those billed recently
    cloud_history_months: int = Field(default=3, ge=0)  # "recently" for the expected providers
    late_submission_days: int = Field(
        default=30, ge=1
    )  # an expense submitted later than this crosses a month
    implausible_lag_days: int = Field(
        default=180, ge=1
    )  # incurred this long before submission: a mistyped date
    outlier_factor: float = Field(default=20, gt=1)  # an amount this many times off its category median
    outlier_lookback_months: int = Field(default=3, ge=0)  # months before the period in that median
    outlier_min_rows: int = Field(default=3, ge=1)  # fewer expenses in a category: no outlier verdict
    fx_max_gap_days: int = Field(default=4, ge=0)  # a missing daily rate takes the last one up to this old
    billing_lookback_days: int = Field(default=62, ge=31)  # how far before the previous month billing is read
    confidence: float = Field(default=0.95, gt=0, lt=1)  # of the experiment arms' intervals
    allocation: ProfitAllocation = ProfitAllocation()


class SourceConfig(_Strict):
    """How often a landing source delivers, so its freshness is judged against its own cadence."""

    cadence: Literal["daily", "monthly"] = "daily"
    # monthly sources: a period's delivery is due this many days after the period ends
    # (a cloud bill arrives days after its month; payroll on the last business day: 0)
    due_days_after_period: float = Field(default=0, ge=0)


class PipelinesConfig(_Strict):
    runner: RunnerConfig = RunnerConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    monitors: MonitorsConfig = MonitorsConfig()
    engine: EngineConfig = EngineConfig()
    close: CloseConfig = CloseConfig()
    growth: GrowthConfig = GrowthConfig()
    profit: ProfitConfig = ProfitConfig()
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
            for field, ups in (("depends_on", p.depends_on), ("reads", p.reads)):
                for up in ups:
                    if up not in self.pipelines:
                        raise ValueError(f"pipelines.{pid}.{field}: unknown pipeline {up!r}")
        order = topological_order({k: v.depends_on for k, v in self.pipelines.items()})
        if order is None:
            raise ValueError("pipelines: depends_on forms a cycle")
        if topological_order({k: v.lineage for k, v in self.pipelines.items()}) is None:
            raise ValueError("pipelines: depends_on and reads together form a cycle")
        if self.sources:
            for pid, p in self.pipelines.items():
                unknown = [s for s in p.sources if s not in self.sources]
                if unknown:
                    raise ValueError(
                        f"pipelines.{pid}.sources: {', '.join(unknown)} not declared under sources "
                        f"({', '.join(sorted(self.sources))})"
                    )
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
    cross_team_after_minutes: int = Field(default=0, ge=0)  # 0: with the first notification
    # a cause that fails again within this many minutes of its incident's resolution re-opens it
    reopen_within_minutes: int = Field(default=120, ge=0)
    # failure-catalogue id -> contacts key
    cross_team: dict[str, str] = Field(default_factory=lambda: dict(catalogue.CROSS_TEAM))


class OnCallPolicy(_Strict):
    """Swap notice and holiday compensation (the plan's "Holidays", docs/plan.md)."""

    swap_notice_days: int = Field(default=7, ge=0)
    comp_choices: tuple[str, ...] = ("comp_day", "pay_1_5x")


class RetryPolicy(_Strict):
    attempts: int = Field(default=4, ge=1)  # per delivery, the first try included
    base_seconds: float = Field(default=2.0, ge=0)  # backoff: base * factor**(attempt-1), capped
    factor: float = Field(default=2.0, ge=1)
    max_seconds: float = Field(default=60.0, ge=0)
    redeliver_ticks: int = Field(default=3, ge=0)  # later `workbook escalate` ticks retry a failed delivery


class NotifyConfig(_Strict):
    """Notification channels; Slack/SMTP/PagerDuty also need their secret in the environment."""

    channels: tuple[Literal["console", "warehouse", "slack", "email", "pagerduty"], ...] = (
        "console",
        "warehouse",
        "slack",
        "email",
        "pagerduty",
    )
    email_from: str = "data-workbook@example.com"
    timeout_seconds: float = Field(default=10.0, gt=0)
    retry: RetryPolicy = RetryPolicy()


class Company(_Strict):
    """Who the figures are about: the name the investor report carries in its header and title."""

    name: str = Field(default="Acme Analytics", min_length=1)


class TeamConfig(_Strict):
    company: Company = Company()
    calendar: Calendar = Calendar()
    engineers: dict[str, Person]
    team_lead: Person
    contacts: dict[str, Contact]
    rotation: Rotation
    swaps: tuple[Swap, ...] = ()
    escalation: Escalation = Escalation()
    oncall: OnCallPolicy = OnCallPolicy()
    notify: NotifyConfig = NotifyConfig()

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

    @model_validator(mode="after")
    def _cross_team_contacts(self) -> TeamConfig:
        for cause, contact in self.escalation.cross_team.items():
            if contact not in self.contacts:
                raise ValueError(
                    f"escalation.cross_team.{cause}: expected one of contacts ({', '.join(self.contacts)}), "
                    f"got {contact!r}"
                )
        return self


class WorkbookConfig(BaseModel):
    model_config = ConfigDict(frozen=True)
    pipelines: PipelinesConfig
    team: TeamConfig
    directory: Path

    @property
    def required_signoffs(self) -> tuple[str, ...]:
        """Who must sign off a close (``close.required_signoffs``; default: the rotation, in its order)."""
        found = self.pipelines.close.required_signoffs
        return tuple(self.team.rotation.order) if found is None else found


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
            msg = msg.removeprefix("expected ")  # a validator's message may say it already
            got = (
                f", got {_describe(e.get('input'))}"
                if "input" in e and not isinstance(e["input"], dict) and ", got " not in msg
                else ""
            )
            lines.append(
                f"{file}: {loc}: expected {msg[0].lower() + msg[1:] if msg else 'a valid value'}{got}"
            )
    return "\n".join(lines)


# libyaml's loader where PyYAML was built with it: the same documents, parsed about ten times faster
# (every kernel reads the configuration; the pure-Python parser took 0.05 s of each run).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, with libyaml's parser when PyYAML has it."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506  (a safe loader: SafeLoader or CSafeLoader)


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    try:
        data = load_yaml(text)
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


def check_notebooks(pipelines: PipelinesConfig, file: Path) -> None:
    """Every pipeline's notebook exists (relative paths resolved as :func:`paths.notebook_path` does)."""
    for pid, p in pipelines.pipelines.items():
        found = p.notebook_path
        if not found.is_file():
            where = "" if str(found) == p.notebook else f" (resolved to {found})"
            raise ConfigError(
                f"{file}: pipelines.{pid}.notebook: expected an existing notebook file, "
                f"got {p.notebook!r}{where}: no such file"
            )


def check_signoffs(pipelines: PipelinesConfig, team: TeamConfig, file: Path) -> None:
    """``close.required_signoffs`` names engineers of team.yml, each once."""
    names = pipelines.close.required_signoffs or ()
    for i, who in enumerate(names):
        if who not in team.engineers:
            raise ConfigError(
                f"{file}: close.required_signoffs.{i}: expected one of {', '.join(team.engineers)}, got {who!r}"
            )
    if len(set(names)) != len(names):
        raise ConfigError(
            f"{file}: close.required_signoffs: an engineer is listed twice ({', '.join(names)})"
        )


def load(directory: Path | None = None) -> WorkbookConfig:
    """Load and cross-check both files from ``directory`` (default: ``paths.config_dir()``)."""
    directory = Path(directory) if directory else paths.config_dir()
    pipelines = load_pipelines(directory / "pipelines.yml")
    team = load_team(directory / "team.yml")
    check_ownership(pipelines, team, directory / "pipelines.yml")
    check_signoffs(pipelines, team, directory / "pipelines.yml")
    check_notebooks(pipelines, directory / "pipelines.yml")
    return WorkbookConfig(pipelines=pipelines, team=team, directory=directory)


@lru_cache(maxsize=8)
def _cached(directory: str) -> WorkbookConfig:
    return load(Path(directory))


def get(directory: Path | None = None) -> WorkbookConfig:
    """Loaded once per directory per process."""
    return _cached(str(Path(directory) if directory else paths.config_dir()))

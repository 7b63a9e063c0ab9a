"""The fault drills: for each failure-catalogue id, the demo company with the fault, the runs, and
what "repaired" means (:data:`SPECS`; ``helpers.demo.drill`` runs and grades them).

A spec names the ``--fault`` to inject, the tiny company it is injected into (:class:`DemoShape`),
the pipeline runs before the scheduler tick, the tick and the fix times, the mart figures compared
with a clean run of the same company (:class:`Figure`) and the deliveries that arrive late when the
fault is a delivery that never came (:class:`Redelivery`).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from helpers.core.timeutil import as_utc


@dataclass(frozen=True)
class Figure:
    """A mart slice compared with the clean run: ``columns`` summed, ``key`` rows counted as kept."""

    table: str
    where: Mapping[str, Any]
    columns: tuple[str, ...]
    key: tuple[str, ...] = ()
    members: str | None = None  # a ``;``-joined column of keys merged into a row: those are kept, not lost


@dataclass(frozen=True)
class Redelivery:
    """The outside world recovers: the clean company's deliveries of ``source`` for ``days`` arrive."""

    source: str
    days: tuple[str, ...]


@dataclass(frozen=True)
class DemoShape:
    accounts: int = 40
    months: int = 3
    seed: int = 7
    end: str = "2026-10-01"
    events: bool = False
    events_per_user_day: float = 0.4


@dataclass(frozen=True)
class DrillSpec:
    """One drill: the fault, the company, what runs when, and what "repaired" means."""

    id: str
    family: str
    fault: str  # ``--fault`` text: ID[@DATE][:key=value,...]
    runs: tuple[tuple[str, str], ...]  # (pipeline, day in the partition) run before the tick
    as_of: dt.datetime  # the runs' as_of
    tick_at: dt.datetime  # the scheduler tick's as_of (monitors, diagnosis, escalation)
    fix_at: dt.datetime  # the runbook's as_of with apply_fix=True (and the clean run's)
    figures: tuple[Figure, ...]
    tolerance: float = 0.0  # relative difference allowed per summed column
    heal: tuple[Redelivery, ...] = ()
    shape: DemoShape = field(default_factory=DemoShape)
    runbook: str | None = None  # None: the alert's own (``helpers.runbooks.registry.resolve_alert``)
    baseline_runs: tuple[tuple[str, str], ...] = ()  # clean runs beyond ``runs`` (e.g. a backfilled day)
    # Upstream runs on the clean company whose warehouse the sandbox starts from (built once and
    # copied): Engagement's per-account join reads Profit's and Growth's marts of the month.
    seed_runs: tuple[tuple[str, str], ...] = ()
    # Parameters of the fix run; ``{clean_landing}`` is the clean company's landing zone (a source
    # system the runbook may re-read, e.g. the topic's retained copy for a Kafka replay).
    fix_params: tuple[tuple[str, str], ...] = ()

    @property
    def all_baseline_runs(self) -> tuple[tuple[str, str], ...]:
        return tuple(dict.fromkeys((*self.runs, *self.baseline_runs)))


def _t(text: str) -> dt.datetime:
    return as_utc(dt.datetime.fromisoformat(text))


# The demo's history ends on Thursday 1 October 2026; the tick is that day at 13:00 New York: a
# business hour outside the month-end week, with every daily delivery of 30 September and the FX
# rates of the 1st landed, so the freshness monitors are quiet on the clean company and Growth is
# routed at once. The runs come 15 minutes before the tick (no reminder is due yet).
RUN_AT = _t("2026-10-01T16:45:00+00:00")
TICK_AT = _t("2026-10-01T17:00:00+00:00")
FIX_AT = _t("2026-10-01T17:30:00+00:00")
EVENTS = DemoShape(events=True)
# The stream checks need volume: an outage is judged on hours expected to carry enough events, and
# one account's share only on days with SKEW_MIN_EVENTS events; more accounts keep the largest
# account's natural share of a clean day below the skew threshold.
BUSY_EVENTS = DemoShape(accounts=150, events=True, events_per_user_day=1.0)


def _profit_monthly(period: str) -> tuple[Figure, ...]:
    return (
        Figure(
            "profit_monthly",
            {"period": period},
            ("revenue_usd_cents", "total_cost_usd_cents", "profit_usd_cents"),
            ("period",),
        ),
    )


_PROFIT_SEP = _profit_monthly("2026-09")
_PROFIT_AUG = _profit_monthly("2026-08")
_GROWTH_SEP = (
    Figure(
        "growth_mrr_monthly",
        {"period": "2026-09"},
        (
            "starting_mrr_usd_cents",
            "ending_mrr_usd_cents",
            "customers_end",
            "new_customers",
            "churned_customers",
        ),
        ("period",),
    ),
    Figure(
        "growth_accounts_monthly",
        {"period": "2026-09"},
        ("ending_mrr_usd_cents", "mrr_change_usd_cents"),
        ("account_id",),
        "member_accounts",
    ),
)
# Duplicate accounts: the fault's acquisition is one company fewer once merged (the clean company
# never made it), so the customer counts differ by design; the money and every account must not.
_GROWTH_SEP_MONEY = (
    Figure(
        "growth_mrr_monthly",
        {"period": "2026-09"},
        ("starting_mrr_usd_cents", "ending_mrr_usd_cents"),
        ("period",),
    ),
    _GROWTH_SEP[1],
)


def _engagement(*days: str) -> tuple[Figure, ...]:
    return tuple(
        Figure(
            "engagement_metrics_daily",
            {"date": dt.date.fromisoformat(d)},
            ("dau", "daily_active_accounts", "events"),
            ("date",),
        )
        for d in days
    )


def _days(first: str, last: str) -> tuple[str, ...]:
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return tuple((a + dt.timedelta(days=k)).isoformat() for k in range((b - a).days + 1))


def _spec(id: str, family: str, fault: str, runs, figures, **kw: Any) -> DrillSpec:  # noqa: A002
    if family == "engagement" and id != "upstream_missing":
        kw.setdefault("seed_runs", UPSTREAMS)
    return DrillSpec(
        id=id,
        family=family,
        fault=fault,
        runs=tuple(runs),
        as_of=kw.pop("as_of", RUN_AT),
        tick_at=kw.pop("tick_at", TICK_AT),
        fix_at=kw.pop("fix_at", FIX_AT),
        figures=tuple(figures),
        **kw,
    )


PROFIT = (("profit_aggregate", "2026-09-30"),)
GROWTH = (("growth_aggregate", "2026-09-30"),)
ENGAGEMENT = (("engagement_aggregate", "2026-09-30"),)
# The stream checks (outage, duplicates, skew) judge the run's own received day: run the fault's day.
ENGAGEMENT_29 = (("engagement_aggregate", "2026-09-29"),)
UPSTREAMS = (
    ("profit_aggregate", "2026-09-30"),
    ("profit_unit", "2026-09-30"),
    ("growth_aggregate", "2026-09-30"),
)

SPECS: dict[str, DrillSpec] = {
    s.id: s
    for s in (
        # ---- Profit (September 2026; August for Finance, whose ledger of September is not due yet)
        _spec(
            "finance_mismatch", "profit", "finance_mismatch@2026-09-01",
            (("profit_aggregate", "2026-08-31"),), _PROFIT_AUG, tolerance=0.005,
        ),
        _spec("missing_subscription_data", "profit", "missing_subscription_data@2026-09-12", PROFIT, _PROFIT_SEP),
        # a fat-fingered amount is an outlier against its category's median: that needs a few
        # expenses of the category per month, more than the 40-account company has
        _spec(
            "expenses_wrong_month", "profit", "expenses_wrong_month@2026-09-10", PROFIT, _PROFIT_SEP,
            tolerance=0.005, shape=DemoShape(accounts=200, months=4),
        ),
        _spec("math_errors", "profit", "math_errors@2026-09-15", PROFIT, _PROFIT_SEP, tolerance=0.005),
        _spec(
            "stale_data", "profit", "stale_data@2026-09-24", PROFIT, _PROFIT_SEP,
            heal=(Redelivery("billing_invoices", _days("2026-09-25", "2026-09-30")),),
        ),
        # ---- Growth (September 2026)
        _spec("skipped_stage", "growth", "skipped_stage@2026-09-01", GROWTH, _GROWTH_SEP),
        _spec("late_account_updates", "growth", "late_account_updates@2026-09-15", GROWTH, _GROWTH_SEP),
        _spec("duplicate_accounts", "growth", "duplicate_accounts@2026-09-08", GROWTH, _GROWTH_SEP_MONEY),
        _spec("growth_revenue_mismatch", "growth", "growth_revenue_mismatch@2026-09-01", GROWTH, _GROWTH_SEP),
        # dunning episodes to misclassify: a 40-account company has too few failed renewals
        _spec(
            "churn_misclassified", "growth", "churn_misclassified@2026-08-18", GROWTH, _GROWTH_SEP,
            shape=DemoShape(accounts=200, months=4),
        ),
        # ---- Engagement (the run of the 30th: its window is 28-30 September)
        _spec(
            "late_events", "engagement", "late_events@2026-09-27:share=1.0,min_days=3,max_days=3",
            ENGAGEMENT, _engagement("2026-09-27", "2026-09-30"), shape=EVENTS,
            baseline_runs=(("engagement_aggregate", "2026-09-27"),),
        ),
        _spec(
            "kafka_outage", "engagement", "kafka_outage@2026-09-29", ENGAGEMENT_29,
            _engagement("2026-09-29"), shape=BUSY_EVENTS,
            fix_params=(("replay_from", "{clean_landing}"),),
        ),
        _spec("duplicate_events", "engagement", "duplicate_events@2026-09-29", ENGAGEMENT_29, _engagement("2026-09-29"), shape=EVENTS),
        # the automation's events are real activity (the day's figures include them once the run
        # completes; Verify checks the day against a fresh computation): the other days must not move
        _spec("data_skew_oom", "engagement", "data_skew_oom@2026-09-29", ENGAGEMENT_29, _engagement("2026-09-28"), shape=BUSY_EVENTS),
        _spec(
            "upstream_missing", "engagement", "upstream_missing@2026-09-21:days=3,delay_days=5", ENGAGEMENT,
            _engagement("2026-09-30"), shape=EVENTS,
        ),
        # v2 is quarantined until the fix declares its reviewed mapping and replays the days; the
        # fault's broken messages default to 0, so the repaired figures equal the clean company's
        _spec(
            "schema_change", "engagement", "schema_change@2026-09-29:days=2", ENGAGEMENT,
            _engagement("2026-09-29"), shape=EVENTS,
        ),
    )
}  # fmt: skip


def spec_for(drill_id: str) -> DrillSpec:
    try:
        return SPECS[drill_id]
    except KeyError:
        raise KeyError(f"no drill {drill_id!r}; expected one of: {', '.join(SPECS)}") from None


# ---------------------------------------------------------------- drills at another date and size

# Every drill of the catalogue happens in September 2026 (the month its runs close; the tick and the
# fix are on the 1st of October). ``at(spec, "2027-02")`` moves it to another month.
BASE_MONTH = "2026-09"
SHAPE_KEYS = ("accounts", "months", "events_per_user_day")  # --param keys that size the company
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_MONTH = re.compile(r"^\d{4}-\d{2}$")
_FAULT_DATE = re.compile(r"@(\d{4}-\d{2}-\d{2})")


def month_index(month: str) -> int:
    """``YYYY-MM`` (or ``YYYY-MM-DD``: its month) as a month count; ValueError naming the text."""
    text = str(month).strip()
    if _ISO_DAY.match(text):
        text = text[:7]
    if not _ISO_MONTH.match(text) or not 1 <= int(text[5:]) <= 12:
        raise ValueError(f"--date {month!r}: expected YYYY-MM (or YYYY-MM-DD)")
    return int(text[:4]) * 12 + int(text[5:]) - 1


def months_between(month: str, base: str = BASE_MONTH) -> int:
    return month_index(month) - month_index(base)


def shift_day(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole ``months``: a day ≤ 15 keeps its day of month, a later day its distance
    from the month's end (the last day stays the last day, the 29th of a 30-day month the last but one)."""
    y, m = divmod(day.year * 12 + day.month - 1 + months, 12)
    if day.day <= 15:
        return dt.date(y, m + 1, day.day)
    back = calendar.monthrange(day.year, day.month)[1] - day.day
    return dt.date(y, m + 1, calendar.monthrange(y, m + 1)[1] - back)


def shift_time(at: dt.datetime, months: int) -> dt.datetime:
    """An instant moved by whole months: its date by :func:`shift_day`, the same time of day."""
    return dt.datetime.combine(shift_day(at.date(), months), at.timetz())


def shift_month(month: str, months: int) -> str:
    y, m = divmod(month_index(month) + months, 12)
    return f"{y:04d}-{m + 1:02d}"


def _shift_value(value: Any, months: int) -> Any:
    if isinstance(value, dt.datetime):
        return shift_time(value, months)
    if isinstance(value, dt.date):
        return shift_day(value, months)
    if isinstance(value, str) and _ISO_DAY.match(value):
        return shift_day(dt.date.fromisoformat(value), months).isoformat()
    if isinstance(value, str) and _ISO_MONTH.match(value):
        return shift_month(value, months)
    return value


def _shift_runs(runs: tuple[tuple[str, str], ...], months: int) -> tuple[tuple[str, str], ...]:
    return tuple((p, _shift_value(d, months)) for p, d in runs)


def shift(spec: DrillSpec, months: int) -> DrillSpec:
    """``spec`` moved by whole ``months`` (a new spec; ``spec`` itself when ``months`` is 0): the
    fault's date, the runs (and seed and baseline runs), the as_of, tick and fix times, the demo's
    end, the days redelivered and the compared figures' periods and dates (:func:`shift_day`)."""
    if months == 0:
        return spec
    return replace(
        spec,
        fault=_FAULT_DATE.sub(lambda m: "@" + _shift_value(m.group(1), months), spec.fault),
        runs=_shift_runs(spec.runs, months),
        as_of=shift_time(spec.as_of, months),
        tick_at=shift_time(spec.tick_at, months),
        fix_at=shift_time(spec.fix_at, months),
        figures=tuple(
            replace(f, where={k: _shift_value(v, months) for k, v in f.where.items()}) for f in spec.figures
        ),
        heal=tuple(replace(r, days=tuple(_shift_value(d, months) for d in r.days)) for r in spec.heal),
        shape=replace(spec.shape, end=_shift_value(spec.shape.end, months)),
        baseline_runs=_shift_runs(spec.baseline_runs, months),
        seed_runs=_shift_runs(spec.seed_runs, months),
    )


def at(spec: DrillSpec, month: str) -> DrillSpec:
    """``spec`` happening in ``month`` (``YYYY-MM``) instead of :data:`BASE_MONTH`."""
    return shift(spec, months_between(month))


def fault_param_keys(fault_id: str) -> tuple[str, ...]:
    """The parameters the fault's injector declares (``PARAMS`` of its module, or its event class)."""
    from helpers.demo import faults_engagement, faults_growth, faults_profit

    for table in (faults_profit.PARAMS, faults_growth.PARAMS, faults_engagement.PARAMS):
        if fault_id in table:
            return tuple(table[fault_id])
    cls = faults_engagement.FAULT_CLASSES.get(fault_id)
    return tuple(cls.params_allowed) if cls is not None else ()


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` as a dict (a later key wins); ValueError naming a pair without ``=``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip() or not value.strip() or "," in value:
            raise ValueError(f"--param {pair!r}: expected key=value (one value, no comma)")
        out[key.strip()] = value.strip()
    return out


def _shape_value(key: str, raw: str) -> int | float:
    kind, lo = (float, 0.0) if key == "events_per_user_day" else (int, 1)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"--param {key}={raw!r}: expected a {kind.__name__}") from None
    if value < lo or (kind is float and value == 0):
        raise ValueError(f"--param {key}={raw!r}: expected a value above 0")
    return value


def with_params(spec: DrillSpec, params: Mapping[str, str], seed: int | None = None) -> DrillSpec:
    """``spec`` with the fault's parameters overridden or extended by ``params`` (the company's size
    for :data:`SHAPE_KEYS`) and the demo company's ``seed``; ValueError naming an unknown key."""
    known = fault_param_keys(spec.id)
    unknown = sorted(set(params) - set(known) - set(SHAPE_KEYS))
    if unknown:
        raise ValueError(
            f"--param {unknown[0]}: {spec.fault.partition(':')[0].partition('@')[0]} takes "
            f"{', '.join(known) or 'no parameters'}; the company's size: {', '.join(SHAPE_KEYS)}"
        )
    shape = {k: _shape_value(k, v) for k, v in params.items() if k in SHAPE_KEYS}
    if seed is not None:
        shape["seed"] = int(seed)
    head, _, tail = spec.fault.partition(":")
    merged = dict(p.partition("=")[::2] for p in tail.split(",") if p)
    merged.update({k: v for k, v in params.items() if k not in SHAPE_KEYS})
    fault = head + (":" + ",".join(f"{k}={v}" for k, v in merged.items()) if merged else "")
    return replace(spec, fault=fault, shape=replace(spec.shape, **shape))


def drill_month(spec: DrillSpec) -> str:
    """The month a drill happens in: the one before its tick's (the runs close it)."""
    return shift_month(spec.tick_at.strftime("%Y-%m"), -1)

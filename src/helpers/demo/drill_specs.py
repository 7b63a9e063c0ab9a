"""The fault drills: for each failure-catalogue id, the demo company with the fault, the runs, and
what "repaired" means (:data:`SPECS`; ``helpers.demo.drill`` runs and grades them).

A spec names the ``--fault`` to inject, the tiny company it is injected into (:class:`DemoShape`),
the pipeline runs before the scheduler tick, the tick and the fix times, the mart figures compared
with a clean run of the same company (:class:`Figure`) and the deliveries that arrive late when the
fault is a delivery that never came (:class:`Redelivery`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
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
        # 2 % of the v2 messages lack a required field (the fault's default): they can never be parsed,
        # so they stay quarantined and counted (not lost), and the day's figures may differ by them
        _spec(
            "schema_change", "engagement", "schema_change@2026-09-29:days=2", ENGAGEMENT,
            _engagement("2026-09-29"), shape=EVENTS, tolerance=0.03,
        ),
    )
}  # fmt: skip


def spec_for(drill_id: str) -> DrillSpec:
    try:
        return SPECS[drill_id]
    except KeyError:
        raise KeyError(f"no drill {drill_id!r}; expected one of: {', '.join(SPECS)}") from None

"""One month (:func:`build_month`) or one day (:func:`build_day`) of Growth, as the pipelines compute it.

Both start from :func:`build_history`: every Growth source as it had arrived by ``as_of``, the
companies (entity resolution with the reviewed merges), the churn classification, the subscription
events as they count and their MRR timeline, and the lifecycle per company. ``growth_aggregate``
and ``growth_daily`` show these frames, the Growth checks read them (:meth:`GrowthMonth.check_data`),
and the Growth runbooks and the tests rebuild a month with the same call, so the steps exist once.

``apply_repairs=False`` computes the figures as the sources record them: nothing merged, churn as
billing recorded it, the CRM's lifecycle unrepaired (to measure what the repairs change).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from helpers import checks
from helpers.checks import CheckResult
from helpers.core.config import GrowthConfig
from helpers.core.periods import day_bounds, month_bounds
from helpers.growth import checks as growth_checks
from helpers.growth import entities, lifecycle, runrate
from helpers.growth import metrics as growth
from helpers.storage.bulkread import release_memory

# The subscription columns the counted events carry (what the MRR timeline, the lifecycle's
# billing milestones and the checks read): not a second copy of every source column.
EVENT_COLUMNS = ["event_id", "event_type", "subscription_id", "customer_id", "status", "item_tier"]
EVENT_COLUMNS += ["item_quantity", "item_unit_amount", "currency", "canceled_at"]
EVENT_COLUMNS += ["cancellation_details_reason", "event_at"]


@dataclass(frozen=True)
class GrowthHistory:
    """Everything Growth knows as of ``as_of``, before a month or a day is picked."""

    as_of: dt.datetime
    settings: GrowthConfig
    src: lifecycle.GrowthSources
    reviewed: entities.Reviewed  # the review file's decisions
    unusable: pd.DataFrame  # subscription events MRR cannot use: left out, listed
    resolution: entities.Resolution
    customer_entity: pd.Series  # billing customer -> company (entity id)
    cancellations: pd.DataFrame  # every cancellation, classified (growth.classify_cancellations)
    events: (
        pd.DataFrame
    )  # subscription events with churn as it counts (growth.effective_events; EVENT_COLUMNS)
    timeline: pd.DataFrame  # each subscription's MRR from each event on (growth.mrr_timeline)
    life: lifecycle.Lifecycle
    entity_hist: pd.DataFrame  # the lifecycle per company (lifecycle.entity_history)


def build_history(
    as_of: dt.datetime,
    *,
    settings: GrowthConfig,
    root: Path | None = None,
    reviewed: entities.Reviewed | None = None,
    apply_repairs: bool = True,
    usage_window: tuple[dt.date, dt.date] | None = None,
) -> GrowthHistory:
    """Read the Growth sources landed (under ``root``) by ``as_of`` and compute what every month and day shares.

    ``reviewed`` defaults to the review file in the config folder (``settings.merges_file``);
    ``usage_window`` is the product usage to read (none without it: see ``lifecycle.load_sources``).
    """
    src = lifecycle.load_sources(as_of, root=root, usage_window=usage_window)
    if reviewed is None:
        reviewed = entities.load_reviewed(entities.merges_path(filename=settings.merges_file))
    resolution = entities.resolve_sources(
        src, reviewed=reviewed, threshold=settings.fuzzy_name_threshold, enabled=apply_repairs
    )
    release_memory()  # each step's garbage given back before the next (millions of rows at scale)
    cancellations = growth.classify_cancellations(src, grace_days=settings.grace_period_days)
    counted = cancellations if apply_repairs else cancellations.iloc[0:0]
    events = growth.effective_events(src.subscriptions[EVENT_COLUMNS], counted)
    release_memory()
    tolerance = pd.Timedelta(days=settings.date_tolerance_days)
    life = lifecycle.build(src, events=events, tolerance=tolerance, repair=apply_repairs)
    release_memory()
    timeline = growth.mrr_timeline(events, src.fx)
    release_memory()
    history = GrowthHistory(
        as_of, settings, src, reviewed, growth.unusable_events(src.subscriptions), resolution,
        resolution.customer_entity(src.customers), cancellations, events, timeline,
        life, lifecycle.entity_history(life.history, resolution.entity_of),
    )  # fmt: skip
    release_memory()
    return history


def _shared(history: GrowthHistory) -> dict[str, Any]:
    """The history's fields, to build a month or a day on it (no copy of the frames)."""
    return {f.name: getattr(history, f.name) for f in fields(GrowthHistory)}


# ---------------------------------------------------------------- the month (growth_aggregate)


@dataclass(frozen=True)
class GrowthMonth(GrowthHistory):
    """One month: the history as of ``as_of`` plus the month's movements, figures and marts."""

    period: str
    start: pd.Timestamp  # the month as [start, end), UTC
    end: pd.Timestamp
    movements: pd.DataFrame  # growth.account_movements of the month, per company, with ``period``
    summary: pd.DataFrame  # one row of headline figures (identities asserted)
    status: str  # final | provisional (growth.period_status; provisional when a read left data out)
    monthly: pd.DataFrame  # the growth_mrr_monthly row
    accounts: pd.DataFrame  # growth_accounts_monthly

    def cancelled_in_month(self) -> pd.DataFrame:
        """The cancellations billing recorded in the month, as classified."""
        c = self.cancellations
        return c[c["canceled_at"].between(self.start, self.end, inclusive="left")]

    def check_data(self) -> dict[str, Any]:
        """What the Growth checks read (``CheckContext.data``, see :mod:`helpers.growth.checks`)."""
        return {
            "sources": self.src,
            "lifecycle": self.life,
            "resolution": self.resolution,
            "cancellations": self.cancellations,
            "events": self.events,
            "timeline": self.timeline,
            "accounts": self.movements,
            "settings": self.settings,
        }

    def evaluate_checks(
        self, *, run_id: str | None = None, evaluated_at: dt.datetime | None = None
    ) -> dict[str, CheckResult]:
        """Every Growth check evaluated on the month (not stored), by check id."""
        context = checks.CheckContext(
            growth_checks.PIPELINE, self.period, self.as_of, run_id, self.check_data()
        )
        registered = checks.registered(growth_checks.PIPELINE)
        return {c.id: checks.evaluate(c, context, evaluated_at=evaluated_at) for c in registered}


def build_month(
    period: str,
    as_of: dt.datetime,
    *,
    settings: GrowthConfig,
    root: Path | None = None,
    reviewed: entities.Reviewed | None = None,
    apply_repairs: bool = True,
) -> GrowthMonth:
    """``period`` as ``growth_aggregate`` computes it at ``as_of``: :func:`build_history` (with the
    usage of the month and its grace tail, the churn evidence), then :func:`month_from`."""
    usage = growth.usage_window(period, as_of, settings.grace_period_days)
    history = build_history(
        as_of,
        settings=settings,
        root=root,
        reviewed=reviewed,
        apply_repairs=apply_repairs,
        usage_window=usage,
    )
    month = month_from(history, period, root=root)
    release_memory()
    return month


def month_from(history: GrowthHistory, period: str, *, root: Path | None = None) -> GrowthMonth:
    """The month ``period`` of ``history``: MRR movements per company, the summary and both marts.

    ``monthly`` carries the revenue bridge of :mod:`helpers.growth.runrate` after the summary.

    Several months of one ``as_of`` can share a history; ``root`` is the landing zone the
    month's ``status`` looks at (whether billing delivered every day).
    """
    start, end = month_bounds(period, tz="UTC")
    movements = growth.account_movements(history.timeline, start, end, history.customer_entity)
    movements = movements.assign(period=period)
    summary = growth.movement_summary(movements, period)  # raises if start + movements != end
    status = growth.period_status(period, history.as_of, root=root)
    if not history.src.landing.ok:  # a delivery or rows left out on read: the figures may move
        status = "provisional"
    crm_end = growth.crm_customers(history.entity_hist, end)
    bridge = runrate.revenue_bridge(
        history.timeline, history.src.fx, history.cancellations, history.src.invoices, start, end
    )
    monthly = growth.monthly_mart(summary.assign(**bridge), status=status, crm_customers_end=crm_end)
    crm_of_product = lifecycle.crm_of_product(history.src.crm_accounts)
    accounts = growth.accounts_mart(movements, history.resolution.entity_of, crm_of_product)
    return GrowthMonth(**_shared(history), period=period, start=start, end=end, movements=movements,
                       summary=summary, status=status, monthly=monthly, accounts=accounts)  # fmt: skip


# ---------------------------------------------------------------- the day (growth_daily)


@dataclass(frozen=True)
class GrowthDay(GrowthHistory):
    """One UTC day: the history as of ``as_of`` plus the day's rows by experiment arm."""

    day: str  # YYYY-MM-DD
    start: pd.Timestamp  # the day as [start, end), UTC
    end: pd.Timestamp
    arms: pd.DataFrame  # per (company, experiment) the arm (growth.entity_arms)
    daily: pd.DataFrame  # the growth_daily rows, with ``status``
    totals: pd.Series  # the day's totals every experiment's arms add up to (asserted)
    pending: pd.DataFrame  # billing changes of the day the CRM does not have yet
    status: str  # complete | provisional (growth.day_status)

    def changes(self) -> pd.DataFrame:
        """The companies' lifecycle rows effective on the day."""
        h = self.entity_hist
        return h[h["effective_at"].between(self.start, self.end, inclusive="left")]


def build_day(
    day: str | dt.date,
    as_of: dt.datetime,
    *,
    settings: GrowthConfig,
    root: Path | None = None,
    reviewed: entities.Reviewed | None = None,
    apply_repairs: bool = True,
) -> GrowthDay:
    """``day`` as ``growth_daily`` computes it at ``as_of``: :func:`build_history`, then :func:`day_from`."""
    history = build_history(
        as_of, settings=settings, root=root, reviewed=reviewed, apply_repairs=apply_repairs
    )
    return day_from(history, day, root=root)


def day_from(history: GrowthHistory, day: str | dt.date, *, root: Path | None = None) -> GrowthDay:
    """The day's growth by experiment arm, its totals (arms add up, asserted), what the CRM still
    lacks of it (every billing change not in the CRM yet) and its status."""
    start, end = day_bounds(day)
    arms = growth.entity_arms(history.src.assignments, history.resolution.entity_of)
    rows = growth.daily_growth(
        day, timeline=history.timeline, customer_entity=history.customer_entity,
        entity_hist=history.entity_hist, arms=arms,
    )  # fmt: skip
    totals = growth.assert_arms_add_up(rows)
    pending = growth_checks.pending_entries(
        history.life, history.cancellations, history.events, history.src.customers, start, end,
        as_of=pd.Timestamp(history.as_of), late_days=0,
        tolerance_days=history.settings.date_tolerance_days, allowance=pd.Timedelta(0),
    )  # fmt: skip
    status = growth.day_status(day, history.as_of, pending_crm_updates=len(pending), root=root)
    if not history.src.landing.ok:
        status = "provisional"
    return GrowthDay(**_shared(history), day=pd.Timestamp(str(day)).date().isoformat(), start=start, end=end,
                     arms=arms, daily=rows.assign(status=status), totals=totals, pending=pending,
                     status=status)  # fmt: skip

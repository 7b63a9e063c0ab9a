"""The six Engagement faults of the failure catalogue: five inside the events day loop, and
``upstream_missing`` in the in-memory extracts.

Product events are never all in memory, so five of these faults cannot change finished extracts
like the other injectors: each is registered in the fault registry as a *streaming* injector
(calling it on in-memory extracts does nothing and returns ``[]``; ``streaming = True``) and does
its work through :class:`ActiveEventFault` hooks while :func:`helpers.demo.generate.generate_events`
runs, which returns the ground truth.

Order within a day: ``data_skew_oom`` adds rows, ``schema_change`` converts rows to v2,
``duplicate_events`` copies rows, ``late_events`` delays rows, and ``kafka_outage`` drops rows
when a partition is written. Every fault draws from its own random stream, so the other rows
are byte-identical to the clean run of the same seed, and each ground-truth record names
exactly the rows that differ (``messageId`` for [events], ``session_id`` for
[mobile_analytics]). A fault without a date starts 14 days before ``spec.end``.

=================  ==========================================================================
fault              params (defaults)
=================  ==========================================================================
late_events        share=0.25, min_days=1, max_days=3, platform=mobile (mobile|web|all), days=1
kafka_outage       hours=6, start_hour=9 (UTC, on DATE; the window may run into the next day)
duplicate_events   share=0.05, max_copies=3, days=1
data_skew_oom      share=0.3, account=<a customer covering DATE, seeded>, days=1
schema_change      version=2, hour=0, broken=0, platform=web (web|mobile|all), days=<to end>
=================  ==========================================================================

``schema_change``'s ``broken`` is a second fault on top of the format change: the share of v2
messages sent without a required field (``event_name``, ``account`` or ``timestamp``), which no
contract version can use. It defaults to 0, so a repaired company equals the clean one; with
``broken>0`` those messages stay quarantined, counted, and their ids are in the ground truth.

``upstream_missing`` (date: END-10) is a batch injector like the Profit and Growth ones, on an
upstream business source: ``source=subscriptions, days=3, delay_days=5`` -> the deliveries of
[DATE, DATE+days) arrive delay_days after the window instead of the next morning.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd

from helpers.demo import columns as col
from helpers.demo import events as ev
from helpers.demo.columns import Batch, batch_len, concat_rows, take_rows
from helpers.demo.company import epoch_day, to_date
from helpers.demo.extracts import ARRIVAL, DAY, PARTITION, SCHEDULE, at
from helpers.demo.faults import FaultContext, Injected, fault_day, injector, iso_day, param, record
from helpers.demo.ids import hex16, uuid4_words, uuid_strings
from helpers.demo.spec import DemoSpec, FaultSpec
from helpers.storage.contracts import SOURCES

EVENT_FAULT_IDS = ("late_events", "kafka_outage", "duplicate_events", "data_skew_oom", "schema_change")
# The parameters of this module's batch injector (checked before anything is generated).
PARAMS: dict[str, tuple[str, ...]] = {"upstream_missing": ("source", "days", "delay_days")}
DEFAULT_DAYS_BEFORE_END = 14
BROKEN_REASONS = {1: "missing timestamp", 2: "missing account", 3: "missing event_name"}


class ActiveEventFault:
    """One injected engagement fault as the events day loop sees it (the hooks it overrides)."""

    fault_id = ""
    order = 0  # day hooks run in ascending order

    def on_day(self, rows: ev.DayRows) -> None:
        """Change one event day's rows (before they are routed to received partitions)."""

    def on_write(self, source: str, partition: int, batch: Batch) -> Batch:
        """Change the rows about to be written to one partition; return what is written."""
        return batch

    def records(self) -> list[Injected]:
        """The ground truth of what the fault did (once the day loop is done)."""
        return []


class StreamingInjector:
    """Registry entry of an events fault: the work happens in the events day loop."""

    streaming = True

    def __init__(self, fault_id: str) -> None:
        self.fault_id = fault_id
        self.__doc__ = f"{fault_id}: injected by helpers.demo.generate.generate_events (streaming)."

    def __call__(self, fault: FaultSpec, extracts: Any = None, *args: Any, **kwargs: Any) -> list[Injected]:
        return []


for _fid in EVENT_FAULT_IDS:
    injector(_fid)(StreamingInjector(_fid))


def _choice(fault: FaultSpec, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(fault.params.get(name, default)).lower()
    if value not in allowed:
        raise ValueError(f"--fault {fault.as_text()}: {name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _platform_mask(platform: np.ndarray, which: str) -> np.ndarray:
    if which == "mobile":
        return platform != ev.WEB
    if which == "web":
        return platform == ev.WEB
    return np.ones(len(platform), bool)


def _iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


class _Fault(ActiveEventFault):
    """Common parts: the fault's date, days, random stream and the affected message ids."""

    stream = 0
    params_allowed: tuple[str, ...] = ()

    def __init__(
        self, fault: FaultSpec, spec: DemoSpec, model: ev.EventModel | None, occurrence: int
    ) -> None:
        self.fault, self.spec, self.model = fault, spec, model
        unknown = sorted(set(fault.params) - set(self.params_allowed))
        if unknown:
            raise ValueError(
                f"--fault {fault.as_text()}: unknown parameter(s) {', '.join(unknown)}; "
                f"expected: {', '.join(self.params_allowed)}"
            )
        date = fault.date or max(spec.start, spec.end - dt.timedelta(days=DEFAULT_DAYS_BEFORE_END))
        if not spec.start <= date <= spec.end:
            raise ValueError(
                f"--fault {fault.as_text()}: date {date} is outside the generated history {spec.start}..{spec.end}"
            )
        self.date = date
        self.day0 = epoch_day(date)
        self.occurrence = occurrence
        self.hi: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []

    def rng(self, day: int) -> np.random.Generator:
        assert self.model is not None, "a validated-only fault does not generate"
        return self.model.rng(day, 1000 * self.stream + self.occurrence + 1)

    def active_on(self, day: int, days: int | None) -> bool:
        return day >= self.day0 and (days is None or day < self.day0 + days)

    def keep(self, batch: Batch) -> None:
        self.hi.append(batch["hi"])
        self.lo.append(batch["lo"])

    def ids(self) -> list[str]:
        if not self.hi:
            return []
        # distinct ids: with duplicate_events also injected, a message can be affected in several copies
        return sorted(set(uuid_strings(np.concatenate(self.hi), np.concatenate(self.lo)).to_pylist()))

    def affected_rows(self) -> int:
        return int(sum(len(h) for h in self.hi))

    def params(self) -> dict[str, Any]:
        return dict(self.fault.params)


class LateEvents(_Fault):
    """Sessions of one platform whose events (and app-session rows) are received 1-3 days late."""

    fault_id, order, stream = "late_events", 40, 1
    params_allowed = ("share", "min_days", "max_days", "platform", "days")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        f = self.fault
        self.share = param(f, "share", 0.25, float, 0.0, 1.0)
        self.min_days = param(f, "min_days", 1, int, 1, 30)
        self.max_days = param(f, "max_days", 3, int, self.min_days, 30)
        self.platform = _choice(f, "platform", "mobile", ("mobile", "web", "all"))
        self.days = param(f, "days", 1, int, 1)
        self.sessions: list[np.ndarray] = []
        self.by_delay: dict[str, int] = {}
        self.partitions: set[str] = set()
        self.max_lateness_ms = 0

    def on_day(self, rows: ev.DayRows) -> None:
        if not self.active_on(rows.day, self.days) or not rows.events:
            return
        rng = self.rng(rows.day)
        e = rows.events
        cand = np.unique(e["session"][_platform_mask(e["platform"], self.platform)])
        chosen = cand[rng.random(len(cand)) < self.share]
        delay = rng.integers(self.min_days, self.max_days + 1, len(chosen))
        shift = delay * ev.MS_DAY  # whole days: the received partition moves exactly ``delay`` days
        hit = np.isin(e["session"], chosen)
        pos = np.searchsorted(chosen, e["session"])
        idx = np.flatnonzero(hit)
        e["recv"][idx] += shift[pos[idx]]
        e["sent"][idx] += shift[pos[idx]]
        self.keep(take_rows(e, idx))
        for d, n in zip(*np.unique(delay[pos[idx]], return_counts=True), strict=True):
            self.by_delay[str(int(d))] = self.by_delay.get(str(int(d)), 0) + int(n)
        self.partitions.update(to_date(int(x)).isoformat() for x in np.unique(e["recv"][idx] // ev.MS_DAY))
        if len(idx):
            self.max_lateness_ms = max(self.max_lateness_ms, int((e["recv"][idx] - e["ts"][idx]).max()))
        m = rows.mobile
        if m:
            mhit = np.isin(m["session"], chosen)
            mpos = np.searchsorted(chosen, m["session"])
            midx = np.flatnonzero(mhit)
            m["synced"][midx] += shift[mpos[midx]]
            self.sessions.append(m["session"][midx])

    def records(self) -> list[Injected]:
        ids = self.ids()
        out = [
            Injected(
                fault=self.fault_id,
                source="events",
                date=self.date.isoformat(),
                params=self.params(),
                description=(
                    f"{len(ids)} {self.platform} events of {self.date} (event time) received "
                    f"{self.min_days}-{self.max_days} days late: receivedAt/sentAt and partition shifted, "
                    "timestamp unchanged"
                ),
                key="messageId",
                rows=ids,
                details={
                    "events": len(ids),
                    "rows": self.affected_rows(),  # more than events when duplicate copies were delayed too
                    "platform": self.platform,
                    "by_delay_days": dict(sorted(self.by_delay.items())),
                    "received_partitions": sorted(self.partitions),
                    "max_lateness_hours": round(self.max_lateness_ms / ev.MS_HOUR, 2),
                },
            )
        ]
        sessions = np.concatenate(self.sessions) if self.sessions else np.zeros(0, np.uint64)
        if self.platform != "web":
            sids = sorted(hex16(sessions).to_pylist())
            out.append(
                Injected(
                    fault=self.fault_id,
                    source="mobile_analytics",
                    date=self.date.isoformat(),
                    params=self.params(),
                    description=f"{len(sids)} app sessions of {self.date} synced as late as their events",
                    key="session_id",
                    rows=sids,
                    details={"sessions": len(sids)},
                )
            )
        return out


class KafkaOutage(_Fault):
    """No [events] received for N hours: those messages are lost from the stream."""

    fault_id, order, stream = "kafka_outage", 50, 2
    params_allowed = ("hours", "start_hour")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.hours = param(self.fault, "hours", 6, int, 1, 72)
        self.start_hour = param(self.fault, "start_hour", 9, int, 0, 23)
        self.w0 = self.day0 * ev.MS_DAY + self.start_hour * ev.MS_HOUR
        self.w1 = self.w0 + self.hours * ev.MS_HOUR
        self.by_hour: dict[str, int] = {}
        self.by_day: dict[str, int] = {}

    def on_write(self, source: str, partition: int, batch: Batch) -> Batch:
        if source != "events" or not batch:
            return batch
        lost = (batch["recv"] >= self.w0) & (batch["recv"] < self.w1)
        if not lost.any():
            return batch
        gone = take_rows(batch, lost)
        self.keep(gone)
        for h, n in zip(*np.unique(gone["recv"] // ev.MS_HOUR, return_counts=True), strict=True):
            key = _iso_ms(int(h) * ev.MS_HOUR)
            self.by_hour[key] = self.by_hour.get(key, 0) + int(n)
        for d, n in zip(*np.unique(gone["ts"] // ev.MS_DAY, return_counts=True), strict=True):
            key = to_date(int(d)).isoformat()
            self.by_day[key] = self.by_day.get(key, 0) + int(n)
        return take_rows(batch, ~lost)

    def records(self) -> list[Injected]:
        ids = self.ids()
        return [
            Injected(
                fault=self.fault_id,
                source="events",
                date=self.date.isoformat(),
                params=self.params(),
                description=(
                    f"event stream down {_iso_ms(self.w0)} to {_iso_ms(self.w1)}: no [events] received, "
                    f"{len(ids)} messages lost"
                ),
                key="messageId",
                rows=ids,
                details={
                    "window_start": _iso_ms(self.w0),
                    "window_end": _iso_ms(self.w1),
                    "hours": self.hours,
                    "lost": len(ids),
                    "lost_rows": self.affected_rows(),
                    "lost_by_received_hour": dict(sorted(self.by_hour.items())),
                    "lost_by_event_day": dict(sorted(self.by_day.items())),
                },
            )
        ]


class DuplicateEvents(_Fault):
    """Client retries: a share of messages delivered 2..max_copies times, identical but receivedAt."""

    fault_id, order, stream = "duplicate_events", 30, 3
    params_allowed = ("share", "max_copies", "days")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.share = param(self.fault, "share", 0.05, float, 0.0, 1.0)
        self.max_copies = param(self.fault, "max_copies", 3, int, 2, 10)
        self.days = param(self.fault, "days", 1, int, 1)
        self.by_copies: dict[str, int] = {}
        self.extra = 0

    def on_day(self, rows: ev.DayRows) -> None:
        if not self.active_on(rows.day, self.days) or not rows.events:
            return
        rng = self.rng(rows.day)
        e = rows.events
        picked = np.flatnonzero(rng.random(len(e["recv"])) < self.share)
        copies = rng.integers(2, self.max_copies + 1, len(picked))
        extra = copies - 1
        src = np.repeat(picked, extra)
        k = col.within(extra) + 1  # the k-th retry
        dup = take_rows(e, src)
        dup["recv"] = dup["recv"] + k * rng.integers(1_000, 120_000, len(src))
        rows.events = concat_rows([e, dup])
        self.keep(take_rows(e, picked))
        self.extra += len(src)
        for c, n in zip(*np.unique(copies, return_counts=True), strict=True):
            self.by_copies[str(int(c))] = self.by_copies.get(str(int(c)), 0) + int(n)

    def records(self) -> list[Injected]:
        ids = self.ids()
        return [
            Injected(
                fault=self.fault_id,
                source="events",
                date=self.date.isoformat(),
                params=self.params(),
                description=(
                    f"{len(ids)} messages delivered more than once ({self.extra} extra rows): same messageId "
                    "and payload, later receivedAt"
                ),
                key="messageId",
                rows=ids,
                details={
                    "messages": len(ids),
                    "extra_rows": self.extra,
                    "by_copies": dict(sorted(self.by_copies.items())),
                },
            )
        ]


class DataSkew(_Fault):
    """One account's automation floods the frontend: it holds ``share`` of the day's events."""

    fault_id, order, stream = "data_skew_oom", 10, 4
    params_allowed = ("share", "account", "days")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.share = param(self.fault, "share", 0.3, float, 0.0, 0.99)
        self.days = param(self.fault, "days", 1, int, 1)
        self.per_day: dict[str, dict[str, Any]] = {}
        if self.model is not None:
            self._pick_account(self.model)

    def _pick_account(self, m: ev.EventModel) -> None:
        wanted = self.fault.params.get("account")
        cov = m.covering(self.day0)
        if wanted is not None:
            where = np.flatnonzero(m.account_ids == str(wanted))
            if not len(where):
                raise ValueError(
                    f"--fault {self.fault.as_text()}: account={wanted!r}: no such account in the usage periods"
                )
            self.acct = int(where[0])
        else:
            if not len(cov):
                raise ValueError(
                    f"--fault {self.fault.as_text()}: no account uses the product on {self.date}"
                )
            customers = cov[m.p_state[cov] == ev.STATES.index("customer")]
            pool = customers if len(customers) else cov
            self.acct = int(m.p_acct[pool[self.rng(self.day0 - 1).integers(0, len(pool))]])
        self.account = str(m.account_ids[self.acct])
        own = cov[m.p_acct[cov] == self.acct]
        self.seats = int(m.p_seats[own[0]]) if len(own) else 3
        self.tier = int(m.p_tier[own[0]]) if len(own) else 0

    def on_day(self, rows: ev.DayRows) -> None:
        if not self.active_on(rows.day, self.days):
            return
        rng = self.rng(rows.day)
        e = rows.events
        total = batch_len(e)
        own = int((e["acct"] == self.acct).sum()) if e else 0
        x = max(0, math.ceil((self.share * total - own) / (1.0 - self.share)))
        users = min(self.seats, 3)
        seat = rng.integers(0, users, x)
        sess_keys = rng.bit_generator.random_raw(users).astype(np.uint64)
        ts = rows.day * ev.MS_DAY + np.sort(rng.integers(0, ev.MS_DAY, x))
        sent = ts + rng.integers(20, 1500, x)
        hi, lo = uuid4_words(rng, x)
        bot = ev.TRACK_EVENTS.index
        extra: Batch = {
            "acct": np.full(x, self.acct, np.int64),
            "seat": seat,
            "platform": np.full(x, ev.WEB, np.int8),
            "session": sess_keys[seat],
            "ts": ts,
            "sent": sent,
            "recv": sent + rng.integers(30, 900, x),
            "etype": np.full(x, ev.TRACK, np.int8),
            "ename": np.array([bot("Query Run"), bot("Report Viewed"), bot("Dashboard Viewed")], np.int16)[
                rng.integers(0, 3, x)
            ],
            "ref": np.full(x, -1, np.int8),
            "tier": np.full(x, self.tier, np.int64),
            "hi": hi,
            "lo": lo,
            "version": np.ones(x, np.int8),
            "broken": np.zeros(x, np.int8),
        }
        if e:
            extra = {k: extra[k].astype(e[k].dtype) for k in e}
        rows.events = concat_rows([e, extra])
        self.keep(extra)
        self.per_day[to_date(rows.day).isoformat()] = {
            "extra_events": x,
            "account_events": own + x,
            "day_events": total + x,
            "share": round((own + x) / (total + x), 4) if total + x else 0.0,
        }

    def records(self) -> list[Injected]:
        ids = self.ids()
        return [
            Injected(
                fault=self.fault_id,
                source="events",
                date=self.date.isoformat(),
                params=self.params(),
                description=(
                    f"account {self.account} sends {len(ids)} extra automated events: "
                    f"about {self.share:.0%} of each affected day's events"
                ),
                key="messageId",
                rows=ids,
                details={"account": self.account, "extra_events": len(ids), "by_day": self.per_day},
            )
        ]


class SchemaChange(_Fault):
    """From DATE the frontend sends the v2 format (``contracts.V2_FORMAT``); some records broken."""

    fault_id, order, stream = "schema_change", 20, 5
    params_allowed = ("version", "hour", "broken", "platform", "days")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        version = param(self.fault, "version", 2, int)
        if version != 2:
            raise ValueError(f"--fault {self.fault.as_text()}: version={version}: only version 2 is defined")
        self.hour = param(self.fault, "hour", 0, int, 0, 23)
        self.broken = param(self.fault, "broken", 0.0, float, 0.0, 1.0)
        self.platform = _choice(self.fault, "platform", "web", ("web", "mobile", "all"))
        self.days = param(self.fault, "days", None, int, 1)
        self.since = self.day0 * ev.MS_DAY + self.hour * ev.MS_HOUR
        self.bad_hi: list[np.ndarray] = []
        self.bad_lo: list[np.ndarray] = []
        self.bad_kind: list[np.ndarray] = []
        self.first_ms: int | None = None

    def on_day(self, rows: ev.DayRows) -> None:
        if not self.active_on(rows.day, self.days) or not rows.events:
            return
        rng = self.rng(rows.day)
        e = rows.events
        hit = np.flatnonzero(
            _platform_mask(e["platform"], self.platform) & (e["ts"] >= self.since) & (e["version"] == 1)
        )
        broken = rng.random(len(hit)) < self.broken
        kind = rng.integers(1, 4, len(hit))
        e["version"][hit] = 2
        e["broken"][hit] = np.where(broken, kind, 0)
        self.keep(take_rows(e, hit))
        bad = hit[broken]
        self.bad_hi.append(e["hi"][bad])
        self.bad_lo.append(e["lo"][bad])
        self.bad_kind.append(kind[broken])
        if len(hit) and self.first_ms is None:
            self.first_ms = int(e["ts"][hit].min())

    def records(self) -> list[Injected]:
        ids = self.ids()
        unparseable: dict[str, str] = {}
        if self.bad_hi:
            bad = uuid_strings(np.concatenate(self.bad_hi), np.concatenate(self.bad_lo)).to_pylist()
            kinds = np.concatenate(self.bad_kind)
            unparseable = {m: BROKEN_REASONS[int(k)] for m, k in sorted(zip(bad, kinds, strict=True))}
        reasons: dict[str, int] = {}
        for r in unparseable.values():
            reasons[r] = reasons.get(r, 0) + 1
        return [
            Injected(
                fault=self.fault_id,
                source="events",
                date=self.date.isoformat(),
                params=self.params(),
                description=(
                    f"from {_iso_ms(self.since)} {self.platform} clients send schema_version 2 "
                    f"(renamed/nested fields, epoch-ms timestamps): {len(ids)} messages, "
                    f"{len(unparseable)} of them missing a required field"
                ),
                key="messageId",
                rows=ids,
                details={
                    "v2": len(ids),
                    "unparseable": len(unparseable),
                    "unparseable_by_reason": dict(sorted(reasons.items())),
                    "unparseable_ids": unparseable,
                    "since": _iso_ms(self.since),
                    "first_v2_event_at": _iso_ms(self.first_ms) if self.first_ms is not None else None,
                    "platform": self.platform,
                },
            )
        ]


FAULT_CLASSES: dict[str, type[_Fault]] = {
    c.fault_id: c for c in (LateEvents, KafkaOutage, DuplicateEvents, DataSkew, SchemaChange)
}


def validate(fault: FaultSpec, spec: DemoSpec) -> None:
    """Check an engagement fault's date and parameters before anything is generated (ValueError).

    Whether an ``account`` given to ``data_skew_oom`` exists is only known with the usage periods
    (checked when generation starts).
    """
    FAULT_CLASSES[fault.id](fault, spec, None, 0)


def activate(spec: DemoSpec, model: ev.EventModel) -> list[ActiveEventFault]:
    """The engagement faults of ``spec`` (validated), ready for the day loop."""
    out: list[ActiveEventFault] = []
    seen: dict[str, int] = {}
    for fault in spec.faults:
        cls = FAULT_CLASSES.get(fault.id)
        if cls is None:
            continue
        seen[fault.id] = seen.get(fault.id, 0) + 1
        out.append(cls(fault, spec, model, seen[fault.id] - 1))
    return out


# ------------------------------------------------------------------ upstream_missing (batch)


@injector("upstream_missing")
def upstream_missing(fault: FaultSpec, ex: dict[str, pd.DataFrame], ctx: FaultContext) -> list[Injected]:
    """An upstream source's deliveries for ``days`` days from DATE arrive only ``delay_days`` after the window."""
    w = ctx.world
    day = fault_day(fault, w, w.end - 9)
    src = str(fault.params.get("source", "subscriptions"))
    days = param(fault, "days", 3, int, 1, 366)
    delay = param(fault, "delay_days", 5, int, 1, 366)
    if src not in ex:
        return []

    def held(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
        """Deliveries of the window arrive after it (same time of day); returns the moved arrivals."""
        part = frame.loc[mask, PARTITION].to_numpy()
        before = frame.loc[mask, ARRIVAL].to_numpy()
        late = at(day + days + delay) + (before - at(part)) % DAY
        frame.loc[mask, ARRIVAL] = np.maximum(late, before)
        return pd.DataFrame({"p": part, "before": before, "after": frame.loc[mask, ARRIVAL].to_numpy()})

    f = ex[src].copy()
    hit = ((f[PARTITION] >= day) & (f[PARTITION] < day + days)).to_numpy()
    moved = [held(f, hit)]
    ex[src] = f
    if SCHEDULE in ex:
        sched = ex[SCHEDULE].copy()
        mask = (
            (sched["source"] == src) & (sched[PARTITION] >= day) & (sched[PARTITION] < day + days)
        ).to_numpy()
        moved.append(held(sched, mask))
        ex[SCHEDULE] = sched
    arrivals = pd.concat(moved, ignore_index=True).drop_duplicates("p")
    if arrivals.empty:
        return []
    return [
        record(
            fault,
            src,
            day,
            f"{src} deliveries for {days} day(s) from {iso_day(day)} held back upstream, backfilled {delay} day(s) after",
            SOURCES[src].key,
            f.loc[hit, SOURCES[src].key],
            partitions=[iso_day(p) for p in sorted(arrivals["p"])],
            arrived_at={
                iso_day(p): {
                    "expected": pd.Timestamp(int(b), unit="s", tz="UTC").isoformat(),
                    "actual": pd.Timestamp(int(a), unit="s", tz="UTC").isoformat(),
                }
                for p, b, a in arrivals.sort_values("p").itertuples(index=False)
            },
        )
    ]

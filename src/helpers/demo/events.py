"""Product events of the demo company: the model behind four landing sources, one day at a time.

:class:`EventModel` gives a day's rows (:meth:`EventModel.day`) and renders them as the landed
tables of the sources' contracts (``helpers.storage.contracts.SCHEMAS``);
``helpers.demo.generate.generate_events`` runs the day loop that writes them, with the engagement
faults (``faults_engagement``) hooked in.

Who uses the product, and when, comes from the business simulation's usage periods (one row per
contiguous period an account uses the product: ``account_id``, ``start``, ``end`` inclusive,
``seats``, ``tier``, ``state`` trial/customer/grace). For every UTC day in
``[spec.start, spec.end]`` the accounts whose periods cover the day get active users, their
sessions and events, which land in four sources:

``events``
    Frontend events as the Kafka extract lands them, one row per Segment message (track, page,
    identify) from the web app (analytics.js) and the iOS/Android apps: ``messageId``, ``type``,
    ``event``, ``name``, ``userId``, ``anonymousId``, ``timestamp`` (event time, UTC), ``sentAt``,
    ``receivedAt``, ``context``, ``properties`` and ``traits`` (JSON text with sorted keys, the
    Kafka extract's encoding; ``context`` has library, app, device.type web/ios/android, os,
    ``groupId`` = account id and timezone, the IP being dropped at extraction; an email is only
    ever landed as ``traits.email_sha256``, see :func:`pseudonymise_email`),
    ``schema_version`` and ``_raw_json`` (null for a message in the known format; a message in
    an unknown format is landed unparsed: only ``receivedAt``, ``schema_version`` and
    ``_raw_json`` are set, see :data:`helpers.storage.contracts.V2_FORMAT`).

    **Partitioned by the received date** (``dt`` = ``receivedAt``'s UTC date); each day's delivery
    arrives shortly after that day ends. Consumers bucket by event time (``timestamp``), so late
    events (offline mobile devices syncing, retries, a ``late_events`` fault) show up in a *later*
    received partition than their event day. Clean data is always received within 48 hours
    (at most ``CLEAN_MAX_DELAY_HOURS`` after the session ends).

``web_analytics``
    One row per web page view (a GA-style hit export): ``hit_id``, ``session_id``, ``user_id``,
    ``account_id``, ``page`` (path), ``page_title``, ``referrer``, ``duration_s`` (time on page),
    ``timestamp``. ``dt`` = hit date.

``mobile_analytics``
    One row per iOS/Android app session from the app SDK: ``session_id``, ``user_id``,
    ``account_id``, ``platform``, ``os_version``, ``app_version``, ``device_model``,
    ``started_at``, ``ended_at``, ``duration_s``, ``screens``, ``events``, ``synced_at``. ``dt`` =
    ``synced_at``'s date: a small share of devices are offline and sync hours late.

``api_logs``
    Backend API request logs: ``request_id``, ``account_id``, ``api_key_id`` (a keyed hash of the
    key; raw keys never land), ``method``, ``endpoint``, ``status_code``, ``latency_ms``,
    ``timestamp``. ``dt`` = request date.

The session id in ``events.properties.session_id`` is the ``session_id`` of the web or mobile
session source, so the sources can be joined. User ids are ``<account_id>-u<seat:04d>``.

Determinism: every random draw comes from ``numpy.random.default_rng`` seeded with
``(spec.seed, tag, day ordinal, stream)``; the clean rows of any day depend only on the spec,
the usage periods and the day (:func:`generate_day` regenerates one day alone); faults draw from
their own streams, so a faulty run differs from the clean run of the same seed exactly in the
rows its ground truth names. Nothing reads the wall clock; every file is sorted.

Activity model: an account's daily active users are 35-55% of its seats on weekdays and 10-20%
at weekends (a per-account propensity; trials x1.3, accounts in a payment grace period x0.7), half
of them the account's regular users and half a rotating set; each has one to a few sessions, web
or mobile (a fifth of users are mobile-first), starting at office hours in the account's time zone.
``DemoSpec.events_per_user_day`` (the density knob) is the mean number of ``events`` rows per
active user-day (enterprise x1.6, starter x0.7, trial x1.25); at or above 1 every active user
sends ``1 + Poisson(knob - 1)`` events. Below 1 it thins *users*, not days: only the account's
first ``max(1, round(seats * knob))`` seats are tracked (as if the others blocked analytics) and
each active tracked user sends one event, so stickiness and weekly patterns keep their shape
while volumes scale with the knob. The other sources scale with it too: one ``web_analytics``
row per web page view, one ``mobile_analytics`` row per app session, and ``API_PER_SEAT_DAY``
requests per seat-day times the knob. Below :data:`ACCOUNT_THINNING_KNOB` it thins *accounts*
too: a share ``knob / ACCOUNT_THINNING_KNOB`` of them (picked by a hash of the account, the same
every day) is tracked as at that knob, the others send no events (their API requests still come).

Memory is bounded by a day's rows (plus the few late rows carried to a later partition): about
0.4 events per active user-day keeps the default demo at ~2M events (~5M rows across the four
sources); 1M accounts x 13 months give ~100M events at a knob of 0.01 (one tracked seat per
account), ~10M per 0.001 below it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers.demo import columns as col
from helpers.demo.columns import Batch, batch_len, take_rows
from helpers.demo.company import epoch_day
from helpers.demo.ids import GOLDEN, hex16, mix64, unit_floats, uuid4_words, uuid_strings
from helpers.demo.names import pseudonymise_email, user_email
from helpers.demo.spec import DemoSpec
from helpers.storage.contracts import (
    API_SCHEMA,
    EVENTS_SCHEMA,
    MOBILE_SCHEMA,
    SCHEMA_VERSION,
    SCHEMAS,
    WEB_SCHEMA,
)

SOURCES = tuple(SCHEMAS)  # the four event sources
CLEAN_MAX_DELAY_HOURS = 20  # an offline device syncs at most this long after its session ends
MS_HOUR = 3_600_000
MS_DAY = 24 * MS_HOUR
_TAG = 0xE7E175  # separates the events streams from other generators seeded with the same seed

WEB, IOS, ANDROID = 0, 1, 2
DEVICE_TYPES = ("web", "ios", "android")  # context.device.type: web -> platform web, ios/android -> mobile
_LIBRARIES = ("analytics.js", "analytics-ios", "analytics-android")
_LIBRARY_VERSIONS = ("4.15.3", "4.1.8", "4.11.0")
TRACK, PAGE, IDENTIFY = 0, 1, 2
EVENT_TYPES = ("track", "page", "identify")

TRACK_EVENTS = (
    "Report Viewed",
    "Dashboard Viewed",
    "Query Run",
    "Filter Applied",
    "Search Performed",
    "Chart Created",
    "Report Exported",
    "Dashboard Created",
    "Comment Added",
    "Alert Created",
    "User Invited",
    "Integration Connected",
    "Application Opened",  # only as the first event of a mobile session
)
_TRACK_W = np.array([22, 18, 16, 12, 9, 6, 5, 4, 4, 2, 1, 1, 0], dtype=float)
APP_OPENED = TRACK_EVENTS.index("Application Opened")
PAGES = (
    ("Home", "/"),
    ("Dashboards", "/dashboards"),
    ("Dashboard", "/dashboards/:id"),
    ("Reports", "/reports"),
    ("Report", "/reports/:id"),
    ("Explore", "/explore"),
    ("Alerts", "/alerts"),
    ("Integrations", "/settings/integrations"),
    ("Team", "/settings/team"),
    ("Billing", "/settings/billing"),
    ("Docs", "/docs"),
)
_PAGE_W = np.array([14, 12, 18, 12, 18, 10, 4, 3, 3, 2, 4], dtype=float)
REFERRERS = ("(direct)", "google.com", "mail.google.com", "outlook.office.com", "slack.com", "linkedin.com")
_REF_W = np.array([45, 20, 12, 10, 9, 4], dtype=float)
_OS = (
    ("Mac OS X", "14.6"),
    ("Windows", "10"),
    ("Windows", "11"),
    ("Linux", ""),
    ("Chrome OS", "126"),
    ("iOS", "17.6"),
    ("iOS", "18.1"),
    ("Android", "13"),
    ("Android", "14"),
)
_DEVICE_MODELS = ("iPhone15,2", "iPhone16,1", "Pixel 8", "SM-S911B")
_ROLES = ("admin", "member", "member", "member", "viewer")
_APP_EPOCH = epoch_day(dt.date(2024, 1, 1))  # app minor versions count from here, one every 3 weeks

# Accounts' time zones (standard offsets) and a local-time activity profile.
_TZ = (
    ("America/Los_Angeles", -8, 12),
    ("America/Chicago", -6, 12),
    ("America/New_York", -5, 22),
    ("America/Sao_Paulo", -3, 4),
    ("Europe/London", 0, 12),
    ("Europe/Berlin", 1, 12),
    ("Europe/Helsinki", 2, 4),
    ("Asia/Kolkata", 5, 4),
    ("Asia/Singapore", 8, 6),
    ("Asia/Tokyo", 9, 6),
    ("Australia/Sydney", 10, 6),
)
_TZ_NAMES = pa.array([t[0] for t in _TZ], pa.string())
_TZ_OFFSET = np.array([t[1] for t in _TZ], dtype=np.int64)
_TZ_CUM = np.cumsum([t[2] for t in _TZ]) / sum(t[2] for t in _TZ)
_HOUR_PROFILE = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 5, 8, 9, 9, 7, 8, 9, 8, 7, 5, 3, 2.5, 2, 2, 1.6, 1.2], dtype=float
)
_HOUR_PROFILE /= _HOUR_PROFILE.sum()

# Usage-period states and tiers: multipliers of daily-active share, events per active user, API calls.
STATES = ("trial", "customer", "grace")
_STATE_DAU = np.array([1.3, 1.0, 0.7])
_STATE_EVENTS = np.array([1.25, 1.0, 0.8])
_STATE_API = np.array([0.3, 1.0, 0.8])
API_PER_SEAT_DAY = 0.08  # API requests per seat-day at events_per_user_day = 1 (weekdays, mid tier)
ACCOUNT_THINNING_KNOB = 0.01  # below this density a share of the accounts sends events, see above

ENDPOINTS = (
    ("GET", "/v1/reports", 60),
    ("GET", "/v1/reports/{id}", 45),
    ("POST", "/v1/queries", 320),
    ("GET", "/v1/queries/{id}/results", 140),
    ("GET", "/v1/dashboards", 55),
    ("GET", "/v1/dashboards/{id}", 70),
    ("POST", "/v1/events", 25),
    ("GET", "/v1/users", 40),
    ("POST", "/v1/exports", 800),
    ("GET", "/v1/health", 5),
)
_ENDPOINT_W = np.array([14, 16, 14, 14, 8, 10, 12, 4, 2, 6], dtype=float)
_STATUS = np.array([200, 201, 204, 400, 401, 403, 404, 409, 429, 500, 503], dtype=np.int16)
_STATUS_W = np.array([9000, 350, 120, 120, 60, 30, 150, 20, 80, 50, 20], dtype=float)


# ---------------------------------------------------------------------------------------------
# vectorised helpers

_U64 = np.uint64


# ---------------------------------------------------------------------------------------------
# the model: accounts, periods and one day's rows


@dataclass
class DayRows:
    """One event day's rows before they are routed to received partitions (numeric columns).

    ``events``: acct, seat, platform, session, ts, sent, recv (epoch ms), etype, ename, ref, tier,
    hi, lo (the messageId), version (1 or 2), broken (0, or the v2 field a broken record lacks).
    ``web``: one row per web page view. ``mobile``: one row per app session. ``api``: requests.
    """

    day: int  # epoch day
    events: Batch
    web: Batch
    mobile: Batch
    api: Batch


class EventModel:
    """Accounts and usage periods prepared for vectorised day-by-day generation."""

    def __init__(self, periods: pd.DataFrame, spec: DemoSpec) -> None:
        need = ["account_id", "start", "end", "seats", "tier", "state"]
        missing = [c for c in need if c not in periods.columns]
        if missing:
            raise ValueError(f"usage periods: missing column(s) {missing}; expected {need}")
        self.spec = spec
        self.knob = float(spec.events_per_user_day)
        if not self.knob > 0:
            raise ValueError(
                f"events_per_user_day: expected a positive number, got {spec.events_per_user_day!r}"
            )
        ids = periods["account_id"].astype(str).to_numpy()
        uniq, inv = np.unique(ids, return_inverse=True)
        self.account_ids = uniq
        self.account_arrow = pa.array(uniq.tolist(), pa.string())
        self.account_json = pa.array([json.dumps(a)[1:-1] for a in uniq.tolist()], pa.string())
        self.key = np.array(
            [int.from_bytes(hashlib.sha256(f"{spec.seed}:{a}".encode()).digest()[:8], "big") for a in uniq],
            dtype=_U64,
        )
        self.tz = np.searchsorted(_TZ_CUM, unit_floats(mix64(self.key ^ _U64(1))), side="right").clip(
            0, len(_TZ) - 1
        )
        self.dau_weekday = 0.35 + 0.20 * unit_floats(mix64(self.key ^ _U64(2)))
        self.dau_weekend = 0.10 + 0.10 * unit_floats(mix64(self.key ^ _U64(3)))
        self.n_keys = (1 + self.key % _U64(3)).astype(np.int64)
        self.track_u = unit_floats(mix64(self.key ^ _U64(4)))
        share = min(1.0, self.knob / ACCOUNT_THINNING_KNOB)
        self.tracked_account = unit_floats(mix64(self.key ^ _U64(5))) < share

        start = pd.to_datetime(periods["start"]).to_numpy().astype("datetime64[D]").astype(np.int64)
        end = pd.to_datetime(periods["end"]).to_numpy().astype("datetime64[D]").astype(np.int64)
        bad = np.flatnonzero(end < start)
        if len(bad):
            raise ValueError(f"usage periods: row {int(bad[0])}: end before start")
        state = periods["state"].astype(str).str.lower().to_numpy()
        unknown = sorted(set(state) - set(STATES))
        if unknown:
            raise ValueError(
                f"usage periods: column state: unknown value(s) {unknown}; expected {list(STATES)}"
            )
        tiers, tier_code = np.unique(periods["tier"].astype(str).to_numpy(), return_inverse=True)
        self.tiers = pa.array([json.dumps(t)[1:-1] for t in tiers.tolist()], pa.string())
        self.tier_events = np.array([_tier_multipliers(t)[0] for t in tiers], dtype=float)
        self.tier_api = np.array([_tier_multipliers(t)[1] for t in tiers], dtype=float)
        order = np.lexsort((start, inv))
        self.p_acct = inv[order].astype(np.int64)
        self.p_start, self.p_end = start[order], end[order]
        self.p_seats = np.maximum(periods["seats"].to_numpy().astype(np.int64)[order], 1)
        self.p_tier = tier_code[order].astype(np.int64)
        self.p_state = np.array([STATES.index(s) for s in state], dtype=np.int64)[order]

    # -- randomness -----------------------------------------------------------------------------
    def rng(self, day: int, stream: int) -> np.random.Generator:
        """The generator of one day and stream (0: clean rows; faults use their own streams)."""
        return np.random.default_rng(np.random.SeedSequence([self.spec.seed, _TAG, day + 719163, stream]))

    def covering(self, day: int) -> np.ndarray:
        """Indices of the periods covering ``day`` (one per account, by account)."""
        idx = np.flatnonzero((self.p_start <= day) & (self.p_end >= day))
        if len(idx) > 1:
            keep = np.r_[True, self.p_acct[idx][1:] != self.p_acct[idx][:-1]]
            idx = idx[keep]
        return idx

    def user_hash(self, acct: np.ndarray, seat: np.ndarray) -> np.ndarray:
        return mix64(self.key[acct] ^ (seat.astype(_U64) * GOLDEN))

    # -- one day -------------------------------------------------------------------------------
    def day(self, day: int) -> DayRows:
        """The clean rows of one UTC day (``day`` = days since 1970-01-01)."""
        rng = self.rng(day, 0)
        cov = self.covering(day)
        acct, seats = self.p_acct[cov], self.p_seats[cov]
        state, tier = self.p_state[cov], self.p_tier[cov]
        weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        p_dau = np.minimum(
            (self.dau_weekend if weekend else self.dau_weekday)[acct] * _STATE_DAU[state], 0.95
        )
        # events per active user-day; below 1 the density knob thins *users* instead: only the
        # account's first ``tracked`` seats send events (at least one), the same seats every day
        knob = max(self.knob, ACCOUNT_THINNING_KNOB)  # below it, untracked accounts instead
        rate = knob * self.tier_events[tier] * _STATE_EVENTS[state]
        thin = rate < 1.0
        tracked = np.where(thin, np.floor(seats * rate + self.track_u[acct]), seats)
        tracked = np.clip(tracked, 1, seats).astype(np.int64)
        if self.knob < ACCOUNT_THINNING_KNOB:
            tracked = np.where(self.tracked_account[acct], tracked, 0)
        users = rng.binomial(tracked, p_dau)

        # which seats: half are the account's core users (low seats), the rest a rotating window
        ua = np.repeat(np.arange(len(cov)), users)
        j = col.within(users)
        core = (users // 2)[ua]
        free = np.maximum(tracked - users // 2, 1)
        rot = rng.integers(0, free)
        seat = np.where(j < core, j, core + (rot[ua] + j - core) % free[ua])
        u_acct = acct[ua]
        uh = self.user_hash(u_acct, seat)
        mobile_first = (uh % _U64(100)) < _U64(20)
        android = ((uh >> _U64(7)) & _U64(1)).astype(bool)
        n_u = np.where(thin[ua], 1, 1 + rng.poisson(np.maximum(rate[ua] - 1.0, 0.0)))
        s_u = np.minimum(n_u, 1 + rng.poisson(1.0, len(n_u)))

        # sessions
        s_user = np.repeat(np.arange(len(n_u)), s_u)
        ns = len(s_user)
        mobile = rng.random(ns) < np.where(mobile_first[s_user], 0.75, 0.05)
        platform = np.where(mobile, np.where(android[s_user], ANDROID, IOS), WEB).astype(np.int8)
        local_hour = rng.choice(24, size=ns, p=_HOUR_PROFILE)
        utc_hour = (local_hour - _TZ_OFFSET[self.tz[u_acct[s_user]]]) % 24
        start = utc_hour * MS_HOUR + rng.integers(0, MS_HOUR, ns)
        s_key = rng.bit_generator.random_raw(ns).astype(_U64) if ns else np.zeros(0, _U64)
        offline = mobile & (rng.random(ns) < 0.04)
        delay = np.minimum(rng.lognormal(np.log(3 * MS_HOUR), 1.0, ns), CLEAN_MAX_DELAY_HOURS * MS_HOUR)

        # events: user u's j-th event belongs to session floor(j * s / n)
        e_user = np.repeat(np.arange(len(n_u)), n_u)
        ne = len(e_user)
        j = col.within(n_u)
        e_sess = (np.cumsum(s_u) - s_u)[e_user] + j * s_u[e_user] // n_u[e_user]
        first = np.r_[True, e_sess[1:] != e_sess[:-1]] if ne else np.zeros(0, bool)
        first_pos = np.flatnonzero(first)
        gap = rng.exponential(45_000.0, ne).astype(np.int64)
        gap[first] = 0
        cs = np.cumsum(gap)
        offset = cs - cs[first_pos][e_sess] if ne else cs
        last_pos = np.r_[first_pos[1:] - 1, ne - 1] if ne else first_pos
        dur = np.minimum(offset[last_pos], MS_DAY - 1)
        start = np.minimum(start, MS_DAY - 1 - dur)
        ts = day * MS_DAY + start[e_sess] + np.minimum(offset, MS_DAY - 1)
        e_plat = platform[e_sess]
        web = e_plat == WEB
        u = rng.random(ne)
        etype = np.where(u < 0.03, IDENTIFY, np.where(web & (u < 0.35), PAGE, TRACK))
        etype = np.where(first, np.where(web, PAGE, TRACK), etype).astype(np.int8)
        track = rng.choice(len(TRACK_EVENTS), size=ne, p=_TRACK_W / _TRACK_W.sum())
        page = rng.choice(len(PAGES), size=ne, p=_PAGE_W / _PAGE_W.sum())
        ename = np.where(etype == PAGE, page, np.where(etype == TRACK, track, -1))
        ename = np.where(first & ~web, APP_OPENED, ename).astype(np.int16)
        ref = np.where(first & web, rng.choice(len(REFERRERS), size=ne, p=_REF_W / _REF_W.sum()), -1)
        hi, lo = uuid4_words(rng, ne)
        sess_end = day * MS_DAY + start + dur + rng.exponential(30_000.0, ns).astype(np.int64)
        sent = np.where(
            web,
            ts + rng.integers(20, 1500, ne),
            np.where(
                offline[e_sess],
                sess_end[e_sess] + delay.astype(np.int64)[e_sess],
                ts + rng.integers(0, 30_000, ne),
            ),
        )
        recv = sent + rng.integers(30, 900, ne)
        events: Batch = {
            "acct": u_acct[e_user],
            "seat": seat[e_user],
            "platform": e_plat,
            "session": s_key[e_sess],
            "ts": ts,
            "sent": sent,
            "recv": recv,
            "etype": etype,
            "ename": ename,
            "ref": ref.astype(np.int8),
            "tier": tier[ua][e_user],
            "hi": hi,
            "lo": lo,
            "version": np.ones(ne, np.int8),
            "broken": np.zeros(ne, np.int8),
        }

        # web analytics: one hit per web page view; time on page = gap to the next event
        next_same = np.r_[e_sess[1:] == e_sess[:-1], False] if ne else first
        tail = rng.exponential(60_000.0, ne)
        to_next = np.r_[ts[1:], 0] - ts if ne else ts
        on_page = np.where(next_same, to_next, tail)
        hit = np.flatnonzero(web & (etype == PAGE))
        hhi, hlo = uuid4_words(rng, len(hit))
        web_rows: Batch = {
            "acct": events["acct"][hit],
            "seat": events["seat"][hit],
            "session": events["session"][hit],
            "ts": ts[hit],
            "page": ename[hit],
            "ref": ref[hit].astype(np.int8),
            "duration_s": np.round(on_page[hit] / 1000).astype(np.int32),
            "hi": hhi,
            "lo": hlo,
        }

        # mobile analytics: one row per app session, synced when it ends (or with its offline events)
        msess = np.flatnonzero(platform != WEB)
        if ne:
            synced_all = np.maximum.reduceat(recv, first_pos)
            count_all = np.diff(np.r_[first_pos, ne])
            screens_all = np.add.reduceat((etype != IDENTIFY).astype(np.int64), first_pos)
        else:
            synced_all = count_all = screens_all = np.zeros(0, np.int64)
        sync_lag = rng.integers(0, 2000, ns)
        mobile_rows: Batch = {
            "acct": u_acct[s_user][msess],
            "seat": seat[s_user][msess],
            "session": s_key[msess],
            "platform": platform[msess],
            "start": day * MS_DAY + start[msess],
            "end": sess_end[msess],
            "synced": np.maximum(synced_all[msess], sess_end[msess]) + sync_lag[msess],
            "events": count_all[msess].astype(np.int32),
            "screens": screens_all[msess].astype(np.int32),
        }

        # API requests: per account, a mix of round-the-clock integrations and office-hours use
        lam = (
            self.knob
            * API_PER_SEAT_DAY
            * seats
            * self.tier_api[tier]
            * _STATE_API[state]
            * (0.35 if weekend else 1)
        )
        r = rng.poisson(lam)
        a_acct = np.repeat(acct, r)
        nr = len(a_acct)
        flat = rng.random(nr) < 0.5
        lh = rng.choice(24, size=nr, p=_HOUR_PROFILE)
        office = ((lh - _TZ_OFFSET[self.tz[a_acct]]) % 24) * MS_HOUR + rng.integers(0, MS_HOUR, nr)
        a_ts = day * MS_DAY + np.where(flat, rng.integers(0, MS_DAY, nr), office)
        endpoint = rng.choice(len(ENDPOINTS), size=nr, p=_ENDPOINT_W / _ENDPOINT_W.sum())
        status = _STATUS[rng.choice(len(_STATUS), size=nr, p=_STATUS_W / _STATUS_W.sum())]
        median = np.array([e[2] for e in ENDPOINTS], dtype=float)[endpoint]
        latency = rng.lognormal(np.log(median), 0.6) * np.where(status >= 500, 4.0, 1.0)
        key_idx = rng.integers(0, self.n_keys[a_acct]) if nr else np.zeros(0, np.int64)
        ahi, alo = uuid4_words(rng, nr)
        api_rows: Batch = {
            "acct": a_acct,
            "key": key_idx,
            "endpoint": endpoint.astype(np.int16),
            "status": status,
            "latency": np.maximum(np.round(latency), 1).astype(np.int32),
            "ts": a_ts,
            "hi": ahi,
            "lo": alo,
        }
        return DayRows(day, events, web_rows, mobile_rows, api_rows)

    # -- materialising Arrow tables ------------------------------------------------------------
    def user_ids(self, acct: np.ndarray, seat: np.ndarray) -> pa.Array:
        return col.join(col.take(self.account_arrow, acct), "-u", pc.utf8_lpad(col.int_strings(seat), 4, "0"))

    def message_ids(self, batch: Batch) -> pa.Array:
        return uuid_strings(batch["hi"], batch["lo"])

    def _os_index(self, uh: np.ndarray, platform: np.ndarray) -> np.ndarray:
        web = np.array([0, 0, 0, 1, 1, 2, 3, 4])[(uh >> _U64(3)) % _U64(8)]
        mob = ((uh >> _U64(13)) % _U64(2)).astype(np.int64)
        return np.where(platform == WEB, web, np.where(platform == IOS, 5 + mob, 7 + mob))

    def _app_version(self, uh: np.ndarray, ts: np.ndarray) -> pa.Array:
        lag = ((uh >> _U64(20)) % _U64(3)).astype(np.int64)
        minor = np.maximum((ts // MS_DAY - _APP_EPOCH) // 21 - lag, 0)
        return col.join("3.", col.int_strings(minor), ".", col.int_strings((uh >> _U64(30)) % _U64(3)))

    def events_table(self, batch: Batch) -> pa.Table:
        """The landed [events] rows of a batch, sorted by receivedAt then messageId."""
        n = batch_len(batch)
        if n == 0:
            return EVENTS_SCHEMA.empty_table()
        order = np.lexsort((batch["lo"], batch["hi"], batch["recv"]))
        batch = take_rows(batch, order)
        v1 = batch["version"] == 1
        if v1.all():
            return self._events_v1(batch)
        if not v1.any():
            return self._events_v2(batch)
        parts = [self._events_v1(take_rows(batch, v1)), self._events_v2(take_rows(batch, ~v1))]
        where = np.r_[np.flatnonzero(v1), np.flatnonzero(~v1)]
        inverse = np.empty(n, np.int64)
        inverse[where] = np.arange(n)
        return pa.concat_tables(parts).take(pa.array(inverse))

    def _common(self, b: Batch) -> dict[str, pa.Array]:
        n = batch_len(b)
        etype, ename, plat = b["etype"], b["ename"], b["platform"]
        uh = self.user_hash(b["acct"], b["seat"])
        out: dict[str, pa.Array] = {}
        out["messageId"] = uuid_strings(b["hi"], b["lo"])
        out["type"] = col.take(EVENT_TYPES, etype)
        track_idx = np.where(etype == TRACK, ename, 0)
        page_idx = np.where(etype == PAGE, ename, 0)
        out["event"] = col.take(TRACK_EVENTS, track_idx)
        out["page"] = col.take([p[0] for p in PAGES], page_idx)
        out["path"] = col.take([p[1] for p in PAGES], page_idx)
        out["userId"] = self.user_ids(b["acct"], b["seat"])
        anon_hi = mix64(uh ^ (plat.astype(_U64) << _U64(56)))
        out["anonymousId"] = uuid_strings(
            (anon_hi & _U64(0xFFFFFFFFFFFF0FFF)) | _U64(0x4000),
            (mix64(anon_hi) & _U64(0x3FFFFFFFFFFFFFFF)) | _U64(0x8000000000000000),
        )
        out["account"] = col.take(self.account_arrow, b["acct"])
        out["account_json"] = col.take(self.account_json, b["acct"])
        out["session"] = hex16(b["session"])
        out["tier"] = col.take(self.tiers, b["tier"])
        out["device"] = col.take(DEVICE_TYPES, plat)
        os_idx = self._os_index(uh, plat)
        out["os_name"] = col.take([o[0] for o in _OS], os_idx)
        out["os_version"] = col.take([o[1] for o in _OS], os_idx)
        out["os_idx"] = os_idx
        out["uh"] = uh
        # properties: prefix and suffix strings from small vocabularies around the session id
        is_page = etype == PAGE
        refs = REFERRERS + ("(internal)",)
        ref = np.where(b["ref"] < 0, len(REFERRERS), b["ref"]).astype(np.int64)
        tp = np.flatnonzero(~is_page)
        track_props = col.join(
            col.vocab(
                b["tier"][tp] * 3 + plat[tp],
                lambda c: (
                    f'{{"plan": "{self.tiers[c // 3].as_py()}", "platform": "{DEVICE_TYPES[c % 3]}", "session_id": "'
                ),
            ),
            pc.take(out["session"], pa.array(tp)),
            '"}',
        )
        pp = np.flatnonzero(is_page)
        page_props = col.join(
            col.vocab(
                ename[pp].astype(np.int64) * 16 + ref[pp],
                lambda c: f'{{"path": "{PAGES[c // 16][1]}", "referrer": "{refs[c % 16]}", "session_id": "',
            ),
            pc.take(out["session"], pa.array(pp)),
            col.vocab(ename[pp].astype(np.int64), lambda c: f'", "title": "{PAGES[c][0]}"}}'),
        )
        out["props"] = col.scatter(n, [(tp, track_props), (pp, page_props)])
        ident = np.flatnonzero(etype == IDENTIFY)
        if len(ident):
            accts, seats = b["acct"][ident], b["seat"][ident]
            hashes = pa.array(
                [
                    pseudonymise_email(user_email(self.account_ids[a], int(s)))
                    for a, s in zip(accts, seats, strict=True)
                ],
                pa.string(),
            )
            traits = col.join(
                '{"email_sha256": "',
                hashes,
                '", "plan": "',
                pc.take(out["tier"], pa.array(ident)),
                '", "role": "',
                col.take(_ROLES, np.minimum(seats, len(_ROLES) - 1)),
                '", "seat": ',
                col.int_strings(seats),
                "}",
            )
            out["traits"] = col.scatter(n, [(ident, traits)])
        else:
            out["traits"] = pa.nulls(n, pa.string())
        return out

    def _events_v1(self, b: Batch) -> pa.Table:
        n = batch_len(b)
        c = self._common(b)
        etype, plat = b["etype"], b["platform"]
        null = pa.nulls(n, pa.string())
        uh, os_idx = c["uh"], c["os_idx"]
        # context = <app, device, groupId key> + account + <library, os, timezone>, the outer parts
        # from small vocabularies (sorted keys, the Kafka extract's json.dumps encoding)
        lag = ((uh >> _U64(20)) % _U64(3)).astype(np.int64)
        minor = np.maximum((b["ts"] // MS_DAY - _APP_EPOCH) // 21 - lag, 0)
        patch = ((uh >> _U64(30)) % _U64(3)).astype(np.int64)
        model = np.where(plat == IOS, 0, 2) + ((uh >> _U64(40)) % _U64(2)).astype(np.int64)
        build = b["ts"] // MS_DAY
        head_code = np.where(
            plat == WEB, -1, ((((plat * 4 + model) * 1000 + minor) * 4 + patch) << 20) + build
        )

        def head(code: int) -> str:
            if code < 0:
                return '{"device": {"type": "web"}, "groupId": "'
            day, rest = code & ((1 << 20) - 1), code >> 20
            patch_, rest = rest % 4, rest // 4
            minor_, rest = rest % 1000, rest // 1000
            model_, plat_ = rest % 4, rest // 4
            return (
                f'{{"app": {{"build": "{day}", "name": "Acme Analytics", "version": "3.{minor_}.{patch_}"}}, '
                f'"device": {{"model": "{_DEVICE_MODELS[model_]}", "type": "{DEVICE_TYPES[plat_]}"}}, "groupId": "'
            )

        def tail(code: int) -> str:
            tz, rest = code % 16, code // 16
            os_, plat_ = rest % 16, rest // 16
            return (
                f'", "library": {{"name": "{_LIBRARIES[plat_]}", "version": "{_LIBRARY_VERSIONS[plat_]}"}}, '
                f'"os": {{"name": "{_OS[os_][0]}", "version": "{_OS[os_][1]}"}}, "timezone": "{_TZ[tz][0]}"}}'
            )

        tail_code = (plat.astype(np.int64) * 16 + os_idx) * 16 + self.tz[b["acct"]]
        context = col.join(col.vocab(head_code, head), c["account_json"], col.vocab(tail_code, tail))
        cols = {
            "messageId": c["messageId"],
            "type": c["type"],
            "event": pc.if_else(pa.array(etype == TRACK), c["event"], null),
            "name": pc.if_else(pa.array(etype == PAGE), c["page"], null),
            "userId": c["userId"],
            "anonymousId": c["anonymousId"],
            "timestamp": col.timestamps(b["ts"]),
            "sentAt": col.timestamps(b["sent"]),
            "receivedAt": col.timestamps(b["recv"]),
            "context": context,
            "properties": pc.if_else(pa.array(etype == IDENTIFY), null, c["props"]),
            "traits": c["traits"],
            "schema_version": pa.repeat(SCHEMA_VERSION, n).cast(pa.string()),
            "_raw_json": null,
        }
        return pa.table(cols, schema=EVENTS_SCHEMA)

    def _events_v2(self, b: Batch) -> pa.Table:
        """Messages in the v2 format (see :data:`helpers.storage.contracts.V2_FORMAT`), landed unparsed in ``_raw_json``."""
        n = batch_len(b)
        c = self._common(b)
        etype, broken = b["etype"], b["broken"]
        name = pc.if_else(
            pa.array(etype == TRACK),
            c["event"],
            pc.if_else(pa.array(etype == PAGE), c["page"], pa.scalar("Identify")),
        )
        empty = pa.scalar("")
        ev = pc.if_else(pa.array(broken == 3), empty, col.join('"event_name":"', name, '",'))
        acc = pc.if_else(
            pa.array(broken == 2), empty, col.join('"account":{"id":"', c["account_json"], '"},')
        )
        tsf = pc.if_else(
            pa.array(broken == 1), empty, col.join('"timestamp":', col.int_strings(b["ts"]), ",")
        )
        body = pc.if_else(
            pa.array(etype == IDENTIFY),
            col.join('"traits":', pc.fill_null(c["traits"], "{}")),
            col.join('"properties":', c["props"]),
        )
        raw = col.join(
            '{"schema_version":"2","message_id":"',
            c["messageId"],
            '","type":"',
            c["type"],
            '",',
            ev,
            '"user_id":"',
            c["userId"],
            '","anonymous_id":"',
            c["anonymousId"],
            '",',
            acc,
            tsf,
            '"sent_at":',
            col.int_strings(b["sent"]),
            ',"context":{"library":{"name":"analytics.js","version":"5.0.0"},"device":{"type":"',
            c["device"],
            '"},"os":{"name":"',
            c["os_name"],
            '","version":"',
            c["os_version"],
            '"}},',
            body,
            "}",
        )
        cols: dict[str, pa.Array] = {f.name: pa.nulls(n, f.type) for f in EVENTS_SCHEMA}
        cols["receivedAt"] = col.timestamps(b["recv"])
        cols["schema_version"] = pa.repeat("2", n).cast(pa.string()) if n else pa.nulls(0, pa.string())
        cols["_raw_json"] = raw
        return pa.table(cols, schema=EVENTS_SCHEMA)

    def web_table(self, b: Batch) -> pa.Table:
        if batch_len(b) == 0:
            return WEB_SCHEMA.empty_table()
        b = take_rows(b, np.lexsort((b["lo"], b["hi"], b["ts"])))
        ref = np.where(b["ref"] < 0, len(REFERRERS), b["ref"])
        cols = {
            "hit_id": uuid_strings(b["hi"], b["lo"]),
            "session_id": hex16(b["session"]),
            "user_id": self.user_ids(b["acct"], b["seat"]),
            "account_id": col.take(self.account_arrow, b["acct"]),
            "page": col.take([p[1] for p in PAGES], b["page"]),
            "page_title": col.take([p[0] for p in PAGES], b["page"]),
            "referrer": col.take(REFERRERS + ("(internal)",), ref),
            "duration_s": pa.array(b["duration_s"], pa.int32()),
            "timestamp": col.timestamps(b["ts"]),
        }
        return pa.table(cols, schema=WEB_SCHEMA)

    def mobile_table(self, b: Batch) -> pa.Table:
        if batch_len(b) == 0:
            return MOBILE_SCHEMA.empty_table()
        b = take_rows(b, np.lexsort((b["session"], b["synced"])))
        uh = self.user_hash(b["acct"], b["seat"])
        os_idx = self._os_index(uh, b["platform"])
        cols = {
            "session_id": hex16(b["session"]),
            "user_id": self.user_ids(b["acct"], b["seat"]),
            "account_id": col.take(self.account_arrow, b["acct"]),
            "platform": col.take(DEVICE_TYPES, b["platform"]),
            "os_version": col.take([o[1] for o in _OS], os_idx),
            "app_version": self._app_version(uh, b["start"]),
            "device_model": col.take(
                _DEVICE_MODELS,
                np.where(b["platform"] == IOS, 0, 2) + ((uh >> _U64(40)) % _U64(2)).astype(np.int64),
            ),
            "started_at": col.timestamps(b["start"]),
            "ended_at": col.timestamps(b["end"]),
            "duration_s": pa.array(((b["end"] - b["start"]) // 1000).astype(np.int32)),
            "screens": pa.array(b["screens"], pa.int32()),
            "events": pa.array(b["events"], pa.int32()),
            "synced_at": col.timestamps(b["synced"]),
        }
        return pa.table(cols, schema=MOBILE_SCHEMA)

    def api_table(self, b: Batch) -> pa.Table:
        if batch_len(b) == 0:
            return API_SCHEMA.empty_table()
        b = take_rows(b, np.lexsort((b["lo"], b["hi"], b["ts"])))
        key = mix64(mix64(self.key[b["acct"]] ^ _U64(0x5A17)) + b["key"].astype(_U64))
        cols = {
            "request_id": uuid_strings(b["hi"], b["lo"]),
            "account_id": col.take(self.account_arrow, b["acct"]),
            "api_key_id": col.join("key_", hex16(key)),
            "method": col.take([e[0] for e in ENDPOINTS], b["endpoint"]),
            "endpoint": col.take([e[1] for e in ENDPOINTS], b["endpoint"]),
            "status_code": pa.array(b["status"], pa.int16()),
            "latency_ms": pa.array(b["latency"], pa.int32()),
            "timestamp": col.timestamps(b["ts"]),
        }
        return pa.table(cols, schema=API_SCHEMA)


def _tier_multipliers(tier: str) -> tuple[float, float]:
    """(events per active user, API calls) multipliers of a plan tier, from its name."""
    t = tier.lower()
    if "enterprise" in t:
        return 1.6, 2.0
    if any(w in t for w in ("starter", "basic", "free", "lite", "essential")):
        return 0.7, 0.3
    return 1.0, 1.0


def generate_day(periods: pd.DataFrame, spec: DemoSpec, day: dt.date) -> dict[str, pa.Table]:
    """The clean rows of one event day for each source, before routing to received partitions."""
    model = EventModel(periods, spec)
    rows = model.day(epoch_day(day))
    return {
        "events": model.events_table(rows.events),
        "web_analytics": model.web_table(rows.web),
        "mobile_analytics": model.mobile_table(rows.mobile),
        "api_logs": model.api_table(rows.api),
    }

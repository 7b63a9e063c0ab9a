"""Generate the demo company's landing zone: simulate, build extracts, inject faults, write.

:func:`generate` is the entry point (``workbook demo-data`` calls it). For each chunk of
accounts it simulates the business, builds the account-level extracts, injects the business
faults and writes the deliveries; then it builds the company-level sources (FX, payroll, cloud
bills, operations expenses, Finance's ledger) from the chunks' totals, injects and writes them;
then the product events from the usage periods (:func:`generate_events`: the day loop over
``helpers.demo.events``, with the engagement faults hooked in); finally ``_faults.json`` (the
ground truth) and ``_demo.json`` (the spec and what was written). A company of several chunks
without faults (a large one) spills each chunk's account-level rows and writes each delivery
once at the end (``extracts.MergingWriter``): one file per delivery, not one per chunk and day.

Everything is built in a sibling folder and swapped in at the end, so a failed run leaves the
previous landing zone untouched. Same spec -> byte-identical files (no wall clock, seeded
streams, sorted rows).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from helpers.core import paths
from helpers.core.periods import month_end, month_of, previous_month
from helpers.demo import company as co
from helpers.demo import events as ev
from helpers.demo import faults, faults_engagement, faults_growth, faults_profit
from helpers.demo import sources_billing as billing
from helpers.demo import sources_crm as crm
from helpers.demo import sources_finance as fin
from helpers.demo.columns import Batch, concat_rows, take_rows
from helpers.demo.extracts import PARTITION, SCHEDULE, LandingWriter, MergingWriter, schedule
from helpers.demo.faults import FaultContext, Injected
from helpers.demo.spec import DemoSpec
from helpers.storage.contracts import SCHEMAS, SOURCES
from helpers.storage.landing import write_delivery

ACCOUNT_SOURCES = (
    "billing_customers",
    "subscriptions",
    "billing_invoices",
    "billing_payments",
    "crm_accounts",
    "crm_stage_history",
    "account_db",
    "sales_records",
    "experiment_assignments",
)
COMPANY_SOURCES = ("fx_rates", "hr_payroll", "cloud_costs", "ops_expenses", "finance_ledger")
EVENT_SOURCES = tuple(SCHEMAS)
# The faults injected into the in-memory extracts, with their parameters (the other engagement
# faults work inside the events day loop, see ``faults_engagement``).
BATCH_FAULT_PARAMS = {**faults_profit.PARAMS, **faults_growth.PARAMS, **faults_engagement.PARAMS}
BATCH_FAULT_IDS = tuple(BATCH_FAULT_PARAMS)
FAULTS_FILE, DEMO_FILE = "_faults.json", "_demo.json"
MAX_ACCOUNTS = 5_000_000


@dataclass
class Summary:
    """What a generation wrote: rows, files and partition range per source, and the faults."""

    spec: DemoSpec
    root: Path
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Injected] = field(default_factory=list)
    events_generated: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "spec": spec_json(self.spec),
            "history": {"start": self.spec.start.isoformat(), "end": self.spec.end.isoformat()},
            "sources": self.sources,
            "faults": [
                {
                    "fault": r.fault,
                    "source": r.source,
                    "date": r.date,
                    "rows": len(r.rows),
                    "description": r.description,
                }
                for r in self.faults
            ],
            "events_generated": self.events_generated,
        }


def spec_json(spec: DemoSpec) -> dict[str, Any]:
    """The spec as written to ``_faults.json`` and ``_demo.json`` (faults as their ``--fault`` text)."""
    return {
        "accounts": spec.accounts,
        "months": spec.months,
        "seed": spec.seed,
        "end": spec.end.isoformat(),
        "events_per_user_day": spec.events_per_user_day,
        "faults": [f.as_text() for f in spec.faults],
    }


class Timings(dict[str, float]):
    """Seconds spent per stage or source (building and writing), for the benchmark."""

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0


def account_extracts(company: co.Company, timings: Timings | None = None) -> dict[str, pd.DataFrame]:
    """The account-level extracts of one chunk, clean."""
    t = timings if timings is not None else Timings()
    with t.measure("subscriptions"):
        life = billing.lifecycle(company)
    builders: dict[str, Callable[[], pd.DataFrame]] = {
        "billing_customers": lambda: billing.billing_customers(company),
        "subscriptions": lambda: billing.subscriptions(company, life),
        "billing_invoices": lambda: billing.billing_invoices(company),
        "billing_payments": lambda: billing.billing_payments(company),
        "crm_accounts": lambda: crm.crm_accounts(company),
        "crm_stage_history": lambda: crm.crm_stage_history(company, life),
        "account_db": lambda: crm.account_db(company, life),
        "sales_records": lambda: crm.sales_records(company, life),
        "experiment_assignments": lambda: crm.experiment_assignments(company),
    }
    out = {}
    for name, build in builders.items():
        with t.measure(name):
            out[name] = build()
    return out


def company_extracts(
    world: co.World, totals: fin.Totals, timings: Timings | None = None
) -> dict[str, pd.DataFrame]:
    """The company-level extracts, clean (Finance's ledger from the clean sources)."""
    t = timings if timings is not None else Timings()
    with t.measure("hr_payroll"):
        payroll = fin.hr_payroll(world, totals)
    with t.measure("cloud_costs"):
        cloud = fin.cloud_costs(world, totals)
    with t.measure("ops_expenses"):
        ops = fin.ops_expenses(world, totals)
    with t.measure("fx_rates"):
        fx = billing.fx_rates(world)
    with t.measure("finance_ledger"):
        ledger = fin.finance_ledger(world, totals, payroll, cloud, ops)
    return {
        "fx_rates": fx,
        "hr_payroll": payroll,
        "cloud_costs": cloud,
        "ops_expenses": ops,
        "finance_ledger": ledger,
    }


def validate_spec(spec: DemoSpec) -> co.World:
    """Check the spec and every fault before writing anything (ValueError names the problem)."""
    if not 1 <= spec.accounts <= MAX_ACCOUNTS:
        raise ValueError(f"--accounts {spec.accounts}: expected 1..{MAX_ACCOUNTS}")
    if not 1 <= spec.months <= 120:
        raise ValueError(f"--months {spec.months}: expected 1..120")
    world = co.World(spec)
    registry = faults.registry()
    for f in spec.faults:
        if f.id not in registry:
            raise ValueError(f"--fault {f.as_text()}: no injector is registered for {f.id!r}")
        if f.id in BATCH_FAULT_PARAMS:
            faults.validate(f, world, BATCH_FAULT_PARAMS[f.id])
    return world


def _fault_rng(spec: DemoSpec, fault_text: str, batch: int | None) -> Any:
    return co.World(spec).rng(
        co.S_FAULT, zlib.crc32(fault_text.encode()), 1_000_000 if batch is None else batch
    )


def _inject(
    spec: DemoSpec, world: co.World, extracts: dict[str, pd.DataFrame], batch: int | None, **ctx: Any
) -> list[Injected]:
    out: list[Injected] = []
    registry = faults.registry()
    for fault in spec.faults:
        fn = registry[fault.id]
        if faults.is_streaming(fn):
            continue
        context = FaultContext(spec, world, batch, _fault_rng(spec, fault.as_text(), batch), **ctx)
        out.extend(fn(fault, extracts, context))
    return out


def _account(
    counts: dict[str, dict[str, Any]],
    name: str,
    frame: pd.DataFrame,
    rows: int,
    files: int,
    sched: pd.DataFrame,
) -> None:
    c = counts.setdefault(name, {"rows": 0, "files": 0, "first_partition": None, "last_partition": None})
    c["rows"] += rows
    c["files"] += files
    parts = pd.concat([frame[PARTITION], sched[PARTITION]])
    if len(parts):
        lo = co.to_date(int(parts.min())).isoformat()
        hi = co.to_date(int(parts.max())).isoformat()
        c["first_partition"] = min(filter(None, (c["first_partition"], lo)))
        c["last_partition"] = max(filter(None, (c["last_partition"], hi)))


def is_demo_landing(root: Path) -> bool:
    """A landing zone this generator wrote (or an empty/missing one): safe to replace."""
    return not root.exists() or not any(root.iterdir()) or (root / DEMO_FILE).exists()


def generate(
    spec: DemoSpec,
    root: Path | None = None,
    *,
    events: bool = True,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    timings: Timings | None = None,
) -> Summary:
    """Write the demo landing zone for ``spec`` into ``root`` (default ``data/landing``).

    Replaces a previous demo landing zone; refuses (ValueError) to replace a landing zone it did
    not write unless ``force``. ``events=False`` skips the product events (faster tests of the
    business sources). ``progress(message)`` is called at each stage; ``timings`` collects the
    seconds spent per source (building and writing) and per stage (``simulate``, ``events``).
    """
    root = Path(root) if root is not None else paths.landing_dir()
    world = validate_spec(spec)
    if not force and not is_demo_landing(root):
        raise ValueError(
            f"{root}: holds a landing zone the demo generator did not write; refusing to replace it"
        )
    say = progress or (lambda _msg: None)
    t = timings if timings is not None else Timings()
    work = root.parent / f".{root.name}.building"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    summary = Summary(spec, root)
    # several chunks without faults (a large company): one file per delivery, not one per chunk
    merge = world.n_chunks > 1 and not spec.faults
    writer = MergingWriter(work, work / ".spill") if merge else LandingWriter(work)
    records: list[Injected] = []
    totals = fin.Totals(world)
    periods: list[pd.DataFrame] = []
    try:
        for chunk in range(world.n_chunks):
            with t.measure("simulate"):
                company = co.simulate_chunk(world, chunk)
            say(f"accounts chunk {chunk + 1}/{world.n_chunks}: {len(company.accounts):,} accounts simulated")
            totals.add(company)
            periods.append(co.usage_periods(company))
            ex = account_extracts(company, t)
            # the first chunk's files carry the daily deliveries of days without rows (empty files)
            ex[SCHEDULE] = schedule(list(ACCOUNT_SOURCES) if chunk == 0 else [], world.start, world.end)
            records += _inject(spec, world, ex, chunk, company=company)
            for name in ACCOUNT_SOURCES:
                with t.measure(name):
                    rows, files = writer.write(
                        SOURCES[name], ex[name], ex[SCHEDULE][ex[SCHEDULE]["source"] == name]
                    )
                _account(
                    summary.sources, name, ex[name], rows, files, ex[SCHEDULE][ex[SCHEDULE]["source"] == name]
                )
            del company, ex
        if isinstance(writer, MergingWriter):
            for name in ACCOUNT_SOURCES:
                with t.measure(name):
                    summary.sources[name]["files"] = writer.finish(name)
            shutil.rmtree(writer.spill)
            writer = LandingWriter(work)
            say(f"account sources written ({world.n_chunks} chunks merged into one file per delivery)")
        ex = company_extracts(world, totals, t)
        ex[SCHEDULE] = schedule(list(COMPANY_SOURCES), world.start, world.end)
        records += _inject(spec, world, ex, None, totals=totals)
        for name in COMPANY_SOURCES:
            with t.measure(name):
                rows, files = writer.write(
                    SOURCES[name], ex[name], ex[SCHEDULE][ex[SCHEDULE]["source"] == name]
                )
            _account(
                summary.sources, name, ex[name], rows, files, ex[SCHEDULE][ex[SCHEDULE]["source"] == name]
            )
        say("company sources written (FX, payroll, cloud, operations, Finance's ledger)")
        del ex
        usage = pd.concat(periods, ignore_index=True)
        del periods
        if events:

            def tick(day: dt.date, counts: dict[str, int]) -> None:
                if day.day == 1:
                    say(f"events: {day:%Y-%m} ({sum(counts.values()):,} rows so far)")

            with t.measure("events"):
                counts, event_records = generate_events(usage, spec, root=work, progress=tick)
            records += event_records
            for name in EVENT_SOURCES:
                files = len(list((work / name).glob("dt=*/part-*.parquet"))) if (work / name).exists() else 0
                parts = (
                    sorted(p.name[3:] for p in (work / name).glob("dt=*")) if (work / name).exists() else []
                )
                summary.sources[name] = {
                    "rows": int(counts.get(name, 0)),
                    "files": files,
                    "first_partition": parts[0] if parts else None,
                    "last_partition": parts[-1] if parts else None,
                }
        summary.events_generated = events
        summary.faults = faults.merge_records(records)
        order = {f.id: i for i, f in enumerate(spec.faults)}
        summary.faults.sort(key=lambda r: (order.get(r.fault, 99), r.source, r.description))
        faults.write_ground_truth(work / FAULTS_FILE, spec_json(spec), summary.faults)
        (work / DEMO_FILE).write_text(json.dumps(summary.as_json(), indent=2, sort_keys=True) + "\n")
        writer.sync()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if root.exists():
        shutil.rmtree(root)
    work.rename(root)
    return summary


# ------------------------------------------------------------------ product events

# When each event source's delivery for partition D arrives, counted from the end of day D.
ARRIVAL_AFTER_DAY = {
    "events": dt.timedelta(minutes=20),
    "api_logs": dt.timedelta(minutes=45),
    "web_analytics": dt.timedelta(hours=2),
    "mobile_analytics": dt.timedelta(hours=3),
}


@dataclass
class _Carry:
    """Rows received on a later day than their event day, waiting for their partition."""

    events: dict[int, list[Batch]] = field(default_factory=dict)
    mobile: dict[int, list[Batch]] = field(default_factory=dict)

    @staticmethod
    def _route(rows: Batch, by: str, today: int, store: dict[int, list[Batch]]) -> Batch:
        if not rows:
            return rows
        day = rows[by] // ev.MS_DAY
        now = day <= today
        for d in np.unique(day[~now]):
            store.setdefault(int(d), []).append(take_rows(rows, day == d))
        return take_rows(rows, now) if not now.all() else rows

    def route(self, rows: ev.DayRows) -> tuple[Batch, Batch]:
        events = self._route(rows.events, "recv", rows.day, self.events)
        mo = self._route(rows.mobile, "synced", rows.day, self.mobile)
        return concat_rows([*self.events.pop(rows.day, []), events]), concat_rows(
            [*self.mobile.pop(rows.day, []), mo]
        )


def generate_events(
    periods: pd.DataFrame,
    spec: DemoSpec,
    *,
    root: Path | None = None,
    progress: Callable[[dt.date, dict[str, int]], None] | None = None,
) -> tuple[dict[str, int], list[Injected]]:
    """Write the four event sources for ``[spec.start, spec.end]`` into the landing zone.

    Day by day: generate the day's clean rows, let the engagement faults of ``spec.faults``
    change them, write each source's partition for the day (``events`` and ``mobile_analytics``
    partitions also receive the earlier days' rows that arrived that day), and carry rows received
    later to their partition. Rows received after ``spec.end`` are written to their (later)
    partitions at the end. ``progress(day, rows_written_so_far)`` is called after each day.

    Returns the rows written per source and the ground truth of the injected faults.
    """
    model = ev.EventModel(periods, spec)
    active = sorted(faults_engagement.activate(spec, model), key=lambda f: f.order)
    counts = dict.fromkeys(EVENT_SOURCES, 0)
    carry = _Carry()
    render = {
        "events": model.events_table,
        "web_analytics": model.web_table,
        "mobile_analytics": model.mobile_table,
        "api_logs": model.api_table,
    }
    # Parquet encoding and fsync run on one writer thread (in submission order, so the files and
    # manifests are the same as a sequential run) while the next day is generated; at most one
    # day's files are in flight.
    pending: list[Future[None]] = []

    def store(source: str, day: dt.date, table: pa.Table) -> None:
        arrived = (
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC) + ARRIVAL_AFTER_DAY[source]
        )
        write_delivery(source, day, table, arrived_at=arrived, root=root)

    def write(pool: ThreadPoolExecutor, source: str, part: int, batch: Batch) -> None:
        for fault in active:
            batch = fault.on_write(source, part, batch)
        table = render[source](batch)
        counts[source] += table.num_rows
        pending.append(pool.submit(store, source, co.to_date(part), table))

    def drain() -> None:
        while pending:
            pending.pop(0).result()

    first, last = co.epoch_day(spec.start), co.epoch_day(spec.end)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-writer") as pool:
        try:
            for d in range(first, last + 1):
                rows = model.day(d)
                for fault in active:
                    fault.on_day(rows)
                events, mobile = carry.route(rows)
                drain()
                write(pool, "events", d, events)
                write(pool, "web_analytics", d, rows.web)
                write(pool, "mobile_analytics", d, mobile)
                write(pool, "api_logs", d, rows.api)
                if progress is not None:
                    progress(co.to_date(d), dict(counts))
            for d in sorted(set(carry.events) | set(carry.mobile)):
                events = concat_rows(carry.events.pop(d, []))
                mobile = concat_rows(carry.mobile.pop(d, []))
                drain()
                if events:
                    write(pool, "events", d, events)
                if mobile:
                    write(pool, "mobile_analytics", d, mobile)
            drain()
        finally:
            for f in pending:
                f.cancel()
    records = [r for fault in active for r in fault.records()]
    return counts, records


def last_complete_month(spec: DemoSpec) -> str:
    """YYYY-MM of the last complete month of the history (the end's month for a month-end end;
    a one-month history that ends mid-month has none, and gives the end's month)."""
    month = month_of(spec.end)
    return month if spec.end == month_end(spec.end) or spec.months == 1 else previous_month(month)

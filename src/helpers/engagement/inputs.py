"""The landed rows an Engagement run reads: ``events`` and ``api_logs`` deliveries arrived by ``as_of``.

``events`` are read for received partitions from the window's roll-up start (less a day of clock
skew) to ``as_of``'s date; ``api_logs`` for the months the window touches. Files are read by the
engine (engine DataFrames, nothing collected); an empty read gets a zero-row file with the
source's landed schema, so its columns are right.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from helpers.core.timeutil import naive_utc
from helpers.engagement.window import RunWindow
from helpers.storage import landing
from helpers.storage.contracts import SCHEMAS
from helpers.storage.engine import Engine


@dataclass
class Inputs:
    """The landed rows a run reads (engine DataFrames) and which files they came from."""

    events: Any
    api: Any
    event_files: list[str]
    api_files: list[str]
    arrivals: pd.DataFrame  # events partitions read: partition (date), first arrived_at (naive UTC)


_EMPTY: dict[str, Path] = {}


def empty_parquet(source: str) -> str:
    """A zero-row file with the source's landed schema (so an empty read has the right columns)."""
    if source not in _EMPTY:
        path = Path(tempfile.gettempdir()) / f"workbook-empty-{source}-{os.getpid()}.parquet"
        pq.write_table(SCHEMAS[source].empty_table(), path)
        _EMPTY[source] = path
    return str(_EMPTY[source])


def landed_files(
    source: str, first: dt.date, last: dt.date, *, as_of: dt.datetime, root: Path | None = None
) -> list[str]:
    """Paths of the deliveries of ``source`` for partitions in [first, last] arrived by ``as_of``."""
    lo, hi = first.isoformat(), last.isoformat()
    base = landing.source_dir(source, root)
    return [
        str(base / d.file)
        for d in landing.deliveries(source, root=root, as_of=as_of)
        if lo <= d.partition <= hi
    ]


def load(engine: Engine, window: RunWindow, *, root: Path | None = None) -> Inputs:
    """Read the run's ``events`` and ``api_logs`` deliveries (see the module doc for the ranges)."""
    ev_files = landed_files("events", window.read_from, window.as_of.date(), as_of=window.as_of, root=root)
    api_from = min(window.start, *(m.start for m in window.months)) if window.months else window.start
    api_files = landed_files("api_logs", api_from, window.rollup_end, as_of=window.as_of, root=root)
    events = engine.read_parquet(ev_files or [empty_parquet("events")], name="engagement_events_src")
    api = engine.read_parquet(api_files or [empty_parquet("api_logs")], name="engagement_api_src")
    read = [
        d
        for d in landing.deliveries("events", root=root, as_of=window.as_of)
        if window.read_from.isoformat() <= d.partition
    ]
    arrivals = pd.DataFrame(
        {
            "partition": [dt.date.fromisoformat(d.partition) for d in read],
            "arrived_at": [naive_utc(d.arrived) for d in read],
        },
        columns=["partition", "arrived_at"],
    )
    arrivals = arrivals.groupby("partition", as_index=False)["arrived_at"].min()
    return Inputs(events, api, ev_files, api_files, arrivals)

"""The extract interface: one small adapter per source kind, and the registry of source kinds.

An adapter reads one real system and lands what it read through
:func:`helpers.storage.landing.write_delivery` (immutable dated Parquet files plus the arrival
manifest); rows it cannot use go to :mod:`helpers.storage.quarantine`. Kinds:

- ``files``  (the default): exported files dropped somewhere, e.g. FOCUS cloud billing CSVs;
- ``sql``: a database table read through SQLAlchemy (the account database);
- ``kafka``: an event stream consumed with confluent-kafka (frontend events).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Literal, Protocol, runtime_checkable

from helpers.storage.landing import Delivery

Kind = Literal["files", "sql", "kafka"]
KINDS: tuple[Kind, ...] = ("files", "sql", "kafka")

# Source name -> adapter kind. Sources not listed are delivered as files (the default kind).
SOURCE_KINDS: MappingProxyType[str, Kind] = MappingProxyType(
    {
        "billing": "files",
        "fx_rates": "files",
        "hr": "files",
        "cloud_costs": "files",
        "operations": "files",
        "finance_ledger": "files",
        "crm": "files",
        "account_db": "sql",
        "subscriptions": "files",
        "sales": "files",
        "experiments": "files",
        "events": "kafka",
        "web_analytics": "files",
        "mobile_analytics": "files",
        "api_logs": "files",
    }
)


def kind_of(source: str) -> Kind:
    """The adapter kind that extracts ``source`` (``files`` unless registered otherwise)."""
    return SOURCE_KINDS.get(source, "files")


@dataclass(frozen=True)
class ExtractResult:
    """What one extract run did: counts, the deliveries it landed, and where quarantine went.

    ``received == landed + quarantined`` always (checked on creation). ``note`` says why a run
    landed nothing, e.g. a re-run for an ``as_of`` that was already extracted.
    """

    source: str
    received: int
    landed: int
    quarantined: int
    deliveries: tuple[Delivery, ...] = ()
    quarantine_file: Path | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.received != self.landed + self.quarantined:
            raise ValueError(
                f"{self.source}: received ({self.received}) != landed ({self.landed}) "
                f"+ quarantined ({self.quarantined})"
            )

    @property
    def files_written(self) -> int:
        return len(self.deliveries)


@runtime_checkable
class Extractor(Protocol):
    """One configured adapter: ``extract(as_of)`` lands what the source holds as of that moment.

    ``as_of`` (aware UTC) is the arrival time recorded for the deliveries; adapters never read
    the wall clock.
    """

    kind: ClassVar[Kind]
    source: str

    def extract(self, as_of: dt.datetime) -> ExtractResult: ...


def quarantine_root(landing_root: Path | None) -> Path | None:
    """The quarantine folder that sits beside a landing folder (``data/landing`` -> ``data/quarantine``)."""
    return landing_root.parent / "quarantine" if landing_root is not None else None

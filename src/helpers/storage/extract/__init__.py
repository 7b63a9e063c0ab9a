"""Extract adapters for real systems, one interface per source kind (files, SQL, Kafka).

The adapters live in their own modules so that importing this package stays cheap:
``helpers.storage.extract.focus`` (FOCUS 1.0 cloud billing files), ``helpers.storage.extract.sql`` (a database
table through SQLAlchemy) and ``helpers.storage.extract.kafka`` (a Kafka event consumer).
"""

from helpers.storage.extract.base import KINDS, SOURCE_KINDS, Extractor, ExtractResult, Kind, kind_of

__all__ = ["KINDS", "SOURCE_KINDS", "ExtractResult", "Extractor", "Kind", "kind_of"]

"""Where data lives: the source contracts, the landing zone, the warehouse, the DataFrame engines
(DuckDB, Spark), quarantine, and the extract adapters that land real systems' data."""

"""Where data lives: the source contracts, the landing zone, the warehouse, the DataFrame engines
(DuckDB, Spark), quarantine, and the extract adapters that land real systems' data.

Modules: ``contracts`` (what each landing source delivers: columns, types, key, schedule),
``landing`` (immutable dated deliveries and their manifests), ``quarantine`` (rows that cannot be
used, with the reason), ``warehouse`` (the engine, the run tables, ``register_tables`` for the ops
tables other packages own, and the atomic partition write), ``engine`` (DuckDB or Spark behind one
PySpark DataFrame API), ``javaenv`` (the Java Spark runs on), ``source_systems`` (where a runbook
fix re-extracts from: providers of the entry-point group ``workbook.source_systems``) and
``extract/`` (the adapters: FOCUS files, SQL, Kafka).
"""

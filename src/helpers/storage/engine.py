"""One PySpark DataFrame API, two engines: SQLFrame on in-process DuckDB (default) or Apache Spark.

Engagement transformations are written once against the PySpark DataFrame API and take an
:class:`Engine`, using ``engine.F`` (functions), ``engine.Window`` and ``engine.T`` (types)
instead of importing ``pyspark.sql`` directly, so the same code runs on either engine.

``WORKBOOK_ENGINE`` (``duckdb`` | ``spark``) picks the engine, default from config;
``WORKBOOK_SPARK_MASTER`` the Spark master (``local[*]`` by default, any master URL).

Where the engines differ (kept here, in one place; the engagement code calls the methods below
instead of branching on the engine itself):

- reading Parquet: SQLFrame's ``read.parquet(*files)`` becomes one ``UNION ALL`` per file, whose
  SQL takes seconds to plan for a few dozen files, and it adds hive partition columns (``dt``)
  from the paths. :meth:`Engine.read_parquet` therefore reads all files in one DuckDB
  ``read_parquet([...], union_by_name=true, hive_partitioning=false)`` behind a view (columns:
  the union of the files'); Spark reads the list without ``mergeSchema`` (merging reads every
  footer: seconds for a month of files), taking the schema of one file, so callers read sources
  whose files share one landed schema (``helpers.storage.contracts.SCHEMAS``) and select their columns;
- caching: SQLFrame ignores ``cache()`` on DuckDB ("does not support caching"), so every action
  would recompute its input. :meth:`Engine.materialize` writes a DuckDB table (``CREATE OR
  REPLACE TABLE``) and reads it back; on Spark it is ``cache()``. A plain projection of files
  (``scan=True``) is not kept on DuckDB: re-scanning beats writing the table; it goes behind a
  view, as SQLFrame deep-copies the whole expression tree on every operation;
- Python cost of building plans (DuckDB): SQLFrame deep-copies and re-hashes the whole tree, every
  step before included, on each operation. :meth:`Engine.checkpoint` puts a large step behind a
  view (Spark: the DataFrame as is), :meth:`Engine.create_dataframe` copies a pandas frame into
  a table instead of writing its rows as literals into the tree, and
  :meth:`Engine.materialize_layers` / :meth:`Engine.materialize_aggregates` write chained
  projections / aggregations as one SQL statement from the columns' expressions; the queries
  DuckDB runs are the same;
- JSON: SQLFrame translates ``get_json_object`` to DuckDB's ``->`` operator, which returns JSON
  (strings keep their quotes) and, inside ``coalesce``, is re-parsed as a lambda (a binder
  error). :meth:`Engine.json_string` uses ``json_extract_string`` on DuckDB and
  ``get_json_object`` on Spark: both give the unquoted text, NULL when the path is absent;
- malformed JSON: DuckDB's JSON functions raise on it ("Malformed JSON at byte 21"), Spark's
  ``get_json_object`` gives NULL. :meth:`Engine.json_valid` (DuckDB ``json_valid``, Spark
  ``try_parse_json``) tells valid text first, and callers extract only from valid text. The
  parsers differ at the edges: DuckDB accepts trailing commas and ``NaN``, Spark accepts two
  concatenated objects; truncated, empty, unquoted or single-quoted text is invalid on both;
- parsing text timestamps: ``try_to_timestamp`` is a ``strptime`` with a fixed format on DuckDB
  (no ``T``, no offsets) and on Spark accepts special words ("yesterday" becomes a date relative
  to the wall clock). ``F.expr("try_cast(c AS timestamp)")`` agrees on both engines for ISO 8601
  (``Z`` and offsets honoured, junk -> NULL) and reads no clock; callers screen the text with a
  regex first (see ``helpers.engagement.event_contract``);
- ANSI mode: Spark 4 runs with ``spark.sql.ansi.enabled=true`` (an invalid ``cast`` or a division
  by zero raises), DuckDB's ``CAST`` raises too but its ``/`` returns NULL on zero: use
  ``try_cast`` and guard every divisor explicitly (no published figure may depend on either);
- integer sums: DuckDB's ``SUM`` of integers is a HUGEINT, which ``toPandas`` turns into
  float64; cast sums to ``long`` in the transformation (Spark's are already ``long``);
- column names: SQLFrame's catalog lower-cases the names it reads from DuckDB (``messageid``);
  DuckDB resolves names case-insensitively, so ``F.col("messageId")`` works, but ``df.columns``
  and un-aliased output columns are lower case: alias every output column;
- ``toPandas()``: SQLFrame's goes through ``pandas.read_sql`` row by row; :meth:`Engine.to_pandas`
  fetches Arrow from DuckDB instead (dates come back as ``datetime.date`` objects, as from Spark).
  Timestamps: Spark returns naive datetimes in the session time zone (we pin
  it to UTC), DuckDB returns tz-aware UTC: :meth:`Engine.to_pandas` normalises both to naive UTC;
  missing text is ``None`` from DuckDB and sometimes ``NaN`` from Spark (Arrow): normalised to ``None``;
- ordering: neither engine guarantees row order; :meth:`Engine.to_pandas` sorts by the given keys;
- skew: only Spark needs help with a hot key (AQE skew-join splitting, on by default in
  ``engine.spark.adaptive``); DuckDB's hash aggregates and joins run in one process with
  spilling, so the same plan is safe there. The engagement code aggregates to the account grain
  before any account-level join, so neither engine joins event rows by account at all.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from helpers.core import config as cfgmod
from helpers.storage import javaenv

ENGINES = ("duckdb", "spark")
# Projections one over the other: each a list of named columns (:meth:`Engine.materialize_layers`).
Layers = list[list[Any]]
# Aggregations one over the other: each (condition or None, named keys, named aggregates)
# (:meth:`Engine.materialize_aggregates`).
Steps = list[tuple[Any, list[Any], list[Any]]]


class EngineUnavailable(RuntimeError):
    """The requested engine cannot start here (e.g. no Java 17+ for Spark)."""


@dataclass
class Engine:
    name: str
    session: Any
    F: ModuleType
    T: ModuleType
    Window: Any
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _views: int = field(default=0, repr=False)
    _view_names: set[str] = field(default_factory=set, repr=False)

    def read_parquet(
        self, paths: list[str], *, name: str = "parquet_source", provenance: bool = False
    ) -> Any:
        """The Parquet files as one DataFrame (columns: the union of the files' columns).

        ``name`` prefixes the DuckDB view the files are read through; each call gets a view of
        its own (SQLFrame caches a table's columns by name, so a view replaced under the same name
        would be read with the old columns). Spark ignores it. ``provenance`` adds ``_file`` (the
        file's path; Spark's is a ``file:`` URI) and ``_row`` (the 0-based row in that file).
        """
        if not paths:
            raise ValueError("read_parquet: no files to read")
        if self.name == "duckdb":
            files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
            extra = ", filename = '_file', file_row_number = true" if provenance else ""
            cols = "* EXCLUDE (file_row_number), file_row_number AS _row" if provenance else "*"
            with self._lock:
                self._views += 1
                name = f"{name}_{self._views}"
                self.session._conn.execute(
                    f"CREATE OR REPLACE VIEW {_ident(name)} AS SELECT {cols} FROM "
                    f"read_parquet([{files}], union_by_name = true, hive_partitioning = false{extra})"
                )
            return self.session.table(name)
        df = self.session.read.parquet(*[str(p) for p in paths])
        if provenance:
            F = self.F
            df = df.select(
                "*",
                F.col("_metadata.file_path").alias("_file"),
                F.col("_metadata.row_index").cast("long").alias("_row"),
            )
        return df

    def materialize(self, df: Any, name: str, *, scan: bool = False) -> Any:
        """``df`` computed once and kept for the following actions (see the module doc).

        ``scan``: ``df`` is a projection of files (no shuffle). DuckDB then keeps no data: it
        re-reads and re-parses the Parquet faster than it writes and reads back a table of it
        (≈ 0.5 s vs 1.5 s per million events measured), through a view, so that what is built on
        it stays small for SQLFrame to copy; Spark still caches it.
        """
        if self.name == "duckdb" and scan:
            # Behind a view: DuckDB still re-scans, but the DataFrames built on it carry the view's
            # name instead of the whole projection. SQLFrame deep-copies a DataFrame's expression
            # tree on every operation, so a large projection (the event contract's) re-copied by
            # each of the dozens of operations after it cost more than the queries themselves
            # (Engagement compute on the demo company: 16.2 s -> 10.7 s; benchmarks/bench_incremental.py).
            sql = df.sql(dialect="duckdb", optimize=False, pretty=False)
            with self._lock:
                self.session._conn.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS {sql}")
                self._view_names.add(name)
            return self.session.table(name)
        if self.name == "duckdb":
            sql = df.sql(dialect="duckdb", optimize=False, pretty=False)
            with self._lock:
                self.session._conn.execute(f"CREATE OR REPLACE TABLE {_ident(name)} AS {sql}")
            return self.session.table(name)
        return df.cache()

    def materialize_layers(self, df: Any, layers: Layers, name: str) -> Any:
        """``df.select(*layers[0]).select(*layers[1])...`` kept as :meth:`materialize` keeps a
        projection of files (``scan=True``): on DuckDB a view ``name`` (re-scanned by each query,
        :meth:`release` drops it), on Spark cached.

        Every column of a layer is a named expression (``alias``) over the previous layer's
        columns (the first over ``df``'s): no aggregates, windows or joins. On DuckDB the view's
        SQL is written once, as nested subqueries, straight from the columns' expressions.
        SQLFrame's ``select`` copies, normalises and hashes the DataFrame's whole expression tree
        at every step; for the event contract's projections that was a third of the Engagement
        run at 1M events (0.5 s of 1.5 s of Python). DuckDB plans the same query from either SQL.
        """
        if self.name != "duckdb":
            for columns in layers:
                df = df.select(*columns)
            return df.cache()
        from sqlglot import Dialect, exp, parse_one

        duckdb = Dialect.get_or_raise("duckdb")  # as DataFrame.sql(dialect="duckdb") writes it
        query: Any = parse_one(df.sql(dialect=duckdb, optimize=False, pretty=False), dialect=duckdb)
        for i, columns in enumerate(layers):
            source = query.subquery(f"_layer{i}", copy=False)
            query = exp.select(*[c.expression for c in columns], copy=False).from_(source, copy=False)
        sql = self.session._to_sql(query, dialect=duckdb)  # identifiers normalised as SQLFrame does
        with self._lock:
            self.session._conn.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS {sql}")
            self._view_names.add(name)
        return self.session.table(name)

    def materialize_aggregates(self, df: Any, steps: Steps, name: str) -> Any:
        """``df.where(cond).groupBy(*keys).agg(*aggregates)``, for each ``(cond, keys, aggregates)``
        of ``steps`` in turn (``cond`` None: every row), computed once and kept as
        :meth:`materialize` keeps a DataFrame: on DuckDB a table ``name`` (:meth:`release` drops
        it), on Spark cached.

        Every key and aggregate is a named expression (``alias``) over the previous step's columns
        (the first over ``df``'s). On DuckDB the table's SQL is written once, as nested
        ``GROUP BY`` subqueries, straight from the columns' expressions, as
        :meth:`materialize_layers` writes projections: SQLFrame's ``groupBy``/``agg`` copy and
        hash the whole expression tree at each step (the Engagement per account-day roll-up at
        1M events: about 0.1 s of Python). DuckDB plans the same query from either SQL.
        """
        if self.name != "duckdb":
            for cond, keys, aggregates in steps:
                df = (df if cond is None else df.where(cond)).groupBy(*keys).agg(*aggregates)
            return df.cache()
        from sqlglot import Dialect, exp, parse_one

        duckdb = Dialect.get_or_raise("duckdb")  # as DataFrame.sql(dialect="duckdb") writes it
        query: Any = parse_one(df.sql(dialect=duckdb, optimize=False, pretty=False), dialect=duckdb)
        for i, (cond, keys, aggregates) in enumerate(steps):
            source = query.subquery(f"_step{i}", copy=False)
            grouped = [k.expression.this.copy() for k in keys]  # GROUP BY the expressions, not names
            query = exp.select(*[c.expression for c in (*keys, *aggregates)], copy=False).from_(
                source, copy=False
            )
            if cond is not None:
                query = query.where(cond.expression, copy=False)
            query = query.group_by(*grouped, copy=False)
        sql = self.session._to_sql(query, dialect=duckdb)  # identifiers normalised as SQLFrame does
        with self._lock:
            self.session._conn.execute(f"CREATE OR REPLACE TABLE {_ident(name)} AS {sql}")
        return self.session.table(name)

    def checkpoint(self, df: Any, name: str) -> Any:
        """``df`` to build on, without keeping or computing anything: on DuckDB behind a view of
        its own (``name`` and a number), on Spark ``df`` itself.

        SQLFrame deep-copies a DataFrame's whole expression tree, the steps before included, on
        every operation and hashes each step by generating its SQL; what is built on a view
        carries the view's name instead. For a large projection (the event contract's) that is
        most of the Python cost of a run; DuckDB expands the view when it plans the query, so the
        query is the same.
        """
        if self.name != "duckdb":
            return df
        sql = df.sql(dialect="duckdb", optimize=False, pretty=False)
        with self._lock:
            self._views += 1
            view = f"{name}_{self._views}"
            self.session._conn.execute(f"CREATE OR REPLACE VIEW {_ident(view)} AS {sql}")
        return self.session.table(view)

    def release(self, df: Any, name: str) -> None:
        """Drop what :meth:`materialize` kept under ``name``."""
        if self.name == "duckdb":
            with self._lock:
                kind = "VIEW" if name in self._view_names else "TABLE"
                self._view_names.discard(name)
                self.session._conn.execute(f"DROP {kind} IF EXISTS {_ident(name)}")
        elif hasattr(df, "unpersist"):
            df.unpersist()

    def try_cast(self, col: Any, type_name: str) -> Any:
        """``col`` cast to ``type_name`` (a Spark type name), NULL where the value does not convert."""
        if self.name == "duckdb":
            from sqlframe.duckdb import Column
            from sqlglot import exp

            target = exp.DataType.build(type_name, dialect="spark")
            return Column(exp.TryCast(this=col.column_expression, to=target))
        return col.try_cast(type_name)

    def json_string(self, col: Any, path: str) -> Any:
        """The text at JSON ``path`` (``$.a.b``) of a JSON-text column, NULL when absent.

        DuckDB raises on malformed JSON (Spark gives NULL): pass only text :meth:`json_valid` accepts.
        """
        if self.name == "duckdb":
            return self.F.call_function("json_extract_string", col, self.F.lit(path))
        return self.F.get_json_object(col, path)

    def json_valid(self, col: Any) -> Any:
        """Whether JSON text parses (NULL for NULL); never raises (module doc: "malformed JSON")."""
        F = self.F
        if self.name == "duckdb":
            return F.call_function("json_valid", col)
        # try_parse_json ignores what follows a complete value ('{"a": 1} junk'); DuckDB does not
        trailing = col.rlike(r"^\s*[\[{]") & ~col.rlike(r"[\]}]\s*$")
        return F.when(col.isNotNull(), F.try_parse_json(col).isNotNull() & ~trailing)

    def json_is_object(self, col: Any, path: str) -> Any:
        """Whether the value at ``path`` of valid JSON text is an object: NULL when absent or JSON null."""
        F = self.F
        if self.name == "duckdb":
            kind = F.call_function("json_type", col, F.lit(path))
        else:
            kind = F.schema_of_variant(F.try_variant_get(F.try_parse_json(col), path, "variant"))
        return F.when(kind.isNull() | kind.isin("NULL", "VOID"), F.lit(None).cast("boolean")).otherwise(
            kind.startswith("OBJECT")
        )

    def create_dataframe(self, frame: pd.DataFrame) -> Any:
        """A small pandas frame as an engine DataFrame.

        DuckDB: copied into a table of its own, when every text column holds only strings (the
        column types are then those of the frame). SQLFrame's ``createDataFrame`` writes the rows
        as literals into the expression tree, which every later operation deep-copies: a month's
        2,000 upstream accounts joined with engagement cost a third of the Engagement run.
        """
        if (
            self.name != "duckdb"
            or frame.empty
            or not all(
                frame[c].map(lambda v: isinstance(v, str)).all()
                for c in frame.columns
                if frame[c].dtype == object
            )
        ):
            return self.session.createDataFrame(frame)
        with self._lock:
            self._views += 1
            table = f"engine_frame_{self._views}"
            self.session._conn.register("_engine_frame", frame)
            try:
                self.session._conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _engine_frame")
            finally:
                self.session._conn.unregister("_engine_frame")
        return self.session.table(table)

    def to_pandas(self, df: Any, sort_by: list[str] | None = None) -> pd.DataFrame:
        if self.name == "duckdb":
            # SQLFrame's toPandas goes through pandas.read_sql (row by row over the DB-API cursor);
            # fetching Arrow from DuckDB is several times faster on large results
            *setup, query = df.sql(dialect="duckdb", optimize=False, pretty=False, as_list=True)
            with self._lock:
                for statement in setup:
                    self.session._conn.execute(statement)
                out = self.session._conn.sql(query).to_arrow_table().to_pandas()
        else:
            out = df.toPandas()
        for col in out.columns:
            if isinstance(out[col].dtype, pd.DatetimeTZDtype):
                out[col] = out[col].dt.tz_convert("UTC").dt.tz_localize(None)
            elif out[col].dtype == object and out[col].isna().any():
                out[col] = out[col].astype(object).where(out[col].notna(), None)  # NaN (Spark) -> None
        if sort_by:
            out = out.sort_values(sort_by, kind="mergesort").reset_index(drop=True)
        return out

    def write_parquet(self, df: Any, path: Path | str) -> int:
        """Write ``df`` as Parquet under the folder ``path`` (replaced) and return its row count.

        For results too large to collect: neither engine holds the whole result in one process
        (Spark's tasks write their partitions; ``toPandas`` would gather them in the driver's
        heap first), and the reader takes the files with any Parquet reader.
        """
        import shutil

        import pyarrow.dataset as ds

        out = Path(path)
        shutil.rmtree(out, ignore_errors=True)
        if self.name == "duckdb":
            out.mkdir(parents=True)
            *setup, query = df.sql(dialect="duckdb", optimize=False, pretty=False, as_list=True)
            target = str(out / "part-0.parquet").replace("'", "''")
            with self._lock:
                for statement in setup:
                    self.session._conn.execute(statement)
                self.session._conn.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")
        else:
            df.write.mode("overwrite").parquet(str(out))
        return ds.dataset(str(out), format="parquet").count_rows()

    def stop(self) -> None:
        if self.name == "spark":
            self.session.stop()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"engine: {name!r} is not a plain identifier")
    return name


def engine_name(explicit: str | None = None) -> str:
    name = explicit or os.environ.get("WORKBOOK_ENGINE") or cfgmod.get().pipelines.engine.default
    if name not in ENGINES:
        raise ValueError(f"WORKBOOK_ENGINE: expected one of {', '.join(ENGINES)}, got {name!r}")
    return name


def _duckdb_engine(conf: cfgmod.DuckDBConfig) -> Engine:
    import duckdb
    from sqlframe.duckdb import DuckDBSession, Window
    from sqlframe.duckdb import functions as F
    from sqlframe.duckdb import types as T

    conn = duckdb.connect()
    conn.execute(f"SET memory_limit = '{conf.memory_limit}'")
    conn.execute(f"SET threads = {int(conf.threads)}")
    conn.execute("SET TimeZone = 'UTC'")
    session = DuckDBSession(conn=conn)
    return Engine("duckdb", session, F, T, Window)


def spark_environment() -> dict[str, str]:
    """Environment Spark needs on these machines: Java 17+, loopback, this interpreter."""
    java = javaenv.find_java()
    if java is None:
        raise EngineUnavailable(javaenv.HOW_TO_FIX)
    return {
        "JAVA_HOME": str(java.home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def _spark_engine(conf: cfgmod.SparkConfig) -> Engine:
    os.environ.update(spark_environment())
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    master = os.environ.get("WORKBOOK_SPARK_MASTER") or conf.master
    builder = (
        SparkSession.builder.master(master)
        .appName("workbook")
        .config("spark.driver.memory", conf.driver_memory)
        .config("spark.executor.memory", conf.executor_memory)
        .config("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
        .config("spark.sql.adaptive.enabled", str(conf.adaptive).lower())
        .config("spark.sql.adaptive.skewJoin.enabled", str(conf.adaptive).lower())
        .config("spark.sql.execution.arrow.pyspark.enabled", str(conf.arrow).lower())
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return Engine("spark", session, F, T, Window)


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def get_engine(name: str | None = None) -> Engine:
    """The process's engine of that name (started once, reused: a Spark session costs seconds).

    Starting one also moves the objects the process holds by then (modules imported, the
    engine) out of Python's cyclic garbage collector (``gc.freeze``): a pipeline builds its
    SQL as thousands of small expression trees, each full collection re-scanned every object of
    the process (the Engagement run at 1M events: 0.2 s in three full collections, 0.04 s
    after). Objects still in use are unaffected; a cycle that was alive at that point and dies
    later is not reclaimed before the process ends (a run is one process).
    """
    name = engine_name(name)
    with _lock:
        if name not in _engines:
            conf = cfgmod.get().pipelines.engine
            _engines[name] = _duckdb_engine(conf.duckdb) if name == "duckdb" else _spark_engine(conf.spark)
            gc.freeze()
        return _engines[name]


def stop_engines() -> None:
    with _lock:
        for eng in _engines.values():
            eng.stop()
        _engines.clear()

"""One PySpark DataFrame API, two engines: SQLFrame on in-process DuckDB (default) or Apache Spark.

Engagement transformations are written once against the PySpark DataFrame API and take an
:class:`Engine`, using ``engine.F`` (functions), ``engine.Window`` and ``engine.T`` (types)
instead of importing ``pyspark.sql`` directly, so the same code runs on either engine.

``WORKBOOK_ENGINE`` (``duckdb`` | ``spark``) picks the engine, default from config;
``WORKBOOK_SPARK_MASTER`` the Spark master (``local[*]`` by default, any master URL).

Where the engines differ (kept here, in one place):
- reading Parquet: Spark takes a list of files; SQLFrame reads a list too, but its schema
  union across files with different columns differs, so the engagement code reads each
  schema version separately and maps it (see the schema contract);
- ``toPandas()`` timestamps: Spark returns naive datetimes in the session time zone (we pin
  it to UTC), DuckDB returns tz-aware UTC: :meth:`Engine.to_pandas` normalises both to naive UTC;
- ordering: neither engine guarantees row order; :meth:`Engine.to_pandas` sorts by the given keys.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pandas as pd

from helpers import config as cfgmod
from helpers import javaenv

ENGINES = ("duckdb", "spark")


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

    def read_parquet(self, paths: list[str]) -> Any:
        if not paths:
            raise ValueError("read_parquet: no files to read")
        return self.session.read.parquet(*paths)

    def create_dataframe(self, frame: pd.DataFrame) -> Any:
        return self.session.createDataFrame(frame)

    def to_pandas(self, df: Any, sort_by: list[str] | None = None) -> pd.DataFrame:
        out = df.toPandas()
        for col in out.columns:
            if isinstance(out[col].dtype, pd.DatetimeTZDtype):
                out[col] = out[col].dt.tz_convert("UTC").dt.tz_localize(None)
        if sort_by:
            out = out.sort_values(sort_by, kind="mergesort").reset_index(drop=True)
        return out

    def stop(self) -> None:
        if self.name == "spark":
            self.session.stop()


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
    """The process's engine of that name (started once, reused: a Spark session costs seconds)."""
    name = engine_name(name)
    with _lock:
        if name not in _engines:
            conf = cfgmod.get().pipelines.engine
            _engines[name] = _duckdb_engine(conf.duckdb) if name == "duckdb" else _spark_engine(conf.spark)
        return _engines[name]


def stop_engines() -> None:
    with _lock:
        for eng in _engines.values():
            eng.stop()
        _engines.clear()

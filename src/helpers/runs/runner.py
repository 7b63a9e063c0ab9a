"""Execute a notebook with papermill into a per-run archive: pipelines, and any other notebook.

:func:`execute_notebook` is the core: it executes any notebook (a pipeline, a runbook, a report)
into a given archive folder. :func:`run_pipeline` adds what a pipeline run needs around it
(configuration, parameters, the run record and lock in ``pipeline_runs``) and publishes the run:
its kernel is marked as the run (``warehouse.RUNNER_ENV``), so every mart partition it writes is
staged, and once the notebook succeeded ``records.finish_run`` publishes them all with the run's
success in one transaction; a failed, interrupted or killed run leaves every partition as it was.
The runner owns ``run_id``, ``as_of`` and the partition parameter (refused as ``-p``), and refuses
an ``as_of`` before the period it builds begins.

One run = one folder (for a pipeline ``runs/<pipeline>/<date>/<run_id>/``) holding:

- ``notebook.ipynb``   the executed notebook (also when it failed),
- ``notebook.html``    a self-contained rendering (no CDN fetches, images inline),
- ``parameters.json``  the parameters papermill injected (never secrets),
- ``scraps.json``      the scraps the notebook glued, read back with scrapbook,
- ``run.log``          papermill's log with the cells' output,
- ``run.json``         the run's record (status, times, error, code version).

The folder is assembled under a hidden temporary name beside its final place and renamed in
one step, so it appears complete or not at all. Secrets are scrubbed from every file before
the rename. Then the run history page ``runs/index.html`` is rewritten (:mod:`helpers.runs.history`);
rendering ``notebook.html`` is :mod:`helpers.runs.render`'s.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

# jsonschema (imported through papermill -> nbformat, and scrapbook in every kernel) imports the
# optional ``rfc3987_syntax`` to check the "iri" string format, which builds a Lark grammar at import:
# 40 % of a pipeline kernel's import time (2-3.5 s per kernel on 2 busy cores). Nothing here checks
# that format (nbformat validates without format checkers), so it is kept out: here for the runner's
# process, and in every kernel through kernels.KERNEL_EXEC_LINES (benchmarks/bench_close.py measures it).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import nbformat  # noqa: E402
import papermill as pm  # noqa: E402
import yaml  # noqa: E402
from papermill.clientwrap import PapermillNotebookClient  # noqa: E402
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402
from papermill.log import logger as papermill_logger  # noqa: E402
from papermill.utils import merge_kwargs, remove_args  # noqa: E402

from helpers.core import config as cfgmod  # noqa: E402
from helpers.core import kernels, paths, secrets  # noqa: E402
from helpers.core.errors import EXIT_BLOCKED, EXIT_FAILED, EXIT_OK, UsageError  # noqa: E402
from helpers.core.kernels import KERNEL_ARGUMENTS, RUN_KEYS, kernel_stderr  # noqa: E402
from helpers.core.periods import period_days  # noqa: E402
from helpers.core.timeutil import (  # noqa: E402
    CLOCK_ENV,
    UTC,
    as_utc,
    clock_handoff,
    default_as_of,
    parse_logical_date,
)
from helpers.runs import history, locks  # noqa: E402
from helpers.runs import records as runs  # noqa: E402
from helpers.runs.render import render_html, warm_renderer  # noqa: E402  # also runner.render_html
from helpers.runs.scraps import read_scraps  # noqa: E402
from helpers.storage.warehouse import RUNNER_ENV  # noqa: E402

log = logging.getLogger(__name__)


class _RunNotebookManager(NotebookExecutionManager):
    """papermill's manager without its two saves per cell.

    papermill rewrites the whole output notebook when each cell (markdown included) starts and
    ends: 40-60 serialisations of a 50-100 KB notebook per pipeline run, 5 ms each on an idle
    core. The output of a run goes to a staging folder that is deleted if the runner itself dies,
    so nobody reads those copies; the notebook is still written when the run starts, when it
    ends (also on a failure, a timeout or a dead kernel: papermill saves in ``finally`` and before
    raising), and every ``autosave_cell_every`` seconds during a long run.
    """

    _quiet = False  # inside a cell's start or end: papermill's save is skipped

    def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        warm_renderer()  # the kernel is up: warm the HTML renderer while the cells run
        with self._autosave_only():
            super().cell_start(cell, cell_index, **kwargs)

    def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        with self._autosave_only():
            super().cell_complete(cell, cell_index, **kwargs)

    @contextmanager
    def _autosave_only(self) -> Iterator[None]:
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False
        self.autosave_cell()

    def save(self, **kwargs: Any) -> None:
        if not self._quiet:
            super().save(**kwargs)


class _RunClient(PapermillNotebookClient):
    """papermill's notebook client, starting its kernel with an environment of the runner's choosing."""

    def __init__(self, nb_man: Any, *, kernel_env: Mapping[str, str] | None = None,
                 warm: kernels.WarmKernel | None = None, **kwargs: Any):  # fmt: skip
        if warm is not None:
            kwargs["km"] = warm.km  # already started: nbclient only connects a client to it
        kwargs.setdefault("kernel_manager_class", kernels.manager_class())  # Unix sockets
        super().__init__(nb_man, **kwargs)
        self.kernel_env = dict(kernel_env) if kernel_env is not None else None
        self.warm = warm

    def execute(self, **kwargs: Any) -> Any:
        if self.kernel_env is not None:
            kwargs.setdefault("env", dict(self.kernel_env))  # to the kernel manager's start_kernel
        for key, value in kernels.encryption_option().items():
            kwargs.setdefault(key, value)
        try:
            with kernel_stderr() as stderr_fd:
                kwargs.setdefault("stderr", stderr_fd)  # the kernel's Popen: kernels.KERNEL_TCP_WARNING
                return super().execute(**kwargs)
        finally:
            if self.warm is not None and self.km is not None:  # nbclient leaves a kernel it did not start
                self._cleanup_kernel()

    def papermill_execute_cells(self) -> None:
        if self.warm is not None:
            self.warm.prepare(self)  # the run's id, clock and working directory
        super().papermill_execute_cells()


class _RunEngine(NBClientEngine):
    """papermill's nbclient engine with :class:`_RunNotebookManager` (``engine_name="workbook"``)
    and :class:`_RunClient` (``kernel_env``: the kernel's whole environment)."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        kernel_env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        # NBClientEngine.execute_managed_notebook (papermill 2.x), with the client above
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=papermill_logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        return _RunClient(nb_man, kernel_env=kernel_env, **final_kwargs).execute()

    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        **kwargs: Any,
    ) -> Any:
        nb_man = _RunNotebookManager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register("workbook", _RunEngine)


ARCHIVE_FILES = ("notebook.ipynb", "notebook.html", "parameters.json", "scraps.json", "run.log", "run.json")

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    pipeline: str
    logical_date: str
    status: str
    archive: Path | None
    error: str | None = None
    failed_cell: int | None = None

    @property
    def exit_code(self) -> int:
        return {"succeeded": EXIT_OK, "blocked": EXIT_BLOCKED, "skipped": EXIT_OK}.get(
            self.status, EXIT_FAILED
        )


@lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe`` of the repository (``-dirty`` when it has uncommitted changes)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(paths.repo_root()), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from helpers import __version__

    return f"v{__version__}"


def parse_cli_params(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` strings to typed values (YAML scalars: ``3`` int, ``true`` bool, else str)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            shown = secrets.redact(pair, secrets.secret_values())[0]  # `-p <token>` must not echo it
            raise UsageError(f"-p {shown!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) or value is None:
            value = raw
        out[key.strip()] = value
    return out


def declared_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """The parameters the notebook's ``parameters`` cell declares (papermill's own reading)."""
    return pm.inspect_notebook(str(notebook))


def check_parameters(notebook: Path, extra: Mapping[str, Any], *, label: str | None = None) -> dict[str, Any]:
    """The notebook's declared parameters; raises :class:`UsageError` for an undeclared name in
    ``extra`` or a value that is or contains a secret in any form (secrets are never parameters;
    the message names the parameter, never the secret)."""
    declared = declared_parameters(notebook)
    unknown = sorted(set(extra) - set(declared))
    if unknown:
        raise UsageError(
            f"{label or notebook}: no parameter(s) {', '.join(unknown)}; it declares: {', '.join(declared) or 'none'}"
        )
    secret_vals = secrets.secret_values()
    for k, v in extra.items():
        if secrets.contains_secret(str(v), secret_vals):
            raise UsageError(
                f"-p {k}: secrets are never notebook parameters; set them in the environment instead"
            )
    return declared


def refuse_runner_owned(extra: Mapping[str, Any], date_key: str) -> None:
    """Raise :class:`UsageError` naming the first parameter of ``extra`` the runner sets itself.

    The runner owns ``run_id`` (the run's provenance), ``as_of`` and the partition parameter
    ``date_key`` (``period`` or ``run_date``): overriding them would record and lock one run while
    the notebook computes or stamps another.
    """
    how = {
        "run_id": "each run gets its own id, recorded in pipeline_runs",
        "as_of": "set it with --as-of",
        date_key: "choose the partition with --date",
    }
    owned = sorted(set(extra) & set(how))
    if owned:
        raise UsageError(f"-p {owned[0]}: {owned[0]} is set by the runner; {how[owned[0]]}")


def check_as_of(pipeline_id: str, logical_date: str, as_of: dt.datetime) -> None:
    """Raise :class:`UsageError` when ``as_of`` is before the period ``logical_date`` begins.

    Such a run would see none of the period it builds and replace its partition with nothing.
    """
    start = dt.datetime.combine(period_days(logical_date)[0], dt.time(), UTC)
    if as_utc(as_of) < start:
        raise UsageError(
            f"--as-of {as_utc(as_of):%Y-%m-%dT%H:%M:%SZ} is before {pipeline_id} {logical_date} begins "
            f"({start:%Y-%m-%dT%H:%M:%SZ}): a run as of then sees none of the period it builds. Use an "
            f"--as-of at or after {start:%Y-%m-%dT%H:%M:%SZ}, or leave it out (default: the period's end)"
        )


def _injected_parameters(
    pipeline: cfgmod.Pipeline,
    logical_date: str,
    as_of: dt.datetime,
    run_id: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    declared = check_parameters(pipeline.notebook_path, extra, label=pipeline.notebook)
    date_key = "period" if pipeline.partition == "month" else "run_date"
    refuse_runner_owned(extra, date_key)
    base = {date_key: logical_date, "as_of": as_of.isoformat(), "run_id": run_id}
    params = {k: v for k, v in base.items() if k in declared}
    if date_key not in declared:
        raise UsageError(f"{pipeline.notebook}: its parameters cell must declare {date_key!r}")
    params.update(extra)
    return params


def _error_summary(exc: BaseException) -> tuple[str, int | None]:
    if isinstance(exc, PapermillExecutionError):
        evalue = (exc.evalue or "").strip().splitlines()
        first = evalue[0] if evalue else ""
        return (
            f"cell {exc.cell_index} (execution count {exc.exec_count}): {exc.ename}: {first}",
            exc.cell_index,
        )
    name = type(exc).__name__
    text = str(exc).strip().splitlines()
    if name == "DeadKernelError":
        return f"the kernel died during execution ({text[0] if text else 'no detail'})", None
    if name == "CellTimeoutError":
        return f"a cell exceeded the execution timeout ({text[0] if text else ''})", None
    return f"{name}: {text[0] if text else ''}", None


def _last_executed_cell(nb_path: Path) -> int | None:
    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:
        return None
    last = None
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("papermill", {})
        if meta.get("status") in ("running", "failed") or (
            meta.get("start_time") and not meta.get("end_time")
        ):
            return i
        if meta.get("end_time"):
            last = i
    return last


class _RedactingFormatter(logging.Formatter):
    """Each record with every form of the secrets replaced, before it reaches the file."""

    def __init__(self, fmt: str, secret_vals: list[str]):
        super().__init__(fmt)
        self.secret_vals = secret_vals

    def format(self, record: logging.LogRecord) -> str:
        return secrets.redact(super().format(record), self.secret_vals)[0]


class _FileLog:
    """Route papermill's logger (cell output included) to ``run.log`` for the run's duration.

    Every line is scrubbed of secrets as it is written, so the log of a killed run (left in its
    staging folder) holds none in any form.
    """

    def __init__(self, path: Path):
        self.secret_vals = secrets.secret_values()
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(
            _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", self.secret_vals)
        )
        self.logger = logging.getLogger("papermill")

    def __enter__(self) -> _FileLog:
        self.prev_level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.prev_level)
        self.handler.close()

    def write(self, line: str) -> None:
        line = secrets.redact(line, self.secret_vals)[0]
        self.handler.stream.write(line.rstrip("\n") + "\n")
        self.handler.flush()


def archive_dir(pipeline_id: str, logical_date: str, run_id: str) -> Path:
    return paths.runs_dir() / pipeline_id / logical_date / run_id


@dataclass(frozen=True)
class ExecutionResult:
    """What :func:`execute_notebook` did: the outcome, the archive and the notebook's scraps."""

    status: str  # succeeded | failed
    archive: Path
    started_at: dt.datetime
    finished_at: dt.datetime
    error: str | None = None
    failed_cell: int | None = None
    scraps: Mapping[str, tuple[str, Any]] = field(default_factory=dict)

    @property
    def html(self) -> Path:
        return self.archive / "notebook.html"

    def scrap(self, name: str, default: Any = None) -> Any:
        """The JSON value of one scrap (``default`` if the notebook did not glue it)."""
        found = self.scraps.get(name)
        return found[1] if found is not None else default


def execute_notebook(
    notebook: Path,
    archive: Path,
    parameters: Mapping[str, Any],
    *,
    clock: Clock,
    kernel_name: str = "python3",
    timeout_s: float | None = None,
    hide_code: bool = False,
    progress: bool = False,
    log_header: str | None = None,
    record: Mapping[str, Any] | None = None,
    started: dt.datetime | None = None,
    run_id: str | None = None,
) -> ExecutionResult:
    """Execute ``notebook`` with ``parameters`` into the folder ``archive`` (which must not exist).

    The folder gets the files of :data:`ARCHIVE_FILES`; it is assembled under a hidden name
    beside ``archive`` and renamed in one step, after every file was scrubbed of secrets. A
    failing notebook is archived and reported (``status`` ``failed``), not raised; anything else
    (an interrupt, a full disk) removes the partial folder and propagates. ``record`` adds fields
    to ``run.json`` (run id, pipeline, ...); ``started`` defaults to ``clock()``. ``run_id`` marks
    the kernel as the runner's run of that id (``warehouse.RUNNER_ENV``: its writes are staged for
    the run); without it the kernel has no marker, even if this process has one. The kernel is
    handed ``clock`` (:func:`kernel_environment`): the runs it starts record times on it. The caller
    validates ``parameters`` (see :func:`check_parameters`): they are injected as given.
    """
    started = started or clock()
    staging = archive.parent / f".{archive.name}.partial"
    staging.mkdir(parents=True, exist_ok=False)
    out_nb = staging / "notebook.ipynb"
    try:
        (staging / "parameters.json").write_text(json.dumps(dict(parameters), indent=2, sort_keys=True))
        status, error, failed_cell = _papermill(
            notebook,
            staging,
            parameters,
            kernel_name=kernel_name,
            timeout_s=timeout_s,
            progress=progress,
            log_header=log_header,
            kernel_env=kernel_environment(run_id, clock=clock),
        )
        if not out_nb.exists():  # papermill died before writing anything: keep the input for evidence
            shutil.copyfile(notebook, out_nb)
        try:
            scraps = read_scraps(out_nb)
        except Exception as exc:
            scraps = {}
            if status == "succeeded":
                status, error = "failed", f"could not read scraps: {exc}"
        _write_html_and_scraps(staging, scraps, hide_code=hide_code)
        finished = clock()
        run_record = _run_record(record, status, started, finished, error, failed_cell)
        (staging / "run.json").write_text(json.dumps(run_record, indent=2))
        secrets.scrub_tree(staging, secrets.secret_values())
        staging.rename(archive)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    refresh_history(archive, now=finished)
    return ExecutionResult(status, archive, started, finished, error, failed_cell, scraps)


def refresh_history(archive: Path, *, now: dt.datetime) -> None:
    """Rewrite the run history page (``runs/index.html``) when ``archive`` lies under ``runs/``.

    A failure to write it is logged as a warning: it never fails the run.
    """
    root = paths.runs_dir()
    try:
        if not archive.resolve().is_relative_to(root.resolve()):
            return  # an archive outside runs/ (a test's, a tool's) is not part of the history
        history.refresh(root, now=now)
    except Exception as exc:
        log.warning("the run history page %s was not written: %s", root / history.INDEX, exc)


def _papermill(
    notebook: Path,
    staging: Path,
    parameters: Mapping[str, Any],
    *,
    kernel_name: str,
    timeout_s: float | None,
    progress: bool,
    log_header: str | None,
    kernel_env: Mapping[str, str],
) -> tuple[str, str | None, int | None]:
    """Execute into ``staging/notebook.ipynb``, logging to ``staging/run.log``.

    Returns ``(status, error, failed_cell)``: a failing notebook is reported, not raised.
    """
    out_nb = staging / "notebook.ipynb"
    status, error, failed_cell = "succeeded", None, None
    with _FileLog(staging / "run.log") as flog:
        if log_header:
            flog.write(log_header)
        try:
            pm.execute_notebook(
                str(notebook),
                str(out_nb),
                parameters=dict(parameters),
                kernel_name=kernel_name,
                execution_timeout=int(timeout_s) if timeout_s else None,
                log_output=True,
                progress_bar=progress and _stderr_is_terminal(),  # never a bar into a log or a pipe
                cwd=str(notebook.parent),
                extra_arguments=list(KERNEL_ARGUMENTS),
                # The outputs are in once the last cell finished; a graceful shutdown then waits
                # for the kernel's interpreter teardown (DuckDB, matplotlib, threads): 2-4.6 s
                # per notebook measured on 2 busy cores. The kernel is a one-run process: killed.
                shutdown_kernel="immediate",
                engine_name="workbook",
                kernel_env=kernel_env,
                warm=_warm_kernel(kernel_name, kernel_env, cwd=str(notebook.parent)),
            )
        except Exception as exc:  # the notebook failed; the run is recorded, not raised
            status = "failed"
            error, failed_cell = _error_summary(exc)
            error = secrets.redact(error, flog.secret_vals)[0]  # shown on stderr and stored: never a secret
            if failed_cell is None and out_nb.exists():
                failed_cell = _last_executed_cell(out_nb)
            flog.write(f"FAILED: {error}")
    return status, error, failed_cell


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def warm_kernels(runs: int, *, kernel_name: str = "python3", spares: int = 1) -> Any:
    """A block in which up to ``runs`` runs take a kernel started while the previous ones computed
    (:mod:`helpers.core.kernels`)."""
    return kernels.warm_kernels(runs, kernels.starter(kernel_name), spares=spares)


def _warm_kernel(kernel_name: str, kernel_env: Mapping[str, str], *, cwd: str) -> kernels.WarmKernel | None:
    warm = kernels.take(kernels.kernel_key(kernel_name, kernel_env, KERNEL_ARGUMENTS, RUN_KEYS))
    if warm is not None:
        warm.run_env = {k: kernel_env.get(k) for k in RUN_KEYS}
        warm.cwd = cwd
    return warm


def kernel_environment(run_id: str | None, *, clock: Clock | None = None) -> dict[str, str]:
    """The environment of a kernel: this process's, marked as the runner's run ``run_id`` if given,
    and handed ``clock`` (``timeutil.CLOCK_ENV``): the runs the notebook starts (a runbook's fix)
    record their times on the runner's clock, the wall clock in production."""
    env = {k: v for k, v in os.environ.items() if k not in (RUNNER_ENV, CLOCK_ENV)}
    if run_id is not None:
        env[RUNNER_ENV] = run_id
    if clock is not None:
        env[CLOCK_ENV] = clock_handoff(clock)
    return env


def _write_html_and_scraps(staging: Path, scraps: Mapping[str, tuple[str, Any]], *, hide_code: bool) -> None:
    """``notebook.html`` (a placeholder page if rendering fails) and ``scraps.json``."""
    try:
        render_html(staging / "notebook.ipynb", staging / "notebook.html", hide_code=hide_code)
    except Exception as exc:
        (staging / "notebook.html").write_text(f"<html><body><p>rendering failed: {exc}</p></body></html>")
    (staging / "scraps.json").write_text(
        json.dumps({k: v for k, (_e, v) in scraps.items()}, indent=2, default=str)
    )


def _mark_archive_failed(final: Path, error: str) -> None:
    """An archive already renamed into place whose publish then failed says so in its ``run.json``."""
    record = final / "run.json"
    if record.is_file():
        data = json.loads(record.read_text())
        data.update(status="failed", error=secrets.redact(error, secrets.secret_values())[0])
        record.write_text(json.dumps(data, indent=2))


def _run_record(
    record: Mapping[str, Any] | None,
    status: str,
    started: dt.datetime,
    finished: dt.datetime,
    error: str | None,
    failed_cell: int | None,
) -> dict[str, Any]:
    """``run.json``: the caller's fields, the outcome and times, then code version and trigger."""
    head = dict(record or {})
    tail = {k: head.pop(k) for k in ("code_version", "trigger") if k in head}
    return {
        **head,
        "status": status,
        "started_at": as_utc(started).isoformat(),
        "finished_at": as_utc(finished).isoformat(),
        "error_summary": error,
        "failed_cell": failed_cell,
        **tail,
    }


def _pipeline_partition(
    config: cfgmod.WorkbookConfig, pipeline_id: str, date: str, notebook_override: Path | None
) -> tuple[cfgmod.Pipeline, str]:
    """The pipeline (its notebook present) and the partition label of ``date``; :class:`UsageError` else."""
    try:
        pipeline = config.pipelines.get(pipeline_id)
    except cfgmod.ConfigError as e:
        raise UsageError(str(e)) from None
    if notebook_override is not None:
        pipeline = pipeline.model_copy(update={"notebook": str(notebook_override)})
    if not pipeline.notebook_path.exists():
        raise UsageError(f"{pipeline_id}: notebook {pipeline.notebook} does not exist")
    try:
        return pipeline, parse_logical_date(date, pipeline.partition)
    except ValueError as e:
        raise UsageError(f"--date: {e}") from None


def run_pipeline(
    pipeline_id: str,
    date: str,
    *,
    clock: Clock,
    as_of: dt.datetime | None = None,
    params: Mapping[str, Any] | None = None,
    trigger: str = "manual",
    progress: bool = False,
    config: cfgmod.WorkbookConfig | None = None,
    notebook_override: Path | None = None,
) -> RunResult:
    """Run one pipeline for one partition and archive it. Raises :class:`UsageError` on bad input, and
    :class:`runs.RunConflict` (already running) or :class:`locks.PartitionLocked` (a published month)."""
    config = config or cfgmod.get()
    pipeline, logical_date = _pipeline_partition(config, pipeline_id, date, notebook_override)
    as_of = as_utc(as_of) if as_of else default_as_of(logical_date, pipeline.partition)
    check_as_of(pipeline_id, logical_date, as_of)
    locks.refuse_locked_run(pipeline_id, logical_date)  # a published month: refused before it starts
    started = clock()
    run_id = runs.new_run_id(pipeline_id, logical_date, started)
    parameters = _injected_parameters(pipeline, logical_date, as_of, run_id, dict(params or {}))
    version = code_version()
    runs.start_run(
        pipeline_id,
        logical_date,
        now=started,
        as_of=as_of,
        parameters=parameters,
        code_version=version,
        trigger=trigger,
        run_id=run_id,
    )

    final = archive_dir(pipeline_id, logical_date, run_id)
    try:
        result = execute_notebook(
            pipeline.notebook_path,
            final,
            parameters,
            clock=clock,
            kernel_name=config.pipelines.runner.kernel_name,
            timeout_s=pipeline.timeout_minutes * 60,
            hide_code=pipeline.family == "report",
            progress=progress,
            log_header=f"run {run_id}: {pipeline_id} {logical_date} as_of={as_of.isoformat()} code={version}",
            record={
                "run_id": run_id,
                "pipeline": pipeline_id,
                "logical_date": logical_date,
                "as_of": as_of.isoformat(),
                "code_version": version,
                "trigger": trigger,
            },
            started=started,
            run_id=run_id,
        )
        runs.save_scraps(run_id, result.scraps)
        runs.finish_run(
            run_id,
            status=result.status,
            now=result.finished_at,
            error_summary=result.error,
            failed_cell=result.failed_cell,
            archive_path=str(final),
        )
    except BaseException as exc:  # interrupted, refused publish or broken runner: never leave it 'running'
        error = _error_summary(exc)[0]
        runs.finish_run(run_id, status="failed", now=clock(), error_summary=error)
        _mark_archive_failed(final, error)
        if final.is_dir():  # the page listed it as it was renamed into place: show it failed
            refresh_history(final, now=clock())
        raise
    return RunResult(
        run_id, pipeline_id, logical_date, result.status, final, result.error, result.failed_cell
    )

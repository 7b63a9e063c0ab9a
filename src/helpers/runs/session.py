"""A notebook's session: the parameters in effect, and where it writes (the runner's run, or a scratch).

Every pipeline and report notebook opens its session in the cell after its parameters::

    session = open_session("profit_aggregate", period=period, as_of=as_of, run_id=run_id,
                           now=dt.datetime.now(dt.UTC))
    period, as_of = session.period, session.as_of_text
    session

**Runner or by hand.** The runner injects the run's id as ``run_id`` and marks the kernel of the run
with it (:data:`RUNNER_ENV`, see :func:`runner_run_id`); such a run stages its writes and the runner
publishes them when the notebook succeeded. A notebook executed any other way (JupyterLab,
nbconvert, a plain kernel, ``workbook validate``: no marker) is *interactive*: its session copies the
published warehouse into a scratch warehouse of its own (:mod:`helpers.runs.scratch`) and points
this kernel at it, so every write of the notebook (marts, check results, alerts, quarantine files)
lands in the scratch and the published warehouse is never written. The session's output says where
it writes and the command that publishes the same partition through the runner (a runner run's
session shows nothing: its record says it all).

**Defaults for today.** The parameters cell keeps literal defaults; an empty ``period`` means the
last complete month, an empty ``run_date`` the last complete day (yesterday), an empty ``as_of``
now. "Now" is the ``now`` the notebook's session cell reads from the wall clock and hands in: the
one clock read of a notebook (docs/architecture.md, "Time and as_of"); nothing here reads it. The
runner always injects the partition and ``as_of``, so a runner run never uses ``now``.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import dataclass
from pathlib import Path

from helpers.core.periods import month_of, previous_month
from helpers.core.timeutil import as_utc, parse_as_of, parse_logical_date
from helpers.runs import locks, scratch
from helpers.storage import warehouse

RUNNER_ENV = warehouse.RUNNER_ENV  # set by the runner in the kernel of each run: the run's id
MANUAL_RUN_ID = "manual"  # the notebooks' default run_id: not a runner run


def last_complete_month(now: dt.datetime) -> str:
    """The month before the one holding ``now`` (UTC): ``2026-12-06T07:00Z`` -> ``2026-11``."""
    return previous_month(month_of(as_utc(now).date()))


def last_complete_day(now: dt.datetime) -> str:
    """The day before the one holding ``now`` (UTC), as ``YYYY-MM-DD``."""
    return (as_utc(now).date() - dt.timedelta(days=1)).isoformat()


def effective_as_of(as_of: str, now: dt.datetime) -> dt.datetime:
    """``as_of`` parsed (aware UTC), or ``now`` to the second when it is empty."""
    if as_of and as_of.strip():
        return parse_as_of(as_of)
    return as_utc(now).replace(microsecond=0)


def effective_partition(value: str, kind: str, now: dt.datetime) -> str:
    """The partition label in effect: ``value`` validated, or the last complete month or day."""
    if value and value.strip():
        return parse_logical_date(value.strip(), kind)
    return last_complete_month(now) if kind == "month" else last_complete_day(now)


def runner_run_id(run_id: str) -> str | None:
    """The id of the runner's run executing this kernel, or None when the notebook runs by hand.

    Only the runner marks a kernel as its run (:data:`RUNNER_ENV`, set by ``helpers.runs.runner``
    in the kernel's environment); ``run_id`` must then be that run (or the default ``"manual"``).
    Without the marker the run is by hand whatever ``run_id`` says: a run id typed in, or injected
    earlier (an archived run's notebook executed again, as ``workbook validate`` does), publishes
    nothing.
    """
    marker = warehouse.kernel_run_id()
    given = (run_id or "").strip()
    if marker is None:
        return None
    if given not in ("", MANUAL_RUN_ID, marker):
        raise ValueError(f"run_id {given!r}: this kernel executes the runner's run {marker!r}")
    return marker


@dataclass(frozen=True)
class Session:
    """What a notebook run works on and where it writes; shown by hand, it is the notebook's first output."""

    pipeline: str
    run_id: str
    partition_kind: str  # month | day
    partition: str
    as_of: dt.datetime
    interactive: bool
    writes_to: str  # the warehouse this kernel writes (password hidden)
    published: str  # the published warehouse (password hidden)
    scratch: Path | None = None
    defaulted: tuple[str, ...] = ()  # parameters that were empty and took today's value
    lock: str | None = None  # why the partition is locked, when it is
    claimed: str | None = None  # a run id given to a run by hand (it claims nothing)

    @property
    def period(self) -> str:
        """The month in effect (``YYYY-MM``); for a daily notebook, the month of its day."""
        return self.partition if self.partition_kind == "month" else self.partition[:7]

    @property
    def run_date(self) -> str:
        """The day in effect (``YYYY-MM-DD``) of a daily notebook."""
        if self.partition_kind != "day":
            raise AttributeError(f"{self.pipeline} is monthly: use session.period")
        return self.partition

    @property
    def as_of_text(self) -> str:
        return self.as_of.isoformat()

    @property
    def publish_command(self) -> str:
        """The command that runs the same partition at the same ``as_of`` through the runner."""
        stamp = self.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"workbook run {self.pipeline} --date {self.partition} --as-of {stamp}"

    def lines(self) -> list[str]:
        """What the notebook's first output says."""
        what = f"{self.pipeline} {self.partition} as of {self.as_of_text}"
        if self.defaulted:
            what += f" ({'; '.join(f'{name} empty: {_DEFAULTS[name]}' for name in self.defaulted)})"
        if not self.interactive:
            return [
                f"Runner run {self.run_id}: {what}.",
                f"Writes the warehouse {self.writes_to} as this run: published when the whole notebook "
                "succeeded.",
            ]
        out = [
            f"Interactive run (outside the runner): {what}.",
            f"Writes only to the scratch warehouse {self.scratch}, a copy of the published "
            "warehouse taken when this session opened.",
            f"The published warehouse {self.published} is untouched.",
            f"To publish: {self.publish_command}",
        ]
        if self.claimed:
            out.append(
                f"run_id {self.claimed!r} is not the runner's run of this kernel: nothing is published."
            )
        if self.lock:
            out.append(f"Publishing is refused (exit 5) while {self.lock}")
        return out

    def _ipython_display_(self) -> None:
        """As a cell's result: a run by hand prints its message; a runner run shows nothing (its
        record and archive say it all, and a report's readers need no warehouse path)."""
        if self.interactive:
            print(repr(self))

    def __repr__(self) -> str:
        """:meth:`lines`, each wrapped at 100 columns (paths and commands are never split)."""
        wrap = textwrap.TextWrapper(
            width=100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
        )
        return "\n".join(part for line in self.lines() for part in wrap.wrap(line))


_DEFAULTS = {"period": "the last complete month", "run_date": "the last complete day", "as_of": "now"}
_LABEL = {"month": "period", "day": "run_date"}  # the partition parameter of each kind of notebook


def open_session(
    pipeline: str,
    *,
    as_of: str,
    run_id: str,
    now: dt.datetime,
    period: str | None = None,
    run_date: str | None = None,
) -> Session:
    """The session of one notebook run; an interactive one gets its scratch warehouse (module doc).

    Pass ``period`` (monthly notebooks) or ``run_date`` (daily ones) as the notebook received it;
    empty values take today's defaults from ``now`` (the notebook's one clock read).
    """
    if (period is None) == (run_date is None):
        raise ValueError("open_session: pass exactly one of period= (monthly) or run_date= (daily)")
    kind, given = ("month", period) if period is not None else ("day", run_date)
    partition = effective_partition(given or "", kind, now)
    when = effective_as_of(as_of, now)
    defaulted = tuple(
        name for name, value in ((_LABEL[kind], given), ("as_of", as_of)) if not (value or "").strip()
    )
    owner = runner_run_id(run_id)
    if owner is not None:
        url = warehouse.redacted_url()
        return Session(pipeline, owner, kind, partition, when, False, url, url, defaulted=defaulted)
    published_url = scratch.published_url()
    path = scratch.open_scratch(pipeline, published_url)
    held = scratch.release_locks(now)
    lock = next(
        (k for k in held if (k.kind, k.target, k.partition) == (locks.PIPELINE, pipeline, partition)), None
    )
    return Session(
        pipeline,
        MANUAL_RUN_ID,
        kind,
        partition,
        when,
        True,
        warehouse.redacted_url(),
        warehouse.redacted_url(published_url),
        scratch=path,
        defaulted=defaulted,
        lock=lock.describe(f"{pipeline} {partition}") if lock else None,
        claimed=run_id.strip() if (run_id or "").strip() not in ("", MANUAL_RUN_ID) else None,
    )

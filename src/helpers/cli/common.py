"""Shared pieces of the CLI layer: the wall clock (read only here) and argument parsing."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
from collections.abc import Iterator
from typing import Any

from helpers.core.errors import UsageError
from helpers.core.timeutil import UTC, parse_as_of


def wall_clock() -> dt.datetime:
    """The real clock. Only the CLI layer calls this; everything below takes ``as_of``/``now``."""
    return dt.datetime.now(UTC)


def as_of_arg(text: str | None, *, default: dt.datetime | None = None) -> dt.datetime | None:
    """Parse ``--as-of`` (ISO, UTC if naive); a bad value is a usage error naming the flag."""
    if text is None:
        return default
    try:
        return parse_as_of(text)
    except ValueError as e:
        raise UsageError(f"--as-of: {e}") from None


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C: the run in flight is recorded failed and its lock released."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""A decode worker process for the Kafka extract: a batch's fast path on the second core.

The consumer's loop (``helpers.storage.extract.kafka``) hands each full batch's message values to
:class:`DecodeWorker` and goes on consuming the next batch while the worker runs
:func:`helpers.storage.extract.kafka_batch.fast_table` on it (orjson decode, pseudonymisation,
the inlined Segment v1 checks, Arrow columns: pure Python per message, so a thread would hold the
GIL the loop and the landing writer need). The worker returns the rows it decoded as an Arrow
table and the indices it left to the per-message path, which the consumer then decodes itself,
exactly as a batch decoded in process; nothing is written or committed by the worker.

One batch at a time: :meth:`DecodeWorker.submit` sends a batch, :meth:`DecodeWorker.result`
receives its decode. The worker is a new interpreter running this module (``python -m``), not a
fork (the consumer holds librdkafka threads, which a fork would copy half-way) and not a
``multiprocessing`` spawn (which re-imports the caller's main script, running an unguarded one
again). It holds only its two pipe ends: when the consumer dies, even by SIGKILL, its reads end
and it exits. Any failure in the worker (or its death) is raised by
:meth:`DecodeWorker.result` as :class:`DecodeFailed`, and the consumer treats it like a failed
write: nothing of that batch is committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

_STOP = None


class DecodeFailed(RuntimeError):
    """The decode worker failed on a batch or died."""


def _serve(requests: Connection, replies: Connection) -> None:  # pragma: no cover - runs in the worker
    """(Worker process) answer each (values, salt) with ``("ok", (table, slow))`` or ``("error", text)``."""
    from helpers.storage.extract.kafka_batch import fast_table

    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):  # the consumer is gone
            return
        if request is _STOP:
            return
        try:
            reply: tuple[str, Any] = ("ok", fast_table(*request))
        except BaseException:
            reply = ("error", traceback.format_exc())
        try:
            replies.send(reply)
        except (BrokenPipeError, OSError):
            return


class DecodeWorker:
    """One worker process decoding one batch at a time for an ``EventConsumer``; started lazily."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None
        self._busy = False

    def start(self) -> None:
        """Start the process (its imports take a moment: call it early, e.g. while joining the group)."""
        if self._process is not None:
            return
        their_requests, ours = os.pipe()
        our_replies, theirs = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(their_requests), str(theirs)],
                pass_fds=(their_requests, theirs),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(their_requests)  # the worker holds the only other ends: EOF once we are gone
            os.close(theirs)
        self._requests = Connection(ours, readable=False)
        self._replies = Connection(our_replies, writable=False)

    @property
    def busy(self) -> bool:
        """A batch was submitted and its result not yet taken."""
        return self._busy

    def submit(self, values: Sequence[bytes | None], salt: str) -> None:
        """Send a batch's message values to the worker (one batch at a time)."""
        if self._busy:
            raise RuntimeError("the decode worker already holds a batch: take its result first")
        self.start()
        assert self._requests is not None
        try:
            self._requests.send((list(values), salt))
        except (BrokenPipeError, OSError) as e:
            raise DecodeFailed(f"kafka decode worker is gone ({e})") from None
        self._busy = True

    def result(self) -> tuple[pa.Table, list[int]]:
        """The submitted batch's (table of fast rows, indices for the per-message path)."""
        if not self._busy:
            raise RuntimeError("no batch was submitted to the decode worker")
        self._busy = False
        assert self._replies is not None
        try:
            status, payload = self._replies.recv()
        except (EOFError, OSError) as e:
            code = self._process.poll() if self._process is not None else None
            raise DecodeFailed(f"kafka decode worker died (exit code {code}): {e!r}") from None
        if status != "ok":
            raise DecodeFailed(f"kafka decode worker failed:\n{payload}")
        return payload

    def close(self) -> None:
        """Stop the worker (a pending batch is dropped: its offsets were never committed)."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._busy:  # mid-batch: nobody wants its answer
            process.kill()
        else:
            try:
                assert self._requests is not None
                self._requests.send(_STOP)
            except (BrokenPipeError, OSError):
                pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for conn in (self._requests, self._replies):
            if conn is not None:
                conn.close()
        self._requests = self._replies = None
        self._busy = False


if __name__ == "__main__":  # pragma: no cover - the worker process
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))

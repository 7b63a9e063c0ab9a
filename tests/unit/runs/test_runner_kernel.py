"""The runner's kernels: ipykernel's plaintext-TCP warning is not printed once per notebook run."""

from __future__ import annotations

import io
import os
import time

import pytest

from helpers.core import kernels

pytestmark = pytest.mark.unit


def _drain(stream: io.StringIO, expected: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while expected not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    return stream.getvalue()


def test_kernel_stderr_drops_only_the_tcp_warning():
    target = io.StringIO()
    with kernels.kernel_stderr(target) as fd:
        os.write(fd, b"[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All ...\n")
        os.write(fd, b"Traceback: the kernel died\n")
    text = _drain(target, "the kernel died")
    assert text == "Traceback: the kernel died\n"

"""The warm-kernel pool's accounting: a block starts no more kernels than its runs, nested blocks add
their runs, and runs pre-paid by the entry point (``kernels.early``) are not started twice."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from helpers.core import kernels

pytestmark = pytest.mark.unit

KEY = ("python3", (), ())


class FakeKernel:
    """Stands for a started kernel: counts its shutdown."""

    def __init__(self, key=KEY):
        self.key = key
        self.stopped = False

    def alive(self):
        return not self.stopped

    def shutdown(self):
        self.stopped = True


class Starter:
    def __init__(self):
        self.started: list[FakeKernel] = []
        self.lock = threading.Lock()

    def __call__(self):
        kernel = FakeKernel()
        with self.lock:
            self.started.append(kernel)
        return kernel


def test_a_block_starts_at_most_its_runs_and_stops_the_spares_left():
    start = Starter()
    with kernels.warm_kernels(3, start, spares=2) as pool:
        taken = [pool.take(KEY) for _ in range(3)]
    assert all(isinstance(k, FakeKernel) for k in taken)
    assert len(start.started) == 3, "one kernel per run, no extra spare"
    assert not any(k.stopped for k in taken), "a taken kernel belongs to its run"


def test_nested_blocks_add_their_runs_and_prepaid_runs_are_not_counted_twice():
    start = Starter()
    with kernels.warm_kernels(2, start, spares=2, prepaid=True) as outer:
        with kernels.warm_kernels(2, Starter(), spares=2) as inner:  # the close: its two reports
            assert inner is outer, "the nested block uses the outer pool and its starter"
            with kernels.warm_kernels(3, Starter(), spares=2):  # wave A: three runs
                for _ in range(5):
                    assert kernels.take(KEY) is not None
    assert len(start.started) == 5, "2 pre-paid + 3 more: as many kernels as runs"
    assert all(k.stopped is False for k in start.started)


def test_prepaid_kernels_not_taken_are_shut_down():
    start = Starter()
    with kernels.warm_kernels(2, start, spares=2, prepaid=True) as pool:
        pool.take(KEY)
    assert len(start.started) == 2
    assert [k.stopped for k in start.started].count(True) == 1, "the unused spare was stopped"


def test_a_kernel_started_with_another_key_is_not_handed_out():
    start = Starter()
    with kernels.warm_kernels(1, start) as pool:
        assert pool.take(("python3", (("A", "1"),), ())) is None
    assert start.started[0].stopped


@pytest.mark.parametrize(
    ("argv", "early"),
    [
        (["close", "--month", "2026-10"], True),
        (["close", "--help"], False),
        (["runs"], False),
        ([], False),
    ],
)
def test_early_only_for_the_close(argv, early, monkeypatch):
    started = []
    monkeypatch.setattr(kernels, "starter", lambda *a: lambda: started.append(1) or FakeKernel())
    with kernels.early(argv) as pool:
        if early:
            assert pool is not None
            assert pool.take(KEY) is not None and pool.take(KEY) is not None
        else:
            assert pool is None
    assert len(started) == (2 if early else 0)


def test_early_is_off_with_warm_kernels_off(monkeypatch):
    monkeypatch.setenv("WORKBOOK_WARM_KERNELS", "0")
    with kernels.early(["close", "--month", "2026-10"]) as pool:
        assert pool is None


def test_the_warm_line_imports_with_the_collector_off_and_leaves_it_on_with_the_imports_frozen(tmp_path):
    (tmp_path / "allocates_a_lot.py").write_text("KEPT = [[i] for i in range(200_000)]\n")
    probe = (
        "import gc, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: seen.append(phase))\n"
        f"exec({kernels.warm_line(('json', 'no_such_module_here', 'allocates_a_lot'))!r})\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 200_000, 'allocates_a_lot' in sys.modules,"
        " len(seen), sorted(k for k in ('_g', '_i', '_m') if k in globals()))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True", "0", "[]"], out

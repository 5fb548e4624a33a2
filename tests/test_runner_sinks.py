"""A sink defined here, in the test module, works on every backend (real SLURM included).

``Tally`` must run in the parent (``where = "parent"``): records made in workers are
sent back and written there. ``PerProcess`` writes from wherever the call ran.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT

from memo import Runner, grid
from memo.sinks import recorder

HERE = Path(__file__).resolve().parent
PARENT = os.getpid()


class Tally:
    """Keeps every record, with who wrote it, in this (the parent) process."""

    where = "parent"

    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[str, ...], dict, int]] = []
        self.flushes = 0

    def write(self, record, call) -> None:
        self.rows.append((call.function, tuple(call.arguments), dict(record), os.getpid()))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


class PerProcess:
    """Appends one line per record to a file named by the process that made it."""

    def __init__(self) -> None:
        self.folder = os.environ.get("MEMO_TEST_SINK_DIR", "")

    def write(self, record, call) -> None:
        with open(os.path.join(self.folder, f"rows-{os.getpid()}"), "a") as f:
            f.write(f"{record['x']} {record['y']}\n")


TALLY = Tally()


@recorder(TALLY)
@recorder(PerProcess())
def cube(x: int) -> dict:
    if x == 3:
        raise ValueError("three")
    return {"y": x ** 3, "pid": os.getpid()}


def _check(tmp_path: Path, report, n: int, in_workers: bool) -> None:
    want = [x for x in range(n) if x != 3]
    assert (report.done, report.failed) == (n, 1)
    assert report.failures[0].settings == {"x": 3}
    assert sorted(r["x"] for _, _, r, _ in TALLY.rows) == want
    assert {(f, a) for f, a, _, _ in TALLY.rows} == {("test_runner_sinks.cube", ("x",))}
    assert {writer for _, _, _, writer in TALLY.rows} == {PARENT}  # written in the parent
    made = {r["pid"] for _, _, r, _ in TALLY.rows}
    assert (PARENT not in made) == in_workers
    assert TALLY.flushes >= 1  # the run flushed its sinks at the end
    lines = [line.split() for p in tmp_path.glob("rows-*") for line in p.read_text().splitlines()]
    assert Counter(int(x) for x, _ in lines) == Counter(want)
    assert {int(p.name.split("-")[1]) for p in tmp_path.glob("rows-*")} == made


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    TALLY.rows.clear()
    TALLY.flushes = 0
    monkeypatch.setenv("MEMO_TEST_SINK_DIR", str(tmp_path))
    cube.__wrapped__.memo_recorder.sink.folder = str(tmp_path)  # the parent's copy
    return tmp_path


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "loky"])
def test_a_sink_of_ones_own_on_local_backends(fresh, backend):
    report = Runner(backend, n_jobs=2).run(cube, grid(x=range(20)), errors="return",
                                           quiet=True)
    _check(fresh, report, 20, backend in ("processes", "loky"))


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_a_sink_of_ones_own_on_slurm(fresh, monkeypatch):
    pytest.importorskip("submitit")
    # the array tasks import this module by name, and memo from this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    report = Runner("slurm", n_jobs=3, folder=fresh / "jobs", poll_interval=0.2).run(
        cube, grid(x=range(9)), errors="return", quiet=True)
    _check(fresh, report, 9, True)


def test_a_capture_shared_by_threads_sends_each_record_once_with_its_own_call():
    """Threads of one worker process (a Dask worker) write into one capture while batches
    take what it holds: no record is lost, sent twice, or paired with another's call."""
    import sys
    import threading

    from memo.runner.capture import CaptureSink

    capture = CaptureSink(None)
    taken: list[tuple[dict, object]] = []
    done = threading.Event()

    def writer(t: int) -> None:
        for i in range(20_000):
            capture.write({"t": t, "i": i}, (t, i))

    def taker() -> None:
        while not done.is_set():
            got = capture.take()
            if got is not None:
                taken.extend(zip(*got))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    pulling = threading.Thread(target=taker)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch every few bytecodes: races show
    try:
        pulling.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        pulling.join()
    finally:
        sys.setswitchinterval(interval)
    rest = capture.take()
    if rest is not None:
        taken.extend(zip(*rest))
    assert len(taken) == 80_000
    assert all((record["t"], record["i"]) == call for record, call in taken)
    assert len({call for _, call in taken}) == 80_000

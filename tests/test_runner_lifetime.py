"""Workers never outlive their run: a killed parent, a hanging call, Ctrl-C.

Every test here runs real processes and waits a bounded time for them to end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import env

from memo import Runner, grid, load, memlist


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent that does not reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _children(pid: int) -> set[int]:
    """Every process whose parent is ``pid`` (workers, loky's resource tracker)."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(name))
    return out


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = {p for p in pids if _alive(p)}
        if not alive:
            return set()
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


HANGING_RUN = """
import os, sys, time
from memo import Runner, grid, memfile

folder = sys.argv[2]

@memfile(os.path.join(folder, "never.jsonl"))
def hang(x):
    open(os.path.join(folder, f"started-{os.getpid()}"), "w").close()
    time.sleep(600)
    return {"y": x}

if __name__ == "__main__":
    Runner(sys.argv[1], n_jobs=2, chunksize=1).run(hang, grid(x=range(8)))
"""


def _start_hanging(tmp_path: Path, backend: str,
                   processes: int = 2) -> tuple[subprocess.Popen[bytes], set[int]]:
    """Start a run whose calls hang; return it once ``processes`` processes are in a call."""
    script = tmp_path / "hang.py"
    script.write_text(HANGING_RUN)
    proc = subprocess.Popen([sys.executable, str(script), backend, str(tmp_path)],
                            env=env(MEMO_PROGRESS_INTERVAL="3600"), cwd=tmp_path,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while len(list(tmp_path.glob("started-*"))) < processes:
        assert proc.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "the workers did not start within 90 s"
        time.sleep(0.05)
    workers = {int(p.name.split("-")[1]) for p in tmp_path.glob("started-*")}
    return proc, workers | _children(proc.pid)


@pytest.mark.parametrize("backend", ["processes", "loky"])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_when_their_parent_is_killed(tmp_path, backend, how):
    proc, pids = _start_hanging(tmp_path, backend)
    assert len(pids) >= 2 and all(_alive(p) for p in pids)
    os.kill(proc.pid, how)
    proc.wait(timeout=30)
    left = _wait_gone(pids, 5.0)
    for p in left:  # do not leave them behind for the next test, whatever happened
        os.kill(p, signal.SIGKILL)
    assert not left, f"still running 5 s after the parent's {how.name}: {sorted(left)}"


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "loky"])
@pytest.mark.parametrize("to", ["parent", "terminal"])
def test_ctrl_c_ends_a_run_whose_calls_hang(tmp_path, backend, to):
    in_process = backend in ("serial", "threads")
    proc, pids = _start_hanging(tmp_path, backend, 1 if in_process else 2)
    t0 = time.monotonic()
    if to == "terminal":  # a terminal's Ctrl-C goes to every process of the foreground group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{backend}: the run was still going 15 s after Ctrl-C")
    assert time.monotonic() - t0 < 15
    assert proc.returncode != 0  # KeyboardInterrupt
    left = _wait_gone(pids - {proc.pid}, 5.0)
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "loky"])
def test_a_call_past_the_timeout_fails_and_the_run_goes_on(tmp_path, module, backend):
    mod = module(f"slow_{backend}_{tmp_path.name.replace('-', '_')}", f"""
        import time
        from memo import memfile

        @memfile({str(tmp_path / "out.jsonl")!r})
        def f(x):
            if x == 2:
                time.sleep(120)
            return {{"y": x}}
    """)
    t0 = time.monotonic()
    report = Runner(backend, n_jobs=2, timeout=1.0).run(mod.f, grid(x=range(6)),
                                                        errors="return", quiet=True)
    assert time.monotonic() - t0 < 30
    assert report.done == 6 and report.failed == 1
    failure = report.failures[0]
    assert failure.settings == {"x": 2}
    assert failure.error_type.endswith("CallTimeout") and "timeout=1 s" in failure.message
    assert sorted(r["x"] for r in load(tmp_path / "out.jsonl")) == [0, 1, 3, 4, 5]


SIGNAL_PROOF = """
import ctypes, os, signal, sys, time
from memo import memlist

data = []

@memlist(data=data)
def f(x):
    if x == 1:
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # deaf to the alarm
        time.sleep(120)
    return {"pid": os.getpid()}
"""


@pytest.mark.parametrize("backend", ["processes", "loky"])
def test_a_call_deaf_to_the_alarm_gets_its_worker_replaced(tmp_path, module, backend):
    mod = module(f"deaf_{backend}_{tmp_path.name.replace('-', '_')}", SIGNAL_PROOF)
    t0 = time.monotonic()
    report = Runner(backend, n_jobs=2, timeout=1.5).run(mod.f, grid(x=range(8)),
                                                        errors="return", quiet=True)
    assert time.monotonic() - t0 < 60
    assert [f.settings for f in report.failures] == [{"x": 1}]
    assert "worker was stopped and replaced" in report.failures[0].message
    assert sorted(r["x"] for r in mod.data) == [0, 2, 3, 4, 5, 6, 7]


def test_a_thread_past_the_timeout_is_left_behind(tmp_path):
    import threading

    release = threading.Event()
    data = []

    @memlist(data=data)
    def f(x):
        if x == 0:
            release.wait(60)  # a thread cannot be interrupted: it is abandoned
        return {"y": x}

    t0 = time.monotonic()
    report = Runner("threads", n_jobs=2, timeout=0.5).run(f, grid(x=range(5)),
                                                          errors="return", quiet=True)
    assert time.monotonic() - t0 < 20
    assert [f.settings for f in report.failures] == [{"x": 0}]
    assert sorted(r["x"] for r in data) == [1, 2, 3, 4]
    release.set()


def test_timeout_must_be_positive():
    for bad in (0, -1, "1", True):
        with pytest.raises(ValueError, match="timeout"):
            Runner("serial", timeout=bad)



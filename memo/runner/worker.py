"""What runs where the calls run: a :class:`Job` runs batches; workers watch their parent.

A :class:`Job` is the decorated function and what to do around each call: catch
what it raises (a call's failure never stops the batch), note ``status="error"``
records as failures, keep return values if asked, limit each call to ``timeout``
seconds, stop a batch at its time ``budget`` (the rest goes back unrun), and
collect the records of parent sinks (:mod:`.capture`).

Workers reach their job in one of two ways. Pools made for one run (forked
``processes``) get it in their initializer (:func:`init_forked`); pools that outlive
a run (loky's kept pool) and executors memo does not own (Dask, MPI, joblib's
backends) get it with every batch, as a small pickled payload that the worker
unpickles once and keeps by its token (:func:`run_shipped`).

Workers never outlive their run: :func:`watch_parent` (called by every worker's
initializer) ends the worker when its parent process is gone, killed or not.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from .._util import qualified_name
from ..exceptions import MemoError
from . import capture
from .batching import BatchOut
from .report import Failure
from .settings import Batch

__all__ = ["CallTimeout", "Job", "Shipment", "death_signal", "init_forked", "run_forked",
           "run_shipped", "watch_parent"]

PARENT_POLL = 0.25  # seconds between a worker's looks at its parent


class CallTimeout(MemoError, TimeoutError):
    """A call ran longer than the Runner's ``timeout``."""


def _type_name(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else qualified_name(cls)


class _Alarm:
    """Interrupts a call after ``timeout`` seconds with :class:`CallTimeout` (SIGALRM).

    Only the main thread of a process can take signals: elsewhere (threads, Dask's
    worker threads) the parent's deadline is the only limit.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.usable = timeout is not None and hasattr(signal, "setitimer") \
            and threading.current_thread() is threading.main_thread()

    def _ring(self, signum: int, frame: Any) -> None:
        raise CallTimeout(f"the call did not return within timeout={self.timeout:g} s "
                          "(Runner(timeout=...))")

    def __enter__(self) -> _Alarm:
        if self.usable:
            self.previous = signal.signal(signal.SIGALRM, self._ring)
        return self

    def arm(self) -> None:
        if self.usable:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)  # type: ignore[arg-type]

    def disarm(self) -> None:
        if self.usable:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(self, *exc: Any) -> None:
        if self.usable:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


class Job:
    """The function and what to do around each call; lives where the calls run."""

    def __init__(self, func: Callable[..., Any], *, keep_results: bool,
                 timeout: float | None = None, capture_records: bool = False,
                 budget: float | None = None) -> None:
        self.func = func
        self.keep_results = keep_results
        self.timeout = timeout
        self.budget = budget  # seconds a batch may run before it returns its rest unrun
        self.captures = capture.install(func) if capture_records else []
        # in a worker, sinks that hold records back (a batching HTTP sink) hand them on at
        # the end of every batch: worker processes may end without running exit hooks
        self.flushes = [rec.flush for rec in capture.recorders(func)] if capture_records else []

    def run_batch(self, items: Batch) -> BatchOut:
        """Run ``items`` in order; with a ``budget``, start no call after it ran out
        (the first always runs) and report the calls not started as ``unrun``.

        The clock is read between runs of calls, not between calls: each run takes
        about half of the budget left, at the time per call measured so far.
        """
        clock = time.perf_counter
        t0 = clock()
        failures: list[Failure] = []
        results: list[tuple[int, Any]] | None = [] if self.keep_results else None
        with _Alarm(self.timeout) as alarm:
            if self.budget is None or len(items) < 2:
                self._calls(items, failures, results, alarm)
                ran = len(items)
            else:
                stop, ran, step = t0 + self.budget, 0, 1
                while ran < len(items):
                    self._calls(items[ran:ran + step], failures, results, alarm)
                    ran = min(len(items), ran + step)
                    now = clock()
                    if now >= stop:
                        break
                    step = max(1, int((stop - now) * ran / (2 * (now - t0) or 1e-9)))
        for flush in self.flushes:
            flush()
        records = capture.take(self.captures) if self.captures else []
        return BatchOut(ran, failures, records, results, clock() - t0, len(items) - ran)

    def _calls(self, items: Batch, failures: list[Failure],
               results: list[tuple[int, Any]] | None, alarm: _Alarm) -> None:
        func = self.func
        arm, disarm = (alarm.arm, alarm.disarm) if alarm.usable else (None, None)
        for index, settings in items:
            try:
                if arm is None:
                    result = func(**settings)
                else:
                    arm()
                    try:
                        result = func(**settings)
                    finally:
                        disarm()  # type: ignore[misc]
            except Exception as exc:
                failures.append(_failure(index, exc))
                continue
            if type(result) is dict or result is not None and isinstance(result, Mapping):
                if result.get("status") == "error":
                    failures.append(Failure(
                        index, {}, str(result.get("error_type", "error")),
                        str(result.get("error_message", "")),
                        str(result.get("error_traceback", "")), raised=False))
            if results is not None:
                results.append((index, result))


def _failure(index: int, exc: BaseException) -> Failure:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
    return Failure(index, {}, _type_name(type(exc)), str(exc), tb)


# ------------------------------------------------------------------ the worker's side


def watch_parent(kernel: bool = False) -> None:
    """End this worker soon after its parent process ends (killed, crashed, or not).

    With ``kernel`` (on Linux: ``prctl(PR_SET_PDEATHSIG)``) the kernel sends this worker
    SIGKILL when the *thread* that started it ends: right for a pool made for one
    run, whose starting thread waits in the run until the pool is closed, and free
    (no thread in the worker). Otherwise a daemon thread compares the parent's pid
    with the one this process started with: an orphan is adopted by another process
    (init, or a subreaper), and then the worker exits at once, whatever its main
    thread is doing. memo's kept loky pool needs the thread: it may be started by a
    short-lived thread, which would take the kernel's signal with it.
    """
    parent = os.getppid()
    if parent <= 1:
        return
    prctl = death_signal() if kernel else None
    if prctl is not None and prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
        if os.getppid() != parent:  # the parent ended before the signal was asked for
            os._exit(70)
        return

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watch, name="memo-watch-parent", daemon=True).start()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
@functools.cache
def death_signal() -> Callable[..., int] | None:
    """Linux's ``prctl``, or None where there is none (looked up once: a parent that
    looks it up before it forks spares its workers the import of ``ctypes``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_FORKED: Job | None = None


def init_forked(func: Callable[..., Any], keep_results: bool, timeout: float | None,
                budget: float | None = None, kernel_watch: bool = False) -> None:
    """Initializer of the workers of a pool made for one run (``kernel_watch``: see
    :func:`watch_parent`)."""
    global _FORKED
    watch_parent(kernel_watch)
    # Ctrl-C on a terminal reaches the whole process group: the parent stops the run and
    # its workers; a worker that took it too would only report one more failed call
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What the worker got from its parent stays alive for the whole run: kept out of the
    # garbage collector's passes, which would otherwise walk (and copy, page by page, in a
    # forked child) the parent's whole heap each time the records of a batch pile up.
    gc.freeze()
    _FORKED = Job(func, keep_results=keep_results, timeout=timeout, capture_records=True,
                  budget=budget)


def run_forked(items: Batch) -> BatchOut:
    assert _FORKED is not None, "worker was not initialized"
    return _FORKED.run_batch(items)


class Shipment:
    """A run's job pickled once (cloudpickle), sent with every batch, unpickled once per worker.

    ``run`` is what to submit: ``shipment.run(batch)`` pickles as a reference to
    :func:`run_shipped` with the token and the payload's bytes.
    """

    def __init__(self, func: Callable[..., Any], backend: str, *, keep_results: bool,
                 timeout: float | None, budget: float | None = None) -> None:
        self.token = uuid.uuid4().hex
        self.payload = pickled((func, keep_results, timeout, budget), func, backend)

    def args(self) -> tuple[str, bytes]:
        return (self.token, self.payload)


_SHIPPED: OrderedDict[str, Job] = OrderedDict()
_SHIPPED_LOCK = threading.Lock()
_KEEP_JOBS = 4  # runs whose jobs a worker keeps at once (runs in several threads)


def run_shipped(token: str, payload: bytes,
                items: Batch) -> BatchOut:
    """A batch of a shipped job, in whatever process an executor runs it."""
    with _SHIPPED_LOCK:
        job = _SHIPPED.get(token)
        if job is None:
            import pickle

            func, keep_results, timeout, budget = pickle.loads(payload)
            while len(_SHIPPED) >= _KEEP_JOBS:  # an old run: its sinks go back in place
                _, old = _SHIPPED.popitem(last=False)
                capture.restore(old.func)
            job = _SHIPPED[token] = Job(func, keep_results=keep_results, timeout=timeout,
                                        capture_records=True, budget=budget)
    return job.run_batch(items)


def pickled(obj: Any, func: Callable[..., Any], backend: str) -> bytes:
    """``obj`` pickled with cloudpickle, or a TypeError naming the function."""
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:  # joblib carries its own copy
        try:
            from joblib.externals import cloudpickle  # type: ignore[import-untyped]
        except ImportError:
            from .._util import missing
            raise missing(f"backend={backend!r}", "cloudpickle", "parallel") from None
    try:
        return cloudpickle.dumps(obj)  # type: ignore[no-any-return]
    except Exception as exc:
        name = getattr(func, "__qualname__", repr(func))
        raise TypeError(
            f"backend={backend!r} sends {name}() to fresh Python processes with cloudpickle, "
            f"and it cannot be pickled ({type(exc).__name__}: {exc}). Define it in a module "
            "the workers can import (not in __main__ or a notebook), or use "
            "backend='processes', whose forked workers inherit it"
        ) from exc

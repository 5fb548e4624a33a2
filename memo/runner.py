"""``Runner``: one decorated function over many settings, in threads, processes or SLURM.

The Runner schedules nothing itself; it hands batches of calls to a real engine:
``concurrent.futures`` (threads, and processes forked from the parent), loky (joblib's
process pool, ``pip install 'memo[parallel]'``) or submitit (a SLURM array job,
``pip install 'memo[slurm]'``).

Where each sink runs
--------------------
The function is the decorated one, so its records are written by the sinks the
decorators hold. With the ``serial`` and ``threads`` backends everything runs in the
calling process. With process backends and SLURM the function runs in worker
processes, and then:

* ``memfile`` (and every sink that talks to the outside: HTTP, W&B, stdout) writes
  from the worker, directly: a file sink appends each whole line under a lock, so a
  record lands once, whichever process wrote it;
* ``memlist`` and ``memfunc`` hold state of the parent process (its list, its
  callback). In a worker their records are caught and sent back with the batch's
  outcome, and the parent hands each one to its own sink as batches finish. A
  ``memlist`` in the parent so ends up with every record, in completion order.

The sinks are found by following the decorated function's ``__wrapped__`` chain
and the ``memo_sink`` attribute every ``mem*`` decorator sets.

Failures
--------
A call that raises does not stop the others. A record whose ``status`` is
``"error"`` (from :func:`memo.ignore_error`) counts as a failure, not a success. The
run ends with a :class:`RunReport`; when calls raised, :class:`RunError` (carrying
the report) is raised after every other call has finished, unless
``errors="return"``. When a worker process dies, the calls in flight on its pool
fail (their results are lost with it) and the remaining settings go to a new pool.

Pools
-----
``processes`` forks a pool per run. ``loky`` keeps one pool between runs (loky
workers take a while to start), apart from joblib's own: a worker loads each run's
function when the run's first batch reaches it, and its list and file sinks start the
run as a new worker's would. A new pool is started when ``n_jobs``, the environment,
``sys.path`` or the working directory changed, when the pool broke, and for functions
with sinks that may hold records until their process ends (HTTP, W&B, sinks of one's
own); the kept pool is shut down at exit.
"""

from __future__ import annotations

import functools
import gc
import math
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Literal

from .shard import shard
from .sinks.file import FileSink
from .sinks.func import CallbackSink, StreamSink
from .sinks.list import ListSink
from .sinks import recorders_of, where

__all__ = ["Failure", "RunError", "RunReport", "Runner", "sinks_of"]

# Accepted backend names, including the original joblib names, and what they run on.
_BACKENDS = {
    "serial": "serial", "sequential": "serial",
    "threads": "threads", "threading": "threads",
    "processes": "processes", "multiprocessing": "processes",
    "loky": "loky",
    "slurm": "slurm", "submitit": "slurm",
}
_TARGET_BATCH_SECONDS = 0.05  # batches this long keep the per-batch cost near 1% of 1 ms calls
_MAX_BATCH = 10_000


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class Failure:
    """One call that failed: it raised (``raised=True``) or returned ``status="error"``."""

    index: int
    settings: Mapping[str, Any]
    error_type: str
    message: str
    traceback: str = ""
    raised: bool = True

    def __str__(self) -> str:
        how = "raised" if self.raised else "recorded"
        return f"#{self.index} {dict(self.settings)!r}: {how} {self.error_type}: {self.message}"


@dataclass
class RunReport:
    """What a run did: how many calls finished, which failed, how long it took."""

    func: str
    total: int
    done: int = 0
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0
    results: list[Any] | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def succeeded(self) -> int:
        return self.done - self.failed

    @property
    def ok(self) -> bool:
        return not self.failures and self.done == self.total

    def summary(self, limit: int = 10) -> str:
        """A few lines: counts, then the failed settings (at most ``limit`` of them)."""
        head = (f"{self.func}: {self.succeeded} of {self.total} calls succeeded, "
                f"{self.failed} failed")
        if self.done < self.total:
            head += f", {self.total - self.done} did not run"
        head += f" ({self.elapsed:.1f} s)"
        lines = [head]
        for failure in sorted(self.failures, key=lambda f: f.index)[:limit]:
            lines.append(f"  {failure}")
        if self.failed > limit:
            lines.append(f"  ... and {self.failed - limit} more (see RunReport.failures)")
        return "\n".join(lines)


class RunError(RuntimeError):
    """Calls raised during a run; every other call finished. ``.report`` has the details."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        super().__init__(report.summary())


# ------------------------------------------------------------------- sinks in workers


def sinks_of(func: Callable[..., Any]) -> list[Any]:
    """The sinks of a decorated function, outermost first (``memo_sink`` along ``__wrapped__``)."""
    found: list[Any] = []
    seen: set[int] = set()
    f: Any = func
    for _ in range(1000):  # a __wrapped__ cycle is a bug elsewhere; do not loop forever
        if f is None:
            break
        sink = getattr(f, "__dict__", {}).get("memo_sink")
        if sink is not None and id(sink) not in seen:
            seen.add(id(sink))
            found.append(sink)
        f = getattr(f, "__wrapped__", None)
    return found


class _Buffer:
    """In a worker: stands in for a parent-side sink and keeps its records for the batch."""

    where = "worker"

    def __init__(self, original: Any) -> None:
        self.original = original
        self.records: list[tuple[dict[str, Any], Any]] = []

    def write(self, record: dict[str, Any], call: Any) -> None:
        self.records.append((record, call))


def _own_sink(rec: Any) -> Any:
    sink = rec.sink
    return sink.original if isinstance(sink, _Buffer) else sink


class _Capture:
    """In a worker process: collects the records headed for the parent-side sinks."""

    def __init__(self, func: Callable[..., Any], seeds: dict[int, list[Any]]) -> None:
        self.buffers: list[tuple[int, _Buffer]] = []
        for pos, rec in enumerate(recorders_of(func)):
            sink = _own_sink(rec)
            if where(sink) != "parent":
                continue
            if isinstance(sink, ListSink) and not sink.data and seeds.get(pos):
                # a worker that imported the function afresh: give it the parent's
                # records, so that memlist(skip=True) skips what the parent holds
                sink.data.extend(seeds[pos])
            buffer = _Buffer(sink)
            rec.sink = buffer
            self.buffers.append((pos, buffer))

    def start(self) -> None:
        for _, buffer in self.buffers:
            buffer.records.clear()

    def take(self) -> list[tuple[int, list[Any]]]:
        out = []
        for pos, buffer in self.buffers:
            if buffer.records:
                out.append((pos, buffer.records[:]))
                buffer.records.clear()
        return out


def _seeds(func: Callable[..., Any]) -> dict[int, list[Any]]:
    return {pos: list(sink.data) for pos, sink in enumerate(map(_own_sink, recorders_of(func)))
            if isinstance(sink, ListSink) and sink.data}


# ----------------------------------------------------------------------- the calls


def _type_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass
class _BatchOut:
    """What a batch of calls sends back: small, and cheap to pickle."""

    done: int
    failures: list[tuple[int, str, str, str, bool]]
    records: list[tuple[int, list[Any]]]
    results: list[tuple[int, Any]] | None
    seconds: float


class _Job:
    """The function and what to do around each call; lives where the calls run."""

    def __init__(self, func: Callable[..., Any], *, capture: _Capture | None,
                 keep_results: bool) -> None:
        self.func = func
        self.capture = capture
        self.keep_results = keep_results

    def run_batch(self, items: list[tuple[int, Mapping[str, Any]]]) -> _BatchOut:
        t0 = time.perf_counter()
        func, capture = self.func, self.capture
        failures: list[tuple[int, str, str, str, bool]] = []
        results: list[tuple[int, Any]] | None = [] if self.keep_results else None
        if capture is not None:
            capture.start()
        for index, settings in items:
            try:
                result = func(**settings)
            except Exception as exc:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                        limit=-8))
                failures.append((index, _type_name(type(exc)), str(exc), tb, True))
                continue
            if isinstance(result, Mapping) and result.get("status") == "error":
                failures.append((index, str(result.get("error_type", "error")),
                                 str(result.get("error_message", "")),
                                 str(result.get("error_traceback", "")), False))
            if results is not None:
                results.append((index, result))
        records = capture.take() if capture is not None else []
        return _BatchOut(len(items), failures, records, results, time.perf_counter() - t0)


_WORKER_JOB: _Job | None = None


def _init_worker(func: Callable[..., Any], seeds: dict[int, list[Any]],
                 keep_results: bool) -> None:
    global _WORKER_JOB
    # What the worker got from its parent stays alive for the whole run: kept out of the
    # garbage collector's passes, which would otherwise walk (and copy, page by page, in a
    # forked child) the parent's whole heap each time the records of a batch pile up.
    gc.freeze()
    _WORKER_JOB = _Job(func, capture=_Capture(func, seeds), keep_results=keep_results)


def _worker_batch(items: list[tuple[int, Mapping[str, Any]]]) -> _BatchOut:
    assert _WORKER_JOB is not None, "worker was not initialized"
    return _WORKER_JOB.run_batch(items)


# loky workers are kept between runs: each run's function, seeds and options travel in
# a file named by every batch, and a worker loads it when a batch of a new run arrives
_WORKER_RUN: str | None = None
_FIRST_DATA: weakref.WeakKeyDictionary[ListSink, list[Any]] = weakref.WeakKeyDictionary()


def _run_batch(run: tuple[str, str], items: list[tuple[int, Mapping[str, Any]]]) -> _BatchOut:
    global _WORKER_JOB, _WORKER_RUN
    token, path = run
    if _WORKER_RUN != token:
        import pickle

        with open(path, "rb") as f:
            func, seeds, keep_results = pickle.load(f)
        _WORKER_JOB = _WORKER_RUN = None
        _as_new(func)
        _WORKER_JOB = _Job(func, capture=_Capture(func, seeds), keep_results=keep_results)
        _WORKER_RUN = token
    assert _WORKER_JOB is not None
    return _WORKER_JOB.run_batch(items)


def _as_new(func: Callable[..., Any]) -> None:
    """Give the sinks a worker kept from an earlier run the state of a new worker's.

    A function pickled by reference is the same object in every run of a worker, and
    so are its sinks: a list gets back the records it held when the worker first
    imported it (its skip index reads them again), a file sink drops its descriptor
    (the file may have been replaced since), so that its next line opens the path anew.
    """
    for sink in map(_own_sink, recorders_of(func)):
        if type(sink) is ListSink:
            first = _FIRST_DATA.get(sink)
            if first is None:
                _FIRST_DATA[sink] = list(sink.data)
            else:
                sink.data[:] = first  # its skip index sees the list cut and reads it again
        elif type(sink) is FileSink:
            sink.writer.close()


# ------------------------------------------------------------------- the settings


def _check_settings(settings: Any) -> tuple[Iterator[Mapping[str, Any]], int | None]:
    """An iterator over ``settings`` (checked to be mappings) and its length if known."""
    if isinstance(settings, (Mapping, str, bytes)) or not isinstance(settings, Iterable):
        hint = "; wrap a single setting in a list: [settings]" if isinstance(settings, Mapping) \
            else ""
        raise TypeError(
            f"Runner.run(settings=...) needs an iterable of mappings such as grid(...), "
            f"got {type(settings).__name__}{hint}"
        )
    total = len(settings) if isinstance(settings, Sized) else None
    if total is not None and hasattr(settings, "__getitem__"):
        for i, s in enumerate(settings):
            _check_one(i, s)
        return iter(settings), total

    def checked() -> Iterator[Mapping[str, Any]]:
        for i, s in enumerate(settings):
            _check_one(i, s)
            yield s

    return checked(), total


def _check_one(i: int, s: Any) -> None:
    if type(s) is not dict and not isinstance(s, Mapping):  # (dicts skip the ABC check)
        raise TypeError(
            f"Runner.run(settings=...) needs an iterable of mappings (keyword arguments "
            f"for the function); item {i} is {type(s).__name__}: {s!r:.80}"
        )


# --------------------------------------------------------------------- progress bar


class _Progress:
    """A tqdm bar on stderr: done/total, failures, rate and ETA. Off when not a terminal.

    The bar is drawn from :meth:`start` on, which the Runner calls once its worker
    processes exist: tqdm's monitor thread must not be running when they are forked.
    """

    def __init__(self, progbar: bool | None, total: int | None, desc: str) -> None:
        self.tqdm: Any = None
        self.bar: Any = None
        self.total = total
        self.desc = desc
        if progbar is False:
            return
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]
        except ImportError:
            if progbar:
                raise ImportError("the progress bar needs tqdm: pip install 'memo[progress]', "
                                  "or pass progbar=False") from None
            return
        self.tqdm = tqdm

    def start(self, total: int | None = None) -> None:
        if self.tqdm is None or self.bar is not None:
            return
        try:  # a terminal that reports no size (some ptys) gets 80x24, not a hidden bar
            width, height = os.get_terminal_size(sys.stderr.fileno())
        except (OSError, ValueError, AttributeError):
            width = height = 0
        size: dict[str, Any] = {"dynamic_ncols": True} if width and height \
            else {"ncols": 80, "nrows": 24}
        # disable=None: tqdm turns itself off when stderr is not a terminal
        self.bar = self.tqdm(total=self.total if total is None else total, desc=self.desc,
                             unit="call", disable=None, file=sys.stderr, smoothing=0.1,
                             **size)

    def advance(self, n: int, failed: int) -> None:
        if self.tqdm is None:
            return
        self.start()
        if failed:
            self.bar.set_postfix_str(f"failed={failed}", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------ the Runner


class Runner:
    """Runs a (decorated) function once per setting on a parallel backend.

    ``backend``: ``"serial"``, ``"threads"`` (``"threading"``), ``"processes"``
    (``"multiprocessing"``: a ``concurrent.futures`` process pool; forked on Linux, so
    the function, its sinks and the parent's lists are inherited, not pickled),
    ``"loky"`` (a loky pool of memo's own, kept between runs as joblib keeps its pool:
    fresh interpreters, the function is pickled with cloudpickle; each run finds the
    sinks in the workers as new ones would have them) or ``"slurm"`` (one submitit job
    array; each task runs its
    :func:`memo.shard` of the settings). ``n_jobs``: workers, ``-1`` for all cores,
    ``-2`` for all but one (as in joblib); for ``slurm`` the number of array tasks
    (default: one per setting, at most 100). ``chunksize``: calls per batch sent to a
    worker (default: adapted so that a batch takes about 50 ms). ``slurm``: parameters
    for ``submitit.AutoExecutor.update_parameters`` (``slurm_partition``,
    ``timeout_min``, ...), with job files in ``folder``.
    """

    def __init__(
        self,
        backend: str = "processes",
        n_jobs: int | None = None,
        *,
        progbar: bool | None = None,
        chunksize: int | None = None,
        start_method: str | None = None,
        folder: str | os.PathLike[str] = "memo-slurm",
        slurm: Mapping[str, Any] | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        if not isinstance(backend, str) or backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of "
                             f"{', '.join(sorted(_BACKENDS))}")
        if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int)
                                   or n_jobs == 0):
            raise ValueError(f"n_jobs must be a non-zero whole number or None, got {n_jobs!r}")
        if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError(f"chunksize must be a whole number >= 1, got {chunksize!r}")
        self.backend = backend
        self.kind = _BACKENDS[backend]
        self.n_jobs = n_jobs
        self.progbar = progbar
        self.chunksize = chunksize
        self.start_method = start_method
        self.folder = folder
        self.slurm = dict(slurm or {})
        self.poll_interval = poll_interval

    def __repr__(self) -> str:
        return f"Runner(backend={self.backend!r}, n_jobs={self.n_jobs!r})"

    def workers(self) -> int:
        """How many workers ``n_jobs`` means on this machine."""
        if self.kind == "serial":
            return 1
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        n = self.n_jobs if self.n_jobs is not None else -1
        return max(1, n if n > 0 else cores + 1 + n)

    def run(
        self,
        func: Callable[..., Any],
        settings: Iterable[Mapping[str, Any]],
        progbar: bool | None = None,
        *,
        errors: Literal["raise", "return"] = "raise",
        return_results: bool = False,
        quiet: bool = False,
    ) -> RunReport:
        """Call ``func(**s)`` for every ``s`` in ``settings``; return a :class:`RunReport`.

        ``progbar``: ``None`` (default) shows a bar when tqdm is installed and stderr is
        a terminal, ``True`` asks for it (tqdm needed), ``False`` turns it off.
        ``return_results=True`` keeps each call's return value, in settings order, in
        ``report.results``. Failed calls are summarized on stderr at the end (unless
        ``quiet``); calls that raised make it raise :class:`RunError` unless
        ``errors="return"``.
        """
        if not callable(func):
            raise TypeError(f"Runner.run(func=...) needs a callable, got {type(func).__name__}")
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        items, total = _check_settings(settings)
        name = getattr(func, "__qualname__", repr(func))
        report = RunReport(func=name, total=total if total is not None else 0)
        indexed = _Indexed(items, total)
        progress = _Progress(self.progbar if progbar is None else progbar, total, name)
        t0 = time.perf_counter()
        results: dict[int, Any] | None = {} if return_results else None
        sinks = [_own_sink(rec) for rec in recorders_of(func)]

        def deliver(out: _BatchOut, count: bool = True) -> None:
            for pos, records in out.records:
                write = sinks[pos].write
                for record, call in records:
                    write(record, call)
            for index, etype, message, tb, raised in out.failures:
                report.failures.append(Failure(index, indexed.settings_of(index), etype,
                                               message, tb, raised))
            if results is not None and out.results:
                results.update(out.results)
            report.done += out.done
            if count:
                progress.advance(out.done, report.failed)

        try:
            if self.kind == "slurm":
                self._run_slurm(func, indexed, deliver, progress, return_results)
            else:
                self._run_local(func, indexed, deliver, progress, return_results)
        finally:
            progress.close()
            report.elapsed = time.perf_counter() - t0
            if total is None:
                report.total = indexed.count
            if results is not None:
                report.results = [results.get(i) for i in range(report.total)]
        if indexed.error is not None:
            raise indexed.error
        raised = any(f.raised for f in report.failures)
        if raised and errors == "raise":
            raise RunError(report)
        if report.failures and not quiet:
            print(report.summary(), file=sys.stderr)
        return report

    # -------------------------------------------------------------- local engines

    def _executor(self, func: Callable[..., Any], keep_results: bool) -> Executor:
        n = self.workers()
        if self.kind == "threads":
            from concurrent.futures import ThreadPoolExecutor
            return ThreadPoolExecutor(max_workers=n, thread_name_prefix="memo-runner")
        initargs: tuple[Any, ...] = (func, {}, keep_results)
        if self.kind == "processes":
            from concurrent.futures import ProcessPoolExecutor
            method = self.start_method
            if method is None:
                method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
            context = multiprocessing.get_context(method)
            if context.get_start_method() != "fork":
                initargs = (func, _seeds(func), keep_results)
            return ProcessPoolExecutor(max_workers=n, mp_context=context,
                                       initializer=_init_worker, initargs=initargs)
        if self.kind == "loky":
            return _loky_executor(n, keep=all(type(sink) in _RESETTABLE for sink in map(_own_sink, recorders_of(func))))
        raise ValueError(f"backend {self.backend!r} has no local pool")

    def _run_local(self, func: Callable[..., Any], indexed: _Indexed,
                   deliver: Callable[[_BatchOut], None], progress: _Progress,
                   keep_results: bool) -> None:
        if self.kind == "serial":
            progress.start()
            job = _Job(func, capture=None, keep_results=keep_results)
            for item in indexed:
                deliver(job.run_batch([item]))
                indexed.forget([item])
            return
        payload = None
        if self.kind == "loky":
            _loky_class()  # joblib is installed, or a clear ImportError
            payload = _Payload(func, keep_results)
        try:
            self._run_pool(func, indexed, deliver, progress, keep_results, payload)
        finally:
            if payload is not None:
                payload.remove()

    def _run_pool(self, func: Callable[..., Any], indexed: _Indexed,
                  deliver: Callable[[_BatchOut], None], progress: _Progress,
                  keep_results: bool, payload: _Payload | None) -> None:
        executor = self._executor(func, keep_results)
        call: Callable[[list[tuple[int, Mapping[str, Any]]]], _BatchOut]
        if self.kind == "threads":
            call = _Job(func, capture=None, keep_results=keep_results).run_batch
        elif payload is not None:
            call = functools.partial(_run_batch, payload.run)
        else:
            call = _worker_batch
        sizer = _BatchSizer(self.chunksize, self.workers(), indexed.total)
        pending: dict[Future[_BatchOut], tuple[Executor, list[tuple[int, Mapping[str, Any]]]]] = {}
        try:
            while True:
                while len(pending) < 2 * self.workers():
                    batch = indexed.take(sizer.size())
                    if not batch:
                        break
                    pending[executor.submit(call, batch)] = (executor, batch)
                progress.start()  # the workers exist now
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    owner, batch = pending.pop(fut)
                    try:
                        out = fut.result()
                    except BrokenProcessPool as exc:  # a worker died (killed, segfault, exit)
                        out = _lost(batch, f"a worker process died ({exc})")
                        if owner is executor:  # the rest of the settings get a new pool
                            self._shutdown(executor)
                            executor = self._executor(func, keep_results)
                    except Exception as exc:
                        out = _lost(batch, f"{_type_name(type(exc))}: {exc}")
                    sizer.observe(out)
                    deliver(out)
                    indexed.forget(batch)
        except BaseException:
            for fut in pending:
                fut.cancel()
            self._shutdown(executor)
            raise
        if not _KEPT.release(executor):
            executor.shutdown(wait=True)

    def _shutdown(self, executor: Executor) -> None:
        """Stop a pool without waiting for its calls (after an error, or a dead worker)."""
        if self.kind == "loky":
            _KEPT.forget(executor)
            executor.shutdown(wait=False, kill_workers=True)  # type: ignore[call-arg]
        else:
            executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- SLURM array

    def _run_slurm(self, func: Callable[..., Any], indexed: _Indexed,
                   deliver: Callable[..., None], progress: _Progress,
                   keep_results: bool) -> None:
        try:
            import cloudpickle  # type: ignore[import-untyped]
            import submitit  # type: ignore[import-untyped]
        except ImportError:
            raise ImportError("backend='slurm' needs submitit: pip install 'memo[slurm]'") from None
        settings = indexed.all()
        progress.start(len(settings))
        if not settings:
            return
        tasks = self.n_jobs if self.n_jobs is not None and self.n_jobs > 0 \
            else min(len(settings), 100)
        tasks = min(tasks, len(settings))
        folder = os.path.abspath(os.fspath(self.folder))
        os.makedirs(folder, exist_ok=True)
        tag = f"memo-{os.getpid()}-{time.time_ns()}"
        payload = os.path.join(folder, tag + ".pkl")
        progress_path = os.path.join(folder, tag + ".progress.jsonl")
        data = (func, settings, _seeds(func), keep_results, progress_path)
        _check_picklable(data, func, "slurm")
        with open(payload, "wb") as f:  # the function and settings are pickled once, not per task
            cloudpickle.dump(data, f)
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(**{"timeout_min": 24 * 60, "name": tag, **self.slurm})
        jobs = executor.map_array(_slurm_task, [payload] * tasks, list(range(tasks)),
                                  [tasks] * tasks)
        array_id = str(jobs[0].job_id).split("_")[0]
        owners = {i: t for t in range(tasks) for i in shard(range(len(settings)), t, tasks)}
        from .reader import Tail
        tail = Tail(progress_path)
        seen: dict[int, tuple[str, str] | None] = {}  # index -> failure (type, message)
        collected: set[int] = set()
        failed = 0
        absent: dict[int, float] = {}  # task -> when it was first seen gone from the queue
        grace = max(5.0, 3 * self.poll_interval)  # time for a result file to show (NFS)
        try:
            while len(collected) < tasks:
                for line in tail.read_new()[1]:
                    failure = (line["error_type"], line["message"]) if line["failed"] else None
                    seen[line["index"]] = failure
                    failed += failure is not None
                    progress.advance(1, failed)
                queued = _squeue(array_id)
                for t, job in enumerate(jobs):
                    if t in collected:
                        continue
                    if job.paths.result_pickle.exists():  # (job.done() would ask sacct)
                        collected.add(t)
                        try:
                            out = job.result()
                        except Exception as exc:  # the task itself failed (not a call)
                            out = _dead_task(t, owners, seen, f"array task {t} failed: {exc}")
                        deliver(out, count=False)
                    elif queued is not None and t not in queued:
                        gone = absent.setdefault(t, time.monotonic())
                        if time.monotonic() - gone >= grace:  # gone, and no result file
                            collected.add(t)
                            deliver(_dead_task(t, owners, seen, f"array task {t} of job "
                                               f"{array_id} ended without a result"),
                                    count=False)
                if len(collected) < tasks:
                    time.sleep(self.poll_interval)
        except BaseException:
            import subprocess
            subprocess.run(["scancel", array_id], check=False, capture_output=True)
            raise
        for line in tail.read_new()[1]:
            if line["index"] not in seen:
                progress.advance(1, failed)
        for path in (payload, progress_path):
            try:
                os.remove(path)
            except OSError:
                pass


# ------------------------------------------------------------------------ loky pools

# Sinks whose state in a worker kept from an earlier run _as_new resets, and which hold
# nothing back until their process ends: functions with only these sinks (or none) run on
# the kept pool. Others (HTTP, W&B, sinks of users) flush at exit: they get a new pool.
_RESETTABLE = (ListSink, CallbackSink, FileSink, StreamSink)


def _loky_class() -> Any:
    try:
        from joblib.externals.loky import (  # type: ignore[import-untyped]
            ProcessPoolExecutor as LokyExecutor,
        )
    except ImportError:
        raise ImportError("backend='loky' needs joblib: pip install 'memo[parallel]' "
                          "(or use backend='processes')") from None
    return LokyExecutor


class _KeptPool:
    """memo's own loky pool, kept between runs as joblib keeps its own (not shared with it).

    It is handed to one run at a time (a run in another thread meanwhile gets a pool of
    its own), and started anew when the number of workers, ``sys.path``, the working
    directory or the environment changed (workers got those when they started), when
    it broke, and in a forked child. It is shut down at interpreter exit.
    """

    IDLE_TIMEOUT = 300  # seconds an idle worker lives (loky starts another on demand)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: Any = None
        self.key: tuple[Any, ...] | None = None
        self.pid = os.getpid()
        self.busy = False
        self.hooked = False

    def acquire(self, n: int) -> Any:
        """The kept pool of ``n`` workers (started if needed), or None while it is busy."""
        key = (n, sys.executable, tuple(sys.path), os.getcwd(),
               tuple(sorted(os.environ.items())))
        with self.lock:
            if self.pid != os.getpid():  # a forked child: the pool is the parent's
                self.executor, self.busy, self.pid = None, False, os.getpid()
            if self.busy:
                return None
            old = self.executor
            if old is not None and (self.key != key or old._flags.broken
                                    or old._flags.shutdown):
                old.shutdown(wait=False, kill_workers=True)
                self.executor = None
            if self.executor is None:
                self.executor = _loky_class()(max_workers=n, timeout=self.IDLE_TIMEOUT)
                self.key = key
                if not self.hooked:
                    import atexit
                    atexit.register(self.close)
                    self.hooked = True
            self.busy = True
            return self.executor

    def release(self, executor: Executor) -> bool:
        """Hand the kept pool back after a run; False when ``executor`` is not it."""
        with self.lock:
            if executor is self.executor and self.pid == os.getpid():
                self.busy = False
                return True
        return False

    def forget(self, executor: Executor) -> None:
        """The kept pool is being killed (an error, a dead worker): start anew next time."""
        with self.lock:
            if executor is self.executor:
                self.executor, self.busy = None, False

    def close(self) -> None:
        with self.lock:
            executor, self.executor = self.executor, None
        if executor is not None and self.pid == os.getpid():
            executor.shutdown(wait=True)


_KEPT = _KeptPool()


def _loky_executor(n: int, keep: bool) -> Executor:
    """The kept loky pool when ``keep`` and it is free, else a new pool for this run only."""
    executor = _KEPT.acquire(n) if keep else None
    if executor is None:
        executor = _loky_class()(max_workers=n)
    return executor  # type: ignore[no-any-return]


class _Payload:
    """A run's function, the parent's list records and options, pickled once to a file.

    Every batch names the file and the run; a worker loads it at its first batch of
    the run (kept workers serve many runs, so it cannot come with the workers' start).
    """

    def __init__(self, func: Callable[..., Any], keep_results: bool) -> None:
        import tempfile

        data = _pickled((func, _seeds(func), keep_results), func, "loky")
        fd, self.path = tempfile.mkstemp(prefix="memo-run-", suffix=".pkl")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.run = (uuid.uuid4().hex, self.path)

    def remove(self) -> None:
        try:
            os.remove(self.path)
        except OSError:
            pass


def _check_picklable(obj: Any, func: Callable[..., Any], backend: str) -> None:
    """Fail early, naming the function, when it cannot travel to a fresh interpreter."""
    _pickled(obj, func, backend)


def _pickled(obj: Any, func: Callable[..., Any], backend: str) -> bytes:
    """``obj`` pickled with cloudpickle, or a TypeError naming the function."""
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:  # joblib carries its own copy
        from joblib.externals import cloudpickle  # type: ignore[import-untyped]

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


def _lost(batch: list[tuple[int, Mapping[str, Any]]], why: str) -> _BatchOut:
    """The outcome of a batch whose worker did not report back: every call failed."""
    return _BatchOut(len(batch), [(i, "WorkerError", why, "", True) for i, _ in batch], [],
                     None, 0.0)


class _Indexed:
    """Numbers the settings as they are taken; remembers them to name failed ones."""

    def __init__(self, items: Iterator[Mapping[str, Any]], total: int | None) -> None:
        self._items = items
        self.total = total
        self._lock = threading.Lock()
        self._by_index: dict[int, Mapping[str, Any]] = {}
        self.count = 0
        self.error: BaseException | None = None

    def take(self, n: int) -> list[tuple[int, Mapping[str, Any]]]:
        out: list[tuple[int, Mapping[str, Any]]] = []
        with self._lock:
            if self.error is not None:
                return out
            try:
                for _ in range(n):
                    s = next(self._items)
                    out.append((self.count, s))
                    self._by_index[self.count] = s
                    self.count += 1
            except StopIteration:
                pass
            except Exception as exc:  # a bad item, or the generator itself failed
                self.error = exc
        return out

    def __iter__(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        while batch := self.take(1):
            yield batch[0]

    def all(self) -> list[Mapping[str, Any]]:
        """Every remaining setting (for backends that need the whole list up front)."""
        batch = self.take(sys.maxsize)
        return [s for _, s in batch]

    def forget(self, batch: list[tuple[int, Mapping[str, Any]]]) -> None:
        """Drop settings whose outcome was delivered (failures already hold theirs)."""
        with self._lock:
            for index, _ in batch:
                self._by_index.pop(index, None)

    def settings_of(self, index: int) -> Mapping[str, Any]:
        return self._by_index.get(index, {})


class _BatchSizer:
    """Batch sizes: a fixed ``chunksize``, or adapted to the measured time per call."""

    def __init__(self, fixed: int | None, workers: int, total: int | None) -> None:
        self.fixed = fixed
        self.workers = workers
        self.total = total
        self.taken = 0
        self.per_call: float | None = None

    def size(self) -> int:
        if self.fixed is not None:
            n = self.fixed
        elif self.per_call is None:
            n = 1
        else:
            n = int(min(_MAX_BATCH, max(1, _TARGET_BATCH_SECONDS / max(self.per_call, 1e-7))))
            if self.total is not None:  # keep a few batches per worker for the tail
                left = self.total - self.taken
                n = max(1, min(n, math.ceil(left / (4 * self.workers))))
        self.taken += n
        return n

    def observe(self, out: _BatchOut) -> None:
        if out.done and out.seconds > 0:
            t = out.seconds / out.done
            self.per_call = t if self.per_call is None else 0.7 * self.per_call + 0.3 * t



# ------------------------------------------------------------------------ SLURM tasks


def _squeue(array_id: str) -> set[int] | None:
    """Task numbers of the array still pending or running, or None when squeue failed."""
    import subprocess
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%K"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None if "Invalid job id" not in out.stderr else set()
    return {int(x) for x in out.stdout.split() if x.isdigit()}


def _dead_task(task: int, owners: dict[int, int], seen: dict[int, tuple[str, str] | None],
               why: str) -> _BatchOut:
    """The outcome of an array task that returned nothing: its progress lines tell the rest."""
    mine = [i for i, t in owners.items() if t == task]
    failures = []
    for i in mine:
        if i not in seen:
            failures.append((i, "WorkerError", why, "", True))
        elif seen[i] is not None:
            etype, message = seen[i]  # type: ignore[misc]
            failures.append((i, etype, message, "", True))
    return _BatchOut(len(mine), failures, [], None, 0.0)


def _slurm_task(payload: str, index: int, count: int) -> _BatchOut:
    """One array task: run shard ``index`` of ``count``, one progress line per call."""
    import pickle

    from .serialize import dumps_line
    from .writer import AppendWriter

    with open(payload, "rb") as f:
        func, settings, seeds, keep_results, progress_path = pickle.load(f)
    job = _Job(func, capture=_Capture(func, seeds), keep_results=keep_results)
    progress = AppendWriter(progress_path)
    total = _BatchOut(0, [], [], [] if keep_results else None, 0.0)
    for i in shard(range(len(settings)), index, count):
        out = job.run_batch([(i, settings[i])])
        total.done += out.done
        total.failures += out.failures
        total.records += out.records
        if total.results is not None and out.results:
            total.results += out.results
        total.seconds += out.seconds
        line: dict[str, Any] = {"task": index, "index": i, "failed": bool(out.failures)}
        if out.failures:
            line["error_type"], line["message"] = out.failures[0][1], out.failures[0][2]
        progress.append(dumps_line(line))
    progress.close()
    return total

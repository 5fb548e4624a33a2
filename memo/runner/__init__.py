"""``Runner``: one decorated function over many settings, on a backend of one's choice.

The Runner schedules nothing itself; it hands batches of calls to a real engine.
Each backend is a small class in its own module, registered by name
(:func:`register_backend`, as joblib's ``register_parallel_backend``):

=============  ==========================================================  ==============
name           engine                                                      module
=============  ==========================================================  ==============
``serial``     the calling process                                         :mod:`.serial`
``threads``    daemon threads of the calling process                       :mod:`.threads`
``processes``  ``concurrent.futures.ProcessPoolExecutor`` (forked)         :mod:`.processes`
``loky``       joblib's loky pool, kept between runs                       :mod:`.loky`
``slurm``      one SLURM array job through submitit                        :mod:`.slurm`
``joblib``     whatever ``joblib.parallel_config`` is active (Dask, Ray)   :mod:`.joblib_backend`
(executor=)    any ``concurrent.futures.Executor`` (Dask, mpi4py, ...)      :mod:`.executor`
=============  ==========================================================  ==============

The rest of the package is what every backend shares: the settings, numbered and
sorted out for ``skip=True`` (:mod:`.settings`), batches (:mod:`.batching`), the
job that runs in workers (:mod:`.worker`), records of parent sinks sent back from
workers (:mod:`.capture`), progress (:mod:`.progress`), the kept loky pool
(:mod:`.pools`) and the report (:mod:`.report`).

Where each sink runs
--------------------
The Runner knows sinks only through the sink protocol of :mod:`memo.sinks`. A
sink whose ``where`` is ``"worker"`` (``memfile``, HTTP, W&B, stdout) writes from
the process that ran the call. A sink whose ``where`` is ``"parent"`` (``memlist``,
``memfunc``, a user's own that holds state of the calling process) gets, in the
parent, every record made in a worker, as batches finish. At the end of a run the
Runner flushes every recorder of the function.

Failures, time limits and stopping
----------------------------------
A call that raises does not stop the others; a record whose ``status`` is
``"error"`` (from :func:`memo.ignore_error`) counts as a failure. The run ends with
a :class:`RunReport`; when calls raised, :class:`RunError` (carrying the report) is
raised after every other call has finished, unless ``errors="return"``. When a
worker process dies, the calls in flight on its pool fail and the remaining
settings go to a new pool. With ``timeout=SECONDS`` a call that runs longer fails
with a ``CallTimeout`` failure: interrupted inside the worker when it runs Python
code, otherwise its worker is killed and replaced (process backends) or abandoned
(threads) and the run goes on. Ctrl-C stops the workers and ends the run. Worker
processes end with their parent, even when it is killed (:func:`.worker.watch_parent`).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any, Literal

from . import capture
from .base import Backend, PoolBackend, Run, backend_class, backends, register_backend
from .batching import BatchOut
from .executor import ExecutorBackend
from .joblib_backend import JoblibBackend
from .loky import LokyBackend
from .processes import ProcessesBackend
from .progress import Progress
from .report import Failure, RunError, RunReport
from .serial import SerialBackend
from .settings import Indexed, Skipper, check_settings
from .slurm import SlurmBackend
from .threads import ThreadsBackend
from .worker import CallTimeout

__all__ = ["Backend", "CallTimeout", "ExecutorBackend", "Failure", "JoblibBackend",
           "LokyBackend", "PoolBackend", "ProcessesBackend", "Run", "RunError", "RunReport",
           "Runner", "SerialBackend", "SlurmBackend", "ThreadsBackend", "backends",
           "register_backend"]


class Runner:
    """Runs a (decorated) function once per setting on a parallel backend.

    ``backend``: a registered name (:func:`backends`): ``"serial"``, ``"threads"``
    (``"threading"``), ``"processes"`` (``"multiprocessing"``; forked on Linux, so the
    function, its sinks and the parent's lists are inherited, not pickled),
    ``"loky"`` (fresh interpreters, the function is pickled with cloudpickle),
    ``"slurm"`` (one submitit array job; each task runs its :func:`memo.shard` of
    the settings) or ``"joblib"`` (the active ``joblib.parallel_config``).
    ``executor``: any ``concurrent.futures.Executor`` to run the batches on instead
    (Dask's ``Client.get_executor()``, ``MPIPoolExecutor``); it is not shut down.
    ``n_jobs``: workers, ``-1`` for all cores, ``-2`` for all but one (as in joblib);
    for ``slurm`` the number of array tasks (default: one per setting, at most 100).
    ``chunksize``: calls per batch sent to a worker (default: adapted so that a batch
    takes about 50 ms; the first batches are large, and a worker sends back unrun
    what it could not start within about 100 ms, so slow calls spread over the
    workers at once). ``timeout``: seconds a call may take before it fails.
    ``progress_interval``: seconds between progress lines when stderr is not a
    terminal (default 30, or ``MEMO_PROGRESS_INTERVAL``). ``slurm``: parameters for
    ``submitit.AutoExecutor.update_parameters`` (``slurm_partition``,
    ``timeout_min``, ...), with job files in ``folder``.
    """

    def __init__(
        self,
        backend: str | None = None,
        n_jobs: int | None = None,
        *,
        executor: Executor | None = None,
        progbar: bool | None = None,
        chunksize: int | None = None,
        timeout: float | None = None,
        start_method: str | None = None,
        folder: str | os.PathLike[str] = "memo-slurm",
        slurm: Mapping[str, Any] | None = None,
        poll_interval: float = 0.5,
        progress_interval: float | None = None,
    ) -> None:
        if executor is not None:
            if not isinstance(executor, Executor):
                raise TypeError(f"Runner(executor=...) needs a concurrent.futures.Executor, "
                                f"got {type(executor).__name__}")
            if backend not in (None, "executor"):
                raise ValueError(f"Runner(backend={backend!r}, executor=...): pass one of them")
            backend = "executor"
            cls: type[Backend] = ExecutorBackend
        else:
            backend = "processes" if backend is None else backend
            if backend == "executor":
                raise ValueError("backend='executor' needs Runner(executor=...)")
            cls = backend_class(backend)
        if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int)
                                   or n_jobs == 0):
            raise ValueError(f"n_jobs must be a non-zero whole number or None, got {n_jobs!r}")
        if chunksize is not None and (not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError(f"chunksize must be a whole number >= 1, got {chunksize!r}")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.backend = backend
        self.executor = executor
        self.n_jobs = n_jobs
        self.progbar = progbar
        self.chunksize = chunksize
        self.timeout = timeout
        self.start_method = start_method
        self.folder = folder
        self.slurm = dict(slurm or {})
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.engine = cls(self)

    def __repr__(self) -> str:
        return f"Runner(backend={self.backend!r}, n_jobs={self.n_jobs!r})"

    def workers(self) -> int:
        """How many workers ``n_jobs`` means on this machine."""
        return self.engine.workers()

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
        a terminal, and a progress line at intervals when it is not (a log file);
        ``True`` asks for the bar (tqdm needed), ``False`` shows nothing.
        ``return_results=True`` keeps each call's return value, in settings order, in
        ``report.results`` (for skipped settings: the stored outputs). When the
        function's outermost recorder has ``skip=True``, settings it holds already are
        not sent to workers at all, and settings another run is computing are left to
        the end. Failed calls are summarized on stderr at the end (unless ``quiet``);
        calls that raised make it raise :class:`RunError` unless ``errors="return"``.
        """
        if not callable(func):
            raise TypeError(f"Runner.run(func=...) needs a callable, got {type(func).__name__}")
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        items, total = check_settings(settings)
        if isinstance(settings, (list, tuple)):  # the sweep's plan, beside the files it
            from .._util import user_stacklevel
            from ..plan import record_function  # writes (for memo status)

            try:
                record_function(func, settings)
            except OSError as exc:  # a plan is for looking; the calls report unusable files
                warnings.warn(f"the sweep's plan was not recorded: {exc}", RuntimeWarning,
                              stacklevel=user_stacklevel())
        name = getattr(func, "__qualname__", repr(func))
        report = RunReport(func=name, total=total if total is not None else 0)
        progress = Progress(self.progbar if progbar is None else progbar, total, name,
                            self.progress_interval)
        results: dict[int, Any] | None = {} if return_results else None
        recs = capture.recorders(func)

        def skipped(index: int, setting: Mapping[str, Any]) -> None:
            report.skipped += 1
            progress.skip()
            if results is not None:  # what the call would return: the stored outputs
                results[index] = recs[0].stored(setting)

        skipper = Skipper(recs[0], skipped) if recs and recs[0].skip else None
        indexed = Indexed(items, total, skipper)

        def deliver(out: BatchOut, count: bool = True) -> None:
            if out.records:
                capture.deliver(recs, out.records)
            for f in out.failures:
                report.failures.append(
                    f if f.settings else replace(f, settings=indexed.settings_of(f.index)))
            if results is not None and out.results:
                results.update(out.results)
            report.done += out.done
            if count:
                progress.advance(out.done, report.failed)

        t0 = time.perf_counter()
        try:
            self.engine.run(Run(func, indexed, deliver, progress, return_results, self.timeout))
        finally:
            for rec in recs:
                rec.flush()
            progress.close()
            report.elapsed = time.perf_counter() - t0
            if total is None:
                report.total = indexed.count
            if results is not None:
                report.results = [results.get(i) for i in range(report.total)]
        if indexed.error is not None:
            raise indexed.error
        if any(f.raised for f in report.failures) and errors == "raise":
            raise RunError(report)
        if report.failures and not quiet:
            print(report.summary(), file=sys.stderr)
        return report

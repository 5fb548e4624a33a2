"""The backend protocol, its registry, and the batch loop shared by every pool backend.

A backend runs the calls of one run. It gets a :class:`Run` (the job, the numbered
settings, where outcomes go, the progress) and returns when every setting it took
has an outcome. Backends are registered by name, as joblib's
``register_parallel_backend`` does::

    from memo.runner import Backend, register_backend

    class Inline(Backend):
        def run(self, run):
            for item in run.indexed:
                run.deliver(run.job().run_batch([item]))

    register_backend("inline", Inline)
    Runner("inline").run(f, settings)

:class:`PoolBackend` is the base of backends built on a
``concurrent.futures.Executor``: a subclass says how to open its executor, what
to submit and how to stop it; the loop here sends batches, keeps a few in flight
per worker, hands out again first the calls a batch returned unrun (its worker's
time budget, ``run.budget``, ran out), replaces a pool whose worker died, fails a
call that outlives the run's ``timeout`` (and replaces its worker), and on Ctrl-C
stops the workers before the ``KeyboardInterrupt`` goes on.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, Future, wait
from concurrent.futures._base import BrokenExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .batching import (
    BUDGET_BATCHES,
    TARGET_BATCH_SECONDS,
    BatchOut,
    BatchSizer,
    first_batch,
    lost,
)
from .progress import Progress
from .settings import Batch, Indexed
from .worker import Job, _type_name

if TYPE_CHECKING:
    from . import Runner

__all__ = ["Backend", "PoolBackend", "Run", "backend_class", "backends", "register_backend"]


@dataclass
class Run:
    """One run, as a backend sees it."""

    func: Callable[..., Any]
    indexed: Indexed
    deliver: Callable[..., None]  # deliver(out, count=True): hand a batch's outcome back
    progress: Progress
    keep_results: bool
    timeout: float | None
    budget: float | None = None  # seconds a worker runs a batch before it returns the rest

    def job(self, capture_records: bool = False) -> Job:
        """The job to run in this process (or, with ``capture_records``, in a worker)."""
        return Job(self.func, keep_results=self.keep_results, timeout=self.timeout,
                   capture_records=capture_records, budget=self.budget)


class Backend(abc.ABC):
    """Runs the calls of a run. Subclasses implement :meth:`run`."""

    name = ""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def workers(self) -> int:
        """How many workers ``n_jobs`` means on this machine (``-1``: every core)."""
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        n = self.runner.n_jobs if self.runner.n_jobs is not None else -1
        return max(1, n if n > 0 else cores + 1 + n)

    @abc.abstractmethod
    def run(self, run: Run) -> None:
        """Run every call of ``run``, delivering batch results through it."""


_REGISTRY: dict[str, type[Backend]] = {}


def register_backend(name: str, cls: type[Backend], *, aliases: tuple[str, ...] = ()) -> None:
    """Make ``Runner(name)`` use ``cls`` (a :class:`Backend` subclass)."""
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"register_backend({name!r}, ...) needs a subclass of "
                        f"memo.runner.Backend, got {cls!r}")
    for key in (name, *aliases):
        _REGISTRY[key] = cls


def backend_class(name: str) -> type[Backend]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; use one of "
                         f"{', '.join(sorted(_REGISTRY))} (or register_backend)") from None


def backends() -> list[str]:
    """The registered backend names."""
    return sorted(_REGISTRY)


class PoolBackend(Backend):
    """A backend on a ``concurrent.futures.Executor`` (subclasses fill in the hooks)."""

    in_flight_per_worker = 2  # batches queued per worker: one running, one ready
    batch_seconds = TARGET_BATCH_SECONDS  # how long a batch should take (adapted sizes)
    grace = 2.0  # seconds past the timeout before the parent stops a call itself
    startup = 30.0  # seconds a new pool's workers may take to start (fresh interpreters)

    @abc.abstractmethod
    def open(self, run: Run) -> Executor:
        """The executor the batches are submitted to."""

    @abc.abstractmethod
    def task(self, run: Run) -> Callable[[Batch], BatchOut]:
        """The callable submitted with each batch."""

    def close(self, executor: Executor, *, hard: bool) -> None:
        """After the run (``hard=False``), or to stop its workers now (``hard=True``)."""
        executor.shutdown(wait=not hard, cancel_futures=hard)

    def replace(self, executor: Executor, run: Run) -> tuple[Executor, bool]:
        """A worker hangs past the timeout: a new executor, and whether the others' calls
        in flight were lost with the old one (then they are sent again)."""
        self.close(executor, hard=True)
        return self.open(run), True

    def broken(self, exc: BaseException) -> bool:
        """Whether ``exc`` from a future means a worker died and the pool is unusable."""
        return isinstance(exc, BrokenExecutor)

    def run(self, run: Run) -> None:
        timeout = run.timeout
        workers = self.workers()
        limit = workers if timeout else self.in_flight_per_worker * workers
        # with a timeout, every call in flight is running: a late one is known by its start;
        # adapted sizes start large, and workers return what their time budget left unrun
        fixed = 1 if timeout else self.runner.chunksize
        if fixed is None:
            run.budget = BUDGET_BATCHES * self.batch_seconds
        sizer = BatchSizer(fixed, workers, run.indexed.total, self.batch_seconds,
                           first_batch(run.indexed.total, limit) if fixed is None else 1)
        call = self.task(run)  # (before open: a function that cannot be sent fails here)
        executor = self.open(run)
        pending: dict[Future[BatchOut], tuple[Executor, Batch, float]] = {}
        # when the current pool first finished a batch: its workers are up, and a call's
        # time counts from its submission (before, from then plus the start-up allowance)
        self.warm: float | None = None

        def submit(batch: Batch) -> None:
            nonlocal executor
            try:
                future = executor.submit(call, batch)
            except Exception as exc:
                if not self.broken(exc):
                    raise
                # a worker died since the last look (the pool says so only now): a new pool
                # takes this batch; the old one's calls in flight fail as they come back
                self.close(executor, hard=True)
                executor = self.open(run)
                self.warm = None
                future = executor.submit(call, batch)
            pending[future] = (executor, batch, time.monotonic())

        try:
            while True:
                while len(pending) < limit:
                    batch = run.indexed.take(sizer.size())
                    if not batch:
                        break
                    submit(batch)
                run.progress.start()  # the workers exist now
                if not pending:
                    break
                wait_at_most = None
                if timeout is not None:
                    first = min(self._deadline(t, timeout) for _, _, t in pending.values())
                    wait_at_most = max(0.0, first - time.monotonic())
                done, _ = wait(pending, timeout=wait_at_most, return_when=FIRST_COMPLETED)
                for fut in done:
                    owner, batch, _ = pending.pop(fut)
                    if owner is executor and self.warm is None:
                        self.warm = time.monotonic()
                    try:
                        out = fut.result()
                    except (Exception, CancelledError) as exc:
                        if not self.broken(exc):
                            out = lost(batch, f"{_type_name(type(exc))}: {exc}")
                        else:  # a worker died (killed, segfault, exit): its calls failed
                            out = lost(batch, f"a worker process died ({exc})")
                            if owner is executor:  # the rest of the settings get a new pool
                                self.close(executor, hard=True)
                                executor = self.open(run)
                                self.warm = None
                    sizer.observe(out)
                    run.deliver(out)
                    run.indexed.forget(batch)
                    if out.unrun:  # the worker's budget ran out: the rest goes first
                        run.indexed.give_back(batch[-out.unrun:])
                        sizer.give_back(out.unrun)
                if timeout is not None and not done:
                    executor, again = self._overdue(run, executor, pending, timeout)
                    for batch in again:
                        submit(batch)
        except BaseException:
            for fut in pending:
                fut.cancel()
            self.close(executor, hard=True)
            raise
        self.close(executor, hard=False)

    def _deadline(self, submitted: float, timeout: float) -> float:
        start = max(submitted, self.warm) if self.warm is not None \
            else submitted + self.startup
        return start + timeout + self.grace

    def _overdue(self, run: Run, executor: Executor,
                 pending: dict[Future[BatchOut], tuple[Executor, Batch, float]],
                 timeout: float) -> tuple[Executor, list[Batch]]:
        """Fail the calls past their time, replace their workers, resend what was lost."""
        now = time.monotonic()
        late = [f for f, (_, _, t) in pending.items() if now >= self._deadline(t, timeout)]
        if not late:
            return executor, []
        for fut in late:
            _, batch, _ = pending.pop(fut)
            fut.cancel()
            run.deliver(lost(batch, f"the call did not return within timeout={timeout:g} s "
                                    "(Runner(timeout=...)); its worker was stopped and "
                                    "replaced", "memo.runner.worker.CallTimeout"))
            run.indexed.forget(batch)
        executor, resend = self.replace(executor, run)
        if not resend:
            return executor, []
        self.warm = None
        again = [batch for _, batch, _ in pending.values()]
        pending.clear()
        return executor, again

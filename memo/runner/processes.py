"""``processes``: a ``concurrent.futures.ProcessPoolExecutor`` made for the run.

Workers are forked from the calling process on Linux, so the function, its sinks
and the parent's lists are inherited, not pickled (``start_method="spawn"`` pickles
the function by reference instead). Each worker's initializer builds the run's
job once and asks the kernel to end the worker with the thread that started it,
the one waiting in the run (:func:`.worker.watch_parent`). The pool ends
with the run; stopping it hard (Ctrl-C, a call past ``timeout``) kills its workers
first, since a worker inside a hanging call would never take the pool's stop
message, and ``concurrent.futures`` waits for its workers at interpreter exit.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from .base import Batch, PoolBackend, Run, register_backend
from .batching import BatchOut
from .worker import death_signal, init_forked, run_forked

__all__ = ["ProcessesBackend", "kill_workers"]


def kill_workers(executor: Any) -> None:
    """SIGKILL the worker processes of a ``concurrent.futures`` or loky process pool."""
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):
            pass  # already gone


class ProcessesBackend(PoolBackend):
    name = "processes"

    def open(self, run: Run) -> Executor:
        method = self.runner.start_method
        if method is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        context = multiprocessing.get_context(method)
        return ProcessPoolExecutor(max_workers=self.workers(), mp_context=context,
                                   initializer=init_forked,
                                   initargs=(run.func, run.keep_results, run.timeout,
                                             run.budget, death_signal() is not None))

    def task(self, run: Run) -> Callable[[Batch], BatchOut]:
        return run_forked

    def close(self, executor: Executor, *, hard: bool) -> None:
        if hard:
            kill_workers(executor)
        executor.shutdown(wait=not hard, cancel_futures=hard)


register_backend("processes", ProcessesBackend, aliases=("multiprocessing",))

"""``loky``: joblib's process pool (fresh interpreters; ``pip install joblib``).

The pool is memo's own, kept between runs (:mod:`.pools`), apart from joblib's. The
function travels with cloudpickle, once per worker and run (:class:`.worker.Shipment`),
so a function loky cannot send fails before anything runs, with its name in the
error. Stopping hard kills the workers (``kill_workers=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial

from .base import Batch, PoolBackend, Run, register_backend
from .batching import BatchOut
from .pools import KEPT, loky_class, new_loky_pool
from .worker import Shipment, run_shipped

__all__ = ["LokyBackend"]


class LokyBackend(PoolBackend):
    name = "loky"

    def open(self, run: Run) -> Executor:
        executor = KEPT.acquire(self.workers())
        if executor is None:  # another run (another thread) has the kept pool
            executor = new_loky_pool(self.workers())
        return executor  # type: ignore[no-any-return]

    def task(self, run: Run) -> Callable[[Batch], BatchOut]:
        shipment = Shipment(run.func, self.name, keep_results=run.keep_results,
                            timeout=run.timeout, budget=run.budget)
        return partial(run_shipped, *shipment.args())

    def run(self, run: Run) -> None:
        loky_class()  # joblib is installed, or a clear ImportError
        super().run(run)

    def close(self, executor: Executor, *, hard: bool) -> None:
        if hard:
            KEPT.forget(executor)
            executor.shutdown(wait=False, kill_workers=True)  # type: ignore[call-arg]
        elif not KEPT.release(executor):
            executor.shutdown(wait=True)

    def broken(self, exc: BaseException) -> bool:
        from joblib.externals.loky.process_executor import (  # type: ignore[import-untyped]
            TerminatedWorkerError,
        )
        return isinstance(exc, TerminatedWorkerError) or super().broken(exc)


register_backend("loky", LokyBackend)

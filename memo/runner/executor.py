"""Any ``concurrent.futures.Executor`` as a backend: ``Runner(executor=...)``.

Dask (``Client.get_executor()``), mpi4py (``MPIPoolExecutor``), a user's own: memo
submits batches to it and never shuts it down (it belongs to the caller). The
function goes with every batch as a small cloudpickled payload that each worker
process unpickles once (:class:`.worker.Shipment`), so workers on other machines
need only memo and the function's module importable. Records of parent sinks
(``memlist``, ``memfunc``) come back with each batch; ``memfile`` writes from the
workers, so the file must be on a filesystem they share (otherwise use ``memweb``
and ``memo serve``).

A call past ``timeout`` is failed and its future cancelled; memo cannot replace a
worker of an executor it does not own, so a call that ignores the alarm may go on
running there.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any

from .base import Batch, PoolBackend, Run
from .batching import BatchOut
from .worker import Shipment, run_shipped

__all__ = ["ExecutorBackend"]


def _dask_threads(executor: Any) -> int | None:
    client = getattr(executor, "_client", None)
    nthreads = getattr(client, "nthreads", None)
    if nthreads is None:
        return None
    try:
        return sum(nthreads().values()) or None
    except Exception:  # a client that cannot tell: fall back to n_jobs or the cores
        return None


class ExecutorBackend(PoolBackend):
    name = "executor"
    # distributed engines take milliseconds per task (a scheduler, the network): longer
    # batches, and more of them queued, keep their workers busy
    batch_seconds = 0.2
    in_flight_per_worker = 3

    def workers(self) -> int:
        if self.runner.n_jobs is not None and self.runner.n_jobs > 0:
            return self.runner.n_jobs
        executor = self.runner.executor
        n = getattr(executor, "_max_workers", None) or _dask_threads(executor)
        return int(n) if n else super().workers()

    def open(self, run: Run) -> Executor:
        assert self.runner.executor is not None
        return self.runner.executor

    def task(self, run: Run) -> Callable[[Batch], BatchOut]:
        shipment = Shipment(run.func, self.name, keep_results=run.keep_results,
                            timeout=run.timeout, budget=run.budget)
        return partial(run_shipped, *shipment.args())

    def close(self, executor: Executor, *, hard: bool) -> None:
        """The executor is the caller's: it stays open (the run cancelled its futures)."""

    def replace(self, executor: Executor, run: Run) -> tuple[Executor, bool]:
        return executor, False

"""``joblib``: batches through whatever ``joblib.parallel_config`` is active.

``Runner("joblib")`` hands its batches to ``joblib.Parallel``, so the backend chosen
with ``joblib.parallel_config(backend=...)`` runs them: loky by default, or Dask
(``backend="dask"``), Ray (``ray.util.joblib``), Spark (``joblibspark``) once
registered with joblib. ``n_jobs=None`` takes the configured number of workers.
The function travels as a cloudpickled payload (:class:`.worker.Shipment`), records
of parent sinks come back with each batch. ``timeout`` interrupts calls inside the
workers (SIGALRM, where the call runs in a worker's main thread); Ctrl-C is
joblib's to handle: it stops its backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import Backend, Run, register_backend
from .batching import BatchSizer
from .worker import Shipment, run_shipped

__all__ = ["JoblibBackend"]


class JoblibBackend(Backend):
    name = "joblib"

    def run(self, run: Run) -> None:
        try:
            from joblib import Parallel, delayed, effective_n_jobs
        except ImportError:
            from .._util import missing
            raise missing("backend='joblib'", "joblib", "parallel") from None
        shipment = Shipment(run.func, self.name, keep_results=run.keep_results,
                            timeout=run.timeout)
        parallel = Parallel(n_jobs=self.runner.n_jobs, return_as="generator_unordered",
                            batch_size=1)
        workers = max(1, effective_n_jobs(self.runner.n_jobs))
        sizer = BatchSizer(self.runner.chunksize, workers, run.indexed.total)
        task = delayed(run_shipped)

        def batches() -> Iterator[Any]:
            while batch := run.indexed.take(sizer.size()):
                yield task(*shipment.args(), batch)

        run.progress.start()
        for out in parallel(batches()):
            sizer.observe(out)
            run.deliver(out)


register_backend("joblib", JoblibBackend)

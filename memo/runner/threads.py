"""``threads``: calls in threads of the calling process (for calls that release the GIL).

The threads are memo's own daemon threads, not ``ThreadPoolExecutor``'s: Python
cannot stop a thread from outside, and ``concurrent.futures`` joins its threads at
interpreter exit, so one hanging call would keep the whole program from ending.
Here a run that ends (Ctrl-C, or a call past ``timeout``) leaves a hanging thread
behind: it stops when its call returns, or when the process exits. What Python
cannot do is interrupt the call itself: a thread stuck in ``time.sleep``, a lock or
C code goes on until it returns, and its records may still be written then. Use a
process backend for calls that must be stoppable.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from .base import Batch, PoolBackend, Run, register_backend
from .batching import BatchOut

__all__ = ["DaemonThreadPool", "ThreadsBackend"]


class DaemonThreadPool(Executor):
    """A fixed number of daemon threads taking calls from one queue."""

    def __init__(self, n: int, name: str = "memo-runner") -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._name = name
        self._threads = [self._start(i) for i in range(n)]
        self._shutdown = False

    def _start(self, i: int) -> threading.Thread:
        t = threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
        t.start()
        return t

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot submit to a pool that was shut down")
        fut: Future[Any] = Future()
        self._queue.put((fut, fn, args))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join()


class ThreadsBackend(PoolBackend):
    name = "threads"
    startup = 0.0

    def open(self, run: Run) -> Executor:
        return DaemonThreadPool(self.workers())

    def task(self, run: Run) -> Callable[[Batch], BatchOut]:
        return run.job().run_batch

    def replace(self, executor: Executor, run: Run) -> tuple[Executor, bool]:
        # the late thread cannot be stopped: leave it, and go on with a new set of threads
        # (the other calls in flight go on in theirs)
        executor.shutdown(wait=False)
        return self.open(run), False


register_backend("threads", ThreadsBackend, aliases=("threading",))

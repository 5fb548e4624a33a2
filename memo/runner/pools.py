"""Pool keeping: memo's own loky pool, kept between runs as joblib keeps its own.

loky workers are fresh interpreters and take a while to start, so one pool serves
run after run. It is handed to one run at a time (a run in another thread meanwhile
gets a pool of its own), and started anew when the number of workers,
``sys.path``, the working directory or the environment changed (workers got those
when they started), when it broke, and in a forked child. It is shut down at
interpreter exit. A kept worker meets each run's function in its first batch of
that run (:class:`.worker.Shipment`), so nothing of an earlier run's job stays in
use.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Executor
from typing import Any

from .worker import watch_parent

__all__ = ["KEPT", "KeptPool", "loky_class", "new_loky_pool"]

IDLE_TIMEOUT = 300  # seconds an idle worker lives (loky starts another on demand)


def loky_class() -> Any:
    try:
        from joblib.externals.loky import (  # type: ignore[import-untyped]
            ProcessPoolExecutor as LokyExecutor,
        )
    except ImportError:
        from .._util import missing
        raise missing("backend='loky' (or use backend='processes')", "joblib",
                      "parallel") from None
    return LokyExecutor


def new_loky_pool(n: int) -> Any:
    """A loky pool whose workers end when this process ends, however it ends."""
    return loky_class()(max_workers=n, timeout=IDLE_TIMEOUT, initializer=watch_parent)


class KeptPool:
    """The kept pool, and who is using it."""

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
                self.executor = new_loky_pool(n)
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

    def workers(self) -> set[int]:
        """The pids of the kept pool's workers (for tests and diagnostics)."""
        executor = self.executor
        return set((getattr(executor, "_processes", None) or {}).keys())

    def close(self) -> None:
        with self.lock:
            executor, self.executor = self.executor, None
        if executor is not None and self.pid == os.getpid():
            executor.shutdown(wait=True)


KEPT = KeptPool()

"""Batching: records handed over one by one, delivered in lists by a background thread.

A :class:`Batcher` buffers serialized records and a daemon thread hands them to
``deliver`` in lists of up to ``size``, at the latest ``interval`` seconds after the
oldest one was handed over. :meth:`Batcher.flush` delivers everything now and waits;
the buffer is flushed at exit (:mod:`memo.web.hooks`). An exception from
``deliver`` in the thread is kept and raised by the next :meth:`~Batcher.put` or
:meth:`~Batcher.flush` (a thread has no caller to raise to).

A forked child starts with an empty buffer and no thread (what was buffered before
the fork is its parent's to send); the thread only holds a weak reference, so a
batcher nobody uses any more lets its thread end.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable

from .hooks import flush_at_exit

__all__ = ["Batcher"]


class Batcher:
    """Hands lines to ``deliver`` in lists of up to ``size``, from a background thread."""

    def __init__(self, deliver: Callable[[list[bytes]], None], size: int,
                 interval: float = 1.0) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"batch must be a positive number of records, got {size!r}")
        if interval <= 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {interval!r}")
        self.deliver = deliver
        self.size = size
        self.interval = interval
        self._error: BaseException | None = None
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.RLock())
        self._buffer: list[bytes] = []
        self._sending = 0
        self._flushing = 0
        self._first_at = 0.0  # when the oldest buffered line was handed over
        self._thread: threading.Thread | None = None

    def put(self, line: bytes) -> None:
        if self._pid != os.getpid():  # a forked child: the parent sends what it buffered
            self._reset()
        self._raise_pending()
        with self._cond:
            if self._thread is None:
                self._start()
            if not self._buffer:
                self._first_at = time.monotonic()
            self._buffer.append(line)
            if len(self._buffer) >= self.size:
                self._cond.notify_all()

    def _start(self) -> None:
        self._thread = threading.Thread(target=_run, args=(weakref.ref(self), self._cond),
                                        name="memweb-sender", daemon=True)
        self._thread.start()
        flush_at_exit(self)

    def _next(self) -> list[bytes] | None:
        """Wait for a batch (the thread calls this with the condition held); None: stop."""
        cond = self._cond
        if self._thread is not threading.current_thread():
            return None  # closed, or a new thread took over
        if not self._buffer:
            cond.wait(self.interval)
            if not self._buffer:
                return []  # nothing yet: the loop checks that the batcher is still in use
        end = self._first_at + self.interval
        while len(self._buffer) < self.size and not self._flushing:
            left = end - time.monotonic()
            if left <= 0:
                break
            cond.wait(left)
        lines = self._buffer[:self.size]
        del self._buffer[:self.size]
        self._first_at = time.monotonic()  # what is left waits at most another interval
        self._sending += len(lines)
        return lines

    def _send(self, lines: list[bytes]) -> None:
        try:
            self.deliver(lines)
        except BaseException as exc:  # kept for the caller: a thread has no one to raise to
            self._error = exc
        finally:
            with self._cond:
                self._sending -= len(lines)
                self._cond.notify_all()

    def flush(self) -> None:
        """Deliver every buffered line now and wait until ``deliver`` returned for each."""
        if self._pid == os.getpid():
            with self._cond:
                self._flushing += 1
                self._cond.notify_all()
                try:
                    while self._buffer or self._sending:
                        if self._thread is None or not self._thread.is_alive():
                            lines, self._buffer = self._buffer, []
                            if lines:  # no thread (closed, or dead at exit): send here
                                self._sending += len(lines)
                                self._send(lines)
                            break
                        self._cond.wait(0.1)
                finally:
                    self._flushing -= 1
        self._raise_pending()

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Flush, then stop the thread (a later :meth:`put` starts a new one)."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._thread = None
                self._cond.notify_all()


def _run(ref: weakref.ref[Batcher], cond: threading.Condition) -> None:
    while True:
        batcher = ref()
        if batcher is None or batcher._cond is not cond:
            return
        with cond:
            lines = batcher._next()
        if lines is None:
            return
        if lines:
            batcher._send(lines)
        del batcher

"""Worker-side capture: records of sinks that live in the parent travel back with a batch.

A sink says where it must run (``sink.where``): ``"worker"`` sinks (a file, HTTP,
W&B, stdout) write from the process that made the record; ``"parent"`` sinks
(``memlist``'s list, ``memfunc``'s callback, any sink of one's own that holds state
of the calling process) must see every record in the parent. In a worker process,
:func:`install` puts a :class:`CaptureSink` in place of each parent sink of the
function's recorders; it keeps ``(record, call)`` pairs, the batch ships them back,
and the parent hands each pair to the original sink's ``write(record, call)``.

The Runner knows no concrete sink: it asks :func:`memo.sinks.recorders_of` for the
recorders, outermost first, and addresses them by that position, which is the same
in the parent and in a worker that unpickled the function.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..sinks import recorders_of, where
from .batching import Shipped

__all__ = ["CaptureSink", "deliver", "install", "recorders", "restore", "take"]


def recorders(func: Callable[..., Any]) -> list[Any]:
    """The recorders of a decorated function, outermost first."""
    return recorders_of(func)


class CaptureSink:
    """Stands in for a parent sink in a worker: keeps each ``(record, call)`` to send back.

    Batches running at once in one worker process (threads of a Dask worker) share
    it: pairs go into a deque (one append, atomic) and :meth:`take` pops as many as
    it counted, so each record leaves once, with its own call, and no lock is taken
    per record.
    """

    where = "worker"

    def __init__(self, original: Any) -> None:
        self.original = original
        self._pairs: deque[tuple[dict[str, Any], Any]] = deque()
        self._append = self._pairs.append

    def write(self, record: dict[str, Any], call: Any) -> None:
        self._append((record, call))

    def flush(self) -> None:
        """Nothing to do here: the parent flushes the original sink."""

    def close(self) -> None:
        """Nothing to do here: the parent closes the original sink."""

    def take(self) -> tuple[list[dict[str, Any]], list[Any]] | None:
        """The pairs written so far, as two parallel lists (less to pickle and unpickle
        than a tuple per record; a Call shared by many records is pickled once)."""
        n = len(self._pairs)
        if not n:
            return None
        pop = self._pairs.popleft
        records, calls = zip(*[pop() for _ in range(n)])
        return list(records), list(calls)


def install(func: Callable[..., Any]) -> list[tuple[int, CaptureSink]]:
    """In a worker: capture sinks in place of the parent sinks of ``func``'s recorders."""
    installed = []
    for pos, rec in enumerate(recorders(func)):
        sink = rec.sink
        if isinstance(sink, CaptureSink):  # left by an earlier run in this worker
            sink = sink.original
        if where(sink) == "parent":
            capture = CaptureSink(sink)
            rec.sink = capture
            installed.append((pos, capture))
    return installed


def restore(func: Callable[..., Any]) -> None:
    """Put the original sinks back (a kept worker moving on to another run)."""
    for rec in recorders(func):
        if isinstance(rec.sink, CaptureSink):
            rec.sink = rec.sink.original


def take(captures: list[tuple[int, CaptureSink]]) -> list[Shipped]:
    out: list[Shipped] = []
    for pos, capture in captures:
        taken = capture.take()
        if taken is not None:
            out.append((pos, *taken))
    return out


def deliver(recs: list[Any], shipped: list[Shipped]) -> None:
    """In the parent: hand the shipped records to the original sinks."""
    for pos, records, calls in shipped:
        sink = recs[pos].sink
        many = getattr(sink, "write_many", None)
        if many is not None:
            many(records, calls)
            continue
        write = sink.write
        for record, call in zip(records, calls):
            write(record, call)

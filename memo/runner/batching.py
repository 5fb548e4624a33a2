"""Batches: what one batch of calls sends back, and how many calls go in a batch.

A batch is a list of numbered settings handed to a worker in one message; its
outcome (:class:`BatchOut`) carries counts, the failures, the records headed for
sinks that live in the parent, and return values when the caller wants them.
Batch sizes adapt so that a batch takes about 50 ms (:class:`BatchSizer`): long
enough that sending it costs little, short enough that the tail of a run stays
balanced across workers.

Before the time of a call is known, the first batches are already large (up to
:data:`FIRST_BATCH` calls, a share of the run for each worker): a worker runs a
batch for at most its time *budget* (at least one call) and sends the calls it
did not start back unrun (``BatchOut.unrun``), to be handed out again first. Fast
calls pay no ramp of one-call batches; slow calls keep a worker busy for no
longer than one call past the budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .report import Failure

__all__ = ["BatchOut", "BatchSizer", "Shipped", "first_batch", "lost"]

TARGET_BATCH_SECONDS = 0.05  # batches this long keep the per-batch cost near 1% of 1 ms calls
MIN_BATCH_SECONDS = 0.005  # the tail's batches are not cut shorter than this: more of them
# would cost more round trips to the parent than the balance between workers gains
MAX_BATCH = 2048  # a batch's settings and records cross a pipe: past a few thousand
# short calls, sending a batch takes longer than running it, and smaller batches let the
# pipe and the workers work at once
FIRST_BATCH = 1024  # calls in a first batch, before their time is known (see budget)
BUDGET_BATCHES = 2  # a worker's budget for a batch: this many target batch lengths

# records for the parent's sinks: (position of the recorder, [record, ...], [call, ...])
Shipped = tuple[int, list[dict[str, Any]], list[Any]]


@dataclass
class BatchOut:
    """What a batch of calls sends back: small, and cheap to pickle."""

    done: int
    failures: list[Failure]
    records: list[Shipped]
    results: list[tuple[int, Any]] | None
    seconds: float
    unrun: int = 0  # the batch's last calls, not started: its time budget ran out

    def add(self, other: BatchOut) -> None:
        """Fold ``other`` into this outcome (a SLURM task sums its calls)."""
        self.done += other.done
        self.failures += other.failures
        self.records += other.records
        if self.results is not None and other.results:
            self.results += other.results
        self.seconds += other.seconds


def lost(batch: Sequence[tuple[int, Mapping[str, Any]]], why: str,
         error_type: str = "WorkerError") -> BatchOut:
    """The outcome of a batch whose worker did not report back: every call failed."""
    return BatchOut(len(batch), [Failure(i, s, error_type, why) for i, s in batch], [],
                    None, 0.0)


def first_batch(total: int | None, in_flight: int) -> int:
    """The size of the first batches, when workers stop a batch at their time budget.

    Each of the ``in_flight`` first batches gets at most its share of ``total``, so
    that slow calls are spread over every worker from the start. With no known
    total (a generator) batches start at one call: a large first batch would read
    far into the generator and leave the other workers idle behind one slow call.
    """
    if total is None:
        return 1
    return max(1, min(FIRST_BATCH, math.ceil(total / max(1, in_flight))))


class BatchSizer:
    """Batch sizes: a fixed ``chunksize``, or adapted to the measured time per call."""

    def __init__(self, fixed: int | None, workers: int, total: int | None,
                 target: float = TARGET_BATCH_SECONDS, first: int = 1) -> None:
        self.fixed = fixed
        self.first = first  # the size of batches before a call's time is known
        self.target = target
        self.workers = workers
        self.total = total
        self.taken = 0
        self.per_call: float | None = None
        self._even: int | None = None  # the size of the last batches, once they are known
        self._seconds = self._calls = 0.0  # decayed sums: long batches count for more

    def size(self) -> int:
        if self.fixed is not None:
            n = self.fixed
        elif self.per_call is None:
            n = self.first
        else:
            n = int(min(MAX_BATCH, max(1, self.target / max(self.per_call, 1e-7))))
            if self.total is not None:  # keep a few batches per worker for the tail
                left = self.total - self.taken
                least = min(MAX_BATCH, int(MIN_BATCH_SECONDS / max(self.per_call, 1e-7)))
                if self._even is None and left <= least * self.workers:
                    # what is left is short work: the rest in one even batch per worker
                    self._even = max(1, math.ceil(left / self.workers))
                if self._even is not None:
                    n = self._even
                else:
                    n = max(1, min(n, max(math.ceil(left / (4 * self.workers)), least)))
        self.taken += n
        return n

    def give_back(self, n: int) -> None:
        """``n`` calls of a batch came back unrun: they will be taken again."""
        self.taken -= n

    def observe(self, out: BatchOut) -> None:
        # the time per call over the recent batches, weighted by their calls: the first
        # batches of one call measure mostly the cost of a batch, and must not keep the
        # next ones small for long
        if out.done and out.seconds > 0:
            self._seconds = 0.5 * self._seconds + out.seconds
            self._calls = 0.5 * self._calls + out.done
            self.per_call = self._seconds / self._calls

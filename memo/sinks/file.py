"""``memfile``: records appended as JSON lines to one file shared by many writers."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from ..pipeline import recorder
from ..reader import Tail
from ..resume import SkipIndex
from ..serialize import dumps_line
from ..shardfile import ShardWriter, shard_dir, sources
from ..writer import AppendWriter

__all__ = ["FileSink", "memfile"]

F = TypeVar("F", bound=Callable[..., Any])

SHARD_RESCAN = 0.2  # seconds between looks at the other writers' shards (skip=True)


class FileSink:
    """Serializes each record to one line and appends it to the file (or to a shard of it)."""

    def __init__(self, filepath: str | os.PathLike[str], *, durable: bool = False,
                 fallback: Callable[[Any], Any] | None = None, lock: str = "auto",
                 timeout: float | None = None,
                 mode: Literal["shared", "shard"] = "shared") -> None:
        self.path = os.path.abspath(os.fspath(filepath))
        self._settings = {"durable": durable, "fallback": fallback, "lock": lock,
                          "timeout": timeout, "mode": mode}
        self.mode = mode
        self.writer: AppendWriter | ShardWriter
        if mode == "shared":
            if lock == "none":
                raise ValueError("lock='none' would let writers of a shared file interleave; "
                                 "for lock-free writing use mode='shard'")
            encode = dumps_line if fallback is None else \
                functools.partial(dumps_line, fallback=fallback)
            self.writer = AppendWriter(self.path, durable=durable, lock=lock, timeout=timeout,
                                       encode=encode)
        elif mode == "shard":
            if lock not in ("auto", "none"):
                raise ValueError(f"mode='shard' takes no lock (each writer has its own file); "
                                 f"drop lock={lock!r}")
            self.writer = ShardWriter(self.path, durable=durable)
        else:
            raise ValueError(f"mode={mode!r} is not 'shared' or 'shard'")
        self.fallback = fallback
        self._bind()
        self._tails: dict[str, Tail] = {}
        self._tail: Tail | None = None
        self._scanned = -1.0

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its settings (for cloudpickle, loky, submitit): a copy reads afresh."""
        return (functools.partial(FileSink, **self._settings), (self.path,))  # type: ignore[arg-type]

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line (the pipeline calls the faster copy set below)."""
        if isinstance(self.writer, AppendWriter):  # it serializes the record itself
            self.writer.append(record)
        else:
            self.writer.append(dumps_line(record, self.fallback))

    def _bind(self) -> None:
        if isinstance(self.writer, AppendWriter):  # one call per record: it serializes
            self.write = self.writer.append  # type: ignore[method-assign,assignment]
            return

        def write(record: dict[str, Any], _dumps: Any = dumps_line,
                  _fallback: Any = self.fallback, _append: Any = self.writer.append) -> None:
            _append(_dumps(record, _fallback))

        self.write = write  # type: ignore[method-assign]

    def refresh(self, index: SkipIndex) -> None:
        """Feed ``index`` the records appended since the last call (by anyone)."""
        if self.mode == "shared":
            tail = self._tail
            if tail is None:
                tail = self._tail = Tail(self.path)
            reset, records = tail.read_new()
            if reset:
                index.clear()
            for record in records:
                index.add(record)
            return
        self._refresh_shards(index)

    def _refresh_shards(self, index: SkipIndex) -> None:
        now = time.monotonic()
        if now - self._scanned >= SHARD_RESCAN:  # the target, and every writer's shard
            self._scanned = now
            try:
                names = sources(self.path)
            except FileNotFoundError:
                names = []
        else:  # in between, only our own shard (what this process just wrote)
            names = [os.path.join(shard_dir(self.path), os.path.basename(self.writer.path))]
        for name in names:
            tail = self._tails.get(name)
            if tail is None:
                tail = self._tails[name] = Tail(name)
            reset, records = tail.read_new()
            if reset:  # a file was replaced (merged, compacted): index everything again
                index.clear()
                self._tails.clear()
                self._scanned = -1.0
                return self._refresh_shards(index)
            for record in records:
                index.add(record)


def memfile(
    filepath: str | os.PathLike[str],
    *,
    skip: bool = False,
    retry_failed: bool = True,
    durable: bool = False,
    fallback: Callable[[Any], Any] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    lock: str = "auto",
    timeout: float | None = None,
    mode: Literal["shared", "shard"] = "shared",
) -> Callable[[F], F]:
    """Append one JSON line per call to ``filepath``; safe for many processes at once.

    ``mode="shared"`` (default): every process appends to ``filepath`` itself, each
    line written whole under an inter-process lock. ``lock`` picks the lock:
    ``"auto"`` (``posix`` with a flush before unlocking on NFS, Lustre, BeeGFS,
    GPFS and other cluster filesystems, ``flock`` elsewhere; the ``MEMO_LOCK``
    environment variable overrides the choice), ``"flock"``, ``"posix"`` or ``"soft"``
    (a lock file, for filesystems without working locks). ``timeout`` bounds the
    wait for the lock (:class:`memo.locking.LockTimeout`).

    ``mode="shard"``: every process appends, without locks, to its own file in
    ``<filepath>.shards/``; ``memo.load(filepath)`` reads them all, and
    ``memo.merge`` combines them into one file.

    ``durable=True`` fsyncs each record before the call returns (survives a
    machine crash); by default a record is handed to the OS before the call
    returns (survives a crash of the process). ``skip=True`` returns the stored
    result instead of running the function again when a record with the same
    arguments is already in the file (failed calls are retried unless
    ``retry_failed=False``).
    """
    sink = FileSink(filepath, durable=durable, fallback=fallback, lock=lock, timeout=timeout,
                    mode=mode)
    return recorder(sink, skip=skip, retry_failed=retry_failed, include=include, exclude=exclude)

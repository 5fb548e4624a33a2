"""``memfile``: records appended as JSON lines to one file shared by many writers."""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from .. import rescue
from ..call import Call
from ..claims import Claims
from ..pipeline import recorder
from ..resume import FileIndex, Identity
from ..serialize import dumps_record
from ..shardfile import ShardWriter, sources
from ..writer import AppendWriter, WriteError

__all__ = ["FileSink", "memfile"]

F = TypeVar("F", bound=Callable[..., Any])


class FileSink:
    """Serializes each record to one line and appends it to the file (or to a shard of it).

    The line holds the record and its ``$memo`` identity (:mod:`memo.call`). With
    ``skip``, :meth:`resume` gives the pipeline a :class:`memo.resume.FileIndex` of
    the file (and, in shard mode, of every writer's shard); lines this sink writes
    are put into that index from their known position, without reading them back.
    """

    where = "worker"

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False,
                 fallback: Callable[[Any], Any] | None = None, lock: str = "auto",
                 timeout: float | None = None,
                 mode: Literal["shared", "shard"] = "shared", claim: bool = False) -> None:
        if callable(path) and not isinstance(path, (str, os.PathLike)):
            raise TypeError("memfile needs the path of the file to write: "
                            "write @memfile('results.jsonl'), not a bare @memfile")
        self.path = os.path.abspath(os.fspath(path))
        self._settings = {"durable": durable, "fallback": fallback, "lock": lock,
                          "timeout": timeout, "mode": mode, "claim": claim}
        self.mode = mode
        self.fallback = fallback
        self.writer: AppendWriter | ShardWriter
        encode = dumps_record if fallback is None else functools.partial(dumps_record,
                                                                          fallback=fallback)
        if mode == "shared":
            if lock == "none":
                raise ValueError("lock='none' would let writers of a shared file interleave; "
                                 "for lock-free writing use mode='shard'")
            self.writer = AppendWriter(self.path, durable=durable, lock=lock, timeout=timeout)
            append: Callable[[Any], Any] = self.writer.append
        elif mode == "shard":
            if lock not in ("auto", "none"):
                raise ValueError(f"mode='shard' takes no lock (each writer has its own file); "
                                 f"drop lock={lock!r}")
            self.writer = ShardWriter(self.path, durable=durable)
            shard_append = self.writer.append

            append = shard_append
        else:
            raise ValueError(f"mode={mode!r} is not 'shared' or 'shard'")
        self._append = append
        self._encode = encode
        # claims are written like the data: with its lock (shard mode: a lock of their own)
        self.claims = Claims(self.path, lock=lock if mode == "shared" else "auto") \
            if claim else None
        self._indexes: list[FileIndex] = []
        self._index_lock = threading.Lock()
        self.write = self._write_plain  # type: ignore[method-assign]

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its settings (for cloudpickle, loky, submitit): a copy reads afresh."""
        return (functools.partial(FileSink, **self._settings), (self.path,))  # type: ignore[arg-type]

    def _write_plain(self, record: dict[str, Any], call: Call) -> Any:
        line = self._encode(record, call._tail or call.tail())  # raises before writing
        try:
            return self._append(line)
        except WriteError as exc:
            self._rescue(line, exc)

    def _write_noted(self, record: dict[str, Any], call: Call) -> Any:
        line = self._encode(record, call._tail or call.tail())
        try:
            span = self._append(line)
        except WriteError as exc:
            self._rescue(line, exc)
        if call.key is not None and not (record.get("status") == "error"):
            path = self.path if self.mode == "shared" else self.writer.path  # type: ignore[union-attr]
            for index in self._indexes:
                if index.identity.function == call.function:
                    with index.lock:
                        index.note(call.key, path, span[0], span[1])
        return span

    def write(self, record: dict[str, Any], call: Call) -> Any:  # replaced per instance
        """Append ``record`` (with its ``$memo``) as one line."""
        return self._write_plain(record, call)

    def prepare(self) -> None:
        """Check, before the first call runs, that records can be appended (and locked)."""
        if isinstance(self.writer, AppendWriter):
            self.writer.check()
            return
        path = self.writer.path
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
        except OSError as exc:
            raise WriteError(exc.errno, f"cannot append records to {path}: "
                             f"{exc.strerror or exc}") from exc

    def _rescue(self, line: bytes, exc: WriteError) -> None:
        """A computed record the file refused (a full disk): keep it elsewhere, then raise."""
        saved = rescue.save(self.path, line)
        if saved is None:
            raise WriteError(exc.errno, f"{exc.strerror}; the record could not be saved "
                             f"anywhere else either: {line.decode(errors='replace')[:2000]}"
                             ) from exc
        raise WriteError(exc.errno, f"{exc.strerror}; the record was saved to {saved}: bring "
                         f"it back with  memo merge {self.path} {self.path} {saved}") from exc

    def resume(self, identity: Identity) -> FileIndex:
        """An index of what the file (and its shards) hold, for ``skip``."""
        if self.mode == "shared":
            path = self.path
            index = FileIndex(identity, lambda: [path])
        else:
            target = self.path
            index = FileIndex(identity, lambda: sources(target), many=True)
        index.claims = self.claims
        with self._index_lock:
            self._indexes.append(index)
        self.write = self._write_noted  # type: ignore[method-assign]
        return index

    def flush(self) -> None:
        """Nothing is buffered: each record is in the file when the call returns."""

    def close(self) -> None:
        if self.claims is not None:
            self.claims.close()
        self.writer.close()
        for index in self._indexes:
            index.close()


def memfile(
    path: str | os.PathLike[str] | None = None,
    *,
    skip: bool | str = False,
    retry_failed: bool = True,
    durable: bool = False,
    fallback: Callable[[Any], Any] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    lock: str = "auto",
    timeout: float | None = None,
    mode: Literal["shared", "shard"] = "shared",
    version: str | None = None,
    claim: bool = False,
    filepath: str | os.PathLike[str] | None = None,
) -> Callable[[F], F]:
    """Append one JSON line per call to ``path``; safe for many processes at once.

    ``mode="shared"`` (default): every process appends to ``path`` itself, each
    line written whole under an inter-process lock. ``lock`` picks the lock:
    ``"auto"`` (``posix`` with a flush before unlocking on NFS, Lustre, BeeGFS,
    GPFS and other cluster filesystems, ``flock`` elsewhere; the ``MEMO_LOCK``
    environment variable overrides the choice), ``"flock"``, ``"posix"`` or ``"soft"``
    (a lock file, for filesystems without working locks). ``timeout`` bounds the
    wait for the lock (:class:`memo.locking.LockTimeout`).

    ``mode="shard"``: every process appends, without locks, to its own file in
    ``<path>.shards/``; ``memo.load(path)`` reads them all, and
    ``memo.merge`` combines them into one file.

    ``durable=True`` fsyncs each record before the call returns (survives a
    machine crash); by default a record is handed to the OS before the call
    returns (survives a crash of the process).

    ``skip=True`` returns the stored outputs instead of running the function again
    when the file already holds a record of the same call: the same function
    (``module.qualname``), the same version of its code (a fingerprint of its
    source, or ``version=``) and the same arguments. ``skip="arguments"`` accepts
    records of any version of the code. Failed calls are retried unless
    ``retry_failed=False``.

    ``claim=True`` (with ``skip``): before computing a call, claim it in
    ``<path>.claims``, so that several runs of the same sweep at once (identical
    SLURM array tasks, two terminals) never compute a setting twice: a call another
    live process has claimed waits for its record (a :class:`memo.Runner` runs other
    settings first), and a claim whose process died is taken over (:mod:`memo.claims`).

    ``include``/``exclude`` choose the arguments kept in
    the record; ``fallback`` (e.g. ``repr``) turns values memo cannot encode into
    ones it can, instead of raising :class:`memo.SerializationError`.
    """
    if filepath is not None:  # the 0.2 name of the first argument
        if path is not None:
            raise TypeError("memfile() got both path and filepath; pass the path once")
        warnings.warn("memfile(filepath=...) is now memfile(path=...)", DeprecationWarning,
                      stacklevel=2)
        path = filepath
    if path is None:
        raise TypeError("memfile() needs the path of the file to write, "
                        "as in @memfile('results.jsonl')")
    if claim and not skip:
        raise ValueError("claim=True needs skip=True: a claimed call that another process "
                         "recorded is skipped through the file's index")
    sink = FileSink(path, durable=durable, fallback=fallback, lock=lock, timeout=timeout,
                    mode=mode, claim=claim)
    return recorder(sink, skip=skip, retry_failed=retry_failed, include=include, exclude=exclude,
                    version=version)

"""The inter-process lock that every memfile writer takes around each append.

Modes (``lock=`` of :func:`memo.memfile`, or the ``MEMO_LOCK`` environment variable
when ``lock="auto"``):

``flock``
    ``flock(LOCK_EX)`` on the data file's own descriptor. The cheapest correct lock
    on a local filesystem (a few microseconds); released by the kernel when the
    holder dies, so a killed writer never leaves a stale lock.
``posix``
    A whole-file POSIX record lock (``lockf``) on the data file's descriptor, and the
    written data flushed (``fdatasync``) before the lock is released. This is the lock
    NFS implements across clients (taking it revalidates the client's cache, so the
    append lands at the current end), and the one Lustre (mounted ``-o flock``),
    GPFS and CephFS make cluster-wide. Chosen automatically on those filesystems.
``soft``
    A lock file ``<path>.lock`` created exclusively (:class:`filelock.SoftFileLock`),
    and the data file reopened for each append and flushed before the lock file is
    removed. For filesystems whose lock calls fail or are node-local; slow (hundreds
    of microseconds per record). A lock file left by a writer that died on the same
    host is reclaimed; one left by a machine that crashed must be removed by hand
    (writers with a ``timeout`` raise :class:`LockTimeout` instead of waiting).
    ``auto`` falls back to it, with a warning, when the kernel refuses the lock call.
``none``
    No inter-process lock: only for a file that one process writes (shard mode).

To take the same lock from outside memo (to compact or rotate a file while a sweep
runs), use :func:`hold`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator

import filelock

from .filesystem import is_cluster_filesystem

__all__ = [
    "MODES", "LockTimeout", "UNSUPPORTED", "acquire_soft", "hold", "lock_function",
    "resolve_mode", "soft_lock",
]

MODES = ("auto", "flock", "posix", "soft", "none")
# errno values a lock call returns when the filesystem does not support the lock
UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})

LockOp = Callable[[int, int], object]


class LockTimeout(filelock.Timeout):
    """The lock on a memo file was not acquired within ``timeout`` seconds."""


def resolve_mode(path: str | os.PathLike[str], lock: str = "auto") -> str:
    """The concrete lock mode for a file at ``path``: ``lock``, or the automatic choice."""
    if lock not in MODES:
        raise ValueError(f"lock={lock!r} is not one of {', '.join(map(repr, MODES))}")
    if lock == "auto":
        env = os.environ.get("MEMO_LOCK", "").strip().lower()
        if env and env != "auto":
            if env not in MODES:
                raise ValueError(f"MEMO_LOCK={env!r} is not one of {', '.join(MODES)}")
            return env
        return "posix" if is_cluster_filesystem(path) else "flock"
    return lock


def lock_function(mode: str, path: str, timeout: float | None = None) -> LockOp | None:
    """``op(fd, LOCK_EX | LOCK_UN)`` taking or releasing the ``flock``/``posix`` lock on ``fd``.

    ``None`` for the modes that take no lock on the descriptor (``soft``, ``none``).
    With a ``timeout``, acquiring polls and raises :class:`LockTimeout` when it runs out.
    """
    if mode not in ("flock", "posix"):
        return None
    base: LockOp = fcntl.flock if mode == "flock" else fcntl.lockf
    if timeout is None:
        return base

    def op(fd: int, how: int) -> object:
        if how != fcntl.LOCK_EX:
            return base(fd, how)
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while True:
            try:
                return base(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise LockTimeout(path)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    return op


def soft_lock(path: str, timeout: float | None = None) -> filelock.SoftFileLock:
    """The lock file that ``soft`` mode creates beside ``path``."""
    return filelock.SoftFileLock(
        path + ".lock", timeout=-1 if timeout is None else timeout, thread_local=False,
        poll_interval=0.001,
    )


@contextlib.contextmanager
def acquire_soft(lock: filelock.SoftFileLock) -> Iterator[None]:
    """Hold a soft lock; its timeout raises :class:`LockTimeout`, like the other modes."""
    try:
        lock.acquire()
    except filelock.Timeout:
        raise LockTimeout(lock.lock_file) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def hold(path: str | os.PathLike[str], lock: str = "auto",
         timeout: float | None = None) -> Iterator[int]:
    """Hold the lock that memfile writers of ``path`` take, for the body of a ``with``.

    Yields a read-write descriptor of the file. While the body runs, no memfile
    writer using the same lock mode appends to the file.
    """
    name = os.path.abspath(os.fspath(path))
    mode = resolve_mode(name, lock)
    fd = os.open(name, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        op = lock_function(mode, name, timeout)
        if op is not None:
            op(fd, fcntl.LOCK_EX)
            try:
                yield fd
            finally:
                op(fd, fcntl.LOCK_UN)
        elif mode == "soft":
            with acquire_soft(soft_lock(name, timeout)):
                yield fd
        else:
            yield fd
    finally:
        os.close(fd)

"""Appending whole lines to one file that many processes and threads share.

Each line is written by a single ``write(2)`` on an ``O_APPEND`` descriptor while
the writer holds an exclusive inter-process lock (:mod:`memo.locking`; ``flock`` on
the data file's own descriptor by default, a POSIX lock plus a flush before the
unlock on cluster filesystems). Under the lock the writer checks that the file
ends with a newline: a writer killed mid-line leaves a fragment, which is ended
with a newline (readers report it as one corrupt line) so that the next record is
not glued onto it. A short write (a signal, a full disk, ``RLIMIT_FSIZE``) is
finished, or rolled back by truncating the file to its size before the write and
reported as :class:`WriteError`: a line is never half written.

Threads of one process share a descriptor and take a mutex first. A forked child
never uses its parent's descriptor: an ``flock`` belongs to the open file
description, which the child would share with its parent, so its lock would not
exclude the parent and its unlock would release the parent's lock. Inherited
descriptors are closed right after ``fork`` (``os.register_at_fork``) and the
child opens its own on first use.
"""

from __future__ import annotations

import fcntl
import functools
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from . import locking

__all__ = ["AppendWriter", "WriteError"]

_EX, _UN = fcntl.LOCK_EX, fcntl.LOCK_UN
_write, _lseek, _pread = os.write, os.lseek, os.pread
_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_LIVE: weakref.WeakSet[AppendWriter] = weakref.WeakSet()


class WriteError(OSError):
    """A record could not be appended; the file was left without a partial line."""


class AppendWriter:
    """Appends complete lines to ``path`` under an inter-process lock.

    ``lock`` is a mode of :mod:`memo.locking` (``"auto"`` picks ``posix`` on cluster
    filesystems and ``flock`` elsewhere); ``timeout`` bounds the wait for the lock
    (``None``: wait as long as it takes); ``durable=True`` fsyncs every line before
    the lock is released. ``encode``, if given, turns what :meth:`append` is handed into
    the line (saving the caller a call of its own per line).
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False,
                 lock: str = "auto", timeout: float | None = None,
                 encode: Callable[[Any], bytes] | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.durable = durable
        self.timeout = timeout
        self._encode = encode
        self._auto = lock == "auto"
        self._fd = -1
        self._end = -1  # where our last line ended: if the file still ends there, it ends in \n
        self._mutex = threading.Lock()
        self._soft: Any = None
        self._set_mode(locking.resolve_mode(self.path, lock))
        _LIVE.add(self)

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        self._lockop = locking.lock_function(mode, self.path, self.timeout)
        self._sync = os.fsync if self.durable else os.fdatasync if mode == "posix" else None

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its settings (for cloudpickle, loky, submitit): a copy opens its own file."""
        return (functools.partial(AppendWriter, durable=self.durable, timeout=self.timeout,
                                  lock="auto" if self._auto else self.mode,
                                  encode=self._encode), (self.path,))

    def __repr__(self) -> str:
        return f"AppendWriter({self.path!r}, lock={self.mode!r}, durable={self.durable})"

    def _open(self) -> int:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd = os.open(self.path, _FLAGS, 0o644)
        self._end = -1
        return self._fd

    def append(self, line: Any) -> None:
        """Append ``line`` (one record, ending with ``\\n``) atomically.

        With ``encode``, ``line`` is what ``encode`` turns into that line."""
        encode = self._encode
        if encode is not None:
            line = encode(line)
        mutex = self._mutex
        mutex.acquire()
        try:
            fd, lockop = self._fd, self._lockop
            if lockop is None:
                return self._append_other(line)
            if fd < 0:
                fd = self._open()
            try:
                lockop(fd, _EX)
            except OSError as exc:
                return self._lock_failed(exc, line)
            try:
                end = _lseek(fd, 0, 2)
                if end != self._end and end and _pread(fd, 1, end - 1) != b"\n":
                    line = b"\n" + line  # end a torn fragment left by a dead writer
                try:
                    n = _write(fd, line)
                except OSError as exc:
                    self._fail(fd, end, exc)
                if n != len(line):
                    n = self._finish(fd, line, n, end)
                if self._sync is not None:
                    self._sync(fd)
                self._end = end + n
            finally:
                lockop(fd, _UN)
        finally:
            mutex.release()

    def _append_other(self, line: bytes) -> None:
        """The ``soft`` and ``none`` modes."""
        if self.mode == "soft":
            return self._append_soft(line)
        if self._fd < 0:
            self._open()
        fd, end = self._fd, self._end  # one writer process: the end is where we left it
        unknown = end < 0
        if unknown:
            end = _lseek(fd, 0, 2)
        n = self._put(fd, line, end, check=unknown)
        if self._sync is not None:
            self._sync(fd)
        self._end = end + n

    def _put(self, fd: int, line: bytes, end: int, check: bool = True) -> int:
        """With the file to ourselves: end a torn fragment, then write ``line`` whole.

        The ``flock``/``posix`` path in :meth:`append` does the same inline (a call
        less per record on the hot path).
        """
        if check and end and _pread(fd, 1, end - 1) != b"\n":
            line = b"\n" + line
        try:
            n = _write(fd, line)
        except OSError as exc:
            self._fail(fd, end, exc)
        if n != len(line):
            n = self._finish(fd, line, n, end)
        return n

    def _lock_failed(self, exc: OSError, line: bytes) -> None:
        if exc.errno not in locking.UNSUPPORTED or isinstance(exc, locking.LockTimeout):
            raise exc
        self._unsupported(exc)
        return self._append_soft(line)

    def _append_soft(self, line: bytes) -> None:
        """``soft`` mode: under the lock file, reopen (NFS close-to-open), append, flush, close."""
        if self._soft is None:
            self._soft = locking.soft_lock(self.path, self.timeout)
        with locking.acquire_soft(self._soft):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, _FLAGS, 0o644)
            try:
                self._put(fd, line, _lseek(fd, 0, 2))
                (os.fsync if self.durable else os.fdatasync)(fd)
            finally:
                os.close(fd)

    def _unsupported(self, exc: OSError) -> None:
        if not self._auto:
            raise WriteError(exc.errno, f"the filesystem of {self.path} refuses {self.mode} "
                             f"locks ({exc.strerror}); use lock='soft' or mode='shard'") from exc
        warnings.warn(f"the filesystem of {self.path} refuses {self.mode} locks "
                      f"({exc.strerror}); falling back to the lock file {self.path}.lock "
                      "(slow); consider mode='shard'", RuntimeWarning, stacklevel=4)
        self._set_mode("soft")

    def _finish(self, fd: int, line: bytes, n: int, end: int) -> int:
        """Complete a short write, or roll it back and raise."""
        view = memoryview(line)
        try:
            while n < len(line):
                n += _write(fd, view[n:])
        except OSError as exc:
            self._fail(fd, end, exc)
        return n

    def _fail(self, fd: int, end: int, exc: OSError) -> None:
        self._end = -1
        try:
            if _lseek(fd, 0, 2) != end:
                os.ftruncate(fd, end)  # roll back the partial line
            done = "nothing was written"
        except OSError as exc2:
            done = f"a partial line may remain ({exc2.strerror} while rolling back)"
        raise WriteError(exc.errno, f"could not append a record to {self.path}: "
                         f"{exc.strerror}; {done}") from exc

    def _after_fork(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)  # the parent's descriptor: never lock or unlock through it
            except OSError:
                pass
        self._fd, self._end = -1, -1
        self._mutex = threading.Lock()  # another thread may have held it at fork time
        self._soft = None  # a FileLock made before fork refuses to work in the child

    def close(self) -> None:
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd, self._end = -1, -1


def _reset_after_fork() -> None:
    for writer in list(_LIVE):
        writer._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)

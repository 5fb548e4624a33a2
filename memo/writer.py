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
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from . import _watch, filesystem, locking
from ._util import user_stacklevel
from .exceptions import MemoError

__all__ = ["AppendWriter", "WriteError"]

_EX, _UN = fcntl.LOCK_EX, fcntl.LOCK_UN
_write, _lseek, _pread, _fstat = os.write, os.lseek, os.pread, os.fstat
_ioctl, _FIONREAD, _EMPTY = fcntl.ioctl, _watch.FIONREAD, _watch.EMPTY  # mutable buffer: fast
_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_LIVE: weakref.WeakSet[AppendWriter] = weakref.WeakSet()


class WriteError(MemoError, OSError):
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
        self._mutex = locking.process_mutex(self.path)
        self._soft: Any = None
        self._set_mode(locking.resolve_mode(self.path, lock))
        _LIVE.add(self)

    def _set_mode(self, mode: str) -> None:
        if getattr(self, "_watcher", None) is not None:  # a mode given up (no flock here)
            self._unwatch()
        self.mode = mode
        self._lockop = locking.lock_function(mode, self.path, self.timeout)
        self._sync = os.fsync if self.durable else os.fdatasync if mode == "posix" else None
        self._by_path = mode == "posix"  # each append flushes anyway: a path check is cheap
        # flock on a local filesystem: inotify says when the file was deleted or replaced
        self._watchable = mode == "flock" and not self.durable and \
            filesystem.mount_info(self.path).type in _watch.LOCAL_FILESYSTEMS
        self._watcher: _watch.Watcher | None = None
        self._wd = -1  # our file's watch descriptor
        self._seen = -1  # the watcher's generation when we last checked with fstat
        self._queued = bytearray(4)  # FIONREAD's answer (the writer's own: under its mutex)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its settings (for cloudpickle, loky, submitit): a copy opens its own file."""
        return (functools.partial(AppendWriter, durable=self.durable, timeout=self.timeout,
                                  lock="auto" if self._auto else self.mode,
                                  encode=self._encode), (self.path,))

    def __repr__(self) -> str:
        return f"AppendWriter({self.path!r}, lock={self.mode!r}, durable={self.durable})"

    def _open(self) -> int:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, _FLAGS, 0o644)
        if self.mode in ("flock", "posix", "soft"):
            try:
                self._agree(fd)
            except BaseException:
                os.close(fd)
                raise
        self._fd, self._end = fd, -1
        # after the watch is set, the first append checks with fstat (the path may have
        # been replaced between our open and the watch); later appends only after an event
        watched = _watch.watch(self.path) if self._watchable else None
        self._watcher, self._wd = watched if watched is not None else (None, -1)
        self._seen = -1
        return fd

    def _unwatch(self) -> None:
        """Before our descriptor is closed: let the watch of our file go."""
        if self._watcher is not None:
            self._watcher.release(self._wd)
        self._watcher, self._wd, self._seen = None, -1, -1

    def _agree(self, fd: int) -> None:
        """Use the lock mode recorded on the file by its first writer, or record ours."""
        recorded = locking.recorded_mode(fd)
        if recorded is None:
            locking.record_mode(fd, self.mode)
        elif recorded != self.mode:
            if not self._auto or os.environ.get("MEMO_LOCK", "").strip():
                raise WriteError(0, f"{self.path} is written with lock={recorded!r} (recorded "
                                    f"on the file by its first writer), not {self.mode!r}: "
                                    f"use lock={recorded!r} or lock='auto' so that every writer "
                                    "takes the same lock")
            self._set_mode(recorded)

    def append(self, line: Any) -> tuple[int, int]:
        """Append ``line`` (one record, ending with ``\\n``) atomically.

        With ``encode``, ``line`` is what ``encode`` turns into that line. Returns
        where the line landed: ``(start, stop)`` byte offsets in the file (``start``
        may be the newline written first to end a dead writer's fragment).
        """
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
                watcher = self._watcher
                if watcher is not None and not _ioctl(watcher.fd, _FIONREAD, self._queued, True) \
                        and self._queued == _EMPTY and self._seen == watcher.generation:
                    end = _lseek(fd, 0, 2)  # no event since our last check: still our file
                else:
                    seen = -1
                    if watcher is not None:  # an event, or another writer drained one
                        if watcher.pending():
                            watcher.drain()
                        seen = watcher.generation  # events from here on are seen next time
                    st = _fstat(fd)  # one call: the end of the file, and whether it is there
                    if not st.st_nlink or self._by_path and self._moved(st):
                        fd, st = self._reopen_locked(fd, lockop)  # deleted or replaced
                        seen = -1  # a new watch: check it once more next time
                    end = st.st_size
                    self._seen = seen
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
                self._end = stop = end + n
            finally:
                if self._fd >= 0:
                    lockop(self._fd, _UN)
            return end, stop  # the line (after a newline that ended a fragment, if any)
        finally:
            mutex.release()

    def _moved(self, st: os.stat_result) -> bool:
        """Whether the path names another file than ours (posix mode: on a cluster
        filesystem a replaced file may keep a link, renamed aside by the client)."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        return now.st_ino != st.st_ino or now.st_dev != st.st_dev

    def _reopen_locked(self, fd: int, lockop: Any) -> tuple[int, os.stat_result]:
        """The file we hold was deleted or replaced: open (or create) the path, lock it."""
        for _ in range(100):
            lockop(fd, _UN)
            self._unwatch()
            os.close(fd)
            self._fd = -1
            fd = self._open()
            lockop(fd, _EX)
            st = _fstat(fd)
            if st.st_nlink and not (self._by_path and self._moved(st)):
                return fd, st
        raise WriteError(0, f"{self.path} keeps being replaced; no record was written")

    def _append_other(self, line: bytes) -> tuple[int, int]:
        """The ``soft`` and ``none`` modes."""
        if self.mode == "soft":
            return self._append_soft(line)
        if self._fd < 0:
            self._open()
        fd, end = self._fd, self._end  # one writer process: the end is where we left it
        unknown = end < 0
        if unknown or not _fstat(fd).st_nlink:
            if not unknown:  # our shard was deleted or replaced: write to the path again
                os.close(fd)
                fd = self._open()
            end = _lseek(fd, 0, 2)
            unknown = True
        n = self._put(fd, line, end, check=unknown)
        if self._sync is not None:
            self._sync(fd)
        self._end = end + n
        return self._end - len(line), self._end

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

    def _lock_failed(self, exc: OSError, line: bytes) -> tuple[int, int]:
        if exc.errno not in locking.UNSUPPORTED or isinstance(exc, locking.LockTimeout):
            raise exc
        self._unsupported(exc)
        return self._append_soft(line)

    def _append_soft(self, line: bytes) -> tuple[int, int]:
        """``soft`` mode: under the lock file, reopen (NFS close-to-open), append, flush, close."""
        if self._soft is None:
            self._soft = locking.soft_lock(self.path, self.timeout)
        with locking.acquire_soft(self._soft):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, _FLAGS, 0o644)
            try:
                end = _lseek(fd, 0, 2)
                n = self._put(fd, line, end)
                (os.fsync if self.durable else os.fdatasync)(fd)
            finally:
                os.close(fd)
        return end + n - len(line), end + n

    def _unsupported(self, exc: OSError) -> None:
        if not self._auto:
            raise WriteError(exc.errno, f"the filesystem of {self.path} refuses {self.mode} "
                             f"locks ({exc.strerror}); use lock='soft' or mode='shard'") from exc
        warnings.warn(f"the filesystem of {self.path} refuses {self.mode} locks "
                      f"({exc.strerror}); falling back to the lock file {self.path}.lock "
                      "(slow); consider mode='shard'", RuntimeWarning, stacklevel=user_stacklevel())
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
        self._watcher, self._wd, self._seen = None, -1, -1  # the parent's queue is not ours
        self._mutex = locking.process_mutex(self.path)  # the child's own (reset at fork)
        self._soft = None  # a FileLock made before fork refuses to work in the child

    def check(self) -> None:
        """Open (creating) the file and take its lock once: raise :class:`WriteError` naming
        the path and the reason now, before a caller spends time on work it cannot record."""
        with self._mutex:
            try:
                if self.mode == "soft":
                    os.makedirs(os.path.dirname(self.path), exist_ok=True)
                    fd = os.open(self.path, _FLAGS, 0o644)
                    try:
                        self._agree(fd)
                    finally:
                        os.close(fd)
                    with locking.acquire_soft(locking.soft_lock(self.path, self.timeout)):
                        pass
                    return
                fd = self._fd if self._fd >= 0 else self._open()
                if self._lockop is not None:
                    try:
                        self._lockop(fd, _EX)
                    except OSError as exc:
                        if exc.errno in locking.UNSUPPORTED and \
                                not isinstance(exc, locking.LockTimeout):
                            self._unsupported(exc)  # falls back (auto) or raises
                            return
                        raise
                    self._lockop(fd, _UN)
            except (WriteError, locking.LockTimeout):
                raise
            except OSError as exc:
                raise WriteError(exc.errno, f"cannot append records to {self.path}: "
                                 f"{exc.strerror or exc}") from exc

    def close(self) -> None:
        with self._mutex:
            self._unwatch()
            if self._fd >= 0:
                os.close(self._fd)
            self._fd, self._end = -1, -1


def _reset_after_fork() -> None:
    for writer in list(_LIVE):
        writer._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)

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
    A lock file ``<path>.lock`` (:class:`SoftLock`) that names its holder and is
    made whole before it appears, and the data file reopened for each append and
    flushed before the lock file is removed. For filesystems whose lock calls fail
    or are node-local; slow (hundreds of microseconds per record). A lock file left
    behind is reclaimed in every state a killed writer can leave (its process gone,
    empty, or another host's not renewed for ``SOFT_LEASE`` seconds); writers with a
    ``timeout`` raise :class:`LockTimeout` instead of waiting longer. ``auto`` falls
    back to it, with a warning, when the kernel refuses the lock call. (filelock's
    ``SoftFileLock`` waits forever on an empty lock file, which a writer killed at the
    wrong moment leaves behind; hence a lock file of memo's own.)
``none``
    No inter-process lock: only for a file that one process writes (shard mode).

To take the same lock from outside memo (to compact or rotate a file while a sweep
runs), use :func:`hold`: by default it takes every mode's lock at once, so it
excludes writers whatever their mode. The first writer of a file records its mode on
the file (:func:`record_mode`), and later writers with ``lock="auto"`` adopt it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator

import filelock

from . import filesystem
from ._util import pid_alive, user_stacklevel
from .exceptions import MemoError

__all__ = [
    "MODES", "UNSUPPORTED", "LockTimeout", "SoftLock", "acquire_soft", "hold", "lock_function",
    "process_mutex", "record_mode", "recorded_mode", "resolve_mode", "soft_lock",
]

MODES = ("auto", "flock", "posix", "soft", "none")
# errno values a lock call returns when the filesystem does not support the lock
UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})

LockOp = Callable[[int, int], object]


class LockTimeout(MemoError, filelock.Timeout):
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
        return filesystem.auto_lock_mode(path)  # from the mount's type and options
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


# ---- the lock file (soft mode) ----

SOFT_LEASE = 30.0  # seconds after which a lock file of another host counts as abandoned
EMPTY_GRACE = 1.0  # an empty lock file older than this was left by a writer that died
_HOST = socket.gethostname()




class SoftLock:
    """A lock file ``<path>.lock`` that names its holder, and is reclaimed when it is stale.

    The file is made whole before it appears: written under a unique name, then
    hard-linked to the lock's name (``link`` is atomic and exclusive, on NFS too),
    so a lock file is never empty unless another tool made it. A lock file counts
    as stale, and is broken, when its holder is a process of this host that no
    longer runs, when it is empty and older than ``EMPTY_GRACE`` seconds (a writer
    killed between creating and filling it, or an older tool), or when it belongs
    to another host and was not renewed for ``lease`` seconds (holders renew it
    while they hold it longer). Breaking renames the file aside first, then checks
    it was the stale one, so two processes breaking the same lock do not both win.
    """

    def __init__(self, path: str, timeout: float | None = None,
                 lease: float = SOFT_LEASE) -> None:
        self.path = path
        self.lock_file = path + ".lock"
        self.timeout = timeout
        self.lease = lease
        self._token: str | None = None
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def is_locked(self) -> bool:
        return self._token is not None

    def acquire(self) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        pause = 0.0005
        while not self._try_create():
            self._break_if_stale()
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(self.lock_file)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _content(self) -> str:
        return f"{_HOST} {os.getpid()} {self._token} {time.time():.3f}\n"

    def _try_create(self) -> bool:
        self._token = uuid.uuid4().hex
        tmp = f"{self.lock_file}.{_HOST}.{os.getpid()}.{self._token}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, self._content().encode())
            try:
                os.link(tmp, self.lock_file)
                return True
            except FileExistsError:
                self._token = None
                return False
            except OSError as exc:
                if os.fstat(fd).st_nlink == 2:  # NFS: the link was made, its reply lost
                    return True
                if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
                    return self._create_without_links()
                raise
        finally:
            os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _create_without_links(self) -> bool:
        """For filesystems without hard links: exclusive create, then fill at once."""
        try:
            fd = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o644)
        except FileExistsError:
            self._token = None
            return False
        try:
            os.write(fd, self._content().encode())
        finally:
            os.close(fd)
        return True

    def _read(self, name: str) -> tuple[str, float] | None:
        try:
            with open(name, encoding="utf-8", errors="replace") as f:
                text = f.read(4096)
            return text, os.stat(name).st_mtime
        except FileNotFoundError:
            return None

    def stale(self, text: str, mtime: float) -> bool:
        """Whether a lock file with this content and age was left by a holder that is gone."""
        fields = text.split()
        age = time.time() - mtime
        if len(fields) < 3:
            return age > EMPTY_GRACE
        host, pid = fields[0], fields[1]
        if host == _HOST:
            return not pid.isdigit() or not pid_alive(int(pid))
        return age > self.lease

    def _break_if_stale(self) -> None:
        seen = self._read(self.lock_file)
        if seen is None or not self.stale(*seen):
            return
        aside = f"{self.lock_file}.stale.{_HOST}.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            os.rename(self.lock_file, aside)
        except FileNotFoundError:
            return
        moved = self._read(aside)
        if moved is not None and moved[0] != seen[0]:
            try:  # a new holder's lock was moved, not the stale one: put it back
                os.link(aside, self.lock_file)
            except OSError:
                pass
        else:
            warnings.warn(f"removed the stale lock file {self.lock_file} "
                          f"({seen[0].strip() or 'empty'})",
                          RuntimeWarning, stacklevel=user_stacklevel())
        try:
            os.unlink(aside)
        except FileNotFoundError:
            pass

    def renew(self) -> None:
        """Mark the lock as alive (for holds longer than a fraction of the lease)."""
        try:
            os.utime(self.lock_file)
        except FileNotFoundError:
            pass

    def hold_renewed(self) -> None:
        """Renew the lock in the background until :meth:`release` (long holds)."""
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(self.lease / 3):
                self.renew()

        self._renewer = threading.Thread(target=run, daemon=True, name="memo-lock-renew")
        self._renewer.start()

    def release(self) -> None:
        if self._renewer is not None:
            self._stop.set()
            self._renewer.join()
            self._renewer = None
        token, self._token = self._token, None
        seen = self._read(self.lock_file)
        if seen is not None and token is not None and token in seen[0]:
            try:
                os.unlink(self.lock_file)
            except FileNotFoundError:
                pass
        else:
            warnings.warn(f"the lock file {self.lock_file} was taken over while this process "
                          "held it (it was judged stale)",
                          RuntimeWarning, stacklevel=user_stacklevel())

    def __enter__(self) -> SoftLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def soft_lock(path: str, timeout: float | None = None) -> SoftLock:
    """The lock file that ``soft`` mode creates beside ``path``."""
    return SoftLock(path, timeout)


@contextlib.contextmanager
def acquire_soft(lock: SoftLock) -> Iterator[None]:
    """Hold a soft lock; its timeout raises :class:`LockTimeout`, like the other modes."""
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


# ---- one lock per file within a process ----

_MUTEXES: dict[str, threading.Lock] = {}
_MUTEXES_LOCK = threading.Lock()


def process_mutex(path: str) -> threading.Lock:
    """The mutex that every writer and holder of ``path`` in this process takes first.

    POSIX locks belong to the whole process (a second lock from another thread
    succeeds at once, and closing any descriptor of the file drops them all), so
    threads must exclude each other before they take the inter-process lock.
    """
    mutex = _MUTEXES.get(path)
    if mutex is None:
        with _MUTEXES_LOCK:
            mutex = _MUTEXES.setdefault(path, threading.Lock())
    return mutex


def _reset_after_fork() -> None:
    global _MUTEXES_LOCK
    _MUTEXES.clear()  # another thread may have held one at fork time; writers fetch anew
    _MUTEXES_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


# ---- the mode recorded on the file ----

_XATTR = "user.memo.lock"


def recorded_mode(fd: int) -> str | None:
    """The lock mode the file's first writer recorded on it (an extended attribute)."""
    try:
        value = os.getxattr(fd, _XATTR).decode()
    except (OSError, AttributeError, UnicodeDecodeError):
        return None
    return value if value in MODES and value not in ("auto", "none") else None


def record_mode(fd: int, mode: str) -> None:
    """Record ``mode`` on the file, where the filesystem keeps extended attributes."""
    try:
        os.setxattr(fd, _XATTR, mode.encode(), os.XATTR_CREATE)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def hold(path: str | os.PathLike[str], lock: str = "auto",
         timeout: float | None = None) -> Iterator[int]:
    """Hold the lock that memfile writers of ``path`` take, for the body of a ``with``.

    Yields a read-write descriptor of the file. With ``lock="auto"`` every lock a
    writer may take is held: ``flock`` and a POSIX lock on the file (each where the
    filesystem supports it) and the lock file of ``soft`` mode, so writers are
    excluded whatever mode they use, in other processes and in this one. With
    another ``lock``, only that mode's lock (and this process's mutex) is held.
    While the body runs, no memfile writer appends to the file.
    """
    name = os.path.abspath(os.fspath(path))
    modes = ("flock", "posix", "soft") if lock == "auto" and \
        not os.environ.get("MEMO_LOCK", "").strip() else (resolve_mode(name, lock),)
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    mutex = process_mutex(name)
    if not mutex.acquire(timeout=-1 if timeout is None else timeout):
        raise LockTimeout(name)
    held: list[Callable[[], object]] = []
    try:
        os.makedirs(os.path.dirname(name), exist_ok=True)
        if "soft" in modes:  # before the file is opened: on NFS, opening after the lock
            soft = SoftLock(name, left())  # is what shows the size other clients left
            soft.acquire()
            soft.hold_renewed()
            held.append(soft.release)
        fd = os.open(name, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            for mode in modes:
                if mode == "soft":
                    continue
                op = lock_function(mode, name, left())
                if op is None:
                    continue
                try:
                    op(fd, fcntl.LOCK_EX)
                except OSError as exc:
                    if exc.errno in UNSUPPORTED and len(modes) > 1:
                        continue  # this filesystem has no such lock: no writer takes it
                    raise
                held.append(functools.partial(op, fd, fcntl.LOCK_UN))
            yield fd
        finally:
            for release in reversed(held[1:] if "soft" in modes else held):
                release()
            os.close(fd)
    finally:
        try:
            if "soft" in modes and held:
                held[0]()  # the lock file last
        finally:
            mutex.release()

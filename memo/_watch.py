"""Noticing, for one ``ioctl`` per record, that an appended-to file was deleted or replaced.

A writer must not append into a file that its path no longer names (deleted, or
replaced by ``os.replace``): every record would vanish with the orphaned inode.
``fstat`` on the held descriptor tells (a link count of 0), but it is the most
expensive step of an append (several microseconds on Linux, most of it building the
``stat_result``). On Linux the kernel can tell instead: an ``inotify`` watch on the
file queues an ``IN_ATTRIB`` event the moment its link count changes (``rm``,
``os.replace`` over it, ``mv`` over it) and ``IN_MOVE_SELF`` when it is renamed, and
``FIONREAD`` on the inotify descriptor says whether any event is queued. The writer
asks that under its lock and runs its full ``fstat`` check only after an event.

Events are queued by the system call that unlinks or renames, so an action finished
before the writer takes its lock is always seen. That holds for every action made
through this machine's kernel: on a local filesystem, all of them. On network and
cluster filesystems an action of another client queues nothing here, so writers there
use ``fstat`` and a ``stat`` of the path (:mod:`memo.writer`); this module is used
only for the local filesystem types in :data:`LOCAL_FILESYSTEMS`.

One inotify instance serves every writer of a process (the kernel allows 128 per
user by default). It is not shared with a forked child (the queue would be): the
child closes the inherited descriptor and makes its own on first use. Where inotify
is missing (another OS, the limit reached), :func:`watch` returns ``None`` and the
writer falls back to ``fstat``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import sys
import termios
import threading

__all__ = ["LOCAL_FILESYSTEMS", "Watcher", "watch"]

LOCAL_FILESYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs", "f2fs", "bcachefs", "jfs",
    "reiserfs", "overlay",
})

_IN_ATTRIB, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x4, 0x400, 0x800
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
FIONREAD = termios.FIONREAD
EMPTY = b"\0\0\0\0"  # FIONREAD's answer when no event is queued (a C int of 0)


class Watcher:
    """The process's inotify instance. ``generation`` grows before queued events are
    read, so a writer that saw no event queued and an unchanged generation knows that
    none of the watched files changed since it last looked."""

    def __init__(self, fd: int, libc: ctypes.CDLL) -> None:
        self.fd = fd
        self.generation = 0
        self._libc = libc
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}  # watch descriptor -> writers using it

    def add(self, path: str) -> int:
        """Watch ``path`` (the file it names now): a watch descriptor, or -1 if the kernel
        refuses (the per-user limit of watches). Writers of one file share its watch."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path),
                                          _IN_ATTRIB | _IN_DELETE_SELF | _IN_MOVE_SELF)
        if wd >= 0:
            with self._lock:
                self._users[wd] = self._users.get(wd, 0) + 1
        return int(wd)

    def release(self, wd: int) -> None:
        """A writer no longer uses ``wd`` (it closed its file): the last one removes the
        watch, which would otherwise count against the user's limit while the file exists."""
        with self._lock:
            left = self._users.get(wd, 0) - 1
            if left > 0:
                self._users[wd] = left
                return
            self._users.pop(wd, None)
        self._libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if the file is gone

    def drain(self) -> None:
        """Some watched file changed: note it (before reading, see the class), empty the queue."""
        with self._lock:
            self.generation += 1
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def pending(self) -> bool:
        return fcntl.ioctl(self.fd, FIONREAD, EMPTY) != EMPTY


_watcher: Watcher | None = None
_failed = False
_lock = threading.Lock()


def _make() -> Watcher | None:
    global _failed
    if not sys.platform.startswith("linux"):
        _failed = True
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    except (OSError, AttributeError):
        fd = -1
    if fd < 0:
        _failed = True  # no inotify, or the per-user limit of instances is reached
        return None
    return Watcher(fd, libc)


def watch(path: str) -> tuple[Watcher, int] | None:
    """Watch the file ``path`` names now: the process's :class:`Watcher` and the watch
    descriptor (to :meth:`~Watcher.release`), or None where inotify cannot watch it."""
    global _watcher
    with _lock:
        if _watcher is None and not _failed:
            _watcher = _make()
        watcher = _watcher
    if watcher is None:
        return None
    wd = watcher.add(path)
    return (watcher, wd) if wd >= 0 else None


def _after_fork() -> None:
    global _watcher, _failed, _lock
    _lock = threading.Lock()  # another thread may have held it at fork
    if _watcher is not None:
        try:
            os.close(_watcher.fd)  # the parent's queue: reading it would steal its events
        except OSError:
            pass
    _watcher, _failed = None, False


os.register_at_fork(after_in_child=_after_fork)

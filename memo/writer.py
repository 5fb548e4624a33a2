"""Appending whole lines to one file that many processes and threads share.

Each line is written by a single ``write(2)`` on an ``O_APPEND`` descriptor while
the writer holds an exclusive ``flock`` on that same descriptor. Under the lock
the writer checks that the file ends with a newline (a writer killed mid-line
leaves a fragment; the next line must not be glued onto it) and a short write
is either finished or rolled back, so a line is never half written. Cached
descriptors are reopened in a forked child: an ``flock`` belongs to the open file
description, which a child inherits and shares with its parent.
"""

from __future__ import annotations

import fcntl
import os
import threading

__all__ = ["AppendWriter", "WriteError"]


class WriteError(OSError):
    """A record could not be appended; the file was left without a partial line."""


class AppendWriter:
    """Appends complete lines to ``path`` under an inter-process lock."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.durable = durable
        self._fd = -1
        self._pid = -1
        self._end = -1  # where our last line ended: if the file still ends there, it ends in \n
        self._mutex = threading.Lock()

    def _descriptor(self) -> int:
        if self._pid != os.getpid():  # first use, or a forked child: never reuse the parent's
            parent = os.path.dirname(self.path)
            os.makedirs(parent, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
            self._pid = os.getpid()
            self._end = -1
        return self._fd

    def append(self, line: bytes) -> None:
        """Append ``line`` (which must end with ``\\n``) atomically."""
        with self._mutex:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                if size and size != self._end and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # end a torn fragment left by a dead writer
                self._write_all(fd, line, size)
                if self.durable:
                    os.fsync(fd)
                self._end = size + len(line)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_all(self, fd: int, data: bytes, size: int) -> None:
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
        except OSError as exc:
            if written:
                os.ftruncate(fd, size)  # roll back the partial line
            self._end = -1
            raise WriteError(exc.errno, f"could not append a record to {self.path}: "
                             f"{exc.strerror}; nothing was written") from exc

    def close(self) -> None:
        with self._mutex:
            if self._pid == os.getpid() and self._fd >= 0:
                os.close(self._fd)
            self._fd, self._pid = -1, -1

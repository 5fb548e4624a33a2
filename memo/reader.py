"""Reading memo JSONL files: streaming, tolerant of torn and corrupt lines.

* :func:`iter_records` yields the records of a file (or of a shard folder, or of a
  target together with its shards), reporting bad lines with file and line number.
* :func:`scan` validates a file in large blocks without building the records (what
  ``memo check`` and ``memo merge`` use): every line must be one JSON object.
* :class:`Tail` follows a file that others keep appending to (for ``skip=True``).
"""

from __future__ import annotations

import codecs
import functools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from . import serialize
from ._util import user_stacklevel
from .call import META_KEY
from .shardfile import sources


@functools.cache
def _numpy() -> Any:
    """numpy if installed (optional: it finds the newlines of a block faster), imported
    when a file is first read rather than with memo."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - exercised without numpy
        return None
    return numpy


__all__ = ["BadLine", "CorruptLineWarning", "Tail", "iter_records", "scan"]

Errors = Literal["warn", "raise", "ignore"]

# bytes read and validated at a time by scan(): small enough that a block read is still
# in the CPU cache for the passes over it (count, decode, copy), large enough that the
# per-block Python work does not count
BLOCK = 1 << 20
_monotonic = time.monotonic


class BadLineCounts:
    """``corrupt`` and ``incomplete`` counts for a report that lists ``bad`` lines."""

    bad: list[BadLine]

    @property
    def corrupt(self) -> int:
        """Lines that are not whole records (torn last lines not counted)."""
        return sum(not b.torn for b in self.bad)

    @property
    def incomplete(self) -> int:
        """Last lines without their newline: a writer still writing, or one that died."""
        return sum(b.torn for b in self.bad)


class CorruptLineWarning(UserWarning):
    """A line of a memo file is not a JSON object (torn by a dead writer, or edited)."""


@dataclass(frozen=True)
class BadLine:
    """A line that is not a whole JSON object."""

    path: str
    lineno: int
    reason: str
    torn: bool = False  # the last line, without its newline: a writer is writing or died
    data: bytes = b""

    def __str__(self) -> str:
        what = "incomplete last line" if self.torn else "corrupt line"
        return f"{self.path}:{self.lineno}: {what}: {self.reason}"


def _decode(raw: bytes, path: str, lineno: int) -> dict[str, Any] | BadLine:
    try:
        obj = serialize.loads(raw)
    except (ValueError, RecursionError) as exc:
        return BadLine(path, lineno, str(exc).split(":")[0])
    if not isinstance(obj, dict):
        return BadLine(path, lineno, f"a JSON {type(obj).__name__}, not an object")
    return obj


def _iter_file(name: str, errors: Errors, meta: bool = False) -> Iterator[dict[str, Any]]:
    with open(name, "rb") as f:
        lineno = 0
        for raw in f:
            lineno += 1
            torn = not raw.endswith(b"\n")
            if not raw.strip():
                continue
            item = _decode(raw, name, lineno)
            if isinstance(item, BadLine):
                if torn:
                    item = BadLine(name, lineno, item.reason, torn=True)
                if errors == "raise":
                    raise ValueError(str(item))
                if errors == "warn":
                    warnings.warn(str(item), CorruptLineWarning, stacklevel=user_stacklevel())
                continue
            if not meta:
                item.pop(META_KEY, None)
            yield item


def iter_records(
    path: str | os.PathLike[str], *, errors: Errors = "warn", meta: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield each record of a memo JSONL file in order, reporting bad lines per ``errors``.

    ``path`` may also be a shard folder, or the target of a shard-mode memfile:
    the target's own records come first, then each shard's (see :mod:`memo.shardfile`).
    Each record's ``$memo`` (who made it, :mod:`memo.call`) is dropped unless ``meta``.
    """
    for name in sources(path):
        yield from _iter_file(name, errors, meta)


class _Object(msgspec.Struct, gc=False):
    """Any JSON object; its members are checked for syntax and skipped (no fields, so
    not tracked by the garbage collector: a block decodes to thousands of them)."""


_validate = msgspec.json.Decoder(_Object)


def _check_line(raw: bytes) -> str | None:
    """Why ``raw`` (one line, no newline) is not a JSON object, or None if it is one."""
    try:
        _validate.decode(raw)
        raw.decode("utf-8")
    except msgspec.ValidationError:
        return "not a JSON object"
    except msgspec.DecodeError as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply to read"
    except UnicodeDecodeError:
        return "not UTF-8"
    return None


def scan(path: str | os.PathLike[str], *, end: int | None = None, block: int = BLOCK,
         fd: int | None = None) -> Iterator[tuple[memoryview | bytes, int] | BadLine]:
    """Validate a file in blocks: yields ``(lines, count)`` of whole good lines, or a BadLine.

    ``lines`` are the file's bytes, verbatim (a memoryview or bytes), for ``count``
    consecutive valid lines (blank lines dropped). Only the first ``end`` bytes are
    read (default: the size when the scan starts, so lines appended meanwhile are
    left for next time); a last line without its newline is reported as a torn
    BadLine. With ``fd``, the file is read through that open descriptor (left open).
    """
    name = os.fspath(path)
    own = fd is None
    if fd is None:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stop = os.fstat(fd).st_size if end is None else end
        pos, lineno, size = 0, 0, block
        while pos < stop:
            want = min(size, stop - pos)
            data = os.pread(fd, want, pos)
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if not cut:  # no newline yet: a line longer than the block, or the torn end
                if len(data) < want or pos + len(data) >= stop:
                    reason = _check_line(data) or "no newline at the end"
                    yield BadLine(name, lineno + 1, reason, torn=True, data=data)
                    break
                size *= 2
                continue
            items, lines = _scan_block(data, cut, name, lineno)
            yield from items
            lineno += lines
            pos += cut  # the part after the last newline is read again with the next block
            size = block
    finally:
        if own:
            os.close(fd)


def _frame(data: bytes, cut: int) -> tuple[int, bool]:
    """The number of lines in ``data[:cut]``, and whether each is framed by ``{`` and ``}``.

    decode_lines takes newlines as whitespace, so its count alone would let a line
    with two objects and a blank (or object-splitting) line cancel out. When every
    line starts with ``{`` and ends with ``}``, each newline is a boundary between
    top-level objects (inside an object, a ``}`` may not be followed by ``{``), and
    then n objects in n lines means one object on each line. numpy, when installed,
    finds the newlines four times faster than the byte searches.
    """
    _np = _numpy()
    if _np is not None:
        a = _np.frombuffer(data, dtype=_np.uint8, count=cut)
        nl = _np.flatnonzero(a == 10)
        return len(nl), bool(a[0] == 123 and (a[nl - 1] == 125).all()
                             and (a[nl[:-1] + 1] == 123).all())
    n = data.count(b"\n", 0, cut)
    return n, (data[:1] == b"{" and data[cut - 2:cut] == b"}\n"
               and data.count(b"}\n{", 0, cut) == n - 1)


def _scan_block(data: bytes, cut: int, name: str,
                lineno: int) -> tuple[list[tuple[memoryview | bytes, int] | BadLine], int]:
    """The good runs and bad lines of ``data[:cut]`` (whole lines), and its number of lines."""
    n, framed = _frame(data, cut)
    view = memoryview(data)[:cut]
    try:  # the fast path: one bulk decode, objects skipped as they are checked
        if (framed and len(_validate.decode_lines(view)) == n
                and (data.isascii() or codecs.decode(view, "utf-8"))):
            return [(view, n)], n
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass
    items: list[tuple[memoryview | bytes, int] | BadLine] = []
    good: list[bytes] = []
    for i, raw in enumerate(data[:cut].split(b"\n")[:-1], start=lineno + 1):
        if not raw.strip():
            continue
        reason = _check_line(raw)
        if reason is None:
            good.append(raw)
            continue
        if good:
            items.append((b"\n".join(good) + b"\n", len(good)))
            good = []
        items.append(BadLine(name, i, reason, data=raw))
    if good:
        items.append((b"\n".join(good) + b"\n", len(good)))
    return items, n


class Tail:
    """Follows a file that others append to: each call returns the new complete lines.

    ``RECHECK``: seconds between checks that the path still names the same file.

    The file stays open between calls (no open/close per call, which would also
    drop this process's POSIX locks on the file); it is reopened when the path
    is replaced or cut.
    """

    RECHECK = 0.05

    def __init__(self, path: str | os.PathLike[str],
                 decode: Callable[[bytes], Any] | None = None) -> None:
        """``decode(line)`` turns each new whole line into what :meth:`read_new` returns
        for it (None leaves the line out); by default the record, restored, and lines that
        are not records are left out."""
        self.path = os.fspath(path)
        self._decode_line = decode if decode is not None else self._record
        self.offset = 0
        self._ident: tuple[int, int] | None = None
        self._fd = -1
        self._recheck = 0.0

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def read_new(self) -> tuple[bool, list[Any]]:
        """``(reset, records)``: ``reset`` when the file was replaced or cut since last time.

        Between looks at the path (at most ``RECHECK`` seconds apart) only the open
        file's size is checked, which is cheaper than resolving the path.
        """
        if self._fd >= 0:
            now = _monotonic()
            if now < self._recheck:
                size = os.fstat(self._fd).st_size
                if size == self.offset:
                    return False, []
                if size > self.offset:
                    return False, self._read(size)
            self._recheck = now + self.RECHECK
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            reset = self._ident is not None
            self._close()
            self.offset, self._ident = 0, None
            return reset, []
        size = st.st_size
        if size == self.offset and self._ident is not None and \
                st.st_ino == self._ident[1] and st.st_dev == self._ident[0]:
            return False, []
        reset = False
        ident = (st.st_dev, st.st_ino)
        if ident != self._ident or size < self.offset:
            reset = self._ident is not None
            self._close()
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                self.offset, self._ident = 0, None
                return reset, []
            st = os.fstat(self._fd)
            self._ident, self.offset, size = (st.st_dev, st.st_ino), 0, st.st_size
        if size <= self.offset:
            return reset, []
        return reset, self._read(size)

    def _record(self, raw: bytes) -> dict[str, Any] | None:
        item = _decode(raw, self.path, 0)
        return item if isinstance(item, dict) else None

    def _read(self, size: int) -> list[Any]:
        chunk = os.pread(self._fd, size - self.offset, self.offset)
        end = chunk.rfind(b"\n") + 1  # only whole lines; a line being written waits
        decode = self._decode_line
        out = []
        for raw in chunk[:end].splitlines():
            if raw.strip():
                item = decode(raw)
                if item is not None:
                    out.append(item)
        self.offset += end
        return out

    def __del__(self) -> None:
        try:
            self._close()
        except OSError:
            pass

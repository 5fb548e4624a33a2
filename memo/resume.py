"""Skip and resume: has this call already been recorded, and what did it return?

A call is identified by its function, the version of the function's code and its
canonical arguments (:mod:`memo.call`). A stored record stands in for a new call
only when all three match: the record's ``$memo`` names the same function
(``module.qualname``), the same version (unless ``skip="arguments"``, which accepts
records of any version), and its key equals the call's key. Records whose
``status`` is ``"error"`` (written through :func:`memo.ignore_error`) do not count
unless ``retry_failed=False``, so a resumed sweep retries them.

Records written before identities were stored (no ``$memo``) are matched by their
argument values alone, as before, with a one-time warning; for a function taking
``**kwargs`` they cannot be told apart from outputs and are not used.

The index is lean: for each matching call it keeps the call's 10-byte key and the
position of the newest matching line, never the record. A hit reads that one line
again; the first look at a file reads only each line's ``$memo`` (a typed msgspec
decode that skips the other fields), and later looks read only what was appended
since. A line this process just wrote is indexed from its known position without
reading it back. Each hit checks that the line it reads is the one indexed, so a
file replaced under the index (merged, compacted) is noticed and indexed afresh.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from . import serialize
from ._util import user_stacklevel
from .call import META_KEY, Call, call_key

__all__ = ["FileIndex", "Identity", "ListIndex"]

_SRC_SHIFT = 44  # a position packs (source number, byte offset): files up to 16 TiB
_OFFSET_MASK = (1 << _SRC_SHIFT) - 1
BLOCK = 1 << 20
RESCAN = 0.2  # seconds between looks for new source files (shard folders)
RECHECK = 0.05  # seconds between checks that a path still names the indexed file


class Identity:
    """What a recorder knows of its function, to tell which stored records are its calls.

    ``names``: the declared parameters a record keeps (to match records that have no
    ``$memo``); ``any_version``: accept records of other code versions
    (``skip="arguments"``); ``legacy``: whether records without ``$memo`` can be
    matched at all (not for functions taking ``**kwargs``).
    """

    __slots__ = ("function", "version", "names", "any_version", "retry_failed", "legacy",
                 "warned")

    def __init__(self, function: str, version: str, names: list[str], *,
                 any_version: bool = False, retry_failed: bool = True,
                 legacy: bool = True) -> None:
        self.function = function
        self.version = version
        self.names = names
        self.any_version = any_version
        self.retry_failed = retry_failed
        self.legacy = legacy
        self.warned = False

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_identity, (self.function, self.version, self.names, self.any_version,
                            self.retry_failed, self.legacy))

    def matches(self, meta: Any) -> bool:
        """Whether a record with this ``$memo`` is a call of this function and version."""
        return meta.f == self.function and (self.any_version or meta.v == self.version)

    def legacy_key(self, record: Mapping[str, Any]) -> str | None:
        """The key of a record written without ``$memo`` (its arguments alone), if usable."""
        if not self.legacy:
            return None
        try:
            values = {n: record[n] for n in self.names}
        except KeyError:
            return None
        return call_key(self.function, values)

    def warn_legacy(self, where: str) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(
                f"{where} holds records written without a call identity ($memo); "
                f"skip=True matches them to {self.function}() by their arguments alone "
                "(they may have been written by another function or version of the code)",
                LegacyRecordWarning, stacklevel=user_stacklevel())


def _identity(*args: Any) -> Identity:
    function, version, names, any_version, retry_failed, legacy = args
    return Identity(function, version, names, any_version=any_version,
                    retry_failed=retry_failed, legacy=legacy)


class LegacyRecordWarning(UserWarning):
    """Records without a stored identity were matched by their arguments alone."""


def _outputs(record: dict[str, Any], call_args: Any) -> dict[str, Any]:
    """A stored record minus its arguments and memo's own keys: what the call returned.
    (``record`` is a copy of the caller's own, decoded from the file: emptied in place.)"""
    pop = record.pop
    for name in call_args:
        pop(name, None)
    pop(META_KEY, None)
    return record


# ---- records in a Python list (memlist) ----

class ListIndex:
    """The index of a list of records (``memlist(skip=True)``).

    Records the sink wrote are known with their :class:`~memo.call.Call`; records
    put into the list by other code are matched by their arguments alone.
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._pos: dict[str, int] = {}  # key -> position in the list
        self._seen = 0

    def clear(self) -> None:
        self._pos.clear()
        self._seen = 0

    def refresh(self, data: list[dict[str, Any]], calls: Mapping[int, Call]) -> None:
        n = len(data)
        if n < self._seen:  # the list was cut: index it again
            self.clear()
        ident = self.identity
        for i in range(self._seen, n):
            record = data[i]
            call = calls.get(id(record))
            if ident.retry_failed and record.get("status") == "error":
                continue
            if call is not None:
                if call.function != ident.function or not (
                        ident.any_version or call.version == ident.version):
                    continue
                key = call.key or call_key(call.function,
                                           {a: record[a] for a in call.arguments if a in record})
            else:
                key = ident.legacy_key(record)  # type: ignore[assignment]
                if key is None:
                    continue
                ident.warn_legacy("the memlist list")
            self._pos[key] = i
        self._seen = n

    def lookup(self, key: str, data: list[dict[str, Any]]) -> dict[str, Any] | None:
        i = self._pos.get(key)
        if i is None or i >= len(data):
            return None
        return data[i]


# ---- records in files (memfile, shared or shard mode) ----

_lseek, _pread = os.lseek, os.pread
_loads = serialize.loads


class _Meta(msgspec.Struct, gc=False):
    f: Any = None
    v: Any = None
    a: Any = None
    k: Any = None


class _Head(msgspec.Struct, gc=False):
    """The parts of a line the index reads; every other field is skipped unparsed."""

    memo: _Meta | None = msgspec.field(default=None, name=META_KEY)
    status: Any = None


_head = msgspec.json.Decoder(_Head).decode


class _Source:
    __slots__ = ("path", "fd", "offset", "ident")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.offset = 0
        self.ident: tuple[int, int] | None = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.offset, self.ident = -1, 0, None


class FileIndex:
    """The index of one memo file, or of a target with its shard files.

    ``paths()`` lists the files to index (re-asked every ``RESCAN`` seconds when
    ``many`` is true, for shard folders that gain files).
    """

    def __init__(self, identity: Identity, paths: Callable[[], list[str]], *,
                 many: bool = False) -> None:
        self.identity = identity
        self._paths = paths
        self._many = many
        self._sources: list[_Source] = []
        self._by_path: dict[str, int] = {}
        self._pos: dict[bytes, int] = {}
        self._listed = -1.0
        self._checked = 0.0
        self.lock = threading.Lock()
        self.claims: Any = None  # memo.claims.Claims, when the sink takes claims
        _LIVE.add(self)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled empty: a copy in another process indexes the files afresh."""
        return (_file_index, (self.identity, self._paths, self._many))

    # -- lookups --

    def result(self, call: Call) -> dict[str, Any] | None:
        """The outputs stored for ``call`` (its ``key`` set), or None: the call must run."""
        digest = bytes.fromhex(call.key)  # type: ignore[arg-type]
        with self.lock:
            for _ in range(2):  # the second time on a fresh index
                packed = self._pos.get(digest)
                if packed is None:
                    if self._unchanged():
                        return None
                    self.refresh()
                    packed = self._pos.get(digest)
                    if packed is None:
                        return None
                record = self._fetch(packed, call.key)  # type: ignore[arg-type]
                if record is not None:
                    return _outputs(record, call.arguments)
                self.reset()  # the file changed under the index: start again
            return None

    def _unchanged(self) -> bool:
        """Whether the one file indexed has not grown since it was read, and need not be
        looked up again yet (``refresh`` would find nothing): the commonest miss, cheaply."""
        if self._many or len(self._sources) != 1:
            return False
        src = self._sources[0]
        return src.fd >= 0 and _lseek(src.fd, 0, 2) == src.offset and \
            time.monotonic() < self._checked

    def _fetch(self, packed: int, key: str) -> dict[str, Any] | None:
        """The record at ``packed``, if it is still the call ``key``."""
        src = self._sources[packed >> _SRC_SHIFT]
        offset = packed & _OFFSET_MASK
        if src.fd < 0:
            return None
        size = 1024
        while True:
            data = _pread(src.fd, size, offset)
            # a line that starts with a newline ended a dead writer's fragment before it
            first = 1 if data.startswith(b"\n") else 0
            end = data.find(b"\n", first)
            if end >= 0:
                data = data[first:end]
                break
            if len(data) < size:
                return None
            size *= 4
        try:
            record = _loads(data)
        except ValueError:
            return None
        if type(record) is not dict:
            return None
        meta = record.get(META_KEY)
        if type(meta) is dict:
            k = meta.get("k")
            if k is not None:
                return record if k == key else None
        found: str | None
        if type(meta) is dict:
            args = meta.get("a") or []
            found = call_key(self.identity.function, {a: record[a] for a in args if a in record})
        else:
            found = self.identity.legacy_key(record)
        return record if found == key else None

    # -- keeping up with the files --

    def note(self, key: str, path: str, start: int, stop: int) -> None:
        """This process wrote the call ``key`` to ``path`` at ``[start, stop)``."""
        src_no = self._by_path.get(path)
        if src_no is None:  # our own new shard: index it from here on
            src_no = self._by_path[path] = len(self._sources)
            self._sources.append(_Source(path))
        src = self._sources[src_no]
        self._pos[bytes.fromhex(key)] = (src_no << _SRC_SHIFT) | start
        if src.offset == start:
            src.offset = stop

    def reset(self) -> None:
        self._pos.clear()
        for src in self._sources:
            src.close()
        self._sources.clear()
        self._by_path.clear()
        self._listed = -1.0

    def refresh(self) -> None:
        """Index what was appended since the last look (by anyone)."""
        now = time.monotonic()
        if self._many and now - self._listed >= RESCAN or self._listed < 0:
            self._listed = now
            try:
                names = self._paths()
            except FileNotFoundError:
                names = []
            for name in names:
                if name not in self._by_path:
                    self._by_path[name] = len(self._sources)
                    self._sources.append(_Source(name))
        check = now >= self._checked
        if check:
            self._checked = now + RECHECK
        for no, src in enumerate(self._sources):
            if not self._follow(no, src, check):
                self.reset()
                return self.refresh()
        return None

    def _follow(self, no: int, src: _Source, check: bool) -> bool:
        """Read ``src``'s new lines; False when it was replaced or cut (index again)."""
        if src.fd >= 0 and check:
            try:
                st = os.stat(src.path)
            except FileNotFoundError:
                return src.offset == 0 and not self._pos
            if (st.st_dev, st.st_ino) != src.ident:
                return False
        if src.fd < 0:
            try:
                src.fd = os.open(src.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return True
            st = os.fstat(src.fd)
            src.ident, src.offset = (st.st_dev, st.st_ino), 0
        size = os.lseek(src.fd, 0, os.SEEK_END)
        if size < src.offset:
            return False
        while src.offset < size:
            data = os.pread(src.fd, min(BLOCK, size - src.offset), src.offset)
            cut = data.rfind(b"\n") + 1
            if not cut:
                if len(data) >= BLOCK:  # one line longer than a block: read it whole
                    data = os.pread(src.fd, size - src.offset, src.offset)
                    cut = data.rfind(b"\n") + 1
                if not cut:
                    break  # a line still being written
            self._index(data, cut, src.offset, no, src.path)
            src.offset += cut
        return True

    def _index(self, data: bytes, cut: int, base: int, no: int, path: str) -> None:
        ident = self.identity
        function, version, any_version = ident.function, ident.version, ident.any_version
        retry = ident.retry_failed
        pos_map = self._pos
        fromhex = bytes.fromhex
        src_bits = no << _SRC_SHIFT
        head = _head
        start = 0
        while start < cut:
            end = data.index(b"\n", start)
            line = data[start:end]
            here = start
            start = end + 1
            try:
                h = head(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                continue  # not a record (corrupt or blank): readers report it
            meta = h.memo
            if retry and h.status == "error":
                continue
            if meta is not None:
                if meta.f != function or (not any_version and meta.v != version):
                    continue
                k = meta.k
                if type(k) is not str or len(k) != 2 * 10:
                    k = self._key_of(line, meta)
                    if k is None:
                        continue
            else:
                k = self._legacy_key(line, path)
                if k is None:
                    continue
            pos_map[fromhex(k)] = src_bits | (base + here)

    def _key_of(self, line: bytes, meta: _Meta) -> str | None:
        """The key of a record whose ``$memo`` has no ``k`` (written with skip=False)."""
        if not isinstance(meta.a, list):
            return None
        try:
            record = serialize.loads(line)
        except (ValueError, RecursionError):
            return None
        return call_key(self.identity.function,
                        {a: record[a] for a in meta.a if isinstance(a, str) and a in record})

    def _legacy_key(self, line: bytes, path: str) -> str | None:
        if not self.identity.legacy:
            return None
        try:
            record = serialize.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(record, dict):
            return None
        key = self.identity.legacy_key(record)
        if key is not None:
            self.identity.warn_legacy(path)
        return key

    def __len__(self) -> int:
        return len(self._pos)

    def close(self) -> None:
        with self.lock:
            self.reset()

    def __del__(self) -> None:
        try:
            for src in self._sources:
                src.close()
        except (OSError, AttributeError):
            pass


def _file_index(identity: Identity, paths: Callable[[], list[str]], many: bool) -> FileIndex:
    return FileIndex(identity, paths, many=many)


_LIVE: weakref.WeakSet[FileIndex] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for index in list(_LIVE):
        index.lock = threading.Lock()  # a thread of the parent may have held it at fork time


os.register_at_fork(after_in_child=_reset_after_fork)


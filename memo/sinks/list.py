"""``memlist``: records appended to a Python list."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..call import Call
from ..pipeline import recorder
from ..resume import Identity, ListIndex

__all__ = ["ListSink", "memlist"]

F = TypeVar("F", bound=Callable[..., Any])


class ListSink:
    """Appends each record (the dict itself, values unserialized) to ``data``.

    It runs in the parent under a Runner: records made in workers are sent home.
    The :class:`~memo.call.Call` of each record it appended is kept beside the list
    (by the record's identity), so ``skip=True`` knows which function made it.
    """

    where = "parent"

    def __init__(self, data: list[dict[str, Any]]) -> None:
        if not hasattr(data, "append") or callable(data):
            raise TypeError(f"memlist(data=...) needs a list, got {type(data).__name__}; "
                            "write @memlist(data=results), not a bare @memlist")
        self.data = data
        # the Call of each record memo appended to this list, shared by every sink of the
        # same list (so one function's skip never takes another's record as its own)
        key = id(data)
        self._calls = _CALLS.setdefault(key, _Calls())
        _USERS[key] = _USERS.get(key, 0) + 1
        weakref.finalize(self, _release, key)
        self._indexes: list[_Resume] = []

    def write(self, record: dict[str, Any], call: Call) -> None:
        known, data = self._calls, self.data
        n = known.length
        if n and (len(data) < n or data[n - 1] is not known.last):
            known.forget_gone(data)
        known[id(record)] = call
        data.append(record)
        known.length = len(data)
        known.last = record

    def write_many(self, records: list[dict[str, Any]], calls: list[Call]) -> None:
        """The records of a Runner's batch, at once."""
        if not records:
            return
        known, data = self._calls, self.data
        n = known.length
        if n and (len(data) < n or data[n - 1] is not known.last):
            known.forget_gone(data)
        known.update(zip(map(id, records), calls))
        data.extend(records)
        known.length = len(data)
        known.last = records[-1]

    def resume(self, identity: Identity) -> _Resume:
        index = _Resume(self, identity)
        self._indexes.append(index)
        return index

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Calls(dict[int, Call]):
    """The :class:`Call` of each record memo appended to one list, by the record's id,
    and where memo's last record went (``length``, ``last``).

    When that record is no longer where memo left it, the user cut or refilled the list:
    the calls of records the list no longer holds are forgotten then, so a list cleared
    between runs does not pile up entries (which slow every look-up), nor keep ids that
    a record put in by other code could take.
    """

    __slots__ = ("last", "length")

    def __init__(self) -> None:
        super().__init__()
        self.length = 0
        self.last: dict[str, Any] | None = None

    def forget_gone(self, data: list[dict[str, Any]]) -> None:
        kept = {key: call for key in map(id, data) if (call := self.get(key)) is not None}
        self.clear()  # (a cleared list costs nothing to go through)
        self.update(kept)
        self.length, self.last = 0, None


_CALLS: dict[int, _Calls] = {}
_USERS: dict[int, int] = {}


def _release(key: int) -> None:
    _USERS[key] -= 1
    if not _USERS[key]:
        del _USERS[key]
        _CALLS.pop(key, None)


class _Resume:
    """``skip=True`` over a list: look up a call among the records the list holds now."""

    claims = None  # one process's list: nobody else computes its calls

    def __init__(self, sink: ListSink, identity: Identity) -> None:
        self.sink = sink
        self.index = ListIndex(identity)
        self.lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_Resume, (self.sink, self.index.identity))

    def result(self, call: Call) -> dict[str, Any] | None:
        sink = self.sink
        with self.lock:
            self.index.refresh(sink.data, sink._calls)
            record = self.index.lookup(call.key, sink.data)  # type: ignore[arg-type]
        if record is None:
            return None
        return {k: v for k, v in record.items() if k not in call.arguments}


def memlist(
    data: list[dict[str, Any]],
    *,
    skip: bool | str = False,
    retry_failed: bool = True,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    version: str | None = None,
) -> Callable[[F], F]:
    """Append one record per call to ``data``.

    With ``skip=True`` a call already recorded in ``data`` by the same function and
    version of its code does not run; it returns the stored outputs instead
    (``skip="arguments"``: any version; ``version=``: your own version string).
    """
    return recorder(ListSink(data), skip=skip, retry_failed=retry_failed,
                    include=include, exclude=exclude, version=version)

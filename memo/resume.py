"""Skip and resume: has a call with these arguments already been recorded?

A call's identity is the canonical key of its bound arguments (after
``include``/``exclude``). The key is the same in every process and run and for a
value before and after a trip through a JSONL file:

* values are taken through the serialization layer, so ``np.int64(3)`` and ``3``,
  ``np.float32(0.1)`` and ``0.1``, a tuple and a list are the same argument;
* a float with an integral value equals the int (``1 == 1.0``, as Python's own
  ``==`` and dict lookups have it); ``True`` is *not* ``1`` (JSON keeps them apart);
* ``nan`` equals ``nan`` (it is a value someone asked for).

Records whose ``status`` is ``"error"`` (written through :func:`memo.ignore_error`)
do not count as done unless ``retry_failed=False``, so a resumed sweep retries them.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import orjson

from . import serialize

__all__ = ["SkipIndex", "canonical_key"]


def _canon(v: Any) -> Any:
    t = type(v)
    if v is None or t is str or t is int or t is bool:
        return v
    if t is float:
        if v.is_integer():
            return int(v)
        return v if math.isfinite(v) else serialize._float_tag(v)
    if t is list:
        return [_canon(x) for x in v]
    if t is dict:
        return {k: _canon(x) for k, x in v.items()}
    return _canon(msgspec.json.decode(serialize.dumps(v)))


_PLAIN = frozenset({str, int, bool, type(None)})  # already canonical
_ABSENT = {"$absent": True}  # an argument the call did not pass (only with **kwargs)
_dumps, _SORT = orjson.dumps, orjson.OPT_SORT_KEYS


def canonical_key(values: Iterable[Any]) -> bytes:
    """The identity of a sequence of argument values, as bytes."""
    canon = [v if type(v) in _PLAIN or (  # finite, non-integral floats are canonical
        type(v) is float and v - v == 0 and not v.is_integer()) else _canon(v) for v in values]
    try:
        return _dumps(canon, option=_SORT)
    except TypeError:  # integers beyond 64 bits
        return msgspec.json.encode(canon, order="sorted")


class SkipIndex:
    """Maps argument keys to the newest successful record a sink holds for them.

    ``names`` are the record keys that identify a call: the declared parameters
    kept in the record, plus, for a function with ``**kwargs``, the extra names
    listed in ``include=`` (a stored record cannot tell other extra keyword
    arguments from outputs). A name may be missing from a record or a call only
    when ``optional`` says so.
    """

    def __init__(self, names: list[str], *, optional: Iterable[str] = (),
                 retry_failed: bool = True) -> None:
        self.names = names
        self.optional = frozenset(optional)
        self.retry_failed = retry_failed
        self.lock = threading.Lock()
        self._by_key: dict[bytes, Mapping[str, Any]] = {}
        self._results: dict[bytes, dict[str, Any]] = {}  # each record minus its arguments
        self._name_set = frozenset(names)
        _LIVE.add(self)

    def __reduce__(self) -> tuple[Any, tuple[list[str]]]:
        """Pickled empty: a copy in another process indexes its sink afresh."""
        return (functools.partial(SkipIndex, optional=self.optional,
                                  retry_failed=self.retry_failed), (self.names,))

    def __len__(self) -> int:
        return len(self._by_key)

    def clear(self) -> None:
        self._by_key.clear()
        self._results.clear()

    def _key(self, mapping: Mapping[str, Any]) -> bytes:
        if self.optional:
            return canonical_key(
                mapping.get(n, _ABSENT) if n in self.optional else mapping[n] for n in self.names
            )
        return canonical_key([mapping[n] for n in self.names])

    def add(self, record: Mapping[str, Any]) -> None:
        """Index one record found in the sink (records of other functions are ignored)."""
        if self.retry_failed and record.get("status") == "error":
            return
        try:
            key = self._key(record)
        except KeyError:
            return
        self._by_key[key] = record
        names = self._name_set
        self._results[key] = {k: v for k, v in record.items() if k not in names}

    def lookup(self, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The stored record for the call whose bound arguments are ``params``, if any."""
        return self._by_key.get(self._key(params))

    def result(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """What the recorded call returned (its record minus the arguments), if any."""
        cached = self._results.get(self._key(params))
        return None if cached is None else dict(cached)


_LIVE: weakref.WeakSet[SkipIndex] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for index in list(_LIVE):
        index.lock = threading.Lock()  # a thread of the parent may have held it at fork time


os.register_at_fork(after_in_child=_reset_after_fork)

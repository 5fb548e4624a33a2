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

import math
import threading
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
    return _canon(orjson.loads(serialize.dumps(v)))


_sorted_encoder = msgspec.json.Encoder(order="sorted")
_ABSENT = {"$absent": True}  # an argument the call did not pass (only with **kwargs)


def canonical_key(values: Iterable[Any]) -> bytes:
    """The identity of a sequence of argument values, as bytes."""
    canon = [_canon(v) for v in values]
    try:
        return orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers above 64 bits
        return _sorted_encoder.encode(canon)


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

    def __len__(self) -> int:
        return len(self._by_key)

    def clear(self) -> None:
        self._by_key.clear()

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

    def lookup(self, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The stored record for the call whose bound arguments are ``params``, if any."""
        return self._by_key.get(self._key(params))

"""What a record is: a call's bound arguments merged with the mapping it returned.

:func:`as_mapping` and :func:`merge` are used by every decorator that adds to a
result (the sinks, :func:`memo.capture_time`, :func:`memo.ignore_error`), so the
rules are the same everywhere:

* the function must return a mapping; a dataclass, msgspec Struct or NamedTuple
  is converted to a dict; anything else is a :class:`TypeError` naming the function
  and the type;
* an output key equal to an argument name (or to a key another decorator adds)
  is a :class:`KeyCollisionError`: neither silently wins. Leave the argument out of
  the record with ``exclude=[name]`` to keep the output's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from .exceptions import MemoError

__all__ = ["KeyCollisionError", "as_mapping", "merge"]


class KeyCollisionError(MemoError, ValueError):
    """An output key has the same name as an argument (or another added key)."""


def as_mapping(result: Any, func_name: str) -> Mapping[str, Any]:
    """The mapping a decorated function returned, or a clear TypeError."""
    if isinstance(result, Mapping):
        return result
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if isinstance(result, msgspec.Struct):
        return {f: getattr(result, f) for f in result.__struct_fields__}
    if isinstance(result, tuple) and hasattr(result, "_asdict"):
        return result._asdict()
    raise TypeError(
        f"{func_name}() returned {type(result).__qualname__!s}, but memo needs a mapping "
        "(a dict, dataclass, msgspec Struct or NamedTuple) to make a record; "
        f"for example return {{'result': value}}"
    )


def merge(first: Mapping[str, Any], second: Mapping[str, Any], func_name: str,
          what: str = "argument") -> dict[str, Any]:
    """``{**first, **second}``, refusing keys that are in both."""
    if first.keys() & second.keys():
        clash = sorted(first.keys() & second.keys())
        raise KeyCollisionError(
            f"{func_name}() returned key(s) {clash} that are also {what} names; "
            "rename the output, or leave the argument out of the record with "
            f"exclude={clash!r}"
        )
    out = dict(first)
    out.update(second)
    return out

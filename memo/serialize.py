"""The one serialization layer behind every sink that writes JSON.

A record becomes one line of strict JSON (RFC 8259: no ``NaN`` or ``Infinity``
literals) that jq, pandas and polars can read, and :func:`loads` gives back what
:func:`dumps` was handed as closely as JSON allows.

The fast path is orjson (numpy support built in, shortest float32 repr); values
orjson does not cover go through :func:`_convert`, and records that orjson
cannot encode faithfully (non-finite floats, integers above 64 bits, unknown
types) take a slower exact path that walks the record and encodes with msgspec.

Encoding rules (also in the README):

=====================================  ===========================================
Python value                           JSON
=====================================  ===========================================
``None``, ``bool``, ``str``, ``int``   as is (integers of any size)
``float``, numpy floats                shortest repr: ``np.float32(0.1)`` -> ``0.1``
``nan``, ``inf``, ``-inf``             ``{"$float": "nan" | "inf" | "-inf"}``
``complex``, numpy complex             ``{"$complex": [real, imag]}``
``bytes``, ``bytearray``, memoryview   ``{"$bytes": "<base64>"}``
numpy ints, bools                      numbers, ``true``/``false``
numpy arrays (any shape, strided,      nested lists
object dtype)
``datetime``, ``date``, ``time``,      ISO 8601 strings
``numpy.datetime64``
``timedelta``                          seconds as a float
``UUID``, ``Path``, ``Decimal``        strings (``Decimal`` keeps every digit)
``Enum``                               its value
``set``, ``frozenset``                 lists (sorted when the items allow it)
``tuple``, ``NamedTuple``              lists
dataclasses, msgspec Structs           objects
dict keys that are not strings         strings (``1`` -> ``"1"``)
=====================================  ===========================================

The three ``$`` tags are restored by :func:`loads` (and so by ``memo.load``):
an object whose only key is ``$float``, ``$complex`` or ``$bytes`` is read as
the tagged value. Anything else raises :class:`SerializationError` naming the
key path and the type, unless a ``fallback`` callable (``repr``, ``str``) is given.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import math
import pathlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import orjson

__all__ = ["SerializationError", "dumps", "dumps_line", "loads", "restore"]

Fallback = Callable[[Any], Any] | None

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_LINE_OPTS = _OPTS | orjson.OPT_APPEND_NEWLINE
_TAGS = ("$float", "$complex", "$bytes")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

try:  # numpy is optional: every numpy branch is behind this flag
    import numpy as _np
except ImportError:  # pragma: no cover - exercised in environments without numpy
    _np = None


class SerializationError(TypeError):
    """A value in a record has no JSON encoding (and no ``fallback`` was given)."""

    def __init__(self, path: str, value: Any, func: str | None = None) -> None:
        self.path = path
        self.type_name = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix(
            "builtins."
        )
        self.func = func
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" in the record of {self.func}()" if self.func else ""
        return (
            f"cannot serialize a value of type {self.type_name!r} at key {self.path}{where}; "
            "convert it to a JSON-friendly type, leave it out with exclude=[...], "
            "or pass fallback=repr"
        )

    def with_function(self, func: str) -> SerializationError:
        self.func = func
        self.args = (self._message(),)
        return self


def _float_tag(x: float) -> dict[str, str]:
    return {"$float": "nan" if x != x else ("inf" if x > 0 else "-inf")}


def _convert(obj: Any) -> Any:
    """One step towards JSON for a value orjson has no rule for; TypeError if none."""
    if _np is not None:
        if isinstance(obj, _np.ndarray):
            if obj.dtype.kind in "biuf" and obj.dtype.itemsize <= 8 or obj.dtype.kind == "M":
                return _np.ascontiguousarray(obj)  # strided views: orjson takes the copy
            return obj.tolist() if obj.dtype.kind != "f" else [_convert(x) for x in obj]
        if isinstance(obj, _np.generic):
            if isinstance(obj, _np.complexfloating):
                return {"$complex": [_np_float(obj.real), _np_float(obj.imag)]}
            if isinstance(obj, _np.floating):
                return _np_float(obj)
            if isinstance(obj, _np.timedelta64):
                return obj.astype("timedelta64[ns]").astype(_np.int64).item() / 1e9
            return obj.item()
    if isinstance(obj, complex):
        return {"$complex": [obj.real, obj.imag]}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, msgspec.Struct):
        return {f: getattr(obj, f) for f in obj.__struct_fields__}
    if isinstance(obj, tuple):  # NamedTuple and other tuple subclasses
        return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(type(obj).__name__)


def _np_float(x: Any) -> float:
    """A numpy float as the Python float of its shortest repr (float32 0.1 -> 0.1)."""
    if x.dtype.itemsize >= 8:
        return float(x)
    return float(str(x))


def _default(obj: Any) -> Any:
    return _convert(obj)


def _key(k: Any, path: str, fallback: Fallback) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, bool) or k is None:
        return orjson.dumps(k).decode()
    if isinstance(k, (int, float)) and not isinstance(k, enum.Enum):
        return str(_normalize(k, path, fallback)) if not isinstance(k, int) else str(int(k))
    norm = _normalize(k, path, fallback)
    if isinstance(norm, (str, int, float)):
        return str(norm)
    raise SerializationError(path + " (a dict key)", k)


def _normalize(obj: Any, path: str, fallback: Fallback) -> Any:
    """Turn ``obj`` into plain builtins with the ``$`` tags, exactly; the slow path."""
    t = type(obj)
    if obj is None or t is str or t is bool or t is int:
        return obj
    if t is float:
        return obj if math.isfinite(obj) else _float_tag(obj)
    if isinstance(obj, dict):
        return {
            _key(k, f"{path}[{k!r}]", fallback): _normalize(v, f"{path}[{k!r}]", fallback)
            for k, v in obj.items()
        }
    if t is list or t is tuple:
        return [_normalize(v, f"{path}[{i}]", fallback) for i, v in enumerate(obj)]
    if isinstance(obj, enum.Enum):
        return _normalize(obj.value, path, fallback)
    if isinstance(obj, str):  # subclasses of the builtins (IntEnum was handled above)
        return str.__str__(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _normalize(float(obj), path, fallback)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time, uuid.UUID)):
        return orjson.loads(orjson.dumps(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _normalize(getattr(obj, f.name), f"{path}.{f.name}", fallback)
            for f in dataclasses.fields(obj)
        }
    if _np is not None and isinstance(obj, _np.ndarray):
        if obj.dtype.kind == "M":
            return orjson.loads(orjson.dumps(_np.ascontiguousarray(obj), option=_OPTS))
        return [_normalize(v, f"{path}[{i}]", fallback) for i, v in enumerate(obj)]
    if _np is not None and isinstance(obj, _np.datetime64):
        return orjson.loads(orjson.dumps(obj, option=_OPTS))
    try:
        converted = _convert(obj)
    except TypeError:
        if fallback is None:
            raise SerializationError(path or "(the record)", obj) from None
        converted = fallback(obj)
    if isinstance(converted, dict) and len(converted) == 1 and next(iter(converted)) in _TAGS:
        return converted if next(iter(converted)) != "$complex" else {
            "$complex": [_normalize(v, path, fallback) for v in converted["$complex"]]
        }
    return _normalize(converted, path, fallback)


def dumps_line(obj: Any, fallback: Fallback = None) -> bytes:
    """``obj`` as one line of strict JSON, ending in ``\\n``: the unit every file sink appends."""
    try:
        out = orjson.dumps(obj, default=_default, option=_LINE_OPTS)
    except TypeError:
        return msgspec.json.encode(_normalize(obj, "", fallback)) + b"\n"
    if b"null" in out:  # orjson writes nan/inf as null: take the exact path to find out
        return msgspec.json.encode(_normalize(obj, "", fallback)) + b"\n"
    return out


def dumps(obj: Any, fallback: Fallback = None) -> bytes:
    """``obj`` as strict JSON bytes, without the trailing newline."""
    return dumps_line(obj, fallback)[:-1]


def restore(obj: Any) -> Any:
    """Undo the ``$`` tags in an already decoded JSON value."""
    if isinstance(obj, dict):
        if len(obj) == 1:
            (k, v), = obj.items()
            if k == "$float" and v in _NONFINITE:
                return _NONFINITE[v]
            if k == "$complex" and isinstance(v, list) and len(v) == 2:
                re_, im = (restore(x) for x in v)
                if isinstance(re_, (int, float)) and isinstance(im, (int, float)):
                    return complex(re_, im)
            if k == "$bytes" and isinstance(v, str):
                try:
                    return base64.b64decode(v, validate=True)
                except ValueError:
                    pass
        return {k: restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore(v) for v in obj]
    return obj


def loads(data: bytes | str) -> Any:
    """Decode one JSON document written by :func:`dumps` (tags restored)."""
    obj = orjson.loads(data)
    if (b'"$' in data) if isinstance(data, (bytes, bytearray)) else ('"$' in data):
        return restore(obj)
    return obj

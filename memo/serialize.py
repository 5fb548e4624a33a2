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
``nan``, ``inf``, ``-inf``             ``null``, listed in the record's ``$nonfinite``
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

Non-finite floats are written as ``null`` where they stand, so every column
keeps its type for pandas, polars and jq, and the record gains one key,
``"$nonfinite"``, mapping RFC 6901 JSON Pointers to ``"nan"``, ``"inf"`` or
``"-inf"``: ``{"loss": null, "$nonfinite": {"/loss": "inf"}}``. :func:`loads`
(and so ``memo.load``) puts the exact values back and drops the key. Outside a
record (a bare value) they are written as ``{"$float": "inf"}``. The ``$complex``
and ``$bytes`` tags are restored too: an object whose only key is one of them.
A record may not use the key ``$nonfinite`` itself. A value no rule covers raises
:class:`SerializationError` naming the key path and the type, unless a
``fallback`` callable (``repr``, ``str``) is given.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import json
import math
import pathlib
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import orjson

from .exceptions import MemoError

__all__ = ["NONFINITE_KEY", "SerializationError", "dumps", "dumps_line", "loads", "restore"]

Fallback = Callable[[Any], Any] | None

_OPTS = orjson.OPT_SERIALIZE_NUMPY
_TAGS = ("$float", "$complex", "$bytes", "$dict")
MAX_DEPTH = 200  # nesting memo writes (orjson's own limit is 255); deeper is an error
NONFINITE_KEY = "$nonfinite"
_decode = msgspec.json.decode
_orjson_dumps = orjson.dumps
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _numpy() -> Any:
    """numpy if the program imported it, else None: numpy is optional, and a value can be
    a numpy one only once numpy is imported (so memo never imports it itself)."""
    return sys.modules.get("numpy")


class SerializationError(MemoError, TypeError):
    """A value in a record has no JSON encoding (and no ``fallback`` was given), or cannot
    be written without changing it (colliding keys, a lone surrogate, too deep nesting)."""

    def __init__(self, path: str, value: Any, func: str | None = None, *,
                 reason: str | None = None) -> None:
        self.path = path
        self.type_name = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix(
            "builtins."
        )
        self.func = func
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" in the record of {self.func}()" if self.func else ""
        if self.reason is not None:
            return (f"cannot serialize the value of type {self.type_name!r} at key "
                    f"{self.path}{where}: {self.reason}; nothing was written")
        return (
            f"cannot serialize a value of type {self.type_name!r} at key {self.path}{where}; "
            "convert it to a JSON-friendly type, leave it out with exclude=[...], "
            "or pass fallback=repr"
        )

    def with_function(self, func: str) -> SerializationError:
        self.func = func
        self.args = (self._message(),)
        return self


class _Tag(dict):  # type: ignore[type-arg]
    """A ``{"$...": ...}`` object that memo made (not a user's dict that looks like one)."""

    __slots__ = ()


def _float_tag(x: float) -> dict[str, str]:
    return _Tag({"$float": "nan" if x != x else ("inf" if x > 0 else "-inf")})


def _convert(obj: Any) -> Any:
    """One step towards JSON for a value orjson has no rule for; TypeError if none."""
    _np = _numpy()
    if _np is not None:
        if isinstance(obj, _np.ndarray):
            if obj.ndim == 0:
                return obj[()]
            if obj.dtype.kind in "biuf" and obj.dtype.itemsize <= 8 or obj.dtype.kind == "M":
                return _np.ascontiguousarray(obj)  # strided views: orjson takes the copy
            return obj.tolist() if obj.dtype.kind != "f" else [_convert(x) for x in obj]
        if isinstance(obj, _np.generic):
            if isinstance(obj, _np.complexfloating):
                return _Tag({"$complex": [_np_float(obj.real), _np_float(obj.imag)]})
            if isinstance(obj, _np.floating):
                return _np_float(obj)
            if isinstance(obj, _np.timedelta64):
                return obj.astype("timedelta64[ns]").astype(_np.int64).item() / 1e9
            return obj.item()
    if isinstance(obj, complex):
        return _Tag({"$complex": [obj.real, obj.imag]})
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _Tag({"$bytes": base64.b64encode(bytes(obj)).decode("ascii")})
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


class _Walk:
    """The exact slow path: plain builtins out, non-finite floats collected or tagged."""

    __slots__ = ("fallback", "nonfinite")

    def __init__(self, fallback: Fallback, nonfinite: dict[str, str] | None) -> None:
        self.fallback = fallback
        self.nonfinite = nonfinite  # JSON Pointer -> "nan"|"inf"|"-inf"; None: use $float tags

    def key(self, k: Any, path: tuple[Any, ...]) -> str:
        if isinstance(k, str):
            return _text(str.__str__(k), path, "a dict key")
        if isinstance(k, bool) or k is None:
            return orjson.dumps(k).decode()
        norm = self.value(k, path + (k,))
        if isinstance(norm, (str, int, float)) and not isinstance(norm, bool):
            return str(norm)
        raise SerializationError(_where(path) + " (a dict key)", k)

    def value(self, obj: Any, path: tuple[Any, ...]) -> Any:
        t = type(obj)
        if obj is None or t is bool or t is int:
            return obj
        if t is str:
            return _text(obj, path)
        if len(path) > MAX_DEPTH:
            raise SerializationError(_where(path), obj,
                                     reason=f"nested more than {MAX_DEPTH} levels deep")
        if t is float:
            if math.isfinite(obj):
                return obj
            if self.nonfinite is None:
                return _float_tag(obj)
            self.nonfinite[_pointer(path)] = _float_tag(obj)["$float"]
            return None
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                name = self.key(k, path)
                if name in out:
                    raise SerializationError(
                        _where(path), k, reason=f"the keys {_first_key(obj, name)!r} and "
                        f"{k!r} would both be written as {name!r}")
                out[name] = self.value(v, path + (name,))
            if len(out) == 1 and t is not _Tag and next(iter(out)) in _TAGS:
                return {"$dict": out}  # a user's dict that looks like memo's tags: escaped
            return out
        if t is list or t is tuple:
            return [self.value(v, path + (i,)) for i, v in enumerate(obj)]
        if isinstance(obj, enum.Enum):
            return self.value(obj.value, path)
        if isinstance(obj, str):  # subclasses of the builtins
            return _text(str.__str__(obj), path)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return self.value(float(obj), path)
        if isinstance(obj, (_dt.datetime, _dt.date, _dt.time, uuid.UUID)):
            return orjson.loads(orjson.dumps(obj))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: self.value(getattr(obj, f.name), path + (f.name,))
                    for f in dataclasses.fields(obj)}
        _np = _numpy()
        if _np is not None and isinstance(obj, (_np.ndarray, _np.datetime64)):
            if obj.dtype.kind == "M":
                return orjson.loads(orjson.dumps(obj, option=_OPTS))
            if obj.ndim == 0:
                return self.value(obj[()], path)
            return [self.value(v, path + (i,)) for i, v in enumerate(obj)]
        try:
            converted = _convert(obj)
        except TypeError:
            if self.fallback is None:
                raise SerializationError(_where(path), obj) from None
            converted = self.fallback(obj)
        return self.value(converted, path)


def _text(s: str, path: tuple[Any, ...], what: str = "") -> str:
    """``s``, if it can be written as UTF-8 (a lone surrogate cannot)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = _where(path) + (f" ({what})" if what else "")
        raise SerializationError(where, s, reason=f"a str with a lone surrogate "
                                 f"{s[exc.start]!r} at position {exc.start}, which UTF-8 "
                                 "cannot encode") from None
    return s


def _first_key(obj: dict[Any, Any], name: str) -> Any:
    for k in obj:
        if (k if isinstance(k, str) else str(k)) == name:
            return k
    return name


def _where(path: tuple[Any, ...]) -> str:
    """A key path as Python subscripts, for error messages: ``['a'][1]``."""
    if len(path) > 8:
        return (_where(path[:3]) + "..." + _where(path[-2:]) +
                f" ({len(path)} levels deep)")
    return "".join(f"[{k!r}]" for k in path) or "(the top level)"


def _pointer(path: tuple[Any, ...]) -> str:
    """A key path as an RFC 6901 JSON Pointer: ``/a/1``."""
    return "".join("/" + str(k).replace("~", "~0").replace("/", "~1") for k in path)


def _exact(obj: Any, fallback: Fallback) -> bytes:
    """The slow path: exact encoding, non-finite floats listed under ``$nonfinite``."""
    if not isinstance(obj, dict):
        return msgspec.json.encode(_Walk(fallback, None).value(obj, ()))
    if NONFINITE_KEY in obj:
        raise SerializationError(f"[{NONFINITE_KEY!r}] (a key memo reserves)", obj[NONFINITE_KEY])
    walk = _Walk(fallback, {})
    out = walk.value(obj, ())
    if walk.nonfinite:
        out[NONFINITE_KEY] = walk.nonfinite
    return msgspec.json.encode(out)


def dumps(obj: Any, fallback: Fallback = None) -> bytes:
    """``obj`` as strict JSON bytes, without the trailing newline."""
    try:
        out = _orjson_dumps(obj, default=_convert, option=_OPTS)
    except TypeError:  # big ints, non-string keys, unknown types: the exact path knows
        return _exact(obj, fallback)
    # orjson writes nan/inf as null: only then is the exact path needed. A search of the
    # output is a C loop; a Python walk over the values would cost more than the encoding.
    # rpartition is the cheapest call that searches (one argument, no parsing): find()
    # parses an argument tuple and `in` first tries the needle as an integer.
    if out.rpartition(b"null")[1] or out.rpartition(b'{"$')[1] or (
            type(obj) is dict and NONFINITE_KEY in obj):
        return _exact(obj, fallback)
    return out


def dumps_line(obj: Any, fallback: Fallback = None) -> bytes:
    """``obj`` as one line of strict JSON, ending in ``\n``: the unit every file sink appends."""
    return dumps(obj, fallback) + b"\n"


def dumps_record(record: dict[str, Any], tail: bytes, fallback: Fallback = None) -> bytes:
    """``record`` as one line, with ``tail`` (``,"key":value}\n``) put before its closing
    brace: what a file sink appends, a record and its ``$memo`` identity serialized once
    (:meth:`memo.call.Call.tail`)."""
    out = dumps(record, fallback)
    return out[:-1] + tail if len(out) > 2 else b"{" + tail[1:]


def _untag(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1:
            (k, v), = obj.items()
            if k == "$dict" and isinstance(v, dict):  # a user's dict that looked like a tag
                return {k2: _untag(v2) for k2, v2 in v.items()}
            if k == "$float" and v in _NONFINITE:
                return _NONFINITE[v]
            if k == "$complex" and isinstance(v, list) and len(v) == 2:
                re_, im = (_untag(x) for x in v)
                if isinstance(re_, (int, float)) and isinstance(im, (int, float)):
                    return complex(re_, im)
            if k == "$bytes" and isinstance(v, str):
                try:
                    return base64.b64decode(v, validate=True)
                except ValueError:
                    pass
        return {k: _untag(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untag(v) for v in obj]
    return obj


def _put(obj: Any, pointer: str, value: float) -> None:
    """Set the ``null`` at ``pointer`` (RFC 6901) back to ``value``; ignore bad pointers."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    if not parts:
        return
    try:
        for part in parts[:-1]:
            obj = obj[int(part)] if isinstance(obj, list) else obj[part]
        last: Any = int(parts[-1]) if isinstance(obj, list) else parts[-1]
        if obj[last] is None:
            obj[last] = value
    except (KeyError, IndexError, ValueError, TypeError):
        pass


def restore(obj: Any, *, tags: bool = True) -> Any:
    """Undo the ``$`` encodings in an already decoded JSON value.

    ``tags=False`` puts back only the non-finite floats and leaves ``$complex`` and
    ``$bytes`` as the JSON objects they are (for consumers that take plain JSON).
    """
    if isinstance(obj, dict) and isinstance(obj.get(NONFINITE_KEY), dict):
        obj = dict(obj)
        for pointer, name in obj.pop(NONFINITE_KEY).items():
            if name in _NONFINITE and isinstance(pointer, str):
                _put(obj, pointer, _NONFINITE[name])
    return _untag(obj) if tags else obj


def loads(data: bytes | str, *, tags: bool = True) -> Any:
    """Decode one JSON document written by :func:`dumps` (``$`` encodings restored).

    msgspec decodes, not orjson: orjson reads integers beyond 64 bits as floats.
    """
    try:
        obj = _decode(data)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    except msgspec.ValidationError:  # a number beyond the float range (1e999): as json does
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            raise ValueError("not valid JSON") from None
    if type(data) is not bytes:
        data = data.encode() if isinstance(data, str) else bytes(data)
    # only memo's tags (objects that start with a "$" key) and $nonfinite need restoring;
    # a record's own "$memo" is neither, and most records have nothing else
    if data.rpartition(b'{"$')[1] or data.rpartition(b'"$nonfinite"')[1]:
        try:
            return restore(obj, tags=tags)
        except RecursionError:
            raise ValueError("nested too deeply to read") from None
    return obj

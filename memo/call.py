"""What identifies a recorded call: the function, the version of its code, its arguments.

Every record memo writes to a file carries one reserved key, ``"$memo"``::

    {"x": 3, "y": 9, "$memo": {"f": "experiments.square", "v": "5f0c2a91", "a": ["x"]}}

``f``
    The function: ``module.qualname`` of the innermost decorated function (the one
    ``functools.wraps`` chains lead to), so ``square`` and ``cube`` logging into one
    file never stand in for each other.
``v``
    The version of its code: by default a fingerprint of the function's source (its
    tokens from ``def`` on, without decorators, comments or blank lines, so it is the
    same in every process, machine and Python run that has the same source), or the
    string the user passed as ``version=``. Only the function's own body counts, not
    the functions it calls.
``a``
    Which keys of the record are the call's arguments (the rest are outputs), so a
    function taking ``**kwargs`` can be resumed exactly, and tools can tell
    parameters from metrics.
``k``
    Written only with ``skip=True``: the call's key (:func:`call_key`), so an index
    of a large file is built without decoding every record.

``memo.load``, ``to_pandas`` and ``to_polars`` drop ``$memo`` like ``$nonfinite``; it
stays in the raw file for jq and ``pandas.read_json``.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import math
import textwrap
import tokenize
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
import orjson

from . import serialize
from ._util import qualified_name

__all__ = ["META_KEY", "Call", "call_key", "canonical", "fingerprint"]

META_KEY = "$memo"
KEY_BYTES = 10  # 80-bit keys: a collision among a million calls has odds of about 1e-12


class Call:
    """One call as a sink sees it: who made the record and which of its keys are arguments.

    ``function`` is ``module.qualname``; ``version`` the code fingerprint or the user's
    ``version=``; ``arguments`` the record keys that are arguments; ``key`` the call's
    identity (hex) when the recorder computed it (``skip=True``), else ``None``.
    """

    __slots__ = ("function", "version", "arguments", "key", "_tail", "_stem")

    def __init__(self, function: str, version: str, arguments: tuple[str, ...],
                 key: str | None = None) -> None:
        self.function = function
        self.version = version
        self.arguments = arguments
        self.key = key
        self._tail: bytes | None = None
        self._stem: bytes | None = None  # the tail up to the key, made by keyed()

    @property
    def meta(self) -> dict[str, Any]:
        """The value of the record's ``$memo`` key (built when asked: a skipped call
        never needs it)."""
        meta: dict[str, Any] = {"f": self.function, "v": self.version,
                                "a": list(self.arguments)}
        if self.key is not None:
            meta["k"] = self.key
        return meta

    def tail(self) -> bytes:
        """``,"$memo":{...}}`` and the newline, put before a record's closing brace
        (:func:`memo.serialize.dumps_record`): the identity is serialized once per Call,
        which costs less than serializing it with every record."""
        if self._stem is not None and self.key is not None:
            self._tail = self._stem + self.key.encode() + b'"}}\n'
        else:
            self._tail = b',"$memo":' + orjson.dumps(self.meta) + b"}\n"
        return self._tail

    def keyed(self) -> Callable[[str], Call]:
        """A maker of this call's identity for one set of arguments (``key`` given),
        with its :meth:`tail` built from a part serialized here once: the hot path
        of ``skip=True``, which makes a Call for every call."""
        stem = self.tail()[:-3] + b',"k":"'  # ...,"a":[...] then the key, closing braces
        function, version, arguments = self.function, self.version, self.arguments

        def make(key: str) -> Call:
            call = Call(function, version, arguments, key)
            call._stem = stem  # the tail is made when the record is written (not for a hit)
            return call
        return make

    def outputs(self, record: Mapping[str, Any]) -> list[str]:
        """The keys of ``record`` that the function returned (or a decorator added)."""
        args = set(self.arguments)
        return [k for k in record if k not in args and k != META_KEY]

    def with_key(self, key: str, arguments: tuple[str, ...] | None = None) -> Call:
        """This call's identity for one set of arguments."""
        return Call(self.function, self.version,
                    self.arguments if arguments is None else arguments, key)

    def __repr__(self) -> str:
        return (f"Call({self.function!r}, version={self.version!r}, "
                f"arguments={self.arguments!r}, key={self.key!r})")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Call, (self.function, self.version, self.arguments, self.key))


def _unwrap(func: Callable[..., Any]) -> Callable[..., Any]:
    try:
        return inspect.unwrap(func)
    except ValueError:  # a cycle of __wrapped__
        return func


def function_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of the function that ``func`` wraps (or of ``func``)."""
    return qualified_name(_unwrap(func))


def _source_tokens(source: str) -> list[str]:
    """The tokens of a function's source from its ``def`` on: no decorators, comments,
    blank lines or layout other than indentation structure."""
    tokens = tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline)
    out: list[str] = []
    started = False
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER)
    for tok in tokens:
        if tok.type in skip:
            continue
        if not started:
            if tok.type != tokenize.NAME or tok.string not in ("def", "async", "lambda"):
                continue
            started = True
        if tok.type == tokenize.INDENT:
            out.append("<INDENT>")
        elif tok.type == tokenize.DEDENT:
            out.append("<DEDENT>")
        elif tok.type == tokenize.NEWLINE:
            out.append("<NL>")
        else:
            out.append(tok.string)
    return out


def _code_parts(code: Any, out: list[bytes]) -> None:
    """A fallback when the source cannot be read: bytecode, constants and names."""
    out.append(code.co_code)
    out.append(repr(code.co_names).encode())
    for const in code.co_consts:
        if inspect.iscode(const):
            _code_parts(const, out)
        else:
            out.append(repr(const).encode())


def fingerprint(func: Callable[..., Any]) -> str:
    """A short hex fingerprint of the code of the function ``func`` wraps.

    From the source when it can be read (the same in every process and Python
    version for the same source; comments, blank lines and decorators do not count),
    otherwise from the bytecode (the same for the same Python version).
    """
    inner = _unwrap(func)
    digest = hashlib.blake2b(digest_size=4)
    try:
        source = inspect.getsource(inner)
        tokens = _source_tokens(source)
        if not tokens:
            raise OSError("no tokens")
        digest.update("\x1f".join(tokens).encode())
    except (OSError, TypeError, tokenize.TokenError, IndentationError, SyntaxError):
        code = getattr(inner, "__code__", None)
        if code is None:
            digest.update(repr(inner).encode())
        else:
            parts: list[bytes] = []
            _code_parts(code, parts)
            digest.update(b"\x1f".join(parts))
    return digest.hexdigest()


# ---- the canonical form of arguments, and the key of a call ----

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
_dumps, _SORT = orjson.dumps, orjson.OPT_SORT_KEYS


def canonical(values: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a call's arguments: the same in every process and run, and
    for a value before and after a trip through a JSONL file.

    ``np.int64(3)`` and ``3``, ``np.float32(0.1)`` and ``0.1``, a tuple and a list are
    the same argument; a float with an integral value equals the int (``1 == 1.0``, as
    in Python); ``True`` is not ``1`` (JSON keeps them apart); ``nan`` equals ``nan``.
    """
    if type(values) is dict:
        for v in values.values():  # the common case: every value is canonical already
            if type(v) not in _PLAIN and not (  # finite, non-integral floats are canonical
                    type(v) is float and v - v == 0 and not v.is_integer()):
                break
        else:
            return _sorted_json(values)
    return _sorted_json({k: v if type(v) in _PLAIN or (
        type(v) is float and v - v == 0 and not v.is_integer()) else _canon(v)
        for k, v in values.items()})


def _sorted_json(canon: dict[str, Any]) -> bytes:
    try:
        return _dumps(canon, option=_SORT)
    except TypeError:  # integers beyond 64 bits, non-string keys
        return msgspec.json.encode(canon, order="sorted")


def call_key(function: str | bytes, values: Mapping[str, Any]) -> str:
    """The identity of a call of ``function`` with the argument ``values`` (name -> value),
    as a short hex string: equal exactly when the function and the canonical
    arguments are equal. (``function`` may be given as ``key_prefix(function)``.)"""
    prefix = function if type(function) is bytes else key_prefix(function)  # type: ignore[arg-type]
    return _blake2b(prefix + canonical(values), digest_size=KEY_BYTES).hexdigest()


def key_hasher(function: str) -> Any:
    """A BLAKE2b state already fed ``function``'s :func:`key_prefix`: ``keyer.copy()``,
    updated with :func:`canonical` arguments, gives :func:`call_key` at half the cost
    (the hot path of ``skip=True``)."""
    return _blake2b(key_prefix(function), digest_size=KEY_BYTES)


def key_prefix(function: str) -> bytes:
    """What :func:`call_key` hashes before the arguments: the function's name."""
    return function.encode() + b"\x00"


_blake2b = hashlib.blake2b


def arguments_of(record: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The argument part of a stored record."""
    return {n: record[n] for n in names if n in record}

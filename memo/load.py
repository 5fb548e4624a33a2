"""Reading results back: ``load`` for records, ``to_pandas`` and ``to_polars`` for tables.

Fast paths (``scripts/bench_read.py`` measures them against msgspec and polars):

* :func:`load` reads a file in large blocks and decodes each block with one call of
  msgspec's ``decode_lines``. A block is taken whole only when its framing shows one
  JSON object per line (every line starts with ``{`` and ends with ``}``, and the
  decoder returns as many objects as there are lines); any other block is decoded line
  by line, so a corrupt line is still reported with its file and line number. The
  reserved keys are then handled with dict operations: ``$memo`` dropped from each
  record, ``$nonfinite`` put back only in the records whose line holds it, and the
  full tag walk (``$complex``, ``$bytes``) only on blocks whose bytes contain a tag.
  The garbage collector is paused while the records are built: a million new dicts
  would otherwise set off collections that walk all of them again and again.
* :func:`to_polars` hands a file to ``polars.read_ndjson`` directly, which rejects
  any line that is not exactly one JSON object. polars infers the columns from the
  first rows; the members of the file (``":`` less ``":null``, counted in a thread
  meanwhile) must all be in the frame, or it is read again inferring from every row.
  Only when polars refuses the file is it validated with :func:`memo.reader.scan`,
  and the valid lines are given to polars while the bad ones are reported. Non-finite
  floats are put back with column expressions from the ``$nonfinite`` struct column,
  and the reserved columns are dropped. A file with ``$complex`` or ``$bytes`` tags
  (seen in the schema) takes the exact way through :func:`load`.
"""

from __future__ import annotations

import concurrent.futures
import gc
import io
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from . import serialize
from .call import META_KEY
from .reader import BadLine, CorruptLineWarning, Errors, _decode, _frame, scan
from .shardfile import sources

__all__ = ["META_KEY", "load", "to_pandas", "to_polars"]

Source = str | os.PathLike[str] | Iterable[dict[str, Any]]

NONFINITE_KEY = serialize.NONFINITE_KEY
_RESERVED = (META_KEY, NONFINITE_KEY)
_TAG = re.compile(rb'"\$(?:complex|bytes|float|dict)"')  # one pass finds any of the tags
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# 4 MB blocks: few enough Python steps per file, small enough that a bad block's
# line-by-line pass stays short
BLOCK = 1 << 22
_decoder = msgspec.json.Decoder()


def load(path: str | os.PathLike[str], *, errors: Errors = "warn") -> list[dict[str, Any]]:
    """Every record of a memo JSONL file, as a list of dicts.

    Values the serialization layer tags (``nan``/``inf``, complex, bytes) are
    restored, and the reserved ``$memo`` key is left out. A torn last line (a writer
    still writing, or one that died) and corrupt lines are reported with file and
    line number (``errors="warn"``), raised (``"raise"``) or skipped silently
    (``"ignore"``). ``path`` may also be a shard folder or a shard-mode target.
    """
    return read(path, errors=errors)


def read(path: str | os.PathLike[str], *, errors: Errors = "warn",
         meta: bool = False) -> list[dict[str, Any]]:
    """:func:`load`, and with ``meta=True`` each record keeps its ``$memo`` key."""
    if errors not in ("warn", "raise", "ignore"):
        raise ValueError(f"load(errors=...) must be 'warn', 'raise' or 'ignore', got {errors!r}")
    out: list[dict[str, Any]] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in sources(path):
            for bad in _read_file(name, out, meta):
                _report(bad, errors)
    finally:
        if enabled:
            gc.enable()
    return out


def _report(bad: BadLine, errors: Errors) -> None:
    if errors == "raise":
        raise ValueError(str(bad))
    if errors == "warn":
        warnings.warn(str(bad), CorruptLineWarning, stacklevel=4)


def _read_file(name: str, out: list[dict[str, Any]], meta: bool) -> Iterator[BadLine]:
    """Append the records of file ``name`` to ``out``; yield its bad lines."""
    with open(name, "rb", buffering=0) as f:
        lineno = 0
        rest = b""
        while True:
            chunk = f.read(BLOCK)
            data = rest + chunk if rest else chunk
            if not chunk:
                break
            cut = data.rfind(b"\n") + 1
            if not cut:
                rest = data
                continue
            rest = data[cut:]
            n, framed = _frame(data, cut)
            objs: list[Any] | None = None
            if framed:
                try:
                    objs = _decoder.decode_lines(memoryview(data)[:cut])
                except (msgspec.DecodeError, RecursionError):  # the lines say which
                    objs = None
                if objs is not None and len(objs) != n:
                    objs = None
            if objs is None:
                objs = []
                yield from _by_line(data[:cut], name, lineno, objs)
                _fix(objs, data[:cut], meta)
            else:
                _fix(objs, data[:cut], meta, by_line=True)
            out.extend(objs)
            lineno += n
        if rest.strip():  # the last line has no newline: a writer is writing, or died
            item = _decode(rest, name, lineno + 1)
            if isinstance(item, BadLine):
                yield BadLine(name, lineno + 1, item.reason, torn=True)
            else:
                _fix([item], rest, meta)
                out.append(item)


def _by_line(data: bytes, name: str, lineno: int, objs: list[Any]) -> Iterator[BadLine]:
    """Each line on its own, as :mod:`memo.reader` reads them (1e999 is inf, a line nested
    too deeply is a bad line)."""
    for i, raw in enumerate(data.split(b"\n")[:-1], start=lineno + 1):
        if not raw.strip():
            continue
        item = _decode(raw, name, i)
        if isinstance(item, BadLine):
            yield item
        else:
            objs.append(item)


def _fix(objs: list[dict[str, Any]], data: bytes, meta: bool, by_line: bool = False) -> None:
    """Undo the reserved encodings of ``objs``, decoded from ``data``, in place.

    ``by_line``: ``objs[i]`` is line ``i`` of ``data``; then only the records whose line
    holds ``"$nonfinite"`` are looked at, instead of every record.
    """
    if b'"$' not in data:
        return
    if _TAG.search(data):
        objs[:] = [serialize.restore(o) for o in objs]
        nonfinite = False
    else:
        nonfinite = b'"$nonfinite"' in data
    drop = not meta and b'"$memo"' in data
    if nonfinite and (by_line or not drop):
        for o in (objs[i] for i in _lines_with(data, b'"$nonfinite"')) if by_line else objs:
            nf = o.pop(NONFINITE_KEY, None)
            if nf is not None:
                _put_nonfinite(o, nf)
    elif nonfinite:  # one pass for both keys
        for o in objs:
            nf = o.pop(NONFINITE_KEY, None)
            if nf is not None:
                _put_nonfinite(o, nf)
            o.pop(META_KEY, None)
        return
    if drop:
        for o in objs:
            o.pop(META_KEY, None)


def _lines_with(data: bytes, needle: bytes) -> Iterator[int]:
    """The (0-based) numbers of the lines of ``data`` that contain ``needle``."""
    line, last = 0, 0
    at = data.find(needle)
    while at >= 0:
        line += data.count(b"\n", last, at)
        last = at
        yield line
        at = data.find(needle, at + 1)


def _put_nonfinite(obj: dict[str, Any], pointers: Any) -> None:
    if not isinstance(pointers, dict):
        return
    for pointer, name in pointers.items():
        value = _NONFINITE.get(name) if isinstance(name, str) else None
        if value is None or not isinstance(pointer, str):
            continue
        key = pointer[1:]
        if "/" not in key and "~" not in key and pointer[:1] == "/":
            if obj.get(key, 0) is None:
                obj[key] = value
        else:
            serialize._put(obj, pointer, value)


def _records(source: Source, errors: Errors) -> list[dict[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        return load(source, errors=errors)
    return [{k: v for k, v in r.items() if k not in _RESERVED} for r in source]


def to_pandas(source: Source, *, errors: Errors = "warn") -> Any:
    """A pandas DataFrame of a memo file (or of a list of records, such as memlist's)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_pandas needs pandas: pip install 'memo[pandas]'") from None
    return pd.DataFrame(_records(source, errors))


def to_polars(source: Source, *, errors: Errors = "warn") -> Any:
    """A polars DataFrame of a memo file (or of a list of records)."""
    try:
        import polars as pl
    except ImportError:
        raise ImportError("to_polars needs polars: pip install 'memo[polars]'") from None
    if errors not in ("warn", "raise", "ignore"):
        raise ValueError(f"to_polars(errors=...) must be 'warn', 'raise' or 'ignore', "
                         f"got {errors!r}")
    if not isinstance(source, (str, os.PathLike)):
        return pl.DataFrame(_records(source, errors), infer_schema_length=None)
    frames = []
    for name in sources(source):
        frame = _polars_file(pl, name, errors)
        if frame is None:  # tags polars cannot restore: the exact way
            return pl.DataFrame(load(source, errors=errors), infer_schema_length=None)
        frames.append(frame)
    if not frames:
        return pl.DataFrame()
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _polars_file(pl: Any, name: str, errors: Errors) -> Any:
    try:
        # the schema inferred from the first rows is kept only when every key of the
        # file is in it (polars leaves out keys it did not see while inferring). The keys
        # of the file are counted in a thread while polars reads (it releases the GIL).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            counted = pool.submit(_keys_in_file, name)
            frame = pl.read_ndjson(name)
            keys = counted.result()
        if _keys_in_frame(pl, frame) != keys:
            frame = pl.read_ndjson(name, infer_schema_length=None)
    except Exception:  # polars refuses the file: find the bad lines, read the good ones
        parts: list[Any] = []
        for item in scan(name):
            if isinstance(item, BadLine):
                _report(item, errors)
            else:
                parts.append(item[0])
        if not parts:
            return pl.DataFrame()
        frame = pl.read_ndjson(io.BytesIO(b"".join(parts)), infer_schema_length=None)
    if any(_has_tag(pl, dtype) for dtype in frame.schema.values()):
        return None
    if NONFINITE_KEY in frame.columns:
        frame = _restore_nonfinite(pl, frame)
    return frame.drop([c for c in _RESERVED if c in frame.columns])


def _keys_in_file(name: str) -> int:
    """Members with a non-null value in the file (keys, nested ones too, minus ``":null``).

    Each member of compact JSON is followed by ``":``; a ``":`` inside a string value
    (escaped as ``\\":``) only makes the count larger, which sends the caller to the
    slower full inference, never to a wrong frame.
    """
    keys = nulls = 0
    tail = b""
    with open(name, "rb", buffering=0) as f:
        while chunk := f.read(BLOCK):
            data = tail + chunk
            keys += data.count(b'":')
            nulls += data.count(b'":null')
            tail = data[-5:]  # a pattern cut by the block boundary is counted with the next
            keys -= tail.count(b'":')
            nulls -= tail.count(b'":null')
    keys += tail.count(b'":')
    nulls += tail.count(b'":null')
    return keys - nulls


def _keys_in_frame(pl: Any, frame: Any) -> int:
    """Members with a non-null value that ``frame`` holds (nested struct fields too)."""
    return sum(_members(pl, frame.get_column(c)) for c in frame.columns)


def _members(pl: Any, series: Any) -> int:
    """The non-null values of ``series`` (each a member of an object), and the members in them."""
    return len(series) - series.null_count() + _inner(pl, series)


def _inner(pl: Any, series: Any) -> int:
    """Members inside the values of ``series``: the fields of structs, also inside lists."""
    dtype = series.dtype
    if isinstance(dtype, pl.Struct):
        valid = series.is_not_null()
        return sum(_members(pl, series.struct.field(f.name).filter(valid))
                   for f in dtype.fields)
    if isinstance(dtype, (pl.List, pl.Array)) and _holds_struct(pl, dtype.inner):
        return _inner(pl, series.explode())
    return 0


def _holds_struct(pl: Any, dtype: Any) -> bool:
    if isinstance(dtype, pl.Struct):
        return True
    return isinstance(dtype, (pl.List, pl.Array)) and _holds_struct(pl, dtype.inner)


def _has_tag(pl: Any, dtype: Any) -> bool:
    """Whether a polars type holds a tag object (``$complex``, ``$bytes``, ``$float``...)."""
    if isinstance(dtype, pl.Struct):
        return any(f.name in ("$complex", "$bytes", "$float", "$dict") or _has_tag(pl, f.dtype)
                   for f in dtype.fields)
    if isinstance(dtype, (pl.List, pl.Array)):
        return _has_tag(pl, dtype.inner)
    return False


def _restore_nonfinite(pl: Any, frame: Any) -> Any:
    """Put nan/inf back where ``$nonfinite`` names them (top-level columns by expressions)."""
    nf = frame.schema[NONFINITE_KEY]
    if not isinstance(nf, pl.Struct):
        return frame
    exprs = []
    nested: list[str] = []
    for field in nf.fields:
        pointer = field.name
        key = pointer[1:]
        if pointer[:1] != "/" or "~" in key:
            nested.append(pointer)
            continue
        if "/" in key:
            nested.append(pointer)
            continue
        if key not in frame.columns:
            continue
        dtype = frame.schema[key]
        if not (dtype.is_numeric() or dtype == pl.Null):
            continue
        tag = pl.col(NONFINITE_KEY).struct.field(pointer)
        col = pl.col(key).cast(pl.Float64)
        exprs.append(pl.when(tag == "nan").then(float("nan"))
                     .when(tag == "inf").then(float("inf"))
                     .when(tag == "-inf").then(float("-inf"))
                     .otherwise(col).alias(key))
    if exprs:
        frame = frame.with_columns(exprs)
    if nested:
        frame = _restore_nested(pl, frame, nested)
    return frame


def _restore_nested(pl: Any, frame: Any, pointers: list[str]) -> Any:
    """Pointers into lists or objects: fix those columns row by row (rare, so plain Python)."""
    tags = frame[NONFINITE_KEY].struct.unnest().select(pointers).to_dicts()
    columns: dict[str, list[Any]] = {}
    for row, where in enumerate(tags):
        for pointer, name in where.items():
            if name not in _NONFINITE:
                continue
            top = pointer[1:].split("/", 1)[0].replace("~1", "/").replace("~0", "~")
            if top not in frame.columns:
                continue
            if top not in columns:
                columns[top] = frame[top].to_list()
            holder = {top: columns[top][row]}
            serialize._put(holder, pointer, _NONFINITE[name])
    if not columns:
        return frame
    return frame.with_columns([pl.Series(k, v, strict=False) for k, v in columns.items()])

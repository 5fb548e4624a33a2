"""What ``memo show`` does with the records: :class:`Query` and :func:`select` (filter,
tail, group and aggregate, sort), in Python or, for grouping a file, on polars; the
steps and their order are described in :mod:`memo.show`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..load import META_KEY, NONFINITE_KEY, load, to_polars
from ..reader import Errors
from .where import Record, WhereError, compile_where

__all__ = ["AGGREGATES", "HIDDEN", "Query", "Rows", "columns_of", "select"]

AGGREGATES = ("mean", "std", "count", "min", "max", "median", "sum")
_RESERVED = frozenset({META_KEY, NONFINITE_KEY})
Rows = list[list[Any]]
HIDDEN = ("error_traceback",)  # shown only when named in columns: long, and in every failure


@dataclass
class Query:
    """What :func:`select` does with the records (see the module docstring)."""

    columns: Sequence[str] | None = None
    where: str | None = None
    sort: Sequence[str] | None = None
    descending: bool = False
    group_by: Sequence[str] | None = None
    agg: Sequence[str] = ("mean", "count")
    tail: int | None = None

    def __post_init__(self) -> None:
        self.columns = _names(self.columns)
        self.sort = _names(self.sort)
        self.group_by = _names(self.group_by)
        self.agg = _names(self.agg) or ["mean", "count"]
        bad = [a for a in self.agg if a not in AGGREGATES]
        if bad:
            raise ValueError(f"agg={bad[0]!r} is not one of {', '.join(AGGREGATES)}")
        if self.tail is not None and self.tail < 0:
            raise ValueError(f"tail must be >= 0, got {self.tail}")


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [s.strip() for s in items if s.strip()]
    return out or None


def columns_of(records: Iterable[Record]) -> list[str]:
    """Every key of the records, in the order first seen, without the reserved keys."""
    seen: dict[str, None] = {}
    last: Any = None
    for r in records:
        keys = r.keys()
        if keys == last:  # records of one function have the same keys: skip the loop
            continue
        last = keys
        for k in keys:
            if k not in seen and k not in _RESERVED:
                seen[k] = None
    return list(seen)


def _check_columns(what: str, names: Sequence[str] | None, known: list[str]) -> None:
    missing = [n for n in names or () if n not in known]
    if missing:
        raise WhereError(f"{what}: no column named {missing[0]!r}; "
                         f"columns: {', '.join(known) or '(none)'}")


def _sort_key(v: Any) -> tuple[Any, ...]:
    t = type(v)
    if t is int or t is float:
        return (1,) if v != v else (0, v)
    if t is bool:
        return (0, int(v))
    if t is str:
        return (2, v)
    return (3, repr(v))


def select(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
           | Iterable[Record], query: Query | None = None, *, errors: Errors = "warn",
           **options: Any) -> tuple[list[str], Rows]:
    """``(columns, rows)`` of the records of ``source`` after ``query`` (or ``**options``).

    ``source``: a memo file (or shard folder), a list of files, or records (dicts).
    """
    q = query if query is not None else Query(**options)
    paths = _paths(source)
    if paths is not None and q.group_by:
        done = _select_polars(paths, q, errors)
        if done is not None:
            return done
    records: list[Record] = (_read_all(paths, errors) if paths is not None
                             else list(source))  # type: ignore[arg-type]
    return _select_records(records, q)


def _paths(source: Any) -> list[str] | None:
    if isinstance(source, (str, os.PathLike)):
        return [os.fspath(source)]
    if isinstance(source, (list, tuple)) and source and all(
            isinstance(s, (str, os.PathLike)) for s in source):
        return [os.fspath(s) for s in source]
    return None


def _read_all(paths: list[str], errors: Errors) -> list[Record]:
    records: list[Record] = []
    for p in paths:
        records.extend(load(p, errors=errors))
    return records


def _select_records(records: list[Record], q: Query) -> tuple[list[str], Rows]:
    known = columns_of(records)
    if records:
        _check_columns("--columns", q.columns, known)
        _check_columns("--group-by", q.group_by, known)
    if q.where:
        where = compile_where(q.where, known if records else None)
        records = [r for r in records if where.matches(r)]
    if q.tail is not None:
        records = records[len(records) - q.tail:] if q.tail else []
    if q.group_by:
        columns, rows = _group(records, known, q)
        sort = q.sort or q.group_by
    else:
        columns = list(q.columns) if q.columns else [c for c in known if c not in HIDDEN]
        rows = [[r.get(c) for c in columns] for r in records]
        sort = q.sort or []
    if sort:
        _check_columns("--sort", sort, columns)
        rows = _sorted(rows, [columns.index(c) for c in sort], q.descending)
    return columns, rows


def _sorted(rows: Rows, indexes: list[int], descending: bool) -> Rows:
    for i in reversed(indexes):  # stable sorts, last key first; missing values always last
        present = [r for r in rows if r[i] is not None]
        absent = [r for r in rows if r[i] is None]
        rows = sorted(present, key=_by_column(i), reverse=descending)
        rows += absent
    return rows


def _by_column(i: int) -> Callable[[list[Any]], tuple[Any, ...]]:
    return lambda row: _sort_key(row[i])


def _group_key(values: tuple[Any, ...]) -> Any:
    for v in values:
        t = type(v)
        if not (t is str or t is int or v is None or (t is float and v == v)):
            from ..call import canonical

            return canonical({str(i): v for i, v in enumerate(values)})
    return values


def _numeric_columns(records: list[Record], columns: list[str]) -> list[str]:
    out = []
    for c in columns:
        seen = False
        for r in records:
            v = r.get(c)
            if v is None:
                continue
            t = type(v)
            if t is not int and t is not float:
                break
            seen = True
        else:
            if seen:
                out.append(c)
    return out


def _group(records: list[Record], known: list[str], q: Query) -> tuple[list[str], Rows]:
    assert q.group_by is not None
    by = list(q.group_by)
    groups: dict[Any, tuple[tuple[Any, ...], list[Record]]] = {}
    for r in records:
        values = tuple(r.get(c) for c in by)
        key = _group_key(values)
        if key in groups:
            groups[key][1].append(r)
        else:
            groups[key] = (values, [r])
    wanted = [c for c in (q.columns or known) if c not in by]
    numeric = _numeric_columns(records, wanted)
    columns = by + (["count"] if "count" in q.agg else [])
    stats = [a for a in q.agg if a != "count"]
    columns += [f"{c}_{a}" for c in numeric for a in stats]
    rows = []
    for values, members in groups.values():
        row = list(values) + ([len(members)] if "count" in q.agg else [])
        for c in numeric:
            xs = [r[c] for r in members if r.get(c) is not None]
            row += [_aggregate(a, xs) for a in stats]
        rows.append(row)
    return columns, rows


def _aggregate(name: str, xs: list[Any]) -> Any:
    """One aggregate as polars computes it: NaN propagates through mean/std/sum/median,
    min and max leave NaN out (unless every value is NaN), std is the sample's (n - 1)."""
    if not xs:
        return None
    if name in ("min", "max"):
        finite = [x for x in xs if x == x]
        if not finite:
            return math.nan
        return min(finite) if name == "min" else max(finite)
    if name == "median":
        if any(x != x for x in xs):
            return math.nan
        s = sorted(xs)
        mid = len(s) // 2
        return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
    total = _sum(xs)
    if name == "sum":
        return total
    mean = total / len(xs)
    if name == "mean":
        return mean
    if len(xs) < 2:
        return None
    if not math.isfinite(mean):
        return math.nan
    return math.sqrt(_sum([(x - mean) ** 2 for x in xs]) / (len(xs) - 1))


def _sum(xs: list[Any]) -> Any:
    try:
        return math.fsum(xs) if any(type(x) is float for x in xs) else sum(xs)
    except (ValueError, OverflowError):  # inf + -inf, or a sum beyond floats
        return sum(float(x) for x in xs)


def _select_polars(paths: list[str], q: Query, errors: Errors) -> tuple[list[str], Rows] | None:
    """The query on polars (grouping a large file); None when polars is missing or refuses."""
    try:
        import polars as pl
    except ImportError:
        return None
    try:
        frames = [to_polars(p, errors=errors) for p in paths]
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        known = list(frame.columns)
        if frame.height:
            _check_columns("--columns", q.columns, known)
            _check_columns("--group-by", q.group_by, known)
        if q.where:
            where = compile_where(q.where, known if frame.height else None)
            frame = frame.filter(where.polars())
        if q.tail is not None:
            frame = frame.tail(q.tail)
        by = list(q.group_by or [])
        wanted = [c for c in (q.columns or known) if c not in by]
        numeric = [c for c in wanted if frame.schema[c].is_numeric()]
        stats = [a for a in q.agg if a != "count"]
        aggs = [pl.len().alias("count")] if "count" in q.agg else []
        aggs += [getattr(pl.col(c), a)().alias(f"{c}_{a}") for c in numeric for a in stats]
        out = frame.group_by(by).agg(aggs)
        columns = list(out.columns)
        sort = q.sort or by
        _check_columns("--sort", sort, columns)
        out = out.sort(sort, descending=q.descending, nulls_last=True)
        return columns, [list(row) for row in out.rows()]
    except WhereError:
        raise
    except Exception:  # types polars cannot group or compare: the Python engine decides
        return None

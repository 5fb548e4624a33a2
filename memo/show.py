"""``memo show PATH...``: the records of memo files as a table in the terminal.

The same table from Python: :func:`table` (a string) or :func:`select` (the columns
and rows, before formatting).

A query runs in four steps, in this order: ``where`` keeps the records that match a
filter expression, ``tail`` keeps the last N of those, ``group_by`` aggregates the
numeric columns per group (``agg``: mean, std, count, min, max, median, sum), and
``sort`` orders the rows (groups are ordered by their keys unless ``sort`` is given).
``columns`` picks and orders the columns shown.

The filter is a small expression language, parsed with :mod:`ast` and interpreted
(never evaluated as Python): comparisons (``==  !=  <  <=  >  >=``, chained like
``0.01 <= lr < 0.1``), ``in``/``not in`` a list, ``and``/``or``/``not`` and
parentheses. Names are columns (a name that is not a valid identifier goes in
backquotes: ```time-taken` > 1``); ``nan``, ``inf``, ``true``, ``false``, ``null``
and ``None`` are constants unless a column has that name. ``x == nan`` is true for
NaN. A comparison of values that cannot be ordered (a number and a string, or a
missing value) is false.

Grouping reads the file with polars when it is installed (``memo.to_polars``, then
polars' ``group_by``), which keeps a million-record file within twice polars' own
time; otherwise, and for lists of records, it runs in Python with the same results.

Output: on a terminal, a table drawn by rich that fits the terminal's width (columns
that do not fit even when squeezed are left out, and named below the table). Anywhere
else (a pipe, a file) plain text: aligned columns, nothing cut. ``csv``, ``json``
(JSON lines as memo writes them, so nan and inf survive a round trip) and
``markdown`` formats print every value in full. NaN and infinities show as
``nan``, ``inf`` and ``-inf``. The reserved keys (``$memo``, ``$nonfinite``) are
never columns.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import math
import operator
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import serialize
from .exceptions import MemoError
from .load import META_KEY, NONFINITE_KEY, load, to_polars
from .reader import Errors, Tail
from .shardfile import sources

__all__ = ["AGGREGATES", "FORMATS", "Query", "WhereError", "compile_where", "main",
           "register", "select", "table"]

AGGREGATES = ("mean", "std", "count", "min", "max", "median", "sum")
FORMATS = ("table", "csv", "json", "markdown")
_RESERVED = frozenset({META_KEY, NONFINITE_KEY})
Record = dict[str, Any]
Rows = list[list[Any]]


class WhereError(MemoError, ValueError):
    """A ``--where`` expression that is not a filter memo can run."""


# --------------------------------------------------------------------------- the filter

_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_CONSTANTS = {"nan": math.nan, "inf": math.inf, "true": True, "false": False, "null": None,
              "None": None, "True": True, "False": False}
_MISSING = object()


def _is_nan(v: Any) -> bool:
    return type(v) is float and v != v


@dataclass
class Where:
    """A compiled filter: ``matches(record)`` in Python, ``polars()`` as a polars expression."""

    text: str
    tree: ast.expr
    names: dict[str, str]  # placeholder identifier -> column name (for backquoted names)
    columns: set[str] = field(default_factory=set)  # columns the expression reads
    matches: Callable[[Record], bool] = field(init=False)

    def __post_init__(self) -> None:
        self.matches = self._python(self.tree)

    def check(self, columns: Iterable[str]) -> None:
        """Raise :class:`WhereError` if the expression reads a column that is not there."""
        known = set(columns)
        unknown = sorted(self.columns - known)
        if unknown:
            hint = " (quote strings: model=='mlp')" if len(unknown) == 1 else ""
            raise WhereError(f"--where {self.text!r}: no column named {unknown[0]!r}{hint}; "
                             f"columns: {', '.join(sorted(known)) or '(none)'}")

    # Python: closures over the tree, built once
    def _python(self, node: ast.expr) -> Callable[[Record], Any]:
        if isinstance(node, ast.BoolOp):
            parts = [self._python(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self._python(node.operand)
            return lambda r: not inner(r)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        kind, value = self._operand(node)
        if kind == "column":
            return lambda r: bool(r.get(value))
        return lambda r: bool(value)

    def _operand(self, node: ast.expr) -> tuple[str, Any]:
        """``("column", name)`` or ``("value", constant)`` for a leaf of the tree."""
        if isinstance(node, ast.Name):
            name = self.names.get(node.id, node.id)
            if name in self.columns:
                return "column", name
            return "value", _CONSTANTS[name]
        return "value", _constant(node, self.text)

    def _compare(self, node: ast.Compare) -> Callable[[Record], bool]:
        operands = [self._operand(node.left)] + [self._operand(c) for c in node.comparators]
        steps = []
        for op, left, right in zip(node.ops, operands, operands[1:]):
            steps.append((_python_op(op, self.text), left, right))

        def get(r: Record, operand: tuple[str, Any]) -> Any:
            return r.get(operand[1], _MISSING) if operand[0] == "column" else operand[1]

        def test(r: Record) -> bool:
            for fn, left, right in steps:
                a, b = get(r, left), get(r, right)
                if a is _MISSING or b is _MISSING:
                    return False
                try:
                    if not fn(a, b):
                        return False
                except TypeError:
                    return False
            return True

        return test

    def polars(self) -> Any:
        """The same filter as a polars expression (for the polars engine)."""
        import polars as pl

        def build(node: ast.expr) -> Any:
            if isinstance(node, ast.BoolOp):
                parts = [build(v) for v in node.values]
                out = parts[0]
                for p in parts[1:]:
                    out = (out & p) if isinstance(node.op, ast.And) else (out | p)
                return out
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                return ~build(node.operand)
            if isinstance(node, ast.Compare):
                operands = [self._operand(node.left)] + [self._operand(c)
                                                         for c in node.comparators]
                out = None
                for op, left, right in zip(node.ops, operands, operands[1:]):
                    step = _polars_compare(pl, op, left, right)
                    out = step if out is None else out & step
                return out
            kind, value = self._operand(node)
            return pl.col(value).cast(pl.Boolean) if kind == "column" else pl.lit(bool(value))

        return build(self.tree).fill_null(False)


def _polars_compare(pl: Any, op: ast.cmpop, left: tuple[str, Any], right: tuple[str, Any]) -> Any:
    def expr(side: tuple[str, Any]) -> Any:
        return pl.col(side[1]) if side[0] == "column" else pl.lit(side[1])

    if isinstance(op, (ast.In, ast.NotIn)):
        if left[0] != "column" or right[0] != "value":
            raise WhereError("the polars engine takes `column in [values]` only")
        test = pl.col(left[1]).is_in(list(right[1]))
        return ~test if isinstance(op, ast.NotIn) else test
    for a, b in ((left, right), (right, left)):  # x == nan is a NaN test
        if a[0] == "column" and b[0] == "value" and _is_nan(b[1]):
            if isinstance(op, ast.Eq):
                return pl.col(a[1]).is_nan()
            if isinstance(op, ast.NotEq):
                return ~pl.col(a[1]).is_nan()
    return _COMPARE[type(op)](expr(left), expr(right))


def _python_op(op: ast.cmpop, text: str) -> Callable[[Any, Any], bool]:
    if isinstance(op, ast.In):
        return lambda a, b: a in b
    if isinstance(op, ast.NotIn):
        return lambda a, b: a not in b
    if isinstance(op, ast.Eq):
        return lambda a, b: a == b or (_is_nan(a) and _is_nan(b))
    if isinstance(op, ast.NotEq):
        return lambda a, b: not (a == b or (_is_nan(a) and _is_nan(b)))
    if type(op) in _COMPARE:
        return _COMPARE[type(op)]
    raise WhereError(f"--where {text!r}: the operator {type(op).__name__} is not supported")


def _constant(node: ast.expr, text: str) -> Any:
    """A literal: number, string, True/False/None, a negative number, a list of literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = (_CONSTANTS.get(node.operand.id) if isinstance(node.operand, ast.Name)
                 else _constant(node.operand, text))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_CONSTANTS[e.id] if isinstance(e, ast.Name) and e.id in _CONSTANTS
                else _constant(e, text) for e in node.elts]
    raise WhereError(f"--where {text!r}: {ast.unparse(node)!r} is not a column or a literal "
                     "(only comparisons, and/or/not, numbers, strings and lists)")


def compile_where(text: str, columns: Iterable[str] | None = None) -> Where:
    """Parse a filter such as ``lr > 0.01 and model == 'mlp'`` (see the module docstring).

    ``columns``: the column names, to tell a column from a constant such as ``nan`` and
    to report unknown names; without them every name that is not a constant is a column.
    """
    names: dict[str, str] = {}

    def quote(m: re.Match[str]) -> str:
        ident = f"_memo_col_{len(names)}"
        names[ident] = m.group(1)
        return ident

    source = re.sub(r"`([^`]*)`", quote, text)
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise WhereError(f"--where {text!r}: not a filter expression ({exc.msg})") from None
    known = set(columns) if columns is not None else None
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not,
                             ast.USub, ast.UAdd, ast.Compare, ast.cmpop, ast.Constant,
                             ast.List, ast.Tuple, ast.Set, ast.Load)):
            continue
        if isinstance(node, ast.Name):
            name = names.get(node.id, node.id)
            if node.id in names or name not in _CONSTANTS or (known and name in known):
                used.add(name)
            continue
        raise WhereError(f"--where {text!r}: {type(node).__name__} is not allowed "
                         "(only comparisons, and/or/not, numbers, strings and lists)")
    where = Where(text, tree, names, used)
    if known is not None:
        where.check(known)
    return where


# --------------------------------------------------------------------------- the query


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
            from .call import canonical

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


# --------------------------------------------------------------------------- output


_CUT = 60  # characters of a text cell in a table (csv and json keep every character)
HIDDEN = ("error_traceback",)  # shown only when named in columns: long, and in every failure


def _cell(v: Any) -> str:
    """A value as a table cell: floats to 6 significant digits, nan/inf by name, text on
    one line and cut to 60 characters."""
    t = type(v)
    if t is float:
        return f"{v:.6g}"
    if v is None:
        return ""
    if t is str:
        if "\n" in v or len(v) > _CUT:
            v = " ".join(v.split())
            return v if len(v) <= _CUT else v[:_CUT - 1] + "…"
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    text = _compact(v)
    return text if len(text) <= _CUT else text[:_CUT - 1] + "…"


def _compact(v: Any) -> str:
    """Lists and objects as short JSON-like text, with numbers as cells show them."""
    if isinstance(v, list):
        return "[" + ", ".join(_compact(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_compact(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str):
        return _json(v)
    return _cell(v)


def _full(v: Any) -> str:
    """A value in full, for csv: every digit of a float, nan/inf by name, others as JSON."""
    t = type(v)
    if t is float:
        return repr(v) if math.isfinite(v) else _cell(v)
    if t is str:
        return v
    if t is list or t is dict:
        return _json(v)
    return _cell(v)


def _json(v: Any) -> str:
    try:
        return serialize.dumps(v).decode()
    except (TypeError, ValueError):
        return repr(v)


def _numeric(rows: Rows, i: int) -> bool:
    return any(type(r[i]) in (int, float) for r in rows) and all(
        type(r[i]) in (int, float) or r[i] is None for r in rows)


def render(columns: list[str], rows: Rows, fmt: str = "table", *, terminal: bool = False,
           width: int | None = None, caption: str | None = None) -> str:
    """``columns`` and ``rows`` as text: ``table`` (rich on a terminal, plain otherwise),
    ``csv``, ``json`` (JSON lines) or ``markdown``."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_full(v) for v in row] for row in rows])
        return out.getvalue()
    if fmt == "json":
        return "".join(serialize.dumps_line(dict(zip(columns, row))).decode() for row in rows)
    if fmt == "markdown":
        return _markdown(columns, rows)
    if terminal:
        return _rich(columns, rows, width, caption)
    return plain(columns, rows)


def plain(columns: list[str], rows: Rows) -> str:
    """Aligned plain text: numbers right-aligned, text left-aligned, nothing cut."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    right = [_numeric(rows, i) for i in range(len(columns))]
    return "".join(_line(r, widths, right) + "\n" for r in
                   [list(columns), ["-" * w for w in widths], *cells])


def _line(cells: list[str], widths: list[int], right: list[bool]) -> str:
    return "  ".join(c.rjust(w) if r else c.ljust(w)
                     for c, w, r in zip(cells, widths, right)).rstrip()


def _markdown(columns: list[str], rows: Rows) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    right = [_numeric(rows, i) for i in range(len(columns))]
    lines = ["| " + " | ".join(esc(c) for c in columns) + " |",
             "| " + " | ".join("---:" if r else "---" for r in right) + " |"]
    lines += ["| " + " | ".join(esc(_cell(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _rich_table(columns: list[str], rows: Rows, width: int, caption: str | None) -> Any:
    from rich import box
    from rich.table import Table

    right = [_numeric(rows, i) for i in range(len(columns))]
    cells = [[_cell(v) for v in row] for row in rows]
    natural = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    # squeezed, a number keeps every digit and a text column its first 8 characters;
    # the columns that do not fit even so are left out and named in the caption
    least = [min(n, 14) if right[i] else min(n, 8) for i, n in enumerate(natural)]
    shown: list[int] = []
    used = 0
    for i in range(len(columns)):
        if shown and used + least[i] + 2 > width:
            break
        shown.append(i)
        used += least[i] + 2
    left_out = [columns[i] for i in range(len(columns)) if i not in shown]
    notes = [caption] if caption else []
    if left_out:
        notes.append(f"{len(left_out)} more column(s) not shown: {', '.join(left_out)} "
                     "(choose with --columns)")
    t = Table(box=box.SIMPLE_HEAD, caption="\n".join(notes) or None, caption_justify="left",
              header_style="bold", pad_edge=False)
    for i in shown:
        t.add_column(columns[i], justify="right" if right[i] else "left", no_wrap=True,
                     overflow="ellipsis", min_width=least[i])
    for row in cells:
        t.add_row(*(row[i] for i in shown))
    return t


def _rich(columns: list[str], rows: Rows, width: int | None, caption: str | None) -> str:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True,
                      width=width or shutil.get_terminal_size().columns)
    console.print(_rich_table(columns, rows, console.width, caption))
    return out.getvalue()


def table(source: Any, *, format: str = "table", terminal: bool = False,
          width: int | None = None, errors: Errors = "warn", **options: Any) -> str:
    """The records of ``source`` (a memo file, files, or records) as text.

    ``options`` are those of :class:`Query`: ``columns``, ``where``, ``sort``,
    ``descending``, ``group_by``, ``agg``, ``tail``. ``format``: ``"table"`` (plain
    aligned text, or with ``terminal=True`` a rich table with colours fitted to
    ``width``), ``"csv"``, ``"json"`` or ``"markdown"``.
    """
    columns, rows = select(source, Query(**options), errors=errors)
    return render(columns, rows, format, terminal=terminal, width=width)


# --------------------------------------------------------------------------- the command


class _Follower:
    """New records of a set of files (and of shard files that appear), via ``Tail``."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.tails: dict[str, Tail] = {}

    def read(self) -> tuple[bool, list[Record]]:
        reset, records = False, []
        for p in self.paths:
            try:
                names = sources(p)
            except FileNotFoundError:
                names = []
            for name in names:
                tail = self.tails.setdefault(name, Tail(name))
                cut, new = tail.read_new()
                reset |= cut
                records.extend(new)
        return reset, records


def _follow(args: argparse.Namespace, q: Query, fmt: str, terminal: bool) -> int:
    follower = _Follower(args.paths)
    records: list[Record] = []
    deadline = None if args.follow_for is None else time.monotonic() + args.follow_for
    interval = args.interval

    def expired() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    if terminal and fmt == "table":
        from rich.console import Console
        from rich.live import Live

        console = Console()
        view = q
        if q.tail is None and not q.group_by:  # keep the newest rows on the screen
            view = Query(**{**q.__dict__, "tail": max(console.height - 8, 5)})

        def renderable() -> Any:
            columns, rows = _select_records(records, view)
            return _rich_table(columns, rows, console.width,
                               f"{len(records)} records, following (Ctrl-C to stop)")

        with Live(renderable(), console=console, auto_refresh=False) as live:
            try:
                while not expired():
                    reset, new = follower.read()
                    if reset:
                        records.clear()
                    if new or reset or not records:
                        records.extend(new)
                        live.update(renderable(), refresh=True)
                    time.sleep(interval)
            except KeyboardInterrupt:
                pass
        return 0
    # a pipe or a file: print the rows as they come (a grouped table is printed again)
    shown_header = False
    widths: list[int] = []
    right: list[bool] = []
    columns: list[str] = []
    try:
        while True:
            reset, new = follower.read()
            if reset:
                records.clear()
            if new:
                records.extend(new)
                if q.group_by:
                    columns, rows = _select_records(records, q)
                    sys.stdout.write(("\n" if shown_header else "")
                                     + render(columns, rows, fmt))
                    shown_header = True
                else:
                    if not columns:  # the columns of the first records stay the columns
                        columns = list(q.columns) if q.columns else [
                            c for c in columns_of(records) if c not in HIDDEN]
                    # the first rows printed are the last --tail ones, as without --follow
                    chosen = Query(**{**q.__dict__, "columns": columns,
                                      "tail": None if shown_header else q.tail})
                    _, rows = _select_records(new, chosen)
                    if fmt == "table":
                        cells = [[_cell(v) for v in row] for row in rows]
                        if not shown_header:
                            widths = [max([len(c)] + [len(r[i]) for r in cells])
                                      for i, c in enumerate(columns)]
                            right = [_numeric(rows, i) for i in range(len(columns))]
                            sys.stdout.write(_line(columns, widths, right) + "\n"
                                             + _line(["-" * w for w in widths], widths,
                                                     right) + "\n")
                        sys.stdout.write("".join(_line(r, widths, right) + "\n"
                                                 for r in cells))
                    else:
                        text = render(columns, rows, fmt)
                        if shown_header and fmt in ("csv", "markdown"):
                            text = text.split("\n", 2 if fmt == "markdown" else 1)[-1]
                        sys.stdout.write(text)
                    shown_header = True
                sys.stdout.flush()
            if expired():
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    return 0


def main(args: argparse.Namespace) -> int:
    """``memo show``: the table on stdout; problems on stderr; the exit status of memo.cli."""
    from .cli import OK, error, stdin_paths

    if args.follow and "-" in args.paths:
        return error("show", "--follow needs files, not standard input ('-')")
    try:
        q = Query(columns=args.columns, where=args.where, sort=args.sort,
                  descending=args.desc, group_by=args.group_by, agg=args.agg, tail=args.tail)
        if args.where:
            compile_where(args.where)  # syntax errors before any reading
    except ValueError as exc:  # WhereError too
        return error("show", exc)
    terminal = sys.stdout.isatty()
    with stdin_paths(args.paths) as paths:
        args.paths = paths
        missing = [p for p in paths if not os.path.exists(p) and not os.path.isdir(p + ".shards")]
        if missing and not args.follow:
            return error("show", f"{missing[0]}: no such file or shard folder")
        try:
            if args.follow:
                return _follow(args, q, args.format, terminal)
            columns, rows = select(paths, q, errors=args.errors)
        except WhereError as exc:
            return error("show", exc)
    if terminal and args.format == "table":
        from rich.console import Console

        console = Console()
        console.print(_rich_table(columns, rows, console.width, None))
    else:
        sys.stdout.write(render(columns, rows, args.format))
    return OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .cli import add_paths

    p = subparsers.add_parser(
        "show", help="print the records of memo files as a table",
        description="Print the records of memo JSONL files (or shard folders) as a table: "
                    "filter, sort, group and aggregate them, or follow the file as records "
                    "are appended.")
    add_paths(p)
    p.add_argument("-c", "--columns", help="columns to show, comma-separated, in this order")
    p.add_argument("-w", "--where", metavar="EXPR",
                   help="keep the records that match, e.g. \"lr > 0.01 and model == 'mlp'\"")
    p.add_argument("-s", "--sort", metavar="COLS", help="sort by these columns (comma-separated)")
    p.add_argument("--desc", action="store_true", help="sort in descending order")
    p.add_argument("-g", "--group-by", metavar="COLS",
                   help="one row per group, with aggregates of the numeric columns")
    p.add_argument("--agg", default="mean,count",
                   help=f"aggregates for --group-by, from {','.join(AGGREGATES)} "
                        "(default: mean,count)")
    p.add_argument("-n", "--tail", type=int, metavar="N", help="only the last N records")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep the table updated as records are appended (Ctrl-C to stop)")
    p.add_argument("--follow-for", type=float, metavar="SECONDS",
                   help="with --follow: stop after this many seconds")
    p.add_argument("--interval", type=float, default=0.5, metavar="SECONDS",
                   help="with --follow: how often to look for new records (default 0.5)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), csv, json (JSON lines) or markdown")
    p.add_argument("--errors", choices=("warn", "ignore"), default="warn",
                   help="corrupt lines: report them on stderr (default) or skip them quietly")
    p.set_defaults(handler=main)


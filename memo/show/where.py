"""The ``--where`` filter of ``memo show``: a small expression language, parsed with
:mod:`ast` and interpreted, never evaluated as Python (see :mod:`memo.show`)."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import MemoError

__all__ = ["Record", "Where", "WhereError", "compile_where"]

Record = dict[str, Any]


class WhereError(MemoError, ValueError):
    """A ``--where`` expression that is not a filter memo can run."""


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

"""``memo show``'s output: columns and rows as plain text, markdown or a rich table, csv
or JSON lines; :func:`table` for Python."""

from __future__ import annotations

import csv
import io
import math
import shutil
from typing import Any

from .. import serialize
from ..reader import Errors
from .query import Query, Rows, select

__all__ = ["FORMATS", "plain", "render", "table"]

FORMATS = ("table", "csv", "json", "markdown")
_CUT = 60  # characters of a text cell in a table (csv and json keep every character)


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

"""The ``memo show`` command: its arguments, and the table printed once or followed."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ..reader import Tail
from ..shardfile import sources
from .output import FORMATS, _cell, _line, _numeric, _rich_table, render
from .query import AGGREGATES, HIDDEN, Query, _select_records, columns_of, select
from .where import Record, WhereError, compile_where

__all__ = ["main", "register"]


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
    from ..cli import OK, error, stdin_paths

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
    from ..cli import add_paths

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

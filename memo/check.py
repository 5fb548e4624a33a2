"""``memo check PATH...``: is every line of these memo files a whole record?

Streams each file in large blocks (constant memory) and reports every line that
is not one JSON object, with file and line number. A torn last line (a writer
still writing, or one that died mid-line) is reported as incomplete. Exits 0
when every line is a record, 1 when any line is not, 2 when a path is missing
(the exit statuses of every ``memo`` command, :mod:`memo.cli`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from .reader import BadLine, BadLineCounts, scan
from .shardfile import sources

__all__ = ["CheckReport", "check", "main", "register"]


@dataclass
class CheckReport(BadLineCounts):
    """What :func:`check` found."""

    files: list[str] = field(default_factory=list)
    records: int = 0
    bad: list[BadLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every line of every file is a whole record."""
        return not self.bad

    def __str__(self) -> str:
        return (f"{self.records} records in {len(self.files)} file(s); "
                f"{self.corrupt} corrupt line(s), {self.incomplete} incomplete last line(s)")


def check(*paths: str | os.PathLike[str]) -> CheckReport:
    """Validate every line of each path (a file, a shard folder, or a shard-mode target)."""
    report = CheckReport()
    for path in paths:
        for name in sources(path):
            report.files.append(name)
            for item in scan(name):
                if isinstance(item, BadLine):
                    report.bad.append(item)
                else:
                    report.records += item[1]
    return report


def main(paths: Sequence[str], quiet: bool = False) -> int:
    """``memo check``: bad lines on stdout, the summary on stderr; the exit status of memo.cli."""
    from .cli import FAILED, OK, PROBLEMS, error, shown, stdin_paths

    with stdin_paths(paths) as paths:
        missing = [p for p in paths if not os.path.exists(p) and not os.path.isdir(p + ".shards")]
        for p in missing:
            error("check", f"{p}: no such file or shard folder")
        report = check(*(p for p in paths if p not in missing))
        for bad in report.bad:
            print(shown(str(bad)))
    if not quiet:
        print(report, file=sys.stderr)
    return FAILED if missing else OK if report.ok else PROBLEMS


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .cli import add_paths

    p = subparsers.add_parser(
        "check", help="report lines of memo files that are not whole records",
        description="Stream memo JSONL files (or shard folders) and report every line that "
                    "is not one JSON object, with file and line number, on stdout. Exit status "
                    "1 when there is any, 2 when a path is missing or cannot be read.")
    add_paths(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(handler=lambda a: main(a.paths, quiet=a.quiet))

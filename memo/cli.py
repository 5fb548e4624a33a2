"""The ``memo`` command (also ``python -m memo``).

Each subcommand lives in the module named after what it does and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` (a function
taking the parsed namespace and returning an exit code). Modules are imported
lazily, so ``memo demo`` does not import what ``memo serve`` needs.

Conventions shared by every subcommand (docs/cli.md):

* Exit status: :data:`OK` (0) done, and the data was whole; :data:`PROBLEMS` (1)
  done, but the data had problems (a line that is not a record, a record that
  could not be delivered); :data:`FAILED` (2) a usage error, or a path that does
  not exist or cannot be read or written, or a missing optional package;
  :data:`INTERRUPTED` (130) Ctrl-C;
  ``memo status`` also tells the state of a sweep: :data:`PROBLEMS` (1) settings are
  missing or running, :data:`FAILURES_LEFT` (3) only failed settings are left,
  :data:`NO_PLAN` (4) no plan was recorded; :data:`BROKEN_PIPE` (141) the reader of the
  output went away (``memo check big.jsonl | head``), as for tools that SIGPIPE ends.
* ``-`` as a path is standard input where a file is read (:func:`stdin_paths`) and
  standard output where one is written (:func:`stdout_path`).
* An error is one line on stderr, ``memo COMMAND: message``. ``main`` turns the
  errors a command can meet in normal use (``OSError``, ``ImportError``,
  :class:`memo.exceptions.MemoError`) into that line and status 2, so no command
  needs its own ``try`` for them; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["BROKEN_PIPE", "FAILED", "FAILURES_LEFT", "INTERRUPTED", "NO_PLAN", "OK",
           "PROBLEMS", "STDIN", "STDOUT", "add_paths", "add_server_options", "number",
           "build_parser", "error", "main", "shown", "stdin_paths", "stdout_path"]

OK = 0
PROBLEMS = 1
FAILED = 2
FAILURES_LEFT = 3  # memo status: nothing is left to run, but some settings failed
NO_PLAN = 4  # memo status: no plan was recorded, so what is missing is unknown
INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, the status of a shell tool that SIGPIPE ended

STDIN = "<stdin>"  # how standard input and output are named in reports
STDOUT = "<stdout>"

# Modules that provide subcommands, in the order ``memo --help`` lists them.
_COMMANDS = (
    "memo.demo",
    "memo.show",
    "memo.status",
    "memo.check",
    "memo.merge",
    "memo.serve",
    "memo.spool",
    "memo.plot",
    "memo.view",
    "memo.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="memo", description="memo: results of sweeps as tables",
        epilog="Exit status: 0 done; 1 done, but the data had problems (such as a line "
               "that is not a whole record); 2 usage error, or a path that cannot be "
               "read or written. '-' as a path is standard input or output.")
    parser.add_argument("--version", action="version", version=f"memo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def error(command: str, message: object) -> int:
    """Print ``memo COMMAND: message`` on stderr; return :data:`FAILED`, for a handler to return."""
    print(f"memo {command}: {message}", file=sys.stderr)
    return FAILED


def add_paths(parser: argparse.ArgumentParser, name: str = "paths", metavar: str = "PATH",
              what: str = "memo file, shard folder, or shard-mode target") -> None:
    """The files a command reads: one or more, ``-`` being standard input."""
    parser.add_argument(name, nargs="+", metavar=metavar,
                        help=f"{what}; '-' reads standard input")


def number(kind: Callable[[str], Any], low: float, high: float | None = None,
           what: str = "") -> Callable[[str], Any]:
    """An argparse ``type`` that takes a ``kind`` (int, float) from ``low`` to ``high``."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high) or value != value:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def add_server_options(parser: argparse.ArgumentParser, *, port: int, token: str,
                       exposed: str) -> None:
    """``--host``, ``--port``, ``--token`` and ``--insecure-no-token``, the same for every
    command that listens (``memo serve``, ``memo view``): loopback by default, and a
    non-loopback address without a token only when asked for by name."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 for every "
                             "interface, which needs a token or --insecure-no-token)")
    parser.add_argument("--port", type=number(int, 0, 65535, "a port from 0 to 65535"),
                        default=port, help=f"port (default {port}; 0: any free one)")
    parser.add_argument("--token", default=os.environ.get("MEMO_TOKEN"),
                        help=f"require this token: {token} (default: $MEMO_TOKEN; an empty "
                             "token is an error)")
    parser.add_argument("--insecure-no-token", "--no-token", action="store_true",
                        dest="insecure_no_token",
                        help="allow a non-loopback --host without a token (anyone who "
                             f"reaches the port can {exposed})")


def _describe(exc: BaseException) -> str:
    """``path: reason`` for an OSError that names a path, else the exception's own message."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        return f"{where}: {exc.strerror}"
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def stdin_paths(paths: Sequence[str]) -> Iterator[list[str]]:
    """``paths`` with ``-`` replaced by a temporary file holding all of standard input.

    memo's readers validate files in large blocks at known sizes, which a pipe does
    not have; standard input is copied to disk first (constant memory), once however
    often ``-`` is given. Reports name it :data:`STDIN` (see :func:`shown`).
    """
    if "-" not in paths:
        yield list(paths)
        return
    with tempfile.TemporaryDirectory(prefix="memo-stdin-") as folder:
        copy = os.path.join(folder, "stdin.jsonl")
        with open(copy, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        _shown[copy] = STDIN
        try:
            yield [copy if p == "-" else p for p in paths]
        finally:
            del _shown[copy]


@contextlib.contextmanager
def stdout_path(path: str) -> Iterator[str]:
    """``path``, or for ``-`` a temporary file that is copied to standard output at the end."""
    if path != "-":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="memo-stdout-") as folder:
        out = os.path.join(folder, "stdout.jsonl")
        _shown[out] = STDOUT
        try:
            yield out
        finally:
            del _shown[out]
        if os.path.exists(out):
            sys.stdout.flush()
            with open(out, "rb") as src:
                shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()


_shown: dict[str, str] = {}


def shown(text: str) -> str:
    """``text`` with the temporary stand-ins for standard input and output named as such."""
    for path, name in _shown.items():
        text = text.replace(path, name)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    from .exceptions import MemoError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"memo {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # the reader of our output went away (`memo check big.jsonl | head`): not an error
        # of ours; point stdout at /dev/null so that the exit's flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except (OSError, ImportError, MemoError) as exc:
        return error(args.command, shown(_describe(exc)))

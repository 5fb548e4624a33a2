"""The ``memo`` command (also ``python -m memo``).

Each subcommand lives in the module named after what it does and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` (a function
taking the parsed namespace and returning an exit code). Modules are imported
lazily, so ``memo demo`` does not import what ``memo serve`` needs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["main"]

# Modules that provide subcommands, in the order ``memo --help`` lists them.
_COMMANDS = (
    "memo.demo",
    "memo.check",
    "memo.merge",
    "memo.serve",
    "memo.spool",
    "memo.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memo", description="memo: results of sweeps as tables")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))

"""The ``memo`` command (also ``python -m memo``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(out=args.out, jobs=args.jobs, fresh=args.fresh)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memo", description="memo: results of sweeps as tables")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the birthday-paradox demo sweep")
    demo.add_argument("--out", default="results.jsonl", help="JSONL file to log to")
    demo.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    demo.add_argument("--fresh", action="store_true", help="start a new file instead of resuming")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))

"""The ``memo doctor`` command: its arguments, the report on stdout, the exit status."""

from __future__ import annotations

import argparse
import json
import os

from .report import diagnose, format_report

__all__ = ["main", "register"]


def main(args: argparse.Namespace) -> int:
    tag = args.peer
    if tag == "":
        tag = os.environ.get("SLURM_JOB_ID", "default")
    from ..cli import OK, PROBLEMS, error

    try:
        report = diagnose(args.path, appends=not args.no_appends, processes=args.processes,
                          records=args.records, seconds=args.seconds, peer=tag,
                          peer_timeout=args.peer_timeout)
    except (OSError, RuntimeError) as exc:
        return error("doctor", exc)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return PROBLEMS if report["problems"] else OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "doctor", help="check what the filesystem at PATH gives memo (locks, atomic appends)",
        description="Report the filesystem holding PATH and its mount options, test flock, "
                    "POSIX locks, exclusive creation and appends from several processes "
                    "(in temporary files beside PATH, removed afterwards), and say which lock "
                    "memo uses there and why. With --peer, run it on two hosts at once to test "
                    "whether a lock on one excludes the other.")
    p.add_argument("path", metavar="PATH", help="a memo file (need not exist) or its folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--peer", nargs="?", const="", default=None, metavar="TAG",
                   help="meet a second `memo doctor PATH --peer` on another host (TAG tells "
                        "runs apart; default: $SLURM_JOB_ID)")
    p.add_argument("--peer-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for the peer at each step (default 120)")
    p.add_argument("--processes", type=int, default=4,
                   help="appending processes per lock mode (default 4)")
    p.add_argument("--records", type=int, default=200,
                   help="records per appending process (default 200)")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="at most this long per lock mode (default 2)")
    p.add_argument("--no-appends", action="store_true",
                   help="skip the append test on this host")
    p.set_defaults(handler=main)

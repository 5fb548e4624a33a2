"""The spool: records a remote sink could not deliver, kept in a local memo file.

A spool is an ordinary memo JSONL file (``memo.load`` reads it), appended to with
:class:`~memo.writer.AppendWriter`, so many processes can share one. Each record in
it still carries the id the remote sink gave it, so sending it again is safe: the
collector (``memo serve``) keeps only the first copy of an id.

:meth:`Spool.drain` sends everything and then empties the file, holding the same
``flock`` every appender takes for the whole time: a record appended while the
spool is being sent waits for the lock and lands in the emptied file, never in the
part that is about to be cut. If a send fails the spool is left whole; the records
that did get through are sent again next time and dropped as duplicates there.

``memo resend SPOOL URL`` drains a spool by hand.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .reader import iter_records
from .writer import AppendWriter

__all__ = ["Spool", "register", "resend"]


class Spool:
    """A local JSONL file of records waiting to be sent."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.writer = AppendWriter(path)
        self.path = self.writer.path

    def add(self, lines: Sequence[bytes]) -> None:
        """Append serialized records (each one line ending in ``\\n``) in one write."""
        self.writer.append(b"".join(lines))

    def pending(self) -> bool:
        """Whether the spool holds anything (one ``stat``: cheap enough to ask often)."""
        try:
            return os.stat(self.path).st_size > 0
        except FileNotFoundError:
            return False

    def drain(self, send: Callable[[list[dict[str, Any]]], None], *, batch: int = 1000,
              wait: bool = False) -> int | None:
        """Hand every spooled record to ``send`` in lists of up to ``batch``, then empty the spool.

        Returns how many records were sent, or ``None`` when another process or thread
        is draining this spool right now (unless ``wait=True``, which waits for it).
        An exception from ``send`` propagates and leaves the spool as it was.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return None
            sent = 0
            chunk: list[dict[str, Any]] = []
            for record in iter_records(self.path, errors="warn", meta=True):
                chunk.append(record)
                if len(chunk) >= batch:
                    send(chunk)
                    sent += len(chunk)
                    chunk = []
            if chunk:
                send(chunk)
                sent += len(chunk)
            os.ftruncate(fd, 0)
            return sent
        finally:
            os.close(fd)  # releases the lock


def resend(spool: str | os.PathLike[str], url: str, *, token: str | None = None,
           headers: dict[str, str] | None = None, batch: int = 1000, timeout: float = 10.0,
           retries: int = 3, backoff: float = 0.5) -> int:
    """Send every record of ``spool`` to ``url`` (a ``memo serve`` collector) and empty it."""
    from .sinks.web import Sender  # needs httpx, which only this command and memweb use

    sender = Sender(url, token=token, headers=headers, timeout=timeout, retries=retries,
                    backoff=backoff)
    try:
        sent = Spool(spool).drain(sender.post_records, batch=batch, wait=True)
    finally:
        sender.close()
    return sent or 0


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def main(args: argparse.Namespace) -> int:
    from .sinks.web import DeliveryError

    if not os.path.exists(args.spool):
        print(f"memo resend: {args.spool}: no such spool file", file=sys.stderr)
        return 2
    try:
        sent = resend(args.spool, args.url, token=args.token or None, headers=dict(args.header),
                      batch=args.batch, timeout=args.timeout, retries=args.retries)
    except ImportError as exc:
        print(f"memo resend: {exc}", file=sys.stderr)
        return 2
    except DeliveryError as exc:
        print(f"memo resend: {exc}; {args.spool} was left as it was", file=sys.stderr)
        return 1
    print(f"memo resend: sent {sent} record(s) from {args.spool} to {args.url}; "
          "the spool is now empty")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "resend", help="send the records a memweb spool holds to a collector, then empty it",
        description="Send every record of a memweb spool file to URL (records keep their ids, "
                    "so a collector that already has some keeps one copy), then empty the spool.")
    p.add_argument("spool", help="the spool file (memweb's spool=..., memweb-spool.jsonl)")
    p.add_argument("url", help="the collector's URL, e.g. http://127.0.0.1:8000/")
    p.add_argument("--token", default=os.environ.get("MEMO_TOKEN"),
                   help="bearer token (default: $MEMO_TOKEN)")
    p.add_argument("--header", type=_header, action="append", default=[],
                   metavar="NAME:VALUE", help="an extra HTTP header (repeatable)")
    p.add_argument("--batch", type=int, default=1000, help="records per request (default 1000)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=3, help="retries per request")
    p.set_defaults(handler=main)

"""The spool: records a remote sink could not deliver, kept in a local memo file.

A spool is an ordinary memo JSONL file (``memo.load`` reads it), appended to with
:class:`~memo.writer.AppendWriter`, so many processes can share one. Each record in
it still carries the id the remote sink gave it, so sending it again is safe: the
collector (``memo serve``) keeps only the first copy of an id.

:meth:`Spool.drain` sends everything and then empties the file, holding for the
whole time the lock every appender takes (:func:`memo.locking.hold`, which finds the
lock mode the way the writers do: ``MEMO_LOCK``, the filesystem): a record appended
while the spool is being sent waits for the lock and lands in the emptied file,
never in the part about to be cut. When the endpoint cannot take records now, the
spool is left whole; the records that did get through are sent again next time and
dropped as duplicates there.

A record the endpoint refuses for good (over its body limit, not a record to it:
:func:`memo.web.wire.refuses_record`) does not hold up the ones behind it: it is
*set aside*, appended unchanged to the refused file next to the spool
(``<spool>.refused.jsonl``, see :func:`refused_path`) and never sent again by
itself; the caller warns, naming that file. Nothing is dropped.

``memo resend SPOOL URL`` drains a spool by hand (:func:`resend`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

from .. import locking
from ..reader import iter_records
from ..serialize import loads
from ..writer import AppendWriter
from .errors import DeliveryError
from .retry import RetryPolicy
from .sender import Refused, Sender
from .wire import ID_KEY

__all__ = ["Drained", "Spool", "refused_message", "refused_path", "register", "resend"]

Send = Callable[[list[bytes]], Sequence[Refused]]


def refused_path(spool: str | os.PathLike[str]) -> str:
    """Where records refused for good are set aside: ``x.jsonl`` -> ``x.refused.jsonl``."""
    path = os.fspath(spool)
    stem = path[:-len(".jsonl")] if path.endswith(".jsonl") else path
    return f"{stem}.refused.jsonl"


class Drained(NamedTuple):
    """What one :meth:`Spool.drain` did."""

    sent: int
    """Records the endpoint took."""
    refused: int = 0
    """Records it refused for good, now in ``refused_path``."""
    refused_path: str = ""
    first_error: str = ""
    """The endpoint's answer to the first refused record."""


def refused_message(n: int, where: str, error: object, url: str) -> str:
    """The one message for records set aside (warnings and ``memo resend`` say the same)."""
    return (f"{url} refused {n} record(s) for good ({error}); they were set aside, unchanged, "
            f"in {where} and will not be sent again by themselves (after fixing them: "
            f"memo resend {where} {url})")


class Spool:
    """A local JSONL file of records waiting to be sent."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.writer = AppendWriter(path)
        self.path = self.writer.path
        self.refused_path = refused_path(self.path)
        self._refused: AppendWriter | None = None

    def add(self, lines: Sequence[bytes]) -> None:
        """Append serialized records (each one line ending in ``\\n``) in one write."""
        self.writer.append(b"".join(lines))

    def pending(self) -> bool:
        """Whether the spool holds anything (one ``stat``: cheap enough to ask often)."""
        try:
            return os.stat(self.path).st_size > 0
        except FileNotFoundError:
            return False

    def set_aside(self, refused: Sequence[Refused]) -> None:
        """Append refused records to the refused file (each id once: a drain may repeat)."""
        if not refused:
            return
        have: set[object] = set()
        if os.path.exists(self.refused_path):
            have = {r.get(ID_KEY) for r in iter_records(self.refused_path, errors="ignore")}
            have.discard(None)
        lines = [r.line for r in refused if _id_of(r.line) not in have]
        if lines:
            if self._refused is None:
                self._refused = AppendWriter(self.refused_path)
            self._refused.append(b"".join(lines))

    def drain(self, send: Send, *, batch: int = 1000, wait: bool = False) -> Drained | None:
        """Hand every spooled record to ``send`` in lists of up to ``batch``, then empty the spool.

        ``send`` takes serialized records and returns the ones refused for good
        (:meth:`Sender.send`); those are set aside. Returns what was done, or ``None``
        when another process or thread is draining this spool right now (unless
        ``wait=True``, which waits for it). An exception from ``send`` propagates and
        leaves the spool as it was.
        """
        if batch < 1:
            raise ValueError(f"Spool.drain: batch must be >= 1, got {batch!r}")
        if not os.path.exists(self.path):
            return Drained(0)
        with contextlib.ExitStack() as stack:
            try:
                fd = stack.enter_context(locking.hold(self.path, timeout=None if wait else 0))
            except locking.LockTimeout:
                return None
            sent, refused = 0, list[Refused]()
            chunk: list[bytes] = []
            # read through the held descriptor: in posix mode, opening and closing the
            # file again would drop this process's lock on it (POSIX lock semantics)
            for line in _lines(fd):
                if _is_record(line):
                    chunk.append(line)
                else:  # torn or edited: not sent, but kept with the refused records
                    refused.append(Refused(line, DeliveryError("not a JSON object (corrupt)")))
                if len(chunk) >= batch:
                    sent, refused = self._send(send, chunk, sent, refused)
                    chunk = []
            if chunk:
                sent, refused = self._send(send, chunk, sent, refused)
            self.set_aside(refused)  # before the spool is emptied: kept in one place or both
            os.ftruncate(fd, 0)
        return Drained(sent, len(refused), self.refused_path,
                       str(refused[0].error) if refused else "")

    @staticmethod
    def _send(send: Send, chunk: list[bytes], sent: int,
              refused: list[Refused]) -> tuple[int, list[Refused]]:
        bad = list(send(chunk))
        return sent + len(chunk) - len(bad), refused + bad

    def close(self) -> None:
        self.writer.close()
        if self._refused is not None:
            self._refused.close()


def _lines(fd: int, block: int = 1 << 20) -> Iterator[bytes]:
    """The lines of the file open at ``fd``, each ending in ``\\n`` (a last one gets one)."""
    offset, rest = 0, b""
    while True:
        data = os.pread(fd, block, offset)
        if not data:
            break
        offset += len(data)
        parts = (rest + data).split(b"\n")
        rest = parts.pop()
        yield from (part + b"\n" for part in parts if part.strip())
    if rest.strip():
        yield rest + b"\n"


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(loads(line), dict)
    except Exception:  # msgspec's DecodeError, RecursionError: either way not a record
        return False


def _id_of(line: bytes) -> object:
    try:
        return loads(line).get(ID_KEY)
    except Exception:  # a line that does not decode has no id to compare
        return None


def resend(spool: str | os.PathLike[str], url: str, *, token: str | None = None,
           headers: Mapping[str, str] | None = None, batch: int = 1000,
           timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
           retry: RetryPolicy | None = None) -> Drained:
    """Send every record of ``spool`` to ``url`` (a ``memo serve`` collector) and empty it.

    Records the collector refuses for good are set aside (``Drained.refused``);
    :class:`DeliveryError` when the collector cannot take records (the spool is kept).
    """
    sender = Sender(url, token=token, headers=headers, timeout=timeout,
                    retry=retry if retry is not None else RetryPolicy(retries, backoff))
    try:
        done = Spool(spool).drain(sender.send, batch=batch, wait=True)
    finally:
        sender.close()
    return done if done is not None else Drained(0)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def main(args: argparse.Namespace) -> int:
    from ..cli import OK, PROBLEMS, error

    if not os.path.exists(args.spool):
        return error("resend", f"{args.spool}: no such spool file")
    try:  # (a missing package is one line and status 2, by memo.cli.main)
        done = resend(args.spool, args.url, token=args.token or None,
                      headers=dict(args.header), batch=args.batch, timeout=args.timeout,
                      retries=args.retries)
    except DeliveryError as exc:
        error("resend", f"{exc}; {args.spool} was left as it was")
        return PROBLEMS
    print(f"memo resend: sent {done.sent} record(s) from {args.spool} to {args.url}; "
          "the spool is now empty")
    if done.refused:
        message = refused_message(done.refused, done.refused_path, done.first_error, args.url)
        error("resend", message)
        return PROBLEMS
    return OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..cli import number

    p = subparsers.add_parser(
        "resend", help="send the records a memweb spool holds to a collector, then empty it",
        description="Send every record of a memweb spool file to URL (records keep their ids, "
                    "so a collector that already has some keeps one copy), then empty the spool. "
                    "Records the collector refuses for good (too large, say) are set aside in "
                    "SPOOL's .refused.jsonl file next to it; the exit status is then 1.")
    p.add_argument("spool", help="the spool file (memweb's spool=..., memweb-spool.jsonl)")
    p.add_argument("url", help="the collector's URL, e.g. http://127.0.0.1:8000/")
    p.add_argument("--token", default=os.environ.get("MEMO_TOKEN"),
                   help="bearer token (default: $MEMO_TOKEN)")
    p.add_argument("--header", type=_header, action="append", default=[],
                   metavar="NAME:VALUE", help="an extra HTTP header (repeatable)")
    p.add_argument("--batch", type=number(int, 1, None, "a whole number >= 1"), default=1000,
                   help="records per request (default 1000)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=3, help="retries per request")
    p.set_defaults(handler=main)

"""The collector's core: request bodies in, lines appended to a memo file, each id once.

Independent of HTTP (the server in :mod:`memo.web.server` feeds it). A body is
decoded by the wire format (:func:`memo.web.wire.decode`), every record is
serialized again through :mod:`memo.serialize` (``$nonfinite`` etc. as memo writes
them), and the whole body is appended in one write with
:class:`~memo.writer.AppendWriter`, the lock every other memo writer takes, so
``memfile`` writers and ``memo serve`` can share a file. Anything wrong with a body
(not JSON, nested too deeply, a malformed ``$`` encoding, a bad id) is a
:class:`BadRequest` and writes nothing; one bad record refuses its whole batch.

De-duplication: a record's id (:data:`~memo.web.wire.ID_KEY`) is stored in the
record, in the same line, so the file itself says which ids it holds: the collector
reads the ids already in the file at start, and drops an id seen before (counted
under ``duplicates``). Because id and record are written in one ``write``, no crash
can leave one without the other. The ids are only the ones this collector saw, so
point one ``memo serve`` at a file (other writers may share it, but their records
are not checked).
"""

from __future__ import annotations

import os
from typing import Any

from ..reader import iter_records
from ..serialize import dumps_line, restore
from ..writer import AppendWriter
from .errors import BadRequest
from .wire import ID_KEY, decode

__all__ = ["Collector"]


class Collector:
    """Turns request bodies into lines appended to ``path``, each record id once."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.writer = AppendWriter(path, durable=durable)
        self.path = self.writer.path
        self.seen: set[str] = set()
        self.written = 0
        self.duplicates = 0
        if os.path.exists(self.path):
            for record in iter_records(self.path, errors="ignore", meta=True):
                rid = record.get(ID_KEY)
                if isinstance(rid, str):
                    self.seen.add(rid)

    def ingest(self, body: bytes) -> tuple[int, int]:
        """Append the records in ``body``; ``(written, duplicates)``, or :class:`BadRequest`."""
        records = decode(body)
        seen, fresh, lines = self.seen, set(), []
        for i, record in enumerate(records):
            rid = record.get(ID_KEY)
            if rid is not None:
                if rid in seen or rid in fresh:
                    continue
                fresh.add(rid)
            lines.append(_line(record, i))
        if lines:
            self.writer.append(b"".join(lines))  # one write: all of the request or none of it
        seen |= fresh
        self.written += len(lines)
        self.duplicates += len(records) - len(lines)
        return len(lines), len(records) - len(lines)

    def close(self) -> None:
        self.writer.close()


def _line(record: dict[str, Any], i: int) -> bytes:
    """The record as memo writes it; a record memo cannot write is the client's mistake."""
    try:
        return dumps_line(restore(record))
    except (ValueError, TypeError, LookupError, RecursionError) as exc:
        raise BadRequest(f"record {i} of the body cannot be stored: "
                         f"{type(exc).__name__}: {exc}") from None

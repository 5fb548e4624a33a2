"""``memfile``: records appended as JSON lines to one file shared by many writers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..pipeline import recorder
from ..reader import Tail
from ..resume import SkipIndex
from ..serialize import dumps_line
from ..writer import AppendWriter

__all__ = ["FileSink", "memfile"]

F = TypeVar("F", bound=Callable[..., Any])


class FileSink:
    """Serializes each record to one line and appends it with :class:`AppendWriter`."""

    def __init__(self, filepath: str | os.PathLike[str], *, durable: bool = False,
                 fallback: Callable[[Any], Any] | None = None) -> None:
        self.writer = AppendWriter(filepath, durable=durable)
        self.path = self.writer.path
        self.fallback = fallback
        self._tail: Tail | None = None

    def write(self, record: dict[str, Any]) -> None:
        self.writer.append(dumps_line(record, self.fallback))

    def refresh(self, index: SkipIndex) -> None:
        if self._tail is None:
            self._tail = Tail(self.path)
        reset, records = self._tail.read_new()
        if reset:
            index.clear()
        for record in records:
            index.add(record)


def memfile(
    filepath: str | os.PathLike[str],
    *,
    skip: bool = False,
    retry_failed: bool = True,
    durable: bool = False,
    fallback: Callable[[Any], Any] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Append one JSON line per call to ``filepath``; safe for many processes at once."""
    sink = FileSink(filepath, durable=durable, fallback=fallback)
    return recorder(sink, skip=skip, retry_failed=retry_failed, include=include, exclude=exclude)

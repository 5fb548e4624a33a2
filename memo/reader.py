"""Reading memo JSONL files: streaming, tolerant of torn and corrupt lines."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from . import serialize

__all__ = ["BadLine", "CorruptLineWarning", "Tail", "iter_records"]

Errors = Literal["warn", "raise", "ignore"]


class CorruptLineWarning(UserWarning):
    """A line of a memo file is not a JSON object (torn by a dead writer, or edited)."""


@dataclass(frozen=True)
class BadLine:
    """A line that is not a whole JSON object."""

    path: str
    lineno: int
    reason: str
    torn: bool = False  # the last line, without its newline: a writer is writing or died

    def __str__(self) -> str:
        what = "incomplete last line" if self.torn else "corrupt line"
        return f"{self.path}:{self.lineno}: {what}: {self.reason}"


def _decode(raw: bytes, path: str, lineno: int) -> dict[str, Any] | BadLine:
    try:
        obj = serialize.loads(raw)
    except ValueError as exc:
        return BadLine(path, lineno, str(exc).split(":")[0])
    if not isinstance(obj, dict):
        return BadLine(path, lineno, f"a JSON {type(obj).__name__}, not an object")
    return obj


def iter_records(
    path: str | os.PathLike[str], *, errors: Errors = "warn"
) -> Iterator[dict[str, Any]]:
    """Yield each record of a memo JSONL file in order, reporting bad lines per ``errors``."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        lineno = 0
        for raw in f:
            lineno += 1
            torn = not raw.endswith(b"\n")
            if not raw.strip():
                continue
            item = _decode(raw, name, lineno)
            if isinstance(item, BadLine):
                if torn:
                    item = BadLine(name, lineno, item.reason, torn=True)
                if errors == "raise":
                    raise ValueError(str(item))
                if errors == "warn":
                    warnings.warn(str(item), CorruptLineWarning, stacklevel=2)
                continue
            yield item


class Tail:
    """Follows a file that others append to: each call returns the new complete lines."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.offset = 0
        self._ident: tuple[int, int] | None = None

    def read_new(self) -> tuple[bool, list[dict[str, Any]]]:
        """``(reset, records)``: ``reset`` when the file was replaced or cut since last time."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            reset = self.offset > 0
            self.offset, self._ident = 0, None
            return reset, []
        reset = False
        ident = (st.st_dev, st.st_ino)
        if ident != self._ident or st.st_size < self.offset:
            reset = self._ident is not None
            self._ident, self.offset = ident, 0
        if st.st_size == self.offset:
            return reset, []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(st.st_size - self.offset)
        end = chunk.rfind(b"\n") + 1  # only whole lines; a line being written waits
        records = []
        for raw in chunk[:end].splitlines():
            if raw.strip():
                item = _decode(raw, self.path, 0)
                if isinstance(item, dict):
                    records.append(item)
        self.offset += end
        return reset, records

"""``memfunc`` and ``memstdout``: records handed to a callable, or printed as JSON lines."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar, overload

from ..pipeline import recorder
from ..serialize import dumps_line

__all__ = ["CallbackSink", "StreamSink", "memfunc", "memstdout"]

F = TypeVar("F", bound=Callable[..., Any])


class CallbackSink:
    """Calls ``callback(record)`` for each record (in the parent, under a Runner)."""

    where = "parent"

    def __init__(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        if not callable(callback):
            raise TypeError(
                f"memfunc(callback=...) needs a callable, got {type(callback).__name__}"
            )
        self.callback = callback

    def write(self, record: dict[str, Any], call: Any = None) -> None:
        self.callback(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class StreamSink:
    """Writes each record as one JSON line to a text stream (``sys.stdout`` at call time)."""

    def __init__(self, stream: IO[str] | None = None, fallback: Callable[[Any], Any] | None = None):
        self.stream = stream
        self.fallback = fallback

    where = "worker"

    def write(self, record: dict[str, Any], call: Any = None) -> None:
        line = dumps_line(record, self.fallback).decode()  # serialized whole before any output
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(line)
        stream.flush()

    def flush(self) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        stream.flush()

    def close(self) -> None:
        self.flush()


def memfunc(
    callback: Callable[[dict[str, Any]], Any],
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Hand each record (a dict) to ``callback``."""
    return recorder(CallbackSink(callback), include=include, exclude=exclude)


@overload
def memstdout(func: F, /) -> F: ...


@overload
def memstdout(func: None = None, /, *, stream: IO[str] | None = None,
              fallback: Callable[[Any], Any] | None = None,
              include: Iterable[str] | None = None,
              exclude: Iterable[str] | None = None) -> Callable[[F], F]: ...


def memstdout(
    func: F | None = None,
    /,
    *,
    stream: IO[str] | None = None,
    fallback: Callable[[Any], Any] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Any:
    """Print each record as one JSON line to stdout, or to ``stream``.

    Works bare (``@memstdout``) or with options (``@memstdout(stream=sys.stderr)``).
    """
    decorate = recorder(StreamSink(stream, fallback), include=include, exclude=exclude)
    return decorate(func) if func is not None else decorate

"""``capture_time`` and its short forms ``time_taken`` and ``timeit``: timing keys."""

from __future__ import annotations

import datetime as _dt
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .record import as_mapping, merge

__all__ = ["capture_time", "time_taken", "timeit"]

F = TypeVar("F", bound=Callable[..., Any])


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat()


@overload
def capture_time(func: F, /, *, time_taken: bool = True, time_start: bool = True,
                 time_end: bool = False) -> F: ...


@overload
def capture_time(func: None = None, /, *, time_taken: bool = True, time_start: bool = True,
                 time_end: bool = False) -> Callable[[F], F]: ...


def capture_time(
    func: F | None = None,
    /,
    *,
    time_taken: bool = True,
    time_start: bool = True,
    time_end: bool = False,
) -> Any:
    """Add timing keys to the function's result.

    ``time_taken`` is the wall-clock duration in seconds (``time.perf_counter``);
    ``time_start`` and ``time_end`` are ISO 8601 timestamps in UTC. Works bare
    (``@capture_time``) or with options.
    """

    def decorate(f: F) -> F:
        name = getattr(f, "__qualname__", repr(f))

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
            wall = time.time()
            t0 = time.perf_counter()
            result = f(*args, **kwargs)
            elapsed = time.perf_counter() - t0
            added: dict[str, Any] = {}
            if time_taken:
                added["time_taken"] = elapsed
            if time_start:
                added["time_start"] = _iso(wall)
            if time_end:
                added["time_end"] = _iso(wall + elapsed)
            return merge(as_mapping(result, name), added, name, what="timing key")

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


@overload
def time_taken(func: F, /) -> F: ...


@overload
def time_taken(func: None = None, /) -> Callable[[F], F]: ...


def time_taken(func: F | None = None, /) -> Any:
    """Add only ``time_taken`` (seconds) to the result: ``capture_time(time_start=False)``."""
    if func is None:
        return capture_time(time_taken=True, time_start=False)
    return capture_time(func, time_taken=True, time_start=False)


timeit = time_taken

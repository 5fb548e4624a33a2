"""``ignore_error``: a failing call becomes a record of the failure, not the end of the sweep."""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .record import as_mapping, merge

__all__ = ["ignore_error"]

F = TypeVar("F", bound=Callable[..., Any])


def _raise_requested() -> bool:
    return os.environ.get("MEMO_RAISE", "").lower() not in ("", "0", "false", "no")


@overload
def ignore_error(
    func: F, /, *,
    exceptions: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    reraise: bool = False, traceback_limit: int = 5,
) -> F: ...


@overload
def ignore_error(
    func: None = None, /, *,
    exceptions: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    reraise: bool = False, traceback_limit: int = 5,
) -> Callable[[F], F]: ...


def ignore_error(
    func: F | None = None,
    /,
    *,
    exceptions: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    reraise: bool = False,
    traceback_limit: int = 5,
) -> Any:
    """Turn an exception in the decorated function into a result that records it.

    On success the result gains ``status="ok"``. When one of ``exceptions`` is
    raised, the call returns (and the outer decorators record)
    ``{"status": "error", "error_type": ..., "error_message": ..., "error_traceback": ...}``
    where the traceback keeps the innermost ``traceback_limit`` frames. Exceptions
    not in ``exceptions`` (and ``KeyboardInterrupt``) propagate as usual.
    ``reraise=True``, or the environment variable ``MEMO_RAISE=1``, lets every
    exception propagate, for debugging a sweep without editing it.
    """

    def decorate(f: F) -> F:
        name = getattr(f, "__qualname__", repr(f))

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
            try:
                result = f(*args, **kwargs)
            except exceptions as exc:
                if reraise or _raise_requested():
                    raise
                cls = type(exc)
                tb = traceback.format_exception(cls, exc, exc.__traceback__,
                                                limit=-traceback_limit)
                return {
                    "status": "error",
                    "error_type": cls.__qualname__ if cls.__module__ == "builtins"
                    else f"{cls.__module__}.{cls.__qualname__}",
                    "error_message": str(exc),
                    "error_traceback": "".join(tb),
                }
            return merge(as_mapping(result, name), {"status": "ok"}, name, what="status key")

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate

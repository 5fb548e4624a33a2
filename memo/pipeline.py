"""The one record pipeline behind every ``mem*`` decorator.

For each call: bind the arguments (:mod:`memo.binding`), ask the sink whether the
call is already recorded when ``skip=True`` (:mod:`memo.resume`), run the
function, turn its result into a record (:mod:`memo.record`) and hand the
finished record to the sink. A sink only decides where a record goes; it has
one method, ``write(record)``, and, to support ``skip=True``, ``refresh(index)``
which feeds the records it holds that the index has not seen yet.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable

from .binding import Binder
from .record import as_mapping, merge
from .resume import SkipIndex
from .serialize import SerializationError

__all__ = ["Resumable", "Sink", "recorder"]

F = TypeVar("F", bound=Callable[..., Any])


@runtime_checkable
class Sink(Protocol):
    """Where finished records go."""

    def write(self, record: dict[str, Any]) -> None: ...


@runtime_checkable
class Resumable(Protocol):
    """A sink that can tell which records it already holds (for ``skip=True``)."""

    def write(self, record: dict[str, Any]) -> None: ...

    def refresh(self, index: SkipIndex) -> None: ...


def recorder(
    sink: Sink,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    skip: bool = False,
    retry_failed: bool = True,
) -> Callable[[F], F]:
    """A decorator that records every call of the function it wraps into ``sink``."""
    include = list(include) if include is not None else None
    exclude = list(exclude) if exclude is not None else None
    if skip and not isinstance(sink, Resumable):
        raise TypeError(f"skip=True is not supported by {type(sink).__name__}")

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(
                f"a memo decorator was applied to {type(func).__name__!s}, not a function; "
                "did you forget the parentheses, as in @memlist(data=results)?"
            )
        binder = Binder(func, include, exclude)
        name = getattr(func, "__qualname__", repr(func))
        index = None
        if skip:
            names, optional = binder.identity()
            index = SkipIndex(names, optional=optional, retry_failed=retry_failed)
        bind, write = binder.bind, sink.write
        refresh: Any = getattr(sink, "refresh", None)
        # the commonest call (every parameter passed positionally) binds without bind()
        count, bind_positional = binder.positional or (-1, None)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) == count and not kwargs:
                params = bind_positional(args)  # type: ignore[misc]
                size = count
            else:
                params = bind(args, kwargs)
                size = len(params)
            if index is not None:
                with index.lock:
                    refresh(index)
                    stored = index.result(params)
                if stored is not None:
                    return stored
            result = func(*args, **kwargs) if kwargs else func(*args)
            if type(result) is dict:  # the common case, without the checks' calls
                size += len(result)
                record = params  # a new dict of this call's own: extend it in place
                record |= result
                if len(record) != size:  # a key in both: bind again for the message
                    merge(bind(args, kwargs), result, name)  # raises KeyCollisionError
            else:
                record = merge(params, as_mapping(result, name), name)
            try:
                write(record)
            except SerializationError as exc:
                raise exc.with_function(name) from None
            return result

        wrapper.memo_sink = sink  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate

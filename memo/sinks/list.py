"""``memlist``: records appended to a Python list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..pipeline import recorder
from ..resume import SkipIndex

__all__ = ["ListSink", "memlist"]

F = TypeVar("F", bound=Callable[..., Any])


class ListSink:
    """Appends each record (the dict itself, values unserialized) to ``data``."""

    def __init__(self, data: list[dict[str, Any]]) -> None:
        if not hasattr(data, "append"):
            raise TypeError(f"memlist(data=...) needs a list, got {type(data).__name__}")
        self.data = data
        self._seen = 0

    def write(self, record: dict[str, Any]) -> None:
        self.data.append(record)

    def refresh(self, index: SkipIndex) -> None:
        n = len(self.data)
        if n < self._seen:  # the list was cut: index it again
            index.clear()
            self._seen = 0
        for record in self.data[self._seen:n]:
            index.add(record)
        self._seen = n


def memlist(
    data: list[dict[str, Any]],
    *,
    skip: bool = False,
    retry_failed: bool = True,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Append one record per call to ``data``.

    With ``skip=True`` a call whose arguments already have a record in ``data``
    does not run; it returns the stored outputs instead.
    """
    return recorder(ListSink(data), skip=skip, retry_failed=retry_failed,
                    include=include, exclude=exclude)

"""The settings of a run: checked to be mappings, numbered, and sorted out for ``skip=True``.

:class:`Indexed` hands out numbered settings in batches, as the backends ask for
them (a generator is never read further than the calls in flight need). When the
function's outermost recorder has ``skip=True`` it first asks that recorder, in
the parent: a setting already recorded is counted as skipped and never sent to a
worker (a rerun of a finished sweep submits nothing); a setting another run has
claimed (``recorder.busy``) is put back to the end, and asked about again then.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from itertools import islice
from typing import Any, overload

__all__ = ["Batch", "Indexed", "Item", "Skipper", "Span", "check_settings"]

Item = tuple[int, Mapping[str, Any]]


class Span(Sequence[Item]):
    """Settings numbered from ``start`` on, one after another: a batch as it is sent.

    It reads as the ``(index, settings)`` pairs it stands for, and pickles as its first
    number and the settings alone (no pair per setting to build, send and unpack).
    """

    __slots__ = ("settings", "start")

    def __init__(self, start: int, settings: list[Mapping[str, Any]]) -> None:
        self.start = start
        self.settings = settings

    def __reduce__(self) -> tuple[Any, tuple[int, list[Mapping[str, Any]]]]:
        return (Span, (self.start, self.settings))

    def __len__(self) -> int:
        return len(self.settings)

    def __iter__(self) -> Iterator[Item]:
        return zip(range(self.start, self.start + len(self.settings)), self.settings)

    @overload
    def __getitem__(self, key: int) -> Item: ...
    @overload
    def __getitem__(self, key: slice) -> Sequence[Item]: ...

    def __getitem__(self, key: int | slice) -> Item | Sequence[Item]:
        numbers = range(self.start, self.start + len(self.settings))
        if isinstance(key, slice):
            part, settings = numbers[key], self.settings[key]
            if part.step != 1:
                return list(zip(part, settings))
            return Span(part.start, settings)
        return (numbers[key], self.settings[key])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Span({self.start}, <{len(self.settings)} settings>)"


Batch = Sequence[Item]  # a Span, or a list of (index, settings) pairs


def check_settings(settings: Any) -> tuple[Iterator[Mapping[str, Any]], int | None]:
    """An iterator over ``settings`` (checked to be mappings) and its length if known."""
    if isinstance(settings, (Mapping, str, bytes)) or not isinstance(settings, Iterable):
        hint = "; wrap a single setting in a list: [settings]" if isinstance(settings, Mapping) \
            else ""
        raise TypeError(
            f"Runner.run(settings=...) needs an iterable of mappings such as grid(...), "
            f"got {type(settings).__name__}{hint}"
        )
    total = len(settings) if isinstance(settings, Sized) else None
    if total is not None and hasattr(settings, "__getitem__"):
        if not set(map(type, settings)) <= {dict}:  # (the common case, in C loops only)
            for i, s in enumerate(settings):
                _check_one(i, s)
        return iter(settings), total

    def checked() -> Iterator[Mapping[str, Any]]:
        for i, s in enumerate(settings):
            _check_one(i, s)
            yield s

    return checked(), total


def _check_one(i: int, s: Any) -> None:
    if type(s) is not dict and not isinstance(s, Mapping):  # (dicts skip the ABC check)
        raise TypeError(
            f"Runner.run(settings=...) needs an iterable of mappings (keyword arguments "
            f"for the function); item {i} is {type(s).__name__}: {s!r:.80}"
        )


class Skipper:
    """Asks the outermost recorder (``skip=True``) about each setting before it is sent."""

    def __init__(self, recorder: Any, on_skip: Callable[[int, Mapping[str, Any]], None]) -> None:
        self.done = recorder.done
        self.busy = getattr(recorder, "busy", None)
        self.on_skip = on_skip

    def decide(self, item: Item, last_chance: bool) -> str:
        """``"skip"``, ``"defer"`` (claimed by another run) or ``"run"``."""
        if self.done(item[1]):
            self.on_skip(*item)
            return "skip"
        if not last_chance and self.busy is not None and self.busy(item[1]):
            return "defer"
        return "run"


class Indexed:
    """Numbers the settings as they are taken; remembers them to name failed ones."""

    def __init__(self, items: Iterator[Mapping[str, Any]], total: int | None,
                 skipper: Skipper | None = None) -> None:
        self._items = items
        self.total = total
        self.skipper = skipper
        self._lock = threading.Lock()
        self._by_index: dict[int, Mapping[str, Any]] = {}  # settings taken one by one
        self._chunks: dict[int, Batch] = {}  # batches taken whole, by first index
        self._deferred: list[Item] = []
        self._back: list[Batch] = []  # batches' unrun rests, handed out first
        self._ended = False
        self.count = 0
        self.error: BaseException | None = None

    def take(self, n: int) -> Batch:
        """Up to ``n`` settings to run: first what came back unrun (one rest at a time,
        so possibly fewer), then new ones (fewer only when none are left)."""
        out: list[Item] = []
        with self._lock:
            if self._back:
                return self._take_back(n)
            if self.error is not None:
                return out
            try:
                if self.skipper is None and self.total is not None:
                    # a checked sequence (the common case): no call per setting
                    chunk = list(islice(self._items, n))
                    self._ended = len(chunk) < n
                    if not chunk:
                        return out
                    span = self._chunks[self.count] = Span(self.count, chunk)
                    self.count += len(chunk)
                    return span
                while len(out) < n and not self._ended:
                    s = next(self._items, None)
                    if s is None:
                        self._ended = True
                        break
                    item = (self.count, s)
                    self.count += 1
                    self._offer(item, out, last_chance=False)
            except Exception as exc:  # a bad item, or the generator itself failed
                self.error = exc
                return out
            while len(out) < n and self._deferred:  # claimed elsewhere: ask once more
                self._offer(self._deferred.pop(0), out, last_chance=True)
        return out

    def give_back(self, rest: Batch) -> None:
        """Settings a worker returned unrun: handed out again before any other."""
        if rest:
            with self._lock:
                self._chunks[rest[0][0]] = rest
                self._back.insert(0, rest)

    def _take_back(self, n: int) -> Batch:
        rest = self._back.pop(0)
        if len(rest) > n:  # the part taken and the part left are batches of their own
            head, tail = rest[:n], rest[n:]
            self._chunks[head[0][0]] = head
            self._chunks[tail[0][0]] = tail
            self._back.insert(0, tail)
            return head
        return rest

    def _offer(self, item: Item, out: list[Item], last_chance: bool) -> None:
        verdict = "run" if self.skipper is None else self.skipper.decide(item, last_chance)
        if verdict == "run":
            self._by_index[item[0]] = item[1]
            out.append(item)
        elif verdict == "defer":
            self._deferred.append(item)

    def __iter__(self) -> Iterator[Item]:
        while batch := self.take(1):
            yield batch[0]

    def all(self) -> list[Item]:
        """Every remaining setting (for backends that need the whole list up front)."""
        return list(self.take(sys.maxsize))

    def forget(self, batch: Batch) -> None:
        """Drop settings whose outcome was delivered (failures already hold theirs)."""
        with self._lock:
            chunk = self._chunks.get(batch[0][0]) if batch else None
            if chunk is not None and len(chunk) == len(batch):  # a batch taken whole
                del self._chunks[batch[0][0]]
                return
            for index, _ in batch:
                self._by_index.pop(index, None)

    def settings_of(self, index: int) -> Mapping[str, Any]:
        with self._lock:
            found = self._by_index.get(index)
            if found is not None:
                return found
            for start, chunk in self._chunks.items():  # the batches in flight: a few
                if start <= index < start + len(chunk):
                    return chunk[index - start][1]
        return {}

"""The one record pipeline behind every ``mem*`` decorator.

For each call: bind the arguments (:mod:`memo.binding`), with ``skip`` ask the
sink's index whether this call is already recorded (:mod:`memo.resume`), run the
function, turn its result into a record (:mod:`memo.record`) and hand the
finished record to the sink together with the :class:`~memo.call.Call` that says
who made it and which keys are arguments. A sink only decides where a record goes
(the protocol is documented in :mod:`memo.sinks`).

Each decorated function carries its :class:`Recorder` as ``memo_recorder``; the
Runner uses it to send records of parent-side sinks home from workers and to ask,
before submitting work, whether a setting is already recorded.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .binding import Binder
from .call import META_KEY, Call, canonical, fingerprint, function_name, key_hasher
from .record import as_mapping, merge
from .resume import Identity
from .serialize import SerializationError

__all__ = ["Recorder", "recorder", "recorders_of"]

F = TypeVar("F", bound=Callable[..., Any])

SKIP_MODES = (False, True, "arguments")


class Recorder:
    """The recording state of one decorated function: its sink, identity and index.

    ``sink`` may be replaced (the Runner does so in workers for sinks that must
    write in the parent); ``done(settings)`` tells whether a call with these keyword
    arguments is already recorded (``skip`` only); ``busy(settings)`` whether another
    process has claimed it and is computing it now.
    """

    def __init__(self, func: Callable[..., Any], sink: Any, *,
                 include: list[str] | None = None, exclude: list[str] | None = None,
                 skip: bool | str = False, retry_failed: bool = True,
                 version: str | None = None) -> None:
        self.func = func
        self.binder = binder = Binder(func, include, exclude)
        self._options = (include, exclude, retry_failed)
        self.skip = skip
        self.function = function_name(func)
        self.version = version if version is not None else fingerprint(func)
        self.call = Call(self.function, self.version, tuple(binder.names))
        self._hasher = key_hasher(self.function)
        self._keyed = self.call.keyed()
        self.varkw = binder.has_varkw
        self.index: Any = None
        if skip:
            identity = Identity(self.function, self.version, binder.names,
                                any_version=skip == "arguments", retry_failed=retry_failed,
                                legacy=not binder.has_varkw)
            self.index = sink.resume(identity)
        self._sink = sink
        self.write: Callable[[dict[str, Any], Call], Any] = sink.write  # after resume()
        self.prepared = False

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its settings (cloudpickle sends decorated functions to workers): the
        copy indexes its sink afresh, and keeps the code version found here."""
        include, exclude, retry_failed = self._options
        return (_rebuild, (self.func, self._sink, include, exclude, self.skip, retry_failed,
                           self.version))

    @property
    def sink(self) -> Any:
        return self._sink

    @sink.setter
    def sink(self, sink: Any) -> None:
        self._sink = sink
        self.write = sink.write

    def prepare(self) -> None:
        """Let the sink check, once, that it can take records (a file can be opened for
        appending and locked), so a bad path fails before the function runs, not after."""
        prepare = getattr(self._sink, "prepare", None)
        if prepare is not None:
            prepare()
        self.prepared = True

    def call_of(self, params: Mapping[str, Any]) -> Call:
        """The :class:`Call` for bound arguments ``params`` (its key set)."""
        hasher = self._hasher.copy()  # (equals call_key(self.function, params))
        hasher.update(canonical(params))
        if self.varkw:  # the arguments differ from call to call
            return Call(self.function, self.version, tuple(params), hasher.hexdigest())
        return self._keyed(hasher.hexdigest())

    def stored(self, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """What ``func(**settings)`` returned when it was recorded, if it was (``skip`` only)."""
        if self.index is None:
            return None
        return self.index.result(self.call_of(self.binder.bind((), dict(settings))))

    def done(self, settings: Mapping[str, Any]) -> bool:
        """Whether ``func(**settings)`` is already recorded (always False without ``skip``)."""
        return self.stored(settings) is not None

    def busy(self, settings: Mapping[str, Any]) -> bool:
        """Whether another process has claimed ``func(**settings)`` and is computing it."""
        claims = getattr(self.index, "claims", None)
        if claims is None:
            return False
        call = self.call_of(self.binder.bind((), dict(settings)))
        return bool(claims.busy(_claim_key(call)))

    def flush(self) -> None:
        flush = getattr(self._sink, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        close = getattr(self._sink, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"<Recorder {self.function} -> {type(self._sink).__name__}>"


WAIT_FIRST, WAIT_MAX = 0.05, 2.0  # seconds between looks at a call another process computes


def _claim_or_wait(index: Any, claims: Any, call: Call,
                   params: Mapping[str, Any]) -> dict[str, Any] | None:
    """Claim ``call``, or wait while another process computes it.

    Returns None when this process holds the claim (and must compute the call), or the
    outputs the other process recorded. A claim whose holder dies is taken over.
    """
    pause = WAIT_FIRST
    key = _claim_key(call)
    while not claims.claim(key, call.function, params):
        stored = index.result(call)
        if stored is not None:
            return stored  # type: ignore[no-any-return]
        time.sleep(pause)
        pause = min(pause * 2, WAIT_MAX)
    stored = index.result(call)  # recorded between our look and our claim
    if stored is not None:
        claims.finish(key, done=True)
    return stored  # type: ignore[no-any-return]


def _claim_key(call: Call) -> str:
    """A claim is for one call of one version of the code."""
    return f"{call.key}:{call.version}"


def _rebuild(func: Callable[..., Any], sink: Any, include: list[str] | None,
             exclude: list[str] | None, skip: bool | str, retry_failed: bool,
             version: str) -> Recorder:
    return Recorder(func, sink, include=include, exclude=exclude, skip=skip,
                    retry_failed=retry_failed, version=version)


def recorders_of(func: Callable[..., Any]) -> list[Recorder]:
    """The recorders of a decorated function, outermost first (along ``__wrapped__``)."""
    found: list[Recorder] = []
    seen: set[int] = set()
    f: Any = func
    while f is not None and id(f) not in seen:
        seen.add(id(f))
        rec = getattr(f, "__dict__", {}).get("memo_recorder")
        if rec is not None and rec not in found:
            found.append(rec)
        f = getattr(f, "__wrapped__", None)
    return found


def recorder(
    sink: Any,
    *,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    skip: bool | str = False,
    retry_failed: bool = True,
    version: str | None = None,
) -> Callable[[F], F]:
    """A decorator that records every call of the function it wraps into ``sink``.

    ``sink`` follows the protocol of :mod:`memo.sinks` (``write(record, call)``;
    ``resume(identity)`` for ``skip``). ``skip=True`` returns the stored outputs of a
    call already recorded by the same function and code version instead of running
    it; ``skip="arguments"`` accepts records of any version of the code. ``version``
    replaces the code fingerprint: bump it when a change should recompute.
    """
    include = list(include) if include is not None else None
    exclude = list(exclude) if exclude is not None else None
    if skip not in SKIP_MODES:
        raise ValueError(f"skip={skip!r} is not one of False, True, 'arguments'")
    if version is not None and not isinstance(version, str):
        raise TypeError(f"version= takes a string, not {type(version).__name__}")
    if skip and not callable(getattr(sink, "resume", None)):
        raise TypeError(f"skip=True is not supported by {type(sink).__name__}")
    if not callable(getattr(sink, "write", None)):
        raise TypeError(f"{type(sink).__name__} is not a sink: it has no write(record, call)")

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(
                f"a memo decorator was applied to {type(func).__name__!s}, not a function; "
                "did you forget the parentheses, as in @memlist(data=results)?"
            )
        rec = Recorder(func, sink, include=include, exclude=exclude, skip=skip,
                       retry_failed=retry_failed, version=version)
        name = getattr(func, "__qualname__", repr(func))
        # the commonest calls bind without bind(): every parameter passed positionally, or
        # every one by name (the Runner's func(**setting))
        count, bind_positional = rec.binder.positional or (-1, None)
        # every parameter by name, in any order: their values laid over the names in the
        # signature's order, in one dict display
        in_order = dict.fromkeys(rec.binder.names) if count >= 0 else {}

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not rec.prepared:
                rec.prepare()
            if len(args) == count and not kwargs:
                params = bind_positional(args)  # type: ignore[misc]
                size = count
            elif not args and len(kwargs) == count and len(
                    params := {**in_order, **kwargs}) == count:  # (no unknown name)
                size = count
            else:
                params = rec.binder.bind(args, kwargs)
                size = len(params)
            index = rec.index
            claims = None
            if index is not None:
                call = rec.call_of(params)
                stored = index.result(call)
                if stored is not None:
                    return stored
                claims = index.claims
                if claims is not None:
                    stored = _claim_or_wait(index, claims, call, params)
                    if stored is not None:
                        return stored
            else:
                call = rec.call_of(params) if rec.varkw else rec.call
            if claims is None:
                result = func(*args, **kwargs) if kwargs else func(*args)
            else:
                try:
                    result = func(*args, **kwargs) if kwargs else func(*args)
                except BaseException:
                    claims.finish(_claim_key(call), done=False)
                    raise
            if type(result) is dict:  # the common case, without the checks' calls
                size += len(result)
                record = params  # a new dict of this call's own: extend it in place
                record |= result
                if len(record) != size:  # a key in both: bind again for the message
                    merge(rec.binder.bind(args, kwargs), result, name)  # KeyCollisionError
            else:
                record = merge(params, as_mapping(result, name), name)
            if META_KEY in record:
                raise SerializationError(f"[{META_KEY!r}] (a key memo reserves)",
                                         record[META_KEY], name)
            try:
                rec.write(record, call)
            except SerializationError as exc:
                if claims is not None:
                    claims.finish(_claim_key(call), done=False)
                raise exc.with_function(name) from None
            except BaseException:
                if claims is not None:
                    claims.finish(_claim_key(call), done=False)
                raise
            if claims is not None:
                claims.finish(_claim_key(call), done=record.get("status") != "error")
            return result

        wrapper.memo_recorder = rec  # type: ignore[attr-defined]
        wrapper.memo_sink = sink  # type: ignore[attr-defined]
        wrapper.flush = rec.flush  # type: ignore[attr-defined]
        wrapper.close = rec.close  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate

"""Sinks: where finished records go, and how to write your own.

A sink is any object with these members (:class:`Sink` spells them out as a
:class:`typing.Protocol`; nothing needs to inherit from it):

``write(record, call)``
    Store one finished record (a new ``dict`` of the call's own). ``call`` is the
    :class:`Call`: ``call.function`` (``module.qualname``), ``call.version`` (code
    fingerprint or the user's ``version=``), ``call.arguments`` (which keys of the
    record are arguments; ``call.outputs(record)`` gives the rest) and ``call.meta``
    (what memo's own file sink stores under the record's ``"$memo"`` key).
    Raise to refuse a record; the decorated call then raises too.
``flush()`` and ``close()``
    Optional. Deliver what is buffered; release what the sink holds. Every
    decorated function has ``flush()`` and ``close()`` that call them, and
    :class:`memo.Runner` calls ``flush()`` at the end of each run.
``where``
    Optional, ``"worker"`` (the default) or ``"parent"``: where the sink must run
    when :class:`memo.Runner` runs calls in other processes. A ``"worker"`` sink is
    pickled to each worker and writes there (a file, an HTTP endpoint); a
    ``"parent"`` sink (a Python list, a callback into the caller's state) stays in
    the parent, and the records made in workers are sent home with each batch and
    written there, in the parent, with their ``call``.
``write_many(records, calls)``
    Optional: store several records at once, each with its call, as ``write`` would
    one by one. The Runner hands the records of a batch to a ``"parent"`` sink this
    way when it has the method (a list sink extends its list in one step).
``resume(identity)``
    Optional, for ``skip=True``: returns an index whose ``result(call)`` gives the
    stored outputs of a recorded call, or ``None`` (see :mod:`memo.resume`).

Decorate a function with your own sink through :func:`recorder`, which takes the
same ``skip``, ``include``, ``exclude`` and ``version`` options as the built-in
decorators::

    class Collect:
        where = "parent"
        def __init__(self):
            self.rows = []
        def write(self, record, call):
            self.rows.append((call.function, record))

    sink = Collect()

    @memo.sinks.recorder(sink)
    def f(x):
        return {"y": x * 2}
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..call import Call
from ..pipeline import Recorder, recorder, recorders_of

__all__ = ["Call", "Recorder", "Resumable", "Sink", "recorder", "recorders_of", "where"]


@runtime_checkable
class Sink(Protocol):
    """Where finished records go."""

    def write(self, record: dict[str, Any], call: Call) -> None: ...


@runtime_checkable
class Resumable(Protocol):
    """A sink that can tell which records it already holds (for ``skip=True``)."""

    def write(self, record: dict[str, Any], call: Call) -> None: ...

    def resume(self, identity: Any) -> Any: ...


def where(sink: Any) -> str:
    """Where ``sink`` must run under a Runner: ``"worker"`` (default) or ``"parent"``."""
    value = getattr(sink, "where", "worker")
    if value not in ("worker", "parent"):
        raise ValueError(f"{type(sink).__name__}.where is {value!r}, not 'worker' or 'parent'")
    return value

"""``memweb``: the sink that POSTs each record to an HTTP endpoint (needs ``memo[web]``).

The layers under it, each in its own module: the wire format it shares with the
collector (:mod:`memo.web.wire`: ids, bodies, what a status means), the sender and
its retry policy (:mod:`memo.web.sender`, :mod:`memo.web.retry`), the batching
thread (:mod:`memo.web.batcher`), the spool (:mod:`memo.web.spool`) and the exit
hooks (:mod:`memo.web.hooks`). :class:`WebSink` only decides where a record goes:

* to the endpoint, now (or through the batcher with ``batch=N``);
* when the endpoint cannot take it (down, overloaded, wrong token: after the
  retries), to the spool, with one warning per outage (``errors="raise"`` raises
  :class:`DeliveryError` instead, after spooling: nothing is lost). For ``recheck``
  seconds after a failure records go straight to the spool without waiting on a dead
  endpoint; the first delivery that succeeds afterwards re-sends the spool;
* when the endpoint refuses that record for good (over its body limit, say), to the
  refused file next to the spool, with a warning naming it; the records around it
  are delivered as usual.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from ..call import META_KEY
from ..pipeline import recorder
from ..record import KeyCollisionError
from ..serialize import dumps_line
from .batcher import Batcher
from .errors import DeliveryError, DeliveryWarning
from .retry import RetryPolicy
from .sender import Refused, Sender
from .spool import Spool, refused_message
from .wire import ID_KEY, new_id, spool_name, transient

__all__ = ["WebSink", "memweb"]

F = TypeVar("F", bound=Callable[..., Any])
Errors = Literal["warn", "raise"]


def _policy(retry: RetryPolicy | None, retries: int | None, backoff: float | None) -> RetryPolicy:
    if retry is not None:
        if retries is not None or backoff is not None:
            raise ValueError("memweb: give either retry=RetryPolicy(...) or retries=/backoff=, "
                             "not both")
        return retry
    return RetryPolicy(3 if retries is None else retries, 0.5 if backoff is None else backoff)


def _errors(errors: Errors | None, on_error: Errors | None, stacklevel: int = 3) -> Errors:
    if on_error is not None:
        warnings.warn("memweb(on_error=...) is now spelled errors=...", DeprecationWarning,
                      stacklevel=stacklevel)
        if errors is not None and errors != on_error:
            raise ValueError(f"memweb: errors={errors!r} and on_error={on_error!r} disagree")
        errors = on_error
    errors = "warn" if errors is None else errors
    if errors not in ("warn", "raise"):
        raise ValueError(f"memweb: errors must be 'warn' or 'raise', got {errors!r}")
    return errors


class WebSink:
    """Sends records to a URL; undeliverable ones go to a spool and are re-sent later."""

    where = "worker"  # each process sends its own records

    def __init__(self, url: str, *, token: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 retries: int | None = None, backoff: float | None = None,
                 retry: RetryPolicy | None = None, batch: int | None = None,
                 flush_interval: float = 1.0, spool: str | os.PathLike[str] | None = None,
                 recheck: float = 30.0, errors: Errors | None = None,
                 fallback: Callable[[Any], Any] | None = None,
                 on_error: Errors | None = None) -> None:
        self.errors = _errors(errors, on_error)
        if recheck < 0:
            raise ValueError(f"memweb: recheck must be >= 0 seconds, got {recheck!r}")
        policy = _policy(retry, retries, backoff)
        self.sender = Sender(url, token=token, headers=headers, timeout=timeout, retry=policy)
        self.url = url
        self.spool = Spool(spool if spool is not None else spool_name(url))
        self._settings = dict(url=url, token=token, headers=dict(headers or {}), timeout=timeout,
                              retry=policy, batch=batch, flush_interval=flush_interval,
                              spool=self.spool.path, recheck=recheck, errors=self.errors,
                              fallback=fallback)
        self.batcher = Batcher(self._deliver, batch, flush_interval) if batch is not None \
            else None
        self.recheck = recheck
        self.fallback = fallback
        self._down_until = 0.0
        self._failing = False
        self._resend_after = 0.0
        self._resend_warned = False
        self._state = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Pickled as its settings (the Runner sends sinks to workers): a copy has its own
        connections, thread and outage state, and the same spool file."""
        return (_rebuild, (self._settings,))

    @property
    def on_error(self) -> Errors:  # the old name of ``errors``
        return self.errors

    def write(self, record: dict[str, Any], call: Any = None) -> None:
        if ID_KEY in record:
            raise KeyCollisionError(
                f"the record already has the key {ID_KEY!r}, which memweb adds to every record; "
                "rename that output")
        record = dict(record)
        if call is not None:
            record[META_KEY] = call.meta  # the collector's file says who made the record
        record[ID_KEY] = new_id()
        line = dumps_line(record, self.fallback)  # a bad value raises here, before any I/O
        if self.batcher is None:
            self._deliver([line], as_list=False)
        else:
            self.batcher.put(line)

    def _deliver(self, lines: list[bytes], *, as_list: bool = True) -> None:
        """Send ``lines`` now, or keep them; raises only for ``errors='raise'``."""
        if time.monotonic() < self._down_until:
            self.spool.add(lines)
            if self.errors == "raise":
                raise DeliveryError(f"{self.url} failed moments ago; {len(lines)} record(s) "
                                    f"saved to the spool {self.spool.path}")
            return
        try:
            refused = self.sender.send(lines, as_list=as_list)
        except DeliveryError as exc:
            self.spool.add(lines)
            self._went_down(exc, len(lines))
            if self.errors == "raise":
                raise DeliveryError(f"{exc}; {len(lines)} record(s) saved to the spool "
                                    f"{self.spool.path}", exc.status) from exc
            return
        if self._failing:
            with self._state:
                self._failing = False
                self._down_until = 0.0
        if refused:
            self._refused(refused)
        if time.monotonic() >= self._resend_after and self.spool.pending():
            self.resend()

    def _refused(self, refused: Sequence[Refused]) -> None:
        self.spool.set_aside(refused)
        message = refused_message(len(refused), self.spool.refused_path, refused[0].error,
                                  self.url)
        if self.errors == "raise":
            raise DeliveryError(message, refused[0].error.status)
        warnings.warn(f"memweb: {message}", DeliveryWarning, stacklevel=5)

    def _went_down(self, exc: DeliveryError, n: int) -> None:
        with self._state:
            if transient(exc.status):
                self._down_until = time.monotonic() + self.recheck
            first, self._failing = not self._failing, True
        if first and self.errors == "warn":
            warnings.warn(
                f"memweb: {exc}; {n} record(s) saved to {self.spool.path}. Records are "
                f"spooled there until {self.url} accepts them again, then re-sent "
                f"(or run: memo resend {self.spool.path} {self.url})",
                DeliveryWarning, stacklevel=5)

    def resend(self) -> int | None:
        """Re-send the spool now; how many records were sent, ``None`` if not now.

        ``None`` when another process or thread is sending the same spool, or when the
        endpoint could not take them: the spool is then kept whole, with a warning, and
        the next automatic attempt waits ``recheck`` seconds (at least one). Records
        refused for good are set aside, with a warning, and the rest is delivered.
        """
        try:
            done = self.spool.drain(self.sender.send)
        except DeliveryError as exc:
            self._resend_after = time.monotonic() + max(self.recheck, 1.0)
            if not self._resend_warned:
                self._resend_warned = True
                warnings.warn(
                    f"memweb: re-sending the spool {self.spool.path} failed: {exc}; it is "
                    f"kept (try again with: memo resend {self.spool.path} {self.url})",
                    DeliveryWarning, stacklevel=4)
            return None
        self._resend_warned = False
        if done is None:
            return None
        if done.refused:
            warnings.warn("memweb: " + refused_message(done.refused, done.refused_path,
                                                       done.first_error, self.url),
                          DeliveryWarning, stacklevel=4)
        return done.sent

    def flush(self) -> None:
        """Send every buffered record now and wait until each is delivered or kept."""
        if self.batcher is not None:
            self.batcher.flush()

    def close(self) -> None:
        """Flush, stop the sender thread and close the connection pool."""
        try:
            if self.batcher is not None:
                self.batcher.close()
        finally:
            self.sender.close()


def _rebuild(settings: dict[str, Any]) -> WebSink:
    return WebSink(**settings)


def memweb(
    url: str,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    retries: int | None = None,
    backoff: float | None = None,
    retry: RetryPolicy | None = None,
    batch: int | None = None,
    flush_interval: float = 1.0,
    spool: str | os.PathLike[str] | None = None,
    recheck: float = 30.0,
    errors: Errors | None = None,
    fallback: Callable[[Any], Any] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    on_error: Errors | None = None,
) -> Callable[[F], F]:
    """POST each call's record as JSON to ``url`` (for example a ``memo serve`` collector).

    ``token`` is sent as ``Authorization: Bearer <token>``; ``headers`` are added to
    every request. Failed requests are retried as ``retry`` says (a
    :class:`RetryPolicy`; or ``retries`` times with exponential ``backoff`` seconds,
    3 and 0.5 by default); records that still cannot be delivered are appended to
    ``spool`` (default ``memweb-spool-<host>-<port>.jsonl`` in the current directory)
    and re-sent after the next successful delivery; a record the endpoint refuses for
    good is set aside in the spool's ``.refused.jsonl`` file. ``batch=N`` sends up to
    N records per request from a background thread; call ``.flush()`` on the
    decorator or the decorated function to send what is buffered. ``errors="raise"``
    raises :class:`DeliveryError` (after keeping the record) instead of warning
    (``on_error=`` is its old, deprecated name).
    """
    sink = WebSink(url, token=token, headers=headers, timeout=timeout, retries=retries,
                   backoff=backoff, retry=retry, batch=batch, flush_interval=flush_interval,
                   spool=spool, recheck=recheck, errors=_errors(errors, on_error),
                   fallback=fallback)
    decorate = recorder(sink, include=include, exclude=exclude)
    # the decorated function has flush() and close() (the pipeline's); so has the decorator,
    # for a sink shared by several functions
    decorate.flush = sink.flush  # type: ignore[attr-defined]
    decorate.close = sink.close  # type: ignore[attr-defined]
    decorate.memo_sink = sink  # type: ignore[attr-defined]
    return decorate

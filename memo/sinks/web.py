"""``memweb``: records POSTed as JSON to an HTTP endpoint (needs ``memo[web]``).

Each record gets an id under the key ``_memo_id`` (32 hex digits: a random
per-process prefix and a counter) before it is
serialized, and keeps it wherever it goes: in the request, in the spool, and in
the file ``memo serve`` writes. A collector keeps the first copy of an id, so a
record sent twice (a retry that races a slow success, a spool re-sent after a
success that was never acknowledged) is stored once.

Delivery: a POST with a timeout, retried with exponential backoff (and jitter) on
connection errors, timeouts, 5xx and 429 (honouring ``Retry-After``). A record that
still is not delivered goes to the spool (:class:`memo.spool.Spool`), a local memo
file, and the sweep goes on with a warning; ``on_error="raise"`` raises
:class:`DeliveryError` instead (after spooling, so nothing is lost). For
``recheck`` seconds after a failure, records go straight to the spool without
waiting on a dead endpoint; the first delivery that succeeds afterwards re-sends
the spool. ``memo resend SPOOL URL`` re-sends it by hand.

With ``batch=N`` a background thread sends up to N records per request, at the
latest ``flush_interval`` seconds after a record was handed over; ``flush()`` sends
everything now and waits, and the buffer is flushed at interpreter exit, when a
``multiprocessing`` worker exits, and on ``SIGTERM`` (``Pool.terminate``, ``scancel``)
when no other ``SIGTERM`` handler is installed.
"""

from __future__ import annotations

import atexit
import itertools
import os
import random
import re
import signal
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from ..pipeline import recorder
from ..record import KeyCollisionError
from ..serialize import dumps_line
from ..spool import Spool

__all__ = ["ID_KEY", "DeliveryError", "DeliveryWarning", "Sender", "WebSink", "memweb"]

F = TypeVar("F", bound=Callable[..., Any])

ID_KEY = "_memo_id"
"""The key under which each record carries its id."""

_RETRY_AFTER_CAP = 60.0


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ImportError("memweb needs httpx: pip install 'memo[web]'") from None
    return httpx


_ids: list[Any] = [-1, "", None]  # pid, this process's random prefix, counter


def new_id() -> str:
    """A fresh record id, 32 hex digits: 64 random bits drawn once per process + a counter.

    Unique across processes and runs without a system call per record; not drawn from
    the ``random`` module, which sweeps often seed identically in every worker.
    """
    pid = os.getpid()
    if _ids[0] != pid:
        _ids[:] = [pid, os.urandom(8).hex(), itertools.count()]
    return f"{_ids[1]}{next(_ids[2]):016x}"


def default_spool(url: str) -> str:
    """``memweb-spool-<host>-<port>[-<path>].jsonl`` in the current directory."""
    u = _httpx().URL(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{u.host}-{port}-{u.path}").strip("-.")
    return f"memweb-spool-{slug}.jsonl"


class DeliveryError(OSError):
    """Records could not be delivered to the endpoint."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeliveryWarning(UserWarning):
    """memweb could not deliver records and saved them to its spool."""


class Sender:
    """POSTs JSON bodies to one URL, retrying with backoff what may succeed later.

    It talks to an ``httpx.HTTPTransport`` (httpx's connection pool) directly rather
    than through ``httpx.Client``: one record per request, the client's cookie, auth
    and redirect machinery cost more CPU than the request itself. Proxies come from
    the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), as
    ``urllib`` reads them; redirects are not followed.
    """

    def __init__(self, url: str, *, token: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.5) -> None:
        httpx = _httpx()
        self._httpx = httpx
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"memweb needs an http:// or https:// URL, got {url!r}")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must be >= 0 and timeout > 0")
        self.url = url
        self._url = parsed
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": "memo-memweb"}
        self.headers.update(headers or {})
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._transport: Any = None
        self._pid = -1
        self._lock = threading.Lock()

    def _get_transport(self) -> Any:
        if self._pid != os.getpid():  # never share a parent's pooled connections after fork
            with self._lock:
                if self._pid != os.getpid():
                    transport = self._httpx.HTTPTransport(proxy=_env_proxy(self._url))
                    weakref.finalize(self, _close_in, transport, os.getpid())
                    self._transport, self._pid = transport, os.getpid()
        return self._transport

    def _request(self, body: bytes) -> tuple[int, bytes, str | None]:
        request = self._httpx.Request("POST", self._url, content=body, headers=self.headers,
                                      extensions=self._extensions)
        response = self._get_transport().handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        return response.status_code, content, response.headers.get("retry-after")

    def post(self, body: bytes) -> None:
        """POST ``body``; :class:`DeliveryError` (with ``status``) when it cannot be delivered."""
        httpx = self._httpx
        attempt = 0
        while True:
            retry_after = 0.0
            try:
                status, content, retry_header = self._request(body)
            except httpx.TransportError as exc:
                error = DeliveryError(f"could not reach {self.url}: "
                                      f"{type(exc).__name__}: {exc}".rstrip(": "))
            else:
                if status < 300:
                    return
                detail = content.decode("utf-8", "replace").strip()[:200]
                error = DeliveryError(f"{self.url} answered HTTP {status}"
                                      + (f": {detail}" if detail else ""), status)
                if status != 429 and status < 500:
                    raise error  # the request itself is refused: sending it again cannot help
                retry_after = _seconds(retry_header)
            if attempt >= self.retries:
                raise error
            delay = self.backoff * 2 ** attempt * random.uniform(0.5, 1.5)
            time.sleep(min(max(delay, retry_after), _RETRY_AFTER_CAP))
            attempt += 1

    def post_lines(self, lines: Sequence[bytes], *, as_list: bool = True) -> None:
        """POST serialized records: one object, or a JSON list (split in two on HTTP 413)."""
        if not as_list and len(lines) == 1:
            self.post(lines[0].rstrip(b"\n"))
            return
        body = b"[" + b",".join(line.rstrip(b"\n") for line in lines) + b"]"
        try:
            self.post(body)
        except DeliveryError as exc:
            if exc.status != 413 or len(lines) < 2:
                raise
            half = len(lines) // 2
            self.post_lines(lines[:half])
            self.post_lines(lines[half:])

    def post_records(self, records: Sequence[dict[str, Any]]) -> None:
        """POST records (dicts) as one batch."""
        self.post_lines([dumps_line(r) for r in records])

    def close(self) -> None:
        with self._lock:
            if self._transport is not None and self._pid == os.getpid():
                self._transport.close()
            self._transport, self._pid = None, -1


def _close_in(transport: Any, pid: int) -> None:
    if os.getpid() == pid:  # a forked child must not close its parent's connections
        transport.close()


def _env_proxy(url: Any) -> str | None:
    """The proxy the environment sets for ``url`` (an ``httpx.URL``), if any."""
    import urllib.request

    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff


class WebSink:
    """Sends records to a URL; undeliverable ones go to a spool and are re-sent later."""

    def __init__(self, url: str, *, token: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.5, batch: int | None = None,
                 flush_interval: float = 1.0, spool: str | os.PathLike[str] | None = None,
                 recheck: float = 30.0, on_error: Literal["warn", "raise"] = "warn",
                 fallback: Callable[[Any], Any] | None = None) -> None:
        if on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise ValueError(f"batch must be a positive number of records, got {batch!r}")
        if flush_interval <= 0 or recheck < 0:
            raise ValueError("flush_interval must be > 0 and recheck >= 0")
        self.sender = Sender(url, token=token, headers=headers, timeout=timeout,
                             retries=retries, backoff=backoff)
        self.url = url
        self.spool = Spool(spool if spool is not None else default_spool(url))
        self.batch = batch
        self.flush_interval = flush_interval
        self.recheck = recheck
        self.on_error = on_error
        self.fallback = fallback
        self._down_until = 0.0
        self._failing = False
        self._resend_after = 0.0
        self._resend_warned = False
        self._state = threading.Lock()
        self._error: BaseException | None = None  # from the sender thread, raised on next call
        self._reset_batching()
        self._pid = os.getpid()

    # -- one record -------------------------------------------------------------------------

    where = "worker"

    def write(self, record: dict[str, Any], call: Any = None) -> None:
        if ID_KEY in record:
            raise KeyCollisionError(
                f"the record already has the key {ID_KEY!r}, which memweb adds to every record; "
                "rename that output")
        record = dict(record)
        if call is not None:
            record["$memo"] = call.meta
        record[ID_KEY] = new_id()
        line = dumps_line(record, self.fallback)  # a bad value raises here, before any I/O
        if self.batch is None:
            self._deliver([line], as_list=False)
        else:
            self._enqueue(line)

    def _deliver(self, lines: list[bytes], *, as_list: bool) -> None:
        """Send ``lines`` now, or spool them; raises only for ``on_error='raise'``."""
        if time.monotonic() < self._down_until:
            self.spool.add(lines)
            if self.on_error == "raise":
                raise DeliveryError(f"{self.url} failed moments ago; {len(lines)} record(s) "
                                    f"saved to the spool {self.spool.path}")
            return
        try:
            self.sender.post_lines(lines, as_list=as_list)
        except DeliveryError as exc:
            self.spool.add(lines)
            self._went_down(exc, len(lines))
            if self.on_error == "raise":
                raise DeliveryError(f"{exc}; {len(lines)} record(s) saved to the spool "
                                    f"{self.spool.path}", exc.status) from exc
            return
        if self._failing:
            with self._state:
                self._failing = False
                self._down_until = 0.0
        if time.monotonic() >= self._resend_after and self.spool.pending():
            self.resend()

    def _went_down(self, exc: DeliveryError, n: int) -> None:
        with self._state:
            transient = exc.status is None or exc.status == 429 or exc.status >= 500
            if transient:
                self._down_until = time.monotonic() + self.recheck
            first, self._failing = not self._failing, True
        if first and self.on_error == "warn":
            warnings.warn(
                f"memweb: {exc}; {n} record(s) saved to {self.spool.path}. Records are "
                f"spooled there until {self.url} accepts them again, then re-sent "
                f"(or run: memo resend {self.spool.path} {self.url})",
                DeliveryWarning, stacklevel=5)

    def resend(self) -> int | None:
        """Re-send the spool now; how many records were sent, ``None`` if not now.

        ``None`` when another process or thread is sending the same spool, or when
        sending failed: the spool is then kept whole, with a warning, and the next
        automatic attempt waits ``recheck`` seconds (at least one), so a record the
        endpoint refuses for good (too large, say) does not make every success resend.
        """
        try:
            sent = self.spool.drain(self.sender.post_records)
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
        return sent

    # -- batching ---------------------------------------------------------------------------

    def _reset_batching(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._buffer: list[bytes] = []
        self._sending = 0
        self._flushing = 0
        self._first_at = 0.0  # when the oldest buffered record was handed over
        self._thread: threading.Thread | None = None

    def _enqueue(self, line: bytes) -> None:
        if self._pid != os.getpid():  # a forked child: the parent sends what it buffered
            self._pid = os.getpid()
            self._reset_batching()
        self._raise_pending()
        with self._cond:
            if self._thread is None:
                self._start_thread()
            if not self._buffer:
                self._first_at = time.monotonic()
            self._buffer.append(line)
            if len(self._buffer) >= self.batch:  # type: ignore[operator]
                self._cond.notify_all()

    def _start_thread(self) -> None:
        ref = weakref.ref(self)
        self._thread = threading.Thread(target=_run_sender, args=(ref, self._cond),
                                        name="memweb-sender", daemon=True)
        self._thread.start()
        _at_exit(ref)

    def _next_batch(self) -> list[bytes] | None:
        """Wait for a batch to send (called by the sender thread with the condition held)."""
        cond, size = self._cond, self.batch or 1
        if self._thread is not threading.current_thread():
            return None  # closed, or a new thread took over
        if not self._buffer:
            cond.wait(self.flush_interval)
            if not self._buffer:
                return []  # nothing yet: the loop checks that the sink is still in use
        end = self._first_at + self.flush_interval
        while len(self._buffer) < size and not self._flushing:
            left = end - time.monotonic()
            if left <= 0:
                break
            cond.wait(left)
        lines = self._buffer[:size]
        del self._buffer[:size]
        self._first_at = time.monotonic()  # what is left waits at most another interval
        self._sending += len(lines)
        return lines

    def _send_batch(self, lines: list[bytes]) -> None:
        try:
            self._deliver(lines, as_list=True)
        except BaseException as exc:  # kept for the caller: a thread has no one to raise to
            self._error = exc
        finally:
            with self._cond:
                self._sending -= len(lines)
                self._cond.notify_all()

    def flush(self) -> None:
        """Send every buffered record now and wait until each is delivered or spooled."""
        if self.batch is not None and self._pid == os.getpid():
            with self._cond:
                self._flushing += 1
                self._cond.notify_all()
                try:
                    while self._buffer or self._sending:
                        if self._thread is None or not self._thread.is_alive():
                            lines, self._buffer = self._buffer, []
                            if lines:
                                self._sending += len(lines)
                                self._send_batch(lines)
                            break
                        self._cond.wait(0.1)
                finally:
                    self._flushing -= 1
        self._raise_pending()

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Flush, stop the sender thread and close the connection pool."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._thread = None
                self._cond.notify_all()
            self.sender.close()


def _run_sender(ref: weakref.ref[WebSink], cond: threading.Condition) -> None:
    while True:
        sink = ref()
        if sink is None or sink._cond is not cond:
            return
        with cond:
            lines = sink._next_batch()
        if lines is None:
            return
        if lines:
            sink._send_batch(lines)
        del sink


_sinks: list[weakref.ref[WebSink]] = []
_hooked_pid = -1


def _flush_all() -> None:
    for ref in list(_sinks):
        sink = ref()
        if sink is not None and sink._pid == os.getpid():
            try:
                sink.flush()
            except Exception as exc:  # at exit there is no caller left to raise to
                warnings.warn(f"memweb: {exc}", DeliveryWarning, stacklevel=1)


def _on_sigterm(signum: int, frame: Any) -> None:
    _flush_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _at_exit(ref: weakref.ref[WebSink]) -> None:
    """Flush ``ref`` when this process ends: atexit, multiprocessing workers, SIGTERM."""
    global _hooked_pid
    pid = os.getpid()
    if _hooked_pid != pid:
        _sinks.clear()  # inherited from a parent: its sinks are the parent's to flush
        _hooked_pid = pid
        atexit.register(_flush_all)
        from multiprocessing import util
        util.Finalize(None, _flush_all, exitpriority=100)  # workers skip atexit
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    _sinks.append(ref)


def memweb(
    url: str,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 0.5,
    batch: int | None = None,
    flush_interval: float = 1.0,
    spool: str | os.PathLike[str] | None = None,
    recheck: float = 30.0,
    on_error: Literal["warn", "raise"] = "warn",
    fallback: Callable[[Any], Any] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """POST each call's record as JSON to ``url`` (for example a ``memo serve`` collector).

    ``token`` is sent as ``Authorization: Bearer <token>``; ``headers`` are added to
    every request. Failed requests are retried ``retries`` times with exponential
    ``backoff`` (seconds); records that still cannot be delivered are appended to
    ``spool`` (default ``memweb-spool-<host>-<port>.jsonl`` in the current directory)
    and re-sent after the next successful delivery. ``batch=N`` sends up to
    N records per request from a background thread; call ``.flush()`` on the
    decorator or the decorated function to send what is buffered.
    """
    sink = WebSink(url, token=token, headers=headers, timeout=timeout, retries=retries,
                   backoff=backoff, batch=batch, flush_interval=flush_interval, spool=spool,
                   recheck=recheck, on_error=on_error, fallback=fallback)
    decorate = recorder(sink, include=include, exclude=exclude)

    def apply(func: F) -> F:
        wrapper = decorate(func)
        wrapper.flush = sink.flush  # type: ignore[attr-defined]
        return wrapper

    apply.flush = sink.flush  # type: ignore[attr-defined]
    apply.memo_sink = sink  # type: ignore[attr-defined]
    return apply

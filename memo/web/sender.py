"""Sending bodies to one URL: ``httpx``'s connection pool, under a :class:`RetryPolicy`.

:class:`Sender` talks to an ``httpx.HTTPTransport`` directly rather than through
``httpx.Client``: one record per request, the client's cookie, auth and redirect
machinery cost more CPU than the request itself. Proxies come from the environment
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), as ``urllib`` reads
them; redirects are not followed. A forked child never uses its parent's pooled
connections: it opens its own on first use.

:meth:`Sender.send` delivers serialized records and reports, instead of raising,
the ones the endpoint refuses for good (:func:`memo.web.wire.refuses_record`): a
batch refused that way is split in halves until the refused records are alone, so
the others get through. It raises :class:`DeliveryError` only when the endpoint
itself cannot take records now (down, overloaded, wrong token or address).
"""

from __future__ import annotations

import os
import threading
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .._util import missing
from .errors import DeliveryError
from .retry import RetryPolicy
from .wire import encode, refuses_record

__all__ = ["Refused", "Sender", "httpx_module"]


def httpx_module() -> Any:
    """httpx, or the error that names the install."""
    try:
        import httpx
    except ImportError:
        raise missing("memweb", "httpx", "web") from None
    return httpx


class Refused(NamedTuple):
    """A serialized record the endpoint refused for good, and the error it answered."""

    line: bytes
    error: DeliveryError


class Sender:
    """POSTs JSON bodies to ``url``, retrying under ``retry`` what may succeed later."""

    def __init__(self, url: str, *, token: str | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 retry: RetryPolicy | None = None) -> None:
        httpx = httpx_module()
        self._httpx = httpx
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"memweb needs an http:// or https:// URL, got {url!r}")
        if timeout <= 0:
            raise ValueError(f"memweb: timeout must be > 0 seconds, got {timeout!r}")
        self.url = url
        self._url = parsed
        self.retry = retry if retry is not None else RetryPolicy()
        self.retry.retrying  # noqa: B018 - a missing tenacity is reported now, not at a failure
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

    def _attempt(self, body: bytes) -> None:
        """One POST; :class:`DeliveryError` (with ``status``) for anything but a 2xx."""
        request = self._httpx.Request("POST", self._url, content=body, headers=self.headers,
                                      extensions=self._extensions)
        try:
            response = self._get_transport().handle_request(request)
            try:
                content = response.read()
            finally:
                response.close()
        except self._httpx.TransportError as exc:
            raise DeliveryError(f"could not reach {self.url}: "
                                f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        status = response.status_code
        if status < 300:
            return
        detail = content.decode("utf-8", "replace").strip()[:200]
        message = f"{self.url} answered HTTP {status}" + (f": {detail}" if detail else "")
        raise DeliveryError(message, status, _seconds(response.headers.get("retry-after")))

    def post(self, body: bytes) -> None:
        """POST ``body`` under the retry policy; :class:`DeliveryError` when it is not taken."""
        self.retry.call(self._attempt, body)

    def send(self, lines: Sequence[bytes], *, as_list: bool = True) -> list[Refused]:
        """POST serialized records; the ones refused for good, each with its error.

        ``as_list=False`` sends a single record as an object rather than a list of one.
        """
        refused: list[Refused] = []
        self._send(lines, as_list, refused)
        return refused

    def _send(self, lines: Sequence[bytes], as_list: bool, refused: list[Refused]) -> None:
        try:
            self.post(encode(lines, as_list=as_list))
        except DeliveryError as exc:
            if not refuses_record(exc.status):
                raise
            if len(lines) == 1:
                refused.append(Refused(lines[0], exc))
                return
            half = len(lines) // 2  # find the refused records; the others are delivered
            self._send(lines[:half], True, refused)
            self._send(lines[half:], True, refused)

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
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff

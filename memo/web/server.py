"""``memo serve``: the HTTP collector that appends the records ``memweb`` POSTs to a memo file.

``POST`` (any path) takes one record or a batch (:mod:`memo.web.wire`); the
:class:`~memo.web.collector.Collector` appends them. The answer
(``200 {"written": n, "duplicates": d}``) is sent only after the write returned, so
an acknowledged record is in the file (and, with ``--durable``, on disk: ``fsync``
before the answer). Refused requests write nothing: ``401`` without the
``Authorization: Bearer`` header matching the token, ``413`` for a body over
``--max-body`` bytes, ``400`` for a body that is not records, ``408`` for a body
that does not arrive within ``--body-timeout``. ``GET`` answers counts (and the
file's name, never its absolute path).

Exposure. Without a token anyone who reaches the port can append records, so the
server binds to loopback by default, refuses an empty token (``--token ""``, or
``MEMO_TOKEN`` set but empty, which would otherwise mean "no authentication"
silently), and binds a non-loopback address without a token only with
``--insecure-no-token``, and then with a warning.

Connections. A connection that has not sent a whole request head within
``--idle-timeout`` seconds of opening (or of its last answer) is closed, and at
most ``--max-connections`` are kept (fewer when the process's open-file limit is
lower, which the server first raises as far as it may): when a new connection
would exceed that, the oldest connection not in the middle of a request is closed.
So half-open or slow connections (a client that died, a slowloris) cannot starve
real clients, whose requests arrive at once.

The server is one asyncio process (uvicorn, with uvloop and httptools when they are
installed); appends are done in the event loop, so checking and recording an id is
atomic without a lock. SIGINT and SIGTERM stop it gracefully: it stops accepting
connections, lets requests in progress finish (each one's write completes before
its answer), then exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from .._util import missing
from ..cli import add_server_options, number
from ..writer import WriteError
from .collector import Collector
from .errors import BadRequest, ServeError

__all__ = ["DEFAULT_MAX_BODY", "check_settings", "make_app", "register", "serve"]

DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 1000
_FD_RESERVE = 64  # descriptors kept free for the file, the listener, the event loop


def _starlette() -> Any:
    try:
        import starlette.applications
        import starlette.requests  # noqa: F401
        import starlette.responses  # noqa: F401
        import starlette.routing  # noqa: F401
    except ImportError:
        raise missing("memo serve", "starlette", "serve") from None
    return starlette


def make_app(collector: Collector, *, token: str | None = None,
             max_body: int = DEFAULT_MAX_BODY,
             body_timeout: float = DEFAULT_BODY_TIMEOUT) -> Callable[..., Any]:
    """The ASGI application (Starlette) that feeds ``collector``."""
    starlette = _starlette()
    Response = starlette.responses.Response
    expected = f"Bearer {token}".encode() if token is not None else None
    too_big = {"error": f"the body is over the limit of {max_body} bytes"}

    def answer(status: int, payload: dict[str, Any], **headers: str) -> Any:
        return Response(msgspec.json.encode(payload), status, headers=headers or None,
                        media_type="application/json")

    async def read(request: Any) -> bytes | None:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def endpoint(request: Any) -> Any:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return answer(401, {"error": "missing or wrong bearer token"},
                              **{"WWW-Authenticate": "Bearer"})
        if request.method == "GET":
            return answer(200, {"file": os.path.basename(collector.path),
                                "written": collector.written,
                                "duplicates": collector.duplicates, "ids": len(collector.seen)})
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return answer(413, too_big) if length.isdigit() else \
                answer(400, {"error": "bad Content-Length"})
        try:
            body = await asyncio.wait_for(read(request), body_timeout)
        except asyncio.TimeoutError:
            return answer(408, {"error": f"the body did not arrive within {body_timeout} s"},
                          Connection="close")
        if body is None:
            return answer(413, too_big)
        try:
            written, duplicates = collector.ingest(body)
        except BadRequest as exc:
            return answer(400, {"error": str(exc)})
        except WriteError as exc:
            return answer(500, {"error": str(exc)})
        return answer(200, {"written": written, "duplicates": duplicates})

    routing = starlette.routing
    return starlette.applications.Starlette(
        routes=[routing.Route("/{path:path}", endpoint, methods=["GET", "POST"])])


def guarded_protocol(base: type, idle_timeout: float, limit: int) -> type:
    """``base`` (a uvicorn HTTP protocol) with an idle timeout and a bound on connections."""
    live: dict[Any, None] = {}  # every open connection, oldest first

    def idle(conn: Any) -> bool:
        cycle = conn.cycle
        return cycle is None or cycle.response_complete

    class Guarded(base):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            live[self] = None
            self._memo_timer = self.loop.call_later(idle_timeout, self._memo_check, None)
            if len(live) > limit:
                for conn in live:  # close the oldest connection that is between requests
                    if conn is not self and idle(conn) and not conn.transport.is_closing():
                        conn.transport.close()
                        break

        def connection_lost(self, exc: Exception | None) -> None:
            live.pop(self, None)
            self._memo_timer.cancel()
            super().connection_lost(exc)

        def _memo_check(self, armed: Any) -> None:
            """Close the connection if no request started since ``armed`` and none is running."""
            if self.transport.is_closing():
                return
            if idle(self) and self.cycle is armed:
                self.transport.close()
                return
            self._memo_timer = self.loop.call_later(idle_timeout, self._memo_check, self.cycle)

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback
                               for info in infos)


def check_settings(*, host: str, port: int, token: str | None, max_body: int,
                   idle_timeout: float, body_timeout: float, max_connections: int,
                   insecure_no_token: bool) -> list[str]:
    """:class:`ServeError` for settings the server refuses; the warnings it must print."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServeError(f"port must be 0 to 65535 (0: any free port), got {port!r}")
    if not isinstance(max_body, int) or max_body < 1:
        raise ServeError(f"max_body must be at least 1 byte, got {max_body!r}")
    if not idle_timeout > 0 or not body_timeout > 0:
        raise ServeError("idle_timeout and body_timeout must be > 0 seconds, got "
                         f"{idle_timeout!r} and {body_timeout!r}")
    if not isinstance(max_connections, int) or max_connections < 1:
        raise ServeError(f"max_connections must be >= 1, got {max_connections!r}")
    if token is not None and not token.strip():
        raise ServeError("the token is empty (--token '' or MEMO_TOKEN=''); an "
                         "empty token would turn authentication off. Give a token, or unset "
                         "MEMO_TOKEN and leave --token out to run without one")
    if token is None and not is_loopback(host):
        if not insecure_no_token:
            raise ServeError(
                f"{host} is not a loopback address and no token is set, so anyone "
                "who reaches the port could append records. Give --token (or MEMO_TOKEN), "
                "or pass --insecure-no-token if that is really what you want")
        return [f"memo serve: WARNING: listening on {host} without a token: anyone who reaches "
                "this port can append records to the file"]
    return []


def _connection_limit(wanted: int) -> int:
    """``wanted``, lowered to fit the open-file limit (raised to its hard maximum first)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - _FD_RESERVE))


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(2048)
    return sock


def serve(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, max_body: int = DEFAULT_MAX_BODY, durable: bool = False,
          idle_timeout: float = DEFAULT_IDLE_TIMEOUT, body_timeout: float = DEFAULT_BODY_TIMEOUT,
          max_connections: int = DEFAULT_MAX_CONNECTIONS,
          insecure_no_token: bool = False, view: bool = False) -> int:
    """Run the collector until SIGINT or SIGTERM; returns the exit status.

    ``view=True`` also serves ``memo view``'s live page of the same file under
    ``/view/``, behind the same token."""
    warnings = check_settings(host=host, port=port, token=token, max_body=max_body,
                              idle_timeout=idle_timeout, body_timeout=body_timeout,
                              max_connections=max_connections,
                              insecure_no_token=insecure_no_token)
    try:
        import uvicorn
        from uvicorn.protocols.http.auto import AutoHTTPProtocol
    except ImportError:
        raise missing("memo serve", "uvicorn", "serve") from None
    collector = Collector(path, durable=durable)
    app = make_app(collector, token=token, max_body=max_body, body_timeout=body_timeout)
    if view:  # memo view's page of the same file, under /view/
        from ..view import beside

        app = beside(app, collector.path, token=token)
    sock = _listen(host, port)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    limit = _connection_limit(max_connections)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=10, server_header=False,
                            timeout_keep_alive=max(1, int(idle_timeout)),
                            http=guarded_protocol(AutoHTTPProtocol, idle_timeout, limit))
    server = uvicorn.Server(config)

    def stop(signum: int, frame: Any) -> None:
        # before uvicorn takes the signals over (or when it re-raises one after shutting
        # down): ask it to stop, quietly, instead of dying mid-startup or with a traceback
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    for text in warnings:
        print(text, file=sys.stderr, flush=True)
    print(f"memo serve: listening on http://{shown}:{bound[1]}/ (appending to {collector.path};"
          f" {len(collector.seen)} record ids already there)", flush=True)
    if view:
        print(f"memo serve: the page: http://{shown}:{bound[1]}/view/", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        collector.close()
        sock.close()
    print(f"memo serve: stopped; {collector.written} record(s) written, "
          f"{collector.duplicates} duplicate(s) dropped", flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    # the errors (refused settings, a missing package, a port in use, a file that cannot
    # be written) are one line and status 2, by memo.cli.main
    return serve(args.path, host=args.host, port=args.port, token=args.token,
                 max_body=args.max_body, durable=args.durable,
                 idle_timeout=args.idle_timeout, body_timeout=args.body_timeout,
                 max_connections=args.max_connections,
                 insecure_no_token=args.insecure_no_token, view=args.view)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "serve", help="collect records POSTed by memweb into a memo file",
        description="Receive records POSTed by memweb (one JSON object, or a list of them, "
                    "per request) and append them to PATH, each record id once.")
    p.add_argument("path", help="the memo JSONL file to append to")
    add_server_options(p, port=8000, token="'Authorization: Bearer TOKEN'",
                       exposed="append records")
    p.add_argument("--max-body", type=number(int, 1, None, "a number of bytes >= 1"),
                   default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help=f"largest request body accepted (default {DEFAULT_MAX_BODY})")
    p.add_argument("--durable", action="store_true",
                   help="fsync each request's records before answering (survives a power cut)")
    p.add_argument("--idle-timeout", type=number(float, 0.001, None, "seconds > 0"),
                   default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                   help="close a connection that sends no whole request head within this "
                        f"time (default {DEFAULT_IDLE_TIMEOUT:g})")
    p.add_argument("--body-timeout", type=number(float, 0.001, None, "seconds > 0"),
                   default=DEFAULT_BODY_TIMEOUT, metavar="SECONDS",
                   help=f"answer 408 to a body slower than this (default {DEFAULT_BODY_TIMEOUT:g})")
    p.add_argument("--max-connections", type=number(int, 1, None, "a number >= 1"),
                   default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                   help="connections kept open at most; beyond, the oldest idle one is closed "
                        f"(default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--view", action="store_true",
                   help="also serve memo view's live page of PATH at /view/ (the same token)")
    p.set_defaults(handler=main)
    return p

"""``memo serve``: a collector that appends the records ``memweb`` POSTs to a memo file.

``POST`` (any path) takes one record, a JSON object, or a batch, a JSON list of
objects. The body is decoded as JSON and nothing else (msgspec's strict decoder:
no ``NaN`` literals, integers of any size kept exact), every record is serialized
again through :mod:`memo.serialize`, and the whole request is appended in one
write with :class:`~memo.writer.AppendWriter`, the same ``flock`` + ``O_APPEND``
every other memo writer uses, so ``memfile`` writers and ``memo serve`` can share
a file. The answer (``200 {"written": n, "duplicates": d}``) is sent only after
the write returned, so an acknowledged record is in the file (and, with
``--durable``, on disk: ``fsync`` before the answer).

Refused requests write nothing: ``401`` without the ``Authorization: Bearer``
header matching ``--token``, ``413`` for a body over ``--max-body`` bytes, ``400``
for a body that is not a JSON object or a list of objects (one bad record in a
batch refuses the batch).

De-duplication: a record's ``_memo_id`` (which memweb adds) is stored in the record,
in the same line, so the file itself says which ids it holds: at start the server
reads the ids already in PATH, and an id seen before is dropped (counted under
``duplicates``). Because id and record are written in one ``write``, no crash can
leave one without the other. The ids are only the ones this server saw, so point
one ``memo serve`` at a file (other writers may share it, but records they write
are not checked). Records without an id are always written.

The server is one asyncio process (uvicorn, with uvloop and httptools when they are
installed); appends are done in the event loop, so checking and recording an id is
atomic without a lock. SIGINT and SIGTERM stop it gracefully: it stops accepting
connections, lets requests in progress finish (each one's write completes before
its answer), then exits with status 0.
"""

from __future__ import annotations

import argparse
import hmac
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from .reader import iter_records
from .serialize import dumps_line, restore
from .sinks.web import ID_KEY
from .writer import AppendWriter, WriteError

__all__ = ["BadRequest", "Collector", "ServerProcess", "make_app", "register", "serve"]

DEFAULT_MAX_BODY = 16 * 1024 * 1024
_MAX_ID = 128
_decode = msgspec.json.Decoder().decode


class BadRequest(ValueError):
    """A request body that is not one record or a list of records."""


class Collector:
    """Turns request bodies into lines appended to ``path``, each record id once."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.writer = AppendWriter(path, durable=durable)
        self.path = self.writer.path
        self.seen: set[str] = set()
        self.written = 0
        self.duplicates = 0
        if os.path.exists(self.path):
            for record in iter_records(self.path, errors="ignore", meta=True):
                rid = record.get(ID_KEY)
                if isinstance(rid, str):
                    self.seen.add(rid)

    def ingest(self, body: bytes) -> tuple[int, int]:
        """Append the records in ``body``; ``(written, duplicates)``, or :class:`BadRequest`."""
        try:
            obj = _decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if isinstance(obj, dict):
            records = [obj]
        elif isinstance(obj, list):
            records = obj
            for i, record in enumerate(records):
                if not isinstance(record, dict):
                    raise BadRequest(f"item {i} of the batch is a JSON "
                                     f"{_json_type(record)}, not an object")
        else:
            raise BadRequest(f"the body is a JSON {_json_type(obj)}; send one record as an "
                             "object or a batch as a list of objects")
        seen, fresh, lines = self.seen, set(), []
        for record in records:
            rid = record.get(ID_KEY)
            if rid is not None:
                if not isinstance(rid, str) or not 0 < len(rid) <= _MAX_ID:
                    raise BadRequest(f"{ID_KEY} must be a string of 1 to {_MAX_ID} characters")
                if rid in seen or rid in fresh:
                    continue
                fresh.add(rid)
            lines.append(dumps_line(restore(record)))  # as memo wrote it: $nonfinite etc.
        if lines:
            self.writer.append(b"".join(lines))  # one write: all of the request or none of it
        seen |= fresh
        self.written += len(lines)
        self.duplicates += len(records) - len(lines)
        return len(lines), len(records) - len(lines)

    def close(self) -> None:
        self.writer.close()


def _json_type(obj: Any) -> str:
    names = {str: "string", int: "number", float: "number", bool: "boolean", list: "list",
             dict: "object", type(None): "null"}
    return names.get(type(obj), type(obj).__name__)


def make_app(collector: Collector, *, token: str | None = None,
             max_body: int = DEFAULT_MAX_BODY) -> Callable[..., Any]:
    """The ASGI application (Starlette) that feeds ``collector``."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route
    except ImportError:
        raise ImportError("memo serve needs starlette and uvicorn: pip install 'memo[web]'") \
            from None

    expected = f"Bearer {token}".encode() if token is not None else None

    def answer(status: int, payload: dict[str, Any], **headers: str) -> Response:
        return Response(msgspec.json.encode(payload), status, headers=headers or None,
                        media_type="application/json")

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return answer(401, {"error": "missing or wrong bearer token"},
                              **{"WWW-Authenticate": "Bearer"})
        if request.method == "GET":
            return answer(200, {"path": collector.path, "written": collector.written,
                                "duplicates": collector.duplicates, "ids": len(collector.seen)})
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return answer(413 if length.isdigit() else 400,
                          {"error": f"the body is over the limit of {max_body} bytes"
                           if length.isdigit() else "bad Content-Length"})
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return answer(413, {"error": f"the body is over the limit of {max_body} bytes"})
            chunks.append(chunk)
        try:
            written, duplicates = collector.ingest(b"".join(chunks))
        except BadRequest as exc:
            return answer(400, {"error": str(exc)})
        except WriteError as exc:
            return answer(500, {"error": str(exc)})
        return answer(200, {"written": written, "duplicates": duplicates})

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(2048)
    return sock


def serve(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, max_body: int = DEFAULT_MAX_BODY,
          durable: bool = False) -> int:
    """Run the collector until SIGINT or SIGTERM; returns the exit status."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("memo serve needs starlette and uvicorn: pip install 'memo[web]'") \
            from None
    collector = Collector(path, durable=durable)
    app = make_app(collector, token=token, max_body=max_body)
    sock = _listen(host, port)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=10, server_header=False)
    server = uvicorn.Server(config)

    def stop(signum: int, frame: Any) -> None:
        # before uvicorn takes the signals over (or when it re-raises one after shutting
        # down): ask it to stop, quietly, instead of dying mid-startup or with a traceback
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    print(f"memo serve: listening on http://{shown}:{bound[1]}/ (appending to {collector.path};"
          f" {len(collector.seen)} record ids already there)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        collector.close()
        sock.close()
    print(f"memo serve: stopped; {collector.written} record(s) written, "
          f"{collector.duplicates} duplicate(s) dropped", flush=True)
    return 0


class ServerProcess:
    """``memo serve`` running in a subprocess; a context manager that stops it on exit.

    >>> with ServerProcess("results.jsonl") as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:40123/
    """

    def __init__(self, path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, max_body: int | None = None,
                 durable: bool = False, timeout: float = 30.0) -> None:

        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        env.pop("MEMO_TOKEN", None)
        if token is not None:
            env["MEMO_TOKEN"] = token  # not on the command line, where ps shows it
        cmd = [sys.executable, "-m", "memo", "serve", os.fspath(path), "--host", host,
               "--port", str(port)]
        if max_body is not None:
            cmd += ["--max-body", str(max_body)]
        if durable:
            cmd.append("--durable")
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self._out: list[str] = []
        self._err: list[str] = []
        ready = threading.Event()
        # drain both pipes all the time: a server blocked on a full pipe would stop answering
        readers = [threading.Thread(target=_drain, args=(self.process.stdout, self._out, ready),
                                    daemon=True),
                   threading.Thread(target=_drain, args=(self.process.stderr, self._err, None),
                                    daemon=True)]
        for t in readers:
            t.start()
        self._readers = readers
        ready.wait(timeout)
        line = self._out[0] if self._out else ""
        start = line.find("http://")
        if start < 0:
            self.process.kill()
            self.process.wait()
            for t in readers:
                t.join()
            raise RuntimeError(f"memo serve did not start: {line.strip() or self.stderr.strip()}")
        self.url = line[start:].split()[0]
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    @property
    def output(self) -> str:
        """Everything the server printed so far (stdout, then stderr)."""
        return "".join(self._out) + self.stderr

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the server to finish; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # never leave a server behind
            self.process.wait()
            raise
        for t in self._readers:
            t.join(timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(stream: Any, into: list[str], first: Any) -> None:
    for line in stream:
        into.append(line)
        if first is not None:
            first.set()
    if first is not None:
        first.set()


def main(args: argparse.Namespace) -> int:
    try:
        return serve(args.path, host=args.host, port=args.port, token=args.token or None,
                     max_body=args.max_body, durable=args.durable)
    except ImportError as exc:
        print(f"memo serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"memo serve: {exc}", file=sys.stderr)
        return 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "serve", help="collect records POSTed by memweb into a memo file",
        description="Receive records POSTed by memweb (one JSON object, or a list of them, "
                    "per request) and append them to PATH, each record id once.")
    p.add_argument("path", help="the memo JSONL file to append to")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--token", default=os.environ.get("MEMO_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (default: $MEMO_TOKEN)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help=f"largest request body accepted (default {DEFAULT_MAX_BODY})")
    p.add_argument("--durable", action="store_true",
                   help="fsync each request's records before answering (survives a power cut)")
    p.set_defaults(handler=main)

"""The server of ``memo view``: the records as JSON lines, the chart's specification, the page.

Routes (all behind the token check when there is a token):

* ``GET /``: the page; ``GET /static/NAME``: its script, style and the Vega bundle.
* ``GET /api/records?gen=G&from=K``: the records after the first K, when the
  page's copy is of generation G; a new generation (the file was replaced or
  cut) starts again from record 0. With the sweep's status.
* ``GET /api/spec?x=&y=&color=&facet=&raw=&width=&height=``: the Vega-Lite
  specification of the chart (:func:`memo.plot.chart_spec`) whose data, the
  named dataset ``records``, the page fills with the rows its filters keep.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any, cast

import msgspec

from .. import serialize
from .._util import missing
from ..exceptions import MemoError
from ..plot import (
    HEIGHT,
    MAX_NOMINAL_COLORS,
    META_KEY,
    WIDTH,
    auto_log,
    chart_spec,
    field_kind,
    vega_bundle,
)
from ..reader import Tail
from ..shardfile import sources

__all__ = ["AccessError", "Follower", "check_access", "make_app", "run"]

_decode = msgspec.json.Decoder().decode

# records sent per answer: a first load of a large file comes in a few answers
# (the page shows its progress) instead of one that holds everything
BATCH = 50_000
RELIST = 1.0  # seconds between looks for new shard files
RATE_WINDOW = 300.0  # seconds of appends the rate is measured over
STATUS_EVERY = 2.0  # seconds between two computations of the sweep's full status
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
_STATIC = ("index.html", "app.js", "app.css")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
# everything from this server; Vega compiles its expressions with Function(), hence
# 'unsafe-eval'; vega-embed and its tooltips add style elements
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class AccessError(MemoError, ValueError):
    """Token and address settings that would expose the page (or an empty token)."""


def is_loopback(host: str) -> bool:
    if host.strip("[]") in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None, insecure_no_token: bool) -> str | None:
    """Refuse what ``memo serve`` refuses; the warning to print, if any.

    An empty token is an error (it would accept the empty header); a non-loopback
    address without a token needs ``insecure_no_token`` (then the warning says so).
    """
    if token is not None and not token:
        raise AccessError("the token is empty; give a non-empty --token (or $MEMO_TOKEN), "
                          "or none at all on a loopback address")
    if token is None and not is_loopback(host):
        if not insecure_no_token:
            raise AccessError(f"--host {host} without a token lets anyone who reaches this "
                              "machine read the records; give --token (or set $MEMO_TOKEN), "
                              "or pass --insecure-no-token if that is meant")
        return (f"memo view: WARNING: serving {host} without a token; anyone who reaches "
                "this port can read the records")
    return None


class _Counts:
    """What the file alone says about the sweep (until ``memo.status`` knows more)."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.failed_by_type: dict[str, int] = {}

    def add(self, record: dict[str, Any]) -> None:
        if record.get("status") == "error":
            self.failed += 1
            kind = str(record.get("error_type") or "error")
            self.failed_by_type[kind] = self.failed_by_type.get(kind, 0) + 1
        else:
            self.done += 1


def _line(raw: bytes) -> tuple[bytes, dict[str, Any]] | None:
    """A new line as it is in the file, with its record: what the page's :class:`Tail` reads.

    The page wants the file's own JSON (non-finite floats stay tagged), so the
    records are not restored and serialized again (which costs ten times more
    than reading them); each line is still decoded once, to check that it is one
    JSON object and to learn its columns. A corrupt line is left out (memo check
    reports those).
    """
    try:
        record = _decode(raw)
    except msgspec.DecodeError:
        return None
    return (raw, record) if isinstance(record, dict) else None


class Follower:
    """The records of ``path`` (a file, with its shards if any), kept up to date by :meth:`poll`.

    ``lines[i]`` is record ``i``, its line in the file (non-finite floats are null
    there, tagged in ``$nonfinite``), and ``records[i]`` that line decoded without
    restoring the tags (enough for columns, kinds and counts). ``generation``
    grows when a file was replaced or cut, which starts the lists again. ``path``
    need not exist yet.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.generation = 0
        self.lines: list[bytes] = []
        self.records: list[dict[str, Any]] = []
        self.counts = _Counts()
        self.columns: dict[str, None] = {}
        self.parameters: dict[str, None] = {}
        self.has_meta = False
        self._tails: dict[str, Tail] = {}
        self._relist = 0.0
        self._samples: deque[tuple[float, int]] = deque()  # (time, records), for the rate

    def _restart(self) -> None:
        self.generation += 1
        self.lines, self.records = [], []
        self.counts = _Counts()
        self.columns, self.parameters, self.has_meta = {}, {}, False
        self._tails = {}
        self._relist = 0.0
        self._samples.clear()

    def _add(self, lines: list[tuple[bytes, dict[str, Any]]]) -> None:
        columns, seen = self.columns, None
        for raw, record in lines:
            self.lines.append(raw)
            self.records.append(record)
            self.counts.add(record)
            columns.update(dict.fromkeys(record))  # reserved "$" keys are left out on output
            meta = record.get(META_KEY)
            if isinstance(meta, dict) and isinstance(meta.get("a"), list) and meta["a"] != seen:
                seen = meta["a"]  # records of one function repeat it: look at it once
                self.has_meta = True
                for key in seen:
                    if isinstance(key, str):
                        self.parameters.setdefault(key, None)

    def column_names(self) -> list[str]:
        """The records' columns in order of first appearance, reserved ``$`` keys left out."""
        return [c for c in self.columns if not c.startswith("$")]

    def poll(self) -> None:
        """Read what was appended since the last call."""
        now = time.monotonic()
        if now >= self._relist:
            self._relist = now + RELIST
            try:
                names = sources(self.path)
            except FileNotFoundError:
                names = []
            for name in names:
                if name not in self._tails:
                    self._tails[name] = Tail(name, decode=_line)
        for tail in list(self._tails.values()):
            reset, records = tail.read_new()
            if reset:  # replaced or cut: every record is read again
                self._restart()
                return self.poll()
            self._add(cast(list[tuple[bytes, dict[str, Any]]], records))  # _line's
        # the count at the first look is the baseline: records that were already there
        # did not arrive at this rate
        samples = self._samples
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, len(self.lines)))
        while len(samples) > 2 and samples[1][0] < now - RATE_WINDOW:
            samples.popleft()
        return None

    def rate_per_min(self) -> float | None:
        """Records appended per minute over the last few minutes (None: watched too briefly)."""
        if not self._samples:
            return None
        start, count = self._samples[0]
        span = time.monotonic() - start
        if span < 5:
            return None
        return (len(self.lines) - count) * 60.0 / span

    def status(self) -> dict[str, Any]:
        """What the file says: record count, done, failed (per error type), rate."""
        return {"records": len(self.lines), "done": self.counts.done,
                "failed": self.counts.failed,
                "failed_by_type": dict(self.counts.failed_by_type),
                "rate_per_min": self.rate_per_min()}


class _Status:
    """The sweep's status from ``memo.status.summarize`` where it exists, else the file's counts.

    ``summarize`` reads the file (and the sweep's plan and claims), so it runs in a
    thread, at most every ``STATUS_EVERY`` seconds, and the page gets the last result.
    """

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.summary: dict[str, Any] | None = None
        self._next = 0.0
        self._busy = threading.Lock()
        from ..status import summarize

        self._summarize: Callable[[str], Any] | None = summarize

    def _refresh(self) -> None:
        try:
            assert self._summarize is not None
            summary = self._summarize(self.follower.path)
            self.summary = summary.as_dict() if hasattr(summary, "as_dict") else dict(summary)
        except Exception:  # noqa: BLE001 - a status that cannot be read now: keep the file's
            self.summary = None
        finally:
            self._busy.release()

    def get(self) -> dict[str, Any]:
        current = self.follower.status()
        now = time.monotonic()
        if self._summarize is not None and now >= self._next and self._busy.acquire(False):
            self._next = now + STATUS_EVERY
            threading.Thread(target=self._refresh, daemon=True).start()
        if self.summary:
            merged = dict(self.summary)
            merged["records"] = current["records"]
            if merged.get("rate_per_min") is None:
                merged["rate_per_min"] = current["rate_per_min"]
            return {k: _finite(v) for k, v in merged.items()}
        return current


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


# ---- the application ----------------------------------------------------------------------

def _cookie_name(token: str) -> str:
    # one name per token: pages of two servers on one host (ports share cookies) do not mix
    return "memo-view-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def make_app(path: str | os.PathLike[str], *, token: str | None = None,
             allowed_hosts: list[str] | None = None) -> Any:
    """The Starlette application of the page for ``path`` (see :func:`memo.view.app`)."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import Request
        from starlette.responses import RedirectResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise missing("memo view", "starlette", "view") from None
    try:
        import vl_convert  # noqa: F401 - the page's scripts come from it
    except ImportError:
        raise missing("memo view", "vl-convert-python", "view") from None
    if token is not None and not token:
        raise AccessError("memo.view.app: the token is empty; give a non-empty token or None")
    follower = Follower(path)
    status = _Status(follower)
    threading.Thread(target=vega_bundle, daemon=True).start()  # ready by the first page load
    expected = token.encode() if token is not None else None
    cookie = _cookie_name(token) if token is not None else ""
    hosts = {h.lower() for h in (allowed_hosts or [])}

    def refused(request: Request) -> Response | None:
        if expected is None:
            host = request.headers.get("host", "")
            name = host[1:host.find("]")] if host.startswith("[") else host.split(":")[0]
            if "*" in hosts or is_loopback(name) or name.lower() in hosts:
                return None
            return Response(f"memo view: host {host!r} is not served\n", 403,
                            media_type="text/plain")
        given = [request.headers.get("authorization", "").removeprefix("Bearer "),
                 request.cookies.get(cookie, ""), request.query_params.get("token", "")]
        if any(hmac.compare_digest(g.encode(), expected) for g in given if g):
            return None
        return Response("memo view: this page needs its token: open it once as "
                        "http://HOST:PORT/?token=TOKEN (the token memo view was given)\n", 401,
                        media_type="text/plain", headers={"WWW-Authenticate": "Bearer"})

    def json(body: bytes, status_code: int = 200) -> Response:
        return Response(body, status_code, media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    async def page(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        if expected is not None and "token" in request.query_params:
            # keep the token in a cookie and take it out of the address bar and history
            back = RedirectResponse(request.url.remove_query_params("token"), 303)
            back.set_cookie(cookie, token or "", httponly=True, samesite="strict",
                            path=request.scope.get("root_path") or "/")
            return back
        return Response(_static("index.html"), media_type=_TYPES[".html"],
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        name = request.path_params["name"]
        if name == "vega.js":
            body = await run_in_threadpool(vega_bundle)
        elif name in _STATIC:
            body = _static(name)
        else:
            return Response("not found\n", 404, media_type="text/plain")
        return Response(body, media_type=_TYPES[os.path.splitext(name)[1]],
                        headers={"Cache-Control": "no-cache"})

    async def records(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        follower.poll()
        try:
            gen = int(request.query_params.get("gen", -1))
            start = int(request.query_params.get("from", 0))
        except ValueError:
            return json(b'{"error": "gen and from must be integers"}', 400)
        if gen != follower.generation or not 0 <= start <= len(follower.lines):
            start = 0
        lines = follower.lines[start:start + BATCH]
        head = serialize.dumps({
            "path": os.path.abspath(follower.path), "gen": follower.generation, "from": start,
            "total": len(follower.lines), "columns": follower.column_names(),
            "parameters": list(follower.parameters) if follower.has_meta else None,
            "status": status.get()})
        return json(head[:-1] + b',"records":[' + b",".join(lines) + b"]}")

    async def spec(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        q = request.query_params
        x, y = q.get("x", ""), q.get("y", "")
        color, facet = q.get("color") or None, q.get("facet") or None
        known = follower.column_names()
        unknown = [c for c in (x, y, color, facet) if c is not None and c not in known]
        if unknown:
            return json(serialize.dumps({"error": f"no column {unknown[0]!r}"}), 400)
        kinds = {"x": field_kind(r.get(x) for r in follower.records)}
        if color:
            values = {repr(r.get(color)) for r in follower.records}
            kinds["color"] = field_kind(r.get(color) for r in follower.records)
            if len(values) <= MAX_NOMINAL_COLORS:
                kinds["color"] = "nominal"
        log_x = q.get("log_x")
        xs = [r.get(x) for r in follower.records if r.get(x) is not None]
        chart = chart_spec(
            x=x, y=y, color=color, facet=facet, raw=q.get("raw") == "1", kinds=kinds,
            log_x=auto_log(xs) if log_x in (None, "") else log_x == "1",
            log_y=q.get("log_y") == "1",
            width=_int(q.get("width"), WIDTH), height=_int(q.get("height"), HEIGHT))
        return json(serialize.dumps(chart))

    return Starlette(routes=[
        Route("/", page), Route("/static/{name}", static),
        Route("/api/records", records), Route("/api/spec", spec),
    ])


def _int(value: str | None, default: int) -> int:
    try:
        return max(50, min(4000, int(value or default)))
    except ValueError:
        return default


def run(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8050,
        token: str | None = None, insecure_no_token: bool = False) -> int:
    """Serve the page until SIGINT or SIGTERM (the ``memo view`` command)."""
    warning = check_access(host, token, insecure_no_token)
    try:
        import uvicorn
    except ImportError:
        raise missing("memo view", "uvicorn", "view") from None
    from ..web.server import _listen

    application = make_app(path, token=token,
                           allowed_hosts=["*"] if not is_loopback(host) else None)
    sock = _listen(host, port)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    config = uvicorn.Config(application, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5, server_header=False)
    server = uvicorn.Server(config)

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    hint = " (first visit: add ?token=TOKEN)" if token else ""
    print(f"memo view: http://{shown}:{bound[1]}/{hint} following {os.path.abspath(path)}",
          flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0

"""``memo view PATH``: a live page of a sweep in the browser, following the file.

The page shows the sweep's status (counts, rate, time left), a chart whose x, y,
color and facet are picked from the columns (drawn as :func:`memo.plot` draws it:
mean and 95% confidence band of repeated settings), a parallel-coordinates view
of every parameter against a chosen metric, where dragging along an axis selects
a range, and a sortable, filterable table of the records that the selections
keep. Records that any writer appends (memfile processes, SLURM tasks, ``memo
serve``) appear within about a second, without a reload.

How it works. :func:`app` is a Starlette application. A :class:`~memo.view.server.Follower`
reads the file with :class:`memo.reader.Tail` (and its shards, when it has any)
and keeps every record as one JSON line; the page asks for the lines after the
last one it has every half second (``/api/records``), so a poll costs one
``fstat`` when nothing changed. Filtering, sorting, paging and the chart's
aggregation run in the page, on the records it holds: the table draws one page
of rows (100 by default) whatever the number of records, the parallel
coordinates draw at most 10,000 lines (an even sample of the selected records)
on a canvas, and the chart is Vega-Lite, which aggregates before it draws. The
chart's specification comes from the server (``/api/spec``, built by
:func:`memo.plot.chart_spec`), so the page and ``memo plot`` agree. Vega,
Vega-Lite and vega-embed come from the installed vl-convert package
(``vl_convert.javascript_bundle()``, kept in ``~/.cache/memo``): the page loads
nothing from the network, and its Content-Security-Policy says so
(``default-src 'self'``).

Access, as ``memo serve``: it binds 127.0.0.1 unless told otherwise. With a
token (``--token`` or ``$MEMO_TOKEN``) every request must carry it: open the page
once as ``http://HOST:PORT/?token=TOKEN`` and it is kept in a cookie (also
accepted: ``Authorization: Bearer TOKEN``). An empty token is an error, and a
non-loopback address without a token is refused unless ``--insecure-no-token`` says it
is meant (then a warning is printed). Without a token, requests must name a
loopback host in their ``Host`` header, which stops other web sites from
reading the page through DNS rebinding.

Stable hooks for tests and tools: ``data-testid="record-count"`` (the number of
records in the file), ``"status"``, ``"chart"`` (the chart's container) and
``"records"`` (the table's ``tbody``: one ``tr`` per shown record).

Needs the ``view`` extra (starlette, uvicorn, altair, vl-convert-python).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..cli import add_server_options

__all__ = ["app", "beside", "register", "serve"]


def app(path: str | os.PathLike[str], token: str | None = None, *,
        allowed_hosts: list[str] | None = None) -> Any:
    """The page's ASGI application (Starlette) for the memo file ``path``.

    ``token``: required of every request when given (see the module's docstring).
    ``allowed_hosts``: ``Host`` header names accepted when there is no token
    (default: loopback names only; ``["*"]`` accepts any).
    """
    from .server import make_app
    return make_app(path, token=token, allowed_hosts=allowed_hosts)


def beside(other: Any, path: str | os.PathLike[str], token: str | None = None) -> Any:
    """An application that serves the page of ``path`` under ``/view/`` and ``other`` elsewhere.

    ``memo serve --view`` puts the page beside its collector this way.
    """
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Mount, Route

    async def slash(request: Any) -> Any:
        return RedirectResponse(request.url.replace(path="/view/"), 307)

    return Starlette(routes=[Route("/view", slash), Mount("/view", app(path, token=token)),
                             Mount("", other)])


def serve(path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8050,
          token: str | None = None, insecure_no_token: bool = False) -> int:
    """Serve the page until SIGINT or SIGTERM; returns the exit status."""
    from .server import run
    return run(path, host=host, port=port, token=token, insecure_no_token=insecure_no_token)


def main(args: argparse.Namespace) -> int:
    # the command's errors (a refused token or address, a missing package, a port in
    # use) are one line and status 2, by memo.cli.main
    return serve(args.path, host=args.host, port=args.port, token=args.token,
                 insecure_no_token=args.insecure_no_token)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "view", help="a live page of a sweep in the browser (status, chart, table)",
        description="Serve a page that follows PATH while it is written: the sweep's status, "
                    "a chart, parallel coordinates of the parameters against a metric, and a "
                    "sortable, filterable table of the records. Nothing is loaded from the "
                    "internet. Binds 127.0.0.1 unless --host says otherwise.")
    p.add_argument("path", help="the memo JSONL file (or shard folder) to show")
    add_server_options(p, port=8050, token="open the page once with ?token=TOKEN",
                       exposed="read the records")
    p.set_defaults(handler=main)

"""``memo plot`` and :func:`memo.plot`: a picture of a sweep, made offline.

The chart is a Vega-Lite specification. :func:`chart_spec` builds it as a plain
dict (no third-party import), :func:`plot` wraps it in an altair chart (which
renders in Jupyter), and :func:`save` renders it with vl-convert, whose wheel
carries the Vega engine: PNG, SVG and self-contained HTML with no display, no
browser and no network, as on a cluster's login node. Both need the ``plot``
extra (altair, vl-convert-python). ``memo view`` draws the same specification in
the browser, with the records it filters as data.

Aggregation. Records with the same x, color and facet (the seeds of one setting,
say) are one point: the line is their mean, the band its 95% confidence interval
from Student's t, ``mean ± t(0.975, n-1) · sd / √n`` (no band for a single
record). It is computed by Vega's own transforms inside the specification, so a
picture, the HTML page and the live page agree, and the data in a specification
are the records themselves (one row per record, only the columns plotted). The
t quantiles for n ≤ 31 are a table; above, ``1.96 + 2.4/(n-1)`` (within 0.1%).

Values that cannot be placed are left out and counted in the subtitle: a y that
is missing, null, NaN or ±inf, an x that is missing or NaN. Reserved keys
(``$memo``, ``$nonfinite``) are never columns. When records carry ``$memo``
(whose ``"a"`` lists the argument keys), the subtitle names the parameters the
mean runs over (those that vary but are not x, color or facet), so a mean over
seeds is not mistaken for a mean over settings.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._util import missing
from .call import META_KEY
from .exceptions import MemoError
from .reader import Errors, iter_records

__all__ = ["PlotError", "auto_log", "chart_spec", "columns", "field_kind", "parameters", "plot",
           "register", "save", "to_html", "vega_bundle"]

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
DATA_NAME = "records"  # the named dataset the specification reads (memo view fills it)
WIDTH, HEIGHT = 480, 300
MAX_NOMINAL_COLORS = 12  # a numeric color column with more distinct values gets a gradient
_FACET_COLUMNS = 3
# t(0.975, df) for df = 1..30: the 95% interval's half width in standard errors
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
INTERVAL = "95% confidence interval (Student's t)"

Source = str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Any


class PlotError(MemoError, ValueError):
    """A chart cannot be made from these records (a column is missing or not numeric)."""


def t975(n: int) -> float:
    """The 97.5% quantile of Student's t with ``n - 1`` degrees of freedom (n >= 2)."""
    df = n - 1
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


def _records(source: Source, errors: Errors) -> list[Mapping[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        return list(iter_records(source, errors=errors, meta=True))  # $memo: the arguments
    if hasattr(source, "to_dicts"):  # a polars DataFrame
        return list(source.to_dicts())
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return list(source.to_dict("records"))
    return list(source)


def columns(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column of ``records`` in order of first appearance, reserved ``$`` keys left out."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in seen and not key.startswith("$"):
                seen[key] = None
    return list(seen)


def parameters(records: Iterable[Mapping[str, Any]]) -> list[str] | None:
    """The argument keys the records' ``$memo`` lists (in order), or None when none has it."""
    seen: dict[str, None] = {}
    found = False
    for record in records:
        meta = record.get(META_KEY)
        if isinstance(meta, Mapping) and isinstance(meta.get("a"), list):
            found = True
            for key in meta["a"]:
                if isinstance(key, str):
                    seen.setdefault(key, None)
    return list(seen) if found else None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def field_kind(values: Iterable[Any]) -> str:
    """``"quantitative"`` when every present value is a number, ``"nominal"`` otherwise."""
    present = [v for v in values if v is not None]
    if present and all(_is_number(v) for v in present):
        return "quantitative"
    return "nominal"


def _scalar(v: Any) -> Any:
    """A value as Vega can group and show it: lists and objects become their JSON text."""
    if isinstance(v, (list, dict)):
        from .serialize import dumps
        return dumps(v).decode()
    return v


def _channel(field: str, kind: str, title: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "type": kind, "title": title, **extra}


def chart_spec(*, x: str, y: str, color: str | None = None, facet: str | None = None,
               raw: bool = False, kinds: Mapping[str, str] | None = None,
               values: list[dict[str, Any]] | None = None, subtitle: str | Sequence[str] = "",
               log_x: bool = False, log_y: bool = False, title: str | None = None,
               width: int = WIDTH, height: int = HEIGHT) -> dict[str, Any]:
    """The Vega-Lite specification of a chart of ``y`` against ``x``.

    Its data are rows ``{"x", "y", "color", "facet"}``, one per record (the
    columns' own names are only titles, so any column name works): ``values``
    inline, or, when ``values`` is None, the named dataset ``"records"`` that
    the caller provides (``memo view`` does, with the rows its filters keep).
    ``kinds`` maps ``"x"`` and ``"color"`` to a Vega-Lite type (default:
    quantitative x, nominal color). ``log_x``/``log_y``: logarithmic axes;
    ``title`` replaces the default "Y by X".
    """
    kinds = dict(kinds or {})
    xkind = kinds.get("x", "quantitative")
    ckind = kinds.get("color", "nominal")
    groups = ["x"] + (["color"] if color else []) + (["facet"] if facet else [])
    t_table = "[" + ",".join(str(t) for t in _T975) + "]"
    half = (f"datum.n > 1 ? datum.sd / sqrt(datum.n) * (datum.n <= {len(_T975) + 1} ? "
            f"{t_table}[datum.n - 2] : 1.96 + 2.4 / (datum.n - 1)) : 0")
    aggregate = [
        {"aggregate": [{"op": "mean", "field": "y", "as": "mean"},
                       {"op": "stdev", "field": "y", "as": "sd"},
                       {"op": "count", "as": "n"}], "groupby": groups},
        {"calculate": half, "as": "half"},
        {"calculate": "datum.mean - datum.half", "as": "lo"},
        {"calculate": "datum.mean + datum.half", "as": "hi"},
    ]
    xscale: dict[str, Any] = {"type": "log"} if log_x else {"zero": False}
    yscale: dict[str, Any] = {"type": "log"} if log_y else {"zero": False}
    enc_x = _channel("x", xkind, x, **({"scale": xscale} if xkind == "quantitative"
                                       else {"sort": "ascending", "axis": {"labelAngle": 0}}))
    enc_y = _channel("mean", "quantitative", y, scale=yscale)
    enc_color: dict[str, Any] = {}
    if color:
        enc_color = {"color": _channel("color", ckind, color,
                                       **({"scale": {"scheme": "viridis"}}
                                          if ckind == "quantitative" else {}))}
    tooltip = ([_channel("x", xkind, x)]
               + ([_channel("color", ckind, color)] if color else [])
               + ([_channel("facet", "nominal", facet)] if facet else [])
               + [_channel("mean", "quantitative", f"mean {y}", format=".4~g"),
                  _channel("lo", "quantitative", "95% CI from", format=".4~g"),
                  _channel("hi", "quantitative", "95% CI to", format=".4~g"),
                  _channel("n", "quantitative", "records")])
    if xkind == "quantitative":
        spread: dict[str, Any] = {
            "mark": {"type": "area", "opacity": 0.22},
            "encoding": {"x": enc_x, "y": {"field": "lo", "type": "quantitative"},
                         "y2": {"field": "hi"}, **enc_color}}
        centre: dict[str, Any] = {
            "mark": {"type": "line", "point": True, "strokeWidth": 2},
            "encoding": {"x": enc_x, "y": enc_y, **enc_color, "tooltip": tooltip}}
    else:
        offset = {"xOffset": {"field": "color", "type": "nominal"}} \
            if color and ckind == "nominal" else {}
        spread = {"mark": {"type": "rule", "strokeWidth": 2, "opacity": 0.6},
                  "encoding": {"x": enc_x, "y": {"field": "lo", "type": "quantitative"},
                               "y2": {"field": "hi"}, **enc_color, **offset}}
        centre = {"mark": {"type": "point", "filled": True, "size": 60, "opacity": 1},
                  "encoding": {"x": enc_x, "y": enc_y, **enc_color, **offset,
                               "tooltip": tooltip}}
    layers: list[dict[str, Any]] = []
    if raw:
        raw_tip = [_channel("x", xkind, x), _channel("y", "quantitative", y)] + (
            [_channel("color", ckind, color)] if color else [])
        layers.append({
            "mark": {"type": "circle", "opacity": 0.35, "size": 18},
            "encoding": {"x": enc_x, "y": _channel("y", "quantitative", y, scale=yscale),
                         **enc_color, "tooltip": raw_tip}})
    layers.append({"transform": aggregate, "layer": [spread, centre]})
    valid = "isValid(datum.x) && (!isNumber(datum.x) || isFinite(datum.x))" \
            " && isNumber(datum.y) && isFinite(datum.y)"
    inner: dict[str, Any] = {"width": width, "height": height, "layer": layers}
    spec: dict[str, Any] = {
        "$schema": VEGA_LITE_SCHEMA,
        "data": {"values": values} if values is not None else {"name": DATA_NAME},
        "transform": [{"filter": valid}],
    }
    if facet:
        spec.update(facet={"field": "facet", "type": "nominal", "title": facet},
                    columns=_FACET_COLUMNS, spec=inner)
    else:
        spec.update(inner)
    heading: dict[str, Any] = {"text": title or f"{y} by {x}", "anchor": "start"}
    if subtitle:
        heading["subtitle"] = subtitle
    spec["title"] = heading
    spec["config"] = {"view": {"stroke": "#ddd"}, "font": "DejaVu Sans",
                      "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#eee",
                               "labelSeparation": 6},
                      # the band's faint fill would otherwise set the legend's symbols
                      "legend": {"labelFontSize": 11, "titleFontSize": 12,
                                 "symbolOpacity": 1, "symbolType": "circle"},
                      "title": {"fontSize": 15, "subtitleFontSize": 11,
                                "subtitleColor": "#555"}}
    return spec


def _rows(records: Sequence[Mapping[str, Any]], x: str, y: str, color: str | None,
          facet: str | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The chart's rows, and how many records were left out and why."""
    rows: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}

    def drop(why: str) -> None:
        dropped[why] = dropped.get(why, 0) + 1

    for record in records:
        xv, yv = record.get(x), record.get(y)
        if isinstance(yv, bool):
            yv = int(yv)
        if yv is None:
            drop(f"no {y}")
            continue
        if not _is_number(yv):
            drop(f"a {y} that is not a number")
            continue
        if not math.isfinite(yv):
            drop("a NaN " + y if yv != yv else f"an infinite {y}")
            continue
        if xv is None or (isinstance(xv, float) and xv != xv):
            drop(f"no {x}")
            continue
        row = {"x": _scalar(xv), "y": yv}
        if color:
            row["color"] = _scalar(record.get(color))
        if facet:
            row["facet"] = _scalar(record.get(facet))
        rows.append(row)
    return rows, dropped


def _describe(records: Sequence[Mapping[str, Any]], rows: list[dict[str, Any]],
              dropped: Mapping[str, int], x: str, y: str, color: str | None,
              facet: str | None) -> list[str]:
    lines = []
    groups: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = (row["x"], row.get("color"), row.get("facet"))
        groups[key] = groups.get(key, 0) + 1
    if groups and max(groups.values()) > 1:
        low, high = min(groups.values()), max(groups.values())
        n = str(low) if low == high else f"{low} to {high}"
        line = f"mean and {INTERVAL} of {n} records per point"
        params = parameters(records)
        if params:
            shown = {x, color, facet}
            over = [p for p in params if p not in shown
                    and len({repr(r.get(p)) for r in records}) > 1]
            if over:
                line += f", over {', '.join(over)}"
        lines.append(line)
    if dropped:
        lines.append("left out: " + ", ".join(f"{n} record(s) with {why}"
                                              for why, n in sorted(dropped.items())))
    return lines


def auto_log(values: list[Any]) -> bool:
    """A log axis for positive numbers that span two decades or more (learning rates)."""
    numbers = [v for v in values if _is_number(v)]
    return bool(numbers) and len(numbers) == len(values) and min(numbers) > 0 and \
        max(numbers) / min(numbers) >= 100


def _prepare(source: Source, x: str, y: str, color: str | None = None,
             facet: str | None = None, *, raw: bool = False, errors: Errors = "warn",
             log_x: bool | None = None, log_y: bool = False, title: str | None = None,
             width: int = WIDTH, height: int = HEIGHT) -> dict[str, Any]:
    records = _records(source, errors)
    where = f" in {os.fspath(source)}" if isinstance(source, (str, os.PathLike)) else ""
    if not records:
        raise PlotError(f"memo.plot: no records{where}")
    known = columns(records)
    for role, name in (("x", x), ("y", y), ("color", color), ("facet", facet)):
        if name is not None and name not in known:
            raise PlotError(f"memo.plot: {role}={name!r} is not a column{where}; "
                            f"columns: {', '.join(known)}")
    rows, dropped = _rows(records, x, y, color, facet)
    if not rows:
        raise PlotError(f"memo.plot: no record{where} has a finite number as {y!r} "
                        f"(y) and a value for {x!r} (x)")
    kinds = {"x": field_kind(r["x"] for r in rows)}
    if color:
        kinds["color"] = field_kind(r["color"] for r in rows)
        if kinds["color"] == "quantitative" and \
                len({r["color"] for r in rows}) <= MAX_NOMINAL_COLORS:
            kinds["color"] = "nominal"  # a few settings: one named line each
    subtitle = _describe(records, rows, dropped, x, y, color, facet)
    if log_x is None:
        log_x = auto_log([r["x"] for r in rows])
    return chart_spec(x=x, y=y, color=color, facet=facet, raw=raw, kinds=kinds, values=rows,
                      subtitle=subtitle, log_x=log_x, log_y=log_y, title=title,
                      width=width, height=height)


def plot(source: Source, *, x: str, y: str, color: str | None = None, facet: str | None = None,
         raw: bool = False, log_x: bool | None = None, log_y: bool = False,
         title: str | None = None, errors: Errors = "warn", width: int = WIDTH,
         height: int = HEIGHT) -> Any:
    """A chart of ``y`` against ``x`` (an altair chart: it renders in Jupyter).

    Records with equal x, color and facet are drawn as their mean with a band for
    its 95% confidence interval (Student's t). Save the chart with ``save`` from
    the module of the same name (``from memo.plot import save``): PNG, SVG or
    HTML, offline.

    - ``source``: a memo file (or shard folder), a list of records (memlist's), or
      a pandas or polars DataFrame.
    - ``x``, ``y``: the columns on the axes; ``y`` must hold numbers (records whose
      y is missing, NaN or infinite are left out, and counted in the subtitle).
    - ``color``: one line, in its own color, per value of this column;
      ``facet``: one panel per value of this column.
    - ``raw``: also draw every record as a point.
    - ``log_x``: a logarithmic x axis; None (default): when x holds positive
      numbers that span two decades or more. ``log_y``: a logarithmic y axis.
    - ``title``: the chart's title (default "Y by X").
    - ``errors``: lines of the file that are not records: ``"warn"``, ``"raise"``
      or ``"ignore"``, as for :func:`memo.load`.
    - ``width``, ``height``: the size of the plot area (of each panel) in pixels.
    """
    spec = _prepare(source, x, y, color, facet, raw=raw, errors=errors, log_x=log_x,
                    log_y=log_y, title=title, width=width, height=height)
    try:
        import altair as alt
    except ImportError:
        raise missing("memo.plot", "altair", "plot") from None
    values = spec["data"].pop("values")
    spec["data"]["name"] = DATA_NAME  # a facet chart must name its data to be valid
    top = alt.FacetChart if "facet" in spec else alt.LayerChart
    chart = top.from_dict(spec)
    # set after validation: altair moves inline values out to "datasets" before it
    # validates, instead of checking each row against the schema (minutes for 100k rows)
    chart.data = {"values": values}
    return chart


_bundle_lock = threading.Lock()
_bundle: bytes | None = None


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "memo")


def vega_bundle() -> bytes:
    """Vega, Vega-Lite and vega-embed in one script, from the installed vl-convert.

    Making it takes seconds, so it is kept in memory and in ``~/.cache/memo``
    (per vl-convert version).
    """
    global _bundle
    with _bundle_lock:
        if _bundle is not None:
            return _bundle
        try:
            import vl_convert as vlc
        except ImportError:
            raise missing("drawing a chart", "vl-convert-python", "plot") from None
        version = getattr(vlc, "__version__", "0")
        cached = os.path.join(_cache_dir(), f"vega-bundle-{version}.js")
        try:
            with open(cached, "rb") as f:
                _bundle = f.read()
        except OSError:
            _bundle = vlc.javascript_bundle().encode()  # type: ignore[call-arg]
            try:  # a cache that cannot be written only costs the time to make it again
                os.makedirs(os.path.dirname(cached), exist_ok=True)
                part = f"{cached}.{os.getpid()}.part"
                with open(part, "wb") as f:
                    f.write(_bundle)
                os.replace(part, cached)
            except OSError:
                pass
        return _bundle


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script>{bundle}</script></head>
<body style="font-family: sans-serif"><div id="chart"></div>
<script>vegaEmbed("#chart", {spec}, {{"actions": false, "renderer": "svg"}}).catch(console.error);
</script></body></html>
"""


def to_html(spec: Mapping[str, Any]) -> str:
    """One self-contained page that draws ``spec``: Vega's scripts inline, no network."""
    import html

    from .serialize import dumps
    title = spec.get("title", {})
    text = title.get("text", "chart") if isinstance(title, Mapping) else str(title)
    data = dumps(spec).decode().replace("</", "<\\/")  # no "</script>" inside the script
    return _PAGE.format(title=html.escape(text), bundle=vega_bundle().decode(), spec=data)


def _spec_of(chart: Any) -> dict[str, Any]:
    if isinstance(chart, Mapping):
        return dict(chart)
    return dict(chart.to_dict())


def save(chart: Any, out: str | os.PathLike[str], *, scale: float = 2.0,
         format: str | None = None) -> str:
    """Render ``chart`` (from :func:`plot`, or a specification dict) to ``out``, offline.

    The format follows the suffix, or ``format``: ``png`` (``scale`` times the
    chart's size in pixels), ``svg``, or ``html`` (one self-contained page: Vega's
    scripts inline, nothing loaded from the network). Returns the path written.
    """
    try:
        import vl_convert as vlc
    except ImportError:
        raise missing("saving a chart", "vl-convert-python", "plot") from None
    name = os.fspath(out)
    suffix = f".{format.lower()}" if format else os.path.splitext(name)[1].lower()
    spec = _spec_of(chart)
    if suffix == ".png":
        data: bytes = vlc.vegalite_to_png(spec, scale=scale)
    elif suffix == ".svg":
        data = vlc.vegalite_to_svg(spec).encode()
    elif suffix in (".html", ".htm"):
        data = to_html(spec).encode()
    else:
        raise PlotError(f"memo.plot.save: cannot write {name!r}: the name must end in "
                        ".png, .svg or .html")
    with open(name, "wb") as f:
        f.write(data)
    return name


def _default_out(x: str, y: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{y}_by_{x}").strip("_")
    return f"{safe or 'plot'}.png"


def main(args: argparse.Namespace) -> int:
    from .cli import error, shown, stdin_paths, stdout_path

    out = args.out or _default_out(args.x, args.y)
    kind = args.format or os.path.splitext(out)[1].lower().lstrip(".")
    if kind not in ("png", "svg", "html", "htm"):
        return error("plot", f"-o {out}: the name must end in .png, .svg or .html "
                             "(or give --format)")
    with stdin_paths(args.paths) as paths:
        for path in paths:
            if not os.path.exists(path) and not os.path.isdir(path + ".shards"):
                return error("plot", f"{shown(path)}: no such file or shard folder")
        records: list[Mapping[str, Any]] = []
        for path in paths:
            records += _records(path, "warn")
    try:
        spec = _prepare(records, args.x, args.y, args.color, args.facet, raw=args.raw,
                        log_x=args.log_x, log_y=args.log_y, title=args.title,
                        width=args.width, height=args.height)
    except PlotError as exc:
        return error("plot", str(exc).removeprefix("memo.plot: "))
    with stdout_path(out) as target:
        save(spec, target, format=kind)
    if out != "-":
        print(f"memo plot: wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "plot", help="draw a column against another as a PNG, SVG or HTML file (offline)",
        description="Draw Y against X from memo files. Records with equal X, COLOR and FACET "
                    f"are drawn as their mean with a {INTERVAL} band; --raw adds every "
                    "record as a point. Rendered offline with vl-convert (the 'plot' extra).")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="memo file or shard folder ('-': standard input)")
    p.add_argument("-x", required=True, metavar="COL", help="column on the x axis")
    p.add_argument("-y", required=True, metavar="COL", help="numeric column on the y axis")
    p.add_argument("--color", metavar="COL", help="one line (and color) per value of COL")
    p.add_argument("--facet", metavar="COL", help="one panel per value of COL")
    p.add_argument("--raw", action="store_true", help="also draw every record as a point")
    p.add_argument("--log-x", action=argparse.BooleanOptionalAction, default=None,
                   help="logarithmic x axis (default: when X's positive values span "
                        "two decades or more)")
    p.add_argument("--log-y", action="store_true", help="logarithmic y axis")
    p.add_argument("-o", "--out", metavar="OUT",
                   help="file to write: .png, .svg or .html (default: Y_by_X.png; "
                        "'-': standard output, with --format)")
    p.add_argument("--format", choices=("png", "svg", "html"),
                   help="the format, when OUT's name does not say it")
    p.add_argument("--title", help='the chart\'s title (default: "Y by X")')
    p.add_argument("--width", type=int, default=WIDTH, help=f"pixels (default {WIDTH})")
    p.add_argument("--height", type=int, default=HEIGHT, help=f"pixels (default {HEIGHT})")
    p.set_defaults(handler=main)

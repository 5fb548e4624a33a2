"""memo.plot and ``memo plot``: Vega-Lite specifications rendered offline by vl-convert."""

from __future__ import annotations

import io
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import env

import memo
from memo.plot import PlotError, chart_spec, save, t975
from memo.serialize import dumps_line

alt = pytest.importorskip("altair")
vlc = pytest.importorskip("vl_convert")
Image = pytest.importorskip("PIL.Image")

META = {"f": "train.run", "v": "1", "a": ["lr", "depth", "seed"]}


def _memo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memo", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=120)


def _sweep(seeds=range(4)) -> list[dict]:
    records = []
    for lr in (0.001, 0.01, 0.1):
        for depth in (2, 4):
            for seed in seeds:
                loss = 1 / (1 + 10 * lr) + depth / 10 + ((seed * 7919 + depth) % 13) / 50
                records.append({"lr": lr, "depth": depth, "seed": seed, "loss": loss,
                                "$memo": META})
    return records


def _marks(spec: dict) -> dict[str, list[dict]]:
    """Mark items of the rendered scenegraph by mark type (Vega lays them out for real)."""
    found: dict[str, list[dict]] = {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("marktype") in ("area", "line", "symbol", "rule"):
                found.setdefault(node["marktype"], []).extend(node.get("items", []))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(vlc.vegalite_to_scenegraph(spec))
    return found


def _numbers(description: str) -> dict[str, float]:
    # "x: 1; lo: −1.4615; hi: 6.128" (Vega writes a real minus sign)
    pairs = (part.split(": ", 1) for part in description.split("; "))
    return {k: float(v.replace("\u2212", "-")) for k, v in pairs
            if re.fullmatch(r"[-\u2212]?[\d.e+]+", v)}


def test_band_is_the_students_t_interval_of_repeated_settings():
    ys = {1: [1.0, 2.0, 4.0], 2: [3.0], 3: [0.5, 0.7, 0.6, 0.9, 1.4, 0.2]}
    records = [{"x": x, "y": y} for x, values in ys.items() for y in values]
    spec = memo.plot(records, x="x", y="y").to_dict()
    bands = [_numbers(item["description"]) for item in _marks(spec)["area"]]
    assert len(bands) == 3
    for band in bands:
        values = ys[int(band["x"])]
        mean = statistics.fmean(values)
        half = t975(len(values)) * statistics.stdev(values) / math.sqrt(len(values)) \
            if len(values) > 1 else 0.0
        assert band["lo"] == pytest.approx(mean - half, rel=1e-6, abs=1e-9)
        assert band["hi"] == pytest.approx(mean + half, rel=1e-6, abs=1e-9)
    assert len(_marks(spec)["symbol"]) == 3  # one point per setting: the mean


def test_t_quantiles_follow_the_table_then_the_approximation():
    assert t975(2) == 12.706 and t975(3) == 4.303 and t975(31) == 2.042
    # true values 2.0003 (df 60) and 1.9799 (df 120): the approximation is within 0.1%
    assert t975(61) == pytest.approx(2.0003, rel=1e-3)
    assert t975(121) == pytest.approx(1.9799, rel=1e-3)


def test_nonfinite_and_missing_values_are_left_out_and_counted():
    records = _sweep(seeds=[0])
    records[0]["loss"] = math.nan
    records[1]["loss"] = math.inf
    del records[2]["loss"]
    records[3]["lr"] = None
    chart = memo.plot(records, x="lr", y="loss")
    spec = chart.to_dict()
    json.dumps(spec, allow_nan=False)  # strict JSON: no NaN or Infinity literal anywhere
    (rows,) = spec["datasets"].values()
    assert len(rows) == len(records) - 4
    subtitle = " ".join(spec["title"]["subtitle"])
    for why in ("1 record(s) with a NaN loss", "1 record(s) with an infinite loss",
                "1 record(s) with no loss", "1 record(s) with no lr"):
        assert why in subtitle


def test_subtitle_names_the_parameters_the_mean_runs_over():
    spec = memo.plot(_sweep(), x="lr", y="loss", color="depth").to_dict()
    assert spec["title"]["subtitle"] == [
        "mean and 95% confidence interval (Student's t) of 4 records per point, over seed"]
    lines = _marks(spec)["line"]
    assert len(lines) == 2 * 3  # one line per depth, through the three learning rates


def test_x_spanning_decades_gets_a_log_axis_unless_told_otherwise():
    spec = memo.plot(_sweep(), x="lr", y="loss").to_dict()
    assert spec["layer"][0]["layer"][1]["encoding"]["x"]["scale"] == {"type": "log"}
    spec = memo.plot(_sweep(), x="lr", y="loss", log_x=False).to_dict()
    assert spec["layer"][0]["layer"][1]["encoding"]["x"]["scale"] == {"zero": False}
    spec = memo.plot(_sweep(), x="depth", y="loss").to_dict()
    assert spec["layer"][0]["layer"][1]["encoding"]["x"]["scale"] == {"zero": False}


def test_raw_points_facets_and_a_nominal_x():
    records = _sweep()
    for r in records:
        r["opt"] = "adam" if r["seed"] % 2 else "sgd"
    spec = memo.plot(records, x="lr", y="loss", color="depth", facet="opt", raw=True).to_dict()
    assert spec["facet"]["field"] == "facet" and spec["facet"]["title"] == "opt"
    assert len(_marks(spec)["symbol"]) >= len(records)  # every record drawn as a point too
    spec = memo.plot(records, x="opt", y="loss", color="depth").to_dict()
    inner = spec["layer"][0]["layer"]
    assert inner[0]["mark"]["type"] == "rule" and inner[1]["mark"]["type"] == "point"
    assert inner[1]["encoding"]["xOffset"]["field"] == "color"
    assert len(_marks(spec)["rule"]) >= 4  # an interval per (opt, depth)


def test_many_numeric_colors_get_a_gradient():
    records = [{"x": i % 5, "y": float(i), "c": i} for i in range(40)]
    spec = memo.plot(records, x="x", y="y", color="c").to_dict()
    assert spec["layer"][0]["layer"][1]["encoding"]["color"]["type"] == "quantitative"
    spec = memo.plot(records[:10], x="x", y="y", color="c").to_dict()
    assert spec["layer"][0]["layer"][1]["encoding"]["color"]["type"] == "nominal"


def test_sources_a_path_a_list_and_dataframes(tmp_path):
    records = _sweep()
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(dumps_line(r) for r in records))
    from_path = memo.plot(path, x="lr", y="loss").to_dict()
    assert from_path["datasets"] == memo.plot(records, x="lr", y="loss").to_dict()["datasets"]
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "$memo"} for r in records])
    assert memo.plot(frame, x="lr", y="loss").to_dict()["datasets"] == from_path["datasets"]


def test_errors_name_the_column_and_list_the_columns():
    with pytest.raises(PlotError, match=r"x='lrate' is not a column; columns: lr, depth, "
                                        r"seed, loss") as info:
        memo.plot(_sweep(), x="lrate", y="loss")
    assert isinstance(info.value, memo.exceptions.MemoError)
    with pytest.raises(PlotError, match="no record has a finite number as 'depth'"):
        memo.plot([{"a": 1, "depth": "deep"}], x="a", y="depth")
    with pytest.raises(PlotError, match="no records"):
        memo.plot([], x="a", y="b")


def test_a_chart_renders_in_jupyter_and_saves_offline(tmp_path):
    chart = memo.plot(_sweep(), x="lr", y="loss", color="depth")
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert any("vega" in kind or "html" in kind for kind in bundle)
    png = Image.open(save(chart, tmp_path / "c.png"))
    assert png.size[0] > 500
    assert len(png.convert("RGB").getcolors(1 << 20)) > 50  # lines, band, text: not blank
    svg = Path(save(chart, tmp_path / "c.svg")).read_text()
    assert svg.startswith("<svg") and svg.count("<path") > 5
    html = Path(save(chart, tmp_path / "c.html")).read_text()
    assert "vegaEmbed" in html and "<script src=" not in html  # self-contained
    with pytest.raises(PlotError, match="must end in .png, .svg or .html"):
        save(chart, tmp_path / "c.pdf")


def test_import_memo_does_not_import_altair():
    done = subprocess.run([sys.executable, "-c", "import sys, memo; memo.plot; "
                           "print('altair' in sys.modules, 'vl_convert' in sys.modules)"],
                          env=env(), capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.slow
def test_cli_draws_the_demo_sweep(tmp_path):
    assert _memo("demo", "--jobs", "2", cwd=tmp_path).returncode == 0
    done = _memo("plot", "results.jsonl", "-x", "class_size", "-y", "est_proba",
                 "--color", "n_sim", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "memo plot: wrote est_proba_by_class_size.png"
    image = Image.open(tmp_path / "est_proba_by_class_size.png").convert("RGB")
    colors = image.getcolors(1 << 20)
    assert len(colors) > 50 and max(n for n, _ in colors) < 0.95 * image.width * image.height
    for out in ("p.svg", "p.html"):
        done = _memo("plot", "results.jsonl", "-x", "class_size", "-y", "est_proba",
                     "--facet", "n_sim", "--raw", "-o", out, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / out).stat().st_size > 1000


def test_cli_refuses_unknown_columns_and_formats(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(dumps_line(r) for r in _sweep()))
    done = _memo("plot", str(path), "-x", "lr", "-y", "acc", cwd=tmp_path)
    assert done.returncode == 2
    assert "y='acc' is not a column" in done.stderr and "lr, depth, seed, loss" in done.stderr
    done = _memo("plot", str(path), "-x", "lr", "-y", "loss", "-o", "p.jpg", cwd=tmp_path)
    assert done.returncode == 2 and "must end in .png, .svg or .html" in done.stderr
    done = _memo("plot", str(tmp_path / "nope.jsonl"), "-x", "a", "-y", "b", cwd=tmp_path)
    assert done.returncode == 2 and "no such file" in done.stderr


def test_spec_with_named_data_is_what_memo_view_fills():
    spec = chart_spec(x="lr", y="loss", color="depth")
    assert spec["data"] == {"name": "records"}
    spec["datasets"] = {"records": [{"x": 1, "y": 2.0, "color": 2}, {"x": 2, "y": 3.0,
                                                                     "color": 2}]}
    png = vlc.vegalite_to_png(spec)
    assert Image.open(io.BytesIO(png)).size[0] > 300


def test_cli_reads_standard_input_and_writes_standard_output(tmp_path):
    lines = b"".join(dumps_line(r) for r in _sweep())
    done = subprocess.run([sys.executable, "-m", "memo", "plot", "-", "-x", "lr", "-y", "loss",
                           "-o", "-", "--format", "svg"], input=lines, cwd=tmp_path,
                          env=env(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"<svg") and done.stdout.count(b"<path") > 5
    assert list(tmp_path.iterdir()) == []  # nothing left behind

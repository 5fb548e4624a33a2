"""``memo show``: real files, the real ``memo`` command in subprocesses."""

from __future__ import annotations

import csv
import io
import math
import os
import pty
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import env

import memo
from memo.show import Query, WhereError, compile_where, select, table

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def show(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "memo", "show", *map(str, args)], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "results.jsonl"

    @memo.memfile(path)
    @memo.ignore_error
    def train(model, lr, seed):
        if lr > 0.5:
            raise ValueError("diverged")
        loss = math.inf if lr == 0.3 else math.nan if lr == 0.2 else lr * (seed + 1)
        return {"loss": loss, "acc": 0.5 + lr + seed / 100}

    for s in memo.grid({"seed": [0, 1, 2]}, model=["mlp", "cnn"], lr=[0.01, 0.1, 0.2, 0.3, 0.9]):
        train(**s)
    # a record as memo now writes them, with its reserved key: never a column
    with open(path, "ab") as f:
        f.write(memo.serialize.dumps_line({
            "model": "mlp", "lr": 0.05, "seed": 9, "loss": 0.5, "acc": 0.9, "status": "ok",
            "$memo": {"f": "tests.train", "v": "1", "a": ["model", "lr", "seed"]}}))
    return path


def _plain_rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    assert set(lines[1].replace(" ", "")) == {"-"}
    return [line.split() for line in lines[2:]]


def test_plain_table_of_every_record(results):
    out = show(results).stdout
    header = out.splitlines()[0].split()
    assert header == ["model", "lr", "seed", "loss", "acc", "status", "error_type",
                      "error_message"]  # no $memo, and the long traceback left out
    rows = _plain_rows(out)
    assert len(rows) == 31
    losses = [r[3] for r in rows]
    assert losses.count("inf") == 6 and losses.count("nan") == 6
    assert "\x1b" not in out  # a pipe gets plain text


def test_where_sort_columns_tail(results):
    out = show(results, "--where", "lr > 0.01 and model == 'mlp' and status == 'ok'",
               "--columns", "model,lr,seed,acc", "--sort", "acc", "--desc").stdout
    rows = _plain_rows(out)
    records = [r for r in memo.load(results) if r["lr"] > 0.01 and r["model"] == "mlp"
               and r["status"] == "ok"]
    assert len(rows) == len(records) == 10
    accs = [float(r[3]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert {r[0] for r in rows} == {"mlp"}
    tail = _plain_rows(show(results, "--tail", "3", "--columns", "seed,lr").stdout)
    assert tail == [["2", "0.3"], ["2", "0.9"], ["9", "0.05"]]


@pytest.mark.parametrize("expr, expected", [
    ("loss == inf", 6),
    ("loss == nan", 6),
    ("loss != nan and status == 'ok'", 19),
    ("0.05 <= lr < 0.3", 13),
    ("not (model in ['mlp'])", 15),
    ("`error_type` == 'ValueError' or seed == 9", 7),
    ("lr > 'text'", 0),  # numbers and strings do not compare: false, not an error
    ("loss > -1", 19),
])
def test_where_expressions(results, expr, expected):
    records = memo.load(results)
    _, rows = select(results, where=expr)
    assert len(rows) == expected
    where = compile_where(expr, memo.show.columns_of(records))
    assert sum(map(where.matches, records)) == expected


def test_where_runs_no_code(results, tmp_path):
    marker = tmp_path / "pwned"
    for expr in [f"__import__('os').system('touch {marker}')", "lr.__class__", "[x for x in lr]",
                 "lambda: 1", "lr + 1 > 2"]:
        done = show(results, "--where", expr, check=False)
        assert done.returncode == 2, (expr, done.stdout)
        assert "--where" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()
    with pytest.raises(WhereError, match="no column named 'mlp'.*quote strings"):
        compile_where("model == mlp", ["model", "lr"])


def _rows_by_key(columns, rows, n):
    return {tuple(r[:n]): dict(zip(columns, r)) for r in rows}


def test_group_by_aggregates_match_statistics(results):
    done = show(results, "--group-by", "model,lr", "--agg", "mean,std,count,min,max",
                "--columns", "acc", "--format", "csv")
    table_rows = list(csv.reader(io.StringIO(done.stdout)))
    assert table_rows[0] == ["model", "lr", "count", "acc_mean", "acc_std", "acc_min",
                             "acc_max"]
    got = {(r[0], float(r[1])): r for r in table_rows[1:]}
    records = memo.load(results)
    for (model, lr), row in got.items():
        accs = [r["acc"] for r in records if r["model"] == model and r["lr"] == lr
                and r.get("acc") is not None]
        assert int(row[2]) == sum(r["model"] == model and r["lr"] == lr for r in records)
        if accs:
            assert float(row[3]) == pytest.approx(statistics.mean(accs))
            assert float(row[5]) == min(accs) and float(row[6]) == max(accs)
            if len(accs) > 1:
                assert float(row[4]) == pytest.approx(statistics.stdev(accs))
    assert len(got) == 11  # 2 models x 5 rates, and the extra mlp 0.05


def test_group_by_in_python_and_in_polars_agree(results):
    pytest.importorskip("polars")
    options = dict(group_by=["model", "lr"], agg=["mean", "std", "count", "min", "max"])
    by_polars = select(results, **options)  # a file: read and grouped with polars
    by_python = select(memo.load(results), **options)  # records: grouped in Python
    assert by_polars[0] == by_python[0]
    assert len(by_polars[1]) == len(by_python[1])
    for a, b in zip(by_polars[1], by_python[1]):
        for x, y in zip(a, b):
            if isinstance(x, float) and math.isnan(x):
                assert isinstance(y, float) and math.isnan(y)
            elif isinstance(x, float):
                assert y == pytest.approx(x)
            else:
                assert x == y
    assert table(results, **options) == table(memo.load(results), **options)


def test_formats_keep_values(results):
    records = memo.load(results)
    data = show(results, "--format", "json").stdout
    (Path(results).parent / "copy.jsonl").write_text(data)
    back = memo.load(Path(results).parent / "copy.jsonl")
    assert len(back) == len(records)
    for a, b in zip(back, records):
        for k in a:  # every shown column, nan and inf included, exactly
            x, y = a[k], b.get(k)
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
    rows = list(csv.DictReader(io.StringIO(show(results, "--format", "csv").stdout)))
    assert [r["loss"] for r in rows][:5] == ["0.01", "0.1", "nan", "inf", ""]
    md = show(results, "--format", "markdown", "--tail", "2").stdout.splitlines()
    assert md[0].startswith("| model | lr |") and md[1].startswith("| --- | ---: |")
    assert len(md) == 4


def test_corrupt_lines_are_reported_and_skipped(results):
    with open(results, "ab") as f:
        f.write(b"not json\n")
    done = show(results)
    assert len(_plain_rows(done.stdout)) == 31
    assert ":32: corrupt line" in done.stderr
    assert show(results, "--errors", "ignore").stderr == ""


def test_a_missing_file_and_a_bad_column(tmp_path, results):
    done = show(tmp_path / "nope.jsonl", check=False)
    assert done.returncode == 2 and "no such file" in done.stderr
    done = show(results, "--sort", "nope", check=False)
    assert done.returncode == 2 and "no column named 'nope'" in done.stderr


def test_wide_table_fits_the_terminal(results):
    out = table(results, terminal=True, width=50)
    lines = [ANSI.sub("", line) for line in out.splitlines()]
    assert max(map(len, lines)) <= 50
    assert "not shown" in out and "error_message" in out.split("not shown")[1]
    wide = ANSI.sub("", table(results, terminal=True, width=200))
    assert "not shown" not in wide and "inf" in wide and "nan" in wide


def test_on_a_terminal_rich_draws_the_table(results):
    parent, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "memo", "show", str(results), "--tail", "2"],
                            stdout=child, stderr=subprocess.PIPE, env=env(COLUMNS="120"))
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    os.close(parent)
    out = b"".join(chunks).decode()
    assert "\x1b[" in out and "─" in out  # styled, with rules
    text = ANSI.sub("", out)
    assert "model" in text and "0.05" in text and "$memo" not in text


def test_follow_prints_records_as_they_are_appended(tmp_path):
    path = tmp_path / "live.jsonl"
    writer = ("import sys, time, memo\n"
              "f = memo.memfile(sys.argv[1])(lambda i: {'sq': i * i})\n"
              "for i in range(int(sys.argv[2]), int(sys.argv[3])):\n"
              "    f(i)\n")
    subprocess.run([sys.executable, "-c", writer, str(path), "0", "3"], env=env(), check=True,
                   timeout=60)
    proc = subprocess.Popen([sys.executable, "-m", "memo", "show", str(path), "--follow",
                             "--follow-for", "8", "--interval", "0.1"], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # the first rows are printed; then another process appends
        subprocess.run([sys.executable, "-c", writer, str(path), "3", "6"], env=env(),
                       check=True, timeout=60)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    rows = _plain_rows(out)
    assert rows == [[str(i), str(i * i)] for i in range(6)]


def test_follow_csv_of_a_grouped_table_prints_it_again(tmp_path):
    path = tmp_path / "g.jsonl"
    f = memo.memfile(path)(lambda k, x: {"y": x * 2})
    for x in range(4):
        f(x % 2, x)
    done = show(path, "--follow", "--follow-for", "1", "--interval", "0.1", "--group-by", "k",
                "--format", "csv", "--columns", "y")
    assert done.stdout.splitlines() == ["k,count,y_mean", "0,2,2.0", "1,2,4.0"]


def test_query_validates_its_options():
    with pytest.raises(ValueError, match="agg='avg'"):
        Query(agg="avg")
    assert Query(columns="a, b", group_by=["g"]).columns == ["a", "b"]

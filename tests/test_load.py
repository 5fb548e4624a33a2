import math
import warnings

import numpy as np
import pytest

import memo


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "results.jsonl"

    @memo.memfile(path=path)
    def experiment(size, lr):
        return {"loss": math.inf if lr > 1 else lr / size, "acc": np.float32(0.5),
                "curve": np.array([1.0, np.nan])}

    for settings in memo.grid(size=[1, 2], lr=[0.5, 2.0]):
        experiment(**settings)
    return path


def test_load_restores_values(results):
    rows = memo.load(results)
    assert len(rows) == 4
    assert rows[1] == {"size": 1, "lr": 2.0, "loss": math.inf, "acc": 0.5,
                       "curve": [1.0, rows[1]["curve"][1]]}
    assert math.isnan(rows[1]["curve"][1])
    assert all("$nonfinite" not in r for r in rows)


def test_torn_and_corrupt_lines_are_reported_with_line_numbers(results):
    with open(results, "ab") as f:
        f.write(b'not json\n{"size": 3, "lr": 0.1, "lo')
    with pytest.warns(memo.CorruptLineWarning) as caught:
        rows = memo.load(results)
    assert len(rows) == 4
    messages = [str(w.message) for w in caught]
    assert any(":5: corrupt line" in m for m in messages)
    assert any(":6: incomplete last line" in m for m in messages)
    with pytest.raises(ValueError, match=":5: corrupt line"):
        memo.load(results, errors="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(memo.load(results, errors="ignore")) == 4


def test_a_json_value_that_is_not_an_object_is_corrupt(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n[1, 2]\n\n')
    with pytest.warns(memo.CorruptLineWarning, match="not an object"):
        assert memo.load(path) == [{"a": 1}]


def test_dataframes(results):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    frame = memo.to_pandas(results)
    assert list(frame.columns) == ["size", "lr", "loss", "acc", "curve"]
    assert frame["loss"].tolist()[1] == math.inf
    assert isinstance(frame, pd.DataFrame)
    pframe = memo.to_polars(results)
    assert isinstance(pframe, pl.DataFrame) and pframe.height == 4
    assert pframe["loss"].to_list()[3] == math.inf
    data = []
    memo.memlist(data=data)(lambda x: {"y": x})(1)
    assert memo.to_pandas(data).to_dict("records") == [{"x": 1, "y": 1}]


def _load_module():
    import sys

    return sys.modules["memo.load"]


def test_blocks_keep_line_numbers_and_every_record(tmp_path, monkeypatch):
    monkeypatch.setattr(_load_module(), "BLOCK", 256)  # many blocks, lines cut at their ends
    path = tmp_path / "many.jsonl"
    lines = [memo.serialize.dumps_line({"i": i, "x": math.nan if i % 7 == 0 else i / 3,
                                        "$memo": {"f": "m.f", "v": "1", "a": ["i"]}})
             for i in range(300)]
    lines[150] = b'{"i": 150, "torn\n'
    lines[151] = b"\n"  # a blank line is no record and no error
    path.write_bytes(b"".join(lines) + b'{"i": 300}')  # the last line has no newline
    with pytest.warns(memo.CorruptLineWarning, match=":151: corrupt line"):
        rows = memo.load(path)
    assert [r["i"] for r in rows] == [i for i in range(301) if i not in (150, 151)]
    assert all(math.isnan(r["x"]) for r in rows if r["i"] % 7 == 0 and r["i"] < 300)
    assert all("$memo" not in r for r in rows)
    meta = _load_module().read(path, errors="ignore", meta=True)
    assert meta[0]["$memo"] == {"f": "m.f", "v": "1", "a": ["i"]}


def test_tags_and_nested_nonfinite_are_restored(tmp_path):
    path = tmp_path / "tags.jsonl"
    record = {"c": 1 + 2j, "b": b"\x00\xff", "deep": {"v": [1.0, -math.inf]}}
    path.write_bytes(memo.serialize.dumps_line(record) * 3)
    rows = memo.load(path)
    assert rows[2]["c"] == 1 + 2j and rows[2]["b"] == b"\x00\xff"
    assert rows[2]["deep"]["v"][1] == -math.inf


def test_to_polars_keeps_keys_first_seen_late_and_reports_corrupt_lines(tmp_path):
    pl = pytest.importorskip("polars")
    path = tmp_path / "late.jsonl"
    f = memo.memfile(path)(lambda i: {"y": i / 2} if i < 250 else {"y": i / 2, "late": i})
    for i in range(300):
        f(i)
    frame = memo.to_polars(path)
    assert frame.height == 300 and frame["late"].drop_nulls().to_list() == list(range(250, 300))
    with open(path, "ab") as out:
        out.write(b'{"broken": \n' + memo.serialize.dumps_line({"i": 300, "y": math.inf}))
    with pytest.warns(memo.CorruptLineWarning, match=":301: corrupt line"):
        frame = memo.to_polars(path)
    assert frame.height == 301 and frame["y"].to_list()[-1] == math.inf
    assert isinstance(frame, pl.DataFrame)


def test_to_polars_restores_nan_inf_in_columns_and_lists(tmp_path):
    pytest.importorskip("polars")
    path = tmp_path / "nf.jsonl"
    f = memo.memfile(path)(lambda i: {"a": [i, math.nan] if i == 2 else [i, 0.5],
                                      "n": -math.inf if i == 1 else i})
    for i in range(4):
        f(i)
    frame = memo.to_polars(path)
    assert frame.columns == ["i", "a", "n"]
    assert frame["n"].to_list()[:3] == [0, -math.inf, 2]
    assert math.isnan(frame["a"].to_list()[2][1]) and frame["a"].to_list()[3] == [3, 0.5]

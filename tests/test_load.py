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

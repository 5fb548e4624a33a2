"""The record pipeline, through the decorators users write."""
import dataclasses
import inspect
import json
import typing

import msgspec
import numpy as np
import pytest

import memo
from memo import KeyCollisionError, SerializationError


def test_record_is_arguments_then_outputs():
    data = []

    @memo.memlist(data=data)
    def birthday(class_size, n_sim=100):
        """Doc."""
        return {"est_proba": 0.5}

    assert birthday(23) == {"est_proba": 0.5}
    birthday(class_size=5, n_sim=10)
    assert data == [
        {"class_size": 23, "n_sim": 100, "est_proba": 0.5},
        {"class_size": 5, "n_sim": 10, "est_proba": 0.5},
    ]


def test_metadata_and_signature_are_kept():
    @memo.memlist(data=[])
    @memo.capture_time
    @memo.ignore_error
    def birthday(class_size: int, *, n_sim: int = 10) -> dict:
        """Simulate."""
        return {}

    assert birthday.__name__ == "birthday"
    assert birthday.__doc__ == "Simulate."
    assert str(inspect.signature(birthday)) == "(class_size: int, *, n_sim: int = 10) -> dict"


@dataclasses.dataclass
class DC:
    a: int


class NT(typing.NamedTuple):
    a: int


class ST(msgspec.Struct):
    a: int


@pytest.mark.parametrize("value", [DC(1), NT(1), ST(1)])
def test_structured_returns_become_mappings(value):
    data = []
    memo.memlist(data=data)(lambda x: value)(0)
    assert data == [{"x": 0, "a": 1}]


@pytest.mark.parametrize("value", [0.5, None, [1, 2], "text", np.float64(1.0)])
def test_non_mapping_return_is_a_clear_type_error(value):
    data = []

    @memo.memlist(data=data)
    def experiment(x):
        return value

    with pytest.raises(TypeError) as info:
        experiment(1)
    assert "experiment()" in str(info.value)
    assert type(value).__qualname__ in str(info.value)
    assert data == []


def test_output_key_equal_to_argument_is_refused():
    data = []

    @memo.memlist(data=data)
    def experiment(x, y):
        return {"x": 2}

    for args, kwargs in (((1, 2), {}), ((), {"x": 1, "y": 2}), ((), {"y": 2, "x": 1})):
        with pytest.raises(KeyCollisionError, match=r"experiment\(\).*\['x'\]"):
            experiment(*args, **kwargs)  # each way of binding the arguments
    assert data == []
    # leaving the argument out lets the output's value stand
    memo.memlist(data=data, exclude=["x"])(experiment.__wrapped__)(1, 2)
    assert data == [{"y": 2, "x": 2}]


def test_unserializable_value_names_function_key_and_type_and_writes_nothing(tmp_path):
    path = tmp_path / "r.jsonl"

    class Model:
        pass

    @memo.memfile(path=path)
    def fit(lr):
        return {"model": Model(), "score": 1.0}

    with pytest.raises(SerializationError) as info:
        fit(0.1)
    msg = str(info.value)
    assert "fit()" in msg and "['model']" in msg and "Model" in msg
    assert not path.exists() or path.read_bytes() == b""


def test_stdout_writes_nothing_on_bad_value(capsys):
    @memo.memstdout
    def f(x):
        return {"bad": object()}

    with pytest.raises(SerializationError):
        f(1)
    assert capsys.readouterr().out == ""


def test_bad_arguments_raise_before_the_function_runs():
    ran = []

    @memo.memlist(data=[])
    def f(a):
        ran.append(a)
        return {}

    with pytest.raises(TypeError, match="missing a required argument"):
        f()
    assert ran == []


@pytest.mark.parametrize("order", ["file-list-time-error", "error-time-list-file",
                                   "time-file-error-list", "list-error-file-time"])
def test_decorators_stack_in_any_order(tmp_path, order):
    data, path = [], tmp_path / "r.jsonl"
    decorators = {
        "file": memo.memfile(path=path), "list": memo.memlist(data=data),
        "time": memo.capture_time(time_start=False), "error": memo.ignore_error,
    }

    def experiment(a, b=1):
        if a < 0:
            raise ValueError("negative")
        return {"total": a + b}

    f = experiment
    for name in reversed(order.split("-")):
        f = decorators[name](f)
    assert f(1)["total"] == 2
    assert f(-1)["status"] == "error"  # whatever the order, the sweep goes on
    names = order.split("-")  # outermost first
    sinks = {"list": data, "file": memo.load(path)}
    for sink, rows in sinks.items():
        inside = names.index("error") > names.index(sink)  # ignore_error applied first
        assert len(rows) == (2 if inside else 1), (sink, rows)
        ok = rows[0]
        assert ok["a"] == 1 and ok["b"] == 1 and ok["total"] == 2
        assert ("time_taken" in ok) == (names.index("time") > names.index(sink))
        assert ("status" in ok) == inside
        if inside:
            err = rows[1]
            assert err["a"] == -1 and err["status"] == "error"
            assert err["error_type"] == "ValueError" and err["error_message"] == "negative"


def test_methods_and_keyword_only():
    data = []

    class Sim:
        factor = 2

        @memo.memlist(data=data)
        def run(self, x, *, scale=1):
            return {"y": x * scale * self.factor}

    Sim().run(3, scale=5)
    assert data == [{"x": 3, "scale": 5, "y": 30}]


def test_stdout_prints_one_json_line(capsys):
    @memo.memstdout
    def f(x):
        return {"y": np.float32(0.1), "z": float("nan")}

    f(1)
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert memo.serialize.loads(line)["y"] == 0.1
    assert json.loads(line)["z"] is None  # strict JSON; the exact value via memo.load


def test_memfunc_gets_the_record():
    got = []

    @memo.memfunc(callback=got.append)
    def f(x, **kw):
        return {"y": x}

    f(1, tag="a")
    assert got == [{"x": 1, "tag": "a", "y": 1}]


def test_forgotten_parentheses_are_explained():
    with pytest.raises(TypeError, match="parentheses"):
        memo.memlist(data=[])(42)
    with pytest.raises(TypeError, match="needs a list"):
        memo.memlist(data=None)


def test_positional_and_keyword_calls_give_the_same_record_and_refuse_the_same_clash():
    data = []

    @memo.memlist(data=data)
    def experiment(x, y):
        return {"z": x + y} if y else {"x": 0}

    experiment(1, 2)
    experiment(x=1, y=2)
    experiment(1, y=2)
    assert data == [{"x": 1, "y": 2, "z": 3}] * 3
    assert [list(r) for r in data] == [["x", "y", "z"]] * 3
    for args, kwargs in (((1, 0), {}), ((), {"x": 1, "y": 0}), ((1,), {"y": 0})):
        with pytest.raises(KeyCollisionError, match=r"experiment\(\).*\['x'\]"):
            experiment(*args, **kwargs)
    assert len(data) == 3


def test_arguments_by_name_are_recorded_in_the_signatures_order():
    data = []

    @memo.memlist(data=data)
    def experiment(a, b, c=3):
        return {"y": a + b + c}

    experiment(a=1, b=2, c=3)
    experiment(c=3, b=2, a=1)
    experiment(1, 2, 3)
    experiment(1, c=3, b=2)
    assert [list(r) for r in data] == [["a", "b", "c", "y"]] * 4
    assert all(r == {"a": 1, "b": 2, "c": 3, "y": 6} for r in data)
    with pytest.raises(TypeError, match="'d'"):  # as many names, one of them unknown
        experiment(a=1, b=2, d=3)
    assert len(data) == 4

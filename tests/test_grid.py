import subprocess
import sys

import numpy as np
import pytest

import memo


def test_cartesian_product_last_key_fastest():
    assert memo.grid(a=[1, 2], b=range(2)) == [
        {"a": 1, "b": 0}, {"a": 1, "b": 1}, {"a": 2, "b": 0}, {"a": 2, "b": 1}]


def test_any_iterable_and_fixed_values():
    out = memo.grid({"seed": 7}, n=np.array([10, 20]), model="linear", gen=(x for x in "ab"))
    assert out == [
        {"n": 10, "model": "linear", "gen": "a", "seed": 7},
        {"n": 10, "model": "linear", "gen": "b", "seed": 7},
        {"n": 20, "model": "linear", "gen": "a", "seed": 7},
        {"n": 20, "model": "linear", "gen": "b", "seed": 7},
    ]
    assert type(out[0]["n"]) is int  # numpy values become Python scalars
    assert [o["seed"] for o in out] == [7, 7, 7, 7]


def test_parameters_named_like_options_go_in_a_dict():
    out = memo.grid({"seed": [1, 2], "shuffle": [False]}, lr=[0.1], shuffle=True, seed=5)
    assert sorted(o["seed"] for o in out) == [1, 2]
    assert all(o["shuffle"] is False and o["lr"] == 0.1 for o in out)
    assert len(memo.random_grid({"n": [1, 2], "seed": [3]}, n=4)) == 4
    with pytest.raises(TypeError, match="given twice"):
        memo.grid({"a": [1]}, a=[2])
    with pytest.raises(TypeError, match="dict of parameters"):
        memo.grid([1, 2])


def test_empty_axis_is_an_error():
    with pytest.raises(ValueError, match="'a' is empty"):
        memo.grid(a=[], b=[1])


def test_shuffle_is_a_permutation_fixed_by_seed():
    base = memo.grid(a=range(10), b=range(10))
    s0 = memo.grid(a=range(10), b=range(10), shuffle=True)
    s1 = memo.grid(a=range(10), b=range(10), shuffle=True, seed=1)
    assert s0 != base and sorted(map(str, s0)) == sorted(map(str, base))
    assert s0 == memo.grid(a=range(10), b=range(10), shuffle=True, seed=0)
    assert s1 != s0


def _in_other_process(expr):
    code = f"import memo, json; print(json.dumps({expr}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"PYTHONHASHSEED": "random", "PATH": "",
                                           "PYTHONPATH": ":".join(sys.path)}).stdout


def test_two_processes_get_the_same_order():
    expr = "memo.grid(a=range(5), b=['x', 'y'], shuffle=True)"
    assert _in_other_process(expr) == _in_other_process(expr)
    expr = "memo.random_grid(n=5, a=range(100), b={'p', 'q', 'r'})"
    assert _in_other_process(expr) == _in_other_process(expr)


def test_random_grid():
    out = memo.random_grid(n=50, lr=lambda r: 10 ** r.uniform(-4, -1), depth=[1, 2, 3],
                           name="fixed", seed=3)
    assert len(out) == 50
    assert all(1e-4 <= o["lr"] <= 1e-1 and o["depth"] in (1, 2, 3) for o in out)
    assert {o["name"] for o in out} == {"fixed"}
    assert out == memo.random_grid(n=50, lr=lambda r: 10 ** r.uniform(-4, -1),
                                   depth=[1, 2, 3], name="fixed", seed=3)
    assert memo.random_grid(n=0, a=[1]) == []
    with pytest.raises(ValueError):
        memo.random_grid(n=-1, a=[1])


def test_a_seed_meant_as_a_parameter_is_not_silently_taken():
    with pytest.raises(TypeError, match="only orders a shuffled grid"):
        memo.grid(lr=[0.1], seed=7)
    with pytest.raises(TypeError, match="pass it in a dict first"):
        memo.grid(lr=[0.1], seed=[1, 2], shuffle=True)
    with pytest.raises(TypeError, match="pass it in a dict first"):
        memo.random_grid(n=2, lr=[0.1], seed=[1, 2])
    assert memo.grid(a=[1, 2], shuffle=True, seed=None)  # unseeded, for one process

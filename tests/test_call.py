"""A call's identity: function, code version and arguments (memo.call, memo.resume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from helpers import ROOT, env

import memo
from memo.call import call_key, fingerprint, function_name
from memo.resume import LegacyRecordWarning


def _run(tmp_path, source: str, code: str) -> str:
    """Write ``source`` as sweep.py and run ``code`` in a new Python process there."""
    (tmp_path / "sweep.py").write_text(textwrap.dedent(source))
    child_env = env(PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          env=child_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_skip_never_returns_another_functions_record(tmp_path):
    path = str(tmp_path / "r.jsonl")
    runs = []

    @memo.memfile(path, skip=True)
    def square(x):
        runs.append("square")
        return {"y": x * x}

    @memo.memfile(path, skip=True)
    def cube(x):
        runs.append("cube")
        return {"y": x ** 3}

    assert square(3) == {"y": 9}
    assert cube(3) == {"y": 27}  # same arguments, same file: still computed
    assert square(3) == {"y": 9} and cube(3) == {"y": 27}
    assert runs == ["square", "cube"]


def test_a_skip_in_a_shared_list_never_returns_another_functions_record():
    data, runs = [], []
    square = memo.memlist(data=data, skip=True)(lambda x: runs.append("s") or {"y": x * x})

    def cube(x):
        runs.append("c")
        return {"y": x ** 3}

    cube = memo.memlist(data=data, skip=True)(cube)
    assert square(2) == {"y": 4} and cube(2) == {"y": 8} and cube(2) == {"y": 8}
    assert runs == ["s", "c"]


V1 = """
    import memo
    @memo.memfile("r.jsonl", skip=SKIP)
    def f(x):
        return {"y": x + 1}
"""


def test_changed_code_is_recomputed_and_comments_are_not_a_change(tmp_path):
    read = "import sweep; print(sweep.f(1)['y'])"
    assert _run(tmp_path, V1.replace("SKIP", "True"), read).strip() == "2"
    edited = V1.replace("SKIP", "True").replace("x + 1", "x + 100")
    assert _run(tmp_path, edited, read).strip() == "101"  # the new code ran
    commented = edited.replace("    def f(x):", "    def f(x):  # a note\n\n        # why")
    assert _run(tmp_path, commented, read).strip() == "101"  # stored: same code
    records = memo.load(tmp_path / "r.jsonl")
    assert [r["y"] for r in records] == [2, 101]


def test_skip_arguments_and_version_say_a_change_does_not_matter(tmp_path):
    read = "import sweep; print(sweep.f(1)['y'])"
    assert _run(tmp_path, V1.replace("SKIP", '"arguments"'), read).strip() == "2"
    edited = V1.replace("SKIP", '"arguments"').replace("x + 1", "x + 100")
    assert _run(tmp_path, edited, read).strip() == "2"  # any version of the code counts
    versioned = V1.replace('skip=SKIP', 'skip=True, version="v1"')
    (tmp_path / "r.jsonl").unlink()
    assert _run(tmp_path, versioned, read).strip() == "2"
    assert _run(tmp_path, versioned.replace("x + 1", "x + 7"), read).strip() == "2"
    bumped = versioned.replace('"v1"', '"v2"').replace("x + 1", "x + 7")
    assert _run(tmp_path, bumped, read).strip() == "8"


def test_the_fingerprint_is_the_same_in_every_process(tmp_path):
    code = "import sweep; print(sweep.f.memo_recorder.version)"
    first = _run(tmp_path, V1.replace("SKIP", "True"), code)
    second = _run(tmp_path, V1.replace("SKIP", "True"), code)
    assert first == second and len(first.strip()) == 8

    def g(x):
        return x

    def h(x):
        return x + 1

    assert fingerprint(g) != fingerprint(h)
    assert function_name(g).endswith("test_the_fingerprint_is_the_same_in_every_process"
                                      ".<locals>.g")


def test_the_identity_stays_out_of_the_table_but_is_in_the_raw_file(tmp_path):
    path = tmp_path / "r.jsonl"
    f = memo.memfile(path)(lambda a, b=2: {"c": a + b})
    f(1)
    raw = json.loads(path.read_text())
    assert raw["$memo"]["a"] == ["a", "b"] and raw["$memo"]["f"].endswith("<lambda>")
    assert memo.load(path) == [{"a": 1, "b": 2, "c": 3}]
    pd = pytest.importorskip("pandas")
    assert list(memo.to_pandas(path).columns) == ["a", "b", "c"]
    assert "$memo" in pd.read_json(path, lines=True).columns  # raw readers still work


def _count_values(path, runs):
    @memo.memfile(path, skip=True)
    def count_values(**kwargs):
        runs.append(kwargs)
        return {"n": len(kwargs)}

    return count_values


def test_a_function_taking_kwargs_resumes_exactly(tmp_path):
    path = tmp_path / "r.jsonl"
    runs = []
    count_values = _count_values(path, runs)
    for _ in range(4):
        assert count_values(a=1) == {"n": 1}
    assert count_values(a=1, b=2) == {"n": 2}
    assert count_values(a=1) == {"n": 1}
    assert count_values(a=1, b=2) == {"n": 2}
    assert runs == [{"a": 1}, {"a": 1, "b": 2}]
    assert len(memo.load(path)) == 2
    fresh = []
    count_values = _count_values(path, fresh)  # the same function, as a new process sees it
    count_values(a=1)
    count_values(a=1, b=2)
    count_values(b=2)
    assert fresh == [{"b": 2}]


def test_records_without_identity_still_resume_with_one_warning(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"x": 1, "y": 10}\n{"x": 2, "y": 20}\n')
    runs = []

    @memo.memfile(path, skip=True)
    def f(x):
        runs.append(x)
        return {"y": x * 10}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert f(1) == {"y": 10} and f(2) == {"y": 20} and f(3) == {"y": 30}
    assert runs == [3]
    legacy = [w for w in caught if issubclass(w.category, LegacyRecordWarning)]
    assert len(legacy) == 1 and "old.jsonl" in str(legacy[0].message)


def test_keys_match_across_a_trip_through_the_file():
    assert call_key("m.f", {"a": 1, "b": 2.0}) == call_key("m.f", {"b": 2, "a": 1.0})
    assert call_key("m.f", {"a": 1}) != call_key("m.g", {"a": 1})
    assert call_key("m.f", {"a": 1}) != call_key("m.f", {"a": 1, "b": None})


def test_a_skip_hit_survives_a_file_replaced_under_the_index(tmp_path):
    path = tmp_path / "r.jsonl"
    runs = []

    @memo.memfile(path, skip=True)
    def f(x):
        runs.append(x)
        return {"y": x}

    for x in range(5):
        f(x)
    # rewrite the file in another order (a compaction): the index's positions are stale
    lines = path.read_text().splitlines()
    tmp = tmp_path / "new.jsonl"
    tmp.write_text("\n".join(reversed(lines)) + "\n")
    os.replace(tmp, path)
    assert [f(x) for x in range(5)] == [{"y": x} for x in range(5)]
    assert runs == list(range(5))


@pytest.mark.parametrize("arguments", [("a", "b"), ()])
def test_a_keyed_call_writes_the_same_identity_as_one_made_whole(arguments):
    """skip=True builds each call's $memo from a part serialized once: it must be the
    identity a Call made from scratch would write, JSON and all."""
    from memo.call import Call
    key = "0123456789abcdef0123"
    base = Call("m.f", 'v"1', arguments)
    keyed = base.keyed()(key)
    whole = Call("m.f", 'v"1', arguments, key)
    assert keyed.tail() == whole.tail()
    assert json.loads(b"{" + keyed.tail()[1:])["$memo"] == whole.meta


def test_the_recorders_key_is_call_key_of_the_function_and_arguments():
    """The recorder hashes from a state fed the function's name once: the same key as
    call_key, which other processes, merges and status compute from records."""
    def f(a, b=2, **more):
        return {}

    rec = memo.memlist(data=[], skip=True)(f).memo_recorder
    for params in ({"a": 1, "b": 2}, {"a": [1, 2.5], "b": None}, {"a": 1, "b": 2, "c": "x"}):
        assert rec.call_of(params).key == call_key(rec.function, params)

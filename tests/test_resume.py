import math

import numpy as np
import pytest

import memo
from memo.call import canonical
from memo.serialize import dumps, loads


@pytest.mark.parametrize("a, b", [
    (1, 1.0), (np.int64(3), 3), (np.float32(0.1), 0.1), ((1, 2), [1, 2]),
    (np.array([1, 2]), [1, 2]), (math.nan, float("nan")), ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
    (np.float64(2.0), 2),
])
def test_same_arguments_same_key(a, b):
    assert canonical({"x": a}) == canonical({"x": b})


@pytest.mark.parametrize("a, b", [(True, 1), ("1", 1), (0.1, 0.2), (None, 0), ([1], 1)])
def test_different_arguments_different_key(a, b):
    assert canonical({"x": a}) != canonical({"x": b})


@pytest.mark.parametrize("value", [1, 0.25, np.float32(0.1), math.inf, 2**80, "s", [1, (2, 3)],
                                   {"k": np.int8(1)}, b"raw", 1 + 2j])
def test_key_survives_a_trip_through_a_file(value):
    line = dumps({"x": value})
    assert canonical({"x": loads(line)["x"]}) == canonical({"x": value})


def test_memlist_skip_does_not_run_the_function_again():
    data, calls = [], []

    @memo.memlist(data=data, skip=True)
    def f(a, b=1):
        calls.append((a, b))
        return {"y": a + b}

    assert f(1) == {"y": 2}
    assert f(1.0, b=1) == {"y": 2}  # same arguments: stored result, body not run
    assert f(2) == {"y": 3}
    assert calls == [(1, 1), (2, 1)]
    assert len(data) == 2


def test_memlist_skip_knows_records_a_runner_delivered_by_batch():
    """Records a Runner hands over by batch (``write_many``) keep the call that made
    each: skip finds its own function's, and not another function's in the same list."""
    data, calls = [], []

    def g(a):
        return {"y": -a}

    @memo.memlist(data=data, skip=True)
    def f(a):
        calls.append(a)
        return {"y": a}

    other = memo.memlist(data=data)(g)  # another function's records in the same list
    sink = f.memo_sink
    for a in range(3):
        sink.write_many([{"a": a, "y": 10 * a}], [f.memo_recorder.call])
    sink.write_many([{"a": 7, "y": 0}], [other.memo_recorder.call])
    assert [f(a) for a in range(3)] == [{"y": 0}, {"y": 10}, {"y": 20}]
    assert f(7) == {"y": 7}  # g's record of a=7 is not f's
    assert calls == [7]


@pytest.mark.parametrize("by_batch", [False, True])
def test_memlist_forgets_the_calls_of_records_its_list_no_longer_holds(by_batch):
    """A list its user clears (or refills) between runs: memo keeps no call for records
    that are gone, so the calls do not pile up run after run."""
    data: list[dict] = []

    @memo.memlist(data=data, skip=True)
    def f(a):
        return {"y": a}

    sink, call = f.memo_sink, f.memo_recorder.call

    def run(n):
        if by_batch:
            sink.write_many([{"a": a, "y": a} for a in range(n)], [call] * n)
        else:
            for a in range(n):
                f(a)

    for _ in range(3):
        data.clear()
        run(50)
    assert len(sink._calls) == 50
    data[:] = [{"a": 1000, "y": 0}]  # refilled by the user's own code
    with pytest.warns(memo.resume.LegacyRecordWarning):  # its record, matched by arguments
        run(5)
        assert f(1) == {"y": 1}  # skip still finds memo's records
    assert len(sink._calls) == 5
    assert set(sink._calls) <= set(map(id, data))


def test_skip_sees_records_added_by_others_and_a_cut_list():
    data, calls = [{"a": 5, "b": 1, "y": 99}], []

    @memo.memlist(data=data, skip=True)
    def f(a, b=1):
        calls.append(a)
        return {"y": a + b}

    assert f(5) == {"y": 99}
    data.append({"a": 6, "b": 1, "y": 100})
    assert f(6) == {"y": 100}
    data.clear()
    assert f(5) == {"y": 6}
    assert calls == [5]


@pytest.mark.parametrize("retry, expected_calls", [(True, 2), (False, 1)])
def test_failed_records_are_retried_unless_asked_not_to(retry, expected_calls):
    data, calls = [], []

    @memo.memlist(data=data, skip=True, retry_failed=retry)
    @memo.ignore_error
    def f(a):
        calls.append(a)
        if len(calls) == 1:
            raise RuntimeError("flaky")
        return {"y": a}

    f(1)
    f(1)
    assert len(calls) == expected_calls


def test_var_keyword_arguments_take_part_in_the_key():
    data, calls = [], []

    @memo.memlist(data=data, skip=True, include=["a", "opt"])
    def f(a, **kw):
        calls.append(kw)
        return {"y": a}

    f(1, opt=1)
    f(1, opt=1)
    f(1, opt=2)
    f(1)
    assert calls == [{"opt": 1}, {"opt": 2}, {}]


def test_excluded_arguments_do_not_distinguish_calls():
    data, calls = [], []

    @memo.memlist(data=data, skip=True, exclude=["verbose"])
    def f(a, verbose=False):
        calls.append(a)
        return {"y": a}

    f(1)
    f(1, verbose=True)
    assert calls == [1]


def test_skip_on_a_sink_that_cannot_resume_is_refused():
    from memo.pipeline import recorder
    from memo.sinks.func import CallbackSink

    with pytest.raises(TypeError, match="skip=True is not supported"):
        recorder(CallbackSink(print), skip=True)

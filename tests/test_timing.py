import datetime as dt
import time

import pytest

import memo


def slow(x):
    time.sleep(0.02)
    return {"y": x}


def test_capture_time_defaults():
    out = memo.capture_time(slow)(1)
    assert set(out) == {"y", "time_taken", "time_start"}
    assert 0.015 < out["time_taken"] < 5
    start = dt.datetime.fromisoformat(out["time_start"])
    assert start.tzinfo is not None
    assert abs((dt.datetime.now(dt.timezone.utc) - start).total_seconds()) < 60


def test_capture_time_options_and_end():
    out = memo.capture_time(time_taken=False, time_start=True, time_end=True)(slow)(1)
    assert set(out) == {"y", "time_start", "time_end"}
    gap = dt.datetime.fromisoformat(out["time_end"]) - dt.datetime.fromisoformat(out["time_start"])
    assert gap.total_seconds() >= 0.015


@pytest.mark.parametrize("deco", [memo.time_taken, memo.time_taken(), memo.timeit, memo.timeit()])
def test_time_taken_and_timeit_are_the_same_thing(deco):
    out = deco(slow)(2)
    assert set(out) == {"y", "time_taken"}


def test_timing_key_collision_is_refused():
    with pytest.raises(memo.KeyCollisionError, match="timing key"):
        memo.capture_time(lambda: {"time_taken": 1})()


def test_exception_propagates_without_timing():
    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        memo.capture_time(boom)()


def test_in_a_record():
    data = []
    memo.memlist(data=data)(memo.time_taken(slow))(3)
    assert data[0]["x"] == 3 and data[0]["time_taken"] > 0.015

import pytest

import memo


def risky(x):
    if x == 0:
        raise ZeroDivisionError("division by zero")
    if x < 0:
        raise KeyError("neg")
    return {"inv": 1 / x}


def test_success_gets_status_ok():
    assert memo.ignore_error(risky)(2) == {"inv": 0.5, "status": "ok"}


def test_failure_becomes_a_record():
    data = []
    f = memo.memlist(data=data)(memo.ignore_error(risky))
    out = f(0)
    assert out["status"] == "error"
    assert data == [{"x": 0, **out}]
    assert out["error_type"] == "ZeroDivisionError"
    assert out["error_message"] == "division by zero"
    assert "risky" in out["error_traceback"] and "ZeroDivisionError" in out["error_traceback"]


def test_qualified_type_for_non_builtins():
    class MyError(Exception):
        pass

    def f():
        raise MyError("m")

    assert memo.ignore_error(f)()["error_type"].endswith("MyError")
    assert "." in memo.ignore_error(f)()["error_type"]


def test_only_chosen_exceptions_are_caught():
    f = memo.ignore_error(exceptions=ZeroDivisionError)(risky)
    assert f(0)["status"] == "error"
    with pytest.raises(KeyError):
        f(-1)


def test_reraise_on_demand(monkeypatch):
    with pytest.raises(ZeroDivisionError):
        memo.ignore_error(reraise=True)(risky)(0)
    monkeypatch.setenv("MEMO_RAISE", "1")
    with pytest.raises(ZeroDivisionError):
        memo.ignore_error(risky)(0)
    monkeypatch.setenv("MEMO_RAISE", "0")
    assert memo.ignore_error(risky)(0)["status"] == "error"


def test_keyboard_interrupt_is_never_swallowed():
    def stop():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        memo.ignore_error(stop)()


def test_traceback_is_short():
    def deep(n):
        if n == 0:
            raise ValueError("bottom")
        return deep(n - 1)

    tb = memo.ignore_error(traceback_limit=3)(deep)(50)["error_traceback"]
    assert tb.count('File "') == 3


def test_non_mapping_return_still_a_type_error():
    with pytest.raises(TypeError, match="mapping"):
        memo.ignore_error(lambda: 3)()

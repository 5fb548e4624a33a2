import functools

import pytest

from memo.binding import Binder


def bind(func, *args, **kwargs):
    return Binder(func).bind(args, kwargs)


def f(a, b=2, *, c=3):
    return {}


def test_positional_keyword_and_defaults_in_signature_order():
    assert bind(f, 1) == {"a": 1, "b": 2, "c": 3}
    assert bind(f, 1, 5, c=7) == {"a": 1, "b": 5, "c": 7}
    out = bind(f, c=0, b=9, a=1)
    assert out == {"a": 1, "b": 9, "c": 0}
    assert list(out) == ["a", "b", "c"]  # signature order, not call order


def test_var_positional_and_var_keyword():
    def g(a, *rest, flag=False, **extra):
        return {}

    assert bind(g, 1, 2, 3, z=4) == {"a": 1, "rest": [2, 3], "flag": False, "z": 4}
    assert bind(g, 1) == {"a": 1, "rest": [], "flag": False}


def test_positional_only():
    def g(a, /, b):
        return {}

    assert bind(g, 1, b=2) == {"a": 1, "b": 2}


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {}, "missing a required argument: 'a'"),
    ((1, 2, 3), {}, "too many positional arguments"),
    ((1,), {"a": 1}, "multiple values for argument 'a'"),
    ((1,), {"nope": 1}, "unexpected keyword argument 'nope'"),
    ((1,), {"c": 1, "d": 2}, "unexpected keyword argument 'd'"),
])
def test_bad_calls_raise_pythons_own_error_with_the_function_name(args, kwargs, message):
    with pytest.raises(TypeError, match=message) as info:
        Binder(f).bind(args, kwargs)
    assert "f()" in str(info.value)


def test_missing_keyword_only():
    def g(*, k):
        return {}

    with pytest.raises(TypeError, match="'k'"):
        bind(g)


def test_exclude_and_include():
    def g(X, y, alpha=1.0, **kw):
        return {}

    assert Binder(g, exclude=["X", "y"]).bind((1, 2), {"extra": 3}) == {"alpha": 1.0, "extra": 3}
    assert Binder(g, include=["alpha"]).bind((1, 2), {"extra": 3}) == {"alpha": 1.0}
    assert Binder(g, exclude=["extra"]).bind((1, 2), {"extra": 3}) == {
        "X": 1, "y": 2, "alpha": 1.0}


def test_exclude_unknown_name_is_an_error():
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['z'\]"):
        Binder(f, exclude=["z"])
    with pytest.raises(ValueError, match="not both"):
        Binder(f, include=["a"], exclude=["b"])
    with pytest.raises(TypeError, match="list of argument names"):
        Binder(f, exclude="a")


def test_methods_leave_out_self_and_cls():
    class K:
        def m(self, x):
            return {}

        @classmethod
        def c(cls, x):
            return {}

    assert Binder(K.m).bind((K(), 1), {}) == {"x": 1}
    assert Binder(K.c.__func__).bind((K, 2), {}) == {"x": 2}


def test_partial_keywords_are_defaults_and_can_be_excluded():
    def train(lr, X, y):
        return {}

    p = functools.partial(train, X=[1, 2], y=[3, 4])
    assert Binder(p).bind((0.1,), {}) == {"lr": 0.1, "X": [1, 2], "y": [3, 4]}
    assert Binder(p, exclude=["X", "y"]).bind((0.1,), {}) == {"lr": 0.1}


def test_names():
    def g(self, a, *args, b, **kw):
        return {}

    assert Binder(g).names == ["a", "args", "b"]
    assert Binder(g, exclude=["args"]).names == ["a", "b"]
    assert Binder(g).has_varkw and not Binder(f).has_varkw


def test_positional_shortcut_binds_like_bind():
    def odd(args, a0, é, kwargs=3):  # names that clash with the compiled function's own
        return None

    count, bind_positional = Binder(odd).positional
    assert count == 4
    assert bind_positional((1, 2, 3, 4)) == Binder(odd).bind((1, 2, 3, 4), {})
    assert list(bind_positional((1, 2, 3, 4))) == ["args", "a0", "é", "kwargs"]

    def nothing():
        return None

    assert Binder(nothing).positional[1](()) == {}


def test_positional_shortcut_only_when_every_parameter_is_recorded_and_plain():
    def f(a, b, *, c):
        return None

    def g(self, a):
        return None

    def h(a, b):
        return None

    assert Binder(f).positional is None
    assert Binder(g).positional is None
    assert Binder(h, exclude=["b"]).positional is None
    assert Binder(h).positional[0] == 2

"""memo's public surface: ``memo.__all__`` sorted and complete, one exception base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import memo
from memo.exceptions import MemoError

# Error classes that do not derive from MemoError yet. Empty this list as each one is
# re-based (``class WriteError(MemoError, OSError)``); the test below fails for a name
# left here after its class was re-based, and for any error class missing from it.


def _modules():
    for info in pkgutil.walk_packages(memo.__path__, "memo."):
        if info.name.rsplit(".", 1)[-1] != "__main__":  # importing it runs the command
            yield importlib.import_module(info.name)


def _error_classes():
    """Every exception class defined in memo's modules (warnings are not errors)."""
    found = {}
    for module in _modules():
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) \
                    and not issubclass(obj, Warning) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_all_is_sorted_without_duplicates():
    assert memo.__all__ == sorted(memo.__all__, key=str.casefold)
    assert len(set(memo.__all__)) == len(memo.__all__)


def test_all_is_complete_and_importable():
    public = {name for name, obj in vars(memo).items()
              if not name.startswith("_") and not inspect.ismodule(obj)}
    assert public == set(memo.__all__)  # every public name exported, nothing else
    for name in memo.__all__:
        namespace: dict = {}
        exec(f"from memo import {name}", namespace)
        assert namespace[name] is getattr(memo, name)


def test_memo_error_is_exported():
    assert memo.MemoError is MemoError


def test_every_error_class_derives_from_memo_error():
    classes = _error_classes()
    assert "memo.web.errors.DeliveryError" in classes  # the walk does reach the packages
    missing = sorted(name for name, cls in classes.items() if not issubclass(cls, MemoError))
    assert not missing, f"error classes that do not derive from MemoError: {missing}"


@pytest.mark.parametrize("name, builtin", [
    ("DeliveryError", OSError), ("WriteError", OSError), ("SerializationError", TypeError),
    ("KeyCollisionError", ValueError), ("RunError", RuntimeError),
])
def test_errors_keep_their_builtin_base(name, builtin):
    assert issubclass(getattr(memo, name), builtin)


def test_exported_errors_derive_from_memo_error():
    for name in memo.__all__:
        obj = getattr(memo, name)
        if inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            qualified = f"{obj.__module__}.{obj.__qualname__}"
            assert issubclass(obj, MemoError), qualified

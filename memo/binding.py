"""Binding a call's arguments to the decorated function's parameter names.

Every decorator records the same thing for a call: each parameter under its
name, in signature order, defaults filled in, ``**kwargs`` expanded into the
record and ``*args`` kept as a list under its own name. A first parameter named
``self`` or ``cls`` is left out, so methods work. The fast path is a plain loop
over precomputed names; anything irregular (a missing argument, a duplicate) is
handed to :meth:`inspect.Signature.bind`, which raises Python's own TypeError.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Binder"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_MISSING = object()


def _positional_binder(names: list[str]) -> Callable[..., dict[str, Any]]:
    """``f(args)`` returning ``{names[0]: args[0], ...}``, compiled for these names.

    A dict display with constant keys is built about three times faster than
    ``dict(zip(names, args))``, which pays for a zip object and a tuple per pair.
    Like the methods :mod:`dataclasses` generates, the source holds only the
    ``repr()`` of each name and local variables ``a0, a1, ...``.
    """
    unpack = "".join(f"a{i}, " for i in range(len(names)))
    items = ", ".join(f"{name!r}: a{i}" for i, name in enumerate(names))
    source = "def bind_positional(args):\n"
    if names:
        source += f"    {unpack}= args\n"
    namespace: dict[str, Any] = {}
    exec(source + f"    return {{{items}}}\n", namespace)
    return namespace["bind_positional"]


class Binder:
    """Turns ``(args, kwargs)`` of calls to ``func`` into the record's argument part."""

    __slots__ = (
        "func", "signature", "_pos", "_kwonly", "_varpos", "_varkw", "_defaults",
        "_keep", "_drop_first", "_names", "_include", "_plain",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
    ) -> None:
        self.func = func
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        self._drop_first = bool(params) and params[0].name in ("self", "cls") and (
            params[0].kind in _POSITIONAL
        )
        self._pos = [p.name for p in params if p.kind in _POSITIONAL]
        self._kwonly = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        self._varpos = next(
            (p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None
        )
        self._varkw = next(
            (p.name for p in params if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        self._defaults = {
            p.name: p.default for p in params if p.default is not inspect.Parameter.empty
        }
        self._names = set(self._pos) | set(self._kwonly)
        if include is not None and exclude is not None:
            raise ValueError("pass include= or exclude=, not both")
        if isinstance(include, str) or isinstance(exclude, str):
            raise TypeError("include= and exclude= take a list of argument names, not a string")
        self._include = list(include) if include is not None else None
        known = self._names | ({self._varpos} if self._varpos else set())
        chosen = set(include if include is not None else exclude or ())
        unknown = chosen - known
        if unknown and self._varkw is None:
            raise ValueError(
                f"{func.__qualname__}() has no parameter(s) {sorted(unknown)} "
                f"to {'include' if include is not None else 'exclude'}"
            )
        first = self._pos[0] if self._drop_first else None
        if include is not None:
            only = frozenset(chosen - {first})

            def keep(name: str) -> bool:
                return name in only
        else:
            hidden = frozenset(chosen | {first} if first else chosen)

            def keep(name: str) -> bool:
                return name not in hidden
        self._keep: Callable[[str], bool] = keep
        # every parameter is positional-or-keyword and recorded: calls that pass exactly
        # those (all positionally, or all by name) take a shortcut in bind()
        self._plain = (
            not self._kwonly and self._varpos is None and self._varkw is None
            and not self._drop_first and all(keep(n) for n in self._pos)
            and all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        )

    @property
    def positional(self) -> tuple[int, Callable[..., dict[str, Any]]] | None:
        """A shortcut for the commonest call: ``(n, f)`` where ``f(args)`` binds a call
        passing exactly ``n`` positional arguments and no keywords; ``None`` unless
        every parameter is positional-or-keyword and recorded."""
        if not self._plain:
            return None
        return len(self._pos), _positional_binder(self._pos)

    @property
    def has_varkw(self) -> bool:
        """Whether the function takes ``**kwargs`` (their names vary per call)."""
        return self._varkw is not None

    def identity(self) -> tuple[list[str], list[str]]:
        """The record keys that identify a call, and those of them a call may lack.

        Raises ValueError for a function with ``**kwargs`` and no ``include=``:
        in a stored record, extra keyword arguments look like outputs.
        """
        names = self.names
        if self._varkw is None:
            return names, []
        if self._include is None:
            raise ValueError(
                f"skip=True on {self.func.__qualname__}(), which takes **{self._varkw}, needs "
                "include=[...] naming the arguments that identify a call: in a stored record "
                "memo cannot tell extra keyword arguments from outputs"
            )
        extra = [n for n in self._include if n not in names]
        return names + extra, extra

    @property
    def names(self) -> list[str]:
        """The declared parameter names that can appear in a record, in order."""
        names = [*self._pos, *([self._varpos] if self._varpos else []), *self._kwonly]
        return [n for n in names if self._keep(n)]

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The record's argument part for ``func(*args, **kwargs)``."""
        pos = self._pos
        n = len(args)
        if self._plain:
            if not kwargs:
                if n == len(pos):
                    return dict(zip(pos, args))
            elif not n and len(kwargs) == len(pos):
                try:
                    return {name: kwargs[name] for name in pos}
                except KeyError:
                    pass
        keep, defaults = self._keep, self._defaults
        if n > len(pos) and self._varpos is None:
            self._strict(args, kwargs)
        out: dict[str, Any] = {}
        for i, name in enumerate(pos):
            if i < n:
                value = args[i]
                if name in kwargs:
                    self._strict(args, kwargs)
            else:
                value = kwargs.get(name, _MISSING)
                if value is _MISSING:
                    value = defaults.get(name, _MISSING)
                    if value is _MISSING:
                        self._strict(args, kwargs)
            if keep(name):
                out[name] = value
        if self._varpos is not None and keep(self._varpos):
            out[self._varpos] = list(args[len(pos):])
        for name in self._kwonly:
            value = kwargs.get(name, _MISSING)
            if value is _MISSING:
                value = defaults.get(name, _MISSING)
                if value is _MISSING:
                    self._strict(args, kwargs)
            if keep(name):
                out[name] = value
        if kwargs and (self._varkw is not None or not kwargs.keys() <= self._names):
            for name, value in kwargs.items():
                if name not in self._names:
                    if self._varkw is None:
                        self._strict(args, kwargs)
                    if keep(name):
                        out[name] = value
        return out

    def _strict(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise the TypeError Python itself would raise for this call.

        An unexpected keyword is named first, as Python does (``Signature.bind`` would
        report the missing argument that a misspelt keyword leaves instead)."""
        if self._varkw is None:
            declared = set(self._pos) | set(self._kwonly)
            for name in kwargs:
                if name not in declared:
                    raise TypeError(f"{self.func.__qualname__}() got an unexpected keyword "
                                    f"argument {name!r}")
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.func.__qualname__}(): {exc}") from None
        raise TypeError(f"{self.func.__qualname__}(): arguments do not match the signature")

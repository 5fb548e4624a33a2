"""``grid`` and ``random_grid``: the settings of a sweep, in an order every process agrees on."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["grid", "random_grid"]


def _axis(name: str, values: Any) -> list[Any]:
    """One dimension of a grid as a list; a string or other scalar is a single value."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        return [values]
    if isinstance(values, Mapping):
        raise TypeError(f"grid value for {name!r} is a mapping; pass a list of its keys or values")
    if hasattr(values, "tolist"):  # numpy arrays: Python scalars in the records
        values = values.tolist()
    if isinstance(values, (set, frozenset)):  # iteration order varies between processes
        try:
            values = sorted(values)
        except TypeError:
            values = sorted(values, key=repr)
    out = list(values)
    if not out:
        raise ValueError(f"grid value for {name!r} is empty, so the grid would be empty")
    return out


def _params(params: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if params is None:
        return kwargs
    if not isinstance(params, Mapping):
        raise TypeError(f"the positional argument must be a dict of parameters, "
                        f"got {type(params).__name__}")
    both = params.keys() & kwargs.keys()
    if both:
        raise TypeError(f"parameter(s) {sorted(both)} given twice")
    return {**params, **kwargs}


class _Default(int):
    """The default seed, 0, told apart from a seed someone passed."""


_SEED = _Default(0)


def _check_seed(seed: Any, where: str) -> None:
    if seed is not None and not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(
            f"{where}(seed=...) is the seed of the random order, a whole number, got "
            f"{type(seed).__name__}; to sweep over a parameter called seed, pass it in a dict "
            f"first: {where}({{'seed': [1, 2, 3]}}, ...)"
        )


def grid(
    params: Mapping[str, Any] | None = None,
    /,
    *,
    shuffle: bool = False,
    seed: int | None = _SEED,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Every combination of the given values, as a list of dicts (the last key varies fastest).

    ``grid(a=[1, 2], b="x")`` gives ``[{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]``:
    any iterable is a dimension (ranges, lists, numpy arrays, generators); a
    string or another non-iterable value is fixed. With ``shuffle=True`` the
    order is a permutation that depends only on ``seed`` (default ``0``), so every
    process and every SLURM array task that builds the same grid gets the same
    order. ``seed=None`` takes an unseeded order: only for a single process.
    Sets are taken in sorted order, so they too give the same grid everywhere.

    A parameter that is itself called ``shuffle`` or ``seed`` goes in a dict
    passed first: ``grid({"seed": [1, 2, 3]}, lr=[0.1, 0.01], shuffle=True)``.
    """
    _check_seed(seed, "grid")
    if not shuffle and type(seed) is not _Default:
        raise TypeError(
            "grid(seed=...) only orders a shuffled grid (shuffle=True); to sweep over a "
            "parameter called seed, pass it in a dict first: grid({'seed': [1, 2, 3]}, ...)"
        )
    axes = {name: _axis(name, values) for name, values in _params(params, kwargs).items()}
    settings = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    if shuffle:
        random.Random(seed).shuffle(settings)
    return settings


def _chooser(choices: list[Any]) -> Callable[[random.Random], Any]:
    def choose(rng: random.Random) -> Any:
        return rng.choice(choices)

    return choose


def random_grid(
    params: Mapping[str, Any] | None = None,
    /,
    *,
    n: int,
    seed: int | None = 0,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """``n`` random settings: each key drawn independently, reproducibly from ``seed``.

    A value may be an iterable (a uniform choice from it, with replacement across
    settings), a callable taking a :class:`random.Random` (``lambda r: 10 ** r.uniform(-4, -1)``)
    or a fixed value (a string or another non-iterable). Parameters called ``n``
    or ``seed`` go in a dict passed first, as with :func:`grid`.
    """
    _check_seed(seed, "random_grid")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"random_grid(n=...) needs a whole number >= 0, got {n!r}")
    rng = random.Random(seed)
    draws: dict[str, Callable[[random.Random], Any]] = {}
    for name, values in _params(params, kwargs).items():
        if callable(values) and not isinstance(values, type):
            draws[name] = values
        else:
            draws[name] = _chooser(_axis(name, values))
    return [{name: draw(rng) for name, draw in draws.items()} for _ in range(n)]

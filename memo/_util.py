"""Small helpers shared by several modules (kept here so each exists once)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["missing", "pid_alive", "qualified_name"]


def missing(feature: str, package: str, extra: str) -> ImportError:
    """The error for an optional dependency that is not installed.

    It names the third-party package to install, and the extra to use from a checkout
    of memo (the name ``memo`` on the package index belongs to an older project).
    """
    return ImportError(f"{feature} needs {package}: install it (pip install {package}), "
                       f"or install memo with the '{extra}' extra from its checkout "
                       f"(pip install '.[{extra}]')")


def qualified_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of a function, the name memo records calls under."""
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', None) or repr(func)}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

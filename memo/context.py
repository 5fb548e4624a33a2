"""Run context: where and in which run a record was made (opt-in).

``capture_context`` adds to each result the keys of :func:`run_context`:

=======================  =========================================================
``host``                 the machine's host name
``pid``                  the process id
``run_start``            when this process started (ISO 8601, UTC)
``slurm_job_id``         ``SLURM_JOB_ID`` (only inside a SLURM job)
``slurm_array_job_id``   ``SLURM_ARRAY_JOB_ID`` (only inside an array job)
``slurm_array_task_id``  ``SLURM_ARRAY_TASK_ID`` (only inside an array job)
``git_commit``           ``HEAD`` of the git repository holding the function's source
``git_dirty``            whether tracked files differ from that commit
=======================  =========================================================

The git keys appear only when the function's file is inside a git work tree and git
is installed. Everything but the pid is computed once per process (the git status
once per repository), so the cost per call is a dict merge.

``memutils`` combines this with :func:`memo.capture_time` in one decorator, as in
``@memutils(time_taken=True, timestamp=True, context=True)``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ._scheduler import slurm_ids
from .record import as_mapping, merge
from .timing import capture_time

__all__ = ["capture_context", "memutils", "run_context"]

F = TypeVar("F", bound=Callable[..., Any])

_process: dict[int, dict[str, Any]] = {}
_git: dict[str, dict[str, Any]] = {}


def _process_start() -> float:
    """When this process started (Linux: from /proc; elsewhere: when memo first asked)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, counted after the command name
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def _process_context() -> dict[str, Any]:
    pid = os.getpid()
    ctx = _process.get(pid)
    if ctx is None:  # first call in this process (a forked child gets its own)
        start = _dt.datetime.fromtimestamp(_process_start(), tz=_dt.timezone.utc)
        ctx = {"host": socket.gethostname(), "pid": pid,
               "run_start": start.isoformat(timespec="seconds")}
        ctx.update(slurm_ids())
        _process.clear()
        _process[pid] = ctx
    return ctx


def _git_context(directory: str) -> dict[str, Any]:
    ctx = _git.get(directory)
    if ctx is None:
        ctx = {}
        try:
            head = subprocess.run(["git", "-C", directory, "rev-parse", "HEAD"],
                                  capture_output=True, text=True, timeout=10)
            if head.returncode == 0:
                status = subprocess.run(
                    ["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"],
                    capture_output=True, text=True, timeout=30)
                ctx = {"git_commit": head.stdout.strip()}
                if status.returncode == 0:
                    ctx["git_dirty"] = bool(status.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            ctx = {}
        _git[directory] = ctx
    return ctx


def _source_dir(func: Callable[..., Any]) -> str:
    try:
        path = inspect.getsourcefile(inspect.unwrap(func))
    except TypeError:
        path = None
    return os.path.dirname(os.path.abspath(path)) if path else os.getcwd()


def run_context(func: Callable[..., Any] | None = None, *, git: bool = True) -> dict[str, Any]:
    """The context keys for a call of ``func`` in this process (see the module's table)."""
    ctx = dict(_process_context())
    if git:
        ctx.update(_git_context(_source_dir(func) if func is not None else os.getcwd()))
    return ctx


def capture_context(func: F | None = None, *, git: bool = True) -> Any:
    """Add the run context (host, pid, run start, SLURM ids, git commit) to the result.

    Works bare (``@capture_context``) or with options (``@capture_context(git=False)``).
    A key that the function also returns is a :class:`memo.KeyCollisionError`.
    """

    def decorate(f: F) -> F:
        name = getattr(f, "__qualname__", repr(f))
        directory = _source_dir(f) if git else ""

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
            result = f(*args, **kwargs)
            ctx = dict(_process_context())
            if git:
                ctx.update(_git_context(directory))
            return merge(as_mapping(result, name), ctx, name, what="context key")

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def memutils(
    func: F | None = None,
    *,
    time_taken: bool = False,
    timestamp: bool = False,
    time_end: bool = False,
    context: bool = False,
    git: bool = True,
) -> Any:
    """Timing and run context in one decorator.

    ``time_taken``, ``timestamp`` (the call's start, ``time_start``) and ``time_end`` are
    :func:`memo.capture_time`'s keys; ``context=True`` adds :func:`capture_context`'s.
    ``@memutils(time_taken=True, timestamp=True)`` equals
    ``@capture_time(time_taken=True, time_start=True)``.
    """
    if not (time_taken or timestamp or time_end or context):
        raise ValueError("memutils() with every option off adds nothing; "
                         "pass time_taken=True, timestamp=True, time_end=True or context=True")

    def decorate(f: F) -> F:
        out: Any = f
        if time_taken or timestamp or time_end:
            out = capture_time(out, time_taken=time_taken, time_start=timestamp,
                               time_end=time_end)
        if context:
            out = capture_context(out, git=git)
        return out  # type: ignore[no-any-return]

    return decorate(func) if func is not None else decorate

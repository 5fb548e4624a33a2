"""``memo status PATH``: where a sweep stands, and what to run to finish it.

:func:`summarize` compares the planned settings (recorded beside the file by
:func:`memo.plan`, ``shard(..., plan=...)`` or ``Runner.run``; see :mod:`memo.plan`)
with the records in the file:

``done``
    planned settings with a successful record (a record whose ``status`` is not
    ``"error"``); a setting matches a record when the record holds the same value for
    every key of the setting (compared like ``skip=True`` does: ``1 == 1.0``, a tuple
    and a list, nan and nan), and the record was written by the planned function
    when both say which one (the record's ``$memo`` key).
``failed``
    planned settings that have only error records (``ignore_error``), counted per
    ``error_type`` of their newest error.
``running``
    planned settings without a record that a live process has claimed
    (``memfile(..., skip=True)`` claims, ``memo.claims.active``).
``missing``
    the rest: planned = done + failed + running + missing.

The rate is the number of records appended since the current run's plan was recorded
(the plan notes each file's size), per minute of the time since then, up to the last
write when the sweep is complete; the time left is what is still to run divided by
that rate. Without a plan, ``done`` and ``failed`` count the distinct calls in the
file (by their arguments, when records name them) and the planned, missing, rate and
time left are unknown.

``memo status --rerun`` prints shell commands that finish the sweep by running only
the missing and failed settings: the ``sbatch --array=...`` of the array tasks that
hold them, for a ``shard(plan=...)`` sweep (with ``MEMO_SHARD_ARRAY`` naming the
original array, so each task takes the same shard as before), or else a Python call
of the planned function on :func:`todo`, or the ``rerun`` command given to
:func:`memo.plan` (it exits 0). Exit status of ``memo status``: 0 when every planned
setting is done, 1 while settings are missing or running, 3 when nothing is left to
run but some failed, 4 when no plan was recorded, 2 when the file does not exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .call import canonical
from .load import META_KEY, read
from .plan import Plan, plan_path, setting_key
from .plan import read as read_plan
from .shardfile import sources

__all__ = ["SweepStatus", "main", "register", "summarize", "todo"]

DONE, FAILED, RUNNING, MISSING = "done", "failed", "running", "missing"


@dataclass
class SweepStatus:
    """How far a sweep is: counts of planned settings by state, rate and time left."""

    planned: int | None
    done: int
    failed: int
    failed_by_type: dict[str, int]
    running: int
    missing: int | None
    rate_per_min: float | None
    eta_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @property
    def complete(self) -> bool:
        """Every planned setting has a successful record."""
        return self.planned is not None and self.done == self.planned


@dataclass
class _Analysis:
    status: SweepStatus
    plan: Plan | None
    states: list[str] = field(default_factory=list)  # per planned setting
    functions: list[str] = field(default_factory=list)  # `$memo.f` values seen in the file


def _claims(path: str) -> list[dict[str, Any]]:
    """The live claims on ``path`` (none where memo.claims is not available)."""
    try:
        claims = importlib.import_module("memo.claims")
    except ImportError:
        return []
    try:
        return list(claims.active(path))
    except (OSError, ValueError):
        return []


def _fn_name(entry: dict[str, Any]) -> str | None:
    fn = entry.get("fn")
    if isinstance(fn, dict) and fn.get("module") and fn.get("qualname"):
        return f"{fn['module']}.{fn['qualname']}"
    return None


def _same_function(planned: str, recorded: str) -> bool:
    """Whether a record's ``$memo`` function is the planned one. A script's function is
    ``__main__.f`` when the script runs and ``script.f`` when a rerun imports it."""
    if planned == recorded:
        return True
    for main, other in ((planned, recorded), (recorded, planned)):
        if main.startswith("__main__."):
            return other.endswith(main[len("__main__"):])
    return False


def _record_fn(r: dict[str, Any]) -> str | None:
    meta = r.get(META_KEY)
    return meta.get("f") if isinstance(meta, dict) else None


def _analyze(path: str, now: float | None = None) -> _Analysis:
    records = read(path, errors="ignore", meta=True)
    plan = read_plan(path)
    claims = _claims(path)
    functions = list(dict.fromkeys(f for f in map(_record_fn, records[:1000]) if f))
    if plan is None:
        status = _unplanned(records, claims)
        return _Analysis(status, None, functions=functions)
    # index the records once per distinct set of planned keys (and planned function)
    indexes: dict[tuple[tuple[str, ...], str | None], dict[bytes, str | None]] = {}
    claimed: dict[tuple[str, ...], set[bytes]] = {}
    states: list[str] = []
    by_type: dict[str, int] = {}
    for setting, origin in zip(plan.settings, plan.origin):
        names = tuple(sorted(setting))
        fn = _fn_name(origin)
        index = indexes.get((names, fn))
        if index is None:
            index = indexes[(names, fn)] = _index(records, names, fn)
            if names not in claimed:
                claimed[names] = {_key(c.get("args") or {}, names) for c in claims} - {b""}
        key = setting_key(setting)
        if key in index:
            etype = index[key]
            if etype is None:
                states.append(DONE)
            else:
                states.append(FAILED)
                by_type[etype] = by_type.get(etype, 0) + 1
        elif key in claimed[names]:
            states.append(RUNNING)
        else:
            states.append(MISSING)
    count = {s: states.count(s) for s in (DONE, FAILED, RUNNING, MISSING)}
    status = SweepStatus(planned=len(states), done=count[DONE], failed=count[FAILED],
                         failed_by_type=dict(sorted(by_type.items())), running=count[RUNNING],
                         missing=count[MISSING], rate_per_min=None, eta_seconds=None)
    _rate(status, path, plan, now)
    return _Analysis(status, plan, states, functions)


def _key(values: dict[str, Any], names: tuple[str, ...]) -> bytes:
    if not isinstance(values, dict) or any(n not in values for n in names):
        return b""
    return canonical({n: values[n] for n in names})


def _index(records: list[dict[str, Any]], names: tuple[str, ...],
           fn: str | None) -> dict[bytes, str | None]:
    """Setting key -> None if a record of it succeeded, else the newest error type."""
    out: dict[bytes, str | None] = {}
    for r in records:
        if fn is not None:
            f = _record_fn(r)
            if f is not None and not _same_function(fn, f):
                continue
        key = _key(r, names)
        if not key:
            continue
        if r.get("status") == "error":
            if out.get(key, "") is not None:  # a success is never undone by a later error
                out[key] = str(r.get("error_type") or "error")
        else:
            out[key] = None
    return out


def _unplanned(records: list[dict[str, Any]], claims: list[dict[str, Any]]) -> SweepStatus:
    calls: dict[Any, str | None] = {}
    for i, r in enumerate(records):
        meta = r.get(META_KEY)
        names = meta.get("a") if isinstance(meta, dict) else None
        key: Any = _key(r, tuple(names)) if isinstance(names, list) else i
        if r.get("status") == "error":
            if calls.get(key, "") is not None:
                calls[key] = str(r.get("error_type") or "error")
        else:
            calls[key] = None
    by_type: dict[str, int] = {}
    for etype in calls.values():
        if etype is not None:
            by_type[etype] = by_type.get(etype, 0) + 1
    failed = sum(by_type.values())
    return SweepStatus(planned=None, done=len(calls) - failed, failed=failed,
                       failed_by_type=dict(sorted(by_type.items())), running=len(claims),
                       missing=None, rate_per_min=None, eta_seconds=None)


def _lines_after(name: str, offset: int) -> int:
    count = 0
    try:
        with open(name, "rb", buffering=0) as f:
            f.seek(offset)
            while chunk := f.read(1 << 22):
                count += chunk.count(b"\n")
    except OSError:
        return 0
    return count


def _rate(status: SweepStatus, path: str, plan: Plan, now: float | None) -> None:
    start = plan.window()
    if start is None or not isinstance(start.get("t"), (int, float)):
        return
    sizes: dict[str, int] = start["sizes"] if isinstance(start.get("sizes"), dict) else {}
    new, last = 0, 0.0
    try:
        names = sources(path)
    except FileNotFoundError:
        names = []
    for name in names:
        full = os.path.abspath(name)
        old = sizes.get(full, 0)
        try:
            st = os.stat(full)
        except OSError:
            continue
        last = max(last, st.st_mtime)
        if st.st_size > old:
            new += _lines_after(full, old)
    end = last if status.complete else (time.time() if now is None else now)
    minutes = (end - start["t"]) / 60
    if new and minutes > 0:
        status.rate_per_min = new / minutes
    elif not status.complete:
        status.rate_per_min = 0.0
    left = (status.missing or 0) + status.running
    if status.complete or left == 0:
        status.eta_seconds = 0.0
    elif status.rate_per_min:
        status.eta_seconds = left / status.rate_per_min * 60


def summarize(path: str | os.PathLike[str]) -> SweepStatus:
    """Where the sweep writing ``path`` stands (see the module docstring)."""
    return _analyze(os.fspath(path)).status


def todo(path: str | os.PathLike[str], *, failed: bool = True) -> list[dict[str, Any]]:
    """The planned settings of ``path`` still to run: the missing ones and (with
    ``failed=True``) those with only failed records. Settings claimed by a running
    process are left out."""
    a = _analyze(os.fspath(path))
    if a.plan is None:
        raise FileNotFoundError(f"memo.status.todo: no plan recorded for {os.fspath(path)} "
                                f"(expected {plan_path(path)})")
    wanted = {MISSING, FAILED} if failed else {MISSING}
    return [s for s, state in zip(a.plan.settings, a.states) if state in wanted]


# --------------------------------------------------------------------------- output


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min"


def format_status(path: str, s: SweepStatus) -> str:
    """The text ``memo status`` prints."""
    if s.planned is None:
        head = (f"{path}: {s.done} calls done, {s.failed} failed; no plan recorded, so what "
                "is missing is unknown (memo.plan, shard(plan=...) or Runner.run record one)")
        lines = [head]
        if s.running:
            lines.append(f"  running    {s.running}")
    else:
        share = f" ({100 * s.done / s.planned:.0f}%)" if s.planned else ""
        lines = [f"{path}: {s.done} of {s.planned} planned settings done{share}"]
        width = len(str(s.planned))
        lines.append(f"  done       {s.done:>{width}}")
        types = ", ".join(f"{k}: {v}" for k, v in s.failed_by_type.items())
        lines.append(f"  failed     {s.failed:>{width}}" + (f"  ({types})" if types else ""))
        lines.append(f"  running    {s.running:>{width}}")
        lines.append(f"  missing    {s.missing:>{width}}")
    if s.rate_per_min is not None:
        lines.append(f"  rate       {s.rate_per_min:.1f} records/min")
    if s.eta_seconds is not None and not s.complete and s.planned is not None:
        left = (s.missing or 0) + s.running
        lines.append(f"  time left  {_duration(s.eta_seconds)}" if left else
                     "  time left  nothing left to run")
    return "\n".join(lines) + "\n"


def exit_code(s: SweepStatus) -> int:
    """0 complete, 1 settings missing or running, 3 only failures left, 4 no plan
    (the constants of :mod:`memo.cli`)."""
    from .cli import FAILURES_LEFT, NO_PLAN, OK, PROBLEMS

    if s.planned is None:
        return NO_PLAN
    if s.complete:
        return OK
    return PROBLEMS if (s.missing or s.running) else FAILURES_LEFT


def rerun_commands(path: str, a: _Analysis) -> str:
    """Shell commands that run only the missing and failed settings of the sweep."""
    plan = a.plan
    if plan is None:
        return ("# no plan recorded: memo cannot tell what is missing\n"
                "# record one with memo.plan(path, settings) or shard(..., plan=path)\n")
    left = [i for i, st in enumerate(a.states) if st in (MISSING, FAILED)]
    s = a.status
    if not left:
        return f"# nothing to rerun: {s.done} done, {s.running} running\n"
    head = (f"# {len(left)} of {s.planned} settings to run ({a.states.count(MISSING)} missing, "
            f"{a.states.count(FAILED)} failed)\n")
    command = plan.latest("rerun")
    if command:
        return head + command + "\n"
    shards = [plan.origin[i].get("shard") for i in left]
    if all(isinstance(sh, dict) and plan.shard_index[i] is not None
           for i, sh in zip(left, shards)):
        groups: dict[tuple[int, int, int, str], set[int]] = {}
        for i, sh in zip(left, shards):
            assert isinstance(sh, dict)
            geometry = (int(sh["low"]), int(sh["step"]), int(sh["count"]),
                        str(sh.get("script") or "YOUR_BATCH_SCRIPT"))
            index = plan.shard_index[i]
            assert index is not None
            groups.setdefault(geometry, set()).add(geometry[0] + index * geometry[1])
        out = [head.rstrip("\n") + " in the array tasks below; add the sbatch options "
               "you first submitted with\n"]
        for (low, step, count, script), tasks in groups.items():
            ids = ",".join(str(t) for t in sorted(tasks))
            out.append(f"MEMO_SHARD_ARRAY={low}:{step}:{count} sbatch --array={ids} "
                       f"{script}\n")
        return "".join(out)
    return head + _python_call(path, plan, left, a.functions)


def _python_call(path: str, plan: Plan, left: list[int], functions: list[str]) -> str:
    fns = {_fn_name(plan.origin[i]) for i in left} - {None}
    entry = next((plan.origin[i] for i in left if _fn_name(plan.origin[i])), None)
    code = ["import memo", "import memo.status"]
    name = "YOUR_FUNCTION"
    if entry is not None and len(fns) == 1:
        fn = entry["fn"]
        module, qualname = fn["module"], fn["qualname"]
        if module == "__main__" and fn.get("file"):
            folder, script = os.path.split(fn["file"])
            code[:0] = ["import sys", f"sys.path.insert(0, {json.dumps(folder)})"]
            module = os.path.splitext(script)[0]
        elif entry.get("cwd"):
            code[:0] = ["import sys", f"sys.path.insert(0, {json.dumps(entry['cwd'])})"]
        if "<" not in qualname:
            top = qualname.split(".")[0]
            code.append(f"from {module} import {top}")
            name = qualname
    elif len(functions) == 1:
        module, _, qualname = functions[0].rpartition(".")
        if module and "<" not in qualname and module != "__main__":
            code.append(f"from {module} import {qualname}")
            name = qualname
    where = json.dumps(os.path.abspath(path))
    code.append(f"memo.Runner().run({name}, memo.status.todo({where}))")
    note = "" if name != "YOUR_FUNCTION" else \
        "# the plan does not say which function: put the decorated one in its place\n"
    return note + "python -c " + shlex.quote("\n".join(code)) + "\n"


def main(path: str, *, rerun: bool = False, as_json: bool = False) -> int:
    from .cli import OK, error

    if not os.path.exists(path) and not os.path.isdir(path + ".shards") \
            and not os.path.exists(plan_path(path)):
        return error("status", f"{path}: no such file, shard folder or plan")
    try:
        a = _analyze(path)
    except FileNotFoundError:  # a plan, no records yet
        plan = read_plan(path)
        n = len(plan) if plan is not None else None
        a = _Analysis(SweepStatus(n, 0, 0, {}, 0, n, None, None), plan, [MISSING] * (n or 0))
    if rerun:  # the answer is the commands printed: 0, so that `... --rerun | bash` runs
        sys.stdout.write(rerun_commands(path, a))
        return OK
    if as_json:
        print(json.dumps(a.status.as_dict()))
    else:
        sys.stdout.write(format_status(path, a.status))
    return exit_code(a.status)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "status", help="where a sweep stands: planned, done, failed, running, missing",
        description="Compare the planned settings of a sweep (memo.plan, shard(plan=...), "
                    "Runner.run) with the records in its file. Exit status 0 when every "
                    "planned setting is done, 1 while some are missing or running, 3 when "
                    "only failures are left, 4 without a plan, 2 when the file is missing.")
    p.add_argument("path", metavar="PATH", help="memo file (or shard-mode target)")
    p.add_argument("--rerun", action="store_true",
                   help="print the commands that run only the missing and failed settings")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(handler=lambda a: main(a.path, rerun=a.rerun, as_json=a.json))


"""``memo.plan``: the settings a sweep means to run, recorded beside its results file.

``memo status`` needs to know what was planned to say what is missing. The plan of
``results.jsonl`` is the sidecar ``results.jsonl.plan``: JSON lines, appended under
the same lock memfile writers take (:func:`memo.locking.hold` on the sidecar), so any
number of processes and SLURM array tasks may record a plan at once. Recording is
idempotent and cheap to repeat: the settings of a plan are stored once, under a
digest of their canonical form, and a later entry with the same settings holds only
the digest (every task of an array records the same plan; the file stays small).
The planned settings of a file are the union over its entries, so plans recorded
for several parts of a sweep add up; ``fresh=True`` starts the sidecar anew.

Each entry (one line) has:

``t``
    Unix time of recording; with ``sizes`` (the byte size of each results file at
    that moment) it lets ``memo status`` count the records written since, for the
    rate and the time left.
``id``, ``n``, ``settings``
    The digest, the number of settings, and (in the first entry of a digest) the list.
``fn``
    ``{"module", "qualname", "file"}`` of the function, when known (``file`` only for
    a function defined in a script run as ``__main__``), and ``cwd``: what a rerun
    command needs to import it.
``job``
    The SLURM job id (array job id) the entry was recorded in, or null.
``shard``
    For a :func:`memo.shard` sweep: ``count``, ``low``, ``step`` (the array's first
    task id and step) and ``index`` (each setting's shard index), so that
    ``memo status --rerun`` can name the array tasks to resubmit; and ``script``,
    the batch script, when SLURM tells it.
``rerun``
    A command that finishes the sweep, when the caller gave one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from . import serialize
from .call import canonical
from .locking import hold
from .shardfile import sources

__all__ = ["SUFFIX", "Plan", "carry", "plan", "plan_path", "read", "record_function"]

SUFFIX = ".plan"


def plan_path(path: str | os.PathLike[str]) -> str:
    """The plan sidecar of the results file ``path``."""
    return os.path.abspath(os.fspath(path)) + SUFFIX


def setting_key(setting: Mapping[str, Any]) -> bytes:
    """The identity of one setting: its keys and values in canonical form, sorted by key."""
    return canonical(setting)


def _digest(settings: list[dict[str, Any]]) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    for s in settings:
        h.update(setting_key(s))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _function(func: Callable[..., Any] | None) -> dict[str, Any] | None:
    if func is None:
        return None
    module = getattr(func, "__module__", None) or "?"
    out: dict[str, Any] = {"module": module,
                           "qualname": getattr(func, "__qualname__", None) or repr(func)}
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if main_file:
            out["file"] = os.path.abspath(main_file)
    return out


def _sizes(path: str) -> dict[str, int]:
    try:
        names = sources(path)
    except FileNotFoundError:
        return {}
    out = {}
    for name in names:
        try:
            out[os.path.abspath(name)] = os.path.getsize(name)
        except OSError:
            pass
    return out


def _job() -> str | None:
    return os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID") or None


def plan(path: str | os.PathLike[str], settings: Iterable[Mapping[str, Any]], *,
         func: Callable[..., Any] | None = None, rerun: str | None = None,
         fresh: bool = False, shard: dict[str, Any] | None = None) -> int:
    """Record that the sweep writing ``path`` means to run ``settings``; return their number.

    ``func``: the function the settings are for (lets ``memo status --rerun`` print a
    Python call that imports it). ``rerun``: a shell command that finishes the sweep
    (``memo status --rerun`` prints it as is). ``fresh=True`` forgets the plans recorded
    before. ``shard`` is what :func:`memo.shard` passes (see the module docstring).
    """
    if isinstance(settings, (Mapping, str, bytes)) or not isinstance(settings, Iterable):
        raise TypeError(f"memo.plan() needs an iterable of settings (such as grid(...)), "
                        f"got {type(settings).__name__}")
    items = []
    for i, s in enumerate(settings):
        if not isinstance(s, Mapping):
            raise TypeError(f"memo.plan(): setting {i} is a {type(s).__name__}, not a mapping "
                            "of argument names to values")
        items.append(msgspec.json.decode(serialize.dumps(dict(s))))
    name = os.fspath(path)
    entry: dict[str, Any] = {"t": time.time(), "id": _digest(items), "n": len(items),
                             "job": _job(), "sizes": _sizes(name)}
    fn = _function(func)
    if fn is not None:
        entry["fn"] = fn
        entry["cwd"] = os.getcwd()
    if rerun is not None:
        entry["rerun"] = rerun
    if shard is not None:
        entry["shard"] = shard
    sidecar = plan_path(name)
    os.makedirs(os.path.dirname(sidecar), exist_ok=True)
    with hold(sidecar) as fd:
        if fresh:
            os.ftruncate(fd, 0)
            known: set[str] = set()
        else:
            known = {e.get("id") for e in _entries(_read_fd(fd))}  # type: ignore[misc]
        if entry["id"] not in known:
            entry["settings"] = items
        os.write(fd, serialize.dumps_line(entry))
    return len(items)


def carry(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> int:
    """Add the plans of the results files ``inputs`` to the plan of ``output``.

    What :func:`memo.merge` does, so that ``memo status`` on a merged file still knows
    what the sweep planned. A shard folder's plan is its target's. Entries already in
    the output's plan are not added again (merging again does not grow it); they lose
    their ``sizes``, which were the sizes of other files. Returns the entries added.
    """
    target = plan_path(output)
    mine = os.path.realpath(target)
    found: list[dict[str, Any]] = []
    for item in inputs:
        name = os.fspath(item)
        for base in (name, name[:-len(".shards")] if name.endswith(".shards") else None):
            sidecar = plan_path(base) if base else None
            if sidecar and os.path.realpath(sidecar) != mine and os.path.exists(sidecar):
                with open(sidecar, "rb") as f:
                    found += _entries(f.read())
    if not found:
        return 0
    lists = {e["id"]: e["settings"] for e in found if isinstance(e.get("settings"), list)}
    added = 0
    with hold(target) as fd:
        have = _entries(_read_fd(fd))
        listed = {e["id"] for e in have if isinstance(e.get("settings"), list)}
        seen = {(e["id"], e.get("t")) for e in have}
        lines = []
        for e in found:
            if (e["id"], e.get("t")) in seen:
                continue
            seen.add((e["id"], e.get("t")))
            e = {k: v for k, v in e.items() if k not in ("sizes", "settings")}
            if e["id"] not in listed and e["id"] in lists:  # the first entry of its digest
                e["settings"] = lists[e["id"]]
                listed.add(e["id"])
            lines.append(serialize.dumps_line(e))
        if lines:
            os.write(fd, b"".join(lines))
        added = len(lines)
    return added


def record_function(func: Callable[..., Any], settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Record ``settings`` as the plan of every results file ``func``'s ``memfile`` sinks
    write (what ``Runner.run`` calls before it runs); return those files' paths."""
    paths = _file_paths(func)
    for p in paths:
        plan(p, settings, func=func)
    return paths


def _file_paths(func: Callable[..., Any]) -> list[str]:
    from .sinks import recorders_of
    from .sinks.file import FileSink

    sinks = [getattr(r.sink, "original", r.sink) for r in recorders_of(func)]
    return list(dict.fromkeys(s.path for s in sinks if isinstance(s, FileSink)))


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _entries(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in data.splitlines():
        try:
            obj = msgspec.json.decode(line)
        except msgspec.DecodeError:  # a torn line of a recorder that died: leave it out
            continue
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            out.append(obj)
    return out


@dataclass
class Plan:
    """The plans recorded for a results file, merged (see :func:`read`)."""

    settings: list[dict[str, Any]] = field(default_factory=list)  # union, first-recorded order
    entries: list[dict[str, Any]] = field(default_factory=list)  # every entry, oldest first
    # per setting (same order): the entry it was first recorded by, and its shard index
    origin: list[dict[str, Any]] = field(default_factory=list)
    shard_index: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.settings)

    def window(self) -> dict[str, Any] | None:
        """The entry that starts the current run: the newest, or for an array job the
        first entry recorded by the newest entry's job."""
        if not self.entries:
            return None
        last = self.entries[-1]
        if last.get("job") is None:
            return last
        return next(e for e in self.entries if e.get("job") == last.get("job"))

    def latest(self, key: str) -> Any:
        """The newest non-null value of ``key`` among the entries."""
        for e in reversed(self.entries):
            if e.get(key) is not None:
                return e[key]
        return None


def read(path: str | os.PathLike[str]) -> Plan | None:
    """The merged plan of the results file ``path``, or None when none was recorded."""
    try:
        with open(plan_path(path), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    entries = _entries(data)
    if not entries:
        return None
    lists = {e["id"]: e["settings"] for e in entries if isinstance(e.get("settings"), list)}
    out = Plan(entries=entries)
    seen: dict[bytes, int] = {}
    for e in entries:
        items = lists.get(e["id"])
        if items is None:
            continue
        shard = e.get("shard") if isinstance(e.get("shard"), dict) else None
        index = shard.get("index") if shard else None
        for i, s in enumerate(items):
            if not isinstance(s, dict):
                continue
            s = serialize.restore(s)
            key = setting_key(s)
            where = seen.get(key)
            if where is None:
                seen[key] = len(out.settings)
                out.settings.append(s)
                out.origin.append(e)
                out.shard_index.append(index[i] if isinstance(index, list) else None)
            elif shard and out.shard_index[where] is None and isinstance(index, list):
                out.shard_index[where] = index[i]
                out.origin[where] = e
    return out


def shard_plan(path: str | os.PathLike[str], items: Sequence[Any], order: Sequence[int],
               count: int, low: int, step: int) -> None:
    """What :func:`memo.shard` records with ``plan=``: the settings and each one's shard."""
    index = [0] * len(items)
    for pos, i in enumerate(order):
        index[i] = pos % count
    shard: dict[str, Any] = {"count": count, "low": low, "step": step, "index": index}
    script = _batch_script(path)
    if script:
        shard["script"] = script
    plan(path, items, shard=shard)


def _batch_script(path: str | os.PathLike[str]) -> str | None:
    """The batch script of this SLURM job (``scontrol show job``), once per job and file."""
    job = _job()
    if job is None:
        return None
    current = read(path)
    if current is not None:
        for e in current.entries:
            if e.get("job") == job and isinstance(e.get("shard"), dict):
                return e["shard"].get("script")  # type: ignore[no-any-return]
    try:
        out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for word in out.split():
        if word.startswith("Command="):
            return word[len("Command="):] or None
    return None

"""What the filesystem gives memo on this host: locks, exclusive creation, and whole
appends from several processes, measured in temporary files beside PATH."""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["MODES", "PAD", "PREFIX", "check_appends", "check_locks", "count_records",
           "try_lock"]

# lock modes whose appends are tested; "none" is plain O_APPEND without a lock
MODES = ("flock", "posix", "soft", "none")
_LOCKS: dict[str, Callable[[int, int], Any]] = {"flock": fcntl.flock, "posix": fcntl.lockf}
PREFIX = ".memo-doctor"


def _folder(path: str) -> str:
    path = os.path.abspath(path)
    return path if os.path.isdir(path) else os.path.dirname(path)


def _temp(folder: str, what: str) -> str:
    return os.path.join(folder, f"{PREFIX}-{what}-{socket.gethostname()}-{os.getpid()}-"
                                f"{uuid.uuid4().hex[:8]}")


def _remove(*paths: str) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _errname(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "error")
    return f"{name} ({exc.strerror})"


def try_lock(kind: str, fd: int) -> tuple[bool | None, str]:
    """Take and release a ``kind`` lock on ``fd``: ``(True, "")`` if it works,
    ``(False, why)`` if the filesystem refuses it, ``(None, why)`` if it is held elsewhere."""
    op = _LOCKS[kind]
    try:
        op(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None, "held by another process"
        return False, _errname(exc)
    op(fd, fcntl.LOCK_UN)
    return True, ""


def check_locks(folder: str) -> dict[str, Any]:
    """Whether flock, POSIX locks and exclusive creation work in ``folder``."""
    out: dict[str, Any] = {}
    name = _temp(folder, "locks")
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for kind in _LOCKS:
            ok, why = try_lock(kind, fd)
            out[kind] = {"works": bool(ok), "error": why or None}
        try:
            os.close(os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644))
            out["exclusive_create"] = {"works": False,
                                       "error": "a second O_EXCL create of one file succeeded"}
        except FileExistsError:
            out["exclusive_create"] = {"works": True, "error": None}
    finally:
        os.close(fd)
        _remove(name)
    return out


def count_records(path: str, expected: dict[str, int]) -> dict[str, int]:
    """Count the doctor's test records in ``path``: ``expected`` maps writer id to records."""
    with open(path, "rb") as f:
        data = f.read()
    seen: dict[tuple[str, int], int] = {}
    torn = 0
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            rec = json.loads(line)
            key = (rec["w"], int(rec["i"]))
            if len(rec["pad"]) != PAD:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            torn += 1
            continue
        seen[key] = seen.get(key, 0) + 1
    want = sum(expected.values())
    got = sum(1 for (w, i) in seen if w in expected and i < expected[w])
    return {"expected": want, "intact": sum(seen.values()), "lost": want - got,
            "duplicated": sum(n - 1 for n in seen.values()), "torn": torn}


PAD = 120


def _append_worker(path: str, mode: str, writer_id: str, records: int, seconds: float,
                   done: Any, slot: int) -> None:
    import warnings

    from ..writer import AppendWriter

    warnings.simplefilter("ignore")
    writer = AppendWriter(path, lock=mode, timeout=60)
    pad = "x" * PAD
    deadline = time.monotonic() + seconds
    for i in range(records):
        if time.monotonic() > deadline:
            break
        writer.append(json.dumps({"w": writer_id, "i": i, "pad": pad}).encode() + b"\n")
        done[slot] = i + 1  # appended: the count comes back through shared memory
    writer.close()


def _run_appenders(path: str, mode: str, tag: str, processes: int, records: int,
                   seconds: float) -> tuple[dict[str, int], str | None]:
    """Run ``processes`` appending processes, each for at most ``records`` records and
    ``seconds``; how many records each writer appended, and an error if one failed."""
    ctx = multiprocessing.get_context("fork")
    done = ctx.Array("i", processes, lock=False)
    names = [f"{tag}{k}" for k in range(processes)]
    procs = [ctx.Process(target=_append_worker, args=(path, mode, w, records, seconds, done, k))
             for k, w in enumerate(names)]
    for p in procs:
        p.start()
    error = None
    for p in procs:
        p.join(seconds + 120)
        if p.is_alive():
            p.kill()
            p.join()
            error = "an appending process did not finish in time"
        elif p.exitcode:
            error = error or f"an appending process failed (exit status {p.exitcode})"
    return {w: done[k] for k, w in enumerate(names)}, error


def _probe_mode(path: str, mode: str) -> str | None:
    """Why ``mode`` cannot be used on ``path`` (its lock is refused), or ``None``."""
    if mode not in _LOCKS:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        ok, why = try_lock(mode, fd)
        return None if ok is not False else why
    finally:
        os.close(fd)


def check_appends(folder: str, processes: int = 4, records: int = 200, seconds: float = 2.0,
                  modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """Append from ``processes`` processes of this host under each lock mode and count
    (each process stops after ``records`` records or ``seconds``, whichever comes first)."""
    out: dict[str, Any] = {}
    for mode in modes:
        name = _temp(folder, f"append-{mode}")
        try:
            refused = _probe_mode(name, mode)
            if refused:
                out[mode] = {"refused": refused}
                continue
            start = time.monotonic()
            ids, error = _run_appenders(name, mode, "p", processes, records, seconds)
            result: dict[str, Any] = count_records(name, ids)
            result["seconds"] = round(time.monotonic() - start, 3)
            if error:
                result["error"] = error
            out[mode] = result
        finally:
            _remove(name, name + ".lock")
    return out

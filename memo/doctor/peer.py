"""``memo doctor --peer``: two hosts meet through files beside PATH and test whether
locks, exclusive creation and appends hold across them (see :mod:`memo.doctor`)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from typing import Any

from .probes import (
    _LOCKS,
    PREFIX,
    _errname,
    _probe_mode,
    _remove,
    _run_appenders,
    count_records,
    try_lock,
)

__all__ = ["Peer", "check_peer"]


class Peer:
    """One side of a two-host check; state travels in small files beside PATH."""

    def __init__(self, folder: str, tag: str, timeout: float) -> None:
        self.base = os.path.join(folder, f"{PREFIX}-peer-{tag}")
        self.timeout = timeout
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self.role = ""
        self.created: list[str] = []
        self.steps: dict[str, Any] = {}  # every step reached so far, with its data

    def path(self, what: str) -> str:
        return f"{self.base}.{what}"

    def join(self) -> str:
        """Become ``"a"`` (the leader) or ``"b"``, by exclusive creation."""
        for role in ("a", "b"):
            try:
                fd = os.open(self.path(role), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            self.role = role
            self.created.append(self.path(role))
            self.put("joined")
            return role
        raise RuntimeError(f"memo doctor --peer: {self.path('a')} and {self.path('b')} exist "
                           "already (two peers joined, or a run was cut short: remove them)")

    def put(self, step: str, **data: Any) -> None:
        """Tell the other side that this one reached ``step`` (steps accumulate, so a
        side that is behind still finds every step the other one passed)."""
        self.steps[step] = data
        tmp = self.path(f"{self.role}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**self.me, "steps": self.steps}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path(self.role))

    def get(self, role: str) -> dict[str, Any] | None:
        try:
            with open(self.path(role), encoding="utf-8") as f:
                text = f.read()
            return json.loads(text) if text else None
        except (FileNotFoundError, ValueError):
            return None

    def wait(self, step: str) -> dict[str, Any]:
        """Wait until the other side has reached ``step``; the data it put with it."""
        other = "b" if self.role == "a" else "a"
        deadline = time.monotonic() + self.timeout
        while True:
            state = self.get(other)
            steps = state.get("steps", {}) if state else {}
            if step in steps:
                return {**steps[step], "host": state["host"], "pid": state["pid"]}  # type: ignore[index]
            if "failed" in steps:
                raise RuntimeError(f"memo doctor --peer: the other side failed: "
                                   f"{steps['failed'].get('error')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"memo doctor --peer: no peer reached step {step!r} within "
                                   f"{self.timeout:g} s (is the other side running, with the "
                                   "same --peer tag?)")
            time.sleep(0.02)

    def cleanup(self) -> None:
        _remove(*self.created, self.path(f"{self.role}.tmp"))


def _peer_locks(peer: Peer, test: str) -> dict[str, Any]:
    """Does a lock the leader holds exclude the other host?"""
    results: dict[str, Any] = {}
    for kind in _LOCKS:
        if peer.role == "a":
            fd = os.open(test, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    _LOCKS[kind](fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = None
                except OSError as exc:
                    held = _errname(exc)
                peer.put(f"hold-{kind}", refused=held)
                seen = peer.wait(f"tried-{kind}")
                if held is None:
                    _LOCKS[kind](fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
            results[kind] = seen["result"]
        else:
            state = peer.wait(f"hold-{kind}")
            result: dict[str, Any]
            if state["refused"]:
                result = {"excludes_peer": None, "error": f"refused: {state['refused']}"}
            else:
                fd = os.open(test, os.O_RDWR)
                try:
                    ok, why = try_lock(kind, fd)
                finally:
                    os.close(fd)
                result = {"excludes_peer": ok is None,
                          "error": why if ok is False else None}
            peer.put(f"tried-{kind}", result=result)
            results[kind] = result
    return results


def _peer_excl(peer: Peer, test: str) -> dict[str, Any]:
    """Does the other host's exclusive create of a file the leader created fail?"""
    if peer.role == "a":
        os.close(os.open(test, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        peer.put("created")
        return peer.wait("tried-create")["result"]  # type: ignore[no-any-return]
    peer.wait("created")
    try:
        os.close(os.open(test, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        result = {"works": False, "error": "the peer's exclusive create of the same file "
                                           "succeeded"}
    except FileExistsError:
        result = {"works": True, "error": None}
    peer.put("tried-create", result=result)
    return result


def _peer_appends(peer: Peer, tests: dict[str, str], processes: int, records: int,
                  seconds: float) -> dict[str, Any]:
    """Both hosts append at once under each lock mode; the leader counts."""
    results: dict[str, Any] = {}
    for mode, test in tests.items():
        peer.put(f"ready-{mode}")
        peer.wait(f"ready-{mode}")
        refused = _probe_mode(test, mode)
        if refused:
            ids: dict[str, int] = {}
            error: str | None = f"refused: {refused}"
        else:
            ids, error = _run_appenders(test, mode, peer.role, processes, records, seconds)
        peer.put(f"appended-{mode}", ids=ids, error=error)
        other = peer.wait(f"appended-{mode}")
        if peer.role == "a":
            if error or other["error"]:
                result: dict[str, Any] = {"refused" if "refused" in (error or other["error"])
                                          else "error": error or other["error"]}
            else:
                result = count_records(test, {**ids, **other["ids"]})
            peer.put(f"counted-{mode}", result=result)
        else:
            result = peer.wait(f"counted-{mode}")["result"]
        results[mode] = result
    return results


def check_peer(folder: str, tag: str, timeout: float, processes: int, records: int,
               seconds: float) -> dict[str, Any]:
    """The two-host checks (see the module doc). Both sides return the same results."""
    peer = Peer(folder, tag, timeout)
    role = peer.join()
    tests = {"locks": peer.path("lockfile"), "excl": peer.path("excl")}
    tests.update({m: peer.path(f"append-{m}") for m in ("posix", "flock", "soft")})
    if role == "a":
        peer.created.extend([*tests.values(), peer.path("append-soft.lock")])
    try:
        other = peer.wait("joined")
        out: dict[str, Any] = {"role": role, "peer": {k: other[k] for k in ("host", "pid")}}
        out["locks"] = _peer_locks(peer, tests["locks"])
        out["exclusive_create"] = _peer_excl(peer, tests["excl"])
        out["appends"] = _peer_appends(peer, {m: tests[m] for m in ("posix", "flock", "soft")},
                                       processes, records, seconds)
        peer.put("done")
        if role == "a":
            try:  # the other side reads our last state before we remove the files
                peer.wait("done")
            except TimeoutError:
                pass
        return out
    except BaseException as exc:
        try:
            peer.put("failed", error=str(exc))
        except OSError:
            pass
        raise
    finally:
        if role == "a":
            time.sleep(0.2)
        peer.cleanup()

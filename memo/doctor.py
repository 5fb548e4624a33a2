"""``memo doctor PATH``: what the filesystem at PATH gives memo, measured on the spot.

A cluster filesystem's guarantees depend on how the site mounted and configured
it, so the doctor measures instead of trusting names. It reports:

* the mount holding PATH: type, options, mount point (:func:`memo.filesystem.mount_info`);
* whether ``flock``, POSIX record locks (``lockf``) and exclusive creation
  (``O_CREAT | O_EXCL``, what the ``soft`` lock file relies on) work there;
* whether appends from this host are whole under each lock mode: a few processes
  append numbered records to a temporary file beside PATH through memo's own
  writer, and the file is counted (intact, torn, lost, duplicated records);
* the lock mode ``lock="auto"`` takes there, and why (:func:`memo.filesystem.auto_lock`).

With ``--peer``, two invocations on two hosts (``srun --ntasks=2 --nodes=2 memo
doctor PATH --peer``) meet through files beside PATH (written whole and renamed
into place, read by reopening: close-to-open consistency is all they need). The
first to create its file exclusively leads. Then, step by step: the leader takes
each kind of lock and the other tries it (does a lock on one host exclude the
other?); the other tries to create a file the leader created exclusively; and
both hosts append at once under each lock mode, after which the leader counts
the records. This is the only way to know whether a cluster's locks are
cluster-wide. Every temporary file is removed at the end, also on failure.

The exit status is 0 when the checks found nothing wrong with memo's automatic
choice, 1 when they did (appends torn or lost, or with ``--peer`` a lock that does
not exclude the other host), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import multiprocessing
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from . import filesystem

__all__ = ["MODES", "count_records", "diagnose", "main", "register"]

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

    from .writer import AppendWriter

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


def _whole(result: dict[str, Any] | None) -> bool:
    """Whether an append test ran and every record landed once and whole."""
    if not result or "refused" in result or "error" in result:
        return False
    return bool(result["lost"] == result["duplicated"] == result["torn"] == 0)


# --- two hosts ---------------------------------------------------------------------------------

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


# --- the report --------------------------------------------------------------------------------

def diagnose(path: str, *, appends: bool = True, processes: int = 4, records: int = 200,
             seconds: float = 2.0, peer: str | None = None, peer_timeout: float = 120.0,
             peer_processes: int = 2) -> dict[str, Any]:
    """Everything ``memo doctor`` reports about ``path``, as a dict (what ``--json`` prints)."""
    folder = _folder(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"memo doctor: {folder} is not a directory")
    choice = filesystem.auto_lock(path)
    info = choice.mount
    report: dict[str, Any] = {
        "path": os.path.abspath(path), "host": socket.gethostname(),
        "mount": {"type": info.type, "options": list(info.options), "point": info.point,
                  "source": info.source, "cluster": info.cluster},
        "checks": check_locks(folder),
    }
    if appends:
        report["appends"] = check_appends(folder, processes, records, seconds)
    env = os.environ.get("MEMO_LOCK", "").strip().lower()
    report["auto"] = {"lock": env if env and env != "auto" else choice.lock,
                      "reason": f"MEMO_LOCK={env} is set" if env and env != "auto"
                      else choice.reason, "scope": choice.scope, "warning": choice.warning}
    if choice.lock in _LOCKS and not report["checks"][choice.lock]["works"]:
        report["auto"]["lock"] = "soft"
        report["auto"]["reason"] += (f"; but {choice.lock} locks are refused here "
                                     f"({report['checks'][choice.lock]['error']}), so memo "
                                     "falls back to the lock file with a warning")
    if peer is not None:
        report["peer"] = check_peer(folder, peer, peer_timeout, peer_processes, records, seconds)
    report["problems"] = _problems(report)
    report["advice"] = _advice(report)
    return report


def _problems(report: dict[str, Any]) -> list[str]:
    problems = []
    mode = report["auto"]["lock"]
    if "appends" in report and not _whole(report["appends"].get(mode)):
        problems.append(f"appends under the automatic lock ({mode}) were not all whole on "
                        "this host")
    if not report["checks"]["exclusive_create"]["works"]:
        problems.append("exclusive creation is not atomic: lock='soft' is not safe here")
    peer = report.get("peer")
    if peer:
        lock = peer["locks"].get(mode) if mode in _LOCKS else None
        if lock is not None and lock["excludes_peer"] is False:
            problems.append(f"a {mode} lock taken on one host does not exclude the other")
        if not _whole(peer["appends"].get(mode)):
            problems.append(f"appends from two hosts under the automatic lock ({mode}) "
                            "were not all whole")
    return problems


def _advice(report: dict[str, Any]) -> str:
    mode = report["auto"]["lock"]
    peer = report.get("peer")
    if peer:
        if _whole(peer["appends"].get(mode)) and not report["problems"]:
            return (f"one shared file with the default lock ({mode}) was safe from both hosts; "
                    "mode='shard' works everywhere too")
        if _whole(peer["appends"].get("soft")) and peer["exclusive_create"]["works"]:
            return "use lock='soft' (slow) or mode='shard' for writers on several hosts"
        return "use mode='shard' for writers on several hosts"
    if report["problems"]:
        return "use mode='shard'"
    scope = report["auto"]["scope"]
    if scope == "node":
        return ("the lock is node-local: for writers on several nodes use mode='shard' or "
                "lock='soft'")
    if scope == "cluster":
        return (f"the default ({mode}) should be safe across nodes; run `memo doctor PATH "
                "--peer` on two nodes to measure it")
    return f"the default ({mode}) is safe for the processes of this machine"


def _describe_append(result: dict[str, Any] | None) -> str:
    if not result:
        return "not tested"
    if "refused" in result:
        return f"lock refused: {result['refused']}"
    text = (f"{result['intact']}/{result['expected']} intact, {result['lost']} lost, "
            f"{result['duplicated']} duplicated, {result['torn']} torn")
    if "seconds" in result:
        text += f" ({result['seconds']:.2f} s)"
    if result.get("error"):
        text += f"; {result['error']}"
    return text


def format_report(report: dict[str, Any]) -> str:
    """The human-readable report."""
    m = report["mount"]
    yes = {True: "yes", False: "no", None: "unknown"}
    lines = [f"memo doctor: {report['path']} (host {report['host']})",
             f"  filesystem:     {m['type']} at {m['point']} from {m['source'] or '?'}"
             f"{' (network/cluster)' if m['cluster'] else ''}",
             f"  options:        {','.join(m['options']) or '-'}"]
    for kind, label in (("flock", "flock"), ("posix", "posix locks"),
                        ("exclusive_create", "O_EXCL create")):
        c = report["checks"][kind]
        lines.append(f"  {label + ':':<16}{'works' if c['works'] else 'fails: ' + c['error']}")
    if "appends" in report:
        lines.append("  appends from this host (several processes, one file):")
        for mode, result in report["appends"].items():
            label = "O_APPEND, no lock" if mode == "none" else f"lock={mode}"
            lines.append(f"    {label:<18} {_describe_append(result)}")
    peer = report.get("peer")
    if peer:
        lines.append(f"  with the peer {peer['peer']['host'] if peer['peer'] else '?'} "
                     f"(this side: {'leader' if peer['role'] == 'a' else 'follower'}):")
        for kind, r in peer["locks"].items():
            text = r["error"] if r["excludes_peer"] is None else yes[r["excludes_peer"]]
            lines.append(f"    a {kind} lock on one host excludes the other: {text}")
        ex = peer["exclusive_create"]
        lines.append(f"    O_EXCL create across hosts: {'atomic' if ex['works'] else ex['error']}")
        for mode, result in peer["appends"].items():
            lines.append(f"    appends from both, lock={mode:<6} {_describe_append(result)}")
    auto = report["auto"]
    lines.append(f"  memo will use:  lock={auto['lock']!r} (mode='shared'): {auto['reason']}")
    if auto["warning"]:
        lines.append(f"  warning:        {auto['warning']}")
    for problem in report["problems"]:
        lines.append(f"  PROBLEM:        {problem}")
    lines.append(f"  advice:         {report['advice']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    tag = args.peer
    if tag == "":
        tag = os.environ.get("SLURM_JOB_ID", "default")
    try:
        report = diagnose(args.path, appends=not args.no_appends, processes=args.processes,
                          records=args.records, seconds=args.seconds, peer=tag,
                          peer_timeout=args.peer_timeout)
    except (OSError, RuntimeError) as exc:
        print(f"memo doctor: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 1 if report["problems"] else 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "doctor", help="check what the filesystem at PATH gives memo (locks, atomic appends)",
        description="Report the filesystem holding PATH and its mount options, test flock, "
                    "POSIX locks, exclusive creation and appends from several processes "
                    "(in temporary files beside PATH, removed afterwards), and say which lock "
                    "memo uses there and why. With --peer, run it on two hosts at once to test "
                    "whether a lock on one excludes the other.")
    p.add_argument("path", metavar="PATH", help="a memo file (need not exist) or its folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--peer", nargs="?", const="", default=None, metavar="TAG",
                   help="meet a second `memo doctor PATH --peer` on another host (TAG tells "
                        "runs apart; default: $SLURM_JOB_ID)")
    p.add_argument("--peer-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for the peer at each step (default 120)")
    p.add_argument("--processes", type=int, default=4,
                   help="appending processes per lock mode (default 4)")
    p.add_argument("--records", type=int, default=200,
                   help="records per appending process (default 200)")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="at most this long per lock mode (default 2)")
    p.add_argument("--no-appends", action="store_true",
                   help="skip the append test on this host")
    p.set_defaults(handler=main)

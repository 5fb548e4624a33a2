"""The doctor's report: :func:`diagnose` gathers the checks into a dict, judges them
(problems, advice), and :func:`format_report` writes it for people."""

from __future__ import annotations

import os
import socket
from typing import Any

from .. import filesystem
from .peer import check_peer
from .probes import _LOCKS, _folder, check_appends, check_locks

__all__ = ["diagnose", "format_report"]


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


def _whole(result: dict[str, Any] | None) -> bool:
    """Whether an append test ran and every record landed once and whole."""
    if not result or "refused" in result or "error" in result:
        return False
    return bool(result["lost"] == result["duplicated"] == result["torn"] == 0)


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

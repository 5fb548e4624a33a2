"""``memo.merge`` and ``memo merge OUT IN...``: many memo files and shards into one file.

* Streaming, in constant memory: inputs are read and validated in large blocks
  (:func:`memo.reader.scan`) and valid lines are copied verbatim.
* Every line is validated; lines that are not one JSON object are reported with
  file and line number and skipped, or written to a side file (``corrupt=``).
* Safe while writers still append: each input is read up to its size when the
  merge reaches it, and only whole lines are taken; a last line still being
  written is reported as incomplete and left for the next merge.
* Idempotent: the output is written to a temporary file beside it and moved into
  place, so merging the same inputs again gives the same file. The output may be
  one of the inputs, even one that memfile writers still append to: then every
  lock a writer may take is held (:func:`memo.locking.hold`) while the merged file
  replaces it with one rename, so the path names the old records or the merged
  ones at every instant (a crash leaves only a temporary file, removed by the
  next merge on that host), and writers waiting for the lock find their file
  replaced (its link count is 0) and append to the new one.
  ``dedupe=True`` drops repeated identical records;
  ``dedupe=["class_size", "n_sim"]`` keeps the first record for each value of
  those keys (a record with ``status == "error"`` never hides a later one, and
  records without those keys are only de-duplicated as exact copies), so a
  file can be merged with new shards again and again without growing twice.
  Only de-duplication keeps state (16 bytes per distinct record).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO

from . import locking, plan, serialize
from ._util import pid_alive, user_stacklevel
from .call import canonical
from .reader import BadLine, BadLineCounts, CorruptLineWarning, Errors, scan
from .shardfile import sources

__all__ = ["MergeReport", "main", "merge", "register"]


@dataclass
class MergeReport(BadLineCounts):
    """Counts of what :func:`merge` did."""

    output: str
    inputs: list[str] = field(default_factory=list)
    records: int = 0  # written to the output
    duplicates: int = 0  # dropped by dedupe
    bytes: int = 0  # of records written
    bad: list[BadLine] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"merged {self.records} records from {len(self.inputs)} file(s) into "
                f"{self.output}; {self.duplicates} duplicate(s) dropped, "
                f"{self.corrupt} corrupt line(s) skipped, "
                f"{self.incomplete} incomplete last line(s) left")


class _Dedupe:
    def __init__(self, keys: bool | Sequence[str]) -> None:
        self.names = None if keys is True else list(keys)  # type: ignore[arg-type]
        self.seen: set[bytes] = set()

    def filter(self, block: bytes) -> tuple[list[bytes], int]:
        kept, dropped, seen = [], 0, self.seen
        for raw in block.split(b"\n")[:-1]:
            if self.names is None:
                ident = hashlib.blake2b(raw, digest_size=16).digest()
            else:
                record = serialize.loads(raw)
                try:
                    # a failed call does not hide its rerun: only its exact copies go
                    key = b"=" + raw if record.get("status") == "error" else \
                        canonical({n: record[n] for n in self.names})
                except KeyError:  # a record without the identity keys: exact copies only
                    key = b"=" + raw
                ident = hashlib.blake2b(key, digest_size=16).digest()
            if ident in seen:
                dropped += 1
            else:
                seen.add(ident)
                kept.append(raw)
        return kept, dropped


def _inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[str] = []
    seen: set[str] = set()
    for item in inputs:
        for name in sources(item):
            real = os.path.realpath(name)
            if real not in seen:  # a file named twice (or via its folder) is read once
                seen.add(real)
                files.append(name)
    return files


def merge(
    output: str | os.PathLike[str],
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    dedupe: bool | Sequence[str] = False,
    corrupt: str | os.PathLike[str] | None = None,
    errors: Errors = "warn",
    lock: str = "auto",
    durable: bool = False,
) -> MergeReport:
    """Combine ``inputs`` (files, shard folders, shard-mode targets) into ``output``.

    Returns a :class:`MergeReport`. Bad lines are reported per ``errors`` (``"warn"``
    with :class:`memo.CorruptLineWarning`, ``"raise"``, ``"ignore"``; they are in
    the report either way) and skipped; with ``corrupt=PATH`` the corrupt lines
    are also written, one per line, to that side file. When ``output`` is also
    one of the inputs, the memfile writers' lock on it is held (``lock="auto"``:
    every mode's lock, :func:`memo.locking.hold`) while the merged file replaces it
    with one rename, so writers that are still appending to it wait, then append to
    the new file, and no record is lost.

    Inputs are never modified, so a merge cut short by a crash can simply be run
    again. ``durable=True`` flushes the output to disk before it replaces the old
    one: use it before deleting the inputs.
    """
    out = os.path.abspath(os.fspath(output))
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    report = MergeReport(output=out, inputs=_inputs(given))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    _remove_stale_temporaries(out)
    live = os.path.exists(out) and os.path.realpath(out) in map(os.path.realpath, report.inputs)
    if not live:
        _merge(out, report, dedupe, corrupt, errors, None, durable)
    else:
        # the output is also an input that memfile writers may be appending to: hold their
        # lock (every mode's, see locking.hold) while the merged file replaces it. Writers
        # waiting for the lock then find their file gone (a link count of 0) and append to
        # the new one.
        with locking.hold(out, lock) as fd:
            _merge(out, report, dedupe, corrupt, errors, fd, durable)
    try:  # what the sweep planned (memo status) goes with its records
        plan.carry(out, given)
    except OSError as exc:
        warnings.warn(f"the plans of the inputs were not added to {plan.plan_path(out)}: "
                      f"{exc}", RuntimeWarning, stacklevel=user_stacklevel())
    return report


_TMP_PREFIX = ".{name}.merge-{host}-"


def _temporary(out: str) -> tuple[int, str]:
    """A new file beside ``out`` for the merged records (same filesystem: renamed over it)."""
    prefix = _TMP_PREFIX.format(name=os.path.basename(out), host=socket.gethostname())
    return tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=".tmp",
                            dir=os.path.dirname(out))


def _remove_stale_temporaries(out: str) -> None:
    """Remove what merges of ``out`` killed on this host (SIGKILL, power loss) left behind."""
    prefix = _TMP_PREFIX.format(name=os.path.basename(out), host=socket.gethostname())
    folder = os.path.dirname(out)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass




def _umask() -> int:
    """This process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _merge(out: str, report: MergeReport, dedupe: bool | Sequence[str],
           corrupt: str | os.PathLike[str] | None, errors: Errors,
           out_fd: int | None, durable: bool) -> MergeReport:
    dedup = _Dedupe(dedupe) if dedupe else None
    fd, tmp = _temporary(out)
    side: IO[bytes] | None = None
    try:
        # a normal file's permissions (mkstemp makes it private): the replaced file's, or
        # what the umask gives a new file
        try:
            mode = os.stat(out).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", buffering=0) as raw, _Writer(raw) as dst:
            for name in report.inputs:
                same = out_fd is not None and os.path.realpath(name) == os.path.realpath(out)
                for item in scan(name, fd=out_fd if same else None):
                    if isinstance(item, BadLine):
                        if item.torn and same and _whole(item.data):
                            # the live output's last record without its newline ("\n".join):
                            # a whole record, kept (no writer is writing: we hold the lock)
                            dst.write(item.data + b"\n")
                            report.records += 1
                            report.bytes += len(item.data) + 1
                            continue
                        if item.torn and same:  # a dead writer's fragment: not left behind
                            item = BadLine(item.path, item.lineno, item.reason, torn=False,
                                           data=item.data)
                        report.bad.append(item)
                        if errors == "raise":
                            raise ValueError(str(item))
                        if errors == "warn":
                            warnings.warn(str(item), CorruptLineWarning,
                                          stacklevel=user_stacklevel())
                        if corrupt is not None and not item.torn:
                            if side is None:
                                side = open(corrupt, "ab")  # noqa: SIM115
                            side.write(item.data + b"\n")
                        continue
                    block, count = item
                    if dedup is not None:
                        kept, dropped = dedup.filter(bytes(block))
                        report.duplicates += dropped
                        if not kept:
                            continue
                        block, count = b"\n".join(kept) + b"\n", len(kept)
                    dst.write(block)
                    report.records += count
                    report.bytes += len(block)
            dst.close()
            if out_fd is not None:
                mode_recorded = locking.recorded_mode(out_fd)
                if mode_recorded is not None:  # the writers' agreed lock, on the new file too
                    locking.record_mode(raw.fileno(), mode_recorded)
            if durable or out_fd is not None:  # a crash after the rename must not lose it
                os.fsync(raw.fileno())
        os.replace(tmp, out)  # atomic: the path names the old file or the merged one
        if durable or out_fd is not None:
            _sync_folder(os.path.dirname(out))
        return report
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        if side is not None:
            side.close()


def _whole(data: bytes) -> bool:
    try:
        return isinstance(serialize.loads(data), dict)
    except (ValueError, RecursionError):
        return False


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Writer:
    """Writes blocks in a thread of its own, so that the copy into the output (which
    releases the GIL) overlaps the validation of the next block. At most ``DEPTH``
    blocks wait, so memory stays bounded."""

    DEPTH = 2

    def __init__(self, dst: IO[bytes]) -> None:
        self._dst = dst
        self._queue: queue.Queue[memoryview | bytes | None] = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="memo-merge-writer",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._dst.write(block)
                except BaseException as exc:  # reported by the next write() or close()
                    self._error = exc

    def write(self, block: memoryview | bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(block)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def main(output: str, inputs: Sequence[str], *, dedupe: bool | Sequence[str] = False,
         corrupt: str | None = None, quiet: bool = False, durable: bool = False,
         lock: str = "auto") -> int:
    """``memo merge``: reports on stderr (the output may be stdout); the exit status of memo.cli.

    Exits 1 when a line was skipped, as ``memo check`` does for it, although the output
    holds every whole record: ``memo merge OUT shards/ && rm -r shards/`` then keeps the
    shards when something was left out.
    """
    from .cli import FAILED, OK, PROBLEMS, error, shown, stdin_paths, stdout_path

    with stdin_paths(inputs) as inputs:
        missing = [p for p in inputs if not os.path.exists(p) and not os.path.isdir(p + ".shards")]
        if missing:
            for p in missing:
                error("merge", f"{p}: no such file or shard folder")
            return FAILED
        if os.path.isdir(output):
            return error("merge", f"{output}: is a folder; OUT is the file to write")
        with stdout_path(output) as target:
            report = merge(target, inputs, dedupe=dedupe, corrupt=corrupt, errors="ignore",
                           durable=durable, lock=lock)
            for bad in report.bad:
                print(shown(str(bad)), file=sys.stderr)
            if not quiet:
                print(shown(str(report)), file=sys.stderr)
    return PROBLEMS if report.bad else OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .cli import add_paths

    p = subparsers.add_parser(
        "merge", help="combine memo files and shard folders into one file",
        description="Combine memo JSONL files and shard folders into OUT, validating every "
                    "line; corrupt lines are reported on stderr and skipped (exit status 1). "
                    "OUT is replaced atomically and may also be an input.")
    p.add_argument("output", metavar="OUT",
                   help="the merged JSONL file to write; '-' writes standard output")
    add_paths(p, "inputs", "IN")
    p.add_argument("--dedupe", action="store_true",
                   help="drop repeated identical records (dedupe=True in memo.merge)")
    p.add_argument("--dedupe-by", action="append", metavar="KEY", default=None,
                   help="keep the first record for each value of KEY (repeatable, or "
                        "comma-separated: --dedupe-by n,seed; dedupe=[...] in memo.merge)")
    p.add_argument("--key", action="append", default=None, help=argparse.SUPPRESS)  # 0.2
    p.add_argument("--corrupt", metavar="FILE", default=None,
                   help="also write the corrupt lines to FILE")
    p.add_argument("--durable", action="store_true",
                   help="flush OUT to disk before it replaces the old one (before deleting IN)")
    p.add_argument("--lock", choices=[m for m in locking.MODES if m != "none"], default="auto",
                   help="the lock to hold when OUT is also an input that writers append to "
                        "(default: every lock a writer may take)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(handler=lambda a: main(
        a.output, a.inputs, dedupe=_dedupe(a), corrupt=a.corrupt, quiet=a.quiet,
        durable=a.durable, lock=a.lock))


def _dedupe(a: argparse.Namespace) -> bool | list[str]:
    """``--dedupe`` / ``--dedupe-by KEY`` as ``memo.merge``'s ``dedupe=``."""
    if a.key:
        print("memo merge: --key is now spelled --dedupe-by", file=sys.stderr)
    keys = [k for arg in (a.dedupe_by or []) + (a.key or []) for k in arg.split(",") if k]
    return keys or a.dedupe

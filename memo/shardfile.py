"""Shard mode: every writer process appends to a file of its own, merged afterwards.

The shards of a target file ``results.jsonl`` live in the folder
``results.jsonl.shards/`` beside it, one file per writer process, named after
the SLURM array task (``slurm-<job>_<task>.``) when there is one, then the host
and the process id: ``slurm-4242_7.node017.31337.jsonl``, ``laptop.31337.jsonl``.
A shard has exactly one writer process, so no inter-process lock is taken; that
makes shard mode correct on any filesystem, including ones whose locks or
appends are node-local. ``memo.load`` and ``memo merge`` read a target together
with its shards.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import weakref
from typing import Any

from ._scheduler import task_label
from .writer import AppendWriter

__all__ = ["SUFFIX", "ShardWriter", "shard_dir", "shard_name", "sources"]

SUFFIX = ".shards"


def shard_dir(path: str | os.PathLike[str]) -> str:
    """The folder that holds the shards of the target file ``path``."""
    return os.path.abspath(os.fspath(path)) + SUFFIX


def shard_name(environ: dict[str, str] | None = None, pid: int | None = None) -> str:
    """The file name of this process's shard."""
    env = os.environ if environ is None else environ
    label = task_label(env)
    prefix = f"{label}." if label else ""
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"{prefix}{host}.{os.getpid() if pid is None else pid}.jsonl"


def _shard_files(folder: str) -> list[str]:
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(folder, n) for n in sorted(names)
            if n.endswith(".jsonl") and not n.startswith(".")]


def sources(path: str | os.PathLike[str]) -> list[str]:
    """The files that hold the records of ``path``, in reading order.

    ``path`` may be a file (then its shards follow it, if it has any), a target
    whose records are only in shards (it need not exist), or a shard folder.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        return _shard_files(name)
    files = [name] if os.path.exists(name) else []
    shards = _shard_files(name + SUFFIX)
    if not files and not shards:
        raise FileNotFoundError(f"no such memo file or shard folder: {name}")
    return files + shards


class ShardWriter:
    """Appends to this process's own shard of a target file; a forked child gets a new shard."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.target = os.path.abspath(os.fspath(path))
        self.folder = shard_dir(self.target)
        self.durable = durable
        self._writer: AppendWriter | None = None
        self._mutex = threading.Lock()
        _LIVE.add(self)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its settings: a copy in another process writes a shard of its own."""
        return (functools.partial(ShardWriter, durable=self.durable), (self.target,))

    @property
    def path(self) -> str:
        """This process's shard file."""
        return os.path.join(self.folder, shard_name())

    def append(self, line: bytes) -> tuple[int, int]:
        """Append ``line`` to this process's shard; returns where it landed (start, stop)."""
        writer = self._writer
        if writer is None:
            with self._mutex:
                if self._writer is None:
                    self._writer = AppendWriter(self.path, durable=self.durable, lock="none")
                writer = self._writer
        return writer.append(line)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _after_fork(self) -> None:
        self._writer = None  # the child is a new writer: it gets a shard of its own
        self._mutex = threading.Lock()


_LIVE: weakref.WeakSet[ShardWriter] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for writer in list(_LIVE):
        writer._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)

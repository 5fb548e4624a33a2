"""Claims: concurrent runs of one sweep never compute a setting twice.

With ``memfile(path, skip=True, claim=True)``, a process that is about to compute a
call first claims it in a small shared file beside the data, ``<path>.claims``.
Every process running the same sweep then skips the settings another one has
claimed, and comes back to them only if that claim is not finished. This turns
"N identical array tasks over one grid" into dynamic load balancing, with no
server: the third way to split a sweep, beside :func:`memo.shard` and
:class:`memo.Runner`.

The claims file is append-only JSON lines, written like the data file (one whole
line per ``write``, under the same lock mode)::

    {"k": "<call key>:<code version>", "s": "c", "o": "host:pid:nonce", "t": 1733050000.1, "l": 60,
     "f": "sweep.train", "a": {"lr": 0.1}, "task": "slurm-4242_3"}

``s`` is ``"c"`` (claim, or its renewal), ``"d"`` (done: the record is in the data
file) or ``"r"`` (released: the call raised). Who holds a key is decided by the
file's order, the same way in every process: the first claim line that is still
live holds it, until its owner writes ``d`` or ``r`` for it. A claim is live while
its owner runs: on the same host, while its process exists; on another host
(another SLURM node), while its lease has not run out (``t + l`` in the future;
owners renew their claims every third of the lease while the call runs). A claim
whose owner died is taken over by the next process that wants the setting.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

import msgspec

from ._scheduler import task_label
from ._util import pid_alive
from .serialize import dumps_line
from .writer import AppendWriter

__all__ = ["Claims", "LEASE", "active", "claims_path"]

LEASE = 60.0  # seconds a claim of another host stays valid without renewal
_HOST = socket.gethostname()


def claims_path(path: str | os.PathLike[str]) -> str:
    """The claims file of the data file ``path``."""
    return os.path.abspath(os.fspath(path)) + ".claims"


class _Line(msgspec.Struct, gc=False):
    k: str
    s: str
    o: str
    t: float = 0.0
    l: float = LEASE  # noqa: E741 - the lease, as written
    f: Any = None
    a: Any = None
    task: Any = None


_decode = msgspec.json.Decoder(_Line).decode




def live(line: _Line, now: float) -> bool:
    """Whether the owner of a claim line still runs (this host) or renews (other hosts)."""
    host, _, rest = line.o.partition(":")
    if host == _HOST:
        pid = rest.partition(":")[0]
        return pid.isdigit() and pid_alive(int(pid))
    return line.t + line.l > now


class _State:
    """The holder of each key, as the claims file says it, kept up to date incrementally."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.holder: dict[str, _Line] = {}  # key -> the claim line that holds it
        self._offset = 0
        self._ident: tuple[int, int] | None = None

    def refresh(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.holder.clear()
            self._offset, self._ident = 0, None
            return
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident != self._ident or st.st_size < self._offset:
                self.holder.clear()
                self._offset, self._ident = 0, ident
            if st.st_size > self._offset:
                data = os.pread(fd, st.st_size - self._offset, self._offset)
                cut = data.rfind(b"\n") + 1
                self._apply(data[:cut])
                self._offset += cut
        finally:
            os.close(fd)

    def _apply(self, data: bytes) -> None:
        now = time.time()
        holder = self.holder
        for raw in data.split(b"\n"):
            if not raw:
                continue
            try:
                line = _decode(raw)
            except (msgspec.DecodeError, RecursionError):
                continue
            current = holder.get(line.k)
            if line.s == "c":
                if current is None or (current.o != line.o and not live(current, now)):
                    holder[line.k] = line  # free, or its holder is gone: this claim takes it
                elif current.o == line.o:
                    holder[line.k] = line  # a renewal
            elif current is not None and current.o == line.o:
                del holder[line.k]

    def holder_of(self, key: str) -> _Line | None:
        line = self.holder.get(key)
        if line is not None and not live(line, time.time()):
            return None
        return line


class Claims:
    """This process's view of a claims file: claim, renew, finish and release calls."""

    def __init__(self, data_path: str | os.PathLike[str], *, lock: str = "auto",
                 lease: float = LEASE) -> None:
        self.path = claims_path(data_path)
        self.lease = lease
        self.lock = lock
        self._writer = AppendWriter(self.path, lock=lock)
        self._state = _State(self.path)
        self._mutex = threading.Lock()
        self._pid = -1
        self._owner = ""
        self._held: dict[str, bytes] = {}  # key -> our claim line (renewed as it is)
        self._renewer: threading.Thread | None = None
        _LIVE.add(self)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_claims, (self.path[:-len(".claims")], self.lock, self.lease))

    @property
    def owner(self) -> str:
        if self._pid != os.getpid():  # a forked child is another owner
            self._pid = os.getpid()
            self._owner = f"{_HOST}:{self._pid}:{uuid.uuid4().hex[:8]}"
            self._held = {}
            self._renewer = None
            self._mutex = threading.Lock()
        return self._owner

    def claim(self, key: str, function: str, arguments: Mapping[str, Any]) -> bool:
        """Claim ``key``; True when this process holds it now (and must compute it)."""
        owner = self.owner
        with self._mutex:
            self._state.refresh()
            current = self._state.holder_of(key)
            if current is not None and current.o != owner:
                return False
            line = dumps_line({"k": key, "s": "c", "o": owner, "t": round(time.time(), 3),
                               "l": self.lease, "f": function, "a": dict(arguments),
                               "task": task_label()}, repr)
            self._writer.append(line)
            self._state.refresh()
            current = self._state.holder_of(key)
            if current is None or current.o != owner:
                return False  # another process's claim came first in the file
            self._held[key] = line
            self._start_renewing()
            return True

    def busy(self, key: str) -> bool:
        """Whether another live process holds ``key`` (it is computing that call now)."""
        owner = self.owner
        with self._mutex:
            self._state.refresh()
            current = self._state.holder_of(key)
        return current is not None and current.o != owner

    def finish(self, key: str, *, done: bool) -> None:
        """The call ``key`` is recorded (``done``) or failed: others may stop waiting."""
        owner = self.owner
        with self._mutex:
            if self._held.pop(key, None) is None:
                return
            self._writer.append(dumps_line({"k": key, "s": "d" if done else "r", "o": owner}))

    def _start_renewing(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        ref = weakref.ref(self)
        pid = os.getpid()

        def run() -> None:
            while True:
                me = ref()
                if me is None or os.getpid() != pid:
                    return
                lease = me.lease
                del me
                time.sleep(lease / 3)
                me = ref()
                if me is None or not me.renew():
                    return
                del me

        self._renewer = threading.Thread(target=run, daemon=True, name="memo-claims-renew")
        self._renewer.start()

    def renew(self) -> bool:
        """Renew every claim this process holds; False when it holds none."""
        with self._mutex:
            if not self._held:
                return False
            for key, line in list(self._held.items()):
                record = msgspec.json.decode(line)
                record["t"] = round(time.time(), 3)
                fresh = dumps_line(record, repr)
                self._writer.append(fresh)
                self._held[key] = fresh
            return True

    def close(self) -> None:
        for key in list(self._held):
            self.finish(key, done=False)
        self._writer.close()


def _claims(path: str, lock: str, lease: float) -> Claims:
    return Claims(path, lock=lock, lease=lease)


_LIVE: weakref.WeakSet[Claims] = weakref.WeakSet()


def active(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The calls that are claimed and being computed now, from the claims file of ``path``.

    Each is a dict with ``fn`` (``module.qualname``), ``args`` (the call's
    arguments), ``owner`` (``host:pid:nonce``), ``task`` (the scheduler task, or
    None), ``t`` (unix time of the last renewal) and ``key``.
    """
    state = _State(claims_path(path))
    state.refresh()
    now = time.time()
    return [{"key": k, "fn": line.f, "args": line.a, "owner": line.o, "task": line.task,
             "t": line.t} for k, line in state.holder.items() if live(line, now)]


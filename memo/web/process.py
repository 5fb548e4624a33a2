"""``memo serve`` in a subprocess, for tests, notebooks and scripts that need a collector."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .errors import ServeError

__all__ = ["ServerProcess"]


class ServerProcess:
    """``memo serve`` running in a subprocess; a context manager that stops it on exit.

    ``args`` are more command-line options (``["--idle-timeout", "2"]``); ``launcher``
    replaces ``[sys.executable, "-m", "memo"]``, the command that ``serve PATH ...``
    follows. :class:`~memo.web.errors.ServeError` when the server does not start.

    >>> with ServerProcess("results.jsonl") as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:40123/
    """

    def __init__(self, path: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, max_body: int | None = None,
                 durable: bool = False, timeout: float = 30.0, args: Sequence[str] = (),
                 launcher: Sequence[str] | None = None) -> None:
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        env.pop("MEMO_TOKEN", None)
        if token is not None:
            env["MEMO_TOKEN"] = token  # not on the command line, where ps shows it
        cmd = list(launcher) if launcher is not None else [sys.executable, "-m", "memo"]
        cmd += ["serve", os.fspath(path), "--host", host, "--port", str(port)]
        if max_body is not None:
            cmd += ["--max-body", str(max_body)]
        if durable:
            cmd.append("--durable")
        cmd += list(args)
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self._out: list[str] = []
        self._err: list[str] = []
        ready = threading.Event()
        # drain both pipes all the time: a server blocked on a full pipe would stop answering
        readers = [threading.Thread(target=_drain, args=(self.process.stdout, self._out, ready),
                                    daemon=True),
                   threading.Thread(target=_drain, args=(self.process.stderr, self._err, None),
                                    daemon=True)]
        for t in readers:
            t.start()
        self._readers = readers
        ready.wait(timeout)
        line = self._out[0] if self._out else ""
        start = line.find("http://")
        if start < 0:
            self.process.kill()
            self.process.wait()
            for t in readers:
                t.join()
            raise ServeError(f"memo serve did not start: {line.strip() or self.stderr.strip()}")
        self.url = line[start:].split()[0]
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    @property
    def output(self) -> str:
        """Everything the server printed so far (stdout, then stderr)."""
        return "".join(self._out) + self.stderr

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the server to finish; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # never leave a server behind
            self.process.wait()
            raise
        for t in self._readers:
            t.join(timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(stream: Any, into: list[str], first: Any) -> None:
    for line in stream:
        into.append(line)
        if first is not None:
            first.set()
    if first is not None:
        first.set()

"""What the test files share: the project root, a subprocess environment, the JSONL line
reader and the fixture of a real ``memo serve`` on loopback.

Import what a test needs (``from helpers import ROOT, env, lines``). A fixture is
used by importing its function (``from helpers import served_fixture  # noqa: F401``)
and then asking for it by its name (``def test_x(served): ...``).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The checkout (the directory holding ``memo/``)."""


def env(*, slurm: bool = True, **extra: str | None) -> dict[str, str]:
    """This process's environment for a subprocess that must import this checkout's memo.

    ``slurm=False`` drops the ``SLURM_*`` variables (a test that must not look like a
    SLURM task); ``extra`` sets more variables, and a variable given as ``None`` is removed
    (``env(MEMO_LOCK=None)``: the child must not inherit it).
    """
    out = {k: v for k, v in os.environ.items() if slurm or not k.startswith("SLURM_")}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), out.get("PYTHONPATH")) if p)
    for name, value in extra.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def lines(path: str | os.PathLike[str]) -> list[dict]:
    """Each line of ``path`` decoded, exactly as written (no memo reader in between).

    The file must end with a newline (or be empty); a missing file has no lines.
    """
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]


@pytest.fixture(name="served")
def served_fixture(tmp_path):
    """A real ``memo serve`` on a free loopback port: ``(server, path of its file)``."""
    from memo.serve import ServerProcess

    path = tmp_path / "served.jsonl"
    with ServerProcess(path) as server:
        yield server, str(path)


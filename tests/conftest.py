"""Shared fixtures: the single-node SLURM cluster for the tests marked ``slurm``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
from filelock import FileLock
from helpers import ROOT

CLUSTER = ROOT / "scripts" / "slurm-cluster.sh"


def _unavailable(reason: str) -> None:
    """Skip, or fail when the environment says SLURM must run (CI sets MEMO_REQUIRE_SLURM=1)."""
    if os.environ.get("MEMO_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM is required (MEMO_REQUIRE_SLURM=1) but {reason}", pytrace=False)
    pytest.skip(f"no SLURM cluster: {reason}")


def _status() -> bool:
    if not shutil.which("sinfo"):
        return False
    done = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True)
    return done.returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A running single-node cluster (started with scripts/slurm-cluster.sh if it is not).

    The cluster is left running for the other test processes; stop it with
    ``scripts/slurm-cluster.sh stop``.
    """
    # xdist runs one session per worker: only one of them may start the daemons
    with FileLock(os.path.join(tempfile.gettempdir(), "memo-slurm-cluster.lock")):
        if _status():
            return "running"
        if os.geteuid() != 0:
            _unavailable("starting it needs root (run scripts/slurm-cluster.sh start as root)")
        if not shutil.which("slurmctld") and not shutil.which("apt-get"):
            _unavailable("slurmctld is not installed and apt-get is not available")
        try:
            done = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True,
                                  text=True, timeout=900)
        except subprocess.TimeoutExpired:
            _unavailable("scripts/slurm-cluster.sh start did not finish within 15 minutes")
        if done.returncode != 0 or not _status():
            _unavailable(f"scripts/slurm-cluster.sh start failed:\n{done.stdout}{done.stderr}")
    return "started"


@pytest.fixture
def module(tmp_path, monkeypatch):
    """Import a module written to ``tmp_path``: loky, spawned and Dask workers import it by name."""
    import importlib
    import textwrap

    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return importlib.import_module(name)

    return make

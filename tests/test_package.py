"""The package's identity: version, license and metadata, the platform guard, old names."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, env

import memo


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_version_is_single_sourced() -> None:
    assert memo.__version__ == "0.3.0"
    assert _setup_cfg()["metadata"]["version"] == "attr: memo.__version__"


def test_license_and_project_urls() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "memo contributors" in text
    meta = _setup_cfg()["metadata"]
    assert meta["license"] == "MIT"
    urls = dict(line.split(" = ", 1) for line in meta["project_urls"].strip().splitlines())
    assert set(urls) == {"Source", "Documentation", "Issues"}
    assert all(url.startswith("https://github.com/koaning/memo") for url in urls.values())
    assert "Operating System :: POSIX :: Linux" in meta["classifiers"]


def test_memwand_is_memwandb() -> None:
    assert memo.memwand is memo.memwandb
    assert "memwand" in memo.__all__


def test_memwand_logs_a_run(tmp_path: Path) -> None:
    """The seed's spelling works end to end: one offline W&B run per call."""
    code = (
        "import memo\n"
        "@memo.memwand(project='p', dir='runs', mode='offline')\n"
        "def f(x):\n"
        "    return {'y': x * 2}\n"
        "f(1); f(2)\n"
    )
    (tmp_path / "runs").mkdir()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          env=env(WANDB_SILENT="true", WANDB_MODE="offline"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "runs" / "wandb").glob("offline-run-*"))) == 2


def test_import_on_windows_names_the_reason() -> None:
    """On Windows (sys.platform == "win32") import memo fails with why, not on fcntl."""
    code = "import sys; sys.platform = 'win32'; import memo"
    done = subprocess.run([sys.executable, "-c", code], env=env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: memo does not run on Windows")
    assert "fcntl" in last and "WSL" in last

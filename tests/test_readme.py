"""Every code block in README.md runs here, so the docs cannot rot.

- ``python`` blocks are saved as a script and run with this Python, as a user
  would run them, in one temporary folder per README section (so a later block
  of a section may read the files an earlier one wrote).
- ``bash`` blocks run with bash in that folder, with a ``memo`` command on PATH.
- ``json`` blocks must be records that memo reads and writes back unchanged.
- A block right after ``<!-- run by .ci/run -->`` is the Quickstart: its lines
  must appear, as written, in ``.ci/run``, which runs them from a clean checkout.
- A block right after ``<!-- needs the SLURM cluster -->`` runs on the test
  cluster (tests/conftest.py), with ``scripts/`` beside it; the jobs a bash block
  submits are waited for before the next block runs.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memo import serialize

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(
    r"(?:<!-- (?P<note>[^>]*?) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S)


def sections():
    """The README's code blocks, grouped by ``## `` section, in order."""
    text = README.read_text()
    grouped: dict[str, list[tuple[str, str, str | None, int]]] = {}
    for m in FENCE.finditer(text):
        section = text.rfind("\n## ", 0, m.start())
        title = text[section + 4: text.index("\n", section + 4)] if section >= 0 else "intro"
        line = text.count("\n", 0, m.start("code")) + 1
        grouped.setdefault(title, []).append((m["lang"], m["code"], m["note"], line))
    return grouped


def _memo_shim(folder: Path) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "memo"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m memo "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _wait_for(job: str, limit: float = 300) -> None:
    """Until no task of the job is pending or running (squeue lists none)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        if queued.returncode == 0 and not queued.stdout.strip():
            return
        time.sleep(0.3)
    pytest.fail(f"SLURM job {job} still queued after {limit} s")


def test_readme_has_blocks():
    langs = [lang for blocks in sections().values() for lang, *_ in blocks]
    assert langs.count("python") >= 5 and "bash" in langs


@pytest.mark.parametrize("title", list(sections()))
def test_section(title, tmp_path, request):
    """The blocks of one section run in order, in one folder."""
    for lang, code, note, line in sections()[title]:
        run_block(lang, code, note, tmp_path, request, where=f"README.md line {line}")


def run_block(lang, code, note, folder, request, where):
    if note == "run by .ci/run":
        ci = (ROOT / ".ci" / "run").read_text()
        for line in code.splitlines():
            assert line in ci, f".ci/run does not run the README's {line!r} ({where})"
        return
    slurm = note == "needs the SLURM cluster"
    if slurm:
        request.getfixturevalue("slurm_cluster")
        if not (folder / "scripts").exists():
            (folder / "scripts").symlink_to(ROOT / "scripts")
    elif note:
        pytest.fail(f"unknown README block note {note!r} ({where})")
    env = dict(os.environ)
    env["PATH"] = f"{_memo_shim(folder)}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if lang == "python":
        script = folder / "readme_block.py"
        script.write_text(code + "\n")
        command = [sys.executable, str(script)]
    elif lang in ("bash", "sh", "console"):
        command = ["bash", "-euo", "pipefail", "-c", code]
    elif lang == "json":
        for line in code.splitlines():
            compact = line.replace(": ", ":").replace(", ", ",")
            assert serialize.dumps(serialize.loads(line)).decode() == compact, where
        return
    else:
        pytest.fail(f"README block in language {lang!r} has no runner ({where})")
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{where}:\n{done.stdout}{done.stderr}"
    if slurm:
        for job in re.findall(r"Submitted batch job (\d+)", done.stdout):
            _wait_for(job)

"""Every code block in README.md runs here, so the docs cannot rot.

- ``python`` blocks are saved as a script and run with this Python, as a user
  would run them, in one temporary folder per README section (so a later block
  of a section may read the files an earlier one wrote).
- ``bash`` blocks run with bash in that folder, with a ``memo`` command on PATH.
- ``json`` blocks must be records that memo reads and writes back unchanged.
- A block right after ``<!-- run by .ci/run -->`` is the Quickstart: its lines
  must appear, as written, in ``.ci/run``, which runs them from a clean checkout.
- A block right after ``<!-- not run here: REASON -->`` is skipped with that reason.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from memo import serialize

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(
    r"(?:<!-- (?P<note>[^>]*?) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S)


def blocks():
    text = README.read_text()
    out = []
    for m in FENCE.finditer(text):
        section = text.rfind("\n## ", 0, m.start())
        title = text[section + 4: text.index("\n", section + 4)] if section >= 0 else "intro"
        line = text.count("\n", 0, m.start("code"))
        out.append(pytest.param(title, m["lang"], m["code"], m["note"],
                                id=f"{title}-line{line}"))
    return out


@pytest.fixture(scope="module")
def section_dirs(tmp_path_factory):
    return {}


def _memo_shim(folder: Path) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "memo"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m memo "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_readme_has_blocks():
    langs = [p.values[1] for p in blocks()]
    assert langs.count("python") >= 5 and "bash" in langs


@pytest.mark.parametrize("title, lang, code, note", blocks())
def test_block(title, lang, code, note, section_dirs, tmp_path_factory):
    if note and note.startswith("not run here"):
        pytest.skip(note)
    if note == "run by .ci/run":
        ci = (ROOT / ".ci" / "run").read_text()
        for line in code.splitlines():
            assert line in ci, f".ci/run does not run the README's {line!r}"
        return
    folder = section_dirs.setdefault(title, tmp_path_factory.mktemp("readme"))
    env = dict(os.environ)
    env["PATH"] = f"{_memo_shim(folder)}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if lang == "python":
        script = folder / "readme_block.py"
        script.write_text(code + "\n")
        command = [sys.executable, str(script)]
    elif lang in ("bash", "sh", "console"):
        command = ["bash", "-euo", "pipefail", "-c", code]
    if lang in ("python", "bash", "sh", "console"):
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    elif lang == "json":
        for line in code.splitlines():
            record = serialize.loads(line)
            assert serialize.dumps(record) == serialize.dumps(serialize.loads(
                serialize.dumps(record)))
            assert serialize.dumps(record).decode() == line.replace(": ", ":").replace(", ", ",")
    else:
        pytest.fail(f"README block in language {lang!r} has no runner")

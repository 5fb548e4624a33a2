"""Every code block of README.md and of the documentation site runs here, so the docs cannot rot.

Each page (README.md and every ``docs/**/*.md``) is one test: its blocks run in
order in a fresh temporary folder (a later block may read what an earlier one
wrote), and then the whole page runs a second time in the same folder, because a
reader who follows a page twice must get what it says twice: every example starts
from a clean file of its own.

- ``python`` blocks are saved as a script and run with this Python (``sys.executable``).
  On a page marked ``<!-- notebook: ... -->`` they are cells of one session: they run
  together, as one script, at the page's last python block.
- ``bash`` blocks run with ``bash -euo pipefail``; ``python``, ``python3`` and ``memo``
  on their PATH are this Python and this checkout's memo, whatever else is installed.
- ``json`` blocks must be records that memo reads and writes back unchanged.
- ``text`` blocks are not run (commands to install, output, help texts).
- A block right after ``<!-- run by .ci/run -->`` is the Quickstart: its lines must
  appear, as written, in ``.ci/run``, which runs them from a clean checkout.
- A block right after ``<!-- needs the SLURM cluster -->`` runs on the test cluster
  (tests/conftest.py), with ``scripts/`` beside it; the jobs a bash block submits are
  waited for before the next block runs.

The site itself must build with ``mkdocs build --strict`` (test_site_builds).
"""

from __future__ import annotations

import configparser
import inspect
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, env

import memo
from memo import serialize

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(
    r"^(?:<!-- (?P<note>[^>]*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)\n```$", re.S | re.M)
NOTES = ("run by .ci/run", "needs the SLURM cluster")
NOTEBOOK = re.compile(r"^<!-- notebook: .*-->$", re.M)
RUN = ("python", "bash", "json")
NOT_RUN = ("text",)


def blocks(page: Path) -> list[tuple[str, str, str | None, int]]:
    """``(lang, code, note, line)`` of every fenced block of a page, in order."""
    text = page.read_text()
    return [(m["lang"], m["code"], m["note"], text.count("\n", 0, m.start("code")) + 1)
            for m in FENCE.finditer(text)]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _bin(folder: Path) -> Path:
    """A folder for the front of PATH: ``python``, ``python3`` and ``memo`` of this test run."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir(exist_ok=True)
    for name, command in (("python", ""), ("python3", ""), ("memo", " -m memo")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}"{command} "$@"\n')
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


def run_block(lang: str, code: str, note: str | None, folder: Path,
              request: pytest.FixtureRequest, where: str, cells: list[str] | None = None,
              last: bool = True) -> None:
    """Run one block in ``folder``.

    ``cells`` collects the python blocks of a notebook page; they run, as one script, when
    the block is ``last`` (the page's last python block).
    """
    if note == "run by .ci/run":
        ci = (ROOT / ".ci" / "run").read_text()
        for line in code.splitlines():
            assert line in ci, f".ci/run does not run {line!r} ({where})"
        return
    slurm = note == "needs the SLURM cluster"
    if slurm:
        request.getfixturevalue("slurm_cluster")
        if not (folder / "scripts").exists():
            (folder / "scripts").symlink_to(ROOT / "scripts")
    if lang in NOT_RUN:
        return
    if lang == "json":
        for line in code.splitlines():
            compact = line.replace(": ", ":").replace(", ", ",")
            assert serialize.dumps(serialize.loads(line)).decode() == compact, where
        return
    if lang == "python":
        if cells is not None:
            cells.append(f"# {where}\n{code}")
            if not last:
                return
            code = "\n".join(cells)
        script = folder / "docs_block.py"
        script.write_text(code + "\n")
        command = [sys.executable, str(script)]
    else:
        command = ["bash", "-euo", "pipefail", "-c", code]
    search = os.pathsep.join(
        [str(_bin(folder)), os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    done = subprocess.run(command, cwd=folder, env=env(PATH=search), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{where}:\n{done.stdout}{done.stderr}"
    if slurm:
        for job in re.findall(r"Submitted batch job (\d+)", done.stdout):
            _wait_for(job)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_page_runs_twice(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The page's blocks run in order in one folder; then all of them again, in the same one."""
    found = blocks(page)
    notebook = bool(NOTEBOOK.search(page.read_text()))
    last_python = max((i for i, (lang, *_) in enumerate(found) if lang == "python"), default=-1)
    for attempt in ("first", "second"):
        cells: list[str] | None = [] if notebook else None
        for i, (lang, code, note, line) in enumerate(found):
            run_block(lang, code, note, tmp_path, request,
                      where=f"{_name(page)} line {line} ({attempt} run of the page)",
                      cells=cells, last=i == last_python)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_block_is_labelled(page: Path) -> None:
    """A block without a language, or in one without a runner, would silently not be tested."""
    for lang, _code, note, line in blocks(page):
        assert lang in RUN + NOT_RUN, (
            f"{_name(page)} line {line}: a code block needs one of the languages "
            f"{RUN + NOT_RUN}, got {lang!r}")
        assert note is None or note in NOTES, f"{_name(page)} line {line}: unknown note {note!r}"
        assert not (note and lang in NOT_RUN), f"{_name(page)} line {line}: a note on a text block"


def test_examples_leave_the_demos_file_alone() -> None:
    """The Quickstart's demo writes results.jsonl; an example that used it would mix records."""
    for page in PAGES:
        for lang, code, note, line in blocks(page):
            if lang in RUN and note != "run by .ci/run":
                assert "results.jsonl" not in code, f"{_name(page)} line {line} uses results.jsonl"


def test_readme_is_a_landing_page() -> None:
    text = README.read_text()
    assert len(text.encode()) < 8 * 1024
    quickstart = [code for lang, code, note, _ in blocks(README) if note == "run by .ci/run"]
    assert quickstart == ['pip install . && python -m memo demo\n'
                          'pip install ".[test]" && python -m pytest -n auto']
    assert "](docs/img/demo.png)" in text
    for link in re.findall(r"\]\((docs/[^)#]+\.md)", text):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_install_hints_work_from_the_checkout() -> None:
    """`memo` on the package index is an older project: never send readers there for extras."""
    for page in PAGES:
        for lineno, line in enumerate(page.read_text().splitlines(), 1):
            assert not re.search(r"memo\[", line), f"{_name(page)}:{lineno}: {line.strip()}"


def _extras() -> set[str]:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return set(cfg["options.extras_require"])


def test_extras_in_the_docs_are_the_checkouts() -> None:
    """Every `.[extra]` a page names exists, and the README and home page list them all."""
    extras = _extras()
    for page in PAGES:
        for name in re.findall(r"\.\[(\w+)\]", page.read_text()):
            assert name in extras, f"{_name(page)} names the extra {name!r}, not in setup.cfg"
    listed = re.search(r"Install from this checkout.*?\)\.", README.read_text(), re.S)
    assert listed and set(re.findall(r"`(\w+)`", listed.group())) == extras
    home = (DOCS / "index.md").read_text()
    line = home[home.index("# with an extra:"):home.index("memo --version")]
    assert set(re.findall(r"\w+", line)) - {"with", "an", "extra"} == extras


def _reference() -> str:
    return "\n".join(p.read_text() for p in sorted((DOCS / "reference").glob("*.md")))


def test_reference_documents_every_public_name() -> None:
    """A ``::: memo.NAME`` block for each name; an alias (memwand) is named beside its original."""
    reference = _reference()
    documented = set(re.findall(r"^::: memo\.(\w+)$", reference, re.M))
    originals = {id(getattr(memo, name)) for name in documented}
    aliases = {name for name in memo.__all__
               if id(getattr(memo, name)) in originals and f"`memo.{name}`" in reference}
    missing = sorted(set(memo.__all__) - documented - aliases)
    assert not missing, f"docs/reference has no '::: memo.NAME' for {missing}"


def test_reference_documents_every_parameter() -> None:
    """Each parameter of each public callable is named in its docstring or on the reference page."""
    reference = _reference()
    undocumented = []
    for name in memo.__all__:
        obj = getattr(memo, name)
        if isinstance(obj, type) and issubclass(obj, (BaseException, Warning)):
            continue  # an exception's constructor is memo's, not the reader's
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        doc = inspect.getdoc(obj) or ""
        for param in signature.parameters.values():
            if param.name == "func" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue  # the decorated function itself; the dimensions of a grid
            mentioned = re.compile(rf"`{re.escape(param.name)}\b")
            if not (mentioned.search(doc) or mentioned.search(reference)):
                undocumented.append(f"{name}({param.name})")
    assert not undocumented, f"parameters documented nowhere: {undocumented}"


@pytest.mark.slow
def test_site_builds(tmp_path: Path) -> None:
    """``mkdocs build --strict``: no broken link, no missing reference, the CLI page renders."""
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=ROOT, env=env(NO_MKDOCS_2_WARNING="1"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    cli = (site / "cli" / "index.html").read_text()
    for command in ("demo", "check", "merge", "serve", "resend"):
        assert f"memo {command}" in cli
    assert "memfile" in (site / "reference" / "decorators" / "index.html").read_text()

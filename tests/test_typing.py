"""Decorators keep the wrapped function's signature for type checkers, stacked or bare."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

SCRIPT = textwrap.dedent("""
    import memo

    @memo.memfile("x.jsonl", skip=True)
    @memo.capture_time
    @memo.ignore_error
    def stacked(a: int, b: str = "x") -> dict[str, float]:
        return {"y": 1.0}

    @memo.memlist(data=[])
    @memo.time_taken
    @memo.ignore_error(reraise=True)
    def options(a: int) -> dict[str, int]:
        return {"y": a}

    @memo.memstdout
    @memo.capture_time(time_end=True)
    def bare(a: float) -> dict[str, float]:
        return {"y": a}

    reveal_type(stacked)
    reveal_type(options)
    reveal_type(bare)
    stacked("not an int")
""")


@pytest.mark.slow
def test_stacked_decorators_keep_the_signature(tmp_path):
    pytest.importorskip("mypy")
    script = tmp_path / "typed.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                           "--cache-dir", str(tmp_path / ".mypy"), str(script)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "MYPYPATH": str(ROOT)})
    out = done.stdout
    assert 'Revealed type is "def (a: int, b: str =) -> dict[str, float]"' in out, out
    assert 'Revealed type is "def (a: int) -> dict[str, int]"' in out, out
    assert 'Revealed type is "def (a: float) -> dict[str, float]"' in out, out
    # and a wrong call is caught: the checker sees the real parameters
    assert 'Argument 1 to "stacked" has incompatible type "str"; expected "int"' in out, out
    assert out.count("error:") == 1, out

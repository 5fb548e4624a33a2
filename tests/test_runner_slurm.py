"""``Runner("slurm")`` with ``skip=True`` on the real cluster: a finished sweep submits nothing."""

from __future__ import annotations

import os
import textwrap

import pytest
from helpers import ROOT

from memo import Runner, grid, load

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]


def test_a_rerun_submits_only_what_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    out = tmp_path / "resumed.jsonl"
    (tmp_path / "resumed_sweep.py").write_text(textwrap.dedent(f"""
        import os
        from memo import memfile

        @memfile({str(out)!r}, skip=True)
        def f(x):
            return {{"y": x * x, "job": os.environ.get("SLURM_ARRAY_JOB_ID")}}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    import resumed_sweep

    jobs = tmp_path / "jobs"
    runner = Runner("slurm", n_jobs=2, folder=jobs, poll_interval=0.2)
    first = runner.run(resumed_sweep.f, grid(x=range(6)))
    assert (first.done, first.skipped) == (6, 0)
    submitted = sorted(p.name for p in jobs.iterdir())
    again = runner.run(resumed_sweep.f, grid(x=range(6)))
    assert (again.done, again.skipped) == (0, 6) and again.ok
    assert sorted(p.name for p in jobs.iterdir()) == submitted  # no new array job
    more = runner.run(resumed_sweep.f, grid(x=range(8)))
    assert (more.done, more.skipped) == (2, 6)
    records = load(out, errors="raise")
    assert sorted(r["x"] for r in records) == list(range(8))
    assert len({r["job"] for r in records}) == 2  # x=6, 7 ran in a second array job

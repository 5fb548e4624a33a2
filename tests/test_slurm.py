"""Real SLURM array jobs on the single-node cluster (scripts/slurm-cluster.sh)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT, env

import memo
from memo import Runner, grid, load

ARRAY_SCRIPT = ROOT / "scripts" / "sbatch_array.sh"
GRID = grid(class_size=range(2, 62, 2), n_sim=[100, 500])  # what scripts/sbatch_sweep.py runs
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED"}

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]


def sbatch(*args: str, cwd: Path) -> str:
    # the job inherits PATH from sbatch: Python is named by its full path
    sweep = ROOT / "scripts" / "sbatch_sweep.py"
    done = subprocess.run(["sbatch", "--parsable",
                           f"--export=ALL,PYTHON={sys.executable},SWEEP={sweep}",
                           *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def wait_for(job_id: str, timeout: float = 240) -> Counter:
    """Poll ``scontrol show job`` (not ``sbatch --wait``) until every task has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                             text=True, timeout=30).stdout
        states = Counter(re.findall(r"JobState=(\S+)", out))
        if states and not (states.keys() & ACTIVE):
            return states
        time.sleep(0.25)
    subprocess.run(["scancel", job_id], check=False)
    pytest.fail(f"job {job_id} did not finish within {timeout} s: {dict(states)}")


def _keys(records):
    return Counter((r["class_size"], r["n_sim"]) for r in records)


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(folder.glob("*.out")))


def test_array_job_tasks_append_to_one_shared_file(tmp_path):
    (tmp_path / "logs").mkdir()  # before sbatch, or every task fails to launch
    job = sbatch("--array=0-7", str(ARRAY_SCRIPT), "results.jsonl", cwd=tmp_path)
    states = wait_for(job)
    assert states == Counter({"COMPLETED": 8}), _logs(tmp_path / "logs")
    records = load(tmp_path / "results.jsonl", errors="raise")
    assert _keys(records) == _keys(GRID)  # every setting exactly once
    assert {r["slurm_array_task_id"] for r in records} == set(range(8))
    assert {r["slurm_array_job_id"] for r in records} == {int(job)}
    raw = (tmp_path / "results.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == len(GRID)


def test_step_array_with_a_throttle_covers_the_grid_once(tmp_path):
    (tmp_path / "logs").mkdir()
    job = sbatch("--array=0-30:3%4", str(ARRAY_SCRIPT), "results.jsonl", cwd=tmp_path)
    assert wait_for(job) == Counter({"COMPLETED": 11}), _logs(tmp_path / "logs")
    records = load(tmp_path / "results.jsonl", errors="raise")
    assert _keys(records) == _keys(GRID)
    assert {r["slurm_array_task_id"] for r in records} == set(range(0, 31, 3))


def test_array_job_into_shards_merged_afterwards(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "shards").mkdir()
    job = sbatch("--array=0-7", str(ARRAY_SCRIPT), "shards/part-%a.jsonl", cwd=tmp_path)
    assert wait_for(job) == Counter({"COMPLETED": 8}), _logs(tmp_path / "logs")
    parts = sorted((tmp_path / "shards").glob("part-*.jsonl"))
    assert [p.name for p in parts] == [f"part-{i}.jsonl" for i in range(8)]
    shard_records = [r for p in parts for r in load(p, errors="raise")]
    assert _keys(shard_records) == _keys(GRID)
    for i, p in enumerate(parts):
        assert {r["slurm_array_task_id"] for r in load(p)} == {i}

    if not hasattr(memo, "merge"):
        pytest.skip("memo.merge (memo merge OUT IN...) is not part of this version of memo")
    done = subprocess.run([sys.executable, "-m", "memo", "merge", "merged.jsonl",
                           *[str(p.relative_to(tmp_path)) for p in parts]],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    merged = load(tmp_path / "merged.jsonl", errors="raise")

    def canon(records):
        return sorted(memo.serialize.dumps(r) for r in records)

    assert canon(merged) == canon(shard_records)


def test_rerunning_one_task_runs_exactly_its_shard(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "shards").mkdir()
    job = sbatch("--array=3", str(ARRAY_SCRIPT), "shards/part-%a.jsonl", "8", cwd=tmp_path)
    assert wait_for(job) == Counter({"COMPLETED": 1}), _logs(tmp_path / "logs")
    records = load(tmp_path / "shards" / "part-3.jsonl", errors="raise")
    assert _keys(records) == _keys(GRID[3::8])


def test_submitit_backend_runs_one_array_and_returns_the_records(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    out = tmp_path / "submitit.jsonl"
    (tmp_path / "slurm_sweep.py").write_text(textwrap.dedent(f"""
        import os
        from memo import capture_context, memfile, memlist

        data = []

        @memlist(data=data)
        @memfile({str(out)!r})
        @capture_context(git=False)
        def f(a, b):
            if (a, b) == (2, 1):
                raise ValueError("cursed")
            return {{"s": a * b, "worker": os.getpid()}}
    """))
    # the tasks import the module by name: put its folder on their path
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    import slurm_sweep

    settings = grid(a=range(6), b=range(4))
    report = Runner("slurm", n_jobs=4, folder=tmp_path / "jobs", poll_interval=0.2).run(
        slurm_sweep.f, settings, errors="return", quiet=True)
    assert (report.total, report.done, report.failed) == (24, 24, 1), report.summary()
    assert report.failures[0].settings == {"a": 2, "b": 1}
    assert report.failures[0].error_type == "ValueError"
    want = Counter((s["a"], s["b"]) for s in settings) - Counter({(2, 1): 1})
    # the parent's memlist has every record although the calls ran in SLURM tasks
    assert Counter((r["a"], r["b"]) for r in slurm_sweep.data) == want
    assert Counter((r["a"], r["b"]) for r in load(out, errors="raise")) == want
    assert len({r["slurm_array_task_id"] for r in slurm_sweep.data}) == 4
    assert len({r["slurm_array_job_id"] for r in slurm_sweep.data}) == 1
    assert os.getpid() not in {r["worker"] for r in slurm_sweep.data}


def test_submitit_task_that_dies_fails_only_its_own_calls(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    out = tmp_path / "dies.jsonl"
    (tmp_path / "dying_sweep.py").write_text(textwrap.dedent(f"""
        import os
        from memo import memfile

        @memfile({str(out)!r})
        def f(x):
            if x == 5:
                os._exit(1)  # the whole task dies: no result comes back
            return {{"y": x}}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    import dying_sweep

    # 3 tasks: task 2 runs x = 2, 5, 8 and dies at 5, after x = 2 was recorded
    report = Runner("slurm", n_jobs=3, folder=tmp_path / "jobs", poll_interval=0.2).run(
        dying_sweep.f, grid(x=range(9)), errors="return", quiet=True)
    assert report.done == 9
    assert sorted(f.settings["x"] for f in report.failures) == [5, 8]
    assert all(f.error_type == "WorkerError" for f in report.failures)
    assert sorted(r["x"] for r in load(out)) == [0, 1, 2, 3, 4, 6, 7]

"""Claims: concurrent runs of one sweep compute every setting exactly once (memo.claims)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from helpers import ROOT, env

import memo
from memo.claims import active

SWEEP = textwrap.dedent("""
    import os, random, sys, time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import memo

    PATH = sys.argv[1]
    LOG = sys.argv[2]   # each process notes what it computed, one line per call
    SLOW = set(int(x) for x in sys.argv[4].split(",") if x) if len(sys.argv) > 4 else set()

    @memo.memfile(PATH, skip=True, claim=True)
    def work(x):
        with open(LOG, "a") as f:
            f.write(f"{x}\\n")
        time.sleep(30 if x in SLOW else 0.05)
        return {"y": x * x}

    def main():
        order = list(range(int(sys.argv[3])))
        random.Random(os.getpid()).shuffle(order)
        print("started", flush=True)
        for x in order:
            work(x)

    if __name__ == "__main__":
        main()
""")
# run as an imported module, so the function is sweep.work in every process (and here)
RUN = "import sys; sys.argv = ['sweep.py', *sys.argv[1:]]; import sweep; sweep.main()"


def _start(tmp_path, name: str, n: int, slow: str = "") -> subprocess.Popen:
    script = tmp_path / "sweep.py"
    if not script.exists():
        script.write_text(SWEEP)
    return subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path / "r.jsonl"),
                             str(tmp_path / f"{name}.log"), str(n), slow],
                            env=env(PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)])),
                            stdout=subprocess.PIPE, text=True)


def _computed(tmp_path) -> Counter:
    counts: Counter = Counter()
    for log in tmp_path.glob("*.log"):
        counts.update(int(x) for x in log.read_text().split())
    return counts


def test_four_processes_over_one_grid_compute_each_setting_once(tmp_path):
    procs = [_start(tmp_path, f"p{k}", 20) for k in range(4)]
    for p in procs:
        assert p.wait(120) == 0
        p.stdout.close()
    assert _computed(tmp_path) == Counter({x: 1 for x in range(20)})
    records = memo.load(tmp_path / "r.jsonl")
    assert sorted(r["x"] for r in records) == list(range(20))
    assert active(tmp_path / "r.jsonl") == []


@pytest.mark.slow
def test_a_claim_whose_holder_was_killed_is_taken_over(tmp_path):
    # the first process gets stuck on setting 3 (a 30 s call) and is killed while holding it
    holder = _start(tmp_path, "holder", 1, slow="0")
    assert holder.stdout.readline() == "started\n"
    deadline = time.time() + 30
    while not active(tmp_path / "r.jsonl"):
        assert time.time() < deadline, "the holder never claimed its call"
        time.sleep(0.05)
    (claim,) = active(tmp_path / "r.jsonl")
    assert claim["args"] == {"x": 0} and claim["owner"].split(":")[1] == str(holder.pid)
    others = [_start(tmp_path, f"p{k}", 6) for k in range(3)]
    time.sleep(1.0)
    assert all(p.poll() is None for p in others)  # someone waits for x=0, held by the holder
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    holder.stdout.close()
    for p in others:
        assert p.wait(120) == 0
        p.stdout.close()
    counts = _computed(tmp_path)
    # x=0 was started by the holder (killed) and computed once more after; the rest once
    assert counts == Counter({0: 2, **{x: 1 for x in range(1, 6)}})
    assert sorted(r["x"] for r in memo.load(tmp_path / "r.jsonl")) == list(range(6))


def test_a_call_that_raises_releases_its_claim(tmp_path):
    path = tmp_path / "r.jsonl"
    runs = []

    @memo.memfile(path, skip=True, claim=True)
    def f(x):
        runs.append(x)
        if len(runs) == 1:
            raise RuntimeError("flaky")
        return {"y": x}

    with pytest.raises(RuntimeError):
        f(1)
    assert active(path) == []
    assert f(1) == {"y": 1} and runs == [1, 1]


def test_claim_needs_skip(tmp_path):
    with pytest.raises(ValueError, match="skip=True"):
        memo.memfile(tmp_path / "r.jsonl", claim=True)


def test_the_recorder_tells_a_runner_which_settings_are_busy(tmp_path):
    proc = _start(tmp_path, "holder", 1, slow="0")
    try:
        assert proc.stdout.readline() == "started\n"
        deadline = time.time() + 30
        while not active(tmp_path / "r.jsonl"):
            assert time.time() < deadline
            time.sleep(0.05)
        sys.path.insert(0, str(tmp_path))
        try:
            import importlib
            sys.modules.pop("sweep", None)
            argv, sys.argv = sys.argv, ["sweep.py", str(tmp_path / "r.jsonl"),
                                        str(tmp_path / "me.log"), "1"]
            try:
                sweep = importlib.import_module("sweep")
            finally:
                sys.argv = argv
        finally:
            sys.path.remove(str(tmp_path))
        rec = sweep.work.memo_recorder
        assert rec.busy({"x": 0}) and not rec.busy({"x": 1})
        assert not rec.done({"x": 0})
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()


@pytest.mark.slurm
def test_identical_slurm_array_tasks_share_one_grid(tmp_path, slurm_cluster):
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    job = tmp_path / "job.sh"
    job.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        export PYTHONPATH={ROOT}
        exec {sys.executable} {script} {tmp_path / 'r.jsonl'} \\
            {tmp_path}/task-$SLURM_ARRAY_TASK_ID.log 16
    """))
    done = subprocess.run([shutil.which("sbatch") or "sbatch", "--wait", "--array=0-3",
                           f"--output={tmp_path}/slurm-%A_%a.out", f"--chdir={tmp_path}",
                           str(job)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _computed(tmp_path) == Counter({x: 1 for x in range(16)})
    lines = [json.loads(line) for line in open(str(tmp_path / "r.jsonl") + ".claims")]
    assert {line["task"].split("_")[1] for line in lines if line["s"] == "c"} <= \
        {"0", "1", "2", "3"}
    assert sorted(r["x"] for r in memo.load(tmp_path / "r.jsonl")) == list(range(16))

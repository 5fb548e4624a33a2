"""``memo status``: a sweep's planned, done, failed and missing settings, and its rerun."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import env

import memo
from memo.plan import plan_path
from memo.status import SweepStatus, summarize, todo

SWEEP = textwrap.dedent("""\
    import os
    import sys

    import memo


    @memo.memfile("results.jsonl", skip=True)
    @memo.ignore_error
    def train(lr, depth):
        with open("calls.log", "a") as log:
            log.write(f"{lr} {depth}\\n")
        if os.environ.get("FAIL") and depth == 8:
            raise (ValueError if lr < 0.2 else ZeroDivisionError)("diverged")
        return {"loss": lr * depth}


    if __name__ == "__main__":
        settings = memo.grid(lr=[0.01, 0.1, 0.3], depth=[2, 4, 8])
        memo.plan("results.jsonl", settings, func=train)
        for s in settings[: int(sys.argv[1])]:
            train(**s)
    """)


def status(*args, cwd, environ=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memo", "status", *map(str, args)], cwd=cwd,
                          env=environ or env(FAIL=None), capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def sweep(tmp_path):
    """A sweep of 9 settings: 6 run, of which 2 failed (depth 8); 3 never ran."""
    (tmp_path / "sweep.py").write_text(SWEEP)
    subprocess.run([sys.executable, "sweep.py", "7"], cwd=tmp_path, env=env(FAIL="1"),
                   check=True, timeout=120)
    (tmp_path / "calls.log").unlink()
    return tmp_path


def test_status_counts_each_state(sweep):
    done = status("results.jsonl", cwd=sweep)
    assert done.returncode == 1, done.stderr  # settings still missing
    lines = done.stdout.splitlines()
    assert lines[0] == "results.jsonl: 5 of 9 planned settings done (56%)"
    assert re.match(r"  failed +2  \(ValueError: 2\)$", lines[2]), lines
    assert re.match(r"  missing +2$", lines[4]) and re.match(r"  running +0$", lines[3])
    s = summarize(sweep / "results.jsonl")
    assert isinstance(s, SweepStatus)
    assert (s.planned, s.done, s.failed, s.running, s.missing) == (9, 5, 2, 0, 2)
    assert s.failed_by_type == {"ValueError": 2} and not s.complete
    assert s.rate_per_min is not None and s.rate_per_min > 0 and s.eta_seconds > 0
    as_json = json.loads(status("results.jsonl", "--json", cwd=sweep).stdout)
    assert as_json == {**s.as_dict(), "rate_per_min": as_json["rate_per_min"],
                       "eta_seconds": as_json["eta_seconds"]}
    assert {tuple(t.values()) for t in todo(sweep / "results.jsonl")} == {
        (0.01, 8), (0.1, 8), (0.3, 4), (0.3, 8)}


def test_rerun_runs_only_the_missing_and_failed_settings(sweep):
    rerun = status("results.jsonl", "--rerun", cwd=sweep)
    assert rerun.stdout.startswith("# 4 of 9 settings to run (2 missing, 2 failed)")
    assert "from sweep import train" in rerun.stdout
    done = subprocess.run(["bash", "-c", rerun.stdout], cwd=sweep, env=env(FAIL=None),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    calls = Counter((sweep / "calls.log").read_text().splitlines())
    assert calls == Counter(["0.01 8", "0.1 8", "0.3 4", "0.3 8"])
    after = status("results.jsonl", cwd=sweep)
    assert after.returncode == 0, after.stdout  # complete
    assert after.stdout.startswith("results.jsonl: 9 of 9 planned settings done (100%)")
    assert status("results.jsonl", "--rerun", cwd=sweep).stdout.startswith("# nothing to rerun")


def test_only_failures_left_exits_3(sweep):
    subprocess.run([sys.executable, "sweep.py", "9"], cwd=sweep, env=env(FAIL="1"), check=True,
                   timeout=120)
    done = status("results.jsonl", cwd=sweep)
    assert done.returncode == 3, done.stdout
    assert "(ValueError: 2, ZeroDivisionError: 1)" in done.stdout
    assert "nothing left to run" in done.stdout


def test_a_plan_with_a_rerun_command_prints_it(tmp_path):
    path = tmp_path / "r.jsonl"
    memo.plan(path, memo.grid(x=range(3)), rerun="make sweep")
    assert status(path, cwd=tmp_path).returncode == 1  # a plan, no records yet: all missing
    done = status(path, "--rerun", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["# 3 of 3 settings to run (3 missing, 0 failed)",
                                        "make sweep"]


def test_without_a_plan_calls_are_counted(tmp_path):
    path = tmp_path / "r.jsonl"
    f = memo.memfile(path)(memo.ignore_error(lambda x: {"y": 1 / x}))
    for x in [0, 1, 2]:
        f(x)
    with open(path, "ab") as out:  # two records of one call, as memo writes them
        for status_ in ("error", "ok"):
            out.write(memo.serialize.dumps_line({
                "x": 5, "y": 0.2, "status": status_, "error_type": "OSError",
                "$memo": {"f": "m.f", "v": "1", "a": ["x"]}}))
    done = status(path, cwd=tmp_path)
    assert done.returncode == 4
    assert "3 calls done, 1 failed; no plan recorded" in done.stdout
    s = summarize(path)
    assert (s.planned, s.missing, s.done, s.failed) == (None, None, 3, 1)
    assert s.failed_by_type == {"ZeroDivisionError": 1}


def test_rate_and_time_left_count_records_since_the_plan(tmp_path):
    path = tmp_path / "r.jsonl"
    f = memo.memfile(path)(lambda x: {"y": x})
    f(-1)  # written before the plan: not part of the rate
    memo.plan(path, memo.grid(x=range(40)))
    entry = json.loads(Path(plan_path(path)).read_text())
    entry["t"] -= 120  # the plan was recorded two minutes ago
    Path(plan_path(path)).write_text(json.dumps(entry) + "\n")
    for x in range(10):
        f(x)
    s = summarize(path)
    assert s.rate_per_min == pytest.approx(5, rel=0.05)  # 10 records in 2 minutes
    assert s.eta_seconds == pytest.approx(30 / 5 * 60, rel=0.05)  # 30 left at 5 a minute


def test_a_missing_file_exits_2(tmp_path):
    done = status(tmp_path / "nope.jsonl", cwd=tmp_path)
    assert done.returncode == 2 and "no such file" in done.stderr


# --------------------------------------------------------------------------- SLURM

JOB = textwrap.dedent("""\
    #!/usr/bin/env bash
    #SBATCH --output=logs/%A_%a.out
    #SBATCH --ntasks=1
    set -euo pipefail
    cd "$SLURM_SUBMIT_DIR"
    exec "$PYTHON" array_sweep.py
    """)

ARRAY_SWEEP = textwrap.dedent("""\
    import os
    import sys
    import time

    import memo


    @memo.memfile("results.jsonl", skip=True)
    def work(i):
        return {"square": i * i, "task": int(os.environ["SLURM_ARRAY_TASK_ID"])}


    mine = memo.shard(memo.grid(i=range(24)), plan="results.jsonl")
    if os.environ["SLURM_ARRAY_TASK_ID"] in os.environ.get("FAIL_TASKS", "").split(":"):
        sys.exit("this task fails before its first call")
    for n, s in enumerate(mine):
        work(**s)
        deadline = time.monotonic() + 120  # after the first call: wait for the test's look
        while n == 0 and not os.path.exists("go") and time.monotonic() < deadline:
            time.sleep(0.1)
    """)

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED"}


def _states(job: str) -> Counter:
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True,
                         timeout=30).stdout
    return Counter(re.findall(r"JobState=(\S+)", out))


def _wait(job: str, timeout: float = 240, during=None) -> Counter:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _states(job)
        if states and not (states.keys() & ACTIVE):
            return states
        if during is not None:
            during()
        time.sleep(0.3)
    subprocess.run(["scancel", job], check=False)
    pytest.fail(f"job {job} did not finish within {timeout} s: {dict(states)}")


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_array_status_show_and_rerun_of_failed_tasks(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "job.sh").write_text(JOB)
    (tmp_path / "array_sweep.py").write_text(ARRAY_SWEEP)
    child_env = env(FAIL=None, PYTHON=sys.executable)
    submit = subprocess.run(["sbatch", "--parsable", "--array=0-5",
                             "--export=ALL,FAIL_TASKS=2:5", "job.sh"], cwd=tmp_path, env=child_env,
                            capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.strip().split(";")[0]
    seen: list[tuple[int, str, int]] = []

    def look() -> None:  # while the tasks append: both commands read the file
        if not (tmp_path / "results.jsonl").exists():
            return
        st = status("results.jsonl", "--json", cwd=tmp_path, environ=child_env)
        shown = subprocess.run([sys.executable, "-m", "memo", "show", "results.jsonl",
                                "--format", "csv", "--columns", "i,square"], cwd=tmp_path,
                               env=child_env, capture_output=True, text=True, timeout=60)
        seen.append((st.returncode, st.stdout, shown.returncode))
        if shown.returncode == 0:
            for line in shown.stdout.splitlines()[1:]:
                i, square = map(int, line.split(","))
                assert square == i * i
        if st.returncode == 1 and json.loads(st.stdout)["done"] < 16:
            (tmp_path / "go").touch()  # seen while the array is under way: let it finish

    states = _wait(job, during=look)
    assert states == Counter({"COMPLETED": 4, "FAILED": 2})
    assert seen and all(code in (0, 1) and shown == 0 for code, _, shown in seen)
    assert any(json.loads(out)["done"] < 16 for code, out, _ in seen if code == 1)
    s = summarize(tmp_path / "results.jsonl")
    assert (s.planned, s.done, s.missing, s.failed) == (24, 16, 8, 0)
    rerun = status("results.jsonl", "--rerun", cwd=tmp_path, environ=child_env)
    assert rerun.returncode == 0
    command = rerun.stdout.splitlines()[-1]
    assert re.fullmatch(r"MEMO_SHARD_ARRAY=0:1:6 sbatch --array=2,5 \S+job\.sh", command), \
        rerun.stdout
    again = subprocess.run(["bash", "-c", command.replace(" sbatch ", " sbatch --parsable ")],
                           cwd=tmp_path, env=child_env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert _wait(again.stdout.strip().split(";")[0]) == Counter({"COMPLETED": 2})
    final = status("results.jsonl", cwd=tmp_path, environ=child_env)
    assert final.returncode == 0, final.stdout
    records = memo.load(tmp_path / "results.jsonl", errors="raise")
    assert sorted(r["i"] for r in records) == list(range(24))  # each setting exactly once
    assert {r["task"] for r in records if r["i"] % 6 in (2, 5)} == {2, 5}


def test_a_call_being_computed_under_a_claim_is_running(tmp_path):
    script = textwrap.dedent("""\
        import os
        import time

        import memo


        @memo.memfile("results.jsonl", skip=True, claim=True)
        def slow(x):
            deadline = time.monotonic() + 60
            while x == 1 and not os.path.exists("go") and time.monotonic() < deadline:
                time.sleep(0.05)
            return {"y": x}


        if __name__ == "__main__":
            memo.plan("results.jsonl", memo.grid(x=range(3)), func=slow)
            for x in range(3):
                slow(x)
        """)
    (tmp_path / "claimed.py").write_text(script)
    proc = subprocess.Popen([sys.executable, "claimed.py"], cwd=tmp_path, env=env(FAIL=None))
    try:
        deadline = time.monotonic() + 60
        s = None
        while time.monotonic() < deadline:
            if (tmp_path / "results.jsonl").exists():
                s = summarize(tmp_path / "results.jsonl")
                if s.running:
                    break
            time.sleep(0.1)
        assert s is not None and (s.done, s.running, s.missing) == (1, 1, 1), s
        done = status("results.jsonl", cwd=tmp_path)
        assert re.search(r"^  running +1$", done.stdout, re.M), done.stdout
        rerun = status("results.jsonl", "--rerun", cwd=tmp_path).stdout
        assert rerun.startswith("# 1 of 3 settings to run (1 missing, 0 failed)")
    finally:
        (tmp_path / "go").touch()
        assert proc.wait(timeout=120) == 0
    assert summarize(tmp_path / "results.jsonl").complete

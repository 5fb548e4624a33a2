from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
from helpers import env

from memo import KeyCollisionError, capture_context, memlist, memutils, run_context


def test_host_pid_and_process_start():
    data = []

    @memlist(data=data)
    @capture_context(git=False)
    def f(x):
        return {"y": x}

    f(1)
    rec = data[0]
    assert rec["host"] == socket.gethostname()
    assert rec["pid"] == os.getpid()
    started = dt.datetime.fromisoformat(rec["run_start"])
    now = dt.datetime.now(dt.timezone.utc)
    assert started.tzinfo is not None and started <= now
    assert not any(k.startswith("git_") for k in rec)


def test_slurm_ids_only_inside_a_job(tmp_path):
    code = "from memo import run_context; print(sorted(run_context(git=False).items()))"
    outside = subprocess.run([sys.executable, "-c", code], env=env(slurm=False),
                             capture_output=True, text=True, check=True).stdout
    assert "slurm" not in outside
    inside = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env=env(slurm=False, SLURM_JOB_ID="42", SLURM_ARRAY_JOB_ID="40", SLURM_ARRAY_TASK_ID="2"),
    ).stdout
    assert "('slurm_array_job_id', 40)" in inside
    assert "('slurm_array_task_id', 2)" in inside
    assert "('slurm_job_id', 42)" in inside


def test_pid_is_the_callers_in_forked_children():
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pids = pool.map(_context_pid, range(4))
    assert all(ctx_pid == real for ctx_pid, real in pids)
    assert all(real != os.getpid() for _, real in pids)


def _context_pid(_: int) -> tuple[int, int]:
    return run_context(git=False)["pid"], os.getpid()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_and_dirty_flag_of_the_functions_repository(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "sweep.py").write_text(textwrap.dedent("""
        from memo import capture_context

        @capture_context
        def f(x):
            return {"y": x}

        print(f(1)["git_commit"], f(2)["git_dirty"])
    """))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "sweep.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    # run from another folder: the repository is the one holding the function's file
    run = [sys.executable, str(repo / "sweep.py")]
    clean = subprocess.run(run, cwd=tmp_path, env=env(slurm=False), capture_output=True, text=True,
                           check=True).stdout.split()
    assert clean == [head, "False"]
    (repo / "sweep.py").write_text((repo / "sweep.py").read_text() + "# edited\n")
    dirty = subprocess.run(run, cwd=tmp_path, env=env(slurm=False), capture_output=True, text=True,
                           check=True).stdout.split()
    assert dirty == [head, "True"]


def test_no_git_keys_outside_a_repository(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("from memo import capture_context\n"
                      "f = capture_context(lambda: {'y': 1})\n"
                      "print(sorted(f()))\n")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                         env=env(slurm=False, GIT_CEILING_DIRECTORIES=str(tmp_path.parent)),
                         capture_output=True, text=True, check=True).stdout
    assert "git_commit" not in out and "'host'" in out


def test_memutils_combines_timing_and_context():
    data = []

    @memlist(data=data)
    @memutils(time_taken=True, timestamp=True, context=True, git=False)
    def f(x):
        return {"y": x}

    f(3)
    assert {"x", "y", "time_taken", "time_start", "host", "pid", "run_start"} <= set(data[0])
    assert "time_end" not in data[0]

    @memlist(data=data)
    @memutils(time_taken=True)
    def g(x):
        return {"y": x}

    g(1)
    assert set(data[1]) == {"x", "y", "time_taken"}


def test_memutils_needs_an_option():
    with pytest.raises(ValueError, match="adds nothing"):
        memutils(lambda: {})


def test_a_returned_context_key_collides():
    @capture_context(git=False)
    def f():
        return {"host": "mine"}

    with pytest.raises(KeyCollisionError, match="host"):
        f()

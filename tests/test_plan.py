"""``memo.plan`` and ``shard(plan=...)``: the planned settings beside a results file."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import env

import memo
from memo.plan import plan_path, read, record_function


def _lines(path):
    return [json.loads(line) for line in Path(plan_path(path)).read_text().splitlines()]


def test_plan_records_settings_once_and_merges_plans(tmp_path):
    path = tmp_path / "r.jsonl"
    settings = memo.grid(lr=[0.1, 0.2], depth=[2, 4])
    assert memo.plan(path, settings) == 4
    assert memo.plan(path, settings) == 4  # again: only a reference to the same settings
    first, second = _lines(path)
    assert first["id"] == second["id"] and "settings" in first and "settings" not in second
    assert read(path).settings == settings
    # values compare as skip=True compares them: np.int64(2) is 2, a tuple is a list
    memo.plan(path, [{"lr": 0.1, "depth": np.int64(2)}, {"lr": 0.3, "depth": 2}])
    merged = read(path)
    assert len(merged) == 5 and merged.settings[-1] == {"lr": 0.3, "depth": 2}
    memo.plan(path, [{"lr": math.nan, "depth": 1}], fresh=True)
    fresh = read(path)
    assert len(fresh) == 1 and math.isnan(fresh.settings[0]["lr"])


def test_plan_rejects_what_is_not_settings(tmp_path):
    with pytest.raises(TypeError, match="iterable of settings"):
        memo.plan(tmp_path / "r.jsonl", {"lr": 1})
    with pytest.raises(TypeError, match="setting 1 is a int"):
        memo.plan(tmp_path / "r.jsonl", [{"lr": 1}, 2])
    assert read(tmp_path / "other.jsonl") is None


def test_many_processes_record_one_plan_at_once(tmp_path):
    path = tmp_path / "r.jsonl"
    code = ("import sys, memo\n"
            "memo.plan(sys.argv[1], memo.grid(i=range(200), j=range(5)))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], env=env())
             for _ in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    lines = _lines(path)  # every line whole JSON
    assert len(lines) == 6 and sum("settings" in e for e in lines) == 1
    assert len(read(path)) == 1000


@pytest.mark.parametrize("shuffle", [False, True])
def test_shard_plan_knows_each_settings_task(tmp_path, shuffle):
    path = tmp_path / "r.jsonl"
    settings = memo.grid(a=range(7), b=range(3))
    for index in range(4):
        mine = memo.shard(settings, index, 4, shuffle=shuffle, seed=3, plan=path)
        recorded = read(path)
        assert [s for s, i in zip(recorded.settings, recorded.shard_index) if i == index] \
            == sorted(mine, key=settings.index)
    assert len(_lines(path)) == 4 and len(read(path)) == 21
    entry = _lines(path)[0]
    assert entry["shard"]["count"] == 4 and (entry["shard"]["low"], entry["shard"]["step"]) \
        == (0, 1)


def test_shard_in_a_step_array_records_task_ids(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    for name, value in dict(SLURM_ARRAY_TASK_ID="9", SLURM_ARRAY_TASK_COUNT="4",
                            SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_MAX="12",
                            SLURM_ARRAY_TASK_STEP="3").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    settings = memo.grid(i=range(10))
    mine = memo.shard(settings, plan=path)
    assert mine == settings[2::4]  # task 9 of 3,6,9,12 is index 2
    shard = _lines(path)[0]["shard"]
    assert (shard["low"], shard["step"], shard["count"]) == (3, 3, 4)
    # a rerun of task 9 alone, as `memo status --rerun` prints it, takes the same shard
    for name, value in dict(SLURM_ARRAY_TASK_ID="9", SLURM_ARRAY_TASK_COUNT="1",
                            SLURM_ARRAY_TASK_MIN="9", SLURM_ARRAY_TASK_MAX="9").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_ARRAY_TASK_STEP")
    assert memo.shard(settings) == settings  # the rerun array's own numbering: all of it
    monkeypatch.setenv("MEMO_SHARD_ARRAY", "3:3:4")
    assert memo.shard(settings) == settings[2::4]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "10")
    with pytest.raises(ValueError, match="not a task of MEMO_SHARD_ARRAY"):
        memo.shard(settings)


def test_record_function_plans_every_file_the_function_writes(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"

    @memo.memfile(a)
    @memo.memfile(b)
    def f(x):
        return {"y": x}

    paths = record_function(f, memo.grid(x=range(3)))
    assert sorted(paths) == sorted([str(a), str(b)])
    for p in (a, b):
        entry = _lines(p)[0]
        assert entry["fn"]["qualname"].endswith("f") and entry["cwd"] == os.getcwd()
        assert len(read(p)) == 3


def test_a_runner_records_the_plan_of_the_files_it_writes(tmp_path):
    import memo.status

    path = tmp_path / "r.jsonl"
    f = memo.memfile(path)(lambda x: {"y": x})
    memo.Runner("serial").run(f, memo.grid(x=range(4)), progbar=False)
    status = memo.status.summarize(path)
    assert (status.planned, status.done, status.missing) == (4, 4, 0)

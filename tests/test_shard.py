from __future__ import annotations

from collections import Counter

import pytest

from memo import grid, shard
from memo.shard import array_position

SETTINGS = grid(a=range(37), b=["x", "y", "z"])  # 111 settings: not a multiple of any count


def _keys(settings):
    return [(s["a"], s["b"]) for s in settings]


def _array_env(monkeypatch, ids, task, step=None):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", str(len(ids)))
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", str(min(ids)))
    monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", str(max(ids)))
    if step is None:
        monkeypatch.delenv("SLURM_ARRAY_TASK_STEP", raising=False)
    else:
        monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", str(step))


@pytest.mark.parametrize("ids, step", [
    (list(range(1, 101)), 1),        # --array=1-100
    (list(range(0, 100)), 1),        # --array=0-99%10 (the throttle does not change ids)
    (list(range(0, 31, 3)), 3),      # --array=0-30:3
    (list(range(0, 31, 3)), None),   # the same, on a SLURM that does not set _STEP
    (list(range(5, 13)), 1),         # --array=5-12
    ([7], 1),                        # --array=7: a single task runs everything
])
def test_every_array_form_covers_the_settings_exactly_once(monkeypatch, ids, step):
    seen = Counter()
    for task in ids:
        _array_env(monkeypatch, ids, task, step)
        part = shard(SETTINGS)
        seen.update(_keys(part))
    assert seen == Counter(_keys(SETTINGS))
    assert set(seen.values()) == {1}


def test_position_in_a_step_array(monkeypatch):
    _array_env(monkeypatch, list(range(0, 31, 3)), 9, 3)
    assert array_position() == (3, 11)
    assert shard(list(range(30))) == [3, 14, 25]


def test_list_arrays_need_explicit_index(monkeypatch):
    _array_env(monkeypatch, [1, 5, 7], 5, 1)  # SLURM reports step 1 for --array=1,5,7
    with pytest.raises(ValueError, match="pass index= and count="):
        shard(SETTINGS)


def test_outside_slurm_needs_index_and_count(no_scheduler):
    monkeypatch = no_scheduler
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    with pytest.raises(RuntimeError, match="SLURM_ARRAY_TASK_ID"):
        shard(SETTINGS)
    parts = [shard(SETTINGS, i, 4) for i in range(4)]
    assert sorted(k for p in parts for k in _keys(p)) == sorted(_keys(SETTINGS))
    assert [len(p) for p in parts] == [28, 28, 28, 27]


def test_count_alone_takes_the_task_id_as_index(monkeypatch):
    """A resubmitted single task (--array=3) still runs shard 3 of the original 8."""
    _array_env(monkeypatch, [3], 3, 1)
    assert shard(SETTINGS, count=8) == shard(SETTINGS, 3, 8)
    assert shard(SETTINGS) == SETTINGS  # without count it is an array of one task


def test_shuffle_depends_only_on_the_seed():
    parts = [shard(SETTINGS, i, 5, shuffle=True, seed=11) for i in range(5)]
    again = [shard(list(SETTINGS), i, 5, shuffle=True, seed=11) for i in range(5)]
    other = [shard(SETTINGS, i, 5, shuffle=True, seed=12) for i in range(5)]
    assert parts == again
    assert parts != other
    assert parts[0] != SETTINGS[0::5]
    assert sorted(k for p in parts for k in _keys(p)) == sorted(_keys(SETTINGS))


def test_generators_are_accepted():
    assert shard((i for i in range(10)), 1, 3) == [1, 4, 7]


@pytest.mark.parametrize("args, error", [
    ((SETTINGS, 3, 3), ValueError),
    ((SETTINGS, -1, 3), ValueError),
    ((SETTINGS, 0, 0), ValueError),
    ((SETTINGS, 1, None), TypeError),
    (({"a": 1}, 0, 1), TypeError),
    (("abc", 0, 1), TypeError),
    ((5, 0, 1), TypeError),
])
def test_bad_arguments(args, error):
    with pytest.raises(error):
        shard(*args)


# ------------------------------------------------------------- other schedulers

SCHEDULER_VARS = ("SLURM_ARRAY_TASK_ID", "SGE_TASK_ID", "LSB_JOBINDEX", "PBS_ARRAY_INDEX",
                  "PBS_ARRAYID", "JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX",
                  "PARALLEL_SEQ")


@pytest.fixture
def no_scheduler(monkeypatch):
    for name in SCHEDULER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _covers_once(parts):
    seen = Counter(k for p in parts for k in _keys(p))
    assert seen == Counter(_keys(SETTINGS)) and set(seen.values()) == {1}


@pytest.mark.parametrize("first, last, step", [(1, 8, 1), (1, 29, 4), (0, 5, 1), (3, 3, 1)])
def test_sge_array_tells_its_size(no_scheduler, first, last, step):
    parts = []
    for task in range(first, last + 1, step):
        no_scheduler.setenv("SGE_TASK_ID", str(task))
        no_scheduler.setenv("SGE_TASK_FIRST", str(first))
        no_scheduler.setenv("SGE_TASK_LAST", str(last))
        no_scheduler.setenv("SGE_TASK_STEPSIZE", str(step))
        parts.append(shard(SETTINGS))
    assert len(parts) == (last - first) // step + 1
    _covers_once(parts)


def test_sge_outside_an_array_is_not_an_array(no_scheduler):
    no_scheduler.setenv("SGE_TASK_ID", "undefined")  # what SGE sets for plain jobs
    with pytest.raises(RuntimeError, match="index= and count="):
        shard(SETTINGS)


@pytest.mark.parametrize("end, step", [(8, 1), (10, 3)])
def test_lsf_array_from_one_tells_its_size(no_scheduler, end, step):
    parts = []
    for task in range(1, end + 1, step):
        no_scheduler.setenv("LSB_JOBINDEX", str(task))
        no_scheduler.setenv("LSB_JOBINDEX_END", str(end))
        no_scheduler.setenv("LSB_JOBINDEX_STEP", str(step))
        parts.append(shard(SETTINGS))
    _covers_once(parts)


def test_lsf_plain_job_has_index_zero(no_scheduler):
    no_scheduler.setenv("LSB_JOBINDEX", "0")
    with pytest.raises(RuntimeError, match="inside an array job"):
        shard(SETTINGS)


@pytest.mark.parametrize("variable, base, submit", [
    ("PBS_ARRAY_INDEX", 0, "qsub -J 0-7"),
    ("PBS_ARRAYID", 0, "qsub -t 0-7"),
    ("JOB_COMPLETION_INDEX", 0, "completionMode: Indexed"),
    ("AWS_BATCH_JOB_ARRAY_INDEX", 0, "size=8"),
    ("PARALLEL_SEQ", 1, "parallel"),
])
def test_schedulers_without_a_size_need_count(no_scheduler, variable, base, submit):
    no_scheduler.setenv(variable, str(base + 2))
    with pytest.raises(RuntimeError, match=rf"{variable}={base + 2}.*pass count=") as info:
        shard(SETTINGS)
    assert submit in str(info.value)
    parts = []
    for task in range(base, base + 8):
        no_scheduler.setenv(variable, str(task))
        parts.append(shard(SETTINGS, count=8))
    _covers_once(parts)
    no_scheduler.setenv(variable, str(base + 8))  # a task beyond count: a clear error
    with pytest.raises(ValueError, match=r"must be in 0\.\.7, got 8"):
        shard(SETTINGS, count=8)


def test_htcondor_passes_the_index(no_scheduler):
    # arguments = $(Process) with "queue 4": the script reads its index from argv
    _covers_once([shard(SETTINGS, index=int(p), count=4) for p in ["0", "1", "2", "3"]])


def test_slurm_wins_over_others_and_the_first_found_is_reported(no_scheduler):
    from memo._scheduler import array_task

    _array_env(no_scheduler, list(range(4)), 2)
    no_scheduler.setenv("PBS_ARRAYID", "1")
    task = array_task()
    assert (task.scheduler, task.index, task.count) == ("SLURM", 2, 4)
    assert array_task({"PBS_ARRAYID": "1"}).scheduler == "Torque"
    assert array_task({}) is None


def test_not_a_number_names_the_variable(no_scheduler):
    no_scheduler.setenv("JOB_COMPLETION_INDEX", "two")
    with pytest.raises(ValueError, match="JOB_COMPLETION_INDEX='two'"):
        shard(SETTINGS, count=3)

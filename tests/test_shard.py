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


def test_outside_slurm_needs_index_and_count(monkeypatch):
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

"""``shard``: the part of a sweep's settings that one task of an array job runs.

Every task builds the same list of settings (``grid`` gives the same order in every
process, also with ``shuffle=True`` and a fixed seed) and keeps every ``count``-th
setting, starting at its own position. Positions come from the array's environment
variables (read in :mod:`memo._scheduler`: SLURM, SGE/UGE, LSF, PBS Pro, Torque,
Kubernetes Indexed Jobs, AWS Batch, GNU parallel), so ``--array=0-7``,
``--array=1-100``, ``--array=0-99%10`` and step arrays such as ``--array=0-30:3`` all
cover the settings exactly once. Schedulers that do not tell the array's size need
``count=``; HTCondor passes the index as an argument (``index=``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from typing import TypeVar

from ._scheduler import _int, array_position, array_task

__all__ = ["array_position", "shard"]

T = TypeVar("T")


def shard(
    settings: Iterable[T],
    index: int | None = None,
    count: int | None = None,
    *,
    shuffle: bool = False,
    seed: int = 0,
    plan: str | os.PathLike[str] | None = None,
) -> list[T]:
    """The settings that task ``index`` of ``count`` runs: every ``count``-th, from ``index``.

    With neither ``index`` nor ``count`` both come from the array job this runs in
    (:func:`memo._scheduler.array_position`; SLURM, SGE and LSF tell the array's size,
    the other schedulers need ``count=``). With only ``count``, the index is the task's
    number (``SLURM_ARRAY_TASK_ID``, ``PBS_ARRAY_INDEX``, ...) less the scheduler's first
    number (1 for SGE, LSF and GNU parallel, else 0): for resubmitting single tasks
    (``sbatch --array=3`` reruns exactly shard 3 of ``count``). With ``shuffle=True`` the
    settings are first put in an order that depends only on ``seed``, which spreads
    slow settings over the tasks and is the same in every task and every resubmission.
    Combine with ``memfile(..., skip=True)`` to rerun only the settings still missing.

    ``plan=PATH`` records all the settings, with the array task of each, as the plan of
    the results file ``PATH`` (:func:`memo.plan`), for ``memo status PATH``. A rerun of
    some tasks of a SLURM array, as ``memo status --rerun`` prints it, sets
    ``MEMO_SHARD_ARRAY=first:step:count`` (the original array's numbering), which this
    function then uses instead of the rerun array's own.
    """
    if isinstance(settings, (Mapping, str, bytes)) or not isinstance(settings, Iterable):
        raise TypeError(
            f"shard() needs an iterable of settings (such as grid(...)), "
            f"got {type(settings).__name__}"
        )
    items = list(settings)
    low, step = 0, 1
    original = os.environ.get("MEMO_SHARD_ARRAY") if index is None and count is None else None
    if original:
        index, count, low, step = _original_position(original)
    elif index is None:
        given = count
        index, count = array_position(count)
        if plan is not None:
            low, step = _numbering(index, count, given is not None)
    elif count is None:
        raise TypeError("shard(index=...) needs count= as well")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"shard(count=...) must be a whole number >= 1, got {count!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"shard(index=...) must be in 0..{count - 1}, got {index!r}")
    order = list(range(len(items)))
    if shuffle:
        random.Random(seed).shuffle(order)
    if plan is not None:
        from .plan import shard_plan

        shard_plan(plan, items, order, count, low, step)
    return [items[i] for i in order[index::count]]


def _numbering(index: int, count: int, counted: bool) -> tuple[int, int]:
    """The task number of shard 0 and the step between task numbers (for a rerun)."""
    task = array_task()
    if task is None or counted:  # with count= the index is the task number less the base
        return (task.base if task else 0), 1
    env = os.environ
    if task.scheduler == "SLURM":
        low = _int(env, "SLURM_ARRAY_TASK_MIN") or 0
        high = _int(env, "SLURM_ARRAY_TASK_MAX") or low
        return low, _int(env, "SLURM_ARRAY_TASK_STEP") or (high - low) // max(count - 1, 1) or 1
    return task.raw - index, 1


def _original_position(spec: str) -> tuple[int, int, int, int]:
    """``(index, count, first, step)`` of this task in the array ``MEMO_SHARD_ARRAY`` names."""
    try:
        low, step, count = (int(x) for x in spec.split(":"))
    except ValueError:
        raise ValueError(f"MEMO_SHARD_ARRAY={spec!r} is not first:step:count") from None
    raw = _int(os.environ, "SLURM_ARRAY_TASK_ID")  # what `memo status --rerun` resubmits
    if raw is None or step < 1 or (raw - low) % step or not 0 <= (raw - low) // step < count:
        raise ValueError(f"array task {raw} is not a task of MEMO_SHARD_ARRAY={spec!r}")
    return (raw - low) // step, count, low, step

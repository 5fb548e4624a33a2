"""The one place memo reads batch schedulers' environment variables.

``shard()`` asks :func:`array_position` where this task sits in its array job;
``capture_context`` asks :func:`slurm_ids` for the job ids it records; shard files
and claims ask :func:`task_label` for a short name of this task. Nothing else in
memo looks at ``SLURM_*``, ``PBS_*``, ``SGE_*``, ``LSB_*`` and the like.

Each scheduler is one :class:`Scheduler` entry: the variable holding the task's
number, how numbers start (``base``), and a function that finds the array's size
and step when the scheduler tells them. The first scheduler whose index variable
is set wins, in the order of :data:`SCHEDULERS`.

=================  ==============================  ===========  ======================
scheduler          index variable                  numbering    size from
=================  ==============================  ===========  ======================
SLURM              ``SLURM_ARRAY_TASK_ID``         any          ``_COUNT/_MIN/_MAX``
SGE / UGE          ``SGE_TASK_ID``                 any          ``_FIRST/_LAST/_STEPSIZE``
LSF                ``LSB_JOBINDEX``                from 1       ``LSB_JOBINDEX_END``
PBS Pro            ``PBS_ARRAY_INDEX``             from 0       ``count=``
Torque             ``PBS_ARRAYID``                 from 0       ``count=``
Kubernetes         ``JOB_COMPLETION_INDEX``        from 0       ``count=``
AWS Batch          ``AWS_BATCH_JOB_ARRAY_INDEX``   from 0       ``count=``
GNU parallel       ``PARALLEL_SEQ``                from 1       ``count=``
HTCondor           (none: pass ``index=``)         from 0       ``count=``
=================  ==============================  ===========  ======================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .exceptions import MemoError

__all__ = ["SCHEDULERS", "ArrayTask", "Scheduler", "SchedulerError", "array_position",
           "array_task", "slurm_ids", "task_label"]


class SchedulerError(MemoError, RuntimeError):
    """The scheduler's variables do not place this task in its array (or are missing)."""


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "" or raw == "undefined":  # SGE sets "undefined" outside arrays
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None


@dataclass(frozen=True)
class ArrayTask:
    """This task of an array job: the scheduler's raw number and, when known, its place."""

    scheduler: str
    variable: str
    raw: int  # the scheduler's own number of this task
    index: int | None  # 0-based position among the array's tasks (None: size unknown)
    count: int | None  # tasks in the array (None: the scheduler does not tell)
    base: int  # the number of the first task when the scheduler's numbering is fixed


# (index, count) from the variables, or None when the scheduler does not tell the size
Sizer = Callable[[Mapping[str, str], int], "tuple[int, int] | None"]


@dataclass(frozen=True)
class Scheduler:
    name: str
    variable: str
    base: int
    submit: str  # the submit line the guide shows
    size: Sizer | None = None


def _regular(name: str, task: int, count: int, low: int, high: int, step: int,
             hint: str) -> tuple[int, int]:
    step = max(step, 1)
    if low + (count - 1) * step != high or (task - low) % step or not low <= task <= high:
        raise ValueError(
            f"cannot place {name} task {task} in an array of {count} tasks from {low} to "
            f"{high} (step {step}): {hint}; pass index= and count= to shard()"
        )
    return (task - low) // step, count


def _slurm(env: Mapping[str, str], task: int) -> tuple[int, int]:
    count = _int(env, "SLURM_ARRAY_TASK_COUNT")
    low = _int(env, "SLURM_ARRAY_TASK_MIN")
    high = _int(env, "SLURM_ARRAY_TASK_MAX")
    if count is None or low is None or high is None:
        raise SchedulerError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT/MIN/MAX "
                             "are not; pass index= and count= explicitly")
    step = _int(env, "SLURM_ARRAY_TASK_STEP")
    if step is None:
        step = (high - low) // (count - 1) if count > 1 else 1
    return _regular("array", task, count, low, high, step,
                    "arrays given as lists such as --array=1,5,7 have no regular numbering")


def _sge(env: Mapping[str, str], task: int) -> tuple[int, int]:
    low, high = _int(env, "SGE_TASK_FIRST"), _int(env, "SGE_TASK_LAST")
    if low is None or high is None:
        raise SchedulerError("SGE_TASK_ID is set but SGE_TASK_FIRST/SGE_TASK_LAST are not; "
                             "pass index= and count= explicitly")
    step = max(_int(env, "SGE_TASK_STEPSIZE") or 1, 1)
    return _regular("SGE", task, (high - low) // step + 1, low, high, step,
                    "SGE_TASK_FIRST/LAST/STEPSIZE do not agree with SGE_TASK_ID")


def _lsf(env: Mapping[str, str], task: int) -> tuple[int, int] | None:
    high = _int(env, "LSB_JOBINDEX_END")
    if high is None:
        return None
    step = max(_int(env, "LSB_JOBINDEX_STEP") or 1, 1)
    # LSF does not tell the first index: arrays are taken to start at 1 ("name[1-N]")
    return _regular("LSF", task, (high - 1) // step + 1, 1, high, step,
                    'number LSF arrays from 1, as in -J "sweep[1-8]"')


SCHEDULERS: tuple[Scheduler, ...] = (
    Scheduler("SLURM", "SLURM_ARRAY_TASK_ID", 0, "sbatch --array=0-7 job.sh", _slurm),
    Scheduler("SGE", "SGE_TASK_ID", 1, "qsub -t 1-8 job.sh", _sge),
    Scheduler("LSF", "LSB_JOBINDEX", 1, 'bsub -J "sweep[1-8]" python sweep.py', _lsf),
    Scheduler("PBS Pro", "PBS_ARRAY_INDEX", 0, "qsub -J 0-7 job.sh"),
    Scheduler("Torque", "PBS_ARRAYID", 0, "qsub -t 0-7 job.sh"),
    Scheduler("Kubernetes", "JOB_COMPLETION_INDEX", 0,
              "kubectl apply -f job.yaml  (completionMode: Indexed, completions: 8)"),
    Scheduler("AWS Batch", "AWS_BATCH_JOB_ARRAY_INDEX", 0,
              "aws batch submit-job --array-properties size=8 ..."),
    Scheduler("GNU parallel", "PARALLEL_SEQ", 1, "parallel -j 4 python sweep.py ::: $(seq 8)"),
)


def array_task(env: Mapping[str, str] | None = None) -> ArrayTask | None:
    """This task of an array job under the first scheduler that numbers it, or None."""
    env = os.environ if env is None else env
    for s in SCHEDULERS:
        raw = _int(env, s.variable)
        if raw is None or (s.name == "LSF" and raw == 0):  # LSF sets 0 outside arrays
            continue
        place = s.size(env, raw) if s.size is not None else None
        index, count = place if place is not None else (None, None)
        return ArrayTask(s.name, s.variable, raw, index, count, s.base)
    return None


def array_position(count: int | None = None,
                   env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(index, count)`` of this array task, for ``shard()``.

    Without ``count`` the scheduler must tell the array's size (SLURM, SGE, LSF); a
    task of ``--array=0-30:3`` with id 9 is at index 3 of 11. With ``count`` the
    index is the task's number less the scheduler's first number (0, or 1 for SGE,
    LSF and GNU parallel), so that rerunning one task (``sbatch --array=3``) runs
    exactly its shard of the original ``count``.
    """
    task = array_task(env)
    if task is None:
        names = ", ".join(s.variable for s in SCHEDULERS)
        raise SchedulerError(
            "shard() without index= must run inside an array job (none of "
            f"{names} is set); pass index= and count= to run a shard elsewhere "
            "(HTCondor: arguments = $(Process), then shard(settings, index=..., count=...))"
        )
    if count is not None:
        return task.raw - task.base, count
    if task.count is None or task.index is None:
        sched = next(s for s in SCHEDULERS if s.name == task.scheduler)
        raise SchedulerError(
            f"{task.scheduler} tells this task's number ({task.variable}={task.raw}) but not "
            f"how many tasks the array has; pass count= to shard() (for {sched.submit!r}, "
            "count=8)"
        )
    return task.index, task.count


_SLURM_IDS = (
    ("slurm_job_id", "SLURM_JOB_ID"),
    ("slurm_array_job_id", "SLURM_ARRAY_JOB_ID"),
    ("slurm_array_task_id", "SLURM_ARRAY_TASK_ID"),
)


def slurm_ids(env: Mapping[str, str] | None = None) -> dict[str, int | str]:
    """The SLURM job ids of this process (keys as ``capture_context`` records them)."""
    env = os.environ if env is None else env
    out: dict[str, int | str] = {}
    for key, var in _SLURM_IDS:
        raw = env.get(var)
        if raw:
            try:
                out[key] = int(raw)
            except ValueError:
                out[key] = raw
    return out


def task_label(env: Mapping[str, str] | None = None) -> str | None:
    """``slurm-<job>_<task>`` (or ``slurm-<job>``) inside a SLURM job, else None."""
    env = os.environ if env is None else env
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    if not job:
        return None
    task = env.get("SLURM_ARRAY_TASK_ID")
    return f"slurm-{job}_{task}" if task else f"slurm-{job}"

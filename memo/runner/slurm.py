"""``slurm``: one SLURM array job through submitit (``pip install submitit``).

The function and the settings are pickled once into the job folder; array task
``t`` of ``n`` runs :func:`memo.shard` ``t`` of ``n`` of the settings and appends
one progress line per call to a shared JSONL file, which the parent follows for
its bar. :class:`ArrayJob` is the parent's side: :meth:`~ArrayJob.submit` the
array, :meth:`~ArrayJob.poll` for progress lines and finished tasks,
:meth:`~ArrayJob.collect` a finished task's outcome (or the failures of a task
that died, from its progress lines), :meth:`~ArrayJob.cancel` on Ctrl-C or error.
Settings already recorded (``skip=True``) were left out before: a rerun of a
finished sweep submits no array at all.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..shard import shard
from .base import Backend, Run, register_backend
from .batching import BatchOut
from .report import Failure
from .worker import Job, pickled

__all__ = ["ArrayJob", "CallLine", "SlurmBackend"]


@dataclass(frozen=True)
class CallLine:
    """One progress line of a task: a call finished (and how)."""

    task: int
    index: int
    failed: bool
    error_type: str = ""
    message: str = ""

    def failure(self) -> Failure | None:
        return Failure(self.index, {}, self.error_type, self.message) if self.failed else None


def squeue(array_id: str) -> set[int] | None:
    """Task numbers of the array still pending or running, or None when squeue failed."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%K"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None if "Invalid job id" not in out.stderr else set()
    return {int(x) for x in out.stdout.split() if x.isdigit()}


@dataclass
class ArrayJob:
    """The parent's side of one array job: submit, poll, collect, cancel."""

    folder: str
    tasks: int
    grace: float  # time for a finished task's result file to show up (NFS)
    tag: str = field(default_factory=lambda: f"memo-{os.getpid()}-{time.time_ns()}")
    jobs: list[Any] = field(default_factory=list)
    array_id: str = ""
    lines: dict[int, CallLine] = field(default_factory=dict)  # index -> its call's line
    collected: set[int] = field(default_factory=set)
    owners: dict[int, list[int]] = field(default_factory=dict)  # task -> setting numbers
    absent: dict[int, float] = field(default_factory=dict)  # task -> first seen gone

    @property
    def payload(self) -> str:
        return os.path.join(self.folder, self.tag + ".pkl")

    @property
    def progress_path(self) -> str:
        return os.path.join(self.folder, self.tag + ".progress.jsonl")

    def submit(self, run: Run, items: list[tuple[int, Mapping[str, Any]]],
               parameters: Mapping[str, Any]) -> None:
        import submitit  # type: ignore[import-untyped]

        from ..reader import Tail

        numbers = [i for i, _ in items]
        for t in range(self.tasks):
            self.owners[t] = shard(numbers, t, self.tasks)
        data = pickled((run.func, items, run.keep_results, run.timeout, self.progress_path),
                       run.func, "slurm")
        with open(self.payload, "wb") as f:  # pickled once, not per task
            f.write(data)
        executor = submitit.AutoExecutor(folder=self.folder, cluster="slurm")
        executor.update_parameters(**{"timeout_min": 24 * 60, "name": self.tag, **parameters})
        self.jobs = executor.map_array(task_main, [self.payload] * self.tasks,
                                       list(range(self.tasks)), [self.tasks] * self.tasks)
        self.array_id = str(self.jobs[0].job_id).split("_")[0]
        self.tail = Tail(self.progress_path)

    def poll(self) -> tuple[list[CallLine], list[int]]:
        """New progress lines, and the tasks that ended since the last poll."""
        new = []
        for raw in self.tail.read_new()[1]:
            line = CallLine(**raw)
            if line.index not in self.lines:
                self.lines[line.index] = line
                new.append(line)
        queued = squeue(self.array_id)
        ended = []
        for t, job in enumerate(self.jobs):
            if t in self.collected:
                continue
            if job.paths.result_pickle.exists():  # (job.done() would ask sacct)
                ended.append(t)
            elif queued is not None and t not in queued:
                gone = self.absent.setdefault(t, time.monotonic())
                if time.monotonic() - gone >= self.grace:  # gone, and no result file
                    ended.append(t)
        return new, ended

    def collect(self, t: int) -> BatchOut:
        """Task ``t``'s outcome; for a task that died, its progress lines tell what ran."""
        self.collected.add(t)
        job = self.jobs[t]
        if job.paths.result_pickle.exists():
            try:
                return job.result()  # type: ignore[no-any-return]
            except Exception as exc:  # the task itself failed (not a call)
                return self._dead(t, f"array task {t} failed: {exc}")
        return self._dead(t, f"array task {t} of job {self.array_id} ended without a result")

    def _dead(self, t: int, why: str) -> BatchOut:
        mine = self.owners.get(t, [])
        failures = []
        for i in mine:
            line = self.lines.get(i)
            if line is None:
                failures.append(Failure(i, {}, "WorkerError", why))
            elif line.failed:
                failures.append(line.failure())  # type: ignore[arg-type]
        return BatchOut(len(mine), failures, [], None, 0.0)

    @property
    def finished(self) -> bool:
        return len(self.collected) >= self.tasks

    def cancel(self) -> None:
        if self.array_id:
            subprocess.run(["scancel", self.array_id], check=False, capture_output=True)

    def remove_files(self) -> None:
        for path in (self.payload, self.progress_path):
            try:
                os.remove(path)
            except OSError:
                pass


class SlurmBackend(Backend):
    """``n_jobs``: array tasks (default: one per setting, at most 100)."""

    name = "slurm"

    def run(self, run: Run) -> None:
        try:
            import submitit  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            from .._util import missing
            raise missing("backend='slurm'", "submitit", "slurm") from None
        items = run.indexed.all()
        run.progress.start()
        if not items:
            return  # everything was recorded already: no array job
        n = self.runner.n_jobs
        tasks = min(n if n is not None and n > 0 else min(len(items), 100), len(items))
        folder = os.path.abspath(os.fspath(self.runner.folder))
        os.makedirs(folder, exist_ok=True)
        poll = self.runner.poll_interval
        array = ArrayJob(folder, tasks, grace=max(5.0, 3 * poll))
        array.submit(run, items, self.runner.slurm)
        failed = 0
        try:
            while not array.finished:
                lines, ended = array.poll()
                for line in lines:
                    failed += line.failed
                    run.progress.advance(1, failed)
                for t in ended:
                    run.deliver(array.collect(t), count=False)
                if not array.finished:
                    time.sleep(poll)
        except BaseException:
            array.cancel()
            raise
        for line in array.poll()[0]:  # lines written after their task's last poll
            run.progress.advance(1, failed + line.failed)
        array.remove_files()


def task_main(payload: str, index: int, count: int) -> BatchOut:
    """One array task: run shard ``index`` of ``count``, one progress line per call."""
    import pickle

    from ..serialize import dumps_line
    from ..writer import AppendWriter

    with open(payload, "rb") as f:
        func, items, keep_results, timeout, progress_path = pickle.load(f)
    job = Job(func, keep_results=keep_results, timeout=timeout, capture_records=True)
    progress = AppendWriter(progress_path)
    total = BatchOut(0, [], [], [] if keep_results else None, 0.0)
    for item in shard(items, index, count):
        out = job.run_batch([item])
        total.add(out)
        line: dict[str, Any] = {"task": index, "index": item[0], "failed": bool(out.failures)}
        if out.failures:
            line["error_type"] = out.failures[0].error_type
            line["message"] = out.failures[0].message
        progress.append(dumps_line(line))
    progress.close()
    return total


register_backend("slurm", SlurmBackend, aliases=("submitit",))

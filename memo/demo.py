"""``memo demo``: the birthday-paradox sweep, run in parallel, logged to JSONL, shown as a table."""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys

from .grid import grid
from .load import load
from .plan import plan
from .runner import Runner
from .show import table
from .sinks.file import memfile
from .timing import capture_time

__all__ = ["birthday_experiment", "main", "register"]


def birthday_experiment(class_size: int, n_sim: int, seed: int = 0) -> dict[str, float]:
    """Estimate the chance that two of ``class_size`` people share a birthday."""
    rng = random.Random(seed * 1_000_003 + class_size * 7919 + n_sim)
    shared = sum(
        len({rng.randint(1, 365) for _ in range(class_size)}) != class_size for _ in range(n_sim)
    )
    return {"est_proba": shared / n_sim}


def main(out: str = "results.jsonl", jobs: int | None = None, fresh: bool = False) -> int:
    if fresh and os.path.exists(out):
        os.remove(out)
    settings = grid(class_size=range(5, 60, 5), n_sim=[1000, 10000])
    experiment = memfile(out, skip=True)(capture_time(birthday_experiment, time_start=False))
    # the plan lets `memo status` tell what is missing; a rerun of the demo resumes it
    plan(out, settings, rerun=f"memo demo --out {shlex.quote(out)}")
    # worker processes forked from this one each append their records to `out`;
    # a progress bar shows on a terminal when tqdm is installed (memo[progress])
    Runner(backend="processes", n_jobs=jobs).run(experiment, settings)
    records = load(out)
    print(table(records, columns=["class_size", "n_sim", "est_proba", "time_taken"],
                sort=["n_sim", "class_size"], terminal=sys.stdout.isatty()), end="")
    print(f"\n{len(records)} records in {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = subparsers.add_parser("demo", help="run the birthday-paradox demo sweep")
    demo.add_argument("--out", default="results.jsonl", help="JSONL file to log to")
    demo.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    demo.add_argument("--fresh", action="store_true", help="start a new file, do not resume")
    demo.set_defaults(handler=lambda a: main(out=a.out, jobs=a.jobs, fresh=a.fresh))

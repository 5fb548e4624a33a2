"""A ``multiprocessing.Pool`` sweep whose worker processes all append to one JSONL file.

    python scripts/pool_sweep.py            # writes pool_sweep.jsonl in the current folder

Every worker appends whole lines to the same file under a lock, so no record is torn
or lost; ``skip=True`` makes a second run compute only what is missing.
"""

from __future__ import annotations

import math
import os
import time
from multiprocessing import Pool
from typing import Any

from memo import capture_time, grid, load, memfile


@memfile("pool_sweep.jsonl", skip=True)
@capture_time
def simulate(n: int, p: float) -> dict[str, Any]:
    """Chance of at least one success in ``n`` trials, and the worker that computed it."""
    time.sleep(0.02)  # stands in for real work
    return {"at_least_one": 1 - (1 - p) ** n, "log_odds": math.log(p / (1 - p)),
            "worker": os.getpid()}


def run(settings: dict[str, Any]) -> dict[str, Any]:
    return simulate(**settings)


if __name__ == "__main__":
    settings = grid(n=[1, 2, 5, 10, 20, 50], p=[0.01, 0.05, 0.1, 0.5])
    with Pool(processes=4) as pool:
        pool.map(run, settings, chunksize=2)
    records = load("pool_sweep.jsonl")
    workers = {r["worker"] for r in records}
    print(f"{len(records)} records from {len(workers)} worker processes in pool_sweep.jsonl")

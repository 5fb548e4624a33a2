"""The sweep one SLURM array task runs: its shard of the grid, logged to a JSONL file.

    python scripts/sbatch_sweep.py OUT [COUNT]

``OUT`` is one file that every task appends to (on a filesystem all nodes share), or,
with ``%a`` in it, one file per array task (``shards/part-%a.jsonl``) to join afterwards
with ``memo merge results.jsonl shards/*.jsonl``. Submit it with ``scripts/sbatch_array.sh``.
``COUNT`` fixes the number of shards, for rerunning single tasks of an array
(``sbatch --array=3 ... OUT 8`` reruns exactly shard 3 of 8); without it the array's
own numbering tells each task its shard.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

from memo import capture_context, capture_time, grid, memfile, shard


def birthday(class_size: int, n_sim: int) -> dict[str, Any]:
    """Estimate the chance that two of ``class_size`` people share a birthday."""
    rng = random.Random(class_size * 7919 + n_sim)
    shared = sum(len({rng.randint(1, 365) for _ in range(class_size)}) != class_size
                 for _ in range(n_sim))
    return {"est_proba": shared / n_sim}


def main(out: str, count: int | None = None) -> None:
    out = out.replace("%a", os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    experiment = memfile(out, skip=True)(capture_context(capture_time(birthday)))
    # every task builds the same grid and runs every count-th setting from its position
    for settings in shard(grid(class_size=range(2, 62, 2), n_sim=[100, 500]), count=count):
        experiment(**settings)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: sbatch_sweep.py OUT [COUNT]  (OUT may contain %a, the array task id)")
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else None)

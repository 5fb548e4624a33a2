"""A sweep run by ``memo.Runner`` on worker processes, with a progress bar.

    python scripts/runner_sweep.py [--jobs N] [--backend processes|loky|threads|serial]

Records go to ``runner_sweep.jsonl`` (appended from the workers) and to a list in this
process (sent back from the workers). On a terminal, with tqdm installed
(``pip install tqdm``, or the ``progress`` extra of the checkout), a bar shows calls
done out of the total, failures, rate and time left. One setting in the grid fails on
purpose: the run goes on, the failure is recorded by ``ignore_error``, counted, and
listed at the end.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Any

from memo import Runner, capture_time, grid, ignore_error, memfile, memlist

records: list[dict[str, Any]] = []


@memlist(data=records)
@memfile("runner_sweep.jsonl")
@capture_time
@ignore_error
def estimate_pi(n_points: int, trial: int) -> dict[str, Any]:
    """Monte Carlo estimate of pi from ``n_points`` random points."""
    if n_points == 0:
        raise ValueError("no points, no estimate")
    rng = random.Random(trial)
    inside = sum(rng.random() ** 2 + rng.random() ** 2 <= 1 for _ in range(n_points))
    time.sleep(0.01)  # stands in for slower work, so that the bar has something to show
    estimate = 4 * inside / n_points
    return {"estimate": estimate, "error": abs(estimate - math.pi)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=-1, help="workers (-1: every core)")
    parser.add_argument("--backend", default="processes")
    args = parser.parse_args()
    settings = grid(n_points=[1_000, 10_000, 50_000], trial=range(25))
    settings.append({"n_points": 0, "trial": 0})  # this one fails
    report = Runner(backend=args.backend, n_jobs=args.jobs).run(estimate_pi, settings)
    best = min((r for r in records if r["status"] == "ok"), key=lambda r: r["error"])
    print(f"{report.succeeded} estimates, {report.failed} failed; best: {best['estimate']:.5f} "
          f"from {best['n_points']} points (trial {best['trial']}); "
          f"{len(records)} records sent back here, and appended to runner_sweep.jsonl")


if __name__ == "__main__":
    main()

"""Overhead of ``memo.Runner`` against the bare engines it drives, as ratios from one run.

    PYTHONPATH=. python scripts/bench_runner.py [--calls 20000] [--rounds 5] [--jobs 2]
        [--part calls,records,dask]

1. calls: ``--calls`` no-op calls through ``Runner("processes")`` against
   ``ProcessPoolExecutor.map`` with a tuned chunksize (the fastest of several, picked
   in a first round). Both start their pool per run. Target: ratio <= 1.10.
2. records: the rate at which records reach the parent, ``memlist`` under
   ``Runner("processes")`` against ``multiprocessing.Pool.imap_unordered`` returning
   the same records (tuned chunksize, pool started per run as well).
   Target: Runner's rate >= 0.8x the pool's.
3. dask: ``--dask-calls`` calls of 1 ms through ``Runner(executor=client.get_executor())``
   against ``client.gather(client.map(...))`` on the same ``LocalCluster`` (``--jobs``
   worker processes of one thread). Target: ratio <= 1.20.

Rounds alternate the contenders; each reports its median wall time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from memo import Runner, grid, memlist

CHUNKSIZES = (16, 64, 256, 1024)


def noop(i: int) -> None:
    return None


def _noop_kw(s: dict[str, Any]) -> None:
    return noop(**s)


def record(i: int) -> dict[str, Any]:
    return {"value": i * 2, "loss": 0.5, "acc": 0.25, "name": "run", "ok": True}


def _record_kw(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, **record(**s)}


def work(i: int, ms: float) -> dict[str, Any]:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass
    return {"value": i}


def _work_kw(s: dict[str, Any]) -> dict[str, Any]:
    return work(**s)


records: list[dict[str, Any]] = []
logged = memlist(data=records)(record)


def measure(contenders: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def tuned(run: Callable[[int], None], tries: int = 3) -> int:
    """The chunksize with which ``run`` is fastest (the best of ``tries`` timings of each,
    interleaved: one noisy timing must not pick a slow chunksize for the baseline)."""
    best = {c: float("inf") for c in CHUNKSIZES}
    for _ in range(tries):
        for c in CHUNKSIZES:
            t0 = time.perf_counter()
            run(c)
            best[c] = min(best[c], time.perf_counter() - t0)
    return min(best, key=best.__getitem__)


def show(title: str, med: dict[str, float], base: str, ours: str, target: str,
         rate: int | None = None) -> None:
    print(title)
    for name, t in med.items():
        extra = f"  ({rate / t:,.0f}/s)" if rate else ""
        print(f"   {name:44s} {t:7.3f} s{extra}")
    ratio = med[ours] / med[base]
    if rate:
        print(f"   rate ratio {ours} / {base}: {1 / ratio:.3f}  (target {target})")
    else:
        print(f"   ratio {ours} / {base}: {ratio:.3f}  (target {target})")


def calls(args: argparse.Namespace) -> None:
    settings = grid(i=range(args.calls))

    def bare(chunk: int) -> None:
        with ProcessPoolExecutor(args.jobs) as ex:
            for _ in ex.map(_noop_kw, settings, chunksize=chunk):
                pass

    chunk = tuned(bare)
    med = measure({
        f"ProcessPoolExecutor.map (chunksize {chunk})": lambda: bare(chunk),
        "Runner('processes')": lambda: Runner("processes", n_jobs=args.jobs).run(
            noop, settings, progbar=False),
    }, args.rounds)
    show(f"1. {args.calls} no-op calls on {args.jobs} worker processes, median of "
         f"{args.rounds} rounds", med, next(iter(med)), "Runner('processes')", "<= 1.10")


def returned_records(args: argparse.Namespace) -> None:
    settings = grid(i=range(args.calls))
    kept: list[Any] = []

    def bare(chunk: int) -> None:
        kept.clear()
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            kept.extend(pool.imap_unordered(_record_kw, settings, chunksize=chunk))
        assert len(kept) == args.calls

    def ours() -> None:
        records.clear()
        Runner("processes", n_jobs=args.jobs).run(logged, settings, progbar=False)
        assert len(records) == args.calls, f"{len(records)} of {args.calls} came back"

    chunk = tuned(bare)
    med = measure({
        f"Pool.imap_unordered (chunksize {chunk})": lambda: bare(chunk),
        "Runner('processes') into memlist": ours,
    }, args.rounds)
    show(f"2. {args.calls} records returned to the parent from {args.jobs} workers, "
         f"median of {args.rounds} rounds", med, next(iter(med)),
         "Runner('processes') into memlist", ">= 0.80", rate=args.calls)


def dask(args: argparse.Namespace) -> None:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print("3. skipped: dask.distributed is not installed (pip install 'dask[distributed]')")
        return
    n = args.dask_calls
    settings = grid(i=range(n), ms=1.0)
    with LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        executor = client.get_executor()

        def bare() -> None:
            futures = client.map(_work_kw, settings, pure=False)
            assert len(client.gather(futures)) == n

        def ours() -> None:
            report = Runner(executor=executor).run(work, settings, progbar=False)
            assert report.ok

        bare()
        ours()  # both warm: the workers imported what they need
        med = measure({"client.map + gather": bare,
                       "Runner(executor=client.get_executor())": ours}, args.rounds)
    show(f"3. {n} calls of 1 ms on a Dask LocalCluster of {args.jobs} worker processes "
         f"(ideal {n * 1e-3 / args.jobs:.2f} s), median of {args.rounds} rounds", med,
         "client.map + gather", "Runner(executor=client.get_executor())", "<= 1.20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--dask-calls", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--part", default="calls,records,dask")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    if "calls" in parts:
        calls(args)
    if "records" in parts:
        returned_records(args)
    if "dask" in parts:
        dask(args)


if __name__ == "__main__":
    main()

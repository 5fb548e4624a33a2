"""Overhead of ``memo.Runner`` against bare process pools, as ratios measured in one run.

    PYTHONPATH=. python scripts/bench_runner.py [--calls 2000] [--rounds 7] [--record-rounds 21]
        [--jobs 2] [--part 1|2|both]

1. Calls of 1 ms each: ``Runner(backend="processes")`` and ``Runner(backend="loky")``
   against a bare ``concurrent.futures.ProcessPoolExecutor.map`` (chunksize as
   ``multiprocessing.Pool.map`` picks it) and a bare ``joblib.Parallel`` loop over the
   same function. Like is compared with like: ``concurrent.futures`` and the
   ``processes`` backend start a pool per run (both cold), while joblib keeps its loky
   pool between calls and the ``loky`` backend keeps its own, so both are started once
   before timing (both warm). Target: ratio <= 1.10.
2. Records sent back to the parent (``memlist`` under process workers): the extra CPU
   time (parent and workers) of a run whose records go to the parent's ``memlist`` over
   the same run whose records are dropped by a sink in the worker, against what a bare
   pool spends to return the same records as results (its pickling and unpickling), and
   against pickling and unpickling them in one process, split into the parent's share
   and the workers'. Target: ratio <= 1.10.
Rounds alternate the contenders; each reports its median.
"""

from __future__ import annotations

import argparse
import gc
import math
import pickle
import resource
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from memo import Runner, grid, memlist
from memo.pipeline import recorder


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def task(i: int, ms: float) -> dict[str, Any]:
    busy(ms)
    return {"value": i * 2, "loss": 0.5, "acc": 0.25, "name": "run", "ok": True}


def _task_kw(s: dict[str, Any]) -> dict[str, Any]:
    return task(**s)


def _record_kw(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, **task(**s)}


def _nothing_kw(s: dict[str, Any]) -> None:
    {**s, **task(**s)}


class Discard:
    """A sink that drops records where they are made (in the worker)."""

    def write(self, record: dict[str, Any]) -> None:
        pass


records: list[dict[str, Any]] = []
logged = memlist(data=records)(task)
dropped = recorder(Discard())(task)


def bare_futures(settings: list[dict[str, Any]], jobs: int) -> None:
    chunk = max(1, math.ceil(len(settings) / (4 * jobs)))
    with ProcessPoolExecutor(jobs) as ex:
        list(ex.map(_task_kw, settings, chunksize=chunk))


def bare_joblib(settings: list[dict[str, Any]], jobs: int) -> None:
    from joblib import Parallel, delayed

    Parallel(n_jobs=jobs)(delayed(task)(**s) for s in settings)


def runner(backend: str, func: Callable[..., Any]) -> Callable[[list[dict[str, Any]], int], None]:
    def run(settings: list[dict[str, Any]], jobs: int) -> None:
        Runner(backend, n_jobs=jobs).run(func, settings, progbar=False)
    return run


def measure(contenders: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--record-rounds", type=int, default=21,
                        help="rounds of the records benchmark (short, and noisier)")
    parser.add_argument("--part", choices=["1", "2", "both"], default="both",
                        help="run only the calls (1) or only the records (2) benchmark")
    args = parser.parse_args()
    if args.part in ("1", "both"):
        calls(args)
    if args.part in ("2", "both"):
        returned_records(args)


def calls(args: argparse.Namespace) -> None:
    jobs = args.jobs

    try:
        import joblib  # noqa: F401
        have_joblib = True
    except ImportError:
        have_joblib = False

    settings = grid(i=range(args.calls), ms=1.0)
    contenders: dict[str, Callable[[], None]] = {
        "bare concurrent.futures": lambda: bare_futures(settings, jobs),
        "Runner processes": lambda: runner("processes", task)(settings, jobs),
    }
    if have_joblib:
        contenders["bare joblib"] = lambda: bare_joblib(settings, jobs)
        contenders["Runner loky"] = lambda: runner("loky", task)(settings, jobs)
    ideal = args.calls * 1e-3 / jobs
    print(f"1. {args.calls} calls of 1 ms on {jobs} workers (ideal {ideal:.2f} s), "
          f"median of {args.rounds} rounds")
    warm = {"bare joblib", "Runner loky"} & contenders.keys()
    for name in warm:  # start the pools they keep between calls
        contenders[name]()
    med = measure(contenders, args.rounds)
    for name, t in med.items():
        how = "warm: pool started before timing" if name in warm else "cold: pool started per run"
        print(f"   {name:26s} {t:7.3f} s  ({how})")
    base = med["bare concurrent.futures"]
    print(f"   ratio Runner processes / bare concurrent.futures: "
          f"{med['Runner processes'] / base:.3f}  (target <= 1.10)")
    if have_joblib:
        print(f"   ratio Runner processes / bare joblib:             "
              f"{med['Runner processes'] / med['bare joblib']:.3f}  (target <= 1.10)")
        print(f"   ratio Runner loky / bare joblib:                  "
              f"{med['Runner loky'] / med['bare joblib']:.3f}  (target <= 1.10)")



def returned_records(args: argparse.Namespace) -> None:
    jobs = args.jobs
    n = args.calls * 50
    quick = grid(i=range(n), ms=0.0)

    def with_memlist() -> None:
        records.clear()
        runner("processes", logged)(quick, jobs)
        assert len(records) == n, f"{len(records)} of {n} records came back"

    chunk = max(1, math.ceil(n / (4 * jobs)))

    kept: list[Any] = []

    def bare(fn: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        def run() -> None:  # the results are kept, as the parent's memlist keeps the records
            kept.clear()
            with ProcessPoolExecutor(jobs) as ex:
                kept.extend(ex.map(fn, quick, chunksize=chunk))
        return run

    split: dict[str, tuple[float, float]] = {}
    cpu = measure_cpu({
        "Runner, records dropped in the worker": lambda: runner("processes", dropped)(
            quick, jobs),
        "Runner, records sent to memlist": with_memlist,
        "bare pool returning None": bare(_nothing_kw),
        "bare pool returning the records": bare(_record_kw),
    }, args.record_rounds, reset=lambda: (records.clear(), kept.clear()), split=split)
    sample = [_record_kw(s) for s in quick]
    pickling = measure_cpu({"pickle": lambda: pickle.loads(
        pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL))}, args.record_rounds)["pickle"]
    ours = cpu["Runner, records sent to memlist"] - cpu["Runner, records dropped in the worker"]
    theirs = cpu["bare pool returning the records"] - cpu["bare pool returning None"]
    print(f"2. {n} records returned to the parent from {jobs} worker processes "
          f"(CPU time of the parent and its workers, median of {args.record_rounds} rounds)")
    for name, t in cpu.items():
        parent, workers = split[name]
        collector = statistics.median(_GCTimer.by_name[name])
        print(f"   {name:38s} {t:7.3f} s  (parent {parent:.3f} s, of which its garbage "
              f"collector {collector:.3f} s; workers {workers:.3f} s)")

    def per_record(with_: str, without: str) -> str:
        (p1, w1), (p0, w0) = split[with_], split[without]
        return f"parent {(p1 - p0) * 1e6 / n:.2f} + workers {(w1 - w0) * 1e6 / n:.2f}"

    ours_split = per_record("Runner, records sent to memlist",
                            "Runner, records dropped in the worker")
    theirs_split = per_record("bare pool returning the records", "bare pool returning None")
    print(f"   where it goes, us/record: Runner {ours_split}; bare pool {theirs_split}")
    print(f"   sending the records back: Runner {ours * 1e6 / n:.2f} us/record, bare pool "
          f"{theirs * 1e6 / n:.2f} us/record; pickle + unpickle alone "
          f"{pickling * 1e6 / n:.2f} us/record")
    print(f"   ratio Runner / bare pool returning them: {ours / theirs:.3f}  (target <= 1.10)")

    def collector(name: str) -> float:
        return statistics.median(_GCTimer.by_name[name])

    ours_gc = collector("Runner, records sent to memlist") - collector(
        "Runner, records dropped in the worker")
    theirs_gc = collector("bare pool returning the records") - collector(
        "bare pool returning None")
    print(f"   of which the parent's garbage collector: Runner {ours_gc * 1e6 / n:.2f} "
          f"us/record, bare pool {theirs_gc * 1e6 / n:.2f} us/record; without it, ratio "
          f"{(ours - ours_gc) / (theirs - theirs_gc):.3f}")
    print(f"   ratio Runner / pickle + unpickle:         {ours / pickling:.3f}")


def measure_cpu(contenders: dict[str, Callable[[], None]], rounds: int,
                reset: Callable[[], None] = lambda: None,
                split: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
    """Median CPU seconds (this process and its finished children) of each contender.

    ``reset`` drops what the previous contender kept, so that each starts from the same
    heap (the garbage collector's passes cost more the more objects are alive).
    ``split`` receives the medians of this process and of its children apart.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            reset()
            gc.collect()
            gc.callbacks.append(_GCTimer.callback)
            _GCTimer.seconds = 0.0
            me, kids = _cpu()
            try:
                fn()
            finally:
                gc.callbacks.remove(_GCTimer.callback)
            me2, kids2 = _cpu()
            times[name].append((me2 - me, kids2 - kids))
            _GCTimer.by_name.setdefault(name, []).append(_GCTimer.seconds)
    if split is not None:
        for name, ts in times.items():
            split[name] = (statistics.median(t[0] for t in ts),
                           statistics.median(t[1] for t in ts))
    return {name: statistics.median(sum(t) for t in ts) for name, ts in times.items()}


class _GCTimer:
    """CPU time this process spends in the garbage collector (any thread)."""

    seconds = 0.0
    started: dict[int, float] = {}
    by_name: dict[str, list[float]] = {}

    @staticmethod
    def callback(phase: str, info: dict[str, Any]) -> None:
        import threading

        me = threading.get_ident()
        if phase == "start":
            _GCTimer.started[me] = time.thread_time()
        elif me in _GCTimer.started:
            _GCTimer.seconds += time.thread_time() - _GCTimer.started.pop(me)


def _cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()

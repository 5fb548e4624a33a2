"""Benchmark resume (skip=True) against baselines measured in the same run; prints ratios.

    PYTHONPATH=. python scripts/bench_resume.py [--sizes 1000,10000,100000,1000000] [--dir DIR]

For each file size (records already in the file, written by memfile itself):

* index build: the first skip=True call of a new process indexes the file. Time and
  peak memory (RSS growth, measured in a fresh process) against the baseline, a plain
  dict of right-sized ``orjson.dumps(arguments)`` keys built from the same file.
  Targets: time <= 1.5x and memory <= 1.5x the baseline.
* a hit (the call is recorded: its stored outputs are returned): target <= 2 us at 100k.
* a new call with skip=True, against the same call with skip=False (both append a
  record): target <= 1.5x. With claim=True the call also claims itself (one more
  locked append, and one to finish it): reported, not a target.
* memlist(skip=True) hits and new calls, against memlist without skip.

Each side takes its best of several interleaved rounds (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import memo  # noqa: E402
from memo.call import Call, call_key  # noqa: E402
from memo.serialize import dumps_line  # noqa: E402

FUNCTION = "bench_resume_target.make.<locals>.sweep"
PAYLOAD = {"name": "birthday", "est_proba": 0.4112345678, "payload": "p" * 40}

TARGET = '''
import memo
PATH = None

def make(path, **opts):
    @memo.memfile(path, version="1", **opts)
    def sweep(writer, seq, x):
        return PAYLOAD
    return sweep

PAYLOAD = {"name": "birthday", "est_proba": 0.4112345678, "payload": "p" * 40}
'''


def write_file(path: str, n: int) -> None:
    """n records as memfile(skip=True) writes them, for the function the children import."""
    with open(path, "wb") as f:
        for i in range(n):
            args = {"writer": 0, "seq": i, "x": 0.5}
            call = Call(FUNCTION, "1", ("writer", "seq", "x"), call_key(FUNCTION, args))
            f.write(dumps_line({**args, **PAYLOAD, "$memo": call.meta}))


CHILD_INDEX = r'''
import os, resource, sys, time, gc
sys.path[:0] = [sys.argv[3], sys.argv[4]]
import bench_resume_target as t
import memo
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
f = t.make(sys.argv[1], skip=True)
gc.collect()
before = rss()
start = time.perf_counter()
index = f.memo_recorder.index
with index.lock:
    index.refresh()
took = time.perf_counter() - start
grown = rss() - before
print(took, grown, len(index))
'''

CHILD_BASELINE = r'''
import os, sys, time, gc
import orjson
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
gc.collect()
before = rss()
start = time.perf_counter()
keys = {}
with open(sys.argv[1], "rb") as f:
    for offset, line in enumerate(f):
        r = orjson.loads(line)
        keys[bytes(memoryview(orjson.dumps([r["writer"], r["seq"], r["x"]])))] = offset
took = time.perf_counter() - start
print(took, rss() - before, len(keys))
'''


def child(code: str, *args: str) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT}).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def bench_index(folder: str, n: int, rounds: int) -> None:
    path = os.path.join(folder, f"r{n}.jsonl")
    write_file(path, n)
    size = os.path.getsize(path)
    mine, base = [], []
    for _ in range(rounds):
        mine.append(child(CHILD_INDEX, path, "", folder, ROOT))
        base.append(child(CHILD_BASELINE, path))
    t_m, t_b = min(m[0] for m in mine), min(b[0] for b in base)
    m_m, m_b = min(m[1] for m in mine), min(b[1] for b in base)
    assert mine[0][2] == n == base[0][2], (mine[0], base[0])
    print(f"  {n:>9,} records ({size / 1e6:6.1f} MB): index {t_m:6.3f} s, "
          f"{m_m / 1e6:7.1f} MB | baseline dict {t_b:6.3f} s, {m_b / 1e6:7.1f} MB | "
          f"time {t_m / t_b:4.2f}x, memory {m_m / max(m_b, 1):4.2f}x "
          f"(targets <= 1.5x: {'OK' if t_m <= 1.5 * t_b and m_m <= 1.5 * m_b else 'MISSED'})")


def bench_calls(folder: str, n: int, calls: int, rounds: int) -> None:
    sys.path.insert(0, folder)
    import bench_resume_target as t

    path = os.path.join(folder, f"r{n}.jsonl")
    hit = t.make(path, skip=True)
    hit(0, 0, 0.5)  # index once
    picks = range(0, n, max(1, n // calls))
    best_hit = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in picks:
            hit(0, i, 0.5)
        best_hit = min(best_hit, (time.perf_counter() - start) / len(picks))
    print(f"  hit with {n:,} records: {best_hit * 1e6:.2f} us/call "
          f"(target <= 2 us at 100k: {'OK' if best_hit <= 2e-6 or n != 100_000 else 'MISSED'})")
    news = {"skip=False": [], "skip=True": [], "skip=True, claim=True": []}
    seq = n
    for r in range(rounds):
        for label, opts in (("skip=False", {}), ("skip=True", {"skip": True}),
                            ("skip=True, claim=True", {"skip": True, "claim": True})):
            fresh = os.path.join(folder, f"new-{r}-{label.replace(', ', '-')}.jsonl")
            f = t.make(fresh, **opts)
            f(1, -1, 0.5)  # open and index the (empty) file first
            start = time.perf_counter()
            for i in range(calls):
                f(1, seq + i, 0.5)
            news[label].append((time.perf_counter() - start) / calls)
        seq += calls
    base = min(news["skip=False"])
    for label, times in news.items():
        best = min(times)
        target = " (target <= 1.5x: " + ("OK)" if best <= 1.5 * base else "MISSED)") \
            if label == "skip=True" else ""
        print(f"  new call, {label}: {best * 1e6:.2f} us, {best / base:.2f}x skip=False{target}")


def bench_memlist(calls: int, rounds: int) -> None:
    rows: dict[str, list[float]] = {"no skip": [], "skip, new": [], "skip, hit": []}
    for _ in range(rounds):
        data: list = []
        plain = memo.memlist(data=data)(lambda a, b: PAYLOAD)
        start = time.perf_counter()
        for i in range(calls):
            plain(i, 0)
        rows["no skip"].append((time.perf_counter() - start) / calls)
        data2: list = []
        skipping = memo.memlist(data=data2, skip=True)(lambda a, b: PAYLOAD)
        start = time.perf_counter()
        for i in range(calls):
            skipping(i, 0)
        rows["skip, new"].append((time.perf_counter() - start) / calls)
        start = time.perf_counter()
        for i in range(calls):
            skipping(i, 0)
        rows["skip, hit"].append((time.perf_counter() - start) / calls)
    base = min(rows["no skip"])
    print("  memlist: " + ", ".join(f"{k} {min(v) * 1e6:.2f} us ({min(v) / base:.2f}x)"
                                    for k, v in rows.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-resume-", dir=args.dir)
    with open(os.path.join(folder, "bench_resume_target.py"), "w") as f:
        f.write(TARGET)
    sizes = [int(s) for s in args.sizes.split(",")]
    print("index build (fresh process; peak RSS growth), against a dict of orjson keys:")
    for n in sizes:
        bench_index(folder, n, args.rounds)
    print("calls:")
    for n in sizes:
        bench_calls(folder, n, min(args.calls, n), args.rounds)
    bench_memlist(args.calls, args.rounds)
    sample = os.path.join(folder, f"r{sizes[0]}.jsonl")
    with open(sample, "rb") as f:
        line = f.readline()
    meta = json.loads(line)["$memo"]
    extra = len(b',"$memo":') + len(json.dumps(meta, separators=(",", ":")))
    print(f"bytes the identity adds per record: {extra} (of {len(line)}); "
          f"without the skip key: {extra - len(meta['k']) - 7}")


if __name__ == "__main__":
    main()

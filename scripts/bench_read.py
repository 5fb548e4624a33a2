"""Reading a large memo file: memo against msgspec and polars on the same file, in one run.

    PYTHONPATH=. python scripts/bench_read.py                 # 1M records (~150 MB)
    PYTHONPATH=. python scripts/bench_read.py --records 100000 --rounds 2

Generates a file of records as memo writes them (every record with its ``$memo`` key,
one in a hundred with a nan or inf loss), then times each contender in a fresh
subprocess (so peak memory is each one's own: ``ru_maxrss`` of the child), best of
``--rounds`` interleaved rounds:

=========================  ==========================================  ========
memo                       baseline                                    goal
=========================  ==========================================  ========
``memo.load``              msgspec ``Decoder().decode_lines``          <= 1.3x
``memo.to_polars`` time    ``polars.read_ndjson``                      <= 1.5x
``memo.to_polars`` memory  ``polars.read_ndjson``                      <= 2x
``memo show --group-by``   polars read + ``group_by().agg()``          <= 2x
=========================  ==========================================  ========

Each side's time covers reading the file and building its result (imports are done
before the clock starts). Before timing, the script checks that memo restores every
nan/inf exactly and still reports a corrupt line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import warnings

CONTENDERS = ("msgspec", "msgspec_nogc", "load", "polars", "to_polars", "polars_group",
              "show_group")
GROUP = ["model", "lr"]


def generate(path: str, n: int, seed: int = 0, meta: bool = True) -> tuple[int, int]:
    """Write ``n`` records; return how many losses are nan and how many inf."""
    from memo import serialize

    rng = random.Random(seed)
    memo = {"f": "bench_read.train", "v": "5d41402a", "a": ["model", "lr", "seed"]}
    lrs = [10 ** -(k / 4) for k in range(4, 16)]
    nans = infs = 0
    with open(path, "wb") as f:
        buf = []
        for i in range(n):
            loss = rng.random()
            if i % 100 == 7:
                loss = math.nan if i % 200 == 7 else math.inf
                nans += loss != loss
                infs += loss == math.inf
            buf.append(serialize.dumps_line({
                "model": rng.choice(("mlp", "cnn", "rnn")), "lr": rng.choice(lrs),
                "seed": i % 10, "loss": loss, "acc": rng.random(),
                **({"$memo": memo} if meta else {})}))
            if len(buf) >= 10000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    return nans, infs


def child(which: str, path: str) -> None:
    """Run one contender in this (fresh) process and print its time and peak memory."""
    if which in ("msgspec", "msgspec_nogc"):
        import gc

        import msgspec

        decoder = msgspec.json.Decoder()
        if which == "msgspec_nogc":  # what memo.load does too: no collections while decoding
            gc.disable()
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            rows = len(decoder.decode_lines(f.read()))
    elif which == "load":
        import memo

        t0 = time.perf_counter()
        rows = len(memo.load(path))
    elif which in ("polars", "polars_group"):
        import polars as pl

        t0 = time.perf_counter()
        frame = pl.read_ndjson(path)
        if which == "polars_group":
            frame = frame.group_by(GROUP).agg(
                pl.col("seed", "loss", "acc").mean().name.suffix("_mean"), pl.len())
        rows = frame.height
    elif which == "to_polars":
        import polars  # noqa: F401

        import memo

        t0 = time.perf_counter()
        rows = memo.to_polars(path).height
    elif which == "show_group":
        import polars  # noqa: F401
        import rich  # noqa: F401

        import memo.show
        from memo.cli import main

        t0 = time.perf_counter()
        with open(os.devnull, "w") as sink:
            stdout, sys.stdout = sys.stdout, sink
            try:
                main(["show", path, "--group-by", ",".join(GROUP), "--format", "csv"])
            finally:
                sys.stdout = stdout
        rows = -1
    else:
        raise SystemExit(f"unknown contender {which!r}")
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_mb(), "rows": rows}))


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would carry the high-water
    mark of the parent that forked it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(which: str, path: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", which, path],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{which} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_exactness(path: str, nans: int, infs: int) -> None:
    """memo restores every nan/inf, in load and to_polars, and reports a corrupt line."""
    import memo

    rows = memo.load(path)
    got = sum(r["loss"] != r["loss"] for r in rows), sum(r["loss"] == math.inf for r in rows)
    assert got == (nans, infs), f"load restored {got}, expected {(nans, infs)}"
    assert all("$memo" not in r and "$nonfinite" not in r for r in rows[:1000])
    try:
        import polars as pl
    except ImportError:
        return
    frame = memo.to_polars(path)
    loss = frame["loss"]
    got = int(loss.is_nan().sum()), int((loss == math.inf).sum())
    assert got == (nans, infs), f"to_polars restored {got}, expected {(nans, infs)}"
    assert "$memo" not in frame.columns and "$nonfinite" not in frame.columns
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.jsonl")
        with open(path, "rb") as src, open(bad, "wb") as dst:
            dst.write(b"".join(src.readline() for _ in range(1000)) + b'{"torn": \n')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert memo.to_polars(bad).height == 1000 and len(memo.load(bad)) == 1000
        assert sum(":1001: corrupt line" in str(w.message) for w in caught) == 2, caught
    assert isinstance(frame, pl.DataFrame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file", help="where to write the file (default: a temporary one)")
    parser.add_argument("--without-meta", action="store_true",
                        help="records without the $memo key (as files written before it)")
    parser.add_argument("--child", nargs=2, metavar=("WHICH", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    tmp = None
    path = args.file
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, "bench.jsonl")
    try:
        t0 = time.perf_counter()
        nans, infs = generate(path, args.records, meta=not args.without_meta)
        size = os.path.getsize(path) / 1e6
        print(f"{args.records:,} records, {size:.0f} MB ({nans} nan, {infs} inf losses), "
              f"written in {time.perf_counter() - t0:.1f} s")
        check_exactness(path, nans, infs)
        print("checked: nan/inf restored exactly by load and to_polars; corrupt line reported")
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for which in CONTENDERS:
                got = run_child(which, path)
                old = best.get(which)
                if old is None:
                    best[which] = got
                else:
                    old["seconds"] = min(old["seconds"], got["seconds"])
                    old["peak_mb"] = min(old["peak_mb"], got["peak_mb"])
        for which in CONTENDERS:
            b = best[which]
            print(f"  {which:<13} {b['seconds']:7.3f} s  peak {b['peak_mb']:7.0f} MB")

        def ratio(a: str, b: str, what: str = "seconds") -> float:
            return best[a][what] / best[b][what]

        rows = [
            ("memo.load / msgspec decode_lines", ratio("load", "msgspec"), 1.3),
            ("memo.to_polars / polars.read_ndjson (time)", ratio("to_polars", "polars"), 1.5),
            ("memo.to_polars / polars.read_ndjson (peak memory)",
             ratio("to_polars", "polars", "peak_mb"), 2.0),
            ("memo show --group-by / polars read + group_by",
             ratio("show_group", "polars_group"), 2.0),
        ]
        for label, value, goal in rows:
            verdict = "ok" if value <= goal else "MISSED"
            print(f"{label:<52} {value:5.2f}x  (goal <= {goal}x) {verdict}")
        print(f"{'(memo.load / msgspec decode_lines with GC paused)':<52} "
              f"{ratio('load', 'msgspec_nogc'):5.2f}x")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()

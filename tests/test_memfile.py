"""memfile with many writers: processes (fork and spawn), threads, big records, kills."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import ROOT, env

import memo
from memo import memfile
from memo.reader import BadLine, scan

SIZES = (100, 1 << 20)  # smallest and largest line, bytes


def _sizes(writer: int, n: int) -> list[int]:
    """Line sizes from 100 B to 1 MB (log-uniform), always including both ends."""
    rng = random.Random(writer)
    sizes = [int(10 ** rng.uniform(2, 6)) for _ in range(n)]
    sizes[0], sizes[-1] = SIZES
    return sizes


def _record_fn(path: str):
    @memfile(path)
    def record(writer: int, thread: int, seq: int, size: int) -> dict:
        return {"pad": "x" * max(size - 80, 0)}

    return record


def _write_many(path: str, writer: int, threads: int, per_thread: int) -> None:
    record = _record_fn(path)

    def run(t: int) -> None:
        for seq, size in enumerate(_sizes(writer * 100 + t, per_thread)):
            record(writer, t, seq, size)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


def _verify(path: str, expected: set[tuple[int, int, int]]) -> None:
    lines = open(path, "rb").read().split(b"\n")
    assert lines[-1] == b"", "the file must end with a newline"
    seen: list[tuple[int, int, int]] = []
    for raw in lines[:-1]:
        rec = json.loads(raw)  # every line parses on its own
        seen.append((rec["writer"], rec["thread"], rec["seq"]))
        assert rec["pad"] == "x" * len(rec["pad"])
    assert len(seen) == len(set(seen)), "a record landed twice"
    assert set(seen) == expected


@pytest.mark.slow
@pytest.mark.parametrize("n_fork,n_spawn", [(2, 0), (1, 1), (8, 8)])
def test_many_processes_and_threads_every_record_once_and_whole(tmp_path, n_fork, n_spawn):
    path = str(tmp_path / "log.jsonl")
    threads, per_thread = 2, 6
    # the parent writes first, so forked children inherit an open, used descriptor
    _record_fn(path)(-1, 0, 0, 200)
    parent_writer = threading.Thread(target=_write_many, args=(path, -2, 1, per_thread))
    parent_writer.start()  # and keeps writing from a thread while it forks
    procs = []
    for w in range(n_fork + n_spawn):
        ctx = multiprocessing.get_context("fork" if w < n_fork else "spawn")
        procs.append(ctx.Process(target=_write_many, args=(path, w, threads, per_thread)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    parent_writer.join()
    expected = {(w, t, s) for w in range(n_fork + n_spawn) for t in range(threads)
                for s in range(per_thread)}
    expected |= {(-1, 0, 0)} | {(-2, 0, s) for s in range(per_thread)}
    _verify(path, expected)


KILLED_WRITER = textwrap.dedent("""
    import sys
    from memo import memfile
    path, writer = sys.argv[1], int(sys.argv[2])
    @memfile(path)
    def record(writer, seq):
        return {"pad": "y" * (1 << 20 if seq % 2 else 3000)}
    print("ready", flush=True)
    seq = 0
    while True:
        record(writer, seq)
        seq += 1
""")


@pytest.mark.slow
def test_writers_killed_at_random_moments_lose_only_their_in_flight_record(tmp_path):
    path = str(tmp_path / "log.jsonl")
    rng = random.Random(7)
    procs = [subprocess.Popen([sys.executable, "-c", KILLED_WRITER, path, str(w)],
                              stdout=subprocess.PIPE, env=env()) for w in range(6)]
    for p in procs:
        assert p.stdout.readline() == b"ready\n"
    for p in procs:
        time.sleep(rng.uniform(0.01, 0.15))
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
        p.stdout.close()
    # a torn fragment as a writer killed inside write(2) leaves it
    with open(path, "ab") as f:
        f.write(b'{"writer": 99, "seq": 0, "pad": "yyyy')

    @memfile(path)
    def fresh(writer: int, seq: int) -> dict:
        return {"pad": "z" * 10}

    for seq in range(50):
        fresh(100, seq)
    bad = [item for item in scan(path) if isinstance(item, BadLine)]
    assert 1 <= len(bad) <= len(procs) + 1  # the planted fragment, and in-flight lines only
    assert not any(b.torn for b in bad)  # every fragment was ended by a newline
    with pytest.warns(memo.CorruptLineWarning):
        records = memo.load(path)
    by_writer: dict[int, list[int]] = {}
    for rec in records:
        by_writer.setdefault(rec["writer"], []).append(rec["seq"])
    assert by_writer[100] == list(range(50))  # nothing glued to a fragment, nothing lost
    for w in range(6):  # each killed writer: its records in order, no gaps
        seqs = by_writer.get(w, [])
        assert seqs == list(range(len(seqs)))


def _pool_task(args: tuple[str, int]) -> int:
    path, i = args
    return _shard_fn(path)(i)["square"]


_FNS: dict[str, object] = {}


def _shard_fn(path: str):
    if path not in _FNS:
        @memfile(path, mode="shard")
        def square(i: int) -> dict:
            return {"square": i * i, "pid": os.getpid()}
        _FNS[path] = square
    return _FNS[path]


def test_shard_mode_from_a_pool_then_load_and_merge(tmp_path):
    target = str(tmp_path / "sweep.jsonl")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        assert pool.map(_pool_task, [(target, i) for i in range(60)]) == \
            [i * i for i in range(60)]
    shards = sorted(os.listdir(target + ".shards"))
    assert not os.path.exists(target) and shards
    for name in shards:  # each process wrote its own shard, named after it
        pid = int(name.split(".")[-2])
        assert {r["pid"] for r in memo.load(os.path.join(target + ".shards", name))} == {pid}
    records = memo.load(target)
    assert sorted(r["i"] for r in records) == list(range(60))
    merged = str(tmp_path / "merged.jsonl")
    report = memo.merge(merged, target)
    assert report.records == 60 and report.bad == []
    assert sorted(r["i"] for r in memo.load(merged)) == list(range(60))


def test_shard_name_follows_the_slurm_array_task(tmp_path):
    child_env = env(SLURM_ARRAY_JOB_ID="4242", SLURM_ARRAY_TASK_ID="7", SLURM_JOB_ID="4249")
    code = ("import sys, memo\n"
            "f = memo.memfile(sys.argv[1], mode='shard')(lambda a: {'b': a})\n"
            "f(1)\nimport os; print(os.getpid())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.jsonl")],
                         env=child_env, capture_output=True, text=True, check=True).stdout
    (name,) = os.listdir(tmp_path / "r.jsonl.shards")
    assert name.startswith("slurm-4242_7.") and name.endswith(f".{out.strip()}.jsonl")


def _sweep_module(tmp_path, monkeypatch, name="sweepmod", body="{'c': a * b}", **opts):
    """A module defining a memfile(skip=True) function, importable here and in subprocesses."""
    import importlib

    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        import json, os, memo
        calls = []

        @memo.memfile(os.environ["SWEEP_PATH"], **json.loads(os.environ["SWEEP_OPTS"]))
        def f(a: int, b: float = 1.0) -> dict:
            calls.append((a, b))
            return {body}
    """))
    monkeypatch.setenv("SWEEP_PATH", str(tmp_path / "r.jsonl"))
    monkeypatch.setenv("SWEEP_OPTS", json.dumps(opts or {"skip": True}))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def test_skip_is_decided_before_the_function_runs(tmp_path, monkeypatch):
    mod = _sweep_module(tmp_path, monkeypatch)
    f, calls, path = mod.f, mod.calls, str(tmp_path / "r.jsonl")
    assert f(1) == {"c": 1.0}
    assert f(1, 1) == {"c": 1.0}  # 1 and 1.0 are the same argument
    assert f(a=1, b=1.0) == {"c": 1.0}
    assert calls == [(1, 1.0)]
    # another process runs the same function: the index reads the new tail and skips that too
    subprocess.run([sys.executable, "-c", "import sweepmod; sweepmod.f(2); sweepmod.f(3)"],
                   env=env(PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)])), check=True)
    assert f(3) == {"c": 3.0} and f(4) == {"c": 4.0}
    assert calls == [(1, 1.0), (4, 1.0)]
    assert len(memo.load(path)) == 4


def test_skip_retries_failed_calls_by_default(tmp_path):
    path = str(tmp_path / "r.jsonl")
    attempts = []

    def flaky(x: int) -> dict:
        attempts.append(x)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return {"y": x}

    retrying = memfile(path, skip=True)(memo.ignore_error(flaky))
    assert retrying(5)["status"] == "error"
    assert retrying(5) == {"y": 5, "status": "ok"}
    assert retrying(5) == {"y": 5, "status": "ok"}
    assert attempts == [5, 5]
    keeping = memfile(str(tmp_path / "k.jsonl"), skip=True, retry_failed=False)(
        memo.ignore_error(flaky))
    attempts.clear()
    assert keeping(6)["status"] == "error"
    assert keeping(6)["status"] == "error"
    assert attempts == [6]


def test_skip_in_shard_mode_sees_every_shard(tmp_path, monkeypatch):
    child_env = env(PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]),
                    SWEEP_PATH=str(tmp_path / "r.jsonl"), SWEEP_OPTS='{"mode": "shard"}')
    mod = _sweep_module(tmp_path, monkeypatch, mode="shard", skip=True)
    subprocess.run([sys.executable, "-c", "import sweepmod; [sweepmod.f(i) for i in range(5)]"],
                   env=child_env, check=True)
    for i in range(8):
        mod.f(i)
    mod.f(7)
    assert [a for a, _ in mod.calls] == [5, 6, 7]


def test_durable_records_are_whole(tmp_path):
    path = str(tmp_path / "r.jsonl")
    f = memfile(path, durable=True)(lambda a: {"b": [a] * 3})
    for i in range(20):
        f(i)
    assert [r["b"] for r in memo.load(path)] == [[i] * 3 for i in range(20)]


def test_skip_with_values_beyond_64_bits(tmp_path):
    calls = []

    @memfile(tmp_path / "r.jsonl", skip=True)
    def f(a: int) -> dict:
        calls.append(a)
        return {"b": 1}

    f(2**70)
    f(2**70)
    f(2.5e300)
    f(2.5e300)
    assert calls == [2**70, 2.5e300]


def test_skip_indexes_once_then_reads_only_the_appended_tail(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a":1,"r":10}\n')
    calls = []

    @memfile(path, skip=True)
    def f(a: int) -> dict:
        calls.append(a)
        return {"r": a * 10}

    assert f(1) == {"r": 10} and calls == []
    # rewrite the indexed part in place: a reader of the whole file would now find a=2
    with open(path, "r+b") as fh:
        fh.write(b'{"a":2,"r":99}\n')
    with open(path, "ab") as fh:  # and append a new record, which must be picked up
        fh.write(b'{"a":3,"r":30}\n')
    assert f(3) == {"r": 30}
    assert f(2) == {"r": 20} and calls == [2]

"""memo.merge and `memo merge`: streaming, validating, de-duplicating, idempotent, live-safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import ROOT, env

import memo
from memo.plan import read as read_plan


def _lines(path):
    return [json.loads(x) for x in open(path, "rb").read().splitlines()]


def test_merge_files_and_shard_folders_in_order(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"x":1}\n{"x":2}\n')
    shards = tmp_path / "b.jsonl.shards"
    shards.mkdir()
    (shards / "h.7.jsonl").write_bytes(b'{"x":4}\n')
    (shards / "h.3.jsonl").write_bytes(b'{"x":3}\n')
    report = memo.merge(tmp_path / "out.jsonl", [tmp_path / "a.jsonl", tmp_path / "b.jsonl"])
    assert [r["x"] for r in _lines(tmp_path / "out.jsonl")] == [1, 2, 3, 4]
    assert (report.records, report.corrupt, report.incomplete, report.duplicates) == (4, 0, 0, 0)
    assert len(report.inputs) == 3


def test_corrupt_lines_are_reported_and_skipped_or_kept_aside(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b'{"x":1}\n{"x":\n{"x":2}\n[3]\n{"x":4')
    with pytest.warns(memo.CorruptLineWarning) as caught:
        report = memo.merge(tmp_path / "out.jsonl", src, corrupt=tmp_path / "bad.txt")
    assert len(caught) == 3
    assert [r["x"] for r in _lines(tmp_path / "out.jsonl")] == [1, 2]
    assert (report.records, report.corrupt, report.incomplete) == (2, 2, 1)
    assert [(b.lineno, b.torn) for b in report.bad] == [(2, False), (4, False), (5, True)]
    # the torn last line may still be being written: it is not set aside as corrupt
    assert (tmp_path / "bad.txt").read_bytes() == b'{"x":\n[3]\n'
    with pytest.raises(ValueError, match="a.jsonl:2"):
        memo.merge(tmp_path / "out2.jsonl", src, errors="raise")
    assert not (tmp_path / "out2.jsonl").exists()
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_merge_is_idempotent_and_dedupe_keeps_the_first(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b'{"n":1,"t":0.1}\n{"n":2,"t":0.2}\n')
    b.write_bytes(b'{"n":1,"t":0.1}\n{"n":2,"t":0.9}\n{"n":3,"status":"error"}\n'
                  b'{"n":3,"t":0.3}\n')
    out = tmp_path / "out.jsonl"
    memo.merge(out, [a, b])
    first = out.read_bytes()
    memo.merge(out, [a, b])
    assert out.read_bytes() == first and len(first.splitlines()) == 6
    report = memo.merge(out, [a, b], dedupe=True)  # identical records only
    assert report.duplicates == 1 and len(_lines(out)) == 5
    report = memo.merge(out, [a, b], dedupe=["n"])  # by identity: the argument n
    assert [(r["n"], r.get("t")) for r in _lines(out)] == \
        [(1, 0.1), (2, 0.2), (3, None), (3, 0.3)]  # a failed call does not hide the rerun
    assert report.duplicates == 2
    again = memo.merge(out, [out, a, b], dedupe=["n"])  # the output as an input: no growth
    assert again.records == 4 and [(r["n"], r.get("t")) for r in _lines(out)] == \
        [(1, 0.1), (2, 0.2), (3, None), (3, 0.3)]


def test_dedupe_identity_treats_1_and_1_0_alike(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b'{"n":1,"v":"a"}\n{"n":1.0,"v":"b"}\n{"n":true,"v":"c"}\n')
    memo.merge(tmp_path / "out.jsonl", src, dedupe=["n"])
    assert [r["v"] for r in _lines(tmp_path / "out.jsonl")] == ["a", "c"]


APPENDER = textwrap.dedent("""
    import sys, time
    from memo import memfile
    f = memfile(sys.argv[1])(lambda i: {"pad": "z" * (i * 7919 % 3000)})
    f(0)
    print("ready", flush=True)
    for i in range(1, 1000000):
        f(i)
        if i % 20 == 0:
            time.sleep(0.0005)  # keep the file small: the merges must overlap the writes
""")


def test_merge_while_a_writer_appends_takes_only_whole_lines(tmp_path):
    src = str(tmp_path / "live.jsonl")
    writer = subprocess.Popen([sys.executable, "-c", APPENDER, src], stdout=subprocess.PIPE,
                              env=env())
    try:
        assert writer.stdout.readline() == b"ready\n"
        time.sleep(0.2)
        outs = []
        for k in range(3):
            out = tmp_path / f"out{k}.jsonl"
            report = memo.merge(out, src, errors="ignore")
            assert report.corrupt == 0
            outs.append([r["i"] for r in _lines(out)])
            time.sleep(0.05)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    for got in outs:
        assert got == list(range(len(got)))  # a prefix of the sweep, every line whole
    assert 0 < len(outs[0]) <= len(outs[2])


def test_cli_merge(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"x":1}\n{"x":1}\nnope\n')
    child_env = env()
    run = subprocess.run([sys.executable, "-m", "memo", "merge", str(tmp_path / "o.jsonl"),
                          str(tmp_path / "a.jsonl"), "--dedupe", "--corrupt",
                          str(tmp_path / "bad")], env=child_env, capture_output=True, text=True)
    assert run.returncode == 1  # a line was skipped (the exit statuses of memo.cli)
    assert "a.jsonl:3: corrupt line" in run.stderr and "merged 1 records" in run.stderr
    assert (tmp_path / "o.jsonl").read_bytes() == b'{"x":1}\n'
    assert (tmp_path / "bad").read_bytes() == b"nope\n"
    missing = subprocess.run([sys.executable, "-m", "memo", "merge", str(tmp_path / "o.jsonl"),
                              str(tmp_path / "missing.jsonl")], env=child_env, capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "missing.jsonl" in missing.stderr


def test_cli_dedupe_by_keys_as_the_api_does(tmp_path):
    """--dedupe-by KEY is dedupe=[KEY]; --key, its old spelling, still works and says so."""
    src = tmp_path / "a.jsonl"
    src.write_bytes(b'{"n":1,"s":1,"y":1}\n{"n":1,"s":1,"y":2}\n{"n":1,"s":2,"y":3}\n')
    merged = {}
    for flags in (["--dedupe-by", "n,s"], ["--dedupe-by", "n", "--dedupe-by", "s"],
                  ["--key", "n", "--key", "s"], ["--dedupe-by", "n"], ["--dedupe"]):
        out = tmp_path / "o.jsonl"
        run = subprocess.run([sys.executable, "-m", "memo", "merge", "-q", str(out), str(src),
                              *flags], env=env(), capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert ("now spelled --dedupe-by" in run.stderr) == ("--key" in flags)
        merged[" ".join(flags)] = [r["y"] for r in _lines(out)]
    api = [r["y"] for r in (memo.merge(tmp_path / "api.jsonl", src, dedupe=["n", "s"]),
                            _lines(tmp_path / "api.jsonl"))[1]]
    assert merged["--dedupe-by n,s"] == merged["--dedupe-by n --dedupe-by s"] == \
        merged["--key n --key s"] == api == [1, 3]
    assert merged["--dedupe-by n"] == [1]
    assert merged["--dedupe"] == [1, 2, 3]  # no two records are identical


def test_a_merge_takes_the_plans_of_its_inputs_along_once(tmp_path):
    """memo status on a merged file knows what the sweep planned (shard-mode target)."""
    target, out = tmp_path / "res.jsonl", tmp_path / "all.jsonl"
    f = memo.memfile(target, mode="shard")(lambda x: {"y": x})
    memo.plan(target, memo.grid(x=range(5)))
    for x in range(3):
        f(x)
    memo.merge(out, [target])
    plan = read_plan(out)
    assert plan is not None and plan.settings == [{"x": i} for i in range(5)]
    status = subprocess.run([sys.executable, "-m", "memo", "status", str(out)], env=env(),
                            capture_output=True, text=True)
    assert status.returncode == 1 and "3 of 5 planned settings done" in status.stdout
    size = os.path.getsize(str(out) + ".plan")
    memo.merge(out, [out, tmp_path / "res.jsonl.shards"], dedupe=["x"])  # again: no growth
    assert os.path.getsize(str(out) + ".plan") == size


def test_merge_script(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"x":1}\n')
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "merge.py"),
                    str(tmp_path / "o.jsonl"), str(tmp_path / "a.jsonl"), "-q"], check=True,
                   env=env())
    assert (tmp_path / "o.jsonl").read_bytes() == b'{"x":1}\n'


FINITE_APPENDER = textwrap.dedent("""
    import sys, time
    from memo import memfile
    f = memfile(sys.argv[1])(lambda i: {"pad": "w" * (i % 500)})
    f(0)
    print("ready", flush=True)
    for i in range(1, 3000):
        f(i)
        if i % 20 == 0:
            time.sleep(0.001)
""")


def test_merging_into_a_file_that_writers_append_to_loses_nothing(tmp_path):
    out, other = str(tmp_path / "live.jsonl"), tmp_path / "other.jsonl"
    other.write_bytes(b"".join(b'{"j":%d}\n' % j for j in range(100)))
    writer = subprocess.Popen([sys.executable, "-c", FINITE_APPENDER, out],
                              stdout=subprocess.PIPE, env=env())
    try:
        assert writer.stdout.readline() == b"ready\n"
        merges = 0
        while writer.poll() is None:
            memo.merge(out, [out, other], dedupe=True)
            merges += 1
            time.sleep(0.02)
    finally:
        writer.wait()
        writer.stdout.close()
    assert writer.returncode == 0 and merges >= 1
    records = _lines(out)
    assert sorted(r["i"] for r in records if "i" in r) == list(range(3000))
    assert sorted(r["j"] for r in records if "j" in r) == list(range(100))

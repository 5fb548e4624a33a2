"""memo.check and `memo check`."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import env

import memo


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "memo", "check", *map(str, args)],
                          capture_output=True, text=True,
                          env=env())


def test_check_counts_records_and_names_bad_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_bytes(b'{"a":1}\n{"a":2}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a":1}\n{"a":1,"b"\n{"a":3}\n{"a":')
    report = memo.check(good, bad)
    assert report.records == 4 and (report.corrupt, report.incomplete) == (1, 1)
    assert [(os.path.basename(b.path), b.lineno) for b in report.bad] == \
        [("bad.jsonl", 2), ("bad.jsonl", 4)]
    assert memo.check(good).ok and not report.ok


def test_cli_exit_codes(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_bytes(b'{"a":1}\n')
    ok = _cli(good)
    assert ok.returncode == 0 and ok.stdout == "" and "1 records" in ok.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"a":1}\nxx\n')
    failed = _cli(good, bad)
    assert failed.returncode == 1
    assert failed.stdout == f"{bad}:2: corrupt line: JSON is malformed: invalid character " \
                            "(byte 0)\n"
    assert _cli(tmp_path / "missing.jsonl").returncode == 2


def test_check_a_shard_mode_target(tmp_path):
    target = tmp_path / "r.jsonl"
    f = memo.memfile(target, mode="shard")(lambda a: {"b": a})
    for i in range(3):
        f(i)
    assert memo.check(target).records == 3
    assert _cli(target).returncode == 0

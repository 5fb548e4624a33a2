"""Reading: streaming validation, torn tails, shard folders, following a growing file."""

from __future__ import annotations

import os
import time

import pytest

import memo
from memo.reader import BadLine, Tail, iter_records, scan


def _scan(path, **kw):
    good, bad = [], []
    for item in scan(path, **kw):
        (bad if isinstance(item, BadLine) else good).append(item)
    return good, bad


def test_scan_passes_good_blocks_verbatim_and_names_bad_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n\n{"a":\n[1,2]\n{"a":1}{"a":2}\n{"a":"\xff"}\n'
                     b'{"a":3}\n{"a":4')
    good, bad = _scan(path, block=7)  # blocks smaller than a line
    assert b"".join(g[0] for g in good) == b'{"a":1}\n{"a":2}\n{"a":3}\n'
    assert sum(g[1] for g in good) == 3
    assert [(b.lineno, b.torn) for b in bad] == [(4, False), (5, False), (6, False),
                                                (7, False), (9, True)]
    assert "not a JSON object" in bad[1].reason and bad[3].reason == "not UTF-8"
    assert bad[0].data == b'{"a":'
    assert str(bad[4]).startswith(f"{path}:9: incomplete last line")


def test_scan_stops_at_the_given_end(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n')
    good, bad = _scan(path, end=12)
    assert good == [(b'{"a":1}\n', 1)] and [b.torn for b in bad] == [True]


def test_load_reports_a_torn_last_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":')
    with pytest.warns(memo.CorruptLineWarning, match="r.jsonl:2: incomplete last line"):
        assert memo.load(path) == [{"a": 1}]
    assert memo.load(path, errors="ignore") == [{"a": 1}]
    with pytest.raises(ValueError, match=":2:"):
        memo.load(path, errors="raise")


def test_load_reads_a_target_with_its_shards_and_a_shard_folder(tmp_path):
    target = tmp_path / "r.jsonl"
    target.write_bytes(b'{"a":0}\n')
    shards = tmp_path / "r.jsonl.shards"
    shards.mkdir()
    (shards / "h.2.jsonl").write_bytes(b'{"a":2}\n')
    (shards / "h.1.jsonl").write_bytes(b'{"a":1}\n')
    (shards / "notes.txt").write_bytes(b"ignored")
    assert [r["a"] for r in memo.load(target)] == [0, 1, 2]
    assert [r["a"] for r in memo.load(shards)] == [1, 2]
    target.unlink()
    assert [r["a"] for r in iter_records(target)] == [1, 2]
    with pytest.raises(FileNotFoundError):
        memo.load(tmp_path / "nothing.jsonl")


def test_tail_reads_only_new_whole_lines_and_notices_replacement(tmp_path):
    path = tmp_path / "r.jsonl"
    tail = Tail(path)
    assert tail.read_new() == (False, [])
    path.write_bytes(b'{"a":1}\n{"a":')
    assert tail.read_new() == (False, [{"a": 1}])
    with open(path, "ab") as f:
        f.write(b'2}\n')
    assert tail.read_new() == (False, [{"a": 2}])
    assert tail.offset == os.path.getsize(path)
    replacement = tmp_path / "new.jsonl"
    replacement.write_bytes(b'{"a":9}\n')
    os.replace(replacement, path)
    time.sleep(Tail.RECHECK * 2)  # the path is looked at again at most this often
    assert tail.read_new() == (True, [{"a": 9}])
    with open(path, "ab") as f:
        f.write(b'{"a":10}\n')
    assert tail.read_new() == (False, [{"a": 10}])  # appends are seen at once


def test_scan_lines_longer_than_a_block(tmp_path):
    path = tmp_path / "r.jsonl"
    big = b'{"a":"' + b"x" * 5000 + b'"}\n'
    path.write_bytes(big + b'{"b":1}\n' + big + b'{"c":')
    good, bad = _scan(path, block=64)
    assert b"".join(g[0] for g in good) == big + b'{"b":1}\n' + big
    assert sum(g[1] for g in good) == 3 and [(b.lineno, b.torn) for b in bad] == [(4, True)]


@pytest.mark.parametrize("content, bad_line", [
    (b'{"a":1}{"b":2}\n\n{"c":3}\n', 1),  # two objects on a line, and a blank line
    (b'{"a":1}{"b":2}\n{"c":{}\n}\n', 1),  # two on a line, one object over two lines
    (b'{"a":1}\n{"b":\n2}\n', 2),
    (b'{"a":1} {"b":2}\n {}\n', 1),
])
@pytest.mark.parametrize("numpy", [True, False])
def test_scan_finds_lines_that_do_not_hold_exactly_one_object(tmp_path, content, bad_line, numpy,
                                                              monkeypatch):
    if not numpy:
        monkeypatch.setattr(memo.reader, "_numpy", lambda: None)
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    bad = [item for item in scan(path) if isinstance(item, BadLine)]
    assert bad and bad[0].lineno == bad_line
    assert not memo.check(path).ok
    good = b"".join(b'{"i":%d}\n' % i for i in range(1000))
    path.write_bytes(good)
    assert list(scan(path)) == [(good, 1000)]  # the fast path, one run

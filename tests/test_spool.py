"""The spool: appends from many processes, drained under the appenders' own lock."""

from __future__ import annotations

import fcntl
import multiprocessing
import os

import pytest

import memo
from memo.serialize import dumps_line
from memo.spool import Spool


def test_add_and_drain_in_batches(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    assert not spool.pending()
    spool.add([dumps_line({"i": i, "nan": float("nan")}) for i in range(5)])
    assert spool.pending()
    assert len(memo.load(spool.path)) == 5  # an ordinary memo file
    sent: list[list[int]] = []
    assert spool.drain(lambda recs: sent.append([r["i"] for r in recs]), batch=2) == 5
    assert sent == [[0, 1], [2, 3], [4]]
    assert not spool.pending() and os.path.exists(spool.path)
    assert spool.drain(lambda recs: sent.append(recs)) == 0


def test_a_failed_send_leaves_the_spool_whole(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    spool.add([dumps_line({"i": i}) for i in range(4)])

    def fail_second(recs, calls=[]):  # noqa: B006 - counts calls across this test only
        calls.append(1)
        if len(calls) == 2:
            raise OSError("endpoint gone")

    with pytest.raises(OSError, match="gone"):
        spool.drain(fail_second, batch=2)
    assert [r["i"] for r in memo.load(spool.path)] == [0, 1, 2, 3]


def test_a_missing_spool_drains_nothing(tmp_path):
    assert Spool(tmp_path / "none.jsonl").drain(lambda recs: None) == 0


def test_drain_skips_when_someone_else_is_draining(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    spool.add([dumps_line({"i": 1})])
    fd = os.open(spool.path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert spool.drain(lambda recs: None) is None
    finally:
        os.close(fd)
    assert spool.drain(lambda recs: None) == 1


def _append(path, k, n):
    spool = Spool(path)
    for i in range(n):
        spool.add([dumps_line({"k": k, "i": i})])


def test_records_appended_during_a_drain_are_kept(tmp_path):
    path = str(tmp_path / "s.jsonl")
    drained: list[tuple[int, int]] = []
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append, args=(path, k, 300)) for k in range(3)]
    for p in procs:
        p.start()
    spool = Spool(path)
    while any(p.is_alive() for p in procs):
        spool.drain(lambda recs: drained.extend((r["k"], r["i"]) for r in recs), wait=True)
    for p in procs:
        p.join()
    spool.drain(lambda recs: drained.extend((r["k"], r["i"]) for r in recs), wait=True)
    assert sorted(drained) == sorted((k, i) for k in range(3) for i in range(300))

"""The spool: appends from many processes, drained under the appenders' own lock."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest
from helpers import lines

import memo
from memo import locking
from memo.serialize import dumps_line
from memo.spool import Spool, refused_path
from memo.web.errors import DeliveryError
from memo.web.sender import Refused


def _collect(into):
    def send(chunk):
        into.append([memo.serialize.loads(line)["i"] for line in chunk])
        return []
    return send


def test_add_and_drain_in_batches(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    assert not spool.pending()
    spool.add([dumps_line({"i": i, "nan": float("nan")}) for i in range(5)])
    assert spool.pending()
    assert len(memo.load(spool.path)) == 5  # an ordinary memo file
    sent: list[list[int]] = []
    assert spool.drain(_collect(sent), batch=2).sent == 5
    assert sent == [[0, 1], [2, 3], [4]]
    assert not spool.pending() and os.path.exists(spool.path)
    assert spool.drain(_collect(sent)).sent == 0


def test_a_failed_send_leaves_the_spool_whole(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    spool.add([dumps_line({"i": i}) for i in range(4)])

    def fail_second(chunk, calls=[]):  # noqa: B006 - counts calls across this test only
        calls.append(1)
        if len(calls) == 2:
            raise DeliveryError("endpoint gone")
        return []

    with pytest.raises(DeliveryError, match="gone"):
        spool.drain(fail_second, batch=2)
    assert [r["i"] for r in memo.load(spool.path)] == [0, 1, 2, 3]


def test_refused_records_are_set_aside_once_and_the_rest_is_sent(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    assert spool.refused_path == str(tmp_path / "s.refused.jsonl") == refused_path(spool.path)
    spool.add([dumps_line({"i": i, "_memo_id": f"id{i}"}) for i in range(6)])
    sent: list[int] = []

    def odd_refused(chunk):
        out = []
        for line in chunk:
            i = memo.serialize.loads(line)["i"]
            if i % 2:
                out.append(Refused(line, DeliveryError("HTTP 413", 413)))
            else:
                sent.append(i)
        return out

    done = spool.drain(odd_refused, batch=4)
    assert (done.sent, done.refused, done.refused_path) == (3, 3, spool.refused_path)
    assert "413" in done.first_error
    assert sent == [0, 2, 4] and lines(spool.path) == []
    assert [r["i"] for r in lines(spool.refused_path)] == [1, 3, 5]
    spool.set_aside([Refused(dumps_line({"i": 1, "_memo_id": "id1"}), DeliveryError("again"))])
    assert [r["i"] for r in lines(spool.refused_path)] == [1, 3, 5]  # an id is set aside once


def test_a_missing_spool_drains_nothing(tmp_path):
    assert Spool(tmp_path / "none.jsonl").drain(lambda chunk: []).sent == 0
    assert not (tmp_path / "none.jsonl").exists()


def test_drain_skips_when_someone_holds_the_lock(tmp_path):
    spool = Spool(tmp_path / "s.jsonl")
    spool.add([dumps_line({"i": 1})])
    with locking.hold(spool.path):
        assert spool.drain(lambda chunk: []) is None
    assert spool.drain(lambda chunk: []).sent == 1


def _append(path, k, n):
    spool = Spool(path)
    for i in range(n):
        spool.add([dumps_line({"k": k, "i": i})])


def _drain_while_appending(path, writers, per_writer):
    drained: list[tuple[int, int]] = []

    def keep(chunk):
        drained.extend((r["k"], r["i"]) for r in map(memo.serialize.loads, chunk))
        return []

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append, args=(path, k, per_writer)) for k in range(writers)]
    for p in procs:
        p.start()
    spool = Spool(path)
    deadline = time.monotonic() + 120
    try:
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            spool.drain(keep, wait=True)
    finally:
        for p in procs:
            p.join(max(1.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    spool.drain(keep, wait=True)
    return drained


def test_records_appended_during_a_drain_are_kept(tmp_path):
    path = str(tmp_path / "s.jsonl")
    drained = _drain_while_appending(path, 3, 300)
    assert sorted(drained) == sorted((k, i) for k in range(3) for i in range(300))


@pytest.mark.parametrize("mode", ["posix", "soft"])
def test_drain_and_spooling_agree_on_the_lock_mode(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("MEMO_LOCK", mode)  # the writers and the drain find the mode alike
    path = str(tmp_path / "s.jsonl")
    writers, per_writer = 4, 1500 if mode == "posix" else 400
    drained = _drain_while_appending(path, writers, per_writer)
    expected = [(k, i) for k in range(writers) for i in range(per_writer)]
    assert len(drained) == len(expected)  # nothing lost, nothing sent twice
    assert sorted(drained) == expected


@pytest.mark.parametrize("mode", ["flock", "posix", "soft"])
def test_drain_and_spooling_threads_of_one_process_agree(tmp_path, monkeypatch, mode):
    import threading

    monkeypatch.setenv("MEMO_LOCK", mode)
    path = str(tmp_path / "s.jsonl")
    drained: list[tuple[int, int]] = []

    def keep(chunk):
        drained.extend((r["k"], r["i"]) for r in map(memo.serialize.loads, chunk))
        return []

    writers = [threading.Thread(target=_append, args=(path, k, 400)) for k in range(3)]
    for t in writers:
        t.start()
    spool = Spool(path)
    deadline = time.monotonic() + 120
    while any(t.is_alive() for t in writers) and time.monotonic() < deadline:
        spool.drain(keep, wait=True)
    for t in writers:
        t.join(max(1.0, deadline - time.monotonic()))
    spool.drain(keep, wait=True)
    assert sorted(drained) == [(k, i) for k in range(3) for i in range(400)]

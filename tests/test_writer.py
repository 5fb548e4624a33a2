"""AppendWriter: whole lines only, torn tails ended, short writes rolled back, fork safety."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import env

from memo.writer import AppendWriter, WriteError


@pytest.mark.parametrize("mode", ["flock", "posix", "soft", "none"])
def test_a_torn_fragment_is_ended_before_the_next_line(tmp_path, mode):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2,"b":"tor')  # a writer died inside write(2)
    writer = AppendWriter(path, lock=mode)
    writer.append(b'{"a":3}\n')
    writer.append(b'{"a":4}\n')
    assert path.read_bytes() == b'{"a":1}\n{"a":2,"b":"tor\n{"a":3}\n{"a":4}\n'


def test_a_fragment_left_between_our_own_appends_is_ended(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = AppendWriter(path)
    writer.append(b'{"a":1}\n')
    with open(path, "ab") as f:  # another writer dies mid-line
        f.write(b'{"a":')
    writer.append(b'{"a":2}\n')
    assert path.read_bytes() == b'{"a":1}\n{"a":\n{"a":2}\n'


FSIZE = textwrap.dedent("""
    import resource, sys
    from memo import memfile, WriteError
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    f = memfile(sys.argv[1])(lambda i: {"pad": "p" * 9000})
    n = 0
    try:
        while True:
            f(n)
            n += 1
    except WriteError as exc:
        print(n)
        print(exc)
""")


def test_rlimit_fsize_gives_a_clear_error_and_no_partial_line(tmp_path):
    path = str(tmp_path / "log.jsonl")
    limit = 100_000  # not a multiple of the line length: the last write is cut short
    out = subprocess.run([sys.executable, "-c", FSIZE, path, str(limit)], check=True,
                         capture_output=True, text=True,
                         env=env()).stdout.splitlines()
    written, message = int(out[0]), out[1]
    assert "File too large" in message and path in message and "nothing was written" in message
    data = open(path, "rb").read()
    assert len(data) <= limit and data.endswith(b"\n")
    lines = data.splitlines()
    assert len(lines) == written > 0
    assert [json.loads(x)["i"] for x in lines] == list(range(written))


def test_a_failed_write_is_rolled_back_and_reported(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = AppendWriter(path)
    writer.append(b'{"a":1}\n')
    os.close(writer._fd)  # the descriptor goes bad under the writer
    fd = os.open(os.devnull, os.O_RDONLY)  # and its number now names a read-only file
    try:
        assert fd == writer._fd
        with pytest.raises(OSError):
            writer.append(b'{"a":2}\n')
    finally:
        os.close(fd)
        writer._fd = -1
    writer.append(b'{"a":3}\n')
    assert path.read_bytes() == b'{"a":1}\n{"a":3}\n'
    assert issubclass(WriteError, OSError)


def test_a_forked_child_does_not_share_the_parents_lock(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = AppendWriter(path, lock="flock")
    writer.append(b'{"who":"parent"}\n')
    inherited = writer._fd
    fcntl.flock(inherited, fcntl.LOCK_EX)  # the parent is in the middle of an append
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.write(w, b"1" if writer._fd == -1 else b"0")
            writer.append(b'{"who":"child"}\n')  # must wait for the parent's lock
            os.write(w, b"done")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"  # the inherited descriptor was dropped right after fork
    time.sleep(0.3)
    assert path.read_bytes() == b'{"who":"parent"}\n'  # the child is still waiting
    fcntl.flock(inherited, fcntl.LOCK_UN)
    assert os.read(r, 4) == b"done"
    os.close(r)
    assert os.waitpid(pid, 0)[1] == 0
    assert path.read_bytes() == b'{"who":"parent"}\n{"who":"child"}\n'


def test_threads_share_one_writer(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = AppendWriter(path)

    def run(t: int) -> None:
        for i in range(300):
            writer.append(json.dumps({"t": t, "i": i, "pad": "q" * (i * 37 % 5000)}).encode()
                          + b"\n")

    threads = [threading.Thread(target=run, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = sorted((r["t"], r["i"]) for r in map(json.loads, path.read_bytes().splitlines()))
    assert seen == [(t, i) for t in range(6) for i in range(300)]


def test_durable_and_posix_modes_write_whole_lines(tmp_path):
    for mode, durable in [("posix", False), ("flock", True), ("soft", True)]:
        path = tmp_path / f"{mode}.jsonl"
        writer = AppendWriter(path, lock=mode, durable=durable)
        for i in range(5):
            writer.append(b'{"i":%d}\n' % i)
        writer.close()
        assert path.read_bytes() == b"".join(b'{"i":%d}\n' % i for i in range(5))


def test_writers_and_sinks_pickle_as_their_settings(tmp_path):
    """loky and submitit send decorated functions with cloudpickle: the sink must travel."""
    import pickle

    from memo.shardfile import ShardWriter
    from memo.sinks.file import FileSink

    writer = AppendWriter(tmp_path / "a.jsonl", durable=True)
    writer.append(b'{"n":1}\n')
    copy = pickle.loads(pickle.dumps(writer))
    assert (copy.path, copy.durable, copy.mode) == (writer.path, True, writer.mode)
    copy.append(b'{"n":2}\n')
    assert (tmp_path / "a.jsonl").read_bytes() == b'{"n":1}\n{"n":2}\n'
    shard = pickle.loads(pickle.dumps(ShardWriter(tmp_path / "b.jsonl")))
    assert shard.target == str(tmp_path / "b.jsonl")
    sink = pickle.loads(pickle.dumps(FileSink(tmp_path / "c.jsonl", mode="shard")))
    assert sink.mode == "shard" and sink.path == str(tmp_path / "c.jsonl")


def test_a_memfile_function_from_main_runs_in_loky(tmp_path):
    """A function defined in a script, decorated with memfile(skip=True), sent by cloudpickle."""
    import subprocess
    import sys

    pytest.importorskip("joblib")
    script = tmp_path / "sweep.py"
    script.write_text(
        "import memo\n"
        "@memo.memfile(path='out.jsonl', skip=True)\n"
        "def square(x):\n"
        "    return {'y': x * x}\n"
        "if __name__ == '__main__':\n"
        "    square(0)\n"
        "    memo.Runner(backend='loky', n_jobs=2).run(square, memo.grid(x=range(6)),\n"
        "                                              progbar=False)\n"
        "    print(sorted(r['y'] for r in memo.load('out.jsonl')))\n"
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 4, 9, 16, 25]"  # x=0 was skipped in the worker


def test_encode_serializes_before_the_lock_and_a_failed_encoding_writes_nothing(tmp_path):
    import pickle

    from memo.serialize import SerializationError, dumps_line

    path = tmp_path / "e.jsonl"
    writer = AppendWriter(path, encode=dumps_line)
    writer.append({"n": 1, "loss": float("inf")})
    with pytest.raises(SerializationError):
        writer.append({"n": 2, "bad": object()})
    done = threading.Event()  # the mutex was released: another thread can append
    thread = threading.Thread(target=lambda: (writer.append({"n": 3}), done.set()))
    thread.start()
    thread.join(10)
    assert done.is_set()
    copy = pickle.loads(pickle.dumps(writer))  # the copy encodes too
    copy.append({"n": 4})
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["n"] for x in lines] == [1, 3, 4]
    assert json.loads(lines[0])["$nonfinite"] == {"/loss": "inf"}

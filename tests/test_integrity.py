"""Nothing lost, nothing silently changed: the ways a record could vanish or change."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from helpers import env

import memo
import memo._watch
from memo.locking import SoftLock, hold
from memo.serialize import SerializationError, dumps, loads


def _records(path) -> list[dict]:
    return memo.load(path, errors="raise")


# ---- a writer follows its file ----------------------------------------------------------

@pytest.fixture(params=["inotify", "fstat"])
def noticing(request, monkeypatch):
    """Both ways a writer notices a replaced file: an inotify event (local filesystems on
    Linux) and fstat's link count (everywhere else)."""
    if request.param == "fstat":
        monkeypatch.setattr(memo._watch, "watch", lambda path: None)
    return request.param


def _uses(f, noticing) -> None:
    """The writer really took the path under test (a test of the other would prove nothing)."""
    watched = f.memo_sink.writer._watcher is not None
    assert watched == (noticing == "inotify")


def test_a_writer_follows_a_file_replaced_by_someone_else(tmp_path, noticing):
    path = tmp_path / "r.jsonl"
    f = memo.memfile(path)(lambda i: {"ok": True})
    f(1)
    _uses(f, noticing)
    for i in range(2, 5):  # again and again: every replacement is noticed, not just the first
        new = tmp_path / "new.jsonl"
        new.write_text(path.read_text())  # someone's compaction, not memo's
        os.replace(new, path)
        f(i)
    assert [r["i"] for r in _records(path)] == [1, 2, 3, 4]


def test_a_writer_recreates_a_deleted_file(tmp_path, noticing):
    path = tmp_path / "r.jsonl"
    f = memo.memfile(path)(lambda i: {"ok": True})
    f(1)
    _uses(f, noticing)
    os.unlink(path)
    f(2)
    os.unlink(path)
    f(3)
    assert [r["i"] for r in _records(path)] == [3]


def test_a_moved_file_keeps_the_records_written_before_the_next_look(tmp_path, noticing):
    """mv keeps the file's link: records go on into the moved file (nothing is lost)."""
    path, moved = tmp_path / "r.jsonl", tmp_path / "moved.jsonl"
    f = memo.memfile(path)(lambda i: {"ok": True})
    f(1)
    _uses(f, noticing)
    os.rename(path, moved)
    f(2)
    found = [r["i"] for p in (path, moved) if p.exists() for r in _records(p)]
    assert sorted(found) == [1, 2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_closed_writers_leave_no_inotify_watch_behind(tmp_path):
    """Watches count against a per-user limit while their files exist: close lets them go,
    the last of a file's writers in a process (as the kernel lists them)."""
    fs = [memo.memfile(tmp_path / f"f{i}.jsonl")(lambda x: {"y": 1}) for i in range(20)]
    twin = memo.memfile(tmp_path / "f0.jsonl")(lambda x: {"y": 2})
    for f in [*fs, twin]:
        f(1)
    watcher = fs[0].memo_sink.writer._watcher
    assert watcher is not None

    def watches() -> int:
        with open(f"/proc/self/fdinfo/{watcher.fd}") as info:
            return info.read().count("inotify wd:")

    before = watches()
    for f in fs:
        f.close()
    assert watches() == before - 19  # f0's watch stays while its twin writes
    twin(2)
    twin.close()
    assert watches() == before - 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_forked_child_does_not_take_its_parents_notices(tmp_path):
    """The inotify queue is the process's own: a child that reads events of its own must
    not consume the event that tells the parent its file was replaced."""
    path, other = tmp_path / "r.jsonl", tmp_path / "child.jsonl"
    f = memo.memfile(path)(lambda i: {"ok": True})
    f(1)
    assert f.memo_sink.writer._watcher is not None
    pid = os.fork()
    if pid == 0:  # the child: replace the parent's file, then write (and drain) its own
        code = 1
        try:
            new = tmp_path / "new.jsonl"
            new.write_text(path.read_text())
            os.replace(new, path)
            g = memo.memfile(other)(lambda i: {"ok": True})
            g(1)
            os.chmod(other, 0o600)  # an event in the child's queue, drained by the next call
            g(2)
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    f(2)
    assert [r["i"] for r in _records(path)] == [1, 2]


WRITER = textwrap.dedent("""
    import os, sys, memo
    path, who, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    f = memo.memfile(path, lock=sys.argv[4])(lambda who, i: {"x": 1})
    i = 0
    while not os.path.exists(stop) or i < 50:  # until told, and at least 50 records
        f(who, i)
        i += 1
    print(i)  # how many calls returned: each one's record must be in the file
""")


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["flock", "posix", "soft"])
def test_no_record_is_lost_while_merges_compact_the_file(tmp_path, lock):
    """Writers of every lock mode append while `memo merge F F` replaces F, again and again."""
    path, stop = str(tmp_path / "r.jsonl"), str(tmp_path / "stop")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, f"w{k}", stop, lock],
                              env=env(), stdout=subprocess.PIPE, text=True) for k in range(2)]
    merges = 0
    try:
        deadline = time.monotonic() + 60
        while merges < 8 and time.monotonic() < deadline:  # merges while both still write
            if os.path.exists(path):
                memo.merge(path, path, errors="raise")
                merges += 1
            time.sleep(0.01)
    finally:
        open(stop, "w").close()
    counts = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    memo.merge(path, path, errors="raise")
    got = sorted((r["who"], r["i"]) for r in _records(path))
    assert got == sorted((f"w{k}", i) for k in range(2) for i in range(counts[k]))
    assert merges == 8


def test_posix_mode_hold_excludes_writer_threads_of_the_same_process(tmp_path):
    path = tmp_path / "r.jsonl"
    f = memo.memfile(path, lock="posix")(lambda t, i: {"x": "y" * 50})
    stop = threading.Event()
    counts = [0, 0]

    def write(t: int) -> None:
        while not stop.is_set():
            f(t, counts[t])
            counts[t] += 1

    threads = [threading.Thread(target=write, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):  # hold, look, rewrite the file: no writer thread may slip in
            with hold(path, lock="posix") as fd:
                size = os.fstat(fd).st_size
                time.sleep(0.002)
                assert os.fstat(fd).st_size == size
            memo.merge(path, path, lock="posix", errors="raise")
    finally:
        stop.set()
        for t in threads:
            t.join()
    got = sorted((r["t"], r["i"]) for r in _records(path))
    assert got == sorted((t, i) for t in range(2) for i in range(counts[t]))


def test_a_writer_with_another_lock_than_the_files_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    memo.memfile(path, lock="flock")(lambda i: {})(1)
    try:
        os.getxattr(path, "user.memo.lock")
    except OSError:
        pytest.skip("this filesystem keeps no extended attributes")
    with pytest.raises(memo.WriteError, match="lock='flock'"):
        memo.memfile(path, lock="soft")(lambda i: {})(2)
    memo.memfile(path)(lambda i: {})(3)  # auto adopts the recorded mode
    assert [r["i"] for r in _records(path)] == [1, 3]


# ---- merge into itself ------------------------------------------------------------------

MERGER = textwrap.dedent("""
    import sys, memo
    print("start", flush=True)
    memo.merge(sys.argv[1], sys.argv[1], errors="raise")
""")


@pytest.mark.slow
def test_a_self_merge_killed_at_any_moment_never_leaves_fewer_records(tmp_path):
    path = tmp_path / "r.jsonl"
    n = 200_000
    with open(path, "wb") as fh:
        fh.write(b"".join(dumps({"i": i, "pad": "p" * 40}) + b"\n" for i in range(n)))
    for delay in (0.05, 0.15, 0.3, 0.6, 1.0):
        proc = subprocess.Popen([sys.executable, "-c", MERGER, str(path)], env=env(),
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "start\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        with open(path, "rb") as fh:
            assert sum(1 for _ in fh) == n  # the old records or the merged ones, all of them
    memo.merge(path, path)  # and the next merge clears what the killed ones left behind
    left = [name for name in os.listdir(tmp_path) if name != "r.jsonl"]
    assert left == []


def test_a_self_merge_keeps_a_last_record_without_newline(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps({"i": i}) for i in range(3)))  # no final newline
    assert [r["i"] for r in memo.load(path)] == [0, 1, 2]
    report = memo.merge(path, path)
    assert report.records == 3 and report.incomplete == 0
    assert path.read_text().endswith("\n")
    assert [r["i"] for r in memo.load(path)] == [0, 1, 2]


def test_a_self_merge_drops_a_torn_fragment_and_says_so(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"i": 0}\n{"i": 1')
    with pytest.warns(memo.CorruptLineWarning):
        report = memo.merge(path, path)
    assert report.records == 1 and report.corrupt == 1 and report.incomplete == 0
    assert path.read_text() == '{"i": 0}\n'


def test_merged_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        src = tmp_path / "a.jsonl"
        src.write_text('{"i": 1}\n')
        memo.merge(tmp_path / "out.jsonl", [src])
        assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o644
        os.chmod(src, 0o640)
        memo.merge(src, src)
        assert src.stat().st_mode & 0o777 == 0o640  # a file replaced keeps its mode
    finally:
        os.umask(old)


# ---- the lock file ----------------------------------------------------------------------

def _lock_file(path, text: str, age: float) -> None:
    lock = str(path) + ".lock"
    with open(lock, "w") as fh:
        fh.write(text)
    then = time.time() - age
    os.utime(lock, (then, then))


@pytest.mark.parametrize("text, age", [
    ("", 5.0),  # a writer killed between creating and filling it (or an old tool)
    (f"{socket.gethostname()} 999999999 token 0\n", 0.0),  # a dead process of this host
    ("another-host 4242 token 0\n", 120.0),  # another host's, not renewed for the lease
])
def test_a_stale_lock_file_is_reclaimed(tmp_path, text, age):
    path = tmp_path / "r.jsonl"
    _lock_file(path, text, age)
    f = memo.memfile(path, lock="soft", timeout=10)(lambda i: {})
    with pytest.warns(RuntimeWarning, match="stale lock file"):
        f(1)
    assert [r["i"] for r in _records(path)] == [1]
    assert not os.path.exists(str(path) + ".lock")


def test_a_live_lock_file_of_another_host_is_waited_for(tmp_path):
    path = tmp_path / "r.jsonl"
    _lock_file(path, "another-host 4242 token 0\n", 0.0)
    f = memo.memfile(path, lock="soft", timeout=0.5)(lambda i: {})
    with pytest.raises(memo.locking.LockTimeout):
        f(1)


def test_a_soft_lock_holder_killed_at_random_leaves_nothing_that_blocks(tmp_path):
    path = str(tmp_path / "r.jsonl")
    code = textwrap.dedent("""
        import sys, memo
        f = memo.memfile(sys.argv[1], lock="soft")(lambda i: {"x": 1})
        i = 0
        while True:
            f(i); i += 1
    """)
    for k in range(6):
        proc = subprocess.Popen([sys.executable, "-c", code, path], env=env())
        time.sleep(0.3 + 0.07 * k)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lock = SoftLock(path, timeout=10)
            lock.acquire()  # never hangs: whatever the kill left is reclaimed
            lock.release()


# ---- values that must not change --------------------------------------------------------

def test_keys_that_would_collide_as_json_are_refused():
    with pytest.raises(SerializationError, match=r"\['m'\].*1.*'1'"):
        dumps({"m": {1: "a", "1": "b"}})
    data = []
    h = memo.memlist(data=data)(lambda **kw: {1: "output"})
    h(**{"1": "argument"})  # a list keeps Python values: no collision there
    assert data == [{"1": "argument", 1: "output"}]


def test_an_output_key_that_collides_with_an_argument_in_the_file_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    f = memo.memfile(path)(lambda **kw: {1: "output"})
    with pytest.raises(SerializationError, match="1"):
        f(**{"1": "argument"})
    assert not path.exists() or path.read_text() == ""


@pytest.mark.parametrize("value", [
    {"$bytes": "aGk="}, {"$float": "nan"}, {"$complex": [1, 2]}, {"$dict": {"a": 1}},
    {"x": {"$bytes": "aGk="}}, [{"$float": "inf"}], {"$dict": {"$bytes": "x"}},
])
def test_values_shaped_like_memos_tags_come_back_unchanged(tmp_path, value):
    assert loads(dumps({"v": value})) == {"v": value}
    path = tmp_path / "r.jsonl"
    memo.memfile(path)(lambda i: {"v": value})(1)
    assert memo.load(path) == [{"i": 1, "v": value}]


def test_memos_own_tags_still_round_trip():
    record = {"b": b"hi", "c": 1 + 2j, "n": math.inf, "d": {"k": b"x"}}
    assert loads(dumps(record)) == record


def _deep(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


def test_a_deeply_nested_line_is_one_bad_line_for_every_reader(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"x": 1, "y": 1}\n' + _deep(3000) + b"\n" + b'{"x": 2, "y": 2}\n')
    assert [r["x"] for r in memo.load(path, errors="ignore")] == [1, 2]
    with pytest.warns(memo.CorruptLineWarning):
        assert len(memo.load(path)) == 2
    report = memo.check(path)
    assert report.records == 2 and report.corrupt == 1
    out = tmp_path / "out.jsonl"
    assert memo.merge(out, [path], errors="ignore").records == 2
    f = memo.memfile(path, skip=True)(lambda x: {"y": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert f(1) == {"y": 1} and f(3) == {"y": 0}


def test_check_and_load_agree_on_numbers_beyond_the_float_range(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"x": 1e999}\n')
    assert memo.check(path).corrupt == 0
    assert memo.load(path, errors="raise") == [{"x": math.inf}]


def test_deep_values_and_lone_surrogates_are_refused_naming_the_key():
    deep: dict = {}
    node = deep
    for _ in range(300):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(SerializationError, match=r"\['a'\].*levels deep"):
        dumps({"v": deep})
    with pytest.raises(SerializationError, match=r"\['name'\].*surrogate"):
        dumps({"name": "bad \ud800"})


# ---- fail before the compute, keep what was computed -------------------------------------

@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only filesystem (a tmpfs mounted ro; root can write anywhere else)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_path_under_a_file_fails_before_the_function_runs(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "r.jsonl"
    runs = []
    f = memo.memfile(path)(lambda x: runs.append(x) or {"y": x})
    with pytest.raises(memo.WriteError, match=str(path.parent)):
        f(1)
    assert runs == []


def test_a_read_only_filesystem_fails_before_the_function_runs(read_only_folder):
    path = read_only_folder / "r.jsonl"
    runs = []
    f = memo.memfile(path)(lambda x: runs.append(x) or {"y": x})
    with pytest.raises(memo.WriteError, match="Read-only file system|Permission denied"):
        f(1)
    assert runs == []
    report = memo.Runner("threads", n_jobs=2).run(f, [{"x": i} for i in range(6)],
                                                 errors="return", progbar=False, quiet=True)
    assert runs == [] and report.failed == 6


def _fill_disk_then_call(path: str, rescue_dir: str, queue) -> None:
    os.environ["MEMO_RESCUE_DIR"] = rescue_dir
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    f = memo.memfile(path)(lambda i: {"result": "r" * 100})
    f(0)
    size = os.path.getsize(path)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 50, resource.RLIM_INFINITY))
    try:
        f(1)
    except memo.WriteError as exc:
        queue.put(str(exc))
    else:
        queue.put("no error")


def test_a_record_the_disk_refuses_is_rescued_and_merged_back(tmp_path):
    path = str(tmp_path / "r.jsonl")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fill_disk_then_call, args=(path, str(tmp_path / "rescue"), queue))
    proc.start()
    message = queue.get(timeout=60)
    proc.join(30)
    assert "saved to" in message and "memo merge" in message
    saved = message.split("saved to ")[1].split(":")[0]
    assert os.path.exists(saved)
    assert [r["i"] for r in memo.load(path)] == [0]
    memo.merge(path, [path, saved])
    assert [r["i"] for r in memo.load(path)] == [0, 1]


def test_a_bare_memfile_and_a_misspelt_keyword_say_what_is_wrong():
    with pytest.raises(TypeError, match=r"memfile\('results.jsonl'\)"):
        @memo.memfile
        def f(x):
            return {}

    g = memo.memlist(data=[])(lambda class_size, n_sim: {})
    with pytest.raises(TypeError, match="unexpected keyword argument 'size'"):
        g(size=3, n_sim=10)


def test_warnings_point_at_the_users_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{torn\n{"a": 2}\n')
    with pytest.warns(memo.CorruptLineWarning) as caught:
        memo.load(path)
    assert caught[0].filename == __file__
    with pytest.warns(memo.CorruptLineWarning) as caught:
        memo.merge(tmp_path / "out.jsonl", [path])
    assert caught[0].filename == __file__

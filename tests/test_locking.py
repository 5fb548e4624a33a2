"""The inter-process lock: really taken, released when its holder dies, timeouts, modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import env

from memo import memfile
from memo.locking import LockTimeout, hold, resolve_mode

WRITER = textwrap.dedent("""
    import sys
    from memo import memfile
    path, mode = sys.argv[1], sys.argv[2]
    f = memfile(path, lock=mode, timeout=60)(lambda who: {"done": True})
    print("ready", flush=True)
    f(who=sys.argv[3])
    print("done", flush=True)
""")

HOLDER = textwrap.dedent("""
    import sys, time
    from memo.locking import hold
    with hold(sys.argv[1], lock=sys.argv[2]):
        print("held", flush=True)
        time.sleep(600)
""")


def _plain(path: str) -> list[dict]:
    """The file's lines as dicts, without memo's own ``$memo`` key (lines checked one by one)."""
    return [{k: v for k, v in json.loads(line).items() if k != "$memo"} for line in open(path)]


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            text=True, env=env())


@pytest.mark.parametrize("mode", ["flock", "posix", "soft"])
def test_a_write_waits_while_another_process_holds_the_lock(tmp_path, mode):
    path = str(tmp_path / "log.jsonl")
    with hold(path, lock=mode):
        writer = _spawn(WRITER, path, mode, "w")
        assert writer.stdout.readline() == "ready\n"
        time.sleep(0.5)  # an unlocked append would have landed by now
        assert writer.poll() is None
        assert os.path.getsize(path) == 0
    assert writer.stdout.readline() == "done\n"
    assert writer.wait(30) == 0
    writer.stdout.close()
    assert _plain(path) == [{"who": "w", "done": True}]


@pytest.mark.parametrize("mode", ["flock", "posix", "soft"])
def test_a_lock_holder_killed_while_holding_does_not_block_the_others(tmp_path, mode):
    path = str(tmp_path / "log.jsonl")
    holder = _spawn(HOLDER, path, mode)
    assert holder.stdout.readline() == "held\n"
    writers = [_spawn(WRITER, path, mode, str(i)) for i in range(3)]
    for w in writers:
        assert w.stdout.readline() == "ready\n"
    time.sleep(0.2)
    assert all(w.poll() is None for w in writers)  # they wait for the holder
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    for w in writers:
        assert w.stdout.readline() == "done\n"
        assert w.wait(60) == 0
        w.stdout.close()
    assert sorted(_plain(path), key=str) == [{"who": str(i), "done": True} for i in range(3)]
    assert not os.path.exists(path + ".lock")  # no stale lock file left behind


@pytest.mark.parametrize("mode", ["flock", "posix", "soft"])
def test_timeout_raises_when_the_lock_is_not_released(tmp_path, mode):
    path = str(tmp_path / "log.jsonl")
    holder = _spawn(HOLDER, path, mode)
    try:
        assert holder.stdout.readline() == "held\n"
        f = memfile(path, lock=mode, timeout=0.2)(lambda a: {"b": a})
        with pytest.raises(LockTimeout):
            f(1)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    f(2)
    assert _plain(path) == [{"a": 2, "b": 2}]


def test_mode_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("MEMO_LOCK", raising=False)
    assert resolve_mode(tmp_path / "x") == "flock"  # a local filesystem
    assert resolve_mode(tmp_path / "x", "soft") == "soft"
    monkeypatch.setenv("MEMO_LOCK", "posix")
    assert resolve_mode(tmp_path / "x") == "posix"
    assert resolve_mode(tmp_path / "x", "flock") == "flock"  # an explicit choice wins
    monkeypatch.setenv("MEMO_LOCK", "bogus")
    with pytest.raises(ValueError, match="MEMO_LOCK"):
        resolve_mode(tmp_path / "x")
    with pytest.raises(ValueError, match="lock='nope'"):
        resolve_mode(tmp_path / "x", "nope")


def test_shard_mode_refuses_a_lock_and_a_shared_file_needs_one(tmp_path):
    with pytest.raises(ValueError, match="shard"):
        memfile(tmp_path / "x.jsonl", mode="shard", lock="flock")
    with pytest.raises(ValueError, match="mode='shard'"):
        memfile(tmp_path / "x.jsonl", lock="none")
    with pytest.raises(ValueError, match="'shared' or 'shard'"):
        memfile(tmp_path / "x.jsonl", mode="sharded")

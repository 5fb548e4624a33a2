"""Shard names and the files that hold a target's records."""

from __future__ import annotations

import os
import socket

import pytest

from memo.shardfile import ShardWriter, shard_dir, shard_name, sources


def test_shard_names():
    host = socket.gethostname().split(".")[0]
    assert shard_name({}, pid=12) == f"{host}.12.jsonl"
    assert shard_name({"SLURM_JOB_ID": "99"}, pid=12) == f"slurm-99.{host}.12.jsonl"
    env = {"SLURM_JOB_ID": "99", "SLURM_ARRAY_JOB_ID": "90", "SLURM_ARRAY_TASK_ID": "3"}
    assert shard_name(env, pid=12) == f"slurm-90_3.{host}.12.jsonl"


def test_sources(tmp_path):
    target = tmp_path / "r.jsonl"
    with pytest.raises(FileNotFoundError, match="r.jsonl"):
        sources(target)
    folder = shard_dir(target)
    assert folder == str(target) + ".shards"
    os.makedirs(folder)
    for name in ["b.2.jsonl", "a.1.jsonl", ".hidden.jsonl", "notes.txt"]:
        open(os.path.join(folder, name), "w").close()
    shards = [os.path.join(folder, n) for n in ["a.1.jsonl", "b.2.jsonl"]]
    assert sources(target) == shards
    target.write_text("")
    assert sources(target) == [str(target), *shards]
    assert sources(folder) == shards


def test_a_shard_writer_writes_this_process_shard(tmp_path):
    writer = ShardWriter(tmp_path / "r.jsonl")
    writer.append(b'{"a":1}\n')
    writer.append(b'{"a":2}\n')
    writer.close()
    own = os.path.join(str(tmp_path / "r.jsonl.shards"), shard_name())
    assert writer.path == own
    assert open(own, "rb").read() == b'{"a":1}\n{"a":2}\n'
    pid = os.fork()
    if pid == 0:
        try:
            writer.append(b'{"a":3}\n')  # a forked child gets a shard of its own
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    child = os.path.join(str(tmp_path / "r.jsonl.shards"), shard_name(pid=pid))
    assert open(child, "rb").read() == b'{"a":3}\n'
    assert open(own, "rb").read() == b'{"a":1}\n{"a":2}\n'

"""Which filesystem a path lives on, from a mount table."""

from __future__ import annotations

from memo.filesystem import filesystem_type, is_cluster_filesystem

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export /home nfs4 rw,vers=4.2 0 0
10.0.0.1@tcp:/lfs /lustre lustre rw,flock 0 0
beegfs_nodev /mnt/beegfs beegfs rw 0 0
scratch /gpfs/scratch gpfs rw 0 0
tmpfs /home/user/fast tmpfs rw 0 0
/dev/sdb /mnt/my\\040disk xfs rw 0 0
/dev/sdc /mnt/over ext4 rw 0 0
server:/x /mnt/over nfs rw 0 0
"""


def test_the_longest_mount_point_decides():
    assert filesystem_type("/home/user/results.jsonl", MOUNTS) == "nfs4"
    assert filesystem_type("/home/user/fast/results.jsonl", MOUNTS) == "tmpfs"
    assert filesystem_type("/homework/r.jsonl", MOUNTS) == "ext4"  # not under /home
    assert filesystem_type("/lustre/project/a/b.jsonl", MOUNTS) == "lustre"
    assert filesystem_type("/mnt/beegfs/r.jsonl", MOUNTS) == "beegfs"
    assert filesystem_type("/gpfs/scratch/r.jsonl", MOUNTS) == "gpfs"
    assert filesystem_type("/mnt/my disk/r.jsonl", MOUNTS) == "xfs"  # escaped space
    assert filesystem_type("/mnt/over/r.jsonl", MOUNTS) == "nfs"  # the later mount wins


def test_cluster_filesystems():
    assert is_cluster_filesystem("/home/u/r.jsonl", MOUNTS)
    assert is_cluster_filesystem("/lustre/r.jsonl", MOUNTS)
    assert not is_cluster_filesystem("/tmp/r.jsonl", MOUNTS)
    assert not is_cluster_filesystem("/home/user/fast/r.jsonl", MOUNTS)


def test_this_machine(tmp_path):
    kind = filesystem_type(tmp_path / "not" / "yet" / "made.jsonl")
    assert kind == filesystem_type(tmp_path)
    assert kind not in ("", "unknown")

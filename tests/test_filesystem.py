"""Which filesystem a path lives on, from a mount table."""

from __future__ import annotations

import pytest

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


def test_mount_info_gives_type_options_point_and_source():
    from memo.filesystem import mount_info

    info = mount_info("/lustre/project/r.jsonl", MOUNTS)
    assert (info.type, info.point, info.source) == ("lustre", "/lustre", "10.0.0.1@tcp:/lfs")
    assert info.options == ("rw", "flock") and info.option("flock") == ""
    assert mount_info("/home/u/r", MOUNTS).option("vers") == "4.2"
    assert mount_info("/home/u/r", MOUNTS).option("noac") is None
    assert mount_info("/x", "").type == "unknown"


def test_a_fuse_mount_counts_as_the_filesystem_it_names():
    table = "/dev/vda / ext4 rw 0 0\nsim /mnt/sim fuse.lustre rw,user_id=0 0 0\n" \
            "sim /mnt/plain fuse rw 0 0\n"
    assert is_cluster_filesystem("/mnt/sim/r.jsonl", table)
    assert filesystem_type("/mnt/sim/r.jsonl", table) == "fuse.lustre"
    assert not is_cluster_filesystem("/mnt/plain/r.jsonl", table)


LUSTRE = """\
/dev/vda / ext4 rw 0 0
10.0.0.1@tcp:/a /lustre/flock lustre rw,flock,lazystatfs 0 0
10.0.0.1@tcp:/b /lustre/local lustre rw,localflock 0 0
10.0.0.1@tcp:/c /lustre/none lustre rw,noflock 0 0
"""


def test_auto_lock_reads_lustre_mount_options():
    from memo.filesystem import auto_lock

    flock = auto_lock("/lustre/flock/r.jsonl", LUSTRE)
    assert (flock.lock, flock.scope, flock.warning) == ("posix", "cluster", None)
    local = auto_lock("/lustre/local/r.jsonl", LUSTRE)
    assert (local.lock, local.scope) == ("posix", "node")
    assert "mode='shard'" in local.warning and "lock='soft'" in local.warning
    none = auto_lock("/lustre/none/r.jsonl", LUSTRE)
    assert (none.lock, none.scope) == ("soft", "none") and "noflock" in none.warning
    disk = auto_lock("/home/r.jsonl", LUSTRE)
    assert (disk.lock, disk.scope, disk.warning) == ("flock", "host", None)


def test_auto_lock_reads_the_beegfs_client_config(tmp_path):
    from memo.filesystem import auto_lock

    default, global_ = tmp_path / "default.conf", tmp_path / "global.conf"
    default.write_text("sysMgmtdHost = mgmt\n# tuneUseGlobalFileLocks = true\n")
    global_.write_text("sysMgmtdHost = mgmt\ntuneUseGlobalFileLocks    = true # cluster-wide\n")
    table = (f"beegfs_nodev /mnt/a beegfs rw,cfgFile={default},_netdev 0 0\n"
             f"beegfs_nodev /mnt/b beegfs rw,cfgFile={global_},_netdev 0 0\n"
             f"beegfs_nodev /mnt/c beegfs rw,cfgFile={tmp_path}/missing.conf 0 0\n")
    a = auto_lock("/mnt/a/r.jsonl", table)
    assert a.scope == "node" and "tuneUseGlobalFileLocks" in a.warning
    assert auto_lock("/mnt/b/r.jsonl", table).scope == "cluster"
    assert auto_lock("/mnt/c/r.jsonl", table).scope == "cluster"  # unknown: nothing claimed


def test_auto_lock_mode_warns_once_per_mount(tmp_path, monkeypatch, recwarn):
    import warnings

    from memo import filesystem

    table = tmp_path / "mounts"
    table.write_text(LUSTRE.replace("/lustre/local", str(tmp_path)))
    monkeypatch.setattr(filesystem, "MOUNTS", str(table))
    monkeypatch.setattr(filesystem, "_WARNED", set())
    warnings.simplefilter("always")
    assert filesystem.auto_lock_mode(tmp_path / "a.jsonl") == "posix"
    assert filesystem.auto_lock_mode(tmp_path / "b.jsonl") == "posix"
    node_local = [w for w in recwarn if "do not reach other nodes" in str(w.message)]
    assert len(node_local) == 1 and node_local[0].category is RuntimeWarning


def test_writers_warn_on_node_local_locks_and_skip_refused_ones(tmp_path, monkeypatch):
    from memo import filesystem
    from memo.writer import AppendWriter

    table = tmp_path / "mounts"
    table.write_text(f"/dev/vda / ext4 rw 0 0\nsrv:/l {tmp_path}/local lustre rw,localflock 0 0\n"
                     f"srv:/n {tmp_path}/none lustre rw,noflock 0 0\n")
    monkeypatch.setattr(filesystem, "MOUNTS", str(table))
    monkeypatch.setattr(filesystem, "_WARNED", set())
    monkeypatch.delenv("MEMO_LOCK", raising=False)
    with pytest.warns(RuntimeWarning, match="do not reach other nodes"):
        assert AppendWriter(tmp_path / "local" / "r.jsonl").mode == "posix"
    with pytest.warns(RuntimeWarning, match="noflock"):
        assert AppendWriter(tmp_path / "none" / "r.jsonl").mode == "soft"

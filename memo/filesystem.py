"""Which filesystem a path lives on, and whether its locks and appends are cluster-wide.

Read from ``/proc/mounts``: the mount whose mount point is the longest prefix of
the path's real location decides. On network and cluster filesystems (NFS,
Lustre, BeeGFS, GPFS/Spectrum Scale, CephFS, GlusterFS, CIFS) ``O_APPEND`` is not
atomic across machines and written data must be flushed before another client
can see it, so :mod:`memo.locking` picks its ``posix`` mode there.
"""

from __future__ import annotations

import os

__all__ = ["CLUSTER_FILESYSTEMS", "filesystem_type", "is_cluster_filesystem"]

CLUSTER_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "lustre", "beegfs", "gpfs", "ceph", "fuse.ceph", "fuse.cephfs",
    "glusterfs", "fuse.glusterfs", "cifs", "smb3", "fuse.sshfs",
})

MOUNTS = "/proc/mounts"


def _unescape(field: str) -> str:
    """Mount points in /proc/mounts escape space, tab, newline and backslash as octal."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _resolve(path: str) -> str:
    """The real path of ``path``: symlinks of its existing part resolved (it may not exist)."""
    head, missing = os.path.abspath(path), []
    while not os.path.exists(head):
        head, name = os.path.split(head)
        if not name:
            break
        missing.append(name)
    return os.path.join(os.path.realpath(head), *reversed(missing))


def filesystem_type(path: str | os.PathLike[str], mounts: str | None = None) -> str:
    """The filesystem type (``"ext4"``, ``"nfs4"``, ``"lustre"``...) holding ``path``.

    ``mounts`` is the text of a mount table in ``/proc/mounts`` format; by default the
    running system's is read. Returns ``"unknown"`` when no mount table is readable.
    """
    if mounts is None:
        try:
            with open(MOUNTS, encoding="utf-8", errors="replace") as f:
                mounts = f.read()
        except OSError:
            return "unknown"
    target = _resolve(os.fspath(path))
    best, best_len = "unknown", -1
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point, fstype = _unescape(fields[1]), fields[2]
        prefix = point.rstrip("/") + "/"
        if (target == point or target.startswith(prefix) or point == "/") and \
                len(point) >= best_len:  # later lines over-mount earlier ones
            best, best_len = fstype, len(point)
    return best


def is_cluster_filesystem(path: str | os.PathLike[str], mounts: str | None = None) -> bool:
    """Whether ``path`` is on a network or cluster filesystem (see ``CLUSTER_FILESYSTEMS``)."""
    return filesystem_type(path, mounts) in CLUSTER_FILESYSTEMS

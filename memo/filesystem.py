"""Which filesystem a path lives on, its mount options, and what its locks are worth.

Read from ``/proc/mounts``: the mount whose mount point is the longest prefix of
the path's real location decides. On network and cluster filesystems (NFS,
Lustre, BeeGFS, GPFS/Spectrum Scale, CephFS, GlusterFS, CIFS) ``O_APPEND`` is not
atomic across machines and written data must be flushed before another client
can see it, so :mod:`memo.locking` picks its ``posix`` mode there. A FUSE mount
``fuse.NAME`` counts as filesystem ``NAME`` (``fuse.glusterfs``, ``fuse.cephfs``).

Some mounts say in their options that their locks do not reach other machines, or
that they refuse locks; :func:`auto_lock` reads them (what ``memo doctor`` reports
as the automatic choice):

* Lustre ``noflock``: lock calls fail, so the lock file (``soft``) is used at once,
  with one warning.
* Lustre ``localflock``, and BeeGFS unless its client configuration
  (``cfgFile=`` in the mount options) sets ``tuneUseGlobalFileLocks = true``: locks
  exclude only the processes of one node. The ``posix`` lock is still taken (it is
  right for writers on one node), and one warning per mount says that writers on
  several nodes need ``mode="shard"`` or ``lock="soft"``.

Whether locks really exclude other machines can only be measured: ``memo doctor
PATH --peer`` run on two nodes does that (:mod:`memo.doctor`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from ._util import user_stacklevel

__all__ = [
    "CLUSTER_FILESYSTEMS", "AutoLock", "MountInfo", "auto_lock", "auto_lock_mode",
    "filesystem_type", "is_cluster_filesystem", "mount_info",
]

CLUSTER_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "lustre", "beegfs", "gpfs", "ceph", "fuse.ceph", "fuse.cephfs",
    "glusterfs", "fuse.glusterfs", "cifs", "smb3", "fuse.sshfs",
})

MOUNTS = "/proc/mounts"


@dataclass(frozen=True)
class MountInfo:
    """One line of the mount table: the mount that holds a path."""

    type: str  # as the mount table says: "ext4", "nfs4", "fuse.glusterfs", "unknown"
    options: tuple[str, ...] = ()
    point: str = "/"
    source: str = ""

    @property
    def kind(self) -> str:
        """The filesystem without a ``fuse.`` prefix: ``fuse.cephfs`` is ``cephfs``."""
        return self.type[5:] if self.type.startswith("fuse.") else self.type

    @property
    def cluster(self) -> bool:
        """Whether this is a network or cluster filesystem (see ``CLUSTER_FILESYSTEMS``)."""
        return self.type in CLUSTER_FILESYSTEMS or self.kind in CLUSTER_FILESYSTEMS

    def option(self, name: str) -> str | None:
        """The value of mount option ``name`` (``""`` for a flag), or ``None`` if absent."""
        for opt in self.options:
            key, sep, value = opt.partition("=")
            if key == name:
                return value if sep else ""
        return None


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


def mount_info(path: str | os.PathLike[str], mounts: str | None = None) -> MountInfo:
    """The mount holding ``path``: its type, options, mount point and source.

    ``mounts`` is the text of a mount table in ``/proc/mounts`` format; by default the
    running system's is read. The type is ``"unknown"`` when no mount table is readable.
    """
    if mounts is None:
        try:
            with open(MOUNTS, encoding="utf-8", errors="replace") as f:
                mounts = f.read()
        except OSError:
            return MountInfo("unknown")
    target = _resolve(os.fspath(path))
    best, best_len = MountInfo("unknown"), -1
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        prefix = point.rstrip("/") + "/"
        if (target == point or target.startswith(prefix) or point == "/") and \
                len(point) >= best_len:  # later lines over-mount earlier ones
            options = tuple(fields[3].split(",")) if len(fields) > 3 else ()
            best = MountInfo(fields[2], options, point, _unescape(fields[0]))
            best_len = len(point)
    return best


def filesystem_type(path: str | os.PathLike[str], mounts: str | None = None) -> str:
    """The filesystem type (``"ext4"``, ``"nfs4"``, ``"lustre"``...) holding ``path``.

    ``mounts`` is the text of a mount table in ``/proc/mounts`` format; by default the
    running system's is read. Returns ``"unknown"`` when no mount table is readable.
    """
    return mount_info(path, mounts).type


def is_cluster_filesystem(path: str | os.PathLike[str], mounts: str | None = None) -> bool:
    """Whether ``path`` is on a network or cluster filesystem (see ``CLUSTER_FILESYSTEMS``)."""
    return mount_info(path, mounts).cluster


def _beegfs_global_locks(info: MountInfo) -> bool | None:
    """``tuneUseGlobalFileLocks`` of the BeeGFS client config named by ``cfgFile=``.

    ``False`` when the file says so or does not set it (BeeGFS's default), ``None``
    when the file cannot be read (then nothing is known).
    """
    config = info.option("cfgFile") or "/etc/beegfs/beegfs-client.conf"
    try:
        with open(config, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep and key.strip() == "tuneUseGlobalFileLocks":
            return value.strip().lower() in ("true", "1", "yes")
    return False


@dataclass(frozen=True)
class AutoLock:
    """The lock mode ``lock="auto"`` takes on a mount, why, and what to tell the user."""

    lock: str  # "flock", "posix" or "soft"
    reason: str
    warning: str | None = None  # set when the mount's locks are refused or node-local
    scope: str = "host"  # what the lock excludes: "host", "cluster", "node" (per node), "none"
    mount: MountInfo = MountInfo("unknown")


def auto_lock(path: str | os.PathLike[str], mounts: str | None = None) -> AutoLock:
    """What ``lock="auto"`` chooses for a file at ``path``, from its mount (see module doc)."""
    info = mount_info(path, mounts)
    where = f"{info.point} ({info.type}, {','.join(info.options) or 'no options'})"
    if not info.cluster:
        return AutoLock("flock", f"{where} is a local filesystem: flock on the data file",
                        mount=info)
    if info.kind == "lustre" and info.option("noflock") is not None:
        return AutoLock(
            "soft", f"{where} is Lustre mounted noflock: lock calls fail, so a lock file",
            f"Lustre at {info.point} is mounted noflock (lock calls fail): memo uses the lock "
            "file <path>.lock instead (slow); mode='shard' is faster", "none", info)
    node_local = None
    if info.kind == "lustre" and info.option("localflock") is not None:
        node_local = "Lustre mounted localflock"
    elif info.kind == "beegfs" and _beegfs_global_locks(info) is False:
        node_local = "BeeGFS without tuneUseGlobalFileLocks"
    if node_local:
        return AutoLock(
            "posix", f"{where} is {node_local}: posix locks exclude this node's writers only",
            f"{info.point} is {node_local}: its locks do not reach other nodes, so writers on "
            "several nodes appending to one file are not safe there; use mode='shard' or "
            "lock='soft' (run `memo doctor PATH --peer` on two nodes to measure)", "node", info)
    return AutoLock("posix", f"{where} is a network or cluster filesystem: a POSIX record "
                             "lock and a flush before the unlock", scope="cluster", mount=info)


_WARNED: set[str] = set()


def auto_lock_mode(path: str | os.PathLike[str]) -> str:
    """The mode of :func:`auto_lock` for ``path``, warning once per mount when it has a warning."""
    choice = auto_lock(path)
    if choice.warning is not None:
        point = choice.mount.point
        if point not in _WARNED:
            _WARNED.add(point)
            warnings.warn(choice.warning, RuntimeWarning, stacklevel=user_stacklevel())
    return choice.lock

"""A passthrough FUSE filesystem that behaves like one client of a cluster filesystem.

Mount it twice over one backing directory and the two mount points act as two
machines sharing a network filesystem: each mount is served by its own daemon
process, which plays the part of that machine's filesystem client (its caches, its
locks), while the backing directory plays the server. What the client does is
switchable:

``locks``
    ``refuse``: every POSIX lock call fails with ``ENOLCK`` (Lustre ``noflock``).
    ``local``: the daemon implements no lock operation, so the kernel keeps POSIX
    locks on that mount alone (Lustre ``localflock``, BeeGFS by default).
    ``shared``: POSIX locks are forwarded to the backing file as open-file-description
    locks, one open file per lock owner (a process), so they exclude each other across
    processes *and* across mounts (NFS with a lock manager, Lustre ``-o flock``, GPFS,
    CephFS). ``flock`` is always local to a mount (the kernel emulates it: fusepy
    offers no ``flock`` operation), as with Lustre ``localflock`` or NFS ``local_lock=flock``.
``cache``
    ``coherent``: no client cache; an ``O_APPEND`` write lands at the backing file's
    real end (the server appends, as Lustre and GPFS do).
    ``nfs``: the client caches the file size for ``actimeo`` seconds and keeps written
    data until a flush: a write through an ``O_APPEND`` descriptor lands at the
    *client's* idea of the end of the file, and the data reaches the backing file (so
    the other client) only on ``fsync``, ``close``, or a POSIX lock or unlock.
    Opening a file and taking a lock revalidate the cached size (close-to-open
    consistency, and NFS's lock-time revalidation). A process killed with data
    unflushed loses nothing (the kernel still closes its files, which flushes them),
    as on NFS where the page cache outlives the process.

Exclusive creation (``O_CREAT | O_EXCL``) is passed to the backing directory, so it is
atomic across mounts, as on NFSv3 and later. The kernel's own attribute, entry and
page caches are switched off (``attr_timeout=0``, ``direct_io``) so that the daemon
alone decides what a client sees. ``subtype=NAME`` makes ``/proc/mounts`` show
``fuse.NAME`` (``fuse.nfs``, ``fuse.lustre``...), so memo's automatic lock choice
treats the mount as a cluster filesystem.

By hand::

    python tests/fusefs.py BACKING MOUNTPOINT --locks shared --cache nfs --subtype nfs
    umount MOUNTPOINT

From Python (what the tests use): :func:`mounted` (a context manager) or :func:`mount`.
Needs ``/dev/fuse``, libfuse 2 and fusepy: ``scripts/testfs-setup.sh`` installs them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

LOCKS = ("refuse", "local", "shared")
CACHES = ("coherent", "nfs")
FSNAME = "memo-testfs"
HERE = os.path.abspath(__file__)


# --- what is available here -------------------------------------------------------------------

def unavailable() -> str | None:
    """Why FUSE filesystems cannot be mounted here, or ``None`` if they can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if os.geteuid() != 0:
        return "mounting the test filesystem needs root"
    if shutil.which("umount") is None:
        return "umount is not installed"
    try:
        import fuse  # noqa: F401
    except ImportError:
        return "fusepy is not installed (run scripts/testfs-setup.sh)"
    except OSError as exc:  # fusepy raises EnvironmentError when libfuse is missing
        return f"libfuse 2 is not installed ({exc}; run scripts/testfs-setup.sh)"
    return None


def mounted_points() -> list[str]:
    """Mount points of this simulator's filesystems that are mounted right now."""
    points = []
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[0].startswith(FSNAME):
                points.append(fields[1].replace("\\040", " "))
    return points


# --- the daemon ---------------------------------------------------------------------------------

class _Flock(ctypes.Structure):
    """struct flock (Linux, 64-bit off_t)."""

    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short),
                ("l_start", ctypes.c_int64), ("l_len", ctypes.c_int64),
                ("l_pid", ctypes.c_int)]


_FLOCK = "hhqqi"  # the same layout for fcntl.fcntl's bytes argument
_F_GETLK, _F_SETLK, _F_SETLKW = 5, 6, 7


@dataclass
class _Node:
    """What this client knows about one backing file (by inode)."""

    size: int = 0
    checked: float = -1e9  # monotonic time the size was last read from the "server"
    dirty: list[tuple[int, bytes]] = field(default_factory=list)
    fds: set[int] = field(default_factory=set)  # open backing descriptors of this inode


@dataclass
class _Handle:
    fd: int
    node: _Node
    append: bool


def _operations(backing: str, locks: str, cache: str, actimeo: float):  # noqa: C901
    """The fusepy operations object of one client."""
    from fuse import FuseOSError, Operations

    def real(path: str) -> str:
        return os.path.join(backing, path.lstrip("/"))

    class Client(Operations):
        use_ns = True
        # no path for operations on an open file: libfuse then does not lock the path, so a
        # lock request waiting here does not block a rename of the same file (merge's)
        flag_nopath = True
        flag_nullpath_ok = True
        ioctl = None  # fusepy's ioctl cannot take the missing path; the kernel says ENOTTY

        def __init__(self) -> None:
            self.mutex = threading.RLock()
            self.nodes: dict[tuple[int, int], _Node] = {}
            self.handles: dict[int, _Handle] = {}
            self.owners: dict[tuple[int, int, int], int] = {}  # (dev, ino, owner) -> fd
            self.dirs: dict[int, str] = {}
            self.next_dir = 0
            if locks == "local":
                self.lock = None  # no lock operation: the kernel keeps locks on this mount

        # -- the client's cache (cache="nfs") --

        def _node(self, st: os.stat_result) -> _Node:
            key = (st.st_dev, st.st_ino)
            node = self.nodes.get(key)
            if node is None:
                node = self.nodes[key] = _Node()
            return node

        def _revalidate(self, node: _Node, st: os.stat_result) -> None:
            end = max((o + len(b) for o, b in node.dirty), default=0)
            node.size = max(st.st_size, end)
            node.checked = time.monotonic()

        def _size(self, node: _Node, st: os.stat_result) -> int:
            if cache != "nfs":
                return st.st_size
            if time.monotonic() - node.checked > actimeo:
                self._revalidate(node, st)
            return node.size

        def _flush(self, node: _Node, fd: int) -> None:
            dirty, node.dirty = node.dirty, []
            for offset, data in dirty:
                view = memoryview(data)
                while view:
                    n = os.pwrite(fd, view, offset)
                    view, offset = view[n:], offset + n

        def _flush_fd(self, fd: int) -> None:
            with self.mutex:
                st = os.fstat(fd)
                node = self.nodes.get((st.st_dev, st.st_ino))
                if node is not None and node.dirty:
                    self._flush(node, fd)

        # -- attributes and names --

        def getattr(self, path, fh=None):
            with self.mutex:
                if fh is not None and fh.fh in self.handles:
                    st = os.fstat(self.handles[fh.fh].fd)
                else:
                    try:
                        st = os.lstat(real(path))
                    except OSError as exc:
                        raise FuseOSError(exc.errno) from None
                attrs = {k: getattr(st, k) for k in (
                    "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns",
                    "st_mtime_ns", "st_ctime_ns", "st_ino", "st_blocks")}
                for k in ("st_atime", "st_mtime", "st_ctime"):
                    attrs[k] = attrs.pop(k + "_ns")
                if cache == "nfs" and stat.S_ISREG(st.st_mode):
                    attrs["st_size"] = self._size(self._node(st), st)
                return attrs

        def access(self, path, amode):
            if not os.access(real(path), amode):
                raise FuseOSError(errno.EACCES)

        # directories: with flag_nopath, readdir names its directory by the opendir handle

        def opendir(self, path):
            with self.mutex:
                self.next_dir += 1
                self.dirs[self.next_dir] = path
                return self.next_dir

        def readdir(self, path, fh):
            return [".", "..", *os.listdir(real(self.dirs[fh]))]

        def releasedir(self, path, fh):
            with self.mutex:
                self.dirs.pop(fh, None)

        def readlink(self, path):
            return os.readlink(real(path))

        def mknod(self, path, mode, dev):
            os.mknod(real(path), mode, dev)

        def mkdir(self, path, mode):
            os.mkdir(real(path), mode)

        def rmdir(self, path):
            os.rmdir(real(path))

        def unlink(self, path):
            os.unlink(real(path))

        def symlink(self, target, source):
            os.symlink(source, real(target))

        def _flush_path(self, path: str) -> None:
            """Write back what this client holds of ``path`` (NFS does before link, rename)."""
            with self.mutex:
                try:
                    st = os.lstat(real(path))
                except FileNotFoundError:
                    return
                node = self.nodes.get((st.st_dev, st.st_ino))
                if node is not None and node.dirty:
                    fd = os.open(real(path), os.O_WRONLY)
                    try:
                        self._flush(node, fd)
                    finally:
                        os.close(fd)

        def link(self, target, source):
            self._flush_path(source)
            os.link(real(source), real(target))

        def rename(self, old, new):
            self._flush_path(old)
            os.replace(real(old), real(new))

        def chmod(self, path, mode):
            os.chmod(real(path), mode)

        def chown(self, path, uid, gid):
            os.chown(real(path), uid, gid)

        def utimens(self, path, times=None):
            os.utime(real(path), ns=times)

        # extended attributes (memo records a file's lock mode in one)

        def getxattr(self, path, name, position=0):
            try:
                return os.getxattr(real(path), name, follow_symlinks=False)
            except OSError as exc:
                raise FuseOSError(exc.errno) from None

        def setxattr(self, path, name, value, options, position=0):
            try:
                os.setxattr(real(path), name, value, options, follow_symlinks=False)
            except OSError as exc:
                raise FuseOSError(exc.errno) from None

        def listxattr(self, path):
            return os.listxattr(real(path), follow_symlinks=False)

        def removexattr(self, path, name):
            try:
                os.removexattr(real(path), name, follow_symlinks=False)
            except OSError as exc:
                raise FuseOSError(exc.errno) from None

        def statfs(self, path):
            sv = os.statvfs(real(path))
            return {k: getattr(sv, k) for k in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")}

        def truncate(self, path, length, fh=None):
            with self.mutex:
                if fh is not None and fh.fh in self.handles:
                    handle = self.handles[fh.fh]
                    self._flush(handle.node, handle.fd)
                    os.ftruncate(handle.fd, length)
                    st = os.fstat(handle.fd)
                else:
                    os.truncate(real(path), length)
                    st = os.lstat(real(path))
                self._revalidate(self._node(st), st)

        # -- open files --

        def _open(self, fd: int, fi, flags: int) -> int:
            with self.mutex:
                st = os.fstat(fd)
                node = self._node(st)
                node.fds.add(fd)
                self._revalidate(node, st)  # close-to-open: an open sees the server's size
                self.handles[fd] = _Handle(fd, node, bool(flags & os.O_APPEND))
            fi.fh = fd
            fi.direct_io = True  # no kernel page cache: every read and write reaches us
            return 0

        def _flags(self, flags: int) -> int:
            # the client places appends itself under "nfs"; the server appends under "coherent"
            flags &= ~(os.O_TRUNC if cache == "nfs" else 0)
            return flags & ~os.O_APPEND if cache == "nfs" else flags

        def open(self, path, fi):
            flags = fi.flags
            fd = os.open(real(path), self._flags(flags) & ~(os.O_CREAT | os.O_EXCL))
            if cache == "nfs" and flags & os.O_TRUNC:
                os.ftruncate(fd, 0)
            return self._open(fd, fi, flags)

        def create(self, path, mode, fi):
            flags = fi.flags | os.O_CREAT  # O_EXCL passed through: atomic across mounts
            fd = os.open(real(path), self._flags(flags), mode)
            if cache == "nfs" and flags & os.O_TRUNC:
                os.ftruncate(fd, 0)
            return self._open(fd, fi, flags)

        def read(self, path, size, offset, fh):
            with self.mutex:
                handle = self.handles[fh.fh]
                if cache != "nfs":
                    return os.pread(handle.fd, size, offset)
                st = os.fstat(handle.fd)
                end = min(offset + size, self._size(handle.node, st))
                if end <= offset:
                    return b""
                data = bytearray(os.pread(handle.fd, end - offset, offset))
                for start, chunk in handle.node.dirty:  # this client's own unflushed writes
                    lo, hi = max(start, offset), min(start + len(chunk), end)
                    if lo < hi:
                        if len(data) < hi - offset:
                            data.extend(bytes(hi - offset - len(data)))
                        data[lo - offset:hi - offset] = chunk[lo - start:hi - start]
                return bytes(data)

        def write(self, path, data, offset, fh):
            with self.mutex:
                handle = self.handles[fh.fh]
                if cache != "nfs":
                    if handle.append:
                        return os.write(handle.fd, data)  # the server appends
                    return os.pwrite(handle.fd, data, offset)
                node = handle.node
                if handle.append:
                    st = os.fstat(handle.fd)
                    offset = self._size(node, st)  # the client's idea of the end of file
                node.dirty.append((offset, bytes(data)))
                node.size = max(node.size, offset + len(data))
                if sum(len(b) for _, b in node.dirty) > 1 << 20:  # write back a full cache
                    self._flush(node, handle.fd)
                return len(data)

        def flush(self, path, fh):
            self._flush_fd(self.handles[fh.fh].fd)

        def fsync(self, path, datasync, fh):
            self._flush_fd(self.handles[fh.fh].fd)
            os.fsync(self.handles[fh.fh].fd)

        def release(self, path, fh):
            with self.mutex:
                handle = self.handles.pop(fh.fh)
                if handle.node.dirty:
                    self._flush(handle.node, handle.fd)
                handle.node.fds.discard(handle.fd)
                os.close(handle.fd)

        # -- POSIX locks (locks="refuse" or "shared"; "local" has none) --

        def lock(self, path, fh, cmd, lock):
            if locks == "refuse":
                raise FuseOSError(errno.ENOLCK)
            request = ctypes.cast(lock, ctypes.POINTER(_Flock)).contents
            handle = self.handles[fh.fh]
            st = os.fstat(handle.fd)
            key = (st.st_dev, st.st_ino, fh.lock_owner)
            unlock = request.l_type == fcntl.F_UNLCK
            with self.mutex:
                fd = self.owners.get(key)
                if fd is None:
                    if unlock:
                        return 0
                    fd = self.owners[key] = os.open(f"/proc/self/fd/{handle.fd}", os.O_RDWR)
                if unlock and cache == "nfs":
                    self._flush(handle.node, handle.fd)  # NFS writes back before unlocking
            arg = struct.pack(_FLOCK, request.l_type, request.l_whence, request.l_start,
                              request.l_len, 0)
            if cmd == _F_GETLK:
                got = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_OFD_GETLK, arg))
                request.l_type, request.l_whence, request.l_start, request.l_len = got[:4]
                request.l_pid = 0
                return 0
            pause = 0.0002
            while True:  # F_SETLKW waits here, in steps, so that an interrupt can end it
                try:
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, arg)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or cmd != _F_SETLKW:
                        raise FuseOSError(exc.errno) from None
                if _interrupted():
                    raise FuseOSError(errno.EINTR)
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
            with self.mutex:
                if unlock and request.l_start == 0 and request.l_len == 0:
                    self.owners.pop(key, None)
                    os.close(fd)  # the owner holds nothing on this file any more
                elif not unlock and cache == "nfs":
                    self._revalidate(handle.node, os.fstat(handle.fd))  # a lock revalidates
            return 0

    return Client()


def _interrupted() -> bool:
    import fuse

    return bool(fuse._libfuse.fuse_interrupted())


def _watch(parent: int, point: str) -> None:
    """Unmount when the process that mounted us is gone (a test run killed mid-way)."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            subprocess.run(["umount", "-l", point], capture_output=True)
            os._exit(0)


def serve(backing: str, point: str, *, locks: str = "shared", cache: str = "coherent",
          subtype: str | None = None, actimeo: float = 3.0, parent: int | None = None,
          debug: bool = False) -> None:
    """Mount ``backing`` at ``point`` and serve it until unmounted (blocks)."""
    import logging

    from fuse import FUSE

    if debug:
        logging.basicConfig(level=logging.DEBUG)
    if parent:
        threading.Thread(target=_watch, args=(parent, point), daemon=True).start()
    options = dict(
        fsname=f"{FSNAME}:{os.path.abspath(backing)}", attr_timeout=0, entry_timeout=0,
        negative_timeout=0, allow_other=True, intr=True,
        default_permissions=True)
    if subtype:
        options["subtype"] = subtype
    FUSE(_operations(os.path.abspath(backing), locks, cache, actimeo), point, foreground=True,
         nothreads=False, raw_fi=True, debug=debug, **options)


# --- mounting from Python -----------------------------------------------------------------------

@dataclass
class Mount:
    """A mounted test filesystem (see :func:`mount`)."""

    backing: str
    point: str
    locks: str
    cache: str
    subtype: str | None
    process: subprocess.Popen[bytes]
    log: str

    def unmount(self) -> None:
        """Unmount and stop the daemon (lazily if a process still uses the mount)."""
        if self.point in mounted_points():
            done = subprocess.run(["umount", self.point], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", self.point], capture_output=True)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def mount(backing: str, point: str, *, locks: str = "shared", cache: str = "coherent",
          subtype: str | None = None, actimeo: float = 3.0, timeout: float = 15.0) -> Mount:
    """Start a daemon serving ``backing`` at ``point`` and wait until it is mounted."""
    if locks not in LOCKS or cache not in CACHES:
        raise ValueError(f"mount: locks={locks!r} must be one of {LOCKS}, "
                         f"cache={cache!r} one of {CACHES}")
    os.makedirs(point, exist_ok=True)
    os.makedirs(backing, exist_ok=True)
    point = os.path.realpath(point)
    log = os.path.join(os.path.dirname(point), f".{os.path.basename(point)}.log")
    cmd = [sys.executable, HERE, backing, point, "--locks", locks, "--cache", cache,
           "--actimeo", str(actimeo), "--parent", str(os.getpid())]
    if subtype:
        cmd += ["--subtype", subtype]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    m = Mount(backing, point, locks, cache, subtype, proc, log)
    deadline = time.monotonic() + timeout
    while point not in mounted_points():
        if proc.poll() is not None or time.monotonic() > deadline:
            m.unmount()
            with open(log, encoding="utf-8", errors="replace") as f:
                raise RuntimeError(f"mount: {backing} at {point} did not mount:\n{f.read()}")
        time.sleep(0.02)
    return m


@contextlib.contextmanager
def mounted(backing: str, *points: str, **behaviour) -> Iterator[list[Mount]]:
    """Mount ``backing`` at each of ``points`` (one client each); unmount them all at the end."""
    mounts: list[Mount] = []
    try:
        for point in points:
            mounts.append(mount(backing, point, **behaviour))
        yield mounts
    finally:
        for m in mounts:
            m.unmount()


class Host:
    """Processes that behave as if on another machine: a host name and process ids of its own.

    A holder process (``sleep``) keeps a UTS, process-id and mount namespace alive;
    :meth:`command` runs a command inside them, so that processes of one host see each
    other's process ids, and processes of two hosts do not (and may have the same
    ones), as on two machines. Closing the host kills every process in it.
    """

    def __init__(self, name: str, timeout: float = 15.0) -> None:
        self.name = name
        self.holder = subprocess.Popen(
            ["unshare", "--uts", "--pid", "--mount", "--fork", "--mount-proc",
             "--propagation", "slave", "--kill-child=SIGKILL", "--", "sh", "-c",
             'hostname "$0" && exec sleep 100000', name], start_new_session=True)
        deadline = time.monotonic() + timeout
        self.pid = 0
        while not self.pid:
            kids = children(self.holder.pid)
            if kids and _comm(kids[0]) == "sleep":  # after the exec: the host name is set
                self.pid = kids[0]
            elif self.holder.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"Host: could not start a namespace for host {name!r}")
            else:
                time.sleep(0.01)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run on this host (in its namespaces, the caller's working directory)."""
        return ["nsenter", "-t", str(self.pid), "--uts", "--pid", "--mount",
                f"--wd={os.getcwd()}", "--", *argv]

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()  # --kill-child: the namespace's init dies, and all in it
        self.holder.wait(10)


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="utf-8") as f:
                kids.extend(int(k) for k in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid`` and all its descendants (deepest first)."""
    for kid in children(pid):
        kill_tree(kid, sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tests/fusefs.py",
        description="Mount BACKING at MOUNTPOINT as one simulated client of a cluster "
                    "filesystem (mount it again elsewhere for a second client). Runs in the "
                    "foreground until `umount MOUNTPOINT`.")
    parser.add_argument("backing", help="the directory that plays the server")
    parser.add_argument("mountpoint")
    parser.add_argument("--locks", choices=LOCKS, default="shared",
                        help="refuse: ENOLCK (Lustre noflock); local: per mount (Lustre "
                             "localflock, BeeGFS default); shared: across mounts (NFS, "
                             "Lustre -o flock, GPFS). Default: shared")
    parser.add_argument("--cache", choices=CACHES, default="coherent",
                        help="nfs: cached size, appends at the client's end of file, data "
                             "visible after flush/close; coherent: none. Default: coherent")
    parser.add_argument("--subtype", default=None,
                        help="shown in /proc/mounts as fuse.SUBTYPE (nfs, lustre, beegfs...)")
    parser.add_argument("--actimeo", type=float, default=3.0,
                        help="seconds the nfs cache trusts a file's size (default 3)")
    parser.add_argument("--parent", type=int, default=None,
                        help="unmount when this process ends")
    parser.add_argument("--debug", action="store_true", help="log every FUSE operation")
    args = parser.parse_args(argv)
    if (why := unavailable()) is not None:
        print(f"fusefs: cannot mount: {why}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: subprocess.run(["umount", "-l", args.mountpoint]))
    serve(args.backing, args.mountpoint, locks=args.locks, cache=args.cache,
          subtype=args.subtype, actimeo=args.actimeo, parent=args.parent, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())

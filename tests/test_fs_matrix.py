"""The README's "What is guaranteed where" matrix, measured on simulated cluster clients.

Each row of the matrix is a behaviour of :mod:`fusefs` (a FUSE filesystem mounted
twice over one backing directory: two clients of one server), and each client's
processes run as another "host" (their own host name and process-id namespace,
:class:`fusefs.Host`). A cell marked safe must show every record exactly
once and whole, with one writer SIGKILLed mid-run; a cell marked not safe must show
its failure. The local row runs on the test's temporary directory, all on this host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from helpers import env

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fusefs  # noqa: E402

HOSTS = ("hosta", "hostb")

# the rows: behaviour of the simulated clients (see tests/fusefs.py)
ROWS = {
    "nfs": dict(locks="shared", cache="nfs", subtype="nfs", actimeo=30),
    "lustre-flock": dict(locks="shared", cache="coherent", subtype="lustre"),
    "lustre-localflock": dict(locks="local", cache="coherent", subtype="lustre"),
    "lustre-noflock": dict(locks="refuse", cache="coherent", subtype="lustre"),
    "beegfs-default": dict(locks="local", cache="nfs", subtype="beegfs", actimeo=30),
    "beegfs-global": dict(locks="shared", cache="nfs", subtype="beegfs", actimeo=30),
    "gpfs": dict(locks="shared", cache="coherent", subtype="gpfs"),
    "cephfs": dict(locks="shared", cache="coherent", subtype="ceph"),
}
# the columns: how the writers are configured
COLUMNS = {"shared": dict(mode="shared", lock="auto"), "soft": dict(mode="shared", lock="soft"),
           "shard": dict(mode="shard", lock="auto")}
UNSAFE = {("lustre-localflock", "shared"), ("beegfs-default", "shared")}
# records per writer process: the lock file costs ~15 ms a record on the simulator
RECORDS = {"shared": 60, "soft": 15, "shard": 60}
DEADLINE = 150  # seconds any group of writers may take

WRITER = r"""
import sys, time, warnings
import memo
path, mode, lock, who, n = sys.argv[1:6]
pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
warnings.simplefilter("always")
kw = {"mode": "shard"} if mode == "shard" else {"lock": lock}

@memo.memfile(path, **kw)
def record(w, i):
    return {"pad": "x" * 100}

for i in range(int(n)):
    record(who, i)
    print(i, flush=True)
    if pause:
        time.sleep(pause)
"""


def require_fuse() -> None:
    why = fusefs.unavailable()
    if why is None:
        return
    if os.environ.get("MEMO_REQUIRE_FUSE") == "1":
        pytest.fail(f"FUSE is required (MEMO_REQUIRE_FUSE=1) but {why}", pytrace=False)
    pytest.skip(f"cannot mount the simulated cluster filesystem: {why}")


@dataclass
class Cluster:
    """Two simulated clients of one backing directory (or one plain directory)."""

    backing: str
    points: list[str]
    row: str
    hosts: list[fusefs.Host] = field(default_factory=list)  # none: all on this host
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def path(self, client: int, name: str = "r.jsonl") -> str:
        return os.path.join(self.points[client], name)

    def host(self, client: int) -> str:
        return HOSTS[client % len(HOSTS)]

    def run(self, client: int, argv: list[str], out: str, err: str | None = None,
            host: int | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` through ``client``'s mount on host ``host`` (default: the
        client's own); stdout (and stderr) to files."""
        host = client if host is None else host
        cmd = self.hosts[host].command(argv) if self.hosts else argv
        with open(out, "wb") as o, open(err or out + ".err", "wb") as e:
            p = subprocess.Popen(cmd, stdout=o, stderr=e, env=env(MEMO_LOCK=None), cwd=self.backing)
        self.procs.append(p)
        return p

    def writer(self, client: int, who: str, n: int, column: str, name: str = "r.jsonl",
               lock: str | None = None, pause: float = 0.0) -> subprocess.Popen[bytes]:
        """A process appending ``n`` records as writer ``who`` (``pause`` s after each)."""
        cfg = COLUMNS[column]
        return self.run(client, [sys.executable, "-c", WRITER, self.path(client, name),
                                 cfg["mode"], lock or cfg["lock"], who, str(n), str(pause)],
                        os.path.join(self.backing, f".{who}.out"))

    def progress(self, who: str) -> int:
        try:
            return len(Path(self.backing, f".{who}.out").read_bytes().splitlines())
        except FileNotFoundError:
            return 0

    def stderr(self, who: str) -> str:
        return Path(self.backing, f".{who}.out.err").read_text(errors="replace")

    def wait(self, procs: list[subprocess.Popen[bytes]], timeout: float = DEADLINE) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.kill_all()
                pytest.fail(f"writers on {self.row} did not finish within {timeout} s")
        return codes

    def kill(self, p: subprocess.Popen[bytes]) -> None:
        """SIGKILL ``p`` and what it started (on a simulated host: the process inside)."""
        fusefs.kill_tree(p.pid)
        p.wait(10)

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                self.kill(p)


@pytest.fixture
def cluster(request, tmp_path):
    """Two clients with the behaviour of row ``request.param`` ("local": a plain directory)."""
    row = request.param
    if row == "local":
        c = Cluster(str(tmp_path), [str(tmp_path), str(tmp_path)], row)
        yield c
        c.kill_all()
        return
    require_fuse()
    # the "server" lives in memory: the simulator is slow enough without a disk's fsync
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    backing = tempfile.mkdtemp(prefix="memo-fs-", dir=shm)
    points = [str(tmp_path / "client-a"), str(tmp_path / "client-b")]
    hosts: list[fusefs.Host] = []
    try:
        with fusefs.mounted(backing, *points, **ROWS[row]):
            c = Cluster(backing, points, row, hosts)
            try:
                hosts.extend(fusefs.Host(name) for name in HOSTS)
                yield c
            finally:
                c.kill_all()
                for h in hosts:
                    h.close()
    finally:
        shutil.rmtree(backing, ignore_errors=True)
        assert not set(points) & set(fusefs.mounted_points()), "a mount was left behind"


@dataclass
class Tally:
    records: Counter[tuple[str, int]]
    torn: list[bytes]

    def lost(self, expected: dict[str, int]) -> int:
        return sum(1 for w, n in expected.items() for i in range(n) if (w, i) not in self.records)

    def duplicated(self) -> int:
        return sum(n - 1 for n in self.records.values())

    def of(self, who: str) -> list[int]:
        return sorted(i for (w, i), n in self.records.items() if w == who for _ in range(n))


def tally(*files: str) -> Tally:
    """Count the test records in ``files`` as the server holds them (no memo reader)."""
    records: Counter[tuple[str, int]] = Counter()
    torn: list[bytes] = []
    for name in files:
        data = Path(name).read_bytes()
        assert not data or data.endswith(b"\n"), f"{name} does not end with a newline"
        for line in data.splitlines():
            try:
                rec = orjson.loads(line)
                assert rec["pad"] == "x" * 100
                records[(rec["w"], rec["i"])] += 1
            except (orjson.JSONDecodeError, KeyError, AssertionError, TypeError):
                torn.append(line)
    return Tally(records, torn)


def result_files(c: Cluster, column: str, name: str = "r.jsonl") -> list[str]:
    """The files that hold the records of ``name`` on the server."""
    target = os.path.join(c.backing, name)
    if column == "shard":
        folder = target + ".shards"
        return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    return [target]


def kill_when(c: Cluster, victim: subprocess.Popen[bytes], who: str, records: int) -> None:
    """SIGKILL ``victim`` (its whole "host" process tree) once it has appended ``records``."""
    deadline = time.monotonic() + DEADLINE
    while c.progress(who) < records:
        if victim.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{who} ended or stalled before {records} records:\n{c.stderr(who)}")
        time.sleep(0.01)
    c.kill(victim)


def run_row(c: Cluster, columns: list[str]) -> dict[str, tuple[Tally, dict[str, int], str]]:
    """For each column at once (a file each): two writer processes per client, and one
    more on client B SIGKILLed mid-run; per column, the tally of what landed."""
    procs, victims, expected = [], {}, {}
    for col in columns:
        expected[col] = {f"{col}-{c.host(k)}-{j}": RECORDS[col] for k in range(2)
                         for j in range(2)}
        procs += [c.writer(k, f"{col}-{c.host(k)}-{j}", RECORDS[col], col, f"{col}.jsonl")
                  for k in range(2) for j in range(2)]
        victims[col] = c.writer(1, f"{col}-victim", 100_000, col, f"{col}.jsonl")
    for col, victim in victims.items():
        kill_when(c, victim, f"{col}-victim", 3)
    codes = c.wait(procs)
    errors = {col: "".join(c.stderr(w) for w in expected[col]) for col in columns}
    assert codes == [0] * len(procs), errors
    return {col: (tally(*result_files(c, col, f"{col}.jsonl")), expected[col], errors[col])
            for col in columns}


def run_cell(c: Cluster, column: str) -> tuple[Tally, dict[str, int], str]:
    return run_row(c, [column])[column]


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["local", *ROWS], indirect=True)
def test_safe_cells(cluster):
    """Each safe cell of the row: every record once and whole, from two clients x two
    processes, with a third writer SIGKILLed mid-run."""
    columns = [col for col in COLUMNS if (cluster.row, col) not in UNSAFE]
    for col, (t, expected, errors) in run_row(cluster, columns).items():
        assert t.torn == [], f"{col}: {len(t.torn)} torn lines: {t.torn[:3]}"
        assert t.lost(expected) == 0, f"{col}: {t.lost(expected)} lost\n{errors}"
        assert t.duplicated() == 0, col
        killed = t.of(f"{col}-victim")
        # the killed writer's records are a prefix: none lost before the kill, none twice
        assert len(killed) >= 3 and killed == list(range(len(killed))), (col, killed)
        if cluster.row == "lustre-noflock" and col == "shared":
            assert "falling back to the lock file" in errors  # the one clear warning
            assert errors.count("falling back") == 4  # once per writer process


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["beegfs-default"], indirect=True)
def test_node_local_locks_and_cached_appends_lose_records(cluster):
    """BeeGFS by default: locks per node and appends at each client's idea of the end of
    file, so records of one client overwrite the other's (and lines may be torn)."""
    n = 80  # paced, so that both clients append during the same second, however fast
    procs = [cluster.writer(k, f"{cluster.host(k)}-{j}", n, "shared", pause=0.005)
             for k in range(2) for j in range(2)]
    assert cluster.wait(procs) == [0] * 4
    t = tally(*result_files(cluster, "shared"))
    expected = {f"{cluster.host(k)}-{j}": n for k in range(2) for j in range(2)}
    lost = t.lost(expected)
    # each client's cached end of file lags the other's appends by seconds: most of one
    # client's records are overwritten (measured: 40-50% of all records lost)
    assert lost >= 0.2 * sum(expected.values()), (lost, len(t.torn))


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["lustre-localflock"], indirect=True)
def test_node_local_locks_with_server_side_appends_keep_records_whole(cluster):
    """Lustre localflock, appends alone: the locks are per node, but Lustre places an
    O_APPEND write at the server's end of file, so records stay whole (what is not safe
    there is anything that relies on the lock keeping other nodes out, below)."""
    t, expected, errors = run_cell(cluster, "shared")
    assert t.torn == [] and t.lost(expected) == 0 and t.duplicated() == 0, errors


HOLDER = r"""
import sys, time
import memo.locking
with memo.locking.hold(sys.argv[1], lock=sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""
TRY_APPEND = r"""
import sys, time
from memo.locking import LockTimeout
from memo.writer import AppendWriter
w = AppendWriter(sys.argv[1], lock=sys.argv[2], timeout=float(sys.argv[3]))
start = time.monotonic()
try:
    w.append(b'{"w": "probe", "i": 0, "pad": "' + b"x" * 100 + b'"}\n')
    print("appended", round(time.monotonic() - start, 3))
except LockTimeout:
    print("timeout", round(time.monotonic() - start, 3))
"""


def _hold_then_append(c: Cluster, lock: str) -> str:
    """Client B holds memo's lock; a writer on client A tries to append within 1.5 s."""
    name = "held.jsonl"
    Path(c.path(0, name)).touch()
    holder = c.run(1, [sys.executable, "-c", HOLDER, c.path(1, name), lock, "8"],
                   os.path.join(c.backing, ".holder.out"))
    deadline = time.monotonic() + 30
    while b"held" not in Path(c.backing, ".holder.out").read_bytes():
        assert holder.poll() is None and time.monotonic() < deadline, \
            Path(c.backing, ".holder.out.err").read_text()
        time.sleep(0.01)
    probe = c.run(0, [sys.executable, "-c", TRY_APPEND, c.path(0, name), lock, "1.5"],
                  os.path.join(c.backing, ".probe.out"))
    assert c.wait([probe]) == [0], Path(c.backing, ".probe.out.err").read_text()
    c.kill(holder)
    return Path(c.backing, ".probe.out").read_text().split()[0]


@pytest.mark.parametrize(("cluster", "lock", "excluded"), [
    ("lustre-localflock", "posix", False),  # locks per node: the other client is not kept out
    ("beegfs-default", "posix", False),
    ("nfs", "posix", True),
    ("lustre-flock", "posix", True),
    ("lustre-localflock", "soft", True),  # the lock file works wherever O_EXCL does
    ("nfs", "flock", False),  # the simulator's flock is per mount (NFS local_lock=flock)
], indirect=["cluster"])
def test_a_lock_on_one_client_excludes_the_other(cluster, lock, excluded):
    assert _hold_then_append(cluster, lock) == ("timeout" if excluded else "appended")


COMPACT = r"""
import os, sys, time
import memo.locking
# hold the writers' lock and rewrite the file in place (what a compaction or rotation does)
with memo.locking.hold(sys.argv[1], lock=sys.argv[2]) as fd:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    time.sleep(float(sys.argv[3]))  # writers that the lock keeps out wait here
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
print("compacted", size)
"""


def _compact_while_appending(c: Cluster, lock: str) -> tuple[Tally, int]:
    """Writers on both clients; on client B, ``hold()`` rewrites the file in place twice."""
    n = 150 if lock != "soft" else 60
    expected = {f"{c.host(k)}-{j}": n for k in range(2) for j in range(2)}
    column = "soft" if lock == "soft" else "shared"
    # writers that keep appending for a few seconds, through both compactions
    procs = [c.writer(k, w, n, column, pause=0.02 if lock != "soft" else 0.0) for k, w in
             ((k, f"{c.host(k)}-{j}") for k in range(2) for j in range(2))]
    for r in range(2):
        while c.progress("hosta-0") < 20 * (r + 1):  # writers on client A are appending
            assert procs[0].poll() is None, c.stderr("hosta-0")
            time.sleep(0.01)
        compact = c.run(1, [sys.executable, "-c", COMPACT, c.path(1), lock, "0.5"],
                        os.path.join(c.backing, f".compact{r}.out"))
        assert c.wait([compact]) == [0], Path(c.backing, f".compact{r}.out.err").read_text()
    assert c.wait(procs) == [0] * len(procs), "".join(c.stderr(w) for w in expected)
    t = tally(*result_files(c, column))
    return t, t.lost(expected)


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["lustre-localflock"], indirect=True)
def test_node_local_locks_keep_appends_whole_but_do_not_exclude_other_nodes(cluster):
    """Lustre localflock: memo's lock keeps out only the node's own writers (appends alone
    stay whole there: see the safe-looking shared cell above), so a rewrite under
    ``hold()`` on one node drops what the other node appended meanwhile."""
    t, lost = _compact_while_appending(cluster, "posix")
    # records appended on node A while node B held the lock were cut off or overwritten
    assert lost > 0, len(t.records)


HOLD_CELLS = [("nfs", "posix"), ("lustre-flock", "posix"), ("lustre-localflock", "soft")]


@pytest.mark.slow
@pytest.mark.parametrize(("cluster", "lock"), HOLD_CELLS, indirect=["cluster"],
                         ids=["nfs-posix", "lustre-flock-posix", "lustre-localflock-soft"])
def test_hold_on_the_other_client_keeps_writers_out(cluster, lock):
    t, lost = _compact_while_appending(cluster, lock)
    assert t.torn == [] and lost == 0 and t.duplicated() == 0


SOFT_APPENDER = r"""
import os, sys, time
import memo.locking
with memo.locking.hold(sys.argv[1], lock="soft") as fd:
    print("held", flush=True)
    time.sleep(1.5)  # client B's hold() opens the file now, then waits for the lock file
    for i in range(10):
        os.write(fd, b'{"w": "hosta-0", "i": %d, "pad": "%s"}\n' % (i, b"x" * 100))
    os.fsync(fd)
"""


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["nfs"], indirect=True)
def test_soft_hold_sees_what_was_appended_while_it_waited(cluster):
    Path(cluster.path(0)).touch()
    appender = cluster.run(0, [sys.executable, "-c", SOFT_APPENDER, cluster.path(0)],
                           os.path.join(cluster.backing, ".appender.out"))
    deadline = time.monotonic() + 30
    while b"held" not in Path(cluster.backing, ".appender.out").read_bytes():
        assert appender.poll() is None and time.monotonic() < deadline, \
            Path(cluster.backing, ".appender.out.err").read_text()
        time.sleep(0.01)
    compact = cluster.run(1, [sys.executable, "-c", COMPACT, cluster.path(1), "soft", "0"],
                          os.path.join(cluster.backing, ".compact.out"))
    assert cluster.wait([appender, compact]) == [0, 0], \
        Path(cluster.backing, ".compact.out.err").read_text()
    t = tally(*result_files(cluster, "soft"))
    assert t.lost({"hosta-0": 10}) == 0 and t.torn == []


def _merge_while_appending(c: Cluster, column: str) -> tuple[Tally, Tally, int]:
    """Writers on both clients; ``memo merge`` of their file into another one, on client
    B, meanwhile and once more after they finished."""
    n = RECORDS[column] * 2
    expected = {f"{c.host(k)}-{j}": n for k in range(2) for j in range(2)}
    procs = [c.writer(k, w, n, column) for k, w in
             ((k, f"{c.host(k)}-{j}") for k in range(2) for j in range(2))]
    source, out = c.path(1), c.path(1, "merged.jsonl")
    merged = os.path.join(c.backing, "merged.jsonl")
    merges, first = 0, None
    while True:
        finished = all(p.poll() is not None for p in procs)
        if os.path.exists(source) or os.path.isdir(source + ".shards"):
            merge = c.run(1, [sys.executable, "-m", "memo", "merge", "-q", out, source],
                          os.path.join(c.backing, f".merge{merges}.out"))
            assert c.wait([merge]) == [0], \
                Path(c.backing, f".merge{merges}.out.err").read_text()
            merges += 1
            first = first or tally(merged)
            if finished:  # this merge started after the writers ended: it holds everything
                break
        time.sleep(0.05)
    assert c.wait(procs) == [0] * len(procs), "".join(c.stderr(w) for w in expected)
    t = tally(merged)
    return first, t, t.lost(expected)


MERGE_CELLS = [("nfs", "shared"), ("nfs", "soft"), ("beegfs-default", "shard"),
               ("lustre-noflock", "shared")]


@pytest.mark.slow
@pytest.mark.parametrize(("cluster", "column"), MERGE_CELLS, indirect=["cluster"],
                         ids=[f"{r}-{c}" for r, c in MERGE_CELLS])
def test_merge_on_the_other_client_while_writers_append(cluster, column):
    """A merge taken while writers append holds whole records only; merging again after
    they finished holds every record once."""
    first, final, lost = _merge_while_appending(cluster, column)
    assert first.torn == [] and first.duplicated() == 0 and len(first.records) > 0
    assert final.torn == [] and lost == 0 and final.duplicated() == 0


SPOOLER = r"""
import sys, orjson
from memo.spool import Spool
spool, who, n = Spool(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    spool.add([orjson.dumps({"w": who, "i": i, "pad": "x" * 100, "_memo_id": f"{who}-{i}"})
               + b"\n"])
    print(i, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["nfs"], indirect=True)
def test_resend_on_the_other_client_while_writers_spool(cluster, tmp_path):
    """``memo resend`` drains a spool on client B while processes on A and B add to it:
    every record reaches the collector once, none is cut from the spool unsent."""
    from memo.serve import ServerProcess

    n = 100
    collected = tmp_path / "collected.jsonl"
    with ServerProcess(collected) as server:
        writers = {f"{cluster.host(k)}-{j}": cluster.run(
            k, [sys.executable, "-c", SPOOLER, cluster.path(k, "spool.jsonl"),
                f"{cluster.host(k)}-{j}", str(n)],
            os.path.join(cluster.backing, f".{cluster.host(k)}-{j}.out"))
            for k in range(2) for j in range(2)}
        rounds = 0
        while any(p.poll() is None for p in writers.values()) or rounds < 2:
            if os.path.exists(cluster.path(1, "spool.jsonl")):
                r = cluster.run(1, [sys.executable, "-m", "memo", "resend",
                                    cluster.path(1, "spool.jsonl"), server.url],
                                os.path.join(cluster.backing, f".resend{rounds}.out"))
                assert cluster.wait([r]) == [0], \
                    Path(cluster.backing, f".resend{rounds}.out.err").read_text()
                rounds += 1
            time.sleep(0.1)
        assert cluster.wait(list(writers.values())) == [0] * 4
    t = tally(str(collected))
    assert t.torn == []
    expected = {w: n for w in writers}
    assert t.lost(expected) == 0, f"{t.lost(expected)} spooled records never reached the server"
    assert t.duplicated() == 0


STALE_HOLDER = r"""
import os, sys, time
import memo.locking
with memo.locking.hold(sys.argv[1], lock="soft"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.parametrize("same_host", [True, False], ids=["same-host", "other-host"])
@pytest.mark.parametrize("cluster", ["nfs"], indirect=True)
def test_soft_lock_of_a_killed_holder_is_reclaimed(cluster, same_host):
    """A holder of the lock file killed (on the writers' host, or on the other host):
    writers on host A get the lock within a bounded time, and lose nothing."""
    Path(cluster.path(0)).touch()
    where = 0 if same_host else 1
    holder = cluster.run(where, [sys.executable, "-c", STALE_HOLDER, cluster.path(where)],
                         os.path.join(cluster.backing, ".stale.out"))
    deadline = time.monotonic() + 30
    while b"held" not in Path(cluster.backing, ".stale.out").read_bytes():
        assert holder.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    cluster.kill(holder)
    assert os.path.exists(cluster.path(0) + ".lock")  # left behind by the dead holder
    procs = [cluster.writer(0, f"a-{j}", 10, "soft") for j in range(2)]
    codes = cluster.wait(procs, timeout=120)
    assert codes == [0, 0], cluster.stderr("a-0")
    t = tally(*result_files(cluster, "soft"))
    assert t.lost({"a-0": 10, "a-1": 10}) == 0 and t.torn == [] and t.duplicated() == 0

"""``memo doctor``: on this machine's disk, on each simulated cluster client, across two
simulated hosts (``--peer``), and in a two-task SLURM job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from helpers import env

from memo import doctor
from memo.filesystem import filesystem_type

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fusefs  # noqa: E402
from test_fs_matrix import require_fuse  # noqa: E402

FAST = ["--processes", "2", "--records", "60", "--seconds", "1"]


def run_doctor(path: str, *args: str, prefix: list[str] | None = None,
               timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [*(prefix or []), sys.executable, "-m", "memo", "doctor", path, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(MEMO_LOCK=None),
                          timeout=timeout)


def leftovers(folder: str) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(doctor.PREFIX)]


def whole(result: dict) -> bool:
    return result["lost"] == result["duplicated"] == result["torn"] == 0 and \
        result["intact"] == result["expected"] > 0


def test_on_this_machines_disk(tmp_path):
    target = tmp_path / "results.jsonl"
    done = run_doctor(str(target), "--json", *FAST)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mount"]["type"] == filesystem_type(tmp_path) != "unknown"
    assert report["mount"]["cluster"] is False
    assert all(c["works"] for c in report["checks"].values()), report["checks"]
    for mode in ("flock", "posix", "soft"):
        assert whole(report["appends"][mode]), (mode, report["appends"][mode])
    assert report["auto"]["lock"] == "flock" and "local filesystem" in report["auto"]["reason"]
    assert report["problems"] == []
    assert leftovers(str(tmp_path)) == [] and not target.exists()

    text = run_doctor(str(tmp_path), *FAST)
    assert text.returncode == 0, text.stderr
    assert f"filesystem:     {report['mount']['type']}" in text.stdout
    assert "O_EXCL create:  works" in text.stdout
    assert "lock=flock" in text.stdout and "memo will use:  lock='flock'" in text.stdout
    assert "0 lost, 0 duplicated, 0 torn" in text.stdout


def test_usage_errors(tmp_path):
    done = run_doctor(str(tmp_path / "no" / "such" / "dir" / "r.jsonl"))
    assert done.returncode == 2 and "is not a directory" in done.stderr


@pytest.fixture
def simulated(tmp_path):
    """``mount(behaviour...)`` mounts clients of one backing directory; all unmounted after."""
    require_fuse()
    backing = tempfile.mkdtemp(prefix="memo-doctor-", dir="/dev/shm")
    stack: list[fusefs.Mount] = []
    hosts: list[fusefs.Host] = []

    def mount(n: int = 1, **behaviour) -> list[str]:
        for k in range(n):
            stack.append(fusefs.mount(backing, str(tmp_path / f"client{k}"), **behaviour))
        return [m.point for m in stack]

    mount.hosts = hosts  # type: ignore[attr-defined]
    try:
        yield mount
    finally:
        for h in hosts:
            h.close()
        for m in stack:
            m.unmount()
        assert not leftovers(backing), leftovers(backing)
        shutil.rmtree(backing, ignore_errors=True)


SINGLE = {
    "lustre-noflock": dict(locks="refuse", cache="coherent", subtype="lustre"),
    "lustre-localflock": dict(locks="local", cache="coherent", subtype="lustre"),
    "nfs": dict(locks="shared", cache="nfs", subtype="nfs"),
    "beegfs-default": dict(locks="local", cache="nfs", subtype="beegfs"),
}


@pytest.mark.slow
@pytest.mark.parametrize("row", SINGLE)
def test_on_each_simulated_client(simulated, row):
    (point,) = simulated(**SINGLE[row])
    done = run_doctor(point, "--json", *FAST)
    report = json.loads(done.stdout)
    assert report["mount"]["type"] == f"fuse.{SINGLE[row]['subtype']}"
    assert report["mount"]["cluster"] is True
    checks, appends, auto = report["checks"], report["appends"], report["auto"]
    assert checks["flock"]["works"]  # the kernel keeps flock on the mount in every case
    assert checks["exclusive_create"]["works"]
    if row == "lustre-noflock":
        assert not checks["posix"]["works"] and "ENOLCK" in checks["posix"]["error"]
        assert "ENOLCK" in appends["posix"]["refused"]
        assert auto["lock"] == "soft" and "refused" in auto["reason"]
    else:
        assert checks["posix"]["works"] and whole(appends["posix"])
        assert auto["lock"] == "posix"
    assert whole(appends["soft"]) and whole(appends["flock"])  # one host: all whole
    assert done.returncode == 0 and report["problems"] == [], report["problems"]


def _peers(simulated, behaviour: dict, *args: str) -> list[dict]:
    """``memo doctor --peer`` on two simulated hosts, each through its own client."""
    points = simulated(2, **behaviour)
    hosts = simulated.hosts
    hosts.extend(fusefs.Host(name) for name in ("hosta", "hostb"))
    procs = [subprocess.Popen(
        # appenders that run up to the 1 s limit (not 60 records, done in a few ms), so the
        # two hosts append at the same time however late one of them sees the other ready
        h.command([sys.executable, "-m", "memo", "doctor", p, "--json", "--peer", "t",
                   "--peer-timeout", "60", "--no-appends", *FAST, "--records", "100000",
                   *args]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(MEMO_LOCK=None))
        for h, p in zip(hosts, points)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert out, err
        outs.append({**json.loads(out), "status": p.returncode})
    return outs


@pytest.mark.slow
def test_peer_across_two_nfs_clients(simulated):
    a, b = _peers(simulated, SINGLE["nfs"])
    assert {a["peer"]["role"], b["peer"]["role"]} == {"a", "b"}
    assert a["host"] == b["peer"]["peer"]["host"] and b["host"] == a["peer"]["peer"]["host"]
    for side in (a, b):
        peer = side["peer"]
        assert peer["locks"]["posix"]["excludes_peer"] is True  # NFS locks reach the server
        assert peer["locks"]["flock"]["excludes_peer"] is False  # the simulator's flock: per mount
        assert peer["exclusive_create"]["works"]
        assert whole(peer["appends"]["posix"]) and whole(peer["appends"]["soft"])
        assert peer["appends"]["flock"]["lost"] > 0  # appends at a stale end of file
        assert side["auto"]["lock"] == "posix" and side["problems"] == []
        assert side["status"] == 0
    assert a["peer"]["appends"] == b["peer"]["appends"]  # both sides report the same counts


@pytest.mark.slow
def test_peer_finds_node_local_locks(simulated):
    a, b = _peers(simulated, SINGLE["beegfs-default"])
    for side in (a, b):
        peer = side["peer"]
        assert peer["locks"]["posix"]["excludes_peer"] is False
        assert peer["appends"]["posix"]["lost"] > 0
        assert whole(peer["appends"]["soft"])
        assert side["status"] == 1
        assert any("does not exclude the other" in p for p in side["problems"])
        assert "lock='soft'" in side["advice"]


@pytest.mark.slow
def test_peer_on_lustre_noflock(simulated):
    a, b = _peers(simulated, SINGLE["lustre-noflock"])
    for side in (a, b):
        peer = side["peer"]
        assert peer["locks"]["posix"]["excludes_peer"] is None
        assert "ENOLCK" in peer["locks"]["posix"]["error"]
        assert "refused" in peer["appends"]["posix"]
        assert side["auto"]["lock"] == "soft" and whole(peer["appends"]["soft"])
        assert side["status"] == 0, side["problems"]


@pytest.mark.slow
@pytest.mark.slurm
def test_peer_in_a_two_task_slurm_job(slurm_cluster, tmp_path):
    """Two tasks of one job meet beside PATH; on this single node their locks exclude
    each other and every append is whole."""
    outs = [tmp_path / f"task{k}.json" for k in range(2)]
    done = subprocess.run(
        ["srun", "--ntasks=2", "--time=5", f"--output={tmp_path}/task%t.json",
         f"--chdir={tmp_path}", sys.executable, "-m", "memo", "doctor", str(tmp_path),
         "--json", "--peer", "--no-appends", *FAST],
        capture_output=True, text=True, env=env(MEMO_LOCK=None), timeout=300)
    reports = [json.loads(p.read_text()) for p in outs]
    assert done.returncode == 0, (done.stderr, [p.read_text() for p in outs])
    assert {r["peer"]["role"] for r in reports} == {"a", "b"}
    for r in reports:
        peer = r["peer"]
        assert peer["locks"]["flock"]["excludes_peer"] is True
        assert peer["locks"]["posix"]["excludes_peer"] is True
        for mode in ("posix", "flock", "soft"):
            assert whole(peer["appends"][mode]), (mode, peer["appends"][mode])
    assert leftovers(str(tmp_path)) == []

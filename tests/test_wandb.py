"""``memwandb`` on the real wandb package in offline mode, checked on the files wandb writes.

wandb (0.19 and later) keeps an offline run in ``<WANDB_DIR>/wandb/offline-run-*/run-*.wandb``:
a log of protobuf ``Record`` messages (wandb's own schema, ``wandb.proto``) in
LevelDB's log format. :func:`run_records` reads that file back.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

wandb = pytest.importorskip("wandb")
from helpers import env  # noqa: E402
from wandb.proto import wandb_internal_pb2  # noqa: E402

import memo  # noqa: E402

_BLOCK = 32 * 1024


def run_records(path):
    """The protobuf records of one ``.wandb`` file (LevelDB log: 7-byte header per chunk)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", "not a wandb run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # a whole record
            raw = chunk
        elif kind == 2:  # first / middle / last piece of a record
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        elif kind == 4:
            raw = pending + chunk
        else:
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        yield record


def offline_runs(wandb_dir):
    """``{run_id: {"run": ..., "config": {...}, "summary": {...}, "exit": bool}}``."""
    # run.finish() returns once the run is finished; wandb's service may still be writing
    # the file, and shutting the service down waits for that
    wandb.teardown()
    runs = {}
    for path in sorted(glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*", "run-*.wandb"))):
        info = {"config": {}, "summary": {}, "exit": False, "run": None}
        for rec in run_records(path):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                info["run"] = rec.run
                for item in rec.run.config.update:
                    info["config"][item.key] = json.loads(item.value_json)
            elif kind == "config":
                for item in rec.config.update:
                    info["config"][item.key] = json.loads(item.value_json)
            elif kind == "summary":
                for item in rec.summary.update:
                    if item.key:
                        info["summary"][item.key] = json.loads(item.value_json)
            elif kind == "exit":
                info["exit"] = True
        assert info["run"] is not None, (path, os.path.getsize(path),
                                         [r.WhichOneof("record_type") for r in run_records(path)])
        runs[info["run"].run_id] = info
    return runs


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.chdir(tmp_path)
    wandb.teardown()  # wandb reads its settings (WANDB_DIR) once per setup: start afresh
    yield str(tmp_path)
    wandb.teardown()


def test_one_finished_run_per_call_with_config_and_summary(offline):
    np = pytest.importorskip("numpy")

    @memo.memwandb(project="birthday", entity="lab", group="sweep-1", tags=["paradox", "v2"],
                   job_type="sim")
    def experiment(class_size: int, n_sim: int, seed: int = 0) -> dict:
        return {"est_proba": class_size / 100, "hits": np.int64(class_size * 2)}

    assert experiment(10, 1000) == {"est_proba": 0.1, "hits": 20}
    experiment(class_size=23, n_sim=500, seed=3)
    assert wandb.run is None  # no run left open

    runs = sorted(offline_runs(offline).values(), key=lambda r: r["config"]["class_size"])
    assert len(runs) == 2
    for info in runs:
        run = info["run"]
        assert (run.project, run.entity, run.run_group, run.job_type) == \
            ("birthday", "lab", "sweep-1", "sim")
        assert list(run.tags) == ["paradox", "v2"]
        assert info["exit"]  # finished
        assert {k: v for k, v in info["config"].items() if not k.startswith("_")} == \
            {"class_size": info["config"]["class_size"], "n_sim": info["config"]["n_sim"],
             "seed": info["config"]["seed"]}
    assert [r["config"]["class_size"] for r in runs] == [10, 23]
    assert [(r["config"]["n_sim"], r["config"]["seed"]) for r in runs] == [(1000, 0), (500, 3)]
    summaries = [{k: v for k, v in r["summary"].items() if not k.startswith("_")} for r in runs]
    assert summaries == [{"est_proba": 0.1, "hits": 20}, {"est_proba": 0.23, "hits": 46}]


def test_outer_decorators_and_names(offline):
    @memo.memwandb(project="p", name=lambda rec: f"x={rec['x']}")
    @memo.capture_time
    def f(x):
        return {"y": x + 1}

    f(4)
    (info,) = offline_runs(offline).values()
    assert info["run"].display_name == "x=4"
    assert {k for k in info["config"] if not k.startswith("_")} == {"x"}
    assert info["summary"]["y"] == 5 and info["summary"]["time_taken"] >= 0


def test_a_failing_call_or_a_bad_value_starts_no_run(offline):
    @memo.memwandb(project="p")
    def boom(x):
        raise RuntimeError("no")

    @memo.memwandb(project="p")
    def bad(x):
        return {"obj": object()}

    with pytest.raises(RuntimeError):
        boom(1)
    with pytest.raises(memo.SerializationError, match="bad"):
        bad(1)
    assert offline_runs(offline) == {}
    assert wandb.run is None


def test_options_are_checked():
    with pytest.raises(TypeError, match="list of tags"):
        memo.memwandb(project="p", tags="one")
    with pytest.raises(TypeError, match="project="):
        memo.memwandb(lambda x: {"y": x})


def test_wandb_is_imported_only_when_used():
    code = ("import sys, memo\n"
            "assert 'wandb' not in sys.modules\n"
            "memo.memwandb(project='p', mode='disabled')\n"
            "assert 'wandb' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_without_wandb_memwandb_names_the_install():
    code = ("import sys; sys.modules['wandb'] = None\n"
            "import memo\n"
            "try:\n"
            "    memo.memwandb(project='p')\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "memwandb needs wandb" in proc.stdout and "'.[wandb]'" in proc.stdout


def test_a_run_the_program_has_open_is_left_alone(offline):
    mine = wandb.init(project="outer", config={"mine": True})

    @memo.memwandb(project="p")
    def f(x):
        return {"y": x}

    f(1)
    assert wandb.run is mine  # still the active run: not reused, not finished
    mine.finish()
    runs = offline_runs(offline)
    assert len(runs) == 2
    (logged,) = [r for r in runs.values() if r["run"].project == "p"]
    assert logged["config"]["x"] == 1 and logged["summary"]["y"] == 1 and logged["exit"]


def test_non_finite_values_reach_wandb_as_floats(offline):
    values = {"loss": float("inf"), "grad": float("nan"), "curve": [1.0, float("-inf")]}

    @memo.memwandb(project="p")
    def diverged(lr):
        return values

    diverged(10.0)
    direct = wandb.init(project="direct", config={"lr": 10.0})  # wandb given the floats itself
    direct.summary.update(values)
    direct.finish()
    runs = offline_runs(offline).values()
    summaries = {r["run"].project: {k: v for k, v in r["summary"].items() if not k.startswith("_")}
                 for r in runs}
    assert summaries["p"]["loss"] == float("inf")
    assert summaries["p"]["curve"] == [1.0, float("-inf")]
    assert repr(summaries["p"]) == repr(summaries["direct"])  # what wandb makes of nan, too
    assert all("$nonfinite" not in r["config"] for r in runs)


def test_each_record_brings_its_own_split_of_arguments_and_outputs(offline):
    from concurrent.futures import ThreadPoolExecutor

    @memo.memwandb(project="p")
    def f(x, **options):
        return {"y": x * 10, f"out{x % 2}": True}

    with ThreadPoolExecutor(4) as pool:  # calls of many threads at once never mix
        list(pool.map(lambda x: f(x, **{f"opt{x}": x}), range(8)))
    runs = offline_runs(offline).values()
    assert len(runs) == 8
    for info in runs:
        config = {k: v for k, v in info["config"].items() if not k.startswith("_")}
        summary = {k: v for k, v in info["summary"].items() if not k.startswith("_")}
        x = config["x"]
        assert config == {"x": x, f"opt{x}": x}  # **options are arguments too
        assert summary == {"y": x * 10, f"out{x % 2}": True}


def _run_name(record):
    return f"x={record['x']}"


def test_a_pickled_sink_logs_like_the_original(offline):
    import pickle

    @memo.memwandb(project="pickled", group="g", name=_run_name)
    def f(x):
        return {"y": x}

    (recorder,) = memo.sinks.recorders_of(f)
    recorder.sink = pickle.loads(pickle.dumps(recorder.sink))  # as a Runner's worker gets it
    f(3)
    (info,) = offline_runs(offline).values()
    assert (info["run"].project, info["run"].run_group, info["run"].display_name) == \
        ("pickled", "g", "x=3")
    assert info["summary"]["y"] == 3 and info["config"]["x"] == 3

"""The backend registry, any Executor, and joblib's active configuration."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from memo import Runner, grid, load
from memo.runner import Backend, backends, register_backend


def test_the_built_in_backends_are_registered():
    assert {"serial", "sequential", "threads", "threading", "processes", "multiprocessing",
            "loky", "slurm", "submitit", "joblib"} <= set(backends())


def test_a_registered_backend_runs_the_calls(tmp_path):
    seen = []

    class Inline(Backend):
        def run(self, run):
            job = run.job()
            for item in run.indexed:
                seen.append(item[0])
                run.deliver(job.run_batch([item]))

    register_backend("inline-test", Inline)
    report = Runner("inline-test").run(lambda x: {"y": x}, grid(x=range(5)),
                                       return_results=True)
    assert seen == [0, 1, 2, 3, 4] and report.ok
    assert report.results == [{"y": x} for x in range(5)]
    with pytest.raises(TypeError, match="subclass of memo.runner.Backend"):
        register_backend("bad", object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown backend 'nope'.*inline-test"):
        Runner("nope")


def _sweep(module, tmp_path, tag):
    return module(f"{tag}_{tmp_path.name.replace('-', '_')}", f"""
        import os, threading
        from memo import memfile

        @memfile({str(tmp_path / "out.jsonl")!r})
        def f(x):
            if x == 4:
                raise KeyError(x)
            return {{"pid": os.getpid(), "thread": threading.get_ident()}}
    """)


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_any_executor(module, tmp_path, kind):
    mod = _sweep(module, tmp_path, f"anyex_{kind}")
    pool = ThreadPoolExecutor(2) if kind == "threads" else ProcessPoolExecutor(2)
    with pool:
        report = Runner(executor=pool).run(mod.f, grid(x=range(12)), errors="return",
                                           quiet=True)
        assert pool.submit(abs, -1).result() == 1  # the caller's executor stays open
    assert (report.done, report.failed) == (12, 1)
    assert report.failures[0].error_type == "KeyError"
    records = load(tmp_path / "out.jsonl", errors="raise")
    assert sorted(r["x"] for r in records) == [x for x in range(12) if x != 4]
    pids = {r["pid"] for r in records}
    assert (pids == {os.getpid()}) == (kind == "threads")


def test_executor_arguments_are_checked():
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        Runner(executor=object())  # type: ignore[arg-type]
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="one of them"):
            Runner("loky", executor=pool)
        assert Runner(executor=pool).workers() == 1
        assert Runner(executor=pool, n_jobs=3).workers() == 3


@pytest.mark.parametrize("config", [{"backend": "threading", "n_jobs": 2},
                                    {"backend": "loky", "n_jobs": 2}])
def test_joblib_backend_follows_the_active_parallel_config(module, tmp_path, config):
    from joblib import parallel_config

    mod = _sweep(module, tmp_path, f"jl_{config['backend']}")
    # joblib's loky workers may have started (another test) before this module's folder
    # was on sys.path: send the module's code along instead of its name
    cloudpickle = pytest.importorskip("cloudpickle")
    cloudpickle.register_pickle_by_value(mod)
    with parallel_config(**config):
        report = Runner("joblib").run(mod.f, grid(x=range(10)), errors="return", quiet=True)
    assert (report.done, report.failed) == (10, 1)
    records = load(tmp_path / "out.jsonl", errors="raise")
    assert Counter(r["x"] for r in records) == Counter(x for x in range(10) if x != 4)
    pids = {r["pid"] for r in records}
    if config["backend"] == "threading":
        assert pids == {os.getpid()}
        assert len({r["thread"] for r in records}) >= 1
    else:
        assert os.getpid() not in pids

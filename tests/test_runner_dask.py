"""``Runner(executor=...)`` on a real Dask cluster (worker processes started by the test)."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from memo import RunError, Runner, grid, load

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A LocalCluster of two worker processes that can import modules from ``tmp_path``."""
    from helpers import ROOT

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as lc:
        with distributed.Client(lc) as client:
            yield client


def test_dask_executor_records_failures_and_skip(module, tmp_path, cluster):
    path = tmp_path / "dask.jsonl"
    mod = module(f"dasksweep_{tmp_path.name.replace('-', '_')}", f"""
        import os
        from memo import memfile, memlist

        data = []

        @memfile({str(path)!r}, skip=True)
        @memlist(data=data)
        def f(a, b):
            if (a, b) == (3, 1):
                raise ValueError("a=3, b=1 is cursed")
            return {{"s": a + b, "pid": os.getpid()}}
    """)
    settings = grid(a=range(10), b=range(3))
    runner = Runner(executor=cluster.get_executor())
    with pytest.raises(RunError) as info:
        runner.run(mod.f, settings)
    report = info.value.report
    assert (report.total, report.done, report.failed) == (30, 30, 1)
    failure = report.failures[0]
    assert failure.settings == {"a": 3, "b": 1} and failure.error_type == "ValueError"
    want = Counter((s["a"], s["b"]) for s in settings) - Counter({(3, 1): 1})
    # the file got each record once from the Dask workers, the parent's list too
    assert Counter((r["a"], r["b"]) for r in load(path, errors="raise")) == want
    assert Counter((r["a"], r["b"]) for r in mod.data) == want
    workers = {r["pid"] for r in mod.data}
    assert os.getpid() not in workers and len(workers) == 2
    # a rerun sends only the failed setting: everything else is recorded
    report = runner.run(mod.f, settings, errors="return", quiet=True)
    assert (report.skipped, report.done, report.failed) == (29, 1, 1)
    assert len(load(path)) == 29 and len(mod.data) == 29

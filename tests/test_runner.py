from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest
from helpers import ROOT, env

from memo import (
    RunError,
    Runner,
    grid,
    ignore_error,
    load,
    memfile,
    memfunc,
    memlist,
)
from memo.exceptions import MemoError

PROCESS_BACKENDS = ["processes", "multiprocessing", "loky"]
ALL_BACKENDS = ["serial", "threads", *PROCESS_BACKENDS]


def _keys(records, names=("a", "b")):
    return Counter(tuple(r[n] for n in names) for r in records)


@pytest.fixture
def sweep(tmp_path, module):
    name = f"sweep_{tmp_path.name.replace('-', '_')}"
    return module(name, f"""
        import os
        from memo import memfile, memlist

        data = []

        @memlist(data=data)
        @memfile({str(tmp_path / "out.jsonl")!r})
        def f(a, b):
            if (a, b) == (3, 1):
                raise ValueError("a=3, b=1 is cursed")
            return {{"s": a + b, "pid": os.getpid()}}
    """)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_every_record_reaches_every_sink_once(backend, sweep, tmp_path):
    settings = grid(a=range(20), b=range(5))
    report = Runner(backend, n_jobs=2).run(sweep.f, settings, errors="return", quiet=True)
    assert (report.total, report.done, report.failed) == (100, 100, 1)
    want = _keys(settings) - Counter({(3, 1): 1})
    assert _keys(sweep.data) == want  # the parent's list, whatever process ran the call
    assert _keys(load(tmp_path / "out.jsonl", errors="raise")) == want
    pids = {r["pid"] for r in sweep.data}
    if backend in PROCESS_BACKENDS:
        assert os.getpid() not in pids
    else:
        assert pids == {os.getpid()}


@pytest.mark.parametrize("backend", ["processes", "loky"])
def test_process_backends_run_calls_at_the_same_time(backend, tmp_path, module):
    # each call waits until the other worker has reached the barrier too: this only
    # passes when two calls really run at once, in two different processes
    mod = module(f"barrier_{backend}_{tmp_path.name.replace('-', '_')}", f"""
        import os
        from multiprocessing import Barrier
        from memo import memlist

        data = []

        def meet(i, folder={str(tmp_path)!r}):
            mine = os.path.join(folder, f"arrived-{{i}}-{{os.getpid()}}")
            open(mine, "w").close()
            import time
            for _ in range(2400):  # the other call must arrive while this one waits (60 s)
                others = [n for n in os.listdir(folder) if n.startswith("arrived-")
                          and n.split("-")[2] != str(os.getpid())]
                if others:
                    return {{"pid": os.getpid(), "met": True}}
                time.sleep(0.025)
            return {{"pid": os.getpid(), "met": False}}

        logged = memlist(data=data)(meet)
    """)
    report = Runner(backend, n_jobs=2, chunksize=1).run(mod.logged, grid(i=[0, 1]))
    assert report.ok
    assert len({r["pid"] for r in mod.data}) == 2
    assert all(r["met"] for r in mod.data)


def test_threads_run_calls_at_the_same_time():
    barrier = threading.Barrier(3, timeout=20)
    data = []

    @memlist(data=data)
    def meet(i):
        barrier.wait()
        return {"thread": threading.get_ident()}

    Runner("threads", n_jobs=3, chunksize=1).run(meet, grid(i=range(3)))
    assert len({r["thread"] for r in data}) == 3


def test_callback_runs_in_the_parent():
    seen = []
    parent = os.getpid()

    @memfunc(callback=lambda r: seen.append((os.getpid(), r["x"], r["pid"])))
    def f(x):
        return {"pid": os.getpid()}

    Runner("processes", n_jobs=2).run(f, grid(x=range(30)))
    assert sorted(x for _, x, _ in seen) == list(range(30))
    assert {p for p, _, _ in seen} == {parent}
    assert parent not in {worker for _, _, worker in seen}


def test_local_functions_work_with_forked_workers(tmp_path):
    data = []
    path = tmp_path / "local.jsonl"

    @memlist(data=data)
    @memfile(path)
    def local(x):
        return {"y": x * x}

    Runner("processes", n_jobs=2).run(local, [{"x": i} for i in range(50)])
    assert sorted(r["x"] for r in data) == list(range(50))
    assert sorted(r["y"] for r in load(path)) == [i * i for i in range(50)]


@pytest.mark.parametrize("backend", ["processes", "loky"])
def test_skip_in_workers_sees_the_parents_list(backend, sweep, module):
    sweep.data.extend({"a": a, "b": 0, "s": -1, "pid": 0} for a in range(5))
    name = sweep.__name__
    mod = module(name + "_skip", f"""
        import os
        from memo import memlist
        from {name} import data

        @memlist(data=data, skip=True)
        def g(a, b):
            return {{"s": a + b, "pid": os.getpid()}}
    """)
    Runner(backend, n_jobs=2).run(mod.g, grid(a=range(10), b=[0]))
    assert [r["s"] for r in sweep.data[:5]] == [-1] * 5  # a=0..4 were not run again
    assert sorted(r["s"] for r in sweep.data[5:]) == [5, 6, 7, 8, 9]
    assert _keys(sweep.data) == _keys(grid(a=range(10), b=[0]))


def test_failures_do_not_lose_other_records_and_raise_at_the_end(sweep):
    with pytest.raises(RunError) as info:
        Runner("processes", n_jobs=2).run(sweep.f, grid(a=range(10), b=range(3)))
    report = info.value.report
    assert (report.done, report.failed, report.succeeded) == (30, 1, 29)
    assert len(sweep.data) == 29
    failure = report.failures[0]
    assert failure.settings == {"a": 3, "b": 1}
    assert failure.error_type == "ValueError" and "cursed" in failure.message
    assert "raise ValueError" in failure.traceback
    assert "1 failed" in str(info.value) and "{'a': 3, 'b': 1}" in str(info.value)


def test_ignore_error_records_count_as_failures(capsys):
    data = []

    @memlist(data=data)
    @ignore_error
    def f(x):
        if x % 4 == 0:
            raise KeyError(x)
        return {"y": x}

    report = Runner("processes", n_jobs=2).run(f, grid(x=range(12)))
    assert len(data) == 12  # every call is recorded, the failures too
    assert (report.failed, report.succeeded) == (3, 9)
    assert sorted(f.settings["x"] for f in report.failures) == [0, 4, 8]
    assert not any(f.raised for f in report.failures)
    err = capsys.readouterr().err
    assert "9 of 12 calls succeeded, 3 failed" in err and "KeyError" in err


@pytest.mark.parametrize("backend", ["processes", "loky"])
def test_a_dying_worker_fails_its_calls_and_the_run_goes_on(backend, tmp_path, module):
    mod = module(f"dying_{backend}_{tmp_path.name.replace('-', '_')}", f"""
        import os
        from memo import memfile

        @memfile({str(tmp_path / "died.jsonl")!r})
        def f(x):
            if x == 3:
                os._exit(3)  # the worker process dies without a word
            return {{"y": x}}
    """)
    report = Runner(backend, n_jobs=2, chunksize=1).run(
        mod.f, grid(x=range(40)), errors="return", quiet=True)
    assert report.done == 40
    lost = {f.settings["x"] for f in report.failures}
    assert 3 in lost and all(f.error_type == "WorkerError" for f in report.failures)
    # calls in flight on the broken pool fail with it (a worker may have written the
    # record of one before the pool broke); the others run, on the surviving worker until
    # the pool is found broken (concurrent.futures notices it between results), then on a
    # new pool
    assert len(lost) <= 2 * 2 + 1
    done = [r["x"] for r in load(tmp_path / "died.jsonl", errors="raise")]
    assert len(done) == len(set(done)) and 3 not in done
    assert set(range(40)) - lost <= set(done)  # the run went on: every other setting ran


def test_results_in_settings_order():
    def f(x):
        return {"y": x * 10}

    report = Runner("processes", n_jobs=2).run(f, grid(x=range(40)), return_results=True)
    assert report.results == [{"y": x * 10} for x in range(40)]


@pytest.mark.parametrize("backend", ["serial", "threads", "processes"])
def test_generators_of_unknown_length(backend):
    data = []
    f = memlist(data=data)(lambda x: {"y": x})
    report = Runner(backend, n_jobs=2).run(f, ({"x": i} for i in range(25)))
    assert report.total == 25 and report.ok
    assert sorted(r["x"] for r in data) == list(range(25))


@pytest.mark.parametrize("settings", [{"x": 1}, "x=1", 5, None])
def test_settings_must_be_an_iterable_of_mappings(settings):
    with pytest.raises(TypeError, match="iterable of mappings"):
        Runner("serial").run(lambda x: {}, settings)


def test_a_bad_item_is_a_type_error_before_anything_runs():
    data = []
    f = memlist(data=data)(lambda x: {"y": x})
    with pytest.raises(TypeError, match="item 2 is int"):
        Runner("processes").run(f, [{"x": 1}, {"x": 2}, 3])
    assert data == []


def test_a_bad_item_in_a_generator_stops_after_the_calls_before_it():
    data = []
    f = memlist(data=data)(lambda x: {"y": x})
    with pytest.raises(TypeError, match="item 3 is tuple"):
        Runner("threads", n_jobs=2).run(f, ({"x": i} if i != 3 else (i,) for i in range(6)))
    assert sorted(r["x"] for r in data) == [0, 1, 2]


def test_original_call_forms():
    for backend in ("loky", "threading", "multiprocessing"):
        data = []
        f = memlist(data=data)(_square)
        runner = Runner(backend=backend, n_jobs=-1)
        report = runner.run(func=f, settings=grid(x=range(6)), progbar=True)
        assert report.ok and len(data) == 6, backend


def _square(x):
    return {"y": x * x}


@pytest.mark.parametrize("kwargs", [{"backend": "dask-ish"}, {"n_jobs": 0},
                                    {"n_jobs": 1.5}, {"chunksize": 0}])
def test_bad_runner_arguments(kwargs):
    with pytest.raises(ValueError):
        Runner(**kwargs)


def test_n_jobs_like_joblib():
    cores = len(os.sched_getaffinity(0))
    assert Runner(n_jobs=-1).workers() == cores
    assert Runner(n_jobs=-2).workers() == max(1, cores - 1)
    assert Runner(n_jobs=3).workers() == 3
    assert Runner("serial", n_jobs=4).workers() == 1


def test_no_progress_bar_without_a_terminal(tmp_path):
    script = tmp_path / "bar.py"
    script.write_text(_BAR_SCRIPT)
    done = subprocess.run([sys.executable, str(script), "True"],
                          env=env(MEMO_PROGRESS_INTERVAL="3600"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "call/s" not in done.stderr and "%" not in done.stderr
    assert "7 of 8 calls succeeded" in done.stderr  # the failure summary is still printed


_BAR_SCRIPT = """
import sys
from memo import Runner, ignore_error, memlist

data = []

@memlist(data=data)
@ignore_error
def f(x):
    if x == 5:
        raise ValueError("five")
    return {"y": x}

progbar = {"True": True, "False": False, "None": None}[sys.argv[1]]
gen = len(sys.argv) > 2
settings = ({"x": i} for i in range(8)) if gen else [{"x": i} for i in range(8)]
Runner("processes", n_jobs=2).run(f, settings, progbar=progbar)
print(len(data))
"""


def _in_terminal(tmp_path, *args, script=None, expect="8") -> str:
    """Run the bar script with stderr on a pseudo-terminal; return what it showed."""
    import pty
    import select

    if script is None:
        script = tmp_path / "bar.py"
        script.write_text(_BAR_SCRIPT)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(script), *args],
                            env=env(MEMO_PROGRESS_INTERVAL="3600"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the script ended
            break
        if not chunk:
            break
        shown += chunk
    out = proc.communicate(timeout=60)[0]
    os.close(leader)
    assert proc.returncode == 0 and out.strip().startswith(expect), out
    return shown.decode(errors="replace")


def test_progress_bar_on_a_terminal(tmp_path):
    pytest.importorskip("tqdm")
    shown = _in_terminal(tmp_path, "None")
    assert "8/8" in shown and "100%" in shown
    assert "failed=1" in shown
    assert "7 of 8 calls succeeded, 1 failed" in shown


def test_progress_bar_of_a_generator_counts_without_total(tmp_path):
    pytest.importorskip("tqdm")
    shown = _in_terminal(tmp_path, "None", "generator")
    assert "8call" in shown.replace(" ", "") and "/8" not in shown


def test_progress_bar_off_when_asked(tmp_path):
    shown = _in_terminal(tmp_path, "False")
    assert "call/s" not in shown and "%" not in shown


def test_runner_sweep_example_shows_its_bar(tmp_path):
    pytest.importorskip("tqdm")
    shown = _in_terminal(tmp_path, "--jobs", "2", script=ROOT / "scripts" / "runner_sweep.py",
                         expect="75 estimates, 1 failed")
    assert "76/76" in shown and "failed=1" in shown
    records = load(tmp_path / "runner_sweep.jsonl", errors="raise")
    assert len(records) == 76 and sum(r["status"] == "error" for r in records) == 1


def test_pool_sweep_example(tmp_path):
    for _ in range(2):  # the second run skips everything
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "pool_sweep.py")],
                              cwd=tmp_path, env=env(MEMO_PROGRESS_INTERVAL="3600"),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("24 records from ")
    records = load(tmp_path / "pool_sweep.jsonl", errors="raise")
    assert _keys(records, ("n", "p")) == _keys(grid(n=[1, 2, 5, 10, 20, 50],
                                                    p=[0.01, 0.05, 0.1, 0.5]), ("n", "p"))
    assert len({r["worker"] for r in records}) > 1


def test_start_method_spawn_pickles_the_function_by_reference(sweep, tmp_path):
    if "spawn" not in multiprocessing.get_all_start_methods():
        pytest.skip("no spawn start method")
    Runner("processes", n_jobs=2, start_method="spawn").run(
        sweep.f, grid(a=range(4), b=[0]))
    assert _keys(sweep.data) == _keys(grid(a=range(4), b=[0]))
    assert os.getpid() not in {r["pid"] for r in sweep.data}


def test_loky_names_a_function_it_cannot_send(tmp_path):
    pytest.importorskip("joblib")
    guard = threading.Lock()  # a lock cannot travel to another process

    @memfile(tmp_path / "never.jsonl")
    def local(x):
        with guard:
            return {"y": x}

    with pytest.raises(TypeError, match=r"local\(\) .*cannot be pickled.*backend='processes'"):
        Runner("loky", n_jobs=2).run(local, grid(x=range(3)))
    assert not (tmp_path / "never.jsonl").exists()


def test_loky_keeps_its_pool_between_runs_apart_from_joblibs(tmp_path, module, monkeypatch):
    from joblib import Parallel, delayed

    mod = module(f"kept_{tmp_path.name.replace('-', '_')}", """
        import os
        from memo import memlist

        data = []

        @memlist(data=data)
        def f(x):
            return {"pid": os.getpid(), "flag": os.environ.get("MEMO_TEST_FLAG")}
    """)

    def pids() -> set[int]:
        mod.data.clear()
        Runner("loky", n_jobs=2, chunksize=1).run(mod.f, grid(x=range(8)))
        assert len(mod.data) == 8
        return {r["pid"] for r in mod.data}

    def workers() -> set[int]:  # the processes of memo's kept loky pool
        from memo.runner.pools import KEPT

        return KEPT.workers()

    ran = pids()
    first = workers()
    assert ran <= first and os.getpid() not in first
    # joblib's own pool is another one: using it leaves ours, and ours leaves it, working
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    assert pids() <= first
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    assert pids() <= first and workers() == first
    # workers got the environment when they started: a changed one needs new workers
    monkeypatch.setenv("MEMO_TEST_FLAG", "on")
    assert not pids() & first
    assert {r["flag"] for r in mod.data} == {"on"}
    # so does another number of workers
    again = workers()
    Runner("loky", n_jobs=1).run(mod.f, grid(x=range(3)))
    assert not {r["pid"] for r in mod.data[-3:]} & again


def test_kept_loky_workers_start_each_run_like_new_ones(tmp_path, module):
    path = tmp_path / "kept.jsonl"
    mod = module(f"fresh_{tmp_path.name.replace('-', '_')}", f"""
        import os
        from memo import memfile, memlist

        data = []

        @memlist(data=data, skip=True)
        @memfile({str(path)!r})
        def g(a):
            return {{"pid": os.getpid()}}
    """)
    runner = Runner("loky", n_jobs=2, chunksize=1)
    runner.run(mod.g, grid(a=range(6)))
    from memo.runner.pools import KEPT

    first = KEPT.workers()  # the kept pool's workers
    assert sorted(r["a"] for r in load(path)) == list(range(6))
    # the parent's list is emptied and the file removed: a new run must redo every call
    # (a worker's skip index must not remember the old list) and write every line into
    # the new file (not through a descriptor of the removed one)
    mod.data.clear()
    path.unlink()
    runner.run(mod.g, grid(a=range(6)))
    assert {r["pid"] for r in mod.data} <= first  # the same workers ran them
    assert sorted(r["a"] for r in mod.data) == list(range(6))
    assert sorted(r["a"] for r in load(path, errors="raise")) == list(range(6))
    # and with the records in the parent's list, every worker skips them all
    report = runner.run(mod.g, grid(a=range(6)))
    assert report.ok and len(mod.data) == 6 and len(load(path)) == 6


@pytest.mark.parametrize("backend", ["processes", "loky"])
def test_worker_sinks_that_hold_records_back_are_flushed_by_the_end_of_the_run(
        tmp_path, module, backend):
    # a sink that buffers (as a batching HTTP sink does) must not wait for its worker to
    # end: the kept loky pool's workers outlive the run, forked workers skip exit hooks
    mod = module(f"held_{backend}_{tmp_path.name.replace('-', '_')}", f"""
        import os
        from memo import memlist
        from memo.sinks import recorder

        class Held:
            where = "worker"

            def __init__(self):
                self.held = []

            def write(self, record, call):
                self.held.append(record["x"])

            def flush(self):
                if self.held:
                    with open(os.path.join({str(tmp_path)!r}, f"held-{{os.getpid()}}"), "a") as f:
                        f.write("".join(f"{{x}}\\n" for x in self.held))
                    self.held.clear()

        data = []

        @memlist(data=data)
        @recorder(Held())
        def h(x):
            return {{"pid": os.getpid()}}
    """)

    def flushed() -> list[int]:
        return sorted(int(x) for p in tmp_path.glob("held-*") for x in p.read_text().split())

    Runner(backend, n_jobs=2, chunksize=1).run(mod.h, grid(x=range(8)))
    assert flushed() == list(range(8))
    Runner(backend, n_jobs=2, chunksize=3).run(mod.h, grid(x=range(8, 20)))
    assert flushed() == list(range(20)) and len(mod.data) == 20


def test_the_kept_loky_pool_ends_with_the_interpreter(tmp_path):
    script = tmp_path / "kept_exit.py"
    script.write_text(textwrap.dedent("""
        import memo

        def square(x):
            return {"y": x * x}

        if __name__ == "__main__":
            memo.Runner("loky", n_jobs=2).run(square, memo.grid(x=range(6)), progbar=False)
            print("ran")
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          env=env(MEMO_PROGRESS_INTERVAL="3600"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ran" and "Traceback" not in proc.stderr


def test_run_error_is_a_memo_error_and_a_runtime_error(sweep):
    with pytest.raises(MemoError) as info:
        Runner("serial").run(sweep.f, grid(a=[3], b=[1]))
    assert isinstance(info.value, RunError) and isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("backend", ["serial", "processes", "loky"])
def test_a_rerun_of_a_finished_sweep_runs_nothing(tmp_path, module, backend):
    path = tmp_path / "done.jsonl"
    mod = module(f"rerun_{backend}_{tmp_path.name.replace('-', '_')}", f"""
        import os
        from memo import memfile

        calls = []

        @memfile({str(path)!r}, skip=True)
        def f(x):
            calls.append(x)
            return {{"pid": os.getpid()}}
    """)
    first = Runner(backend, n_jobs=2).run(mod.f, grid(x=range(10)))
    assert (first.done, first.skipped) == (10, 0)
    report = Runner(backend, n_jobs=2).run(mod.f, grid(x=range(12)), return_results=True)
    assert (report.total, report.done, report.skipped, report.failed) == (12, 2, 10, 0)
    assert report.ok and "10 skipped" in report.summary()
    records = load(path, errors="raise")
    assert sorted(r["x"] for r in records) == list(range(12))  # nothing ran twice
    by_x = {r["x"]: r["pid"] for r in records}
    assert [r["pid"] for r in report.results] == [by_x[x] for x in range(12)]
    if backend == "serial":
        assert mod.calls == list(range(10)) + [10, 11]


def test_settings_claimed_elsewhere_are_left_to_the_end():
    from memo.runner.settings import Indexed, Skipper

    class Claims:  # what a recorder answers: 1 is recorded, 2 and 3 are being computed
        skip = True
        asked: list[tuple[str, int]] = []
        busy_now = {2, 3}

        def done(self, s):
            self.asked.append(("done", s["x"]))
            return s["x"] == 1 or (s["x"] == 2 and not self.busy_now)

        def busy(self, s):
            return s["x"] in self.busy_now

    claims = Claims()
    skipped = []
    indexed = Indexed(iter([{"x": i} for i in range(6)]), 6,
                      Skipper(claims, lambda i, s: skipped.append(i)))
    first = indexed.take(3)
    assert [s["x"] for _, s in first] == [0, 4, 5]
    claims.busy_now = set()  # the other run finished 2, and gave 3 up
    rest = indexed.take(10)
    assert [s["x"] for _, s in rest] == [3] and skipped == [1, 2]
    assert indexed.take(10) == []


def test_a_logged_run_prints_progress_lines(tmp_path):
    script = tmp_path / "bar.py"
    script.write_text(_BAR_SCRIPT)
    child_env = env(MEMO_PROGRESS_INTERVAL="0")
    done = subprocess.run([sys.executable, str(script), "None"], env=child_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("memo: f: ")]
    assert lines, done.stderr
    assert "/8 calls (" in lines[0] and "calls/s" in lines[0]
    assert lines[-1].startswith("memo: f: 8/8 calls (100%), 1 failed") and "done in" in lines[-1]
    assert "7 of 8 calls succeeded, 1 failed" in done.stderr
    quiet = subprocess.run([sys.executable, str(script), "False"], env=child_env,
                           capture_output=True, text=True, timeout=120)
    assert "memo: f:" not in quiet.stderr


def test_a_setting_another_run_is_computing_is_left_to_the_end(tmp_path):
    path = tmp_path / "claimed.jsonl"
    release = tmp_path / "release"
    source = textwrap.dedent(f"""
        import os, time
        from memo import memfile

        calls = []

        @memfile({str(path)!r}, skip=True, claim=True)
        def f(x):
            calls.append(x)
            if x == 0:  # the other run holds this one until this run reached x=4
                while not os.path.exists({str(release)!r}):
                    time.sleep(0.05)
            if x == 4:
                open({str(release)!r}, "w").close()
            return {{"pid": os.getpid()}}
    """)
    (tmp_path / "claimed_sweep.py").write_text(source)
    holder = subprocess.Popen([sys.executable, "-c", "import claimed_sweep as m; m.f(x=0)"],
                              cwd=tmp_path, env=env(PYTHONPATH=os.pathsep.join(
                                  [str(tmp_path), str(ROOT)])))
    try:
        import importlib
        sys.path.insert(0, str(tmp_path))
        mod = importlib.import_module("claimed_sweep")
        rec = mod.f.memo_recorder
        deadline = time.monotonic() + 60
        while not rec.busy({"x": 0}):  # the other process has claimed x=0
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        report = Runner("serial").run(mod.f, grid(x=range(5)))
        assert holder.wait(timeout=60) == 0
    finally:
        sys.path.remove(str(tmp_path))
        if holder.poll() is None:
            holder.kill()
    assert mod.calls == [1, 2, 3, 4]  # x=0 went last, and was not computed twice
    assert report.ok and report.done + report.skipped == 5
    records = load(path, errors="raise")
    assert sorted(r["x"] for r in records) == [0, 1, 2, 3, 4]
    assert {r["pid"] for r in records if r["x"] == 0} == {holder.pid}


def test_the_last_batches_split_what_is_left_evenly_across_workers():
    """Short calls come in batches of at least 5 ms of work; what is left at the end is
    split evenly, so that one worker does not get a long last batch while others idle."""
    from memo.runner.batching import BatchOut, BatchSizer
    sizer = BatchSizer(None, workers=2, total=20_000)
    first = [sizer.size() for _ in range(4)]  # nothing measured yet: one call each
    assert first == [1, 1, 1, 1]
    sizer.observe(BatchOut(1000, [], [], None, 0.0006))  # 0.6 us per call
    sizes = []
    while sizer.taken < 20_000:
        sizes.append(sizer.size())
    left_before_last = 20_000 - 4 - sum(sizes[:-2])
    assert sizes[-1] == sizes[-2] == -(-left_before_last // 2)


def test_first_batches_are_large_but_each_worker_gets_a_share():
    from memo.runner.batching import FIRST_BATCH, BatchSizer, first_batch
    assert first_batch(20_000, 4) == FIRST_BATCH
    assert first_batch(10, 4) == 3  # ten slow calls still reach every worker at once
    assert first_batch(None, 4) == 1  # a generator is not read ahead of the workers
    sizer = BatchSizer(None, workers=2, total=20_000, first=first_batch(20_000, 4))
    assert [sizer.size() for _ in range(4)] == [FIRST_BATCH] * 4
    sizer.give_back(1000)  # a batch came back with 1000 calls unrun
    assert sizer.taken == 4 * FIRST_BATCH - 1000


@pytest.mark.parametrize("budget", [None, 0.05])
def test_a_batch_stops_at_its_time_budget_and_returns_the_rest_unrun(budget):
    from memo.runner.worker import Job

    def slow(i):
        time.sleep(0.02)
        return {"i": i}

    items = [(i, {"i": i}) for i in range(10)]
    out = Job(slow, keep_results=True, budget=budget).run_batch(items)
    if budget is None:  # a SLURM task, a fixed chunksize: every call of the batch runs
        assert (out.done, out.unrun) == (10, 0)
    else:
        assert 1 <= out.done < 10 and out.done + out.unrun == 10
    assert [i for i, _ in out.results] == list(range(out.done))  # the first ones, in order
    fast = Job(lambda i: None, keep_results=False, budget=1.0).run_batch(
        [(i, {"i": i}) for i in range(5000)])
    assert (fast.done, fast.unrun) == (5000, 0)
    one = Job(slow, keep_results=False, budget=0.001).run_batch(items[:1])
    assert (one.done, one.unrun) == (1, 0)  # the first call always runs


def test_settings_given_back_go_out_first_and_are_still_known_by_index():
    from memo.runner.settings import Indexed
    settings = [{"i": i} for i in range(10)]
    indexed = Indexed(iter(settings), 10)
    batch = indexed.take(6)
    indexed.forget(batch)  # the batch came home with its last 4 unrun
    indexed.give_back(batch[2:])
    assert indexed.settings_of(4) == {"i": 4}  # a failure of a re-sent call names it
    assert indexed.take(3) == [(2, settings[2]), (3, settings[3]), (4, settings[4])]
    assert indexed.take(3) == [(5, settings[5])]  # the rest of the rest, alone
    assert indexed.take(3) == [(6, settings[6]), (7, settings[7]), (8, settings[8])]
    indexed.forget([(2, settings[2]), (3, settings[3]), (4, settings[4])])
    assert indexed.settings_of(4) == {}  # delivered: forgotten
    assert indexed.settings_of(5) == {"i": 5}


def test_slow_calls_in_a_large_first_batch_are_shared_with_idle_workers(module, tmp_path):
    """Batches start large (the time of a call is not known yet); a worker stuck in slow
    calls sends the rest of its batch back after its time budget, and an idle worker
    takes it, instead of one worker running every slow call of the first batch."""
    mod = module(f"uneven_{tmp_path.name.replace('-', '_')}", """
        import os, time
        from memo import memlist

        data = []

        @memlist(data=data)
        def f(i):
            if i < 10:
                time.sleep(0.1)
            return {"pid": os.getpid()}
    """)
    report = Runner("processes", n_jobs=2).run(mod.f, grid(i=range(40)), progbar=False)
    assert report.ok and report.done == 40
    assert sorted(r["i"] for r in mod.data) == list(range(40))  # each exactly once
    slow_pids = Counter(r["pid"] for r in mod.data if r["i"] < 10)
    assert len(slow_pids) == 2, slow_pids  # both workers ran slow calls


def test_a_span_reads_as_its_numbered_settings_and_pickles_without_the_pairs():
    import pickle

    from memo.runner.settings import Span
    settings = [{"i": i} for i in range(10, 20)]
    span = Span(10, settings)
    pairs = list(zip(range(10, 20), settings))
    assert list(span) == pairs and len(span) == 10
    assert span[0] == (10, {"i": 10}) and span[-1] == (19, {"i": 19})
    for part in (slice(3, None), slice(-4, None), slice(2, 5), slice(None, -7)):
        assert list(span[part]) == pairs[part]
        assert isinstance(span[part], Span)
    assert span[::3] == pairs[::3]
    back = pickle.loads(pickle.dumps(span))
    assert list(back) == pairs
    assert len(pickle.dumps(span)) < len(pickle.dumps(pairs))


def test_a_pool_found_broken_when_a_batch_is_sent_is_replaced(monkeypatch):
    """A worker can die between the Runner's looks at its pool: the pool then refuses the
    next batch (BrokenProcessPool from submit). That batch goes to a new pool and runs."""
    from memo.runner import base
    from memo.runner.processes import ProcessesBackend

    class BrokenFirst(ProcessesBackend):
        opened = 0

        def open(self, run):
            executor = super().open(run)
            BrokenFirst.opened += 1
            if BrokenFirst.opened == 1:  # the first pool: its workers die before any batch
                executor.submit(os.getpid).result()
                for proc in list(executor._processes.values()):
                    proc.kill()
                deadline = time.monotonic() + 30
                while not executor._broken:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            return executor

    monkeypatch.setitem(base._REGISTRY, "broken-first", BrokenFirst)
    data = []
    f = memlist(data=data)(lambda x: {"y": x})
    report = Runner("broken-first", n_jobs=2).run(f, grid(x=range(30)))
    assert report.ok and report.done == 30
    assert sorted(r["x"] for r in data) == list(range(30))
    assert BrokenFirst.opened == 2

from __future__ import annotations

import subprocess
import sys

from helpers import env

from memo import load
from memo.show import table


def _demo(tmp_path, *args):
    done = subprocess.run([sys.executable, "-m", "memo", "demo", *args], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_runs_in_parallel_and_prints_the_table(tmp_path):
    out = _demo(tmp_path, "--jobs", "2")
    lines = out.splitlines()
    assert lines[0].split() == ["class_size", "n_sim", "est_proba", "time_taken"]
    rows = [line.split() for line in lines[2:] if line.strip() and "records" not in line]
    assert len(rows) == 22
    assert out.rstrip().endswith("22 records in results.jsonl")
    records = load(tmp_path / "results.jsonl", errors="raise")
    assert sorted((r["class_size"], r["n_sim"]) for r in records) == sorted(
        (c, n) for c in range(5, 60, 5) for n in (1000, 10000))
    by_size = {r["class_size"]: r["est_proba"] for r in records if r["n_sim"] == 10000}
    assert by_size[5] < 0.1 < 0.4 < by_size[25] < 0.7 < by_size[55]  # the birthday paradox


def test_demo_resumes_and_starts_fresh(tmp_path):
    _demo(tmp_path, "--out", "r.jsonl")
    before = (tmp_path / "r.jsonl").read_bytes()
    _demo(tmp_path, "--out", "r.jsonl")  # everything is in the file: nothing runs again
    assert (tmp_path / "r.jsonl").read_bytes() == before
    _demo(tmp_path, "--out", "r.jsonl", "--fresh")
    assert len(load(tmp_path / "r.jsonl")) == 22


def test_the_demo_table_is_memo_show_output(tmp_path):
    out = _demo(tmp_path, "--jobs", "2")
    shown = table(tmp_path / "results.jsonl", columns="class_size,n_sim,est_proba,time_taken",
                  sort="n_sim,class_size")
    assert out.startswith(shown)


def test_the_demo_records_its_plan_and_status_reports_it_complete(tmp_path):
    _demo(tmp_path, "--jobs", "2", "--out", "d.jsonl")
    done = subprocess.run([sys.executable, "-m", "memo", "status", "d.jsonl"], cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("d.jsonl: 22 of 22 planned settings done (100%)")


def test_demo_needs_only_the_runtime_dependencies(tmp_path):
    # importing tqdm, joblib or submitit fails in this process, as on a bare install
    code = ("import sys\n"
            "for name in ('tqdm', 'joblib', 'submitit', 'cloudpickle', 'numpy'):\n"
            "    sys.modules[name] = None\n"
            "from memo.cli import main\n"
            "sys.exit(main(['demo', '--jobs', '2', '--out', 'bare.jsonl']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "22 records in bare.jsonl" in done.stdout

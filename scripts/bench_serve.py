"""Throughput of memweb -> ``memo serve`` on loopback, against memfile in the same run.

Starts a real ``memo serve`` (a subprocess on a free loopback port), then runs
CLIENTS processes that each call a decorated function RECORDS times:

* ``memweb, 1 record/request``: ``@memweb(url)``, one POST per record;
* ``plain client, 1 record/request``: the same records (serialized by memo, with ids)
  POSTed over one keep-alive ``http.client`` connection per client: what the collector
  itself sustains when its clients are light (memweb's httpx spends ~0.35 ms of CPU per
  request, which on 2 cores shared by server and clients is most of the budget);
* ``memweb, batched``: ``@memweb(url, batch=BATCH)``, flushed at the end;
* ``memfile (baseline)``: ``@memfile(path)``, the same records straight to a file.

Each figure is the median of ``--repeat`` runs of records/s (all records of all
clients over the wall time from a common start until the last client is done).
It checks that the collector's file holds every record exactly once, and prints the
ratio of each memweb figure to the memfile baseline measured in the same run.

Targets (2-core machine): >= 2,000 records/s one record per request from 8
clients, >= 50,000 records/s batched.

    PYTHONPATH=$PWD python scripts/bench_serve.py [--clients 8] [--records 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import orjson

from memo import memfile, memweb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment(class_size: int, n_sim: int, seed: int) -> dict[str, Any]:
    return {"est_proba": (class_size * 7919 + seed) % 1000 / 1000, "time_taken": 0.00123}


def _client(make: Callable[[], Any], worker: int, records: int, barrier: Any) -> None:
    deco = make()
    task = deco(experiment)
    barrier.wait()
    for i in range(records):
        task(class_size=i, n_sim=1000, seed=worker)
    flush = getattr(task, "flush", None)
    if flush is not None:
        flush()


class _Plain:
    """A decorator whose sink POSTs each record over a kept-alive ``http.client`` connection."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self) -> Any:
        import http.client
        from urllib.parse import urlsplit

        from memo.pipeline import recorder
        from memo.serialize import dumps
        from memo.web.wire import ID_KEY, new_id

        u = urlsplit(self.url)
        conn = http.client.HTTPConnection(u.hostname, u.port)
        headers = {"Content-Type": "application/json"}

        class Sink:
            def write(self, record: dict[str, Any], call: Any = None) -> None:
                record[ID_KEY] = new_id()
                conn.request("POST", "/", body=dumps(record), headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"HTTP {response.status}")

        return recorder(Sink())


class _Maker:
    """A picklable factory for the decorator each client uses."""

    def __init__(self, kind: str, target: str, batch: int, spool: str) -> None:
        self.kind, self.target, self.batch, self.spool = kind, target, batch, spool

    def __call__(self) -> Any:
        if self.kind == "file":
            return memfile(self.target)
        return memweb(self.target, batch=self.batch if self.kind == "batched" else None,
                      spool=self.spool, errors="raise")


def run_clients(make: Callable[[], Any], clients: int, records: int) -> float:
    """Records/s for ``clients`` processes writing ``records`` records each."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    procs = [ctx.Process(target=_client, args=(make, w, records, barrier))
             for w in range(clients)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"a client failed: exit codes {[p.exitcode for p in procs]}")
    return clients * records / elapsed


def start_server(path: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "memo", "serve", path, "--port", "0"],
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"memo serve did not start: {line!r}")
    return proc, f"http://127.0.0.1:{match.group(1)}/"


def check_file(path: str, expected: int) -> None:
    with open(path, "rb") as f:
        ids = [orjson.loads(line)["_memo_id"] for line in f]
    if len(ids) != expected or len(set(ids)) != expected:
        raise SystemExit(f"{path}: {len(ids)} lines, {len(set(ids))} ids; expected {expected}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--records", type=int, default=2000,
                    help="records per client, one per request (batched: 10x this)")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    single_n, batched_n = args.records, args.records * 10

    with tempfile.TemporaryDirectory() as tmp:
        served = os.path.join(tmp, "served.jsonl")
        spool = os.path.join(tmp, "spool.jsonl")
        proc, url = start_server(served)
        rates: dict[str, list[float]] = {k: [] for k in ("single", "single_file", "plain",
                                                         "plain_file", "batched", "batched_file")}
        total = 0
        try:
            for r in range(args.repeat):
                direct = os.path.join(tmp, f"direct-{r}.jsonl")
                direct_b = os.path.join(tmp, f"direct-b-{r}.jsonl")
                rates["single_file"].append(run_clients(
                    _Maker("file", direct, 0, spool), args.clients, single_n))
                rates["single"].append(run_clients(
                    _Maker("single", url, 0, spool), args.clients, single_n))
                rates["plain"].append(run_clients(_Plain(url), args.clients, single_n))
                rates["plain_file"] = rates["single_file"]
                rates["batched_file"].append(run_clients(
                    _Maker("file", direct_b, 0, spool), args.clients, batched_n))
                rates["batched"].append(run_clients(
                    _Maker("batched", url, args.batch, spool), args.clients, batched_n))
                total += args.clients * (2 * single_n + batched_n)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        check_file(served, total)
        if os.path.exists(spool) and os.path.getsize(spool):
            raise SystemExit("records were spooled: the server did not accept them all")

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"memo serve on loopback, {args.clients} client processes, {os.cpu_count()} cores, "
          f"median of {args.repeat}; every record arrived exactly once ({total} records)")
    print(f"{'':34}{'records/s':>12}{'memfile rec/s':>15}{'ratio':>8}{'target':>10}")
    for key, label, target in (("single", "memweb, 1 record/request", 2000),
                               ("plain", "plain client, 1 record/request", 2000),
                               ("batched", f"memweb, batch={args.batch}", 50000)):
        ok = "ok" if med[key] >= target else "MISSED"
        print(f"{label:34}{med[key]:12,.0f}{med[key + '_file']:15,.0f}"
              f"{med[key] / med[key + '_file']:8.3f}{target:>8,} {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

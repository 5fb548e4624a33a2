"""``memo serve`` as a real subprocess on loopback, driven with real HTTP requests."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from jsonl_lines import lines  # noqa: E402

import memo  # noqa: E402
from memo.serve import ServerProcess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def refusing(tmp_path_factory):
    """One server for the many refused bodies: none of them may add anything to its file."""
    path = tmp_path_factory.mktemp("refusing") / "served.jsonl"
    with ServerProcess(path) as server:
        yield server, str(path)


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "served.jsonl"
    with ServerProcess(path) as server:
        yield server, str(path)


def test_single_records_and_batches_arrive_once(served):
    server, path = served
    with httpx.Client() as c:
        r = c.post(server.url, json={"a": 1, "_memo_id": "one"})
        assert r.status_code == 200 and r.json() == {"written": 1, "duplicates": 0}
        r = c.post(server.url + "any/path", json=[{"b": 2, "_memo_id": "two"}, {"c": 3}])
        assert r.json() == {"written": 2, "duplicates": 0}
        status = c.get(server.url).json()
    assert lines(path) == [{"a": 1, "_memo_id": "one"}, {"b": 2, "_memo_id": "two"}, {"c": 3}]
    assert status["written"] == 3 and status["path"] == path


def test_the_same_id_is_stored_once_also_in_a_batch_and_under_a_race(served):
    server, path = served
    with httpx.Client() as c:
        c.post(server.url, json={"a": 1, "_memo_id": "x"})
        r = c.post(server.url, json=[{"a": 1, "_memo_id": "x"}, {"b": 1, "_memo_id": "y"},
                                     {"b": 1, "_memo_id": "y"}])
        assert r.json() == {"written": 1, "duplicates": 2}

    def race(k):  # eight clients post the same ten ids at once
        with httpx.Client() as c:
            for i in range(10):
                assert c.post(server.url, json={"i": i, "_memo_id": f"r{i}"}).status_code == 200

    threads = [threading.Thread(target=race, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [r["_memo_id"] for r in lines(path)]
    assert sorted(ids) == sorted(["x", "y"] + [f"r{i}" for i in range(10)])


def test_dedup_survives_a_restart(tmp_path):
    path = tmp_path / "served.jsonl"
    with ServerProcess(path, durable=True) as server:
        assert httpx.post(server.url, json={"a": 1, "_memo_id": "keep"}).status_code == 200
    with ServerProcess(path) as server:
        r = httpx.post(server.url, json=[{"a": 1, "_memo_id": "keep"}, {"a": 2, "_memo_id": "n"}])
        assert r.json() == {"written": 1, "duplicates": 1}
    assert [r["_memo_id"] for r in lines(path)] == ["keep", "n"]


def test_many_concurrent_clients_every_record_whole_and_once(served):
    server, path = served

    def client(k):
        with httpx.Client() as c:
            for i in range(40):
                r = c.post(server.url, json={"client": k, "i": i, "_memo_id": f"{k}-{i}"})
                assert r.status_code == 200

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted((r["client"], r["i"]) for r in lines(path))
    assert got == sorted((k, i) for k in range(16) for i in range(40))


def test_token_required(tmp_path):
    path = tmp_path / "served.jsonl"
    with ServerProcess(path, token="s3cret") as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = httpx.post(server.url, json={"a": 1}, headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(server.url).status_code == 401
        assert lines(path) == []
        ok = httpx.post(server.url, json={"a": 2}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    assert lines(path) == [{"a": 2}]


def test_bodies_over_the_limit_get_413_and_write_nothing(tmp_path):
    path = tmp_path / "served.jsonl"
    with ServerProcess(path, max_body=1000) as server:
        big = {"blob": "x" * 2000}
        r = httpx.post(server.url, json=big)
        assert r.status_code == 413
        chunked = httpx.post(server.url, content=iter([b'{"blob": "', b"y" * 1500, b'"}']))
        assert chunked.status_code == 413
        assert lines(path) == []
        assert httpx.post(server.url, json={"small": 1}).status_code == 200
    assert lines(path) == [{"small": 1}]


@pytest.mark.parametrize("body", [
    b"",
    b"not json",
    b'{"a": NaN}',
    b'{"a": 1',
    b"42",
    b'"a string"',
    b"null",
    b'[{"a": 1}, 2]',
    b'[{"a": 1}, [{"b": 2}]]',
    b'{"a": 1, "_memo_id": 7}',
    b'[{"a": 1}, {"b": 2, "_memo_id": ""}]',
    b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.",  # a pickle
    b'{"a": 1}\n{"b": 2}',
])
def test_bodies_that_are_not_records_get_400_and_write_nothing(refusing, body):
    server, path = refusing
    r = httpx.post(server.url, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "error" in r.json()
    assert lines(path) == []


def test_values_are_kept_exactly(served):
    server, path = served
    body = b'{"big": 1180591620717411303425, "f": 0.1, "n": {"$float": "nan"}, "s": "\\u00e9"}'
    assert httpx.post(server.url, content=body).status_code == 200
    with open(path, "rb") as f:
        assert b'"big":1180591620717411303425,' in f.read()  # 2**70 + 1, every digit
    (record,) = memo.load(path)
    assert record["f"] == 0.1 and math.isnan(record["n"]) and record["s"] == "\u00e9"


def test_shares_a_file_with_memfile_writers(served):
    server, path = served
    task = memo.memfile(path)(lambda i: {"via": "file"})

    def post():
        with httpx.Client() as c:
            for i in range(100):
                c.post(server.url, json={"i": i, "via": "http"})

    t = threading.Thread(target=post)
    t.start()
    for i in range(100):
        task(i)
    t.join()
    got = lines(path)
    assert sorted(r["via"] for r in got) == ["file"] * 100 + ["http"] * 100


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stops_cleanly_without_losing_an_acknowledged_record(tmp_path, sig):
    path = tmp_path / "served.jsonl"
    server = ServerProcess(path)
    acked: list[str] = []
    started = threading.Barrier(5)

    def client(k):
        with httpx.Client(timeout=5) as c:
            started.wait()
            for i in range(100_000):
                rid = f"{k}-{i}"
                try:
                    r = c.post(server.url, json=[{"k": k, "_memo_id": rid}, {"k": k, "x": i}])
                except httpx.TransportError:
                    return
                if r.status_code != 200:
                    return
                acked.append(rid)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    started.wait()
    while len(acked) < 200:
        threading.Event().wait(0.01)
    code = server.stop(sig)
    for t in threads:
        t.join()
    assert code == 0, server.output
    assert "stopped" in server.output
    stored = [r["_memo_id"] for r in lines(path) if "_memo_id" in r]
    assert len(stored) == len(set(stored))
    assert set(acked) <= set(stored)
    assert len(lines(path)) == 2 * len(stored)  # each batch whole: both of its records or none


def test_binds_loopback_by_default_and_prints_where(tmp_path):
    with ServerProcess(tmp_path / "x.jsonl") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.port > 0


def test_cli_lists_serve_and_resend():
    out = subprocess.run([sys.executable, "-m", "memo", "--help"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT), check=True).stdout
    assert "serve" in out and "resend" in out


@pytest.mark.parametrize("module", ["uvicorn", "starlette"])
def test_without_the_web_extra_serve_names_the_install(tmp_path, module):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from memo.cli import main\n"
            f"sys.exit(main(['serve', {str(tmp_path / 'x.jsonl')!r}, '--port', '0']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert proc.returncode == 2
    assert "pip install 'memo[web]'" in proc.stderr

"""``memo serve`` as a real subprocess on loopback, driven with real HTTP requests."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from helpers import env, lines, served_fixture  # noqa: E402, F401 - the served fixture

import memo  # noqa: E402
from memo.serve import ServerProcess  # noqa: E402
from memo.web.server import check_settings  # noqa: E402


@pytest.fixture(scope="module")
def refusing(tmp_path_factory):
    """One server for the many refused bodies: none of them may add anything to its file."""
    path = tmp_path_factory.mktemp("refusing") / "served.jsonl"
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
    assert status["written"] == 3 and status["file"] == "served.jsonl"


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
    b"[" * 5000 + b"]" * 5000,  # nested too deeply for any decoder
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"a": 1, "$nonfinite": 5}',  # memo's own encodings, malformed
    b'{"a": 1, "$nonfinite": ["/a"]}',
], ids=lambda body: repr(body[:24]))
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
                         text=True, env=env(), check=True).stdout
    assert "serve" in out and "resend" in out


@pytest.mark.parametrize("module", ["uvicorn", "starlette"])
def test_without_the_web_extra_serve_names_the_install(tmp_path, module):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from memo.cli import main\n"
            f"sys.exit(main(['serve', {str(tmp_path / 'x.jsonl')!r}, '--port', '0']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), timeout=60)
    assert proc.returncode == 2
    assert f"memo serve needs {module}" in proc.stderr and "'.[serve]'" in proc.stderr


def test_get_does_not_reveal_where_the_file_is(served):
    server, path = served
    answer = httpx.get(server.url)
    assert answer.status_code == 200 and answer.json()["file"] == "served.jsonl"
    assert os.path.dirname(path) not in answer.text


def _serve(*args, extra_env=None, timeout=30):
    """``memo serve`` that must refuse to start: it has ``timeout`` seconds to say so."""
    return subprocess.run([sys.executable, "-m", "memo", "serve", *map(str, args)],
                          capture_output=True, text=True, env=env(**(extra_env or {})),
                          timeout=timeout)


def test_an_empty_token_is_an_error(tmp_path):
    target = tmp_path / "x.jsonl"
    for args, extra in [(["--token", ""], None), ([], {"MEMO_TOKEN": ""}),
                        (["--token", "  "], None)]:
        done = _serve(target, "--port", "0", *args, extra_env=extra)
        assert done.returncode == 2, (args, extra, done.stdout)
        assert "token is empty" in done.stderr
    assert not target.exists()


def test_a_non_loopback_address_needs_a_token_or_an_explicit_flag(tmp_path):
    done = _serve(tmp_path / "x.jsonl", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--insecure-no-token" in done.stderr
    settings = dict(port=0, max_body=10, idle_timeout=1.0, body_timeout=1.0,
                    max_connections=10)
    warned = check_settings(host="0.0.0.0", token=None, insecure_no_token=True, **settings)
    assert len(warned) == 1 and "WARNING" in warned[0] and "without a token" in warned[0]
    assert check_settings(host="0.0.0.0", token="t", insecure_no_token=False, **settings) == []
    assert check_settings(host="localhost", token=None, insecure_no_token=False,
                          **settings) == []


@pytest.mark.parametrize("args, message", [
    (["--port", "99999"], "port from 0 to 65535"),
    (["--port", "-1"], "port from 0 to 65535"),
    (["--max-body", "-1"], "number of bytes >= 1"),
    (["--max-body", "0"], "number of bytes >= 1"),
    (["--idle-timeout", "0"], "seconds > 0"),
    (["--max-connections", "0"], "a number >= 1"),
])
def test_bad_numbers_are_refused(tmp_path, args, message):
    done = _serve(tmp_path / "x.jsonl", *args)
    assert done.returncode == 2 and message in done.stderr


def test_an_idle_or_half_open_connection_is_closed(tmp_path):
    with ServerProcess(tmp_path / "x.jsonl", args=["--idle-timeout", "1"]) as server:
        silent = socket.create_connection(("127.0.0.1", server.port))
        partial = socket.create_connection(("127.0.0.1", server.port))
        partial.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        start = time.monotonic()
        for sock in (silent, partial):
            sock.settimeout(20)
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        assert time.monotonic() - start < 10


def test_a_body_that_does_not_arrive_gets_408(tmp_path):
    path = tmp_path / "x.jsonl"
    with ServerProcess(path, args=["--body-timeout", "1"]) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.settimeout(20)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"a\": ")
            assert sock.recv(100).startswith(b"HTTP/1.1 408")
        assert httpx.post(server.url, json={"a": 1}).status_code == 200
    assert lines(path) == [{"a": 1}]


# an open-file limit many machines have by default (here, no way to raise it)
_LOW_FD_LIMIT = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)); "
                 "from memo.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.slow
def test_a_client_gets_through_1100_half_open_connections(tmp_path):
    path = tmp_path / "x.jsonl"
    launcher = [sys.executable, "-c", _LOW_FD_LIMIT]
    with ServerProcess(path, launcher=launcher) as server:
        attackers = []
        try:
            for i in range(1100):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                if i % 2:
                    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
                attackers.append(sock)
            time.sleep(0.5)  # let the server accept them all
            for i in range(3):
                r = httpx.post(server.url, json={"a": i}, timeout=10)
                assert r.status_code == 200
        finally:
            for sock in attackers:
                sock.close()
    assert lines(path) == [{"a": 0}, {"a": 1}, {"a": 2}]

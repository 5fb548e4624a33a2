"""``memweb`` against a real ``memo serve`` on loopback (and a real relay in front of it)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from helpers import env, lines, served_fixture  # noqa: E402, F401 - the served fixture

import memo  # noqa: E402
from memo.serve import ServerProcess  # noqa: E402
from memo.sinks.web import DeliveryError, DeliveryWarning  # noqa: E402

np = pytest.importorskip("numpy")


def experiment(x: int, lr: float = 0.1) -> dict:
    return {"loss": x * lr}


class Relay:
    """A real HTTP server in front of ``memo serve`` that misbehaves as scripted.

    Each request takes the next action: ``"ok"`` forwards it; ``"slow"`` forwards it
    (so the record is written) and answers only after a delay; ``"503"``, ``"429"``,
    ``"400"`` answer that status without forwarding. When the script runs out: ``"ok"``.
    """

    def __init__(self, target: str, script: list[str], delay: float = 1.0) -> None:
        self.target, self.script, self.delay = target, list(script), delay
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                relay.bodies.append(body)
                relay.headers.append({k.lower(): v for k, v in self.headers.items()})
                action = relay.script.pop(0) if relay.script else "ok"
                status, answer = int(action) if action.isdigit() else 200, b"{}"
                if action in ("ok", "slow"):
                    forward = {"Content-Type": "application/json"}
                    if "Authorization" in self.headers:
                        forward["Authorization"] = self.headers["Authorization"]
                    r = httpx.post(relay.target, content=body, headers=forward,
                                   trust_env=False)  # the relay may be the proxy itself
                    status, answer = r.status_code, r.content
                    if action == "slow":
                        time.sleep(relay.delay)
                try:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default spool lands here, never in the project


@pytest.fixture
def relay(served):
    made = []

    def make(script, delay=1.0):
        made.append(Relay(served[0].url, script, delay))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_each_record_arrives_exactly_once(served, tmp_path):
    server, path = served
    spool = tmp_path / "spool.jsonl"
    task = memo.memweb(server.url, spool=spool)(experiment)
    assert [task(x) for x in range(20)] == [{"loss": x * 0.1} for x in range(20)]
    got = lines(path)
    assert [(r["x"], r["lr"], r["loss"]) for r in got] == [(x, 0.1, x * 0.1) for x in range(20)]
    assert len({r["_memo_id"] for r in got}) == 20
    assert not spool.exists()


def test_values_go_through_the_serialization_layer(served, tmp_path):
    server, path = served

    @memo.memweb(server.url, spool=tmp_path / "spool.jsonl")
    def f(a):
        return {"f32": np.float32(0.1), "arr": np.arange(3), "nan": float("nan"), "big": 2**70 + 1}

    f(a=(1, 2))
    (record,) = memo.load(path)
    assert record["a"] == [1, 2] and record["f32"] == 0.1 and record["arr"] == [0, 1, 2]
    assert math.isnan(record["nan"])
    with open(path, "rb") as f:
        assert b'"big":1180591620717411303425' in f.read()  # 2**70 + 1, every digit


def test_token_and_free_form_headers(tmp_path, relay):
    path = tmp_path / "served.jsonl"
    with ServerProcess(path, token="tok") as server:
        memo.memweb(server.url, token="tok")(experiment)(1)
        memo.memweb(server.url, headers={"Authorization": "Bearer tok"})(experiment)(2)
        seen = Relay(server.url, [])
        try:
            memo.memweb(seen.url, token="tok", headers={"X-Sweep": "s1"})(experiment)(3)
        finally:
            seen.close()
        assert seen.headers[0]["authorization"] == "Bearer tok"
        assert seen.headers[0]["x-sweep"] == "s1"
        assert seen.headers[0]["content-type"] == "application/json"
    assert [r["x"] for r in lines(path)] == [1, 2, 3]


def test_a_refused_record_is_spooled_with_one_warning_and_resent_by_command(tmp_path):
    path, spool = tmp_path / "served.jsonl", tmp_path / "spool.jsonl"
    with ServerProcess(path, token="tok") as server:
        task = memo.memweb(server.url, spool=spool, retries=0)(experiment)
        with pytest.warns(DeliveryWarning, match="HTTP 401") as caught:
            task(1)
            task(2)
        assert len(caught) == 1
        assert lines(path) == []
        assert [r["x"] for r in lines(spool)] == [1, 2]
        cmd = [sys.executable, "-m", "memo", "resend", str(spool), server.url]
        wrong = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=60)
        assert wrong.returncode == 1 and "401" in wrong.stderr
        assert len(lines(spool)) == 2
        done = subprocess.run(cmd + ["--token", "tok"], capture_output=True, text=True, env=env(),
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "sent 2 record(s)" in done.stdout
        again = subprocess.run(cmd + ["--token", "tok"], capture_output=True, text=True,
                               env=env(), timeout=60)
        assert again.returncode == 0 and "sent 0 record(s)" in again.stdout
    assert [r["x"] for r in lines(path)] == [1, 2]
    assert lines(spool) == []


def test_a_server_down_then_back_receives_every_spooled_record_once(tmp_path):
    path, spool = tmp_path / "served.jsonl", tmp_path / "spool.jsonl"
    server = ServerProcess(path)
    port = server.port
    server.stop()
    task = memo.memweb(server.url, spool=spool, retries=1, backoff=0.01, recheck=0)(experiment)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x in range(5):
            assert task(x) == {"loss": x * 0.1}  # the sweep goes on
    delivery = [w for w in caught if w.category is DeliveryWarning]
    assert len(delivery) == 1  # one warning per outage, not one per record
    assert "memo resend" in str(delivery[0].message)
    assert [r["x"] for r in lines(spool)] == [0, 1, 2, 3, 4]
    with ServerProcess(path, port=port):
        task(5)  # succeeds, then re-sends the spool
        task(6)
    got = lines(path)
    assert sorted(r["x"] for r in got) == list(range(7))
    assert len({r["_memo_id"] for r in got}) == 7
    assert lines(spool) == []


def test_while_down_records_go_straight_to_the_spool_until_recheck(tmp_path):
    path, spool = tmp_path / "served.jsonl", tmp_path / "spool.jsonl"
    server = ServerProcess(path)
    port = server.port
    server.stop()
    task = memo.memweb(server.url, spool=spool, retries=0, recheck=3600)(experiment)
    with pytest.warns(DeliveryWarning):
        task(0)
    with ServerProcess(path, port=port):
        task(1)  # within recheck: not even tried
        assert lines(path) == []
        task.flush()
    assert [r["x"] for r in lines(spool)] == [0, 1]


def test_a_retry_that_races_a_slow_success_is_stored_once(served, relay, tmp_path):
    _, path = served
    slow = relay(["slow"], delay=4.0)
    task = memo.memweb(slow.url, timeout=1.0, retries=3, backoff=0.01,
                       spool=tmp_path / "spool.jsonl")(experiment)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task(7)
    assert len(slow.bodies) >= 2 and slow.bodies[0] == slow.bodies[1]  # the same id, twice
    assert [r["x"] for r in lines(path)] == [7]


def test_5xx_and_429_are_retried_with_backoff(served, relay, tmp_path):
    _, path = served
    flaky = relay(["503", "429", "502"])
    task = memo.memweb(flaky.url, retries=3, backoff=0.01, spool=tmp_path / "spool.jsonl")
    task(experiment)(1)
    assert len(flaky.bodies) == 4
    assert [r["x"] for r in lines(path)] == [1]
    assert not (tmp_path / "spool.jsonl").exists()


def test_other_4xx_are_not_retried_and_a_refused_record_is_set_aside(served, relay, tmp_path):
    _, path = served
    refusing = relay(["400", "401"])
    spool = tmp_path / "spool.jsonl"
    task = memo.memweb(refusing.url, retries=3, backoff=0.01, spool=spool)(experiment)
    with pytest.warns(DeliveryWarning, match="HTTP 400.*set aside.*spool.refused.jsonl"):
        task(1)  # 400: this record is refused for good
    assert len(refusing.bodies) == 1
    assert lines(path) == [] and lines(spool) == []
    assert [r["x"] for r in lines(tmp_path / "spool.refused.jsonl")] == [1]
    with pytest.warns(DeliveryWarning, match="HTTP 401.*saved to"):
        task(2)  # 401: the endpoint refuses us, not the record: spooled for later
    assert len(refusing.bodies) == 2
    assert [r["x"] for r in lines(spool)] == [2]


def test_errors_raise_raises_after_spooling(tmp_path):
    server = ServerProcess(tmp_path / "served.jsonl")
    server.stop()
    spool = tmp_path / "spool.jsonl"
    task = memo.memweb(server.url, spool=spool, retries=0, errors="raise")(experiment)
    with pytest.raises(DeliveryError, match="saved to the spool"):
        task(1)
    with pytest.raises(DeliveryError):
        task(2)
    assert [r["x"] for r in lines(spool)] == [1, 2]


def test_batches_are_sent_by_a_background_thread_and_flushed_on_demand(served, relay, tmp_path):
    _, path = served
    counting = relay([])
    log = memo.memweb(counting.url, batch=7, flush_interval=60, spool=tmp_path / "s.jsonl")
    task = log(experiment)
    for x in range(50):
        task(x)
    task.flush()
    assert sorted(r["x"] for r in lines(path)) == list(range(50))
    assert len(counting.bodies) == 8
    assert all(b.startswith(b"[") for b in counting.bodies)
    assert [len(orjson.loads(b)) for b in counting.bodies] == [7] * 7 + [1]
    for x in range(50, 53):
        task(x)
    log.flush()  # the decorator flushes too
    assert len(lines(path)) == 53


def test_a_batch_over_the_size_limit_is_split(tmp_path):
    path = tmp_path / "served.jsonl"
    with ServerProcess(path, max_body=600) as server:
        task = memo.memweb(server.url, batch=20, flush_interval=60,
                           spool=tmp_path / "s.jsonl")(experiment)
        for x in range(20):
            task(x)
        task.flush()
    assert sorted(r["x"] for r in lines(path)) == list(range(20))


def run_script(tmp_path, code):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_batched_records_are_flushed_at_exit(served, tmp_path):
    server, path = served
    run_script(tmp_path, f"""
        import memo

        @memo.memweb({server.url!r}, batch=1000, flush_interval=600)
        def f(x):
            return {{"y": x}}

        for x in range(30):
            f(x)
    """)
    assert sorted(r["x"] for r in lines(path)) == list(range(30))


def test_batched_records_of_pool_workers_survive_the_pool_terminating(served, tmp_path):
    server, path = served
    run_script(tmp_path, f"""
        import multiprocessing
        import memo

        @memo.memweb({server.url!r}, batch=1000, flush_interval=600)
        def f(x):
            return {{"y": x}}

        if __name__ == "__main__":
            with multiprocessing.get_context("fork").Pool(2) as pool:
                pool.map(f, range(40))  # then __exit__ terminates the workers
    """)
    got = lines(path)
    assert sorted(r["x"] for r in got) == list(range(40))
    assert len({r["_memo_id"] for r in got}) == 40


def test_a_bad_value_raises_before_anything_is_sent(tmp_path):
    spool = tmp_path / "spool.jsonl"

    @memo.memweb("http://127.0.0.1:9/", spool=spool)
    def bad(x):
        return {"obj": object()}

    with pytest.raises(memo.SerializationError, match="bad"):
        bad(1)
    assert not spool.exists()


def test_a_record_with_the_id_key_is_refused(tmp_path):
    task = memo.memweb("http://127.0.0.1:9/", spool=tmp_path / "s.jsonl")(
        lambda x: {"_memo_id": x})
    with pytest.raises(memo.KeyCollisionError, match="_memo_id"):
        task(1)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="http"):
        memo.memweb("ftp://example.org/")
    with pytest.raises(ValueError, match="errors"):
        memo.memweb("http://127.0.0.1:9/", errors="ignore")
    with pytest.raises(ValueError, match="not both"):
        memo.memweb("http://127.0.0.1:9/", retries=2, retry=memo.RetryPolicy(1))
    with pytest.raises(ValueError, match="retries"):
        memo.RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="batch"):
        memo.memweb("http://127.0.0.1:9/", batch=0)


def test_default_spool_is_named_after_the_endpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = memo.memweb("http://127.0.0.1:9/collect")
    assert log.memo_sink.spool.path == str(tmp_path / "memweb-spool-127.0.0.1-9-collect.jsonl")


@pytest.mark.parametrize("module", ["httpx", "tenacity"])
def test_without_a_client_dependency_memweb_names_the_install(module):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "import memo\n"
            "try:\n"
            "    memo.memweb('http://127.0.0.1:9/')\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"memweb needs {module}" in proc.stdout and "'.[web]'" in proc.stdout


def test_a_record_refused_for_good_is_set_aside_and_the_sweep_goes_on(tmp_path):
    path, spool = tmp_path / "served.jsonl", tmp_path / "spool.jsonl"
    refused = tmp_path / "spool.refused.jsonl"
    with ServerProcess(path, max_body=300) as server:
        task = memo.memweb(server.url, spool=spool, retries=0, recheck=3600)(
            lambda x, pad="": {"y": x})
        with pytest.warns(DeliveryWarning, match=r"HTTP 413.*set aside.*spool\.refused\.jsonl"):
            task(0, pad="z" * 500)  # too large for this server, whatever happens
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            task(1)
            task(2)
    assert [r["x"] for r in lines(path)] == [1, 2]
    assert lines(spool) == []
    assert [(r["x"], len(r["pad"])) for r in lines(refused)] == [(0, 500)]  # kept, unchanged


def _spool_with_one_oversized_record(spool, n=1000):
    from memo.serialize import dumps_line
    from memo.web.wire import ID_KEY, new_id

    records = [{"i": -1, "blob": "z" * 200_000, ID_KEY: new_id()}]
    records += [{"i": i, ID_KEY: new_id()} for i in range(n)]
    with open(spool, "wb") as f:
        f.writelines(dumps_line(r) for r in records)


@pytest.mark.parametrize("how", ["automatic", "resend", "resend --batch 1"])
def test_one_oversized_record_does_not_block_the_thousand_behind_it(tmp_path, how):
    path, spool = tmp_path / "served.jsonl", tmp_path / "spool.jsonl"
    refused = tmp_path / "spool.refused.jsonl"
    _spool_with_one_oversized_record(spool)
    with ServerProcess(path, max_body=100_000) as server:
        if how == "automatic":
            task = memo.memweb(server.url, spool=spool, retries=0)(experiment)
            with pytest.warns(DeliveryWarning, match="refused 1 record.*413.*set aside"):
                task(5)  # delivered, then the spool is re-sent
        else:
            cmd = [sys.executable, "-m", "memo", "resend", str(spool), server.url]
            cmd += how.split()[1:]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=120)
            assert done.returncode == 1, done.stderr  # not everything was delivered
            assert "sent 1000 record(s)" in done.stdout
            assert "refused 1 record(s) for good" in done.stderr
            assert str(refused) in done.stderr and "413" in done.stderr
    got = [r["i"] for r in lines(path) if "i" in r]
    assert sorted(got) == list(range(1000))  # every good record, once
    assert lines(spool) == []
    assert [len(r["blob"]) for r in lines(refused)] == [200_000]  # set aside, not dropped


def test_on_error_is_the_deprecated_name_of_errors(tmp_path):
    with pytest.warns(DeprecationWarning, match="errors=") as caught:
        log = memo.memweb("http://127.0.0.1:9/", on_error="raise", spool=tmp_path / "s.jsonl")
    assert caught[0].filename == __file__
    assert log.memo_sink.errors == "raise"


def test_a_proxy_from_the_environment_is_used(served, relay, monkeypatch, tmp_path):
    server, path = served
    proxy = relay([])  # forwards whatever it is asked for to the collector
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY",
                 "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    memo.memweb("http://127.0.0.1:9/", spool=tmp_path / "s.jsonl")(experiment)(5)
    assert len(proxy.bodies) == 1
    assert [r["x"] for r in lines(path)] == [5]


def test_a_partial_batch_is_sent_after_flush_interval(served, tmp_path):
    server, path = served
    task = memo.memweb(server.url, batch=1000, flush_interval=0.2,
                       spool=tmp_path / "s.jsonl")(experiment)
    task(1)
    deadline = time.monotonic() + 30
    while not lines(path) and time.monotonic() < deadline:
        time.sleep(0.05)  # no flush(): the sender thread sends on its own
    assert [r["x"] for r in lines(path)] == [1]


def test_the_retry_policy_retries_only_what_may_pass_and_honours_retry_after():
    from memo.web.retry import RetryPolicy

    def script(*statuses, retry_after=0.0):
        calls = []

        def attempt():
            calls.append(time.monotonic())
            if len(calls) <= len(statuses):
                raise DeliveryError("scripted", statuses[len(calls) - 1], retry_after)
            return "done"

        return attempt, calls

    policy = RetryPolicy(retries=3, backoff=0.001)
    attempt, calls = script(None, 503, 429)
    assert policy.call(attempt) == "done" and len(calls) == 4
    attempt, calls = script(503, 503, 503, 503)
    with pytest.raises(DeliveryError):
        policy.call(attempt)
    assert len(calls) == 4  # the first attempt and three retries
    for final in (400, 401, 413):
        attempt, calls = script(final)
        with pytest.raises(DeliveryError):
            policy.call(attempt)
        assert len(calls) == 1
    attempt, calls = script(429, retry_after=0.3)
    assert RetryPolicy(1, backoff=0).call(attempt) == "done"
    assert calls[1] - calls[0] >= 0.29  # waited as the server asked
    attempt, calls = script(429, retry_after=30)
    assert RetryPolicy(1, backoff=0, max_delay=0.05).call(attempt) == "done"
    assert calls[1] - calls[0] < 5  # but never longer than max_delay
    import pickle
    assert repr(pickle.loads(pickle.dumps(policy))) == repr(policy)


def test_a_retry_policy_object_configures_memweb(served, relay, tmp_path):
    _, path = served
    flaky = relay(["503", "503"])
    policy = memo.RetryPolicy(retries=2, backoff=0.001)
    memo.memweb(flaky.url, retry=policy, spool=tmp_path / "s.jsonl")(experiment)(3)
    assert len(flaky.bodies) == 3
    assert [r["x"] for r in lines(path)] == [3]


def test_a_pickled_sink_is_a_fresh_copy_with_the_same_settings(served, tmp_path):
    import pickle

    server, path = served
    log = memo.memweb(server.url, token=None, batch=5, flush_interval=60, retries=1,
                      spool=tmp_path / "s.jsonl", errors="raise")
    sink = log.memo_sink
    sink.write({"x": 1})  # a thread and a buffer of its own that the copy must not share
    copy = pickle.loads(pickle.dumps(sink))
    assert copy is not sink and copy.batcher is not sink.batcher
    assert (copy.url, copy.spool.path, copy.errors, copy.batcher.size) == \
        (sink.url, sink.spool.path, "raise", 5)
    assert repr(copy.sender.retry) == repr(sink.sender.retry)
    copy.write({"x": 2})
    copy.flush()
    sink.flush()
    assert sorted(r["x"] for r in lines(path)) == [1, 2]

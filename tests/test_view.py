"""``memo view``: the live page, tested over real HTTP and in a real headless Chromium.

The browser is Debian's chromium with its chromedriver (scripts/browser-setup.sh),
driven by selenium. Without them the browser tests skip, unless
MEMO_REQUIRE_BROWSER=1 (CI), where they fail instead.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, env

from memo.serialize import dumps_line

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("vl_convert")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
META = {"f": "train.run", "v": "1", "a": ["lr", "depth", "opt", "seed"]}
SHOTS = Path(os.environ.get("MEMO_SCREENSHOTS", tempfile.gettempdir())) / "memo-view-shots"


def record(i: int) -> dict[str, Any]:
    """Record ``i`` of a small sweep: lr x depth x opt x seed, with a failure and a NaN."""
    lr = (0.001, 0.01, 0.1)[i % 3]
    depth = (2, 4)[(i // 3) % 2]
    opt = ("adam", "sgd")[(i // 6) % 2]
    seed = i // 12
    rec: dict[str, Any] = {"lr": lr, "depth": depth, "opt": opt, "seed": seed}
    if i % 17 == 16:
        rec.update(status="error", error_type="ValueError", error_message=f"bad {i}")
    else:
        loss = 2 / (1 + 20 * lr) + depth / 10 + (0.3 if opt == "sgd" else 0) + (i % 7) / 40
        rec.update(status="ok", loss=math.nan if i == 5 else loss)
    rec["$memo"] = META
    return rec


def write(path: Path, start: int, stop: int) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(dumps_line(record(i)) for i in range(start, stop)))


# ---- a server in a subprocess ------------------------------------------------------------

class Server:
    """``python -m memo ARGS`` (view, or serve --view) until stopped; ``url`` once it listens."""

    def __init__(self, *args: str, token: str | None = None, timeout: float = 60) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "memo", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env(MEMO_TOKEN=token))
        self.lines: list[str] = []
        self.errors: list[str] = []
        ready = threading.Event()

        def drain(stream: Any, into: list[str], event: threading.Event | None) -> None:
            for line in stream:
                into.append(line)
                if event is not None:
                    event.set()
            if event is not None:
                event.set()

        self.threads = [threading.Thread(target=drain, args=(self.process.stdout, self.lines,
                                                             ready), daemon=True),
                        threading.Thread(target=drain, args=(self.process.stderr, self.errors,
                                                             None), daemon=True)]
        for t in self.threads:
            t.start()
        ready.wait(timeout)
        line = next((x for x in self.lines if "http://" in x), "")
        if not line:
            self.stop()
            raise RuntimeError(f"the server did not start: {''.join(self.errors)}")
        self.url = line[line.index("http://"):].split()[0]
        self.base = self.url.split("/", 3)[:3]
        self.origin = "/".join(self.base)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for t in self.threads:
            t.join(5)
        return code

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def asgi_get(application: Any, url: str, base: str = "http://127.0.0.1") -> Any:
    """GET ``url`` from an ASGI application, in this process (an httpx response)."""
    import asyncio

    import httpx

    async def fetch() -> Any:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            return await client.get(url)

    return asyncio.run(fetch())


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 - the page may be between two states
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout} s (last: {last!r})")


# ---- the browser -------------------------------------------------------------------------

def _unavailable(reason: str) -> None:
    if os.environ.get("MEMO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser is required (MEMO_REQUIRE_BROWSER=1) but {reason}",
                    pytrace=False)
    pytest.skip(f"no browser: {reason}")


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        _unavailable(f"{CHROMIUM} or {CHROMEDRIVER} is missing (run scripts/browser-setup.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install selenium)")
    profile = tempfile.mkdtemp(prefix="memo-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 "--window-size=1400,1200", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def count(driver: Any) -> int:
    return int(js(driver, "return document.querySelector('[data-testid=record-count]')"
                          ".textContent"))


def rows(driver: Any) -> list[list[str]]:
    return js(driver, "return Array.from(document.querySelectorAll('[data-testid=records] tr'))"
                      ".map(tr => Array.from(tr.cells).map(td => td.textContent))")


def header(driver: Any) -> list[str]:
    return js(driver, "return Array.from(document.querySelectorAll('thead tr.names th'))"
                      ".map(th => th.firstChild ? th.firstChild.textContent : '')")


def column(driver: Any, name: str) -> list[str]:
    i = header(driver).index(name)
    return [r[i] for r in rows(driver)]


def chart_paths(driver: Any) -> int:
    """Drawn marks in the chart: SVG paths with a real outline."""
    return js(driver, "return Array.from(document.querySelectorAll("
                      "'[data-testid=chart] svg path')).filter(p => "
                      "(p.getAttribute('d') || '').length > 10).length")


def open_page(driver: Any, url: str, records: int) -> None:
    driver.get(url)
    until(lambda: count(driver) == records and len(rows(driver)) == min(records, 100),
          30, f"the page showing {records} records")


def screenshot(driver: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    driver.save_screenshot(str(path))
    return path


def not_blank(png: bytes) -> tuple[int, float]:
    """(distinct colors, share of the most common one) of a PNG."""
    from PIL import Image
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colors = image.getcolors(1 << 24) or []
    return len(colors), max(n for n, _ in colors) / (image.width * image.height)


@pytest.fixture
def sweep(tmp_path):
    path = tmp_path / "results.jsonl"
    write(path, 0, 60)
    with Server("view", str(path), "--port", "0") as server:
        yield path, server


# ---- the page in the browser ---------------------------------------------------------------

def test_count_and_table_rows_match_the_file(browser, sweep):
    path, server = sweep
    open_page(browser, server.url, 60)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert header(browser)[:5] == ["#", "lr", "depth", "opt", "seed"]  # parameters first
    table = rows(browser)
    assert [r[0] for r in table] == [str(i) for i in range(1, 61)]  # file order
    assert column(browser, "opt") == [r["opt"] for r in records]
    assert column(browser, "depth") == [str(r["depth"]) for r in records]
    assert column(browser, "loss")[5] == "NaN"  # written as null + $nonfinite, shown as NaN
    assert column(browser, "error_type").count("ValueError") == 3
    status = js(browser, "return document.querySelector('[data-testid=status]').innerText")
    assert "DONE\n57" in status.upper() and "FAILED\n3" in status.upper()
    screenshot(browser, "page.png")


def test_records_appended_by_another_process_appear_within_two_seconds(browser, sweep):
    path, server = sweep
    open_page(browser, server.url, 60)
    writer = textwrap.dedent("""
        import sys
        from memo import memfile
        sys.path.insert(0, sys.argv[2])
        from test_view import record

        @memfile(sys.argv[1])
        def train(lr, depth, opt, seed):
            r = record(int(sys.argv[3]))
            return {"status": r["status"], "loss": r.get("loss"), "written_by": "writer"}

        for i in range(int(sys.argv[3]), int(sys.argv[4])):
            r = record(i)
            train(r["lr"], r["depth"], r["opt"], r["seed"])
    """)
    for start, stop in ((60, 75), (75, 76)):
        done = subprocess.run([sys.executable, "-c", writer, str(path), str(ROOT / "tests"),
                               str(start), str(stop)], env=env(MEMO_TOKEN=None),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        appended = time.monotonic()
        until(lambda stop=stop: count(browser) == stop and len(rows(browser)) == stop, 2.0,
              f"{stop} records on the page")
        assert time.monotonic() - appended <= 2.0
    assert column(browser, "written_by")[60:] == ["writer"] * 16


def test_chart_holds_drawn_marks_and_a_screenshot_is_not_blank(browser, sweep):
    _, server = sweep
    open_page(browser, server.url, 60)
    until(lambda: chart_paths(browser) >= 4, 20, "marks in the chart")
    title = js(browser, "return document.querySelector('[data-testid=chart] svg')"
                        ".textContent")
    assert "loss by lr" in title
    chart = browser.find_element("css selector", "[data-testid=chart]")
    colors, top = not_blank(chart.screenshot_as_png)
    assert colors > 30 and top < 0.95, (colors, top)
    colors, top = not_blank(Path(screenshot(browser, "chart-page.png")).read_bytes())
    assert colors > 30 and top < 0.95
    # the parallel coordinates are drawn too: the canvas has colored pixels
    painted = js(browser, """
        const c = document.getElementById('pc-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;""")
    assert painted > 1000


def test_chart_follows_the_columns_picked(browser, sweep):
    from selenium.webdriver.support.ui import Select
    _, server = sweep
    open_page(browser, server.url, 60)
    until(lambda: chart_paths(browser) >= 4, 20, "marks in the chart")
    Select(browser.find_element("id", "sel-x")).select_by_value("depth")
    Select(browser.find_element("id", "sel-color")).select_by_value("opt")
    Select(browser.find_element("id", "sel-facet")).select_by_value("seed")
    until(lambda: "loss by depth" in js(browser, "return document.querySelector("
                                                 "'[data-testid=chart] svg').textContent"),
          20, "the chart of loss by depth")
    legend = js(browser, "return document.querySelector('[data-testid=chart] svg')"
                         ".textContent")
    assert "adam" in legend and "sgd" in legend
    assert "x=depth" in browser.current_url and "facet=seed" in browser.current_url


def test_brushing_an_axis_filters_the_table(browser, sweep):
    from selenium.webdriver.common.action_chains import ActionChains
    path, server = sweep
    open_page(browser, server.url, 60)
    box = until(lambda: js(browser, """
        const r = document.querySelector('#pc-svg rect.hit[data-col="opt"]');
        if (!r) return null;
        const b = r.getBoundingClientRect(), s = document.getElementById('pc-svg')
            .getBoundingClientRect();
        return {x: b.x + b.width / 2 - (s.x + s.width / 2), top: b.y - (s.y + s.height / 2)};
        """), 10, "the opt axis")
    svg = browser.find_element("id", "pc-svg")
    # from above the top category (sgd: categories go up in sorted order) to just below it
    (ActionChains(browser).move_to_element_with_offset(svg, int(box["x"]), int(box["top"]) + 2)
     .click_and_hold().move_by_offset(0, 12).move_by_offset(0, 14).release().perform())
    sgd = sum(record(i)["opt"] == "sgd" for i in range(60))
    until(lambda: len(rows(browser)) == sgd, 5, "only the sgd records in the table")
    assert set(column(browser, "opt")) == {"sgd"}
    assert count(browser) == 60  # the file still has them all
    shown = browser.find_element("id", "shown").text
    assert shown == f"{sgd} of 60 records match"
    screenshot(browser, "brushed.png")
    browser.find_element("id", "clear-brushes").click()
    until(lambda: len(rows(browser)) == 60, 5, "every record back")


def test_table_sorts_and_filters(browser, sweep):
    path, server = sweep
    open_page(browser, server.url, 60)
    losses = [record(i).get("loss") for i in range(60)]
    finite = sorted(v for v in losses if v is not None and not math.isnan(v))
    browser.find_element("xpath", "//thead/tr[1]/th[normalize-space()='loss']").click()
    until(lambda: float(column(browser, "loss")[0]) == pytest.approx(finite[0], rel=1e-4), 5,
          "the smallest loss first")
    box = browser.find_element("css selector", "input[aria-label='filter loss']")
    box.send_keys(">2")
    want = sum(v > 2 for v in finite)
    until(lambda: len(rows(browser)) == want, 5, f"{want} records with loss > 2")
    assert all(float(v) > 2 for v in column(browser, "loss"))
    box.clear()
    box.send_keys("1.9..2.1")
    want = sum(1.9 <= v <= 2.1 for v in finite)
    until(lambda: len(rows(browser)) == want, 5, f"{want} records with loss in 1.9..2.1")


def test_wrong_token_is_refused(browser, tmp_path):
    path = tmp_path / "r.jsonl"
    write(path, 0, 10)
    with Server("view", str(path), "--port", "0", token="s3cret") as server:
        assert "s3cret" not in "".join(server.lines)  # the token is not printed
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            code, body, _ = get(server.origin + "/api/records", headers)
            assert code == 401 and b"needs its token" in body
        assert get(server.origin + "/api/records?token=wrong")[0] == 401
        assert get(server.origin + "/static/app.js")[0] == 401
        code, body, _ = get(server.origin + "/api/records",
                            {"Authorization": "Bearer s3cret"})
        assert code == 200 and json.loads(body)["total"] == 10
        code, _, headers = get(server.origin + "/?token=s3cret")
        assert code == 303 and headers["location"].endswith("/")
        assert "httponly" in headers["set-cookie"].lower()

        browser.delete_all_cookies()
        browser.get(server.origin + "/?token=wrong")
        assert "needs its token" in browser.find_element("tag name", "body").text
        assert not browser.find_elements("css selector", "[data-testid=record-count]")
        open_page(browser, server.origin + "/?token=s3cret", 10)
        assert "token" not in browser.current_url  # kept in a cookie, not in the address
        browser.delete_all_cookies()


def test_no_request_leaves_localhost(browser, sweep):
    _, server = sweep
    browser.get("about:blank")  # an earlier page would keep polling its own server
    browser.get_log("performance")  # drop what earlier pages logged
    open_page(browser, server.url, 60)
    until(lambda: chart_paths(browser) >= 4, 20, "marks in the chart")
    time.sleep(1.2)  # a few polls too
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert len(urls) >= 6, urls  # page, style, scripts, records (polled), spec
    assert {u.split("?")[0].rsplit("/", 1)[-1] for u in urls} >= {
        "", "app.css", "app.js", "vega.js", "records", "spec"}
    outside = [u for u in urls if not u.startswith(server.origin + "/")
               and not u.startswith(("data:", "blob:", "about:"))]
    assert outside == [], outside
    _, _, headers = get(server.url)
    assert headers["content-security-policy"].startswith("default-src 'self'")


def test_plot_html_draws_offline_in_the_browser(browser, tmp_path):
    import memo
    path = tmp_path / "r.jsonl"
    write(path, 0, 48)
    out = tmp_path / "chart.html"
    from memo.plot import save
    save(memo.plot(path, x="lr", y="loss", color="opt"), out)
    browser.get("about:blank")
    browser.get_log("performance")
    browser.get(out.as_uri())
    until(lambda: js(browser, "return document.querySelectorAll('#chart svg path').length") > 4,
          20, "the chart drawn from the file")
    urls = [json.loads(e["message"])["message"]["params"]["request"]["url"]
            for e in browser.get_log("performance")
            if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"]
    assert [u for u in urls if not u.startswith(("file:", "data:", "blob:", "about:"))] == []


@pytest.mark.slow
def test_a_hundred_thousand_records_stay_responsive(browser, tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        for start in range(0, 100_000, 10_000):
            f.write(b"".join(dumps_line({**record(i % 60), "seed": i // 12, "i": i})
                             for i in range(start, start + 10_000)))
    with Server("view", str(path), "--port", "0") as server:
        started = time.monotonic()
        browser.get(server.url)
        until(lambda: count(browser) == 100_000 and len(rows(browser)) == 100, 90,
              "100000 records loaded, one page of 100 rows shown")
        until(lambda: chart_paths(browser) >= 4, 60, "marks in the chart")
        loaded = time.monotonic() - started
        assert "page 1 of 1000" in browser.find_element("id", "page-of").text
        # a filter over all of them answers quickly enough to type into
        box = browser.find_element("css selector", "input[aria-label='filter opt']")
        typed = time.monotonic()
        box.send_keys("=sgd")
        sgd = sum(record(i % 60)["opt"] == "sgd" for i in range(100_000))
        until(lambda: browser.find_element("id", "shown").text == f"{sgd} of 100000 records "
                      "match", 30, "the filter applied to 100000 records")
        filtered = time.monotonic() - typed
        caption = browser.find_element("id", "pc-caption").text
        assert caption.startswith("20000 of 100000 lines drawn")  # 10000 kept + 10000 others
        print(f"100k records: loaded and drawn in {loaded:.1f} s, filtered in {filtered:.2f} s")
        screenshot(browser, "100k.png")


# ---- memo serve --view ---------------------------------------------------------------------

def test_serve_view_shows_what_the_collector_receives(browser, tmp_path):
    httpx = pytest.importorskip("httpx")
    path = tmp_path / "collected.jsonl"
    with Server("serve", str(path), "--port", "0", "--view", token="t0k") as server:
        auth = {"Authorization": "Bearer t0k"}
        answer = httpx.post(server.origin + "/", headers=auth, timeout=30,
                            json=[{k: v for k, v in record(i).items() if k != "$memo"}
                                  for i in range(0, 20) if i != 5])
        assert answer.status_code == 200 and answer.json()["written"] == 19
        assert get(server.origin + "/view/api/records")[0] == 401
        open_page(browser, server.origin + "/view/?token=t0k", 19)
        httpx.post(server.origin + "/", headers=auth, timeout=30,
                   json={"lr": 1.0, "depth": 2, "opt": "adam", "seed": 9, "loss": 0.5})
        until(lambda: count(browser) == 20 and len(rows(browser)) == 20, 2.0,
              "the posted record on the page")
        until(lambda: chart_paths(browser) >= 4, 20, "marks in the chart")
        browser.delete_all_cookies()


# ---- over HTTP -----------------------------------------------------------------------------

def test_records_follow_a_replaced_file_and_come_in_batches(tmp_path):
    from memo.view import server as view_server
    path = tmp_path / "r.jsonl"
    write(path, 0, 30)
    with Server("view", str(path), "--port", "0") as server:
        first = json.loads(get(server.origin + "/api/records?gen=-1&from=0")[1])
        assert (first["gen"], first["from"], first["total"]) == (0, 0, 30)
        assert first["parameters"] == META["a"]
        assert first["records"][5]["$nonfinite"] == {"/loss": "nan"}
        write(path, 30, 35)
        more = json.loads(get(server.origin + "/api/records?gen=0&from=30")[1])
        assert [r["seed"] for r in more["records"]] == [record(i)["seed"] for i in range(30, 35)]
        replaced = tmp_path / "new.jsonl"
        write(replaced, 100, 104)
        os.replace(replaced, path)
        def look() -> dict:
            return json.loads(get(server.origin + "/api/records?gen=0&from=35")[1])

        # the server looks at the path itself every 50 ms (memo.reader.Tail.RECHECK)
        after = until(lambda: (answer := look())["gen"] == 1 and answer, 2, "a new generation")
        assert (after["gen"], after["from"], after["total"]) == (1, 0, 4)
    assert view_server.BATCH == 50_000


def test_large_files_come_in_batches(tmp_path, monkeypatch):
    from memo.view import app
    from memo.view import server as view_server
    monkeypatch.setattr(view_server, "BATCH", 7)
    path = tmp_path / "r.jsonl"
    write(path, 0, 20)
    page = app(path)
    got, start = [], 0
    while True:
        answer = asgi_get(page, f"/api/records?gen=0&from={start}").json()
        got += answer["records"]
        start += len(answer["records"])
        if start >= answer["total"]:
            break
    assert len(got) == 20 and [r["seed"] for r in got] == [record(i)["seed"] for i in range(20)]
    spec = asgi_get(page, "/api/spec?x=lr&y=loss&color=opt&width=300").json()
    assert spec["data"] == {"name": "records"} and spec["width"] == 300
    assert asgi_get(page, "/api/spec?x=lr&y=nope").status_code == 400


def test_without_a_token_only_loopback_host_names_are_answered(tmp_path):
    from memo.view import app
    path = tmp_path / "r.jsonl"
    write(path, 0, 3)
    for host, code in (("127.0.0.1:8050", 200), ("localhost:8050", 200), ("[::1]:8050", 200),
                       ("evil.example:8050", 403), ("evil.example", 403)):
        assert asgi_get(app(path), "/api/records", f"http://{host}").status_code == code, host
    page = app(path, allowed_hosts=["box.lan"])
    assert asgi_get(page, "/api/records", "http://box.lan:1").status_code == 200


def test_access_rules_follow_memo_serve(tmp_path):
    from memo.exceptions import MemoError
    from memo.view import app
    from memo.view.server import AccessError, check_access
    assert check_access("127.0.0.1", None, False) is None
    assert check_access("::1", None, False) is None
    assert check_access("0.0.0.0", "t", False) is None
    with pytest.raises(AccessError, match="--host 0.0.0.0 without a token"):
        check_access("0.0.0.0", None, False)
    assert "WARNING" in (check_access("0.0.0.0", None, True) or "")
    with pytest.raises(AccessError, match="the token is empty") as info:
        check_access("127.0.0.1", "", False)
    assert isinstance(info.value, MemoError)
    with pytest.raises(AccessError, match="empty"):
        app(tmp_path / "r.jsonl", token="")
    for args in (["--token", ""], ["--host", "0.0.0.0"]):
        done = subprocess.run([sys.executable, "-m", "memo", "view", str(tmp_path / "r.jsonl"),
                               "--port", "0", *args], env=env(MEMO_TOKEN=None), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.startswith("memo view: "), done.stderr
    assert "--insecure-no-token" in done.stderr  # the flag memo serve names the same way
    for args in (["--port", "99999"], ["--port", "x"]):  # checked as memo serve checks it
        done = subprocess.run([sys.executable, "-m", "memo", "view", str(tmp_path / "r.jsonl"),
                               *args], env=env(MEMO_TOKEN=None), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and "a port from 0 to 65535" in done.stderr, done.stderr


def test_status_counts_the_plan_where_memo_status_knows_it(tmp_path):
    status = pytest.importorskip("memo.status")  # the sweep's plan: memo.plan and memo status
    import memo
    from memo.view import app
    path = tmp_path / "r.jsonl"
    settings = memo.grid(x=range(10), y=[1, 2])
    memo.plan(path, settings)

    @memo.memfile(path)
    @memo.ignore_error
    def f(x, y):
        if x == 3:
            raise ValueError("three")
        return {"z": x * y}

    for s in settings[:12]:
        f(**s)
    page = app(path)
    want = status.summarize(path).as_dict()
    got = until(lambda: (answer := asgi_get(page, "/api/records").json()["status"])
                .get("planned") is not None and answer, 10, "the sweep's plan in the status")
    assert (got["planned"], got["done"], got["failed"], got["missing"]) == (
        20, 10, 2, 8) == (want["planned"], want["done"], want["failed"], want["missing"])
    assert got["failed_by_type"] == {"ValueError": 2} and got["records"] == 12


def test_follower_reads_a_target_and_its_shards(tmp_path):
    from memo.view.server import Follower
    path = tmp_path / "r.jsonl"
    follower = Follower(path)
    follower.poll()  # nothing there yet: no error
    assert follower.lines == []
    shards = tmp_path / "r.jsonl.shards"
    shards.mkdir()
    write(shards / "a.1.jsonl", 0, 4)
    write(path, 4, 6)
    follower._relist = 0.0
    follower.poll()
    assert len(follower.lines) == 6 and follower.status()["records"] == 6
    write(shards / "b.2.jsonl", 6, 20)
    follower._relist = 0.0
    follower.poll()
    assert sorted(r["seed"] for r in follower.records) == sorted(
        record(i)["seed"] for i in range(20))
    assert follower.status()["failed_by_type"] == {"ValueError": 1}


# ---- a SLURM array writing the file --------------------------------------------------------

@pytest.mark.slurm
@pytest.mark.slow
def test_page_follows_a_slurm_array_while_it_writes(browser, tmp_path, slurm_cluster):
    (tmp_path / "logs").mkdir()
    job = tmp_path / "job.sh"
    job.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        #SBATCH --array=0-3
        #SBATCH --output=logs/%A_%a.out
        #SBATCH --ntasks=1
        #SBATCH --cpus-per-task=1
        cd "$SLURM_SUBMIT_DIR"
        exec {sys.executable} - <<'EOF'
        import os, time
        from memo import memfile
        task = int(os.environ["SLURM_ARRAY_TASK_ID"])

        @memfile("results.jsonl")
        def run(task, step):
            time.sleep(0.4)
            return {{"loss": 1.0 / (1 + step) + task / 10}}

        for step in range(6):
            run(task, step)  # 0.4 s each: the file grows for a few seconds
        EOF
        """))
    path = tmp_path / "results.jsonl"
    job_id = None
    try:
        with Server("view", str(path), "--port", "0") as server:
            # the page is open before the job starts: it sees the file appear and grow
            browser.get(server.url)
            until(lambda: count(browser) == 0 and "live" in browser.find_element(
                "id", "live-text").text, 30, "the page waiting for the file")
            done = subprocess.run(["sbatch", "--parsable", str(job)], cwd=tmp_path,
                                  env=env(MEMO_TOKEN=None), capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            job_id = done.stdout.strip().split(";")[0]
            seen = set()
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                n = count(browser)
                seen.add(n)
                if n == 24:
                    break
                time.sleep(0.1)
            assert 24 in seen, sorted(seen)
            assert len(seen - {0, 24}) >= 2, sorted(seen)  # it grew while the tasks ran
            until(lambda: len(rows(browser)) == 24, 5, "24 rows")
            records = [json.loads(x) for x in path.read_text().splitlines()]
            assert column(browser, "task") == [str(r["task"]) for r in records]
            until(lambda: chart_paths(browser) >= 4, 20, "marks in the chart")
            screenshot(browser, "slurm.png")
    finally:
        if job_id:
            subprocess.run(["scancel", job_id], check=False, timeout=60)

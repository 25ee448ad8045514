"""SPEC 10: sluice-bench itself. `load` against a local origin (the counts
add up, --rate holds the rate, the JSON schema, the HTML report, one
connection per request, errors by kind, exit codes), `idle`, and the
`origin` paths other tests rely on."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from html.parser import HTMLParser

import pytest

import harness

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ERROR_KINDS = ["connect", "timeout", "read", "write", "parse"]
PLOTTED = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100]


@pytest.fixture
def origin(env):
    return env.origin("bench-o")


def run_load(bench_bin, tmp, url, *args, timeout=60):
    """Runs `sluice-bench load URL ARGS --json FILE`; returns (CompletedProcess, parsed JSON or None)."""
    out = os.path.join(tmp, f"load-{time.monotonic_ns()}.json")
    proc = subprocess.run([bench_bin, "load", url, *args, "--json", out], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    doc = None
    if os.path.exists(out) and os.path.getsize(out) > 0:
        with open(out) as f:
            doc = json.load(f)
    return proc, doc


def connection_number(origin):
    """The origin's X-Origin-Connection for a fresh direct connection (each
    direct request opens one): the number of connections it accepted so far."""
    return int(origin.get("/small").header("X-Origin-Connection"))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------------
# load: counts, rate, schema, report


def test_load_request_count_matches_what_the_origin_served(env, origin):
    before = origin.request_count()  # this direct request is counted too
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/small",
                         "--connections", "8", "--threads", "2", "--duration", "1500ms")
    assert proc.returncode == 0, proc.stderr
    after = origin.request_count()
    served = after - before - 1  # minus the second direct request
    connections = 8
    assert doc["requests"] > 100, doc
    # Requests in flight when the window closed reached the origin but are not
    # counted: at most one per connection in a closed loop.
    assert doc["requests"] <= served <= doc["requests"] + connections, (doc["requests"], served)
    assert doc["status_codes"] == {"200": doc["requests"]}
    assert doc["errors"]["total"] == 0
    assert doc["latency_us"]["count"] == doc["requests"]
    assert doc["connections_opened"] == connections
    # Every byte read is a whole response: the count and the byte total agree.
    assert doc["bytes_read"] >= doc["requests"] * len("HTTP/1.1 200 OK\r\n\r\nhello from bench-o\n")


def _sanitized(binary):
    """Whether `binary` is an AddressSanitizer build (the asan preset): an
    unoptimised, instrumented origin answers only ~2,000 small requests/s."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def test_rate_is_held_within_5_percent(env, origin):
    # 2,000/s as issue 3 asks; under ASan the origin itself tops out near that
    # rate, so the same check runs at 500/s there (the generator's pacing is
    # what is tested, not the origin's speed).
    rate = 500 if _sanitized(env.bench_bin) else 2000
    before = origin.request_count()
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/small",
                         "--rate", str(rate), "--duration", "3s", "--connections", "10")
    assert proc.returncode == 0, proc.stderr
    served = origin.request_count() - before - 1
    assert doc["parameters"]["mode"] == "open"
    assert doc["parameters"]["rate"] == rate
    assert abs(doc["requests_per_s"] - rate) <= rate * 0.05, doc["requests_per_s"]
    assert abs(doc["requests"] - rate * 3) <= rate * 3 * 0.05, doc["requests"]
    assert doc["errors"]["total"] == 0
    assert doc["requests"] <= served <= doc["requests"] + 10


def test_rate_below_capacity_measures_latency_from_intended_send_time(env, origin):
    # /delay/100 takes at least 100 ms, and at 40/s over 2 connections each
    # connection must send every 50 ms: the open loop falls behind schedule
    # and the latency (from the intended send time) keeps growing past 100 ms,
    # where a closed loop would report ~100 ms.
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/delay/100",
                         "--rate", "40", "--duration", "2s", "--connections", "2")
    assert proc.returncode == 0, proc.stderr
    assert doc["latency_us"]["min"] >= 100_000
    assert doc["latency_us"]["max"] >= 300_000, doc["latency_us"]
    assert doc["requests"] <= 2 * 2 * 10 + 2


def test_json_document_has_the_documented_schema(env, origin):
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/small",
                         "--connections", "3", "--threads", "1", "--duration", "500ms",
                         "--header", "X-Bench: yes", "--method", "GET", "--timeout", "5s")
    assert proc.returncode == 0, proc.stderr
    assert set(doc) == {"tool", "version", "started_at", "parameters", "elapsed_s", "requests",
                        "requests_per_s", "bytes_read", "bytes_read_per_s", "bytes_written",
                        "connections_opened", "tls_resumed", "latency_us", "latency_percentiles", "status_codes",
                        "errors"}
    assert doc["tool"] == "sluice-bench"
    assert isinstance(doc["version"], str) and re.match(r"^\d+\.\d+\.\d+", doc["version"])
    assert RFC3339_UTC.match(doc["started_at"]), doc["started_at"]

    p = doc["parameters"]
    assert set(p) == {"url", "method", "connections", "threads", "duration_s", "mode", "rate",
                      "new_connection", "body_size", "headers", "insecure", "tls_resume",
                      "timeout_s"}
    assert p["url"] == f"http://{origin.address}/small"
    assert p["method"] == "GET"
    assert p["connections"] == 3 and is_int(p["connections"])
    assert p["threads"] == 1 and is_int(p["threads"])
    assert isinstance(p["duration_s"], float) and p["duration_s"] == 0.5
    assert p["mode"] == "closed"
    assert p["rate"] is None
    assert p["new_connection"] is False
    assert p["body_size"] == 0 and is_int(p["body_size"])
    assert p["headers"] == ["X-Bench: yes"]
    assert p["insecure"] is False
    assert p["tls_resume"] is False
    assert isinstance(p["timeout_s"], float) and p["timeout_s"] == 5.0

    assert isinstance(doc["elapsed_s"], float) and 0.45 <= doc["elapsed_s"] <= 0.6
    for key in ("requests", "bytes_read", "bytes_written", "connections_opened"):
        assert is_int(doc[key]) and doc[key] > 0, key
    assert doc["tls_resumed"] == 0 and is_int(doc["tls_resumed"])
    for key in ("requests_per_s", "bytes_read_per_s"):
        assert is_number(doc[key]) and doc[key] > 0, key
    assert doc["requests_per_s"] == pytest.approx(doc["requests"] / doc["elapsed_s"], rel=1e-6)

    lat = doc["latency_us"]
    assert set(lat) == {"count", "min", "mean", "stdev", "p50", "p90", "p99", "p99_9", "max"}
    for key in ("count", "min", "p50", "p90", "p99", "p99_9", "max"):
        assert is_int(lat[key]), key
    assert isinstance(lat["mean"], float) and isinstance(lat["stdev"], float)
    assert lat["count"] == doc["requests"]
    assert 1 <= lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]

    percentiles = doc["latency_percentiles"]
    assert [e["percentile"] for e in percentiles] == PLOTTED
    for e in percentiles:
        assert set(e) == {"percentile", "latency_us"}
        assert is_number(e["percentile"]) and is_int(e["latency_us"])
    values = [e["latency_us"] for e in percentiles]
    assert values == sorted(values)
    assert values[-1] == lat["max"]

    assert doc["status_codes"] == {"200": doc["requests"]}
    assert all(isinstance(k, str) and is_int(v) for k, v in doc["status_codes"].items())
    assert set(doc["errors"]) == set(ERROR_KINDS) | {"total"}
    assert all(is_int(v) for v in doc["errors"].values())
    assert doc["errors"]["total"] == sum(doc["errors"][k] for k in ERROR_KINDS) == 0


def test_json_counts_other_statuses(env, origin):
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/status/503",
                         "--connections", "2", "--duration", "300ms")
    assert proc.returncode == 0, proc.stderr
    assert doc["requests"] > 0
    assert doc["status_codes"] == {"503": doc["requests"]}
    assert doc["errors"]["total"] == 0


class _ReportParser(HTMLParser):
    """Collects what the report test checks: tags, attributes, text."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.attrs = []
        self.text = []
        self.stack = []
        self.svg_children = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if "svg" in self.stack:
            self.svg_children.append((tag, dict(attrs)))
        if tag not in ("meta", "br", "img", "input", "link", "hr"):
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if "svg" in self.stack:
            self.svg_children.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_is_self_contained_with_an_svg_plot(env, origin):
    report = os.path.join(env.tmp, "report.html")
    url = f"http://{origin.address}/small"
    proc, doc = run_load(env.bench_bin, env.tmp, url, "--connections", "4", "--duration", "700ms",
                         "--report", report)
    assert proc.returncode == 0, proc.stderr
    with open(report, encoding="utf-8") as f:
        html = f.read()
    assert html.lstrip().lower().startswith("<!doctype html>")

    parsed = _ReportParser()
    parsed.feed(html)
    parsed.close()
    assert "svg" in parsed.tags, "no inline <svg>"
    svg = dict(parsed.attrs)["svg"]
    width, height = float(svg["width"]), float(svg["height"])

    # The latency curve: a polyline (or path) with many points, all inside the picture.
    curves = [(t, a) for t, a in parsed.svg_children if t in ("polyline", "path")]
    assert curves, "no polyline or path in the svg"
    points = []
    for tag, a in curves:
        raw = a.get("points") if tag == "polyline" else a.get("d")
        points += [tuple(map(float, m)) for m in re.findall(r"(-?[\d.]+)[ ,](-?[\d.]+)", raw or "")]
    assert len(points) >= 10, points
    for x, y in points:
        assert 0 <= x <= width and 0 <= y <= height, (x, y)
    xs = [x for x, _ in points]
    assert max(xs) - min(xs) > width / 2, "the curve does not span the percentile axis"

    # Self-contained: no scripts, no stylesheets or images fetched from anywhere.
    assert "script" not in parsed.tags
    assert "link" not in parsed.tags
    for tag, a in parsed.attrs:
        for name in ("src", "href", "xlink:href"):
            value = a.get(name)
            assert value is None or not re.match(r"^\s*(https?:)?//", value), (tag, name, value)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.I)
    assert "@import" not in html

    # The run's parameters and results are on the page.
    text = " ".join(parsed.text)
    assert url in text
    assert str(doc["requests"]) in text
    assert "99.9" in text


# --------------------------------------------------------------------------
# load: connection modes, errors, exit codes


def test_new_connection_opens_one_connection_per_request(env, origin):
    first = connection_number(origin)
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/small",
                         "--new-connection", "--connections", "4", "--duration", "1s")
    assert proc.returncode == 0, proc.stderr
    assert doc["parameters"]["new_connection"] is True
    assert doc["errors"]["total"] == 0
    assert doc["requests"] > 50
    # Connections still being opened when the window closed are not requests.
    assert doc["requests"] <= doc["connections_opened"] <= doc["requests"] + 4
    # The origin accepted every connection the load opened, and at most the
    # few that were still connecting when the window closed. It may still be
    # accepting the last ones, so poll; each poll is a connection of its own.
    opened = doc["connections_opened"]
    polls = 0

    def accepted_from_load():
        nonlocal polls
        polls += 1
        return connection_number(origin) - first - polls

    harness.wait_until(lambda: accepted_from_load() >= opened, 5,
                       message="the origin accepting every connection the load opened")
    assert opened <= accepted_from_load() <= opened + 4


def test_keep_alive_reuses_connections(env, origin):
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/small",
                         "--connections", "5", "--duration", "500ms")
    assert proc.returncode == 0, proc.stderr
    assert doc["connections_opened"] == 5
    assert doc["requests"] > 5 * 10


def test_request_body_and_method_reach_the_origin(env, origin):
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/echo",
                         "--method", "POST", "--body-size", "4k", "--connections", "2",
                         "--duration", "300ms")
    assert proc.returncode == 0, proc.stderr
    assert doc["errors"]["total"] == 0
    assert doc["status_codes"] == {"200": doc["requests"]}
    # Each echoed response carries the 4096-byte body back.
    assert doc["bytes_read"] >= doc["requests"] * 4096
    assert doc["bytes_written"] >= doc["requests"] * 4096


def test_nothing_listening_counts_connect_errors(env):
    port = harness.free_port()
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://127.0.0.1:{port}/",
                         "--connections", "2", "--duration", "300ms")
    # A run with errors is still a run: exit 0, errors reported by kind.
    assert proc.returncode == 0, proc.stderr
    assert doc["requests"] == 0
    assert doc["errors"]["connect"] > 0
    assert doc["errors"]["total"] == doc["errors"]["connect"]
    assert doc["status_codes"] == {}
    assert "connect" in proc.stdout.decode()


def test_slow_responses_count_timeout_errors(env, origin):
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://{origin.address}/delay/5000",
                         "--connections", "2", "--duration", "1s", "--timeout", "200ms")
    assert proc.returncode == 0, proc.stderr
    assert doc["requests"] == 0
    assert doc["errors"]["timeout"] >= 2
    assert doc["errors"]["total"] == doc["errors"]["timeout"]


class RawServer:
    """A listener on 127.0.0.1 that answers every request with `reply` (bytes,
    or None to close without answering), for the error kinds an origin never
    produces. Stopped by close()."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((harness.LOOPBACK, 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    conn.recv(65536)
                    if self.reply is not None:
                        conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def make(reply):
        s = RawServer(reply)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_invalid_responses_count_parse_errors(env, raw_server):
    server = raw_server(b"SSH-2.0-not-http\r\n\r\n")
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://127.0.0.1:{server.port}/",
                         "--connections", "1", "--duration", "300ms")
    assert proc.returncode == 0, proc.stderr
    assert doc["requests"] == 0
    assert doc["errors"]["parse"] > 0
    assert doc["errors"]["total"] == doc["errors"]["parse"]


def test_close_before_the_response_counts_read_errors(env, raw_server):
    server = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
    proc, doc = run_load(env.bench_bin, env.tmp, f"http://127.0.0.1:{server.port}/",
                         "--connections", "1", "--duration", "300ms")
    assert proc.returncode == 0, proc.stderr
    assert doc["requests"] == 0
    assert doc["errors"]["read"] > 0
    assert doc["errors"]["total"] == doc["errors"]["read"]


def test_exit_codes_for_usage_and_unresolvable_hosts(env, tmp_path):
    bad_usage = [
        [],
        ["ftp://127.0.0.1/"],
        ["http://127.0.0.1:1/", "--connections", "0"],
        ["http://127.0.0.1:1/", "--duration", "soon"],
        ["http://127.0.0.1:1/", "--no-such-option"],
        ["http://127.0.0.1:1/", "--new-connection", "--tls-resume"],
        ["https://127.0.0.1:1/", "--tls-resume"],
    ]
    for args in bad_usage:
        proc = subprocess.run([env.bench_bin, "load", *args], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=10)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr, args
    proc = subprocess.run([env.bench_bin, "load", "http://no-such-host.invalid/", "--duration", "200ms"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    proc = subprocess.run([env.bench_bin, "load", "--help"], capture_output=True, timeout=10)
    assert proc.returncode == 0 and b"--rate" in proc.stdout


def test_unwritable_output_file_fails_before_the_run(env, origin):
    proc = subprocess.run([env.bench_bin, "load", f"http://{origin.address}/small", "--duration", "10s",
                           "--json", os.path.join(env.tmp, "no-such-dir", "out.json")],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
    assert proc.returncode == 1
    assert b"cannot write" in proc.stderr


# --------------------------------------------------------------------------
# idle


def test_idle_holds_keep_alive_connections(env, origin):
    first = connection_number(origin)
    p = harness.Process([env.bench_bin, "idle", f"http://{origin.address}/small", "--connections", "300",
                         "--hold", "30s", "--concurrency", "16"], env.tmp, "idle")
    try:
        holding = harness.wait_until(
            lambda: next((json.loads(line) for line in p.stdout().splitlines() if '"holding"' in line), None),
            20, message="sluice-bench idle reporting that it holds its connections")
        assert holding["open"] == 300, holding
        assert holding["failed"] == 0
        assert holding["status_codes"] == {"200": 300}
        # The origin accepted exactly those 300 connections (and the probes).
        assert connection_number(origin) - first - 1 == 300
        assert p.running()
        p.signal(signal.SIGTERM)
        assert p.wait(10) == 0
        done = [json.loads(line) for line in p.stdout().splitlines() if '"done"' in line]
        assert done and done[0]["still_open"] == 300, p.stdout()
        assert done[0]["held_s"] < 30
    finally:
        p.stop()


# --------------------------------------------------------------------------
# origin paths


@pytest.mark.parametrize("n", [0, 1, 26, 100_000, 1_048_577])
def test_origin_bytes_has_exact_length_and_pattern(origin, n):
    r = harness.http_get(origin.port, f"/bytes/{n}", timeout=10)
    assert r.status == 200
    assert r.header("Content-Length") == str(n)
    assert len(r.body) == n
    expected = bytes(ord("a") + i % 26 for i in range(min(n, 10_000)))
    assert r.body[:10_000] == expected
    if n > 26:
        assert r.body[-1] == ord("a") + (n - 1) % 26


@pytest.mark.parametrize("code", [200, 201, 404, 418, 503, 599])
def test_origin_status_answers_that_status(origin, code):
    r = origin.get(f"/status/{code}")
    assert r.status == code
    assert r.body == f"status {code}\n".encode()


@pytest.mark.parametrize("code", [204, 304])
def test_origin_status_without_body(origin, code):
    with harness.HttpClient(origin.port) as c:
        r = c.get(f"/status/{code}")
        assert r.status == code
        assert r.body == b""
        # The connection is still in step: the next answer is the right one.
        assert c.get("/status/202").status == 202


def test_origin_delay_takes_at_least_that_long(origin):
    start = time.monotonic()
    r = origin.get("/delay/300")
    elapsed = time.monotonic() - start
    assert r.status == 200
    assert r.body == b"delayed 300ms\n"
    assert elapsed >= 0.3


def test_origin_health_toggles(origin):
    assert origin.get("/health").status == 200
    with harness.HttpClient(origin.port) as c:
        assert c.request("POST", "/health/down", body=b"").status == 200
        down = c.get("/health")
        assert (down.status, down.body) == (503, b"down\n")
        assert c.request("POST", "/health/up", body=b"").status == 200
        up = c.get("/health")
        assert (up.status, up.body) == (200, b"ok\n")


def test_origin_echo_chunked_in_chunked_out(origin):
    chunks = [b"x" * 1, os.urandom(1000), b"", os.urandom(70_000), b"end"]
    with harness.HttpClient(origin.port, timeout=10) as c:
        r = c.request_streaming("POST", "/echo", [("Transfer-Encoding", "chunked"),
                                                  ("Content-Type", "application/x-test")],
                                [harness.chunked_body(chunks)])
        assert r.status == 200
        assert r.chunked
        assert r.header("Content-Type") == "application/x-test"
        assert r.body == b"".join(chunks)
        # And with Content-Length the echo keeps it.
        data = os.urandom(5000)
        r2 = c.request("POST", "/echo", body=data)
        assert r2.header("Content-Length") == "5000"
        assert r2.body == data


def test_origin_stamps_name_connection_and_request_count(env):
    o = env.origin("stamp")
    with harness.HttpClient(o.port) as c:
        a = c.get("/small")
        b = c.get("/nope")
    assert a.header("X-Origin") == "stamp" and b.header("X-Origin") == "stamp"
    assert a.body == b"hello from stamp\n"
    assert b.status == 404
    assert a.header("X-Origin-Connection") == b.header("X-Origin-Connection")
    assert int(b.header("X-Origin-Request-Count")) == int(a.header("X-Origin-Request-Count")) + 1


def test_origin_headers_reports_the_request(origin):
    r = origin.get("/headers?q=1", headers=[("X-Mixed-Case", "v1")])
    doc = r.json()
    assert doc["method"] == "GET"
    assert doc["target"] == "/headers?q=1"
    assert doc["version"] == "1.1"
    assert ["X-Mixed-Case", "v1"] in doc["headers"]
    assert doc["peer"].startswith("127.0.0.1:")

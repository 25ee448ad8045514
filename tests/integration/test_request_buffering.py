"""SPEC 2 `request_buffering: true` on an upstream: a chunked request body is
buffered (up to limits.max_body_bytes, or 64 MiB when that is 0; in memory,
spilling to a temp file past 1 MiB) and sent with Content-Length, for WSGI
backends that read no chunked bodies. Checked against a raw origin that
reports the framing it received, and against a real Gunicorn (Debian's
`gunicorn` package) running tests/integration/wsgi_app.py, which like
Django reads CONTENT_LENGTH bytes and nothing else. Also SPEC 4's rule for a
pooled connection the origin had closed: Gunicorn's sync workers close
after every response, and that must never show as an error."""

import hashlib
import importlib.util
import os
import sys

import pytest

import harness
from harness import RawOrigin, assert_proxy_error, body_report, build_request

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1024 * 1024
RSS_BUDGET_KIB = 16 * 1024


@pytest.fixture
def raw(env):
    o = RawOrigin(lambda conn: harness.serve_http(conn, body_report))
    env.origins.append(o)
    return o


def buffered_proxy(env, origins, **overrides):
    return env.proxy(origins, upstream_extra={"request_buffering": True}, **overrides)


def chunked_wire(data, sizes):
    """Request body bytes in chunked framing, cycling through `sizes`."""
    out = []
    off = 0
    i = 0
    while off < len(data):
        n = sizes[i % len(sizes)]
        piece = data[off:off + n]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        off += n
        i += 1
    out.append(b"0\r\n\r\n")
    return out


def post_chunked(env, proxy, target, data, sizes=(65536, 1000, 7, 300000), timeout=30):
    c = env.client(proxy, timeout=timeout)
    r = c.request_streaming("POST", target, [("Transfer-Encoding", "chunked"),
                                             ("Content-Type", "application/octet-stream")],
                            chunked_wire(data, list(sizes)), timeout=timeout)
    return c, r


# -- against a raw origin that reports what it received


def test_chunked_upload_reaches_the_origin_with_content_length(env, raw):
    proxy = buffered_proxy(env, [raw])
    data = os.urandom(3 * MiB)
    c, r = post_chunked(env, proxy, "/upload", data)
    assert r.status == 200, r
    doc = r.json()
    assert doc["content_length"] == str(len(data)), doc
    assert doc["transfer_encoding"] is None, doc
    assert doc["bytes"] == len(data), doc
    assert doc["sha256"] == hashlib.sha256(data).hexdigest(), doc
    req = raw.requests[0]
    assert req.headers.get_all("Content-Length") == [str(len(data))], req
    assert "transfer-encoding" not in req.headers.names(), req
    assert r.header("X-Request-ID") == req.headers.get("X-Request-ID"), (r, req)
    # The client connection is still usable.
    r2 = c.request("POST", "/again", body=b"small")
    assert r2.status == 200 and r2.json()["bytes"] == 5, r2


def test_small_chunked_upload_and_empty_chunked_body(env, raw):
    # Below the 1 MiB spill threshold (kept in memory), and no body at all.
    proxy = buffered_proxy(env, [raw])
    c, r = post_chunked(env, proxy, "/small", b"hello, buffered world", sizes=(5,))
    assert r.status == 200, r
    assert r.json()["content_length"] == "21" and r.json()["transfer_encoding"] is None, r
    assert r.json()["sha256"] == hashlib.sha256(b"hello, buffered world").hexdigest()
    r = c.request("POST", "/empty", [("Transfer-Encoding", "chunked")], b"0\r\n\r\n")
    assert r.status == 200, r
    assert r.json()["content_length"] == "0" and r.json()["transfer_encoding"] is None, r
    assert r.json()["bytes"] == 0


def test_content_length_upload_passes_unchanged(env, raw):
    proxy = buffered_proxy(env, [raw])
    data = os.urandom(2 * MiB)
    c = env.client(proxy, timeout=30)
    r = c.request_streaming("POST", "/cl", [("Content-Length", str(len(data)))],
                            [data[i:i + 65536] for i in range(0, len(data), 65536)], timeout=30)
    assert r.status == 200, r
    assert r.json()["content_length"] == str(len(data)) and r.json()["bytes"] == len(data), r
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_without_request_buffering_the_body_stays_chunked(env, raw):
    # The default streams: the origin gets the chunked body as it arrives.
    proxy = env.proxy([raw])
    data = os.urandom(100000)
    c, r = post_chunked(env, proxy, "/upload", data)
    assert r.status == 200, r
    doc = r.json()
    assert doc["transfer_encoding"] == "chunked" and doc["content_length"] is None, doc
    assert doc["bytes"] == len(data) and doc["sha256"] == hashlib.sha256(data).hexdigest(), doc


def test_buffered_32_mib_upload_keeps_memory_bounded(env, raw):
    proxy = buffered_proxy(env, [raw])
    c0 = env.client(proxy)
    assert c0.request("POST", "/warm", [("Transfer-Encoding", "chunked")],
                      harness.chunked_body([os.urandom(2 * MiB)])).status == 200
    c0.close()
    baseline = harness.peak_rss_kib(proxy.pid)
    block = os.urandom(MiB)
    data_len = 32 * MiB
    wire = [b"%x\r\n" % len(block) + block + b"\r\n"] * 32 + [b"0\r\n\r\n"]
    c = env.client(proxy, timeout=50)
    r = c.request_streaming("POST", "/big", [("Transfer-Encoding", "chunked")], wire, timeout=50)
    assert r.status == 200, r
    doc = r.json()
    expected = hashlib.sha256()
    for _ in range(32):
        expected.update(block)
    assert doc["content_length"] == str(data_len) and doc["transfer_encoding"] is None, doc
    assert doc["bytes"] == data_len and doc["sha256"] == expected.hexdigest(), doc
    grown = harness.peak_rss_kib(proxy.pid) - baseline
    assert grown < RSS_BUDGET_KIB, f"peak RSS grew by {grown} KiB buffering a 32 MiB body (spill past 1 MiB)"


def test_buffered_body_over_max_body_bytes_is_413_and_never_forwarded(env, raw):
    proxy = buffered_proxy(env, [raw], limits={"max_body_bytes": "1MiB"})
    c = env.client(proxy, timeout=10)
    data = os.urandom(2 * MiB)
    c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")]))
    sender = c.send_background(chunked_wire(data, [65536]))
    r = c.read_response(timeout=10)
    sender.stop()
    assert_proxy_error(r, 413)
    how, _ = c.wait_closed(3)
    assert how in ("eof", "reset"), "connection still open after the 413"
    assert raw.requests == [], "a request whose body was over the limit reached the origin"


def test_buffered_body_over_the_64_mib_default_cap_is_413(env, raw):
    # max_body_bytes 0 (unlimited for streamed bodies) caps a buffered body at 64 MiB.
    proxy = buffered_proxy(env, [raw])
    block = os.urandom(MiB)
    c = env.client(proxy, timeout=30)
    c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")]))
    sender = c.send_background([b"%x\r\n" % len(block) + block + b"\r\n"] * 65 + [b"0\r\n\r\n"])
    r = c.read_response(timeout=30)
    sender.stop()
    assert_proxy_error(r, 413)
    assert raw.requests == [], "a request whose buffered body was over 64 MiB reached the origin"
    # A body of exactly 64 MiB is accepted.
    wire = [b"%x\r\n" % len(block) + block + b"\r\n"] * 64 + [b"0\r\n\r\n"]
    c2 = env.client(proxy, timeout=40)
    r = c2.request_streaming("POST", "/upload", [("Transfer-Encoding", "chunked")], wire, timeout=40)
    assert r.status == 200 and r.json()["bytes"] == 64 * MiB, r


# -- against a real Gunicorn


def gunicorn_available():
    return importlib.util.find_spec("gunicorn") is not None


needs_gunicorn = pytest.mark.skipif(not gunicorn_available(),
                                    reason="gunicorn is not installed (Debian package `gunicorn`)")


@pytest.fixture
def gunicorn(env):
    port = harness.free_port()
    argv = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--chdir", HERE, "--graceful-timeout", "1",
            "--timeout", "30", "--worker-tmp-dir", env.tmp, "wsgi_app:app"]
    p = harness.Process(argv, env.tmp, "gunicorn")
    p.name = "gunicorn"
    p.port = port
    p.address = f"127.0.0.1:{port}"
    env.origins.append(p)

    def ready():
        if not p.running():
            raise RuntimeError(f"gunicorn exited with {p.proc.returncode}\n{p.output_tail()}")
        return harness.http_get(port, "/ready", timeout=1.0).status == 200

    harness.wait_until(ready, 20, interval=0.05, message="gunicorn answering on its port")
    return p


@needs_gunicorn
def test_gunicorn_reads_no_chunked_body_directly(env, gunicorn):
    # Why request_buffering exists: straight to Gunicorn, a chunked body is
    # lost to an app that reads CONTENT_LENGTH (Django does).
    c = env.client(gunicorn.port)
    r = c.request("POST", "/direct", [("Transfer-Encoding", "chunked")], harness.chunked_body([b"lost" * 100]))
    assert r.status == 200, r
    assert r.json()["content_length"] is None and r.json()["bytes"] == 0, r


@needs_gunicorn
def test_gunicorn_gets_a_chunked_upload_whole_with_request_buffering(env, gunicorn):
    proxy = buffered_proxy(env, [gunicorn])
    data = os.urandom(3 * MiB + 12345)
    c, r = post_chunked(env, proxy, "/upload", data)
    assert r.status == 200, r
    doc = r.json()
    assert doc["method"] == "POST" and doc["path"] == "/upload", doc
    assert doc["content_length"] == str(len(data)), doc
    assert doc["transfer_encoding"] is None, doc
    assert doc["bytes"] == len(data), doc
    assert doc["sha256"] == hashlib.sha256(data).hexdigest(), doc


@needs_gunicorn
def test_50_sequential_requests_to_gunicorn_all_succeed(env, gunicorn):
    # Gunicorn's sync workers close the connection after every response;
    # none of that may reach the client as a 502.
    proxy = buffered_proxy(env, [gunicorn])
    c = env.client(proxy)
    statuses = []
    for i in range(50):
        r = c.get(f"/seq?i={i}")
        statuses.append(r.status)
        assert r.status == 200, (i, r)
        assert r.json()["query"] == f"i={i}", r
    assert statuses == [200] * 50


@needs_gunicorn
def test_50_sequential_uploads_to_gunicorn_all_succeed(env, gunicorn):
    # Non-idempotent requests with bodies cannot be retried: the proxy must
    # simply never send them on a connection Gunicorn has closed.
    proxy = buffered_proxy(env, [gunicorn])
    c = env.client(proxy)
    for i in range(50):
        data = os.urandom(1000 + i)
        if i % 2:
            r = c.request("POST", f"/up?i={i}", body=data)
        else:
            r = c.request("POST", f"/up?i={i}", [("Transfer-Encoding", "chunked")],
                          harness.chunked_body([data[:500], data[500:]]))
        assert r.status == 200, (i, r)
        doc = r.json()
        assert doc["bytes"] == len(data) and doc["sha256"] == hashlib.sha256(data).hexdigest(), (i, doc)

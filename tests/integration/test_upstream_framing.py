"""SPEC 3: the framing rules for requests apply to upstream responses: a
malformed response is answered 502 (with the request ID) and that upstream
connection is never reused. An origin that dies mid-body closes the client
connection (no hang, no silently short body). An origin that answers early
without reading the request body gets its answer to the client at once.

The origin here is a raw Python server (harness.RawOrigin) that counts the
connections it accepts and stamps X-Raw-Connection on its good responses, so
a reused connection shows."""

import hashlib
import os
import socket
import threading
import time

import pytest

import harness
from harness import ConnectionClosed, RawOrigin, assert_proxy_error, http_response

MALFORMED = {
    "content_length_and_transfer_encoding":
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "transfer_encoding_and_content_length":
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "differing_content_lengths":
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "differing_content_length_list":
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "invalid_content_length":
        b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
    "invalid_chunk_size":
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "obs_fold":
        b"HTTP/1.1 200 OK\r\nX-Folded: first\r\n second\r\nContent-Length: 2\r\n\r\nok",
    "whitespace_before_colon":
        b"HTTP/1.1 200 OK\r\nX-Foo : bar\r\nContent-Length: 2\r\n\r\nok",
    "whitespace_before_colon_content_length":
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "status_not_a_number":
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
    "status_line_without_version":
        b"200 OK\r\nContent-Length: 2\r\n\r\nok",
    "status_line_http_2":
        b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "status_line_garbage":
        b"ICY 200 OK\r\nContent-Length: 2\r\n\r\nok",
    # 121 fields: more than the proxy forwards (it may add eight of its own).
    "fields_over_120":
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-F-%03d: %d\r\n" % (i, i) for i in range(120))
        + b"Content-Length: 2\r\n\r\nok",
    # A header section that never ends: 100 KiB of fields and no empty line.
    "header_section_over_64_kib":
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"a" * 88) for i in range(1000)),
}


def framing_handler(conn):
    """GET /ok: 200 with X-Raw-Connection; GET /bad/CASE: MALFORMED[CASE],
    then the connection stays open for more requests (a proxy that pooled it
    would send its next request here)."""

    def respond(conn, req):
        if req.target.startswith("/bad/"):
            return MALFORMED[req.target[len("/bad/"):]]
        if req.target == "/many":  # 119 fields + Content-Length: 120, the most the proxy forwards
            return (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-F-%03d: %d\r\n" % (i, i) for i in range(119))
                    + b"Content-Length: 2\r\n\r\nok")
        return http_response(200, b"ok\n", {"X-Raw-Connection": str(conn.id)})

    harness.serve_http(conn, respond)


@pytest.fixture
def raw(env):
    o = RawOrigin(framing_handler)
    env.origins.append(o)
    return o


def assert_not_reused(env, proxy, raw, bad_conn_id):
    """The proxy closed the connection the bad response came on, and the next
    request goes over a new one."""
    conn = raw.conns[bad_conn_id - 1]
    assert conn.ended.wait(5), f"the proxy kept upstream connection {bad_conn_id} open after a bad response"
    assert conn.eof, "the upstream connection ended without the proxy closing it"
    r = env.client(proxy).get("/ok")
    assert r.status == 200 and r.body == b"ok\n", r
    assert r.header("X-Raw-Connection") != str(bad_conn_id), "the bad upstream connection was reused"
    assert raw.accepted == bad_conn_id + 1, raw.accepted


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_response_is_502_and_the_connection_is_not_reused(env, raw, case):
    proxy = env.proxy([raw], timeouts={"upstream_response": "5s"})
    # A good exchange first, so a pooled connection exists to be (wrongly) reused.
    c = env.client(proxy)
    r0 = c.get("/ok")
    assert r0.status == 200 and r0.header("X-Raw-Connection") == "1", r0
    r = c.get(f"/bad/{case}", timeout=8)
    rid = assert_proxy_error(r, 502)
    assert "malformed" in r.text(), r
    bad = raw.requests_to("/bad/")
    assert len(bad) == 1, bad
    assert bad[0].headers.get("X-Request-ID") == rid, bad[0]
    rec = proxy.wait_access_record(rid)
    assert rec["status"] == 502, rec
    assert_not_reused(env, proxy, raw, bad[0].conn_id)


def test_response_with_120_fields_is_relayed_whole(env, raw):
    proxy = env.proxy([raw])
    r = env.client(proxy).get("/many")
    assert r.status == 200 and r.body == b"ok", r
    for i in range(119):
        assert r.header(f"X-F-{i:03d}") == str(i), (i, r)


def test_invalid_chunk_size_after_a_relayed_chunk_closes_the_client_connection(env):
    # The response head and a first chunk already went to the client when
    # the bad chunk size arrives: the only honest signal left is closing.
    relayed = threading.Event()

    def handler(conn):
        req = conn.read_request_head()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        if not relayed.wait(10):
            return
        conn.send(b"zz\r\nworld\r\n0\r\n\r\n")
        conn.wait_eof(30)

    raw = RawOrigin(handler)
    env.origins.append(raw)
    proxy = env.proxy([raw], timeouts={"upstream_response": "5s"})
    c = env.client(proxy)
    c.send(harness.build_request("GET", "/stream"))
    deadline = time.monotonic() + 5
    _, status, _, headers = c._read_head(deadline)
    assert status == 200, (status, headers)
    assert c._read_line(deadline) == b"5"
    chunk = bytearray()
    c._read_exact(7, deadline, chunk.extend)
    assert chunk == b"hello\r\n"
    relayed.set()
    with pytest.raises(ConnectionClosed):
        # Whatever the proxy forwards, a complete chunked body must not be it.
        while True:
            size = int(c._read_line(deadline).split(b";")[0], 16)
            c._read_exact(size + 2, deadline, lambda b: None)
            if size == 0:
                break
    how, _ = c.wait_closed(3)
    assert how in ("eof", "reset")
    assert raw.conns[0].ended.wait(5), "the proxy kept the broken upstream connection"


@pytest.mark.parametrize("framing", ["content_length", "chunked"])
def test_origin_closing_mid_body_closes_the_client_connection(env, framing):
    def handler(conn):
        while True:
            req = conn.read_request_head()
            if req is None:
                return
            if req.target == "/ok":
                conn.send(http_response(200, b"ok\n", {"X-Raw-Connection": str(conn.id)}))
                continue
            if framing == "content_length":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            else:
                conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
            conn.sock.shutdown(socket.SHUT_RDWR)
            return

    raw = RawOrigin(handler)
    env.origins.append(raw)
    proxy = env.proxy([raw], timeouts={"upstream_response": "10s"})
    c = env.client(proxy, timeout=5)
    t0 = time.monotonic()
    try:
        r = c.get("/cut", timeout=5)
    except ConnectionClosed:
        pass  # the head (and the 10 bytes) were relayed, then the connection closed
    else:
        # Only acceptable if the proxy answered before relaying anything.
        assert_proxy_error(r, 502)
    how, data = c.wait_closed(3)
    assert how in ("eof", "reset"), "the client connection stayed open after a cut-short response"
    assert data == b"", data
    assert time.monotonic() - t0 < 5
    # The proxy carries on, on a new upstream connection.
    r = env.client(proxy).get("/ok")
    assert r.status == 200 and r.header("X-Raw-Connection") == "2", r


@pytest.mark.parametrize("framing", ["content_length", "chunked"])
def test_origin_closing_right_after_a_head_that_promised_a_body_is_a_502(env, framing):
    # The head and the origin's FIN come in one segment (TCP_CORK holds the
    # head until shutdown adds the FIN to it), so the proxy finds the end of
    # the stream behind the head before anything has gone to the client: an
    # honest 502, not a 200 cut short.
    def handler(conn):
        req = conn.read_request_head()
        if req is None:
            return
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        if framing == "content_length":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else:
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sock.shutdown(socket.SHUT_WR)
        conn.wait_eof(10)

    raw = RawOrigin(handler)
    env.origins.append(raw)
    proxy = env.proxy([raw], timeouts={"upstream_response": "10s"})
    r = env.client(proxy, timeout=5).get("/cut", timeout=5)
    rid = assert_proxy_error(r, 502)
    rec = proxy.wait_access_record(rid)
    assert rec["status"] == 502, rec


@pytest.mark.parametrize("connection_close", [True, False], ids=["connection_close", "keep_alive"])
def test_early_response_without_reading_the_body_reaches_the_client_at_once(env, connection_close):
    # The origin answers 413 to an 8 MiB upload as soon as it has the head,
    # and never reads the body. The client, uploading slowly, must get the
    # 413 within a few seconds, not after the upload or a timeout; and the
    # connection with an unread body in it must not go back to the pool.
    def handler(conn):
        while True:
            req = conn.read_request_head()
            if req is None:
                return
            if req.target == "/ok":
                conn.send(http_response(200, b"ok\n", {"X-Raw-Connection": str(conn.id)}))
                continue
            headers = {"Content-Type": "text/plain"}
            if connection_close:
                headers["Connection"] = "close"
            conn.send(http_response(413, b"too large for this origin\n", headers))
            conn.origin.stopped.wait(30)  # holds the connection, reads nothing
            return

    raw = RawOrigin(handler)
    env.origins.append(raw)
    proxy = env.proxy([raw])
    total = 8 * 1024 * 1024
    c = env.client(proxy, timeout=10)
    c.send(harness.build_request("POST", "/upload", [("Content-Length", str(total)),
                                                     ("Content-Type", "application/octet-stream")]))
    t0 = time.monotonic()
    # A slow client: 64 KiB every 50 ms, about 6.4 s for the whole body.
    sender = c.send_background([b"u" * 65536] * (total // 65536), pace=0.05)
    try:
        r = c.read_response(timeout=4)
    finally:
        elapsed = time.monotonic() - t0
        sender.stop()
        sender.join(5)
    assert r.status == 413 and r.body == b"too large for this origin\n", r
    assert r.header("X-Request-ID"), r
    assert elapsed < 3.0, f"the 413 arrived after {elapsed:.2f}s"
    assert not sender.finished, "the 413 came only after the whole body was sent"

    # The connection the 413 came on is not reused: the next request goes
    # over a new upstream connection, and the proxy lets go of the old one.
    r2 = env.client(proxy).get("/ok")
    assert r2.status == 200, r2
    assert r2.header("X-Raw-Connection") == "2", r2
    harness.wait_until(
        lambda: len([s for s in harness.proc_tcp_peers(proxy.pid) if s[1] == raw.port]) <= 1, 5,
        message="the proxy to close the upstream connection with the unread body")


def test_early_response_head_while_the_origin_still_reads_the_body(env):
    # The counterpart of the test above: an origin that sends its response
    # head at once and then reads the whole body (streaming servers do) must
    # get all of it; an early head is no reason to stop relaying the upload.
    def handler(conn):
        while True:
            req = conn.read_request_head()
            if req is None:
                return
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")
            conn.read_body(req, timeout=30)
            summary = f"{req.body_bytes} {req.sha256}\n".encode()
            conn.send(b"%x\r\n" % len(summary) + summary + b"\r\n0\r\n\r\n")

    raw = RawOrigin(handler)
    env.origins.append(raw)
    proxy = env.proxy([raw])
    block = os.urandom(1024 * 1024)
    total = 16 * len(block)
    expected = hashlib.sha256(block * 16).hexdigest()
    c = env.client(proxy, timeout=30)
    c.send(harness.build_request("POST", "/stream-in", [("Content-Length", str(total))]))
    sender = c.send_background([block] * 16)
    r = c.read_response(timeout=30)
    assert sender.join(5) and sender.finished, sender.error
    assert r.status == 200, r
    assert r.body == f"{total} {expected}\n".encode(), r
    # A complete exchange: the connection is reused for the next request.
    r2 = c.request("POST", "/stream-in", body=b"again")
    assert r2.status == 200 and r2.body == f"5 {hashlib.sha256(b'again').hexdigest()}\n".encode(), r2
    assert raw.accepted == 1


@pytest.mark.parametrize("framing", ["content_length", "chunked"])
def test_a_head_whose_body_is_not_there_yet_is_relayed_at_once(env, framing):
    # The proxy looks for body bytes behind a response head so that both
    # leave in one write; a body that has not come yet must not hold the
    # head back. The origin sends the body only once the client has the
    # head (up to 5 s): a proxy that waited for it would stall both.
    client_has_head = threading.Event()
    body = b"x" * 100_000

    def handler(conn):
        while True:
            req = conn.read_request_head()
            if req is None:
                return
            if framing == "content_length":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                client_has_head.wait(5)
                conn.send(body)
            else:
                conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                client_has_head.wait(5)
                conn.send(b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")

    raw = RawOrigin(handler)
    env.origins.append(raw)
    proxy = env.proxy([raw])
    c = env.client(proxy, timeout=10)
    c.send(b"GET /later HTTP/1.1\r\nHost: a\r\n\r\n")
    t0 = time.monotonic()
    try:
        while b"\r\n\r\n" not in c.buf and c._fill(t0 + 3):
            pass
    except TimeoutError:
        pass
    took = time.monotonic() - t0
    assert b"\r\n\r\n" in c.buf, f"no response head {took:.2f} s after the origin sent it"
    assert took < 2, took
    client_has_head.set()
    r = c.read_response(timeout=10)
    assert r.status == 200 and r.body == body, r


def test_stray_body_after_a_head_answer_is_not_read_as_the_next_answer(env):
    # A careless origin answers HEAD with its body anyway, in a later
    # segment, once sluice has relayed the (bodiless) answer and pooled the
    # connection. The next request, well within the pool's 100 ms before it
    # watches the connection, must not take those bytes as its answer:
    # sluice peeks before reusing a connection whose last answer had no body.
    stray_sent = threading.Event()
    send_stray = threading.Event()

    def handler(conn):
        while True:
            req = conn.read_request_head()
            if req is None:
                return
            body = f"body of {req.method} {req.target} on {conn.id}\n".encode()
            if req.method == "HEAD":
                conn.send(http_response(200, b"", {"Content-Length": str(len(body))}))
                if send_stray.wait(10):
                    conn.send(body)
                    stray_sent.set()
                continue
            conn.send(http_response(200, body, {"X-Raw-Connection": str(conn.id)}))

    raw = RawOrigin(handler)
    env.origins.append(raw)
    proxy = env.proxy([raw], workers=1)
    c = env.client(proxy)
    head = c.request("HEAD", "/thing")
    assert head.status == 200 and head.body == b"", head
    send_stray.set()
    assert stray_sent.wait(5)
    got = c.get("/next")
    assert got.status == 200, got
    assert got.body == b"body of GET /next on 2\n", got.body
    assert got.header("X-Raw-Connection") == "2"
    assert raw.conns[0].ended.wait(5), "the proxy kept the connection with stray bytes"

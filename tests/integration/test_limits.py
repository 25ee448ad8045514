"""SPEC 2 `limits` and `timeouts` against hostile clients: a chunked body
over max_body_bytes found mid-stream, a body that stalls (client_body), a
slowloris head (client_header), max_connections, a request line over
max_header_bytes. Each answer is the proxy's own (status, request ID) and
the client connection is closed; the origin never gets a complete request."""

import hashlib
import os
import select
import time

import pytest

import harness
from harness import RawOrigin, assert_proxy_error, body_report, build_request, chunked_body, http_response


def assert_closed(c, timeout=3.0):
    how, data = c.wait_closed(timeout)
    assert how in ("eof", "reset"), f"connection still open after {timeout}s"
    assert data == b"", f"unexpected bytes after the response: {data[:200]!r}"


@pytest.fixture
def raw(env):
    """Reads each request's whole body, then answers with what it saw; a
    request whose body was cut short is recorded with complete == False."""
    o = RawOrigin(lambda conn: harness.serve_http(conn, body_report))
    env.origins.append(o)
    return o


def assert_no_complete_request(raw, after=0):
    """Every request the origin got past the first `after` ended incomplete."""
    for req in raw.requests[after:]:
        conn = raw.conns[req.conn_id - 1]
        assert conn.ended.wait(5), f"the proxy left the upstream connection of {req!r} open"
        assert not req.complete, f"the origin received a complete request: {req!r}"


# -- max_body_bytes, chunked


def test_chunked_body_at_the_limit_passes(env, raw):
    proxy = env.proxy([raw], limits={"max_body_bytes": "64KiB"})
    data = os.urandom(65536)
    c = env.client(proxy)
    r = c.request_streaming("POST", "/upload", [("Transfer-Encoding", "chunked")],
                            [chunked_body([data[:30000], data[30000:]])])
    assert r.status == 200, r
    doc = r.json()
    assert doc["bytes"] == 65536, doc
    assert doc["sha256"] == hashlib.sha256(data).hexdigest(), doc


def test_chunked_body_over_max_body_bytes_is_413_mid_stream(env, raw):
    proxy = env.proxy([raw], limits={"max_body_bytes": "64KiB"})
    c = env.client(proxy)
    # 16 chunks of 16 KiB (256 KiB): the limit is passed in the fifth chunk,
    # long after the head was forwarded; the terminating chunk is sent too.
    chunks = [os.urandom(16384) for _ in range(16)]
    wire = [build_request("POST", "/upload", [("Transfer-Encoding", "chunked")])]
    wire += [b"%x\r\n" % len(ch) + ch + b"\r\n" for ch in chunks] + [b"0\r\n\r\n"]
    sender = c.send_background(wire, pace=0.01)
    r = c.read_response(timeout=5)
    sender.stop()
    rid = assert_proxy_error(r, 413)
    assert_closed(c)
    rec = proxy.wait_access_record(rid)
    assert rec["status"] == 413, rec
    assert_no_complete_request(raw)
    for req in raw.requests:
        assert req.body_bytes <= 65536, f"the origin got {req.body_bytes} body bytes past the 64 KiB limit"


# -- client_body


@pytest.mark.parametrize("framing", ["content_length", "chunked"])
def test_body_stalling_past_client_body_is_408_and_closed(env, raw, framing):
    proxy = env.proxy([raw], timeouts={"client_body": "300ms"})
    c = env.client(proxy)
    half = os.urandom(50000)
    if framing == "content_length":
        c.send(build_request("POST", "/upload", [("Content-Length", "100000")]) + half)
    else:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")])
               + b"%x\r\n" % len(half) + half + b"\r\n")
    t0 = time.monotonic()
    # ... and nothing more: the client stalls with the body half sent.
    r = c.read_response(timeout=5)
    elapsed = time.monotonic() - t0
    rid = assert_proxy_error(r, 408)
    assert 0.25 <= elapsed < 2.0, f"408 after {elapsed:.3f}s with client_body 300ms"
    assert_closed(c)
    assert proxy.wait_access_record(rid)["status"] == 408
    assert_no_complete_request(raw)


def test_slow_but_steady_body_is_not_cut_by_client_body(env, raw):
    # client_body is the gap between reads, not a budget for the whole body:
    # 12 pieces 100 ms apart (1.1 s in all) pass with client_body 300ms.
    proxy = env.proxy([raw], timeouts={"client_body": "300ms"})
    c = env.client(proxy)
    pieces = [os.urandom(1000) for _ in range(12)]
    c.send(build_request("POST", "/upload", [("Content-Length", str(12000))]))
    sender = c.send_background(pieces, pace=0.1)
    r = c.read_response(timeout=5)
    assert sender.join(2) and sender.finished
    assert r.status == 200, r
    assert r.json()["bytes"] == 12000
    assert r.json()["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


# -- client_body while the response is written


def test_client_that_stops_reading_the_response_is_closed_after_client_body(env):
    # The response is far larger than the socket buffers, so the proxy's
    # write waits on the client; with no progress for client_body the proxy
    # gives the connection up instead of holding it (and the origin's) open.
    origin = env.origin("o")
    proxy = env.proxy([origin], timeouts={"client_body": "500ms"})
    harness.assert_stalled_reader_given_up(proxy, env.client(proxy, timeout=10), 0.5)


def test_client_that_uploads_but_never_reads_the_echo_is_closed_after_client_body(env):
    # The origin echoes the body as it arrives; the client keeps sending and
    # reads nothing after the head. The proxy's response write waits on the
    # client while its body sender reads from the same client: the reads'
    # own timer must not lift the write's client_body.
    origin = env.origin("o")
    proxy = env.proxy([origin], timeouts={"client_body": "500ms"})
    c = env.client(proxy, timeout=10)
    c.sock.setsockopt(harness.socket.SOL_SOCKET, harness.socket.SO_RCVBUF, 65536)
    # 256 KiB every 20 ms: the proxy's body sender waits on the client
    # between pieces (well within client_body) while the echo fills the
    # client's buffers. 64 MiB, never ended.
    piece = os.urandom(256 * 1024)
    wire = [build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])]
    wire += [b"%x\r\n" % len(piece) + piece + b"\r\n"] * 256
    sender = c.send_background(wire, pace=0.02)
    _, status, _, headers = c._read_head(time.monotonic() + 5)
    assert status == 200
    rec = proxy.wait_access_record(headers.get("X-Request-ID"), timeout=6)
    assert rec["status"] == 200, rec
    how, _ = c.wait_closed(5)
    assert how in ("eof", "reset"), "connection still open after the access record"
    sender.stop()


def test_response_pausing_past_client_body_reaches_a_reading_client_whole(env):
    # client_body bounds each wait on the client, not the gaps in the
    # response: the origin sends 16 MiB (more than the socket buffers take
    # at once, so some of the proxy's writes wait on the client), pauses
    # for over twice client_body, then sends the rest.
    first = b"a" * (16 * 1024 * 1024)
    rest = b"z" * 1000

    def respond(conn):
        req = conn.read_request_head()
        if req is None:
            return
        conn.send(http_response(200, headers={"Content-Length": str(len(first) + len(rest))}) + first)
        time.sleep(2.2)  # the origin's pause: the behaviour under test
        conn.send(rest)
        conn.origin.stopped.wait(10)

    o = RawOrigin(respond)
    env.origins.append(o)
    proxy = env.proxy([o], timeouts={"client_body": "1s"})
    c = env.client(proxy, timeout=10)
    r = c.get("/paused")
    assert r.status == 200, r
    assert len(r.body) == len(first) + len(rest)
    assert r.body[-len(rest):] == rest


# -- client_header (slowloris)


def test_slowloris_one_byte_per_100ms_is_cut_at_client_header(env, raw):
    proxy = env.proxy([raw], timeouts={"client_header": "1s"})
    c = env.client(proxy)
    request = b"GET /small HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    t0 = time.monotonic()
    answered = False
    for i in range(len(request)):
        if time.monotonic() - t0 > 4.0:
            break
        try:
            c.send(request[i:i + 1])
        except OSError:
            answered = True
            break
        # One byte per 100 ms; returns early when the proxy answers.
        readable, _, _ = select.select([c.sock], [], [], 0.1)
        if readable:
            answered = True
            break
    elapsed = time.monotonic() - t0
    assert answered, "no answer to a client sending one header byte per 100 ms after 4s (client_header 1s)"
    assert 0.9 <= elapsed < 2.0, f"slowloris cut after {elapsed:.3f}s with client_header 1s"
    assert_proxy_error(c.read_response(timeout=2), 408)
    assert_closed(c)
    assert raw.accepted == 0, "the proxy connected to the origin for an incomplete head"


# -- max_connections


def test_max_connections_holds_extra_connections_until_one_closes(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], limits={"max_connections": 2})
    c1 = env.client(proxy)
    c2 = env.client(proxy)
    assert c1.get("/small").status == 200
    assert c2.get("/small").status == 200
    # Both stay open and idle. A third connection completes in the kernel's
    # backlog, but its request is not served while two are open...
    c3 = env.client(proxy)
    c3.send(build_request("GET", "/headers?third=1"))
    readable, _, _ = select.select([c3.sock], [], [], 0.5)
    assert not readable, f"the third connection got an answer (or was closed) at max_connections 2: {c3.sock.recv(200)!r}"
    # ... and is once one of the first two closes.
    c1.close()
    r3 = c3.read_response(timeout=5)
    assert r3.status == 200 and r3.json()["target"] == "/headers?third=1", r3
    # The second connection was never disturbed.
    assert c2.get("/small").status == 200
    assert c3.get("/small").status == 200


def test_max_connections_counts_connections_not_requests(env):
    # Many sequential requests on one of two connections are not held back.
    origin = env.origin("o")
    proxy = env.proxy([origin], limits={"max_connections": 2})
    c1 = env.client(proxy)
    c2 = env.client(proxy)
    for i in range(20):
        assert c1.get(f"/headers?i={i}", timeout=2).status == 200
        assert c2.get(f"/headers?j={i}", timeout=2).status == 200


# -- max_header_bytes on the request line


def test_request_line_within_max_header_bytes_passes(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], limits={"max_header_bytes": "4KiB"})
    target = "/headers?q=" + "a" * 3000
    r = env.client(proxy).get(target)
    assert r.status == 200 and r.json()["target"] == target, r


# -- the number of fields: 120 at most, so that with the (at most eight)
# fields the proxy adds, what it forwards still parses at the next hop.


def test_request_with_120_fields_reaches_the_origin_whole(env, raw):
    proxy = env.proxy([raw])
    fields = [(f"X-F-{i:03d}", str(i)) for i in range(119)]  # + Host = 120
    r = env.client(proxy).get("/many", headers=fields)
    assert r.status == 200, r
    got = raw.requests_to("/many")
    assert len(got) == 1, got
    for name, value in fields:
        assert got[0].headers.get(name) == value, (name, got[0])


def test_request_with_121_fields_is_431_and_closed(env, raw):
    proxy = env.proxy([raw])
    c = env.client(proxy)
    c.send(build_request("GET", "/many", [(f"X-F-{i:03d}", str(i)) for i in range(120)]))
    r = c.read_response(timeout=5)
    assert_proxy_error(r, 431)
    assert_closed(c)
    assert raw.accepted == 0, "the request reached the origin"


@pytest.mark.parametrize("shape", ["complete_request", "no_line_end"])
def test_request_line_over_max_header_bytes_is_431(env, raw, shape):
    proxy = env.proxy([raw], limits={"max_header_bytes": "4KiB"})
    c = env.client(proxy)
    if shape == "complete_request":
        c.send(build_request("GET", "/" + "a" * 8000))
    else:
        c.send(b"GET /" + b"a" * 16000)  # and never a line end
    r = c.read_response(timeout=5)
    assert_proxy_error(r, 431)
    assert_closed(c)
    assert raw.accepted == 0, "the request reached the origin"

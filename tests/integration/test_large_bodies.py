"""Issue 4 / SPEC 3: bodies stream in both directions with memory bounded by
buffers, never by body size: a 1 GiB upload (Content-Length), a 256 MiB
chunked upload and a 1 GiB download go through the proxy with exact byte
counts while its peak RSS (VmHWM) grows by less than 16 MiB.

The uploads go to a raw Python origin that reads and counts (and CRC-checks)
the body without echoing it; the download comes from `sluice-bench origin`
/bytes/N, whose body is "abc...z" repeated."""

import os
import threading
import time
import zlib

import pytest

import harness
from harness import RawOrigin, build_request

GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024
RSS_BUDGET_KIB = 16 * 1024


def counting_handler(conn, gate=None):
    """Reads each request's body (Content-Length or chunked) into a 1 MiB
    scratch buffer, keeping only its length and CRC-32, and answers
    "BYTES CRC32". With a `gate` (threading.Event), each body is read only
    once the gate is open."""
    while True:
        req = conn.read_request_head()
        if req is None:
            return
        if gate is not None:
            gate.wait(30)
        crc = 0

        def consume(view):
            nonlocal crc
            req.body_bytes += len(view)
            crc = zlib.crc32(view, crc)

        deadline = time.monotonic() + 120
        te = (req.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                size = int(conn.read_line(deadline).split(b";")[0], 16)
                if size == 0:
                    while conn.read_line(deadline) != b"":
                        pass
                    break
                while size > 0:
                    size -= conn._take(size, deadline, consume)
                assert conn.read_line(deadline) == b""
        else:
            n = int(req.headers.get("Content-Length", "0"))
            while n > 0:
                n -= conn._take(n, deadline, consume)
        req.complete = True
        conn.send(harness.http_response(200, f"{req.body_bytes} {crc}\n".encode()))


@pytest.fixture
def raw(env):
    o = RawOrigin(counting_handler, name="counter")
    env.origins.append(o)
    return o


def warm_up(env, proxy, target, body=None):
    """One request through the proxy, so start-up allocations are in the baseline."""
    c = env.client(proxy, timeout=10)
    r = c.request("POST" if body is not None else "GET", target, body=body)
    assert r.status == 200, r
    c.close()
    return harness.peak_rss_kib(proxy.pid)


def test_1_gib_upload_streams_with_bounded_memory(env, raw):
    proxy = env.proxy([raw])
    baseline = warm_up(env, proxy, "/warm", body=os.urandom(4 * MiB))
    block = os.urandom(MiB)
    count = 1024
    expected_crc = 0
    for _ in range(count):
        expected_crc = zlib.crc32(block, expected_crc)

    c = env.client(proxy, timeout=60)
    c.send(build_request("POST", "/upload", [("Content-Length", str(count * MiB)),
                                              ("Content-Type", "application/octet-stream")]))
    sender = c.send_background([block] * count)
    r = c.read_response(timeout=55)
    assert sender.join(5) and sender.finished, sender.error
    assert r.status == 200, r
    assert r.body == f"{GiB} {expected_crc}\n".encode(), r
    grown = harness.peak_rss_kib(proxy.pid) - baseline
    assert grown < RSS_BUDGET_KIB, f"peak RSS grew by {grown} KiB during a 1 GiB upload"
    assert c.get("/after").status == 200  # the connection is still usable


def test_256_mib_chunked_upload_streams_with_bounded_memory(env, raw):
    proxy = env.proxy([raw])
    baseline = warm_up(env, proxy, "/warm", body=os.urandom(4 * MiB))
    # One round: 2 MiB of data in chunks of uneven sizes; 128 rounds make 256 MiB.
    data = os.urandom(2 * MiB)
    sizes = [MiB, 65536, 1, 300000, MiB - 65536 - 1 - 300000]
    assert sum(sizes) == len(data)
    round_wire = bytearray()
    off = 0
    for n in sizes:
        round_wire += b"%x\r\n" % n + data[off:off + n] + b"\r\n"
        off += n
    rounds = 128
    total = rounds * len(data)
    assert total == 256 * MiB
    expected_crc = 0
    for _ in range(rounds):
        expected_crc = zlib.crc32(data, expected_crc)
    wire = [build_request("POST", "/upload", [("Transfer-Encoding", "chunked")])]
    wire += [bytes(round_wire)] * rounds + [b"0\r\n\r\n"]

    c = env.client(proxy, timeout=60)
    sender = c.send_background(wire)
    r = c.read_response(timeout=55)
    assert sender.join(5) and sender.finished, sender.error
    assert r.status == 200, r
    assert r.body == f"{total} {expected_crc}\n".encode(), r
    grown = harness.peak_rss_kib(proxy.pid) - baseline
    assert grown < RSS_BUDGET_KIB, f"peak RSS grew by {grown} KiB during a 256 MiB chunked upload"


def test_1_gib_download_streams_with_bounded_memory(env):
    origin = env.origin("o")
    proxy = env.proxy([origin])
    baseline = warm_up(env, proxy, "/bytes/4194304")
    n = GiB
    pattern = b"abcdefghijklmnopqrstuvwxyz" * (2 * MiB // 26 + 2)
    pattern_view = memoryview(pattern)

    c = env.client(proxy, timeout=60)
    c.send(build_request("GET", f"/bytes/{n}"))
    deadline = time.monotonic() + 55
    _, status, _, headers = c._read_head(deadline)
    assert status == 200, (status, headers)
    assert headers.get("Content-Length") == str(n), headers
    assert headers.get("X-Request-ID"), headers

    # Count (and compare with the pattern) straight from the socket.
    received = 0
    mismatch = None
    scratch = bytearray(MiB)
    view = memoryview(scratch)

    def check(data):
        nonlocal received, mismatch
        off = received % 26
        if mismatch is None and data != pattern_view[off:off + len(data)]:
            mismatch = received
        received += len(data)

    if c.buf:
        take = min(len(c.buf), n)
        check(memoryview(bytes(c.buf[:take])))
        del c.buf[:take]
    while received < n:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"download not finished in time: {received} of {n} bytes"
        c.sock.settimeout(remaining)
        got = c.sock.recv_into(view, min(MiB, n - received))
        assert got > 0, f"connection closed after {received} of {n} bytes"
        check(view[:got])
    assert received == n
    assert mismatch is None, f"body differs from the origin's pattern at byte {mismatch}"
    grown = harness.peak_rss_kib(proxy.pid) - baseline
    assert grown < RSS_BUDGET_KIB, f"peak RSS grew by {grown} KiB during a 1 GiB download"
    # Nothing extra after the body, and the connection is still usable.
    r = c.get("/small")
    assert r.status == 200 and r.body == b"hello from o\n", r


def test_upload_to_a_stalled_origin_applies_back_pressure(env):
    # The origin takes the head, then reads nothing until released: the
    # proxy must stop reading the client instead of buffering the upload.
    gate = threading.Event()
    raw = RawOrigin(lambda conn: counting_handler(conn, gate), name="stalled")
    env.origins.append(raw)
    proxy = env.proxy([raw])
    gate.set()
    baseline = warm_up(env, proxy, "/warm", body=os.urandom(4 * MiB))
    gate.clear()

    total = 64 * MiB
    block = os.urandom(MiB)
    c = env.client(proxy, timeout=30)
    c.send(build_request("POST", "/upload", [("Content-Length", str(total))]))
    sender = c.send_background([block] * 64)
    harness.wait_until(lambda: sender.sent >= 4 * MiB, 10, message="the first 4 MiB to leave the client")
    # While the origin reads nothing, the proxy's peak RSS must stay within
    # budget and the client must be held back (kernel buffers take some MiB).
    with pytest.raises(TimeoutError):
        harness.wait_until(lambda: harness.peak_rss_kib(proxy.pid) - baseline >= RSS_BUDGET_KIB, 1.5,
                           interval=0.05)
    assert not sender.finished, "the whole 64 MiB upload left the client while the origin read nothing"
    gate.set()
    r = c.read_response(timeout=30)
    assert sender.join(5) and sender.finished, sender.error
    expected_crc = 0
    for _ in range(64):
        expected_crc = zlib.crc32(block, expected_crc)
    assert r.status == 200 and r.body == f"{total} {expected_crc}\n".encode(), r
    grown = harness.peak_rss_kib(proxy.pid) - baseline
    assert grown < RSS_BUDGET_KIB, f"peak RSS grew by {grown} KiB"

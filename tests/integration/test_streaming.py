"""SPEC 3: bodies stream both ways (Content-Length and chunked), bounded
memory, bodiless responses, Expect: 100-continue."""

import hashlib
import os
import time

import pytest

import harness


@pytest.fixture
def origin(env):
    return env.origin("o")


@pytest.fixture
def proxy(env, origin):
    return env.proxy([origin])


def parts(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_post_5_mib_content_length_body_echoed_intact(proxy, env):
    data = os.urandom(5 * 1024 * 1024)
    c = env.client(proxy, timeout=30)
    r = c.request_streaming("POST", "/echo", [("Content-Length", str(len(data)))], parts(data, 65536), timeout=30)
    assert r.status == 200, r
    assert len(r.body) == len(data)
    assert r.body == data
    # The connection is still usable.
    assert c.get("/small").status == 200


def test_chunked_request_body_echoed_intact(proxy, env):
    sizes = [1, 17, 4096, 65536, 300000, 3]
    chunks = [os.urandom(n) for n in sizes]
    data = b"".join(chunks)
    wire = [b"%x\r\n" % len(ch) + ch + b"\r\n" for ch in chunks] + [b"0\r\n\r\n"]
    c = env.client(proxy, timeout=30)
    r = c.request_streaming("POST", "/echo", [("Transfer-Encoding", "chunked")], wire, timeout=30)
    assert r.status == 200, r
    assert r.body == data
    assert c.get("/small").status == 200


def test_chunked_request_with_extension_and_trailer(proxy, env):
    c = env.client(proxy)
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    r = c.request("POST", "/echo", [("Transfer-Encoding", "chunked")], body)
    assert r.status == 200 and r.body == b"hello world", r
    assert c.get("/small").status == 200


def vm_kib(proxy, field):
    return proxy.proc_status_kib(field)


def test_20_mb_download_intact_with_bounded_memory(proxy, origin, env):
    n = 20_000_000
    direct = hashlib.sha256()
    with harness.HttpClient(origin.port, timeout=30) as d:
        d.send(harness.build_request("GET", f"/bytes/{n}"))
        resp = d.read_response(sink=direct.update, timeout=30)
        assert resp.status == 200

    c = env.client(proxy, timeout=30)
    assert c.get("/bytes/1000000").status == 200  # warm the path up
    baseline_hwm = vm_kib(proxy, "VmHWM")

    got = hashlib.sha256()
    length = 0

    def sink(b):
        nonlocal length
        length += len(b)
        got.update(b)

    c.send(harness.build_request("GET", f"/bytes/{n}"))
    resp = c.read_response(sink=sink, timeout=60)
    assert resp.status == 200, resp
    assert length == n
    assert got.hexdigest() == direct.hexdigest()
    grown_kib = vm_kib(proxy, "VmHWM") - baseline_hwm
    # A proxy that held the body would grow by >= 19 MiB.
    assert grown_kib < 16 * 1024, f"peak RSS grew by {grown_kib} KiB during a 20 MB download"


def minor_faults(pid):
    """Minor page faults of `pid` so far (field 10 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def test_large_responses_are_relayed_without_fresh_memory_each(proxy, env):
    # A 64 KiB response is relayed through a 64 KiB block from the worker's
    # pool. Allocated and freed per response, glibc gave the block's pages
    # back to the kernel on each free (it trims its heap when a chunk of 64
    # KiB or more is freed) and the next response faulted them in again:
    # 2-3 page faults per response, each a trip through the kernel and a
    # page zeroed. Sixteen connections keep relays in flight at once (a build
    # without the pool: 560-4,863 faults for the 1,600 responses; with it 13-82).
    if proxy.sanitizer_runtime():
        pytest.skip("a sanitizer's allocator maps and unmaps memory its own way")
    n = 65536
    clients = [env.client(proxy, timeout=10) for _ in range(16)]

    def round_trip():
        for c in clients:
            c.send(harness.build_request("GET", f"/bytes/{n}"))
        for c in clients:
            r = c.read_response(timeout=10)
            assert r.status == 200 and len(r.body) == n, r

    for _ in range(20):  # the pool fills, the heap settles
        round_trip()
    before = minor_faults(proxy.pid)
    rounds = 100
    for _ in range(rounds):
        round_trip()
    faults = minor_faults(proxy.pid) - before
    assert faults < rounds * len(clients) / 10, f"{faults} page faults for {rounds * len(clients)} responses"


def test_slow_reader_download_does_not_buffer_in_the_proxy(proxy, env):
    # The client stops reading after the first bytes; the proxy must apply
    # back-pressure instead of reading the whole 64 MB from the origin.
    n = 64 * 1024 * 1024
    c = env.client(proxy, timeout=30)
    c.sock.setsockopt(harness.socket.SOL_SOCKET, harness.socket.SO_RCVBUF, 65536)
    assert c.get("/small").status == 200
    baseline_hwm = vm_kib(proxy, "VmHWM")
    c.send(harness.build_request("GET", f"/bytes/{n}"))
    first = c._read_head(time.monotonic() + 10)
    assert first[1] == 200
    # Nothing should happen here; the window is bounded: the peak RSS must
    # not climb past 16 MiB while the client reads nothing.
    with pytest.raises(TimeoutError):
        harness.wait_until(lambda: vm_kib(proxy, "VmHWM") - baseline_hwm >= 16 * 1024, 1.5, interval=0.05)
    assert proxy.running(), proxy.output_tail()


def test_head_gets_no_body_and_the_connection_stays_usable(proxy, env):
    c = env.client(proxy)
    r = c.request("HEAD", "/bytes/5000")
    assert r.status == 200, r
    assert r.body == b""
    r2 = c.get("/headers?after=head")
    assert r2.status == 200 and r2.json()["target"] == "/headers?after=head", r2


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_keeps_the_connection_usable(proxy, env, status):
    c = env.client(proxy)
    r = c.get(f"/status/{status}")
    assert r.status == status, r
    assert r.body == b""
    if status == 204:
        assert r.header("Transfer-Encoding") is None, r
    r2 = c.get(f"/headers?after={status}")
    assert r2.status == 200 and r2.json()["target"] == f"/headers?after={status}", r2


def test_expect_100_continue(proxy, env):
    c = env.client(proxy)
    body = b"x" * 10000
    c.send(harness.build_request("POST", "/echo", [("Content-Length", str(len(body))), ("Expect", "100-continue")]))
    # Nothing but the interim response may arrive before the body is sent.
    deadline = time.monotonic() + 5
    version, status, _, _ = c._read_head(deadline)
    assert status == 100, status
    c.send(body)
    r = c.read_response()
    assert r.status == 200 and r.body == body, r

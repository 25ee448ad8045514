"""SPEC 9: SIGTERM/SIGINT drain: /ready 503, listeners closed, idle
connections closed, in-flight requests finish with Connection: close, exit 0."""

import signal
import socket
import time

import pytest

import harness
from harness import ArrivalWatch, wait_until


@pytest.fixture
def origin(env):
    return env.origin("o")


def start(env, origin, grace="10s"):
    return env.proxy([origin], timeouts={"shutdown_grace": grace})


def in_flight(env, proxy, origin, target):
    """A client whose request has reached the origin and is being served."""
    watch = ArrivalWatch([origin])
    c = env.client(proxy, timeout=15)
    c.send(harness.build_request("GET", target))
    watch.wait(1)
    return c


def test_in_flight_request_completes_with_connection_close(env, origin):
    proxy = start(env, origin)
    c = in_flight(env, proxy, origin, "/delay/1500")
    t0 = time.monotonic()
    proxy.signal(signal.SIGTERM)
    r = c.read_response(timeout=10)
    assert r.status == 200, r
    assert r.header("X-Origin") == "o"
    assert "close" in r.connection_tokens(), r
    how, _ = c.wait_closed(3)
    assert how in ("eof", "reset")
    code = proxy.wait(10)
    assert code == 0, (code, proxy.output_tail())
    assert time.monotonic() - t0 < 10


def test_ready_is_503_while_draining(env, origin):
    proxy = start(env, origin)
    assert proxy.ready_status() == 200
    c = in_flight(env, proxy, origin, "/delay/3000")
    proxy.signal(signal.SIGTERM)

    def draining():
        return proxy.ready_status(timeout=0.5) == 503

    wait_until(draining, 1.5, message="/ready == 503 after SIGTERM")
    assert proxy.running()
    r = c.read_response(timeout=10)
    assert r.status == 200, r
    assert proxy.wait(10) == 0, proxy.output_tail()


def connection_refused_or_closed(port, answer_is_error=True):
    """True when a new connection is refused, or accepted and closed without
    an answer; False when it is left hanging (0.3 s). An answer raises, unless
    `answer_is_error` is false (a connection made while the signal is still on
    its way may be served, with Connection: close): then it is False."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except ConnectionRefusedError:
        return True
    with s:
        try:
            s.sendall(harness.build_request("GET", "/small"))
            s.settimeout(0.3)
            data = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return True
        except socket.timeout:
            return False
        if data == b"":
            return True
        if not answer_is_error and b"\r\nConnection: close\r\n" in data:
            return False
        raise AssertionError(f"a new connection was answered after SIGTERM: {data[:200]!r}")


def test_new_connections_are_refused_while_draining(env, origin):
    proxy = start(env, origin)
    c = in_flight(env, proxy, origin, "/delay/3000")
    t0 = time.monotonic()
    proxy.signal(signal.SIGTERM)
    wait_until(lambda: connection_refused_or_closed(proxy.port, answer_is_error=False), 1.5,
               message="new connections refused")
    assert proxy.running(), "the process must still be draining the in-flight request"
    assert time.monotonic() - t0 < 2.5
    # And it stays that way.
    assert connection_refused_or_closed(proxy.port)
    r = c.read_response(timeout=10)
    assert r.status == 200, r
    assert proxy.wait(10) == 0, proxy.output_tail()


def test_idle_keep_alive_connection_is_closed_promptly(env, origin):
    proxy = start(env, origin)
    idle = env.client(proxy)
    assert idle.get("/small").status == 200
    busy = in_flight(env, proxy, origin, "/delay/3000")
    harness.assert_drain_closes_idle_first(proxy, idle, busy)


def test_idle_process_exits_0_promptly(env, origin):
    proxy = start(env, origin)
    idle = env.client(proxy)
    assert idle.get("/small").status == 200
    t0 = time.monotonic()
    proxy.signal(signal.SIGTERM)
    code = proxy.wait(5)
    assert code == 0, (code, proxy.output_tail())
    assert time.monotonic() - t0 < 2.0, "nothing in flight: no reason to wait for shutdown_grace"


def test_sigint_drains_like_sigterm(env, origin):
    proxy = start(env, origin)
    c = in_flight(env, proxy, origin, "/delay/1000")
    proxy.signal(signal.SIGINT)
    r = c.read_response(timeout=10)
    assert r.status == 200, r
    assert "close" in r.connection_tokens(), r
    assert proxy.wait(10) == 0, proxy.output_tail()


def test_exit_0_after_shutdown_grace_with_a_stuck_request(env, origin):
    proxy = start(env, origin, grace="1s")
    c = in_flight(env, proxy, origin, "/delay/20000")
    t0 = time.monotonic()
    proxy.signal(signal.SIGTERM)
    code = proxy.wait(8)
    elapsed = time.monotonic() - t0
    assert code == 0, (code, proxy.output_tail())
    assert 0.8 <= elapsed < 4.0, f"exited {elapsed:.3f}s after SIGTERM with shutdown_grace 1s"
    how, _ = c.wait_closed(2)
    assert how in ("eof", "reset")

"""SPEC 4: round robin (equal and weighted), least_conn, retries on connect failure."""

import harness
from harness import ArrivalWatch, free_port


def names(proxy, n, env, new_connections=False):
    out = []
    c = None if new_connections else env.client(proxy)
    for _ in range(n):
        r = proxy.get("/") if new_connections else c.get("/")
        assert r.status == 200, r
        out.append(r.header("X-Origin"))
    return out


def test_round_robin_alternates_exactly(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([a, b])
    seq = names(proxy, 10, env)
    assert sorted(set(seq)) == ["a", "b"], seq
    for i in range(1, len(seq)):
        assert seq[i] != seq[i - 1], f"not alternating: {seq}"


def test_round_robin_alternates_across_connections(env):
    a, b = env.origins_named("a", "b")
    # One worker: each worker keeps its own cursor (SPEC 4), and new
    # connections are spread over the workers by the kernel.
    proxy = env.proxy([a, b], workers=1)
    seq = names(proxy, 6, env, new_connections=True)
    for i in range(1, len(seq)):
        assert seq[i] != seq[i - 1], f"not alternating: {seq}"


def test_weighted_round_robin_is_smooth(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([(a, 3), (b, 1)], workers=1)  # one cursor, as above
    seq = names(proxy, 8, env, new_connections=True)
    assert seq.count("a") == 6 and seq.count("b") == 2, seq
    # Smooth: every window of 4 consecutive picks holds 3 a and 1 b (no bursts).
    for i in range(len(seq) - 3):
        assert seq[i:i + 4].count("b") == 1, f"bursty: {seq}"


def test_least_conn_rotates_ties(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([a, b], upstream_extra={"balance": "least_conn"})
    seq = names(proxy, 6, env)
    # Sequential requests leave nothing in flight: every pick is a tie,
    # broken by rotation (not always the first server of the list).
    for i in range(1, len(seq)):
        assert seq[i] != seq[i - 1], f"ties not rotated: {seq}"


def test_least_conn_avoids_the_busy_server(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([a, b], upstream_extra={"balance": "least_conn"})
    watch = ArrivalWatch([a, b])
    slow = env.client(proxy)
    slow.send(harness.build_request("GET", "/delay/1500"))
    arrived = watch.wait(1)
    busy = [name for name, n in arrived.items() if n == 1][0]
    quick = names(proxy, 3, env)
    assert busy not in quick, (busy, quick)
    r = slow.read_response()
    assert r.status == 200 and r.header("X-Origin") == busy


def test_connect_failure_is_retried_on_another_server(env):
    a = env.origin("a")
    dead = f"127.0.0.1:{free_port()}"
    proxy = env.proxy([dead, a])
    for _ in range(4):
        r = proxy.get("/")
        assert r.status == 200, r
        assert r.header("X-Origin") == "a"

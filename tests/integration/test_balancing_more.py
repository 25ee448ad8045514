"""SPEC 4, under load: least_conn across two workers with one slow server,
smooth weighted round robin over 4k requests, connect retries with a server
that does not listen."""

import threading
import time

import harness
from harness import RawOrigin, free_port, http_response, serve_http

SLOW_SECONDS = 0.2


def slow_origin(env):
    """A RawOrigin that takes 200 ms over every request (its own pace, per
    connection thread, so concurrent requests overlap)."""

    def respond(conn, req):
        time.sleep(SLOW_SECONDS)  # the origin's service time, not a wait in the test
        return http_response(200, b"slow\n", {"X-Origin": "slow"})

    raw = RawOrigin(lambda conn: serve_http(conn, respond), name="slow")
    env.origins.append(raw)
    return raw


def test_least_conn_across_workers_prefers_the_fast_server(env):
    fast = env.origin("fast")
    slow = slow_origin(env)
    proxy = env.proxy([fast, slow], upstream_extra={"balance": "least_conn"}, workers=2)
    clients, per_client = 20, 12
    results = [[] for _ in range(clients)]
    errors = []
    start = threading.Barrier(clients)

    def run(i):
        try:
            c = harness.HttpClient(proxy.port, timeout=10.0)
            try:
                start.wait(10)
                for _ in range(per_client):
                    r = c.get("/")
                    results[i].append((r.status, r.header("X-Origin")))
            finally:
                c.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads), "clients still running"
    flat = [x for r in results for x in r]
    assert len(flat) == clients * per_client
    assert all(status == 200 for status, _ in flat), [x for x in flat if x[0] != 200][:5]
    to_fast = sum(1 for _, o in flat if o == "fast")
    to_slow = sum(1 for _, o in flat if o == "slow")
    assert to_fast + to_slow == len(flat)
    assert to_slow >= 1, "the slow server got nothing: least_conn should still use it when the fast one is busy"
    assert to_fast > 0.7 * len(flat), f"fast {to_fast}, slow {to_slow}"
    assert len(slow.requests) == to_slow


def test_weighted_round_robin_exact_over_4k(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([(a, 3), (b, 1)])  # workers: 1
    c = env.client(proxy)
    seq = []
    batch = 50  # pipelined, answered in order
    for _ in range(4000 // batch):
        c.send(b"".join(harness.build_request("GET", "/") for _ in range(batch)))
        for _ in range(batch):
            r = c.read_response()
            assert r.status == 200, r
            seq.append(r.header("X-Origin"))
    assert len(seq) == 4000
    assert seq.count("a") == 3000 and seq.count("b") == 1000, (seq.count("a"), seq.count("b"))
    doubles = [i for i in range(1, len(seq)) if seq[i] == "b" == seq[i - 1]]
    assert not doubles, f"b twice in a row at {doubles[:5]}"
    # Smooth: every window of 4 consecutive requests has exactly one b.
    bad = [i for i in range(len(seq) - 3) if seq[i:i + 4].count("b") != 1]
    assert not bad, f"windows without exactly one b at {bad[:5]}: {seq[bad[0]:bad[0] + 8]}"


def test_retries_hide_a_server_that_does_not_listen(env):
    a, b = env.origins_named("a", "b")
    dead = f"127.0.0.1:{free_port()}"
    # max_fails so high the passive check never takes the dead server out:
    # every time round robin picks it, the retry has to save the request.
    passive = {"max_fails": 1000000, "fail_timeout": "1s"}
    routes = [{"match": {"path_prefix": "/noretry"}, "upstream": "noretry"},
              {"match": {"path_prefix": "/"}, "upstream": "backend"}]
    upstreams = [harness.upstream("backend", [a, dead, b], retries=2, passive=passive),
                 harness.upstream("noretry", [a, dead, b], retries=0, passive=passive)]
    proxy = env.sluice(env.config(routes, upstreams))
    c = env.client(proxy)
    seen = []
    for _ in range(50):
        r = c.get("/")
        assert r.status == 200, r
        seen.append(r.header("X-Origin"))
    assert set(seen) == {"a", "b"}, seen
    # The control: without retries exactly every third request (the dead
    # server's turn in the rotation) fails with 502.
    statuses = []
    nc = env.client(proxy)
    for _ in range(30):
        r = nc.get("/noretry/small")
        statuses.append(r.status)
        if r.status == 502:
            harness.assert_proxy_error(r, 502)
            nc = env.client(proxy)
    assert statuses.count(502) == 10 and statuses.count(404) == 20, statuses

"""SPEC 5 (and 4): active health checks (thresholds, expected_status, Host
header, log lines, /status), 503 when no server is available, passive checks
(max_fails, fail_timeout)."""

import re
import time

import harness
from harness import (RawOrigin, assert_proxy_error, free_port, http_response, log_messages, serve_http,
                     status_servers, wait_until)

INTERVAL = 0.2
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 3
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
# Scheduling allowance on a loaded 2-core machine, on top of the SPEC's
# threshold x interval + one interval of slack.
JITTER = 0.25


def health_check(**extra):
    hc = {"path": "/health", "interval": "200ms", "timeout": "150ms",
          "healthy_threshold": HEALTHY_THRESHOLD, "unhealthy_threshold": UNHEALTHY_THRESHOLD}
    hc.update(extra)
    return hc


def served_by(proxy, env, n):
    """X-Origin of n requests on one keep-alive connection; every one must be a 200."""
    return harness.origins_answering(env.client(proxy), n)


def server(proxy, address, upstream="backend"):
    return status_servers(proxy, upstream)[address]


def wait_checked(proxy, addresses, upstream="backend", timeout=5.0):
    """Until every server has a completed check."""
    wait_until(lambda: all("last_check" in server(proxy, a, upstream) for a in addresses), timeout,
               message=f"a completed health check of {addresses}")


def wait_healthy(proxy, address, healthy, timeout, upstream="backend"):
    """Waits until /status shows the server's `healthy` as given; returns the seconds it took."""
    t0 = time.monotonic()
    wait_until(lambda: server(proxy, address, upstream)["healthy"] is healthy, timeout, interval=0.01,
               message=f"{address} healthy == {healthy}")
    return time.monotonic() - t0


def test_toggled_health_takes_a_server_out_and_back(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([a, b], upstream_extra={"health_check": health_check()})
    wait_checked(proxy, [a.address, b.address])
    assert sorted(set(served_by(proxy, env, 4))) == ["a", "b"]
    st = server(proxy, a.address)
    assert st["healthy"] is True and st["last_check"]["ok"] is True and st["last_check"]["status"] == 200, st
    assert ISO_UTC.match(st["last_check"]["at"]), st

    # Down: out within unhealthy_threshold x interval (+ one interval of slack),
    # not before unhealthy_threshold - 1 intervals have passed.
    assert a.post("/health/down").status == 200
    took = wait_healthy(proxy, a.address, False, UNHEALTHY_THRESHOLD * INTERVAL + INTERVAL + JITTER)
    assert took >= (UNHEALTHY_THRESHOLD - 1) * INTERVAL - 0.05, f"down after only {took:.3f}s"
    assert served_by(proxy, env, 20) == ["b"] * 20
    st = server(proxy, a.address)
    assert st["last_check"]["ok"] is False and st["last_check"]["status"] == 503, st
    assert "503" in st["last_check"]["error"], st
    assert server(proxy, b.address)["healthy"] is True

    # Up again after healthy_threshold x interval.
    assert a.post("/health/up").status == 200
    took = wait_healthy(proxy, a.address, True, HEALTHY_THRESHOLD * INTERVAL + INTERVAL + JITTER)
    assert took >= (HEALTHY_THRESHOLD - 1) * INTERVAL - 0.05, f"up after only {took:.3f}s"
    seq = served_by(proxy, env, 6)
    assert seq.count("a") == 3 and seq.count("b") == 3, seq
    st = server(proxy, a.address)
    assert st["last_check"] == {"ok": True, "at": st["last_check"]["at"], "status": 200}, st

    # Logged once each way, with upstream, server and reason.
    wait_until(lambda: log_messages(proxy, "server up"), 2.0, message="a 'server up' log line")
    downs = log_messages(proxy, "server down")
    ups = log_messages(proxy, "server up")
    assert len(downs) == 1 and len(ups) == 1, (downs, ups)
    assert downs[0]["upstream"] == "backend" and downs[0]["server"] == a.address, downs
    assert "503" in downs[0]["reason"], downs
    # Levels are spelled as --log-level takes them.
    assert downs[0]["level"] == "warn" and ups[0]["level"] == "info", (downs, ups)
    assert ups[0]["upstream"] == "backend" and ups[0]["server"] == a.address, ups
    assert ups[0]["reason"], ups


def test_all_servers_down_gives_503_at_once(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([a, b], upstream_extra={"health_check": health_check(),
                                              "timeouts": {"connect": "3s"}})
    wait_checked(proxy, [a.address, b.address])
    for o in (a, b):
        assert o.post("/health/down").status == 200
    limit = UNHEALTHY_THRESHOLD * INTERVAL + INTERVAL + JITTER
    wait_healthy(proxy, a.address, False, limit)
    wait_healthy(proxy, b.address, False, limit)
    c = env.client(proxy)
    for _ in range(3):
        t0 = time.monotonic()
        r = c.get("/")
        elapsed = time.monotonic() - t0
        rid = assert_proxy_error(r, 503)
        assert elapsed < 0.5, f"503 took {elapsed:.3f}s (connect timeout is 3s)"
        rec = proxy.wait_access_record(rid)
        assert rec["status"] == 503, rec
    # Back: traffic flows again.
    assert b.post("/health/up").status == 200
    wait_healthy(proxy, b.address, True, HEALTHY_THRESHOLD * INTERVAL + INTERVAL + JITTER)
    assert served_by(proxy, env, 3) == ["b"] * 3


def test_server_not_listening_is_marked_down_without_client_errors(env):
    a = env.origin("a")
    dead = f"127.0.0.1:{free_port()}"
    proxy = env.proxy([dead, a], upstream_extra={"health_check": health_check()})
    # Before and after the active check gives up on it, no client sees an error.
    assert served_by(proxy, env, 10) == ["a"] * 10
    wait_healthy(proxy, dead, False, UNHEALTHY_THRESHOLD * INTERVAL + INTERVAL + JITTER)
    assert served_by(proxy, env, 20) == ["a"] * 20
    st = server(proxy, dead)
    assert st["last_check"]["ok"] is False and st["last_check"]["status"] == 0, st
    assert st["last_check"]["error"], st
    assert server(proxy, a.address)["healthy"] is True
    wait_until(lambda: [r for r in log_messages(proxy, "server down") if r.get("server") == dead], 2.0,
               message="a 'server down' line for the dead server")
    downs = [r for r in log_messages(proxy, "server down") if r.get("server") == dead]
    assert downs[0]["upstream"] == "backend" and downs[0]["reason"], downs
    assert not [r for r in log_messages(proxy, "server down") if r.get("server") == a.address]


def _health_answering(status):
    """A RawOrigin handler: /health answers `status`, anything else 200 naming the origin."""

    def respond(conn, req):
        if req.target == "/health":
            if status == 204:  # no Content-Length on a 204 (RFC 9110 8.6)
                return b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
            return http_response(status, b"ok\n", {"Connection": "close"})
        return http_response(200, b"raw\n", {"X-Origin": "raw"})

    return lambda conn: serve_http(conn, respond)


def test_expected_status_range(env):
    raw = RawOrigin(_health_answering(204), name="raw204")
    env.origins.append(raw)
    b = env.origin("b")
    routes = [{"match": {"path_prefix": "/strict"}, "upstream": "strict"},
              {"match": {"path_prefix": "/"}, "upstream": "loose"}]
    upstreams = [
        harness.upstream("strict", [raw, b], health_check=health_check(expected_status="200", host="strict.check")),
        harness.upstream("loose", [raw, b], health_check=health_check(host="loose.check")),  # "200-399"
    ]
    proxy = env.sluice(env.config(routes, upstreams))
    wait_healthy(proxy, raw.address, False, UNHEALTHY_THRESHOLD * INTERVAL + INTERVAL + JITTER, upstream="strict")
    st = server(proxy, raw.address, "strict")
    assert st["last_check"]["ok"] is False and st["last_check"]["status"] == 204, st
    # The loose upstream has had at least as many checks of the same 204 and keeps it.
    wait_until(lambda: len([r for r in raw.requests_to("/health") if r.headers.get("Host") == "loose.check"])
               >= UNHEALTHY_THRESHOLD + 1, 3.0, message="loose checks")
    st = server(proxy, raw.address, "loose")
    assert st["healthy"] is True, st
    assert st["last_check"] == {"ok": True, "at": st["last_check"]["at"], "status": 204}, st
    c = env.client(proxy)
    strict = [c.get("/strict").header("X-Origin") for _ in range(6)]
    assert strict == ["b"] * 6, strict
    loose = [c.get("/").header("X-Origin") for _ in range(6)]
    assert sorted(loose) == ["b"] * 3 + ["raw"] * 3, loose


def test_check_request_and_host_header(env):
    custom = RawOrigin(_health_answering(200), name="custom")
    default = RawOrigin(_health_answering(200), name="default")
    env.origins += [custom, default]
    routes = [{"match": {"path_prefix": "/c"}, "upstream": "c"},
              {"match": {"path_prefix": "/"}, "upstream": "d"}]
    upstreams = [harness.upstream("c", [custom], health_check=health_check(host="health.example.com")),
                 harness.upstream("d", [default], health_check=health_check())]
    proxy = env.sluice(env.config(routes, upstreams))
    # Checked at once at start, then every interval.
    wait_until(lambda: len(custom.requests_to("/health")) >= 3 and len(default.requests_to("/health")) >= 3,
               3 * INTERVAL + 1.0 + JITTER, message="three checks of each")
    for req in custom.requests_to("/health"):
        assert req.method == "GET" and req.version == "HTTP/1.1", req
        assert req.headers.get_all("Host") == ["health.example.com"], req
    for req in default.requests_to("/health"):
        assert req.method == "GET" and req.version == "HTTP/1.1", req
        assert req.headers.get_all("Host") == [default.address], req
    assert server(proxy, custom.address, "c")["healthy"] is True


def test_passive_check_skips_a_failed_server_for_fail_timeout(env):
    a = env.origin("a")
    dead_port = free_port()
    dead = f"127.0.0.1:{dead_port}"
    proxy = env.proxy([dead, a], upstream_extra={"passive": {"max_fails": 1, "fail_timeout": "1s"},
                                                 "retries": 1})
    c = env.client(proxy)
    # Until the dead server is tried once (round robin reaches it within two requests).
    first_fail = None
    for _ in range(2):
        t = time.monotonic()
        r = c.get("/")
        assert r.status == 200 and r.header("X-Origin") == "a", r
        if server(proxy, dead)["healthy"] is False:
            first_fail = t
            break
    assert first_fail is not None, "the dead server was never tried"
    logged = wait_until(lambda: [x for x in log_messages(proxy, "server down") if x.get("server") == dead],
                        2.0, message="a passive 'server down' line")
    assert logged[0]["upstream"] == "backend" and logged[0]["reason"], logged

    # It starts listening now, but is out for fail_timeout: not one request reaches it.
    late = RawOrigin(lambda conn: serve_http(conn, lambda _c, _r: http_response(200, b"late\n", {"X-Origin": "late"})),
                     name="late", port=dead_port)
    env.origins.append(late)
    ids = []
    n = 0
    while time.monotonic() < first_fail + 0.7 and n < 18:
        r = c.get("/")
        n += 1
        assert r.status == 200 and r.header("X-Origin") == "a", r
        ids.append(r.header("X-Request-ID"))
    assert n >= 5, f"only {n} requests in the window"
    assert late.accepted == 0 and late.requests == [], late.requests
    for rid in ids:
        rec = proxy.wait_access_record(rid)
        assert rec["status"] == 200 and rec["server"] == a.address, rec

    # After fail_timeout it is tried again and serves.
    seen = []

    def late_served():
        r = c.get("/")
        assert r.status == 200, r
        seen.append((time.monotonic(), r.header("X-Origin")))
        return r.header("X-Origin") == "late"

    wait_until(late_served, 3.0, interval=0.02, message="the revived server getting traffic")
    first_late = next(t for t, o in seen if o == "late")
    assert first_late >= first_fail + 1.0, f"tried again after {first_late - first_fail:.3f}s < fail_timeout"
    assert server(proxy, dead)["healthy"] is True

"""Reload (SPEC 7) and health (SPEC 5): a server kept across a reload (same
upstream name and address) keeps its health verdict, active or passive,
also when the reload changes its checks, and its in-flight count (which
least_conn balances on); a down server kept by a reload comes back when
healthy; a reload that removes the checks makes their servers eligible
(SPEC 2); a reload that fails changes no verdict.

A reload that forgot the verdict would make a down server healthy again
("new servers start healthy") until unhealthy_threshold checks had failed
anew, and it would get requests meanwhile. The checks here use thresholds
and intervals that make that window at least one whole interval long, and
look inside it: /status right after the reload, then requests.
"""

import signal
import time

import pytest

import harness
from harness import free_port, status_servers, wait_until

ROUTES = [{"match": {"path_prefix": "/"}, "upstream": "backend"}]
# Added by reloads that keep the servers and change "something else".
PONG_ROUTE = {"match": {"path_prefix": "/pong"}, "respond": {"status": 200, "body": "pong\n"}}
# A down server needs two failed checks to be marked down again after a
# reset, i.e. at least one interval: 2 s here.
SLOW_CHECK = {"path": "/health", "interval": "2s", "timeout": "500ms",
              "healthy_threshold": 2, "unhealthy_threshold": 2}


def servers(proxy):
    return status_servers(proxy, "backend")


def generation(proxy):
    return harness.admin_status(proxy)["generation"]


def rewrite(proxy, cfg):
    with open(proxy.config_path, "w") as f:
        f.write(harness.to_yaml(cfg) + "\n")


def reload_by_post(proxy, cfg):
    """Writes cfg and POSTs /reload; returns the new generation."""
    rewrite(proxy, cfg)
    with harness.HttpClient(proxy.admin_port, timeout=5) as c:
        r = c.request("POST", "/reload", body=b"")
    assert r.status == 200, r
    assert r.json()["ok"] is True, r
    return r.json()["generation"]


def reload_by_sighup(proxy, cfg):
    before = generation(proxy)
    rewrite(proxy, cfg)
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: generation(proxy) == before + 1, 5, interval=0.005, message="the SIGHUP reload")
    return before + 1


def origins_of(proxy, env, n):
    """X-Origin of n requests on one keep-alive connection (each must be a 200)."""
    return harness.origins_answering(env.client(proxy), n, "/small")


def test_a_down_server_kept_by_a_reload_stays_down(env):
    a, b, c = env.origins_named("a", "b", "c")
    assert b.post("/health/down").status == 200  # b answers requests, but fails its checks
    cfg = env.config(ROUTES, [harness.upstream("backend", [a, b], health_check=SLOW_CHECK)])
    proxy = env.sluice(cfg)
    wait_until(lambda: servers(proxy)[b.address]["healthy"] is False, 5, message="b marked down")
    assert servers(proxy)[a.address]["healthy"] is True
    assert set(origins_of(proxy, env, 6)) == {"a"}

    # Keep a and b, add c and a route: only "something else" changes.
    cfg["upstreams"] = [harness.upstream("backend", [a, b, c], health_check=SLOW_CHECK)]
    cfg["listeners"][0]["routes"] = [PONG_ROUTE] + ROUTES
    t_reload = time.monotonic()
    assert reload_by_post(proxy, cfg) == 2

    st = servers(proxy)
    assert st[b.address]["healthy"] is False, st  # still down, without a new check
    assert st[a.address]["healthy"] is True, st
    assert st[c.address]["healthy"] is True, st  # new servers start healthy
    # Round robin over three servers: b would get every third request were it up.
    seen = []

    def a_and_c_seen():
        seen.extend(origins_of(proxy, env, 6))
        return {"a", "c"} <= set(seen)

    wait_until(a_and_c_seen, 1.5, interval=0, message="requests reaching a and c")
    assert "b" not in seen, seen
    assert env.client(proxy).get("/pong").body == b"pong\n"  # the new config is in force
    # All of it inside the window a forgotten verdict would have opened.
    assert time.monotonic() - t_reload < 1.9, "too slow to tell; the machine is overloaded"
    # The added server is checked at once; b stays down after later checks too.
    wait_until(lambda: "last_check" in servers(proxy)[c.address], 2, message="c checked")
    assert servers(proxy)[b.address]["healthy"] is False
    assert [r["server"] for r in harness.log_messages(proxy, "server down")] == [b.address]


def test_a_verdict_survives_a_reload_that_changes_the_health_check(env):
    a, b = env.origins_named("a", "b")
    dead = f"127.0.0.1:{free_port()}"
    fast = {"path": "/health", "interval": "150ms", "timeout": "150ms", "healthy_threshold": 2,
            "unhealthy_threshold": 2}
    assert b.post("/health/down").status == 200
    cfg = env.config(ROUTES, [harness.upstream("backend", [a, b, dead], health_check=fast)])
    proxy = env.sluice(cfg)
    wait_until(lambda: [servers(proxy)[x]["healthy"] for x in (a.address, b.address, dead)] == [True, False, False],
               5, message="b and the dead server marked down")
    # Same servers, checks now every 5 s with 3 failures to go down: a reset
    # verdict could not be restored for 10 s.
    slow = dict(fast, interval="5s", timeout="1s", unhealthy_threshold=3)
    cfg["upstreams"] = [harness.upstream("backend", [a, b, dead], health_check=slow)]
    t_reload = time.monotonic()
    reload_by_sighup(proxy, cfg)
    st = servers(proxy)
    assert (st[a.address]["healthy"], st[b.address]["healthy"], st[dead]["healthy"]) == (True, False, False), st
    assert set(origins_of(proxy, env, 9)) == {"a"}
    assert time.monotonic() - t_reload < 4.5, "too slow to tell; the machine is overloaded"


def test_a_down_server_kept_by_a_reload_comes_back_when_healthy(env):
    # The new prober goes on checking the kept server: once healthy again it
    # needs healthy_threshold successes (3 at 1 s here, so not at the reload
    # itself) and is logged "server up" once.
    a, b = env.origins_named("a", "b")
    hc = {"path": "/health", "interval": "1s", "timeout": "500ms", "healthy_threshold": 3,
          "unhealthy_threshold": 1}
    assert b.post("/health/down").status == 200
    cfg = env.config(ROUTES, [harness.upstream("backend", [a, b], health_check=hc)])
    proxy = env.sluice(cfg)
    wait_until(lambda: servers(proxy)[b.address]["healthy"] is False, 5, message="b marked down")
    assert b.post("/health/up").status == 200
    cfg["listeners"][0]["routes"] = [PONG_ROUTE] + ROUTES
    reload_by_post(proxy, cfg)
    assert servers(proxy)[b.address]["healthy"] is False
    t0 = time.monotonic()
    wait_until(lambda: servers(proxy)[b.address]["healthy"] is True, 5, interval=0.01, message="b up again")
    assert time.monotonic() - t0 < 3.5
    assert set(origins_of(proxy, env, 4)) == {"a", "b"}
    wait_until(lambda: harness.log_messages(proxy, "server up"), 2, message="a 'server up' line")
    assert [r["server"] for r in harness.log_messages(proxy, "server up")] == [b.address]
    assert [r["server"] for r in harness.log_messages(proxy, "server down")] == [b.address]


def test_a_passive_verdict_survives_a_reload(env):
    a = env.origin("a")
    dead = f"127.0.0.1:{free_port()}"
    extra = {"passive": {"max_fails": 1, "fail_timeout": "30s"}, "retries": 1}
    cfg = env.config(ROUTES, [harness.upstream("backend", [dead, a], **extra)])
    proxy = env.sluice(cfg)
    # Round robin reaches the dead server within two requests; the retry hides it.
    assert origins_of(proxy, env, 2) == ["a", "a"]
    wait_until(lambda: servers(proxy)[dead]["healthy"] is False, 2, message="the passive verdict")
    cfg["listeners"][0]["routes"] = [PONG_ROUTE] + ROUTES
    reload_by_post(proxy, cfg)
    assert servers(proxy)[dead]["healthy"] is False, servers(proxy)
    assert servers(proxy)[a.address]["healthy"] is True


def test_in_flight_count_of_a_kept_server_survives_a_reload(env):
    a, b, c = env.origins_named("a", "b", "c")
    cfg = env.config(ROUTES, [harness.upstream("backend", [a, b], balance="least_conn")])
    proxy = env.sluice(cfg)
    watch = harness.ArrivalWatch([a, b])
    slow = env.client(proxy)
    slow.send(harness.build_request("GET", "/delay/4000"))
    arrived = watch.wait(1)
    busy_name = [name for name, n in arrived.items() if n == 1][0]
    busy = {"a": a, "b": b}[busy_name]
    idle = b if busy is a else a
    assert servers(proxy)[busy.address]["in_flight"] == 1

    cfg["upstreams"] = [harness.upstream("backend", [a, b, c], balance="least_conn")]
    t_reload = time.monotonic()
    reload_by_post(proxy, cfg)
    st = servers(proxy)
    assert st[busy.address]["in_flight"] == 1, st
    assert st[idle.address]["in_flight"] == 0 and st[c.address]["in_flight"] == 0, st
    # least_conn: the busy server has the most in flight, so it gets none of
    # these; were its count forgotten it would take a third of them.
    quick = origins_of(proxy, env, 6)
    assert busy_name not in quick, (busy_name, quick)
    assert set(quick) == {idle.name, "c"}, quick
    assert time.monotonic() - t_reload < 3.5, "too slow to tell; the machine is overloaded"

    r = slow.read_response(timeout=10)
    assert r.status == 200 and r.header("X-Origin") == busy_name, r
    # The request that started before the reload leaves the same counter: 0, not -1 or 1.
    wait_until(lambda: servers(proxy)[busy.address]["in_flight"] == 0, 3, message="the count back to 0")
    assert all(s["in_flight"] == 0 for s in servers(proxy).values()), servers(proxy)


def test_in_flight_count_of_a_removed_then_kept_server_is_not_lost(env):
    # Two reloads while one request is in flight: the first removes the
    # server, the second brings it back. Its count must still be 1 (the
    # request is still there) and end at 0.
    a, b = env.origins_named("a", "b")
    cfg = env.config(ROUTES, [harness.upstream("backend", [a], balance="least_conn")])
    proxy = env.sluice(cfg)
    slow = env.client(proxy)
    slow.send(harness.build_request("GET", "/delay/3000"))
    wait_until(lambda: servers(proxy)[a.address]["in_flight"] == 1, 3, message="a busy")
    cfg["upstreams"] = [harness.upstream("backend", [b], balance="least_conn")]
    reload_by_post(proxy, cfg)
    cfg["upstreams"] = [harness.upstream("backend", [a, b], balance="least_conn")]
    reload_by_post(proxy, cfg)
    st = servers(proxy)
    assert st[a.address]["in_flight"] == 1, st
    assert origins_of(proxy, env, 3) == ["b"] * 3
    r = slow.read_response(timeout=10)
    assert r.status == 200 and r.header("X-Origin") == "a", r
    wait_until(lambda: servers(proxy)[a.address]["in_flight"] == 0, 3, message="a's count back to 0")


def test_removing_the_health_check_makes_a_down_server_eligible(env):
    # SPEC 2: without health_check, servers are healthy unless passive checks
    # fail. A verdict from checks that no longer run cannot be kept.
    a, b = env.origins_named("a", "b")
    hc = {"path": "/health", "interval": "150ms", "timeout": "150ms", "unhealthy_threshold": 2}
    assert b.post("/health/down").status == 200
    cfg = env.config(ROUTES, [harness.upstream("backend", [a, b], health_check=hc)])
    proxy = env.sluice(cfg)
    wait_until(lambda: servers(proxy)[b.address]["healthy"] is False, 5, message="b marked down")
    cfg["upstreams"] = [harness.upstream("backend", [a, b])]
    reload_by_post(proxy, cfg)
    wait_until(lambda: servers(proxy)[b.address]["healthy"] is True, 3,
               message="b eligible once its checks are gone")
    assert set(origins_of(proxy, env, 4)) == {"a", "b"}


def test_a_failed_reload_that_would_drop_the_checks_changes_no_verdict(env, tmp_path):
    # SPEC 7: a reload that fails leaves everything as it was. This one
    # removes the health check (which would make b eligible) and adds a TLS
    # listener whose certificate cannot be loaded, so it is refused.
    a, b = env.origins_named("a", "b")
    assert b.post("/health/down").status == 200
    cfg = env.config(ROUTES, [harness.upstream("backend", [a, b], health_check=SLOW_CHECK)])
    proxy = env.sluice(cfg)
    wait_until(lambda: servers(proxy)[b.address]["healthy"] is False, 5, message="b marked down")
    t_reload = time.monotonic()
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    (tmp_path / "bad.key").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    bad = dict(cfg)
    bad["upstreams"] = [harness.upstream("backend", [a, b])]
    bad["listeners"] = cfg["listeners"] + [{
        "name": "tls", "bind": f"127.0.0.1:{free_port()}", "routes": ROUTES,
        "tls": {"certificates": [{"cert_file": str(tmp_path / "bad.crt"), "key_file": str(tmp_path / "bad.key")}]}}]
    rewrite(proxy, bad)
    with harness.HttpClient(proxy.admin_port, timeout=5) as c:
        r = c.request("POST", "/reload", body=b"")
    assert r.status == 400, r
    assert generation(proxy) == 1
    assert set(origins_of(proxy, env, 6)) == {"a"}
    assert servers(proxy)[b.address]["healthy"] is False, servers(proxy)
    assert time.monotonic() - t_reload < 1.9, "too slow to tell; the machine is overloaded"

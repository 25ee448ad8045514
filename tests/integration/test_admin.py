"""SPEC 8 (the parts of the foundation): admin /healthz and /ready."""

import signal

import harness
from harness import ArrivalWatch, http_get, wait_until


def test_healthz_and_ready(env):
    o = env.origin("o")
    proxy = env.proxy([o])
    r = http_get(proxy.admin_port, "/healthz")
    assert r.status == 200 and r.body.strip() == b"ok", r
    assert http_get(proxy.admin_port, "/ready").status == 200


def test_admin_listener_does_not_proxy(env):
    o = env.origin("o")
    proxy = env.proxy([o])
    watch = ArrivalWatch([o])
    r = http_get(proxy.admin_port, "/small")
    assert r.header("X-Origin") is None, r
    assert r.status == 404, r
    assert watch.arrived() == {"o": 0}


def test_healthz_stays_200_while_draining(env):
    o = env.origin("o")
    proxy = env.proxy([o], timeouts={"shutdown_grace": "10s"})
    watch = ArrivalWatch([o])
    c = env.client(proxy)
    c.send(harness.build_request("GET", "/delay/2000"))
    watch.wait(1)
    proxy.signal(signal.SIGTERM)
    wait_until(lambda: proxy.ready_status(timeout=0.5) == 503, 1.5, message="/ready == 503")
    r = http_get(proxy.admin_port, "/healthz", timeout=1)
    assert r.status == 200 and r.body.strip() == b"ok", r
    assert c.read_response().status == 200
    assert proxy.wait(10) == 0, proxy.output_tail()

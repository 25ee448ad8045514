"""SPEC 8: GET /metrics on the admin listener (docs/METRICS.md).

Exact counter increments after a known set of requests (per code, per
upstream, per server), client connections active and total, health-check
counters, reload counters, HELP/TYPE of every SPEC metric, and
`promtool check metrics` reporting nothing.

The request hooks run after the response has been written, so a scrape right
after the client has its response may not show that request yet: the tests
poll until the expected values appear (deadline, not sleep), then check that
nothing more than expected was counted.
"""

import os
import re
import shutil
import subprocess

import pytest

import harness
from harness import HttpClient, build_request, http_get, wait_until

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

# SPEC 8: name -> (type, labels)
SPEC_METRICS = {
    "sluice_http_requests_total": ("counter", {"listener", "upstream", "code"}),
    "sluice_http_request_duration_seconds": ("histogram", {"listener", "upstream"}),
    "sluice_upstream_requests_total": ("counter", {"upstream", "server"}),
    "sluice_upstream_server_healthy": ("gauge", {"upstream", "server"}),
    "sluice_upstream_server_in_flight": ("gauge", {"upstream", "server"}),
    "sluice_health_checks_total": ("counter", {"upstream", "server", "result"}),
    "sluice_downstream_connections_active": ("gauge", {"listener"}),
    "sluice_downstream_connections_total": ("counter", {"listener"}),
    "sluice_config_reloads_total": ("counter", {"result"}),
    "sluice_config_last_reload_successful": ("gauge", set()),
    "sluice_build_info": ("gauge", {"version"}),
}


class Exposition:
    """One scrape: samples by (name, frozenset of labels), HELP and TYPE by family."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        self.helps = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
            elif line.startswith("# HELP "):
                _, _, name, *rest = line.split(" ", 3)
                self.helps[name] = rest[0] if rest else ""
            elif line and not line.startswith("#"):
                m = SAMPLE.match(line)
                assert m, f"unparsable sample line: {line!r}"
                labels = frozenset(LABEL.findall(m.group(2) or ""))
                key = (m.group(1), labels)
                assert key not in self.samples, f"duplicate series: {line!r}"
                self.samples[key] = float(m.group(3))

    def get(self, name, **labels):
        """The sample's value, or None when the series is absent."""
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name):
        """[(labels dict, value)] of every sample called `name`."""
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]


def scrape(proxy):
    r = http_get(proxy.admin_port, "/metrics")
    assert r.status == 200, r
    assert r.header("Content-Type", "").startswith("text/plain; version=0.0.4"), r
    return Exposition(r.body.decode())


def scrape_until(proxy, predicate, timeout=5.0, message="metrics"):
    """The first scrape for which predicate(exposition) is true."""
    return wait_until(lambda: (lambda e: e if predicate(e) else None)(scrape(proxy)), timeout, message=message)


def metrics_proxy(env, origins, workers=2, upstream_extra=None, **overrides):
    """A proxy whose listener "public" sends /small and /status/* to upstream
    "backend" (the origins), answers /teapot itself with 418 and everything
    else with 404 (no route)."""
    routes = [
        {"match": {"path_prefix": "/small"}, "upstream": "backend"},
        {"match": {"path_prefix": "/status/"}, "upstream": "backend"},
        {"match": {"path_prefix": "/teapot"}, "respond": {"status": 418, "body": "short and stout\n"}},
    ]
    upstreams = [harness.upstream("backend", origins, **(upstream_extra or {}))]
    return env.sluice(env.config(routes, upstreams, workers=workers, **overrides))


def test_request_counts_by_code_upstream_and_server(env):
    o1, o2 = env.origins_named("o1", "o2")
    proxy = metrics_proxy(env, [o1, o2])
    by_origin = {"o1": 0, "o2": 0}
    expected = {}  # (upstream, code) -> requests

    def send(target, upstream, code):
        # One request per connection: connections land on both workers.
        r = proxy.get(target)
        assert r.status == code, r
        if upstream:
            by_origin[r.header("X-Origin")] += 1
        expected[(upstream, str(code))] = expected.get((upstream, str(code)), 0) + 1

    for _ in range(6):
        send("/small", "backend", 200)
    for _ in range(2):
        send("/status/503", "backend", 503)
    send("/status/404", "backend", 404)
    for _ in range(3):
        send("/nowhere", "", 404)
    send("/teapot", "", 418)
    total = sum(expected.values())

    def complete(e):
        hist = e.get("sluice_http_request_duration_seconds_count", listener="public", upstream="backend")
        return hist == 9 and e.get("sluice_downstream_connections_active", listener="public") == 0

    e = scrape_until(proxy, complete, message="all requests counted")

    # Exactly these requests, per (upstream, code); nothing else.
    counted = {(s["upstream"], s["code"]): v for s, v in e.series("sluice_http_requests_total")}
    assert all(s["listener"] == "public" for s, _ in e.series("sluice_http_requests_total"))
    assert counted == expected, e.text

    # Histograms: one observation per request, buckets cumulative, +Inf == _count.
    for upstream, n in (("backend", 9), ("", 4)):
        labels = {"listener": "public", "upstream": upstream}
        assert e.get("sluice_http_request_duration_seconds_count", **labels) == n
        buckets = sorted(
            ((float(s["le"]), v) for s, v in e.series("sluice_http_request_duration_seconds_bucket")
             if s["upstream"] == upstream),
        )
        assert buckets[0][0] == 0.001 and buckets[-2][0] == 120 and buckets[-1][0] == float("inf"), buckets
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), buckets
        assert counts[-1] == n
        total_seconds = e.get("sluice_http_request_duration_seconds_sum", **labels)
        assert 0 < total_seconds < 5 * n

    # Per server: what each origin answered.
    for o in (o1, o2):
        assert e.get("sluice_upstream_requests_total", upstream="backend", server=o.address) == by_origin[o.name], (
            by_origin,
            e.text,
        )
        assert e.get("sluice_upstream_server_healthy", upstream="backend", server=o.address) == 1
        assert e.get("sluice_upstream_server_in_flight", upstream="backend", server=o.address) == 0
    assert by_origin["o1"] > 0 and by_origin["o2"] > 0, by_origin

    # One connection per request, all closed now.
    assert e.get("sluice_downstream_connections_total", listener="public") == total
    assert e.get("sluice_downstream_connections_active", listener="public") == 0

    # A second scrape counts nothing new.
    again = scrape(proxy)
    assert {(s["upstream"], s["code"]): v for s, v in again.series("sluice_http_requests_total")} == expected


def test_downstream_connections_active_and_total(env):
    o = env.origin("o")
    proxy = metrics_proxy(env, [o])
    clients = [env.client(proxy) for _ in range(3)]
    for c in clients:
        assert c.get("/small").status == 200  # keep-alive: the connection stays
    e = scrape_until(
        proxy,
        lambda e: e.get("sluice_downstream_connections_active", listener="public") == 3,
        message="3 active connections",
    )
    assert e.get("sluice_downstream_connections_total", listener="public") == 3
    # A second request on a kept-alive connection is not a new connection.
    assert clients[0].get("/small").status == 200
    clients[0].close()
    clients[1].close()
    e = scrape_until(
        proxy,
        lambda e: e.get("sluice_downstream_connections_active", listener="public") == 1,
        message="1 active connection",
    )
    assert e.get("sluice_downstream_connections_total", listener="public") == 3
    e = scrape_until(
        proxy,
        lambda e: e.get("sluice_http_requests_total", listener="public", upstream="backend", code="200") == 4,
        message="4 requests counted",
    )
    assert e.get("sluice_upstream_requests_total", upstream="backend", server=o.address) == 4


def test_health_check_counters_move(env):
    o = env.origin("o")
    health = {
        "path": "/health",
        "interval": "100ms",
        "timeout": "1s",
        "healthy_threshold": 1,
        "unhealthy_threshold": 2,
    }
    proxy = metrics_proxy(env, [o], upstream_extra={"health_check": health})
    labels = {"upstream": "backend", "server": o.address}

    e = scrape_until(
        proxy,
        lambda e: (e.get("sluice_health_checks_total", result="success", **labels) or 0) >= 2,
        message="successful health checks counted",
    )
    assert e.get("sluice_health_checks_total", result="failure", **labels) == 0
    assert e.get("sluice_upstream_server_healthy", **labels) == 1

    with HttpClient(o.port) as c:
        assert c.request("POST", "/health/down", body=b"").status == 200
    e = scrape_until(
        proxy,
        lambda e: e.get("sluice_upstream_server_healthy", **labels) == 0,
        message="server marked unhealthy",
    )
    assert e.get("sluice_health_checks_total", result="failure", **labels) >= 2
    successes = e.get("sluice_health_checks_total", result="success", **labels)

    with HttpClient(o.port) as c:
        assert c.request("POST", "/health/up", body=b"").status == 200
    e = scrape_until(
        proxy,
        lambda e: e.get("sluice_upstream_server_healthy", **labels) == 1,
        message="server healthy again",
    )
    assert e.get("sluice_health_checks_total", result="success", **labels) > successes


def test_health_checks_absent_without_health_check(env):
    o = env.origin("o")
    proxy = metrics_proxy(env, [o])
    e = scrape(proxy)
    assert e.series("sluice_health_checks_total") == []
    assert e.types["sluice_health_checks_total"] == "counter"


def test_reload_counters(env):
    o = env.origin("o")
    proxy = metrics_proxy(env, [o])
    e = scrape(proxy)
    assert e.get("sluice_config_reloads_total", result="success") == 0
    assert e.get("sluice_config_reloads_total", result="failure") == 0
    assert e.get("sluice_config_last_reload_successful") == 1

    good = open(proxy.config_path).read()
    with open(proxy.config_path, "w") as f:
        f.write("listeners: [\n")  # not YAML
    with HttpClient(proxy.admin_port) as c:
        r = c.request("POST", "/reload", body=b"")
    assert r.status == 400, r
    e = scrape(proxy)
    assert e.get("sluice_config_reloads_total", result="failure") == 1
    assert e.get("sluice_config_last_reload_successful") == 0

    with open(proxy.config_path, "w") as f:
        f.write(good)
    with HttpClient(proxy.admin_port) as c:
        r = c.request("POST", "/reload", body=b"")
    assert r.status == 200, r
    e = scrape(proxy)
    assert e.get("sluice_config_reloads_total", result="success") == 1
    assert e.get("sluice_config_reloads_total", result="failure") == 1
    assert e.get("sluice_config_last_reload_successful") == 1


def test_every_spec_metric_has_help_type_and_labels(env):
    o = env.origin("o")
    proxy = metrics_proxy(env, [o], upstream_extra={"health_check": {"path": "/health", "interval": "100ms"}})
    assert proxy.get("/small").status == 200
    assert proxy.get("/nowhere").status == 404
    e = scrape_until(
        proxy,
        lambda e: e.get("sluice_http_request_duration_seconds_count", listener="public", upstream="") == 1
        and (e.get("sluice_health_checks_total", upstream="backend", server=o.address, result="success") or 0) >= 1,
        message="a request of each kind and a health check counted",
    )
    for name, (kind, labels) in SPEC_METRICS.items():
        assert e.types.get(name) == kind, (name, e.types.get(name))
        assert e.helps.get(name), name
        sample_name = name + "_count" if kind == "histogram" else name
        series = e.series(sample_name)
        assert series, f"no samples for {name}"
        for s, _ in series:
            assert set(s) == labels, (name, s)
    assert e.get("sluice_build_info", version=e.series("sluice_build_info")[0][0]["version"]) == 1


def test_promtool_finds_nothing(env):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    o1, o2 = env.origins_named("o1", "o2")
    proxy = metrics_proxy(env, [o1, o2], upstream_extra={"health_check": {"path": "/health", "interval": "100ms"}})
    for target in ("/small", "/small", "/status/500", "/nowhere", "/teapot"):
        proxy.get(target)
    c = env.client(proxy)
    c.send(build_request("GET", "/small"))
    assert c.read_response().status == 200  # one connection still open
    scrape_until(
        proxy,
        lambda e: e.get("sluice_http_request_duration_seconds_count", listener="public", upstream="backend") == 4,
        message="requests counted",
    )
    text = http_get(proxy.admin_port, "/metrics").body
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        timeout=30,
        env={**os.environ, "LANG": "C"},
    )
    report = (result.stdout + result.stderr).decode()
    assert result.returncode == 0 and report.strip() == "", report

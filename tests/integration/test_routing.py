"""SPEC 2 (routes) and 3: host and path matching, respond, redirect, 404."""

import pytest

import harness
from harness import UUID4_RE, assert_proxy_error


@pytest.fixture
def routed(env):
    api, wild, static = env.origins_named("api", "wild", "static")
    routes = [
        {"match": {"host": "api.example.com"}, "upstream": "api"},
        {"match": {"host": "*.example.com"}, "upstream": "wild"},
        {"match": {"path_prefix": "/static/"}, "upstream": "static"},
        # Never reached: "/static/" above already matches these paths.
        {"match": {"path_prefix": "/static/special"}, "upstream": "api"},
        {"match": {"path_prefix": "/ping"}, "respond": {"status": 200, "body": "pong\n"}},
        {"match": {"path_prefix": "/teapot"}, "respond": {"status": 418, "body": "short and stout\n"}},
        {"match": {"path_prefix": "/old"}, "redirect": {"scheme": "https", "port": 8443}},
        {"match": {"path_prefix": "/moved"}, "redirect": {"scheme": "https", "status": 301}},
    ]
    upstreams = [harness.upstream("api", [api]), harness.upstream("wild", [wild]), harness.upstream("static", [static])]
    return env.sluice(env.config(routes, upstreams))


def origin_of(proxy, target, host):
    """The name of the origin that answered (None when the proxy did)."""
    return proxy.get(target, host=host).header("X-Origin")


def no_match(proxy, target, host):
    r = proxy.get(target, host=host)
    return r.status == 404 and r.header("X-Origin") is None


def test_exact_host(routed):
    assert origin_of(routed, "/", "api.example.com") == "api"
    # The exact host wins for any path, before the path-only routes.
    assert origin_of(routed, "/ping", "api.example.com") == "api"


def test_wildcard_host_matches_one_extra_label_only(routed):
    assert origin_of(routed, "/", "a.example.com") == "wild"
    assert origin_of(routed, "/", "www.example.com") == "wild"
    assert no_match(routed, "/", "a.b.example.com")
    assert no_match(routed, "/", "example.com")
    assert no_match(routed, "/", "aexample.com")


def test_host_is_case_insensitive(routed):
    assert origin_of(routed, "/", "API.Example.COM") == "api"
    assert origin_of(routed, "/", "A.EXAMPLE.COM") == "wild"


def test_port_in_host_is_ignored(routed):
    assert origin_of(routed, "/", "api.example.com:8080") == "api"
    assert origin_of(routed, "/", "a.example.com:1") == "wild"


def test_path_prefix(routed):
    assert origin_of(routed, "/static/app.css", "localhost") == "static"
    assert origin_of(routed, "/static/", "localhost") == "static"
    # A literal prefix: "/static" and "/staticx" do not start with "/static/".
    assert no_match(routed, "/static", "localhost")
    assert no_match(routed, "/staticx/app.css", "localhost")


def test_first_match_wins(routed):
    assert origin_of(routed, "/static/special/x", "localhost") == "static"


def test_target_reaches_the_origin_unchanged(routed):
    r = routed.get("/headers?x=1&y=%20", host="q.example.com")
    assert r.status == 200 and r.header("X-Origin") == "wild"
    assert r.json()["target"] == "/headers?x=1&y=%20"


def test_respond_action(routed):
    r = routed.get("/ping", host="localhost")
    assert r.status == 200
    assert r.body == b"pong\n"
    assert UUID4_RE.match(r.header("X-Request-ID") or ""), r
    r = routed.get("/teapot/x", host="localhost")
    assert r.status == 418
    assert r.body == b"short and stout\n"


def test_redirect_keeps_host_path_and_query(routed):
    r = routed.get("/old/path?x=1&y=2", host="www.test:8080")
    assert r.status == 308
    assert r.header("Location") == "https://www.test:8443/old/path?x=1&y=2"
    assert UUID4_RE.match(r.header("X-Request-ID") or ""), r


def test_redirect_with_status_and_default_port(routed):
    r = routed.get("/moved/a?b=c", host="www.test:8080")
    assert r.status == 301
    assert r.header("Location") == "https://www.test/moved/a?b=c"


def test_redirect_of_an_http10_request_without_host_names_the_address_it_came_to(routed, env):
    c = env.client(routed)
    c.send(b"GET /old/page?q=1 HTTP/1.0\r\n\r\n")
    r = c.read_response()
    assert r.status == 308, r
    assert r.header("Location") == "https://127.0.0.1:8443/old/page?q=1", r


def test_no_route_is_404_with_request_id(routed):
    r = routed.get("/nowhere", host="nothing.test")
    assert r.header("X-Origin") is None
    assert_proxy_error(r, 404)


def test_keep_alive_across_routes(routed, env):
    # Different routes, one client connection.
    c = env.client(routed)
    assert c.get("/ping").body == b"pong\n"
    assert c.get("/", host="api.example.com").header("X-Origin") == "api"
    assert c.get("/nowhere", host="nothing.test").status == 404
    assert c.get("/", host="a.example.com").header("X-Origin") == "wild"

"""SPEC 3: X-Forwarded-*, hop-by-hop headers, request IDs, the access log line."""

import pytest

from harness import UUID4_RE, Headers


def seen(resp):
    """What the origin received: (request info, Headers)."""
    assert resp.status == 200, resp
    info = resp.json()
    return info, Headers([tuple(h) for h in info["headers"]])


@pytest.fixture
def origin(env):
    return env.origin("o")


@pytest.fixture
def proxy(env, origin):
    return env.proxy([origin])


# -- X-Forwarded-*


def test_x_forwarded_for_is_the_client(proxy):
    _, h = seen(proxy.get("/headers"))
    assert h.get_all("X-Forwarded-For") == ["127.0.0.1"]


def test_untrusted_x_forwarded_headers_are_replaced(proxy):
    _, h = seen(proxy.get("/headers", {
        "X-Forwarded-For": "1.2.3.4",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.test",
    }, host="app.test"))
    assert h.get_all("X-Forwarded-For") == ["127.0.0.1"]
    assert h.get_all("X-Forwarded-Proto") == ["http"]
    assert h.get_all("X-Forwarded-Host") == ["app.test"]


def test_trusted_proxy_x_forwarded_for_is_appended_to(env, origin):
    proxy = env.proxy([origin], forwarded={"trusted_proxies": ["127.0.0.0/8"]})
    _, h = seen(proxy.get("/headers", {"X-Forwarded-For": "1.2.3.4"}))
    assert h.get_all("X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"]


def test_trusted_proxies_elsewhere_do_not_make_loopback_trusted(env, origin):
    proxy = env.proxy([origin], forwarded={"trusted_proxies": ["10.0.0.0/8", "::1/128"]})
    _, h = seen(proxy.get("/headers", {"X-Forwarded-For": "1.2.3.4"}))
    assert h.get_all("X-Forwarded-For") == ["127.0.0.1"]


def test_x_forwarded_proto_and_host(proxy):
    _, h = seen(proxy.get("/headers", host="app.test"))
    assert h.get_all("X-Forwarded-Proto") == ["http"]
    assert h.get_all("X-Forwarded-Host") == ["app.test"]
    assert h.get("Host") == "app.test"


# -- hop-by-hop


def test_hop_by_hop_headers_are_not_forwarded(proxy):
    info, h = seen(proxy.get("/headers", [
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Foo"),
        ("Upgrade", "h2c"),
        ("X-End-To-End", "kept"),
    ]))
    names = h.names()
    for name in ("x-secret-hop", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
        assert name not in names, (name, info["headers"])
    # The proxy may state its own connection handling, never the client's.
    for v in h.get_all("Connection"):
        assert v.strip().lower() in ("keep-alive", "close"), info["headers"]
    assert h.get_all("X-End-To-End") == ["kept"]


# -- request IDs


def test_new_request_id_reaches_origin_client_and_access_log(proxy):
    r = proxy.get("/headers")
    rid = r.header("X-Request-ID")
    assert rid and UUID4_RE.match(rid), r
    _, h = seen(r)
    assert h.get_all("X-Request-ID") == [rid]
    rec = proxy.wait_access_record(rid)
    assert rec["method"] == "GET" and rec["path"] == "/headers" and rec["status"] == 200, rec


def test_new_request_ids_are_unique(proxy, env):
    c = env.client(proxy)
    ids = [c.get("/small").header("X-Request-ID") for _ in range(5)]
    assert all(UUID4_RE.match(i or "") for i in ids), ids
    assert len(set(ids)) == 5, ids


def test_valid_incoming_request_id_is_kept(proxy):
    for rid in ("abc-123._:@+=XYZ", "a" * 200, "7"):
        r = proxy.get("/headers", {"X-Request-ID": rid})
        assert r.header("X-Request-ID") == rid, r
        _, h = seen(r)
        assert h.get_all("X-Request-ID") == [rid]


@pytest.mark.parametrize("bad", ["has space", "a" * 201, "semi;colon", "slash/y", "quote\"d"])
def test_invalid_incoming_request_id_is_replaced(proxy, bad):
    r = proxy.get("/headers", {"X-Request-ID": bad})
    rid = r.header("X-Request-ID")
    assert rid and UUID4_RE.match(rid), r
    _, h = seen(r)
    assert h.get_all("X-Request-ID") == [rid]


def test_trust_incoming_false_replaces_a_valid_id(env, origin):
    proxy = env.proxy([origin], request_id={"trust_incoming": False})
    r = proxy.get("/headers", {"X-Request-ID": "abc-123"})
    rid = r.header("X-Request-ID")
    assert rid != "abc-123" and UUID4_RE.match(rid or ""), r
    _, h = seen(r)
    assert h.get_all("X-Request-ID") == [rid]


def test_custom_request_id_header(env, origin):
    proxy = env.proxy([origin], request_id={"header": "X-Trace-Id"})
    r = proxy.get("/headers")
    rid = r.header("X-Trace-Id")
    assert rid and UUID4_RE.match(rid), r
    _, h = seen(r)
    assert h.get_all("X-Trace-Id") == [rid]
    proxy.wait_access_record(rid)
    r = proxy.get("/headers", {"X-Trace-Id": "trace-42"})
    assert r.header("X-Trace-Id") == "trace-42"
    _, h = seen(r)
    assert h.get_all("X-Trace-Id") == ["trace-42"]


# -- access log


def test_access_log_line(proxy, origin):
    r = proxy.get("/bytes/1234?q=1", {"X-Request-ID": "log-test-1"}, host="app.test")
    assert r.status == 200 and len(r.body) == 1234
    rec = proxy.wait_access_record("log-test-1")
    for field in ("ts", "request_id", "client", "listener", "method", "path", "host", "status",
                  "bytes_in", "bytes_out", "duration_ms", "upstream", "server"):
        assert field in rec, (field, rec)
    assert rec["type"] == "access"
    assert rec["listener"] == "public"
    assert rec["method"] == "GET"
    assert rec["path"] in ("/bytes/1234", "/bytes/1234?q=1"), rec
    assert rec["host"] == "app.test"
    assert rec["status"] == 200
    assert rec["upstream"] == "backend"
    assert rec["server"] == origin.address
    assert rec["client"].startswith("127.0.0.1"), rec
    assert rec["bytes_out"] >= 1234, rec
    assert 0 <= rec["duration_ms"] < 5000, rec


def test_access_log_line_for_a_proxy_answer(env, origin):
    proxy = env.proxy([origin], routes=[{"match": {"path_prefix": "/api/"}, "upstream": "backend"}])
    r = proxy.get("/elsewhere", {"X-Request-ID": "log-test-404"})
    assert r.status == 404
    rec = proxy.wait_access_record("log-test-404")
    assert rec["status"] == 404
    assert rec["upstream"] in ("", None), rec

"""Upstreams reached over HTTPS (an upstream's `tls` key): the front sluice
under test connects with TLS to a second sluice with a TLS listener (the
"HTTPS backend"), which forwards to a plain `sluice-bench origin`. The
backend's own X-Forwarded-Proto (https, since its listener is TLS) and its
handshake counters show what arrived over TLS."""

import hashlib
import os
import re

import pytest

import harness
import tlscerts
from harness import WS_BINARY, WS_CLOSE, WS_TEXT, WebSocketClient, assert_proxy_error


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("upstream-tls-certs"))
    f = tlscerts.CertFactory(d)
    f.backend = f.leaf("backend", "backend.test", ["backend.test"], kind="ec")
    return f


@pytest.fixture
def origin(env):
    return env.origin("o")


@pytest.fixture
def backend(env, origin, certs):
    """A sluice with a TLS listener in front of `origin`."""
    cfg = env.config([{"match": {"path_prefix": "/"}, "upstream": "app"}],
                     [harness.upstream("app", [origin])])
    cfg["listeners"][0]["tls"] = {"certificates": [certs.backend.entry()]}
    return env.sluice(cfg, label="https-backend")


def front(env, backend, tls, workers=None, **extra):
    """The sluice under test: everything to upstream "backend" = the HTTPS
    backend, with the upstream's `tls` settings."""
    overrides = {} if workers is None else {"workers": workers}
    return env.proxy([f"127.0.0.1:{backend.port}"], upstream_extra={"tls": tls, **extra}, **overrides)


def verified(certs, **more):
    return {"ca_file": certs.ca_file, "server_name": "backend.test", **more}


def full_handshakes(proxy):
    r = harness.http_get(proxy.admin_port, "/metrics")
    m = re.search(r'^sluice_tls_handshakes_total\{[^}]*result="full"[^}]*\} (\S+)$', r.body.decode(), re.M)
    return float(m.group(1)) if m else None


def seen_proto(resp):
    assert resp.status == 200, resp
    headers = harness.Headers([tuple(h) for h in resp.json()["headers"]])
    return headers.get("X-Forwarded-Proto")


def test_request_reaches_the_backend_over_verified_tls(env, backend, certs):
    proxy = front(env, backend, verified(certs))
    r = env.client(proxy).get("/headers")
    assert seen_proto(r) == "https", r  # set by the TLS listener of the backend
    assert full_handshakes(backend) == 1


def test_keep_alive_reuses_one_tls_connection(env, backend, certs):
    proxy = front(env, backend, verified(certs), workers=1)  # one pool
    for _ in range(3):
        c = env.client(proxy)
        for _ in range(3):
            assert c.get("/small").status == 200
        c.close()
    assert full_handshakes(backend) == 1  # nine requests, one TLS connection


@pytest.mark.parametrize("shape", ["content_length", "chunked", "expect_continue"])
def test_request_body_streams_over_tls(env, backend, certs, shape):
    proxy = front(env, backend, verified(certs))
    data = os.urandom(3 * 1024 * 1024 + 17)
    parts = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    c = env.client(proxy, timeout=30)
    if shape == "chunked":
        headers = [("Transfer-Encoding", "chunked")]
        parts = [harness.chunked_body(parts)]
    else:
        headers = [("Content-Length", str(len(data)))]
        if shape == "expect_continue":
            headers.append(("Expect", "100-continue"))
    r = c.request_streaming("POST", "/echo", headers, parts, timeout=30)
    assert r.status == 200, r
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert c.get("/small").status == 200


def test_websocket_through_a_tls_upstream(env, backend, certs):
    proxy = front(env, backend, verified(certs))
    ws = WebSocketClient(env.client(proxy))
    r = ws.handshake("/ws")
    assert r.status == 101 and ws.accept_ok(), r
    ws.send_text("through two proxies")
    assert ws.recv_message() == (WS_TEXT, b"through two proxies")
    blob = os.urandom(200_000)
    ws.send_binary(blob)
    assert ws.recv_message() == (WS_BINARY, blob)
    ws.send_close(1000)
    op, _ = ws.recv_message()
    assert op == WS_CLOSE


@pytest.mark.parametrize("tls", [
    {"server_name": "backend.test"},                     # the system's CAs: not ours
    {"ca_file": None, "server_name": "other.test"},      # our CA, but the wrong name
    {"ca_file": None},                                   # an IP address the certificate does not carry
], ids=["untrusted_ca", "wrong_name", "ip_not_in_certificate"])
def test_a_certificate_that_does_not_verify_is_502(env, backend, certs, tls):
    tls = {k: (certs.ca_file if k == "ca_file" else v) for k, v in tls.items()}
    proxy = front(env, backend, tls, retries=0)
    r = env.client(proxy).get("/small")
    rid = assert_proxy_error(r, 502)
    rec = proxy.wait_access_record(rid)
    assert rec["error"] == "upstream unreachable", rec
    assert full_handshakes(backend) == 0  # no handshake completed


def test_verify_false_accepts_any_certificate(env, backend):
    proxy = front(env, backend, {"verify": False})
    assert seen_proto(env.client(proxy).get("/headers")) == "https"


def test_health_checks_go_over_tls(env, backend, certs):
    good = front(env, backend, verified(certs),
                 health_check={"path": "/status/200", "interval": "200ms", "healthy_threshold": 1})
    bad = front(env, backend, verified(certs, server_name="other.test"),
                health_check={"path": "/status/200", "interval": "200ms", "unhealthy_threshold": 1})

    def state(proxy):
        s = list(harness.status_servers(proxy, "backend").values())[0]
        return s["healthy"], (s.get("last_check") or {})

    harness.wait_until(lambda: state(good)[1].get("ok") is True and state(good)[0], 5,
                       message="a passing check over TLS")
    harness.wait_until(lambda: state(bad)[1].get("ok") is False and not state(bad)[0], 5,
                       message="a failing check (name mismatch)")
    assert "tls" in state(bad)[1].get("error", ""), state(bad)


def test_check_names_a_missing_ca_file(env, tmp_path):
    cfg = env.config([{"match": {"path_prefix": "/"}, "upstream": "backend"}],
                     [harness.upstream("backend", ["127.0.0.1:9"], tls={"ca_file": str(tmp_path / "nope.pem")})])
    path = tmp_path / "check.yaml"
    path.write_text(harness.to_yaml(cfg))
    p = harness.run_sluice(env.sluice_bin, ["--config", str(path), "--check"])
    assert p.returncode == 1, p
    err = p.stderr.decode()
    assert re.search(r"check\.yaml:\d+:\d+: upstreams\[0\]\.tls\.ca_file: cannot load CA file", err), err


def test_unknown_tls_key_is_an_error(env, tmp_path):
    cfg = env.config([{"match": {"path_prefix": "/"}, "upstream": "backend"}],
                     [harness.upstream("backend", ["127.0.0.1:9"], tls={"verfy": False})])
    path = tmp_path / "typo.yaml"
    path.write_text(harness.to_yaml(cfg))
    p = harness.run_sluice(env.sluice_bin, ["--config", str(path), "--check"])
    assert p.returncode == 1, p
    assert "upstreams[0].tls.verfy" in p.stderr.decode(), p.stderr

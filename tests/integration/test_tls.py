"""SPEC 2 (listener `tls`), 6 and 7: TLS termination on listeners.

Certificates are made once per session with the openssl CLI
(tests/support/tlscerts.py): a root CA, an intermediate signed by it, and
leaves signed by the intermediate whose cert files hold leaf + intermediate.
Clients trust only the root, so a verified handshake proves the full chain
was sent. The listener's first certificate is the RSA one for b.test, so a
name that must fall back to the default is told apart from a name that
matches the ECDSA a.test / *.wild.test certificate.

testssl.sh (Debian package `testssl.sh`) is run against a listener with a
bounded time; its test is skipped only when the command is not installed.
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import warnings

import pytest

import harness
import tlscerts
from harness import (UUID4_RE, WS_BINARY, WS_CLOSE, WS_TEXT, Headers, HttpClient, TlsHttpClient, WebSocketClient,
                     wait_until)


# --------------------------------------------------------------------------
# Certificates and helpers


class Certs:
    pass


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls-certs"))
    f = tlscerts.CertFactory(d)
    c = Certs()
    c.ca_file = f.ca_file
    c.intermediate_file = f.int_file
    c.b = f.leaf("b", "b.test", ["b.test"], kind="rsa")
    c.a = f.leaf("a", "a.test", ["a.test", "*.wild.test"], kind="ec")
    c.cn_only = f.leaf("cn-only", "cn-only.test", [], kind="ec")
    # The replacement of `a` for the reload tests: same names, new CN and serial.
    c.a2 = f.leaf("a2", "a-reloaded.test", ["a.test", "*.wild.test"], kind="ec")
    return c


def copy_leaf(leaf, workdir, name):
    """Copies of a leaf's cert and key files in `workdir` (for tests that
    rewrite them); returns the config entry."""
    cert = os.path.join(workdir, f"{name}.crt")
    key = os.path.join(workdir, f"{name}.key")
    shutil.copyfile(leaf.cert_file, cert)
    shutil.copyfile(leaf.key_file, key)
    return {"cert_file": cert, "key_file": key}


def replace_file(src, dst):
    """Atomically replace dst with a copy of src (as a deploy would)."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def default_entries(certs):
    """b (RSA, the default), a (ECDSA, a.test + *.wild.test), cn-only (no SAN)."""
    return [certs.b.entry(), certs.a.entry(), certs.cn_only.entry()]


def tls_config(env, origins, entries, min_version=None, routes=None, **overrides):
    routes = routes or [{"match": {"path_prefix": "/"}, "upstream": "backend"}]
    cfg = env.config(routes, [harness.upstream("backend", origins)], **overrides)
    tls = {"certificates": entries}
    if min_version is not None:
        tls["min_version"] = min_version
    cfg["listeners"][0]["tls"] = tls
    return cfg


def tls_proxy(env, origins, entries, min_version=None, extra_args=(), **overrides):
    return env.sluice(tls_config(env, origins, entries, min_version, **overrides), extra_args=extra_args)


def ctx(certs=None, **kw):
    """A client context verifying against the root CA only (no hostname check)."""
    return tlscerts.client_context(certs.ca_file if certs else None, **kw)


def connect(env, port, context, sni=None, session=None, timeout=10.0):
    c = TlsHttpClient(port if isinstance(port, int) else port.port, context, server_hostname=sni,
                      session=session, timeout=timeout)
    env.clients.append(c)
    return c


def seen(resp):
    """What the origin's /headers saw: (request info, Headers)."""
    assert resp.status == 200, resp
    info = resp.json()
    return info, Headers([tuple(h) for h in info["headers"]])


def served_leaf(certs, client):
    """Which of the session's leaves the server sent (by DER), or the DER."""
    der = client.peer_der()
    for leaf in (certs.a, certs.b, certs.cn_only, certs.a2):
        if der == leaf.leaf_der:
            return leaf.name
    return der


def handshake_error(context, port, sni="a.test"):
    """The ssl.SSLError of a handshake that must fail (None if it succeeded)."""
    try:
        with TlsHttpClient(port, context, server_hostname=sni, timeout=5.0):
            return None
    except ssl.SSLError as exc:
        return exc


def admin_request(proxy, method, target):
    with HttpClient(proxy.admin_port, timeout=10.0) as c:
        return c.request(method, target)


@pytest.fixture
def origin(env):
    return env.origin("o")


@pytest.fixture
def proxy(env, origin, certs):
    return tls_proxy(env, [origin], default_entries(certs))


# --------------------------------------------------------------------------
# Certificate selection (SNI), chain, key types


@pytest.mark.parametrize("sni,expected", [
    ("a.test", "a"),
    ("b.test", "b"),
    ("x.wild.test", "a"),          # one-label wildcard
    ("a.b.wild.test", "b"),        # two labels: no match -> the first
    ("wild.test", "b"),            # the bare parent does not match "*.wild.test"
    ("unknown.test", "b"),         # unknown -> the first
    (None, "b"),                   # no SNI -> the first
    ("cn-only.test", "cn-only"),   # no SAN: matched by CN
])
def test_sni_picks_the_certificate(proxy, env, certs, sni, expected):
    c = connect(env, proxy, ctx(certs), sni=sni)
    assert served_leaf(certs, c) == expected
    r = c.get("/small", host=sni or "localhost")
    assert r.status == 200 and r.body == b"hello from o\n", r


def test_sni_is_case_insensitive(proxy, env, certs):
    # Python's idna encoding keeps ASCII case, so the ClientHello carries "A.TeSt".
    c = connect(env, proxy, ctx(certs), sni="A.TeSt")
    assert served_leaf(certs, c) == "a"


@pytest.mark.parametrize("sni,kind,auth", [("a.test", "ec", "ECDSA"), ("b.test", "rsa", "RSA")])
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_rsa_and_ecdsa_certificates_verify_with_the_root_ca_only(proxy, env, certs, sni, kind, auth, version):
    v = ssl.TLSVersion.TLSv1_2 if version == "TLSv1.2" else ssl.TLSVersion.TLSv1_3
    c = connect(env, proxy, ctx(certs, minimum=v, maximum=v), sni=sni)
    # The root alone verified it: the intermediate came in the handshake.
    assert c.sock.getpeercert()["subject"] == ((("commonName", sni),),)
    assert c.version() == version
    name, proto, _bits = c.sock.cipher()
    if version == "TLSv1.2":
        assert name.startswith(f"ECDHE-{auth}-") and ("GCM" in name or "CHACHA20" in name), name
    assert c.get("/small").status == 200


def test_full_chain_is_sent(proxy, certs):
    """openssl s_client -showcerts: leaf then the intermediate, verified with the root."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{proxy.port}", "-servername", "a.test",
                        "-showcerts", "-CAfile", certs.ca_file, "-verify_return_error"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    out = p.stdout.decode("utf-8", "replace")
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    with open(certs.intermediate_file) as f:
        intermediate_der = ssl.PEM_cert_to_DER_cert(f.read())
    assert [ssl.PEM_cert_to_DER_cert(p_) for p_ in pems] == [certs.a.leaf_der, intermediate_der], out
    assert "Verify return code: 0 (ok)" in out, out


def test_without_the_ca_the_chain_does_not_verify(proxy, env, certs):
    """The check above can fail: a client trusting nothing rejects the chain."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    exc = handshake_error(context, proxy.port)
    assert isinstance(exc, ssl.SSLCertVerificationError), exc


# --------------------------------------------------------------------------
# Protocol versions, ALPN


def legacy_context(version):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        c = tlscerts.client_context(None, ciphers="DEFAULT@SECLEVEL=0")
        c.minimum_version = version
        c.maximum_version = version
    return c


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_1_0_and_1_1_are_refused(proxy, version):
    exc = handshake_error(legacy_context(getattr(ssl.TLSVersion, version)), proxy.port)
    assert exc is not None, f"a {version} handshake succeeded"
    # The server refused the version: not the local library refusing to try.
    assert "NO_PROTOCOLS_AVAILABLE" not in str(exc), exc
    assert exc.reason == "TLSV1_ALERT_PROTOCOL_VERSION", (exc.reason, exc)


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_openssl_s_client_legacy_versions_fail(proxy, flag):
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{proxy.port}", "-servername", "a.test",
                        flag, "-cipher", "DEFAULT@SECLEVEL=0"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert "no protocols available" not in out, out
    assert re.search(r"alert protocol version|unsupported protocol|wrong version number", out), out
    assert "BEGIN CERTIFICATE" not in out and "Server certificate" not in out, out


def test_tls_1_3_works(proxy, env, certs):
    v = ssl.TLSVersion.TLSv1_3
    c = connect(env, proxy, ctx(certs, minimum=v, maximum=v), sni="a.test")
    assert c.version() == "TLSv1.3"
    assert c.sock.cipher()[0] in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
    r = c.get("/small")
    assert r.status == 200 and r.body == b"hello from o\n", r


@pytest.mark.parametrize("offered, chosen", [
    # OpenSSL's own order, AES-256 first: the proxy's order decides.
    ("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    ("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"),
])
def test_tls_1_3_suite_is_the_proxys_first_choice_the_client_offers(proxy, offered, chosen):
    """TLS 1.3 suites in the proxy's order (AES-128-GCM first, as for
    TLS 1.2), not the client's."""
    _tickets, out = s_client_tickets(proxy, "-ciphersuites", offered)
    assert f"Cipher is {chosen}" in out, out[-2000:]


def test_default_min_version_accepts_tls_1_2(proxy, env, certs):
    v = ssl.TLSVersion.TLSv1_2
    c = connect(env, proxy, ctx(certs, minimum=v, maximum=v), sni="a.test")
    assert c.version() == "TLSv1.2"
    assert c.get("/small").status == 200


def test_min_version_1_3_refuses_a_tls_1_2_client(env, origin, certs):
    proxy = tls_proxy(env, [origin], default_entries(certs), min_version="1.3")
    v12 = ssl.TLSVersion.TLSv1_2
    exc = handshake_error(ctx(certs, minimum=v12, maximum=v12), proxy.port)
    assert exc is not None, "a TLS 1.2 handshake succeeded with min_version 1.3"
    assert exc.reason == "TLSV1_ALERT_PROTOCOL_VERSION", (exc.reason, exc)
    # ... while 1.3 works, for both certificates.
    for sni in ("a.test", "b.test"):
        c = connect(env, proxy, ctx(certs), sni=sni)
        assert c.version() == "TLSv1.3"
        assert c.get("/small").status == 200


def test_alpn_negotiates_http_1_1(proxy, env, certs):
    c = connect(env, proxy, ctx(certs, alpn=["h2", "http/1.1"]), sni="a.test")
    assert c.alpn() == "http/1.1"
    assert c.get("/small").status == 200


def test_alpn_without_http_1_1_still_connects_without_a_protocol(proxy, env, certs):
    c = connect(env, proxy, ctx(certs, alpn=["h2"]), sni="b.test")
    assert c.alpn() is None
    assert c.get("/small").status == 200


# --------------------------------------------------------------------------
# Resumption


def first_session(env, port, context, sni):
    """A full handshake, one request read (so TLS 1.3 tickets arrived), and its session."""
    c = connect(env, port, context, sni=sni)
    assert c.session_reused is False
    assert c.get("/small").status == 200
    s = c.session
    assert s is not None
    c.close()
    return s


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("sni", ["a.test", "b.test"])
def test_session_resumption(proxy, env, certs, version, sni):
    v = ssl.TLSVersion.TLSv1_2 if version == "TLSv1.2" else ssl.TLSVersion.TLSv1_3
    context = ctx(certs, minimum=v, maximum=v)
    session = first_session(env, proxy, context, sni)
    c = connect(env, proxy, context, sni=sni, session=session)
    assert c.version() == version
    assert c.session_reused is True, f"{version} session for {sni} not resumed"
    assert c.get("/small").status == 200


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_a_request_after_a_resumed_handshake_is_not_held_up(proxy, env, certs, version):
    # A resumed handshake ends with the client's Finished, which nothing
    # from the proxy answers; a client with Nagle's algorithm on (Python's
    # default) holds its request until that is acknowledged, which a
    # delayed acknowledgement would put off by 40 ms (accepted connections
    # delay them: an answer usually carries the acknowledgement). The best
    # of five counts.
    context = ctx(certs, minimum=version, maximum=version)
    session = first_session(env, proxy, context, "a.test")
    took = []
    for _ in range(5):
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="a.test", session=session) as s:
            assert s.session_reused
            data, seconds = harness.exchange_to_close(
                s, [b"GET /small HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"])
        assert data.startswith(b"HTTP/1.1 200 "), data
        took.append(seconds)
        if min(took) < 0.03:
            break
    assert min(took) < 0.03, took


def s_client_tickets(proxy, *extra):
    """A TLS 1.3 connection by openssl s_client that sends one request and
    reads the answer: (NewSessionTicket messages seen, the output)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{proxy.port}", "-servername", "a.test",
                        "-tls1_3", "-msg", "-ign_eof", *extra],
                       input=b"GET /small HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=20)
    out = p.stdout.decode(errors="replace")
    assert "HTTP/1.1 200" in out, out[-2000:]
    tickets = re.findall(r"^<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], NewSessionTicket", out, re.M)
    return len(tickets), out


def test_one_ticket_per_tls_1_3_handshake(proxy, env, certs, tmp_path):
    """A full TLS 1.3 handshake issues one session ticket (OpenSSL's
    default is two); that ticket resumes, and the resumed connection,
    whose ticket is sealed by the current key, is issued none."""
    session_file = tmp_path / "session.pem"
    tickets, out = s_client_tickets(proxy, "-sess_out", str(session_file))
    assert tickets == 1, out
    tickets, out = s_client_tickets(proxy, "-sess_in", str(session_file))
    assert "Reused, TLSv1.3" in out, out
    assert tickets == 0, out


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_session_resumption_across_workers(env, origin, certs, version):
    """Tickets are valid on every worker: with two workers (SO_REUSEPORT
    spreads connections by their ports), 12 connections all resume."""
    proxy = tls_proxy(env, [origin], default_entries(certs), workers=2)
    v = ssl.TLSVersion.TLSv1_2 if version == "TLSv1.2" else ssl.TLSVersion.TLSv1_3
    context = ctx(certs, minimum=v, maximum=v)
    session = first_session(env, proxy, context, "a.test")
    reused = []
    for _ in range(12):
        c = connect(env, proxy, context, sni="a.test", session=session)
        reused.append(c.session_reused)
        assert c.get("/small").status == 200
        c.close()
    assert reused == [True] * 12, reused


# --------------------------------------------------------------------------
# Proxying over TLS


def test_request_reaches_origin_with_https_proto_and_request_id(proxy, env, certs):
    c = connect(env, proxy, ctx(certs), sni="a.test")
    r = c.get("/headers", {"X-Forwarded-Proto": "http"}, host="a.test")
    info, h = seen(r)
    assert h.get_all("X-Forwarded-Proto") == ["https"]
    assert h.get_all("X-Forwarded-Host") == ["a.test"]
    rid = r.header("X-Request-ID")
    assert UUID4_RE.match(rid or ""), r
    assert h.get_all("X-Request-ID") == [rid]
    rec = proxy.wait_access_record(rid)
    assert rec["status"] == 200, rec


def test_keep_alive_over_tls_reuses_one_upstream_connection(proxy, env, certs):
    c = connect(env, proxy, ctx(certs), sni="b.test")
    upstream_conns = set()
    for i in range(5):
        r = c.get(f"/headers?i={i}", host="b.test")
        _, h = seen(r)
        assert h.get_all("X-Forwarded-Proto") == ["https"]
        upstream_conns.add(r.header("X-Origin-Connection"))
        assert "close" not in r.connection_tokens(), r
    assert len(upstream_conns) == 1, upstream_conns
    assert c.session_reused is False  # one handshake for all five


def test_large_download_over_tls_is_intact(proxy, env, certs):
    n = 20 * 1024 * 1024
    c = connect(env, proxy, ctx(certs), sni="a.test", timeout=30)
    h = hashlib.sha256()
    count = [0]

    def sink(b):
        count[0] += len(b)
        h.update(b)

    c.send(harness.build_request("GET", f"/bytes/{n}", host="a.test"))
    resp = c.read_response(timeout=30, sink=sink)
    assert resp.status == 200, resp
    pattern = bytes(range(ord("a"), ord("z") + 1))
    expected = hashlib.sha256((pattern * (n // 26 + 1))[:n]).hexdigest()
    assert count[0] == n
    assert h.hexdigest() == expected
    # The connection is still usable afterwards.
    assert c.get("/small", host="a.test").status == 200


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /small HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", 200),
    (b"GET /small HTTP/1.1\r\nHost: a.test\r\nContent-Length: many\r\n\r\n", 400),
])
def test_a_closing_response_ends_with_close_notify(proxy, certs, request_bytes, status):
    # RFC 8446 6.1: a party sends close_notify before closing its write
    # side; a client reading to the end of the connection tells a whole
    # response from a cut one by it. Without it, a client that does not
    # forgive a bare end of the stream gets an error after the response.
    # The proxy's own error answers end the same way.
    context = ctx(certs)
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)  # (Debian's Python sets it)
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="a.test", suppress_ragged_eofs=False) as s:
        data, _ = harness.exchange_to_close(s, [request_bytes])  # ssl.SSLEOFError without close_notify
    assert data.startswith(b"HTTP/1.1 %d " % status), data
    assert b"\r\nconnection: close\r\n" in data.lower(), data


@pytest.mark.parametrize("nth", ["first", "second"])
def test_slow_answer_over_tls_outlasting_client_idle_and_client_header_is_delivered(env, origin, certs, nth):
    # client_idle bounds the wait for a request and client_header its
    # head; neither may bound the upstream's answer (upstream_response
    # does): an origin taking longer than both still reaches the client,
    # on a connection's first request (after the handshake) as on a later one.
    proxy = tls_proxy(env, [origin], default_entries(certs),
                      timeouts={"client_idle": "500ms", "client_header": "500ms", "client_body": "500ms"})
    c = connect(env, proxy, ctx(certs), sni="a.test")
    if nth == "second":
        assert c.get("/small", host="a.test").status == 200
    r = c.get("/delay/1200", host="a.test", timeout=10)
    assert r.status == 200, r
    assert c.get("/small", host="a.test").status == 200


def test_tls_client_that_stops_reading_the_response_is_closed_after_client_body(env, origin, certs):
    # As on plain HTTP (test_limits.py): a write to the client that waits
    # longer than client_body gives the connection up.
    proxy = tls_proxy(env, [origin], default_entries(certs), timeouts={"client_body": "500ms"})
    c = connect(env, proxy, ctx(certs), sni="a.test")
    harness.assert_stalled_reader_given_up(proxy, c, 0.5, host="a.test")


def test_client_idle_closes_an_idle_tls_connection(env, origin, certs):
    # A TLS connection waits for its next request as a plain one does:
    # client_idle bounds the wait.
    proxy = tls_proxy(env, [origin], default_entries(certs), timeouts={"client_idle": "300ms"})
    c = connect(env, proxy, ctx(certs), sni="a.test")
    assert c.get("/small", host="a.test").status == 200
    t0 = time.monotonic()
    how, data = c.wait_closed(3.0)
    elapsed = time.monotonic() - t0
    assert how in ("eof", "reset") and data == b"", (how, data)
    assert 0.2 <= elapsed < 2.0, f"idle TLS connection closed after {elapsed:.3f}s with client_idle 300ms"


def test_a_drain_closes_an_idle_tls_connection_at_once(env, origin, certs):
    # SIGTERM closes connections waiting for a request (SPEC 9) while a
    # request in flight on another connection keeps the process running.
    proxy = tls_proxy(env, [origin], default_entries(certs), timeouts={"shutdown_grace": "10s"})
    idle = connect(env, proxy, ctx(certs), sni="a.test")
    assert idle.get("/small", host="a.test").status == 200
    watch = harness.ArrivalWatch([origin])
    busy = connect(env, proxy, ctx(certs), sni="a.test", timeout=15)
    busy.send(harness.build_request("GET", "/delay/3000", host="a.test"))
    watch.wait(1)
    r = harness.assert_drain_closes_idle_first(proxy, idle, busy)
    assert r.headers.get("Connection", "").lower() == "close", r


class BioClient:
    """A TLS client over memory BIOs (ssl.SSLObject) on a raw socket, for
    tests that must decide how records leave: `records(...)` encrypts each
    piece as a record of its own and returns their bytes, sent with `raw`
    as the test likes."""

    def __init__(self, port, context, sni, timeout=10.0):
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=sni)
        self.raw = socket.create_connection((harness.LOOPBACK, port), timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self.outgoing.pending:
                    self.raw.sendall(self.outgoing.read())
                assert time.monotonic() < deadline, "handshake did not complete"
                data = self.raw.recv(65536)
                assert data, "closed during the handshake"
                self.incoming.write(data)
        if self.outgoing.pending:
            self.raw.sendall(self.outgoing.read())

    def records(self, *pieces):
        for piece in pieces:
            self.tls.write(piece)  # one record each
        return self.outgoing.read()

    def close(self):
        self.raw.close()


def test_requests_in_tls_records_that_arrive_together_are_all_served(proxy, certs):
    # Three requests, each its own TLS record, in one TCP send: the proxy
    # reads them together (read-ahead), so after the first only OpenSSL
    # holds the others; a proxy that waited for the socket before asking
    # OpenSSL would leave them unanswered.
    c = BioClient(proxy.port, ctx(certs), "a.test")
    try:
        targets = ["/headers?n=1", "/headers?n=2", "/headers?n=3"]
        c.raw.sendall(c.records(*(harness.build_request("GET", t, host="a.test") for t in targets)))
        got = bytearray()
        deadline = time.monotonic() + 10
        while got.count(b"HTTP/1.1 200 ") < len(targets) or not got.endswith(b"}\n"):
            assert time.monotonic() < deadline, f"not every request was answered: {bytes(got)[-300:]!r}"
            try:
                got += c.tls.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            c.raw.settimeout(max(0.1, deadline - time.monotonic()))
            data = c.raw.recv(65536)
            assert data, f"closed before every answer: {bytes(got)[-300:]!r}"
            c.incoming.write(data)
        text = bytes(got).decode("latin-1")
        assert re.findall(r"/headers\?n=\d", text) == targets, text
    finally:
        c.close()


def test_a_record_trickling_in_does_not_extend_client_idle(env, origin, certs):
    # client_idle bounds the whole wait for a request: bytes that make no
    # request (here a record arriving a byte at a time) do not restart it.
    proxy = tls_proxy(env, [origin], default_entries(certs), timeouts={"client_idle": "300ms"})
    c = BioClient(proxy.port, ctx(certs), "a.test")
    try:
        record = c.records(harness.build_request("GET", "/small", host="a.test"))
        t0 = time.monotonic()
        closed_after = None
        for i in range(len(record) - 1):  # never the whole record
            if time.monotonic() - t0 > 3.0:
                break
            try:
                c.raw.sendall(record[i:i + 1])
            except OSError:
                closed_after = time.monotonic() - t0
                break
            ready, _, _ = select.select([c.raw], [], [], 0.1)
            if ready:
                try:
                    data = c.raw.recv(65536)  # session tickets, then the close
                except OSError:
                    data = b""
                if not data:
                    closed_after = time.monotonic() - t0
                    break
        assert closed_after is not None, "still open after 3s of a trickling record with client_idle 300ms"
        assert 0.2 <= closed_after < 1.5, closed_after
    finally:
        c.close()


def test_idle_tls_connections_give_back_their_buffers(env, origin, certs):
    # A TLS connection waiting for its next request keeps its session and
    # TLS state only: its receive block, its gather block (a response head
    # and body written as one record), its per-request capacity and
    # OpenSSL's record buffers go back. A request and an answer that fill
    # most of those buffers (a 12 KB field, a 15 KB body), so that what a
    # connection kept would be resident. About 19 KiB per connection stay;
    # 51 with OpenSSL's record buffers kept.
    proxy = tls_proxy(env, [origin], default_entries(certs), workers=1)

    def idle_client():
        c = connect(env, proxy, ctx(certs), sni="a.test")
        r = c.get("/bytes/15000", host="a.test", headers=[("X-Pad", "p" * 12000)])
        assert r.status == 200 and len(r.body) == 15000, r

    harness.assert_idle_memory_bounded(proxy, idle_client, 20, 200, 32, "idle TLS connection")


def test_websocket_over_tls(proxy, env, certs):
    c = connect(env, proxy, ctx(certs), sni="a.test")
    ws = WebSocketClient(c)
    r = ws.handshake("/ws", host="a.test")
    assert r.status == 101, r
    assert ws.accept_ok(), r
    ws.send_text("hello over tls")
    assert ws.recv_message() == (WS_TEXT, b"hello over tls")
    blob = os.urandom(300_000)
    ws.send_binary(blob)
    assert ws.recv_message() == (WS_BINARY, blob)
    ws.send_close(1000)
    op, payload = ws.recv_message()
    assert op == WS_CLOSE and payload[:2] == b"\x03\xe8", (op, payload)


def test_idle_websocket_tunnels_over_tls_hold_no_record_buffers(env, origin, certs):
    # A tunnel is long-lived and mostly idle (a dev server's hot-reload
    # socket): between its records it holds none of OpenSSL's buffers, and
    # neither direction holds a receive buffer while it waits (see
    # test_websocket.py). Messages of 12 KB each way, so that buffers a
    # tunnel kept would be resident. About 26 KiB per tunnel stay; 76 with
    # the receive buffers kept, 109 with OpenSSL's too.
    proxy = tls_proxy(env, [origin], default_entries(certs), workers=1)
    message = b"m" * 12000

    def idle_tunnel():
        ws = WebSocketClient(connect(env, proxy, ctx(certs), sni="a.test"))
        assert ws.handshake("/ws", host="a.test").status == 101
        ws.send_binary(message)
        assert ws.recv_message() == (WS_BINARY, message)

    harness.assert_idle_memory_bounded(proxy, idle_tunnel, 10, 100, 36, "idle TLS tunnel")


def test_a_websocket_tunnel_that_ends_cleanly_ends_with_close_notify(proxy, certs):
    # The origin answers the close frame and closes: the tunnel passes that
    # end on as close_notify and a FIN (a reset would go on as a bare end).
    context = ctx(certs)
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)  # (Debian's Python sets it)
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    close = harness.ws_frame(WS_CLOSE, harness.ws_close_payload(1000))
    with context.wrap_socket(raw, server_hostname="a.test", suppress_ragged_eofs=False) as s:
        data, _ = harness.exchange_to_close(s, [upgrade, close])  # ssl.SSLEOFError without close_notify
    assert data.startswith(b"HTTP/1.1 101 "), data
    assert data.endswith(b"\x88\x02\x03\xe8"), data  # the origin's close frame


# --------------------------------------------------------------------------
# Reload: certificates re-read, bad pairs refused


def tls_reload_proxy(env, origin, certs):
    entries = [copy_leaf(certs.b, env.tmp, "live-b"), copy_leaf(certs.a, env.tmp, "live-a")]
    return tls_proxy(env, [origin], entries), entries


def generation(proxy):
    return harness.admin_status(proxy)["generation"]


def test_sighup_reload_swaps_the_certificate_and_keeps_connections(env, origin, certs):
    proxy, entries = tls_reload_proxy(env, origin, certs)
    old = connect(env, proxy, ctx(certs), sni="a.test")
    assert served_leaf(certs, old) == "a"
    assert old.get("/small", host="a.test").status == 200
    gen = generation(proxy)

    replace_file(certs.a2.cert_file, entries[1]["cert_file"])
    replace_file(certs.a2.key_file, entries[1]["key_file"])
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: generation(proxy) == gen + 1, 10, message="reload applied")

    fresh = connect(env, proxy, ctx(certs), sni="x.wild.test")
    assert served_leaf(certs, fresh) == "a2"
    assert fresh.sock.getpeercert()["subject"] == ((("commonName", "a-reloaded.test"),),)
    assert fresh.get("/small", host="x.wild.test").status == 200
    # b was re-read too and is unchanged; the default still b.
    assert served_leaf(certs, connect(env, proxy, ctx(certs), sni=None)) == "b"
    # The keep-alive connection from before the reload goes on, on its old certificate.
    for _ in range(3):
        r = old.get("/small", host="a.test")
        assert r.status == 200 and r.body == b"hello from o\n", r
    assert served_leaf(certs, old) == "a"
    assert proxy.running()


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_session_resumes_across_a_reload(env, origin, certs, version):
    """The ticket keys belong to the process, not to a configuration: a
    reload builds new TLS contexts, and tickets issued before it resume."""
    proxy, _ = tls_reload_proxy(env, origin, certs)
    v = ssl.TLSVersion.TLSv1_2 if version == "TLSv1.2" else ssl.TLSVersion.TLSv1_3
    context = ctx(certs, minimum=v, maximum=v)
    session = first_session(env, proxy, context, "a.test")
    gen = generation(proxy)
    r = admin_request(proxy, "POST", "/reload")
    assert r.status == 200 and r.json() == {"ok": True, "generation": gen + 1}, r
    c = connect(env, proxy, context, sni="a.test", session=session)
    assert c.session_reused is True, f"{version} session not resumed after a reload"
    assert c.get("/small").status == 200


def test_reload_with_mismatched_key_fails_and_old_certificate_serves(env, origin, certs):
    proxy, entries = tls_reload_proxy(env, origin, certs)
    old = connect(env, proxy, ctx(certs), sni="a.test")
    assert old.get("/small").status == 200
    gen = generation(proxy)

    replace_file(certs.b.key_file, entries[1]["key_file"])  # a's certificate, b's key
    r = admin_request(proxy, "POST", "/reload")
    assert r.status == 400, r
    doc = r.json()
    assert doc["ok"] is False, doc
    assert entries[1]["key_file"] in doc["error"], doc
    assert generation(proxy) == gen
    assert harness.admin_status(proxy)["last_reload"]["ok"] is False

    fresh = connect(env, proxy, ctx(certs), sni="a.test")
    assert served_leaf(certs, fresh) == "a"
    assert fresh.get("/small").status == 200
    assert old.get("/small").status == 200
    # Repaired: the next reload succeeds and a still serves.
    replace_file(certs.a.key_file, entries[1]["key_file"])
    r = admin_request(proxy, "POST", "/reload")
    assert r.status == 200 and r.json() == {"ok": True, "generation": gen + 1}, r
    assert served_leaf(certs, connect(env, proxy, ctx(certs), sni="a.test")) == "a"


def test_watch_reloads_when_a_certificate_file_is_replaced(env, origin, certs):
    # config.watch follows the files the configuration names as well as the
    # file itself: a renewed certificate and key, written by a deploy (a
    # certificate manager's hook, a Kubernetes Secret), are served without a
    # signal; a broken one leaves the running certificate in force.
    entries = [copy_leaf(certs.b, env.tmp, "live-b"), copy_leaf(certs.a, env.tmp, "live-a")]
    proxy = tls_proxy(env, [origin], entries, config={"watch": True})
    assert served_leaf(certs, connect(env, proxy, ctx(certs), sni="a.test")) == "a"

    replace_file(certs.a2.key_file, entries[1]["key_file"])
    replace_file(certs.a2.cert_file, entries[1]["cert_file"])

    def served():
        return served_leaf(certs, connect(env, proxy, ctx(certs), sni="x.wild.test"))

    wait_until(lambda: served() == "a2", 5, message="the renewed certificate to be served")
    assert harness.admin_status(proxy)["last_reload"]["ok"] is True

    with open(entries[1]["cert_file"], "w") as f:  # written in place, and broken
        f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    wait_until(lambda: harness.admin_status(proxy)["last_reload"]["ok"] is False, 5,
               message="the failed reload to be recorded")
    assert entries[1]["cert_file"] in harness.admin_status(proxy)["last_reload"]["error"]
    assert served() == "a2"


def test_watch_follows_the_certificate_files_a_reload_names(env, origin, certs, tmp_path):
    # A reload that moves a certificate to another directory: the watch
    # follows the new files from then on.
    entries = [copy_leaf(certs.b, env.tmp, "live-b"), copy_leaf(certs.a, env.tmp, "live-a")]
    proxy = tls_proxy(env, [origin], entries, config={"watch": True})
    elsewhere = tmp_path / "renewed"
    elsewhere.mkdir()
    moved = copy_leaf(certs.a, str(elsewhere), "a")
    proxy.config["listeners"][0]["tls"]["certificates"][1] = moved
    with open(proxy.config_path + ".new", "w") as f:
        f.write(harness.to_yaml(proxy.config) + "\n")
    os.replace(proxy.config_path + ".new", proxy.config_path)
    wait_until(lambda: generation(proxy) == 2, 5, message="the edited file to be reloaded")

    replace_file(certs.a2.key_file, moved["key_file"])
    replace_file(certs.a2.cert_file, moved["cert_file"])
    wait_until(lambda: served_leaf(certs, connect(env, proxy, ctx(certs), sni="x.wild.test")) == "a2", 5,
               message="the certificate in the new directory to be served")


def test_watch_reloads_when_a_certificate_named_before_it_was_written_arrives(env, origin, certs, tmp_path):
    # The configuration names a certificate its deploy writes afterwards,
    # in a directory not made yet (certbot's live/NEW/ for a new name): that
    # reload fails, and the files' arrival reloads again.
    entries = [copy_leaf(certs.b, env.tmp, "live-b")]
    proxy = tls_proxy(env, [origin], entries, config={"watch": True})
    new_dir = tmp_path / "live" / "new.example"
    later = {"cert_file": str(new_dir / "a.crt"), "key_file": str(new_dir / "a.key")}
    proxy.config["listeners"][0]["tls"]["certificates"].append(later)
    with open(proxy.config_path + ".new", "w") as f:
        f.write(harness.to_yaml(proxy.config) + "\n")
    os.replace(proxy.config_path + ".new", proxy.config_path)
    wait_until(lambda: harness.admin_status(proxy)["last_reload"]["ok"] is False, 5,
               message="the reload naming a missing file to fail")
    new_dir.mkdir(parents=True)
    replace_file(certs.a.key_file, later["key_file"])
    replace_file(certs.a.cert_file, later["cert_file"])
    wait_until(lambda: generation(proxy) == 2, 5, message="the files' arrival to reload")
    assert served_leaf(certs, connect(env, proxy, ctx(certs), sni="a.test")) == "a"


def test_watch_follows_a_certificate_through_symbolic_links(env, origin, certs, tmp_path):
    # certbot's layout: live/site/ holds links into archive/site/, and a
    # renewal writes new files there and replaces the links; the
    # configuration names links of its own (tls/) to live/site/, in a
    # directory where nothing changes.
    live, archive = tmp_path / "live" / "site", tmp_path / "archive" / "site"
    live.mkdir(parents=True)
    archive.mkdir(parents=True)
    for name, leaf in (("1", certs.a), ("2", certs.a2)):
        shutil.copyfile(leaf.cert_file, archive / f"fullchain{name}.pem")
        shutil.copyfile(leaf.key_file, archive / f"privkey{name}.pem")

    def link(name, version):
        tmp = live / f"{name}.tmp"
        os.symlink(f"../../archive/site/{name}{version}.pem", tmp)
        os.replace(tmp, live / f"{name}.pem")

    link("fullchain", 1)
    link("privkey", 1)
    mine = tmp_path / "tls"
    mine.mkdir()
    os.symlink(live / "fullchain.pem", mine / "site.crt")
    os.symlink(live / "privkey.pem", mine / "site.key")
    entry = {"cert_file": str(mine / "site.crt"), "key_file": str(mine / "site.key")}
    proxy = tls_proxy(env, [origin], [copy_leaf(certs.b, env.tmp, "live-b"), entry], config={"watch": True})
    assert served_leaf(certs, connect(env, proxy, ctx(certs), sni="a.test")) == "a"
    link("privkey", 2)
    link("fullchain", 2)
    wait_until(lambda: served_leaf(certs, connect(env, proxy, ctx(certs), sni="x.wild.test")) == "a2", 5,
               message="the renewed certificate behind the links to be served")


def test_watch_follows_a_certificate_directory_replaced_by_rename(env, origin, certs, tmp_path):
    # A deploy that writes a new directory and renames it into place, the
    # old one kept aside: the watch stays with the directory it was set on,
    # so after each swap the name is watched again (the second swap is the
    # one a watch left on the old directory misses).
    site = tmp_path / "site"

    def deploy(leaf, version):
        new = tmp_path / f"site.{version}"
        new.mkdir()
        shutil.copyfile(leaf.cert_file, new / "cert.pem")
        shutil.copyfile(leaf.key_file, new / "key.pem")
        if site.exists():
            os.rename(site, tmp_path / f"site.old{version}")
        os.rename(new, site)

    deploy(certs.a, 1)
    entry = {"cert_file": str(site / "cert.pem"), "key_file": str(site / "key.pem")}
    proxy = tls_proxy(env, [origin], [copy_leaf(certs.b, env.tmp, "live-b"), entry], config={"watch": True})

    def served():
        return served_leaf(certs, connect(env, proxy, ctx(certs), sni="x.wild.test"))

    assert served() == "a"
    deploy(certs.a2, 2)
    wait_until(lambda: served() == "a2", 5, message="the first swapped directory to be served")
    deploy(certs.a, 3)
    wait_until(lambda: served() == "a", 5, message="the second swapped directory to be served")


def test_reload_certificate_error_names_file_line_and_column(env, origin, certs):
    """SPEC 7/8: a failed reload's error is `file:line:col: ...`."""
    proxy, entries = tls_reload_proxy(env, origin, certs)
    replace_file(certs.b.key_file, entries[1]["key_file"])
    r = admin_request(proxy, "POST", "/reload")
    assert r.status == 400, r
    error = r.json()["error"]
    assert re.match(re.escape(proxy.config_path) + r":\d+:\d+: listeners\[0\]\.tls\.certificates", error), error
    logged = [rec for rec in proxy.log_records() if rec.get("msg") == "reload failed"]
    assert logged and re.match(re.escape(proxy.config_path) + r":\d+:\d+: ", logged[-1].get("error", "")), logged


def check_config(env, certs, entries, name):
    cfg = env.config([{"match": {"path_prefix": "/"}, "respond": {"status": 200, "body": "ok"}}], [])
    cfg["listeners"][0]["tls"] = {"certificates": entries}
    path = os.path.join(env.tmp, f"{name}.yaml")
    text = harness.to_yaml(cfg) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return path, text, harness.run_sluice(env.sluice_bin, ["--config", path, "--check"])


def assert_check_error(path, text, p, needle):
    out = p.stderr.decode("utf-8", "replace") + p.stdout.decode("utf-8", "replace")
    assert p.returncode == 1, out
    m = re.search(re.escape(path) + r":(\d+):(\d+): (listeners\[0\]\.tls\.certificates\S*): (.*)", out)
    assert m, out
    line, col = int(m.group(1)), int(m.group(2))
    lines = text.splitlines()
    first = next(i for i, l in enumerate(lines, 1) if "certificates:" in l)
    last = max(i for i, l in enumerate(lines, 1) if "key_file:" in l)
    assert first <= line <= last, (line, out)
    assert 1 <= col <= len(lines[line - 1]), (col, out)
    assert needle in m.group(4), out
    assert "config ok" not in out


def test_check_reports_a_missing_key(env, certs):
    missing = os.path.join(env.tmp, "nope.key")
    path, text, p = check_config(env, certs, [certs.b.entry(), {"cert_file": certs.a.cert_file,
                                                                "key_file": missing}], "missing")
    assert_check_error(path, text, p, missing)


def test_check_reports_a_mismatched_key(env, certs):
    path, text, p = check_config(env, certs, [{"cert_file": certs.a.cert_file, "key_file": certs.b.key_file}],
                                 "mismatch")
    assert_check_error(path, text, p, certs.b.key_file)


def test_check_accepts_good_certificates(env, certs):
    _, _, p = check_config(env, certs, default_entries(certs), "good")
    assert p.returncode == 0 and "config ok" in p.stdout.decode().splitlines(), p


# --------------------------------------------------------------------------
# Redirect to HTTPS, handshake garbage


def test_redirect_route_sends_plain_http_to_https(env, origin, certs):
    plain_port, tls_port = harness.free_port(), harness.free_port()
    cfg = harness.proxy_config(plain_port, harness.free_port(), [
        {"match": {"path_prefix": "/moved"}, "redirect": {"scheme": "https", "port": tls_port, "status": 301}},
        {"match": {"path_prefix": "/"}, "redirect": {"scheme": "https", "port": tls_port}},
    ], [harness.upstream("backend", [origin])])
    cfg["listeners"].append({"name": "secure", "bind": f"127.0.0.1:{tls_port}",
                             "tls": {"certificates": default_entries(certs)},
                             "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}]})
    proxy = env.sluice(cfg)

    r = proxy.get("/a/b?x=1&y=2", host=f"a.test:{plain_port}")
    assert r.status == 308, r
    assert r.header("Location") == f"https://a.test:{tls_port}/a/b?x=1&y=2", r
    r301 = proxy.get("/moved/here?q", host="a.test")
    assert r301.status == 301, r301
    assert r301.header("Location") == f"https://a.test:{tls_port}/moved/here?q", r301

    # Following it lands on the TLS listener with a.test's certificate.
    c = connect(env, tls_port, ctx(certs), sni="a.test")
    assert served_leaf(certs, c) == "a"
    info, h = seen(c.get("/headers?x=1&y=2", host=f"a.test:{tls_port}"))
    assert h.get_all("X-Forwarded-Proto") == ["https"]


def test_plain_http_on_the_tls_port_is_closed_quietly(proxy, env, certs):
    before = len(proxy.log_records())
    for _ in range(5):
        with HttpClient(proxy.port, timeout=5) as c:
            c.send(b"GET / HTTP/1.1\r\n\r\n")
            how, data = c.wait_closed(5)
            assert how in ("eof", "reset"), (how, data)
            assert not data.startswith(b"HTTP/"), data
    # A handshake that never finishes (a scanner's SYN + nothing) is not a crash either.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
    assert proxy.running()
    # The next good request is logged; nothing at info or above before it.
    c = connect(env, proxy, ctx(certs), sni="a.test")
    r = c.get("/small")
    assert r.status == 200
    rid = r.header("X-Request-ID")
    proxy.wait_access_record(rid)
    new = proxy.log_records()[before:]
    noisy = [rec for rec in new if rec.get("request_id") != rid
             and rec.get("level") not in ("trace", "debug")]
    assert noisy == [], noisy


def handshake_counts(proxy):
    """sluice_tls_handshakes_total of listener "public", by result."""
    r = harness.http_get(proxy.admin_port, "/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r"sluice_tls_handshakes_total\{([^}]*)\} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if labels.get("listener") == "public":
                out[labels["result"]] = float(m.group(2))
    return out


def test_handshakes_are_counted_full_resumed_and_failed(proxy, env, certs):
    assert handshake_counts(proxy) == {"full": 0, "resumed": 0, "failure": 0}
    context = ctx(certs, minimum=ssl.TLSVersion.TLSv1_3, maximum=ssl.TLSVersion.TLSv1_3)
    session = first_session(env, proxy, context, "a.test")  # full
    for _ in range(2):
        c = connect(env, proxy, context, sni="a.test", session=session)
        assert c.session_reused is True
        assert c.get("/small").status == 200
        c.close()
    with HttpClient(proxy.port, timeout=5) as c:  # plain HTTP: a failed handshake
        c.send(b"GET / HTTP/1.1\r\n\r\n")
        c.wait_closed(5)
    harness.wait_until(lambda: handshake_counts(proxy) == {"full": 1, "resumed": 2, "failure": 1},
                       5, message=f"handshake counters, last {handshake_counts(proxy)}")


def bench_load_json(env, url, *args):
    out = os.path.join(env.tmp, f"load-{time.monotonic_ns()}.json")
    p = subprocess.run([env.bench_bin, "load", url, "--insecure", "--threads", "1", *args, "--json", out],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    with open(out) as f:
        return json.load(f)


def test_bench_load_resumes_tls_sessions_when_asked(proxy, env):
    """sluice-bench load --new-connection --tls-resume: every connection
    after a slot's first resumes (the proxy's counters agree); without
    --tls-resume every handshake is full."""
    url = f"https://127.0.0.1:{proxy.port}/small"
    doc = bench_load_json(env, url, "--new-connection", "--connections", "2", "--duration", "500ms")
    assert doc["requests"] >= 10 and doc["errors"]["total"] == 0, doc
    assert doc["tls_resumed"] == 0 and doc["parameters"]["tls_resume"] is False
    full = doc["connections_opened"]
    doc = bench_load_json(env, url, "--new-connection", "--tls-resume", "--connections", "2",
                          "--duration", "500ms")
    assert doc["requests"] >= 10 and doc["errors"]["total"] == 0, doc
    assert doc["parameters"]["tls_resume"] is True
    # Each of the 2 slots' first handshake is full, the rest resumed.
    assert doc["tls_resumed"] == doc["connections_opened"] - 2, doc
    harness.wait_until(lambda: handshake_counts(proxy)["resumed"] >= doc["tls_resumed"], 5,
                       message=f"resumed handshakes counted by the proxy, last {handshake_counts(proxy)}")
    counts = handshake_counts(proxy)
    assert counts["full"] <= full + 2 + 2, counts


def test_handshake_failures_are_logged_at_debug(env, origin, certs):
    proxy = tls_proxy(env, [origin], default_entries(certs), extra_args=("--log-level", "debug"))
    with HttpClient(proxy.port, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\n\r\n")
        assert c.wait_closed(5)[0] in ("eof", "reset")

    def logged():
        return [rec for rec in proxy.log_records() if "handshake" in str(rec.get("msg", ""))]

    recs = wait_until(logged, 5, message="a handshake failure log line")
    assert all(rec.get("level") == "debug" for rec in recs), recs


# --------------------------------------------------------------------------
# testssl.sh


TESTSSL_BUDGET = 150  # seconds for the whole test (testssl itself gets 120)

# testssl 3.0 --std ids, each of which must say "not offered"; obsoleted CBC
# is cipherlist_AVERAGE in 3.0 and cipherlist_OBSOLETED in 3.2.
WEAK_CATEGORIES = ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                   "cipherlist_3DES_IDEA", ("cipherlist_AVERAGE", "cipherlist_OBSOLETED")]
OLD_PROTOCOLS = {"SSLv2", "SSLv3", "TLS1", "TLS1_1"}


def find_testssl():
    for name in ("testssl", "testssl.sh"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.parametrize("sni", [None, "a.test"], ids=["rsa-default", "ecdsa-sni"])
def test_testssl_finds_no_old_protocol_or_weak_cipher(env, origin, certs, sni):
    exe = find_testssl()
    if exe is None:
        pytest.skip("testssl.sh is not installed (Debian package testssl.sh; deploy/install-deps.sh)")
    # testssl needs more than the suite's 60 s per test: re-arm the alarm.
    signal.setitimer(signal.ITIMER_REAL, TESTSSL_BUDGET)
    # RSA first (the default certificate without SNI), ECDSA by SNI a.test
    # (testssl sends the URI's host name as SNI and connects to --ip).
    proxy = tls_proxy(env, [origin], [certs.b.entry(), certs.a.entry()])
    target = [f"127.0.0.1:{proxy.port}"] if sni is None else ["--ip", "127.0.0.1", f"{sni}:{proxy.port}"]
    out_json = os.path.join(env.tmp, "testssl.json")
    started = time.monotonic()
    p = subprocess.run(
        [exe, "--quiet", "--color", "0", "--warnings", "off", "--fast", "--sneaky",
         "--protocols", "--std", "--jsonfile", out_json, *target],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, cwd=env.tmp)
    elapsed = time.monotonic() - started
    out = p.stdout.decode("utf-8", "replace")
    with open(os.path.join(env.tmp, "testssl.stdout"), "w") as f:
        f.write(out)
    with open(out_json) as f:
        findings = json.load(f)
    by_id = {}
    for item in findings:
        by_id.setdefault(item["id"], []).append(item)
    print(f"testssl ran {elapsed:.1f}s, exit {p.returncode}")

    problems = []
    for pid in OLD_PROTOCOLS:
        items = by_id.get(pid)
        if not items:
            problems.append(f"{pid}: no finding")
            continue
        for it in items:
            if not it["finding"].startswith("not offered"):
                problems.append(f"{pid}: {it['finding']}")
    for pid in ("TLS1_2", "TLS1_3"):
        if not any(it["finding"].startswith("offered") for it in by_id.get(pid, [])):
            problems.append(f"{pid}: {[it['finding'] for it in by_id.get(pid, [])]}")
    for category in WEAK_CATEGORIES:
        ids = [cid for cid in ((category,) if isinstance(category, str) else category) if cid in by_id]
        if not ids:
            problems.append(f"{category}: not in the report")
        for cid in ids:
            for it in by_id[cid]:
                if not it["finding"].startswith("not offered"):
                    problems.append(f"{cid}: {it['finding']}")
    # The strong category must be there (the scan really reached the server).
    if not any(it["finding"].startswith("offered") for it in by_id.get("cipherlist_STRONG", [])):
        problems.append(f"cipherlist_STRONG: {by_id.get('cipherlist_STRONG')}")
    assert problems == [], "\n".join(problems) + "\n" + out[-3000:]
    assert proxy.running()

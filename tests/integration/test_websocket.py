"""SPEC 3: an Upgrade (WebSocket) request is forwarded with Upgrade and
`Connection: upgrade`; after the 101 the two connections are spliced until
either side closes; `timeouts.tunnel_idle` closes an idle tunnel. Against
`sluice-bench origin`'s /ws echo, and a raw Python origin that upgrades at
any path (the Vite dev server's HMR socket is at `/`)."""

import os
import struct
import time

import pytest

import harness
from harness import (UUID4_RE, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG, WS_TEXT, RawOrigin, WebSocketClient,
                     websocket_echo_handler)


@pytest.fixture
def origin(env):
    return env.origin("o")


def raw_origin(env, handler, name="raw"):
    o = RawOrigin(handler, name=name)
    env.origins.append(o)
    return o


def open_ws(env, proxy, target="/ws", **kw):
    c = env.client(proxy, timeout=10)
    ws = WebSocketClient(c)
    r = ws.handshake(target, **kw)
    return c, ws, r


def assert_upgraded(ws, r):
    assert r.status == 101, r
    assert (r.header("Upgrade") or "").lower() == "websocket", r
    assert "upgrade" in r.connection_tokens(), r
    assert ws.accept_ok(), f"Sec-WebSocket-Accept {r.header('Sec-WebSocket-Accept')!r} does not match the key"
    rid = r.header("X-Request-ID")
    assert rid is not None and UUID4_RE.match(rid), r
    return rid


def proxy_sockets_with_port(proxy, port):
    """The proxy's TCP sockets whose local or remote port is `port`
    (TIME_WAIT sockets belong to no process and are not listed)."""
    return [s for s in harness.proc_tcp_peers(proxy.pid) if port in (s[0], s[1])]


# -- against sluice-bench origin's /ws


def test_101_carries_the_request_id_and_the_accept_key(env, origin):
    proxy = env.proxy([origin])
    c, ws, r = open_ws(env, proxy)
    rid = assert_upgraded(ws, r)
    # The origin stamps its 101 like any response: it really came from there.
    assert r.header("X-Origin") == "o", r
    # The access log line is written when the tunnel ends.
    c.close()
    rec = proxy.wait_access_record(rid)
    assert rec["status"] == 101, rec
    assert rec["path"] == "/ws", rec


def test_incoming_request_id_is_kept_on_the_101(env, origin):
    proxy = env.proxy([origin])
    c, ws, r = open_ws(env, proxy, headers=[("X-Request-ID", "ws-trace-42")])
    assert r.status == 101, r
    assert r.header("X-Request-ID") == "ws-trace-42", r


def test_text_and_binary_messages_echo_both_ways(env, origin):
    proxy = env.proxy([origin])
    c, ws, r = open_ws(env, proxy)
    assert_upgraded(ws, r)
    messages = [
        (WS_TEXT, b"hello"),
        (WS_BINARY, bytes(range(256))),
        (WS_TEXT, "gr\u00fc\u00dfe, \u4e16\u754c \U0001f30a".encode("utf-8")),
        (WS_BINARY, os.urandom(125)),        # the largest 7-bit length
        (WS_BINARY, os.urandom(126)),        # the first 16-bit length
        (WS_TEXT, b"x" * 65535),             # the largest 16-bit length
        (WS_BINARY, os.urandom(65536)),      # the first 64-bit length
        (WS_BINARY, os.urandom(300_000)),    # spans many proxy reads
        (WS_TEXT, b""),
    ]
    for opcode, payload in messages:
        ws.send_frame(opcode, payload)
        got_op, got = ws.recv_message(timeout=10)
        assert got_op == opcode, (opcode, got_op, len(payload))
        assert got == payload, f"opcode {opcode}: {len(payload)} bytes sent, {len(got)} different bytes back"
    # Server frames reach the client unmasked (the proxy passes frames through as they are).
    assert not any(ws.frames_masked), ws.frames_masked


def test_pipelined_messages_and_fragments_keep_their_order(env, origin):
    proxy = env.proxy([origin])
    c, ws, r = open_ws(env, proxy)
    assert_upgraded(ws, r)
    # Ten messages in one write, then one message in three fragments.
    c.send(b"".join(harness.ws_frame(WS_TEXT, f"msg {i}".encode()) for i in range(10)))
    for i in range(10):
        assert ws.recv_message(timeout=10) == (WS_TEXT, f"msg {i}".encode())
    ws.send_frame(WS_BINARY, b"one-", fin=False)
    ws.send_frame(0x0, b"two-", fin=False)
    ws.send_frame(0x0, b"three", fin=True)
    assert ws.recv_message(timeout=10) == (WS_BINARY, b"one-two-three")


def test_ping_is_answered_through_the_tunnel(env, origin):
    proxy = env.proxy([origin])
    c, ws, r = open_ws(env, proxy)
    assert_upgraded(ws, r)
    ws.send_frame(WS_PING, b"are you there")
    fin, op, payload = ws.recv_frame(timeout=10)
    assert (op, payload) == (WS_PONG, b"are you there")


def test_clean_close_echoes_the_close_frame_then_closes_both_sockets(env, origin):
    proxy = env.proxy([origin])
    c, ws, r = open_ws(env, proxy)
    assert_upgraded(ws, r)
    client_port = c.sock.getsockname()[1]
    ws.send_text("before close")
    assert ws.recv_message(timeout=10) == (WS_TEXT, b"before close")
    # While the tunnel is open the proxy holds the client socket and one to the origin.
    assert proxy_sockets_with_port(proxy, client_port), harness.proc_tcp_peers(proxy.pid)
    assert proxy_sockets_with_port(proxy, origin.port), harness.proc_tcp_peers(proxy.pid)

    ws.send_close(1000, "bye")
    op, payload = ws.recv_message(timeout=10)
    assert op == WS_CLOSE, (op, payload)
    assert struct.unpack("!H", payload[:2])[0] == 1000, payload
    # The origin closes its TCP connection after the close handshake; the
    # proxy passes that on: the client sees the end of the stream.
    how, data = c.wait_closed(5)
    assert how in ("eof", "reset") and data == b"", (how, data)
    c.close()
    # ... and the proxy lets go of both sockets.
    harness.wait_until(lambda: not proxy_sockets_with_port(proxy, client_port)
                       and not proxy_sockets_with_port(proxy, origin.port), 5,
                       message="the proxy to close both tunnel sockets")
    # The proxy still serves new connections normally.
    assert proxy.get("/small").status == 200


def test_client_closing_tcp_closes_the_upstream_side(env):
    raw = raw_origin(env, websocket_echo_handler())
    proxy = env.proxy([raw])
    c, ws, r = open_ws(env, proxy)
    assert_upgraded(ws, r)
    ws.send_text("hi")
    assert ws.recv_message(timeout=10) == (WS_TEXT, b"hi")
    c.close()  # no close frame: the client just goes away
    conn = raw.conns[0]
    assert conn.ended.wait(5), "the origin's tunnel connection was not closed after the client left"
    assert conn.eof, "the origin's connection ended without seeing the proxy close it"


def test_idle_tunnels_hold_no_buffers(env, origin):
    # A tunnel is long-lived and mostly idle (a dev server's hot-reload
    # socket): while nothing flows, neither direction holds a receive
    # buffer (each takes one from the worker's pool when bytes come and
    # gives it back when they have gone). Messages of 12 KB each way, so
    # that buffers a tunnel kept would be resident. About 12 KiB per tunnel
    # stay (session, sockets, two waiting pumps); 51 when each direction
    # held a 16 KiB buffer while it waited, and the session the two blocks
    # its head and the 101 had come in.
    proxy = env.proxy([origin], workers=1)
    message = b"m" * 12000

    def idle_tunnel():
        _, ws, r = open_ws(env, proxy)
        assert r.status == 101, r
        ws.send_binary(message)
        assert ws.recv_message() == (WS_BINARY, message)

    harness.assert_idle_memory_bounded(proxy, idle_tunnel, 10, 100, 20, "idle tunnel")


def test_tunnel_idle_timeout_closes_an_idle_tunnel(env, origin):
    proxy = env.proxy([origin], timeouts={"tunnel_idle": "500ms"})
    c, ws, r = open_ws(env, proxy)
    assert_upgraded(ws, r)
    ws.send_text("ping")
    assert ws.recv_message(timeout=10) == (WS_TEXT, b"ping")
    t0 = time.monotonic()
    how, data = c.wait_closed(5)
    elapsed = time.monotonic() - t0
    assert how in ("eof", "reset"), f"idle tunnel still open after 5s with tunnel_idle 500ms"
    assert data == b"", data
    assert 0.4 <= elapsed < 2.5, f"idle tunnel closed after {elapsed:.3f}s with tunnel_idle 500ms"


def test_tunnel_idle_counts_from_the_last_activity(env, origin):
    # Traffic every 150 ms for 1.5 s keeps a tunnel with tunnel_idle 500ms open.
    proxy = env.proxy([origin], timeouts={"tunnel_idle": "500ms"})
    c, ws, r = open_ws(env, proxy)
    assert_upgraded(ws, r)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 1.5:
        ws.send_text(f"keepalive {i}")
        assert ws.recv_message(timeout=5) == (WS_TEXT, f"keepalive {i}".encode())
        i += 1
        time.sleep(0.15)  # the client's pace, not a wait for the proxy
    assert i >= 5
    how, _ = c.wait_closed(3)
    assert how in ("eof", "reset"), "the tunnel was not closed once traffic stopped"


def test_upgrade_to_a_path_the_origin_does_not_upgrade_is_a_plain_response(env, origin):
    # The origin answers an Upgrade at /small with a 200: the proxy relays it
    # and the connection stays HTTP.
    proxy = env.proxy([origin])
    c, ws, r = open_ws(env, proxy, target="/small")
    assert r.status == 200 and r.body == b"hello from o\n", r
    assert c.get("/headers?after=1").status == 200


# -- what the origin receives, and the Vite HMR socket (raw origin)


def test_origin_sees_connection_upgrade_and_upgrade_websocket(env):
    raw = raw_origin(env, websocket_echo_handler())
    proxy = env.proxy([raw])
    # Firefox's form: "Connection: keep-alive, Upgrade".
    c, ws, r = open_ws(env, proxy, target="/ws/chat?room=1", connection="keep-alive, Upgrade",
                       headers=[("Origin", "http://localhost"), ("Keep-Alive", "timeout=5")])
    rid = assert_upgraded(ws, r)
    harness.wait_until(lambda: raw.requests, 5)
    req = raw.requests[0]
    assert req.method == "GET" and req.target == "/ws/chat?room=1", req
    tokens = {t.strip().lower() for v in req.headers.get_all("Connection") for t in v.split(",") if t.strip()}
    assert tokens == {"upgrade"}, req
    assert req.headers.get_all("Upgrade") == ["websocket"], req
    assert req.headers.get("Sec-WebSocket-Key") == ws.key, req
    assert req.headers.get("Sec-WebSocket-Version") == "13", req
    assert req.headers.get("Origin") == "http://localhost", req
    assert req.headers.get("X-Request-ID") == rid, req
    assert "keep-alive" not in req.headers.names(), req
    ws.send_binary(b"\x00\x01\x02")
    assert ws.recv_message(timeout=10) == (WS_BINARY, b"\x00\x01\x02")
    # Client frames reach the origin still masked (spliced, not re-framed).
    assert raw.conns[0].ws_frames[0][1] is True, raw.conns[0].ws_frames


def test_vite_hmr_upgrade_at_the_root_path(env):
    # Vite's client opens ws://host:port/?token=... with the vite-hmr
    # subprotocol; the dev server accepts it and at once sends
    # {"type":"connected"} (here in the same write as the 101).
    raw = raw_origin(env, websocket_echo_handler(protocol="vite-hmr", greeting='{"type":"connected"}'))
    proxy = env.proxy([raw])
    c, ws, r = open_ws(env, proxy, target="/?token=Zx9_k2", host="localhost:5173",
                       protocols=["vite-hmr"], headers=[("Origin", "http://localhost:5173")])
    assert_upgraded(ws, r)
    assert r.header("Sec-WebSocket-Protocol") == "vite-hmr", r
    req = raw.requests[0]
    assert req.target == "/?token=Zx9_k2", req
    assert req.headers.get("Sec-WebSocket-Protocol") == "vite-hmr", req
    assert req.headers.get("Host") == "localhost:5173", req
    # The greeting that arrived with the 101 is not lost.
    assert ws.recv_message(timeout=10) == (WS_TEXT, b'{"type":"connected"}')
    ws.send_text('{"type":"custom","event":"ping"}')
    assert ws.recv_message(timeout=10) == (WS_TEXT, b'{"type":"custom","event":"ping"}')
    ws.send_close(1000)
    op, payload = ws.recv_message(timeout=10)
    assert op == WS_CLOSE and payload[:2] == struct.pack("!H", 1000), (op, payload)
    how, _ = c.wait_closed(5)
    assert how in ("eof", "reset")

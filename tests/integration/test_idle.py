"""Idle keep-alive client connections (ARCHITECTURE "Memory between
requests"): between requests a plain-HTTP connection is parked, its socket
held by the worker outside the event loop with no session, until its next
request (a new session serves it as the same connection), client_idle, a
drain or the removal of its listener.

Whether a connection is parked is read from the kernel: /proc/PID/fdinfo of
the proxy's epoll instances says which one watches the connection's socket
(the event loop's also watches the listening socket; the parked set's does
not)."""

import os
import re
import signal
import time

import harness
from harness import HttpClient, wait_until

TFD = re.compile(r"^tfd:\s+(\d+)", re.M)


def socket_inodes(pid):
    """{(local port, remote port, state): inode} of the proxy's IPv4 TCP
    sockets (rows without an inode, TIME_WAIT ones, left out)."""
    out = {}
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[9] == "0":
                continue
            local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
            out[(local, remote, fields[3])] = fields[9]
    return out


def descriptors_by_inode(pid):
    """{socket inode: the proxy's descriptor}."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out[target[len("socket:["):-1]] = int(fd)
    return out


def epoll_watches(pid):
    """{epoll descriptor: set of the descriptors it watches} of the proxy."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                out[int(fd)] = {int(t) for t in TFD.findall(f.read())}
        except OSError:
            continue
    return out


def parked(proxy, *clients, port=None):
    """Whether the proxy holds every one of `clients`' connections (to
    `port`, by default its listener) parked: the socket is watched by an
    epoll instance that does not watch the listening socket, and by no other.
    (One worker: one event loop.)"""
    port = port or proxy.port
    inodes = socket_inodes(proxy.pid)
    fds = descriptors_by_inode(proxy.pid)
    watches = epoll_watches(proxy.pid).values()
    listening = fds.get(inodes.get((port, 0, "0A")))
    assert listening is not None, f"no listening socket on port {port}"
    for c in clients:
        conn = fds.get(inodes.get((port, c.sock.getsockname()[1], "01")))
        if conn is None:
            return False  # (not established, or not yet seen)
        in_loop = any(conn in w and listening in w for w in watches)
        in_parked_set = any(conn in w and listening not in w for w in watches)
        if in_loop or not in_parked_set:
            return False
    return True


def sample(proxy, name):
    """The value of metric `name` (one listener: one series)."""
    text = harness.http_get(proxy.admin_port, "/metrics").body.decode()
    m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def seen_forwarded_for(resp):
    assert resp.status == 200, resp
    return harness.Headers([tuple(h) for h in resp.json()["headers"]]).get_all("X-Forwarded-For")


def test_an_idle_connection_is_parked_and_its_next_request_served_as_before(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], workers=1, forwarded={"trusted_proxies": ["127.0.0.0/8"]})
    c = env.client(proxy)
    first = c.get("/headers", {"X-Forwarded-For": "192.0.2.7"})
    assert seen_forwarded_for(first) == ["192.0.2.7, 127.0.0.1"]
    wait_until(lambda: parked(proxy, c), 5, message="the idle connection to be parked")
    # Woken by its next request on the same client connection: the same
    # client facts (address, trusted peer), then parked again.
    second = c.get("/headers", {"X-Forwarded-For": "192.0.2.7"})
    assert seen_forwarded_for(second) == ["192.0.2.7, 127.0.0.1"]
    assert not c.eof
    wait_until(lambda: parked(proxy, c), 5, message="the connection to be parked again")
    assert c.get("/small").status == 200


def test_a_parked_connection_is_counted_once_and_active_until_it_closes(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], workers=1)
    clients = [env.client(proxy) for _ in range(2)]
    for _ in range(3):
        for c in clients:
            assert c.get("/small").status == 200
        wait_until(lambda: parked(proxy, *clients), 5, message="both connections parked")

    assert sample(proxy, "sluice_downstream_connections_active") == 2
    assert sample(proxy, "sluice_downstream_connections_total") == 2
    for c in clients:
        c.close()
    wait_until(lambda: sample(proxy, "sluice_downstream_connections_active") == 0, 5,
               message="the closed parked connections to be counted closed")
    assert sample(proxy, "sluice_downstream_connections_total") == 2


def parked_connection(env, client_idle):
    """A one-worker proxy with `client_idle`, and a client connection of it
    that has made a request and is parked."""
    proxy = env.proxy([env.origin("o")], workers=1, timeouts={"client_idle": client_idle})
    c = env.client(proxy)
    assert c.get("/small").status == 200
    wait_until(lambda: parked(proxy, c), 5, message="the idle connection to be parked")
    return proxy, c


def reload_client_idle(proxy, value):
    proxy.config["timeouts"]["client_idle"] = value
    with open(proxy.config_path, "w") as f:
        f.write(harness.to_yaml(proxy.config) + "\n")
    generation = harness.admin_status(proxy)["generation"]
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: harness.admin_status(proxy)["generation"] == generation + 1, 5, message="the reload")


def assert_closed_soon(c, within):
    t0 = time.monotonic()
    how, data = c.wait_closed(5.0)
    assert how in ("eof", "reset") and data == b"", (how, data)
    assert time.monotonic() - t0 < within


def test_client_idle_closes_a_parked_connection_and_a_reload_can_shorten_it(env):
    # The idle deadline is read when the sweep runs: a reload to 300ms closes
    # a connection parked under 60s.
    proxy, c = parked_connection(env, "60s")
    reload_client_idle(proxy, "300ms")
    assert_closed_soon(c, 2.0)
    # Other connections go on being served and parked.
    fresh = env.client(proxy)
    assert fresh.get("/small").status == 200


def test_removing_a_listener_closes_its_parked_connections_only(env):
    extra_port = harness.free_port()
    routes = [{"match": {"path_prefix": "/"}, "respond": {"status": 200, "body": "ok\n"}}]
    cfg = env.config(routes, [], workers=1)
    cfg["listeners"].append({"name": "extra", "bind": f"127.0.0.1:{extra_port}", "routes": routes})
    proxy = env.sluice(cfg)
    kept = env.client(proxy)
    assert kept.get("/").status == 200
    gone = env.client(extra_port)
    assert gone.get("/").status == 200
    wait_until(lambda: parked(proxy, kept), 5, message="the main listener's connection to be parked")
    wait_until(lambda: parked(proxy, gone, port=extra_port), 5, message="the extra listener's connection to be parked")
    cfg["listeners"].pop()
    with open(proxy.config_path, "w") as f:
        f.write(harness.to_yaml(cfg) + "\n")
    proxy.signal(signal.SIGHUP)
    how, data = gone.wait_closed(5.0)
    assert how in ("eof", "reset") and data == b"", (how, data)
    assert kept.get("/").status == 200


def test_hundreds_of_parked_connections_woken_together_are_all_served(env):
    # A smoke test of waking many at once (batches of the parked set's
    # events); which of them are ready together is up to the scheduler.
    origin = env.origin("o")
    proxy = env.proxy([origin], workers=1)
    clients = [HttpClient(proxy.port) for _ in range(300)]
    env.clients.extend(clients)
    request = harness.build_request("GET", "/small")
    for c in clients:
        c.send(request)
    for c in clients:
        assert c.read_response().status == 200
    wait_until(lambda: parked(proxy, *clients), 10, message="all 300 connections to be parked")
    for c in clients:
        c.send(request)
    for c in clients:
        assert c.read_response().status == 200
    wait_until(lambda: parked(proxy, *clients), 10, message="all 300 connections to be parked again")


def test_a_reload_shortening_client_idle_while_none_is_parked_applies_to_the_next(env):
    proxy, first = parked_connection(env, "60s")
    first.close()  # (woken by its close: nothing is parked now, the 60s sweep still armed)
    wait_until(lambda: sample(proxy, "sluice_downstream_connections_active") == 0, 5,
               message="the closed connection to be counted closed")
    reload_client_idle(proxy, "300ms")
    c = env.client(proxy)
    assert c.get("/small").status == 200
    assert_closed_soon(c, 2.0)

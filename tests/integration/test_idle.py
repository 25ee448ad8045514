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


def proxy_fd(pid, local_port, remote_port, state=None):
    """The proxy's descriptor for the TCP socket local_port <-> remote_port
    (remote_port 0 with state "0A": the listening socket)."""
    inode = None
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, st = fields[1], fields[2], fields[3]
            if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port \
                    and (state is None or st == state):
                inode = fields[9]
    assert inode is not None, f"no socket {local_port} <-> {remote_port} in the proxy"
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                return int(fd)
        except OSError:
            continue
    raise AssertionError(f"socket inode {inode} is not open in the proxy")


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


def parked(proxy, client):
    """Whether the proxy holds `client`'s connection parked: its socket is
    watched by an epoll instance that does not watch the listening socket.
    (One worker: one event loop.)"""
    listening = proxy_fd(proxy.pid, proxy.port, 0, state="0A")
    conn = proxy_fd(proxy.pid, proxy.port, client.sock.getsockname()[1])
    watches = epoll_watches(proxy.pid)
    in_loop = any(conn in w and listening in w for w in watches.values())
    in_parked_set = any(conn in w and listening not in w for w in watches.values())
    return in_parked_set and not in_loop


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
    # Woken by its next request: the same connection, the same client facts
    # (address, trusted peer), then parked again.
    second = c.get("/headers", {"X-Forwarded-For": "192.0.2.7"})
    assert seen_forwarded_for(second) == ["192.0.2.7, 127.0.0.1"]
    assert second.header("X-Origin-Connection") == first.header("X-Origin-Connection")
    wait_until(lambda: parked(proxy, c), 5, message="the connection to be parked again")
    assert c.get("/small").status == 200


def test_a_parked_connection_is_counted_once_and_active_until_it_closes(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], workers=1)
    clients = [env.client(proxy) for _ in range(2)]
    for _ in range(3):
        for c in clients:
            assert c.get("/small").status == 200
        wait_until(lambda: all(parked(proxy, c) for c in clients), 5, message="both connections parked")

    def gauge(name):
        text = harness.http_get(proxy.admin_port, "/metrics").body.decode()
        m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    assert gauge("sluice_downstream_connections_active") == 2
    assert gauge("sluice_downstream_connections_total") == 2
    for c in clients:
        c.close()
    wait_until(lambda: gauge("sluice_downstream_connections_active") == 0, 5,
               message="the closed parked connections to be counted closed")
    assert gauge("sluice_downstream_connections_total") == 2


def test_client_idle_closes_a_parked_connection_and_a_reload_can_shorten_it(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], workers=1, timeouts={"client_idle": "60s"})
    c = env.client(proxy)
    assert c.get("/small").status == 200
    wait_until(lambda: parked(proxy, c), 5, message="the idle connection to be parked")
    # The idle deadline is read when the sweep runs: a reload to 300ms closes
    # a connection parked under 60s.
    proxy.config["timeouts"]["client_idle"] = "300ms"
    with open(proxy.config_path, "w") as f:
        f.write(harness.to_yaml(proxy.config) + "\n")
    proxy.signal(signal.SIGHUP)
    wait_until(lambda: harness.admin_status(proxy)["generation"] == 2, 5, message="the reload")
    t0 = time.monotonic()
    how, data = c.wait_closed(5.0)
    assert how in ("eof", "reset") and data == b"", (how, data)
    assert time.monotonic() - t0 < 2.0
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
    cfg["listeners"].pop()
    with open(proxy.config_path, "w") as f:
        f.write(harness.to_yaml(cfg) + "\n")
    proxy.signal(signal.SIGHUP)
    how, data = gone.wait_closed(5.0)
    assert how in ("eof", "reset") and data == b"", (how, data)
    assert kept.get("/").status == 200


def test_hundreds_of_parked_connections_woken_at_once_are_all_served(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], workers=1)
    clients = [HttpClient(proxy.port) for _ in range(300)]
    env.clients.extend(clients)
    request = harness.build_request("GET", "/small")
    for c in clients:
        c.send(request)
    for c in clients:
        assert c.read_response().status == 200
    wait_until(lambda: all(parked(proxy, c) for c in clients[::50]), 5, message="the connections to be parked")
    # All readable together: more than one batch of the parked set's events.
    for c in clients:
        c.send(request)
    for c in clients:
        assert c.read_response().status == 200

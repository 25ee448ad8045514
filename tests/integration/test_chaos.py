"""Chaos (issue 11): steady keep-alive load through the proxy while

- an origin is killed (SIGKILL) and started again on its port, twice;
- an origin hangs: it accepts and reads requests, health checks included,
  and never answers;
- an origin resets mid-response: it sends part of a response (half a head,
  or a whole head and part of the body), then a TCP RST;
- the config is reloaded (POST /reload and SIGHUP), adding and removing a
  server;
- 200 slowloris connections arrive, each sending a header byte now and then.

Throughout, every request of the load gets, within upstream_response plus a
margin, either a whole 200 from an origin or the proxy's own 502/504 (with
its request ID); the only other outcome allowed is a response cut short
after its head, and only from the resetting origin (a proxy cannot turn a
relayed 200 into a 5xx). Every slowloris connection gets its 408 at
client_header and is closed. Afterwards every request is a 200 from the
origins that are healthy, and the proxy's descriptors and anonymous memory
come back to what they were after a warm-up of the same shape.

Two narrower tests: pooled connections to an origin that dies are closed at
once (the pool watches its idle connections), and the memory a connection
flood took goes back (receive blocks are given back between requests and
pooled per worker, so a flood's blocks do not stay scattered in the heap).

The hanging and resetting origins are Python servers (harness.RawOrigin)
switched between good and bad; the others are `sluice-bench origin`.
"""

import os
import select
import signal
import socket
import struct
import threading
import time

import pytest

import harness
from harness import ConnectionClosed, RawOrigin, UUID4_RE, http_response, status_servers, wait_until

UPSTREAM_RESPONSE = 2.0
CLIENT_HEADER = 2.0
# Scheduling allowance on a loaded 2-core machine (Python clients, two
# proxy workers, five origins).
MARGIN = 1.5
WORKERS = 2
CLIENT_THREADS = 6
SLOWLORIS = 200
SLOWLORIS_PACE = 0.5  # seconds between header bytes
CHECK = {"path": "/health", "interval": "200ms", "timeout": "200ms", "healthy_threshold": 2,
         "unhealthy_threshold": 2}
ROUTES = [{"match": {"path_prefix": "/"}, "upstream": "backend"}]


# --------------------------------------------------------------------------
# Origins that can be switched bad


class Switch:
    def __init__(self):
        self.bad = False


def hello(name):
    return http_response(200, f"hello from {name}\n".encode(), {"X-Origin": name})


def hanging_handler(name, switch):
    """Good: answers everything 200. Bad: reads the request and never
    answers; the connection ends when the proxy closes it."""

    def handler(conn):
        while True:
            req = conn.read_request_head(timeout=120)
            if req is None:
                return
            if switch.bad:
                req.unanswered = True
                conn.wait_eof(timeout=120)
                return
            conn.send(hello(name))

    return handler


def resetting_handler(name, switch):
    """Good: answers everything 200. Bad: sends part of a response, then
    resets the connection: to a request, in turn half a head or a whole head
    (Content-Length 1000) and 10 body bytes; to a health check always half a
    head (a check needs only the status, so a whole head would pass it)."""
    count = [0]

    def handler(conn):
        while True:
            req = conn.read_request_head(timeout=120)
            if req is None:
                return
            if switch.bad:
                count[0] += 1
                if count[0] % 2 or req.target == "/health":
                    conn.send(b"HTTP/1.1 200 OK\r\nContent-Le")
                else:
                    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Origin: " + name.encode()
                              + b"\r\n\r\n0123456789")
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.sock.close()  # RST
                return
            conn.send(hello(name))

    return handler


# --------------------------------------------------------------------------
# The load: keep-alive clients that classify every answer


class Outcome:
    def __init__(self, started, elapsed, kind, status=None, origin=None, detail=""):
        self.started = started
        self.elapsed = elapsed
        self.kind = kind  # ok | proxy_error | cut | closed | timeout | bad
        self.status = status
        self.origin = origin
        self.detail = detail

    def __repr__(self):
        return (f"<{self.kind} status={self.status} origin={self.origin} after {self.elapsed:.3f}s"
                f"{' ' + self.detail if self.detail else ''}>")


def read_answer(c, deadline):
    """(status, headers, body, complete): a response head, then its body
    until it ends or the connection closes (complete False)."""
    _version, status, _reason, headers = c._read_head(deadline)
    body = bytearray()
    try:
        if "chunked" in ",".join(headers.get_all("Transfer-Encoding")).lower():
            while True:
                size = int(c._read_line(deadline).split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while c._read_line(deadline) != b"":
                        pass
                    break
                c._read_exact(size, deadline, body.extend)
                c._read_line(deadline)
        else:
            c._read_exact(int(headers.get("Content-Length", "0")), deadline, body.extend)
    except ConnectionClosed:
        return status, headers, bytes(body), False
    return status, headers, bytes(body), True


def classify(status, headers, body, complete, origins):
    origin = headers.get("X-Origin")
    if not complete:
        return Outcome(0, 0, "cut", status, origin)
    if status == 200:
        if origin in origins and body == f"hello from {origin}\n".encode():
            return Outcome(0, 0, "ok", status, origin)
        return Outcome(0, 0, "bad", status, origin, f"body {body[:80]!r}")
    rid = headers.get("X-Request-ID") or ""
    own = (origin is None and UUID4_RE.match(rid) and rid.encode() in body
           and (headers.get("Content-Type") or "").startswith("text/plain"))
    if status in (502, 504) and own:
        return Outcome(0, 0, "proxy_error", status)
    return Outcome(0, 0, "bad", status, origin, f"headers {headers.items!r} body {body[:80]!r}")


class Load:
    """CLIENT_THREADS threads, each sending GET /small on its keep-alive
    connection (a new one after a close) until stopped."""

    def __init__(self, port, origins, threads=CLIENT_THREADS, read_timeout=UPSTREAM_RESPONSE + 8):
        self.port = port
        self.origins = set(origins)
        self.read_timeout = read_timeout
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.outcomes = []
        self.errors = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout=UPSTREAM_RESPONSE + 10):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a load thread did not stop"
        assert not self.errors, self.errors
        return self.outcomes

    def _record(self, o):
        with self.lock:
            self.outcomes.append(o)

    def _run(self):
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - reported by stop()
            self.errors.append(repr(exc))

    def _loop(self):
        c = None
        request = harness.build_request("GET", "/small")
        while not self.stop_event.is_set():
            if c is None:
                try:
                    c = harness.HttpClient(self.port, timeout=self.read_timeout)
                except OSError as exc:
                    self._record(Outcome(time.monotonic(), 0, "closed", detail=f"connect: {exc!r}"))
                    self.stop_event.wait(0.05)
                    continue
            t0 = time.monotonic()
            try:
                c.send(request)
                status, headers, body, complete = read_answer(c, t0 + self.read_timeout)
            except TimeoutError:
                o = Outcome(t0, 0, "timeout")
            except (ConnectionClosed, OSError) as exc:
                o = Outcome(t0, 0, "closed", detail=repr(exc))
            except ValueError as exc:
                o = Outcome(t0, 0, "bad", detail=repr(exc))
            else:
                o = classify(status, headers, body, complete, self.origins)
                if complete and "close" not in {t.strip().lower() for v in headers.get_all("Connection")
                                                for t in v.split(",")}:
                    o.started, o.elapsed = t0, time.monotonic() - t0
                    self._record(o)
                    continue
            o.started, o.elapsed = t0, time.monotonic() - t0
            self._record(o)
            c.close()
            c = None
        if c is not None:
            c.close()


# --------------------------------------------------------------------------
# Slowloris


class Slowloris:
    """n connections that send a request head one byte every `pace` seconds
    and never finish it. Records, per connection, when it was opened, when
    the first answer byte came, what came, and when the proxy closed it."""

    PREFIX = b"GET /small HTTP/1.1\r\nHost: localhost\r\nX-Slow: "

    def __init__(self, port, n=SLOWLORIS, pace=SLOWLORIS_PACE):
        self.port = port
        self.n = n
        self.pace = pace
        self.conns = []  # dicts: sock, opened, answered, data, closed
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def join(self, timeout):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the slowloris thread did not finish"
        assert self.error is None, self.error
        return self.conns

    def _run(self):
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - reported by join()
            self.error = repr(exc)
        finally:
            for c in self.conns:
                c["sock"].close()

    def _loop(self):
        for _ in range(self.n):
            s = socket.create_connection((harness.LOOPBACK, self.port), timeout=5)
            s.sendall(self.PREFIX)
            s.setblocking(False)
            self.conns.append({"sock": s, "opened": time.monotonic(), "answered": None, "data": b"",
                               "closed": None})
        deadline = time.monotonic() + CLIENT_HEADER + MARGIN + 3
        next_byte = time.monotonic() + self.pace
        while time.monotonic() < deadline:
            open_ = [c for c in self.conns if c["closed"] is None]
            if not open_:
                return
            readable, _, _ = select.select([c["sock"] for c in open_], [], [],
                                           max(0.0, min(next_byte, deadline) - time.monotonic()))
            now = time.monotonic()
            by_sock = {c["sock"]: c for c in open_}
            for s in readable:
                c = by_sock[s]
                try:
                    data = s.recv(65536)
                except (ConnectionResetError, ConnectionAbortedError):
                    data = b""
                except BlockingIOError:
                    continue
                if data:
                    c["data"] += data
                    c["answered"] = c["answered"] or now
                else:
                    c["closed"] = now
                    c["answered"] = c["answered"] or now
            if now >= next_byte:
                next_byte = now + self.pace
                for c in open_:
                    if c["closed"] is None and c["answered"] is None:
                        try:
                            c["sock"].send(b"a")
                        except BlockingIOError:
                            pass
                        except OSError:
                            c["closed"] = c["answered"] = now


# --------------------------------------------------------------------------
# The proxy's descriptors and memory


def fd_census(proxy):
    """The proxy's descriptors by kind (harness.fd_census, the census the soak
    run takes too); "client" counts connections on its listener or admin port."""
    return harness.fd_census(proxy.pid, {proxy.port, proxy.admin_port})


def anon_kib(proxy):
    """Anonymous resident memory (heap, stacks): what a leak grows. VmRSS
    also counts the binary's pages, which grow as new code paths run."""
    return proxy.proc_status_kib("RssAnon")


def assert_slowloris_cut(conns):
    """Every slowloris connection got a 408 at client_header and was closed."""
    assert len(conns) == SLOWLORIS
    for c in conns:
        assert c["answered"] is not None and c["closed"] is not None, c
        took = c["answered"] - c["opened"]
        assert CLIENT_HEADER - 0.1 <= took <= CLIENT_HEADER + MARGIN, (took, c)
        assert c["data"].startswith(b"HTTP/1.1 408 "), c["data"][:100]


# --------------------------------------------------------------------------


def test_chaos(env):
    h1, h2, h3, k = (env.origin(n) for n in ("h1", "h2", "h3", "k"))
    hang_switch, reset_switch = Switch(), Switch()
    hang = RawOrigin(hanging_handler("hang", hang_switch), name="hang")
    reset = RawOrigin(resetting_handler("reset", reset_switch), name="reset")
    env.origins += [hang, reset]
    names = {"h1", "h2", "h3", "k", "hang", "reset"}

    def upstreams(with_h3):
        members = [h1, h2, k, hang, reset] + ([h3] if with_h3 else [])
        return [harness.upstream("backend", members, health_check=CHECK, retries=2,
                                 passive={"max_fails": 1, "fail_timeout": "1s"})]

    cfg = env.config(ROUTES, upstreams(False), workers=WORKERS,
                     timeouts={"upstream_response": f"{UPSTREAM_RESPONSE:g}s",
                               "client_header": f"{CLIENT_HEADER:g}s", "upstream_connect": "1s",
                               "shutdown_grace": "5s"})
    # Under AddressSanitizer freed memory would sit in a quarantine and count
    # as resident; without one, RSS measures what the proxy keeps.
    asan = dict(os.environ, ASAN_OPTIONS=(os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0").lstrip(":"))
    proxy = env.sluice(cfg, env=asan)

    def servers():
        return status_servers(proxy, "backend")

    def wait_health(expected, timeout=6.0):
        """expected: {origin: healthy}."""
        try:
            wait_until(lambda: all(servers()[o.address]["healthy"] is v for o, v in expected.items()), timeout,
                       interval=0.02)
        except TimeoutError:
            now = servers()
            raise AssertionError(f"after {timeout}s: wanted {[(o.name, v) for o, v in expected.items()]}, "
                                 f"/status has {[(o.name, now.get(o.address)) for o in expected]}") from None

    def reload(with_h3, how):
        cfg["upstreams"] = upstreams(with_h3)
        with open(proxy.config_path, "w") as f:
            f.write(harness.to_yaml(cfg) + "\n")
        gen = harness.admin_status(proxy)["generation"]
        if how == "post":
            with harness.HttpClient(proxy.admin_port, timeout=5) as c:
                r = c.request("POST", "/reload", body=b"")
            assert r.status == 200 and r.json()["generation"] == gen + 1, r
        else:
            proxy.signal(signal.SIGHUP)
            wait_until(lambda: harness.admin_status(proxy)["generation"] == gen + 1, 5, message="SIGHUP reload")

    def restart(origin):
        fresh = harness.Origin(env.bench_bin, env.tmp, origin.name, port=origin.port)
        env.origins.append(fresh)
        return fresh.wait_ready()

    def kill(origin):
        origin.proc.kill()
        origin.proc.wait(timeout=5)

    # -- warm up on the final shape (every server good, a slowloris flood
    # too: the allocator keeps what a flood took, so the baseline is taken
    # past that high-water mark), then the baseline
    wait_health({o: True for o in (h1, h2, k, hang, reset)})
    warm = Load(proxy.port, names).start()
    assert_slowloris_cut(Slowloris(proxy.port).start().join(CLIENT_HEADER + MARGIN + 10))
    wait_until(lambda: len(warm.outcomes) >= 600, 15, message="600 warm-up requests")
    outcomes = warm.stop()
    assert {o.kind for o in outcomes} == {"ok"}, [o for o in outcomes if o.kind != "ok"][:5]
    seen = [None]

    def settled():
        # The proxy closes a client socket a moment after the client did.
        census = fd_census(proxy)
        ok = census["client"] == 0 and seen[0] == census["total"]
        seen[0] = census["total"]
        return census if ok else None

    base = wait_until(settled, 5, interval=0.1, message="the descriptors to settle after the warm-up")
    base_anon = anon_kib(proxy)

    # -- chaos
    load = Load(proxy.port, names).start()
    wait_until(lambda: len(load.outcomes) >= 100, 10, message="the load to run")
    # Each fault while the load flows freely: a hanging origin holds every
    # client that reaches it for upstream_response, so it goes bad after
    # the resetting one has been seen.
    reset_switch.bad = True
    kill(k)
    loris = Slowloris(proxy.port).start()
    wait_health({reset: False, k: False})
    reload(True, "post")                      # h3 joins
    k = restart(k)
    hang_switch.bad = True
    wait_health({hang: False, k: True, h3: True})
    reset_switch.bad = False
    reload(False, "sighup")                   # h3 leaves
    wait_health({reset: True})
    kill(k)
    reset_switch.bad = True
    hang_switch.bad = False
    reload(True, "post")                      # h3 joins again
    wait_health({k: False, reset: False, hang: True})
    k = restart(k)
    wait_health({k: True})
    hang_switch.bad = True
    reload(False, "sighup")                   # the final config: the warm-up's
    n_before = len(load.outcomes)
    wait_until(lambda: len(load.outcomes) >= n_before + 100, 10, message="100 requests after the last reload")
    outcomes = load.stop()
    slow = loris.join(CLIENT_HEADER + MARGIN + 10)

    # Every request: a 200, the proxy's own 502/504, or (resetting origin
    # only) a head then a closed connection; never later than the timeout.
    kinds = {}
    for o in outcomes:
        kinds[o.kind] = kinds.get(o.kind, 0) + 1
    failures = [o for o in outcomes if o.kind not in ("ok", "proxy_error", "cut")]
    assert not failures, (kinds, failures[:10])
    wrong_cut = [o for o in outcomes if o.kind == "cut" and o.origin != "reset"]
    assert not wrong_cut, wrong_cut[:10]
    slowest = max(outcomes, key=lambda o: o.elapsed)
    assert slowest.elapsed <= UPSTREAM_RESPONSE + MARGIN, f"slowest request: {slowest!r}"
    assert kinds.get("ok", 0) >= 200, kinds
    # The faults did reach the clients: the hang as 504s (never before the
    # timeout), the resets as 502s or cut responses.
    gateway_timeouts = [o for o in outcomes if o.status == 504]
    assert gateway_timeouts, kinds
    quickest = min(gateway_timeouts, key=lambda o: o.elapsed)
    assert quickest.elapsed >= UPSTREAM_RESPONSE - 0.1, quickest
    assert [o for o in outcomes if o.status == 502 or o.kind == "cut"], kinds

    assert_slowloris_cut(slow)

    # -- afterwards: the hanging and resetting origins are out, the others serve everything
    wait_health({h1: True, h2: True, k: True, hang: False, reset: False})
    after = Load(proxy.port, names, threads=4).start()
    wait_until(lambda: len(after.outcomes) >= 400, 15, message="400 requests after the chaos")
    outcomes = after.stop()
    served = {}
    for o in outcomes:
        assert o.kind == "ok", o
        served[o.origin] = served.get(o.origin, 0) + 1
    assert set(served) == {"h1", "h2", "k"}, served

    # Every request the hanging origin left unanswered: the proxy closed its
    # connection (504 or check timeout), none is held open.
    def unanswered_open():
        return [c for c in hang.conns if not c.ended.is_set()
                and any(getattr(r, "unanswered", False) for r in hang.requests if r.conn_id == c.id)]

    wait_until(lambda: not unanswered_open(), 5, message="the proxy to close every unanswered upstream connection")

    # -- descriptors and memory back to the baseline: no client socket left,
    # as many other descriptors (epoll, eventfds, timers, files) and
    # listeners as before, no socket the kernel has closed, and towards each
    # origin only idle pooled keep-alive connections (at most one per client
    # connection per worker) and a health check in flight. Pooled
    # connections to the killed origin's earlier process may wait in
    # CLOSE_WAIT for a request to take them or the 60 s idle sweep (see
    # test_pooled_connections_to_a_dead_origin_are_closed): nowhere else.
    origin_ports = {o.port for o in (h1, h2, h3, k, hang, reset)}
    pool_bound = WORKERS * CLIENT_THREADS + 1

    def recovered():
        c = fd_census(proxy)
        per_port = {}
        for (port, state), n in c["upstream"].items():
            per_port[port] = per_port.get(port, 0) + n
        ok = (c["client"] == 0 and c["other"] <= base["other"] and c["listen"] == base["listen"]
              and c["unlisted"] == 0 and set(per_port) <= origin_ports
              and max(per_port.values(), default=0) <= pool_bound
              and all(state == "01" or (state == "08" and port == k.port) for port, state in c["upstream"]))
        return c if ok else None

    try:
        wait_until(recovered, 10, interval=0.2)
    except TimeoutError:
        raise AssertionError(f"descriptors: baseline {base}, now {fd_census(proxy)}") from None
    # A leak grows anonymous memory with every request or failure; the
    # allocator's own retention was reached by the warm-up's flood. Under
    # ThreadSanitizer anonymous memory also holds its shadow of every heap
    # address ever touched, which never shrinks: there the release and
    # ASan runs check the bound, this run the races.
    if proxy.sanitizer_runtime() != "tsan":
        try:
            wait_until(lambda: anon_kib(proxy) - base_anon < 4096, 10, interval=0.2)
        except TimeoutError:
            raise AssertionError(f"anonymous RSS {anon_kib(proxy)} KiB, {base_anon} KiB after the warm-up") from None
    assert proxy.running()


def test_memory_taken_by_a_connection_flood_goes_back(env):
    o = env.origin("o")
    proxy = env.sluice(env.config(ROUTES, [harness.upstream("backend", [o])], workers=WORKERS,
                                  timeouts={"client_header": f"{CLIENT_HEADER:g}s"}))
    with open(f"/proc/{proxy.pid}/maps") as f:
        maps = f.read()
    if "libasan" in maps or "libtsan" in maps:
        pytest.skip("a sanitizer's allocator keeps freed memory (shadow, caches); "
                    "the release build checks the proxy's own allocations")
    for _ in range(2):  # each worker has served a request
        with proxy.client() as c:
            assert c.get("/small").status == 200
    wait_until(lambda: fd_census(proxy)["client"] == 0, 5, message="the warm-up connections closed")
    before = anon_kib(proxy)
    assert_slowloris_cut(Slowloris(proxy.port).start().join(CLIENT_HEADER + MARGIN + 10))
    wait_until(lambda: fd_census(proxy)["client"] == 0, 5, message="the flood's connections closed")
    try:
        wait_until(lambda: anon_kib(proxy) - before < 2048, 3, interval=0.2)
    except TimeoutError:
        raise AssertionError(f"anonymous RSS {anon_kib(proxy)} KiB after the flood, {before} KiB before") from None


def test_pooled_connections_to_a_dead_origin_are_closed(env):
    a, b = env.origins_named("a", "b")
    proxy = env.proxy([a, b])
    # Eight requests at once: pooled connections to both origins (four each
    # with one worker).
    watch = harness.ArrivalWatch([a, b])
    clients = [env.client(proxy) for _ in range(8)]
    for c in clients:
        c.send(harness.build_request("GET", "/delay/300"))
    watch.wait(8)
    for c in clients:
        assert c.read_response().status == 200

    def pooled(port):
        return sum(n for (p, _), n in fd_census(proxy)["upstream"].items() if p == port)

    assert pooled(a.port) >= 1 and pooled(b.port) >= 1, fd_census(proxy)
    held_b = pooled(b.port)
    a.proc.kill()
    a.proc.wait(timeout=5)
    try:
        wait_until(lambda: pooled(a.port) == 0, 3, interval=0.05)
    except TimeoutError:
        raise AssertionError(f"still held 3 s after the origin died: {fd_census(proxy)}") from None
    assert pooled(b.port) == held_b

"""Test support for the sluice integration suite (stdlib only).

What lives here:
- free_port(), wait_until(): ports discovered, waits bounded by deadlines.
- HttpClient / Response: a small raw HTTP/1.1 client over one socket
  (Content-Length, chunked and close-delimited bodies, keep-alive reuse,
  pipelining, interim 1xx responses); TlsHttpClient is the same over TLS
  (SNI, session resumption, ALPN and the peer certificate exposed).
- to_yaml(), proxy_config(): the YAML config file written for each test.
- Origin: a `sluice-bench origin` process on 127.0.0.1 (or another loopback
  address, `host=`).
- admin_status(), status_servers(), log_messages(): the proxy's /status and
  JSON log lines by message.
- Sluice: a `sluice` process, its stdout (the JSON log) captured to a file.
- proc_tcp_peers(), peak_rss_kib(): a process's TCP sockets and VmHWM;
  fd_census(): its descriptors by kind (bench/proc_census.py, shared with
  bench/soak_report.py).
- run_script(), processes_mentioning(), assert_nothing_left(): a bench
  script run to its end under a time limit, and what it must leave behind.
- RawOrigin / RawConnection / serve_http(): a Python origin in threads, for
  what `sluice-bench origin` cannot do (malformed responses, counted
  connections, recorded request heads, bodies counted and hashed).
- WebSocketClient, ws_frame(), websocket_echo_handler(): RFC 6455 client
  and a raw echo origin that upgrades at any path.

Nothing here sleeps for a fixed time to wait for something: every wait polls
a predicate against a deadline, and every process started is stopped
(SIGTERM, then SIGKILL after a deadline).
"""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

# The /proc descriptor census has one home, bench/proc_census.py, shared with
# bench/soak_report.py. It lives in bench/ rather than here because the bench
# tools run on their own and must not need the test tree, while the tests
# already depend on bench/ (they run sluice-bench and its scripts): the tests
# import from bench/, never the reverse.
BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
if BENCH_DIR not in sys.path:
    sys.path.append(BENCH_DIR)
import proc_census  # noqa: E402

fd_census = proc_census.fd_census  # harness.fd_census(pid, client_ports) for the tests

UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------
# Ports and waiting


_handed_out_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read,
    close), never the same one twice in a test run (the kernel may hand a
    just-closed port out again, and a listener and the admin listener must
    not collide)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port


def origins_answering(client, n, target="/"):
    """X-Origin of n GETs of `target` on one client connection; each must be a 200."""
    out = []
    for _ in range(n):
        r = client.get(target)
        assert r.status == 200, r
        out.append(r.header("X-Origin"))
    return out


def wait_until(predicate, timeout, interval=0.02, message=None):
    """Poll predicate() until it returns a truthy value, which is returned.

    Raises TimeoutError (naming `message` and the last exception seen) when
    `timeout` seconds pass first. OSError (a refused connection while
    starting, a read deadline), ValueError and ConnectionClosed from
    predicate() count as False; any other exception (an AssertionError, a
    RuntimeError for a process that died) propagates at once.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, ConnectionClosed) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {message or predicate}{detail}")
        time.sleep(interval)


def assert_idle_memory_bounded(proxy, open_one, warm_up, count, bound_kib, what):
    """Opens `warm_up` then `count` connections with open_one() and leaves
    them idle: the proxy's anonymous RSS grows by less than bound_kib per
    connection once they have settled (within 5 s)."""
    if proxy.sanitizer_runtime() is not None:
        import pytest  # (only the tests import this module)

        pytest.skip("a sanitizer's runtime keeps freed memory (quarantine, shadow)")
    for _ in range(warm_up):  # the worker's pools and the allocator warmed up
        open_one()
    before = proxy.proc_status_kib("RssAnon")
    for _ in range(count):
        open_one()

    def per_connection():
        return (proxy.proc_status_kib("RssAnon") - before) / count

    try:
        wait_until(lambda: per_connection() < bound_kib, 5)
    except TimeoutError:
        pass
    assert per_connection() < bound_kib, f"{per_connection():.1f} KiB per {what}"


def port_accepts(port, host=LOOPBACK, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Raw HTTP/1.1 client


class Headers:
    """An ordered list of (name, value) with case-insensitive look-up."""

    def __init__(self, items=None):
        self.items = list(items or [])

    def get(self, name, default=None):
        lname = name.lower()
        for k, v in self.items:
            if k.lower() == lname:
                return v
        return default

    def get_all(self, name):
        lname = name.lower()
        return [v for k, v in self.items if k.lower() == lname]

    def names(self):
        return [k.lower() for k, _ in self.items]

    def __contains__(self, name):
        return self.get(name) is not None

    def __repr__(self):
        return f"Headers({self.items!r})"


class Response:
    def __init__(self, version, status, reason, headers, body, interim):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.interim = interim  # list of (status, Headers) of 1xx responses before this one
        self.chunked = False

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def text(self):
        return self.body.decode("utf-8", "replace")

    def connection_tokens(self):
        tokens = set()
        for v in self.headers.get_all("Connection"):
            tokens.update(t.strip().lower() for t in v.split(",") if t.strip())
        return tokens

    def __repr__(self):
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"<Response {self.version} {self.status} {self.reason!r} {self.headers.items!r} body={body!r}>"


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection before a complete message."""


def build_request(method, target, headers=None, body=None, version="HTTP/1.1", host="localhost"):
    """Raw request bytes. Adds Host (unless given or host is None) and
    Content-Length for a bytes body (unless a framing header is given)."""
    items = list(headers.items() if isinstance(headers, dict) else (headers or []))
    names = {k.lower() for k, _ in items}
    if host is not None and "host" not in names:
        items.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked_body(chunks):
    out = bytearray()
    for c in chunks:
        if c:
            out += b"%x\r\n" % len(c) + c + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class HttpClient:
    """One TCP connection to host:port; requests and responses on it in order.

    Unconsumed bytes stay in an internal buffer, so pipelined responses and
    keep-alive reuse work. Every read has a deadline (`timeout` seconds per
    call unless given).
    """

    def __init__(self, port, host=LOOPBACK, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    # -- plumbing
    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read more bytes into buf; False on EOF/reset. Raises TimeoutError at the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("HTTP read deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError("HTTP read deadline passed") from None
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_line(self, deadline, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._fill(deadline):
                raise ConnectionClosed(f"closed while reading a line; buffered {bytes(self.buf[:200])!r}")

    def _read_exact(self, n, deadline, sink):
        while n > 0:
            if not self.buf and not self._fill(deadline):
                raise ConnectionClosed(f"closed with {n} body bytes missing")
            take = min(n, len(self.buf))
            sink(self.buf[:take])
            del self.buf[:take]
            n -= take

    def _read_head(self, deadline):
        status_line = self._read_line(deadline).decode("latin-1")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise ValueError(f"bad status line {status_line!r}")
        headers = []
        while True:
            line = self._read_line(deadline).decode("latin-1")
            if line == "":
                break
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"bad header line {line!r}")
            headers.append((name, value.strip(" \t")))
        return m.group(1), int(m.group(2)), m.group(3) or "", Headers(headers)

    # -- messages
    def read_response(self, method="GET", timeout=None, sink=None):
        """Read one final response (1xx other than 101 are collected in
        .interim). If `sink` is given, body bytes go to sink(bytes) and
        .body stays empty (for large downloads)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        interim = []
        while True:
            version, status, reason, headers = self._read_head(deadline)
            if 100 <= status < 200 and status != 101:
                interim.append((status, headers))
                continue
            break
        body = bytearray()
        write = sink or body.extend
        te = ",".join(headers.get_all("Transfer-Encoding")).lower()
        cl = headers.get("Content-Length")
        chunked = False
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in te:
            chunked = True
            while True:
                size_line = self._read_line(deadline).decode("latin-1")
                size = int(size_line.split(";", 1)[0].strip(), 16)
                if size == 0:
                    while self._read_line(deadline) != b"":  # trailers
                        pass
                    break
                self._read_exact(size, deadline, write)
                if self._read_line(deadline) != b"":
                    raise ValueError("chunk not followed by CRLF")
        elif cl is not None:
            self._read_exact(int(cl), deadline, write)
        else:
            # Close-delimited.
            while True:
                if self.buf:
                    write(bytes(self.buf))
                    self.buf.clear()
                if not self._fill(deadline):
                    break
        resp = Response(version, status, reason, headers, bytes(body), interim)
        resp.chunked = chunked
        return resp

    def request(self, method, target, headers=None, body=None, version="HTTP/1.1", host="localhost", timeout=None):
        self.send(build_request(method, target, headers, body, version, host))
        return self.read_response(method, timeout=timeout)

    def get(self, target, headers=None, **kw):
        return self.request("GET", target, headers, **kw)

    def request_streaming(self, method, target, headers, body_parts, timeout=None, sink=None):
        """Send the header and body parts from a thread while this thread
        reads the response, so large echoes cannot deadlock on full buffers."""
        # Host is added unless given; the caller gives Content-Length or
        # Transfer-Encoding itself.
        head = build_request(method, target, headers, None)
        errors = []

        def sender():
            try:
                self.sock.sendall(head)
                for part in body_parts:
                    self.sock.sendall(part)
            except OSError as exc:
                errors.append(exc)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            resp = self.read_response(method, timeout=timeout, sink=sink)
        finally:
            t.join(timeout=(timeout or self.timeout))
        if errors:
            raise errors[0]
        return resp

    def send_background(self, parts, pace=0.0):
        """Sends `parts` (an iterable of bytes) from a daemon thread, pausing
        `pace` seconds between parts (a slow client), and stops quietly when
        the peer closes or resets. Returns a BackgroundSender: .sent bytes,
        .error, .stop(), .join(timeout)."""
        return BackgroundSender(self.sock, parts, pace)

    def wait_closed(self, timeout):
        """Wait for the peer to close. Returns (how, data): how is 'eof',
        'reset' or 'timeout'; data is whatever bytes arrived first."""
        deadline = time.monotonic() + timeout
        data = bytearray(self.buf)
        self.buf.clear()
        if self.eof:
            return "eof", bytes(data)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", bytes(data)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return "timeout", bytes(data)
            except (ConnectionResetError, ConnectionAbortedError):
                self.eof = True
                return "reset", bytes(data)
            if not chunk:
                self.eof = True
                return "eof", bytes(data)
            data += chunk


class TlsHttpClient(HttpClient):
    """An HttpClient over TLS: the TCP connection is wrapped with `context`
    (an ssl.SSLContext), sending `server_hostname` as SNI (None: no SNI) and
    offering `session` for resumption. The handshake completes (or raises
    ssl.SSLError / OSError) within `timeout` before the constructor returns.
    A TLS close without close_notify counts as EOF, like a TCP close."""

    def __init__(self, port, context, server_hostname=None, session=None, host=LOOPBACK, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = context.wrap_socket(raw, server_hostname=server_hostname, session=session)
        except BaseException:
            raw.close()
            raise

    def _fill(self, deadline):
        try:
            return super()._fill(deadline)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.eof = True
            return False

    def wait_closed(self, timeout):
        try:
            return super().wait_closed(timeout)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.eof = True
            return "eof", b""

    # -- what was negotiated
    @property
    def session(self):
        return self.sock.session

    @property
    def session_reused(self):
        return self.sock.session_reused

    def version(self):
        return self.sock.version()

    def alpn(self):
        return self.sock.selected_alpn_protocol()

    def peer_der(self):
        """The server's leaf certificate (DER bytes)."""
        return self.sock.getpeercert(binary_form=True)


class BackgroundSender:
    """See HttpClient.send_background."""

    def __init__(self, sock, parts, pace):
        self.sock = sock
        self.sent = 0
        self.error = None
        self.finished = False  # every part was sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(parts, pace), daemon=True)
        self._thread.start()

    def _run(self, parts, pace):
        try:
            for i, part in enumerate(parts):
                if self._stop.is_set():
                    return
                if i and pace:
                    self._stop.wait(pace)  # the client's own pace
                self.sock.sendall(part)
                self.sent += len(part)
            self.finished = True
        except OSError as exc:
            self.error = exc

    def stop(self):
        self._stop.set()

    def join(self, timeout):
        self._thread.join(timeout)
        return not self._thread.is_alive()


def http_get(port, target, headers=None, host="localhost", timeout=5.0):
    """One request on a fresh connection, closed afterwards."""
    with HttpClient(port, timeout=timeout) as c:
        return c.get(target, headers, host=host)


def exchange_to_close(sock, pieces):
    """Writes `pieces` to `sock` one after another (one send each) and reads
    until the peer closes: (everything read, seconds from the first write to
    the close). On an ssl socket a close without close_notify raises unless
    the context forgives it."""
    start = time.monotonic()
    for piece in pieces:
        sock.sendall(piece)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - start


# --------------------------------------------------------------------------
# YAML config


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(value, indent=0):
    """Block-style YAML for dicts, lists and scalars (strings always quoted)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}")
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []")
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 2)
                lines.append(pad + "- " + sub[indent + 2:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(value))
    return "\n".join(lines)


def deep_merge(base, extra):
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def upstream(name, origins, **extra):
    """An upstream entry whose servers are the given Origin objects (or
    "host:port" strings, or (origin, weight) pairs)."""
    servers = []
    for o in origins:
        weight = None
        if isinstance(o, tuple):
            o, weight = o
        address = o if isinstance(o, str) else o.address
        s = {"address": address}
        if weight is not None:
            s["weight"] = weight
        servers.append(s)
    return deep_merge({"name": name, "servers": servers}, extra)


def default_workers():
    """`workers` of a config whose test does not set it: 1, or
    SLUICE_TEST_WORKERS (the ThreadSanitizer run uses 2)."""
    value = os.environ.get("SLUICE_TEST_WORKERS", "").strip()
    return int(value) if value else 1


def proxy_config(listen_port, admin_port, routes, upstreams, **overrides):
    """A complete config: one plain listener "public" on 127.0.0.1:listen_port,
    one worker (default_workers()), the admin listener on admin_port, a short
    shutdown_grace so teardown is quick; `overrides` are deep-merged at the
    top level."""
    cfg = {
        "workers": default_workers(),
        "listeners": [{"name": "public", "bind": f"{LOOPBACK}:{listen_port}", "routes": routes}],
        "upstreams": upstreams,
        "timeouts": {"shutdown_grace": "5s"},
        "admin": {"bind": f"{LOOPBACK}:{admin_port}"},
    }
    return deep_merge(cfg, overrides)


# --------------------------------------------------------------------------
# Processes


def _tail(path, n=4000):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


# Every Process started, in order, so a test's teardown can look at the
# stderr of each (sanitizer_report) and then forget them.
STARTED = []


class Process:
    """A child process with stdout/stderr captured to files in `workdir`."""

    def __init__(self, argv, workdir, label, env=None):
        self.argv = argv
        self.label = label
        self.stdout_path = os.path.join(workdir, f"{label}.stdout")
        self.stderr_path = os.path.join(workdir, f"{label}.stderr")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=env, cwd=workdir)
        self.pid = self.proc.pid
        STARTED.append(self)

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None if still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass
        return self.proc.returncode

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def output_tail(self):
        return f"--- {self.label} stdout ---\n{_tail(self.stdout_path)}\n--- {self.label} stderr ---\n{_tail(self.stderr_path)}"


class Origin(Process):
    """`sluice-bench origin --listen 127.0.0.1:PORT --name NAME`."""

    def __init__(self, bench_bin, workdir, name, port=None, host=LOOPBACK):
        self.name = name
        self.host = host
        self.port = port or free_port()
        self.address = f"{host}:{self.port}"
        super().__init__([bench_bin, "origin", "--listen", self.address, "--name", name], workdir, f"origin-{name}")

    def wait_ready(self, timeout=10.0):
        def ready():
            if not self.running():
                raise RuntimeError(f"origin {self.name} exited with {self.proc.returncode}\n{self.output_tail()}")
            return port_accepts(self.port, host=self.host)

        wait_until(ready, timeout, message=f"origin {self.name} listening on {self.address}")
        return self

    def get(self, target, headers=None, timeout=5.0):
        """A request straight to the origin, bypassing the proxy."""
        with HttpClient(self.port, host=self.host, timeout=timeout) as c:
            return c.get(target, headers)

    def post(self, target, body=b"", timeout=5.0):
        """A POST straight to the origin (e.g. /health/down, /health/up)."""
        with HttpClient(self.port, host=self.host, timeout=timeout) as c:
            return c.request("POST", target, body=body)

    def request_count(self):
        """The origin's X-Origin-Request-Count, as seen by one direct request
        (which is itself counted)."""
        return int(self.get("/small").header("X-Origin-Request-Count"))


class Sluice(Process):
    """The proxy under test: config written to workdir/sluice.yaml, started
    with --config, ready when the admin /ready answers 200."""

    def __init__(self, sluice_bin, workdir, config, label="sluice", extra_args=(), env=None):
        self.config = config
        self.config_path = os.path.join(workdir, f"{label}.yaml")
        with open(self.config_path, "w") as f:
            f.write(config if isinstance(config, str) else to_yaml(config) + "\n")
        self.admin_port = None
        self.port = None
        if isinstance(config, dict):
            self.admin_port = int(config["admin"]["bind"].rsplit(":", 1)[1])
            self.port = int(config["listeners"][0]["bind"].rsplit(":", 1)[1])
        super().__init__([sluice_bin, "--config", self.config_path, *extra_args], workdir, label, env=env)

    def ready_status(self, timeout=1.0):
        return http_get(self.admin_port, "/ready", timeout=timeout).status

    def wait_ready(self, timeout=15.0):
        def ready():
            if not self.running():
                raise RuntimeError(f"sluice exited with {self.proc.returncode} before /ready\n{self.output_tail()}")
            try:
                return self.ready_status() == 200
            except (OSError, ConnectionClosed, TimeoutError, ValueError):
                return False

        wait_until(ready, timeout, message="sluice /ready == 200")
        return self

    def client(self, timeout=10.0):
        return HttpClient(self.port, timeout=timeout)

    def get(self, target, headers=None, host="localhost", timeout=5.0):
        return http_get(self.port, target, headers, host=host, timeout=timeout)

    # -- log
    def log_records(self):
        """Every JSON object on stdout so far (non-JSON lines are skipped)."""
        out = []
        for line in self.stdout().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def access_records(self):
        return [r for r in self.log_records() if r.get("type") == "access"]

    def wait_access_record(self, request_id, timeout=5.0):
        def find():
            for r in self.access_records():
                if r.get("request_id") == request_id:
                    return r
            return None

        return wait_until(find, timeout, message=f"access log line with request_id {request_id}")

    # -- memory
    def sanitizer_runtime(self):
        """"asan" or "tsan" when the process runs with that sanitizer's
        runtime (memory figures then hold its shadow and quarantine), else
        None."""
        with open(f"/proc/{self.pid}/maps") as f:
            maps = f.read()
        for name in ("asan", "tsan"):
            if f"lib{name}" in maps:
                return name
        return None

    def proc_status_kib(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)


def run_sluice(sluice_bin, args, env=None, timeout=15.0, cwd=None):
    """Run sluice to completion (e.g. --check); returns CompletedProcess.
    Raises AssertionError if a sanitizer reported on its stderr."""
    p = subprocess.run([sluice_bin, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=timeout, cwd=cwd)
    report = sanitizer_report(p.stderr.decode("utf-8", "replace"))
    if report:
        raise AssertionError(f"sluice {' '.join(args)} (exit {p.returncode}): {report}")
    return p


# A sanitizer report on a process's stderr fails the test, whatever it
# asserted: ThreadSanitizer (with halt_on_error=1 the process then exits
# 66), AddressSanitizer, LeakSanitizer (run when sluice or sluice-bench
# exits, so every test that stops one checks it for leaks) and UBSan.
SANITIZER_MARKERS = ("WARNING: ThreadSanitizer", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     ": runtime error: ")


def sanitizer_report(stderr_text, limit=12000):
    """The sanitizer report(s) in `stderr_text` (from the first marker on,
    at most `limit` characters), or None."""
    starts = [i for i in (stderr_text.find(m) for m in SANITIZER_MARKERS) if i >= 0]
    if not starts:
        return None
    start = stderr_text.rfind("==================", 0, min(starts))
    return stderr_text[start if start >= 0 else min(starts):][:limit]


def assert_drain_closes_idle_first(proxy, idle, busy):
    """SIGTERM to `proxy` (SPEC 9): the `idle` client connection (waiting
    for its next request) is closed within 1.5 s, while the process keeps
    running for `busy`, whose request is in flight and is answered (200)
    before the process exits 0."""
    t0 = time.monotonic()
    proxy.signal(signal.SIGTERM)
    how, data = idle.wait_closed(1.5)
    assert how in ("eof", "reset") and data == b"", (how, data)
    assert time.monotonic() - t0 < 1.5
    assert proxy.running(), "closed because the process exited, not by the drain"
    r = busy.read_response(timeout=10)
    assert r.status == 200, r
    assert proxy.wait(10) == 0, proxy.output_tail()
    return r


def assert_stalled_reader_given_up(proxy, client, client_body, host="localhost"):
    """`client` asks `proxy` for 64 MiB, reads the response head and then
    nothing: the proxy's writes wait on it, and once one has waited
    `client_body` (seconds) the proxy must give the connection up, logging
    the request with what it sent, and close it."""
    n = 64 * 1024 * 1024
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    t0 = time.monotonic()  # (no write of the answer can have waited before this)
    client.send(build_request("GET", f"/bytes/{n}", host=host))
    _, status, _, headers = client._read_head(time.monotonic() + 5)
    assert status == 200
    rec = proxy.wait_access_record(headers.get("X-Request-ID"), timeout=5 + client_body)
    elapsed = time.monotonic() - t0
    assert rec["status"] == 200 and rec["bytes_out"] < n, rec
    assert elapsed >= client_body, f"the connection was given up {elapsed:.3f}s after the request"
    how, _ = client.wait_closed(5)
    assert how in ("eof", "reset"), "connection still open after the access record"


def assert_proxy_error(resp, status, header="X-Request-ID"):
    """A response the proxy generated itself (SPEC 3): the status, a short
    plain-text body naming the request ID, and the request ID header."""
    assert resp.status == status, resp
    rid = resp.header(header)
    assert rid is not None, f"no {header} header on {resp!r}"
    assert UUID4_RE.match(rid), f"{header} {rid!r} is not a lowercase UUIDv4"
    assert (resp.header("Content-Type") or "").lower().startswith("text/plain"), resp
    assert rid in resp.text(), f"request ID {rid} not in body {resp.body!r}"
    return rid


def admin_status(proxy, timeout=2.0):
    """The proxy's admin /status document (SPEC 8)."""
    r = http_get(proxy.admin_port, "/status", timeout=timeout)
    if r.status != 200:
        raise ValueError(f"/status answered {r!r}")
    return r.json()


def status_servers(proxy, upstream_name, timeout=2.0):
    """{address: server object} of one upstream in the proxy's /status."""
    for u in admin_status(proxy, timeout)["upstreams"]:
        if u["name"] == upstream_name:
            return {s["address"]: s for s in u["servers"]}
    raise KeyError(f"no upstream {upstream_name!r} in /status")


def log_messages(proxy, msg):
    """The proxy's JSON log records whose "msg" is `msg` (e.g. "server down")."""
    return [r for r in proxy.log_records() if r.get("msg") == msg]


class ArrivalWatch:
    """Tells when requests sent through the proxy have reached origins.

    Each origin's X-Origin-Request-Count counts every request it received;
    this watch reads it with direct requests of its own and subtracts them,
    so what remains is what arrived from elsewhere (the proxy) since the
    watch was made.
    """

    def __init__(self, origins):
        self.origins = list(origins)
        self.base = {o.name: o.request_count() for o in self.origins}
        self.polls = {o.name: 1 for o in self.origins}  # the base read above is one of ours

    def arrived(self):
        """{origin name: requests received from others since the watch began}."""
        out = {}
        for o in self.origins:
            count = o.request_count()
            self.polls[o.name] += 1
            out[o.name] = count - self.base[o.name] - (self.polls[o.name] - 1)
        return out

    def wait(self, n=1, timeout=5.0):
        """Wait until at least n requests from others arrived in total; returns arrived()."""
        return wait_until(lambda: (lambda a: a if sum(a.values()) >= n else None)(self.arrived()), timeout,
                          message=f"{n} proxied request(s) reaching the origins")


# --------------------------------------------------------------------------
# Process inspection


def proc_tcp_peers(pid):
    """The TCP sockets process `pid` holds, as a list of
    (local_port, remote_port, state) from /proc/net/tcp{,6} (state is the
    kernel's hex code: "01" ESTABLISHED, "0A" LISTEN, "08" CLOSE_WAIT...)."""
    inodes, _ = proc_census.fd_sockets(pid)
    return list(proc_census.tcp_sockets(inodes).values())


def peak_rss_kib(pid):
    """VmHWM (peak resident set size) of `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise KeyError("VmHWM")


# --------------------------------------------------------------------------
# Bench scripts (bench/*.sh --smoke) run to their end


def run_script(argv, env, limit_s, cwd=None):
    """Runs a bench script in its own session with stdin closed; returns
    (exit code, stdout, stderr) as text. Past limit_s seconds the session
    gets SIGTERM (the script's trap stops what it started), SIGKILL 8 s
    later, and AssertionError tells that the script did not finish, with
    the end of its stderr."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        for sig, wait_s in ((signal.SIGTERM, 8), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass  # the whole session has ended
            try:
                out, err = proc.communicate(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        command = " ".join([os.path.basename(argv[0]), *map(str, argv[1:])])
        raise AssertionError(f"{command} did not finish in {limit_s}s\n"
                             f"{err.decode('utf-8', 'replace')[-3000:]}") from None
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def processes_mentioning(text):
    """[(pid, command line)] of the processes whose command line contains text."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(pid), cmdline))
    return found


def assert_nothing_left(tmp_dir, tmp_prefix):
    """A bench script run with TMPDIR=tmp_dir left nothing behind: no process
    whose command line names a path under tmp_dir (what it started with a
    config or an output file there), and no temp dir tmp_dir/tmp_prefix*."""
    left = processes_mentioning(str(tmp_dir))
    assert left == [], f"still running: {left}"
    dirs = [p for p in os.listdir(tmp_dir) if p.startswith(tmp_prefix)]
    assert dirs == [], f"temp dirs left in {tmp_dir}: {dirs}"


# --------------------------------------------------------------------------
# Raw test origins (Python threads, for behaviour sluice-bench origin lacks:
# malformed responses, counted connections, recorded request heads, bodies
# counted without echoing, WebSocket at any path)


def http_response(status, body=b"", headers=None, reason=None):
    """Raw response bytes with Content-Length (unless a framing header is given)."""
    items = list(headers.items() if isinstance(headers, dict) else (headers or []))
    names = {k.lower() for k, _ in items}
    if "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    reason = reason if reason is not None else {101: "Switching Protocols", 200: "OK", 400: "Bad Request",
                                                 404: "Not Found", 413: "Content Too Large"}.get(status, "Status")
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


class RawRequest:
    """What a raw origin received: the head, and how much of the body."""

    def __init__(self, conn_id, method, target, version, headers):
        self.conn_id = conn_id
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body_bytes = 0
        self.body = None         # bytes, when the handler kept them
        self.sha256 = None       # hex digest of the body, when computed
        self.complete = False    # the whole body (per its framing) arrived
        self.trailers = []

    def __repr__(self):
        return (f"<RawRequest conn={self.conn_id} {self.method} {self.target} {self.version} "
                f"{self.headers.items!r} body_bytes={self.body_bytes} complete={self.complete}>")


class RawConnection:
    """One accepted connection of a RawOrigin, with a read buffer and deadlines."""

    def __init__(self, origin, sock, conn_id):
        self.origin = origin
        self.sock = sock
        self.id = conn_id
        self.buf = bytearray()
        self.eof = False                   # the peer closed (or reset) it
        self.ended = threading.Event()     # the handler returned and the socket is closed
        self._scratch = bytearray(1 << 20)

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("raw origin read deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError("raw origin read deadline passed") from None
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_line(self, deadline, limit=1 << 20):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._fill(deadline):
                raise ConnectionClosed("raw origin: closed while reading a line")

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionClosed("raw origin: closed early")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_request_head(self, timeout=30.0):
        """A RawRequest (recorded on the origin), or None when the peer
        closed before sending a byte."""
        deadline = time.monotonic() + timeout
        while not self.buf:
            if not self._fill(deadline):
                return None
        line = self.read_line(deadline).decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3:
            raise ValueError(f"raw origin: bad request line {line!r}")
        items = []
        while True:
            h = self.read_line(deadline).decode("latin-1")
            if h == "":
                break
            name, _, value = h.partition(":")
            items.append((name, value.strip(" \t")))
        req = RawRequest(self.id, parts[0], parts[1], parts[2], Headers(items))
        self.origin._record(req)
        return req

    def _take(self, n, deadline, consume):
        """Pass up to n body bytes to consume(memoryview); returns how many."""
        if self.buf:
            take = min(n, len(self.buf))
            consume(memoryview(self.buf)[:take])
            del self.buf[:take]
            return take
        if self.eof:
            raise ConnectionClosed("raw origin: body cut short")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("raw origin body deadline passed")
        self.sock.settimeout(remaining)
        try:
            got = self.sock.recv_into(self._scratch, min(n, len(self._scratch)))
        except socket.timeout:
            raise TimeoutError("raw origin body deadline passed") from None
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            raise ConnectionClosed("raw origin: body cut short (reset)") from None
        if got == 0:
            self.eof = True
            raise ConnectionClosed("raw origin: body cut short")
        consume(memoryview(self._scratch)[:got])
        return got

    def read_body(self, req, timeout=60.0, keep=False, digest=True):
        """Reads req's body (Content-Length or chunked), counting it into
        req.body_bytes (and req.sha256, req.body when keep); sets
        req.complete at the end. Raises ConnectionClosed/TimeoutError when
        the body does not arrive whole."""
        deadline = time.monotonic() + timeout
        h = hashlib.sha256() if digest else None
        kept = bytearray() if keep else None

        def consume(view):
            req.body_bytes += len(view)
            if h is not None:
                h.update(view)
            if kept is not None:
                kept.extend(view)

        te = ",".join(req.headers.get_all("Transfer-Encoding")).lower()
        if "chunked" in te:
            while True:
                size_line = self.read_line(deadline).decode("latin-1")
                size = int(size_line.split(";", 1)[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self.read_line(deadline)
                        if t == b"":
                            break
                        req.trailers.append(t.decode("latin-1"))
                    break
                while size > 0:
                    size -= self._take(size, deadline, consume)
                if self.read_line(deadline) != b"":
                    raise ValueError("raw origin: chunk not followed by CRLF")
        else:
            n = int(req.headers.get("Content-Length", "0"))
            while n > 0:
                n -= self._take(n, deadline, consume)
        if h is not None:
            req.sha256 = h.hexdigest()
        if kept is not None:
            req.body = bytes(kept)
        req.complete = True
        return req

    def send(self, data):
        self.sock.sendall(data)

    def wait_eof(self, timeout):
        """Reads (and drops) until the peer closes; True if it did within `timeout`."""
        deadline = time.monotonic() + timeout
        self.buf.clear()
        try:
            while self._fill(deadline):
                self.buf.clear()
        except TimeoutError:
            return False
        except OSError:
            self.eof = True
        return True


class RawOrigin:
    """A threaded TCP server on 127.0.0.1 whose connections each run
    handler(conn: RawConnection) in a thread of their own. Counts accepted
    connections, records every request head read (`requests`), and each
    connection (`conns`, in accept order). Duck-types Origin for upstream()
    and for the env fixture's teardown (.name, .address, .port, .stop())."""

    def __init__(self, handler, name="raw", host=LOOPBACK, port=0):
        self.handler = handler
        self.name = name
        self.host = host
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self.lock = threading.Lock()
        self.conns = []
        self.requests = []
        self.errors = []
        self.stopping = False
        self.stopped = threading.Event()  # set by stop(); handlers that hold a connection wait on it
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def accepted(self):
        with self.lock:
            return len(self.conns)

    def _record(self, req):
        with self.lock:
            self.requests.append(req)

    def requests_to(self, prefix):
        with self.lock:
            return [r for r in self.requests if r.target.startswith(prefix)]

    def _accept_loop(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self.stopping:
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                conn = RawConnection(self, sock, len(self.conns) + 1)
                self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handler(conn)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            conn.eof = True  # the peer closed while the handler was writing
        except (OSError, ConnectionClosed, TimeoutError, ValueError):
            pass  # the peer went away or misbehaved: end this connection
        except Exception as exc:  # noqa: BLE001 - kept for the test to report
            self.errors.append(exc)
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            conn.ended.set()

    def stop(self, timeout=5.0):
        self.stopping = True
        self.stopped.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for c in conns:
            c.ended.wait(timeout)
        return 0

    def running(self):
        return not self.stopping


def serve_http(conn, respond, body_timeout=60.0, keep=False, digest=True):
    """A keep-alive request loop for RawOrigin handlers: each request's body
    is read (counted and hashed), then respond(conn, req) returns the
    response bytes, or None to close the connection."""
    while True:
        req = conn.read_request_head()
        if req is None:
            return
        conn.read_body(req, timeout=body_timeout, keep=keep, digest=digest)
        out = respond(conn, req)
        if out is None:
            return
        conn.send(out)
        if "close" in (req.headers.get("Connection") or "").lower():
            return


def body_report(conn, req):
    """A JSON response naming what the origin saw of the request: its
    connection, target, framing headers, body length and sha256."""
    doc = {
        "conn": conn.id,
        "target": req.target,
        "content_length": req.headers.get("Content-Length"),
        "transfer_encoding": req.headers.get("Transfer-Encoding"),
        "bytes": req.body_bytes,
        "sha256": req.sha256,
    }
    return http_response(200, json.dumps(doc).encode(), {"Content-Type": "application/json",
                                                         "X-Raw-Connection": str(conn.id)})


# --------------------------------------------------------------------------
# WebSocket (RFC 6455): frames, a client on an HttpClient, an echo handler

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_CONT, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")


def _ws_mask(payload, key):
    if not payload:
        return b""
    n = len(payload)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload=b"", fin=True, mask=True):
    """One frame; client frames are masked (RFC 6455 5.3), server frames not."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mbit | 127, n)
    if mask:
        key = os.urandom(4)
        return head + key + _ws_mask(payload, key)
    return head + payload


def ws_read_frame(read_exact):
    """(fin, opcode, masked, payload) of the next frame; read_exact(n) -> bytes."""
    b0, b1 = read_exact(2)
    fin = bool(b0 & 0x80)
    opcode = b0 & 0x0F
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(8))[0]
    key = read_exact(4) if masked else None
    payload = read_exact(n) if n else b""
    if masked:
        payload = _ws_mask(payload, key)
    return fin, opcode, masked, payload


def ws_close_payload(code=1000, reason=""):
    return struct.pack("!H", code) + reason.encode("utf-8")


class WebSocketClient:
    """A minimal RFC 6455 client over an HttpClient (its socket and buffer)."""

    def __init__(self, http_client):
        self.http = http_client
        self.key = None
        self.response = None
        self.frames_masked = []  # for each frame received: whether it was masked

    def handshake(self, target="/ws", headers=None, host="localhost", protocols=None, timeout=None,
                  connection="Upgrade"):
        """Sends the Upgrade request; returns the Response (101 on success)."""
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        items = [("Upgrade", "websocket"), ("Connection", connection),
                 ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", "13")]
        if protocols:
            items.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
        items += list(headers.items() if isinstance(headers, dict) else (headers or []))
        self.response = self.http.request("GET", target, items, host=host, timeout=timeout)
        return self.response

    def accept_ok(self):
        return self.response is not None and self.response.header("Sec-WebSocket-Accept") == ws_accept_for(self.key)

    def send_frame(self, opcode, payload=b"", fin=True):
        self.http.send(ws_frame(opcode, payload, fin=fin, mask=True))

    def send_text(self, text):
        self.send_frame(WS_TEXT, text.encode("utf-8"))

    def send_binary(self, data):
        self.send_frame(WS_BINARY, data)

    def send_close(self, code=1000, reason=""):
        self.send_frame(WS_CLOSE, ws_close_payload(code, reason))

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.http.timeout)

        def read_exact(n):
            out = bytearray()
            self.http._read_exact(n, deadline, out.extend)
            return bytes(out)

        fin, opcode, masked, payload = ws_read_frame(read_exact)
        self.frames_masked.append(masked)
        return fin, opcode, payload

    def recv_message(self, timeout=None):
        """(opcode, payload) of the next data message (fragments joined) or
        close frame; pings are answered, pongs skipped."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.http.timeout)
        opcode = None
        parts = []
        while True:
            fin, op, payload = self.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
            if op == WS_PING:
                self.send_frame(WS_PONG, payload)
                continue
            if op == WS_PONG:
                continue
            if op == WS_CLOSE:
                return op, payload
            if op != WS_CONT:
                opcode = op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)


def websocket_echo_handler(protocol=None, greeting=None, any_path=True):
    """A RawOrigin handler: answers an Upgrade request with 101 (choosing
    `protocol` when the client offered it), sends `greeting` (a text
    message) in the same write as the 101 when given, then echoes every
    data message until a close frame, which it echoes before closing.
    Each request is recorded on the origin; each connection's frames
    are kept in conn.ws_frames as (opcode, masked, payload)."""

    def handler(conn):
        conn.ws_frames = []
        req = conn.read_request_head()
        if req is None:
            return
        if (req.headers.get("Upgrade") or "").lower() != "websocket" or not (any_path or req.target.startswith("/ws")):
            conn.send(http_response(400, b"not a websocket upgrade\n", {"Connection": "close"}))
            return
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Accept", ws_accept_for(req.headers.get("Sec-WebSocket-Key", "")))]
        offered = [p.strip() for p in (req.headers.get("Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
        if protocol and protocol in offered:
            headers.append(("Sec-WebSocket-Protocol", protocol))
        out = ("HTTP/1.1 101 Switching Protocols\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
               + "\r\n").encode("latin-1")
        if greeting is not None:
            out += ws_frame(WS_TEXT, greeting.encode("utf-8"), mask=False)
        conn.send(out)
        while True:
            d = time.monotonic() + 60
            fin, op, masked, payload = ws_read_frame(lambda n: conn.read_exact(n, d))
            conn.ws_frames.append((op, masked, payload))
            if op == WS_CLOSE:
                conn.send(ws_frame(WS_CLOSE, payload[:2] if payload else b"", mask=False))
                return  # the server closes the TCP connection first (RFC 6455 7.1.1)
            if op == WS_PING:
                conn.send(ws_frame(WS_PONG, payload, mask=False))
                continue
            if op == WS_PONG:
                continue
            conn.send(ws_frame(op, payload, fin=fin, mask=False))

    return handler

"""Test support for the sluice integration suite (stdlib only).

What lives here:
- free_port(), wait_until(): ports discovered, waits bounded by deadlines.
- HttpClient / Response: a small raw HTTP/1.1 client over one socket
  (Content-Length, chunked and close-delimited bodies, keep-alive reuse,
  pipelining, interim 1xx responses).
- to_yaml(), proxy_config(): the YAML config file written for each test.
- Origin: a `sluice-bench origin` process on 127.0.0.1.
- Sluice: a `sluice` process, its stdout (the JSON log) captured to a file.

Nothing here sleeps for a fixed time to wait for something: every wait polls
a predicate against a deadline, and every process started is stopped
(SIGTERM, then SIGKILL after a deadline).
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------
# Ports and waiting


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


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


def http_get(port, target, headers=None, host="localhost", timeout=5.0):
    """One request on a fresh connection, closed afterwards."""
    with HttpClient(port, timeout=timeout) as c:
        return c.get(target, headers, host=host)


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


def proxy_config(listen_port, admin_port, routes, upstreams, **overrides):
    """A complete config: one plain listener "public" on 127.0.0.1:listen_port,
    one worker, the admin listener on admin_port, a short shutdown_grace so
    teardown is quick; `overrides` are deep-merged at the top level."""
    cfg = {
        "workers": 1,
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

    def __init__(self, bench_bin, workdir, name, port=None):
        self.name = name
        self.port = port or free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        super().__init__([bench_bin, "origin", "--listen", self.address, "--name", name], workdir, f"origin-{name}")

    def wait_ready(self, timeout=10.0):
        def ready():
            if not self.running():
                raise RuntimeError(f"origin {self.name} exited with {self.proc.returncode}\n{self.output_tail()}")
            return port_accepts(self.port)

        wait_until(ready, timeout, message=f"origin {self.name} listening on {self.address}")
        return self

    def get(self, target, headers=None, timeout=5.0):
        """A request straight to the origin, bypassing the proxy."""
        return http_get(self.port, target, headers, timeout=timeout)

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
    def proc_status_kib(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)


def run_sluice(sluice_bin, args, env=None, timeout=15.0, cwd=None):
    """Run sluice to completion (e.g. --check); returns CompletedProcess."""
    return subprocess.run([sluice_bin, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=timeout, cwd=cwd)


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

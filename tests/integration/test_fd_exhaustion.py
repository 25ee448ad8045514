"""Running out of file descriptors (issue: reliability): with its open-files
limit lowered at run time (prlimit), a flood of client connections makes
accept fail with EMFILE. sluice logs that once, backs off instead of
spinning, keeps the connections it has, and serves again as soon as
descriptors are free."""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import harness
from harness import wait_until


pytestmark = pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) not installed")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accept_failures(proxy):
    return [r for r in proxy.log_records() if r.get("msg") == "accept failed"]


def test_out_of_descriptors_logs_once_backs_off_and_recovers(env):
    origin = env.origin("o")
    proxy = env.proxy([origin], workers=1)  # each worker logs its own accept failure once
    pid = proxy.proc.pid
    # A whole connection's life before the limit (one pooled upstream
    # connection stays): in the sanitizer builds, UBSan's first check of a
    # type needs a pipe, which it cannot get once descriptors are out, and
    # then reports a false "invalid vptr".
    warm = env.client(proxy)
    assert warm.get("/small").status == 200
    warm.close()
    wait_until(lambda: re.search(r'^sluice_downstream_connections_active\{[^}]*\} 0$',
                                 harness.http_get(proxy.admin_port, "/metrics").body.decode(), re.M),
               5, message="the warm-up connection closed")
    headroom = 12
    limit = open_fds(pid) + headroom
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)

    # Far more connections than descriptors left: the first ones are
    # accepted, the rest wait in the listen backlog.
    flood = []
    try:
        for _ in range(headroom * 3):
            flood.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
        wait_until(lambda: accept_failures(proxy), 5, message="an 'accept failed' log line")
        assert open_fds(pid) <= limit

        # Backing off, not spinning on the readable listener: little CPU
        # while the limit is hit.
        before = cpu_seconds(pid)
        t0 = time.monotonic()
        time.sleep(1.0)  # measuring CPU over a fixed window, not waiting for an event
        used = cpu_seconds(pid) - before
        assert used < 0.3 * (time.monotonic() - t0), f"{used:.2f} s of CPU in 1 s at the limit"
        assert len(accept_failures(proxy)) == 1, accept_failures(proxy)
        assert proxy.running(), proxy.output_tail()
    finally:
        for s in flood:
            s.close()

    # Descriptors free again: the backlog drains (those clients have gone)
    # and new clients are served.
    def served():
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as s:
                s.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return data.startswith(b"HTTP/1.1 200 ")
        except OSError:
            return False

    wait_until(served, 10, interval=0.1, message="a request served after descriptors were freed")
    rec = accept_failures(proxy)[0]
    assert "open files" in rec["error"].lower(), rec
    assert rec["level"] == "error", rec

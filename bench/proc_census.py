"""A process's descriptors and memory, read from /proc (Linux; python3
standard library only).

    fd_census(pid, client_ports)   its descriptors by kind
    fd_sockets(pid)                its sockets' inodes, and how many descriptors are not sockets
    tcp_sockets(inodes)            those of the inodes in the TCP tables, with ports and state
    proc_status_kib(pid, field)    a /proc/PID/status field in KiB (VmRSS, RssAnon, ...)

One home for the census of bench/soak_report.py (the soak run's quiet
points) and of the integration tests (tests/integration/test_chaos.py;
tests/support/harness.py's proc_tcp_peers). It lives here, not in
tests/support/, because the bench tools are run on their own, by hand, and
must not depend on the test tree, while the tests already depend on bench/
(they run sluice-bench and these scripts): harness.py puts bench/ on
sys.path to import it.
"""

import os

# The kernel's hex codes of two TCP states.
ESTABLISHED = "01"
LISTEN = "0A"


def proc_status_kib(pid, field):
    """The value of FIELD (e.g. "VmRSS") in /proc/PID/status, in KiB; 0
    when the kernel does not report it."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def fd_sockets(pid):
    """(the set of socket inodes, as strings, that PID's descriptors refer
    to; how many of its descriptors are not sockets). A descriptor closed
    while it is read is left out."""
    inodes = set()
    other = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
        else:
            other += 1
    return inodes, other


def tcp_sockets(inodes):
    """{inode: (local port, remote port, state)} for those of INODES found in
    /proc/net/tcp and /proc/net/tcp6, in the tables' order. States are the
    kernel's hex codes: "01" ESTABLISHED, "0A" LISTEN, "08" CLOSE_WAIT... A
    table that cannot be read (no IPv6) is skipped."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if len(cols) > 9 and cols[9] in inodes and cols[9] not in found:
                        local = int(cols[1].rsplit(":", 1)[1], 16)
                        remote = int(cols[2].rsplit(":", 1)[1], 16)
                        found[cols[9]] = (local, remote, cols[3])
        except OSError:
            continue
    return found


def fd_census(pid, client_ports):
    """PID's descriptors by kind: {"total", "other" (not sockets: epoll,
    eventfds, timers, files), "listen", "client" (connections whose local
    port is one of client_ports: its listeners and admin port), "unlisted"
    (sockets in no TCP table: closed or reset by the kernel, still held),
    "upstream": {(remote port, state): count}}. States are the kernel's hex
    codes: "01" ESTABLISHED, "08" CLOSE_WAIT."""
    inodes, other = fd_sockets(pid)
    tcp = tcp_sockets(inodes)
    listen = client = 0
    upstream = {}
    for local, remote, state in tcp.values():
        if state == LISTEN:
            listen += 1
        elif local in client_ports:
            client += 1
        else:
            upstream[(remote, state)] = upstream.get((remote, state), 0) + 1
    return {"total": len(inodes) + other, "other": other, "listen": listen, "client": client,
            "unlisted": len(inodes) - len(tcp), "upstream": upstream}

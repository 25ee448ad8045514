"""A small authoritative DNS responder on loopback for the sluice tests
(stdlib only: socket, struct, threads).

    dns = DnsServer()                       # UDP and TCP on 127.0.0.1:<free port>
    dns.set("backend.test", ["127.0.0.1", "127.0.0.2"])
    dns.mode = "servfail"                   # "answer" | "nxdomain" | "servfail" | "empty" | "drop"
    dns.address                             # "127.0.0.1:PORT", for sluice's `resolver:`
    dns.stop()

In "answer" mode a name in the table gets its A records for an A question
and its AAAA records for an AAAA question (NOERROR with no records when it
has none of that type); a name not in the table gets NXDOMAIN. "nxdomain"
and "servfail" answer every question with that rcode, "empty" answers
NOERROR with no records, and "drop" reads the query and sends nothing.
Every question is recorded in `queries` as (name, qtype, "udp"|"tcp").
TTLs are 0, so nothing is cached. Duck-types an origin for the env
fixture's teardown (.name, .stop()).
"""

import ipaddress
import socket
import struct
import threading
import time

QTYPE_A = 1
QTYPE_AAAA = 28
RCODE_NOERROR = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3

MODES = ("answer", "nxdomain", "servfail", "empty", "drop")


def parse_query(data):
    """(id, flags, qname lowercased without the final dot, qtype, qclass,
    raw question bytes) of a DNS query; raises ValueError when malformed."""
    if len(data) < 12:
        raise ValueError("short DNS header")
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if qdcount < 1:
        raise ValueError("no question")
    labels = []
    i = 12
    while True:
        if i >= len(data):
            raise ValueError("truncated name")
        n = data[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(data[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(data):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack("!HH", data[i:i + 4])
    return qid, flags, ".".join(labels).lower(), qtype, qclass, data[12:i + 4]


def build_response(qid, query_flags, question, rcode, records):
    """A response to one question: `records` are (qtype, rdata bytes),
    each sent as an answer with a pointer to the question's name."""
    opcode_rd = query_flags & 0x7900  # opcode and RD copied
    flags = 0x8000 | opcode_rd | 0x0400 | 0x0080 | (rcode & 0xF)  # QR, AA, RA
    out = bytearray(struct.pack("!HHHHHH", qid, flags, 1, len(records), 0, 0))
    out += question
    for rtype, rdata in records:
        out += struct.pack("!HHHIH", 0xC00C, rtype, 1, 0, len(rdata)) + rdata
    return bytes(out)


class DnsServer:
    def __init__(self, host="127.0.0.1", name="dns"):
        self.name = name
        self.host = host
        self.lock = threading.Lock()
        self.table = {}          # name -> list of IP strings (v4 and v6)
        self.mode = "answer"
        self.queries = []        # (name, qtype, proto)
        self.stopping = False
        self.udp, self.tcp = self._bind(host)
        self.port = self.udp.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _bind(host):
        """A UDP and a TCP socket on the same free port."""
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            udp.settimeout(0.2)
            tcp.settimeout(0.2)
            return udp, tcp
        raise OSError("no port free for both UDP and TCP")

    # -- the table
    def set(self, name, addresses):
        with self.lock:
            self.table[name.lower().rstrip(".")] = list(addresses)

    def remove(self, name):
        with self.lock:
            self.table.pop(name.lower().rstrip("."), None)

    def set_mode(self, mode):
        if mode not in MODES:
            raise ValueError(f"unknown DNS mode {mode!r}")
        self.mode = mode

    def queries_for(self, name, since=0):
        """Questions for `name` recorded at index >= since."""
        name = name.lower().rstrip(".")
        with self.lock:
            return [q for q in self.queries[since:] if q[0] == name]

    def query_count(self):
        with self.lock:
            return len(self.queries)

    # -- answering
    def answer(self, data, proto):
        """Response bytes for one query, or None to send nothing."""
        try:
            qid, flags, qname, qtype, _qclass, question = parse_query(data)
        except ValueError:
            return None
        with self.lock:
            self.queries.append((qname, qtype, proto))
            mode = self.mode
            addresses = self.table.get(qname)
        if mode == "drop":
            return None
        if mode == "servfail":
            return build_response(qid, flags, question, RCODE_SERVFAIL, [])
        if mode == "nxdomain":
            return build_response(qid, flags, question, RCODE_NXDOMAIN, [])
        if mode == "empty":
            return build_response(qid, flags, question, RCODE_NOERROR, [])
        if addresses is None:
            return build_response(qid, flags, question, RCODE_NXDOMAIN, [])
        records = []
        for a in addresses:
            ip = ipaddress.ip_address(a)
            if ip.version == 4 and qtype == QTYPE_A:
                records.append((QTYPE_A, ip.packed))
            elif ip.version == 6 and qtype == QTYPE_AAAA:
                records.append((QTYPE_AAAA, ip.packed))
        return build_response(qid, flags, question, RCODE_NOERROR, records)

    def _udp_loop(self):
        while not self.stopping:
            try:
                data, peer = self.udp.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            out = self.answer(data, "udp")
            if out is not None:
                try:
                    self.udp.sendto(out, peer)
                except OSError:
                    pass

    def _tcp_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn):
        deadline = time.monotonic() + 10
        buf = bytearray()
        try:
            while not self.stopping and time.monotonic() < deadline:
                conn.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    return
                if not data:
                    return
                buf += data
                while len(buf) >= 2:
                    n = struct.unpack("!H", buf[:2])[0]
                    if len(buf) < 2 + n:
                        break
                    msg = bytes(buf[2:2 + n])
                    del buf[:2 + n]
                    out = self.answer(msg, "tcp")
                    if out is not None:
                        conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self, timeout=5.0):
        self.stopping = True
        for s in (self.udp, self.tcp):
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout)
        return 0

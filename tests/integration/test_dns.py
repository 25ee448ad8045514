"""SPEC 2 (`resolver`, `resolve_interval`) and 4 (DNS names): a server
address with a host name becomes one server per address, re-resolved every
resolve_interval; additions join, removals drain, failed or empty answers
keep the last good set. The names are answered by tests/support/dnsd.py on
127.0.0.1 (never the machine's resolver); the origins listen on the same
port of 127.0.0.1, 127.0.0.2 and 127.0.0.3."""

import shutil
import socket
import time

import pytest

import harness
import tlscerts
from dnsd import QTYPE_A, DnsServer
from harness import assert_proxy_error, status_servers, wait_until

NAME = "backend.test"
IPS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


def _port_free_on_all(port):
    for ip in IPS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((ip, port))
            except OSError:
                return False
    return True


class DnsSetup:
    def __init__(self, env, answer, tls=None):
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.2", 0))
        except OSError as exc:
            pytest.fail(f"cannot bind 127.0.0.2 here: {exc}")
        self.env = env
        self.dns = DnsServer()
        env.origins.append(self.dns)
        self.dns.set(NAME, answer) if answer is not None else None
        port = harness.free_port()
        while not _port_free_on_all(port):
            port = harness.free_port()
        self.port = port
        self.origins = {}
        for i, ip in enumerate(IPS, 1):
            o = harness.Origin(env.bench_bin, env.tmp, f"o{i}", port=port, host=ip)
            env.origins.append(o)
            self.origins[ip] = o.wait_ready()
        self.server_name = f"{NAME}:{port}"
        up = {"name": "backend", "servers": [{"address": self.server_name}], "resolve_interval": "300ms"}
        # One worker: tests count where requests on new connections land,
        # and each worker balances on its own.
        cfg = env.config([{"match": {"path_prefix": "/"}, "upstream": "backend"}], [up],
                         resolver=self.dns.address, workers=1)
        if tls is not None:
            cfg["listeners"][0]["tls"] = tls
        self.proxy = env.sluice(cfg)

    def addr(self, ip):
        return f"{ip}:{self.port}"

    def status(self):
        return status_servers(self.proxy, "backend")

    def set(self, ips):
        self.dns.set(NAME, ips)

    def wait_status(self, ips, timeout=3.0):
        want = sorted(self.addr(ip) for ip in ips)
        return wait_until(lambda: sorted(self.status()) == want, timeout, interval=0.02,
                          message=f"/status servers == {want}")


def test_servers_follow_the_answer(env):
    d = DnsSetup(env, IPS[:2])
    assert [q for q in d.dns.queries_for(NAME) if q[1] == QTYPE_A], "the configured resolver was not asked"
    st = d.status()
    assert sorted(st) == [d.addr(IPS[0]), d.addr(IPS[1])], st
    for ip in IPS[:2]:
        s = st[d.addr(ip)]
        assert s["name"] == d.server_name and s["weight"] == 1 and s["healthy"] is True, s
        assert s["in_flight"] == 0, s
    c = env.client(d.proxy)
    seq = harness.origins_answering(c, 10)
    assert sorted(set(seq)) == ["o1", "o2"], seq
    assert all(seq[i] != seq[i - 1] for i in range(1, len(seq))), f"not alternating: {seq}"

    # Grow to three: the new address joins within a few resolve intervals.
    d.set(IPS)
    seen = []
    wait_until(lambda: seen.extend(harness.origins_answering(c, 1)) or "o3" in seen, 3.0, message="o3 receiving traffic")
    d.wait_status(IPS)
    assert d.status()[d.addr(IPS[2])]["name"] == d.server_name
    assert sorted(harness.origins_answering(c, 6)) == ["o1", "o1", "o2", "o2", "o3", "o3"]

    # Shrink to one while a slow request is in flight on each server.
    watch = harness.ArrivalWatch(list(d.origins.values()))
    slow = []
    for _ in range(3):
        sc = env.client(d.proxy)
        sc.send(harness.build_request("GET", "/delay/1500"))
        slow.append(sc)
    t_sent = time.monotonic()
    arrived = watch.wait(3)
    assert sorted(arrived.values()) == [1, 1, 1], arrived  # one on each, two on servers about to go
    d.set([IPS[2]])
    d.wait_status([IPS[2]])
    assert time.monotonic() - t_sent < 1.4, "the answer changed only after the slow requests ended"
    assert harness.origins_answering(c, 10) == ["o3"] * 10
    assert harness.origins_answering(env.client(d.proxy), 4) == ["o3"] * 4
    done = [sc.read_response(timeout=5) for sc in slow]
    assert [r.status for r in done] == [200, 200, 200], done
    assert sorted(r.header("X-Origin") for r in done) == ["o1", "o2", "o3"], done
    assert all(r.body == b"delayed 1500ms\n" for r in done), done


@pytest.mark.parametrize("mode", ["servfail", "nxdomain", "empty", "drop"])
def test_failed_resolution_keeps_the_last_good_set(env, mode):
    d = DnsSetup(env, IPS[:2])
    c = env.client(d.proxy)
    assert sorted(set(harness.origins_answering(c, 4))) == ["o1", "o2"]
    d.dns.set_mode(mode)
    since = d.dns.query_count()
    seq = []

    # At least three more questions for the name (re-resolutions) while traffic flows.
    def asked_again():
        seq.extend(harness.origins_answering(c, 2))
        return len(d.dns.queries_for(NAME, since)) >= 3

    wait_until(asked_again, 6.0, message=f"re-resolutions in {mode} mode")
    seq.extend(harness.origins_answering(c, 10))
    assert sorted(set(seq)) == ["o1", "o2"], seq
    assert abs(seq.count("o1") - seq.count("o2")) <= 1, seq
    assert sorted(d.status()) == [d.addr(IPS[0]), d.addr(IPS[1])]
    assert not [r for r in d.proxy.log_records() if r.get("level") == "error"], d.proxy.stdout()[-2000:]
    # And the answer is followed again once the responder recovers.
    d.set([IPS[1]])
    d.dns.set_mode("answer")
    d.wait_status([IPS[1]], timeout=6.0)
    assert harness.origins_answering(c, 4) == ["o2"] * 4


def test_unresolvable_name_at_start_then_resolves(env):
    d = DnsSetup(env, None)  # NXDOMAIN: sluice starts anyway (env.proxy waited for /ready 200)
    assert d.proxy.ready_status() == 200
    assert d.dns.queries_for(NAME), "the configured resolver was not asked"
    assert d.status() == {}
    c = env.client(d.proxy)
    for _ in range(3):
        t0 = time.monotonic()
        r = c.get("/")
        assert time.monotonic() - t0 < 0.5
        assert_proxy_error(r, 503)
        if not r.connection_tokens() & {"close"}:
            continue
        c = env.client(d.proxy)
    d.set(IPS[:2])

    def flows():
        r = env.client(d.proxy).get("/")
        if r.status == 503:
            return False
        assert r.status == 200, r
        return True

    wait_until(flows, 3.0, message="traffic once the name resolves")
    d.wait_status(IPS[:2])
    assert sorted(set(harness.origins_answering(env.client(d.proxy), 4))) == ["o1", "o2"]


def test_a_changed_answer_reads_no_certificate_file_again(env, tmp_path):
    # Re-resolution installs the running configuration with new addresses:
    # it keeps the running TLS contexts and reads no file (files are read at
    # a reload, which can fail and keep what runs). With a certificate
    # broken on disk since (a renewal half done), a changed answer ended
    # the process.
    factory = tlscerts.CertFactory(str(tmp_path))
    leaf = factory.leaf("d", "d.test", ["d.test"], kind="ec")
    cert, key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    shutil.copyfile(leaf.cert_file, cert)
    shutil.copyfile(leaf.key_file, key)
    d = DnsSetup(env, IPS[:1], tls={"certificates": [{"cert_file": cert, "key_file": key}]})
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    d.set(IPS[:2])
    d.wait_status(IPS[:2])
    assert d.proxy.running()
    c = harness.TlsHttpClient(d.proxy.port, tlscerts.client_context(factory.ca_file), server_hostname="d.test")
    env.clients.append(c)
    assert c.peer_der() == leaf.leaf_der
    seen = set(harness.origins_answering(c, 4))
    assert seen == {"o1", "o2"}, seen

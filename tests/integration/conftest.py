"""pytest fixtures for the sluice integration tests.

`env` (per test) starts origins and proxies in a temp dir and stops every
process it started at teardown (SIGTERM, then SIGKILL after a deadline).
Each test's call phase is bounded by TEST_TIME_LIMIT seconds (SIGALRM).
"""

import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))

import harness  # noqa: E402

TEST_TIME_LIMIT = 60


def _binary(var, default_rel):
    path = os.environ.get(var) or os.path.join(REPO, default_rel)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{var}: no executable at {path}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def sluice_bin():
    return _binary("SLUICE_BIN", "build/release/proxy/sluice")


@pytest.fixture(scope="session")
def bench_bin():
    return _binary("SLUICE_BENCH_BIN", "build/release/bench/sluice-bench")


class Env:
    """What one test started: origins, proxies, client connections."""

    def __init__(self, tmpdir, sluice_bin, bench_bin):
        self.tmp = tmpdir
        self.sluice_bin = sluice_bin
        self.bench_bin = bench_bin
        self.origins = []
        self.sluices = []
        self.clients = []
        self.first_process = len(harness.STARTED)

    def origin(self, name):
        o = harness.Origin(self.bench_bin, self.tmp, name)
        self.origins.append(o)
        return o.wait_ready()

    def origins_named(self, *names):
        return [self.origin(n) for n in names]

    def sluice(self, config, wait=True, label=None, extra_args=(), env=None):
        label = label or f"sluice{len(self.sluices)}"
        s = harness.Sluice(self.sluice_bin, self.tmp, config, label=label, extra_args=extra_args, env=env)
        self.sluices.append(s)
        return s.wait_ready() if wait else s

    def config(self, routes, upstreams, **overrides):
        """proxy_config on freshly discovered listener and admin ports."""
        return harness.proxy_config(harness.free_port(), harness.free_port(), routes, upstreams, **overrides)

    def proxy(self, origins=None, routes=None, upstreams=None, upstream_extra=None, **overrides):
        """A proxy routing everything to upstream "backend" = `origins`
        (unless routes/upstreams are given)."""
        if upstreams is None:
            upstreams = [harness.upstream("backend", origins or [], **(upstream_extra or {}))]
        if routes is None:
            routes = [{"match": {"path_prefix": "/"}, "upstream": "backend"}]
        return self.sluice(self.config(routes, upstreams, **overrides))

    def client(self, target, timeout=10.0):
        """A tracked HttpClient to a Sluice (its listener) or a port."""
        port = target if isinstance(target, int) else target.port
        c = harness.HttpClient(port, timeout=timeout)
        self.clients.append(c)
        return c

    def teardown(self):
        for c in self.clients:
            c.close()
        for s in self.sluices:
            s.stop(timeout=10.0)
        for o in self.origins:
            o.stop(timeout=5.0)
        # A sanitizer report (TSan, ASan, LSan, UBSan) on the stderr of any process
        # the test started fails the test, even if its exit went unnoticed.
        reports = []
        for p in harness.STARTED[self.first_process:]:
            try:
                report = harness.sanitizer_report(p.stderr())
            except OSError:
                continue  # its stderr file is gone with the test's directory
            if report:
                reports.append(f"--- {p.label} (exit {p.proc.returncode}) ---\n{report}")
        del harness.STARTED[self.first_process:]
        if reports:
            pytest.fail("sanitizer report on stderr:\n" + "\n".join(reports), pytrace=False)


@pytest.fixture
def env(tmp_path, sluice_bin, bench_bin):
    e = Env(str(tmp_path), sluice_bin, bench_bin)
    try:
        yield e
    finally:
        e.teardown()


class TimeLimitExceeded(Exception):
    pass


def _on_alarm(signum, frame):
    raise TimeLimitExceeded(f"test exceeded its {TEST_TIME_LIMIT}s time limit")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)

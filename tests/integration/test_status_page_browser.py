"""SPEC 8: the admin status page (GET /) as a browser shows it, and the
Grafana dashboard (deploy/grafana/sluice.json) against a live /metrics.

test_status_page_in_a_browser: two upstreams, each with a reachable origin
and a port nothing listens on, under active health checks. Once /status
shows every verdict settled (origins up, dead ports down), headless
Chromium loads the admin listener's GET / and lets the page's own scripts
run (--virtual-time-budget); the DOM it dumps afterwards must hold every
upstream name, every server address under its upstream, and each server's
state ("up" / "down", row class "up" / "down"), plus the listener. A second
run takes a 1280x900 screenshot: saved as `status-page.png` in the test's
pytest temp dir and, when the environment variable SLUICE_ARTIFACTS is set
(to anything non-empty), copied to build/artifacts/status-page.png in the
repository. Needs Debian's `chromium`; skipped (with the reason) without
it. Every Chromium run is bounded by CHROMIUM_TIMEOUT, runs in its own
process group with its own profile under the temp dir, and the group is
killed afterwards; the test fails if any of its processes is left.

test_grafana_dashboard_uses_only_exported_metrics: every metric name in the
dashboard's PromQL (panel targets, annotations, template variables) is a
sample name in a scrape of a live sluice after traffic, and every label the
queries select on or group by is a label sluice puts on those samples.

test_grafana_dashboard_queries_parse: every query, with Grafana's variables
filled in, is valid PromQL for `promtool check rules` (Debian's
`prometheus`; skipped without it).
"""

import json
import os
import re
import shutil
import signal
import struct
import subprocess
from html.parser import HTMLParser

import pytest

import harness
from harness import free_port, http_get, status_servers, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(REPO, "deploy", "grafana", "sluice.json")
CHROMIUM_TIMEOUT = 30.0
WINDOW = (1280, 900)


# --------------------------------------------------------------------------
# Chromium, bounded and cleaned up


def chromium_binary():
    return shutil.which("chromium")


def _chromium_processes(pgid, markers):
    """PIDs of live (not zombie) processes of one Chromium run: those in
    process group `pgid`, and those whose command line holds one of
    `markers` (its profile and HOME paths; the crash handler starts a
    session of its own but keeps its database under HOME)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) < 3 or fields[0] == "Z":
            continue
        if int(fields[2]) == pgid or any(m in cmdline for m in markers):
            out.append(int(entry))
    return out


def _kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def run_chromium(tmp, label, url, extra_args):
    """Runs headless Chromium on `url` once and returns its stdout (text).

    Its own session (so its own process group), profile and HOME under
    `tmp`; bounded by CHROMIUM_TIMEOUT. Whatever happens, every process of
    the run is killed afterwards, and the call fails if one survives.
    """
    profile = os.path.join(tmp, f"{label}-profile")
    home = os.path.join(tmp, f"{label}-home")
    os.makedirs(home, exist_ok=True)
    argv = [
        chromium_binary(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        f"--user-data-dir={profile}",
        # Virtual time: the page's scripts and timers run for this long
        # (without waiting for it in real time) before the dump.
        "--virtual-time-budget=3000",
        *extra_args,
        url,
    ]
    env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home, "XDG_CACHE_HOME": home}
    stderr_path = os.path.join(tmp, f"{label}.stderr")
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                env=env, start_new_session=True)
    pgid = proc.pid
    try:
        try:
            out, _ = proc.communicate(timeout=CHROMIUM_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium ({label}) did not finish within {CHROMIUM_TIMEOUT}s")
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait(timeout=10)
        markers = [profile.encode(), home.encode()]
        wait_until(lambda: _kill_all(_chromium_processes(pgid, markers)) and not _chromium_processes(pgid, markers),
                   10.0, message=f"every process of chromium ({label}) gone")
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0:
        with open(stderr_path, "rb") as f:
            tail = f.read()[-3000:].decode("utf-8", "replace")
        pytest.fail(f"chromium ({label}) exited with {proc.returncode}\n{tail}")
    return out.decode("utf-8", "replace")


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# --------------------------------------------------------------------------
# The dumped DOM


class StatusPage(HTMLParser):
    """Headings and table rows of the status page, in document order.

    rows: [{"heading": text of the last h2/h3 before the row, "class": the
    row's class, "cells": [cell texts], "header": the column names of its
    table (the first row's th cells)}].
    """

    def __init__(self, html):
        super().__init__()
        self.headings = []
        self.rows = []
        self._heading = None
        self._last_heading = ""
        self._row = None
        self._cell = None
        self._columns = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self._heading = []
        elif tag == "table":
            self._columns = []
        elif tag == "tr":
            self._row = {"heading": self._last_heading, "class": dict(attrs).get("class") or "", "cells": [],
                         "th": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            text = " ".join("".join(self._heading).split())
            self.headings.append(text)
            if tag != "h1":
                self._last_heading = text
            self._heading = None
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            (self._row["th"] if tag == "th" else self._row["cells"]).append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row["th"] and not self._row["cells"]:
                self._columns = self._row["th"]
            else:
                self._row["header"] = self._columns
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)
        if self._cell is not None:
            self._cell.append(data)


def health_check():
    return {"path": "/health", "interval": "200ms", "timeout": "150ms", "healthy_threshold": 1,
            "unhealthy_threshold": 2}


def test_status_page_in_a_browser(env, tmp_path):
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (Debian package chromium)")
    o1, o2 = env.origins_named("alpha", "beta")
    dead1, dead2 = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    # Server -> the state the page must show, per upstream.
    expected = {
        "api-pool": {o1.address: "up", dead1: "down"},
        "web-pool": {dead2: "down", o2.address: "up"},
    }
    upstreams = [
        harness.upstream("api-pool", [o1, dead1], health_check=health_check()),
        harness.upstream("web-pool", [dead2, o2], health_check=health_check()),
    ]
    routes = [
        {"match": {"path_prefix": "/api/"}, "upstream": "api-pool"},
        {"match": {"path_prefix": "/"}, "upstream": "web-pool"},
    ]
    proxy = env.sluice(env.config(routes, upstreams))

    def settled():
        for name, servers in expected.items():
            seen = status_servers(proxy, name)
            for address, state in servers.items():
                s = seen[address]
                if "last_check" not in s or s["healthy"] is not (state == "up"):
                    return False
        return True

    wait_until(settled, 10.0, message="every server checked, origins up and dead ports down")

    url = f"http://127.0.0.1:{proxy.admin_port}/"
    assert http_get(proxy.admin_port, "/").status == 200
    dom = run_chromium(str(tmp_path), "chromium-dom", url, ["--dump-dom"])
    page = StatusPage(dom)

    # The listener.
    listener_rows = [r for r in page.rows if r["heading"] == "Listeners"]
    assert [r["cells"][:2] for r in listener_rows] == [["public", f"127.0.0.1:{proxy.port}"]], dom

    for name, servers in expected.items():
        headings = [h for h in page.headings if h.split(" ")[0] == name]
        assert len(headings) == 1, (name, page.headings)
        rows = [r for r in page.rows if r["heading"] == headings[0]]
        assert sorted(r["cells"][0] for r in rows) == sorted(servers), (name, rows)
        for row in rows:
            address = row["cells"][0]
            state = row["cells"][row["header"].index("state")]
            assert state == servers[address], (name, address, row)
            assert row["class"] == servers[address], (name, address, row)

    # A screenshot of the same page, as a person would see it.
    shot = tmp_path / "status-page.png"
    run_chromium(str(tmp_path), "chromium-shot", url,
                 [f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"])
    assert shot.exists(), "chromium wrote no screenshot"
    assert png_size(shot) == WINDOW
    if os.environ.get("SLUICE_ARTIFACTS"):
        artifacts = os.path.join(REPO, "build", "artifacts")
        os.makedirs(artifacts, exist_ok=True)
        shutil.copyfile(shot, os.path.join(artifacts, "status-page.png"))


# --------------------------------------------------------------------------
# The Grafana dashboard

METRIC = re.compile(r"\bsluice_[a-zA-Z0-9_]+")
SELECTOR = re.compile(r"\b(sluice_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LABEL_VALUES = re.compile(r"label_values\(\s*(sluice_[a-zA-Z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def dashboard_queries():
    """(where, PromQL) of every query in the dashboard: panel and row
    targets, annotations and template variables."""
    with open(DASHBOARD) as f:
        board = json.load(f)
    out = []

    def walk(node, where):
        if isinstance(node, dict):
            where = node.get("title") or node.get("name") or where
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str) and value:
                    out.append((where, value))
                elif key == "query" and isinstance(value, str) and value:
                    out.append((where, value))
                else:
                    walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(board, "dashboard")
    return board, out


def exported_labels(text):
    """{sample name: set of label names} of a Prometheus text scrape."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable sample line {line!r}"
        out.setdefault(m.group(1), set()).update(LABEL.findall(m.group(2) or ""))
    return out


def test_grafana_dashboard_uses_only_exported_metrics(env):
    board, queries = dashboard_queries()
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"], board["__inputs"]
    assert queries, "the dashboard has no queries"

    # A live sluice with every kind of series: two upstreams with health
    # checks, a dead server, requests with bodies through both upstreams,
    # an answer of the proxy's own, a reload.
    o1, o2 = env.origins_named("o1", "o2")
    dead = f"127.0.0.1:{free_port()}"
    upstreams = [
        harness.upstream("api", [o1], health_check=health_check()),
        harness.upstream("web", [o2, dead], health_check=health_check()),
    ]
    routes = [
        {"match": {"path_prefix": "/teapot"}, "respond": {"status": 418, "body": "tea\n"}},
        {"match": {"host": "api.test"}, "upstream": "api"},
        {"match": {"path_prefix": "/"}, "upstream": "web"},
    ]
    proxy = env.sluice(env.config(routes, upstreams, workers=2))
    c = env.client(proxy)
    for host in ("api.test", "web.test"):
        for _ in range(3):
            r = c.request("POST", "/echo", body=b"x" * 100, host=host)
            assert r.status == 200 and r.body == b"x" * 100, r
    assert c.get("/teapot").status == 418
    with harness.HttpClient(proxy.admin_port) as admin:
        assert admin.request("POST", "/reload").status == 200

    def scraped():
        r = http_get(proxy.admin_port, "/metrics")
        assert r.status == 200, r
        labels = exported_labels(r.body.decode())
        counted = [line for line in r.body.decode().splitlines()
                   if line.startswith("sluice_http_request_duration_seconds_count{")
                   and not line.endswith(" 0")]
        return labels if len(counted) == 3 else None  # api, web and the proxy's own

    labels = wait_until(scraped, 5.0, message="requests of all three (listener, upstream) pairs counted")

    used = set()
    problems = []
    for where, q in queries:
        names = set(METRIC.findall(q))
        used |= names
        for name in sorted(names):
            if name not in labels:
                problems.append(f"{where}: {name} is not exported")
        for name, matchers in SELECTOR.findall(q):
            for label in MATCHER.findall(matchers):
                if name in labels and label not in labels[name]:
                    problems.append(f"{where}: {name} has no label {label!r}")
        on_any = set().union(*(labels.get(n, set()) for n in names)) if names else set()
        for group in GROUPING.findall(q):
            for label in (g.strip() for g in group.split(",") if g.strip()):
                if label not in on_any:
                    problems.append(f"{where}: grouping label {label!r} is on none of {sorted(names)}")
        for name, label in LABEL_VALUES.findall(q):
            if name in labels and label not in labels[name]:
                problems.append(f"{where}: label_values({name}, {label}): no such label")
    assert not problems, "\n".join(problems)

    # What the dashboard is for: requests by code, latency from the
    # histogram, server health and load, connections, bytes, reloads.
    for required in ("sluice_http_requests_total", "sluice_http_request_duration_seconds_bucket",
                     "sluice_upstream_server_healthy", "sluice_upstream_server_in_flight",
                     "sluice_downstream_connections_active", "sluice_http_request_body_bytes_total",
                     "sluice_http_response_body_bytes_total", "sluice_config_reloads_total",
                     "sluice_config_last_reload_successful"):
        assert required in used, f"the dashboard does not use {required}"


def test_grafana_dashboard_queries_parse(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    _, queries = dashboard_queries()
    # Grafana's variables as a query would see them.
    fill = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "30s", "$listener": ".*",
            "$upstream": ".*"}
    rules = []
    for i, (where, q) in enumerate(queries):
        if q.startswith("label_values("):
            m = LABEL_VALUES.fullmatch(q.strip())
            assert m, f"{where}: {q!r}"
            q = f"count by ({m.group(2)}) ({m.group(1)})"
        for var, value in fill.items():
            q = q.replace(var, value)
        assert "$" not in q, f"{where}: unknown variable in {q!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": q})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, timeout=30,
                            env={**os.environ, "LANG": "C"})
    report = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, report
    assert f"{len(rules)} rules found" in report, report

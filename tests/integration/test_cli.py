"""SPEC 1: the command line, --check, exit codes, SLUICE_CONFIG."""

import os
import re
import socket

import pytest

import harness
from harness import free_port, run_sluice, wait_until

ERROR_RE = re.compile(r"sluice\.yaml:(\d+):(\d+): ([A-Za-z0-9_\[\].]+): ([^\n]+)")


def good_config(env):
    return harness.to_yaml(env.config(
        [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
        [harness.upstream("backend", [f"127.0.0.1:{free_port()}"])])) + "\n"


def write(env, name, text):
    path = os.path.join(env.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def output(proc):
    return proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")


def test_version_prints_version_and_exits_0(env):
    p = run_sluice(env.sluice_bin, ["--version"])
    assert p.returncode == 0, output(p)
    assert re.search(r"\b\d+\.\d+\.\d+\b", p.stdout.decode()), output(p)


def test_help_exits_0_and_names_the_options(env):
    p = run_sluice(env.sluice_bin, ["--help"])
    assert p.returncode == 0, output(p)
    text = output(p)
    for flag in ("--config", "--check", "--log-level", "--version"):
        assert flag in text, text


def test_unknown_flag_is_a_usage_error(env):
    p = run_sluice(env.sluice_bin, ["--no-such-flag"])
    assert p.returncode == 2, output(p)


def test_bad_log_level_is_a_usage_error(env):
    path = write(env, "sluice.yaml", good_config(env))
    p = run_sluice(env.sluice_bin, ["--config", path, "--check", "--log-level", "loud"])
    assert p.returncode == 2, output(p)


def test_check_good_file(env):
    path = write(env, "sluice.yaml", good_config(env))
    p = run_sluice(env.sluice_bin, ["--config", path, "--check"])
    assert p.returncode == 0, output(p)
    assert "config ok" in p.stdout.decode().splitlines(), output(p)


def test_check_binds_nothing(env):
    # The listener's and the admin's ports are held by this test: --check
    # must still succeed because it binds nothing.
    holders = []
    ports = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        holders.append(s)
        ports.append(s.getsockname()[1])
    try:
        cfg = harness.proxy_config(ports[0], ports[1], [{"match": {"path_prefix": "/"}, "respond": {"status": 200, "body": "x"}}],
                                   [harness.upstream("backend", ["127.0.0.1:1"])])
        path = write(env, "sluice.yaml", harness.to_yaml(cfg) + "\n")
        p = run_sluice(env.sluice_bin, ["--config", path, "--check"])
        assert p.returncode == 0, output(p)
        assert "config ok" in p.stdout.decode().splitlines(), output(p)
    finally:
        for s in holders:
            s.close()


BAD_CONFIG = """\
workers: 1
listeners:
  - name: public
    bind: "127.0.0.1:{port}"
    routes:
      - match:
          path_prefix: "/"
        upstream: nope
upstreams:
  - name: backend
    servers:
      - address: "backend"
timeouts:
  client_headr: 10s
admin:
  bind: "127.0.0.1:{admin}"
"""


def key_and_value_columns(text, line_no, key):
    """1-based columns of `key` and of its value on line `line_no`."""
    line = text.splitlines()[line_no - 1]
    key_col = line.index(key) + 1
    value_col = line.index(":", key_col - 1 + len(key)) + 2
    while line[value_col - 1] == " ":
        value_col += 1
    return key_col, value_col


def test_check_bad_file_reports_every_error_with_position(env):
    text = BAD_CONFIG.format(port=free_port(), admin=free_port())
    path = write(env, "sluice.yaml", text)
    p = run_sluice(env.sluice_bin, ["--config", path, "--check"])
    out = output(p)
    assert p.returncode == 1, out
    assert "config ok" not in out
    found = {m.group(3): (int(m.group(1)), int(m.group(2)), m.group(4)) for m in ERROR_RE.finditer(out)}
    expected = {
        "listeners[0].routes[0].upstream": (8, "upstream"),
        "upstreams[0].servers[0].address": (12, "address"),
        "timeouts.client_headr": (14, "client_headr"),
    }
    assert set(found) == set(expected), out
    for key_path, (line, key) in expected.items():
        got_line, got_col, message = found[key_path]
        assert got_line == line, (key_path, out)
        assert got_col in key_and_value_columns(text, line, key), (key_path, got_col, out)
        assert message.strip(), out
    assert "backend" in found["upstreams[0].servers[0].address"][2], out
    assert "nope" in found["listeners[0].routes[0].upstream"][2], out


def test_missing_config_file_exits_1_naming_it(env):
    path = os.path.join(env.tmp, "does-not-exist.yaml")
    p = run_sluice(env.sluice_bin, ["--config", path, "--check"])
    assert p.returncode == 1, output(p)
    assert "does-not-exist.yaml" in output(p)
    # And without --check: a start-up failure, also exit 1.
    p = run_sluice(env.sluice_bin, ["--config", path])
    assert p.returncode == 1, output(p)
    assert "does-not-exist.yaml" in output(p)


def test_sluice_config_env_is_the_fallback(env):
    good = write(env, "sluice.yaml", good_config(env))
    bad = write(env, "bad.yaml", "workers: 1\nno_such_key: 1\n")
    e = dict(os.environ, SLUICE_CONFIG=good)
    p = run_sluice(env.sluice_bin, ["--check"], env=e)
    assert p.returncode == 0, output(p)
    assert "config ok" in p.stdout.decode().splitlines(), output(p)

    e = dict(os.environ, SLUICE_CONFIG=bad)
    p = run_sluice(env.sluice_bin, ["--check"], env=e)
    assert p.returncode == 1, output(p)
    assert "bad.yaml" in output(p), output(p)

    # --config wins over the environment.
    p = run_sluice(env.sluice_bin, ["--check", "--config", good], env=e)
    assert p.returncode == 0, output(p)


def test_sluice_config_env_starts_the_proxy(env):
    cfg = env.config([{"match": {"path_prefix": "/"}, "respond": {"status": 200, "body": "from env\n"}}],
                     [harness.upstream("backend", [f"127.0.0.1:{free_port()}"])])
    path = write(env, "env.yaml", harness.to_yaml(cfg) + "\n")
    # Started with no --config at all: only SLUICE_CONFIG names the file.
    s = harness.Process([env.sluice_bin], env.tmp, "sluice-env", env=dict(os.environ, SLUICE_CONFIG=path))
    try:
        admin = int(cfg["admin"]["bind"].rsplit(":", 1)[1])
        port = int(cfg["listeners"][0]["bind"].rsplit(":", 1)[1])

        def ready():
            assert s.running(), s.output_tail()
            return harness.http_get(admin, "/ready", timeout=1).status == 200

        wait_until(ready, 15, message="/ready")
        r = harness.http_get(port, "/")
        assert r.status == 200 and r.body == b"from env\n", r
    finally:
        s.stop()


def start_with_port_held(env, which):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    held = holder.getsockname()[1]
    other = free_port()
    listen_port, admin_port = (held, other) if which == "listener" else (other, held)
    cfg = harness.proxy_config(listen_port, admin_port, [{"match": {"path_prefix": "/"}, "respond": {"status": 200, "body": "x"}}],
                               [harness.upstream("backend", ["127.0.0.1:1"])])
    s = env.sluice(cfg, wait=False)
    try:
        code = s.wait(15)
    finally:
        holder.close()
    return s, code, held


def test_listener_port_in_use_exits_1(env):
    s, code, held = start_with_port_held(env, "listener")
    assert code == 1, s.output_tail()
    assert str(held) in s.stdout() + s.stderr(), s.output_tail()


def test_admin_port_in_use_exits_1(env):
    s, code, held = start_with_port_held(env, "admin")
    assert code == 1, s.output_tail()
    assert str(held) in s.stdout() + s.stderr(), s.output_tail()


def test_workers_auto_runs_one_worker_per_cpu_the_process_may_use(env):
    # `workers: auto` counts the CPUs of the process's affinity (taskset, a
    # container's cpuset), not the machine's: started on one CPU, one worker.
    def started_workers(proxy):
        started = lambda: [r for r in proxy.log_records() if r.get("msg") == "started"]
        wait_until(started, 5, message="the 'started' log line")
        return int(started()[0]["workers"])

    routes = [{"match": {"path_prefix": "/"}, "respond": {"status": 200, "body": "one\n"}}]
    everywhere = env.sluice(env.config(routes, [], workers="auto"))
    if started_workers(everywhere) < 2:
        pytest.skip("one CPU (or a quota of one) already: one worker either way")
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})  # the proxy inherits it
    try:
        s = env.sluice(env.config(routes, [], workers="auto"), wait=False)
    finally:
        os.sched_setaffinity(0, allowed)
    s.wait_ready()
    assert started_workers(s) == 1
    assert harness.http_get(s.port, "/").body == b"one\n"

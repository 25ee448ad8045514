"""bench/compare.sh --smoke (issue 3): the peer comparison runs end to end in
CI. Every proxy (sluice, HAProxy, nginx, Caddy) is started from a config the
script writes and must answer the load with zero errors; no speed is asserted.
Skipped when HAProxy, nginx or Caddy is not installed (deploy/install-deps.sh
installs them)."""

import os
import re
import shutil
import signal
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(REPO, "bench", "compare.sh")

# Inside the 60 s per-test limit of conftest.py, with room to stop everything.
SMOKE_LIMIT_S = 50


def _missing_peers():
    return [name for name in ("haproxy", "nginx", "caddy", "curl", "taskset", "openssl")
            if shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]


def test_compare_smoke_runs_every_proxy_without_errors(sluice_bin, bench_bin, tmp_path):
    missing = _missing_peers()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (bash deploy/install-deps.sh)")
    env = dict(os.environ, SLUICE_BIN=sluice_bin, SLUICE_BENCH=bench_bin, TMPDIR=str(tmp_path),
               PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    # Its own session, so a timeout can stop the script and everything it started.
    proc = subprocess.Popen([SCRIPT, "--smoke"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=REPO, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=SMOKE_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the script's trap stops what it started
        try:
            out, err = proc.communicate(timeout=8)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"compare.sh --smoke did not finish in {SMOKE_LIMIT_S}s\n{err.decode()[-3000:]}")
    out, err = out.decode(), err.decode()
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err[-4000:]}"
    assert "smoke check passed" in err

    # The Markdown table has scenarios 1 and 3 with a measured row for each proxy.
    assert "### 1. Keep-alive, small response" in out
    assert "### 3. New connection per request" in out
    for name in ("sluice", "HAProxy", "nginx", "Caddy"):
        rows = re.findall(rf"^\| {name} \| ([0-9,]+) \|.*\| (\d+) \|$", out, re.M)
        assert len(rows) == 2, (name, out)
        for rps, errors in rows:
            assert int(rps.replace(",", "")) > 0
            assert errors == "0"
    # Ratios are relative to HAProxy, which is 1.00× of itself.
    assert re.search(r"^\| HAProxy \|.*\| 1\.00× \| 1\.00× \| 1\.00× \|", out, re.M)
    # Nothing it started is left running (every proxy's command line names a
    # config in the temp dir), and the temp dir is gone.
    assert _processes_mentioning(str(tmp_path)) == []
    assert not [p for p in os.listdir(tmp_path) if p.startswith("sluice-compare.")]


def _processes_mentioning(text):
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

"""bench/compare.sh --smoke (issue 3): the peer comparison runs end to end in
CI. Every proxy (sluice, HAProxy, nginx, Caddy) is started from a config the
script writes and must answer the load with zero errors; no speed is asserted.
Skipped when HAProxy, nginx or Caddy is not installed (deploy/install-deps.sh
installs them)."""

import os
import re
import shutil

import pytest

import harness

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
    code, out, err = harness.run_script([SCRIPT, "--smoke"], env, SMOKE_LIMIT_S, cwd=REPO)
    assert code == 0, f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err[-4000:]}"
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
    harness.assert_nothing_left(tmp_path, "sluice-compare.")


def test_compare_smoke_tls_scenarios_negotiate_tls_1_3_and_resume(sluice_bin, bench_bin, tmp_path):
    """Scenario 5 (full ECDSA and RSA handshakes, resumed connections) with
    sluice and nginx: both negotiate TLS 1.3 (nginx 1.22 only when its config
    asks for it; compare.sh records a run that did not as failed), and the
    resumed variant's handshakes were resumed (else it is failed too)."""
    missing = _missing_peers()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (bash deploy/install-deps.sh)")
    env = dict(os.environ, SLUICE_BIN=sluice_bin, SLUICE_BENCH=bench_bin, TMPDIR=str(tmp_path),
               PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    code, out, err = harness.run_script([SCRIPT, "--smoke", "--scenarios", "5", "--proxies", "sluice,nginx",
                                         "--connections", "4"], env, SMOKE_LIMIT_S, cwd=REPO)
    assert code == 0, f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err[-4000:]}"
    assert "smoke check passed" in err
    for title in ("ECDSA P-256", "RSA 2048"):
        assert f"### 5. TLS handshake per request, {title}" in out
    assert "### 5. TLS resumed connection per request, ECDSA P-256" in out
    for name in ("sluice", "nginx"):
        rows = re.findall(rf"^\| {name} \| ([0-9,]+) \|.*\| (\d+) \|$", out, re.M)
        assert len(rows) == 3, (name, out)
        for rps, errors in rows:
            assert int(rps.replace(",", "")) > 0 and errors == "0", (name, out)
    harness.assert_nothing_left(tmp_path, "sluice-compare.")

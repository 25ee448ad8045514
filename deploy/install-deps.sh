#!/usr/bin/env bash
# Installs the Debian 12 packages sluice needs to build, test and run.
# Idempotent and quick when everything is there already. Run as root.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache make pkg-config
  # libraries (Boost 1.81, not Debian's default 1.74)
  libboost1.81-dev libboost-json1.81-dev libssl-dev libyaml-cpp-dev libspdlog-dev
  prometheus-cpp-dev catch2 libc-ares-dev
  # tests and the demo
  python3 python3-pytest python3-yaml curl openssl
  # benchmarks: the peers bench/compare.sh measures sluice against (also run by
  # tests/integration/test_compare_smoke.py), wrk for bench/check-generator.sh,
  # and the profilers bench/profile.sh runs
  haproxy nginx caddy wrk valgrind strace linux-perf
  # tests: a real WSGI backend for request_buffering (tests/integration/test_request_buffering.py)
  gunicorn
  # tests: promtool, which checks the /metrics output (tests/integration/test_metrics.py)
  prometheus
  # tests: testssl.sh (command `testssl`), run against a TLS listener (tests/integration/test_tls.py)
  testssl.sh
  # tests: a headless browser that renders the admin status page
  # (tests/integration/test_status_page_browser.py)
  chromium
  # fuzzing: libFuzzer targets of tests/fuzz (clang-14 and its fuzzer/sanitizer runtimes)
  clang-14 libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or with sudo)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

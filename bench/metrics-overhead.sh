#!/usr/bin/env bash
# What counting metrics costs: the keep-alive small-response load through one
# sluice worker, with the per-request metric hooks on and off
# (SLUICE_BENCH_NO_METRICS=1), alternating over several rounds with the same
# pinning as bench/compare.sh (sluice on CPU 0, origin and load generator on
# CPU 1). Prints each run and the median requests/s and proxy CPU µs per
# request of each mode, and their ratio. Everything stays on 127.0.0.1.
#
#   flock /tmp/sluice-build.lock bench/metrics-overhead.sh [--duration 10s] [--rounds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
script_name=metrics-overhead
# shellcheck source-path=SCRIPTDIR source=lib.sh
source bench/lib.sh

duration=10s
rounds=5
connections=50
build=build/release
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "metrics-overhead: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]?$ ]] || { echo "--rounds: 1..99" >&2; exit 2; }

sluice=$build/proxy/sluice
bench=$build/bench/sluice-bench
[[ -x $sluice && -x $bench ]] || { echo "build first: cmake --build --preset release" >&2; exit 1; }
ncpu=$(nproc)
proxy_cpu=0
client_cpu=$((ncpu > 1 ? 1 : 0))

start_run
origin_port=$(free_port)
listen_port=$(free_port)
admin_port=$(free_port)

spawn origin taskset -c "$client_cpu" "$bench" origin --listen "127.0.0.1:$origin_port" --threads 1
write_sluice_config "$tmp/sluice.yaml" "$listen_port" "$admin_port" "$origin_port"
wait_ready "$started_pid" "http://127.0.0.1:$origin_port/small" || { log "the origin does not answer"; exit 1; }

run() { # MODE (on|off): one sluice run; prints "req/s cpu_us_per_req"
  local mode=$1 env=() pid before after
  [[ $mode == off ]] && env=(SLUICE_BENCH_NO_METRICS=1)
  spawn "sluice-$mode" env "${env[@]}" taskset -c "$proxy_cpu" "$sluice" --config "$tmp/sluice.yaml"
  pid=$started_pid
  wait_ready "$pid" "http://127.0.0.1:$admin_port/ready" || { log "sluice does not answer"; exit 1; }
  taskset -c "$client_cpu" "$bench" load "http://127.0.0.1:$listen_port/small" --threads 1 \
    --connections "$connections" --duration 2s >/dev/null 2>&1 || true
  before=$(cpu_ticks "$pid")
  timeout 600 taskset -c "$client_cpu" "$bench" load "http://127.0.0.1:$listen_port/small" \
    --threads 1 --connections "$connections" --duration "$duration" --json "$tmp/load.json" \
    >/dev/null 2>&1
  after=$(cpu_ticks "$pid")
  stop_started "$pid"
  python3 - "$tmp/load.json" $((after - before)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
print(f"{doc['requests_per_s']:.0f} {ticks / hz * 1e6 / max(doc['requests'], 1):.2f}")
PY
}

: >"$tmp/results"
for ((r = 1; r <= rounds; r++)); do
  for mode in on off; do
    read -r rps cpu <<<"$(run "$mode")"
    echo "round $r metrics $mode: $rps req/s, $cpu CPU µs/req"
    echo "$mode $rps $cpu" >>"$tmp/results"
  done
done

python3 - "$tmp/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {m: (statistics.median(float(r[1]) for r in rows if r[0] == m),
           statistics.median(float(r[2]) for r in rows if r[0] == m)) for m in ("on", "off")}
on, off = med["on"], med["off"]
print(f"median with metrics:    {on[0]:.0f} req/s, {on[1]:.2f} CPU µs/req")
print(f"median without metrics: {off[0]:.0f} req/s, {off[1]:.2f} CPU µs/req")
print(f"throughput with/without: {on[0] / off[0]:.3f} ({(1 - on[0] / off[0]) * 100:+.1f}% cost); "
      f"CPU per request with/without: {on[1] / off[1]:.3f}")
PY

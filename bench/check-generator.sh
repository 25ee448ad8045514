#!/usr/bin/env bash
# bench/check-generator.sh: is sluice-bench load a fair load generator? Runs
# wrk and `sluice-bench load` with the same shape (connections, one thread,
# same CPU) against the same target, alternating over rounds, and reports
# requests/s of each and their ratio. Issue 3 wants sluice-bench within 15 %
# of wrk; the exit code says whether the median ratio is at least 0.85.
#
# The target is a `sluice-bench origin` started here on TARGET_CPU (or any
# URL given with --url); both generators run on CLIENT_CPU.
#
# Timed runs must not overlap builds on a shared machine; hold the build lock:
#   flock /tmp/sluice-build.lock bench/check-generator.sh
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/check-generator.sh [--url URL] [--connections N] [--duration D] [--repeats N]

  --url URL          target (default: a sluice-bench origin started here, /small)
  --connections N    connections for both generators (default 50)
  --duration D       seconds per run (default 10)
  --repeats N        rounds, each running wrk then sluice-bench, order alternating (default 3)

Environment: SLUICE_BENCH (build/release/bench/sluice-bench), WRK (wrk),
TARGET_CPU (0), CLIENT_CPU (1).
Prints a Markdown table. Exit 0 when the median sluice-bench/wrk ratio of
requests/s is at least 0.85, 1 when lower, 2 for bad usage or missing tools.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script_name=check-generator
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$repo/bench/lib.sh"
bench_bin=${SLUICE_BENCH:-$repo/build/release/bench/sluice-bench}
wrk_bin=${WRK:-$(command -v wrk || true)}
target_cpu=${TARGET_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
url=""
connections=50
duration=10
repeats=3

while (($# > 0)); do
  case "$1" in
    --url | --connections | --duration | --repeats)
      (($# >= 2)) || { echo "check-generator: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --url) url=$2 ;;
        --connections) connections=$2 ;;
        --duration) duration=${2%s} ;;
        --repeats) repeats=$2 ;;
      esac
      shift 2
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "check-generator: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $connections =~ ^[1-9][0-9]{0,4}$ ]] || { echo "check-generator: --connections: 1..99999" >&2; exit 2; }
[[ $duration =~ ^[1-9][0-9]{0,3}$ ]] || { echo "check-generator: --duration: whole seconds, 1..9999" >&2; exit 2; }
[[ $repeats =~ ^[1-9][0-9]?$ ]] || { echo "check-generator: --repeats: 1..99" >&2; exit 2; }
for tool in "$bench_bin" "$wrk_bin" "$(command -v taskset || true)" "$(command -v python3 || true)"; do
  [[ -n $tool && -x $tool ]] || { echo "check-generator: missing ${tool:-a tool} (wrk, taskset, python3, sluice-bench)" >&2; exit 2; }
done

start_run

if [[ -z $url ]]; then
  spawn origin taskset -c "$target_cpu" "$bench_bin" origin --listen 127.0.0.1:0
  port=$(listening_port origin "$started_pid")
  [[ -n $port ]] || { echo "check-generator: the origin did not start: $(cat "$tmp/origin.err")" >&2; exit 1; }
  url="http://127.0.0.1:$port/small"
fi

# Runs a command and writes the CPU seconds (user + system) it used to FILE.
# usage: with_cpu FILE COMMAND...
with_cpu() {
  python3 -c '
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write(f"{r.ru_utime + r.ru_stime}\n")
sys.exit(rc)' "$@"
}

# Each prints "REQUESTS_PER_S REQUESTS CPU_SECONDS" for one run.
run_wrk() {
  with_cpu "$tmp/cpu" timeout --kill-after=5 $((duration + 30)) taskset -c "$client_cpu" \
    "$wrk_bin" -t1 -c"$connections" -d"${duration}s" "$url" >"$tmp/wrk.out" 2>&1
  echo "$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")" \
    "$(awk '/requests in/ { print $1 }' "$tmp/wrk.out")" "$(cat "$tmp/cpu")"
}

run_bench() {
  with_cpu "$tmp/cpu" timeout --kill-after=5 $((duration + 30)) taskset -c "$client_cpu" \
    "$bench_bin" load "$url" --threads 1 --connections "$connections" --duration "${duration}s" \
    --json "$tmp/bench.json" >"$tmp/bench.out" 2>&1
  echo "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["requests_per_s"], d["requests"])' \
    "$tmp/bench.json")" "$(cat "$tmp/cpu")"
}

# Short warm-up of the target with each tool, untimed.
saved=$duration
duration=1
run_wrk >/dev/null
run_bench >/dev/null
duration=$saved

wrk_runs=()
bench_runs=()
for ((round = 1; round <= repeats; round++)); do
  # Alternate which tool goes first, so drift does not favour one.
  if ((round % 2)); then
    wrk_runs+=("$(run_wrk)")
    bench_runs+=("$(run_bench)")
  else
    bench_runs+=("$(run_bench)")
    wrk_runs+=("$(run_wrk)")
  fi
  echo "check-generator: round $round: wrk ${wrk_runs[-1]%% *} req/s, sluice-bench ${bench_runs[-1]%% *} req/s" >&2
done

status=0
(IFS=,; python3 - "$url" "$connections" "$duration" "$client_cpu" "$target_cpu" \
  "${wrk_runs[*]}" "${bench_runs[*]}") <<'EOF' || status=$?
import statistics, sys
url, conns, dur, ccpu, tcpu = sys.argv[1:6]
def runs(arg):
    return [tuple(float(x) for x in run.split()) for run in arg.split(",")]
wrk, bench = runs(sys.argv[6]), runs(sys.argv[7])
ratios = [b[0] / w[0] for w, b in zip(wrk, bench)]
med = statistics.median(ratios)
def cpu_us(run):
    return run[2] * 1e6 / run[1] if run[1] else float("nan")
print(f"Target `{url}` on CPU {tcpu}; both generators on CPU {ccpu}, 1 thread, {conns} connections, "
      f"{dur}s per run, {len(wrk)} rounds (order alternating). \"CPU µs/req\" is the generator's "
      "own CPU time (user + system) per request.")
print()
print("| round | wrk req/s | sluice-bench req/s | sluice-bench ÷ wrk | wrk CPU µs/req | sluice-bench CPU µs/req |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
for i, (w, b, r) in enumerate(zip(wrk, bench, ratios), 1):
    print(f"| {i} | {w[0]:,.0f} | {b[0]:,.0f} | {r:.3f} | {cpu_us(w):.1f} | {cpu_us(b):.1f} |")
print(f"| median | {statistics.median(x[0] for x in wrk):,.0f} | {statistics.median(x[0] for x in bench):,.0f} "
      f"| {med:.3f} | {statistics.median(cpu_us(x) for x in wrk):.1f} "
      f"| {statistics.median(cpu_us(x) for x in bench):.1f} |")
print()
# The generator must not be the bottleneck: more than 15 % slower than wrk
# fails; faster is reported as it is.
if med < 0.85:
    print(f"sluice-bench is more than 15 % slower than wrk (median ratio {med:.3f}).")
elif med <= 1.15:
    print(f"sluice-bench is within 15 % of wrk (median ratio {med:.3f}).")
else:
    print(f"sluice-bench is more than 15 % faster than wrk (median ratio {med:.3f}).")
sys.exit(1 if med < 0.85 else 0)
EOF
exit "$status"

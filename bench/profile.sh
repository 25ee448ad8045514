#!/usr/bin/env bash
# bench/profile.sh: where sluice spends its time on the keep-alive scenario
# (compare.sh scenario 1 shape: GET /small, one worker on PROXY_CPU, origin
# and load on CLIENT_CPU). Three measurements, each with its own sluice:
#
#   instructions  user-space instructions per request under callgrind
#                 (repeatable on a noisy machine: it counts, not times)
#   syscalls      system calls per request (strace -c)
#   perf          a cpu-clock profile (perf record -g), summarised by where
#                 the time goes: kernel send/receive paths, event loop,
#                 parser, header building, allocator, coroutine machinery
#
# Prints Markdown on stdout. Timed runs must not overlap builds:
#   flock /tmp/sluice-build.lock bench/profile.sh
set -Eeuo pipefail

usage() {
  cat <<'EOF'
usage: bench/profile.sh [--only instructions|syscalls|perf] [--path /small] [--new-connection]
                        [--keep-tmp]

--new-connection: every request on a new connection (scenario 3's shape)
instead of keep-alive.

Environment: SLUICE_BIN (build/release/proxy/sluice), SLUICE_BENCH
(build/release/bench/sluice-bench), PROXY_CPU (0), CLIENT_CPU (1).
Needs valgrind, strace and perf (Debian: valgrind, strace, linux-perf).
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script_name=profile
need_hint="Debian: valgrind, strace, linux-perf, curl"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$repo/bench/lib.sh"
sluice_bin=${SLUICE_BIN:-$repo/build/release/proxy/sluice}
bench_bin=${SLUICE_BENCH:-$repo/build/release/bench/sluice-bench}
proxy_cpu=${PROXY_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
only=""
path="/small"
keep_tmp=0
shape=keep-alive
load_mode=()
while (($# > 0)); do
  case "$1" in
    --only) only=$2; shift ;;
    --path) path=$2; shift ;;
    --keep-tmp) keep_tmp=1 ;;
    --new-connection) shape="new connection per request"; load_mode=(--new-connection) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "profile: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for tool in valgrind callgrind_annotate strace perf taskset curl; do
  need "$tool" "$(command -v "$tool" || true)"
done
[[ -x $sluice_bin && -x $bench_bin ]] || { echo "profile: build first (make build)" >&2; exit 2; }

start_run
origin_port=$(free_port)
port=$(free_port)
admin=$(free_port)
write_sluice_config "$tmp/sluice.yaml" "$port" "$admin" "$origin_port"

spawn origin taskset -c "$client_cpu" "$bench_bin" origin --listen "127.0.0.1:$origin_port" --name o
url="http://127.0.0.1:$port$path"

load() { # JSON ARGS...
  local json=$1
  shift
  taskset -c "$client_cpu" "$bench_bin" load "$url" --threads 1 --json "$json" "${load_mode[@]}" "$@" >/dev/null
}
requests_in() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['requests'])" "$1"; }

# start_sluice NAME CONNECTIONS [WRAPPER...]: sluice pinned to PROXY_CPU (run
# by WRAPPER, e.g. valgrind, when given), output in $tmp/NAME.out/.err, once
# it answers (30 s at most: valgrind starts slowly) warmed up for 1 s with
# CONNECTIONS connections; sets spid.
start_sluice() {
  local name=$1 connections=$2
  shift 2
  spawn "$name" taskset -c "$proxy_cpu" "$@" "$sluice_bin" --config "$tmp/sluice.yaml" --log-level warn
  spid=$started_pid
  if ! wait_ready "$spid" "$url" 30; then
    log "$name did not start: $(tail -n 3 "$tmp/$name.err" | tr '\n' ' ')"
    exit 1
  fi
  load "$tmp/warm.json" --connections "$connections" --duration 1s
}

echo "## Profile: $shape, \`GET $path\`, one worker"
echo
echo "$("$sluice_bin" --version 2>/dev/null | head -1), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo

if [[ -z $only || $only == instructions ]]; then
  start_sluice sluice-callgrind 10 valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out"
  callgrind_control -z "$spid" >/dev/null
  load "$tmp/cg.json" --connections 10 --duration 5s
  callgrind_control -d "$spid" >/dev/null
  stop_started "$spid"
  n=$(requests_in "$tmp/cg.json")
  dump=$(printf '%s\n' "$tmp"/cg.out.* | sort | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "### User-space instructions per request (callgrind)"
  echo
  echo "| requests | instructions | per request |"
  echo "| ---: | ---: | ---: |"
  printf '| %s | %s | %s |\n' "$n" "$total" "$((total / n))"
  echo
  echo "Largest self costs (share of user-space instructions):"
  echo
  echo "| share | function |"
  echo "| ---: | --- |"
  # shellcheck disable=SC2016 # the single quotes hold a Python program
  callgrind_annotate --threshold=100 --auto=no "$dump" 2>/dev/null |
    awk '/^ *[0-9,]+ \( *[0-9.]+%\)/ && !/PROGRAM TOTALS/' |
    python3 -c '
import re, sys
rows = []
for line in sys.stdin:
    m = re.match(r"\s*[\d,]+ \(\s*([\d.]+)%\)\s+(.*?):(.*?)( \[.*\])?$", line)
    if not m:
        continue
    share, fn = float(m.group(1)), m.group(3)
    if share >= 50:  # the run loop and thread entry: inclusive, not self
        continue
    fn = re.sub(r"boost::asio::", "asio::", fn)
    fn = re.sub(r"boost::beast::", "beast::", fn)
    fn = re.sub(r"sluice::proxy::", "", fn)
    fn = re.sub(r"\(anonymous namespace\)::", "", fn)
    fn = re.sub(r"<.*>", "<…>", fn)
    fn = re.sub(r"\(.*\)", "()", fn)
    rows.append((share, fn))
for share, fn in rows[:15]:
    print(f"| {share:.1f} % | `{fn}` |")
'
  echo
fi

if [[ -z $only || $only == syscalls ]]; then
  start_sluice sluice-strace 50
  timeout --foreground 6 strace -c -f -p "$spid" -o "$tmp/strace.txt" &
  tpid=$!
  started_pids+=("$tpid")
  sleep 0.5
  load "$tmp/strace.json" --connections 50 --duration 2s
  kill -INT "$tpid" 2>/dev/null || true
  wait "$tpid" 2>/dev/null || true
  stop_started "$spid"
  n=$(requests_in "$tmp/strace.json")
  echo "### System calls per request (strace -c, 50 connections)"
  echo
  echo "| system call | calls | per request | errors |"
  echo "| --- | ---: | ---: | ---: |"
  awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
      name = $NF; calls = $4; errors = (NF == 6) ? $5 : 0
      if (calls / n >= 0.01) printf "| %s | %d | %.2f | %d |\n", name, calls, calls / n, errors
    }' "$tmp/strace.txt"
  echo
fi

if [[ -z $only || $only == perf ]]; then
  start_sluice sluice-perf 50
  paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)
  if ((paranoid > 1 && EUID != 0)); then
    log "kernel.perf_event_paranoid is $paranoid: perf cannot profile another process" \
      "(as root, or: sysctl kernel.perf_event_paranoid=1)"
    exit 1
  fi
  perf record -e cpu-clock -F 2999 -g -p "$spid" -o "$tmp/perf.data" -- sleep 4 2>"$tmp/perf.err" &
  ppid=$!
  started_pids+=("$ppid")
  load "$tmp/perf.json" --connections 50 --duration 5s
  perf_status=0
  wait "$ppid" || perf_status=$?
  stop_started "$spid"
  if ((perf_status != 0)) || [[ ! -s $tmp/perf.data ]]; then
    log "perf record failed (exit $perf_status): $(tail -n 3 "$tmp/perf.err")"
    exit 1
  fi
  echo "### Where the time goes (perf, cpu-clock, 50 connections)"
  echo
  echo "Samples folded by the innermost frame that names a known area (kernel paths by the"
  echo "system call they serve)."
  echo
  echo "| share | area |"
  echo "| ---: | --- |"
  perf script -i "$tmp/perf.data" -F ip,sym 2>/dev/null | python3 "$repo/bench/profile_fold.py"
  echo
fi

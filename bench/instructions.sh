#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per request under callgrind,
# sluice against nginx, on four shapes of compare.sh's load: keep-alive and
# new connection per request (plain HTTP), TLS keep-alive and a full TLS
# handshake per request (ECDSA P-256, TLS 1.3). Instructions are counted, not
# timed, so the figures repeat on a noisy machine (about ±1 %); they leave
# out the kernel (system calls, TCP) and cache misses, which compare.sh's
# CPU time includes.
#
# Each proxy runs alone under valgrind with one worker (nginx with
# master_process off), the sluice-bench origin and load pinned to
# CLIENT_CPU; the counters are zeroed after a warm-up and dumped after the
# measured run, whose requests divide them. Prints Markdown on stdout.
# Timed runs must not overlap builds:
#   flock /tmp/sluice-build.lock bench/instructions.sh
set -Eeuo pipefail

usage() {
  cat <<'EOF'
usage: bench/instructions.sh [--proxies sluice,nginx] [--duration 10s] [--keep-tmp]

Environment: SLUICE_BIN (build/release/proxy/sluice), SLUICE_BENCH
(build/release/bench/sluice-bench), NGINX (from PATH), PROXY_CPU (0), CLIENT_CPU (1).
Needs valgrind, nginx, openssl, curl.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script_name=instructions
need_hint="Debian: valgrind, nginx, openssl, curl"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$repo/bench/lib.sh"
PATH="$PATH:/usr/sbin:/sbin"
sluice_bin=${SLUICE_BIN:-$repo/build/release/proxy/sluice}
bench_bin=${SLUICE_BENCH:-$repo/build/release/bench/sluice-bench}
proxy_cpu=${PROXY_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
proxies="sluice,nginx"
duration="10s"
keep_tmp=0
while (($# > 0)); do
  case "$1" in
    --proxies) proxies=$2; shift ;;
    --duration) duration=$2; shift ;;
    --keep-tmp) keep_tmp=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "instructions: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for tool in valgrind callgrind_control callgrind_annotate openssl curl taskset; do
  need "$tool" "$(command -v "$tool" || true)"
done
[[ ,$proxies, == *,nginx,* ]] && need nginx "$(command -v "${NGINX:-nginx}" || true)"
[[ -x $sluice_bin && -x $bench_bin ]] || { echo "instructions: build first (make build)" >&2; exit 2; }

start_run
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$tmp/ecdsa.key" -out "$tmp/ecdsa.crt" 2>/dev/null
origin_port=$(free_port)
spawn origin taskset -c "$client_cpu" "$bench_bin" origin --listen "127.0.0.1:$origin_port" --name o

# write_nginx PORT TLS: its config (one worker, no master, the origin kept
# alive as compare.sh configures it).
write_nginx() {
  local port=$1 tls=$2 listen_tls="" certs=""
  if [[ $tls == yes ]]; then
    listen_tls=" ssl"
    certs="ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $tmp/ecdsa.crt; ssl_certificate_key $tmp/ecdsa.key;"
  fi
  mkdir -p "$tmp/nginx"
  cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
user root;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  upstream origin {
    server 127.0.0.1:$origin_port;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port$listen_tls;
    $certs
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

# count PROXY SHAPE: sets count_result to the instructions per request.
count() {
  local proxy=$1 shape=$2 port scheme=http tls=no load_args=() argv
  port=$(free_port)
  case "$shape" in
    keep-alive) ;;
    new-connection) load_args=(--new-connection) ;;
    tls-keep-alive) scheme=https tls=yes load_args=(--insecure) ;;
    tls-handshake) scheme=https tls=yes load_args=(--insecure --new-connection) ;;
  esac
  if [[ $proxy == sluice ]]; then
    if [[ $tls == yes ]]; then
      write_sluice_config "$tmp/sluice.yaml" "$port" "$(free_port)" "$origin_port" "$tmp/ecdsa.crt" "$tmp/ecdsa.key"
    else
      write_sluice_config "$tmp/sluice.yaml" "$port" "$(free_port)" "$origin_port"
    fi
    argv=("$sluice_bin" --config "$tmp/sluice.yaml" --log-level warn)
  else
    write_nginx "$port" "$tls"
    argv=("${NGINX:-nginx}" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf")
  fi
  rm -f "$tmp"/cg.out*
  spawn "$proxy-$shape" taskset -c "$proxy_cpu" valgrind --tool=callgrind --dump-instr=no \
    --callgrind-out-file="$tmp/cg.out" "${argv[@]}"
  local pid=$started_pid url="$scheme://127.0.0.1:$port/small"
  if ! wait_ready "$pid" "$url" 60; then
    log "$proxy did not start: $(tail -n 3 "$tmp/$proxy-$shape.err" | tr '\n' ' ')"
    exit 1
  fi
  taskset -c "$client_cpu" "$bench_bin" load "$url" --threads 1 --connections 4 --duration 1s \
    "${load_args[@]}" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  taskset -c "$client_cpu" "$bench_bin" load "$url" --threads 1 --connections 4 --duration "$duration" \
    "${load_args[@]}" --json "$tmp/load.json" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  stop_started "$pid"
  local n total=0 dump one
  n=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['requests'])" "$tmp/load.json")
  for dump in "$tmp"/cg.out.*; do
    one=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    total=$((total + ${one:-0}))
  done
  ((n > 0)) || { log "$proxy $shape: no requests"; exit 1; }
  count_result=$((total / n))
}

IFS=, read -r -a proxy_list <<<"$proxies"
shapes=(keep-alive new-connection tls-keep-alive tls-handshake)
echo "## User-space instructions per request (callgrind), $duration per shape, 4 connections"
echo
echo "sluice commit $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown);" \
  "$("${NGINX:-nginx}" -v 2>&1 | sed 's|^nginx version: ||' || true)"
echo
header="| shape |" rule="| --- |"
for p in "${proxy_list[@]}"; do header+=" $p |"; rule+=" ---: |"; done
((${#proxy_list[@]} == 2)) && header+=" ${proxy_list[0]} ÷ ${proxy_list[1]} |" rule+=" ---: |"
echo "$header"
echo "$rule"
for shape in "${shapes[@]}"; do
  row="| $shape |"
  counts=()
  for p in "${proxy_list[@]}"; do
    log "$p, $shape"
    count "$p" "$shape"
    counts+=("$count_result")
    row+=" $(python3 -c "import sys; print(f'{int(sys.argv[1]):,}')" "$count_result") |"
  done
  if ((${#counts[@]} == 2)); then
    row+=" $(python3 -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}×')" "${counts[0]}" "${counts[1]}") |"
  fi
  echo "$row"
done
echo

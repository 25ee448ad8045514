#!/usr/bin/env bash
# bench/compare.sh: sluice against HAProxy, nginx and Caddy on the same
# scenarios (SPEC section 10, issue 3). Prints a Markdown table on stdout;
# progress goes to stderr. See bench/README.md ("Peer comparison").
#
# Each proxy is started by this script with a config written to a temp dir
# (one worker, logging off, upstream keep-alive on), pinned to PROXY_CPU; the
# origin and the load generator are pinned to CLIENT_CPU. Rounds interleave
# the proxies (round r starts the rotation at proxy r) so drift hits all
# alike. Every process started here is stopped on exit.
#
# Timed runs must not overlap builds on a shared machine; hold the build lock:
#   flock /tmp/sluice-build.lock bench/compare.sh --duration 10s --repeats 3
set -Eeuo pipefail

usage() {
  cat <<'EOF'
usage: bench/compare.sh [options]

  --scenarios LIST     comma-separated, from 1..8 (default 1,2,3,4,5,6,7,8)
                         1 keep-alive, small response      5 TLS handshake per request (ECDSA, RSA,
                         2 keep-alive, 64 KiB and 1 MiB      and ECDSA resumed with a session ticket)
                           responses                       6 idle connections: RSS per connection
                         3 new connection per request      7 1 GiB download and upload: RSS growth
                         4 TLS keep-alive (ECDSA)          8 reload under load (keep-alive, scenario 1's
                                                             load; N reloads changing the upstream list)
  --proxies LIST       comma-separated from sluice,haproxy,nginx,caddy (default all four)
  --duration D         measured time per load run, e.g. 10s, 2s, 500ms (default 10s)
  --repeats N          rounds; each round runs every proxy once per scenario (default 3)
  --connections N      load generator connections for scenarios 1-5 (default 50)
  --idle-connections N connections held in scenario 6 (default 10000)
  --transfer-size S    body size for scenario 7, as sluice-bench takes it (default 1G)
  --reloads N          reloads during each scenario 8 run, evenly spaced (default 10; 3 with --smoke)
  --origin KIND        "bench" (sluice-bench origin, default) or "nginx"
  --sluice-tls MODE    auto (default: start sluice on a TLS listener and see), yes, no
  --smoke              CI check: 1 round of scenarios 1 and 3 (or those of --scenarios), 1s
                       each; exit 1 unless every proxy answered requests with zero errors
                       (scenario 8: every reload applied, zero errors for sluice; asserts no speed)
  --write-doc          also replace the table section of docs/PERFORMANCE.md
  --keep-tmp           keep the temp dir (configs, logs, raw results) and print its path
  -h, --help           this text

Environment: SLUICE_BIN (build/release/proxy/sluice), SLUICE_BENCH
(build/release/bench/sluice-bench), HAPROXY, NGINX, CADDY (from PATH),
PROXY_CPU (0), CLIENT_CPU (1).
Exit: 0 after a run (the table shows any errors), 1 when the smoke check or a
required step fails, 2 for bad usage or missing programs.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script_name=compare
need_hint="bash deploy/install-deps.sh installs the benchmark packages"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$repo/bench/lib.sh"
PATH="$PATH:/usr/sbin:/sbin" # haproxy and nginx live there; not every user's PATH has it
report_py="$repo/bench/compare_report.py"

scenarios="1,2,3,4,5,6,7,8"
proxies="sluice,haproxy,nginx,caddy"
duration="10s"
repeats=3
connections=50
idle_connections=10000
transfer_size="1G"
reloads=""
origin_kind="bench"
sluice_tls="auto"
smoke=0
write_doc=0
keep_tmp=0
scenarios_given=0
warmup="1s"
original_args=("$@")

while (($# > 0)); do
  case "$1" in
    --scenarios | --proxies | --duration | --repeats | --connections | --idle-connections | \
      --transfer-size | --reloads | --origin | --sluice-tls)
      (($# >= 2)) || die_usage "$1 needs a value"
      case "$1" in
        --scenarios) scenarios=$2 scenarios_given=1 ;;
        --proxies) proxies=$2 ;;
        --duration) duration=$2 ;;
        --repeats) repeats=$2 ;;
        --connections) connections=$2 ;;
        --idle-connections) idle_connections=$2 ;;
        --transfer-size) transfer_size=$2 ;;
        --reloads) reloads=$2 ;;
        --origin) origin_kind=$2 ;;
        --sluice-tls) sluice_tls=$2 ;;
      esac
      shift 2
      ;;
    --smoke) smoke=1; shift ;;
    --write-doc) write_doc=1; shift ;;
    --keep-tmp) keep_tmp=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done

if ((smoke)); then
  ((scenarios_given)) || scenarios="1,3"
  [[ -n $reloads ]] || reloads=3
  duration="1s"
  repeats=1
  warmup="200ms"
fi

[[ $repeats =~ ^[1-9][0-9]?$ ]] || die_usage "--repeats: expected 1..99, got '$repeats'"
[[ $connections =~ ^[1-9][0-9]{0,4}$ ]] || die_usage "--connections: expected 1..99999"
[[ $idle_connections =~ ^[1-9][0-9]{0,5}$ ]] || die_usage "--idle-connections: expected 1..100000"
[[ -n $reloads ]] || reloads=10
[[ $reloads =~ ^[1-9][0-9]?$ ]] || die_usage "--reloads: expected 1..99, got '$reloads'"
[[ $duration =~ ^[0-9]+(\.[0-9]+)?(ms|s|m)?$ ]] || die_usage "--duration: expected e.g. 10s or 500ms"
[[ $origin_kind == bench || $origin_kind == nginx ]] || die_usage "--origin: bench or nginx"
[[ $sluice_tls =~ ^(auto|yes|no)$ ]] || die_usage "--sluice-tls: auto, yes or no"

# Duration in whole seconds, rounded up, for the outer time limits.
duration_ceil_s() {
  awk -v d="$1" 'BEGIN {
    n = d + 0; unit = d; sub(/^[0-9.]+/, "", unit)
    s = (unit == "ms") ? n / 1000 : (unit == "m") ? n * 60 : n
    printf "%d\n", (s == int(s)) ? s : int(s) + 1
  }'
}
duration_s=$(duration_ceil_s "$duration")
((duration_s >= 1)) || duration_s=1
duration_ms=$(awk -v d="$duration" 'BEGIN {
  n = d + 0; unit = d; sub(/^[0-9.]+/, "", unit)
  printf "%d\n", (unit == "ms") ? n : (unit == "m") ? n * 60000 : n * 1000
}')

IFS=, read -r -a scenario_list <<<"$scenarios"
IFS=, read -r -a proxy_list <<<"$proxies"
for s in "${scenario_list[@]}"; do
  [[ $s =~ ^[1-8]$ ]] || die_usage "--scenarios: unknown scenario '$s' (1..8)"
done
for p in "${proxy_list[@]}"; do
  [[ $p =~ ^(sluice|haproxy|nginx|caddy)$ ]] || die_usage "--proxies: unknown proxy '$p'"
done

sluice_bin=${SLUICE_BIN:-$repo/build/release/proxy/sluice}
bench_bin=${SLUICE_BENCH:-$repo/build/release/bench/sluice-bench}
haproxy_bin=${HAPROXY:-$(command -v haproxy || true)}
nginx_bin=${NGINX:-$(command -v nginx || true)}
caddy_bin=${CADDY:-$(command -v caddy || true)}
proxy_cpu=${PROXY_CPU:-0}
client_cpu=${CLIENT_CPU:-1}

need sluice-bench "$bench_bin"
need curl "$(command -v curl || true)"
need taskset "$(command -v taskset || true)"
need python3 "$(command -v python3 || true)"
need openssl "$(command -v openssl || true)"
for p in "${proxy_list[@]}"; do
  case "$p" in
    sluice) need sluice "$sluice_bin" ;;
    haproxy) need haproxy "$haproxy_bin" ;;
    nginx) need nginx "$nginx_bin" ;;
    caddy) need caddy "$caddy_bin" ;;
  esac
done
[[ $origin_kind == bench ]] || need nginx "$nginx_bin"
if (($(nproc) < 2)); then
  echo "compare: only one CPU: proxy and clients share it, numbers will be poor" >&2
  proxy_cpu=0
  client_cpu=0
fi

# 10,000 idle connections need well over 10,000 descriptors in the proxy and
# the idle client: raise the soft limit as far as the hard one allows.
raise_nofile
nofile=$(ulimit -n)
# HAProxy refuses to start unless two descriptors per connection fit: keep
# the idle count within that for every proxy alike, and say so.
idle_fit=$(((nofile - 200) / 2 / 100 * 100))
if [[ ,$scenarios, == *,6,* ]] && ((idle_connections > idle_fit)); then
  echo "compare: descriptor limit $nofile (hard limit $(ulimit -Hn)): scenario 6 holds $idle_fit connections instead of $idle_connections" >&2
  idle_note=" (asked for $idle_connections; the descriptor limit of $nofile allows HAProxy two per connection for $idle_fit)"
  idle_connections=$idle_fit
fi

start_run
results="$tmp/results.jsonl"

# start NAME CPU ENV... -- COMMAND...: spawns COMMAND pinned to CPU with the
# environment ENV; stdout/stderr in $tmp/NAME.out/.err; sets started_pid.
start() {
  local name=$1 cpu=$2
  shift 2
  local envs=()
  while [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  spawn "$name" env "${envs[@]}" taskset -c "$cpu" "$@"
}

# Sum of a /proc/PID/status field (VmRSS, VmHWM) over the tree, in KiB.
status_kib() {
  local total=0 pid v
  for pid in $(tree_pids "$1"); do
    v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null) || v=0
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# Resets the peak-RSS mark (VmHWM) of the tree to the current RSS.
reset_hwm() {
  local pid
  for pid in $(tree_pids "$1"); do
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
  done
}

record() { python3 "$report_py" record "$results" "$@"; }

# ---------------------------------------------------------------------------
# Certificates and the origin

make_certs() {
  local kind
  for kind in ecdsa rsa; do
    local key_opts=(-newkey rsa:2048)
    [[ $kind == ecdsa ]] && key_opts=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
    openssl req -x509 "${key_opts[@]}" -nodes -days 2 -subj /CN=localhost \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$tmp/$kind.key" -out "$tmp/$kind.crt" 2>/dev/null
    cat "$tmp/$kind.crt" "$tmp/$kind.key" >"$tmp/$kind.pem" # HAProxy wants both in one file
  done
}

transfer_bytes=$(python3 -c '
import sys
t = sys.argv[1]
units = {"": 0, "k": 10, "K": 10, "m": 20, "M": 20, "g": 30, "G": 30}
n = t.rstrip("kKmMgG")
print(int(n) << units[t[len(n):]] if n.isdigit() and t[len(n):] in units else "")' "$transfer_size")
[[ -n $transfer_bytes ]] || die_usage "--transfer-size: expected e.g. 1G, 512M"

# The same paths on both origins (nginx serves files of those sizes).
small_path="/small"
large_path="/bytes/65536"
huge_path="/bytes/1048576"
download_path="/bytes/$transfer_bytes"
upload_path="/small" # the body is read and discarded
origin_port=""
# Scenario 8 switches the upstream list between two servers: a second
# origin process (bench), or a second port of the same nginx.
origin_port2=""
[[ ,$scenarios, == *,8,* ]] && want_origin2=1 || want_origin2=0

# bench_origin NAME: starts a sluice-bench origin on a free port of its
# choosing; prints that port (empty when it did not report one).
bench_origin() {
  start "$1" "$client_cpu" -- "$bench_bin" origin --listen 127.0.0.1:0 --name "$1"
  listening_port "$1" "$started_pid"
}

start_origin() {
  local listen2=""
  if [[ $origin_kind == bench ]]; then
    # Not in a subshell: start() must record the pid here.
    bench_origin origin >"$tmp/origin.port"
    origin_port=$(<"$tmp/origin.port")
    origin_pid=$started_pid
    if ((want_origin2)); then
      bench_origin origin2 >"$tmp/origin2.port"
      origin_port2=$(<"$tmp/origin2.port")
      origin2_pid=$started_pid
    fi
  else
    origin_port=$(free_port)
    if ((want_origin2)); then
      origin_port2=$(free_port)
      listen2="listen 127.0.0.1:$origin_port2 reuseport backlog=4096;"
    fi
    mkdir -p "$tmp/www/bytes" "$tmp/origin-nginx"
    head -c 65536 /dev/zero | tr '\0' a >"$tmp/www/bytes/65536"
    head -c 1048576 /dev/zero | tr '\0' a >"$tmp/www/bytes/1048576"
    truncate -s "$transfer_bytes" "$tmp/www/bytes/$transfer_bytes"
    cat >"$tmp/origin-nginx.conf" <<EOF
worker_processes 1;
daemon off;
user root;
pid $tmp/origin-nginx/nginx.pid;
error_log $tmp/origin-nginx/error.log error;
worker_rlimit_nofile $nofile;
events { worker_connections $((nofile - 100)); }
http {
  access_log off;
  keepalive_requests 1000000;
  client_max_body_size 0;
  client_body_temp_path $tmp/origin-nginx/body;
  server {
    listen 127.0.0.1:$origin_port reuseport backlog=4096;
    $listen2
    location = /small { return 200 "hello from nginx\n"; }
    location /bytes/ { root $tmp/www; }
  }
}
EOF
    start origin "$client_cpu" -- "$nginx_bin" -e "$tmp/origin-nginx/error.log" -c "$tmp/origin-nginx.conf"
    origin_pid=$started_pid
    origin2_pid=$origin_pid
  fi
  if [[ -z $origin_port ]] || ! wait_ready "$origin_pid" "http://127.0.0.1:$origin_port$small_path"; then
    log "the origin did not start:"
    tail -n 20 "$tmp/origin.err" >&2 || true
    exit 1
  fi
  if ((want_origin2)) && { [[ -z $origin_port2 ]] || ! wait_ready "$origin2_pid" "http://127.0.0.1:$origin_port2$small_path"; }; then
    log "the second origin did not start:"
    tail -n 20 "$tmp/origin2.err" "$tmp/origin.err" >&2 2>/dev/null || true
    exit 1
  fi
  server_ports=$origin_port
}

# ---------------------------------------------------------------------------
# Proxies: write_NAME PORT TLS (none|ecdsa|rsa) DIR writes NAME's config into
# DIR and prints the command line that starts it. The upstream servers are
# the origin ports in $server_ports (scenario 8 changes them and writes the
# config again for a reload).

server_ports=""
caddy_admin=0 # 1: Caddy's admin API on (scenario 8 reloads through it)

# admin_port DIR: a port for the admin listener of the proxy in DIR, the
# same one each time the config is written again.
admin_port() {
  [[ -s $1/admin_port ]] || free_port >"$1/admin_port"
  cat "$1/admin_port"
}

write_sluice() {
  local port=$1 tls=$2 dir=$3 cert="" key=""
  [[ $tls == none ]] || cert=$tmp/$tls.crt key=$tmp/$tls.key
  write_sluice_config "$dir/sluice.yaml" "$port" "$(admin_port "$dir")" "$server_ports" "$cert" "$key"
  echo "$sluice_bin --config $dir/sluice.yaml --log-level warn"
}

write_haproxy() {
  local port=$1 tls=$2 dir=$3 ssl="" servers="" p
  for p in $server_ports; do
    servers+="  server o$p 127.0.0.1:$p
"
  done
  [[ $tls != none ]] && ssl=" ssl crt $tmp/$tls.pem"
  # HAProxy wants two descriptors per connection and will not start
  # otherwise: maxconn is as high as the descriptor limit allows.
  cat >"$dir/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $(((nofile - 64) / 2))
defaults
  mode http
  maxconn $(((nofile - 64) / 2))
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  option http-keep-alive
  http-reuse always
frontend bench
  bind 127.0.0.1:$port$ssl
  default_backend origin
backend origin
$servers
EOF
  echo "$haproxy_bin -db -f $dir/haproxy.cfg"
}

write_nginx() {
  local port=$1 tls=$2 dir=$3 ssl="" certs="" servers="" p
  for p in $server_ports; do
    servers+="    server 127.0.0.1:$p;
"
  done
  if [[ $tls != none ]]; then
    ssl=" ssl"
    # nginx 1.22 offers TLS 1.3 only when asked (1.23.4 made it the default).
    certs="ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $tmp/$tls.crt; ssl_certificate_key $tmp/$tls.key;"
  fi
  mkdir -p "$dir/nginx"
  # proxy_request_buffering off and proxy_max_temp_file_size 0: stream bodies
  # both ways as the other proxies do, rather than spooling them to disk.
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
user root;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log error;
worker_rlimit_nofile $nofile;
events { worker_connections $((nofile - 100)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_max_body_size 0;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  upstream origin {
$servers
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port$ssl;
    $certs
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }
  }
}
EOF
  echo "$nginx_bin -e $dir/nginx/error.log -c $dir/nginx.conf"
}

write_caddy() {
  local port=$1 tls=$2 dir=$3 site tls_line="" admin="off" upstreams="" p
  for p in $server_ports; do upstreams+=" 127.0.0.1:$p"; done
  ((caddy_admin)) && admin="127.0.0.1:$(admin_port "$dir")"
  site="http://127.0.0.1:$port"
  if [[ $tls != none ]]; then
    site="https://127.0.0.1:$port"
    tls_line="tls $tmp/$tls.crt $tmp/$tls.key"
  fi
  cat >"$dir/Caddyfile" <<EOF
{
  admin $admin
  auto_https disable_redirects
  default_sni 127.0.0.1
  log {
    level ERROR
  }
}
$site {
  bind 127.0.0.1
  $tls_line
  reverse_proxy$upstreams
}
EOF
  echo "$caddy_bin run --config $dir/Caddyfile --adapter caddyfile"
}

proxy_pid=""
proxy_base=""
proxy_port=""
proxy_dir=""
# start_proxy NAME TLS: starts it on a fresh port; false (with the reason in
# proxy_failure) when it does not answer 200 within the deadline. Sets
# proxy_pid, proxy_base, proxy_port and proxy_dir (its config directory).
start_proxy() {
  local name=$1 tls=$2 port dir argv scheme=http
  port=$(free_port)
  dir="$tmp/run-$name-$tls"
  rm -rf "$dir"
  mkdir -p "$dir"
  [[ $tls != none ]] && scheme=https
  argv=$("write_$name" "$port" "$tls" "$dir")
  local envs=(HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir")
  [[ $name == caddy ]] && envs+=(GOMAXPROCS=1)
  # shellcheck disable=SC2086 # argv is built from paths without spaces
  start "proxy-$name" "$proxy_cpu" "${envs[@]}" -- $argv
  proxy_pid=$started_pid
  proxy_base="$scheme://127.0.0.1:$port"
  proxy_port=$port
  proxy_dir=$dir
  if ! wait_ready "$proxy_pid" "$proxy_base$small_path"; then
    proxy_failure=$(tail -n 3 "$tmp/proxy-$name.err" "$tmp/proxy-$name.out" 2>/dev/null |
      grep -v '^==>' | grep -v '^$' | tail -n 2 | tr '\n' ' ' | cut -c1-200)
    stop_started "$proxy_pid"
    return 1
  fi
  return 0
}

stop_proxy() {
  stop_started "$proxy_pid"
  proxy_pid=""
}

# Whether sluice terminates TLS: --check accepts a TLS listener even where
# start-up refuses it, so start it on one and see whether it answers.
sluice_has_tls() {
  case "$sluice_tls" in
    yes) return 0 ;;
    no) return 1 ;;
  esac
  if [[ -z ${sluice_tls_probe:-} ]]; then
    if start_proxy sluice ecdsa; then
      sluice_tls_probe=yes
      stop_proxy
    else
      sluice_tls_probe=no
      log "sluice does not serve TLS (${proxy_failure:-no answer}); TLS scenarios show n/a for it"
    fi
  fi
  [[ $sluice_tls_probe == yes ]]
}

# ---------------------------------------------------------------------------
# Scenarios

load() { # load URL ARGS...: one pinned sluice-bench load run; output in $tmp/load.*
  local url=$1
  shift
  timeout --kill-after=5 $((duration_s + 60)) taskset -c "$client_cpu" \
    "$bench_bin" load "$url" --threads 1 "$@" >"$tmp/load.out" 2>"$tmp/load.err"
}

scenario_args() { # scenario_args ID: the load path and options of a load scenario
  case "$1" in
    1) echo "$small_path --connections $connections" ;;
    2) echo "$large_path --connections $connections" ;;
    2-1m) echo "$huge_path --connections $connections" ;;
    3) echo "$small_path --connections $connections --new-connection" ;;
    4) echo "$small_path --connections $connections --insecure" ;;
    5-ecdsa | 5-rsa) echo "$small_path --connections $connections --new-connection --insecure" ;;
    5-resumed) echo "$small_path --connections $connections --new-connection --insecure --tls-resume" ;;
  esac
}

scenario_tls() {
  case "$1" in
    4 | 5-ecdsa | 5-resumed) echo ecdsa ;;
    5-rsa) echo rsa ;;
    *) echo none ;;
  esac
}

run_load_scenario() { # SCENARIO PROXY ROUND
  local sid=$1 name=$2 round=$3 tls path args before after
  tls=$(scenario_tls "$sid")
  read -r path args <<<"$(scenario_args "$sid")"
  if [[ $name == sluice && $tls != none ]] && ! sluice_has_tls; then
    record kind=load scenario="$sid" proxy="$name" round="$round" status=na note="no TLS yet"
    return
  fi
  if ! start_proxy "$name" "$tls"; then
    log "  $name did not start: $proxy_failure"
    record kind=load scenario="$sid" proxy="$name" round="$round" status=failed note="did not start"
    return
  fi
  if [[ $tls != none ]]; then
    # Every TLS scenario compares TLS 1.3 handshakes and records.
    local version
    version=$({ timeout 10 openssl s_client -connect "127.0.0.1:$proxy_port" </dev/null 2>/dev/null || true; } |
      sed -n 's/^\(New\|Reused\), \(TLSv[0-9.]*\),.*/\2/p' | head -n 1)
    if [[ $version != TLSv1.3 ]]; then
      log "  $name negotiated ${version:-no TLS version}, not TLSv1.3"
      record kind=load scenario="$sid" proxy="$name" round="$round" status=failed note="negotiated ${version:-nothing}, not TLSv1.3"
      stop_proxy
      return
    fi
  fi
  # shellcheck disable=SC2086 # args is a list of options
  load "$proxy_base$path" $args --duration "$warmup" || true
  before=$(cpu_ticks "$proxy_pid")
  rm -f "$tmp/load.json"
  # shellcheck disable=SC2086
  if load "$proxy_base$path" $args --duration "$duration" --json "$tmp/load.json" && [[ -s $tmp/load.json ]]; then
    after=$(cpu_ticks "$proxy_pid")
    if [[ $sid == 5-resumed ]]; then
      # Only each connection's first handshake is full.
      local full
      full=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["connections_opened"] - d["tls_resumed"])' "$tmp/load.json")
      if ((full > 2 * connections)); then
        log "  $name: $full handshakes were not resumed"
        record kind=load scenario="$sid" proxy="$name" round="$round" status=failed note="$full handshakes not resumed"
        stop_proxy
        return
      fi
    fi
    record kind=load scenario="$sid" proxy="$name" round="$round" status=ok \
      cpu_ticks=$((after - before)) clk_tck="$(getconf CLK_TCK)" --load-json "$tmp/load.json"
    log "  $name: $(grep -m1 'requests ' "$tmp/load.out" | sed 's/^ *//')"
  else
    log "  $name: sluice-bench load failed: $(tail -n 2 "$tmp/load.err" | tr '\n' ' ')"
    record kind=load scenario="$sid" proxy="$name" round="$round" status=failed note="load generator failed"
  fi
  kill -0 "$proxy_pid" 2>/dev/null || log "  $name exited during the run: $(tail -n 2 "$tmp/proxy-$name.err" | tr '\n' ' ')"
  stop_proxy
}

run_idle_scenario() { # PROXY ROUND
  local name=$1 round=$2 before with line open i pid
  if ! start_proxy "$name" none; then
    record kind=idle scenario=6 proxy="$name" round="$round" status=failed note="did not start"
    return
  fi
  load "$proxy_base$small_path" --connections 10 --duration "$warmup" || true
  sleep 0.5 # let the proxy settle after the warm-up before the baseline
  before=$(status_kib "$proxy_pid" VmRSS)
  : >"$tmp/idle.out"
  start idle "$client_cpu" -- timeout --kill-after=5 300 "$bench_bin" idle "$proxy_base$small_path" \
    --connections "$idle_connections" --hold 120s --timeout 120s
  pid=$started_pid
  line=""
  for ((i = 0; i < 2600; i++)); do # set-up is bounded by --timeout 120s above
    line=$(grep -m1 '"msg":"holding"' "$tmp/idle.out" || true)
    [[ -n $line ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z $line ]]; then
    log "  $name: the idle client did not report: $(tail -n 2 "$tmp/idle.err" | tr '\n' ' ')"
    record kind=idle scenario=6 proxy="$name" round="$round" status=failed note="idle client failed"
  else
    sleep 1 # RSS settles once the last responses are written
    with=$(status_kib "$proxy_pid" VmRSS)
    open=$(sed -n 's/.*"open":\([0-9]*\).*/\1/p' <<<"$line")
    if ((open > 0)); then
      record kind=idle scenario=6 proxy="$name" round="$round" status=ok connections="$idle_connections" \
        open="$open" rss_before_kib="$before" rss_with_kib="$with" \
        per_conn_bytes=$(((with - before) * 1024 / open))
      log "  $name: $open idle connections, RSS $before -> $with KiB ($(((with - before) * 1024 / open)) B each)"
    else
      record kind=idle scenario=6 proxy="$name" round="$round" status=failed note="no connection held"
      log "  $name: no idle connection held: $line"
    fi
  fi
  stop_started "$pid"
  stop_proxy
}

run_transfer_scenario() { # PROXY ROUND
  local name=$1 round=$2 direction before cpu0 cpu1 out code size seconds hwm
  if ! start_proxy "$name" none; then
    record kind=transfer scenario=7 proxy="$name" round="$round" direction=down status=failed note="did not start"
    return
  fi
  load "$proxy_base$small_path" --connections 10 --duration "$warmup" || true
  for direction in down up; do
    reset_hwm "$proxy_pid"
    before=$(status_kib "$proxy_pid" VmRSS)
    cpu0=$(cpu_ticks "$proxy_pid")
    if [[ $direction == down ]]; then
      out=$(timeout --kill-after=5 600 taskset -c "$client_cpu" curl -sS -o /dev/null --max-time 590 \
        -w '%{http_code} %{size_download} %{time_total}' "$proxy_base$download_path" 2>&1) || true
    else
      out=$(timeout --kill-after=5 600 taskset -c "$client_cpu" curl -sS -o /dev/null --max-time 590 \
        -H 'Expect:' -T "$tmp/upload.bin" \
        -w '%{http_code} %{size_upload} %{time_total}' "$proxy_base$upload_path" 2>&1) || true
    fi
    cpu1=$(cpu_ticks "$proxy_pid")
    hwm=$(status_kib "$proxy_pid" VmHWM)
    read -r code size seconds <<<"$out"
    if [[ $code == 200 && $size == "$transfer_bytes" ]]; then
      record kind=transfer scenario=7 proxy="$name" round="$round" direction="$direction" status=ok \
        bytes="$size" seconds="$seconds" rss_before_kib="$before" hwm_kib="$hwm" \
        cpu_ticks=$((cpu1 - cpu0)) clk_tck="$(getconf CLK_TCK)"
      log "  $name $direction: ${seconds}s, RSS $before KiB, peak $hwm KiB"
    else
      record kind=transfer scenario=7 proxy="$name" round="$round" direction="$direction" status=failed \
        note="curl: ${out:0:120}"
      log "  $name $direction failed: $out"
    fi
  done
  stop_proxy
}

# --- scenario 8: reload under load
#
# reload_NAME K: applies the config written for reload K the proxy's own
# way and waits (5 s at most) until it is in force; false when it is not.
# Sets reload_note on failure.

now_ms() { date +%s%3N; }

reload_sluice() {
  local k=$1 admin deadline gen
  write_sluice "$proxy_port" none "$proxy_dir" >/dev/null
  admin=$(<"$proxy_dir/admin_port")
  kill -HUP "$proxy_pid" 2>/dev/null || { reload_note="not running"; return 1; }
  deadline=$(($(now_ms) + 5000))
  while (($(now_ms) < deadline)); do
    # The generation counts loads: the first config is 1.
    gen=$(curl -s --max-time 1 "http://127.0.0.1:$admin/status" 2>/dev/null |
      grep -o '"generation":[0-9]*' | awk -F: 'NR == 1 { print $2 }') || gen=""
    [[ $gen == $((k + 1)) ]] && return 0
    sleep 0.01
  done
  reload_note="generation ${gen:-?} after 5 s, expected $((k + 1))"
  return 1
}

# HAProxy's reload: a new process on the new config that, once it listens,
# tells the old one (-sf) to stop accepting and finish its connections.
# Done when the old one has exited and the new one runs.
reload_haproxy() {
  local k=$1 old=$proxy_pid new deadline
  write_haproxy "$proxy_port" none "$proxy_dir" >/dev/null
  start "proxy-haproxy-reload$k" "$proxy_cpu" HOME="$proxy_dir" -- \
    "$haproxy_bin" -db -f "$proxy_dir/haproxy.cfg" -sf "$old"
  new=$started_pid
  deadline=$(($(now_ms) + 5000))
  while (($(now_ms) < deadline)); do
    if ! kill -0 "$new" 2>/dev/null; then
      reload_note="the new process exited: $(tail -n 1 "$tmp/proxy-haproxy-reload$k.err")"
      forget_pid "$new"
      return 1
    fi
    if ! kill -0 "$old" 2>/dev/null; then
      wait "$old" 2>/dev/null || true
      forget_pid "$old"
      proxy_pid=$new
      return 0
    fi
    sleep 0.01
  done
  # The new one serves; the old one still finishes connections.
  proxy_pid=$new
  reload_leftover=$old
  reload_note="the old process was still running after 5 s"
  return 1
}

# nginx's reload: the master re-reads the config, starts new workers and
# tells the old ones to finish. Done when a new worker runs.
reload_nginx() {
  local k=$1 before deadline pid
  write_nginx "$proxy_port" none "$proxy_dir" >/dev/null
  before=" $(pgrep -P "$proxy_pid" | tr '\n' ' ' || true)"
  if ! "$nginx_bin" -e "$proxy_dir/nginx/error.log" -c "$proxy_dir/nginx.conf" -s reload 2>"$tmp/nginx-reload.err"; then
    reload_note="nginx -s reload: $(tail -n 1 "$tmp/nginx-reload.err")"
    return 1
  fi
  deadline=$(($(now_ms) + 5000))
  while (($(now_ms) < deadline)); do
    for pid in $(pgrep -P "$proxy_pid" || true); do
      [[ $before == *" $pid "* ]] || return 0
    done
    sleep 0.01
  done
  reload_note="no new worker after 5 s"
  return 1
}

# Caddy's reload: `caddy reload` posts the adapted config to the admin API,
# which answers once the new config runs.
reload_caddy() {
  local k=$1
  write_caddy "$proxy_port" none "$proxy_dir" >/dev/null
  if ! HOME="$proxy_dir" XDG_DATA_HOME="$proxy_dir" XDG_CONFIG_HOME="$proxy_dir" timeout 10 \
    "$caddy_bin" reload --config "$proxy_dir/Caddyfile" --adapter caddyfile \
    --address "127.0.0.1:$(<"$proxy_dir/admin_port")" >"$tmp/caddy-reload.out" 2>&1; then
    reload_note="caddy reload: $(grep -v '^$' "$tmp/caddy-reload.out" | tail -n 1 | cut -c1-160)"
    return 1
  fi
  return 0
}

# The upstream lists scenario 8 cycles through (origin ports): reload K
# installs reload_lists[K % 4], so every reload adds or removes a server.
reload_lists=()

run_reload_scenario() { # PROXY ROUND
  local name=$1 round=$2 k t0 due wait_ms load_pid load_ok=0 applied=0 failed_notes="" t
  local times=() extra_pids=() pid
  reload_lists=("$origin_port" "$origin_port $origin_port2" "$origin_port2" "$origin_port2 $origin_port")
  server_ports=${reload_lists[0]}
  [[ $name == caddy ]] && caddy_admin=1
  if ! start_proxy "$name" none; then
    log "  $name did not start: $proxy_failure"
    record kind=reload scenario=8 proxy="$name" round="$round" status=failed note="did not start"
    server_ports=$origin_port caddy_admin=0
    return
  fi
  load "$proxy_base$small_path" --connections "$connections" --duration "$warmup" || true
  rm -f "$tmp/load.json"
  # The measured run in the background; the reloads fall evenly inside it.
  load "$proxy_base$small_path" --connections "$connections" --duration "$duration" --json "$tmp/load.json" &
  load_pid=$!
  t0=$(now_ms)
  for ((k = 1; k <= reloads; k++)); do
    due=$((t0 + k * duration_ms / (reloads + 1)))
    wait_ms=$((due - $(now_ms)))
    ((wait_ms > 0)) && sleep "$(awk -v ms="$wait_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
    server_ports=${reload_lists[$((k % ${#reload_lists[@]}))]}
    reload_note="" reload_leftover=""
    t=$(now_ms)
    if "reload_$name" "$k"; then
      applied=$((applied + 1))
      times+=($(($(now_ms) - t)))
    else
      log "  $name reload $k: $reload_note"
      [[ -n $failed_notes ]] || failed_notes="reload $k: $reload_note"
      [[ -z $reload_leftover ]] || extra_pids+=("$reload_leftover")
    fi
  done
  wait "$load_pid" && [[ -s $tmp/load.json ]] && load_ok=1
  if ((load_ok)); then
    local sorted
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    record kind=reload scenario=8 proxy="$name" round="$round" status=ok reloads="$reloads" applied="$applied" \
      reload_ms_median="$(awk '{ a[NR] = $1 } END { print NR ? a[int((NR + 1) / 2)] : "" }' <<<"$sorted")" \
      reload_ms_max="$(tail -n 1 <<<"$sorted")" note="$failed_notes" --load-json "$tmp/load.json"
    log "  $name: $(grep -m1 'requests ' "$tmp/load.out" | sed 's/^ *//'); $applied/$reloads reloads applied;" \
      "errors $(grep -o '"errors":{[^}]*}' "$tmp/load.json")"
  else
    log "  $name: sluice-bench load failed: $(tail -n 2 "$tmp/load.err" | tr '\n' ' ')"
    record kind=reload scenario=8 proxy="$name" round="$round" status=failed note="load generator failed"
  fi
  kill -0 "$proxy_pid" 2>/dev/null || log "  $name exited during the run: $(tail -n 2 "$tmp/proxy-$name.err" | tr '\n' ' ')"
  stop_proxy
  for pid in "${extra_pids[@]}"; do stop_started "$pid"; done
  server_ports=$origin_port caddy_admin=0
}

# ---------------------------------------------------------------------------
# Main

version_of() { # never fails: an unknown version is reported as such
  case "$1" in
    # awk reads to the end: head would leave the writer to die of SIGPIPE.
    sluice) "$sluice_bin" --version 2>&1 | awk 'NR == 1' ;;
    haproxy) "$haproxy_bin" -v 2>&1 | awk 'NR == 1 { print "HAProxy " $3 }' ;;
    nginx) "$nginx_bin" -v 2>&1 | sed 's|.*nginx/|nginx |' ;;
    caddy) "$caddy_bin" version 2>&1 | awk '{ print "Caddy " $1 }' ;;
  esac || echo "$1 (version unknown)"
}

versions=()
for p in "${proxy_list[@]}"; do versions+=("$(version_of "$p")"); done
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
os_name=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null || true)
sluice_rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
command_line="bench/compare.sh${original_args[*]:+ ${original_args[*]}}"
load_shape="closed loop, $connections connections, sluice-bench load with 1 thread, ${duration} per run after a ${warmup} warm-up"

make_certs
truncate -s "$transfer_bytes" "$tmp/upload.bin" # sparse: no disk used
start_origin
log "origin ($origin_kind) on 127.0.0.1:$origin_port; proxies on CPU $proxy_cpu, clients on CPU $client_cpu; nofile $nofile"

record kind=meta command="$command_line" date="$(date -u +%Y-%m-%dT%H:%MZ)" nproc="$(nproc)" \
  cpu_model="$cpu_model" kernel="$(uname -r)" os="$os_name" versions="$(joined=$(IFS=,; echo "${versions[*]}"); echo "${joined//,/, }")" \
  loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)" sluice_rev="$sluice_rev" repeats="$repeats" duration="$duration" proxies="$proxies" proxy_cpu="$proxy_cpu" client_cpu="$client_cpu" \
  origin="$([[ $origin_kind == bench ]] && echo "sluice-bench origin, 1 thread" || echo "nginx, 1 worker")" \
  shape_1="\`GET $small_path\` (short body), $load_shape." \
  shape_2="\`GET $large_path\`, $load_shape." \
  shape_2_1m="\`GET $huge_path\`, $load_shape." \
  shape_3="\`GET $small_path\` with \`Connection: close\`: every request on a new TCP connection, $load_shape." \
  shape_4="\`GET $small_path\` over TLS (ECDSA P-256 certificate, TLS 1.3 negotiated), keep-alive, $load_shape." \
  shape_5_ecdsa="\`GET $small_path\`, a full TLS handshake for every request (no session resumption), $load_shape." \
  shape_5_rsa="\`GET $small_path\`, a full TLS handshake for every request (no session resumption), $load_shape." \
  shape_5_resumed="\`GET $small_path\`, a new TLS connection for every request resuming the previous connection's session (TLS 1.3 ticket, ECDSA P-256 certificate; \`sluice-bench load --tls-resume\`, each connection's first handshake is full), $load_shape." \
  shape_6="$idle_connections connections${idle_note:-} opened by \`sluice-bench idle\` (64 at a time), one \`GET $small_path\` each, then held idle; (RSS holding them − RSS before) ÷ connections held. Process RSS summed over the proxy's processes." \
  shape_8="\`GET $small_path\`, $load_shape; during the measured run $reloads reloads, evenly spaced, each adding or removing one of two origin servers (the list cycles [1] → [1, 2] → [2] → [2, 1] → [1]). Each proxy reloads its own way and the next reload waits until the last one is in force: sluice SIGHUP (new generation in admin \`/status\`); HAProxy a new process started with \`-sf <old pid>\` (the old one has exited); nginx \`nginx -s reload\` (a new worker runs); Caddy \`caddy reload\` through its admin API (it answers once the new config runs). Failed requests = connection errors of the load generator (connect, read, write, timeout, parse) + non-2xx answers." \
  shape_7="One $transfer_size download (\`GET $download_path\`) then one $transfer_size upload (\`PUT $upload_path\` with Content-Length) with curl through the proxy; RSS growth = peak RSS (VmHWM, reset before each transfer) − RSS before."

for ((round = 1; round <= repeats; round++)); do
  # Round r starts the rotation at the r-th proxy.
  order=()
  for ((i = 0; i < ${#proxy_list[@]}; i++)); do
    order+=("${proxy_list[$(((i + round - 1) % ${#proxy_list[@]}))]}")
  done
  for sid in "${scenario_list[@]}"; do
    case "$sid" in
      1 | 3 | 4)
        log "round $round/$repeats, scenario $sid (${order[*]})"
        for p in "${order[@]}"; do run_load_scenario "$sid" "$p" "$round"; done
        ;;
      2 | 5)
        variants=(2 2-1m)
        [[ $sid == 5 ]] && variants=(5-ecdsa 5-rsa 5-resumed)
        for variant in "${variants[@]}"; do
          log "round $round/$repeats, scenario $variant (${order[*]})"
          for p in "${order[@]}"; do run_load_scenario "$variant" "$p" "$round"; done
        done
        ;;
      6)
        log "round $round/$repeats, scenario 6: $idle_connections idle connections (${order[*]})"
        for p in "${order[@]}"; do run_idle_scenario "$p" "$round"; done
        ;;
      7)
        log "round $round/$repeats, scenario 7: $transfer_size download and upload (${order[*]})"
        for p in "${order[@]}"; do run_transfer_scenario "$p" "$round"; done
        ;;
      8)
        log "round $round/$repeats, scenario 8: $reloads reloads under load (${order[*]})"
        for p in "${order[@]}"; do run_reload_scenario "$p" "$round"; done
        ;;
    esac
  done
done

record kind=end loadavg_end="$(cut -d' ' -f1-3 /proc/loadavg)" date_end="$(date -u +%Y-%m-%dT%H:%MZ)"
python3 "$report_py" table "$results" >"$tmp/table.md"
cat "$tmp/table.md"
if ((write_doc)); then
  python3 "$report_py" write-doc "$repo/docs/PERFORMANCE.md" "$tmp/table.md"
  log "wrote the table into docs/PERFORMANCE.md"
fi
if ((smoke)); then
  python3 "$report_py" check "$results" || exit 1
  if [[ ,$scenarios, == *,8,* ]]; then
    log "smoke check passed: every proxy answered, every reload was in force, sluice failed no request"
  else
    log "smoke check passed: every proxy answered with zero errors"
  fi
fi

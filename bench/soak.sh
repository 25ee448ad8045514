#!/usr/bin/env bash
# bench/soak.sh: the soak run (issue 11; a bench scenario, not CI). sluice
# under mixed traffic for a long time, with reloads, origin outages, bursts
# of idle connections and a few hostile clients, while its memory and
# descriptors are sampled. Writes samples.csv, the raw results, report.html
# and summary.md into --out, and prints PASS or FAIL (bench/soak_report.py
# decides). See bench/README.md ("Soak run").
#
# Everything stays on 127.0.0.1: three `sluice-bench origin` processes, one
# sluice, and `sluice-bench load` / `idle` clients that each get a duration
# and stop by themselves. Every process started here is stopped on exit.
#
# Runs must not overlap builds or other benchmarks on a shared machine:
#   flock /tmp/sluice-build.lock bench/soak.sh --duration 30m
set -Eeuo pipefail

usage() {
  cat <<'EOF'
usage: bench/soak.sh [options]

  --duration D          the whole run, warm-up included (default 30m)
  --sample D            how often memory, descriptors and metrics are sampled (default 10s)
  --reload-every D      a reload this often, changing the upstream list (default 60s)
  --workers N           sluice's worker threads (default 2)
  --warmup D            warm-up before the baseline (default: 60s, or 10% of --duration if shorter)
  --outage-every D      an origin is stopped once per D after the warm-up, alternately the
                        single server of upstream "bulk" and one of the two of "pool"
                        (default: 300s, or a third of the time after the warm-up if shorter;
                        0 = no outages)
  --outage-length D     how long a stopped origin stays down (default 20s)
  --idle-connections N  connections of each idle burst, held --idle-hold (default 500)
  --idle-every D        an idle burst this often, the first at 1 s (default 60s)
  --out DIR             where results go (default: a new dir /tmp/sluice-soak-out.XXXXXX)
  --smoke               quick self-check: 20s, sample 1s, reload every 4s, warm-up 6s,
                        one 2 s outage, idle bursts of 200 held 2s
  --keep-tmp            keep the temp dir (configs, process logs) and print its path
  -h, --help            this text

Durations: 500ms, 10s, 2m, 1h, or a bare number of seconds.
Environment: SLUICE_BIN (build/release/proxy/sluice), SLUICE_BENCH
(build/release/bench/sluice-bench).
Exit: 0 when the verdict is PASS, 1 on FAIL or when a step failed, 2 for bad
usage or missing programs.
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script_name=soak
need_hint="build first: cmake --build --preset release"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$repo/bench/lib.sh"
report_py="$repo/bench/soak_report.py"

duration="30m"
sample="10s"
reload_every="60s"
workers=2
warmup=""
outage_every=""
outage_length="20s"
idle_connections=500
idle_every="60s"
idle_hold="5s"
hostile_every="120s"
out_dir=""
smoke=0
keep_tmp=0
original_args=("$@")

while (($# > 0)); do
  case "$1" in
    --duration | --sample | --reload-every | --workers | --warmup | --outage-every | \
      --outage-length | --idle-connections | --idle-every | --out)
      (($# >= 2)) || die_usage "$1 needs a value"
      case "$1" in
        --duration) duration=$2 ;;
        --sample) sample=$2 ;;
        --reload-every) reload_every=$2 ;;
        --workers) workers=$2 ;;
        --warmup) warmup=$2 ;;
        --outage-every) outage_every=$2 ;;
        --outage-length) outage_length=$2 ;;
        --idle-connections) idle_connections=$2 ;;
        --idle-every) idle_every=$2 ;;
        --out) out_dir=$2 ;;
      esac
      shift 2
      ;;
    --smoke) smoke=1; shift ;;
    --keep-tmp) keep_tmp=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done

if ((smoke)); then
  duration="20s" sample="1s" reload_every="4s" warmup="6s"
  outage_every="8s" outage_length="2s"
  idle_connections=200 idle_every="10s" idle_hold="2s" hostile_every="10s"
fi

# A duration as whole milliseconds; empty when it is not one.
to_ms() {
  [[ $1 =~ ^[0-9]+(\.[0-9]+)?(ms|s|m|h)?$ ]] || return 0
  awk -v d="$1" 'BEGIN {
    n = d + 0; unit = d; sub(/^[0-9.]+/, "", unit)
    f = (unit == "ms") ? 1 : (unit == "m") ? 60000 : (unit == "h") ? 3600000 : 1000
    printf "%d\n", n * f
  }'
}
ms_of() { # NAME VALUE: VALUE in ms, or a usage error naming NAME
  local v
  v=$(to_ms "$2")
  [[ -n $v ]] || die_usage "$1: expected a duration such as 10s, 500ms, 2m; got '$2'"
  echo "$v"
}

duration_ms=$(ms_of --duration "$duration")
sample_ms=$(ms_of --sample "$sample")
reload_ms=$(ms_of --reload-every "$reload_every")
outage_len_ms=$(ms_of --outage-length "$outage_length")
idle_every_ms=$(ms_of --idle-every "$idle_every")
idle_hold_ms=$(ms_of idle-hold "$idle_hold")
hostile_every_ms=$(ms_of hostile-every "$hostile_every")
[[ $workers =~ ^[1-9][0-9]?$ ]] || die_usage "--workers: expected 1..99, got '$workers'"
[[ $idle_connections =~ ^[1-9][0-9]{0,4}$ ]] || die_usage "--idle-connections: expected 1..99999"
((duration_ms >= 10000)) || die_usage "--duration: at least 10s"
((sample_ms >= 200)) || die_usage "--sample: at least 200ms"
((reload_ms >= 1000)) || die_usage "--reload-every: at least 1s"
((idle_every_ms >= 1000)) || die_usage "--idle-every: at least 1s"
if [[ -n $warmup ]]; then
  warmup_ms=$(ms_of --warmup "$warmup")
else
  warmup_ms=$((duration_ms / 10 < 60000 ? duration_ms / 10 : 60000))
fi
((warmup_ms >= 1000 && warmup_ms <= duration_ms - 5000)) ||
  die_usage "--warmup: between 1s and 5s less than --duration"
# After an origin comes back, its requests may still get 503 while the
# passive check keeps it out (fail_timeout), so its window lasts that long
# and a second more.
fail_timeout_s=3
outage_grace_ms=$(((fail_timeout_s + 1) * 1000))
if [[ -n $outage_every ]]; then
  outage_every_ms=$(ms_of --outage-every "$outage_every")
else
  outage_every_ms=$(((duration_ms - warmup_ms) / 3))
  ((outage_every_ms <= 300000)) || outage_every_ms=300000
fi
if ((outage_every_ms > 0 && outage_len_ms + outage_grace_ms >= outage_every_ms)); then
  die_usage "--outage-every must be longer than --outage-length + ${fail_timeout_s}s + 1s"
fi

sluice_bin=${SLUICE_BIN:-$repo/build/release/proxy/sluice}
bench_bin=${SLUICE_BENCH:-$repo/build/release/bench/sluice-bench}
need sluice "$sluice_bin"
need sluice-bench "$bench_bin"
need curl "$(command -v curl || true)"
need python3 "$(command -v python3 || true)"

# With an AddressSanitizer build, freed memory waits in ASan's quarantine
# (256 MiB by default) and RSS would measure the quarantine filling up.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"

# The idle bursts need a descriptor each in sluice and in the idle client.
raise_nofile
if (($(ulimit -n) < idle_connections + 1000)); then
  echo "soak: descriptor limit $(ulimit -n) is too low for $idle_connections idle connections" >&2
  exit 2
fi

if [[ -n $out_dir ]]; then
  mkdir -p "$out_dir"
  out_dir=$(cd "$out_dir" && pwd)
else
  out_dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-soak-out.XXXXXX")
fi
raw="$out_dir/raw"
mkdir -p "$raw"
rm -f "$raw"/* "$out_dir"/{samples.csv,segments.csv,reloads.csv,events.csv,meta.json,report.html,summary.md}
start_run

# ---------------------------------------------------------------------------
# Clock: el_ms is the time since the start of the run, set by tick.

t0_us=${EPOCHREALTIME/./}
el_ms=0
tick() {
  local now=${EPOCHREALTIME/./}
  el_ms=$(((now - t0_us) / 1000))
}
secs() { # MS as seconds with 3 decimals
  printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
}

# ---------------------------------------------------------------------------
# Origins: A and B are upstream "pool" (with active health checks), C is
# upstream "bulk" alone; reloads add C to "pool" and take it out again.

declare -A origin_pid origin_port
origin_names=(A B C)

# start_origin NAME [PORT]: on a free port of its choosing, or on PORT
# (a restart). Sets origin_pid and origin_port; false when it did not start.
start_origin() {
  local name=$1 listen="127.0.0.1:${2:-0}" port label
  label="origin-$name-$(secs "$el_ms")"
  spawn "$label" "$bench_bin" origin --listen "$listen" --name "origin-$name"
  origin_pid[$name]=$started_pid
  port=$(listening_port "$label" "$started_pid")
  if [[ -z $port ]] || ! wait_ready "$started_pid" "http://127.0.0.1:$port/small"; then
    log "origin $name did not start on $listen: $(tail -n 3 "$tmp/$label.err" | tr '\n' ' ')"
    return 1
  fi
  origin_port[$name]=$port
}

for name in "${origin_names[@]}"; do
  start_origin "$name" || exit 1
done

# ---------------------------------------------------------------------------
# sluice

listen_port=$(free_port)
admin_port=$(free_port)
config="$tmp/sluice.yaml"
admin="http://127.0.0.1:$admin_port"
proxy="http://127.0.0.1:$listen_port"

# pool_servers: the ports of upstream "pool" in the config written last.
pool_servers=""

# write_config POOL_PORTS [bad]: the config with those servers in "pool";
# "bad" adds an unknown key, so that loading it must fail.
write_config() {
  local ports=$1 bad=${2:-} servers="" p
  for p in $ports; do
    servers+="      - address: \"127.0.0.1:$p\"
"
  done
  {
    cat <<EOF
workers: $workers
listeners:
  - name: soak
    bind: "127.0.0.1:$listen_port"
    routes:
      - match: { path_prefix: "/ping" }
        respond: { status: 200, body: "pong\n" }
      - match: { path_prefix: "/bytes/" }
        upstream: bulk
      - match: { path_prefix: "/" }
        upstream: pool
upstreams:
  - name: pool
    balance: round_robin
    servers:
${servers}    health_check:
      path: /health
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      unhealthy_threshold: 2
    retries: 2
  - name: bulk
    servers:
      - address: "127.0.0.1:${origin_port[C]}"
    passive: { max_fails: 3, fail_timeout: ${fail_timeout_s}s }
timeouts: { client_header: 3s, shutdown_grace: 2s }
access_log: { enabled: false }
admin: { bind: "127.0.0.1:$admin_port" }
EOF
    [[ -z $bad ]] || echo "soak_unknown_key: true"
  } >"$config.new"
  mv "$config.new" "$config"
  [[ -n $bad ]] || pool_servers=$ports
}

pool_ab="${origin_port[A]} ${origin_port[B]}"
pool_abc="${origin_port[A]} ${origin_port[B]} ${origin_port[C]}"
write_config "$pool_ab"
if ! "$sluice_bin" --check --config "$config" >"$tmp/check.out" 2>&1; then
  log "the config does not load:"
  cat "$tmp/check.out" >&2
  exit 1
fi
spawn sluice "$sluice_bin" --config "$config"
sluice_pid=$started_pid
if ! wait_ready "$sluice_pid" "$admin/ready"; then
  log "sluice did not start: $(tail -n 5 "$tmp/sluice.err" "$tmp/sluice.out" | tr '\n' ' ')"
  exit 1
fi
cp "$config" "$raw/sluice-initial.yaml"
generation=1

# ---------------------------------------------------------------------------
# The schedule (ms since the start). The warm-up ends at warmup_ms with a
# quiet point (no traffic; the baseline census), the run at duration_ms with
# another (the end census). Load processes run in segments between
# boundaries: the warm-up end, each outage's start and the end of its window,
# the end. So each load result belongs either to an outage window or to
# normal time, and its errors are told apart that way.

out_start=() out_stop=() out_end=() out_name=()
if ((outage_every_ms > 0)); then
  for ((k = 0; ; k++)); do
    s=$((warmup_ms + outage_every_ms / 2 + k * outage_every_ms))
    ((s + outage_len_ms + outage_grace_ms <= duration_ms - 2000)) || break
    out_start+=("$s")
    out_stop+=($((s + outage_len_ms)))
    out_end+=($((s + outage_len_ms + outage_grace_ms)))
    # The single server of "bulk" first (502, then 503 from the passive
    # check), then one of "pool" (health checks take it out; retries).
    ((k % 2 == 0)) && out_name+=(C) || out_name+=(B)
  done
fi
bounds=("$warmup_ms")
for ((k = 0; k < ${#out_start[@]}; k++)); do
  bounds+=("${out_start[$k]}" "${out_end[$k]}")
done
bounds+=("$duration_ms")

reload_at=()
for ((t = reload_ms; t <= duration_ms - 1500; t += reload_ms)); do reload_at+=("$t"); done
idle_at=()
for ((t = 1000; t + idle_hold_ms + 4000 <= duration_ms; t += idle_every_ms)); do idle_at+=("$t"); done
hostile_at=()
for ((t = warmup_ms + hostile_every_ms / 2; t + 6000 <= duration_ms; t += hostile_every_ms)); do
  hostile_at+=("$t")
done

# The traffic: NAME|PATH|ARGS|WHAT, each a `sluice-bench load` per segment.
loads=(
  "keepalive_small|/small|--connections 8 --rate 300|keep-alive GET /small, 8 connections, 300/s"
  "keepalive_64k|/bytes/65536|--connections 4 --rate 40|keep-alive GET /bytes/65536 (64 KiB), 4 connections, 40/s"
  "new_connection|/small|--connections 4 --rate 40 --new-connection|GET /small on a new connection each, 4 at a time, 40/s"
  "upload_post|/echo|--connections 2 --rate 10 --method POST --body-size 256k|POST /echo with 256 KiB, 2 connections, 10/s"
)
# Client connections of the loads that can reach each origin: A and B serve
# "pool" (/small, /echo); C serves "bulk" and "pool" while a reload has it there.
pool_load_connections=14
bulk_load_connections=4

json_str() { # TEXT as a JSON string
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "${s//[$'\t\n\r']/ }"
}

cat >"$out_dir/meta.json" <<EOF
{"command": $(json_str "bench/soak.sh${original_args[*]:+ ${original_args[*]}}"),
 "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
 "sluice_version": $(json_str "$("$sluice_bin" --version 2>&1 | awk 'NR == 1')"),
 "sluice_rev": $(json_str "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"),
 "nproc": $(nproc), "kernel": "$(uname -r)",
 "duration_s": $(secs "$duration_ms"), "warmup_s": $(secs "$warmup_ms"), "sample_s": $(secs "$sample_ms"),
 "reload_every_s": $(secs "$reload_ms"), "workers": $workers,
 "outage_every_s": $(secs "$outage_every_ms"), "outage_length_s": $(secs "$outage_len_ms"),
 "outage_grace_s": $(secs "$outage_grace_ms"),
 "idle_connections": $idle_connections, "idle_every_s": $(secs "$idle_every_ms"), "idle_hold_s": $(secs "$idle_hold_ms"),
 "hostile_every_s": $(secs "$hostile_every_ms"),
 "listen_port": $listen_port, "admin_port": $admin_port,
 "origins": {"A": ${origin_port[A]}, "B": ${origin_port[B]}, "C": ${origin_port[C]}},
 "pool_load_connections": $pool_load_connections, "bulk_load_connections": $bulk_load_connections,
 "loads": [$(for l in "${loads[@]}"; do IFS='|' read -r n p a w <<<"$l"; printf '%s{"name": "%s", "path": "%s", "args": "%s", "what": "%s"}' "${sep:-}" "$n" "$p" "$a" "$w"; sep=", "; done)],
 "smoke": $smoke}
EOF

echo "elapsed_s,phase,vm_rss_kib,rss_anon_kib,fds,active_connections,requests_total,responses_5xx_total,reloads_ok,reloads_failed" >"$out_dir/samples.csv"
echo "index,start_s,end_s,kind,origin_down" >"$out_dir/segments.csv"
echo "elapsed_s,slot,kind,trigger,expected_generation,generation,pool_servers,applied,ms,note" >"$out_dir/reloads.csv"
echo "start_s,end_s,kind,detail" >"$out_dir/events.csv"

event() { # START_MS END_MS KIND DETAIL
  echo "$(secs "$1"),$(secs "$2"),$3,$4" >>"$out_dir/events.csv"
}

# ---------------------------------------------------------------------------
# Sampling

phase=warmup

# sample [PHASE]: one row of samples.csv. /proc first, then the scrape (its
# admin connection is not in the descriptor count).
sample() {
  local ph=${1:-$phase} rss=0 anon=0 key value rest fds m
  sluice_alive || return 0 # the loop notices and ends the run
  while read -r key value rest; do
    case "$key" in
      VmRSS:) rss=$value ;;
      RssAnon:) anon=$value ;;
    esac
  done <"/proc/$sluice_pid/status" 2>/dev/null || true
  fds=$(find "/proc/$sluice_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || fds=0
  m=$(curl -s --max-time 2 "$admin/metrics" 2>/dev/null | awk '
    /^sluice_downstream_connections_active[{ ]/ { act += $NF }
    /^sluice_http_requests_total[{ ]/ { req += $NF; if ($0 ~ /code="5[0-9][0-9]"/) e5 += $NF }
    /^sluice_config_reloads_total[{ ].*result="success"/ { ok = $NF }
    /^sluice_config_reloads_total[{ ].*result="failure"/ { bad = $NF }
    END { if (NR) printf "%d,%d,%d,%d,%d", act, req, e5, ok, bad; else printf ",,,," }') || m=",,,,"
  tick
  echo "$(secs "$el_ms"),$ph,$rss,$anon,$fds,$m" >>"$out_dir/samples.csv"
}

# Samples at the start, then half a period off the whole periods: segment
# boundaries, reloads and idle bursts fall on whole seconds of the schedule,
# and a sample taken in the instant between two segments would show no load.
next_sample_ms=0
maybe_sample() {
  tick
  if ((el_ms >= next_sample_ms)); then
    sample
    while ((next_sample_ms <= el_ms)); do
      ((next_sample_ms > 0)) && next_sample_ms=$((next_sample_ms + sample_ms)) || next_sample_ms=$((sample_ms / 2))
    done
  fi
}

sluice_alive() {
  kill -0 "$sluice_pid" 2>/dev/null && [[ $(awk '$1 == "State:" { print $2 }' "/proc/$sluice_pid/status" 2>/dev/null) != Z ]]
}

# ---------------------------------------------------------------------------
# Load segments

seg=0 seg_kind="" seg_origin="" seg_start_ms=0 seg_pids=()

start_segment() { # KIND ORIGIN_DOWN END_MS
  local kind=$1 down=$2 end_ms=$3 len l name path args
  tick
  seg=$((seg + 1)) seg_kind=$kind seg_origin=$down seg_start_ms=$el_ms seg_pids=()
  len=$((end_ms - el_ms))
  ((len >= 200)) || len=200
  for l in "${loads[@]}"; do
    IFS='|' read -r name path args _ <<<"$l"
    # shellcheck disable=SC2086 # args is a list of options
    spawn "seg$seg-$name" "$bench_bin" load "$proxy$path" $args --threads 1 --timeout 5s \
      --duration "${len}ms" --json "$raw/seg$seg-$name.json"
    seg_pids+=("$started_pid")
  done
}

# Waits for the segment's loads to stop by themselves (their duration), at
# most 20 s past it; a load still running then is stopped.
finish_segment() {
  local pid deadline=$((SECONDS + 20))
  for pid in "${seg_pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.05
      maybe_sample
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "a load of segment $seg did not stop by itself: stopped"
    fi
    stop_started "$pid"
  done
  seg_pids=()
  tick
  echo "$seg,$(secs "$seg_start_ms"),$(secs "$el_ms"),$seg_kind,$seg_origin" >>"$out_dir/segments.csv"
}

# ---------------------------------------------------------------------------
# Idle bursts and hostile clients run beside the loop; helpers_pids are reaped.

helper_pids=()
idle_k=0
hostile_k=0

start_idle_burst() {
  idle_k=$((idle_k + 1))
  tick
  spawn "idle$idle_k" "$bench_bin" idle "$proxy/ping" --connections "$idle_connections" \
    --hold "${idle_hold_ms}ms" --timeout 20s
  helper_pids+=("$started_pid")
  # The JSON lines go to raw/; the copy is made when it has ended.
  echo "$idle_k $started_pid $el_ms" >>"$tmp/idle.list"
}

start_hostile() {
  hostile_k=$((hostile_k + 1))
  tick
  spawn "hostile$hostile_k" timeout 30 python3 "$report_py" hostile --port "$listen_port" \
    --slowloris 20 --out "$raw/hostile$hostile_k.json"
  helper_pids+=("$started_pid")
  event "$el_ms" "$el_ms" hostile "$hostile_k"
}

reap_helpers() {
  local kept=() pid
  for pid in "${helper_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kept+=("$pid")
    else
      wait "$pid" 2>/dev/null || true
      forget_pid "$pid"
    fi
  done
  helper_pids=("${kept[@]}")
}

wait_helpers() { # at most 40 s: every helper has its own time limit
  local deadline=$((SECONDS + 40)) pid
  while ((${#helper_pids[@]} > 0)) && ((SECONDS < deadline)); do
    sleep 0.05
    maybe_sample
    reap_helpers
  done
  for pid in "${helper_pids[@]}"; do
    log "helper $pid did not stop by itself: stopped"
    stop_started "$pid"
  done
  helper_pids=()
}

collect_idle_results() {
  local k pid at
  [[ -f $tmp/idle.list ]] || return 0
  while read -r k pid at; do
    {
      echo "{\"msg\":\"started\",\"at_s\":$(secs "$at"),\"connections\":$idle_connections,\"hold_s\":$(secs "$idle_hold_ms")}"
      cat "$tmp/idle$k.out"
    } >"$raw/idle$k.jsonl"
  done <"$tmp/idle.list"
}

# ---------------------------------------------------------------------------
# Reloads: each one writes the config with the other upstream list ("pool"
# with or without C), then SIGHUP, or every third one POST /reload; it counts
# as applied when /status shows the next generation with exactly that list
# (within 5 s). Every fourth slot first tries a config with an unknown key
# through POST /reload, which must be refused with the running config kept.

reload_k=0

record_reload() { # AT_MS KIND TRIGGER EXPECTED_GEN GEN APPLIED MS NOTE
  echo "$(secs "$1"),$reload_k,$2,$3,$4,$5,${pool_servers// /+},$6,$7,\"${8//\"/\'}\"" >>"$out_dir/reloads.csv"
}

# reload_now TRIGGER(sighup|post) GENERATION POOL_PORTS LAST_OK: sets result
# ("ok MS" or what went wrong); false unless /status shows it within 5 s.
reload_now() {
  local how=(--post)
  [[ $1 == sighup ]] && how=(--sighup "$sluice_pid")
  result=$(python3 "$report_py" reload --admin "$admin_port" "${how[@]}" --generation "$2" \
    --pool "$3" --last-ok "$4" --timeout 5 2>&1)
}

do_reload() {
  local trigger ports result="" t_ms
  reload_k=$((reload_k + 1))
  if ((reload_k % 4 == 0)); then
    write_config "$pool_servers" bad
    tick
    t_ms=$el_ms
    if reload_now post "$generation" "$pool_servers" false; then
      record_reload "$t_ms" refused post "$generation" "$generation" 1 "${result#ok }" "refused as expected"
    else
      record_reload "$t_ms" refused post "$generation" "?" 0 "" "$result"
      log "reload $reload_k: the bad config was not refused cleanly: $result"
    fi
    event "$t_ms" "$t_ms" reload-refused "$reload_k"
  fi
  [[ $pool_servers == "$pool_ab" ]] && ports=$pool_abc || ports=$pool_ab
  write_config "$ports"
  ((reload_k % 3 == 0)) && trigger=post || trigger=sighup
  tick
  t_ms=$el_ms
  if reload_now "$trigger" $((generation + 1)) "$ports" true; then
    generation=$((generation + 1))
    record_reload "$t_ms" applied "$trigger" "$generation" "$generation" 1 "${result#ok }" ""
  else
    record_reload "$t_ms" applied "$trigger" $((generation + 1)) "?" 0 "" "$result"
    log "reload $reload_k ($trigger) not in force: $result"
    # Whatever is in force now is the reference for the next one.
    generation=$(python3 "$report_py" wait-status --admin "$admin_port" --print-generation 2>/dev/null || echo "$generation")
  fi
  event "$t_ms" "$t_ms" reload "$reload_k $trigger"
}

# ---------------------------------------------------------------------------
# Outages

stop_origin() { # NAME
  local pid=${origin_pid[$1]}
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# The census of sluice's descriptors and memory at a quiet point: no load,
# no helper; waits until no client connection is left.
census() { # NAME
  python3 "$report_py" census --pid "$sluice_pid" --listen-port "$listen_port" \
    --admin-port "$admin_port" --timeout 15 --out "$out_dir/census-$1.json" ||
    log "census $1: not quiet within 15 s (see census-$1.json)"
}

# ---------------------------------------------------------------------------
# The run

log "origins A :${origin_port[A]}, B :${origin_port[B]}, C :${origin_port[C]}; sluice :$listen_port (admin :$admin_port), $workers workers"
log "$(secs "$duration_ms") s: warm-up $(secs "$warmup_ms") s, sample every $(secs "$sample_ms") s, reload every $(secs "$reload_ms") s, ${#out_start[@]} outages, ${#idle_at[@]} idle bursts of $idle_connections, ${#hostile_at[@]} hostile rounds; results in $out_dir"

bi=0 oi=0 ri=0 ii=0 hi=0
down_now=""
aborted=""
start_segment warmup "" "${bounds[0]}"
while :; do
  maybe_sample
  if ! sluice_alive; then
    aborted="sluice exited during the run"
    log "$aborted: $(tail -n 3 "$tmp/sluice.err" | tr '\n' ' ')"
    break
  fi
  if ((el_ms >= bounds[bi])); then
    finish_segment
    b=${bounds[$bi]}
    bi=$((bi + 1))
    if ((b == warmup_ms)); then
      wait_helpers
      census baseline
      sample baseline
      phase=run
      tick
      event "$warmup_ms" "$el_ms" quiet "baseline census"
    fi
    ((bi < ${#bounds[@]})) || break
    kind=normal down=""
    if ((oi < ${#out_start[@]} && b == out_start[oi])); then
      stop_origin "${out_name[$oi]}"
      down_now=${out_name[$oi]}
      log "origin ${out_name[$oi]} stopped ($(secs "$el_ms") s)"
      kind=outage down=$down_now
    fi
    start_segment "$kind" "$down" "${bounds[$bi]}"
  fi
  if [[ -n $down_now ]] && ((el_ms >= out_stop[oi])); then
    # Whether the health checks took it out ("pool" servers only).
    seen=$(python3 "$report_py" wait-status --admin "$admin_port" \
      --print-health "127.0.0.1:${origin_port[$down_now]}" 2>/dev/null || echo "?")
    if ! start_origin "$down_now" "${origin_port[$down_now]}"; then
      aborted="origin $down_now did not start again"
      break
    fi
    tick
    log "origin $down_now started again ($(secs "$el_ms") s)"
    event "${out_start[$oi]}" "${out_end[$oi]}" outage "$down_now down until $(secs "$el_ms") s; healthy in /status before the restart: $seen"
    down_now=""
    oi=$((oi + 1))
  fi
  if ((ri < ${#reload_at[@]})) && ((el_ms >= reload_at[ri])); then
    do_reload
    ri=$((ri + 1))
  fi
  if ((ii < ${#idle_at[@]})) && ((el_ms >= idle_at[ii])); then
    start_idle_burst
    ii=$((ii + 1))
  fi
  if ((hi < ${#hostile_at[@]})) && ((el_ms >= hostile_at[hi])); then
    start_hostile
    hi=$((hi + 1))
  fi
  reap_helpers
  sleep 0.05
done

if [[ -z $aborted ]]; then
  wait_helpers
  census end
  sample end
  curl -s --max-time 5 "$admin/metrics" >"$raw/metrics-end.txt" || true
  curl -s --max-time 5 "$admin/status" >"$raw/status-end.json" || true
  tick
  event "$duration_ms" "$el_ms" quiet "end census"
else
  for pid in "${seg_pids[@]}" "${helper_pids[@]}"; do stop_started "$pid"; done
  echo "$aborted" >"$out_dir/aborted.txt"
fi
collect_idle_results
cp "$config" "$raw/sluice-final.yaml"

# sluice's own exit: SIGTERM must end it with 0.
sluice_exit="not running at the end"
if sluice_alive; then
  kill -TERM "$sluice_pid"
  for ((i = 0; i < 200; i++)); do
    sluice_alive || break
    sleep 0.05
  done
  if sluice_alive; then
    sluice_exit="still running 10 s after SIGTERM"
    stop_pid "$sluice_pid"
  else
    sluice_exit=0
    wait "$sluice_pid" || sluice_exit=$?
  fi
fi
forget_pid "$sluice_pid"
echo "$sluice_exit" >"$raw/sluice-exit.txt"
grep -v '"type":"access"' "$tmp/sluice.out" | tail -n 2000 >"$raw/sluice-log.jsonl" || true
cp "$tmp/sluice.err" "$raw/sluice-stderr.txt" 2>/dev/null || true

verdict=0
python3 "$report_py" report "$out_dir" || verdict=$?
log "results in $out_dir (report.html, summary.md, samples.csv)"
exit $((verdict == 0 ? 0 : 1))

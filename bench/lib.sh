# shellcheck shell=bash
# bench/lib.sh: shell helpers shared by the bench scripts (compare.sh,
# soak.sh, profile.sh, metrics-overhead.sh, check-generator.sh). Sourced, not
# run:
#
#   script_name=compare
#   source "$repo/bench/lib.sh"
#
# script_name prefixes the script's messages and names its temp dir. Two
# more globals of the script are read where they are used: keep_tmp (1:
# keep $tmp on exit) and need_hint (what need suggests when a program is
# missing).
#
# Processes: start_run makes $tmp and sets the traps; spawn starts a
# process in the background with its output in $tmp; every process spawned
# is stopped on exit (SIGTERM, SIGKILL after 10 s) unless stop_started
# stopped it before.

# shellcheck disable=SC2154 # script_name: the sourcing script's
log() { printf '%s: %s\n' "$script_name" "$*" >&2; }

die_usage() {
  echo "$script_name: $*" >&2
  echo "run bench/$script_name.sh --help for usage" >&2
  exit 2
}

# shellcheck disable=SC2154 # need_hint: the sourcing script's
need() { # need NAME PATH: exit 2 unless PATH is an executable
  [[ -n $2 && -x $2 ]] || {
    echo "$script_name: $1 not found${2:+ at $2} ($need_hint)" >&2
    exit 2
  }
}

# Raises the soft descriptor limit as far as the hard one allows (65536 at most).
raise_nofile() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Processes

# start_run: the temp dir $tmp (sluice-SCRIPT_NAME.XXXXXX under TMPDIR), an
# empty started_pids, and the traps: on exit every process spawned is
# stopped and $tmp removed; a failed command is reported with its line.
start_run() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-$script_name.XXXXXX")
  started_pids=()
  trap cleanup EXIT
  trap 'echo "$script_name: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Stops one process: SIGTERM, SIGKILL after 10 s, then reaps it.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local pid
  for pid in "${started_pids[@]}"; do
    stop_pid "$pid"
  done
  if ((${keep_tmp:-0})); then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
}

# spawn NAME COMMAND...: starts COMMAND in the background with
# stdout/stderr in $tmp/NAME.out/.err; sets started_pid. The files are made
# before the fork: the background child opens them only when it runs, and a
# reader right after spawn (listening_port) must find them.
spawn() {
  local name=$1
  shift
  : >"$tmp/$name.out"
  : >"$tmp/$name.err"
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null &
  started_pid=$!
  started_pids+=("$started_pid")
}

# Forgets a stopped pid so cleanup does not signal a recycled one.
forget_pid() {
  local pid=$1 kept=() p
  for p in "${started_pids[@]}"; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  started_pids=("${kept[@]}")
}

stop_started() {
  stop_pid "$1"
  forget_pid "$1"
}

# The process and its children (nginx: master and worker).
tree_pids() {
  local pid=$1
  echo "$pid"
  pgrep -P "$pid" || true
}

# utime + stime of the process tree, in clock ticks.
cpu_ticks() {
  local total=0 pid t
  for pid in $(tree_pids "$1"); do
    # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
    t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# ---------------------------------------------------------------------------
# Ports and readiness

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

http_code() { # URL: the status code of a GET, 000 when nothing answered
  curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# wait_ready PID URL [SECONDS]: until URL answers 200 (true), or the process
# died or SECONDS (default 15) passed (false).
wait_ready() {
  local pid=$1 url=$2 deadline=$((SECONDS + ${3:-15}))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(http_code "$url") == 200 ]] && return 0
    sleep 0.05
  done
  return 1
}

# listening_port NAME PID: the port that a `sluice-bench origin --listen
# 127.0.0.1:0` spawned as NAME reports on its stdout; waits up to 10 s, less
# if PID exits first. Prints nothing when it reported none.
listening_port() {
  local name=$1 pid=$2 i port=""
  for ((i = 0; i < 200; i++)); do
    port=$(sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$tmp/$name.out" 2>/dev/null || true)
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$port"
}

# ---------------------------------------------------------------------------
# sluice

# write_sluice_config FILE PORT ADMIN_PORT ORIGIN_PORTS [CERT KEY]: the bench
# runs' sluice config: one worker, one listener on 127.0.0.1:PORT (TLS with
# CERT and KEY when given) sending everything to upstream "origin" with the
# servers 127.0.0.1:P for each P of ORIGIN_PORTS (space-separated), access
# log off, a 1 s shutdown grace, the admin listener on ADMIN_PORT.
write_sluice_config() {
  local file=$1 port=$2 admin=$3 ports=$4 cert=${5:-} key=${6:-} tls_block="" servers="" p
  if [[ -n $cert ]]; then
    tls_block="    tls:
      certificates:
        - cert_file: \"$cert\"
          key_file: \"$key\""
  fi
  for p in $ports; do
    servers+="      - address: \"127.0.0.1:$p\"
"
  done
  cat >"$file" <<EOF
workers: 1
listeners:
  - name: bench
    bind: "127.0.0.1:$port"
$tls_block
    routes:
      - match: { path_prefix: "/" }
        upstream: origin
upstreams:
  - name: origin
    servers:
$servers
access_log: { enabled: false }
timeouts: { shutdown_grace: "1s" }
admin: { bind: "127.0.0.1:$admin" }
EOF
  sed -i '/^$/d' "$file"
}

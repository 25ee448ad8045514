#!/bin/sh
# Runs sluice-bench load and wrk against the same URL with the same shape, one
# after the other, to check that the generator is not the bottleneck.
# usage: bench/compare.sh URL [CONNECTIONS] [THREADS] [DURATION_SECONDS]
# Environment: SLUICE_BENCH (default build/release/bench/sluice-bench), WRK (default wrk).
set -eu
url=${1:?usage: compare.sh URL [CONNECTIONS] [THREADS] [DURATION_SECONDS]}
connections=${2:-10}
threads=${3:-1}
seconds=${4:-5}
bench=${SLUICE_BENCH:-build/release/bench/sluice-bench}
wrk=${WRK:-wrk}

echo "== wrk -t$threads -c$connections -d${seconds}s $url"
"$wrk" -t"$threads" -c"$connections" -d"${seconds}s" --latency "$url"
echo
echo "== sluice-bench load --threads $threads --connections $connections --duration ${seconds}s $url"
"$bench" load "$url" --threads "$threads" --connections "$connections" --duration "${seconds}s"

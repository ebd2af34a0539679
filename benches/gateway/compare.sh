#!/usr/bin/env bash
# The gateway against its floor in one run, for a noisy machine: the floor (hyper +
# VerifySignatureLayer, hyper_floor.rs --mode layer) and each hookgate binary given (with and
# without deduplication) serve side by side in front of one nginx upstream, and the loads
# alternate between them, ROUNDS times; medians per target:
#
#   concurrency 1:  p50 latency (hookgate send), and the proxy's CPU time per request;
#   concurrency 16: the proxy's CPU time per request (all its threads, /proc/<pid>/task/*/schedstat).
#
# Usage: benches/gateway/compare.sh [NAME=HOOKGATE_BINARY ...]
#        (default: now=target/release/hookgate; needs nginx)
# COUNT (4000) deliveries per load, ROUNDS (5). PIN=1 runs the proxies on CPU 1 and the load
# generator and the upstream on CPU 0, so that they do not evict each other's caches.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/gateway/common.sh
COUNT=${COUNT:-4000}
ROUNDS=${ROUNDS:-5}
command -v nginx >/dev/null || { echo "nginx is needed: apt-get install nginx" >&2; exit 1; }
if [ $# -eq 0 ]; then
  cargo build --release --quiet --features cli --bin hookgate
  set -- "now=$PWD/target/release/hookgate"
fi
build_floor
SENDER=${1#*=}
WORK=$(mktemp -d /tmp/hookgate-compare.XXXXXX)
export ELEVENLABS_WEBHOOK_SECRET=perf-secret
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/upstream.pid" ] && kill "$(cat "$WORK/upstream.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UPSTREAM=127.0.0.1:18101
start_upstream "$WORK" "$UPSTREAM"
ON_PROXY_CPU=()
ON_OTHER_CPU=()
if [ "${PIN:-0}" = 1 ]; then
  ON_PROXY_CPU=(taskset -c 1)
  ON_OTHER_CPU=(taskset -c 0)
  sleep 0.2
  master=$(cat "$WORK/upstream.pid")
  for pid in "$master" $(pgrep -P "$master"); do taskset -a -p -c 0 "$pid" >/dev/null; done
fi

names=()
addrs=()
port=18110
start() { # name command...
  local name=$1
  shift
  "${ON_PROXY_CPU[@]}" "$@" 2>"$WORK/${name//\//-}.log" &
  pids+=($!)
  names+=("$name")
  addrs+=("127.0.0.1:$port")
  port=$((port + 1))
}
start floor "$FLOOR" --listen 127.0.0.1:$port --upstream $UPSTREAM --mode layer
for arg in "$@"; do
  name=${arg%%=*}
  binary=${arg#*=}
  for dedupe in no-dedupe dedupe; do
    flag=()
    [ $dedupe = no-dedupe ] && flag=(--no-dedupe)
    start "$name/$dedupe" "$binary" serve --listen 127.0.0.1:$port --upstream "http://$UPSTREAM/" \
      --client-rate 0 --workers 1 --max-connections-per-client 1000 --log-format json "${flag[@]}"
  done
done
sleep 1

# Nanoseconds on a CPU so far, summed over the process's threads (schedstat: exact, where
# /proc/<pid>/stat counts 10 ms ticks).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ n += $1 } END { printf "%.0f\n", n }'; }

# One load: "p50_µs cpu_ns_per_request".
load() { # index concurrency
  local before after p50
  before=$(cpu_ns "${pids[$1]}")
  p50=$("${ON_OTHER_CPU[@]}" "$SENDER" send --url "http://${addrs[$1]}/webhooks/elevenlabs" --count "$COUNT" \
    --concurrency "$2" --body-bytes 4096 2>&1 | grep -o 'p50 [0-9.]* [µm]s' |
    awk '{ v = $2; if ($3 == "ms") v *= 1000; print v }')
  after=$(cpu_ns "${pids[$1]}")
  echo "$p50 $(( (after - before) / COUNT ))"
}

for round in $(seq 1 "$ROUNDS"); do
  # Each round starts at another target: none always runs right after the same one.
  for k in "${!names[@]}"; do
    i=$(( (k + round) % ${#names[@]} ))
    load "$i" 1 >> "$WORK/c1.$i"
    load "$i" 16 >> "$WORK/c16.$i"
  done
  echo "round $round done" >&2
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-22s %10s %14s %15s %10s\n' target "c1 p50" "c1 CPU/req" "c16 CPU/req" "vs floor"
floor_cpu=
for i in "${!names[@]}"; do
  p50=$(awk '{print $1}' "$WORK/c1.$i" | median)
  c1cpu=$(awk '{print $2 / 1000}' "$WORK/c1.$i" | median)
  c16cpu=$(awk '{print $2 / 1000}' "$WORK/c16.$i" | median)
  [ -z "$floor_cpu" ] && floor_cpu=$c16cpu
  printf '%-22s %8s µs %11.1f µs %12.1f µs %9.2fx\n' "${names[$i]}" "$p50" "$c1cpu" "$c16cpu" \
    "$(echo "$c16cpu / $floor_cpu" | bc -l)"
done

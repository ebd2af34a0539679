#!/usr/bin/env bash
# The gateway's throughput with its state in memory against its state on Redis, in upstream
# mode (4 KiB events, `hookgate send` as the load generator, nginx as the upstream), at
# concurrency 1 and 16. Both gateways run the same layers: the per-client limit and the failure
# limiter (the load comes from 127.0.0.1, not a known sender, so both apply) and
# deduplication; only where their state lives differs. Each delivery costs the Redis gateway
# three round trips: the client check (the failure limiter's block read in the same script),
# the dedupe claim, and its completion.
#
# Usage: benches/gateway/state.sh [COUNT]    (needs nginx and redis-server)
# Everything listens on 127.0.0.1 only and stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/gateway/common.sh
COUNT=${1:-20000}
for tool in nginx redis-server redis-cli; do
  command -v $tool >/dev/null || { echo "$tool is needed (apt-get install nginx redis-server)" >&2; exit 1; }
done

cargo build --release --quiet --features cli --bin hookgate
HOOKGATE=$PWD/target/release/hookgate
WORK=$(mktemp -d /tmp/hookgate-state.XXXXXX)
export ELEVENLABS_WEBHOOK_SECRET=perf-secret
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/upstream.pid" ] && kill "$(cat "$WORK/upstream.pid")" 2>/dev/null || true
  [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UPSTREAM=127.0.0.1:18181
MEMORY_GATEWAY=127.0.0.1:18182
REDIS_GATEWAY=127.0.0.1:18183
REDIS_PORT=18184

start_upstream "$WORK" "$UPSTREAM"
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
  --daemonize yes --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
for _ in $(seq 50); do redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

# One worker each, as in run.sh: the other core runs the generator, the upstream and Redis.
common=(--upstream "http://$UPSTREAM/" --client-rate 1000000 --client-burst 1000000
  --max-failures-per-minute 30 --workers 1 --max-connections-per-client 1000 --log-format json)
"$HOOKGATE" serve --listen $MEMORY_GATEWAY "${common[@]}" 2>"$WORK/memory.log" & memory=$!
HOOKGATE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  "$HOOKGATE" serve --listen $REDIS_GATEWAY "${common[@]}" 2>"$WORK/redis-gateway.log" & redis=$!
pids+=("$memory" "$redis")
sleep 1

# CPU time (user + system, clock ticks) used so far by a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
REDIS_PID=$(cat "$WORK/redis.pid")

load() { # name url concurrency gateway-pid
  echo "### $1, concurrency $3"
  local gateway_before redis_before
  gateway_before=$(cpu_ticks "$4")
  redis_before=$(cpu_ticks "$REDIS_PID")
  "$HOOKGATE" send --url "$2" --count "$COUNT" --concurrency "$3" --body-bytes 4096 2>&1 |
    grep -v '^\s*$' | tail -8
  # Where the CPU goes: the gateway's own, and the Redis server's, per delivery.
  echo "gateway CPU: $(( ($(cpu_ticks "$4") - gateway_before) * TICK_US / COUNT )) µs/delivery," \
    "redis-server CPU: $(( ($(cpu_ticks "$REDIS_PID") - redis_before) * TICK_US / COUNT )) µs/delivery"
  echo
}

echo "## upstream mode, state in memory and on Redis ($COUNT events of 4 KiB each)"
for c in 1 16; do
  load "hookgate, state in memory" "http://$MEMORY_GATEWAY/webhooks/elevenlabs" $c $memory
  load "hookgate, state on Redis" "http://$REDIS_GATEWAY/webhooks/elevenlabs" $c $redis
done
echo "## Redis commands the Redis gateway sent"
redis-cli -p $REDIS_PORT info commandstats | grep -E 'cmdstat_(evalsha|eval|script)' || true
echo "deliveries: $((2 * COUNT))"

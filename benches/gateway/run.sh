#!/usr/bin/env bash
# Gateway performance on loopback, with `hookgate send` as the load generator (4 KiB events):
#
#   upstream mode: the same upstream reached directly, through nginx as a plain reverse proxy,
#                  through the floors (hyper_floor.rs: the gateway's HTTP stack with nothing in
#                  between, then with an HMAC of the body, then with VerifySignatureLayer) and
#                  through `hookgate serve --upstream` (which verifies as well; deduplicating,
#                  its default, and with --no-dedupe, like for like with the floors), at
#                  concurrency 1 and 16;
#   sink mode:     `hookgate serve` storing every event durably, at concurrency 1 and 64.
#
# Usage: benches/gateway/run.sh [COUNT]     (needs nginx: apt-get install nginx)
# Everything listens on 127.0.0.1 only and stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/gateway/common.sh
COUNT=${1:-20000}
SINK_COUNT=${SINK_COUNT:-3000}
command -v nginx >/dev/null || { echo "nginx is needed: apt-get install nginx" >&2; exit 1; }

# HOOKGATE and FLOOR name binaries already built (another revision's, say) instead.
build_binaries
WORK=$(mktemp -d /tmp/hookgate-perf.XXXXXX)
export ELEVENLABS_WEBHOOK_SECRET=perf-secret
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$WORK"/upstream.pid "$WORK"/proxy.pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UPSTREAM=127.0.0.1:18081   # nginx answering 200 to every POST: the handler stand-in (own process)
NGINX_PROXY=127.0.0.1:18082
GATEWAY=127.0.0.1:18083
SINK_GATEWAY=127.0.0.1:18084
FLOOR_PLAIN=127.0.0.1:18085
FLOOR_HMAC=127.0.0.1:18086
FLOOR_LAYER=127.0.0.1:18087
GATEWAY_NO_DEDUPE=127.0.0.1:18088

# Two nginx processes of one worker each: the upstream, and the reverse proxy in front of it
# (one process for both would proxy within one event loop, which flatters nginx).
nginx_conf() { # name server-block
  mkdir -p "$WORK/$1/logs"
  cat > "$WORK/$1.conf" <<NGINX
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/$1/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1/body;
  proxy_temp_path $WORK/$1/proxy;
  client_body_buffer_size 64k;
  keepalive_requests 1000000;
  $2
}
NGINX
  nginx -c "$WORK/$1.conf" -p "$WORK/$1"
}
nginx_conf upstream "server { listen $UPSTREAM; location / { return 200; } }"
nginx_conf proxy "upstream handler { server $UPSTREAM; keepalive 64; }
  server { listen $NGINX_PROXY; location / { proxy_pass http://handler; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

# One worker, like nginx: the other core runs the generator and the upstream.
"$HOOKGATE" serve --listen $GATEWAY --upstream "http://$UPSTREAM/" --client-rate 0 --workers 1 \
  --max-connections-per-client 1000 \
  --log-format json 2>"$WORK/gateway.log" & gateway=$!
"$HOOKGATE" serve --listen $GATEWAY_NO_DEDUPE --upstream "http://$UPSTREAM/" --client-rate 0 \
  --workers 1 --max-connections-per-client 1000 --no-dedupe \
  --log-format json 2>"$WORK/gateway-no-dedupe.log" & gateway_no_dedupe=$!
"$FLOOR" --listen $FLOOR_PLAIN --upstream $UPSTREAM --mode plain & floor_plain=$!
"$FLOOR" --listen $FLOOR_HMAC --upstream $UPSTREAM --mode hmac & floor_hmac=$!
"$FLOOR" --listen $FLOOR_LAYER --upstream $UPSTREAM --mode layer & floor_layer=$!
"$HOOKGATE" serve --listen $SINK_GATEWAY --sink-dir "$WORK/events" --client-rate 0 \
  --max-connections-per-client 1000 \
  --log-format json 2>"$WORK/sink.log" & sink=$!
pids+=("$gateway" "$gateway_no_dedupe" "$floor_plain" "$floor_hmac" "$floor_layer" "$sink")
sleep 1

# CPU time (user + system, clock ticks) used so far by a process and its children's threads.
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

load() { # name url concurrency count [proxy pid]
  echo "### $1, concurrency $3"
  local before=0
  [ -n "${5:-}" ] && before=$(cpu_ticks "$5")
  "$HOOKGATE" send --url "$2" --count "$4" --concurrency "$3" --body-bytes 4096 2>&1 | grep -v '^\s*$' | tail -8
  # The proxy's own CPU per request: what bounds its throughput when the cores are shared.
  [ -n "${5:-}" ] && echo "proxy CPU: $(( ($(cpu_ticks "$5") - before) * TICK_US / $4 )) µs/request"
  echo
}

echo "## upstream mode ($COUNT events of 4 KiB each)"
for c in 1 16; do
  load "direct to the upstream" "http://$UPSTREAM/webhooks/elevenlabs" $c "$COUNT"
  load "through nginx (1 worker)" "http://$NGINX_PROXY/webhooks/elevenlabs" $c "$COUNT" \
    "$(cat "$WORK/proxy.pid")"
  load "through hyper alone (floor)" "http://$FLOOR_PLAIN/webhooks/elevenlabs" $c "$COUNT" $floor_plain
  load "through hyper + HMAC of the body (floor)" "http://$FLOOR_HMAC/webhooks/elevenlabs" $c \
    "$COUNT" $floor_hmac
  load "through hyper + VerifySignatureLayer (floor)" "http://$FLOOR_LAYER/webhooks/elevenlabs" $c \
    "$COUNT" $floor_layer
  load "through hookgate --no-dedupe (verifying)" "http://$GATEWAY_NO_DEDUPE/webhooks/elevenlabs" \
    $c "$COUNT" $gateway_no_dedupe
  load "through hookgate (verifying, deduplicating)" "http://$GATEWAY/webhooks/elevenlabs" $c \
    "$COUNT" $gateway
done

echo "## sink mode ($SINK_COUNT events of 4 KiB each, write + fsync + link + directory fsync)"
for c in 1 64; do
  load "hookgate sink" "http://$SINK_GATEWAY/webhooks/elevenlabs" $c "$SINK_COUNT"
done

#!/usr/bin/env bash
# Instructions per request, counted by callgrind: immune to the noise of a shared machine.
#
# The floor (hyper_floor.rs --mode layer: hyper + VerifySignatureLayer) and the gateway
# (`hookgate serve --upstream`, one worker, with and without deduplication) each run under
# callgrind in front of the same nginx upstream; `hookgate send` (not under callgrind) warms
# each up, the counters are zeroed, COUNT deliveries of 4 KiB are sent, and the counters are
# dumped: instructions of the whole process (every thread) divided by COUNT.
#
# Usage: benches/gateway/instructions.sh [COUNT] [CONCURRENCY]
#        (needs nginx and valgrind: apt-get install nginx valgrind)
# KEEP=dir keeps the callgrind profiles there (callgrind_annotate --inclusive=yes FILE).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/gateway/common.sh
COUNT=${1:-2000}
CONCURRENCY=${2:-1}
command -v nginx >/dev/null || { echo "nginx is needed: apt-get install nginx" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }

build_binaries
WORK=$(mktemp -d /tmp/hookgate-instr.XXXXXX)
export ELEVENLABS_WEBHOOK_SECRET=perf-secret
cleanup() {
  [ -f "$WORK/upstream.pid" ] && kill "$(cat "$WORK/upstream.pid")" 2>/dev/null || true
  [ -n "${target:-}" ] && kill "$target" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UPSTREAM=127.0.0.1:18091
LISTEN=127.0.0.1:18092
start_upstream "$WORK" "$UPSTREAM"

send() { # count
  "$HOOKGATE" send --url "http://$LISTEN/webhooks/elevenlabs" --count "$1" \
    --concurrency "$CONCURRENCY" --body-bytes 4096 >/dev/null 2>&1
}

measure() { # name command...
  local name=$1 out=$WORK/callgrind.$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$out.%p" "$@" 2>"$WORK/$name.valgrind" &
  target=$!
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://$LISTEN/" && break
    sleep 0.2
  done
  send 200
  callgrind_control -z "$target" >/dev/null
  send "$COUNT"
  callgrind_control -d "$target" >/dev/null
  kill "$target"
  wait "$target" 2>/dev/null || true
  target=
  # The dump after zeroing (the one with the highest part number).
  local file ir
  file=$(ls "$out".*.* 2>/dev/null | sort -t. -k4 -n | tail -1)
  ir=$(grep -m1 '^summary:' "$file" | awk '{print $2}')
  [ -z "$ir" ] && ir=$(grep -m1 '^totals:' "$file" | awk '{print $2}')
  printf '%-28s %8d instructions/request\n' "$name" $((ir / COUNT))
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$file" "$KEEP/callgrind.$name"; fi
}

echo "## instructions per request ($COUNT deliveries of 4 KiB, concurrency $CONCURRENCY)"
measure floor-layer "$FLOOR" --listen $LISTEN --upstream $UPSTREAM --mode layer
measure gateway-no-dedupe "$HOOKGATE" serve --listen $LISTEN --upstream "http://$UPSTREAM/" \
  --client-rate 0 --workers 1 --max-connections-per-client 1000 --no-dedupe --log-format json
measure gateway "$HOOKGATE" serve --listen $LISTEN --upstream "http://$UPSTREAM/" \
  --client-rate 0 --workers 1 --max-connections-per-client 1000 --log-format json

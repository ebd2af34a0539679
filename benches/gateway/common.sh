# What the gateway benchmarks share; sourced by run.sh, state.sh, compare.sh and
# instructions.sh (from the repository's root), never run by itself.

# Sets HOOKGATE (the gateway binary) and FLOOR (benches/gateway/hyper_floor.rs), building each
# in release unless it names a binary already built (another revision's, say).
build_binaries() {
  HOOKGATE=${HOOKGATE:-}
  if [ -z "$HOOKGATE" ]; then
    cargo build --release --quiet --features cli --bin hookgate
    HOOKGATE=$PWD/target/release/hookgate
  fi
  build_floor
}

# Sets FLOOR, building it unless set.
build_floor() {
  FLOOR=${FLOOR:-}
  if [ -z "$FLOOR" ]; then
    FLOOR=$(cargo bench --features cli --bench hyper_floor --no-run 2>&1 |
      grep -o 'target/release/deps/hyper_floor-[0-9a-f]*' | head -1)
  fi
}

# start_upstream WORK ADDR: one nginx worker at ADDR answering 200 to every request, the
# handler's stand-in in a process of its own; its files under WORK/upstream, its pid in
# WORK/upstream.pid.
start_upstream() {
  local work=$1 addr=$2
  mkdir -p "$work/upstream/logs"
  cat > "$work/upstream.conf" <<NGINX
worker_processes 1;
pid $work/upstream.pid;
error_log $work/upstream/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/upstream/body;
  client_body_buffer_size 64k;
  keepalive_requests 1000000;
  server { listen $addr; location / { return 200; } }
}
NGINX
  nginx -c "$work/upstream.conf" -p "$work/upstream"
}

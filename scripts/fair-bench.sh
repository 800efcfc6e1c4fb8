#!/usr/bin/env bash
# The fair benchmark of batch against HTTP/1.1 and HTTP/2 (examples/fair_bench.rs), directly
# and behind a real nginx, at added round-trip times of 0, 10 and 50 ms; then the plot.
#
# Usage: scripts/fair-bench.sh [fair_bench options, e.g. --rounds 3 --round-secs 0.5]
#   FAIR_BENCH_PLOT=0   skip the plot (and so the Python virtualenv for matplotlib)
#
# Installs what is missing (nginx from Debian through scripts/system-deps.sh; matplotlib into
# target/plotvenv), builds the example in release mode, writes a throwaway nginx configuration
# under target/fair-bench/nginx, starts nginx on two loopback ports (HTTP/1.1, and h2c with
# prior knowledge) in front of the farm that the program serves, runs the program, and stops
# nginx by its process id on exit, however the script ends. The table goes to stdout and to
# target/fair-bench/table.md, the figures to target/fair-bench/*.csv and the plot to
# docs/fair-bench.png.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/fair-bench"
CONF_DIR="$OUT/nginx"
PID_FILE="$CONF_DIR/nginx.pid"
# The whole measurement stops by itself; this is the bound should anything hang.
RUN_DEADLINE=1800

if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  "$ROOT/scripts/system-deps.sh" nginx
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

stop_nginx() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid
  pid="$(cat "$PID_FILE")"
  [[ -n "$pid" ]] || return 0
  kill -QUIT "$pid" 2>/dev/null || return 0
  # A graceful stop waits for open connections; past 5 s it is not graceful any more.
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}
trap stop_nginx EXIT

echo "building the benchmark" >&2
(cd "$ROOT" && cargo build --release --example fair_bench >&2)
BENCH="$ROOT/target/release/examples/fair_bench"

mapfile -t PORTS < <("$BENCH" --free-ports 3)
FARM_PORT="${PORTS[0]}"
H1_PORT="${PORTS[1]}"
H2_PORT="${PORTS[2]}"

# nginx 1.25.1 and later switch HTTP/2 on with `http2 on;`; older ones with `listen ... http2`.
VERSION="$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')"
if [[ "$(printf '%s\n' 1.25.1 "$VERSION" | sort -V | head -n1)" == 1.25.1 ]]; then
  H2_LISTEN="listen 127.0.0.1:$H2_PORT;
    http2 on;"
else
  H2_LISTEN="listen 127.0.0.1:$H2_PORT http2;"
fi
# As root, nginx's workers drop to an unprivileged user; name one that exists here.
USER_LINE=""
if [[ "$(id -u)" -eq 0 ]]; then
  USER_LINE="user nobody $(getent group nogroup >/dev/null && echo nogroup || echo nobody);"
fi

stop_nginx
rm -rf "$CONF_DIR"
mkdir -p "$CONF_DIR/temp"
# The proxy as the README's section on proxies has it: read timeouts above the batch's
# (`batch_timeout`, 60 s), the port kept in `Host`; and for the batch route, no buffering either
# way, so the answers stream as they are made and a batch of the layer's size limit (16 MiB)
# passes. Upstream connections are HTTP/1.1 and kept alive, enough of them for 100 concurrent
# HTTP/2 streams.
cat >"$CONF_DIR/nginx.conf" <<EOF
$USER_LINE
worker_processes auto;
pid $PID_FILE;
error_log $CONF_DIR/error.log warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    client_body_temp_path $CONF_DIR/temp/body;
    proxy_temp_path $CONF_DIR/temp/proxy;
    fastcgi_temp_path $CONF_DIR/temp/fastcgi;
    uwsgi_temp_path $CONF_DIR/temp/uwsgi;
    scgi_temp_path $CONF_DIR/temp/scgi;
    # Far more requests per connection than a run makes: nginx closes a connection after
    # `keepalive_requests` (1000 by default), which would measure reconnecting.
    keepalive_requests 10000000;
    http2_max_concurrent_streams 128;

    upstream farm {
        server 127.0.0.1:$FARM_PORT;
        keepalive 128;
        keepalive_requests 10000000;
    }

    map \$http_host \$farm_host {
        "" \$host;
        default \$http_host;
    }

    server {
        listen 127.0.0.1:$H1_PORT;
        include $CONF_DIR/locations.conf;
    }
    server {
        $H2_LISTEN
        include $CONF_DIR/locations.conf;
    }
}
EOF
cat >"$CONF_DIR/locations.conf" <<EOF
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_set_header Host \$farm_host;
proxy_read_timeout 90s;
proxy_send_timeout 90s;

location /batch/ {
    proxy_pass http://farm;
    proxy_buffering off;
    proxy_request_buffering off;
    client_max_body_size 16m;
}
location / {
    proxy_pass http://farm;
}
EOF

"$NGINX" -t -q -p "$CONF_DIR" -c "$CONF_DIR/nginx.conf" -e "$CONF_DIR/error.log"
# Without `daemon off`, nginx forks into the background and writes its pid file.
"$NGINX" -p "$CONF_DIR" -c "$CONF_DIR/nginx.conf" -e "$CONF_DIR/error.log"
for _ in $(seq 100); do
  [[ -s "$PID_FILE" ]] && break
  sleep 0.1
done
if [[ ! -s "$PID_FILE" ]]; then
  echo "nginx did not start within 10 s; see $CONF_DIR/error.log" >&2
  exit 1
fi

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(rustc --version); nginx $VERSION"
timeout --kill-after=10 "$RUN_DEADLINE" "$BENCH" \
  --farm-port "$FARM_PORT" \
  --nginx-h1 "127.0.0.1:$H1_PORT" \
  --nginx-h2 "127.0.0.1:$H2_PORT" \
  --proxy-label "nginx $VERSION" \
  --out "$OUT" \
  "$@" | tee "$OUT/table.md"

stop_nginx

if [[ "${FAIR_BENCH_PLOT:-1}" != 0 ]]; then
  VENV="$ROOT/target/plotvenv"
  MATPLOTLIB="matplotlib==3.11.2"
  if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    # Debian's python3 makes no venv without its python3-venv package (ensurepip).
    if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      "$ROOT/scripts/system-deps.sh" python
    fi
    echo "installing $MATPLOTLIB into $VENV" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$MATPLOTLIB" >&2
  fi
  "$VENV/bin/python" "$ROOT/scripts/fair_bench_plot.py" "$OUT/results.csv" "$ROOT/docs/fair-bench.png"
fi

#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests: a new cluster in DIR (made with initdb),
# listening on 127.0.0.1:PORT only, trusting local connections as user `postgres`. Installs
# Debian's `postgresql` package first when the server is missing (scripts/system-deps.sh).
#
# Usage: scripts/postgres.sh DIR PORT [WATCH_PID]
#
# Prints the server's process id on stdout once it accepts connections. With WATCH_PID, a
# watcher stops the server (by its process id) and removes DIR when that process ends, so a
# test binary that dies leaves nothing running. PostgreSQL refuses to run as root: as root, the
# cluster belongs to the package's `postgres` user and the server runs as that user.
# Exit status: 0 started; 1 it could not be started here, with the reason on stderr.
set -euo pipefail

dir=${1:?usage: $0 DIR PORT [WATCH_PID]}
port=${2:?usage: $0 DIR PORT [WATCH_PID]}
watch=${3:-}
here=$(cd "$(dirname "$0")" && pwd)

find_bin() {
  if command -v initdb >/dev/null && command -v postgres >/dev/null && command -v pg_ctl >/dev/null; then
    bin=$(dirname "$(command -v initdb)")
    return 0
  fi
  local d
  # Debian keeps the server's programs out of PATH, one directory per major version.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/postgres" && -x "$d/pg_ctl" ]]; then
      bin=$d
      return 0
    fi
  done
  return 1
}

if ! find_bin; then
  "$here/system-deps.sh" postgres
  find_bin || { echo "PostgreSQL's server programs are not on this machine" >&2; exit 1; }
fi

rm -rf "$dir"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [[ "$(id -u)" -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || { echo "there is no postgres user to run the server as" >&2; exit 1; }
  chown postgres: "$dir"
  as=(runuser -u postgres --)
  if ! "${as[@]}" test -w "$dir"; then
    echo "the postgres user cannot reach $dir (a parent directory is closed to it)" >&2
    exit 1
  fi
else
  as=()
fi

"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
# Sockets in the cluster's own directory: no writes to /var/run/postgresql.
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $port -k $dir/data -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >"$dir/pg_ctl.log" 2>&1 || { cat "$dir/pg_ctl.log" "$dir/server.log" >&2; exit 1; }
pid=$(head -n 1 "$dir/data/postmaster.pid")

if [[ -n "$watch" ]]; then
  # Fast shutdown (SIGINT) when the watched process ends; then the files go.
  # The pid file names the server only while it runs: a stopped server's pid is not signalled.
  nohup bash -c "while kill -0 $watch 2>/dev/null; do sleep 0.5; done
    if [[ \"\$(head -n 1 '$dir/data/postmaster.pid' 2>/dev/null)\" == $pid ]]; then kill -INT $pid; fi
    while kill -0 $pid 2>/dev/null; do sleep 0.2; done; rm -rf '$dir'" \
    >/dev/null 2>&1 </dev/null &
fi
echo "$pid"

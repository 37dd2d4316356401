#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the shared-study tests, and print the URL to use.
#
# Usage: url=$(bash .ci/postgres.sh DATA_DIR) prints `postgresql://...` on success and nothing on failure
# (no apt, no server package, a server that will not start): the PostgreSQL tests then skip with a
# reason and the rest of CI goes on. DATA_DIR is a new folder in a place every user may enter (/tmp),
# since the server runs as the `postgres` user. `bash .ci/postgres.sh --stop DATA_DIR` stops it.
set -uo pipefail
log() { echo "postgres: $*" >&2; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_owner=()
[ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && as_owner=(runuser -u postgres --)
if [ "${1:-}" = --stop ]; then
    [ -f "$2/db/postmaster.pid" ] && "${as_owner[@]}" "$(bindir)/pg_ctl" -D "$2/db" -m fast stop >/dev/null 2>&1
    exit 0
fi
data="$1"

if [ -z "$(bindir)" ] && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing the server from Debian packages"
        timeout 600 apt-get update -qq >&2 && \
            DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq postgresql >&2 || log "apt-get failed"
    else
        log "no server installed and no apt-get as root to install one"
    fi
fi
bin="$(bindir)"
bin="${bin:-$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")}"
if [ ! -x "$bin/initdb" ]; then log "no initdb found; skipping"; exit 0; fi

# The server refuses to run as root: it runs as the `postgres` user the Debian package creates.
if [ "$(id -u)" = 0 ] && [ ${#as_owner[@]} = 0 ]; then log "running as root without a postgres user; skipping"; exit 0; fi
port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$data" && chmod 700 "$data"
[ "$(id -u)" = 0 ] && chown postgres: "$data"
"${as_owner[@]}" "$bin/initdb" -D "$data/db" -U postgres -A trust >/dev/null 2>&1 || { log "initdb failed"; exit 0; }
"${as_owner[@]}" "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data" start >/dev/null 2>&1 \
    || { log "the server did not start (see $data/server.log)"; exit 0; }
"${as_owner[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres optuna_test >/dev/null 2>&1 \
    || { log "createdb failed"; exit 0; }
echo "postgresql://postgres@127.0.0.1:$port/optuna_test"

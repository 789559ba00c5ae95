#!/usr/bin/env bash
# pg-stop.sh DIR — stop the PostgreSQL server started by pg-start.sh DIR
# (pg_ctl stop -m fast; falls back to -m immediate). Safe to call twice, and
# on a DIR where nothing was ever started. Leaves DIR/data in place, so
# pg-start.sh DIR can start the same cluster again; delete DIR to start over.
set -euo pipefail

TESTENV_NAME="pg-stop"
# shellcheck source=scripts/testenv/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

DIR="$(testenv_dir "$@")"

pidfile="$DIR/data/postmaster.pid"
if [[ ! -f "$pidfile" ]]; then
    log "no server running for $DIR"
    exit 0
fi
pid="$(head -n 1 "$pidfile")"
if ! pid_alive "$pid"; then
    log "server of $DIR is not running (stale pid file)"
    exit 0
fi

if ! runuser -u "$PG_USER_OS" -- "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w -t 15 stop >/dev/null 2>&1; then
    log "fast shutdown did not finish, using immediate"
    runuser -u "$PG_USER_OS" -- "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
fi
if pid_alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
fi
pid_alive "$pid" && die "postgres (pid $pid) of $DIR is still running"
log "stopped server of $DIR"

#!/usr/bin/env bash
# pg-start.sh DIR — start a private PostgreSQL 15 server for tests.
#
#   data dir     DIR/data          (owned by the unprivileged user accordtest)
#   socket dir   DIR/sock
#   log          DIR/log/postgresql.log
#   listens on   127.0.0.1:<free port>, trust auth (local + 127.0.0.1), superuser role postgres
#   databases    anaconda_workspace (sessions), anaconda_deploy (deployments,
#                deployment_endpoints -> deployments), anaconda_repository
#                (channels, packages), anaconda_storage (projects)
#
# Prints KEY=VALUE lines on stdout (the same as DIR/env):
#   PGHOST=127.0.0.1  PGPORT=<port>  PGUSER=postgres  PGDATABASE=postgres
#   PGSOCKDIR=DIR/sock  PGBIN=/usr/lib/postgresql/15/bin  PGDATA=DIR/data
# Diagnostics go to stderr. Run as root. If the server of DIR is already
# running it just prints the env again; if DIR/data exists it restarts that
# cluster (no reseeding) or fails clearly. Stop with pg-stop.sh DIR.
set -euo pipefail

TESTENV_NAME="pg-start"
# shellcheck source=scripts/testenv/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

DIR="$(testenv_dir "$@")"
check_plain_path "$DIR"

if [[ ! -x "$PGBIN/postgres" ]]; then
    apt_install postgresql-15 postgresql-client-15
    [[ -x "$PGBIN/postgres" ]] || die "no PostgreSQL server binaries in $PGBIN"
fi

# The unix socket path (DIR/sock/.s.PGSQL.NNNNN) must fit in sun_path (107 bytes).
(( ${#DIR} + 23 <= 107 )) || die "DIR path too long for a unix socket ($DIR); use a shorter path"

ensure_user "$PG_USER_OS" system
mkdir -p -- "$DIR"
chmod 0755 -- "$DIR"
make_traversable "$DIR" "$PG_USER_OS"
mkdir -p -- "$DIR/sock" "$DIR/log"
chown "$PG_USER_OS:" "$DIR/sock" "$DIR/log"
chmod 0755 -- "$DIR/sock" "$DIR/log"

as_pg() { runuser -u "$PG_USER_OS" -- "$@"; }

write_env() {
    local port="$1"
    cat > "$DIR/env.tmp" <<EOF
PGHOST=127.0.0.1
PGPORT=$port
PGUSER=postgres
PGDATABASE=postgres
PGSOCKDIR=$DIR/sock
PGBIN=$PGBIN
PGDATA=$DIR/data
EOF
    chmod 0644 "$DIR/env.tmp"
    mv -f "$DIR/env.tmp" "$DIR/env"
}

running_port() {
    # Port of a running server of this data dir, or nothing.
    if [[ -f "$DIR/data/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        sed -n 4p "$DIR/data/postmaster.pid"
    fi
}

# --- already running? -------------------------------------------------------
port="$(running_port || true)"
if [[ -n "$port" ]]; then
    log "server of $DIR/data already running on port $port"
    write_env "$port"
    cat "$DIR/env"
    exit 0
fi

# --- initdb (first time) -----------------------------------------------------
fresh=0
if [[ ! -e "$DIR/data" ]]; then
    fresh=1
    mkdir -m 0700 -- "$DIR/data"
    chown "$PG_USER_OS:" "$DIR/data"
    log "initdb $DIR/data"
    as_pg "$PGBIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        --no-instructions >"$DIR/log/initdb.log" 2>&1 \
        || { cat "$DIR/log/initdb.log" >&2; die "initdb failed (log above)"; }
    cat > "$DIR/data/pg_hba.conf" <<'EOF'
# accord test server: trust for local socket and 127.0.0.1 only
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
EOF
    chown "$PG_USER_OS:" "$DIR/data/pg_hba.conf"
    cat >> "$DIR/data/postgresql.conf" <<EOF

# --- accord test server (scripts/testenv/pg-start.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/sock'
max_connections = 30
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
include_if_exists = 'accord_port.conf'
EOF
elif [[ ! -f "$DIR/data/PG_VERSION" ]]; then
    die "$DIR/data exists but is not a PostgreSQL data directory; remove it or use another DIR"
fi

# --- start, retrying on a port race -------------------------------------------
prev_port=""
[[ -f "$DIR/data/accord_port.conf" ]] && prev_port="$(sed -n 's/^port = \([0-9]*\).*/\1/p' "$DIR/data/accord_port.conf")"
# A stale postmaster.pid from a killed server is removed by postgres itself
# when its PID is gone; nothing to do here.
started=0
for attempt in 1 2 3 4; do
    if [[ $attempt -eq 1 && -n "$prev_port" ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$prev_port") 2>/dev/null; then
        port="$prev_port"
    else
        port="$(free_port)"
    fi
    echo "port = $port" > "$DIR/data/accord_port.conf"
    chown "$PG_USER_OS:" "$DIR/data/accord_port.conf"
    log "starting postgres on 127.0.0.1:$port (attempt $attempt)"
    if as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log/postgresql.log" -w -t 15 start >/dev/null 2>&1; then
        started=1
        break
    fi
    # Only retry when the failure was a port clash.
    if ! tail -n 20 "$DIR/log/postgresql.log" 2>/dev/null | grep -q 'could not bind\|Address already in use'; then
        break
    fi
done
if [[ $started -ne 1 ]]; then
    tail -n 20 "$DIR/log/postgresql.log" >&2 || true
    die "PostgreSQL in $DIR/data did not start (log tail above, full log $DIR/log/postgresql.log)"
fi

export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres
"$PGBIN/pg_isready" -q -t 10 || die "server started but pg_isready fails on 127.0.0.1:$port"

# --- seed the AE5-like databases (first time only) ------------------------------
psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@" >/dev/null; }
if [[ $fresh -eq 1 ]]; then
    log "creating AE5-like databases"
    for db in anaconda_workspace anaconda_deploy anaconda_repository anaconda_storage; do
        psql_q -d postgres -c "CREATE DATABASE $db"
    done
    psql_q -d anaconda_workspace <<'SQL'
CREATE TABLE sessions (
    id          text PRIMARY KEY,
    owner       text NOT NULL,
    project_id  text NOT NULL,
    editor      text NOT NULL,
    state       text NOT NULL,
    created     timestamptz NOT NULL
);
INSERT INTO sessions VALUES
    ('a0c3e1f2b4', 'alice', 'p-7f1a', 'jupyterlab', 'running', '2023-03-01 10:00:00+00'),
    ('b1d4f2a3c5', 'bob',   'p-8e2b', 'notebook',   'running', '2023-03-02 11:30:00+00'),
    ('c2e5a3b4d6', 'alice', 'p-9d3c', 'vscode',     'stopped', '2023-03-03 09:15:00+00');
CREATE TABLE projects (
    id    text PRIMARY KEY,
    name  text NOT NULL,
    owner text NOT NULL
);
INSERT INTO projects VALUES
    ('p-7f1a', 'churn-model', 'alice'),
    ('p-8e2b', 'etl-jobs', 'bob'),
    ('p-9d3c', 'dashboards', 'alice');
SQL
    psql_q -d anaconda_deploy <<'SQL'
CREATE TABLE deployments (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    owner       text NOT NULL,
    project_id  text NOT NULL,
    url         text NOT NULL,
    state       text NOT NULL
);
INSERT INTO deployments VALUES
    ('123', 'churn-api',  'alice', 'p-7f1a', 'https://churn-api.ae5.example.com',  'started'),
    ('124', 'etl-status', 'bob',   'p-8e2b', 'https://etl-status.ae5.example.com', 'started');
-- A referencing table so that "truncate deployments cascade" has something to cascade to.
CREATE TABLE deployment_tokens (
    token          text PRIMARY KEY,
    deployment_id  text NOT NULL REFERENCES deployments(id)
);
INSERT INTO deployment_tokens VALUES ('tok-1', '123'), ('tok-2', '124');
SQL
    psql_q -d anaconda_repository <<'SQL'
CREATE TABLE channels (
    id    serial PRIMARY KEY,
    name  text UNIQUE NOT NULL,
    owner text NOT NULL
);
INSERT INTO channels (name, owner) VALUES ('anaconda-enterprise', 'admin'), ('alice-private', 'alice');
CREATE TABLE packages (
    id          serial PRIMARY KEY,
    channel_id  integer NOT NULL REFERENCES channels(id),
    name        text NOT NULL,
    version     text NOT NULL,
    filename    text NOT NULL,
    sha256      text NOT NULL
);
INSERT INTO packages (channel_id, name, version, filename, sha256) VALUES
    (1, 'numpy',  '1.24.3', 'linux-64/numpy-1.24.3-py311h08b1b3b_1.conda',  repeat('a', 64)),
    (1, 'pandas', '2.0.3',  'linux-64/pandas-2.0.3-py311ha02d727_0.conda',  repeat('b', 64)),
    (2, 'mylib',  '0.1.0',  'noarch/mylib-0.1.0-py_0.tar.bz2',              repeat('c', 64));
SQL
    psql_q -d anaconda_storage <<'SQL'
CREATE TABLE objects (
    key     text PRIMARY KEY,
    bucket  text NOT NULL,
    size    bigint NOT NULL
);
INSERT INTO objects VALUES
    ('projects/p-7f1a/archive.tar.gz', 'anaconda-projects', 10240),
    ('objects/logo.png',               'anaconda-objects',  2048);
SQL
fi

write_env "$port"
log "ready: 127.0.0.1:$port, socket dir $DIR/sock, data $DIR/data"
cat "$DIR/env"

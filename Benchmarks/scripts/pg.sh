# Throwaway PostgreSQL for the benchmarks, shared by compare.sh and sync-bench.sh.
# Sourced, not run. Expects: PGROOT PGDATA_DIR PGSOCK PG_USER PG_BIN PY LOGS CORPUS PGSCALE,
# and `die` and `say` functions (pg_change_day2 also ACCOUNTS and NUPD). Sets PG_RUNNING.
# install_needed PKG...: apt-get install what the caller found missing (nothing given: nothing done).
install_needed() {
    [ $# -gt 0 ] || return 0
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
}
# pg_find_bin: PG_BIN of the newest PostgreSQL present when 15's is absent; PG_USER must exist.
pg_find_bin() {
    if [ ! -x "$PG_BIN/initdb" ]; then
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
        [ -x "$PG_BIN/initdb" ] || die "no PostgreSQL server binaries found (set PG_BIN)"
    fi
    id "$PG_USER" >/dev/null 2>&1 || die "user $PG_USER does not exist (set PG_USER)"
}
# make_day1_corpus: the day-1 corpus (needs SCALE SCRIPTS too): a pgbench database of
# PGSCALE dumped into db/, then corpus.py's small files, CSVs, binaries and YAML.
make_day1_corpus() {
    say "generating corpus at scale $SCALE in $CORPUS (pgbench scale $PGSCALE)"
    pg_init
    pg_start
    "$PG_BIN/createdb" bench 2>/dev/null || true
    "$PG_BIN/pgbench" -i -q -s "$PGSCALE" bench >"$LOGS/pgbench-init.log" 2>&1 ||
        { tail "$LOGS/pgbench-init.log" >&2; die "pgbench -i failed"; }
    pg_dump_to_corpus 1
    pg_stop
    "$PY" "$SCRIPTS/corpus.py" gen --root "$CORPUS" --scale "$SCALE"
}
as_pg() { (cd "$PGROOT" && runuser -u "$PG_USER" -- env HOME="$PGROOT" "$@"); }
pg_start() {
    PGPORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    export PGHOST=$PGSOCK PGPORT PGUSER=bench PGDATABASE=bench
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGROOT/server.log" -w -s \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGSOCK -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off -c autovacuum=off -c shared_buffers=128MB -c max_wal_size=2GB" start
    PG_RUNNING=1
}
pg_stop() {
    if [ "$PG_RUNNING" = 1 ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -s stop || true
        PG_RUNNING=0
    fi
}
pg_init() {
    mkdir -p "$PGDATA_DIR" "$PGSOCK"
    chown -R "$PG_USER" "$PGROOT"
    chmod 700 "$PGDATA_DIR"
    runuser -u "$PG_USER" -- test -w "$PGDATA_DIR" ||
        die "$PG_USER cannot reach $PGDATA_DIR (every parent of BENCH_DIR must be world-searchable)"
    as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U bench --auth=trust --locale=C -E UTF8 --no-sync \
        >"$LOGS/initdb.log" 2>&1 || { cat "$LOGS/initdb.log" >&2; die "initdb failed"; }
}
pg_dump_to_corpus() {  # pg_dump_to_corpus DAY
    # pg_dump >= 15.14 writes a random \restrict key; fix it per day so runs are reproducible
    # (it still differs between day 1 and day 2, as real daily dumps do).
    local -a rk=()
    case "$("$PG_BIN/pg_dump" --help)" in *--restrict-key*) rk=(--restrict-key="accordbenchday${1}key") ;; esac
    mkdir -p "$CORPUS/db"
    "$PG_BIN/pg_dump" -Fp "${rk[@]}" -f "$BENCH_DIR/tmp/pgdump.sql" bench
    mv "$BENCH_DIR/tmp/pgdump.sql" "$CORPUS/db/pgdump.sql"
}

# The day-2 change both benchmarks measure: NUPD scattered pgbench_accounts rows
# updated (seeded, so every run changes the same rows), a few tellers and
# branches, one history row per update; then the dump in the corpus is redone.
pg_change_day2() {
    pg_start
    "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 >"$LOGS/day2-sql.log" 2>&1 <<SQL || { tail "$LOGS/day2-sql.log" >&2; die "day-2 SQL failed"; }
SELECT setseed(0.4242);
CREATE TEMP TABLE pick AS
  SELECT DISTINCT 1 + floor(random() * $ACCOUNTS)::int AS aid FROM generate_series(1, $NUPD) ORDER BY 1;
UPDATE pgbench_accounts a SET abalance = a.abalance + (p.aid % 97) - 48 FROM pick p WHERE a.aid = p.aid;
UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid % 7 = 3;
UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid % 5 = 2;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
  SELECT 1 + aid % ($PGSCALE * 10), 1 + (aid - 1) / 100000, aid, (aid % 97) - 48,
         timestamp '2024-05-02 03:04:05' + aid * interval '1 millisecond'
  FROM pick;
SQL
    pg_dump_to_corpus 2
    pg_stop
}

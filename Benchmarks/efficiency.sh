#!/usr/bin/env bash
# Data efficiency benchmark of issue 17: the bytes Accord, restic and rsync store and send for an
# AE5-like corpus and one day of change, in one run.
#
# Usage:
#   Benchmarks/efficiency.sh                  # the issue's sizes (pgbench scale 40, ~1 GB corpus)
#   SCALE=small Benchmarks/efficiency.sh      # the same at 1/20 (a few minutes)
#   nice -n 10 Benchmarks/efficiency.sh       # on a shared machine
#
# Environment:
#   ACCORD     accord binary (default <repo>/.build/release/accord: `make release`)
#   BENCH_DIR  work dir (default /tmp/accord-efficiency); its subdirs are wiped at the start
#   SCALE      full (default: the issue's sizes), small (factor 0.05), or a factor such as 0.2
#   PG_BIN     PostgreSQL binaries (default /usr/lib/postgresql/15/bin); PG_USER runs it (nobody)
#   KEEP       1 (default): keep corpus, repositories and DR copies; 0 deletes them at the end
#   CHUNKER_SEED  chunkerSeed of the plain repositories (default 2544cfe684ebf9e2, as sync-bench.sh;
#              `random` keeps init's). An encrypted repository's gear table comes from its random
#              key, so its cut points, and with them its figures, change from run to run (the
#              dump above all: pgbench rows repeat, and where the cuts fall decides what dedups)
#
# Corpus (Benchmarks/efficiency_corpus.py, fixed seeds): db/pgdump.sql, a plain pg_dump of a
# pgbench database (scale 40 × factor) plus a `notes` table (~63 MB × factor of prose rows: ~453 MB
# of dump at factor 1) in a throwaway PostgreSQL cluster in BENCH_DIR/pg (unix socket, 127.0.0.1
# only); 25,000 small source-like files; 246 MB of CSV; 150 MB of random binaries. Day 2: 2,000 pgbench transactions (× factor, seeded) and a new
# dump; 1% of the small files edited (one line), 200 added, 100 removed; CSV appends; 4 KiB
# inserted into the middle of a 5 MiB CSV.
#
# Measured, for Accord on an encrypted repository (default `init`, a 64-hex machine secret in
# ACCORD_PASSWORD_FILE), Accord on a plain one (`init --encryption none`), restic
# (RESTIC_PASSWORD_FILE) and rsync `-a` / `-az`:
#   dump1/dump2  the dump alone, day 1 and day 2, into repositories of its own: Accord
#                `--command '/db/pgdump.sql=pg_dump …'`, restic `pg_dump … | restic backup --stdin`;
#                the repository's growth each day
#   tree1/tree2  the whole tree (dump file included: *.sql gets Accord's dump profile): growth
#   send1/send2  bytes sent to a DR node over a real sshd on 127.0.0.1 (started here, our own
#                config, as the unprivileged user accordsync: no sudo, the global sudoers file of
#                scripts/testenv is left alone): `accord sync --json` wireBytesSent to
#                `accord serve`, rsync `--stats` "Total bytes sent"
#   and what each Accord dump-alone backup and day-2 tree backup added, by kind (efficiency_report.py).
# Outputs: BENCH_DIR/efficiency.md (also printed), BENCH_DIR/results.csv, BENCH_DIR/breakdown.jsonl,
# logs in BENCH_DIR/logs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)
TESTENV=$REPO_ROOT/scripts/testenv
# lib.sh: free_port, wait_port, ensure_user, pid_alive (its die/log are replaced below).
TESTENV_NAME=efficiency
# shellcheck source=scripts/testenv/lib.sh
. "$TESTENV/lib.sh"

die() { echo "efficiency.sh: $*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*" >&2; }

case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (it runs PostgreSQL and sshd under their own users)"

SCALE=${SCALE:-full}
case "$SCALE" in
    full) FACTOR=1 ;;
    small) FACTOR=0.05 ;;
    *) awk -v s="$SCALE" 'BEGIN { exit !(s + 0 > 0) }' || die "SCALE must be full, small or a positive factor, got '$SCALE'"
       FACTOR=$SCALE ;;
esac
BENCH_DIR=${BENCH_DIR:-/tmp/accord-efficiency}
case "$BENCH_DIR" in /*) ;; *) BENCH_DIR=$PWD/$BENCH_DIR ;; esac
BENCH_DIR=${BENCH_DIR%/}
[ -n "$BENCH_DIR" ] && [ "$BENCH_DIR" != / ] || die "refusing BENCH_DIR=/"
[[ $BENCH_DIR =~ ^[A-Za-z0-9/._+@:-]+$ ]] || die "BENCH_DIR must be a plain path (letters, digits, / . _ + @ : -)"
KEEP=${KEEP:-1}
CHUNKER_SEED=${CHUNKER_SEED:-2544cfe684ebf9e2}
[[ $CHUNKER_SEED == random || $CHUNKER_SEED =~ ^[0-9a-f]{16}$ ]] || die "CHUNKER_SEED must be 16 lowercase hex digits or 'random'"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-nobody}
ACCORD=${ACCORD:-$REPO_ROOT/.build/release/accord}
[ -x "$ACCORD" ] || die "no accord binary at $ACCORD (set ACCORD, or swift build -c release)"
ACCORD=$(cd "$(dirname "$ACCORD")" && pwd)/$(basename "$ACCORD")
[[ $ACCORD =~ ^[A-Za-z0-9/._+@:-]+$ ]] || die "the accord path must be a plain path: $ACCORD"
SYNC_USER=accordsync
# The remote accord runs as SYNC_USER: it must be able to reach the binary.
runuser -u nobody -- test -x "$ACCORD" 2>/dev/null || die "$ACCORD is not executable by other users (the DR side runs it as $SYNC_USER)"

need=()
command -v restic >/dev/null || need+=(restic)
command -v rsync >/dev/null || need+=(rsync)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v python3 >/dev/null || need+=(python3)
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pgbench" ] && [ -x "$PG_BIN/pg_dump" ] || need+=(postgresql postgresql-client)
# pg.sh (shared with compare.sh and sync-bench.sh): install_needed, pg_find_bin, pg_init, pg_start, pg_stop.
# shellcheck source=Benchmarks/scripts/pg.sh
. "$HERE/scripts/pg.sh"
install_needed "${need[@]}"
pg_find_bin

PY=$(python3 -c 'import sys; print(sys.executable)')
GEN=$HERE/efficiency_corpus.py
REP=$HERE/efficiency_report.py

# ---------------------------------------------------------------- work dir (only our own subdirs are wiped)
CORPUS=$BENCH_DIR/corpus
REPOS=$BENCH_DIR/repos
DR=$BENCH_DIR/dr
LOGS=$BENCH_DIR/logs
PGROOT=$BENCH_DIR/pg
SSHDIR=$BENCH_DIR/sshd
RESULTS=$BENCH_DIR/results.csv
BREAKDOWN=$BENCH_DIR/breakdown.jsonl
META=$BENCH_DIR/meta.txt
OUT=$BENCH_DIR/efficiency.md
mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
rm -rf "$CORPUS" "$REPOS" "$DR" "$LOGS" "$PGROOT" "$SSHDIR" "${BENCH_DIR:?}/tmp" "${BENCH_DIR:?}/home" \
       "$BENCH_DIR/cache" "$RESULTS" "$BREAKDOWN" "$META" "$OUT"
mkdir -p "$CORPUS" "$REPOS" "$DR" "$LOGS" "$BENCH_DIR/tmp" "$BENCH_DIR/home" "$BENCH_DIR/cache" "$SSHDIR"
export HOME=$BENCH_DIR/home TMPDIR=$BENCH_DIR/tmp XDG_CACHE_HOME=$BENCH_DIR/cache RESTIC_CACHE_DIR=$BENCH_DIR/cache/restic
ACCORD_PWF=$BENCH_DIR/accord-password   # a machine secret, as `accord -a backup` generates one
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ACCORD_PWF"
RESTIC_PWF=$BENCH_DIR/restic-password
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RESTIC_PWF"
chmod 600 "$ACCORD_PWF" "$RESTIC_PWF"
export RESTIC_PASSWORD_FILE=$RESTIC_PWF
unset ACCORD_PASSWORD_FILE ACCORD_PASSWORD_COMMAND ACCORD_REPOSITORY

PG_RUNNING=0
PGDATA_DIR=$PGROOT/data
PGSOCK=$PGROOT/sock
PGSCALE=$(awk -v f="$FACTOR" 'BEGIN { n = int(40 * f + 0.5); print (n < 1 ? 1 : n) }')
NTX=$(awk -v f="$FACTOR" 'BEGIN { n = int(2000 * f + 0.5); print (n < 10 ? 10 : n) }')
SSHD_PID=""
STREAM_CHECK=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$SSHD_PID" ] && pid_alive "$SSHD_PID"; then
        # our listener and its per-connection children, by pid
        local c
        for c in $(ps -o pid= --ppid "$SSHD_PID" 2>/dev/null || true); do kill "$c" 2>/dev/null || true; done
        kill "$SSHD_PID" 2>/dev/null || true
    fi
    pg_stop
    if [ "$KEEP" = 0 ]; then rm -rf "$CORPUS" "$REPOS" "$DR" "$PGROOT"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
echo "row,tool,bytes,status,detail" > "$RESULTS"
result() {  # result ROW TOOL BYTES STATUS DETAIL
    echo "$1,$2,$3,$4,${5//,/;}" >> "$RESULTS"
    printf '    %-6s %-13s %14s B  %s %s\n' "$1" "$2" "${3:--}" "$4" "${5:-}" >&2
}
repo_bytes() { find "$1" -type f ! -path "$1/locks/*" ! -path "$1/tmp/*" -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
acc_enc() { ACCORD_PASSWORD_FILE=$ACCORD_PWF "$ACCORD" "$@"; }
acc_plain() { "$ACCORD" "$@"; }
acc() {  # acc TOOL args...: accord with the tool's key setup
    local t=$1; shift
    if [ "$t" = accord ]; then acc_enc "$@"; else acc_plain "$@"; fi
}
# The dump command: a fixed \restrict key per day (pg_dump >= 15.14 draws a random one), so the
# dump the tree holds and the dumps the dump-alone backups read are the same bytes.
RK_OPT=0
case "$("$PG_BIN/pg_dump" --help)" in *--restrict-key*) RK_OPT=1 ;; esac
dump_cmd() {  # dump_cmd DAY
    local rk=""
    [ "$RK_OPT" = 1 ] && rk="--restrict-key=accordeffday${1}key"
    echo "$PG_BIN/pg_dump -h $PGSOCK -p $PGPORT -U bench -Fp $rk bench"
}

# backup_dump DAY TOOL: the dump alone into REPOS/TOOL-dump (its growth is the row)
backup_dump() {
    local day=$1 tool=$2 repo=$REPOS/$2-dump log=$LOGS/dump$1-$2.log before rc=0 after
    before=$(repo_bytes "$repo")
    "$PY" "$REP" files "$repo" > "$LOGS/dump$day-$tool.before"
    case "$tool" in
        restic) bash -o pipefail -c "$(dump_cmd "$day") | restic -r $repo backup --stdin --stdin-filename pgdump.sql --tag day$day" >"$log" 2>&1 || rc=$? ;;
        *) acc "$tool" backup -d "$repo" --tag "day$day" --json --command "/db/pgdump.sql=$(dump_cmd "$day")" >"$log" 2>&1 || rc=$? ;;
    esac
    after=$(repo_bytes "$repo")
    if [ $rc != 0 ]; then result "dump$day" "$tool" "" "fail(exit $rc)" "see $log"; tail -n 5 "$log" >&2; return; fi
    result "dump$day" "$tool" $((after - before)) ok "repository $after B"
    if [ "$tool" != restic ]; then   # the stream must be the dump the tree holds (same day, same bytes)
        local n
        n=$("$PY" -c 'import json,sys; t=open(sys.argv[1]).read(); print(json.loads(t[t.index("{"):])["summary"]["totalBytes"])' "$log" 2>/dev/null || echo "?")
        [ "$n" = "$(stat -c %s "$CORPUS/db/pgdump.sql")" ] || STREAM_CHECK="$STREAM_CHECK day $day $tool: stream $n bytes, db/pgdump.sql $(stat -c %s "$CORPUS/db/pgdump.sql");"
        "$PY" "$REP" breakdown --repo "$repo" --before "$LOGS/dump$day-$tool.before" --backup-json "$log" \
            --label "$tool, dump alone, day $day" >> "$BREAKDOWN"
    fi
}

# backup_tree DAY TOOL: the whole corpus into REPOS/TOOL
backup_tree() {
    local day=$1 tool=$2 repo=$REPOS/$2 log=$LOGS/tree$1-$2.log before rc=0 after
    before=$(repo_bytes "$repo")
    "$PY" "$REP" files "$repo" > "$LOGS/tree$day-$tool.before"
    case "$tool" in
        restic) restic -r "$repo" backup --tag "day$day" "$CORPUS" >"$log" 2>&1 || rc=$? ;;
        *) acc "$tool" backup -d "$repo" --tag "day$day" --json "$CORPUS" >"$log" 2>&1 || rc=$? ;;
    esac
    after=$(repo_bytes "$repo")
    if [ $rc != 0 ]; then result "tree$day" "$tool" "" "fail(exit $rc)" "see $log"; tail -n 5 "$log" >&2; return; fi
    result "tree$day" "$tool" $((after - before)) ok "repository $after B"
    if [ "$day" = 2 ] && [ "$tool" != restic ]; then
        "$PY" "$REP" breakdown --repo "$repo" --before "$LOGS/tree$day-$tool.before" --backup-json "$log" \
            --label "$tool, whole tree, day 2" >> "$BREAKDOWN"
    fi
}

# send DAY TOOL: the day's transfer to the DR node over ssh
send() {
    local day=$1 tool=$2 log=$LOGS/send$1-$2.log rc=0 sent recv payload blobs
    case "$tool" in
        accord|accord-plain)
            # "--ssh-option=-F …": as a separate argument the parser would take "-F …" for an option.
            acc "$tool" sync -d "$REPOS/$tool" --to "$SYNC_USER@127.0.0.1:$DR/$tool" \
                "--ssh-option=-F $SSHDIR/ssh_config" --remote-command "$ACCORD" --json >"$log" 2>&1 || rc=$?
            read -r sent recv payload blobs < <("$PY" "$REP" sync-json "$log")
            [ $rc = 0 ] && [ -n "${sent:-}" ] || { result "send$day" "$tool" "" "fail(exit $rc)" "see $log"; tail -n 5 "$log" >&2; return; }
            result "send$day" "$tool" "$sent" ok "received $recv B; payload $payload B in $blobs blobs" ;;
        rsync-a|rsync-az)
            local -a z=()
            [ "$tool" = rsync-az ] && z=(-z)
            rsync -a "${z[@]}" --delete --stats --debug=nstr -e "ssh -F $SSHDIR/ssh_config" "$CORPUS/" \
                "$SYNC_USER@127.0.0.1:$DR/$tool/" >"$log" 2>&1 || rc=$?
            sent=$("$PY" "$REP" rsync-sent "$log")
            [ $rc = 0 ] && [ -n "$sent" ] || { result "send$day" "$tool" "" "fail(exit $rc)" "see $log"; tail -n 5 "$log" >&2; return; }
            result "send$day" "$tool" "$sent" ok "$(grep -E '^Total bytes received|^Literal data|negotiated' "$log" | tr '\n' ' ')" ;;
    esac
}

# ---------------------------------------------------------------- sshd on 127.0.0.1, our own config
# Like scripts/testenv/sshd-start.sh, minus its global /etc/sudoers.d file (other people's tests
# may be using theirs): the DR side runs as SYNC_USER into directories that user owns.
start_sshd() {
    local port
    ensure_user "$SYNC_USER" home
    mkdir -p /run/sshd && chmod 0755 /run/sshd
    ssh-keygen -q -t ed25519 -N '' -C efficiency-host -f "$SSHDIR/host_key"
    ssh-keygen -q -t ed25519 -N '' -C efficiency-client -f "$SSHDIR/id_ed25519"
    mkdir -p "$SSHDIR/authorized_keys"
    cp "$SSHDIR/id_ed25519.pub" "$SSHDIR/authorized_keys/$SYNC_USER"
    chmod 0755 "$SSHDIR" "$SSHDIR/authorized_keys"
    chmod 0644 "$SSHDIR/authorized_keys/$SYNC_USER"
    port=$(free_port)
    cat > "$SSHDIR/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $SSHDIR/host_key
PidFile $SSHDIR/sshd.pid
AuthorizedKeysFile $SSHDIR/authorized_keys/%u
AllowUsers $SYNC_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
StrictModes no
UsePAM no
X11Forwarding no
PrintMotd no
LogLevel INFO
EOF
    /usr/sbin/sshd -f "$SSHDIR/sshd_config" -E "$SSHDIR/sshd.log" || die "sshd did not start (see $SSHDIR/sshd.log)"
    wait_port "$port" 5 || die "sshd does not listen on 127.0.0.1:$port (see $SSHDIR/sshd.log)"
    for _ in $(seq 1 50); do [ -s "$SSHDIR/sshd.pid" ] && break; sleep 0.1; done
    SSHD_PID=$(cat "$SSHDIR/sshd.pid")
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$SSHDIR/host_key.pub")" > "$SSHDIR/known_hosts"
    cat > "$SSHDIR/ssh_config" <<EOF
Host 127.0.0.1
    Port $port
    User $SYNC_USER
    IdentityFile $SSHDIR/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $SSHDIR/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
    LogLevel ERROR
EOF
    chown "$SYNC_USER:" "$DR"
    chmod 0755 "$DR"
    runuser -u "$SYNC_USER" -- test -w "$DR" || die "$SYNC_USER cannot write $DR (every parent of BENCH_DIR must be searchable)"
    ssh -F "$SSHDIR/ssh_config" "$SYNC_USER@127.0.0.1" "$ACCORD" --version >"$LOGS/ssh-check.log" 2>&1 ||
        { cat "$LOGS/ssh-check.log" >&2; die "cannot run $ACCORD over ssh as $SYNC_USER"; }
}

# ---------------------------------------------------------------- day 1
T0=$(date +%s)
say "corpus at factor $FACTOR: pgbench scale $PGSCALE in $PGROOT, files in $CORPUS"
pg_init
pg_start
"$PG_BIN/createdb" bench 2>/dev/null || true
"$PG_BIN/pgbench" -i -q -s "$PGSCALE" bench >"$LOGS/pgbench-init.log" 2>&1 ||
    { tail "$LOGS/pgbench-init.log" >&2; die "pgbench -i failed"; }
# The notes: ~63 MB × factor of prose rows (pgbench's own tables deflate ~100×, real dumps do not).
"$PY" "$GEN" notes --out "$BENCH_DIR/tmp/notes.tsv" --factor "$FACTOR" 2>"$LOGS/notes.log"
"$PG_BIN/psql" -q -X -v ON_ERROR_STOP=1 \
    -c "CREATE TABLE notes (id integer PRIMARY KEY, author text NOT NULL, created timestamptz NOT NULL, title text NOT NULL, body text NOT NULL)" \
    -c "\\copy notes FROM '$BENCH_DIR/tmp/notes.tsv'" >"$LOGS/notes-load.log" 2>&1 ||
    { tail "$LOGS/notes-load.log" >&2; die "loading the notes table failed"; }
rm -f "$BENCH_DIR/tmp/notes.tsv"
"$PY" "$GEN" gen --root "$CORPUS" --factor "$FACTOR" 2>"$LOGS/gen.log"
# shellcheck disable=SC2046  # the dump command is one line of words
$(dump_cmd 1) > "$CORPUS/db/pgdump.sql"
DUMP1=$(stat -c %s "$CORPUS/db/pgdump.sql")
say "corpus ready in $(( $(date +%s) - T0 )) s: $(du -sb "$CORPUS" | cut -f1) bytes, $(find "$CORPUS" -type f | wc -l) files, dump $DUMP1 bytes"

start_sshd
for t in accord accord-plain; do
    for r in "$REPOS/$t" "$REPOS/$t-dump"; do
        if [ "$t" = accord ]; then acc_enc init -d "$r"; else acc_plain init --encryption none -d "$r"; fi \
            >"$LOGS/init-$(basename "$r").log" 2>&1 || die "accord init $r failed (see $LOGS)"
        # A plain repository's cut points come from config's chunkerSeed: fixed, so runs compare
        # (the repository is still empty). An encrypted one's come from its random key.
        if [ "$t" = accord-plain ] && [ "$CHUNKER_SEED" != random ]; then
            sed -i -E "s/(\"chunkerSeed\" *: *\")[0-9a-f]{16}\"/\1$CHUNKER_SEED\"/" "$r/config"
            grep -q "\"$CHUNKER_SEED\"" "$r/config" || die "could not set chunkerSeed in $r/config"
        fi
    done
done
for r in "$REPOS/restic" "$REPOS/restic-dump"; do
    restic -r "$r" init >"$LOGS/init-$(basename "$r").log" 2>&1 || die "restic init $r failed (see $LOGS)"
done

say "day 1: the dump alone"
for t in accord accord-plain restic; do backup_dump 1 "$t"; done
say "day 1: the whole tree"
for t in accord accord-plain restic; do backup_tree 1 "$t"; done
say "day 1: to the DR node"
for t in accord accord-plain rsync-a rsync-az; do send 1 "$t"; done

# ---------------------------------------------------------------- day 2
say "day 2: $NTX pgbench transactions, a new dump, the file changes"
"$PG_BIN/pgbench" -n -c 1 -t "$NTX" --random-seed=1717 bench >"$LOGS/pgbench-day2.log" 2>&1 ||
    { tail "$LOGS/pgbench-day2.log" >&2; die "pgbench day 2 failed"; }
# shellcheck disable=SC2046
$(dump_cmd 2) > "$CORPUS/db/pgdump.sql"
DUMP2=$(stat -c %s "$CORPUS/db/pgdump.sql")
CHANGE=$("$PY" "$GEN" day2 --root "$CORPUS" --factor "$FACTOR")
echo "    $CHANGE" >&2

say "day 2: the dump alone"
for t in accord accord-plain restic; do backup_dump 2 "$t"; done
say "day 2: the whole tree"
for t in accord accord-plain restic; do backup_tree 2 "$t"; done
say "day 2: to the DR node"
for t in accord accord-plain rsync-a rsync-az; do send 2 "$t"; done

# ---------------------------------------------------------------- checks (outside the figures)
say "checking the DR copies"
CHECK=""
for t in accord accord-plain; do
    if acc "$t" check -d "$DR/$t" >"$LOGS/check-dr-$t.log" 2>&1; then CHECK="$CHECK $t: ok;"
    else CHECK="$CHECK $t: FAILED (see $LOGS/check-dr-$t.log);"; fi
done
for t in rsync-a rsync-az; do
    if diff -rq "$CORPUS" "$DR/$t" >"$LOGS/diff-$t.log" 2>&1; then CHECK="$CHECK $t: same tree;"
    else CHECK="$CHECK $t: DIFFERS (see $LOGS/diff-$t.log);"; fi
done
echo "   $CHECK" >&2

# ---------------------------------------------------------------- report
{
    echo "scale=$SCALE (factor $FACTOR): pgbench scale $PGSCALE; dump $DUMP1 bytes day 1, $DUMP2 bytes day 2"
    echo "corpus day 2=$(du -sb "$CORPUS" | cut -f1) bytes in $(find "$CORPUS" -type f | wc -l) files"
    echo "day-2 change=$NTX pgbench transactions (1 client, seeded), new dump; $CHANGE"
    echo "chunker=plain repositories: chunkerSeed $CHUNKER_SEED; encrypted: gear table from the random key (differs per repository and run)"
    echo "DR checks=$CHECK"
    echo "dump-alone streams=${STREAM_CHECK:-the same length as db/pgdump.sql of the same day (accord backup --json totalBytes)}"
    echo "restic repository=$(restic -r "$REPOS/restic" cat config 2>/dev/null | "$PY" -c 'import json,sys; print("version", json.load(sys.stdin).get("version", "?"))' 2>/dev/null || echo '?') (version 2 = compressed, auto mode; its chunker polynomial is random per repository, so its figures vary a little between runs too)"
    echo "versions=accord $ACCORD ($("$ACCORD" --version 2>/dev/null | head -n1)); $(restic version | cut -d' ' -f1-2); $(rsync --version | head -n1 | sed 's/  */ /g'); $("$PG_BIN/pg_dump" --version); $(ssh -V 2>&1 | cut -d, -f1)"
    echo "machine=$(nproc) cores, $(uname -r); total $(( $(date +%s) - T0 )) s"
} > "$META"
say "results"
"$PY" "$REP" table --results "$RESULTS" --breakdown "$BREAKDOWN" --meta "$META" --out "$OUT"
echo "(written to $OUT; rows in $RESULTS; logs in $LOGS)" >&2

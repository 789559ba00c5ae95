#!/usr/bin/env bash
# Sync benchmark: bytes on the wire and wall time of `accord sync` vs rsync over the same
# (loopback) sshd, for an initial and an incremental sync of an AE5-like tree after a ~1% change.
#
# Usage (as root: sshd-start.sh creates users and a sudoers file):
#   Benchmarks/sync-bench.sh                     # scale 1 (~1 GiB tree)
#   SCALE=0.2 Benchmarks/sync-bench.sh           # quick run (~200 MB)
#
# Environment:
#   ACCORD      accord binary (default: <repo>/.build/release/accord; built with
#               `swift build -c release` if missing and ACCORD was not given)
#   BENCH_DIR   work dir (default /tmp/accord-sync-bench); everything is written below it
#   SCALE       size factor as in compare.sh (default 1: pgbench scale 30 dump, 25,000 small
#               files, CSVs, binaries: ~1 GiB)
#   NICE        niceness of the whole run, sshd and its sessions included (default 10)
#   CROSSCHECK  1 (default): run the server side of every sync (accord serve, rsync --server)
#               under a relay that counts the bytes through the ssh channel, and report them
#               next to what the clients print; 0: no relay
#   RSYNC_Z     1: also rsync the tree with -z (`rsync -az`, step rows "rsync-tree-z"), a stronger
#               baseline than the plain `rsync -a` of the main table (default 0)
#   CHUNKER_SEED  16 hex digits written into the new source repository's config before the first
#               backup (default 2544cfe684ebf9e2), so that runs are comparable: where the
#               chunker cuts, and so what a mid-file insertion costs, depends on the seed.
#               "random" keeps the seed `accord init` draws.
#   KEEP        1 (default): keep corpus, repositories and destinations; 0 deletes them at exit
#   PG_BIN      PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   PG_USER     unprivileged user that runs the throwaway PostgreSQL (default nobody)
#
# What runs (the "remote" is the same machine, reached through scripts/testenv/sshd-start.sh):
#   day 1: corpus (pgbench dump db/pgdump.sql + Benchmarks/scripts/corpus.py gen), then
#          accord backup (the dump as `--command /db/pgdump.sql=cat …`, the rest as a tree),
#          tar czf of the whole tree (what the original AE5 tool shipped);
#          step "initial":     accord sync --json | rsync -a tree | rsync -a tarball
#   day 2: the same change as compare.sh: 0.2% of pgbench_accounts rows updated + history rows,
#          re-dump; corpus.py day2 (~1% of the small files edited/added/deleted, 1000 rows
#          inserted mid-CSV, one YAML edit); accord backup; a new tarball over the old one;
#          step "incremental": the same three transfers again.
#   Then the destination repository is checked (`accord check --read-data`, outside timing).
# Wire bytes: accord = wireBytesSent + wireBytesReceived (`--json`), rsync = "Total bytes
# sent" + "Total bytes received" (`--stats`); both are application bytes inside ssh.
# Outputs: $BENCH_DIR/sync-results.md (tables), $BENCH_DIR/sync-results.csv, $BENCH_DIR/logs/*.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)
SCRIPTS=$HERE/scripts
TESTENV=$REPO_ROOT/scripts/testenv

SCALE=${SCALE:-1}
BENCH_DIR=${BENCH_DIR:-/tmp/accord-sync-bench}
NICE=${NICE:-10}
CROSSCHECK=${CROSSCHECK:-1}
KEEP=${KEEP:-1}
RSYNC_Z=${RSYNC_Z:-0}
CHUNKER_SEED=${CHUNKER_SEED:-2544cfe684ebf9e2}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-nobody}
ACCORD_GIVEN=${ACCORD:+1}
ACCORD=${ACCORD:-$REPO_ROOT/.build/release/accord}

die() { echo "sync-bench.sh: $*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*" >&2; }

case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (sshd-start.sh creates users and /etc/sudoers.d/accord-testenv)"
awk -v s="$SCALE" 'BEGIN { exit !(s + 0 > 0) }' || die "SCALE must be a positive number, got '$SCALE'"
[[ $CHUNKER_SEED == random || $CHUNKER_SEED =~ ^[0-9a-f]{16}$ ]] || die "CHUNKER_SEED must be 16 lowercase hex digits or 'random'"
case "$BENCH_DIR" in /*) ;; *) BENCH_DIR=$PWD/$BENCH_DIR ;; esac
BENCH_DIR=${BENCH_DIR%/}
[ -n "$BENCH_DIR" ] && [ "$BENCH_DIR" != / ] || die "refusing BENCH_DIR=/"
case "$BENCH_DIR" in *[[:space:]]*) die "BENCH_DIR must not contain spaces" ;; esac

# Everything below (sshd and its sessions included) inherits this niceness.
[ "$NICE" = 0 ] || renice -n "$NICE" -p $$ >/dev/null

# ---------------------------------------------------------------- dependencies
need=()
command -v rsync >/dev/null || need+=(rsync)
command -v python3 >/dev/null || need+=(python3)
command -v runuser >/dev/null || need+=(util-linux)
command -v tar >/dev/null || need+=(tar)
command -v gzip >/dev/null || need+=(gzip)
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pgbench" ] && [ -x "$PG_BIN/pg_dump" ] || need+=(postgresql postgresql-client)
# shellcheck source=Benchmarks/scripts/pg.sh
. "$HERE/scripts/pg.sh"   # install_needed, pg_find_bin, make_day1_corpus, as_pg, pg_init, pg_start, pg_stop, pg_dump_to_corpus
install_needed "${need[@]}"
pg_find_bin

if [ ! -x "$ACCORD" ]; then
    [ -z "$ACCORD_GIVEN" ] || die "ACCORD=$ACCORD is not executable"
    say "building accord (swift build -c release)"
    (cd "$REPO_ROOT" && swift build -c release)
    [ -x "$ACCORD" ] || die "build did not produce $ACCORD"
fi
ACCORD=$(cd "$(dirname "$ACCORD")" && pwd)/$(basename "$ACCORD")
case "$ACCORD" in *[[:space:]]*) die "the accord path must not contain spaces: $ACCORD" ;; esac
PY=$(python3 -c 'import sys; print(sys.executable)')
REPORT=$SCRIPTS/sync_report.py

# ---------------------------------------------------------------- work dir (only our own subdirs are wiped)
CORPUS=$BENCH_DIR/corpus
SRC_REPO=$BENCH_DIR/repo
TARDIR=$BENCH_DIR/tarball
TARBALL=$TARDIR/ae5-backup.tar.gz
DEST=$BENCH_DIR/dest
LOGS=$BENCH_DIR/logs
PGROOT=$BENCH_DIR/pg
SSHDIR=$BENCH_DIR/sshd
CSV=$BENCH_DIR/sync-results.csv
META=$BENCH_DIR/sync-meta.env
OUT=$BENCH_DIR/sync-results.md
mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"
rm -rf "$CORPUS" "$SRC_REPO" "$TARDIR" "$DEST" "$LOGS" "$PGROOT" "${BENCH_DIR:?}/tmp" "$CSV" "$META" "$OUT"
mkdir -p "$CORPUS" "$TARDIR" "$DEST" "$LOGS" "$BENCH_DIR/tmp"
export TMPDIR=$BENCH_DIR/tmp

# ---------------------------------------------------------------- throwaway PostgreSQL (as compare.sh)
PG_RUNNING=0
SSHD_RUNNING=0
PGDATA_DIR=$PGROOT/data
PGSOCK=$PGROOT/sock
PGSCALE=$(awk -v s="$SCALE" 'BEGIN { n = int(30 * s + 0.5); print (n < 1 ? 1 : n) }')


cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$SSHD_RUNNING" = 1 ]; then
        "$TESTENV/sshd-stop.sh" "$SSHDIR" >/dev/null 2>"$LOGS/sshd-stop.log" || cat "$LOGS/sshd-stop.log" >&2
    fi
    pg_stop
    if [ "$KEEP" = 0 ]; then rm -rf "$CORPUS" "$SRC_REPO" "$TARDIR" "$DEST" "$PGROOT"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- measurement helpers
echo "step,tool,sent,received,payload,literal,matched,wall_s,own_s,blobs,relay_in,relay_out,status,note" > "$CSV"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# timed LOG cmd... : runs cmd with stdout+stderr to LOG; sets T_WALL and T_RC
timed() {
    local log=$1 t0 t1; shift
    T_RC=0
    t0=$(now)
    "$@" >"$log" 2>&1 || T_RC=$?
    t1=$(now)
    T_WALL=$(elapsed "$t0" "$t1")
}

row() {  # row step tool sent received payload literal matched wall own blobs relay_in relay_out status note
    local IFS=,
    echo "$*" >> "$CSV"
}

relay_counts() {  # relay_counts FILE -> "in out" (empty when missing)
    local f=$1 i="" o=""
    if [ -s "$f" ]; then
        i=$(sed -n 's/.*in=\([0-9]*\).*/\1/p' "$f")
        o=$(sed -n 's/.*out=\([0-9]*\).*/\1/p' "$f")
    fi
    echo "$i $o"
}

# The remote side of each transfer runs as root (sudo), like the AE5 tool's rsync and accord serve;
# with CROSSCHECK=1 under the byte-counting relay.
remote_prefix() {  # remote_prefix COUNTFILE
    if [ "$CROSSCHECK" = 1 ]; then
        echo "sudo -n $PY $REPORT relay $1"
    else
        echo "sudo -n"
    fi
}

accord_backup() {  # accord_backup STEP
    local step=$1 log=$LOGS/backup-$1.log added
    timed "$log" "$ACCORD" backup -d "$SRC_REPO" --tag "$step" --json \
        --exclude "$CORPUS/db/pgdump.sql" --command "/db/pgdump.sql=cat $CORPUS/db/pgdump.sql" "$CORPUS"
    [ "$T_RC" = 0 ] || { tail -n 20 "$log" >&2; die "accord backup ($step) failed (exit $T_RC), log $log"; }
    added=$("$PY" -c 'import json,sys
t=open(sys.argv[1]).read(); o=json.loads(t[t.index("{"):])
s=o.get("summary", o)
print(s.get("addedStoredBytes", s.get("addedBytes", "")))' "$log" 2>/dev/null || true)
    row "$step" "accord backup" "" "" "$added" "" "" "$T_WALL" "" "" "" "" ok "stored bytes added (from --json)"
    echo "    accord backup   $step: ${T_WALL}s" >&2
}

make_tarball() {  # make_tarball STEP
    local step=$1
    timed "$LOGS/tar-$step.log" tar czf "$TARBALL.tmp" -C "$BENCH_DIR" corpus
    [ "$T_RC" = 0 ] || { tail -n 20 "$LOGS/tar-$step.log" >&2; die "tar czf failed"; }
    mv -f "$TARBALL.tmp" "$TARBALL"
    row "$step" "tar czf" "" "" "$(stat -c %s "$TARBALL")" "" "" "$T_WALL" "" "" "" "" ok "tarball size"
    echo "    tar czf         $step: ${T_WALL}s, $(stat -c %s "$TARBALL") bytes" >&2
}

sync_accord() {  # sync_accord STEP
    local step=$1 log=$LOGS/sync-accord-$1.log cnt=$LOGS/relay-accord-$1.count
    local blobs payload sent recv secs snaps ri ro status=ok
    rm -f "$cnt"
    # "--ssh-option=-F …": with a separate argument the parser takes "-F …" for an option.
    timed "$log" "$ACCORD" sync -d "$SRC_REPO" --to "$SSH_USER@127.0.0.1:$DEST/accord" \
        "--ssh-option=-F $SSH_CONFIG" --remote-command "$(remote_prefix "$cnt") $ACCORD" --json
    if [ "$T_RC" != 0 ]; then
        status="fail(exit $T_RC)"
        echo "    !! accord sync $step failed (exit $T_RC):" >&2
        tail -n 10 "$log" | sed 's/^/       /' >&2
    fi
    read -r blobs payload sent recv secs snaps < <("$PY" "$REPORT" accord-json "$log" 2>/dev/null || echo "")
    read -r ri ro < <(relay_counts "$cnt")
    row "$step" accord "${sent:-}" "${recv:-}" "${payload:-}" "" "" "$T_WALL" "${secs:-}" "${blobs:-}" "$ri" "$ro" "$status" \
        "snapshots=${snaps:-}"
    echo "    accord sync     $step: ${T_WALL}s wire $(( ${sent:-0} + ${recv:-0} )) payload ${payload:-?} blobs ${blobs:-?} relay in/out ${ri:-?}/${ro:-?}" >&2
}

sync_rsync() {  # sync_rsync STEP TOOL SRC DESTDIR [RSYNC-OPTION...]
    local step=$1 tool=$2 src=$3 dst=$4 log=$LOGS/sync-$2-$1.log cnt=$LOGS/relay-$2-$1.count
    local sent recv lit mat ri ro status=ok
    shift 4
    rm -f "$cnt"
    timed "$log" rsync -a "$@" --stats -e "ssh -F $SSH_CONFIG" --rsync-path "$(remote_prefix "$cnt") rsync" \
        "$src" "$SSH_USER@127.0.0.1:$dst"
    if [ "$T_RC" != 0 ]; then
        status="fail(exit $T_RC)"
        echo "    !! rsync $tool $step failed (exit $T_RC):" >&2
        tail -n 10 "$log" | sed 's/^/       /' >&2
    fi
    read -r sent recv lit mat < <("$PY" "$REPORT" rsync-stats "$log")
    read -r ri ro < <(relay_counts "$cnt")
    row "$step" "$tool" "$sent" "$recv" "" "$lit" "$mat" "$T_WALL" "" "" "$ri" "$ro" "$status" ""
    echo "    rsync $(printf '%-11s' "$tool") $step: ${T_WALL}s wire $(( ${sent:-0} + ${recv:-0} )) literal ${lit:-?} relay in/out ${ri:-?}/${ro:-?}" >&2
}

transfers() {  # transfers STEP
    sync_accord "$1"
    sync_rsync "$1" rsync-tree "$CORPUS/" "$DEST/tree/"
    sync_rsync "$1" rsync-targz "$TARBALL" "$DEST/targz/"
    if [ "$RSYNC_Z" = 1 ]; then sync_rsync "$1" rsync-tree-z "$CORPUS/" "$DEST/tree-z/" -z; fi
}

# ---------------------------------------------------------------- corpus, day 1
T0=$(date +%s)
make_day1_corpus
DAY1_BYTES=$(du -sb "$CORPUS" | cut -f1)
DAY1_FILES=$(find "$CORPUS" -type f | wc -l)
DUMP1=$(stat -c %s "$CORPUS/db/pgdump.sql")
say "corpus ready in $(( $(date +%s) - T0 )) s: $DAY1_BYTES bytes, $DAY1_FILES files"

# ---------------------------------------------------------------- sshd
say "starting sshd (scripts/testenv/sshd-start.sh $SSHDIR)"
SSHD_RUNNING=1
ACCORD_BIN_DIR=$(dirname "$ACCORD") "$TESTENV/sshd-start.sh" "$SSHDIR" >"$LOGS/sshd-start.out" 2>"$LOGS/sshd-start.log" ||
    { cat "$LOGS/sshd-start.log" >&2; die "sshd-start.sh failed"; }
set -a; . "$SSHDIR/env"; set +a
ssh -F "$SSH_CONFIG" "$SSH_USER@127.0.0.1" sudo -n "$ACCORD" --help >"$LOGS/remote-check.log" 2>&1 ||
    { cat "$LOGS/remote-check.log" >&2; die "cannot run accord through ssh + sudo"; }

# ---------------------------------------------------------------- day 1
say "day 1: backup, tarball"
"$ACCORD" init -d "$SRC_REPO" >"$LOGS/init.log" 2>&1 || { cat "$LOGS/init.log" >&2; die "accord init failed"; }
if [ "$CHUNKER_SEED" != random ]; then   # the repository is still empty: only its future cut points change
    sed -i -E "s/(\"chunkerSeed\" *: *\")[0-9a-f]{16}\"/\1$CHUNKER_SEED\"/" "$SRC_REPO/config"
    grep -q "\"$CHUNKER_SEED\"" "$SRC_REPO/config" || die "could not set chunkerSeed in $SRC_REPO/config"
fi
SEED_USED=$(sed -n -E 's/.*"chunkerSeed" *: *"([0-9a-f]{16})".*/\1/p' "$SRC_REPO/config")
LEVEL_USED=$(tr -d ' \n' < "$SRC_REPO/config" | sed -n -E 's/.*"level":([0-9]+).*/\1/p')
accord_backup initial
make_tarball initial
say "step initial: transfers"
transfers initial

# ---------------------------------------------------------------- day 2 change
ACCOUNTS=$((PGSCALE * 100000))
NUPD=$(( ACCOUNTS / 500 ))   # 0.2% of the rows
say "day-2 change: $NUPD scattered account updates + re-dump; ~1% of small files; CSV insert"
pg_change_day2   # updates NUPD scattered accounts, re-dumps into the corpus
"$PY" "$SCRIPTS/corpus.py" day2 --root "$CORPUS" --scale "$SCALE" 2>"$LOGS/day2-corpus.log"
cat "$LOGS/day2-corpus.log" >&2

say "day 2: backup, tarball"
accord_backup incremental
make_tarball incremental
say "step incremental: transfers"
transfers incremental

# ---------------------------------------------------------------- verification (untimed)
say "verifying the destination repository"
VERIFY="ok"
SRC_SNAPS=$("$ACCORD" snapshots list -d "$SRC_REPO" --json 2>/dev/null | "$PY" -c 'import json,sys
o=json.load(sys.stdin); l=o if isinstance(o,list) else o.get("snapshots",[])
print(" ".join(sorted(s.get("id","") for s in l)))' 2>/dev/null || echo "?")
DST_SNAPS=$("$ACCORD" snapshots list -d "$DEST/accord" --json 2>/dev/null | "$PY" -c 'import json,sys
o=json.load(sys.stdin); l=o if isinstance(o,list) else o.get("snapshots",[])
print(" ".join(sorted(s.get("id","") for s in l)))' 2>/dev/null || echo "?")
[ "$SRC_SNAPS" = "$DST_SNAPS" ] && [ "$SRC_SNAPS" != "?" ] || VERIFY="snapshot lists differ (source: $SRC_SNAPS; destination: $DST_SNAPS)"
if ! "$ACCORD" check -d "$DEST/accord" --read-data >"$LOGS/check-dest.log" 2>&1; then
    VERIFY="accord check --read-data of the destination failed (see $LOGS/check-dest.log)"
fi
if ! cmp -s "$TARBALL" "$DEST/targz/$(basename "$TARBALL")"; then VERIFY="$VERIFY; tarball copy differs"; fi
echo "    $VERIFY" >&2

# ---------------------------------------------------------------- report
{
    echo "scale=$SCALE (pgbench scale $PGSCALE; $NUPD account rows updated on day 2)"
    echo "corpus day 1=$DAY1_BYTES bytes in $DAY1_FILES files (dump $DUMP1 bytes)"
    echo "corpus day 2=$(du -sb "$CORPUS" | cut -f1) bytes in $(find "$CORPUS" -type f | wc -l) files (dump $(stat -c %s "$CORPUS/db/pgdump.sql") bytes)"
    echo "day-2 change=$(tr -d '\n' < "$LOGS/day2-corpus.log"); dump: $NUPD scattered row updates + $NUPD history rows"
    echo "transfers=accord sync --json; rsync -a --stats -e 'ssh -F …' of the tree; the same of one tar czf tarball (day 2: new tarball over the old); remote side root via sudo$([ "$CROSSCHECK" = 1 ] && echo ', under a byte-counting relay (CROSSCHECK=1)')"
    echo "source repository=chunkerSeed $SEED_USED$([ "$CHUNKER_SEED" = random ] && echo ' (random)' || echo ' (CHUNKER_SEED)'), zlib level $LEVEL_USED"
    echo "destination check=$VERIFY"
    echo "machine=$(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r); niceness $NICE; loopback sshd, $(ssh -V 2>&1 | cut -d, -f1)"
    echo "versions=accord $ACCORD (built $(date -u -r "$ACCORD" +%FT%TZ); repo HEAD $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')); $(rsync --version | head -n1 | sed 's/  */ /g')"
} > "$META"
say "results"
"$PY" "$REPORT" table --csv "$CSV" --meta "$META" --out "$OUT"
echo >&2
echo "(written to $OUT and $CSV; logs in $LOGS; total $(( $(date +%s) - T0 )) s)" >&2

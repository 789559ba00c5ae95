#!/usr/bin/env bash
# End-to-end benchmark: Accord vs restic vs borgbackup on the same AE5-like corpus, in one run.
#
# Usage:
#   Benchmarks/compare.sh                 # scale 1 (~1 GiB corpus), all tools
#   Benchmarks/compare.sh --scale2        # double the sizes (SCALE*2)
#   Benchmarks/compare.sh --both          # SCALE then 2*SCALE, then a table of how time/RSS/size grew
#   SCALE=0.1 TOOLS="restic borg-lz4" Benchmarks/compare.sh   # quick smoke run (~100 MB)
#
# Environment:
#   ACCORD       accord binary (default: <repo>/.build/release/accord; built with
#                `swift build -c release` if missing and ACCORD was not given)
#   BENCH_DIR    work dir (default /tmp/accord-bench); everything is written below it
#   SCALE        size factor (default 1: pgbench scale 30, 25,000 small files, ~1 GiB total)
#   TOOLS        subset/order of: accord accord-plain accord-max accord-before restic borg-lz4 borg-zlib6
#                (default: all but accord-before). `accord` is the default repository, encrypted
#                (format version 3) with a 64-hex-digit machine secret in a password file (as the
#                AE5 flow generates it); `accord-plain` is the same binary on `init --encryption none`
#                (format version 2); accord-max is encrypted too. ACCORD_PASSPHRASE_KDF=1 gives
#                `accord` a typed passphrase instead (scrypt N=2^17 on every command).
#   ACCORD_BEFORE for the tool accord-before: a second accord binary (say, the last commit's
#                release build), run exactly as `accord`, so a change is measured before and
#                after in one run against the same restic/borg figures
#   BASE_TOOL    tool the ratio columns are computed for (default accord)
#   DUMP_GROWTH  1 (default): also back up the dump alone day 1 + day 2 for growth; 0 skips
#   FRESH_CACHE  1 (default as root): drop the page cache and re-read the step's inputs before
#                every measurement; 0 keeps caches as they are
#   RESTORE_WARMUP 1 (default): each tool restores once untimed before its timed restores
#   RESTORE_RUNS timed restores per tool (default 3); the run with the median wall time is recorded
#   NOCHANGE_RUNS no-change backups per tool (default 3); the median run is recorded
#   SETTLE       seconds of quiet before each restore (default 10)
#   BACKED_MEMORY 1 (default where possible): stop the guest kernel's free page reporting for the
#                run and touch free memory once, so no tool pays the host for re-backing memory
#                (see Benchmarks/README.md); 0 leaves the VM as it is
#   KEEP         1: keep repos and corpus afterwards (default 1; 0 deletes repos, corpus, pg data)
#   PG_BIN       PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   PG_USER      unprivileged user that runs the throwaway PostgreSQL (default nobody)
#
# Steps, each run for every tool round-robin (the starting tool rotates per step):
#   initial backup, no-change backup, [dump-only day 1], day-2 change, after-change backup,
#   [dump-only day 2], full restore into a freshly made ext4 filesystem (loop mount; a plain
#   directory where that is impossible), verified with diff -r outside the timing.
# Each measurement: wall s, CPU s (user+sys), peak RSS KB (/usr/bin/time), repo `du -sb` after.
# Before each measurement the page cache is dropped and the step's inputs (source, repository,
# tool caches) are read back in, so every run starts warm and with the same free memory
# (FRESH_CACHE=0, or no write access to /proc/sys/vm/drop_caches: caches kept, warm corpus).
# `sync` runs before every measurement, so no step pays for an earlier one's writeback.
# Outputs: $BENCH_DIR/results.md (tables), $BENCH_DIR/results.csv (raw), $BENCH_DIR/logs/*.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)
SCRIPTS=$HERE/scripts

SCALE=${SCALE:-1}
BENCH_DIR=${BENCH_DIR:-/tmp/accord-bench}
TOOLS=${TOOLS:-"accord accord-plain accord-max restic borg-lz4 borg-zlib6"}
BASE_TOOL=${BASE_TOOL:-accord}
DUMP_GROWTH=${DUMP_GROWTH:-1}
if [ -z "${FRESH_CACHE:-}" ]; then
    if [ -w /proc/sys/vm/drop_caches ]; then FRESH_CACHE=1; else FRESH_CACHE=0; fi
fi
WARM=()
SETTLE=${SETTLE:-10}   # seconds of quiet before each restore
RESTORE_WARMUP=${RESTORE_WARMUP:-1}   # 1: each tool restores once untimed before the timed restores
# Short steps are repeated and the median run recorded: on this class of VM one
# run can be 30-60% slower than the next for reasons outside the tool (page
# faults on guest memory the host reclaimed cost several microseconds each),
# and a single sample per tool and scale made the doubling ratios noise.
RESTORE_RUNS=${RESTORE_RUNS:-3}
NOCHANGE_RUNS=${NOCHANGE_RUNS:-3}
for v in RESTORE_RUNS NOCHANGE_RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: $v must be a whole number >= 1, not '${!v}'" >&2; exit 2; }
done
RECORD=1   # 1: record; 0: untimed warm-up (shown only); collect: keep for median_run
COLLECTED=()
KEEP=${KEEP:-1}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-nobody}
ACCORD_GIVEN=${ACCORD:+1}
ACCORD=${ACCORD:-$HERE/../.build/release/accord}
BOTH=0

die() { echo "compare.sh: $*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --scale2) SCALE=$(awk -v s="$SCALE" 'BEGIN { print s * 2 }') ;;
        --both) BOTH=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

awk -v s="$SCALE" 'BEGIN { exit !(s + 0 > 0) }' || die "SCALE must be a positive number, got '$SCALE'"
case "$BENCH_DIR" in /*) ;; *) BENCH_DIR=$PWD/$BENCH_DIR ;; esac
BENCH_DIR=${BENCH_DIR%/}
[ -n "$BENCH_DIR" ] && [ "$BENCH_DIR" != / ] || die "refusing BENCH_DIR=/"
for t in $TOOLS; do
    case "$t" in accord|accord-plain|accord-max|accord-before|restic|borg-lz4|borg-zlib6) ;; *) die "unknown tool '$t' in TOOLS" ;; esac
done
if [[ " $TOOLS " == *" accord-before "* ]]; then
    [ -n "${ACCORD_BEFORE:-}" ] && [ -x "$ACCORD_BEFORE" ] || die "TOOLS names accord-before: set ACCORD_BEFORE to an executable accord binary"
    ACCORD_BEFORE=$(cd "$(dirname "$ACCORD_BEFORE")" && pwd)/$(basename "$ACCORD_BEFORE")
fi
# The binary a tool named accord* runs.
accord_bin() { if [ "$1" = accord-before ]; then echo "$ACCORD_BEFORE"; else echo "$ACCORD"; fi; }
# accord_run TOOL args...: the tool's binary with its key environment (encrypted
# tools, accord-before among them as the usage says, read ACCORD_PWF; accord-plain runs with no key configured).
# accord_cmd TOOL sets AC to that command (for /usr/bin/time, which cannot run a function).
accord_cmd() {
    local base=${1%%+*}
    case "$base" in
        accord|accord-max|accord-before) AC=(env ACCORD_PASSWORD_FILE="$ACCORD_PWF" "$(accord_bin "$base")") ;;
        *)                 AC=(env -u ACCORD_PASSWORD_FILE "$(accord_bin "$base")") ;;
    esac
}
accord_run() { local -a AC; accord_cmd "$1"; shift; "${AC[@]}" "$@"; }
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }
has_prefix() { case " $TOOLS" in *" $1"*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------- --both: SCALE then 2*SCALE
if [ "$BOTH" = 1 ]; then
    S1=$SCALE
    S2=$(awk -v s="$SCALE" 'BEGIN { print s * 2 }')
    for s in "$S1" "$S2"; do
        if [ -n "$ACCORD_GIVEN" ]; then export ACCORD; else unset ACCORD; fi
        SCALE=$s BENCH_DIR=$BENCH_DIR/scale-$s "$0"
    done
    python3 "$SCRIPTS/report.py" compare --a "$BENCH_DIR/scale-$S1/results.csv" \
        --b "$BENCH_DIR/scale-$S2/results.csv" --base "$BASE_TOOL" --out "$BENCH_DIR/growth.md"
    echo "(written to $BENCH_DIR/growth.md)" >&2
    exit 0
fi

# ---------------------------------------------------------------- dependencies
need=()
if has_tool restic && ! command -v restic >/dev/null; then need+=(restic); fi
if has_prefix borg && ! command -v borg >/dev/null; then need+=(borgbackup); fi
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null || need+=(python3)
command -v runuser >/dev/null || need+=(util-linux)
command -v diff >/dev/null || need+=(diffutils)
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pgbench" ] && [ -x "$PG_BIN/pg_dump" ] || need+=(postgresql postgresql-client)
# shellcheck source=Benchmarks/scripts/pg.sh
. "$HERE/scripts/pg.sh"   # install_needed, pg_find_bin, make_day1_corpus, as_pg, pg_init, pg_start, pg_stop, pg_dump_to_corpus
install_needed "${need[@]}"
pg_find_bin

if has_prefix accord && [ ! -x "$ACCORD" ]; then
    [ -z "$ACCORD_GIVEN" ] || die "ACCORD=$ACCORD is not executable"
    say "building accord (swift build -c release)"
    (cd "$REPO_ROOT" && swift build -c release)
    [ -x "$ACCORD" ] || die "build did not produce $ACCORD"
fi
[ -x "$ACCORD" ] && ACCORD=$(cd "$(dirname "$ACCORD")" && pwd)/$(basename "$ACCORD")

# Resolve python before HOME moves (pyenv shims look under $HOME).
PY=$(python3 -c 'import sys; print(sys.executable)')

# ---------------------------------------------------------------- work dir (only our own subdirs are wiped)
CORPUS=$BENCH_DIR/corpus
REPOS=$BENCH_DIR/repos
RESTORES=$BENCH_DIR/restore
LOGS=$BENCH_DIR/logs
PGROOT=$BENCH_DIR/pg
CSV=$BENCH_DIR/results.csv
META=$BENCH_DIR/meta.env
mkdir -p "$BENCH_DIR"
rm -rf "$CORPUS" "$REPOS" "$RESTORES" "$LOGS" "$PGROOT" "${BENCH_DIR:?}/tmp" "${BENCH_DIR:?}/home" \
       "$BENCH_DIR/cache" "$CSV" "$META" "$BENCH_DIR/results.md"
mkdir -p "$CORPUS" "$REPOS" "$RESTORES" "$LOGS" "$BENCH_DIR/tmp" "$BENCH_DIR/home" "$BENCH_DIR/cache"

# Keep every tool's caches, config and temp files inside BENCH_DIR.
export HOME=$BENCH_DIR/home TMPDIR=$BENCH_DIR/tmp XDG_CACHE_HOME=$BENCH_DIR/cache \
       XDG_CONFIG_HOME=$BENCH_DIR/home/.config
export BORG_BASE_DIR=$BENCH_DIR/home RESTIC_CACHE_DIR=$BENCH_DIR/cache/restic
export BORG_PASSPHRASE='' BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
RESTIC_PWF=$BENCH_DIR/restic-password
echo "accord-bench-password" > "$RESTIC_PWF"
chmod 600 "$RESTIC_PWF"
# Accord's encrypted repositories: a machine secret (as `accord -a backup` generates
# for /etc/accord/repository.key), or with ACCORD_PASSPHRASE_KDF=1 a typed passphrase.
ACCORD_PWF=$BENCH_DIR/accord-password
if [ "${ACCORD_PASSPHRASE_KDF:-0}" = 1 ]; then echo "accord-bench-password" > "$ACCORD_PWF"
else head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ACCORD_PWF"; fi
chmod 600 "$ACCORD_PWF"

# ---------------------------------------------------------------- throwaway PostgreSQL
PG_RUNNING=0
PGDATA_DIR=$PGROOT/data
PGSOCK=$PGROOT/sock
PGSCALE=$(awk -v s="$SCALE" 'BEGIN { n = int(30 * s + 0.5); print (n < 1 ? 1 : n) }')

# Free page reporting (virtio-balloon): this VM's kernel hands freed guest
# memory back to the host, and the next touch of such a page costs the host a
# fault, 2.5-5.5 µs here. A restore fills ~2 GB of page cache at scale 2, so
# whichever tool first used memory given back after earlier steps paid up to
# 1.5 s more system time, for several restores in a row. Setting the reporting
# order above the largest buddy order (10) stops reporting; touching the free
# memory once then leaves all of it backed for every tool alike. Undone on exit.
REPORTING_ORDER=/sys/module/page_reporting/parameters/page_reporting_order
SAVED_ORDER=""
backed_memory() {
    [ "${BACKED_MEMORY:-1}" = 1 ] && [ -w "$REPORTING_ORDER" ] || return 0
    SAVED_ORDER=$(cat "$REPORTING_ORDER")
    if ! echo 11 > "$REPORTING_ORDER" 2>/dev/null; then SAVED_ORDER=""; return 0; fi
    local free_kb
    free_kb=$(awk '/^MemFree:/ { print $2 }' /proc/meminfo)
    say "free page reporting off for the run (order $SAVED_ORDER -> 11); touching $((free_kb / 1048576)) GiB of free memory once"
    # A failure here (no memory to map) must not end the run: warn and go on.
    if "$PY" - "$(( (free_kb - 1048576) * 1024 ))" <<'PYEOF'
import mmap, sys
n = max(0, int(sys.argv[1])) & ~0xfff
if n:
    m = mmap.mmap(-1, n)
    for i in range(0, n, 4096):
        m[i] = 1
    m.close()
PYEOF
    then :; else say "could not touch the free memory; restores may pay for re-backed pages"; fi
}
restore_reporting() {
    [ -n "$SAVED_ORDER" ] && echo "$SAVED_ORDER" > "$REPORTING_ORDER" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    restore_reporting
    pg_stop
    for d in "$RESTORES"/*; do [ -d "$d" ] && drop_fs "$d"; done
    if [ "$KEEP" = 0 ]; then rm -rf "$REPOS" "$CORPUS" "$PGROOT" "$RESTORES"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# ---------------------------------------------------------------- measurement
echo "scale,step,tool,wall_s,user_s,sys_s,cpu_s,maxrss_kb,repo_bytes,exit,status,reported_added" > "$CSV"
declare -A DISABLED=()
declare -A REPO=()
MEASURE_STDIN=/dev/null

# record STEP TOOL REPO WALL USER SYS RSS EXIT STATUS [REPORTED]
record() {
    local step=$1 tool=$2 repo=$3 wall=$4 user=$5 sys=$6 rss=$7 rc=$8 status=$9 rep=${10:-} size="" cpu=""
    [ -n "$repo" ] && [ -e "$repo" ] && size=$(du -sb "$repo" | cut -f1)
    [ -n "$user" ] && cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    if [ "$RECORD" = 0 ]; then   # an untimed warm-up run: shown, not recorded
        printf '    %-20s %-10s (warm-up run, not recorded: wall %ss)\n' "$tool" "$step" "${wall:--}" >&2
        return
    fi
    local row="$SCALE,$step,$tool,$wall,$user,$sys,$cpu,$rss,$size,$rc,$status,$rep"
    if [ "$RECORD" = collect ]; then   # one of several runs: median_run records one
        COLLECTED+=("$row")
        printf '    %-20s %-10s run %d: wall %6ss  cpu %6ss  rss %8s KB  %s\n' \
            "$tool" "$step" "${#COLLECTED[@]}" "${wall:--}" "${cpu:--}" "${rss:--}" "$status" >&2
        return
    fi
    echo "$row" >> "$CSV"
    printf '    %-20s %-10s wall %6ss  cpu %6ss  rss %8s KB  repo %12s B  %s\n' \
        "$tool" "$step" "${wall:--}" "${cpu:--}" "${rss:--}" "${size:--}" "$status" >&2
}

# median_run: records the collected run with the median wall time (all its
# columns, so CPU and RSS come from the same run); a failed run, if any, instead.
median_run() {
    [ ${#COLLECTED[@]} -gt 0 ] || return 0
    local row n=${#COLLECTED[@]} step tool wall cpu rss size status
    row=$(printf '%s\n' "${COLLECTED[@]}" | awk -F, '$11 !~ /^ok/' | head -n1)
    [ -n "$row" ] || row=$(printf '%s\n' "${COLLECTED[@]}" | LC_ALL=C sort -t, -k4,4g | sed -n "$(( (n + 1) / 2 ))p")
    COLLECTED=()
    echo "$row" >> "$CSV"
    IFS=, read -r _ step tool wall _ _ cpu rss size _ status _ <<<"$row"
    printf '    %-20s %-10s wall %6ss  cpu %6ss  rss %8s KB  repo %12s B  %s (median of %d)\n' \
        "$tool" "$step" "${wall:--}" "${cpu:--}" "${rss:--}" "${size:--}" "$status" "$n" >&2
}

# measure STEP TOOL REPO cmd...   (stdin from $MEASURE_STDIN); sets M_RC
measure() {
    local step=$1 tool=$2 repo=$3; shift 3
    local tf=$LOGS/$step.$tool.time log=$LOGS/$step.$tool.log wall user sys rss status rep=""
    M_RC=0
    # Flush the previous step's dirty pages first: otherwise the kernel writes
    # them back during this measurement and charges one tool for another's I/O.
    sync
    if [ "$CACHES_READY" != 1 ]; then fresh_caches; fi
    CACHES_READY=0
    # Wall time from bash's microsecond clock: GNU time's %e has 10 ms steps,
    # 4% of a 0.25 s no-change backup, too coarse for the scale-2/scale-1 ratio.
    local t0=$EPOCHREALTIME t1
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" <"$MEASURE_STDIN" >"$log" 2>&1 || M_RC=$?
    t1=$EPOCHREALTIME
    read -r wall user sys rss < <(tail -n1 "$tf")
    wall=$(awk -v a="${t0/,/.}" -v b="${t1/,/.}" 'BEGIN { printf "%.3f", b - a }')
    case "$M_RC" in
        0) status=ok ;;
        3) case "$tool" in accord*) status="ok(exit 3)" ;; *) status="fail(exit 3)" ;; esac ;;
        *) status="fail(exit $M_RC)" ;;
    esac
    case "$tool" in accord*)
        if [ "$step" != restore ] && [[ $status == ok* ]]; then
            rep=$(accord_run "$tool" snapshots list -d "$repo" --json 2>/dev/null | "$PY" "$SCRIPTS/report.py" accord-added || true)
        fi ;;
    esac
    if [[ $status != ok* ]]; then
        echo "    !! $tool $step failed (exit $M_RC); last lines of $log:" >&2
        tail -n 5 "$log" | sed 's/^/       /' >&2
    fi
    record "$step" "$tool" "$repo" "$wall" "$user" "$sys" "$rss" "$M_RC" "$status" "$rep"
}

# Where allowed, every measurement starts from the same memory state: the page
# cache dropped, then only the step's inputs ($WARM) read back in. Otherwise the
# caches the earlier steps filled (other tools' repositories and restores) leave
# little free memory by scale 2, and whichever tool runs then pays for direct
# reclaim in its own system time. A restore calls this before making its target
# filesystem, whose metadata must stay cached like any fresh filesystem's.
CACHES_READY=0
fresh_caches() {
    sync
    if [ "$FRESH_CACHE" = 1 ]; then
        echo 3 2>/dev/null > /proc/sys/vm/drop_caches || true
        local w
        for w in "${WARM[@]}"; do
            [ -e "$w" ] && find "$w" -type f -print0 | xargs -0 -r cat > /dev/null
        done
    fi
    CACHES_READY=1
}

skip() {  # skip STEP TOOL: record n/a for a disabled tool
    record "$1" "$2" "${REPO[$2]:-}" "" "" "" "" "" "n/a(${DISABLED[$2]})"
}

init_repo() {  # init_repo TOOL REPO (untimed)
    local tool=$1 repo=$2 rc=0
    REPO[$tool]=$repo
    case "$tool" in
        accord-plain*) accord_run "$tool" init --encryption none -d "$repo" ;;
        accord*) accord_run "$tool" init -d "$repo" ;;
        restic*) restic -r "$repo" --password-file "$RESTIC_PWF" init ;;
        borg*)   borg init -e none "$repo" ;;
    esac >"$LOGS/init.$tool.log" 2>&1 || rc=$?
    if [ $rc != 0 ]; then
        DISABLED[$tool]="init failed"
        echo "    !! init $tool failed; see $LOGS/init.$tool.log" >&2
    fi
}

# backup STEP TOOL WHAT   (WHAT: tree | dumpfile | cmd | stdin)
backup() {
    local step=$1 tool=$2 what=$3 base=${2%%+*} repo=${REPO[$2]}
    local -a cmd AC
    local src=$CORPUS
    [ "$what" = dumpfile ] && src=$CORPUS/db/pgdump.sql
    if [ -n "${DISABLED[$tool]:-}" ]; then skip "$step" "$tool"; return; fi
    MEASURE_STDIN=/dev/null
    WARM=("$src" "$repo" "$BENCH_DIR/cache" "$BENCH_DIR/home")
    case "$base:$what" in
        accord*:cmd)        accord_cmd "$base"; cmd=("${AC[@]}" backup -d "$repo" --tag "$step" --command "/db/pgdump.sql=cat $CORPUS/db/pgdump.sql") ;;
        accord-max:*)       accord_cmd "$base"; cmd=("${AC[@]}" backup -d "$repo" --compression max --tag "$step" "$src") ;;
        accord*:*)          accord_cmd "$base"; cmd=("${AC[@]}" backup -d "$repo" --tag "$step" "$src") ;;
        restic:stdin)       cmd=(restic -r "$repo" --password-file "$RESTIC_PWF" backup --tag "$step" --stdin --stdin-filename pgdump.sql)
                            MEASURE_STDIN=$CORPUS/db/pgdump.sql ;;
        restic:*)           cmd=(restic -r "$repo" --password-file "$RESTIC_PWF" backup --tag "$step" "$src") ;;
        borg-lz4:*)         cmd=(borg create --compression lz4 "$repo::$step" "$src") ;;
        borg-zlib6:*)       cmd=(borg create --compression "zlib,6" "$repo::$step" "$src") ;;
    esac
    if [ "$step" = nochange ] && [ "$NOCHANGE_RUNS" -gt 1 ]; then
        local run i
        RECORD=collect
        for ((run = 1; run <= NOCHANGE_RUNS; run++)); do
            # borg archive names must differ (REPO::NAME); a tag may repeat
            for i in "${!cmd[@]}"; do
                [ $run -gt 1 ] && [[ ${cmd[$i]} == "$repo::"* ]] && cmd[$i]="$repo::$step-$run"
            done
            measure "$step" "$tool" "$repo" "${cmd[@]}"
            [ "$M_RC" = 0 ] || [ "$M_RC" = 3 ] || break
        done
        RECORD=1
        median_run
    else
        measure "$step" "$tool" "$repo" "${cmd[@]}"
    fi
    MEASURE_STDIN=/dev/null
    if [ "$M_RC" != 0 ] && [ "$M_RC" != 3 ]; then
        if [ "$base" = accord-max ] && grep -qiE 'compression|unknown|unrecogni|usage|invalid' "$LOGS/$step.$tool.log"; then
            DISABLED[$tool]="--compression max rejected"
            sed -i '$ s/,fail(exit [0-9]*),/,n\/a(--compression max rejected),/' "$CSV"
        elif [ "$step" = initial ] || [ "$step" = dump-day1 ]; then
            DISABLED[$tool]="$step failed"
        fi
    fi
}

restore() {
    local tool=$1 repo=${REPO[$1]} target=$RESTORES/$1 status arch root round
    local -a AC
    if [ -n "${DISABLED[$tool]:-}" ]; then skip restore "$tool"; return; fi
    # Each tool restores once untimed, then RESTORE_RUNS times timed, and the
    # median run is recorded: whichever restore came first after the backup
    # steps was up to 40% slower than the same tool's next one, and at scale 2
    # the slowdown once lasted two restores, so a fixed order or one sample
    # would charge one tool for it.
    local -a rounds=()
    [ "$RESTORE_WARMUP" = 1 ] && rounds+=(warmup)
    local i
    for ((i = 0; i < RESTORE_RUNS; i++)); do rounds+=(timed); done
    local left=$RESTORE_RUNS
    for round in "${rounds[@]}"; do
        rm -rf "$target"; mkdir -p "$target"
        WARM=("$repo" "$BENCH_DIR/cache" "$BENCH_DIR/home")
        # Let the kernel finish with the previous restore's filesystem (unmount,
        # loop detach, freeing its image's blocks) before this one starts.
        sync; sleep "$SETTLE"
        fresh_caches
        fresh_fs "$target"
        if [ "$round" = warmup ]; then RECORD=0; else RECORD=collect; left=$((left - 1)); fi
        case "$tool" in
            accord*) accord_cmd "$tool"; measure restore "$tool" "$repo" "${AC[@]}" restore -d "$repo" latest --target "$target" ;;
            restic)  measure restore "$tool" "$repo" restic -r "$repo" --password-file "$RESTIC_PWF" restore latest --target "$target" ;;
            borg*)   arch=$(borg list --short --last 1 "$repo" 2>/dev/null) || arch=change
                     measure restore "$tool" "$repo" env -C "$target" borg extract "$repo::$arch" ;;
        esac
        RECORD=1
        # keep the last timed restore for verification
        if [ "$round" = warmup ] || [ "$left" -gt 0 ]; then drop_fs "$target"; fi
        [ "$round" = warmup ] || [ "$M_RC" = 0 ] || [ "$M_RC" = 3 ] || break
    done
    median_run
    # verification, outside the timing: find where the tool put the tree, then diff it
    if [ "$M_RC" = 0 ] || [ "$M_RC" = 3 ]; then
        root=$(find "$target" -path '*/db/pgdump.sql' -type f -print -quit)
        root=${root%/db/pgdump.sql}
        if [ -z "$root" ]; then
            status="FAILED(no db/pgdump.sql in restore)"
        elif diff -rq --no-dereference "$CORPUS" "$root" >"$LOGS/verify.$tool.log" 2>&1; then
            status=ok
            if ! diff -q <(meta_list "$CORPUS") <(meta_list "$root") >/dev/null; then
                diff <(meta_list "$CORPUS") <(meta_list "$root") >>"$LOGS/verify.$tool.log" || true
                status="ok(content identical; mode/mtime differ)"
            fi
        else
            status="FAILED(content differs: $(wc -l <"$LOGS/verify.$tool.log") diff lines)"
        fi
        echo "    verify $tool: $status" >&2
        sed -i "\$ s/,ok[^,]*,\([^,]*\)\$/,$(printf '%s' "$status" | sed 's/[\/&]/\\&/g'),\1/" "$CSV"
    fi
    drop_fs "$target"
}

# Every restore goes to a freshly made ext4 filesystem (a loop-mounted sparse
# image), so no tool pays for another's files: on a used ext4, creating files
# after tens of thousands were deleted is several times slower (the inode
# allocator skips recently deleted inodes), for minutes. The image is 4x the
# corpus (sparse, so free): when free space falls below twice the dirty data,
# ext4 makes every writer wait for writeback (ext4_nonda_switch), which at 1.5x
# throttled the fastest restore most (scale 2: 7-9 s instead of 3.5 s). Without
# loop devices (or not root), restores go to plain directories kept until the end.
FS_IMAGES=()
fresh_fs() {  # fresh_fs DIR
    local img=$BENCH_DIR/restore-fs.$(basename "$1").img size
    size=$(( $(du -sb "$CORPUS" | cut -f1) * 4 + (1 << 30) ))
    if truncate -s "$size" "$img" 2>/dev/null && mkfs.ext4 -q -F "$img" >/dev/null 2>&1 \
       && mount -o loop "$img" "$1" 2>/dev/null; then
        FS_IMAGES+=("$img")
        sync
    else
        rm -f "$img"
        [ -n "${FS_WARNED:-}" ] || echo "    (no loop mount: restoring into plain directories)" >&2
        FS_WARNED=1
    fi
}
drop_fs() {  # drop_fs DIR: unmount and delete the image if DIR is a mount point
    if mountpoint -q "$1" 2>/dev/null; then
        umount "$1" && rm -f "$BENCH_DIR/restore-fs.$(basename "$1").img"
    fi
}
meta_list() {  # regular files: path mode size mtime(s)
    (cd "$1" && find . -type f -printf '%P %m %s %T@\n' | awk '{ split($4, t, "."); $4 = t[1]; print }' | sort)
}

# round_robin STEPFUNC TOOL... : each step starts with the next tool in turn
STEP_NO=0
round_robin() {
    local fn=$1; shift
    local -a list=("$@")
    local n=${#list[@]} i
    [ "$n" -gt 0 ] || return 0
    for ((i = 0; i < n; i++)); do
        $fn "${list[$(((STEP_NO + i) % n))]}"
    done
    STEP_NO=$((STEP_NO + 1))
}
step_initial()  { backup initial  "$1" tree; }
step_nochange() { backup nochange "$1" tree; }
step_change()   { backup change   "$1" tree; }
step_dump1()    { case "$1" in *+cmd) backup dump-day1 "$1" cmd ;; *+stdin) backup dump-day1 "$1" stdin ;; *) backup dump-day1 "$1" dumpfile ;; esac; }
step_dump2()    { case "$1" in *+cmd) backup dump-day2 "$1" cmd ;; *+stdin) backup dump-day2 "$1" stdin ;; *) backup dump-day2 "$1" dumpfile ;; esac; }

# ---------------------------------------------------------------- corpus, day 1
T0=$(date +%s)
make_day1_corpus
DUMP1=$(stat -c %s "$CORPUS/db/pgdump.sql")
DUMP1_SUM=$(sha256sum "$CORPUS/db/pgdump.sql" | cut -d' ' -f1)
say "corpus ready in $(( $(date +%s) - T0 )) s: $(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" -type f | wc -l) files"

# ---------------------------------------------------------------- tools
read -r -a MAIN_TOOLS <<<"$TOOLS"
DUMP_TOOLS=()
if [ "$DUMP_GROWTH" = 1 ]; then
    for t in "${MAIN_TOOLS[@]}"; do DUMP_TOOLS+=("$t+dumpfile"); done
    has_tool accord && DUMP_TOOLS+=("accord+cmd")
    has_tool accord-plain && DUMP_TOOLS+=("accord-plain+cmd")
    has_tool restic && DUMP_TOOLS+=("restic+stdin")
fi
for t in "${MAIN_TOOLS[@]}" "${DUMP_TOOLS[@]}"; do
    init_repo "$t" "$REPOS/$t"
done

backed_memory
# Warm the page cache with the whole corpus (and let writeback settle), so the
# first tool measured does not pay for pages the others then find cached.
find "$CORPUS" -type f -print0 | xargs -0 cat > /dev/null
sync
say "step 1: initial backup";   round_robin step_initial  "${MAIN_TOOLS[@]}"
say "step 2: no-change backup"; round_robin step_nochange "${MAIN_TOOLS[@]}"
if [ ${#DUMP_TOOLS[@]} -gt 0 ]; then
    say "dump alone, day 1";    round_robin step_dump1 "${DUMP_TOOLS[@]}"
fi

# ---------------------------------------------------------------- day 2 change
ACCOUNTS=$((PGSCALE * 100000))
NUPD=$(( ACCOUNTS / 500 ))   # 0.2% of the rows
say "day-2 change: $NUPD scattered account updates + re-dump; ~1% of small files; CSV insert"
pg_change_day2   # updates NUPD scattered accounts, re-dumps into the corpus
"$PY" "$SCRIPTS/corpus.py" day2 --root "$CORPUS" --scale "$SCALE"
DUMP2=$(stat -c %s "$CORPUS/db/pgdump.sql")

say "step 3: after-change backup"; round_robin step_change "${MAIN_TOOLS[@]}"
if [ ${#DUMP_TOOLS[@]} -gt 0 ]; then
    say "dump alone, day 2";       round_robin step_dump2 "${DUMP_TOOLS[@]}"
fi
say "step 4: full restore";        round_robin restore "${MAIN_TOOLS[@]}"
rm -rf "$RESTORES"

# ---------------------------------------------------------------- report
{
    echo "scale=$SCALE (pgbench scale $PGSCALE, $NUPD rows updated on day 2)"
    echo "corpus bytes (day 2)=$(du -sb "$CORPUS" | cut -f1) in $(find "$CORPUS" -type f | wc -l) files"
    for d in db projects tables blobs config; do
        echo "  $d/=$(du -sb "$CORPUS/$d" | cut -f1) bytes, $(find "$CORPUS/$d" -type f | wc -l) files"
    done
    echo "dump day-1 bytes=$DUMP1"
    echo "dump day-2 bytes=$DUMP2"
    echo "dump sha256 day 1 / day 2=${DUMP1_SUM:0:16}… / $(sha256sum "$CORPUS/db/pgdump.sql" | cut -c1-16)…"
    echo "machine=$(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r)"
    echo "versions=accord: $( [ -x "$ACCORD" ] && ("$ACCORD" --version 2>/dev/null || echo '?') | head -n1 || echo n/a); $(restic version 2>/dev/null | cut -d' ' -f1-2 || echo 'restic n/a'); $(borg --version 2>/dev/null || echo 'borg n/a')"
    echo "notes=$([ "$FRESH_CACHE" = 1 ] && echo "page cache dropped before each measurement, then the step's inputs (source, repository, tool caches) read back in" || echo "page cache not dropped (warm reads)"); restic always encrypts; accord and accord-max repos are encrypted (format 3, $([ "${ACCORD_PASSPHRASE_KDF:-0}" = 1 ] && echo "typed passphrase: scrypt N=2^17 per command" || echo "64-hex machine secret: HKDF")), accord-plain is not; borg repos are -e none; borg has no dump-specific chunker; RSS is the peak of the largest process"
} > "$META"
say "results"
"$PY" "$SCRIPTS/report.py" table --csv "$CSV" --meta "$META" --base "$BASE_TOOL" --out "$BENCH_DIR/results.md"
echo >&2
echo "(written to $BENCH_DIR/results.md and $BENCH_DIR/results.csv; logs in $LOGS; total $(( $(date +%s) - T0 )) s)" >&2

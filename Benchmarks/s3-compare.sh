#!/usr/bin/env bash
# Accord against restic 0.14 on S3: one loopback `rclone serve s3`, one corpus, one run.
#
# Usage:
#   nice -n 10 Benchmarks/s3-compare.sh                      # default corpus (~400 MB), RUNS=3
#   SCALE=0.05 RUNS=1 nice -n 10 Benchmarks/s3-compare.sh    # quick smoke run (~20 MB)
#   CORPUS=/srv/data Benchmarks/s3-compare.sh                # your own tree (copied first, see below)
#
# Environment:
#   ACCORD      accord binary (default: <repo>/.build/release/accord; `swift build -c release`)
#   RESTIC      restic binary (default: restic on PATH; the issue's figures are against 0.14)
#   BENCH_DIR   work dir (default /tmp/accord-s3-bench); everything goes below it and is
#               remade each run: s3/ (the server: storage, keys, rclone.log), corpus/, restore/,
#               logs/, cache/ (both tools' local caches, XDG_CACHE_HOME), results.csv, s3-results.md
#   CORPUS      a directory to back up instead of the generated corpus. It is copied to
#               BENCH_DIR/corpus first (`cp -a`), since the after-change step edits the tree;
#               the original is only read
#   SCALE       size factor of the generated corpus (default 1: 5,000 small files ~45 MB,
#               3 files of 50 MB, a ~200 MB pg_dump-like text file; seeded, so the same SCALE
#               gives the same bytes)
#   RUNS        timed restores per tool (default 3), the run with the median wall time recorded
#   NOCHANGE_RUNS  no-change backups per tool (default 3, cheap), median recorded; the initial
#               and after-change backups change the repository, so they run once
#
# Steps, each for both tools (the tool that goes first alternates per step/run):
#   initial backup, no-change backup, after-change backup (~1% of the files get a line
#   appended, 4 KiB rewritten in the middle of the largest file and 1 MiB×SCALE appended to it,
#   50 files added, 10 removed), restore of the latest snapshot into an empty directory,
#   checked with `diff -r` against the corpus outside the timing.
# Repositories: accord encrypted (default `init`, a 64-hex-digit secret in ACCORD_PASSWORD_FILE,
#   as compare.sh and the AE5 flow do) at s3:http://127.0.0.1:PORT/accord-test/accord-bench;
#   restic (always encrypted, RESTIC_PASSWORD_FILE) at s3:http://127.0.0.1:PORT/restic-bench.
#   Credentials: the server's fresh per-run keys in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
#   (scripts/testenv/s3-start.sh), never on a command line.
# Per measurement: wall time (bash's microsecond clock), peak RSS (/usr/bin/time -v "Maximum
#   resident set size"), and requests: the request lines rclone logged at DEBUG level while the
#   command ran ("serve s3: GET OBJECT", "CREATE OBJECT", "HEAD OBJECT", "LIST BUCKET", ...), the
#   same method for both tools. Accord's own count ("s3: N requests", S3Backend.statistics) is
#   shown beside it as a cross-check. The server's own CPU and memory are in no column.
# Output: a markdown table (ratios accord/restic against the issue's goals: wall ≤ 0.6×,
#   RSS ≤ restic's) on stdout and in BENCH_DIR/s3-results.md; every run in results.csv.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)
TESTENV=$REPO_ROOT/scripts/testenv

ACCORD=${ACCORD:-$REPO_ROOT/.build/release/accord}
RESTIC=${RESTIC:-restic}
BENCH_DIR=${BENCH_DIR:-/tmp/accord-s3-bench}
SCALE=${SCALE:-1}
RUNS=${RUNS:-3}
NOCHANGE_RUNS=${NOCHANGE_RUNS:-3}

die() { echo "s3-compare.sh: $*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*" >&2; }

case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac
for v in RUNS NOCHANGE_RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number >= 1, not '${!v}'"
done
awk -v s="$SCALE" 'BEGIN { exit !(s + 0 > 0 && s + 0 <= 100) }' || die "SCALE must be a number in (0, 100], not '$SCALE'"
case "$BENCH_DIR" in /*) ;; *) BENCH_DIR=$PWD/$BENCH_DIR ;; esac
BENCH_DIR=${BENCH_DIR%/}
[ -n "$BENCH_DIR" ] && [ "$BENCH_DIR" != / ] || die "refusing BENCH_DIR=/"
[[ $BENCH_DIR != *[[:space:]]* ]] || die "BENCH_DIR must not contain spaces: '$BENCH_DIR'"
[ -x "$ACCORD" ] || die "no accord binary at $ACCORD (build one: swift build -c release, or set ACCORD)"
ACCORD=$(cd "$(dirname "$ACCORD")" && pwd)/$(basename "$ACCORD")
if [ -n "${CORPUS:-}" ]; then
    [ -d "$CORPUS" ] || die "CORPUS=$CORPUS is not a directory"
    CORPUS_SRC=$(cd "$CORPUS" && pwd)
    case "$CORPUS_SRC/" in "$BENCH_DIR"/*) die "CORPUS must not lie inside BENCH_DIR (it is remade)" ;; esac
fi

# ---------------------------------------------------------------- dependencies
need=()
command -v "$RESTIC" >/dev/null || need+=(restic)
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null || need+=(python3)
command -v diff >/dev/null || need+=(diffutils)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get install -y -q "${need[@]}" >&2 || die "apt-get install ${need[*]} failed"
fi
RESTIC=$(command -v "$RESTIC")
PY=$(command -v python3)   # before HOME moves (pyenv shims look under $HOME)
"$RESTIC" version | grep -q '^restic 0\.14\.' || echo "    (note: $("$RESTIC" version | cut -d' ' -f1-2), not 0.14)" >&2

# ---------------------------------------------------------------- work dir, server
S3DIR=$BENCH_DIR/s3
[ -d "$S3DIR" ] && "$TESTENV/s3-stop.sh" "$S3DIR" >/dev/null 2>&1 || true
rm -rf -- "$S3DIR" "$BENCH_DIR/corpus" "$BENCH_DIR/restore" "$BENCH_DIR/logs" "$BENCH_DIR/cache" \
          "$BENCH_DIR/home" "$BENCH_DIR/tmp" "$BENCH_DIR/results.csv" "$BENCH_DIR/s3-results.md"
mkdir -p "$BENCH_DIR/logs" "$BENCH_DIR/cache" "$BENCH_DIR/home" "$BENCH_DIR/tmp" "$BENCH_DIR/restore"
chmod 0700 "$BENCH_DIR"
LOGS=$BENCH_DIR/logs
CSV=$BENCH_DIR/results.csv
CORPUS=$BENCH_DIR/corpus

cleanup() { "$TESTENV/s3-stop.sh" "$S3DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting rclone serve s3 (log level DEBUG: every request is a line of $S3DIR/rclone.log)"
# rclone reads RCLONE_LOG_LEVEL from its environment; s3-start.sh passes that through.
RCLONE_LOG_LEVEL=DEBUG "$TESTENV/s3-start.sh" "$S3DIR" >/dev/null 2>"$LOGS/s3-start.log" \
    || { cat "$LOGS/s3-start.log" >&2; die "the S3 server did not start"; }
set -a; . "$S3DIR/env"; set +a   # S3_ENDPOINT, S3_BUCKET, S3_STORAGE, AWS_* (the keys stay in the environment)
RESTIC_BUCKET=restic-bench
mkdir -m 0700 "$S3_STORAGE/$RESTIC_BUCKET"   # a bucket is a directory of the server's storage
ACCORD_REPO="s3:$S3_ENDPOINT/$S3_BUCKET/accord-bench"
RESTIC_REPO="s3:$S3_ENDPOINT/$RESTIC_BUCKET"

# Both tools' caches, config and temp files inside BENCH_DIR; no ~/.aws profile.
export HOME=$BENCH_DIR/home TMPDIR=$BENCH_DIR/tmp XDG_CACHE_HOME=$BENCH_DIR/cache \
       XDG_CONFIG_HOME=$BENCH_DIR/home/.config AWS_PROFILE= RESTIC_CACHE_DIR=$BENCH_DIR/cache/restic
umask 077
export RESTIC_PASSWORD_FILE=$BENCH_DIR/restic-password ACCORD_PASSWORD_FILE=$BENCH_DIR/accord-password
echo "restic-s3-bench-password" > "$RESTIC_PASSWORD_FILE"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ACCORD_PASSWORD_FILE"
umask 022

# ---------------------------------------------------------------- corpus
# corpus_tool gen ROOT SCALE | change ROOT SCALE   (seeded: the same SCALE gives the same bytes)
corpus_tool() {
    "$PY" - "$@" <<'PY'
import os, random, sys

cmd, root, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
MB = 1 << 20

def vocab(rng, n=4000):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 11))) for _ in range(n)]

def text(rng, words, size):
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choices(words, k=rng.randint(3, 14))) + "\n"
        out.append(line); n += len(line)
    return "".join(out).encode()[:size]

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

def gen():
    rng = random.Random(16)
    words = vocab(rng)
    # ~5,000 small files in directories of ~20 (two levels), log-uniform 200 B - 64 KiB,
    # four in five text, the rest random bytes
    n = max(1, round(5000 * scale))
    for i in range(n):
        size = int(200 * (64 * 1024 / 200) ** rng.random())
        d = f"{root}/src/d{i // 400:02d}/s{(i // 20) % 20:02d}"
        if rng.random() < 0.8:
            write(f"{d}/file{i:05d}.txt", text(rng, words, size))
        else:
            write(f"{d}/blob{i:05d}.bin", rng.randbytes(size))
    # three 50 MB files: two random, one alternating 1 MiB of text and 1 MiB random
    big = max(1, int(50 * MB * scale))
    write(f"{root}/big/media-1.bin", rng.randbytes(big))
    write(f"{root}/big/media-2.bin", rng.randbytes(big))
    parts, left, k = [], big, 0
    while left > 0:
        m = min(MB, left)
        parts.append(text(rng, words, m) if k % 2 == 0 else rng.randbytes(m)); left -= m; k += 1
    write(f"{root}/big/archive-3.tar", b"".join(parts))
    # a ~200 MB pg_dump-like file: COPY blocks of tab-separated rows
    target = max(1, int(200 * MB * scale))
    os.makedirs(f"{root}/db", exist_ok=True)
    with open(f"{root}/db/dump.sql", "wb") as f:
        f.write(b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\n")
        written, table, rid = 0, 0, 1
        cities = words[:300]
        notes = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(20000)]
        bits = rng.getrandbits
        while written < target:
            head = f"\nCOPY public.orders_{table} (id, customer, city, note, amount, created) FROM stdin;\n"
            rows = [head]
            for _ in range(20000):      # two 64-bit draws a row: Python is the bottleneck here
                a, b = bits(64), bits(64)
                rows.append(f"{rid}\tcustomer_{a % 1000003}\t{cities[(a >> 20) % 300]}\t{notes[(a >> 29) % 20000]}\t"
                            f"{(b % 10**7) / 100:.2f}\t2026-{(b >> 24) % 12 + 1:02d}-{(b >> 28) % 28 + 1:02d} "
                            f"{(b >> 33) % 24:02d}:{(b >> 38) % 60:02d}:{(b >> 44) % 60:02d}\n")
                rid += 1
            rows.append("\\.\n")
            data = "".join(rows).encode()
            f.write(data); written += len(data); table += 1

def change():
    rng = random.Random(17)
    words = vocab(random.Random(16))
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n))]
    files.sort()
    if not files:
        sys.exit("change: no regular files under " + root)
    largest = max(files, key=lambda p: (os.path.getsize(p), p))
    rest = [p for p in files if p != largest]
    for p in rng.sample(rest, min(len(rest), max(1, len(files) // 100))):
        with open(p, "ab") as f:
            f.write(b"changed on day 2: " + text(rng, words, 60))
    with open(largest, "r+b") as f:     # 4 KiB rewritten in the middle, 1 MiB x SCALE appended
        size = os.path.getsize(largest)
        f.seek(size // 2); f.write(text(rng, words, min(4096, size // 2 + 1)))
        f.seek(0, 2); f.write(text(rng, words, max(4096, int(MB * scale))))
    for i in range(50):
        write(f"{root}/day2-new/new{i:02d}.txt", text(rng, words, rng.randint(100, 20000)))
    for p in rng.sample(rest, min(10, len(rest) // 10)):
        if os.path.exists(p):
            os.unlink(p)
    print(f"changed: {max(1, len(files) // 100)} files appended, {largest} rewritten + appended, 50 added, "
          f"{min(10, len(rest) // 10)} removed", file=sys.stderr)

{"gen": gen, "change": change}[cmd]()
PY
}

T0=$(date +%s)
if [ -n "${CORPUS_SRC:-}" ]; then
    say "copying $CORPUS_SRC to $CORPUS (the after-change step edits the copy)"
    cp -a -- "$CORPUS_SRC" "$CORPUS"
else
    say "generating the corpus (SCALE=$SCALE, seeded)"
    corpus_tool gen "$CORPUS" "$SCALE"
fi
CORPUS_BYTES=$(du -sb "$CORPUS" | cut -f1)
CORPUS_FILES=$(find "$CORPUS" -type f | wc -l)
say "corpus ready in $(( $(date +%s) - T0 )) s: $CORPUS_BYTES bytes, $CORPUS_FILES files"

# ---------------------------------------------------------------- measuring
echo "step,tool,run,wall_s,rss_kb,requests,self_requests,rc" > "$CSV"
log_lines() { wc -l < "$S3DIR/rclone.log"; }
# Request lines of rclone's log after line $1: "serve s3: VERB ..." in capitals
# (LIST BUCKET, GET OBJECT, HEAD OBJECT, CREATE OBJECT, DELETE, ...); its detail
# lines ("serve s3: Listed ...", "bucketname: ...") and refusals are not in capitals.
# request_lines_since N: those lines; kept per measurement in logs/*.requests.
request_lines_since() { tail -n +"$(($1 + 1))" "$S3DIR/rclone.log" | grep -E 'serve s3: [A-Z]{3,}( [A-Z]{3,})*(:| |$)' || true; }
# request_kinds FILE: "GET OBJECT 12, HEAD OBJECT 3, ..." (most first)
request_kinds() {
    grep -oE 'serve s3: [A-Z]{3,}( [A-Z]{3,})*' "$1" | sed 's/^serve s3: //' | sort | uniq -c | sort -rn \
        | awk '{ n = $1; $1 = ""; sub(/^ /, ""); printf "%s%s %d", (NR > 1 ? ", " : ""), $0, n }'
}

# measure STEP TOOL RUN cmd... ; sets M_RC, M_WALL
measure() {
    local step=$1 tool=$2 run=$3; shift 3
    local tf=$LOGS/$step.$tool.$run.time log=$LOGS/$step.$tool.$run.log l0 t0 t1 rss req self
    sync   # no step pays for an earlier one's writeback
    l0=$(log_lines)
    M_RC=0
    t0=$EPOCHREALTIME
    /usr/bin/time -v -o "$tf" "$@" </dev/null >"$log" 2>&1 || M_RC=$?
    t1=$EPOCHREALTIME
    sleep 0.3   # let the server finish logging the last request
    M_WALL=$(awk -v a="${t0/,/.}" -v b="${t1/,/.}" 'BEGIN { printf "%.3f", b - a }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$tf")
    request_lines_since "$l0" > "$LOGS/$step.$tool.$run.requests"
    req=$(wc -l < "$LOGS/$step.$tool.$run.requests")
    self=$(sed -nE 's/^s3: ([0-9]+) requests.*/\1/p' "$log" | tail -n1)
    echo "$step,$tool,$run,$M_WALL,${rss:-},$req,${self:-},$M_RC" >> "$CSV"
    printf '    %-7s %-9s run %d: wall %8ss  rss %8s KB  requests %6s%s%s\n' "$tool" "$step" "$run" "$M_WALL" \
        "${rss:--}" "$req" "${self:+ (accord counts $self)}" "$([ "$M_RC" = 0 ] || echo "  FAILED exit $M_RC")" >&2
    if [ "$M_RC" != 0 ]; then tail -n 5 "$log" | sed 's/^/        /' >&2; fi
}

accord_backup() { measure "$1" accord "$2" "$ACCORD" backup -d "$ACCORD_REPO" --tag "$1" "$CORPUS"; }
restic_backup() { measure "$1" restic "$2" "$RESTIC" -r "$RESTIC_REPO" backup --tag "$1" "$CORPUS"; }

STEP_NO=0
# next_order: ORDER is the tools in this step's (or restore run's) order; who goes first alternates.
next_order() { if [ $((STEP_NO % 2)) = 0 ]; then ORDER="accord restic"; else ORDER="restic accord"; fi; STEP_NO=$((STEP_NO + 1)); }

backup_step() {  # backup_step STEP RUNS
    local step=$1 runs=$2 run tool
    for ((run = 1; run <= runs; run++)); do
        next_order
        for tool in $ORDER; do
            "${tool}_backup" "$step" "$run"
            [ "$M_RC" = 0 ] || die "$tool $step backup failed (log $LOGS/$step.$tool.$run.log)"
        done
    done
}

# Where the restore put the corpus: both tools keep the absolute path under the target.
restored_root() { if [ -d "$1$CORPUS" ]; then echo "$1$CORPUS"; else echo ""; fi; }

VERIFY_accord="not run"; VERIFY_restic="not run"
restore_step() {
    local run tool target root
    for ((run = 1; run <= RUNS; run++)); do
        next_order
        for tool in $ORDER; do
            # Every restore gets a directory of its own, all deleted after the step, so no
            # restore runs just after thousands of files were deleted (ext4 then creates files
            # more slowly: see compare.sh's notes in README.md).
            target=$BENCH_DIR/restore/$tool.$run
            mkdir -p "$target"
            case "$tool" in
                accord) measure restore accord "$run" "$ACCORD" restore -d "$ACCORD_REPO" latest --target "$target" ;;
                restic) measure restore restic "$run" "$RESTIC" -r "$RESTIC_REPO" restore latest --target "$target" ;;
            esac
            [ "$M_RC" = 0 ] || die "$tool restore failed (log $LOGS/restore.$tool.$run.log)"
        done
    done
    for tool in accord restic; do   # each tool's last restore is checked, outside the timing
        target=$BENCH_DIR/restore/$tool.$RUNS
        root=$(restored_root "$target")
        if [ -z "$root" ]; then
            printf -v "VERIFY_$tool" '%s' "FAILED (no $CORPUS under $target)"
        elif diff -r --no-dereference "$CORPUS" "$root" >"$LOGS/verify.$tool.log" 2>&1; then
            printf -v "VERIFY_$tool" '%s' "identical (diff -r)"
        else
            printf -v "VERIFY_$tool" '%s' "FAILED ($(wc -l <"$LOGS/verify.$tool.log") diff lines, $LOGS/verify.$tool.log)"
        fi
        local v="VERIFY_$tool"; echo "    verify $tool: ${!v}" >&2
    done
    rm -rf -- "$BENCH_DIR/restore"
}

# ---------------------------------------------------------------- run
say "init (untimed)"
l0=$(log_lines)
"$ACCORD" init -d "$ACCORD_REPO" >"$LOGS/init.accord.log" 2>&1 || { cat "$LOGS/init.accord.log" >&2; die "accord init failed"; }
"$RESTIC" -r "$RESTIC_REPO" init >"$LOGS/init.restic.log" 2>&1 || { cat "$LOGS/init.restic.log" >&2; die "restic init failed"; }
find "$CORPUS" -type f -print0 | xargs -0 cat > /dev/null   # the corpus in the page cache for whoever goes first

say "step 1: initial backup";      backup_step initial 1
say "step 2: no-change backup";    backup_step nochange "$NOCHANGE_RUNS"
say "day-2 change";                corpus_tool change "$CORPUS" "$SCALE"
find "$CORPUS" -type f -print0 | xargs -0 cat > /dev/null
say "step 3: after-change backup"; backup_step change 1
say "step 4: restore (x$RUNS)";    restore_step
STORED_accord=$(du -sb "$S3_STORAGE/$S3_BUCKET/accord-bench" | cut -f1)
STORED_restic=$(du -sb "$S3_STORAGE/$RESTIC_BUCKET" | cut -f1)

# ---------------------------------------------------------------- report
say "results"
{
    echo "# Accord vs restic on S3 (loopback \`rclone serve s3\`)"
    echo
    echo "- corpus: $CORPUS_BYTES bytes in $CORPUS_FILES files before the change ($([ -n "${CORPUS_SRC:-}" ] && echo "copy of $CORPUS_SRC" || echo "generated, SCALE=$SCALE"))"
    echo "- accord: $("$ACCORD" --version | head -n1), encrypted repository (64-hex secret file); restic: $("$RESTIC" version | cut -d' ' -f1-2), password file"
    echo "- server: $(rclone version 2>/dev/null | head -n1) \`serve s3\` on 127.0.0.1, log level DEBUG; client and server share $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- wall: median of $NOCHANGE_RUNS no-change backups and $RUNS restores (that run's RSS and requests shown); initial and after-change backups once"
    echo "- requests: request lines in rclone's log while the command ran (both tools); accord's own count (\`s3: N requests\`) in brackets"
    echo "- stored after the change: accord $STORED_accord bytes, restic $STORED_restic bytes (\`du -sb\` of the server's storage)"
    echo "- restore check: accord ${VERIFY_accord}; restic ${VERIFY_restic}"
    echo
} > "$BENCH_DIR/s3-results.md"
"$PY" - "$CSV" >> "$BENCH_DIR/s3-results.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def median_row(step, tool):
    rs = sorted((r for r in rows if r["step"] == step and r["tool"] == tool), key=lambda r: float(r["wall_s"]))
    return rs[(len(rs) - 1) // 2] if rs else None
names = {"initial": "initial backup", "nochange": "no-change backup", "change": "after-change backup", "restore": "restore"}
print("| step | accord wall s | restic wall s | wall ratio (goal ≤ 0.6) | accord RSS MiB | restic RSS MiB | RSS ratio (goal ≤ 1) | accord requests | restic requests |")
print("|---|---|---|---|---|---|---|---|---|")
for step, name in names.items():
    a, r = median_row(step, "accord"), median_row(step, "restic")
    if not a or not r:
        continue
    wa, wr, ra, rr = float(a["wall_s"]), float(r["wall_s"]), int(a["rss_kb"]), int(r["rss_kb"])
    wratio, rratio = wa / wr, ra / rr
    ok = lambda good: "✓" if good else "✗"
    self = f" ({a['self_requests']})" if a["self_requests"] else ""
    print(f"| {name} | {wa:.2f} | {wr:.2f} | {wratio:.2f} {ok(wratio <= 0.6)} | {ra / 1024:.0f} | {rr / 1024:.0f} | "
          f"{rratio:.2f} {ok(rratio <= 1)} | {a['requests']}{self} | {r['requests']} |")
PY
{
    echo
    echo "Requests by kind (from rclone's log; the median run of each step):"
    echo
    for step in initial nochange change restore; do
        for tool in accord restic; do
            run=$(awk -F, -v s="$step" -v t="$tool" '$1 == s && $2 == t { print $4, $3 }' "$CSV" | sort -g | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
            [ -n "$run" ] && echo "- $step, $tool: $(request_kinds "$LOGS/$step.$tool.$run.requests")"
        done
    done
} >> "$BENCH_DIR/s3-results.md"
cat "$BENCH_DIR/s3-results.md"
echo >&2
echo "(written to $BENCH_DIR/s3-results.md; every run in $CSV; logs in $LOGS; total $(( $(date +%s) - T0 )) s)" >&2

#!/bin/bash
# Many days of small changes (issue 17, "chains across several days"): how much each day's backup
# adds, above all its manifest, when a tree of small files gets 1% of them edited every day (other
# files each day). A delta is on a base stored whole, so day n's delta of a chunk carries every
# change since its base; this shows how that drift costs over DAYS days, for two binaries.
#
#   ACCORD=.build/release/accord ACCORD_BEFORE=/path/to/older/accord DAYS=30 Benchmarks/drift.sh
#
# Env: ACCORD (default .build/release/accord), ACCORD_BEFORE (optional), DAYS (default 30),
# FILES (default 10000: FILES/8 directories of 8 source-like files), BENCH_DIR (default
# /tmp/accord-drift, recreated). Plain repositories (the figures do not depend on encryption's
# random gear table). Prints, per day, addedManifestBytes and addedBytes of each binary, and sums.
set -euo pipefail
ACCORD=${ACCORD:-.build/release/accord}
DAYS=${DAYS:-30}
FILES=${FILES:-10000}
BENCH_DIR=${BENCH_DIR:-/tmp/accord-drift}
case "$BENCH_DIR" in /*) ;; *) echo "BENCH_DIR must be absolute" >&2; exit 2 ;; esac
rm -rf "$BENCH_DIR"; mkdir -m 0700 -p "$BENCH_DIR"
export ACCORD_ENCRYPTION=none ACCORD_CACHE_DIR=$BENCH_DIR/cache

run() {   # run TAG BINARY
    local tag=$1 bin=$2 d=$BENCH_DIR/$1
    mkdir -p "$d"
    python3 - "$d/src" "$FILES" <<'PY'
import os, sys, random
r = random.Random(5); root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    p = os.path.join(root, f"dir{i // 8:05d}")
    os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, f"file{i % 8}.py"), "w") as f:
        f.write("".join(f"line {k} {r.random()}\n" for k in range(r.randint(5, 40))))
PY
    "$bin" init -d "$d/repo" >/dev/null
    "$bin" backup -d "$d/repo" "$d/src" --json > "$d/day1.json"
    for day in $(seq 2 "$DAYS"); do
        python3 - "$d/src" "$FILES" "$day" <<'PY'
import os, sys, random
root, n, day = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(day)
for i in r.sample(range(n), n // 100):
    p = os.path.join(root, f"dir{i // 8:05d}", f"file{i % 8}.py")
    lines = open(p).read().splitlines(True)
    lines[0] = f"day {day} {r.random()}\n"
    open(p, "w").write("".join(lines))
PY
        "$bin" backup -d "$d/repo" "$d/src" --json > "$d/day$day.json"
    done
}

TAGS=(accord)
run accord "$ACCORD"
if [ -n "${ACCORD_BEFORE:-}" ]; then run before "$ACCORD_BEFORE"; TAGS=(before accord); fi

python3 - "$BENCH_DIR" "$DAYS" "${TAGS[@]}" <<'PY'
import json, sys
base, days, tags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rows = {t: [json.load(open(f"{base}/{t}/day{n}.json"))["summary"] for n in range(1, days + 1)] for t in tags}
print("| day | " + " | ".join(f"{t} manifest | {t} added" for t in tags) + " |")
print("|---|" + "---|---|" * len(tags))
for n in range(days):
    print(f"| {n + 1} | " + " | ".join(f"{rows[t][n]['addedManifestBytes']:,} | {rows[t][n]['addedBytes']:,}" for t in tags) + " |")
for t in tags:
    m = sum(s["addedManifestBytes"] for s in rows[t][1:]); a = sum(s["addedBytes"] for s in rows[t][1:])
    late = rows[t][days // 3:]
    print(f"{t}: days 2-{days}: manifest {m:,} bytes, added {a:,} bytes; days {days // 3 + 1}-{days} average manifest "
          f"{sum(s['addedManifestBytes'] for s in late) // len(late):,} bytes; day 1 manifest {rows[t][0]['addedManifestBytes']:,}")
PY

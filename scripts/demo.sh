#!/usr/bin/env bash
# The built-in demo: the whole AE5 job on a throwaway cluster.
#
#   a throwaway PostgreSQL (initdb in a temp dir, run as an unprivileged user) with AE5-like
#   databases, an object-store tree, and a FAKE kubectl test fixture standing in for Kubernetes
#   (Kubernetes cannot run here; the fixture forwards `kubectl exec … psql/pg_dumpall` to the
#   real PostgreSQL) →
#   accord -a backup (twice, with changes in between) → snapshots list → sync to a second
#   repository (the DR node's, through `accord serve`) → damage the database and the tree →
#   accord -a restore from the DR repository → verify the data is back.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ACCORD=${1:-$ROOT/.build/release/accord}
ACCORD=$(cd "$(dirname "$ACCORD")" && pwd)/$(basename "$ACCORD")
WORK=$(mktemp -d /tmp/accord-demo.XXXXXX)
chmod 755 "$WORK"
cleanup() { "$ROOT/scripts/testenv/pg-stop.sh" "$WORK/pg" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "throwaway PostgreSQL and fake cluster (test fixture) in $WORK"
"$ROOT/scripts/testenv/pg-start.sh" "$WORK/pg" >/dev/null
"$ROOT/scripts/testenv/fake-cluster.sh" "$WORK/k8s" "$WORK/pg/env" >/dev/null
set -a; . "$WORK/pg/env"; . "$WORK/k8s/env"; set +a
export PATH="$FAKE_KUBECTL_BIN_DIR:$PGBIN:$PATH"
psql -q -d anaconda_repository -c "CREATE TABLE demo_rows AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 50000) g"

step "object store tree"
S=$WORK/storage
mkdir -p "$S"/{git/repo1,object/anaconda-projects,object/anaconda-objects,pgdata}
python3 - "$S" <<'PY'
import os, random, sys, json
root = sys.argv[1]; rnd = random.Random(5)
for i in range(300):
    d = os.path.join(root, "object/anaconda-projects", f"p{i%20:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.json"), "w") as f:
        json.dump({"id": i, "rows": [rnd.random() for _ in range(200)]}, f)
with open(os.path.join(root, "object/anaconda-objects/blob.bin"), "wb") as f:
    f.write(rnd.randbytes(4 << 20))
with open(os.path.join(root, "git/repo1/history.log"), "w") as f:
    for i in range(50000): f.write(f"commit {i:08x} by user{i%7}\n")
PY
cat > "$WORK/demo-plan.yaml" <<YAML
# The built-in ae5 plan with the storage tree moved to the demo directory.
name: demo
storage:
  root: $S
  excludes: [$S/pgdata]
timeouts: {scaleSeconds: 30, runningSeconds: 30, pollSeconds: 0.2}
YAML
REPO=$WORK/backup DR=$WORK/dr-node-backup
# The node's settings file (what /etc/accord/accord.yaml is on a real node):
# the repository key lives in the demo directory, not /etc/accord. The first
# `-a backup` creates that key file (a random machine secret) and an encrypted
# repository; the DR copy is encrypted too and its serve never sees the key.
mkdir -m 700 "$WORK/etc"
printf 'repository:\n  password-file: %s\n' "$WORK/etc/repository.key" > "$WORK/etc/accord.yaml"
chmod 644 "$WORK/etc/accord.yaml"
export ACCORD_SETTINGS=$WORK/etc/accord.yaml

step "accord -a backup (first)"
"$ACCORD" -a backup -d "$REPO" --plan "$WORK/demo-plan.yaml"

step "changes: 100 rows updated, a file edited, one removed"
psql -q -d anaconda_repository -c "UPDATE demo_rows SET payload = 'changed' WHERE id % 500 = 0"
echo '{"changed": true}' > "$S/object/anaconda-projects/p03/f3.json"
rm "$S/object/anaconda-projects/p04/f4.json"

step "accord -a backup (second: only the changes are stored)"
"$ACCORD" -a backup -d "$REPO" --plan "$WORK/demo-plan.yaml"

step "accord snapshots list"
"$ACCORD" snapshots list -d "$REPO"

step "sync to the DR repository (accord serve on the other end), with the restore marker"
"$ACCORD" sync -d "$REPO" --to "$DR" --marker
"$ACCORD" check -d "$DR" --read-data

# pg_dump 15.18 writes a random \restrict key into every dump: leave those lines out of the comparison.
dumpdb() { pg_dump -d "$1" | grep -v -e '^\\restrict' -e '^\\unrestrict'; }
dumpdb anaconda_repository > "$WORK/expected.sql"
cp -a "$S" "$WORK/expected-tree"

step "disaster: a table dropped, project files deleted"
psql -q -d anaconda_repository -c "DROP TABLE demo_rows"
rm -rf "$S/object/anaconda-projects"

step "accord -a restore on the DR repository"
"$ACCORD" -a restore -d "$DR" --plan "$WORK/demo-plan.yaml" --wait-timeout 30

step "encrypted at rest: both repositories are format 3; without the key nothing can be listed"
grep -q '"version" : 3' "$REPO/config" && grep -q '"version" : 3' "$DR/config"
if ACCORD_SETTINGS=$WORK/no-such-settings.yaml "$ACCORD" snapshots list -d "$DR" </dev/null 2>"$WORK/nokey.txt"; then
    echo "listing the DR copy without its key worked: it is not encrypted" >&2; exit 1
fi
echo "without the key: $(cat "$WORK/nokey.txt")"
echo "the DR copy holds $(ls "$DR/keys" | wc -l) key file(s) (each wraps the master key; the passphrase stays in $WORK/etc)"

step "verify"
dumpdb anaconda_repository > "$WORK/actual.sql"
diff "$WORK/expected.sql" "$WORK/actual.sql"
echo "database anaconda_repository: identical to before the disaster"
diff -r "$WORK/expected-tree/object" "$S/object"
diff -r "$WORK/expected-tree/git" "$S/git"
echo "object store and git trees: identical"
[ "$(psql -tA -d anaconda_workspace -c 'select count(*) from sessions')" = 0 ]
echo "sessions cleared, as the restore does"
echo
echo "demo complete"

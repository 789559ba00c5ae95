#!/usr/bin/env bash
# The built-in demo: a generated AE5-like tree, backed up twice with a change in between,
# listed, checked, restored and verified. Everything lives in a throwaway directory.
set -euo pipefail
ACCORD=${1:-.build/release/accord}
ACCORD=$(cd "$(dirname "$ACCORD")" && pwd)/$(basename "$ACCORD")
WORK=$(mktemp -d /tmp/accord-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/storage
REPO=$WORK/repo
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "generating a demo tree in $SRC"
mkdir -p "$SRC"/{git/repo1,object/anaconda-projects,object/anaconda-objects,empty}
python3 - "$SRC" <<'PY'
import os, random, sys, json
root = sys.argv[1]; rnd = random.Random(5)
for i in range(400):
    d = os.path.join(root, "object/anaconda-projects", f"p{i%20:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.json"), "w") as f:
        json.dump({"id": i, "rows": [rnd.random() for _ in range(200)]}, f)
with open(os.path.join(root, "object/anaconda-objects/blob.bin"), "wb") as f:
    f.write(rnd.randbytes(8 << 20))
with open(os.path.join(root, "git/repo1/history.log"), "w") as f:
    for i in range(100000): f.write(f"commit {i:08x} by user{i%7}\n")
PY
ln -s object/anaconda-objects/blob.bin "$SRC/blob-link"

step "backup #1"
"$ACCORD" backup -d "$REPO" --tag demo "$SRC"

step "changing a few files"
echo '{"changed": true}' > "$SRC/object/anaconda-projects/p03/f3.json"
rm "$SRC/object/anaconda-projects/p04/f4.json"
python3 -c "
import sys; p=sys.argv[1]; d=open(p,'rb').read(); open(p,'wb').write(d[:4000000]+b'inserted!'*100+d[4000000:])" "$SRC/object/anaconda-objects/blob.bin"

step "backup #2 (only changes are stored)"
"$ACCORD" backup -d "$REPO" --tag demo "$SRC"

step "snapshots"
"$ACCORD" snapshots list -d "$REPO"

step "check --read-data"
"$ACCORD" check -d "$REPO" --read-data

step "restore latest and verify"
"$ACCORD" restore -d "$REPO" latest --target "$WORK/restored"
diff -r --no-dereference "$SRC" "$WORK/restored$SRC"
echo "restored tree is identical to the source"

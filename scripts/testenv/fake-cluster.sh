#!/usr/bin/env bash
# fake-cluster.sh DIR [PG_ENV_FILE] — prepare a fake AE5 cluster for tests:
# copies Tests/Fixtures/ae5-cluster to DIR/cluster (the fake kubectl mutates
# its store, so never point it at the checked-in fixture) and writes DIR/env:
#   FAKE_KUBECTL_DIR=DIR/cluster
#   FAKE_KUBECTL_LOG=DIR/kubectl.log          (JSON lines, kubectl and gravity)
#   FAKE_KUBECTL_BIN_DIR=<repo>/Tests/Fixtures/fake-kubectl   (prepend to PATH)
#   FAKE_KUBECTL_PG_ENV=PG_ENV_FILE           (only if given: DIR/env of pg-start.sh)
# The same lines go to stdout. An existing DIR/cluster is replaced (fresh state).
# Needs no root.
set -euo pipefail

TESTENV_NAME="fake-cluster"
# shellcheck source=scripts/testenv/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 && $# -le 2 ]] || die "usage: fake-cluster.sh DIR [PG_ENV_FILE]"
REPO="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
FIXTURE="$REPO/Tests/Fixtures/ae5-cluster"
BIN="$REPO/Tests/Fixtures/fake-kubectl"
[[ -d "$FIXTURE" ]] || die "fixture $FIXTURE missing"
DIR="$(abs_dir "$1")"
check_plain_path "$DIR"
PG_ENV=""
if [[ $# -eq 2 ]]; then
    PG_ENV="$(abs_dir "$2")"
    [[ -f "$PG_ENV" ]] || die "PG env file $PG_ENV does not exist (run pg-start.sh first)"
fi

mkdir -p -- "$DIR"
rm -rf -- "$DIR/cluster"
cp -R -- "$FIXTURE" "$DIR/cluster"
: > "$DIR/kubectl.log"
{
    echo "FAKE_KUBECTL_DIR=$DIR/cluster"
    echo "FAKE_KUBECTL_LOG=$DIR/kubectl.log"
    echo "FAKE_KUBECTL_BIN_DIR=$BIN"
    [[ -z "$PG_ENV" ]] || echo "FAKE_KUBECTL_PG_ENV=$PG_ENV"
} > "$DIR/env"
cat "$DIR/env"

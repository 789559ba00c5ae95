#!/usr/bin/env bash
# selftest.sh — start every test service, check it works, stop it. Run as root.
# Exit 0 and a last line "testenv selftest: OK (N checks)" when all is well.
set -euo pipefail

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd -- "$HERE/../.." && pwd -P)"
D="$(mktemp -d /tmp/accord-testenv-selftest.XXXXXX)"
checks=0

cleanup() {
    "$HERE/sshd-stop.sh" "$D/ssh" 2>/dev/null || true
    "$HERE/pg-stop.sh" "$D/pg" 2>/dev/null || true
    rm -rf -- "$D"
}
trap cleanup EXIT

ok() { checks=$((checks + 1)); printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; exit 1; }
expect() { # expect DESCRIPTION COMMAND... : command must succeed
    local what="$1"; shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}
expect_fail() {
    local what="$1"; shift
    if "$@" >/dev/null 2>&1; then fail "$what"; else ok "$what"; fi
}
expect_eq() { # expect_eq DESCRIPTION ACTUAL EXPECTED
    if [[ "$2" == "$3" ]]; then ok "$1"; else fail "$1: got '$2', expected '$3'"; fi
}
expect_has() { # expect_has DESCRIPTION TEXT SUBSTRING
    if [[ "$2" == *"$3"* ]]; then ok "$1"; else fail "$1: '$2' lacks '$3'"; fi
}

mkdir -p "$D/bin"
printf '#!/bin/sh\necho "accord-stub $*"\n' > "$D/bin/accord"
chmod 0755 "$D/bin/accord"

"$HERE/pg-start.sh" "$D/pg" > "$D/pg.out"
ok "pg-start.sh"
ACCORD_BIN_DIR="$D/bin" "$HERE/sshd-start.sh" "$D/ssh" > "$D/ssh.out"
ok "sshd-start.sh"
"$HERE/fake-cluster.sh" "$D/k8s" "$D/pg/env" > "$D/k8s.out"
ok "fake-cluster.sh"

set -a
# shellcheck source=/dev/null
. "$D/pg/env"
# shellcheck source=/dev/null
. "$D/ssh/env"
# shellcheck source=/dev/null
. "$D/k8s/env"
set +a
PATH="$FAKE_KUBECTL_BIN_DIR:$PATH"

# --- postgres
expect_eq "sessions rows" "$(psql -X -At -d anaconda_workspace -c 'select count(*) from sessions')" 3
expect_eq "deployments rows" "$(psql -X -At -d anaconda_deploy -c 'select count(*) from deployments')" 2
expect "pg_dumpall" pg_dumpall --clean -f "$D/all.sql"
expect "pg-start.sh again (already running)" "$HERE/pg-start.sh" "$D/pg"

# --- ssh
expect "ssh accordsync sudo -n true" ssh -F "$SSH_CONFIG" "$SSH_USER@$SSH_HOST_ALIAS" sudo -n true
out="$(ssh -F "$SSH_CONFIG" "$SSH_NOSUDO_USER@$SSH_HOST_ALIAS" sudo -n true 2>&1 || true)"
expect_has "accordnosudo: a password is required" "$out" "a password is required"
expect_eq "sudo finds accord in ACCORD_BIN_DIR" \
    "$(ssh -F "$SSH_CONFIG" "$SSH_USER@$SSH_HOST_ALIAS" sudo -n accord serve --repo /x)" "accord-stub serve --repo /x"
expect_fail "exit status passes through ssh" ssh -F "$SSH_CONFIG" "$SSH_USER@$SSH_HOST_ALIAS" false
head -c 300000 /dev/urandom > "$D/blob"
ssh -F "$SSH_CONFIG" "$SSH_USER@$SSH_HOST_ALIAS" cat < "$D/blob" > "$D/blob.out"
expect "binary stdin/stdout over ssh" cmp -s "$D/blob" "$D/blob.out"

# --- fake kubectl + real pg tools
expect "fixture secrets listed" test "$(kubectl get secret -n default -o name | grep -c anaconda-credentials-user)" -eq 2
pod="$(kubectl get pods -n default -l app=anaconda-enterprise-postgres -o jsonpath='{.items[0].metadata.name}')"
kubectl exec -n default "$pod" -- pg_dumpall -U postgres --clean > "$D/dump.sql"
ok "exec pg_dumpall"
expect "dump has anaconda_workspace" grep -q 'CREATE DATABASE anaconda_workspace' "$D/dump.sql"
expect_fail "FAKE_KUBECTL_FAIL=pg_dumpall" env FAKE_KUBECTL_FAIL=pg_dumpall kubectl exec -n default "$pod" -- pg_dumpall
expect_eq "exec -i psql" "$(echo 'select 41+1;' | kubectl exec -i -n default "$pod" -- psql -U postgres -X -At)" 42
expect "scale postgres to 0" kubectl scale deployment anaconda-enterprise-postgres --replicas=0 -n default
expect_eq "pods gone" "$(kubectl get pods -n default -l app=anaconda-enterprise-postgres -o name)" ""
expect "scale postgres to 1" kubectl scale deployment anaconda-enterprise-postgres --replicas=1 -n default
expect_eq "new pod Running" \
    "$(kubectl get pods -n default -l app=anaconda-enterprise-postgres -o jsonpath='{.items[*].status.phase}')" Running
expect "gravity backup" gravity backup "$D/gravity.tar.gz"
expect "gravity restore" gravity restore "$D/gravity.tar.gz"
expect "call log" grep -q '"verb": "scale"' "$FAKE_KUBECTL_LOG"
expect_fail "checked-in fixture is read-only" env FAKE_KUBECTL_DIR="$REPO/Tests/Fixtures/ae5-cluster" \
    kubectl scale deployment anaconda-enterprise-ui --replicas=0

# --- stop
expect "sshd-stop.sh" "$HERE/sshd-stop.sh" "$D/ssh"
expect_fail "ssh refused after stop" ssh -F "$SSH_CONFIG" "$SSH_USER@$SSH_HOST_ALIAS" true
expect "sshd-stop.sh twice" "$HERE/sshd-stop.sh" "$D/ssh"
expect "pg-stop.sh" "$HERE/pg-stop.sh" "$D/pg"
expect_fail "postgres refused after stop" "$PGBIN/pg_isready" -q -t 1
expect "pg-stop.sh twice" "$HERE/pg-stop.sh" "$D/pg"
echo "testenv selftest: OK ($checks checks)"

#!/usr/bin/env bash
# sshd-stop.sh DIR — stop the sshd started by sshd-start.sh DIR, together with
# its per-connection children and the commands of open sessions. Safe to call twice.
# Removes /etc/sudoers.d/accord-testenv if it was written for this DIR (a later
# sshd-start.sh for another DIR overwrites it, and then it stays). The test users
# stay (no password, no keys outside DIR; harmless).
set -euo pipefail

TESTENV_NAME="sshd-stop"
# shellcheck source=scripts/testenv/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

SUDOERS_FILE="/etc/sudoers.d/accord-testenv"

DIR="$(testenv_dir "$@")"

if [[ -f "$SUDOERS_FILE" ]] && grep -qF "written for $DIR" "$SUDOERS_FILE"; then
    rm -f "$SUDOERS_FILE"
fi

pid=""
[[ -f "$DIR/sshd.pid" ]] && pid="$(cat "$DIR/sshd.pid")"
if ! pid_alive "$pid"; then
    log "no sshd running for $DIR"
    rm -f "$DIR/sshd.pid"
    exit 0
fi
# Make sure the pid really is our sshd before signalling it.
cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)"
[[ "$cmdline" == *"$DIR/sshd_config"* ]] || die "pid $pid in $DIR/sshd.pid is not this sshd ($cmdline)"

# Per-connection sshd processes (descendants of the listener) and the session
# commands they run (e.g. a left-over "sudo accord serve"): collect the whole
# tree first, then signal each by pid.
descendants() {
    local p c
    for p in "$@"; do
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null || true); do
            echo "$c"
            descendants "$c"
        done
    done
}
tree="$(descendants "$pid" | tr '\n' ' ')"
kill -TERM "$pid" 2>/dev/null || true
for c in $tree; do
    kill -TERM "$c" 2>/dev/null || true
done
for _ in $(seq 1 50); do
    pid_alive "$pid" || break
    sleep 0.1
done
for c in "$pid" $tree; do
    if pid_alive "$c"; then
        kill -KILL "$c" 2>/dev/null || true
    fi
done
rm -f "$DIR/sshd.pid"
log "stopped sshd of $DIR"

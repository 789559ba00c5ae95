#!/usr/bin/env bash
# s3-stop.sh DIR — stop the S3 server started by s3-start.sh DIR (by its pid,
# checked to be that server). Safe twice. Keeps DIR (objects, keys, port): a
# later s3-start.sh DIR serves them again on the same port.
set -euo pipefail

TESTENV_NAME="s3-stop"
# shellcheck source=scripts/testenv/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

DIR="$(testenv_dir "$@")"

pid=""
[[ -f "$DIR/rclone.pid" ]] && pid="$(cat "$DIR/rclone.pid")"
if ! pid_alive "$pid"; then
    log "no S3 server running for $DIR"
    rm -f "$DIR/rclone.pid"
    exit 0
fi
cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)"
[[ "$cmdline" == *"serve s3"*"$DIR/storage"* ]] || die "pid $pid in $DIR/rclone.pid is not this S3 server ($cmdline)"
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 50); do
    pid_alive "$pid" || break
    sleep 0.1
done
pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
rm -f "$DIR/rclone.pid"
log "stopped S3 server of $DIR"

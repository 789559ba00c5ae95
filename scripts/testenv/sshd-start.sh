#!/usr/bin/env bash
# sshd-start.sh DIR — start a private sshd on 127.0.0.1:<free port> for tests.
#
# Users (created if missing, login shell bash, home dir, no password):
#   accordsync    key DIR/id_ed25519 authorized, passwordless sudo
#                 (/etc/sudoers.d/accord-testenv, validated with visudo -cf)
#   accordnosudo  same key authorized, NO sudo rights
#                 ("sudo -n true" fails with "sudo: a password is required")
# If ACCORD_BIN_DIR is set, it is appended to the PATH of ssh sessions
# (sshd SetEnv) and to accordsync's sudo secure_path, so that
# `ssh ... sudo -n accord serve` finds the binary. Then also:
#   accordpinned  the least-privilege set-up of README.md ("Least privilege on
#                 the DR node"): the same key, but as a forced command
#                 (command="sudo -n BIN/accord serve --repo DIR/pinned-repo",restrict)
#                 and a sudoers rule allowing exactly that command line, keeping
#                 SSH_ORIGINAL_COMMAND so serve can compare the client's --repo.
#
# Files in DIR: sshd_config, ssh_host_ed25519_key(.pub), id_ed25519(.pub),
# authorized_keys/<user>, known_hosts, ssh_config, sshd.pid, sshd.log, env.
# Use:  ssh -F DIR/ssh_config accordsync@accordtest sudo -n true
# Prints KEY=VALUE lines on stdout (the same as DIR/env):
#   SSH_HOST=127.0.0.1 SSH_PORT SSH_KEY SSH_USER=accordsync
#   SSH_NOSUDO_USER=accordnosudo SSH_CONFIG SSH_KNOWN_HOSTS SSH_HOST_ALIAS=accordtest
#   and with ACCORD_BIN_DIR: SSH_PINNED_USER=accordpinned SSH_PINNED_REPO=DIR/pinned-repo
# Diagnostics go to stderr. Run as root. Stop with sshd-stop.sh DIR.
set -euo pipefail

TESTENV_NAME="sshd-start"
# shellcheck source=scripts/testenv/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

SYNC_USER="accordsync"
NOSUDO_USER="accordnosudo"
PINNED_USER="accordpinned"
HOST_ALIAS="accordtest"
SUDOERS_FILE="/etc/sudoers.d/accord-testenv"
SSHD="/usr/sbin/sshd"

DIR="$(testenv_dir "$@")"
check_plain_path "$DIR"
BIN_DIR="${ACCORD_BIN_DIR:-}"
if [[ -n "$BIN_DIR" ]]; then
    BIN_DIR="$(abs_dir "$BIN_DIR")"
    check_plain_path "$BIN_DIR"
fi

missing=()
[[ -x "$SSHD" ]] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
[[ -x /usr/bin/sudo ]] || missing+=(sudo)
if (( ${#missing[@]} > 0 )); then
    apt_install "${missing[@]}"
fi
[[ -x "$SSHD" ]] || die "$SSHD missing after install"

# Already running for this DIR? Just print the env again.
if [[ -f "$DIR/sshd.pid" && -f "$DIR/env" ]] && pid_alive "$(cat "$DIR/sshd.pid")"; then
    log "sshd of $DIR already running (pid $(cat "$DIR/sshd.pid"))"
    cat "$DIR/env"
    exit 0
fi

# --- users -----------------------------------------------------------------------
ensure_user "$SYNC_USER" home
ensure_user "$NOSUDO_USER" home
[[ -n "$BIN_DIR" ]] && ensure_user "$PINNED_USER" home
PINNED_REPO="$DIR/pinned-repo"

# --- DIR, keys ---------------------------------------------------------------------
mkdir -p -- "$DIR/authorized_keys"
chmod 0755 -- "$DIR" "$DIR/authorized_keys"
# sshd reads authorized_keys with the target user's uid, so DIR must be reachable.
make_traversable "$DIR" "$SYNC_USER"

[[ -f "$DIR/ssh_host_ed25519_key" ]] || ssh-keygen -q -t ed25519 -N '' -C "accord-testenv-host" -f "$DIR/ssh_host_ed25519_key"
[[ -f "$DIR/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C "accord-testenv-client" -f "$DIR/id_ed25519"
chmod 0600 "$DIR/ssh_host_ed25519_key" "$DIR/id_ed25519"
for u in "$SYNC_USER" "$NOSUDO_USER"; do
    cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys/$u"
    chmod 0644 "$DIR/authorized_keys/$u"
done
if [[ -n "$BIN_DIR" ]]; then
    # Whatever the client asks, sshd runs this; the request is in SSH_ORIGINAL_COMMAND.
    printf 'command="sudo -n %s/accord serve --repo %s",restrict %s\n' "$BIN_DIR" "$PINNED_REPO" "$(cat "$DIR/id_ed25519.pub")" \
        > "$DIR/authorized_keys/$PINNED_USER"
    chmod 0644 "$DIR/authorized_keys/$PINNED_USER"
fi

# --- sudo --------------------------------------------------------------------------
secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
[[ -n "$BIN_DIR" ]] && secure_path="$secure_path:$BIN_DIR"
tmp_sudoers="$(mktemp)"
cat > "$tmp_sudoers" <<EOF
# accord test environment (scripts/testenv/sshd-start.sh), written for $DIR
# Test user with passwordless sudo; $NOSUDO_USER deliberately has no entry.
Defaults:$SYNC_USER secure_path="$secure_path"
Defaults:$SYNC_USER !requiretty
Defaults:$SYNC_USER !lecture
$SYNC_USER ALL=(ALL:ALL) NOPASSWD: ALL
EOF
if [[ -n "$BIN_DIR" ]]; then
    cat >> "$tmp_sudoers" <<EOF
# Least privilege (README.md): exactly one command line, SSH_ORIGINAL_COMMAND kept for serve.
Defaults:$PINNED_USER !requiretty
Defaults:$PINNED_USER !lecture
Defaults:$PINNED_USER env_keep += "SSH_ORIGINAL_COMMAND"
$PINNED_USER ALL=(root) NOPASSWD: $BIN_DIR/accord serve --repo $PINNED_REPO
EOF
fi
visudo -cqf "$tmp_sudoers" >/dev/null || { rm -f "$tmp_sudoers"; die "generated sudoers file does not validate"; }
chmod 0440 "$tmp_sudoers"
mv -f "$tmp_sudoers" "$SUDOERS_FILE"
visudo -cq >/dev/null || die "sudoers as a whole does not validate after writing $SUDOERS_FILE"
grep -qE '^[@#]includedir[[:space:]]+/etc/sudoers.d' /etc/sudoers \
    || die "/etc/sudoers does not include /etc/sudoers.d"

# --- sshd --------------------------------------------------------------------------
mkdir -p /run/sshd
chmod 0755 /run/sshd
session_path="/usr/local/bin:/usr/bin:/bin"
[[ -n "$BIN_DIR" ]] && session_path="$session_path:$BIN_DIR"

write_sshd_config() {
    cat > "$DIR/sshd_config" <<EOF
# accord test sshd (scripts/testenv/sshd-start.sh)
Port $1
ListenAddress 127.0.0.1
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys/%u
AllowUsers $SYNC_USER $NOSUDO_USER${BIN_DIR:+ $PINNED_USER}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
StrictModes no
UsePAM no
PermitUserEnvironment no
AcceptEnv LANG LC_* ACCORD_*
SetEnv PATH=$session_path
X11Forwarding no
PrintMotd no
PrintLastLog no
MaxStartups 64:30:128
MaxSessions 64
LoginGraceTime 20
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
    chmod 0644 "$DIR/sshd_config"
}

write_client_files() {
    local port="$1" hostkey
    hostkey="$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")"
    printf '[127.0.0.1]:%s,[localhost]:%s %s\n' "$port" "$port" "$hostkey" > "$DIR/known_hosts"
    cat > "$DIR/ssh_config" <<EOF
# accord test ssh client config: ssh -F $DIR/ssh_config $SYNC_USER@$HOST_ALIAS CMD
Host $HOST_ALIAS 127.0.0.1 localhost
    HostName 127.0.0.1
    Port $port
    User $SYNC_USER
    IdentityFile $DIR/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $DIR/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    CheckHostIP no
    BatchMode yes
    ConnectTimeout 5
    ServerAliveInterval 5
    ServerAliveCountMax 3
    LogLevel ERROR
EOF
    chmod 0644 "$DIR/known_hosts" "$DIR/ssh_config"
    cat > "$DIR/env.tmp" <<EOF
SSH_HOST=127.0.0.1
SSH_PORT=$port
SSH_KEY=$DIR/id_ed25519
SSH_USER=$SYNC_USER
SSH_NOSUDO_USER=$NOSUDO_USER
SSH_CONFIG=$DIR/ssh_config
SSH_KNOWN_HOSTS=$DIR/known_hosts
SSH_HOST_ALIAS=$HOST_ALIAS
EOF
    if [[ -n "$BIN_DIR" ]]; then
        printf 'SSH_PINNED_USER=%s\nSSH_PINNED_REPO=%s\n' "$PINNED_USER" "$PINNED_REPO" >> "$DIR/env.tmp"
    fi
    chmod 0644 "$DIR/env.tmp"
    mv -f "$DIR/env.tmp" "$DIR/env"
}

started=0
for attempt in 1 2 3 4; do
    port="$(free_port)"
    write_sshd_config "$port"
    "$SSHD" -t -f "$DIR/sshd_config" 2>"$DIR/sshd-check.log" \
        || { cat "$DIR/sshd-check.log" >&2; die "sshd -t rejects $DIR/sshd_config"; }
    rm -f "$DIR/sshd.pid"
    log "starting sshd on 127.0.0.1:$port (attempt $attempt)"
    # sshd daemonizes after binding; a bind failure makes it exit non-zero here.
    if "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log" && wait_port "$port" 5; then
        started=1
        break
    fi
    if [[ -f "$DIR/sshd.pid" ]] && pid_alive "$(cat "$DIR/sshd.pid")"; then
        kill "$(cat "$DIR/sshd.pid")" 2>/dev/null || true
    fi
    grep -q 'Address already in use\|Cannot bind' "$DIR/sshd.log" 2>/dev/null || break
done
if [[ $started -ne 1 ]]; then
    tail -n 20 "$DIR/sshd.log" >&2 || true
    die "sshd did not start (log tail above, full log $DIR/sshd.log)"
fi
for _ in $(seq 1 50); do [[ -s "$DIR/sshd.pid" ]] && break; sleep 0.1; done
write_client_files "$port"

# --- verify -------------------------------------------------------------------------
out="$(ssh -F "$DIR/ssh_config" "$SYNC_USER@$HOST_ALIAS" sudo -n true 2>&1)" \
    || { tail -n 20 "$DIR/sshd.log" >&2; die "check failed: ssh $SYNC_USER sudo -n true: $out"; }
if out="$(ssh -F "$DIR/ssh_config" "$NOSUDO_USER@$HOST_ALIAS" sudo -n true 2>&1)"; then
    die "check failed: $NOSUDO_USER has passwordless sudo"
fi
[[ "$out" == *"a password is required"* ]] \
    || die "check failed: $NOSUDO_USER sudo -n true said '$out', expected 'a password is required'"
if [[ -n "$BIN_DIR" ]]; then
    # shellcheck disable=SC2016  # $PATH is expanded on the remote side
    out="$(ssh -F "$DIR/ssh_config" "$SYNC_USER@$HOST_ALIAS" 'echo "$PATH"; sudo -n sh -c "echo \$PATH"')" \
        || die "check failed: reading PATH over ssh"
    while IFS= read -r line; do
        [[ ":$line:" == *":$BIN_DIR:"* ]] || die "check failed: PATH '$line' lacks ACCORD_BIN_DIR $BIN_DIR"
    done <<< "$out"
fi

log "ready: 127.0.0.1:$port (pid $(cat "$DIR/sshd.pid")), try: ssh -F $DIR/ssh_config $SYNC_USER@$HOST_ALIAS"
cat "$DIR/env"

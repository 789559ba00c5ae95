# shellcheck shell=bash
# Shared helpers for the scripts/testenv/*.sh test-environment scripts.
# Sourced, never executed. Everything here writes diagnostics to stderr only:
# stdout of the start scripts is reserved for KEY=VALUE lines.

TESTENV_NAME="${TESTENV_NAME:-testenv}"

die() {
    printf '%s: error: %s\n' "$TESTENV_NAME" "$*" >&2
    exit 1
}

log() {
    printf '%s: %s\n' "$TESTENV_NAME" "$*" >&2
}

require_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (it creates system users and starts daemons)"
}

# testenv_dir "$@" -> prints the absolute path of the one DIR argument the
# start/stop scripts take, after checking there is exactly one and we are root.
# Use as DIR="$(testenv_dir "$@")" (set -e makes its die end the script).
testenv_dir() {
    [[ $# -eq 1 ]] || die "usage: $TESTENV_NAME.sh DIR"
    require_root
    abs_dir "$1"
}

# The private PostgreSQL server's binaries and the OS user that runs it
# (pg-start.sh, pg-stop.sh).
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PG_USER_OS="accordtest"

# abs_dir DIR -> prints the absolute path of DIR (DIR need not exist yet).
abs_dir() {
    local d="$1"
    [[ -n "$d" ]] || die "missing DIR argument"
    case "$d" in
        /*) ;;
        *) d="$PWD/$d" ;;
    esac
    # Normalise without resolving symlinks of components that may not exist.
    realpath -m -- "$d"
}

# check_plain_path PATH: the env files are sourced by shells and parsed as
# KEY=VALUE lines, so refuse paths that would need quoting.
check_plain_path() {
    local p="$1"
    if [[ ! "$p" =~ ^[A-Za-z0-9/._+@:-]+$ ]]; then
        die "path '$p' contains characters that would need quoting (use letters, digits, / . _ + @ : -)"
    fi
}

# apt_install PKG... : install Debian packages non-interactively (update first
# only if the plain install fails, e.g. on a fresh machine with no lists).
apt_install() {
    log "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
            || die "apt-get install $* failed"
    fi
}

# ensure_system_user NAME [home]: create NAME if missing. With "home", a
# regular login user with /bin/bash and a home directory; otherwise a system
# user with no login shell. The password field is set to '*' (no password
# can ever match, but the account is not "locked", which sshd with UsePAM=no
# would otherwise refuse).
ensure_user() {
    local name="$1" kind="${2:-system}"
    if ! getent passwd "$name" >/dev/null; then
        if [[ "$kind" == home ]]; then
            useradd --create-home --shell /bin/bash "$name" \
                || getent passwd "$name" >/dev/null || die "useradd $name failed"
        else
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$name" \
                || getent passwd "$name" >/dev/null || die "useradd $name failed"
        fi
    fi
    if [[ "$kind" == home ]]; then
        local home
        home="$(getent passwd "$name" | cut -d: -f6)"
        if [[ ! -d "$home" ]]; then
            mkdir -p "$home"
            cp -rT /etc/skel "$home" 2>/dev/null || true
            chown -R "$name:" "$home"
        fi
        usermod -p '*' "$name"
    fi
}

# make_traversable DIR USER: make sure USER can reach DIR. DIR itself is
# given o+x by the caller; ancestors inside a temp area (/tmp, /var/tmp,
# $TMPDIR) get o+x added when missing (test temp dirs are often 0700);
# anywhere else we fail with a clear message rather than open up the system.
make_traversable() {
    local dir="$1" user="$2" p="" part
    local -a parts
    IFS=/ read -r -a parts <<< "${dir#/}"
    # Walk from / down, so the first ancestor that blocks is the one named.
    for part in "${parts[@]}"; do
        p="$p/$part"
        [[ "$p" == "$dir" ]] && break
        if ! runuser -u "$user" -- test -x "$p" 2>/dev/null; then
            case "$p/" in
                /tmp/?*|/var/tmp/?*|"${TMPDIR:-/nonexistent}"/?*)
                    chmod o+x -- "$p" ;;
                *)
                    die "user '$user' cannot traverse '$p' (needed to reach '$dir'); use a DIR under /tmp or make '$p' o+x" ;;
            esac
        fi
    done
    runuser -u "$user" -- test -x "$dir" || die "user '$user' cannot reach '$dir'"
}

# free_port: print a TCP port on 127.0.0.1 that is free right now.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
        return
    fi
    # Fallback: random ports until one is not listening.
    local port i
    for i in $(seq 1 200); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM + i) % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "could not find a free port"
}

# wait_port PORT SECONDS: wait until something accepts on 127.0.0.1:PORT.
wait_port() {
    local port="$1" secs="$2" i
    for i in $(seq 1 $(( secs * 10 ))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# pid_alive PID: true if PID runs (a zombie, i.e. exited but not yet reaped
# by its reparented parent, counts as gone).
pid_alive() {
    local st
    [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
    st="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "$st" && "$st" != Z* ]]
}

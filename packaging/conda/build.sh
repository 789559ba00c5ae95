#!/usr/bin/env bash
# build.sh DIST VERSION: the conda package DIST/conda-channel/linux-64/accord-VERSION-0.conda, and
# DIST/conda-channel indexed as a local channel (run by `make conda`; no network but the PyPI
# mirror pip is set up to use, for conda-package-handling and py-rattler in DIST/venv).
# The prefix holds bin/accord, lib/libisal.so.2 (bundled: conda has no system ISA-L; accord
# dlopens $ORIGIN/../lib/libisal.so.2 before the system's, AccordCore's IsalLibrary), the man
# page, completions, the systemd units and examples under share/accord, and README. info/index.json declares `__glibc >=FLOOR`
# (packaging/check-binary.sh); libstdc++ and libgcc_s are the system's, as on every glibc Linux.
# Install: conda install -c file://DIST/conda-channel accord (or channel.py install, as the test does).
set -euo pipefail
dist=$(cd "$1" && pwd) version=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
for f in "$dist/accord" "$dist/glibc-floor" "$dist/man/accord.1" "$dist/completions/accord.bash"; do
  [ -s "$f" ] || { echo "conda: $f is missing: run make dist man completions first" >&2; exit 1; }
done
case "$(uname -m)" in x86_64) subdir=linux-64;; aarch64) subdir=linux-aarch64;; *) echo "conda: no conda subdir for $(uname -m)" >&2; exit 1;; esac
isal=$(ldconfig -p | sed -n 's/^[[:space:]]*libisal\.so\.2 (libc6[^)]*) => //p' | head -1)
[ -n "$isal" ] || { echo "conda: libisal.so.2 not found (ldconfig -p): install libisal2" >&2; exit 1; }

venv=$dist/venv
if ! "$venv/bin/python" -c 'import conda_package_handling, rattler' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q conda-package-handling==2.6.0 py-rattler==0.28.0   # the versions channel.py was tested with
fi

stage=$dist/conda-prefix
rm -rf "$stage"
umask 022
install -d "$stage/bin" "$stage/lib" "$stage/info" "$stage/share/man/man1" "$stage/share/bash-completion/completions" \
  "$stage/share/zsh/site-functions" "$stage/share/fish/vendor_completions.d" "$stage/share/accord/systemd" \
  "$stage/share/accord/examples" "$stage/share/doc/accord"
install -m 0755 "$dist/accord" "$stage/bin/accord"
install -m 0644 "$isal" "$stage/lib/libisal.so.2"
install -m 0644 "$dist/man/accord.1" "$stage/share/man/man1/accord.1"
install -m 0644 "$dist/completions/accord.bash" "$stage/share/bash-completion/completions/accord"
install -m 0644 "$dist/completions/_accord" "$stage/share/zsh/site-functions/_accord"
install -m 0644 "$dist/completions/accord.fish" "$stage/share/fish/vendor_completions.d/accord.fish"
install -m 0644 "$root"/packaging/systemd/accord-backup.{service,timer} "$stage/share/accord/systemd/"
install -m 0644 "$root"/packaging/examples/* "$stage/share/accord/examples/"
install -m 0644 "$root/README.md" "$stage/share/doc/accord/README.md"
[ -f /usr/share/doc/libisal2/copyright ] && install -m 0644 /usr/share/doc/libisal2/copyright "$stage/share/doc/accord/libisal.copyright"

"$venv/bin/python" "$here/channel.py" metadata "$stage" --version "$version" --subdir "$subdir" --glibc "$(cat "$dist/glibc-floor")"
channel=$dist/conda-channel
mkdir -p "$channel/$subdir" "$channel/noarch"
rm -f "$channel/$subdir/accord-$version-0.conda"
"$venv/bin/cph" create "$stage" "accord-$version-0.conda" --out-folder "$channel/$subdir" >/dev/null
"$venv/bin/python" "$here/channel.py" index "$channel"
echo "conda: $channel/$subdir/accord-$version-0.conda, channel $channel"

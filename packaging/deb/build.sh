#!/usr/bin/env bash
# build.sh DIST VERSION: writes DIST/accord_VERSION_ARCH.deb with dpkg-deb, from `make dist`,
# `make man` and `make completions` (run by `make deb`). No network; no conffiles, so `dpkg -r`
# leaves nothing (the examples go to /usr/share/doc/accord/examples, for the admin to copy).
# Depends: from dpkg-shlibdeps on the binary (libc6 at the glibc floor check-binary.sh found,
# libstdc++6, libgcc-s1), plus openssh-client for sync. Recommends: libisal2, which accord loads at
# run time (dlopen) for its fastest compressor and does without (libdeflate writes the same format),
# and libcurl4, loaded at run time for s3: repositories only (AccordS3's CurlLibrary).
# Files are owned by root in the package (--root-owner-group), whoever builds it.
set -euo pipefail
dist=$(cd "$1" && pwd) version=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
arch=$(dpkg --print-architecture)
stage=$dist/deb-root
out=$dist/accord_${version}_${arch}.deb
for f in "$dist/accord" "$dist/glibc-floor" "$dist/man/accord.1" "$dist/completions/accord.bash"; do
  [ -s "$f" ] || { echo "deb: $f is missing: run make dist man completions first" >&2; exit 1; }
done

rm -rf "$stage"
umask 022
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/man/man1" "$stage/usr/lib/systemd/system" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/doc/accord/examples"
install -m 0755 "$dist/accord" "$stage/usr/bin/accord"
gzip -9n < "$dist/man/accord.1" > "$stage/usr/share/man/man1/accord.1.gz"
install -m 0644 "$dist/completions/accord.bash" "$stage/usr/share/bash-completion/completions/accord"
install -m 0644 "$dist/completions/_accord" "$stage/usr/share/zsh/vendor-completions/_accord"
install -m 0644 "$dist/completions/accord.fish" "$stage/usr/share/fish/vendor_completions.d/accord.fish"
install -m 0644 "$root"/packaging/systemd/accord-backup.{service,timer} "$stage/usr/lib/systemd/system/"
install -m 0644 "$root/README.md" "$stage/usr/share/doc/accord/README.md"
install -m 0644 "$root"/packaging/examples/* "$stage/usr/share/doc/accord/examples/"
install -m 0755 "$root/packaging/deb/postinst" "$root/packaging/deb/prerm" "$root/packaging/deb/postrm" "$stage/DEBIAN/"

# The shared libraries' packages and versions, as Debian's own tools compute them.
floor=$(cat "$dist/glibc-floor")
shlib=$(cd "$dist" && mkdir -p shlibdeps/debian && cd shlibdeps && printf 'Source: accord\n\nPackage: accord\nArchitecture: any\n' > debian/control \
        && dpkg-shlibdeps -O "$stage/usr/bin/accord" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlib" ] || { echo "deb: dpkg-shlibdeps found no dependencies of $stage/usr/bin/accord" >&2; exit 1; }
case "$shlib" in *"libc6 (>= $floor)"*) ;; *) echo "deb: dpkg-shlibdeps says '$shlib', check-binary.sh found glibc >= $floor" >&2; exit 1;; esac
case "$shlib" in *libisal*|*libcurl*) echo "deb: dpkg-shlibdeps says '$shlib': ISA-L or libcurl is linked, it must be loaded at run time" >&2; exit 1;; esac
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: accord
Version: $version
Architecture: $arch
Maintainer: Accord maintainers <root@localhost>
Section: admin
Priority: optional
Installed-Size: $size
Depends: $shlib, openssh-client
Recommends: libisal2, libcurl4
Suggests: openssh-server, sudo, fuse3
Description: incremental, deduplicating backup and disaster recovery for Anaconda Enterprise 5
 accord backs up an AE5 cluster (PostgreSQL dump, Gravity backup, storage
 tree, secrets, configmaps, ingress) into a content-addressed repository of
 compressed, deduplicated chunks, syncs it to a DR node over ssh, and
 restores it there. The original command line (accord -a backup|restore)
 still works. Self-contained: the Swift runtime, libcrypto, zlib and
 libdeflate are linked in; it needs glibc >= $floor. With libisal2 (ISA-L)
 installed it compresses ~2.5x as fast at the default level.
 .
 Install it on both nodes. accord-backup.timer (not enabled by default)
 runs the nightly backup and, with /etc/accord/backup.env, the DR sync.
CONTROL
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "deb: $out"
dpkg-deb --info "$out" | sed -n '/Package:/,/Description:/p'

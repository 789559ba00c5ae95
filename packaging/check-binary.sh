#!/usr/bin/env bash
# check-binary.sh BINARY FLOOR_FILE: the self-contained binary's contract, checked after `make dist`.
# - ldd lists only the C library and the C++/gcc runtime (libc, libm, libstdc++, libgcc_s, the
#   loader, the vdso). ISA-L, libcurl and libfuse3 are never linked: accord dlopens libisal.so.2 on
#   first compression (Sources/CIsal; without it libdeflate compresses, so the deb only recommends
#   libisal2 and the conda package bundles it in lib/), libcurl.so.4 on first use of an s3:
#   repository (Sources/CCurl; the deb recommends libcurl4) and `accord mount` dlopens
#   libfuse3.so.3 (Sources/CFuse3; the deb suggests fuse3). Anything else (libisal, libcurl,
#   libcrypto, libz, libdeflate, a Swift runtime library) means a link that should not happen did:
#   fail, naming it.
# - No RPATH/RUNPATH: libraries loaded at run time by bare name are found only where the system
#   keeps them.
# - The glibc floor: the highest GLIBC_x.y symbol version the binary needs, written to FLOOR_FILE;
#   the packages declare it (deb: libc6 (>= x.y); conda: __glibc >=x.y).
set -euo pipefail
bin=$1 floor_file=$2
[ -x "$bin" ] || { echo "check-binary: $bin is not an executable file: run make dist" >&2; exit 1; }

allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|/lib64/ld-linux-x86-64\.so\.2|/lib/ld-linux-aarch64\.so\.1)$'
bad=0
while read -r name _; do
  [ -n "$name" ] || continue
  if ! [[ $name =~ $allowed ]]; then echo "check-binary: $bin links $name dynamically; only libc, libm, libstdc++ and libgcc_s may be" >&2; bad=1; fi
done < <(ldd "$bin" | sed 's/^[[:space:]]*//')
[ $bad = 0 ] || exit 1
# No RPATH/RUNPATH: with $ORIGIN there (SwiftPM's default), dlopen("libcurl.so.4") and the
# ISA-L fallback would load a library planted beside the binary, as root, unchecked.
if readelf -d "$bin" | grep -E '\((RPATH|RUNPATH)\)' >&2; then
  echo "check-binary: $bin has an RPATH/RUNPATH (above): build it with --disable-local-rpath" >&2; exit 1
fi

floor=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ -n "$floor" ] || { echo "check-binary: no GLIBC_ symbol versions in $bin (objdump -T)" >&2; exit 1; }
echo "$floor" > "$floor_file"
echo "check-binary: $bin needs glibc >= $floor; ldd:"; ldd "$bin" | sed 's/^/  /'

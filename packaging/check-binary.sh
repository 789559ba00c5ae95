#!/usr/bin/env bash
# check-binary.sh BINARY FLOOR_FILE: the self-contained binary's contract, checked after `make dist`.
# - ldd lists only the C library and the C++/gcc runtime (libc, libm, libstdc++, libgcc_s, the
#   loader, the vdso) and libisal (ISA-L: Debian ships no libisal.a, so it stays shared and is a
#   declared dependency of every package). libfuse3 is never linked: `accord mount` dlopens
#   libfuse3.so.3 (Sources/CFuse3) and the deb only suggests fuse3. Anything else (libcrypto,
#   libz, libdeflate, a Swift runtime library) means the static link did not happen: fail, naming it.
# - The glibc floor: the highest GLIBC_x.y symbol version the binary needs, written to FLOOR_FILE;
#   the packages declare it (deb: libc6 (>= x.y); conda: __glibc >=x.y).
set -euo pipefail
bin=$1 floor_file=$2
[ -x "$bin" ] || { echo "check-binary: $bin is not an executable file: run make dist" >&2; exit 1; }

allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libisal\.so\.2|/lib64/ld-linux-x86-64\.so\.2|/lib/ld-linux-aarch64\.so\.1)$'
bad=0
while read -r name _; do
  [ -n "$name" ] || continue
  if ! [[ $name =~ $allowed ]]; then echo "check-binary: $bin links $name dynamically; only libc, libm, libstdc++, libgcc_s and libisal may be" >&2; bad=1; fi
done < <(ldd "$bin" | sed 's/^[[:space:]]*//')
[ $bad = 0 ] || exit 1

floor=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ -n "$floor" ] || { echo "check-binary: no GLIBC_ symbol versions in $bin (objdump -T)" >&2; exit 1; }
echo "$floor" > "$floor_file"
echo "check-binary: $bin needs glibc >= $floor; ldd:"; ldd "$bin" | sed 's/^/  /'

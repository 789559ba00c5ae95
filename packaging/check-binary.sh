#!/usr/bin/env bash
# check-binary.sh BINARY FLOOR_FILE: the self-contained binary's contract, checked after `make dist`.
# - The libraries the binary itself names (its NEEDED entries) are only the C library and the
#   C++/gcc runtime (libc, libm, libstdc++, libgcc_s, the loader), libisal (ISA-L: Debian ships no
#   libisal.a, so it stays shared and is a declared dependency of every package) and libcurl
#   (libcurl.so.4, the S3 client, AccordS3: its own dependencies (TLS, HTTP/2, IDN, ...) are too
#   many to link statically, so it stays shared; the deb's Depends gets libcurl4 from
#   dpkg-shlibdeps). libfuse3 is never linked: `accord mount` dlopens libfuse3.so.3
#   (Sources/CFuse3) and the deb only suggests fuse3. Anything else named directly (libcrypto,
#   libz, libdeflate, a Swift runtime library) means the static link did not happen: fail, naming it.
# - What ldd lists beyond those comes through libcurl (libssl, libcrypto, libz, libnghttp2, ...:
#   Debian's libcurl4 brings them); none of it may be a Swift runtime library, and none may be missing.
# - The glibc floor: the highest GLIBC_x.y symbol version the binary needs, written to FLOOR_FILE;
#   the packages declare it (deb: libc6 (>= x.y); conda: __glibc >=x.y).
set -euo pipefail
bin=$1 floor_file=$2
[ -x "$bin" ] || { echo "check-binary: $bin is not an executable file: run make dist" >&2; exit 1; }

allowed='^(libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libisal\.so\.2|libcurl\.so\.4|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'
bad=0
while read -r _ name; do
  [ -n "$name" ] || continue
  if ! [[ $name =~ $allowed ]]; then echo "check-binary: $bin names $name as a shared library; only libc, libm, libstdc++, libgcc_s, libisal and libcurl may be" >&2; bad=1; fi
done < <(objdump -p "$bin" | awk '$1 == "NEEDED" {print $1, $2}')
while read -r line; do
  case "$line" in
    *"not found"*) echo "check-binary: $bin needs a library that is missing here: $line" >&2; bad=1;;
    *libswift*|*libFoundation*|*libdispatch*|*libBlocksRuntime*|*lib_FoundationICU*)
      echo "check-binary: $bin loads a Swift runtime library ($line): the static link did not happen" >&2; bad=1;;
  esac
done < <(ldd "$bin" | sed 's/^[[:space:]]*//')
[ $bad = 0 ] || exit 1

floor=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ -n "$floor" ] || { echo "check-binary: no GLIBC_ symbol versions in $bin (objdump -T)" >&2; exit 1; }
echo "$floor" > "$floor_file"
echo "check-binary: $bin needs glibc >= $floor; ldd:"; ldd "$bin" | sed 's/^/  /'

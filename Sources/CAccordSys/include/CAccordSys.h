// System headers that Glibc's Swift module does not export.
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/random.h>
#include <malloc.h>

// Opening beneath a directory descriptor without following any symlink
// (restore): openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or, where the
// kernel lacks openat2 (ENOSYS) or the fallback flag is set, a walk
// one component at a time with openat(O_NOFOLLOW). `path` is relative; an
// absolute path or a ".." component fails with EXDEV, a symlink anywhere in
// it with ELOOP. Returns the descriptor, or -1 with errno set.
// The fallback flag (a relaxed atomic: Swift 6 cannot touch a plain C global).
int accord_beneath_fallback_get(void);
void accord_beneath_fallback_set(int on);
int accord_open_beneath(int dirfd, const char *path, int flags, unsigned int mode);

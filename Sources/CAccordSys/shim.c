#define _GNU_SOURCE
#include "CAccordSys.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/openat2.h>

// Read and set with relaxed atomics: restore threads read it while one of
// them may latch it (ENOSYS), and a test may set it; it orders nothing else.
static int accord_beneath_fallback = 0;

int accord_beneath_fallback_get(void) { return __atomic_load_n(&accord_beneath_fallback, __ATOMIC_RELAXED); }
void accord_beneath_fallback_set(int on) { __atomic_store_n(&accord_beneath_fallback, on, __ATOMIC_RELAXED); }

/// The component walk: every directory on the way is opened O_PATH |
/// O_DIRECTORY | O_NOFOLLOW from the previous one, the last component with
/// `flags | O_NOFOLLOW`. "." components are skipped; "..", an empty path or
/// an absolute one are refused (EXDEV, as openat2 does for an escape).
static int open_beneath_walk(int dirfd, const char *path, int flags, unsigned int mode) {
    if (path[0] == '/' || path[0] == 0) { errno = EXDEV; return -1; }
    int cur = dirfd;
    const char *p = path;
    char name[256];
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len >= sizeof name) { if (cur != dirfd) close(cur); errno = ENAMETOOLONG; return -1; }
        memcpy(name, p, len);
        name[len] = 0;
        if (len == 2 && name[0] == '.' && name[1] == '.') { if (cur != dirfd) close(cur); errno = EXDEV; return -1; }
        int last = 1;
        if (slash) {
            const char *q = slash;
            while (*q == '/') q++;
            last = (*q == 0);
            p = q;
        }
        if (len == 0 || (len == 1 && name[0] == '.')) {
            if (!last) continue;
            strcpy(name, ".");
        }
        int fd;
        do {
            fd = last ? openat(cur, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)
                      : openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0 && errno == ENOTDIR && (!last || (flags & O_DIRECTORY))) {
            // O_DIRECTORY | O_NOFOLLOW on a symlink reports ENOTDIR: say ELOOP, as openat2 does.
            struct stat st;
            if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) errno = ELOOP;
            else errno = ENOTDIR;
        }
        int saved = errno;
        if (cur != dirfd) close(cur);
        errno = saved;
        if (fd < 0 || last) return fd;
        cur = fd;
    }
}

int accord_open_beneath(int dirfd, const char *path, int flags, unsigned int mode) {
    if (!accord_beneath_fallback_get()) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = (unsigned long long)(flags | O_CLOEXEC);
        how.mode = ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) ? mode : 0;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
        long fd;
        do { fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (fd < 0 && errno == EINTR);
        if (fd >= 0 || errno != ENOSYS) return (int)fd;
        accord_beneath_fallback_set(1);
    }
    return open_beneath_walk(dirfd, path, flags, mode);
}

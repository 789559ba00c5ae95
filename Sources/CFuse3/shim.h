/* libfuse3's high-level API for `accord mount`, loaded at run time.
   No `link` in the module map: the accord binary does not depend on libfuse3
   (check-binary.sh refuses it), so the few functions mount calls are looked up
   with dlopen/dlsym on first use, and every other command runs on a machine
   without libfuse3. The header gives the types (fuse_operations, stat,
   fuse_config) the callbacks are written against. */
#define FUSE_USE_VERSION 31
#include <stddef.h>
#include <dlfcn.h>
#include <fuse3/fuse.h>

/* The functions mount calls, as loaded. */
typedef struct {
    /* fuse_new in its 3.1 form (the FUSE_3.1 symbol fuse_new_31). */
    struct fuse *(*fuse_new)(struct fuse_args *, const struct fuse_operations *, size_t, void *);
    int (*fuse_mount)(struct fuse *, const char *);
    void (*fuse_unmount)(struct fuse *);
    void (*fuse_destroy)(struct fuse *);
    int (*fuse_loop)(struct fuse *);
    void (*fuse_exit)(struct fuse *);
    struct fuse_session *(*fuse_get_session)(struct fuse *);
    int (*fuse_set_signal_handlers)(struct fuse_session *);
    void (*fuse_remove_signal_handlers)(struct fuse_session *);
    struct fuse_context *(*fuse_get_context)(void);
    void (*fuse_opt_free_args)(struct fuse_args *);
} accord_fuse3_api;

/* Loads libfuse3.so.3 into `api`. NULL on success, else why not (dlerror's
   text, valid until the next dl call on this thread). */
static inline const char *accord_fuse3_load(accord_fuse3_api *api) {
    void *h = dlopen("libfuse3.so.3", RTLD_NOW | RTLD_LOCAL);
    if (!h) return dlerror();
#define ACCORD_FUSE3_SYM(field, name) \
    if (!(*(void **)&api->field = dlsym(h, name))) return dlerror();
    ACCORD_FUSE3_SYM(fuse_new, "fuse_new_31")
    ACCORD_FUSE3_SYM(fuse_mount, "fuse_mount")
    ACCORD_FUSE3_SYM(fuse_unmount, "fuse_unmount")
    ACCORD_FUSE3_SYM(fuse_destroy, "fuse_destroy")
    ACCORD_FUSE3_SYM(fuse_loop, "fuse_loop")
    ACCORD_FUSE3_SYM(fuse_exit, "fuse_exit")
    ACCORD_FUSE3_SYM(fuse_get_session, "fuse_get_session")
    ACCORD_FUSE3_SYM(fuse_set_signal_handlers, "fuse_set_signal_handlers")
    ACCORD_FUSE3_SYM(fuse_remove_signal_handlers, "fuse_remove_signal_handlers")
    ACCORD_FUSE3_SYM(fuse_get_context, "fuse_get_context")
    ACCORD_FUSE3_SYM(fuse_opt_free_args, "fuse_opt_free_args")
#undef ACCORD_FUSE3_SYM
    return NULL;
}

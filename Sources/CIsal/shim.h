/* ISA-L's igzip, loaded at run time. No `link` in the module map: Debian ships
   no libisal.a, and a shared ISA-L made the deb depend on libisal2, so the two
   functions the compressor calls are looked up with dlopen/dlsym once
   (AccordCore's `IsalLibrary`), and without libisal.so.2 the levels igzip
   would write go to libdeflate: the same zlib format. The header gives the
   types (isal_zstream) and constants the compressor is written against; the
   ABI is libisal.so.2's. */
#define _GNU_SOURCE 1   /* dladdr */
#include <stdint.h>
#include <stddef.h>
#include <dlfcn.h>
#include <isa-l/igzip_lib.h>

/* The level buffer igzip asks for at `level` (ISAL_DEF_LVLx_DEFAULT): Swift
   cannot import these macros, they are expressions. 0 for level 0 (needs none)
   and for levels igzip does not have. */
static inline uint32_t accord_isal_level_buf_size(uint32_t level) {
    switch (level) {
    case 1: return ISAL_DEF_LVL1_DEFAULT;
    case 2: return ISAL_DEF_LVL2_DEFAULT;
    case 3: return ISAL_DEF_LVL3_DEFAULT;
    default: return 0;
    }
}

/* The functions the compressor calls, as loaded. */
typedef struct {
    void (*deflate_stateless_init)(struct isal_zstream *);
    int (*deflate_stateless)(struct isal_zstream *);
    /* The file they were loaded from (dladdr), or NULL if it cannot say. */
    const char *path;
} accord_isal_api;

/* Loads `name` (a path, or a file name the loader searches for) into `api`.
   NULL on success, else why not (dlerror's text, valid until the next dl call
   on this thread). A library that loads but lacks a function stays loaded:
   this runs once per process. */
static inline const char *accord_isal_load(const char *name, accord_isal_api *api) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) return dlerror();
    if (!(*(void **)&api->deflate_stateless_init = dlsym(h, "isal_deflate_stateless_init"))) return dlerror();
    if (!(*(void **)&api->deflate_stateless = dlsym(h, "isal_deflate_stateless"))) return dlerror();
    Dl_info info;
    api->path = dladdr(*(void **)&api->deflate_stateless, &info) && info.dli_fname ? info.dli_fname : NULL;
    return NULL;
}

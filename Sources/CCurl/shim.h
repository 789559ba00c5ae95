/* libcurl, loaded at run time. No `link` in the module map: only s3:
   repositories need libcurl, and linking it made every package depend on
   libcurl4 and its TLS, LDAP, SSH... libraries, so AccordS3's `CurlLibrary`
   looks up the functions S3Client calls with dlopen/dlsym once, on the first
   s3: repository, and says clearly when libcurl.so.4 is missing. The header
   gives the types and constants; the ABI is libcurl.so.4's (stable since
   7.16; CURLOPT_AWS_SIGV4 needs 7.75, CURLOPT_PROTOCOLS_STR 7.85: an older
   library fails at set-up with "unknown option", never silently). */
#include <stddef.h>
#include <dlfcn.h>
#include <curl/curl.h>

/* The functions S3Client calls, as loaded. */
typedef struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    curl_version_info_data *(*version_info)(CURLversion);
} accord_curl_api;

/* Loads `name` (a path, or a file name the loader searches for) into `api`.
   NULL on success, else why not (dlerror's text, valid until the next dl call
   on this thread). Runs once per process; the library is never unloaded. */
static inline const char *accord_curl_load(const char *name, accord_curl_api *api) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) return dlerror();
#define ACCORD_CURL_SYM(field, sym) if (!(*(void **)&api->field = dlsym(h, sym))) return dlerror();
    ACCORD_CURL_SYM(global_init, "curl_global_init")
    ACCORD_CURL_SYM(easy_init, "curl_easy_init")
    ACCORD_CURL_SYM(easy_cleanup, "curl_easy_cleanup")
    ACCORD_CURL_SYM(easy_reset, "curl_easy_reset")
    ACCORD_CURL_SYM(easy_perform, "curl_easy_perform")
    ACCORD_CURL_SYM(easy_strerror, "curl_easy_strerror")
    ACCORD_CURL_SYM(easy_setopt, "curl_easy_setopt")
    ACCORD_CURL_SYM(easy_getinfo, "curl_easy_getinfo")
    ACCORD_CURL_SYM(slist_append, "curl_slist_append")
    ACCORD_CURL_SYM(slist_free_all, "curl_slist_free_all")
    ACCORD_CURL_SYM(version_info, "curl_version_info")
#undef ACCORD_CURL_SYM
    return NULL;
}

static inline CURLcode accord_curl_global_init(const accord_curl_api *a) { return a->global_init(CURL_GLOBAL_DEFAULT); }
static inline CURL *accord_curl_easy_init(const accord_curl_api *a) { return a->easy_init(); }
static inline void accord_curl_easy_cleanup(const accord_curl_api *a, CURL *h) { a->easy_cleanup(h); }
static inline void accord_curl_easy_reset(const accord_curl_api *a, CURL *h) { a->easy_reset(h); }
static inline CURLcode accord_curl_easy_perform(const accord_curl_api *a, CURL *h) { return a->easy_perform(h); }
static inline const char *accord_curl_easy_strerror(const accord_curl_api *a, CURLcode c) { return a->easy_strerror(c); }
static inline struct curl_slist *accord_curl_slist_append(const accord_curl_api *a, struct curl_slist *l, const char *s) { return a->slist_append(l, s); }
static inline void accord_curl_slist_free_all(const accord_curl_api *a, struct curl_slist *l) { a->slist_free_all(l); }
/* libcurl's version string ("8.14.1"), or NULL. */
static inline const char *accord_curl_version(const accord_curl_api *a) {
    curl_version_info_data *d = a->version_info(CURLVERSION_NOW);
    return d ? d->version : NULL;
}

/* curl_easy_setopt and curl_easy_getinfo are variadic: Swift cannot call
   them, so one typed wrapper per argument type. */
static inline CURLcode accord_curl_setopt_long(const accord_curl_api *a, CURL *h, CURLoption o, long v) { return a->easy_setopt(h, o, v); }
static inline CURLcode accord_curl_setopt_off(const accord_curl_api *a, CURL *h, CURLoption o, curl_off_t v) { return a->easy_setopt(h, o, v); }
static inline CURLcode accord_curl_setopt_ptr(const accord_curl_api *a, CURL *h, CURLoption o, const void *v) { return a->easy_setopt(h, o, v); }
static inline CURLcode accord_curl_setopt_write(const accord_curl_api *a, CURL *h, CURLoption o, size_t (*f)(char *, size_t, size_t, void *)) { return a->easy_setopt(h, o, f); }
static inline CURLcode accord_curl_getinfo_long(const accord_curl_api *a, CURL *h, CURLINFO i, long *v) { return a->easy_getinfo(h, i, v); }

// Which deflate library should write Accord's blobs? Compares libdeflate and
// igzip (Intel ISA-L) levels on a corpus made by corpus.py, on one core.
//
//     cc -O2 -o /tmp/codec_bench Benchmarks/scripts/codec_bench.c -ldeflate -lisal -lz
//     /tmp/codec_bench /tmp/accord-bench/scale-1/corpus
//
// Chunks as a backup of the corpus makes them, roughly: files under db/,
// tables/ and blobs/ cut every 1 MiB (the `tree` profile averages 1 MiB),
// db/ a second time every 4 KiB (the `dump` profile), each file of projects/
// and config/ one chunk. Every chunk goes through Deflater's rule: stored raw
// under 64 bytes; from 32 KiB, 8 KiB from its middle must shrink by 1/32 at
// level 1 of the same library; the whole must shrink by 1/64. The first pass
// checks every stream with zlib's uncompress(); the time is the best of three
// further passes (thread CPU time). "mix" is everything but the 4 KiB pass.
#define _GNU_SOURCE
#include <dirent.h>
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

typedef struct { const uint8_t *p; size_t n; } chunk;
typedef struct { const char *name; chunk *c; size_t count, bytes; } kind;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { perror("malloc"); exit(1); }
    return p;
}

static void add(kind *k, const uint8_t *p, size_t n) {
    if (k->count % 4096 == 0) {
        k->c = realloc(k->c, (k->count + 4096) * sizeof(chunk));
        if (!k->c) { perror("realloc"); exit(1); }
    }
    k->c[k->count++] = (chunk){p, n};
    k->bytes += n;
}

// Every regular file under `dir`, cut every `size` bytes (0: one chunk a file).
static void add_tree(kind *k, const char *dir, size_t size) {
    DIR *d = opendir(dir);
    if (!d) { perror(dir); exit(1); }
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st)) { perror(path); exit(1); }
        if (S_ISDIR(st.st_mode)) { add_tree(k, path, size); continue; }
        if (!S_ISREG(st.st_mode) || st.st_size == 0) continue;
        FILE *f = fopen(path, "rb");
        if (!f) { perror(path); exit(1); }
        uint8_t *b = xmalloc(st.st_size);
        if (fread(b, 1, st.st_size, f) != (size_t)st.st_size) { perror(path); exit(1); }
        fclose(f);
        size_t n = st.st_size, step = size ? size : n;
        for (size_t o = 0; o < n; o += step) add(k, b + o, n - o < step ? n - o : step);
    }
    closedir(d);
}

enum lib { LIBDEFLATE, IGZIP };
typedef struct { enum lib lib; int level; const char *name; } codec;

static struct libdeflate_compressor *libdeflate[10];
static struct isal_zstream stream;
static uint8_t *level_buf;
static uint32_t level_buf_size = ISAL_DEF_LVL3_DEFAULT;

// The zlib stream's length, or 0 if it does not fit in `cap`.
static size_t deflate_one(codec c, const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    if (c.lib == LIBDEFLATE) return libdeflate_zlib_compress(libdeflate[c.level], in, n, out, cap);
    isal_deflate_stateless_init(&stream);
    stream.level = c.level;
    stream.level_buf = level_buf;
    stream.level_buf_size = level_buf_size;
    stream.gzip_flag = IGZIP_ZLIB;
    stream.end_of_stream = 1;
    stream.next_in = (uint8_t *)in;
    stream.avail_in = n;
    stream.next_out = out;
    stream.avail_out = cap;
    int r = isal_deflate_stateless(&stream);
    if (r == STATELESS_OVERFLOW) return 0;
    if (r != COMP_OK) { fprintf(stderr, "isal_deflate_stateless: %d\n", r); exit(1); }
    return stream.total_out;
}

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// Bytes stored for the chunks of `k`, by Deflater's rule.
static size_t store_all(codec c, const kind *k, uint8_t *out, uint8_t *check) {
    size_t stored = 0;
    uint8_t sample[8192];
    codec probe = c;
    probe.level = 1;
    for (size_t i = 0; i < k->count; i++) {
        const uint8_t *p = k->c[i].p;
        size_t n = k->c[i].n;
        if (n < 64) { stored += n; continue; }
        if (n >= 32 * 1024) {
            size_t start = (n / 2) & ~(size_t)63, m = n - start < 8192 ? n - start : 8192;
            if (!deflate_one(probe, p + start, m, sample, m - m / 32)) { stored += n; continue; }
        }
        size_t r = deflate_one(c, p, n, out, n - n / 64);
        if (!r) { stored += n; continue; }
        stored += r;
        if (check) {
            uLongf len = n;
            if (uncompress(check, &len, out, r) != Z_OK || len != n || memcmp(check, p, n)) {
                fprintf(stderr, "%s: chunk %zu of %s does not inflate back\n", c.name, i, k->name);
                exit(1);
            }
        }
    }
    return stored;
}

// libdeflate's inflate speed on what `c` wrote (MB/s of inflated bytes).
static double inflate_rate(codec c, const kind *k, uint8_t *out) {
    uint8_t **streams = calloc(k->count, sizeof *streams);
    size_t *lengths = calloc(k->count, sizeof *lengths), raw = 0;
    for (size_t i = 0; i < k->count; i++) {
        size_t n = k->c[i].n;
        if (n < 64) continue;
        size_t r = deflate_one(c, k->c[i].p, n, out, n - n / 64);
        if (!r) continue;
        streams[i] = xmalloc(r);
        memcpy(streams[i], out, r);
        lengths[i] = r;
        raw += n;
    }
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = cpu_seconds();
        for (size_t i = 0; i < k->count; i++) {
            size_t got;
            if (streams[i] && (libdeflate_zlib_decompress(d, streams[i], lengths[i], out, k->c[i].n, &got) || got != k->c[i].n)) {
                fprintf(stderr, "libdeflate cannot inflate %s chunk %zu\n", c.name, i);
                exit(1);
            }
        }
        double t = cpu_seconds() - t0;
        if (t < best) best = t;
    }
    libdeflate_free_decompressor(d);
    for (size_t i = 0; i < k->count; i++) free(streams[i]);
    free(streams);
    free(lengths);
    return raw / best / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s CORPUS-DIRECTORY\n", argv[0]); return 2; }
    char path[4096];
    kind kinds[] = {{.name = "db 1M"}, {.name = "db 4K"}, {.name = "tables 1M"}, {.name = "projects/file"}, {.name = "config/file"}, {.name = "blobs 1M"}};
    enum { NK = sizeof kinds / sizeof *kinds, DUMP = 1 };
    struct { int kind; const char *dir; size_t size; } sources[] = {
        {0, "db", 1 << 20}, {1, "db", 4096}, {2, "tables", 1 << 20}, {3, "projects", 0}, {4, "config", 0}, {5, "blobs", 1 << 20}};
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++) {
        snprintf(path, sizeof path, "%s/%s", argv[1], sources[i].dir);
        add_tree(&kinds[sources[i].kind], path, sources[i].size);
    }
    for (int l = 1; l <= 9; l++) libdeflate[l] = libdeflate_alloc_compressor(l);
    level_buf = xmalloc(level_buf_size);
    codec codecs[] = {{LIBDEFLATE, 1, "libdeflate L1"}, {LIBDEFLATE, 3, "libdeflate L3"}, {LIBDEFLATE, 6, "libdeflate L6"},
                      {IGZIP, 0, "igzip L0"}, {IGZIP, 1, "igzip L1"}, {IGZIP, 2, "igzip L2"}, {IGZIP, 3, "igzip L3"}};
    enum { NC = sizeof codecs / sizeof *codecs };
    uint8_t *out = xmalloc(64 << 20), *check = xmalloc(64 << 20);
    size_t stored[NK][NC];
    double seconds[NK][NC];

    printf("%-14s %-14s %9s %9s %9s %7s %8s\n", "chunks", "codec", "MiB in", "MiB out", "MB/s", "ratio", "vs L1");
    for (int k = 0; k < NK; k++) {
        for (int c = 0; c < NC; c++) {
            stored[k][c] = store_all(codecs[c], &kinds[k], out, check);
            seconds[k][c] = 1e9;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = cpu_seconds();
                store_all(codecs[c], &kinds[k], out, NULL);
                double t = cpu_seconds() - t0;
                if (t < seconds[k][c]) seconds[k][c] = t;
            }
            printf("%-14s %-14s %9.1f %9.1f %9.0f %7.2f %+7.1f%%\n", kinds[k].name, codecs[c].name, kinds[k].bytes / 1048576.0,
                   stored[k][c] / 1048576.0, kinds[k].bytes / seconds[k][c] / 1e6, (double)kinds[k].bytes / stored[k][c],
                   100.0 * ((double)stored[k][c] / stored[k][0] - 1));
            fflush(stdout);
        }
    }

    printf("\nmix (all but db 4K):\n");
    size_t in = 0, base = 0;
    double base_seconds = 0;
    for (int k = 0; k < NK; k++)
        if (k != DUMP) { in += kinds[k].bytes; base += stored[k][0]; base_seconds += seconds[k][0]; }
    for (int c = 0; c < NC; c++) {
        size_t s = 0;
        double t = 0;
        for (int k = 0; k < NK; k++)
            if (k != DUMP) { s += stored[k][c]; t += seconds[k][c]; }
        printf("%-14s %.1f -> %.1f MiB (%+.1f%%), %.2f s, %.0f MB/s, %.2fx libdeflate L1\n", codecs[c].name, in / 1048576.0,
               s / 1048576.0, 100.0 * ((double)s / base - 1), t, in / t / 1e6, base_seconds / t);
    }

    printf("\ninflate with libdeflate, MB/s:\n");
    for (int k = 0; k < 4; k++)
        printf("%-14s libdeflate L1 %6.0f   igzip L1 %6.0f\n", kinds[k].name, inflate_rate(codecs[0], &kinds[k], out),
               inflate_rate(codecs[4], &kinds[k], out));
    return 0;
}

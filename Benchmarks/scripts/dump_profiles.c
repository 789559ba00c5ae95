// Issue 17: what a first backup of a dump stores, by `dump` chunker profile and deflate level,
// without running accord: FastCDC as FORMAT.md "Chunker" (plain repositories' SplitMix64 gear
// table, seed 2544cfe684ebf9e2 as efficiency.sh, or $SEED in hex), chunks deduplicated, each
// deflated by Deflater's rules (raw under 64 bytes, the 8 KiB probe from 32 KiB, kept only when
// it saves 1/64), plus 90 bytes of pack-header and index entry a blob and 32 of chunk list a
// chunk (encrypted: 28 more a blob). One core; "cpu" is the compression's thread CPU time.
//
//     cc -O2 -o /tmp/dump_profiles Benchmarks/scripts/dump_profiles.c -ldeflate -lisal -lz
//     /tmp/dump_profiles DUMP MIN AVG MAX [LEVEL ...] [-adapt T L] [-dict G ZLEVEL] [-prevdict ZLEVEL]
//
// LEVEL 0 is igzip level 1 (accord's default), 1-12 libdeflate's levels, 10N igzip level N.
// -adapt T L: igzip level 1, and libdeflate level L again where that left more than 1/T
// (what the `dump` profile's `level` does, with T = 8). -dict / -prevdict: zlib with a preset
// dictionary (the group's first chunk, or the previous chunk) for comparison.
// Benchmarks/README.md, "Data efficiency", has the figures for the full-scale dump.
#define _GNU_SOURCE
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

static uint64_t gear[256];
static void make_gear(uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < 256; i++) {
        s += 0x9E3779B97F4A7C15ull;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        gear[i] = z ^ (z >> 31);
    }
}
static size_t cut(const uint8_t *b, size_t n, size_t mn, size_t avg, size_t mx) {
    if (n <= mn) return n;
    int bits = __builtin_ctzll(avg);
    uint64_t maskS = ~0ull << (64 - (bits + 2));
    int lb = bits - 2 < 1 ? 1 : bits - 2;
    uint64_t maskL = ~0ull << (64 - lb);
    uint64_t h = 0;
    size_t end = n < mx ? n : mx;
    for (size_t i = mn; i < end; i++) {
        h = (h << 1) + gear[b[i]];
        if (i < avg) { if (!(h & maskS)) return i + 1; }
        else if (!(h & maskL)) return i + 1;
    }
    return end;
}
static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h ^ n;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static struct libdeflate_compressor *ld[13];
static struct isal_zstream st;
static uint8_t *lvlbuf;
static int iglvl = 1;
static size_t igzip1(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    isal_deflate_stateless_init(&st);
    st.level = iglvl; st.level_buf = lvlbuf; st.level_buf_size = 1<<20;
    st.gzip_flag = IGZIP_ZLIB; st.end_of_stream = 1;
    st.next_in = (uint8_t *)in; st.avail_in = n; st.next_out = out; st.avail_out = cap;
    int r = isal_deflate_stateless(&st);
    if (r != COMP_OK) return 0;
    return st.total_out;
}
// Deflater's rule: raw under 64 bytes, probe for >= 32 KiB, keep if saves >= 1/64.
static size_t store(int lvl, const uint8_t *p, size_t n, uint8_t *out) {
    if (n < 64) return n;
    if (n >= 32768) {
        size_t s = (n / 2) & ~(size_t)63, m = n - s < 8192 ? n - s : 8192;
        size_t r = igzip1(p + s, m, out, m - m / 32);
        if (!r) return n;
    }
    if (lvl >= 100) { iglvl = lvl - 100; size_t r = igzip1(p, n, out, n - n / 64); iglvl = 1; return r ? r : n; }
    size_t r = lvl == 0 ? igzip1(p, n, out, n - n / 64) : libdeflate_zlib_compress(ld[lvl], p, n, out, n - n / 64);
    return r ? r : n;
}
// zlib with a preset dictionary
static size_t zdict(int lvl, const uint8_t *dict, size_t dn, const uint8_t *p, size_t n, uint8_t *out, size_t cap) {
    z_stream z; memset(&z, 0, sizeof z);
    deflateInit2(&z, lvl, Z_DEFLATED, 15, 9, Z_DEFAULT_STRATEGY);
    if (dn) { if (dn > 32768) { dict += dn - 32768; dn = 32768; } deflateSetDictionary(&z, dict, dn); }
    z.next_in = (uint8_t *)p; z.avail_in = n; z.next_out = out; z.avail_out = cap;
    int r = deflate(&z, Z_FINISH);
    size_t o = z.total_out; deflateEnd(&z);
    return r == Z_STREAM_END ? o : 0;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: file min avg max [levels...] [-dict G]\n"); return 2; }
    int fd = open(argv[1], O_RDONLY); struct stat sb; fstat(fd, &sb);
    const uint8_t *b = mmap(0, sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    size_t N = sb.st_size, mn = atol(argv[2]), avg = atol(argv[3]), mx = atol(argv[4]);
    make_gear(getenv("SEED") ? strtoull(getenv("SEED"),0,16) : 0x2544cfe684ebf9e2ull);
    for (int l = 1; l <= 12; l++) ld[l] = libdeflate_alloc_compressor(l);
    lvlbuf = malloc(1 << 20);
    size_t cap = 64 << 20; uint8_t *out = malloc(cap);
    // chunk + dedup
    size_t nc = 0, *off = malloc(sizeof(size_t) * (N / mn + 2)), *len = malloc(sizeof(size_t) * (N / mn + 2));
    char *uniq = malloc(N / mn + 2);
    size_t hsz = 1 << 22; uint64_t *ht = calloc(hsz, 8);
    size_t nu = 0, ub = 0;
    double t0 = now();
    for (size_t o = 0; o < N;) {
        size_t l = cut(b + o, N - o, mn, avg, mx);
        uint64_t h = fnv(b + o, l) | 1; size_t k = h & (hsz - 1); int dup = 0;
        while (ht[k]) { if (ht[k] == h) { dup = 1; break; } k = (k + 1) & (hsz - 1); }
        if (!dup) { ht[k] = h; nu++; ub += l; }
        off[nc] = o; len[nc] = l; uniq[nc] = !dup; nc++; o += l;
    }
    double tc = now() - t0;
    printf("profile %zu/%zu/%zu: %zu chunks, %zu unique (%.1f MB), chunk cpu %.2fs\n", mn, avg, mx, nc, nu, ub / 1e6, tc);
    // metadata per unique blob: 44 header + 46 index; per chunk 32 list id; encrypted +28 per blob
    double meta = (nu * 90.0 + nc * 32.0) / 1e6, seal = nu * 28.0 / 1e6;
    for (int a = 5; a < argc; a++) {
        if (!strcmp(argv[a], "-dict")) {
            int G = atoi(argv[++a]); int zl = atoi(argv[++a]);
            // groups of G chunks: first whole (zlib lvl zl), others with the anchor as preset dictionary
            size_t tot = 0; double t1 = now();
            for (size_t i = 0; i < nc; i++) {
                if (!uniq[i]) continue;
                size_t anchor = i - i % G;
                size_t r;
                if (anchor == i || !uniq[anchor]) r = zdict(zl, 0, 0, b + off[i], len[i], out, cap);
                else r = zdict(zl, b + off[anchor], len[anchor], b + off[i], len[i], out, cap);
                tot += r && r < len[i] ? r : len[i];
            }
            printf("  dict G=%d zlib%d: data %.2f MB (+meta %.2f = %.2f plain, %.2f enc) cpu %.1fs\n", G, zl, tot / 1e6, meta, tot / 1e6 + meta, tot / 1e6 + meta + seal, now() - t1);
            continue;
        }
        if (!strcmp(argv[a], "-prevdict")) {
            int zl = atoi(argv[++a]);
            size_t tot = 0; double t1 = now();
            for (size_t i = 0; i < nc; i++) {
                if (!uniq[i]) continue;
                size_t r = i ? zdict(zl, b + off[i-1], len[i-1], b + off[i], len[i], out, cap) : zdict(zl, 0, 0, b + off[i], len[i], out, cap);
                tot += r && r < len[i] ? r : len[i];
            }
            printf("  prevdict zlib%d: data %.2f MB (+meta %.2f = %.2f plain, %.2f enc) cpu %.1fs\n", zl, tot / 1e6, meta, tot / 1e6 + meta, tot / 1e6 + meta + seal, now() - t1);
            continue;
        }
        if (!strcmp(argv[a], "-adapt")) {
            double T = atof(argv[++a]); int L = atoi(argv[++a]);
            size_t tot = 0, re = 0, reb = 0; double t1 = now();
            for (size_t i = 0; i < nc; i++) if (uniq[i]) {
                size_t r = store(0, b + off[i], len[i], out);
                if (r * T > len[i] && r < len[i]) { size_t r2 = store(L, b + off[i], len[i], out); re++; reb += len[i]; if (r2 < r) r = r2; }
                tot += r;
            }
            double tcpu = now() - t1;
            printf("  adapt T=%.0f L%d: data %.2f MB (+meta %.2f = %.2f plain, %.2f enc) cpu %.2fs, %zu recompressed (%.1f MB)\n", T, L, tot / 1e6, meta, tot / 1e6 + meta, tot / 1e6 + meta + seal, tcpu, re, reb/1e6);
            continue;
        }
        int lvl = atoi(argv[a]);
        size_t tot = 0; double t1 = now();
        for (size_t i = 0; i < nc; i++) if (uniq[i]) tot += store(lvl, b + off[i], len[i], out);
        double tcpu = now() - t1;
        printf("  %s L%d: data %.2f MB (+meta %.2f = %.2f plain, %.2f enc) cpu %.2fs %.0f MB/s\n", lvl >= 100 ? "igzip" : lvl ? "libdeflate" : "igzip", lvl >= 100 ? lvl - 100 : lvl ? lvl : 1, tot / 1e6, meta, tot / 1e6 + meta, tot / 1e6 + meta + seal, tcpu, ub / tcpu / 1e6);
        fflush(stdout);
    }
    return 0;
}

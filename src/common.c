/* common.c: per-thread error messages, aligned allocation, clock. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char last_error[1024];
static _Atomic long long alloc_calls, alloc_bytes;

long long spr_alloc_calls(void) { return alloc_calls; }
long long spr_alloc_bytes(void) { return alloc_bytes; }

const char *spr_version(void) { return SPR_VERSION_STRING; }

const char *spr_last_error(void) { return last_error; }

const char *spr_status_to_string(spr_status status) {
    switch (status) {
    case SPR_STATUS_OK: return "ok";
    case SPR_STATUS_BAD_INPUT: return "bad input";
    case SPR_STATUS_IO_ERROR: return "i/o error";
    case SPR_STATUS_NO_MEMORY: return "out of memory";
    case SPR_STATUS_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* A message longer than the buffer loses its middle, not its end: messages start with a
 * path and end with the problem, and a path of a few thousand characters (PATH_MAX is
 * 4096) used to leave only itself, the reason cut off. */
spr_status spr_fail(spr_status status, const char *fmt, ...) {
    char full[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(full, sizeof full, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    size_t len = (size_t)n < sizeof full ? (size_t)n : sizeof full - 1;
    if (len < sizeof last_error) {
        memcpy(last_error, full, len + 1);
    } else {
        const size_t head = 300, gap = 5, tail = sizeof last_error - 1 - head - gap;
        memcpy(last_error, full, head);
        memcpy(last_error + head, " ... ", gap);
        memcpy(last_error + head + gap, full + len - tail, tail + 1);
    }
    return status;
}

int64_t spr_alloc_size(size_t n) {
    if (n == 0) n = SPR_ALIGN;
    return (int64_t)((n + SPR_ALIGN - 1) / SPR_ALIGN * SPR_ALIGN);
}

void *spr_alloc(size_t n) {
    alloc_calls++;
    if (n == 0) n = SPR_ALIGN;
    size_t rounded = (size_t)spr_alloc_size(n);
    alloc_bytes += (long long)rounded;
    void *p = NULL;
    /* Blocks of 2 MB and more go on 2 MB boundaries so that transparent huge pages can
     * back them: fewer TLB misses and, on these VMs, far fewer (slow) page faults. Huge
     * pages are only advised, never required. */
    size_t align = rounded >= (2u << 20) ? (2u << 20) : SPR_ALIGN;
    if (posix_memalign(&p, align, rounded) != 0) {
        spr_fail(SPR_STATUS_NO_MEMORY, "out of memory allocating %zu bytes", n);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    if (align > SPR_ALIGN) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    /* The zeroing is what touches the pages first, and on these VMs the kernel's clearing
     * of fresh pages is the slow part (a 2M-label model's 4.4 GB took seconds on one
     * thread): blocks of 64 MB and more are zeroed by every thread, 2 MB at a time. */
    if (rounded >= ((size_t)64 << 20)) {
        const size_t chunk = (size_t)2 << 20, chunks = (rounded + chunk - 1) / chunk;
        char *c = p;
#pragma omp parallel for schedule(static) num_threads(spr_threads(0))
        for (size_t i = 0; i < chunks; i++)
            memset(c + i * chunk, 0, rounded - i * chunk < chunk ? rounded - i * chunk : chunk);
    } else {
        memset(p, 0, rounded);
    }
    return p;
}

void spr_free(void *p) { free(p); }

#define SPR_HUGE ((size_t)2 << 20)

/* The bytes a reservation of n maps: whole 2 MB pages, at least one. */
static size_t reserved_span(size_t n) {
    return n == 0 ? SPR_HUGE : (n + SPR_HUGE - 1) / SPR_HUGE * SPR_HUGE;
}

/* The mapping is n rounded up to 2 MB plus 2 MB of slack, so that a 2 MB boundary inside
 * it can start the block (transparent huge pages); the slack is unmapped again. */
void *spr_alloc_reserved(size_t n) {
    alloc_calls++;
    const size_t rounded = reserved_span(n);
    char *map = mmap(NULL, rounded + SPR_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (map == MAP_FAILED) {
        spr_fail(SPR_STATUS_NO_MEMORY, "out of memory reserving %zu bytes", n);
        return NULL;
    }
    const size_t lead = (SPR_HUGE - (uintptr_t)map % SPR_HUGE) % SPR_HUGE;
    if (lead) munmap(map, lead);
    if (SPR_HUGE - lead) munmap(map + lead + rounded, SPR_HUGE - lead);
    char *p = map + lead;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

/* Writes back one byte of every 4 KB page as it is: the pages fault in (zeroed by the
 * kernel if fresh) and whatever was written there already stays. */
void spr_pages_touch(void *p, size_t n) {
    const size_t chunks = (n + SPR_HUGE - 1) / SPR_HUGE;
    volatile char *c = p;
#pragma omp parallel for schedule(static) num_threads(spr_threads(0))
    for (size_t i = 0; i < chunks; i++)
        for (size_t off = i * SPR_HUGE; off < n && off < (i + 1) * SPR_HUGE; off += 4096)
            c[off] = c[off];
}

void spr_pages_release(void *p, size_t n) {
    const uintptr_t lo = ((uintptr_t)p + 4095) / 4096 * 4096, hi = ((uintptr_t)p + n) / 4096 * 4096;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void spr_free_reserved(void *p, size_t n) {
    if (!p) return;
    munmap(p, reserved_span(n));
}

void spr_rng_normals(spr_rng *r, float *out, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i += 2) {
        const uint64_t b = spr_rng_next(r);
        const float u1 = (float)((b >> 40) + 1) * 0x1p-24f;       /* (0, 1] */
        const float u2 = (float)((b >> 16) & 0xFFFFFF) * 0x1p-24f; /* [0, 1) */
        const float rad = scale * sqrtf(-2.0f * logf(u1));
        float s, c;
        sincosf(6.28318531f * u2, &s, &c);
        out[i] = rad * c;
        if (i + 1 < n) out[i + 1] = rad * s;
    }
}

void spr_file_keep_mode(int fd, const char *path) {
    struct stat sb;
    if (fd < 0 || !path || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return;
    if (geteuid() == 0) {
        if (fchown(fd, sb.st_uid, sb.st_gid) != 0) {} /* best effort */
    } else if (sb.st_gid != getegid()) {
        if (fchown(fd, (uid_t)-1, sb.st_gid) != 0) {} /* only a group the user is in */
    }
    if (fchmod(fd, sb.st_mode & 0777) != 0) {} /* never set-id bits */
}

spr_status spr_file_replace_check(const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return SPR_STATUS_OK;
    /* root passes access() but not a file no one may write */
    if ((sb.st_mode & 0222) && (access(path, W_OK) == 0 || errno != EACCES)) return SPR_STATUS_OK;
    return spr_fail(SPR_STATUS_IO_ERROR,
                    "%s: cannot write: the file is write-protected (mode %03o): writing would "
                    "replace it; make it writable (chmod u+w) or write elsewhere",
                    path, (unsigned)(sb.st_mode & 0777));
}

double spr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GNU OpenMP cannot be used in a child forked after the forking thread ran a parallel
 * region: the child inherits libgomp's record of that thread's workers but not the
 * workers, and its next region waited for them forever (a Python multiprocessing worker,
 * or a preforking server's, calling predict after the parent trained or predicted; also
 * after PyTorch's regions, the same libgomp). So before every fork() in a process that
 * loaded sparrow, the forking thread's workers are released (omp_pause_resource_all:
 * the parent makes new ones at its next region, the child its own) and the child runs
 * on all its threads. Where that fails (a fork inside a parallel region), a child forked
 * after sparrow ran a region runs sparrow on one thread, as do its children (a region of
 * one thread starts no worker). */
static atomic_int threads_used;   /* a region may have run in this process or a parent */
static atomic_int threads_forked; /* forked after that without the release: 1 thread */
static int fork_released;         /* the parent's workers were released (read in the child) */
static void fork_prepare(void) {
#ifdef _OPENMP
    fork_released = omp_pause_resource_all(omp_pause_hard) == 0;
#else
    fork_released = 1;
#endif
}
static void fork_child(void) {
    if (!fork_released && atomic_load_explicit(&threads_used, memory_order_relaxed))
        atomic_store_explicit(&threads_forked, 1, memory_order_relaxed);
}
__attribute__((constructor)) static void fork_watch(void) { pthread_atfork(fork_prepare, NULL, fork_child); }

int spr_threads_forked(void) { return atomic_load_explicit(&threads_forked, memory_order_relaxed); }

int spr_threads(int n) {
    if (!atomic_load_explicit(&threads_used, memory_order_relaxed))
        atomic_store_explicit(&threads_used, 1, memory_order_relaxed);
    if (spr_threads_forked()) return 1;
    /* Thousands of threads made libgomp fail to create them (exit 1) or crash. */
    if (n > SPR_MAX_THREADS) return SPR_MAX_THREADS;
    if (n > 0) return n;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int spr_threads_start(int threads) {
    int started = 0;
#pragma omp parallel num_threads(spr_threads(threads)) reduction(+ : started)
    started += 1;
    return started;
}

/* The passes of an LSD radix sort of keys below limit: as few as 11-bit digits need (1
 * below 2^11, 2 below 2^22, 3 above), the bits split evenly between them (17-bit keys:
 * 2 passes of 9 bits, 512 buckets, where 11 + 6 bits made the first pass's 2,048 write
 * streams overflow L1). 0 passes for limit <= 1 (one key). */
static int radix_plan(uint64_t limit, int *digit) {
    int bits = 0;
    while (bits < 32 && ((uint64_t)1 << bits) < limit) bits++;
    const int passes = (bits + 10) / 11;
    *digit = passes ? (bits + passes - 1) / passes : 0;
    return passes;
}

void spr_sort_entries(uint32_t **key, uint64_t **val, uint32_t **key_tmp, uint64_t **val_tmp,
                      int64_t n, uint64_t limit) {
    int digit;
    const int passes = radix_plan(limit, &digit);
    const uint32_t mask = (1u << digit) - 1u;
    uint32_t count[3][2048];
    memset(count, 0, sizeof count);
    const uint32_t *k0 = *key;
    for (int64_t i = 0; i < n; i++) /* one read counts every pass's digit */
        for (int p = 0; p < passes; p++) count[p][(k0[i] >> (p * digit)) & mask]++;
    for (int p = 0; p < passes; p++) {
        const int shift = p * digit;
        uint32_t *c = count[p], sum = 0;
        for (uint32_t b = 0; b <= mask; b++) {
            const uint32_t cb = c[b];
            c[b] = sum;
            sum += cb;
        }
        const uint32_t *ks = *key;
        const uint64_t *vs = *val;
        uint32_t *kd = *key_tmp;
        uint64_t *vd = *val_tmp;
        for (int64_t i = 0; i < n; i++) {
            const uint32_t d = c[(ks[i] >> shift) & mask]++;
            kd[d] = ks[i], vd[d] = vs[i];
        }
        uint32_t *tk = *key;
        uint64_t *tv = *val;
        *key = *key_tmp, *val = *val_tmp;
        *key_tmp = tk, *val_tmp = tv;
    }
}

/* Sorts n non-negative ids below `limit` ascending: LSD radix sort (radix_plan's
 * passes), O(n + buckets) a pass. tmp holds n ints. */
void spr_sort_ids(int32_t *ids, int64_t n, int64_t limit, int32_t *tmp) {
    if (n < 48) { /* insertion sort beats the passes on short lists */
        for (int64_t i = 1; i < n; i++) {
            int32_t v = ids[i];
            int64_t k = i;
            while (k > 0 && ids[k - 1] > v) {
                ids[k] = ids[k - 1];
                k--;
            }
            ids[k] = v;
        }
        return;
    }
    int32_t *src = ids, *dst = tmp;
    int digit;
    const int passes = radix_plan(limit > 0 ? (uint64_t)limit : 0, &digit);
    const uint32_t mask = (1u << digit) - 1u;
    for (int p = 0; p < passes; p++) {
        const int shift = p * digit;
        uint32_t count[2048];
        memset(count, 0, (mask + 1) * sizeof(uint32_t));
        for (int64_t i = 0; i < n; i++) count[((uint32_t)src[i] >> shift) & mask]++;
        uint32_t sum = 0;
        for (uint32_t b = 0; b <= mask; b++) {
            uint32_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) dst[count[((uint32_t)src[i] >> shift) & mask]++] = src[i];
        int32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != ids) memcpy(ids, src, (size_t)n * sizeof(int32_t));
}

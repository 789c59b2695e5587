/*
 * common.h: what every source file of the library needs: the error message kept per
 * thread, aligned allocation, a small deterministic random number generator, a clock.
 * Internal: nothing here is part of the public API.
 */
#ifndef SPR_COMMON_H
#define SPR_COMMON_H

#include "sparrow.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define SPR_ALIGN 64 /* bytes: one cache line, one AVX-512 register */

/* For helpers made only of __builtin_prefetch: GCC 12 finds such a function free of side
 * effects ("const") and deletes every call to it unless it was inlined first; forcing
 * the inlining keeps the prefetches (seen: deferred_adam's prefetches were compiled out). */
#define SPR_ALWAYS_INLINE __attribute__((always_inline))

/* Loops the compiler vectorises well but that are no kernels of their own (kernels.h): a
 * function marked SPR_CLONES is compiled twice, for AVX2 (x86-64-v3) and the baseline,
 * and the loader picks the one the CPU runs. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SPR_NO_CLONES)
#define SPR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SPR_CLONES
#endif

/* Records a printf-style message for spr_last_error() and returns status, so that a
 * failure reads `return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: ...", ...);`. */
spr_status spr_fail(spr_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Zeroed, SPR_ALIGN-aligned memory of n bytes (NULL on failure, message recorded);
 * release with spr_free. Large blocks are advised to use transparent huge pages. */
void *spr_alloc(size_t n);
void spr_free(void *p);

/* The bytes spr_alloc(n) takes: n rounded up to SPR_ALIGN (at least SPR_ALIGN). */
int64_t spr_alloc_size(size_t n);

/* Zeroed, 2 MB-aligned memory of n bytes whose pages are not touched: the kernel's zero
 * pages until first written, so it costs no resident memory and no page clearing until
 * used (NULL on failure, message recorded). spr_pages_touch faults n bytes of it in
 * (every thread, 2 MB at a time; what is written there stays), for a caller about to use
 * it in a step. Release with spr_free_reserved(p, n). */
void *spr_alloc_reserved(size_t n);
void spr_pages_touch(void *p, size_t n);
void spr_free_reserved(void *p, size_t n);
/* Gives the whole 4 KB pages inside [p, p + n) of a block back to the system (madvise
 * MADV_DONTNEED): they no longer count in the resident memory, and read as zero if read
 * again. The block stays allocated. */
void spr_pages_release(void *p, size_t n);

/* Calls to spr_alloc so far (all threads): lets a test prove that a training step
 * allocates nothing. */
long long spr_alloc_calls(void);
/* Bytes spr_alloc has handed out so far (blocks as rounded, all threads, never
 * decreasing): lets a test check a size formula against the allocations it describes. */
long long spr_alloc_bytes(void);

/* Floats per row so that every row starts on a SPR_ALIGN boundary. */
static inline int64_t spr_row_stride(int64_t cols) {
    const int64_t per_line = SPR_ALIGN / (int64_t)sizeof(float);
    return (cols + per_line - 1) / per_line * per_line;
}

/* splitmix64: seeds and hashes. A bijection of 64-bit words with good avalanche. */
static inline uint64_t spr_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* xoshiro256**: the per-thread and per-sample generator. */
typedef struct spr_rng {
    uint64_t s[4];
} spr_rng;

static inline void spr_rng_seed(spr_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        seed = spr_mix64(seed);
        r->s[i] = seed;
    }
}

static inline uint64_t spr_rng_next(spr_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-32 for n < 2^32). */
static inline uint64_t spr_rng_below(spr_rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)spr_rng_next(r) * n) >> 64);
}

/* Uniform in [0, 1). */
static inline double spr_rng_uniform(spr_rng *r) {
    return (double)(spr_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller, one value per call: simple and deterministic). */
static inline double spr_rng_normal(spr_rng *r) {
    double u1 = spr_rng_uniform(r), u2 = spr_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* n values of N(0, scale^2) into out, for initialising weights: Box-Muller in float, both
 * values of a pair used, one 64-bit draw per pair (24 bits for each uniform; u1 in
 * (0, 1], so no value is infinite and |value| <= 5.77 scale). Deterministic for a given
 * stream; about 4x faster than n calls of spr_rng_normal (which spends its time in double
 * log and cos: 29 -> 8 ns a value here), and drawing a 2M x 128 layer took 3.6 s of a
 * 9 s start-up. For odd n the pair's second value is dropped. */
void spr_rng_normals(spr_rng *r, float *out, int64_t n, float scale);

/* Seconds on a monotonic clock. */
double spr_now(void);

/* Gives fd, a temporary about to be renamed onto path, the permission bits (and, where
 * the process may, the group; as root the owner too) of the regular file at path, if
 * there is one: a save keeps a file that was made private (chmod 600) private, where the
 * rename used to leave it 0666 less the umask. Best effort: a file system without modes
 * leaves the temporary's. */
void spr_file_keep_mode(int fd, const char *path);

/* IO_ERROR, naming the file and its mode, when path is a regular file no one may write
 * (chmod a-w: kept on purpose) or one this user may not write; else OK. Writes that
 * replace a file through a rename (which needs only the directory) ask first: they
 * replaced such files all the same, where cp and torch.save refuse. */
spr_status spr_file_replace_check(const char *path);

/* Threads to use: n if n > 0, else every core OpenMP offers; 1 where spr_threads_forked.
 * Every parallel region's num_threads comes from here. */
int spr_threads(int n);

/* 1 in a process forked, after sparrow ran a parallel region, where OpenMP's workers
 * could not be released before the fork (a fork inside a parallel region): GNU OpenMP
 * cannot start threads there, and sparrow runs on the calling thread alone. 0 after an
 * ordinary fork: every fork() releases the forking thread's workers first (common.c). */
int spr_threads_forked(void);

/* Sorts n distinct non-negative ids below `limit` ascending (LSD radix sort, at most 11
 * bits a pass; insertion sort for short lists). tmp holds n ints. */
void spr_sort_ids(int32_t *ids, int64_t n, int64_t limit, int32_t *tmp);

/* Sorts the n entries (key[i], val[i]) by key < limit, stably (the entries of one key keep
 * their order): LSD radix sort, at most 11 bits a pass, each pass one scatter of the
 * entries (train.c groups a batch's output entries by row with it: counters per row
 * were cache misses on large layers). The sorted entries end in *key, *val, which may now
 * be the buffers *key_tmp, *val_tmp (the pointers swapped); each holds n. */
void spr_sort_entries(uint32_t **key, uint64_t **val, uint32_t **key_tmp, uint64_t **val_tmp,
                      int64_t n, uint64_t limit);

/* Removes "path.tmp.<pid>" files left beside path by writers (model saves, sparrow gen)
 * of processes that no longer exist: one killed outright cannot clean up after itself.
 * Called after a successful write of path; best effort, errors ignored; a live
 * process's temporary is left alone (checkpoint.c). */
void spr_remove_stale_temporaries(const char *path);

#endif /* SPR_COMMON_H */

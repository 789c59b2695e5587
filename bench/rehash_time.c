/* rehash_time.c: where a rehash of the output layer spends its time, in the shape of the
 * 2M-label sweep (SimHash, 128 hidden, K 15, L 50, buckets of 128). Two figures:
 *   keys_ns_a_row_in_l1  SimHash keys of 2,400 rows that stay in L1, one thread, the
 *                        best of 3 passes of 200 repetitions (what the signed-sums
 *                        kernel and the key packing cost, without memory)
 *   keys_s, build_s      the keys of `rows` rows, 240 rows a call as the trainer hashes
 *                        them, then spr_lsh_build of all 50 tables, 2 threads; the second
 *                        of two rounds (the first pays the page faults)
 * Prints one JSON object. Random weights in [-0.5, 0.5): the bucket sizes of a trained
 * layer differ, the keys' cost does not.
 *
 * Build: gcc -std=gnu11 -O2 -fopenmp -Iinclude -Isrc bench/rehash_time.c build/libsparrow_static.a -lm -o rehash_time
 *   (a build with MPI, the default where it is installed: add $(mpicc --showme:link))
 * Usage: rehash_time [rows 2000000] [simhash_one_in 11]  (SPARROW_KERNELS=portable|avx2|avx512
 * to force a kernel set) */
#include "common.h"
#include "hash.h"
#include "kernels.h"
#include "lsh.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

enum { DIM = 128, K = 15, L = 50, KEY_BITS_MAX = 18, CAPACITY = 128, CALL_ROWS = 240 };

static int fail(const char *what) {
    fprintf(stderr, "rehash_time: %s failed\n", what);
    return 1;
}

/* keys of rows [0, n) of w (n, DIM), CALL_ROWS a call, table-major in keys (L, n); 0 if
 * a thread's scratch could not be allocated */
static int keys_all(const spr_hasher *h, const float *w, int64_t n, uint32_t *keys, int threads) {
    const int64_t work_len = spr_hasher_rows_work_len(h);
    int ok = 1;
#pragma omp parallel num_threads(threads)
    {
        int32_t *work = malloc((size_t)work_len * sizeof(int32_t));
        if (!work) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < n; r += CALL_ROWS) {
            const int64_t m = n - r < CALL_ROWS ? n - r : CALL_ROWS;
            if (work) spr_hasher_keys_rows(h, w + r * DIM, m, DIM, keys + r, 1, n, work, work_len);
        }
        free(work);
    }
    return ok;
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 1 ? atoll(argv[1]) : 2000000;
    const int one_in = argc > 2 ? atoi(argv[2]) : 11;
    if (rows < 2400 || one_in < 1) return fail("arguments (rows >= 2400, one_in >= 1)");

    float *w = malloc((size_t)rows * DIM * sizeof(float));
    uint32_t *keys = malloc((size_t)rows * L * sizeof(uint32_t));
    if (!w || !keys) return fail("malloc");
    uint64_t s = 88172645463325252ull; /* xorshift64 */
    for (int64_t i = 0; i < rows * DIM; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        w[i] = (float)(s >> 40) / (float)(1 << 24) - 0.5f;
    }
    spr_hasher *h;
    spr_lsh *t;
    if (spr_hasher_create(SPR_HASH_SIMHASH, DIM, K, L, KEY_BITS_MAX, one_in, 7, &h))
        return fail("spr_hasher_create");
    if (spr_lsh_create(L, spr_hasher_key_bits(h), rows, CAPACITY, SPR_BUCKET_FIFO, &t))
        return fail("spr_lsh_create");

    double best = 1e30;
    for (int pass = 0; pass < 3; pass++) {
        const double t0 = omp_get_wtime();
        for (int rep = 0; rep < 200; rep++)
            if (!keys_all(h, w, 2400, keys, 1)) return fail("malloc");
        const double ns = (omp_get_wtime() - t0) / (2400.0 * 200) * 1e9;
        best = ns < best ? ns : best;
    }
    double keys_s = 0, build_s = 0;
    for (int round = 0; round < 2; round++) {
        const double t0 = omp_get_wtime();
        if (!keys_all(h, w, rows, keys, 2)) return fail("malloc");
        const double t1 = omp_get_wtime();
        spr_lsh_build(t, keys, 1, rows, 5, 2);
        keys_s = t1 - t0, build_s = omp_get_wtime() - t1;
    }
    printf("{\"kernels\": \"%s\", \"rows\": %lld, \"simhash_one_in\": %d, "
           "\"keys_ns_a_row_in_l1\": %.1f, \"keys_s\": %.3f, \"build_s\": %.3f}\n",
           spr_kernels->name, (long long)rows, one_in, best, keys_s, build_s);
    spr_lsh_free(t);
    spr_hasher_free(h);
    free(keys);
    free(w);
    return 0;
}

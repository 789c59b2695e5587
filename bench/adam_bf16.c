/* adam_bf16.c: the output layer's lazy Adam step alone, float moments against BF16
 * moments (spr_model_config.bf16_state), on the shape of the lead's profile: `rows`
 * output rows of 128 floats, `touched` of them (a random set, stepped in memory order,
 * as deferred_adam in src/train.c does) per step, the row's gradient in a cache-resident
 * buffer. Bytes moved per touched row: w read + written (1 KiB) and m, v read + written
 * (1 KiB as float, 512 B as BF16), so BF16 should take about 3/4 of the float time where
 * the step is memory-bound.
 *
 * Checks first: after one step from the same state both variants give weights within
 * 1e-6 of each other and BF16 moments that are the float ones rounded (m to nearest, v
 * stochastically to one of its two neighbours). Then times `reps` steps of each,
 * interleaved, with the machine's thread count, and prints medians as JSON.
 *
 * Build: gcc -std=gnu11 -O2 -fopenmp -Iinclude -Isrc bench/adam_bf16.c build/libsparrow_static.a -lm -o adam_bf16
 *   (a build with MPI, the default where it is installed: add $(mpicc --showme:link))
 * Usage: adam_bf16 [rows 2000000] [touched 660000] [reps 7] */
#include "common.h"
#include "kernels.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COLS = 128 };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One lazy Adam step over rows list[0..n) of (w, m, v); g is per-thread, formed anew for
 * each row (a stand-in for the gradient deferred_adam forms from its entries). */
static double step(float *w, float *mf, float *vf, uint16_t *mb, uint16_t *vb, const int32_t *list,
                   int64_t n, int bf16, float bc1, float bc2) {
    double t0 = omp_get_wtime();
    static float gtab[2 * COLS];
    for (int c = 0; c < 2 * COLS; c++) gtab[c] = 1e-3f * (float)(c % 17 - 8);
#pragma omp parallel
    {
        float g[COLS];
#pragma omp for schedule(static)
        for (int64_t k = 0; k < n; k++) {
            const int64_t off = (int64_t)list[k] * COLS;
            memcpy(g, gtab + (list[k] & (COLS - 1)), sizeof g);
            if (bf16)
                spr_adam_row_bf16(w + off, g, mb + off, vb + off, COLS, 1e-3f, 0.9f, 0.999f, 1e-8f, bc1, bc2,
                                  (uint32_t)spr_mix64((uint64_t)list[k]));
            else
                spr_adam_row(w + off, g, mf + off, vf + off, COLS, 1e-3f, 0.9f, 0.999f, 1e-8f, bc1, bc2);
        }
    }
    return omp_get_wtime() - t0;
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 1 ? atoll(argv[1]) : 2000000;
    const int64_t touched = argc > 2 ? atoll(argv[2]) : 660000;
    const int reps = argc > 3 ? atoi(argv[3]) : 7;
    if (rows < 1 || touched < 1 || touched > rows || reps < 1 || reps > 99) {
        fprintf(stderr, "adam_bf16: need 1 <= touched <= rows and 1 <= reps <= 99\n");
        return 2;
    }
    const size_t nf = (size_t)rows * COLS;
    float *w1 = spr_alloc(nf * 4), *w2 = spr_alloc(nf * 4), *mf = spr_alloc(nf * 4), *vf = spr_alloc(nf * 4);
    uint16_t *mb = spr_alloc(nf * 2), *vb = spr_alloc(nf * 2);
    int32_t *list = malloc((size_t)touched * sizeof(int32_t));
    if (!w1 || !w2 || !mf || !vf || !mb || !vb || !list) {
        fprintf(stderr, "adam_bf16: out of memory for %lld rows\n", (long long)rows);
        return 1;
    }
    /* every page touched before timing (spr_alloc zeroes); a random sorted subset of rows */
    for (size_t i = 0; i < nf; i++) w1[i] = w2[i] = 0.01f * (float)(i % 101) - 0.5f;
    spr_rng r;
    spr_rng_seed(&r, 7);
    char *pick = calloc((size_t)rows, 1);
    for (int64_t k = 0; k < touched;) {
        int64_t x = (int64_t)spr_rng_below(&r, (uint64_t)rows);
        if (!pick[x]) pick[x] = 1, k++;
    }
    for (int64_t x = 0, k = 0; x < rows; x++)
        if (pick[x]) list[k++] = (int32_t)x;
    free(pick);

    /* check: the first step (zero moments) agrees exactly, as the kernel contract says */
    step(w1, mf, vf, mb, vb, list, touched, 0, 0.1f, 0.001f);
    step(w2, mf, vf, mb, vb, list, touched, 1, 0.1f, 0.001f);
    int64_t bad = 0;
    for (int64_t k = 0; k < touched; k++)
        for (int c = 0; c < COLS; c++) {
            size_t i = (size_t)list[k] * COLS + (size_t)c;
            uint32_t u;
            memcpy(&u, &vf[i], sizeof u);
            bad += fabsf(w1[i] - w2[i]) > 1e-6f || mb[i] != spr_bf16_from_f32(mf[i]) ||
                   (vb[i] != u >> 16 && vb[i] != (u >> 16) + 1);
        }
    if (bad) {
        fprintf(stderr, "adam_bf16: check failed: %lld entries differ between float and BF16\n", (long long)bad);
        return 1;
    }
    double tf[99], tb[99];
    for (int i = 0; i < reps; i++) {
        tf[i] = step(w1, mf, vf, mb, vb, list, touched, 0, 0.19f, 0.002f);
        tb[i] = step(w2, mf, vf, mb, vb, list, touched, 1, 0.19f, 0.002f);
    }
    qsort(tf, (size_t)reps, sizeof(double), cmp_double);
    qsort(tb, (size_t)reps, sizeof(double), cmp_double);
    const double mf_s = tf[reps / 2], mb_s = tb[reps / 2];
    const double bytes_f = (double)touched * COLS * 4 * 2 * 3, bytes_b = (double)touched * COLS * (4 + 2 + 2) * 2;
    printf("{\"kernels\": \"%s\", \"threads\": %d, \"rows\": %lld, \"touched\": %lld, \"reps\": %d, "
           "\"float_ms\": %.2f, \"bf16_ms\": %.2f, \"bf16_over_float\": %.3f, "
           "\"float_gb_per_s\": %.2f, \"bf16_gb_per_s\": %.2f}\n",
           spr_kernels->name, omp_get_max_threads(), (long long)rows, (long long)touched, reps, 1e3 * mf_s,
           1e3 * mb_s, mb_s / mf_s, bytes_f / mf_s / 1e9, bytes_b / mb_s / 1e9);
    return 0;
}

/* adam_floor.c: how far the deferred optimizer's step (src/train.c, deferred_adam) is
 * from the memory floor of its own access pattern. The shape of the 2M-label sweep with
 * --bf16-weights: `rows` output rows of 128 BF16 weights with BF16 moments, `touched` of
 * them (a random set, stepped in memory order, 8 rows prefetched ahead into L2 as
 * train.c does) per step, 1.5 KiB read and written per touched row. Four variants:
 *   layout 0: w, m, v in three arrays (sparrow's layout); 1: one 768-byte block a row
 *   kernel "adam": spr_adam_row_bf16w; "touch": every element read and written back
 *   (the same bytes, next to no arithmetic: the floor)
 * plus the bias's Adam step (four float arrays) in every variant. Prints the median of
 * `reps` steps of each, interleaved, with 2 threads (the machine's cores), and the kernel
 * alone on a few rows that stay in L1 (one thread, ns a row), as JSON.
 *
 * Build: gcc -std=gnu11 -O2 -fopenmp -Iinclude -Isrc bench/adam_floor.c build/libsparrow_static.a -lm -o adam_floor
 *   (a build with MPI, the default where it is installed: add $(mpicc --showme:link))
 * Usage: adam_floor [rows 2000000] [touched 576000] [reps 7] */
#include "common.h"
#include "kernels.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COLS = 128, AHEAD = 8 };

typedef struct arrays {
    int64_t rows;
    uint16_t *block;         /* (3 rows COLS) */
    float *b, *mb, *vb, *gb; /* (rows) */
} arrays;

static uint16_t *w_of(const arrays *a, int layout, int64_t r) {
    return layout ? a->block + r * 3 * COLS : a->block + r * COLS;
}
static uint16_t *m_of(const arrays *a, int layout, int64_t r) {
    return layout ? a->block + r * 3 * COLS + COLS : a->block + (a->rows + r) * COLS;
}
static uint16_t *v_of(const arrays *a, int layout, int64_t r) {
    return layout ? a->block + r * 3 * COLS + 2 * COLS : a->block + (2 * a->rows + r) * COLS;
}

/* Reads and writes back every element of a row (vectorised), XOR a value the compiler
 * cannot see is 0: flipping a bit for real would leave zero moments subnormal (0x0001),
 * and a subnormal costs some CPUs (AMD Zen) a microcode assist in the Adam variants. */
static volatile uint16_t touch_flip = 0;
static void touch_row(uint16_t *restrict p) {
    const uint16_t f = touch_flip;
    for (int c = 0; c < COLS; c++) p[c] ^= f;
}

static double step(const arrays *a, const int32_t *list, int64_t n, int layout, int touch) {
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num(), nth = omp_get_num_threads();
        const int64_t k0 = n * t / nth, k1 = n * (t + 1) / nth;
        float g0[COLS], g[COLS];
        for (int c = 0; c < COLS; c++) g0[c] = 1e-3f * (float)(c % 17 - 8) + 5e-4f; /* no zero: millions of steps of a zero gradient would make m subnormal */
        for (int64_t k = k0; k < k1; k++) {
            if (k + AHEAD < k1) {
                const int64_t q = list[k + AHEAD];
                for (int c = 0; c < COLS; c += 32) {
                    __builtin_prefetch(w_of(a, layout, q) + c, 1, 2);
                    __builtin_prefetch(m_of(a, layout, q) + c, 1, 2);
                    __builtin_prefetch(v_of(a, layout, q) + c, 1, 2);
                }
                __builtin_prefetch(a->b + q, 1, 2), __builtin_prefetch(a->mb + q, 1, 2);
                __builtin_prefetch(a->vb + q, 1, 2), __builtin_prefetch(a->gb + q, 1, 2);
            }
            const int64_t r = list[k];
            uint16_t *w = w_of(a, layout, r), *m = m_of(a, layout, r), *v = v_of(a, layout, r);
            if (touch) {
                touch_row(w), touch_row(m), touch_row(v);
            } else {
                memcpy(g, g0, sizeof g); /* the kernel clears g */
                spr_adam_row_bf16w(w, g, m, v, COLS, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.001f,
                                   (uint32_t)r);
            }
            a->gb[r] = 1e-3f;
            spr_adam_row(a->b + r, a->gb + r, a->mb + r, a->vb + r, 1, 1e-3f, 0.9f, 0.999f, 1e-8f,
                         0.1f, 0.001f);
        }
    }
    return omp_get_wtime() - t0;
}

static int cmp_double(const void *x, const void *y) {
    const double p = *(const double *)x, q = *(const double *)y;
    return (p > q) - (p < q);
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 1 ? atoll(argv[1]) : 2000000;
    const int64_t touched = argc > 2 ? atoll(argv[2]) : 576000;
    const int reps = argc > 3 ? atoi(argv[3]) : 7;
    if (rows < 1 || rows > INT32_MAX || touched < 1 || touched > rows || reps < 1 || reps > 99) {
        fprintf(stderr, "adam_floor: need 1 <= touched <= rows < 2^31 and 1 <= reps <= 99\n");
        return 2;
    }
    arrays a = {rows, spr_alloc((size_t)rows * 3 * COLS * sizeof(uint16_t)),
                spr_alloc((size_t)rows * 4), spr_alloc((size_t)rows * 4),
                spr_alloc((size_t)rows * 4), spr_alloc((size_t)rows * 4)};
    int32_t *list = malloc((size_t)touched * sizeof(int32_t));
    char *pick = calloc((size_t)rows, 1);
    if (!a.block || !a.b || !a.mb || !a.vb || !a.gb || !list || !pick) {
        fprintf(stderr, "adam_floor: out of memory for %lld rows\n", (long long)rows);
        return 1;
    }
    /* every page touched before timing: weights 1.0 (0x3F80), moments 0 */
    for (int64_t i = 0; i < rows * COLS; i++) a.block[i] = 0x3F80;
    memset(a.block + rows * COLS, 0, (size_t)rows * 2 * COLS * sizeof(uint16_t));
    memset(a.b, 0, (size_t)rows * 4), memset(a.mb, 0, (size_t)rows * 4);
    memset(a.vb, 0, (size_t)rows * 4), memset(a.gb, 0, (size_t)rows * 4);
    spr_rng rng;
    spr_rng_seed(&rng, 7);
    for (int64_t k = 0; k < touched;) {
        const int64_t x = (int64_t)spr_rng_below(&rng, (uint64_t)rows);
        if (!pick[x]) pick[x] = 1, k++;
    }
    for (int64_t x = 0, k = 0; x < rows; x++)
        if (pick[x]) list[k++] = (int32_t)x;

    static const char *names[4] = {"three_arrays_adam", "three_arrays_touch", "one_block_adam",
                                   "one_block_touch"};
    double t[4][99];
    for (int rep = 0; rep < reps; rep++)
        for (int v = 0; v < 4; v++) t[v][rep] = step(&a, list, touched, v / 2, v % 2);
    printf("{\"rows\": %lld, \"touched\": %lld, \"reps\": %d, \"kernels\": \"%s\"", (long long)rows,
           (long long)touched, reps, spr_kernels->name);
    for (int v = 0; v < 4; v++) {
        qsort(t[v], (size_t)reps, sizeof(double), cmp_double);
        const double med = t[v][reps / 2];
        printf(", \"%s_ms\": %.2f, \"%s_gb_per_s\": %.2f", names[v], med * 1e3, names[v],
               (double)touched * 2 * 3 * COLS * sizeof(uint16_t) / med / 1e9);
    }
    /* the kernel alone, in L1: one thread, rows 0..31 (24 KB) over and over */
    const int64_t few = rows < 32 ? rows : 32, calls = 2000000;
    /* fresh rows, as the timed steps started from */
    for (int64_t r = 0; r < few; r++)
        for (int c = 0; c < COLS; c++)
            w_of(&a, 0, r)[c] = 0x3F80, m_of(&a, 0, r)[c] = 0, v_of(&a, 0, r)[c] = 0;
    float g0[COLS], g[COLS];
    for (int c = 0; c < COLS; c++) g0[c] = 1e-3f * (float)(c % 17 - 8) + 5e-4f; /* no zero: millions of steps of a zero gradient would make m subnormal */
    const double t0 = omp_get_wtime();
    for (int64_t k = 0; k < calls; k++) {
        const int64_t r = k % few;
        memcpy(g, g0, sizeof g);
        spr_adam_row_bf16w(w_of(&a, 0, r), g, m_of(&a, 0, r), v_of(&a, 0, r), COLS, 1e-3f, 0.9f,
                           0.999f, 1e-8f, 0.1f, 0.001f, (uint32_t)k);
    }
    printf(", \"in_l1_one_thread_ns_per_row\": %.1f}\n", (omp_get_wtime() - t0) / (double)calls * 1e9);
    return 0;
}

/*
 * order.c: the orders that the command-line tool and the bindings share, so that the same
 * options give the same model whichever of them trains it: an epoch's shuffle of the
 * training points, and the --eval-max subset of the test points. A splitmix64 stream
 * (spr_mix64; the library's xoshiro is for sampling), Lemire's unbiased bounded draw,
 * Fisher-Yates. The sequences are those `sparrow train` has always used.
 */
#include "common.h"
#include "sparrow.h"

#include <stdlib.h>

/* The seed of the --eval-max subset. Independent of the model's seed on purpose: runs that
 * differ only in their seed (or dense vs sampled) are then judged on the same test points,
 * and `sparrow eval --eval-max N` picks the same points as `sparrow train --eval-max N`. */
#define EVAL_SUBSET_SEED 0x5eed5eedull

/* The next word of a splitmix64 stream at *state. */
static uint64_t order_next(uint64_t *state) {
    uint64_t x = spr_mix64(*state);
    *state += 0x9E3779B97F4A7C15ull;
    return x;
}

/* Uniform in [0, n), without modulo bias (Lemire's multiply-and-reject). */
static uint64_t order_below(uint64_t *state, uint64_t n) {
    unsigned __int128 m = (unsigned __int128)order_next(state) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (unsigned __int128)order_next(state) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

void spr_epoch_order(int64_t *rows, int64_t n, uint64_t seed, int64_t epoch) {
    uint64_t state = seed ^ (0xD1B54A32D192ED03ull * ((uint64_t)epoch + 1));
    order_next(&state);
    for (int64_t i = 0; i < n; i++) rows[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)order_below(&state, (uint64_t)i + 1);
        int64_t t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
}

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t spr_eval_subset(int64_t *rows, int64_t n, int64_t m) {
    for (int64_t i = 0; i < n; i++) rows[i] = i;
    if (m <= 0 || m >= n) return n;
    uint64_t state = EVAL_SUBSET_SEED; /* a partial Fisher-Yates: the first m are the draw */
    for (int64_t i = 0; i < m; i++) {
        int64_t j = i + (int64_t)order_below(&state, (uint64_t)(n - i));
        int64_t t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
    qsort(rows, (size_t)m, sizeof *rows, cmp_int64); /* for locality */
    return m;
}

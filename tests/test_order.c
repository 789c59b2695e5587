/*
 * test_order.c: the epoch order and the --eval-max subset (src/order.c) that `sparrow
 * train` and Model.fit share: permutations that depend only on (seed, epoch), a subset of
 * distinct sorted points. Their equality with the CLI's runs is tests/python's
 * (test_fit_is_the_cli_train: the same model file from both).
 */
#include "check.h"
#include "sparrow.h"

#include <stdio.h>
#include <string.h>

#define N 1000

static int is_permutation(const int64_t *rows, int64_t n) {
    static char seen[N];
    memset(seen, 0, sizeof seen);
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= n || seen[rows[i]]) return 0;
        seen[rows[i]] = 1;
    }
    return 1;
}

static void test_epoch_order(void) {
    int64_t a[N], b[N];
    spr_epoch_order(a, N, 7, 1);
    spr_epoch_order(b, N, 7, 1);
    CHECK(is_permutation(a, N), "epoch order: a permutation of 0..n-1");
    CHECK(memcmp(a, b, sizeof a) == 0, "epoch order: the same for the same seed and epoch");
    int64_t fixed = 0;
    for (int64_t i = 0; i < N; i++) fixed += a[i] == i;
    CHECK(fixed < 20, "epoch order: shuffled (%lld of %d points in place)", (long long)fixed, N);
    spr_epoch_order(b, N, 7, 2);
    CHECK(is_permutation(b, N) && memcmp(a, b, sizeof a) != 0, "epoch order: another for epoch 2");
    spr_epoch_order(b, N, 8, 1);
    CHECK(memcmp(a, b, sizeof a) != 0, "epoch order: another for seed 8");
    /* a pinned prefix: the order `sparrow train` has used since session 1 (a change would
     * change every run's model and break the resume of saved models inside an epoch) */
    spr_epoch_order(a, 10, 1, 1);
    const int64_t pinned[10] = {0, 1, 7, 4, 3, 6, 2, 8, 5, 9};
    CHECK(memcmp(a, pinned, sizeof pinned) == 0,
          "epoch 1 of seed 1 over 10 points: want 0 1 7 4 3 6 2 8 5 9, got %lld %lld %lld %lld ...",
          (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3]);
    spr_epoch_order(b, 1, 3, 1);
    CHECK(b[0] == 0, "epoch order of one point");
    spr_epoch_order(b, 0, 3, 1); /* nothing to order: no access */
}

static void test_eval_subset(void) {
    int64_t rows[N];
    int64_t m = spr_eval_subset(rows, N, 100);
    CHECK(m == 100, "subset: 100 points, got %lld", (long long)m);
    int ok = 1;
    for (int64_t i = 0; i < m; i++) ok &= rows[i] >= 0 && rows[i] < N && (i == 0 || rows[i] > rows[i - 1]);
    CHECK(ok, "subset: distinct, in range, sorted");
    int64_t again[N];
    spr_eval_subset(again, N, 100);
    CHECK(memcmp(rows, again, 100 * sizeof *rows) == 0, "subset: the same points every time");
    CHECK(rows[99] > 800 && rows[0] < 200, "subset: spread over the set (%lld..%lld)", (long long)rows[0],
          (long long)rows[99]);
    CHECK(spr_eval_subset(rows, N, N) == N && rows[N - 1] == N - 1 && is_permutation(rows, N),
          "subset of every point: all of them in order");
    CHECK(spr_eval_subset(rows, N, 0) == N && rows[0] == 0, "subset of 0 (no limit): every point");
}

int main(void) {
    test_epoch_order();
    test_eval_subset();
    return CHECK_DONE("test_order");
}

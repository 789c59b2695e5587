/* settled_predict.c: what inference costs on a model whose rows owe Adam steps (a file
 * saved inside an epoch: --max-batches, --save-every, a signal), which spr_model_predict
 * reads as settled through a copy per row and block of points (src/catch_up.c,
 * spr_settled), against the same predictions after spr_model_settle. Prints, for 1 and
 * for N points, the best of 5 exact top-5 predictions on 2 threads, owing then settled,
 * and whether the two gave the same bits (they must).
 *
 * Build: gcc -std=gnu11 -O2 -Iinclude bench/settled_predict.c -Lbuild -lsparrow
 *        -Wl,-rpath,$PWD/build -o settled_predict
 * Usage: settled_predict MODEL DATA [N 200]
 *   e.g. the 670K shape: build/sparrow train --train /tmp/a670/train.txt --batch 256
 *        --hidden 128 --seed 1 --init-std 0.1 --sparsity 0.005 --max-batches 20 --save m.spr */
#include "sparrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { K = 5, REPEAT = 5 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The best of REPEAT predictions of points rows[0..n), top K into ids and scores. */
static double best_predict(spr_model *m, spr_dataset *d, const int64_t *rows, int64_t n, int32_t *ids,
                           float *scores) {
    double best = 1e30;
    for (int r = 0; r < REPEAT; r++) {
        const double t = now();
        if (spr_model_predict(m, d, rows, n, K, 0, 2, ids, scores) != SPR_STATUS_OK) return -1;
        const double s = now() - t;
        if (s < best) best = s;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: settled_predict MODEL DATA [N 200]\n");
        return 2;
    }
    const int64_t n_max = argc > 3 ? atoll(argv[3]) : 200;
    spr_model *m;
    spr_dataset *all; /* its first N points are predicted */
    if (spr_model_load(argv[1], &m) || spr_dataset_read(argv[2], NULL, &all)) {
        fprintf(stderr, "settled_predict: %s\n", spr_last_error());
        return 2;
    }
    const int64_t sizes[2] = {1, n_max};
    int32_t *ids[2][2];
    float *scores[2][2];
    double ms[2][2];
    for (int i = 0; i < 2; i++)
        for (int p = 0; p < 2; p++)
            ids[i][p] = malloc((size_t)(sizes[i] * K) * 4), scores[i][p] = malloc((size_t)(sizes[i] * K) * 4);
    int64_t *rows = malloc((size_t)n_max * sizeof *rows);
    for (int64_t r = 0; r < n_max; r++) rows[r] = r;
    for (int p = 0; p < 2; p++) { /* owing, then settled */
        if (p == 1 && spr_model_settle(m, 2) != SPR_STATUS_OK) return 2;
        for (int i = 0; i < 2; i++)
            if ((ms[i][p] = 1e3 * best_predict(m, all, rows, sizes[i], ids[i][p], scores[i][p])) < 0) {
                fprintf(stderr, "settled_predict: %s\n", spr_last_error());
                return 2;
            }
    }
    for (int i = 0; i < 2; i++) {
        const size_t b = (size_t)(sizes[i] * K) * 4;
        printf("{\"points\": %lld, \"owing_ms\": %.1f, \"settled_ms\": %.1f, \"same\": %s}\n",
               (long long)sizes[i], ms[i][0], ms[i][1],
               memcmp(ids[i][0], ids[i][1], b) == 0 && memcmp(scores[i][0], scores[i][1], b) == 0 ? "true" : "false");
    }
    return 0;
}

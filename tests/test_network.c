/*
 * test_network.c: the training step.
 *   - sampled mode with every neuron active equals dense mode bit for bit (threads 1)
 *   - finite-difference gradient check of the sampled path (sampled hidden and output)
 *   - lazy Adam: rows outside the batch's active sets are untouched, bit for bit
 *   - the active set has exactly the target size plus the labels, labels included
 *   - same seed, same result; a learnable toy problem is learnt, also with 2 threads,
 *     and sparse inference finds the same top-1 most of the time
 *   - the optimizer's rows and bytes in spr_batch_stats, against hand-written figures
 *   - the output layer's gradient rows stay untouched in deferred training
 *   - the initial weights are N(0, init_std^2) (moments, Kolmogorov-Smirnov), fixed by the seed
 */
#include "check.h"
#include "common.h"
#include "data.h"
#include "model.h"
#include "sparrow.h"

#include <errno.h>
#include <omp.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define OK(call)                                                                                 \
    do {                                                                                         \
        spr_status st_ = (call);                                                                 \
        if (st_) {                                                                               \
            printf("FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,                       \
                   spr_status_to_string(st_), spr_last_error());                                 \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* A toy data set in CSR arrays: point i belongs to class c = i % n_classes (plus, for
 * some points, a second class); its features are drawn from the class's own block of
 * features plus a little noise, so the problem is learnable. */
typedef struct toy {
    int64_t n, d, l;
    int64_t *fp, *lp;
    int32_t *fi, *li;
    float *fv;
    spr_dataset *data;
} toy;

static void toy_make(toy *t, int64_t n, int64_t n_classes, int block, uint64_t seed) {
    spr_rng rng;
    spr_rng_seed(&rng, seed);
    t->n = n;
    t->l = n_classes;
    t->d = n_classes * block + 20;
    t->fp = calloc((size_t)n + 1, sizeof(int64_t));
    t->lp = calloc((size_t)n + 1, sizeof(int64_t));
    t->fi = calloc((size_t)n * 8, sizeof(int32_t));
    t->fv = calloc((size_t)n * 8, sizeof(float));
    t->li = calloc((size_t)n * 2, sizeof(int32_t));
    int64_t nf = 0, nl = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = (int32_t)(i % n_classes);
        /* features: 5 of the class block (distinct, sorted since the block is ordered),
         * then up to 2 noise features from the tail */
        int32_t feats[8];
        int nfe = 0;
        for (int b = 0; b < block && nfe < 5; b++)
            if (spr_rng_below(&rng, (uint64_t)(block - b)) < (uint64_t)(5 - nfe)) feats[nfe++] = c * block + b;
        int32_t noise = (int32_t)(n_classes * block + spr_rng_below(&rng, 20));
        feats[nfe++] = noise;
        for (int q = 0; q < nfe; q++) {
            t->fi[nf] = feats[q];
            t->fv[nf] = 0.4f + 0.1f * (float)spr_rng_uniform(&rng);
            nf++;
        }
        t->fp[i + 1] = nf;
        if (i % 7 == 3) { /* no labels: must be harmless */
        } else if (i % 5 == 0 && c + 1 < n_classes) {
            t->li[nl++] = c;
            t->li[nl++] = c + 1;
        } else {
            t->li[nl++] = c;
        }
        t->lp[i + 1] = nl;
    }
    spr_dataset_view v = {n, t->d, t->l, t->fp, t->fi, t->fv, t->lp, t->li};
    OK(spr_dataset_wrap(&v, &t->data));
}

static void toy_free(toy *t) {
    spr_dataset_free(t->data);
    free(t->fp), free(t->lp), free(t->fi), free(t->fv), free(t->li);
}

static spr_model_config small_config(int64_t d, int64_t l, float out_sparsity) {
    spr_model_config c = spr_model_config_default(d, l);
    c.layers[0].size = 16;
    c.layers[1].sparsity = out_sparsity;
    c.layers[1].hash_l = 8;
    c.init_std = 0.1f;
    c.seed = 42;
    return c;
}

static int params_equal(spr_model *a, spr_model *b, int layers) {
    for (int l = 0; l < layers; l++)
        for (int p = SPR_PARAM_WEIGHT; p <= SPR_PARAM_BIAS_ADAM_V; p++) {
            if (p == SPR_PARAM_WEIGHT_GRAD || p == SPR_PARAM_BIAS_GRAD) continue;
            float *x, *y;
            int64_t r, c, s;
            OK(spr_model_param(a, l, (spr_param)p, &x, &r, &c, &s));
            OK(spr_model_param(b, l, (spr_param)p, &y, NULL, NULL, NULL));
            for (int64_t i = 0; i < r; i++)
                if (memcmp(x + i * s, y + i * s, (size_t)c * sizeof(float)) != 0) {
                    printf("  layer %d param %d row %lld differs\n", l, p, (long long)i);
                    return 0;
                }
        }
    return 1;
}

/* Six batches of 8 on two models of config c (toy t of 40 labels, output sparsity 0.999:
 * every neuron active), sampled on ms and --dense on md, checking each step's loss
 * equal and every output neuron active; what: the variant, for the messages. */
static void twin_steps(spr_model **ms, spr_model **md, const spr_model_config *c, const toy *t,
                       const char *what) {
    OK(spr_model_create(c, ms));
    OK(spr_model_create(c, md));
    CHECK((*ms)->layers[1].sampled && (*ms)->layers[1].target_active == 40,
          "%s: layer sampled, target 40", what);
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 8;
    o.rehash_first = 2; /* rehashes must not change anything either */
    spr_train_options od = o;
    od.dense = 1;
    for (int step = 0; step < 6; step++) {
        int64_t rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (step * 8 + i) % t->n;
        spr_batch_stats ss, sd;
        OK(spr_model_train_batch(*ms, t->data, rows, 8, &o, &ss));
        OK(spr_model_train_batch(*md, t->data, rows, 8, &od, &sd));
        CHECK(ss.loss == sd.loss, "%s step %d: sampled loss %.9g == dense loss %.9g", what, step,
              ss.loss, sd.loss);
        CHECK(ss.active[1] == 40.0, "%s step %d: all 40 output neurons active, got %g", what, step,
              ss.active[1]);
    }
}

/* Sampled with sparsity so close to 1 that every neuron is active must equal --dense
 * bit for bit: same kernels, same order (active sets are sorted). */
static void test_sampled_equals_dense(void) {
    toy t;
    toy_make(&t, 64, 40, 6, 7);
    spr_model_config c = small_config(t.d, t.l, 0.999f); /* ceil(0.999 x 40) = 40: all */
    spr_model *ms, *md;
    twin_steps(&ms, &md, &c, &t, "float");
    CHECK(params_equal(ms, md, 2), "sampled(all active) and dense weights, moments bit-identical");
    CHECK(ms->rehashes > 0, "the sampled model rehashed (%lld times)", (long long)ms->rehashes);
    spr_model_free(ms);
    spr_model_free(md);
    toy_free(&t);
}

static double batch_loss(spr_model *m, const spr_dataset *data, const int64_t *rows, int64_t n,
                         const spr_train_options *o) {
    spr_batch_stats s;
    OK(spr_model_compute_gradients(m, data, rows, n, o, &s));
    spr_model_zero_gradients(m);
    return s.loss;
}

/* Central differences against the analytic gradient of the sampled path, on a network
 * whose hidden layer 2 and output are both sampled. A perturbation may move an input
 * across a hash boundary and change an active set: the loss then jumps, and the two
 * one-sided differences disagree; such coordinates are skipped (and counted). */
static void test_gradient_check(void) {
    toy t;
    toy_make(&t, 16, 30, 5, 11);
    spr_model_config c = spr_model_config_default(t.d, t.l);
    c.n_layers = 3;
    c.layers[0].size = 12;
    c.layers[1].size = 24;
    c.layers[1].sparsity = 0.5f;
    c.layers[1].hash = SPR_HASH_SIMHASH;
    c.layers[1].hash_l = 6;
    c.layers[2].size = t.l;
    c.layers[2].sparsity = 0.3f;
    c.layers[2].hash_l = 6;
    c.init_std = 0.3f;
    c.seed = 5;
    spr_model *m;
    OK(spr_model_create(&c, &m));
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 4;
    int64_t rows[4] = {0, 1, 2, 5};
    spr_batch_stats st;
    OK(spr_model_compute_gradients(m, t.data, rows, 4, &o, &st));
    CHECK(st.active[1] == 12.0, "hidden sampled layer: 12 of 24 active, got %g", st.active[1]);

    /* keep a copy of the analytic gradients, then probe coordinates */
    int checked = 0, skipped = 0, bad = 0;
    const float eps = 1e-3f;
    spr_rng rng;
    spr_rng_seed(&rng, 99);
    for (int l = 0; l < 3; l++)
        for (int which = 0; which < 2; which++) {
            float *p, *g;
            int64_t r, cc, s;
            OK(spr_model_param(m, l, which ? SPR_PARAM_BIAS : SPR_PARAM_WEIGHT, &p, &r, &cc, &s));
            OK(spr_model_param(m, l, which ? SPR_PARAM_BIAS_GRAD : SPR_PARAM_WEIGHT_GRAD, &g, NULL,
                               NULL, NULL));
            spr_model_zero_gradients(m); /* probing below clears the gradients: redo them */
            OK(spr_model_compute_gradients(m, t.data, rows, 4, &o, &st));
            float *gcopy = malloc((size_t)(r * s) * sizeof(float));
            memcpy(gcopy, g, (size_t)(r * s) * sizeof(float));
            /* probe coordinates with a gradient large enough to be measured */
            int64_t *cand = malloc((size_t)(r * cc) * sizeof(int64_t)), ncand = 0;
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < cc; j++)
                    if (fabsf(gcopy[i * s + j]) >= 1e-3f) cand[ncand++] = i * s + j;
            for (int probe = 0; probe < 12 && ncand > 0; probe++) {
                int64_t pick = cand[spr_rng_below(&rng, (uint64_t)ncand)];
                int64_t i = pick / s, j = pick % s;
                float ga = gcopy[pick];
                spr_model_zero_gradients(m);
                float keep = p[i * s + j];
                double l0 = batch_loss(m, t.data, rows, 4, &o);
                p[i * s + j] = keep + eps;
                double lp = batch_loss(m, t.data, rows, 4, &o);
                p[i * s + j] = keep - eps;
                double lm = batch_loss(m, t.data, rows, 4, &o);
                p[i * s + j] = keep;
                double fwd = (lp - l0) / eps, bwd = (l0 - lm) / eps, cen = (lp - lm) / (2 * eps);
                if (fabs(fwd - bwd) > 0.1 * fabs(cen) + 5e-3) {
                    skipped++;
                    continue;
                }
                checked++;
                if (fabs(cen - ga) > 2e-2 * fabs(ga) + 3e-4) {
                    bad++;
                    printf("  layer %d %s[%lld,%lld]: analytic %.6g, numeric %.6g\n", l,
                           which ? "b" : "W", (long long)i, (long long)j, ga, cen);
                }
            }
            free(gcopy);
            free(cand);
        }
    CHECK(bad == 0, "finite differences agree with the sampled backward pass (%d bad of %d)", bad,
          checked);
    CHECK(checked >= 40 && skipped * 4 <= checked,
          "enough coordinates checked (%d checked, %d skipped at a hash boundary)", checked, skipped);
    spr_model_free(m);
    toy_free(&t);
}

/* One sampled step: output rows that were in no active set keep weights and moments
 * bit for bit; the active set is exactly target + labels, labels included. */
static void test_lazy_adam_and_active_sets(void) {
    toy t;
    toy_make(&t, 64, 200, 3, 3);
    spr_model_config c = small_config(t.d, t.l, 0.05f); /* target 10 of 200 */
    spr_model *m;
    OK(spr_model_create(&c, &m));
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 4;
    o.rehash_first = 1000;
    spr_layer *Lo = &m->layers[1];
    float *before = malloc((size_t)(Lo->rows * Lo->stride) * sizeof(float));
    memcpy(before, Lo->w, (size_t)(Lo->rows * Lo->stride) * sizeof(float));
    int64_t rows[4] = {10, 11, 12, 13}; /* point 10: 2 labels, 11..13: 1 label */
    spr_batch_stats st;
    OK(spr_model_compute_gradients(m, t.data, rows, 4, &o, &st));
    double labels = 0;
    for (int i = 0; i < 4; i++) labels += (double)(t.lp[rows[i] + 1] - t.lp[rows[i]]);
    CHECK(st.active[1] == 10.0 + labels / 4, "active = target 10 + labels: want %g, got %g",
          10.0 + labels / 4, st.active[1]);
    int64_t n_touched = atomic_load(&Lo->n_touched);
    CHECK(n_touched > 0 && n_touched <= 4 * 12, "touched rows %lld in (0, 48]", (long long)n_touched);
    for (int i = 0; i < 4; i++)
        for (int64_t k = t.lp[rows[i]]; k < t.lp[rows[i] + 1]; k++)
            CHECK(atomic_load(&Lo->touched[t.li[k]]), "label %d of row %lld is touched", t.li[k],
                  (long long)rows[i]);
    OK(spr_model_apply_gradients(m, &o));
    int64_t changed = 0, wrong = 0;
    for (int64_t r = 0; r < Lo->rows; r++) {
        int diff = memcmp(before + r * Lo->stride, Lo->w + r * Lo->stride,
                          (size_t)Lo->cols * sizeof(float)) != 0;
        int moments = 0;
        for (int64_t q = 0; q < Lo->cols; q++) moments |= Lo->mw[r * Lo->stride + q] != 0.0f;
        changed += diff;
        if (!diff && moments) wrong++;
    }
    CHECK(changed == n_touched, "rows changed by Adam (%lld) == rows touched (%lld)",
          (long long)changed, (long long)n_touched);
    CHECK(wrong == 0, "untouched rows have no moments (%lld wrong)", (long long)wrong);
    CHECK(atomic_load(&Lo->n_touched) == 0, "touched list cleared after the step");
    free(before);
    spr_model_free(m);
    toy_free(&t);
}

static double train_toy(spr_model *m, toy *t, int threads, int epochs, int sparse_eval,
                        double *p1_sparse) {
    spr_train_options o = spr_train_options_default();
    o.threads = threads;
    o.batch_size = 16;
    o.lr = 5e-3f;
    o.rehash_first = 5;
    int64_t rows[16];
    for (int e = 0; e < epochs; e++)
        for (int64_t b = 0; b < t->n; b += 16) {
            int64_t n = 0;
            for (int64_t i = b; i < t->n && n < 16; i++) rows[n++] = (i * 7919) % t->n;
            OK(spr_model_train_batch(m, t->data, rows, n, &o, NULL));
        }
    spr_eval_result r;
    OK(spr_model_evaluate(m, t->data, NULL, 0, 0, threads, &r));
    if (sparse_eval) {
        spr_eval_result rs;
        OK(spr_model_rehash(m, 0, threads));
        OK(spr_model_evaluate(m, t->data, NULL, 0, 1, threads, &rs));
        *p1_sparse = rs.p_at[1];
    }
    return r.p_at[1];
}

static void test_learns_and_reproduces(void) {
    toy t;
    toy_make(&t, 2000, 100, 8, 21);
    /* P@1 counts label-less points as 0: 1/7 of the points have none. */
    const double ceiling = 1.0 - 1.0 / 7.0;
    spr_model_config c = small_config(t.d, t.l, 0.1f);
    c.layers[0].size = 32;
    c.layers[1].hash_l = 50;
    spr_model *a, *b, *p;
    OK(spr_model_create(&c, &a));
    OK(spr_model_create(&c, &b));
    OK(spr_model_create(&c, &p));
    /* After the first batch (which prepares the scratch), steps allocate nothing. */
    spr_train_options o = spr_train_options_default();
    o.batch_size = 16;
    o.threads = 2;
    int64_t rows[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    OK(spr_model_train_batch(p, t.data, rows, 16, &o, NULL));
    long long before = spr_alloc_calls();
    for (int i = 0; i < 20; i++) OK(spr_model_train_batch(p, t.data, rows, 16, &o, NULL));
    CHECK(spr_alloc_calls() == before, "no allocation in 20 training steps (%lld calls)",
          spr_alloc_calls() - before);
    double p1s = 0;
    double p1a = train_toy(a, &t, 1, 4, 1, &p1s);
    double p1b = train_toy(b, &t, 1, 4, 0, NULL);
    CHECK(p1a > 0.8 * ceiling, "sampled training learns the toy problem: P@1 %.3f > %.3f", p1a,
          0.8 * ceiling);
    CHECK(p1s > 0.25, "sparse inference P@1 %.3f far above chance (0.01; exact %.3f)", p1s, p1a);
    CHECK(params_equal(a, b, 2), "threads 1, same seed: identical models");
    CHECK(p1a == p1b, "threads 1, same seed: identical P@1 (%.4f, %.4f)", p1a, p1b);
    double p1p = train_toy(p, &t, 2, 4, 0, NULL);
    CHECK(p1p > 0.8 * ceiling, "2 threads (HOGWILD) learn too: P@1 %.3f", p1p);
    spr_model_free(a);
    spr_model_free(b);
    spr_model_free(p);
    toy_free(&t);
}

/* With one code per key (2 buckets a table) the L buckets of a query cover every neuron
 * that is not opposite to it in all 50 tables: sparse inference must then return the
 * exact top-k: the same ids, and scores within rounding (exact inference scores blocks of
 * points by a matrix product, sparse each candidate by a dot: other summation orders). */
static void test_sparse_inference_covers_exact(void) {
    toy t;
    toy_make(&t, 600, 50, 8, 33);
    spr_model_config c = small_config(t.d, t.l, 0.2f);
    c.layers[1].hash_k = 1;
    c.layers[1].hash_l = 50;
    spr_model *m;
    OK(spr_model_create(&c, &m));
    double unused;
    train_toy(m, &t, 1, 1, 0, &unused);
    int32_t ie[600 * 3], is[600 * 3];
    float se[600 * 3], ss[600 * 3];
    OK(spr_model_predict(m, t.data, NULL, 0, 3, 0, 1, ie, se));
    OK(spr_model_predict(m, t.data, NULL, 0, 3, 1, 1, is, ss));
    double worst = 0.0;
    for (int i = 0; i < 600 * 3; i++) worst = fmax(worst, fabs(se[i] - ss[i]) / fmax(fabs(se[i]), 1e-3));
    CHECK(memcmp(ie, is, sizeof ie) == 0 && worst < 1e-5,
          "sparse inference over covering buckets == exact top-3 (scores apart by %.2g)", worst);
    spr_model_free(m);
    toy_free(&t);
}

/* Exact inference (every output scored: blocks of points against blocks of rows, one
 * matrix product each) against a forward pass in double precision written out here:
 * the same top 5 (but where the 5th and 6th are closer than rounding can tell apart) and
 * scores within 1e-4; and a point's predictions are the same bits whatever else is
 * predicted with it (alone, among 17, among all), on 1 or 2 threads, and through the
 * output layer alone (spr_model_output_predict). Float and BF16 weights, two and three
 * layers. */
static void test_exact_inference_brute_force(void) {
    toy t;
    toy_make(&t, 300, 50, 8, 41);
    enum { K = 5 };
    int32_t *ids = malloc(300 * K * 4), *ids2 = malloc(300 * K * 4);
    float *sc = malloc(300 * K * 4), *sc2 = malloc(300 * K * 4);
    for (int variant = 0; variant < 3; variant++) {
        static const char *const names[] = {"float", "BF16 weights", "three layers"};
        spr_model_config c = small_config(t.d, t.l, 0.2f);
        if (variant == 1) c.bf16_state = c.bf16_weights = 1;
        if (variant == 2) {
            c.n_layers = 3;
            c.layers[2] = c.layers[1];
            c.layers[1] = c.layers[0];
            c.layers[1].size = 12;
        }
        spr_model *m;
        OK(spr_model_create(&c, &m));
        double unused;
        train_toy(m, &t, 1, 1, 0, &unused);
        OK(spr_model_settle(m, 1)); /* the weights as stored are the ones scored */
        OK(spr_model_predict(m, t.data, NULL, 0, K, 0, 2, ids, sc));
        const spr_dataset_view *d = &t.data->view;
        double worst = 0.0;
        int wrong = 0, ties = 0;
        for (int64_t p = 0; p < t.n; p++) {
            double h[2][64], z[64];
            const spr_layer *L0 = &m->layers[0];
            for (int64_t u = 0; u < L0->size; u++) h[0][u] = L0->b[u];
            for (int64_t e = d->feature_indptr[p]; e < d->feature_indptr[p + 1]; e++)
                for (int64_t u = 0; u < L0->size; u++)
                    h[0][u] += (double)d->feature_values[e] * L0->w[(int64_t)d->feature_indices[e] * L0->stride + u];
            int cur = 0;
            for (int l = 0; l < m->n_layers; l++) {
                const spr_layer *L = &m->layers[l];
                if (l > 0)
                    for (int64_t j = 0; j < L->size; j++) {
                        double a = L->b[j];
                        for (int64_t q = 0; q < L->cols; q++)
                            a += (L->w16 ? (double)spr_f32_from_bf16(L->w16[j * L->stride + q])
                                         : (double)L->w[j * L->stride + q]) * h[cur][q];
                        if (l < m->n_layers - 1) h[1 - cur][j] = a > 0 ? a : 0;
                        else z[j] = a;
                    }
                else
                    for (int64_t u = 0; u < L0->size; u++) h[0][u] = h[0][u] > 0 ? h[0][u] : 0;
                if (l > 0 && l < m->n_layers - 1) cur = 1 - cur;
            }
            /* the reference's top K + 1, ties to the lower id */
            int32_t best[K + 1];
            for (int r = 0; r <= K; r++) {
                int32_t b = -1;
                for (int32_t j = 0; j < t.l; j++) {
                    int taken = 0;
                    for (int q = 0; q < r; q++) taken |= best[q] == j;
                    if (!taken && (b < 0 || z[j] > z[b])) b = j;
                }
                best[r] = b;
            }
            if (fabs(z[best[K - 1]] - z[best[K]]) < 1e-4 || fabs(z[best[0]] - z[best[1]]) < 1e-4) {
                ties++;
                continue;
            }
            for (int r = 0; r < K; r++) {
                wrong += ids[p * K + r] != best[r];
                worst = fmax(worst, fabs(sc[p * K + r] - z[best[r]]));
            }
        }
        CHECK(wrong == 0 && worst < 1e-4 && ties < t.n / 10,
              "%s: exact top-%d against double precision: %d ids wrong, scores apart by %.2g (%d near-ties skipped)",
              names[variant], K, wrong, worst, ties);
        /* the same bits alone, among 17, on 1 thread */
        const int64_t some[17] = {3, 0, 299, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 150};
        int same = 1;
        OK(spr_model_predict(m, t.data, some, 1, K, 0, 1, ids2, sc2));
        same &= !memcmp(ids2, ids + 3 * K, K * 4) && !memcmp(sc2, sc + 3 * K, K * 4);
        OK(spr_model_predict(m, t.data, some, 17, K, 0, 2, ids2, sc2));
        for (int i = 0; i < 17; i++)
            same &= !memcmp(ids2 + i * K, ids + some[i] * K, K * 4) && !memcmp(sc2 + i * K, sc + some[i] * K, K * 4);
        OK(spr_model_predict(m, t.data, NULL, 0, K, 0, 1, ids2, sc2));
        same &= !memcmp(ids2, ids, 300 * K * 4) && !memcmp(sc2, sc, 300 * K * 4);
        CHECK(same, "%s: a point's exact predictions depend on nothing else predicted with it", names[variant]);
        /* the output layer alone (spr_model_output_predict, SampledSoftmaxLinear's) on the
         * same hidden vectors: the same blocks, the same bits */
        const spr_layer *Lo = &m->layers[m->n_layers - 1];
        float *hid = malloc((size_t)(t.n * Lo->fan_in) * sizeof(float));
        spr_settled off = {m, 0, 0, 0, NULL};
        for (int64_t p = 0; p < t.n; p++) {
            float ha[64], hb[64], *h;
            spr_model_hidden_dense(m, &off, NULL, d, p, ha, hb, &h);
            memcpy(hid + p * Lo->fan_in, h, (size_t)Lo->fan_in * sizeof(float));
        }
        OK(spr_model_output_predict(m, hid, t.n, K, 0, 2, ids2, sc2));
        CHECK(!memcmp(ids2, ids, 300 * K * 4) && !memcmp(sc2, sc, 300 * K * 4),
              "%s: output_predict on the hidden vectors predicts as spr_model_predict", names[variant]);
        /* the sampler's recall of the exact top 5 (spr_model_sampling_recall, which ranks
         * in the same blocks) on 17 points, against its definition written out: the mean
         * fraction of each point's exact top 5 in its training-time active set */
        spr_scratch samp;
        memset(&samp, 0, sizeof samp);
        CHECK(spr_sampler_scratch(Lo, &samp), "%s: sampler scratch", names[variant]);
        double want = 0.0, got = -1.0;
        for (int i = 0; i < 17; i++) {
            const int64_t p = some[i];
            spr_rng rng;
            spr_rng_seed(&rng, spr_mix64(m->cfg.seed ^ 0x2ec411ull) ^ spr_mix64((uint64_t)p));
            const int64_t na = spr_layer_select(Lo, hid + p * Lo->fan_in, NULL, 0, 0, &samp, &rng,
                                                samp.ids[0], NULL, 0);
            int hits = 0;
            for (int q = 0; q < K; q++)
                for (int64_t a = 0; a < na; a++) hits += samp.ids[0][a] == ids[p * K + q];
            want += hits / (double)K;
        }
        spr_sampler_scratch_free(&samp);
        OK(spr_model_sampling_recall(m, t.data, some, 17, K, 1, &got));
        CHECK(fabs(got - want / 17) < 1e-12, "%s: recall@5 on 17 points %.6f, by its definition %.6f",
              names[variant], got, want / 17);
        free(hid);
        spr_model_free(m);
    }
    free(ids), free(ids2), free(sc), free(sc2);
    toy_free(&t);
}

/* The three selection strategies: topk gives exactly target + labels; union every
 * bucket neuron (with K = 1 and 50 tables: nearly the whole layer); threshold at least
 * the target after the top-up, at most target + labels. */
static void test_selection_strategies(void) {
    toy t;
    toy_make(&t, 64, 100, 4, 9);
    const spr_select how[4] = {SPR_SELECT_TOPK, SPR_SELECT_UNION, SPR_SELECT_THRESHOLD,
                               SPR_SELECT_RANK};
    double active[4];
    int64_t rows[8] = {0, 1, 2, 4, 5, 6, 7, 8}; /* no label-less point (3) */
    double labels = 0;
    for (int i = 0; i < 8; i++) labels += (double)(t.lp[rows[i] + 1] - t.lp[rows[i]]);
    for (int k = 0; k < 4; k++) {
        spr_model_config c = small_config(t.d, t.l, 0.1f); /* target 10 */
        c.layers[1].select = how[k];
        c.layers[1].hash_k = how[k] == SPR_SELECT_UNION ? 1 : 0;
        c.layers[1].hash_l = 50;
        c.layers[1].select_threshold = 3;
        spr_model *m;
        OK(spr_model_create(&c, &m));
        spr_train_options o = spr_train_options_default();
        o.threads = 1;
        o.batch_size = 8;
        spr_batch_stats st;
        OK(spr_model_compute_gradients(m, t.data, rows, 8, &o, &st));
        active[k] = st.active[1];
        spr_model_free(m);
    }
    CHECK(active[0] == 10.0 + labels / 8, "topk: active %g == 10 + labels", active[0]);
    CHECK(active[3] == 10.0 + labels / 8, "rank: active %g == 10 + labels", active[3]);
    CHECK(active[1] > 90.0, "union with K = 1: nearly every neuron active, got %g", active[1]);
    CHECK(active[2] >= 10.0 && active[2] <= 10.0 + labels / 8,
          "threshold: active %g in [10, 10 + labels]", active[2]);
    spr_select sel;
    CHECK(spr_select_parse("threshold", &sel) == SPR_STATUS_OK && sel == SPR_SELECT_THRESHOLD,
          "parse 'threshold'");
    CHECK(spr_select_parse("bogus", &sel) == SPR_STATUS_BAD_INPUT, "parse 'bogus' fails");
    spr_model_config c = small_config(t.d, t.l, 0.1f);
    c.layers[1].select = SPR_SELECT_THRESHOLD;
    c.layers[1].select_threshold = 51;
    c.layers[1].hash_l = 50;
    CHECK(spr_model_config_check(&c) == SPR_STATUS_BAD_INPUT, "threshold above L rejected");
    toy_free(&t);
}

/* Rank selection takes the bucket candidates sharing the most hash codes with the
 * input: with no random share, every chosen neuron scores at least as high as every
 * candidate left out (scores recomputed by brute force from the keys the tables hold),
 * and exactly the target is chosen when the union is larger. */
static void test_rank_selection(uint64_t seed) {
    const spr_hash_family fams[3] = {SPR_HASH_SIMHASH, SPR_HASH_DWTA, SPR_HASH_DOPH};
    for (int fi = 0; fi < 3; fi++) {
        spr_model_config c = spr_model_config_default(50, 2000);
        c.layers[0].size = 32;
        c.layers[1].sparsity = 0.01f; /* target 20 */
        c.layers[1].hash = fams[fi];
        c.layers[1].hash_l = 16;
        c.layers[1].hash_k = fams[fi] == SPR_HASH_SIMHASH ? 5 : 2;
        c.layers[1].random_fraction = 0.0f;
        c.layers[1].select = SPR_SELECT_RANK;
        c.init_std = 0.1f;
        c.seed = seed;
        spr_model *m;
        OK(spr_model_create(&c, &m));
        spr_layer *L = &m->layers[1];
        spr_scratch s;
        CHECK(spr_sampler_scratch(L, &s), "sampler scratch allocated");
        int64_t cand_cap = (int64_t)L->cfg.hash_l * L->cfg.bucket_capacity;
        int32_t *ids = calloc((size_t)cand_cap, 4);
        char *in_set = calloc((size_t)L->size, 1), *in_union = calloc((size_t)L->size, 1);
        uint32_t *qk = calloc((size_t)L->cfg.hash_l, 4);
        int32_t *work = spr_alloc((size_t)spr_hasher_work_len(L->hasher) * 4);
        spr_rng r;
        spr_rng_seed(&r, seed ^ 0x5e1);
        spr_agree a = spr_hasher_agree(L->hasher);
        int bad_order = 0, bad_size = 0, bigger = 0;
        float h[32];
        for (int v = 0; v < 50; v++) {
            for (int i = 0; i < 32; i++) h[i] = spr_rng_below(&r, 3) ? (float)spr_rng_normal(&r) : 0.0f;
            if (fams[fi] == SPR_HASH_DWTA)
                for (int i = 0; i < 32; i++) h[i] = h[i] < 0 ? 0 : h[i]; /* a ReLU output */
            int64_t n = spr_layer_select(L, h, NULL, 0, 0, &s, &r, ids, NULL, 0);
            memset(in_set, 0, (size_t)L->size), memset(in_union, 0, (size_t)L->size);
            for (int64_t k = 0; k < n; k++) in_set[ids[k]] = 1;
            spr_hasher_keys(L->hasher, h, qk, work);
            int64_t nu = 0;
            for (int t = 0; t < L->cfg.hash_l; t++) {
                int64_t bn;
                const int32_t *b = spr_lsh_bucket(L->tables, t, qk[t], &bn);
                for (int64_t k = 0; k < bn; k++) nu += !in_union[b[k]], in_union[b[k]] = 1;
            }
            int min_in = 1 << 30, max_out = -1;
            for (int64_t j = 0; j < L->size; j++) {
                if (!in_union[j]) continue;
                int sc = 0;
                for (int t = 0; t < L->cfg.hash_l; t++)
                    sc += spr_agree_count(a, qk[t], L->keys[j * L->cfg.hash_l + t]);
                if (in_set[j] && sc < min_in) min_in = sc;
                if (!in_set[j] && sc > max_out) max_out = sc;
            }
            bad_order += max_out > min_in;
            bad_size += n != L->target_active;
            bigger += nu > L->target_active;
        }
        CHECK(bad_order == 0, "rank %s: chosen neurons outscore the ones left out, %d of 50 inputs not",
              spr_hash_family_to_string(fams[fi]), bad_order);
        CHECK(bad_size == 0, "rank %s: exactly %lld active expected, %d of 50 inputs differ",
              spr_hash_family_to_string(fams[fi]), (long long)L->target_active, bad_size);
        CHECK(bigger > 10, "rank %s: unions larger than the target expected (a real choice), %d of 50",
              spr_hash_family_to_string(fams[fi]), bigger);
        spr_sampler_scratch_free(&s);
        free(ids), free(in_set), free(in_union), free(qk), spr_free(work);
        spr_model_free(m);
    }
}

/* Clipping: after one step from zero moments m = (1 - beta1) g, so the norm of all the
 * first moments is 0.1 x the clipped gradient norm. */
static void test_gradient_clipping(void) {
    toy t;
    toy_make(&t, 32, 40, 6, 5);
    spr_model_config c = small_config(t.d, t.l, 0.5f);
    spr_model *m;
    OK(spr_model_create(&c, &m));
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 8;
    o.clip_norm = 1e-3f; /* far below the gradient norm of an untrained model */
    int64_t rows[8] = {0, 1, 2, 4, 5, 6, 7, 8};
    OK(spr_model_train_batch(m, t.data, rows, 8, &o, NULL));
    double sq = 0.0;
    for (int l = 0; l < 2; l++)
        for (int p = SPR_PARAM_WEIGHT_ADAM_M; p <= SPR_PARAM_BIAS_ADAM_M; p += 2) {
            float *x;
            int64_t r, cc, s;
            OK(spr_model_param(m, l, (spr_param)p, &x, &r, &cc, &s));
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < cc; j++) sq += (double)x[i * s + j] * x[i * s + j];
        }
    CHECK(fabs(sqrt(sq) - 1e-4) < 1e-6, "first moments' norm %.9g == 0.1 x clip 1e-3", sqrt(sq));
    o.clip_norm = -1.0f;
    CHECK(spr_model_train_batch(m, t.data, rows, 8, &o, NULL) == SPR_STATUS_BAD_INPUT,
          "negative clip_norm rejected");
    spr_model_free(m);
    toy_free(&t);
}

/* The memory estimate covers what create allocates, without overshooting much. */
static void test_memory_estimate(void) {
    spr_model_config c = spr_model_config_default(5000, 20000);
    c.n_layers = 3;
    c.layers[1].size = 64;
    c.layers[2] = c.layers[1];
    c.layers[2].size = 20000;
    c.layers[2].sparsity = 0.01f;
    int64_t est = 0;
    OK(spr_model_config_memory(&c, &est));
    spr_model *m;
    const long long bytes = spr_alloc_bytes();
    OK(spr_model_create(&c, &m));
    const long long spent = spr_alloc_bytes() - bytes;
    spr_model_info info = spr_model_get_info(m);
    int64_t have = info.parameter_bytes + info.table_bytes;
    CHECK(est >= have && est < have * 3 / 2,
          "estimate %lld bytes covers parameters + tables %lld, within 1.5x", (long long)est,
          (long long)have);
    CHECK(est >= spent * 99 / 100 && est < spent * 3 / 2,
          "estimate %lld bytes covers what create allocated, %lld, within 1%% .. 1.5x", (long long)est, spent);
    spr_model_free(m);
}

/* Buckets per table stop at 4 a neuron (2^10 at least): K = 20 SimHash codes over 30
 * neurons and 1024 tables take 2^10 buckets each (8 MB in all), not 2^20 (8 GB: a mutated
 * model file asked for that, the checkpoint fuzzer's find). The candidate scratch stops at
 * the layer's size whatever L x capacity says. Such a model still trains and predicts. */
static void test_wide_tables(void) {
    toy t;
    toy_make(&t, 16, 30, 5, 11);
    spr_model_config c = small_config(t.d, t.l, 0.5f);
    const int want_bits[][3] = {{20, 30, 10}, {8, 30, 8}, {20, 1000, 12}, {11, 1000, 11}};
    for (int i = 0; i < 4; i++) { /* K, neurons, key bits */
        spr_model_config w = spr_model_config_default(t.d, want_bits[i][1]);
        w.layers[0].size = 16;
        w.layers[1].sparsity = 0.5f;
        w.layers[1].hash_k = want_bits[i][0];
        spr_model *m = NULL;
        OK(spr_model_create(&w, &m));
        spr_model_info info = spr_model_get_info(m);
        CHECK(info.key_bits[1] == want_bits[i][2], "K %d over %d neurons: %d key bits, got %d",
              want_bits[i][0], want_bits[i][1], want_bits[i][2], info.key_bits[1]);
        spr_model_free(m);
    }
    c.layers[1].hash_l = 1024;
    c.layers[1].hash_k = 20;
    c.layers[1].bucket_capacity = 1 << 20;
    int64_t est = 0;
    OK(spr_model_config_memory(&c, &est));
    spr_model *m = NULL;
    OK(spr_model_create(&c, &m));
    spr_model_info info = spr_model_get_info(m);
    CHECK(info.key_bits[1] == 10 && info.table_bytes < 16 << 20,
          "L 1024, K 20 over 30 neurons: 10 key bits and < 16 MB of tables, got %d bits, %lld bytes",
          info.key_bits[1], (long long)info.table_bytes);
    int64_t have = info.parameter_bytes + info.table_bytes;
    CHECK(est >= have && est < have * 3 / 2, "estimate %lld bytes covers %lld, within 1.5x",
          (long long)est, (long long)have);
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 8;
    int64_t rows[8];
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < 8; i++) rows[i] = (step * 8 + i) % t.n;
        spr_batch_stats st;
        OK(spr_model_train_batch(m, t.data, rows, 8, &o, &st));
        CHECK(isfinite(st.loss) && st.active[1] >= 15.0, "wide tables step %d: loss %g, %g active",
              step, st.loss, st.active[1]);
    }
    int32_t ids[3];
    float scores[3];
    OK(spr_model_predict(m, t.data, rows, 1, 3, 1, 1, ids, scores));
    CHECK(ids[0] >= 0 && ids[0] < 30, "wide tables: sparse prediction %d", ids[0]);
    spr_model_free(m);
    toy_free(&t);
}

static void test_bad_arguments(void) {
    toy t;
    toy_make(&t, 8, 10, 3, 1);
    spr_model_config c = small_config(t.d, t.l, 0.5f);
    c.layers[1].sparsity = 1.5f;
    spr_model *m = NULL;
    CHECK(spr_model_create(&c, &m) == SPR_STATUS_BAD_INPUT && m == NULL,
          "sparsity 1.5 rejected");
    CHECK(strstr(spr_last_error(), "sparsity") != NULL, "message names sparsity: %s",
          spr_last_error());
    /* a K whose code bits overflow an int (the checkpoint fuzzer's find): refused, no UB
     * (the sanitizer build halts on the overflow) */
    for (int h = 0; h <= (int)SPR_HASH_DOPH; h++) {
        c = small_config(t.d, t.l, 0.5f);
        c.layers[1].hash = (spr_hash_family)h;
        c.layers[1].hash_k = 1023410176;
        CHECK(spr_model_config_check(&c) == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "K must be"),
              "K 1023410176 (%s) refused, got '%s'", spr_hash_family_to_string((spr_hash_family)h),
              spr_last_error());
    }
    c = small_config(t.d, 5, 0.5f); /* fewer outputs than the data's labels */
    OK(spr_model_create(&c, &m));
    spr_train_options o = spr_train_options_default();
    int64_t rows[2] = {0, 1};
    CHECK(spr_model_train_batch(m, t.data, rows, 2, &o, NULL) == SPR_STATUS_BAD_INPUT,
          "data with more labels than outputs rejected");
    spr_model_free(m);
    c = small_config(t.d, t.l, 0.5f);
    OK(spr_model_create(&c, &m));
    rows[1] = 99;
    CHECK(spr_model_train_batch(m, t.data, rows, 2, &o, NULL) == SPR_STATUS_BAD_INPUT,
          "row out of range rejected");
    o.batch_size = 1;
    rows[1] = 1;
    CHECK(spr_model_train_batch(m, t.data, rows, 2, &o, NULL) == SPR_STATUS_BAD_INPUT,
          "batch larger than batch_size rejected");
    o = spr_train_options_default();
    const float bad_lr[] = {0.0f, -1e-3f, INFINITY, NAN};
    for (int i = 0; i < 4; i++) {
        o.lr = bad_lr[i];
        CHECK(spr_model_train_batch(m, t.data, rows, 2, &o, NULL) == SPR_STATUS_BAD_INPUT &&
                  strstr(spr_last_error(), "lr"),
              "lr %g rejected", (double)bad_lr[i]);
    }
    o = spr_train_options_default();
    o.eps = INFINITY;
    CHECK(spr_model_train_batch(m, t.data, rows, 2, &o, NULL) == SPR_STATUS_BAD_INPUT, "eps inf rejected");
    spr_model_free(m);
    toy_free(&t);
}

/* The deferred output step splits the rows between threads (each finds its range in every
 * sample's ascending ids): after one step the output layer must be bit for bit what one
 * thread gives (its gradient depends only on the forward pass; the hidden layers' HOGWILD
 * sums may differ, so they are not compared). */
static void test_deferred_threads(void) {
    toy t;
    toy_make(&t, 64, 300, 2, 13);
    spr_model_config c = small_config(t.d, t.l, 0.1f);
    spr_model *m[2];
    for (int k = 0; k < 2; k++) {
        OK(spr_model_create(&c, &m[k]));
        spr_train_options o = spr_train_options_default();
        o.threads = k + 1;
        o.batch_size = 16;
        int64_t rows[16];
        for (int i = 0; i < 16; i++) rows[i] = (5 * i) % t.n;
        spr_batch_stats st;
        OK(spr_model_train_batch(m[k], t.data, rows, 16, &o, &st));
    }
    const spr_layer *a = &m[0]->layers[1], *b = &m[1]->layers[1];
    const size_t bytes = (size_t)(a->rows * a->stride) * sizeof(float);
    int64_t changed = 0;
    for (int64_t i = 0; i < a->rows * a->stride; i++) changed += a->mw[i] != 0.0f;
    CHECK(changed > 0, "the step moved some output rows");
    CHECK(!memcmp(a->w, b->w, bytes) && !memcmp(a->mw, b->mw, bytes) && !memcmp(a->vw, b->vw, bytes),
          "output weights and moments after one step: 2 threads == 1 thread bit for bit");
    CHECK(!memcmp(a->b, b->b, (size_t)a->size * sizeof(float)), "output biases: 2 threads == 1");
    spr_model_free(m[0]);
    spr_model_free(m[1]);
    toy_free(&t);
}

/* The random share of the active set drawn once per batch (the default): every sample
 * of the batch gets the same random rows, so the batch touches far fewer rows than with
 * --random-per-sample; the active sets keep their size either way. */
static void test_shared_random(void) {
    toy t;
    toy_make(&t, 64, 2000, 1, 5);
    spr_model_config c = small_config(t.d, t.l, 0.05f); /* target 100, random share 50 */
    int64_t touched[2] = {0, 0};
    for (int per_sample = 0; per_sample <= 1; per_sample++) {
        spr_model *m;
        OK(spr_model_create(&c, &m));
        spr_train_options o = spr_train_options_default();
        o.threads = 1;
        o.batch_size = 8;
        o.rehash_first = 1000;
        o.random_pool = per_sample ? 0 : 1;
        const spr_layer *Lo = &m->layers[1];
        int64_t rows[8];
        for (int i = 0; i < 8; i++) rows[i] = 3 * i;
        spr_batch_stats st;
        OK(spr_model_compute_gradients(m, t.data, rows, 8, &o, &st));
        double labels = 0;
        for (int i = 0; i < 8; i++) labels += (double)(t.lp[rows[i] + 1] - t.lp[rows[i]]);
        CHECK(st.active[1] == 100.0 + labels / 8, "per_sample %d: active = target 100 + labels: "
              "want %g, got %g", per_sample, 100.0 + labels / 8, st.active[1]);
        touched[per_sample] = atomic_load(&Lo->n_touched);
        if (per_sample) {
            CHECK(Lo->n_pool == 0, "per-sample random rows: no shared rows, got %lld",
                  (long long)Lo->n_pool);
        } else {
            CHECK(Lo->random_reserve == 50 && Lo->n_pool >= 45 && Lo->n_pool <= 50,
                  "shared rows: 50 draws less repeats, got %lld of %lld", (long long)Lo->n_pool,
                  (long long)Lo->random_reserve);
            int sorted = 1, all_touched = 1;
            for (int64_t k = 0; k < Lo->n_pool; k++) {
                const int32_t id = Lo->pool_ids[k];
                if (id < 0 || id >= Lo->size || (k > 0 && id <= Lo->pool_ids[k - 1])) sorted = 0;
                else if (!atomic_load(&Lo->touched[id])) all_touched = 0;
            }
            CHECK(sorted, "shared rows ascending, distinct, in range");
            CHECK(all_touched, "every shared row is in the batch's active sets");
        }
        spr_model_free(m);
    }
    /* 8 samples x 50 random rows each against 50 for the batch (less what LSH leaves to
     * the per-sample top-up in both modes): clearly fewer rows */
    CHECK(touched[0] + 150 <= touched[1], "shared random rows: %lld touched rows, per sample %lld",
          (long long)touched[0], (long long)touched[1]);
    toy_free(&t);
}

/* spr_model_train_batch defers the output layer's gradient and forms it row by row in
 * the optimizer (train.c, spr_deferred); compute_gradients + apply_gradients accumulate
 * it sample by sample into the gradient rows. With one thread both must give the same
 * model bit for bit, and the deferred path must leave no gradient behind. The deferred
 * step is also fused (the input gradient formed in the optimizer's row pass, the
 * backward below the output layer after it, from the activations the forward kept), at
 * any depth since session 32: hidden_size > 0 adds a dense hidden layer of that size,
 * sampled_below a sampled one (6 of 12) under it. */
static void deferred_equals_accumulated(int64_t hidden_size, int sampled_below) {
    toy t;
    toy_make(&t, 64, 200, 3, 11);
    spr_model_config c = small_config(t.d, t.l, 0.1f);
    if (hidden_size > 0) {
        c.n_layers = 3;
        c.layers[2] = c.layers[1];
        c.layers[1] = c.layers[0];
        c.layers[1].size = hidden_size;
    }
    if (sampled_below) { /* 0 -> 1 (12, sampled) -> 2 (hidden_size, dense) -> output */
        c.n_layers = 4;
        c.layers[3] = c.layers[2];
        c.layers[2] = c.layers[1];
        c.layers[1].size = 12;
        c.layers[1].sparsity = 0.5f;
        c.layers[1].hash_l = 8;
    }
    spr_model *ma, *mb;
    OK(spr_model_create(&c, &ma));
    OK(spr_model_create(&c, &mb));
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 8;
    o.rehash_first = 3;
    for (int step = 0; step < 8; step++) {
        int64_t rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (step * 8 + i) % t.n;
        spr_batch_stats sa, sb;
        OK(spr_model_train_batch(ma, t.data, rows, 8, &o, &sa));
        OK(spr_model_compute_gradients(mb, t.data, rows, 8, &o, &sb));
        OK(spr_model_apply_gradients(mb, &o));
        CHECK(sa.loss == sb.loss, "step %d: deferred loss %.9g == accumulated loss %.9g", step,
              sa.loss, sb.loss);
        /* keep mb's rehash schedule in step with train_batch's */
        if (ma->rehashes != mb->rehashes) {
            OK(spr_model_rehash(mb, 0, 1));
            mb->rehashes = ma->rehashes, mb->next_rehash = ma->next_rehash;
        }
    }
    CHECK(ma->rehashes > 0, "rehashed during the test (%lld)", (long long)ma->rehashes);
    CHECK(params_equal(ma, mb, c.n_layers), "%d layers: deferred and accumulated output "
          "gradients: models bit-identical", c.n_layers);
    CHECK(ma->fused_steps == 8 && mb->fused_steps == 0,
          "%d layers: expected 8 fused steps (train_batch) and none (compute + apply), got %lld, %lld",
          c.n_layers, (long long)ma->fused_steps, (long long)mb->fused_steps);
    const spr_layer *Lo = &ma->layers[c.n_layers - 1];
    int64_t nonzero = 0;
    for (int64_t i = 0; i < Lo->rows * Lo->stride; i++) nonzero += Lo->gw[i] != 0.0f;
    for (int64_t i = 0; i < Lo->size; i++) nonzero += Lo->gb[i] != 0.0f;
    CHECK(nonzero == 0, "deferred path: output gradient rows all zero after the step, got %lld non-zero",
          (long long)nonzero);
    spr_model_free(ma);
    spr_model_free(mb);
    toy_free(&t);
}

/* Largest |a - b| over every float array of the first `layers` layers (weights, biases,
 * moments), relative to the largest |a| of its array. */
static double params_rel_diff(spr_model *a, spr_model *b, int layers) {
    double worst = 0.0;
    for (int l = 0; l < layers; l++)
        for (int p = SPR_PARAM_WEIGHT; p <= SPR_PARAM_BIAS_ADAM_V; p++) {
            if (p == SPR_PARAM_WEIGHT_GRAD || p == SPR_PARAM_BIAS_GRAD) continue;
            float *x, *y;
            int64_t r, c, s;
            OK(spr_model_param(a, l, (spr_param)p, &x, &r, &c, &s));
            OK(spr_model_param(b, l, (spr_param)p, &y, NULL, NULL, NULL));
            double scale = 0.0, diff = 0.0;
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < c; j++) {
                    scale = fmax(scale, fabs((double)x[i * s + j]));
                    diff = fmax(diff, fabs((double)x[i * s + j] - y[i * s + j]));
                }
            if (scale > 0.0) worst = fmax(worst, diff / scale);
        }
    return worst;
}

/* A clipped step defers and fuses too (session 32): the output rows take two passes, one
 * forming their gradients' norm and the input gradient without stepping, one stepping
 * them with the clipping scale; no gradient rows. Its twin is compute_gradients + apply
 * (the gradient rows materialised, clip_gradients over them): with one thread the same
 * model bit for bit where the clip does not bind; where it binds, to the rounding of the
 * norm (summed over the rows in another order), and far from the unclipped model. Two
 * and three layers. */
static void clipped_deferred(int three_layers) {
    toy t;
    toy_make(&t, 64, 200, 3, 11);
    spr_model_config c = small_config(t.d, t.l, 0.1f);
    if (three_layers) {
        c.n_layers = 3;
        c.layers[2] = c.layers[1];
        c.layers[1] = c.layers[0];
        c.layers[1].size = 12;
    }
    for (int binds = 0; binds <= 1; binds++) {
        spr_model *ma, *mb, *mc;
        OK(spr_model_create(&c, &ma));
        OK(spr_model_create(&c, &mb));
        OK(spr_model_create(&c, &mc));
        spr_train_options o = spr_train_options_default(), on;
        o.threads = 1;
        o.batch_size = 8;
        o.rehash_first = 3;
        o.lr = 0.01f;
        o.clip_norm = binds ? 0.05f : 1e6f;
        on = o, on.clip_norm = 0.0f;
        int same_loss = 1;
        for (int step = 0; step < 8; step++) {
            int64_t rows[8];
            for (int i = 0; i < 8; i++) rows[i] = (step * 8 + i) % t.n;
            spr_batch_stats sa, sb;
            OK(spr_model_train_batch(ma, t.data, rows, 8, &o, &sa));
            OK(spr_model_compute_gradients(mb, t.data, rows, 8, &o, &sb));
            OK(spr_model_apply_gradients(mb, &o));
            OK(spr_model_train_batch(mc, t.data, rows, 8, &on, NULL));
            same_loss &= sa.loss == sb.loss || (binds && fabs(sa.loss - sb.loss) <= 1e-6 * fabs(sb.loss));
            if (ma->rehashes != mb->rehashes) { /* keep mb's rehash schedule in step */
                OK(spr_model_rehash(mb, 0, 1));
                mb->rehashes = ma->rehashes, mb->next_rehash = ma->next_rehash;
            }
        }
        const double diff = params_rel_diff(ma, mb, c.n_layers), apart = params_rel_diff(ma, mc, c.n_layers);
        CHECK(same_loss && (binds ? diff <= 1e-5 : params_equal(ma, mb, c.n_layers)),
              "%d layers, clip %s: the deferred clipped step against compute + apply: losses %s, "
              "parameters %g apart", c.n_layers, binds ? "binding" : "not binding",
              same_loss ? "equal" : "differ", diff);
        CHECK(!binds || apart > 1e-3, "%d layers: the binding clip changed nothing (%g from the "
              "unclipped model): the test proves nothing", c.n_layers, apart);
        CHECK(ma->fused_steps == 8 && !ma->layers[c.n_layers - 1].gw_ready,
              "%d layers, clip %s: expected 8 fused steps without gradient rows, got %lld, rows %s",
              c.n_layers, binds ? "binding" : "not binding", (long long)ma->fused_steps,
              ma->layers[c.n_layers - 1].gw_ready ? "made" : "not made");
        spr_model_free(ma);
        spr_model_free(mb);
        spr_model_free(mc);
    }
    toy_free(&t);
}

/* Whether every array of every layer of a and b (same config) holds the same bits:
 * weights and moments (float or BF16), biases and theirs, the rows' last steps. */
static int layers_bits_equal(const spr_model *a, const spr_model *b) {
    for (int l = 0; l < a->n_layers; l++) {
        const spr_layer *x = &a->layers[l], *y = &b->layers[l];
        const size_t n = (size_t)x->rows * (size_t)x->stride, nb = (size_t)x->size * sizeof(float);
        if ((x->w16 ? memcmp(x->w16, y->w16, n * 2) : memcmp(x->w, y->w, n * 4)) ||
            (x->mw16 ? memcmp(x->mw16, y->mw16, n * 2) || memcmp(x->vw16, y->vw16, n * 2)
                     : memcmp(x->mw, y->mw, n * 4) || memcmp(x->vw, y->vw, n * 4)) ||
            memcmp(x->b, y->b, nb) || memcmp(x->mb, y->mb, nb) || memcmp(x->vb, y->vb, nb) ||
            memcmp(x->last_step, y->last_step, (size_t)x->rows * sizeof *x->last_step))
            return 0;
    }
    return 1;
}

/* Random shapes (seeded, printed on failure): 2 to 4 layers, hidden layers of 5 to 40
 * neurons, a sampled hidden layer below a dense one or not, an output of 30 to 300 labels
 * sampled at 2-40%, batches of 1 to 16 (some points without labels), BF16 moments or
 * weights, lazy Adam or the catch-up, clipping that never binds or none, the output's
 * input sampled (deferred, not fused): the deferred step (train_batch) against
 * compute_gradients + apply, one thread, bit for bit after 6 steps with rehashes. */
static void test_fused_random_shapes(void) {
    spr_rng rng;
    spr_rng_seed(&rng, 20261208);
    int tops = 0, belows = 0;
    for (int trial = 0; trial < 24; trial++) {
        const uint64_t seed = spr_rng_next(&rng);
        spr_rng r;
        spr_rng_seed(&r, seed);
        toy t;
        toy_make(&t, 48, 30 + (int64_t)spr_rng_below(&r, 271), 3, seed);
        spr_model_config c = small_config(t.d, t.l, 0.02f + 0.38f * (float)spr_rng_uniform(&r));
        const int nl = 2 + (int)spr_rng_below(&r, 3);
        c.n_layers = nl;
        c.layers[nl - 1] = c.layers[1];
        for (int l = 0; l < nl - 1; l++) {
            c.layers[l] = c.layers[0];
            c.layers[l].size = 5 + (int64_t)spr_rng_below(&r, 36);
        }
        const int sampled_below = nl == 4 && spr_rng_below(&r, 2);
        if (sampled_below) c.layers[1].sparsity = 0.5f, c.layers[1].hash_l = 6;
        /* the output's input sampled: deferred, not fused (its rows' gradients from each
         * input's active neurons) */
        const int sampled_top = nl >= 3 && spr_rng_below(&r, 3) == 0;
        if (sampled_top) c.layers[nl - 2].sparsity = 0.5f, c.layers[nl - 2].hash_l = 6;
        tops += sampled_top, belows += sampled_below;
        const int bf16 = (int)spr_rng_below(&r, 3);
        c.bf16_state = bf16 >= 1;
        c.bf16_weights = bf16 == 2 && !sampled_below && !sampled_top;
        c.seed = seed;
        spr_train_options o = spr_train_options_default();
        o.threads = 1;
        o.batch_size = 1 + (int)spr_rng_below(&r, 16);
        o.rehash_first = 2;
        o.rebuild_every = 2;
        o.lr = 0.01f;
        o.lazy_adam = (int)spr_rng_below(&r, 2);
        o.clip_norm = spr_rng_below(&r, 2) ? 1e6f : 0.0f;
        spr_model *ma, *mb;
        spr_status sa_ = spr_model_create(&c, &ma), sb_ = spr_model_create(&c, &mb);
        CHECK(!sa_ && !sb_, "shapes %d (seed %llu): create: %s", trial, (unsigned long long)seed,
              spr_last_error());
        if (sa_ || sb_) {
            toy_free(&t);
            continue;
        }
        int same_loss = 1;
        for (int step = 0; step < 6; step++) {
            int64_t rows[16];
            for (int i = 0; i < o.batch_size; i++) rows[i] = (step * 7 + i * 5) % t.n;
            spr_batch_stats sa, sb;
            OK(spr_model_train_batch(ma, t.data, rows, o.batch_size, &o, &sa));
            OK(spr_model_compute_gradients(mb, t.data, rows, o.batch_size, &o, &sb));
            OK(spr_model_apply_gradients(mb, &o));
            same_loss &= sa.loss == sb.loss;
            if (ma->rehashes != mb->rehashes) {
                OK(spr_model_rehash(mb, (ma->rehashes % o.rebuild_every) == 0, 1));
                mb->rehashes = ma->rehashes, mb->next_rehash = ma->next_rehash;
            }
        }
        const int fused = ma->fused_steps == (sampled_top ? 0 : 6) && mb->fused_steps == 0 &&
                          !ma->layers[nl - 1].gw_ready; /* (deferred: no gradient rows) */
        const int same = same_loss && layers_bits_equal(ma, mb);
        CHECK(same && fused,
              "shapes %d (seed %llu: %d layers%s%s, output %lld at %.3f, batch %d, bf16 state %d "
              "weights %d, lazy %d, "
              "clip %g): expected the fused step bit for bit compute + apply, got losses %s, "
              "parameters %s, fused steps %lld / %lld", trial, (unsigned long long)seed, nl,
              sampled_below ? " (a sampled hidden layer)" : "",
              sampled_top ? " (the output's input sampled)" : "", (long long)t.l,
              (double)c.layers[nl - 1].sparsity, o.batch_size, c.bf16_state, c.bf16_weights, o.lazy_adam,
              (double)o.clip_norm, same_loss ? "equal" : "differ", same ? "equal" : "differ",
              (long long)ma->fused_steps, (long long)mb->fused_steps);
        spr_model_free(ma);
        spr_model_free(mb);
        toy_free(&t);
    }
    CHECK(tops >= 3 && belows >= 3, "random shapes: %d with the output's input sampled, %d with a "
          "sampled layer below a dense one: expected 3 or more of each", tops, belows);
}

static void test_clipped_deferred(void) {
    clipped_deferred(0);
    clipped_deferred(1);
}

static void test_deferred_equals_accumulated(void) {
    deferred_equals_accumulated(0, 0);
    deferred_equals_accumulated(12, 0);
    deferred_equals_accumulated(10, 1);
}

/* The fused step with two threads: each forms the input-gradient terms of its own output
 * rows, and the first layer's backward adds the two parts per sample. Two samples with
 * no feature in common (one a thread in the first layer's backward: no HOGWILD overlap):
 * the output layer bit for bit the one-thread step's, the first layer's moments equal to
 * rounding (the parts add in another order than one thread's chain). A lost part would
 * move them by the whole term. */
static void test_fused_threads(void) {
    toy t;
    toy_make(&t, 64, 300, 2, 13);
    int64_t rows[2] = {-1, -1};
    for (int64_t a = 0; a < t.n && rows[0] < 0; a++)
        for (int64_t b = a + 1; b < t.n && rows[0] < 0; b++) {
            if (t.lp[a + 1] == t.lp[a] || t.lp[b + 1] == t.lp[b]) continue;
            int shared = 0;
            for (int64_t p = t.fp[a]; p < t.fp[a + 1]; p++)
                for (int64_t q = t.fp[b]; q < t.fp[b + 1]; q++) shared |= t.fi[p] == t.fi[q];
            if (!shared) rows[0] = a, rows[1] = b;
        }
    CHECK(rows[0] >= 0, "two labelled samples without a shared feature in the toy set");
    spr_model_config c = small_config(t.d, t.l, 0.1f);
    spr_model *m[2];
    for (int k = 0; k < 2; k++) {
        OK(spr_model_create(&c, &m[k]));
        spr_train_options o = spr_train_options_default();
        o.threads = k + 1;
        o.batch_size = 2;
        OK(spr_model_train_batch(m[k], t.data, rows, 2, &o, NULL));
    }
    const spr_layer *a = &m[0]->layers[1], *b = &m[1]->layers[1];
    const size_t bytes = (size_t)(a->rows * a->stride) * sizeof(float);
    CHECK(!memcmp(a->w, b->w, bytes) && !memcmp(a->mw, b->mw, bytes),
          "fused, 2 threads: the output layer bit for bit the 1-thread step's");
    const spr_layer *a0 = &m[0]->layers[0], *b0 = &m[1]->layers[0];
    /* rounding: relative to the layer's largest moment (a sum that nearly cancels keeps
     * the absolute error of its terms, not a relative one) */
    float scale = 0.0f;
    for (int64_t i = 0; i < a0->rows * a0->stride; i++) scale = fmaxf(scale, fabsf(a0->mw[i]));
    for (int64_t j = 0; j < a0->size; j++) scale = fmaxf(scale, fabsf(a0->mb[j]));
    int64_t moved = 0, far = 0;
    for (int64_t i = 0; i < a0->rows * a0->stride; i++) {
        moved += a0->mw[i] != 0.0f;
        if (fabsf(a0->mw[i] - b0->mw[i]) > 1e-5f * scale && far++ < 3)
            printf("  weight moment %lld: 1 thread %.9g, 2 threads %.9g\n", (long long)i, a0->mw[i], b0->mw[i]);
    }
    for (int64_t j = 0; j < a0->size; j++) {
        moved += a0->mb[j] != 0.0f;
        if (fabsf(a0->mb[j] - b0->mb[j]) > 1e-5f * scale && far++ < 3)
            printf("  bias moment %lld: 1 thread %.9g, 2 threads %.9g\n", (long long)j, a0->mb[j], b0->mb[j]);
    }
    CHECK(moved > 16, "fused, 2 threads: the first layer's moments moved (%lld entries)", (long long)moved);
    CHECK(far == 0, "fused, 2 threads: the first layer's moments within rounding of 1 thread's, "
          "%lld entries further", (long long)far);
    spr_model_free(m[0]);
    spr_model_free(m[1]);
    toy_free(&t);
}

/* The selection's set of neurons (sample.c) maps a neuron to its slot by a hash when the
 * layer has more neurons than slots, and by its id when not. Both must give the same
 * active sets, draw for draw: a layer of 5,000 neurons with the fewest slots it needs
 * (1,024: hashed, with collisions) against 8,192 (direct), every strategy, training
 * (labels, random neurons, a batch pool) and inference, 300 inputs each. */
static void test_selection_set(void) {
    const spr_select how[] = {SPR_SELECT_TOPK, SPR_SELECT_RANK, SPR_SELECT_THRESHOLD, SPR_SELECT_UNION};
    for (int hi = 0; hi < 4; hi++) {
        spr_model_config c = spr_model_config_default(50, 5000);
        c.layers[0].size = 32;
        c.layers[1].sparsity = 0.01f; /* target 50 */
        c.layers[1].hash_l = 8;
        c.layers[1].hash_k = 6;
        c.layers[1].bucket_capacity = 32;
        c.layers[1].select = how[hi];
        c.init_std = 0.1f;
        c.seed = 77;
        spr_model *m;
        OK(spr_model_create(&c, &m));
        spr_layer *L = &m->layers[1];
        spr_scratch sh, sd;
        CHECK(spr_sampler_scratch(L, &sh) && spr_sampler_scratch(L, &sd), "sampler scratch allocated");
        CHECK(sh.slot_bits == 10 && ((int64_t)1 << sh.slot_bits) < L->size,
              "%s: the fewest slots (1,024) hash the 5,000 neurons, got 2^%d", spr_select_to_string(how[hi]),
              sh.slot_bits);
        spr_free(sd.slots);
        sd.slot_bits = 13;
        sd.slots = spr_alloc(((size_t)1 << 13) * sizeof(spr_idslot));
        int32_t *a = calloc(4096, 4), *b = calloc(4096, 4), pool[300];
        for (int k = 0; k < 300; k++) pool[k] = (int32_t)(k * 16 + 3);
        spr_rng r, ra, rb;
        spr_rng_seed(&r, 1234);
        int differ = 0, checked = 0;
        float h[32];
        for (int v = 0; v < 300; v++) {
            for (int i = 0; i < 32; i++) h[i] = (float)spr_rng_normal(&r);
            int32_t labels[3] = {(int32_t)(v * 7 % 5000), (int32_t)(v * 7 % 5000 + 1), 4999};
            const int nl = v % 4 == 0 ? 0 : (v % 4 == 1 ? 1 : 3);
            const int inference = v % 5 == 0;
            const int64_t np = v % 3 == 0 ? 300 : (v % 3 == 1 ? 20 : 0);
            spr_rng_seed(&ra, (uint64_t)v), spr_rng_seed(&rb, (uint64_t)v);
            int64_t na = spr_layer_select(L, h, inference ? NULL : labels, inference ? 0 : nl, inference,
                                          &sh, &ra, a, pool, np);
            int64_t nb = spr_layer_select(L, h, inference ? NULL : labels, inference ? 0 : nl, inference,
                                          &sd, &rb, b, pool, np);
            differ += na != nb || memcmp(a, b, (size_t)na * 4) != 0;
            checked++;
        }
        CHECK(differ == 0, "%s: hashed and direct slots give the same active sets, %d of %d inputs differ",
              spr_select_to_string(how[hi]), differ, checked);
        spr_sampler_scratch_free(&sh);
        spr_sampler_scratch_free(&sd);
        free(a), free(b);
        spr_model_free(m);
    }
}

/* v16 is a stochastic rounding of the float v: v itself if v is a BF16 value, else one of
 * its two BF16 neighbours. */
static int sr_neighbour(uint16_t v16, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return v16 == (uint16_t)(u >> 16) || ((u & 0xFFFFu) && v16 == (uint16_t)((u >> 16) + 1));
}

/* bf16_state on every path that steps the output layer (deferred, accumulated + apply,
 * dense): from zero moments the first step moves the weights by the unrounded moments,
 * so it must give the float model's weights bit for bit and its moments rounded to BF16
 * (m to nearest even, v to one of its two neighbours: stochastic rounding);
 * everything outside the output layer's weight moments is the float model's. Then both
 * learn the toy problem alike. */
static void test_bf16_state(void) {
    toy t;
    toy_make(&t, 64, 200, 3, 13);
    const char *paths[] = {"deferred", "compute + apply", "dense"};
    for (int path = 0; path < 3; path++) {
        spr_model_config c = small_config(t.d, t.l, 0.1f);
        spr_model *mf, *mb;
        OK(spr_model_create(&c, &mf));
        c.bf16_state = 1;
        OK(spr_model_create(&c, &mb));
        spr_train_options o = spr_train_options_default();
        o.threads = 1;
        o.batch_size = 8;
        o.dense = path == 2;
        int64_t rows[8] = {0, 5, 9, 14, 22, 31, 40, 63};
        if (path == 1) {
            OK(spr_model_compute_gradients(mf, t.data, rows, 8, &o, NULL));
            OK(spr_model_apply_gradients(mf, &o));
            OK(spr_model_compute_gradients(mb, t.data, rows, 8, &o, NULL));
            OK(spr_model_apply_gradients(mb, &o));
        } else {
            OK(spr_model_train_batch(mf, t.data, rows, 8, &o, NULL));
            OK(spr_model_train_batch(mb, t.data, rows, 8, &o, NULL));
        }
        const spr_layer *F = &mf->layers[1], *B = &mb->layers[1];
        int64_t bad_m = 0, nonzero = 0;
        for (int64_t r = 0; r < F->rows; r++)
            for (int64_t q = 0; q < F->cols; q++) {
                int64_t i = r * F->stride + q;
                bad_m += B->mw16[i] != spr_bf16_from_f32(F->mw[i]) || !sr_neighbour(B->vw16[i], F->vw[i]);
                nonzero += B->vw16[i] != 0;
            }
        CHECK(bad_m == 0 && nonzero > 0,
              "bf16 %s, first step: expected the float moments rounded (and some non-zero), got %lld "
              "differing, %lld non-zero", paths[path], (long long)bad_m, (long long)nonzero);
        int same = memcmp(F->w, B->w, (size_t)(F->rows * F->stride) * sizeof(float)) == 0 &&
                   memcmp(F->b, B->b, (size_t)F->size * sizeof(float)) == 0 &&
                   memcmp(F->mb, B->mb, (size_t)F->size * sizeof(float)) == 0 &&
                   memcmp(F->vb, B->vb, (size_t)F->size * sizeof(float)) == 0 &&
                   memcmp(mf->layers[0].w, mb->layers[0].w,
                          (size_t)(mf->layers[0].rows * mf->layers[0].stride) * sizeof(float)) == 0 &&
                   memcmp(mf->layers[0].mw, mb->layers[0].mw,
                          (size_t)(mf->layers[0].rows * mf->layers[0].stride) * sizeof(float)) == 0;
        CHECK(same, "bf16 %s, first step: expected the weights, biases and layer 0 moments of the "
              "float model bit for bit", paths[path]);
        spr_model_free(mf);
        spr_model_free(mb);
    }
    toy_free(&t);

    toy_make(&t, 2000, 100, 8, 21);
    spr_model_config c = small_config(t.d, t.l, 0.1f);
    c.layers[0].size = 32;
    c.layers[1].hash_l = 50;
    spr_model *mf, *mb;
    OK(spr_model_create(&c, &mf));
    c.bf16_state = 1;
    OK(spr_model_create(&c, &mb));
    double pf = train_toy(mf, &t, 1, 4, 0, NULL), pb = train_toy(mb, &t, 1, 4, 0, NULL);
    CHECK(fabs(pf - pb) < 0.03, "bf16 learns the toy problem like float: P@1 %.3f vs %.3f (expected "
          "within 0.03)", pb, pf);
    spr_model_free(mf);
    spr_model_free(mb);
    toy_free(&t);
}

/* bf16_weights: the output layer's weights in BF16 (with BF16 moments).
 *   - every path that steps the output layer (deferred, accumulated + apply, dense): a
 *     bf16_state model given the widened BF16 weights computes the same logits, hence
 *     the same gradients and moments, bit for bit, and its new float weights rounded
 *     stochastically with the documented bits are the BF16 model's weights;
 *   - sampled with every neuron active equals dense, bit for bit (the dense twin);
 *   - it learns the toy problem as the float model does;
 *   - the configuration rules, spr_model_param's refusal and spr_model_weight_row. */
static void test_bf16_weights(void) {
    toy t;
    toy_make(&t, 64, 200, 3, 13);
    const char *paths[] = {"deferred", "compute + apply", "dense"};
    for (int path = 0; path < 3; path++) {
        spr_model_config c = small_config(t.d, t.l, 0.1f);
        c.bf16_state = 1;
        spr_model *ms, *mw;
        OK(spr_model_create(&c, &ms));
        c.bf16_weights = 1;
        OK(spr_model_create(&c, &mw));
        spr_layer *S = &ms->layers[1], *W = &mw->layers[1];
        CHECK(W->w == NULL && W->w16 != NULL && S->w16 == NULL, "bf16_weights: the output layer "
              "holds BF16 weights only");
        int64_t not_rounded = 0;
        for (int64_t r = 0; r < S->rows; r++)
            for (int64_t q = 0; q < S->cols; q++) {
                const int64_t i = r * S->stride + q;
                not_rounded += W->w16[i] != spr_bf16_from_f32(S->w[i]); /* the same draws, rounded */
                S->w[i] = spr_f32_from_bf16(W->w16[i]);
            }
        CHECK(not_rounded == 0, "bf16_weights: expected the float model's initial weights rounded to "
              "nearest, got %lld others", (long long)not_rounded);
        OK(spr_model_rehash(ms, 0, 1)); /* its tables from the widened weights, as mw's */
        spr_train_options o = spr_train_options_default();
        o.threads = 1;
        o.batch_size = 8;
        o.dense = path == 2;
        int64_t rows[8] = {0, 5, 9, 14, 22, 31, 40, 63};
        spr_batch_stats bs, bw;
        if (path == 1) {
            OK(spr_model_compute_gradients(ms, t.data, rows, 8, &o, &bs));
            OK(spr_model_apply_gradients(ms, &o));
            OK(spr_model_compute_gradients(mw, t.data, rows, 8, &o, &bw));
            OK(spr_model_apply_gradients(mw, &o));
        } else {
            OK(spr_model_train_batch(ms, t.data, rows, 8, &o, &bs));
            OK(spr_model_train_batch(mw, t.data, rows, 8, &o, &bw));
        }
        CHECK(bs.loss == bw.loss, "bf16_weights %s: expected the loss of the widened weights %.9g, got "
              "%.9g", paths[path], bs.loss, bw.loss);
        int64_t bad_w = 0, bad_mv = 0, moved = 0;
        for (int64_t r = 0; r < S->rows; r++) {
            const uint32_t salt = (uint32_t)spr_mix64((uint64_t)0 << 32 ^ (uint64_t)r); /* step 0 */
            for (int64_t q = 0; q < S->cols; q++) {
                const int64_t i = r * S->stride + q;
                const uint16_t want = spr_bf16_from_f32_sr(S->w[i], spr_bf16_noise_w(salt, q));
                bad_w += W->w16[i] != want;
                bad_mv += W->mw16[i] != S->mw16[i] || W->vw16[i] != S->vw16[i];
                moved += S->mw16[i] != 0;
            }
        }
        CHECK(bad_w == 0 && bad_mv == 0 && moved > 0,
              "bf16_weights %s, first step: expected the float step's weights rounded stochastically "
              "and the same moments (some moved), got %lld weights and %lld moments differing, %lld moved",
              paths[path], (long long)bad_w, (long long)bad_mv, (long long)moved);
        CHECK(memcmp(S->b, W->b, (size_t)S->size * sizeof(float)) == 0 &&
                  memcmp(ms->layers[0].w, mw->layers[0].w,
                         (size_t)(ms->layers[0].rows * ms->layers[0].stride) * sizeof(float)) == 0,
              "bf16_weights %s: expected the biases and layer 0 of the float-weight model bit for bit",
              paths[path]);
        spr_model_free(ms);
        spr_model_free(mw);
    }
    toy_free(&t);

    /* the dense twin: all 40 neurons active (sparsity 0.999) against --dense */
    toy_make(&t, 64, 40, 6, 7);
    spr_model_config c = small_config(t.d, t.l, 0.999f);
    c.bf16_state = c.bf16_weights = 1;
    spr_model *ms, *md;
    twin_steps(&ms, &md, &c, &t, "bf16_weights");
    const spr_layer *A = &ms->layers[1], *D = &md->layers[1];
    const size_t n16 = (size_t)(A->rows * A->stride) * sizeof(uint16_t);
    CHECK(memcmp(A->w16, D->w16, n16) == 0 && memcmp(A->mw16, D->mw16, n16) == 0 &&
              memcmp(A->vw16, D->vw16, n16) == 0 && memcmp(A->b, D->b, (size_t)A->size * 4) == 0,
          "bf16_weights: sampled (all active) and dense weights and moments bit-identical");
    float *ptr;
    CHECK(spr_model_param(ms, 1, SPR_PARAM_WEIGHT, &ptr, NULL, NULL, NULL) == SPR_STATUS_BAD_INPUT &&
              strstr(spr_last_error(), "BF16"),
          "bf16_weights: spr_model_param(WEIGHT) of the output layer refused, got '%s'", spr_last_error());
    float row[2 * 16];
    OK(spr_model_weight_rows(ms, 1, 7, 2, row));
    int same = 1;
    for (int q = 0; q < 32; q++) same &= row[q] == spr_f32_from_bf16(A->w16[(7 + q / 16) * A->stride + q % 16]);
    CHECK(same, "spr_model_weight_rows: expected rows 7 and 8 widened");
    CHECK(spr_model_weight_rows(ms, 1, 39, 2, row) == SPR_STATUS_BAD_INPUT, "weight_rows 39..41 of 40 refused");
    OK(spr_model_weight_rows(ms, 0, 0, 1, row)); /* a float layer: copied as it is */
    CHECK(row[3] == ms->layers[0].w[3], "spr_model_weight_rows of layer 0: expected its row 0");
    spr_model_free(ms);
    spr_model_free(md);
    toy_free(&t);

    /* configuration rules */
    c = small_config(100, 50, 0.1f);
    c.bf16_weights = 1;
    CHECK(spr_model_config_check(&c) == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "bf16_state"),
          "bf16_weights without bf16_state refused, got '%s'", spr_last_error());
    c.bf16_state = 1;
    c.n_layers = 3;
    c.layers[2] = c.layers[1];
    c.layers[1].size = 32;
    c.layers[1].sparsity = 0.5f;
    CHECK(spr_model_config_check(&c) == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "dense"),
          "bf16_weights over a sampled hidden layer refused, got '%s'", spr_last_error());
    c.layers[1].sparsity = 1.0f;
    CHECK(spr_model_config_check(&c) == SPR_STATUS_OK, "bf16_weights over a dense hidden layer: ok");

    /* learns like float */
    toy_make(&t, 2000, 100, 8, 21);
    c = small_config(t.d, t.l, 0.1f);
    c.layers[0].size = 32;
    c.layers[1].hash_l = 50;
    spr_model *mf, *mb;
    OK(spr_model_create(&c, &mf));
    c.bf16_state = c.bf16_weights = 1;
    OK(spr_model_create(&c, &mb));
    double pf = train_toy(mf, &t, 1, 4, 0, NULL), pb = train_toy(mb, &t, 1, 4, 0, NULL);
    CHECK(fabs(pf - pb) < 0.03, "bf16_weights learns the toy problem like float: P@1 %.3f vs %.3f "
          "(expected within 0.03)", pb, pf);
    spr_model_free(mf);
    spr_model_free(mb);
    toy_free(&t);
}

/* A row of layer L as bytes (its weights, float or BF16), to tell whether a step changed it. */
static const void *row_bytes_of(const spr_layer *L, int64_t r, size_t *n) {
    *n = (size_t)L->cols * (L->w16 ? sizeof(uint16_t) : sizeof(float));
    return L->w16 ? (const void *)(L->w16 + r * L->stride) : (const void *)(L->w + r * L->stride);
}

/* spr_batch_stats.optimizer_rows is the number of weight rows the step changed (a first
 * step: every stepped row has a gradient, so it moves), and optimizer_bytes what those rows
 * hold, read and written: per column of a row, the weight (4 bytes, 2 in BF16), its two
 * moments (4 + 4, 2 + 2 in BF16) and a gradient row (4) unless the deferred path formed it
 * in a buffer; per row of a layer past the first, bias, its gradient and moments (16); and
 * layer 0's dense bias (16 a neuron). The figures below are written out by hand. The
 * gradient rows are materialised by spr_model_compute_gradients + apply (its figures in
 * m->step_rows, m->step_bytes); a clipped step defers as an unclipped one does. */
static void test_optimizer_accounting(void) {
    toy t;
    toy_make(&t, 64, 200, 3, 21);
    /* case: {bf16_state, bf16_weights, path, output per column}; path 0: train_batch,
     * 1: compute + apply (gradient rows materialised), 2: train_batch clipped */
    const int cases[9][4] = {{0, 0, 0, 12}, {0, 0, 1, 16}, {0, 0, 2, 12},
                             {1, 0, 0, 8},  {1, 0, 1, 12}, {1, 0, 2, 8},
                             {1, 1, 0, 6},  {1, 1, 1, 10}, {1, 1, 2, 6}};
    for (int k = 0; k < 9; k++) {
        spr_model_config c = small_config(t.d, t.l, 0.1f);
        c.bf16_state = cases[k][0];
        c.bf16_weights = cases[k][1];
        spr_model *m;
        OK(spr_model_create(&c, &m));
        spr_train_options o = spr_train_options_default();
        o.threads = 1;
        o.batch_size = 8;
        o.lr = 0.01f; /* steps larger than a BF16 weight's spacing */
        o.rehash_first = 1000;
        o.clip_norm = cases[k][2] == 2 ? 1e6f : 0.0f; /* (never clips) */
        void *before[2];
        for (int l = 0; l < 2; l++) {
            size_t n;
            row_bytes_of(&m->layers[l], 0, &n);
            before[l] = malloc(n * (size_t)m->layers[l].rows + 1);
            for (int64_t r = 0; r < m->layers[l].rows; r++)
                memcpy((char *)before[l] + n * (size_t)r, row_bytes_of(&m->layers[l], r, &n), n);
        }
        int64_t rows[8] = {1, 6, 8, 15, 23, 30, 41, 62};
        spr_batch_stats st;
        if (cases[k][2] == 1) {
            OK(spr_model_compute_gradients(m, t.data, rows, 8, &o, NULL));
            OK(spr_model_apply_gradients(m, &o));
            st.optimizer_rows = m->step_rows, st.optimizer_bytes = m->step_bytes;
        } else {
            OK(spr_model_train_batch(m, t.data, rows, 8, &o, &st));
        }
        int64_t changed[2] = {0, 0};
        for (int l = 0; l < 2; l++)
            for (int64_t r = 0; r < m->layers[l].rows; r++) {
                size_t n;
                const void *now = row_bytes_of(&m->layers[l], r, &n);
                changed[l] += memcmp((char *)before[l] + n * (size_t)r, now, n) != 0;
            }
        const int64_t hid = m->layers[0].cols, out_cols = m->layers[1].cols;
        const int64_t want_bytes = changed[0] * 2 * (hid * 16) +
                                   changed[1] * 2 * (out_cols * cases[k][3] + 16) + 2 * 16 * hid;
        CHECK(changed[0] > 0 && changed[1] > 0 && st.optimizer_rows == changed[0] + changed[1],
              "case %d: optimizer_rows %lld, expected the rows the step changed, %lld + %lld", k,
              (long long)st.optimizer_rows, (long long)changed[0], (long long)changed[1]);
        CHECK(st.optimizer_bytes == want_bytes, "case %d: optimizer_bytes %lld, expected %lld", k,
              (long long)st.optimizer_bytes, (long long)want_bytes);
        free(before[0]);
        free(before[1]);
        spr_model_free(m);
    }
    toy_free(&t);
}

/* Resident 4 KB pages of [p, p + n) (mincore). */
static int64_t resident_pages(const void *p, size_t n) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)p / page * page, hi = ((uintptr_t)p + n + page - 1) / page * page;
    const size_t pages = (hi - lo) / page;
    unsigned char *vec = malloc(pages);
    if (!vec || mincore((void *)lo, hi - lo, vec) != 0) {
        free(vec);
        return -1;
    }
    int64_t k = 0;
    for (size_t i = 0; i < pages; i++) k += vec[i] & 1;
    free(vec);
    return k;
}

/* A sampled output layer's gradient rows are reserved, not touched: deferred training,
 * clipped or not, never faults them in (the memory a model costs is its weights and
 * moments); the paths that write them (compute_gradients + apply, dense mode) fault them
 * in first and train as before: the same weights as a model whose rows were touched from
 * the start. */
static void test_reserved_gradient_rows(void) {
    toy t;
    toy_make(&t, 64, 2000, 3, 31);
    spr_model_config c = small_config(t.d, t.l, 0.01f);
    c.layers[0].size = 128; /* gw: 2000 x 16 ... x 128 floats = 1 MB, 256 pages */
    spr_model *m, *ref;
    OK(spr_model_create(&c, &m));
    OK(spr_model_create(&c, &ref));
    spr_layer *Lo = &m->layers[1];
    CHECK(Lo->gw_reserved > 0 && !Lo->gw_ready, "the output layer's gradient rows are reserved");
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 8;
    o.rehash_first = 1000;
    /* the estimate for training: without the gradient rows exactly when they stay untouched */
    int64_t whole = 0, est_deferred = 0, est_clip = 0, est_dense = 0;
    OK(spr_model_config_memory(&c, &whole));
    OK(spr_model_config_memory_training(&c, &o, &est_deferred));
    spr_train_options oc = o, od = o;
    oc.clip_norm = 1.0f;
    od.dense = 1;
    OK(spr_model_config_memory_training(&c, &oc, &est_clip));
    OK(spr_model_config_memory_training(&c, &od, &est_dense));
    CHECK(est_deferred == whole - (int64_t)Lo->gw_reserved && est_clip == est_deferred && est_dense == whole,
          "training estimates: deferred and clipped %lld, %lld (expected %lld - %lld), dense %lld "
          "(expected %lld)", (long long)est_deferred, (long long)est_clip, (long long)whole,
          (long long)Lo->gw_reserved, (long long)est_dense, (long long)whole);
    CHECK(spr_model_config_memory_training(&c, NULL, &whole) == SPR_STATUS_BAD_INPUT,
          "training estimate: NULL options are refused");
    int64_t rows[8] = {2, 7, 11, 19, 25, 33, 47, 60};
    spr_train_options ok = o;
    ok.clip_norm = 1e6f; /* (never clips) */
    for (int s = 0; s < 3; s++) OK(spr_model_train_batch(m, t.data, rows, 8, s == 1 ? &ok : &o, NULL));
    const int64_t deferred = resident_pages(Lo->gw, Lo->gw_reserved);
    CHECK(deferred == 0 && !Lo->gw_ready, "3 deferred steps (one clipped): expected no resident "
          "page of the gradient rows, got %lld", (long long)deferred);
    /* ref: its rows faulted in before any step; both then take the same steps through
     * compute_gradients + apply, which writes the gradient rows */
    spr_layer_gradient_rows(&ref->layers[1]);
    for (int s = 0; s < 3; s++) OK(spr_model_train_batch(ref, t.data, rows, 8, s == 1 ? &ok : &o, NULL));
    for (int s = 0; s < 2; s++) {
        OK(spr_model_compute_gradients(m, t.data, rows, 8, &o, NULL));
        OK(spr_model_apply_gradients(m, &o));
        OK(spr_model_compute_gradients(ref, t.data, rows, 8, &o, NULL));
        OK(spr_model_apply_gradients(ref, &o));
    }
    const int64_t pages = (int64_t)((Lo->gw_reserved + 4095) / 4096);
    const int64_t written = resident_pages(Lo->gw, Lo->gw_reserved);
    CHECK(Lo->gw_ready && written >= pages, "compute + apply: expected the %lld pages of the "
          "gradient rows faulted in, got %lld", (long long)pages, (long long)written);
    CHECK(params_equal(m, ref, 2), "reserved gradient rows: the same weights and moments as "
          "rows touched from the start");
    spr_model_free(m);
    spr_model_free(ref);
    toy_free(&t);
}

/* The initial weights: spr_rng_normals against N(0, init_std^2) on a whole layer (mean,
 * variance, kurtosis and the Kolmogorov-Smirnov distance, each several standard errors
 * wide yet far tighter than a uniform or a wrongly scaled draw would pass), its pairs
 * falling the same for any chunking, and a model's weights fixed by its seed. */
static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }
static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_initial_weights(void) {
    enum { N = 200001 }; /* odd: the last pair's second value is dropped */
    float *x = malloc(N * sizeof(float));
    spr_rng r;
    spr_rng_seed(&r, 7);
    spr_rng_normals(&r, x, N, 0.5f);
    double m1 = 0, m2 = 0, m4 = 0, biggest = 0;
    for (int i = 0; i < N; i++) m1 += x[i];
    m1 /= N;
    for (int i = 0; i < N; i++) {
        const double d = x[i] - m1;
        m2 += d * d;
        m4 += d * d * d * d;
        if (fabs(x[i]) > biggest) biggest = fabs(x[i]);
    }
    m2 /= N;
    m4 /= N;
    double lag1 = 0, lag2 = 0; /* the two values of a pair, and neighbouring pairs */
    for (int i = 0; i + 2 < N; i++) {
        lag1 += (x[i] - m1) * (x[i + 1] - m1);
        lag2 += (x[i] - m1) * (x[i + 2] - m1);
    }
    lag1 /= (N - 2) * m2;
    lag2 /= (N - 2) * m2;
    CHECK(fabs(lag1) < 0.012 && fabs(lag2) < 0.012, "normals: correlation with the next value "
          "%.4f, with the one after %.4f, expected 0 +- 0.012", lag1, lag2);
    const double kurt = m4 / (m2 * m2);
    /* standard errors at N = 2e5: mean 0.5/447 = 0.0011, variance 0.25 x 0.0032 = 0.0008,
     * kurtosis sqrt(24/N) = 0.011; a uniform draw has kurtosis 1.8 */
    CHECK(fabs(m1) < 0.006, "normals: mean %.5f, expected 0 +- 0.006", m1);
    CHECK(fabs(m2 - 0.25) < 0.004, "normals: variance %.5f, expected 0.25 +- 0.004", m2);
    CHECK(fabs(kurt - 3.0) < 0.06, "normals: kurtosis %.4f, expected 3 +- 0.06", kurt);
    CHECK(biggest <= 0.5 * 5.78 && biggest > 0.5 * 3.5, "normals: largest |value| %.3f, expected "
          "within (3.5, 5.78] x 0.5", biggest);
    qsort(x, N, sizeof(float), cmp_float);
    double ks = 0;
    for (int i = 0; i < N; i++) {
        const double f = normal_cdf(x[i] / 0.5);
        const double d = fmax(fabs(f - (double)i / N), fabs(f - (double)(i + 1) / N));
        if (d > ks) ks = d;
    }
    /* the 0.1% critical value of the KS distance is 1.95 / sqrt(N) = 0.0044 */
    CHECK(ks < 0.0044, "normals: Kolmogorov-Smirnov distance %.5f to N(0, 0.25), expected < 0.0044",
          ks);

    /* any even chunking draws the same values as one call; an odd tail drops one */
    float whole[300], parts[300];
    spr_rng_seed(&r, 9);
    spr_rng_normals(&r, whole, 300, 1.0f);
    spr_rng_seed(&r, 9);
    for (int c = 0; c < 300; c += 100) spr_rng_normals(&r, parts + c, 100, 1.0f);
    CHECK(memcmp(whole, parts, sizeof whole) == 0, "normals: chunks of 100 differ from one call");
    spr_rng_seed(&r, 9);
    spr_rng_normals(&r, parts, 5, 1.0f);
    CHECK(memcmp(whole, parts, 5 * sizeof(float)) == 0, "normals: an odd n differs in its prefix");

    /* a model's initial weights: the configured scale, and the same for the same seed */
    spr_model_config c = small_config(100, 5000, 0.05f);
    spr_model *a, *b;
    OK(spr_model_create(&c, &a));
    OK(spr_model_create(&c, &b));
    CHECK(params_equal(a, b, 2), "initial weights: two models of one seed differ");
    float *w;
    int64_t rows, cols, stride;
    OK(spr_model_param(a, 1, SPR_PARAM_WEIGHT, &w, &rows, &cols, &stride));
    double s2 = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t q = 0; q < cols; q++) s2 += (double)w[i * stride + q] * w[i * stride + q];
    const double sd = sqrt(s2 / (double)(rows * cols));
    CHECK(fabs(sd - c.init_std) < 0.01 * c.init_std, "initial weights: std %.5f, expected %.3f",
          sd, (double)c.init_std);
    spr_model_free(a);
    spr_model_free(b);
    free(x);
}

/* Thread counts: <= 0 is every core, more than SPR_MAX_THREADS is that many (libgomp
 * failed to create 50,000 threads and exited the process, or crashed). */
static void test_thread_counts(void) {
    CHECK(spr_threads(3) == 3, "3 threads asked, %d given", spr_threads(3));
    CHECK(spr_threads(0) >= 1 && spr_threads(-5) >= 1, "all cores: %d", spr_threads(0));
    CHECK(spr_threads(INT_MAX) == SPR_MAX_THREADS && spr_threads(SPR_MAX_THREADS + 1) == SPR_MAX_THREADS,
          "INT_MAX threads asked, %d given", spr_threads(INT_MAX));
    CHECK(spr_threads_start(3) == 3 && spr_threads_start(0) == spr_threads(0),
          "spr_threads_start: 3 and all cores asked, %d and %d started", spr_threads_start(3),
          spr_threads_start(0));
}

/* A rebuild in a training step (new hash functions, redrawn in place) allocates nothing,
 * also where layer_rehash's scratch outgrows its stack buffers: SimHash with 750 codes
 * (the 670K preset's output layer: 18,048 int32 of work a thread) and BF16 rows wider than
 * 4,096. The tables it leaves are those a reload (which rebuilds from the count) makes:
 * the same sparse predictions. */
static void test_rebuild_allocates_nothing(void) {
    toy t;
    toy_make(&t, 200, 40, 4, 31);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        spr_model_config c = small_config(t.d, t.l, 0.2f);
        c.layers[0].size = bf16 ? 4100 : 32;
        c.layers[1].hash = SPR_HASH_SIMHASH;
        c.layers[1].hash_k = 15;
        c.layers[1].hash_l = 50;
        c.bf16_weights = c.bf16_state = bf16;
        spr_model *m;
        OK(spr_model_create(&c, &m));
        spr_train_options o = spr_train_options_default();
        o.batch_size = 16;
        o.threads = 2;
        o.rehash_first = 1; /* a rehash after every step, each a rebuild */
        o.rehash_growth = 0.0f;
        o.rehash_max = 1;
        o.rebuild_every = 1;
        int64_t rows[16];
        for (int i = 0; i < 16; i++) rows[i] = i;
        OK(spr_model_train_batch(m, t.data, rows, 16, &o, NULL)); /* prepares the scratch */
        const int64_t rebuilds = m->rebuilds;
        const long long before = spr_alloc_calls();
        for (int s = 0; s < 5; s++) {
            for (int i = 0; i < 16; i++) rows[i] = 16 * (s + 1) + i;
            OK(spr_model_train_batch(m, t.data, rows, 16, &o, NULL));
        }
        CHECK(spr_alloc_calls() == before, "bf16 %d: no allocation in 5 steps that rebuild "
              "(%lld calls)", bf16, spr_alloc_calls() - before);
        CHECK(m->rebuilds == rebuilds + 5, "bf16 %d: 5 rebuilds, got %lld", bf16,
              (long long)(m->rebuilds - rebuilds));
        char path[] = "/tmp/sparrow_rebuild_XXXXXX";
        const int fd = mkstemp(path);
        CHECK(fd >= 0, "a temporary file");
        if (fd >= 0) close(fd);
        OK(spr_model_save(m, path));
        spr_model *r;
        OK(spr_model_load(path, &r));
        unlink(path);
        int32_t ia[200 * 3], ib[200 * 3];
        float sa[200 * 3], sb[200 * 3];
        OK(spr_model_predict(m, t.data, NULL, 0, 3, 1, 1, ia, sa));
        OK(spr_model_predict(r, t.data, NULL, 0, 3, 1, 1, ib, sb));
        CHECK(memcmp(ia, ib, sizeof ia) == 0 && memcmp(sa, sb, sizeof sa) == 0,
              "bf16 %d: sparse predictions after in-place rebuilds == after a reload", bf16);
        spr_model_free(r);
        spr_model_free(m);
    }
    toy_free(&t);
}

/* The catch-up of a row that missed s steps (spr_model_catch_up's pass) against s
 * zero-gradient steps of torch.optim.Adam's formula taken one by one in double: weights,
 * moments and the row's bias, for s = 1 (exact), a few, past SPR_CATCH_UP_S, early in training
 * (large bias corrections) and late; in float, with BF16 moments, and with BF16 weights
 * (BF16's 8 bits: 1% of the step, 1e-2 of a moment); and lazy Adam leaves the row alone. */
static void test_catch_up(void) {
    const int stores = 3; /* float, bf16_state, bf16_weights */
    const int64_t cases[][2] = {{1, 0}, {1, 40}, {2, 3}, {7, 100}, {60, 5}, {600, 20}, {3000, 2}};
    for (int store = 0; store < stores; store++)
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
            for (int lazy = 0; lazy < 2; lazy++) {
                const int64_t s = cases[ci][0], t0 = cases[ci][1]; /* missed steps, last step */
                spr_model_config c = spr_model_config_default(20, 30);
                c.layers[0].size = 24;
                c.bf16_state = store >= 1, c.bf16_weights = store == 2;
                spr_model *m;
                OK(spr_model_create(&c, &m));
                spr_train_options o = spr_train_options_default();
                o.lr = 0.01f, o.beta1 = 0.85f, o.beta2 = 0.995f, o.eps = 1e-6f, o.lazy_adam = lazy;
                spr_layer *L = &m->layers[1];
                const int64_t r = 7, off = r * L->stride, n = L->cols;
                double w[64], w_start[64], mm[64], vv[64], b = 0.3, mb = -0.02, vb = 4e-4;
                for (int64_t i = 0; i < n; i++) { /* moments as Adam leaves them: |m| <~ sqrt(v) */
                    w[i] = 0.1 * sin((double)i), vv[i] = 1e-4 * (1.0 + (double)(i % 5));
                    mm[i] = (i % 3 == 0 ? -0.5 : 0.7) * sqrt(vv[i]) * (i == 4 ? 1e-3 : 1.0);
                }
                for (int64_t i = 0; i < n; i++) { /* stored as the model stores them */
                    if (L->w16) L->w16[off + i] = spr_bf16_from_f32((float)w[i]);
                    else L->w[off + i] = (float)w[i];
                    if (L->mw16) {
                        L->mw16[off + i] = spr_bf16_from_f32((float)mm[i]);
                        L->vw16[off + i] = spr_bf16_from_f32((float)vv[i]);
                        mm[i] = spr_f32_from_bf16(L->mw16[off + i]), vv[i] = spr_f32_from_bf16(L->vw16[off + i]);
                    } else {
                        L->mw[off + i] = (float)mm[i], L->vw[off + i] = (float)vv[i];
                    }
                    w[i] = w_start[i] = L->w16 ? spr_f32_from_bf16(L->w16[off + i]) : L->w[off + i];
                }
                L->b[r] = (float)b, L->mb[r] = (float)mb, L->vb[r] = (float)vb;
                L->last_step[r] = t0;
                m->steps = t0 + s; /* the step about to run is t0 + s + 1 */
                OK(spr_model_catch_up(m, &o));
                for (int64_t u = t0 + 1; u <= t0 + s; u++) { /* torch.optim.Adam, g = 0 */
                    const double bc1 = 1.0 - pow(o.beta1, (double)u), bc2 = 1.0 - pow(o.beta2, (double)u);
                    for (int64_t i = 0; i < n; i++) {
                        mm[i] *= o.beta1, vv[i] *= o.beta2;
                        w[i] -= o.lr * (mm[i] / bc1) / (sqrt(vv[i] / bc2) + o.eps);
                    }
                    mb *= o.beta1, vb *= o.beta2;
                    b -= o.lr * (mb / bc1) / (sqrt(vb / bc2) + o.eps);
                }
                const double tol = store ? 1e-2 : 2e-5; /* BF16 moments: 8 bits, rounded stochastically */
                double err_w = 0, err_m = 0, err_v = 0, moved = 0, w_ulps = 0;
                for (int64_t i = 0; i < n; i++) {
                    const double gw = L->w16 ? spr_f32_from_bf16(L->w16[off + i]) : L->w[off + i];
                    const double gm = L->mw16 ? spr_f32_from_bf16(L->mw16[off + i]) : L->mw[off + i];
                    const double gv = L->vw16 ? spr_f32_from_bf16(L->vw16[off + i]) : L->vw[off + i];
                    moved = fmax(moved, fabs(w[i] - w_start[i]));
                    err_w = fmax(err_w, fabs(gw - w[i]));
                    w_ulps = fmax(w_ulps, fabs(gw - w[i]) / (fabs(w[i]) / 128.0 + 1e-12)); /* BF16 steps */
                    err_m = fmax(err_m, fabs(gm - mm[i]) / (fabs(mm[i]) + 1e-30));
                    err_v = fmax(err_v, fabs(gv - vv[i]) / (fabs(vv[i]) + 1e-30));
                }
                /* the weights' error against the largest move (a float weight rounds to 6e-8
                 * of itself, a BF16 one, stochastically, to within one of its steps) */
                err_w = L->w16 ? (w_ulps <= 1.0 ? 0.0 : w_ulps) : err_w / moved;
                const double err_b = fabs(L->b[r] - b) / fabs(b - 0.3);
                if (lazy) {
                    int same = 1;
                    for (int64_t i = 0; i < n; i++)
                        same &= (L->w16 ? spr_f32_from_bf16(L->w16[off + i]) : L->w[off + i]) == (float)w_start[i];
                    CHECK(same && L->b[r] == 0.3f && L->last_step[r] == t0,
                          "store %d, lazy, %lld missed steps: the row stays, its last step %lld (got %lld)",
                          store, (long long)s, (long long)t0, (long long)L->last_step[r]);
                } else {
                    CHECK(err_w < tol && err_m < tol && err_v < tol && err_b < fmax(tol, 2e-5) && moved > 1e-6 &&
                              L->last_step[r] == t0 + s,
                          "store %d, %lld steps missed after step %lld: catch-up against Adam's zero-gradient "
                          "steps: rel err w %.2g (of the move %.2g), m %.2g, v %.2g, bias %.2g (tolerance %g); "
                          "last step %lld",
                          store, (long long)s, (long long)t0, err_w, moved, err_m, err_v, err_b, tol,
                          (long long)L->last_step[r]);
                }
                spr_model_free(m);
            }
}

/* spr_model_catch_up (the end of an epoch): after a few sampled steps, every row of every
 * layer that owes steps takes them, as Adam's zero-gradient steps written out in double
 * precision from the same state move them; rows that owe none stay bit for bit; a second
 * call and a lazy one change nothing; training then goes on as without it but for rounding. */
static void test_model_catch_up(void) {
    toy t;
    toy_make(&t, 96, 40, 4, 17);
    const spr_model_config c = small_config(t.d, t.l, 0.15f);
    spr_train_options o = spr_train_options_default();
    o.threads = 1, o.batch_size = 8, o.lr = 0.01f, o.beta1 = 0.85f, o.beta2 = 0.995f, o.eps = 1e-6f;
    spr_model *a, *b;
    OK(spr_model_create(&c, &a));
    OK(spr_model_create(&c, &b));
    for (int step = 0; step < 9; step++) {
        int64_t rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (step * 8 + i) % t.n;
        spr_batch_stats st;
        OK(spr_model_train_batch(a, t.data, rows, 8, &o, &st));
        OK(spr_model_train_batch(b, t.data, rows, 8, &o, &st));
    }
    CHECK(params_equal(a, b, 2), "catch-up: two runs of the same steps agree");
    OK(spr_model_catch_up(a, &o));
    const int64_t T = a->steps;
    int64_t owed[2] = {0, 0};
    double err = 0.0;
    int stayed = 1, last_ok = 1;
    for (int l = 0; l < 2; l++) {
        const spr_layer *LA = &a->layers[l], *LB = &b->layers[l];
        for (int64_t r = 0; r < LB->rows; r++) {
            const int64_t t0 = LB->last_step[r], off = r * LB->stride;
            last_ok &= LA->last_step[r] == T;
            if (t0 >= T) { /* owed nothing: untouched */
                stayed &= memcmp(LA->w + off, LB->w + off, (size_t)LB->cols * sizeof(float)) == 0;
                continue;
            }
            int any = 0;
            for (int64_t i = 0; i < LB->cols; i++) any |= LB->mw[off + i] != 0.0f;
            owed[l] += any;
            double moved = 0.0, err_w = 0.0;
            for (int64_t i = 0; i < LB->cols; i++) { /* Adam, g = 0, steps t0 + 1 .. T */
                double w = LB->w[off + i], mm = LB->mw[off + i], vv = LB->vw[off + i];
                const double w0 = w;
                for (int64_t u = t0 + 1; u <= T; u++) {
                    const double bc1 = 1.0 - pow(o.beta1, (double)u), bc2 = 1.0 - pow(o.beta2, (double)u);
                    mm *= o.beta1, vv *= o.beta2;
                    w -= o.lr * (mm / bc1) / (sqrt(vv / bc2) + o.eps);
                }
                moved = fmax(moved, fabs(w - w0));
                err_w = fmax(err_w, fabs(LA->w[off + i] - w));
                err = fmax(err, fabs(LA->mw[off + i] - mm) / fmax(fabs(mm), 1e-30));
                err = fmax(err, fabs(LA->vw[off + i] - vv) / fmax(fabs(vv), 1e-30));
            }
            if (any) err = fmax(err, err_w / moved); /* against the row's largest move */
        }
    }
    CHECK(owed[0] > 0 && owed[1] > 0, "catch-up: rows of both layers owed steps (%lld, %lld)",
          (long long)owed[0], (long long)owed[1]);
    CHECK(err < 1e-4, "catch-up: owed rows against Adam's zero-gradient steps: rel err %.2g", err);
    CHECK(stayed && last_ok, "catch-up: rows that owed nothing stay; every row's last step is %lld",
          (long long)T);

    /* a second call changes nothing; with lazy Adam nothing owes anything */
    float *w_before;
    int64_t rows_w, cols_w, stride_w;
    OK(spr_model_param(a, 1, SPR_PARAM_WEIGHT, &w_before, &rows_w, &cols_w, &stride_w));
    float *copy = malloc((size_t)(rows_w * stride_w) * sizeof(float));
    memcpy(copy, w_before, (size_t)(rows_w * stride_w) * sizeof(float));
    OK(spr_model_catch_up(a, &o));
    CHECK(memcmp(copy, w_before, (size_t)(rows_w * stride_w) * sizeof(float)) == 0,
          "catch-up: a second call changes nothing");
    spr_train_options ol = o;
    ol.lazy_adam = 1;
    float *wb;
    OK(spr_model_param(b, 1, SPR_PARAM_WEIGHT, &wb, NULL, NULL, NULL));
    memcpy(copy, wb, (size_t)(rows_w * stride_w) * sizeof(float));
    OK(spr_model_catch_up(b, &ol));
    CHECK(memcmp(copy, wb, (size_t)(rows_w * stride_w) * sizeof(float)) == 0,
          "catch-up: with lazy_adam it changes nothing");
    free(copy);

    /* what it leaves is a model like any other: saved and loaded, it trains on alike */
    char path[] = "/tmp/sparrow_test_catch_up_XXXXXX";
    const int fd = mkstemp(path);
    CHECK(fd >= 0, "catch-up: a temporary file");
    if (fd >= 0) close(fd);
    OK(spr_model_save(a, path));
    spr_model *c2;
    OK(spr_model_load(path, &c2));
    remove(path);
    for (int step = 9; step < 12; step++) {
        int64_t rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (step * 8 + i) % t.n;
        spr_batch_stats st;
        OK(spr_model_train_batch(a, t.data, rows, 8, &o, &st));
        OK(spr_model_train_batch(c2, t.data, rows, 8, &o, &st));
    }
    CHECK(params_equal(a, c2, 2), "catch-up: a caught-up model saved, loaded and trained on as itself");
    spr_model_free(c2);

    spr_train_options bad = o;
    bad.beta2 = 1.0f;
    CHECK(spr_model_catch_up(a, &bad) == SPR_STATUS_BAD_INPUT && spr_model_catch_up(NULL, &o) == SPR_STATUS_BAD_INPUT &&
              spr_model_catch_up(a, NULL) == SPR_STATUS_BAD_INPUT,
          "catch-up: bad options and NULL are refused");
    /* beta1^2 >= beta2: the missed steps have no closed form; lazy Adam trains */
    bad = o, bad.beta1 = 0.9f, bad.beta2 = 0.8f;
    int64_t rows[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    spr_batch_stats st;
    CHECK(spr_model_catch_up(a, &bad) == SPR_STATUS_BAD_INPUT &&
              spr_model_train_batch(a, t.data, rows, 8, &bad, &st) == SPR_STATUS_BAD_INPUT &&
              strstr(spr_last_error(), "beta1^2 < beta2") != NULL,
          "catch-up: beta1 0.9, beta2 0.8 refused (%s)", spr_last_error());
    bad.lazy_adam = 1;
    CHECK(spr_model_train_batch(a, t.data, rows, 8, &bad, &st) == SPR_STATUS_OK &&
              spr_model_catch_up(a, &bad) == SPR_STATUS_OK,
          "catch-up: lazy Adam trains with beta1 0.9, beta2 0.8");
    spr_model_free(a);
    spr_model_free(b);

    /* beta1 0 (no momentum): nothing to catch up on, and nothing may turn NaN */
    spr_train_options o0 = o;
    o0.beta1 = 0.0f;
    spr_model *z;
    OK(spr_model_create(&c, &z));
    for (int step = 0; step < 6; step++) {
        int64_t rows0[8];
        for (int i = 0; i < 8; i++) rows0[i] = (step * 8 + i) % t.n;
        spr_batch_stats s0;
        OK(spr_model_train_batch(z, t.data, rows0, 8, &o0, &s0));
    }
    OK(spr_model_catch_up(z, &o0));
    int finite = 1;
    for (int l = 0; l < 2; l++)
        for (int64_t i = 0; i < z->layers[l].rows * z->layers[l].stride; i++) finite &= isfinite(z->layers[l].w[i]);
    CHECK(finite, "catch-up: beta1 0 leaves every weight finite");
    spr_model_free(z);
    toy_free(&t);
}

/* Inference on a model whose rows owe Adam steps (inside an epoch: --eval-every, fit's
 * validation) scores what the settled model scores, bit for bit, without writing the
 * model: exact and sparse predictions, recall, on 1 and 2 threads, for float, BF16
 * moments, BF16 weights and a middle hidden layer; training then goes on as a run nobody
 * evaluated (before session 29 such evaluations scored the rows as stored). */
static int predictions_equal(const int32_t *ia, const float *sa, const int32_t *ib, const float *sb,
                             int64_t n) {
    return memcmp(ia, ib, (size_t)n * sizeof *ia) == 0 && memcmp(sa, sb, (size_t)n * sizeof *sa) == 0;
}

/* Every row's weights, moments and biases of a and b (float or BF16) and last steps
 * agree bit for bit. */
static int state_equal(const spr_model *a, const spr_model *b) {
    for (int l = 0; l < a->n_layers; l++) {
        const spr_layer *A = &a->layers[l], *B = &b->layers[l];
        const size_t n = (size_t)(A->rows * A->stride);
        int same = (A->w16 ? memcmp(A->w16, B->w16, n * 2) : memcmp(A->w, B->w, n * 4)) == 0;
        same &= (A->mw16 ? memcmp(A->mw16, B->mw16, n * 2) == 0 && memcmp(A->vw16, B->vw16, n * 2) == 0
                         : memcmp(A->mw, B->mw, n * 4) == 0 && memcmp(A->vw, B->vw, n * 4) == 0);
        same &= memcmp(A->b, B->b, (size_t)A->size * 4) == 0 && memcmp(A->mb, B->mb, (size_t)A->size * 4) == 0 &&
                memcmp(A->vb, B->vb, (size_t)A->size * 4) == 0;
        same &= memcmp(A->last_step, B->last_step, (size_t)A->rows * sizeof *A->last_step) == 0;
        if (!same) return 0;
    }
    return 1;
}

static void test_settled_inference(void) {
    toy t;
    toy_make(&t, 96, 40, 4, 23);
    const int K = 5;
    const int64_t nk = t.n * K;
    int32_t *ids[4];
    float *scores[4];
    for (int q = 0; q < 4; q++) ids[q] = malloc((size_t)nk * 4), scores[q] = malloc((size_t)nk * 4);
    for (int variant = 0; variant < 4; variant++) {
        static const char *const names[] = {"float", "BF16 moments", "BF16 weights", "three layers"};
        const char *what = names[variant];
        spr_model_config c = small_config(t.d, t.l, 0.15f);
        if (variant == 1 || variant == 2) c.bf16_state = 1;
        if (variant == 2) c.bf16_weights = 1;
        if (variant == 3) {
            c.n_layers = 3;
            c.layers[2] = c.layers[1];
            c.layers[1] = c.layers[0];
            c.layers[1].size = 12;
        }
        const int nl = c.n_layers;
        spr_train_options o = spr_train_options_default();
        o.threads = 1, o.batch_size = 8, o.lr = 0.01f;
        spr_model *a, *b, *u; /* evaluated unsettled; settled; never evaluated */
        OK(spr_model_create(&c, &a));
        OK(spr_model_create(&c, &b));
        OK(spr_model_create(&c, &u));
        for (int step = 0; step < 9; step++) {
            int64_t rows[8];
            for (int i = 0; i < 8; i++) rows[i] = (step * 13 + i) % t.n;
            spr_batch_stats st;
            OK(spr_model_train_batch(a, t.data, rows, 8, &o, &st));
            OK(spr_model_train_batch(b, t.data, rows, 8, &o, &st));
            OK(spr_model_train_batch(u, t.data, rows, 8, &o, &st));
        }
        /* rows as stored against rows as settled, for point 0: some logit must differ, or
         * the rest proves nothing */
        spr_settled on, off = {a, 0, 0, 0, NULL};
        OK(spr_settled_init(&on, a));
        CHECK(on.on, "%s: rows owe steps after 9 steps", what);
        void *buf = spr_alloc(spr_settled_buf_bytes(&on));
        const spr_layer *Lo = &a->layers[nl - 1];
        float ha[64], hb[64], hid[64], *h;
        spr_model_hidden_dense(a, &on, buf, &t.data->view, 0, ha, hb, &h);
        memcpy(hid, h, (size_t)Lo->fan_in * sizeof(float));
        spr_model_hidden_dense(a, &off, NULL, &t.data->view, 0, ha, hb, &h);
        int differ = 0;
        for (int64_t j = 0; j < Lo->size; j++) {
            float bias;
            const spr_row_at at = spr_settled_row(&on, Lo, j, buf, &bias);
            differ |= bias + spr_row_at_dot(Lo, &at, hid) != Lo->b[j] + spr_layer_dot(Lo, j, h);
        }
        CHECK(differ, "%s: the owed steps change point 0's logits (else this test proves nothing)", what);
        spr_free(buf);
        spr_settled_free(&on);

        for (int threads = 1; threads <= 2; threads++) {
            OK(spr_model_predict(a, t.data, NULL, 0, K, 0, threads, ids[0], scores[0]));
            OK(spr_model_predict(a, t.data, NULL, 0, K, 1, threads, ids[1], scores[1]));
            if (threads == 1) OK(spr_model_settle(b, 1));
            OK(spr_model_predict(b, t.data, NULL, 0, K, 0, threads, ids[2], scores[2]));
            OK(spr_model_predict(b, t.data, NULL, 0, K, 1, threads, ids[3], scores[3]));
            CHECK(predictions_equal(ids[0], scores[0], ids[2], scores[2], nk),
                  "%s, %d threads: exact predictions of the unsettled model are the settled one's",
                  what, threads);
            CHECK(predictions_equal(ids[1], scores[1], ids[3], scores[3], nk),
                  "%s, %d threads: sparse predictions of the unsettled model are the settled one's",
                  what, threads);
        }
        /* loaded: the file of the unsettled model predicts as the settled one, and that of
         * the settled one owes nothing (no settled reading: its earliest last step) */
        char path[] = "/tmp/sparrow_test_settled_XXXXXX";
        const int fd = mkstemp(path);
        CHECK(fd >= 0, "%s: a temporary file", what);
        if (fd >= 0) close(fd);
        spr_model *la, *lb;
        OK(spr_model_save(a, path));
        OK(spr_model_load(path, &la));
        OK(spr_model_save(b, path));
        OK(spr_model_load(path, &lb));
        remove(path);
        OK(spr_model_predict(la, t.data, NULL, 0, K, 0, 2, ids[0], scores[0]));
        CHECK(predictions_equal(ids[0], scores[0], ids[2], scores[2], nk),
              "%s: the unsettled model's file predicts as the settled model", what);
        spr_settled sa, sb;
        OK(spr_settled_init(&sa, la));
        OK(spr_settled_init(&sb, lb));
        CHECK(sa.on && !sb.on && lb->settled_step == lb->steps,
              "%s: loaded, the unsettled model owes steps (%d), the settled one none (%d)", what,
              sa.on, sb.on);
        spr_settled_free(&sa), spr_settled_free(&sb);
        spr_model_free(la), spr_model_free(lb);
        double ra, rb;
        OK(spr_model_sampling_recall(a, t.data, NULL, 0, 3, 1, &ra));
        OK(spr_model_sampling_recall(b, t.data, NULL, 0, 3, 1, &rb));
        CHECK(ra == rb, "%s: recall of the unsettled model %.6f is the settled one's %.6f", what, ra, rb);
        CHECK(state_equal(a, u), "%s: inference wrote nothing into the model", what);
        CHECK(!state_equal(a, b), "%s: settling moved rows (else this test proves nothing)", what);
        for (int step = 9; step < 12; step++) {
            int64_t rows[8];
            for (int i = 0; i < 8; i++) rows[i] = (step * 13 + i) % t.n;
            spr_batch_stats st;
            OK(spr_model_train_batch(a, t.data, rows, 8, &o, &st));
            OK(spr_model_train_batch(u, t.data, rows, 8, &o, &st));
        }
        CHECK(state_equal(a, u), "%s: training goes on as if nothing had been evaluated", what);
        spr_model_free(a), spr_model_free(b), spr_model_free(u);
    }
    for (int q = 0; q < 4; q++) free(ids[q]), free(scores[q]);
    toy_free(&t);
}

/* Under an address-space limit (ulimit -v) a little above what a model needs, libgomp
 * could not create its threads (8 MB of stack each) at the first parallel region, which
 * came after the model's memory, and ended the process with "Thread creation failed"
 * (exit 1): a Python session gone with it. spr_model_alloc starts them first
 * (spr_threads_start), so that the model's own allocation fails instead, as a status.
 * A child a limit, 1 MB apart from the mapped size to 48 MB above it: each creates a
 * model and trains a batch on all cores, and ends 0 (trained), 3 (NO_MEMORY) or 4
 * (another status); 1 (libgomp) only below every limit where sparrow answered. Runs first, before this process starts libgomp's threads
 * (a child forked after that would not have them). Not under ASan or TSan (their shadow
 * memory needs terabytes of address space). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SPR_TEST_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SPR_TEST_SANITIZER 1
#endif
#endif
static void test_threads_before_memory(void) {
#ifdef SPR_TEST_SANITIZER
    printf("test_network: the address-space limit sweep is skipped under a sanitizer\n");
#else
    toy t;
    toy_make(&t, 64, 2000, 2, 11);
    spr_model_config c = small_config(t.d, t.l, 0.05f);
    c.layers[0].size = 256; /* a few MB of model: the limit falls inside it, and beside it */
    int64_t rows[16];
    for (int i = 0; i < 16; i++) rows[i] = i;
    int counts[6] = {0};
    fflush(stdout);
    for (int mb = 0; mb <= 48; mb++) {
        pid_t child = fork();
        if (child == 0) {
            if (check_limit_address_space((size_t)mb << 20) != 0) _exit(5);
            if (!freopen("/dev/null", "w", stderr)) _exit(5); /* libgomp's words: the exit code says it */
            spr_model *m = NULL;
            spr_train_options o = spr_train_options_default();
            o.threads = 0; /* all cores: the threads spr_model_alloc starts */
            o.batch_size = 16;
            spr_status st = spr_model_create(&c, &m);
            if (!st) st = spr_model_train_batch(m, t.data, rows, 16, &o, NULL);
            spr_model_free(m);
            _exit(st == SPR_STATUS_OK ? 0 : st == SPR_STATUS_NO_MEMORY ? 3 : 4);
        }
        int status = 0;
        waitpid(child, &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        /* libgomp may fail below the room of one stack, at spr_threads_start, before any
         * of the model's memory: never above a limit where sparrow answered itself. */
        const int own = counts[0] + counts[3] > 0;
        CHECK(code == 0 || code == 3 || (code == 1 && !own),
              "a limit %d MB above the mapped size: child exit %d (1: libgomp could not create a thread "
              "after the model took the room; 4: a status other than NO_MEMORY; 5: the test's set-up)",
              mb, code);
        if (code == 0 || code == 3) counts[code]++;
    }
    CHECK(counts[0] > 0 && counts[3] > 0, "the sweep should cover both sides: %d trained, %d out of memory",
          counts[0], counts[3]);
    toy_free(&t);
#endif
}

/* A child forked after sparrow's threads ran (a Python multiprocessing worker, a
 * preforking server's) trains and predicts on all its threads and gives the parent's
 * answers; it used to wait forever in its first region for the parent's libgomp workers,
 * which a fork does not copy (SIGALRM here, exit 142). Every fork releases the forking
 * thread's workers first; a fork inside a parallel region, where they cannot be released,
 * leaves a child that runs sparrow on one thread. The parent keeps its threads. */
static int child_status(pid_t child) {
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_threads_after_fork(void) {
    toy t;
    toy_make(&t, 64, 40, 2, 13);
    spr_model_config c = small_config(t.d, t.l, 0.25f);
    spr_model *m = NULL;
    spr_train_options o = spr_train_options_default();
    o.threads = 2, o.batch_size = 16;
    int64_t rows[16];
    for (int i = 0; i < 16; i++) rows[i] = i;
    int32_t ids[64 * 3], child_ids[64 * 3];
    float scores[64 * 3];
    OK(spr_model_create(&c, &m));
    CHECK(spr_threads_start(2) == 2 && !spr_threads_forked(), "the parent: 2 threads started");
    OK(spr_model_train_batch(m, t.data, rows, 16, &o, NULL));
    OK(spr_model_predict(m, t.data, NULL, 0, 3, 0, 2, ids, scores));
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        alarm(60); /* a hang ends the child with SIGALRM */
        int code = !spr_threads_forked() && spr_threads(0) >= 1 && spr_threads_start(2) == 2 ? 0 : 6;
        spr_status st = spr_model_predict(m, t.data, NULL, 0, 3, 0, 2, child_ids, scores);
        if (!st && write(fds[1], child_ids, sizeof child_ids) != (ssize_t)sizeof child_ids) code = 7;
        if (!st) st = spr_model_train_batch(m, t.data, rows, 16, &o, NULL);
        if (!st) st = spr_model_catch_up(m, &o);
        _exit(st ? 8 : code);
    }
    close(fds[1]);
    memset(child_ids, 0xff, sizeof child_ids);
    size_t got = 0;
    while (got < sizeof child_ids) {
        ssize_t r = read(fds[0], (char *)child_ids + got, sizeof child_ids - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fds[0]);
    int code = child_status(child);
    CHECK(code == 0,
          "a child forked after the threads ran: exit %d (142: hung in libgomp; 6: not on its 2 "
          "threads; 7, 8: its predictions or training failed)", code);
    CHECK(got == sizeof child_ids && !memcmp(ids, child_ids, sizeof ids),
          "the forked child's predictions differ from the parent's (%zu bytes read)", got);
    CHECK(!spr_threads_forked() && spr_threads(3) == 3 && spr_threads_start(2) == 2,
          "the parent keeps its threads after the fork");

    /* Forked inside a parallel region (the workers busy, not released): one thread. */
    int in_region = -1;
#pragma omp parallel num_threads(2)
    {
#pragma omp barrier
        if (omp_get_thread_num() == 0) {
            fflush(stdout);
            pid_t c2 = fork();
            if (c2 == 0) {
                alarm(60);
                int ok = spr_threads_forked() && spr_threads(0) == 1 && spr_threads(4) == 1;
                spr_status st = spr_model_predict(m, t.data, NULL, 0, 3, 0, 2, child_ids, scores);
                _exit(st ? 8 : ok && !memcmp(ids, child_ids, sizeof ids) ? 0 : 6);
            }
            in_region = child_status(c2);
        }
    }
    CHECK(in_region == 0,
          "a child forked inside a parallel region: exit %d (142: hung; 6: not on one thread or "
          "other predictions; 8: predict failed)", in_region);
    CHECK(!spr_threads_forked() && spr_threads_start(2) == 2, "the parent keeps its threads");
    spr_model_free(m);
    toy_free(&t);
}

int main(void) {
    test_threads_before_memory();
    test_catch_up();
    test_model_catch_up();
    test_settled_inference();
    test_thread_counts();
    test_threads_after_fork();
    test_initial_weights();
    test_selection_set();
    test_bf16_state();
    test_bf16_weights();
    test_sampled_equals_dense();
    test_deferred_equals_accumulated();
    test_clipped_deferred();
    test_fused_random_shapes();
    test_shared_random();
    test_deferred_threads();
    test_fused_threads();
    test_gradient_check();
    test_lazy_adam_and_active_sets();
    test_learns_and_reproduces();
    test_rebuild_allocates_nothing();
    test_sparse_inference_covers_exact();
    test_exact_inference_brute_force();
    test_selection_strategies();
    test_rank_selection(42);
    test_memory_estimate();
    test_wide_tables();
    test_gradient_clipping();
    test_optimizer_accounting();
    test_reserved_gradient_rows();
    test_bad_arguments();
    return CHECK_DONE("test_network");
}

/*
 * test_external.c: the output layer driven by dense inputs (src/external.c, used by
 * sparrow.torch): loss and dLoss/dinput against a double-precision reference and
 * finite differences, the Adam step, the sampled active-set size, exact and sparse
 * prediction against brute force, and bad arguments. Seeds are fixed and printed.
 */
#include "check.h"
#include "common.h"
#include "model.h" /* the BF16 moments, which the public API does not hand out */
#include "sparrow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { IN = 12, OUT = 40, N = 5 };

static spr_model *make_bf16(float sparsity, uint64_t seed, int bf16) {
    spr_model_config c = spr_model_config_default(1, OUT);
    c.layers[0].size = IN; /* placeholder: only the output layer is used */
    c.layers[1].sparsity = sparsity;
    c.layers[1].hash_l = 8;
    c.init_std = 0.3f;
    c.seed = seed;
    c.bf16_state = bf16 >= 1; /* 2: the weights too */
    c.bf16_weights = bf16 == 2;
    spr_model *m = NULL;
    if (spr_model_create(&c, &m)) printf("create: %s\n", spr_last_error());
    return m;
}

static spr_model *make(float sparsity, uint64_t seed) { return make_bf16(sparsity, seed, 0); }

/* v16 is a stochastic rounding of the float v: v itself if v is a BF16 value, else one of
 * its two BF16 neighbours. */
static int sr_neighbour(uint16_t v16, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return v16 == (uint16_t)(u >> 16) || ((u & 0xFFFFu) && v16 == (uint16_t)((u >> 16) + 1));
}

/* bf16_state on this path: from zero moments the first step gives the float model's
 * weights and input gradient bit for bit and its moments rounded to BF16 (v stochastically). */
static void test_bf16_first_step(const float *x, const int64_t *ptr, const int32_t *lab, uint64_t seed) {
    spr_model *mf = make_bf16(0.25f, seed, 0), *mb = make_bf16(0.25f, seed, 1);
    if (!mf || !mb) {
        CHECK(0, "bf16: expected two models");
        goto out;
    }
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.lr = 0.01f;
    float gf[N * IN], gb[N * IN];
    spr_status s1 = spr_model_output_train(mf, x, N, ptr, lab, &o, gf, NULL);
    spr_status s2 = spr_model_output_train(mb, x, N, ptr, lab, &o, gb, NULL);
    CHECK(s1 == SPR_STATUS_OK && s2 == SPR_STATUS_OK, "bf16: output_train: expected OK, got %d %d (%s)", s1,
          s2, spr_last_error());
    const spr_layer *F = &mf->layers[1], *B = &mb->layers[1];
    int64_t bad_m = 0, nonzero = 0;
    for (int64_t r = 0; r < F->rows; r++)
        for (int64_t q = 0; q < F->cols; q++) {
            int64_t i = r * F->stride + q;
            bad_m += B->mw16[i] != spr_bf16_from_f32(F->mw[i]) || !sr_neighbour(B->vw16[i], F->vw[i]);
            nonzero += B->vw16[i] != 0;
        }
    CHECK(bad_m == 0 && nonzero > 0, "bf16 first step: expected the float moments rounded (some non-zero), got "
          "%lld differing, %lld non-zero", (long long)bad_m, (long long)nonzero);
    CHECK(memcmp(F->w, B->w, (size_t)(F->rows * F->stride) * sizeof(float)) == 0 &&
              memcmp(gf, gb, sizeof gf) == 0,
          "bf16 first step: expected the float model's weights and input gradient bit for bit");
out:
    spr_model_free(mf);
    spr_model_free(mb);
}

/* Exact loss (batch mean, target spread over the labels) in double. */
static double ref_loss(spr_model *m, const float *x, const int64_t *ptr, const int32_t *lab) {
    float *w, *b;
    int64_t r, c, stride, bs;
    spr_model_param(m, 1, SPR_PARAM_WEIGHT, &w, &r, &c, &stride);
    spr_model_param(m, 1, SPR_PARAM_BIAS, &b, NULL, NULL, &bs);
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        double z[OUT], zmax = -INFINITY, sum = 0.0;
        for (int j = 0; j < OUT; j++) {
            z[j] = b[j];
            for (int k = 0; k < IN; k++) z[j] += (double)w[j * stride + k] * x[i * IN + k];
            if (z[j] > zmax) zmax = z[j];
        }
        for (int j = 0; j < OUT; j++) sum += exp(z[j] - zmax);
        int64_t nl = ptr[i + 1] - ptr[i];
        for (int64_t p = ptr[i]; p < ptr[i + 1]; p++)
            total -= (z[lab[p]] - zmax - log(sum)) / (double)nl;
    }
    return total / N;
}

/* The output layer's arrays of a and b hold the same bits (weights and moments, float
 * or BF16, biases and theirs, each row's last step). */
static int output_equal(const spr_model *a, const spr_model *b) {
    const spr_layer *x = &a->layers[1], *y = &b->layers[1];
    const size_t nw = (size_t)x->rows * (size_t)x->stride, nb = (size_t)x->size * sizeof(float);
    const int moments = x->mw16 ? !memcmp(x->mw16, y->mw16, nw * 2) && !memcmp(x->vw16, y->vw16, nw * 2)
                                : !memcmp(x->mw, y->mw, nw * 4) && !memcmp(x->vw, y->vw, nw * 4);
    const int weights = x->w16 ? !memcmp(x->w16, y->w16, nw * 2) : !memcmp(x->w, y->w, nw * 4);
    return moments && weights && !memcmp(x->b, y->b, nb) &&
           !memcmp(x->mb, y->mb, nb) && !memcmp(x->vb, y->vb, nb) &&
           !memcmp(x->last_step, y->last_step, (size_t)x->rows * sizeof *x->last_step);
}

/* A sampled layer takes the fused step (train.c: logits a row at a time for the batch,
 * dLoss/dinput formed in the optimizer's row pass, no gradient rows); with one thread it
 * is the per-sample path (m->per_sample, the twin) bit for bit: the gradient handed back,
 * the loss, the weights and moments (float, BF16 moments, BF16 weights), over steps that
 * leave rows owing (the catch-up) and a row without labels. Two threads: the same rows
 * (each row's entries stay in sample order), the gradient to rounding (its threads' parts
 * summed in thread order). Clipped (a norm that binds): the first gradient handed back
 * bit for bit (clipping scales the layer's own gradient only), the layer to the rounding
 * of the norm (summed in another order), and far from the unclipped layer. */
static void test_fused_equals_per_sample(const float *x, const int64_t *ptr, const int32_t *lab,
                                         uint64_t seed) {
    for (int bf16 = 0; bf16 <= 2; bf16++) { /* float, BF16 moments, BF16 weights too */
        spr_model *a = make_bf16(0.25f, seed + 2, bf16), *b = make_bf16(0.25f, seed + 2, bf16),
                  *c = make_bf16(0.25f, seed + 2, bf16);
        if (!a || !b || !c) {
            CHECK(0, "fused: expected three models");
            return;
        }
        spr_train_options o = spr_train_options_default(), ob, oc;
        o.threads = 1;
        o.lr = 0.01f;
        ob = o;
        b->per_sample = 1;
        oc = o, oc.threads = 2;
        float ga[N * IN], gb[N * IN], gc[N * IN];
        double worst = 0.0;
        int same = 1;
        for (int step = 0; step < 4; step++) {
            /* (the batch's first rows only in step 1: the other rows' labels miss steps) */
            const int64_t n = step == 1 ? 2 : N;
            spr_batch_stats sa, sb, sc;
            const spr_status s1 = spr_model_output_train(a, x, n, ptr, lab, &o, ga, &sa),
                             s2 = spr_model_output_train(b, x, n, ptr, lab, &ob, gb, &sb),
                             s3 = spr_model_output_train(c, x, n, ptr, lab, &oc, gc, &sc);
            CHECK(!s1 && !s2 && !s3, "fused, step %d: expected OK, got %d %d %d (%s)", step, s1, s2, s3,
                  spr_last_error());
            same &= !memcmp(ga, gb, (size_t)(n * IN) * sizeof(float)) && sa.loss == sb.loss &&
                    sa.active[1] == sb.active[1];
            for (int64_t i = 0; i < n * IN; i++) worst = fmax(worst, fabs((double)ga[i] - gc[i]));
        }
        CHECK(same && output_equal(a, b),
              "bf16 state %d: the fused step against the per-sample one: expected the same "
              "gradients, losses and output layer bit for bit", bf16);
        CHECK(a->fused_steps == 4 && b->fused_steps == 0 && !a->layers[1].gw_ready && b->layers[1].gw_ready,
              "bf16 state %d: expected 4 fused steps without gradient rows, and the per-sample "
              "path with them; got %lld / %lld steps, gradient rows %d / %d", bf16,
              (long long)a->fused_steps, (long long)b->fused_steps, a->layers[1].gw_ready,
              b->layers[1].gw_ready);
        CHECK(output_equal(a, c) && worst <= 1e-6,
              "bf16 state %d: the fused step on 2 threads: expected the 1-thread rows bit for "
              "bit and its gradient to 1e-6, got %s rows, gradient diff %g", bf16,
              output_equal(a, c) ? "the same" : "other", worst);
        spr_model_free(a);
        spr_model_free(b);
        spr_model_free(c);
    }
    /* clipped, float: fused (a) against the per-sample twin (b) and unclipped (c) */
    spr_model *a = make(0.25f, seed + 3), *b = make(0.25f, seed + 3), *c = make(0.25f, seed + 3);
    if (!a || !b || !c) {
        CHECK(0, "fused, clipped: expected three models");
        return;
    }
    b->per_sample = 1;
    spr_train_options o = spr_train_options_default(), on;
    o.threads = 1;
    o.lr = 0.01f;
    o.clip_norm = 0.01f;
    on = o, on.clip_norm = 0.0f;
    float ga[N * IN], gb[N * IN], gc[N * IN];
    int same = 1;
    for (int step = 0; step < 4; step++) {
        const int64_t n = step == 1 ? 2 : N;
        spr_batch_stats sa, sb;
        const spr_status s1 = spr_model_output_train(a, x, n, ptr, lab, &o, ga, &sa),
                         s2 = spr_model_output_train(b, x, n, ptr, lab, &o, gb, &sb),
                         s3 = spr_model_output_train(c, x, n, ptr, lab, &on, gc, NULL);
        CHECK(!s1 && !s2 && !s3, "fused, clipped, step %d: expected OK (%s)", step, spr_last_error());
        if (step == 0) { /* the same weights: bit for bit */
            same &= !memcmp(ga, gb, (size_t)(n * IN) * sizeof(float)) && sa.loss == sb.loss;
        } else { /* weights apart by the norms' rounding */
            for (int64_t i = 0; i < n * IN; i++) same &= fabs((double)ga[i] - gb[i]) <= 1e-5;
            same &= fabs(sa.loss - sb.loss) <= 1e-6 * fabs(sb.loss);
        }
    }
    double diff = 0.0, apart = 0.0, scale = 0.0;
    const spr_layer *la = &a->layers[1], *lb = &b->layers[1], *lc = &c->layers[1];
    for (int64_t i = 0; i < la->rows * la->stride; i++) {
        scale = fmax(scale, fabs((double)lb->w[i]));
        diff = fmax(diff, fabs((double)la->w[i] - lb->w[i]));
        apart = fmax(apart, fabs((double)la->w[i] - lc->w[i]));
    }
    CHECK(same && diff <= 1e-6 * scale && apart > 1e-4 * scale,
          "fused, clipped: expected the per-sample gradients and losses (%s), its "
          "weights to rounding (%g of %g) and the unclipped ones far (%g)", same ? "yes" : "no",
          diff, scale, apart);
    CHECK(a->fused_steps == 4 && !a->layers[1].gw_ready, "fused, clipped: expected 4 fused steps "
          "without gradient rows, got %lld, rows %d", (long long)a->fused_steps, a->layers[1].gw_ready);
    spr_model_free(a);
    spr_model_free(b);
    spr_model_free(c);
}

int main(void) {
    const uint64_t seed = 20261125;
    printf("test_external: seed %llu\n", (unsigned long long)seed);
    spr_rng rng;
    spr_rng_seed(&rng, seed);
    float x[N * IN], grad[N * IN];
    for (int i = 0; i < N * IN; i++) x[i] = (float)spr_rng_normal(&rng);
    const int64_t ptr[N + 1] = {0, 1, 3, 3, 4, 7}; /* row 2 has no labels */
    const int32_t lab[7] = {5, 0, 39, 17, 2, 3, 30};

    test_bf16_first_step(x, ptr, lab, seed);
    test_fused_equals_per_sample(x, ptr, lab, seed);

    /* Dense (sparsity 1): loss and gradient against the reference and finite differences. */
    spr_model *m = make(1.0f, seed);
    spr_train_options o = spr_train_options_default();
    o.threads = 2;
    o.lr = 0.01f;
    const double want = ref_loss(m, x, ptr, lab);
    float w_before = 0.0f, *w;
    int64_t stride;
    spr_model_param(m, 1, SPR_PARAM_WEIGHT, &w, NULL, NULL, &stride);
    w_before = w[5 * stride + 3];
    double fd[N * IN];
    for (int i = 0; i < N * IN; i++) {
        const float h = 1e-2f, keep = x[i];
        x[i] = keep + h;
        double up = ref_loss(m, x, ptr, lab);
        x[i] = keep - h;
        double down = ref_loss(m, x, ptr, lab);
        x[i] = keep;
        fd[i] = (up - down) / (2.0 * h);
    }
    spr_batch_stats st;
    spr_status s = spr_model_output_train(m, x, N, ptr, lab, &o, grad, &st);
    CHECK(s == SPR_STATUS_OK, "output_train: expected OK, got %d (%s)", s, spr_last_error());
    CHECK(fabs(st.loss - want) < 1e-5, "loss: expected %.7f, got %.7f", want, st.loss);
    double worst = 0.0;
    for (int i = 0; i < N * IN; i++) worst = fmax(worst, fabs(grad[i] - fd[i]));
    CHECK(worst < 1e-3, "dLoss/dinput against finite differences: max error %.2e, expected < 1e-3", worst);
    for (int k = 0; k < IN; k++)
        CHECK(grad[2 * IN + k] == 0.0f, "row without labels: expected zero gradient, got %g", grad[2 * IN + k]);
    /* Adam's first step moves every touched weight by lr (|m / sqrt(v)| = 1). */
    CHECK(fabs(fabs(w[5 * stride + 3] - w_before) - 0.01) < 1e-4,
          "first Adam step: expected |dw| = 0.01, got %g", fabs(w[5 * stride + 3] - w_before));
    CHECK(spr_model_get_info(m).steps == 1, "steps: expected 1, got %lld",
          (long long)spr_model_get_info(m).steps);

    /* Exact prediction against brute force. */
    int32_t ids[N * 3];
    float scores[N * 3];
    s = spr_model_output_predict(m, x, N, 3, 0, 2, ids, scores);
    CHECK(s == SPR_STATUS_OK, "predict: expected OK, got %d", s);
    float *b;
    spr_model_param(m, 1, SPR_PARAM_BIAS, &b, NULL, NULL, NULL);
    for (int i = 0; i < N; i++) {
        int best = 0;
        float best_z = -INFINITY;
        for (int j = 0; j < OUT; j++) {
            float z = b[j];
            for (int k = 0; k < IN; k++) z += w[j * stride + k] * x[i * IN + k];
            if (z > best_z) best_z = z, best = j;
        }
        CHECK(ids[i * 3] == best, "row %d top 1: expected %d, got %d", i, best, ids[i * 3]);
        CHECK(scores[i * 3] >= scores[i * 3 + 1] && scores[i * 3 + 1] >= scores[i * 3 + 2],
              "row %d: scores not descending", i);
    }

    /* A NaN or an infinity in the input is named (row, column), in training before
     * anything changes and in prediction; it once read "training diverged ... try a
     * lower lr" and NaN scores. */
    {
        const float keep = x[3 * IN + 7], w_keep = w[5 * stride + 3];
        const int64_t steps = spr_model_get_info(m).steps;
        x[3 * IN + 7] = NAN;
        s = spr_model_output_train(m, x, N, ptr, lab, &o, grad, NULL);
        CHECK(s == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "input row 3, column 7 is nan"),
              "NaN input: expected BAD_INPUT 'input row 3, column 7 is nan', got %d '%s'", s, spr_last_error());
        CHECK(w[5 * stride + 3] == w_keep && spr_model_get_info(m).steps == steps,
              "NaN input: the model changed");
        x[3 * IN + 7] = -INFINITY;
        s = spr_model_output_predict(m, x, N, 3, 0, 2, ids, scores);
        CHECK(s == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "input row 3, column 7 is inf"),
              "infinite input to predict: expected BAD_INPUT 'input row 3, column 7 is inf', got %d '%s'", s,
              spr_last_error());
        x[3 * IN + 7] = keep;
    }

    /* Bad arguments. */
    const int32_t bad_range[7] = {5, 0, 40, 17, 2, 3, 30}, bad_order[7] = {5, 7, 7, 17, 2, 3, 30};
    s = spr_model_output_train(m, x, N, ptr, bad_range, &o, grad, NULL);
    CHECK(s == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "out of range"),
          "label 40 of 40: expected BAD_INPUT 'out of range', got %d '%s'", s, spr_last_error());
    s = spr_model_output_train(m, x, N, ptr, bad_order, &o, grad, NULL);
    CHECK(s == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "ascending"),
          "repeated label: expected BAD_INPUT 'ascending', got %d '%s'", s, spr_last_error());
    o.batch_size = 2;
    s = spr_model_output_train(m, x, N, ptr, lab, &o, grad, NULL);
    CHECK(s == SPR_STATUS_BAD_INPUT, "batch above batch_size: expected BAD_INPUT, got %d", s);
    o.batch_size = 128;
    s = spr_model_output_predict(m, x, N, 3, 1, 1, ids, scores);
    CHECK(s == SPR_STATUS_BAD_INPUT, "sparse predict on a dense layer: expected BAD_INPUT, got %d", s);
    /* finite inputs whose logits overflow: the loss is not finite, the step refused */
    float row0[IN];
    memcpy(row0, x, sizeof row0);
    for (int k = 0; k < IN; k++) x[k] = 3e38f;
    s = spr_model_output_train(m, x, N, ptr, lab, &o, grad, NULL);
    CHECK(s == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "diverged"),
          "overflowing input: expected BAD_INPUT 'diverged', got %d '%s'", s, spr_last_error());
    CHECK(spr_model_get_info(m).steps == 1, "a refused step must not count: steps %lld",
          (long long)spr_model_get_info(m).steps);
    memcpy(x, row0, sizeof row0);
    spr_model_free(m);

    /* Sampled (25%): active set = ceil(0.25 x 40) + labels; sparse prediction returns
     * candidates sorted by score (or -1 padding). */
    m = make(0.25f, seed + 1);
    for (int step = 0; step < 3; step++) {
        s = spr_model_output_train(m, x, N, ptr, lab, &o, grad, &st);
        CHECK(s == SPR_STATUS_OK, "sampled step %d: %s", step, spr_last_error());
    }
    const double want_active = 10.0 + 7.0 / N;
    CHECK(fabs(st.active[1] - want_active) < 1e-9, "active: expected %.2f, got %.2f", want_active, st.active[1]);
    s = spr_model_output_predict(m, x, N, 3, 1, 2, ids, scores);
    CHECK(s == SPR_STATUS_OK, "sparse predict: %s", spr_last_error());
    for (int i = 0; i < N * 3; i++)
        CHECK(ids[i] >= -1 && ids[i] < OUT, "sparse predict id %d out of range", ids[i]);
    /* Rows that missed steps are read as the catch-up would leave them, without writing
     * them (model.h, spr_settled): the predictions before spr_model_catch_up are those
     * after it, bit for bit, and the weights stay as they were until it. */
    {
        spr_model_param(m, 1, SPR_PARAM_WEIGHT, &w, NULL, NULL, &stride);
        float *kept = malloc((size_t)(OUT * stride) * sizeof(float));
        memcpy(kept, w, (size_t)(OUT * stride) * sizeof(float));
        int32_t ids2[2][N * 3];
        float scores2[2][N * 3];
        int same = 1;
        for (int sparse = 0; sparse <= 1; sparse++) {
            s = spr_model_output_predict(m, x, N, 3, sparse, 2, ids2[sparse], scores2[sparse]);
            CHECK(s == SPR_STATUS_OK, "predict of an unsettled layer: %s", spr_last_error());
        }
        CHECK(memcmp(kept, w, (size_t)(OUT * stride) * sizeof(float)) == 0,
              "predicting wrote into the weights");
        CHECK(spr_model_catch_up(m, &o) == SPR_STATUS_OK, "catch_up: %s", spr_last_error());
        CHECK(memcmp(kept, w, (size_t)(OUT * stride) * sizeof(float)) != 0,
              "no row owed steps after 3 sampled steps (this test proves nothing)");
        for (int sparse = 0; sparse <= 1; sparse++) {
            s = spr_model_output_predict(m, x, N, 3, sparse, 2, ids, scores);
            same &= s == SPR_STATUS_OK && memcmp(ids, ids2[sparse], sizeof ids) == 0 &&
                    memcmp(scores, scores2[sparse], sizeof scores) == 0;
        }
        CHECK(same, "predictions before the catch-up differ from those after it");
        free(kept);
    }
    spr_model_free(m);
    return CHECK_DONE("test_external");
}

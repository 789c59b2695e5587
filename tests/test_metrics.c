/*
 * test_metrics.c: top-k selection (ties broken by the lower id), precision@k, nDCG@k,
 * PSP@k and the propensities against values computed by hand, label-less points and short
 * candidate lists included.
 */
#include "check.h"
#include "metrics.h"
#include "sparrow.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void test_topk(void) {
    /* scores by id:       0    1    2    3    4    5    6 */
    const float s[7] = {0.5f, 0.9f, 0.5f, 0.9f, 0.1f, 0.7f, 0.5f};
    int32_t ids[4];
    float sc[4];
    int filled = 0;
    for (int32_t j = 6; j >= 0; j--) spr_topk_push(ids, sc, 4, &filled, j, s[j]); /* any order */
    /* 0.9 ties: 1 before 3; then 0.7 (5); then the 0.5 tie: 0 beats 2 and 6 */
    const int32_t want[4] = {1, 3, 5, 0};
    CHECK(filled == 4, "filled 4, got %d", filled);
    for (int i = 0; i < 4; i++)
        CHECK(ids[i] == want[i], "top-4 slot %d: want id %d, got %d", i, want[i], ids[i]);
    filled = 0;
    spr_topk_push(ids, sc, 4, &filled, 2, 1.0f);
    spr_topk_push(ids, sc, 4, &filled, 1, 1.0f);
    CHECK(filled == 2 && ids[0] == 1 && ids[1] == 2, "partial top-k keeps lower id first");
    filled = 0;
    for (int32_t j = 0; j < 100; j++) spr_topk_push(ids, sc, 1, &filled, j, 0.0f);
    CHECK(ids[0] == 0, "100 equal scores: top-1 is id 0, got %d", ids[0]);
}

static void test_precision(void) {
    /* point 0: labels {1, 3}; point 1: {2}; point 2: no labels; point 3: {0, 4, 7} */
    const int64_t lp[5] = {0, 2, 3, 3, 6};
    const int32_t lab[6] = {1, 3, 2, 0, 4, 7};
    const int64_t fp[5] = {0, 0, 0, 0, 0};
    spr_dataset_view d = {4, 1, 8, fp, NULL, NULL, lp, lab};
    const int32_t top[4 * 5] = {
        3, 5, 1, 6, 0,  /* hits at 1, 3       -> P@1 1, P@3 2/3, P@5 2/5 */
        0, 1, 4, 2, 3,  /* hit at 4           -> P@1 0, P@3 0,   P@5 1/5 */
        1, 2, 3, 4, 5,  /* no labels          -> all 0 */
        7, 4, -1, -1, -1, /* short list: 2 hits -> P@1 1, P@3 2/3, P@5 2/5 */
    };
    double p[6], g[6];
    spr_rank_metrics(top, 4, 5, 5, &d, NULL, p, g);
    const double want1 = (1 + 0 + 0 + 1) / 4.0;
    const double want3 = (2.0 / 3 + 0 + 0 + 2.0 / 3) / 4.0;
    const double want5 = (0.4 + 0.2 + 0 + 0.4) / 4.0;
    CHECK(fabs(p[1] - want1) < 1e-12, "P@1 want %.6f got %.6f", want1, p[1]);
    CHECK(fabs(p[3] - want3) < 1e-12, "P@3 want %.6f got %.6f", want3, p[3]);
    CHECK(fabs(p[5] - want5) < 1e-12, "P@5 want %.6f got %.6f", want5, p[5]);
    /* nDCG@k: gain 1 / log2(rank + 1) of each hit over the best ranking's for min(k, labels)
     * labels. Point 0 (2 labels, hits at ranks 1 and 3): @1 1, @3 and @5 (1 + 1/2) / (1 +
     * 1/log2 3). Point 1 (1 label, hit at rank 4): @1 @3 0, @5 1/log2 5. Point 2: 0. Point 3
     * (3 labels, hits at 1 and 2): @1 1, @3 and @5 (1 + 1/log2 3) / (1 + 1/log2 3 + 1/2). */
    const double l3 = 1.0 / log2(3.0);
    const double g0 = 1.5 / (1 + l3), g3 = (1 + l3) / (1 + l3 + 0.5);
    const double wantg[6] = {0, (1 + 0 + 0 + 1) / 4.0, -1, (g0 + 0 + 0 + g3) / 4.0, -1,
                             (g0 + 1.0 / log2(5.0) + 0 + g3) / 4.0};
    for (int k = 1; k <= 5; k += 2)
        CHECK(fabs(g[k] - wantg[k]) < 1e-12, "nDCG@%d want %.9f got %.9f", k, wantg[k], g[k]);
    CHECK(g[0] == 0 && p[0] == 0, "entry 0 of p_at and ndcg_at: 0, got %g %g", p[0], g[0]);
    /* nDCG@2 of point 0 alone: rank 1 hit, rank 2 miss: 1 / (1 + 1/log2 3) */
    spr_rank_metrics(top, 1, 5, 2, &d, NULL, p, g);
    CHECK(fabs(g[2] - 1 / (1 + l3)) < 1e-12, "nDCG@2 of point 0: want %.9f got %.9f", 1 / (1 + l3), g[2]);
    /* a perfect ranking scores 1 at every k, however many labels */
    const int32_t perfect[5] = {7, 0, 4, 1, 2};
    const int64_t row3[1] = {3};
    spr_rank_metrics(perfect, 1, 5, 5, &d, row3, p, g);
    for (int k = 1; k <= 5; k++) CHECK(fabs(g[k] - 1.0) < 1e-12, "perfect nDCG@%d: want 1, got %.9f", k, g[k]);
    /* PSP@k with weights w[l] = l + 1. Point 0 ({1, 3}: w 2, 4; hits label 3 at rank 1,
     * label 1 at 3): got 4, 6, 6 at k = 1, 3, 5, its best 4, 6, 6. Point 1 ({2}: w 3, hit
     * at rank 4): got 0, 0, 3, best 3, 3, 3. Point 2: nothing. Point 3 ({0, 4, 7}: w 1, 5,
     * 8; hits 7 and 4 at ranks 1, 2): got 8, 13, 13, best 8, 14, 14. */
    const double w8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    double num[6] = {0}, den[6] = {0}, nn[6] = {0}, nd[6] = {0};
    spr_psp_sums(top, 4, 5, 5, &d, NULL, w8, num, den, nn, nd);
    CHECK(num[1] == 12 && num[3] == 19 && num[5] == 22 && den[1] == 15 && den[3] == 23 && den[5] == 23,
          "PSP sums: want 12/15, 19/23, 22/23, got %g/%g %g/%g %g/%g", num[1], den[1], num[3], den[3],
          num[5], den[5]);
    /* PSnDCG@k: each point's sum of w / log2(r + 1) over its hits, and the same for its
     * labels ranked by w (4, 2 | 3 | - | 8, 5, 1), each over its binary IDCG@k
     * (1, 1 + l3 | 1 | - | 1, 1 + l3 + 1/2); point 1's hit is at rank 4 (gain 1/log2 5). */
    const double i0 = 1 + l3, i3 = 1.5 + l3;
    const double wn[6] = {0, 4 + 8, 0, 5 / i0 + (8 + 5 * l3) / i3, 0,
                          5 / i0 + 3 / log2(5.0) + (8 + 5 * l3) / i3};
    const double wd[6] = {0, 4 + 3 + 8, 0, (4 + 2 * l3) / i0 + 3 + (8.5 + 5 * l3) / i3, 0,
                          (4 + 2 * l3) / i0 + 3 + (8.5 + 5 * l3) / i3};
    for (int k = 1; k <= 5; k += 2)
        CHECK(fabs(nn[k] - wn[k]) < 1e-12 && fabs(nd[k] - wd[k]) < 1e-12,
              "PSnDCG@%d sums: want %.9f / %.9f, got %.9f / %.9f", k, wn[k], wd[k], nn[k], nd[k]);
    /* without the nDCG sums (NULL), the PSP sums are the same */
    double num2[6] = {0}, den2[6] = {0};
    spr_psp_sums(top, 4, 5, 5, &d, NULL, w8, num2, den2, NULL, NULL);
    CHECK(num2[3] == num[3] && den2[5] == den[5], "PSP sums without the nDCG ones differ");
    /* the propensities of these 4 points (a 0.55, b 1.5): a label seen once weighs exactly
     * ln N (N_l + b = b + 1), one never seen 1 + (ln N - 1) ((b + 1) / b)^a */
    spr_dataset *ds;
    double ip[9];
    if (spr_dataset_wrap(&d, &ds) == SPR_STATUS_OK) {
        spr_status pst = spr_inv_propensities(ds, 0.55, 1.5, 9, ip);
        const double never = 1 + (log(4.0) - 1) * pow(2.5 / 1.5, 0.55);
        CHECK(pst == SPR_STATUS_OK && fabs(ip[0] - log(4.0)) < 1e-12 && fabs(ip[7] - log(4.0)) < 1e-12 &&
                  fabs(ip[5] - never) < 1e-12 && fabs(ip[8] - never) < 1e-12,
              "propensities: want ln 4 = %.9f and %.9f, got %.9f %.9f %.9f %.9f", log(4.0), never, ip[0],
              ip[7], ip[5], ip[8]);
        CHECK(spr_inv_propensities(ds, 0.55, 1.5, 7, ip) == SPR_STATUS_BAD_INPUT, "n_labels below the data's: refused");
        CHECK(spr_inv_propensities(ds, 0.0, 1.5, 9, ip) == SPR_STATUS_BAD_INPUT, "a = 0: refused");
        CHECK(spr_inv_propensities(ds, 0.55, NAN, 9, ip) == SPR_STATUS_BAD_INPUT, "b NaN: refused");
        /* (b + 1)^a overflowed for a = 2000, then inf x 0 = NaN was returned as a weight
         * (refused only at the first evaluation, after training); computed in logs, a
         * value past a double's range is refused here, naming the label */
        CHECK(spr_inv_propensities(ds, 2000, 1, 9, ip) == SPR_STATUS_BAD_INPUT &&
                  strstr(spr_last_error(), "too large for a double"),
              "a = 2000, b = 1: refused, got \"%s\"", spr_last_error());
        pst = spr_inv_propensities(ds, 50, 1, 9, ip); /* large but finite: exact to 1e-12 */
        const double big = 1 + exp(log(log(4.0) - 1) + 50 * log(2.0) - 50 * log(1.0));
        CHECK(pst == SPR_STATUS_OK && fabs(ip[5] / big - 1) < 1e-12 && fabs(ip[0] - log(4.0)) < 1e-12,
              "a = 50: want %.9g and ln 4, got %.9g and %.9g", big, ip[5], ip[0]);
        spr_dataset_free(ds);
        spr_dataset_view two = d;
        two.n_points = 2;
        if (spr_dataset_wrap(&two, &ds) == SPR_STATUS_OK) {
            CHECK(spr_inv_propensities(ds, 0.55, 1.5, 9, ip) == SPR_STATUS_BAD_INPUT &&
                      strstr(spr_last_error(), "at least 3 training points"),
                  "2 training points: refused (ln N - 1 < 0), got \"%s\"", spr_last_error());
            spr_dataset_free(ds);
        }
    } else {
        CHECK(0, "wrap: %s", spr_last_error());
    }
    /* a subset through rows: points 3 and 0 */
    const int64_t rows[2] = {3, 0};
    const int32_t top2[2 * 5] = {7, 4, -1, -1, -1, 3, 5, 1, 6, 0};
    spr_rank_metrics(top2, 2, 5, 5, &d, rows, p, NULL);
    CHECK(fabs(p[1] - 1.0) < 1e-12 && fabs(p[5] - 0.4) < 1e-12, "rows: P@1 1 and P@5 0.4, got %g %g",
          p[1], p[5]);
}

/* A model whose output weights and biases are all zero scores every label the same:
 * exact prediction must return ids 0..k-1 (the tie rule), and P@k follows. */
static void test_predict_ties(void) {
    spr_model_config c = spr_model_config_default(4, 10);
    c.layers[0].size = 8;
    c.layers[1].sparsity = 1.0f;
    spr_model *m;
    if (spr_model_create(&c, &m)) {
        CHECK(0, "create: %s", spr_last_error());
        return;
    }
    float *w, *b;
    int64_t r, cols, stride;
    spr_model_param(m, 1, SPR_PARAM_WEIGHT, &w, &r, &cols, &stride);
    memset(w, 0, (size_t)(r * stride) * sizeof(float));
    spr_model_param(m, 1, SPR_PARAM_BIAS, &b, NULL, &cols, NULL);
    memset(b, 0, (size_t)cols * sizeof(float));
    const int64_t fp[3] = {0, 1, 2}, lp[3] = {0, 1, 3};
    const int32_t fi[2] = {0, 3}, lab[3] = {2, 0, 9};
    const float fv[2] = {1.0f, 0.5f};
    spr_dataset_view v = {2, 4, 10, fp, fi, fv, lp, lab};
    spr_dataset *data;
    if (spr_dataset_wrap(&v, &data)) {
        CHECK(0, "wrap: %s", spr_last_error());
        spr_model_free(m);
        return;
    }
    int32_t ids[2 * 3];
    float sc[2 * 3];
    spr_status st = spr_model_predict(m, data, NULL, 0, 3, 0, 1, ids, sc);
    CHECK(st == SPR_STATUS_OK, "predict ok");
    for (int i = 0; i < 6; i++) CHECK(ids[i] == i % 3, "tied scores: slot %d id %d", i, ids[i]);
    spr_eval_result e;
    st = spr_model_evaluate(m, data, NULL, 0, 0, 1, &e);
    /* point 0 {2}: top 0,1,2,3,4 -> P@1 0, P@3 1/3, P@5 1/5; point 1 {0,9}: P@1 1, P@3 1/3, P@5 1/5 */
    CHECK(st == SPR_STATUS_OK && fabs(e.p_at[1] - 0.5) < 1e-12 && fabs(e.p_at[3] - 1.0 / 3) < 1e-12 &&
              fabs(e.p_at[5] - 0.2) < 1e-12,
          "evaluate on ties: P@1 0.5 P@3 0.333 P@5 0.2, got %g %g %g", e.p_at[1], e.p_at[3],
          e.p_at[5]);
    /* nDCG: point 0's hit at rank 3 (gain 1/2 of an ideal 1); point 1's at rank 1, its
     * second label missing: 1 / (1 + 1/log2 3) at 3 and 5 */
    const double pt1 = 1 / (1 + 1 / log2(3.0));
    CHECK(fabs(e.ndcg_at[1] - 0.5) < 1e-12 && fabs(e.ndcg_at[3] - (0.5 + pt1) / 2) < 1e-12 &&
              fabs(e.ndcg_at[5] - (0.5 + pt1) / 2) < 1e-12,
          "evaluate on ties: nDCG@1 0.5 nDCG@3,5 %.9f, got %.9f %.9f %.9f", (0.5 + pt1) / 2,
          e.ndcg_at[1], e.ndcg_at[3], e.ndcg_at[5]);
    CHECK(e.psp_at[1] == 0 && e.psp_at[5] == 0, "evaluate without propensities: PSP 0");
    /* PSP with w[l] = l + 1: point 0's label 2 (w 3) at rank 3; point 1's label 0 (w 1) at
     * rank 1, its best 10 then 10 + 1 */
    const double w10[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    st = spr_model_evaluate_ps(m, data, NULL, 0, 0, 1, w10, 10, &e);
    CHECK(st == SPR_STATUS_OK && fabs(e.psp_at[1] - 1.0 / 13) < 1e-12 && fabs(e.psp_at[3] - 4.0 / 14) < 1e-12 &&
              fabs(e.psp_at[5] - 4.0 / 14) < 1e-12 && fabs(e.p_at[1] - 0.5) < 1e-12,
          "evaluate_ps: PSP@1 1/13, PSP@3,5 4/14, got %g %g %g", e.psp_at[1], e.psp_at[3], e.psp_at[5]);
    /* PSnDCG: point 0's 3 / 2 (rank 3) of an ideal 3; point 1's 1 (rank 1) over its IDCG
     * 1 + 1/log2 3, of an ideal (10 + 1/log2 3) / (1 + 1/log2 3) */
    const double nd3 = (1.5 + pt1) / (3 + (10 + (1 / pt1 - 1)) * pt1);
    CHECK(fabs(e.psndcg_at[1] - 1.0 / 13) < 1e-12 && fabs(e.psndcg_at[3] - nd3) < 1e-12 &&
              fabs(e.psndcg_at[5] - nd3) < 1e-12,
          "evaluate_ps: PSnDCG@1 1/13, @3,5 %.9f, got %.9f %.9f %.9f", nd3, e.psndcg_at[1],
          e.psndcg_at[3], e.psndcg_at[5]);
    st = spr_model_evaluate_ps(m, data, NULL, 0, 0, 1, w10, 9, &e);
    CHECK(st == SPR_STATUS_BAD_INPUT, "evaluate_ps with fewer propensities than labels: refused");
    double bad_w[10];
    memcpy(bad_w, w10, sizeof bad_w);
    bad_w[4] = NAN;
    st = spr_model_evaluate_ps(m, data, NULL, 0, 0, 1, bad_w, 10, &e);
    CHECK(st == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "label 4 must be finite and > 0"),
          "evaluate_ps with a NaN weight: refused, got \"%s\"", spr_last_error());
    bad_w[4] = -1;
    CHECK(spr_model_evaluate_ps(m, data, NULL, 0, 0, 1, bad_w, 10, &e) == SPR_STATUS_BAD_INPUT,
          "evaluate_ps with a negative weight: refused");

    /* Exclusions (the XMC repository's filter files): point 0 without {0, 1} ranks
     * 2,3,4,5,6 (its label 2 first); point 1 without {0} ranks 1,2,3,4,5 (neither of its
     * labels 0, 9). */
    const int64_t xp[3] = {0, 2, 3}, xfp[3] = {0, 0, 0};
    const int32_t xl[3] = {0, 1, 0};
    spr_dataset_view xv = {2, 4, 10, xfp, NULL, NULL, xp, xl};
    spr_dataset *ex = NULL;
    CHECK(spr_dataset_wrap(&xv, &ex) == SPR_STATUS_OK, "wrap the exclusions: %s", spr_last_error());
    st = spr_model_evaluate_excluding(m, data, NULL, 0, 0, 1, w10, 10, ex, &e);
    CHECK(st == SPR_STATUS_OK && fabs(e.p_at[1] - 0.5) < 1e-12 && fabs(e.p_at[3] - 1.0 / 6) < 1e-12 &&
              fabs(e.p_at[5] - 0.1) < 1e-12 && fabs(e.ndcg_at[1] - 0.5) < 1e-12 &&
              fabs(e.psp_at[1] - 3.0 / 13) < 1e-12,
          "evaluate_excluding: P@1 0.5 P@3 1/6 P@5 0.1 nDCG@1 0.5 PSP@1 3/13, got %g %g %g %g %g (%s)",
          e.p_at[1], e.p_at[3], e.p_at[5], e.ndcg_at[1], e.psp_at[1], spr_last_error());
    int32_t xi[2 * 5];
    float xs[2 * 5];
    st = spr_model_predict_excluding(m, data, NULL, 0, 5, 0, 1, ex, xi, xs);
    const int32_t want[10] = {2, 3, 4, 5, 6, 1, 2, 3, 4, 5};
    for (int i = 0; i < 10; i++)
        CHECK(st == SPR_STATUS_OK && xi[i] == want[i], "predict_excluding: slot %d id %d, want %d", i, xi[i],
              want[i]);
    const int64_t rows1[1] = {1}; /* rows: the exclusions are the row's, not the position's */
    st = spr_model_predict_excluding(m, data, rows1, 1, 2, 0, 1, ex, xi, xs);
    CHECK(st == SPR_STATUS_OK && xi[0] == 1 && xi[1] == 2, "predict_excluding of row 1: %d %d", xi[0], xi[1]);
    /* 10 labels, 9 excluded from point 0: one left, then padding */
    const int64_t np9[3] = {0, 9, 9};
    const int32_t nl9[9] = {0, 1, 2, 3, 4, 5, 6, 8, 9};
    spr_dataset_view v9 = {2, 4, 10, xfp, NULL, NULL, np9, nl9};
    spr_dataset *ex9 = NULL;
    CHECK(spr_dataset_wrap(&v9, &ex9) == SPR_STATUS_OK, "wrap 9 exclusions: %s", spr_last_error());
    st = spr_model_predict_excluding(m, data, NULL, 0, 3, 0, 1, ex9, xi, xs);
    CHECK(st == SPR_STATUS_OK && xi[0] == 7 && xi[1] == -1 && xi[2] == -1 && xs[1] == -INFINITY && xi[3] == 0,
          "predict_excluding, 9 of 10 excluded: %d %d %d | %d", xi[0], xi[1], xi[2], xi[3]);
    /* no exclusions: the unfiltered figures */
    spr_eval_result plain, none;
    spr_model_evaluate_ps(m, data, NULL, 0, 0, 1, w10, 10, &plain);
    st = spr_model_evaluate_excluding(m, data, NULL, 0, 0, 1, w10, 10, NULL, &none);
    CHECK(st == SPR_STATUS_OK && !memcmp(plain.p_at, none.p_at, sizeof plain.p_at) &&
              !memcmp(plain.psp_at, none.psp_at, sizeof plain.psp_at),
          "evaluate_excluding without exclusions equals evaluate_ps");
    /* refused: exclusions of another number of points, or a k they leave no room for */
    xv.n_points = 1;
    spr_dataset *ex1 = NULL;
    const int64_t xp1[2] = {0, 1};
    xv.label_indptr = xp1;
    CHECK(spr_dataset_wrap(&xv, &ex1) == SPR_STATUS_OK, "wrap one point: %s", spr_last_error());
    st = spr_model_evaluate_excluding(m, data, NULL, 0, 0, 1, NULL, 0, ex1, &e);
    CHECK(st == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "the exclusions name 1 points, the data has 2"),
          "exclusions of 1 point for 2: refused, got \"%s\"", spr_last_error());
    st = spr_model_predict_excluding(m, data, NULL, 0, SPR_MAX_K - 1, 0, 1, ex, xi, xs);
    CHECK(st == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "plus the 2 labels excluded"),
          "k + exclusions above SPR_MAX_K: refused, got \"%s\"", spr_last_error());
    spr_dataset_free(ex);
    spr_dataset_free(ex9);
    spr_dataset_free(ex1);
    spr_dataset_free(data);
    spr_model_free(m);
}

int main(void) {
    test_topk();
    test_precision();
    test_predict_ties();
    return CHECK_DONE("test_metrics");
}

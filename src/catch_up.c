/*
 * catch_up.c: Adam's catch-up (model.h, spr_catch_up). A row that had no gradient for a
 * while takes the zero-gradient steps it missed in closed form: when it next steps
 * (spr_layer_adam_catch_up_row, in the step's own pass), for every row that owes some
 * (spr_model_catch_up, spr_model_settle), or in a copy that inference reads without
 * writing the model (spr_settled: evaluations inside an epoch score what a settled
 * model would, and the run goes on as if they had not happened).
 */
#include "common.h"
#include "kernels.h"
#include "model.h"

#include <math.h>
#include <string.h>

void spr_catch_up_prepare(spr_model *m, const spr_train_options *o) {
    spr_catch_up *c = &m->catch_up;
    c->on = !o->lazy_adam;
    c->lr = o->lr, c->eps = o->eps;
    const double b1 = o->beta1, b2 = o->beta2;
    if (!c->on || (c->beta1 == b1 && c->beta2 == b2)) return;
    c->beta1 = b1, c->beta2 = b2, c->r = b1 / sqrt(b2), c->q = b1 / b2;
    c->weighted_eps = c->q < 1.0;
    /* c(u) = d(u) = 1 from SPR_CATCH_UP_U on: the tails are geometric */
    double P = c->r / (1.0 - c->r), Q = c->weighted_eps ? c->q / (1.0 - c->q) : 0.0;
    c->P[SPR_CATCH_UP_U] = P, c->Q[SPR_CATCH_UP_U] = Q;
    for (int64_t u = SPR_CATCH_UP_U - 1; u >= 0; u--) {
        const double v = (double)(u + 1), bc1 = 1.0 - pow(b1, v), bc2 = 1.0 - pow(b2, v);
        P = c->r * (sqrt(bc2) / bc1 + P);
        Q = c->weighted_eps ? c->q * (bc2 / bc1 + Q) : 0.0;
        c->P[u] = P, c->Q[u] = Q;
    }
    for (int64_t u = 0; u <= SPR_CATCH_UP_U; u++) c->sq2[u] = (float)sqrt((1.0 - pow(b2, (double)u)) / b2);
    for (int s = 0; s <= SPR_CATCH_UP_S; s++)
        c->rs[s] = pow(c->r, s), c->qs[s] = pow(c->q, s), c->b1s[s] = pow(b1, s), c->b2s[s] = pow(b2, s);
}

spr_status spr_check_adam(const spr_train_options *o) {
    if (!(o->lr > 0.0f && isfinite(o->lr)) || !(o->beta1 >= 0.0f && o->beta1 < 1.0f) ||
        !(o->beta2 >= 0.0f && o->beta2 < 1.0f) || !(o->eps > 0.0f && isfinite(o->eps)))
        return spr_fail(SPR_STATUS_BAD_INPUT, "Adam: need a finite lr > 0, betas in [0, 1), a finite eps > 0");
    if (!o->lazy_adam && !((double)o->beta1 * o->beta1 < (double)o->beta2))
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "Adam with catch-up needs beta1^2 < beta2 (got beta1 %g, beta2 %g): the "
                        "zero-gradient steps a row missed do not sum in closed form; use lazy Adam "
                        "(--lazy-adam, lazy_adam) or other betas",
                        (double)o->beta1, (double)o->beta2);
    return SPR_STATUS_OK;
}

/* Fills *k for a row last stepped at t0; 0 if it owes nothing (lazy Adam, no step missed). */
static int catch_up_coef_of(const spr_model *m, int64_t t0, spr_catch_up_coef *k) {
    const spr_catch_up *c = &m->catch_up;
    const int64_t s = m->steps - t0; /* the steps it missed */
    if (!c->on || s <= 0) return 0;
    const int64_t u0 = t0 < SPR_CATCH_UP_U ? t0 : SPR_CATCH_UP_U;
    const int64_t us = t0 + s < SPR_CATCH_UP_U ? t0 + s : SPR_CATCH_UP_U;
    const int tabled = s <= SPR_CATCH_UP_S;
    const double rs = tabled ? c->rs[s] : pow(c->r, (double)s);
    const double sum = c->P[u0] - rs * c->P[us];
    k->S = (float)((double)c->lr * sum);
    if (c->weighted_eps && sum > 0.0) { /* the terms' mean (beta1 0: no terms, sum 0) */
        const double qs = tabled ? c->qs[s] : pow(c->q, (double)s);
        k->e = (float)((double)c->eps * (c->Q[u0] - qs * c->Q[us]) / sum);
    } else { /* the first term's */
        k->e = c->eps * c->sq2[u0 + 1 <= SPR_CATCH_UP_U ? u0 + 1 : SPR_CATCH_UP_U];
    }
    k->d1 = (float)(tabled ? c->b1s[s] : pow(c->beta1, (double)s));
    k->d2 = (float)(tabled ? c->b2s[s] : pow(c->beta2, (double)s));
    return 1;
}

/* The catch-up of a bias b with moments *mb, *vb (layers past 0; layer 0's bias is
 * stepped every step). */
static float bias_catch_up(float b, float *mb, float *vb, const spr_catch_up_coef *k) {
    b -= k->S * *mb / (sqrtf(*vb) + k->e);
    *mb *= k->d1, *vb *= k->d2;
    return b;
}

/* The catch-up with coefficients k of row r of L, held at a (the layer's own row, or a
 * copy of it: spr_settled_row): the one kernel call spr_model_catch_up and the settled
 * readers share, so that both leave the same bits. */
static void row_catch_up(const spr_model *m, const spr_layer *L, int64_t r,
                         const spr_catch_up_coef *k, const spr_row_at *a) {
    if (!a->w16 && !a->mw16) {
        spr_catch_up_row(a->w, a->mw, a->vw, L->cols, k->S, k->e, k->d1, k->d2);
    } else { /* BF16 moments (and weights); another salt than the step's: other draws */
        const uint32_t salt = (uint32_t)spr_mix64((uint64_t)m->steps << 32 ^
                                                  (uint64_t)(m->label_lo + r) ^ 0xC47C0FFEEull);
        spr_catch_up_row_bf16(L->w16 ? NULL : a->w, L->w16 ? a->w16 : NULL, a->mw16, a->vw16,
                              L->cols, k->S, k->e, k->d1, k->d2, salt);
    }
}

/* Row r of L takes the steps it missed, t0 + 1 .. m->steps (t0 its last step), in a pass
 * of its own (spr_model_catch_up), and records m->steps as its last step. */
static void layer_catch_up(const spr_model *m, spr_layer *L, int64_t r) {
    const int64_t t0 = L->last_step[r];
    L->last_step[r] = m->steps;
    spr_catch_up_coef k;
    if (!catch_up_coef_of(m, t0, &k)) return;
    const spr_row_at a = spr_layer_row_at(L, r);
    row_catch_up(m, L, r, &k, &a);
    if (L != &m->layers[0]) L->b[r] = bias_catch_up(L->b[r], &L->mb[r], &L->vb[r], &k);
}

void spr_layer_settle_row(const spr_model *m, spr_layer *L, int64_t r, const spr_row_at *moments) {
    const int64_t t0 = L->last_step[r];
    L->last_step[r] = m->steps;
    spr_catch_up_coef k;
    if (!catch_up_coef_of(m, t0, &k)) return;
    spr_row_at a = spr_layer_row_at(L, r); /* its weights; the moments given */
    a.mw = moments->mw, a.vw = moments->vw, a.mw16 = moments->mw16, a.vw16 = moments->vw16;
    row_catch_up(m, L, r, &k, &a);
    if (L != &m->layers[0]) L->b[r] = bias_catch_up(L->b[r], &L->mb[r], &L->vb[r], &k);
}

int spr_layer_adam_catch_up_row(const spr_model *m, spr_layer *L, int64_t r, float *g,
                                const spr_train_options *o, float bc1, float bc2) {
    spr_catch_up_coef k;
    if (!catch_up_coef_of(m, L->last_step[r], &k)) return 0;
    L->last_step[r] = m->steps + 1;
    const int64_t off = r * L->stride;
    if (!L->w16 && !L->mw16)
        spr_adam_catch_up_row(L->w + off, g, L->mw + off, L->vw + off, L->cols, o->lr, o->beta1,
                              o->beta2, o->eps, bc1, bc2, k.S, k.e, k.d1, k.d2);
    else
        spr_adam_catch_up_row_bf16(L->w16 ? NULL : L->w + off, L->w16 ? L->w16 + off : NULL, g,
                                   L->mw16 + off, L->vw16 + off, L->cols, o->lr, o->beta1,
                                   o->beta2, o->eps, bc1, bc2, k.S, k.e, k.d1, k.d2,
                                   spr_layer_step_salt(m, r));
    if (L != &m->layers[0]) L->b[r] = bias_catch_up(L->b[r], &L->mb[r], &L->vb[r], &k);
    return 1;
}

spr_status spr_model_catch_up(spr_model *m, const spr_train_options *o) {
    if (!m || !o) return spr_fail(SPR_STATUS_BAD_INPUT, "catch_up: NULL argument");
    spr_status st = spr_check_adam(o);
    if (st != SPR_STATUS_OK) return st;
    if (o->lazy_adam) return SPR_STATUS_OK; /* lazy rows owe nothing */
    /* nothing owed since the last pass (predict called per query, a second settle) */
    if (m->settled_step == m->steps) return SPR_STATUS_OK;
    if ((st = spr_model_check_state(m, "taking the steps rows owe"))) return st;
    spr_catch_up_prepare(m, o);
    const int threads = spr_threads(o->threads);
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        /* dynamic in blocks: at 2M labels the rows that missed the last steps are most,
         * after a small data set's epoch a few */
#pragma omp parallel for schedule(dynamic, 4096) num_threads(threads)
        for (int64_t r = 0; r < L->rows; r++)
            if (L->last_step[r] < m->steps) layer_catch_up(m, L, r);
    }
    m->settled_step = m->steps;
    return SPR_STATUS_OK;
}

spr_status spr_model_settle(spr_model *m, int threads) {
    if (!m) return spr_fail(SPR_STATUS_BAD_INPUT, "settle: NULL model");
    const spr_catch_up *c = &m->catch_up;
    if (!spr_catch_up_known(c)) return SPR_STATUS_OK;
    spr_train_options o = spr_train_options_default();
    o.lr = c->lr, o.beta1 = (float)c->beta1, o.beta2 = (float)c->beta2, o.eps = c->eps;
    o.threads = threads;
    return spr_model_catch_up(m, &o);
}

/* Coefficients tabled for at most this many last steps (16 bytes each); rows last stepped
 * earlier (a model never settled, far into its first epoch) compute theirs. */
#define SETTLED_TABLE (1 << 16)

spr_status spr_settled_init(spr_settled *s, const spr_model *m) {
    memset(s, 0, sizeof *s);
    s->m = m;
    /* (a model for inference owes nothing it could take: it has no moments to take it with) */
    if (!spr_catch_up_known(&m->catch_up) || m->settled_step == m->steps || m->weights_only)
        return SPR_STATUS_OK;
    s->on = 1;
    /* every row last stepped at settled_step or later (model.h) */
    int64_t lo = m->settled_step;
    if (m->steps - lo > SETTLED_TABLE) lo = m->steps - SETTLED_TABLE;
    s->t_lo = lo;
    s->coef = spr_alloc((size_t)(m->steps - lo) * sizeof *s->coef);
    if (!s->coef)
        return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory for the settled rows' table");
    for (int64_t t = lo; t < m->steps; t++) catch_up_coef_of(m, t, &s->coef[t - lo]);
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].cols > s->cols) s->cols = m->layers[l].cols;
    return SPR_STATUS_OK;
}

void spr_settled_free(spr_settled *s) {
    spr_free(s->coef);
    s->coef = NULL;
}

size_t spr_settled_buf_bytes(const spr_settled *s) {
    return s->on ? 3 * (size_t)spr_row_stride(s->cols) * sizeof(float) : 0;
}

spr_row_at spr_settled_copy(const spr_settled *s, const spr_layer *L, int64_t r, void *buf,
                            float *b) {
    const spr_row_at at = spr_layer_row_at(L, r);
    const int64_t t0 = L->last_step[r];
    spr_catch_up_coef k;
    if (t0 >= s->t_lo) {
        k = s->coef[t0 - s->t_lo];
    } else if (!catch_up_coef_of(s->m, t0, &k)) {
        if (b) *b = L->b[r];
        return at;
    }
    /* the copy: weights, then both moments, each from a row boundary */
    const int64_t st = spr_row_stride(s->cols), n = L->cols;
    float *f = buf;
    uint16_t *h = buf;
    spr_row_at c = {NULL, NULL, NULL, NULL, NULL, NULL};
    if (L->w16) c.w16 = memcpy(h, at.w16, (size_t)n * 2);
    else c.w = memcpy(f, at.w, (size_t)n * 4);
    if (L->mw16) {
        c.mw16 = memcpy(h + 2 * st, at.mw16, (size_t)n * 2);
        c.vw16 = memcpy(h + 4 * st, at.vw16, (size_t)n * 2);
    } else {
        c.mw = memcpy(f + st, at.mw, (size_t)n * 4);
        c.vw = memcpy(f + 2 * st, at.vw, (size_t)n * 4);
    }
    row_catch_up(s->m, L, r, &k, &c);
    if (b) { /* layers past 0: layer_catch_up's bias */
        float mb = L->mb[r], vb = L->vb[r];
        *b = bias_catch_up(L->b[r], &mb, &vb, &k);
    }
    return c;
}

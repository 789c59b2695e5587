/*
 * predict.c: inference. Hidden layers are computed whole (exact); the output layer is
 * either scored whole (exact top-k) or only over the LSH candidates of the point
 * (sparse inference: O(L x bucket) per point instead of O(#labels)).
 *
 * Exact inference streams the output weights once per block of up to 64 points, as a
 * matrix product of blocks of rows with the block's hidden vectors (kept in L1), so the
 * cost is bound by arithmetic, not by memory bandwidth; a vectorised test against each
 * point's k-th score skips the rows that enter no top k (nearly all of them). Its scores
 * are the kernel set's matmul_panels chains, sparse inference's its dots: equal to
 * rounding, not bit for bit.
 */
#include "common.h"
#include "data.h"
#include "dist.h"
#include "kernels.h"
#include "metrics.h"
#include "model.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int64_t spr_exact_block(int64_t n, int threads) {
    int64_t block = (n + threads - 1) / threads;
    block = (block + SPR_PANEL - 1) / SPR_PANEL * SPR_PANEL;
    return block > SPR_EXACT_BLOCK ? SPR_EXACT_BLOCK : block;
}

int spr_exact_scratch_make(spr_exact_scratch *x, int64_t fan_in) {
    const size_t st = (size_t)spr_row_stride(fan_in);
    const size_t sizes[5] = {SPR_EXACT_BLOCK * st, SPR_EXACT_BLOCK * (size_t)fan_in,
                             SPR_EXACT_ROWS * SPR_EXACT_BLOCK, SPR_EXACT_ROWS * st,
                             spr_row_stride(SPR_EXACT_ROWS)}; /* each a multiple of 64 bytes */
    size_t total = 0;
    for (int i = 0; i < 5; i++) total += sizes[i];
    float *p = x->block = spr_alloc(total * sizeof(float));
    if (!p) return 0;
    float **dst[5] = {&x->hid, &x->panels, &x->acc, &x->rows, &x->bias};
    for (int i = 0; i < 5; i++) *dst[i] = p, p += sizes[i];
    return 1;
}

void spr_model_hidden_dense(const spr_model *m, const spr_settled *sv, void *buf,
                            const spr_dataset_view *d, int64_t row, float *h_a, float *h_b,
                            float **out) {
    const spr_layer *L0 = &m->layers[0];
    memcpy(h_a, L0->b, (size_t)L0->size * sizeof(float));
    for (int64_t k = d->feature_indptr[row]; k < d->feature_indptr[row + 1]; k++) {
        const spr_row_at a = spr_settled_row(sv, L0, d->feature_indices[k], buf, NULL);
        spr_row_at_axpy(L0, d->feature_values[k], &a, h_a);
    }
    for (int64_t j = 0; j < L0->size; j++)
        if (h_a[j] < 0.0f) h_a[j] = 0.0f;
    for (int l = 1; l < m->n_layers - 1; l++) {
        const spr_layer *L = &m->layers[l];
        for (int64_t j = 0; j < L->size; j++) {
            float b;
            const spr_row_at a = spr_settled_row(sv, L, j, buf, &b);
            float z = b + spr_row_at_dot(L, &a, h_a);
            h_b[j] = z > 0.0f ? z : 0.0f;
        }
        float *t = h_a;
        h_a = h_b;
        h_b = t;
    }
    *out = h_a;
}

static int64_t max_hidden(const spr_model *m) {
    int64_t h = 1;
    for (int l = 0; l < m->n_layers - 1; l++)
        if (m->layers[l].size > h) h = m->layers[l].size;
    return h;
}

void spr_exact_topk(const spr_model *m, const spr_settled *sv, void *buf, spr_exact_scratch *x,
                    const float *hid, int64_t ldh, int64_t nb, int k, int32_t *ids_out,
                    float *scores_out) {
    const spr_layer *Lo = &m->layers[m->n_layers - 1];
    const int64_t stride = spr_row_stride(Lo->fan_in), fan_in = Lo->fan_in;
    int filled[SPR_EXACT_BLOCK];
    float worst[SPR_EXACT_BLOCK]; /* each point's k-th score, once it has k */
    int64_t full = 0;         /* points with k */
    const int64_t np = (nb + SPR_PANEL - 1) / SPR_PANEL, ld = np * SPR_PANEL;
    for (int64_t i = 0; i < nb; i++) filled[i] = 0, worst[i] = -INFINITY;
    for (int64_t q = 0; q < np; q++) /* panel q: points 16 q .. 16 q + 15, zeros past nb */
        for (int64_t c = 0; c < fan_in; c++)
            for (int64_t i = 0; i < SPR_PANEL; i++) {
                const int64_t pt = q * SPR_PANEL + i;
                x->panels[(q * fan_in + c) * SPR_PANEL + i] = pt < nb ? hid[pt * ldh + c] : 0.0f;
            }
    const int direct = !sv->on && !Lo->w16; /* the rows as the layer holds them */
    for (int64_t j0 = 0; j0 < Lo->size; j0 += SPR_EXACT_ROWS) {
        const int64_t nr = Lo->size - j0 < SPR_EXACT_ROWS ? Lo->size - j0 : SPR_EXACT_ROWS;
        const float *w = Lo->w + j0 * stride, *bias = Lo->b + j0;
        if (!direct) {
            for (int64_t t = 0; t < nr; t++) {
                const spr_row_at a = spr_settled_row(sv, Lo, j0 + t, buf, &x->bias[t]);
                float *dst = x->rows + t * stride;
                if (Lo->w16)
                    for (int64_t c = 0; c < fan_in; c++) dst[c] = spr_f32_from_bf16(a.w16[c]);
                else
                    memcpy(dst, a.w, (size_t)fan_in * sizeof(float));
            }
            w = x->rows, bias = x->bias;
        }
        spr_matmul_panels(w, stride, nr, fan_in, x->panels, np, x->acc, ld);
        for (int64_t t = 0; t < nr; t++) {
            /* once a point's top k is full, a row (with a higher id than any in it) enters
             * only with a higher score than its k-th: most rows enter no point's, which one
             * vectorised pass over the block tells */
            const float *a = x->acc + t * ld, bt = bias[t];
            if (full == nb) {
                int any = 0;
                for (int64_t i = 0; i < nb; i++) any |= bt + a[i] > worst[i];
                if (!any) continue;
            }
            for (int64_t i = 0; i < nb; i++) {
                const float z = bt + a[i];
                if (!(z > worst[i]) && filled[i] == k) continue;
                float *sc = scores_out + i * k;
                const int was = filled[i];
                spr_topk_push(ids_out + i * k, sc, k, &filled[i], (int32_t)(j0 + t), z);
                if (filled[i] == k) worst[i] = sc[k - 1], full += was < k;
            }
        }
    }
    for (int64_t i = 0; i < nb; i++)
        for (int s = filled[i]; s < k; s++) {
            ids_out[i * k + s] = -1;
            scores_out[i * k + s] = -INFINITY;
        }
}

/* Exact top-k of the points rows[b0..b1) (at most SPR_EXACT_BLOCK): their hidden vectors,
 * then spr_exact_topk. */
static void predict_block_exact(const spr_model *m, const spr_settled *sv, void *buf,
                                const spr_dataset_view *d, const int64_t *rows, int64_t b0,
                                int64_t b1, int k, float *ha, float *hb, spr_exact_scratch *x,
                                int32_t *ids_out, float *scores_out) {
    const spr_layer *Lo = &m->layers[m->n_layers - 1];
    const int64_t stride = spr_row_stride(Lo->fan_in);
    for (int64_t i = 0; i < b1 - b0; i++) {
        float *h;
        spr_model_hidden_dense(m, sv, buf, d, rows ? rows[b0 + i] : b0 + i, ha, hb, &h);
        memcpy(x->hid + i * stride, h, (size_t)Lo->fan_in * sizeof(float));
    }
    spr_exact_topk(m, sv, buf, x, x->hid, stride, b1 - b0, k, ids_out + b0 * k,
                   scores_out + b0 * k);
}

/* Sparse top-k of one point: only the neurons in the L buckets its hidden vector hashes
 * to (no random neurons, no labels). */
static void predict_point_sparse(const spr_model *m, const spr_settled *sv, void *buf,
                                 const spr_dataset_view *d, int64_t row, int k, float *ha,
                                 float *hb, spr_scratch *s, int32_t *ids_out, float *scores_out) {
    const spr_layer *Lo = &m->layers[m->n_layers - 1];
    float *h;
    spr_model_hidden_dense(m, sv, buf, d, row, ha, hb, &h);
    int64_t n = spr_layer_select(Lo, h, NULL, 0, 1, s, NULL, s->ids[0], NULL, 0);
    int filled = 0;
    for (int64_t a = 0; a < n; a++) {
        int32_t j = s->ids[0][a];
        float b;
        const spr_row_at at = spr_settled_row(sv, Lo, j, buf, &b);
        float z = b + spr_row_at_dot(Lo, &at, h);
        spr_topk_push(ids_out, scores_out, k, &filled, j, z);
    }
    for (int q = filled; q < k; q++) ids_out[q] = -1, scores_out[q] = -INFINITY;
}

/* rows[0..n) (NULL: all points) are points of a data set of n_points. */
static spr_status check_rows(const int64_t *rows, int64_t n, int64_t n_points) {
    for (int64_t i = 0; rows && i < n; i++)
        if (rows[i] < 0 || rows[i] >= n_points)
            return spr_fail(SPR_STATUS_BAD_INPUT, "row %lld out of range [0, %lld)", (long long)rows[i],
                            (long long)n_points);
    return SPR_STATUS_OK;
}

spr_status spr_model_predict(const spr_model *m, const spr_dataset *data, const int64_t *rows,
                             int64_t n, int k, int sparse, int threads, int32_t *ids_out,
                             float *scores_out) {
    if (!m || !data || !ids_out || !scores_out)
        return spr_fail(SPR_STATUS_BAD_INPUT, "predict: NULL argument");
    const spr_dataset_view *d = &data->view;
    if (!rows) n = d->n_points;
    const spr_layer *Lo = &m->layers[m->n_layers - 1];
    if (k < 1 || k > SPR_MAX_K)
        return spr_fail(SPR_STATUS_BAD_INPUT, "k must be in [1, %d], got %d", SPR_MAX_K, k);
    if (d->n_features > m->cfg.n_features)
        return spr_fail(SPR_STATUS_BAD_INPUT, "data has %lld features, the model %lld",
                        (long long)d->n_features, (long long)m->cfg.n_features);
    spr_status rst = check_rows(rows, n, d->n_points);
    if (rst != SPR_STATUS_OK) return rst;
    if (sparse && spr_model_tables_missing(m))
        return spr_fail(SPR_STATUS_BAD_INPUT, SPR_NO_TABLES, "sparse inference");
    if (sparse && !Lo->sampled)
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "sparse inference needs a sampled output layer (sparsity < 1)");
    if (n <= 0) return SPR_STATUS_OK;
    threads = spr_threads(threads);
    const int64_t h = max_hidden(m), hstride = spr_row_stride(h);
    spr_settled sv; /* rows that owe Adam steps are read as settled (model.h) */
    const int no_table = spr_settled_init(&sv, m) != SPR_STATUS_OK;
    int failed = no_table;
    const size_t buf_bytes = spr_settled_buf_bytes(&sv);
    const int64_t block = spr_exact_block(n, threads);

#pragma omp parallel num_threads(threads)
    {
        /* Per-thread buffers: inference is not a training step, it may allocate. */
        float *ha = spr_alloc((size_t)hstride * 4), *hb = spr_alloc((size_t)hstride * 4);
        spr_exact_scratch ex = {NULL, NULL, NULL, NULL, NULL, NULL};
        void *buf = buf_bytes ? spr_alloc(buf_bytes) : NULL;
        spr_scratch samp;
        memset(&samp, 0, sizeof samp);
        int ok = ha && hb && (buf || !buf_bytes) && !no_table &&
                 (sparse ? spr_sampler_scratch(Lo, &samp) : spr_exact_scratch_make(&ex, Lo->fan_in));
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        if (sparse) {
#pragma omp for schedule(dynamic, 16)
            for (int64_t i = 0; i < n; i++) {
                if (!ok) continue;
                predict_point_sparse(m, &sv, buf, d, rows ? rows[i] : i, k, ha, hb, &samp,
                                     ids_out + i * k, scores_out + i * k);
            }
        } else {
#pragma omp for schedule(dynamic, 1)
            for (int64_t b0 = 0; b0 < n; b0 += block) {
                if (!ok) continue;
                int64_t b1 = b0 + block < n ? b0 + block : n;
                predict_block_exact(m, &sv, buf, d, rows, b0, b1, k, ha, hb, &ex, ids_out,
                                    scores_out);
            }
        }
        spr_free(ha);
        spr_free(hb);
        spr_free(ex.block);
        spr_free(buf);
        if (sparse) spr_sampler_scratch_free(&samp);
    }
    spr_settled_free(&sv);
    spr_status st = failed ? spr_fail(SPR_STATUS_NO_MEMORY, "out of memory in predict") : SPR_STATUS_OK;
    if (m->dist) { /* a sharded model: this rank's top-k in global ids, then all ranks' */
        if ((st = spr_dist_agree(m->dist, st, "predicting"))) return st; /* none waits for a failed one */
        for (int64_t q = 0; q < n * k; q++)
            if (ids_out[q] >= 0) ids_out[q] += (int32_t)m->label_lo;
        return spr_dist_merge_topk(m->dist, ids_out, scores_out, n, k);
    }
    return st;
}

/* An exclusion list fits data: one entry per point, labels within the model's. */
static spr_status check_exclude(const spr_model *m, const spr_dataset *data, const spr_dataset *exclude) {
    if (!exclude) return SPR_STATUS_OK;
    if (exclude->view.n_points != data->view.n_points)
        return spr_fail(SPR_STATUS_BAD_INPUT, "the exclusions name %lld points, the data has %lld",
                        (long long)exclude->view.n_points, (long long)data->view.n_points);
    if (exclude->view.n_labels > m->label_total)
        return spr_fail(SPR_STATUS_BAD_INPUT, "the exclusions have %lld labels, the model's output %lld",
                        (long long)exclude->view.n_labels, (long long)m->label_total);
    return SPR_STATUS_OK;
}

/* The most labels exclude removes from any of rows[0..n). */
static int64_t most_excluded(const spr_dataset *exclude, const int64_t *rows, int64_t n) {
    int64_t most = 0;
    for (int64_t i = 0; exclude && i < n; i++) {
        const int64_t r = rows ? rows[i] : i;
        const int64_t c = exclude->view.label_indptr[r + 1] - exclude->view.label_indptr[r];
        if (c > most) most = c;
    }
    return most;
}

/* Ranks k + the most excluded labels of rows[0..n) into ids/scores (room for n (k + most)),
 * then keeps in out_ids/out_scores (n, k) each point's first k that exclude does not name
 * (padding -1 / -inf). */
static spr_status predict_excluding(const spr_model *m, const spr_dataset *data, const int64_t *rows,
                                    int64_t n, int k, int64_t most, int sparse, int threads,
                                    const spr_dataset *exclude, int32_t *ids, float *scores,
                                    int32_t *out_ids, float *out_scores) {
    const int kk = (int)(k + most);
    spr_status st = spr_model_predict(m, data, rows, n, kk, sparse, threads, ids, scores);
    if (st != SPR_STATUS_OK) return st;
    const spr_dataset_view *x = &exclude->view;
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i;
        const int32_t *gone = x->labels + x->label_indptr[r];
        const int64_t n_gone = x->label_indptr[r + 1] - x->label_indptr[r];
        int kept = 0;
        for (int j = 0; j < kk && kept < k; j++) {
            const int32_t id = ids[i * kk + j];
            if (id >= 0 && spr_sorted_contains(gone, n_gone, id)) continue;
            out_ids[i * k + kept] = id;
            out_scores[i * k + kept++] = scores[i * kk + j];
        }
        for (; kept < k; kept++) out_ids[i * k + kept] = -1, out_scores[i * k + kept] = -INFINITY;
    }
    return SPR_STATUS_OK;
}

spr_status spr_model_predict_excluding(const spr_model *m, const spr_dataset *data, const int64_t *rows,
                                       int64_t n, int k, int sparse, int threads, const spr_dataset *exclude,
                                       int32_t *ids_out, float *scores_out) {
    if (!exclude) return spr_model_predict(m, data, rows, n, k, sparse, threads, ids_out, scores_out);
    if (!m || !data || !ids_out || !scores_out)
        return spr_fail(SPR_STATUS_BAD_INPUT, "predict: NULL argument");
    spr_status st = check_exclude(m, data, exclude);
    if (st != SPR_STATUS_OK) return st;
    if (!rows) n = data->view.n_points;
    if ((st = check_rows(rows, n, data->view.n_points)) != SPR_STATUS_OK) return st; /* before most_excluded */
    const int64_t most = most_excluded(exclude, rows, n);
    if (k < 1 || k + most > SPR_MAX_K)
        return spr_fail(SPR_STATUS_BAD_INPUT, "k %d plus the %lld labels excluded from a point must be in "
                                              "[1, %d]", k, (long long)most, SPR_MAX_K);
    enum { CHUNK = 1024 }; /* the wider ranking of a chunk at a time */
    int32_t *ids = spr_alloc((size_t)CHUNK * (size_t)(k + most) * sizeof(int32_t));
    float *scores = spr_alloc((size_t)CHUNK * (size_t)(k + most) * sizeof(float));
    int64_t *chunk_rows = spr_alloc((size_t)CHUNK * sizeof(int64_t));
    if (!ids || !scores || !chunk_rows) st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory in predict");
    if (m->dist) st = spr_dist_agree(m->dist, st, "predicting");
    for (int64_t c0 = 0; st == SPR_STATUS_OK && c0 < n; c0 += CHUNK) {
        const int64_t c = n - c0 < CHUNK ? n - c0 : CHUNK;
        for (int64_t i = 0; i < c; i++) chunk_rows[i] = rows ? rows[c0 + i] : c0 + i;
        st = predict_excluding(m, data, chunk_rows, c, k, most_excluded(exclude, chunk_rows, c), sparse,
                               threads, exclude, ids, scores, ids_out + c0 * k, scores_out + c0 * k);
    }
    spr_free(ids);
    spr_free(scores);
    spr_free(chunk_rows);
    return st;
}

spr_status spr_model_evaluate(const spr_model *m, const spr_dataset *data, const int64_t *rows,
                              int64_t n, int sparse, int threads, spr_eval_result *out) {
    return spr_model_evaluate_excluding(m, data, rows, n, sparse, threads, NULL, 0, NULL, out);
}

spr_status spr_model_evaluate_ps(const spr_model *m, const spr_dataset *data, const int64_t *rows,
                                 int64_t n, int sparse, int threads, const double *inv_prop,
                                 int64_t n_prop, spr_eval_result *out) {
    return spr_model_evaluate_excluding(m, data, rows, n, sparse, threads, inv_prop, n_prop, NULL, out);
}

spr_status spr_model_evaluate_excluding(const spr_model *m, const spr_dataset *data, const int64_t *rows,
                                        int64_t n, int sparse, int threads, const double *inv_prop,
                                        int64_t n_prop, const spr_dataset *exclude, spr_eval_result *out) {
    if (!m || !data || !out) return spr_fail(SPR_STATUS_BAD_INPUT, "evaluate: NULL argument");
    const spr_dataset_view *d = &data->view;
    if (!rows) n = d->n_points;
    memset(out, 0, sizeof *out);
    out->n_points = n;
    if (d->n_labels > m->label_total)
        return spr_fail(SPR_STATUS_BAD_INPUT, "data has %lld labels, the model's output %lld",
                        (long long)d->n_labels, (long long)m->label_total);
    if (inv_prop && n_prop < d->n_labels)
        return spr_fail(SPR_STATUS_BAD_INPUT, "data has %lld labels, the propensities %lld",
                        (long long)d->n_labels, (long long)n_prop);
    for (int64_t l = 0; inv_prop && l < n_prop; l++) /* a weight, so finite and > 0 */
        if (!(inv_prop[l] > 0.0 && inv_prop[l] < HUGE_VAL))
            return spr_fail(SPR_STATUS_BAD_INPUT, "inverse propensity of label %lld must be finite "
                            "and > 0, got %g", (long long)l, inv_prop[l]);
    spr_status st = check_exclude(m, data, exclude);
    if (st != SPR_STATUS_OK) return st;
    if ((st = check_rows(rows, n, d->n_points)) != SPR_STATUS_OK) return st; /* before most_excluded */
    /* Each chunk ranks 5 + the most labels excluded from one of its points, and keeps the
     * first 5 not excluded (spr_model_predict_excluding's way). */
    const int64_t most = most_excluded(exclude, rows, n);
    if (5 + most > SPR_MAX_K)
        return spr_fail(SPR_STATUS_BAD_INPUT, "a point has %lld labels excluded: at most %d", (long long)most,
                        SPR_MAX_K - 5);
    double t0 = spr_now();
    enum { K = 5, CHUNK = 4096 };
    int32_t *ids = spr_alloc((size_t)CHUNK * K * sizeof(int32_t));
    float *scores = spr_alloc((size_t)CHUNK * K * sizeof(float));
    int64_t *chunk_rows = spr_alloc((size_t)CHUNK * sizeof(int64_t));
    int32_t *wide_ids = most ? spr_alloc((size_t)CHUNK * (size_t)(K + most) * sizeof(int32_t)) : NULL;
    float *wide_scores = most ? spr_alloc((size_t)CHUNK * (size_t)(K + most) * sizeof(float)) : NULL;
    if (!ids || !scores || !chunk_rows || (most && (!wide_ids || !wide_scores)))
        st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory in evaluate");
    if (m->dist) st = spr_dist_agree(m->dist, st, "evaluating"); /* none waits for a failed one */
    if (st) goto done;
    double sum[K + 1] = {0}, sum_ndcg[K + 1] = {0}, psp_num[K + 1] = {0}, psp_den[K + 1] = {0};
    double psn_num[K + 1] = {0}, psn_den[K + 1] = {0};
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        int64_t c = n - c0 < CHUNK ? n - c0 : CHUNK;
        for (int64_t i = 0; i < c; i++) chunk_rows[i] = rows ? rows[c0 + i] : c0 + i;
        const int64_t chunk_most = most_excluded(exclude, chunk_rows, c);
        st = chunk_most ? predict_excluding(m, data, chunk_rows, c, K, chunk_most, sparse, threads, exclude,
                                            wide_ids, wide_scores, ids, scores)
                        : spr_model_predict(m, data, chunk_rows, c, K, sparse, threads, ids, scores);
        if (st) goto done;
        double p[K + 1], g[K + 1];
        spr_rank_metrics(ids, c, K, K, d, chunk_rows, p, g);
        for (int q = 1; q <= K; q++) sum[q] += p[q] * (double)c, sum_ndcg[q] += g[q] * (double)c;
        if (inv_prop)
            spr_psp_sums(ids, c, K, K, d, chunk_rows, inv_prop, psp_num, psp_den, psn_num, psn_den);
    }
    for (int q = 1; q <= K && n > 0; q++) {
        out->p_at[q] = sum[q] / (double)n;
        out->ndcg_at[q] = sum_ndcg[q] / (double)n;
        out->psp_at[q] = psp_den[q] > 0.0 ? psp_num[q] / psp_den[q] : 0.0;
        out->psndcg_at[q] = psn_den[q] > 0.0 ? psn_num[q] / psn_den[q] : 0.0;
    }
    out->seconds = spr_now() - t0;
done:
    spr_free(ids);
    spr_free(scores);
    spr_free(chunk_rows);
    spr_free(wide_ids);
    spr_free(wide_scores);
    return st;
}

spr_status spr_model_sampling_recall(const spr_model *m, const spr_dataset *data,
                                     const int64_t *rows, int64_t n, int top, int threads,
                                     double *recall) {
    if (!m || !data || !recall) return spr_fail(SPR_STATUS_BAD_INPUT, "recall: NULL argument");
    const spr_dataset_view *d = &data->view;
    const spr_layer *Lo = &m->layers[m->n_layers - 1];
    if (!rows) n = d->n_points;
    if (spr_model_tables_missing(m)) return spr_fail(SPR_STATUS_BAD_INPUT, SPR_NO_TABLES, "recall");
    if (!Lo->sampled)
        return spr_fail(SPR_STATUS_BAD_INPUT, "recall needs a sampled output layer (sparsity < 1)");
    if (top < 1 || top > 1000 || top > Lo->size)
        return spr_fail(SPR_STATUS_BAD_INPUT, "top must be in [1, min(1000, outputs)], got %d", top);
    if (d->n_features > m->cfg.n_features)
        return spr_fail(SPR_STATUS_BAD_INPUT, "data has %lld features, the model %lld",
                        (long long)d->n_features, (long long)m->cfg.n_features);
    *recall = 0.0;
    if (n <= 0) return SPR_STATUS_OK;
    threads = spr_threads(threads);
    const int64_t hstride = spr_row_stride(max_hidden(m));
    double total = 0.0;
    spr_settled sv; /* as in predict */
    const int no_table = spr_settled_init(&sv, m) != SPR_STATUS_OK;
    int failed = no_table;
    const size_t buf_bytes = spr_settled_buf_bytes(&sv);
    const int64_t block = spr_exact_block(n, threads), stride = spr_row_stride(Lo->fan_in);
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        float *ha = spr_alloc((size_t)hstride * 4), *hb = spr_alloc((size_t)hstride * 4);
        int32_t *best = spr_alloc((size_t)(block * top) * 4); /* (block, top) exact tops */
        float *best_scores = spr_alloc((size_t)(block * top) * 4);
        void *buf = buf_bytes ? spr_alloc(buf_bytes) : NULL;
        spr_exact_scratch ex = {NULL, NULL, NULL, NULL, NULL, NULL};
        spr_scratch samp;
        memset(&samp, 0, sizeof samp);
        int ok = ha && hb && best && best_scores && spr_sampler_scratch(Lo, &samp) &&
                 spr_exact_scratch_make(&ex, Lo->fan_in) && (buf || !buf_bytes) && !no_table;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b0 = 0; b0 < n; b0 += block) {
            if (!ok) continue;
            const int64_t nb = n - b0 < block ? n - b0 : block;
            for (int64_t i = 0; i < nb; i++) {
                float *h;
                spr_model_hidden_dense(m, &sv, buf, d, rows ? rows[b0 + i] : b0 + i, ha, hb, &h);
                memcpy(ex.hid + i * stride, h, (size_t)Lo->fan_in * sizeof(float));
            }
            /* the exact top of the block as predict ranks it (every output: top of them) */
            spr_exact_topk(m, &sv, buf, &ex, ex.hid, stride, nb, top, best, best_scores);
            for (int64_t i = 0; i < nb; i++) {
                const int64_t row = rows ? rows[b0 + i] : b0 + i;
                spr_rng rng;
                spr_rng_seed(&rng, spr_mix64(m->cfg.seed ^ 0x2ec411ull) ^ spr_mix64((uint64_t)row));
                int64_t na = spr_layer_select(Lo, ex.hid + i * stride, NULL, 0, 0, &samp, &rng,
                                              samp.ids[0], NULL, 0);
                int hits = 0;
                for (int q = 0; q < top; q++)
                    hits += spr_sorted_contains(samp.ids[0], na, best[i * top + q]);
                total += (double)hits / (double)top;
            }
        }
        spr_free(ha), spr_free(hb), spr_free(best), spr_free(best_scores), spr_free(buf);
        spr_free(ex.block);
        spr_sampler_scratch_free(&samp);
    }
    spr_settled_free(&sv);
    if (failed) return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory in recall");
    *recall = total / (double)n;
    return SPR_STATUS_OK;
}

/*
 * external.c: the output layer of a model driven by inputs computed outside sparrow
 * (a PyTorch encoder, any dense features): one training step on a batch of dense rows
 * that hands back dLoss/dinput, and top-k prediction from dense rows. Only the output
 * layer is read or written; the layers below it are ignored (the PyTorch layer builds
 * a model whose layer 0 is a placeholder of the right width).
 *
 * The arithmetic is the same as train.c's for the output layer (same kernels, same
 * order, same sampler), so with sparsity 1 a step matches softmax cross-entropy over a
 * dense linear layer (the test against torch.nn.functional.cross_entropy). A sampled
 * layer takes train.c's fused step of the output layer alone
 * (spr_output_forward_deferred, spr_output_step_deferred: the logits a row at a time for
 * the batch, dLoss/dinput in the optimizer's row pass, no gradient rows); with one
 * thread it is the per-sample path below bit for bit (test_external; clipped, to the
 * rounding of the norm, summed in another order), which the dense layer takes. Either
 * way the Adam step is the output layer's only (the rehash schedule is train.c's):
 * spr_model_apply_gradients would also move layer 0's bias (its dense Adam update runs
 * even with a zero gradient once its moments are non-zero).
 */
#include "common.h"
#include "kernels.h"
#include "metrics.h"
#include "model.h"

#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static inline void mark_touched(spr_layer *L, int32_t row) {
    if (atomic_load_explicit(&L->touched[row], memory_order_relaxed)) return;
    if (!atomic_exchange_explicit(&L->touched[row], 1, memory_order_relaxed)) {
        long long slot = atomic_fetch_add_explicit(&L->n_touched, 1, memory_order_relaxed);
        L->touched_list[slot] = row;
    }
}

/* The caller's input (n, fan_in) must be finite: a NaN or an infinity from the layers
 * before this one would otherwise show up as this layer's loss diverging ("try a lower
 * lr") or as NaN scores. One branch-free pass (the exponent bits), O(n fan_in), against
 * the layer's O(n active fan_in); the first bad value is then found for the message. */
static spr_status check_input(const float *input, int64_t n, int64_t fan_in, const char *what) {
    const int64_t count = n * fan_in;
    uint32_t bad = 0;
    for (int64_t i = 0; i < count; i++) {
        uint32_t u; /* memcpy, not a cast: the floats are read as bits without aliasing */
        memcpy(&u, input + i, sizeof u);
        bad |= (u & 0x7F800000u) == 0x7F800000u;
    }
    if (!bad) return SPR_STATUS_OK;
    int64_t i = 0;
    while (isfinite(input[i])) i++;
    return spr_fail(SPR_STATUS_BAD_INPUT,
                    "%s: input row %lld, column %lld is %s (did the layers before this one diverge?)",
                    what, (long long)(i / fan_in), (long long)(i % fan_in), isnan(input[i]) ? "nan" : "inf");
}

/* Checks labels: (n + 1) offsets from 0, non-decreasing; each row's ids strictly
 * ascending and below size. Sets *max_labels to the longest row. */
static spr_status check_labels(const int64_t *indptr, const int32_t *labels, int64_t n,
                               int64_t size, int64_t *max_labels) {
    if (indptr[0] != 0) return spr_fail(SPR_STATUS_BAD_INPUT, "label offsets must start at 0, got %lld",
                                        (long long)indptr[0]);
    *max_labels = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = indptr[i], b = indptr[i + 1];
        if (b < a)
            return spr_fail(SPR_STATUS_BAD_INPUT, "label offsets decrease at row %lld", (long long)i);
        if (b - a > *max_labels) *max_labels = b - a;
        for (int64_t p = a; p < b; p++) {
            if (labels[p] < 0 || labels[p] >= size)
                return spr_fail(SPR_STATUS_BAD_INPUT, "row %lld: label %d out of range [0, %lld)",
                                (long long)i, labels[p], (long long)size);
            if (p > a && labels[p] <= labels[p - 1])
                return spr_fail(SPR_STATUS_BAD_INPUT,
                                "row %lld: labels must be ascending without duplicates (%d after %d)",
                                (long long)i, labels[p], labels[p - 1]);
        }
    }
    return SPR_STATUS_OK;
}

/* One sample: active set, logits, softmax cross-entropy with the target spread evenly
 * over the labels, then the gradients: into the shared output rows (HOGWILD, as in
 * train.c) and, densely, into grad (fan_in). Returns the loss. */
static float output_sample(spr_layer *Lo, const float *h, const int32_t *labels, int64_t n_labels,
                           int dense, float inv_batch, spr_scratch *s, int lo_index, uint64_t seed,
                           float *grad, int64_t *active) {
    spr_rng rng;
    spr_rng_seed(&rng, seed);
    int32_t *ids = NULL;
    int64_t n = Lo->size;
    if (Lo->sampled && !dense) {
        ids = s->ids[lo_index];
        n = spr_layer_select(Lo, h, labels, n_labels, 0, s, &rng, ids, Lo->pool_ids, Lo->n_pool);
    }
    float *z = s->act[lo_index], *delta = s->delta[lo_index];
    float zmax = -INFINITY;
    for (int64_t a = 0; a < n; a++) {
        int32_t j = ids ? ids[a] : (int32_t)a;
        z[a] = Lo->b[j] + spr_layer_dot(Lo, j, h);
        if (z[a] > zmax) zmax = z[a];
    }
    *active = n;
    memset(grad, 0, (size_t)Lo->fan_in * sizeof(float));
    if (n_labels == 0) return 0.0f; /* an all-zero target: no loss, no gradient */
    float sum = 0.0f;
    for (int64_t a = 0; a < n; a++) {
        delta[a] = expf(z[a] - zmax);
        sum += delta[a];
    }
    const float log_sum = logf(sum), inv_sum = 1.0f / sum, target = 1.0f / (float)n_labels;
    float loss = 0.0f;
    int64_t li = 0;
    for (int64_t a = 0; a < n; a++) {
        int32_t j = ids ? ids[a] : (int32_t)a;
        float t = 0.0f;
        while (li < n_labels && labels[li] < j) li++;
        if (li < n_labels && labels[li] == j) {
            t = target;
            loss -= target * (z[a] - zmax - log_sum);
        }
        delta[a] = (delta[a] * inv_sum - t) * inv_batch;
    }
    for (int64_t a = 0; a < n; a++) {
        int32_t j = ids ? ids[a] : (int32_t)a;
        const float d = delta[a];
        mark_touched(Lo, j);
        Lo->gb[j] += d;
        spr_axpy(d, h, Lo->gw + (int64_t)j * Lo->stride, Lo->fan_in);
        spr_layer_axpy(Lo, d, j, grad);
    }
    return loss;
}

/* Clears the output layer's gradient rows and touched list. */
static void output_zero(spr_layer *Lo) {
    const int64_t nt = atomic_load(&Lo->n_touched);
    for (int64_t k = 0; k < nt; k++) {
        int32_t r = Lo->touched_list[k];
        memset(Lo->gw + (int64_t)r * Lo->stride, 0, (size_t)Lo->cols * sizeof(float));
        Lo->gb[r] = 0.0f;
        atomic_store(&Lo->touched[r], 0);
    }
    atomic_store(&Lo->n_touched, 0);
}

/* Clipping (optional) and lazy Adam on the touched output rows, as train.c does. */
static void output_step(spr_model *m, spr_layer *Lo, const spr_train_options *o, int threads) {
    const int64_t nt = atomic_load(&Lo->n_touched);
    if (o->clip_norm > 0.0f) {
        double sq = 0.0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : sq)
        for (int64_t k = 0; k < nt; k++) {
            int32_t r = Lo->touched_list[k];
            const float *g = Lo->gw + (int64_t)r * Lo->stride;
            double row = (double)Lo->gb[r] * Lo->gb[r];
            for (int64_t c = 0; c < Lo->cols; c++) row += (double)g[c] * g[c];
            sq += row;
        }
        const double norm = sqrt(sq);
        if (norm > o->clip_norm) {
            const float scale = (float)(o->clip_norm / norm);
#pragma omp parallel for schedule(static) num_threads(threads)
            for (int64_t k = 0; k < nt; k++) {
                int32_t r = Lo->touched_list[k];
                float *g = Lo->gw + (int64_t)r * Lo->stride;
                for (int64_t c = 0; c < Lo->cols; c++) g[c] *= scale;
                Lo->gb[r] *= scale;
            }
        }
    }
    const double t = (double)(m->steps + 1);
    const float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
    spr_catch_up_prepare(m, o);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t k = 0; k < nt; k++) {
        int32_t r = Lo->touched_list[k];
        spr_layer_adam_row(m, Lo, r, Lo->gw + (int64_t)r * Lo->stride, o, bc1, bc2);
        spr_adam_row(Lo->b + r, Lo->gb + r, Lo->mb + r, Lo->vb + r, 1, o->lr, o->beta1, o->beta2,
                     o->eps, bc1, bc2);
        atomic_store_explicit(&Lo->touched[r], 0, memory_order_relaxed);
    }
    atomic_store(&Lo->n_touched, 0);
    m->steps++;
}

spr_status spr_model_output_train(spr_model *m, const float *input, int64_t n,
                                  const int64_t *label_indptr, const int32_t *labels,
                                  const spr_train_options *o, float *grad_input,
                                  spr_batch_stats *stats) {
    if (!m || !input || !label_indptr || !o || !grad_input)
        return spr_fail(SPR_STATUS_BAD_INPUT, "output_train: NULL argument");
    if (n < 1 || n > o->batch_size)
        return spr_fail(SPR_STATUS_BAD_INPUT, "batch of %lld rows: must be in [1, batch size %d]",
                        (long long)n, o->batch_size);
    spr_status st = spr_check_adam(o);
    if (!st) st = spr_model_check_state(m, "output_train");
    if (st) return st;
    if (!(o->clip_norm >= 0.0f))
        return spr_fail(SPR_STATUS_BAD_INPUT, "clip_norm must be >= 0, got %g", (double)o->clip_norm);
    if (spr_model_get_info(m).ranks > 1) /* the softmax would cover one shard's labels only */
        return spr_fail(SPR_STATUS_BAD_INPUT, "output_train: a sharded (MPI) model is not supported");
    const int lo_index = m->n_layers - 1;
    spr_layer *Lo = &m->layers[lo_index];
    if (!labels && label_indptr[n] > 0)
        return spr_fail(SPR_STATUS_BAD_INPUT, "output_train: labels is NULL");
    int64_t max_labels = 0;
    st = check_labels(label_indptr, labels, n, Lo->size, &max_labels);
    if (!st) st = check_input(input, n, Lo->fan_in, "output_train");
    if (st) return st;
    st = spr_model_prepare(m, o, max_labels);
    if (st) return st;
    /* A sampled layer takes the fused step (train.c: the logits a row at a time for the
     * batch, dLoss/dinput in the optimizer's row pass, or clipped in the norm's pass; no
     * gradient rows); a dense one (and m->per_sample, the tests' twin) accumulates into
     * the gradient rows, sample by sample. */
    const int deferred = spr_output_deferrable(m, o);
    if (!deferred) spr_layer_gradient_rows(Lo);
    const int threads = spr_threads(o->threads);
    const int dense = o->dense != 0;
    const float inv_batch = 1.0f / (float)n;
    const uint64_t step_seed = spr_mix64(m->cfg.seed ^ 0x3c6ef372fe94f82bull) ^
                               spr_mix64((uint64_t)m->steps);
    const int64_t fan_in = Lo->fan_in;
    spr_model_draw_pools(m, o, step_seed, 0); /* the batch's random pools, as in train.c */

    if (deferred) {
        st = spr_output_forward_deferred(m, input, n, label_indptr, labels, o, step_seed);
        if (st) return st;
    } else {
#pragma omp parallel num_threads(threads)
        {
            spr_scratch *s = spr_thread_scratch(m);
#pragma omp for schedule(dynamic, 4)
            for (int64_t i = 0; i < n; i++) {
                const int64_t a = label_indptr[i];
                m->sample_loss[i] = output_sample(Lo, input + i * fan_in, labels ? labels + a : NULL,
                                                  label_indptr[i + 1] - a, dense, inv_batch, s,
                                                  lo_index, step_seed ^ spr_mix64((uint64_t)i),
                                                  grad_input + i * fan_in,
                                                  &m->sample_active[i * SPR_MAX_LAYERS]);
            }
        }
    }
    double loss = 0.0, active = 0.0;
    for (int64_t i = 0; i < n; i++) {
        loss += m->sample_loss[i];
        active += (double)m->sample_active[i * SPR_MAX_LAYERS];
    }
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->loss = loss / (double)n;
        stats->active[lo_index] = active / (double)n;
    }
    if (!isfinite(loss)) { /* as train.c: refuse the step, keep the last good model */
        if (deferred) spr_model_zero_gradients(m);
        else output_zero(Lo);
        return spr_fail(SPR_STATUS_BAD_INPUT, "training diverged at step %lld: loss is %s (try a lower lr)",
                        (long long)m->steps + 1, isnan(loss) ? "nan" : "inf");
    }
    if (deferred) spr_output_step_deferred(m, o, grad_input);
    else output_step(m, Lo, o, threads);
    m->samples += n;

    if (!Lo->sampled || dense) return SPR_STATUS_OK;
    return spr_model_rehash_if_due(m, o, stats);
}

spr_status spr_model_output_predict(const spr_model *m, const float *input, int64_t n, int k,
                                    int sparse, int threads, int32_t *ids_out, float *scores_out) {
    if (!m || (n > 0 && (!input || !ids_out || !scores_out)))
        return spr_fail(SPR_STATUS_BAD_INPUT, "output_predict: NULL argument");
    if (k < 1 || k > SPR_MAX_K)
        return spr_fail(SPR_STATUS_BAD_INPUT, "k must be in [1, %d], got %d", SPR_MAX_K, k);
    if (spr_model_get_info(m).ranks > 1)
        return spr_fail(SPR_STATUS_BAD_INPUT, "output_predict: a sharded (MPI) model is not supported");
    const spr_layer *Lo = &m->layers[m->n_layers - 1];
    if (sparse && spr_model_tables_missing(m))
        return spr_fail(SPR_STATUS_BAD_INPUT, SPR_NO_TABLES, "sparse inference");
    if (sparse && !Lo->sampled)
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "sparse inference needs a sampled output layer (sparsity < 1)");
    if (n <= 0) return SPR_STATUS_OK;
    spr_status st = check_input(input, n, Lo->fan_in, "output_predict");
    if (st) return st;
    threads = spr_threads(threads);
    const int64_t fan_in = Lo->fan_in;
    spr_settled sv; /* rows that owe Adam steps are read as settled (model.h) */
    const int no_table = spr_settled_init(&sv, m) != SPR_STATUS_OK;
    int failed = no_table;
    const size_t buf_bytes = spr_settled_buf_bytes(&sv);
    /* exact: spr_model_predict's blocks (model.h, spr_exact_topk) */
    const int64_t block = sparse ? SPR_EXACT_BLOCK : spr_exact_block(n, threads);
#pragma omp parallel num_threads(threads)
    {
        /* Sampler scratch (what spr_layer_select reads); inference may allocate. */
        spr_scratch s;
        memset(&s, 0, sizeof s);
        spr_exact_scratch ex = {NULL, NULL, NULL, NULL, NULL, NULL};
        void *buf = buf_bytes ? spr_alloc(buf_bytes) : NULL;
        int ok = (sparse ? spr_sampler_scratch(Lo, &s) : spr_exact_scratch_make(&ex, fan_in)) &&
                 (buf || !buf_bytes) && !no_table;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b0 = 0; b0 < n; b0 += block) {
            if (!ok) continue;
            const int64_t b1 = b0 + block < n ? b0 + block : n;
            if (!sparse) {
                spr_exact_topk(m, &sv, buf, &ex, input + b0 * fan_in, fan_in, b1 - b0, k,
                               ids_out + b0 * k, scores_out + b0 * k);
                continue;
            }
            for (int64_t i = b0; i < b1; i++) { /* sparse: each point's candidates */
                const float *h = input + i * fan_in;
                int64_t na = spr_layer_select(Lo, h, NULL, 0, 1, &s, NULL, s.ids[0], NULL, 0);
                int filled = 0;
                for (int64_t a = 0; a < na; a++) {
                    int32_t j = s.ids[0][a];
                    float b;
                    const spr_row_at at = spr_settled_row(&sv, Lo, j, buf, &b);
                    spr_topk_push(ids_out + i * k, scores_out + i * k, k, &filled, j,
                                  b + spr_row_at_dot(Lo, &at, h));
                }
                for (int q = filled; q < k; q++) {
                    ids_out[i * k + q] = -1;
                    scores_out[i * k + q] = -INFINITY;
                }
            }
        }
        spr_sampler_scratch_free(&s); /* all NULL when not sparse */
        spr_free(ex.block);
        spr_free(buf);
    }
    spr_settled_free(&sv);
    if (failed) return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory in output_predict");
    return SPR_STATUS_OK;
}

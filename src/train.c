/*
 * train.c: the training step. For every sample of a batch, in parallel (one sample per
 * thread at a time, HOGWILD):
 *
 *   layer 0      h0 = relu(b0 + sum_f x_f W0[f])             embedding bag, O(nnz x size0)
 *   layer l > 0  active set S_l (all neurons, or LSH-sampled), z_j = b_j + W_j . h_{l-1}
 *                for j in S_l; relu on hidden layers, softmax over S_l on the output
 *   loss         cross-entropy with the target 1/|labels| on each label (labels are
 *                always in the output's active set during training)
 *   backward     through the active neurons only; gradients are added into the shared
 *                gradient rows and the rows are recorded as touched
 *
 * then lazy Adam on the touched rows only, and a rehash when the schedule says so.
 * Nothing here allocates: all scratch is made by spr_model_prepare.
 *
 * The fused step (a sampled output after a dense layer, spr_model_train_batch:
 * spr_deferred below) runs the output layer by rows instead of by samples: each
 * sample's pass stops at its active set (keeping its activations for the backward); the
 * batch's entries (sample, active row) are grouped by row, and every row is read once
 * for all its entries: z = b + W_r . h_i (output_forward_grouped), each sample's softmax,
 * then one pass that forms each row's gradient and its terms of the samples' input
 * gradients and steps it (deferred_adam); the backward below the output layer last
 * (fused_backward). Clipped, the row pass runs twice: once for the norm and the input
 * gradient (deferred_norm_pass), once to step with the scale. With one thread it is the
 * per-sample path bit for bit.
 *
 * Benign races (HOGWILD, as SLIDE): two threads may add into the same gradient row at
 * once (a frequent feature's embedding row, the shared bias of layer 0, an output
 * neuron active for two samples); one addition can then be lost. This perturbs the
 * gradient slightly, like the noise SGD already tolerates; with threads = 1 there is no
 * race and results are bit-for-bit reproducible. The touched list itself is race-free
 * (an atomic exchange on the row's flag admits each row once).
 *
 * Active sets come sorted by neuron id from spr_layer_select (sample.c): rows are
 * visited in memory order, and a sampled layer whose active set happens to be every
 * neuron computes exactly what the dense path computes, in the same order, so the two
 * are bit-identical (the test of the sampled path).
 */
#include "common.h"
#include "data.h"
#include "dist.h"
#include "kernels.h"
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* One layer's activation for one sample: n values; ids == NULL means value a belongs to
 * neuron a (the whole layer is active). */
typedef struct act_view {
    int64_t n;
    const int32_t *ids; /* (n) ascending, or NULL */
    float *val;         /* (n) */
    float *delta;       /* (n) dLoss/d pre-activation */
} act_view;

static inline void mark_touched(spr_layer *L, int32_t row) {
    if (atomic_load_explicit(&L->touched[row], memory_order_relaxed)) return;
    if (!atomic_exchange_explicit(&L->touched[row], 1, memory_order_relaxed)) {
        long long slot = atomic_fetch_add_explicit(&L->n_touched, 1, memory_order_relaxed);
        L->touched_list[slot] = row;
    }
}

/* z_j = b_j + W_j . input for the active neurons of layer L. */
/* Sampled rows are scattered over the layer (about size / active rows apart): the
 * hardware prefetchers do not follow them, and each row would cost a full memory
 * latency. Asking for the row PREFETCH_AHEAD places ahead keeps several in flight;
 * into L2 (locality 2, prefetcht1) for the reason ADAM_LOCALITY gives below. On the Zen 5
 * machine, the 20,000-point epoch less its rehash and optimizer (3 interleaved runs): 4
 * ahead into L1 4.9-5.6 s (670K, float), 3.5-3.7 s (2M, --bf16-weights); 16 ahead into L2
 * 4.4-5.1 s and 3.0-3.2 s; 100K unchanged within the noise. On the Intel machine
 * (session 8; 2M --bf16-weights, the same measure, 3 interleaved rounds): 8 ahead 3.63,
 * 3.66, 3.49 s; 16: 3.28, 3.31, 3.29 s; 32: 2.91, 2.91, 2.86 s; 100K unchanged. */
#define PREFETCH_AHEAD 32
#define PREFETCH_LOCALITY 2
static inline SPR_ALWAYS_INLINE void prefetch_row(const spr_layer *L, int64_t j) {
    const char *row = spr_layer_row(L, j);
    for (int64_t c = 0; c < spr_layer_row_bytes(L); c += 64)
        __builtin_prefetch(row + c, 0, PREFETCH_LOCALITY);
}

/* (A sparse input never meets BF16 rows: spr_model_config_check.) The bias of a sampled
 * neuron is as far from the last one's as its row: it is prefetched with the row (without
 * it the bias load was 20% of a 670K-label step). */
static void layer_forward(const spr_layer *L, const act_view *in, act_view *out) {
    for (int64_t a = 0; a < out->n; a++) {
        int32_t j = out->ids ? out->ids[a] : (int32_t)a;
        if (out->ids && a + PREFETCH_AHEAD < out->n) {
            prefetch_row(L, out->ids[a + PREFETCH_AHEAD]);
            __builtin_prefetch(L->b + out->ids[a + PREFETCH_AHEAD], 0, PREFETCH_LOCALITY);
        }
        float z = in->ids ? spr_dot_sparse(L->w + (int64_t)j * L->stride, in->ids, in->val, in->n)
                          : spr_layer_dot(L, j, in->val);
        out->val[a] = L->b[j] + z;
    }
}

/* Adds the gradients of the active neurons of L (out->delta) into the shared rows (unless
 * rows_deferred: the optimizer forms them later from the deferred entries) and, if
 * in->delta is not NULL, the gradient with respect to the input into in->delta. */
static void layer_backward(spr_layer *L, const act_view *in, const act_view *out,
                           int rows_deferred) {
    if (rows_deferred) { /* the rows' gradient waits (spr_deferred): only in->delta */
        for (int64_t a = 0; a < out->n; a++) {
            if (a + PREFETCH_AHEAD < out->n) prefetch_row(L, out->ids[a + PREFETCH_AHEAD]);
            if (in->ids) { /* a sampled input: as below (float rows only) */
                const float *w = L->w + (int64_t)out->ids[a] * L->stride;
                for (int64_t p = 0; p < in->n; p++) in->delta[p] += out->delta[a] * w[in->ids[p]];
            } else {
                spr_layer_axpy(L, out->delta[a], out->ids[a], in->delta);
            }
        }
        return;
    }
    for (int64_t a = 0; a < out->n; a++) {
        int32_t j = out->ids ? out->ids[a] : (int32_t)a;
        float d = out->delta[a];
        float *gw = L->gw + (int64_t)j * L->stride;
        mark_touched(L, j);
        L->gb[j] += d;
        if (in->ids) { /* float rows only (spr_model_config_check) */
            const float *w = L->w + (int64_t)j * L->stride;
            for (int64_t p = 0; p < in->n; p++) gw[in->ids[p]] += d * in->val[p];
            if (in->delta)
                for (int64_t p = 0; p < in->n; p++) in->delta[p] += d * w[in->ids[p]];
        } else {
            spr_axpy(d, in->val, gw, in->n);
            if (in->delta) spr_layer_axpy(L, d, j, in->delta);
        }
    }
}

/* Softmax over the active output neurons, the loss, and delta = (p - target) / batch.
 * labels are sorted and all active (training injects them). Returns the loss. */
static float softmax_loss(act_view *out, const int32_t *labels, int64_t n_labels, float inv_batch) {
    float zmax = -INFINITY;
    for (int64_t a = 0; a < out->n; a++)
        if (out->val[a] > zmax) zmax = out->val[a];
    float sum = 0.0f;
    for (int64_t a = 0; a < out->n; a++) {
        out->delta[a] = out->val[a]; /* keep z for the loss */
        out->val[a] = expf(out->val[a] - zmax);
        sum += out->val[a];
    }
    const float log_sum = logf(sum), inv_sum = 1.0f / sum, target = 1.0f / (float)n_labels;
    float loss = 0.0f;
    int64_t li = 0;
    for (int64_t a = 0; a < out->n; a++) {
        int32_t j = out->ids ? out->ids[a] : (int32_t)a;
        float p = out->val[a] * inv_sum, t = 0.0f;
        while (li < n_labels && labels[li] < j) li++;
        if (li < n_labels && labels[li] == j) {
            t = target;
            loss -= target * (out->delta[a] - zmax - log_sum);
        }
        out->val[a] = p;
        out->delta[a] = (p - t) * inv_batch;
    }
    return loss;
}

/* The output layer's gradient, deferred. Accumulating it sample by sample into the
 * gradient rows costs a read and a write of every active row per sample (random rows,
 * out of cache) and then the optimizer reads and clears them again. Instead each sample
 * leaves its active ids, their deltas and its input (the hidden vector) here; the
 * optimizer groups the entries by row (a stable radix sort of (row, sample, delta)
 * entries, so each row's entries stay in sample order) and, row by row, forms the
 * gradient in a cache-resident buffer and applies Adam to it: the
 * gradient rows of the output layer are never touched, and rows are written by one
 * thread only (no HOGWILD race on this layer). The sums are formed in sample order with
 * the same kernels, so with one thread the result is bit for bit the accumulated one. */
#define SPR_DEFER_THREADS 256 /* threads the optimizer's output pass uses at most */
typedef struct spr_deferred {
    int64_t batch, cap, in_stride; /* capacity: samples, entries per sample, input floats */
    int64_t rows;                  /* output neurons */
    int64_t n_samples;             /* samples of the pending batch */
    int pending;                   /* a batch's output gradient waits here */
    int64_t *n;                    /* (batch) active neurons of each sample */
    int32_t *ids;                  /* (batch, cap) */
    float *delta;                  /* (batch, cap) */
    float *in;                     /* (batch, in_stride) the output layer's input */
    int sparse_in;                 /* the input is a sampled layer's: sample i's in_n[i] values
                                      in, their neurons in_ids (batch, in_stride) */
    int32_t *in_ids;
    int64_t *in_n;
    /* The optimizer's entries, thread t's at [sum of the entries before it, ...): */
    int64_t thread_entries[SPR_DEFER_THREADS]; /* entries of each thread's rows */
    uint32_t *key, *key_tmp;       /* (batch * cap) row - the thread's first row; sort buffer */
    uint64_t *val, *val_tmp;       /* (batch * cap) sample << 32 | the delta's bits; sort buffer */
    uint32_t *run;                 /* (batch * cap + threads) where each touched row's entries start */
    /* The fused step (two layers, no clipping: fusable): the output layer's input
     * gradient is formed in the optimizer's row pass too, while each row is in cache for
     * its step, instead of reading every active row again sample by sample; the first
     * layer's backward runs after it. The batch's data stays the caller's until then. */
    int fused;                     /* the pending batch's backward waits for the optimizer */
    const spr_dataset_view *view;  /* the pending batch's data and rows (fused) */
    const int64_t *batch_rows;
    int64_t parts;                 /* threads whose input-gradient parts dh holds */
    int64_t threads;               /* capacity of dh and gb_part, in threads */
    float *dh;                     /* (threads, batch, in_stride) each thread's part of dLoss/d input */
    float *gb_part;                /* (threads, in_stride) each thread's part of the first bias's gradient */
    /* The fused step's forward groups the entries by row before the optimizer does
     * (output_forward_grouped): grouped threads each left theirs sorted, val = sample << 32 |
     * the entry's position in the sample's ids, for the optimizer's row pass to take over
     * with the same threads (0: nothing grouped). Read only while a batch is pending; set
     * for each batch by compute_gradients. */
    int grouped;
    int grouped_deltas;            /* the groups' entries hold deltas already (not positions) */
    uint64_t *group_val[SPR_DEFER_THREADS]; /* each thread's sorted entries */
    uint32_t *group_run[SPR_DEFER_THREADS]; /* where each of its rows' entries start */
    int64_t group_rows[SPR_DEFER_THREADS];  /* its touched rows */
    float *dots;                   /* (threads, batch) each thread's dots of one row */
    /* The fused step of a deeper model: each sample's activations of layers 0 .. nl - 3
     * (the layers below the output layer's input, which is in), for the backward after the
     * optimizer's row pass: layer h's hid_n[i SPR_MAX_LAYERS + h] values at hid +
     * i hid_per + hid_off[h], a sampled layer's neuron ids at hid_ids + i hid_ids_per +
     * hid_ids_off[h]. None with two layers. */
    int64_t hid_per, hid_ids_per, hid_off[SPR_MAX_LAYERS], hid_ids_off[SPR_MAX_LAYERS];
    float *hid;
    int32_t *hid_ids;
    int64_t *hid_n;
    void *block;
} spr_deferred;

void spr_train_free(spr_model *m) {
    if (!m || !m->deferred) return;
    spr_free(m->deferred->block);
    spr_free(m->deferred);
    m->deferred = NULL;
}

/* Whether the output layer's input is a sampled hidden layer (its active neurons only). */
static int sparse_input(const spr_model *m) {
    return m->n_layers > 2 && m->layers[m->n_layers - 2].sampled;
}

/* Deferring applies to a sampled output layer: after a dense layer, or on one process
 * after a sampled one too (its rows' gradients formed from each input's active neurons:
 * f->sparse_in). */
static int deferred_usable(const spr_model *m, int dense) {
    return !dense && m->layers[m->n_layers - 1].sampled && !(m->dist && sparse_input(m));
}

/* The fused step needs every activation the backward reads after the forward: the
 * output layer's input, which the deferred store keeps anyway, and in a deeper model the
 * layers below it (f->hid). Clipping needs the whole gradient's norm before any step: its
 * output rows then take two passes (deferred_norm_pass, which also forms the input
 * gradient, and the step), still without gradient rows. */
static int fusable(const spr_model *m, const spr_train_options *o) {
    return deferred_usable(m, o->dense != 0) && !sparse_input(m);
}

spr_status spr_model_config_memory_training_as(const spr_model_config *c,
                                               const spr_train_options *o, int sharded,
                                               int64_t *bytes) {
    if (!o) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_config_memory_training: options is NULL");
    spr_status st = spr_model_config_memory(c, bytes);
    if (st) return st;
    /* deferred_usable's rule and compute_gradients's, from the configuration (a layer past
     * the first is sampled when its sparsity is below 1): the output layer's gradient rows
     * stay reserved untouched in a deferred step (clipped or not); a sampled input defers
     * on one process only. */
    const int nl = c->n_layers;
    const int sampled_out = nl > 1 && c->layers[nl - 1].sparsity < 1.0f;
    const int sampled_in = nl > 2 && c->layers[nl - 2].sparsity < 1.0f;
    if (!o->dense && sampled_out && !(sharded && sampled_in))
        *bytes -= c->layers[nl - 1].size * spr_row_stride(c->layers[nl - 2].size) *
                  (int64_t)sizeof(float);
    return SPR_STATUS_OK;
}

spr_status spr_model_config_memory_training(const spr_model_config *c, const spr_train_options *o,
                                            int64_t *bytes) {
    return spr_model_config_memory_training_as(c, o, 0, bytes);
}

/* Sizes the deferred store for the scratch made by spr_model_prepare (same moment: before
 * the first step, and again only when the batch or the labels grow). */
static spr_status deferred_prepare(spr_model *m) {
    const spr_layer *Lo = &m->layers[m->n_layers - 1];
    const int64_t batch = m->scratch_batch, cap = m->scratch[0].cap[m->n_layers - 1];
    const int64_t in_stride = spr_row_stride(Lo->fan_in);
    const int64_t threads = m->n_scratch < SPR_DEFER_THREADS ? m->n_scratch : SPR_DEFER_THREADS;
    spr_deferred *f = m->deferred;
    if (f && f->batch >= batch && f->cap >= cap && f->in_stride >= in_stride && f->threads >= threads)
        return SPR_STATUS_OK;
    /* a deeper model's activations below the output layer's input, per sample */
    int64_t hid_per = 0, hid_ids_per = 0, hid_off[SPR_MAX_LAYERS], hid_ids_off[SPR_MAX_LAYERS];
    for (int h = 0; h < m->n_layers - 2; h++) {
        hid_off[h] = hid_per, hid_ids_off[h] = hid_ids_per;
        hid_per += spr_row_stride(m->layers[h].size);
        if (m->layers[h].sampled) hid_ids_per += m->scratch[0].cap[h];
    }
    spr_train_free(m);
    f = spr_alloc(sizeof *f);
    if (!f) return spr_fail(SPR_STATUS_NO_MEMORY, "train: out of memory for the deferred gradient");
    memset(f, 0, sizeof *f);
    const size_t entries = (size_t)batch * (size_t)cap;
    /* n; ids, delta; in; key, key_tmp, val, val_tmp, run; dh, gb_part; dots: none of it
     * scales with the layer */
    const size_t bytes = (size_t)batch * 8 + entries * 8 + (size_t)batch * in_stride * 4 +
                         entries * 28 + SPR_DEFER_THREADS * 4 +
                         (size_t)threads * ((size_t)batch + 1) * (size_t)in_stride * 4 +
                         (size_t)threads * (size_t)batch * 4 +
                         (size_t)batch * ((size_t)(hid_per + hid_ids_per) * 4 + SPR_MAX_LAYERS * 8) +
                         (size_t)batch * ((size_t)in_stride * 4 + 8) + 18 * SPR_ALIGN;
    char *p = spr_alloc(bytes);
    if (!p) {
        spr_free(f);
        return spr_fail(SPR_STATUS_NO_MEMORY, "train: out of memory for the deferred gradient");
    }
    memset(p, 0, bytes);
    f->block = p;
#define CARVE(field, type, count)                                                      \
    f->field = (type *)p;                                                              \
    p += (((size_t)(count) * sizeof(type) + SPR_ALIGN - 1) / SPR_ALIGN) * SPR_ALIGN;
    CARVE(n, int64_t, batch);
    CARVE(ids, int32_t, entries);
    CARVE(delta, float, entries);
    CARVE(in, float, (size_t)batch * in_stride);
    CARVE(key, uint32_t, entries);
    CARVE(key_tmp, uint32_t, entries);
    CARVE(val, uint64_t, entries);
    CARVE(val_tmp, uint64_t, entries);
    CARVE(run, uint32_t, entries + SPR_DEFER_THREADS);
    CARVE(dh, float, (size_t)threads * (size_t)batch * (size_t)in_stride);
    CARVE(gb_part, float, (size_t)threads * (size_t)in_stride);
    CARVE(dots, float, (size_t)threads * (size_t)batch);
    CARVE(hid, float, (size_t)batch * (size_t)hid_per);
    CARVE(hid_ids, int32_t, (size_t)batch * (size_t)hid_ids_per);
    CARVE(hid_n, int64_t, (size_t)batch * SPR_MAX_LAYERS);
    CARVE(in_ids, int32_t, (size_t)batch * (size_t)in_stride);
    CARVE(in_n, int64_t, batch);
#undef CARVE
    f->batch = batch, f->cap = cap, f->in_stride = in_stride, f->rows = Lo->size;
    f->threads = threads;
    f->sparse_in = sparse_input(m);
    f->hid_per = hid_per, f->hid_ids_per = hid_ids_per;
    memcpy(f->hid_off, hid_off, sizeof hid_off);
    memcpy(f->hid_ids_off, hid_ids_off, sizeof hid_ids_off);
    m->deferred = f;
    return SPR_STATUS_OK;
}

/* The fused step's second half: the backward below the output layer of every sample of
 * the pending batch, from the input gradient dLoss/dh the optimizer's row pass left in
 * f->dh (the sum of its f->parts threads' parts, in thread order), the output layer's
 * input in f->in and, in a deeper model, the layers below it in f->hid. What
 * train_sample does after the output layer's backward, in the same order with one thread
 * (so bit for bit the unfused step); with more, samples are split statically and each
 * thread sums its own part of the first layer's bias gradient (the weight rows, and the
 * hidden layers' biases, are HOGWILD, as in the unfused step). */
static void fused_backward(spr_model *m, int threads) {
    spr_deferred *f = m->deferred;
    const int nl = m->n_layers;
    spr_layer *L0 = &m->layers[0];
    const spr_dataset_view *d = f->view;
    const int64_t size = L0->size, per_part = f->batch * f->in_stride;
    if (threads > f->threads) threads = (int)f->threads;
    int used = 1;
#pragma omp parallel num_threads(threads)
    {
        const int t = spr_team_rank(), nth = spr_team_size();
        if (t == 0) used = nth;
        float *gb = nth == 1 ? L0->gb : f->gb_part + t * f->in_stride;
        if (nth > 1) memset(gb, 0, (size_t)size * sizeof(float));
        spr_scratch *s = spr_thread_scratch(m);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < f->n_samples; i++) {
            const int64_t row = f->batch_rows[i];
            if (d->label_indptr[row + 1] == d->label_indptr[row]) continue; /* no gradient */
            act_view act[SPR_MAX_LAYERS];
            for (int h = 0; h < nl - 2; h++) {
                const int32_t *ids = f->hid_ids + i * f->hid_ids_per + f->hid_ids_off[h];
                act[h] = (act_view){f->hid_n[i * SPR_MAX_LAYERS + h], m->layers[h].sampled ? ids : NULL,
                                    f->hid + i * f->hid_per + f->hid_off[h], s->delta[h]};
            }
            act[nl - 2] = (act_view){m->layers[nl - 2].size, NULL, f->in + i * f->in_stride,
                                     s->delta[nl - 2]};
            const act_view *top = &act[nl - 2]; /* the output layer's input */
            const float *dh = f->dh + i * f->in_stride;
            for (int64_t j = 0; j < top->n; j++) {
                float v = dh[j];
                for (int64_t p = 1; p < f->parts; p++) v += dh[p * per_part + j];
                top->delta[j] = top->val[j] <= 0.0f ? 0.0f : v; /* relu' */
            }
            for (int l = nl - 2; l >= 1; l--) { /* train_sample's backward below the output */
                act_view in = act[l - 1];
                memset(in.delta, 0, (size_t)in.n * sizeof(float));
                layer_backward(&m->layers[l], &in, &act[l], 0);
                for (int64_t p = 0; p < in.n; p++) /* relu' */
                    if (in.val[p] <= 0.0f) in.delta[p] = 0.0f;
            }
            const float *delta = act[0].delta;
            for (int64_t j = 0; j < size; j++) gb[j] += delta[j];
            for (int64_t k = d->feature_indptr[row]; k < d->feature_indptr[row + 1]; k++) {
                const int32_t feat = d->feature_indices[k];
                mark_touched(L0, feat);
                spr_axpy(d->feature_values[k], delta, L0->gw + (int64_t)feat * L0->stride, size);
            }
        }
    }
    if (used > 1)
        for (int t = 0; t < used; t++)
            for (int64_t j = 0; j < size; j++) L0->gb[j] += f->gb_part[t * f->in_stride + j];
}

/* The sharded step (below): compute_gradients when m->dist is set; f, where given, takes
 * the output layer's gradient (deferred) instead of its gradient rows. */
static spr_status compute_gradients_sharded(spr_model *m, const spr_dataset_view *d,
                                            const int64_t *rows, int64_t n,
                                            const spr_train_options *o, spr_deferred *f,
                                            spr_batch_stats *stats);
/* The fused sharded step's second half, after the output layer's row pass (below). */
static spr_status sharded_fused_backward(spr_model *m, int threads);

/* Index of the first of the n ascending ids that is >= v (n if none). */
static int64_t first_at_least(const int32_t *ids, int64_t n, int64_t v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Adds the pending output gradient into the layer's gradient rows (and touched list), in
 * sample order, as the per-sample path would have: for callers that want the gradient
 * itself (spr_model_compute_gradients, clipping). A fused batch also gets its input
 * gradient, formed sample by sample as train_sample forms it, and the backward below
 * the output layer. */
static spr_status deferred_materialize(spr_model *m, int threads) {
    spr_deferred *f = m->deferred;
    if (!f || !f->pending) return SPR_STATUS_OK;
    spr_layer *L = &m->layers[m->n_layers - 1];
    spr_layer_gradient_rows(L);
    if (threads > f->threads) threads = (int)f->threads; /* <= SPR_DEFER_THREADS */
    const int fused = f->fused;
    int used = 1;
    /* Thread t adds the entries of its rows [rows t / nth, rows (t + 1) / nth), in sample
     * order (so each row's sum is the per-sample path's, and no two threads write one
     * row), and (fused) its rows' terms of each sample's input gradient into its part. */
#pragma omp parallel num_threads(threads)
    {
        const int t = spr_team_rank(), nth = spr_team_size();
        if (t == 0) used = nth;
        const int64_t lo = f->rows * t / nth, hi = f->rows * (t + 1) / nth;
        float *part = fused ? f->dh + t * f->batch * f->in_stride : NULL;
        for (int64_t i = 0; i < f->n_samples; i++) {
            const int32_t *ids = f->ids + i * f->cap;
            const float *dl = f->delta + i * f->cap;
            const float *in = f->in + i * f->in_stride;
            float *dh = part ? part + i * f->in_stride : NULL;
            if (dh) memset(dh, 0, (size_t)L->fan_in * sizeof(float));
            const int64_t a1 = first_at_least(ids, f->n[i], hi);
            for (int64_t a = first_at_least(ids, a1, lo); a < a1; a++) {
                float *gw = L->gw + (int64_t)ids[a] * L->stride;
                mark_touched(L, ids[a]);
                L->gb[ids[a]] += dl[a];
                if (f->sparse_in) { /* as layer_backward adds a sampled input */
                    const int32_t *in_ids = f->in_ids + i * f->in_stride;
                    for (int64_t p = 0; p < f->in_n[i]; p++) gw[in_ids[p]] += dl[a] * in[p];
                } else {
                    spr_axpy(dl[a], in, gw, L->fan_in);
                }
                if (dh) spr_layer_axpy(L, dl[a], ids[a], dh);
            }
        }
    }
    f->pending = 0, f->fused = 0;
    if (!fused || !f->view) return SPR_STATUS_OK; /* (no view: the output layer alone) */
    f->parts = used;
    if (m->dist) return sharded_fused_backward(m, threads);
    fused_backward(m, threads);
    return SPR_STATUS_OK;
}

/* The optimizer's rows are sorted but gapped (at 2M labels a batch touches one row in
 * three): the hardware prefetchers lose the three streams (w, m, v) at every gap and each
 * row costs several memory latencies. Asking ADAM_AHEAD rows ahead for everything the
 * step of a row reads and writes keeps them in flight. Into L2 (locality 2, prefetcht1),
 * not L1: 8 rows are 100-200 cache lines in flight, more than L1's miss buffers hold, and
 * prefetcht0 stalled the core when they ran out. On the Zen 5 machine, 646K gapped BF16
 * rows of 2M (the 2M-label sweep's batch): 64-91 ms a step with prefetcht0, 46-54 with
 * prefetcht1; the 20,000-point epoch's optimizer_seconds 5.4-6.2 -> 4.5-4.8 s (2M,
 * --bf16-weights), 4.2-4.9 -> 3.5-4.0 s (670K, float). The requests go out in two parts,
 * the weights before a row's entries and the moments before its step, not in one burst:
 * a prefetch waits for a free fill buffer, and one burst of 24 (float) stalls the core
 * where two smaller ones let the row's arithmetic run in between (session 25, 2M labels
 * --bf16-weights: optimizer 5.99-7.80 -> 5.87-6.63 s over 5 interleaved rounds; float
 * 2M and 670K within noise). */
#define ADAM_AHEAD 8
#define ADAM_LOCALITY 2
/* The first part: the row's weights, its bias, gradient and last step. */
static inline SPR_ALWAYS_INLINE void prefetch_adam_weights(const spr_layer *L, int32_t r) {
    const int64_t off = (int64_t)r * L->stride;
    for (int64_t c = 0; c < L->cols; c += 16) {
        if (L->w16) {
            if (c % 32 == 0) __builtin_prefetch(L->w16 + off + c, 1, ADAM_LOCALITY);
        } else {
            __builtin_prefetch(L->w + off + c, 1, ADAM_LOCALITY);
        }
    }
    __builtin_prefetch(L->b + r, 1, ADAM_LOCALITY), __builtin_prefetch(L->gb + r, 1, ADAM_LOCALITY);
    __builtin_prefetch(L->last_step + r, 1, ADAM_LOCALITY);
}
/* The second part: the row's moments and its bias's. */
static inline SPR_ALWAYS_INLINE void prefetch_adam_moments(const spr_layer *L, int32_t r) {
    const int64_t off = (int64_t)r * L->stride;
    for (int64_t c = 0; c < L->cols; c += 16) {
        if (L->mw16) {
            if (c % 32 == 0) __builtin_prefetch(L->mw16 + off + c, 1, ADAM_LOCALITY), __builtin_prefetch(L->vw16 + off + c, 1, ADAM_LOCALITY);
        } else {
            __builtin_prefetch(L->mw + off + c, 1, ADAM_LOCALITY), __builtin_prefetch(L->vw + off + c, 1, ADAM_LOCALITY);
        }
    }
    __builtin_prefetch(L->mb + r, 1, ADAM_LOCALITY), __builtin_prefetch(L->vb + r, 1, ADAM_LOCALITY);
}

/* Thread t of a team of nth groups the pending batch's entries of the rows it owns,
 * [lo, hi) = [rows t / nth, rows (t + 1) / nth), so that no two threads write one row:
 * the part of each sample's ids in that range (a sample's ids are ascending,
 * spr_layer_select, so a binary search finds it), gathered in sample order and sorted
 * stably by row, so each row's entries stay in sample order. Its touched rows go to
 * L->touched_list + lo in memory order, where each row's entries start to (*run)[0..nt].
 * An entry is sample << 32 | the delta's bits (with_delta), or | its position in the
 * sample's ids. Returns nt; *val the sorted entries. Every thread of the team calls it
 * (a barrier inside). */
static int64_t group_entries(spr_deferred *f, spr_layer *L, int t, int nth, int with_delta,
                             uint64_t **val_out, uint32_t **run_out) {
    const int64_t lo = f->rows * t / nth, hi = f->rows * (t + 1) / nth;
    int32_t *list = L->touched_list + lo;
    int64_t entries = 0;
    for (int64_t i = 0; i < f->n_samples; i++) {
        const int32_t *ids = f->ids + i * f->cap;
        const int64_t a1 = first_at_least(ids, f->n[i], hi);
        entries += a1 - first_at_least(ids, a1, lo);
    }
    f->thread_entries[t] = entries;
#pragma omp barrier
    int64_t pos = 0;
    for (int u = 0; u < t; u++) pos += f->thread_entries[u];
    uint32_t *key = f->key + pos, *key_tmp = f->key_tmp + pos;
    uint64_t *val = f->val + pos, *val_tmp = f->val_tmp + pos;
    uint32_t *run = f->run + pos + t; /* nt + 1 <= entries + 1 starts */
    int64_t ne = 0;
    for (int64_t i = 0; i < f->n_samples; i++) { /* in sample order */
        const int32_t *ids = f->ids + i * f->cap;
        const float *dl = f->delta + i * f->cap;
        const int64_t a1 = first_at_least(ids, f->n[i], hi);
        for (int64_t a = first_at_least(ids, a1, lo); a < a1; a++) {
            uint32_t bits = (uint32_t)a;
            if (with_delta) memcpy(&bits, &dl[a], sizeof bits);
            key[ne] = (uint32_t)(ids[a] - lo);
            val[ne++] = (uint64_t)i << 32 | bits;
        }
    }
    spr_sort_entries(&key, &val, &key_tmp, &val_tmp, ne, (uint64_t)(hi - lo));
    int64_t nt = 0;
    for (int64_t e = 0; e < ne; e++)
        if (e == 0 || key[e] != key[e - 1]) list[nt] = (int32_t)(key[e] + lo), run[nt++] = (uint32_t)e;
    run[nt] = (uint32_t)ne;
    *val_out = val, *run_out = run;
    return nt;
}

/* Thread t's (of nth) groups of the pending batch's entries, each entry
 * sample << 32 | its delta's bits: the forward's groups where the same team made them
 * (their positions turned into deltas, in one pass: gathers from the batch's deltas,
 * MBs, that miss L2 but are independent of each other and so overlap here; done row by
 * row, each waited for its miss, 5% of a 2M-label epoch), else grouped here
 * (group_entries). Either way kept in f->group_* for the next pass of the same team (a
 * clipped step's second row pass); the caller sets f->grouped = nth,
 * f->grouped_deltas = 1 after the team's region. Returns the thread's rows. */
static int64_t take_groups(spr_deferred *f, spr_layer *L, int t, int nth, uint64_t **val_out,
                           uint32_t **run_out) {
    if (f->grouped != nth) {
        const int64_t nt = group_entries(f, L, t, nth, 1, val_out, run_out);
        f->group_val[t] = *val_out, f->group_run[t] = *run_out, f->group_rows[t] = nt;
        return nt;
    }
    uint64_t *val = f->group_val[t];
    uint32_t *run = f->group_run[t];
    const int64_t nt = f->group_rows[t];
    if (!f->grouped_deltas)
        for (uint32_t e = run[0]; e < run[nt]; e++) {
            const uint64_t i = val[e] >> 32;
            uint32_t bits;
            memcpy(&bits, f->delta + (int64_t)i * f->cap + (uint32_t)val[e], sizeof bits);
            val[e] = i << 32 | bits;
        }
    *val_out = val, *run_out = run;
    return nt;
}

/* Row r's gradient g (fan_in) from its entries [e0, e1) in sample order, with (fused)
 * its terms of each sample's input gradient in dh (the weights before the step: a
 * thread's rows ascend, and so do a sample's ids, so with one thread the terms add in
 * train_sample's order); returns the bias's gradient, the entries' deltas summed. */
static float row_gradient(const spr_deferred *f, const spr_layer *L, int32_t r, const uint64_t *val,
                          uint32_t e0, uint32_t e1, float *dh, float *g) {
    const int64_t row = (int64_t)r * L->stride;
    if (f->sparse_in) { /* layer_backward's sums over a sampled input, in sample order (not fused) */
        memset(g, 0, (size_t)L->fan_in * sizeof(float));
        for (uint32_t e = e0; e < e1; e++) {
            const int64_t i = (int64_t)(val[e] >> 32);
            const uint32_t bits = (uint32_t)val[e];
            float d;
            memcpy(&d, &bits, sizeof d);
            const float *x = f->in + i * f->in_stride;
            const int32_t *ids = f->in_ids + i * f->in_stride;
            for (int64_t p = 0; p < f->in_n[i]; p++) g[ids[p]] += d * x[p];
        }
    } else {
        spr_row_entries(L->w16 ? NULL : L->w + row, L->w16 ? L->w16 + row : NULL, L->fan_in,
                        val + e0, e1 - e0, f->in, dh, f->in_stride, g);
    }
    float gb = 0.0f;
    for (uint32_t e = e0; e < e1; e++) {
        const uint32_t bits = (uint32_t)val[e];
        float d;
        memcpy(&d, &bits, sizeof d);
        gb += d;
    }
    return gb;
}

/* A clipped step's first pass over the pending batch's output rows (fused: the input
 * gradient's parts formed here, in f->dh, for the backward below the output layer): each
 * row's gradient formed as the step will form it, nothing stepped. Returns the output
 * layer's squared gradient norm (clip_gradients's to the rounding of float sums). */
static double deferred_norm_pass(spr_model *m, int threads) {
    spr_deferred *f = m->deferred;
    spr_layer *L = &m->layers[m->n_layers - 1];
    if (threads > f->threads) threads = (int)f->threads; /* <= SPR_DEFER_THREADS */
    double sq = 0.0;
    int used = 1;
#pragma omp parallel num_threads(threads) reduction(+ : sq)
    {
        const int t = spr_team_rank(), nth = spr_team_size();
        if (t == 0) used = nth;
        float *g = m->scratch[t].dense_in; /* (fan_in) the gradient of one row */
        float *dh = f->fused ? f->dh + t * f->batch * f->in_stride : NULL;
        if (dh) memset(dh, 0, (size_t)(f->n_samples * f->in_stride) * sizeof(float));
        uint64_t *val;
        uint32_t *run;
        const int64_t nt = take_groups(f, L, t, nth, &val, &run);
        const int32_t *list = L->touched_list + f->rows * t / nth;
        for (int64_t k = 0; k < nt; k++) {
            if (k + PREFETCH_AHEAD < nt) prefetch_row(L, list[k + PREFETCH_AHEAD]);
            const float gb = row_gradient(f, L, list[k], val, run[k], run[k + 1], dh, g);
            /* the row's squares by the dot kernel (a scalar double loop, one add waiting on
             * the last, took a third of the clipped 670K step), the rows summed in double */
            sq += (double)spr_dot(g, g, L->cols) + (double)gb * gb;
        }
    }
    f->parts = used;
    f->grouped = used, f->grouped_deltas = 1;
    return sq;
}

/* Adam on the output rows the pending batch touched, each row's gradient formed from its
 * entries just before its step (grouped here by group_entries, or already by the fused
 * forward or a clipped step's norm pass), scaled by scale (clipping; 1: none), and
 * (fused) its terms of the samples' input gradients. Returns the rows it stepped. */
static int64_t deferred_adam(spr_model *m, const spr_train_options *o, float bc1, float bc2,
                             float scale, int threads) {
    spr_deferred *f = m->deferred;
    spr_layer *L = &m->layers[m->n_layers - 1];
    if (threads > f->threads) threads = (int)f->threads; /* <= SPR_DEFER_THREADS */
    int64_t stepped = 0;
#pragma omp parallel num_threads(threads) reduction(+ : stepped)
    {
        const int t = spr_team_rank(), nth = spr_team_size();
        float *g = m->scratch[t].dense_in; /* (fan_in) the gradient of one row */
        /* (batch, in_stride) this thread's part of the input gradient (fused) */
        float *dh = f->fused ? f->dh + t * f->batch * f->in_stride : NULL;
        if (dh) memset(dh, 0, (size_t)(f->n_samples * f->in_stride) * sizeof(float));
        if (t == 0 && dh) f->parts = nth;
        uint64_t *val;
        uint32_t *run;
        const int64_t nt = take_groups(f, L, t, nth, &val, &run);
        const int32_t *list = L->touched_list + f->rows * t / nth;
        for (int64_t k = 0; k < nt; k++) {
            const int32_t r = list[k];
            if (k + ADAM_AHEAD < nt) prefetch_adam_weights(L, list[k + ADAM_AHEAD]);
            float gb = row_gradient(f, L, r, val, run[k], run[k + 1], dh, g);
            if (scale != 1.0f) { /* clip_gradients's scaling of a gradient row */
                for (int64_t c = 0; c < L->cols; c++) g[c] *= scale;
                gb *= scale;
            }
            if (k + ADAM_AHEAD < nt) prefetch_adam_moments(L, list[k + ADAM_AHEAD]);
            spr_layer_adam_row(m, L, r, g, o, bc1, bc2);
            L->gb[r] = gb;
            spr_adam_row(L->b + r, L->gb + r, L->mb + r, L->vb + r, 1, o->lr, o->beta1, o->beta2,
                         o->eps, bc1, bc2);
        }
        stepped += nt;
    }
    f->pending = 0;
    return stepped;
}

/* Forward and backward of one sample; gradients go into the shared rows. */
static void train_sample(spr_model *m, const spr_dataset_view *d, int64_t row, spr_scratch *s,
                         int dense, float inv_batch, uint64_t seed, float *loss_out,
                         int64_t *active_out, spr_deferred *f, int64_t bi) {
    const int nl = m->n_layers;
    const int32_t *labels = d->labels + d->label_indptr[row];
    const int64_t n_labels = d->label_indptr[row + 1] - d->label_indptr[row];
    act_view act[SPR_MAX_LAYERS];
    spr_rng rng;
    spr_rng_seed(&rng, seed);

    /* Layer 0: embedding bag over the sparse input. */
    spr_layer *L0 = &m->layers[0];
    const int64_t f0 = d->feature_indptr[row], f1 = d->feature_indptr[row + 1];
    act[0] = (act_view){L0->size, NULL, s->act[0], s->delta[0]};
    memcpy(act[0].val, L0->b, (size_t)L0->size * sizeof(float));
    for (int64_t k = f0; k < f1; k++)
        spr_axpy(d->feature_values[k], L0->w + (int64_t)d->feature_indices[k] * L0->stride,
                 act[0].val, L0->size);
    for (int64_t j = 0; j < L0->size; j++)
        if (act[0].val[j] < 0.0f) act[0].val[j] = 0.0f;
    active_out[0] = L0->size;

    for (int l = 1; l < nl; l++) {
        spr_layer *L = &m->layers[l];
        const int is_out = l == nl - 1;
        act[l] = (act_view){L->size, NULL, s->act[l], s->delta[l]};
        if (L->sampled && !dense) {
            const float *in_dense = act[l - 1].val;
            if (act[l - 1].ids) { /* hash functions take a dense vector */
                memset(s->dense_in, 0, (size_t)L->fan_in * sizeof(float));
                for (int64_t p = 0; p < act[l - 1].n; p++)
                    s->dense_in[act[l - 1].ids[p]] = act[l - 1].val[p];
                in_dense = s->dense_in;
            }
            act[l].n = spr_layer_select(L, in_dense, labels, is_out ? n_labels : 0, 0, s, &rng,
                                        s->ids[l], L->pool_ids, L->n_pool);
            act[l].ids = s->ids[l];
        }
        if (is_out && f && f->fused) { /* this layer's forward runs row by row for the whole
                                          batch (output_forward_grouped) */
            active_out[l] = act[l].n;
            f->n[bi] = n_labels ? act[l].n : 0; /* no labels: no loss, no gradient */
            memcpy(f->ids + bi * f->cap, act[l].ids, (size_t)act[l].n * sizeof(int32_t));
            memcpy(f->in + bi * f->in_stride, act[l - 1].val, (size_t)L->fan_in * sizeof(float));
            for (int h = 0; h < nl - 2; h++) { /* a deeper model's layers below, for the backward */
                f->hid_n[bi * SPR_MAX_LAYERS + h] = act[h].n;
                memcpy(f->hid + bi * f->hid_per + f->hid_off[h], act[h].val,
                       (size_t)act[h].n * sizeof(float));
                if (act[h].ids)
                    memcpy(f->hid_ids + bi * f->hid_ids_per + f->hid_ids_off[h], act[h].ids,
                           (size_t)act[h].n * sizeof(int32_t));
            }
            *loss_out = 0.0f;
            return;
        }
        layer_forward(L, &act[l - 1], &act[l]);
        if (!is_out)
            for (int64_t a = 0; a < act[l].n; a++)
                if (act[l].val[a] < 0.0f) act[l].val[a] = 0.0f;
        active_out[l] = act[l].n;
    }

    /* A point without labels has an all-zero target: no loss, no gradient. */
    if (f) f->n[bi] = 0;
    if (n_labels == 0) {
        *loss_out = 0.0f;
        return;
    }
    *loss_out = softmax_loss(&act[nl - 1], labels, n_labels, inv_batch);
    if (f) { /* the output rows' gradient waits for the optimizer (spr_deferred) */
        const act_view *o = &act[nl - 1];
        f->n[bi] = o->n;
        memcpy(f->ids + bi * f->cap, o->ids, (size_t)o->n * sizeof(int32_t));
        memcpy(f->delta + bi * f->cap, o->delta, (size_t)o->n * sizeof(float));
        const act_view *in = &act[nl - 2]; /* (a sampled layer's: its active neurons) */
        memcpy(f->in + bi * f->in_stride, in->val, (size_t)in->n * sizeof(float));
        if (in->ids) memcpy(f->in_ids + bi * f->in_stride, in->ids, (size_t)in->n * sizeof(int32_t));
        f->in_n[bi] = in->n;
        if (f->fused) return; /* the backward waits for the optimizer's row pass */
    }

    for (int l = nl - 1; l >= 1; l--) {
        act_view in = act[l - 1];
        memset(in.delta, 0, (size_t)in.n * sizeof(float));
        layer_backward(&m->layers[l], &in, &act[l], f && l == nl - 1);
        for (int64_t p = 0; p < in.n; p++) /* relu' */
            if (in.val[p] <= 0.0f) in.delta[p] = 0.0f;
    }
    for (int64_t j = 0; j < L0->size; j++) L0->gb[j] += act[0].delta[j];
    for (int64_t k = f0; k < f1; k++) {
        int32_t f = d->feature_indices[k];
        mark_touched(L0, f);
        spr_axpy(d->feature_values[k], act[0].delta, L0->gw + (int64_t)f * L0->stride, L0->size);
    }
}

/* The first half of output_forward_grouped (the sharded step's logits too): the pending
 * batch's entries grouped by row (f->grouped), and each entry's logit z = b_r + W_r . h_i
 * in f->delta at the entry's place. threads <= f->threads. */
static void grouped_logits(spr_model *m, int threads) {
    spr_deferred *f = m->deferred;
    spr_layer *L = &m->layers[m->n_layers - 1];
    int used = 1;
#pragma omp parallel num_threads(threads)
    {
        const int t = spr_team_rank(), nth = spr_team_size();
        if (t == 0) used = nth;
        uint64_t *val;
        uint32_t *run;
        const int64_t nt = group_entries(f, L, t, nth, 0, &val, &run);
        f->group_val[t] = val, f->group_run[t] = run, f->group_rows[t] = nt;
        const int32_t *list = L->touched_list + f->rows * t / nth;
        float *dots = f->dots + t * f->batch; /* a row has at most one entry a sample */
        for (int64_t k = 0; k < nt; k++) {
            const int32_t r = list[k];
            if (k + PREFETCH_AHEAD < nt) {
                prefetch_row(L, list[k + PREFETCH_AHEAD]);
                __builtin_prefetch(L->b + list[k + PREFETCH_AHEAD], 0, PREFETCH_LOCALITY);
            }
            const int64_t row = (int64_t)r * L->stride;
            spr_row_dots(L->w16 ? NULL : L->w + row, L->w16 ? L->w16 + row : NULL, L->cols,
                         val + run[k], run[k + 1] - run[k], f->in, f->in_stride, dots);
            const float b = L->b[r];
            for (uint32_t e = run[k]; e < run[k + 1]; e++) { /* layer_forward's b + dot */
                const int64_t i = (int64_t)(val[e] >> 32);
                f->delta[i * f->cap + (uint32_t)val[e]] = b + dots[e - run[k]];
            }
        }
    }
    f->grouped = used;
}

/* The fused step's output forward, row by row: z = b_r + W_r . h_i for every entry (sample
 * i, row r) of the pending batch, each row read once for all the samples that have it
 * active instead of once a sample (at 670K labels a batch's 857K entries fall on ~480K
 * rows; at 100K on all 100K, ~8.6 entries a row), in memory order. The entries are
 * grouped as the optimizer groups them and stay grouped for its row pass (f->grouped).
 * The logits go where the deltas will; then each sample's softmax, loss and deltas. The
 * sums are layer_forward's, so the logits are the per-sample path's bit for bit. Sample
 * i's labels: labels[indptr[r] .. indptr[r + 1]), r = rows[i] (rows NULL: r = i). */
static void output_forward_grouped(spr_model *m, const int64_t *indptr, const int32_t *labels,
                                   const int64_t *rows, float inv_batch, int threads) {
    spr_deferred *f = m->deferred;
    const int nl = m->n_layers;
    if (threads > f->threads) threads = (int)f->threads; /* <= SPR_DEFER_THREADS */
    grouped_logits(m, threads);
#pragma omp parallel num_threads(threads)
    {
        spr_scratch *s = spr_thread_scratch(m);
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < f->n_samples; i++) {
            if (f->n[i] == 0) continue; /* no labels (the sample's loss was left 0) */
            const int64_t r = rows ? rows[i] : i;
            act_view out = {f->n[i], f->ids + i * f->cap, s->act[nl - 1], f->delta + i * f->cap};
            memcpy(out.val, out.delta, (size_t)out.n * sizeof(float));
            m->sample_loss[i] = softmax_loss(&out, labels + indptr[r], indptr[r + 1] - indptr[r],
                                             inv_batch);
        }
    }
}

static spr_status check_batch(const spr_model *m, const spr_dataset *data, const int64_t *rows,
                              int64_t n, const spr_train_options *o) {
    if (!m || !data || !rows || !o)
        return spr_fail(SPR_STATUS_BAD_INPUT, "train: NULL argument");
    if (o->batch_size < 1)
        return spr_fail(SPR_STATUS_BAD_INPUT, "batch size must be >= 1, got %d", o->batch_size);
    if (n < 1 || n > o->batch_size)
        return spr_fail(SPR_STATUS_BAD_INPUT, "batch of %lld points: must be in [1, batch size %d]",
                        (long long)n, o->batch_size);
    spr_status st = spr_check_adam(o);
    if (st != SPR_STATUS_OK) return st;
    if (!(o->clip_norm >= 0.0f))
        return spr_fail(SPR_STATUS_BAD_INPUT, "clip_norm must be >= 0, got %g", (double)o->clip_norm);
    const spr_dataset_view *d = &data->view;
    if (d->n_features > m->cfg.n_features)
        return spr_fail(SPR_STATUS_BAD_INPUT, "data has %lld features, the model %lld",
                        (long long)d->n_features, (long long)m->cfg.n_features);
    if (d->n_labels > m->label_total)
        return spr_fail(SPR_STATUS_BAD_INPUT, "data has %lld labels, the model's output %lld",
                        (long long)d->n_labels, (long long)m->label_total);
    for (int64_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= d->n_points)
            return spr_fail(SPR_STATUS_BAD_INPUT, "batch row %lld out of range [0, %lld)",
                            (long long)rows[i], (long long)d->n_points);
    return SPR_STATUS_OK;
}


/* The batch's forward and backward passes. With defer, the output layer's gradient is
 * left in m->deferred for spr_model_apply_gradients (when deferred_usable); without, all
 * gradients are in the gradient rows on return. */
static spr_status compute_gradients(spr_model *m, const spr_dataset *data, const int64_t *rows,
                                    int64_t n, const spr_train_options *o, spr_batch_stats *stats,
                                    int defer) {
    spr_status st = check_batch(m, data, rows, n, o);
    if (st) return st;
    st = spr_model_prepare(m, o, spr_dataset_max_labels(data));
    if (st) return st;
    /* The output layer's gradient rows, reserved untouched, for the paths that write them:
     * all but a deferred step. */
    if (!deferred_usable(m, o->dense != 0) || !defer)
        spr_layer_gradient_rows(&m->layers[m->n_layers - 1]);
    /* The output rows' gradient waits in m->deferred: one process's whenever it can (made
     * into gradient rows at the end without defer); a rank's (the sharded step) in a
     * deferred step only. Both fuse where fusable. */
    spr_deferred *f = NULL;
    /* (without defer a sampled input keeps the per-sample path: the gradient rows directly,
     * the twin of its deferred step) */
    if (deferred_usable(m, o->dense != 0) && (!m->dist || defer) && (defer || !sparse_input(m))) {
        st = deferred_prepare(m);
        if (st) return st;
        f = m->deferred;
        /* a batch still pending (no step between): keep its gradient */
        if ((st = deferred_materialize(m, spr_threads(o->threads)))) return st;
        f->n_samples = n;
        f->pending = 1;
        f->fused = defer && fusable(m, o);
        f->grouped = 0, f->grouped_deltas = 0;
        f->view = &data->view, f->batch_rows = rows;
    }
    if (m->dist) return compute_gradients_sharded(m, &data->view, rows, n, o, f, stats);
    const spr_dataset_view *d = &data->view;
    const int threads = spr_threads(o->threads);
    const float inv_batch = 1.0f / (float)n;
    const uint64_t step_seed = spr_mix64(m->cfg.seed ^ 0x7f4a7c159e3779b9ull) ^
                               spr_mix64((uint64_t)m->steps);
    const int dense = o->dense != 0;
    spr_model_draw_pools(m, o, step_seed, 0);

#pragma omp parallel num_threads(threads)
    {
        spr_scratch *s = spr_thread_scratch(m);
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < n; i++)
            train_sample(m, d, rows[i], s, dense, inv_batch, step_seed ^ spr_mix64((uint64_t)rows[i]),
                         &m->sample_loss[i], &m->sample_active[i * SPR_MAX_LAYERS], f, i);
    }
    if (f && f->fused) output_forward_grouped(m, d->label_indptr, d->labels, rows, inv_batch, threads);
    if (f && !defer && (st = deferred_materialize(m, threads))) return st;

    m->samples += n;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        double loss = 0.0;
        for (int64_t i = 0; i < n; i++) loss += m->sample_loss[i];
        stats->loss = loss / (double)n;
        for (int l = 0; l < m->n_layers; l++) {
            double a = 0.0;
            for (int64_t i = 0; i < n; i++) a += (double)m->sample_active[i * SPR_MAX_LAYERS + l];
            stats->active[l] = a / (double)n;
        }
    }
    return SPR_STATUS_OK;
}

spr_status spr_model_compute_gradients(spr_model *m, const spr_dataset *data, const int64_t *rows,
                                       int64_t n, const spr_train_options *o,
                                       spr_batch_stats *stats) {
    return compute_gradients(m, data, rows, n, o, stats, 0);
}

/* Scales the batch gradient so that its L2 norm is at most max_norm: one pass over the
 * touched rows (the rows Adam reads next), so it costs what the step costs. The deferred
 * output rows' part of the norm comes in deferred_sq (deferred_norm_pass); their scale,
 * *scale_out (1: none), is applied in their step (deferred_adam). */
static spr_status clip_gradients(spr_model *m, float max_norm, int threads, double deferred_sq,
                                 float *scale_out) {
    *scale_out = 1.0f;
    /* the layers before the output, the output layer (its gradient rows', and its rows'
     * whose gradient waits in the deferred store: deferred_sq) */
    double sq = 0.0, sq_out = deferred_sq;
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        const int64_t nt = atomic_load(&L->n_touched);
        double part = 0.0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : part)
        for (int64_t k = 0; k < nt; k++) {
            int32_t r = L->touched_list[k];
            const float *g = L->gw + (int64_t)r * L->stride;
            double row = 0.0;
            for (int64_t c = 0; c < L->cols; c++) row += (double)g[c] * g[c];
            if (l > 0) row += (double)L->gb[r] * L->gb[r];
            part += row;
        }
        if (l == m->n_layers - 1) sq_out += part;
        else sq += part;
    }
    /* A sharded model: the output layer's part is the sum over the ranks' rows; the
     * replicated layers' part is the same on every rank. */
    if (m->dist) {
        float part = (float)sq_out;
        spr_status st = spr_dist_allreduce(m->dist, &part, 1, SPR_DIST_SUM, "gradient norm");
        if (st) return st;
        sq_out = part;
    }
    sq += sq_out;
    const float *gb0 = m->layers[0].gb;
    for (int64_t j = 0; j < m->layers[0].size; j++) sq += (double)gb0[j] * gb0[j];
    const double norm = sqrt(sq);
    if (!(norm > max_norm)) return SPR_STATUS_OK;
    const float scale = (float)(max_norm / norm);
    *scale_out = scale; /* (the deferred rows take it in their step) */
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        const int64_t nt = atomic_load(&L->n_touched);
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t k = 0; k < nt; k++) {
            int32_t r = L->touched_list[k];
            float *g = L->gw + (int64_t)r * L->stride;
            for (int64_t c = 0; c < L->cols; c++) g[c] *= scale;
            if (l > 0) L->gb[r] *= scale;
        }
    }
    for (int64_t j = 0; j < m->layers[0].size; j++) m->layers[0].gb[j] *= scale;
    return SPR_STATUS_OK;
}

/* Bytes of parameter state the Adam step of one row of L reads and writes: the weights and
 * both moments, the gradient row unless it was formed in a buffer (deferred), and for a
 * layer with a bias per row (l > 0) the bias, its gradient and moments. */
static int64_t step_row_bytes(const spr_layer *L, int l, int gradient_row) {
    const int64_t per_col = (L->w16 ? 2 : 4) + 2 * (L->mw16 ? 2 : 4) + (gradient_row ? 4 : 0);
    return 2 * (L->cols * per_col + (l > 0 ? 4 * (int64_t)sizeof(float) : 0));
}

/* The backward below the output layer of a fused batch, from the input gradient's parts
 * in f->dh: one process's (fused_backward) or a rank's (the allreduce, then the replicated
 * layers: sharded_fused_backward). */
static spr_status backward_below_output(spr_model *m, int threads) {
    if (m->dist) return sharded_fused_backward(m, threads);
    fused_backward(m, threads);
    return SPR_STATUS_OK;
}

spr_status spr_model_apply_gradients(spr_model *m, const spr_train_options *o) {
    if (!m || !o) return spr_fail(SPR_STATUS_BAD_INPUT, "apply_gradients: NULL argument");
    spr_status sst = spr_model_check_state(m, "apply_gradients");
    if (sst) return sst;
    const int threads = spr_threads(o->threads);
    spr_deferred *f = m->deferred;
    const int fused = f && f->pending && f->fused;
    float scale = 1.0f;
    if (o->clip_norm > 0.0f) {
        /* The norm needs every gradient before any step: a fused batch's output rows form
         * theirs, and the input gradient, in a pass that steps nothing (the step pass forms
         * them again); the layers below then take their backward. */
        double deferred_sq = 0.0;
        spr_status st = SPR_STATUS_OK;
        if (f && f->pending) {
            deferred_sq = deferred_norm_pass(m, threads);
            if (fused) {
                f->fused = 0;
                st = backward_below_output(m, threads);
            }
        }
        if (!st) st = clip_gradients(m, o->clip_norm, threads, deferred_sq, &scale);
        if (st) { /* a collective failed (a rank died or hangs): nothing has stepped */
            spr_model_zero_gradients(m);
            return st;
        }
    }
    const double t = (double)(m->steps + 1);
    const float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
    spr_catch_up_prepare(m, o);
    int64_t rows = 0, bytes = 0;
    if (f && f->pending && f->fused) { /* the output layer first: its row pass forms the
                                          input gradient of the layers below */
        const int64_t nd = deferred_adam(m, o, bc1, bc2, 1.0f, threads);
        rows += nd;
        bytes += nd * step_row_bytes(&m->layers[m->n_layers - 1], m->n_layers - 1, 0);
        f->fused = 0;
        spr_status st = backward_below_output(m, threads);
        if (st) {
            m->torn = 1; /* the output rows stepped, the hidden layers cannot */
            return st;
        }
    }
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        const int64_t nt = atomic_load(&L->n_touched);
        rows += nt;
        bytes += nt * step_row_bytes(L, l, 1);
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t k = 0; k < nt; k++) {
            int32_t r = L->touched_list[k];
            spr_layer_adam_row(m, L, r, L->gw + (int64_t)r * L->stride, o, bc1, bc2);
            if (l > 0)
                spr_adam_row(L->b + r, L->gb + r, L->mb + r, L->vb + r, 1, o->lr, o->beta1,
                             o->beta2, o->eps, bc1, bc2);
            atomic_store_explicit(&L->touched[r], 0, memory_order_relaxed);
        }
        atomic_store(&L->n_touched, 0);
    }
    if (f && f->pending) {
        const int64_t nd = deferred_adam(m, o, bc1, bc2, scale, threads);
        rows += nd;
        bytes += nd * step_row_bytes(&m->layers[m->n_layers - 1], m->n_layers - 1, 0);
    }
    if (fused) m->fused_steps++;
    /* Layer 0's bias is shared by every sample: a dense update. */
    spr_layer *L0 = &m->layers[0];
    spr_adam_row(L0->b, L0->gb, L0->mb, L0->vb, L0->size, o->lr, o->beta1, o->beta2, o->eps, bc1,
                 bc2);
    bytes += 2 * L0->size * 4 * (int64_t)sizeof(float);
    m->step_rows = rows;
    m->step_bytes = bytes;
    m->steps++;
    return SPR_STATUS_OK;
}

void spr_model_zero_gradients(spr_model *m) {
    if (m->deferred) m->deferred->pending = 0, m->deferred->fused = 0;
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        const int64_t nt = atomic_load(&L->n_touched);
        for (int64_t k = 0; k < nt; k++) {
            int32_t r = L->touched_list[k];
            memset(L->gw + (int64_t)r * L->stride, 0, (size_t)L->cols * sizeof(float));
            if (l > 0) L->gb[r] = 0.0f;
            atomic_store(&L->touched[r], 0);
        }
        atomic_store(&L->n_touched, 0);
    }
    memset(m->layers[0].gb, 0, (size_t)m->layers[0].size * sizeof(float));
}

/* ------------------------------------------------------------------ the output layer alone */

int spr_output_deferrable(const spr_model *m, const spr_train_options *o) {
    return deferred_usable(m, o->dense != 0) && !m->per_sample;
}

spr_status spr_output_forward_deferred(spr_model *m, const float *input, int64_t n,
                                       const int64_t *label_indptr, const int32_t *labels,
                                       const spr_train_options *o, uint64_t step_seed) {
    spr_status st = deferred_prepare(m);
    if (st) return st;
    spr_deferred *f = m->deferred;
    const int threads = spr_threads(o->threads);
    if ((st = deferred_materialize(m, threads))) return st;
    spr_layer *Lo = &m->layers[m->n_layers - 1];
    f->n_samples = n, f->pending = 1, f->fused = 1, f->grouped = 0, f->grouped_deltas = 0;
    f->view = NULL, f->batch_rows = NULL;
#pragma omp parallel num_threads(threads)
    {
        spr_scratch *s = spr_thread_scratch(m);
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < n; i++) {
            const int64_t n_labels = label_indptr[i + 1] - label_indptr[i];
            const float *h = input + i * Lo->fan_in;
            spr_rng rng;
            spr_rng_seed(&rng, step_seed ^ spr_mix64((uint64_t)i));
            const int64_t na = spr_layer_select(Lo, h, labels ? labels + label_indptr[i] : NULL,
                                                n_labels, 0, s, &rng, f->ids + i * f->cap,
                                                Lo->pool_ids, Lo->n_pool);
            m->sample_active[i * SPR_MAX_LAYERS] = na; /* (external.c's place for it) */
            m->sample_loss[i] = 0.0f;
            f->n[i] = n_labels ? na : 0; /* no labels: no loss, no gradient */
            memcpy(f->in + i * f->in_stride, h, (size_t)Lo->fan_in * sizeof(float));
        }
    }
    output_forward_grouped(m, label_indptr, labels, NULL, 1.0f / (float)n, threads);
    return SPR_STATUS_OK;
}

void spr_output_step_deferred(spr_model *m, const spr_train_options *o, float *grad_input) {
    spr_deferred *f = m->deferred;
    const int last = m->n_layers - 1;
    const spr_layer *Lo = &m->layers[last];
    const int threads = spr_threads(o->threads);
    /* clipping (the output layer's norm, as external.c's per-sample step clips): the
     * gradients' norm and the input gradient in a first pass, then the step scaled */
    float scale = 1.0f;
    if (o->clip_norm > 0.0f) {
        const double norm = sqrt(deferred_norm_pass(m, threads));
        f->fused = 0;
        if (norm > o->clip_norm) scale = (float)(o->clip_norm / norm);
    }
    const double t = (double)(m->steps + 1);
    const float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
    spr_catch_up_prepare(m, o);
    const int64_t rows = deferred_adam(m, o, bc1, bc2, scale, threads);
    f->fused = 0;
    /* dLoss/dinput: the threads' parts summed in thread order (fused_backward's) */
    const int64_t fan_in = Lo->fan_in, per_part = f->batch * f->in_stride;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < f->n_samples; i++) {
        const float *part = f->dh + i * f->in_stride;
        for (int64_t j = 0; j < fan_in; j++) {
            float v = part[j];
            for (int64_t p = 1; p < f->parts; p++) v += part[p * per_part + j];
            grad_input[i * fan_in + j] = v;
        }
    }
    m->step_rows = rows;
    m->step_bytes = rows * step_row_bytes(Lo, last, 0);
    m->steps++;
    m->fused_steps++;
}

/* The t-th gap between rehashes: rehash_first * exp(rehash_growth * t) batches, at most
 * rehash_max, at least 1. */
static int64_t rehash_gap(const spr_train_options *o, int64_t t) {
    double gap = (double)o->rehash_first * exp((double)o->rehash_growth * (double)t);
    if (gap > (double)o->rehash_max) gap = (double)o->rehash_max;
    return gap < 1.0 ? 1 : (int64_t)gap;
}

spr_status spr_model_train_batch(spr_model *m, const spr_dataset *data, const int64_t *rows,
                                 int64_t n, const spr_train_options *o, spr_batch_stats *stats) {
    spr_status st = compute_gradients(m, data, rows, n, o, stats, 1);
    if (st) return st;

    /* A loss that is not finite means the weights (or the gradients about to be applied)
     * have blown up: one Adam step with them would turn every touched row into NaN.
     * Stop before the step, so the model stays at the last good state and a caller can
     * still save or evaluate it. The per-sample losses exist already: summing them is
     * n additions. */
    double loss = 0.0;
    if (stats) {
        loss = stats->loss;
    } else {
        for (int64_t i = 0; i < n; i++) loss += m->sample_loss[i];
    }
    if (!isfinite(loss)) {
        spr_model_zero_gradients(m);
        m->samples -= n;
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "training diverged at step %lld: loss is %s (try a lower --lr)",
                        (long long)m->steps + 1, isnan(loss) ? "nan" : "inf");
    }
    const double t0 = stats ? spr_now() : 0.0;
    const spr_dist_stats comm0 = m->dist ? spr_dist_get_stats(m->dist) : (spr_dist_stats){0};
    st = spr_model_apply_gradients(m, o);
    if (st) return st;
    if (stats && m->dist) { /* the fused sharded step's allreduce of dLoss/dh */
        const spr_dist_stats comm1 = spr_dist_get_stats(m->dist);
        stats->comm_seconds += comm1.seconds - comm0.seconds;
        stats->comm_bytes += comm1.bytes - comm0.bytes;
    }
    if (stats) {
        stats->optimizer_seconds = spr_now() - t0;
        stats->optimizer_rows = m->step_rows;
        stats->optimizer_bytes = m->step_bytes;
    }

    int any_sampled = 0;
    for (int l = 1; l < m->n_layers; l++) any_sampled |= m->layers[l].sampled;
    if (!any_sampled || o->dense) return SPR_STATUS_OK;
    return spr_model_rehash_if_due(m, o, stats);
}

spr_status spr_model_rehash_if_due(spr_model *m, const spr_train_options *o, spr_batch_stats *stats) {
    if (m->next_rehash <= 0) m->next_rehash = m->steps + rehash_gap(o, 0);
    if (m->steps < m->next_rehash) return SPR_STATUS_OK;

    double t0 = spr_now();
    int rebuild = o->rebuild_every > 0 && (m->rehashes + 1) % o->rebuild_every == 0;
    m->rehashes++;
    spr_status st = spr_model_rehash(m, rebuild, o->threads);
    if (st) return st;
    m->next_rehash = m->steps + rehash_gap(o, m->rehashes);
    double dt = spr_now() - t0;
    if (stats) stats->rehash_seconds = dt;
    if (m->log) {
        char msg[160];
        snprintf(msg, sizeof msg, "step %lld: %s %lld in %.3f s, next at step %lld",
                 (long long)m->steps, rebuild ? "rebuild" : "rehash", (long long)m->rehashes, dt,
                 (long long)m->next_rehash);
        m->log(m->log_user, msg);
    }
    return SPR_STATUS_OK;
}

/* ------------------------------------------------------------------ sharded step */
/*
 * The model-parallel step (m->dist set, dist.c): this rank's output layer holds the rows
 * of labels [label_lo, label_lo + size); the hidden layers are replicated. Phases:
 *
 *   1  per sample (parallel): hidden layers forward (the same on every rank: same data,
 *      same weights; a sampled hidden layer draws from seeds, tables and a random pool
 *      that are the same on every rank), the active set among this rank's output rows
 *      (the sample's labels that fall here, LSH candidates, random rows), their logits,
 *      the local max
 *   2  allreduce MAX of the per-sample max (n floats); then per sample the sum of
 *      exp(z - max), the sum of the labels' logits and the active count: allreduce SUM
 *      (3n floats). Together they give the softmax normaliser and the loss of the whole
 *      output layer.
 *   3  per sample (parallel): probabilities, deltas, backward through this rank's
 *      output rows, and this rank's part of dLoss/dh (h: the last hidden layer)
 *   4  allreduce SUM of dLoss/dh (n x hidden floats)
 *   5  backward through the replicated layers, the same on every rank and race-free
 *      (each thread owns whole gradient rows): the replicas get bit-identical gradients
 *      and stay identical without exchanging them. HOGWILD there would let them drift.
 *
 * The fused sharded step (a sampled output after a dense layer: fusable), as the one
 * process's: phase 1 stops at the active sets and the logits come row by row for the
 * batch (sharded_grouped_logits); phase 3 forms the deltas only; the optimizer's row pass
 * (spr_model_apply_gradients, deferred_adam) forms this rank's part of dLoss/dh while each
 * row is in cache for its step, and phases 4 and 5 run after it (sharded_fused_backward).
 * A collective that fails in phase 1-3 drops the batch (the gradients zeroed); one that
 * fails in the fused phase 4 leaves the model torn (its output rows stepped). Clipped,
 * phase 4 and the norm's allreduce come before any row steps (deferred_norm_pass): a
 * failure there drops the batch too.
 *
 * Communication per step: (4n + n x hidden) floats, never O(#labels). With one rank the
 * collectives are no-ops and, threads = 1, the step computes what the one-process step
 * computes in the same order (test_dist).
 */
typedef struct sharded_ctx {
    spr_model *m;
    const spr_dataset_view *d;
    const int64_t *rows;
    int64_t n;
    int dense;
    uint64_t step_seed;
    spr_deferred *f; /* the output rows' gradient waits here for the optimizer (NULL: into gw) */
} sharded_ctx;

static int64_t stride_of(const spr_layer *L) { return spr_row_stride(L->size); }

/* Whether hidden layer l (0 < l < last) samples its neurons in this step. */
static int hidden_sampled(const sharded_ctx *c, int l) {
    return l > 0 && l < c->m->n_layers - 1 && c->m->layers[l].sampled && !c->dense;
}

/* Sample i's activation of layer l < last in the batch buffer: the whole layer, or the
 * active neurons of a sampled one (spr_batch_buf). */
static act_view hidden_act(const sharded_ctx *c, int l, int64_t i) {
    const spr_batch_buf *bb = c->m->bb;
    const int64_t st = stride_of(&c->m->layers[l]);
    act_view v = {c->m->layers[l].size, NULL, bb->h[l] + i * st, bb->dh[l] + i * st};
    if (hidden_sampled(c, l)) v.n = bb->hid_n[l][i], v.ids = bb->hid_ids[l] + i * bb->hid_cap[l];
    return v;
}

/* The input of sampled layer l as the hash functions take it: dense (a sampled input
 * scattered into s->dense_in, zeros elsewhere). */
static const float *dense_input(const spr_layer *L, const act_view *in, spr_scratch *s) {
    if (!in->ids) return in->val;
    memset(s->dense_in, 0, (size_t)L->fan_in * sizeof(float));
    for (int64_t p = 0; p < in->n; p++) s->dense_in[in->ids[p]] = in->val[p];
    return s->dense_in;
}

/* Phase 1 for sample i. */
static void sharded_forward(const sharded_ctx *c, int64_t i, spr_scratch *s) {
    spr_model *m = c->m;
    spr_batch_buf *bb = m->bb;
    const spr_dataset_view *d = c->d;
    const int last = m->n_layers - 1;
    const int64_t row = c->rows[i];
    spr_layer *Lo = &m->layers[last];

    /* the labels of the sample that are rows of this rank, as local ids (sorted) */
    const int64_t lo = m->label_lo, hi = lo + Lo->size;
    int32_t *loc = bb->labels + i * bb->label_cap;
    int64_t nloc = 0;
    for (int64_t k = d->label_indptr[row]; k < d->label_indptr[row + 1]; k++)
        if (d->labels[k] >= lo && d->labels[k] < hi) loc[nloc++] = (int32_t)(d->labels[k] - lo);
    bb->n_local[i] = nloc;

    spr_layer *L0 = &m->layers[0];
    float *h0 = bb->h[0] + i * stride_of(L0);
    memcpy(h0, L0->b, (size_t)L0->size * sizeof(float));
    for (int64_t k = d->feature_indptr[row]; k < d->feature_indptr[row + 1]; k++)
        spr_axpy(d->feature_values[k], L0->w + (int64_t)d->feature_indices[k] * L0->stride, h0,
                 L0->size);
    for (int64_t j = 0; j < L0->size; j++)
        if (h0[j] < 0.0f) h0[j] = 0.0f;
    int64_t *active = &m->sample_active[i * SPR_MAX_LAYERS];
    active[0] = L0->size;
    /* the sample's draws, as the one-process step makes them: the hidden layers' the same
     * on every rank (replicated), then the output layer's */
    spr_rng rng;
    spr_rng_seed(&rng, c->step_seed ^ spr_mix64((uint64_t)row));
    for (int l = 1; l < last; l++) {
        spr_layer *L = &m->layers[l];
        const act_view in = hidden_act(c, l - 1, i);
        act_view out = hidden_act(c, l, i);
        if (out.ids) {
            out.n = spr_layer_select(L, dense_input(L, &in, s), NULL, 0, 0, s, &rng,
                                     bb->hid_ids[l] + i * bb->hid_cap[l], L->pool_ids, L->n_pool);
            bb->hid_n[l][i] = out.n;
        }
        layer_forward(L, &in, &out);
        for (int64_t a = 0; a < out.n; a++)
            if (out.val[a] < 0.0f) out.val[a] = 0.0f;
        active[l] = out.n;
    }

    act_view in = hidden_act(c, last - 1, i);
    act_view out = {Lo->size, NULL, bb->out_z + i * bb->out_cap, NULL};
    if (Lo->sampled && !c->dense) {
        if (lo) /* ranks draw their random rows independently */
            spr_rng_seed(&rng, c->step_seed ^ spr_mix64((uint64_t)row) ^
                                   spr_mix64((uint64_t)lo * 0x9E3779B97F4A7C15ull));
        out.n = spr_layer_select(Lo, dense_input(Lo, &in, s), loc, nloc, 0, s, &rng,
                                 bb->out_ids + i * bb->out_cap, Lo->pool_ids, Lo->n_pool);
        out.ids = bb->out_ids + i * bb->out_cap;
    }
    bb->out_n[i] = out.n;
    active[last] = out.n;
    spr_deferred *f = c->f;
    if (f && f->fused) { /* the logits row by row for the whole batch (grouped_logits) */
        const int has_labels = d->label_indptr[row + 1] > d->label_indptr[row];
        f->n[i] = has_labels ? out.n : 0; /* no labels (on any rank): no loss, no gradient */
        memcpy(f->ids + i * f->cap, out.ids, (size_t)out.n * sizeof(int32_t));
        memcpy(f->in + i * f->in_stride, in.val, (size_t)Lo->fan_in * sizeof(float));
        return;
    }
    layer_forward(Lo, &in, &out);
    float zmax = -INFINITY;
    for (int64_t a = 0; a < out.n; a++)
        if (out.val[a] > zmax) zmax = out.val[a];
    bb->red[i] = zmax;
}

/* Phase 2's local part for sample i (after the MAX): exp(z - max) in place, and the
 * three sums of the SUM allreduce. */
static void sharded_local_sums(const sharded_ctx *c, int64_t i) {
    spr_model *m = c->m;
    spr_batch_buf *bb = m->bb;
    const int last = m->n_layers - 1;
    const int32_t *ids = (m->layers[last].sampled && !c->dense) ? bb->out_ids + i * bb->out_cap : NULL;
    float *z = bb->out_z + i * bb->out_cap;
    const int32_t *loc = bb->labels + i * bb->label_cap;
    const int64_t nloc = bb->n_local[i], na = bb->out_n[i], n = c->n;
    const float zmax = bb->red[i];
    float sum = 0.0f, lz = 0.0f;
    bb->red[3 * n + i] = (float)na;
    if (c->f && c->f->fused && c->f->n[i] == 0) { /* no labels: no logits formed */
        bb->red[n + i] = 0.0f, bb->red[2 * n + i] = 0.0f;
        return;
    }
    int64_t li = 0;
    for (int64_t a = 0; a < na; a++) {
        int32_t j = ids ? ids[a] : (int32_t)a;
        while (li < nloc && loc[li] < j) li++;
        if (li < nloc && loc[li] == j) lz += z[a];
        z[a] = expf(z[a] - zmax);
        sum += z[a];
    }
    bb->red[n + i] = sum;
    bb->red[2 * n + i] = lz;
}

/* Phase 3 for sample i: loss, deltas, this rank's output rows' gradients and its part
 * of dLoss/dh (h: the last hidden layer), full-width in dh for the allreduce (a sampled h's
 * deltas formed at its active neurons in s->delta, then scattered). */
static void sharded_output_backward(const sharded_ctx *c, int64_t i, float inv_batch,
                                    spr_scratch *s) {
    spr_model *m = c->m;
    spr_batch_buf *bb = m->bb;
    const spr_dataset_view *d = c->d;
    const int last = m->n_layers - 1;
    spr_layer *Lo = &m->layers[last];
    const int64_t n = c->n, row = c->rows[i];
    const int64_t n_labels = d->label_indptr[row + 1] - d->label_indptr[row];
    const spr_layer *Lh = &m->layers[last - 1];
    float *dh = bb->dh[last - 1] + i * stride_of(Lh);
    memset(dh, 0, (size_t)Lh->size * sizeof(float));
    if (c->f && !c->f->fused) c->f->n[i] = 0; /* (fused: set by the forward) */
    if (n_labels == 0) { /* an all-zero target: no loss, no gradient */
        m->sample_loss[i] = 0.0f;
        return;
    }
    const float zmax = bb->red[i], sum = bb->red[n + i], lz = bb->red[2 * n + i];
    const float target = 1.0f / (float)n_labels, inv_sum = 1.0f / sum;
    m->sample_loss[i] = -target * lz + zmax + logf(sum);
    const int32_t *ids = (Lo->sampled && !c->dense) ? bb->out_ids + i * bb->out_cap : NULL;
    const int32_t *loc = bb->labels + i * bb->label_cap;
    const int64_t nloc = bb->n_local[i];
    float *p = bb->out_z + i * bb->out_cap, *delta = bb->out_delta + i * bb->out_cap;
    int64_t li = 0;
    for (int64_t a = 0; a < bb->out_n[i]; a++) {
        int32_t j = ids ? ids[a] : (int32_t)a;
        while (li < nloc && loc[li] < j) li++;
        float t = (li < nloc && loc[li] == j) ? target : 0.0f;
        p[a] *= inv_sum;
        delta[a] = (p[a] - t) * inv_batch;
    }
    act_view in = hidden_act(c, last - 1, i);
    if (in.ids) {
        in.delta = s->delta[last - 1];
        memset(in.delta, 0, (size_t)in.n * sizeof(float));
    }
    act_view out = {bb->out_n[i], ids, p, delta};
    spr_deferred *f = c->f;
    if (f && f->fused) { /* the optimizer's row pass forms this rank's part of dLoss/dh */
        memcpy(f->delta + i * f->cap, out.delta, (size_t)out.n * sizeof(float));
        return;
    }
    if (f) { /* the rows' gradient waits for the optimizer; the input (dense) its part */
        f->n[i] = out.n;
        memcpy(f->ids + i * f->cap, out.ids, (size_t)out.n * sizeof(int32_t));
        memcpy(f->delta + i * f->cap, out.delta, (size_t)out.n * sizeof(float));
        memcpy(f->in + i * f->in_stride, in.val, (size_t)Lo->fan_in * sizeof(float));
    }
    layer_backward(Lo, &in, &out, f != NULL);
    if (in.ids)
        for (int64_t a = 0; a < in.n; a++) dh[in.ids[a]] = in.delta[a];
}

/* Where neuron j is among the n ascending ids, -1 if it is not. */
static int64_t find_id(const int32_t *ids, int64_t n, int32_t j) {
    const int64_t a = first_at_least(ids, n, j);
    return a < n && ids[a] == j ? a : -1;
}

/* Phase 5: the replicated layers, each gradient row owned by one thread. A sampled layer
 * is computed as the one-process step computes it: its active neurons' rows only, in
 * sample order, from an input that may itself be sampled. */
static void sharded_replicated_backward(const sharded_ctx *c, const uint8_t *has_labels, int threads) {
    spr_model *m = c->m;
    spr_batch_buf *bb = m->bb;
    const spr_dataset_view *d = c->d;
    const int64_t n = c->n;
    int any = 0;
    for (int64_t i = 0; i < n; i++) any |= has_labels[i];
    if (!any) return;
    for (int l = m->n_layers - 2; l >= 0; l--) {
        spr_layer *L = &m->layers[l];
        const int sampled = hidden_sampled(c, l), gather = sampled && l == m->n_layers - 2;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t i = 0; i < n; i++) { /* relu' */
            act_view v = hidden_act(c, l, i);
            for (int64_t a = 0; a < v.n; a++) {
                /* the last hidden layer's deltas are full-width (the allreduce): gathered
                 * to its active neurons in place (ids[a] >= a: read before written) */
                if (gather) v.delta[a] = v.delta[v.ids[a]];
                if (v.val[a] <= 0.0f) v.delta[a] = 0.0f;
            }
        }
        if (l == 0) break;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t j = 0; j < L->size; j++) {
            float *gw = L->gw + j * L->stride;
            if (!sampled) mark_touched(L, (int32_t)j);
            for (int64_t i = 0; i < n; i++) {
                if (!has_labels[i]) continue;
                const act_view out = hidden_act(c, l, i), in = hidden_act(c, l - 1, i);
                const int64_t a = out.ids ? find_id(out.ids, out.n, (int32_t)j) : j;
                if (a < 0) continue;
                const float dj = out.delta[a];
                if (sampled) mark_touched(L, (int32_t)j);
                L->gb[j] += dj;
                if (in.ids)
                    for (int64_t p = 0; p < in.n; p++) gw[in.ids[p]] += dj * in.val[p];
                else
                    spr_axpy(dj, in.val, gw, L->fan_in);
            }
        }
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t i = 0; i < n; i++) {
            const act_view out = hidden_act(c, l, i), in = hidden_act(c, l - 1, i);
            memset(in.delta, 0, (size_t)in.n * sizeof(float));
            if (!has_labels[i]) continue;
            for (int64_t a = 0; a < out.n; a++) {
                const int32_t j = out.ids ? out.ids[a] : (int32_t)a;
                const float *w = L->w + (int64_t)j * L->stride;
                if (in.ids)
                    for (int64_t p = 0; p < in.n; p++) in.delta[p] += out.delta[a] * w[in.ids[p]];
                else
                    spr_axpy(out.delta[a], w, in.delta, L->fan_in);
            }
        }
    }
    /* layer 0: its bias, then the embedding rows of the batch's features, feature f
     * owned by thread f mod T (every thread scans the batch's non-zeros: O(T nnz)
     * index reads beside O(nnz x size) arithmetic) */
    spr_layer *L0 = &m->layers[0];
    const int64_t s0 = stride_of(L0);
    for (int64_t i = 0; i < n; i++)
        if (has_labels[i])
            for (int64_t j = 0; j < L0->size; j++) L0->gb[j] += bb->dh[0][i * s0 + j];
#pragma omp parallel num_threads(threads)
    {
        const int t = spr_team_rank(), nt = spr_team_size();
        for (int64_t i = 0; i < n; i++) {
            if (!has_labels[i]) continue;
            const int64_t row = c->rows[i];
            for (int64_t k = d->feature_indptr[row]; k < d->feature_indptr[row + 1]; k++) {
                int32_t f = d->feature_indices[k];
                if (f % nt != t) continue;
                mark_touched(L0, f);
                spr_axpy(d->feature_values[k], bb->dh[0] + i * s0, L0->gw + (int64_t)f * L0->stride,
                         L0->size);
            }
        }
    }
}

/* Phases 4 and 5: the allreduce of dLoss/dh (the last hidden layer's, each rank's part
 * of it in bb->dh), then the replicated layers' backward. */
static spr_status sharded_hidden_backward(const sharded_ctx *c, int threads) {
    spr_model *m = c->m;
    spr_batch_buf *bb = m->bb;
    const spr_layer *Lh = &m->layers[m->n_layers - 2];
    spr_status st = spr_dist_allreduce(m->dist, bb->dh[m->n_layers - 2], c->n * stride_of(Lh),
                                       SPR_DIST_SUM, "hidden gradient");
    if (st) return st;
    uint8_t *has_labels = bb->has_labels;
    for (int64_t i = 0; i < c->n; i++)
        has_labels[i] = c->d->label_indptr[c->rows[i] + 1] > c->d->label_indptr[c->rows[i]];
    sharded_replicated_backward(c, has_labels, threads);
    return SPR_STATUS_OK;
}

/* The fused sharded step's phase 1 end: the logits of the rank's active rows, each row
 * read once for the batch (grouped_logits), then each sample's into bb->out_z and its
 * local max. A sample without labels forms none (its max 0 on every rank). */
static void sharded_grouped_logits(const sharded_ctx *c, int threads) {
    spr_model *m = c->m;
    spr_batch_buf *bb = m->bb;
    spr_deferred *f = c->f;
    grouped_logits(m, threads < f->threads ? threads : (int)f->threads);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < c->n; i++) {
        const float *z = f->delta + i * f->cap;
        float zmax = f->n[i] ? -INFINITY : 0.0f;
        for (int64_t a = 0; a < f->n[i]; a++) zmax = z[a] > zmax ? z[a] : zmax;
        memcpy(bb->out_z + i * bb->out_cap, z, (size_t)f->n[i] * sizeof(float));
        bb->red[i] = zmax;
    }
}

/* The fused sharded step's second half (spr_model_apply_gradients, after the output
 * layer's row pass left this rank's part of each sample's dLoss/dh in f->dh, f->parts
 * threads' parts): the parts summed in thread order into bb->dh, then phases 4 and 5. */
static spr_status sharded_fused_backward(spr_model *m, int threads) {
    spr_deferred *f = m->deferred;
    spr_batch_buf *bb = m->bb;
    const spr_layer *Lh = &m->layers[m->n_layers - 2];
    const int64_t st_h = stride_of(Lh), per_part = f->batch * f->in_stride;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < f->n_samples; i++) {
        float *dh = bb->dh[m->n_layers - 2] + i * st_h;
        const float *part = f->dh + i * f->in_stride;
        for (int64_t j = 0; j < Lh->size; j++) {
            float v = part[j];
            for (int64_t p = 1; p < f->parts; p++) v += part[p * per_part + j];
            dh[j] = v;
        }
    }
    const sharded_ctx c = {m, f->view, f->batch_rows, f->n_samples, 0, 0, f};
    return sharded_hidden_backward(&c, threads);
}

static spr_status compute_gradients_sharded(spr_model *m, const spr_dataset_view *d,
                                            const int64_t *rows, int64_t n,
                                            const spr_train_options *o, spr_deferred *f,
                                            spr_batch_stats *stats) {
    struct spr_dist *dist = m->dist;
    const spr_dist_stats before = spr_dist_get_stats(dist);
    const int threads = spr_threads(o->threads);
    const int last = m->n_layers - 1;
    spr_batch_buf *bb = m->bb;
    sharded_ctx c = {m, d, rows, n, o->dense != 0,
                     spr_mix64(m->cfg.seed ^ 0x7f4a7c159e3779b9ull) ^ spr_mix64((uint64_t)m->steps), f};
    spr_status st;
    /* ranks draw their output pools independently, each among its own rows; the hidden
     * layers' alike (replicated) */
    spr_model_draw_pools(m, o, c.step_seed, m->label_lo ? spr_mix64((uint64_t)m->label_lo) : 0);

#pragma omp parallel num_threads(threads)
    {
        spr_scratch *s = spr_thread_scratch(m);
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < n; i++) sharded_forward(&c, i, s);
    }
    if (f && f->fused) sharded_grouped_logits(&c, threads);
    if ((st = spr_dist_allreduce(dist, bb->red, n, SPR_DIST_MAX, "softmax max"))) goto fail;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; i++) sharded_local_sums(&c, i);
    if ((st = spr_dist_allreduce(dist, bb->red + n, 3 * n, SPR_DIST_SUM, "softmax sums"))) goto fail;
    const float inv_batch = 1.0f / (float)n;
#pragma omp parallel num_threads(threads)
    {
        spr_scratch *s = spr_thread_scratch(m);
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < n; i++) sharded_output_backward(&c, i, inv_batch, s);
    }
    if (!(f && f->fused) && (st = sharded_hidden_backward(&c, threads))) goto fail;

    m->samples += n;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        double loss = 0.0, act = 0.0;
        for (int64_t i = 0; i < n; i++) loss += m->sample_loss[i], act += bb->red[3 * n + i];
        stats->loss = loss / (double)n;
        for (int l = 0; l < last; l++) {
            double sum = 0.0;
            for (int64_t i = 0; i < n; i++) sum += (double)m->sample_active[i * SPR_MAX_LAYERS + l];
            stats->active[l] = sum / (double)n;
        }
        stats->active[last] = act / (double)n; /* over all ranks */
        const spr_dist_stats after = spr_dist_get_stats(dist);
        stats->comm_seconds = after.seconds - before.seconds;
        stats->comm_bytes = after.bytes - before.bytes;
    }
    return SPR_STATUS_OK;
fail: /* a collective failed (a rank died or hangs): the batch's partial gradient goes, the
       * model stays at its last step */
    spr_model_zero_gradients(m);
    return st;
}

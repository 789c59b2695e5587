/*
 * model.h: the layout of a model in memory. Internal: shared by the model's own files
 * (model.c, train.c, predict.c) and the checkpoint writer/reader (checkpoint.c).
 *
 * Parameters of a layer live in one allocation carved into named arrays. Layer 0 is an
 * embedding bag: its weight is (n_features, size), one row per input feature, so a
 * sparse input costs O(nnz x size). Every other layer stores one row per neuron,
 * (size, fan_in), so a sampled neuron is one contiguous row.
 */
#ifndef SPR_MODEL_H
#define SPR_MODEL_H

#include "common.h"
#include "hash.h"
#include "kernels.h"
#include "lsh.h"
#include "sparrow.h"

#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>

/* At most 2^20 buckets (4 MB) per table; model.c folds keys further, to 4 buckets a
 * neuron, and checkpoint.c reads tables saved before that second bound. */
#define SPR_KEY_BITS_MAX 20

typedef struct spr_layer {
    spr_layer_config cfg;
    int64_t size;            /* neurons */
    int64_t fan_in;          /* input dimension (n_features for layer 0) */
    int64_t rows, cols;      /* weight shape: (n_features, size) for layer 0, else (size, fan_in) */
    int64_t stride;          /* floats between weight rows (cols rounded up to 64 bytes) */
    float *w;                /* (rows, stride); NULL when w16 holds the weights */
    uint16_t *w16;           /* (rows, stride) the weights as BF16: the output layer of a model
                                with bf16_weights (else NULL) */
    float *gw;               /* (rows, stride) gradient, zero outside touched rows */
    size_t gw_reserved;      /* a sampled output layer's gw is reserved untouched (its bytes
                                here; else 0): training defers its gradient (train.c) and
                                never writes these rows; a path that does calls
                                spr_layer_gradient_rows first */
    int gw_ready;            /* gw's pages are faulted in */
    float *mw, *vw;          /* (rows, stride) Adam moments; NULL when mw16, vw16 hold them */
    uint16_t *mw16, *vw16;   /* (rows, stride) the moments as BF16: the output layer of a model
                                with bf16_state (else NULL) */
    float *b, *gb, *mb, *vb; /* (size) bias, its gradient and moments */
    void *block;             /* the one allocation the arrays above are carved from */

    /* Rows that received gradient in the current batch (lazy Adam updates only these). */
    atomic_uchar *touched;   /* (rows) 1 if in touched_list */
    int32_t *touched_list;   /* (rows) */
    atomic_llong n_touched;
    int64_t *last_step;      /* (rows) the step (1, 2, ...) that last stepped each row; 0:
                                none yet. A row's catch-up covers the steps after it. */

    /* Sampling (layers > 0 with sparsity < 1 only). */
    int sampled;
    int64_t target_active;   /* ceil(sparsity x size): neurons active per sample */
    int64_t random_reserve;  /* random_fraction x target_active: slots kept for random neurons */
    int hash_k;              /* effective K */
    spr_hasher *hasher;
    spr_lsh *tables;
    uint32_t *keys;          /* size x L: a rehash's keys, table by table (keys[t size + i],
                              * as spr_lsh_build reads them fastest); with rank selection,
                              * after the build, what the tables hold, neuron by neuron
                              * (keys[i L + t], spr_lsh_item_keys: rank_score reads a
                              * neuron's keys together) */
    /* The batch's pool of random neurons (training with o->random_pool = G > 0): G x
     * random_reserve draws, sorted, without repeats; spr_model_draw_pools fills it before
     * a batch, spr_layer_select draws each sample's random share from it. */
    int32_t *pool_ids, *pool_tmp; /* (G x random_reserve) each; in the model's scratch */
    int64_t n_pool;
} spr_layer;

/* One slot of a selection's set of neurons (sample.c): a neuron id and its count (tables
 * that returned it, its rank score, or sample.c's TAKEN once in the active set); the slot
 * belongs to the selection in progress when its stamp is the scratch's. */
typedef struct spr_idslot {
    int32_t id;
    uint16_t count;
    uint16_t stamp;
} spr_idslot;

/* Per-thread scratch for one sample in flight, allocated before training. */
typedef struct spr_scratch {
    int64_t cap[SPR_MAX_LAYERS];   /* capacity of the arrays of each layer */
    int32_t *ids[SPR_MAX_LAYERS];  /* (cap) active neuron ids; unused for dense layers */
    float *act[SPR_MAX_LAYERS];    /* (cap) activations (logits then probabilities for the output) */
    float *delta[SPR_MAX_LAYERS];  /* (cap) dLoss/d pre-activation */
    float *dense_in;               /* (max fan_in) a sparse activation scattered densely */
    spr_idslot *slots;             /* (1 << slot_bits) the selection's neurons: an open-addressing
                                      set sized by the selection, not the layer (sample.c) */
    int slot_bits;
    uint16_t stamp;
    uint32_t *cand_slot;           /* (cand_cap) the slot of each candidate */
    int32_t *cand;                 /* (cand_cap) LSH candidates, then the radix sort's buffer */
    int64_t cand_cap;              /* max(L x bucket capacity, active capacity) */
    uint32_t *keys;                /* (L max) */
    int32_t *hash_work;            /* hasher scratch */
    uint32_t *hist;                /* (spr_select_top + 2) selection histogram of scores */
    void *block;
} spr_scratch;

/* The whole batch of the model-parallel step (train.c, "sharded step"): the step stops
 * twice for collectives, so every sample's activations live until the end of the batch
 * (the one-process step keeps them in per-thread scratch instead). Made by
 * spr_model_prepare when the model is sharded. */
typedef struct spr_batch_buf {
    int64_t batch;                /* samples it holds */
    int64_t out_cap;              /* output activations per sample */
    float *h[SPR_MAX_LAYERS];     /* (batch, size_l) hidden activations, l < n_layers - 1 */
    float *dh[SPR_MAX_LAYERS];    /* (batch, size_l) dLoss/d pre-activation */
    /* A sampled hidden layer l keeps its active neurons only, as the one-process step
     * does: sample i's hid_n[l][i] neurons hid_ids[l] + i hid_cap[l] (ascending), their
     * values and deltas the first hid_n of its rows of h[l] and dh[l] (dh[last - 1]
     * full-width until the allreduce of phase 4 has summed it). NULL: not sampled. */
    int32_t *hid_ids[SPR_MAX_LAYERS];
    int64_t *hid_n[SPR_MAX_LAYERS];
    int64_t hid_cap[SPR_MAX_LAYERS];
    int32_t *out_ids;             /* (batch, out_cap) active output rows (local ids) */
    float *out_z;                 /* (batch, out_cap) logits, then probabilities */
    float *out_delta;             /* (batch, out_cap) */
    int64_t *out_n;               /* (batch) active output rows */
    int64_t label_cap;            /* labels per sample in `labels` */
    int32_t *labels;              /* (batch, label_cap) the sample's labels in this shard, local */
    int64_t *n_local;             /* (batch) labels of the sample in this shard */
    uint8_t *has_labels;          /* (batch) the sample has labels (in any shard) */
    float *red;                   /* (4 batch) max; sum-exp, label-logit sum, active */
    void *block;
} spr_batch_buf;

/* The closed-form catch-up of a row last stepped at step t0 that missed the s steps
 * t0 + 1 .. t0 + s (spr_layer_adam_catch_up_row, spr_model_catch_up). torch.optim.Adam's
 * s zero-gradient steps scale its moments by beta1^s and beta2^s and move each weight by
 *   sum_{k=1..s} lr / bc1(t0 + k) x beta1^k m / (sqrt(beta2^k v / bc2(t0 + k)) + eps),
 * bc_i(u) = 1 - beta_i^u. With r = beta1 / sqrt(beta2) and c(u) = sqrt(bc2(u)) / bc1(u)
 * that is sum_k lr r^k c(t0 + k) m / (sqrt(v) + e_k), e_k = eps sqrt(bc2(t0 + k) / beta2^k),
 * taken as m / (sqrt(v) + e) x lr S with S = sum_k r^k c(t0 + k) = P(t0) - r^s P(t0 + s),
 * P(u) = sum_{k>=1} r^k c(u + k), and e the mean of the e_k weighted by the terms,
 * e = eps (Q(t0) - q^s Q(t0 + s)) / S with q = beta1 / beta2, d(u) = bc2(u) / bc1(u) and
 * Q(u) = sum_{k>=1} q^k d(u + k): exact for s = 1, and for s > 1 the error of one eps for
 * all the terms is of second order in (e_k - e) / sqrt(v) (the first cancels), where a
 * single e_1 left it of the first (1e-3 of the move at eps 1e-6 early in training). With
 * beta1 >= beta2 (Q diverges) or beta1 = 0 (S = 0: no terms) e is e_1 =
 * eps sqrt(bc2(t0 + 1) / beta2). P and Q follow
 * P(u) = r (c(u + 1) + P(u + 1)) down from u = SPR_CATCH_UP_U, past which c and d are
 * taken as 1 (beta2^u < 1e-14 there at beta2 = 0.999; larger beta2 leave an error of
 * ~beta2^u / 2 in c); the powers of r, q, beta1, beta2 are tabled up to SPR_CATCH_UP_S
 * missed steps (pow beyond). The sum needs r < 1 (beta1^2 < beta2, spr_check_adam). The
 * tables depend on beta1 and beta2 only: made when they change. */
#define SPR_CATCH_UP_U 32768
#define SPR_CATCH_UP_S 1024
typedef struct spr_catch_up {
    int on;                                  /* 0: lazy Adam (spr_train_options.lazy_adam) */
    float lr, eps;                           /* of the step in progress */
    double beta1, beta2, r, q;               /* what the tables were made for (0: none yet) */
    int weighted_eps;                        /* q < 1: Q is tabled */
    double P[SPR_CATCH_UP_U + 1];            /* P(u) */
    double Q[SPR_CATCH_UP_U + 1];            /* Q(u) */
    float sq2[SPR_CATCH_UP_U + 1];           /* sqrt(bc2(u) / beta2) */
    double rs[SPR_CATCH_UP_S + 1], qs[SPR_CATCH_UP_S + 1]; /* ^s */
    double b1s[SPR_CATCH_UP_S + 1], b2s[SPR_CATCH_UP_S + 1];
} spr_catch_up;

/* Whether c holds the Adam options of a step with catch-up (lr, eps, the betas its
 * tables were made for: beta2 > beta1^2 >= 0 once made): what spr_model_settle takes and
 * a saved model keeps (checkpoint.c, ADAM). */
static inline int spr_catch_up_known(const spr_catch_up *c) { return c->on && c->beta2 > 0.0; }

struct spr_model {
    spr_model_config cfg;
    spr_layer layers[SPR_MAX_LAYERS];
    int n_layers;

    int64_t steps, samples, epoch;
    spr_catch_up catch_up;    /* the optimizer's catch-up tables (670 KB) */
    int64_t settled_step;     /* every row's last step is at least this: the steps when
                                 spr_model_catch_up last left no row owing, or a loaded
                                 model's earliest last step; = steps: no row owes any */
    int weights_only;         /* loaded for inference (spr_model_load_inference): no weight
                                 gradients or moments; never owes steps it could take
                                 (settled_step = steps, or the Adam options unknown), so
                                 spr_settled reads its rows as stored */
    int torn;                 /* a collective failed inside a fused sharded step, after the
                                 output layer's rows had taken it (train.c): the hidden
                                 layers have not; training and saving are refused */
    int64_t next_rehash;      /* step at which the next rehash happens */
    int64_t rehashes, rebuilds;
    int64_t step_rows, step_bytes; /* what the last spr_model_apply_gradients stepped and moved */
    int64_t fused_steps;      /* steps that took the fused path (train.c): for the tests */
    int per_sample;           /* tests: spr_model_output_train takes its per-sample path
                                 (external.c), the fused step's reference twin */
    spr_data_note note;       /* the training set, as the caller described it (points 0: unknown) */

    spr_scratch *scratch;     /* (n_scratch) */
    int n_scratch;
    int64_t scratch_labels;   /* max labels per point the scratch was sized for */
    int scratch_dense;        /* scratch sized for dense mode */
    float *sample_loss;       /* (scratch_batch) per-sample loss of the current batch */
    int64_t *sample_active;   /* (scratch_batch, SPR_MAX_LAYERS) active neurons per sample */
    int64_t scratch_batch;
    int scratch_pool;         /* random_pool the shared ids were sized for */
    void *pool_block;       /* the sampled layers' pool_ids and pool_tmp */
    /* layer_rehash's per-thread scratch where its stack buffers are too small (SimHash
     * with many codes, BF16 rows wider than 4096), sized by spr_model_prepare so that a
     * rehash inside training allocates nothing: (rehash_threads, rehash_work_len) int32
     * of hash work, then (rehash_threads, rehash_conv_len) floats of widened BF16 rows. */
    void *rehash_block;
    int rehash_threads;
    int64_t rehash_work_len, rehash_conv_len;

    spr_log_fn log;
    void *log_user;

    /* The output layer's batch gradient kept as (sample, neuron, delta) entries until the
     * optimizer forms each touched row's gradient and steps it in one pass (train.c). */
    struct spr_deferred *deferred;

    /* Model parallelism (dist.c): the output layer holds the rows of labels
     * [label_lo, label_lo + its size) of label_total; 0 and its size on one process. */
    int64_t label_lo, label_total;
    struct spr_dist *dist;    /* borrowed; NULL: one process */
    spr_batch_buf *bb;        /* the sharded step's batch (NULL on one process) */
};

/* The catch-up of a row last stepped at t0 over the steps t0 + 1 .. m->steps
 * (spr_catch_up): w -= S m / (sqrt(v) + e), m x d1, v x d2. */
typedef struct spr_catch_up_coef {
    float S, e, d1, d2;
} spr_catch_up_coef;

/* Where one row of a layer is held: its weights (w, or w16 for BF16 weights) and moments
 * (mw and vw, or mw16 and vw16): the layer's own row or a copy (spr_settled_row). */
typedef struct spr_row_at {
    float *w, *mw, *vw;
    uint16_t *w16, *mw16, *vw16;
} spr_row_at;

/* Reading a model that owes Adam steps (rows that missed steps inside an epoch) as
 * spr_model_settle would leave it, without writing it: each row that owes steps is copied
 * with its moments and takes them in the copy, by the kernels and rounding bits settle
 * uses, so inference scores bit for bit what it would after a settle, and training goes
 * on as if nothing had read it (an evaluation inside an epoch, --eval-every, fit's
 * validation). Off, reading the rows as stored, when no row owes steps (settled, lazy
 * Adam, never stepped). */
typedef struct spr_settled {
    const spr_model *m;
    int on;
    int64_t cols;           /* the widest row: copies take spr_settled_buf_bytes */
    int64_t t_lo;           /* coef[t - t_lo]: the catch-up of a row last stepped at t */
    spr_catch_up_coef *coef;    /* (m->steps - t_lo): t_lo = m->settled_step, or steps - 65536 */
} spr_settled;

/* Fills *s for m (allocating its table when rows owe steps); NO_MEMORY on failure. */
spr_status spr_settled_init(spr_settled *s, const spr_model *m);
void spr_settled_free(spr_settled *s);
/* Bytes of a per-thread copy buffer for spr_settled_row (0 when s is off). */
size_t spr_settled_buf_bytes(const spr_settled *s);
/* spr_settled_row of a row that owes steps: its copy in buf, caught up. */
spr_row_at spr_settled_copy(const spr_settled *s, const spr_layer *L, int64_t r, void *buf,
                            float *b);

/* Row r of L where the layer keeps it. */
static inline spr_row_at spr_layer_row_at(const spr_layer *L, int64_t r) {
    const int64_t off = r * L->stride;
    spr_row_at a = {NULL, NULL, NULL, NULL, NULL, NULL};
    if (L->w16) a.w16 = L->w16 + off;
    else a.w = L->w + off;
    if (L->mw16) a.mw16 = L->mw16 + off, a.vw16 = L->vw16 + off;
    else if (L->mw) a.mw = L->mw + off, a.vw = L->vw + off; /* none for inference (weights_only) */
    return a;
}

/* Row r of L as settled: the layer's own row when it owes nothing (inline: the exact
 * scoring of a settled model reads every row through here), else its copy in buf
 * (spr_settled_buf_bytes, overwritten by the next call). *b, where b is given (NULL for
 * layer 0, whose bias is not per row), gets the row's bias, also as settled. */
static inline spr_row_at spr_settled_row(const spr_settled *s, const spr_layer *L, int64_t r,
                                         void *buf, float *b) {
    if (s->on && L->last_step[r] < s->m->steps) return spr_settled_copy(s, L, r, buf, b);
    if (b) *b = L->b[r];
    return spr_layer_row_at(L, r);
}

/* SPR_STATUS_OK if o's Adam constants can train: a finite lr > 0, betas in [0, 1), a
 * finite eps > 0, and for Adam with catch-up beta1^2 < beta2 (else its sum of missed
 * steps diverges; spr_catch_up). Else fails naming what is wrong. */
spr_status spr_check_adam(const spr_train_options *o);

/* Fills m->catch_up for step m->steps + 1 with options o (every step, before any row;
 * the missed steps are taken at this step's lr). */
void spr_catch_up_prepare(spr_model *m, const spr_train_options *o);

/* The rounding bits of the step in progress for row r of the output layer (BF16 moments
 * or weights): from the step and the row's global label (a shard's row r is label
 * label_lo + r). */
static inline uint32_t spr_layer_step_salt(const spr_model *m, int64_t r) {
    return (uint32_t)spr_mix64((uint64_t)m->steps << 32 ^ (uint64_t)(m->label_lo + r));
}

/* Row r of L (a model for inference, loading) takes the steps it owes with the moments
 * at `moments` (mw, vw or mw16, vw16: copies read from the file; L keeps none), bit for
 * bit what spr_model_settle leaves in its weights and bias; records steps as its last. */
void spr_layer_settle_row(const spr_model *m, spr_layer *L, int64_t r, const spr_row_at *moments);

/* spr_layer_adam_row of a row that owes steps (last_step[r] != steps): its catch-up and
 * its step in one pass (spr_adam_catch_up_row, _bf16), then its bias's catch-up. Returns
 * 0, doing nothing, if it owes none after all (lazy Adam): the plain step then. */
int spr_layer_adam_catch_up_row(const spr_model *m, spr_layer *L, int64_t r, float *g,
                                const spr_train_options *o, float bc1, float bc2);

/* One Adam step on weight row r of model m's layer L with gradient g (fan_in floats,
 * cleared), after its catch-up, in the precision L keeps its moments in: every path that
 * steps a layer goes through here. BF16 moments take their rounding bits from the step and the row's global
 * label (a shard's row r is label label_lo + r), so a run is the same on any thread or
 * rank count and a resumed run continues it exactly. */
static inline void spr_layer_adam_row(const spr_model *m, spr_layer *L, int64_t r, float *g,
                                      const spr_train_options *o, float bc1, float bc2) {
    if (L->last_step[r] != m->steps && spr_layer_adam_catch_up_row(m, L, r, g, o, bc1, bc2)) return;
    L->last_step[r] = m->steps + 1;
    const int64_t off = r * L->stride;
    if (L->w16)
        spr_adam_row_bf16w(L->w16 + off, g, L->mw16 + off, L->vw16 + off, L->cols, o->lr, o->beta1,
                           o->beta2, o->eps, bc1, bc2, spr_layer_step_salt(m, r));
    else if (L->mw16)
        spr_adam_row_bf16(L->w + off, g, L->mw16 + off, L->vw16 + off, L->cols, o->lr, o->beta1,
                          o->beta2, o->eps, bc1, bc2, spr_layer_step_salt(m, r));
    else
        spr_adam_row(L->w + off, g, L->mw + off, L->vw + off, L->cols, o->lr, o->beta1, o->beta2,
                     o->eps, bc1, bc2);
}

/* Weight row j of L against a dense vector x (fan_in floats), and x += alpha x row j:
 * every reader of weight rows goes through these, whatever the storage (float or BF16). */
static inline float spr_layer_dot(const spr_layer *L, int64_t j, const float *x) {
    return L->w16 ? spr_dot_bf16(L->w16 + j * L->stride, x, L->cols)
                  : spr_dot(L->w + j * L->stride, x, L->cols);
}
static inline void spr_layer_axpy(const spr_layer *L, float alpha, int64_t j, float *y) {
    if (L->w16) spr_axpy_bf16(alpha, L->w16 + j * L->stride, y, L->cols);
    else spr_axpy(alpha, L->w + j * L->stride, y, L->cols);
}
/* spr_layer_dot and spr_layer_axpy of a row wherever it is held (spr_row_at). */
static inline float spr_row_at_dot(const spr_layer *L, const spr_row_at *a, const float *x) {
    return L->w16 ? spr_dot_bf16(a->w16, x, L->cols) : spr_dot(a->w, x, L->cols);
}
static inline void spr_row_at_axpy(const spr_layer *L, float alpha, const spr_row_at *a, float *y) {
    if (L->w16) spr_axpy_bf16(alpha, a->w16, y, L->cols);
    else spr_axpy(alpha, a->w, y, L->cols);
}
/* Where row j starts and how many bytes it has (prefetching). */
static inline const void *spr_layer_row(const spr_layer *L, int64_t j) {
    return L->w16 ? (const void *)(L->w16 + j * L->stride) : (const void *)(L->w + j * L->stride);
}
static inline int64_t spr_layer_row_bytes(const spr_layer *L) {
    return L->cols * (L->w16 ? 2 : 4);
}

/* Faults in L's gradient rows if they were reserved untouched (gw_reserved), once, so that
 * no step waits on fresh pages: every path that writes gw calls it before its first step. */
static inline void spr_layer_gradient_rows(spr_layer *L) {
    if (L->gw_reserved && !L->gw_ready) spr_pages_touch(L->gw, L->gw_reserved), L->gw_ready = 1;
}

/* Frees what train.c allocated for a model (the deferred output gradient). */
void spr_train_free(spr_model *m);

/* spr_model_create for the output rows [lo, hi) of cfg's output layer: the model's own
 * config has an output of hi - lo neurons; weights are those of the same rows of the
 * whole model. */
spr_status spr_model_create_rows(const spr_model_config *cfg, int64_t lo, int64_t hi,
                                 spr_model **out);

/* The calling thread's number in its OpenMP team, and the team's size (0 and 1 outside
 * a parallel region, or built without OpenMP). */
static inline int spr_team_rank(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static inline int spr_team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* The calling OpenMP thread's training scratch (spr_model_prepare made one per thread). */
static inline spr_scratch *spr_thread_scratch(const spr_model *m) {
    return &m->scratch[spr_team_rank()];
}

/* The spr_model_info a model of cfg (validated; one process) reports before any step:
 * the sizes spr_model_get_info takes from the allocated layers, from cfg alone. */
spr_model_info spr_model_config_info(const spr_model_config *cfg);

/* Allocates a model's arrays for cfg (validated) without initialising weights or tables. */
spr_status spr_model_alloc(const spr_model_config *cfg, spr_model **out);
/* The same; weights_only: no weight gradients and no weight moments (gw, mw, vw, mw16,
 * vw16 NULL; the biases keep theirs, which are small), for a model loaded for inference. */
spr_status spr_model_alloc_as(const spr_model_config *cfg, int weights_only, spr_model **out);

/* Makes m weights_only: releases its weight gradients and moments, and the keys a rehash
 * hashes into (after a settle: it must owe no steps that could be taken, settled_step). */
void spr_model_drop_state(spr_model *m);

/* Frees the keys a rehash hashes into (not rank selection's, which it reads) and the
 * rehash's scratch: a model for inference, its tables built, needs neither. */
void spr_model_drop_keys(spr_model *m);

/* Frees the hash functions, tables and keys of every sampled layer (a model for inference
 * that does not want them: exact inference never reads them). */
void spr_model_drop_tables(spr_model *m);

/* SPR_STATUS_OK, or BAD_INPUT naming `what` when m is weights_only: what needs the
 * optimizer state (training, taking owed steps, saving, handing the moments out); or
 * IO_ERROR when m is torn (a step cut by a failed collective). */
spr_status spr_model_check_state(const spr_model *m, const char *what);

/* 1 when a sampled layer of m has no LSH tables (loaded for inference without them). */
int spr_model_tables_missing(const spr_model *m);
/* The message for a use of the tables on such a model (%s: the use). */
#define SPR_NO_TABLES                                                                              \
    "%s needs the LSH tables: the model was loaded for inference without them "                   \
    "(spr_model_load_inference, tables 0)"

/* Draws hash functions for the sampled layers from (seed, layer, rebuilds) and fills the
 * tables from the current weights. */
spr_status spr_model_build_tables(spr_model *m, int threads);

/* spr_model_build_tables, except that the layers whose bit (1u << layer) is set in
 * `restored` get their hash functions and tables but no hashing of their rows: the caller
 * fills those tables itself (a loaded file's TBL sections, which would replace whatever
 * hashing the rows made: at 17M labels a third of a load's time). */
spr_status spr_model_build_tables_restoring(spr_model *m, int threads, unsigned restored);

/* Fills the tables of sampled `layer` from its rows, as spr_model_build_tables does (after
 * it made them: the scratch is reserved; the keys are allocated if the layer had none,
 * the only failure). */
spr_status spr_model_fill_tables(spr_model *m, int layer, int threads);

/* Seed of the hash functions of `layer` after `rebuilds` redraws. */
uint64_t spr_model_hash_seed(const spr_model *m, int layer, int64_t rebuilds);

/* The active set of sampled layer L for one input, sorted ascending into ids: the
 * labels (output layer in training), then LSH candidates chosen by the layer's
 * strategy, then random neurons up to target_active + n_labels (the random share drawn
 * from pool (n_pool ids, the batch's, spr_model_draw_pools) when given). With inference = 1:
 * every LSH candidate (the union of the L buckets) and nothing else. in_dense is the
 * layer's input (fan_in floats). Uses s->mark, count, cand, keys, hash_work, hist. Returns
 * the count. */
int64_t spr_layer_select(const spr_layer *L, const float *in_dense, const int32_t *labels,
                         int64_t n_labels, int inference, spr_scratch *s, spr_rng *rng,
                         int32_t *ids, const int32_t *pool, int64_t n_pool);

/* log2 of the slots a selection of L needs (spr_scratch.slots): at least twice the most
 * neurons one selection can hold (max_labels labels, L buckets of candidates, the target
 * of random ones), and at least the layer's size where that is smaller (then a neuron's
 * slot is its id). */
int spr_select_slot_bits(const spr_layer *L, int64_t max_labels);

/* Sampler scratch for inference (spr_model_predict, the external layer's predict): what
 * spr_layer_select reads, allocated (inference may allocate); 0 if out of memory.
 * spr_sampler_scratch_free releases it (also after a failure). */
int spr_sampler_scratch(const spr_layer *L, spr_scratch *s);
void spr_sampler_scratch_free(spr_scratch *s);

/* Draws the batch's random pool of every sampled layer (L->pool_ids, n_pool: random_pool
 * x random_reserve uniform draws, sorted, repeats dropped); n_pool = 0 where there is
 * none (random_pool 0, dense). The seed comes from the step; the output layer's is
 * step_seed ^ out_salt (a rank's own draw among its rows; 0 on one process), the hidden
 * layers' are the same on every rank (replicated, they must sample alike). */
void spr_model_draw_pools(spr_model *m, const spr_train_options *o, uint64_t step_seed,
                          uint64_t out_salt);

/* Highest score a candidate of L can have in selection: K x L codes shared (rank) or L
 * tables returning it (the other strategies). */
static inline int spr_select_top(const spr_layer *L) {
    return L->cfg.select == SPR_SELECT_RANK ? L->hash_k * L->cfg.hash_l : L->cfg.hash_l;
}

/* After a training step: rehash (or rebuild) the sampled layers' tables when the
 * schedule in o says so (SLIDE's growing gaps); records the time in stats. */
spr_status spr_model_rehash_if_due(spr_model *m, const spr_train_options *o, spr_batch_stats *stats);

/* spr_model_config_memory_training for one process (sharded 0) or a rank of a sharded
 * model (sharded 1: a sampled input below the output does not defer there). */
spr_status spr_model_config_memory_training_as(const spr_model_config *c,
                                               const spr_train_options *o, int sharded,
                                               int64_t *bytes);

/* Clears the gradients and touched lists without an optimizer step (tests). */
void spr_model_zero_gradients(spr_model *m);

/* The output layer alone on dense inputs from outside (external.c, the PyTorch layer),
 * fused as the two-layer step's output layer is (train.c, spr_deferred): where
 * spr_output_deferrable (a sampled layer, not dense, not m->per_sample),
 * spr_output_forward_deferred selects each input row's active set (its rng seeded with
 * step_seed ^ spr_mix64(row), as external.c's per-sample path), forms the logits a row
 * at a time for the batch and each row's softmax: m->sample_loss, m->sample_active
 * (at [i SPR_MAX_LAYERS]); the gradient waits. Then spr_output_step_deferred steps the
 * touched rows (Adam, catch-up), forming (n, fan_in) dLoss/dinput in grad_input in the same
 * row pass (clipped: in a first pass that also sums the layer's gradient norm), and
 * counts the step; or spr_model_zero_gradients drops the batch (a loss
 * that is not finite). Called in that order, nothing between; spr_model_prepare first.
 * With one thread, bit for bit the per-sample path. */
int spr_output_deferrable(const spr_model *m, const spr_train_options *o);
spr_status spr_output_forward_deferred(spr_model *m, const float *input, int64_t n,
                                       const int64_t *label_indptr, const int32_t *labels,
                                       const spr_train_options *o, uint64_t step_seed);
void spr_output_step_deferred(spr_model *m, const spr_train_options *o, float *grad_input);

/* Exact inference scores a block of up to SPR_EXACT_BLOCK points against SPR_EXACT_ROWS
 * output rows at a time as one small matrix product (spr_matmul_panels: the block's hidden
 * vectors as panels of SPR_PANEL points stay in L1, the rows stream through registers),
 * so the weights are read from memory once per block and no dot ends in a horizontal
 * sum. A row that owes Adam steps (spr_settled) is copied and caught up once per block. */
#define SPR_EXACT_BLOCK 64
#define SPR_EXACT_ROWS 64

/* A thread's scratch for spr_exact_topk, one allocation (block; spr_free it). */
typedef struct spr_exact_scratch {
    float *hid;    /* (SPR_EXACT_BLOCK, stride) hidden vectors */
    float *panels; /* (SPR_EXACT_BLOCK / SPR_PANEL, fan_in, SPR_PANEL) the same, as panels */
    float *acc;    /* (SPR_EXACT_ROWS, SPR_EXACT_BLOCK) scores before the bias */
    float *rows;   /* (SPR_EXACT_ROWS, stride) rows widened from BF16 or read as settled */
    float *bias;   /* (SPR_EXACT_ROWS) their biases */
    void *block;
} spr_exact_scratch;

/* Points per exact block for n points on threads threads: as many as keep every thread
 * busy, in whole panels, at most SPR_EXACT_BLOCK. */
int64_t spr_exact_block(int64_t n, int threads);
/* Makes *x for an output layer of fan_in inputs; 0 when out of memory. */
int spr_exact_scratch_make(spr_exact_scratch *x, int64_t fan_in);

/* The exact top-k over every output of m of the nb (<= SPR_EXACT_BLOCK) hidden vectors
 * hid (nb, row stride ldh): ids_out and scores_out (nb, k), best first, ties to the lower
 * id, padded with -1 / -inf; the rows as sv settles them (buf: its copy buffer). A
 * point's scores are the same bits whatever else is in the block. */
void spr_exact_topk(const spr_model *m, const spr_settled *sv, void *buf, spr_exact_scratch *x,
                    const float *hid, int64_t ldh, int64_t nb, int k, int32_t *ids_out,
                    float *scores_out);

/* Hidden forward pass for one point (layers 0..n_layers-2, all neurons): the output
 * layer's input, fan_in of the output layer floats; the rows as sv settles them (buf: its
 * copy buffer). */
void spr_model_hidden_dense(const spr_model *m, const spr_settled *sv, void *buf,
                            const spr_dataset_view *d, int64_t row, float *h_a, float *h_b,
                            float **out);

#endif /* SPR_MODEL_H */

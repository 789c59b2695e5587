/*
 * test_dist.c: model parallelism (dist.c, the sharded step in train.c).
 *
 * Without arguments (ctest, any build, no MPI needed):
 *   - the sharded step on a one-rank communicator computes what the one-process step
 *     computes (threads 1, dense and sampled, two hidden layers, with and without
 *     gradient clipping, with one or two sampled hidden layers) after several steps; a
 *     sampled output after a dense layer defers its gradient (no gradient rows made)
 *   - the shard of rows [lo, hi) starts with the rows [lo, hi) of the whole model
 *   - a rank of 2 needs about half the output layer's memory of one process
 *   - a sharded save (manifest + shard file) loads back as the same model; a damaged
 *     manifest is refused naming file:line
 *   - a window of a file's output rows (what a rank of another split reads) is those
 *     rows bit for bit, and damage outside the window still fails its checksums
 * With --mpi DIR under `mpirun -np N` (scripts/test.sh):
 *   - dense training on N ranks equals dense training on one process (computed on
 *     every rank beside it) to 1e-5 after several steps, clipping included; losses too
 *   - a failure on one rank reaches every rank with its message (spr_dist_agree)
 *   - merged top-k predictions equal the whole model's
 *   - a model saved on N ranks loads on 1 process (the manifest assembled) and a
 *     one-process model loads on N ranks, equal to the reference
 *   - a sampled hidden layer trained on N ranks stays the same on every rank (the
 *     shards of its save agree)
 *   - each rank reads only its rows of a one-process file, of a one-rank manifest, and
 *     one process its rows of an N-rank manifest: exact, in less than a whole load's bytes
 *   - a model saved on N ranks inside an epoch and loaded for inference on 1 process
 *     predicts as the whole model loaded and settled, bit for bit (float and BF16),
 *     allocating less than half of what that load does; loaded for inference on the N
 *     ranks (spr_model_load_sharded_inference), as the ranks' whole shards do
 * With --mpi-die / --mpi-hang under mpirun -np 2: rank 1 dies (SIGKILL) or hangs after
 * two steps; rank 0 must fail with a clear error within its timeout (3 s), not hang.
 * The shell script checks the exit status and the message.
 */
#include "check.h"
#include "common.h"
#include "dist.h"
#include "model.h"
#include "sparrow.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OK(call)                                                                                 \
    do {                                                                                         \
        spr_status st_ = (call);                                                                 \
        if (st_) {                                                                               \
            printf("FAIL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,                       \
                   spr_status_to_string(st_), spr_last_error());                                 \
            fflush(stdout);                                                                      \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* Toy multi-label data: point i has class i % L (and for some points the next class;
 * every 7th point none), features from the class's block plus noise. */
typedef struct toy {
    int64_t *fp, *lp;
    int32_t *fi, *li;
    float *fv;
    spr_dataset *data;
} toy;

static void toy_make(toy *t, int64_t n, int64_t n_classes, uint64_t seed) {
    const int block = 6;
    spr_rng rng;
    spr_rng_seed(&rng, seed);
    t->fp = calloc((size_t)n + 1, sizeof(int64_t));
    t->lp = calloc((size_t)n + 1, sizeof(int64_t));
    t->fi = calloc((size_t)n * 8, sizeof(int32_t));
    t->fv = calloc((size_t)n * 8, sizeof(float));
    t->li = calloc((size_t)n * 2, sizeof(int32_t));
    int64_t nf = 0, nl = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = (int32_t)(i % n_classes);
        for (int b = 0; b < block; b++)
            if (spr_rng_below(&rng, 2)) t->fi[nf] = c * block + b, t->fv[nf++] = 0.3f + 0.2f * (float)spr_rng_uniform(&rng);
        t->fi[nf] = (int32_t)(n_classes * block + spr_rng_below(&rng, 20));
        t->fv[nf++] = 0.5f;
        t->fp[i + 1] = nf;
        if (i % 7 != 3) t->li[nl++] = c;
        if (i % 5 == 0 && c + 1 < n_classes) t->li[nl++] = c + 1;
        t->lp[i + 1] = nl;
    }
    spr_dataset_view v = {n, n_classes * block + 20, n_classes, t->fp, t->fi, t->fv, t->lp, t->li};
    OK(spr_dataset_wrap(&v, &t->data));
}

static void toy_free(toy *t) {
    spr_dataset_free(t->data);
    free(t->fp), free(t->lp), free(t->fi), free(t->fv), free(t->li);
}

static spr_model_config toy_config(const toy *t, float sparsity) {
    spr_dataset_view v = spr_dataset_get_view(t->data);
    spr_model_config c = spr_model_config_default(v.n_features, v.n_labels);
    c.n_layers = 3;
    c.layers[2] = c.layers[1];
    c.layers[0].size = 16;
    c.layers[1] = c.layers[0];
    c.layers[1].size = 12;
    c.layers[2].size = v.n_labels;
    c.layers[2].sparsity = sparsity;
    c.layers[2].hash_l = 8;
    c.init_std = 0.1f;
    c.seed = 7;
    return c;
}

/* Largest |a - b| over rows [lo, lo + rows of `part`) of `whole`'s layer l array `which`
 * and the rows of part (layer l of both: same columns). */
static double max_diff(spr_model *whole, spr_model *part, int l, spr_param which, int64_t lo) {
    float *a, *b;
    int64_t ra, ca, sa, rb, cb, sb;
    OK(spr_model_param(whole, l, which, &a, &ra, &ca, &sa));
    OK(spr_model_param(part, l, which, &b, &rb, &cb, &sb));
    int is_bias = which == SPR_PARAM_BIAS || which == SPR_PARAM_BIAS_ADAM_M || which == SPR_PARAM_BIAS_ADAM_V;
    double worst = 0.0;
    if (is_bias) { /* (1, size): the shard's biases are columns lo.. of the whole's */
        for (int64_t j = 0; j < cb; j++) worst = fmax(worst, fabs((double)a[lo + j] - b[j]));
        return worst;
    }
    for (int64_t r = 0; r < rb; r++)
        for (int64_t c = 0; c < cb; c++)
            worst = fmax(worst, fabs((double)a[(lo + r) * sa + c] - b[r * sb + c]));
    return worst;
}

/* Worst difference over every layer and array (weights, biases, Adam moments); 1e30
 * where a row's last step (what Adam's catch-up owes it) differs. */
static double model_diff(spr_model *whole, spr_model *part) {
    spr_model_info pi = spr_model_get_info(part);
    int nl = spr_model_get_config(part).n_layers;
    double worst = 0.0;
    static const spr_param arrays[] = {SPR_PARAM_WEIGHT, SPR_PARAM_BIAS, SPR_PARAM_WEIGHT_ADAM_M,
                                       SPR_PARAM_WEIGHT_ADAM_V, SPR_PARAM_BIAS_ADAM_M,
                                       SPR_PARAM_BIAS_ADAM_V};
    for (int l = 0; l < nl; l++) {
        const int64_t lo = l == nl - 1 ? pi.label_lo : 0;
        for (size_t p = 0; p < sizeof arrays / sizeof arrays[0]; p++)
            worst = fmax(worst, max_diff(whole, part, l, arrays[p], lo));
        const spr_layer *a = &whole->layers[l], *b = &part->layers[l];
        for (int64_t r = 0; r < b->rows; r++)
            if (a->last_step[lo + r] - whole->steps != b->last_step[r] - part->steps) worst = 1e30;
    }
    return worst;
}

/* Trains `whole` (one process) and `part` (sharded) side by side on the same batches;
 * returns the worst loss difference. */
static double train_both(spr_model *whole, spr_model *part, const toy *t, spr_train_options o,
                         int steps) {
    spr_dataset_view v = spr_dataset_get_view(t->data);
    int64_t rows[64];
    double worst = 0.0;
    for (int s = 0; s < steps; s++) {
        int64_t n = o.batch_size;
        for (int64_t i = 0; i < n; i++) rows[i] = (s * 37 + i * 11) % v.n_points;
        spr_batch_stats a, b;
        OK(spr_model_train_batch(whole, t->data, rows, n, &o, &a));
        OK(spr_model_train_batch(part, t->data, rows, n, &o, &b));
        worst = fmax(worst, fabs(a.loss - b.loss));
    }
    return worst;
}

/* ------------------------------------------------------------------ one process */

/* spr_dist_max_int on one rank: the value as it was; out of its range refused. */
static void test_max_int_one_rank(void) {
    spr_dist *self;
    OK(spr_dist_self(&self));
    int v = -7;
    OK(spr_dist_max_int(self, &v));
    CHECK(v == -7, "spr_dist_max_int on one rank: expected -7, got %d", v);
    v = 1 << 24;
    CHECK(spr_dist_max_int(self, &v) == SPR_STATUS_BAD_INPUT && v == 1 << 24,
          "spr_dist_max_int(2^24): expected BAD_INPUT, value unchanged");
    CHECK(spr_dist_max_int(self, NULL) == SPR_STATUS_BAD_INPUT, "spr_dist_max_int(NULL): expected BAD_INPUT");
    spr_dist_finalize(self);
}

/* The one-rank comparisons' options: batches of 24, one thread (bit for bit), rehashes
 * inside the run. */
static spr_train_options one_rank_options(float clip_norm, int dense) {
    spr_train_options o = spr_train_options_default();
    o.batch_size = 24;
    o.threads = 1;
    o.lr = 0.01f;
    o.rehash_first = 3;
    o.clip_norm = clip_norm;
    o.dense = dense;
    return o;
}

static void test_one_rank_step(void) {
    toy t;
    toy_make(&t, 300, 40, 11);
    spr_dist *self;
    OK(spr_dist_self(&self));
    const float sparsities[] = {1.0f, 0.25f};
    const float clips[] = {0.0f, 0.05f};
    /* hidden: 1 samples layer 1 (6 of 12), 2 adds a sampled layer 2 (5 of 10) fed by it */
    for (int hidden = 0; hidden < 3; hidden++)
    for (int si = 0; si < 2; si++)
        for (int ci = 0; ci < 2; ci++) {
            spr_model_config c = toy_config(&t, sparsities[si]);
            if (hidden) {
                c.layers[1].sparsity = 0.5f;
                c.layers[1].hash_l = 8;
            }
            if (hidden == 2) {
                c.n_layers = 4;
                c.layers[3] = c.layers[2];
                c.layers[2] = c.layers[1];
                c.layers[2].size = 10;
            }
            spr_model *whole, *part;
            OK(spr_model_create(&c, &whole));
            OK(spr_model_create_sharded(&c, self, &part));
            spr_train_options o = one_rank_options(clips[ci], si == 0);
            double dl = train_both(whole, part, &t, o, 8);
            double dw = model_diff(whole, part);
            CHECK(dl <= 1e-6 && dw <= 1e-6,
                  "one-rank sharded step, sparsity %g clip %g, %d sampled hidden layers: "
                  "expected the one-process result, got loss diff %g, parameter diff %g",
                  (double)sparsities[si], (double)clips[ci], hidden, dl, dw);
            /* a sampled output fed by a dense layer, clipped or not: the rank's step defers
             * the output rows' gradient to the optimizer as one process's does, and never
             * faults the gradient rows in (4 bytes an entry of the layer); fed by a sampled
             * layer, one process's defers too (since session 32), a rank's does not */
            const int deferred = si == 1 && hidden == 0, last = c.n_layers - 1;
            CHECK(si == 0 || /* (a dense layer's gradient rows are made with it) */
                      (part->layers[last].gw_ready == !deferred && !whole->layers[last].gw_ready),
                  "sparsity %g clip %g, %d sampled hidden layers: the output gradient rows: "
                  "rank %s, one process %s", (double)sparsities[si], (double)clips[ci], hidden,
                  part->layers[last].gw_ready ? "made" : "not made",
                  whole->layers[last].gw_ready ? "made" : "not made");
            /* and fuses (three layers: the backward below the output from the kept
             * activations, on the ranks through the replicated backward) */
            CHECK(part->fused_steps == (deferred ? 8 : 0) && whole->fused_steps == (deferred ? 8 : 0),
                  "sparsity %g clip %g, %d sampled hidden layers: expected %d fused steps, got %lld "
                  "(rank), %lld (one process)", (double)sparsities[si], (double)clips[ci], hidden,
                  deferred ? 8 : 0, (long long)part->fused_steps, (long long)whole->fused_steps);
            spr_model_free(whole);
            spr_model_free(part);
        }
    spr_dist_finalize(self);
    toy_free(&t);
}

/* The two-layer model of the CLI (sparse input -> hidden -> sampled softmax) on toy data. */
static spr_model_config toy_config2(const toy *t, float sparsity) {
    spr_model_config c = toy_config(t, sparsity);
    c.n_layers = 2;
    c.layers[1] = c.layers[2];
    return c;
}

/* Whether the BF16 output layers of a and b (same rows) hold the same bits: weights,
 * moments, biases and their moments. */
static int bf16_layers_equal(const spr_model *a, const spr_model *b) {
    const spr_layer *x = &a->layers[a->n_layers - 1], *y = &b->layers[b->n_layers - 1];
    const size_t n16 = (size_t)x->rows * (size_t)x->stride * sizeof(uint16_t);
    const size_t nb = (size_t)x->size * sizeof(float);
    return x->rows == y->rows && x->w16 && y->w16 && !memcmp(x->w16, y->w16, n16) &&
           !memcmp(x->mw16, y->mw16, n16) && !memcmp(x->vw16, y->vw16, n16) &&
           !memcmp(x->b, y->b, nb) && !memcmp(x->mb, y->mb, nb) && !memcmp(x->vb, y->vb, nb);
}

/* A two-layer sampled model's step on one rank is fused as one process's is (the output
 * rows' logits formed a row at a time for the batch, their input gradient in the
 * optimizer's row pass, the first layer's backward after it): the same model bit for bit
 * with one thread, BF16 weights and moments too (their rounding salted by the global
 * row), clipped too (the output rows' two passes: the norm's, then the step's); a dense
 * step takes the unfused path. */
static void test_one_rank_fused(void) {
    toy t;
    toy_make(&t, 300, 40, 13);
    spr_dist *self;
    OK(spr_dist_self(&self));
    for (int k = 0; k < 4; k++) { /* 0: fused, 1: clipped, 2: dense, 3: fused, BF16 */
        spr_model_config c = toy_config2(&t, 0.25f);
        c.bf16_state = c.bf16_weights = k == 3;
        spr_model *whole, *part;
        OK(spr_model_create(&c, &whole));
        OK(spr_model_create_sharded(&c, self, &part));
        spr_train_options o = one_rank_options(k == 1 ? 0.05f : 0.0f, k == 2);
        const char *what = k == 0 ? "fused" : k == 1 ? "clipped" : k == 2 ? "dense" : "fused, BF16";
        const double dl = train_both(whole, part, &t, o, 8);
        double dw = 0.0;
        if (k == 3) { /* the float arrays (the hidden layer) as below, the BF16 layer's bits */
            for (int p = 0; p < 6; p++)
                dw = fmax(dw, max_diff(whole, part, 0, (spr_param[]){SPR_PARAM_WEIGHT, SPR_PARAM_BIAS,
                          SPR_PARAM_WEIGHT_ADAM_M, SPR_PARAM_WEIGHT_ADAM_V, SPR_PARAM_BIAS_ADAM_M,
                          SPR_PARAM_BIAS_ADAM_V}[p], 0));
            if (!bf16_layers_equal(whole, part)) dw = 1e30;
        } else {
            dw = model_diff(whole, part);
        }
        /* (the loss is summed from the allreduced terms: its rounding differs) */
        CHECK(dl <= 1e-6 && dw == 0.0,
              "one-rank two-layer step (%s): expected the one-process model bit for bit, got "
              "loss diff %g, parameter diff %g", what, dl, dw);
        const int64_t want = k != 2 ? 8 : 0;
        CHECK(part->fused_steps == want && whole->fused_steps == want,
              "one-rank two-layer step (%s): expected %lld fused steps, got %lld (rank), %lld "
              "(one process)", what, (long long)want, (long long)part->fused_steps,
              (long long)whole->fused_steps);
        spr_model_free(whole);
        spr_model_free(part);
    }
    spr_dist_finalize(self);
    toy_free(&t);
}

static void test_shard_rows_and_memory(void) {
    toy t;
    toy_make(&t, 50, 40, 12);
    spr_model_config c = toy_config(&t, 0.25f);
    spr_model *whole, *part;
    OK(spr_model_create(&c, &whole));
    OK(spr_model_create_rows(&c, 13, 29, &part));
    double d = model_diff(whole, part);
    CHECK(d == 0.0, "rows [13, 29) of a whole model: expected identical weights, got diff %g", d);
    spr_model_info pi = spr_model_get_info(part);
    CHECK(pi.label_lo == 13 && pi.labels_total == 40, "shard info: expected labels 13 of 40, got %lld of %lld",
          (long long)pi.label_lo, (long long)pi.labels_total);
    spr_model_free(whole);
    spr_model_free(part);

    /* memory: an output layer that dominates (100k labels, 64 hidden) */
    spr_model_config big = spr_model_config_default(1000, 100000);
    big.layers[0].size = 64;
    int64_t one = 0, r0 = 0, r1 = 0;
    OK(spr_model_config_memory(&big, &one));
    OK(spr_model_config_memory_sharded(&big, 0, 2, &r0));
    OK(spr_model_config_memory_sharded(&big, 1, 2, &r1));
    double f0 = (double)r0 / (double)one, f1 = (double)r1 / (double)one;
    CHECK(f0 > 0.45 && f0 < 0.56 && f1 > 0.45 && f1 < 0.56,
          "memory per rank of 2: expected about half of %lld bytes, got %lld and %lld (%.3f, %.3f)",
          (long long)one, (long long)r0, (long long)r1, f0, f1);
    spr_status st = spr_model_config_memory_sharded(&big, 2, 2, &r0);
    CHECK(st == SPR_STATUS_BAD_INPUT, "rank 2 of 2: expected bad input, got %s", spr_status_to_string(st));
    /* what a rank's training touches: its sampled output layer's gradient rows deferred
     * (as one process's), clipped or not; a dense step needs them */
    spr_train_options to = spr_train_options_default();
    int64_t t0 = 0, t1 = 0, t2 = 0;
    OK(spr_model_config_memory_sharded_training(&big, &to, 0, 2, &t0));
    to.clip_norm = 1.0f;
    OK(spr_model_config_memory_sharded_training(&big, &to, 1, 2, &t1));
    to.dense = 1;
    OK(spr_model_config_memory_sharded_training(&big, &to, 1, 2, &t2));
    const int64_t rows0 = 50000 * spr_row_stride(64) * 4; /* a rank's gradient rows */
    CHECK(big.layers[1].sparsity < 1.0f && t0 == r0 - rows0 && t1 == r1 - rows0 && t2 == r1,
          "training memory of rank 0 of 2: expected %lld - %lld gradient bytes, got %lld; with "
          "clipping (rank 1) %lld, expected %lld; dense %lld, expected %lld", (long long)r0,
          (long long)rows0, (long long)t0, (long long)t1, (long long)(r1 - rows0), (long long)t2,
          (long long)r1);
    /* a sampled hidden layer as the output's input: one process defers (its gradient rows
     * untouched), a rank does not */
    spr_model_config big3 = big;
    big3.n_layers = 3;
    big3.layers[2] = big.layers[1];
    big3.layers[1] = big.layers[0];
    big3.layers[1].sparsity = 0.5f;
    to = spr_train_options_default();
    int64_t one3 = 0, one3_train = 0, r3 = 0, r3_train = 0;
    OK(spr_model_config_memory(&big3, &one3));
    OK(spr_model_config_memory_training(&big3, &to, &one3_train));
    OK(spr_model_config_memory_sharded(&big3, 0, 2, &r3));
    OK(spr_model_config_memory_sharded_training(&big3, &to, 0, 2, &r3_train));
    CHECK(one3_train == one3 - 2 * rows0 && r3_train == r3,
          "a sampled input below the output: one process expected %lld - %lld, got %lld; rank 0 "
          "of 2 expected %lld, got %lld", (long long)one3, (long long)(2 * rows0),
          (long long)one3_train, (long long)r3, (long long)r3_train);
    toy_free(&t);
}

/* The file the manifest at path names for shard r (beside it), into out; 0 if none. */
static int manifest_shard(const char *path, int r, char *out, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1200], name[1024];
    int rank, found = 0;
    long long lo, hi;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "shard %d %lld %lld %1023s", &rank, &lo, &hi, name) == 4 && rank == r;
    fclose(f);
    if (!found) return 0;
    const char *slash = strrchr(path, '/');
    int n = snprintf(out, size, "%.*s%s", slash ? (int)(slash - path + 1) : 0, path, name);
    return n > 0 && (size_t)n < size;
}

/* Entries of dir whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

/* A collective that fails inside a rank's step (a peer died; injected here on one rank:
 * dist.h's fail_at). In the step's forward (softmax max, softmax sums): the batch is
 * dropped whole, the model stays at its last step and trains on as if the batch had not
 * been (bit for bit the one-process model that skipped it). In the fused step's allreduce
 * of dLoss/dh, after the output rows have taken the step: the model is torn, and
 * training and saving it are refused (no file written) rather than saving half a step.
 * A clipped step's four collectives all come before any step: each drops the batch. */
static void test_failed_collective(const char *dir) {
    toy t;
    toy_make(&t, 300, 40, 14);
    spr_model_config c = toy_config2(&t, 0.25f);
    spr_train_options o = spr_train_options_default();
    o.batch_size = 24;
    o.threads = 1;
    o.lr = 0.01f;
    o.rehash_first = 3;
    int64_t rows[24];
    /* the step's collectives: max, sums, dLoss/dh; clipped, the norm's after dLoss/dh, and
     * all four before any row steps (the output rows' norm pass steps nothing) */
    for (int clip = 0; clip <= 1; clip++)
    for (int at = 1; at <= 3 + clip; at++) {
        o.clip_norm = clip ? 0.05f : 0.0f;
        const int torn = !clip && at == 3;
        spr_dist *self, *self2;
        OK(spr_dist_self(&self));
        OK(spr_dist_self(&self2));
        spr_model *whole, *part;
        /* the reference skips the batch: one process's model, or clipped another one-rank
         * model's (a rank sums the output layer's norm in float, through the allreduce) */
        if (clip) OK(spr_model_create_sharded(&c, self2, &whole));
        else OK(spr_model_create(&c, &whole));
        OK(spr_model_create_sharded(&c, self, &part));
        for (int s = 0; s < 6; s++) {
            for (int64_t i = 0; i < 24; i++) rows[i] = (s * 37 + i * 11) % 300;
            if (s == 3) self->fail_at = spr_dist_get_stats(self).collectives + at;
            spr_status st = spr_model_train_batch(part, t.data, rows, 24, &o, NULL);
            if (s != 3) {
                if (!torn || s < 3) OK(st);
                if (!torn || s < 3) OK(spr_model_train_batch(whole, t.data, rows, 24, &o, NULL));
                if (torn && s > 3)
                    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "between two steps"),
                          "a torn model: expected training refused, got %d (%s)", (int)st, spr_last_error());
                continue;
            }
            const char *want = at == 1 ? "softmax max" : at == 2 ? "softmax sums"
                             : at == 3 ? "hidden gradient" : "gradient norm";
            CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), want),
                  "collective %d of the step failing: expected IO_ERROR naming '%s', got %d (%s)", at,
                  want, (int)st, spr_last_error());
        }
        char path[512];
        snprintf(path, sizeof path, "%s/torn%d", dir, at);
        spr_status st = spr_model_save(part, path);
        if (!torn) {
            const double dw = model_diff(whole, part);
            CHECK(st == SPR_STATUS_OK && dw == 0.0 && part->steps == 5 && !part->torn,
                  "collective %d failing%s: expected the batch dropped (the model of the 5 other "
                  "steps bit for bit, saved), got save %d, diff %g, %lld steps", at,
                  clip ? " (clipped)" : "", (int)st, dw, (long long)part->steps);
        } else {
            struct stat sb;
            CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "between two steps") &&
                      stat(path, &sb) != 0,
                  "a torn model: expected its save refused and no file, got %d (%s)", (int)st,
                  spr_last_error());
        }
        char shard[600];
        if (manifest_shard(path, 0, shard, sizeof shard)) remove(shard);
        remove(path);
        spr_model_free(whole);
        spr_model_free(part);
        spr_dist_finalize(self);
        spr_dist_finalize(self2);
    }
    toy_free(&t);
}

static void test_manifest_one_rank(const char *dir) {
    toy t;
    toy_make(&t, 200, 40, 13);
    spr_dist *self;
    OK(spr_dist_self(&self));
    spr_model_config c = toy_config(&t, 0.25f);
    spr_model *part, *back;
    OK(spr_model_create_sharded(&c, self, &part));
    spr_train_options o = spr_train_options_default();
    o.batch_size = 20;
    o.threads = 1;
    int64_t rows[20];
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 20; i++) rows[i] = s * 20 + i;
        OK(spr_model_train_batch(part, t.data, rows, 20, &o, NULL));
    }
    char path[512];
    snprintf(path, sizeof path, "%s/m1", dir);
    OK(spr_model_save(part, path));
    OK(spr_model_load(path, &back));
    double d = model_diff(back, part);
    CHECK(d == 0.0, "a one-rank sharded save loaded back: expected identical, got diff %g", d);
    CHECK(spr_model_get_info(back).steps == 3, "steps after load: expected 3, got %lld",
          (long long)spr_model_get_info(back).steps);
    /* for inference: assembled, settled and slimmed; the settled whole's predictions */
    {
        spr_model *inf = NULL, *settled = NULL;
        OK(spr_model_load_inference(path, 1, &inf));
        OK(spr_model_load(path, &settled));
        OK(spr_model_settle(settled, 1));
        enum { P = 200, TOPK = 3 };
        static int32_t ia[P * TOPK], ib[P * TOPK];
        static float sa[P * TOPK], sb[P * TOPK];
        for (int sparse = 0; sparse < 2; sparse++) {
            OK(spr_model_predict(settled, t.data, NULL, 0, TOPK, sparse, 1, ia, sa));
            OK(spr_model_predict(inf, t.data, NULL, 0, TOPK, sparse, 1, ib, sb));
            CHECK(!memcmp(ia, ib, sizeof ia) && !memcmp(sa, sb, sizeof sa),
                  "a manifest loaded for inference: expected the settled whole's %s predictions",
                  sparse ? "sparse" : "exact");
        }
        CHECK(spr_model_get_info(inf).parameter_bytes * 2 < spr_model_get_info(settled).parameter_bytes &&
                  spr_model_save(inf, path) == SPR_STATUS_BAD_INPUT,
              "a manifest loaded for inference: expected no optimizer state, a save refused");
        spr_model_free(inf);
        spr_model_free(settled);
        /* verify streams every shard: a damaged byte in one is named */
        OK(spr_model_verify(path));
        char shard[600];
        CHECK(manifest_shard(path, 0, shard, sizeof shard), "no shard 0 in %s", path);
        FILE *f = fopen(shard, "r+b");
        int was = -1;
        if (f && !fseek(f, 200, SEEK_SET)) was = fgetc(f);
        if (was >= 0 && !fseek(f, 200, SEEK_SET)) fputc(was ^ 0x10, f);
        if (f) fclose(f);
        CHECK(was >= 0 && spr_model_verify(path) == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), shard) &&
                  strstr(spr_last_error(), "checksum mismatch"),
              "a manifest with a damaged shard: expected verify to name %s, got %s", shard, spr_last_error());
        f = fopen(shard, "r+b");
        if (f && was >= 0 && !fseek(f, 200, SEEK_SET)) fputc(was, f);
        if (f) fclose(f);
        OK(spr_model_verify(path));
        spr_model *bare = NULL;
        OK(spr_model_load_inference(path, 0, &bare));
        CHECK(spr_model_get_info(bare).table_bytes == 0, "a manifest for inference without tables: %lld bytes",
              (long long)spr_model_get_info(bare).table_bytes);
        spr_model_free(bare);
    }
    CHECK(spr_model_file_shards(path) == 1, "a one-rank sharded save: expected 1 shard, got %d",
          spr_model_file_shards(path));
    CHECK(spr_model_file_shards(dir) == -1 && strstr(spr_last_error(), "not a regular file"),
          "a directory: expected -1, got %d (%s)", spr_model_file_shards(dir), spr_last_error());
    /* peeking at the manifest: the whole model's figures, from shard 0's small sections */
    const spr_data_note note = {200, 77, 1};
    spr_model_set_data_note(part, &note);
    OK(spr_model_save(part, path));
    spr_model_config pc;
    spr_model_info pi, li = spr_model_get_info(back);
    spr_data_note pn;
    OK(spr_model_peek(path, &pc, &pi, &pn));
    CHECK(pc.layers[pc.n_layers - 1].size == c.layers[c.n_layers - 1].size && pi.steps == 3 &&
              pi.parameters == li.parameters && pi.parameter_bytes == li.parameter_bytes &&
              pi.table_bytes == li.table_bytes && pi.labels_total == li.labels_total && pn.points == 200 &&
              pn.digest == 77 && pn.one_based == 1,
          "peek of a manifest: expected the loaded model's figures, got labels %lld parameters %lld bytes %lld "
          "tables %lld note %lld (loaded %lld %lld %lld)",
          (long long)pi.labels_total, (long long)pi.parameters, (long long)pi.parameter_bytes,
          (long long)pi.table_bytes, (long long)pn.points, (long long)li.parameters, (long long)li.parameter_bytes,
          (long long)li.table_bytes);
    spr_model_free(back);

    /* Through a symbolic link into a subdirectory: the manifest replaces the link's target
     * and the shard lands beside it (the manifest names its shards relative to itself). */
    char sub[600], target[700], link[600], shard[2048];
    snprintf(sub, sizeof sub, "%s/linked", dir);
    snprintf(target, sizeof target, "%s/m2", sub);
    snprintf(link, sizeof link, "%s/m2.link", dir);
    struct stat sb;
    CHECK(mkdir(sub, 0755) == 0 && symlink("linked/m2", link) == 0, "mkdir/symlink: %s", strerror(errno));
    OK(spr_model_save(part, link));
    CHECK(manifest_shard(target, 0, shard, sizeof shard), "no shard 0 in %s", target);
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode), "a sharded save through a link replaced the link");
    CHECK(stat(shard, &sb) == 0 && spr_dist_is_manifest(target), "a sharded save through a link: expected "
          "the manifest at %s and its shard beside it", target);
    back = NULL;
    OK(spr_model_load(link, &back));
    CHECK(back && model_diff(back, part) == 0.0, "a sharded save through a link loaded back: expected identical");
    spr_model_free(back);
    unlink(link);
    unlink(shard);
    unlink(target);
    rmdir(sub);

    /* damaged manifests */
    static const char *bad[] = {
        "sparrow sharded model 1\nranks 2\nlabels 40\nshard 0 0 20 m1.rank0of1\n",
        "sparrow sharded model 1\nranks 1\nlabels 40\nshard 0 0 30 m1.rank0of1\n",
        "sparrow sharded model 1\nranks 1\nlabels 40\nshard 0 0 40 ../m1.rank0of1\n",
    };
    static const char *want[] = {":5:", ":4:", ":4:"};
    for (int b = 0; b < 3; b++) {
        char bp[600];
        snprintf(bp, sizeof bp, "%s/bad%d", dir, b);
        FILE *f = fopen(bp, "w");
        fputs(bad[b], f);
        fclose(f);
        spr_model *x = NULL;
        spr_status st = spr_model_load(bp, &x);
        CHECK(st == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), want[b]) && !x,
              "damaged manifest %d: expected bad input naming line %s, got %s: %s", b, want[b],
              spr_status_to_string(st), spr_last_error());
        spr_model_free(x);
        unlink(bp);
    }
    /* Each save writes its shards under new names and removes the previous save's once
     * its manifest is written: a save cut short between its shards leaves the previous
     * manifest naming the previous shards, intact (it used to name a mix of old and new
     * files: a model no run ever had). */
    char f0[2048], f1[2048], f2[2048];
    CHECK(manifest_shard(path, 0, f0, sizeof f0), "no shard 0 in %s", path);
    OK(spr_model_train_batch(part, t.data, rows, 20, &o, NULL));
    OK(spr_model_save(part, path));
    CHECK(manifest_shard(path, 0, f1, sizeof f1) && strcmp(f0, f1) != 0,
          "a second save: expected a new shard name, got %s twice", f0);
    CHECK(stat(f0, &sb) != 0 && stat(f1, &sb) == 0 && count_prefixed(dir, "m1.") == 1,
          "a second save: expected %s removed and %s alone beside the manifest (%d files)", f0, f1,
          count_prefixed(dir, "m1."));
    spr_model *saved = NULL;
    OK(spr_model_load(path, &saved));
    OK(spr_model_train_batch(part, t.data, rows, 20, &o, NULL));
    char blocker[600];
    snprintf(blocker, sizeof blocker, "%s.tmp.manifest", path);
    CHECK(mkdir(blocker, 0755) == 0, "mkdir %s: %s", blocker, strerror(errno));
    spr_status failed = spr_model_save(part, path); /* the manifest cannot be written */
    rmdir(blocker);
    back = NULL;
    CHECK(failed == SPR_STATUS_IO_ERROR, "a save whose manifest cannot be written: expected IO_ERROR, got %s",
          spr_status_to_string(failed));
    CHECK(manifest_shard(path, 0, f2, sizeof f2) && !strcmp(f1, f2) && count_prefixed(dir, "m1.") == 1,
          "after a failed save: expected the manifest to name %s alone, got %s (%d files)", f1, f2,
          count_prefixed(dir, "m1."));
    OK(spr_model_load(path, &back));
    CHECK(back && saved && model_diff(back, saved) == 0.0, "after a failed save: expected the previous model");
    spr_model_free(back);
    spr_model_free(saved);
    /* A manifest written by an earlier sparrow (shards named "BASE.rankRofN"): the next
     * save replaces it and removes its shards. */
    char legacy[700];
    snprintf(legacy, sizeof legacy, "%s/m1.rank0of1", dir);
    CHECK(rename(f1, legacy) == 0, "rename %s: %s", f1, strerror(errno));
    FILE *mf = fopen(path, "w");
    if (mf) {
        fputs("sparrow sharded model 1\nranks 1\nlabels 40\nshard 0 0 40 m1.rank0of1\n", mf);
        fclose(mf);
    }
    OK(spr_model_load(path, &back));
    spr_model_free(back);
    OK(spr_model_save(part, path));
    CHECK(stat(legacy, &sb) != 0 && count_prefixed(dir, "m1.") == 1,
          "a save over an older manifest: expected %s removed (%d files)", legacy,
          count_prefixed(dir, "m1."));
    CHECK(manifest_shard(path, 0, f0, sizeof f0), "no shard 0 in %s", path);
    /* A whole (one-process) model saved over the manifest: its shards go too (they were
     * left behind, named by nothing). */
    spr_model *whole = NULL;
    OK(spr_model_load(path, &whole));
    OK(spr_model_save(whole, path));
    CHECK(!spr_dist_is_manifest(path) && stat(f0, &sb) != 0 && count_prefixed(dir, "m1.") == 0,
          "a whole model saved over a manifest: expected %s removed (%d files)", f0,
          count_prefixed(dir, "m1."));
    /* Only files named like its shards: a manifest written by hand that names another
     * file beside it does not get that file removed. */
    char keep[700];
    snprintf(keep, sizeof keep, "%s/keep.txt", dir);
    mf = fopen(keep, "w");
    if (mf) fclose(mf);
    mf = fopen(path, "w");
    if (mf) {
        fputs("sparrow sharded model 1\nranks 1\nlabels 40\nshard 0 0 40 keep.txt\n", mf);
        fclose(mf);
    }
    OK(spr_model_save(whole, path));
    CHECK(stat(keep, &sb) == 0, "a save over a manifest naming keep.txt removed it");
    unlink(keep);
    spr_model_free(whole);
    unlink(path);
    spr_model_free(part);
    spr_dist_finalize(self);
    toy_free(&t);
}

/* ------------------------------------------------------------------ several ranks */

/* Saves part (collective) as dir/name; rank 0 loads the save, which checks that the
 * shards' replicated layers agree bit for bit; what names the model in the message. */
static void replicas_agree(spr_model *part, spr_dist *d, const char *dir, const char *name,
                           const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    OK(spr_model_save(part, path));
    if (spr_dist_rank(d) == 0) {
        spr_model *back = NULL;
        spr_status st = spr_model_load(path, &back);
        CHECK(st == SPR_STATUS_OK, "%s saved on %d ranks: expected its shards to agree, got %s",
              what, spr_dist_size(d), spr_last_error());
        spr_model_free(back);
    }
    OK(spr_dist_barrier(d, "test"));
}

static int mpi_main(const char *dir) {
    spr_dist *d;
    OK(spr_dist_init(NULL, NULL, 60.0, &d));
    const int rank = spr_dist_rank(d), size = spr_dist_size(d);
    /* spr_dist_max_int: every rank gets the largest value (how a stop request that one
     * rank saw reaches all of them). */
    int mine = rank == 1 ? 15 : -rank;
    OK(spr_dist_max_int(d, &mine));
    CHECK(mine == (size > 1 ? 15 : 0), "rank %d of %d: spr_dist_max_int gave %d", rank, size, mine);
    /* spr_dist_agree: where the last rank alone failed, every other rank fails with its
     * status and its message (the rank that reports tells the cause) */
    if (size > 1) {
        spr_status own = rank == size - 1 ? spr_fail(SPR_STATUS_BAD_INPUT, "shard.%d: its own trouble", rank)
                                          : SPR_STATUS_OK;
        spr_status got = spr_dist_agree(d, own, "testing");
        char want[128];
        snprintf(want, sizeof want, "testing failed on rank %d: shard.%d: its own trouble", size - 1, size - 1);
        CHECK(got == SPR_STATUS_BAD_INPUT &&
                  (rank == size - 1 ? strcmp(spr_last_error(), want + strlen(want) - 24) == 0
                                    : strcmp(spr_last_error(), want) == 0),
              "rank %d: spr_dist_agree after rank %d failed: status %d, message %s", rank, size - 1,
              (int)got, spr_last_error());
    }
    toy t;
    toy_make(&t, 300, 41, 21); /* 41 labels: shards of unequal size */
    spr_dataset_view v = spr_dataset_get_view(t.data);
    spr_model_config c = toy_config(&t, 1.0f);
    spr_train_options o = spr_train_options_default();
    o.batch_size = 32;
    o.threads = 1;
    o.lr = 0.01f;
    o.dense = 1;
    for (int ci = 0; ci < 2; ci++) {
        o.clip_norm = ci ? 0.05f : 0.0f;
        spr_model *whole, *part;
        OK(spr_model_create(&c, &whole));
        OK(spr_model_create_sharded(&c, d, &part));
        double dl = train_both(whole, part, &t, o, 6);
        double dw = model_diff(whole, part);
        CHECK(dl <= 1e-5 && dw <= 1e-5,
              "rank %d of %d, dense, clip %g: expected the one-process model to 1e-5, got loss "
              "diff %g, parameter diff %g",
              rank, size, (double)o.clip_norm, dl, dw);

        /* merged top-5 equals the whole model's */
        int64_t n = v.n_points;
        int32_t *ia = malloc((size_t)n * 5 * 4), *ib = malloc((size_t)n * 5 * 4);
        float *sa = malloc((size_t)n * 5 * 4), *sb = malloc((size_t)n * 5 * 4);
        OK(spr_model_predict(whole, t.data, NULL, 0, 5, 0, 1, ia, sa));
        OK(spr_model_predict(part, t.data, NULL, 0, 5, 0, 1, ib, sb));
        int64_t same = 0;
        double ds = 0.0;
        for (int64_t q = 0; q < n * 5; q++) same += ia[q] == ib[q], ds = fmax(ds, fabs((double)sa[q] - sb[q]));
        CHECK(same >= n * 5 - 2 && ds <= 1e-4,
              "rank %d: merged top-5: expected the whole model's, got %lld of %lld ids equal, "
              "score diff %g",
              rank, (long long)same, (long long)(n * 5), ds);
        free(ia), free(ib), free(sa), free(sb);

        if (ci == 1) { /* checkpoints N -> 1, 1 -> N, N -> N */
            char mpath[512], wpath[512];
            snprintf(mpath, sizeof mpath, "%s/sharded", dir);
            snprintf(wpath, sizeof wpath, "%s/whole", dir);
            OK(spr_model_save(part, mpath));
            if (rank == 0) {
                spr_model *back;
                OK(spr_model_load(mpath, &back));
                double db = model_diff(back, whole);
                CHECK(db <= 1e-5, "a model saved on %d ranks, loaded on 1: expected the reference "
                                  "to 1e-5, got %g", size, db);
                spr_model_free(back);
                OK(spr_model_save(whole, wpath));
            }
            OK(spr_dist_barrier(d, "test"));
            spr_model *cut, *own;
            OK(spr_model_load_sharded(wpath, d, &cut));
            double dc = model_diff(whole, cut);
            CHECK(dc == 0.0, "rank %d: a one-process model loaded on %d ranks: expected its rows, "
                             "got diff %g", rank, size, dc);
            OK(spr_model_load_sharded(mpath, d, &own));
            double dn = model_diff(whole, own);
            CHECK(dn <= 1e-5 && spr_model_get_info(own).label_lo == spr_model_get_info(part).label_lo,
                  "rank %d: a %d-rank model loaded on %d ranks: expected its shard, got diff %g",
                  rank, size, size, dn);
            /* a manifest the last rank cannot read (a damaged copy on its node): every rank
             * fails at once with the cause (not the others waiting out the timeout in a
             * collective the failed rank never reaches), for training and for inference */
            if (size > 1) {
                char bpath[512];
                snprintf(bpath, sizeof bpath, "%s/sharded_bad", dir);
                if (rank == size - 1) {
                    FILE *bf = fopen(bpath, "w");
                    fputs("sparrow sharded model 1\nranks two\n", bf);
                    fclose(bf);
                }
                for (int inf = 0; inf < 2; inf++) {
                    spr_model *none = NULL;
                    const double t0 = spr_now();
                    const char *use = rank == size - 1 ? bpath : mpath;
                    spr_status st = inf ? spr_model_load_sharded_inference(use, d, 0, &none)
                                        : spr_model_load_sharded(use, d, &none);
                    const double took = spr_now() - t0;
                    CHECK(st == SPR_STATUS_BAD_INPUT && !none && took < 20.0 &&
                              strstr(spr_last_error(), "sharded_bad:2: expected 'ranks N'") &&
                              (rank == size - 1 || strstr(spr_last_error(), "failed on rank")),
                          "rank %d, %s: a manifest the last rank cannot read: expected every rank "
                          "to fail naming it, got %d after %.1f s (%s)", rank,
                          inf ? "inference" : "training", (int)st, took, spr_last_error());
                    spr_model_free(none);
                }
                OK(spr_dist_barrier(d, "test"));
            }
            /* the loaded shard trains on, in step with the reference */
            double dl2 = train_both(whole, own, &t, o, 2);
            CHECK(dl2 <= 1e-5, "rank %d: training after loading: loss diff %g", rank, dl2);
            spr_model_free(cut);
            spr_model_free(own);
        }
        spr_model_free(whole);
        spr_model_free(part);
    }
    { /* A sampled hidden layer on N ranks draws its active neurons alike on every rank
       * (2 threads each, rehashes and rebuilds within the run), so the replicas stay bit
       * for bit the same: the load of their save checks the shards' fingerprints. */
        spr_model_config ch = toy_config(&t, 0.25f);
        ch.layers[1].sparsity = 0.5f; /* 6 of 12 */
        ch.layers[1].hash_l = 8;
        spr_model *part;
        OK(spr_model_create_sharded(&ch, d, &part));
        spr_train_options os = o;
        os.dense = 0;
        os.clip_norm = 0.0f;
        os.threads = 2;
        os.rehash_first = 2;
        os.rebuild_every = 2;
        int64_t rows[32];
        double active = 0.0;
        for (int step = 0; step < 8; step++) {
            for (int64_t i = 0; i < 32; i++) rows[i] = (step * 37 + i * 11) % v.n_points;
            spr_batch_stats st;
            OK(spr_model_train_batch(part, t.data, rows, 32, &os, &st));
            active = fmax(active, st.active[1]);
        }
        CHECK(active == 6.0, "rank %d: a sampled hidden layer: expected 6 active of 12, got %g", rank, active);
        replicas_agree(part, d, dir, "hidden_sampled", "a model with a sampled hidden layer");
        spr_model_free(part);
    }
    { /* A two-layer sampled model's rank step is fused as one process's is (its rows'
       * logits a row at a time, its part of dLoss/dh in the optimizer's row pass, then the
       * allreduce and the first layer's backward). Sparsity 0.99 makes every row active on
       * every rank: the model of 2 ranks x 2 threads is then one process's to rounding
       * (two layers, and three: the replicated backward through the hidden layer).
       * Then sampled (sparsity 0.25, rehashes and rebuilds within the run): the replicas
       * stay bit for bit the same, which the load of their save checks. */
        const float sparsities[] = {0.99f, 0.25f, 0.99f}; /* k = 2: three layers */
        for (int k = 0; k < 3; k++) {
            spr_model_config c2 = k == 2 ? toy_config(&t, sparsities[k]) : toy_config2(&t, sparsities[k]);
            spr_model *whole, *part;
            OK(spr_model_create(&c2, &whole));
            OK(spr_model_create_sharded(&c2, d, &part));
            spr_train_options o1 = o, o2;
            o1.dense = 0, o1.clip_norm = 0.0f, o1.rehash_first = 2, o1.rebuild_every = 2;
            o2 = o1, o2.threads = 2;
            double dl = 0.0;
            int64_t rows[32];
            for (int step = 0; step < 8; step++) {
                for (int64_t i = 0; i < 32; i++) rows[i] = (step * 29 + i * 13) % v.n_points;
                spr_batch_stats a, b;
                OK(spr_model_train_batch(whole, t.data, rows, 32, &o1, &a));
                OK(spr_model_train_batch(part, t.data, rows, 32, &o2, &b));
                dl = fmax(dl, fabs(a.loss - b.loss));
            }
            CHECK(part->fused_steps == 8, "rank %d, sparsity %g: expected 8 fused steps, got %lld",
                  rank, (double)sparsities[k], (long long)part->fused_steps);
            if (k != 1) {
                /* (three layers: 3.1e-5 after 8 steps, fused or not: Adam's division by
                 * sqrt(v) magnifies the sums' rounding in the hidden layers' small moments) */
                const double dw = model_diff(whole, part), tol = k == 2 ? 1e-4 : 1e-5;
                CHECK(dl <= 1e-5 && dw <= tol,
                      "rank %d of %d, %d layers, every row active, fused: expected the "
                      "one-process model to %g, got loss diff %g, parameter diff %g",
                      rank, size, c2.n_layers, tol, dl, dw);
            } else {
                replicas_agree(part, d, dir, "fused_sampled", "a two-layer model trained fused");
            }
            spr_model_free(whole);
            spr_model_free(part);
        }
    }
    { /* A rank reads only its rows of a model it need not hold whole: of a one-process
       * file (1 -> N), of a one-rank manifest (another split: 1 -> N), and on one process
       * of this run's N-rank manifest (N -> 1). Rows exact; the bytes allocated, against
       * what a whole load takes (50,000 labels: the arrays, not the model structs, count). */
        spr_model_config cb = toy_config(&t, 0.25f);
        cb.layers[2].size = 50000;
        spr_dist *self;
        OK(spr_dist_self(&self));
        spr_model *whole, *one, *share;
        OK(spr_model_create(&cb, &whole));
        char fpath[512], opath[512], npath[512];
        snprintf(fpath, sizeof fpath, "%s/big_whole", dir);
        snprintf(opath, sizeof opath, "%s/big_one_rank", dir);
        snprintf(npath, sizeof npath, "%s/big_n_ranks", dir);
        if (rank == 0) {
            OK(spr_model_save(whole, fpath));
            OK(spr_model_load_sharded(fpath, self, &one));
            OK(spr_model_save(one, opath)); /* a manifest of one shard */
            spr_model_free(one);
        }
        OK(spr_dist_barrier(d, "test"));
        long long at0 = spr_alloc_bytes();
        spr_model *back;
        OK(spr_model_load(fpath, &back));
        const long long whole_bytes = spr_alloc_bytes() - at0;
        spr_model_free(back);
        const char *paths[2] = {fpath, opath};
        for (int k = 0; k < 2; k++) {
            at0 = spr_alloc_bytes();
            OK(spr_model_load_sharded(paths[k], d, &share));
            const long long bytes = spr_alloc_bytes() - at0;
            const double diff = model_diff(whole, share);
            CHECK(diff == 0.0 && (k ? bytes * 4 < whole_bytes * 5 : bytes * 4 < whole_bytes * 3),
                  "rank %d: %s on %d ranks: expected its rows (diff %g) in less than %s of a whole "
                  "load's %lld bytes, took %lld", rank, k ? "a one-rank manifest" : "a one-process file",
                  size, diff, k ? "1.25x" : "0.75x", whole_bytes, bytes);
            if (k == 0) OK(spr_model_save(share, npath));
            spr_model_free(share);
        }
        if (rank == 0) {
            at0 = spr_alloc_bytes();
            OK(spr_model_load_sharded(npath, self, &share));
            const long long bytes = spr_alloc_bytes() - at0;
            const double diff = model_diff(whole, share);
            /* (the whole, and each shard's rows on their way in: one at a time) */
            CHECK(diff == 0.0 && bytes * 2 < whole_bytes * 5,
                  "a %d-rank manifest on 1: expected its rows (diff %g) in less than 2.5x of a "
                  "whole load's %lld bytes, took %lld", size, diff, whole_bytes, bytes);
            spr_model_free(share);
        }
        OK(spr_dist_barrier(d, "test"));
        spr_model_free(whole);
        spr_dist_finalize(self);
    }
    /* A sampled model saved on N ranks inside an epoch (rows owe Adam steps; BF16 weights
     * and moments: the settle's rounding salts follow the global label), loaded for
     * inference on one process shard by shard: the predictions of the whole model loaded
     * and settled, bit for bit, from the weights alone and one shard's at a time. */
    for (int bf16 = 0; bf16 < 2; bf16++) {
        spr_model_config cs = toy_config(&t, 0.1f); /* 5 of 41: rows in every shard owe */
        cs.bf16_state = cs.bf16_weights = bf16;
        spr_model *part;
        OK(spr_model_create_sharded(&cs, d, &part));
        spr_train_options os = o;
        os.dense = 0;
        os.clip_norm = 0.0f;
        os.batch_size = 4;
        int64_t rows[4];
        for (int step = 0; step < 6; step++) {
            for (int64_t i = 0; i < 4; i++) rows[i] = (step * 29 + i * 13) % v.n_points;
            OK(spr_model_train_batch(part, t.data, rows, 4, &os, NULL));
        }
        char ipath[512];
        snprintf(ipath, sizeof ipath, "%s/owing%d", dir, bf16);
        OK(spr_model_save(part, ipath));
        if (rank == 0) {
            spr_model *settled = NULL, *inf = NULL, *bare = NULL;
            const long long at0 = spr_alloc_bytes();
            OK(spr_model_load(ipath, &settled));
            const long long at1 = spr_alloc_bytes();
            CHECK(settled->settled_step < settled->steps, "bf16 %d: expected rows owing steps", bf16);
            OK(spr_model_settle(settled, 1));
            const long long at2 = spr_alloc_bytes();
            OK(spr_model_load_inference(ipath, 0, &bare));
            const long long at3 = spr_alloc_bytes();
            OK(spr_model_load_inference(ipath, 1, &inf));
            /* both make the whole and load N shards: N + 1 model structs (690 KB each, most
             * of these toy models' bytes), and then the arrays */
            const long long structs = (size + 1) * (long long)sizeof(spr_model);
            CHECK((at3 - at2 - structs) * 2 < at1 - at0 - structs,
                  "bf16 %d: a manifest for inference allocated %lld bytes for its arrays, the "
                  "whole load %lld", bf16, at3 - at2 - structs, at1 - at0 - structs);
            int64_t differ = 0; /* weights and biases, bit for bit */
            for (int l = 0; l < settled->n_layers; l++) {
                const spr_layer *A = &settled->layers[l], *B = &bare->layers[l];
                const size_t item = A->w16 ? 2 : 4;
                for (int64_t r = 0; r < A->rows; r++)
                    differ += memcmp(A->w16 ? (const void *)(A->w16 + r * A->stride) : A->w + r * A->stride,
                                     B->w16 ? (const void *)(B->w16 + r * B->stride) : B->w + r * B->stride,
                                     (size_t)A->cols * item) != 0;
                differ += memcmp(A->b, B->b, (size_t)A->size * 4) != 0;
            }
            CHECK(differ == 0, "bf16 %d: a manifest for inference: %lld rows differ from the settled whole's",
                  bf16, (long long)differ);
            const int64_t n = v.n_points;
            int32_t *ia = malloc((size_t)n * 5 * 4), *ib = malloc((size_t)n * 5 * 4);
            float *sa = malloc((size_t)n * 5 * 4), *sb = malloc((size_t)n * 5 * 4);
            for (int sparse = 0; sparse < 2; sparse++) {
                spr_model *m = sparse ? inf : bare;
                OK(spr_model_predict(settled, t.data, NULL, 0, 5, sparse, 1, ia, sa));
                OK(spr_model_predict(m, t.data, NULL, 0, 5, sparse, 1, ib, sb));
                CHECK(!memcmp(ia, ib, (size_t)n * 5 * 4) && !memcmp(sa, sb, (size_t)n * 5 * 4),
                      "bf16 %d: a %d-rank manifest loaded for inference: expected the settled "
                      "whole's %s predictions", bf16, size, sparse ? "sparse" : "exact");
            }
            free(ia), free(ib), free(sa), free(sb);
            spr_model_free(settled);
            spr_model_free(inf);
            spr_model_free(bare);
        }
        OK(spr_dist_barrier(d, "test"));
        /* on the N ranks that saved it, for inference: each rank its weights only, its
         * owing rows settled from its file's moments; the merged predictions (collective)
         * those of the ranks' models loaded whole, bit for bit */
        {
            spr_model *full = NULL, *slim = NULL;
            long long at0 = spr_alloc_bytes();
            OK(spr_model_load_sharded(ipath, d, &full));
            const long long full_bytes = spr_alloc_bytes() - at0;
            const int64_t n = v.n_points;
            int32_t *ia = malloc((size_t)n * 5 * 4), *ib = malloc((size_t)n * 5 * 4);
            float *sa = malloc((size_t)n * 5 * 4), *sb = malloc((size_t)n * 5 * 4);
            for (int tables = 0; tables < 2; tables++) {
                at0 = spr_alloc_bytes();
                OK(spr_model_load_sharded_inference(ipath, d, tables, &slim));
                const long long bytes = spr_alloc_bytes() - at0 - (long long)sizeof(spr_model);
                CHECK(slim->weights_only && bytes * 2 < full_bytes - (long long)sizeof(spr_model),
                      "rank %d, bf16 %d, tables %d: a rank's load for inference allocated %lld bytes "
                      "for its arrays, the whole shard's %lld", rank, bf16, tables, bytes,
                      full_bytes - (long long)sizeof(spr_model));
                for (int sparse = 0; sparse <= tables; sparse++) {
                    OK(spr_model_predict(full, t.data, NULL, 0, 5, sparse, 1, ia, sa));
                    OK(spr_model_predict(slim, t.data, NULL, 0, 5, sparse, 1, ib, sb));
                    CHECK(!memcmp(ia, ib, (size_t)n * 5 * 4) && !memcmp(sa, sb, (size_t)n * 5 * 4),
                          "rank %d, bf16 %d: loaded for inference on %d ranks: expected the %s "
                          "predictions of the ranks' whole shards", rank, bf16, size,
                          sparse ? "sparse" : "exact");
                }
                spr_model_free(slim);
            }
            free(ia), free(ib), free(sa), free(sb);
            spr_model_free(full);
        }
        spr_model_free(part);
    }
    toy_free(&t);
    int rc = CHECK_DONE("test_dist (MPI)");
    float fail = (float)rc;
    spr_dist_allreduce(d, &fail, 1, SPR_DIST_MAX, "result");
    spr_dist_finalize(d);
    return fail > 0.0f ? 1 : 0;
}

/* Rank 1 dies (die = 1) or hangs after two steps; rank 0 goes on and must get an error
 * from the next collective within its 3 s timeout. */
static int mpi_failure_main(int die) {
    spr_dist *d;
    OK(spr_dist_init(NULL, NULL, 3.0, &d));
    toy t;
    toy_make(&t, 300, 40, 22);
    spr_model_config c = toy_config(&t, 0.25f);
    spr_model *m;
    OK(spr_model_create_sharded(&c, d, &m));
    spr_train_options o = spr_train_options_default();
    o.batch_size = 16;
    o.threads = 1;
    int64_t rows[16];
    double t0 = spr_now();
    for (int s = 0; s < 50; s++) {
        if (s == 2 && spr_dist_rank(d) == 1) {
            fflush(stdout);
            if (die) raise(SIGKILL);
            for (;;) pause();
        }
        for (int i = 0; i < 16; i++) rows[i] = s * 16 + i;
        spr_status st = spr_model_train_batch(m, t.data, rows, 16, &o, NULL);
        if (st) {
            printf("rank %d: step %d failed after %.1f s: %s\n", spr_dist_rank(d), s, spr_now() - t0,
                   spr_last_error());
            fflush(stdout);
            spr_dist_abort(d, 3);
        }
    }
    printf("FAIL: rank %d trained 50 steps without its peer: expected an error\n", spr_dist_rank(d));
    return 1;
}

/* spr_checkpoint_load_rows: a window of the output layer's rows is those rows of the
 * whole load, bit for bit (weights, biases, moments, last steps; float and BF16), and
 * the rows outside it are still read through their checksums: a byte damaged in any of
 * the output layer's arrays fails the window's load as it fails the whole load. */
static void test_load_rows(const char *dir) {
    toy t;
    toy_make(&t, 200, 40, 17);
    char path[512];
    snprintf(path, sizeof path, "%s/rows", dir);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        spr_model_config c = toy_config(&t, 0.25f);
        c.bf16_state = c.bf16_weights = bf16;
        spr_model *m, *whole, *piece;
        OK(spr_model_create(&c, &m));
        spr_train_options o = spr_train_options_default();
        o.batch_size = 10;
        o.threads = 1;
        int64_t rows[10];
        for (int s = 0; s < 3; s++) {
            for (int i = 0; i < 10; i++) rows[i] = s * 10 + i;
            OK(spr_model_train_batch(m, t.data, rows, 10, &o, NULL));
        }
        OK(spr_model_save(m, path));
        OK(spr_model_load(path, &whole));
        OK(spr_checkpoint_load_rows(path, 13, 31, &piece));
        piece->label_lo = 13; /* (what the caller sets) */
        const spr_layer *A = &whole->layers[2], *B = &piece->layers[2];
        const size_t item = bf16 ? 2 : 4, row = (size_t)A->cols * item;
        int64_t differ = B->rows != 18;
        for (int64_t r = 0; !differ && r < 18; r++) {
            const int64_t a = (13 + r) * A->stride, b = r * B->stride;
            differ += bf16 ? memcmp(A->w16 + a, B->w16 + b, row) || memcmp(A->mw16 + a, B->mw16 + b, row) ||
                                 memcmp(A->vw16 + a, B->vw16 + b, row)
                           : memcmp(A->w + a, B->w + b, row) || memcmp(A->mw + a, B->mw + b, row) ||
                                 memcmp(A->vw + a, B->vw + b, row);
            differ += A->b[13 + r] != B->b[r] || A->mb[13 + r] != B->mb[r] || A->vb[13 + r] != B->vb[r] ||
                      A->last_step[13 + r] != B->last_step[r];
        }
        double hidden = fmax(max_diff(whole, piece, 0, SPR_PARAM_WEIGHT, 0), max_diff(whole, piece, 1, SPR_PARAM_WEIGHT, 0));
        CHECK(!differ && hidden == 0.0 && piece->steps == whole->steps && piece->layers[2].tables == NULL,
              "bf16 %d: rows [13, 31) of the output layer: %lld rows differ, hidden layers by %g", bf16,
              (long long)differ, hidden);
        spr_model_free(whole);
        spr_model_free(piece);
        CHECK(spr_checkpoint_load_rows(path, 30, 41, &piece) == SPR_STATUS_BAD_INPUT && !piece &&
                  strstr(spr_last_error(), "[30, 41) asked of a model of 40"),
              "bf16 %d: rows past the layer: expected them refused, got %s", bf16, spr_last_error());
        spr_model_free(m);
        /* a damaged byte anywhere in the output layer's arrays (inside the window or not) */
        FILE *f = fopen(path, "r+b");
        long size = 0;
        if (f && !fseek(f, 0, SEEK_END)) size = ftell(f);
        int in_output = 0, caught = 0;
        for (long off = 64; f && off < size; off += size / 97) {
            int was = -1;
            if (!fseek(f, off, SEEK_SET)) was = fgetc(f);
            if (was < 0 || fseek(f, off, SEEK_SET) || fputc(was ^ 0x20, f) == EOF || fflush(f)) break;
            spr_model *x = NULL;
            const int whole_fails = spr_model_load(path, &x) != SPR_STATUS_OK;
            spr_model_free(x);
            const char *e = spr_last_error();
            if (whole_fails && strstr(e, "checksum mismatch") &&
                (strstr(e, "W[2]") || strstr(e, "B[2]") || strstr(e, "LAST[2]"))) {
                in_output++;
                caught += spr_checkpoint_load_rows(path, 13, 31, &x) == SPR_STATUS_BAD_INPUT &&
                          strstr(spr_last_error(), "checksum mismatch");
                spr_model_free(x);
            }
            if (fseek(f, off, SEEK_SET) || fputc(was, f) == EOF || fflush(f)) break;
        }
        if (f) fclose(f);
        CHECK(in_output >= 5 && caught == in_output,
              "bf16 %d: damaged bytes in the output layer's arrays: the window caught %d of %d", bf16, caught,
              in_output);
    }
    unlink(path);
    toy_free(&t);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--mpi") == 0) return mpi_main(argv[2]);
    if (argc == 2 && strcmp(argv[1], "--mpi-die") == 0) return mpi_failure_main(1);
    if (argc == 2 && strcmp(argv[1], "--mpi-hang") == 0) return mpi_failure_main(0);
    char dir[] = "/tmp/sparrow_test_dist.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL: cannot make a temporary directory\n");
        return 1;
    }
    test_max_int_one_rank();
    test_one_rank_step();
    test_one_rank_fused();
    test_shard_rows_and_memory();
    test_manifest_one_rank(dir);
    test_failed_collective(dir);
    test_load_rows(dir);
    rmdir(dir);
    printf("MPI compiled in: %s\n", spr_dist_compiled() ? "yes" : "no");
    return CHECK_DONE("test_dist");
}

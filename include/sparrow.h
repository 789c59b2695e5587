/*
 * sparrow.h: the only public header of sparrow, an engine that trains very wide
 * neural networks on CPUs by computing only the neurons that matter for each input.
 *
 * Locality-sensitive hash (LSH) tables over each sampled layer's neurons pick, per
 * input, the few neurons likely to fire; forward, backward and the optimizer step
 * touch only those (the SLIDE idea). This header is also the API documentation.
 *
 * Conventions
 *   - Every call that can fail returns an spr_status (SPR_STATUS_OK == 0) and hands
 *     results out through pointers. On failure a human-readable message naming the
 *     file, line and problem (where there is one) is kept per thread: spr_last_error().
 *   - Handles are opaque. Whoever gets a handle from a *_create / *_read / *_load call
 *     owns it and releases it with the matching *_free (NULL is accepted).
 *   - Pointers returned by accessors are borrowed: valid until the owning handle is
 *     freed, never to be freed by the caller.
 *   - The library never prints and never calls exit(); logging goes through a callback.
 *   - Shapes are written (rows, cols), row-major.
 */
#ifndef SPARROW_H
#define SPARROW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SPR_BUILDING_LIBRARY) && defined(__GNUC__)
#define SPR_API __attribute__((visibility("default")))
#else
#define SPR_API
#endif

#define SPR_VERSION_MAJOR 0
#define SPR_VERSION_MINOR 1
#define SPR_VERSION_PATCH 0
#define SPR_VERSION_STRING "0.1.0"

/* "0.1.0": the version of the library actually linked. */
SPR_API const char *spr_version(void);

/* Progress of a long call, for a progress bar: done of total units so far (bytes for
 * reading, points for generating; total 0 if unknown). Called a few dozen to a few
 * hundred times per call, never concurrently, possibly from a worker thread; it must be
 * cheap and must not call back into sparrow. */
typedef void (*spr_progress_fn)(void *user, int64_t done, int64_t total);

/* ------------------------------------------------------------------ status */

typedef enum spr_status {
    SPR_STATUS_OK = 0,
    SPR_STATUS_BAD_INPUT = 1,   /* malformed data, bad parameter, bad model file: the caller's fault */
    SPR_STATUS_IO_ERROR = 2,    /* a file could not be opened, read, written or renamed */
    SPR_STATUS_NO_MEMORY = 3,   /* an allocation failed */
    SPR_STATUS_INTERNAL = 4,    /* a bug in sparrow */
} spr_status;

/* A constant name for the status ("bad input", ...). */
SPR_API const char *spr_status_to_string(spr_status status);

/* The message of the last failed call made by this thread ("" if none). The pointer
 * stays valid until the next sparrow call on this thread. */
SPR_API const char *spr_last_error(void);

/* ------------------------------------------------------------------ kernels */

/* The kernel set the hot loops use: "portable" (the reference), "avx2" (AVX2 + FMA) or
 * "avx512" (AVX-512F). Chosen when the library loads: the widest this CPU and OS run,
 * unless the environment variable SPARROW_KERNELS names another supported one. */
SPR_API const char *spr_kernels_name(void);

/* One line for people: the set in use, the CPU's vector features, the sets this build
 * and CPU support, and why SPARROW_KERNELS was ignored if it was. Static storage. */
SPR_API const char *spr_kernels_describe(void);

/* Switches to the named set (SPR_STATUS_BAD_INPUT if unknown or the CPU cannot run
 * it). Not while another thread is training. */
SPR_API spr_status spr_kernels_select(const char *name);

/* ------------------------------------------------------------------ data sets */

/* A multi-label data set in CSR form: the features of point i are
 * feature_indices[feature_indptr[i] .. feature_indptr[i+1]) with their values, sorted by
 * feature id and without duplicates; its labels are labels[label_indptr[i] .. label_indptr[i+1]),
 * sorted and without duplicates. Ids are 0-based. */
typedef struct spr_dataset spr_dataset;

typedef struct spr_dataset_view {
    int64_t n_points;
    int64_t n_features;          /* every feature id is < n_features */
    int64_t n_labels;            /* every label id is < n_labels */
    const int64_t *feature_indptr; /* (n_points + 1) */
    const int32_t *feature_indices; /* (nnz) */
    const float *feature_values;   /* (nnz) */
    const int64_t *label_indptr;   /* (n_points + 1) */
    const int32_t *labels;         /* (n_label_entries) */
} spr_dataset_view;

typedef enum spr_format {
    SPR_FORMAT_AUTO = 0,     /* XMC if the first line is a header "N D L" (a split-format
                                features file if it is "N D"), else svmlight */
    SPR_FORMAT_XMC = 1,      /* Extreme Classification Repository: header "N D L" then points */
    SPR_FORMAT_SVMLIGHT = 2, /* svmlight / libsvm: no header */
} spr_format;

typedef struct spr_read_options {
    spr_format format;
    int one_based;        /* feature ids in the file start at 1 (svmlight convention); labels are unchanged */
    int64_t n_features;   /* 0: from the header, else max id + 1; > 0: ids must be below it */
    int64_t n_labels;     /* likewise for labels */
} spr_read_options;

SPR_API spr_read_options spr_read_options_default(void);

/* Reads a whole file. Lines: "l1,l2,... f:v f:v ..." (a point may have no labels: the
 * line then starts with a space or directly with "f:v"). Features of a line may come in
 * any order and are sorted; a feature id repeated on one line is an error. Blank lines,
 * CRLF line ends and a missing final newline are accepted. Every error names the file,
 * the line and the problem. Cost: one pass over the file, O(nnz) memory. */
SPR_API spr_status spr_dataset_read(const char *path, const spr_read_options *options,
                                    spr_dataset **out);
/* spr_dataset_read reporting the bytes read of the file's size to progress (NULL: none). */
SPR_API spr_status spr_dataset_read_progress(const char *path, const spr_read_options *options,
                                             spr_progress_fn progress, void *user,
                                             spr_dataset **out);

/* Reads the Extreme Classification Repository's split format: features in one file
 * (trn_X_Xf.txt: a header "POINTS FEATURES", then per point one line of "f:v" pairs; an
 * empty line is a point without features) and labels in another (trn_X_Y.txt: a header
 * "POINTS LABELS", then per point "l:w" pairs; every listed label is one of the point's
 * labels, its weight w must be positive and is not used). Both files must hold the same
 * number of points. options->format is ignored; one_based shifts feature ids only;
 * n_features / n_labels override the headers. labels_path NULL: the points have no labels
 * (spr_dataset_read also reads a features file alone). Errors name the file and line;
 * progress (NULL: none) is told the bytes read of both files' sizes together (a total of
 * 0 where one is not a regular file). */
SPR_API spr_status spr_dataset_read_split(const char *features_path, const char *labels_path,
                                          const spr_read_options *options, spr_progress_fn progress,
                                          void *user, spr_dataset **out);

/* Reads a filter file of the XMC repository (filter_labels_test.txt: per line a pair
 * "POINT LABEL" of 0-based ids, separated by blanks; blank lines skipped) as a data set
 * whose point i has no features and as labels the labels to exclude from point i's
 * ranking (ascending, a repeated pair once): spr_model_evaluate_excluding and
 * spr_model_predict_excluding take it. n_points (>= 1: the data it filters) and n_labels
 * (the model's; 0: the largest id + 1) bound the ids. An empty file excludes nothing. */
SPR_API spr_status spr_dataset_read_filter(const char *path, int64_t n_points, int64_t n_labels,
                                           spr_dataset **out);

/* Wraps caller-owned CSR arrays without copying; they must outlive the handle. The
 * arrays are validated (sorted, in range); O(nnz). */
SPR_API spr_status spr_dataset_wrap(const spr_dataset_view *view, spr_dataset **out);

/* Writes the data set in XMC format (with header), atomically (temporary file + rename). */
SPR_API spr_status spr_dataset_write(const spr_dataset *data, const char *path);

SPR_API spr_dataset_view spr_dataset_get_view(const spr_dataset *data);

/* A 64-bit digest of the data set's content: every point's feature ids and value bits
 * and its labels, in order (not the declared widths n_features / n_labels). The same
 * points give the same digest however they were made (read from a file of either id
 * base, or wrapped from arrays) and on every platform; O(nnz), one thread. It tells
 * data sets apart for a check (spr_model_get_data_note), it is no cryptographic hash. */
SPR_API uint64_t spr_dataset_digest(const spr_dataset *data);
SPR_API void spr_dataset_free(spr_dataset *data);

/* ------------------------------------------------------------------ synthetic data */

/* A synthetic extreme-classification data set shaped like a public one. Labels follow a
 * power law, co-occur in clusters, and each label owns a sparse feature prototype: a
 * point's features are drawn from its labels' prototypes plus noise, so the data is
 * learnable. Deterministic for a given seed, whatever the thread count. */
typedef struct spr_synth_config {
    char name[32];
    int64_t n_train, n_test;
    int64_t n_features, n_labels;
    double labels_per_point;   /* mean */
    double nnz_per_point;      /* mean */
    double zipf_exponent;      /* label popularity ~ rank^-exponent */
    int64_t cluster_size;      /* labels per co-occurrence cluster */
    int64_t prototype_nnz;     /* features per label prototype */
    double noise;              /* fraction of a point's features drawn uniformly at random */
} spr_synth_config;

/* Presets: "tiny", "small", "amazon670k", "delicious200k", "wiki325k". */
SPR_API spr_status spr_synth_preset(const char *name, spr_synth_config *out);

/* Writes train_path and test_path in XMC format (atomically). threads <= 0: all cores. */
SPR_API spr_status spr_synth_generate(const spr_synth_config *config, uint64_t seed,
                                      const char *train_path, const char *test_path,
                                      int threads);
/* spr_synth_generate reporting the points written (train then test) of n_train + n_test
 * to progress (NULL: none); called from one worker at a time, in order. */
SPR_API spr_status spr_synth_generate_progress(const spr_synth_config *config, uint64_t seed,
                                               const char *train_path, const char *test_path,
                                               int threads, spr_progress_fn progress,
                                               void *user);

/* ------------------------------------------------------------------ model */

#define SPR_MAX_LAYERS 8
#define SPR_MAX_THREADS 1024 /* a larger thread count is taken as this many */
#define SPR_MAX_K 1000       /* the most labels a prediction ranks per point */
#define SPR_SIMHASH_ONE_IN_MAX 1024 /* largest spr_layer_config.simhash_one_in */

/* Starts the worker threads that calls with this thread count will use (<= 0: all
 * cores) and returns how many there are. OpenMP keeps them for every later call; one
 * it cannot create (under an address-space limit, ulimit -v, each needs its stack) ends
 * the process with the runtime's "Thread creation failed". Creating or loading a model
 * starts them for all cores first, before the model's memory; call this earlier (before
 * reading data) or with a count above the cores to have the rest made early too.
 * A fork() releases the forking thread's OpenMP workers first (the parent makes new ones
 * at its next call), so that a forked child (a Python multiprocessing worker, a
 * preforking server's) runs on all its threads: GNU OpenMP's child of a thread that had
 * workers waited for them forever. A child forked inside a parallel region, where they
 * cannot be released, runs every call on the calling thread alone; this returns 1 there. */
SPR_API int spr_threads_start(int threads);

typedef enum spr_hash_family {
    SPR_HASH_DWTA = 0,    /* densified winner-take-all (SLIDE's default) */
    SPR_HASH_SIMHASH = 1, /* signed random projections */
    SPR_HASH_WTA = 2,     /* winner-take-all */
    SPR_HASH_DOPH = 3,    /* densified one-permutation minhash */
} spr_hash_family;

SPR_API const char *spr_hash_family_to_string(spr_hash_family family);
/* "dwta", "simhash", "wta", "doph" -> family; SPR_STATUS_BAD_INPUT otherwise. */
SPR_API spr_status spr_hash_family_parse(const char *name, spr_hash_family *out);

typedef enum spr_bucket_policy {
    SPR_BUCKET_FIFO = 0,      /* a full bucket keeps the newest neurons inserted */
    SPR_BUCKET_RESERVOIR = 1, /* a full bucket keeps a uniform sample of those inserted */
} spr_bucket_policy;

/* How a sampled layer turns the L buckets a query hits into its active set. Every
 * strategy tops the set up with random neurons to ceil(sparsity x size) when it has
 * fewer, and training adds the sample's labels to the output layer's set. */
typedef enum spr_select {
    SPR_SELECT_TOPK = 0,      /* (1 - random_fraction) x target candidates, those returned by
                                 the most tables first, then random neurons: exactly
                                 ceil(sparsity x size) active (default) */
    SPR_SELECT_UNION = 1,     /* every neuron of the L buckets (SLIDE): at least the target,
                                 at most L x bucket_capacity */
    SPR_SELECT_THRESHOLD = 2, /* neurons returned by at least select_threshold tables, the most
                                 returned first, at most (1 - random_fraction) x target */
    SPR_SELECT_RANK = 3,      /* like topk, but the candidates of the L buckets are ranked by
                                 how many of the K x L hash codes they share with the input
                                 (every code of every table, not only whole keys): a finer
                                 similarity estimate, about twice the top-10 recall of topk */
} spr_select;

SPR_API const char *spr_select_to_string(spr_select select);
/* "topk", "union", "threshold", "rank" -> strategy; SPR_STATUS_BAD_INPUT otherwise. */
SPR_API spr_status spr_select_parse(const char *name, spr_select *out);

/* One fully connected layer. Layer 0 reads the sparse input (an embedding bag: the sum
 * of the weight rows of the input's non-zero features) and is never sampled. Hidden
 * layers use ReLU; the last layer is the softmax output. */
typedef struct spr_layer_config {
    int64_t size;             /* neurons */
    float sparsity;           /* fraction of neurons active per sample in training; 1 = all */
    spr_hash_family hash;
    int hash_k;               /* codes per table key; 0 = chosen from sparsity and hash_l.
                                 Keys wider than 20 bits, or than 4 buckets a neuron (2^10
                                 at least), are folded to that many bits by a hash */
    int hash_l;               /* tables */
    int bucket_capacity;      /* neurons kept per bucket */
    spr_bucket_policy bucket_policy;
    spr_select select;
    int select_threshold;     /* SPR_SELECT_THRESHOLD: tables that must return a neuron */
    float random_fraction;    /* share of the target kept for uniformly random neurons even
                                 when LSH returns more (topk, threshold): hard negatives from
                                 the tables and random ones together train best (0.5) */
    int simhash_one_in;       /* SimHash: each entry of a random projection is non-zero (+1 or
                                 -1) with probability 1 / simhash_one_in, 1..1024; 0 (default):
                                 chosen when a sampled layer is made, max(3, round(sqrt(fan-in))), the
                                 "very sparse" projections of Li, Hastie and Church (11 for a
                                 fan-in of 128). Sparser projections hash faster (a code costs
                                 fan-in / s adds). The model's configuration holds the value
                                 chosen, and it is saved with the model (files from before the
                                 option: 3). */
} spr_layer_config;

typedef struct spr_model_config {
    int64_t n_features;       /* input dimension */
    int n_layers;             /* hidden layers + the output layer, 2..SPR_MAX_LAYERS */
    spr_layer_config layers[SPR_MAX_LAYERS]; /* layers[n_layers-1].size = number of labels */
    float init_std;           /* weights ~ N(0, init_std^2), biases 0 */
    uint64_t seed;            /* weights, hash functions and sampling all derive from it */
    int bf16_state;           /* 1: the output layer's Adam moments of the weights are stored as
                                 BF16 (the top half of a float, rounded to nearest even), half
                                 the bytes the optimizer step moves there; the step itself
                                 computes in float. 0: float (default). Saved with the model. */
    int bf16_weights;         /* 1: the output layer's weights are stored as BF16 too (needs
                                 bf16_state; the layer below must be dense): half the bytes
                                 of every row the forward, backward and optimizer read. Dot
                                 products widen the weights and compute in float; the Adam
                                 step rounds the new weight stochastically, so that steps
                                 below a BF16 step still move it in expectation. 0: float
                                 (default). Saved with the model. */
} spr_model_config;

/* n_features -> 128 ReLU -> n_labels softmax sampled at sparsity 0.01 with SimHash,
 * L = 50 tables, K chosen from the sparsity, bucket capacity 128, top-k selection. */
SPR_API spr_model_config spr_model_config_default(int64_t n_features, int64_t n_labels);

/* Checks a configuration; SPR_STATUS_BAD_INPUT with a message naming the field if wrong. */
SPR_API spr_status spr_model_config_check(const spr_model_config *config);

/* Bytes spr_model_create will allocate for this configuration: parameters, gradients,
 * Adam moments, touched-row lists, hash tables, their rehash keys and hash functions
 * (per-thread training scratch, a few MB, not included). Lets a caller refuse a model
 * that does not fit before allocating anything. */
SPR_API spr_status spr_model_config_memory(const spr_model_config *config, int64_t *bytes);

typedef struct spr_train_options {
    int batch_size;           /* samples per optimizer step (the gradient is a batch mean) */
    float lr, beta1, beta2, eps; /* Adam, as torch.optim.Adam */
    int threads;              /* <= 0: all cores; at most SPR_MAX_THREADS */
    int dense;                /* 1: every neuron active (the exact reference) */
    /* Rehash schedule (SLIDE's paper): the t-th rehash of the tables happens after
     * sum_{i<t} rehash_first * exp(rehash_growth * i) batches, each gap capped at
     * rehash_max batches; every rebuild_every-th rehash draws new hash functions. */
    int64_t rehash_first;
    float rehash_growth;
    int64_t rehash_max;
    int rebuild_every;
    float clip_norm;          /* > 0: scale the batch gradient so that its L2 norm (over all
                                 touched rows and biases) is at most this; 0: off */
    int random_pool;          /* 0: each sample draws its random neurons (the random_fraction
                                 share) from the whole layer (SLIDE); G >= 1: the batch draws a
                                 pool of G x the share once and each sample draws its share
                                 from the pool, so the batch reads and steps far fewer rows
                                 (G = 1: every sample takes the whole pool) */
    int lazy_adam;            /* 0 (default): a row stepped again after s steps without
                                 gradient first catches up on those s steps as
                                 torch.optim.Adam takes them (its moments decay, its weights
                                 keep moving on the momentum: the "momentum tail"), in closed
                                 form; 1: it does not (torch.optim.SparseAdam, SLIDE) */
} spr_train_options;

/* The bytes of spr_model_config_memory that training with `options` (one process) will
 * touch: a sampled output layer's gradient rows are only reserved and stay untouched in
 * deferred training (a sampled output layer, not options->dense; with clip_norm, or
 * after a sampled hidden layer, too since session 32), so they are left out then: a
 * quarter of a float output layer's bytes (2/5 with BF16 weights), 1 GB at 2M labels
 * after 128 hidden. The deferred gradient's store (batch x active x 36 bytes, ~30 MB at batch 256
 * and 3,350 active) is per-thread-scratch-sized and, like it, not included. */
SPR_API spr_status spr_model_config_memory_training(const spr_model_config *config,
                                                    const spr_train_options *options,
                                                    int64_t *bytes);

SPR_API spr_train_options spr_train_options_default(void);

typedef struct spr_model spr_model;

typedef void (*spr_log_fn)(void *user, const char *message);

/* Allocates and initialises every parameter, the optimizer state and the hash tables.
 * Cost: O(parameters) memory, one hashing pass over each sampled layer. */
SPR_API spr_status spr_model_create(const spr_model_config *config, spr_model **out);
SPR_API void spr_model_free(spr_model *model);
SPR_API spr_model_config spr_model_get_config(const spr_model *model);

/* Log lines (rehash times, table sizes) go to fn; NULL silences them (the default). */
SPR_API void spr_model_set_logger(spr_model *model, spr_log_fn fn, void *user);

/* Allocates per-thread scratch for training with these options on points with up to
 * max_labels labels. Training calls it on its own when needed, but calling it first
 * keeps every allocation out of the training steps. */
SPR_API spr_status spr_model_prepare(spr_model *model, const spr_train_options *options,
                                     int64_t max_labels);

typedef struct spr_batch_stats {
    double loss;                        /* mean cross-entropy over the batch */
    double active[SPR_MAX_LAYERS];      /* mean active neurons per sample, per layer */
    double rehash_seconds;              /* time spent rehashing after this batch */
    double optimizer_seconds;           /* time in the Adam step of this batch (train_batch);
                                           with a fused step (a sampled output after a dense
                                           layer) it includes the output layer's input
                                           gradient and the backward below it, formed in
                                           that step (with clipping, the norm's pass too) */
    /* What that step moved (train_batch): the weight rows it stepped (every layer) and the
     * bytes of parameter state it read and wrote for them: weights, Adam moments and, where
     * the gradient has rows of its own, the gradient (read, then cleared), biases included.
     * optimizer_bytes / optimizer_seconds against a STREAM figure says how close the
     * optimizer runs to the memory bus (bench/peers.py). */
    int64_t optimizer_rows;
    int64_t optimizer_bytes;
    /* Model-parallel step only (a sharded model), else 0: */
    double comm_seconds;                /* waiting in collectives (MPI_Allreduce) this batch */
    int64_t comm_bytes;                 /* bytes this rank handed to collectives this batch */
} spr_batch_stats;

/* One optimizer step on the points rows[0..n) of data (n <= batch_size): forward,
 * backward, lazy Adam on the touched rows, then a rehash if the schedule says so.
 * Cost: O(n x active neurons x fan-in), never O(#labels). stats may be NULL. A batch
 * whose loss is not finite returns SPR_STATUS_BAD_INPUT ("training diverged ...")
 * without applying the step: the model stays as it was before the call. */
SPR_API spr_status spr_model_train_batch(spr_model *model, const spr_dataset *data,
                                         const int64_t *rows, int64_t n,
                                         const spr_train_options *options,
                                         spr_batch_stats *stats);

/* The two halves of spr_model_train_batch, for tests and custom loops: accumulate the
 * batch gradients (readable with spr_model_param), then apply Adam to the touched rows
 * and clear the gradients. */
SPR_API spr_status spr_model_compute_gradients(spr_model *model, const spr_dataset *data,
                                               const int64_t *rows, int64_t n,
                                               const spr_train_options *options,
                                               spr_batch_stats *stats);
SPR_API spr_status spr_model_apply_gradients(spr_model *model, const spr_train_options *options);
/* Adam with catch-up (options->lazy_adam 0, the default) steps a row that had no
 * gradient for a while only when it next has one, taking the zero-gradient steps it
 * missed first (after that step's forward pass read it). This takes them now for every
 * row that owes some, at options' lr, betas and eps, so that the weights are those
 * torch.optim.Adam's zero-gradient steps leave (to ~1e-5 of the move; model.h,
 * spr_catch_up), and the next forward passes read the moved rows. The CLI and Python's
 * fit call it at the end of every complete epoch (so a resumed run does too), and
 * SampledSoftmaxLinear on eval(); call it before reading weights (spr_model_param) if
 * you drive spr_model_train_batch yourself. Inference needs no call: spr_model_predict,
 * _evaluate, _sampling_recall and _output_predict read the rows that owe steps as
 * spr_model_settle would leave them, bit for bit, without writing the model (so a run
 * evaluated inside an epoch trains on exactly as one never evaluated). A no-op with
 * options->lazy_adam; BAD_INPUT for options that cannot train (spr_check_adam:
 * catch-up needs beta1^2 < beta2). One pass over the rows that owe steps. */
SPR_API spr_status spr_model_catch_up(spr_model *model, const spr_train_options *options);

/* spr_model_catch_up at the Adam options (lr, betas, eps) of the model's last step: the
 * model remembers them, and a saved model keeps them (so a model saved inside an epoch,
 * by --max-batches, a signal or --save-every, can be brought to what torch.optim.Adam
 * holds after loading, without the options). `sparrow eval` and `predict` call it after
 * loading, `sparrow train` before the evaluation of a run stopped inside an epoch (after
 * its save: the file keeps the rows as they are, so that --resume continues exactly).
 * A no-op for a model that never stepped, stepped with lazy Adam, or was loaded from a
 * file of a sparrow before the options were saved (session 26); threads as
 * spr_train_options.threads. Inference reads owed rows as settled without it, but at a
 * copy per row and block of points: a program that predicts many times from a model
 * that owes steps (a file saved inside an epoch) should settle it once (one-point exact
 * predictions at 670K labels: 63 ms owing, 14 ms settled; bench/settled_predict.c). */
SPR_API spr_status spr_model_settle(spr_model *model, int threads);

/* Top-k labels of each of rows[0..n) (all points if rows is NULL, n ignored):
 * ids_out and scores_out are (n, k), best first, ties broken by the lower label id.
 * Scores are output logits. sparse = 1 ranks only the LSH candidates (sublinear); a
 * point with fewer than k candidates (or a model with fewer than k labels) gets its
 * row padded at the end with id -1 and score -INFINITY. */
SPR_API spr_status spr_model_predict(const spr_model *model, const spr_dataset *data,
                                     const int64_t *rows, int64_t n, int k, int sparse,
                                     int threads, int32_t *ids_out, float *scores_out);
/* spr_model_predict without, for each point, the labels `exclude` gives it (see
 * spr_model_evaluate_excluding; NULL: spr_model_predict): each point's best k of the
 * rest. k + the most labels a point excludes must be at most SPR_MAX_K. */
SPR_API spr_status spr_model_predict_excluding(const spr_model *model, const spr_dataset *data,
                                               const int64_t *rows, int64_t n, int k, int sparse,
                                               int threads, const spr_dataset *exclude, int32_t *ids_out,
                                               float *scores_out);

/* The output layer driven by inputs computed outside sparrow (the PyTorch layer, dense
 * features): input is (n, fan_in) row-major, fan_in = the output layer's input width
 * (the last hidden layer's size); the layers below the output are not used.
 *
 * spr_model_output_train: one optimizer step of the output layer on n <= batch_size rows.
 * Row i's labels are labels[label_indptr[i] .. label_indptr[i+1]), ascending, without
 * duplicates, below the number of outputs (labels may be NULL if there are none). The
 * loss is the batch mean of softmax cross-entropy with the target spread evenly over a
 * row's labels, over the sampled active set (all outputs with sparsity 1 or dense = 1).
 * grad_input (n, fan_in) receives dLoss/dinput, computed with the weights before the
 * step; then lazy Adam updates the touched output rows and the rehash schedule runs.
 * Cost: O(n x active x fan_in). A loss that is not finite fails without a step. */
SPR_API spr_status spr_model_output_train(spr_model *model, const float *input, int64_t n,
                                          const int64_t *label_indptr, const int32_t *labels,
                                          const spr_train_options *options, float *grad_input,
                                          spr_batch_stats *stats);

/* Top-k outputs of each of the n input rows (n, fan_in): ids_out and scores_out (n, k),
 * as spr_model_predict (exact, or among the LSH candidates with sparse = 1). */
SPR_API spr_status spr_model_output_predict(const spr_model *model, const float *input, int64_t n,
                                            int k, int sparse, int threads, int32_t *ids_out,
                                            float *scores_out);

typedef struct spr_eval_result {
    int64_t n_points;
    double p_at[6];      /* p_at[k] = precision@k for k = 1..5 (p_at[0] unused) */
    double seconds;
    double ndcg_at[6];   /* ndcg_at[k] = nDCG@k for k = 1..5 (ndcg_at[0] unused) */
    double psp_at[6];    /* psp_at[k] = PSP@k for k = 1..5, with spr_model_evaluate_ps's
                            propensities (0 from spr_model_evaluate) */
    double psndcg_at[6]; /* psndcg_at[k] = PSnDCG@k for k = 1..5, likewise */
} spr_eval_result;

/* P@k and nDCG@k for k = 1..5 on rows[0..n) of data (all if rows is NULL), with the
 * Extreme Classification Repository's definitions (binary relevance): P@k = (labels
 * among the top k) / k; nDCG@k = DCG@k / IDCG@k, DCG@k the sum of 1 / log2(r + 1) over
 * the ranks r <= k that hold a label, IDCG@k that sum over r <= min(k, |labels|). Each
 * is the mean over the points; a point without labels counts as 0 in both. Ties in score
 * go to the lower label id (as spr_model_predict ranks them). */
SPR_API spr_status spr_model_evaluate(const spr_model *model, const spr_dataset *data,
                                      const int64_t *rows, int64_t n, int sparse,
                                      int threads, spr_eval_result *out);

/* The order in which `sparrow train` and Model.fit visit the points of epoch `epoch`
 * (1-based) of a model seeded `seed`: rows[0..n) = a permutation of 0..n-1 that depends
 * only on (seed, epoch), so a run resumed inside an epoch (whichever tool saved it) skips
 * exactly the points already trained. */
SPR_API void spr_epoch_order(int64_t *rows, int64_t n, uint64_t seed, int64_t epoch);

/* The --eval-max subset of a set of n points (`sparrow train` / `eval --eval-max m`,
 * Model.fit's eval_max): rows (room for n) gets m points drawn uniformly without
 * replacement with a fixed seed, sorted, in rows[0..m); returns m, or n (rows = 0..n-1:
 * every point) when m <= 0 or m >= n. */
SPR_API int64_t spr_eval_subset(int64_t *rows, int64_t n, int64_t m);

/* Inverse propensities 1 / p_l of labels 0..n_labels-1 (Jain, Prabhu and Varma, KDD 2016)
 * from the training set train: p_l = 1 / (1 + C (N_l + b)^-a), C = (ln N - 1)(b + 1)^a,
 * N_l the training points that carry label l, N all of them (at least 3). The XMC
 * repository's a, b: 0.55, 1.5 by default, 0.6, 2.6 for the Amazon sets, 0.5, 0.4 for
 * the Wikipedia ones. Rare labels weigh more: a label no training point has gets the
 * largest weight. out: (n_labels); n_labels >= the data set's label count. */
SPR_API spr_status spr_inv_propensities(const spr_dataset *train, double a, double b,
                                        int64_t n_labels, double *out);

/* spr_model_evaluate plus propensity-scored precision: PSP@k = the sum over the points of
 * the inverse propensities of the labels in the top k, over the sum of the largest such
 * total each point's own labels could give (its min(k, |labels|) rarest labels): the XMC
 * repository's normalized PSP@k, in [0, 1]; and PSnDCG@k, its nDCG: the mean over the
 * points of (the sum of inv_propensity[l] / log2(r + 1) over the ranks r <= k holding a
 * label l) / IDCG@k, over the same mean for each point's labels ranked rarest first
 * (pyxclib's psndcg). inv_propensity: (n_prop) from spr_inv_propensities; every label id
 * of data must be below n_prop. */
SPR_API spr_status spr_model_evaluate_ps(const spr_model *model, const spr_dataset *data,
                                         const int64_t *rows, int64_t n, int sparse,
                                         int threads, const double *inv_propensity,
                                         int64_t n_prop, spr_eval_result *out);

/* spr_model_evaluate_ps with, for each point, the labels `exclude` gives it (a data set
 * with data's n_points, spr_dataset_read_filter's, or wrapped; its features unused;
 * NULL: none) removed from its ranking before its top 5 are scored: the XMC repository's
 * filtered evaluation of the LF-* sets (a point's own item and reciprocal pairs never
 * count, and the next labels move up). Only the predictions are filtered, not the
 * point's labels. A point may exclude at most SPR_MAX_K - 5 labels. */
SPR_API spr_status spr_model_evaluate_excluding(const spr_model *model, const spr_dataset *data,
                                                const int64_t *rows, int64_t n, int sparse, int threads,
                                                const double *inv_propensity, int64_t n_prop,
                                                const spr_dataset *exclude, spr_eval_result *out);

/* Sampling quality of the output layer: for each of rows[0..n) (all if rows is NULL),
 * the fraction of its exact top-`top` outputs that the sampler puts in the active set
 * (as in training: the layer's strategy and random top-up, without labels); *recall is
 * the mean over the points. Costs an exact inference. A low value (below 0.5 for the
 * top 10 at 1% sparsity) means a bug or a bad K / L. */
SPR_API spr_status spr_model_sampling_recall(const spr_model *model, const spr_dataset *data,
                                             const int64_t *rows, int64_t n, int top,
                                             int threads, double *recall);

typedef enum spr_param {
    SPR_PARAM_WEIGHT = 0,      /* layer 0: (n_features, size); others: (size, fan_in) */
    SPR_PARAM_BIAS = 1,        /* (1, size) */
    SPR_PARAM_WEIGHT_GRAD = 2,
    SPR_PARAM_BIAS_GRAD = 3,
    SPR_PARAM_WEIGHT_ADAM_M = 4,
    SPR_PARAM_WEIGHT_ADAM_V = 5,
    SPR_PARAM_BIAS_ADAM_M = 6,
    SPR_PARAM_BIAS_ADAM_V = 7,
} spr_param;

/* A borrowed pointer to a parameter array of a layer. Rows are stride floats apart
 * (stride >= cols, rows 64-byte aligned). Writing weights is allowed between steps;
 * the hash tables see the change at the next rehash (or spr_model_rehash). With
 * bf16_state the output layer's SPR_PARAM_WEIGHT_ADAM_M and _V are not float arrays,
 * with bf16_weights neither is its SPR_PARAM_WEIGHT: asking for them is
 * SPR_STATUS_BAD_INPUT (spr_model_weight_rows copies rows out as float). */
SPR_API spr_status spr_model_param(spr_model *model, int layer, spr_param which,
                                   float **data, int64_t *rows, int64_t *cols,
                                   int64_t *stride);

/* Rows [first, first + n) of a layer's weights into out (n, cols), cols the layer's
 * fan-in (its size for layer 0), whatever the storage (float, or BF16 widened exactly
 * with bf16_weights). */
SPR_API spr_status spr_model_weight_rows(const spr_model *model, int layer, int64_t first,
                                         int64_t n, float *out);

/* Re-inserts every neuron of every sampled layer into its tables (rebuild = 1 first
 * draws new hash functions). */
SPR_API spr_status spr_model_rehash(spr_model *model, int rebuild, int threads);

typedef struct spr_model_info {
    int64_t steps;            /* optimizer steps taken */
    int64_t samples;          /* training samples seen */
    int64_t epoch;            /* completed epochs, as set by the caller */
    int64_t parameters;       /* weights + biases */
    int64_t parameter_bytes;  /* weights + biases + optimizer state + gradients (a sampled
                                 output layer's gradient rows included, though they stay
                                 untouched, not resident, in deferred training) */
    int64_t table_bytes;      /* hash tables of all sampled layers, with each neuron's L keys
                                 and the hash functions */
    int64_t rehashes, rebuilds;
    int hash_k[SPR_MAX_LAYERS]; /* effective K per layer (0 for layers not sampled) */
    int key_bits[SPR_MAX_LAYERS]; /* log2 of buckets per table */
    /* A sharded model (spr_model_create_sharded) holds the output rows of labels
     * [label_lo, label_lo + output size) of labels_total; otherwise 0 and the output size. */
    int64_t label_lo, labels_total;
    int rank, ranks;              /* 0 and 1 without sharding */
    /* Adam's lr, betas and eps at the model's last step with catch-up: what the steps its
     * rows owe are taken at (spr_model_settle), and what `sparrow train --resume` continues
     * at without --lr; saved with the model (ADAM). All 0 when not known: the model never
     * stepped, stepped with lazy Adam, or was saved by a sparrow before session 26. */
    float lr, beta1, beta2, eps;
} spr_model_info;

SPR_API spr_model_info spr_model_get_info(const spr_model *model);
SPR_API void spr_model_set_epoch(spr_model *model, int64_t epoch);

/* What a model remembers of the data set that trains it, saved with it: a run that
 * continues it (sparrow train --resume, fit(resume=True)) checks that it is given the
 * same set, and evaluation reads files with the id base training read. points 0: not
 * known (a model never given a note, or saved before notes existed). */
typedef struct spr_data_note {
    int64_t points;       /* points of the training set */
    uint64_t digest;      /* its spr_dataset_digest */
    int one_based;        /* its file's feature ids started at 1 (spr_read_options.one_based) */
} spr_data_note;

/* Sets the note (the caller's; the library never reads data it is not given). NULL or
 * points <= 0 clears it. */
SPR_API void spr_model_set_data_note(spr_model *model, const spr_data_note *note);
SPR_API spr_data_note spr_model_get_data_note(const spr_model *model);

/* Saves the whole model (configuration, weights, biases, optimizer state, step and
 * schedule) in a versioned binary format with a magic number and a CRC-32 per section,
 * atomically: a temporary file in the same directory, fsync, rename. A failed save
 * leaves any previous file at path untouched. Where path is a symbolic link, the file
 * it names is replaced and the link kept. */
SPR_API spr_status spr_model_save(const spr_model *model, const char *path);

/* Whether spr_model_save could write at path, without writing anything: call it before
 * hours of training. IO_ERROR naming path when the directory of the file to be written
 * (symbolic links followed) is missing or not writable, or path is a directory, device,
 * FIFO or socket (a save replaces the file at its path: never those), or the process has
 * no file descriptor left to open it with (check again once the run's files are open). */
SPR_API spr_status spr_model_save_check(const char *path);

/* A sharded model (spr_model_create_sharded) is saved collectively: each rank writes
 * "path.<id>.rank<r>of<N>" (a complete model of its rows, atomically; id new for every
 * save), then rank 0 writes the manifest at path (labels and file of every shard),
 * atomically, last; then the previous save's shards are removed. Loading refuses a
 * manifest whose shards come from different saves. */

/* Loads a model written by spr_model_save; a manifest of a sharded model is assembled
 * into one whole model (its shards' files must sit next to it). Section sizes are checked against the file
 * length before anything is allocated; a damaged file is SPR_STATUS_BAD_INPUT. */
SPR_API spr_status spr_model_load(const char *path, spr_model **out);

/* Loads a saved model for inference: its weights and biases, no weight gradients or
 * Adam moments, and the LSH tables only when `tables` is nonzero (sparse inference and
 * spr_model_sampling_recall need them; exact inference does not). In memory that is the
 * weights alone: a third of spr_model_load's with float moments (a 17M-label model with
 * BF16 weights and moments: 4.8 GB resident against 20.3 GB), and the moments' sections are not
 * read (their checksums not checked: spr_model_verify checks every one). Every
 * prediction and evaluation is bit for bit spr_model_load's after spr_model_settle: in a
 * file whose rows owe Adam steps (saved inside an epoch), those rows take them as the
 * moments stream past a chunk of rows at a time (checksums checked), never all in
 * memory. A manifest's shards are read the same way one at a time into the whole
 * model's weights (never more than those and one shard's in memory: a 670K-label model
 * saved on 2 ranks evaluates in 0.68 GB, where assembling it whole took 3.1 GB), the
 * tables hashed from the rows as stored, then each shard's owing rows settled from its
 * moments. What needs the optimizer state
 * refuses such a model with SPR_STATUS_BAD_INPUT: training (spr_model_train_batch,
 * spr_model_compute_gradients, spr_model_apply_gradients, spr_model_output_train,
 * spr_model_prepare), spr_model_save, spr_model_param of a gradient or moment; without
 * tables, sparse inference, recall and spr_model_rehash. spr_model_get_info's
 * parameter_bytes counts what it holds. */
SPR_API spr_status spr_model_load_inference(const char *path, int tables, spr_model **out);

/* What spr_model_load would give of a saved model (its configuration, the
 * spr_model_info of the loaded model, its data note) without loading it: only the small
 * sections are read and checked (the arrays' checksums are not: a file that peeks well
 * may still fail to load), a few reads and no memory whatever the model's size. A
 * manifest gives the whole model its shards make up. Any of the outputs may be NULL. */
SPR_API spr_status spr_model_peek(const char *path, spr_model_config *config, spr_model_info *info,
                                  spr_data_note *note);
/* Reads every section of a saved model (every shard a manifest names) and checks the
 * layout a load checks and each section's checksum, streaming the file through one
 * buffer: a few MB of memory whatever the model's size (a load of a 17M-label model takes
 * 20 GB); of a manifest's shards also that they come from one save (the counters and
 * hidden layers every rank replicates agree). A load also checks the contents behind
 * right checksums (the tables' offsets, each row's last step): damage is what this
 * finds. SPR_STATUS_BAD_INPUT naming the file, the section and its offset. */
SPR_API spr_status spr_model_verify(const char *path);
/* How a saved model is stored: 0 for one model file, N for the manifest of N shards
 * (spr_model_save of a sharded model), -1 with spr_last_error() set when path is neither
 * (a damaged manifest, a missing file). Reads the manifest only. */
SPR_API int spr_model_file_shards(const char *path);

/* ------------------------------------------------------------------ model parallelism (MPI) */

/* One model over several processes (MPI ranks): the output layer, its hash tables and
 * its Adam state are split by label range over the ranks (rank r holds labels
 * [total r / N, total (r + 1) / N)), each rank samples among its own neurons; the input
 * and hidden layers are replicated. A training step moves O(batch x hidden) floats
 * (the softmax normaliser and the gradient of the last hidden layer), evaluation
 * O(batch x k) (each rank's top-k): never O(#labels). See README, "Several machines". */
typedef struct spr_dist spr_dist;

/* 1 if this library was built with MPI (CMake found it), else 0: then spr_dist_init
 * fails and everything else runs on one process as before. */
SPR_API int spr_dist_compiled(void);

/* MPI_Init_thread (funneled: only the calling thread talks to MPI) on MPI_COMM_WORLD,
 * errors returned rather than fatal. A collective that does not complete within
 * timeout_seconds (> 0) fails with SPR_STATUS_IO_ERROR naming the step: a rank that died
 * or hangs then stops the others instead of blocking them forever. */
SPR_API spr_status spr_dist_init(int *argc, char ***argv, double timeout_seconds, spr_dist **out);
SPR_API int spr_dist_rank(const spr_dist *dist);
SPR_API int spr_dist_size(const spr_dist *dist);
/* MPI_Finalize and free (NULL accepted). After a failed collective, use spr_dist_abort. */
SPR_API void spr_dist_finalize(spr_dist *dist);
/* MPI_Abort: ends every rank of the job with exit code code. Does not return. */
SPR_API void spr_dist_abort(spr_dist *dist, int code);

typedef struct spr_dist_stats {
    int64_t collectives;      /* collective calls so far */
    int64_t bytes;            /* bytes this rank handed to them */
    double seconds;           /* wall time spent in them */
} spr_dist_stats;
SPR_API spr_dist_stats spr_dist_get_stats(const spr_dist *dist);

/* Collective: *value becomes the largest of every rank's *value (|value| < 2^24). How a
 * request to stop that one rank saw (a signal, an output that failed) reaches all of
 * them at the same step. A rank that does not answer within the timeout: IO_ERROR. */
SPR_API spr_status spr_dist_max_int(spr_dist *dist, int *value);

/* Rank spr_dist_rank(dist)'s part of the model config describes (collective in spirit:
 * every rank calls it with the same config; no communication). The weights are those
 * spr_model_create draws for the same rows, so 2 ranks start where 1 process starts.
 * The model keeps dist (borrowed: it must outlive the model), and then
 * spr_model_train_batch, spr_model_predict, spr_model_evaluate and spr_model_save are
 * collective: every rank calls them with the same arguments. Where one rank fails
 * (out of memory in inference, a shard it cannot write) every rank returns a failure
 * (the others "... failed on rank R (see its message)"): none is left waiting in a
 * collective. A sampled hidden layer draws the same neurons on every rank (replicated).
 * A collective that fails inside spr_model_train_batch (a rank died or hangs: IO_ERROR)
 * either drops the batch whole or, where it fails after the output rows took their step
 * (the fused step's allreduce of dLoss/dh), leaves the model torn: training and saving
 * it are then refused; load its last save. */
SPR_API spr_status spr_model_create_sharded(const spr_model_config *config, spr_dist *dist,
                                            spr_model **out);

/* This rank's shard of a model saved by spr_model_save on any number of ranks (or by
 * one process): the shard file directly when the rank counts agree, else this rank's
 * rows of each file that holds some (the others read through for their checksums, one
 * file at a time): no rank holds the whole model. Every rank's rows must come from one
 * save (their replicated layers and counters agree), else all fail. */
SPR_API spr_status spr_model_load_sharded(const char *path, spr_dist *dist, spr_model **out);
/* The same for inference, as spr_model_load_inference is to spr_model_load: where the
 * rank counts agree, this rank's weights and biases only (its tables when `tables` is
 * nonzero), its rows that owe Adam steps settled from its file's moments, streamed; a
 * model of another split is loaded with its state, settled, then slimmed. Predictions
 * are bit for bit those of spr_model_load_sharded's model. Collective. */
SPR_API spr_status spr_model_load_sharded_inference(const char *path, spr_dist *dist, int tables,
                                                    spr_model **out);

/* Bytes rank `rank` of `ranks` needs for its part of config (spr_model_config_memory of
 * the shard). */
SPR_API spr_status spr_model_config_memory_sharded(const spr_model_config *config, int rank,
                                                   int ranks, int64_t *bytes);
/* The bytes of that part training with `options` touches (spr_model_config_memory_training
 * of the shard: a rank defers a sampled output layer's gradient as one process does). */
SPR_API spr_status spr_model_config_memory_sharded_training(const spr_model_config *config,
                                                            const spr_train_options *options,
                                                            int rank, int ranks, int64_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* SPARROW_H */

/* cli_train.h: what the two halves of `sparrow train` share: its options
 * (cli_train_args.c parses them, with --config and --print-config) and the run
 * (cli_train.c: reading, the model, the training loop, progress and metrics). */
#ifndef SPARROW_CLI_TRAIN_H
#define SPARROW_CLI_TRAIN_H

#include "cli.h"

struct cJSON;

/* The parsed command line of `sparrow train` (have_X: option X was given; otherwise
 * the library's default applies). */
typedef struct train_args {
    const char *train_path, *test_path, *save_path, *metrics_path, *resume_path;
    const char *train_labels, *test_labels; /* split format: the labels files, or NULL */
    const char *test_filter;                 /* --test-filter-labels, or NULL */
    int n_hidden;
    int64_t hidden[SPR_MAX_LAYERS];
    int64_t epochs;
    int batch;
    int have_batch;
    double lr;
    int have_lr;
    double sparsity;
    int have_sparsity;
    spr_hash_family hash;
    int have_hash;
    int tables, have_tables;
    int bits, have_bits;
    int bucket_capacity, have_bucket_capacity;
    spr_bucket_policy bucket_policy;
    int have_bucket_policy;
    spr_select select;
    int have_select;
    int threshold, have_threshold;
    double hidden_sparsity, random_fraction;
    int have_random_fraction;
    int simhash_one_in, have_simhash_one_in;
    int64_t max_memory; /* 0: what /proc/meminfo says is available */
    double clip_norm;   /* 0: no clipping */
    int have_hidden_sparsity;
    int64_t rehash_first, rehash_max;
    double rehash_growth;
    int rebuild_every;
    int have_rehash_first, have_rehash_max, have_rehash_growth, have_rebuild_every;
    int threads, have_threads;
    uint64_t seed;
    int have_seed;
    double init_std;
    int have_init_std;
    int dense;
    int lazy_adam;          /* --lazy-adam */
    int bf16_state;          /* --bf16-state given (or implied by --bf16-weights) */
    int bf16_weights;        /* --bf16-weights given */
    int random_pool, have_random_pool;
    int64_t eval_max;
    int64_t max_batches;
    int one_based, zero_based; /* --one-based, --zero-based (neither: 0, or the --resume model's) */
    int quiet, verbose;
    int64_t eval_every;      /* batches between evaluations within an epoch; 0: none */
    int64_t save_every;      /* steps between saves during training; 0: none by steps */
    double save_every_seconds; /* or seconds between them (--save-every 30m); 0: none */
    const char *save_every_text; /* --save-every as given (what --print-config prints) */
    const char *propensity;  /* --propensity "A,B" as given (then psp_a, psp_b), or NULL */
    double psp_a, psp_b;
    const char *config_path; /* --config */
    int print_config;
    config_argv config;      /* the options read from config_path (owns their text) */
    char **merged_argv;      /* the argv parsed when there is a config file (owned) */
} train_args;

/* Fills a from the command line; returns an exit code (EXIT_OK to go on, or -1 after
 * --help). */
int parse_train_args(int argc, char **argv, train_args *a);
/* The model configuration: the library's defaults, then the options given. */
spr_model_config train_model_config(const train_args *a, int64_t n_features, int64_t n_labels);
/* With --resume: a model option given must agree with the model's (usage error). */
int resume_conflicts(const train_args *a, const spr_model_config *cfg);
/* The effective options as a configuration object (NULL: out of memory). */
struct cJSON *train_config_json(const train_args *a);
/* --print-config: the effective options on stdout. */
int print_train_config(const train_args *a);
/* The outputs (--save, --metrics) must not name an input or each other. */
int check_output_paths(const train_args *a);

#endif

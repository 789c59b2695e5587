/*
 * sparrow.c: the command-line tool (gen, train, eval, predict, info), a client of the
 * public API in sparrow.h and nothing else.
 *
 * The tool turns library statuses into messages and exit codes:
 *   0  success
 *   2  usage errors (unknown option, missing or malformed value) and the library's
 *      SPR_STATUS_BAD_INPUT / SPR_STATUS_IO_ERROR (the message names file:line)
 *   1  SPR_STATUS_NO_MEMORY / SPR_STATUS_INTERNAL, and a training run that diverged
 *      (loss NaN or infinite; nothing is saved)
 *   130 / 143  train stopped by SIGINT / SIGTERM (128 + the signal, as a shell reports
 *      a process killed by it) after finishing the batch, reporting and saving
 * Machine-readable output (metrics JSON Lines, eval's last line, predict's lines) goes
 * to files or stdout; progress and the effective configuration go to stderr.
 */
#include "sparrow.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_INTERNAL = 1, EXIT_USAGE = 2, EXIT_SIGNAL_BASE = 128 };

/* The seed of the --eval-max subset. Independent of --seed on purpose: runs that differ
 * only in their seed (or dense vs sampled) are then judged on the same test points, and
 * `sparrow eval --eval-max N` picks the same points as `sparrow train --eval-max N`. */
#define EVAL_SUBSET_SEED 0x5eed5eedull

/* Points predicted per spr_model_predict call: bounds the (chunk, k) buffers whatever
 * the size of the input file. */
#define PREDICT_CHUNK 4096

/* ------------------------------------------------------------------ helpers */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "sparrow CMD: message" and returns the usage exit code. */
static int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "sparrow %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

/* A failed library call: its message (which names file:line) and the exit code for its
 * status. */
static int library_error(spr_status status) {
    const char *msg = spr_last_error();
    fprintf(stderr, "sparrow: %s\n", (msg && msg[0]) ? msg : spr_status_to_string(status));
    return (status == SPR_STATUS_BAD_INPUT || status == SPR_STATUS_IO_ERROR) ? EXIT_USAGE
                                                                             : EXIT_INTERNAL;
}

/* Strict integer parsing: the whole text must be a base-10 integer within [lo, hi]. */
static int parse_int64(const char *cmd, const char *opt, const char *text, int64_t lo,
                       int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        if (hi == INT64_MAX || hi == INT_MAX)
            return usage_error(cmd, "%s must be an integer >= %lld, got %s", opt,
                               (long long)lo, text);
        return usage_error(cmd, "%s must be an integer in [%lld, %lld], got %s", opt,
                           (long long)lo, (long long)hi, text);
    }
    *out = (int64_t)v;
    return EXIT_OK;
}

static int parse_int(const char *cmd, const char *opt, const char *text, int lo, int hi,
                     int *out) {
    int64_t v;
    int rc = parse_int64(cmd, opt, text, lo, hi, &v);
    if (rc == EXIT_OK) *out = (int)v;
    return rc;
}

static int parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    /* strtoull accepts "-1" and wraps it: refuse any sign. */
    if (end == text || *end != '\0' || errno == ERANGE || strchr(text, '-') ||
        strchr(text, '+'))
        return usage_error(cmd, "%s must be a non-negative integer, got %s", opt, text);
    *out = (uint64_t)v;
    return EXIT_OK;
}

/* A finite real number; the range check (and its message) is the caller's. */
static int parse_double(const char *cmd, const char *opt, const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v))
        return usage_error(cmd, "%s must be a number, got %s", opt, text);
    *out = v;
    return EXIT_OK;
}

/* mkdir -p: every missing component of path is created (mode 0777 & ~umask). */
static int make_dirs(const char *path) {
    size_t n = strlen(path);
    char *buf = malloc(n + 1);
    if (!buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char saved = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                free(buf);
                return -1;
            }
            buf[i] = saved;
        }
    }
    free(buf);
    struct stat st;
    return (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) ? 0 : -1;
}

/* Fails early (before hours of training) when the model could not be saved: the
 * directory of path must exist and be writable. The save itself stays atomic. */
static int check_save_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "sparrow: %s: cannot save there: directory %s is missing or not writable\n",
                path, dir);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* A small deterministic generator for the tool's own shuffles (the library's is
 * internal): splitmix64, which is plenty for permutations. */
typedef struct tool_rng {
    uint64_t state;
} tool_rng;

static uint64_t rng_next(tool_rng *r) {
    uint64_t x = (r->state += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform in [0, n), without modulo bias (Lemire's multiply-and-reject). */
static uint64_t rng_below(tool_rng *r, uint64_t n) {
    unsigned __int128 m = (unsigned __int128)rng_next(r) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (unsigned __int128)rng_next(r) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* rows[0..n) = a permutation of 0..n-1 that depends only on (seed, stream): Fisher-Yates
 * from the identity, so an epoch's order does not depend on the previous epochs. */
static void shuffle_rows(int64_t *rows, int64_t n, uint64_t seed, uint64_t stream) {
    tool_rng r = {seed ^ (0xD1B54A32D192ED03ull * (stream + 1))};
    rng_next(&r);
    for (int64_t i = 0; i < n; i++) rows[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
}

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The --eval-max subset: m of n points drawn uniformly without replacement (a partial
 * Fisher-Yates with EVAL_SUBSET_SEED), sorted for locality. *out is NULL when every point
 * is used (m <= 0 or m >= n); *count is the number of points evaluated. */
static int eval_subset(int64_t n, int64_t m, int64_t **out, int64_t *count) {
    *out = NULL;
    *count = n;
    if (m <= 0 || m >= n) return EXIT_OK;
    int64_t *all = malloc((size_t)n * sizeof *all);
    if (!all) {
        fprintf(stderr, "sparrow: out of memory for the evaluation subset\n");
        return EXIT_INTERNAL;
    }
    tool_rng r = {EVAL_SUBSET_SEED};
    for (int64_t i = 0; i < n; i++) all[i] = i;
    for (int64_t i = 0; i < m; i++) {
        int64_t j = i + (int64_t)rng_below(&r, (uint64_t)(n - i));
        int64_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    qsort(all, (size_t)m, sizeof *all, cmp_int64);
    *out = all; /* only the first m entries are used */
    *count = m;
    return EXIT_OK;
}

static int64_t max_labels_per_point(const spr_dataset_view *v) {
    int64_t best = 0;
    for (int64_t i = 0; i < v->n_points; i++) {
        int64_t c = v->label_indptr[i + 1] - v->label_indptr[i];
        if (c > best) best = c;
    }
    return best;
}

/* JSON has no NaN or infinity: those become null. */
static void json_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.10g", v);
    else fputs("null", f);
}

/* Parses the command's options with getopt_long. argv[0] is renamed "sparrow CMD" so
 * that getopt's own messages ("unrecognized option") name the command. */
#define OPT_HELP 'h'

static void prepare_getopt(char **argv, char *name_buf, size_t name_size, const char *cmd) {
    snprintf(name_buf, name_size, "sparrow %s", cmd);
    argv[0] = name_buf;
    optind = 0; /* glibc: a full re-initialisation */
    opterr = 1;
}

static int bad_option(const char *cmd) {
    fprintf(stderr, "sparrow %s: see 'sparrow %s --help'\n", cmd, cmd);
    return EXIT_USAGE;
}

static int stray_arguments(const char *cmd, int argc, char **argv) {
    if (optind < argc)
        return usage_error(cmd, "unexpected argument '%s' (see 'sparrow %s --help')",
                           argv[optind], cmd);
    return EXIT_OK;
}

/* ------------------------------------------------------------------ gen */

static const char GEN_HELP[] =
    "usage: sparrow gen --preset NAME --out DIR [--seed S] [--threads T]\n"
    "\n"
    "Writes a synthetic extreme-classification data set, DIR/train.txt and DIR/test.txt,\n"
    "in the Extreme Classification Repository format (header \"N D L\", then\n"
    "\"l1,l2 f:v f:v ...\" per point, 0-based ids). DIR is created if needed.\n"
    "\n"
    "  --preset NAME   tiny, small, amazon670k, delicious200k, wiki325k\n"
    "  --out DIR       output directory\n"
    "  --seed S        random seed (default 1); the same seed gives the same files\n"
    "  --threads T     worker threads (default 0: all cores); the output does not\n"
    "                  depend on it\n";

static int cmd_gen(int argc, char **argv) {
    const char *cmd = "gen";
    const char *preset = NULL, *out_dir = NULL;
    uint64_t seed = 1;
    int threads = 0;
    static const struct option opts[] = {
        {"preset", required_argument, 0, 'p'}, {"out", required_argument, 0, 'o'},
        {"seed", required_argument, 0, 's'},   {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, OPT_HELP},    {0, 0, 0, 0}};
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': preset = optarg; break;
        case 'o': out_dir = optarg; break;
        case 's':
            if ((rc = parse_u64(cmd, "--seed", optarg, &seed))) return rc;
            break;
        case 't':
            if ((rc = parse_int(cmd, "--threads", optarg, 0, INT_MAX, &threads))) return rc;
            break;
        case OPT_HELP: fputs(GEN_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!preset) return usage_error(cmd, "--preset is required (see 'sparrow gen --help')");
    if (!out_dir) return usage_error(cmd, "--out is required (see 'sparrow gen --help')");

    spr_synth_config config;
    spr_status st = spr_synth_preset(preset, &config);
    if (st != SPR_STATUS_OK) return library_error(st);
    if (make_dirs(out_dir) != 0) {
        fprintf(stderr, "sparrow: %s: cannot create directory: %s\n", out_dir,
                strerror(errno));
        return EXIT_USAGE;
    }
    size_t len = strlen(out_dir) + 16;
    char *train_path = malloc(len), *test_path = malloc(len);
    if (!train_path || !test_path) {
        free(train_path);
        free(test_path);
        fprintf(stderr, "sparrow: out of memory\n");
        return EXIT_INTERNAL;
    }
    snprintf(train_path, len, "%s/train.txt", out_dir);
    snprintf(test_path, len, "%s/test.txt", out_dir);

    double t0 = now_seconds();
    st = spr_synth_generate(&config, seed, train_path, test_path, threads);
    double seconds = now_seconds() - t0;
    if (st != SPR_STATUS_OK) {
        rc = library_error(st);
    } else {
        printf("wrote %s (%lld points) and %s (%lld points): preset %s, %lld features, "
               "%lld labels, seed %llu, %.2f s\n",
               train_path, (long long)config.n_train, test_path, (long long)config.n_test,
               config.name, (long long)config.n_features, (long long)config.n_labels,
               (unsigned long long)seed, seconds);
        rc = EXIT_OK;
    }
    free(train_path);
    free(test_path);
    return rc;
}

/* ------------------------------------------------------------------ train */

static const char TRAIN_HELP[] =
    "usage: sparrow train --train FILE [options]\n"
    "\n"
    "Trains a model: sparse input -> hidden ReLU layer(s) (dense) -> softmax output layer\n"
    "sampled with LSH. Defaults not listed here come from the library\n"
    "(spr_model_config_default, spr_train_options_default); the effective configuration\n"
    "is printed on stderr at the start.\n"
    "\n"
    "data\n"
    "  --train FILE          training set (XMC format with header, or svmlight)\n"
    "  --test FILE           test set, evaluated after every epoch (exact inference)\n"
    "  --one-based           feature ids in the files start at 1 (svmlight convention)\n"
    "  --eval-max N          evaluate on N test points drawn uniformly at random without\n"
    "                        replacement with a fixed seed: the same subset every epoch\n"
    "                        (and the same as 'sparrow eval --eval-max N'); default: all\n"
    "model\n"
    "  --hidden N[,N...]     hidden layer sizes, e.g. 128 or 256,128 (default 128)\n"
    "  --sparsity F          fraction of output neurons active per sample, in (0, 1]\n"
    "  --hash NAME           output layer hash family: dwta, simhash, wta, doph\n"
    "  --tables L            hash tables of the output layer\n"
    "  --bits K              codes per table key (0: chosen from sparsity and L)\n"
    "  --bucket-capacity C   neurons kept per bucket\n"
    "  --bucket-policy P     fifo (a full bucket keeps the newest) or reservoir (a\n"
    "                        uniform sample)\n"
    "  --select S            topk: the target count of candidates most tables agree\n"
    "                        on (default); union: every candidate (SLIDE); threshold:\n"
    "                        candidates returned by >= --threshold M tables\n"
    "  --threshold M         tables that must return a neuron (--select threshold)\n"
    "  --random-fraction F   share of the active set kept for random neurons (topk,\n"
    "                        threshold), in [0, 1]\n"
    "  --hidden-sparsity F   sample the hidden layers after the first too (same hash\n"
    "                        options as the output layer); default 1 (dense)\n"
    "  --seed S              seed of weights, hashes, sampling and the epoch shuffles\n"
    "training\n"
    "  --resume MODEL        continue the run that saved MODEL where it stopped: the\n"
    "                        model options above come from MODEL (giving one that\n"
    "                        differs is an error); --train, --batch, --lr, --threads,\n"
    "                        --dense and the --rehash-* options must be those of the\n"
    "                        first run for an exact continuation (with --threads 1 the\n"
    "                        result is then bit for bit that of an uninterrupted run)\n"
    "  --epochs N            passes over the training set (default 1); with --resume\n"
    "                        the total, counting the epochs MODEL has done\n"
    "  --batch B             samples per optimizer step\n"
    "  --lr X                Adam learning rate\n"
    "  --dense               compute every output neuron (the exact reference)\n"
    "  --max-batches N       stop after N batches in total (benchmarks), then evaluate\n"
    "  --threads T           worker threads (0: all cores)\n"
    "  --rehash-first N      batches before the first rehash of the tables\n"
    "  --rehash-growth G     the t-th gap between rehashes is N x exp(G t) batches\n"
    "  --rehash-max M        longest gap between rehashes, in batches\n"
    "  --rebuild-every R     draw new hash functions at every R-th rehash (0: never)\n"
    "output\n"
    "  --save MODEL          save the model at the end (atomically; nothing on failure)\n"
    "  --metrics FILE        JSON Lines, one object per evaluation (the file is\n"
    "                        truncated at start): epoch, step, train_seconds,\n"
    "                        samples_per_second, loss, p_at_1, p_at_3, p_at_5,\n"
    "                        active_out, eval_points, eval_seconds, partial_epoch\n"
    "  --quiet               no progress lines on stderr\n"
    "  --verbose             also print the library's log lines (rehashes)\n"
    "\n"
"Each epoch visits the training rows in a shuffled order that depends only on the\n"
    "seed and the epoch number. train_seconds counts training only (no evaluation, no\n"
    "I/O). stdout gets a one-line summary at the end.\n"
    "\n"
    "SIGINT (Ctrl-C) or SIGTERM: the current batch is finished, the model evaluated and\n"
    "reported as after --max-batches, saved if --save was given (continue it with\n"
    "--resume), and sparrow exits with 130 (SIGINT) or 143 (SIGTERM); a second signal\n"
    "ends it at once. A loss that becomes NaN or infinite stops training before the\n"
    "step that would apply it: nothing is saved (an existing MODEL is left as it was)\n"
    "and the exit status is 1; try a lower --lr.\n";

typedef struct train_args {
    const char *train_path, *test_path, *save_path, *metrics_path, *resume_path;
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
    int have_hidden_sparsity;
    int64_t rehash_first, rehash_max;
    double rehash_growth;
    int rebuild_every;
    int have_rehash_first, have_rehash_max, have_rehash_growth, have_rebuild_every;
    int threads, have_threads;
    uint64_t seed;
    int have_seed;
    int dense;
    int64_t eval_max;
    int64_t max_batches;
    int one_based;
    int quiet, verbose;
} train_args;

/* "256,128" -> hidden sizes; at most SPR_MAX_LAYERS - 1 of them. */
static int parse_hidden(const char *cmd, const char *text, train_args *a) {
    a->n_hidden = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char piece[32];
        if (len == 0 || len >= sizeof piece || a->n_hidden >= SPR_MAX_LAYERS - 1)
            return usage_error(cmd,
                               "--hidden must be 1 to %d positive integers separated by "
                               "commas, got %s",
                               SPR_MAX_LAYERS - 1, text);
        memcpy(piece, p, len);
        piece[len] = '\0';
        char *end = NULL;
        errno = 0;
        long long v = strtoll(piece, &end, 10);
        if (end == piece || *end != '\0' || errno == ERANGE || v < 1)
            return usage_error(cmd,
                               "--hidden must be 1 to %d positive integers separated by "
                               "commas, got %s",
                               SPR_MAX_LAYERS - 1, text);
        a->hidden[a->n_hidden++] = (int64_t)v;
        if (!comma) break;
        p = comma + 1;
    }
    return EXIT_OK;
}

enum {
    T_TRAIN = 256, T_TEST, T_HIDDEN, T_EPOCHS, T_BATCH, T_LR, T_SPARSITY, T_HASH, T_TABLES,
    T_BITS, T_BUCKET, T_THREADS, T_SEED, T_DENSE, T_SAVE, T_METRICS, T_EVAL_MAX,
    T_MAX_BATCHES, T_ONE_BASED, T_QUIET, T_VERBOSE, T_POLICY, T_SELECT, T_THRESHOLD,
    T_HIDDEN_SPARSITY, T_REHASH_FIRST, T_REHASH_GROWTH, T_REHASH_MAX, T_REBUILD, T_RANDOM_FRACTION,
    T_RESUME
};

/* Fills a from the command line; returns an exit code (EXIT_OK to go on, or -1 after
 * --help). */
static int parse_train_args(int argc, char **argv, train_args *a) {
    const char *cmd = "train";
    static const struct option opts[] = {
        {"train", required_argument, 0, T_TRAIN},
        {"test", required_argument, 0, T_TEST},
        {"hidden", required_argument, 0, T_HIDDEN},
        {"epochs", required_argument, 0, T_EPOCHS},
        {"batch", required_argument, 0, T_BATCH},
        {"lr", required_argument, 0, T_LR},
        {"sparsity", required_argument, 0, T_SPARSITY},
        {"hash", required_argument, 0, T_HASH},
        {"tables", required_argument, 0, T_TABLES},
        {"bits", required_argument, 0, T_BITS},
        {"bucket-capacity", required_argument, 0, T_BUCKET},
        {"threads", required_argument, 0, T_THREADS},
        {"seed", required_argument, 0, T_SEED},
        {"dense", no_argument, 0, T_DENSE},
        {"save", required_argument, 0, T_SAVE},
        {"metrics", required_argument, 0, T_METRICS},
        {"eval-max", required_argument, 0, T_EVAL_MAX},
        {"max-batches", required_argument, 0, T_MAX_BATCHES},
        {"one-based", no_argument, 0, T_ONE_BASED},
        {"quiet", no_argument, 0, T_QUIET},
        {"verbose", no_argument, 0, T_VERBOSE},
        {"bucket-policy", required_argument, 0, T_POLICY},
        {"select", required_argument, 0, T_SELECT},
        {"threshold", required_argument, 0, T_THRESHOLD},
        {"hidden-sparsity", required_argument, 0, T_HIDDEN_SPARSITY},
        {"random-fraction", required_argument, 0, T_RANDOM_FRACTION},
        {"rehash-first", required_argument, 0, T_REHASH_FIRST},
        {"rehash-growth", required_argument, 0, T_REHASH_GROWTH},
        {"rehash-max", required_argument, 0, T_REHASH_MAX},
        {"rebuild-every", required_argument, 0, T_REBUILD},
        {"resume", required_argument, 0, T_RESUME},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->epochs = 1;
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc = EXIT_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case T_TRAIN: a->train_path = optarg; break;
        case T_TEST: a->test_path = optarg; break;
        case T_SAVE: a->save_path = optarg; break;
        case T_RESUME: a->resume_path = optarg; break;
        case T_METRICS: a->metrics_path = optarg; break;
        case T_HIDDEN: rc = parse_hidden(cmd, optarg, a); break;
        case T_EPOCHS: rc = parse_int64(cmd, "--epochs", optarg, 1, INT64_MAX, &a->epochs); break;
        case T_BATCH:
            rc = parse_int(cmd, "--batch", optarg, 1, INT_MAX, &a->batch);
            a->have_batch = 1;
            break;
        case T_LR:
            if ((rc = parse_double(cmd, "--lr", optarg, &a->lr))) break;
            if (!(a->lr > 0)) rc = usage_error(cmd, "--lr must be > 0, got %s", optarg);
            a->have_lr = 1;
            break;
        case T_SPARSITY:
            if ((rc = parse_double(cmd, "--sparsity", optarg, &a->sparsity))) break;
            if (!(a->sparsity > 0 && a->sparsity <= 1))
                rc = usage_error(cmd, "--sparsity must be in (0, 1], got %s", optarg);
            a->have_sparsity = 1;
            break;
        case T_HASH:
            if (spr_hash_family_parse(optarg, &a->hash) != SPR_STATUS_OK)
                rc = usage_error(cmd, "--hash must be dwta, simhash, wta or doph, got %s",
                                 optarg);
            a->have_hash = 1;
            break;
        case T_TABLES:
            rc = parse_int(cmd, "--tables", optarg, 1, INT_MAX, &a->tables);
            a->have_tables = 1;
            break;
        case T_BITS:
            rc = parse_int(cmd, "--bits", optarg, 0, 64, &a->bits);
            a->have_bits = 1;
            break;
        case T_BUCKET:
            rc = parse_int(cmd, "--bucket-capacity", optarg, 1, INT_MAX, &a->bucket_capacity);
            a->have_bucket_capacity = 1;
            break;
        case T_THREADS:
            rc = parse_int(cmd, "--threads", optarg, 0, INT_MAX, &a->threads);
            a->have_threads = 1;
            break;
        case T_SEED:
            rc = parse_u64(cmd, "--seed", optarg, &a->seed);
            a->have_seed = 1;
            break;
        case T_EVAL_MAX: rc = parse_int64(cmd, "--eval-max", optarg, 1, INT64_MAX, &a->eval_max); break;
        case T_MAX_BATCHES:
            rc = parse_int64(cmd, "--max-batches", optarg, 1, INT64_MAX, &a->max_batches);
            break;
        case T_DENSE: a->dense = 1; break;
        case T_ONE_BASED: a->one_based = 1; break;
        case T_QUIET: a->quiet = 1; break;
        case T_VERBOSE: a->verbose = 1; break;
        case T_POLICY:
            if (strcmp(optarg, "fifo") == 0) a->bucket_policy = SPR_BUCKET_FIFO;
            else if (strcmp(optarg, "reservoir") == 0) a->bucket_policy = SPR_BUCKET_RESERVOIR;
            else rc = usage_error(cmd, "--bucket-policy must be fifo or reservoir, got %s", optarg);
            a->have_bucket_policy = 1;
            break;
        case T_SELECT:
            if (spr_select_parse(optarg, &a->select) != SPR_STATUS_OK)
                rc = usage_error(cmd, "--select must be topk, union or threshold, got %s", optarg);
            a->have_select = 1;
            break;
        case T_HIDDEN_SPARSITY:
            if ((rc = parse_double(cmd, "--hidden-sparsity", optarg, &a->hidden_sparsity))) break;
            if (!(a->hidden_sparsity > 0 && a->hidden_sparsity <= 1))
                rc = usage_error(cmd, "--hidden-sparsity must be in (0, 1], got %s", optarg);
            a->have_hidden_sparsity = 1;
            break;
        case T_RANDOM_FRACTION:
            if ((rc = parse_double(cmd, "--random-fraction", optarg, &a->random_fraction))) break;
            if (!(a->random_fraction >= 0 && a->random_fraction <= 1))
                rc = usage_error(cmd, "--random-fraction must be in [0, 1], got %s", optarg);
            a->have_random_fraction = 1;
            break;
        case T_REHASH_FIRST:
            rc = parse_int64(cmd, "--rehash-first", optarg, 1, INT64_MAX, &a->rehash_first);
            a->have_rehash_first = 1;
            break;
        case T_REHASH_MAX:
            rc = parse_int64(cmd, "--rehash-max", optarg, 1, INT64_MAX, &a->rehash_max);
            a->have_rehash_max = 1;
            break;
        case T_REHASH_GROWTH:
            if ((rc = parse_double(cmd, "--rehash-growth", optarg, &a->rehash_growth))) break;
            if (!(a->rehash_growth >= 0 && a->rehash_growth <= 10))
                rc = usage_error(cmd, "--rehash-growth must be in [0, 10], got %s", optarg);
            a->have_rehash_growth = 1;
            break;
        case T_REBUILD:
            rc = parse_int(cmd, "--rebuild-every", optarg, 0, INT_MAX, &a->rebuild_every);
            a->have_rebuild_every = 1;
            break;
        case T_THRESHOLD:
            rc = parse_int(cmd, "--threshold", optarg, 1, 1024, &a->threshold);
            a->have_threshold = 1;
            break;
        case OPT_HELP: fputs(TRAIN_HELP, stdout); return -1;
        default: return bad_option(cmd);
        }
        if (rc) return rc;
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!a->train_path)
        return usage_error(cmd, "--train is required (see 'sparrow train --help')");
    return EXIT_OK;
}

/* The model configuration: the library's defaults, then the options given. The hidden
 * layers copy the default hidden layer (dense); the sampling options apply to the
 * output layer. */
static spr_model_config train_model_config(const train_args *a, int64_t n_features,
                                           int64_t n_labels) {
    spr_model_config cfg = spr_model_config_default(n_features, n_labels);
    if (a->n_hidden > 0) {
        spr_layer_config hidden = cfg.layers[0];
        spr_layer_config output = cfg.layers[cfg.n_layers - 1];
        cfg.n_layers = a->n_hidden + 1;
        for (int i = 0; i < a->n_hidden; i++) {
            cfg.layers[i] = hidden;
            cfg.layers[i].size = a->hidden[i];
        }
        cfg.layers[a->n_hidden] = output;
    }
    spr_layer_config *out = &cfg.layers[cfg.n_layers - 1];
    out->size = n_labels;
    if (a->have_sparsity) out->sparsity = (float)a->sparsity;
    if (a->have_hash) out->hash = a->hash;
    if (a->have_tables) out->hash_l = a->tables;
    if (a->have_bits) out->hash_k = a->bits;
    if (a->have_bucket_capacity) out->bucket_capacity = a->bucket_capacity;
    if (a->have_bucket_policy) out->bucket_policy = a->bucket_policy;
    if (a->have_select) out->select = a->select;
    if (a->have_threshold) out->select_threshold = a->threshold;
    if (a->have_random_fraction) out->random_fraction = (float)a->random_fraction;
    /* Hidden layers after the first share the output layer's sampling options. */
    if (a->have_hidden_sparsity)
        for (int i = 1; i < cfg.n_layers - 1; i++) {
            int64_t size = cfg.layers[i].size;
            cfg.layers[i] = *out;
            cfg.layers[i].size = size;
            cfg.layers[i].sparsity = (float)a->hidden_sparsity;
        }
    if (a->have_seed) cfg.seed = a->seed;
    return cfg;
}

/* With --resume the model options come from the model: one given on the command line
 * must agree with it, or the run would silently not be what the user asked for. */
static int resume_conflicts(const train_args *a, const spr_model_config *cfg) {
    const char *cmd = "train";
    const spr_layer_config *out = &cfg->layers[cfg->n_layers - 1];
    int hidden_differs = 0;
    if (a->n_hidden > 0) {
        hidden_differs = a->n_hidden != cfg->n_layers - 1;
        for (int i = 0; i < a->n_hidden && !hidden_differs; i++)
            hidden_differs = a->hidden[i] != cfg->layers[i].size;
    }
    int hidden_sparsity_differs = 0;
    for (int i = 1; a->have_hidden_sparsity && i < cfg->n_layers - 1; i++)
        hidden_sparsity_differs |= cfg->layers[i].sparsity != (float)a->hidden_sparsity;
    const struct {
        int differs;
        const char *option;
    } checks[] = {
        {hidden_differs, "--hidden"},
        {a->have_sparsity && out->sparsity != (float)a->sparsity, "--sparsity"},
        {a->have_hash && out->hash != a->hash, "--hash"},
        {a->have_tables && out->hash_l != a->tables, "--tables"},
        {a->have_bits && out->hash_k != a->bits, "--bits"},
        {a->have_bucket_capacity && out->bucket_capacity != a->bucket_capacity, "--bucket-capacity"},
        {a->have_bucket_policy && out->bucket_policy != a->bucket_policy, "--bucket-policy"},
        {a->have_select && out->select != a->select, "--select"},
        {a->have_threshold && out->select_threshold != a->threshold, "--threshold"},
        {a->have_random_fraction && out->random_fraction != (float)a->random_fraction, "--random-fraction"},
        {hidden_sparsity_differs, "--hidden-sparsity"},
        {a->have_seed && cfg->seed != a->seed, "--seed"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (checks[i].differs)
            return usage_error(cmd,
                               "%s differs from the model in %s: --resume takes the model options "
                               "from the model (leave %s out)",
                               checks[i].option, a->resume_path, checks[i].option);
    return EXIT_OK;
}

/* The first SIGINT or SIGTERM asks the training loop to stop after its batch (and to
 * report and save as after --max-batches); a second one ends the process at once, by
 * the signal's default action. Only async-signal-safe calls here. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* metrics and model writes go on undisturbed */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void log_to_stderr(void *user, const char *message) {
    (void)user;
    fprintf(stderr, "  [sparrow] %s\n", message);
}

static void print_layers(FILE *f, const spr_model_config *cfg, const spr_model_info *info) {
    fprintf(f, "  model: %lld features", (long long)cfg->n_features);
    for (int i = 0; i < cfg->n_layers; i++)
        fprintf(f, " -> %lld %s", (long long)cfg->layers[i].size,
                i == cfg->n_layers - 1 ? "softmax" : "relu");
    fprintf(f, ", init_std %g, seed %llu\n", cfg->init_std, (unsigned long long)cfg->seed);
    for (int i = 1; i < cfg->n_layers; i++) {
        const spr_layer_config *l = &cfg->layers[i];
        if (l->sparsity >= 1.0f) continue;
        fprintf(f,
                "  layer %d sampled: sparsity %g, hash %s, K %d (effective %d), L %d, key "
                "bits %d, bucket capacity %d %s, select %s",
                i, l->sparsity, spr_hash_family_to_string(l->hash), l->hash_k,
                info ? info->hash_k[i] : 0, l->hash_l, info ? info->key_bits[i] : 0,
                l->bucket_capacity, l->bucket_policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir",
                spr_select_to_string(l->select));
        if (l->select == SPR_SELECT_THRESHOLD) fprintf(f, " >= %d tables", l->select_threshold);
        fputc('\n', f);
    }
}

/* Running sums between two evaluations (or two progress lines). */
typedef struct window {
    double loss_sum;   /* sum over batches of loss x samples */
    double active_sum; /* sum over batches of active output neurons x samples */
    double rehash_seconds; /* time spent rehashing the tables (inside train_seconds) */
    int64_t samples;
} window;

static void window_add(window *w, const spr_batch_stats *s, int last_layer, int64_t n) {
    w->loss_sum += s->loss * (double)n;
    w->active_sum += s->active[last_layer] * (double)n;
    w->rehash_seconds += s->rehash_seconds;
    w->samples += n;
}

typedef struct train_state {
    const train_args *args;
    spr_model *model;
    const spr_dataset *test;
    const int64_t *eval_rows; /* (eval_n) or NULL for the whole test set */
    int64_t eval_n;
    FILE *metrics;
    double train_seconds;
    int64_t samples;
    int last_layer;
    int threads;
    uint64_t seed;            /* of the epoch shuffles: the model's seed */
    int64_t first_epoch;      /* 1, or the epoch a resumed run continues */
    int64_t skip_batches;     /* batches of first_epoch done before the resume */
    spr_eval_result last; /* the last evaluation */
    int have_last;
} train_state;

/* Evaluates (if there is a test set), prints a line on stderr and appends a metrics
 * line. Not counted in train_seconds. */
static int train_report(train_state *s, int64_t epoch, int partial, window *w) {
    spr_eval_result res;
    memset(&res, 0, sizeof res);
    double eval_seconds = 0;
    if (s->test) {
        double t0 = now_seconds();
        spr_status st = spr_model_evaluate(s->model, s->test, s->eval_rows, s->eval_n, 0,
                                           s->threads, &res);
        eval_seconds = now_seconds() - t0;
        if (st != SPR_STATUS_OK) return library_error(st);
        s->last = res;
        s->have_last = 1;
    }
    spr_model_info info = spr_model_get_info(s->model);
    double loss = w->samples ? w->loss_sum / (double)w->samples : NAN;
    double active = w->samples ? w->active_sum / (double)w->samples : NAN;
    double sps = s->train_seconds > 0 ? (double)s->samples / s->train_seconds : 0;
    fprintf(stderr, "epoch %lld%s: step %lld, loss %.4f, %.0f samples/s, train %.2f s, "
                    "active out %.1f",
            (long long)epoch, partial ? " (partial)" : "", (long long)info.steps, loss, sps,
            s->train_seconds, active);
    if (s->test)
        fprintf(stderr, ", P@1 %.4f P@3 %.4f P@5 %.4f on %lld points (%.2f s)\n",
                res.p_at[1], res.p_at[3], res.p_at[5], (long long)s->eval_n, eval_seconds);
    else
        fputc('\n', stderr);

    if (s->metrics) {
        FILE *f = s->metrics;
        /* samples: the model's count, so that a resumed run says what an uninterrupted
         * one would (train_seconds and samples_per_second are this process's). */
        fprintf(f, "{\"epoch\": %lld, \"partial_epoch\": %s, \"step\": %lld, \"samples\": %lld, "
                   "\"train_seconds\": ",
                (long long)epoch, partial ? "true" : "false", (long long)info.steps,
                (long long)info.samples);
        json_number(f, s->train_seconds);
        fputs(", \"samples_per_second\": ", f);
        json_number(f, sps);
        fputs(", \"loss\": ", f);
        json_number(f, loss);
        static const int ks[3] = {1, 3, 5};
        for (int i = 0; i < 3; i++) {
            fprintf(f, ", \"p_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.p_at[ks[i]]);
            else fputs("null", f);
        }
        fputs(", \"active_out\": ", f);
        json_number(f, active);
        fputs(", \"rehash_seconds\": ", f);
        json_number(f, w->rehash_seconds);
        fprintf(f, ", \"eval_points\": %lld, \"eval_seconds\": ",
                (long long)(s->test ? s->eval_n : 0));
        json_number(f, eval_seconds);
        fputs(", \"inference\": \"exact\"}\n", f);
        if (fflush(f) != 0 || ferror(f)) {
            fprintf(stderr, "sparrow: %s: write failed: %s\n", s->args->metrics_path,
                    strerror(errno));
            return EXIT_USAGE;
        }
    }
    memset(w, 0, sizeof *w);
    return EXIT_OK;
}

/* The training loop: epochs of shuffled batches, an evaluation after each epoch and
 * after an early stop (--max-batches or a signal). A resumed run starts in
 * s->first_epoch after the s->skip_batches batches already done: the epoch's order
 * depends only on (seed, epoch), so those are exactly the batches it skips. */
static int train_loop(train_state *s, const spr_dataset *train, const spr_train_options *topt,
                      int64_t *rows) {
    const train_args *a = s->args;
    spr_dataset_view v = spr_dataset_get_view(train);
    int64_t n = v.n_points, bsz = topt->batch_size;
    int64_t per_epoch = (n + bsz - 1) / bsz;
    int64_t batches_done = 0;
    window since_eval = {0}, since_print = {0};
    double last_print = now_seconds();
    int rc;

    for (int64_t epoch = s->first_epoch; epoch <= a->epochs; epoch++) {
        double t_start = now_seconds();
        shuffle_rows(rows, n, s->seed, (uint64_t)epoch);
        int64_t b = epoch == s->first_epoch ? s->skip_batches : 0;
        for (; b < per_epoch; b++) {
            if (a->max_batches > 0 && batches_done >= a->max_batches) break;
            if (stop_signal) break;
            int64_t start = b * bsz;
            int64_t count = (start + bsz <= n) ? bsz : n - start;
            spr_batch_stats stats;
            memset(&stats, 0, sizeof stats);
            spr_status st = spr_model_train_batch(s->model, train, rows + start, count, topt,
                                                  &stats);
            if (st != SPR_STATUS_OK && !isfinite(stats.loss)) {
                /* Diverged: the library stopped before the step, but the weights that
                 * produced a NaN are not worth keeping over an earlier good model. */
                fprintf(stderr, "sparrow: %s; the model was not saved%s%s%s\n", spr_last_error(),
                        a->save_path ? " (" : "", a->save_path ? a->save_path : "",
                        a->save_path ? " is left as it was)" : "");
                return EXIT_INTERNAL;
            }
            if (st != SPR_STATUS_OK) return library_error(st);
            batches_done++;
            s->samples += count;
            window_add(&since_eval, &stats, s->last_layer, count);
            window_add(&since_print, &stats, s->last_layer, count);
            if (!a->quiet) {
                double t = now_seconds();
                if (t - last_print >= 2.0) {
                    double so_far = s->train_seconds + (t - t_start);
                    fprintf(stderr, "epoch %lld/%lld batch %lld/%lld: %.0f samples/s, loss %.4f\n",
                            (long long)epoch, (long long)a->epochs, (long long)(b + 1),
                            (long long)per_epoch,
                            so_far > 0 ? (double)s->samples / so_far : 0.0,
                            since_print.loss_sum / (double)since_print.samples);
                    memset(&since_print, 0, sizeof since_print);
                    last_print = t;
                }
            }
        }
        s->train_seconds += now_seconds() - t_start;
        int complete = (b == per_epoch);
        if (complete) spr_model_set_epoch(s->model, epoch);
        if ((rc = train_report(s, epoch, !complete, &since_eval))) return rc;
        if (a->max_batches > 0 && batches_done >= a->max_batches) break;
        if (stop_signal) break;
    }
    return EXIT_OK;
}

static int cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_train_args(argc, argv, &a);
    if (rc == -1) return EXIT_OK;
    if (rc) return rc;

    spr_dataset *train = NULL, *test = NULL;
    spr_model *model = NULL;
    int64_t *rows = NULL, *eval_rows = NULL;
    FILE *metrics = NULL;
    spr_status st;

    if (a.save_path && (rc = check_save_dir(a.save_path))) goto done;
    spr_model_config cfg;
    if (a.resume_path) {
        /* Loaded first: a wrong file or option fails before the data is read. */
        if ((st = spr_model_load(a.resume_path, &model)) != SPR_STATUS_OK) {
            rc = library_error(st);
            goto done;
        }
        cfg = spr_model_get_config(model);
        if ((rc = resume_conflicts(&a, &cfg))) goto done;
    }
    spr_read_options ropt = spr_read_options_default();
    ropt.one_based = a.one_based;
    double t0 = now_seconds();
    if ((st = spr_dataset_read(a.train_path, &ropt, &train)) != SPR_STATUS_OK) {
        rc = library_error(st);
        goto done;
    }
    spr_dataset_view tv = spr_dataset_get_view(train);
    if (tv.n_points == 0) {
        fprintf(stderr, "sparrow: %s: no training points\n", a.train_path);
        rc = EXIT_USAGE;
        goto done;
    }
    int64_t model_labels = model ? cfg.layers[cfg.n_layers - 1].size : tv.n_labels;
    if (model && (tv.n_features > cfg.n_features || tv.n_labels > model_labels)) {
        fprintf(stderr, "sparrow: %s: %lld features and %lld labels, more than the %lld and %lld of %s "
                        "(resume with the training set of the first run)\n",
                a.train_path, (long long)tv.n_features, (long long)tv.n_labels,
                (long long)cfg.n_features, (long long)model_labels, a.resume_path);
        rc = EXIT_USAGE;
        goto done;
    }
    if (a.test_path) {
        /* The model's sizes come from the training set (or the resumed model): test ids
         * are checked against them. */
        ropt.n_features = model ? cfg.n_features : tv.n_features;
        ropt.n_labels = model_labels;
        if ((st = spr_dataset_read(a.test_path, &ropt, &test)) != SPR_STATUS_OK) {
            rc = library_error(st);
            goto done;
        }
    }
    double read_seconds = now_seconds() - t0;

    if (!model) {
        cfg = train_model_config(&a, tv.n_features, tv.n_labels);
        if ((st = spr_model_config_check(&cfg)) != SPR_STATUS_OK) {
            rc = library_error(st);
            goto done;
        }
    }
    spr_train_options topt = spr_train_options_default();
    if (a.have_batch) topt.batch_size = a.batch;
    if (a.have_lr) topt.lr = (float)a.lr;
    if (a.have_threads) topt.threads = a.threads;
    topt.dense = a.dense;
    if (a.have_rehash_first) topt.rehash_first = a.rehash_first;
    if (a.have_rehash_growth) topt.rehash_growth = (float)a.rehash_growth;
    if (a.have_rehash_max) topt.rehash_max = a.rehash_max;
    if (a.have_rebuild_every) topt.rebuild_every = a.rebuild_every;

    /* Where a resumed run continues: after info.epoch complete epochs and the batches
     * of the next one that the step count says were done. The count must fit the batch
     * size, or this is not the run that saved the model. */
    int64_t first_epoch = 1, skip_batches = 0;
    if (model) {
        spr_model_info mi = spr_model_get_info(model);
        int64_t per_epoch = (tv.n_points + topt.batch_size - 1) / topt.batch_size;
        first_epoch = mi.epoch + 1;
        skip_batches = mi.epoch > mi.steps / per_epoch ? -1 : mi.steps - mi.epoch * per_epoch;
        if (skip_batches < 0 || skip_batches >= per_epoch) {
            fprintf(stderr,
                    "sparrow: %s: %lld steps after %lld complete epochs do not fit %lld batches "
                    "per epoch (%lld points, --batch %d): resume with the --train and --batch of "
                    "the first run\n",
                    a.resume_path, (long long)mi.steps, (long long)mi.epoch, (long long)per_epoch,
                    (long long)tv.n_points, topt.batch_size);
            rc = EXIT_USAGE;
            goto done;
        }
        if (mi.epoch >= a.epochs) {
            fprintf(stderr,
                    "sparrow: %s has completed %lld epochs, --epochs is %lld: nothing to train "
                    "(--epochs counts the epochs of the first run too)\n",
                    a.resume_path, (long long)mi.epoch, (long long)a.epochs);
            rc = EXIT_OK;
            goto done;
        }
    }
    if (a.metrics_path && !(metrics = fopen(a.metrics_path, "w"))) {
        fprintf(stderr, "sparrow: %s: cannot open for writing: %s\n", a.metrics_path,
                strerror(errno));
        rc = EXIT_USAGE;
        goto done;
    }
    if (!model && (st = spr_model_create(&cfg, &model)) != SPR_STATUS_OK) {
        rc = library_error(st);
        goto done;
    }
    if (a.verbose) spr_model_set_logger(model, log_to_stderr, NULL);
    if ((st = spr_model_prepare(model, &topt, max_labels_per_point(&tv))) != SPR_STATUS_OK) {
        rc = library_error(st);
        goto done;
    }

    spr_model_info info = spr_model_get_info(model);
    fprintf(stderr, "sparrow train: %s: %lld points, %lld features, %lld labels",
            a.train_path, (long long)tv.n_points, (long long)tv.n_features,
            (long long)tv.n_labels);
    if (test)
        fprintf(stderr, "; %s: %lld points", a.test_path,
                (long long)spr_dataset_get_view(test).n_points);
    fprintf(stderr, " (read in %.2f s)\n", read_seconds);
    print_layers(stderr, &cfg, &info);
    fprintf(stderr,
            "  training: %s, epochs %lld, batch %d, lr %g, adam (%g, %g, %g), threads %d%s, "
            "rehash first %lld growth %g max %lld, rebuild every %d\n",
            topt.dense ? "dense" : "sampled", (long long)a.epochs, topt.batch_size, topt.lr,
            topt.beta1, topt.beta2, topt.eps, topt.threads,
            topt.threads <= 0 ? " (all cores)" : "", (long long)topt.rehash_first,
            topt.rehash_growth, (long long)topt.rehash_max, topt.rebuild_every);
    fprintf(stderr, "  parameters %lld (%.1f MB with optimizer state), tables %.1f MB\n",
            (long long)info.parameters, (double)info.parameter_bytes / 1e6,
            (double)info.table_bytes / 1e6);
    if (a.max_batches > 0) fprintf(stderr, "  stopping after %lld batches\n", (long long)a.max_batches);
    if (a.resume_path)
        fprintf(stderr, "  resuming %s: step %lld, epoch %lld at batch %lld\n", a.resume_path,
                (long long)info.steps, (long long)first_epoch, (long long)skip_batches + 1);

    train_state s;
    memset(&s, 0, sizeof s);
    s.args = &a;
    s.model = model;
    s.test = test;
    s.metrics = metrics;
    s.last_layer = cfg.n_layers - 1;
    s.threads = topt.threads;
    s.seed = cfg.seed;
    s.first_epoch = first_epoch;
    s.skip_batches = skip_batches;
    if (test) {
        if ((rc = eval_subset(spr_dataset_get_view(test).n_points, a.eval_max, &eval_rows,
                              &s.eval_n)))
            goto done;
        s.eval_rows = eval_rows;
        if (eval_rows)
            fprintf(stderr, "  evaluating on %lld test points drawn at random (fixed seed)\n",
                    (long long)s.eval_n);
    }
    rows = malloc((size_t)tv.n_points * sizeof *rows);
    if (!rows) {
        fprintf(stderr, "sparrow: out of memory for %lld row ids\n", (long long)tv.n_points);
        rc = EXIT_INTERNAL;
        goto done;
    }
    /* From here a signal stops the loop cleanly; before, it ends the process (nothing
     * to save yet, and reading a large data set should not have to finish first). */
    catch_stop_signals();
    if ((rc = train_loop(&s, train, &topt, rows))) goto done;

    if (a.save_path) {
        if ((st = spr_model_save(model, a.save_path)) != SPR_STATUS_OK) {
            rc = library_error(st);
            goto done;
        }
        fprintf(stderr, "saved %s\n", a.save_path);
    }
    double sps = s.train_seconds > 0 ? (double)s.samples / s.train_seconds : 0;
    if (s.have_last)
        printf("P@1 %.4f P@5 %.4f samples/s %.1f train_seconds %.3f\n", s.last.p_at[1],
               s.last.p_at[5], sps, s.train_seconds);
    else
        printf("P@1 n/a P@5 n/a samples/s %.1f train_seconds %.3f\n", sps, s.train_seconds);
    rc = EXIT_OK;
    if (stop_signal) {
        fflush(stdout);
        if (a.save_path)
            fprintf(stderr, "sparrow: interrupted at step %lld, model saved to %s\n",
                    (long long)spr_model_get_info(model).steps, a.save_path);
        else
            fprintf(stderr, "sparrow: interrupted at step %lld, model not saved (no --save)\n",
                    (long long)spr_model_get_info(model).steps);
        rc = EXIT_SIGNAL_BASE + stop_signal;
    }

done:
    if (metrics && fclose(metrics) != 0 && rc == EXIT_OK) {
        fprintf(stderr, "sparrow: %s: write failed: %s\n", a.metrics_path, strerror(errno));
        rc = EXIT_USAGE;
    }
    free(rows);
    free(eval_rows);
    spr_model_free(model);
    spr_dataset_free(test);
    spr_dataset_free(train);
    return rc;
}

/* ------------------------------------------------------------------ model + data loading */

/* Loads a model and a data set whose ids are checked against it. check_labels = 0 lets
 * the file carry labels the model does not know (predict ignores labels). */
static int load_model_and_data(const char *model_path, const char *data_path, int one_based,
                               int check_labels, spr_model **model, spr_dataset **data) {
    spr_status st = spr_model_load(model_path, model);
    if (st != SPR_STATUS_OK) return library_error(st);
    spr_model_config cfg = spr_model_get_config(*model);
    spr_read_options ropt = spr_read_options_default();
    ropt.one_based = one_based;
    ropt.n_features = cfg.n_features;
    if (check_labels) ropt.n_labels = cfg.layers[cfg.n_layers - 1].size;
    st = spr_dataset_read(data_path, &ropt, data);
    if (st != SPR_STATUS_OK) {
        spr_model_free(*model);
        *model = NULL;
        return library_error(st);
    }
    return EXIT_OK;
}

static int64_t model_labels(const spr_model *model) {
    spr_model_config cfg = spr_model_get_config(model);
    return cfg.layers[cfg.n_layers - 1].size;
}

/* ------------------------------------------------------------------ eval */

static const char EVAL_HELP[] =
    "usage: sparrow eval --model MODEL --test FILE [options]\n"
    "\n"
    "Evaluates a saved model; the last line of stdout is a JSON object with p_at_1,\n"
    "p_at_3, p_at_5, points, seconds and inference (\"exact\" or \"sparse\").\n"
    "\n"
    "  --model MODEL         a model saved by 'sparrow train --save'\n"
    "  --test FILE           test set\n"
    "  --k K                 also report p_at_K when K is not 1, 3 or 5 (default 5)\n"
    "  --sparse-inference    rank only the LSH candidates (sublinear) instead of all labels\n"
    "  --recall N            also report sampling_recall_at_N: the mean fraction of each\n"
    "                        point's exact top-N outputs that the sampler makes active\n"
    "  --eval-max N          evaluate on N points drawn uniformly at random without\n"
    "                        replacement with a fixed seed (the same subset as\n"
    "                        'sparrow train --eval-max N')\n"
    "  --threads T           worker threads (default 0: all cores)\n"
    "  --one-based           feature ids in the file start at 1\n";

/* Precision@k for k outside the library's 1/3/5: top-k in chunks, hits / k per point. */
static int precision_at_k(const spr_model *model, const spr_dataset *data, const int64_t *rows,
                          int64_t n, int k, int sparse, int threads, double *out) {
    spr_dataset_view v = spr_dataset_get_view(data);
    int64_t chunk = n < PREDICT_CHUNK ? n : PREDICT_CHUNK;
    int64_t *ids_rows = malloc((size_t)(chunk > 0 ? chunk : 1) * sizeof *ids_rows);
    int32_t *ids = malloc((size_t)(chunk > 0 ? chunk : 1) * (size_t)k * sizeof *ids);
    float *scores = malloc((size_t)(chunk > 0 ? chunk : 1) * (size_t)k * sizeof *scores);
    int rc = EXIT_OK;
    double total = 0;
    if (!ids_rows || !ids || !scores) {
        fprintf(stderr, "sparrow: out of memory\n");
        rc = EXIT_INTERNAL;
        goto done;
    }
    for (int64_t start = 0; start < n; start += chunk) {
        int64_t m = (start + chunk <= n) ? chunk : n - start;
        for (int64_t i = 0; i < m; i++) ids_rows[i] = rows ? rows[start + i] : start + i;
        spr_status st = spr_model_predict(model, data, ids_rows, m, k, sparse, threads, ids,
                                          scores);
        if (st != SPR_STATUS_OK) {
            rc = library_error(st);
            goto done;
        }
        for (int64_t i = 0; i < m; i++) {
            const int32_t *labels = v.labels + v.label_indptr[ids_rows[i]];
            int64_t nl = v.label_indptr[ids_rows[i] + 1] - v.label_indptr[ids_rows[i]];
            int hits = 0;
            for (int j = 0; j < k; j++)
                for (int64_t t = 0; t < nl; t++)
                    if (labels[t] == ids[i * k + j]) {
                        hits++;
                        break;
                    }
            total += (double)hits / k;
        }
    }
    *out = n > 0 ? total / (double)n : 0;
done:
    free(ids_rows);
    free(ids);
    free(scores);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    const char *model_path = NULL, *test_path = NULL;
    int k = 5, sparse = 0, threads = 0, one_based = 0, recall_top = 0;
    int64_t eval_max = 0;
    enum { E_MODEL = 256, E_TEST, E_K, E_SPARSE, E_THREADS, E_EVAL_MAX, E_ONE_BASED, E_RECALL };
    static const struct option opts[] = {
        {"model", required_argument, 0, E_MODEL},
        {"test", required_argument, 0, E_TEST},
        {"k", required_argument, 0, E_K},
        {"sparse-inference", no_argument, 0, E_SPARSE},
        {"recall", required_argument, 0, E_RECALL},
        {"threads", required_argument, 0, E_THREADS},
        {"eval-max", required_argument, 0, E_EVAL_MAX},
        {"one-based", no_argument, 0, E_ONE_BASED},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc = EXIT_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case E_MODEL: model_path = optarg; break;
        case E_TEST: test_path = optarg; break;
        case E_K: rc = parse_int(cmd, "--k", optarg, 1, 1 << 20, &k); break;
        case E_SPARSE: sparse = 1; break;
        case E_RECALL: rc = parse_int(cmd, "--recall", optarg, 1, 1000, &recall_top); break;
        case E_THREADS: rc = parse_int(cmd, "--threads", optarg, 0, INT_MAX, &threads); break;
        case E_EVAL_MAX: rc = parse_int64(cmd, "--eval-max", optarg, 1, INT64_MAX, &eval_max); break;
        case E_ONE_BASED: one_based = 1; break;
        case OPT_HELP: fputs(EVAL_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
        if (rc) return rc;
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!model_path) return usage_error(cmd, "--model is required (see 'sparrow eval --help')");
    if (!test_path) return usage_error(cmd, "--test is required (see 'sparrow eval --help')");

    spr_model *model = NULL;
    spr_dataset *test = NULL;
    int64_t *rows = NULL, n = 0;
    if ((rc = load_model_and_data(model_path, test_path, one_based, 1, &model, &test)))
        return rc;
    if ((rc = eval_subset(spr_dataset_get_view(test).n_points, eval_max, &rows, &n))) goto done;

    spr_eval_result res;
    double t0 = now_seconds();
    spr_status st = spr_model_evaluate(model, test, rows, n, sparse, threads, &res);
    double seconds = now_seconds() - t0;
    if (st != SPR_STATUS_OK) {
        rc = library_error(st);
        goto done;
    }
    double p_extra = 0;
    int extra = (k != 1 && k != 3 && k != 5);
    if (extra) {
        int kk = (int64_t)k > model_labels(model) ? (int)model_labels(model) : k;
        if ((rc = precision_at_k(model, test, rows, n, kk, sparse, threads, &p_extra)))
            goto done;
        if (kk < k) p_extra = p_extra * kk / k; /* fewer labels than k: the rest are misses */
    }
    printf("{\"p_at_1\": ");
    json_number(stdout, res.p_at[1]);
    printf(", \"p_at_3\": ");
    json_number(stdout, res.p_at[3]);
    printf(", \"p_at_5\": ");
    json_number(stdout, res.p_at[5]);
    if (extra) {
        printf(", \"p_at_%d\": ", k);
        json_number(stdout, p_extra);
    }
    if (recall_top > 0) {
        double recall = 0;
        if ((st = spr_model_sampling_recall(model, test, rows, n, recall_top, threads, &recall))) {
            rc = library_error(st);
            goto done;
        }
        printf(", \"sampling_recall_at_%d\": ", recall_top);
        json_number(stdout, recall);
    }
    printf(", \"points\": %lld, \"seconds\": ", (long long)n);
    json_number(stdout, seconds);
    printf(", \"inference\": \"%s\"}\n", sparse ? "sparse" : "exact");
    rc = EXIT_OK;
done:
    free(rows);
    spr_dataset_free(test);
    spr_model_free(model);
    return rc;
}

/* ------------------------------------------------------------------ predict */

static const char PREDICT_HELP[] =
    "usage: sparrow predict --model MODEL --input FILE [options]\n"
    "\n"
    "Writes one line per input point to stdout: \"label:score label:score ...\", best\n"
    "first (scores are output logits). Labels in the input file are ignored.\n"
    "\n"
    "  --model MODEL         a model saved by 'sparrow train --save'\n"
    "  --input FILE          points to predict (XMC or svmlight format)\n"
    "  --k K                 labels per point (default 5; at most the number of labels)\n"
    "  --sparse-inference    rank only the LSH candidates (sublinear)\n"
    "  --threads T           worker threads (default 0: all cores)\n"
    "  --one-based           feature ids in the file start at 1\n";

static int cmd_predict(int argc, char **argv) {
    const char *cmd = "predict";
    const char *model_path = NULL, *input_path = NULL;
    int k = 5, sparse = 0, threads = 0, one_based = 0;
    enum { P_MODEL = 256, P_INPUT, P_K, P_SPARSE, P_THREADS, P_ONE_BASED };
    static const struct option opts[] = {
        {"model", required_argument, 0, P_MODEL},
        {"input", required_argument, 0, P_INPUT},
        {"k", required_argument, 0, P_K},
        {"sparse-inference", no_argument, 0, P_SPARSE},
        {"threads", required_argument, 0, P_THREADS},
        {"one-based", no_argument, 0, P_ONE_BASED},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc = EXIT_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case P_MODEL: model_path = optarg; break;
        case P_INPUT: input_path = optarg; break;
        case P_K: rc = parse_int(cmd, "--k", optarg, 1, 1 << 20, &k); break;
        case P_SPARSE: sparse = 1; break;
        case P_THREADS: rc = parse_int(cmd, "--threads", optarg, 0, INT_MAX, &threads); break;
        case P_ONE_BASED: one_based = 1; break;
        case OPT_HELP: fputs(PREDICT_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
        if (rc) return rc;
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!model_path) return usage_error(cmd, "--model is required (see 'sparrow predict --help')");
    if (!input_path) return usage_error(cmd, "--input is required (see 'sparrow predict --help')");

    spr_model *model = NULL;
    spr_dataset *data = NULL;
    if ((rc = load_model_and_data(model_path, input_path, one_based, 0, &model, &data)))
        return rc;
    if ((int64_t)k > model_labels(model)) k = (int)model_labels(model);

    int64_t n = spr_dataset_get_view(data).n_points;
    int64_t *rows = malloc(PREDICT_CHUNK * sizeof *rows);
    int32_t *ids = malloc((size_t)PREDICT_CHUNK * (size_t)k * sizeof *ids);
    float *scores = malloc((size_t)PREDICT_CHUNK * (size_t)k * sizeof *scores);
    if (!rows || !ids || !scores) {
        fprintf(stderr, "sparrow: out of memory\n");
        rc = EXIT_INTERNAL;
        goto done;
    }
    for (int64_t start = 0; start < n; start += PREDICT_CHUNK) {
        int64_t m = (start + PREDICT_CHUNK <= n) ? PREDICT_CHUNK : n - start;
        for (int64_t i = 0; i < m; i++) rows[i] = start + i;
        spr_status st = spr_model_predict(model, data, rows, m, k, sparse, threads, ids, scores);
        if (st != SPR_STATUS_OK) {
            rc = library_error(st);
            goto done;
        }
        for (int64_t i = 0; i < m; i++) {
            for (int j = 0; j < k; j++) {
                if (j) putchar(' ');
                printf("%d:%.6g", ids[i * k + j], scores[i * k + j]);
            }
            putchar('\n');
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sparrow: writing the predictions failed: %s\n", strerror(errno));
        rc = EXIT_USAGE;
        goto done;
    }
    rc = EXIT_OK;
done:
    free(rows);
    free(ids);
    free(scores);
    spr_dataset_free(data);
    spr_model_free(model);
    return rc;
}

/* ------------------------------------------------------------------ info */

static const char INFO_HELP[] =
    "usage: sparrow info --model MODEL [--json]\n"
    "\n"
    "Prints a saved model's configuration (layers, sizes, sparsity, hash family, K, L,\n"
    "key bits, bucket capacity), training progress (steps, samples, epoch), parameter\n"
    "count and memory.\n"
    "\n"
    "  --model MODEL   a model saved by 'sparrow train --save'\n"
    "  --json          print one JSON object instead of text\n";

static void info_json(const spr_model_config *cfg, const spr_model_info *info) {
    printf("{\"n_features\": %lld, \"n_labels\": %lld, \"layers\": [",
           (long long)cfg->n_features, (long long)cfg->layers[cfg->n_layers - 1].size);
    for (int i = 0; i < cfg->n_layers; i++) {
        const spr_layer_config *l = &cfg->layers[i];
        int sampled = i > 0 && l->sparsity < 1.0f;
        printf("%s{\"size\": %lld, \"activation\": \"%s\", \"sampled\": %s, \"sparsity\": %.7g, "
               "\"hash\": \"%s\", \"hash_k\": %d, \"effective_k\": %d, \"hash_l\": %d, "
               "\"key_bits\": %d, \"bucket_capacity\": %d, \"bucket_policy\": \"%s\", "
               "\"select\": \"%s\", \"select_threshold\": %d, \"random_fraction\": %.7g}",
               i ? ", " : "", (long long)l->size, i == cfg->n_layers - 1 ? "softmax" : "relu",
               sampled ? "true" : "false", l->sparsity, spr_hash_family_to_string(l->hash),
               l->hash_k, info->hash_k[i], l->hash_l, info->key_bits[i], l->bucket_capacity,
               l->bucket_policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir",
               spr_select_to_string(l->select), l->select_threshold, l->random_fraction);
    }
    printf("], \"init_std\": %.7g, \"seed\": %llu, \"steps\": %lld, \"samples\": %lld, "
           "\"epoch\": %lld, \"parameters\": %lld, \"parameter_bytes\": %lld, "
           "\"table_bytes\": %lld, \"rehashes\": %lld, \"rebuilds\": %lld}\n",
           cfg->init_std, (unsigned long long)cfg->seed, (long long)info->steps,
           (long long)info->samples, (long long)info->epoch, (long long)info->parameters,
           (long long)info->parameter_bytes, (long long)info->table_bytes,
           (long long)info->rehashes, (long long)info->rebuilds);
}

static void info_text(const char *path, const spr_model_config *cfg, const spr_model_info *info) {
    printf("model %s\n", path);
    printf("input: %lld features\n", (long long)cfg->n_features);
    for (int i = 0; i < cfg->n_layers; i++) {
        const spr_layer_config *l = &cfg->layers[i];
        printf("layer %d: %lld neurons, %s", i, (long long)l->size,
               i == cfg->n_layers - 1 ? "softmax output" : "relu");
        if (i > 0 && l->sparsity < 1.0f)
            printf(", sampled: sparsity %g, hash %s, K %d, L %d, key bits %d, bucket "
                   "capacity %d (%s), select %s\n",
                   l->sparsity, spr_hash_family_to_string(l->hash), info->hash_k[i], l->hash_l,
                   info->key_bits[i], l->bucket_capacity,
                   l->bucket_policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir",
                   spr_select_to_string(l->select));
        else
            printf(", dense\n");
    }
    printf("init_std %g, seed %llu\n", cfg->init_std, (unsigned long long)cfg->seed);
    printf("trained: %lld steps, %lld samples, epoch %lld, %lld rehashes, %lld rebuilds\n",
           (long long)info->steps, (long long)info->samples, (long long)info->epoch,
           (long long)info->rehashes, (long long)info->rebuilds);
    printf("parameters: %lld (%lld bytes with gradients and optimizer state)\n",
           (long long)info->parameters, (long long)info->parameter_bytes);
    printf("hash tables: %lld bytes\n", (long long)info->table_bytes);
}

static int cmd_info(int argc, char **argv) {
    const char *cmd = "info";
    const char *model_path = NULL;
    int json = 0;
    enum { I_MODEL = 256, I_JSON };
    static const struct option opts[] = {{"model", required_argument, 0, I_MODEL},
                                         {"json", no_argument, 0, I_JSON},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case I_MODEL: model_path = optarg; break;
        case I_JSON: json = 1; break;
        case OPT_HELP: fputs(INFO_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!model_path) return usage_error(cmd, "--model is required (see 'sparrow info --help')");

    spr_model *model = NULL;
    spr_status st = spr_model_load(model_path, &model);
    if (st != SPR_STATUS_OK) return library_error(st);
    spr_model_config cfg = spr_model_get_config(model);
    spr_model_info info = spr_model_get_info(model);
    if (json) info_json(&cfg, &info);
    else info_text(model_path, &cfg, &info);
    spr_model_free(model);
    return EXIT_OK;
}

/* ------------------------------------------------------------------ main */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"gen", cmd_gen, "write a synthetic data set (train.txt, test.txt)"},
    {"train", cmd_train, "train a model, evaluating after every epoch"},
    {"eval", cmd_eval, "precision@1/3/5 of a saved model on a test set"},
    {"predict", cmd_predict, "top-k labels of every point of a file"},
    {"info", cmd_info, "configuration and size of a saved model"},
};

static void main_help(FILE *f) {
    fprintf(f, "usage: sparrow <command> [options]   (sparrow <command> --help for details)\n"
               "\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-8s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n  --help       this message\n  --version    print the version\n"
               "\nexit status: 0 success, 2 bad input or usage, 1 internal failure\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        main_help(stdout);
        return EXIT_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        printf("sparrow %s (library %s)\n", SPR_VERSION_STRING, spr_version());
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(name, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sparrow: unknown command '%s' (see 'sparrow --help')\n", name);
    return EXIT_USAGE;
}

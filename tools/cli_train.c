/* cli_train.c: `sparrow train`: options, the training loop, progress and metrics. */
#include "cli.h"
#include "progress.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t max_labels_per_point(const spr_dataset_view *v) {
    int64_t best = 0;
    for (int64_t i = 0; i < v->n_points; i++) {
        int64_t c = v->label_indptr[i + 1] - v->label_indptr[i];
        if (c > best) best = c;
    }
    return best;
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
    "  --train FILE          training set (XMC format with header, or svmlight; or the\n"
    "                        features file of the XMC repository's split format,\n"
    "                        trn_X_Xf.txt, with --train-labels)\n"
    "  --train-labels FILE   the labels of --train in the split format (trn_X_Y.txt)\n"
    "  --test FILE           test set, evaluated after every epoch (exact inference)\n"
    "  --test-labels FILE    the labels of --test in the split format (tst_X_Y.txt)\n"
    "  --test-filter-labels FILE\n"
    "                        leave out of each test point's ranking the labels FILE\n"
    "                        pairs it with (\"POINT LABEL\" per line, 0-based: the XMC\n"
    "                        repository's filter_labels_test.txt of the LF-* sets)\n"
    "  --one-based           feature ids in the files start at 1 (svmlight convention);\n"
    "                        --zero-based: at 0 (the default; with --resume the\n"
    "                        default is the base the model records)\n"
    "  --eval-max N          evaluate on N test points drawn uniformly at random without\n"
    "                        replacement with a fixed seed: the same subset every epoch\n"
    "                        (and the same as 'sparrow eval --eval-max N'); default: all\n"
    "  --eval-every N        also evaluate at every N-th step within an epoch, on the\n"
    "                        --eval-max subset (default: 1000 test points drawn the\n"
    "                        same way); end-of-epoch evaluations are unchanged\n"
    "  --propensity A,B      also report PSP@1/3/5 (propensity-scored precision) with\n"
    "                        the training set's label propensities (Jain et al. 2016;\n"
    "                        the XMC repository's A,B: 0.55,1.5, Amazon 0.6,2.6,\n"
    "                        Wikipedia 0.5,0.4)\n"
    "model\n"
    "  --hidden N[,N...]     hidden layer sizes, e.g. 128 or 256,128 (default 128)\n"
    "  --sparsity F          fraction of output neurons active per sample, in (0, 1]\n"
    "  --hash NAME           output layer hash family: dwta, simhash, wta, doph\n"
    "  --tables L            hash tables of the output layer\n"
    "  --bits K              codes per table key (0: chosen from sparsity and L)\n"
    "  --bucket-capacity C   neurons kept per bucket\n"
    "  --simhash-one-in S    SimHash projections: each entry non-zero (+1 or -1) with\n"
    "                        probability 1/S, in 1..1024; 0 (default): sqrt(fan-in)\n"
    "                        rounded, at least 3 (11 after 128 hidden); sparser ones\n"
    "                        hash faster (doc/performance-history.md, \"Session 8\")\n"
    "  --bucket-policy P     fifo (a full bucket keeps the newest) or reservoir (a\n"
    "                        uniform sample)\n"
    "  --select S            topk: the target count of candidates most tables agree\n"
    "                        on (default); union: every candidate (SLIDE); threshold:\n"
    "                        candidates returned by >= --threshold M tables; rank:\n"
    "                        like topk, ranked by the hash codes shared with the input\n"
    "  --threshold M         tables that must return a neuron (--select threshold)\n"
    "  --clip-norm X         scale each batch gradient to an L2 norm of at most X\n"
    "  --max-memory SIZE     refuse a model that needs more (bytes; K, M, G suffixes);\n"
    "                        default: the memory the system reports available\n"
    "  --random-fraction F   share of the active set kept for random neurons (topk,\n"
    "                        threshold, rank), in [0, 1]\n"
    "  --random-pool G       the batch draws G x the random share once and each sample\n"
    "                        draws its share from that pool: the batch touches far\n"
    "                        fewer rows; 0: from the whole layer (SLIDE); default 0\n"
    "  --hidden-sparsity F   sample the hidden layers after the first too (same hash\n"
    "                        options as the output layer); default 1 (dense)\n"
    "  --seed S              seed of weights, hashes, sampling and the epoch shuffles\n"
    "  --bf16-state          keep the output layer's Adam moments in BF16 (16-bit):\n"
    "                        a third less memory traffic in the optimizer step, half\n"
    "                        the moments' memory; saved with the model (README, \"BF16\n"
    "                        optimizer state\", for the measured accuracy cost)\n"
    "  --bf16-weights        keep the output layer's weights in BF16 too (implies\n"
    "                        --bf16-state): half the bytes of every row read and\n"
    "                        written; the Adam step rounds weights stochastically\n"
    "                        (README, \"BF16 weights\", for the measured cost)\n"
    "training\n"
    "  --resume MODEL        continue the run that saved MODEL where it stopped: the\n"
    "                        model options above come from MODEL (giving one that\n"
    "                        differs is an error); --train must be the first run's\n"
    "                        (the epoch goes on at the sample where it stopped);\n"
    "                        --batch, --lr, --threads, --dense, --random-pool and the\n"
    "                        --rehash-* options may change, but must be the first\n"
    "                        run's for an exact continuation (with --threads 1 the\n"
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
    "configuration\n"
    "  --config FILE         read options from a JSON object {\"option\": value}: keys\n"
    "                        are the long options without --, flags take true/false,\n"
    "                        null leaves an option out; the command line wins\n"
    "  --print-config        print the effective options as such a file and exit\n"
    "output\n"
    "  --save MODEL          save the model at the end (atomically; nothing on failure)\n"
    "  --save-every N|T      also save it at every N-th step (counted like\n"
    "                        --eval-every; at an epoch's end after its evaluation),\n"
    "                        or once a time T has passed since the last save (30m,\n"
    "                        2h, 600s): a run killed outright (OOM, power, SIGKILL)\n"
    "                        continues from the last save with --resume\n"
    "  --metrics FILE        JSON Lines, one object per evaluation (the file is\n"
    "                        truncated at start; with --resume an existing one is\n"
    "                        continued from the resumed step): epoch, step,\n"
    "                        train_seconds, samples_per_second, loss, p_at_1,\n"
    "                        p_at_3, p_at_5, ndcg_at_1, ndcg_at_3, ndcg_at_5,\n"
    "                        active_out, eval_points, eval_seconds, partial_epoch\n"
    "                        (and with\n"
    "                        --propensity psp_at_1, psp_at_3, psp_at_5,\n"
    "                        psndcg_at_1, psndcg_at_3, psndcg_at_5);\n"
    "                        its first line is {\"run\": {...}}: versions, start time\n"
    "                        and the options (\"config\": a --config file); a resumed\n"
    "                        run's header follows the lines it continues; - (or\n"
    "                        /dev/stdout): on stdout, and the result line on stderr\n"
    "  --quiet               no progress on stderr (a bar redrawn in place on a\n"
    "                        terminal, else a plain line every 5 s)\n"
    "  --verbose             also print the library's log lines (rehashes)\n"
    "\n"
"Each epoch visits the training rows in a shuffled order that depends only on the\n"
    "seed and the epoch number. train_seconds counts training only (no evaluation, no\n"
    "I/O). stdout gets a one-line summary at the end.\n"
    "\n"
    "SIGINT (Ctrl-C), SIGTERM or SIGHUP (a closed terminal): the current batch is\n"
    "finished, the model evaluated and reported as after --max-batches, saved if --save\n"
    "was given (continue it with --resume), and sparrow exits with 130 (SIGINT), 143\n"
    "(SIGTERM) or 129 (SIGHUP); a second signal ends it at once; under nohup SIGHUP\n"
    "stays ignored. A loss that becomes NaN or infinite stops training before the\n"
    "step that would apply it: nothing is saved (MODEL is left as it was, or as the\n"
    "last --save-every save wrote it) and the exit status is 1; try a lower --lr.\n";

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
    int dense;
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
        if (v > INT32_MAX) /* the library's limit; checked here so --print-config never prints it */
            return usage_error(cmd, "--hidden sizes must be at most %d (2^31 - 1), got %s", INT32_MAX,
                               text);
        a->hidden[a->n_hidden++] = (int64_t)v;
        if (!comma) break;
        p = comma + 1;
    }
    return EXIT_OK;
}

enum {
    T_TRAIN = 256, T_TEST, T_HIDDEN, T_EPOCHS, T_BATCH, T_LR, T_SPARSITY, T_HASH, T_TABLES,
    T_BITS, T_BUCKET, T_THREADS, T_SEED, T_DENSE, T_SAVE, T_METRICS, T_EVAL_MAX,
    T_MAX_BATCHES, T_ONE_BASED, T_ZERO_BASED, T_QUIET, T_VERBOSE, T_POLICY, T_SELECT, T_THRESHOLD,
    T_HIDDEN_SPARSITY, T_REHASH_FIRST, T_REHASH_GROWTH, T_REHASH_MAX, T_REBUILD, T_RANDOM_FRACTION,
    T_RESUME, T_MAX_MEMORY, T_CLIP_NORM, T_EVAL_EVERY, T_CONFIG, T_PRINT_CONFIG,
    T_BF16_STATE, T_RANDOM_POOL, T_BF16_WEIGHTS, T_SIMHASH_ONE_IN, T_PROPENSITY, T_SAVE_EVERY,
    T_TRAIN_LABELS, T_TEST_LABELS, T_TEST_FILTER
};

/* --save-every: "N" steps, or a time "Ns", "Nm", "Nh" (N > 0, a decimal for times). */
static int parse_save_every(const char *cmd, const char *text, train_args *a) {
    size_t len = strlen(text);
    const char unit = len ? text[len - 1] : 0;
    const double scale = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
    a->save_every_text = text;
    a->save_every = 0;
    a->save_every_seconds = 0;
    if (!scale) return parse_int64(cmd, "--save-every", text, 1, INT64_MAX, &a->save_every);
    char number[64], *end = NULL;
    snprintf(number, sizeof number, "%.*s", (int)(len - 1), text);
    errno = 0;
    double v = len > 1 && len - 1 < sizeof number ? strtod(number, &end) : NAN;
    if (!end || end == number || *end || errno == ERANGE || !(v > 0) || !isfinite(v * scale))
        return usage_error(cmd, "--save-every must be a number of steps (an integer >= 1) or a "
                                "time (a number > 0 followed by s, m or h: 30m), got %s",
                           text);
    a->save_every_seconds = v * scale;
    return EXIT_OK;
}

/* "512M", "4G", "1000000" -> bytes (K, M, G are powers of 1024). */
static int parse_size(const char *cmd, const char *opt, const char *text, int64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double scale = 1.0;
    if (*end == 'K' || *end == 'k') scale = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') scale = 1048576.0, end++;
    else if (*end == 'G' || *end == 'g') scale = 1073741824.0, end++;
    /* At least a byte: 0 would mean no limit at all. */
    if (end == text || *end || errno || !(v * scale >= 1) || v * scale > 9e18)
        return usage_error(cmd, "%s must be a size like 512M or 4G, got %s", opt, text);
    *out = (int64_t)(v * scale);
    return EXIT_OK;
}

/* MemAvailable from /proc/meminfo in bytes, 0 if unknown. */
static int64_t available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return (int64_t)kb * 1024;
}

/* Fills a from the command line; returns an exit code (EXIT_OK to go on, or -1 after
 * --help). */
static int parse_train_args(int argc, char **argv, train_args *a) {
    const char *cmd = "train";
    static const struct option opts[] = {
        {"train", required_argument, 0, T_TRAIN},
        {"test", required_argument, 0, T_TEST},
        {"train-labels", required_argument, 0, T_TRAIN_LABELS},
        {"test-labels", required_argument, 0, T_TEST_LABELS},
        {"test-filter-labels", required_argument, 0, T_TEST_FILTER},
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
        {"random-pool", required_argument, 0, T_RANDOM_POOL},
        {"save", required_argument, 0, T_SAVE},
        {"save-every", required_argument, 0, T_SAVE_EVERY},
        {"metrics", required_argument, 0, T_METRICS},
        {"eval-max", required_argument, 0, T_EVAL_MAX},
        {"max-batches", required_argument, 0, T_MAX_BATCHES},
        {"one-based", no_argument, 0, T_ONE_BASED},
        {"zero-based", no_argument, 0, T_ZERO_BASED},
        {"quiet", no_argument, 0, T_QUIET},
        {"verbose", no_argument, 0, T_VERBOSE},
        {"bucket-policy", required_argument, 0, T_POLICY},
        {"select", required_argument, 0, T_SELECT},
        {"threshold", required_argument, 0, T_THRESHOLD},
        {"hidden-sparsity", required_argument, 0, T_HIDDEN_SPARSITY},
        {"random-fraction", required_argument, 0, T_RANDOM_FRACTION},
        {"simhash-one-in", required_argument, 0, T_SIMHASH_ONE_IN},
        {"max-memory", required_argument, 0, T_MAX_MEMORY},
        {"clip-norm", required_argument, 0, T_CLIP_NORM},
        {"rehash-first", required_argument, 0, T_REHASH_FIRST},
        {"rehash-growth", required_argument, 0, T_REHASH_GROWTH},
        {"rehash-max", required_argument, 0, T_REHASH_MAX},
        {"rebuild-every", required_argument, 0, T_REBUILD},
        {"resume", required_argument, 0, T_RESUME},
        {"eval-every", required_argument, 0, T_EVAL_EVERY},
        {"config", required_argument, 0, T_CONFIG},
        {"print-config", no_argument, 0, T_PRINT_CONFIG},
        {"bf16-state", no_argument, 0, T_BF16_STATE},
        {"bf16-weights", no_argument, 0, T_BF16_WEIGHTS},
        {"propensity", required_argument, 0, T_PROPENSITY},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->epochs = 1;
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc = EXIT_OK;
    /* --config first: its options go before the command line's (which then win). Quiet:
     * the second pass reports bad options. */
    opterr = 0;
    const char *in_paths[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == T_CONFIG) a->config_path = in_paths[0] = optarg;
        if (c == T_TRAIN) in_paths[1] = optarg;
        if (c == T_TEST) in_paths[2] = optarg;
        if (c == T_TRAIN_LABELS) in_paths[3] = optarg;
        if (c == T_TEST_LABELS) in_paths[4] = optarg;
        if (c == T_TEST_FILTER) in_paths[5] = optarg;
    }
    const char *const in_opts[] = {"--config",      "--train",      "--test",
                                   "--train-labels", "--test-labels", "--test-filter-labels"};
    if ((rc = stdin_once(cmd, 6, in_opts, in_paths))) return rc; /* before --config reads it */
    int n_from_file = 0;
    if (a->config_path) {
        if ((rc = config_to_argv(cmd, a->config_path, opts, &a->config))) return rc;
        n_from_file = a->config.argc;
        if (config_merge_argv(argc, argv, &a->config, &argc, &argv)) {
            fprintf(stderr, "sparrow train: out of memory\n");
            return EXIT_INTERNAL;
        }
        a->merged_argv = argv;
    }
    prepare_getopt(argv, name, sizeof name, cmd);
    for (;;) {
        int at = optind ? optind : 1; /* argv index of the option about to be parsed */
        if ((c = getopt_long(argc, argv, "h", opts, NULL)) == -1) break;
        switch (c) {
        case T_CONFIG: break; /* read above */
        case T_PRINT_CONFIG: a->print_config = 1; break;
        case T_SAVE_EVERY:
            rc = parse_save_every(cmd, optarg, a);
            break;
        case T_EVAL_EVERY:
            rc = parse_int64(cmd, "--eval-every", optarg, 1, INT64_MAX, &a->eval_every);
            break;
        case T_TRAIN: a->train_path = optarg; break;
        case T_TEST: a->test_path = optarg; break;
        case T_TRAIN_LABELS: a->train_labels = optarg; break;
        case T_TEST_LABELS: a->test_labels = optarg; break;
        case T_TEST_FILTER: a->test_filter = optarg; break;
        case T_SAVE:
            a->save_path = optarg;
            if (!strcmp(optarg, "-"))
                rc = usage_error(cmd, "--save -: a model is saved to a file (atomically), not to stdout: "
                                      "name a file");
            break;
        case T_RESUME: a->resume_path = optarg; break;
        case T_METRICS: a->metrics_path = optarg; break;
        case T_HIDDEN: rc = parse_hidden(cmd, optarg, a); break;
        case T_EPOCHS: rc = parse_int64(cmd, "--epochs", optarg, 1, INT64_MAX, &a->epochs); break;
        case T_BATCH:
            rc = parse_int(cmd, "--batch", optarg, 1, INT_MAX, &a->batch);
            a->have_batch = 1;
            break;
        case T_LR:
            if ((rc = parse_float(cmd, "--lr", optarg, &a->lr))) break;
            if (!(a->lr > 0)) rc = usage_error(cmd, "--lr must be > 0, got %s", optarg);
            a->have_lr = 1;
            break;
        case T_SPARSITY:
            if ((rc = parse_float(cmd, "--sparsity", optarg, &a->sparsity))) break;
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
            rc = parse_int(cmd, "--threads", optarg, 0, SPR_MAX_THREADS, &a->threads);
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
        case T_BF16_STATE: a->bf16_state = 1; break;
        case T_BF16_WEIGHTS: a->bf16_weights = a->bf16_state = 1; break;
        case T_PROPENSITY:
            a->propensity = optarg;
            rc = parse_propensity(cmd, "--propensity", optarg, &a->psp_a, &a->psp_b);
            break;
        case T_RANDOM_POOL:
            rc = parse_int(cmd, "--random-pool", optarg, 0, 1000000, &a->random_pool);
            a->have_random_pool = 1;
            break;
        case T_ONE_BASED: a->one_based = 1; break;
        case T_ZERO_BASED: a->zero_based = 1; break;
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
                rc = usage_error(cmd, "--select must be topk, union, threshold or rank, got %s", optarg);
            a->have_select = 1;
            break;
        case T_HIDDEN_SPARSITY:
            if ((rc = parse_float(cmd, "--hidden-sparsity", optarg, &a->hidden_sparsity))) break;
            if (!(a->hidden_sparsity > 0 && a->hidden_sparsity <= 1))
                rc = usage_error(cmd, "--hidden-sparsity must be in (0, 1], got %s", optarg);
            a->have_hidden_sparsity = 1;
            break;
        case T_CLIP_NORM:
            if ((rc = parse_float(cmd, "--clip-norm", optarg, &a->clip_norm))) break;
            if (!(a->clip_norm > 0)) rc = usage_error(cmd, "--clip-norm must be > 0, got %s", optarg);
            break;
        case T_MAX_MEMORY: rc = parse_size(cmd, "--max-memory", optarg, &a->max_memory); break;
        case T_RANDOM_FRACTION:
            if ((rc = parse_float(cmd, "--random-fraction", optarg, &a->random_fraction))) break;
            if (!(a->random_fraction >= 0 && a->random_fraction <= 1))
                rc = usage_error(cmd, "--random-fraction must be in [0, 1], got %s", optarg);
            a->have_random_fraction = 1;
            break;
        case T_SIMHASH_ONE_IN:
            rc = parse_int(cmd, "--simhash-one-in", optarg, 0, SPR_SIMHASH_ONE_IN_MAX, &a->simhash_one_in);
            a->have_simhash_one_in = 1;
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
            if ((rc = parse_float(cmd, "--rehash-growth", optarg, &a->rehash_growth))) break;
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
        if (rc) {
            /* The message names the option, not where it came from. */
            if (at <= n_from_file)
                fprintf(stderr, "sparrow train: (that value comes from %s)\n", a->config_path);
            return rc;
        }
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!a->train_path && !a->print_config)
        return usage_error(cmd, "--train is required (see 'sparrow train --help')");
    in_paths[1] = a->train_path; /* from the command line or the --config file */
    in_paths[2] = a->test_path;
    in_paths[3] = a->train_labels;
    in_paths[4] = a->test_labels;
    in_paths[5] = a->test_filter;
    if ((rc = stdin_once(cmd, 6, in_opts, in_paths))) return rc;
    if (a->test_labels && !a->test_path)
        return usage_error(cmd, "--test-labels needs --test FILE (the test set's features)");
    if (a->test_filter && !a->test_path)
        return usage_error(cmd, "--test-filter-labels needs --test FILE (the points it filters)");
    if ((rc = split_pair_distinct(cmd, "--train", a->train_path, "--train-labels", a->train_labels)) ||
        (rc = split_pair_distinct(cmd, "--test", a->test_path, "--test-labels", a->test_labels)))
        return rc;
    if ((a->save_every || a->save_every_seconds > 0) && !a->save_path)
        return usage_error(cmd, "--save-every needs --save MODEL (where to save)");
    if (a->one_based && a->zero_based)
        return usage_error(cmd, "--one-based and --zero-based contradict each other");
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
    if (a->have_simhash_one_in) out->simhash_one_in = a->simhash_one_in;
    /* Hidden layers after the first share the output layer's sampling options. */
    if (a->have_hidden_sparsity)
        for (int i = 1; i < cfg.n_layers - 1; i++) {
            int64_t size = cfg.layers[i].size;
            cfg.layers[i] = *out;
            cfg.layers[i].size = size;
            cfg.layers[i].sparsity = (float)a->hidden_sparsity;
        }
    if (a->have_seed) cfg.seed = a->seed;
    cfg.bf16_state = a->bf16_state;
    cfg.bf16_weights = a->bf16_weights;
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
        {a->have_simhash_one_in && out->simhash_one_in != a->simhash_one_in, "--simhash-one-in"},
        {hidden_sparsity_differs, "--hidden-sparsity"},
        {a->have_seed && cfg->seed != a->seed, "--seed"},
        {a->bf16_weights && !cfg->bf16_weights, "--bf16-weights"},
        {a->bf16_state && !a->bf16_weights && !cfg->bf16_state, "--bf16-state"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (checks[i].differs)
            return usage_error(cmd,
                               "%s differs from the model in %s: --resume takes the model options "
                               "from the model (leave %s out)",
                               checks[i].option, a->resume_path, checks[i].option);
    return EXIT_OK;
}

/* The first SIGINT, SIGTERM or SIGHUP asks the training loop to stop after its batch
 * (and to report and save as after --max-batches); a second one ends the process at
 * once, by the signal's default action. SIGHUP is a closed terminal or a dropped ssh
 * session: it used to end a long run at once with every step lost. Only
 * async-signal-safe calls here. */
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
    const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction old;
        /* nohup's SIGHUP stays ignored. (SIGINT is caught even when ignored at start, as
         * a shell script's background job has it: `kill -INT` stops such a run.) */
        if (signals[i] == SIGHUP && sigaction(SIGHUP, NULL, &old) == 0 &&
            old.sa_handler == SIG_IGN)
            continue;
        sigaction(signals[i], &sa, NULL);
    }
    /* A metrics file that is a pipe whose reader left (--metrics >(tee ...), a FIFO)
     * is a write error like a full disk: the steps are saved and the exit status is 2,
     * instead of SIGPIPE ending the run with every step lost. */
    signal(SIGPIPE, SIG_IGN);
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
    fprintf(f, ", init_std %g, seed %llu%s\n", cfg->init_std, (unsigned long long)cfg->seed,
            cfg->bf16_weights ? ", output weights and Adam moments in BF16"
            : cfg->bf16_state ? ", output Adam moments in BF16" : "");
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
        if (l->hash == SPR_HASH_SIMHASH) fprintf(f, ", projections non-zero 1 in %d", l->simhash_one_in);
        fputc('\n', f);
    }
}

/* Running sums between two evaluations (or two progress lines). */
typedef struct window {
    double loss_sum;   /* sum over batches of loss x samples */
    double active_sum; /* sum over batches of active output neurons x samples */
    double rehash_seconds; /* time spent rehashing the tables (inside train_seconds) */
    double optimizer_seconds; /* in the Adam steps (inside train_seconds) */
    double optimizer_rows;    /* weight rows they stepped */
    double optimizer_bytes;   /* parameter state they read and wrote */
    double comm_seconds;   /* in collectives (several ranks; inside train_seconds) */
    double step_seconds;   /* wall time of the training steps */
    int64_t comm_bytes;    /* handed to collectives by this rank */
    int64_t batches;
    int64_t samples;
} window;

static void window_add(window *w, const spr_batch_stats *s, int last_layer, int64_t n) {
    w->loss_sum += s->loss * (double)n;
    w->active_sum += s->active[last_layer] * (double)n;
    w->rehash_seconds += s->rehash_seconds;
    w->optimizer_seconds += s->optimizer_seconds;
    w->optimizer_rows += (double)s->optimizer_rows;
    w->optimizer_bytes += (double)s->optimizer_bytes;
    w->comm_seconds += s->comm_seconds;
    w->comm_bytes += s->comm_bytes;
    w->batches++;
    w->samples += n;
}

typedef struct train_state {
    const train_args *args;
    spr_model *model;
    const spr_dataset *test;
    const spr_dataset *exclude; /* labels left out of each test point's ranking, or NULL */
    const int64_t *eval_rows; /* (eval_n) or NULL for the whole test set */
    int64_t eval_n;
    const int64_t *within_rows; /* (within_n): --eval-every's subset, NULL for all */
    int64_t within_n;
    const double *inv_prop;   /* (n_prop) from the training set (--propensity), or NULL */
    int64_t n_prop;
    progress bar;
    FILE *metrics;
    double train_seconds;
    double train_cpu_seconds; /* CPU time of this process while training (all threads) */
    int64_t samples;
    int last_layer;
    int threads;
    uint64_t seed;            /* of the epoch shuffles: the model's seed */
    int64_t first_epoch;      /* 1, or the epoch a resumed run continues */
    int64_t skip_rows;        /* samples of first_epoch trained before the resume */
    spr_eval_result last; /* the last evaluation */
    int have_last;
    int metrics_failed; /* a metrics line could not be written: training stopped there */
    int eval_failed;    /* an evaluation failed (out of memory): training stopped there */
    int stopped;        /* the signal that stopped training, the same on every rank */
    int64_t saved_step; /* the step of the last --save-every save, -1 before one */
    double saved_at;    /* when it ended (or training started): --save-every's clock */
} train_state;

/* CPU seconds of this process, all threads (per-step costs on a shared machine). */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident memory of this process (VmHWM), bytes; 0 if unknown. */
static int64_t peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
    fclose(f);
    return (int64_t)kb * 1024;
}

/* One line per rank on stderr at the end of a run on several ranks: its labels, its
 * model's bytes, its peak memory and its communication. */
static void print_rank_summary(const spr_model *model, const train_state *s) {
    spr_model_info info = spr_model_get_info(model);
    spr_model_config cfg = spr_model_get_config(model);
    spr_dist_stats ds = spr_dist_get_stats(cli_dist);
    int64_t need = 0;
    spr_model_config_memory(&cfg, &need);
    fprintf(stderr,
            "rank %d of %d: labels [%lld, %lld) of %lld, model %.1f MB, peak RSS %.1f MB, "
            "collectives %.2f s (training and evaluation) of %.2f s training (%.2f s CPU), %.1f KB "
            "per step\n",
            info.rank, info.ranks, (long long)info.label_lo,
            (long long)(info.label_lo + cfg.layers[cfg.n_layers - 1].size),
            (long long)info.labels_total, (double)need / 1e6, (double)peak_rss() / 1e6, ds.seconds,
            s->train_seconds, s->train_cpu_seconds, info.steps > 0 ? (double)ds.bytes / 1024.0 / (double)info.steps : 0.0);
}

/* Evaluates (if there is a test set), prints a line on stderr and appends a metrics
 * line. Not counted in train_seconds. */
static int train_report(train_state *s, int64_t epoch, int partial, window *w, int within) {
    spr_eval_result res;
    memset(&res, 0, sizeof res);
    double eval_seconds = 0;
    /* Within an epoch (--eval-every): the smaller fixed subset. */
    const int64_t *eval_rows = within ? s->within_rows : s->eval_rows;
    int64_t eval_n = within ? s->within_n : s->eval_n;
    progress_clear(&s->bar);
    if (s->test) {
        double t0 = now_seconds();
        spr_status st = spr_model_evaluate_excluding(s->model, s->test, eval_rows, eval_n, 0, s->threads,
                                                     s->inv_prop, s->n_prop, s->exclude, &res);
        eval_seconds = now_seconds() - t0;
        if (st != SPR_STATUS_OK) {
            s->eval_failed = 1;
            return library_error(st);
        }
        s->last = res;
        s->have_last = 1;
    }
    spr_model_info info = spr_model_get_info(s->model);
    double loss = w->samples ? w->loss_sum / (double)w->samples : NAN;
    double active = w->samples ? w->active_sum / (double)w->samples : NAN;
    double sps = s->train_seconds > 0 ? (double)s->samples / s->train_seconds : 0;
    if (!cli_is_root()) goto agree; /* rank 0 reports for all ranks (the evaluation was collective) */
    fprintf(stderr, "epoch %lld%s: step %lld, loss %.4f, %.0f samples/s, train %.2f s, "
                    "active out %.1f",
            (long long)epoch, within ? " (within)" : partial ? " (partial)" : "", (long long)info.steps, loss, sps,
            s->train_seconds, active);
    if (s->test)
        fprintf(stderr, ", P@1 %.4f P@3 %.4f P@5 %.4f on %lld points (%.2f s)\n",
                res.p_at[1], res.p_at[3], res.p_at[5], (long long)eval_n, eval_seconds);
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
        fputs(", \"train_cpu_seconds\": ", f); /* robust to a busy machine */
        json_number(f, s->train_cpu_seconds);
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
        for (int i = 0; i < 3; i++) {
            fprintf(f, ", \"ndcg_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.ndcg_at[ks[i]]);
            else fputs("null", f);
        }
        for (int i = 0; i < 3 && s->inv_prop; i++) {
            fprintf(f, ", \"psp_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.psp_at[ks[i]]);
            else fputs("null", f);
        }
        for (int i = 0; i < 3 && s->inv_prop; i++) {
            fprintf(f, ", \"psndcg_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.psndcg_at[ks[i]]);
            else fputs("null", f);
        }
        fputs(", \"active_out\": ", f);
        json_number(f, active);
        fputs(", \"rehash_seconds\": ", f);
        json_number(f, w->rehash_seconds);
        fputs(", \"optimizer_seconds\": ", f);
        json_number(f, w->optimizer_seconds);
        fputs(", \"optimizer_rows_per_step\": ", f);
        json_number(f, w->batches > 0 ? w->optimizer_rows / (double)w->batches : 0.0);
        fputs(", \"optimizer_gb_per_s\": ", f);
        json_number(f, w->optimizer_seconds > 0 ? w->optimizer_bytes / w->optimizer_seconds / 1e9 : 0.0);
        fprintf(f, ", \"eval_points\": %lld, \"eval_seconds\": ",
                (long long)(s->test ? eval_n : 0));
        json_number(f, eval_seconds);
        if (cli_dist) { /* per step of this window, rank 0's view */
            double steps = w->batches > 0 ? (double)w->batches : 1.0;
            fprintf(f, ", \"ranks\": %d, \"comm_seconds_per_step\": ", spr_dist_size(cli_dist));
            json_number(f, w->comm_seconds / steps);
            fputs(", \"compute_seconds_per_step\": ", f);
            json_number(f, (w->step_seconds - w->comm_seconds) / steps);
            fprintf(f, ", \"comm_bytes_per_step\": %lld", (long long)(w->comm_bytes / (int64_t)steps));
        }
        fputs(", \"inference\": \"exact\"}\n", f);
        if (fflush(f) != 0 || ferror(f)) {
            fprintf(stderr, "sparrow: %s: write failed: %s\n", s->args->metrics_path,
                    strerror(errno));
            s->metrics_failed = 1;
        }
    }
agree:
    memset(w, 0, sizeof *w);
    /* Rank 0 alone writes the metrics file: the ranks agree on its failure here, so
     * that all of them stop at this evaluation and save the model together. */
    if (cli_dist) {
        spr_status st = spr_dist_max_int(cli_dist, &s->metrics_failed);
        if (st) return library_error(st);
    }
    return s->metrics_failed ? EXIT_USAGE : EXIT_OK;
}

/* Whether training stops here (a signal came): the same answer on every rank, agreed
 * at the same batch (mpirun forwards a signal to each rank, and they used to see it at
 * different batches: the others then waited for collectives that never came). Sets
 * s->stopped to the signal. 0, or an exit status when the ranks could not agree. */
static int check_stop(train_state *s, int *stop) {
    int sig = stop_signal;
    if (cli_dist) {
        spr_status st = spr_dist_max_int(cli_dist, &sig);
        if (st) return library_error(st);
    }
    if (sig) s->stopped = sig;
    *stop = sig != 0;
    return EXIT_OK;
}

/* Whether a --save-every save is due after this batch: every N steps, or once the time
 * since the last save (or the start) reached the interval; the time as rank 0 measures
 * it, agreed by every rank. 0, or an exit status when the ranks could not agree. */
static int save_due(train_state *s, int64_t step, int *due) {
    const train_args *a = s->args;
    *due = a->save_every > 0 && step % a->save_every == 0;
    if (a->save_every_seconds > 0) {
        *due = now_seconds() - s->saved_at >= a->save_every_seconds;
        if (cli_dist) {
            if (!cli_is_root()) *due = 0;
            spr_status st = spr_dist_max_int(cli_dist, due);
            if (st) return library_error(st);
        }
    }
    return EXIT_OK;
}

/* --save-every: the model so far, written where --save writes it at the end (the same
 * atomic save). A failed save stops training (exit 2): the file keeps the previous save,
 * and the run should not go on without the checkpoints it was asked for. */
static int periodic_save(train_state *s) {
    const char *path = s->args->save_path;
    int64_t step = spr_model_get_info(s->model).steps;
    double t0 = now_seconds();
    spr_status st = spr_model_save(s->model, path);
    if (st != SPR_STATUS_OK) {
        progress_clear(&s->bar);
        int rc = library_error(st);
        if (cli_is_root())
            fprintf(stderr, "sparrow: training stopped at step %lld: the --save-every save failed; "
                                "%s %s\n",
                        (long long)step, path,
                        s->saved_step >= 0 ? "holds the previous save" : "is left as it was");
        return rc;
    }
    s->saved_step = step;
    s->saved_at = now_seconds();
    if (!s->args->quiet && cli_is_root()) {
        progress_clear(&s->bar);
        fprintf(stderr, "saved %s at step %lld (%.2f s)\n", path, (long long)step, now_seconds() - t0);
    }
    return EXIT_OK;
}

/* The training loop: epochs of shuffled batches, an evaluation after each epoch and
 * after an early stop (--max-batches or a signal). A resumed run starts in
 * s->first_epoch after the s->skip_rows samples already trained: the epoch's order
 * depends only on (seed, epoch), so those are exactly the rows it skips (with the first
 * run's --batch, exactly its batches; with another, the same rows in other batches). */
static int train_loop(train_state *s, const spr_dataset *train, const spr_train_options *topt,
                      int64_t *rows) {
    const train_args *a = s->args;
    spr_dataset_view v = spr_dataset_get_view(train);
    int64_t n = v.n_points, bsz = topt->batch_size;
    int64_t batches_done = 0;
    window since_eval = {0};
    int rc;

    /* --eval-every counts the model's steps: a resumed run evaluates where an
     * uninterrupted one would. */
    int64_t first_step = spr_model_get_info(s->model).steps;
    /* The bar counts the samples this process will train on. */
    int64_t total = (a->epochs - s->first_epoch + 1) * n - s->skip_rows;
    if (a->max_batches > 0 && a->max_batches * bsz < total) total = a->max_batches * bsz;
    progress_start(&s->bar, "train", "samples", total, a->quiet);
    double loss_avg = NAN; /* a moving average of the batch losses, for the bar */

    for (int64_t epoch = s->first_epoch; epoch <= a->epochs; epoch++) {
        double t_start = now_seconds(), c_start = cpu_seconds();
        spr_epoch_order(rows, n, s->seed, epoch);
        int64_t start = epoch == s->first_epoch ? s->skip_rows : 0;
        for (; start < n; start += bsz) {
            if (a->max_batches > 0 && batches_done >= a->max_batches) break;
            int stop;
            if ((rc = check_stop(s, &stop))) return rc;
            if (stop) break;
            int64_t count = (start + bsz <= n) ? bsz : n - start;
            int last_of_epoch = start + count == n;
            spr_batch_stats stats;
            memset(&stats, 0, sizeof stats);
            double t_step = now_seconds();
            spr_status st = spr_model_train_batch(s->model, train, rows + start, count, topt,
                                                  &stats);
            since_eval.step_seconds += now_seconds() - t_step;
            if (st != SPR_STATUS_OK && !isfinite(stats.loss)) {
                /* Diverged: the library stopped before the step, but the weights that
                 * produced a NaN are not worth keeping over an earlier good model. */
                progress_clear(&s->bar);
                if (s->saved_step >= 0)
                    fprintf(stderr, "sparrow: %s; %s holds the model of step %lld, the last "
                                    "--save-every save\n",
                            spr_last_error(), a->save_path, (long long)s->saved_step);
                else
                    fprintf(stderr, "sparrow: %s; the model was not saved%s%s%s\n", spr_last_error(),
                            a->save_path ? " (" : "", a->save_path ? a->save_path : "",
                            a->save_path ? " is left as it was)" : "");
                return EXIT_INTERNAL;
            }
            if (st != SPR_STATUS_OK) {
                progress_clear(&s->bar);
                return library_error(st);
            }
            batches_done++;
            s->samples += count;
            window_add(&since_eval, &stats, s->last_layer, count);
            loss_avg = isfinite(loss_avg) ? 0.95 * loss_avg + 0.05 * stats.loss : stats.loss;
            char extra[128];
            int en = snprintf(extra, sizeof extra, "epoch %lld/%lld  loss %.4f", (long long)epoch,
                              (long long)a->epochs, loss_avg);
            if (s->have_last && en > 0 && en < (int)sizeof extra)
                snprintf(extra + en, sizeof extra - (size_t)en, "  P@1 %.4f", s->last.p_at[1]);
            progress_update(&s->bar, s->samples, extra);
            /* --eval-every: an evaluation within the epoch at every N-th step (not after
             * the epoch's last batch, which the end-of-epoch evaluation covers). */
            if (a->eval_every > 0 && s->test && (first_step + batches_done) % a->eval_every == 0 &&
                !last_of_epoch && !(a->max_batches > 0 && batches_done >= a->max_batches)) {
                double t = now_seconds();
                s->train_seconds += t - t_start;
                if ((rc = train_report(s, epoch, 1, &since_eval, 1))) return rc;
                t_start = now_seconds(); /* the evaluation is not training time */
            }
            /* --save-every within the epoch (at its last batch it waits for the epoch to
             * be counted complete, below, so that --resume finds a whole epoch). */
            int due = 0;
            if (!last_of_epoch && !(a->max_batches > 0 && batches_done >= a->max_batches) &&
                (rc = save_due(s, first_step + batches_done, &due)))
                return rc;
            if (due) {
                s->train_seconds += now_seconds() - t_start;
                if ((rc = periodic_save(s))) return rc;
                t_start = now_seconds(); /* the save is not training time */
            }
        }
        s->train_seconds += now_seconds() - t_start;
        s->train_cpu_seconds += cpu_seconds() - c_start;
        int complete = start >= n;
        if (complete) spr_model_set_epoch(s->model, epoch);
        if ((rc = train_report(s, epoch, !complete, &since_eval, 0))) return rc;
        if (a->max_batches > 0 && batches_done >= a->max_batches) break;
        /* not after the last epoch: the final save follows */
        int due = 0;
        if (complete && epoch < a->epochs && (rc = save_due(s, first_step + batches_done, &due)))
            return rc;
        if (due && (rc = periodic_save(s))) return rc;
        int stop;
        if ((rc = check_stop(s, &stop))) return rc;
        if (stop) break;
    }
    progress_finish(&s->bar);
    return EXIT_OK;
}

/* The effective options as a configuration object (cli_config.c): what --print-config
 * prints and the metrics file records. Options left to the library get the library's
 * defaults written out; those whose absence means something (no test set, no clipping,
 * the available memory) are null. With --resume the model options are null: they
 * come from the model. */
static struct cJSON *train_config_json(const train_args *a) {
    struct cJSON *o = config_object();
    if (!o) return NULL;
    spr_model_config mc = spr_model_config_default(1, 1);
    spr_layer_config out = mc.layers[mc.n_layers - 1];
    spr_train_options t = spr_train_options_default();
    config_put_string(o, "train", a->train_path);
    config_put_string(o, "test", a->test_path);
    config_put_string(o, "train-labels", a->train_labels);
    config_put_string(o, "test-labels", a->test_labels);
    config_put_string(o, "test-filter-labels", a->test_filter);
    if (a->resume_path && !a->one_based && !a->zero_based)
        config_put_null(o, "one-based"); /* the model's record */
    else config_put_bool(o, "one-based", a->one_based);
    config_put_bool(o, "zero-based", a->zero_based);
    if (a->eval_max) config_put_int(o, "eval-max", a->eval_max);
    else config_put_null(o, "eval-max");
    if (a->eval_every) config_put_int(o, "eval-every", a->eval_every);
    else config_put_null(o, "eval-every");
    config_put_string(o, "propensity", a->propensity);
    if (a->resume_path) {
        static const char *const model_keys[] = {
            "hidden", "sparsity", "hash", "tables", "bits", "bucket-capacity", "bucket-policy",
            "select", "threshold", "random-fraction", "simhash-one-in", "hidden-sparsity", "seed",
            "bf16-state", "bf16-weights"};
        for (size_t i = 0; i < sizeof model_keys / sizeof model_keys[0]; i++)
            config_put_null(o, model_keys[i]);
    } else {
        int64_t hidden[SPR_MAX_LAYERS];
        int n_hidden = a->n_hidden;
        if (n_hidden > 0) memcpy(hidden, a->hidden, sizeof hidden);
        else
            for (n_hidden = 0; n_hidden < mc.n_layers - 1; n_hidden++)
                hidden[n_hidden] = mc.layers[n_hidden].size;
        config_put_int_list(o, "hidden", hidden, n_hidden);
        config_put_float(o, "sparsity", a->have_sparsity ? a->sparsity : out.sparsity);
        config_put_string(o, "hash", spr_hash_family_to_string(a->have_hash ? a->hash : out.hash));
        config_put_int(o, "tables", a->have_tables ? a->tables : out.hash_l);
        config_put_int(o, "bits", a->have_bits ? a->bits : out.hash_k);
        config_put_int(o, "bucket-capacity",
                       a->have_bucket_capacity ? a->bucket_capacity : out.bucket_capacity);
        spr_bucket_policy policy = a->have_bucket_policy ? a->bucket_policy : out.bucket_policy;
        config_put_string(o, "bucket-policy", policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir");
        config_put_string(o, "select", spr_select_to_string(a->have_select ? a->select : out.select));
        config_put_int(o, "threshold", a->have_threshold ? a->threshold : out.select_threshold);
        config_put_float(o, "random-fraction",
                         a->have_random_fraction ? a->random_fraction : out.random_fraction);
        config_put_int(o, "simhash-one-in", a->have_simhash_one_in ? a->simhash_one_in : out.simhash_one_in);
        if (a->have_hidden_sparsity) config_put_float(o, "hidden-sparsity", a->hidden_sparsity);
        else config_put_null(o, "hidden-sparsity");
        config_put_u64(o, "seed", a->have_seed ? a->seed : mc.seed);
        config_put_bool(o, "bf16-state", a->bf16_state);
        config_put_bool(o, "bf16-weights", a->bf16_weights);
    }
    config_put_string(o, "resume", a->resume_path);
    config_put_int(o, "epochs", a->epochs);
    config_put_int(o, "batch", a->have_batch ? a->batch : t.batch_size);
    config_put_float(o, "lr", a->have_lr ? a->lr : t.lr);
    config_put_bool(o, "dense", a->dense);
    config_put_int(o, "random-pool", a->have_random_pool ? a->random_pool : t.random_pool);
    if (a->max_batches) config_put_int(o, "max-batches", a->max_batches);
    else config_put_null(o, "max-batches");
    config_put_int(o, "threads", a->have_threads ? a->threads : t.threads);
    config_put_int(o, "rehash-first", a->have_rehash_first ? a->rehash_first : t.rehash_first);
    config_put_float(o, "rehash-growth", a->have_rehash_growth ? a->rehash_growth : t.rehash_growth);
    config_put_int(o, "rehash-max", a->have_rehash_max ? a->rehash_max : t.rehash_max);
    config_put_int(o, "rebuild-every", a->have_rebuild_every ? a->rebuild_every : t.rebuild_every);
    if (a->clip_norm > 0) config_put_float(o, "clip-norm", a->clip_norm);
    else config_put_null(o, "clip-norm");
    if (a->max_memory) config_put_int(o, "max-memory", a->max_memory);
    else config_put_null(o, "max-memory");
    config_put_string(o, "save", a->save_path);
    if (a->save_every) config_put_int(o, "save-every", a->save_every);
    else if (a->save_every_seconds > 0) config_put_string(o, "save-every", a->save_every_text);
    else config_put_null(o, "save-every");
    config_put_string(o, "metrics", a->metrics_path);
    config_put_bool(o, "quiet", a->quiet);
    config_put_bool(o, "verbose", a->verbose);
    return o;
}

static int print_train_config(const train_args *a) {
    struct cJSON *o = train_config_json(a);
    if (!o || config_write(stdout, o, 1)) {
        config_free(o);
        fprintf(stderr, "sparrow train: out of memory\n");
        return EXIT_INTERNAL;
    }
    config_free(o);
    putchar('\n');
    return EXIT_OK; /* main() checks that it reached stdout */
}

/* The metrics file's first line: what produced the numbers below it, so that a file
 * found months later says how to reproduce it (its "config" is a --config file). */
static int write_metrics_header(FILE *f, const train_args *a, const spr_dataset *train,
                                const spr_dataset *test) {
    struct cJSON *run = config_object(), *head = config_object(), *data = config_object();
    struct cJSON *cfg = train_config_json(a);
    if (!run || !head || !cfg || !data) {
        config_free(run);
        config_free(head);
        config_free(cfg);
        config_free(data);
        fprintf(stderr, "sparrow train: out of memory\n");
        return EXIT_INTERNAL;
    }
    char started[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    config_put_string(run, "command", "train");
    config_put_string(run, "sparrow_version", SPR_VERSION_STRING);
    config_put_string(run, "library_version", spr_version());
    config_put_string(run, "started", started);
    config_put_object(run, "config", cfg);
    /* The sizes, so that a plot can turn samples into epochs. */
    spr_dataset_view tv = spr_dataset_get_view(train);
    config_put_int(data, "train_points", tv.n_points);
    config_put_int(data, "features", tv.n_features);
    config_put_int(data, "labels", tv.n_labels);
    if (test) config_put_int(data, "test_points", spr_dataset_get_view(test).n_points);
    else config_put_null(data, "test_points");
    config_put_object(run, "data", data);
    config_put_object(head, "run", run);
    int bad = config_write(f, head, 0);
    config_free(head);
    fputc('\n', f);
    if (bad || fflush(f) != 0 || ferror(f)) {
        fprintf(stderr, "sparrow: %s: write failed: %s\n", a->metrics_path, strerror(errno));
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* The metrics file, opened for this run's lines. A new run truncates it. A resumed run
 * (resume_step >= 0) continues an existing regular file instead (it used to truncate it,
 * and the first run's history was lost): the lines up to the resumed model's step are
 * kept, later ones dropped (evaluations after the save, which this run redoes), and this
 * run's header and lines follow. The kept part is written beside the file and renamed
 * onto it. NULL on failure, the problem printed and *rc set. */
static FILE *open_metrics(const char *path, int64_t resume_step, int *rc) {
    struct stat sb;
    FILE *f = NULL;
    if (!strcmp(path, "-")) return stdout; /* JSON Lines on stdout (the result line goes to stderr) */
    char *real = NULL; /* through a symbolic link: the file it names is continued */
    if (resume_step >= 0 && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
        (real = realpath(path, NULL))) {
        size_t len;
        char *text = read_text_file("train", path, SIZE_MAX / 2, &len, rc);
        if (!text) {
            free(real);
            return NULL;
        }
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", real, (long)getpid());
        FILE *t = fopen(tmp, "w");
        int bad = !t;
        for (char *line = text; !bad && *line;) {
            char *nl = strchr(line, '\n'), *end = nl ? nl + 1 : line + strlen(line);
            const char *at = strstr(line, "\"step\": ");
            int keep = !at || at >= end || strtoll(at + 8, NULL, 10) <= resume_step;
            if (keep && fwrite(line, 1, (size_t)(end - line), t) != (size_t)(end - line)) bad = 1;
            if (keep && !nl && fputc('\n', t) == EOF) bad = 1; /* a last line cut short */
            line = end;
        }
        free(text);
        if (t && (fclose(t) != 0)) bad = 1;
        if (bad || rename(tmp, real) != 0) {
            fprintf(stderr, "sparrow: %s: cannot continue the metrics file: %s\n", path, strerror(errno));
            unlink(tmp);
            free(real);
            *rc = EXIT_USAGE;
            return NULL;
        }
        free(real);
        f = fopen(path, "a");
    } else {
        f = fopen(path, "w");
    }
    if (!f) {
        fprintf(stderr, "sparrow: %s: cannot open for writing: %s\n", path, strerror(errno));
        *rc = EXIT_USAGE;
    }
    return f;
}

static int train_run(const train_args *args);

/* Whether f is stdout, or another stream onto the file or pipe stdout writes to. */
static int writes_to_stdout(FILE *f) {
    struct stat a, b;
    if (f == stdout) return 1;
    return fstat(fileno(f), &a) == 0 && fstat(STDOUT_FILENO, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_train_args(argc, argv, &a);
    if (rc == EXIT_OK) rc = a.print_config ? print_train_config(&a) : train_run(&a);
    else if (rc == -1) rc = EXIT_OK;
    config_argv_free(&a.config);
    free(a.merged_argv);
    return rc;
}

/* The outputs (--save, --metrics) must not name an input or each other: `--save
 * train.txt` replaced the training file with the model, `--metrics` equal to `--save`
 * lost one of the two. --save may name the --resume model: a run continues in place. */
static int check_output_paths(const train_args *a) {
    const struct {
        const char *path, *opt;
    } in[] = {{a->train_path, "--train"},   {a->test_path, "--test"},
              {a->train_labels, "--train-labels"}, {a->test_labels, "--test-labels"},
              {a->test_filter, "--test-filter-labels"},
              {a->config_path, "--config"}, {a->resume_path, "--resume"},
              {a->save_path, "--save"}},
      out[] = {{a->save_path, "--save"}, {a->metrics_path, "--metrics"}};
    for (size_t o = 0; o < sizeof out / sizeof out[0]; o++)
        for (size_t i = 0; out[o].path && i < sizeof in / sizeof in[0]; i++) {
            if (!in[i].path || !strcmp(in[i].opt, out[o].opt)) continue;
            if (!strcmp(out[o].opt, "--save") && !strcmp(in[i].opt, "--resume")) continue;
            if (same_file(out[o].path, in[i].path))
                return usage_error("train", "%s %s is also the %s file: it would be overwritten",
                                   out[o].opt, out[o].path, in[i].opt);
        }
    return EXIT_OK;
}

/* After a --resume training set was refused: the id base it was read with, where that
 * may be why (the model's record chose it, or the flag given differs from the record). */
static void resume_base_hint(const train_args *a, const spr_data_note *note, int base_from_model) {
    const char *used = a->one_based ? "one" : "zero";
    if (!cli_is_root() || note->points <= 0) return;
    if (base_from_model)
        fprintf(stderr, "sparrow: (%s was read with %s-based feature ids, as the first run of %s read its "
                        "training file; --%s-based reads it otherwise)\n",
                a->train_path, used, a->resume_path, a->one_based ? "zero" : "one");
    else if (a->one_based != note->one_based)
        fprintf(stderr, "sparrow: (%s was read with %s-based feature ids; the model's record says %s-based)\n",
                a->train_path, used, note->one_based ? "one" : "zero");
}

/* A training run with the parsed options. */
static int train_run(const train_args *args) {
    train_args a = *args;
    int rc;
    spr_dataset *train = NULL, *test = NULL, *exclude = NULL;
    spr_model *model = NULL;
    int64_t *rows = NULL, *eval_rows = NULL, *within_rows = NULL;
    double *inv_prop = NULL;
    FILE *metrics = NULL;
    spr_status st;

    rc = check_output_paths(&a);
    /* Fails before hours of training where the model could not be saved. */
    if (!rc && a.save_path && (st = spr_model_save_check(a.save_path)) != SPR_STATUS_OK) rc = library_error(st);
    spr_model_config cfg;
    spr_model_info resumed;          /* the --resume model's counters and sizes */
    spr_data_note note = {0, 0, 0}; /* its record of its training set */
    if (!rc && a.resume_path) {
        /* Peeked at first (its small sections): a wrong file or option fails before the
         * data is read, and a wrong training set before the model (tens of GB) is loaded. */
        if ((st = spr_model_peek(a.resume_path, &cfg, &resumed, &note)) != SPR_STATUS_OK) rc = library_error(st);
        else rc = resume_conflicts(&a, &cfg);
    }
    /* Several ranks: the first agreement (before hours of reading on the others) */
    if ((rc = cli_agree_rc(rc))) goto done;
    /* A resumed model that knows its training set reads the file as its first run did
     * and checks, once read, that it is that set. */
    const int base_from_model = note.points > 0 && !a.one_based && !a.zero_based;
    if (base_from_model) a.one_based = note.one_based;
    spr_read_options ropt = spr_read_options_default();
    ropt.one_based = a.one_based;
    double t0 = now_seconds();
    st = read_dataset(a.train_path, a.train_labels, &ropt, a.quiet, &train);
    if ((rc = cli_agree_status(st))) { /* on several ranks: told once, every rank ends cleanly */
        resume_base_hint(&a, &note, base_from_model);
        goto done;
    }
    /* Checks of the data every rank read: rank 0 tells, all agree and end alike. */
    spr_dataset_view tv = spr_dataset_get_view(train);
    const uint64_t digest = spr_dataset_digest(train);
    const spr_data_note trained_on = {tv.n_points, digest, a.one_based}; /* recorded in the model */
    int64_t model_labels = a.resume_path ? resumed.labels_total : tv.n_labels;
    rc = require_points(train, a.train_path, "training", a.train_labels ? NULL : "--train-labels");
    if (!rc && note.points > 0 && (note.points != tv.n_points || note.digest != digest)) {
        if (cli_is_root()) /* every rank read the same data: one line */
            fprintf(stderr, "sparrow: %s is not the training set of %s (it has %lld points, digest %016llx; "
                            "the model was trained on %lld points, digest %016llx): resume with the --train "
                            "of the first run\n",
                    a.train_path, a.resume_path, (long long)tv.n_points, (unsigned long long)digest,
                    (long long)note.points, (unsigned long long)note.digest);
        resume_base_hint(&a, &note, base_from_model);
        rc = EXIT_USAGE;
    } else if (!rc && a.resume_path && (tv.n_features > cfg.n_features || tv.n_labels > model_labels)) {
        if (cli_is_root()) /* every rank read the same data: one line */
            fprintf(stderr, "sparrow: %s: %lld features and %lld labels, more than the %lld and %lld of %s "
                            "(resume with the training set of the first run)\n",
                    a.train_path, (long long)tv.n_features, (long long)tv.n_labels,
                    (long long)cfg.n_features, (long long)model_labels, a.resume_path);
        resume_base_hint(&a, &note, base_from_model);
        rc = EXIT_USAGE;
    }
    if ((rc = cli_agree_rc(rc))) goto done;
    if (a.test_path) {
        /* The model's sizes come from the training set (or the resumed model): test ids
         * are checked against them. */
        ropt.n_features = a.resume_path ? cfg.n_features : tv.n_features;
        ropt.n_labels = model_labels;
        st = read_dataset(a.test_path, a.test_labels, &ropt, a.quiet, &test);
        if ((rc = cli_agree_status(st))) goto done;
        if ((rc = cli_agree_rc(require_points(test, a.test_path, "test", a.test_labels ? NULL : "--test-labels"))))
            goto done;
        note_if_training_set(&trained_on, test, a.test_path);
        if (a.test_filter && (rc = cli_agree_status(read_filter(a.test_filter, test, model_labels, &exclude))))
            goto done;
    }
    double read_seconds = now_seconds() - t0;

    if (!a.resume_path) {
        cfg = train_model_config(&a, tv.n_features, tv.n_labels);
        if ((rc = cli_agree_status(spr_model_config_check(&cfg)))) goto done;
    }
    spr_train_options topt = spr_train_options_default();
    if (a.have_batch) topt.batch_size = a.batch;
    /* A batch larger than the data set is the data set: the same steps, without scratch
     * sized for the batch asked (--batch 2147483647 ran out of memory). */
    if (topt.batch_size > tv.n_points && tv.n_points > 0) topt.batch_size = (int)tv.n_points;
    if (a.have_lr) topt.lr = (float)a.lr;
    if (a.have_threads) topt.threads = a.threads;
    topt.dense = a.dense;
    if (a.have_rehash_first) topt.rehash_first = a.rehash_first;
    if (a.have_rehash_growth) topt.rehash_growth = (float)a.rehash_growth;
    if (a.have_rehash_max) topt.rehash_max = a.rehash_max;
    if (a.have_rebuild_every) topt.rebuild_every = a.rebuild_every;
    topt.clip_norm = (float)a.clip_norm;
    if (a.have_random_pool) topt.random_pool = a.random_pool;

    /* Where a resumed run continues: after info.epoch complete epochs and the samples of
     * the next one that the model's sample count says were trained (samples, not steps:
     * --batch may differ from the first run's). The count must fit the training set, or
     * this is not the set that trained the model. */
    int64_t first_epoch = 1, skip_rows = 0;
    if (a.resume_path) {
        const spr_model_info mi = resumed;
        first_epoch = mi.epoch + 1;
        skip_rows = mi.epoch > mi.samples / tv.n_points ? -1 : mi.samples - mi.epoch * tv.n_points;
        if (skip_rows < 0 || skip_rows >= tv.n_points) {
            fprintf(stderr,
                    "sparrow: %s: %lld samples after %lld complete epochs do not fit %s's %lld "
                    "points: resume with the --train of the first run\n",
                    a.resume_path, (long long)mi.samples, (long long)mi.epoch, a.train_path,
                    (long long)tv.n_points);
            rc = EXIT_USAGE;
        }
        if ((rc = cli_agree_rc(rc))) goto done;
        if (mi.epoch >= a.epochs) { /* every rank alike: the same model, the same options */
            if (cli_is_root())
                fprintf(stderr,
                        "sparrow: %s has completed %lld epochs, --epochs is %lld: nothing to train "
                        "(--epochs counts the epochs of the first run too)\n",
                        a.resume_path, (long long)mi.epoch, (long long)a.epochs);
            rc = EXIT_OK;
            goto done;
        }
    }
    if (a.resume_path &&
        (rc = cli_agree_status(cli_dist ? spr_model_load_sharded(a.resume_path, cli_dist, &model)
                                        : spr_model_load(a.resume_path, &model))))
        goto done;
    /* The metrics file (rank 0), the memory check, the model, its scratch: one agreement */
    if (a.metrics_path && cli_is_root() &&
        (metrics = open_metrics(a.metrics_path, a.resume_path ? resumed.steps : -1, &rc)))
        rc = write_metrics_header(metrics, &a, train, test);
    if (!rc && !model) { /* refuse, with the figure, a model that does not fit */
        int64_t need = 0, limit = a.max_memory ? a.max_memory : available_memory();
        /* Several ranks: each holds its shard, and --max-memory is per rank (the
         * available memory is shared out as if all ranks ran on this machine). */
        int rank = cli_dist ? spr_dist_rank(cli_dist) : 0, ranks = cli_dist ? spr_dist_size(cli_dist) : 1;
        if (!a.max_memory) limit /= ranks;
        /* One process: what training with these options touches (deferred training
         * leaves the output layer's gradient rows reserved untouched). */
        st = cli_dist ? spr_model_config_memory_sharded(&cfg, rank, ranks, &need)
                      : spr_model_config_memory_training(&cfg, &topt, &need);
        if (st != SPR_STATUS_OK) {
            rc = library_error(st);
        } else if (limit > 0 && need > limit) {
            fprintf(stderr,
                    "sparrow train: the model needs %.1f MB (parameters, Adam state, hash tables, "
                    "and gradients where training writes them)%s, more than %s %.*f MB\n",
                    (double)need / 1e6, ranks > 1 ? " on this rank" : "",
                    a.max_memory ? "--max-memory" : "the available", limit < 100000 ? 6 : 1,
                    (double)limit / 1e6); /* --max-memory 1K: 0.001024 MB, not 0.0 */
            rc = EXIT_USAGE;
        }
    }
    if (!rc && !model && (st = cli_dist ? spr_model_create_sharded(&cfg, cli_dist, &model)
                                        : spr_model_create(&cfg, &model)) != SPR_STATUS_OK)
        rc = library_error(st);
    if (!rc) {
        if (a.verbose) spr_model_set_logger(model, log_to_stderr, NULL);
        spr_model_set_data_note(model, &trained_on);
        if ((st = spr_model_prepare(model, &topt, max_labels_per_point(&tv))) != SPR_STATUS_OK)
            rc = library_error(st);
    }
    if ((rc = cli_agree_rc(rc))) goto done;

    spr_model_info info = spr_model_get_info(model);
    if (!cli_is_root()) a.quiet = 1;
    if (cli_is_root()) {
        fprintf(stderr, "sparrow train: %s%s%s: %lld points, %lld features, %lld labels",
                    a.train_path, a.train_labels ? " + " : "", a.train_labels ? a.train_labels : "",
                    (long long)tv.n_points, (long long)tv.n_features, (long long)tv.n_labels);
        if (test)
            fprintf(stderr, "; %s%s%s: %lld points", a.test_path, a.test_labels ? " + " : "",
                    a.test_labels ? a.test_labels : "", (long long)spr_dataset_get_view(test).n_points);
        fprintf(stderr, " (read in %.2f s)\n", read_seconds);
        /* the densities the model chose (simhash_one_in 0) */
        for (int l = 0; l < cfg.n_layers; l++)
            cfg.layers[l].simhash_one_in = spr_model_get_config(model).layers[l].simhash_one_in;
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
            fprintf(stderr, "  resuming %s: step %lld, epoch %lld at sample %lld of %lld; %s\n",
                    a.resume_path, (long long)info.steps, (long long)first_epoch,
                    (long long)skip_rows + 1, (long long)tv.n_points,
                    note.points > 0 ? "the training set is the one it records"
                                    : "it records no training set (saved before session 19): only the "
                                      "set's size was checked");
        if (cli_dist)
            fprintf(stderr, "  %d MPI ranks: the output layer split by label range, one shard per "
                            "rank (this rank's shown above)\n", spr_dist_size(cli_dist));
    }

    train_state s;
    memset(&s, 0, sizeof s);
    s.args = &a;
    s.model = model;
    s.test = test;
    s.exclude = exclude;
    s.metrics = metrics;
    s.last_layer = cfg.n_layers - 1;
    s.threads = topt.threads;
    s.seed = cfg.seed;
    s.first_epoch = first_epoch;
    s.skip_rows = skip_rows;
    s.saved_step = -1;
    s.saved_at = now_seconds();
    if (test) {
        rc = eval_subset(spr_dataset_get_view(test).n_points, a.eval_max, &eval_rows, &s.eval_n);
        s.eval_rows = eval_rows;
        if (!rc && eval_rows)
            fprintf(stderr, "  evaluating on %lld test points drawn at random (fixed seed)\n",
                    (long long)s.eval_n);
        s.within_rows = s.eval_rows;
        s.within_n = s.eval_n;
        if (!rc && a.eval_every > 0 && !a.eval_max) {
            /* The default subset of the evaluations within an epoch: drawn like
             * --eval-max's (the same fixed seed), EVAL_EVERY_POINTS points. */
            rc = eval_subset(spr_dataset_get_view(test).n_points, EVAL_EVERY_POINTS, &within_rows,
                             &s.within_n);
            s.within_rows = within_rows;
        }
        if (!rc && a.eval_every > 0)
            fprintf(stderr, "  evaluating every %lld batches on %lld test points drawn at random "
                            "(fixed seed)\n",
                    (long long)a.eval_every, (long long)s.within_n);
        if (!rc && a.propensity) { /* PSP@k's weights, from the training set's label counts */
            s.n_prop = spr_model_get_info(model).labels_total;
            if (!(inv_prop = malloc((size_t)s.n_prop * sizeof *inv_prop))) {
                fprintf(stderr, "sparrow: out of memory for %lld propensities\n", (long long)s.n_prop);
                rc = EXIT_INTERNAL;
            } else if ((st = spr_inv_propensities(train, a.psp_a, a.psp_b, s.n_prop, inv_prop))) {
                rc = library_error(st);
            }
            s.inv_prop = inv_prop;
        }
    }
    if (!rc && !(rows = malloc((size_t)tv.n_points * sizeof *rows))) {
        fprintf(stderr, "sparrow: out of memory for %lld row ids\n", (long long)tv.n_points);
        rc = EXIT_INTERNAL;
    }
    if ((rc = cli_agree_rc(rc))) goto done;
    cli_dist_settle(); /* from here each rank speaks for itself */
    /* From here a signal stops the loop cleanly; before, it ends the process (nothing
     * to save yet, and reading a large data set should not have to finish first). */
    catch_stop_signals();
    rc = train_loop(&s, train, &topt, rows);
    /* A full disk under the metrics file, or an evaluation that failed (out of memory:
     * inference allocates), stops training, but the steps done are sound: they are saved,
     * as an interrupted run's are (on every rank for the metrics: they agreed on the
     * failure; an evaluation failed on one rank while the others wait in its collective,
     * so a sharded save could not complete: one process only). A failed step (a diverged
     * loss) is not. */
    const int single = !cli_dist || spr_dist_size(cli_dist) == 1;
    const int metrics_rc = rc && (s.metrics_failed || (s.eval_failed && single)) ? rc : EXIT_OK;
    if (rc && !metrics_rc) goto done;

    if (a.save_path) {
        if ((st = spr_model_save(model, a.save_path)) != SPR_STATUS_OK) {
            rc = library_error(st);
            goto done;
        }
        if (cli_is_root()) fprintf(stderr, "saved %s\n", a.save_path);
    }
    if (metrics_rc) {
        if (cli_is_root())
            fprintf(stderr, "sparrow: training stopped at step %lld, %s; %s\n",
                    (long long)spr_model_get_info(model).steps,
                    s.metrics_failed ? "the metrics file unwritable" : "the evaluation failed",
                    a.save_path ? "the model is saved (--resume continues it)" : "model not saved (no --save)");
        rc = metrics_rc;
        goto done;
    }
    double sps = s.train_seconds > 0 ? (double)s.samples / s.train_seconds : 0;
    if (cli_dist) print_rank_summary(model, &s);
    /* The result line on stdout, unless the metrics' JSON Lines go there (--metrics - or
     * /dev/stdout): a reader of them (sparrow plot -) then sees only JSON. */
    FILE *out = metrics && writes_to_stdout(metrics) ? stderr : stdout;
    if (s.have_last)
        fprintf(out, "P@1 %.4f P@5 %.4f samples/s %.1f train_seconds %.3f\n", s.last.p_at[1],
                s.last.p_at[5], sps, s.train_seconds);
    else
        fprintf(out, "P@1 n/a P@5 n/a samples/s %.1f train_seconds %.3f\n", sps, s.train_seconds);
    rc = EXIT_OK;
    /* On several ranks the signal they agreed to stop at (one that reached a rank after
     * the last batch does not change how the run ended, on any rank). */
    const int stopped_by = cli_dist ? s.stopped : stop_signal;
    if (stopped_by) {
        fflush(stdout);
        if (cli_is_root() && a.save_path)
            fprintf(stderr, "sparrow: interrupted at step %lld, model saved to %s\n",
                    (long long)spr_model_get_info(model).steps, a.save_path);
        else if (cli_is_root())
            fprintf(stderr, "sparrow: interrupted at step %lld, model not saved (no --save)\n",
                    (long long)spr_model_get_info(model).steps);
        rc = EXIT_SIGNAL_BASE + stopped_by;
    }

done:
    if (metrics == stdout) metrics = NULL; /* main() flushes and checks stdout */
    if (metrics && fclose(metrics) != 0 && rc == EXIT_OK) {
        fprintf(stderr, "sparrow: %s: write failed: %s\n", a.metrics_path, strerror(errno));
        rc = EXIT_USAGE;
    }
    free(rows);
    free(eval_rows);
    free(within_rows);
    free(inv_prop);
    spr_model_free(model);
    spr_dataset_free(exclude);
    spr_dataset_free(test);
    spr_dataset_free(train);
    return rc;
}

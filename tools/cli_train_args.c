/* cli_train_args.c: `sparrow train`'s options: its help, the command line (and the
 * --config file merged into it), the model configuration they give, the checks of
 * --resume against the model and of the output paths, and --print-config. The run
 * itself is cli_train.c. */
#include "cli_train.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "  --init-std X          initial weights drawn from N(0, X^2), X in [0, 10);\n"
    "                        default 0.1 (SLIDE's 0.01 trains the presets to a far\n"
    "                        worse P@1, two hidden layers most: README, \"Initial\n"
    "                        weights\")\n"
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
    "                        --batch, --lr, --threads, --dense, --lazy-adam,\n"
    "                        --random-pool and the\n"
    "                        --rehash-* options may change, but must be the first\n"
    "                        run's for an exact continuation (with --threads 1 the\n"
    "                        result is then bit for bit that of an uninterrupted run);\n"
    "                        without --lr it continues at the model's last lr\n"
    "  --epochs N            passes over the training set (default 1); with --resume\n"
    "                        the total, counting the epochs MODEL has done\n"
    "  --batch B             samples per optimizer step\n"
    "  --lr X                Adam learning rate\n"
    "  --dense               compute every output neuron (the exact reference)\n"
    "  --lazy-adam           a row without gradient in a step keeps its weights and\n"
    "                        moments, even later (torch.optim.SparseAdam, SLIDE); by\n"
    "                        default a row stepped again first catches up on the steps\n"
    "                        it missed as torch.optim.Adam takes them (README, \"Adam\")\n"
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
    T_HIDDEN_SPARSITY, T_INIT_STD, T_REHASH_FIRST, T_REHASH_GROWTH, T_REHASH_MAX, T_REBUILD, T_RANDOM_FRACTION,
    T_RESUME, T_MAX_MEMORY, T_CLIP_NORM, T_EVAL_EVERY, T_CONFIG, T_PRINT_CONFIG,
    T_BF16_STATE, T_RANDOM_POOL, T_BF16_WEIGHTS, T_SIMHASH_ONE_IN, T_PROPENSITY, T_SAVE_EVERY,
    T_TRAIN_LABELS, T_TEST_LABELS, T_TEST_FILTER, T_LAZY_ADAM
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

/* Fills a from the command line; returns an exit code (EXIT_OK to go on, or -1 after
 * --help). */
int parse_train_args(int argc, char **argv, train_args *a) {
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
        {"lazy-adam", no_argument, 0, T_LAZY_ADAM},
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
        {"init-std", required_argument, 0, T_INIT_STD},
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
        case T_LAZY_ADAM: a->lazy_adam = 1; break;
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
        case T_INIT_STD:
            if ((rc = parse_float(cmd, "--init-std", optarg, &a->init_std))) break;
            if (!(a->init_std >= 0 && a->init_std < 10))
                rc = usage_error(cmd, "--init-std must be in [0, 10), got %s", optarg);
            a->have_init_std = 1;
            break;
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
spr_model_config train_model_config(const train_args *a, int64_t n_features, int64_t n_labels) {
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
    if (a->have_init_std) cfg.init_std = (float)a->init_std;
    cfg.bf16_state = a->bf16_state;
    cfg.bf16_weights = a->bf16_weights;
    return cfg;
}

/* With --resume the model options come from the model: one given on the command line
 * must agree with it, or the run would silently not be what the user asked for. */
int resume_conflicts(const train_args *a, const spr_model_config *cfg) {
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
        {a->have_init_std && cfg->init_std != (float)a->init_std, "--init-std"},
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

/* The effective options as a configuration object (cli_config.c): what --print-config
 * prints and the metrics file records. Options left to the library get the library's
 * defaults written out; those whose absence means something (no test set, no clipping,
 * the available memory) are null. With --resume the model options are null: they
 * come from the model. */
struct cJSON *train_config_json(const train_args *a) {
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
            "init-std", "bf16-state", "bf16-weights"};
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
        config_put_float(o, "init-std", a->have_init_std ? a->init_std : mc.init_std);
        config_put_bool(o, "bf16-state", a->bf16_state);
        config_put_bool(o, "bf16-weights", a->bf16_weights);
    }
    config_put_string(o, "resume", a->resume_path);
    config_put_int(o, "epochs", a->epochs);
    config_put_int(o, "batch", a->have_batch ? a->batch : t.batch_size);
    config_put_float(o, "lr", a->have_lr ? a->lr : t.lr);
    config_put_bool(o, "dense", a->dense);
    config_put_bool(o, "lazy-adam", a->lazy_adam);
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

int print_train_config(const train_args *a) {
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

/* The outputs (--save, --metrics) must not name an input or each other: `--save
 * train.txt` replaced the training file with the model, `--metrics` equal to `--save`
 * lost one of the two. --save may name the --resume model: a run continues in place. */
int check_output_paths(const train_args *a) {
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

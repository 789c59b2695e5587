/* cli_gen.c: `sparrow gen`, a synthetic data set written to a directory. */
#include "cli.h"
#include "progress.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    if (stat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR; /* not mkdir's EEXIST: "File exists" hid what was wrong */
        return -1;
    }
    return 0;
}

/* The temporaries spr_synth_generate writes before renaming them into place
 * ("PATH.tmp.<pid>"): a signal that ends gen removes them first (a 670K set left a
 * 190 MB file behind). Only async-signal-safe calls in the handler. */
static char gen_tmp[2][4200];

static void on_gen_signal(int sig) {
    for (int i = 0; i < 2; i++)
        if (gen_tmp[i][0]) unlink(gen_tmp[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void clean_up_on_signals(const char *train_path, const char *test_path) {
    snprintf(gen_tmp[0], sizeof gen_tmp[0], "%s.tmp.%ld", train_path, (long)getpid());
    snprintf(gen_tmp[1], sizeof gen_tmp[1], "%s.tmp.%ld", test_path, (long)getpid());
    const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction old;
        if (sigaction(signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        signal(signals[i], on_gen_signal);
    }
}

/* ------------------------------------------------------------------ gen */

static const char GEN_HELP[] =
    "usage: sparrow gen --preset NAME --out DIR [--seed S] [--threads T] [sizes]\n"
    "\n"
    "Writes a synthetic extreme-classification data set, DIR/train.txt and DIR/test.txt,\n"
    "in the Extreme Classification Repository format (header \"N D L\", then\n"
    "\"l1,l2 f:v f:v ...\" per point, 0-based ids). DIR is created if needed.\n"
    "\n"
    "  --preset NAME   tiny, small, amazon670k, delicious200k, wiki325k\n"
    "  --out DIR       output directory\n"
    "  --seed S        random seed (default 1); the same seed gives the same files\n"
    "  --threads T     worker threads (default 0: all cores); the output does not\n"
    "                  depend on it\n"
    "  --quiet         no progress on stderr\n"
    "sizes (the preset's shape at another scale: a benchmark at your label count)\n"
    "  --train-points N, --test-points N, --features N, --labels N\n"
    "  --labels-per-point X, --nnz-per-point X   means per point\n";

int cmd_gen(int argc, char **argv) {
    const char *cmd = "gen";
    const char *preset = NULL, *out_dir = NULL;
    uint64_t seed = 1;
    int threads = 0, quiet = 0;
    enum { G_TRAIN = 256, G_TEST, G_FEATURES, G_LABELS, G_LPP, G_NPP };
    static const struct option opts[] = {
        {"preset", required_argument, 0, 'p'}, {"out", required_argument, 0, 'o'},
        {"seed", required_argument, 0, 's'},   {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, OPT_HELP},
        {"train-points", required_argument, 0, G_TRAIN}, {"test-points", required_argument, 0, G_TEST},
        {"features", required_argument, 0, G_FEATURES},  {"labels", required_argument, 0, G_LABELS},
        {"labels-per-point", required_argument, 0, G_LPP}, {"nnz-per-point", required_argument, 0, G_NPP},
        {0, 0, 0, 0}};
    /* the sizes given, applied to the preset once it is known (-1: the preset's) */
    int64_t n_train = -1, n_test = -1, n_features = -1, n_labels = -1;
    double lpp = -1, npp = -1;
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc = EXIT_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': preset = optarg; break;
        case 'o': out_dir = optarg; break;
        case 's':
            if ((rc = parse_u64(cmd, "--seed", optarg, &seed))) return rc;
            break;
        case 't':
            if ((rc = parse_int(cmd, "--threads", optarg, 0, SPR_MAX_THREADS, &threads))) return rc;
            break;
        case 'q': quiet = 1; break;
        case G_TRAIN: rc = parse_int64(cmd, "--train-points", optarg, 1, INT32_MAX, &n_train); break;
        case G_TEST: rc = parse_int64(cmd, "--test-points", optarg, 1, INT32_MAX, &n_test); break;
        case G_FEATURES: rc = parse_int64(cmd, "--features", optarg, 1, INT32_MAX, &n_features); break;
        case G_LABELS: rc = parse_int64(cmd, "--labels", optarg, 1, INT32_MAX, &n_labels); break;
        case G_LPP: rc = parse_double(cmd, "--labels-per-point", optarg, &lpp); break;
        case G_NPP: rc = parse_double(cmd, "--nnz-per-point", optarg, &npp); break;
        case OPT_HELP: fputs(GEN_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
        if (rc) return rc;
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!preset) return usage_error(cmd, "--preset is required (see 'sparrow gen --help')");
    if (!out_dir) return usage_error(cmd, "--out is required (see 'sparrow gen --help')");
    if (!strcmp(out_dir, "-")) /* it made a directory named "-" */
        return usage_error(cmd, "--out -: gen writes train.txt and test.txt into the directory "
                                "--out names, not to stdout: name a directory");

    spr_synth_config config;
    spr_status st = spr_synth_preset(preset, &config);
    if (st != SPR_STATUS_OK) return library_error(st);
    if (n_train > 0) config.n_train = n_train;
    if (n_test > 0) config.n_test = n_test;
    if (n_features > 0) config.n_features = n_features;
    if (n_labels > 0) config.n_labels = n_labels;
    if (lpp >= 0) config.labels_per_point = lpp;
    if (npp >= 0) config.nnz_per_point = npp;
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

    clean_up_on_signals(train_path, test_path);
    spr_threads_start(threads);
    double t0 = now_seconds();
    progress bar;
    progress_start(&bar, "gen", "points", config.n_train + config.n_test, quiet);
    st = spr_synth_generate_progress(&config, seed, train_path, test_path, threads,
                                     progress_callback, &bar);
    progress_finish(&bar);
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

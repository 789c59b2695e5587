/* cli_eval.c: the commands that use a saved model: `sparrow eval`, `predict` and `info`. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t model_labels(const spr_model *model) {
    return spr_model_get_info(model).labels_total; /* all ranks' labels if sharded */
}

/* ------------------------------------------------------------------ eval */

static const char EVAL_HELP[] =
    "usage: sparrow eval --model MODEL --test FILE [options]\n"
    "\n"
    "Evaluates a saved model; the last line of stdout is a JSON object with p_at_1,\n"
    "p_at_3, p_at_5 (precision@k), ndcg_at_1, ndcg_at_3, ndcg_at_5 (nDCG@k, binary\n"
    "relevance, the XMC repository's definition), points, seconds and inference\n"
    "(\"exact\" or \"sparse\"); with --propensity-train also psp_at_1, psp_at_3,\n"
    "psp_at_5 and psndcg_at_1, psndcg_at_3, psndcg_at_5 (PSP@k, PSnDCG@k).\n"
    "\n"
    "  --model MODEL         a model saved by 'sparrow train --save'\n"
    "  --test FILE           test set (XMC format with header, or svmlight; or the\n"
    "                        features file of the XMC repository's split format,\n"
    "                        tst_X_Xf.txt, with --test-labels)\n"
    "  --test-labels FILE    the labels of --test in the split format (tst_X_Y.txt)\n"
    "  --k K                 also report p_at_K when K is not 1, 3 or 5 (default 5)\n"
    "  --sparse-inference    rank only the LSH candidates (sublinear) instead of all labels\n"
    "  --recall N            also report sampling_recall_at_N: the mean fraction of each\n"
    "                        point's exact top-N outputs that the sampler makes active\n"
    "  --eval-max N          evaluate on N points drawn uniformly at random without\n"
    "                        replacement with a fixed seed (the same subset as\n"
    "                        'sparrow train --eval-max N')\n"
    "  --propensity-train FILE\n"
    "                        also report PSP@1/3/5 (propensity-scored precision),\n"
    "                        the propensities from FILE's label counts (the training\n"
    "                        set; Jain et al. 2016)\n"
    "  --propensity-train-labels FILE\n"
    "                        its labels, when FILE is a split-format features file\n"
    "  --propensity A,B      the propensity model's constants (default 0.55,1.5, the\n"
    "                        XMC repository's; Amazon sets 0.6,2.6, Wikipedia 0.5,0.4)\n"
    "  --filter-labels FILE  leave out of each point's ranking the labels FILE pairs it\n"
    "                        with (the XMC repository's filter_labels_test.txt: a line\n"
    "                        \"POINT LABEL\" per pair, 0-based; its filtered P@k of the\n"
    "                        LF-* sets); the point's own labels are not changed\n"
    "  --threads T           worker threads (default 0: all cores)\n"
    "  --one-based           feature ids in the files start at 1; --zero-based: at 0\n"
    "                        (default: as in the model's training file, else 0)\n";

/* --one-based (one = 1) or --zero-based (one = 0) into *base (-1: neither yet). */
static int set_id_base(const char *cmd, int one, int *base) {
    if (*base >= 0 && *base != one) return usage_error(cmd, "--one-based and --zero-based contradict each other");
    *base = one;
    return EXIT_OK;
}

/* Inverse propensities of the model's labels from the training set at path (its ids
 * checked against the model, as the test set's). *out: (labels), free() it. */
static int read_propensities(const char *path, const char *labels_path, const spr_model *model,
                             int one_based, double a, double b, double **out) {
    spr_read_options ropt = spr_read_options_default();
    ropt.one_based = one_based;
    ropt.n_features = spr_model_get_config(model).n_features;
    ropt.n_labels = spr_model_get_info(model).labels_total;
    spr_dataset *train = NULL;
    int rc = cli_agree_status(read_dataset(path, labels_path, &ropt, 0, &train));
    if (!rc)
        rc = cli_agree_rc(require_points(train, path, "training", labels_path ? NULL : "--propensity-train-labels"));
    if (rc) { /* (read here, but another rank failed: freed too) */
        spr_dataset_free(train);
        return rc;
    }
    *out = malloc((size_t)ropt.n_labels * sizeof **out);
    if (!*out) {
        fprintf(stderr, "sparrow: out of memory for %lld propensities\n", (long long)ropt.n_labels);
        rc = EXIT_INTERNAL;
    } else {
        spr_status st = spr_inv_propensities(train, a, b, ropt.n_labels, *out);
        if (st != SPR_STATUS_OK) rc = library_error(st);
    }
    spr_dataset_free(train);
    return cli_agree_rc(rc);
}

/* Precision@k for k outside the library's 1/3/5: top-k in chunks (without each point's
 * excluded labels), hits / k per point. */
static int precision_at_k(const spr_model *model, const spr_dataset *data, const int64_t *rows,
                          int64_t n, int k, int sparse, int threads, const spr_dataset *exclude,
                          double *out) {
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
    }
    /* Several ranks: a failure here or in the library is agreed on (none waits in a
     * collective for a rank that left), every rank ends without MPI_Abort. */
    if ((rc = cli_agree_rc(rc))) goto done;
    for (int64_t start = 0; start < n; start += chunk) {
        int64_t m = (start + chunk <= n) ? chunk : n - start;
        for (int64_t i = 0; i < m; i++) ids_rows[i] = rows ? rows[start + i] : start + i;
        spr_status st = spr_model_predict_excluding(model, data, ids_rows, m, k, sparse, threads, exclude,
                                                    ids, scores);
        if (st != SPR_STATUS_OK) {
            rc = cli_agree_library_error(st);
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

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    const char *model_path = NULL, *test_path = NULL, *psp_train = NULL, *psp_text = NULL;
    const char *test_labels = NULL, *psp_train_labels = NULL; /* split format: the labels files */
    const char *filter_path = NULL;                           /* --filter-labels */
    spr_dataset *exclude = NULL;
    int k = 5, sparse = 0, threads = 0, one_based = -1, recall_top = 0;
    int64_t eval_max = 0;
    double psp_a = 0.55, psp_b = 1.5, *inv_prop = NULL;
    enum { E_MODEL = 256, E_TEST, E_K, E_SPARSE, E_THREADS, E_EVAL_MAX, E_ONE_BASED, E_ZERO_BASED, E_RECALL,
           E_PSP_TRAIN, E_PSP, E_TEST_LABELS, E_PSP_TRAIN_LABELS, E_FILTER };
    static const struct option opts[] = {
        {"model", required_argument, 0, E_MODEL},
        {"test", required_argument, 0, E_TEST},
        {"k", required_argument, 0, E_K},
        {"sparse-inference", no_argument, 0, E_SPARSE},
        {"recall", required_argument, 0, E_RECALL},
        {"threads", required_argument, 0, E_THREADS},
        {"eval-max", required_argument, 0, E_EVAL_MAX},
        {"one-based", no_argument, 0, E_ONE_BASED},
        {"zero-based", no_argument, 0, E_ZERO_BASED},
        {"propensity-train", required_argument, 0, E_PSP_TRAIN},
        {"test-labels", required_argument, 0, E_TEST_LABELS},
        {"propensity-train-labels", required_argument, 0, E_PSP_TRAIN_LABELS},
        {"filter-labels", required_argument, 0, E_FILTER},
        {"propensity", required_argument, 0, E_PSP},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc = EXIT_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case E_MODEL: model_path = optarg; break;
        case E_TEST: test_path = optarg; break;
        case E_K: rc = parse_int(cmd, "--k", optarg, 1, SPR_MAX_K, &k); break;
        case E_SPARSE: sparse = 1; break;
        case E_RECALL: rc = parse_int(cmd, "--recall", optarg, 1, 1000, &recall_top); break;
        case E_THREADS: rc = parse_int(cmd, "--threads", optarg, 0, SPR_MAX_THREADS, &threads); break;
        case E_EVAL_MAX: rc = parse_int64(cmd, "--eval-max", optarg, 1, INT64_MAX, &eval_max); break;
        case E_ONE_BASED:
        case E_ZERO_BASED: rc = set_id_base(cmd, c == E_ONE_BASED, &one_based); break;
        case E_PSP_TRAIN: psp_train = optarg; break;
        case E_TEST_LABELS: test_labels = optarg; break;
        case E_PSP_TRAIN_LABELS: psp_train_labels = optarg; break;
        case E_FILTER: filter_path = optarg; break;
        case E_PSP:
            psp_text = optarg;
            rc = parse_propensity(cmd, "--propensity", optarg, &psp_a, &psp_b);
            break;
        case OPT_HELP: fputs(EVAL_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
        if (rc) return rc;
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!model_path) return usage_error(cmd, "--model is required (see 'sparrow eval --help')");
    if (!test_path) return usage_error(cmd, "--test is required (see 'sparrow eval --help')");
    if (psp_text && !psp_train)
        return usage_error(cmd, "--propensity needs --propensity-train FILE (the training set)");
    if (psp_train_labels && !psp_train)
        return usage_error(cmd, "--propensity-train-labels needs --propensity-train FILE (its features)");
    const char *const in_opts[] = {"--test", "--propensity-train", "--test-labels", "--propensity-train-labels",
                                   "--filter-labels"};
    const char *const in_paths[] = {test_path, psp_train, test_labels, psp_train_labels, filter_path};
    if ((rc = stdin_once(cmd, 5, in_opts, in_paths)) ||
        (rc = split_pair_distinct(cmd, "--test", test_path, "--test-labels", test_labels)) ||
        (rc = split_pair_distinct(cmd, "--propensity-train", psp_train, "--propensity-train-labels",
                                  psp_train_labels)))
        return rc;

    spr_model *model = NULL;
    spr_dataset *test = NULL;
    int64_t *rows = NULL, n = 0;
    spr_threads_start(threads);
    if ((rc = load_model_and_data(model_path, test_path, test_labels, &one_based, 1, sparse || recall_top > 0,
                                  threads, &model, &test)))
        return rc;
    if ((rc = cli_agree_rc(require_points(test, test_path, "test", test_labels ? NULL : "--test-labels"))))
        goto done;
    const spr_data_note note = spr_model_get_data_note(model);
    note_if_training_set(&note, test, test_path);
    if ((rc = cli_agree_rc(eval_subset(spr_dataset_get_view(test).n_points, eval_max, &rows, &n)))) goto done;
    if (psp_train &&
        (rc = read_propensities(psp_train, psp_train_labels, model, one_based, psp_a, psp_b, &inv_prop)))
        goto done;
    if (filter_path && (rc = cli_agree_status(read_filter(filter_path, test, model_labels(model), &exclude))))
        goto done;
    cli_dist_settle();

    spr_eval_result res;
    double t0 = now_seconds();
    spr_status st = spr_model_evaluate_excluding(model, test, rows, n, sparse, threads, inv_prop,
                                                 inv_prop ? spr_model_get_info(model).labels_total : 0, exclude,
                                                 &res);
    double seconds = now_seconds() - t0;
    if (st != SPR_STATUS_OK) {
        rc = cli_agree_library_error(st);
        goto done;
    }
    double p_extra = 0;
    int extra = (k != 1 && k != 3 && k != 5);
    if (extra) {
        int kk = (int64_t)k > model_labels(model) ? (int)model_labels(model) : k;
        if ((rc = precision_at_k(model, test, rows, n, kk, sparse, threads, exclude, &p_extra)))
            goto done;
        if (kk < k) p_extra = p_extra * kk / k; /* fewer labels than k: the rest are misses */
    }
    /* Everything that can fail before the first byte of the line: a failure used to
     * leave half a JSON object on stdout. */
    double recall = 0;
    if (recall_top > 0 &&
        (st = spr_model_sampling_recall(model, test, rows, n, recall_top, threads, &recall))) {
        rc = library_error(st);
        goto done;
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
    for (int q = 1; q <= 5; q += 2) {
        printf(", \"ndcg_at_%d\": ", q);
        json_number(stdout, res.ndcg_at[q]);
    }
    for (int q = 1; q <= 5 && inv_prop; q += 2) {
        printf(", \"psp_at_%d\": ", q);
        json_number(stdout, res.psp_at[q]);
    }
    for (int q = 1; q <= 5 && inv_prop; q += 2) {
        printf(", \"psndcg_at_%d\": ", q);
        json_number(stdout, res.psndcg_at[q]);
    }
    if (recall_top > 0) {
        printf(", \"sampling_recall_at_%d\": ", recall_top);
        json_number(stdout, recall);
    }
    printf(", \"points\": %lld, \"seconds\": ", (long long)n);
    json_number(stdout, seconds);
    printf(", \"inference\": \"%s\"}\n", sparse ? "sparse" : "exact");
    rc = EXIT_OK;
done:
    free(rows);
    free(inv_prop);
    spr_dataset_free(exclude);
    spr_dataset_free(test);
    spr_model_free(model);
    return rc;
}

/* ------------------------------------------------------------------ predict */

/* predict --labels: line i of the file (1-based line i + 1) names label i. */
typedef struct label_names {
    char *text;    /* the file, each line end replaced by a NUL */
    char **names;  /* (count) pointers into text */
    int64_t count;
} label_names;

static void label_names_free(label_names *n) {
    free(n->text);
    free(n->names);
    memset(n, 0, sizeof *n);
}

/* Reads one name per line (CRLF accepted, a missing final newline too); a tab or an
 * empty name is refused with its line number, since neither could be read back from
 * predict's tab-separated output. Exactly n_labels names: more (another data set's
 * names, say) used to be accepted and named the labels wrongly without a word. */
static int label_names_read(const char *path, int64_t n_labels, label_names *out) {
    memset(out, 0, sizeof *out);
    size_t len;
    int rc;
    char *text = read_text_file("predict", path, SIZE_MAX / 2, &len, &rc); /* NUL-free */
    if (!text) return rc;
    int64_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    if (len > 0 && text[len - 1] != '\n') lines++;
    out->text = text;
    out->names = malloc((size_t)(lines > 0 ? lines : 1) * sizeof *out->names);
    if (!out->names) {
        label_names_free(out);
        fprintf(stderr, "sparrow: out of memory for %lld label names\n", (long long)lines);
        return EXIT_INTERNAL;
    }
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        *e = '\0';
        size_t n = (size_t)(e - p); /* the name's length, its CR left out */
        if (n > 0 && p[n - 1] == '\r') p[--n] = '\0';
        int64_t line = out->count + 1;
        const char *problem = !n                ? "empty label name"
                              : strchr(p, '\t') ? "a name may not contain a tab"
                                                : NULL;
        if (problem) {
            fprintf(stderr, "sparrow: %s:%lld: %s (line i names label i - 1)\n", path,
                    (long long)line, problem);
            label_names_free(out);
            return EXIT_USAGE;
        }
        out->names[out->count++] = p;
        p = e + 1;
    }
    if (out->count != n_labels) {
        fprintf(stderr, "sparrow: %s: %lld names for the model's %lld labels (one name per "
                        "line, line i for label i - 1)\n",
                path, (long long)out->count, (long long)n_labels);
        label_names_free(out);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static const char PREDICT_HELP[] =
    "usage: sparrow predict --model MODEL --input FILE [options]\n"
    "\n"
    "Writes one line per input point to stdout: \"label:score label:score ...\", best\n"
    "first (scores are output logits); a point with fewer than K candidates\n"
    "(--sparse-inference) gets a shorter line, an empty one for none. Labels in the\n"
    "input file are ignored.\n"
    "With --labels the labels are written by name and the fields separated by tabs\n"
    "(\"name:score<TAB>name:score ...\"; the score follows the last colon).\n"
    "\n"
    "  --model MODEL         a model saved by 'sparrow train --save'\n"
    "  --input FILE          points to predict (XMC or svmlight format, or the features\n"
    "                        file of the XMC repository's split format, tst_X_Xf.txt)\n"
    "  --k K                 labels per point (default 5; at most the number of labels)\n"
    "  --sparse-inference    rank only the LSH candidates (sublinear)\n"
    "  --threads T           worker threads (default 0: all cores)\n"
    "  --one-based           feature ids in the file start at 1; --zero-based: at 0\n"
    "                        (default: as in the model's training file, else 0)\n"
    "  --labels NAMES        a text file with one label name per line: line 1 names\n"
    "                        label 0, line 2 label 1, ...; one line per label\n"
    "  --filter-labels FILE  leave out of each point's labels those FILE pairs it with\n"
    "                        (\"POINT LABEL\" per line, 0-based: the XMC repository's\n"
    "                        filter_labels_test.txt)\n";

int cmd_predict(int argc, char **argv) {
    const char *cmd = "predict";
    const char *model_path = NULL, *input_path = NULL, *labels_path = NULL, *filter_path = NULL;
    spr_dataset *exclude = NULL;
    int k = 5, sparse = 0, threads = 0, one_based = -1;
    enum { P_MODEL = 256, P_INPUT, P_K, P_SPARSE, P_THREADS, P_ONE_BASED, P_ZERO_BASED, P_LABELS, P_FILTER };
    static const struct option opts[] = {
        {"model", required_argument, 0, P_MODEL},
        {"input", required_argument, 0, P_INPUT},
        {"k", required_argument, 0, P_K},
        {"sparse-inference", no_argument, 0, P_SPARSE},
        {"threads", required_argument, 0, P_THREADS},
        {"one-based", no_argument, 0, P_ONE_BASED},
        {"zero-based", no_argument, 0, P_ZERO_BASED},
        {"labels", required_argument, 0, P_LABELS},
        {"filter-labels", required_argument, 0, P_FILTER},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc = EXIT_OK;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case P_LABELS: labels_path = optarg; break;
        case P_FILTER: filter_path = optarg; break;
        case P_MODEL: model_path = optarg; break;
        case P_INPUT: input_path = optarg; break;
        case P_K: rc = parse_int(cmd, "--k", optarg, 1, SPR_MAX_K, &k); break;
        case P_SPARSE: sparse = 1; break;
        case P_THREADS: rc = parse_int(cmd, "--threads", optarg, 0, SPR_MAX_THREADS, &threads); break;
        case P_ONE_BASED:
        case P_ZERO_BASED: rc = set_id_base(cmd, c == P_ONE_BASED, &one_based); break;
        case OPT_HELP: fputs(PREDICT_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
        if (rc) return rc;
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (!model_path) return usage_error(cmd, "--model is required (see 'sparrow predict --help')");
    if (!input_path) return usage_error(cmd, "--input is required (see 'sparrow predict --help')");
    const char *const in_opts[] = {"--input", "--labels", "--filter-labels"};
    const char *const in_paths[] = {input_path, labels_path, filter_path};
    if ((rc = stdin_once(cmd, 3, in_opts, in_paths))) return rc;

    spr_model *model = NULL;
    spr_dataset *data = NULL;
    label_names names = {0};
    spr_threads_start(threads);
    if ((rc = load_model_and_data(model_path, input_path, NULL, &one_based, 0, sparse, threads, &model, &data)))
        return rc;
    if ((int64_t)k > model_labels(model)) k = (int)model_labels(model);
    rc = cli_agree_rc(labels_path ? label_names_read(labels_path, model_labels(model), &names) : EXIT_OK);
    if (rc || (filter_path && (rc = cli_agree_status(read_filter(filter_path, data, model_labels(model), &exclude))))) {
        label_names_free(&names);
        spr_dataset_free(data);
        spr_model_free(model);
        return rc;
    }
    cli_dist_settle();

    int64_t n = spr_dataset_get_view(data).n_points;
    int64_t *rows = malloc(PREDICT_CHUNK * sizeof *rows);
    int32_t *ids = malloc((size_t)PREDICT_CHUNK * (size_t)k * sizeof *ids);
    float *scores = malloc((size_t)PREDICT_CHUNK * (size_t)k * sizeof *scores);
    if (!rows || !ids || !scores) {
        fprintf(stderr, "sparrow: out of memory\n");
        rc = EXIT_INTERNAL;
    }
    if ((rc = cli_agree_rc(rc))) goto done; /* several ranks: as precision_at_k's */
    for (int64_t start = 0; start < n; start += PREDICT_CHUNK) {
        int64_t m = (start + PREDICT_CHUNK <= n) ? PREDICT_CHUNK : n - start;
        for (int64_t i = 0; i < m; i++) rows[i] = start + i;
        spr_status st = spr_model_predict_excluding(model, data, rows, m, k, sparse, threads, exclude, ids, scores);
        if (st != SPR_STATUS_OK) {
            rc = cli_agree_library_error(st);
            goto done;
        }
        for (int64_t i = 0; i < m; i++) {
            /* fewer than k candidates (sparse inference; NaN scores) end in -1 ids: the
             * line ends before them (a name for -1 read out of bounds: a crash) */
            for (int j = 0; j < k && ids[i * k + j] >= 0; j++) {
                if (j) putchar(names.names ? '\t' : ' ');
                if (names.names) printf("%s:%.6g", names.names[ids[i * k + j]], scores[i * k + j]);
                else printf("%d:%.6g", ids[i * k + j], scores[i * k + j]);
            }
            putchar('\n');
        }
    }
    rc = EXIT_OK; /* main() checks that the predictions reached stdout */
done:
    free(rows);
    free(ids);
    free(scores);
    spr_dataset_free(exclude);
    label_names_free(&names);
    spr_dataset_free(data);
    spr_model_free(model);
    return rc;
}

/* ------------------------------------------------------------------ info */

static const char INFO_HELP[] =
    "usage: sparrow info --model MODEL [--json] [--verify]\n"
    "       sparrow info --cpu\n"
    "\n"
    "Prints a saved model's configuration (layers, sizes, sparsity, hash family, K, L,\n"
    "key bits, bucket capacity), training progress (steps, samples, epoch), parameter\n"
    "count and memory, and its training set, from the file's small sections: its\n"
    "arrays are not read (a model of any size, a manifest of shards).\n"
    "\n"
    "  --model MODEL   a model saved by 'sparrow train --save'\n"
    "  --json          print one JSON object instead of text\n"
    "  --verify        also read the whole file and check every checksum, streaming\n"
    "                  it (a few MB of memory whatever the model's size)\n"
    "  --cpu           print the kernel set in use (portable, avx2, avx512), the CPU's\n"
    "                  vector features and the sets it supports; SPARROW_KERNELS=NAME\n"
    "                  forces a supported set\n";

static void info_json(const spr_model_config *cfg, const spr_model_info *info, const spr_data_note *note,
                      int shards) {
    printf("{\"n_features\": %lld, \"n_labels\": %lld, \"layers\": [",
           (long long)cfg->n_features, (long long)cfg->layers[cfg->n_layers - 1].size);
    for (int i = 0; i < cfg->n_layers; i++) {
        const spr_layer_config *l = &cfg->layers[i];
        int sampled = i > 0 && l->sparsity < 1.0f;
        printf("%s{\"size\": %lld, \"activation\": \"%s\", \"sampled\": %s, \"sparsity\": %.7g, "
               "\"hash\": \"%s\", \"hash_k\": %d, \"effective_k\": %d, \"hash_l\": %d, "
               "\"key_bits\": %d, \"bucket_capacity\": %d, \"bucket_policy\": \"%s\", "
               "\"select\": \"%s\", \"select_threshold\": %d, \"random_fraction\": %.7g, "
               "\"simhash_one_in\": %d}",
               i ? ", " : "", (long long)l->size, i == cfg->n_layers - 1 ? "softmax" : "relu",
               sampled ? "true" : "false", l->sparsity, spr_hash_family_to_string(l->hash),
               l->hash_k, info->hash_k[i], l->hash_l, info->key_bits[i], l->bucket_capacity,
               l->bucket_policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir",
               spr_select_to_string(l->select), l->select_threshold, l->random_fraction,
               l->simhash_one_in);
    }
    printf("], \"bf16_state\": %s, \"bf16_weights\": %s", cfg->bf16_state ? "true" : "false",
           cfg->bf16_weights ? "true" : "false");
    printf(", \"init_std\": %.7g, \"seed\": %llu, \"steps\": %lld, \"samples\": %lld, "
           "\"epoch\": %lld, \"parameters\": %lld, \"parameter_bytes\": %lld, "
           "\"table_bytes\": %lld, \"rehashes\": %lld, \"rebuilds\": %lld",
           cfg->init_std, (unsigned long long)cfg->seed, (long long)info->steps,
           (long long)info->samples, (long long)info->epoch, (long long)info->parameters,
           (long long)info->parameter_bytes, (long long)info->table_bytes,
           (long long)info->rehashes, (long long)info->rebuilds);
    printf(", \"shards\": %d", shards > 0 ? shards : 0);
    if (info->lr > 0)
        printf(", \"adam\": {\"lr\": %.7g, \"beta1\": %.7g, \"beta2\": %.7g, \"eps\": %.7g}", info->lr,
               info->beta1, info->beta2, info->eps);
    else
        printf(", \"adam\": null");
    if (note->points > 0)
        printf(", \"training_set\": {\"points\": %lld, \"digest\": \"%016llx\", \"one_based\": %s}}\n",
               (long long)note->points, (unsigned long long)note->digest, note->one_based ? "true" : "false");
    else
        printf(", \"training_set\": null}\n");
}

static void info_text(const char *path, const spr_model_config *cfg, const spr_model_info *info,
                      const spr_data_note *note, int shards) {
    if (shards > 0)
        printf("model %s: the manifest of %d shard%s (files beside it; loading assembles them)\n", path,
               shards, shards == 1 ? "" : "s");
    else
        printf("model %s\n", path);
    printf("input: %lld features\n", (long long)cfg->n_features);
    for (int i = 0; i < cfg->n_layers; i++) {
        const spr_layer_config *l = &cfg->layers[i];
        printf("layer %d: %lld neurons, %s", i, (long long)l->size,
               i == cfg->n_layers - 1 ? "softmax output" : "relu");
        if (i > 0 && l->sparsity < 1.0f) {
            printf(", sampled: sparsity %g, hash %s, K %d, L %d, key bits %d, bucket "
                   "capacity %d (%s), select %s",
                   l->sparsity, spr_hash_family_to_string(l->hash), info->hash_k[i], l->hash_l,
                   info->key_bits[i], l->bucket_capacity,
                   l->bucket_policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir",
                   spr_select_to_string(l->select));
            if (l->hash == SPR_HASH_SIMHASH) printf(", projections non-zero 1 in %d", l->simhash_one_in);
            printf("\n");
        } else {
            printf(", dense\n");
        }
    }
    printf("init_std %g, seed %llu\n", cfg->init_std, (unsigned long long)cfg->seed);
    printf("output layer's weights in %s; optimizer state: Adam, output layer's moments in %s\n",
           cfg->bf16_weights ? "BF16 (bf16_weights)" : "float32",
           cfg->bf16_state ? "BF16 (bf16_state)" : "float32");
    printf("trained: %lld steps, %lld samples, epoch %lld, %lld rehashes, %lld rebuilds\n",
           (long long)info->steps, (long long)info->samples, (long long)info->epoch,
           (long long)info->rehashes, (long long)info->rebuilds);
    if (info->lr > 0)
        printf("Adam at the last step: lr %g, betas %g %g, eps %g (rows that owe steps take them at "
               "these; --resume continues at this lr unless given --lr)\n",
               info->lr, info->beta1, info->beta2, info->eps);
    else
        printf("Adam at the last step: not recorded (no step, lazy Adam, or a file before session 26)\n");
    if (note->points > 0)
        printf("training set: %lld points, digest %016llx, feature ids %s-based in its file\n",
               (long long)note->points, (unsigned long long)note->digest, note->one_based ? "one" : "zero");
    else
        printf("training set: not recorded\n");
    printf("parameters: %lld (%lld bytes with gradients and optimizer state)\n",
           (long long)info->parameters, (long long)info->parameter_bytes);
    printf("hash tables: %lld bytes\n", (long long)info->table_bytes);
}

int cmd_info(int argc, char **argv) {
    const char *cmd = "info";
    const char *model_path = NULL;
    int json = 0, cpu = 0, verify = 0;
    enum { I_MODEL = 256, I_JSON, I_CPU, I_VERIFY };
    static const struct option opts[] = {{"model", required_argument, 0, I_MODEL},
                                         {"json", no_argument, 0, I_JSON},
                                         {"verify", no_argument, 0, I_VERIFY},
                                         {"cpu", no_argument, 0, I_CPU},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    char name[64];
    prepare_getopt(argv, name, sizeof name, cmd);
    int c, rc;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case I_MODEL: model_path = optarg; break;
        case I_JSON: json = 1; break;
        case I_VERIFY: verify = 1; break;
        case I_CPU: cpu = 1; break;
        case OPT_HELP: fputs(INFO_HELP, stdout); return EXIT_OK;
        default: return bad_option(cmd);
        }
    }
    if ((rc = stray_arguments(cmd, argc, argv))) return rc;
    if (cpu && !model_path) {
        printf("%s\n", spr_kernels_describe());
        return EXIT_OK;
    }
    if (!model_path) return usage_error(cmd, "--model is required (see 'sparrow info --help')");

    /* The small sections alone: info on a model of tens of GB (or a manifest of shards
     * no one machine holds) used to load the whole model first. */
    spr_model_config cfg;
    spr_model_info info;
    spr_data_note note;
    spr_status st = spr_model_peek(model_path, &cfg, &info, &note);
    if (st != SPR_STATUS_OK) return library_error(st);
    const int shards = spr_model_file_shards(model_path); /* the peek read it: 0 or N */
    if (verify && (st = spr_model_verify(model_path)) != SPR_STATUS_OK) return library_error(st);
    if (json) info_json(&cfg, &info, &note, shards);
    else info_text(model_path, &cfg, &info, &note, shards);
    return EXIT_OK;
}

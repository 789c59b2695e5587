/*
 * fuzz_data.c: libFuzzer target for the data set reader, spr_dataset_read.
 *
 * Each input is read as XMC, as AUTO, as 1-based svmlight, and as XMC with small
 * caller limits (n_features = n_labels = 16, which exercises the range checks); and in
 * the split format (spr_dataset_read_split) as both the features and the labels file,
 * and as a features file alone; and as a filter file (spr_dataset_read_filter), with and
 * without bounds. Besides
 * the sanitizers, every successful read is checked against the contract of
 * spr_dataset_view (CSR shape, ids sorted, unique and in range, finite values), and
 * every failure must leave *out NULL with a message.
 *
 *   build-fuzz/fuzz_data -max_total_time=600 CORPUS_DIR    (see README.md)
 */
#include "fuzz_util.h"
#include "sparrow.h"

#include <math.h>

static void check_view(const spr_dataset *ds) {
    spr_dataset_view v = spr_dataset_get_view(ds);
    FUZZ_CHECK(v.n_points >= 0 && v.n_features >= 0 && v.n_labels >= 0, "%lld %lld %lld",
               (long long)v.n_points, (long long)v.n_features, (long long)v.n_labels);
    FUZZ_CHECK(v.feature_indptr && v.label_indptr, "indptr arrays missing");
    FUZZ_CHECK(v.feature_indptr[0] == 0 && v.label_indptr[0] == 0, "indptr[0] %lld %lld",
               (long long)v.feature_indptr[0], (long long)v.label_indptr[0]);
    for (int64_t i = 0; i < v.n_points; i++) {
        int64_t f0 = v.feature_indptr[i], f1 = v.feature_indptr[i + 1];
        int64_t l0 = v.label_indptr[i], l1 = v.label_indptr[i + 1];
        FUZZ_CHECK(f0 <= f1 && l0 <= l1, "point %lld: indptr not monotone", (long long)i);
        for (int64_t j = f0; j < f1; j++) {
            int32_t f = v.feature_indices[j];
            FUZZ_CHECK(f >= 0 && f < v.n_features, "point %lld: feature %d not in [0, %lld)", (long long)i,
                       f, (long long)v.n_features);
            FUZZ_CHECK(j == f0 || v.feature_indices[j - 1] < f, "point %lld: features not sorted/unique",
                       (long long)i);
            FUZZ_CHECK(isfinite(v.feature_values[j]), "point %lld: value %g", (long long)i,
                       (double)v.feature_values[j]);
        }
        for (int64_t j = l0; j < l1; j++) {
            int32_t l = v.labels[j];
            FUZZ_CHECK(l >= 0 && l < v.n_labels, "point %lld: label %d not in [0, %lld)", (long long)i, l,
                       (long long)v.n_labels);
            FUZZ_CHECK(j == l0 || v.labels[j - 1] < l, "point %lld: labels not sorted/unique", (long long)i);
        }
    }
}

/* split: 0 spr_dataset_read; 1 spr_dataset_read_split(path, path); 2 (path, NULL). */
static void read_as(const char *path, spr_format format, int one_based, int64_t limit, int split) {
    spr_read_options opt = spr_read_options_default();
    opt.format = format;
    opt.one_based = one_based;
    opt.n_features = limit;
    opt.n_labels = limit;
    spr_dataset *ds = (spr_dataset *)&opt; /* must be overwritten with NULL on failure */
    spr_status st = split ? spr_dataset_read_split(path, split == 1 ? path : NULL, &opt, NULL, NULL, &ds)
                          : spr_dataset_read(path, &opt, &ds);
    if (st == SPR_STATUS_OK) {
        FUZZ_CHECK(ds != NULL, "OK but no data set");
        check_view(ds);
        /* what was read wraps (the wrapper's checks accept it) to the same digest */
        spr_dataset_view view = spr_dataset_get_view(ds);
        spr_dataset *wrapped = NULL;
        FUZZ_CHECK(spr_dataset_wrap(&view, &wrapped) == SPR_STATUS_OK, "a data set read does not wrap: %s",
                   spr_last_error());
        FUZZ_CHECK(spr_dataset_digest(wrapped) == spr_dataset_digest(ds), "wrapped, another digest");
        spr_dataset_free(wrapped);
        if (limit > 0) {
            spr_dataset_view v = spr_dataset_get_view(ds);
            FUZZ_CHECK(v.n_features == limit && v.n_labels == limit, "limits %lld, got %lld features %lld labels",
                       (long long)limit, (long long)v.n_features, (long long)v.n_labels);
        }
    } else {
        FUZZ_CHECK(ds == NULL, "status %d but *out not NULL", (int)st);
        FUZZ_CHECK(spr_last_error()[0] != '\0', "status %d without a message", (int)st);
    }
    spr_dataset_free(ds);
}

/* A filter file: every pair in range, each point's labels ascending and unique. */
static void read_filter(const char *path, int64_t bound) {
    spr_dataset *ds = (spr_dataset *)&bound;
    spr_status st = spr_dataset_read_filter(path, bound, bound, &ds);
    if (st == SPR_STATUS_OK) {
        FUZZ_CHECK(ds != NULL, "filter OK but no data set");
        check_view(ds);
        spr_dataset_view v = spr_dataset_get_view(ds);
        FUZZ_CHECK(v.n_points == bound && v.n_labels == bound, "filter bounds %lld: %lld %lld",
                   (long long)bound, (long long)v.n_points, (long long)v.n_labels);
        FUZZ_CHECK(v.feature_indptr[v.n_points] == 0, "a filter with features");
    } else {
        FUZZ_CHECK(ds == NULL, "filter status %d but *out not NULL", (int)st);
        FUZZ_CHECK(spr_last_error()[0] != '\0', "filter status %d without a message", (int)st);
    }
    spr_dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_input(data, size);
    read_as(path, SPR_FORMAT_XMC, 0, 0, 0);
    read_as(path, SPR_FORMAT_AUTO, 0, 0, 0);
    read_as(path, SPR_FORMAT_SVMLIGHT, 1, 0, 0);
    read_as(path, SPR_FORMAT_XMC, 0, 16, 0);
    read_as(path, SPR_FORMAT_AUTO, 0, 0, 1);
    read_as(path, SPR_FORMAT_AUTO, 1, 16, 2);
    read_filter(path, 4096); /* a bound is required (the points' rows are allocated) */
    read_filter(path, 16);
    return 0;
}

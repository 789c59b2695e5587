/*
 * test_data.c: the data set reader, writer and wrapper.
 *
 * Hand-written files in tests/data/ (run from tests/) are checked field by field; every
 * malformed file must give SPR_STATUS_BAD_INPUT with "FILE:LINE:" in the message; a
 * random data set must survive write -> read bit for bit; values parsed by the reader
 * must equal strtof's; a bad view must be refused by spr_dataset_wrap.
 */
#define _GNU_SOURCE
#include "check.h"
#include "common.h"
#include "data.h"
#include "sparrow.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK_EQ(expected, got, what)                                            \
    CHECK((long long)(expected) == (long long)(got), "%s: expected %lld, got %lld", \
          what, (long long)(expected), (long long)(got))

/* What a data set should hold: n points, CSR features and labels. */
typedef struct expect {
    int64_t n, d, l;
    const int64_t *fptr;
    const int32_t *fidx;
    const float *fval;
    const int64_t *lptr;
    const int32_t *lab;
} expect;

static void check_dataset(const char *name, const spr_dataset *ds, const expect *e) {
    char what[256];
    spr_dataset_view v = spr_dataset_get_view(ds);
    snprintf(what, sizeof what, "%s n_points", name);
    CHECK_EQ(e->n, v.n_points, what);
    snprintf(what, sizeof what, "%s n_features", name);
    CHECK_EQ(e->d, v.n_features, what);
    snprintf(what, sizeof what, "%s n_labels", name);
    CHECK_EQ(e->l, v.n_labels, what);
    if (v.n_points != e->n) return;
    int64_t maxl = 0;
    for (int64_t i = 0; i <= e->n; i++) {
        snprintf(what, sizeof what, "%s feature_indptr[%lld]", name, (long long)i);
        CHECK_EQ(e->fptr[i], v.feature_indptr[i], what);
        snprintf(what, sizeof what, "%s label_indptr[%lld]", name, (long long)i);
        CHECK_EQ(e->lptr[i], v.label_indptr[i], what);
        if (i < e->n && e->lptr[i + 1] - e->lptr[i] > maxl) maxl = e->lptr[i + 1] - e->lptr[i];
    }
    snprintf(what, sizeof what, "%s max labels", name);
    CHECK_EQ(maxl, spr_dataset_max_labels(ds), what);
    if (v.feature_indptr[e->n] != e->fptr[e->n] || v.label_indptr[e->n] != e->lptr[e->n]) return;
    for (int64_t j = 0; j < e->fptr[e->n]; j++) {
        snprintf(what, sizeof what, "%s feature_indices[%lld]", name, (long long)j);
        CHECK_EQ(e->fidx[j], v.feature_indices[j], what);
        CHECK(!memcmp(&e->fval[j], &v.feature_values[j], sizeof(float)), /* bits: -0 is not 0 */
              "%s feature_values[%lld]: expected %.9g, got %.9g", name, (long long)j, (double)e->fval[j],
              (double)v.feature_values[j]);
    }
    for (int64_t j = 0; j < e->lptr[e->n]; j++) {
        snprintf(what, sizeof what, "%s labels[%lld]", name, (long long)j);
        CHECK_EQ(e->lab[j], v.labels[j], what);
    }
}

/* Reads a good file and checks it against e. */
static void good(const char *path, const spr_read_options *o, const expect *e) {
    spr_dataset *ds = NULL;
    spr_status st = spr_dataset_read(path, o, &ds);
    CHECK(st == SPR_STATUS_OK, "%s: expected ok, got %s: %s", path, spr_status_to_string(st), spr_last_error());
    if (st == SPR_STATUS_OK) check_dataset(path, ds, e);
    spr_dataset_free(ds);
}

/* Reads a bad file: expects status and a message containing want. */
static void bad(const char *path, const spr_read_options *o, spr_status status, const char *want) {
    spr_dataset *ds = (spr_dataset *)1;
    spr_status st = spr_dataset_read(path, o, &ds);
    CHECK(st == status, "%s: expected %s, got %s (%s)", path, spr_status_to_string(status),
          spr_status_to_string(st), spr_last_error());
    CHECK(ds == NULL, "%s: *out should be NULL after a failure", path);
    CHECK(strstr(spr_last_error(), want) != NULL, "%s: expected a message containing \"%s\", got \"%s\"",
          path, want, spr_last_error());
    if (st == SPR_STATUS_OK) spr_dataset_free(ds);
}

static void test_good_files(void) {
    spr_read_options o = spr_read_options_default();
    {
        const int64_t fptr[] = {0, 2, 4, 5}, lptr[] = {0, 2, 3, 3};
        const int32_t fidx[] = {1, 3, 0, 9, 2}, lab[] = {0, 2, 4};
        const float fval[] = {0.5f, 1.25f, -2.0f, 0.3f, 7.0f};
        expect e = {3, 10, 5, fptr, fidx, fval, lptr, lab};
        good("data/header.txt", &o, &e);
        spr_read_options x = o;
        x.format = SPR_FORMAT_XMC;
        good("data/header.txt", &x, &e);
        /* a UTF-8 byte order mark before the header is skipped (it was read as part of
         * the first count or label: "bad label '2'", the mark invisible) */
        good("data/bom_header.txt", &o, &e);
    }
    { /* no header: sizes are max id + 1; the blank line is not a point */
        const int64_t fptr[] = {0, 2, 3, 4}, lptr[] = {0, 2, 3, 3};
        const int32_t fidx[] = {0, 4, 5, 1}, lab[] = {1, 3, 2};
        const float fval[] = {1.0f, 2.5f, 0.125f, 1.0f};
        expect e = {3, 6, 4, fptr, fidx, fval, lptr, lab};
        good("data/noheader.txt", &o, &e);
        good("data/bom_noheader.txt", &o, &e);
        /* options give the sizes */
        spr_read_options x = o;
        x.n_features = 100;
        x.n_labels = 50;
        expect e2 = e;
        e2.d = 100;
        e2.l = 50;
        good("data/noheader.txt", &x, &e2);
    }
    {
        const int64_t fptr[] = {0, 2, 3}, lptr[] = {0, 1, 3};
        const int32_t fidx[] = {0, 5, 2}, lab[] = {1, 0, 3};
        const float fval[] = {1.5f, 2.0f, 0.25f};
        expect e = {2, 6, 4, fptr, fidx, fval, lptr, lab};
        good("data/crlf.txt", &o, &e);
    }
    {
        const int64_t fptr[] = {0, 1, 2}, lptr[] = {0, 1, 2};
        const int32_t fidx[] = {0, 3}, lab[] = {1, 2};
        const float fval[] = {1.0f, 0.5f};
        expect e = {2, 4, 3, fptr, fidx, fval, lptr, lab};
        good("data/nofinal.txt", &o, &e);
    }
    { /* one-based svmlight with a comment line, qid and a trailing comment */
        spr_read_options x = o;
        x.one_based = 1;
        const int64_t fptr[] = {0, 2, 3}, lptr[] = {0, 1, 2};
        const int32_t fidx[] = {0, 2, 1}, lab[] = {1, 0};
        const float fval[] = {0.5f, 1.5f, 2.0f};
        expect e = {2, 3, 2, fptr, fidx, fval, lptr, lab};
        good("data/svm_onebased.txt", &x, &e);
        x.format = SPR_FORMAT_SVMLIGHT;
        good("data/svm_onebased.txt", &x, &e);
    }
    { /* unsorted features are sorted; repeated labels merged */
        const int64_t fptr[] = {0, 3, 5}, lptr[] = {0, 3, 4};
        const int32_t fidx[] = {2, 5, 7, 1, 4}, lab[] = {1, 3, 5, 0};
        const float fval[] = {0.2f, 0.5f, 0.7f, 1.0f, 4.0f};
        expect e = {2, 8, 6, fptr, fidx, fval, lptr, lab};
        good("data/unsorted.txt", &o, &e);
    }
    { /* labels only, a whitespace-only line (an empty point), features only */
        const int64_t fptr[] = {0, 0, 0, 1}, lptr[] = {0, 2, 2, 3};
        const int32_t fidx[] = {4}, lab[] = {1, 2, 3};
        const float fval[] = {1.0f};
        expect e = {3, 5, 4, fptr, fidx, fval, lptr, lab};
        good("data/nolabels_nofeatures.txt", &o, &e);
    }
    {
        const int64_t fptr[] = {0}, lptr[] = {0};
        expect e = {0, 7, 4, fptr, NULL, NULL, lptr, NULL};
        good("data/header_only.txt", &o, &e);
    }
}

static void test_bad_files(void) {
    spr_read_options o = spr_read_options_default();
    bad("data/bad_value.txt", &o, SPR_STATUS_BAD_INPUT, "data/bad_value.txt:3:");
    bad("data/bad_token.txt", &o, SPR_STATUS_BAD_INPUT, "data/bad_token.txt:3:");
    /* "1:" ending a line: once read as "1:2" with the next line's label for a value (and
     * the next line's features after it), the data fuzzer's find; at the end of the file
     * the parse ran past the read buffer */
    bad("data/empty_value.txt", &o, SPR_STATUS_BAD_INPUT, "data/empty_value.txt:2: bad value in feature '1:'");
    bad("data/empty_value_crlf.txt", &o, SPR_STATUS_BAD_INPUT,
        "data/empty_value_crlf.txt:1: bad value in feature '1:'");
    bad("data/neg_feature.txt", &o, SPR_STATUS_BAD_INPUT, "data/neg_feature.txt:4: negative feature id");
    bad("data/neg_label.txt", &o, SPR_STATUS_BAD_INPUT, "data/neg_label.txt:3: negative label id");
    bad("data/feature_range.txt", &o, SPR_STATUS_BAD_INPUT,
        "data/feature_range.txt:3: feature id 5 out of range (header says 5 features)");
    bad("data/label_range.txt", &o, SPR_STATUS_BAD_INPUT,
        "data/label_range.txt:3: label id 3 out of range (header says 3 labels)");
    /* an id far past the range is quoted as written, not as the digits read before it
     * overflowed (once "feature id 9999" for 999998); a very long one is cut at 40 digits */
    bad("data/feature_range_wide.txt", &o, SPR_STATUS_BAD_INPUT,
        "data/feature_range_wide.txt:3: feature id 999998 out of range (header says 5 features)");
    bad("data/label_range_wide.txt", &o, SPR_STATUS_BAD_INPUT,
        "data/label_range_wide.txt:3: label id 99998 out of range (header says 3 labels)");
    bad("data/label_range_long.txt", &o, SPR_STATUS_BAD_INPUT,
        "data/label_range_long.txt:2: label id 9999999999999999999999999999999999999999... out of range");
    bad("data/nan_value.txt", &o, SPR_STATUS_BAD_INPUT, "data/nan_value.txt:3:");
    bad("data/inf_value.txt", &o, SPR_STATUS_BAD_INPUT, "data/inf_value.txt:3:");
    bad("data/missing_colon.txt", &o, SPR_STATUS_BAD_INPUT, "data/missing_colon.txt:3: missing ':'");
    bad("data/count_short.txt", &o, SPR_STATUS_BAD_INPUT, "data/count_short.txt:1: header says 3 points, file has 2");
    bad("data/count_long.txt", &o, SPR_STATUS_BAD_INPUT, "data/count_long.txt:3: header says 1 points");
    bad("data/repeated_feature.txt", &o, SPR_STATUS_BAD_INPUT, "data/repeated_feature.txt:3: feature id 2 repeated");
    bad("data/empty.txt", &o, SPR_STATUS_BAD_INPUT, "data/empty.txt: empty file");
    /* a byte order mark past the start is not skipped, and is shown */
    bad("data/bom_line2.txt", &o, SPR_STATUS_BAD_INPUT, "data/bom_line2.txt:2: bad label '\\xEF\\xBB\\xBF1'");
    /* once "bad value in feature '2:1'": the NUL is named, with its line */
    bad("data/nul_byte.txt", &o, SPR_STATUS_BAD_INPUT, "data/nul_byte.txt:3: a NUL byte: not a text file");
    bad("data/does_not_exist.txt", &o, SPR_STATUS_IO_ERROR, "data/does_not_exist.txt: cannot open:");
    bad("data", &o, SPR_STATUS_IO_ERROR, "data: is a directory");
    /* options smaller than the header win: ids must be below them */
    spr_read_options x = o;
    x.n_features = 4;
    bad("data/header.txt", &x, SPR_STATUS_BAD_INPUT, "data/header.txt:3: feature id 9 out of range (options say 4 features)");
    /* a forced svmlight format does not take the header as a header */
    x = o;
    x.format = SPR_FORMAT_SVMLIGHT;
    bad("data/header.txt", &x, SPR_STATUS_BAD_INPUT, "data/header.txt:1:");
    /* one-based: id 0 is an error, and the limit counts ids as written */
    x = o;
    x.one_based = 1;
    bad("data/svm_zero_onebased.txt", &x, SPR_STATUS_BAD_INPUT, "data/svm_zero_onebased.txt:2: feature id 0");
    x.n_features = 1;
    bad("data/svm_zero_onebased.txt", &x, SPR_STATUS_BAD_INPUT, "data/svm_zero_onebased.txt:1: feature id 2 out of range");
}

/* A unique temporary path under /tmp (the file is created empty, then removed). */
static void temp_path(char *out, size_t n, const char *tag) {
    snprintf(out, n, "/tmp/test_data_%s_XXXXXX", tag);
    int fd = mkstemp(out);
    if (fd >= 0) close(fd);
    unlink(out);
}

static uint64_t rng_state;
static uint64_t next_u64(void) { return rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull, spr_mix64(rng_state); }

/* A float with a random bit pattern (finite), or a "typical" short decimal. */
static float random_value(void) {
    uint64_t r = next_u64();
    switch (r % 4) {
    case 0: return (float)((int)(r >> 8) % 100000) / 10000.0f;
    case 1: return (float)((double)(r >> 11) / 9007199254740992.0);
    case 2: return -(float)((r >> 20) % 1000) * 0.001f;
    default: {
        uint32_t b = (uint32_t)(r >> 32);
        float f;
        memcpy(&f, &b, sizeof f);
        return isfinite(f) ? f : 1.0f;
    }
    }
}

/* Writes the view in the repository's split format by hand (not with the library): the
 * features to xpath, the labels with weight 1 to ypath; every row's pairs in reverse order
 * when reverse (the reader sorts them), an empty line for an empty row. */
static void write_split(const spr_dataset_view *v, const char *xpath, const char *ypath, int reverse) {
    FILE *x = fopen(xpath, "w"), *y = fopen(ypath, "w");
    CHECK(x && y, "cannot create %s / %s", xpath, ypath);
    if (!x || !y) goto out;
    fprintf(x, "%lld %lld\n", (long long)v->n_points, (long long)v->n_features);
    fprintf(y, "%lld %lld\r\n", (long long)v->n_points, (long long)v->n_labels); /* CRLF too */
    for (int64_t i = 0; i < v->n_points; i++) {
        const int64_t f0 = v->feature_indptr[i], f1 = v->feature_indptr[i + 1];
        for (int64_t k = 0; k < f1 - f0; k++) {
            const int64_t j = reverse ? f1 - 1 - k : f0 + k;
            fprintf(x, "%s%d:%.9g", k ? " " : "", (int)v->feature_indices[j], (double)v->feature_values[j]);
        }
        fputc('\n', x);
        const int64_t l0 = v->label_indptr[i], l1 = v->label_indptr[i + 1];
        for (int64_t k = 0; k < l1 - l0; k++)
            fprintf(y, "%s%d:1.0", k ? " " : "", (int)v->labels[reverse ? l1 - 1 - k : l0 + k]);
        fputs("\r\n", y);
    }
out:
    if (x) fclose(x);
    if (y) fclose(y);
}

static void test_round_trip(uint64_t seed) {
    rng_state = seed;
    const int64_t n = 300, d = 1000, l = 50;
    int64_t *fptr = calloc(n + 1, sizeof *fptr), *lptr = calloc(n + 1, sizeof *lptr);
    int32_t *fidx = malloc(n * 40 * sizeof *fidx), *lab = malloc(n * 8 * sizeof *lab);
    float *fval = malloc(n * 40 * sizeof *fval);
    int64_t nnz = 0, nl = 0;
    for (int64_t i = 0; i < n; i++) {
        int nf = (int)(next_u64() % 40); /* some points with no features */
        int32_t id = -1;
        for (int k = 0; k < nf; k++) {
            id += 1 + (int32_t)(next_u64() % 20);
            if (id >= d) break;
            fidx[nnz] = id;
            fval[nnz++] = random_value();
        }
        int nlab = (int)(next_u64() % 8); /* some with no labels, a few with neither */
        int32_t lb = -1;
        for (int k = 0; k < nlab; k++) {
            lb += 1 + (int32_t)(next_u64() % 5);
            if (lb >= l) break;
            lab[nl++] = lb;
        }
        fptr[i + 1] = nnz;
        lptr[i + 1] = nl;
    }
    if (nnz > 0) fval[0] = -0.0f; /* written "0", it read back as +0: another digest */
    spr_dataset_view v = {n, d, l, fptr, fidx, fval, lptr, lab};
    spr_dataset *w = NULL, *r = NULL;
    spr_status st = spr_dataset_wrap(&v, &w);
    CHECK(st == SPR_STATUS_OK, "wrap of a valid view: %s", spr_last_error());
    char path[64];
    temp_path(path, sizeof path, "rt");
    if (st == SPR_STATUS_OK) {
        st = spr_dataset_write(w, path);
        CHECK(st == SPR_STATUS_OK, "write %s: %s", path, spr_last_error());
        st = spr_dataset_read(path, NULL, &r);
        CHECK(st == SPR_STATUS_OK, "read back %s: %s", path, spr_last_error());
        if (st == SPR_STATUS_OK) {
            expect e = {n, d, l, fptr, fidx, fval, lptr, lab};
            check_dataset("round trip", r, &e);
            /* and again: the written file reads back to the same file */
            char path2[64];
            temp_path(path2, sizeof path2, "rt2");
            CHECK(spr_dataset_write(r, path2) == SPR_STATUS_OK, "second write: %s", spr_last_error());
            FILE *a = fopen(path, "rb"), *b = fopen(path2, "rb");
            int same = a && b;
            while (same) {
                int ca = fgetc(a), cb = fgetc(b);
                if (ca != cb) same = 0;
                if (ca == EOF || cb == EOF) break;
            }
            CHECK(same, "second write differs from the first (%s vs %s)", path, path2);
            if (a) fclose(a);
            if (b) fclose(b);
            unlink(path2);

            /* The same points in the split format (trn_X_Xf.txt + trn_X_Y.txt) read the same,
             * with the same digest as the single file. */
            char xpath[64], ypath[64];
            temp_path(xpath, sizeof xpath, "rtx");
            temp_path(ypath, sizeof ypath, "rty");
            for (int reverse = 0; reverse < 2; reverse++) {
                write_split(&v, xpath, ypath, reverse);
                spr_dataset *sp = NULL;
                st = spr_dataset_read_split(xpath, ypath, NULL, NULL, NULL, &sp);
                CHECK(st == SPR_STATUS_OK, "split read of %s + %s: %s", xpath, ypath, spr_last_error());
                if (st == SPR_STATUS_OK) {
                    check_dataset(reverse ? "split round trip, rows reversed" : "split round trip", sp, &e);
                    CHECK(spr_dataset_digest(sp) == spr_dataset_digest(r), "split read: another digest");
                }
                spr_dataset_free(sp);
            }
            /* the features file alone: the same features, no labels */
            spr_dataset *fo = NULL;
            st = spr_dataset_read(xpath, NULL, &fo);
            CHECK(st == SPR_STATUS_OK, "features file alone %s: %s", xpath, spr_last_error());
            if (st == SPR_STATUS_OK) {
                int64_t *none = calloc(n + 1, sizeof *none);
                expect fe = {n, d, 0, fptr, fidx, fval, none, lab};
                check_dataset("features file alone", fo, &fe);
                free(none);
            }
            spr_dataset_free(fo);
            unlink(xpath);
            unlink(ypath);
        }
        unlink(path);
    }
    spr_dataset_free(r);
    spr_dataset_free(w);

    /* A write into a missing directory fails cleanly. */
    w = NULL;
    spr_dataset_wrap(&v, &w);
    st = spr_dataset_write(w, "/tmp/test_data_no_such_dir_zz/x.txt");
    CHECK(st == SPR_STATUS_IO_ERROR, "write into a missing directory: expected i/o error, got %s",
          spr_status_to_string(st));
    CHECK(strstr(spr_last_error(), "/tmp/test_data_no_such_dir_zz/x.txt") != NULL, "message names the path: %s",
          spr_last_error());
    spr_dataset_free(w);
    free(fptr);
    free(lptr);
    free(fidx);
    free(lab);
    free(fval);
}

static void test_wrap_rejects(void) {
    const int64_t fptr[] = {0, 2, 3}, lptr[] = {0, 1, 2};
    int32_t fidx[] = {1, 3, 2}, lab[] = {0, 1};
    float fval[] = {1, 2, 3};
    spr_dataset_view v = {2, 4, 2, fptr, fidx, fval, lptr, lab};
    spr_dataset *ds = NULL;
    CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_OK, "valid view: %s", spr_last_error());
    CHECK(ds && spr_dataset_max_labels(ds) == 1, "max labels of wrapped view: expected 1");
    CHECK(ds && spr_dataset_get_view(ds).feature_indices == fidx, "wrap keeps the caller's pointer");
    spr_dataset_free(ds);

    /* unsorted features */
    fidx[0] = 3; fidx[1] = 1;
    ds = (spr_dataset *)1;
    CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_BAD_INPUT && ds == NULL, "unsorted features accepted");
    CHECK(strstr(spr_last_error(), "point 0") != NULL, "message names the point: %s", spr_last_error());
    fidx[0] = 1; fidx[1] = 3;
    /* repeated feature */
    fidx[1] = 1;
    CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_BAD_INPUT, "repeated feature accepted");
    fidx[1] = 3;
    /* feature out of range */
    fidx[2] = 4;
    CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_BAD_INPUT, "feature id 4 of 4 accepted");
    fidx[2] = 2;
    /* label out of range */
    lab[1] = 2;
    CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_BAD_INPUT, "label 2 of 2 accepted");
    lab[1] = 1;
    /* non-finite value */
    fval[1] = NAN;
    CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_BAD_INPUT, "NaN value accepted");
    fval[1] = 2;
    /* decreasing indptr, indptr not starting at 0 */
    const int64_t bad_ptr[] = {0, 3, 2}, bad_start[] = {1, 2, 3};
    spr_dataset_view b = v;
    b.feature_indptr = bad_ptr;
    CHECK(spr_dataset_wrap(&b, &ds) == SPR_STATUS_BAD_INPUT, "decreasing indptr accepted");
    b = v;
    b.label_indptr = bad_start;
    CHECK(spr_dataset_wrap(&b, &ds) == SPR_STATUS_BAD_INPUT, "indptr[0] = 1 accepted");
    b = v;
    b.n_features = -1;
    CHECK(spr_dataset_wrap(&b, &ds) == SPR_STATUS_BAD_INPUT, "negative n_features accepted");
    CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_OK, "restored view: %s", spr_last_error());
    spr_dataset_free(ds);
}

/* Values as people write them, parsed by the reader, must equal strtof's reading. */
static void test_values(uint64_t seed) {
    rng_state = seed ^ 0x5bd1e995;
    char path[64];
    temp_path(path, sizeof path, "val");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    const int n = 20000;
    char (*text)[40] = malloc((size_t)n * sizeof *text);
    static const char *fixed[] = {"0", "-0", "1", "0.1234", "1e-3", "1E+2", "+2.5", ".5", "5.",
                                  "3.4028235e38", "1.17549435e-38", "1e-45", "123456789012345678901234",
                                  "0.000000000000000000000000000001", "0.30000001192092896",
                                  "16777217", "2.00000011920928955078125", "0x1p-3"};
    const int nfixed = (int)(sizeof fixed / sizeof *fixed);
    fprintf(f, "%d 1 1\n", n);
    for (int i = 0; i < n; i++) {
        if (i < nfixed) {
            snprintf(text[i], sizeof text[i], "%s", fixed[i]);
        } else {
            float v = random_value();
            int digits = 1 + (int)(next_u64() % 12);
            if (next_u64() % 2) snprintf(text[i], sizeof text[i], "%.*g", digits, (double)v);
            else snprintf(text[i], sizeof text[i], "%.*f", digits, (double)v);
            if (!isfinite(strtof(text[i], NULL))) snprintf(text[i], sizeof text[i], "1");
        }
        fprintf(f, "0 0:%s\n", text[i]);
    }
    fclose(f);
    spr_dataset *ds = NULL;
    spr_status st = spr_dataset_read(path, NULL, &ds);
    CHECK(st == SPR_STATUS_OK, "read values: %s", spr_last_error());
    if (st == SPR_STATUS_OK) {
        int wrong = 0;
        for (int i = 0; i < n; i++) {
            float want = strtof(text[i], NULL), got = ds->view.feature_values[i];
            if (memcmp(&want, &got, sizeof want) != 0) {
                if (wrong++ < 5)
                    fprintf(stderr, "FAIL value \"%s\": expected %.9g, got %.9g\n", text[i], (double)want, (double)got);
            }
        }
        CHECK(wrong == 0, "%d of %d values differ from strtof", wrong, n);
    }
    spr_dataset_free(ds);
    free(text);
    unlink(path);
}

/* Values read and written under a locale whose decimal point is a comma (a host program
 * that called setlocale(LC_ALL, "") in Germany, or Python's locale.setlocale): the
 * reader's slow path (strtof) stopped at the '.' of "1.5e-30" and refused the file, and
 * the writer's "%.9g" wrote "1,5e-30", a file no reader takes. The data format's decimal
 * point is '.', whatever the locale. The locale is made here with localedef (libc-bin)
 * from a source of LC_NUMERIC alone, so no installed locale is needed. */
static void test_comma_locale(void) {
    char dir[] = "/tmp/test_data_locale.XXXXXX", cmd[512], src[256], probe[32];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(src, sizeof src, "%s/comma.src", dir);
    FILE *f = fopen(src, "w");
    CHECK(f != NULL, "cannot create %s", src);
    if (!f) return;
    fputs("LC_NUMERIC\ndecimal_point \",\"\nthousands_sep \".\"\ngrouping 3;3\nEND LC_NUMERIC\n", f);
    fclose(f);
    /* -c: the other categories are missing on purpose (localedef exits 1 for that) */
    snprintf(cmd, sizeof cmd, "localedef -c -i %s %s/comma >/dev/null 2>&1", src, dir);
    if (system(cmd)) {} /* its status says the warnings; the locale's use below says the rest */
    setenv("LOCPATH", dir, 1);
    const char *set = setlocale(LC_NUMERIC, "comma");
    snprintf(probe, sizeof probe, "%g", 1.5);
    CHECK(set && !strcmp(probe, "1,5"),
          "could not make a comma-decimal locale in %s with localedef (libc-bin): %s, \"%s\"", dir,
          set ? set : "setlocale failed", probe);
    locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (set && c) {
        /* every one of these takes the reader's strtof path */
        static const char *text[] = {"1.5e-30", "0.1234567890123456789012", "3.4028235e38",
                                     "-7.25e+30", "1.17549435e-38", "0.000000000000000000000000000001"};
        const int n = (int)(sizeof text / sizeof *text);
        char path[64];
        temp_path(path, sizeof path, "loc");
        f = fopen(path, "w");
        CHECK(f != NULL, "cannot create %s", path);
        if (f) {
            fprintf(f, "%d 1 1\n", n);
            for (int i = 0; i < n; i++) fprintf(f, "0 0:%s\n", text[i]);
            fclose(f);
            spr_dataset *ds = NULL;
            spr_status st = spr_dataset_read(path, NULL, &ds);
            CHECK(st == SPR_STATUS_OK, "comma locale: read of '.' values: %s", spr_last_error());
            for (int i = 0; st == SPR_STATUS_OK && i < n; i++) {
                float want = strtof_l(text[i], NULL, c), got = ds->view.feature_values[i];
                CHECK(!memcmp(&want, &got, sizeof want), "comma locale: \"%s\" read as %a, expected %a",
                      text[i], (double)got, (double)want);
            }
            spr_dataset_free(ds);
        }
        /* written: values the writer's fast path cannot spell (tiny, huge, 9 digits) */
        static const float values[] = {1.5e-30f, 3.4028235e38f, 1e-45f, -2.5e-20f, 0.1f, 123456.789f};
        const int64_t m = (int64_t)(sizeof values / sizeof *values);
        int64_t fptr[7], lptr[7];
        int32_t fidx[6], lab[6];
        for (int64_t i = 0; i <= m; i++) fptr[i] = lptr[i] = i;
        for (int64_t i = 0; i < m; i++) fidx[i] = lab[i] = 0;
        spr_dataset_view v = {m, 1, 1, fptr, fidx, values, lptr, lab};
        spr_dataset *w = NULL, *r = NULL;
        CHECK(spr_dataset_wrap(&v, &w) == SPR_STATUS_OK, "comma locale: wrap: %s", spr_last_error());
        spr_status st = spr_dataset_write(w, path);
        CHECK(st == SPR_STATUS_OK, "comma locale: write: %s", spr_last_error());
        char text_out[512] = {0};
        f = fopen(path, "r");
        if (f) {
            size_t got = fread(text_out, 1, sizeof text_out - 1, f);
            text_out[got] = 0;
            fclose(f);
        }
        CHECK(!strchr(text_out, ','), "comma locale: the written file has a decimal comma:\n%s", text_out);
        st = spr_dataset_read(path, NULL, &r);
        CHECK(st == SPR_STATUS_OK, "comma locale: read back: %s", spr_last_error());
        if (st == SPR_STATUS_OK) {
            expect e = {m, 1, 1, fptr, fidx, values, lptr, lab};
            check_dataset("comma locale round trip", r, &e);
        }
        spr_dataset_free(r);
        spr_dataset_free(w);
        unlink(path);
    }
    if (c) freelocale(c);
    setlocale(LC_NUMERIC, "C");
    unsetenv("LOCPATH");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

/* spr_dataset_write onto an existing file keeps its permission bits (a data set made
 * private stayed readable by all after a rewrite). */
static void test_write_keeps_mode(void) {
    const int64_t fptr[2] = {0, 1}, lptr[2] = {0, 1};
    const int32_t fidx[1] = {3}, lab[1] = {1};
    const float fval[1] = {0.5f};
    spr_dataset_view v = {1, 4, 2, fptr, fidx, fval, lptr, lab};
    spr_dataset *w = NULL;
    CHECK(spr_dataset_wrap(&v, &w) == SPR_STATUS_OK, "wrap: %s", spr_last_error());
    char path[64];
    temp_path(path, sizeof path, "mode");
    const mode_t was = umask(022);
    struct stat sb;
    CHECK(spr_dataset_write(w, path) == SPR_STATUS_OK, "write: %s", spr_last_error());
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644, "a new data file: mode %o, expected 644",
          (unsigned)(sb.st_mode & 0777));
    CHECK(chmod(path, 0600) == 0, "chmod: %s", strerror(errno));
    CHECK(spr_dataset_write(w, path) == SPR_STATUS_OK, "rewrite: %s", spr_last_error());
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600, "a rewrite of a 600 data file left it %o",
          (unsigned)(sb.st_mode & 0777));
    /* a file no one may write (kept on purpose) is refused, not replaced */
    CHECK(chmod(path, 0444) == 0, "chmod: %s", strerror(errno));
    const ino_t ino = sb.st_ino;
    spr_status st = spr_dataset_write(w, path);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "the file is write-protected (mode 444)"),
          "a write onto a 444 data file: expected IO_ERROR naming the mode, got %s: %s",
          spr_status_to_string(st), spr_last_error());
    CHECK(stat(path, &sb) == 0 && sb.st_ino == ino && (sb.st_mode & 0777) == 0444,
          "a refused write replaced the 444 data file");
    chmod(path, 0600);
    umask(was);
    unlink(path);
    spr_dataset_free(w);
}

/* A line longer than the reader's buffer (16 MB) must still be read. */
static void test_long_line(void) {
    char path[64];
    temp_path(path, sizeof path, "long");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    const int nf = 2000000; /* "1234567:1 " ~ 10 bytes each: ~20 MB */
    fputs("7", f);
    for (int i = 0; i < nf; i++) fprintf(f, " %d:%d", 1000000 + i, i % 7);
    fputs("\n3 5:1\n", f);
    fclose(f);
    spr_dataset *ds = NULL;
    spr_status st = spr_dataset_read(path, NULL, &ds);
    CHECK(st == SPR_STATUS_OK, "read long line: %s", spr_last_error());
    if (st == SPR_STATUS_OK) {
        CHECK_EQ(2, ds->view.n_points, "long line n_points");
        CHECK_EQ(nf, ds->view.feature_indptr[1], "long line nnz");
        CHECK_EQ(1000000 + nf, ds->view.n_features, "long line n_features");
        CHECK_EQ(1000000 + nf - 1, ds->view.feature_indices[nf - 1], "last id of the long line");
        CHECK(ds->view.feature_values[nf - 1] == (float)((nf - 1) % 7), "last value of the long line");
        CHECK_EQ(5, ds->view.feature_indices[nf], "id after the long line");
    }
    spr_dataset_free(ds);
    unlink(path);
}

/* A NUL byte is refused as soon as it is read, with its line, also past the first 16 MB
 * read (the partial line carried over counts). (/dev/zero, once read whole as one line
 * until memory ran out, is test_cli.sh's, through a bounded pipe.) */
static void test_nul_bytes(void) {
    char path[64];
    temp_path(path, sizeof path, "nul");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    const int lines = 3000000; /* 6 bytes each: 18 MB */
    for (int i = 0; i < lines; i++) fputs("0 1:1\n", f);
    fputs("1 2:1", f);
    fputc('\0', f);
    fputs("\n2 1:1\n", f);
    fclose(f);
    spr_read_options o = spr_read_options_default();
    char want[128];
    snprintf(want, sizeof want, "%s:%d: a NUL byte: not a text file", path, lines + 1);
    bad(path, &o, SPR_STATUS_BAD_INPUT, want);
    unlink(path);
}

/* A compressed data set is named as such, with the command that decompresses it (it
 * was "a NUL byte: not a text file", or a bad header for a bzip2 file); a text line that
 * merely starts like a magic number ("BZh") is still read as text. */
static void test_compressed_files(void) {
    static const struct {
        const char *bytes;
        size_t len;
        const char *want;
    } cases[] = {
        {"\x1f\x8b\x08\x00\x00\x00\x00\x00", 8, "compressed with gzip, not text: decompress it first (gzip -dc "},
        {"BZh91AY&SY\x01\x02", 12, "compressed with bzip2, not text: decompress it first (bzip2 -dc "},
        {"PK\x03\x04\x14\x00", 6, "compressed with zip, not text: decompress it first (unzip "},
        {"\xfd" "7zXZ\0\0\x04", 8, "compressed with xz, not text"},
        {"\x28\xb5\x2f\xfd\x04\x00", 6, "compressed with zstd, not text"},
        {"7z\xbc\xaf\x27\x1c\x00\x04", 8, "compressed with 7-zip, not text"},
        {"Rar!\x1a\x07\x00", 7, "compressed with rar, not text"},
        {"BZh 1 2\n", 8, ":1: bad label 'BZh'"},
        /* UTF-16 and UTF-32 (PowerShell's `>`, Notepad's "Unicode"): "a NUL byte" before */
        {"\xff\xfe" "3\0 \0" "4\0 \0" "2\0\n\0", 12, "UTF-16LE text, not UTF-8 or ASCII: convert it first (iconv -f UTF-16LE -t UTF-8 "},
        {"\xfe\xff" "\0" "3\0 \0" "4\0 \0" "2\0\n", 12, "UTF-16BE text, not UTF-8 or ASCII"},
        {"3\0 \0" "4\0 \0" "2\0\n\0", 10, "UTF-16LE text, not UTF-8 or ASCII"},
        {"\0" "3\0 \0" "4\0 \0" "2\0\n", 10, "UTF-16BE text, not UTF-8 or ASCII"},
        {"\xff\xfe\0\0" "3\0\0\0", 8, "UTF-32LE text, not UTF-8 or ASCII"},
        {"\0\0\xfe\xff" "\0\0\0" "3", 8, "UTF-32BE text, not UTF-8 or ASCII"},
        {"3 4 2\n\0", 7, ":2: a NUL byte: not a text file"},
    };
    spr_read_options o = spr_read_options_default();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[64];
        temp_path(path, sizeof path, "packed");
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL, "cannot create %s", path);
        if (!f) return;
        fwrite(cases[i].bytes, 1, cases[i].len, f);
        fclose(f);
        bad(path, &o, SPR_STATUS_BAD_INPUT, cases[i].want);
        unlink(path);
    }
}

/* An error about a path of thousands of characters keeps its end: the message buffer
 * (1 KB) used to hold only the start of the path, the reason cut off. */
static void test_long_path_message(void) {
    char path[3200];
    int len = snprintf(path, sizeof path, "/tmp");
    while (len < 3000) len += snprintf(path + len, sizeof path - (size_t)len, "/%0200d", 0);
    len += snprintf(path + len, sizeof path - (size_t)len, "/train.txt");
    spr_read_options o = spr_read_options_default();
    spr_dataset *ds = NULL;
    spr_status st = spr_dataset_read(path, &o, &ds);
    const char *msg = spr_last_error();
    size_t n = strlen(msg);
    const char *want = "train.txt: cannot open: No such file or directory";
    CHECK(st == SPR_STATUS_IO_ERROR && n > strlen(want) && strcmp(msg + n - strlen(want), want) == 0,
          "a %d-character path: the message ends with \"%s\", got \"...%s\"", len, want,
          n > 80 ? msg + n - 80 : msg);
    CHECK(strncmp(msg, "/tmp/000", 8) == 0 && strstr(msg, " ... ") != NULL,
          "the message keeps the path's start and marks the cut: \"%.60s...\"", msg);
}

/* A file that grows while it is read must be refused, not half-read. A writer thread
 * appends to a 48 MB file 30 ms after the reader started; the read takes far longer.
 * Timing-based, so the attempt is repeated (up to 3 times) before it counts as failed. */
typedef struct appender {
    const char *path;
} appender;

static void *append_later(void *arg) {
    const appender *a = arg;
    usleep(30000);
    FILE *f = fopen(a->path, "a");
    if (f) {
        fputs("1 0:1\n", f);
        fclose(f);
    }
    return NULL;
}

static void test_file_changes_while_read(void) {
    char path[] = "/tmp/spr_test_data_grow.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        CHECK(0, "mkstemp: %s", strerror(errno));
        return;
    }
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 1200000; i++) /* ~48 MB, no header: three 16 MB reads at least */
        fprintf(f, "%d 1:0.5 7:0.25 19:0.125 23:1\n", i % 100);
    fclose(f);
    int detected = 0;
    for (int attempt = 0; attempt < 3 && !detected; attempt++) {
        pthread_t t;
        appender a = {path};
        pthread_create(&t, NULL, append_later, &a);
        spr_read_options o = spr_read_options_default();
        spr_dataset *d = NULL;
        spr_status st = spr_dataset_read(path, &o, &d);
        pthread_join(t, NULL);
        detected = st == SPR_STATUS_BAD_INPUT && d == NULL &&
                   strstr(spr_last_error(), "changed while being read") != NULL;
        spr_dataset_free(d);
    }
    CHECK(detected, "a file appended to while read is refused (last message: %s)",
          spr_last_error());
    unlink(path);
}

/* A dataset from text written to a temporary file (NULL on failure, reported). */
static spr_dataset *read_text(const char *text, int one_based) {
    char path[64];
    temp_path(path, sizeof path, "dig");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    spr_read_options o = spr_read_options_default();
    o.one_based = one_based;
    spr_dataset *ds = NULL;
    spr_status st = spr_dataset_read(path, &o, &ds);
    CHECK(st == SPR_STATUS_OK, "read %s: %s", path, spr_last_error());
    unlink(path);
    return ds;
}

/* spr_dataset_digest: what a model's note of its training set holds. Equal for the same
 * points whatever made them; different for any change of a value, an id, a label, or the
 * order; pinned, since saved models hold it (a changed function would make every resume
 * refuse its own training set). */
static void test_digest(void) {
    spr_dataset *zero = read_text("3 4 5\n1,2 0:0.5 3:1\n 2:2\n4 1:1\n", 0);
    spr_dataset *one = read_text("1,2 1:0.5 4:1\n 3:2\n4 2:1\n", 1);
    spr_dataset *value = read_text("1,2 0:0.5 3:1.0000001\n 2:2\n4 1:1\n", 0);
    spr_dataset *label = read_text("1,3 0:0.5 3:1\n 2:2\n4 1:1\n", 0);
    spr_dataset *order = read_text(" 2:2\n1,2 0:0.5 3:1\n4 1:1\n", 0);
    spr_dataset *moved = read_text("1,2 0:0.5\n3:1 2:2\n4 1:1\n", 0); /* a feature to the next point */
    spr_dataset *wrapped = NULL;
    if (!zero || !one || !value || !label || !order || !moved) goto out;
    spr_dataset_view v = spr_dataset_get_view(zero);
    v.n_features = 100; /* the declared widths are not part of it */
    CHECK(spr_dataset_wrap(&v, &wrapped) == SPR_STATUS_OK, "wrap: %s", spr_last_error());
    const uint64_t d = spr_dataset_digest(zero);
    CHECK(d == spr_dataset_digest(one), "digest: a one-based file of the same points: %016llx vs %016llx",
          (unsigned long long)d, (unsigned long long)spr_dataset_digest(one));
    CHECK(d == spr_dataset_digest(wrapped), "digest: the points wrapped from arrays differ");
    const spr_dataset *other[] = {value, label, order, moved};
    for (int i = 0; i < 4; i++)
        CHECK(spr_dataset_digest(other[i]) != d, "digest: change %d (value, label, order, moved) not seen", i);
    CHECK(d == 0xccdc146ca1a9a7d4ull, "digest: pinned value changed: %016llx", (unsigned long long)d);
    CHECK(spr_dataset_digest(NULL) == 0, "digest of NULL: expected 0");
out:
    spr_dataset_free(zero);
    spr_dataset_free(one);
    spr_dataset_free(value);
    spr_dataset_free(label);
    spr_dataset_free(order);
    spr_dataset_free(moved);
    spr_dataset_free(wrapped);
}

/* Writes text to a new temporary file; its name goes to path. */
static void text_file(char path[64], const char *tag, const char *text) {
    temp_path(path, 64, tag);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Reads a split pair that must fail: status BAD_INPUT, a message with want. */
static void bad_split(const char *xtext, const char *ytext, const char *want, int check_y_named) {
    char x[64], y[64];
    text_file(x, "bx", xtext);
    text_file(y, "by", ytext);
    spr_dataset *ds = (spr_dataset *)1;
    spr_status st = spr_dataset_read_split(x, y, NULL, NULL, NULL, &ds);
    CHECK(st == SPR_STATUS_BAD_INPUT && ds == NULL, "split %s: expected bad input, got %s (%s)", want,
          spr_status_to_string(st), spr_last_error());
    CHECK(strstr(spr_last_error(), want) != NULL, "split: expected a message containing \"%s\", got \"%s\"",
          want, spr_last_error());
    const char *named = check_y_named ? y : x;
    CHECK(strstr(spr_last_error(), named) != NULL, "split: the message should name %s: \"%s\"", named,
          spr_last_error());
    if (st == SPR_STATUS_OK) spr_dataset_free(ds);
    unlink(x);
    unlink(y);
}

/* What a progress callback was told: calls, the last (done, total), whether done ever
 * went back or past the total. */
typedef struct seen_progress {
    int calls, backwards;
    int64_t done, total;
} seen_progress;

static void record_progress(void *user, int64_t done, int64_t total) {
    seen_progress *s = user;
    if (done < s->done || (total > 0 && done > total)) s->backwards = 1;
    s->calls++;
    s->done = done;
    s->total = total;
}

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* The Extreme Classification Repository's split format (spr_dataset_read_split). */
static void test_split_format(void) {
    char x[64], y[64];
    /* an empty line is a row; pairs in any order; one_based shifts features only */
    text_file(x, "sx", "3 5\n2:1 1:0.5\n\n5:2\n");
    text_file(y, "sy", "3 4\n3:1.0 0:1\n2:0.5\n\n");
    spr_read_options o = spr_read_options_default();
    o.one_based = 1;
    spr_dataset *ds = NULL;
    spr_status st = spr_dataset_read_split(x, y, &o, NULL, NULL, &ds);
    CHECK(st == SPR_STATUS_OK, "split read: %s", spr_last_error());
    if (st == SPR_STATUS_OK) {
        const int64_t fptr[] = {0, 2, 2, 3}, lptr[] = {0, 2, 3, 3};
        const int32_t fidx[] = {0, 1, 4}, lab[] = {0, 3, 2};
        const float fval[] = {0.5f, 1.0f, 2.0f};
        expect e = {3, 5, 4, fptr, fidx, fval, lptr, lab};
        check_dataset("split, one-based", ds, &e);
    }
    spr_dataset_free(ds);
    /* progress: the two files as one, done growing to both sizes together */
    seen_progress seen = {0, 0, 0, 0};
    ds = NULL;
    st = spr_dataset_read_split(x, y, &o, record_progress, &seen, &ds);
    const int64_t both = file_size(x) + file_size(y);
    CHECK(st == SPR_STATUS_OK && seen.calls >= 2 && !seen.backwards && seen.done == both && seen.total == both,
          "split progress: %d calls, backwards %d, last %lld of %lld, files %lld bytes", seen.calls,
          seen.backwards, (long long)seen.done, (long long)seen.total, (long long)both);
    spr_dataset_free(ds);
    seen = (seen_progress){0, 0, 0, 0};
    ds = NULL;
    st = spr_dataset_read_progress(y, NULL, record_progress, &seen, &ds); /* "N D": a features file */
    CHECK(st == SPR_STATUS_OK && !seen.backwards && seen.done == file_size(y) && seen.total == file_size(y),
          "single-file progress: last %lld of %lld, file %lld bytes", (long long)seen.done,
          (long long)seen.total, (long long)file_size(y));
    spr_dataset_free(ds);
    /* a byte order mark before a split header, and before a filter's first pair */
    char xb[64], yb[64];
    text_file(xb, "sxb", "\xEF\xBB\xBF" "2 5\n1:1\n\n");
    text_file(yb, "syb", "\xEF\xBB\xBF" "2 4\n3:1\n0:1\n");
    ds = NULL;
    st = spr_dataset_read_split(xb, yb, NULL, NULL, NULL, &ds);
    CHECK(st == SPR_STATUS_OK && spr_dataset_get_view(ds).n_points == 2, "split files with a BOM: %s", spr_last_error());
    spr_dataset_free(ds);
    unlink(xb);
    unlink(yb);
    text_file(xb, "fb", "\xEF\xBB\xBF" "1 3\n");
    ds = NULL;
    st = spr_dataset_read_filter(xb, 2, 4, &ds);
    CHECK(st == SPR_STATUS_OK && spr_dataset_get_view(ds).labels[0] == 3, "filter with a BOM: %s", spr_last_error());
    spr_dataset_free(ds);
    unlink(xb);
    /* options override the headers' widths */
    o = spr_read_options_default();
    o.n_features = 9;
    o.n_labels = 7;
    ds = NULL;
    st = spr_dataset_read_split(x, y, &o, NULL, NULL, &ds);
    CHECK(st == SPR_STATUS_OK, "split read with widths: %s", spr_last_error());
    if (st == SPR_STATUS_OK) {
        spr_dataset_view v = spr_dataset_get_view(ds);
        CHECK(v.n_features == 9 && v.n_labels == 7, "split widths from options: %lld %lld",
              (long long)v.n_features, (long long)v.n_labels);
    }
    spr_dataset_free(ds);
    /* labels NULL: points without labels */
    o = spr_read_options_default();
    o.one_based = 1;
    ds = NULL;
    st = spr_dataset_read_split(x, NULL, &o, NULL, NULL, &ds);
    CHECK(st == SPR_STATUS_OK && spr_dataset_get_view(ds).label_indptr[3] == 0 &&
              spr_dataset_get_view(ds).n_points == 3,
          "split read without labels: %s", spr_last_error());
    spr_dataset_free(ds);
    /* svmlight format is not asked: "N D" on line 1 of a single file is a features file */
    o = spr_read_options_default();
    o.format = SPR_FORMAT_SVMLIGHT;
    ds = NULL;
    st = spr_dataset_read(x, &o, &ds);
    CHECK(st == SPR_STATUS_BAD_INPUT, "svmlight read of a split features file should fail, got %s",
          spr_status_to_string(st));
    spr_dataset_free(ds);
    unlink(x);
    unlink(y);

    bad_split("2 5\n0:1\n", "2 3\n0:1\n1:1\n", "header says 2 rows, file has 1", 0);
    bad_split("1 5\n0:1\n1:1\n", "1 3\n0:1\n", ":3: header says 1 rows, file has more", 0);
    bad_split("2 5\n0:1\n1:1\n", "3 3\n0:1\n1:1\n\n", "not the labels of those points", 1);
    bad_split("1 5\n0:1\n", "1 3\n7:1\n", ":2: label id 7 out of range (header says 3 labels)", 1);
    bad_split("1 5\n9:1\n", "1 3\n0:1\n", ":2: feature id 9 out of range (header says 5 features)", 0);
    bad_split("1 5\n0:1\n", "1 3\n1:1 0:0\n", "label 0 has weight 0", 1);
    bad_split("1 5\n0:1\n", "1 3\n1:-1\n", "must have a positive weight", 1);
    bad_split("1 5\n0:1\n", "1 3\n2:1 2:1\n", ":2: label id 2 repeated", 1);
    bad_split("1 5\n0:1\n", "0:1\n", ":1: expected the labels file's header \"ROWS COLUMNS\"", 1);
    bad_split("1 5\n0:1\n", "", "empty file", 1);
    bad_split("1 5 3\n0:1\n", "1 3\n0:1\n", ":1: a header \"N D L\": a single-file XMC data set, labels "
                                            "included, not the features file of a split pair", 0);
    bad_split("1 5\n0:1\n", "1 5 3\n0:1\n", "not the labels file of a split pair", 1);
    bad_split("x 5\n0:1\n", "1 3\n0:1\n", ":1: expected the features file's header \"ROWS COLUMNS\" (the "
                                          "XMC repository's split format), found 'x'", 0);
    bad_split("1 5\n0:1 # note\n", "1 3\n0:1\n", ":2: bad feature '#'", 0);
    bad_split("1 5\n0:1\n", "1 3\n1\n", ":2: missing ':' in label '1'", 1);
    bad_split("1 5\n0:nan\n", "1 3\n1:1\n", ":2: value of feature '0:nan' is not finite", 0);
    /* a single file with a split header but a bad row is refused with its line */
    text_file(x, "sx3", "\n2 3000000000\n0:1\n\n"); /* the header's own line, after a blank one */
    bad(x, NULL, SPR_STATUS_BAD_INPUT, ":2: header counts 3000000000 columns; at most 2^31 supported");
    unlink(x);
    text_file(x, "sx2", "2 4\n0:1\n5:1\n");
    bad(x, NULL, SPR_STATUS_BAD_INPUT, ":3: feature id 5 out of range (header says 4 features)");
    unlink(x);
}

/* A filter file that must fail: a message with want (and the file's name). */
static void bad_filter(const char *text, int64_t n_points, int64_t n_labels, const char *want) {
    char path[64];
    text_file(path, "bf", text);
    spr_dataset *ds = (spr_dataset *)1;
    spr_status st = spr_dataset_read_filter(path, n_points, n_labels, &ds);
    CHECK(st == SPR_STATUS_BAD_INPUT && ds == NULL, "filter %s: expected bad input, got %s (%s)", want,
          spr_status_to_string(st), spr_last_error());
    CHECK(strstr(spr_last_error(), want) && strstr(spr_last_error(), path),
          "filter: expected a message with \"%s\" naming %s, got \"%s\"", want, path, spr_last_error());
    if (st == SPR_STATUS_OK) spr_dataset_free(ds);
    unlink(path);
}

/* The XMC repository's filter files (filter_labels_test.txt: "POINT LABEL" per line). */
static void test_filter_files(void) {
    char path[64];
    /* any order, a repeated pair once, blank lines and CRLF; points without any */
    text_file(path, "f", "3 7\r\n0 2\n\n3 1\n  0 2 \n3 4\n");
    spr_dataset *ds = NULL;
    spr_status st = spr_dataset_read_filter(path, 5, 9, &ds);
    CHECK(st == SPR_STATUS_OK, "filter read: %s", spr_last_error());
    if (st == SPR_STATUS_OK) {
        const int64_t fptr[] = {0, 0, 0, 0, 0, 0}, lptr[] = {0, 1, 1, 1, 4, 4};
        const int32_t lab[] = {2, 1, 4, 7};
        expect e = {5, 0, 9, fptr, NULL, NULL, lptr, lab};
        check_dataset("filter", ds, &e);
    }
    spr_dataset_free(ds);
    ds = NULL; /* the labels' width from the ids */
    st = spr_dataset_read_filter(path, 4, 0, &ds);
    CHECK(st == SPR_STATUS_OK && spr_dataset_get_view(ds).n_points == 4 && spr_dataset_get_view(ds).n_labels == 8,
          "filter labels from the ids: %s", spr_last_error());
    spr_dataset_free(ds);
    ds = (spr_dataset *)1; /* the points' count is required (a stray 2^31 made a 16 GB array) */
    st = spr_dataset_read_filter(path, 0, 9, &ds);
    CHECK(st == SPR_STATUS_BAD_INPUT && ds == NULL && strstr(spr_last_error(), "n_points must be >= 1"),
          "filter without n_points: refused, got %s", spr_last_error());
    unlink(path);
    text_file(path, "fe", ""); /* empty: nothing excluded */
    ds = NULL;
    st = spr_dataset_read_filter(path, 3, 9, &ds);
    CHECK(st == SPR_STATUS_OK && spr_dataset_get_view(ds).n_points == 3 && spr_dataset_get_view(ds).label_indptr[3] == 0,
          "empty filter: %s", spr_last_error());
    spr_dataset_free(ds);
    unlink(path);
    bad_filter("0 1\n5 2\n", 5, 9, ":2: point id 5 out of range (the data has 5 points)");
    bad_filter("0 9\n", 5, 9, ":1: label id 9 out of range (the model has 9 labels)");
    bad_filter("0 1 2\n", 5, 9, ":1: '2' after \"POINT LABEL\"");
    bad_filter("0\n", 5, 9, ":1: expected \"POINT LABEL\", the label id is missing");
    bad_filter("0 -1\n", 5, 9, ":1: bad label id '-1'");
    bad_filter("0,1\n", 5, 9, ":1: bad point id '0,1'");
    bad_filter("1.0 2.0\n", 5, 9, ":1: bad point id '1.0'");
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    printf("test_data: seed %llu\n", (unsigned long long)seed);
    check_enter_tests_dir();
    test_good_files();
    test_bad_files();
    test_wrap_rejects();
    test_round_trip(seed);
    test_values(seed);
    test_comma_locale();
    test_write_keeps_mode();
    test_long_line();
    test_nul_bytes();
    test_compressed_files();
    test_long_path_message();
    test_file_changes_while_read();
    test_digest();
    test_split_format();
    test_filter_files();
    return CHECK_DONE("test_data");
}

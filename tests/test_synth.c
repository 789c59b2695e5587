/*
 * test_synth.c: the synthetic data generator. Presets, argument checks, atomic writes,
 * determinism across seeds and thread counts, and the generated "tiny" set itself: every
 * line valid, the preset's means, a heavy-tailed label law, and learnable labels (a
 * nearest-centroid classifier built from train must beat the popularity baseline by far
 * on test, which random data would not allow). The files are parsed here, strictly, so
 * the test does not depend on the reader in data.c.
 */
#define _GNU_SOURCE
#include "check.h"
#include "sparrow.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = '\0';
    if (len) *len = (size_t)n;
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Entries in dir whose name contains ".tmp." (left-over temporaries). */
static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ a strict parser */

typedef struct parsed {
    long long n, d, l;
    long long *fptr, *lptr; /* (n + 1) */
    int *fidx, *lab;        /* (nnz), (label entries) */
    double *fval;
    long long nnz, nlab;
} parsed;

static void parsed_free(parsed *p) {
    free(p->fptr);
    free(p->lptr);
    free(p->fidx);
    free(p->lab);
    free(p->fval);
    memset(p, 0, sizeof *p);
}

/* Returns 0 on success, else prints the first problem (line number) and returns -1. */
static int parse_xmc(const char *path, parsed *p) {
    memset(p, 0, sizeof *p);
    char *text = slurp(path, NULL);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    char *s = text, *end;
    p->n = strtoll(s, &end, 10);
    if (end == s || *end != ' ') goto bad_header;
    s = end + 1;
    p->d = strtoll(s, &end, 10);
    if (end == s || *end != ' ') goto bad_header;
    s = end + 1;
    p->l = strtoll(s, &end, 10);
    if (end == s || *end != '\n') goto bad_header;
    s = end + 1;
    size_t cap_f = 1 << 16, cap_l = 1 << 12;
    p->fptr = calloc((size_t)p->n + 1, sizeof *p->fptr);
    p->lptr = calloc((size_t)p->n + 1, sizeof *p->lptr);
    p->fidx = malloc(cap_f * sizeof *p->fidx);
    p->fval = malloc(cap_f * sizeof *p->fval);
    p->lab = malloc(cap_l * sizeof *p->lab);
    long long line = 1;
    for (long long i = 0; i < p->n; i++) {
        line++;
        if (!*s) {
            fprintf(stderr, "%s:%lld: file ends after %lld of %lld points\n", path, line, i, p->n);
            goto fail;
        }
        /* labels: "l1,l2,..." then a space */
        long long prev = -1;
        while (*s != ' ' && *s != '\n') {
            if (*s < '0' || *s > '9') {
                fprintf(stderr, "%s:%lld: bad label character '%c'\n", path, line, *s);
                goto fail;
            }
            long long v = strtoll(s, &end, 10);
            if (v < 0 || v >= p->l || v <= prev) {
                fprintf(stderr, "%s:%lld: label %lld out of range or not ascending\n", path, line, v);
                goto fail;
            }
            if ((size_t)p->nlab == cap_l) {
                cap_l *= 2;
                p->lab = realloc(p->lab, cap_l * sizeof *p->lab);
            }
            p->lab[p->nlab++] = (int)v;
            prev = v;
            s = end;
            if (*s == ',') s++;
            else if (*s != ' ' && *s != '\n') {
                fprintf(stderr, "%s:%lld: bad separator after label\n", path, line);
                goto fail;
            }
        }
        prev = -1;
        while (*s == ' ') {
            s++;
            long long fi = strtoll(s, &end, 10);
            if (end == s || *end != ':' || fi < 0 || fi >= p->d || fi <= prev) {
                fprintf(stderr, "%s:%lld: feature id %lld bad, out of range or not ascending\n", path,
                        line, fi);
                goto fail;
            }
            s = end + 1;
            double v = strtod(s, &end);
            if (end == s || !isfinite(v) || !(v > 0)) {
                fprintf(stderr, "%s:%lld: feature %lld has value %g (not positive/finite)\n", path,
                        line, fi, v);
                goto fail;
            }
            if ((size_t)p->nnz == cap_f) {
                cap_f *= 2;
                p->fidx = realloc(p->fidx, cap_f * sizeof *p->fidx);
                p->fval = realloc(p->fval, cap_f * sizeof *p->fval);
            }
            p->fidx[p->nnz] = (int)fi;
            p->fval[p->nnz++] = v;
            prev = fi;
            s = end;
        }
        if (*s != '\n') {
            fprintf(stderr, "%s:%lld: junk at end of line\n", path, line);
            goto fail;
        }
        s++;
        p->fptr[i + 1] = p->nnz;
        p->lptr[i + 1] = p->nlab;
    }
    if (*s) {
        fprintf(stderr, "%s: more lines than the header's %lld\n", path, p->n);
        goto fail;
    }
    free(text);
    return 0;
bad_header:
    fprintf(stderr, "%s:1: bad header\n", path);
fail:
    free(text);
    parsed_free(p);
    return -1;
}

/* ------------------------------------------------------------------ tests */

static void test_presets(void) {
    struct {
        const char *name;
        long long n_train, n_test, d, l;
        double lpp, nnz;
    } want[] = {
        {"tiny", 2000, 500, 1000, 200, 2.0, 20},
        {"small", 30000, 5000, 20000, 5000, 3.0, 40},
        {"amazon670k", 490449, 153025, 135909, 670091, 5.45, 75},
        {"delicious200k", 196606, 100095, 782585, 205443, 75.54, 301},
        {"wiki325k", 1778351, 587084, 1617899, 325056, 3.19, 42.5},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        spr_synth_config c;
        memset(&c, 0, sizeof c);
        spr_status st = spr_synth_preset(want[i].name, &c);
        CHECK(st == SPR_STATUS_OK, "preset %s: expected ok, got %d (%s)", want[i].name, st,
              spr_last_error());
        CHECK(strcmp(c.name, want[i].name) == 0, "expected name %s, got %s", want[i].name, c.name);
        CHECK(c.n_train == want[i].n_train && c.n_test == want[i].n_test,
              "%s: expected %lld/%lld points, got %lld/%lld", want[i].name, want[i].n_train,
              want[i].n_test, (long long)c.n_train, (long long)c.n_test);
        CHECK(c.n_features == want[i].d && c.n_labels == want[i].l,
              "%s: expected %lld features %lld labels, got %lld %lld", want[i].name, want[i].d,
              want[i].l, (long long)c.n_features, (long long)c.n_labels);
        CHECK(c.labels_per_point == want[i].lpp && c.nnz_per_point == want[i].nnz,
              "%s: expected %g labels %g nnz per point, got %g %g", want[i].name, want[i].lpp,
              want[i].nnz, c.labels_per_point, c.nnz_per_point);
        CHECK(c.zipf_exponent > 0 && c.cluster_size >= c.labels_per_point && c.prototype_nnz > 0 &&
                  c.noise >= 0 && c.noise < 1,
              "%s: model parameters not sensible: zipf %g cluster %lld prototype %lld noise %g",
              want[i].name, c.zipf_exponent, (long long)c.cluster_size, (long long)c.prototype_nnz,
              c.noise);
    }
    spr_synth_config c;
    spr_status st = spr_synth_preset("amazon3m", &c);
    CHECK(st == SPR_STATUS_BAD_INPUT, "unknown preset: expected bad input, got %d", st);
    CHECK(strstr(spr_last_error(), "amazon3m") && strstr(spr_last_error(), "tiny") &&
              strstr(spr_last_error(), "wiki325k"),
          "expected a message naming the preset and the valid ones, got \"%s\"", spr_last_error());
    st = spr_synth_preset(NULL, &c);
    CHECK(st == SPR_STATUS_BAD_INPUT, "NULL name: expected bad input, got %d", st);
}

static void test_bad_arguments(const char *dir) {
    spr_synth_config c;
    spr_synth_preset("tiny", &c);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/bad_train.txt", dir);
    snprintf(b, sizeof b, "%s/bad_test.txt", dir);
    spr_status st = spr_synth_generate(&c, 1, NULL, b, 1);
    CHECK(st == SPR_STATUS_BAD_INPUT, "NULL train path: expected bad input, got %d", st);
    st = spr_synth_generate(&c, 1, a, NULL, 1);
    CHECK(st == SPR_STATUS_BAD_INPUT, "NULL test path: expected bad input, got %d", st);
    st = spr_synth_generate(NULL, 1, a, b, 1);
    CHECK(st == SPR_STATUS_BAD_INPUT, "NULL config: expected bad input, got %d", st);
    spr_synth_config z = c;
    z.n_train = 0;
    st = spr_synth_generate(&z, 1, a, b, 1);
    CHECK(st == SPR_STATUS_BAD_INPUT, "n_train 0: expected bad input, got %d", st);
    CHECK(strstr(spr_last_error(), "n_train") != NULL, "expected a message naming n_train, got \"%s\"",
          spr_last_error());
    z = c;
    z.n_labels = 0;
    st = spr_synth_generate(&z, 1, a, b, 1);
    CHECK(st == SPR_STATUS_BAD_INPUT, "n_labels 0: expected bad input, got %d", st);
    z = c;
    z.n_features = 0;
    st = spr_synth_generate(&z, 1, a, b, 1);
    CHECK(st == SPR_STATUS_BAD_INPUT, "n_features 0: expected bad input, got %d", st);
    CHECK(access(a, F_OK) != 0 && access(b, F_OK) != 0, "a refused call must write nothing");

    /* An unwritable test path: IO error naming it, and the train file must not appear
     * either (both are renamed only when both are complete), nor any temporary. */
    char nodir[512];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/test.txt", dir);
    st = spr_synth_generate(&c, 1, a, nodir, 1);
    CHECK(st == SPR_STATUS_IO_ERROR, "unwritable path: expected i/o error, got %d", st);
    CHECK(strstr(spr_last_error(), nodir) != NULL, "expected a message naming %s, got \"%s\"", nodir,
          spr_last_error());
    CHECK(access(a, F_OK) != 0, "train file must not exist after a check_failed generate");
    CHECK(count_temps(dir) == 0, "expected no temporaries left, found %d", count_temps(dir));
}

static void test_generated(const char *dir, uint64_t seed) {
    spr_synth_config c;
    spr_synth_preset("tiny", &c);
    char tr1[512], te1[512], tr2[512], te2[512], tr0[512], te0[512], trs[512], tes[512];
    snprintf(tr1, sizeof tr1, "%s/t1_train.txt", dir);
    snprintf(te1, sizeof te1, "%s/t1_test.txt", dir);
    snprintf(tr2, sizeof tr2, "%s/t2_train.txt", dir);
    snprintf(te2, sizeof te2, "%s/t2_test.txt", dir);
    snprintf(tr0, sizeof tr0, "%s/t0_train.txt", dir);
    snprintf(te0, sizeof te0, "%s/t0_test.txt", dir);
    snprintf(trs, sizeof trs, "%s/s_train.txt", dir);
    snprintf(tes, sizeof tes, "%s/s_test.txt", dir);

    double t0 = now();
    spr_status st = spr_synth_generate(&c, seed, tr1, te1, 1);
    double secs = now() - t0;
    CHECK(st == SPR_STATUS_OK, "generate tiny (1 thread): expected ok, got %d (%s)", st, spr_last_error());
    CHECK(secs < 0.5, "generate tiny: expected well under a second, took %.3f s", secs);
    st = spr_synth_generate(&c, seed, tr2, te2, 2);
    CHECK(st == SPR_STATUS_OK, "generate tiny (2 threads): got %d (%s)", st, spr_last_error());
    st = spr_synth_generate(&c, seed, tr0, te0, 0);
    CHECK(st == SPR_STATUS_OK, "generate tiny (all threads): got %d (%s)", st, spr_last_error());
    CHECK(same_file(tr1, tr2) && same_file(te1, te2), "1 and 2 threads: expected identical files");
    CHECK(same_file(tr1, tr0) && same_file(te1, te0), "1 and all threads: expected identical files");
    /* Same seed, same thread count, again over an existing file. */
    st = spr_synth_generate(&c, seed, tr2, te2, 2);
    CHECK(st == SPR_STATUS_OK && same_file(tr1, tr2) && same_file(te1, te2),
          "regenerating: expected identical files (status %d)", st);
    st = spr_synth_generate(&c, seed + 1, trs, tes, 2);
    CHECK(st == SPR_STATUS_OK, "generate other seed: got %d", st);
    CHECK(!same_file(tr1, trs) && !same_file(te1, tes), "a different seed must give different files");
    CHECK(!same_file(tr1, te1), "train and test must differ");
    CHECK(count_temps(dir) == 0, "expected no temporaries left, found %d", count_temps(dir));

    parsed tr, te;
    int ok_tr = parse_xmc(tr1, &tr) == 0, ok_te = parse_xmc(te1, &te) == 0;
    CHECK(ok_tr && ok_te, "expected every line of both files valid (see above)");
    if (!ok_tr || !ok_te) {
        if (ok_tr) parsed_free(&tr);
        if (ok_te) parsed_free(&te);
        return;
    }
    CHECK(tr.n == c.n_train && tr.d == c.n_features && tr.l == c.n_labels,
          "train header: expected %lld %lld %lld, got %lld %lld %lld", (long long)c.n_train,
          (long long)c.n_features, (long long)c.n_labels, tr.n, tr.d, tr.l);
    CHECK(te.n == c.n_test && te.d == c.n_features && te.l == c.n_labels,
          "test header: expected %lld %lld %lld, got %lld %lld %lld", (long long)c.n_test,
          (long long)c.n_features, (long long)c.n_labels, te.n, te.d, te.l);

    /* Means, and no empty points. */
    double lpp = (double)tr.nlab / (double)tr.n, nnz = (double)tr.nnz / (double)tr.n;
    CHECK(fabs(lpp - c.labels_per_point) <= 0.15 * c.labels_per_point,
          "labels per point: expected %g +-15%%, got %.3f", c.labels_per_point, lpp);
    CHECK(fabs(nnz - c.nnz_per_point) <= 0.15 * c.nnz_per_point,
          "nnz per point: expected %g +-15%%, got %.3f", c.nnz_per_point, nnz);
    long long empty = 0;
    for (long long i = 0; i < tr.n; i++)
        empty += tr.lptr[i + 1] == tr.lptr[i] || tr.fptr[i + 1] == tr.fptr[i];
    CHECK(empty == 0, "expected no point without labels or features, got %lld", empty);
    /* L2-normalised rows (to the 4 digits written). */
    double worst = 0;
    for (long long i = 0; i < tr.n; i++) {
        double s = 0;
        for (long long j = tr.fptr[i]; j < tr.fptr[i + 1]; j++) s += tr.fval[j] * tr.fval[j];
        if (fabs(sqrt(s) - 1) > worst) worst = fabs(sqrt(s) - 1);
    }
    CHECK(worst < 0.01, "expected unit L2 norms, worst |norm - 1| = %g", worst);

    /* Heavy tail: the most frequent label covers far more points than the median one
     * (uniform labels would give a ratio near 2). */
    long long *freq = calloc((size_t)tr.l, sizeof *freq), *sorted = calloc((size_t)tr.l, sizeof *sorted);
    for (long long e = 0; e < tr.nlab; e++) freq[tr.lab[e]]++;
    memcpy(sorted, freq, (size_t)tr.l * sizeof *sorted);
    for (long long i = 1; i < tr.l; i++) { /* insertion sort: 200 labels */
        long long v = sorted[i], j = i;
        while (j > 0 && sorted[j - 1] > v) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = v;
    }
    long long top = sorted[tr.l - 1], median = sorted[tr.l / 2];
    CHECK(top >= 10 * (median > 0 ? median : 1),
          "expected a heavy tail: top label %lld points vs median %lld", top, median);

    /* Learnability: centroids of the train points of each label (unit length), then each
     * test point's best-scoring label must be one of its own for well over half of the
     * points, and far above always answering the most frequent label. */
    double *cen = calloc((size_t)(tr.l * tr.d), sizeof *cen);
    for (long long i = 0; i < tr.n; i++)
        for (long long e = tr.lptr[i]; e < tr.lptr[i + 1]; e++)
            for (long long j = tr.fptr[i]; j < tr.fptr[i + 1]; j++)
                cen[(long long)tr.lab[e] * tr.d + tr.fidx[j]] += tr.fval[j];
    for (long long l = 0; l < tr.l; l++) {
        double s = 0;
        for (long long f = 0; f < tr.d; f++) s += cen[l * tr.d + f] * cen[l * tr.d + f];
        if (s > 0)
            for (long long f = 0; f < tr.d; f++) cen[l * tr.d + f] /= sqrt(s);
    }
    long long most = 0;
    for (long long l = 1; l < tr.l; l++)
        if (freq[l] > freq[most]) most = l;
    long long hits = 0, base_hits = 0;
    for (long long i = 0; i < te.n; i++) {
        long long best = -1;
        double best_score = -1;
        for (long long l = 0; l < tr.l; l++) {
            double s = 0;
            for (long long j = te.fptr[i]; j < te.fptr[i + 1]; j++) s += cen[l * tr.d + te.fidx[j]] * te.fval[j];
            if (s > best_score) {
                best_score = s;
                best = l;
            }
        }
        for (long long e = te.lptr[i]; e < te.lptr[i + 1]; e++) {
            hits += te.lab[e] == best;
            base_hits += te.lab[e] == most;
        }
    }
    double p1 = (double)hits / (double)te.n, base = (double)base_hits / (double)te.n;
    printf("tiny: %.2f labels/pt, %.1f nnz/pt, top label %lld pts vs median %lld; nearest-centroid "
           "P@1 %.3f vs most-frequent %.3f\n",
           lpp, nnz, top, median, p1, base);
    CHECK(p1 >= 0.6, "learnability: expected nearest-centroid P@1 >= 0.6, got %.3f", p1);
    CHECK(p1 >= 2 * base, "learnability: expected P@1 %.3f >= 2 x most-frequent baseline %.3f", p1, base);
    free(cen);
    free(freq);
    free(sorted);
    parsed_free(&tr);
    parsed_free(&te);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv) {
    /* A seed on the command line reproduces a run. */
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);
    printf("test_synth: seed %llu\n", (unsigned long long)seed);
    char dir[] = "/tmp/test_synth_XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot make a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    test_presets();
    test_bad_arguments(dir);
    test_generated(dir, seed);
    remove_dir(dir);
    return CHECK_DONE("test_synth");
}

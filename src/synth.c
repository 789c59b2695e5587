/*
 * synth.c: synthetic extreme-classification data shaped like the public sets, written
 * in the XMC text format ("N D L" header, then "l1,l2,... f:v f:v ..." per point).
 *
 * The generative model (all of it a pure function of the seed):
 *   - Label popularity: label ranks 0..L-1 carry Zipf weights (r+1)^-s; rank r is the
 *     label id perm[r] for a random permutation perm, so popular ids are scattered.
 *   - Co-occurrence: ranks are cut into clusters of cluster_size consecutive ranks
 *     (popular labels co-occur with popular ones, as tags do). A point draws a first
 *     label from the global Zipf law, which picks its cluster; its other labels come
 *     from that cluster by weight, each with a small chance (OUT_OF_CLUSTER) of coming
 *     from anywhere. Labels per point ~ 1 + Poisson(mean - 1), clipped to the cluster.
 *   - Prototypes: label rank r owns prototype_nnz feature ids at positions j with
 *     weights (j+1)^-PROTO_DECAY. Positions j % 4 == 1 come from a window of a pool
 *     its cluster shares (so cluster mates share features); the rest are its own.
 *     Prototype features are hashes of (seed, rank, j), computed when drawn rather than
 *     stored: no O(L x prototype_nnz) array, and no cache miss per draw.
 *   - A point's features: a target count ~ mean x lognormal; each draw is uniform noise
 *     with probability `noise`, else a prototype position of one of its labels. Repeated
 *     draws raise the term frequency. Values are (1 + ln tf) x idf(f), idf a fixed
 *     per-feature factor in [1, 3), then L2-normalised per point.
 * Every point has its own random stream seeded from (seed, split, index), so the bytes
 * written do not depend on the thread count. Points are made in chunks in parallel and
 * written in order (an ordered OpenMP loop overlaps making chunk i+1 with writing i).
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define OUT_OF_CLUSTER 0.05  /* chance that a label after the first comes from anywhere */
#define PROTO_DECAY 0.5      /* prototype position weights (j+1)^-PROTO_DECAY */
#define NNZ_SIGMA 0.4        /* spread of the lognormal nnz per point */
#define CHUNK_POINTS 2048    /* points per parallel work item / write */

/* ------------------------------------------------------------------ presets */

static const spr_synth_config presets[] = {
    /* name, n_train, n_test, n_features, n_labels, labels/pt, nnz/pt,
     * zipf, cluster_size, prototype_nnz, noise */
    {"tiny", 2000, 500, 1000, 200, 2.0, 20.0, 1.0, 10, 32, 0.2},
    {"small", 30000, 5000, 20000, 5000, 3.0, 40.0, 1.0, 16, 48, 0.2},
    {"amazon670k", 490449, 153025, 135909, 670091, 5.45, 75.0, 0.8, 32, 64, 0.3},
    /* Delicious: ~75 tags a point, so clusters must be far larger than that. */
    {"delicious200k", 196606, 100095, 782585, 205443, 75.54, 301.0, 0.9, 256, 48, 0.3},
    {"wiki325k", 1778351, 587084, 1617899, 325056, 3.19, 42.5, 0.9, 16, 48, 0.3},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

spr_status spr_synth_preset(const char *name, spr_synth_config *out) {
    if (!name || !out)
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_synth_preset: NULL argument");
    for (int i = 0; i < N_PRESETS; i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *out = presets[i];
            return SPR_STATUS_OK;
        }
    }
    char names[256];
    size_t used = 0;
    names[0] = '\0';
    for (int i = 0; i < N_PRESETS && used < sizeof names; i++) {
        int w = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", presets[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    return spr_fail(SPR_STATUS_BAD_INPUT, "unknown synthetic preset \"%s\" (valid: %s)", name,
                    names);
}

/* ------------------------------------------------------------------ the model */

/* Everything shared, read-only, by the generating threads. */
typedef struct synth_model {
    const spr_synth_config *cfg;
    uint64_t base;          /* the seed, mixed */
    int32_t *perm;          /* (n_labels) rank -> label id */
    double *cdf;            /* (n_labels + 1) cdf[r] = sum of Zipf weights of ranks < r */
    double *proto_cdf;      /* (prototype_nnz + 1) likewise over prototype positions */
    int64_t pool_size;      /* features in a cluster's shared pool */
    uint64_t salt_own, salt_pool, salt_off, salt_idf;
    int64_t max_labels;     /* labels a point may have (cluster size, clipped) */
    int64_t max_nnz;        /* features a point may have */
} synth_model;

static inline uint64_t below(uint64_t h, uint64_t n) {
    return (uint64_t)(((unsigned __int128)h * n) >> 64);
}

/* The rank r in [lo, hi) with cdf[r] <= u < cdf[r+1] for u uniform over the range's weight. */
static int64_t draw_rank(const double *cdf, int64_t lo, int64_t hi, spr_rng *rng) {
    double u = cdf[lo] + spr_rng_uniform(rng) * (cdf[hi] - cdf[lo]);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] <= u) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Feature id at prototype position j of label rank r. */
static inline int32_t proto_feature(const synth_model *m, int64_t r, int64_t j) {
    const spr_synth_config *c = m->cfg;
    uint64_t key;
    if (j % 4 == 1) {
        /* A window of the cluster's pool that starts at a per-label offset: two labels
         * of a cluster share about window^2 / pool_size features. */
        uint64_t cluster = (uint64_t)(r / c->cluster_size);
        uint64_t off = below(spr_mix64(m->salt_off ^ (uint64_t)r), (uint64_t)m->pool_size);
        uint64_t idx = (off + (uint64_t)(j / 4)) % (uint64_t)m->pool_size;
        key = spr_mix64(m->salt_pool ^ spr_mix64(cluster * (uint64_t)m->pool_size + idx));
    } else {
        key = spr_mix64(m->salt_own ^ spr_mix64((uint64_t)r * (uint64_t)c->prototype_nnz + (uint64_t)j));
    }
    return (int32_t)below(key, (uint64_t)c->n_features);
}

/* A fixed idf-like factor in [1, 3) per feature. */
static inline double feature_idf(const synth_model *m, int32_t f) {
    return 1.0 + 2.0 * (double)(spr_mix64(m->salt_idf ^ (uint64_t)f) >> 11) * (1.0 / 9007199254740992.0);
}

static int64_t draw_poisson(double lambda, spr_rng *rng) {
    if (lambda <= 0) return 0;
    if (lambda < 30) {
        /* Knuth: multiply uniforms until below e^-lambda. */
        double limit = exp(-lambda), p = 1.0;
        int64_t k = 0;
        for (;;) {
            p *= spr_rng_uniform(rng);
            if (p <= limit) return k;
            k++;
        }
    }
    double x = lambda + sqrt(lambda) * spr_rng_normal(rng);
    return x < 0 ? 0 : (int64_t)(x + 0.5);
}

/* ------------------------------------------------------------------ per-thread scratch */

typedef struct synth_scratch {
    uint32_t *label_stamp;  /* (n_labels) == stamp: rank already taken by this point */
    uint32_t stamp;
    int64_t *ranks;         /* (max_labels) the point's label ranks */
    uint64_t *items;        /* (max(max_labels, max_nnz)) sort keys */
    int32_t *hkeys;         /* (hsize) feature -> slot, open addressing */
    uint32_t *hcount;       /* (hsize) draws of the feature */
    uint32_t *hstamp;       /* (hsize) == stamp: slot in use by this point */
    uint64_t hmask;
    int32_t *found;         /* (max_nnz) distinct features in draw order */
    char *buf;              /* the chunk's text */
    size_t len, cap;
} synth_scratch;

static void scratch_free(synth_scratch *s) {
    spr_free(s->label_stamp);
    spr_free(s->ranks);
    spr_free(s->items);
    spr_free(s->hkeys);
    spr_free(s->hcount);
    spr_free(s->hstamp);
    spr_free(s->found);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

static int scratch_init(synth_scratch *s, const synth_model *m) {
    memset(s, 0, sizeof *s);
    uint64_t hsize = 64;
    while (hsize < 4 * (uint64_t)m->max_nnz) hsize *= 2;
    int64_t n_items = m->max_nnz > m->max_labels ? m->max_nnz : m->max_labels;
    s->label_stamp = spr_alloc((size_t)m->cfg->n_labels * sizeof *s->label_stamp);
    s->ranks = spr_alloc((size_t)m->max_labels * sizeof *s->ranks);
    s->items = spr_alloc((size_t)n_items * sizeof *s->items);
    s->hkeys = spr_alloc(hsize * sizeof *s->hkeys);
    s->hcount = spr_alloc(hsize * sizeof *s->hcount);
    s->hstamp = spr_alloc(hsize * sizeof *s->hstamp);
    s->found = spr_alloc((size_t)m->max_nnz * sizeof *s->found);
    s->hmask = hsize - 1;
    if (!s->label_stamp || !s->ranks || !s->items || !s->hkeys || !s->hcount || !s->hstamp ||
        !s->found) {
        scratch_free(s);
        return -1;
    }
    return 0;
}

/* Counts one draw of feature f; returns 1 if f is new for this point. */
static inline int add_feature(synth_scratch *s, int32_t f, int64_t *n_found) {
    uint64_t h = spr_mix64((uint64_t)(uint32_t)f) & s->hmask;
    for (;;) {
        if (s->hstamp[h] != s->stamp) {
            s->hstamp[h] = s->stamp;
            s->hkeys[h] = f;
            s->hcount[h] = 1;
            s->found[(*n_found)++] = f;
            return 1;
        }
        if (s->hkeys[h] == f) {
            s->hcount[h]++;
            return 0;
        }
        h = (h + 1) & s->hmask;
    }
}

static inline uint32_t feature_count(const synth_scratch *s, int32_t f) {
    uint64_t h = spr_mix64((uint64_t)(uint32_t)f) & s->hmask;
    while (s->hkeys[h] != f) h = (h + 1) & s->hmask;
    return s->hcount[h];
}

/* Sorts a[0..n) ascending: insertion sort for short runs, quicksort above. */
static void sort_u64(uint64_t *a, int64_t n) {
    while (n > 24) {
        uint64_t x = a[0], y = a[n / 2], z = a[n - 1];
        uint64_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i >= j) break;
            uint64_t t = a[i];
            a[i] = a[j];
            a[j] = t;
            i++;
            j--;
        }
        /* Recurse into the smaller side, loop on the larger: O(log n) stack. */
        int64_t left = j + 1;
        if (left < n - left) {
            sort_u64(a, left);
            a += left;
            n -= left;
        } else {
            sort_u64(a + left, n - left);
            n = left;
        }
    }
    for (int64_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        int64_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

/* ------------------------------------------------------------------ formatting */

static inline char *put_uint(char *p, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* v in (0, 1] with 4 significant digits, trailing zeros dropped: "0.1234", "0.005", "1". */
static inline char *put_value(char *p, double v) {
    if (!(v >= 1e-6)) v = 1e-6; /* never write 0: every stored value is positive */
    if (v >= 0.99995) {
        *p++ = '1';
        return p;
    }
    int lead = 0;
    double s = v * 1e4;
    while (s < 999.5) {
        s *= 10;
        lead++;
    }
    long d = lrint(s); /* 1000..9999 */
    *p++ = '0';
    *p++ = '.';
    while (lead--) *p++ = '0';
    char digits[4];
    for (int i = 3; i >= 0; i--) {
        digits[i] = (char)('0' + d % 10);
        d /= 10;
    }
    int last = 3;
    while (digits[last] == '0') last--;
    for (int i = 0; i <= last; i++) *p++ = digits[i];
    return p;
}

/* ------------------------------------------------------------------ one point */

/* Appends point `index` of split `split` (0 train, 1 test) to s->buf. Returns -1 if the
 * buffer could not grow. */
static int make_point(const synth_model *m, synth_scratch *s, int split, int64_t index) {
    const spr_synth_config *c = m->cfg;
    spr_rng rng;
    uint64_t key = ((uint64_t)(split + 1) << 56) ^ (uint64_t)index;
    spr_rng_seed(&rng, m->base ^ spr_mix64(key));

    if (++s->stamp == 0) { /* wrapped: clear the stamps once every 2^32 points */
        memset(s->label_stamp, 0, (size_t)c->n_labels * sizeof *s->label_stamp);
        memset(s->hstamp, 0, (s->hmask + 1) * sizeof *s->hstamp);
        s->stamp = 1;
    }

    /* Labels: the first from the global law fixes the cluster, the rest mostly from it. */
    int64_t r0 = draw_rank(m->cdf, 0, c->n_labels, &rng);
    int64_t lo = r0 / c->cluster_size * c->cluster_size;
    int64_t hi = lo + c->cluster_size < c->n_labels ? lo + c->cluster_size : c->n_labels;
    int64_t k = 1 + draw_poisson(c->labels_per_point - 1.0, &rng);
    if (k > hi - lo) k = hi - lo;
    int64_t n_labels = 0;
    s->ranks[n_labels++] = r0;
    s->label_stamp[r0] = s->stamp;
    /* Rejection of repeats; the budget only matters when k is near a skewed cluster's size. */
    for (int64_t tries = 0; n_labels < k && tries < 16 * k + 64; tries++) {
        int64_t r = spr_rng_uniform(&rng) < OUT_OF_CLUSTER
                        ? draw_rank(m->cdf, 0, c->n_labels, &rng)
                        : draw_rank(m->cdf, lo, hi, &rng);
        if (s->label_stamp[r] == s->stamp) continue;
        s->label_stamp[r] = s->stamp;
        s->ranks[n_labels++] = r;
    }

    /* Features: a lognormal count with the preset's mean. */
    double z = spr_rng_normal(&rng);
    int64_t n = (int64_t)(c->nnz_per_point * exp(NNZ_SIGMA * z - 0.5 * NNZ_SIGMA * NNZ_SIGMA) + 0.5);
    if (n < 1) n = 1;
    if (n > m->max_nnz) n = m->max_nnz;
    int64_t n_found = 0;
    uint64_t n_features = (uint64_t)c->n_features;
    for (int64_t tries = 0; n_found < n && tries < 4 * n + 16; tries++) {
        int32_t f;
        if (spr_rng_uniform(&rng) < c->noise) {
            f = (int32_t)spr_rng_below(&rng, n_features);
        } else {
            int64_t r = s->ranks[spr_rng_below(&rng, (uint64_t)n_labels)];
            int64_t j = draw_rank(m->proto_cdf, 0, c->prototype_nnz, &rng);
            f = proto_feature(m, r, j);
        }
        add_feature(s, f, &n_found);
    }
    /* Prototypes too small for the count drawn (few labels, many features): the rest is
     * noise, so that nnz keeps its mean. max_nnz <= n_features / 2 keeps this short. */
    while (n_found < n) add_feature(s, (int32_t)spr_rng_below(&rng, n_features), &n_found);

    /* Room for the line: 11 bytes a label, 11 + 1 + 11 + 1 a feature, newline. */
    size_t need = (size_t)n_labels * 12 + (size_t)n_found * 26 + 4;
    if (s->len + need > s->cap) {
        size_t cap = s->cap ? s->cap : ((size_t)1 << 20);
        while (cap < s->len + need) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return -1;
        s->buf = b;
        s->cap = cap;
    }
    char *p = s->buf + s->len;

    for (int64_t i = 0; i < n_labels; i++) s->items[i] = (uint64_t)m->perm[s->ranks[i]];
    sort_u64(s->items, n_labels);
    for (int64_t i = 0; i < n_labels; i++) {
        if (i) *p++ = ',';
        p = put_uint(p, s->items[i]);
    }

    for (int64_t i = 0; i < n_found; i++) s->items[i] = (uint64_t)(uint32_t)s->found[i];
    sort_u64(s->items, n_found);
    double norm2 = 0;
    /* The values are computed twice (norm, then output) rather than stored: cheap. */
    for (int64_t i = 0; i < n_found; i++) {
        int32_t f = (int32_t)s->items[i];
        double v = (1.0 + log((double)feature_count(s, f))) * feature_idf(m, f);
        norm2 += v * v;
    }
    double inv = 1.0 / sqrt(norm2);
    for (int64_t i = 0; i < n_found; i++) {
        int32_t f = (int32_t)s->items[i];
        double v = (1.0 + log((double)feature_count(s, f))) * feature_idf(m, f);
        *p++ = ' ';
        p = put_uint(p, (uint64_t)f);
        *p++ = ':';
        p = put_value(p, v * inv);
    }
    *p++ = '\n';
    s->len = (size_t)(p - s->buf);
    return 0;
}

/* ------------------------------------------------------------------ files */

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes one split into the open file fd: header, then every point in order. On failure
 * returns the status (and errno of a failed write in *err_errno); the caller words the
 * message, since spr_fail inside the parallel region would land in a worker's slot. */
/* Who to tell how many points are written (spr_synth_generate_progress). */
typedef struct synth_progress {
    spr_progress_fn fn; /* NULL: nobody */
    void *user;
    int64_t before, total; /* points of the earlier split, of both splits */
} synth_progress;

static spr_status write_split(const synth_model *m, int split, int64_t n_points, int fd,
                              int threads, const synth_progress *progress, int *err_errno) {
    const spr_synth_config *c = m->cfg;
    char header[96];
    int hn = snprintf(header, sizeof header, "%lld %lld %lld\n", (long long)n_points,
                      (long long)c->n_features, (long long)c->n_labels);
    if (write_all(fd, header, (size_t)hn) != 0) {
        *err_errno = errno;
        return SPR_STATUS_IO_ERROR;
    }
    int64_t n_chunks = (n_points + CHUNK_POINTS - 1) / CHUNK_POINTS;
    int failed = 0; /* SPR_STATUS_* of the first failure */
    int saved_errno = 0;

#pragma omp parallel num_threads(threads)
    {
        synth_scratch s;
        int ok = scratch_init(&s, m) == 0;
        if (!ok) {
#pragma omp atomic write
            failed = SPR_STATUS_NO_MEMORY;
        }
#pragma omp for ordered schedule(dynamic, 1)
        for (int64_t chunk = 0; chunk < n_chunks; chunk++) {
            int bad;
#pragma omp atomic read
            bad = failed;
            if (ok && !bad) {
                s.len = 0;
                int64_t end = (chunk + 1) * CHUNK_POINTS < n_points ? (chunk + 1) * CHUNK_POINTS : n_points;
                for (int64_t i = chunk * CHUNK_POINTS; i < end; i++) {
                    if (make_point(m, &s, split, i) != 0) {
#pragma omp atomic write
                        failed = SPR_STATUS_NO_MEMORY;
                        break;
                    }
                }
            }
#pragma omp ordered
            {
#pragma omp atomic read
                bad = failed;
                if (!bad && write_all(fd, s.buf, s.len) != 0) {
                    saved_errno = errno;
#pragma omp atomic write
                    failed = SPR_STATUS_IO_ERROR;
                }
                /* In the ordered block: one call at a time, in chunk order. */
                if (!bad && progress->fn) {
                    int64_t end = (chunk + 1) * CHUNK_POINTS;
                    progress->fn(progress->user, progress->before + (end < n_points ? end : n_points),
                                 progress->total);
                }
            }
        }
        scratch_free(&s);
    }
    *err_errno = saved_errno;
    return (spr_status)failed;
}

static spr_status check_config(const spr_synth_config *c) {
    const char *bad = NULL;
    if (c->n_train <= 0) bad = "n_train must be > 0";
    else if (c->n_test <= 0) bad = "n_test must be > 0";
    else if (c->n_features <= 0 || c->n_features > INT32_MAX) bad = "n_features must be in 1..2^31-1";
    else if (c->n_labels <= 0 || c->n_labels > INT32_MAX) bad = "n_labels must be in 1..2^31-1";
    else if (!(c->labels_per_point >= 1.0 && c->labels_per_point <= 1e4)) bad = "labels_per_point must be in [1, 1e4]";
    else if (!(c->nnz_per_point >= 1.0 && c->nnz_per_point <= 1e5)) bad = "nnz_per_point must be in [1, 1e5]";
    else if (!(c->zipf_exponent >= 0.0 && c->zipf_exponent <= 10.0)) bad = "zipf_exponent must be in [0, 10]";
    else if (c->cluster_size <= 0 || c->cluster_size > 1000000) bad = "cluster_size must be in 1..1e6";
    else if (c->prototype_nnz <= 0 || c->prototype_nnz > 1000000) bad = "prototype_nnz must be in 1..1e6";
    else if (!(c->noise >= 0.0 && c->noise <= 1.0)) bad = "noise must be in [0, 1]";
    if (bad) return spr_fail(SPR_STATUS_BAD_INPUT, "synthetic config \"%.32s\": %s", c->name, bad);
    return SPR_STATUS_OK;
}

/* Flushes the directory holding path, so that the rename survives a crash. Best effort. */
static void sync_parent(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1; /* "/file" */
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

spr_status spr_synth_generate(const spr_synth_config *config, uint64_t seed,
                              const char *train_path, const char *test_path, int threads) {
    return spr_synth_generate_progress(config, seed, train_path, test_path, threads, NULL, NULL);
}

spr_status spr_synth_generate_progress(const spr_synth_config *config, uint64_t seed,
                                       const char *train_path, const char *test_path,
                                       int threads, spr_progress_fn progress_fn, void *user) {
    if (!config || !train_path || !test_path)
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_synth_generate: NULL config or path");
    if (!*train_path || !*test_path)
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_synth_generate: empty path");
    if (strcmp(train_path, test_path) == 0)
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_synth_generate: train and test paths are both %s",
                        train_path);
    spr_status st = check_config(config);
    if (!st) st = spr_file_replace_check(train_path);
    if (!st) st = spr_file_replace_check(test_path);
    if (st) return st;
    threads = spr_threads(threads);

    const spr_synth_config *c = config;
    synth_model m = {0};
    m.cfg = c;
    m.base = spr_mix64(seed ^ 0x73796E7468657369ull); /* "synthesi" */
    m.salt_own = spr_mix64(m.base ^ 1);
    m.salt_pool = spr_mix64(m.base ^ 2);
    m.salt_off = spr_mix64(m.base ^ 3);
    m.salt_idf = spr_mix64(m.base ^ 4);
    m.pool_size = c->prototype_nnz / 2 > 0 ? c->prototype_nnz / 2 : 1;
    m.max_labels = c->cluster_size < c->n_labels ? c->cluster_size : c->n_labels;
    m.max_nnz = (int64_t)(6.0 * c->nnz_per_point) + 16;
    if (m.max_nnz > c->n_features / 2) m.max_nnz = c->n_features / 2 > 0 ? c->n_features / 2 : 1;

    char *tmp[2] = {NULL, NULL};
    const char *path[2] = {train_path, test_path};
    int fds[2] = {-1, -1};
    int err = 0, which = 0;

    m.perm = spr_alloc((size_t)c->n_labels * sizeof *m.perm);
    m.cdf = spr_alloc((size_t)(c->n_labels + 1) * sizeof *m.cdf);
    m.proto_cdf = spr_alloc((size_t)(c->prototype_nnz + 1) * sizeof *m.proto_cdf);
    if (!m.perm || !m.cdf || !m.proto_cdf) {
        st = SPR_STATUS_NO_MEMORY;
        goto fail; /* message already recorded by spr_alloc */
    }
    /* Fisher-Yates from the seed: popularity rank -> label id. */
    {
        spr_rng rng;
        spr_rng_seed(&rng, spr_mix64(m.base ^ 5));
        for (int64_t i = 0; i < c->n_labels; i++) m.perm[i] = (int32_t)i;
        for (int64_t i = c->n_labels - 1; i > 0; i--) {
            int64_t j = (int64_t)spr_rng_below(&rng, (uint64_t)i + 1);
            int32_t t = m.perm[i];
            m.perm[i] = m.perm[j];
            m.perm[j] = t;
        }
    }
    m.cdf[0] = 0;
    for (int64_t r = 0; r < c->n_labels; r++)
        m.cdf[r + 1] = m.cdf[r] + pow((double)(r + 1), -c->zipf_exponent);
    m.proto_cdf[0] = 0;
    for (int64_t j = 0; j < c->prototype_nnz; j++)
        m.proto_cdf[j + 1] = m.proto_cdf[j] + pow((double)(j + 1), -PROTO_DECAY);

    /* Both splits go to temporaries first; only when both are complete are they renamed,
     * so a failure leaves neither half-written file nor a stray temporary. */
    for (which = 0; which < 2; which++) {
        size_t n = strlen(path[which]) + 32;
        tmp[which] = malloc(n);
        if (!tmp[which]) {
            st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
            goto fail;
        }
        snprintf(tmp[which], n, "%s.tmp.%ld", path[which], (long)getpid());
        fds[which] = open(tmp[which], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fds[which] < 0) {
            err = errno;
            free(tmp[which]);
            tmp[which] = NULL;
            st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot create a temporary file: %s", path[which],
                          strerror(err));
            goto fail;
        }
        spr_file_keep_mode(fds[which], path[which]);
        int64_t n_points = which == 0 ? c->n_train : c->n_test;
        synth_progress progress = {progress_fn, user, which == 0 ? 0 : c->n_train,
                                   c->n_train + c->n_test};
        st = write_split(&m, which, n_points, fds[which], threads, &progress, &err);
        if (st == SPR_STATUS_NO_MEMORY) {
            st = spr_fail(st, "%s: out of memory generating points", path[which]);
            goto fail;
        }
        if (st != SPR_STATUS_OK) {
            st = spr_fail(SPR_STATUS_IO_ERROR, "%s: write failed: %s", path[which], strerror(err));
            goto fail;
        }
        if (fsync(fds[which]) != 0 || close(fds[which]) != 0) {
            err = errno;
            fds[which] = -1;
            st = spr_fail(SPR_STATUS_IO_ERROR, "%s: write failed: %s", path[which], strerror(err));
            goto fail;
        }
        fds[which] = -1;
    }
    for (which = 0; which < 2; which++) {
        if (rename(tmp[which], path[which]) != 0) {
            err = errno;
            st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot rename the temporary file into place: %s",
                          path[which], strerror(err));
            goto fail;
        }
        free(tmp[which]);
        tmp[which] = NULL;
        sync_parent(path[which]);
        spr_remove_stale_temporaries(path[which]); /* of runs killed part way */
    }
    st = SPR_STATUS_OK;

fail:
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) close(fds[i]);
        if (tmp[i]) {
            unlink(tmp[i]);
            free(tmp[i]);
        }
    }
    spr_free(m.perm);
    spr_free(m.cdf);
    spr_free(m.proto_cdf);
    return st;
}

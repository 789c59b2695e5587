/*
 * test_checkpoint.c: spr_model_save / spr_model_load.
 *
 * A tiny trained model (50 features -> 16 ReLU -> 40 labels sampled at 0.25) goes
 * through a save/load round trip that must give every array back bit for bit, then
 * the saved file is damaged in many ways (single-byte flips over the header, every
 * section header and CRC and samples of every payload; truncations; trailing bytes;
 * crafted files with valid checksums but lying sizes), each of which must be refused
 * with SPR_STATUS_BAD_INPUT and a message naming the file. The LSH tables (the
 * optional TBL sections) come back bit for bit too, a file without them still loads
 * (tables rebuilt from the weights), and tables whose checksum is right but whose
 * content would make the samplers read out of bounds are refused. Saving is checked to be
 * atomic: a failed save (missing directory, file size limit) leaves no temporary
 * file and no change to an existing model.
 *
 * Seed: SPR_TEST_SEED in the environment, else a fixed one; printed either way.
 */
#define _GNU_SOURCE
#include "check.h"
#include "common.h" /* spr_alloc_calls */
#include "model.h" /* the LSH tables, which the public API does not show */
#include "sparrow.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

/* Bitwise CRC-32 (IEEE), independent of the table-driven one in checkpoint.c. */
static uint32_t crc32_bitwise(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spit(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(b, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Names in dir other than . and .., joined by spaces, sorted by readdir order. */
static int list_dir(const char *dir, char *names, size_t cap) {
    DIR *d = opendir(dir);
    int n = 0;
    names[0] = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        strncat(names, e->d_name, cap - strlen(names) - 2);
        strcat(names, " ");
    }
    closedir(d);
    return n;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ the data set */

enum { N_POINTS = 64, N_FEATURES = 50, N_LABELS = 40, HIDDEN = 16, NNZ = 6, K = 5 };

static int64_t f_indptr[N_POINTS + 1], l_indptr[N_POINTS + 1];
static int32_t f_idx[N_POINTS * NNZ], labels[N_POINTS * 3];
static float f_val[N_POINTS * NNZ];

/* Random points: NNZ distinct sorted features each, 1 to 3 distinct sorted labels. */
static spr_dataset *make_data(void) {
    int64_t nf = 0, nl = 0;
    for (int i = 0; i < N_POINTS; i++) {
        f_indptr[i] = nf;
        l_indptr[i] = nl;
        int used[N_FEATURES] = {0};
        for (int k = 0; k < NNZ;) {
            int f = (int)(rnd() % N_FEATURES);
            if (!used[f]) used[f] = 1, k++;
        }
        for (int f = 0; f < N_FEATURES; f++)
            if (used[f]) {
                f_idx[nf] = f;
                f_val[nf++] = 0.1f + (float)(rnd() % 1000) / 1000.0f;
            }
        int lused[N_LABELS] = {0};
        int nlab = 1 + (int)(rnd() % 3);
        for (int k = 0; k < nlab;) {
            int l = (int)(rnd() % N_LABELS);
            if (!lused[l]) lused[l] = 1, k++;
        }
        for (int l = 0; l < N_LABELS; l++)
            if (lused[l]) labels[nl++] = l;
    }
    f_indptr[N_POINTS] = nf;
    l_indptr[N_POINTS] = nl;
    spr_dataset_view v = {N_POINTS, N_FEATURES, N_LABELS, f_indptr, f_idx, f_val, l_indptr, labels};
    spr_dataset *d = NULL;
    spr_status st = spr_dataset_wrap(&v, &d);
    CHECK(st == SPR_STATUS_OK, "spr_dataset_wrap: expected ok, got %d (%s)", st, spr_last_error());
    return d;
}

static spr_status train_batches(spr_model *m, const spr_dataset *d, int batches, int first, int threads) {
    spr_train_options o = spr_train_options_default();
    o.batch_size = 16;
    o.threads = threads;
    o.rehash_first = 1;   /* rehash after every few batches so that rehashes > 0 */
    o.rehash_growth = 0.5f;
    o.rebuild_every = 2;  /* and rebuilds > 0: the loaded hash functions depend on it */
    int64_t rows[16];
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < 16; i++) rows[i] = ((first + b) * 16 + i) % N_POINTS;
        spr_status st = spr_model_train_batch(m, d, rows, 16, &o, NULL);
        if (st) return st;
    }
    return SPR_STATUS_OK;
}

/* ------------------------------------------------------------------ comparisons */

static const char *param_names[] = {"W", "B", "GW", "GB", "MW", "VW", "MB", "VB"};

/* Every array of every layer equal bit for bit; returns the number of differing arrays. */
static int compare_params(spr_model *a, spr_model *b, const char *what) {
    int bad = 0, nonzero_adam = 0;
    int n_layers = spr_model_get_config(a).n_layers;
    for (int l = 0; l < n_layers; l++)
        for (int p = SPR_PARAM_WEIGHT; p <= SPR_PARAM_BIAS_ADAM_V; p++) {
            float *x, *y;
            int64_t ra, ca, sa, rb, cb, sb;
            spr_status s1 = spr_model_param(a, l, (spr_param)p, &x, &ra, &ca, &sa);
            spr_status s2 = spr_model_param(b, l, (spr_param)p, &y, &rb, &cb, &sb);
            CHECK(s1 == SPR_STATUS_OK && s2 == SPR_STATUS_OK, "%s: spr_model_param(%d, %s) failed: %s", what,
                  l, param_names[p], spr_last_error());
            if (s1 || s2) continue;
            CHECK(ra == rb && ca == cb, "%s: layer %d %s: expected shape (%lld, %lld), got (%lld, %lld)", what, l,
                  param_names[p], (long long)ra, (long long)ca, (long long)rb, (long long)cb);
            if (ra != rb || ca != cb) continue;
            int64_t diff = -1;
            for (int64_t r = 0; r < ra && diff < 0; r++)
                if (memcmp(x + r * sa, y + r * sb, (size_t)ca * sizeof(float)) != 0)
                    for (int64_t c = 0; c < ca; c++)
                        if (memcmp(&x[r * sa + c], &y[r * sb + c], sizeof(float))) {
                            diff = r * ca + c;
                            break;
                        }
            if (diff >= 0) {
                bad++;
                int64_t r = diff / ca, c = diff % ca;
                CHECK(0, "%s: layer %d %s[%lld][%lld]: expected %.9g, got %.9g", what, l, param_names[p],
                      (long long)r, (long long)c, (double)x[r * sa + c], (double)y[r * sb + c]);
            } else {
                check_passed++;
            }
            if (p == SPR_PARAM_WEIGHT_ADAM_V)
                for (int64_t r = 0; r < ra; r++)
                    for (int64_t c = 0; c < ca; c++) nonzero_adam += x[r * sa + c] != 0.0f;
        }
    CHECK(nonzero_adam > 0, "%s: expected some non-zero Adam second moments after training, got none", what);
    return bad;
}

/* compare_params and each row's last step (what the optimizer's catch-up owes it). */
static int compare_state(spr_model *a, spr_model *b, const char *what) {
    int bad = compare_params(a, b, what), owing = 0;
    for (int l = 0; l < a->n_layers && l < b->n_layers; l++) {
        const spr_layer *x = &a->layers[l], *y = &b->layers[l];
        int64_t diff = -1;
        for (int64_t i = 0; i < x->rows && i < y->rows && diff < 0; i++)
            if (x->last_step[i] != y->last_step[i]) diff = i;
        for (int64_t i = 0; i < x->rows; i++) owing += x->last_step[i] != a->steps;
        CHECK(diff < 0 && x->rows == y->rows, "%s: layer %d row %lld: last stepped at %lld, got %lld", what, l,
              (long long)diff, diff < 0 ? 0LL : (long long)x->last_step[diff],
              diff < 0 ? 0LL : (long long)y->last_step[diff]);
        bad += diff >= 0;
    }
    CHECK(owing > 0, "%s: some row owes steps (else the comparison cannot fail)", what);
    return bad;
}

/* The packed tables of every sampled layer equal bit for bit, the unused tails of the
 * id rows included (they are saved as they are). */
static void compare_tables(const spr_model *a, const spr_model *b, const char *what) {
    for (int l = 1; l < a->n_layers; l++) {
        const spr_lsh *x = a->layers[l].tables, *y = b->layers[l].tables;
        if (!a->layers[l].sampled) continue;
        CHECK(x && y && x->l == y->l && x->key_bits == y->key_bits && x->n_items == y->n_items,
              "%s: layer %d: expected tables of the same shape, got %p %p", what, l, (const void *)x,
              (const void *)y);
        if (!x || !y || x->l != y->l || x->key_bits != y->key_bits || x->n_items != y->n_items) continue;
        size_t n_off = (size_t)x->l * (((size_t)1 << x->key_bits) + 1), n_ids = (size_t)x->l * (size_t)x->n_items;
        size_t first = n_off;
        for (size_t i = 0; i < n_off && first == n_off; i++)
            if (x->offsets[i] != y->offsets[i]) first = i;
        CHECK(first == n_off, "%s: layer %d offsets[%zu]: expected %u, got %u", what, l, first,
              first < n_off ? x->offsets[first] : 0, first < n_off ? y->offsets[first] : 0);
        first = n_ids;
        for (size_t i = 0; i < n_ids && first == n_ids; i++)
            if (x->ids[i] != y->ids[i]) first = i;
        CHECK(first == n_ids, "%s: layer %d ids[%zu]: expected %d, got %d", what, l, first,
              first < n_ids ? x->ids[first] : 0, first < n_ids ? y->ids[first] : 0);
    }
}

static void compare_predictions(const spr_model *a, const spr_model *b, const spr_dataset *d, int sparse,
                                const char *what) {
    int32_t ia[N_POINTS * K], ib[N_POINTS * K];
    float sa[N_POINTS * K], sb[N_POINTS * K];
    spr_status s1 = spr_model_predict(a, d, NULL, 0, K, sparse, 1, ia, sa);
    spr_status s2 = spr_model_predict(b, d, NULL, 0, K, sparse, 1, ib, sb);
    CHECK(s1 == SPR_STATUS_OK && s2 == SPR_STATUS_OK, "%s: spr_model_predict: expected ok, got %d, %d (%s)", what,
          s1, s2, spr_last_error());
    if (s1 || s2) return;
    int first = -1;
    for (int i = 0; i < N_POINTS * K && first < 0; i++)
        if (ia[i] != ib[i] || memcmp(&sa[i], &sb[i], sizeof(float))) first = i;
    CHECK(first < 0, "%s: point %d rank %d: expected label %d score %.9g, got label %d score %.9g", what,
          first / K, first % K, ia[first < 0 ? 0 : first], (double)sa[first < 0 ? 0 : first],
          ib[first < 0 ? 0 : first], (double)sb[first < 0 ? 0 : first]);
}

static void compare_config_info(const spr_model *a, const spr_model *b) {
    spr_model_config x = spr_model_get_config(a), y = spr_model_get_config(b);
    CHECK(x.n_features == y.n_features && x.n_layers == y.n_layers && x.seed == y.seed &&
              memcmp(&x.init_std, &y.init_std, sizeof(float)) == 0,
          "config: expected n_features %lld n_layers %d seed %llu init_std %g, got %lld %d %llu %g",
          (long long)x.n_features, x.n_layers, (unsigned long long)x.seed, (double)x.init_std,
          (long long)y.n_features, y.n_layers, (unsigned long long)y.seed, (double)y.init_std);
    for (int l = 0; l < x.n_layers && l < SPR_MAX_LAYERS; l++) {
        const spr_layer_config *p = &x.layers[l], *q = &y.layers[l];
        CHECK(p->size == q->size && memcmp(&p->sparsity, &q->sparsity, sizeof(float)) == 0 &&
                  p->hash == q->hash && p->hash_k == q->hash_k && p->hash_l == q->hash_l &&
                  p->bucket_capacity == q->bucket_capacity && p->bucket_policy == q->bucket_policy &&
                  p->simhash_one_in == q->simhash_one_in,
              "config layer %d: expected size %lld sparsity %g hash %d K %d L %d cap %d policy %d one in %d, "
              "got %lld %g %d %d %d %d %d %d",
              l, (long long)p->size, (double)p->sparsity, p->hash, p->hash_k, p->hash_l, p->bucket_capacity,
              p->bucket_policy, p->simhash_one_in, (long long)q->size, (double)q->sparsity, q->hash, q->hash_k,
              q->hash_l, q->bucket_capacity, q->bucket_policy, q->simhash_one_in);
    }
    spr_model_info i = spr_model_get_info(a), j = spr_model_get_info(b);
    CHECK(i.steps == j.steps && i.samples == j.samples && i.epoch == j.epoch && i.rehashes == j.rehashes &&
              i.rebuilds == j.rebuilds && i.parameters == j.parameters,
          "info: expected steps %lld samples %lld epoch %lld rehashes %lld rebuilds %lld parameters %lld, "
          "got %lld %lld %lld %lld %lld %lld",
          (long long)i.steps, (long long)i.samples, (long long)i.epoch, (long long)i.rehashes,
          (long long)i.rebuilds, (long long)i.parameters, (long long)j.steps, (long long)j.samples,
          (long long)j.epoch, (long long)j.rehashes, (long long)j.rebuilds, (long long)j.parameters);
    for (int l = 0; l < x.n_layers && l < SPR_MAX_LAYERS; l++)
        CHECK(i.hash_k[l] == j.hash_k[l] && i.key_bits[l] == j.key_bits[l],
              "info layer %d: expected K %d key bits %d, got %d %d", l, i.hash_k[l], i.key_bits[l], j.hash_k[l],
              j.key_bits[l]);
}

/* The byte offset of the section with this tag in the file b[0..n) (NULL: none), or 0. */
static size_t find_section(const unsigned char *b, size_t n, uint32_t tag) {
    for (size_t off = 16; b && off + 12 <= n;) {
        uint64_t len = rd64(b + off + 4);
        if (off + 16 + len > n) break;
        if (rd32(b + off) == tag) return off;
        off += 16 + len;
    }
    return 0;
}

/* spr_model_peek of the file at path gives what loading it gave (loaded): the
 * configuration, every field of the info, the data note, without reading the arrays. */
static void check_peek(const char *path, const spr_model *loaded, const char *what) {
    spr_model_config c;
    spr_model_info i, want = spr_model_get_info(loaded);
    spr_data_note n, want_note = spr_model_get_data_note(loaded);
    spr_status st = spr_model_peek(path, &c, &i, &n);
    CHECK(st == SPR_STATUS_OK, "%s: peek: expected ok, got %d (%s)", what, st, spr_last_error());
    if (st) return;
    spr_model_config x = spr_model_get_config(loaded);
    int same = x.n_features == c.n_features && x.n_layers == c.n_layers && x.seed == c.seed &&
               x.init_std == c.init_std && x.bf16_state == c.bf16_state && x.bf16_weights == c.bf16_weights;
    for (int l = 0; same && l < x.n_layers; l++) {
        const spr_layer_config *p = &x.layers[l], *q = &c.layers[l];
        same = p->size == q->size && p->sparsity == q->sparsity && p->hash == q->hash && p->hash_k == q->hash_k &&
               p->hash_l == q->hash_l && p->bucket_capacity == q->bucket_capacity &&
               p->bucket_policy == q->bucket_policy && p->select == q->select &&
               p->select_threshold == q->select_threshold && p->random_fraction == q->random_fraction &&
               p->simhash_one_in == q->simhash_one_in;
    }
    CHECK(same, "%s: peek: the configuration differs from the loaded model's", what);
    CHECK(i.steps == want.steps && i.samples == want.samples && i.epoch == want.epoch &&
              i.rehashes == want.rehashes && i.rebuilds == want.rebuilds && i.parameters == want.parameters &&
              i.parameter_bytes == want.parameter_bytes && i.table_bytes == want.table_bytes &&
              i.label_lo == want.label_lo && i.labels_total == want.labels_total && i.rank == want.rank &&
              i.ranks == want.ranks,
          "%s: peek: info steps %lld samples %lld parameters %lld bytes %lld tables %lld labels %lld, loaded "
          "%lld %lld %lld %lld %lld %lld",
          what, (long long)i.steps, (long long)i.samples, (long long)i.parameters, (long long)i.parameter_bytes,
          (long long)i.table_bytes, (long long)i.labels_total, (long long)want.steps, (long long)want.samples,
          (long long)want.parameters, (long long)want.parameter_bytes, (long long)want.table_bytes,
          (long long)want.labels_total);
    CHECK(i.lr == want.lr && i.beta1 == want.beta1 && i.beta2 == want.beta2 && i.eps == want.eps,
          "%s: peek: Adam lr %g betas %g %g eps %g, loaded %g %g %g %g", what, (double)i.lr, (double)i.beta1,
          (double)i.beta2, (double)i.eps, (double)want.lr, (double)want.beta1, (double)want.beta2,
          (double)want.eps);
    for (int l = 0; l < SPR_MAX_LAYERS; l++)
        CHECK(i.hash_k[l] == want.hash_k[l] && i.key_bits[l] == want.key_bits[l],
              "%s: peek: layer %d K %d key bits %d, loaded %d %d", what, l, i.hash_k[l], i.key_bits[l],
              want.hash_k[l], want.key_bits[l]);
    CHECK(n.points == want_note.points && n.digest == want_note.digest && n.one_based == want_note.one_based,
          "%s: peek: note %lld, loaded %lld", what, (long long)n.points, (long long)want_note.points);
    CHECK(spr_model_peek(path, NULL, NULL, NULL) == SPR_STATUS_OK, "%s: peek with no outputs", what);
}

/* ------------------------------------------------------------------ damaged files */

typedef struct section {
    uint32_t tag;
    size_t off, len; /* header offset, payload length */
} section;

/* Parses the saved file with an independent reader and checks the documented layout.
 * Returns the number of sections found (0 if the layout is wrong). */
static int parse_layout(const unsigned char *b, size_t n, size_t tbl_len, section *sec, int max) {
    CHECK(n >= 16 && memcmp(b, "SPRMODEL", 8) == 0, "layout: expected magic SPRMODEL, got %.8s", (const char *)b);
    CHECK(rd32(b + 8) == 1, "layout: expected version 1, got %u", rd32(b + 8));
    int count = (int)rd32(b + 12);
    CHECK(count == 2 + 7 * 2 + 1 + 1, "layout: expected %d sections, got %d", 2 + 7 * 2 + 1 + 1, count);
    if (count != 18 || count > max) return 0;
    const uint32_t want_tags[18] = {0x100, 0x200, 0x300, 0x400, 0x500, 0x600, 0x700, 0x800, 0xD00,
                                    0x301, 0x401, 0x501, 0x601, 0x701, 0x801, 0x901, 0xD01, 0xE00};
    const size_t w0 = (size_t)N_FEATURES * HIDDEN * 4, w1 = (size_t)N_LABELS * HIDDEN * 4;
    const size_t want_len[18] = {24 + 44 * 2, 48, w0, HIDDEN * 4, w0, w0, HIDDEN * 4, HIDDEN * 4,
                                 N_FEATURES * 8, w1, N_LABELS * 4, w1, w1, N_LABELS * 4, N_LABELS * 4,
                                 tbl_len, N_LABELS * 8, 16};
    size_t off = 16;
    for (int i = 0; i < count; i++) {
        if (off + 16 > n) {
            CHECK(0, "layout: section %d header past the end", i);
            return 0;
        }
        sec[i].off = off;
        sec[i].tag = rd32(b + off);
        sec[i].len = (size_t)rd64(b + off + 4);
        CHECK(sec[i].tag == want_tags[i] && sec[i].len == want_len[i],
              "layout: section %d: expected tag 0x%x length %zu, got 0x%x %zu", i, want_tags[i], want_len[i],
              sec[i].tag, sec[i].len);
        if (off + 16 + sec[i].len > n) return 0;
        uint32_t crc = crc32_bitwise(b + off + 12, sec[i].len), stored = rd32(b + off + 12 + sec[i].len);
        CHECK(crc == stored, "layout: section %d: expected CRC 0x%08x, file has 0x%08x", i, crc, stored);
        off += 16 + sec[i].len;
    }
    CHECK(off == n, "layout: expected the file to end at %zu, it has %zu bytes", off, n);
    return count;
}

/* Loads path: expects BAD_INPUT, no model, a message naming path. Returns 1 if so. */
static int load_rejected(const char *path, const char *what) {
    spr_model *m = (spr_model *)(uintptr_t)1;
    spr_status st = spr_model_load(path, &m);
    int ok = st == SPR_STATUS_BAD_INPUT && m == NULL && strstr(spr_last_error(), path) != NULL;
    if (!ok) {
        CHECK(0, "%s: expected BAD_INPUT, no model and a message naming the file; got status %d, model %p, \"%s\"",
              what, st, (void *)m, spr_last_error());
        if (st == SPR_STATUS_OK) spr_model_free(m);
    }
    return ok;
}

/* spr_model_verify of the file at path: BAD_INPUT naming it, as the load (damage a
 * streaming check of the layout and checksums must find), allocating nothing. */
static int verify_rejected(const char *path, const char *what) {
    const long long calls = spr_alloc_calls();
    spr_status st = spr_model_verify(path);
    int ok = st == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), path) != NULL && spr_alloc_calls() == calls;
    CHECK(ok, "%s: verify: expected BAD_INPUT naming the file without an allocation; got status %d, \"%s\"", what,
          st, spr_last_error());
    return ok;
}

/* The same for the content b[0..n) written to path first. */
static int rejected(const char *path, const unsigned char *b, size_t n, const char *what) {
    if (spit(path, b, n) != 0) {
        CHECK(0, "%s: cannot write %s", what, path);
        return 0;
    }
    return load_rejected(path, what);
}

/* The same for one byte of the file at path changed in place (rewriting a whole file
 * per case costs a truncation each, which is slow on some file systems). */
static int flip_rejected(const char *path, size_t off, unsigned char was, unsigned char now, const char *what) {
    int ok = 0;
    FILE *f = fopen(path, "r+b");
    if (!f || fseek(f, (long)off, SEEK_SET) || fputc(now, f) == EOF || fclose(f)) {
        CHECK(0, "%s: cannot change byte %zu of %s", what, off, path);
        return 0;
    }
    ok = load_rejected(path, what) && verify_rejected(path, what);
    f = fopen(path, "r+b");
    if (!f || fseek(f, (long)off, SEEK_SET) || fputc(was, f) == EOF || fclose(f))
        CHECK(0, "%s: cannot restore byte %zu of %s", what, off, path);
    return ok;
}

static void test_damage(const char *dir, const char *good_path, const spr_model *good) {
    size_t n;
    unsigned char *orig = slurp(good_path, &n);
    CHECK(orig != NULL, "cannot read back %s", good_path);
    if (!orig) return;
    unsigned char *b = malloc(n + 16);
    section sec[64];
    const spr_lsh *tl = good->layers[1].tables;
    const size_t n_off = (size_t)tl->l * (((size_t)1 << tl->key_bits) + 1);
    int count = parse_layout(orig, n, 4 * (n_off + (size_t)tl->l * N_LABELS), sec, 64);
    char bad[4096], what[128];
    snprintf(bad, sizeof bad, "%s/damaged.bin", dir);

    /* Offsets to flip: the whole file header, every section's header and CRC in full,
     * and the first, middle and last payload bytes plus a few random ones. */
    size_t offs[2048];
    int n_offs = 0;
    for (size_t o = 0; o < 16; o++) offs[n_offs++] = o;
    for (int i = 0; i < count; i++) {
        for (size_t o = 0; o < 12; o++) offs[n_offs++] = sec[i].off + o;
        size_t p = sec[i].off + 12, len = sec[i].len;
        offs[n_offs++] = p;
        offs[n_offs++] = p + len / 2;
        offs[n_offs++] = p + len - 1;
        for (int k = 0; k < 4; k++) offs[n_offs++] = p + (size_t)(rnd() % len);
        for (size_t o = 0; o < 4; o++) offs[n_offs++] = p + len + o;
    }
    const unsigned char flips[] = {0x01, 0x80, 0xFF, 0x10};
    int flips_ok = 0, flips_tried = 0;
    spit(bad, orig, n);
    for (int i = 0; i < n_offs; i++)
        for (size_t f = 0; f < sizeof flips; f++) {
            snprintf(what, sizeof what, "byte %zu xor 0x%02x", offs[i], flips[f]);
            flips_tried++;
            flips_ok += flip_rejected(bad, offs[i], orig[offs[i]], orig[offs[i]] ^ flips[f], what);
        }
    printf("  single-byte corruptions rejected: %d of %d\n", flips_ok, flips_tried);

    /* Truncations: empty, inside the magic, at every section boundary and one byte
     * either side, inside each payload, one byte short. */
    size_t cuts[256];
    int n_cuts = 0;
    const size_t fixed[] = {0, 1, 7, 8, 12, 15, 16, 20, 27, n - 1};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) cuts[n_cuts++] = fixed[k];
    for (int i = 0; i < count; i++) {
        cuts[n_cuts++] = sec[i].off + 12 + sec[i].len / 2;
        cuts[n_cuts++] = sec[i].off + 12 + sec[i].len + 2;
        if (i > 0) {
            cuts[n_cuts++] = sec[i].off - 1;
            cuts[n_cuts++] = sec[i].off;
            cuts[n_cuts++] = sec[i].off + 1;
        }
    }
    int cuts_ok = 0;
    for (int i = 0; i < n_cuts; i++) {
        snprintf(what, sizeof what, "truncated to %zu bytes", cuts[i]);
        cuts_ok += rejected(bad, orig, cuts[i], what) && verify_rejected(bad, what);
    }
    printf("  truncations rejected: %d of %d\n", cuts_ok, n_cuts);

    /* Trailing bytes. */
    memcpy(b, orig, n);
    b[n] = 0;
    rejected(bad, b, n + 1, "one trailing byte");

    /* The exact messages for a foreign file, a future version and a damaged payload. */
    char want[4600];
    memcpy(b, orig, n);
    memcpy(b, "SPRMODEX", 8);
    if (rejected(bad, b, n, "bad magic")) {
        snprintf(want, sizeof want, "%s: not a sparrow model file (bad magic)", bad);
        CHECK(!strcmp(spr_last_error(), want), "bad magic: expected \"%s\", got \"%s\"", want, spr_last_error());
    }
    memcpy(b, orig, n);
    wr32(b + 8, 7);
    if (rejected(bad, b, n, "version 7")) {
        snprintf(want, sizeof want, "%s: model format version 7 is newer than this sparrow (1)", bad);
        CHECK(!strcmp(spr_last_error(), want), "version 7: expected \"%s\", got \"%s\"", want, spr_last_error());
    }
    if (count == 18) {
        const section *w1 = &sec[9]; /* W[1] */
        memcpy(b, orig, n);
        b[w1->off + 12 + 5] ^= 0x04;
        if (rejected(bad, b, n, "W[1] payload")) {
            snprintf(want, sizeof want, "%s: section W[1] at byte offset %zu: checksum mismatch (file damaged)", bad,
                     w1->off);
            CHECK(!strcmp(spr_last_error(), want), "W[1] payload: expected \"%s\", got \"%s\"", want,
                  spr_last_error());
        }

        /* Files whose checksums are right but whose content lies: these reach the
         * structural checks behind the CRC. */
        const size_t conf = sec[0].off + 12;
        struct {
            const char *what;
            size_t at;
            int width; /* 4 or 8 */
            uint64_t value;
        } lies[] = {
            {"CONF: 9 layers", conf + 8, 4, 9},
            {"CONF: 1 layer", conf + 8, 4, 1},
            {"CONF: n_features 0", conf, 8, 0},
            {"CONF: n_features 51 (W[0] too short)", conf, 8, 51},
            {"CONF: huge layers (must fail before allocating)", conf, 8, 0x7FFFFFFFull},
            {"CONF: hidden size 2^31-1", conf + 24, 8, 0x7FFFFFFFull},
            {"CONF: hidden size -1", conf + 24, 8, UINT64_MAX},
            {"CONF: hash family 9", conf + 24 + 44 + 12, 4, 9},
            {"CONF: output sparsity 0", conf + 24 + 44 + 8, 4, 0},
            {"CONF: output tables 0", conf + 24 + 44 + 20, 4, 0},
            {"STAT: steps -1", sec[1].off + 12, 8, UINT64_MAX},
        };
        for (size_t k = 0; k < sizeof lies / sizeof lies[0]; k++) {
            memcpy(b, orig, n);
            if (lies[k].width == 4) wr32(b + lies[k].at, (uint32_t)lies[k].value);
            else wr64(b + lies[k].at, lies[k].value);
            int s = lies[k].at < sec[1].off ? 0 : 1;
            wr32(b + sec[s].off + 12 + sec[s].len, crc32_bitwise(b + sec[s].off + 12, sec[s].len));
            rejected(bad, b, n, lies[k].what);
        }
        /* Sampling fields of a dense layer are not checked (nor used): a huge random
         * fraction there must load without undefined behaviour (found by fuzzing:
         * a float-to-integer overflow; the sanitizer build turns it into a failure). */
        memcpy(b, orig, n);
        {
            wr32(b + sec[0].off + 12 + 24 + 40, 0x7F000000u); /* layer 0 random_fraction 1.7e38 */
            wr32(b + sec[0].off + 12 + sec[0].len, crc32_bitwise(b + sec[0].off + 12, sec[0].len));
            spit(bad, b, n);
            spr_model *m = NULL;
            spr_status st = spr_model_load(bad, &m);
            CHECK(st == SPR_STATUS_OK, "dense layer with random_fraction 1.7e38: expected ok, got %d (%s)",
                  st, spr_last_error());
            spr_model_free(m);
        }
        /* Two sections swapped in place: still a valid file (order is free). */
        memcpy(b, orig, n);
        {
            size_t a0 = sec[2].off, a1 = sec[3].off, a2 = sec[4].off; /* W[0], B[0] */
            memcpy(b + a0, orig + a1, a2 - a1);
            memcpy(b + a0 + (a2 - a1), orig + a0, a1 - a0);
            spit(bad, b, n);
            spr_model *m = NULL;
            spr_status st = spr_model_load(bad, &m);
            CHECK(st == SPR_STATUS_OK, "W[0] and B[0] swapped: expected ok, got %d (%s)", st, spr_last_error());
            spr_model_free(m);
        }
        /* A section tag renamed to another layer's kind: a duplicate. */
        memcpy(b, orig, n);
        wr32(b + sec[10].off, 0x400); /* B[1] -> B[0] */
        rejected(bad, b, n, "B[1] renamed B[0]");
        /* One section fewer, with the count adjusted: a missing section. */
        memcpy(b, orig, n);
        wr32(b + 12, 14);
        rejected(bad, b, sec[14].off, "VB[1], TBL[1] and LAST[1] dropped");

        /* The tables section damaged behind a valid checksum, or misplaced. */
        const section *tb = &sec[15];
        const size_t tp = tb->off + 12;
        const int64_t buckets = (int64_t)1 << tl->key_bits;
        struct {
            const char *what;
            size_t at;
            uint32_t value;
        } tlies[] = {
            {"TBL: first offset 1", tp, 1},
            {"TBL: a bucket over the capacity", tp + 4, (uint32_t)tl->capacity + 1},
            {"TBL: offsets past the ids", tp + 4 * (size_t)buckets, (uint32_t)N_LABELS + 1},
            {"TBL: offsets descending", tp + 4 * (size_t)buckets, 0xFFFFFFFFu},
            {"TBL: neuron id -1", tp + 4 * n_off, 0xFFFFFFFFu},
            {"TBL: neuron id N_LABELS", tp + 4 * n_off, (uint32_t)N_LABELS},
        };
        for (size_t k = 0; k < sizeof tlies / sizeof tlies[0]; k++) {
            memcpy(b, orig, n);
            wr32(b + tlies[k].at, tlies[k].value);
            wr32(b + tp + tb->len, crc32_bitwise(b + tp, tb->len));
            rejected(bad, b, n, tlies[k].what);
        }
        memcpy(b, orig, n);
        b[tp + tb->len / 2] ^= 0x20;
        if (rejected(bad, b, n, "TBL[1] payload")) {
            snprintf(want, sizeof want, "%s: section TBL[1] at byte offset %zu: checksum mismatch (file damaged)",
                     bad, tb->off);
            CHECK(!strcmp(spr_last_error(), want), "TBL[1] payload: expected \"%s\", got \"%s\"", want,
                  spr_last_error());
        }
        memcpy(b, orig, n); /* one id fewer, the length and checksum adjusted */
        wr64(b + tb->off + 4, tb->len - 4);
        wr32(b + tp + tb->len - 4, crc32_bitwise(b + tp, tb->len - 4));
        rejected(bad, b, n - 4, "TBL[1] 4 bytes short");
        memcpy(b, orig, n);
        wr32(b + tb->off, 0x900); /* TBL[1] -> TBL[0]: layer 0 is never sampled */
        rejected(bad, b, n, "TBL[1] renamed TBL[0]");

        /* Without the tables and the last steps (a file from before they were saved):
         * loads, the tables rebuilt from the weights, which is what rehashing the original
         * gives. */
        memcpy(b, orig, n);
        wr32(b + 12, 15);
        spit(bad, b, tb->off);
        spr_model *old = NULL, *again = NULL;
        spr_status st = spr_model_load(bad, &old);
        CHECK(st == SPR_STATUS_OK, "file without TBL: expected ok, got %d (%s)", st, spr_last_error());
        st = spr_model_load(good_path, &again);
        CHECK(st == SPR_STATUS_OK, "reload: expected ok, got %d (%s)", st, spr_last_error());
        if (old && again) {
            compare_params(again, old, "file without TBL");
            st = spr_model_rehash(again, 0, 1);
            CHECK(st == SPR_STATUS_OK, "rehash: expected ok, got %d (%s)", st, spr_last_error());
            compare_tables(again, old, "file without TBL against a rehash");
        }
        spr_model_free(old);
        spr_model_free(again);

        /* The last steps: a row stepped after the last step, behind a valid checksum, is
         * refused naming LAST; a file without LAST (an older sparrow's) loads with every
         * row owing nothing (its last step the model's). */
        const section *ls = &sec[16];
        const size_t lp = ls->off + 12;
        const int64_t steps = (int64_t)rd64(orig + sec[1].off + 12);
        memcpy(b, orig, n);
        wr64(b + lp + 8 * 3, (uint64_t)(steps + 1));
        wr32(b + lp + ls->len, crc32_bitwise(b + lp, ls->len));
        CHECK(rejected(bad, b, n, "LAST[1] past the steps") && strstr(spr_last_error(), "LAST[1]") &&
                  strstr(spr_last_error(), "row 3"),
              "LAST[1] row 3 at step %lld of %lld: expected refused naming LAST[1] and the row, got '%s'",
              (long long)steps + 1, (long long)steps, spr_last_error());
        memcpy(b, orig, n);
        wr64(b + lp, UINT64_MAX); /* -1 */
        wr32(b + lp + ls->len, crc32_bitwise(b + lp, ls->len));
        rejected(bad, b, n, "LAST[1] row 0 at step -1");
        memcpy(b, orig, n);
        wr32(b + 12, 16);
        spit(bad, b, ls->off);
        st = spr_model_load(bad, &old);
        CHECK(st == SPR_STATUS_OK, "file without LAST[1]: expected ok, got %d (%s)", st, spr_last_error());
        again = NULL;
        if (old && spr_model_load(good_path, &again) == SPR_STATUS_OK) {
            int owe = 0, kept = 1, some = 0;
            for (int64_t i = 0; i < old->layers[1].rows; i++) owe |= old->layers[1].last_step[i] != steps;
            for (int64_t i = 0; i < old->layers[0].rows; i++) {
                kept &= old->layers[0].last_step[i] == again->layers[0].last_step[i];
                some |= again->layers[0].last_step[i] != steps; /* the check can tell */
            }
            CHECK(some, "the saved model has a layer-0 row that owes steps");
            CHECK(!owe && kept && steps > 0,
                  "file without LAST[1]: every output row's last step is the model's %lld (%d), layer 0's "
                  "as saved (%d)", (long long)steps, !owe, kept);
        }
        spr_model_free(old);
        spr_model_free(again);
    }
    unlink(bad);
    free(b);
    free(orig);
}

/* ------------------------------------------------------------------ saving */

static int count_tmp(const char *dir) {
    char names[8192];
    list_dir(dir, names, sizeof names);
    return strstr(names, ".tmp.") != NULL;
}

/* SIGKILL at random moments during repeated saves: whatever the moment, the file at
 * path is always a complete model equal to the one being saved (the rename is atomic),
 * and the next successful save removes the killed saves' temporary files. */
static void test_killed_saves(const char *dir, spr_model *m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/killed.bin", dir);
    CHECK(spr_model_save(m, path) == SPR_STATUS_OK, "first save: %s", spr_last_error());
    int kills = 0, loads = 0;
    for (int round = 0; round < 25; round++) {
        pid_t child = fork();
        if (child == 0) {
            for (;;) /* save again and again until killed */
                if (spr_model_save(m, path) != SPR_STATUS_OK) _exit(3);
        }
        if (child < 0) {
            CHECK(0, "fork: %s", strerror(errno));
            return;
        }
        usleep((useconds_t)(rnd() % 40000)); /* 0..40 ms: mid-write most of the time */
        kill(child, SIGKILL);
        int status = 0;
        waitpid(child, &status, 0);
        kills += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        spr_model *back = NULL;
        spr_status st = spr_model_load(path, &back);
        CHECK(st == SPR_STATUS_OK, "round %d: the model file loads after SIGKILL: %s", round,
              spr_last_error());
        if (back) {
            loads += compare_state(m, back, "after SIGKILL") == 0;
            spr_model_free(back);
        }
    }
    CHECK(kills == 25, "every child was killed by SIGKILL (%d of 25)", kills);
    CHECK(loads == 25, "every load after a kill equals the saved model (%d of 25)", loads);
    CHECK(spr_model_save(m, path) == SPR_STATUS_OK, "save after the kills: %s", spr_last_error());
    char names[8192];
    list_dir(dir, names, sizeof names);
    CHECK(strstr(names, "killed.bin.tmp.") == NULL,
          "a successful save removes the killed saves' temporaries; directory: %s", names);
    unlink(path);
}

/* A save where memory is short: under an address-space limit (ulimit -v, which cluster
 * schedulers set) 1 MB above what the process has mapped, the save's 4 MB buffer cannot
 * be had; it used to fail ("cannot write: out of memory") and a whole run was lost at
 * its final save. A child process takes the limit; the file it writes must load as m.
 * Not under AddressSanitizer, whose shadow memory has its own idea of address space. */
#if defined(__SANITIZE_ADDRESS__)
#define SPR_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPR_TEST_ASAN 1
#endif
#endif
static void test_save_short_of_memory(const char *dir, spr_model *m) {
#ifdef SPR_TEST_ASAN
    (void)dir;
    (void)m;
    printf("test_checkpoint: the save under an address-space limit is skipped under ASan\n");
#else
    char path[4096];
    snprintf(path, sizeof path, "%s/short.bin", dir);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (check_limit_address_space((size_t)1 << 20) != 0) _exit(4);
        /* The 4 MB blocks the limit still leaves taken (held, not freed): the heap of a
         * malloc arena whose thread exited (OpenMP's workers, released before the fork)
         * has room inside its reserved addresses. Then 4 MB cannot be had. */
        int held = 0;
        while (held < 1000 && malloc((size_t)4 << 20)) held++;
        if (held == 1000) _exit(5);
        if (spr_model_save(m, path) != SPR_STATUS_OK) {
            fprintf(stderr, "FAIL: save under the limit: %s\n", spr_last_error());
            _exit(1);
        }
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    CHECK(code == 0, "save under an address-space limit 1 MB above the mapped size: child exit %d "
                     "(1: the save failed, 4-5: the test's own set-up)",
          code);
    spr_model *back = NULL;
    if (code == 0 && spr_model_load(path, &back) == SPR_STATUS_OK) {
        compare_params(m, back, "saved short of memory");
        spr_model_free(back);
    } else if (code == 0) {
        CHECK(0, "the model saved short of memory loads: %s", spr_last_error());
    }
    unlink(path);
#endif
}

static void test_save_failures(const char *dir, spr_model *m, spr_model *other, const char *path) {
    char p[4096], names[8192];

    /* A missing directory. */
    snprintf(p, sizeof p, "%s/no/such/dir/model.bin", dir);
    spr_status st = spr_model_save(m, p);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), p) && strstr(spr_last_error(), "cannot write"),
          "save into a missing directory: expected IO_ERROR \"%s: cannot write: ...\", got %d \"%s\"", p, st,
          spr_last_error());
    CHECK(!count_tmp(dir), "save into a missing directory: a temporary file was left");

    /* A directory as the target: the rename fails, the temp file must go. */
    snprintf(p, sizeof p, "%s/adir", dir);
    mkdir(p, 0755);
    st = spr_model_save(m, p);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "not a regular file (a directory"),
          "save onto a directory: expected IO_ERROR \"not a regular file (a directory...\", got %d (%s)", st,
          spr_last_error());
    CHECK(!count_tmp(dir), "save onto a directory: a temporary file was left");
    spr_model *x = NULL;
    st = spr_model_load(p, &x);
    CHECK(st == SPR_STATUS_IO_ERROR && x == NULL, "load a directory: expected IO_ERROR, got %d (%s)", st,
          spr_last_error());
    rmdir(p);

    /* A FIFO (as a device: `--save /dev/null` as root) stays what it is: the rename onto
     * it once replaced it with the model file. */
    snprintf(p, sizeof p, "%s/afifo", dir);
    if (mkfifo(p, 0644) == 0) {
        st = spr_model_save(m, p);
        struct stat sb;
        CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "not a regular file (a FIFO"),
              "save onto a FIFO: expected IO_ERROR \"not a regular file (a FIFO...\", got %d (%s)", st,
              spr_last_error());
        CHECK(lstat(p, &sb) == 0 && S_ISFIFO(sb.st_mode), "save onto a FIFO: it was replaced");
        CHECK(!count_tmp(dir), "save onto a FIFO: a temporary file was left");
        unlink(p);
    } else {
        CHECK(0, "mkfifo %s: %s", p, strerror(errno));
    }

    /* A missing file. */
    snprintf(p, sizeof p, "%s/missing.bin", dir);
    st = spr_model_load(p, &x);
    CHECK(st == SPR_STATUS_IO_ERROR && x == NULL && strstr(spr_last_error(), "cannot open"),
          "load a missing file: expected IO_ERROR \"cannot open\", got %d \"%s\"", st, spr_last_error());

    /* Running out of room mid-write (a file size limit stands in for ENOSPC): the old
     * model must survive byte for byte and no temp file remain. */
    size_t n0, n1;
    unsigned char *before = slurp(path, &n0);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        st = spr_model_save(other, path);
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "cannot write"),
              "save past the file size limit: expected IO_ERROR, got %d \"%s\"", st, spr_last_error());
        unsigned char *after = slurp(path, &n1);
        CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0,
              "save past the file size limit: the old model changed (%zu -> %zu bytes)", n0, n1);
        CHECK(!count_tmp(dir), "save past the file size limit: a temporary file was left");
        free(after);
    } else {
        printf("  (setrlimit failed: %s; the out-of-room test is skipped)\n", strerror(errno));
    }
    free(before);

    /* Replacing an existing model: the new one is there, nothing else. */
    st = spr_model_save(other, path);
    CHECK(st == SPR_STATUS_OK, "save over an existing model: expected ok, got %d (%s)", st, spr_last_error());
    int entries = list_dir(dir, names, sizeof names);
    CHECK(entries == 1 && !count_tmp(dir), "after replacing: expected only model.bin in %s, got %d entries: %s",
          dir, entries, names);
    st = spr_model_load(path, &x);
    CHECK(st == SPR_STATUS_OK, "load the replaced model: expected ok, got %d (%s)", st, spr_last_error());
    if (st == SPR_STATUS_OK) {
        spr_model_info a = spr_model_get_info(other), b = spr_model_get_info(x);
        CHECK(a.steps == b.steps, "replaced model: expected steps %lld, got %lld", (long long)a.steps,
              (long long)b.steps);
        compare_params(other, x, "replaced model");
        spr_model_free(x);
    }

    st = spr_model_save(NULL, path);
    CHECK(st == SPR_STATUS_BAD_INPUT, "save a NULL model: expected BAD_INPUT, got %d", st);
    st = spr_model_load(NULL, &x);
    CHECK(st == SPR_STATUS_BAD_INPUT, "load a NULL path: expected BAD_INPUT, got %d", st);
}

/* A deeper model (two sampled layers, one with SimHash and reservoir buckets) whose
 * arrays are filled through spr_model_param, untrained: every tag of layer 2 and
 * every config field other than the defaults go through the file. */
static void test_three_layers(const char *dir, const spr_dataset *data, uint64_t seed) {
    spr_model_config cfg = spr_model_config_default(N_FEATURES, N_LABELS);
    cfg.n_layers = 3;
    cfg.layers[0].size = HIDDEN;
    cfg.layers[1] = cfg.layers[0];
    cfg.layers[1].size = 24;
    cfg.layers[1].sparsity = 0.5f;
    cfg.layers[1].hash = SPR_HASH_SIMHASH;
    cfg.layers[1].hash_k = 3;
    cfg.layers[1].hash_l = 5;
    cfg.layers[1].bucket_capacity = 8;
    cfg.layers[1].bucket_policy = SPR_BUCKET_RESERVOIR;
    cfg.layers[2] = cfg.layers[0];
    cfg.layers[2].size = N_LABELS;
    cfg.layers[2].sparsity = 0.3f;
    cfg.layers[2].hash_l = 6;
    cfg.layers[2].bucket_capacity = 12;
    cfg.init_std = 0.2f;
    cfg.seed = seed ^ 0x1234;
    char path[4096];
    snprintf(path, sizeof path, "%s/deep.bin", dir);
    spr_model *m = NULL, *x = NULL;
    spr_status st = spr_model_create(&cfg, &m);
    CHECK(st == SPR_STATUS_OK, "3 layers: spr_model_create: expected ok, got %d (%s)", st, spr_last_error());
    if (st) return;
    for (int l = 0; l < 3; l++)
        for (int p = SPR_PARAM_BIAS; p <= SPR_PARAM_BIAS_ADAM_V; p++) {
            if (p == SPR_PARAM_WEIGHT_GRAD || p == SPR_PARAM_BIAS_GRAD) continue;
            float *a;
            int64_t rows, cols, stride;
            if (spr_model_param(m, l, (spr_param)p, &a, &rows, &cols, &stride)) continue;
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < cols; c++)
                    a[r * stride + c] = (float)(rnd() % 2001) / 1000.0f - (p == SPR_PARAM_WEIGHT_ADAM_V ? -0.01f : 1.0f);
        }
    spr_model_set_epoch(m, 11);
    st = spr_model_rehash(m, 1, 1); /* rebuilds = 1: new hash functions, recorded */
    CHECK(st == SPR_STATUS_OK, "3 layers: rehash: expected ok, got %d (%s)", st, spr_last_error());
    st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_OK, "3 layers: save: expected ok, got %d (%s)", st, spr_last_error());
    st = spr_model_load(path, &x);
    CHECK(st == SPR_STATUS_OK, "3 layers: load: expected ok, got %d (%s)", st, spr_last_error());
    if (st == SPR_STATUS_OK) {
        compare_config_info(m, x);
        check_peek(path, x, "3 layers");
        compare_params(m, x, "3 layers");
        compare_tables(m, x, "3 layers");
        compare_predictions(m, x, data, 0, "3 layers, dense prediction");
        compare_predictions(m, x, data, 1, "3 layers, sparse prediction");
    }
    spr_model_free(m);
    spr_model_free(x);
    unlink(path);
}

/* Layer l's weight moments of a and b (BF16 or float, as the layer keeps them) equal bit
 * for bit, and some second moment non-zero. */
static void compare_bf16_moments(const spr_model *a, const spr_model *b, int l, const char *what) {
    const spr_layer *x = &a->layers[l], *y = &b->layers[l];
    CHECK(x->mw16 && y->mw16 && x->vw16 && y->vw16 && !x->mw && !y->mw,
          "%s: layer %d: expected BF16 moments (and no float ones) in both models", what, l);
    if (!x->mw16 || !y->mw16 || !x->vw16 || !y->vw16) return;
    int64_t first = -1, nonzero = 0;
    for (int64_t r = 0; r < x->rows; r++)
        for (int64_t c = 0; c < x->cols; c++) {
            int64_t i = r * x->stride + c;
            if (first < 0 && (x->mw16[i] != y->mw16[i] || x->vw16[i] != y->vw16[i])) first = i;
            nonzero += x->vw16[i] != 0;
        }
    CHECK(first < 0, "%s: layer %d BF16 moments at %lld: expected m 0x%04x v 0x%04x, got 0x%04x 0x%04x", what,
          l, (long long)first, first < 0 ? 0 : x->mw16[first], first < 0 ? 0 : x->vw16[first],
          first < 0 ? 0 : y->mw16[first], first < 0 ? 0 : y->vw16[first]);
    CHECK(nonzero > 0, "%s: expected some non-zero BF16 second moments after training, got none", what);
}

/* A model with bf16_state: the mode and the moments survive a round trip (the moments
 * stored as f32 widened from BF16, the mode in an OPT section), training goes on bit for
 * bit, the memory figures count 2 bytes a moment, the float accessor refuses the BF16
 * arrays, and an OPT section with unknown bits is refused. */
/* A model with bf16_weights: the weights survive a round trip bit for bit (stored as f32
 * widened from BF16, the mode in OPT bit 1), training goes on bit for bit, the memory
 * figures count 2 bytes a weight, and a file with bit 1 but not bit 0 is refused. */
static void test_bf16_weights(const char *dir, const spr_dataset *data, spr_model_config cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bf16w.bin", dir);
    spr_model_config scfg = cfg;
    scfg.bf16_state = 1;
    cfg.bf16_state = cfg.bf16_weights = 1;
    spr_model *m = NULL, *loaded = NULL;
    unsigned char *b = NULL;
    spr_status st = spr_model_create(&cfg, &m);
    CHECK(st == SPR_STATUS_OK, "bf16w: create: expected ok, got %d (%s)", st, spr_last_error());
    if (st) goto out;
    const spr_layer *Lo = &m->layers[1];
    int64_t bytes_w = 0, bytes_s = 0;
    spr_model_config_memory(&cfg, &bytes_w);
    spr_model_config_memory(&scfg, &bytes_s);
    const int64_t saved = 2 * Lo->rows * Lo->stride; /* 2 bytes an entry */
    CHECK(bytes_s - bytes_w == saved, "bf16w: config memory: expected %lld bytes less than bf16_state "
          "alone, got %lld", (long long)saved, (long long)(bytes_s - bytes_w));
    const size_t n16 = (size_t)(Lo->rows * Lo->stride) * sizeof(uint16_t);
    st = train_batches(m, data, 5, 0, 1);
    CHECK(st == SPR_STATUS_OK, "bf16w: training: expected ok, got %d (%s)", st, spr_last_error());
    st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_OK, "bf16w: save: expected ok, got %d (%s)", st, spr_last_error());
    st = spr_model_load(path, &loaded);
    CHECK(st == SPR_STATUS_OK && loaded, "bf16w: load: expected ok, got %d (%s)", st, spr_last_error());
    if (st) goto out;
    check_peek(path, loaded, "bf16w");
    CHECK(spr_model_get_config(loaded).bf16_weights == 1 && loaded->layers[1].w16 && !loaded->layers[1].w,
          "bf16w: loaded: expected bf16_weights 1 and BF16 weights");
    compare_config_info(m, loaded);
    compare_bf16_moments(m, loaded, 1, "bf16w round trip");
    CHECK(memcmp(Lo->w16, loaded->layers[1].w16, n16) == 0, "bf16w round trip: expected the output "
          "weights bit for bit");
    st = train_batches(m, data, 4, 5, 1);
    spr_status st2 = train_batches(loaded, data, 4, 5, 1);
    CHECK(st == SPR_STATUS_OK && st2 == SPR_STATUS_OK, "bf16w: training after load: expected ok (%s)",
          spr_last_error());
    CHECK(memcmp(Lo->w16, loaded->layers[1].w16, n16) == 0, "bf16w: four more steps on both: expected "
          "the output weights bit for bit");
    compare_bf16_moments(m, loaded, 1, "bf16w: four more steps on both");
    compare_predictions(m, loaded, data, 0, "bf16w: dense prediction after load and 4 steps");
    compare_predictions(m, loaded, data, 1, "bf16w: sparse prediction after load and 4 steps");

    /* OPT bit 1 without bit 0 (bf16_weights without bf16_state): refused */
    size_t n = 0;
    b = slurp(path, &n);
    int opt = 0;
    for (size_t off = 16; b && off + 12 <= n;) {
        uint32_t tag = rd32(b + off);
        uint64_t len = rd64(b + off + 4);
        if (off + 16 + len > n) break;
        if (tag == (10u << 8) && len == 4 && rd32(b + off + 12) == 7u) {
            opt = 1;
            wr32(b + off + 12, 2u);
            wr32(b + off + 16, crc32_bitwise(b + off + 12, 4));
            CHECK(rejected(path, b, n, "OPT with bits 0x2"), "bf16w: expected OPT bit 1 alone refused");
            CHECK(strstr(spr_last_error(), "bf16_state") != NULL,
                  "bf16w: OPT with bits 0x2: expected a message naming bf16_state, got '%s'", spr_last_error());
        }
        off += 16 + len;
    }
    CHECK(opt, "bf16w: expected an OPT section with bits 0x7 in the file");
out:
    free(b);
    spr_model_free(m);
    spr_model_free(loaded);
    unlink(path);
}

static void test_bf16_state(const char *dir, const spr_dataset *data, spr_model_config cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bf16.bin", dir);
    spr_model_config fcfg = cfg;
    fcfg.bf16_state = 0;
    cfg.bf16_state = 1;
    spr_model *m = NULL, *f = NULL, *loaded = NULL;
    unsigned char *b = NULL;
    uint16_t *saved_m = NULL, *saved_v = NULL;
    spr_status st = spr_model_create(&cfg, &m);
    spr_status st2 = spr_model_create(&fcfg, &f);
    CHECK(st == SPR_STATUS_OK && st2 == SPR_STATUS_OK, "bf16: create: expected ok, got %d %d (%s)", st, st2,
          spr_last_error());
    if (st || st2) goto out;
    const spr_layer *Lo = &m->layers[1];
    int64_t bytes_b = 0, bytes_f = 0;
    spr_model_config_memory(&cfg, &bytes_b);
    spr_model_config_memory(&fcfg, &bytes_f);
    const int64_t saved = 4 * Lo->rows * Lo->stride; /* 2 arrays x 2 bytes an entry */
    CHECK(bytes_f - bytes_b == saved, "bf16: config memory: expected %lld bytes less than float, got %lld",
          (long long)saved, (long long)(bytes_f - bytes_b));
    int64_t info_diff = spr_model_get_info(f).parameter_bytes - spr_model_get_info(m).parameter_bytes;
    CHECK(info_diff == saved, "bf16: info parameter_bytes: expected %lld less than float, got %lld",
          (long long)saved, (long long)info_diff);
    float *p = NULL;
    CHECK(spr_model_param(m, 1, SPR_PARAM_WEIGHT_ADAM_M, &p, NULL, NULL, NULL) == SPR_STATUS_BAD_INPUT &&
              strstr(spr_last_error(), "BF16"),
          "bf16: spr_model_param(output MW): expected bad input naming BF16, got '%s'", spr_last_error());
    CHECK(spr_model_param(m, 0, SPR_PARAM_WEIGHT_ADAM_M, &p, NULL, NULL, NULL) == SPR_STATUS_OK && p,
          "bf16: spr_model_param(layer 0 MW): expected ok (only the output layer is BF16), got '%s'",
          spr_last_error());
    st = train_batches(m, data, 5, 0, 1);
    st2 = train_batches(f, data, 5, 0, 1);
    CHECK(st == SPR_STATUS_OK && st2 == SPR_STATUS_OK, "bf16: training: expected ok, got %d %d (%s)", st, st2,
          spr_last_error());
    /* the BF16 path was taken: the output weights differ from float Adam's, but little */
    double maxdiff = 0.0;
    for (int64_t i = 0; i < Lo->rows * Lo->stride; i++) {
        double d = fabs((double)Lo->w[i] - (double)f->layers[1].w[i]);
        if (d > maxdiff) maxdiff = d;
    }
    CHECK(maxdiff > 0.0 && maxdiff < 1e-3, "bf16: output weights after 5 steps: expected to differ from "
          "float Adam's by (0, 1e-3), got %g", maxdiff);
    st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_OK, "bf16: save: expected ok, got %d (%s)", st, spr_last_error());
    const size_t moment_bytes = (size_t)(Lo->rows * Lo->stride) * sizeof(uint16_t);
    saved_m = malloc(moment_bytes), saved_v = malloc(moment_bytes); /* the saved moments */
    if (!saved_m || !saved_v) goto out;
    memcpy(saved_m, Lo->mw16, moment_bytes);
    memcpy(saved_v, Lo->vw16, moment_bytes);
    st = spr_model_load(path, &loaded);
    CHECK(st == SPR_STATUS_OK && loaded, "bf16: load: expected ok, got %d (%s)", st, spr_last_error());
    if (st) goto out;
    check_peek(path, loaded, "bf16");
    CHECK(spr_model_get_config(loaded).bf16_state == 1, "bf16: loaded bf16_state: expected 1, got %d",
          spr_model_get_config(loaded).bf16_state);
    compare_config_info(m, loaded);
    compare_bf16_moments(m, loaded, 1, "bf16 round trip");
    CHECK(memcmp(Lo->w, loaded->layers[1].w, (size_t)(Lo->rows * Lo->stride) * sizeof(float)) == 0,
          "bf16 round trip: expected the output weights bit for bit");
    st = train_batches(m, data, 4, 5, 1);
    st2 = train_batches(loaded, data, 4, 5, 1);
    CHECK(st == SPR_STATUS_OK && st2 == SPR_STATUS_OK, "bf16: training after load: expected ok (%s)",
          spr_last_error());
    compare_bf16_moments(m, loaded, 1, "bf16: four more steps on both");
    CHECK(memcmp(Lo->w, loaded->layers[1].w, (size_t)(Lo->rows * Lo->stride) * sizeof(float)) == 0,
          "bf16: four more steps on both: expected the output weights bit for bit");
    compare_predictions(m, loaded, data, 1, "bf16: sparse prediction after load and 4 steps");

    /* The file: an OPT section with bits 0 and 2, and MW[1] / VW[1] as the model's BF16
     * bits, 2 bytes each (before session 30: f32, twice the bytes). */
    size_t n = 0;
    b = slurp(path, &n);
    int opt = 0, moments = 0, differ = 0;
    const spr_layer *Lm = &m->layers[1];
    for (size_t off = 16; b && off + 12 <= n;) {
        uint32_t tag = rd32(b + off);
        uint64_t len = rd64(b + off + 4);
        if (off + 16 + len > n) break;
        if (tag == (10u << 8) && len == 4 && rd32(b + off + 12) == 5u) {
            opt = 1;
            /* unknown bits, bit 2 without bit 0, bit 2 cleared (the moments' lengths then
             * those of f32), each with a right checksum: refused by name */
            const uint32_t bad_bits[3] = {13u, 4u, 1u};
            const char *want[3] = {"unknown option bits 0x00000008", "u16 sections (bit 2) without BF16 arrays",
                                   "the configuration calls for"};
            for (int t = 0; t < 3; t++) {
                wr32(b + off + 12, bad_bits[t]);
                wr32(b + off + 16, crc32_bitwise(b + off + 12, 4));
                char what[64];
                snprintf(what, sizeof what, "OPT with bits 0x%x", bad_bits[t]);
                CHECK(rejected(path, b, n, what), "bf16: expected an OPT section with bits 0x%x refused", bad_bits[t]);
                CHECK(strstr(spr_last_error(), want[t]) != NULL, "bf16: OPT with bits 0x%x: expected '%s', got '%s'",
                      bad_bits[t], want[t], spr_last_error());
            }
            wr32(b + off + 12, 5u);
            wr32(b + off + 16, crc32_bitwise(b + off + 12, 4));
        }
        if (tag == (5u << 8 | 1u) || tag == (6u << 8 | 1u)) {
            moments++;
            const uint16_t *x = tag == (5u << 8 | 1u) ? saved_m : saved_v;
            differ += len != (uint64_t)(Lm->rows * Lm->cols * 2);
            for (int64_t r = 0; r < Lm->rows && !differ; r++)
                for (int64_t c = 0; c < Lm->cols; c++) {
                    const unsigned char *q = b + off + 12 + 2 * (r * Lm->cols + c);
                    differ += (uint16_t)(q[0] | q[1] << 8) != x[r * Lm->stride + c];
                }
        }
        off += 16 + len;
    }
    CHECK(opt == 1 && moments == 2 && differ == 0,
          "bf16 file: expected an OPT section with bits 0x5 and MW[1], VW[1] as the model's BF16 bits, got OPT %d, "
          "%d moment sections, %d values or lengths differing", opt, moments, differ);
out:
    free(saved_m);
    free(saved_v);
    free(b);
    unlink(path); /* later tests want the directory to themselves */
    spr_model_free(m);
    spr_model_free(f);
    spr_model_free(loaded);
}

/* simhash_one_in other than 3: saved in a HASH section (u32 a layer), read back, and
 * training goes on bit for bit (the loaded hash functions are the saved model's). A file
 * without the section reads as 3 (every file before the option); a damaged one is
 * refused by name. */
static void test_simhash_one_in(const char *dir, const spr_dataset *data, spr_model_config cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/simhash12.bin", dir);
    cfg.layers[1].simhash_one_in = 12;
    spr_model *m = NULL, *loaded = NULL;
    unsigned char *b = NULL, *cut = NULL;
    spr_status st = spr_model_create(&cfg, &m);
    CHECK(st == SPR_STATUS_OK, "one in 12: create: expected ok, got %d (%s)", st, spr_last_error());
    if (st) goto out;
    st = train_batches(m, data, 5, 0, 1);
    CHECK(st == SPR_STATUS_OK, "one in 12: training: expected ok, got %d (%s)", st, spr_last_error());
    st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_OK, "one in 12: save: expected ok, got %d (%s)", st, spr_last_error());
    st = spr_model_load(path, &loaded);
    CHECK(st == SPR_STATUS_OK && loaded, "one in 12: load: expected ok, got %d (%s)", st, spr_last_error());
    if (st) goto out;
    check_peek(path, loaded, "one in 12");
    CHECK(spr_model_get_config(loaded).layers[1].simhash_one_in == 12 &&
              spr_model_get_config(loaded).layers[0].simhash_one_in == 3,
          "one in 12: loaded: expected simhash_one_in 3, 12, got %d, %d",
          spr_model_get_config(loaded).layers[0].simhash_one_in, spr_model_get_config(loaded).layers[1].simhash_one_in);
    compare_config_info(m, loaded);
    compare_state(m, loaded, "one in 12 round trip");
    compare_tables(m, loaded, "one in 12 round trip");
    compare_predictions(m, loaded, data, 1, "one in 12: sparse prediction after load");
    st = train_batches(m, data, 4, 5, 1);
    spr_status st2 = train_batches(loaded, data, 4, 5, 1);
    CHECK(st == SPR_STATUS_OK && st2 == SPR_STATUS_OK, "one in 12: training after load: expected ok (%s)",
          spr_last_error());
    compare_state(m, loaded, "one in 12: four more steps on both");
    compare_tables(m, loaded, "one in 12: four more steps on both");
    compare_predictions(m, loaded, data, 1, "one in 12: sparse prediction after 4 more steps");
    spr_model_free(loaded);
    loaded = NULL;

    /* The file: one more section than a default model's, HASH (kind 11) of 8 bytes {3, 12}. */
    size_t n = 0;
    b = slurp(path, &n);
    size_t hash_off = find_section(b, n, 11u << 8);
    CHECK(b && rd32(b + 12) == 2 + 7 * 2 + 1 + 1 + 1, "one in 12: expected 19 sections, got %u", b ? rd32(b + 12) : 0);
    CHECK(hash_off && rd64(b + hash_off + 4) == 8 && rd32(b + hash_off + 12) == 3 && rd32(b + hash_off + 16) == 12,
          "one in 12: expected a HASH section of 8 bytes holding 3, 12");
    if (!hash_off) goto out;
    /* a layer's value out of range, with a good CRC: refused naming the field */
    wr32(b + hash_off + 16, 0);
    wr32(b + hash_off + 20, crc32_bitwise(b + hash_off + 12, 8));
    CHECK(rejected(path, b, n, "HASH with 0"), "one in 12: expected HASH {3, 0} refused");
    CHECK(strstr(spr_last_error(), "HASH") && strstr(spr_last_error(), "simhash_one_in"),
          "one in 12: HASH {3, 0}: expected a message naming HASH and simhash_one_in, got '%s'", spr_last_error());
    wr32(b + hash_off + 16, 2000);
    wr32(b + hash_off + 20, crc32_bitwise(b + hash_off + 12, 8));
    CHECK(rejected(path, b, n, "HASH with 2000") && strstr(spr_last_error(), "simhash_one_in must be in"),
          "one in 12: HASH {3, 2000}: expected refused naming simhash_one_in, got '%s'", spr_last_error());
    /* a bad CRC */
    wr32(b + hash_off + 16, 12);
    CHECK(rejected(path, b, n, "HASH with a bad CRC") && strstr(spr_last_error(), "checksum"),
          "one in 12: expected a HASH with a bad checksum refused, got '%s'", spr_last_error());
    wr32(b + hash_off + 20, crc32_bitwise(b + hash_off + 12, 8));
    /* the section without the file: everything reads as 3 (what a file before HASH says) */
    cut = malloc(n);
    if (!cut) goto out;
    memcpy(cut, b, hash_off);
    memcpy(cut + hash_off, b + hash_off + 24, n - hash_off - 24);
    wr32(cut + 12, rd32(b + 12) - 1);
    if (spit(path, cut, n - 24) != 0) goto out;
    st = spr_model_load(path, &loaded);
    CHECK(st == SPR_STATUS_OK && loaded && spr_model_get_config(loaded).layers[1].simhash_one_in == 3,
          "one in 12, HASH removed: expected a model with simhash_one_in 3, got %d (%s)", st, spr_last_error());
    /* a HASH section of the wrong length: refused */
    wr32(b + hash_off + 4, 4);
    wr64(b + hash_off + 4, 4);
    memmove(b + hash_off + 16, b + hash_off + 20, n - hash_off - 20);
    wr32(b + hash_off + 16, crc32_bitwise(b + hash_off + 12, 4));
    CHECK(rejected(path, b, n - 4, "HASH of 4 bytes") && strstr(spr_last_error(), "hash parameters of 2 layers"),
          "one in 12: expected a 4-byte HASH section refused, got '%s'", spr_last_error());
out:
    free(b);
    free(cut);
    spr_model_free(m);
    spr_model_free(loaded);
    unlink(path);
}

/* The training set's note: a DATA section (kind 12, 20 bytes: points, digest, bits)
 * written only when the model has one, read back exactly; a file without it loads
 * without a note (every file before notes); damaged ones are refused naming DATA. */
static void test_data_note(const char *dir, spr_model *m, const spr_dataset *data) {
    char path[4096];
    snprintf(path, sizeof path, "%s/note.bin", dir);
    spr_model *loaded = NULL;
    unsigned char *b = NULL, *cut = NULL;
    const spr_data_note none = spr_model_get_data_note(m);
    CHECK(none.points == 0 && none.digest == 0 && none.one_based == 0,
          "note: a model never given one: expected all 0, got %lld", (long long)none.points);
    const spr_data_note want = {spr_dataset_get_view(data).n_points, spr_dataset_digest(data), 1};
    spr_model_set_data_note(m, &want);
    spr_status st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_OK, "note: save: expected ok, got %d (%s)", st, spr_last_error());
    st = spr_model_load(path, &loaded);
    CHECK(st == SPR_STATUS_OK && loaded, "note: load: expected ok, got %d (%s)", st, spr_last_error());
    if (st) goto out;
    check_peek(path, loaded, "note");
    spr_data_note got = spr_model_get_data_note(loaded);
    CHECK(got.points == want.points && got.digest == want.digest && got.one_based == 1,
          "note: loaded %lld %016llx %d, saved %lld %016llx 1", (long long)got.points,
          (unsigned long long)got.digest, got.one_based, (long long)want.points, (unsigned long long)want.digest);
    compare_state(m, loaded, "note round trip");
    spr_model_free(loaded);
    loaded = NULL;

    size_t n = 0;
    b = slurp(path, &n);
    size_t off_data = find_section(b, n, 12u << 8);
    CHECK(b && rd32(b + 12) == 2 + 7 * 2 + 1 + 1 + 1, "note: expected 19 sections, got %u", b ? rd32(b + 12) : 0);
    CHECK(off_data && rd64(b + off_data + 4) == 20 && rd64(b + off_data + 12) == (uint64_t)want.points &&
              rd64(b + off_data + 20) == want.digest && rd32(b + off_data + 28) == 1,
          "note: expected a DATA section of 20 bytes: points, digest, bits 1");
    if (!off_data) goto out;
    unsigned char *p = b + off_data + 12; /* the payload; its CRC at p + 20 */
    wr32(p + 16, 3); /* an unknown bit */
    wr32(p + 20, crc32_bitwise(p, 20));
    CHECK(rejected(path, b, n, "DATA bits 3") && strstr(spr_last_error(), "DATA") &&
              strstr(spr_last_error(), "unknown data bits 0x00000002"),
          "note: unknown bits: expected refused naming DATA, got '%s'", spr_last_error());
    wr32(p + 16, 1);
    wr64(p, 0); /* no points */
    wr32(p + 20, crc32_bitwise(p, 20));
    CHECK(rejected(path, b, n, "DATA of 0 points") && strstr(spr_last_error(), "a training set of 0 points"),
          "note: 0 points: expected refused, got '%s'", spr_last_error());
    wr64(p, (uint64_t)want.points); /* the CRC of the 0-point payload: a mismatch */
    CHECK(rejected(path, b, n, "DATA with a bad CRC") && strstr(spr_last_error(), "checksum"),
          "note: bad CRC: expected refused, got '%s'", spr_last_error());
    wr32(p + 20, crc32_bitwise(p, 20));
    /* a kind this reader does not know (the next one a later sparrow may add): refused,
     * saying it may be a newer sparrow's */
    wr32(b + off_data, 15u << 8);
    CHECK(rejected(path, b, n, "an unknown kind") &&
              strstr(spr_last_error(), "unknown section tag (a newer sparrow's file, or damaged)"),
          "note: kind 15: expected refused as unknown, got '%s'", spr_last_error());
    wr32(b + off_data, 12u << 8);
    /* the file without the section: a model with no note */
    cut = malloc(n);
    if (!cut) goto out;
    memcpy(cut, b, off_data);
    memcpy(cut + off_data, b + off_data + 36, n - off_data - 36);
    wr32(cut + 12, rd32(b + 12) - 1);
    if (spit(path, cut, n - 36) != 0) goto out;
    st = spr_model_load(path, &loaded);
    CHECK(st == SPR_STATUS_OK && loaded && spr_model_get_data_note(loaded).points == 0,
          "note: DATA removed: expected a model without a note, got %d (%s)", st, spr_last_error());
    /* a DATA section of 16 bytes (the bits left out): refused */
    wr64(b + off_data + 4, 16);
    memmove(p + 16, p + 20, n - (size_t)(p + 20 - b));
    wr32(p + 16, crc32_bitwise(p, 16));
    CHECK(rejected(path, b, n - 4, "DATA of 16 bytes") && strstr(spr_last_error(), "a data note takes 20"),
          "note: 16 bytes: expected refused, got '%s'", spr_last_error());
    /* a note of no points clears it */
    const spr_data_note empty = {0, 7, 1};
    spr_model_set_data_note(m, &want);
    spr_model_set_data_note(m, &empty);
    CHECK(spr_model_get_data_note(m).points == 0 && spr_model_get_data_note(m).digest == 0,
          "note: setting one of 0 points: expected it cleared");
out:
    spr_model_set_data_note(m, NULL);
    free(b);
    free(cut);
    spr_model_free(loaded);
    unlink(path);
}

/* ------------------------------------------------------------------ Adam options */

/* Rows of layer l whose last step is not the model's (what spr_model_settle takes). */
static int64_t rows_owing(const spr_model *m, int l) {
    int64_t owing = 0;
    for (int64_t i = 0; i < m->layers[l].rows; i++) owing += m->layers[l].last_step[i] != m->steps;
    return owing;
}

/* ADAM (the options the owed steps are taken at): saved with a model that stepped with
 * catch-up, loaded back exactly; spr_model_settle of the loaded model is
 * spr_model_catch_up of the original at the options it trained with, bit for bit, and
 * moves rows; nothing for a lazy model or one without the section; damaged options
 * refused naming ADAM. */
static void test_adam_options(const char *dir, const spr_dataset *data, spr_model_config cfg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adam.bin", dir);
    spr_model *m = NULL, *loaded = NULL, *stale = NULL, *lazy = NULL;
    unsigned char *b = NULL;
    spr_train_options o = spr_train_options_default();
    o.batch_size = 16, o.threads = 1;
    o.lr = 0.003f, o.beta1 = 0.8f, o.beta2 = 0.99f, o.eps = 1e-6f; /* none of them the default */
    spr_status st = spr_model_create(&cfg, &m);
    CHECK(st == SPR_STATUS_OK, "adam: create: %s", spr_last_error());
    if (st) goto out;
    CHECK(spr_model_settle(NULL, 1) == SPR_STATUS_BAD_INPUT, "adam: settle(NULL): expected BAD_INPUT");
    /* never stepped: no options known, no section */
    st = spr_model_save(m, path);
    size_t n = 0;
    b = slurp(path, &n);
    CHECK(st == SPR_STATUS_OK && b && !find_section(b, n, 14u << 8), "adam: a model never stepped: expected no ADAM");
    free(b);
    b = NULL;
    int64_t rows[16];
    for (int k = 0; k < 6 && !st; k++) { /* 5 batches of 16, then one of 1: rows owe steps */
        for (int i = 0; i < 16; i++) rows[i] = (k * 16 + i) % N_POINTS;
        st = spr_model_train_batch(m, data, rows, k < 5 ? 16 : 1, &o, NULL);
    }
    CHECK(st == SPR_STATUS_OK, "adam: training: %s", spr_last_error());
    if (st) goto out;
    st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_OK, "adam: save: %s", spr_last_error());
    b = slurp(path, &n);
    const size_t off = b ? find_section(b, n, 14u << 8) : 0;
    CHECK(off && rd64(b + off + 4) == 16, "adam: expected an ADAM section of 16 bytes");
    if (!off) goto out;
    const float want[4] = {o.lr, o.beta1, o.beta2, o.eps};
    for (int i = 0; i < 4; i++) {
        const uint32_t u = rd32(b + off + 12 + 4 * (size_t)i);
        float f;
        memcpy(&f, &u, sizeof f);
        CHECK(f == want[i], "adam: option %d: saved %g, trained with %g", i, (double)f, (double)want[i]);
    }
    if ((st = spr_model_load(path, &loaded)) || (st = spr_model_load(path, &stale))) {
        CHECK(0, "adam: load: %s", spr_last_error());
        goto out;
    }
    check_peek(path, loaded, "adam");
    const spr_model_info info = spr_model_get_info(loaded);
    CHECK(info.lr == o.lr && info.beta1 == o.beta1 && info.beta2 == o.beta2 && info.eps == o.eps,
          "adam: the loaded model's info: lr %g betas %g %g eps %g", (double)info.lr, (double)info.beta1,
          (double)info.beta2, (double)info.eps);
    const int64_t owing = rows_owing(loaded, 0) + rows_owing(loaded, 1);
    CHECK(owing > 0, "adam: the loaded model has rows that owe steps (else settling cannot show)");
    st = spr_model_catch_up(m, &o);
    spr_status st2 = spr_model_settle(loaded, 2);
    CHECK(st == SPR_STATUS_OK && st2 == SPR_STATUS_OK, "adam: catch-up / settle: %s", spr_last_error());
    compare_params(m, loaded, "adam: settle of the loaded model against catch-up of the original");
    CHECK(rows_owing(loaded, 0) + rows_owing(loaded, 1) == 0, "adam: settled, rows still owe steps");
    const spr_layer *x = &loaded->layers[1], *y = &stale->layers[1];
    int moved = 0;
    for (int64_t i = 0; i < x->rows && !moved; i++)
        moved = memcmp(x->w + i * x->stride, y->w + i * y->stride, (size_t)x->cols * sizeof(float)) != 0;
    CHECK(moved, "adam: settling moved no output row");
    /* a model saved after settling owes nothing; settling its load changes nothing */
    st = spr_model_settle(loaded, 1);
    CHECK(st == SPR_STATUS_OK, "adam: a second settle: %s", spr_last_error());
    compare_params(m, loaded, "adam: a second settle");

    /* damaged options behind a good CRC: refused naming the section */
    unsigned char *p = b + off + 12;
    const uint32_t two = 0x40000000u; /* 2.0f: beta2 out of [0, 1) */
    const uint32_t beta2 = rd32(p + 8);
    wr32(p + 8, two);
    wr32(p + 16, crc32_bitwise(p, 16));
    CHECK(rejected(path, b, n, "ADAM beta2 2") && strstr(spr_last_error(), "ADAM") &&
              strstr(spr_last_error(), "Adam options that cannot train"),
          "adam: beta2 2: expected refused naming ADAM, got '%s'", spr_last_error());
    st = spr_model_peek(path, NULL, NULL, NULL);
    CHECK(st == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "ADAM"),
          "adam: beta2 2: expected peek to refuse it too, got %d (%s)", st, spr_last_error());
    wr32(p + 8, beta2);
    wr32(p + 16, crc32_bitwise(p, 16));
    /* the file without it (a sparrow before session 26): loads; settling takes nothing */
    wr32(b + 12, rd32(b + 12) - 1);
    spr_model_free(stale);
    stale = NULL;
    if (spit(path, b, off) == 0 && (st = spr_model_load(path, &stale)) == SPR_STATUS_OK) {
        const int64_t before = rows_owing(stale, 1);
        st = spr_model_settle(stale, 1);
        CHECK(st == SPR_STATUS_OK && before > 0 && rows_owing(stale, 1) == before,
              "adam: a file without ADAM: expected its %lld owing rows left owing, %lld are",
              (long long)before, (long long)rows_owing(stale, 1));
    } else {
        CHECK(0, "adam: a file without ADAM: expected it loaded, got %d (%s)", st, spr_last_error());
    }
    /* lazy Adam: rows owe nothing, no section */
    st = spr_model_create(&cfg, &lazy);
    o.lazy_adam = 1;
    for (int k = 0; k < 3 && !st; k++) {
        for (int i = 0; i < 16; i++) rows[i] = (k * 16 + i) % N_POINTS;
        st = spr_model_train_batch(lazy, data, rows, 16, &o, NULL);
    }
    if (!st) st = spr_model_save(lazy, path);
    free(b);
    b = slurp(path, &n);
    CHECK(st == SPR_STATUS_OK && b && !find_section(b, n, 14u << 8), "adam: lazy Adam: expected no ADAM (%s)",
          spr_last_error());
out:
    free(b);
    spr_model_free(m);
    spr_model_free(loaded);
    spr_model_free(stale);
    spr_model_free(lazy);
    unlink(path);
}

/* The recall of the sampler of a and b over the data set: the same, exactly. */
static void compare_recall(const spr_model *a, const spr_model *b, const spr_dataset *d, const char *what) {
    double ra = -1, rb = -2;
    spr_status s1 = spr_model_sampling_recall(a, d, NULL, 0, 3, 1, &ra);
    spr_status s2 = spr_model_sampling_recall(b, d, NULL, 0, 3, 1, &rb);
    CHECK(s1 == SPR_STATUS_OK && s2 == SPR_STATUS_OK && ra == rb, "%s: recall: expected %.17g, got %.17g (%d %d %s)",
          what, ra, rb, s1, s2, spr_last_error());
}

/* BAD_INPUT whose message holds `words`. */
static void check_refused(spr_status st, const char *words, const char *what) {
    CHECK(st == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), words),
          "%s: expected BAD_INPUT naming \"%s\", got %d (%s)", what, words, st, spr_last_error());
}

/* spr_model_load_inference: a model for inference scores every point bit for bit as the
 * whole model loaded and settled does (exact, sparse with tables, the sampler's recall),
 * from a file that owes Adam steps (loaded whole, settled, slimmed), one that owes none
 * (its moments never read), and a lazy one (owing steps no one can take); it holds no
 * weight moments or gradients, no tables unless asked, and refuses what needs them. */
static void test_load_inference(const char *dir, const spr_dataset *data, spr_model_config base) {
    char path[4096], other[4096];
    snprintf(path, sizeof path, "%s/inference.bin", dir);
    snprintf(other, sizeof other, "%s/inference_save.bin", dir);
    for (int variant = 0; variant < 5; variant++) {
        spr_model_config cfg = base;
        const char *name[] = {"float", "bf16 state", "bf16 weights", "rank selection", "lazy adam"};
        if (variant == 1) cfg.bf16_state = 1;
        if (variant == 2) cfg.bf16_state = cfg.bf16_weights = 1;
        if (variant == 3) cfg.layers[1].select = SPR_SELECT_RANK;
        spr_model *m = NULL;
        spr_status st = spr_model_create(&cfg, &m);
        CHECK(st == SPR_STATUS_OK, "%s: create: %s", name[variant], spr_last_error());
        if (st) continue;
        spr_train_options o = spr_train_options_default();
        o.batch_size = 16, o.threads = 1, o.lazy_adam = variant == 4;
        int64_t rows[16];
        for (int b = 0; b < 5 && !st; b++) {
            for (int i = 0; i < 16; i++) rows[i] = (b * 16 + i) % N_POINTS;
            st = spr_model_train_batch(m, data, rows, 16, &o, NULL);
        }
        CHECK(st == SPR_STATUS_OK && rows_owing(m, 1) > 0, "%s: training: %s (%lld rows owing)", name[variant],
              spr_last_error(), (long long)rows_owing(m, 1));
        for (int settled = 0; settled < 2 && !st; settled++) {
            if (settled) st = spr_model_settle(m, 1);
            if (!st) st = spr_model_save(m, path);
            spr_model *whole = NULL, *bare = NULL, *tabled = NULL;
            const long long at0 = spr_alloc_bytes();
            if (!st) st = spr_model_load(path, &whole);
            const long long at1 = spr_alloc_bytes();
            if (!st) st = spr_model_settle(whole, 1);
            const long long at2 = spr_alloc_bytes();
            if (!st) st = spr_model_load_inference(path, 0, &bare);
            const long long at3 = spr_alloc_bytes();
            /* an owing file's moments are streamed, never all in memory: the load for
             * inference allocates at least the moments less than the whole */
            long long moments = 0;
            for (int l = 0; !st && l < bare->n_layers; l++)
                moments += 2LL * bare->layers[l].rows * bare->layers[l].stride *
                           (l == bare->n_layers - 1 && cfg.bf16_state ? 2 : 4);
            CHECK(st || (at1 - at0) - (at3 - at2) >= moments,
                  "%s (settled %d): inference load took %lld bytes, the whole %lld (moments %lld)", name[variant],
                  settled, at3 - at2, at1 - at0, moments);
            if (!st) st = spr_model_load_inference(path, 1, &tabled);
            CHECK(st == SPR_STATUS_OK, "%s (settled %d): loads: %s", name[variant], settled, spr_last_error());
            if (!st) {
                char what[200];
                snprintf(what, sizeof what, "%s, %s file, for inference", name[variant],
                         settled ? "a settled" : "an owing");
                compare_predictions(whole, bare, data, 0, what);
                compare_predictions(whole, tabled, data, 0, what);
                compare_predictions(whole, tabled, data, 1, what);
                compare_recall(whole, tabled, data, what);
                compare_tables(whole, tabled, what);
                const spr_layer *Lb = &bare->layers[1], *Lt = &tabled->layers[1];
                CHECK(bare->weights_only && tabled->weights_only && !Lb->mw && !Lb->vw && !Lb->mw16 &&
                          !Lb->vw16 && !Lb->gw && !Lt->mw && !Lt->mw16 && !Lt->gw && !bare->layers[0].mw &&
                          !bare->layers[0].gw,
                      "%s: expected no weight moments or gradients", what);
                CHECK(!Lb->tables && !Lb->hasher && Lt->tables && (!Lt->keys) == (variant != 3),
                      "%s: expected tables only when asked, keys only for rank selection (%p %p %p)", what,
                      (const void *)Lb->tables, (const void *)Lt->tables, (const void *)Lt->keys);
                const spr_model_info wi = spr_model_get_info(whole), bi = spr_model_get_info(bare);
                CHECK(bi.parameter_bytes * 2 < wi.parameter_bytes && bi.table_bytes == 0 && bi.steps == wi.steps,
                      "%s: info: expected under half the bytes, no tables, the steps: %lld of %lld, %lld, %lld",
                      what, (long long)bi.parameter_bytes, (long long)wi.parameter_bytes,
                      (long long)bi.table_bytes, (long long)bi.steps);
                /* what needs the optimizer state, or the tables, is refused */
                check_refused(train_batches(bare, data, 1, 0, 1), "inference", "train a model for inference");
                check_refused(spr_model_apply_gradients(bare, &o), "inference", "apply_gradients");
                float in[HIDDEN] = {0}, grad[HIDDEN];
                int64_t indptr[2] = {0, 1};
                int32_t lab[1] = {0};
                check_refused(spr_model_output_train(tabled, in, 1, indptr, lab, &o, grad, NULL), "inference",
                              "output_train");
                unlink(other);
                check_refused(spr_model_save(tabled, other), "inference", "save");
                CHECK(access(other, F_OK) != 0, "%s: a refused save wrote %s", what, other);
                float *p = NULL;
                check_refused(spr_model_param(bare, 1, SPR_PARAM_WEIGHT_ADAM_M, &p, NULL, NULL, NULL), "inference",
                              "param MW");
                check_refused(spr_model_param(bare, 0, SPR_PARAM_WEIGHT_GRAD, &p, NULL, NULL, NULL), "inference",
                              "param GW");
                CHECK(spr_model_param(bare, 0, SPR_PARAM_WEIGHT, &p, NULL, NULL, NULL) == SPR_STATUS_OK && p,
                      "%s: param W: %s", what, spr_last_error());
                check_refused(spr_model_rehash(tabled, 0, 1), "inference", "rehash");
                int32_t ids[N_POINTS * K];
                float sc[N_POINTS * K];
                double r;
                check_refused(spr_model_predict(bare, data, NULL, 0, K, 1, 1, ids, sc), "LSH tables",
                              "sparse inference without tables");
                check_refused(spr_model_sampling_recall(bare, data, NULL, 0, 3, 1, &r), "LSH tables",
                              "recall without tables");
                CHECK(spr_model_settle(bare, 1) == SPR_STATUS_OK, "%s: settle of a model owing nothing: %s", what,
                      spr_last_error());
                /* a damaged moment: refused by name where rows owe steps (their moments are
                 * read to take them), not read where none do */
                size_t len = 0;
                unsigned char *fb = slurp(path, &len);
                size_t mw_at = fb ? find_section(fb, len, (5u << 8) | 1u) : 0;
                if (mw_at) {
                    fb[mw_at + 12 + 1] ^= 0x20;
                    spit(path, fb, len);
                    spr_model *d = NULL;
                    spr_status ds = spr_model_load_inference(path, 0, &d);
                    if (!settled && variant != 4)
                        CHECK(ds == SPR_STATUS_BAD_INPUT && strstr(spr_last_error(), "MW[1]") &&
                                  strstr(spr_last_error(), "checksum mismatch"),
                              "%s: a damaged MW[1] in an owing file: expected it named, got %d (%s)", what, ds,
                              spr_last_error());
                    else
                        CHECK(ds == SPR_STATUS_OK, "%s: a damaged MW[1] where nothing owes: expected ok, got %s",
                              what, spr_last_error());
                    spr_model_free(d);
                }
                CHECK(mw_at > 0, "%s: no MW[1] section found", what);
                free(fb);
            }
            spr_model_free(whole);
            spr_model_free(bare);
            spr_model_free(tabled);
        }
        spr_model_free(m);
    }
    unlink(path);
    unlink(other);
    spr_model *none = NULL;
    check_refused(spr_model_load_inference(NULL, 0, &none), "path", "load_inference(NULL)");
    CHECK(spr_model_load_inference(path, 0, &none) == SPR_STATUS_IO_ERROR && !none,
          "load_inference of a missing file: expected IO_ERROR (%s)", spr_last_error());
}

/* A file written before keys were folded to 4 buckets a neuron (session 12's sparrow:
 * train --train data/tables_k11_session12.txt --hidden 8 --epochs 2 --threads 1
 * --sparsity 0.5 --tables 2 --bits 11 --save ...): its 2 tables of 2^11 buckets over 12
 * neurons now take 2^10. It loads with tables rebuilt from its weights, predicts, trains,
 * and saves a file that loads back with the same tables. */
static void test_tables_before_fold(const char *dir) {
    spr_model *m = NULL, *back = NULL;
    spr_dataset *d = NULL;
    spr_read_options ro = spr_read_options_default();
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    int64_t rows[6] = {0, 1, 2, 3, 4, 5};
    int32_t ids[6 * 3];
    float scores[6 * 3];
    char path[4096];
    snprintf(path, sizeof path, "%s/folded.bin", dir);
    spr_status st = spr_model_load("data/tables_k11_session12.model", &m);
    CHECK(st == SPR_STATUS_OK, "a file with 2^11-bucket tables loads, got %d (%s)", st, spr_last_error());
    if (st) return;
    spr_model_info info = spr_model_get_info(m);
    CHECK(info.hash_k[1] == 11 && info.key_bits[1] == 10, "K 11 over 12 neurons: 10 key bits, got K %d, %d bits",
          info.hash_k[1], info.key_bits[1]);
    /* its tables are the loaded weights' (its TBL section cannot be read into 2^10
     * buckets): what a rehash of the same file gives */
    spr_model *hashed = NULL;
    st = spr_model_load("data/tables_k11_session12.model", &hashed);
    if (!st) st = spr_model_rehash(hashed, 0, 1);
    CHECK(st == SPR_STATUS_OK, "load and rehash: %s", spr_last_error());
    if (!st) compare_tables(m, hashed, "a file of 2^11-bucket tables against its rehash");
    spr_model_free(hashed);
    const char *step = "read its data";
    if (!(st = spr_dataset_read("data/tables_k11_session12.txt", &ro, &d)) &&
        !(st = (step = "predict", spr_model_predict(m, d, NULL, 0, 3, 1, 1, ids, scores))))
        for (int i = 0; i < 6 * 3; i++) CHECK(ids[i] >= -1 && ids[i] < 12, "sparse prediction %d", ids[i]);
    if (!st) st = (step = "train", spr_model_train_batch(m, d, rows, 6, &o, NULL));
    if (!st) st = (step = "save", spr_model_save(m, path));
    if (!st) st = (step = "load again", spr_model_load(path, &back));
    CHECK(st == SPR_STATUS_OK, "a file with 2^11-bucket tables: %s failed: %s", step, spr_last_error());
    if (back) compare_tables(m, back, "a file of 2^11-bucket tables, saved again");
    spr_model_free(back);
    spr_model_free(m);
    spr_dataset_free(d);
    remove(path); /* test_save_failures expects the directory as it was */
}

/* A save through a symbolic link writes the file the link names and keeps the link
 * (the rename once replaced the link with the model and left its target stale);
 * spr_model_save_check judges the file behind the links, without writing. */
/* A save onto an existing model keeps that file's permission bits: one made private
 * (chmod 600, 640) stayed readable by all after a save (the temporary renamed onto it
 * was 0666 less the umask); through a link, the target's. A new file gets the umask's. */
static void test_save_keeps_mode(const char *dir, spr_model *m) {
    char path[4096], link[4096];
    struct stat sb;
    const mode_t was = umask(022);
    snprintf(path, sizeof path, "%s/private.bin", dir);
    unlink(path);
    CHECK(spr_model_save(m, path) == SPR_STATUS_OK, "save: %s", spr_last_error());
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0644, "a new model file: mode %o, expected 644",
          (unsigned)(sb.st_mode & 0777));
    static const mode_t modes[] = {0600, 0640, 0200};
    for (int i = 0; i < 3; i++) {
        CHECK(chmod(path, modes[i]) == 0, "chmod: %s", strerror(errno));
        CHECK(spr_model_save(m, path) == SPR_STATUS_OK, "save onto a %o file: %s", (unsigned)modes[i],
              spr_last_error());
        CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == modes[i],
              "a save onto a %o model file left it %o", (unsigned)modes[i], (unsigned)(sb.st_mode & 0777));
    }
    snprintf(link, sizeof link, "%s/private_link.bin", dir);
    unlink(link);
    CHECK(chmod(path, 0600) == 0 && symlink("private.bin", link) == 0, "set-up: %s", strerror(errno));
    CHECK(spr_model_save(m, link) == SPR_STATUS_OK, "save through a link: %s", spr_last_error());
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600,
          "a save through a link onto a 600 file left it %o", (unsigned)(sb.st_mode & 0777));
    unlink(link);
    /* A file no one may write (chmod a-w: kept on purpose) is not replaced: refused by the
     * check and by the save, the file as it was. */
    CHECK(chmod(path, 0444) == 0, "chmod: %s", strerror(errno));
    struct stat before;
    stat(path, &before);
    spr_status st = spr_model_save_check(path);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "the file is write-protected (mode 444)"),
          "save_check onto a 444 model: expected IO_ERROR naming the mode, got %s: %s",
          spr_status_to_string(st), spr_last_error());
    st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "chmod u+w"),
          "save onto a 444 model: expected IO_ERROR, got %s: %s", spr_status_to_string(st),
          spr_last_error());
    CHECK(stat(path, &sb) == 0 && sb.st_ino == before.st_ino && (sb.st_mode & 0777) == 0444,
          "a refused save onto a 444 model replaced it (mode %o)", (unsigned)(sb.st_mode & 0777));
    chmod(path, 0600);
    unlink(path);
    umask(was);
}

static void test_save_through_links(const char *dir, spr_model *m) {
    char target[4096], link1[4096], link2[4096], sub[4096], p[4096];
    struct stat sb;
    snprintf(target, sizeof target, "%s/target.bin", dir);
    snprintf(link1, sizeof link1, "%s/link1.bin", dir);
    FILE *f = fopen(target, "w");
    if (f) fclose(f);
    CHECK(symlink("target.bin", link1) == 0, "symlink: %s", strerror(errno));
    CHECK(spr_model_save_check(link1) == SPR_STATUS_OK, "save_check through a link: %s", spr_last_error());
    spr_status st = spr_model_save(m, link1);
    CHECK(st == SPR_STATUS_OK, "save through a link: %s", spr_last_error());
    CHECK(lstat(link1, &sb) == 0 && S_ISLNK(sb.st_mode), "save through a link: the link was replaced");
    spr_model *back = NULL;
    CHECK(spr_model_load(target, &back) == SPR_STATUS_OK && back,
          "save through a link: its target holds no model (%s)", spr_last_error());
    if (back) compare_params(m, back, "saved through a link");
    spr_model_free(back);

    /* A chain of two relative links whose last target does not exist yet, in a
     * subdirectory: the file is created there. */
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0755);
    snprintf(link2, sizeof link2, "%s/link2.bin", dir);
    snprintf(p, sizeof p, "%s/sub/hop.bin", dir);
    CHECK(symlink("sub/hop.bin", link2) == 0 && symlink("new.bin", p) == 0, "symlink: %s", strerror(errno));
    st = spr_model_save(m, link2);
    snprintf(p, sizeof p, "%s/sub/new.bin", dir);
    CHECK(st == SPR_STATUS_OK && stat(p, &sb) == 0 && S_ISREG(sb.st_mode),
          "save through two links to a new file: expected %s to be written, got %d (%s)", p, st,
          spr_last_error());
    CHECK(!count_tmp(dir) && !count_tmp(sub), "save through links: a temporary file was left");

    /* A link to a FIFO is refused like the FIFO, which stays; a loop of links is refused. */
    snprintf(p, sizeof p, "%s/fifo", dir);
    CHECK(mkfifo(p, 0644) == 0, "mkfifo %s: %s", p, strerror(errno));
    unlink(link1);
    CHECK(symlink("fifo", link1) == 0, "symlink: %s", strerror(errno));
    st = spr_model_save_check(link1);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "not a regular file (a FIFO"),
          "save_check through a link to a FIFO: expected IO_ERROR, got %d (%s)", st, spr_last_error());
    st = spr_model_save(m, link1);
    CHECK(st == SPR_STATUS_IO_ERROR && lstat(p, &sb) == 0 && S_ISFIFO(sb.st_mode),
          "save through a link to a FIFO: expected IO_ERROR and the FIFO kept, got %d (%s)", st,
          spr_last_error());
    unlink(link1);
    unlink(link2);
    CHECK(symlink("link2.bin", link1) == 0 && symlink("link1.bin", link2) == 0, "symlink: %s", strerror(errno));
    st = spr_model_save(m, link1);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "too many levels of symbolic links"),
          "save through a loop of links: expected IO_ERROR, got %d (%s)", st, spr_last_error());

    /* spr_model_save_check: a missing or read-only directory, a directory. */
    snprintf(p, sizeof p, "%s/no/such/model.bin", dir);
    st = spr_model_save_check(p);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "is missing or not writable"),
          "save_check in a missing directory: expected IO_ERROR, got %d (%s)", st, spr_last_error());
    st = spr_model_save_check(sub);
    CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "not a regular file (a directory"),
          "save_check onto a directory: expected IO_ERROR, got %d (%s)", st, spr_last_error());
    snprintf(p, sizeof p, "%s/fresh.bin", dir);
    CHECK(spr_model_save_check(p) == SPR_STATUS_OK && stat(p, &sb) != 0,
          "save_check of a new file: expected OK and nothing written (%s)", spr_last_error());
    CHECK(spr_model_save_check("") == SPR_STATUS_BAD_INPUT && spr_model_save_check(NULL) == SPR_STATUS_BAD_INPUT,
          "save_check of no path: expected BAD_INPUT");
    /* No descriptor left (ulimit -n): the save would fail, so the check does. The soft
     * limit at the lowest free descriptor leaves none to open. */
    int lowest = open("/dev/null", O_RDONLY);
    struct rlimit nofile, none;
    if (lowest >= 0 && close(lowest) == 0 && getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        none = nofile;
        none.rlim_cur = (rlim_t)lowest;
        if (setrlimit(RLIMIT_NOFILE, &none) == 0) {
            st = spr_model_save_check(p);
            setrlimit(RLIMIT_NOFILE, &nofile);
            CHECK(st == SPR_STATUS_IO_ERROR && strstr(spr_last_error(), "no file descriptor left"),
                  "save_check with no descriptor left: expected IO_ERROR, got %d (%s)", st, spr_last_error());
        }
        CHECK(spr_model_save_check(p) == SPR_STATUS_OK, "save_check after the limit: %s", spr_last_error());
    }
    const char *names[] = {"link1.bin", "link2.bin", "target.bin", "fifo", "sub/new.bin", "sub/hop.bin", "sub"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (remove(p) != 0) CHECK(0, "remove %s: %s", p, strerror(errno));
    }
}

int main(void) {
    uint64_t seed = 20240601;
    const char *env = getenv("SPR_TEST_SEED");
    if (env && *env) seed = strtoull(env, NULL, 10);
    printf("test_checkpoint: seed %llu (set SPR_TEST_SEED to change)\n", (unsigned long long)seed);
    check_enter_tests_dir();
    rng_state = seed;
    /* The reference CRC this test checks the file against: the standard check value. */
    CHECK(crc32_bitwise((const unsigned char *)"123456789", 9) == 0xCBF43926u,
          "crc32(\"123456789\"): expected 0xcbf43926, got 0x%08x",
          crc32_bitwise((const unsigned char *)"123456789", 9));

    char dir[] = "/tmp/spr_test_checkpoint.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.bin", dir);

    spr_dataset *data = make_data();
    spr_model_config cfg = spr_model_config_default(N_FEATURES, N_LABELS);
    cfg.layers[0].size = HIDDEN;
    cfg.layers[1].sparsity = 0.25f;
    cfg.layers[1].hash_l = 4;
    cfg.layers[1].bucket_capacity = 16;
    cfg.init_std = 0.1f;
    cfg.seed = seed;
    /* SimHash at the density of every file before simhash_one_in: the file has no HASH
     * section, the layout every sparrow since version 1 reads (parse_layout) */
    cfg.layers[0].simhash_one_in = cfg.layers[1].simhash_one_in = 3;
    spr_model *m = NULL, *loaded = NULL;
    spr_status st = spr_model_create(&cfg, &m);
    CHECK(st == SPR_STATUS_OK, "spr_model_create: expected ok, got %d (%s)", st, spr_last_error());
    if (st || !data) goto done;
    st = train_batches(m, data, 5, 0, 2);
    CHECK(st == SPR_STATUS_OK, "training: expected ok, got %d (%s)", st, spr_last_error());
    spr_model_set_epoch(m, 3);

    /* Round trip. */
    st = spr_model_save(m, path);
    CHECK(st == SPR_STATUS_OK, "save: expected ok, got %d (%s)", st, spr_last_error());
    char names[8192];
    int entries = list_dir(dir, names, sizeof names);
    CHECK(entries == 1 && strcmp(names, "model.bin ") == 0, "after save: expected only model.bin, got \"%s\"",
          names);
    st = spr_model_load(path, &loaded);
    CHECK(st == SPR_STATUS_OK && loaded, "load: expected ok, got %d (%s)", st, spr_last_error());
    if (st) goto done;
    check_peek(path, loaded, "round trip");
    const long long calls = spr_alloc_calls();
    CHECK(spr_model_verify(path) == SPR_STATUS_OK && spr_alloc_calls() == calls, "verify of a good file: %s",
          spr_last_error());
    compare_config_info(m, loaded);
    compare_state(m, loaded, "round trip");
    /* The tables are the original's, built from the weights of its last rehash (not
     * from the current weights): sparse predictions and the next training steps (with
     * their rehashes) must be the same, not just close. */
    compare_tables(m, loaded, "round trip");
    compare_predictions(m, loaded, data, 0, "dense prediction after load");
    compare_predictions(m, loaded, data, 1, "sparse prediction after load");
    st = train_batches(m, data, 4, 5, 1);
    spr_status st2 = train_batches(loaded, data, 4, 5, 1);
    CHECK(st == SPR_STATUS_OK && st2 == SPR_STATUS_OK, "training after load: expected ok, got %d, %d (%s)", st, st2,
          spr_last_error());
    compare_state(m, loaded, "four more steps on both");
    compare_tables(m, loaded, "four more steps on both");
    compare_config_info(m, loaded);

    test_save_short_of_memory(dir, m);
    test_three_layers(dir, data, seed);
    test_bf16_state(dir, data, cfg);
    test_bf16_weights(dir, data, cfg);
    test_simhash_one_in(dir, data, cfg);
    test_data_note(dir, m, data);
    test_adam_options(dir, data, cfg);
    test_tables_before_fold(dir);
    test_load_inference(dir, data, cfg);
    test_damage(dir, path, m);
    test_save_failures(dir, m, loaded, path);
    test_save_through_links(dir, m);
    test_save_keeps_mode(dir, m);
    test_killed_saves(dir, m);

done:
    spr_model_free(m);
    spr_model_free(loaded);
    spr_dataset_free(data);
    remove_tree(dir);
    struct stat sb;
    CHECK(stat(dir, &sb) != 0, "temporary directory %s was not removed", dir);
    return CHECK_DONE("test_checkpoint");
}

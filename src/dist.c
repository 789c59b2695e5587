/*
 * dist.c: model parallelism without the transport. The collectives (timed, counted,
 * done locally on one rank), the label range of each rank, sharded models: creation,
 * cutting a whole model into a shard, assembling shards into a whole model, and the
 * manifest that ties a sharded checkpoint's files together.
 *
 * Manifest (text, at the path the user gave):
 *   sparrow sharded model 1
 *   ranks N
 *   labels TOTAL
 *   shard R LO HI FILE        (N lines, R = 0..N-1, FILE next to the manifest)
 */
#include "dist.h"

#include "metrics.h"
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_MAGIC "sparrow sharded model 1"

/* ------------------------------------------------------------ communicator */

spr_status spr_dist_self(spr_dist **out) {
    spr_dist *d = spr_alloc(sizeof *d);
    if (!d) return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->timeout = 1e9;
    *out = d;
    return SPR_STATUS_OK;
}

int spr_dist_rank(const spr_dist *d) { return d ? d->rank : 0; }
int spr_dist_size(const spr_dist *d) { return d ? d->size : 1; }

spr_dist_stats spr_dist_get_stats(const spr_dist *d) {
    spr_dist_stats s;
    memset(&s, 0, sizeof s);
    if (d) s = d->stats;
    return s;
}

void spr_dist_finalize(spr_dist *d) {
    if (!d) return;
    if (d->transport) spr_dist_transport_finalize(d);
    free(d->last_shard);
    free(d->last_shard_manifest);
    spr_free(d);
}

/* The failure a test asked for (fail_at), as the transport reports a peer's. */
static spr_status injected(const spr_dist *d, const char *what) {
    if (!d->fail_at || d->stats.collectives != d->fail_at) return SPR_STATUS_OK;
    return spr_fail(SPR_STATUS_IO_ERROR, "%s: collective %lld failed (injected by a test)", what,
                    (long long)d->fail_at);
}

spr_status spr_dist_allreduce(spr_dist *d, float *buf, int64_t n, spr_dist_op op, const char *what) {
    d->stats.collectives++;
    d->stats.bytes += n * (int64_t)sizeof(float);
    spr_status st = injected(d, what);
    if (st) return st;
    if (d->size == 1) return SPR_STATUS_OK;
    double t0 = spr_now();
    st = spr_dist_transport_allreduce(d, buf, n, op, what);
    d->stats.seconds += spr_now() - t0;
    return st;
}

spr_status spr_dist_allgather(spr_dist *d, const void *send, void *recv, int64_t bytes,
                              const char *what) {
    d->stats.collectives++;
    d->stats.bytes += bytes;
    if (d->size == 1) {
        memmove(recv, send, (size_t)bytes);
        return SPR_STATUS_OK;
    }
    double t0 = spr_now();
    spr_status st = spr_dist_transport_allgather(d, send, recv, bytes, what);
    d->stats.seconds += spr_now() - t0;
    return st;
}

spr_status spr_dist_max_int(spr_dist *d, int *value) {
    if (!d || !value) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dist_max_int: dist and value must be given");
    if (*value <= -(1 << 24) || *value >= (1 << 24))
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dist_max_int: %d is not below 2^24 in magnitude", *value);
    float v = (float)*value; /* exact below 2^24 */
    spr_status st = spr_dist_allreduce(d, &v, 1, SPR_DIST_MAX, "agreeing on a value");
    if (!st) *value = (int)v;
    return st;
}

spr_status spr_dist_barrier(spr_dist *d, const char *what) {
    float x = 0.0f;
    return spr_dist_allreduce(d, &x, 1, SPR_DIST_SUM, what);
}

/* The worst (highest) status: see dist.h. */
spr_status spr_dist_agree(spr_dist *d, spr_status mine, const char *what) {
    float v[2] = {(float)mine, mine ? (float)d->rank : -1.0f};
    spr_status st = spr_dist_allreduce(d, v, 2, SPR_DIST_MAX, what);
    if (st) return st;
    if (v[0] <= 0.0f) return SPR_STATUS_OK;
    /* the failed rank's message, to every rank: the one that reports (rank 0, in the
     * tool) tells the cause, not a pointer to a message another rank may never print */
    enum { MSG = 512 };
    char own[MSG], *all = malloc((size_t)d->size * MSG);
    snprintf(own, sizeof own, "%s", mine ? spr_last_error() : "");
    const int from = (int)v[1];
    if (!all) { /* (every rank takes part in the gather, or none: all must agree first) */
        if (mine) return mine;
        return spr_fail((spr_status)(int)v[0], "%s failed on rank %d (out of memory for its message)", what, from);
    }
    st = spr_dist_allgather(d, own, all, MSG, what);
    if (!st && !mine) {
        all[(size_t)from * MSG + MSG - 1] = '\0';
        st = spr_fail((spr_status)(int)v[0], "%s failed on rank %d: %s", what, from, all + (size_t)from * MSG);
    }
    free(all);
    return mine ? mine : st;
}

void spr_dist_shard_range(int64_t total, int rank, int size, int64_t *lo, int64_t *hi) {
    *lo = (int64_t)((__int128)total * rank / size);
    *hi = (int64_t)((__int128)total * (rank + 1) / size);
}

spr_status spr_dist_merge_topk(spr_dist *d, int32_t *ids, float *scores, int64_t n, int k) {
    if (d->size == 1 || n == 0) return SPR_STATUS_OK;
    const int64_t per = n * k;
    int32_t *all_ids = spr_alloc((size_t)(per * d->size) * sizeof(int32_t));
    float *all_scores = spr_alloc((size_t)(per * d->size) * sizeof(float));
    spr_status st = SPR_STATUS_OK;
    if (!all_ids || !all_scores) st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory merging the ranks' top-k");
    if ((st = spr_dist_agree(d, st, "merging the ranks' top-k"))) goto done;
    if ((st = spr_dist_allgather(d, ids, all_ids, per * 4, "gathering the top-k ids"))) goto done;
    if ((st = spr_dist_allgather(d, scores, all_scores, per * 4, "gathering the top-k scores")))
        goto done;
    for (int64_t i = 0; i < n; i++) {
        int filled = 0;
        for (int r = 0; r < d->size; r++)
            for (int q = 0; q < k; q++) {
                int64_t at = r * per + i * k + q;
                if (all_ids[at] >= 0)
                    spr_topk_push(ids + i * k, scores + i * k, k, &filled, all_ids[at], all_scores[at]);
            }
        for (int q = filled; q < k; q++) ids[i * k + q] = -1, scores[i * k + q] = -INFINITY;
    }
done:
    spr_free(all_ids);
    spr_free(all_scores);
    return st;
}

/* ------------------------------------------------------------ shards */

/* The config of the shard of rows [lo, hi) of the output layer. */
static spr_model_config shard_config(const spr_model_config *cfg, int64_t lo, int64_t hi) {
    spr_model_config c = *cfg;
    c.layers[c.n_layers - 1].size = hi - lo;
    return c;
}

static spr_status check_shardable(const spr_model_config *cfg, int size) {
    spr_status st = spr_model_config_check(cfg);
    if (st) return st;
    if (cfg->layers[cfg->n_layers - 1].size < size)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%lld labels cannot be split over %d ranks",
                        (long long)cfg->layers[cfg->n_layers - 1].size, size);
    return SPR_STATUS_OK;
}

/* spr_model_config_memory (o NULL) or spr_model_config_memory_training of the shard. */
static spr_status shard_memory(const spr_model_config *cfg, const spr_train_options *o, int rank,
                               int ranks, int64_t *bytes) {
    if (ranks < 1 || rank < 0 || rank >= ranks)
        return spr_fail(SPR_STATUS_BAD_INPUT, "rank %d of %d", rank, ranks);
    spr_model_config c = *cfg;
    if (ranks > 1) { /* (one rank: any model, shardable or not) */
        spr_status st = check_shardable(cfg, ranks);
        if (st) return st;
        int64_t lo, hi;
        spr_dist_shard_range(cfg->layers[cfg->n_layers - 1].size, rank, ranks, &lo, &hi);
        c = shard_config(cfg, lo, hi);
    }
    return o ? spr_model_config_memory_training_as(&c, o, 1, bytes) : spr_model_config_memory(&c, bytes);
}

spr_status spr_model_config_memory_sharded(const spr_model_config *cfg, int rank, int ranks,
                                           int64_t *bytes) {
    return shard_memory(cfg, NULL, rank, ranks, bytes);
}

spr_status spr_model_config_memory_sharded_training(const spr_model_config *cfg,
                                                    const spr_train_options *o, int rank,
                                                    int ranks, int64_t *bytes) {
    if (!o) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_config_memory_sharded_training: options is NULL");
    return shard_memory(cfg, o, rank, ranks, bytes);
}

spr_status spr_model_create_sharded(const spr_model_config *cfg, spr_dist *d, spr_model **out) {
    if (!cfg || !d || !out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_create_sharded: NULL argument");
    *out = NULL;
    spr_status st = check_shardable(cfg, d->size);
    if (st) return st;
    int64_t lo, hi;
    spr_dist_shard_range(cfg->layers[cfg->n_layers - 1].size, d->rank, d->size, &lo, &hi);
    if ((st = spr_model_create_rows(cfg, lo, hi, out))) return st;
    (*out)->dist = d;
    return SPR_STATUS_OK;
}

/* Copies rows [r0, r0 + n) of every array of src layer l into rows [t0, ...) of dst
 * (same fan-in): weights, Adam moments, last steps, biases and theirs. */
static void copy_rows(spr_layer *dst, int64_t t0, const spr_layer *src, int64_t r0, int64_t n,
                      int is_bias_per_row) {
    const float *from[] = {src->w, src->mw, src->vw};
    float *to[] = {dst->w, dst->mw, dst->vw};
    for (int a = 0; a < 3; a++)
        for (int64_t r = 0; r < n && from[a]; r++)
            memcpy(to[a] + (t0 + r) * dst->stride, from[a] + (r0 + r) * src->stride,
                   (size_t)src->cols * sizeof(float));
    /* BF16 moments and weights (bf16_state, bf16_weights): both models come from one
     * configuration */
    const uint16_t *from16[] = {src->mw16, src->vw16, src->w16};
    uint16_t *to16[] = {dst->mw16, dst->vw16, dst->w16};
    for (int a = 0; a < 3; a++)
        for (int64_t r = 0; r < n && from16[a]; r++)
            memcpy(to16[a] + (t0 + r) * dst->stride, from16[a] + (r0 + r) * src->stride,
                   (size_t)src->cols * sizeof(uint16_t));
    /* each row's last step: what Adam's catch-up owes it (session 26: left 0 before, so
     * a save moved between rank counts owed every row all the steps) */
    memcpy(dst->last_step + t0, src->last_step + r0, (size_t)n * sizeof(int64_t));
    if (is_bias_per_row) {
        memcpy(dst->b + t0, src->b + r0, (size_t)n * sizeof(float));
        memcpy(dst->mb + t0, src->mb + r0, (size_t)n * sizeof(float));
        memcpy(dst->vb + t0, src->vb + r0, (size_t)n * sizeof(float));
    }
}

/* Layers 0 .. n_layers - 2 and the counters of src into dst (same hidden shapes). */
static void copy_replicated(spr_model *dst, const spr_model *src) {
    for (int l = 0; l < src->n_layers - 1; l++) {
        spr_layer *D = &dst->layers[l];
        const spr_layer *S = &src->layers[l];
        copy_rows(D, 0, S, 0, S->rows, 0);
        memcpy(D->b, S->b, (size_t)S->size * sizeof(float));
        memcpy(D->mb, S->mb, (size_t)S->size * sizeof(float));
        memcpy(D->vb, S->vb, (size_t)S->size * sizeof(float));
    }
    dst->steps = src->steps;
    dst->samples = src->samples;
    dst->epoch = src->epoch;
    dst->next_rehash = src->next_rehash;
    dst->rehashes = src->rehashes;
    dst->rebuilds = src->rebuilds;
    dst->note = src->note;
    dst->catch_up = src->catch_up; /* the Adam options the rows' owed steps are taken at */
}

/* ------------------------------------------------------------ manifest */

typedef struct manifest {
    int ranks;
    int64_t labels;
    int64_t *lo, *hi;   /* (ranks) */
    char **files;       /* (ranks) full paths */
} manifest;

static void manifest_free(manifest *mf) {
    for (int r = 0; mf->files && r < mf->ranks; r++) free(mf->files[r]);
    free(mf->files);
    free(mf->lo);
    free(mf->hi);
    memset(mf, 0, sizeof *mf);
}

int spr_dist_is_manifest(const char *path) {
    /* without blocking: a FIFO at path is no manifest (opening it waited for a writer,
     * and `sparrow info --model FIFO` hung) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return 0;
    struct stat sb;
    char head[sizeof MANIFEST_MAGIC];
    ssize_t n = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? read(fd, head, sizeof head - 1) : -1;
    close(fd);
    if (n < 0) return 0;
    head[n] = '\0';
    return strcmp(head, MANIFEST_MAGIC) == 0;
}

/* "dir/of/path/" + name */
static char *sibling(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path + 1) : 0;
    char *p = malloc(dl + strlen(name) + 1);
    if (!p) return NULL;
    memcpy(p, path, dl);
    strcpy(p + dl, name);
    return p;
}

static spr_status manifest_read(const char *path, manifest *mf) {
    memset(mf, 0, sizeof *mf);
    char *real = NULL; /* the shards sit beside the manifest, not beside a link to it */
    spr_status fst = spr_path_follow_links(path, &real);
    if (fst) return fst;
    FILE *f = fopen(path, "r");
    if (!f) {
        free(real);
        return spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
    }
    char line[4096];
    int ln = 0, have = 0;
    long long v;
    spr_status st = SPR_STATUS_OK;
#define BAD(...)                                                                            \
    do {                                                                                    \
        st = spr_fail(SPR_STATUS_BAD_INPUT, __VA_ARGS__);                                   \
        goto done;                                                                          \
    } while (0)
    if (!fgets(line, sizeof line, f) || strncmp(line, MANIFEST_MAGIC, strlen(MANIFEST_MAGIC)) != 0)
        BAD("%s:1: not a sharded model manifest", path);
    ln = 1;
    if (!fgets(line, sizeof line, f) || sscanf(line, "ranks %lld", &v) != 1 || v < 1 || v > 65536)
        BAD("%s:2: expected 'ranks N' with N in [1, 65536]", path);
    mf->ranks = (int)v;
    ln = 2;
    if (!fgets(line, sizeof line, f) || sscanf(line, "labels %lld", &v) != 1 || v < mf->ranks ||
        v > INT32_MAX)
        BAD("%s:3: expected 'labels L' with L in [ranks, 2^31)", path);
    mf->labels = v;
    ln = 3;
    mf->lo = calloc((size_t)mf->ranks, sizeof(int64_t));
    mf->hi = calloc((size_t)mf->ranks, sizeof(int64_t));
    mf->files = calloc((size_t)mf->ranks, sizeof(char *));
    if (!mf->lo || !mf->hi || !mf->files) {
        st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
        goto done;
    }
    for (; have < mf->ranks; have++) {
        long long r, lo, hi;
        char name[1024];
        ln++;
        if (!fgets(line, sizeof line, f) ||
            sscanf(line, "shard %lld %lld %lld %1023s", &r, &lo, &hi, name) != 4)
            BAD("%s:%d: expected 'shard RANK LO HI FILE'", path, ln);
        if (r != have || lo != (have ? mf->hi[have - 1] : 0) || hi <= lo || hi > mf->labels ||
            strchr(name, '/'))
            BAD("%s:%d: shard %lld [%lld, %lld) %s: shards must be 0.. in order, cover the labels "
                "contiguously, and sit next to the manifest",
                path, ln, r, lo, hi, name);
        mf->lo[have] = lo;
        mf->hi[have] = hi;
        if (!(mf->files[have] = sibling(real, name))) {
            st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
            goto done;
        }
    }
    if (mf->hi[mf->ranks - 1] != mf->labels)
        BAD("%s:%d: the shards end at label %lld, not at %lld", path, ln,
            (long long)mf->hi[mf->ranks - 1], (long long)mf->labels);
#undef BAD
done:
    fclose(f);
    free(real);
    if (st) manifest_free(mf);
    return st;
}

/* Whether file (a full path beside the manifest at path) has the name a save gives
 * shard r of n of that manifest: "BASE.rankRofN" or "BASE.ID.rankRofN" (ID 16 hex
 * digits). Only such files are ever removed: a manifest written by hand may name any
 * file beside it. */
static int is_shard_name(const char *path, const char *file, int r, int n) {
    const char *pslash = strrchr(path, '/'), *fslash = strrchr(file, '/');
    const char *base = pslash ? pslash + 1 : path, *name = fslash ? fslash + 1 : file;
    size_t bl = strlen(base);
    if (strncmp(name, base, bl) != 0 || name[bl] != '.') return 0;
    const char *rest = name + bl + 1;
    int hex = 0;
    while (hex < 16 && ((rest[hex] >= '0' && rest[hex] <= '9') || (rest[hex] >= 'a' && rest[hex] <= 'f')))
        hex++;
    if (hex == 16 && rest[16] == '.') rest += 17;
    char want[64];
    snprintf(want, sizeof want, "rank%dof%d", r, n);
    return strcmp(rest, want) == 0;
}

char **spr_dist_manifest_files(const char *path) {
    manifest mf;
    if (!spr_dist_is_manifest(path) || manifest_read(path, &mf) != SPR_STATUS_OK) return NULL;
    char **list = calloc((size_t)mf.ranks + 1, sizeof *list);
    for (int r = 0, k = 0; list && r < mf.ranks; r++) {
        if (!is_shard_name(path, mf.files[r], r, mf.ranks)) continue;
        list[k++] = mf.files[r];
        mf.files[r] = NULL;
    }
    manifest_free(&mf);
    return list;
}

void spr_file_list_free(char **list) {
    for (int i = 0; list && list[i]; i++) free(list[i]);
    free(list);
}

void spr_file_list_remove(char **list, const char *keep) {
    for (int i = 0; list && list[i]; i++) {
        if (!keep || strcmp(list[i], keep) != 0) unlink(list[i]);
        free(list[i]);
    }
    free(list);
}

/* h extended by bytes of p (FNV-1a on 8-byte words, a byte at a time for the tail). */
static uint64_t fingerprint_bytes(uint64_t h, const void *p, size_t bytes) {
    const unsigned char *c = p;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t v;
        memcpy(&v, c + i, 8);
        h = (h ^ v) * 0x100000001b3ull;
    }
    for (; i < bytes; i++) h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* What every rank of a run holds the same, bit for bit: the step counters, the seed and
 * the layers before the output layer (weights, biases, Adam moments), which each rank
 * updates with the same all-reduced gradient. Shards whose fingerprints differ come from
 * different saves: of another run, or of this one at another step (a save that a crash
 * cut short between the shards). */
static uint64_t replicated_fingerprint(const spr_model *m) {
    /* (a model for inference has no weight moments: both sides of a comparison are alike) */
    const int64_t counters[] = {m->steps,    m->samples,  m->epoch,           m->next_rehash,
                                m->rehashes, m->rebuilds, (int64_t)m->cfg.seed};
    uint64_t h = fingerprint_bytes(0xcbf29ce484222325ull, counters, sizeof counters);
    for (int l = 0; l < m->n_layers - 1; l++) {
        const spr_layer *L = &m->layers[l];
        const size_t row = (size_t)L->cols * sizeof(float);
        for (int64_t r = 0; r < L->rows; r++) {
            h = fingerprint_bytes(h, L->w + r * L->stride, row);
            if (L->mw) h = fingerprint_bytes(h, L->mw + r * L->stride, row);
            if (L->vw) h = fingerprint_bytes(h, L->vw + r * L->stride, row);
        }
        const size_t bias = (size_t)L->size * sizeof(float);
        h = fingerprint_bytes(h, L->b, bias);
        h = fingerprint_bytes(h, L->mb, bias);
        h = fingerprint_bytes(h, L->vb, bias);
    }
    return spr_mix64(h);
}

static spr_status mixed_shards(const char *file, const char *reference) {
    return spr_fail(SPR_STATUS_BAD_INPUT,
                    "%s: not from the same save as %s (their step counters or replicated layers "
                    "differ: shards of two saves, or a save cut short between its shards)",
                    file, reference);
}

/* Whether two shards' configurations agree on all but the output layer's size: the
 * features and every hidden layer's size. */
static int same_hidden(const spr_model_config *a, const spr_model_config *b) {
    int same = a->n_layers == b->n_layers && a->n_features == b->n_features;
    for (int l = 0; same && l < a->n_layers - 1; l++) same = a->layers[l].size == b->layers[l].size;
    return same;
}

/* What load_shard_file reads of a shard: all of it, or for inference its weights as
 * stored (rows may owe steps), with or without its tables. */
enum { SHARD_ALL, SHARD_WEIGHTS, SHARD_WEIGHTS_TABLES };

/* Shard r's file (as `what` says), checked against the manifest and against first, a
 * model with shard 0's hidden layers and counters (shard 0's own, or the whole they
 * were copied into). */
static spr_status load_shard_file(const manifest *mf, int r, const spr_model *first, int what,
                                  spr_model **out) {
    spr_status st = what == SHARD_ALL ? spr_checkpoint_load(mf->files[r], out)
                                      : spr_checkpoint_load_owing(mf->files[r], what == SHARD_WEIGHTS_TABLES, out);
    if (st) return st;
    const spr_model *s = *out;
    const int last = s->n_layers - 1;
    const int same = !first || same_hidden(&s->cfg, &first->cfg);
    if (s->layers[last].size != mf->hi[r] - mf->lo[r] || !same) {
        spr_model_free(*out);
        *out = NULL;
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "%s: does not match its manifest (shard %d: %lld labels expected)",
                        mf->files[r], r, (long long)(mf->hi[r] - mf->lo[r]));
    }
    if (first && replicated_fingerprint(s) != replicated_fingerprint(first)) {
        spr_model_free(*out);
        *out = NULL;
        return mixed_shards(mf->files[r], mf->files[0]);
    }
    return SPR_STATUS_OK;
}

/* m->settled_step from its rows' last steps (after a settle: m->steps, unless the file
 * could not say how to take the owed steps). */
static void settled_from_rows(spr_model *m) {
    m->settled_step = m->steps;
    for (int l = 0; l < m->n_layers; l++)
        for (int64_t i = 0; i < m->layers[l].rows; i++)
            if (m->layers[l].last_step[i] < m->settled_step) m->settled_step = m->layers[l].last_step[i];
}

/* The whole model a manifest's shards make up, one shard in memory at a time beside it:
 * all of it (spr_model_load), or for inference (spr_dist_load_manifest_inference) the
 * weights and biases as stored, the tables when asked, then the owed steps taken. */
static spr_status assemble(const char *path, int inference, int tables, spr_model **out) {
    *out = NULL;
    manifest mf;
    spr_status st = manifest_read(path, &mf);
    if (st) return st;
    spr_model *first = NULL, *whole = NULL, *shard = NULL;
    const int what = inference ? SHARD_WEIGHTS : SHARD_ALL;
    if ((st = load_shard_file(&mf, 0, NULL, what, &first))) goto done;
    spr_model_config c = first->cfg;
    const int last = c.n_layers - 1;
    c.layers[last].size = mf.labels;
    if ((st = spr_model_alloc_as(&c, inference, &whole))) goto done;
    copy_replicated(whole, first);
    copy_rows(&whole->layers[last], 0, &first->layers[last], 0, mf.hi[0], 1);
    spr_model_free(first); /* the whole holds its hidden layers and counters now */
    first = NULL;
    for (int r = 1; r < mf.ranks; r++) {
        if ((st = load_shard_file(&mf, r, whole, what, &shard))) goto done;
        copy_rows(&whole->layers[last], mf.lo[r], &shard->layers[last], 0, mf.hi[r] - mf.lo[r], 1);
        spr_model_free(shard);
        shard = NULL;
    }
    /* the tables of the rows as stored (spr_model_load's), then for inference the owed steps */
    if (tables && (st = spr_model_build_tables(whole, 0))) goto done;
    if (inference) {
        for (int r = 0; r < mf.ranks; r++)
            if ((st = spr_checkpoint_settle_rows(mf.files[r], whole, mf.lo[r]))) goto done;
        spr_model_drop_keys(whole);
        settled_from_rows(whole);
    }
    *out = whole;
    whole = NULL;
done:
    spr_model_free(first);
    spr_model_free(whole);
    spr_model_free(shard);
    manifest_free(&mf);
    return st;
}

spr_status spr_dist_load_manifest(const char *path, spr_model **out) {
    return assemble(path, 0, 1, out);
}

spr_status spr_dist_load_manifest_inference(const char *path, int tables, spr_model **out) {
    return assemble(path, 1, tables, out);
}

int spr_model_file_shards(const char *path) {
    if (!path) {
        spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_file_shards: NULL path");
        return -1;
    }
    if (!spr_dist_is_manifest(path)) {
        struct stat sb;
        const int found = stat(path, &sb) == 0;
        if (found && S_ISREG(sb.st_mode)) return 0;
        spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot open: %s", path, found ? "not a regular file" : strerror(errno));
        return -1;
    }
    manifest mf;
    if (manifest_read(path, &mf)) return -1;
    const int ranks = mf.ranks;
    manifest_free(&mf);
    return ranks;
}

spr_status spr_dist_verify_manifest(const char *path) {
    manifest mf;
    spr_status st = manifest_read(path, &mf);
    if (st) return st;
    spr_model_config first, c;
    uint64_t first_h = 0, h = 0;
    for (int r = 0; !st && r < mf.ranks; r++) {
        if ((st = spr_checkpoint_verify(mf.files[r], r ? &c : &first, r ? &h : &first_h))) break;
        const spr_model_config *s = r ? &c : &first;
        if (!same_hidden(s, &first) || s->layers[s->n_layers - 1].size != mf.hi[r] - mf.lo[r])
            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: does not match its manifest (shard %d: %lld labels expected)",
                          mf.files[r], r, (long long)(mf.hi[r] - mf.lo[r]));
        else if (r && h != first_h)
            st = mixed_shards(mf.files[r], mf.files[0]);
    }
    manifest_free(&mf);
    return st;
}

spr_status spr_dist_peek_manifest(const char *path, spr_model_config *cfg, int64_t stat[6],
                                  spr_data_note *note, float adam[4]) {
    manifest mf;
    spr_status st = manifest_read(path, &mf);
    if (st) return st;
    /* Every shard is there (a peek reads shard 0's small sections only: a shard lost in
     * a copy used to show as a whole model until loading) */
    for (int r = 1; !st && r < mf.ranks; r++)
        if (access(mf.files[r], R_OK) != 0)
            st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot open: %s (shard %d of %d named by %s)", mf.files[r],
                          strerror(errno), r, mf.ranks, path);
    if (!st) st = spr_checkpoint_peek(mf.files[0], cfg, stat, note, adam);
    if (!st && cfg->layers[cfg->n_layers - 1].size != mf.hi[0] - mf.lo[0])
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: does not match its manifest (shard 0: %lld labels expected)",
                      mf.files[0], (long long)(mf.hi[0] - mf.lo[0]));
    if (!st) cfg->layers[cfg->n_layers - 1].size = mf.labels;
    manifest_free(&mf);
    return st;
}

/* The fields a rank's share of a model needs once its rows are in: tables hashed from
 * them, its label range, the communicator. */
static spr_status finish_share(spr_model *m, spr_dist *d, int64_t lo, int64_t total) {
    m->label_lo = lo;
    m->label_total = total;
    spr_status st = spr_model_build_tables(m, 0);
    if (!st) m->dist = d;
    return st;
}

/* This rank's share of the model file at path: its output rows only, read through the
 * others (a model that never needs to fit one rank whole). */
static spr_status load_rows_of_file(const char *path, spr_dist *d, spr_model **out) {
    spr_model_config cfg;
    int64_t stat[6], lo, hi;
    spr_data_note note;
    float adam[4];
    spr_status st = spr_checkpoint_peek(path, &cfg, stat, &note, adam);
    if (!st) st = check_shardable(&cfg, d->size);
    if (st) return st;
    const int64_t total = cfg.layers[cfg.n_layers - 1].size;
    spr_dist_shard_range(total, d->rank, d->size, &lo, &hi);
    if ((st = spr_checkpoint_load_rows(path, lo, hi, out))) return st;
    if ((st = finish_share(*out, d, lo, total))) {
        spr_model_free(*out);
        *out = NULL;
    }
    return st;
}

/* This rank's share of the model a manifest of another split names: the rows of each
 * shard that overlap its range, read a shard at a time (never the whole model). */
static spr_status load_rows_of_shards(const manifest *mf, spr_dist *d, spr_model **out) {
    *out = NULL;
    int64_t lo, hi;
    spr_dist_shard_range(mf->labels, d->rank, d->size, &lo, &hi);
    if (mf->labels < d->size)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%lld labels cannot be split over %d ranks",
                        (long long)mf->labels, d->size);
    spr_model *own = NULL, *piece = NULL;
    const char *first = NULL; /* the file own's hidden layers came from */
    spr_status st = SPR_STATUS_OK;
    for (int r = 0; !st && r < mf->ranks; r++) {
        const int64_t a = lo > mf->lo[r] ? lo : mf->lo[r], b = hi < mf->hi[r] ? hi : mf->hi[r];
        if (a >= b) continue;
        /* its size first (a few small reads): a shard of another size is named as such */
        spr_model_config fc;
        int64_t stat[6];
        spr_data_note note;
        float adam[4];
        if ((st = spr_checkpoint_peek(mf->files[r], &fc, stat, &note, adam))) break;
        int same = fc.layers[fc.n_layers - 1].size == mf->hi[r] - mf->lo[r];
        if (same && (st = spr_checkpoint_load_rows(mf->files[r], a - mf->lo[r], b - mf->lo[r], &piece))) break;
        const int last = fc.n_layers - 1;
        if (same && !own) {
            spr_model_config c = piece->cfg;
            c.layers[last].size = hi - lo;
            if (!(st = spr_model_alloc(&c, &own))) copy_replicated(own, piece), first = mf->files[r];
        } else if (same) {
            same = same_hidden(&piece->cfg, &own->cfg);
            if (same && replicated_fingerprint(piece) != replicated_fingerprint(own))
                st = mixed_shards(mf->files[r], first);
        }
        if (!st && !same)
            st = spr_fail(SPR_STATUS_BAD_INPUT,
                          "%s: does not match its manifest (shard %d: %lld labels expected)",
                          mf->files[r], r, (long long)(mf->hi[r] - mf->lo[r]));
        if (!st) copy_rows(&own->layers[last], a - lo, &piece->layers[last], 0, b - a, 1);
        spr_model_free(piece);
        piece = NULL;
    }
    if (!st) st = finish_share(own, d, lo, mf->labels);
    if (st) {
        spr_model_free(own);
        return st;
    }
    *out = own;
    return SPR_STATUS_OK;
}

/* Every rank's share from the same save: the fingerprints of all agree (where one rank
 * failed, or they differ, all fail and *out is freed). mf: the manifest where each
 * rank's file is its shard (its files named in the message), else NULL (path named). */
static spr_status agree_one_save(spr_dist *d, spr_status st, const manifest *mf, const char *path,
                                 spr_model **out) {
    uint64_t mine = st ? 0 : replicated_fingerprint(*out), *all = calloc((size_t)d->size, sizeof *all);
    if (!st && !all) st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
    spr_status ag = spr_dist_agree(d, st, "loading the model");
    if (!ag) ag = spr_dist_allgather(d, &mine, all, sizeof mine, "loading the model");
    for (int r = 1; !ag && r < d->size; r++)
        if (all[r] != all[0])
            ag = mf ? mixed_shards(mf->files[r], mf->files[0])
                    : spr_fail(SPR_STATUS_BAD_INPUT, "%s: the ranks' rows are not of one save (their "
                               "step counters or replicated layers differ)", path);
    free(all);
    if (ag) {
        spr_model_free(*out);
        *out = NULL;
    }
    return ag;
}

/* Whether mf splits its labels as d does (this rank's file is then its shard, its rows
 * [*lo, *hi)). */
static int same_split(const manifest *mf, const spr_dist *d, int64_t *lo, int64_t *hi) {
    spr_dist_shard_range(mf->labels, d->rank, d->size, lo, hi);
    return mf->ranks == d->size && *lo == mf->lo[d->rank] && *hi == mf->hi[d->rank];
}

spr_status spr_model_load_sharded(const char *path, spr_dist *d, spr_model **out) {
    if (!path || !d || !out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_load_sharded: NULL argument");
    *out = NULL;
    if (!spr_dist_is_manifest(path)) /* a whole model's file: this rank's rows of it */
        return agree_one_save(d, load_rows_of_file(path, d, out), NULL, path, out);
    manifest mf;
    spr_status st = manifest_read(path, &mf);
    if (st) /* (a manifest one rank alone cannot read: the others learn it where they agree) */
        return spr_dist_agree(d, st, "loading the model");
    int64_t lo, hi;
    if (same_split(&mf, d, &lo, &hi)) {
        /* the same split: this rank's file is its shard */
        st = load_shard_file(&mf, d->rank, NULL, SHARD_ALL, out);
        if (!st) (*out)->label_lo = lo, (*out)->label_total = mf.labels;
        if (!(st = agree_one_save(d, st, &mf, path, out))) (*out)->dist = d;
    } else { /* another split: this rank's rows of the shards that hold them */
        st = agree_one_save(d, load_rows_of_shards(&mf, d, out), NULL, path, out);
    }
    manifest_free(&mf);
    return st;
}

spr_status spr_model_load_sharded_inference(const char *path, spr_dist *d, int tables,
                                            spr_model **out) {
    if (!path || !d || !out)
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_load_sharded_inference: NULL argument");
    *out = NULL;
    manifest mf;
    spr_status st = SPR_STATUS_OK;
    int64_t lo = 0, hi = 0;
    int own = spr_dist_is_manifest(path) && !(st = manifest_read(path, &mf));
    if (st) return spr_dist_agree(d, st, "loading the model"); /* as spr_model_load_sharded */
    if (own && !(own = same_split(&mf, d, &lo, &hi))) manifest_free(&mf);
    if (!own) { /* another split: the rank's rows with their state, settled, slimmed */
        if ((st = spr_model_load_sharded(path, d, out))) return st;
        if (!(st = spr_model_settle(*out, 0))) {
            spr_model_drop_state(*out);
            if (!tables) spr_model_drop_tables(*out);
        }
        return agree_one_save(d, st, NULL, path, out); /* (everyone agrees on the status) */
    }
    /* the rank's own file: its weights (and the tables it trained with), then its owing
     * rows' steps from its moments, streamed, at its labels (the rounding salts) */
    st = load_shard_file(&mf, d->rank, NULL, tables ? SHARD_WEIGHTS_TABLES : SHARD_WEIGHTS, out);
    if (!st) {
        (*out)->label_lo = lo, (*out)->label_total = mf.labels;
        if (!(st = spr_checkpoint_settle_rows(mf.files[d->rank], *out, 0))) {
            spr_model_drop_keys(*out);
            settled_from_rows(*out);
        }
    }
    if (!(st = agree_one_save(d, st, &mf, path, out))) (*out)->dist = d;
    manifest_free(&mf);
    return st;
}

/* The name of rank r's shard of the save id of the manifest at path: "BASE.ID.rankRofN",
 * ID 16 hex digits (malloc'd, beside path). */
static char *shard_name(const char *path, uint64_t id, int r, int n) {
    const char *slash = strrchr(path, '/');
    char name[1100];
    snprintf(name, sizeof name, "%.1000s.%016llx.rank%dof%d", slash ? slash + 1 : path,
             (unsigned long long)id, r, n);
    return sibling(path, name);
}

/* Rank 0's manifest of the shards of save id beside path, atomically (temporary +
 * rename). */
static spr_status write_manifest(const spr_model *m, const char *path, uint64_t id) {
    const spr_dist *d = m->dist;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.manifest", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot write: %s", tmp, strerror(errno));
    spr_file_keep_mode(fileno(f), path);
    fprintf(f, "%s\nranks %d\nlabels %lld\n", MANIFEST_MAGIC, d->size, (long long)m->label_total);
    int bad = 0;
    for (int r = 0; !bad && r < d->size; r++) {
        int64_t lo, hi;
        spr_dist_shard_range(m->label_total, r, d->size, &lo, &hi);
        char *file = shard_name(path, id, r, d->size);
        if (!file) {
            errno = ENOMEM;
            bad = 1;
            break;
        }
        const char *slash = strrchr(file, '/');
        fprintf(f, "shard %d %lld %lld %s\n", r, (long long)lo, (long long)hi, slash ? slash + 1 : file);
        free(file);
    }
    bad |= ferror(f) | (fflush(f) != 0) | (fsync(fileno(f)) != 0);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        spr_status st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return st;
    }
    return SPR_STATUS_OK;
}

/* A save id no earlier save of this process drew (time, process and a counter mixed). */
static uint64_t new_save_id(void) {
    static _Atomic uint64_t counter;
    uint64_t n = atomic_fetch_add(&counter, 1);
    return spr_mix64((uint64_t)(spr_now() * 1e9) ^ ((uint64_t)getpid() << 40) ^ spr_mix64(n + 1));
}

/* Each rank writes its shard (a complete model of its rows) under a name no earlier save
 * used ("BASE.ID.rankRofN", ID drawn by rank 0 for this save), all agree that every shard
 * is written, then rank 0 writes the manifest naming them, atomically (temporary +
 * rename), and all agree again: the manifest appears only when every shard is on disk,
 * and until it does the previous manifest still names the previous shards, intact (a
 * save cut short between its shards used to leave the old manifest naming a mix of
 * old and new shard files). Then the previous save's shards are removed: by rank 0 those
 * the previous manifest names, and by each rank the shard it wrote in its last save to
 * this path (its own disk, where the ranks do not share one). */
spr_status spr_dist_save_sharded(const spr_model *m, const char *path) {
    spr_dist *d = m->dist;
    if (!path || !*path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_save: path must be given");
    /* Through a symbolic link: the manifest replaces the file it names, the shards beside. */
    char *mpath = NULL, *file = NULL;
    uint64_t *ids = calloc((size_t)d->size, sizeof *ids);
    spr_status st = ids ? spr_path_follow_links(path, &mpath)
                        : spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
    uint64_t mine = d->rank == 0 ? new_save_id() : 0;
    if ((st = spr_dist_agree(d, st, "saving the shards")) ||
        (st = spr_dist_allgather(d, &mine, ids, sizeof mine, "saving the shards"))) {
        free(ids);
        free(mpath);
        return st;
    }
    const uint64_t id = ids[0]; /* rank 0's */
    free(ids);
    char **old = d->rank == 0 ? spr_dist_manifest_files(mpath) : NULL; /* the previous save's */
    if (!(file = shard_name(mpath, id, d->rank, d->size)))
        st = spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
    if (!st && d->rank == 0) st = spr_save_target_check(mpath);
    if (!st) st = spr_checkpoint_save(m, file, mpath); /* a private manifest: private shards */
    if (!(st = spr_dist_agree(d, st, "saving the shards"))) {
        if (d->rank == 0) st = write_manifest(m, mpath, id);
        st = spr_dist_agree(d, st, "writing the manifest");
    }
    if (!st) { /* the new save is whole: the previous one's shards go */
        spr_file_list_remove(old, file);
        old = NULL;
        if (d->last_shard && strcmp(d->last_shard, file) != 0 && d->last_shard_manifest &&
            !strcmp(d->last_shard_manifest, mpath))
            unlink(d->last_shard);
        free(d->last_shard);
        free(d->last_shard_manifest);
        d->last_shard = file;
        d->last_shard_manifest = mpath;
        file = mpath = NULL;
    } else if (file) {
        unlink(file); /* not named by any manifest */
    }
    spr_file_list_free(old);
    free(file);
    free(mpath);
    return st;
}

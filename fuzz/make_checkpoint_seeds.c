/*
 * make_checkpoint_seeds.c: writes the seed corpus of fuzz_checkpoint into a directory.
 *
 *   make_checkpoint_seeds DIR
 *
 * Valid models saved by spr_model_save from tiny models trained for a few steps (so
 * that the optimizer state and the step counters are not zero), then damaged copies:
 * truncated at several offsets, one payload byte flipped (a checksum mismatch), a
 * newer version, a wrong section count, a trailing byte; among the models, one whose
 * L x bucket capacity dwarfs its layer. Generated rather than
 * committed so that the seeds follow the format when it changes. Exits 1 on failure.
 */
#define _GNU_SOURCE
#include "sparrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed(const char *what) {
    fprintf(stderr, "make_checkpoint_seeds: %s: %s\n", what, spr_last_error());
    return 1;
}

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return b;
}

static int spit(const char *dir, const char *name, const unsigned char *b, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

/* Trains the model a few steps on 6 random points, saves it as DIR/NAME.model and
 * writes the damaged copies next to it. */
static int emit(const char *dir, const char *name, spr_model_config cfg) {
    spr_model *m = NULL;
    spr_dataset *ds = NULL;
    if (spr_model_create(&cfg, &m)) return failed("create");
    int64_t n_labels = cfg.layers[cfg.n_layers - 1].size;
    enum { N = 6, F = 3 };
    int64_t fptr[N + 1], lptr[N + 1];
    int32_t fidx[N * F], lab[N];
    float fval[N * F];
    for (int i = 0; i < N; i++) {
        fptr[i] = i * F;
        lptr[i] = i;
        /* Features i, i+7, i+14 mod 20: distinct; sorted below, as a data set wants. */
        for (int j = 0; j < F; j++) {
            fidx[i * F + j] = (int32_t)((i + j * 7) % cfg.n_features);
            fval[i * F + j] = 0.25f * (float)(j + 1);
        }
        for (int a = 1; a < F; a++)
            for (int b = a; b > 0 && fidx[i * F + b - 1] > fidx[i * F + b]; b--) {
                int32_t t = fidx[i * F + b];
                fidx[i * F + b] = fidx[i * F + b - 1];
                fidx[i * F + b - 1] = t;
            }
        lab[i] = (int32_t)((i * 5) % n_labels);
    }
    fptr[N] = N * F;
    lptr[N] = N;
    spr_dataset_view v = {.n_points = N, .n_features = cfg.n_features, .n_labels = n_labels,
                          .feature_indptr = fptr, .feature_indices = fidx, .feature_values = fval,
                          .label_indptr = lptr, .labels = lab};
    if (spr_dataset_wrap(&v, &ds)) return failed("wrap");
    spr_train_options opt = spr_train_options_default();
    opt.batch_size = 3;
    opt.threads = 1;
    opt.lr = 0.01f;
    opt.rehash_first = 2; /* a rehash happens, so the schedule state is not the initial one */
    int64_t rows[N] = {0, 1, 2, 3, 4, 5};
    for (int step = 0; step < 4; step++)
        if (spr_model_train_batch(m, ds, rows + (step % 2) * 3, 3, &opt, NULL)) return failed("train");
    spr_model_set_epoch(m, 2);
    if (strcmp(name, "simhash") != 0) { /* a DATA section in every seed but the first */
        const spr_data_note note = {N, spr_dataset_digest(ds), 1};
        spr_model_set_data_note(m, &note);
    }

    char path[4096], nm[256];
    snprintf(path, sizeof path, "%s/%s.model", dir, name);
    if (spr_model_save(m, path)) return failed("save");
    spr_model_free(m);
    spr_dataset_free(ds);

    size_t n;
    unsigned char *b = slurp(path, &n);
    if (!b || n < 64) {
        fprintf(stderr, "make_checkpoint_seeds: cannot read back %s\n", path);
        return 1;
    }
    int bad = 0;
    size_t cuts[] = {12, 16, 40, 100, n / 2, n - 5, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(nm, sizeof nm, "%s_cut%zu.model", name, cuts[i]);
        bad |= spit(dir, nm, b, cuts[i]);
    }
    unsigned char *d = malloc(n + 1);
    memcpy(d, b, n);
    d[n / 2] ^= 0x40; /* somewhere in the weights: checksum mismatch */
    snprintf(nm, sizeof nm, "%s_flip.model", name);
    bad |= spit(dir, nm, d, n);
    memcpy(d, b, n);
    d[8] = 2; /* version 2 */
    snprintf(nm, sizeof nm, "%s_version.model", name);
    bad |= spit(dir, nm, d, n);
    memcpy(d, b, n);
    d[12]++; /* one section more than there is */
    snprintf(nm, sizeof nm, "%s_count.model", name);
    bad |= spit(dir, nm, d, n);
    memcpy(d, b, n);
    d[n] = 0;
    snprintf(nm, sizeof nm, "%s_trailing.model", name);
    bad |= spit(dir, nm, d, n + 1);
    free(d);
    free(b);
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_checkpoint_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    int bad = 0;

    /* 20 features -> 8 ReLU -> 12 softmax sampled at 0.5 (SimHash, 4 tables). */
    spr_model_config c = spr_model_config_default(20, 12);
    c.layers[0].size = 8;
    c.layers[1].sparsity = 0.5f;
    c.layers[1].hash_l = 4;
    c.layers[1].bucket_capacity = 8;
    c.seed = 1;
    bad |= emit(dir, "simhash", c);
    /* The same with sparser projections: a HASH section of {0, 5} (layer 0 dense keeps 0). */
    c.layers[1].simhash_one_in = 5;
    bad |= emit(dir, "simhash_sparse", c);
    c.layers[1].simhash_one_in = 0;

    /* The same with DWTA, union selection, reservoir buckets. */
    c.layers[1].hash = SPR_HASH_DWTA;
    c.layers[1].select = SPR_SELECT_UNION;
    c.layers[1].bucket_policy = SPR_BUCKET_RESERVOIR;
    bad |= emit(dir, "dwta", c);

    /* 256 tables of buckets of up to 2^20 over 12 neurons: a query's candidates stop at
     * 12, and so does their scratch (L x capacity asked 2 GB a thread before). Its K is
     * 2: wider keys are test_network's (the file saves the tables, 8 bytes a bucket). */
    spr_model_config w = c;
    w.layers[1].hash = SPR_HASH_SIMHASH;
    w.layers[1].hash_l = 256;
    w.layers[1].hash_k = 2;
    w.layers[1].bucket_capacity = 1 << 20;
    bad |= emit(dir, "wide", w);

    /* Two hidden layers, both upper layers sampled, threshold selection. */
    spr_model_config d = spr_model_config_default(20, 12);
    d.n_layers = 3;
    d.layers[0].size = 8;
    d.layers[1] = c.layers[1];
    d.layers[1].size = 6;
    d.layers[1].hash = SPR_HASH_WTA;
    d.layers[1].select = SPR_SELECT_THRESHOLD;
    d.layers[1].select_threshold = 2;
    d.layers[2] = c.layers[1];
    d.layers[2].size = 12;
    d.layers[2].hash = SPR_HASH_DOPH;
    d.seed = 2;
    bad |= emit(dir, "deep", d);

    /* Manifests of a model sharded in two, naming the shard files that fuzz_checkpoint
     * writes next to its input at start-up (12 + 8 labels over the same hidden layer):
     * a valid one, then shards out of order, a gap, a file that is not there, a path. */
    static const struct {
        const char *name, *text;
    } manifests[] = {
        {"manifest.txt", "sparrow sharded model 1\nranks 2\nlabels 20\n"
                         "shard 0 0 12 spr_fuzz_shard0.model\nshard 1 12 20 spr_fuzz_shard1.model\n"},
        {"manifest_order.txt", "sparrow sharded model 1\nranks 2\nlabels 20\n"
                               "shard 1 12 20 spr_fuzz_shard1.model\nshard 0 0 12 spr_fuzz_shard0.model\n"},
        {"manifest_gap.txt", "sparrow sharded model 1\nranks 2\nlabels 21\n"
                             "shard 0 0 12 spr_fuzz_shard0.model\nshard 1 13 21 spr_fuzz_shard1.model\n"},
        {"manifest_sizes.txt", "sparrow sharded model 1\nranks 2\nlabels 20\n"
                               "shard 0 0 8 spr_fuzz_shard0.model\nshard 1 8 20 spr_fuzz_shard1.model\n"},
        {"manifest_missing.txt", "sparrow sharded model 1\nranks 2\nlabels 20\n"
                                 "shard 0 0 12 spr_fuzz_shard0.model\nshard 1 12 20 no_such.model\n"},
        {"manifest_path.txt", "sparrow sharded model 1\nranks 1\nlabels 12\n"
                              "shard 0 0 12 ../tmp/spr_fuzz_shard0.model\n"},
    };
    for (size_t i = 0; i < sizeof manifests / sizeof manifests[0]; i++)
        bad |= spit(dir, manifests[i].name, (const unsigned char *)manifests[i].text,
                    strlen(manifests[i].text));

    /* Dense: nothing sampled, no tables. */
    spr_model_config e = spr_model_config_default(20, 12);
    e.layers[0].size = 8;
    e.layers[1].sparsity = 1.0f;
    bad |= emit(dir, "dense", e);
    return bad;
}

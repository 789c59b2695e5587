/*
 * model.c: a model's life outside the training step: configuration defaults and
 * checks, allocation, initialisation, hash tables, per-thread scratch, accessors.
 */
#include "model.h"

#include "common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SPR_KEY_BITS_FLOOR 10 /* the bound below never folds keys under 2^10 buckets */

/* Key bits of a layer's tables: K codes' bits, folded (hash.c) to at most 2^20 buckets
 * and to at most the first power of two >= 4 buckets a neuron (2^10 at least). More
 * buckets than that stay empty and cost 8 bytes each in every table: before this bound
 * a model file of a few KB with L = 1024 and K = 20 asked for 8 GB of tables (the
 * checkpoint fuzzer found such a file). Folding 2^b keys into 4 size buckets adds a quarter of a random
 * neuron to a bucket on average. */
static int layer_key_bits_max(int64_t size) {
    int b = SPR_KEY_BITS_FLOOR;
    while (b < SPR_KEY_BITS_MAX && ((int64_t)1 << b) < 4 * size) b++;
    return b;
}

/* ------------------------------------------------------------ defaults */

spr_model_config spr_model_config_default(int64_t n_features, int64_t n_labels) {
    spr_model_config c;
    memset(&c, 0, sizeof c);
    c.n_features = n_features;
    c.n_layers = 2;
    for (int l = 0; l < SPR_MAX_LAYERS; l++) {
        c.layers[l].size = 0;
        c.layers[l].sparsity = 1.0f;
        /* SimHash, not SLIDE's DWTA: on a ReLU hidden vector against output weight rows,
         * one SimHash code of the top-scoring neuron agrees with the input's 87% of the
         * time (19% for a random neuron), one DWTA code 17% (12%): DWTA's candidates were
         * barely better than random (top-10 recall 0.09 vs 0.76 on the small preset). */
        c.layers[l].hash = SPR_HASH_SIMHASH;
        c.layers[l].hash_k = 0;
        c.layers[l].hash_l = 50;
        c.layers[l].bucket_capacity = 128;
        c.layers[l].bucket_policy = SPR_BUCKET_FIFO;
        c.layers[l].select = SPR_SELECT_TOPK;
        c.layers[l].select_threshold = 2;
        c.layers[l].random_fraction = 0.5f;
        c.layers[l].simhash_one_in = 0; /* chosen from the fan-in: spr_model_alloc */
    }
    c.layers[0].size = 128;
    c.layers[1].size = n_labels;
    c.layers[1].sparsity = 0.01f;
    c.init_std = 0.1f; /* not SLIDE's 0.01: README, "Initial weights" */
    c.seed = 1;
    return c;
}

spr_train_options spr_train_options_default(void) {
    spr_train_options o;
    memset(&o, 0, sizeof o);
    o.batch_size = 128;
    o.lr = 1e-3f;
    o.beta1 = 0.9f;
    o.beta2 = 0.999f;
    o.eps = 1e-8f;
    o.threads = 0;
    o.dense = 0;
    o.rehash_first = 50;
    o.rehash_growth = 0.1f;
    o.rehash_max = 1000;
    o.rebuild_every = 10;
    return o;
}

const char *spr_hash_family_to_string(spr_hash_family family) {
    switch (family) {
    case SPR_HASH_DWTA: return "dwta";
    case SPR_HASH_SIMHASH: return "simhash";
    case SPR_HASH_WTA: return "wta";
    case SPR_HASH_DOPH: return "doph";
    }
    return "unknown";
}

spr_status spr_hash_family_parse(const char *name, spr_hash_family *out) {
    static const spr_hash_family all[] = {SPR_HASH_DWTA, SPR_HASH_SIMHASH, SPR_HASH_WTA,
                                          SPR_HASH_DOPH};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, spr_hash_family_to_string(all[i])) == 0) {
            *out = all[i];
            return SPR_STATUS_OK;
        }
    return spr_fail(SPR_STATUS_BAD_INPUT, "unknown hash family '%s' (dwta, simhash, wta, doph)",
                    name ? name : "(null)");
}

const char *spr_select_to_string(spr_select select) {
    switch (select) {
    case SPR_SELECT_TOPK: return "topk";
    case SPR_SELECT_UNION: return "union";
    case SPR_SELECT_THRESHOLD: return "threshold";
    case SPR_SELECT_RANK: return "rank";
    }
    return "unknown";
}

spr_status spr_select_parse(const char *name, spr_select *out) {
    static const spr_select all[] = {SPR_SELECT_TOPK, SPR_SELECT_UNION, SPR_SELECT_THRESHOLD,
                                     SPR_SELECT_RANK};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, spr_select_to_string(all[i])) == 0) {
            *out = all[i];
            return SPR_STATUS_OK;
        }
    return spr_fail(SPR_STATUS_BAD_INPUT, "unknown selection '%s' (topk, union, threshold, rank)",
                    name ? name : "(null)");
}

spr_status spr_model_config_check(const spr_model_config *c) {
    if (!c) return spr_fail(SPR_STATUS_BAD_INPUT, "model configuration is NULL");
    if (c->n_features < 1 || c->n_features > INT32_MAX)
        return spr_fail(SPR_STATUS_BAD_INPUT, "n_features must be in [1, 2^31), got %lld",
                        (long long)c->n_features);
    if (c->n_layers < 2 || c->n_layers > SPR_MAX_LAYERS)
        return spr_fail(SPR_STATUS_BAD_INPUT, "n_layers must be in [2, %d], got %d", SPR_MAX_LAYERS,
                        c->n_layers);
    if (!(c->init_std >= 0.0f && c->init_std < 10.0f))
        return spr_fail(SPR_STATUS_BAD_INPUT, "init_std must be in [0, 10), got %g",
                        (double)c->init_std);
    if (c->bf16_state != 0 && c->bf16_state != 1)
        return spr_fail(SPR_STATUS_BAD_INPUT, "bf16_state must be 0 or 1, got %d", c->bf16_state);
    if (c->bf16_weights != 0 && c->bf16_weights != 1)
        return spr_fail(SPR_STATUS_BAD_INPUT, "bf16_weights must be 0 or 1, got %d", c->bf16_weights);
    if (c->bf16_weights && !c->bf16_state)
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "bf16_weights needs bf16_state (the weights' Adam moments in BF16 too)");
    /* a sampled layer below the output hands it a sparse input: BF16 rows have no sparse dot */
    if (c->bf16_weights && c->n_layers > 2 && c->layers[c->n_layers - 2].sparsity < 1.0f)
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "bf16_weights needs the last hidden layer dense (sparsity 1, got %g)",
                        (double)c->layers[c->n_layers - 2].sparsity);
    for (int l = 0; l < c->n_layers; l++) {
        const spr_layer_config *lc = &c->layers[l];
        if (lc->size < 1 || lc->size > INT32_MAX)
            return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: size must be in [1, 2^31), got %lld", l,
                            (long long)lc->size);
        if (!(lc->sparsity > 0.0f && lc->sparsity <= 1.0f))
            return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: sparsity must be in (0, 1], got %g", l,
                            (double)lc->sparsity);
        /* every layer, sampled or not: the value is saved with the model */
        if (lc->simhash_one_in < 0 || lc->simhash_one_in > SPR_SIMHASH_ONE_IN_MAX)
            return spr_fail(SPR_STATUS_BAD_INPUT,
                            "layer %d: simhash_one_in must be in [0, %d] (0: chosen from the fan-in), got %d",
                            l, SPR_SIMHASH_ONE_IN_MAX, lc->simhash_one_in);
        if (l == 0 && lc->sparsity < 1.0f)
            return spr_fail(SPR_STATUS_BAD_INPUT,
                            "layer 0 reads the sparse input and cannot be sampled (sparsity %g)",
                            (double)lc->sparsity);
        if (lc->sparsity < 1.0f) {
            if ((int)lc->hash < 0 || lc->hash > SPR_HASH_DOPH)
                return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: unknown hash family %d", l,
                                (int)lc->hash);
            if (lc->hash_l < 1 || lc->hash_l > 1024)
                return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: tables (L) must be in [1, 1024], got %d",
                                l, lc->hash_l);
            int bits = spr_hash_code_bits(lc->hash);
            if (lc->hash_k < 0 || lc->hash_k > 64 / bits) /* (no product: K may be anything) */
                return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: K must be in [0, %d] for %s, got %d", l,
                                64 / bits, spr_hash_family_to_string(lc->hash), lc->hash_k);
            if (lc->bucket_capacity < 1 || lc->bucket_capacity > (1 << 20))
                return spr_fail(SPR_STATUS_BAD_INPUT,
                                "layer %d: bucket capacity must be in [1, 2^20], got %d", l,
                                lc->bucket_capacity);
            if (!(lc->random_fraction >= 0.0f && lc->random_fraction <= 1.0f))
                return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: random fraction must be in [0, 1], got %g",
                                l, (double)lc->random_fraction);
            if ((int)lc->select < 0 || lc->select > SPR_SELECT_RANK)
                return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: unknown selection %d", l,
                                (int)lc->select);
            if (lc->select == SPR_SELECT_THRESHOLD &&
                (lc->select_threshold < 1 || lc->select_threshold > lc->hash_l))
                return spr_fail(SPR_STATUS_BAD_INPUT,
                                "layer %d: selection threshold must be in [1, L = %d], got %d", l,
                                lc->hash_l, lc->select_threshold);
            /* rank scores (codes shared, at most K x L) live in the 16-bit counts */
            if (lc->select == SPR_SELECT_RANK && (int64_t)lc->hash_k * lc->hash_l > 60000)
                return spr_fail(SPR_STATUS_BAD_INPUT,
                                "layer %d: selection rank needs K x L <= 60000, got %d x %d", l,
                                lc->hash_k, lc->hash_l);
            if (lc->bucket_policy != SPR_BUCKET_FIFO && lc->bucket_policy != SPR_BUCKET_RESERVOIR)
                return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: unknown bucket policy %d", l,
                                (int)lc->bucket_policy);
        }
    }
    return SPR_STATUS_OK;
}

/* K when the configuration leaves it to us. Top-k selection ranks the candidates by
 * the number of tables that returned them, and the ranking needs many candidates: about
 * 32 x the target over the L buckets, so 2^(K bits) = L / (32 sparsity). Buckets must
 * also stay under half their capacity on average (2^(K bits) >= 2 size / capacity), or
 * the rebuild drops neurons. Measured on the small preset at 1% (SimHash): K = 7 (this
 * rule) gives a top-10 recall of 0.44 and P@1 0.720; K = 12 (buckets of target / L)
 * 0.709 with a recall of 0.24. The rule assumes keys spread evenly over the buckets,
 * which SimHash's do; WTA, DWTA and DOPH codes of dense vectors pile into a few buckets
 * (the argmax of a bin, the minimum of a set, favour the same coordinates), so those
 * families take one code more than the rule: on the small preset at 1%, 5 epochs
 * (dense 0.687), DWTA K = 2 -> 3 raised P@1 0.658 -> 0.667, WTA 0.659 -> 0.669, DOPH
 * 0.608 -> 0.671 (K = 4: 0.669). */
static int auto_hash_k(const spr_layer_config *lc) {
    int bits = spr_hash_code_bits(lc->hash);
    double buckets = (double)lc->hash_l / (32.0 * (double)lc->sparsity);
    double min_buckets = 2.0 * (double)lc->size / (double)lc->bucket_capacity;
    if (buckets < min_buckets) buckets = min_buckets;
    int k = (int)lround(log2(buckets) / bits);
    if (lc->hash != SPR_HASH_SIMHASH) k++;
    if (k < 1) k = 1;
    if (k * bits > 64) k = 64 / bits;
    return k;
}

/* A sampled layer's effective K (*k) and its tables' key bits: K codes' bits, folded to
 * layer_key_bits_max, as spr_hasher_create makes them. */
static int sampled_key_bits(const spr_layer_config *lc, int *k) {
    *k = lc->hash_k > 0 ? lc->hash_k : auto_hash_k(lc);
    const int bits = *k * spr_hash_code_bits(lc->hash);
    return bits > layer_key_bits_max(lc->size) ? layer_key_bits_max(lc->size) : bits;
}

spr_status spr_model_config_memory(const spr_model_config *c, int64_t *bytes) {
    if (!bytes) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_config_memory: bytes is NULL");
    spr_status st = spr_model_config_check(c);
    if (st) return st;
    double total = 0.0; /* double: a config may describe more than 2^63 bytes */
    int64_t fan_in = c->n_features;
    for (int l = 0; l < c->n_layers; l++) {
        const spr_layer_config *lc = &c->layers[l];
        double rows = (double)(l == 0 ? fan_in : lc->size);
        double stride = (double)spr_row_stride(l == 0 ? lc->size : fan_in);
        /* w (4 bytes, 2 as BF16), gw (4), and mw, vw (4, or 2 as BF16) */
        const int out = l == c->n_layers - 1;
        const double moment_bytes = c->bf16_state && out ? 2.0 : 4.0;
        const double weight_bytes = c->bf16_weights && out ? 2.0 : 4.0;
        total += rows * stride * (weight_bytes + 4.0 + 2.0 * moment_bytes);
        total += 4.0 * (double)spr_row_stride(lc->size) * 4.0;   /* b, gb, mb, vb */
        total += rows * (1.0 + 4.0 + 8.0) + 3.0 * SPR_ALIGN;     /* touched flags, list, last steps */
        if (l > 0 && lc->sparsity < 1.0f) {
            int k;
            const int bits = sampled_key_bits(lc, &k);
            double buckets = (double)((int64_t)1 << bits);
            total += (double)lc->hash_l * (2.0 * buckets + 1.0 + (double)lc->size) * 4.0;
            total += (double)lc->size * (double)lc->hash_l * 4.0; /* rehash keys */
            total += (double)spr_hasher_bytes(lc->hash, fan_in, k, lc->hash_l);
        }
        fan_in = lc->size;
    }
    total += (double)sizeof(spr_model); /* with the optimizer's catch-up tables */
    if (total > 9.2e18) return spr_fail(SPR_STATUS_BAD_INPUT, "model of %.3g bytes", total);
    *bytes = (int64_t)total;
    return SPR_STATUS_OK;
}

/* ------------------------------------------------------------ allocation */

/* bf16: the weights' Adam moments as BF16 (mw16, vw16) instead of float (mw, vw);
 * bf16w: the weights too (w16 instead of w). */
/* state 0: no weight gradient and no weight moments (a model loaded for inference). */
static spr_status layer_alloc(spr_layer *L, const spr_layer_config *lc, int index, int64_t fan_in,
                              int bf16, int bf16w, int last, int state) {
    L->cfg = *lc;
    L->size = lc->size;
    L->fan_in = fan_in;
    L->rows = index == 0 ? fan_in : lc->size;
    L->cols = index == 0 ? lc->size : fan_in;
    L->stride = spr_row_stride(L->cols);
    size_t wbytes = (size_t)L->rows * (size_t)L->stride * sizeof(float);
    /* the moment arrays: rows start 32-byte aligned as BF16 (stride is a multiple of 16) */
    size_t mbytes = !state ? 0 : bf16 ? wbytes / 2 : wbytes;
    size_t w16bytes = bf16w ? wbytes / 2 : 0, wfbytes = bf16w ? 0 : wbytes;
    size_t bbytes = (size_t)spr_row_stride(L->size) * sizeof(float);
    size_t tbytes = ((size_t)L->rows + SPR_ALIGN) / SPR_ALIGN * SPR_ALIGN;
    size_t lbytes = ((size_t)L->rows * sizeof(int32_t) + SPR_ALIGN) / SPR_ALIGN * SPR_ALIGN;
    size_t sbytes = ((size_t)L->rows * sizeof(int64_t) + SPR_ALIGN) / SPR_ALIGN * SPR_ALIGN;
    /* A sampled output layer's gradient rows: reserved, not touched (see gw_reserved). */
    const int lazy_gw = state && last && index > 0 && lc->sparsity < 1.0f;
    size_t gwbytes = lazy_gw || !state ? 0 : wbytes;
    size_t total = wfbytes + w16bytes + gwbytes + 2 * mbytes + 4 * bbytes + tbytes + lbytes + sbytes;
    char *p = spr_alloc(total);
    if (!p)
        return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory: layer %d needs %.1f MB", index,
                        (double)total / 1e6);
    L->block = p;
    if (bf16w) L->w16 = (uint16_t *)p, p += w16bytes;
    else L->w = (float *)p, p += wfbytes;
    if (lazy_gw) {
        L->gw = spr_alloc_reserved(wbytes);
        if (!L->gw)
            return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory: layer %d's gradient needs %.1f MB",
                            index, (double)wbytes / 1e6);
        L->gw_reserved = wbytes;
    } else if (state) {
        L->gw = (float *)p, p += gwbytes;
    }
    if (!state) {
        /* no moments: mw, vw, mw16, vw16 stay NULL */
    } else if (bf16) {
        L->mw16 = (uint16_t *)p, p += mbytes;
        L->vw16 = (uint16_t *)p, p += mbytes;
    } else {
        L->mw = (float *)p, p += mbytes;
        L->vw = (float *)p, p += mbytes;
    }
    L->b = (float *)p, p += bbytes;
    L->gb = (float *)p, p += bbytes;
    L->mb = (float *)p, p += bbytes;
    L->vb = (float *)p, p += bbytes;
    L->touched = (atomic_uchar *)p, p += tbytes;
    L->last_step = (int64_t *)p, p += sbytes;
    L->touched_list = (int32_t *)p;
    atomic_init(&L->n_touched, 0);
    L->sampled = index > 0 && lc->sparsity < 1.0f;
    /* ceil(sparsity x size), but 0.05f x 200 = 10.0000001 must give 10, not 11 */
    double want = (double)lc->sparsity * (double)lc->size;
    L->target_active = fabs(want - nearbyint(want)) < 1e-3 ? (int64_t)nearbyint(want)
                                                          : (int64_t)ceil(want);
    if (L->target_active < 1) L->target_active = 1;
    if (L->target_active > L->size) L->target_active = L->size;
    /* Only a sampled layer's sampling fields are checked (and used): a dense layer may
     * carry anything there, as a checkpoint fuzzer showed (random_fraction 1e39). */
    L->random_reserve =
        L->sampled ? (int64_t)((double)lc->random_fraction * (double)L->target_active) : 0;
    L->hash_k = L->sampled ? (lc->hash_k > 0 ? lc->hash_k : auto_hash_k(lc)) : 0;
    return SPR_STATUS_OK;
}

void spr_model_drop_state(spr_model *m) {
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        if (L->gw_reserved) spr_free_reserved(L->gw, L->gw_reserved);
        /* the block holds w (or w16), then gw (unless reserved), mw, vw, then b */
        const char *w_end = L->w16 ? (const char *)(L->w16 + L->rows * L->stride)
                                   : (const char *)(L->w + L->rows * L->stride);
        spr_pages_release((void *)w_end, (size_t)((const char *)L->b - w_end));
        L->gw = L->mw = L->vw = NULL;
        L->mw16 = L->vw16 = NULL;
        L->gw_reserved = 0, L->gw_ready = 0;
    }
    spr_model_drop_keys(m);
    spr_train_free(m); /* a training run's scratch */
    m->weights_only = 1;
}

void spr_model_drop_keys(spr_model *m) {
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        if (L->cfg.select != SPR_SELECT_RANK) spr_free(L->keys), L->keys = NULL; /* a rehash's */
    }
    spr_free(m->rehash_block);
    m->rehash_block = NULL, m->rehash_threads = 0, m->rehash_work_len = m->rehash_conv_len = 0;
}

void spr_model_drop_tables(spr_model *m) {
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        spr_hasher_free(L->hasher);
        spr_lsh_free(L->tables);
        spr_free(L->keys);
        L->hasher = NULL, L->tables = NULL, L->keys = NULL;
    }
    spr_free(m->rehash_block);
    m->rehash_block = NULL, m->rehash_threads = 0, m->rehash_work_len = m->rehash_conv_len = 0;
}

spr_status spr_model_check_state(const spr_model *m, const char *what) {
    if (m && m->weights_only)
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "%s: the model was loaded for inference (spr_model_load_inference): it "
                        "has no optimizer state; load it with spr_model_load to train or save it",
                        what);
    if (m && m->torn)
        return spr_fail(SPR_STATUS_IO_ERROR,
                        "%s: a collective failed inside this model's last step, after its output "
                        "rows had taken the step and before its hidden layers had: the model is "
                        "between two steps; load its last save",
                        what);
    return SPR_STATUS_OK;
}

int spr_model_tables_missing(const spr_model *m) {
    for (int l = 1; l < m->n_layers; l++)
        if (m->layers[l].sampled && !m->layers[l].tables) return 1;
    return 0;
}

static void layer_free(spr_layer *L) {
    spr_free(L->block);
    if (L->gw_reserved) spr_free_reserved(L->gw, L->gw_reserved);
    spr_hasher_free(L->hasher);
    spr_lsh_free(L->tables);
    spr_free(L->keys);
    memset(L, 0, sizeof *L);
}

static void scratch_free(spr_model *m) {
    for (int t = 0; t < m->n_scratch; t++) spr_free(m->scratch[t].block);
    spr_free(m->scratch);
    spr_free(m->sample_loss);
    spr_free(m->sample_active);
    if (m->bb) spr_free(m->bb->block);
    spr_free(m->bb);
    spr_free(m->pool_block);
    m->pool_block = NULL;
    for (int l = 0; l < m->n_layers; l++) {
        m->layers[l].pool_ids = m->layers[l].pool_tmp = NULL;
        m->layers[l].n_pool = 0;
    }
    m->bb = NULL;
    m->scratch = NULL;
    m->sample_loss = NULL;
    m->sample_active = NULL;
    m->n_scratch = 0;
    m->scratch_batch = 0;
    m->scratch_pool = 0;
}

/* SimHash's projection density when the configuration leaves it to us (simhash_one_in
 * 0): one entry in s non-zero, s = sqrt(fan-in) (Li, Hastie and Church, "Very sparse
 * random projections", 2006), at least 3 (the density every model had before the
 * option). Measured at fan-in 128 (s = 11 against 3; doc/performance-history.md,
 * "Session 8"): the same P@1 and sampling recall on the small preset (3 seeds) and on
 * amazon670k (2 seeds), and a 2M-label rehash ~40% shorter. A model keeps the value it
 * was made with (saved in its file), so a later change of this rule changes new models
 * only. */
static int auto_simhash_one_in(int64_t fan_in) {
    long s = lround(sqrt((double)fan_in));
    return s < 3 ? 3 : s > SPR_SIMHASH_ONE_IN_MAX ? SPR_SIMHASH_ONE_IN_MAX : (int)s;
}

spr_status spr_model_alloc(const spr_model_config *cfg, spr_model **out) {
    return spr_model_alloc_as(cfg, 0, out);
}

spr_status spr_model_alloc_as(const spr_model_config *cfg, int weights_only, spr_model **out) {
    *out = NULL;
    spr_status st = spr_model_config_check(cfg);
    if (st) return st;
    spr_threads_start(0); /* before the model's memory (sparrow.h) */
    spr_model *m = spr_alloc(sizeof *m);
    if (!m) return SPR_STATUS_NO_MEMORY;
    m->cfg = *cfg;
    m->n_layers = cfg->n_layers;
    int64_t fan_in = cfg->n_features;
    for (int l = 0; l < m->n_layers; l++) {
        const int out = l == cfg->n_layers - 1;
        spr_layer_config *lc = &m->cfg.layers[l];
        /* a layer with hash functions gets its density now (a dense one keeps its 0) */
        if (lc->simhash_one_in == 0 && l > 0 && lc->sparsity < 1.0f)
            lc->simhash_one_in = auto_simhash_one_in(fan_in);
        st = layer_alloc(&m->layers[l], lc, l, fan_in, cfg->bf16_state && out,
                         cfg->bf16_weights && out, out, !weights_only);
        if (st) goto fail;
        fan_in = cfg->layers[l].size;
    }
    m->label_total = cfg->layers[cfg->n_layers - 1].size;
    m->weights_only = weights_only;
    *out = m;
    return SPR_STATUS_OK;
fail:
    spr_model_free(m);
    return st;
}

void spr_model_free(spr_model *m) {
    if (!m) return;
    scratch_free(m);
    spr_free(m->rehash_block);
    spr_train_free(m);
    for (int l = 0; l < m->n_layers; l++) layer_free(&m->layers[l]);
    spr_free(m);
}

/* ------------------------------------------------------------ hash tables */

uint64_t spr_model_hash_seed(const spr_model *m, int layer, int64_t rebuilds) {
    return spr_mix64(spr_mix64(m->cfg.seed ^ 0x5bd1e995ull) + (uint64_t)layer * 0x100000001b3ull +
                     (uint64_t)rebuilds * 0x9E3779B97F4A7C15ull);
}

/* The keys of rows [j, j + n) of a layer with BF16 weights: widened (exactly) into tmp,
 * cap floats of scratch (at least one row's stride), as many rows at a time as fit, then
 * hashed as float rows are: the keys of the float rows of the same values. keys: row j's
 * keys, table by table (L->keys + j). */
static void keys_rows_bf16(const spr_layer *L, int64_t j, int64_t n, uint32_t *keys, int32_t *work,
                           int64_t work_len, float *tmp, int64_t cap) {
    const int64_t per = cap / L->stride;
    for (int64_t r = 0; r < n; r += per) {
        const int64_t k = n - r < per ? n - r : per;
        for (int64_t i = 0; i < k; i++)
            for (int64_t c = 0; c < L->cols; c++)
                tmp[i * L->stride + c] = spr_f32_from_bf16(L->w16[(j + r + i) * L->stride + c]);
        spr_hasher_keys_rows(L->hasher, tmp, k, L->stride, keys + r, 1, L->size, work, work_len);
    }
}

/* layer_rehash's scratch per thread: SimHash's work for a block of rows (int32) and, for
 * BF16 weights, rows widened to floats; 0 where its stack buffers (below) hold them. */
enum { REHASH_WORK_SMALL = 8192, REHASH_CONV_SMALL = 4096 };
static void rehash_scratch_len(const spr_layer *L, int64_t *work_len, int64_t *conv_len) {
    const int64_t work = spr_hasher_rows_work_len(L->hasher);
    *work_len = work > REHASH_WORK_SMALL ? work : 0;
    *conv_len = L->w16 && L->stride > REHASH_CONV_SMALL ? L->stride : 0;
}

/* Makes m->rehash_block hold layer_rehash's scratch for every sampled layer that has its
 * hash functions, on `threads` threads: the one allocation a rehash can need, made before
 * anything changes (and by spr_model_prepare before training, so that a rehash or rebuild
 * in a training step allocates nothing and cannot fail). */
static spr_status rehash_scratch_reserve(spr_model *m, int threads) {
    int64_t wl = 0, cl = 0;
    for (int l = 1; l < m->n_layers; l++) {
        const spr_layer *L = &m->layers[l];
        if (!L->sampled || !L->hasher) continue;
        int64_t w, c;
        rehash_scratch_len(L, &w, &c);
        if (w > wl) wl = w;
        if (c > cl) cl = c;
    }
    if ((!wl && !cl) || (m->rehash_block && threads <= m->rehash_threads &&
                         wl <= m->rehash_work_len && cl <= m->rehash_conv_len))
        return SPR_STATUS_OK;
    if (m->rehash_threads > threads) threads = m->rehash_threads;
    if (m->rehash_work_len > wl) wl = m->rehash_work_len;
    if (m->rehash_conv_len > cl) cl = m->rehash_conv_len;
    const size_t bytes = (size_t)threads * (size_t)(wl + cl) * 4;
    void *p = spr_alloc(bytes);
    if (!p)
        return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory for the rehash scratch (%zu bytes)",
                        bytes);
    spr_free(m->rehash_block);
    m->rehash_block = p;
    m->rehash_threads = threads;
    m->rehash_work_len = wl;
    m->rehash_conv_len = cl;
    return SPR_STATUS_OK;
}

/* Hashes every neuron's weight row and rebuilds the tables: O(size x hash cost),
 * parallel over blocks of neurons (spr_hasher_keys_rows: SimHash reads its projections
 * once per block of rows), then over tables. Scratch: 32 KB + 16 KB on each thread's
 * stack where that holds SimHash's block of rows and a widened BF16 row, else the
 * model's rehash_block, which the caller reserved (rehash_scratch_reserve). Cannot fail. */
static void layer_rehash(spr_model *m, spr_layer *L, int index, int threads) {
    const int64_t chunk_rows = 240; /* neurons per task: 15 blocks of 16 rows (10 of 24) */
    int64_t heap_work, heap_conv;
    rehash_scratch_len(L, &heap_work, &heap_conv);
    /* (threads, work_len) int32 and (threads, conv_len) floats where the stack's are too small */
    int32_t *big = heap_work ? (int32_t *)m->rehash_block : NULL;
    float *conv_big = heap_conv ? (float *)((char *)m->rehash_block + (size_t)m->rehash_threads *
                                                                          (size_t)m->rehash_work_len * 4)
                                : NULL;
    const int64_t work_len = heap_work ? m->rehash_work_len : REHASH_WORK_SMALL;
    const int64_t conv_len = heap_conv ? m->rehash_conv_len : REHASH_CONV_SMALL;
#pragma omp parallel num_threads(threads)
    {
        int32_t work_small[REHASH_WORK_SMALL];
        float conv_small[REHASH_CONV_SMALL];
        const int t = omp_get_thread_num();
        int32_t *work = big ? big + (int64_t)t * work_len : work_small;
        float *conv = conv_big ? conv_big + (int64_t)t * conv_len : conv_small;
#pragma omp for schedule(dynamic, 16)
        for (int64_t j = 0; j < L->size; j += chunk_rows) {
            const int64_t n = L->size - j < chunk_rows ? L->size - j : chunk_rows;
            if (L->w16)
                keys_rows_bf16(L, j, n, L->keys + j, work, work_len, conv, conv_len);
            else
                spr_hasher_keys_rows(L->hasher, L->w + j * L->stride, n, L->stride, L->keys + j,
                                     1, L->size, work, work_len);
        }
    }
    spr_lsh_build(L->tables, L->keys, 1, L->size,
                  spr_model_hash_seed(m, index, m->rehashes) ^ 0xabcdefull, threads);
    /* rank selection reads every neuron's keys: exactly what the tables hold */
    if (L->cfg.select == SPR_SELECT_RANK) spr_lsh_item_keys(L->tables, L->keys, threads);
}

/* Each neuron's L keys (L->keys): what a rehash hashes into. */
static spr_status layer_keys_alloc(spr_layer *L, int l) {
    if (!(L->keys = spr_alloc((size_t)L->size * (size_t)L->cfg.hash_l * sizeof(uint32_t))))
        return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory for the hash keys of layer %d", l);
    return SPR_STATUS_OK;
}

/* (A rebuild comes through spr_model_rehash, which has reserved the scratch: it cannot
 * fail here.) */
spr_status spr_model_build_tables(spr_model *m, int threads) {
    return spr_model_build_tables_restoring(m, threads, 0);
}

spr_status spr_model_build_tables_restoring(spr_model *m, int threads, unsigned restored) {
    threads = spr_threads(threads);
    spr_status st = SPR_STATUS_OK;
    for (int l = 1; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        if (!L->sampled) continue;
        const uint64_t seed = spr_model_hash_seed(m, l, m->rebuilds);
        if (L->hasher) { /* a rebuild: new functions in the same shapes, nothing allocated */
            spr_hasher_redraw(L->hasher, seed);
        } else { /* the first build (a model made or read): on failure the caller frees it */
            st = spr_hasher_create(L->cfg.hash, L->fan_in, L->hash_k, L->cfg.hash_l,
                                   layer_key_bits_max(L->size), L->cfg.simhash_one_in, seed,
                                   &L->hasher);
            if (st) return st;
            st = spr_lsh_create(L->cfg.hash_l, spr_hasher_key_bits(L->hasher), L->size,
                                L->cfg.bucket_capacity, L->cfg.bucket_policy, &L->tables);
            if (st) return st;
            /* the keys are a rehash's scratch, which a model for inference given its tables
             * never makes; rank selection reads what the tables hold */
            if ((!m->weights_only || !(restored >> l & 1u) || L->cfg.select == SPR_SELECT_RANK) &&
                (st = layer_keys_alloc(L, l)))
                return st;
            if ((st = rehash_scratch_reserve(m, threads))) return st;
        }
        if (!(restored >> l & 1u)) layer_rehash(m, L, l, threads);
    }
    return SPR_STATUS_OK;
}

spr_status spr_model_fill_tables(spr_model *m, int layer, int threads) {
    spr_status st = m->layers[layer].keys ? SPR_STATUS_OK : layer_keys_alloc(&m->layers[layer], layer);
    if (!st) layer_rehash(m, &m->layers[layer], layer, spr_threads(threads));
    return st;
}

spr_status spr_model_rehash(spr_model *m, int rebuild, int threads) {
    if (!m) return spr_fail(SPR_STATUS_BAD_INPUT, "model is NULL");
    if (m->weights_only) /* no keys to hash into; inference has nothing to gain from it */
        return spr_fail(SPR_STATUS_BAD_INPUT, "rehash: the model was loaded for inference "
                                              "(spr_model_load_inference)");
    threads = spr_threads(threads);
    /* the one allocation a rehash can need (none after spr_model_prepare), before anything
     * changes: what follows cannot fail */
    spr_status st = rehash_scratch_reserve(m, threads);
    if (st) return st;
    if (rebuild) {
        m->rebuilds++; /* the new functions' seed counts this rebuild */
        return spr_model_build_tables(m, threads);
    }
    for (int l = 1; l < m->n_layers; l++)
        if (m->layers[l].sampled && m->layers[l].hasher) layer_rehash(m, &m->layers[l], l, threads);
    return SPR_STATUS_OK;
}

/* ------------------------------------------------------------ create */

spr_status spr_model_create_rows(const spr_model_config *cfg, int64_t lo, int64_t hi,
                                 spr_model **out) {
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_create: out is NULL");
    *out = NULL;
    spr_status st = spr_model_config_check(cfg);
    if (st) return st;
    const int last = cfg->n_layers - 1;
    if (lo < 0 || hi <= lo || hi > cfg->layers[last].size)
        return spr_fail(SPR_STATUS_BAD_INPUT, "output rows [%lld, %lld) out of [0, %lld)",
                        (long long)lo, (long long)hi, (long long)cfg->layers[last].size);
    spr_model_config local = *cfg;
    local.layers[last].size = hi - lo;
    spr_model *m = NULL;
    st = spr_model_alloc(&local, &m);
    if (st) return st;
    m->label_lo = lo;
    m->label_total = cfg->layers[last].size;
    /* Weights ~ N(0, init_std^2), drawn per row from (seed, layer, row of the whole
     * model) so that the draw is the same whatever the thread count or the shard. */
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        const int64_t first = l == last ? lo : 0;
#pragma omp parallel for schedule(static) num_threads(spr_threads(0))
        for (int64_t r = 0; r < L->rows; r++) {
            spr_rng rng;
            spr_rng_seed(&rng, spr_mix64(cfg->seed * 0x2545F4914F6CDD1Dull + (uint64_t)l) ^
                                   spr_mix64((uint64_t)(first + r)));
            if (L->w16) { /* the same draws, rounded to the nearest BF16 */
                uint16_t *row = L->w16 + r * L->stride;
                float f[256]; /* an even chunk: the pairs fall as for the whole row */
                for (int64_t c0 = 0; c0 < L->cols; c0 += 256) {
                    const int64_t nc = L->cols - c0 < 256 ? L->cols - c0 : 256;
                    spr_rng_normals(&rng, f, nc, (float)cfg->init_std);
                    for (int64_t c = 0; c < nc; c++) row[c0 + c] = spr_bf16_from_f32(f[c]);
                }
            } else {
                spr_rng_normals(&rng, L->w + r * L->stride, L->cols, (float)cfg->init_std);
            }
        }
    }
    st = spr_model_build_tables(m, 0);
    if (st) goto fail;
    *out = m;
    return SPR_STATUS_OK;
fail:
    spr_model_free(m);
    return st;
}

spr_status spr_model_create(const spr_model_config *cfg, spr_model **out) {
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_create: out is NULL");
    spr_status st = spr_model_config_check(cfg);
    if (st) return st;
    return spr_model_create_rows(cfg, 0, cfg->layers[cfg->n_layers - 1].size, out);
}

/* ------------------------------------------------------------ scratch */

/* The most distinct neurons a query's L buckets can return: L x capacity, and never
 * more than the layer holds (a mutated model file with L = 1024 and a capacity of 2^20
 * over a few neurons asked for 8 GB of scratch a thread). */
static int64_t table_hits(const spr_layer *L) {
    const int64_t hits = (int64_t)L->cfg.hash_l * L->cfg.bucket_capacity;
    return hits < L->size ? hits : L->size;
}

/* Per-thread scratch for training: capacities follow the layers (all neurons for dense
 * layers or dense mode; target + labels for sampled ones). Reallocated only when a call
 * needs more than what exists: once, before the first step. */
spr_status spr_model_prepare(spr_model *m, const spr_train_options *o, int64_t max_labels) {
    if (!m || !o) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_prepare: NULL argument");
    spr_status sst = spr_model_check_state(m, "training");
    if (sst) return sst;
    int threads = spr_threads(o->threads);
    int dense = o->dense ? 1 : 0;
    if (max_labels < 0) max_labels = 0;
    if (m->scratch && m->n_scratch >= threads && m->scratch_labels >= max_labels &&
        m->scratch_dense >= dense && m->scratch_batch >= o->batch_size && (!m->dist || m->bb) &&
        m->scratch_pool >= o->random_pool)
        return SPR_STATUS_OK;
    if (m->scratch) {
        if (m->n_scratch > threads) threads = m->n_scratch;
        if (m->scratch_labels > max_labels) max_labels = m->scratch_labels;
        if (m->scratch_dense > dense) dense = m->scratch_dense;
    }
    int64_t batch = o->batch_size > m->scratch_batch ? o->batch_size : m->scratch_batch;
    int pool = o->random_pool > m->scratch_pool ? o->random_pool : m->scratch_pool;
    if (pool < 1) pool = 1;
    scratch_free(m);
    m->scratch = spr_alloc((size_t)threads * sizeof(spr_scratch));
    m->sample_loss = spr_alloc((size_t)batch * sizeof(float));
    m->sample_active = spr_alloc((size_t)batch * SPR_MAX_LAYERS * sizeof(int64_t));
    if (!m->scratch || !m->sample_loss || !m->sample_active) goto nomem;
    m->n_scratch = threads;
    m->scratch_labels = max_labels;
    m->scratch_dense = dense;
    m->scratch_batch = batch;
    m->scratch_pool = pool;

    int64_t cap[SPR_MAX_LAYERS] = {0}, max_fan_in = 1, max_cand = 1, max_l = 1, max_top = 1,
            work_len = 1;
    int slot_bits = 1;
    for (int l = 0; l < m->n_layers; l++) {
        const spr_layer *L = &m->layers[l];
        if (L->sampled && !dense) {
            int64_t most = L->target_active;
            if (L->cfg.select == SPR_SELECT_UNION && table_hits(L) > most) most = table_hits(L);
            cap[l] = most + (l == m->n_layers - 1 ? max_labels : 0);
            if (cap[l] > L->size) cap[l] = L->size;
        } else {
            cap[l] = L->size;
        }
        if (L->fan_in > max_fan_in && l > 0) max_fan_in = L->fan_in;
        if (L->sampled) {
            const int b = spr_select_slot_bits(L, l == m->n_layers - 1 ? max_labels : 0);
            if (b > slot_bits) slot_bits = b;
            /* candidates, and later the radix sort's buffer for the active set */
            int64_t c = table_hits(L);
            if (cap[l] > c) c = cap[l];
            if (c > max_cand) max_cand = c;
            if (L->cfg.hash_l > max_l) max_l = L->cfg.hash_l;
            if (spr_select_top(L) > max_top) max_top = spr_select_top(L);
            if (L->hasher && spr_hasher_work_len(L->hasher) > work_len)
                work_len = spr_hasher_work_len(L->hasher);
        }
    }
    for (int t = 0; t < threads; t++) {
        spr_scratch *s = &m->scratch[t];
        size_t bytes = 0;
        for (int l = 0; l < m->n_layers; l++)
            bytes += 3 * (size_t)spr_row_stride(cap[l]) * 4; /* ids, act, delta */
        bytes += (size_t)spr_row_stride(max_fan_in) * 4;    /* dense_in */
        bytes += ((size_t)1 << slot_bits) * sizeof(spr_idslot); /* the selection's set */
        bytes += (size_t)spr_row_stride(max_cand) * 4;      /* cand_slot */
        bytes += (size_t)spr_row_stride(max_cand) * 4;      /* cand, then radix buffer */
        bytes += (size_t)spr_row_stride(max_l) * 4;         /* keys */
        bytes += (size_t)spr_row_stride(work_len) * 4;      /* hash work */
        bytes += (size_t)spr_row_stride(max_top + 2) * 4;   /* selection histogram */
        char *p = spr_alloc(bytes);
        if (!p) goto nomem;
        s->block = p;
        for (int l = 0; l < m->n_layers; l++) {
            size_t n = (size_t)spr_row_stride(cap[l]) * 4;
            s->cap[l] = cap[l];
            s->ids[l] = (int32_t *)p, p += n;
            s->act[l] = (float *)p, p += n;
            s->delta[l] = (float *)p, p += n;
        }
        s->dense_in = (float *)p, p += (size_t)spr_row_stride(max_fan_in) * 4;
        s->slots = (spr_idslot *)p, p += ((size_t)1 << slot_bits) * sizeof(spr_idslot);
        s->slot_bits = slot_bits;
        s->cand_slot = (uint32_t *)p, p += (size_t)spr_row_stride(max_cand) * 4;
        s->cand = (int32_t *)p, p += (size_t)spr_row_stride(max_cand) * 4;
        s->keys = (uint32_t *)p, p += (size_t)spr_row_stride(max_l) * 4;
        s->hash_work = (int32_t *)p, p += (size_t)spr_row_stride(work_len) * 4;
        s->hist = (uint32_t *)p;
        s->stamp = 0;
        s->cand_cap = max_cand;
    }
    { /* each sampled layer's random pool: ids and the sort's buffer */
        size_t bytes = SPR_ALIGN;
        for (int l = 0; l < m->n_layers; l++)
            bytes += 2 * (size_t)spr_row_stride(pool * m->layers[l].random_reserve + 1) * 4;
        char *p = m->pool_block = spr_alloc(bytes);
        if (!p) goto nomem;
        for (int l = 0; l < m->n_layers; l++) {
            const size_t n = (size_t)spr_row_stride(pool * m->layers[l].random_reserve + 1) * 4;
            m->layers[l].pool_ids = (int32_t *)p, p += n;
            m->layers[l].pool_tmp = (int32_t *)p, p += n;
        }
    }
    if (m->dist) { /* the sharded step keeps the whole batch (model.h, spr_batch_buf) */
        spr_batch_buf *bb = m->bb = spr_alloc(sizeof *bb);
        if (!bb) goto nomem;
        memset(bb, 0, sizeof *bb);
        const int last = m->n_layers - 1;
        bb->batch = batch;
        bb->out_cap = spr_row_stride(cap[last]);
        bb->label_cap = spr_row_stride(max_labels > 0 ? max_labels : 1);
        const int64_t lab = spr_row_stride(max_labels > 0 ? max_labels : 1);
        size_t bytes = 0;
        for (int l = 0; l < last; l++) bytes += 2 * (size_t)batch * spr_row_stride(m->layers[l].size) * 4;
        bytes += 3 * (size_t)batch * bb->out_cap * 4 + (size_t)batch * 8 * 2 + (size_t)batch + SPR_ALIGN;
        bytes += (size_t)batch * lab * 4 + (size_t)spr_row_stride(4 * batch) * 4 + 8 * SPR_ALIGN;
        for (int l = 1; l < last; l++) /* sampled hidden layers: active ids and counts */
            if (m->layers[l].sampled)
                bytes += (size_t)batch * (spr_row_stride(cap[l]) * 4 + 8) + SPR_ALIGN;
        char *p = bb->block = spr_alloc(bytes);
        if (!p) goto nomem;
        for (int l = 0; l < last; l++) {
            size_t n = (size_t)batch * spr_row_stride(m->layers[l].size) * 4;
            bb->h[l] = (float *)p, p += n;
            bb->dh[l] = (float *)p, p += n;
        }
        size_t no = (size_t)batch * bb->out_cap * 4;
        bb->out_ids = (int32_t *)p, p += no;
        bb->out_z = (float *)p, p += no;
        bb->out_delta = (float *)p, p += no;
        bb->out_n = (int64_t *)p, p += (size_t)batch * 8;
        bb->n_local = (int64_t *)p, p += (size_t)batch * 8;
        bb->labels = (int32_t *)p, p += (size_t)batch * lab * 4;
        bb->has_labels = (uint8_t *)p, p += ((size_t)batch + SPR_ALIGN) / SPR_ALIGN * SPR_ALIGN;
        for (int l = 1; l < last; l++) {
            if (!m->layers[l].sampled) continue; /* (dense mode too: cap[l] is the layer) */
            bb->hid_cap[l] = spr_row_stride(cap[l]);
            bb->hid_ids[l] = (int32_t *)p, p += (size_t)batch * bb->hid_cap[l] * 4;
            bb->hid_n[l] = (int64_t *)p, p += ((size_t)batch * 8 + SPR_ALIGN) / SPR_ALIGN * SPR_ALIGN;
        }
        bb->red = (float *)p;
    }
    if (rehash_scratch_reserve(m, threads)) goto nomem;
    return SPR_STATUS_OK;
nomem:
    scratch_free(m);
    return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory allocating training scratch");
}

/* ------------------------------------------------------------ accessors */

spr_model_config spr_model_get_config(const spr_model *m) { return m->cfg; }

void spr_model_set_logger(spr_model *m, spr_log_fn fn, void *user) {
    m->log = fn;
    m->log_user = user;
}

void spr_model_set_epoch(spr_model *m, int64_t epoch) { m->epoch = epoch; }

void spr_model_set_data_note(spr_model *m, const spr_data_note *note) {
    if (!m) return;
    memset(&m->note, 0, sizeof m->note);
    if (note && note->points > 0) {
        m->note = *note;
        m->note.one_based = note->one_based ? 1 : 0;
    }
}

spr_data_note spr_model_get_data_note(const spr_model *m) {
    spr_data_note n;
    memset(&n, 0, sizeof n);
    return m ? m->note : n;
}

spr_model_info spr_model_config_info(const spr_model_config *c) {
    spr_model_info info;
    memset(&info, 0, sizeof info);
    int64_t fan_in = c->n_features;
    for (int l = 0; l < c->n_layers; l++) {
        const spr_layer_config *lc = &c->layers[l];
        const int out = l == c->n_layers - 1;
        const int64_t rows = l == 0 ? c->n_features : lc->size, cols = l == 0 ? lc->size : fan_in;
        info.parameters += rows * cols + lc->size;
        /* as spr_model_get_info counts them: w, gw, mw, vw (BF16 where the options say) and
         * the bias's 4 arrays */
        const int w16 = out && c->bf16_weights, m16 = out && c->bf16_state;
        info.parameter_bytes += rows * spr_row_stride(cols) * ((w16 ? 2 : 4) + 4 + (m16 ? 4 : 8)) +
                                4 * spr_row_stride(lc->size) * 4;
        if (l > 0 && lc->sparsity < 1.0f) { /* a sampled layer: its tables (spr_lsh_bytes) and keys */
            int k;
            const int bits = sampled_key_bits(lc, &k);
            const int64_t buckets = (int64_t)1 << bits, L = lc->hash_l;
            info.table_bytes += 4 * L * (buckets + 1) + 4 * L * lc->size + 4 * L * buckets + lc->size * L * 4;
            info.table_bytes += spr_hasher_bytes(lc->hash, fan_in, k, lc->hash_l);
            info.hash_k[l] = k;
            info.key_bits[l] = bits;
        }
        fan_in = lc->size;
    }
    info.labels_total = c->layers[c->n_layers - 1].size;
    info.ranks = 1;
    return info;
}

spr_model_info spr_model_get_info(const spr_model *m) {
    spr_model_info info;
    memset(&info, 0, sizeof info);
    info.steps = m->steps;
    info.samples = m->samples;
    info.epoch = m->epoch;
    info.rehashes = m->rehashes;
    info.rebuilds = m->rebuilds;
    for (int l = 0; l < m->n_layers; l++) {
        const spr_layer *L = &m->layers[l];
        info.parameters += L->rows * L->cols + L->size;
        /* w: 4 bytes an entry, or 2 as BF16; gw: 4; mw, vw: 4, or 2 as BF16; the bias and
         * its 3 arrays */
        const int64_t state = m->weights_only ? 0 : 4 + (L->mw16 ? 4 : 8); /* gw, mw, vw */
        info.parameter_bytes += L->rows * L->stride * ((L->w16 ? 2 : 4) + state) +
                                4 * spr_row_stride(L->size) * 4;
        if (L->tables) {
            /* + every neuron's L keys: rehash scratch, and what rank selection reads */
            info.table_bytes += spr_lsh_bytes(L->tables) + (L->keys ? L->size * L->cfg.hash_l * 4 : 0);
            info.table_bytes += spr_hasher_bytes(L->cfg.hash, L->fan_in, L->hash_k, L->cfg.hash_l);
            info.key_bits[l] = L->tables->key_bits;
        }
        info.hash_k[l] = L->hash_k;
    }
    info.label_lo = m->label_lo;
    info.labels_total = m->label_total;
    info.rank = m->dist ? spr_dist_rank(m->dist) : 0;
    info.ranks = m->dist ? spr_dist_size(m->dist) : 1;
    if (spr_catch_up_known(&m->catch_up)) {
        info.lr = m->catch_up.lr, info.eps = m->catch_up.eps;
        info.beta1 = (float)m->catch_up.beta1, info.beta2 = (float)m->catch_up.beta2;
    }
    return info;
}

spr_status spr_model_param(spr_model *m, int layer, spr_param which, float **data, int64_t *rows,
                           int64_t *cols, int64_t *stride) {
    if (!m || !data) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_param: NULL argument");
    if (layer < 0 || layer >= m->n_layers)
        return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d out of range [0, %d)", layer, m->n_layers);
    spr_layer *L = &m->layers[layer];
    float *weights[] = {L->w, NULL, L->gw, NULL, L->mw, L->vw, NULL, NULL};
    float *biases[] = {NULL, L->b, NULL, L->gb, NULL, NULL, L->mb, L->vb};
    if ((int)which < 0 || (int)which > SPR_PARAM_BIAS_ADAM_V)
        return spr_fail(SPR_STATUS_BAD_INPUT, "unknown parameter %d", (int)which);
    if (m->weights_only && which != SPR_PARAM_WEIGHT && which != SPR_PARAM_BIAS)
        return spr_model_check_state(m, "spr_model_param of a gradient or a moment");
    if (L->mw16 && (which == SPR_PARAM_WEIGHT_ADAM_M || which == SPR_PARAM_WEIGHT_ADAM_V))
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "layer %d keeps its weights' Adam moments as BF16 (bf16_state): no float "
                        "array to hand out", layer);
    if (L->w16 && which == SPR_PARAM_WEIGHT)
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "layer %d keeps its weights as BF16 (bf16_weights): no float array to hand "
                        "out (spr_model_weight_rows copies rows)", layer);
    int is_bias = biases[which] != NULL;
    *data = is_bias ? biases[which] : weights[which];
    if (rows) *rows = is_bias ? 1 : L->rows;
    if (cols) *cols = is_bias ? L->size : L->cols;
    if (stride) *stride = is_bias ? L->size : L->stride;
    return SPR_STATUS_OK;
}

spr_status spr_model_weight_rows(const spr_model *m, int layer, int64_t first, int64_t n,
                                 float *out) {
    if (!m || !out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_weight_rows: NULL argument");
    if (layer < 0 || layer >= m->n_layers)
        return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d out of range [0, %d)", layer, m->n_layers);
    const spr_layer *L = &m->layers[layer];
    if (first < 0 || n < 0 || first > L->rows - n)
        return spr_fail(SPR_STATUS_BAD_INPUT, "layer %d: rows [%lld, %lld + %lld) out of [0, %lld)",
                        layer, (long long)first, (long long)first, (long long)n, (long long)L->rows);
    for (int64_t r = 0; r < n; r++) {
        const int64_t off = (first + r) * L->stride;
        for (int64_t c = 0; c < L->cols; c++)
            out[r * L->cols + c] = L->w16 ? spr_f32_from_bf16(L->w16[off + c]) : L->w[off + c];
    }
    return SPR_STATUS_OK;
}

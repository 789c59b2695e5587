/*
 * sample.c: which neurons of a sampled layer are active for one input. Hash the input,
 * gather the L buckets with a count of the tables that returned each neuron, keep the
 * candidates the layer's strategy wants, add random neurons up to the target, sort.
 * Per-sample cost O(L x bucket + target), independent of the layer size, and so is the
 * memory it touches: the set of seen neurons is a small hash table (idset below).
 */
#include "common.h"
#include "model.h"

#include <string.h>

/* Bits set in x (SWAR). Not the textbook multiply at the end: GCC recognises that form
 * as a popcount and then cannot vectorise the loop (no vector popcount before AVX-512). */
static inline uint32_t popcount32(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0Fu;
    x = x + (x >> 8);
    return (x + (x >> 16)) & 0x3Fu;
}

/* Rank score of a candidate: how many of the K x L codes of its keys nk (L) equal those
 * of the query's keys qk (spr_agree_count summed over the tables, written branch-free
 * so that the compiler vectorises it over the tables). */
static SPR_CLONES int rank_score(spr_agree a, const uint32_t *qk, const uint32_t *nk, int nl) {
    const uint32_t s1 = a.bits > 1 ? ~0u : 0u, s2 = a.bits > 2 ? ~0u : 0u, s3 = a.bits > 3 ? ~0u : 0u;
    const uint32_t k = (uint32_t)a.k, exact = a.exact ? ~0u : 0u;
    uint32_t miss = 0;
    for (int t = 0; t < nl; t++) {
        const uint32_t y = nk[t], d = qk[t] ^ y;
        const uint32_t m = d | ((d >> 1) & s1) | ((d >> 2) & s2) | ((d >> 3) & s3);
        const uint32_t partial = popcount32(m & a.low);
        const uint32_t whole = (uint32_t) - (d != 0) & k; /* folded keys: only whole keys compare */
        const uint32_t special = exact | (uint32_t) - (y == SPR_KEY_ABSENT);
        miss += (special & whole) | (~special & partial);
    }
    return (int)(k * (uint32_t)nl - miss);
}

/* The selection's set of neurons: open addressing over 2^slot_bits slots (linear
 * probing), the slot of id its multiplicative hash, or id itself when the layer has no
 * more neurons than slots (no collisions then). A slot is in the set when its stamp is
 * the selection's: a new selection clears nothing (every 65,535 selections the stamps
 * wrap and the table is cleared once). It holds at most half its slots (the sizing of
 * spr_select_slot_bits), so probes are short, and it is a few hundred KB whatever the
 * layer's size: it stays in L2. (It replaced a stamp and a count per neuron of the
 * layer, 24 MB for two threads at 2M labels, whose every candidate was a cache miss.) */
typedef struct idset {
    spr_idslot *t;
    uint32_t mask;
    int shift;  /* 32 - slot_bits: the hash's top bits */
    int direct; /* the layer fits: slot = id */
    uint16_t stamp;
} idset;

static idset idset_begin(spr_scratch *s, int64_t layer_size) {
    const uint32_t slots = 1u << s->slot_bits;
    if (++s->stamp == 0) {
        memset(s->slots, 0, (size_t)slots * sizeof(spr_idslot));
        s->stamp = 1;
    }
    idset set = {s->slots, slots - 1, 32 - s->slot_bits, layer_size <= (int64_t)slots, s->stamp};
    return set;
}

/* The slot of id: its own if it is in the set, else the free slot where it goes. */
static inline uint32_t idset_find(const idset *set, int32_t id) {
    uint32_t i = set->direct ? (uint32_t)id : ((uint32_t)id * 0x9E3779B1u) >> set->shift;
    while (set->t[i].stamp == set->stamp && set->t[i].id != id) i = (i + 1) & set->mask;
    return i;
}

static inline int idset_has(const idset *set, uint32_t i) { return set->t[i].stamp == set->stamp; }

static inline void idset_put(const idset *set, uint32_t i, int32_t id, uint16_t count) {
    set->t[i].id = id, set->t[i].count = count, set->t[i].stamp = set->stamp;
}

#define TAKEN UINT16_MAX /* count of a neuron already in the active set */

/* Takes id into the active set unless it is there already (a candidate seen but left
 * out may still be taken); returns 1 if taken. */
static inline int take(const idset *set, int32_t id) {
    const uint32_t i = idset_find(set, id);
    if (idset_has(set, i) && set->t[i].count == TAKEN) return 0;
    idset_put(set, i, id, TAKEN);
    return 1;
}

int spr_select_slot_bits(const spr_layer *L, int64_t max_labels) {
    int64_t most = max_labels + (int64_t)L->cfg.hash_l * L->cfg.bucket_capacity + L->target_active;
    if (most > L->size) most = L->size;
    int bits = 10;
    while (bits < 31 && ((int64_t)1 << bits) < 2 * most) bits++;
    return bits;
}

int spr_sampler_scratch(const spr_layer *L, spr_scratch *s) {
    memset(s, 0, sizeof *s);
    int64_t cand = (int64_t)L->cfg.hash_l * L->cfg.bucket_capacity;
    if (cand < L->target_active) cand = L->target_active;
    if (cand > L->size) cand = L->size;
    s->cand_cap = cand;
    s->slot_bits = spr_select_slot_bits(L, 0);
    s->slots = spr_alloc(((size_t)1 << s->slot_bits) * sizeof(spr_idslot));
    s->cand_slot = spr_alloc((size_t)cand * 4);
    s->cand = spr_alloc((size_t)cand * 4);
    s->keys = spr_alloc((size_t)L->cfg.hash_l * 4);
    s->hash_work = spr_alloc((size_t)spr_hasher_work_len(L->hasher) * 4);
    s->ids[0] = spr_alloc((size_t)cand * 4);
    s->hist = spr_alloc((size_t)(spr_select_top(L) + 2) * 4);
    return s->slots && s->cand_slot && s->cand && s->keys && s->hash_work && s->ids[0] && s->hist;
}

void spr_sampler_scratch_free(spr_scratch *s) {
    spr_free(s->slots), spr_free(s->cand_slot), spr_free(s->cand), spr_free(s->keys);
    spr_free(s->hash_work), spr_free(s->ids[0]), spr_free(s->hist);
    memset(s, 0, sizeof *s);
}

int64_t spr_layer_select(const spr_layer *L, const float *in_dense, const int32_t *labels,
                         int64_t n_labels, int inference, spr_scratch *s, spr_rng *rng,
                         int32_t *ids, const int32_t *pool, int64_t n_pool) {
    const idset set = idset_begin(s, L->size);
    spr_idslot *t = set.t;
    int64_t n = 0;
    for (int64_t i = 0; i < n_labels; i++) /* already in the set, never a candidate */
        if (take(&set, labels[i])) ids[n++] = labels[i];
    const int64_t target = L->target_active + n_labels;

    /* Union of the L buckets, counting how many tables returned each neuron. */
    spr_hasher_keys(L->hasher, in_dense, s->keys, s->hash_work);
    int64_t nc = 0;
    int32_t *cand = s->cand;
    uint32_t *cslot = s->cand_slot;
    for (int tb = 0; tb < L->cfg.hash_l; tb++) {
        int64_t bn;
        const int32_t *bucket = spr_lsh_bucket(L->tables, tb, s->keys[tb], &bn);
        for (int64_t k = 0; k < bn; k++) {
            const int32_t id = bucket[k];
            const uint32_t i = idset_find(&set, id);
            if (!idset_has(&set, i)) {
                idset_put(&set, i, id, 1);
                cslot[nc] = i;
                cand[nc++] = id;
            } else if (t[i].count != TAKEN) {
                t[i].count++;
            }
        }
    }

    /* rank: a candidate's score becomes the number of the K x L codes it shares with the
     * input, read from the keys the tables were built from (L->keys, spr_lsh_item_keys).
     * Every candidate collided whole in at least one table, so it scores >= K. */
    const spr_select how = inference ? SPR_SELECT_UNION : L->cfg.select;
    if (how == SPR_SELECT_RANK) {
        const spr_agree a = spr_hasher_agree(L->hasher);
        const int nl = L->cfg.hash_l;
        for (int64_t k = 0; k < nc; k++)
            if (t[cslot[k]].count != TAKEN)
                t[cslot[k]].count = (uint16_t)rank_score(a, s->keys, L->keys + (int64_t)cand[k] * nl, nl);
    }

    /* Which candidates join: TOPK keeps the target number, most-returned first; RANK the
     * same, highest score first; UNION keeps them all; THRESHOLD keeps those returned by
     * >= select_threshold tables, at most the target, most-returned first. Ties keep the
     * order the tables gave. */
    const int min_count = how == SPR_SELECT_THRESHOLD ? L->cfg.select_threshold : 1;
    int64_t limit = how == SPR_SELECT_UNION ? nc : target - n - L->random_reserve;
    if (inference) limit = nc;
    if (limit < 0) limit = 0;
    uint32_t *hist = s->hist;
    const int top = spr_select_top(L);
    memset(hist, 0, (size_t)(top + 2) * sizeof(uint32_t));
    for (int64_t k = 0; k < nc; k++)
        if (t[cslot[k]].count != TAKEN) hist[t[cslot[k]].count]++;
    int64_t eligible = 0;
    for (int c = min_count; c <= top; c++) eligible += hist[c];
    /* A neuron taken into the set gets count TAKEN, so that the random top-up can tell
     * it from a candidate that was seen but left out (and may still be drawn). */
    if (eligible <= limit) {
        for (int64_t k = 0; k < nc; k++) {
            spr_idslot *c = &t[cslot[k]];
            if (c->count >= min_count && c->count != TAKEN) ids[n++] = cand[k], c->count = TAKEN;
        }
    } else if (limit > 0) {
        /* the count c such that fewer than `limit` candidates have a higher one: take
         * all of those, then candidates with count c until the limit */
        int c = top;
        int64_t above = 0;
        while (c > min_count && above + hist[c] <= limit) above += hist[c--];
        int64_t at_c = limit - above;
        for (int64_t k = 0; k < nc; k++) {
            spr_idslot *x = &t[cslot[k]];
            int cnt = x->count;
            if (cnt == TAKEN) continue;
            if (cnt > c || (cnt == c && at_c-- > 0)) ids[n++] = cand[k], x->count = TAKEN;
        }
    }
    if (inference) {
        spr_sort_ids(ids, n, L->size, s->cand);
        return n;
    }

    /* The batch's random pool (spr_model_draw_pools), if any: the samples of a batch draw
     * from the same rows, so the batch reads (and the optimizer steps) fewer rows. A
     * pool no larger than the share is taken whole. */
    if (n_pool <= L->random_reserve) {
        for (int64_t k = 0; k < n_pool && n < target; k++)
            if (take(&set, pool[k])) ids[n++] = pool[k];
    } else { /* a pool larger than the share: each sample takes its own draws from it */
        for (int64_t tries = 0; n < target && tries < 8 * L->random_reserve; tries++) {
            const int32_t id = pool[spr_rng_below(rng, (uint64_t)n_pool)];
            if (take(&set, id)) ids[n++] = id;
        }
    }

    /* Random neurons up to the target (SLIDE's top-up, and the reserved random share
     * without a pool): rejection sampling, then a scan from a random start if the
     * layer is nearly full. */
    for (int64_t tries = 0; n < target && tries < 8 * target; tries++) {
        int32_t id = (int32_t)spr_rng_below(rng, (uint64_t)L->size);
        if (take(&set, id)) ids[n++] = id;
    }
    if (n < target) {
        int64_t start = (int64_t)spr_rng_below(rng, (uint64_t)L->size);
        for (int64_t k = 0; k < L->size && n < target; k++) {
            int32_t id = (int32_t)((start + k) % L->size);
            if (take(&set, id)) ids[n++] = id;
        }
    }
    spr_sort_ids(ids, n, L->size, s->cand);
    return n;
}

static void layer_draw_pool(spr_layer *L, int pool, uint64_t seed) {
    spr_rng rng;
    spr_rng_seed(&rng, seed);
    int64_t want = (int64_t)pool * L->random_reserve;
    if (want > L->size) want = L->size;
    for (int64_t k = 0; k < want; k++)
        L->pool_ids[k] = (int32_t)spr_rng_below(&rng, (uint64_t)L->size);
    spr_sort_ids(L->pool_ids, want, L->size, L->pool_tmp);
    int64_t n = 0;
    for (int64_t k = 0; k < want; k++)
        if (n == 0 || L->pool_ids[k] != L->pool_ids[n - 1]) L->pool_ids[n++] = L->pool_ids[k];
    L->n_pool = n;
}

void spr_model_draw_pools(spr_model *m, const spr_train_options *o, uint64_t step_seed,
                          uint64_t out_salt) {
    for (int l = 1; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        const uint64_t seed = l == m->n_layers - 1 ? step_seed ^ out_salt : step_seed;
        L->n_pool = 0;
        if (L->sampled && !o->dense && o->random_pool > 0)
            layer_draw_pool(L, o->random_pool, seed ^ spr_mix64(0x5eed0000u + (uint64_t)l));
    }
}

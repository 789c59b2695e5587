/*
 * hash.c: the LSH families of hash.h over dense vectors (neuron weight rows and layer
 * activations, dim typically 64..1024).
 *
 * Every family produces C = K * L codes per vector; table t's key is the concatenation
 * of codes t*K .. t*K+K-1 with exact bit widths, first code in the highest bits, folded
 * to key_bits by a multiplicative hash when the concatenation is wider than the tables.
 *
 *  - WTA:  C bins of 8 input positions cut from concatenated random permutations; a
 *          code is the position (0..7) of the bin's largest value, first one on ties.
 *  - DWTA: WTA, but a bin whose 8 values are all exactly 0 borrows the code of another
 *          bin chosen by a hash of (bin, attempt); after 100 empty tries it takes 0, so
 *          every code is valid whatever the input (the original SLIDE could give up and
 *          index out of range).
 *  - SimHash: C sparse random projections (+1 and -1 with probability 1/6 each, 0
 *          otherwise); a code is 1 when the dot product is >= 0.
 *  - DOPH: not implemented yet (create says so).
 */
#include "hash.h"

#include "common.h"

#include <string.h>

#define SPR_WTA_BIN 8        /* positions per WTA bin: codes 0..7, 3 bits */
#define SPR_DWTA_ATTEMPTS 100 /* densification tries before an empty bin takes code 0 */
#define SPR_FOLD_MULT 0x9E3779B97F4A7C15ull /* 2^64 / golden ratio: Fibonacci hashing */

struct spr_hasher {
    spr_hash_family family;
    int64_t dim;
    int k, l;
    int code_bits;   /* bits per code: 3 (WTA/DWTA) or 1 (SimHash) */
    int key_bits;    /* min(k * code_bits, key_bits_max) */
    int fold;        /* 1 when k * code_bits > key_bits: keys are folded */
    int64_t n_codes; /* C = k * l */
    uint64_t salt;   /* seeds the DWTA densification hash, so it differs per seed */
    int32_t *bins;   /* WTA/DWTA: (C, 8) input positions of each bin */
    /* SimHash: the projections stored transposed, (dim, proj_stride) with entries
     * +1, -1 or 0, so that the dot products of all C codes are one pass of axpys over
     * the input's non-zeros (contiguous, vectorisable, and ReLU zeros cost nothing). */
    float *proj;
    int64_t proj_stride; /* floats per row of proj: C rounded up to a cache line */
};

int spr_hash_code_bits(spr_hash_family family) {
    switch (family) {
    case SPR_HASH_DWTA:
    case SPR_HASH_WTA: return 3;
    case SPR_HASH_SIMHASH: return 1;
    /* DOPH is planned with bins of 8 too (the minimum's position), 3 bits; it is not
     * implemented, create refuses it. */
    case SPR_HASH_DOPH: return 3;
    }
    return 0;
}

void spr_hasher_free(spr_hasher *h) {
    if (!h) return;
    spr_free(h->bins);
    spr_free(h->proj);
    spr_free(h);
}

/* WTA/DWTA bins: ceil(C*8/dim) random permutations of 0..dim-1 concatenated and cut into
 * C bins of 8. The last permutation is only needed up to the positions used, and a
 * forward Fisher-Yates stopped early gives a uniformly random prefix, so large dims cost
 * O(dim) memory once, not per permutation. */
static void draw_bins(spr_hasher *h, spr_rng *rng, int32_t *perm) {
    const int64_t need = h->n_codes * SPR_WTA_BIN;
    const int64_t dim = h->dim;
    int64_t done = 0;
    while (done < need) {
        for (int64_t i = 0; i < dim; i++) perm[i] = (int32_t)i;
        int64_t take = need - done < dim ? need - done : dim;
        for (int64_t i = 0; i < take; i++) {
            int64_t j = i + (int64_t)spr_rng_below(rng, (uint64_t)(dim - i));
            int32_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
            h->bins[done + i] = perm[i];
        }
        done += take;
    }
}

/* SimHash projections: entry (code c, dim j) is +1 or -1 with probability 1/6 each and
 * 0 with 2/3, drawn code by code so the functions do not depend on the storage layout. */
static void draw_projections(spr_hasher *h, spr_rng *rng) {
    for (int64_t c = 0; c < h->n_codes; c++) {
        for (int64_t j = 0; j < h->dim; j++) {
            uint64_t r = spr_rng_below(rng, 6);
            h->proj[j * h->proj_stride + c] = r == 0 ? 1.0f : r == 1 ? -1.0f : 0.0f;
        }
    }
}

spr_status spr_hasher_create(spr_hash_family family, int64_t dim, int k, int l,
                             int key_bits_max, uint64_t seed, spr_hasher **out) {
    spr_hasher *h = NULL;
    int32_t *perm = NULL;
    spr_status st = SPR_STATUS_OK;
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: out is NULL");
    *out = NULL;
    if (family == SPR_HASH_DOPH)
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: doph hashing is not implemented yet");
    if (family != SPR_HASH_DWTA && family != SPR_HASH_WTA && family != SPR_HASH_SIMHASH)
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: unknown hash family %d", (int)family);
    /* Positions are stored as int32. */
    if (dim < 1 || dim > INT32_MAX)
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: dim must be in 1..%d, got %lld",
                        (int)INT32_MAX, (long long)dim);
    const int code_bits = spr_hash_code_bits(family);
    if (k < 1 || (int64_t)k * code_bits > 64)
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "hash.c: K must be in 1..%d for %s (%d bits per code, keys of at "
                        "most 64 bits), got %d",
                        64 / code_bits, family == SPR_HASH_SIMHASH ? "simhash" : "wta/dwta",
                        code_bits, k);
    if (l < 1 || l > 1024)
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: L (tables) must be in 1..1024, got %d", l);
    if (key_bits_max < 1 || key_bits_max > 30)
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: key_bits_max must be in 1..30, got %d",
                        key_bits_max);

    h = spr_alloc(sizeof *h);
    if (!h) return SPR_STATUS_NO_MEMORY;
    h->family = family;
    h->dim = dim;
    h->k = k;
    h->l = l;
    h->code_bits = code_bits;
    h->fold = k * code_bits > key_bits_max;
    h->key_bits = h->fold ? key_bits_max : k * code_bits;
    h->n_codes = (int64_t)k * l;

    spr_rng rng;
    spr_rng_seed(&rng, seed);
    h->salt = spr_rng_next(&rng);
    if (family == SPR_HASH_SIMHASH) {
        h->proj_stride = spr_row_stride(h->n_codes);
        h->proj = spr_alloc((size_t)dim * (size_t)h->proj_stride * sizeof(float));
        if (!h->proj) { st = SPR_STATUS_NO_MEMORY; goto fail; }
        draw_projections(h, &rng);
    } else {
        h->bins = spr_alloc((size_t)h->n_codes * SPR_WTA_BIN * sizeof(int32_t));
        perm = spr_alloc((size_t)dim * sizeof(int32_t));
        if (!h->bins || !perm) { st = SPR_STATUS_NO_MEMORY; goto fail; }
        draw_bins(h, &rng, perm);
    }
    spr_free(perm);
    *out = h;
    return SPR_STATUS_OK;
fail:
    spr_free(perm);
    spr_hasher_free(h);
    return st;
}

int spr_hasher_key_bits(const spr_hasher *h) { return h->key_bits; }

/* One int32 per code (SimHash keeps its float dot products there). */
int64_t spr_hasher_work_len(const spr_hasher *h) { return h->n_codes; }

/* WTA codes: argmax position within each bin, first on ties. With `densify`, a bin of
 * eight exact zeros is marked -1 for fill_empty. Returns the number of empty bins. */
static inline __attribute__((always_inline)) int64_t
wta_codes(const spr_hasher *h, const float *x, int32_t *codes, const int densify) {
    int64_t empty = 0;
    for (int64_t b = 0; b < h->n_codes; b++) {
        const int32_t *p = h->bins + b * SPR_WTA_BIN;
        float v[SPR_WTA_BIN];
        for (int j = 0; j < SPR_WTA_BIN; j++) v[j] = x[p[j]];
        float best = v[0];
        int32_t arg = 0;
        for (int j = 1; j < SPR_WTA_BIN; j++) {
            /* Branch-free (the winner's position is random, a branch mispredicts about
             * once per bin, which made DWTA 2.5x slower than it is now). */
            int32_t gt = v[j] > best;
            arg ^= (arg ^ j) & -gt;
            best = v[j] > best ? v[j] : best;
        }
        /* Only a bin whose maximum is <= 0 can be all zeros: the exact test is off the
         * common path (tracking it in the loop above made DWTA 4x slower than WTA). */
        if (densify && !(best > 0.0f)) {
            int nonzero = 0;
            for (int j = 0; j < SPR_WTA_BIN; j++) nonzero |= v[j] != 0.0f;
            if (!nonzero) {
                arg = -1;
                empty++;
            }
        }
        codes[b] = arg;
    }
    return empty;
}

/* DWTA densification: empty bin b takes the code of bin mix(salt, b, attempt) mod C,
 * for the first attempt that lands on a bin that was non-empty in the input (borrowed
 * codes are stored as code + 8 meanwhile, so a fill never copies another fill and the
 * result does not depend on the order bins are visited). */
static void fill_empty(const spr_hasher *h, int32_t *codes, int64_t empty) {
    const int64_t c = h->n_codes;
    if (empty == c) { /* nothing to borrow from: the zero vector and its like */
        memset(codes, 0, (size_t)c * sizeof *codes);
        return;
    }
    for (int64_t b = 0; b < c; b++) {
        if (codes[b] >= 0) continue;
        int32_t code = 0;
        for (uint64_t a = 0; a < SPR_DWTA_ATTEMPTS; a++) {
            uint64_t r = spr_mix64(h->salt ^ ((uint64_t)b << 32) ^ a);
            int64_t o = (int64_t)(((unsigned __int128)r * (uint64_t)c) >> 64);
            if (codes[o] >= 0) {
                code = codes[o] & (SPR_WTA_BIN - 1);
                break;
            }
        }
        codes[b] = code + SPR_WTA_BIN;
    }
    for (int64_t b = 0; b < c; b++) codes[b] &= SPR_WTA_BIN - 1;
}

/* SimHash codes: acc = P^T x over the non-zeros of x, code = acc >= 0. */
static void simhash_codes(const spr_hasher *h, const float *x, int32_t *codes, float *acc) {
    const int64_t c = h->n_codes;
    for (int64_t i = 0; i < c; i++) acc[i] = 0.0f;
    for (int64_t j = 0; j < h->dim; j++) {
        const float v = x[j];
        if (v == 0.0f) continue;
        const float *restrict p = h->proj + j * h->proj_stride;
        for (int64_t i = 0; i < c; i++) acc[i] += v * p[i];
    }
    /* NaN compares false: code 0, still a valid code. */
    for (int64_t i = 0; i < c; i++) codes[i] = acc[i] >= 0.0f;
}

void spr_hasher_keys(const spr_hasher *h, const float *x, uint32_t *keys, int32_t *work) {
    int32_t *codes = work;
    switch (h->family) {
    case SPR_HASH_SIMHASH:
        /* The float sums live in the caller's scratch (spr_alloc'd memory has no declared
         * type; each slot is read back as the type last written) and become codes in place. */
        simhash_codes(h, x, codes, (float *)(void *)work);
        break;
    case SPR_HASH_DWTA: {
        int64_t empty = wta_codes(h, x, codes, 1);
        if (empty) fill_empty(h, codes, empty);
        break;
    }
    default: wta_codes(h, x, codes, 0); break;
    }
    const int cb = h->code_bits;
    for (int t = 0; t < h->l; t++) {
        const int32_t *c = codes + (int64_t)t * h->k;
        uint64_t key = 0;
        for (int j = 0; j < h->k; j++) key = (key << cb) | (uint64_t)c[j];
        if (h->fold) key = (key * SPR_FOLD_MULT) >> (64 - h->key_bits);
        keys[t] = (uint32_t)key;
    }
}

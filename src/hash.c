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
 *  - SimHash: C sparse random projections (+1 and -1 with probability 1/(2 s) each, 0
 *          otherwise; s is the layer's simhash_one_in: round(sqrt(dim)) unless the
 *          configuration says otherwise, the "very sparse" projections of Li, Hastie
 *          and Church; 3 in every model made before the option); a code is 1 when the
 *          dot product is >= 0 (an all-zero projection gives a constant code).
 *  - DOPH: densified one-permutation minhash of a binarised input. The set S is the
 *          top-32 non-zeros by value (ties by a hash of the index, so truncating a
 *          binary input keeps a consistent random sample; NaNs are ignored). The C
 *          bins come in groups of 8; each group has its own random hash of the
 *          indices (a pseudo-random permutation of the index space, not of 0..dim-1,
 *          so dim < C needs nothing special), whose top 3 bits pick the bin and
 *          whose value ranks the elements inside it. A code is the low 4 bits of the
 *          minimum's hash (a 4-bit hash of the argmin index). Empty bins are filled
 *          as in DWTA. Why groups of 8 rather than one permutation cut into C bins:
 *          |S| <= 32 elements reach at most 32 of C (~200-300) bins, so most codes
 *          would be copies made by densification and the L tables would share them;
 *          with groups of 8 a 32-element set fills almost every bin (a bin is empty
 *          with probability (7/8)^32 = 1.4%), at a cost of |S| * C / 8 hashes. Codes
 *          depend only on the code index, not on how K and L group them.
 *          Per code, P[collision] = J + (1 - J) / 16 for sets with Jaccard
 *          similarity J (minhash with optimal densification is exact in J; two
 *          different argmins agree on 4 hash bits 1 time in 16).
 *
 * spr_hasher_keys_sparse gives bit-identical keys from (index, value) lists:
 *  - WTA/DWTA keep an inverse map (index, permutation) -> slot, visit each slot that
 *    holds a non-zero, and treat the slots they did not visit as the zeros they are
 *    (a bin whose non-zeros are all negative has its argmax at its first zero slot).
 *  - SimHash accumulates the same axpys in the same order (one shared function, so
 *    the floating-point sums are the same bits).
 *  - DOPH only ever looks at the non-zeros.
 */
#include "hash.h"

#include "common.h"
#include "kernels.h"

#include <string.h>

#define SPR_WTA_BIN 8        /* positions per WTA bin: codes 0..7, 3 bits */
#define SPR_DWTA_ATTEMPTS 100 /* densification tries before an empty bin takes code 0 */
#define SPR_FOLD_MULT 0x9E3779B97F4A7C15ull /* 2^64 / golden ratio: Fibonacci hashing */
#define SPR_DOPH_TOP 32   /* DOPH keeps the top 32 non-zeros: the binarised set */
#define SPR_DOPH_GROUP 8  /* DOPH bins per hash function (top 3 bits of the hash) */
#define SPR_DOPH_BITS 4   /* DOPH code: 4 bits of the argmin's hash */
/* SimHash rows per pass over the panels in spr_hasher_keys_rows: a panel (dim x 64 bytes,
 * 8 KB at dim 128) and 24 rows (12 KB) share L1. */
#define SPR_HASH_ROWS 24

struct spr_hasher {
    spr_hash_family family;
    int64_t dim;
    int k, l;
    int code_bits;   /* bits per code: 3 (WTA/DWTA), 1 (SimHash), 4 (DOPH) */
    int key_bits;    /* min(k * code_bits, key_bits_max) */
    int fold;        /* 1 when k * code_bits > key_bits: keys are folded */
    int64_t n_codes; /* C = k * l */
    uint64_t salt;   /* seeds the densification and DOPH hashes, so they differ per seed */
    int one_in;      /* SimHash: 1 in one_in projection entries is non-zero */
    /* Scratch of a draw (spr_hasher_redraw allocates nothing): WTA/DWTA, one permutation
     * (dim int32); SimHash, build_sum_entries's list lengths (C), counts per length
     * (dim + 2) and slot -> code (4 n_groups int32, as int64 slots). */
    int64_t *draw_work;
    int32_t *bins;   /* WTA/DWTA: (C, 8) input positions of each bin */
    /* WTA/DWTA, for the sparse path: (dim, n_perm) position q in bins (bin q / 8, slot
     * q % 8) of index i in permutation p, -1 where the last, partly used permutation
     * does not reach i. About C * 8 + dim entries. */
    int32_t *inv;
    int64_t n_perm;  /* permutations concatenated into bins: ceil(C * 8 / dim) */
    /* SimHash: the projections stored transposed, (dim, proj_stride) with entries
     * +1, -1 or 0, so that the dot products of all C codes are one pass of axpys over
     * the input's non-zeros (contiguous, vectorisable, and ReLU zeros cost nothing). */
    float *proj;
    int64_t proj_stride; /* floats per row of proj: C rounded up to a cache line */
    /* SimHash, for spr_hasher_keys_rows: the same projections as n_panels panels of
     * (dim, SPR_PANEL), codes 16 q .. 16 q + 15 in panel q, zeros past C. A panel is
     * contiguous (proj's column blocks are 4 * proj_stride bytes apart, which maps them
     * onto a handful of L1 sets) and is what kernels.h's matmul_panels reads. */
    float *panels;
    int64_t n_panels; /* ceil(C / SPR_PANEL) */
    /* SimHash, for spr_hasher_keys_rows: P's non-zeros code by code as kernels.h's
     * signed_sums reads them (groups of 4 codes, lists interleaved and padded to the
     * group's longest). About C d / s entries (s = simhash_one_in). The codes are grouped
     * in order of their list's length, so that a group's lists are about as long as
     * each other and padding costs little: sum_slot[c] is code c's slot, its sums at
     * acc + sum_slot[c] SPR_SUM_ROWS. */
    int32_t *sum_ent;   /* capacity 4 n_groups dim + 1: every list as long as it can be */
    int64_t *sum_start; /* (n_groups + 1) */
    int64_t n_groups;   /* ceil(C / 4) */
    int32_t *sum_slot;  /* (C) */
};

int spr_hash_code_bits(spr_hash_family family) {
    switch (family) {
    case SPR_HASH_DWTA:
    case SPR_HASH_WTA: return 3;
    case SPR_HASH_SIMHASH: return 1;
    /* 4 bits: at a fixed key width, fewer wider codes separate similar from dissimilar
     * sets better ((J + (1-J)/16)^K beats (J + (1-J)/8)^(4K/3)), and 4 keeps K >= 3 at
     * SLIDE's 2^12..2^18 buckets. */
    case SPR_HASH_DOPH: return SPR_DOPH_BITS;
    }
    return 0;
}

void spr_hasher_free(spr_hasher *h) {
    if (!h) return;
    spr_free(h->bins);
    spr_free(h->inv);
    spr_free(h->proj);
    spr_free(h->panels);
    spr_free(h->sum_ent);
    spr_free(h->sum_start);
    spr_free(h->sum_slot);
    spr_free(h->draw_work);
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

/* The inverse of bins, per permutation (see struct spr_hasher). */
static void invert_bins(spr_hasher *h) {
    const int64_t need = h->n_codes * SPR_WTA_BIN, np = h->n_perm;
    for (int64_t i = 0; i < h->dim * np; i++) h->inv[i] = -1;
    for (int64_t q = 0; q < need; q++) h->inv[(int64_t)h->bins[q] * np + q / h->dim] = (int32_t)q;
}

/* SimHash projections: entry (code c, dim j) is +1 or -1 with probability 1/(2 s) each
 * and 0 otherwise (s = one_in), drawn code by code so the functions do not depend on
 * the storage layout. One draw below 2 s per entry: with s = 3 exactly the draws of
 * the fixed density 1/3 every model before the option was made with. */
static void draw_projections(spr_hasher *h, spr_rng *rng, int one_in) {
    for (int64_t c = 0; c < h->n_codes; c++) {
        for (int64_t j = 0; j < h->dim; j++) {
            uint64_t r = spr_rng_below(rng, 2 * (uint64_t)one_in);
            h->proj[j * h->proj_stride + c] = r == 0 ? 1.0f : r == 1 ? -1.0f : 0.0f;
        }
    }
}

/* The entry lists of signed_sums (kernels.h) from proj: code c's non-zeros in ascending
 * j, 2 j + (1 for -1); the tails of shorter lists and the slots past C add +0 (entry
 * 2 dim). Codes take slots in order of their list's length, shortest first, ties by code
 * (a counting sort: deterministic), and a group of 4 slots is padded to its longest list:
 * with P's entries drawn at random, groups of 4 codes in their own order were padded by
 * 30% (1 in 11, dim 128) and 13% (1 in 3), in length order by under 1%. The sums are those
 * of each code's own list whatever its slot, so the keys are unchanged. Allocates nothing:
 * sum_ent holds the longest lists a draw can make. */
static void build_sum_entries(spr_hasher *h) {
    const int64_t c = h->n_codes, dim = h->dim;
    int64_t *len = h->draw_work;             /* (C) */
    int64_t *first = len + c;                /* (dim + 2), per length */
    int32_t *code_at = (int32_t *)(first + dim + 2); /* (4 n_groups), slot -> code */
    memset(first, 0, (size_t)(dim + 2) * sizeof(int64_t));
    for (int64_t i = 0; i < c; i++) {
        len[i] = 0;
        for (int64_t j = 0; j < dim; j++) len[i] += h->proj[j * h->proj_stride + i] != 0.0f;
        first[len[i] + 1]++;
    }
    for (int64_t n = 0; n <= dim; n++) first[n + 1] += first[n];
    for (int64_t i = 0; i < c; i++) {
        const int64_t s = first[len[i]]++;
        code_at[s] = (int32_t)i;
        h->sum_slot[i] = (int32_t)s;
    }
    for (int64_t s = c; s < 4 * h->n_groups; s++) code_at[s] = -1;
    int64_t total = 0;
    for (int64_t g = 0; g < h->n_groups; g++) {
        int64_t longest = 0;
        for (int q = 0; q < 4; q++) {
            const int32_t i = code_at[4 * g + q];
            if (i >= 0 && len[i] > longest) longest = len[i];
        }
        h->sum_start[g] = total;
        total += 4 * longest;
    }
    h->sum_start[h->n_groups] = total;
    for (int64_t g = 0; g < h->n_groups; g++) {
        const int64_t n = (h->sum_start[g + 1] - h->sum_start[g]) / 4;
        for (int q = 0; q < 4; q++) {
            const int32_t i = code_at[4 * g + q];
            int32_t *e = h->sum_ent + h->sum_start[g] + q;
            int64_t k = 0;
            for (int64_t j = 0; i >= 0 && j < dim; j++) {
                const float v = h->proj[j * h->proj_stride + i];
                if (v != 0.0f) e[4 * k++] = (int32_t)((2 * j + (v < 0.0f)) * SPR_SUM_ROWS);
            }
            for (; k < n; k++) e[4 * k] = (int32_t)(2 * dim * SPR_SUM_ROWS);
        }
    }
}

/* The blocks spr_hasher_create allocates, in bytes (0: none): one formula for create and
 * for spr_hasher_bytes. */
enum { B_PROJ, B_PANELS, B_SUM_START, B_SUM_SLOT, B_SUM_ENT, B_BINS, B_INV, B_DRAW, N_BLOCKS };
static void hasher_blocks(spr_hash_family family, int64_t dim, int k, int l, size_t b[N_BLOCKS]) {
    const size_t d = (size_t)dim, n_codes = (size_t)k * (size_t)l;
    memset(b, 0, N_BLOCKS * sizeof *b);
    if (family == SPR_HASH_SIMHASH) {
        const size_t n_panels = (n_codes + SPR_PANEL - 1) / SPR_PANEL, n_groups = (n_codes + 3) / 4;
        b[B_PROJ] = d * (size_t)spr_row_stride((int64_t)n_codes) * sizeof(float);
        b[B_PANELS] = n_panels * d * SPR_PANEL * sizeof(float);
        b[B_SUM_START] = (n_groups + 1) * sizeof(int64_t);
        b[B_SUM_SLOT] = n_codes * sizeof(int32_t);
        b[B_SUM_ENT] = (4 * n_groups * d + 1) * sizeof(int32_t); /* the longest any draw makes */
        b[B_DRAW] = (n_codes + d + 2 + 2 * n_groups) * sizeof(int64_t);
    } else if (family != SPR_HASH_DOPH) { /* DOPH's hashes are all derived from salt */
        const size_t n_perm = (n_codes * SPR_WTA_BIN + d - 1) / d;
        b[B_BINS] = n_codes * SPR_WTA_BIN * sizeof(int32_t);
        b[B_INV] = d * n_perm * sizeof(int32_t);
        b[B_DRAW] = (d + 1) / 2 * sizeof(int64_t); /* dim int32 */
    }
}

int64_t spr_hasher_bytes(spr_hash_family family, int64_t dim, int k, int l) {
    size_t b[N_BLOCKS];
    hasher_blocks(family, dim, k, l, b);
    int64_t bytes = spr_alloc_size(sizeof(spr_hasher));
    for (int i = 0; i < N_BLOCKS; i++) bytes += b[i] ? spr_alloc_size(b[i]) : 0;
    return bytes;
}

spr_status spr_hasher_create(spr_hash_family family, int64_t dim, int k, int l,
                             int key_bits_max, int simhash_one_in, uint64_t seed,
                             spr_hasher **out) {
    spr_hasher *h = NULL;
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: out is NULL");
    *out = NULL;
    if (family != SPR_HASH_DWTA && family != SPR_HASH_WTA && family != SPR_HASH_SIMHASH &&
        family != SPR_HASH_DOPH)
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
                        64 / code_bits,
                        family == SPR_HASH_SIMHASH ? "simhash"
                        : family == SPR_HASH_DOPH  ? "doph"
                                                   : "wta/dwta",
                        code_bits, k);
    if (l < 1 || l > 1024)
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: L (tables) must be in 1..1024, got %d", l);
    if (key_bits_max < 1 || key_bits_max > 30)
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: key_bits_max must be in 1..30, got %d",
                        key_bits_max);
    if (family == SPR_HASH_SIMHASH && (simhash_one_in < 1 || simhash_one_in > SPR_SIMHASH_ONE_IN_MAX))
        return spr_fail(SPR_STATUS_BAD_INPUT, "hash.c: simhash_one_in must be in 1..%d, got %d",
                        SPR_SIMHASH_ONE_IN_MAX, simhash_one_in);

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
    h->one_in = simhash_one_in;
    size_t b[N_BLOCKS];
    hasher_blocks(family, dim, k, l, b);
    if (family == SPR_HASH_SIMHASH) {
        h->proj_stride = spr_row_stride(h->n_codes);
        h->n_panels = (h->n_codes + SPR_PANEL - 1) / SPR_PANEL;
        h->n_groups = (h->n_codes + 3) / 4;
        h->proj = spr_alloc(b[B_PROJ]);
        h->panels = spr_alloc(b[B_PANELS]); /* the panels' zeros past C: spr_alloc's, never redrawn */
        h->sum_start = spr_alloc(b[B_SUM_START]);
        h->sum_slot = spr_alloc(b[B_SUM_SLOT]);
        h->sum_ent = spr_alloc(b[B_SUM_ENT]);
        h->draw_work = spr_alloc(b[B_DRAW]);
        if (!h->proj || !h->panels || !h->sum_start || !h->sum_slot || !h->sum_ent || !h->draw_work)
            goto nomem;
    } else if (family != SPR_HASH_DOPH) {
        h->n_perm = (h->n_codes * SPR_WTA_BIN + dim - 1) / dim;
        h->bins = spr_alloc(b[B_BINS]);
        h->inv = spr_alloc(b[B_INV]);
        h->draw_work = spr_alloc(b[B_DRAW]);
        if (!h->bins || !h->inv || !h->draw_work) goto nomem;
    }
    spr_hasher_redraw(h, seed);
    *out = h;
    return SPR_STATUS_OK;
nomem:
    spr_hasher_free(h);
    return spr_fail(SPR_STATUS_NO_MEMORY, "hash.c: out of memory for the hash functions");
}

void spr_hasher_redraw(spr_hasher *h, uint64_t seed) {
    spr_rng rng;
    spr_rng_seed(&rng, seed);
    h->salt = spr_rng_next(&rng);
    if (h->family == SPR_HASH_SIMHASH) {
        const int64_t dim = h->dim;
        draw_projections(h, &rng, h->one_in);
        for (int64_t q = 0; q < h->n_panels; q++)
            for (int64_t j = 0; j < dim; j++)
                for (int64_t i = 0; i < SPR_PANEL && q * SPR_PANEL + i < h->n_codes; i++)
                    h->panels[(q * dim + j) * SPR_PANEL + i] =
                        h->proj[j * h->proj_stride + q * SPR_PANEL + i];
        build_sum_entries(h);
    } else if (h->family != SPR_HASH_DOPH) {
        draw_bins(h, &rng, (int32_t *)h->draw_work);
        invert_bins(h);
    }
}

int spr_hasher_key_bits(const spr_hasher *h) { return h->key_bits; }

/* Three int32 per code: the codes (SimHash keeps its float dot products there) and, for
 * sparse WTA/DWTA, each bin's best (value, slot) so far as an int64; for SimHash at least
 * one row of spr_hasher_keys_rows's panels (C rounded up to 16, more than 3 C for C < 8). */
int64_t spr_hasher_work_len(const spr_hasher *h) {
    int64_t n = 3 * h->n_codes;
    return h->n_panels * SPR_PANEL > n ? h->n_panels * SPR_PANEL : n;
}

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

/* Sparse WTA codes. Per bin: seen (in codes[b] until the end) has bit s set when slot s
 * holds a non-zero, and bit 8 when slot 0 holds a NaN (the dense scan then keeps slot 0
 * whatever follows; a NaN elsewhere never wins); best (int64 in the scratch after the
 * codes) is the maximum of value * 8 + (7 - slot) over the non-NaN non-zeros, with the
 * value as an order-preserving int32 (float_order): the larger value wins, and on a tie
 * the lower slot, as in the dense scan, with one max per update although slots arrive in
 * index order rather than slot order. The slots not seen hold zeros, so a bin whose
 * non-zeros are all negative has its argmax at its first unseen slot. The result is the
 * dense scan's, bin for bin; the cost is O(C) plus O(nnz * n_perm). */
static inline int32_t float_order(float v) {
    int32_t b;
    memcpy(&b, &v, sizeof b);
    return b ^ ((b >> 31) & INT32_MAX); /* negatives: reverse the magnitude order */
}

static int64_t wta_codes_sparse(const spr_hasher *h, const int32_t *idx, const float *val,
                                int64_t nnz, int32_t *codes, int32_t *scratch,
                                const int densify) {
    const int64_t c = h->n_codes, np = h->n_perm;
    int32_t *seen = codes; /* becomes the codes in place */
    /* int64 through memcpy: the caller's scratch is int32 (compiles to plain moves) */
    unsigned char *best = (unsigned char *)scratch;
    const int64_t none = INT64_MIN;
    for (int64_t b = 0; b < c; b++) {
        seen[b] = 0;
        memcpy(best + 8 * b, &none, 8);
    }
    for (int64_t j = 0; j < nnz; j++) {
        const float v = val[j];
        if (v == 0.0f) continue; /* an explicit zero (or -0) is a zero */
        const int32_t *q = h->inv + (int64_t)idx[j] * np;
        if (v != v) {
            for (int64_t p = 0; p < np; p++)
                if (q[p] >= 0) seen[q[p] >> 3] |= (1 << (q[p] & 7)) | ((q[p] & 7) == 0) << 8;
            continue;
        }
        const int64_t key = (int64_t)float_order(v) * 8 + 7;
        for (int64_t p = 0; p < np; p++) {
            if (q[p] < 0) continue; /* only in the last permutation: predictable */
            const int64_t b = q[p] >> 3;
            const int32_t s = q[p] & (SPR_WTA_BIN - 1);
            int64_t cur;
            memcpy(&cur, best + 8 * b, 8);
            const int64_t cand = key - s;
            cur = cand > cur ? cand : cur;
            memcpy(best + 8 * b, &cur, 8);
            seen[b] |= 1 << s;
        }
    }
    int64_t empty = 0;
    for (int64_t b = 0; b < c; b++) {
        const int32_t sn = seen[b];
        int64_t cur;
        memcpy(&cur, best + 8 * b, 8);
        int32_t arg = 7 - (int32_t)(cur & 7);
        if (sn & 0x100)
            arg = 0;
        else if ((sn & 0xFF) != 0xFF && cur < 0) /* no non-zero above 0: the first zero */
            arg = __builtin_ctz((unsigned)~sn & 0xFFu);
        if (densify && sn == 0) {
            arg = -1;
            empty++;
        }
        codes[b] = arg;
    }
    return empty;
}

/* DOPH's binarisation: the top SPR_DOPH_TOP non-zeros by value, ties broken by a hash of
 * the index (so a binary input longer than the top keeps a consistent random sample of
 * itself, like a bottom-k sketch, rather than its lowest indices). NaNs are skipped.
 * (value, hash) is a strict total order, so the kept set does not depend on the order
 * the non-zeros arrive in. A heap with the worst kept element at the root: O(log 32)
 * per element that enters, O(1) for one that does not. */
typedef struct doph_top {
    int n;
    float v[SPR_DOPH_TOP];
    uint64_t pri[SPR_DOPH_TOP]; /* the tie-break: a lower hash wins */
    int32_t idx[SPR_DOPH_TOP];
} doph_top;

static inline int doph_worse(const doph_top *t, int a, int b) {
    return t->v[a] < t->v[b] || (t->v[a] == t->v[b] && t->pri[a] > t->pri[b]);
}

static inline void doph_swap(doph_top *t, int a, int b) {
    float v = t->v[a];
    uint64_t pri = t->pri[a];
    int32_t i = t->idx[a];
    t->v[a] = t->v[b], t->pri[a] = t->pri[b], t->idx[a] = t->idx[b];
    t->v[b] = v, t->pri[b] = pri, t->idx[b] = i;
}

static inline void doph_push(doph_top *t, uint64_t salt, int32_t i, float v) {
    if (v == 0.0f || v != v) return;
    if (t->n == SPR_DOPH_TOP && v < t->v[0]) return; /* the common exit */
    const uint64_t pri = spr_mix64(salt ^ (uint64_t)(uint32_t)i);
    if (t->n < SPR_DOPH_TOP) { /* append and sift up */
        int c = t->n++;
        t->v[c] = v, t->pri[c] = pri, t->idx[c] = i;
        while (c > 0 && doph_worse(t, c, (c - 1) / 2)) {
            doph_swap(t, c, (c - 1) / 2);
            c = (c - 1) / 2;
        }
        return;
    }
    if (v == t->v[0] && pri > t->pri[0]) return;
    t->v[0] = v, t->pri[0] = pri, t->idx[0] = i; /* replace the worst and sift down */
    for (int c = 0;;) {
        int w = c, l = 2 * c + 1, r = l + 1;
        if (l < SPR_DOPH_TOP && doph_worse(t, l, w)) w = l;
        if (r < SPR_DOPH_TOP && doph_worse(t, r, w)) w = r;
        if (w == c) break;
        doph_swap(t, c, w);
        c = w;
    }
}

/* DOPH codes of the kept set: group g of 8 bins hashes every element with its own salt;
 * the top 3 bits pick the bin, the smallest hash in a bin is its minimum, and the code is
 * that hash's low 4 bits. -1 marks an empty bin. Cost |S| * C / 8 hashes. */
static int64_t doph_codes(const spr_hasher *h, const doph_top *t, int32_t *codes) {
    const int64_t c = h->n_codes;
    const uint64_t low = (1u << SPR_DOPH_BITS) - 1;
    int64_t empty = 0;
    for (int64_t g = 0; g * SPR_DOPH_GROUP < c; g++) {
        const uint64_t salt = spr_mix64(h->salt + 0x632BE59BD9B4E019ull * (uint64_t)(g + 1));
        uint64_t min[SPR_DOPH_GROUP];
        unsigned seen = 0;
        for (int b = 0; b < SPR_DOPH_GROUP; b++) min[b] = UINT64_MAX;
        for (int e = 0; e < t->n; e++) {
            const uint64_t r = spr_mix64(salt ^ (uint64_t)(uint32_t)t->idx[e]);
            const int b = (int)(r >> 61);
            seen |= 1u << b;
            min[b] = r < min[b] ? r : min[b];
        }
        for (int b = 0; b < SPR_DOPH_GROUP && g * SPR_DOPH_GROUP + b < c; b++) {
            const int in = (seen >> b) & 1;
            codes[g * SPR_DOPH_GROUP + b] = in ? (int32_t)(min[b] & low) : -1;
            empty += !in;
        }
    }
    return empty;
}

/* Densification (DWTA and DOPH): empty bin b takes the code of bin mix(salt, b, attempt)
 * mod C, for the first attempt that lands on a bin that was non-empty in the input
 * (borrowed codes are stored as code + 2^bits meanwhile, so a fill never copies another
 * fill and the result does not depend on the order bins are visited). */
static void fill_empty(const spr_hasher *h, int32_t *codes, int64_t empty) {
    const int64_t c = h->n_codes;
    const int32_t width = 1 << h->code_bits;
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
                code = codes[o] & (width - 1);
                break;
            }
        }
        codes[b] = code + width;
    }
    for (int64_t b = 0; b < c; b++) codes[b] &= width - 1;
}

/* acc += v * p. One out-of-line copy shared by the dense and the sparse path, so that both
 * make the same floating-point operations (same contraction, same vector/tail split): the
 * kernel set's axpy (kernels.h; AVX2 + FMA here, where rehashing a 670K-neuron layer is
 * 670K x 128 x 650 multiply-adds). */
static __attribute__((noinline)) void simhash_axpy(float *restrict acc, const float *restrict p,
                                                   float v, int64_t c) {
    spr_axpy(v, p, acc, c);
}

/* SimHash codes: acc = P^T x over the non-zeros of x, code = acc >= 0. */
static void simhash_codes(const spr_hasher *h, const float *x, int32_t *codes, float *acc) {
    const int64_t c = h->n_codes;
    for (int64_t i = 0; i < c; i++) acc[i] = 0.0f;
    for (int64_t j = 0; j < h->dim; j++) {
        const float v = x[j];
        if (v == 0.0f) continue;
        simhash_axpy(acc, h->proj + j * h->proj_stride, v, c);
    }
    /* NaN compares false: code 0, still a valid code. */
    for (int64_t i = 0; i < c; i++) codes[i] = acc[i] >= 0.0f;
}

/* The same over (idx, val): the same non-zeros in the same order, so the same sums. */
static void simhash_codes_sparse(const spr_hasher *h, const int32_t *idx, const float *val,
                                 int64_t nnz, int32_t *codes, float *acc) {
    const int64_t c = h->n_codes;
    for (int64_t i = 0; i < c; i++) acc[i] = 0.0f;
    for (int64_t j = 0; j < nnz; j++) {
        const float v = val[j];
        if (v == 0.0f) continue;
        simhash_axpy(acc, h->proj + (int64_t)idx[j] * h->proj_stride, v, c);
    }
    for (int64_t i = 0; i < c; i++) codes[i] = acc[i] >= 0.0f;
}

/* Key t (to keys[t ts]): codes t*K .. t*K+K-1 concatenated, first in the highest bits,
 * maybe folded. */
static void pack_keys(const spr_hasher *h, const int32_t *codes, uint32_t *keys, int64_t ts) {
    const int cb = h->code_bits;
    for (int t = 0; t < h->l; t++) {
        const int32_t *c = codes + (int64_t)t * h->k;
        uint64_t key = 0;
        for (int j = 0; j < h->k; j++) key = (key << cb) | (uint64_t)c[j];
        if (h->fold) key = (key * SPR_FOLD_MULT) >> (64 - h->key_bits);
        keys[t * ts] = (uint32_t)key;
    }
}

spr_agree spr_hasher_agree(const spr_hasher *h) {
    spr_agree a;
    a.k = h->k, a.bits = h->code_bits, a.exact = h->fold, a.low = 0;
    if (!h->fold)
        for (int j = 0; j < h->k; j++) a.low |= 1u << (j * h->code_bits);
    return a;
}

/* The DOPH salt of the binarisation's tie-break (the bins use salts of their own). */
static inline uint64_t doph_top_salt(const spr_hasher *h) { return spr_mix64(h->salt ^ 0x7E5ull); }

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
    case SPR_HASH_DOPH: {
        doph_top t;
        t.n = 0;
        const uint64_t salt = doph_top_salt(h);
        for (int64_t i = 0; i < h->dim; i++)
            if (x[i] != 0.0f) doph_push(&t, salt, (int32_t)i, x[i]);
        int64_t empty = doph_codes(h, &t, codes);
        if (empty) fill_empty(h, codes, empty);
        break;
    }
    default: wta_codes(h, x, codes, 0); break;
    }
    pack_keys(h, codes, keys, 1);
}

/* int32 slots of signed-sum scratch: acc (4 n_groups, SPR_SUM_ROWS) and xt (2 (dim + 1),
 * SPR_SUM_ROWS), plus 16 to align xt on 64 bytes. */
static int64_t sums_work_len(const spr_hasher *h) {
    /* acc, xt (after alignment), sign_keys32's keys */
    return 4 * h->n_groups * SPR_SUM_ROWS + 2 * (h->dim + 1) * SPR_SUM_ROWS + 16 + h->l * SPR_SUM_ROWS;
}

int64_t spr_hasher_rows_work_len(const spr_hasher *h) {
    int64_t n = spr_hasher_work_len(h);
    if (h->family == SPR_HASH_SIMHASH) {
        int64_t rows = SPR_HASH_ROWS * h->n_panels * SPR_PANEL;
        if (sums_work_len(h) > rows) rows = sums_work_len(h);
        if (rows > n) n = rows;
    }
    return n;
}

static inline uint32_t fold_key(const spr_hasher *h, uint64_t key) {
    if (h->fold) key = (key * SPR_FOLD_MULT) >> (64 - h->key_bits);
    return (uint32_t)key;
}

/* The unfolded keys (k <= 32 codes of one bit) of SPR_SUM_ROWS rows in every table, from
 * signed_sums's slot-major sums: out[t SPR_SUM_ROWS + r], code j of the key the sign of
 * acc[slot[t k + j] SPR_SUM_ROWS + r] (>= 0: 1), first code highest, as pack_keys packs them.
 * In 32-bit lanes over whole blocks of rows, so that it vectorises (it was 15% of a
 * rehash in 64-bit lanes of SSE2). */
static SPR_CLONES void sign_keys32(const float *acc, const int32_t *slot, int k, int l,
                                   uint32_t *out) {
    for (int t = 0; t < l; t++) {
        uint32_t key[SPR_SUM_ROWS] = {0};
        for (int j = 0; j < k; j++) {
            const float *a = acc + (int64_t)slot[t * k + j] * SPR_SUM_ROWS;
            for (int r = 0; r < SPR_SUM_ROWS; r++) key[r] = key[r] << 1 | (uint32_t)(a[r] >= 0.0f);
        }
        memcpy(out + (int64_t)t * SPR_SUM_ROWS, key, sizeof key);
    }
}

/* 1 when the m rows (dim each, row stride `stride`) hold an infinity or a NaN. */
static int rows_nonfinite(const float *x, int64_t m, int64_t stride, int64_t dim) {
    int bad = 0;
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < dim; j++) bad |= (x[r * stride + j] - x[r * stride + j]) != 0.0f;
    return bad;
}

/* SimHash of rows x (n, dim; row stride `stride`), many rows per pass over P.
 *
 * Two kernels (kernels.h), both giving simhash_codes's sums bit for bit. Per code, the
 * one-row path makes the chain acc = +0; acc += x[j] P[j][c] over ascending j with
 * x[j] != 0 (each product is exact: P is +1, -1 or 0; so fused or not, a step is one
 * rounding of acc + (+-x[j]) or of acc + (+-0)). Adding +-0 leaves acc as it is unless
 * acc is -0 (-0 + +0 = +0), and acc is never -0: it starts at +0 and a rounded sum is -0
 * only when both terms are -0 (round to nearest; a non-zero exact sum of two floats never
 * rounds to zero). So the steps with x[j] == 0 or P[j][c] == 0 can be made or skipped
 * alike, as long as x[j] is finite (infinity or NaN times 0 is NaN):
 *  - signed_sums, for blocks of 16 finite rows: per code, the adds of +-x[j] over P's
 *    non-zeros only, in ascending j (a third of the work of a dense product, and on
 *    this project's Zen 1 CPU, with one 256-bit FMA a cycle, about twice as fast);
 *  - matmul_panels, for a block holding an infinity or a NaN: every j, as a product.
 * Codes and keys: code = (sum >= 0), as in spr_hasher_keys (a NaN gives 0). */
static void simhash_keys_rows(const spr_hasher *h, const float *x, int64_t n, int64_t stride,
                              uint32_t *keys, int64_t is, int64_t ts, int32_t *work,
                              int64_t work_len) {
    const int64_t ld = h->n_panels * SPR_PANEL, c = h->n_codes, dim = h->dim;
    const int k = h->k, l = h->l;
    const int sums = work_len >= sums_work_len(h);
    int64_t block = work_len / ld; /* matmul_panels's rows per pass */
    if (block > SPR_HASH_ROWS) block = SPR_HASH_ROWS;
    float *acc = (float *)(void *)work;
    for (int64_t r0 = 0; r0 < n;) {
        int64_t m = n - r0 < SPR_SUM_ROWS ? n - r0 : SPR_SUM_ROWS;
        const float *xb = x + r0 * stride;
        if (sums && !rows_nonfinite(xb, m, stride, dim)) {
            /* acc (4 n_groups, 16), slot-major; xt after it, on a 64-byte boundary */
            float *xt = acc + 4 * h->n_groups * SPR_SUM_ROWS;
            xt += (16 - ((uintptr_t)xt / sizeof(float)) % 16) % 16;
            spr_signed_sums(xb, stride, m, dim, h->sum_ent, h->sum_start, h->n_groups, acc, xt);
            if (!h->fold && k <= 32) { /* the usual case: keys of at most 20 bits */
                uint32_t *raw = (uint32_t *)(void *)(xt + 2 * (dim + 1) * SPR_SUM_ROWS);
                sign_keys32(acc, h->sum_slot, k, l, raw);
                for (int t = 0; t < l; t++)
                    for (int64_t r = 0; r < m; r++) keys[(r0 + r) * is + t * ts] = raw[t * SPR_SUM_ROWS + r];
                r0 += m;
                continue;
            }
            for (int t = 0; t < l; t++) {
                uint64_t key[SPR_SUM_ROWS] = {0};
                for (int j = 0; j < k; j++) {
                    const float *a = acc + (int64_t)h->sum_slot[t * k + j] * SPR_SUM_ROWS;
                    for (int r = 0; r < SPR_SUM_ROWS; r++) key[r] = key[r] << 1 | (a[r] >= 0.0f);
                }
                for (int64_t r = 0; r < m; r++) keys[(r0 + r) * is + t * ts] = fold_key(h, key[r]);
            }
        } else {
            if (m > block) m = block;
            spr_matmul_panels(xb, stride, m, dim, h->panels, h->n_panels, acc, ld);
            for (int64_t r = 0; r < m; r++) {
                const float *a = acc + r * ld;
                int32_t *codes = work + r * ld; /* in place */
                for (int64_t i = 0; i < c; i++) codes[i] = a[i] >= 0.0f;
                pack_keys(h, codes, keys + (r0 + r) * is, ts);
            }
        }
        r0 += m;
    }
}

void spr_hasher_keys_rows(const spr_hasher *h, const float *x, int64_t n, int64_t stride,
                          uint32_t *keys, int64_t item_stride, int64_t table_stride, int32_t *work,
                          int64_t work_len) {
    if (h->family == SPR_HASH_SIMHASH) {
        simhash_keys_rows(h, x, n, stride, keys, item_stride, table_stride, work, work_len);
        return;
    }
    /* The other families cost O(C) lookups per row, not a pass over a matrix: row by row. */
    uint32_t one[1024]; /* a row's keys (L <= 1024, spr_hasher_create) */
    for (int64_t r = 0; r < n; r++) {
        uint32_t *out = table_stride == 1 ? keys + r * item_stride : one;
        spr_hasher_keys(h, x + r * stride, out, work);
        if (out == one)
            for (int t = 0; t < h->l; t++) keys[r * item_stride + t * table_stride] = one[t];
    }
}

void spr_hasher_keys_sparse(const spr_hasher *h, const int32_t *idx, const float *val,
                            int64_t nnz, uint32_t *keys, int32_t *work) {
    int32_t *codes = work;
    switch (h->family) {
    case SPR_HASH_SIMHASH:
        simhash_codes_sparse(h, idx, val, nnz, codes, (float *)(void *)work);
        break;
    case SPR_HASH_DWTA: {
        int64_t empty = wta_codes_sparse(h, idx, val, nnz, codes, work + h->n_codes, 1);
        if (empty) fill_empty(h, codes, empty);
        break;
    }
    case SPR_HASH_DOPH: {
        doph_top t;
        t.n = 0;
        const uint64_t salt = doph_top_salt(h);
        for (int64_t j = 0; j < nnz; j++) doph_push(&t, salt, idx[j], val[j]);
        int64_t empty = doph_codes(h, &t, codes);
        if (empty) fill_empty(h, codes, empty);
        break;
    }
    default: wta_codes_sparse(h, idx, val, nnz, codes, work + h->n_codes, 0); break;
    }
    pack_keys(h, codes, keys, 1);
}

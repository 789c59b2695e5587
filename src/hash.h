/*
 * hash.h: locality-sensitive hash families behind one interface.
 *
 * A hasher maps a vector of dimension dim to L table keys, each the concatenation of K
 * codes of bits_per_code bits (exact widths: DWTA/WTA codes are positions 0..7 in a bin
 * of 8, 3 bits; SimHash codes are signs, 1 bit; DOPH codes are 4 low bits of a bin's
 * minimum hash). When K * bits exceeds the key width the
 * tables were sized for, the concatenation is folded by a multiplicative hash.
 */
#ifndef SPR_HASH_H
#define SPR_HASH_H

#include "sparrow.h"

#include <stdint.h>

typedef struct spr_hasher spr_hasher;

/* Bits one code of the family takes (3 for DWTA/WTA bins of 8, 1 for SimHash, 4 for DOPH). */
int spr_hash_code_bits(spr_hash_family family);

/* Draws the hash functions from seed. key_bits_max caps the key width (table size).
 * simhash_one_in: SimHash only (ignored by the other families), each projection entry
 * is non-zero (+1 or -1, equally likely) with probability 1 / simhash_one_in, in
 * 1..SPR_SIMHASH_ONE_IN_MAX (the model resolves its 0, "automatic", before this); 3
 * draws exactly the functions every sparrow before the option drew. */
spr_status spr_hasher_create(spr_hash_family family, int64_t dim, int k, int l,
                             int key_bits_max, int simhash_one_in, uint64_t seed,
                             spr_hasher **out);
void spr_hasher_free(spr_hasher *h);

/* Bytes spr_hasher_create allocates for this shape (the model's memory estimate and
 * spr_model_info's table_bytes count them; SimHash's projections are dim x K L floats, a
 * few MB at most in the usual shapes, 84 MB at K 20, L 1024 over 1,024 inputs). */
int64_t spr_hasher_bytes(spr_hash_family family, int64_t dim, int k, int l);

/* Redraws h's functions from seed, in place: afterwards h is the hasher spr_hasher_create
 * would make with this seed (same shape, same keys). Allocates nothing and cannot fail
 * (create allocated for any draw: SimHash's entry lists for the longest they can be), so
 * a rebuild in the middle of training neither allocates nor leaves a layer half changed. */
void spr_hasher_redraw(spr_hasher *h, uint64_t seed);

/* log2 of the number of buckets per table. */
int spr_hasher_key_bits(const spr_hasher *h);

/* int32 slots of scratch spr_hasher_keys and spr_hasher_keys_sparse need (3 K L, or
 * K L rounded up to 16 for SimHash when that is more). */
int64_t spr_hasher_work_len(const spr_hasher *h);

/* keys[0..L) of the dense vector x (dim): every key < 2^key_bits, deterministic.
 * work: spr_hasher_work_len(h) int32 of caller scratch. Cost O(K L bin + dim) for
 * DWTA/WTA, O(K L dim / 3) for SimHash, O(dim + 32 K L / 8) for DOPH. */
void spr_hasher_keys(const spr_hasher *h, const float *x, uint32_t *keys, int32_t *work);

/* The keys of n rows at once: row r is x + r stride (dim floats), its key of table t goes
 * to keys[r item_stride + t table_stride] (item_stride L, table_stride 1: row by row as
 * spr_hasher_keys writes them; 1 and the item count: table by table, as spr_lsh_build
 * reads them fastest), bit for bit what spr_hasher_keys gives for that row. work:
 * work_len >= spr_hasher_work_len(h) int32 of caller scratch; SimHash hashes up to 24
 * rows per pass over its projections with spr_hasher_rows_work_len(h) of it (fewer with
 * less), which is what makes hashing every neuron of a layer compute-bound rather than
 * bound by reading the projections from L2 once per row. */
int64_t spr_hasher_rows_work_len(const spr_hasher *h);
void spr_hasher_keys_rows(const spr_hasher *h, const float *x, int64_t n, int64_t stride,
                          uint32_t *keys, int64_t item_stride, int64_t table_stride, int32_t *work,
                          int64_t work_len);

/* The same keys for a sparse vector: nnz values val at ascending, distinct indices idx
 * (< dim), every other coordinate 0. Gives exactly the keys spr_hasher_keys gives for
 * the dense vector; costs O(nnz x permutations) for DWTA/WTA/DOPH, O(nnz x K L) for
 * SimHash, instead of O(dim). */
void spr_hasher_keys_sparse(const spr_hasher *h, const int32_t *idx, const float *val,
                            int64_t nnz, uint32_t *keys, int32_t *work);

/* How to count the codes two keys of a hasher share (for ranking candidates by code
 * agreement rather than whole-key collisions): k codes of `bits` bits, `low` has the
 * lowest bit of each code set; `exact` when keys are folded and only whole keys compare. */
typedef struct spr_agree {
    uint32_t low;
    int bits, k, exact;
} spr_agree;

#define SPR_KEY_ABSENT UINT32_MAX /* a neuron's key in a table that does not hold it */

spr_agree spr_hasher_agree(const spr_hasher *h);

/* Codes of key x (a query's) equal to those of key y (a neuron's): 0..k; 0 when y is
 * SPR_KEY_ABSENT. A code differs when any of its bits differs: OR the bits of each code
 * of x ^ y down onto its lowest bit and count those. */
static inline int spr_agree_count(spr_agree a, uint32_t x, uint32_t y) {
    if (x == y) return a.k;
    if (a.exact || y == SPR_KEY_ABSENT) return 0;
    uint32_t d = x ^ y, m = d;
    for (int i = 1; i < a.bits; i++) m |= d >> i;
    return a.k - __builtin_popcount(m & a.low);
}

#endif /* SPR_HASH_H */

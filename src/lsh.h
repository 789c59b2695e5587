/*
 * lsh.h: L hash tables of 2^key_bits buckets over n_items neurons, packed: per table an
 * offset array (2^key_bits + 1) and the ids of all items, grouped by bucket. No memory
 * goes to empty slots: a table costs 4 (2^key_bits + 1 + n_items) bytes. Buckets hold at
 * most `capacity` ids: FIFO keeps the last inserted, reservoir a uniform sample.
 * Tables are rebuilt whole from a key matrix (a rehash); queries are read-only and
 * may run from any number of threads.
 */
#ifndef SPR_LSH_H
#define SPR_LSH_H

#include "sparrow.h"

#include <stdint.h>

typedef struct spr_lsh {
    int l;                 /* tables */
    int key_bits;          /* buckets per table = 2^key_bits */
    int64_t n_items;       /* items inserted per table (neurons of the layer) */
    int capacity;          /* ids kept per bucket at most */
    spr_bucket_policy policy;
    uint32_t *offsets;     /* (l, 2^key_bits + 1): bucket b of table t is ids[t][offsets[t][b] .. offsets[t][b+1]) */
    int32_t *ids;          /* (l, n_items): only the first offsets[t][2^key_bits] of each row are used */
    uint32_t *fill;        /* (l, 2^key_bits) per-bucket counters, scratch of spr_lsh_build */
} spr_lsh;

spr_status spr_lsh_create(int l, int key_bits, int64_t n_items, int capacity,
                          spr_bucket_policy policy, spr_lsh **out);
void spr_lsh_free(spr_lsh *t);

/* Rebuilds every table from keys: item i goes to bucket keys[i item_stride + t
 * table_stride] of table t, bounded by the capacity. Item by item (item_stride l,
 * table_stride 1) or table by table (1, n_items: faster, build_tables says why), the same
 * tables. Insertion order is item order (so FIFO keeps the highest ids of an overfull
 * bucket); the reservoir draws from seed. Parallel over tables. */
void spr_lsh_build(spr_lsh *t, const uint32_t *keys, int64_t item_stride, int64_t table_stride,
                   uint64_t seed, int threads);

/* Bucket `key` of table `table`: *count ids starting at the returned pointer. */
static inline const int32_t *spr_lsh_bucket(const spr_lsh *t, int table, uint32_t key,
                                            int64_t *count) {
    const uint32_t *off = t->offsets + (size_t)table * (((size_t)1 << t->key_bits) + 1);
    *count = (int64_t)off[key + 1] - (int64_t)off[key];
    return t->ids + (size_t)table * (size_t)t->n_items + off[key];
}

/* What the tables hold, per item: keys (n_items, l) gets the bucket of item i in table t,
 * or SPR_KEY_ABSENT (hash.h) where an overfull bucket dropped it. Lets rank selection
 * compare a query's codes with exactly the codes the tables were built from (also after
 * a checkpoint restored the tables). Parallel over tables. */
void spr_lsh_item_keys(const spr_lsh *t, uint32_t *keys, int threads);

/* Bytes held by the tables. */
int64_t spr_lsh_bytes(const spr_lsh *t);

#endif /* SPR_LSH_H */

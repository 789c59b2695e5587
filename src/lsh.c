/*
 * lsh.c: packed LSH tables (lsh.h). Each rebuild is a counting sort per table: count
 * the items of every bucket, cap the counts at the capacity, prefix sums give the
 * offsets, then the kept items are placed. O(2^key_bits + n_items) per table, no
 * allocation (the counters live in `fill`, made once by create).
 */
#include "lsh.h"

#include "common.h"
#include "hash.h"

#include <string.h>

spr_status spr_lsh_create(int l, int key_bits, int64_t n_items, int capacity,
                          spr_bucket_policy policy, spr_lsh **out) {
    spr_lsh *t = NULL;
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "lsh.c: out is NULL");
    *out = NULL;
    if (l < 1 || l > 1024)
        return spr_fail(SPR_STATUS_BAD_INPUT, "lsh.c: L (tables) must be in 1..1024, got %d", l);
    if (key_bits < 1 || key_bits > 30)
        return spr_fail(SPR_STATUS_BAD_INPUT, "lsh.c: key_bits must be in 1..30, got %d",
                        key_bits);
    /* ids are int32 and offsets uint32. */
    if (n_items < 1 || n_items > INT32_MAX)
        return spr_fail(SPR_STATUS_BAD_INPUT, "lsh.c: n_items must be in 1..%d, got %lld",
                        (int)INT32_MAX, (long long)n_items);
    if (capacity < 1)
        return spr_fail(SPR_STATUS_BAD_INPUT, "lsh.c: bucket capacity must be >= 1, got %d",
                        capacity);
    if (policy != SPR_BUCKET_FIFO && policy != SPR_BUCKET_RESERVOIR)
        return spr_fail(SPR_STATUS_BAD_INPUT, "lsh.c: unknown bucket policy %d", (int)policy);

    t = spr_alloc(sizeof *t);
    if (!t) return SPR_STATUS_NO_MEMORY;
    t->l = l;
    t->key_bits = key_bits;
    t->n_items = n_items;
    t->capacity = capacity;
    t->policy = policy;
    const size_t buckets = (size_t)1 << key_bits;
    /* Zeroed offsets: every bucket is empty until the first build. */
    t->offsets = spr_alloc((size_t)l * (buckets + 1) * sizeof(uint32_t));
    t->ids = spr_alloc((size_t)l * (size_t)n_items * sizeof(int32_t));
    t->fill = spr_alloc((size_t)l * buckets * sizeof(uint32_t));
    if (!t->offsets || !t->ids || !t->fill) {
        spr_lsh_free(t);
        return SPR_STATUS_NO_MEMORY;
    }
    *out = t;
    return SPR_STATUS_OK;
}

void spr_lsh_free(spr_lsh *t) {
    if (!t) return;
    spr_free(t->offsets);
    spr_free(t->ids);
    spr_free(t->fill);
    spr_free(t);
}

/* Tables t0 .. t0 + g - 1, the key of item i in table t0 + q at key[i is + q ts] (key =
 * keys + t0 ts), in one pass over the keys per phase. Keys item by item (ts 1): a table
 * reads one key in each item's 4 l bytes, so building tables one at a time streamed the
 * whole matrix (134 MB at 670K neurons, 400 MB at 2M) from memory 2 l times; g =
 * SPR_LSH_GROUP tables at a time share each cache line fetched while their counters
 * (4 x 2^key_bits bytes each) still fit in L2 at the usual key widths. Keys table by
 * table (is 1): one table at a time reads its keys in sequence, and its scattered writes
 * (ids, 4 n_items bytes) have a quarter of the footprint of four tables' (8 MB against
 * 32 MB a thread at 2M: in L3 rather than out of it); 1.1-1.4 s -> 0.4-0.5 s for 50
 * tables of 2M items on this machine's 2 cores (Zen 3, 32 MB L3). Every table sees its
 * items in the same order and draws from its own generator, so the tables are exactly
 * those of one table at a time in either layout. Keys are masked to key_bits, so a key
 * out of range lands in a wrong bucket but never writes out of bounds. */
#define SPR_LSH_GROUP 4
static void build_tables(spr_lsh *t, int t0, int g, const uint32_t *keys, int64_t is, int64_t ts,
                         uint64_t seed) {
    const size_t buckets = (size_t)1 << t->key_bits;
    const uint32_t mask = (uint32_t)(buckets - 1);
    const int64_t n = t->n_items;
    const uint32_t cap = (uint32_t)t->capacity;
    uint32_t *off[SPR_LSH_GROUP]; /* (buckets + 1) each */
    int32_t *ids[SPR_LSH_GROUP];  /* (n_items) each */
    uint32_t *cnt[SPR_LSH_GROUP]; /* (buckets) each */
    const uint32_t *key = keys + t0 * ts; /* key[i is + q ts]: item i, table t0 + q */
    for (int q = 0; q < g; q++) {
        off[q] = t->offsets + (size_t)(t0 + q) * (buckets + 1);
        ids[q] = t->ids + (size_t)(t0 + q) * (size_t)n;
        cnt[q] = t->fill + (size_t)(t0 + q) * buckets;
        memset(cnt[q], 0, buckets * sizeof *cnt[q]);
    }
    for (int64_t i = 0; i < n; i++)
        for (int q = 0; q < g; q++) cnt[q][key[i * is + q * ts] & mask]++;
    for (int q = 0; q < g; q++) {
        off[q][0] = 0;
        for (size_t b = 0; b < buckets; b++) {
            uint32_t c = cnt[q][b] < cap ? cnt[q][b] : cap;
            off[q][b + 1] = off[q][b] + c;
            cnt[q][b] = c;
        }
        /* ids past the last bucket (items that full buckets dropped) are zero, so that a
         * rebuild gives the same bytes as a fresh build (checkpoints save them as they are) */
        memset(ids[q] + off[q][buckets], 0, (size_t)(n - (int64_t)off[q][buckets]) * sizeof *ids[q]);
    }

    if (t->policy == SPR_BUCKET_FIFO) {
        /* Newest first: walking the items backwards, a bucket takes items while it has
         * free slots, i.e. exactly its last `capacity` items, filled from the end so that
         * they end up in increasing id order. cnt drains back to all zeros. */
        for (int64_t i = n - 1; i >= 0; i--)
            for (int q = 0; q < g; q++) {
                uint32_t b = key[i * is + q * ts] & mask;
                if (cnt[q][b] == 0) continue;
                cnt[q][b]--;
                ids[q][off[q][b] + cnt[q][b]] = (int32_t)i;
            }
    } else {
        /* Algorithm R per bucket, cnt counting the items seen so far: the first
         * `capacity` fill the slots, the i-th (0-based) after that replaces slot j,
         * j uniform in 0..i, when j < capacity. */
        spr_rng rng[SPR_LSH_GROUP];
        for (int q = 0; q < g; q++) {
            spr_rng_seed(&rng[q], spr_mix64(seed) ^ (uint64_t)(t0 + q));
            memset(cnt[q], 0, buckets * sizeof *cnt[q]);
        }
        for (int64_t i = 0; i < n; i++)
            for (int q = 0; q < g; q++) {
                uint32_t b = key[i * is + q * ts] & mask;
                uint32_t seen = cnt[q][b]++;
                if (seen < cap) {
                    ids[q][off[q][b] + seen] = (int32_t)i;
                } else {
                    uint64_t j = spr_rng_below(&rng[q], (uint64_t)seen + 1);
                    if (j < cap) ids[q][off[q][b] + j] = (int32_t)i;
                }
            }
    }
}

void spr_lsh_build(spr_lsh *t, const uint32_t *keys, int64_t item_stride, int64_t table_stride,
                   uint64_t seed, int threads) {
    /* Groups of tables are independent and each table draws from (seed, table): the
     * result does not depend on the number of threads. */
    const int group = table_stride == 1 ? SPR_LSH_GROUP : 1;
    const int groups = (t->l + group - 1) / group;
#pragma omp parallel for num_threads(spr_threads(threads)) schedule(dynamic, 1)
    for (int gi = 0; gi < groups; gi++) {
        const int t0 = gi * group;
        build_tables(t, t0, t->l - t0 < group ? t->l - t0 : group, keys, item_stride,
                     table_stride, seed);
    }
}

void spr_lsh_item_keys(const spr_lsh *t, uint32_t *keys, int threads) {
    const int64_t buckets = (int64_t)1 << t->key_bits;
#pragma omp parallel for num_threads(spr_threads(threads)) schedule(dynamic, 1)
    for (int table = 0; table < t->l; table++) {
        const uint32_t *off = t->offsets + (size_t)table * (size_t)(buckets + 1);
        const int32_t *ids = t->ids + (size_t)table * (size_t)t->n_items;
        for (int64_t i = 0; i < t->n_items; i++) keys[i * t->l + table] = SPR_KEY_ABSENT;
        for (int64_t b = 0; b < buckets; b++)
            for (uint32_t k = off[b]; k < off[b + 1]; k++) keys[(int64_t)ids[k] * t->l + table] = (uint32_t)b;
    }
}

int64_t spr_lsh_bytes(const spr_lsh *t) {
    const int64_t buckets = (int64_t)1 << t->key_bits;
    return (int64_t)sizeof(uint32_t) * t->l * (buckets + 1) /* offsets */
           + (int64_t)sizeof(int32_t) * t->l * t->n_items   /* ids */
           + (int64_t)sizeof(uint32_t) * t->l * buckets;    /* fill (build counters) */
}

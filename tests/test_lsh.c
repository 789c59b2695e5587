/*
 * test_lsh.c: the packed LSH tables of src/lsh.c. No id lost or duplicated, capacity
 * respected, FIFO keeps the newest, reservoir keeps a uniform sample (chi-square),
 * results independent of the thread count and of the keys' layout, memory as the layout
 * says.
 * Prints its seed (SPR_TEST_SEED overrides it) and exits non-zero on any failure.
 */
#include "check.h"
#include "common.h"
#include "hash.h"
#include "lsh.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static spr_lsh *make(int l, int key_bits, int64_t n, int cap, spr_bucket_policy p) {
    spr_lsh *t = NULL;
    if (spr_lsh_create(l, key_bits, n, cap, p, &t) != SPR_STATUS_OK) {
        printf("FAIL create(l %d, bits %d, n %lld, cap %d): %s\n", l, key_bits, (long long)n,
               cap, spr_last_error());
        exit(1);
    }
    return t;
}

static void random_keys(uint32_t *keys, int64_t n, int l, int key_bits, uint64_t seed) {
    spr_rng r;
    spr_rng_seed(&r, seed);
    for (int64_t i = 0; i < n * l; i++) keys[i] = (uint32_t)spr_rng_below(&r, 1u << key_bits);
}

/* With capacity >= n every item is in its bucket of every table, once. */
static void test_complete(spr_bucket_policy policy, uint64_t seed) {
    const int l = 6, bits = 8;
    const int64_t n = 5000;
    spr_lsh *t = make(l, bits, n, (int)n, policy);
    uint32_t *keys = malloc(sizeof(uint32_t) * n * l);
    int *seen = malloc(sizeof(int) * n);
    for (int round = 0; round < 2; round++) {
        random_keys(keys, n, l, bits, seed + (uint64_t)round);
        spr_lsh_build(t, keys, l, 1, seed, 2);
        int lost = 0, dup = 0, wrong = 0;
        for (int tb = 0; tb < l; tb++) {
            memset(seen, 0, sizeof(int) * n);
            for (uint32_t b = 0; b < 1u << bits; b++) {
                int64_t c;
                const int32_t *ids = spr_lsh_bucket(t, tb, b, &c);
                for (int64_t j = 0; j < c; j++) {
                    if (ids[j] < 0 || ids[j] >= n) { wrong++; continue; }
                    seen[ids[j]]++;
                    wrong += keys[(int64_t)ids[j] * l + tb] != b;
                }
            }
            for (int64_t i = 0; i < n; i++) lost += seen[i] == 0, dup += seen[i] > 1;
        }
        CHECK(lost == 0 && dup == 0 && wrong == 0,
              "%s build %d: every item once in its bucket expected; got %d lost, %d duplicated, "
              "%d misplaced",
              policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir", round + 1, lost, dup, wrong);
    }
    free(seen);
    free(keys);
    spr_lsh_free(t);
}

/* Small capacity: counts are min(items in the bucket, capacity), ids distinct and from
 * the bucket; FIFO keeps exactly the highest ids. */
static void test_capped(spr_bucket_policy policy, uint64_t seed) {
    const int l = 4, bits = 6, cap = 5;
    const int64_t n = 3000;
    spr_lsh *t = make(l, bits, n, cap, policy);
    uint32_t *keys = malloc(sizeof(uint32_t) * n * l);
    random_keys(keys, n, l, bits, seed ^ 77);
    spr_lsh_build(t, keys, l, 1, seed, 1);
    int bad_count = 0, bad_member = 0, bad_fifo = 0, dup = 0;
    for (int tb = 0; tb < l; tb++) {
        for (uint32_t b = 0; b < 1u << bits; b++) {
            int64_t want = 0;
            for (int64_t i = 0; i < n; i++) want += keys[i * l + tb] == b;
            int64_t c;
            const int32_t *ids = spr_lsh_bucket(t, tb, b, &c);
            int64_t expect = want < cap ? want : cap;
            bad_count += c != expect;
            for (int64_t j = 0; j < c; j++) {
                bad_member += keys[(int64_t)ids[j] * l + tb] != b;
                for (int64_t j2 = 0; j2 < j; j2++) dup += ids[j] == ids[j2];
            }
            if (policy == SPR_BUCKET_FIFO && c == expect) {
                /* The newest `expect` items of the bucket, as a set. */
                int64_t found = 0;
                for (int64_t i = n - 1; i >= 0 && found < expect; i--) {
                    if (keys[i * l + tb] != b) continue;
                    int in = 0;
                    for (int64_t j = 0; j < c; j++) in |= ids[j] == i;
                    bad_fifo += !in;
                    found++;
                }
            }
        }
    }
    const char *name = policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir";
    CHECK(bad_count == 0, "%s: bucket counts == min(n_b, %d) expected, %d buckets differ", name, cap,
          bad_count);
    CHECK(bad_member == 0 && dup == 0, "%s: ids from their bucket, distinct: %d foreign, %d dups",
          name, bad_member, dup);
    if (policy == SPR_BUCKET_FIFO)
        CHECK(bad_fifo == 0, "fifo: the newest items of each bucket expected, %d missing", bad_fifo);
    free(keys);
    spr_lsh_free(t);
}

/* One overfull bucket (n items, capacity c) over many builds with different seeds: each
 * item is kept with probability c/n. Chi-square over the n inclusion counts. */
static void test_reservoir_uniform(uint64_t seed) {
    const int64_t n = 40;
    const int cap = 8, builds = 4000, l = 2;
    spr_lsh *t = make(l, 1, n, cap, SPR_BUCKET_RESERVOIR);
    uint32_t *keys = calloc((size_t)(n * l), sizeof *keys); /* every item in bucket 0 */
    long counts[2][40] = {{0}};
    for (int s = 0; s < builds; s++) {
        spr_lsh_build(t, keys, l, 1, seed * 1000003u + (uint64_t)s, 1);
        for (int tb = 0; tb < l; tb++) {
            int64_t c;
            const int32_t *ids = spr_lsh_bucket(t, tb, 0, &c);
            if (c != cap) {
                CHECK(c == cap, "reservoir: bucket of %d expected, got %lld", cap, (long long)c);
                goto out;
            }
            for (int j = 0; j < cap; j++) counts[tb][ids[j]]++;
        }
    }
    for (int tb = 0; tb < l; tb++) {
        /* Inclusion counts are binomial(builds, c/n) (not independent across items, as the
         * total is fixed, which only makes the statistic smaller): chi-square with n - 1
         * degrees of freedom, accepted below mean + 5 standard deviations. */
        double p = (double)cap / n, e = builds * p, chi = 0;
        for (int i = 0; i < n; i++) chi += (counts[tb][i] - e) * (counts[tb][i] - e) / (e * (1 - p));
        double df = (double)n - 1, limit = df + 5 * sqrt(2 * df);
        CHECK(chi < limit, "reservoir table %d: chi-square of inclusion counts < %.1f expected "
              "(df %.0f), got %.1f", tb, limit, df, chi);
        /* The first `cap` items must not be favoured (a classic off-by-one). */
        double first = 0, last = 0;
        for (int i = 0; i < cap; i++) first += counts[tb][i], last += counts[tb][n - 1 - i];
        CHECK(fabs(first - last) < 6 * sqrt(2 * cap * e),
              "reservoir table %d: first %d items kept %.0f times, last %d %.0f (expected about %.0f each)",
              tb, cap, first, cap, last, cap * e);
    }
    /* Two tables draw from different streams. */
    int same = 0;
    spr_lsh_build(t, keys, l, 1, seed, 1);
    {
        int64_t c0, c1;
        const int32_t *a = spr_lsh_bucket(t, 0, 0, &c0), *b = spr_lsh_bucket(t, 1, 0, &c1);
        same = c0 == c1 && memcmp(a, b, sizeof(int32_t) * (size_t)c0) == 0;
    }
    CHECK(!same, "reservoir: tables 0 and 1 should sample differently");
out:
    free(keys);
    spr_lsh_free(t);
}

/* The same tables, byte for byte (offsets, and ids including the zeroed tail), from 1 or
 * 2 threads and from the keys item by item or table by table (L 7: groups of 4 and a
 * partial one in the first layout, one table a group in the second). */
static void test_threads(spr_bucket_policy policy, uint64_t seed) {
    const int l = 7, bits = 10, cap = 3;
    const int64_t n = 20000;
    spr_lsh *t[3];
    for (int v = 0; v < 3; v++) t[v] = make(l, bits, n, cap, policy);
    uint32_t *keys = malloc(sizeof(uint32_t) * n * l), *by_table = malloc(sizeof(uint32_t) * n * l);
    random_keys(keys, n, l, bits, seed ^ 99);
    for (int64_t i = 0; i < n; i++)
        for (int tb = 0; tb < l; tb++) by_table[(int64_t)tb * n + i] = keys[i * l + tb];
    spr_lsh_build(t[0], keys, l, 1, seed, 1);
    spr_lsh_build(t[1], keys, l, 1, seed, 2);
    spr_lsh_build(t[2], by_table, 1, n, seed, 2);
    const size_t off_n = (size_t)l * ((1u << bits) + 1);
    const char *what[3] = {"", "2 threads", "2 threads, keys by table"};
    for (int v = 1; v < 3; v++) {
        const int same_off = memcmp(t[0]->offsets, t[v]->offsets, off_n * sizeof(uint32_t)) == 0;
        const int same_ids = memcmp(t[0]->ids, t[v]->ids, (size_t)(n * l) * sizeof(int32_t)) == 0;
        CHECK(same_off && same_ids, "%s: %s gives the tables of 1 thread (offsets %s, ids %s)",
              policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir", what[v],
              same_off ? "same" : "differ", same_ids ? "same" : "differ");
    }
    free(keys);
    free(by_table);
    for (int v = 0; v < 3; v++) spr_lsh_free(t[v]);
}

static void test_bytes_and_args(void) {
    spr_lsh *t = make(50, 18, 670091, 128, SPR_BUCKET_FIFO);
    int64_t want = 4LL * 50 * ((1 << 18) + 1) + 4LL * 50 * 670091 + 4LL * 50 * (1 << 18);
    CHECK(spr_lsh_bytes(t) == want, "bytes: expected %lld, got %lld", (long long)want,
          (long long)spr_lsh_bytes(t));
    /* Before any build every bucket is empty. */
    int64_t c = -1;
    spr_lsh_bucket(t, 49, (1u << 18) - 1, &c);
    CHECK(c == 0, "fresh table: empty bucket expected, got %lld ids", (long long)c);
    spr_lsh_free(t);
    spr_lsh_free(NULL);

    struct { int l, bits; int64_t n; int cap, pol; const char *what; } bad[] = {
        {0, 10, 10, 4, 0, "l 0"},       {1025, 10, 10, 4, 0, "l 1025"},
        {4, 0, 10, 4, 0, "bits 0"},     {4, 31, 10, 4, 0, "bits 31"},
        {4, 10, 0, 4, 0, "n 0"},        {4, 10, (int64_t)1 << 31, 4, 0, "n 2^31"},
        {4, 10, 10, 0, 0, "capacity 0"}, {4, 10, 10, 4, 7, "policy 7"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spr_lsh *o = (spr_lsh *)1;
        spr_status st = spr_lsh_create(bad[i].l, bad[i].bits, bad[i].n, bad[i].cap,
                                       (spr_bucket_policy)bad[i].pol, &o);
        CHECK(st == SPR_STATUS_BAD_INPUT && o == NULL && spr_last_error()[0],
              "%s: BAD_INPUT, NULL handle and a message expected, got %d '%s'", bad[i].what,
              (int)st, spr_last_error());
    }
}

/* Not a check: a rebuild of the reference configuration's tables. */
static void report_timing(uint64_t seed) {
    const int l = 50, bits = 18;
    const int64_t n = 200000;
    spr_lsh *t = make(l, bits, n, 128, SPR_BUCKET_FIFO);
    uint32_t *keys = malloc(sizeof(uint32_t) * n * l);
    random_keys(keys, n, l, bits, seed);
    spr_lsh_build(t, keys, l, 1, seed, 2);
    double t0 = spr_now();
    spr_lsh_build(t, keys, l, 1, seed, 2);
    printf("time: build L=%d 2^%d buckets, %lld items, 2 threads: %.1f ms\n", l, bits,
           (long long)n, (spr_now() - t0) * 1e3);
    free(keys);
    spr_lsh_free(t);
}

/* spr_lsh_item_keys: every id a table holds gets its bucket, every id an overfull bucket
 * dropped gets SPR_KEY_ABSENT; as many present per table as the table holds. */
static void test_item_keys(spr_bucket_policy policy, uint64_t seed) {
    const int l = 4, bits = 6, cap = 5;
    const int64_t n = 600; /* about 9 per bucket: many overfull */
    spr_lsh *t = make(l, bits, n, cap, policy);
    uint32_t *keys = malloc(sizeof(uint32_t) * n * l), *held = malloc(sizeof(uint32_t) * n * l);
    random_keys(keys, n, l, bits, seed ^ 99);
    spr_lsh_build(t, keys, l, 1, seed, 1);
    spr_lsh_item_keys(t, held, 2);
    int bad = 0;
    int64_t absent = 0;
    for (int tb = 0; tb < l; tb++) {
        int64_t present = 0;
        for (int64_t i = 0; i < n; i++) {
            uint32_t k = held[i * l + tb];
            if (k == SPR_KEY_ABSENT) { absent++; continue; }
            present++;
            bad += k != keys[i * l + tb];
            int64_t c, in = 0;
            const int32_t *ids = spr_lsh_bucket(t, tb, k, &c);
            for (int64_t j = 0; j < c; j++) in += ids[j] == i;
            bad += in != 1;
        }
        int64_t c_all = 0, c;
        for (uint32_t b = 0; b < 1u << bits; b++) spr_lsh_bucket(t, tb, b, &c), c_all += c;
        bad += present != c_all;
    }
    CHECK(bad == 0, "item keys: held ids have their bucket, dropped ones absent: %d mismatches", bad);
    CHECK(absent > 0, "item keys: overfull buckets dropped some ids expected, none absent");
    free(keys), free(held);
    spr_lsh_free(t);
}

int main(void) {
    uint64_t seed = 20240601;
    const char *env = getenv("SPR_TEST_SEED");
    if (env) seed = strtoull(env, NULL, 10);
    printf("test_lsh: seed %llu\n", (unsigned long long)seed);

    test_bytes_and_args();
    test_complete(SPR_BUCKET_FIFO, seed);
    test_complete(SPR_BUCKET_RESERVOIR, seed);
    test_capped(SPR_BUCKET_FIFO, seed);
    test_capped(SPR_BUCKET_RESERVOIR, seed);
    test_reservoir_uniform(seed);
    test_item_keys(SPR_BUCKET_FIFO, seed);
    test_item_keys(SPR_BUCKET_RESERVOIR, seed);
    test_threads(SPR_BUCKET_FIFO, seed);
    test_threads(SPR_BUCKET_RESERVOIR, seed);
    report_timing(seed);

    return CHECK_DONE("test_lsh");
}

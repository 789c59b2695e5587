/*
 * test_hash.c: the hash families of src/hash.c. Statistical checks (SimHash's collision
 * probability, WTA/DWTA's monotonicity in similarity, DOPH's collision probability in
 * Jaccard similarity), exact properties (DWTA == WTA on dense inputs, sparse keys ==
 * dense keys for every family, DOPH's binarisation, exact-width key packing, folding),
 * and adversarial inputs.
 * Prints its seed (SPR_TEST_SEED overrides it) and exits non-zero on any failure.
 */
#include "check.h"
#include "common.h"
#include "hash.h"
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *fam_name(spr_hash_family f) {
    switch (f) {
    case SPR_HASH_DWTA: return "dwta";
    case SPR_HASH_SIMHASH: return "simhash";
    case SPR_HASH_WTA: return "wta";
    case SPR_HASH_DOPH: return "doph";
    }
    return "?";
}

#define OK_SET(name)                                                                             \
    do {                                                                                         \
        if (spr_kernels_select(name) != SPR_STATUS_OK) {                                         \
            printf("FAIL %s:%d: select kernel set %s: %s\n", __FILE__, __LINE__, (name),        \
                   spr_last_error());                                                            \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

static const double PI = 3.14159265358979323846;

/* A hasher; SimHash projections non-zero one entry in one_in (make: 3, the density of
 * every model before the option; models now resolve their own, sqrt(fan-in)). */
static spr_hasher *make_s(spr_hash_family f, int64_t dim, int k, int l, int kbm, int one_in,
                          uint64_t seed) {
    spr_hasher *h = NULL;
    spr_status st = spr_hasher_create(f, dim, k, l, kbm, one_in, seed, &h);
    if (st != SPR_STATUS_OK) {
        printf("FAIL create(%s, dim %lld, K %d, L %d, bits %d, one in %d): %s\n",
               fam_name(f), (long long)dim, k, l, kbm, one_in, spr_last_error());
        exit(1);
    }
    return h;
}

static spr_hasher *make(spr_hash_family f, int64_t dim, int k, int l, int kbm, uint64_t seed) {
    return make_s(f, dim, k, l, kbm, 3, seed);
}

static void keys_of(const spr_hasher *h, const float *x, uint32_t *keys) {
    int32_t *work = spr_alloc((size_t)spr_hasher_work_len(h) * sizeof(int32_t));
    spr_hasher_keys(h, x, keys, work);
    spr_free(work);
}

static void normalise(float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    s = 1.0 / sqrt(s);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * s);
}

/* y = cos(theta) x + sin(theta) z with z a random unit vector orthogonal to x (x unit). */
static void at_angle(spr_rng *r, const float *x, float *y, int64_t dim, double theta) {
    float *z = malloc((size_t)dim * sizeof *z);
    for (int64_t i = 0; i < dim; i++) z[i] = (float)spr_rng_normal(r);
    double d = 0;
    for (int64_t i = 0; i < dim; i++) d += (double)z[i] * x[i];
    for (int64_t i = 0; i < dim; i++) z[i] -= (float)(d * x[i]);
    normalise(z, dim);
    for (int64_t i = 0; i < dim; i++) y[i] = (float)(cos(theta) * x[i] + sin(theta) * z[i]);
    free(z);
}

/* SimHash: with K = 1 every key is one code; over L = 1024 codes of 4 hashers the
 * collision rate of a pair at angle theta is binomial(4096, 1 - theta/pi). */
static void test_simhash_collisions(uint64_t seed, int one_in) {
    const int64_t dim = 256;
    const int l = 1024, hashers = 4;
    spr_rng r;
    spr_rng_seed(&r, seed ^ 1);
    float x[256], y[256];
    uint32_t kx[1024], ky[1024];
    spr_hasher *h[4];
    for (int i = 0; i < hashers; i++) h[i] = make_s(SPR_HASH_SIMHASH, dim, 1, l, 30, one_in, seed + 100 + i);
    for (int deg = 10; deg <= 170; deg += 20) {
        double theta = deg * PI / 180.0;
        for (int64_t i = 0; i < dim; i++) x[i] = (float)spr_rng_normal(&r);
        normalise(x, dim);
        at_angle(&r, x, y, dim, theta);
        int same = 0, n = 0;
        for (int i = 0; i < hashers; i++) {
            keys_of(h[i], x, kx);
            keys_of(h[i], y, ky);
            for (int t = 0; t < l; t++) same += kx[t] == ky[t];
            n += l;
        }
        double p = 1.0 - theta / PI, got = (double)same / n;
        double sigma = sqrt(p * (1 - p) / n);
        CHECK(fabs(got - p) <= 4 * sigma,
              "simhash (one in %d) collision at %d deg: expected %.4f +- %.4f (4 sigma), got %.4f",
              one_in, deg, p, 4 * sigma, got);
    }
    for (int i = 0; i < hashers; i++) spr_hasher_free(h[i]);
}

/* Spearman rank correlation (no tie correction: angles are distinct). */
static void ranks(const double *v, double *rk, int n) {
    for (int i = 0; i < n; i++) {
        int below = 0, eq = 0;
        for (int j = 0; j < n; j++) {
            below += v[j] < v[i];
            eq += v[j] == v[i];
        }
        rk[i] = below + (eq - 1) / 2.0;
    }
}

static double spearman(const double *a, const double *b, int n) {
    double *ra = malloc(n * sizeof *ra), *rb = malloc(n * sizeof *rb);
    ranks(a, ra, n);
    ranks(b, rb, n);
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) ma += ra[i], mb += rb[i];
    ma /= n, mb /= n;
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    free(ra), free(rb);
    return sab / sqrt(saa * sbb);
}

/* WTA/DWTA: per-code collision rate grows with cosine similarity (and with ReLU-sparse
 * inputs for DWTA, where densification matters). */
static void test_wta_monotone(spr_hash_family f, int relu, uint64_t seed) {
    enum { PAIRS = 200, DIM = 128, L = 512 };
    spr_rng r;
    spr_rng_seed(&r, seed ^ (7 + (uint64_t)f * 31 + (uint64_t)relu));
    spr_hasher *h = make(f, DIM, 1, L, 30, seed + 7);
    double cosv[PAIRS], rate[PAIRS];
    float x[DIM], y[DIM];
    uint32_t kx[L], ky[L];
    for (int p = 0; p < PAIRS; p++) {
        for (int i = 0; i < DIM; i++) x[i] = (float)spr_rng_normal(&r);
        normalise(x, DIM);
        at_angle(&r, x, y, DIM, spr_rng_uniform(&r) * PI);
        if (relu)
            for (int i = 0; i < DIM; i++) x[i] = x[i] > 0 ? x[i] : 0, y[i] = y[i] > 0 ? y[i] : 0;
        double d = 0, nx = 0, ny = 0;
        for (int i = 0; i < DIM; i++) d += x[i] * y[i], nx += x[i] * x[i], ny += y[i] * y[i];
        cosv[p] = d / sqrt(nx * ny + 1e-30);
        keys_of(h, x, kx);
        keys_of(h, y, ky);
        int same = 0;
        for (int t = 0; t < L; t++) same += kx[t] == ky[t];
        rate[p] = (double)same / L;
    }
    double rho = spearman(cosv, rate, PAIRS);
    CHECK(rho > 0.8, "%s%s: Spearman(cosine, collision rate) expected > 0.8, got %.3f",
          fam_name(f), relu ? " (relu inputs)" : "", rho);
    spr_hasher_free(h);
}

/* On inputs with no zero, DWTA has nothing to densify: the same codes as WTA. */
static void test_dwta_equals_wta(uint64_t seed) {
    const int64_t dim = 100;
    const int k = 6, l = 50;
    spr_hasher *d = make(SPR_HASH_DWTA, dim, k, l, 18, seed);
    spr_hasher *w = make(SPR_HASH_WTA, dim, k, l, 18, seed);
    spr_rng r;
    spr_rng_seed(&r, seed ^ 3);
    float x[100];
    uint32_t kd[50], kw[50];
    int diff = 0;
    for (int v = 0; v < 200; v++) {
        for (int i = 0; i < dim; i++) {
            x[i] = (float)spr_rng_normal(&r);
            if (x[i] == 0) x[i] = 1;
        }
        keys_of(d, x, kd);
        keys_of(w, x, kw);
        diff += memcmp(kd, kw, sizeof kd) != 0;
    }
    CHECK(diff == 0, "dwta == wta on dense inputs: expected 0 differing vectors, got %d", diff);
    spr_hasher_free(d);
    spr_hasher_free(w);
}

/* Every family on hostile inputs: keys in range and deterministic. */
static void test_adversarial(uint64_t seed) {
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH, SPR_HASH_DOPH};
    const int64_t big = 100000;
    float *x = calloc((size_t)big, sizeof *x);
    uint32_t k1[64], k2[64];
    for (int fi = 0; fi < 4; fi++) {
        spr_hash_family f = fams[fi];
        int kk = f == SPR_HASH_SIMHASH ? 13 : 6;
        for (int c = 0; c < 8; c++) {
            int64_t dim = c == 6 ? 1 : c == 7 ? big : 64;
            int kbm = c % 2 ? 10 : 18; /* folded and not */
            spr_hasher *h = make(f, dim, kk, c == 7 ? 8 : 64, kbm, seed + (uint64_t)c);
            int l = c == 7 ? 8 : 64;
            const char *what = "";
            memset(x, 0, (size_t)big * sizeof *x);
            switch (c) {
            case 0: case 1: what = "all zero"; break;
            case 2: what = "single non-zero"; x[17] = 3.5f; break;
            case 3: what = "all equal"; for (int i = 0; i < dim; i++) x[i] = 0.25f; break;
            case 4: what = "negative"; for (int i = 0; i < dim; i++) x[i] = -1.0f - (float)(i % 5); break;
            case 5: what = "single negative"; x[5] = -2.0f; break;
            case 6: what = "dim 1"; x[0] = 1.0f; break;
            case 7: what = "dim 100000, one non-zero"; x[big - 3] = 1.0f; break;
            }
            int bits = spr_hasher_key_bits(h);
            keys_of(h, x, k1);
            keys_of(h, x, k2);
            int bad = 0;
            for (int t = 0; t < l; t++) bad += k1[t] >= (1u << bits);
            CHECK(bad == 0, "%s, %s: keys < 2^%d expected, %d out of range",
                  fam_name(f), what, bits, bad);
            CHECK(memcmp(k1, k2, (size_t)l * sizeof *k1) == 0, "%s, %s: same keys twice",
                  fam_name(f), what);
            spr_hasher *h2 = make(f, dim, kk, l, kbm, seed + (uint64_t)c);
            keys_of(h2, x, k2);
            CHECK(memcmp(k1, k2, (size_t)l * sizeof *k1) == 0,
                  "%s, %s: same keys from a hasher with the same seed",
                  fam_name(f), what);
            spr_hasher_free(h2);
            spr_hasher_free(h);
        }
    }
    free(x);
}

static void test_seeds_differ(uint64_t seed) {
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH, SPR_HASH_DOPH};
    spr_rng r;
    spr_rng_seed(&r, seed ^ 5);
    float x[128];
    for (int i = 0; i < 128; i++) x[i] = (float)spr_rng_normal(&r);
    uint32_t a[50], b[50];
    for (int fi = 0; fi < 4; fi++) {
        spr_hasher *h1 = make(fams[fi], 128, 6, 50, 18, seed);
        spr_hasher *h2 = make(fams[fi], 128, 6, 50, 18, seed + 1);
        keys_of(h1, x, a);
        keys_of(h2, x, b);
        int same = 0;
        for (int t = 0; t < 50; t++) same += a[t] == b[t];
        CHECK(same < 10, "%s: seeds %llu and %llu: expected few equal keys of 50, got %d",
              fam_name(fams[fi]), (unsigned long long)seed,
              (unsigned long long)seed + 1, same);
        spr_hasher_free(h1);
        spr_hasher_free(h2);
    }
}

/* Exact widths: K=6 DWTA into 2^18 buckets reaches most of them (the original SLIDE
 * packed 3-bit codes 2 bits apart and reached about 9,600). */
static void test_reachable(uint64_t seed) {
    const int l = 50, nv = 4000;
    spr_hasher *h = make(SPR_HASH_DWTA, 128, 6, l, 18, seed);
    CHECK(spr_hasher_key_bits(h) == 18, "dwta K=6 key bits: expected 18, got %d",
          spr_hasher_key_bits(h));
    uint8_t *seen = calloc(1 << 18, 1);
    spr_rng r;
    spr_rng_seed(&r, seed ^ 9);
    float x[128];
    uint32_t keys[50];
    int32_t *work = spr_alloc((size_t)spr_hasher_work_len(h) * sizeof(int32_t));
    for (int v = 0; v < nv; v++) {
        for (int i = 0; i < 128; i++) x[i] = (float)spr_rng_normal(&r);
        spr_hasher_keys(h, x, keys, work);
        for (int t = 0; t < l; t++) seen[keys[t] & ((1u << 18) - 1)] = 1;
    }
    int distinct = 0;
    for (int i = 0; i < 1 << 18; i++) distinct += seen[i];
    CHECK(distinct > 100000, "dwta K=6: distinct keys of 2^18 over %d keys: expected > 100000, got %d",
          nv * l, distinct);
    spr_free(work);
    free(seen);
    spr_hasher_free(h);
}

/* Packing: a hasher with (K, L=1) sees the same C = K codes as one with (1, L=K) and
 * the same seed, so its key must be those codes concatenated (or folded). */
static void test_packing(uint64_t seed) {
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH, SPR_HASH_DOPH};
    spr_rng r;
    spr_rng_seed(&r, seed ^ 11);
    float x[64];
    for (int fi = 0; fi < 4; fi++) {
        spr_hash_family f = fams[fi];
        int cb = spr_hash_code_bits(f);
        const int ks[] = {2, 5, 7, 13};
        for (int ki = 0; ki < 4; ki++) {
            int k = ks[ki];
            if (k * cb > 64) continue;
            for (int kbm = 8; kbm <= 30; kbm += 11) { /* 8 (folds all but K<=2), 19, 30 */
                spr_hasher *one = make(f, 64, 1, k, 30, seed + 21);
                spr_hasher *cat = make(f, 64, k, 1, kbm, seed + 21);
                int want_bits = k * cb < kbm ? k * cb : kbm;
                CHECK(spr_hasher_key_bits(cat) == want_bits, "%s K=%d max %d: key bits %d expected, got %d",
                      fam_name(f), k, kbm, want_bits, spr_hasher_key_bits(cat));
                int bad = 0;
                uint32_t codes[16], key;
                for (int v = 0; v < 50; v++) {
                    for (int i = 0; i < 64; i++) x[i] = (float)spr_rng_normal(&r);
                    if (v % 2) x[v] = 0, x[(v * 7) % 64] = 0;
                    keys_of(one, x, codes);
                    keys_of(cat, x, &key);
                    uint64_t want = 0;
                    for (int j = 0; j < k; j++) want = (want << cb) | codes[j];
                    if (k * cb > kbm) want = (want * 0x9E3779B97F4A7C15ull) >> (64 - kbm);
                    bad += key != (uint32_t)want;
                }
                CHECK(bad == 0, "%s K=%d max bits %d: key == packed codes expected, %d of 50 differ",
                      fam_name(f), k, kbm, bad);
                spr_hasher_free(one);
                spr_hasher_free(cat);
            }
        }
    }
    /* Folded keys still spread over the table: SimHash K=13 into 2^10 buckets. */
    spr_hasher *h = make(SPR_HASH_SIMHASH, 64, 13, 64, 10, seed + 5);
    CHECK(spr_hasher_key_bits(h) == 10, "simhash K=13 max 10: key bits 10 expected, got %d",
          spr_hasher_key_bits(h));
    int seen[1024] = {0}, distinct = 0, bad = 0;
    uint32_t keys[64];
    for (int v = 0; v < 200; v++) {
        for (int i = 0; i < 64; i++) x[i] = (float)spr_rng_normal(&r);
        keys_of(h, x, keys);
        for (int t = 0; t < 64; t++) {
            if (keys[t] >= 1024) { bad++; continue; }
            distinct += !seen[keys[t]];
            seen[keys[t]] = 1;
        }
    }
    CHECK(bad == 0, "folded keys < 1024 expected, %d were not", bad);
    CHECK(distinct > 1000, "folded keys: > 1000 of 1024 buckets reached expected, got %d", distinct);
    spr_hasher_free(h);
}

/* Code agreement (rank selection): spr_agree_count of two inputs' keys == the number of
 * the K codes that are equal (codes from a hasher with one code per table, same seed),
 * or K / 0 for folded keys; SPR_KEY_ABSENT agrees with nothing. */
static void test_agreement(uint64_t seed) {
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH, SPR_HASH_DOPH};
    spr_rng r;
    spr_rng_seed(&r, seed ^ 0xa9);
    float x[64], y[64];
    for (int fi = 0; fi < 4; fi++) {
        spr_hash_family f = fams[fi];
        const int ks[] = {1, 3, 7};
        for (int ki = 0; ki < 3; ki++) {
            int k = ks[ki];
            for (int kbm = 12; kbm <= 30; kbm += 18) { /* 12 folds 7 x 3 and 7 x 4 bits */
                spr_hasher *one = make(f, 64, 1, k, 30, seed + 31);
                spr_hasher *cat = make(f, 64, k, 1, kbm, seed + 31);
                spr_agree a = spr_hasher_agree(cat);
                int folded = k * spr_hash_code_bits(f) > kbm, bad = 0, partial = 0;
                for (int v = 0; v < 200; v++) {
                    /* y: x with a share of its coordinates redrawn, so agreements vary */
                    for (int i = 0; i < 64; i++) {
                        x[i] = (float)spr_rng_normal(&r);
                        y[i] = spr_rng_below(&r, 100) < (uint64_t)(v % 100) ? (float)spr_rng_normal(&r) : x[i];
                    }
                    uint32_t cx[16], cy[16], kx, ky;
                    keys_of(one, x, cx), keys_of(one, y, cy);
                    keys_of(cat, x, &kx), keys_of(cat, y, &ky);
                    int same = 0;
                    for (int j = 0; j < k; j++) same += cx[j] == cy[j];
                    int want = folded ? (kx == ky ? k : 0) : same;
                    int got = spr_agree_count(a, kx, ky);
                    partial += got > 0 && got < k;
                    if (got != want && bad++ < 3)
                        printf("  %s K=%d bits %d: keys %x %x, %d codes agree expected, got %d\n",
                               fam_name(f), k, kbm, kx, ky, want, got);
                    bad += spr_agree_count(a, kx, SPR_KEY_ABSENT) != 0;
                }
                CHECK(bad == 0, "%s K=%d max bits %d: agreement == equal codes expected, %d differ",
                      fam_name(f), k, kbm, bad);
                if (!folded && k > 1)
                    CHECK(partial > 0, "%s K=%d: some pairs agree partly expected, none did", fam_name(f), k);
                spr_hasher_free(one);
                spr_hasher_free(cat);
            }
        }
    }
}

static void test_bad_input(void) {
    spr_hasher *h = (spr_hasher *)1;
    struct { spr_hash_family f; int64_t dim; int k, l, kbm; const char *what; } bad[] = {
        {SPR_HASH_DOPH, 64, 17, 4, 18, "doph K*4 > 64"},
        {SPR_HASH_DWTA, 0, 4, 4, 18, "dim 0"},
        {SPR_HASH_DWTA, 64, 0, 4, 18, "K 0"},
        {SPR_HASH_DWTA, 64, 22, 4, 18, "K*3 > 64"},
        {SPR_HASH_SIMHASH, 64, 65, 4, 18, "K > 64"},
        {SPR_HASH_WTA, 64, 4, 0, 18, "L 0"},
        {SPR_HASH_WTA, 64, 4, 1025, 18, "L 1025"},
        {SPR_HASH_WTA, 64, 4, 4, 0, "key bits 0"},
        {SPR_HASH_WTA, 64, 4, 4, 31, "key bits 31"},
        {(spr_hash_family)9, 64, 4, 4, 18, "family 9"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spr_status st = spr_hasher_create(bad[i].f, bad[i].dim, bad[i].k, bad[i].l, bad[i].kbm, 3, 1, &h);
        CHECK(st == SPR_STATUS_BAD_INPUT && h == NULL && spr_last_error()[0],
              "%s: BAD_INPUT, NULL handle and a message expected, got status %d, message '%s'",
              bad[i].what, (int)st, spr_last_error());
    }
    spr_hasher_create(SPR_HASH_DOPH, 64, 17, 4, 18, 3, 1, &h);
    CHECK(strstr(spr_last_error(), "doph") != NULL, "doph K message expected, got '%s'",
          spr_last_error());
    /* The edges that are allowed. */
    spr_status st = spr_hasher_create(SPR_HASH_SIMHASH, 1, 64, 1024, 30, 3, 1, &h);
    CHECK(st == SPR_STATUS_OK, "simhash K=64 L=1024 dim 1: ok expected, got %d (%s)", (int)st,
          spr_last_error());
    spr_hasher_free(h);
    st = spr_hasher_create(SPR_HASH_DWTA, 1, 21, 1, 1, 3, 1, &h);
    CHECK(st == SPR_STATUS_OK, "dwta K=21 key bits 1: ok expected, got %d (%s)", (int)st,
          spr_last_error());
    spr_hasher_free(h);
    st = spr_hasher_create(SPR_HASH_DOPH, 1, 16, 1024, 30, 3, 1, &h);
    CHECK(st == SPR_STATUS_OK && spr_hash_code_bits(SPR_HASH_DOPH) == 4,
          "doph K=16 L=1024 dim 1: ok and 4-bit codes expected, got %d (%s), %d bits", (int)st,
          spr_last_error(), spr_hash_code_bits(SPR_HASH_DOPH));
    spr_hasher_free(h);
    /* simhash_one_in: 1..SPR_SIMHASH_ONE_IN_MAX for SimHash, ignored by the others */
    const int bad_s[] = {0, -3, SPR_SIMHASH_ONE_IN_MAX + 1};
    for (int i = 0; i < 3; i++) {
        h = (spr_hasher *)1;
        st = spr_hasher_create(SPR_HASH_SIMHASH, 64, 6, 4, 18, bad_s[i], 1, &h);
        CHECK(st == SPR_STATUS_BAD_INPUT && h == NULL && strstr(spr_last_error(), "simhash_one_in"),
              "simhash one in %d: BAD_INPUT naming simhash_one_in expected, got %d ('%s')", bad_s[i],
              (int)st, spr_last_error());
    }
    st = spr_hasher_create(SPR_HASH_DWTA, 64, 6, 4, 18, 0, 1, &h);
    CHECK(st == SPR_STATUS_OK, "dwta ignores simhash_one_in: ok expected, got %d (%s)", (int)st,
          spr_last_error());
    spr_hasher_free(h);
    spr_hasher_free(NULL);
}

/* SimHash projections of density 1 / one_in: the key of table t for the basis vector e_j
 * is (P[t][j] >= 0) with K = 1, so the share of 0 keys over L tables x dim basis vectors
 * is the share of -1 entries, 1 / (2 one_in). Checked at 5 sigma of binomial(L dim). */
static void test_simhash_density(uint64_t seed) {
    const int64_t dim = 64;
    const int l = 1024;
    const int one_ins[] = {1, 2, 3, 12, 100, SPR_SIMHASH_ONE_IN_MAX};
    float x[64];
    uint32_t keys[1024];
    for (int si = 0; si < 6; si++) {
        spr_hasher *h = make_s(SPR_HASH_SIMHASH, dim, 1, l, 30, one_ins[si], seed + 5 + (uint64_t)si);
        int64_t minus = 0;
        for (int64_t j = 0; j < dim; j++) {
            memset(x, 0, sizeof x);
            x[j] = 1.0f;
            keys_of(h, x, keys);
            for (int t = 0; t < l; t++) minus += keys[t] == 0;
        }
        const double n = (double)(dim * l), p = 0.5 / one_ins[si], got = (double)minus / n;
        const double sigma = sqrt(p * (1 - p) / n);
        CHECK(fabs(got - p) <= 5 * sigma + 1e-12,
              "simhash one in %d: share of -1 entries %.5f expected +- %.5f, got %.5f", one_ins[si],
              p, 5 * sigma, got);
        spr_hasher_free(h);
    }
}

/* With one_in 3 the functions are exactly those sparrow drew before the density became
 * an option (models saved then are read with it): keys of a fixed vector for a fixed
 * seed, taken from the code of that time (commit a0794f5). */
static void test_simhash_default_unchanged(void) {
    static const uint32_t want[8] = {36u, 57u, 7u, 43u, 29u, 16u, 37u, 33u};
    spr_hasher *h = make_s(SPR_HASH_SIMHASH, 16, 6, 8, 18, 3, 42);
    float x[16];
    uint32_t keys[8];
    for (int i = 0; i < 16; i++) x[i] = (float)((i * 7) % 11) - 5.0f;
    keys_of(h, x, keys);
    int same = 0;
    for (int t = 0; t < 8; t++) same += keys[t] == want[t];
    CHECK(same == 8, "simhash one in 3, seed 42: the keys of before the option expected, %d of 8 equal "
          "(first %u, expected %u)", same, keys[0], want[0]);
    spr_hasher_free(h);
}

/* A random sparse vector of the given kind: ascending distinct indices < dim, n of them
 * returned. `density` is the chance of each index for the random kinds. */
enum { SV_EMPTY, SV_SINGLE, SV_EQUAL, SV_NORMAL, SV_NEGATIVE, SV_RELU, SV_FULL, SV_SPECIAL,
       SV_TIES, SV_KINDS };
static const char *sv_name[SV_KINDS] = {"empty", "single non-zero", "all equal", "normal",
                                        "all negative", "relu", "every coordinate",
                                        "zeros/-0/inf/nan in the list", "few distinct values"};

static int64_t random_sparse(spr_rng *r, int kind, int64_t dim, double density, int32_t *idx,
                             float *val) {
    int64_t n = 0;
    if (kind == SV_EMPTY) return 0;
    if (kind == SV_SINGLE) {
        idx[0] = (int32_t)spr_rng_below(r, (uint64_t)dim);
        val[0] = spr_rng_uniform(r) < 0.5 ? -1.5f : 0.75f;
        return 1;
    }
    for (int64_t i = 0; i < dim; i++) {
        if (kind != SV_FULL && spr_rng_uniform(r) >= density) continue;
        double g = spr_rng_normal(r);
        float v = (float)g;
        switch (kind) {
        case SV_EQUAL: v = 0.5f; break;
        case SV_NEGATIVE: v = -(float)fabs(g) - 0.01f; break;
        case SV_RELU: v = (float)fabs(g) + 0.01f; break;
        case SV_SPECIAL: {
            const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f};
            uint64_t c = spr_rng_below(r, 14);
            if (c < 7) v = sp[c];
            break;
        }
        case SV_TIES: v = (float)((int)spr_rng_below(r, 3) - 1) * 0.5f; if (v == 0) v = 2; break;
        default: break;
        }
        idx[n] = (int32_t)i;
        val[n++] = v;
    }
    return n;
}

/* Exact: for every family, keys_sparse(idx, val) == keys(scattered dense vector), on
 * random vectors of every kind, dims 1 .. 100000, folded keys and not. The work buffer is
 * filled with garbage first: neither path may depend on what it held. */
static void test_sparse_equals_dense(uint64_t seed) {
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH, SPR_HASH_DOPH};
    const int64_t dims[] = {1, 7, 128, 1000, 100000};
    const int64_t maxdim = 100000;
    float *x = calloc((size_t)maxdim, sizeof *x), *val = malloc((size_t)maxdim * sizeof *val);
    int32_t *idx = malloc((size_t)maxdim * sizeof *idx);
    spr_rng r;
    spr_rng_seed(&r, seed ^ 17);
    for (int fi = 0; fi < 4; fi++) {
        spr_hash_family f = fams[fi];
        for (int di = 0; di < 5; di++) {
            const int64_t dim = dims[di];
            int k = f == SPR_HASH_SIMHASH ? 13 : f == SPR_HASH_DOPH ? 4 : 6;
            int l = 50;
            if (f == SPR_HASH_SIMHASH && dim == maxdim) k = 4, l = 8; /* dim x C floats */
            const int kbm = di % 2 ? 10 : 18;
            /* SimHash's sparse path reads the projections' non-zeros: odd dims sparser */
            const int one_in = f == SPR_HASH_SIMHASH && di % 2 ? 12 : 3;
            spr_hasher *h = make_s(f, dim, k, l, kbm, one_in, seed + 31 + (uint64_t)di);
            const int64_t wl = spr_hasher_work_len(h);
            int32_t *w1 = spr_alloc((size_t)wl * sizeof(int32_t));
            int32_t *w2 = spr_alloc((size_t)wl * sizeof(int32_t));
            uint32_t kd[50], ks[50];
            int vectors = 0, bad = 0, first_bad = -1;
            const double dens[] = {0.5, 0.05, 75.0 / (double)dim};
            for (int kind = 0; kind < SV_KINDS; kind++) {
                if (kind == SV_FULL && dim == maxdim && f != SPR_HASH_SIMHASH) continue;
                const int reps = kind <= SV_SINGLE || kind == SV_FULL ? 3 : 8;
                for (int rep = 0; rep < reps; rep++) {
                    double d = dens[rep % 3];
                    if (d > 1) d = 1;
                    int64_t n = random_sparse(&r, kind, dim, d, idx, val);
                    for (int64_t j = 0; j < n; j++) x[idx[j]] = val[j];
                    memset(w1, 0xA5, (size_t)wl * sizeof(int32_t));
                    memset(w2, 0x5A, (size_t)wl * sizeof(int32_t));
                    spr_hasher_keys(h, x, kd, w1);
                    spr_hasher_keys_sparse(h, idx, val, n, ks, w2);
                    int diff = memcmp(kd, ks, (size_t)l * sizeof *kd) != 0;
                    int range = 0;
                    for (int t = 0; t < l; t++) range += ks[t] >= (1u << spr_hasher_key_bits(h));
                    if ((diff || range) && first_bad < 0) first_bad = kind;
                    bad += diff || range;
                    vectors++;
                    for (int64_t j = 0; j < n; j++) x[idx[j]] = 0.0f;
                }
            }
            CHECK(bad == 0,
                  "%s dim %lld K %d L %d: keys_sparse == keys (and in range) expected on %d "
                  "vectors, %d differ (first: %s)",
                  fam_name(f), (long long)dim, k, l, vectors, bad,
                  first_bad >= 0 ? sv_name[first_bad] : "-");
            spr_free(w1);
            spr_free(w2);
            spr_hasher_free(h);
        }
    }
    free(x);
    free(val);
    free(idx);
}

/* spr_hasher_keys_rows == spr_hasher_keys row by row, key by key, under every kernel set
 * this CPU runs (the SimHash path uses the set's matmul_panels), for every family: odd
 * and even row counts (tails of the kernels' 6-, 8- and 16-row blocks and of the 24-row
 * passes), odd C, a row stride wider than dim with NaNs in the gap (never read), and
 * rows that are zero, ReLU-like (most entries +0 or -0), negative, wide in scale, or
 * hold a NaN or an infinity (blocks of finite rows take the signed sums, the others the
 * dense products). The work given is the full block, the minimum (one row per pass,
 * dense products only), something between and one short of the full block. SimHash's products are exact (P is +-1 or 0), so every
 * set must also give the portable set's keys: that is checked too. */
static void fill_row(spr_rng *r, int kind, float *x, int64_t dim) {
    for (int64_t j = 0; j < dim; j++) {
        double g = spr_rng_normal(r);
        switch (kind) {
        case 0: x[j] = (float)g; break;                                  /* normal */
        case 1: x[j] = 0.0f; break;                                      /* zero row */
        case 2: x[j] = g > 0.8 ? (float)g : (g > 0 ? 0.0f : -0.0f); break; /* ReLU-like */
        case 3: x[j] = -(float)fabs(g); break;                           /* negative */
        case 4: x[j] = (float)(g * pow(10.0, (double)spr_rng_below(r, 13) - 6.0)); break;
        case 5: x[j] = (float)g * 0.01f; break;                          /* init scale */
        default: /* one NaN or infinity in a normal row */
            x[j] = (float)g;
            break;
        }
    }
    if (kind == 6) x[spr_rng_below(r, (uint64_t)dim)] = NAN;
    if (kind == 7) x[spr_rng_below(r, (uint64_t)dim)] = -INFINITY;
}
enum { ROW_KINDS = 8 };

static void test_rows_equal_one_row(uint64_t seed) {
    const char *sets[] = {"portable", "avx2", "avx512"};
    const char *was = spr_kernels_name();
    struct { spr_hash_family f; int64_t dim; int k, l, kbm, one_in; } cfg[] = {
        {SPR_HASH_SIMHASH, 128, 15, 50, 20, 3}, /* the 670K / 2M-label output layer: C = 750 */
        {SPR_HASH_SIMHASH, 128, 15, 50, 20, 12}, /* the same, sparser projections */
        {SPR_HASH_SIMHASH, 128, 13, 7, 18, 3},  /* C = 91, odd */
        {SPR_HASH_SIMHASH, 7, 3, 5, 10, 3},     /* C = 15, dim 7 */
        {SPR_HASH_SIMHASH, 7, 3, 5, 10, 1},     /* dense projections */
        {SPR_HASH_SIMHASH, 129, 17, 3, 12, 3},  /* C = 51, folded keys, odd dim */
        {SPR_HASH_SIMHASH, 129, 17, 3, 12, 40}, /* some projections all zero */
        {SPR_HASH_SIMHASH, 1, 1, 1, 1, 3},      /* C = 1 */
        {SPR_HASH_SIMHASH, 33, 16, 2, 20, 3},   /* C = 32: whole panels */
        {SPR_HASH_DWTA, 128, 6, 50, 18, 3},
        {SPR_HASH_WTA, 31, 5, 9, 12, 3},
        {SPR_HASH_DOPH, 128, 4, 50, 16, 3},
    };
    const int64_t counts[] = {1, 5, 6, 7, 8, 9, 15, 16, 17, 23, 24, 25, 32, 61};
    const int ncfg = (int)(sizeof cfg / sizeof cfg[0]), ncounts = 14;
    const int64_t maxn = 61;
    for (int ci = 0; ci < ncfg; ci++) {
        spr_rng r;
        spr_rng_seed(&r, seed ^ (0x7011ull + (uint64_t)ci));
        const int64_t dim = cfg[ci].dim, stride = dim + 5;
        const int l = cfg[ci].l;
        spr_hasher *h = make_s(cfg[ci].f, dim, cfg[ci].k, l, cfg[ci].kbm, cfg[ci].one_in, seed + 77 + (uint64_t)ci);
        float *x = malloc((size_t)(maxn * stride) * sizeof *x);
        for (int64_t i = 0; i < maxn * stride; i++) x[i] = NAN; /* the gaps stay NaN */
        /* Rows 0..31 finite (two whole blocks for the signed sums), NaNs and infinities
         * after (those blocks take the dense products). */
        for (int64_t i = 0; i < maxn; i++)
            fill_row(&r, (int)(i < 32 ? i % 6 : i % ROW_KINDS), x + i * stride, dim);
        const int64_t wfull = spr_hasher_rows_work_len(h), wmin = spr_hasher_work_len(h);
        const int64_t wlens[] = {wfull, wmin, (wfull + wmin) / 2, wfull - 1};
        int32_t *work = spr_alloc((size_t)wfull * sizeof(int32_t));
        uint32_t *ref = malloc((size_t)(maxn * l) * sizeof *ref);     /* portable, one row */
        uint32_t *one = malloc((size_t)(maxn * l) * sizeof *one);
        uint32_t *rows = malloc((size_t)(maxn * l) * sizeof *rows);
        OK_SET("portable");
        for (int64_t i = 0; i < maxn; i++) spr_hasher_keys(h, x + i * stride, ref + i * l, work);
        for (int si = 0; si < 3; si++) {
            if (!spr_kernel_set_supported(sets[si])) {
                if (ci == 0) printf("rows == one row: kernel set %s skipped (this CPU or build "
                                    "cannot run it)\n", sets[si]);
                continue;
            }
            OK_SET(sets[si]);
            for (int64_t i = 0; i < maxn; i++) spr_hasher_keys(h, x + i * stride, one + i * l, work);
            int bad_one = 0;
            for (int64_t t = 0; t < maxn * l; t++) bad_one += one[t] != ref[t];
            if (cfg[ci].f == SPR_HASH_SIMHASH)
                CHECK(bad_one == 0, "%s %s dim %lld K %d L %d: one-row keys equal the portable "
                      "set's expected, %d of %lld differ", sets[si], fam_name(cfg[ci].f),
                      (long long)dim, cfg[ci].k, l, bad_one, (long long)(maxn * l));
            for (int wi = 0; wi < 4; wi++)
                for (int ni = 0; ni < ncounts; ni++) {
                    const int64_t n = counts[ni];
                  for (int by_table = 0; by_table < 2; by_table++) {
                    /* keys item by item (rows[r l + t]) or table by table (rows[t n + r]) */
                    memset(rows, 0xEE, (size_t)(maxn * l) * sizeof *rows);
                    memset(work, 0xA5, (size_t)wfull * sizeof(int32_t));
                    spr_hasher_keys_rows(h, x, n, stride, rows, by_table ? 1 : l, by_table ? n : 1,
                                         work, wlens[wi]);
                    int64_t bad = 0, first = -1;
                    for (int64_t t = 0; t < n * l; t++) {
                        const uint32_t got = by_table ? rows[t % l * n + t / l] : rows[t];
                        if (got != one[t]) bad++, first = first < 0 ? t : first;
                    }
                    int past = 0; /* nothing written past row n */
                    for (int64_t t = n * l; t < maxn * l; t++) past += rows[t] != 0xEEEEEEEEu;
                    CHECK(bad == 0 && past == 0,
                          "%s %s dim %lld K %d L %d, %lld rows, work %lld, keys %s: keys_rows == "
                          "keys expected; %lld of %lld differ (first: row %lld (kind %lld) table "
                          "%lld: expected %u); %d written past the rows",
                          sets[si], fam_name(cfg[ci].f), (long long)dim, cfg[ci].k, l,
                          (long long)n, (long long)wlens[wi], by_table ? "by table" : "by item",
                          (long long)bad, (long long)(n * l),
                          (long long)(first < 0 ? -1 : first / l),
                          (long long)(first < 0 ? -1 : first / l % ROW_KINDS),
                          (long long)(first < 0 ? -1 : first % l), first < 0 ? 0 : one[first],
                          past);
                  }
                }
        }
        spr_free(work);
        free(x);
        free(ref);
        free(one);
        free(rows);
        spr_hasher_free(h);
    }
    OK_SET(was);
}

/* Two random sets of n indices each (< dim) sharing m: J = m / (2n - m). Sorted. */
static void jaccard_pair(spr_rng *r, int64_t dim, int n, int m, int32_t *a, int32_t *b) {
    int32_t all[64];
    int got = 0;
    while (got < 2 * n - m) {
        int32_t c = (int32_t)spr_rng_below(r, (uint64_t)dim);
        int dup = 0;
        for (int i = 0; i < got; i++) dup |= all[i] == c;
        if (!dup) all[got++] = c;
    }
    for (int i = 0; i < n; i++) a[i] = all[i];                            /* shared + own */
    for (int i = 0; i < n; i++) b[i] = i < m ? all[i] : all[i + n - m]; /* shared + other */
    for (int s = 0; s < 2; s++) {
        int32_t *v = s ? b : a;
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                int32_t t = v[j];
                v[j] = v[j - 1];
                v[j - 1] = t;
            }
    }
}

/* DOPH: with K = 1 every key is one 4-bit code, and per code
 *   P[collision] = J + (1 - J) / 16
 * (densified minhash is exact in J; different argmins agree on 4 bits 1 time in 16).
 * Sets of 32 (the whole binarised set) rarely leave a bin empty, so the codes of a pair
 * are close to independent: the rate over `pairs` x 1024 codes is checked against
 * binomial(pairs x 1024, p) at 4 sigma. Sets of 6 leave most bins to densification,
 * whose copies repeat codes: there the bound is 4 sigma of binomial(n / 4). The rate
 * must also grow with J. */
static void test_doph_jaccard(uint64_t seed) {
    enum { L = 1024 };
    spr_rng r;
    spr_rng_seed(&r, seed ^ 19);
    int32_t a[32], b[32];
    float ones[32];
    uint32_t ka[L], kb[L];
    for (int i = 0; i < 32; i++) ones[i] = 1.0f;
    struct { int n, pairs, shrink; int m[7]; } cases[] = {
        {32, 4, 1, {6, 11, 16, 21, 26, 29, 31}}, /* J = 0.10 .. 0.94 */
        {6, 8, 4, {1, 2, 3, 4, 5, -1, -1}},      /* J = 0.09 .. 0.71 */
    };
    int32_t *work = NULL;
    for (int ci = 0; ci < 2; ci++) {
        double prev = -1;
        int mono = 1;
        for (int mi = 0; mi < 7 && cases[ci].m[mi] >= 0; mi++) {
            const int n = cases[ci].n, m = cases[ci].m[mi];
            const double j = (double)m / (2 * n - m), p = j + (1 - j) / 16;
            int same = 0, total = 0;
            for (int pr = 0; pr < cases[ci].pairs; pr++) {
                spr_hasher *h = make(SPR_HASH_DOPH, 100000, 1, L, 30,
                                     seed + 1000 * (uint64_t)ci + 10 * (uint64_t)mi + (uint64_t)pr);
                if (!work) work = spr_alloc((size_t)spr_hasher_work_len(h) * sizeof(int32_t));
                jaccard_pair(&r, 100000, n, m, a, b);
                spr_hasher_keys_sparse(h, a, ones, n, ka, work);
                spr_hasher_keys_sparse(h, b, ones, n, kb, work);
                for (int t = 0; t < L; t++) same += ka[t] == kb[t];
                total += L;
                spr_hasher_free(h);
            }
            const double got = (double)same / total;
            const double sigma = sqrt(p * (1 - p) / (total / cases[ci].shrink));
            CHECK(fabs(got - p) <= 4 * sigma,
                  "doph |S| = %d, J = %.3f: collision J + (1-J)/16 = %.4f +- %.4f (4 sigma) "
                  "expected, got %.4f",
                  n, j, p, 4 * sigma, got);
            mono &= got > prev;
            prev = got;
        }
        CHECK(mono, "doph |S| = %d: collision rate increasing in J expected, it was not",
              cases[ci].n);
    }
    spr_free(work);
}

/* DOPH's binarisation keeps the top 32 non-zeros by value: a vector whose 32 largest
 * values sit on a set S hashes like the binary indicator of S, whatever the other
 * values, negative ones included. */
static void test_doph_binarise(uint64_t seed) {
    const int64_t dim = 1000;
    spr_hasher *h = make(SPR_HASH_DOPH, dim, 4, 50, 18, seed + 41);
    float *x = calloc((size_t)dim, sizeof *x), *xs = calloc((size_t)dim, sizeof *xs);
    uint32_t kx[50], ks[50];
    spr_rng r;
    spr_rng_seed(&r, seed ^ 23);
    int bad = 0;
    for (int v = 0; v < 20; v++) {
        memset(x, 0, (size_t)dim * sizeof *x);
        memset(xs, 0, (size_t)dim * sizeof *xs);
        const int n = 33 + (int)spr_rng_below(&r, 100), neg = v % 2;
        for (int i = 0; i < n; i++) {
            int64_t j;
            do j = (int64_t)spr_rng_below(&r, (uint64_t)dim); while (x[j] != 0);
            /* ranks 0..31 are the top: values 10 - i (or -1 - i when all negative) */
            x[j] = neg ? -1.0f - (float)i : i < 32 ? 10.0f - 0.1f * (float)i : 0.5f - 0.001f * (float)i;
            if (i < 32) xs[j] = 1.0f;
        }
        keys_of(h, x, kx);
        keys_of(h, xs, ks);
        bad += memcmp(kx, ks, sizeof kx) != 0;
    }
    CHECK(bad == 0, "doph: keys of x == keys of its top-32 indicator expected, %d of 20 differ", bad);
    free(x);
    free(xs);
    spr_hasher_free(h);
}

/* Not a check: the cost per vector the model pays at every sampled layer. */
/* Not a check: the cost per vector the model pays at every sampled layer. */
static void report_timing(uint64_t seed) {
    struct { spr_hash_family f; int k; } cfg[] = {{SPR_HASH_DWTA, 6}, {SPR_HASH_SIMHASH, 13}};
    enum { NV = 256, DIM = 128 };
    float *x = malloc(sizeof(float) * NV * DIM);
    spr_rng r;
    spr_rng_seed(&r, seed ^ 13);
    for (int i = 0; i < NV * DIM; i++) {
        double g = spr_rng_normal(&r);
        x[i] = g > 0 ? (float)g : 0.0f; /* ReLU activations: about half zeros */
    }
    for (int c = 0; c < 2; c++) {
        spr_hasher *h = make(cfg[c].f, DIM, cfg[c].k, 50, 18, seed);
        int32_t *work = spr_alloc((size_t)spr_hasher_work_len(h) * sizeof(int32_t));
        uint32_t keys[50], sum = 0;
        double t0 = spr_now();
        int reps = 8;
        for (int rep = 0; rep < reps; rep++)
            for (int v = 0; v < NV; v++) {
                spr_hasher_keys(h, x + v * DIM, keys, work);
                sum += keys[v % 50];
            }
        double us = (spr_now() - t0) / (reps * NV) * 1e6;
        printf("time: %s K=%d L=50 dim=%d (ReLU input): %.2f us per vector (%u)\n",
               fam_name(cfg[c].f), cfg[c].k, DIM, us, sum & 1);
        spr_free(work);
        spr_hasher_free(h);
    }
    free(x);
}

/* Not a check: keys (dense) vs keys_sparse per vector for DWTA (K=6) and DOPH (K=4),
 * L=50, on dim-128 ReLU activations (half zeros) and on dim-100000 inputs with 75
 * non-zeros. The answers are compared before timing. */
static void report_timing_sparse(uint64_t seed) {
    struct { spr_hash_family f; int k; } cfg[] = {{SPR_HASH_DWTA, 6}, {SPR_HASH_DOPH, 4}};
    struct { int64_t dim; int nv; } shapes[] = {{128, 256}, {100000, 16}};
    spr_rng r;
    spr_rng_seed(&r, seed ^ 29);
    for (int si = 0; si < 2; si++) {
        const int64_t dim = shapes[si].dim;
        const int nv = shapes[si].nv;
        float *x = calloc((size_t)nv * (size_t)dim, sizeof *x);
        int32_t *idx = malloc((size_t)nv * 128 * sizeof *idx);
        float *val = malloc((size_t)nv * 128 * sizeof *val);
        int64_t nnz[256];
        for (int v = 0; v < nv; v++) {
            float *xv = x + (int64_t)v * dim;
            if (dim == 128) {
                for (int i = 0; i < 128; i++) {
                    double g = spr_rng_normal(&r);
                    xv[i] = g > 0 ? (float)g : 0.0f;
                }
            } else {
                for (int i = 0; i < 75; i++) {
                    int64_t j;
                    do j = (int64_t)spr_rng_below(&r, (uint64_t)dim); while (xv[j] != 0);
                    xv[j] = (float)spr_rng_uniform(&r) + 0.1f;
                }
            }
            nnz[v] = 0;
            for (int64_t i = 0; i < dim; i++)
                if (xv[i] != 0) idx[v * 128 + nnz[v]] = (int32_t)i, val[v * 128 + nnz[v]++] = xv[i];
        }
        for (int c = 0; c < 2; c++) {
            spr_hasher *h = make(cfg[c].f, dim, cfg[c].k, 50, 18, seed);
            int32_t *work = spr_alloc((size_t)spr_hasher_work_len(h) * sizeof(int32_t));
            uint32_t kd[50], ks[50], sum = 0;
            int bad = 0;
            for (int v = 0; v < nv; v++) {
                spr_hasher_keys(h, x + (int64_t)v * dim, kd, work);
                spr_hasher_keys_sparse(h, idx + v * 128, val + v * 128, nnz[v], ks, work);
                bad += memcmp(kd, ks, sizeof kd) != 0;
            }
            CHECK(bad == 0, "timing inputs %s dim %lld: sparse == dense keys expected, %d differ",
                  fam_name(cfg[c].f), (long long)dim, bad);
            double us[2];
            for (int sp = 0; sp < 2; sp++) {
                const int reps = (dim == 128 ? 8 : 4) * (sp ? 16 : 1);
                double t0 = spr_now();
                for (int rep = 0; rep < reps; rep++)
                    for (int v = 0; v < nv; v++) {
                        if (sp)
                            spr_hasher_keys_sparse(h, idx + v * 128, val + v * 128, nnz[v], kd, work);
                        else
                            spr_hasher_keys(h, x + (int64_t)v * dim, kd, work);
                        sum += kd[v % 50];
                    }
                us[sp] = (spr_now() - t0) / (reps * nv) * 1e6;
            }
            printf("time: %s K=%d L=50 dim=%lld (%s): keys %.2f us, keys_sparse %.2f us per "
                   "vector (%u)\n",
                   fam_name(cfg[c].f), cfg[c].k, (long long)dim,
                   dim == 128 ? "ReLU, half zeros" : "75 non-zeros", us[0], us[1], sum & 1);
            spr_free(work);
            spr_hasher_free(h);
        }
        free(x);
        free(idx);
        free(val);
    }
}

/* spr_hasher_redraw(h, s) makes h the hasher spr_hasher_create(..., s) makes: the same keys
 * for dense rows, sparse vectors and blocks of rows, from a hasher first drawn from
 * another seed, without an allocation. One-in-1 SimHash fills every entry list to the
 * capacity create sized for; one-in-40 leaves some codes empty; dim 31 with C * 8 > dim
 * takes WTA through several permutations. */
static void test_redraw_equals_create(uint64_t seed) {
    struct { spr_hash_family f; int64_t dim; int k, l, kbm, one_in; } cfg[] = {
        {SPR_HASH_SIMHASH, 128, 15, 50, 20, 3}, {SPR_HASH_SIMHASH, 7, 3, 5, 10, 1},
        {SPR_HASH_SIMHASH, 129, 17, 3, 12, 40}, {SPR_HASH_DWTA, 128, 6, 50, 18, 3},
        {SPR_HASH_WTA, 31, 5, 9, 12, 3},        {SPR_HASH_DOPH, 128, 4, 50, 16, 3},
    };
    const int ncfg = (int)(sizeof cfg / sizeof cfg[0]);
    const int64_t n = 40;
    for (int ci = 0; ci < ncfg; ci++) {
        const int64_t dim = cfg[ci].dim;
        const int l = cfg[ci].l;
        const uint64_t s1 = seed + 11 * (uint64_t)ci, s2 = s1 ^ 0xfeedull;
        const long long bytes = spr_alloc_bytes();
        spr_hasher *a = make_s(cfg[ci].f, dim, cfg[ci].k, l, cfg[ci].kbm, cfg[ci].one_in, s1);
        CHECK(spr_alloc_bytes() - bytes == spr_hasher_bytes(cfg[ci].f, dim, cfg[ci].k, l),
              "%s dim %lld K %d L %d: create allocates spr_hasher_bytes' %lld bytes, got %lld",
              fam_name(cfg[ci].f), (long long)dim, cfg[ci].k, l,
              (long long)spr_hasher_bytes(cfg[ci].f, dim, cfg[ci].k, l), spr_alloc_bytes() - bytes);
        spr_hasher *b = make_s(cfg[ci].f, dim, cfg[ci].k, l, cfg[ci].kbm, cfg[ci].one_in, s2);
        const long long calls = spr_alloc_calls();
        spr_hasher_redraw(a, s2);
        CHECK(spr_alloc_calls() == calls, "%s dim %lld: redraw allocates nothing (%lld calls)",
              fam_name(cfg[ci].f), (long long)dim, spr_alloc_calls() - calls);
        spr_rng r;
        spr_rng_seed(&r, seed ^ (0x4ed4ull + (uint64_t)ci));
        float *x = malloc((size_t)(n * dim) * sizeof *x);
        for (int64_t i = 0; i < n * dim; i++) /* ReLU-like: a third exact zeros */
            x[i] = spr_rng_below(&r, 3) == 0 ? 0.0f : (float)spr_rng_normal(&r);
        const int64_t wl = spr_hasher_rows_work_len(a);
        int32_t *work = malloc((size_t)wl * sizeof *work);
        uint32_t *ka = malloc((size_t)(n * l) * sizeof *ka), *kb = malloc((size_t)(n * l) * sizeof *kb);
        int32_t *idx = malloc((size_t)dim * sizeof *idx);
        float *val = malloc((size_t)dim * sizeof *val);
        int same = 1;
        spr_hasher_keys_rows(a, x, n, dim, ka, l, 1, work, wl);
        spr_hasher_keys_rows(b, x, n, dim, kb, l, 1, work, wl);
        same &= memcmp(ka, kb, (size_t)(n * l) * sizeof *ka) == 0;
        for (int64_t row = 0; row < n && same; row++) {
            spr_hasher_keys(a, x + row * dim, ka, work);
            spr_hasher_keys(b, x + row * dim, kb, work);
            same &= memcmp(ka, kb, (size_t)l * sizeof *ka) == 0;
            int64_t nnz = 0;
            for (int64_t j = 0; j < dim; j++)
                if (x[row * dim + j] != 0.0f) idx[nnz] = (int32_t)j, val[nnz++] = x[row * dim + j];
            spr_hasher_keys_sparse(a, idx, val, nnz, ka, work);
            spr_hasher_keys_sparse(b, idx, val, nnz, kb, work);
            same &= memcmp(ka, kb, (size_t)l * sizeof *ka) == 0;
        }
        CHECK(same, "%s dim %lld K %d L %d one in %d: redrawn keys == created keys",
              fam_name(cfg[ci].f), (long long)dim, cfg[ci].k, l, cfg[ci].one_in);
        /* and the redraw changed the functions: seed s1's keys differ */
        spr_hasher *c = make_s(cfg[ci].f, dim, cfg[ci].k, l, cfg[ci].kbm, cfg[ci].one_in, s1);
        spr_hasher_keys_rows(a, x, n, dim, ka, l, 1, work, wl);
        spr_hasher_keys_rows(c, x, n, dim, kb, l, 1, work, wl);
        CHECK(memcmp(ka, kb, (size_t)(n * l) * sizeof *ka) != 0,
              "%s dim %lld: the redrawn keys are not seed %llu's", fam_name(cfg[ci].f),
              (long long)dim, (unsigned long long)s1);
        spr_hasher_free(c);
        free(x), free(work), free(ka), free(kb), free(idx), free(val);
        spr_hasher_free(a);
        spr_hasher_free(b);
    }
}

int main(void) {
    uint64_t seed = 20240601;
    const char *env = getenv("SPR_TEST_SEED");
    if (env) seed = strtoull(env, NULL, 10);
    printf("test_hash: seed %llu\n", (unsigned long long)seed);

    test_bad_input();
    test_simhash_default_unchanged();
    test_simhash_density(seed);
    test_simhash_collisions(seed, 3);
    test_simhash_collisions(seed, 12);
    test_wta_monotone(SPR_HASH_WTA, 0, seed);
    test_wta_monotone(SPR_HASH_DWTA, 0, seed);
    test_wta_monotone(SPR_HASH_DWTA, 1, seed);
    test_dwta_equals_wta(seed);
    test_adversarial(seed);
    test_seeds_differ(seed);
    test_reachable(seed);
    test_packing(seed);
    test_agreement(seed);
    test_sparse_equals_dense(seed);
    test_rows_equal_one_row(seed);
    test_redraw_equals_create(seed);
    test_doph_jaccard(seed);
    test_doph_binarise(seed);
    report_timing(seed);
    report_timing_sparse(seed);

    return CHECK_DONE("test_hash");
}

/*
 * test_hash.c: the hash families of src/hash.c. Statistical checks (SimHash's collision
 * probability, WTA/DWTA's monotonicity in similarity), exact properties (DWTA == WTA on
 * dense inputs, exact-width key packing, folding), and adversarial inputs.
 * Prints its seed (SPR_TEST_SEED overrides it) and exits non-zero on any failure.
 */
#include "common.h"
#include "hash.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            passed++;                                                             \
        } else {                                                                  \
            failed++;                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                           \
            printf(__VA_ARGS__);                                                  \
            printf("\n");                                                         \
        }                                                                         \
    } while (0)

static const char *fam_name(spr_hash_family f) {
    switch (f) {
    case SPR_HASH_DWTA: return "dwta";
    case SPR_HASH_SIMHASH: return "simhash";
    case SPR_HASH_WTA: return "wta";
    case SPR_HASH_DOPH: return "doph";
    }
    return "?";
}

static const double PI = 3.14159265358979323846;

static spr_hasher *make(spr_hash_family f, int64_t dim, int k, int l, int kbm, uint64_t seed) {
    spr_hasher *h = NULL;
    spr_status st = spr_hasher_create(f, dim, k, l, kbm, seed, &h);
    if (st != SPR_STATUS_OK) {
        printf("FAIL create(%s, dim %lld, K %d, L %d, bits %d): %s\n",
               fam_name(f), (long long)dim, k, l, kbm, spr_last_error());
        exit(1);
    }
    return h;
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
static void test_simhash_collisions(uint64_t seed) {
    const int64_t dim = 256;
    const int l = 1024, hashers = 4;
    spr_rng r;
    spr_rng_seed(&r, seed ^ 1);
    float x[256], y[256];
    uint32_t kx[1024], ky[1024];
    spr_hasher *h[4];
    for (int i = 0; i < hashers; i++) h[i] = make(SPR_HASH_SIMHASH, dim, 1, l, 30, seed + 100 + i);
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
              "simhash collision at %d deg: expected %.4f +- %.4f (4 sigma), got %.4f", deg, p,
              4 * sigma, got);
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
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH};
    const int64_t big = 100000;
    float *x = calloc((size_t)big, sizeof *x);
    uint32_t k1[64], k2[64];
    for (int fi = 0; fi < 3; fi++) {
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
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH};
    spr_rng r;
    spr_rng_seed(&r, seed ^ 5);
    float x[128];
    for (int i = 0; i < 128; i++) x[i] = (float)spr_rng_normal(&r);
    uint32_t a[50], b[50];
    for (int fi = 0; fi < 3; fi++) {
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
    const spr_hash_family fams[] = {SPR_HASH_DWTA, SPR_HASH_WTA, SPR_HASH_SIMHASH};
    spr_rng r;
    spr_rng_seed(&r, seed ^ 11);
    float x[64];
    for (int fi = 0; fi < 3; fi++) {
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

static void test_bad_input(void) {
    spr_hasher *h = (spr_hasher *)1;
    struct { spr_hash_family f; int64_t dim; int k, l, kbm; const char *what; } bad[] = {
        {SPR_HASH_DOPH, 64, 4, 4, 18, "doph"},
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
        spr_status st = spr_hasher_create(bad[i].f, bad[i].dim, bad[i].k, bad[i].l, bad[i].kbm, 1, &h);
        CHECK(st == SPR_STATUS_BAD_INPUT && h == NULL && spr_last_error()[0],
              "%s: BAD_INPUT, NULL handle and a message expected, got status %d, message '%s'",
              bad[i].what, (int)st, spr_last_error());
    }
    spr_hasher_create(SPR_HASH_DOPH, 64, 4, 4, 18, 1, &h);
    CHECK(strstr(spr_last_error(), "doph hashing is not implemented yet") != NULL,
          "doph message expected, got '%s'", spr_last_error());
    /* The edges that are allowed. */
    spr_status st = spr_hasher_create(SPR_HASH_SIMHASH, 1, 64, 1024, 30, 1, &h);
    CHECK(st == SPR_STATUS_OK, "simhash K=64 L=1024 dim 1: ok expected, got %d (%s)", (int)st,
          spr_last_error());
    spr_hasher_free(h);
    st = spr_hasher_create(SPR_HASH_DWTA, 1, 21, 1, 1, 1, &h);
    CHECK(st == SPR_STATUS_OK, "dwta K=21 key bits 1: ok expected, got %d (%s)", (int)st,
          spr_last_error());
    spr_hasher_free(h);
    spr_hasher_free(NULL);
}

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

int main(void) {
    uint64_t seed = 20240601;
    const char *env = getenv("SPR_TEST_SEED");
    if (env) seed = strtoull(env, NULL, 10);
    printf("test_hash: seed %llu\n", (unsigned long long)seed);

    test_bad_input();
    test_simhash_collisions(seed);
    test_wta_monotone(SPR_HASH_WTA, 0, seed);
    test_wta_monotone(SPR_HASH_DWTA, 0, seed);
    test_wta_monotone(SPR_HASH_DWTA, 1, seed);
    test_dwta_equals_wta(seed);
    test_adversarial(seed);
    test_seeds_differ(seed);
    test_reachable(seed);
    test_packing(seed);
    report_timing(seed);

    printf("test_hash: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

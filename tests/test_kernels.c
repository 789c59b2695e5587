/* test_kernels: every fast kernel set against the portable references, on random rows of
 * every length 0..300 (all tail cases) at unaligned offsets; the choice of a set (cpuid,
 * SPARROW_KERNELS, spr_kernels_select). A set this CPU cannot run is reported as
 * skipped, never as passed. Usage: test_kernels [seed]. */
#include "check.h"
#include "common.h"
#include "kernels.h"
#include "sparrow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXN 300

static float frand(spr_rng *r) { return (float)(spr_rng_uniform(r) * 2.0 - 1.0); }

static void test_set(const spr_kernel_set *k, uint64_t seed) {
    const spr_kernel_set *ref = &spr_kernels_portable;
    spr_rng r;
    spr_rng_seed(&r, seed);
    static float a[MAXN + 8], b[MAXN + 8], y1[MAXN + 8], y2[MAXN + 8];
    static float w1[MAXN + 8], g1[MAXN + 8], m1[MAXN + 8], v1[MAXN + 8];
    static float w2[MAXN + 8], g2[MAXN + 8], m2[MAXN + 8], v2[MAXN + 8];
    static int32_t idx[MAXN + 8];
    int bad_dot = 0, bad_axpy = 0, bad_sparse = 0, bad_adam = 0;
    for (int n = 0; n <= MAXN; n++) {
        const int off = n % 7; /* unaligned starts */
        float *pa = a + off, *pb = b + 1, *py1 = y1 + off, *py2 = y2 + off;
        double mag = 0.0;
        for (int i = 0; i < n; i++) {
            pa[i] = frand(&r), pb[i] = frand(&r), py1[i] = py2[i] = frand(&r);
            mag += fabs((double)pa[i] * pb[i]);
        }
        const float tol = 1e-5f * (float)mag + 1e-6f;
        float d1 = ref->dot(pa, pb, n), d2 = k->dot(pa, pb, n);
        if (!(fabsf(d1 - d2) <= tol) && bad_dot++ < 3)
            CHECK(0, "%s dot n=%d: expected %.9g (reference), got %.9g", k->name, n, d1, d2);
        float alpha = frand(&r);
        ref->axpy(alpha, pa, py1, n), k->axpy(alpha, pa, py2, n);
        for (int i = 0; i < n; i++)
            if (!(fabsf(py1[i] - py2[i]) <= 1e-6f * (1.0f + fabsf(py1[i]))) && bad_axpy++ < 3)
                CHECK(0, "%s axpy n=%d i=%d: expected %.9g, got %.9g", k->name, n, i, py1[i], py2[i]);
        int nnz = n / 3;
        for (int j = 0; j < nnz; j++) idx[j] = (int32_t)spr_rng_below(&r, (uint64_t)(n ? n : 1));
        float s1 = ref->dot_sparse(pa, idx, pb, nnz), s2 = k->dot_sparse(pa, idx, pb, nnz);
        if (!(fabsf(s1 - s2) <= tol) && bad_sparse++ < 3)
            CHECK(0, "%s dot_sparse nnz=%d: expected %.9g, got %.9g", k->name, nnz, s1, s2);
        for (int i = 0; i < n; i++) {
            w1[i] = w2[i] = frand(&r);
            g1[i] = g2[i] = frand(&r) * 0.1f;
            m1[i] = m2[i] = frand(&r) * 0.01f;
            v1[i] = v2[i] = (float)spr_rng_uniform(&r) * 1e-3f;
        }
        /* m = b1 m + (1 - b1) g can cancel: the tolerance scales with its terms. */
        static float mscale[MAXN + 8];
        for (int i = 0; i < n; i++) mscale[i] = 0.9f * fabsf(m1[i]) + 0.1f * fabsf(g1[i]);
        ref->adam_row(w1, g1, m1, v1, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f);
        k->adam_row(w2, g2, m2, v2, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f);
        for (int i = 0; i < n; i++) {
            const float den = sqrtf(v1[i]) / sqrtf(0.00399f) + 1e-8f;
            const float wtol = 1e-6f * (fabsf(w1[i]) + 1e-3f / 0.271f * mscale[i] / den) + 1e-9f;
            int ok = fabsf(w1[i] - w2[i]) <= wtol &&
                     fabsf(m1[i] - m2[i]) <= 1e-6f * mscale[i] + 1e-12f &&
                     fabsf(v1[i] - v2[i]) <= 1e-6f * fabsf(v1[i]) + 1e-15f && g2[i] == 0.0f;
            if (!ok && bad_adam++ < 3)
                CHECK(0, "%s adam_row n=%d i=%d: expected w %.9g m %.9g v %.9g g 0, got %.9g %.9g %.9g %g",
                      k->name, n, i, w1[i], m1[i], v1[i], w2[i], m2[i], v2[i], g2[i]);
        }
    }
    CHECK(bad_dot + bad_axpy + bad_sparse + bad_adam == 0,
          "%s: %d dot, %d axpy, %d dot_sparse, %d adam mismatches (expected 0)", k->name, bad_dot,
          bad_axpy, bad_sparse, bad_adam);
}

/* matmul_panels and signed_sums of set k against the references, bit for bit (both are
 * defined as fixed chains of roundings), and signed_sums against matmul_panels: with P's
 * entries in {-1, 0, +1} and finite x the two give the same bits (hash.c says why).
 * Shapes cover the row tails of every set's blocks and odd d. */
static void test_panels(const spr_kernel_set *k, uint64_t seed) {
    const spr_kernel_set *ref = &spr_kernels_portable;
    spr_rng r;
    spr_rng_seed(&r, seed ^ 0x9a9e1);
    enum { MAXR = 17, MAXD = 41, MAXP = 3 };
    static float x[MAXR * (MAXD + 3)];
    static _Alignas(64) float p[MAXP * MAXD * SPR_PANEL]; /* the kernels load panels aligned */
    static float a1[MAXR * MAXP * SPR_PANEL], a2[MAXR * MAXP * SPR_PANEL];
    static float s1[4 * 12 * SPR_SUM_ROWS], s2[4 * 12 * SPR_SUM_ROWS];
    static int32_t ent[4 * 12 * MAXD];
    static int64_t start[13];
    float *xt = spr_alloc(2 * (MAXD + 1) * SPR_SUM_ROWS * sizeof(float));
    int bad_mm = 0, bad_ss = 0, bad_cross = 0;
    for (int trial = 0; trial < 60; trial++) {
        const int64_t n = 1 + (int64_t)spr_rng_below(&r, MAXR - 1); /* 1..16 */
        const int64_t d = 1 + (int64_t)spr_rng_below(&r, MAXD), ldx = d + 3;
        const int64_t np = 1 + (int64_t)spr_rng_below(&r, MAXP), c = np * SPR_PANEL;
        for (int64_t i = 0; i < n * ldx; i++)
            x[i] = (float)(spr_rng_normal(&r) * pow(10.0, (double)spr_rng_below(&r, 9) - 4.0));
        for (int64_t i = 0; i < np * d * SPR_PANEL; i++) {
            uint64_t u = spr_rng_below(&r, 6);
            p[i] = u == 0 ? 1.0f : u == 1 ? -1.0f : 0.0f;
        }
        ref->matmul_panels(x, ldx, n, d, p, np, a1, c);
        k->matmul_panels(x, ldx, n, d, p, np, a2, c);
        for (int64_t i = 0; i < n * c; i++)
            if (memcmp(&a1[i], &a2[i], 4) && bad_mm++ < 3)
                CHECK(0, "%s matmul_panels n %lld d %lld np %lld at %lld: expected %.9g, got %.9g",
                      k->name, (long long)n, (long long)d, (long long)np, (long long)i, a1[i], a2[i]);
        /* the same P as signed_sums entry lists: groups of 4 codes, padded with 2 d */
        const int64_t ng = c / 4;
        int64_t tot = 0;
        for (int64_t g = 0; g < ng; g++) {
            int64_t longest = 0, len[4] = {0};
            for (int q = 0; q < 4; q++) {
                const int64_t col = 4 * g + q, pq = col / SPR_PANEL, iq = col % SPR_PANEL;
                for (int64_t j = 0; j < d; j++) {
                    const float v = p[(pq * d + j) * SPR_PANEL + iq];
                    if (v != 0.0f) ent[tot + 4 * len[q]++ + q] = (int32_t)((2 * j + (v < 0.0f)) * SPR_SUM_ROWS);
                }
                longest = len[q] > longest ? len[q] : longest;
            }
            for (int q = 0; q < 4; q++)
                for (int64_t e = len[q]; e < longest; e++) ent[tot + 4 * e + q] = (int32_t)(2 * d * SPR_SUM_ROWS);
            start[g] = tot;
            tot += 4 * longest;
        }
        start[ng] = tot;
        ref->signed_sums(x, ldx, n, d, ent, start, ng, s1, xt);
        k->signed_sums(x, ldx, n, d, ent, start, ng, s2, xt);
        for (int64_t i = 0; i < c; i++)
            for (int64_t row = 0; row < n; row++) {
                const float e1 = s1[i * SPR_SUM_ROWS + row], e2 = s2[i * SPR_SUM_ROWS + row];
                if (memcmp(&e1, &e2, 4) && bad_ss++ < 3)
                    CHECK(0, "%s signed_sums n %lld d %lld code %lld row %lld: expected %.9g, got %.9g",
                          k->name, (long long)n, (long long)d, (long long)i, (long long)row, e1, e2);
                if (memcmp(&e1, &a1[row * c + i], 4) && bad_cross++ < 3)
                    CHECK(0, "signed_sums == matmul_panels (portable) n %lld d %lld code %lld row %lld: "
                          "expected %.9g, got %.9g", (long long)n, (long long)d, (long long)i,
                          (long long)row, a1[row * c + i], e1);
            }
    }
    CHECK(bad_mm + bad_ss + bad_cross == 0,
          "%s: %d matmul_panels, %d signed_sums, %d cross mismatches (expected 0)", k->name,
          bad_mm, bad_ss, bad_cross);
    spr_free(xt);
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
static int bf16_is_nan(uint16_t h) { return (h & 0x7F80u) == 0x7F80u && (h & 0x7Fu); }

/* The conversions on the cases that matter: exact values, ties both ways, just above a
 * tie, the carry into the exponent and into infinity, signs, NaN, subnormals. */
static void test_bf16_convert(void) {
    static const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3F800000u, 0x3F80u}, /* 1.0 */
        {0x3F808000u, 0x3F80u}, /* tie, even below: down */
        {0x3F818000u, 0x3F82u}, /* tie, odd below: up */
        {0x3F808001u, 0x3F81u}, /* above the tie: up */
        {0x3F807FFFu, 0x3F80u}, /* below the tie: down */
        {0x3FFFFFFFu, 0x4000u}, /* carry into the exponent */
        {0x7F7FFFFFu, 0x7F80u}, /* FLT_MAX rounds to infinity */
        {0x7F800000u, 0x7F80u}, /* +inf */
        {0xFF800000u, 0xFF80u}, /* -inf */
        {0x00000000u, 0x0000u}, /* +0 */
        {0x80000000u, 0x8000u}, /* -0 */
        {0xBF818000u, 0xBF82u}, /* negative tie, odd: away from zero */
        {0x00018000u, 0x0002u}, /* subnormal tie, odd: up */
        {0x7FC00000u, 0x7FC0u}, /* quiet NaN */
        {0x7FFFFFFFu, 0x7FFFu}, /* NaN that a plain rounding would carry into -0 */
        {0x7F800001u, 0x7FC0u}, /* signalling NaN, payload below bit 16: stays a NaN */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = spr_bf16_from_f32(bits_f32(cases[i].in));
        CHECK(got == cases[i].out, "bf16 of 0x%08x: expected 0x%04x, got 0x%04x", cases[i].in,
              cases[i].out, got);
    }
    for (uint32_t h = 0; h < 0x10000u; h++) { /* widening is exact and round-trips */
        float x = spr_f32_from_bf16((uint16_t)h);
        if (f32_bits(x) != h << 16 || (!bf16_is_nan((uint16_t)h) && spr_bf16_from_f32(x) != h)) {
            CHECK(0, "bf16 0x%04x: expected to widen to 0x%08x and back, got 0x%08x -> 0x%04x", h,
                  h << 16, f32_bits(x), spr_bf16_from_f32(x));
            break;
        }
    }
}

/* The documented rounding bits and stochastic rounding, written out again here (the
 * specification in kernels.h: a change there must show up as a failure here). */
static uint32_t noise_spec(uint32_t salt, int64_t i) { return (salt + (uint32_t)i * 0x9E3779B1u) >> 16; }
static uint16_t sr_spec(float x, uint32_t noise) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + noise) >> 16);
}

/* Stochastic rounding: exact values stay, the mean of many roundings is the value (1 +
 * 1/512 lies a quarter of the way from 1 to the next BF16 up), and v = 0.999 v decays as
 * a float would, where nearest-even rounding keeps v where it is forever. */
static void test_bf16_stochastic(void) {
    int fixed = 1;
    for (uint32_t k = 0; k < 1000; k++)
        fixed &= spr_bf16_from_f32_sr(1.5f, spr_bf16_noise(k, 3)) == 0x3FC0u;
    CHECK(fixed, "stochastic rounding of 1.5 (a BF16 value): expected always 0x3fc0");
    double sum = 0.0;
    int up = 0;
    for (uint32_t k = 0; k < 20000; k++) {
        uint16_t h = spr_bf16_from_f32_sr(1.0f + 1.0f / 512.0f,
                                          spr_bf16_noise((uint32_t)spr_mix64(k), (int64_t)k % 128));
        sum += spr_f32_from_bf16(h);
        up += h == 0x3F81u;
    }
    CHECK(fabs(sum / 20000.0 - (1.0 + 1.0 / 512.0)) < 2e-4 && up > 4500 && up < 5500,
          "stochastic rounding of 1 + 1/512: expected mean %.6f with ~5000 of 20000 rounded up, got "
          "%.6f with %d", 1.0 + 1.0 / 512.0, sum / 20000.0, up);
    uint16_t v_rne = spr_bf16_from_f32(1e-4f), v_sr = v_rne;
    for (int t = 0; t < 700; t++) {
        v_rne = spr_bf16_from_f32(0.999f * spr_f32_from_bf16(v_rne));
        /* the salt as the library makes it: a hash of the step (and the row) */
        v_sr = spr_bf16_from_f32_sr(0.999f * spr_f32_from_bf16(v_sr),
                                    spr_bf16_noise((uint32_t)spr_mix64((uint64_t)t << 32 | 5u), 0));
    }
    const double want = 1e-4 * pow(0.999, 700);
    CHECK(v_rne == spr_bf16_from_f32(1e-4f), "nearest-even v = 0.999 v, 700 times: expected stuck at "
          "1e-4 (why v is rounded stochastically), got %g", spr_f32_from_bf16(v_rne));
    CHECK(fabs(spr_f32_from_bf16(v_sr) - want) < 0.1 * want,
          "stochastic v = 0.999 v, 700 times: expected %g within 10%%, got %g", want,
          spr_f32_from_bf16(v_sr));
}

/* Random Adam inputs of n entries with moments that are BF16 values: m of either sign,
 * v >= 0 (a few exact zeros, as in rows never touched before). */
static void adam_inputs(spr_rng *r, int n, float *w, float *g, uint16_t *m, uint16_t *v) {
    for (int i = 0; i < n; i++) {
        w[i] = frand(r);
        g[i] = frand(r) * 0.1f;
        m[i] = spr_bf16_from_f32(frand(r) * 0.01f);
        v[i] = i % 17 == 3 ? 0 : spr_bf16_from_f32((float)spr_rng_uniform(r) * 1e-3f);
    }
}

/* The portable BF16 twin is, bit for bit, the float reference on the widened moments
 * followed by rounding the moments, m to nearest even and v stochastically with the
 * documented bits (w moves by the unrounded ones). */
static void test_bf16_reference(uint64_t seed) {
    const spr_kernel_set *ref = &spr_kernels_portable;
    spr_rng r;
    spr_rng_seed(&r, seed);
    static float w1[MAXN + 8], g1[MAXN + 8], m1[MAXN + 8], v1[MAXN + 8];
    static float w2[MAXN + 8], g2[MAXN + 8];
    static uint16_t m2[MAXN + 8], v2[MAXN + 8];
    int bad = 0, negative = 0;
    for (int n = 0; n <= MAXN; n++) {
        const int off = n % 5;
        float *pw = w2 + off, *pg = g2 + off;
        uint16_t *pm = m2 + (n % 3), *pv = v2 + (n % 3);
        adam_inputs(&r, n, pw, pg, pm, pv);
        for (int i = 0; i < n; i++) {
            w1[i] = pw[i], g1[i] = pg[i];
            m1[i] = spr_f32_from_bf16(pm[i]), v1[i] = spr_f32_from_bf16(pv[i]);
        }
        const float bc1 = n % 2 ? 0.1f : 0.271f, bc2 = n % 2 ? 0.001f : 0.00399f;
        ref->adam_row(w1, g1, m1, v1, n, 1e-3f, 0.9f, 0.999f, 1e-8f, bc1, bc2);
        const uint32_t salt = (uint32_t)spr_rng_next(&r);
        ref->adam_row_bf16(pw, pg, pm, pv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, bc1, bc2, salt);
        for (int i = 0; i < n; i++) {
            const uint16_t want_v = sr_spec(v1[i], noise_spec(salt, i));
            int ok = f32_bits(w1[i]) == f32_bits(pw[i]) && pm[i] == spr_bf16_from_f32(m1[i]) &&
                     pv[i] == want_v && f32_bits(pg[i]) == 0;
            negative += (pv[i] & 0x8000u) != 0;
            if (!ok && bad++ < 3)
                CHECK(0, "portable adam_row_bf16 n=%d i=%d: expected w %.9g m 0x%04x v 0x%04x g 0 "
                      "(float Adam, then rounding), got %.9g 0x%04x 0x%04x %g",
                      n, i, w1[i], spr_bf16_from_f32(m1[i]), want_v, pw[i], pm[i],
                      pv[i], pg[i]);
        }
    }
    CHECK(bad == 0, "portable adam_row_bf16: %d mismatches against float Adam + rounding (expected 0)", bad);
    CHECK(negative == 0, "portable adam_row_bf16: %d second moments with the sign bit set (expected 0)",
          negative);
}

/* A fast set's BF16 Adam against the portable twin: w as for adam_row; the moments within
 * one BF16 step (a last-bit float difference can move a rounding), and almost always equal. */
static void test_bf16_set(const spr_kernel_set *k, uint64_t seed) {
    const spr_kernel_set *ref = &spr_kernels_portable;
    spr_rng r;
    spr_rng_seed(&r, seed);
    static float w1[MAXN + 8], g1[MAXN + 8], w2[MAXN + 8], g2[MAXN + 8];
    static uint16_t m1[MAXN + 8], v1[MAXN + 8], m2[MAXN + 8], v2[MAXN + 8];
    int bad = 0;
    long total = 0, differ = 0;
    for (int n = 0; n <= MAXN; n++) {
        const int off = n % 7, off16 = n % 9; /* unaligned starts */
        float *pw = w2 + off, *pg = g2 + off;
        uint16_t *pm = m2 + off16, *pv = v2 + off16;
        adam_inputs(&r, n, w1, g1, m1, v1);
        float mscale[MAXN + 8];
        for (int i = 0; i < n; i++) {
            pw[i] = w1[i], pg[i] = g1[i], pm[i] = m1[i], pv[i] = v1[i];
            mscale[i] = 0.9f * fabsf(spr_f32_from_bf16(m1[i])) + 0.1f * fabsf(g1[i]);
        }
        /* guards: the kernel must not write outside [0, n) */
        pm[n] = pv[n] = 0xABCDu;
        pw[n] = 7.0f;
        const uint32_t salt = (uint32_t)spr_rng_next(&r);
        ref->adam_row_bf16(w1, g1, m1, v1, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f, salt);
        k->adam_row_bf16(pw, pg, pm, pv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f, salt);
        CHECK(pm[n] == 0xABCDu && pv[n] == 0xABCDu && pw[n] == 7.0f,
              "%s adam_row_bf16 n=%d: wrote past the row (guards 0x%04x 0x%04x %g)", k->name, n,
              pm[n], pv[n], pw[n]);
        for (int i = 0; i < n; i++) {
            const float v = spr_f32_from_bf16(v1[i]);
            const float den = sqrtf(v) / sqrtf(0.00399f) + 1e-8f;
            const float wtol = 1e-6f * (fabsf(w1[i]) + 1e-3f / 0.271f * mscale[i] / den) + 1e-9f;
            int dm = abs((int)pm[i] - (int)m1[i]), dv = abs((int)pv[i] - (int)v1[i]);
            total++;
            differ += dm != 0 || dv != 0;
            int ok = fabsf(w1[i] - pw[i]) <= wtol && dm <= 1 && dv <= 1 && pg[i] == 0.0f;
            if (!ok && bad++ < 3)
                CHECK(0, "%s adam_row_bf16 n=%d i=%d: expected w %.9g m 0x%04x v 0x%04x g 0, got "
                      "%.9g 0x%04x 0x%04x %g", k->name, n, i, w1[i], m1[i], v1[i], pw[i], pm[i],
                      pv[i], pg[i]);
        }
    }
    CHECK(bad == 0, "%s adam_row_bf16: %d mismatches (expected 0)", k->name, bad);
    CHECK(differ * 100 <= total, "%s adam_row_bf16: %ld of %ld moments one BF16 step off the "
          "reference (expected at most 1%%)", k->name, differ, total);
    /* the set's own float Adam on the widened moments moves w exactly as its BF16 Adam
     * does (same arithmetic per entry), and m rounds to nearest even */
    int bad_same = 0;
    for (int n = 0; n <= MAXN; n++) {
        static float fw[MAXN + 8], fg[MAXN + 8], fm[MAXN + 8], fv[MAXN + 8];
        adam_inputs(&r, n, w1, g1, m1, v1);
        for (int i = 0; i < n; i++) {
            fw[i] = w1[i], fg[i] = g1[i];
            fm[i] = spr_f32_from_bf16(m1[i]), fv[i] = spr_f32_from_bf16(v1[i]);
        }
        k->adam_row(fw, fg, fm, fv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f);
        k->adam_row_bf16(w1, g1, m1, v1, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            uint32_t u = f32_bits(fv[i]);
            int ok = f32_bits(fw[i]) == f32_bits(w1[i]) && m1[i] == spr_bf16_from_f32(fm[i]) &&
                     (v1[i] == u >> 16 || ((u & 0xFFFFu) && v1[i] == (u >> 16) + 1));
            if (!ok && bad_same++ < 3)
                CHECK(0, "%s adam_row_bf16 against its own adam_row, n=%d i=%d: expected w %.9g m 0x%04x "
                      "v near %.9g, got %.9g 0x%04x 0x%04x", k->name, n, i, fw[i], spr_bf16_from_f32(fm[i]),
                      fv[i], w1[i], m1[i], v1[i]);
        }
    }
    CHECK(bad_same == 0, "%s adam_row_bf16 against its own adam_row: %d mismatches (expected 0)", k->name,
          bad_same);
    /* a NaN gradient gives NaN moments (not an infinity, not -0), as in the reference */
    float w[20], g[20];
    uint16_t m[20], v[20];
    adam_inputs(&r, 20, w, g, m, v);
    g[3] = g[17] = NAN;
    k->adam_row_bf16(w, g, m, v, 20, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f, 12345u);
    CHECK(bf16_is_nan(m[3]) && bf16_is_nan(v[3]) && bf16_is_nan(m[17]) && bf16_is_nan(v[17]) &&
              !bf16_is_nan(m[4]) && !bf16_is_nan(v[16]),
          "%s adam_row_bf16 with NaN gradients at 3 and 17: expected NaN moments there only, got "
          "m 0x%04x 0x%04x v 0x%04x 0x%04x (neighbours 0x%04x 0x%04x)", k->name, m[3], m[17], v[3],
          v[17], m[4], v[16]);
}

/* adam_row gives an entry the same bits whether the row is short or long (AVX-512 steps
 * rows under 16 entries with scalar operations, the lanes' own): each entry of a 16-entry
 * row against the same entry stepped alone. */
static void test_adam_short_rows(const spr_kernel_set *k, uint64_t seed) {
    spr_rng r;
    spr_rng_seed(&r, seed);
    int bad = 0;
    for (int rep = 0; rep < 200; rep++) {
        float w[16], g[16], m[16], v[16], w1[16], g1[16], m1[16], v1[16];
        for (int i = 0; i < 16; i++) {
            /* w = 0 half of the time: the new w is then the update itself, so a last-bit
             * difference in the denominator shows */
            w[i] = w1[i] = rep % 2 ? 0.0f : frand(&r), g[i] = g1[i] = frand(&r) * 0.1f;
            m[i] = m1[i] = frand(&r) * 0.01f, v[i] = v1[i] = (float)spr_rng_uniform(&r) * 1e-3f;
        }
        const float bc1 = rep % 2 ? 0.1f : 0.271f, bc2 = rep % 2 ? 0.001f : 0.00399f;
        k->adam_row(w, g, m, v, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, bc1, bc2);
        for (int i = 0; i < 16; i++) {
            k->adam_row(w1 + i, g1 + i, m1 + i, v1 + i, 1, 1e-3f, 0.9f, 0.999f, 1e-8f, bc1, bc2);
            if ((f32_bits(w[i]) != f32_bits(w1[i]) || f32_bits(m[i]) != f32_bits(m1[i]) ||
                 f32_bits(v[i]) != f32_bits(v1[i])) && bad++ < 3)
                CHECK(0, "%s adam_row: entry %d of a 16-entry row: expected w %.9g m %.9g v %.9g as "
                      "stepped alone, got %.9g %.9g %.9g", k->name, i, w1[i], m1[i], v1[i], w[i], m[i], v[i]);
        }
    }
    CHECK(bad == 0, "%s adam_row: %d entries differ between a long row and one entry at a time", k->name, bad);
}

/* The weights' rounding bits as kernels.h documents them, written out again. */
static uint32_t noise_w_spec(uint32_t salt, int64_t i) {
    return ((salt ^ 0x6A09E667u) + (uint32_t)i * 0x85EBCA77u) >> 16;
}

/* The BF16-weight kernels of set k (the portable one included) against k's own float
 * kernels on the widened weights, bit for bit: dot_bf16 is dot, axpy_bf16 is axpy, and
 * adam_row_bf16w is adam_row_bf16 on a float copy of w followed by rounding w
 * stochastically with the documented bits. Every length 0..MAXN, unaligned starts, and
 * guards past the end. */
static void test_bf16w_set(const spr_kernel_set *k, uint64_t seed) {
    spr_rng r;
    spr_rng_seed(&r, seed);
    static uint16_t wb[MAXN + 24], mb1[MAXN + 8], vb1[MAXN + 8], mb2[MAXN + 24], vb2[MAXN + 24];
    static float wf[MAXN + 8], x[MAXN + 8], y1[MAXN + 8], y2[MAXN + 8], g1[MAXN + 8], g2[MAXN + 8];
    int bad_dot = 0, bad_axpy = 0, bad_adam = 0;
    for (int n = 0; n <= MAXN; n++) {
        const int off = n % 9;
        uint16_t *pw = wb + off, *pm = mb2 + off, *pv = vb2 + off;
        for (int i = 0; i < n; i++) {
            pw[i] = spr_bf16_from_f32(frand(&r));
            wf[i] = spr_f32_from_bf16(pw[i]);
            x[i] = frand(&r), y1[i] = y2[i] = frand(&r);
        }
        const float d1 = k->dot(wf, x, n), d2 = k->dot_bf16(pw, x, n);
        if (f32_bits(d1) != f32_bits(d2) && bad_dot++ < 3)
            CHECK(0, "%s dot_bf16 n=%d: expected %.9g (dot on the widened row), got %.9g", k->name, n, d1, d2);
        k->axpy(0.37f, wf, y1, n);
        k->axpy_bf16(0.37f, pw, y2, n);
        for (int i = 0; i < n; i++)
            if (f32_bits(y1[i]) != f32_bits(y2[i]) && bad_axpy++ < 3)
                CHECK(0, "%s axpy_bf16 n=%d i=%d: expected %.9g, got %.9g", k->name, n, i, y1[i], y2[i]);

        adam_inputs(&r, n, wf, g1, mb1, vb1);
        /* NaN moments and weight; a payload with every bit set, which rounding to nearest
         * would carry into -0 */
        if (n >= 20 && n % 4 == 1) g1[n / 2] = bits_f32(0x7FFFFFFFu);
        if (n >= 20 && n % 4 == 2) g1[n / 3] = INFINITY; /* infinite moments, NaN weight */
        for (int i = 0; i < n; i++) {
            pw[i] = spr_bf16_from_f32(wf[i]);
            wf[i] = spr_f32_from_bf16(pw[i]);
            g2[i] = g1[i], pm[i] = mb1[i], pv[i] = vb1[i];
        }
        pw[n] = pm[n] = pv[n] = 0xABCDu;
        const uint32_t salt = (uint32_t)spr_rng_next(&r);
        k->adam_row_bf16(wf, g1, mb1, vb1, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f, salt);
        k->adam_row_bf16w(pw, g2, pm, pv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f, salt);
        CHECK(pw[n] == 0xABCDu && pm[n] == 0xABCDu && pv[n] == 0xABCDu,
              "%s adam_row_bf16w n=%d: wrote past the row (guards 0x%04x 0x%04x 0x%04x)", k->name, n,
              pw[n], pm[n], pv[n]);
        for (int i = 0; i < n; i++) {
            const uint16_t want_w = sr_spec(wf[i], noise_w_spec(salt, i));
            if ((pw[i] != want_w || pm[i] != mb1[i] || pv[i] != vb1[i] || f32_bits(g2[i]) != 0) &&
                bad_adam++ < 3)
                CHECK(0, "%s adam_row_bf16w n=%d i=%d: expected w 0x%04x m 0x%04x v 0x%04x g 0 "
                      "(adam_row_bf16, then w rounded stochastically), got 0x%04x 0x%04x 0x%04x %g",
                      k->name, n, i, want_w, mb1[i], vb1[i], pw[i], pm[i], pv[i], g2[i]);
        }
    }
    CHECK(bad_dot == 0 && bad_axpy == 0 && bad_adam == 0,
          "%s BF16 weights: %d dot, %d axpy, %d Adam mismatches (expected 0)", k->name, bad_dot,
          bad_axpy, bad_adam);
    /* Updates far below a BF16 step add up: 128 weights at 1 (BF16 step 2^-7 there),
     * 2,000 Adam steps of about lr = 1e-5 each (a 780th of a step): the mean weight follows
     * the float one; rounding to nearest would leave every weight at 1. */
    static uint16_t w[128], m[128], v[128];
    static float fw[128], fm[128], fv[128], g[128], fg[128];
    for (int i = 0; i < 128; i++) w[i] = spr_bf16_from_f32(1.0f), fw[i] = 1.0f, m[i] = v[i] = 0, fm[i] = fv[i] = 0;
    for (int t = 1; t <= 2000; t++) {
        const float bc1 = 1.0f - powf(0.9f, (float)t), bc2 = 1.0f - powf(0.999f, (float)t);
        for (int i = 0; i < 128; i++) g[i] = fg[i] = 1e-2f;
        k->adam_row_bf16w(w, g, m, v, 128, 1e-5f, 0.9f, 0.999f, 1e-8f, bc1, bc2,
                          (uint32_t)spr_mix64((uint64_t)t << 32 | 9u));
        k->adam_row(fw, fg, fm, fv, 128, 1e-5f, 0.9f, 0.999f, 1e-8f, bc1, bc2);
    }
    double mean = 0.0;
    for (int i = 0; i < 128; i++) mean += spr_f32_from_bf16(w[i]) / 128.0;
    CHECK(fabs(mean - fw[0]) < 0.1 * (1.0 - fw[0]),
          "%s adam_row_bf16w, 2000 steps of ~1e-5 on weights at 1: expected the mean near the float "
          "weight %.6f (moved %.4f), got %.6f", k->name, fw[0], 1.0 - fw[0], mean);
}

/* row_entries of set k (the portable one included) against k's own axpy chains, bit for
 * bit: g formed from +0 by axpy entry by entry, dh by axpy (float row) or axpy_bf16 (BF16
 * row); dh NULL leaves the input gradients alone. Lengths 0..MAXN (one, two and three
 * register blocks and every tail), entries that repeat a sample, a sample gap in x and dh
 * (ld > n), guards past each written row, and a delta of -0.0 (a +0 start matters). */
static void test_row_entries(const spr_kernel_set *k, uint64_t seed) {
    enum { SAMPLES = 5, LD = MAXN + 24 };
    spr_rng r;
    spr_rng_seed(&r, seed);
    static float w[MAXN + 8], x[SAMPLES * LD], dh1[SAMPLES * LD], dh2[SAMPLES * LD];
    static float g1[MAXN + 8], g2[MAXN + 8];
    static uint16_t w16[MAXN + 8];
    uint64_t ent[9];
    int bad = 0, calls = 0;
    for (int n = 0; n <= MAXN; n++)
        for (int form = 0; form < 3; form++) { /* float row; BF16 row; no dh */
            const int ne = 1 + n % 9;
            for (int i = 0; i < n; i++) {
                w16[i] = spr_bf16_from_f32(frand(&r));
                w[i] = form == 1 ? spr_f32_from_bf16(w16[i]) : frand(&r);
            }
            for (int i = 0; i < SAMPLES * LD; i++) x[i] = frand(&r), dh1[i] = dh2[i] = frand(&r);
            for (int e = 0; e < ne; e++) {
                float d = e == 2 ? -0.0f : frand(&r);
                uint32_t bits;
                memcpy(&bits, &d, sizeof bits);
                ent[e] = (uint64_t)spr_rng_below(&r, SAMPLES) << 32 | bits;
            }
            g1[n] = g2[n] = 7.0f;
            memset(g1, 0, (size_t)n * sizeof(float));
            for (int e = 0; e < ne; e++) {
                const int64_t i = (int64_t)(ent[e] >> 32);
                const uint32_t bits = (uint32_t)ent[e];
                float d;
                memcpy(&d, &bits, sizeof d);
                k->axpy(d, x + i * LD, g1, n);
                if (form == 0) k->axpy(d, w, dh1 + i * LD, n);
                if (form == 1) k->axpy_bf16(d, w16, dh1 + i * LD, n);
            }
            k->row_entries(form == 1 ? NULL : w, form == 1 ? w16 : NULL, n, ent, ne, x,
                           form == 2 ? NULL : dh2, LD, g2);
            calls++;
            if (g2[n] != 7.0f && bad++ < 3)
                CHECK(0, "%s row_entries n=%d: wrote past the gradient", k->name, n);
            for (int i = 0; i < n; i++)
                if (f32_bits(g1[i]) != f32_bits(g2[i]) && bad++ < 3)
                    CHECK(0, "%s row_entries n=%d form %d: g[%d] expected %.9g (axpy chain), got %.9g",
                          k->name, n, form, i, g1[i], g2[i]);
            for (int i = 0; i < SAMPLES * LD; i++)
                if (f32_bits(dh1[i]) != f32_bits(dh2[i]) && bad++ < 3)
                    CHECK(0, "%s row_entries n=%d form %d: dh[%d][%d] expected %.9g, got %.9g",
                          k->name, n, form, i / LD, i % LD, dh1[i], dh2[i]);
        }
    CHECK(bad == 0, "%s row_entries: %d mismatches against its axpy chains in %d calls", k->name,
          bad, calls);
}

/* row_dots of set k (the portable one included) against k's own dot / dot_bf16, entry by
 * entry, bit for bit: every row length 0..300 (the AVX-512 set's row in registers up to
 * 128, dot by dot above), 0 to 10 entries (its blocks of four and the rest), repeated
 * samples, float and BF16 rows, a row at an unaligned offset; nothing written past
 * out[ne - 1]. */
static void test_row_dots(const spr_kernel_set *k, uint64_t seed) {
    enum { SAMPLES = 6, LD = MAXN + 24 };
    spr_rng r;
    spr_rng_seed(&r, seed);
    static float w[MAXN + 8], x[SAMPLES * LD];
    static uint16_t w16[MAXN + 8];
    float out[12];
    uint64_t ent[11];
    int bad = 0, calls = 0;
    for (int n = 0; n <= MAXN; n++)
        for (int form = 0; form < 2; form++) { /* float row; BF16 row */
            const int ne = (n + form) % 11, off = n % 3; /* the row at w + off */
            for (int i = 0; i < n + off; i++) {
                w16[i] = spr_bf16_from_f32(frand(&r));
                w[i] = frand(&r);
            }
            for (int i = 0; i < SAMPLES * LD; i++) x[i] = frand(&r);
            for (int e = 0; e < ne; e++) /* the low bits are noise the kernel must ignore */
                ent[e] = (uint64_t)spr_rng_below(&r, SAMPLES) << 32 | (uint32_t)spr_rng_next(&r);
            for (int e = 0; e < 12; e++) out[e] = 7.0f;
            k->row_dots(form ? NULL : w + off, form ? w16 + off : NULL, n, ent, ne, x + 1, LD, out);
            calls++;
            for (int e = 0; e < ne; e++) {
                const float *xs = x + 1 + (int64_t)(ent[e] >> 32) * LD;
                const float want = form ? k->dot_bf16(w16 + off, xs, n) : k->dot(w + off, xs, n);
                if (f32_bits(want) != f32_bits(out[e]) && bad++ < 3)
                    CHECK(0, "%s row_dots n=%d form %d entry %d of %d: expected %.9g (dot), got %.9g",
                          k->name, n, form, e, ne, want, out[e]);
            }
            if (out[ne] != 7.0f && bad++ < 3)
                CHECK(0, "%s row_dots n=%d: wrote past out[%d]", k->name, n, ne - 1);
        }
    CHECK(bad == 0, "%s row_dots: %d mismatches against its dots in %d calls", k->name, bad, calls);
}

/* The radix sorts of common.c against a plain stable sort: spr_sort_entries keeps each
 * key's entries in their order (the grouped output layer relies on it for its sums'
 * order) at every number of passes (limits up to 2^32: 1, 2 and 3 passes, each side of
 * 2^11 and 2^22, and a single key), n from 0 to 5,000, keys crowded on few values and
 * spread; spr_sort_ids (distinct ids) likewise, insertion-sorted lists included. */
static int cmp_entry(const void *a, const void *b) { /* (key, original index) */
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static void test_sorts(uint64_t seed) {
    enum { MAXE = 5000 };
    static uint32_t k[MAXE], kt[MAXE];
    static uint64_t v[MAXE], vt[MAXE], ref[MAXE];
    static int32_t ids[MAXE], idt[MAXE];
    static uint8_t used[1 << 16];
    const uint64_t limits[] = {1, 2, 100, 2048, 2049, 65536, 100000, (uint64_t)1 << 22,
                               ((uint64_t)1 << 22) + 1, (uint64_t)1 << 31, (uint64_t)1 << 32};
    const int ns[] = {0, 1, 5, 47, 48, 1000, MAXE};
    spr_rng r;
    spr_rng_seed(&r, seed);
    int bad = 0, runs = 0;
    for (size_t li = 0; li < sizeof limits / sizeof *limits; li++)
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (int crowd = 0; crowd < 2; crowd++) {
                const uint64_t limit = limits[li];
                const int n = ns[ni];
                const uint64_t span = crowd && limit > 7 ? 7 : limit; /* 7 values: long runs */
                const uint64_t base = limit - span;
                for (int i = 0; i < n; i++) {
                    k[i] = (uint32_t)(base + spr_rng_below(&r, span));
                    v[i] = spr_rng_next(&r);
                    ref[i] = (uint64_t)k[i] << 32 | (uint32_t)i; /* n < 2^32 */
                }
                qsort(ref, (size_t)n, sizeof *ref, cmp_entry);
                uint32_t *pk = k, *pkt = kt;
                uint64_t *pv = v, *pvt = vt;
                const uint64_t *v0 = v; /* the input's vals, where the sort may leave them */
                static uint64_t vin[MAXE];
                memcpy(vin, v0, (size_t)n * sizeof *vin);
                spr_sort_entries(&pk, &pv, &pkt, &pvt, n, limit);
                runs++;
                for (int i = 0; i < n; i++) {
                    const uint32_t want_k = (uint32_t)(ref[i] >> 32);
                    const uint64_t want_v = vin[(uint32_t)ref[i]];
                    if ((pk[i] != want_k || pv[i] != want_v) && bad++ < 3)
                        CHECK(0, "spr_sort_entries limit %llu n %d crowd %d: entry %d is (%u, %llx), "
                              "want (%u, %llx)", (unsigned long long)limit, n, crowd, i, pk[i],
                              (unsigned long long)pv[i], want_k, (unsigned long long)want_v);
                }
                /* distinct ids for spr_sort_ids (int32: limits up to 2^31) */
                if (limit > ((uint64_t)1 << 31) || (uint64_t)n > limit || crowd) continue;
                int m = 0;
                memset(used, 0, sizeof used);
                while (m < n) {
                    const uint64_t id = limit <= (1u << 16) ? spr_rng_below(&r, limit)
                                                            : spr_rng_below(&r, limit >> 16) << 16 | (uint64_t)m;
                    if (limit <= (1u << 16) && used[id]++) continue;
                    ids[m++] = (int32_t)id;
                }
                for (int i = 0; i < n; i++) ref[i] = (uint64_t)(uint32_t)ids[i];
                qsort(ref, (size_t)n, sizeof *ref, cmp_entry);
                spr_sort_ids(ids, n, (int64_t)limit, idt);
                runs++;
                for (int i = 0; i < n; i++)
                    if ((uint64_t)(uint32_t)ids[i] != ref[i] && bad++ < 3)
                        CHECK(0, "spr_sort_ids limit %llu n %d: id %d is %d, want %llu",
                              (unsigned long long)limit, n, i, ids[i], (unsigned long long)ref[i]);
            }
    CHECK(bad == 0, "radix sorts: %d misplaced entries in %d sorts", bad, runs);
}

/* Runs this program again with SPARROW_KERNELS=value and returns the set it reports. */
static void child_name(const char *self, const char *value, char *out, size_t cap) {
    int fd[2];
    out[0] = 0;
    if (pipe(fd)) return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        setenv("SPARROW_KERNELS", value, 1);
        execl(self, self, "--print-kernels", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], out, cap - 1);
    out[got > 0 ? got : 0] = 0;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
}

/* catch_up_row of set k against the portable reference, bit for bit (both unfused, each
 * operation rounded once), over lengths that cover every tail; the reference against its
 * formula in double (one rounding per operation: within a few float ulps). */
#define CU_N 70
static void test_catch_up_row(const spr_kernel_set *k, uint64_t seed) {
    const spr_kernel_set *ref = &spr_kernels_portable;
    spr_rng r;
    spr_rng_seed(&r, seed ^ 0xca7c4ull);
    float w1[CU_N], m1[CU_N], v1[CU_N], w2[CU_N + 1], m2[CU_N + 1], v2[CU_N + 1];
    int bad = 0, bad_formula = 0;
    for (int n = 0; n <= CU_N; n++) {
        const float S = 1e-3f * (float)(1 + spr_rng_below(&r, 50)), e = 1e-8f * (float)(1 + n % 3);
        const float d1 = 0.9f, d2 = 0.999f - 1e-4f * (float)(n % 7);
        for (int i = 0; i < n; i++) {
            w1[i] = w2[i] = (float)spr_rng_normal(&r) * 0.1f;
            m1[i] = m2[i] = (float)spr_rng_normal(&r) * 1e-3f;
            v1[i] = v2[i] = i == 3 ? 0.0f : (float)spr_rng_uniform(&r) * 1e-5f; /* v 0: e alone */
        }
        w2[n] = m2[n] = v2[n] = 7.0f; /* past the row: untouched */
        ref->catch_up_row(w1, m1, v1, n, S, e, d1, d2);
        k->catch_up_row(w2, m2, v2, n, S, e, d1, d2);
        for (int i = 0; i < n; i++)
            if ((w1[i] != w2[i] || m1[i] != m2[i] || v1[i] != v2[i]) && bad++ < 3)
                CHECK(0, "%s catch_up_row n=%d i=%d: expected w %.9g m %.9g v %.9g, got %.9g %.9g %.9g", k->name,
                      n, i, w1[i], m1[i], v1[i], w2[i], m2[i], v2[i]);
        if ((w2[n] != 7.0f || m2[n] != 7.0f || v2[n] != 7.0f) && bad++ < 3)
            CHECK(0, "%s catch_up_row n=%d: wrote past the row", k->name, n);
    }
    /* the formula, on a row of its own */
    {
        const int n = 33;
        const float S = 0.02f, e = 1e-8f, d1 = 0.9f, d2 = 0.998f;
        double wd[33], md[33], vd[33];
        for (int i = 0; i < n; i++) {
            w1[i] = (float)(0.05 * cos(i)), m1[i] = (float)(1e-3 * sin(3.0 * i)), v1[i] = (float)(1e-6 * (1 + i));
            wd[i] = w1[i], md[i] = m1[i], vd[i] = v1[i];
        }
        k->catch_up_row(w1, m1, v1, n, S, e, d1, d2);
        for (int i = 0; i < n; i++) {
            const double want = wd[i] - (double)S * md[i] / (sqrt(vd[i]) + (double)e);
            if (!(fabs(w1[i] - want) <= 4e-7 * (fabs(want) + (double)S * fabs(md[i]) / sqrt(vd[i])) &&
                  fabs(m1[i] - md[i] * d1) <= 2e-7 * fabs(md[i]) && fabs(v1[i] - vd[i] * d2) <= 2e-7 * vd[i]) &&
                bad_formula++ < 3)
                CHECK(0, "%s catch_up_row formula i=%d: expected w %.9g m %.9g v %.9g, got %.9g %.9g %.9g", k->name,
                      i, want, md[i] * d1, vd[i] * d2, w1[i], m1[i], v1[i]);
        }
    }
    CHECK(bad == 0 && bad_formula == 0, "%s catch_up_row: %d mismatches against the reference, %d against the formula",
          k->name, bad, bad_formula);
    /* BF16 moments, float or BF16 weights: bit for bit the reference (same noise bits) */
    int bad16 = 0;
    for (int form = 0; form < 2; form++)
        for (int n = 0; n <= CU_N; n++) {
            float fw1[CU_N + 1], fw2[CU_N + 1];
            uint16_t hw1[CU_N + 1], hw2[CU_N + 1], hm1[CU_N + 1], hm2[CU_N + 1], hv1[CU_N + 1], hv2[CU_N + 1];
            const uint32_t salt = (uint32_t)spr_rng_next(&r);
            const float S = 1e-3f * (float)(1 + spr_rng_below(&r, 50)), e = 1e-8f, d1 = 0.9f, d2 = 0.999f;
            for (int i = 0; i <= n; i++) {
                fw1[i] = fw2[i] = (float)spr_rng_normal(&r) * 0.1f;
                hw1[i] = hw2[i] = spr_bf16_from_f32(fw1[i]);
                hm1[i] = hm2[i] = spr_bf16_from_f32((float)spr_rng_normal(&r) * 1e-3f);
                hv1[i] = hv2[i] = spr_bf16_from_f32((float)spr_rng_uniform(&r) * 1e-5f);
            }
            ref->catch_up_row_bf16(form ? NULL : fw1, form ? hw1 : NULL, hm1, hv1, n, S, e, d1, d2, salt);
            k->catch_up_row_bf16(form ? NULL : fw2, form ? hw2 : NULL, hm2, hv2, n, S, e, d1, d2, salt);
            for (int i = 0; i <= n; i++) /* i = n: past the row, untouched by both */
                if ((memcmp(&fw1[i], &fw2[i], sizeof(float)) || hw1[i] != hw2[i] || hm1[i] != hm2[i] ||
                     hv1[i] != hv2[i]) && bad16++ < 3)
                    CHECK(0, "%s catch_up_row_bf16 form %d n=%d i=%d: expected w %.9g/0x%04x m 0x%04x v 0x%04x, "
                          "got %.9g/0x%04x 0x%04x 0x%04x", k->name, form, n, i, fw1[i], hw1[i], hm1[i], hv1[i],
                          fw2[i], hw2[i], hm2[i], hv2[i]);
        }
    CHECK(bad16 == 0, "%s catch_up_row_bf16: %d mismatches against the reference", k->name, bad16);
}

/* adam_catch_up_row of set k (kernels.h): against k's own catch_up_row then adam_row, the
 * portable reference, and (the reference) its formula in double, over lengths that cover
 * every tail and unaligned starts, a zero v among them, guards past the row; for AVX-512
 * an entry stepped alone gives the bits it gets in a row. The two passes round twice
 * where the one pass divides once: within a few float ulps of the terms' sizes. */
static void test_adam_catch_up_row(const spr_kernel_set *k, uint64_t seed) {
    const spr_kernel_set *ref = &spr_kernels_portable;
    spr_rng r;
    spr_rng_seed(&r, seed ^ 0xf05edull);
    static float W[3][CU_N + 8], G[3][CU_N + 8], M[3][CU_N + 8], V[3][CU_N + 8];
    float term[CU_N], mterm[CU_N];
    int bad = 0;
    for (int n = 0; n <= CU_N; n++) {
        const int off = n % 5;
        const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        const float bc1 = 0.1f + 0.01f * (float)(n % 9), bc2 = 0.001f + 1e-4f * (float)(n % 4);
        const float S = 1e-3f * (float)(1 + spr_rng_below(&r, 50)), e = 1e-8f * (float)(1 + n % 3);
        const float d1 = 0.9f - 0.01f * (float)(n % 4), d2 = 0.999f - 1e-4f * (float)(n % 7);
        float *w[3], *g[3], *m[3], *v[3];
        for (int c = 0; c < 3; c++) w[c] = W[c] + off, g[c] = G[c] + off, m[c] = M[c] + off, v[c] = V[c] + off;
        for (int i = 0; i <= n; i++) {
            const float wi = i == n ? 7.0f : (float)spr_rng_normal(&r) * 0.1f;
            const float gi = i == n ? 7.0f : (float)spr_rng_normal(&r) * 1e-2f;
            const float mi = i == n ? 7.0f : (float)spr_rng_normal(&r) * 1e-3f;
            const float vi = i == n ? 7.0f : i == 3 ? 0.0f : (float)spr_rng_uniform(&r) * 1e-5f;
            for (int c = 0; c < 3; c++) w[c][i] = wi, g[c][i] = gi, m[c][i] = mi, v[c][i] = vi;
            if (i < n) { /* the sizes of the two moves: what rounding is measured against */
                const float mn = b1 * fabsf(mi * d1) + (1.0f - b1) * fabsf(gi);
                mterm[i] = mn; /* m' = b1 m d1 + (1 - b1) g can cancel */
                const float vn = b2 * vi * d2 + (1.0f - b2) * gi * gi;
                term[i] = fabsf(wi) + S * fabsf(mi) / (sqrtf(vi) + e) +
                          lr / bc1 * mn / (sqrtf(vn) / sqrtf(bc2) + eps);
            }
        }
        k->adam_catch_up_row(w[0], g[0], m[0], v[0], n, lr, b1, b2, eps, bc1, bc2, S, e, d1, d2);
        k->catch_up_row(w[1], m[1], v[1], n, S, e, d1, d2);
        k->adam_row(w[1], g[1], m[1], v[1], n, lr, b1, b2, eps, bc1, bc2);
        ref->adam_catch_up_row(w[2], g[2], m[2], v[2], n, lr, b1, b2, eps, bc1, bc2, S, e, d1, d2);
        for (int c = 1; c < 3; c++)
            for (int i = 0; i < n; i++) {
                const int ok = fabsf(w[0][i] - w[c][i]) <= 1e-6f * term[i] + 1e-12f &&
                               fabsf(m[0][i] - m[c][i]) <= 1e-6f * mterm[i] + 1e-12f &&
                               fabsf(v[0][i] - v[c][i]) <= 1e-6f * v[c][i] + 1e-15f && g[0][i] == 0.0f;
                if (!ok && bad++ < 3)
                    CHECK(0, "%s adam_catch_up_row n=%d i=%d against %s: expected w %.9g m %.9g v %.9g, got "
                          "%.9g %.9g %.9g (g %g)", k->name, n, i, c == 1 ? "its two passes" : "the reference",
                          w[c][i], m[c][i], v[c][i], w[0][i], m[0][i], v[0][i], g[0][i]);
            }
        if ((w[0][n] != 7.0f || g[0][n] != 7.0f || m[0][n] != 7.0f || v[0][n] != 7.0f) && bad++ < 3)
            CHECK(0, "%s adam_catch_up_row n=%d: wrote past the row", k->name, n);
    }
    CHECK(bad == 0, "%s adam_catch_up_row: %d mismatches against its two passes and the reference", k->name, bad);
    if (k == ref) { /* the formula, in double, on a row of its own */
        const int n = 33;
        const float lr = 2e-3f, b1 = 0.85f, b2 = 0.995f, eps = 1e-7f, bc1 = 0.3f, bc2 = 0.02f;
        const float S = 0.02f, e = 3e-8f, d1 = 0.8f, d2 = 0.99f;
        float w[33], g[33], m[33], v[33];
        double want[33], size[33];
        for (int i = 0; i < n; i++) {
            w[i] = (float)(0.05 * cos(i)), g[i] = (float)(1e-2 * sin(1.7 * i));
            m[i] = (float)(1e-3 * sin(3.0 * i)), v[i] = (float)(1e-6 * (1 + i));
            const double a = sqrt((double)v[i]) + e, mn = b1 * ((double)m[i] * d1) + (1.0 - b1) * g[i];
            const double vn = b2 * ((double)v[i] * d2) + (1.0 - b2) * (double)g[i] * g[i];
            const double den = sqrt(vn) / sqrt((double)bc2) + eps;
            want[i] = w[i] - (double)S * m[i] / a - (double)lr / bc1 * mn / den;
            size[i] = fabs((double)w[i]) + fabs((double)S * m[i] / a) + fabs((double)lr / bc1 * mn / den);
        }
        ref->adam_catch_up_row(w, g, m, v, n, lr, b1, b2, eps, bc1, bc2, S, e, d1, d2);
        int bad_formula = 0;
        for (int i = 0; i < n; i++)
            if (!(fabs(w[i] - want[i]) <= 1e-6 * size[i]) && bad_formula++ < 3)
                CHECK(0, "portable adam_catch_up_row formula i=%d: expected w %.9g, got %.9g", i, want[i], w[i]);
        CHECK(bad_formula == 0, "portable adam_catch_up_row: %d mismatches against its formula", bad_formula);
    }
    if (!strcmp(k->name, "avx512")) { /* an entry alone: the bits it gets in a row */
        int bad_short = 0;
        for (int rep = 0; rep < 50; rep++) {
            float w[16], g[16], m[16], v[16], w1[16], g1[16], m1[16], v1[16];
            for (int i = 0; i < 16; i++) {
                w[i] = w1[i] = rep % 2 ? 0.0f : frand(&r), g[i] = g1[i] = frand(&r) * 0.1f;
                m[i] = m1[i] = frand(&r) * 0.01f, v[i] = v1[i] = (float)spr_rng_uniform(&r) * 1e-3f;
            }
            k->adam_catch_up_row(w, g, m, v, 16, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f, 0.01f, 1e-8f, 0.81f, 0.998f);
            for (int i = 0; i < 16; i++) {
                k->adam_catch_up_row(w1 + i, g1 + i, m1 + i, v1 + i, 1, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.271f, 0.00399f,
                                     0.01f, 1e-8f, 0.81f, 0.998f);
                if ((f32_bits(w[i]) != f32_bits(w1[i]) || f32_bits(m[i]) != f32_bits(m1[i]) ||
                     f32_bits(v[i]) != f32_bits(v1[i])) && bad_short++ < 3)
                    CHECK(0, "avx512 adam_catch_up_row: entry %d alone: expected w %.9g m %.9g v %.9g, got %.9g %.9g %.9g",
                          i, w[i], m[i], v[i], w1[i], m1[i], v1[i]);
            }
        }
        CHECK(bad_short == 0, "avx512 adam_catch_up_row: %d entries differ alone and in a row", bad_short);
    }
}

/* adam_catch_up_row_bf16 of set k: its own adam_catch_up_row on the widened values, bit
 * for bit, then m rounded to nearest even, v and a BF16 w stochastically with the
 * documented bits (kernels.h), float or BF16 weights, every length to CU_N from unaligned
 * starts, guards past the row; and a row of zeros at a tiny eps stays finite. */
static void test_adam_catch_up_row_bf16(const spr_kernel_set *k, uint64_t seed) {
    spr_rng r;
    spr_rng_seed(&r, seed ^ 0xb16f05eull);
    int bad = 0;
    for (int form = 0; form < 2; form++) /* 0: float w, 1: BF16 w */
        for (int n = 0; n <= CU_N; n++) {
            const int off = n % 7;
            static float W[CU_N + 8], G[CU_N + 8], fw[CU_N + 8], fg[CU_N + 8], fm[CU_N + 8], fv[CU_N + 8];
            static uint16_t W16[CU_N + 8], M[CU_N + 8], V[CU_N + 8];
            float *w = W + off, *g = G + off;
            uint16_t *w16 = W16 + off, *m = M + off, *v = V + off;
            const uint32_t salt = (uint32_t)spr_rng_next(&r);
            const float S = 1e-3f * (float)(1 + spr_rng_below(&r, 50)), e = 1e-8f * (float)(1 + n % 3);
            const float d1 = 0.9f - 0.01f * (float)(n % 4), d2 = 0.999f - 1e-4f * (float)(n % 7);
            const float bc1 = 0.1f + 0.01f * (float)(n % 9), bc2 = 0.001f + 1e-4f * (float)(n % 4);
            for (int i = 0; i < n; i++) {
                w16[i] = spr_bf16_from_f32((float)spr_rng_normal(&r) * 0.1f);
                w[i] = form ? 0.0f : (float)spr_rng_normal(&r) * 0.1f;
                g[i] = (float)spr_rng_normal(&r) * 1e-2f;
                m[i] = spr_bf16_from_f32((float)spr_rng_normal(&r) * 1e-3f);
                v[i] = spr_bf16_from_f32(i == 3 ? 0.0f : (float)spr_rng_uniform(&r) * 1e-5f);
                fw[i] = form ? spr_f32_from_bf16(w16[i]) : w[i], fg[i] = g[i];
                fm[i] = spr_f32_from_bf16(m[i]), fv[i] = spr_f32_from_bf16(v[i]);
            }
            w[n] = 7.0f, w16[n] = m[n] = v[n] = 0xABCDu, g[n] = 7.0f;
            k->adam_catch_up_row(fw, fg, fm, fv, n, 1e-3f, 0.9f, 0.999f, 1e-8f, bc1, bc2, S, e, d1, d2);
            k->adam_catch_up_row_bf16(form ? NULL : w, form ? w16 : NULL, g, m, v, n, 1e-3f, 0.9f, 0.999f,
                                      1e-8f, bc1, bc2, S, e, d1, d2, salt);
            for (int i = 0; i < n; i++) {
                const int ok = (form ? w16[i] == spr_bf16_from_f32_sr(fw[i], spr_bf16_noise_w(salt, i))
                                     : f32_bits(w[i]) == f32_bits(fw[i])) &&
                               m[i] == spr_bf16_from_f32(fm[i]) &&
                               v[i] == spr_bf16_from_f32_sr(fv[i], spr_bf16_noise(salt, i)) && g[i] == 0.0f;
                if (!ok && bad++ < 3)
                    CHECK(0, "%s adam_catch_up_row_bf16 (%s weights) n=%d i=%d: expected w %.9g m 0x%04x v 0x%04x, "
                          "got w %.9g (0x%04x) m 0x%04x v 0x%04x", k->name, form ? "BF16" : "float", n, i, fw[i],
                          spr_bf16_from_f32(fm[i]), spr_bf16_from_f32_sr(fv[i], spr_bf16_noise(salt, i)),
                          w[i], w16[i], m[i], v[i]);
            }
            if ((w[n] != 7.0f || w16[n] != 0xABCDu || m[n] != 0xABCDu || v[n] != 0xABCDu || g[n] != 7.0f) &&
                bad++ < 3)
                CHECK(0, "%s adam_catch_up_row_bf16 n=%d: wrote past the row", k->name, n);
        }
    CHECK(bad == 0, "%s adam_catch_up_row_bf16: %d mismatches against its own float kernel", k->name, bad);
    /* nothing to move at an eps whose product with e underflows: w stays, no 0 / 0 */
    float w[19] = {0}, g[19] = {0}, m[19] = {0}, v[19] = {0};
    for (int i = 0; i < 19; i++) w[i] = 0.5f;
    k->adam_catch_up_row(w, g, m, v, 19, 1e-3f, 0.9f, 0.999f, 1e-30f, 0.1f, 0.001f, 0.01f, 1e-31f, 0.9f, 0.999f);
    int finite = 1;
    for (int i = 0; i < 19; i++) finite &= w[i] == 0.5f && m[i] == 0.0f && v[i] == 0.0f;
    CHECK(finite, "%s adam_catch_up_row: a zero row at eps 1e-30 keeps its weights (w[0] %g)", k->name, w[0]);
}

/* zlib's CRC-32 bit by bit, the definition: the reference the tables are checked against. */
static uint32_t crc32_bitwise(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* k's crc32 against the bit-by-bit definition: every length to 600 bytes at every
 * alignment to 16 from a random preceding CRC (the folding's 64-byte steps, its 16-byte
 * steps and every tail), longer buffers in pieces of random sizes (crc32(a + b) =
 * crc32(crc32(a), b)), and the standard check value. */
static void test_crc32(const spr_kernel_set *k, uint64_t seed) {
    spr_rng r;
    spr_rng_seed(&r, seed);
    enum { N = 1 << 16 };
    static unsigned char b[N + 16];
    for (int i = 0; i < N + 16; i++) b[i] = (unsigned char)spr_rng_next(&r);
    CHECK(k->crc32(0, (const unsigned char *)"123456789", 9) == 0xCBF43926u,
          "%s crc32(\"123456789\"): expected 0xcbf43926, got 0x%08x", k->name,
          k->crc32(0, (const unsigned char *)"123456789", 9));
    int bad = 0;
    for (size_t n = 0; n <= 600 && bad < 5; n++)
        for (size_t off = 0; off < 16 && bad < 5; off++) {
            const uint32_t c = (uint32_t)spr_rng_next(&r);
            const uint32_t want = crc32_bitwise(c, b + off, n), got = k->crc32(c, b + off, n);
            if (got != want) bad++;
            CHECK(got == want, "%s crc32 of %zu bytes at offset %zu after 0x%08x: expected 0x%08x, got 0x%08x",
                  k->name, n, off, c, want, got);
        }
    const uint32_t whole = crc32_bitwise(0, b, N);
    uint32_t pieces = 0;
    for (size_t at = 0; at < N;) {
        size_t len = (size_t)(spr_rng_next(&r) % 5000);
        if (len > N - at) len = N - at;
        pieces = k->crc32(pieces, b + at, len);
        at += len;
    }
    CHECK(pieces == whole && k->crc32(0, b, N) == whole,
          "%s crc32 of 64 KB: expected 0x%08x, got 0x%08x in pieces, 0x%08x whole", k->name, whole, pieces,
          k->crc32(0, b, N));
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--print-kernels")) {
        printf("%s|%s", spr_kernels_name(), spr_kernels_describe());
        return 0;
    }
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 20261125;
    printf("test_kernels: seed %llu; %s\n", (unsigned long long)seed, spr_kernels_describe());

    test_panels(&spr_kernels_portable, seed); /* its own signed sums vs its products */
    test_bf16_convert();
    test_bf16_stochastic();
    test_bf16_reference(seed);
    test_bf16_set(&spr_kernels_portable, seed); /* the checks themselves, on the reference */
    test_bf16w_set(&spr_kernels_portable, seed);
    test_row_entries(&spr_kernels_portable, seed);
    test_row_dots(&spr_kernels_portable, seed);
    test_catch_up_row(&spr_kernels_portable, seed);
    test_adam_catch_up_row(&spr_kernels_portable, seed);
    test_adam_catch_up_row_bf16(&spr_kernels_portable, seed);
    test_sorts(seed);
    test_crc32(&spr_kernels_portable, seed);
    printf("  bf16 conversions and the portable BF16 Adam: tested\n");

    const char *names[] = {"avx2", "avx512"};
    const spr_kernel_set *sets[] = {spr_kernel_set_avx2(), spr_kernel_set_avx512()};
    for (int i = 0; i < 2; i++) {
        if (!sets[i]) printf("  %s: not compiled in this build: skipped\n", names[i]);
        else if (!spr_kernel_set_supported(names[i]))
            printf("  %s: this CPU cannot run it: SKIPPED (not tested here)\n", names[i]);
        else {
            test_set(sets[i], seed + (uint64_t)i);
            test_panels(sets[i], seed + (uint64_t)i);
            test_bf16_set(sets[i], seed + 10 + (uint64_t)i);
            test_bf16w_set(sets[i], seed + 20 + (uint64_t)i);
            test_row_entries(sets[i], seed + 40 + (uint64_t)i);
            test_row_dots(sets[i], seed + 50 + (uint64_t)i);
            test_catch_up_row(sets[i], seed + 60 + (uint64_t)i);
            test_adam_catch_up_row(sets[i], seed + 70 + (uint64_t)i);
            test_adam_catch_up_row_bf16(sets[i], seed + 80 + (uint64_t)i);
            test_crc32(sets[i], seed + 90 + (uint64_t)i);
            if (!strcmp(sets[i]->name, "avx512")) test_adam_short_rows(sets[i], seed + 30);
            printf("  %s: tested against the reference\n", names[i]);
        }
    }

    /* The default is the widest supported set. */
    const char *best = spr_kernel_set_supported("avx512") ? "avx512"
                       : spr_kernel_set_supported("avx2") ? "avx2" : "portable";
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(len > 0, "readlink /proc/self/exe: expected a path");
    if (len > 0) {
        self[len] = 0;
        char got[1024];
        child_name(self, "", got, sizeof got);
        CHECK(!strncmp(got, best, strlen(best)) && got[strlen(best)] == '|',
              "no SPARROW_KERNELS: expected set %s, got '%s'", best, got);
        child_name(self, "portable", got, sizeof got);
        CHECK(!strncmp(got, "portable|", 9), "SPARROW_KERNELS=portable: expected portable, got '%s'", got);
        child_name(self, "bogus", got, sizeof got);
        CHECK(!strncmp(got, best, strlen(best)) && strstr(got, "ignored"),
              "SPARROW_KERNELS=bogus: expected %s and a note 'ignored', got '%s'", best, got);
        if (!spr_kernel_set_supported("avx512")) {
            child_name(self, "avx512", got, sizeof got);
            CHECK(!strncmp(got, best, strlen(best)) && strstr(got, "cannot run"),
                  "SPARROW_KERNELS=avx512 on a CPU without it: expected %s and a note, got '%s'",
                  best, got);
        }
    }
    CHECK(spr_kernels_select("bogus") != SPR_STATUS_OK, "select bogus: expected an error");
    CHECK(spr_kernels_select("portable") == SPR_STATUS_OK && !strcmp(spr_kernels_name(), "portable"),
          "select portable: expected portable, got %s", spr_kernels_name());
    return CHECK_DONE("test_kernels");
}

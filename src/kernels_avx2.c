/* kernels_avx2.c: the kernels in AVX2 + FMA intrinsics. This file alone is compiled with
 * -mavx2 -mfma (CMakeLists.txt), so nothing else in the library assumes those
 * instructions; kernels.c calls in here only when cpuid says the CPU has them. */
#include "kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Four independent accumulators hide the FMA latency (4 cycles, 2 a cycle). */
static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float acc = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) acc = fmaf(a[i], b[i], acc); /* fused, as dot_bf16_avx2's tail */
    return acc;
}

static void axpy_avx2(float alpha, const float *x, float *y, int64_t n) {
    const __m256 va = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 y0 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 y1 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        _mm256_storeu_ps(y + i, y0);
        _mm256_storeu_ps(y + i + 8, y1);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(alpha, x[i], y[i]);
}

static float dot_sparse_avx2(const float *w, const int32_t *idx, const float *val, int64_t nnz) {
    __m256 s = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= nnz; j += 8) {
        __m256i vi = _mm256_loadu_si256((const __m256i *)(idx + j));
        s = _mm256_fmadd_ps(_mm256_i32gather_ps(w, vi, 4), _mm256_loadu_ps(val + j), s);
    }
    float acc = hsum(s);
    for (; j < nnz; j++) acc += w[idx[j]] * val[j];
    return acc;
}

/* One 8-lane Adam step, shared by the float, BF16-state and BF16-weight kernels (so that
 * each entry takes the same arithmetic in all three): m0, v0, w0 (float) become the new
 * moments and weight, before any rounding. Needs the constants set up as adam_row_avx2's. */
#define ADAM_STEP8(g0, m0, v0, w0)                                                                 \
    do {                                                                                           \
        m0 = _mm256_fmadd_ps(vb1, m0, _mm256_mul_ps(vc1, g0));                                     \
        v0 = _mm256_fmadd_ps(vb2, v0, _mm256_mul_ps(vc2, _mm256_mul_ps(g0, g0)));                  \
        w0 = _mm256_sub_ps(w0, _mm256_div_ps(_mm256_mul_ps(vstep, m0),                             \
                                             _mm256_fmadd_ps(_mm256_sqrt_ps(v0), vinv, veps)));    \
    } while (0)

/* The update divides by sqrt(v) * (1 / sqrt(bc2)) + eps: one division a lane instead of
 * two (the reference divides by sqrt(bc2)); the results differ in the last bit at most
 * a few times per row, well inside what the tests against PyTorch allow. */
static void adam_row_avx2(float *w, float *g, float *m, float *v, int64_t n, float lr, float b1,
                          float b2, float eps, float bc1, float bc2) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    const __m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(1.0f - b1);
    const __m256 vb2 = _mm256_set1_ps(b2), vc2 = _mm256_set1_ps(1.0f - b2);
    const __m256 vstep = _mm256_set1_ps(step), vinv = _mm256_set1_ps(inv_sqrt_bc2);
    const __m256 veps = _mm256_set1_ps(eps), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gi = _mm256_loadu_ps(g + i);
        __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i), wi = _mm256_loadu_ps(w + i);
        ADAM_STEP8(gi, mi, vi, wi);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(w + i, wi);
        _mm256_storeu_ps(g + i, zero);
    }
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] -= step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        g[i] = 0.0f;
    }
}

/* MR rows x one panel (16 columns, two registers) of acc held in registers over all of j:
 * per j two loads of P and MR broadcasts of x feed 2 MR fused multiply-adds (MR = 6: 12
 * accumulators + 2 + 1 of the 16 ymm registers, the FMA units rather than the loads
 * bound it). Fused like axpy_avx2 (its scalar tail too: GCC contracts it under -mfma). */
#define MR_AVX2 6
static inline __attribute__((always_inline)) void
panel_block_avx2(const float *x, int64_t ldx, const int rows, int64_t d, const float *p,
                 float *acc, int64_t ldacc) {
    __m256 a0[MR_AVX2], a1[MR_AVX2];
    for (int r = 0; r < rows; r++) a0[r] = a1[r] = _mm256_setzero_ps();
    for (int64_t j = 0; j < d; j++) {
        const __m256 p0 = _mm256_load_ps(p + j * 16), p1 = _mm256_load_ps(p + j * 16 + 8);
        for (int r = 0; r < rows; r++) {
            const __m256 xb = _mm256_broadcast_ss(x + r * ldx + j);
            a0[r] = _mm256_fmadd_ps(xb, p0, a0[r]);
            a1[r] = _mm256_fmadd_ps(xb, p1, a1[r]);
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_ps(acc + r * ldacc, a0[r]);
        _mm256_storeu_ps(acc + r * ldacc + 8, a1[r]);
    }
}

/* Panel by panel (its d x 64 bytes stay in L1 while every block of rows passes over it). */
static void matmul_panels_avx2(const float *x, int64_t ldx, int64_t n, int64_t d, const float *p,
                               int64_t np, float *acc, int64_t ldacc) {
    for (int64_t q = 0; q < np; q++) {
        const float *pq = p + q * d * SPR_PANEL;
        float *aq = acc + q * SPR_PANEL;
        int64_t r = 0;
        for (; r + MR_AVX2 <= n; r += MR_AVX2)
            panel_block_avx2(x + r * ldx, ldx, MR_AVX2, d, pq, aq + r * ldacc, ldacc);
        switch (n - r) { /* constant row counts: each call unrolls into registers */
        case 5: panel_block_avx2(x + r * ldx, ldx, 5, d, pq, aq + r * ldacc, ldacc); break;
        case 4: panel_block_avx2(x + r * ldx, ldx, 4, d, pq, aq + r * ldacc, ldacc); break;
        case 3: panel_block_avx2(x + r * ldx, ldx, 3, d, pq, aq + r * ldacc, ldacc); break;
        case 2: panel_block_avx2(x + r * ldx, ldx, 2, d, pq, aq + r * ldacc, ldacc); break;
        case 1: panel_block_avx2(x + r * ldx, ldx, 1, d, pq, aq + r * ldacc, ldacc); break;
        default: break;
        }
    }
}

/* Four codes x 16 rows in eight registers; per entry of the four lists, eight adds
 * straight from the transposed rows in L1 (2 (d + 1) x 64 bytes). */
static void signed_sums_avx2(const float *x, int64_t ldx, int64_t n, int64_t d,
                             const int32_t *ent, const int64_t *gstart, int64_t ngroups,
                             float *acc, float *xt) {
    spr_signed_sums_transpose(x, ldx, n, d, xt);
    for (int64_t g = 0; g < ngroups; g++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0,
               d1 = a0;
        for (int64_t e = gstart[g]; e < gstart[g + 1]; e += 4) {
            const float *va = xt + ent[e], *vb = xt + ent[e + 1];
            const float *vc = xt + ent[e + 2], *vd = xt + ent[e + 3];
            a0 = _mm256_add_ps(a0, _mm256_load_ps(va));
            a1 = _mm256_add_ps(a1, _mm256_load_ps(va + 8));
            b0 = _mm256_add_ps(b0, _mm256_load_ps(vb));
            b1 = _mm256_add_ps(b1, _mm256_load_ps(vb + 8));
            c0 = _mm256_add_ps(c0, _mm256_load_ps(vc));
            c1 = _mm256_add_ps(c1, _mm256_load_ps(vc + 8));
            d0 = _mm256_add_ps(d0, _mm256_load_ps(vd));
            d1 = _mm256_add_ps(d1, _mm256_load_ps(vd + 8));
        }
        float *o = acc + 4 * g * 16;
        _mm256_storeu_ps(o, a0), _mm256_storeu_ps(o + 8, a1);
        _mm256_storeu_ps(o + 16, b0), _mm256_storeu_ps(o + 24, b1);
        _mm256_storeu_ps(o + 32, c0), _mm256_storeu_ps(o + 40, c1);
        _mm256_storeu_ps(o + 48, d0), _mm256_storeu_ps(o + 56, d1);
    }
}

/* 16 BF16 -> 2 x 8 floats: one 256-bit load, the 64-bit quarters reordered (0 2 1 3) so
 * that interleaving with zeros (which works within 128-bit halves) puts each BF16 in the
 * top half of its float lane, in order: 3 shuffles for 16 values. Exact. */
static inline void bf16_load16(const uint16_t *p, __m256 *lo, __m256 *hi) {
    const __m256i x = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)p), 0xD8);
    *lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), x));
    *hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), x));
}

/* 8 BF16 -> 8 floats (the odd 8 at the end of a row). */
static inline __m256 bf16_load8(const uint16_t *p) {
    const __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
}

/* 8 lanes (each at most 0xFFFF in the low half of its 32-bit lane) -> 8 BF16. */
static inline void bf16_store8(uint16_t *p, __m256i r) {
    _mm_storeu_si128((__m128i *)p,
                     _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
}

/* 8 floats rounded as spr_bf16_from_f32 does, each in the low half of its 32-bit lane:
 * add 0x7FFF plus the lowest kept bit (ties to even) and shift; a NaN lane keeps its
 * top half with the quiet bit set instead (plain rounding could carry a NaN into -0). */
static inline __m256i bf16_round8(__m256 x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i top = _mm256_srli_epi32(u, 16);
    const __m256i lsb = _mm256_and_si256(top, _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, _mm256_or_si256(top, _mm256_set1_epi32(0x0040)), nan);
}

/* 8 floats rounded stochastically with the 16 random bits of each lane (noise), as
 * spr_bf16_from_f32_sr, each in the low half of its 32-bit lane. */
static inline __m256i bf16_round8_sr(__m256 x, __m256i noise) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, noise), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x0040)),
                              nan);
}

/* spr_bf16_noise of 8 entries, given salt + index x golden ratio in each lane */
static inline __m256i bf16_noise8(__m256i h) { return _mm256_srli_epi32(h, 16); }

/* 2 x 8 lanes (each in the low half of a 32-bit lane, at most 0xFFFF) -> 16 BF16: the
 * unsigned saturating pack is exact; it works within 128-bit halves, and one permute
 * puts them in order. */
static inline void bf16_store16(uint16_t *p, __m256i lo, __m256i hi) {
    const __m256i packed = _mm256_packus_epi32(lo, hi);
    _mm256_storeu_si256((__m256i *)p, _mm256_permute4x64_epi64(packed, 0xD8));
}

/* adam_row_avx2 with BF16 moments, 16 entries a step: the same float arithmetic, so its
 * results differ from the reference's as adam_row_avx2's do (a last float bit now and
 * then, which may move a rounded moment by one BF16 step). */
static void adam_row_bf16_avx2(float *w, float *g, uint16_t *m, uint16_t *v, int64_t n, float lr,
                               float b1, float b2, float eps, float bc1, float bc2, uint32_t salt) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    /* salt + i x golden ratio for the lanes i .. i + 15, advanced by 16 a step */
    const __m256i golden = _mm256_set1_epi32((int)0x9E3779B1u);
    __m256i h0 = _mm256_add_epi32(_mm256_set1_epi32((int)salt),
                                  _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), golden));
    __m256i h1 = _mm256_add_epi32(h0, _mm256_mullo_epi32(_mm256_set1_epi32(8), golden));
    const __m256i h16 = _mm256_mullo_epi32(_mm256_set1_epi32(16), golden);
    const __m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(1.0f - b1);
    const __m256 vb2 = _mm256_set1_ps(b2), vc2 = _mm256_set1_ps(1.0f - b2);
    const __m256 vstep = _mm256_set1_ps(step), vinv = _mm256_set1_ps(inv_sqrt_bc2);
    const __m256 veps = _mm256_set1_ps(eps), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 m0, m1, v0, v1;
        bf16_load16(m + i, &m0, &m1);
        bf16_load16(v + i, &v0, &v1);
        const __m256 g0 = _mm256_loadu_ps(g + i), g1 = _mm256_loadu_ps(g + i + 8);
        __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
        ADAM_STEP8(g0, m0, v0, w0);
        ADAM_STEP8(g1, m1, v1, w1);
        _mm256_storeu_ps(w + i, w0);
        _mm256_storeu_ps(w + i + 8, w1);
        bf16_store16(m + i, bf16_round8(m0), bf16_round8(m1));
        bf16_store16(v + i, bf16_round8_sr(v0, bf16_noise8(h0)), bf16_round8_sr(v1, bf16_noise8(h1)));
        h0 = _mm256_add_epi32(h0, h16);
        h1 = _mm256_add_epi32(h1, h16);
        _mm256_storeu_ps(g + i, zero);
        _mm256_storeu_ps(g + i + 8, zero);
    }
    /* 8 more where they fit, so that every entry takes the arithmetic adam_row_avx2 gives
     * it (FMA in the vector part, none in the scalar tail): from the same moments the
     * two kernels then move w identically */
    if (i + 8 <= n) {
        const __m256 g0 = _mm256_loadu_ps(g + i);
        __m256 m0 = bf16_load8(m + i), v0 = bf16_load8(v + i), w0 = _mm256_loadu_ps(w + i);
        ADAM_STEP8(g0, m0, v0, w0);
        _mm256_storeu_ps(w + i, w0);
        bf16_store8(m + i, bf16_round8(m0));
        bf16_store8(v + i, bf16_round8_sr(v0, bf16_noise8(h0)));
        _mm256_storeu_ps(g + i, zero);
        i += 8;
    }
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * spr_f32_from_bf16(m[i]) + (1.0f - b1) * gi;
        float vi = b2 * spr_f32_from_bf16(v[i]) + (1.0f - b2) * gi * gi;
        m[i] = spr_bf16_from_f32(mi);
        v[i] = spr_bf16_from_f32_sr(vi, spr_bf16_noise(salt, i));
        w[i] -= step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        g[i] = 0.0f;
    }
}

/* dot_avx2 on the widened row: the same accumulators, in the same order. */
static float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(bf16_load8(w + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(bf16_load8(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(bf16_load8(w + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(bf16_load8(w + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(bf16_load8(w + i), _mm256_loadu_ps(x + i), s0);
    float acc = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) acc = fmaf(spr_f32_from_bf16(w[i]), x[i], acc);
    return acc;
}

/* axpy_avx2 of the widened x. */
static void axpy_bf16_avx2(float alpha, const uint16_t *x, float *y, int64_t n) {
    const __m256 va = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 y0 = _mm256_fmadd_ps(va, bf16_load8(x + i), _mm256_loadu_ps(y + i));
        __m256 y1 = _mm256_fmadd_ps(va, bf16_load8(x + i + 8), _mm256_loadu_ps(y + i + 8));
        _mm256_storeu_ps(y + i, y0);
        _mm256_storeu_ps(y + i + 8, y1);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, bf16_load8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(alpha, spr_f32_from_bf16(x[i]), y[i]);
}

/* bf16_round8 and bf16_round8_sr for lanes known not to be NaN: the same bits there. */
static inline __m256i bf16_round8_num(__m256 x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    return _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
}
static inline __m256i bf16_round8_sr_num(__m256 x, __m256i noise) {
    return _mm256_srli_epi32(_mm256_add_epi32(_mm256_castps_si256(x), noise), 16);
}

/* adam_row_bf16_avx2 with a BF16 weight (the weight, its two moments and their roundings),
 * 16 entries a step and then 8, the scalar tail as adam_row_bf16_avx2's. A NaN in a
 * moment reaches the new weight, so one test of the weights says whether the roundings
 * need the NaN-safe forms (which cost a compare, an or and a blend each, a third of this
 * kernel's work on a CPU with 128-bit vector units); without NaNs both give the same bits. */
static void adam_row_bf16w_avx2(uint16_t *w, float *g, uint16_t *m, uint16_t *v, int64_t n,
                                float lr, float b1, float b2, float eps, float bc1, float bc2,
                                uint32_t salt) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    /* the moments' and the weights' random bits for lanes i .. i + 7 and i + 8 .. i + 15 */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i gv = _mm256_set1_epi32((int)0x9E3779B1u), gw = _mm256_set1_epi32((int)0x85EBCA77u);
    __m256i hv0 = _mm256_add_epi32(_mm256_set1_epi32((int)salt), _mm256_mullo_epi32(lane, gv));
    __m256i hw0 = _mm256_add_epi32(_mm256_set1_epi32((int)(salt ^ 0x6A09E667u)), _mm256_mullo_epi32(lane, gw));
    __m256i hv1 = _mm256_add_epi32(hv0, _mm256_set1_epi32((int)(8u * 0x9E3779B1u)));
    __m256i hw1 = _mm256_add_epi32(hw0, _mm256_set1_epi32((int)(8u * 0x85EBCA77u)));
    const __m256i hv16 = _mm256_set1_epi32((int)(16u * 0x9E3779B1u));
    const __m256i hw16 = _mm256_set1_epi32((int)(16u * 0x85EBCA77u));
    const __m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(1.0f - b1);
    const __m256 vb2 = _mm256_set1_ps(b2), vc2 = _mm256_set1_ps(1.0f - b2);
    const __m256 vstep = _mm256_set1_ps(step), vinv = _mm256_set1_ps(inv_sqrt_bc2);
    const __m256 veps = _mm256_set1_ps(eps), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 g0 = _mm256_loadu_ps(g + i), g1 = _mm256_loadu_ps(g + i + 8);
        __m256 m0, m1, v0, v1, w0, w1;
        bf16_load16(m + i, &m0, &m1);
        bf16_load16(v + i, &v0, &v1);
        bf16_load16(w + i, &w0, &w1);
        ADAM_STEP8(g0, m0, v0, w0);
        ADAM_STEP8(g1, m1, v1, w1);
        if (_mm256_movemask_ps(_mm256_cmp_ps(w0, w1, _CMP_UNORD_Q)) == 0) {
            bf16_store16(m + i, bf16_round8_num(m0), bf16_round8_num(m1));
            bf16_store16(v + i, bf16_round8_sr_num(v0, bf16_noise8(hv0)), bf16_round8_sr_num(v1, bf16_noise8(hv1)));
            bf16_store16(w + i, bf16_round8_sr_num(w0, bf16_noise8(hw0)), bf16_round8_sr_num(w1, bf16_noise8(hw1)));
        } else {
            bf16_store16(m + i, bf16_round8(m0), bf16_round8(m1));
            bf16_store16(v + i, bf16_round8_sr(v0, bf16_noise8(hv0)), bf16_round8_sr(v1, bf16_noise8(hv1)));
            bf16_store16(w + i, bf16_round8_sr(w0, bf16_noise8(hw0)), bf16_round8_sr(w1, bf16_noise8(hw1)));
        }
        hv0 = _mm256_add_epi32(hv0, hv16), hv1 = _mm256_add_epi32(hv1, hv16);
        hw0 = _mm256_add_epi32(hw0, hw16), hw1 = _mm256_add_epi32(hw1, hw16);
        _mm256_storeu_ps(g + i, zero);
        _mm256_storeu_ps(g + i + 8, zero);
    }
    if (i + 8 <= n) { /* hv0, hw0 are lane i's */
        const __m256 g0 = _mm256_loadu_ps(g + i);
        __m256 m0 = bf16_load8(m + i), v0 = bf16_load8(v + i), w0 = bf16_load8(w + i);
        ADAM_STEP8(g0, m0, v0, w0);
        bf16_store8(m + i, bf16_round8(m0));
        bf16_store8(v + i, bf16_round8_sr(v0, bf16_noise8(hv0)));
        bf16_store8(w + i, bf16_round8_sr(w0, bf16_noise8(hw0)));
        _mm256_storeu_ps(g + i, zero);
        i += 8;
    }
    for (; i < n; i++) {
        float gi = g[i];
        float mi = b1 * spr_f32_from_bf16(m[i]) + (1.0f - b1) * gi;
        float vi = b2 * spr_f32_from_bf16(v[i]) + (1.0f - b2) * gi * gi;
        m[i] = spr_bf16_from_f32(mi);
        v[i] = spr_bf16_from_f32_sr(vi, spr_bf16_noise(salt, i));
        float wi = spr_f32_from_bf16(w[i]) - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
        w[i] = spr_bf16_from_f32_sr(wi, spr_bf16_noise_w(salt, i));
        g[i] = 0.0f;
    }
}
#undef ADAM_STEP8

static inline float entry_delta(uint64_t e) {
    const uint32_t bits = (uint32_t)e;
    float d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static inline __m256 row_load8(const float *w, const uint16_t *w16, int64_t c) {
    return w16 ? bf16_load8(w16 + c) : _mm256_loadu_ps(w + c);
}

/* row_entries with 32 columns of the gradient and of the row in registers (8 of the 16)
 * while every entry passes over them: g stays out of memory between entries, and a BF16
 * row is widened once a block rather than once an entry (on the Zen 1 machine, session
 * 11: the 100K-label float epoch 16% faster, its rows having 8.6 entries a batch; at 670K,
 * ~1.8 entries, float unchanged, BF16 weights ~5%). Each element takes
 * the FMAs of the axpy chains in the same order (the 8-wide blocks after the 32-wide ones,
 * then fmaf on the tail, as axpy_avx2 does), so the result is theirs bit for bit. */
static void row_entries_avx2(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                             int64_t ne, const float *x, float *dh, int64_t ld, float *g) {
    int64_t c0 = 0;
    for (; c0 + 32 <= n; c0 += 32) {
        __m256 g0 = _mm256_setzero_ps(), g1 = g0, g2 = g0, g3 = g0, w0 = g0, w1 = g0, w2 = g0, w3 = g0;
        if (dh) {
            w0 = row_load8(w, w16, c0), w1 = row_load8(w, w16, c0 + 8);
            w2 = row_load8(w, w16, c0 + 16), w3 = row_load8(w, w16, c0 + 24);
        }
        for (int64_t e = 0; e < ne; e++) {
            const int64_t i = (int64_t)(ent[e] >> 32);
            const __m256 vd = _mm256_set1_ps(entry_delta(ent[e]));
            const float *xs = x + i * ld + c0;
            g0 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(xs), g0);
            g1 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(xs + 8), g1);
            g2 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(xs + 16), g2);
            g3 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(xs + 24), g3);
            if (!dh) continue;
            float *ds = dh + i * ld + c0;
            _mm256_storeu_ps(ds, _mm256_fmadd_ps(vd, w0, _mm256_loadu_ps(ds)));
            _mm256_storeu_ps(ds + 8, _mm256_fmadd_ps(vd, w1, _mm256_loadu_ps(ds + 8)));
            _mm256_storeu_ps(ds + 16, _mm256_fmadd_ps(vd, w2, _mm256_loadu_ps(ds + 16)));
            _mm256_storeu_ps(ds + 24, _mm256_fmadd_ps(vd, w3, _mm256_loadu_ps(ds + 24)));
        }
        _mm256_storeu_ps(g + c0, g0), _mm256_storeu_ps(g + c0 + 8, g1);
        _mm256_storeu_ps(g + c0 + 16, g2), _mm256_storeu_ps(g + c0 + 24, g3);
    }
    for (; c0 + 8 <= n; c0 += 8) {
        __m256 g0 = _mm256_setzero_ps(), w0 = dh ? row_load8(w, w16, c0) : g0;
        for (int64_t e = 0; e < ne; e++) {
            const int64_t i = (int64_t)(ent[e] >> 32);
            const __m256 vd = _mm256_set1_ps(entry_delta(ent[e]));
            g0 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(x + i * ld + c0), g0);
            if (!dh) continue;
            float *ds = dh + i * ld + c0;
            _mm256_storeu_ps(ds, _mm256_fmadd_ps(vd, w0, _mm256_loadu_ps(ds)));
        }
        _mm256_storeu_ps(g + c0, g0);
    }
    for (; c0 < n; c0++) {
        const float wc = !dh ? 0.0f : w16 ? spr_f32_from_bf16(w16[c0]) : w[c0];
        float gc = 0.0f;
        for (int64_t e = 0; e < ne; e++) {
            const int64_t i = (int64_t)(ent[e] >> 32);
            const float d = entry_delta(ent[e]);
            gc = fmaf(d, x[i * ld + c0], gc);
            if (dh) dh[i * ld + c0] = fmaf(d, wc, dh[i * ld + c0]);
        }
        g[c0] = gc;
    }
}

/* row_dots as this set's dots, entry by entry (three entries at a time with the row's
 * loads shared measured no faster on the Zen 1 machine, session 11). */
static void row_dots_avx2(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                          int64_t ne, const float *x, int64_t ld, float *out) {
    spr_row_dots_each(dot_avx2, dot_bf16_avx2, w, w16, n, ent, ne, x, ld, out);
}

/* Unfused, so the reference's bits; the tail as the reference. */
static void catch_up_row_avx2(float *w, float *m, float *v, int64_t n, float S, float e, float d1,
                              float d2) {
    const __m256 vS = _mm256_set1_ps(S), ve = _mm256_set1_ps(e);
    const __m256 vd1 = _mm256_set1_ps(d1), vd2 = _mm256_set1_ps(d2);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i), wi = _mm256_loadu_ps(w + i);
        const __m256 q = _mm256_div_ps(_mm256_mul_ps(vS, mi), _mm256_add_ps(_mm256_sqrt_ps(vi), ve));
        _mm256_storeu_ps(w + i, _mm256_sub_ps(wi, q));
        _mm256_storeu_ps(m + i, _mm256_mul_ps(mi, vd1));
        _mm256_storeu_ps(v + i, _mm256_mul_ps(vi, vd2));
    }
    for (; i < n; i++) {
        const float num = S * m[i], den = sqrtf(v[i]) + e;
        w[i] = w[i] - num / den;
        m[i] = m[i] * d1, v[i] = v[i] * d2;
    }
}

/* adam_catch_up_row of 8 lanes (w, m, v in place), with the constants of
 * adam_catch_up_row_avx2: adam_row_avx2's roundings for m and v. */
#define ADAM_CATCH_UP8(gi, wi, mi, vi)                                                              \
    do {                                                                                           \
        const __m256 a = _mm256_add_ps(_mm256_sqrt_ps(vi), ve);                                    \
        const __m256 m_ = _mm256_fmadd_ps(vb1, _mm256_mul_ps(mi, vd1), _mm256_mul_ps(vc1, gi));    \
        const __m256 v_ = _mm256_fmadd_ps(vb2, _mm256_mul_ps(vi, vd2),                             \
                                          _mm256_mul_ps(vc2, _mm256_mul_ps(gi, gi)));              \
        const __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(v_), vinv, veps);                        \
        const __m256 num = _mm256_fmadd_ps(_mm256_mul_ps(vS, mi), den,                             \
                                           _mm256_mul_ps(_mm256_mul_ps(vstep, m_), a));            \
        wi = _mm256_sub_ps(wi, _mm256_div_ps(num, _mm256_max_ps(_mm256_mul_ps(a, den), vmin)));    \
        mi = m_, vi = v_;                                                                          \
    } while (0)

/* One entry of adam_catch_up_row as this set's scalar tails compute it. */
static inline void adam_catch_up1(float *w, float *g, float *m, float *v, float b1, float b2,
                                  float eps, float step, float inv_sqrt_bc2, float S, float e,
                                  float d1, float d2) {
    const float gi = *g, a = sqrtf(*v) + e;
    const float mi = b1 * (*m * d1) + (1.0f - b1) * gi;
    const float vi = b2 * (*v * d2) + (1.0f - b2) * gi * gi;
    const float den = sqrtf(vi) * inv_sqrt_bc2 + eps;
    *w -= (S * *m * den + step * mi * a) / fmaxf(a * den, FLT_MIN);
    *m = mi, *v = vi, *g = 0.0f;
}

#define ADAM_CATCH_UP_CONSTANTS                                                                    \
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);                                 \
    const __m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(1.0f - b1);                        \
    const __m256 vb2 = _mm256_set1_ps(b2), vc2 = _mm256_set1_ps(1.0f - b2);                        \
    const __m256 vstep = _mm256_set1_ps(step), vinv = _mm256_set1_ps(inv_sqrt_bc2);                \
    const __m256 veps = _mm256_set1_ps(eps), zero = _mm256_setzero_ps();                           \
    const __m256 vS = _mm256_set1_ps(S), ve = _mm256_set1_ps(e);                                   \
    const __m256 vd1 = _mm256_set1_ps(d1), vd2 = _mm256_set1_ps(d2), vmin = _mm256_set1_ps(FLT_MIN)

/* ADAM_CATCH_UP8 (adam_row_avx2's roundings on the caught-up moments) 8 lanes a step;
 * the tail as adam_row_avx2's tail. */
static void adam_catch_up_row_avx2(float *w, float *g, float *m, float *v, int64_t n, float lr,
                                   float b1, float b2, float eps, float bc1, float bc2, float S,
                                   float e, float d1, float d2) {
    ADAM_CATCH_UP_CONSTANTS;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wi = _mm256_loadu_ps(w + i), mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
        const __m256 gi = _mm256_loadu_ps(g + i);
        ADAM_CATCH_UP8(gi, wi, mi, vi);
        _mm256_storeu_ps(w + i, wi);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(g + i, zero);
    }
    for (; i < n; i++) adam_catch_up1(w + i, g + i, m + i, v + i, b1, b2, eps, step, inv_sqrt_bc2, S, e, d1, d2);
}

/* adam_catch_up_row_avx2 on the widened values (8 lanes a step and the scalar tail, as
 * there), then the roundings; NaN-safe (a row that owes steps is the rarer case). */
static void adam_catch_up_row_bf16_avx2(float *w, uint16_t *w16, float *g, uint16_t *m,
                                        uint16_t *v, int64_t n, float lr, float b1, float b2,
                                        float eps, float bc1, float bc2, float S, float e,
                                        float d1, float d2, uint32_t salt) {
    ADAM_CATCH_UP_CONSTANTS;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i hv = _mm256_add_epi32(_mm256_set1_epi32((int)salt),
                                  _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)0x9E3779B1u)));
    __m256i hw = _mm256_add_epi32(_mm256_set1_epi32((int)(salt ^ 0x6A09E667u)),
                                  _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)0x85EBCA77u)));
    const __m256i hv8 = _mm256_set1_epi32((int)(8u * 0x9E3779B1u));
    const __m256i hw8 = _mm256_set1_epi32((int)(8u * 0x85EBCA77u));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8, hv = _mm256_add_epi32(hv, hv8), hw = _mm256_add_epi32(hw, hw8)) {
        __m256 wi = w16 ? bf16_load8(w16 + i) : _mm256_loadu_ps(w + i);
        __m256 mi = bf16_load8(m + i), vi = bf16_load8(v + i);
        const __m256 gi = _mm256_loadu_ps(g + i);
        ADAM_CATCH_UP8(gi, wi, mi, vi);
        if (w16) bf16_store8(w16 + i, bf16_round8_sr(wi, bf16_noise8(hw)));
        else _mm256_storeu_ps(w + i, wi);
        bf16_store8(m + i, bf16_round8(mi));
        bf16_store8(v + i, bf16_round8_sr(vi, bf16_noise8(hv)));
        _mm256_storeu_ps(g + i, zero);
    }
    for (; i < n; i++) {
        float wi = w16 ? spr_f32_from_bf16(w16[i]) : w[i];
        float mi = spr_f32_from_bf16(m[i]), vi = spr_f32_from_bf16(v[i]);
        adam_catch_up1(&wi, g + i, &mi, &vi, b1, b2, eps, step, inv_sqrt_bc2, S, e, d1, d2);
        m[i] = spr_bf16_from_f32(mi);
        v[i] = spr_bf16_from_f32_sr(vi, spr_bf16_noise(salt, i));
        if (w16) w16[i] = spr_bf16_from_f32_sr(wi, spr_bf16_noise_w(salt, i));
        else w[i] = wi;
    }
}
#undef ADAM_CATCH_UP8
#undef ADAM_CATCH_UP_CONSTANTS

/* ---- CRC-32 by carry-less multiplication (PCLMULQDQ, which every AVX2 CPU has)
 *
 * The reflected CRC reads a 16-byte block v as the polynomial poly(v) = sum of bit i of
 * v times x^(127 - i): the first byte's lowest bit is the highest power. The CRC of a
 * message M is M(x) x^32 mod P, so any polynomial congruent to M modulo P will do until
 * the end: a block v followed by the block u is v x^128 + u, and v x^128 = H x^192 +
 * L x^128 (H: v's low 64 bits, the high powers; L: its high 64 bits) is congruent to
 * H (x^192 mod P) + L (x^128 mod P), two 64 x 32-bit carry-less products that fit in 128
 * bits. A 64-bit lane q read the same way (bit i: x^(63 - i)) times another gives, as
 * PCLMULQDQ returns it, x times the product in the 128-bit reading; so the constants are
 * x^191 and x^127 mod P, each as a lane (a remainder c, bit d the coefficient of x^d,
 * goes to bit 63 - d). Four blocks are folded at a time, by x^512 (x^575 and x^511 mod P),
 * in four independent chains; at the end the chains fold into one by x^128, the last
 * whole blocks after them, and the remaining 16-byte value and the tail (under 16 bytes)
 * go through the table CRC from a zero register, which finishes M x^32 mod P. */

/* x^k mod P for the normal-order polynomial P = x^32 + 0x04C11DB7, as a 64-bit lane. */
static uint64_t crc_lane_xpow(int k) {
    uint64_t r = 1; /* bit d: the coefficient of x^d */
    for (int i = 0; i < k; i++) {
        r <<= 1;
        if (r >> 32) r ^= 0x104C11DB7ull;
    }
    uint64_t q = 0;
    for (int d = 0; d < 32; d++) q |= ((r >> d) & 1u) << (63 - d);
    return q;
}

__attribute__((target("pclmul,sse4.1"))) static inline __m128i crc_fold(__m128i v, __m128i k, __m128i u) {
    /* k: (x^a mod P for H in its low lane, x^b mod P for L in its high lane) */
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(v, k, 0x00), _mm_clmulepi64_si128(v, k, 0x11)), u);
}

__attribute__((target("pclmul,sse4.1"))) uint32_t spr_crc32_clmul(uint32_t crc, const unsigned char *p,
                                                                 size_t n) {
    if (n < 64) return spr_crc32_ref(crc, p, n);
    static __m128i k512, k128; /* the same bits whichever thread writes them first */
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        k512 = _mm_set_epi64x((long long)crc_lane_xpow(511), (long long)crc_lane_xpow(575));
        k128 = _mm_set_epi64x((long long)crc_lane_xpow(127), (long long)crc_lane_xpow(191));
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    /* the register's preset (~crc) is the first 32 bits of the message xored with it */
    __m128i x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)~crc));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    p += 64, n -= 64;
    for (; n >= 64; p += 64, n -= 64) {
        x0 = crc_fold(x0, k512, _mm_loadu_si128((const __m128i *)p));
        x1 = crc_fold(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = crc_fold(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = crc_fold(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i v = crc_fold(crc_fold(crc_fold(x0, k128, x1), k128, x2), k128, x3);
    for (; n >= 16; p += 16, n -= 16) v = crc_fold(v, k128, _mm_loadu_si128((const __m128i *)p));
    unsigned char last[16];
    _mm_storeu_si128((__m128i *)last, v);
    /* crc32_ref(c) runs the register from ~c: ~0 starts it at zero */
    return spr_crc32_ref(spr_crc32_ref(0xFFFFFFFFu, last, 16), p, n);
}

static const spr_kernel_set set = {"avx2", dot_avx2, axpy_avx2, dot_sparse_avx2, adam_row_avx2,
                                   matmul_panels_avx2, signed_sums_avx2,
                                   adam_row_bf16_avx2, dot_bf16_avx2, axpy_bf16_avx2,
                                   adam_row_bf16w_avx2, row_entries_avx2, row_dots_avx2,
                                   catch_up_row_avx2, spr_catch_up_row_bf16_ref,
                                   adam_catch_up_row_avx2, adam_catch_up_row_bf16_avx2,
                                   spr_crc32_clmul};
const spr_kernel_set *spr_kernel_set_avx2(void) { return &set; }
#else
const spr_kernel_set *spr_kernel_set_avx2(void) { return 0; }
#endif

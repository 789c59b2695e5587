/* kernels_avx512.c: the kernels in AVX-512F intrinsics (16 lanes, masked tails). This
 * file alone is compiled with -mavx512f (CMakeLists.txt); kernels.c calls in here only
 * when cpuid and the OS (XCR0) say the CPU can run it. The project's own machine has no
 * AVX-512: these are tested against the references by tests/test_kernels.c wherever the
 * CPU has it, and skipped (saying so) elsewhere. */
#include "kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline __mmask16 tail_mask(int64_t left) {
    return (__mmask16)(left >= 16 ? 0xFFFF : (1u << left) - 1u);
}

static float dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void axpy_avx512(float alpha, const float *x, float *y, int64_t n) {
    const __m512 va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 r = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i));
        _mm512_mask_storeu_ps(y + i, k, r);
    }
}

static float dot_sparse_avx512(const float *w, const int32_t *idx, const float *val, int64_t nnz) {
    __m512 s = _mm512_setzero_ps();
    for (int64_t j = 0; j < nnz; j += 16) {
        __mmask16 k = tail_mask(nnz - j);
        __m512i vi = _mm512_maskz_loadu_epi32(k, idx + j);
        __m512 wv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, vi, w, 4);
        s = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, val + j), s);
    }
    return _mm512_reduce_add_ps(s);
}

/* Rows shorter than a register (a bias, stepped one entry at a time) go through scalar
 * operations, the lanes' own: the same fused multiply-adds, a correctly rounded square
 * root and division, so the same bits; a masked 16-lane step cost 19 ns an entry there
 * against 7 (the bias steps were a tenth of the optimizer at 670K labels). */
static void adam_row_avx512(float *w, float *g, float *m, float *v, int64_t n, float lr, float b1,
                            float b2, float eps, float bc1, float bc2) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    if (n < 16) {
        for (int64_t i = 0; i < n; i++) {
            const float gi = g[i];
            const float mi = fmaf(b1, m[i], (1.0f - b1) * gi);
            const float vi = fmaf(b2, v[i], (1.0f - b2) * (gi * gi));
            const float den = fmaf(sqrtf(vi), inv_sqrt_bc2, eps);
            m[i] = mi, v[i] = vi;
            w[i] = w[i] - (step * mi) / den;
            g[i] = 0.0f;
        }
        return;
    }
    const __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(1.0f - b1);
    const __m512 vb2 = _mm512_set1_ps(b2), vc2 = _mm512_set1_ps(1.0f - b2);
    const __m512 vstep = _mm512_set1_ps(step), vinv = _mm512_set1_ps(inv_sqrt_bc2);
    const __m512 veps = _mm512_set1_ps(eps);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 gi = _mm512_maskz_loadu_ps(k, g + i);
        __m512 mi = _mm512_fmadd_ps(vb1, _mm512_maskz_loadu_ps(k, m + i), _mm512_mul_ps(vc1, gi));
        __m512 vi = _mm512_fmadd_ps(vb2, _mm512_maskz_loadu_ps(k, v + i),
                                    _mm512_mul_ps(vc2, _mm512_mul_ps(gi, gi)));
        __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), vinv, veps);
        __m512 wi = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, w + i),
                                  _mm512_div_ps(_mm512_mul_ps(vstep, mi), den));
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
        _mm512_mask_storeu_ps(w + i, k, wi);
        _mm512_mask_storeu_ps(g + i, k, _mm512_setzero_ps());
    }
}

/* MR rows x two panels (32 columns, one register each) of acc in registers over all of
 * j: 16 accumulators + 2 + 1 of the 32 zmm registers; per j two loads of P and MR
 * broadcasts feed 2 MR fused multiply-adds (fused like axpy_avx512). */
#define MR_AVX512 8
static inline __attribute__((always_inline)) void
panel_block_avx512(const float *x, int64_t ldx, const int rows, const int panels, int64_t d,
                   const float *p, float *acc, int64_t ldacc) {
    __m512 a0[MR_AVX512], a1[MR_AVX512];
    const float *p1 = p + (panels > 1 ? d * SPR_PANEL : 0);
    for (int r = 0; r < rows; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    for (int64_t j = 0; j < d; j++) {
        const __m512 v0 = _mm512_load_ps(p + j * 16);
        const __m512 v1 = panels > 1 ? _mm512_load_ps(p1 + j * 16) : v0;
        for (int r = 0; r < rows; r++) {
            const __m512 xb = _mm512_set1_ps(x[r * ldx + j]);
            a0[r] = _mm512_fmadd_ps(xb, v0, a0[r]);
            if (panels > 1) a1[r] = _mm512_fmadd_ps(xb, v1, a1[r]);
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_ps(acc + r * ldacc, a0[r]);
        if (panels > 1) _mm512_storeu_ps(acc + r * ldacc + 16, a1[r]);
    }
}

static inline __attribute__((always_inline)) void
panel_rows_avx512(const float *x, int64_t ldx, int64_t n, const int panels, int64_t d,
                  const float *p, float *acc, int64_t ldacc) {
    int64_t r = 0;
    for (; r + MR_AVX512 <= n; r += MR_AVX512)
        panel_block_avx512(x + r * ldx, ldx, MR_AVX512, panels, d, p, acc + r * ldacc, ldacc);
    const float *xr = x + r * ldx;
    float *ar = acc + r * ldacc;
    switch (n - r) { /* constant row counts: each call unrolls into registers */
    case 7: panel_block_avx512(xr, ldx, 7, panels, d, p, ar, ldacc); break;
    case 6: panel_block_avx512(xr, ldx, 6, panels, d, p, ar, ldacc); break;
    case 5: panel_block_avx512(xr, ldx, 5, panels, d, p, ar, ldacc); break;
    case 4: panel_block_avx512(xr, ldx, 4, panels, d, p, ar, ldacc); break;
    case 3: panel_block_avx512(xr, ldx, 3, panels, d, p, ar, ldacc); break;
    case 2: panel_block_avx512(xr, ldx, 2, panels, d, p, ar, ldacc); break;
    case 1: panel_block_avx512(xr, ldx, 1, panels, d, p, ar, ldacc); break;
    default: break;
    }
}

/* Two panels at a time (2 d x 64 bytes stay in L1 while the blocks of rows pass). */
static void matmul_panels_avx512(const float *x, int64_t ldx, int64_t n, int64_t d,
                                 const float *p, int64_t np, float *acc, int64_t ldacc) {
    int64_t q = 0;
    for (; q + 2 <= np; q += 2)
        panel_rows_avx512(x, ldx, n, 2, d, p + q * d * SPR_PANEL, acc + q * SPR_PANEL, ldacc);
    if (q < np) panel_rows_avx512(x, ldx, n, 1, d, p + q * d * SPR_PANEL, acc + q * SPR_PANEL, ldacc);
}

/* Four codes x 16 rows in four registers; per entry of the four lists, four adds straight
 * from the transposed rows in L1. */
static void signed_sums_avx512(const float *x, int64_t ldx, int64_t n, int64_t d,
                               const int32_t *ent, const int64_t *gstart, int64_t ngroups,
                               float *acc, float *xt) {
    spr_signed_sums_transpose(x, ldx, n, d, xt);
    for (int64_t g = 0; g < ngroups; g++) {
        __m512 a = _mm512_setzero_ps(), b = a, c = a, e4 = a;
        for (int64_t e = gstart[g]; e < gstart[g + 1]; e += 4) {
            a = _mm512_add_ps(a, _mm512_load_ps(xt + ent[e]));
            b = _mm512_add_ps(b, _mm512_load_ps(xt + ent[e + 1]));
            c = _mm512_add_ps(c, _mm512_load_ps(xt + ent[e + 2]));
            e4 = _mm512_add_ps(e4, _mm512_load_ps(xt + ent[e + 3]));
        }
        float *o = acc + 4 * g * 16;
        _mm512_storeu_ps(o, a), _mm512_storeu_ps(o + 16, b);
        _mm512_storeu_ps(o + 32, c), _mm512_storeu_ps(o + 48, e4);
    }
}

/* 16 BF16 <-> 16 floats, as in kernels_avx2.c, with AVX-512F only (vpmovzxwd, vpmovdw:
 * no AVX512-BF16 or AVX512-BW needed; vpmovdw truncates, and the lanes hold at most
 * 0xFFFF after the rounding, so it is exact). */
static inline __m512 bf16_load16(const uint16_t *p) {
    __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
}

/* spr_bf16_noise of 16 lanes, given salt + index x golden ratio in each */
static inline __m512i bf16_noise16(__m512i h) { return _mm512_srli_epi32(h, 16); }

/* stochastic rounding with 16 random bits a lane, as spr_bf16_from_f32_sr */
static inline void bf16_store16_sr(uint16_t *p, __m512 x, __m512i noise) {
    __m512i u = _mm512_castps_si512(x);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, noise), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x0040)));
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
}

static inline void bf16_store16(uint16_t *p, __m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i top = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF),
                                             _mm512_and_si512(top, _mm512_set1_epi32(1)))),
        16);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(top, _mm512_set1_epi32(0x0040)));
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
}

static inline void adam16_bf16(float *w, float *g, uint16_t *m, uint16_t *v, __m512 vb1,
                               __m512 vc1, __m512 vb2, __m512 vc2, __m512 vstep, __m512 vinv,
                               __m512 veps, __m512i h) {
    __m512 gi = _mm512_loadu_ps(g);
    __m512 mi = _mm512_fmadd_ps(vb1, bf16_load16(m), _mm512_mul_ps(vc1, gi));
    __m512 vi = _mm512_fmadd_ps(vb2, bf16_load16(v), _mm512_mul_ps(vc2, _mm512_mul_ps(gi, gi)));
    __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), vinv, veps);
    __m512 wi = _mm512_sub_ps(_mm512_loadu_ps(w), _mm512_div_ps(_mm512_mul_ps(vstep, mi), den));
    bf16_store16(m, mi);
    bf16_store16_sr(v, vi, bf16_noise16(h));
    _mm512_storeu_ps(w, wi);
    _mm512_storeu_ps(g, _mm512_setzero_ps());
}

/* Full blocks of 16 in place; the tail (16-bit masked loads would need AVX512-BW) goes
 * through a zero-padded copy on the stack: the padding lanes compute a harmless
 * w -= 0 / eps and are not copied back. */
static void adam_row_bf16_avx512(float *w, float *g, uint16_t *m, uint16_t *v, int64_t n, float lr,
                                 float b1, float b2, float eps, float bc1, float bc2,
                                 uint32_t salt) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    const __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(1.0f - b1);
    const __m512 vb2 = _mm512_set1_ps(b2), vc2 = _mm512_set1_ps(1.0f - b2);
    const __m512 vstep = _mm512_set1_ps(step), vinv = _mm512_set1_ps(inv_sqrt_bc2);
    const __m512 veps = _mm512_set1_ps(eps);
    const __m512i golden = _mm512_set1_epi32((int)0x9E3779B1u);
    const __m512i h16 = _mm512_mullo_epi32(_mm512_set1_epi32(16), golden);
    __m512i h = _mm512_add_epi32(
        _mm512_set1_epi32((int)salt),
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), golden));
    int64_t i = 0;
    for (; i + 16 <= n; i += 16, h = _mm512_add_epi32(h, h16))
        adam16_bf16(w + i, g + i, m + i, v + i, vb1, vc1, vb2, vc2, vstep, vinv, veps, h);
    if (i < n) {
        float tw[16] = {0}, tg[16] = {0};
        uint16_t tm[16] = {0}, tv[16] = {0};
        const size_t k = (size_t)(n - i);
        memcpy(tw, w + i, k * sizeof(float));
        memcpy(tg, g + i, k * sizeof(float));
        memcpy(tm, m + i, k * sizeof(uint16_t));
        memcpy(tv, v + i, k * sizeof(uint16_t));
        adam16_bf16(tw, tg, tm, tv, vb1, vc1, vb2, vc2, vstep, vinv, veps, h);
        memcpy(w + i, tw, k * sizeof(float));
        memcpy(g + i, tg, k * sizeof(float));
        memcpy(m + i, tm, k * sizeof(uint16_t));
        memcpy(v + i, tv, k * sizeof(uint16_t));
    }
}

/* Up to 16 BF16 of a row's tail, zero-padded (16-bit masked loads need AVX512-BW). */
static inline __m512 bf16_load_tail(const uint16_t *p, int64_t k) {
    uint16_t t[16] = {0};
    memcpy(t, p, (size_t)k * sizeof(uint16_t));
    return bf16_load16(t);
}

/* dot_avx512 on the widened row: the same accumulators, in the same order; the widened
 * padding of the tail is +0, as the masked load's zeros are. */
static float dot_bf16_avx512(const uint16_t *w, const float *x, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(bf16_load16(w + i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(bf16_load16(w + i + 16), _mm512_loadu_ps(x + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 wv = n - i >= 16 ? bf16_load16(w + i) : bf16_load_tail(w + i, n - i);
        s0 = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void axpy_bf16_avx512(float alpha, const uint16_t *x, float *y, int64_t n) {
    const __m512 va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 xv = n - i >= 16 ? bf16_load16(x + i) : bf16_load_tail(x + i, n - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(va, xv, _mm512_maskz_loadu_ps(k, y + i)));
    }
}

/* The first 16 lanes' Weyl sequences of spr_bf16_noise (hv) and spr_bf16_noise_w (hw)
 * for salt; each next 16 lanes add 16 x the sequence's step. */
static inline void weyl_start(uint32_t salt, __m512i *hv, __m512i *hw) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    *hv = _mm512_add_epi32(_mm512_set1_epi32((int)salt),
                           _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)0x9E3779B1u)));
    *hw = _mm512_add_epi32(_mm512_set1_epi32((int)(salt ^ 0x6A09E667u)),
                           _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)0x85EBCA77u)));
}

static inline void adam16_bf16w(uint16_t *w, float *g, uint16_t *m, uint16_t *v, __m512 vb1,
                                __m512 vc1, __m512 vb2, __m512 vc2, __m512 vstep, __m512 vinv,
                                __m512 veps, __m512i hv, __m512i hw) {
    __m512 gi = _mm512_loadu_ps(g);
    __m512 mi = _mm512_fmadd_ps(vb1, bf16_load16(m), _mm512_mul_ps(vc1, gi));
    __m512 vi = _mm512_fmadd_ps(vb2, bf16_load16(v), _mm512_mul_ps(vc2, _mm512_mul_ps(gi, gi)));
    __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), vinv, veps);
    __m512 wi = _mm512_sub_ps(bf16_load16(w), _mm512_div_ps(_mm512_mul_ps(vstep, mi), den));
    bf16_store16(m, mi);
    bf16_store16_sr(v, vi, bf16_noise16(hv));
    bf16_store16_sr(w, wi, bf16_noise16(hw));
    _mm512_storeu_ps(g, _mm512_setzero_ps());
}

/* adam_row_bf16_avx512 with a BF16 weight; the tail through a zero-padded copy as there. */
static void adam_row_bf16w_avx512(uint16_t *w, float *g, uint16_t *m, uint16_t *v, int64_t n,
                                  float lr, float b1, float b2, float eps, float bc1, float bc2,
                                  uint32_t salt) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
    const __m512 vb1 = _mm512_set1_ps(b1), vc1 = _mm512_set1_ps(1.0f - b1);
    const __m512 vb2 = _mm512_set1_ps(b2), vc2 = _mm512_set1_ps(1.0f - b2);
    const __m512 vstep = _mm512_set1_ps(step), vinv = _mm512_set1_ps(inv_sqrt_bc2);
    const __m512 veps = _mm512_set1_ps(eps);
    const __m512i hv16 = _mm512_set1_epi32((int)(16u * 0x9E3779B1u));
    const __m512i hw16 = _mm512_set1_epi32((int)(16u * 0x85EBCA77u));
    __m512i hv, hw;
    weyl_start(salt, &hv, &hw);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16, hv = _mm512_add_epi32(hv, hv16), hw = _mm512_add_epi32(hw, hw16))
        adam16_bf16w(w + i, g + i, m + i, v + i, vb1, vc1, vb2, vc2, vstep, vinv, veps, hv, hw);
    if (i < n) {
        float tg[16] = {0};
        uint16_t tw[16] = {0}, tm[16] = {0}, tv[16] = {0};
        const size_t k = (size_t)(n - i);
        memcpy(tw, w + i, k * sizeof(uint16_t));
        memcpy(tg, g + i, k * sizeof(float));
        memcpy(tm, m + i, k * sizeof(uint16_t));
        memcpy(tv, v + i, k * sizeof(uint16_t));
        adam16_bf16w(tw, tg, tm, tv, vb1, vc1, vb2, vc2, vstep, vinv, veps, hv, hw);
        memcpy(w + i, tw, k * sizeof(uint16_t));
        memcpy(g + i, tg, k * sizeof(float));
        memcpy(m + i, tm, k * sizeof(uint16_t));
        memcpy(v + i, tv, k * sizeof(uint16_t));
    }
}

/* row_entries, 128 columns at a time: the block's gradient (8 registers) and weights
 * (8, widened once) stay in registers over all the entries, so an entry costs a load of
 * its input and a load and store of its input gradient, where two axpys also load and
 * store the gradient and reload (and widen) the row. Lanes past n are masked: their
 * loads are 0 and nothing is stored. The same fused multiply-adds as axpy_avx512 and
 * axpy_bf16_avx512 in the same order, so bit for bit their chains. */
#define ROW_BLOCK 128
static void row_entries_avx512(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                               int64_t ne, const float *x, float *dh, int64_t ld, float *g) {
    for (int64_t c0 = 0; c0 < n; c0 += ROW_BLOCK) {
        const int64_t nb = n - c0 < ROW_BLOCK ? n - c0 : ROW_BLOCK;
        __mmask16 k[8];
        __m512 wv[8], gv[8];
        uint16_t pad[ROW_BLOCK];
        const uint16_t *ws = w16 ? w16 + c0 : NULL;
        if (w16 && nb < ROW_BLOCK) { /* 16-bit masked loads need AVX512-BW */
            memset(pad, 0, sizeof pad);
            memcpy(pad, ws, (size_t)nb * sizeof(uint16_t));
            ws = pad;
        }
        for (int v = 0; v < 8; v++) {
            const int64_t left = nb - 16 * v;
            k[v] = left <= 0 ? (__mmask16)0 : tail_mask(left);
            gv[v] = _mm512_setzero_ps();
            wv[v] = ws ? (left > 0 ? bf16_load16(ws + 16 * v) : gv[v])
                       : _mm512_maskz_loadu_ps(k[v], w + c0 + 16 * v);
        }
        for (int64_t e = 0; e < ne; e++) {
            const int64_t i = (int64_t)(ent[e] >> 32);
            const uint32_t bits = (uint32_t)ent[e];
            float d;
            memcpy(&d, &bits, sizeof d);
            const __m512 vd = _mm512_set1_ps(d);
            const float *xs = x + i * ld + c0;
            for (int v = 0; v < 8; v++)
                gv[v] = _mm512_fmadd_ps(vd, _mm512_maskz_loadu_ps(k[v], xs + 16 * v), gv[v]);
            if (!dh) continue;
            float *ds = dh + i * ld + c0;
            for (int v = 0; v < 8; v++)
                _mm512_mask_storeu_ps(ds + 16 * v, k[v],
                                      _mm512_fmadd_ps(vd, wv[v], _mm512_maskz_loadu_ps(k[v], ds + 16 * v)));
        }
        for (int v = 0; v < 8; v++) _mm512_mask_storeu_ps(g + c0 + 16 * v, k[v], gv[v]);
    }
}

/* row_dots with the row (n <= ROW_BLOCK) in registers and four entries' dots at once,
 * each dot_avx512's (dot_bf16_avx512's) chain: chunk c of 16 floats goes to s1 when it
 * is the odd half of a full 32-float pair, else to s0 (the pairs' even halves, then the
 * tail's chunks in order), and the result is reduce(s0 + s1). A longer row: dot by dot. */
static void row_dots_avx512(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                            int64_t ne, const float *x, int64_t ld, float *out) {
    if (n > ROW_BLOCK || n <= 0) {
        for (int64_t e = 0; e < ne; e++) {
            const float *xs = x + (int64_t)(ent[e] >> 32) * ld;
            out[e] = w16 ? dot_bf16_avx512(w16, xs, n) : dot_avx512(w, xs, n);
        }
        return;
    }
    const int nc = (int)((n + 15) / 16), paired = 2 * (int)(n / 32);
    __mmask16 k[8];
    __m512 wv[8];
    for (int c = 0; c < nc; c++) {
        const int64_t left = n - 16 * c;
        k[c] = tail_mask(left);
        wv[c] = w16 ? (left >= 16 ? bf16_load16(w16 + 16 * c) : bf16_load_tail(w16 + 16 * c, left))
                    : _mm512_maskz_loadu_ps(k[c], w + 16 * c);
    }
    int64_t e = 0;
    for (; e + 4 <= ne; e += 4) {
        const float *xs[4];
        __m512 s0[4], s1[4];
        for (int q = 0; q < 4; q++) {
            xs[q] = x + (int64_t)(ent[e + q] >> 32) * ld;
            s0[q] = s1[q] = _mm512_setzero_ps();
        }
        for (int c = 0; c < nc; c++) {
            if (c < paired && (c & 1))
                for (int q = 0; q < 4; q++)
                    s1[q] = _mm512_fmadd_ps(wv[c], _mm512_maskz_loadu_ps(k[c], xs[q] + 16 * c), s1[q]);
            else
                for (int q = 0; q < 4; q++)
                    s0[q] = _mm512_fmadd_ps(wv[c], _mm512_maskz_loadu_ps(k[c], xs[q] + 16 * c), s0[q]);
        }
        for (int q = 0; q < 4; q++) out[e + q] = _mm512_reduce_add_ps(_mm512_add_ps(s0[q], s1[q]));
    }
    for (; e < ne; e++) {
        const float *xs = x + (int64_t)(ent[e] >> 32) * ld;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        for (int c = 0; c < nc; c++) {
            const __m512 p = _mm512_maskz_loadu_ps(k[c], xs + 16 * c);
            if (c < paired && (c & 1)) s1 = _mm512_fmadd_ps(wv[c], p, s1);
            else s0 = _mm512_fmadd_ps(wv[c], p, s0);
        }
        out[e] = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    }
}

/* Unfused, so the reference's bits; the tail masked. */
static void catch_up_row_avx512(float *w, float *m, float *v, int64_t n, float S, float e, float d1,
                                float d2) {
    const __m512 vS = _mm512_set1_ps(S), ve = _mm512_set1_ps(e);
    const __m512 vd1 = _mm512_set1_ps(d1), vd2 = _mm512_set1_ps(d2);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        const __m512 mi = _mm512_maskz_loadu_ps(k, m + i), vi = _mm512_maskz_loadu_ps(k, v + i);
        const __m512 wi = _mm512_maskz_loadu_ps(k, w + i);
        const __m512 q = _mm512_div_ps(_mm512_mul_ps(vS, mi), _mm512_add_ps(_mm512_sqrt_ps(vi), ve));
        _mm512_mask_storeu_ps(w + i, k, _mm512_sub_ps(wi, q));
        _mm512_mask_storeu_ps(m + i, k, _mm512_mul_ps(mi, vd1));
        _mm512_mask_storeu_ps(v + i, k, _mm512_mul_ps(vi, vd2));
    }
}

/* 16 lanes of catch_up_row_bf16; hv, hw: salt (^ 0x6A09E667 for w) + index x golden */
static inline void catch_up16_bf16(float *w, uint16_t *w16, uint16_t *m, uint16_t *v, __m512 vS,
                                   __m512 ve, __m512 vd1, __m512 vd2, __m512i hv, __m512i hw) {
    const __m512 mi = bf16_load16(m), vi = bf16_load16(v);
    const __m512 q = _mm512_div_ps(_mm512_mul_ps(vS, mi), _mm512_add_ps(_mm512_sqrt_ps(vi), ve));
    if (w16) bf16_store16_sr(w16, _mm512_sub_ps(bf16_load16(w16), q), bf16_noise16(hw));
    else _mm512_storeu_ps(w, _mm512_sub_ps(_mm512_loadu_ps(w), q));
    bf16_store16(m, _mm512_mul_ps(mi, vd1));
    bf16_store16_sr(v, _mm512_mul_ps(vi, vd2), bf16_noise16(hv));
}

/* Unfused, as the reference; the tail through a zero-padded copy (v 0 there: q = 0 / e). */
static void catch_up_row_bf16_avx512(float *w, uint16_t *w16, uint16_t *m, uint16_t *v, int64_t n,
                                     float S, float e, float d1, float d2, uint32_t salt) {
    const __m512 vS = _mm512_set1_ps(S), ve = _mm512_set1_ps(e);
    const __m512 vd1 = _mm512_set1_ps(d1), vd2 = _mm512_set1_ps(d2);
    const __m512i hv16 = _mm512_set1_epi32((int)(16u * 0x9E3779B1u));
    const __m512i hw16 = _mm512_set1_epi32((int)(16u * 0x85EBCA77u));
    __m512i hv, hw;
    weyl_start(salt, &hv, &hw);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16, hv = _mm512_add_epi32(hv, hv16), hw = _mm512_add_epi32(hw, hw16))
        catch_up16_bf16(w16 ? NULL : w + i, w16 ? w16 + i : NULL, m + i, v + i, vS, ve, vd1, vd2, hv, hw);
    if (i < n) {
        float tw[16] = {0};
        uint16_t tw16[16] = {0}, tm[16] = {0}, tv[16] = {0};
        const size_t k = (size_t)(n - i);
        if (w16) memcpy(tw16, w16 + i, k * sizeof(uint16_t));
        else memcpy(tw, w + i, k * sizeof(float));
        memcpy(tm, m + i, k * sizeof(uint16_t));
        memcpy(tv, v + i, k * sizeof(uint16_t));
        catch_up16_bf16(w16 ? NULL : tw, w16 ? tw16 : NULL, tm, tv, vS, ve, vd1, vd2, hv, hw);
        if (w16) memcpy(w16 + i, tw16, k * sizeof(uint16_t));
        else memcpy(w + i, tw, k * sizeof(float));
        memcpy(m + i, tm, k * sizeof(uint16_t));
        memcpy(v + i, tv, k * sizeof(uint16_t));
    }
}

/* adam_catch_up_row's constants, broadcast. */
typedef struct cu_consts {
    __m512 b1, c1, b2, c2, step, inv, eps, S, e, d1, d2, min;
} cu_consts;

static inline cu_consts cu_consts_of(float lr, float b1, float b2, float eps, float bc1, float bc2,
                                     float S, float e, float d1, float d2) {
    cu_consts k = {_mm512_set1_ps(b1),      _mm512_set1_ps(1.0f - b1),
                   _mm512_set1_ps(b2),      _mm512_set1_ps(1.0f - b2),
                   _mm512_set1_ps(lr / bc1), _mm512_set1_ps(1.0f / sqrtf(bc2)),
                   _mm512_set1_ps(eps),     _mm512_set1_ps(S),
                   _mm512_set1_ps(e),       _mm512_set1_ps(d1),
                   _mm512_set1_ps(d2),      _mm512_set1_ps(FLT_MIN)};
    return k;
}

/* adam_catch_up_row of 16 lanes (w, m, v in place): adam_row_avx512's roundings for m and
 * v. Lanes that are zero everywhere give w -= 0 / max(e eps, FLT_MIN): no 0 / 0. */
static inline void adam_catch_up16(__m512 g, __m512 *w, __m512 *m, __m512 *v, const cu_consts *k) {
    const __m512 a = _mm512_add_ps(_mm512_sqrt_ps(*v), k->e);
    const __m512 mi = _mm512_fmadd_ps(k->b1, _mm512_mul_ps(*m, k->d1), _mm512_mul_ps(k->c1, g));
    const __m512 vi = _mm512_fmadd_ps(k->b2, _mm512_mul_ps(*v, k->d2), _mm512_mul_ps(k->c2, _mm512_mul_ps(g, g)));
    const __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), k->inv, k->eps);
    const __m512 num = _mm512_fmadd_ps(_mm512_mul_ps(k->S, *m), den, _mm512_mul_ps(_mm512_mul_ps(k->step, mi), a));
    *w = _mm512_sub_ps(*w, _mm512_div_ps(num, _mm512_max_ps(_mm512_mul_ps(a, den), k->min)));
    *m = mi, *v = vi;
}

/* The tail masked, as adam_row_avx512's. */
static void adam_catch_up_row_avx512(float *w, float *g, float *m, float *v, int64_t n, float lr,
                                     float b1, float b2, float eps, float bc1, float bc2, float S,
                                     float e, float d1, float d2) {
    const cu_consts k = cu_consts_of(lr, b1, b2, eps, bc1, bc2, S, e, d1, d2);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 t = tail_mask(n - i);
        __m512 wi = _mm512_maskz_loadu_ps(t, w + i), mi = _mm512_maskz_loadu_ps(t, m + i);
        __m512 vi = _mm512_maskz_loadu_ps(t, v + i);
        adam_catch_up16(_mm512_maskz_loadu_ps(t, g + i), &wi, &mi, &vi, &k);
        _mm512_mask_storeu_ps(m + i, t, mi);
        _mm512_mask_storeu_ps(v + i, t, vi);
        _mm512_mask_storeu_ps(w + i, t, wi);
        _mm512_mask_storeu_ps(g + i, t, _mm512_setzero_ps());
    }
}

/* 16 lanes of adam_catch_up_row_bf16 (w16 NULL: float weights in w) */
static inline void adam_catch_up16_bf16(float *w, uint16_t *w16, float *g, uint16_t *m, uint16_t *v,
                                        const cu_consts *k, __m512i hv, __m512i hw) {
    __m512 wi = w16 ? bf16_load16(w16) : _mm512_loadu_ps(w), mi = bf16_load16(m), vi = bf16_load16(v);
    adam_catch_up16(_mm512_loadu_ps(g), &wi, &mi, &vi, k);
    if (w16) bf16_store16_sr(w16, wi, bf16_noise16(hw));
    else _mm512_storeu_ps(w, wi);
    bf16_store16(m, mi);
    bf16_store16_sr(v, vi, bf16_noise16(hv));
    _mm512_storeu_ps(g, _mm512_setzero_ps());
}

/* Full blocks of 16 in place, the tail through a zero-padded copy (as adam_row_bf16w_avx512):
 * the same lane arithmetic as adam_catch_up_row_avx512's. */
static void adam_catch_up_row_bf16_avx512(float *w, uint16_t *w16, float *g, uint16_t *m,
                                          uint16_t *v, int64_t n, float lr, float b1, float b2,
                                          float eps, float bc1, float bc2, float S, float e,
                                          float d1, float d2, uint32_t salt) {
    const cu_consts k = cu_consts_of(lr, b1, b2, eps, bc1, bc2, S, e, d1, d2);
    const __m512i hv16 = _mm512_set1_epi32((int)(16u * 0x9E3779B1u));
    const __m512i hw16 = _mm512_set1_epi32((int)(16u * 0x85EBCA77u));
    __m512i hv, hw;
    weyl_start(salt, &hv, &hw);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16, hv = _mm512_add_epi32(hv, hv16), hw = _mm512_add_epi32(hw, hw16))
        adam_catch_up16_bf16(w16 ? NULL : w + i, w16 ? w16 + i : NULL, g + i, m + i, v + i, &k, hv, hw);
    if (i < n) {
        float tw[16] = {0}, tg[16] = {0};
        uint16_t tw16[16] = {0}, tm[16] = {0}, tv[16] = {0};
        const size_t c = (size_t)(n - i);
        if (w16) memcpy(tw16, w16 + i, c * sizeof(uint16_t));
        else memcpy(tw, w + i, c * sizeof(float));
        memcpy(tg, g + i, c * sizeof(float));
        memcpy(tm, m + i, c * sizeof(uint16_t));
        memcpy(tv, v + i, c * sizeof(uint16_t));
        adam_catch_up16_bf16(w16 ? NULL : tw, w16 ? tw16 : NULL, tg, tm, tv, &k, hv, hw);
        if (w16) memcpy(w16 + i, tw16, c * sizeof(uint16_t));
        else memcpy(w + i, tw, c * sizeof(float));
        memcpy(g + i, tg, c * sizeof(float));
        memcpy(m + i, tm, c * sizeof(uint16_t));
        memcpy(v + i, tv, c * sizeof(uint16_t));
    }
}

static const spr_kernel_set set = {"avx512", dot_avx512, axpy_avx512, dot_sparse_avx512,
                                   adam_row_avx512, matmul_panels_avx512, signed_sums_avx512,
                                   adam_row_bf16_avx512, dot_bf16_avx512, axpy_bf16_avx512,
                                   adam_row_bf16w_avx512, row_entries_avx512, row_dots_avx512,
                                   catch_up_row_avx512, catch_up_row_bf16_avx512,
                                   adam_catch_up_row_avx512, adam_catch_up_row_bf16_avx512,
                                   spr_crc32_clmul};
const spr_kernel_set *spr_kernel_set_avx512(void) { return &set; }
#else
const spr_kernel_set *spr_kernel_set_avx512(void) { return 0; }
#endif

/* kernels_avx512.c: the kernels in AVX-512F intrinsics (16 lanes, masked tails). This
 * file alone is compiled with -mavx512f (CMakeLists.txt); kernels.c calls in here only
 * when cpuid and the OS (XCR0) say the CPU can run it. The project's own machine has no
 * AVX-512: these are tested against the references by tests/test_kernels.c wherever the
 * CPU has it, and skipped (saying so) elsewhere. */
#include "kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>

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

static void adam_row_avx512(float *w, float *g, float *m, float *v, int64_t n, float lr, float b1,
                            float b2, float eps, float bc1, float bc2) {
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
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
            a = _mm512_add_ps(a, _mm512_load_ps(xt + (int64_t)ent[e] * 16));
            b = _mm512_add_ps(b, _mm512_load_ps(xt + (int64_t)ent[e + 1] * 16));
            c = _mm512_add_ps(c, _mm512_load_ps(xt + (int64_t)ent[e + 2] * 16));
            e4 = _mm512_add_ps(e4, _mm512_load_ps(xt + (int64_t)ent[e + 3] * 16));
        }
        float *o = acc + 4 * g * 16;
        _mm512_storeu_ps(o, a), _mm512_storeu_ps(o + 16, b);
        _mm512_storeu_ps(o + 32, c), _mm512_storeu_ps(o + 48, e4);
    }
}

static const spr_kernel_set set = {"avx512", dot_avx512, axpy_avx512, dot_sparse_avx512,
                                   adam_row_avx512, matmul_panels_avx512, signed_sums_avx512};
const spr_kernel_set *spr_kernel_set_avx512(void) { return &set; }
#else
const spr_kernel_set *spr_kernel_set_avx512(void) { return 0; }
#endif

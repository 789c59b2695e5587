/* kernels.c: the portable reference kernels and the choice of a kernel set at load time.
 *
 * The references are plain C, compiled for the baseline ISA: they define the result the
 * fast sets are tested against. Choosing: the widest set that cpuid and the OS (XCR0,
 * which __builtin_cpu_supports checks) allow, unless SPARROW_KERNELS names another one. */
#include "kernels.h"

#include "common.h"
#include "sparrow.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Eight partial sums in a fixed order: vectorisable without -ffast-math. */
static float dot_ref(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) +
           tail;
}

static void axpy_ref(float alpha, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

static float dot_sparse_ref(const float *w, const int32_t *idx, const float *val, int64_t nnz) {
    float acc = 0.0f;
    for (int64_t j = 0; j < nnz; j++) acc += w[idx[j]] * val[j];
    return acc;
}

static void adam_row_ref(float *w, float *g, float *m, float *v, int64_t n, float lr, float b1,
                         float b2, float eps, float bc1, float bc2) {
    const float step = lr / bc1;
    const float sqrt_bc2 = sqrtf(bc2);
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] -= step * mi / (sqrtf(vi) / sqrt_bc2 + eps);
        g[i] = 0.0f;
    }
}

/* Written as axpy_ref writes its update (acc += x * p, one rounding for the product and
 * one for the sum), so that the chains are the ones axpy_ref makes. */
/* Four lanes of floats (GNU C vector extension: SSE on x86-64, NEON on ARM, scalar code
 * elsewhere): a lane's a += x * p is the scalar expression, one rounding each. */
typedef float spr_f32x4 __attribute__((vector_size(16)));

static void matmul_panels_ref(const float *x, int64_t ldx, int64_t n, int64_t d, const float *p,
                              int64_t np, float *acc, int64_t ldacc) {
    for (int64_t q = 0; q < np; q++) {
        const float *pq = p + q * d * SPR_PANEL; /* (d, SPR_PANEL) */
        for (int64_t r = 0; r < n; r++) {
            spr_f32x4 a[SPR_PANEL / 4] = {{0}};
            for (int64_t j = 0; j < d; j++) {
                const float xv = x[r * ldx + j];
                for (int i = 0; i < SPR_PANEL / 4; i++) {
                    spr_f32x4 pv;
                    memcpy(&pv, pq + j * SPR_PANEL + 4 * i, sizeof pv);
                    a[i] += xv * pv;
                }
            }
            memcpy(acc + r * ldacc + q * SPR_PANEL, a, sizeof a);
        }
    }
}

/* xt (d + 1, 2, SPR_SUM_ROWS): x transposed, then negated; row d and the rows past n are
 * zeros. Shared by every set (the transposition is a small part of the work). */
void spr_signed_sums_transpose(const float *x, int64_t ldx, int64_t n, int64_t d, float *xt) {
    for (int64_t j = 0; j < d; j++)
        for (int r = 0; r < SPR_SUM_ROWS; r++) {
            const float v = r < n ? x[r * ldx + j] : 0.0f;
            xt[(2 * j) * SPR_SUM_ROWS + r] = v;
            xt[(2 * j + 1) * SPR_SUM_ROWS + r] = -v;
        }
    for (int r = 0; r < 2 * SPR_SUM_ROWS; r++) xt[2 * d * SPR_SUM_ROWS + r] = 0.0f;
}

static void signed_sums_ref(const float *x, int64_t ldx, int64_t n, int64_t d, const int32_t *ent,
                            const int64_t *gstart, int64_t ngroups, float *acc, float *xt) {
    spr_signed_sums_transpose(x, ldx, n, d, xt);
    for (int64_t g = 0; g < ngroups; g++) {
        float a[4][SPR_SUM_ROWS] = {{0}};
        for (int64_t e = gstart[g]; e < gstart[g + 1]; e += 4)
            for (int q = 0; q < 4; q++) {
                const float *v = xt + ent[e + q];
                for (int r = 0; r < SPR_SUM_ROWS; r++) a[q][r] += v[r];
            }
        memcpy(acc + 4 * g * SPR_SUM_ROWS, a, sizeof a);
    }
}

/* adam_row_ref's arithmetic, term for term, on the widened moments; the moments are
 * rounded only when stored, so the result is exactly adam_row_ref followed by rounding
 * m and v (tests/test_kernels.c checks that, bit for bit). */
static void adam_row_bf16_ref(float *w, float *g, uint16_t *m, uint16_t *v, int64_t n, float lr,
                              float b1, float b2, float eps, float bc1, float bc2, uint32_t salt) {
    const float step = lr / bc1;
    const float sqrt_bc2 = sqrtf(bc2);
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * spr_f32_from_bf16(m[i]) + (1.0f - b1) * gi;
        float vi = b2 * spr_f32_from_bf16(v[i]) + (1.0f - b2) * gi * gi;
        m[i] = spr_bf16_from_f32(mi);
        v[i] = spr_bf16_from_f32_sr(vi, spr_bf16_noise(salt, i));
        w[i] -= step * mi / (sqrtf(vi) / sqrt_bc2 + eps);
        g[i] = 0.0f;
    }
}

/* dot_ref on the widened row: the same partial sums in the same order. */
static float dot_bf16_ref(const uint16_t *w, const float *x, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += spr_f32_from_bf16(w[i + j]) * x[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += spr_f32_from_bf16(w[i]) * x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) +
           tail;
}

static void axpy_bf16_ref(float alpha, const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * spr_f32_from_bf16(x[i]);
}

/* adam_row_bf16_ref with a BF16 weight: the same float arithmetic on the widened weight,
 * which is then rounded stochastically. */
static void adam_row_bf16w_ref(uint16_t *w, float *g, uint16_t *m, uint16_t *v, int64_t n,
                               float lr, float b1, float b2, float eps, float bc1, float bc2,
                               uint32_t salt) {
    const float step = lr / bc1;
    const float sqrt_bc2 = sqrtf(bc2);
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * spr_f32_from_bf16(m[i]) + (1.0f - b1) * gi;
        float vi = b2 * spr_f32_from_bf16(v[i]) + (1.0f - b2) * gi * gi;
        m[i] = spr_bf16_from_f32(mi);
        v[i] = spr_bf16_from_f32_sr(vi, spr_bf16_noise(salt, i));
        float wi = spr_f32_from_bf16(w[i]) - step * mi / (sqrtf(vi) / sqrt_bc2 + eps);
        w[i] = spr_bf16_from_f32_sr(wi, spr_bf16_noise_w(salt, i));
        g[i] = 0.0f;
    }
}

/* row_entries as its definition reads: g from +0 by axpy entry by entry, dh by axpy. */
static void row_entries_ref(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                            int64_t ne, const float *x, float *dh, int64_t ld, float *g) {
    memset(g, 0, (size_t)n * sizeof(float));
    for (int64_t e = 0; e < ne; e++) {
        const int64_t i = (int64_t)(ent[e] >> 32);
        const uint32_t bits = (uint32_t)ent[e];
        float d;
        memcpy(&d, &bits, sizeof d);
        axpy_ref(d, x + i * ld, g, n);
        if (!dh) continue;
        if (w16) axpy_bf16_ref(d, w16, dh + i * ld, n);
        else axpy_ref(d, w, dh + i * ld, n);
    }
}

void spr_row_dots_each(spr_dot_fn dot, spr_dot_bf16_fn dot_bf16, const float *w,
                       const uint16_t *w16, int64_t n, const uint64_t *ent, int64_t ne,
                       const float *x, int64_t ld, float *out) {
    for (int64_t e = 0; e < ne; e++) {
        const float *xs = x + (int64_t)(ent[e] >> 32) * ld;
        out[e] = w16 ? dot_bf16(w16, xs, n) : dot(w, xs, n);
    }
}

static void row_dots_ref(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                         int64_t ne, const float *x, int64_t ld, float *out) {
    spr_row_dots_each(dot_ref, dot_bf16_ref, w, w16, n, ent, ne, x, ld, out);
}

static void catch_up_row_ref(float *w, float *m, float *v, int64_t n, float S, float e, float d1,
                             float d2) {
    for (int64_t i = 0; i < n; i++) {
        const float num = S * m[i], den = sqrtf(v[i]) + e;
        w[i] = w[i] - num / den;
        m[i] = m[i] * d1, v[i] = v[i] * d2;
    }
}

static void adam_catch_up_row_ref(float *w, float *g, float *m, float *v, int64_t n, float lr,
                                  float b1, float b2, float eps, float bc1, float bc2, float S,
                                  float e, float d1, float d2) {
    const float step = lr / bc1;
    const float sqrt_bc2 = sqrtf(bc2);
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i], a = sqrtf(v[i]) + e;
        const float mi = b1 * (m[i] * d1) + (1.0f - b1) * gi;
        const float vi = b2 * (v[i] * d2) + (1.0f - b2) * gi * gi;
        const float den = sqrtf(vi) / sqrt_bc2 + eps;
        w[i] -= (S * m[i] * den + step * mi * a) / fmaxf(a * den, FLT_MIN);
        m[i] = mi;
        v[i] = vi;
        g[i] = 0.0f;
    }
}

static void adam_catch_up_row_bf16_ref(float *w, uint16_t *w16, float *g, uint16_t *m, uint16_t *v,
                                       int64_t n, float lr, float b1, float b2, float eps, float bc1,
                                       float bc2, float S, float e, float d1, float d2, uint32_t salt) {
    for (int64_t i = 0; i < n; i++) {
        float wi = w16 ? spr_f32_from_bf16(w16[i]) : w[i];
        float mi = spr_f32_from_bf16(m[i]), vi = spr_f32_from_bf16(v[i]);
        adam_catch_up_row_ref(&wi, g + i, &mi, &vi, 1, lr, b1, b2, eps, bc1, bc2, S, e, d1, d2);
        m[i] = spr_bf16_from_f32(mi);
        v[i] = spr_bf16_from_f32_sr(vi, spr_bf16_noise(salt, i));
        if (w16) w16[i] = spr_bf16_from_f32_sr(wi, spr_bf16_noise_w(salt, i));
        else w[i] = wi;
    }
}

void spr_catch_up_row_bf16_ref(float *w, uint16_t *w16, uint16_t *m, uint16_t *v, int64_t n, float S,
                               float e, float d1, float d2, uint32_t salt) {
    for (int64_t i = 0; i < n; i++) {
        const float mi = spr_f32_from_bf16(m[i]), vi = spr_f32_from_bf16(v[i]);
        const float num = S * mi, den = sqrtf(vi) + e, q = num / den;
        if (w16) w16[i] = spr_bf16_from_f32_sr(spr_f32_from_bf16(w16[i]) - q, spr_bf16_noise_w(salt, i));
        else w[i] = w[i] - q;
        m[i] = spr_bf16_from_f32(mi * d1);
        v[i] = spr_bf16_from_f32_sr(vi * d2, spr_bf16_noise(salt, i));
    }
}

/* CRC-32 of zlib, PNG and gzip (reflected polynomial 0xEDB88320, register preset and
 * final xor 0xFFFFFFFF), by slicing-by-8 tables: eight bytes per step keeps it well above
 * a byte-at-a-time table's ~0.5 GB/s. The tables are made before main (spr_kernels_init). */
static uint32_t crc_table[8][256];

static void crc_tables_make(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFFu];
}

uint32_t spr_crc32_ref(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = crc_table[7][lo & 0xFFu] ^ crc_table[6][(lo >> 8) & 0xFFu] ^
              crc_table[5][(lo >> 16) & 0xFFu] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xFFu] ^ crc_table[2][(hi >> 8) & 0xFFu] ^
              crc_table[1][(hi >> 16) & 0xFFu] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFFu];
    return ~crc;
}

const spr_kernel_set spr_kernels_portable = {"portable", dot_ref, axpy_ref, dot_sparse_ref,
                                             adam_row_ref, matmul_panels_ref, signed_sums_ref,
                                             adam_row_bf16_ref, dot_bf16_ref, axpy_bf16_ref,
                                             adam_row_bf16w_ref, row_entries_ref, row_dots_ref,
                                             catch_up_row_ref, spr_catch_up_row_bf16_ref,
                                             adam_catch_up_row_ref, adam_catch_up_row_bf16_ref,
                                             spr_crc32_ref};
const spr_kernel_set *spr_kernels = &spr_kernels_portable;

static const char *cpu_features(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    static char buf[128];
    if (!buf[0]) {
        __builtin_cpu_init();
        snprintf(buf, sizeof buf, "x86-64%s%s%s%s%s", __builtin_cpu_supports("avx2") ? " avx2" : "",
                 __builtin_cpu_supports("fma") ? " fma" : "",
                 __builtin_cpu_supports("avx512f") ? " avx512f" : "",
                 __builtin_cpu_supports("avx512bw") ? " avx512bw" : "",
                 __builtin_cpu_supports("avx512bf16") ? " avx512bf16" : "");
    }
    return buf;
#else
    return "no x86-64 vector extensions detected";
#endif
}

int spr_kernel_set_supported(const char *name) {
    if (!name) return 0;
    if (!strcmp(name, "portable")) return 1;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx2"))
        return spr_kernel_set_avx2() && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma") && __builtin_cpu_supports("pclmul");
    if (!strcmp(name, "avx512"))
        return spr_kernel_set_avx512() && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("pclmul");
#endif
    return 0;
}

static const spr_kernel_set *set_by_name(const char *name) {
    if (!strcmp(name, "portable")) return &spr_kernels_portable;
    if (!strcmp(name, "avx2")) return spr_kernel_set_avx2();
    if (!strcmp(name, "avx512")) return spr_kernel_set_avx512();
    return NULL;
}

static char env_note[160]; /* why SPARROW_KERNELS was not followed, or "" */

static void choose(void) {
    const spr_kernel_set *best = &spr_kernels_portable;
    if (spr_kernel_set_supported("avx2")) best = spr_kernel_set_avx2();
    if (spr_kernel_set_supported("avx512")) best = spr_kernel_set_avx512();
    spr_kernels = best;
    const char *env = getenv("SPARROW_KERNELS");
    if (!env || !env[0]) return;
    if (!set_by_name(env) && strcmp(env, "avx2") && strcmp(env, "avx512"))
        snprintf(env_note, sizeof env_note,
                 "SPARROW_KERNELS=%.40s ignored: not one of portable, avx2, avx512", env);
    else if (!spr_kernel_set_supported(env))
        snprintf(env_note, sizeof env_note,
                 "SPARROW_KERNELS=%.40s ignored: this CPU (or build) cannot run it", env);
    else
        spr_kernels = set_by_name(env);
}

/* Runs before main (and when the shared library is loaded): the set is fixed before any
 * training thread exists. */
__attribute__((constructor)) static void spr_kernels_init(void) {
    crc_tables_make();
    choose();
}

const char *spr_kernels_name(void) { return spr_kernels->name; }

const char *spr_kernels_describe(void) {
    static char buf[400];
    snprintf(buf, sizeof buf, "kernels: %s (cpu: %s; supported sets: portable%s%s)%s%s",
             spr_kernels->name, cpu_features(), spr_kernel_set_supported("avx2") ? " avx2" : "",
             spr_kernel_set_supported("avx512") ? " avx512" : "", env_note[0] ? "; " : "",
             env_note);
    return buf;
}

spr_status spr_kernels_select(const char *name) {
    if (!name || !set_by_name(name) || !spr_kernel_set_supported(name))
        return spr_fail(SPR_STATUS_BAD_INPUT, "kernel set '%s' is unknown or this CPU cannot run it",
                        name ? name : "(null)");
    spr_kernels = set_by_name(name);
    return SPR_STATUS_OK;
}

/* kernels.c: portable kernels, vectorised by the compiler.
 *
 * SPR_KERNEL asks GCC for two clones of each kernel, one for x86-64-v3 (AVX2 + FMA)
 * and a baseline one; the loader picks the clone for the CPU at start-up (ifunc). An
 * explicit dispatch table with hand-written AVX2/AVX-512 kernels and a way to force
 * a choice is the next step (issue: performance). Every caller uses the same kernels,
 * so the dense and sampled paths stay bit-identical on any one machine. */
#include "kernels.h"

#include <math.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SPR_NO_CLONES)
#define SPR_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SPR_KERNEL
#endif

/* Eight partial sums: vectorisable without -ffast-math, and a fixed summation order
 * (the same for every caller, which the dense/sampled equality relies on). */
SPR_KERNEL float spr_dot(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) +
           tail;
}

SPR_KERNEL void spr_axpy(float alpha, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

SPR_KERNEL float spr_dot_sparse(const float *w, const int32_t *idx, const float *val, int64_t nnz) {
    float acc = 0.0f;
    for (int64_t j = 0; j < nnz; j++) acc += w[idx[j]] * val[j];
    return acc;
}

SPR_KERNEL void spr_adam_row(float *w, float *g, float *m, float *v, int64_t n, float lr, float b1,
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

/*
 * kernels.h: the arithmetic of the hot loops: dot products and row updates.
 *
 * Every kernel has a portable reference version. The dense and sampled paths of the
 * network call the same kernels, so with the same active neurons they produce
 * bit-identical results: that is what lets the sampled path be tested against its
 * dense twin exactly.
 */
#ifndef SPR_KERNELS_H
#define SPR_KERNELS_H

#include <stdint.h>

/* sum_i a[i] * b[i], accumulated in float in a fixed order. */
float spr_dot(const float *a, const float *b, int64_t n);

/* y[i] += alpha * x[i]. */
void spr_axpy(float alpha, const float *x, float *y, int64_t n);

/* sum_j w[idx[j]] * val[j]: a dense row against a sparse vector. */
float spr_dot_sparse(const float *w, const int32_t *idx, const float *val, int64_t nnz);

/* One Adam step on a row, exactly as torch.optim.Adam computes it:
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
 * with bc1 = 1 - b1^t, bc2 = 1 - b2^t; then g = 0 (the gradient is consumed). */
void spr_adam_row(float *w, float *g, float *m, float *v, int64_t n, float lr, float b1,
                  float b2, float eps, float bc1, float bc2);

#endif /* SPR_KERNELS_H */
